"""Event schedules of the package's callbacks, counted in env steps (``num_timesteps``).

The lowest layer: nothing here knows SB3 or the package's other modules.
"""

from __future__ import annotations

from sb3_plasticity.checks import check_positive_int

__all__ = ["EveryN"]


class EveryN:
    """Events due at the multiples of ``freq`` env steps: the event of the multiple ``m`` runs at the first step
    ``t >= m`` that :meth:`poll` sees (SB3 counts ``num_timesteps`` in steps of ``n_envs``, so ``t`` can pass a
    multiple), and the next one is due at the first multiple after ``t``. Multiples skipped between two polls give
    one event, not several.

    Resuming. :meth:`start` at the start of every ``learn()`` puts the next event at the first multiple after the
    model's ``num_timesteps`` (or at once, ``now=True``): a ``learn()`` continued with ``reset_num_timesteps=False``,
    or on a loaded model, has its events at the same multiples as one uninterrupted run, and the schedule needs no
    saved state (an event at the last step of a ``learn()`` ran there; its successor is after that step).

    :param freq: env steps between events (a positive integer).
    :param name: the parameter's name in the error message for a bad ``freq`` (default ``"freq"``).
    """

    def __init__(self, freq: int, name: str = "freq") -> None:
        self.freq = check_positive_int(name, freq, unit="env steps")
        self.next = 0  # the step at or after which the next event is due

    def start(self, step: int, now: bool = False) -> None:
        """A ``learn()`` starts at env step ``step``: the first event is due at the first multiple of ``freq`` after
        ``step``, or at ``step`` itself when ``now``."""
        self.next = int(step) if now else self.after(step)

    def after(self, step: int) -> int:
        """The first multiple of ``freq`` strictly after ``step``."""
        return (int(step) // self.freq + 1) * self.freq

    def is_due(self, step: int) -> bool:
        """Whether an event is due at ``step`` (nothing changes: see :meth:`advance`)."""
        return step >= self.next

    def advance(self, step: int) -> None:
        """The event due at ``step`` is taken: the next one is due at the first multiple after ``step``."""
        self.next = self.after(step)

    def poll(self, step: int) -> bool:
        """True when an event is due at ``step``, which then counts as taken (:meth:`advance`)."""
        if not self.is_due(step):
            return False
        self.advance(step)
        return True

    @property
    def last(self) -> int:
        """The multiple of ``freq`` of the event last taken by :meth:`poll` or :meth:`advance` (the largest one at or
        below the step it was taken at)."""
        return self.next - self.freq

    def __repr__(self) -> str:
        return f"EveryN(freq={self.freq}, next={self.next})"
