"""DeepMind Control Suite tasks as Gymnasium envs, from state or from pixels, built on ``dm_control`` directly.

Ids (registered on ``import sb3_plasticity`` for the tasks of :data:`DMC_TASKS`; :func:`register_dmc` adds others):

- ``sb3_plasticity/DMC-<domain>-<task>-v0``: state. The observation dict flattened into one float32 vector (the
  dict's own key order, each entry flattened), actions the task's bounds (``[-1, 1]``), action repeat 1.
- ``sb3_plasticity/DMCPixels-<domain>-<task>-v0``: pixels, DrQ's setting (Yarats et al. 2021, kept by DrQ-v2 and
  the NE paper's Table 3): 84x84 RGB frames, the last 3 stacked on the channel axis into a channel-first uint8
  ``(9, 84, 84)`` observation (SB3's ``CnnPolicy`` takes it as it is), action repeat 2 (NE Table 3), camera 0
  (camera 2 for quadruped, as DrQ). On reset the stack holds the first frame 3 times.

For example ``sb3_plasticity/DMCPixels-walker-walk-v0`` or ``sb3_plasticity/DMC-dog-run-v0``; kwargs of
:class:`DMCEnv` go through ``gym.make`` / the zoo's ``env_kwargs``. An episode is dm_control's own time limit
(1000 control steps for these tasks, so 500 agent steps with action repeat 2), reported as ``truncated``;
``terminated`` only if the task ends with discount 0. The reward of an agent step is the sum over its repeats.

Rendering goes through dm_control's MuJoCo renderer, which chooses its OpenGL backend once, at dm_control's first
import, and by default tries GLFW first, which fails without a display. So on Linux without a display (no
``DISPLAY``/``WAYLAND_DISPLAY``) and with ``MUJOCO_GL`` unset, importing this module (``import sb3_plasticity`` does)
sets ``MUJOCO_GL=egl`` (headless GPU or Mesa rendering). Set ``MUJOCO_GL`` yourself to choose another backend
(``osmesa``, ``glfw``), and import ``sb3_plasticity`` before ``dm_control`` or set it in the shell.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_plasticity.checks import check_choice, check_positive_int
from sb3_plasticity.extras import require_extra

__all__ = ["DMC_TASKS", "DMCEnv", "dmc_env_id", "register_dmc"]

# The DMC tasks of the three papers (each registered as a state and a pixel id):
DMC_TASKS: tuple[tuple[str, str], ...] = (
    # NE Sec. 4.3 (DrQ, pixels): Reacher Easy/Hard, Walker Walk, Cartpole Swingup Sparse
    ("reacher", "easy"),
    ("reacher", "hard"),
    ("walker", "walk"),
    ("cartpole", "swingup_sparse"),
    # GraMa Sec. 5.1, Fig. 1 and 8, App. C Table 8 (BRO-net): Dog Stand/Walk/Run, Humanoid Stand/Walk/Run
    ("dog", "stand"),
    ("dog", "walk"),
    ("dog", "run"),
    ("humanoid", "stand"),
    ("humanoid", "walk"),
    ("humanoid", "run"),
    # GraMa App. C Table 9 (DrQ-v2, pixels): Quadruped Run
    ("quadruped", "run"),
    # P3O Sec. 5.2 (state-based DMC): Hopper Hop
    ("hopper", "hop"),
    # DrQ's standard benchmark task, the cheapest to render
    ("cheetah", "run"),
)

# DrQ / DrQ-v2 render quadruped from camera 2 (camera 0 is too far away), everything else from camera 0.
_DRQ_CAMERA = {"quadruped": 2}


def _default_to_headless_gl() -> None:
    """``MUJOCO_GL=egl`` where dm_control's default (GLFW) cannot work: Linux, no display, nothing chosen."""
    headless = sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "egl"


_default_to_headless_gl()  # before anything imports dm_control, which reads it once


def _import_suite():
    """``dm_control.suite``, imported when the first env is made (registering the ids does not need it)."""
    require_extra("dmc", "the DeepMind Control envs (sb3_plasticity.envs.dmc)")
    from dm_control import suite

    return suite


class DMCEnv(gym.Env):
    """One DeepMind Control Suite task as a Gymnasium env, from state or pixels (see the module docstring).

    :param domain: dm_control domain (``"walker"``); any of ``dm_control.suite.ALL_TASKS``.
    :param task: its task (``"walk"``).
    :param pixels: observe stacked camera frames instead of the state vector (default False).
    :param action_repeat: physics control steps per agent step, their rewards summed (default: 2 with ``pixels``,
        NE Table 3 / DrQ; 1 without).
    :param frame_stack: frames stacked into one pixel observation, pixels only (default 3, DrQ).
    :param height: frame height in pixels (default 84, DrQ).
    :param width: frame width in pixels (default 84, DrQ).
    :param camera_id: camera of the pixel observations (default: DrQ's, 2 for quadruped and 0 otherwise).
    :param render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns a ``render_size`` frame from ``camera_id``).
    :param render_size: ``(height, width)`` of ``render()`` frames (default (480, 480)).
    :param task_kwargs: the task's keyword arguments for ``dm_control.suite.load`` (e.g. ``{"time_limit": 10}``, in
        seconds of simulated time); seeds go through ``reset(seed=...)``.
    :param environment_kwargs: ``dm_control.suite.load``'s ``environment_kwargs`` (e.g. ``{"n_sub_steps": 2}``).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        domain: str,
        task: str,
        pixels: bool = False,
        action_repeat: int | None = None,
        frame_stack: int = 3,
        height: int = 84,
        width: int = 84,
        camera_id: int | None = None,
        render_mode: str | None = None,
        render_size: tuple[int, int] = (480, 480),
        task_kwargs: dict[str, Any] | None = None,
        environment_kwargs: dict[str, Any] | None = None,
    ) -> None:
        suite = _import_suite()
        if (domain, task) not in suite.ALL_TASKS:
            same_domain = sorted(t for d, t in suite.ALL_TASKS if d == domain)
            domains = sorted({d for d, _ in suite.ALL_TASKS})
            hint = f"tasks of {domain!r}: {same_domain}" if same_domain else f"domains: {domains}"
            raise ValueError(f"unknown DeepMind Control task {domain!r}-{task!r}; {hint}")
        check_choice("render_mode", render_mode, (None, "rgb_array"))
        self.domain = domain
        self.task_name = task
        self.pixels = bool(pixels)
        if action_repeat is None:
            action_repeat = 2 if pixels else 1
        self.action_repeat = check_positive_int("action_repeat", action_repeat)
        self.frame_stack = check_positive_int("frame_stack", frame_stack)
        self.height = check_positive_int("height", height)
        self.width = check_positive_int("width", width)
        self.camera_id = _DRQ_CAMERA.get(domain, 0) if camera_id is None else int(camera_id)
        self.render_mode = render_mode
        self.render_size = (
            check_positive_int("render_size[0]", render_size[0]),
            check_positive_int("render_size[1]", render_size[1]),
        )
        self._env = suite.load(domain, task, task_kwargs=task_kwargs, environment_kwargs=environment_kwargs)

        spec = self._env.action_spec()
        self.action_space = spaces.Box(
            low=spec.minimum.astype(np.float32), high=spec.maximum.astype(np.float32), dtype=np.float32
        )
        self._action_low, self._action_high = spec.minimum, spec.maximum
        if self.pixels:
            shape = (3 * self.frame_stack, self.height, self.width)
            self.observation_space = spaces.Box(low=0, high=255, shape=shape, dtype=np.uint8)
        else:
            size = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.observation_space = spaces.Box(low=-np.inf, high=np.inf, shape=(size,), dtype=np.float32)
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)
        fps = 1.0 / (self._env.control_timestep() * self.action_repeat)
        self.metadata = {**self.metadata, "render_fps": fps}

    # -- gymnasium API -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)  # dm_control draws initial states from the task's RandomState
        time_step = self._env.reset()
        if self.pixels:
            frame = self._frame()
            for _ in range(self.frame_stack):
                self._frames.append(frame)
        return self._observation(time_step), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), self._action_low, self._action_high)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        if self.pixels:
            self._frames.append(self._frame())
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        return self._observation(time_step), float(reward), terminated, truncated, {}

    def render(self):
        if self.render_mode is None:
            return None
        height, width = self.render_size
        return self._env.physics.render(height=height, width=width, camera_id=self.camera_id)

    def close(self) -> None:
        self._env.close()

    # -- helpers ------------------------------------------------------------------------------------------
    def _frame(self) -> np.ndarray:
        frame = self._env.physics.render(height=self.height, width=self.width, camera_id=self.camera_id)
        return np.ascontiguousarray(frame.transpose(2, 0, 1))  # HWC -> CHW

    def _observation(self, time_step) -> np.ndarray:
        if self.pixels:
            return np.concatenate(list(self._frames), axis=0)
        parts = [np.asarray(v, dtype=np.float32).reshape(-1) for v in time_step.observation.values()]
        return np.concatenate(parts)


def dmc_env_id(domain: str, task: str, pixels: bool = False) -> str:
    """``sb3_plasticity/DMC-<domain>-<task>-v0``, or ``sb3_plasticity/DMCPixels-<domain>-<task>-v0`` with ``pixels``."""
    return f"sb3_plasticity/{'DMCPixels' if pixels else 'DMC'}-{domain}-{task}-v0"


def register_dmc(domain: str, task: str) -> tuple[str, str]:
    """Register the state and pixel ids of one more dm_control task (no-op for ids that exist); returns the ids.

    The task is checked when the env is made (so registering does not import dm_control).
    """
    ids = []
    for pixels in (False, True):
        env_id = dmc_env_id(domain, task, pixels)
        if env_id not in gym.registry:
            # no max_episode_steps: dm_control's own time limit ends the episode (as `truncated`)
            gym.register(
                id=env_id,
                entry_point="sb3_plasticity.envs.dmc:DMCEnv",
                kwargs={"domain": domain, "task": task, "pixels": pixels},
            )
        ids.append(env_id)
    return ids[0], ids[1]
