"""Cycle Friction envs (P3O Sec. 5.1): registration, the friction read back from the MuJoCo model at every step,
the phase contract (also through a VecEnv), and bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

from sb3_plasticity import (
    CYCLE_FRICTION_TASKS,
    PhasedEnv,
    cycle_friction_env_id,
    make_cycle_friction_env,
    register_envs,
)

SCHEDULE = [4.0, 3.0, 2.0, 1.0, 2.0, 3.0]  # P3O Fig. 3, repeated


def make(task: str = "Hopper", **kwargs):
    return gym.make(cycle_friction_env_id(task), **kwargs)


def sliding(env) -> np.ndarray:
    return env.unwrapped.model.geom_friction[:, 0].copy()


@pytest.mark.parametrize("task", CYCLE_FRICTION_TASKS)
def test_ids_wrap_the_v5_tasks(task):
    env, plain = make(task), gym.make(f"{task}-v5")
    assert env.observation_space == plain.observation_space and env.action_space == plain.action_space
    assert env.spec.max_episode_steps == plain.spec.max_episode_steps == 1000
    assert isinstance(env.unwrapped, PhasedEnv) and env.unwrapped.n_phases is None
    # scale mode: phase 0 is 4x the task's own sliding friction, other friction columns untouched
    np.testing.assert_allclose(sliding(env), 4.0 * plain.unwrapped.model.geom_friction[:, 0])
    np.testing.assert_array_equal(env.unwrapped.model.geom_friction[:, 1:], plain.unwrapped.model.geom_friction[:, 1:])
    assert env.unwrapped.phase_name == "friction_4"


def test_friction_changes_exactly_at_the_scheduled_steps_and_cycles():
    period = 3
    env = make("Hopper", period=period)
    base = gym.make("Hopper-v5").unwrapped.model.geom_friction[:, 0].copy()
    env.reset(seed=0)
    for t in range(2 * len(SCHEDULE) * period + 2):  # two full cycles and a bit
        expected = SCHEDULE[(t // period) % len(SCHEDULE)]
        np.testing.assert_allclose(sliding(env), base * expected)  # what step t runs with
        assert env.unwrapped.phase == t // period
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert info["friction"] == expected and info["phase"] == t // period
        np.testing.assert_allclose(sliding(env), base * SCHEDULE[((t + 1) // period) % len(SCHEDULE)])
        if t == 7:
            _, reset_info = env.reset()  # a reset does not restart the schedule
            assert reset_info["phase"] == (t + 1) // period
        elif terminated or truncated:
            env.reset()
    assert env.unwrapped.steps == 2 * len(SCHEDULE) * period + 2


def test_coefficient_one_is_the_plain_task_and_friction_matters():
    actions = np.random.default_rng(0).uniform(-1, 1, size=(40, 3)).astype(np.float32)

    def rollout(env):
        obs = [env.reset(seed=3)[0]]
        obs += [env.step(a)[0] for a in actions]
        return np.array(obs)

    plain = rollout(gym.make("Hopper-v5"))
    env = make("Hopper")
    at_four = rollout(env)
    env.unwrapped.set_phase(3)  # coefficient 1
    assert env.unwrapped.friction == 1.0
    np.testing.assert_array_equal(rollout(env), plain)
    assert not np.allclose(at_four, plain)


def test_replace_mode_and_custom_schedule():
    env = make("HalfCheetah", period=2, frictions=(0.5, 2.5), mode="replace")
    np.testing.assert_array_equal(sliding(env), 0.5)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.step(env.action_space.sample())
    np.testing.assert_array_equal(sliding(env), 2.5)
    assert env.unwrapped.phase_name == "friction_2.5"


def test_set_phase_holds_and_resumes():
    env = make("Hopper", period=2)
    base = sliding(env) / 4.0
    env.reset(seed=0)
    env.unwrapped.set_phase(3)
    np.testing.assert_allclose(sliding(env), base * 1.0)  # at once, mid-episode too
    for _ in range(7):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert info["phase"] == 3 and info["friction"] == 1.0
        if terminated or truncated:
            env.reset()
    assert env.unwrapped.phase == 3 and env.unwrapped.phase_name == "friction_1"
    env.unwrapped.set_phase(6, hold=False)  # back to 4 and moving again
    env.reset(seed=1)
    assert [env.step(env.action_space.sample())[4]["friction"] for _ in range(3)] == [4.0, 4.0, 3.0]


def test_phase_contract_through_a_vec_env():
    venv = make_vec_env(cycle_friction_env_id("Walker2d"), n_envs=2, env_kwargs={"period": 5})
    venv.reset()
    assert venv.get_attr("phase") == [0, 0] and venv.get_attr("n_phases") == [None, None]
    venv.env_method("set_phase", 2, indices=[1])
    assert venv.get_attr("phase") == [0, 2] and venv.get_attr("phase_name") == ["friction_4", "friction_2"]
    for _ in range(5):
        _, _, _, infos = venv.step(np.zeros((2, 6), dtype=np.float32))
    assert [info["friction"] for info in infos] == [4.0, 2.0]
    assert venv.get_attr("phase") == [1, 2]  # env 1 is held
    venv.close()


def test_registration_is_idempotent():
    ids = sorted(k for k in gym.registry if k.startswith("sb3_plasticity/"))
    register_envs()
    register_envs()
    assert sorted(k for k in gym.registry if k.startswith("sb3_plasticity/")) == ids


@pytest.mark.parametrize("period", [0, -5, 2.5, True, "10"])
def test_bad_period(period):
    with pytest.raises(ValueError, match="period must be a positive integer"):
        make("Hopper", period=period)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frictions": ()}, "frictions"),
        ({"frictions": (4, 0)}, r"^frictions\[1\] must be a number in \(0, inf\), got 0$"),
        ({"frictions": (4, float("nan"))}, r"^frictions\[1\] must be a number in \(0, inf\), got nan$"),
        ({"mode": "add"}, "mode must be"),
    ],
)
def test_bad_schedule(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make("Hopper", **kwargs)


def test_unknown_task_and_bad_phase():
    with pytest.raises(ValueError, match=r"^task must be one of \('Hopper', .*'HumanoidStandup'\), got 'Swimmer'$"):
        make_cycle_friction_env("Swimmer")
    with pytest.raises(ValueError, match=r"^task must be one of \('Hopper', .*\), got 'hopper'$"):
        cycle_friction_env_id("hopper")
    env = make_cycle_friction_env("Hopper", period=10)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="phase must be"):
            env.set_phase(bad)
    env.set_phase(np.int64(4))
    assert env.phase == 4 and env.steps == 40
