"""ExperienceReviewBuffer: review batches come from the chronologically oldest quarter, before and after wrap."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import TD3
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_plasticity import ExperienceReviewBuffer, buffers

OBS = spaces.Box(-1e6, 1e6, (1,), np.float32)
ACT = spaces.Box(-1, 1, (1,), np.float32)


def _filled(n_added: int, size: int = 100, **kwargs) -> ExperienceReviewBuffer:
    """Transition t has observation t (and next observation t + 1)."""
    buffer = ExperienceReviewBuffer(size, OBS, ACT, device="cpu", **kwargs)
    for t in range(n_added):
        buffer.add(np.array([[t]]), np.array([[t + 1]]), np.array([[0.0]]), np.array([0.0]), np.array([False]), [{}])
    return buffer


def _observed(buffer, n: int = 200, batch: int = 64) -> np.ndarray:
    return np.concatenate([buffer.sample(batch).observations.numpy().ravel() for _ in range(n)])


@pytest.mark.parametrize("optimize_memory_usage", [False, True])
def test_review_batches_come_from_the_oldest_quarter_before_and_after_wrap(optimize_memory_usage):
    np.random.seed(0)
    kwargs = dict(optimize_memory_usage=True, handle_timeout_termination=False) if optimize_memory_usage else {}
    before = _filled(60, **kwargs)
    before.review_probability = 1.0
    assert set(_observed(before)) <= set(range(15))  # oldest quarter of 60 stored: steps 0-14
    after = _filled(250, **kwargs)  # holds steps 150-249 (wrapped)
    after.review_probability = 1.0
    seen = _observed(after)
    oldest = range(151, 176) if optimize_memory_usage else range(150, 175)
    assert set(seen) <= set(oldest) and len(set(seen)) == len(oldest)
    if optimize_memory_usage:  # next observations are rebuilt from the following row: still consistent
        data = after.sample(64)
        assert np.allclose(data.next_observations.numpy(), data.observations.numpy() + 1)
    assert after.review_fraction == 1.0


def test_zero_review_probability_samples_uniformly():
    np.random.seed(0)
    buffer = _filled(250)
    buffer.review_probability = 0.0
    seen = _observed(buffer)
    assert set(seen) == set(range(150, 250))
    counts = np.bincount(seen.astype(int) - 150)
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()
    assert buffer.review_fraction == 0.0


def test_epsilon_rule():
    buffer = _filled(10, review_window=2, review_floor=0.25)
    assert buffer.epsilon == 1.0 and buffer.review_probability == 0.0  # nothing measured: no review
    for ratio in (0.9, 0.5, 0.6, 0.55):
        buffer.record_active_ratio(ratio)
    # the last 2 changes: |0.6 - 0.5| + |0.55 - 0.6| = 0.15, floored at 0.25
    assert buffer.epsilon == pytest.approx(0.25) and buffer.review_probability == pytest.approx(0.75)
    buffer.record_active_ratio(0.05)  # a change of 0.5: epsilon 0.55
    assert buffer.epsilon == pytest.approx(0.55) and buffer.review_probability == pytest.approx(0.45)
    buffer.review_probability = 1.0
    assert buffer.review_probability == 1.0
    buffer.review_probability = None
    assert buffer.review_probability == pytest.approx(0.45)


def test_vecnormalize_is_applied_to_review_batches():
    np.random.seed(0)
    buffer = _filled(80)
    buffer.review_probability = 1.0
    env = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]))
    env.obs_rms = RunningMeanStd(shape=(1,))
    env.obs_rms.mean, env.obs_rms.var = np.array([10.0]), np.array([4.0])
    data = buffer.sample(32, env=env)
    v = data.observations.numpy().ravel()
    steps = v * 2.0 + 10.0  # undo (t - 10) / 2: the review rows hold steps 0-19
    assert np.allclose(steps, steps.round(), atol=1e-3) and steps.min() > -1e-3 and steps.max() < 20
    assert (v < 0).any()  # raw steps are >= 0: the batch was normalised


BAD = [
    (dict(review_window=0), "review_window"),
    (dict(review_floor=-0.1), "review_floor"),
    (dict(review_floor=2), "review_floor"),
]


@pytest.mark.parametrize(("kwargs", "name"), BAD)
def test_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        _filled(1, **kwargs)
    with pytest.raises(ValueError, match="review_probability"):
        _filled(1).review_probability = 1.5


def test_td3_trains_with_it():
    model = TD3(
        "MlpPolicy", "Pendulum-v1", replay_buffer_class=ExperienceReviewBuffer, replay_buffer_kwargs=dict(review_window=10),
        learning_starts=50, policy_kwargs=dict(net_arch=[16]), device="cpu",
    )  # fmt: skip
    model.replay_buffer.review_probability = 0.5
    model.learn(150)
    assert 0.3 < model.replay_buffer.review_fraction < 0.7


# -- n-step returns (NE Table 3: NE-DrQ uses 3-step returns) --------------------------------------------------
def _sequence(n_added: int, size: int = 20, dones=(), timeouts=(), **kwargs) -> ExperienceReviewBuffer:
    """Transition t: observation t, next observation t + 1, reward t + 1; episode ends (terminal) after each t in
    ``dones``, time limit (truncated, done and TimeLimit.truncated) after each t in ``timeouts``."""
    buffer = ExperienceReviewBuffer(size, OBS, ACT, device="cpu", **kwargs)
    for t in range(n_added):
        done = t in dones or t in timeouts
        info = {"TimeLimit.truncated": t in timeouts}
        buffer.add(np.array([[t]]), np.array([[t + 1]]), np.array([[0.0]]), np.array([t + 1.0]), np.array([done]), [info])
    return buffer


def test_n_step_targets_on_a_hand_made_sequence():
    buffer = _sequence(10, dones=(5,), timeouts=(8,), n_steps=3, gamma=0.5)
    data = buffer._get_samples(np.array([0, 3, 4, 5, 7, 8, 9]))
    # start: rewards summed until an episode end (included) or the newest transition, next obs and done of the last
    #  0: 1 + .5*2 + .25*3                      next 3, discount .125
    #  3: 4 + .5*5 + .25*6 (terminal at 5)      next 6, discount .125, done
    #  4: 5 + .5*6 (terminal at 5)              next 6, discount .25,  done
    #  5: 6                                     next 6, discount .5,   done
    #  7: 8 + .5*9 (time limit at 8)            next 9, discount .25,  bootstrapped (done 0)
    #  8: 9 (time limit)                        next 9, discount .5,   bootstrapped
    #  9: 10 (the newest transition)            next 10, discount .5
    assert data.rewards.numpy().ravel().tolist() == [2.75, 8.0, 8.0, 6.0, 12.5, 9.0, 10.0]
    assert data.discounts.numpy().ravel().tolist() == [0.125, 0.125, 0.25, 0.5, 0.25, 0.5, 0.5]
    assert data.next_observations.numpy().ravel().tolist() == [3, 6, 6, 6, 9, 9, 10]
    assert data.dones.numpy().ravel().tolist() == [0, 1, 1, 1, 0, 0, 0]
    assert data.observations.numpy().ravel().tolist() == [0, 3, 4, 5, 7, 8, 9]


def test_review_batches_carry_n_step_returns_before_and_after_wrap():
    np.random.seed(0)
    before = _sequence(10, n_steps=3, gamma=0.5)
    before.review_probability = 1.0
    data = before.sample(64)  # the oldest quarter of 10: transitions 0 and 1
    obs = data.observations.numpy().ravel()
    assert set(obs) == {0, 1}
    expected = {0: 1 + 0.5 * 2 + 0.25 * 3, 1: 2 + 0.5 * 3 + 0.25 * 4}
    assert np.allclose(data.rewards.numpy().ravel(), [expected[o] for o in obs])
    assert np.allclose(data.next_observations.numpy().ravel(), obs + 3) and np.all(data.discounts.numpy() == 0.125)
    after = _sequence(30, size=8, n_steps=3, gamma=0.5)  # holds 22-29; the oldest quarter: 22, 23
    after.review_probability = 1.0
    data = after.sample(64)
    obs = data.observations.numpy().ravel()
    assert set(obs) == {22, 23}
    assert np.allclose(data.rewards.numpy().ravel(), (obs + 1) + 0.5 * (obs + 2) + 0.25 * (obs + 3))
    assert np.allclose(data.next_observations.numpy().ravel(), obs + 3)
    after.review_probability = 0.0  # uniform batches: n-step too, never across the write position
    data = after.sample(256)
    obs, nxt = data.observations.numpy().ravel(), data.next_observations.numpy().ravel()
    assert set(obs) == set(range(22, 30)) and np.all(nxt == np.minimum(obs + 3, 30))


def test_one_step_by_default_and_n_step_input_checks():
    data = _sequence(10)._get_samples(np.array([0, 5]))
    assert data.rewards.numpy().ravel().tolist() == [1.0, 6.0] and data.discounts is None
    with pytest.raises(ValueError, match="n_steps"):
        _sequence(1, n_steps=0)
    with pytest.raises(ValueError, match="gamma"):
        _sequence(1, n_steps=3, gamma=1.5)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        _sequence(1, n_steps=3, optimize_memory_usage=True, handle_timeout_termination=False)


# -- storage that takes memory only as it is written (NE Table 3's 1e6 pixel transitions) ----------------------
def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(buffers._MAP_NORESERVE is None, reason="lazy storage needs Linux (x86 or arm)")
def test_a_1e6_pixel_buffer_is_reserved_not_allocated():
    """NE Table 3's 1e6 transitions of (9, 84, 84) frames: 127 GB when full. SB3's np.zeros of one 59 GiB array
    fails under Linux's default overcommit heuristic on a machine with less RAM; reserved lazily it builds, and
    costs only what is written."""
    import warnings

    from sb3_plasticity import DrQExperienceReviewBuffer

    image = spaces.Box(0, 255, (9, 84, 84), np.uint8)
    before = _rss_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "more than the available memory" on a small machine
        buffer = DrQExperienceReviewBuffer(10**6, image, spaces.Box(-1, 1, (6,), np.float32), device="cpu", n_steps=3)
        for t in range(50):
            frame = np.full((1, 9, 84, 84), t, np.uint8)
            buffer.add(frame, frame + 1, np.zeros((1, 6)), np.array([1.0]), np.array([False]), [{}])
    assert buffer.buffer_size == 10**6 and buffer.observations.shape == buffer.next_observations.shape
    assert buffer.observations.shape == (10**6, 1, 9, 84, 84) and buffer.rewards.shape == (10**6, 1)
    assert _rss_bytes() - before < 200 * 2**20  # 50 transitions written, not 127 GB
    batch = buffer.sample(16)
    assert tuple(batch.observations.shape) == (16, 9, 84, 84)
    assert all(any(abs(r - v) < 1e-4 for v in (2.9701, 1.99, 1.0)) for r in batch.rewards.ravel().tolist())  # 3-step


def test_lazy_storage_behaves_as_numpy_arrays():
    import pickle

    array = buffers.lazy_zeros((512, 1024), np.float32)  # 2 MB: lazily reserved where supported
    assert array.flags.writeable and not array.any()
    array[3] = 1.5
    copy = pickle.loads(pickle.dumps(array, protocol=pickle.HIGHEST_PROTOCOL))  # save_replay_buffer pickles
    assert np.array_equal(copy, array) and copy.flags.writeable
    buffer = ExperienceReviewBuffer(buffer_size=10, observation_space=OBS, action_space=ACT, device="cpu", n_envs=2)
    assert buffer.buffer_size == 5 and buffer.observations.shape == (5, 2, 1) and buffer.timeouts.shape == (5, 2)
