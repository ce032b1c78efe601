"""ContinualMuJoCo (NE Sec. 4.2): fixed padded spaces, task switches at the scheduled episodes (also under
DummyVecEnv and SubprocVecEnv), padding and action rescaling against the plain v5 tasks, the phase contract,
and bad input."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from sb3_plasticity import CONTINUAL_MUJOCO_ID, ContinualMuJoCoEnv, PhasedEnv

NE_TASKS = ["HalfCheetah", "Humanoid", "Ant", "Hopper"]
OBS = {"HalfCheetah": 17, "Humanoid": 348, "Ant": 105, "Hopper": 11}
ACT = {"HalfCheetah": 6, "Humanoid": 17, "Ant": 8, "Hopper": 3}


def make(**kwargs):
    return gym.make(CONTINUAL_MUJOCO_ID, **kwargs)


def test_spaces_follow_the_contract():
    env = make()
    u = env.unwrapped
    assert (u.tasks, u.episodes_per_task, u.cycles, u.n_tasks, u.n_phases) == (tuple(NE_TASKS), 1000, 3, 4, 12)
    assert isinstance(u, PhasedEnv)
    space = env.observation_space
    assert space.shape == (348 + 4,) and space.dtype == np.float64
    assert np.all(space.low[:-4] == -np.inf) and np.all(space.high[:-4] == np.inf)
    assert np.all(space.low[-4:] == 0) and np.all(space.high[-4:] == 1)
    assert env.action_space == gym.spaces.Box(-1, 1, (17,), np.float32)
    assert env.spec.max_episode_steps is None  # each task keeps its own 1000-step limit inside

    small = ContinualMuJoCoEnv(tasks=["Hopper", "HalfCheetah", "Hopper"], cycles=2)
    assert (small.n_tasks, small.task_names, small.n_phases) == (2, ("Hopper", "HalfCheetah"), 6)
    assert small.observation_space.shape == (17 + 2,) and small.action_space.shape == (6,)
    assert np.all(small.observation_space.low[-2:] == 0) and np.all(small.observation_space.low[:-2] == -np.inf)


def play_episode(env, action=None):
    """Steps until the episode ends; returns the infos of all steps."""
    infos, done = [], False
    while not done:
        a = env.action_space.sample() if action is None else action
        _, _, terminated, truncated, info = env.step(a)
        infos.append(info)
        done = terminated or truncated
    return infos


def test_switches_at_the_scheduled_episodes_then_stays_on_the_last_task():
    env = make(episodes_per_task=2, cycles=2, max_episode_steps=3)  # gym.make's own time limit
    obs, info = env.reset(seed=0)
    assert (info["task"], info["task_id"], info["phase"], info["cycle"], info["task_switch"]) == ("HalfCheetah", 0, 0, 0, True)
    seen = []
    for episode in range(20):
        infos = play_episode(env)
        seen.append(infos[0]["task"])
        assert {i["task"] for i in infos} == {infos[0]["task"]}
        # task_switch on the first step of a block's first episode only
        assert [i["task_switch"] for i in infos] == [episode % 2 == 0 and episode < 16] + [False] * (len(infos) - 1)
        obs, info = env.reset()
        task = info["task"]
        np.testing.assert_array_equal(obs[-4:], np.eye(4)[NE_TASKS.index(task)])
        assert np.count_nonzero(obs[OBS[task] : 348]) == 0  # zero padding after the task's own observation
    assert seen == [t for t in NE_TASKS * 2 for _ in range(2)] + ["Hopper"] * 4
    assert env.unwrapped.phase == 7 and env.unwrapped.finished


def test_padding_and_action_rescaling_match_the_plain_tasks():
    env = ContinualMuJoCoEnv()
    # HalfCheetah (task id 0) gets seed + 0: the same start as the plain task; extra action dims are ignored
    obs, _ = env.reset(seed=5)
    plain = gym.make("HalfCheetah-v5")
    plain_obs, _ = plain.reset(seed=5)
    np.testing.assert_array_equal(obs[:17], plain_obs)
    action = np.linspace(-1, 1, 17).astype(np.float32)
    noisy = action.copy()
    noisy[6:] = 0.77
    np.testing.assert_array_equal(env.step(noisy)[0][:17], plain.step(action[:6])[0])
    # Humanoid (task id 1, seed + 1): [-1, 1] maps onto its [-0.4, 0.4]
    env.set_phase(1)
    obs, info = env.reset(seed=5)
    assert info["task"] == "Humanoid" and info["task_switch"]
    plain = gym.make("Humanoid-v5")
    np.testing.assert_array_equal(obs[:348], plain.reset(seed=6)[0])
    ones = np.ones(17, dtype=np.float32)
    obs, reward, *_ = env.step(ones)
    plain_obs, plain_reward, *_ = plain.step(0.4 * ones)
    np.testing.assert_allclose(obs[:348], plain_obs, rtol=1e-12)
    assert reward == pytest.approx(plain_reward)
    # out-of-range actions are clipped to the task's bounds
    env.reset(seed=9)
    plain.reset(seed=10)
    np.testing.assert_allclose(env.step(3 * ones)[0][:348], plain.step(0.4 * ones)[0], rtol=1e-12)


def test_set_phase_holds_and_requires_a_reset():
    env = make(episodes_per_task=1, max_episode_steps=2)
    env.reset(seed=0)
    env.unwrapped.set_phase(6)  # cycle 1, Ant
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(env.action_space.sample())
    _, info = env.reset()
    assert (info["task"], info["phase"], info["cycle"], info["task_switch"]) == ("Ant", 6, 1, True)
    for _ in range(4):
        play_episode(env)
        _, info = env.reset()
        assert info["task"] == "Ant" and not info["task_switch"]
    assert env.unwrapped.phase_name == "Ant" and env.unwrapped.phase == 6
    env.unwrapped.set_phase(2, hold=False)
    assert env.reset()[1]["task"] == "Ant"
    play_episode(env)
    assert env.reset()[1]["task"] == "Hopper"  # moving again


def vec_schedule(venv, n_episodes: int) -> list[list[str]]:
    """Task of each finished episode, per env copy, until each copy has finished ``n_episodes``."""
    venv.reset()
    tasks: list[list[str]] = [[] for _ in range(venv.num_envs)]
    while min(len(t) for t in tasks) < n_episodes:
        _, _, dones, infos = venv.step(np.zeros((venv.num_envs, 17), dtype=np.float32))
        for i, (done, info) in enumerate(zip(dones, infos, strict=True)):
            if done:
                tasks[i].append(info["task"])
    return [t[:n_episodes] for t in tasks]


@pytest.mark.parametrize("vec_cls", [DummyVecEnv, SubprocVecEnv])
def test_schedule_under_vec_envs(vec_cls):
    spec = gym.spec(CONTINUAL_MUJOCO_ID)  # the zoo makes envs from the spec too: nothing to re-register in workers
    fn = functools.partial(gym.make, spec, episodes_per_task=2, cycles=1, max_episode_steps=3)
    venv = vec_cls([fn, fn])
    try:
        expected = [t for t in NE_TASKS for _ in range(2)] + ["Hopper"]
        assert vec_schedule(venv, 9) == [expected, expected]
        assert venv.get_attr("n_tasks") == [4, 4] and venv.get_attr("phase") == [3, 3]
        venv.env_method("set_phase", 1)
        assert venv.get_attr("phase_name") == ["Humanoid", "Humanoid"]
        assert vec_schedule(venv, 3) == [["Humanoid"] * 3] * 2
    finally:
        venv.close()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tasks": ["HalfCheetah", "Swimmer"]}, r"^tasks\[1\] must be one of \('Ant', .*\), got 'Swimmer'$"),
        ({"tasks": []}, "tasks must be a non-empty sequence"),
        ({"tasks": "Hopper"}, "tasks must be a non-empty sequence"),
        ({"episodes_per_task": 0}, "episodes_per_task must be a positive integer"),
        ({"episodes_per_task": 2.5}, "episodes_per_task must be a positive integer"),
        ({"cycles": -1}, "cycles must be a positive integer"),
        ({"task_kwargs": {"Walker2d": {}}}, "task_kwargs names tasks not in tasks"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContinualMuJoCoEnv(**kwargs)


def test_bad_phase():
    env = ContinualMuJoCoEnv(tasks=["Hopper"], cycles=2)
    for bad in (-1, 2, 0.5):
        with pytest.raises(ValueError, match="phase must be"):
            env.set_phase(bad)
