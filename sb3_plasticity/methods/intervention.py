"""Base of the methods that change weights: event schedule, a fixed probe batch, and what each event logs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

import torch as th

from sb3_plasticity.capture import Capture, buffer_ready, probe
from sb3_plasticity.checks import check_nonnegative, check_positive_int
from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.methods.drift import PolicyProbe
from sb3_plasticity.metrics import dormant_mask
from sb3_plasticity.schedule import EveryN

__all__ = ["InterventionCallback"]

T = TypeVar("T")


class InterventionCallback(PlasticityCallback):
    """Runs :meth:`intervene` every ``freq`` env steps and logs under ``plasticity/<method>/``:

    - ``reset_count`` (neurons changed this event), ``total_reset_count``, ``<network>/reset_count`` and
      ``<network>/<layer>/reset_count``;
    - ``<network>/dormant_ratio_before`` and ``_after``: the tau-dormant ratio (``dormant_tau``) on the fixed
      probe batch, right before and right after the event;
    - the policy's output drift on the probe batch: ``action_change`` (TD3/DDPG) or ``policy_kl``
      (SAC/PPO/A2C).

    The probe batch (observations and actions) is sampled once from the replay buffer, or from the full
    rollout buffer at the end of the first rollout (PPO/A2C), and kept across ``save``/``load``. An event
    before any data exists logs the counts only.

    :param freq: env steps between events.
    :param networks: trainable networks to act on (default: all; target networks follow their twins).
    :param dormant_tau: threshold of the logged dormant ratio (default 0.1).
    :param probe_batch_size: observations in the probe batch (default 256).
    :param verbose: 0 or 1.
    """

    method: ClassVar[str] = "intervention"
    claims_neurons = True
    trainable_only = True

    @property
    def state_key(self) -> str:  # type: ignore[override]
        """Counters and the probe batch are kept in ``model.plasticity_state[<method>]``, or
        ``[<method>[<network>+...]]`` when ``networks`` is given (two callbacks of one method on disjoint
        networks keep their own state)."""
        return self.method if self.networks is None else f"{self.method}[{'+'.join(self.networks)}]"

    def __init__(
        self,
        freq: int,
        networks: str | Sequence[str] | None = None,
        dormant_tau: float = 0.1,
        probe_batch_size: int = 256,
        verbose: int = 0,
        freq_name: str = "reset_freq",
    ) -> None:
        super().__init__(networks, verbose)
        self.event_schedule = EveryN(freq, name=freq_name)
        self.freq = self.event_schedule.freq
        self.freq_name = freq_name
        self.dormant_tau = check_nonnegative("dormant_tau", dormant_tau)
        self.probe_batch_size = check_positive_int("probe_batch_size", probe_batch_size)
        self.probe: PolicyProbe | None = None
        self.total_reset = 0
        self.n_events = 0
        self._probe_capture: Capture | None = None

    # -- to implement ------------------------------------------------------------------------------------
    def intervene(self) -> dict[tuple[str, str], int]:
        """Change the networks; return the neurons changed per ``(network, layer)``."""
        raise NotImplementedError

    # -- schedule ----------------------------------------------------------------------------------------
    def _setup(self) -> None:
        self.event_schedule.start(self.model.num_timesteps)
        self._probe_capture = Capture(self.neurons, self.neurons.select(self.network_names, targets=False), gradients=False)

    def _on_step(self) -> bool:
        if self.event_schedule.poll(self.num_timesteps):
            self.run_event()
        return True

    def first_event(self) -> tuple[int, str] | None:
        """The first event of this ``learn()``: ``event_schedule.next``, every ``freq`` steps (a warning at ``learn()``
        start says when it falls after the end; see :class:`~sb3_plasticity.PlasticityCallback`)."""
        what = "log" if self.freq_name == "log_freq" else "event"
        return self.event_schedule.next, f"{what} ({self.freq_name}={self.freq})"

    def _on_rollout_end(self) -> None:
        # PPO/A2C empty the rollout buffer before the next rollout: this is when it can be sampled.
        if self.probe is None and buffer_ready(self.model):
            self.ensure_probe()

    def ensure_probe(self) -> PolicyProbe | None:
        if self.probe is None and buffer_ready(self.model):
            self.probe = PolicyProbe.from_buffer(self.model, self.probe_batch_size)
        return self.probe

    def probe_dormant_ratios(self) -> dict[str, float]:
        """tau-dormant ratio per network on the probe batch (an extra forward, activations only)."""
        capture = self._probe_capture
        probe(self.model, capture, batch=(self.probe.observations, self.probe.actions))
        counts: dict[str, list[int]] = {}
        unusable = {n.split("/", 1)[0] for n in capture.nonfinite()}  # a diverged network has no meaningful ratio
        for group, rec in capture.records.items():
            if rec.activation is None or group.network in unusable:
                continue
            alive = group.alive()
            tot = counts.setdefault(group.network, [0, 0])
            tot[0] += int(dormant_mask(rec.activation, self.dormant_tau, alive).sum())
            tot[1] += int(alive.sum()) if alive is not None else group.n_neurons
        capture.records = {}
        return {network: k / max(n, 1) for network, (k, n) in counts.items()}

    # -- one event ---------------------------------------------------------------------------------------
    def measured(self, change: Callable[[], T]) -> T:
        """Run ``change`` and record the dormant ratios on the probe batch right before and after it, and the
        policy drift it caused (nothing is measured before a probe batch exists)."""
        probe_ = self.ensure_probe()
        if probe_ is None:
            return change()
        before_out = probe_.output()
        for network, ratio in self.probe_dormant_ratios().items():
            self.record(f"{self.method}/{network}/dormant_ratio_before", ratio)
        result = change()
        for network, ratio in self.probe_dormant_ratios().items():
            self.record(f"{self.method}/{network}/dormant_ratio_after", ratio)
        self.record(f"{self.method}/{probe_.name}", probe_.drift(before_out, probe_.output()))
        return result

    def run_event(self) -> dict[tuple[str, str], int]:
        """Intervene and log what it did (counts, dormant ratios before/after and drift on the probe batch)."""
        counts = self.measured(self.intervene)
        self.log_counts(counts)
        self.dump()
        self.save_state()
        return counts

    def log_counts(self, counts: dict[tuple[str, str], int]) -> None:
        per_network: dict[str, int] = {}
        for (network, layer), n in counts.items():
            per_network[network] = per_network.get(network, 0) + n
            self.record(f"{self.method}/{network}/{layer}/reset_count", n)
        for network, n in per_network.items():
            self.record(f"{self.method}/{network}/reset_count", n)
        n_total = sum(per_network.values())
        self.total_reset += n_total
        self.n_events += 1
        self.record(f"{self.method}/reset_count", n_total)
        self.record(f"{self.method}/total_reset_count", self.total_reset)
        if self.verbose >= 1:
            print(f"{type(self).__name__} at step {self.num_timesteps}: {per_network}")

    # -- resuming ----------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "total_reset": self.total_reset,
            "n_events": self.n_events,
            "skipped_events": self.skipped_events,
        }
        if self.probe is not None and isinstance(self.probe.observations, th.Tensor):
            state["probe"] = (self.probe.observations.detach().cpu(), self.probe.actions.detach().cpu())
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self.total_reset = int(state.get("total_reset", 0))
        self.n_events = int(state.get("n_events", 0))
        self.skipped_events = int(state.get("skipped_events", 0))
        if "probe" in state:
            obs, actions = state["probe"]
            self.probe = PolicyProbe(self.model, obs.to(self.model.device), actions.to(self.model.device))
