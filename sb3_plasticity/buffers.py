"""ExperienceReviewBuffer: the experience review of Neuroplastic Expansion (NE paper, Sec. 3.2 and Alg. 1)."""

from __future__ import annotations

import math
import warnings
from collections import deque
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

__all__ = ["ExperienceReviewBuffer"]


class ExperienceReviewBuffer(ReplayBuffer):
    """A ``ReplayBuffer`` that sometimes samples a batch from the oldest quarter of what it stores.

    NE Sec. 3.2: ``epsilon`` is the summed absolute change of the critic's active-neuron ratio over the last
    ``review_window`` measurements, floored at ``review_floor``; at each update a number ``m ~ U(0, 1)`` is
    drawn, and if ``m > epsilon`` the batch comes from the chronologically oldest quarter of the stored
    transitions, otherwise uniformly from all of them. So the review probability is ``1 - epsilon`` (at most
    ``1 - review_floor``): reviews become frequent once the active ratio stops moving.

    The measurements come from :meth:`record_active_ratio` (the Neuroplastic Expansion callback feeds it).
    ``review_probability`` can be set to a fixed value (ablations, tests); ``None`` restores the rule. Without
    either the buffer never reviews (epsilon stays 1): at its first transition it warns (``UserWarning``) when no
    :class:`~sb3_plasticity.NeuroplasticExpansionCallback` runs on its model and no fixed probability is set.
    "Oldest" is by insertion: after the circular buffer wraps, the oldest rows start at the write position.
    With ``optimize_memory_usage`` the row at the write position is skipped (its next observation is gone),
    as SB3's own ``sample`` does. Batches go through ``_get_samples(..., env)``, so ``VecNormalize`` applies.
    Use it as ``TD3(..., replay_buffer_class=ExperienceReviewBuffer, replay_buffer_kwargs=dict(review_window=450))``.

    :param review_window: measurements ``c`` summed into epsilon (default 450, NE App. C for MuJoCo; 150-250 DMC).
    :param review_floor: lower bound of epsilon, in [0, 1] (default 0.25, NE App. C "threshold of ER" for MuJoCo;
        0.35 Humanoid/Ant, 0.18 DrQ).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space,
        action_space,
        device: Any = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        review_window: int = 450,
        review_floor: float = 0.25,
    ) -> None:
        super().__init__(
            buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage, handle_timeout_termination
        )
        if isinstance(review_window, bool) or not isinstance(review_window, int) or review_window <= 0:
            raise ValueError(f"review_window must be a positive integer (measurements), got {review_window!r}")
        if isinstance(review_floor, bool) or not isinstance(review_floor, (int, float)) or not 0 <= review_floor <= 1:
            raise ValueError(f"review_floor must be in [0, 1], got {review_floor!r}")
        self.review_window = review_window
        self.review_floor = float(review_floor)
        self._ratios: deque[float] = deque(maxlen=review_window + 1)  # c changes need c + 1 values
        self._changes: deque[float] = deque(maxlen=review_window)
        self._change_sum = 0.0  # sum of _changes, updated per measurement: epsilon is read at every sample
        self._fixed_probability: float | None = None
        self.n_batches = 0
        self.n_review_batches = 0
        self._feed_checked = False

    def add(self, *args: Any, **kwargs: Any) -> None:
        if not getattr(self, "_feed_checked", True):
            self._feed_checked = True
            self._warn_if_unfed()
        super().add(*args, **kwargs)

    def _warn_if_unfed(self) -> None:
        """The rule needs measurements: warn when nothing will feed them and no fixed probability is set."""
        if self._fixed_probability is not None or self._ratios:
            return
        from sb3_plasticity.methods.base import active_callbacks  # the methods layer builds on this module
        from sb3_plasticity.methods.neuroplastic_expansion import NeuroplasticExpansionCallback

        if any(isinstance(cb, NeuroplasticExpansionCallback) for cb in active_callbacks(self)):
            return
        warnings.warn(
            f"{type(self).__name__} without a NeuroplasticExpansionCallback in this learn(): nothing feeds it the "
            "critic's active-neuron ratio, so epsilon stays 1 and it never reviews (a plain ReplayBuffer). Add "
            "NeuroplasticExpansionCallback() to learn()'s callbacks, or set a fixed review_probability.",
            UserWarning,
        )

    # -- the rule ----------------------------------------------------------------------------------------
    def record_active_ratio(self, ratio: float) -> None:
        """Add one measurement of the critic's active-neuron ratio."""
        ratio = float(ratio)
        if self._ratios:
            self._changes.append(abs(ratio - self._ratios[-1]))
            self._change_sum = math.fsum(self._changes)
        self._ratios.append(ratio)

    @property
    def epsilon(self) -> float:
        """``max(sum_t |r_t - r_{t-1}|, review_floor)`` over the last ``review_window`` changes (1 before any)."""
        if len(self._ratios) < 2:
            return 1.0  # nothing measured yet: no review
        return max(self._change_sum, self.review_floor)

    @property
    def review_probability(self) -> float:
        """Probability that the next batch is a review batch: ``1 - epsilon``, or the value set."""
        if self._fixed_probability is not None:
            return self._fixed_probability
        return min(max(1.0 - self.epsilon, 0.0), 1.0)

    @review_probability.setter
    def review_probability(self, value: float | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
            raise ValueError(f"review_probability must be in [0, 1] or None, got {value!r}")
        self._fixed_probability = None if value is None else float(value)

    @property
    def review_fraction(self) -> float:
        """Fraction of the batches sampled so far that were review batches."""
        return self.n_review_batches / self.n_batches if self.n_batches else 0.0

    # -- sampling -----------------------------------------------------------------------------------------
    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        self.n_batches += 1
        if np.random.rand() < self.review_probability:
            self.n_review_batches += 1
            return self._get_samples(self.oldest_quarter_indices(batch_size), env=env)
        return super().sample(batch_size, env=env)

    def oldest_quarter_indices(self, batch_size: int) -> np.ndarray:
        """Uniform row indices among the chronologically oldest quarter of the stored transitions."""
        if not self.full:
            return np.random.randint(0, max(self.pos // 4, 1), size=batch_size)
        quarter = max(math.floor(self.buffer_size / 4), 1)
        # oldest first from the write position; with optimize_memory_usage that row is invalid, start one later
        first = 1 if self.optimize_memory_usage else 0
        return (np.random.randint(first, first + quarter, size=batch_size) + self.pos) % self.buffer_size
