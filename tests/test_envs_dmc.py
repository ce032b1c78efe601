"""DeepMind Control envs: registered ids, state and pixel shapes and dtypes, frame stacking, action repeat, episode
ends, seeding, SB3's CnnPolicy taking the pixels as they are, and bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from dm_control import suite
from stable_baselines3 import SAC
from stable_baselines3.common.vec_env import VecTransposeImage

from sb3_plasticity import DMC_TASKS, DMCEnv, dmc_env_id, register_dmc

# NE Sec. 4.3 (pixels), GraMa Sec. 5.1 / App. C, P3O Sec. 5.2
PAPER_TASKS = {
    ("reacher", "easy"),
    ("reacher", "hard"),
    ("walker", "walk"),
    ("cartpole", "swingup_sparse"),
    ("dog", "stand"),
    ("dog", "walk"),
    ("dog", "run"),
    ("humanoid", "stand"),
    ("humanoid", "walk"),
    ("humanoid", "run"),
    ("quadruped", "run"),
    ("hopper", "hop"),
}


def test_the_papers_tasks_are_registered():
    assert set(DMC_TASKS) >= PAPER_TASKS and set(DMC_TASKS) <= set(suite.ALL_TASKS)
    for domain, task in DMC_TASKS:
        state, pixels = gym.spec(dmc_env_id(domain, task)), gym.spec(dmc_env_id(domain, task, pixels=True))
        assert state.id == f"sb3_plasticity/DMC-{domain}-{task}-v0" and state.kwargs["pixels"] is False
        assert pixels.id == f"sb3_plasticity/DMCPixels-{domain}-{task}-v0" and pixels.kwargs["pixels"] is True
        assert state.max_episode_steps is None  # dm_control's own time limit


def test_state_env():
    env = gym.make("sb3_plasticity/DMC-cheetah-run-v0")
    assert env.observation_space == gym.spaces.Box(-np.inf, np.inf, (17,), np.float32)  # position 8 + velocity 9
    assert env.action_space == gym.spaces.Box(-1, 1, (6,), np.float32)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (17,)
    steps, truncated = 0, False
    while not truncated and steps < 2000:
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert 0.0 <= reward <= 1.0 and not terminated
        steps += 1
    assert steps == 1000 and truncated  # 1000 control steps, action repeat 1
    # same seed, same start; another seed, another start (reacher's target position is random)
    reacher = gym.make("sb3_plasticity/DMC-reacher-easy-v0")
    first = reacher.reset(seed=3)[0]
    np.testing.assert_array_equal(reacher.reset(seed=3)[0], first)
    assert not np.array_equal(reacher.reset(seed=4)[0], first)


def test_pixel_env_stacks_frames_repeats_actions_and_fits_cnn_policy():
    # time_limit 0.1 s = 10 control steps of 0.01 s = 5 agent steps with action repeat 2
    env = gym.make("sb3_plasticity/DMCPixels-cheetah-run-v0", task_kwargs={"time_limit": 0.1})
    assert env.observation_space == gym.spaces.Box(0, 255, (9, 84, 84), np.uint8)
    assert env.unwrapped.action_repeat == 2 and env.unwrapped.camera_id == 0
    obs, _ = env.reset(seed=0)
    assert obs.shape == (9, 84, 84) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs[0:3], obs[6:9])  # the first frame three times
    frames = [obs]
    for _ in range(5):
        obs, _, terminated, truncated, _ = env.step(np.ones(6, dtype=np.float32))
        frames.append(obs)
        np.testing.assert_array_equal(obs[0:6], frames[-2][3:9])  # oldest frame dropped, newest appended
    assert not np.array_equal(frames[-1][6:9], frames[-2][6:9])  # the cheetah moved
    assert truncated and not terminated
    # SB3 takes (9, 84, 84) uint8 as a channel-first image: no VecTransposeImage
    model = SAC("CnnPolicy", env, buffer_size=10, learning_starts=0, device="cpu")
    assert not isinstance(model.get_env(), VecTransposeImage)


def test_drq_camera_and_render():
    quadruped = DMCEnv("quadruped", "run", pixels=True)
    assert quadruped.camera_id == 2 and quadruped.action_repeat == 2  # DrQ's quadruped camera
    env = DMCEnv("cartpole", "swingup_sparse", render_mode="rgb_array", render_size=(32, 48))
    env.reset(seed=0)
    assert env.render().shape == (32, 48, 3) and env.action_repeat == 1


def test_register_more_tasks():
    ids = register_dmc("walker", "run")
    assert ids == ("sb3_plasticity/DMC-walker-run-v0", "sb3_plasticity/DMCPixels-walker-run-v0")
    assert register_dmc("walker", "run") == ids  # again: nothing changes
    assert gym.make(ids[0]).observation_space.shape == (24,)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("cheetah", "walk"), {}, r"unknown DeepMind Control task 'cheetah'-'walk'; tasks of 'cheetah': \['run'\]"),
        (("spaceship", "fly"), {}, "unknown DeepMind Control task 'spaceship'-'fly'; domains: "),
        (("cheetah", "run"), {"action_repeat": 0}, "action_repeat must be a positive integer"),
        (("cheetah", "run"), {"pixels": True, "frame_stack": 0}, "frame_stack must be a positive integer"),
        (("cheetah", "run"), {"render_mode": "human"}, "render_mode must be None or 'rgb_array'"),
    ],
)
def test_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DMCEnv(*args, **kwargs)
