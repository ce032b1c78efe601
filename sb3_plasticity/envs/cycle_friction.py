"""Cycle Friction (P3O paper, Sec. 5.1 and Fig. 3): Gymnasium v5 MuJoCo tasks whose friction cycles over time.

"It starts at 4, decreases by 1 every million steps to 1, then increases back to 4": the friction coefficient
follows 4, 3, 2, 1, 2, 3, 4, 3, 2, 1, ... and changes every ``period`` env steps (default 1_000_000).

Ids ``sb3_plasticity/CycleFriction<Task>-v0`` for Hopper, Walker2d, HalfCheetah, Ant, Humanoid and
HumanoidStandup, each the task's v5 env (same observations, actions, rewards, 1000-step time limit) with
the schedule on top::

    env = gym.make("sb3_plasticity/CycleFrictionHalfCheetah-v0", period=100_000)

**Scale, not replace.** The paper does not say how "friction coefficient 4" maps onto a model. Here the
coefficient *multiplies* each geom's own sliding friction from the task's XML (``mode="scale"``, the default),
so coefficient 1 is the standard v5 task. MuJoCo gives a contact the larger friction of its two geoms, so
scaling every geom scales the friction of every contact by exactly the coefficient, and each task keeps its
designed contrasts (Hopper's foot at 2.0 against 0.9-1.0 elsewhere, HalfCheetah's 0.4 everywhere).
``mode="replace"`` sets every geom's sliding friction to the coefficient instead: coefficient 1 is then a
different task per env (2.5x HalfCheetah's own friction, half of Hopper's foot's) and the contrasts between
geoms are lost. Replacing the floor's value only, as the Slippery Ant task that inspired the paper does
(Dohare et al. 2024), is hidden wherever the touching geom has more: with Hopper's foot at 2.0, coefficients
1 and 2 would give the same foot contacts. Torsional and rolling friction are never changed.

**Schedule.** The step counter counts this env's own ``step`` calls since construction; ``reset`` does not touch
it. Step ``t`` (0-based) runs with the coefficient of phase ``t // period``: the model is changed right after the
step that completes a phase, so between steps ``model.geom_friction`` is always what the next step will use.
``info["friction"]`` and ``info["phase"]`` are those of the step that produced the transition (and of the
next step after ``reset``). With ``n_envs`` vectorised copies each copy counts its own steps, so the schedule
runs on ``period * n_envs`` total env steps: divide ``period`` by ``n_envs`` to keep it in total steps. The
friction is not observed: adapting to it is the point.

**Phase contract** (see :mod:`sb3_plasticity.envs.base`): ``phase = steps // period``, ``phase_name`` is
``"friction_<coefficient>"`` (``"friction_4"``), ``n_phases`` is ``None`` (endless), and
``set_phase(k, hold=True)`` moves the counter to ``k * period``, applies that phase's friction at once
(mid-episode too) and, with ``hold``, stops the counter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from gymnasium.error import DependencyNotInstalled
from gymnasium.utils import EzPickle

from sb3_plasticity.checks import check_choice, check_positive_int, check_range, check_sequence
from sb3_plasticity.envs.base import check_phase_index
from sb3_plasticity.extras import require_extra

# This module imports MuJoCo (the v5 envs are the base classes); `import sb3_plasticity` does not import it: the
# env ids name it as a string entry point, and the package's CycleFrictionMixin is a lazy name.
try:
    from gymnasium.envs.mujoco.ant_v5 import AntEnv
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    from gymnasium.envs.mujoco.hopper_v5 import HopperEnv
    from gymnasium.envs.mujoco.humanoid_v5 import HumanoidEnv
    from gymnasium.envs.mujoco.humanoidstandup_v5 import HumanoidStandupEnv
    from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
    from gymnasium.envs.mujoco.walker2d_v5 import Walker2dEnv
except (ImportError, DependencyNotInstalled):
    require_extra("mujoco", "the Cycle Friction envs (sb3_plasticity.envs.cycle_friction)")  # raises, naming it
    raise

__all__ = [
    "CYCLE_FRICTION_ENVS",
    "CYCLE_FRICTION_SCHEDULE",
    "CycleFrictionAntEnv",
    "CycleFrictionHalfCheetahEnv",
    "CycleFrictionHopperEnv",
    "CycleFrictionHumanoidEnv",
    "CycleFrictionHumanoidStandupEnv",
    "CycleFrictionMixin",
    "CycleFrictionWalker2dEnv",
    "make_cycle_friction_env",
]

# P3O Fig. 3: 4 -> 3 -> 2 -> 1 -> 2 -> 3 -> (4 again); one entry per phase, repeated.
CYCLE_FRICTION_SCHEDULE: tuple[float, ...] = (4.0, 3.0, 2.0, 1.0, 2.0, 3.0)
FrictionMode = Literal["scale", "replace"]


class CycleFrictionMixin:
    """Adds the cyclic friction schedule to a Gymnasium ``MujocoEnv`` (put it first in the bases).

    :param period: env steps per phase, > 0 (default 1_000_000, P3O Sec. 5.1 "every million steps").
    :param frictions: the coefficients of one cycle, repeated forever, each > 0 (default ``(4, 3, 2, 1, 2, 3)``,
        P3O Fig. 3).
    :param mode: ``"scale"`` (default): each geom's sliding friction is its XML value times the coefficient;
        ``"replace"``: every geom's sliding friction is set to the coefficient. See the module docstring.
    :param kwargs: passed on to the MuJoCo env (``render_mode``, ``xml_file``, reward weights, ...).
    """

    n_phases: int | None = None  # endless schedule

    def __init__(
        self,
        period: int = 1_000_000,
        frictions: Sequence[float] = CYCLE_FRICTION_SCHEDULE,
        mode: FrictionMode = "scale",
        **kwargs: Any,
    ) -> None:
        period = check_positive_int("period", period, "env steps per phase")
        # each coefficient finite and > 0; any iterable is taken, as a tuple
        frictions = check_sequence(
            "frictions", tuple(frictions), lambda name, f: check_range(name, f, 0.0, low_open=True, high_open=True)
        )
        check_choice("mode", mode, ("scale", "replace"))
        super().__init__(**kwargs)  # the MuJoCo env builds self.model
        # EzPickle rebuilds the env from these, not from the MuJoCo env's own arguments only.
        EzPickle.__init__(self, period=period, frictions=frictions, mode=mode, **kwargs)
        self.period = period
        self.frictions = frictions
        self.mode = mode
        self.base_friction = self.model.geom_friction[:, 0].copy()  # type: ignore[attr-defined]  # sliding, from the XML
        self.steps = 0
        self.held = False
        self._apply_friction()

    # -- phase contract ----------------------------------------------------------------------------------
    @property
    def phase(self) -> int:
        """0-based index of the current phase: ``steps // period``."""
        return self.steps // self.period

    @property
    def friction(self) -> float:
        """The coefficient of the current phase (the one the next step uses)."""
        return self.frictions[self.phase % len(self.frictions)]

    @property
    def phase_name(self) -> str:
        """``"friction_<coefficient>"``, e.g. ``"friction_4"`` or ``"friction_2.5"``."""
        return f"friction_{self.friction:g}"

    def set_phase(self, phase: int, hold: bool = True) -> None:
        """Move to the first step of ``phase`` (its friction applies at once); ``hold`` stops the schedule there."""
        self.steps = check_phase_index(phase, self.n_phases) * self.period
        self.held = bool(hold)
        self._apply_friction()

    # -- gymnasium API -------------------------------------------------------------------------------------
    def step(self, action):
        friction, phase = self.friction, self.phase  # the dynamics this transition runs with
        obs, reward, terminated, truncated, info = super().step(action)  # type: ignore[misc]
        if not self.held:
            self.steps += 1
            if self.steps % self.period == 0:  # a phase just ended: the next step uses the new value
                self._apply_friction()
        info["friction"] = friction
        info["phase"] = phase
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed, options=options)  # type: ignore[misc]
        info["friction"] = self.friction
        info["phase"] = self.phase
        return obs, info

    def _apply_friction(self) -> None:
        value = self.friction
        sliding = self.base_friction * value if self.mode == "scale" else value
        self.model.geom_friction[:, 0] = sliding  # type: ignore[attr-defined]  # in place: MuJoCo reads it each step


class CycleFrictionHopperEnv(CycleFrictionMixin, HopperEnv):
    """Hopper-v5 with the Cycle Friction schedule (see :class:`CycleFrictionMixin`)."""


class CycleFrictionWalker2dEnv(CycleFrictionMixin, Walker2dEnv):
    """Walker2d-v5 with the Cycle Friction schedule (see :class:`CycleFrictionMixin`)."""


class CycleFrictionHalfCheetahEnv(CycleFrictionMixin, HalfCheetahEnv):
    """HalfCheetah-v5 with the Cycle Friction schedule (see :class:`CycleFrictionMixin`)."""


class CycleFrictionAntEnv(CycleFrictionMixin, AntEnv):
    """Ant-v5 with the Cycle Friction schedule (see :class:`CycleFrictionMixin`)."""


class CycleFrictionHumanoidEnv(CycleFrictionMixin, HumanoidEnv):
    """Humanoid-v5 with the Cycle Friction schedule (see :class:`CycleFrictionMixin`)."""


class CycleFrictionHumanoidStandupEnv(CycleFrictionMixin, HumanoidStandupEnv):
    """HumanoidStandup-v5 with the Cycle Friction schedule (see :class:`CycleFrictionMixin`)."""


# task name -> env class; the registered ids are sb3_plasticity/CycleFriction<name>-v0
CYCLE_FRICTION_ENVS: dict[str, type[MujocoEnv]] = {
    "Hopper": CycleFrictionHopperEnv,
    "Walker2d": CycleFrictionWalker2dEnv,
    "HalfCheetah": CycleFrictionHalfCheetahEnv,
    "Ant": CycleFrictionAntEnv,
    "Humanoid": CycleFrictionHumanoidEnv,
    "HumanoidStandup": CycleFrictionHumanoidStandupEnv,
}


def make_cycle_friction_env(task: str, **kwargs: Any) -> MujocoEnv:
    """The Cycle Friction env of ``task`` (a name of :data:`CYCLE_FRICTION_ENVS`, e.g. ``"Hopper"``), unwrapped.

    ``kwargs`` go to :class:`CycleFrictionMixin` (``period``, ``frictions``, ``mode``) and the MuJoCo env.
    Without a ``TimeLimit``: ``gym.make("sb3_plasticity/CycleFriction<task>-v0")`` adds the 1000-step limit.
    """
    check_choice("task", task, CYCLE_FRICTION_ENVS)
    return CYCLE_FRICTION_ENVS[task](**kwargs)
