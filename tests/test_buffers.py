"""ExperienceReviewBuffer: review batches come from the chronologically oldest quarter, before and after wrap."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import TD3
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_plasticity import ExperienceReviewBuffer

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
