"""The ReDo pipeline shared by ReDo and ReGraMa: score neurons, reset those at or below tau."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch as th

from sb3_plasticity.capture import Capture, GroupRecord, buffer_ready, probe, sample_batch, training_batch_size
from sb3_plasticity.checks import check_choice, check_fraction, check_nonnegative
from sb3_plasticity.hooks import SURGERY, step_hooks
from sb3_plasticity.methods.intervention import InterventionCallback
from sb3_plasticity.metrics import lowest
from sb3_plasticity.neurons import NeuronGroup
from sb3_plasticity.surgery import hold_fresh_steps, release_fresh_steps, reset_neurons

__all__ = ["BatchScoring", "EventMechanism", "NeuronResetCallback", "ResetTracker", "TrainingPassScoring"]


class ResetTracker:
    """Which neurons of each group have been reset at least once (P3O Table 4's "Reset Proportion").

    One bool per neuron, keyed by ``group.key``; :meth:`proportions` gives, per network, the share of its hidden
    neurons (all of them, masked-out ones included) reset at least once so far.
    """

    def __init__(self) -> None:
        self.ever: dict[str, th.Tensor] = {}

    def add(self, group: NeuronGroup, idx: th.Tensor) -> None:
        mask = self.ever.get(group.key)
        if mask is None or mask.numel() != group.n_neurons:
            mask = th.zeros(group.n_neurons, dtype=th.bool)
            self.ever[group.key] = mask
        mask[idx.detach().cpu().long()] = True

    def proportions(self, groups: Sequence[NeuronGroup]) -> dict[str, float]:
        counts: dict[str, list[int]] = {}
        for g in groups:
            mask = self.ever.get(g.key)
            tot = counts.setdefault(g.network, [0, 0])
            tot[0] += int(mask.sum()) if mask is not None and mask.numel() == g.n_neurons else 0
            tot[1] += g.n_neurons
        return {network: k / max(n, 1) for network, (k, n) in counts.items()}

    def get_state(self) -> dict[str, th.Tensor]:
        return {k: v.clone() for k, v in self.ever.items()}

    def set_state(self, state: dict[str, th.Tensor] | None) -> None:
        self.ever = {k: v.clone().bool().cpu() for k, v in (state or {}).items()}


class NeuronResetCallback(InterventionCallback):
    """Every ``reset_freq`` env steps, score every hidden neuron of the selected networks and re-initialise those
    whose normalised score is ``<= tau``: incoming weights from the layer's own init, outgoing weights zeroed,
    optimizer state of those entries fresh, target twins updated (see :mod:`sb3_plasticity.surgery`).
    Subclasses define :meth:`score` and where the scores come from (``scored_on``):

    - ``"batch"`` (ReDo): activations of a forward pass on a training batch (the algorithm's ``batch_size``)
      sampled from the replay buffer (the full rollout buffer for PPO/A2C, at the end of a rollout; A2C, which
      has no ``batch_size``, scores on the whole rollout, its own training batch) when the event is due; the
      reset follows at once, on the weights that were scored.
    - ``"training_pass"`` (ReGraMa): gradients need the algorithm's own loss, so the next training pass is
      recorded and the reset runs in the optimizer's pre-step hook of that pass, between backward and step
      (as the official GraMa code does), on the weights that were scored; the current gradients of the reset
      entries are zeroed so that step leaves them where the reset put them. TD3/SAC reset the critic at the
      critic update and the actor at the next actor update.

    Either way, a neuron that contributed nothing on the scored batch is reset without changing the networks'
    outputs on that batch.

    Selection: the neurons with a score ``<= tau`` (optionally capped at ``max_reset_fraction`` of the layer, lowest
    scores first), or, with ``reset_fraction``, a fixed fraction: the ``floor(reset_fraction * n)`` lowest-scoring
    of the layer's ``n`` (alive) neurons at every event whatever their scores (the P3O paper's ReDo, App. A.1:
    "instead of using a threshold-based selection, each reset is based on evaluating the scores of the bottom one
    percent of neurons"; ties by index). ``tau`` then only sets the logged ratio.

    Logged under ``plasticity/<method>/`` (see :class:`InterventionCallback`): ``reset_count``,
    ``total_reset_count``, ``<network>/reset_count``, ``<network>/<layer>/reset_count``; the ratio at ``tau``
    (``dormant_ratio`` or ``grama_inactive_ratio``) as ``<network>/<ratio>_before`` on the scored batch and
    ``<network>/<ratio>_after`` (ReDo: the same batch right after the reset; ReGraMa: the first training pass
    that starts at least one update after the event; with zeroed outgoing weights a just-reset neuron's
    gradient is small until they grow, so for ``tau > 0`` it can still be flagged then); and the policy's output
    drift on a fixed probe batch (``action_change`` or ``policy_kl``; summed over the parts of a ReGraMa event).

    :param reset_freq: env steps between events.
    :param tau: score threshold (``<=``).
    :param networks: trainable networks to act on (default: every hidden layer of every trainable network;
        target networks follow their twins).
    :param max_reset_fraction: at most this fraction of each layer's neurons is reset per event, those with
        the lowest scores (GraMa App. A.3: 5% for Humanoid); None: no cap.
    :param outgoing: ``"zero"`` (ReDo, GraMa Sec. 4.2) or ``"keep"`` (the official GraMa code).
    :param probe_batch_size: observations in the fixed drift probe batch (sampled from the buffer once).
    :param verbose: 0 silent, 1 prints each event.
    :param reset_fraction: reset exactly the ``floor(reset_fraction * n)`` lowest-scoring neurons of each layer per
        event instead of those ``<= tau`` (in (0, 1]; default None: the threshold). Not with ``max_reset_fraction``.
    :param log_reset_proportion: also log ``<network>/reset_proportion``, the share of the network's hidden neurons
        reset at least once so far (P3O Table 4; one bool per neuron, kept across ``save``/``load``).
    """

    ratio: ClassVar[str] = "ratio"
    scored_on: ClassVar[str] = "batch"  # or "training_pass"

    def __init__(
        self,
        reset_freq: int,
        tau: float,
        networks: str | Sequence[str] | None = None,
        max_reset_fraction: float | None = None,
        outgoing: str = "zero",
        probe_batch_size: int = 256,
        verbose: int = 0,
        reset_fraction: float | None = None,
        log_reset_proportion: bool = False,
    ) -> None:
        super().__init__(reset_freq, networks, probe_batch_size=probe_batch_size, verbose=verbose)
        self.reset_freq = self.freq
        self.tau = check_nonnegative("tau", tau)
        self.max_reset_fraction = check_fraction("max_reset_fraction", max_reset_fraction)
        self.reset_fraction = check_fraction("reset_fraction", reset_fraction)
        if self.reset_fraction is not None and self.max_reset_fraction is not None:
            raise ValueError(
                f"reset_fraction={reset_fraction} resets a fixed fraction per event; max_reset_fraction="
                f"{max_reset_fraction} caps the threshold selection: give one of them"
            )
        self.log_reset_proportion = bool(log_reset_proportion)
        self.tracker = ResetTracker()
        self.outgoing = check_choice("outgoing", outgoing, ("zero", "keep"))
        self.capture: Capture | None = None
        if self.scored_on not in EVENT_MECHANISMS:
            raise ValueError(f"scored_on must be one of {tuple(EVENT_MECHANISMS)!r}, got {self.scored_on!r}")
        self.events: EventMechanism = EVENT_MECHANISMS[self.scored_on](self)
        self._due = False  # an event is due (scheduled or requested) and has not started yet
        self._counts: dict[tuple[str, str], int] = {}
        self._drift = 0.0

    # -- the method ------------------------------------------------------------------------------------
    def score(self, group: NeuronGroup, record: GroupRecord) -> th.Tensor:
        """Normalised per-neuron score of ``group`` on the recorded batch, shape ``(neurons,)``."""
        raise NotImplementedError

    def select(self, group: NeuronGroup, scores: th.Tensor) -> tuple[th.Tensor, int]:
        """Neurons to reset (indices) and how many were at or below tau (before the cap; with ``reset_fraction``,
        the count the logged ratio uses)."""
        alive = group.alive()
        flagged = scores <= self.tau
        if alive is not None:
            flagged &= alive.to(flagged.device)
        idx = flagged.nonzero().flatten()
        n_flagged = int(idx.numel())
        if self.reset_fraction is not None:
            candidates = alive.to(scores.device).nonzero().flatten() if alive is not None else None
            n_alive = int(candidates.numel()) if candidates is not None else group.n_neurons
            return lowest(scores, math.floor(self.reset_fraction * n_alive + 1e-9), candidates), n_flagged
        if self.max_reset_fraction is not None:
            n_alive = int(alive.sum()) if alive is not None else group.n_neurons
            cap = math.floor(self.max_reset_fraction * n_alive)
            if n_flagged > cap:
                idx = idx[th.argsort(scores[idx], stable=True)[:cap]]
        return idx, n_flagged

    def reset_groups(self, groups: Sequence[NeuronGroup], zero_grad: bool = False) -> None:
        """Score ``groups`` on the capture's records and reset what :meth:`select` picks."""
        policy_side = any(g.network not in ("critic", "value") for g in groups)
        before = self.probe.output() if self.probe is not None and policy_side else None
        for group in groups:
            idx, _ = self.select(group, self.score(group, self.capture.records[group]))
            n = reset_neurons(group, idx, outgoing=self.outgoing, zero_grad=zero_grad)
            self._counts[(group.network, group.name)] = n
            if self.log_reset_proportion:
                self.tracker.add(group, idx)
        if before is not None:
            self._drift += self.probe.drift(before, self.probe.output())

    # -- schedule ---------------------------------------------------------------------------------------
    def _setup(self) -> None:
        super()._setup()
        self._teardown()
        groups = self.neurons.select(self.network_names, targets=False)
        self.capture = Capture(self.neurons, groups, gradients=self.events.needs_gradients)
        self._due = False

    def _on_step(self) -> bool:
        # A multiple passed while an event still waits for its training pass (SAC's learning_starts, a PPO rollout)
        # belongs to that event, as multiples skipped between two polls do: no second event right behind it.
        if self.event_schedule.poll(self.num_timesteps) and not self.events.awaiting_pass:
            self._due = True
        self.advance()
        return True

    def _on_rollout_start(self) -> None:
        self.advance()

    def _on_rollout_end(self) -> None:
        super()._on_rollout_end()
        self.advance()

    def request_event(self) -> None:
        """Ask for an event now, outside the schedule: it starts at once when it can (:meth:`advance`), else at the
        next step or rollout boundary (``"batch"``: once the buffer holds data; ``"training_pass"``: once the
        previous event is done, its reset then runs in the next training pass). Between ``init_callback`` and the
        algorithm's ``train()`` (a test driving the algorithm by hand), call :meth:`advance` after ``train()`` to
        finish and log a training-pass event."""
        self._due = True
        self.advance()

    def advance(self) -> None:
        """Move the event mechanism on: start a due event if it can start now, finish one whose training pass has
        run, log the measurement after it. The callback calls it at every step and rollout boundary."""
        if self.events.advance(self._due):
            self._due = False

    @property
    def last_counts(self) -> dict[tuple[str, str], int]:
        """Neurons reset per ``(network, layer)`` by the last event (the one in progress for a training-pass event
        whose networks are not all reset yet)."""
        return dict(self._counts)

    def _finish(self) -> None:
        self.events.finish()
        self._teardown()

    def _teardown(self) -> None:
        if self.capture is not None:
            self.capture.disarm()
        self.events.teardown()
        release_fresh_steps(self.model.policy)  # idle fresh-step hooks; pending ones stay until their entries get a gradient

    # -- ReDo-style event: a batch, now ---------------------------------------------------------------------
    def run_event(self) -> dict[tuple[str, str], int]:
        """Run one event now and return the resets per ``(network, layer)`` (``scored_on="batch"`` only: a
        training-pass event needs the algorithm's next update; see :meth:`request_event`)."""
        self.events.run_now()
        return dict(self._counts)

    def _batch_event(self) -> None:
        self.ensure_probe()
        batch = sample_batch(self.model, training_batch_size(self.model))  # A2C: the whole rollout
        probe(self.model, self.capture, batch=batch)
        if not self.check_finite(self.capture):
            self.capture.records = {}
            return  # a diverging network: no score, no reset
        self._counts, self._drift = {}, 0.0
        self._log_ratios("before")
        self.reset_groups(self.capture.groups)
        probe(self.model, self.capture, batch=batch)
        self._log_ratios("after")
        self._log_event()
        release_fresh_steps(self.model.policy)

    # -- logging ----------------------------------------------------------------------------------------
    def _log_event(self) -> None:
        if self.probe is not None:
            self.record(f"{self.method}/{self.probe.name}", self._drift)
        if self.log_reset_proportion:
            for network, share in self.tracker.proportions(self.capture.groups).items():
                self.record(f"{self.method}/{network}/reset_proportion", share)
        self.log_counts(self._counts)
        self.dump()
        self.save_state()

    def _log_ratios(self, when: str, network: str | None = None) -> None:
        flagged: dict[str, list[int]] = {}
        unusable = {n.split("/", 1)[0] for n in self.capture.nonfinite()}  # diverged: no ratio
        for group in self.capture.groups:
            if (network is not None and group.network != network) or group.network in unusable:
                continue
            _, n_flagged = self.select(group, self.score(group, self.capture.records[group]))
            alive = group.alive()
            tot = flagged.setdefault(group.network, [0, 0])
            tot[0] += n_flagged
            tot[1] += int(alive.sum()) if alive is not None else group.n_neurons
        for net, (k, n) in flagged.items():
            self.record(f"{self.method}/{net}/{self.ratio}_{when}", k / max(n, 1))

    def intervene(self) -> dict[tuple[str, str], int]:
        """Not used: events run through :meth:`run_event` or the training-pass hooks."""
        raise NotImplementedError

    # -- resuming ----------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.log_reset_proportion:
            state["ever_reset"] = self.tracker.get_state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.tracker.set_state(state.get("ever_reset"))


class EventMechanism:
    """How a :class:`NeuronResetCallback` event gets its scores and when its reset runs (the callback's
    ``scored_on``). The callback owns the schedule, the scores, the selection, the reset and the logs; the mechanism
    owns the event's progress and the hooks it needs.

    :param callback: the callback whose events this mechanism runs.
    """

    needs_gradients: ClassVar[bool] = False  # whether the callback's capture records gradients

    def __init__(self, callback: NeuronResetCallback) -> None:
        self.callback = callback

    @property
    def awaiting_pass(self) -> bool:
        """Whether an event has started and waits for the algorithm's training pass to score and reset."""
        return False

    def advance(self, due: bool) -> bool:
        """Move on at a step or rollout boundary; True when a due event was started (the request is taken)."""
        raise NotImplementedError

    def run_now(self) -> None:
        """Run a whole event now."""
        raise RuntimeError(
            f"{type(self.callback).__name__} resets during the algorithm's next training pass, not on demand: use "
            "request_event()"
        )

    def finish(self) -> None:
        """The ``learn()`` ends: complete what can be completed."""

    def teardown(self) -> None:
        """Remove the mechanism's hooks and forget an event in progress."""

    def drop_hooks(self) -> None:
        """Remove every hook handle (the fallback of the callback's abort, see ``PlasticityCallback._abort``)."""


class BatchScoring(EventMechanism):
    """``scored_on="batch"`` (ReDo, ReBorn): a due event runs at once, on a training batch sampled from the buffer
    (``NeuronResetCallback._batch_event``), as soon as the buffer holds data; no hook stays between events."""

    def advance(self, due: bool) -> bool:
        if due and buffer_ready(self.callback.model):
            self.callback._batch_event()
            return True
        return False

    def run_now(self) -> None:
        self.callback._batch_event()


class TrainingPassScoring(EventMechanism):
    """``scored_on="training_pass"`` (ReGraMa): a due event records the algorithm's next training pass and resets
    in the optimizer's pre-step hook of that pass, between backward and step, network by network as each network's
    pass is recorded; then the ratio after the event is measured on the first training pass that starts at least
    one update later.

    The multiples of ``reset_freq`` passed while an event waits for its pass belong to it: an event due during
    SAC's ``learning_starts`` runs at the first update, alone, and the next one at the next multiple after it.

    Its progress: ``idle -> scoring`` (capture armed, pre-step hooks registered) ``-> waiting`` (every network reset
    or skipped, event logged) ``-> after`` (capture armed again) ``-> idle`` (ratio after the event logged).
    """

    needs_gradients = True

    def __init__(self, callback: NeuronResetCallback) -> None:
        super().__init__(callback)
        self.phase = "idle"
        self.pending: set[str] = set()  # networks not yet reset in the current event
        self.skipped: set[str] = set()  # networks of the current event skipped for NaN/inf statistics
        self.event_updates = 0  # the algorithm's _n_updates when the current event's resets were done
        self.handles: list = []
        self.held: list[th.optim.Optimizer] = []

    @property
    def awaiting_pass(self) -> bool:
        return self.phase == "scoring" and bool(self.pending)

    def advance(self, due: bool) -> bool:
        cb = self.callback
        if self.phase == "scoring" and not self.pending:
            self.phase = "waiting"
            self._finish_event()  # idle again when every network was skipped
        elif self.phase == "waiting" and cb.model._n_updates > self.event_updates:
            cb.capture.arm()
            self.phase = "after"
        elif self.phase == "after" and cb.capture.complete:
            cb._log_ratios("after")
            cb.dump()
            cb.capture.disarm()
            self.phase = "idle"
        if self.phase == "idle" and due:
            self._start_event()
            return True
        return False

    def finish(self) -> None:
        if self.phase == "scoring" and self.callback._counts:
            self._finish_event()  # an event completed in the last train() of this learn()

    def teardown(self) -> None:
        self._remove_handles()
        self.phase = "idle"
        self.pending = set()

    def drop_hooks(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _remove_handles(self) -> None:
        had = bool(self.handles)
        for handle in self.handles:
            handle.remove()
        if had:
            release_fresh_steps(self.held, hold=True)
        self.handles = []
        self.held = []

    def _start_event(self) -> None:
        cb = self.callback
        cb.ensure_probe()
        cb._counts, cb._drift = {}, 0.0
        self.pending = {g.network for g in cb.capture.groups}
        self.skipped = set()
        cb.capture.arm()
        optimizers = {id(o): o for g in cb.capture.groups for o in cb.neurons.optimizers_of(g.producer.weight)}
        self.held = list(optimizers.values())
        hold_fresh_steps(self.held)  # registered now: no hook may be added while an optimizer runs its hooks
        # SURGERY: after the capture's OBSERVE hook has recorded this step's gradients, before the fresh-step hook
        self.handles = [step_hooks(opt).add_pre(SURGERY, cb.guarded(self._before_step)) for opt in self.held]
        self.phase = "scoring"

    def _before_step(self, optimizer: th.optim.Optimizer, args, kwargs) -> None:
        """Pre-step hook: reset the networks this optimizer updates once their pass is fully recorded."""
        cb = self.callback
        for network in sorted(self.pending):
            groups = [g for g in cb.capture.groups if g.network == network]
            if optimizer not in cb.neurons.optimizers_of(groups[0].producer.weight):
                continue
            if not cb.capture.network_complete(network):
                continue
            self.pending.discard(network)
            if not cb.check_finite(cb.capture, groups, dump=False):
                self.skipped.add(network)  # a diverging network: no score, no reset
                continue
            cb._log_ratios("before", network)
            cb.reset_groups(groups, zero_grad=True)

    def _finish_event(self) -> None:
        cb = self.callback
        for handle in self.handles:
            handle.remove()
        self.handles = []
        cb.capture.disarm()
        release_fresh_steps(self.held, hold=True)
        self.event_updates = cb.model._n_updates
        if self.skipped and self.skipped >= {g.network for g in cb.capture.groups}:
            self.skipped = set()
            self.phase = "idle"  # skipped in every network: nothing to log but the count
            cb.dump()
            return
        cb._log_event()


# scored_on -> the mechanism of its events
EVENT_MECHANISMS: dict[str, type[EventMechanism]] = {"batch": BatchScoring, "training_pass": TrainingPassScoring}
