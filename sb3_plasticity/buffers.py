"""ExperienceReviewBuffer: the experience review of Neuroplastic Expansion (NE paper, Sec. 3.2 and Alg. 1), and
:class:`LazyStorageMixin`, replay storage that takes memory only as it is written (a 1e6-transition pixel buffer)."""

from __future__ import annotations

import math
import mmap
import platform
import sys
import warnings
from collections import deque
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from sb3_plasticity.checks import check_positive_int, check_probability

__all__ = ["ExperienceReviewBuffer", "LazyStorageMixin", "lazy_zeros"]

# Linux's MAP_NORESERVE (asm-generic value, x86 and arm); Python's mmap module has no name for it before 3.13
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", None)
if _MAP_NORESERVE is None and sys.platform.startswith("linux") and platform.machine() in ("x86_64", "aarch64", "arm64"):
    _MAP_NORESERVE = 0x4000
_STORAGE = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def lazy_zeros(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zero array whose memory is reserved, not committed: pages are zero-filled when first written.

    ``np.zeros`` of a large array is lazy too, but Linux's default overcommit heuristic refuses a single allocation
    larger than RAM + swap: a 1e6-transition buffer of stacked 84x84 frames (59 GiB per array) fails with
    ``MemoryError`` on a 32 GB machine even when the run will only ever write a part of it. Here the array lives in
    an anonymous private ``mmap`` with ``MAP_NORESERVE`` (Linux x86/arm), which that heuristic does not count;
    elsewhere (other systems, strict overcommit) it is ``np.zeros``. It is an ordinary writable ``ndarray``;
    pickling it (``save_replay_buffer``) writes every byte and loads back an ordinary array.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if _MAP_NORESERVE is None or nbytes < 1 << 20:  # small arrays gain nothing
        return np.zeros(shape, dtype=dtype)
    try:
        memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
    except (OSError, ValueError):
        return np.zeros(shape, dtype=dtype)
    return np.frombuffer(memory, dtype=dtype).reshape(shape)


def _available_memory() -> int | None:
    """Bytes of memory available now (psutil, else Linux's ``MemAvailable``), or None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class LazyStorageMixin:
    """Replay-buffer mixin: the storage arrays come from :func:`lazy_zeros`, so a large buffer costs memory only as
    transitions are written (NE Table 3's 1e6 pixel transitions on a machine that could not hold them all).

    Put it before the SB3 buffer class in the bases. It builds the buffer with one row, then gives every storage array
    (``observations``, ``next_observations``, ``actions``, ``rewards``, ``dones``, ``timeouts``) its full size. Like
    SB3, it warns when the full size exceeds the available memory: the run is killed if the written part does not
    fit by then.
    """

    buffer_size: int
    n_envs: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        args_list = list(args)
        if "buffer_size" in kwargs:
            buffer_size, kwargs["buffer_size"] = kwargs["buffer_size"], 1
        else:
            buffer_size, args_list[0] = args_list[0], 1
        super().__init__(*args_list, **kwargs)  # SB3 allocates one row per array
        self.buffer_size = max(int(buffer_size) // self.n_envs, 1)
        total = 0
        for name in _STORAGE:
            array = getattr(self, name, None)
            if isinstance(array, np.ndarray):
                setattr(self, name, lazy_zeros((self.buffer_size, *array.shape[1:]), array.dtype))
                total += getattr(self, name).nbytes
        available = _available_memory()
        if available is not None and total > available:
            warnings.warn(
                f"{type(self).__name__} of {self.buffer_size} transitions takes {total / 1e9:.2f} GB when full, more than "
                f"the {available / 1e9:.2f} GB available: it is reserved, not allocated, and fills as transitions are "
                "written; the run fails if the written part does not fit",
                UserWarning,
            )


class ExperienceReviewBuffer(LazyStorageMixin, ReplayBuffer):
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
    Its storage takes memory only as transitions are written (:class:`LazyStorageMixin`).

    **n-step returns** (``n_steps > 1``; NE-DrQ, NE App. C Table 3: 3 steps): every batch, uniform or review,
    carries SB3's ``NStepReplayBuffer`` targets: ``rewards = sum_{k<m} gamma^k r_{t+k}`` and ``discounts = gamma^m``
    with ``m = n_steps``, or fewer up to and including the first episode end (termination or time limit) or the
    newest transition; ``next_observations`` and ``dones`` are those of step ``t + m - 1`` (``dones`` 0 at a time
    limit: bootstrapped). SB3's TD3 and SAC use ``discounts`` in place of ``gamma``. ``gamma`` must be the
    algorithm's. As SB3's ``NStepReplayBuffer``, it refuses ``optimize_memory_usage`` then.

    :param review_window: measurements ``c`` summed into epsilon (default 450, NE App. C for MuJoCo; 150-250 DMC).
    :param review_floor: lower bound of epsilon, in [0, 1] (default 0.25, NE App. C "threshold of ER" for MuJoCo;
        0.35 Humanoid/Ant, 0.18 DrQ).
    :param n_steps: n of the n-step returns, >= 1 (default 1: one-step transitions, SB3's ``ReplayBuffer``).
    :param gamma: discount of the n-step returns (default 0.99); used only with ``n_steps > 1``.
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
        n_steps: int = 1,
        gamma: float = 0.99,
    ) -> None:
        super().__init__(
            buffer_size, observation_space, action_space, device, n_envs, optimize_memory_usage, handle_timeout_termination
        )
        review_window = check_positive_int("review_window", review_window, "measurements")
        review_floor = check_probability("review_floor", review_floor)
        n_steps = check_positive_int("n_steps", n_steps)
        gamma = check_probability("gamma", gamma)
        if n_steps > 1 and optimize_memory_usage:
            raise ValueError(
                f"n_steps={n_steps} needs optimize_memory_usage=False: n-step returns read the stored next observations "
                "(as SB3's NStepReplayBuffer)"
            )
        self.n_steps = n_steps
        self.gamma = gamma
        self.review_window = review_window
        self.review_floor = review_floor
        # the definition of the active-neuron ratio fed to record_active_ratio (the NE callback sets it)
        self.active_ratio_metric: str | None = None
        self._ratios: deque[float] = deque(maxlen=review_window + 1)  # c changes need c + 1 values
        self._changes: deque[float] = deque(maxlen=review_window)
        self._change_sum = 0.0  # sum of _changes, updated per measurement: epsilon is read at every sample
        self._fixed_probability: float | None = None
        self.n_batches = 0
        self.n_review_batches = 0
        self._feed_checked = False
        self.n_skipped_ratios = 0  # non-finite measurements dropped by record_active_ratio

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
        """Add one measurement of the critic's active-neuron ratio. A NaN or inf (a diverging critic) is dropped with a
        ``RuntimeWarning`` and counted in ``n_skipped_ratios``: epsilon stays finite."""
        ratio = float(ratio)
        if not math.isfinite(ratio):
            self.n_skipped_ratios = getattr(self, "n_skipped_ratios", 0) + 1
            warnings.warn(
                f"{type(self).__name__}: active-neuron ratio {ratio} dropped (a diverging critic?); epsilon keeps the "
                "last finite measurements",
                RuntimeWarning,
                stacklevel=2,
            )
            return
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
        self._fixed_probability = None if value is None else check_probability("review_probability", value)

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

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        if self.n_steps > 1:
            # SB3's n-step targets, on this buffer's storage (it reads n_steps and gamma from self)
            return NStepReplayBuffer._get_samples(self, batch_inds, env=env)  # type: ignore[arg-type]
        return super()._get_samples(batch_inds, env=env)

    def oldest_quarter_indices(self, batch_size: int) -> np.ndarray:
        """Uniform row indices among the chronologically oldest quarter of the stored transitions."""
        if not self.full:
            return np.random.randint(0, max(self.pos // 4, 1), size=batch_size)
        quarter = max(math.floor(self.buffer_size / 4), 1)
        # oldest first from the write position; with optimize_memory_usage that row is invalid, start one later
        first = 1 if self.optimize_memory_usage else 0
        return (np.random.randint(first, first + quarter, size=batch_size) + self.pos) % self.buffer_size
