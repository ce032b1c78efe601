"""The phase contract shared by the non-stationary environments of ``sb3_plasticity.envs``.

A *phase* is one stretch of a non-stationary schedule: one friction value of Cycle Friction, one task block of
ContinualMuJoCo. Every such env exposes, on the unwrapped env (so ``VecEnv.get_attr`` / ``VecEnv.env_method``
reach it through any gymnasium wrapper and SB3's ``Monitor``):

- ``phase: int``: 0-based count of the phases started so far (the index of the current phase);
- ``phase_name: str``: a readable name of the current phase (``"friction_4"``, ``"HalfCheetah"``);
- ``n_phases: int | None``: the number of phases of a finite schedule, ``None`` for an endless one;
- ``set_phase(phase: int, hold: bool = True) -> None``: move the env to the start of ``phase``; with ``hold``
  (the default) the schedule then stops advancing, which is what an evaluation env wants; ``hold=False``
  resumes the schedule from there.

Use ``env_method("set_phase", k)``, never ``set_attr``: SB3's ``set_attr`` sets the attribute on the outermost
wrapper, not on the env (see ``docs/environments.md``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from sb3_plasticity.checks import check_int

__all__ = ["PhasedEnv", "check_phase_index"]


@runtime_checkable
class PhasedEnv(Protocol):
    """Structural type of an env that follows the phase contract (``isinstance(env.unwrapped, PhasedEnv)``)."""

    @property
    def phase(self) -> int: ...

    @property
    def phase_name(self) -> str: ...

    @property
    def n_phases(self) -> int | None: ...

    def set_phase(self, phase: int, hold: bool = True) -> None: ...


def check_phase_index(phase: object, n_phases: int | None) -> int:
    """``phase`` as an int, or a ``ValueError`` naming it when it is not a phase index of the schedule."""
    return check_int("phase", phase, 0, None if n_phases is None else n_phases - 1)
