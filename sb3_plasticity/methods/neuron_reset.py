"""The ReDo pipeline shared by ReDo and ReGraMa: score neurons on a training pass, reset those at or below tau."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch as th

from sb3_plasticity.capture import Capture, GroupRecord
from sb3_plasticity.methods.base import check_fraction, check_nonnegative
from sb3_plasticity.methods.intervention import InterventionCallback
from sb3_plasticity.neurons import NeuronGroup
from sb3_plasticity.surgery import reset_neurons

__all__ = ["NeuronResetCallback"]


class NeuronResetCallback(InterventionCallback):
    """Every ``reset_freq`` env steps: record the algorithm's next training pass, score every hidden neuron of
    the selected networks, and re-initialise those whose normalised score is ``<= tau`` (incoming weights
    from the layer's own init, outgoing weights zeroed, optimizer state of those entries fresh, target twins
    updated; see :mod:`sb3_plasticity.surgery`). Subclasses define :meth:`score`.

    What is logged under ``plasticity/<method>/`` at each event: ``reset_count`` (this event),
    ``total_reset_count``, ``<network>/reset_count``, ``<network>/<layer>/reset_count``,
    ``<network>/<ratio>_before`` (the ratio at ``tau`` on the scored pass), ``<network>/<ratio>_after`` (the
    same on the first training pass that starts at least one update after the event: right after a reset with
    zeroed outgoing weights the reset neurons receive no gradient for one update), and the policy's output
    drift on a fixed probe batch (``action_change`` for TD3/DDPG, ``policy_kl`` for SAC/PPO/A2C).

    :param reset_freq: env steps between events.
    :param tau: score threshold (``<=``).
    :param networks: trainable networks to act on (default: every hidden layer of every trainable network;
        target networks follow their twins).
    :param max_reset_fraction: at most this fraction of each layer's neurons is reset per event, those with
        the lowest scores (GraMa App. A.3: 5% for Humanoid); None: no cap.
    :param outgoing: ``"zero"`` (ReDo, GraMa Sec. 4.2) or ``"keep"`` (the official GraMa code).
    :param probe_batch_size: observations in the fixed drift probe batch (sampled from the buffer at the
        first event).
    :param verbose: 0 silent, 1 prints each event.
    """

    ratio: ClassVar[str] = "ratio"
    needs_gradients: ClassVar[bool] = False

    def __init__(
        self,
        reset_freq: int,
        tau: float,
        networks: str | Sequence[str] | None = None,
        max_reset_fraction: float | None = None,
        outgoing: str = "zero",
        probe_batch_size: int = 256,
        verbose: int = 0,
    ) -> None:
        super().__init__(reset_freq, networks, probe_batch_size=probe_batch_size, verbose=verbose)
        self.reset_freq = self.freq
        self.tau = check_nonnegative("tau", tau)
        self.max_reset_fraction = check_fraction("max_reset_fraction", max_reset_fraction)
        if outgoing not in ("zero", "keep"):
            raise ValueError(f"outgoing must be 'zero' or 'keep', got {outgoing!r}")
        self.outgoing = outgoing
        self.capture: Capture | None = None
        self._phase = "idle"  # idle -> scoring -> waiting -> after -> idle
        self._event_updates = 0

    # -- the method ------------------------------------------------------------------------------------
    def score(self, group: NeuronGroup, record: GroupRecord) -> th.Tensor:
        """Normalised per-neuron score of ``group`` on the recorded pass, shape ``(neurons,)``."""
        raise NotImplementedError

    def select(self, group: NeuronGroup, scores: th.Tensor) -> tuple[th.Tensor, int]:
        """Neurons to reset (indices) and how many were at or below tau before the cap."""
        alive = group.alive()
        flagged = scores <= self.tau
        if alive is not None:
            flagged &= alive.to(flagged.device)
        idx = flagged.nonzero().flatten()
        n_flagged = int(idx.numel())
        if self.max_reset_fraction is not None:
            n_alive = int(alive.sum()) if alive is not None else group.n_neurons
            cap = math.floor(self.max_reset_fraction * n_alive)
            if n_flagged > cap:
                idx = idx[th.argsort(scores[idx])[:cap]]
        return idx, n_flagged

    # -- schedule ---------------------------------------------------------------------------------------
    def _setup(self) -> None:
        super()._setup()
        if self.capture is not None:
            self.capture.disarm()
        groups = self.neurons.select(self.network_names, targets=False)
        self.capture = Capture(self.neurons, groups, gradients=self.needs_gradients)
        self._phase = "idle"

    def _on_step(self) -> bool:
        self._advance()
        return True

    def _on_rollout_start(self) -> None:
        self._advance()

    def _advance(self) -> None:
        if self._phase == "scoring" and self.capture.complete:
            self.run_event()
            self._phase = "waiting"
        elif self._phase == "waiting" and self.model._n_updates > self._event_updates:
            self.capture.arm()
            self._phase = "after"
        elif self._phase == "after" and self.capture.complete:
            self._log_ratios("after")
            self.dump()
            self.capture.disarm()
            self._phase = "idle"
        if self._phase == "idle" and self.num_timesteps >= self._next_event:
            self.capture.arm()
            self._phase = "scoring"
            self._next_event = (self.num_timesteps // self.reset_freq + 1) * self.reset_freq

    def _finish(self) -> None:
        if self.capture is not None:
            self.capture.disarm()
        self._phase = "idle"

    # -- one event -------------------------------------------------------------------------------------
    def run_event(self) -> dict[tuple[str, str], int]:
        probe_ = self.ensure_probe()
        before = probe_.output() if probe_ is not None else None
        self._log_ratios("before")
        counts = self.intervene()
        self.capture.disarm()
        if probe_ is not None:
            self.record(f"{self.method}/{probe_.name}", probe_.drift(before, probe_.output()))
        self.log_counts(counts)
        self.dump()
        self._event_updates = self.model._n_updates
        self.save_state()
        return counts

    def intervene(self) -> dict[tuple[str, str], int]:
        counts = {}
        for group in self.capture.groups:
            idx, _ = self.select(group, self.score(group, self.capture.records[group]))
            counts[(group.network, group.name)] = reset_neurons(group, idx, outgoing=self.outgoing)
        return counts

    def _log_ratios(self, when: str) -> None:
        flagged: dict[str, list[int]] = {}
        for group in self.capture.groups:
            _, n_flagged = self.select(group, self.score(group, self.capture.records[group]))
            alive = group.alive()
            n = int(alive.sum()) if alive is not None else group.n_neurons
            tot = flagged.setdefault(group.network, [0, 0])
            tot[0] += n_flagged
            tot[1] += n
        for network, (k, n) in flagged.items():
            self.record(f"{self.method}/{network}/{self.ratio}_{when}", k / max(n, 1))
