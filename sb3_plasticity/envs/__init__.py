"""Non-stationary, continual and DeepMind Control environments, registered with Gymnasium on import.

``import sb3_plasticity`` (or ``--gym-packages sb3_plasticity`` for rl-zoo) registers:

- ``sb3_plasticity/CycleFriction<Task>-v0`` for Hopper, Walker2d, HalfCheetah, Ant, Humanoid, HumanoidStandup
  (P3O Sec. 5.1, :mod:`sb3_plasticity.envs.cycle_friction`);
- ``sb3_plasticity/ContinualMuJoCo-v0`` (NE Sec. 4.2, :mod:`sb3_plasticity.envs.continual`);
- ``sb3_plasticity/DMC-<domain>-<task>-v0`` and ``sb3_plasticity/DMCPixels-<domain>-<task>-v0`` for the
  papers' DeepMind Control tasks (:mod:`sb3_plasticity.envs.dmc`).

Registration imports neither MuJoCo nor dm_control: the entry points are strings, and the env modules load when an
env is made. Making a Cycle Friction or ContinualMuJoCo env needs the ``[mujoco]`` extra, a DMC env the ``[dmc]`` extra;
without it the env's module raises an ``ImportError`` naming the extra (:mod:`sb3_plasticity.extras`).
The non-stationary envs follow the phase contract of :mod:`sb3_plasticity.envs.base`.
"""

from __future__ import annotations

import gymnasium as gym

from sb3_plasticity.checks import check_choice
from sb3_plasticity.envs.base import PhasedEnv
from sb3_plasticity.envs.dmc import DMC_TASKS, dmc_env_id, register_dmc

__all__ = [
    "CONTINUAL_MUJOCO_ID",
    "CYCLE_FRICTION_TASKS",
    "DMC_TASKS",
    "PhasedEnv",
    "cycle_friction_env_id",
    "dmc_env_id",
    "register_dmc",
    "register_envs",
]

# The Cycle Friction tasks (P3O Sec. 5.1: the six MuJoCo tasks of its Table 1) and their v5 time limit.
CYCLE_FRICTION_TASKS: tuple[str, ...] = ("Hopper", "Walker2d", "HalfCheetah", "Ant", "Humanoid", "HumanoidStandup")
CONTINUAL_MUJOCO_ID = "sb3_plasticity/ContinualMuJoCo-v0"
_MUJOCO_TIME_LIMIT = 1000  # every v5 task above registers max_episode_steps=1000


def cycle_friction_env_id(task: str) -> str:
    """``sb3_plasticity/CycleFriction<task>-v0``; ``task`` one of :data:`CYCLE_FRICTION_TASKS`."""
    check_choice("task", task, CYCLE_FRICTION_TASKS)
    return f"sb3_plasticity/CycleFriction{task}-v0"


def _register(env_id: str, **kwargs) -> None:
    if env_id not in gym.registry:  # idempotent: a second import or call changes nothing
        gym.register(id=env_id, **kwargs)


def register_envs() -> None:
    """Register every env id of this package with Gymnasium; calling it again is a no-op."""
    for task in CYCLE_FRICTION_TASKS:
        _register(
            cycle_friction_env_id(task),
            entry_point=f"sb3_plasticity.envs.cycle_friction:CycleFriction{task}Env",
            max_episode_steps=_MUJOCO_TIME_LIMIT,
        )
    # the task envs inside keep their own time limits (max_episode_steps kwarg), so none on the outside
    _register(CONTINUAL_MUJOCO_ID, entry_point="sb3_plasticity.envs.continual:ContinualMuJoCoEnv")
    for domain, task in DMC_TASKS:
        register_dmc(domain, task)


register_envs()
