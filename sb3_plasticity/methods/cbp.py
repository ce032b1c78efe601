"""Continual backpropagation, CBP (Dohare et al., Nature 2024, "Loss of plasticity in deep continual learning")."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch as th

from sb3_plasticity.capture import Capture, GroupRecord, is_finite
from sb3_plasticity.checks import check_positive_int, check_probability, check_range
from sb3_plasticity.hooks import AFTER_UPDATE, step_hooks
from sb3_plasticity.methods.intervention import InterventionCallback
from sb3_plasticity.methods.neuron_reset import ResetTracker
from sb3_plasticity.metrics import contribution_utility, outgoing_magnitude
from sb3_plasticity.neurons import NeuronGroup
from sb3_plasticity.surgery import fresh_steps_state, release_fresh_steps, reset_neurons, restore_fresh_steps

__all__ = ["CBPCallback", "CBPLayerState"]


@dataclass
class CBPLayerState:
    """Per-neuron CBP statistics of one hidden layer.

    :param utility: running average of the contribution utility ``|h_i| * sum_k |w_ki|``.
    :param mean_activation: running average of ``h_i`` (for the next-layer bias compensation).
    :param age: updates since the neuron was (re)initialised.
    :param pending: fractional number of replacements carried over (accumulated replacement).
    :param n_updates: updates of the layer so far (the clock of ``replace_every``).
    """

    utility: th.Tensor
    mean_activation: th.Tensor
    age: th.Tensor
    pending: float = 0.0
    n_updates: int = 0

    @classmethod
    def zeros(cls, n: int, device: th.device) -> CBPLayerState:
        return cls(th.zeros(n, device=device), th.zeros(n, device=device), th.zeros(n, dtype=th.long, device=device))

    def update(self, contribution: th.Tensor, activation_mean: th.Tensor, decay: float) -> None:
        """One update: age += 1 and the running averages move towards this batch's values."""
        self.age += 1
        self.n_updates += 1
        self.utility.mul_(decay).add_(contribution, alpha=1 - decay)
        self.mean_activation.mul_(decay).add_(activation_mean, alpha=1 - decay)

    def corrected(self, x: th.Tensor, decay: float) -> th.Tensor:
        """Bias-corrected running average (Adam-style ``/ (1 - decay^age)``)."""
        if decay == 0:
            return x
        return x / (1 - decay ** self.age.clamp_min(1).to(x.dtype))

    def to_replace(self, replacement_rate: float, maturity_threshold: int, decay: float) -> th.Tensor:
        """Indices of the neurons to replace now: ``replacement_rate * (# mature)`` per update, fractional counts
        accumulated, taken among the mature neurons (``age > maturity_threshold``) with the lowest utility."""
        eligible = (self.age > maturity_threshold).nonzero().flatten()
        self.pending += replacement_rate * eligible.numel()
        k = min(math.floor(self.pending), eligible.numel())
        if k <= 0:
            return eligible[:0]
        self.pending -= k
        utility = self.corrected(self.utility, decay)[eligible]
        return eligible[th.argsort(utility, stable=True)[:k]]

    def forget(self, idx: th.Tensor) -> None:
        self.utility[idx] = 0
        self.mean_activation[idx] = 0
        self.age[idx] = 0


class CBPCallback(InterventionCallback):
    """Continual backpropagation (Dohare et al. 2024; GnT): after every optimizer update of a network, for each
    of its hidden layers,

    1. update each neuron's running contribution utility ``u_i <- eta u_i + (1 - eta) E|h_i| mean_k |w_ki|``
       (``w_ki`` its outgoing weights, ``E`` over the update's batch; :func:`~sb3_plasticity.metrics.
       contribution_utility`) and its running mean activation;
    2. add ``replacement_rate x (# mature neurons)`` to a fractional counter (mature: ``age >
       maturity_threshold`` updates); replace ``floor(counter)`` of them, the lowest bias-corrected utility
       first, and keep the remainder. With ``replace_every=N`` step 2 runs only at every ``N``-th update of the
       layer (``replacement_rate`` is then the fraction of the mature neurons replaced per such event; step 1 still
       runs at every update);
    3. replacing a neuron: add its mean contribution ``w_ki * f_i`` to the next layer's bias (so the function
       barely moves), re-initialise its incoming weights from the layer's own init, zero its outgoing weights,
       give those entries fresh optimizer state and update the target twin (see :mod:`sb3_plasticity.surgery`);
       its utility, mean activation and age restart at 0.

    The activations are those of the update's own training pass (critic loss, actor loss, each PPO minibatch).
    Replacements are logged every ``log_freq`` env steps (counts since the last log); the dormant ratios and
    output drift are measured around the first replacement of each log window that touches the policy (the
    first one at all when the callback acts on critics only): measuring every replacement would cost a probe
    forward per update.

    :param replacement_rate: fraction of mature neurons replaced per update (default 1e-4, Dohare et al.).
    :param maturity_threshold: updates before a neuron can be replaced (default 100, Dohare et al.).
    :param decay_rate: ``eta`` of the running averages (default 0.99, Dohare et al.).
    :param networks: trainable networks (default: all).
    :param log_freq: env steps between logs (default 1000).
    :param dormant_tau: threshold of the logged dormant ratios (default 0.1).
    :param probe_batch_size: observations of the fixed probe batch (default 256).
    :param verbose: 0 or 1.
    :param replace_every: replace only every this many updates (gradient steps) of each layer (default None: at
        every update, as GnT). ``replacement_rate=0.01, replace_every=10_000``: 1% of the mature neurons every
        10,000 gradient steps.
    :param log_reset_proportion: also log ``<network>/reset_proportion`` (share of the hidden neurons replaced at
        least once so far; P3O Table 4).
    """

    method = "cbp"

    def __init__(
        self,
        replacement_rate: float = 1e-4,
        maturity_threshold: int = 100,
        decay_rate: float = 0.99,
        networks: str | Sequence[str] | None = None,
        log_freq: int = 1000,
        dormant_tau: float = 0.1,
        probe_batch_size: int = 256,
        verbose: int = 0,
        replace_every: int | None = None,
        log_reset_proportion: bool = False,
    ) -> None:
        super().__init__(log_freq, networks, dormant_tau, probe_batch_size, verbose, freq_name="log_freq")
        self.replace_every = (
            None if replace_every is None else check_positive_int("replace_every", replace_every, unit="updates")
        )
        self.log_reset_proportion = bool(log_reset_proportion)
        self.tracker = ResetTracker()
        self.replacement_rate = check_probability("replacement_rate", replacement_rate)
        self.maturity_threshold = check_range("maturity_threshold", maturity_threshold, 0, integer=True)
        self.decay_rate = check_range("decay_rate", decay_rate, 0.0, 1.0, high_open=True)
        self.log_freq = self.freq
        self.states: dict[str, CBPLayerState] = {}
        self.capture: _UpdatePassCapture | None = None
        self._step_handles: list = []
        self._updated_by: dict[int, list[NeuronGroup]] = {}
        self._learn_id: float | None = None
        self._policy_side = False
        self._window: dict[tuple[str, str], int] = {}
        self._measured_window = False
        self._skipped_logged = 0  # skipped_events as last logged

    # -- wiring ------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        super()._setup()
        self._remove_step_hooks()
        groups = self.neurons.select(self.network_names, targets=False)
        device = self.model.device
        for g in groups:
            if g.key not in self.states or self.states[g.key].utility.numel() != g.n_neurons:
                self.states[g.key] = CBPLayerState.zeros(g.n_neurons, device)
        # Kept armed for the whole run: each group records the last training forward before each update.
        self.capture = _UpdatePassCapture(self.neurons, groups, gradients=False)
        self.capture.arm()
        # the groups whose incoming weights each optimizer updates
        self._updated_by: dict[int, list[NeuronGroup]] = {}
        for g in groups:
            for opt in self.neurons.optimizers_of(g.producer.weight):
                self._updated_by.setdefault(id(opt), []).append(g)
        optimizers = {id(o): o for g in groups for o in self.neurons.optimizers_of(g.producer.weight)}
        self._learn_id = getattr(self.model, "start_time", None)
        # AFTER_UPDATE: the utilities read the final (masked, clipped) weights of the step
        hook = self.guarded(self._after_update)
        self._step_handles = [step_hooks(opt).add_post(AFTER_UPDATE, hook) for opt in optimizers.values()]
        # the drift and before/after ratios are measured around the first replacement of each log window that
        # touches the policy (critic replacements do not move it), if the callback acts on the policy at all
        self._policy_side = any(_moves_policy(g) for g in groups)

    def _remove_step_hooks(self) -> None:
        for handle in self._step_handles:
            handle.remove()
        self._step_handles = []

    def _finish(self) -> None:
        self._remove_step_hooks()
        if self.capture is not None:
            self.capture.disarm()
        if self._window or self._skipped_unlogged():
            # the open window's counts reach the log when a learn() ends; n_events counts the windows logged, so a
            # run split in two learn() calls logs (and counts) one window more than the same run in one call
            self._log_window()
        self.save_state()
        release_fresh_steps(self.model.policy)

    def _on_step(self) -> bool:
        if self.event_schedule.poll(self.num_timesteps):
            self._log_window()
        return True

    def _log_window(self) -> None:
        if self.log_reset_proportion:
            for network, share in self.tracker.proportions(self.capture.groups).items():
                self.record(f"{self.method}/{network}/reset_proportion", share)
        self.log_counts(self._window)
        if self.skipped_events:
            self.record(f"{self.method}/skipped_events", self.skipped_events)
        self._skipped_logged = self.skipped_events
        self.dump()
        self.save_state()
        self._window = {}
        self._measured_window = False

    def _skipped_unlogged(self) -> bool:
        return self.skipped_events != self._skipped_logged

    @property
    def unlogged_counts(self) -> dict[tuple[str, str], int]:
        """Neurons replaced per ``(network, layer)`` since the last log (a copy): they reach ``plasticity/cbp/...``
        at the next log, every ``log_freq`` env steps or when ``learn()`` ends."""
        return dict(self._window)

    @property
    def n_replaced(self) -> int:
        """Neurons replaced so far by this callback, logged (``total_reset``, kept across ``save``/``load``) or
        not yet (:attr:`unlogged_counts`)."""
        return self.total_reset + sum(self._window.values())

    # -- the method --------------------------------------------------------------------------------------
    def _after_update(self, optimizer: th.optim.Optimizer, args, kwargs) -> None:
        """Optimizer post-step hook: steps 1-3 for the groups this optimizer updates."""
        if getattr(self.model, "start_time", None) != self._learn_id:
            return  # left behind by a learn() that ended in an exception: inert until removed
        records = self.capture.records
        done = [g for g in self._updated_by.get(id(optimizer), []) if g in records and records[g].activation is not None]
        replace: dict[NeuronGroup, th.Tensor] = {}
        updates = {}
        for group in done:
            h = self.capture.records.pop(group).activation
            updates[group] = (contribution_utility(h, outgoing_magnitude(group)), _mean_per_neuron(h))
        bad = [f"{g.network}/{g.name}" for g, (u, m) in updates.items() if not (is_finite(u) and is_finite(m))]
        if bad:
            # a diverging network: this update changes no utility, age or neuron (counted, logged with the window)
            self.skip_event(f"NaN or inf in the activations or outgoing weights of {', '.join(bad)}", dump=False)
            return
        for group, (contribution, mean_activation) in updates.items():
            state = self.states[group.key]
            state.update(contribution, mean_activation, self.decay_rate)
            if self.replace_every is not None and state.n_updates % self.replace_every != 0:
                continue
            idx = state.to_replace(self.replacement_rate, self.maturity_threshold, self.decay_rate)
            if idx.numel() > 0:
                replace[group] = idx
        if replace:
            self._replace(replace)

    def _replace(self, replace: dict[NeuronGroup, th.Tensor]) -> None:
        wanted = not self._policy_side or any(_moves_policy(g) for g in replace)
        if wanted and not self._measured_window and self.ensure_probe() is not None:
            self._measured_window = True
            self.measured(lambda: self._replace_now(replace))
        else:
            self._replace_now(replace)

    def _replace_now(self, replace: dict[NeuronGroup, th.Tensor]) -> None:
        for group, idx in replace.items():
            state = self.states[group.key]
            _compensate_next_bias(group, idx, state.corrected(state.mean_activation, self.decay_rate)[idx])
            n = reset_neurons(group, idx, outgoing="zero")
            state.forget(idx)
            if self.log_reset_proportion:
                self.tracker.add(group, idx)
            key = (group.network, group.name)
            self._window[key] = self._window.get(key, 0) + n

    # -- resuming ----------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["layers"] = {
            key: {
                "utility": s.utility.detach().cpu(),
                "mean_activation": s.mean_activation.detach().cpu(),
                "age": s.age.detach().cpu(),
                "pending": s.pending,
                "n_updates": s.n_updates,
            }
            for key, s in self.states.items()
        }
        if self.log_reset_proportion:
            state["ever_reset"] = self.tracker.get_state()
        # replaced entries whose fresh Adam step is still to come (their gradient was 0 so far)
        state["fresh_steps"] = fresh_steps_state(self.model.policy)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        device = self.model.device
        for key, s in state.get("layers", {}).items():
            if key in self.states and self.states[key].utility.numel() == s["utility"].numel():
                self.states[key] = CBPLayerState(
                    s["utility"].to(device),
                    s["mean_activation"].to(device),
                    s["age"].to(device),
                    float(s["pending"]),
                    int(s.get("n_updates", 0)),
                )
        self.tracker.set_state(state.get("ever_reset"))
        restore_fresh_steps(self.model.policy, state.get("fresh_steps"))


class _UpdatePassCapture(Capture):
    """Keeps each group's last gradient-enabled forward, the one its optimizer's update follows: a critic's own
    loss pass, not the actor-loss pass through the critic that comes after the critic's update (TD3, SAC). Keeping
    the first forward after an update would give the critic's next update the actor-loss pass, and one left over at
    the end of ``learn()`` would be lost on resume."""

    def _output_hook(self, group: NeuronGroup):
        def hook(module, inputs, output: th.Tensor) -> None:
            if self._counts(group):
                self.records.setdefault(group, GroupRecord()).activation = self._trim(output)

        return hook


def _moves_policy(group: NeuronGroup) -> bool:
    return group.network not in ("critic", "value")


def _mean_per_neuron(h: th.Tensor) -> th.Tensor:
    return h.detach().transpose(0, 1).reshape(h.shape[1], -1).mean(dim=1)


@th.no_grad()
def _compensate_next_bias(group: NeuronGroup, idx: th.Tensor, mean_activation: th.Tensor) -> None:
    """Move the replaced neurons' mean contribution ``sum_i w_ki f_i`` into each consumer's bias (and its twin's)."""
    twin_consumers = {c.name: c for c in group.twin.consumers} if group.twin is not None else {}
    for c in group.consumers:
        if c.module.bias is None:
            continue
        w = c.module.weight
        cols = c.input_index(idx).reshape(idx.numel(), -1)  # (replaced, block)
        f = mean_activation.to(w.dtype)[:, None].expand_as(cols).reshape(-1)
        sel = w[:, cols.reshape(-1)]
        delta = (sel.reshape(w.shape[0], cols.numel(), -1).sum(dim=2) * f).sum(dim=1)
        c.module.bias += delta
        twin = twin_consumers.get(c.name)
        if twin is not None and twin.module.bias is not None:
            twin.module.bias += delta.to(twin.module.bias.device)
