"""Continual MuJoCo (NE paper, Sec. 4.2, after Abbas et al. 2023): one env that runs a sequence of MuJoCo tasks.

"The agent is trained to master a sequence of 4 environments (HalfCheetah -> Humanoid -> Ant -> Hopper),
starting with HalfCheetah for 1000 episodes of training, followed by the next task for the same number of
episodes. [...] The agent repeats this sequence three times". Id ``sb3_plasticity/ContinualMuJoCo-v0``::

    env = gym.make("sb3_plasticity/ContinualMuJoCo-v0", episodes_per_task=1000, cycles=3)

The whole sequence lives in one env with fixed spaces, so SB3 and rl-zoo see one ordinary env:

- **Observation**: ``Box`` of size ``obs_size + n_tasks`` (float64, as the v5 tasks): the active task's
  observation zero-padded to the largest task's size (348, Humanoid), then a one-hot task id over the
  ``n_tasks`` distinct tasks (in order of first appearance in ``tasks``). CONTRACT (used by the multi-head
  policies): ``low=-inf, high=inf`` on the first ``obs_size`` dims, ``low=0, high=1`` on exactly the last
  ``n_tasks`` dims; ``n_tasks`` is an attribute.
- **Action**: ``Box(-1, 1)`` of the largest task's size (17, Humanoid), float32. The active task reads the first
  ``n`` dims (its own action size) and ignores the rest; each dim is clipped to [-1, 1] and rescaled linearly onto
  the task's own bounds (Humanoid's are [-0.4, 0.4], the others' [-1, 1]), so a policy's full range always
  covers every task's full range. The tasks' rewards are passed on unchanged (their scales differ).
- **Episodes**: each task keeps its v5 time limit (1000 steps) and its own termination. An episode counts at the
  ``reset`` that follows it if it had at least one step, whatever ended it, so an outer time limit works too:
  ``gym.make("sb3_plasticity/ContinualMuJoCo-v0", max_episode_steps=50)`` (``gym.make``'s own argument, also an
  ``env_kwargs`` entry of the zoo) cuts every task's episodes at 50 steps.
- **Switching**: the ``reset`` that counts the ``episodes_per_task``-th episode of a block starts the next block.
  ``info`` of every ``reset`` and ``step`` carries ``task`` (name), ``task_id`` (one-hot index), ``phase`` (block
  index), ``cycle`` and ``task_switch``, True in the ``reset`` that starts a block and in that block's first step
  (the step info is what SB3 callbacks see).
- **End of the sequence**: after the last block (``len(tasks) * cycles`` blocks) the env stays on the last task
  (Hopper) for good and ``finished`` becomes True; it does not start a fourth cycle. Size ``n_timesteps`` to the
  sequence (episodes end early on Hopper, Ant and Humanoid, so step counts vary).
- **Vectorised copies** each run their own sequence at their own pace.

**Phase contract** (see :mod:`sb3_plasticity.envs.base`): ``phase`` is the index of the task block over all
cycles (0 .. ``n_phases - 1``, ``n_phases = len(tasks) * cycles``), ``phase_name`` the task name
(``"HalfCheetah"``), and ``set_phase(k, hold=True)`` makes block ``k`` the current one with no episode counted;
it ends the current episode: the next ``reset`` starts block ``k`` (with ``task_switch``) and a ``step`` before
that ``reset`` raises. With ``hold`` the env never leaves that block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_plasticity.checks import check_choice, check_positive_int, check_sequence
from sb3_plasticity.envs.base import check_phase_index
from sb3_plasticity.extras import require_extra

__all__ = ["CONTINUAL_MUJOCO_TASKS", "ContinualMuJoCoEnv"]

# the MuJoCo v5 tasks a sequence may use (name -> gymnasium id)
CONTINUAL_MUJOCO_TASKS: dict[str, str] = {
    name: f"{name}-v5" for name in ("HalfCheetah", "Humanoid", "Ant", "Hopper", "Walker2d", "HumanoidStandup")
}


class ContinualMuJoCoEnv(gym.Env):
    """A sequence of Gymnasium v5 MuJoCo tasks in one env with fixed, padded spaces (see the module docstring).

    :param tasks: task names in order (default ``("HalfCheetah", "Humanoid", "Ant", "Hopper")``, NE Sec. 4.2);
        each one of :data:`CONTINUAL_MUJOCO_TASKS`; a name may repeat (it keeps one env and one task id).
    :param episodes_per_task: counted episodes per task block, > 0 (default 1000, NE Sec. 4.2).
    :param cycles: repetitions of the whole sequence, > 0 (default 3, NE Sec. 4.2).
    :param render_mode: passed to every task's env.
    :param task_kwargs: ``{name: kwargs}`` for a task's ``gym.make`` (e.g. reward weights); default none.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"]}

    def __init__(
        self,
        tasks: Sequence[str] = ("HalfCheetah", "Humanoid", "Ant", "Hopper"),
        episodes_per_task: int = 1000,
        cycles: int = 3,
        render_mode: str | None = None,
        task_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        names = sorted(CONTINUAL_MUJOCO_TASKS)
        self.tasks: tuple[str, ...] = check_sequence("tasks", tasks, lambda name, task: check_choice(name, task, names))
        self.episodes_per_task = check_positive_int("episodes_per_task", episodes_per_task)
        self.cycles = check_positive_int("cycles", cycles)
        task_kwargs = dict(task_kwargs or {})
        if set(task_kwargs) - set(self.tasks):
            raise ValueError(f"task_kwargs names tasks not in tasks: {sorted(set(task_kwargs) - set(self.tasks))}")
        self.render_mode = render_mode

        # one env per distinct task, in order of first appearance (= the one-hot index)
        self.task_names: tuple[str, ...] = tuple(dict.fromkeys(self.tasks))
        self.n_tasks = len(self.task_names)
        require_extra("mujoco", "sb3_plasticity/ContinualMuJoCo-v0 (its tasks are Gymnasium's MuJoCo envs)")
        self._envs = [
            gym.make(
                CONTINUAL_MUJOCO_TASKS[name],
                render_mode=render_mode,
                disable_env_checker=True,
                **task_kwargs.get(name, {}),
            )
            for name in self.task_names
        ]
        obs_sizes = [int(np.prod(env.observation_space.shape)) for env in self._envs]
        act_sizes = [int(np.prod(env.action_space.shape)) for env in self._envs]
        self.obs_size = max(obs_sizes)  # padded part; the one-hot follows
        self._obs_sizes = obs_sizes
        self._act_sizes = act_sizes
        self._act_low = [env.action_space.low.astype(np.float64) for env in self._envs]
        self._act_high = [env.action_space.high.astype(np.float64) for env in self._envs]
        low = np.concatenate([np.full(self.obs_size, -np.inf), np.zeros(self.n_tasks)])
        high = np.concatenate([np.full(self.obs_size, np.inf), np.ones(self.n_tasks)])
        self.observation_space = spaces.Box(low=low, high=high, dtype=np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(max(act_sizes),), dtype=np.float32)

        self.n_phases: int = len(self.tasks) * self.cycles
        self._block = 0
        self._episodes = 0  # counted episodes of the current block
        self._episode_steps = 0  # steps of the running episode
        self.held = False
        self._switch_pending = True  # the first reset starts block 0
        self._first_step = False  # the next step is the first of a new block
        self._needs_reset = True
        self._pending_seeds: dict[int, int] = {}

    # -- phase contract ----------------------------------------------------------------------------------
    @property
    def phase(self) -> int:
        """Index of the current task block over all cycles, in ``[0, n_phases)``."""
        return self._block

    @property
    def phase_name(self) -> str:
        """The current task's name (``"HalfCheetah"``)."""
        return self.task

    def set_phase(self, phase: int, hold: bool = True) -> None:
        """Make block ``phase`` current with no episode counted; it starts at the next ``reset`` (a ``step`` before
        that raises). ``hold`` keeps the env on that block for good."""
        self._block = check_phase_index(phase, self.n_phases)
        self._episodes = 0
        self._episode_steps = 0  # the running episode is abandoned, not counted
        self.held = bool(hold)
        self._switch_pending = True
        self._needs_reset = True

    # -- the schedule -------------------------------------------------------------------------------------
    @property
    def task(self) -> str:
        """Name of the current task."""
        return self.tasks[self._block % len(self.tasks)]

    @property
    def task_id(self) -> int:
        """One-hot index of the current task among ``task_names``."""
        return self.task_names.index(self.task)

    @property
    def cycle(self) -> int:
        """0-based index of the current cycle through ``tasks``."""
        return self._block // len(self.tasks)

    @property
    def episodes_in_task(self) -> int:
        """Episodes counted in the current block."""
        return self._episodes

    @property
    def finished(self) -> bool:
        """True once the last block has had its ``episodes_per_task`` episodes (the env stays on it)."""
        return self._block == self.n_phases - 1 and self._episodes >= self.episodes_per_task

    # -- gymnasium API -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            # each task env gets its own seed at its next reset, so a seeded run is reproducible
            self._pending_seeds = {i: seed + i for i in range(self.n_tasks)}
        if self._episode_steps > 0:  # the episode that just ended (however it ended)
            self._episodes += 1
            self._episode_steps = 0
        if not self.held and self._episodes >= self.episodes_per_task and self._block < self.n_phases - 1:
            self._block += 1
            self._episodes = 0
            self._switch_pending = True
        switch, self._switch_pending = self._switch_pending, False
        self._first_step = switch
        self._needs_reset = False
        i = self.task_id
        obs, info = self._envs[i].reset(seed=self._pending_seeds.pop(i, None), options=options)
        return self._pad(obs, i), self._info(info, switch)

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("ContinualMuJoCoEnv: call reset() first (after construction, set_phase() or an episode's end)")
        i = self.task_id
        n = self._act_sizes[i]
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[:n], -1.0, 1.0)
        # [-1, 1] -> the task's own [low, high], per dim
        scaled = self._act_low[i] + (a + 1.0) * 0.5 * (self._act_high[i] - self._act_low[i])
        obs, reward, terminated, truncated, info = self._envs[i].step(scaled.astype(np.float32))
        switch, self._first_step = self._first_step, False
        self._episode_steps += 1
        self._needs_reset = bool(terminated or truncated)
        return self._pad(obs, i), float(reward), terminated, truncated, self._info(info, switch)

    def render(self):
        return self._envs[self.task_id].render()

    def close(self) -> None:
        for env in self._envs:
            env.close()

    # -- helpers ------------------------------------------------------------------------------------------
    def _pad(self, obs: np.ndarray, task_id: int) -> np.ndarray:
        out = np.zeros(self.obs_size + self.n_tasks, dtype=np.float64)
        out[: self._obs_sizes[task_id]] = np.asarray(obs, dtype=np.float64).reshape(-1)
        out[self.obs_size + task_id] = 1.0
        return out

    def _info(self, info: dict[str, Any], switch: bool) -> dict[str, Any]:
        info = dict(info)
        info.update(task=self.task, task_id=self.task_id, phase=self._block, cycle=self.cycle, task_switch=switch)
        return info
