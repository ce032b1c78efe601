"""Neuroplastic Expansion (Liu et al., NE paper Sec. 3.2, Alg. 1-2): grow by gradient, prune dormant neurons,
review old experience."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch as th
from torch import nn

from sb3_plasticity.buffers import ExperienceReviewBuffer
from sb3_plasticity.capture import Capture
from sb3_plasticity.checks import check_bool, check_choice, check_nonnegative, check_positive_int, check_range
from sb3_plasticity.hooks import TOPOLOGY, step_hooks
from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.metrics import dormant_mask
from sb3_plasticity.networks import LayerNormTD3Policy
from sb3_plasticity.neurons import NeuronGroup
from sb3_plasticity.policies import _MaskedOffPolicy
from sb3_plasticity.schedule import EveryN
from sb3_plasticity.surgery import release_fresh_steps, reset_neurons, reset_optimizer_entries
from sb3_plasticity.topology import (
    GROWTH_SCHEDULES,
    MaskedLinear,
    WeightClip,
    grow_connections,
    grow_rate_at,
    masked_connections_per_neuron,
    masked_layers,
    prune_neurons,
    sync_masks,
    truncate_prune,
)

__all__ = [
    "REVIEW_METRICS",
    "MaskedLayerNormTD3Policy",
    "NECallback",
    "NeuroplasticExpansionCallback",
    "pooled_active_ratio",
]

GROWTH = ("gradient", "random")
CLIP_SCOPES = ("grown", "all")
CLIP_BOUNDS = ("fan_in", "neurons")
REVIEW_METRICS = ("per_sample", "any_sample")


def pooled_active_ratio(layers: Sequence[tuple[th.Tensor, th.Tensor | None]], metric: str = "per_sample") -> float:
    """Active-neuron ratio of a network on one batch, pooled over its hidden layers, over the neurons that exist.

    - ``"per_sample"`` (NE Eq. 1, ``sum_{i in l, x in Id} 1(h_i(x) > 0) / N``; the official NE code's FAU):
      the fraction of (sample, existing neuron) pairs whose output is > 0, i.e. the per-sample active fraction
      averaged over the batch. A neuron active on one sample in four counts 1/4.
    - ``"any_sample"``: the fraction of existing neurons whose output is > 0 on at least one sample of the batch
      (a neuron active on one sample in four counts 1).

    ``any_sample >= per_sample`` always. A Conv neuron (channel) is active on a sample when any of its positions is.

    :param layers: ``(h, alive)`` per hidden layer: ``h`` the outputs ``(batch, neurons, *spatial)``, ``alive`` a bool
        ``(neurons,)`` of the neurons that exist (None: all of them).
    :param metric: ``"per_sample"`` or ``"any_sample"``.
    :return: the ratio in [0, 1]; 0 when no neuron exists.
    """
    check_choice("metric", metric, REVIEW_METRICS)
    active: th.Tensor | int = 0
    total: th.Tensor | int = 0
    for h, alive in layers:
        batch, n = h.shape[0], h.shape[1]
        flags = h > 0 if h.dim() == 2 else h.reshape(batch, n, -1).gt(0).any(dim=2)  # (batch, neurons)
        if metric == "any_sample":
            flags = flags.any(dim=0)
        existing: th.Tensor | int = n
        if alive is not None:
            alive = alive.to(flags.device)
            flags = flags & alive
            existing = alive.sum()
        active = active + flags.sum()
        total = total + existing * (batch if metric == "per_sample" else 1)
    if not isinstance(total, th.Tensor):
        return float(active) / total if total else 0.0
    return float(active / total.clamp(min=1))  # one device sync per measurement (it runs every training pass)


class NeuroplasticExpansionCallback(PlasticityCallback):
    """Neuroplastic Expansion: start sparse, grow the connections with the largest gradients, prune dormant
    neurons, and feed the critic's active-neuron ratio to an :class:`~sb3_plasticity.ExperienceReviewBuffer`.

    Use with a masked policy::

        model = TD3(MaskedTD3Policy, env, replay_buffer_class=ExperienceReviewBuffer)
        model.learn(n, callback=NeuroplasticExpansionCallback())

    Every ``grow_interval`` env steps before ``end_step`` an event is due. The algorithm's next training pass
    is recorded (the critic's TD-loss pass and the actor's policy-loss pass; PPO's first minibatch), and once a
    network's pass is in, for that network (NE Alg. 1):

    1. **Grow** (NE Sec. 3.2): in every masked layer, switch on the ``k = floor(rate_t * inactive)`` inactive
       connections with the largest dense gradient ``|dL/dW|`` of that pass (``growth="random"``: uniformly at
       random, the naive growth of NE Fig. 2-3), ``rate_t = grow_rate / 2 * (1 + cos(pi * t / end_step))``, ``t``
       the step the event was due. Grown weights start at 0 (the function is unchanged at the event), their
       optimizer state is left as it is (NE App. C: no optimizer resets; ``reset_optimizer=True``: fresh), and
       from then on they are clipped to ``[-kappa * s, kappa * s]`` (``s = 1 / sqrt(fan_in)``, ``clip_bound``)
       after every optimizer step (NE Alg. 1, "weight clipping for the newly added" connections).
    2. **Prune** (NE Sec. 3.2, Alg. 2): neurons that are dormant at ``tau`` on the recorded batch (``tau = 0``:
       output 0 on every sample) and still hold maskable connections are visited in random order; each one
       whose connections fit in the budget ``floor(prune_ratio * grown)`` of its network loses all of them
       (its incoming row if its layer is masked, its columns in masked consumers) and is re-initialised the
       ReDo way (fresh incoming weights and bias, zeroed outgoing weights; optimizer state as for grown
       connections). It leaves the topology and comes back only when growth picks its connections again (NE Sec.
       3.2: "reactivated as new candidates"), so it must get gradients: a neuron whose masked layer lost its
       whole incoming row outputs ``relu(b)`` on every input, and its bias is drawn positive
       (:func:`~sb3_plasticity.surgery.reinitialize_incoming`), a live constant unit whose connections get
       non-zero dense gradients.
    3. Target networks get the online masks (:func:`~sb3_plasticity.topology.sync_masks`).

    Every training pass the critic's active-neuron ratio (:func:`pooled_active_ratio` with ``review_metric``:
    by default NE Eq. 1's per-sample active fraction, pooled over its hidden layers, over the neurons that exist)
    is measured on the TD-loss batch and fed to the replay buffer when it is an
    :class:`~sb3_plasticity.ExperienceReviewBuffer` (its ``review_window`` measurements make epsilon). The other
    networks' ratios are measured on the first training pass after each log point (they only feed the logs).

    Logged (TensorBoard, written at once) under ``plasticity/neuroplastic_expansion/`` (the method's one name, as
    its class and file; the tags were ``plasticity/ne/...`` before issue 12; ``ne`` stays the method's key in the
    experiment registry): per event ``grown``, ``pruned`` (connections), ``pruned_neurons``, ``grow_rate``,
    ``<network>/grown|pruned``, ``<network>/<layer>/grown``; per event and every ``log_freq`` steps
    ``plasticity/<network>/density`` and ``plasticity/<network>/<layer>/density`` (fraction of the masked layers'
    connections that exist), ``plasticity/neuroplastic_expansion/<network>/active_ratio`` (critic: mean over the
    passes since the last log; others: the pass after the log point), ``plasticity/neuroplastic_expansion/epsilon``
    and ``plasticity/neuroplastic_expansion/review_fraction`` (review batches among those sampled since the last
    log) with an experience review buffer; once per ``learn()`` the text
    ``plasticity/neuroplastic_expansion/review_metric`` (TensorBoard's Text tab), the definition of every
    ``active_ratio`` above and of what fed epsilon. Counters are kept in
    ``model.plasticity_state["neuroplastic_expansion"]``; a model saved with the old key (``"ne"``) resumes.

    Decisions where the paper is open (``docs/methods.md``): App. C's "decay weight alpha = 0.02" has no place in
    the paper's equations (Sec. 3.2's alpha is the cosine's amplitude, which App. C gives per task as the grow
    number 0.15 or 0.01) and is not used; the truncation keeps whole neurons and counts connections, per network;
    ``t`` and the interval are env steps (the official code counts updates).

    :param grow_interval: env steps between events (Delta T; default 20_000, NE App. C; 25_000 Humanoid/Ant).
    :param grow_rate: ``rate_0``, the fraction of a layer's remaining capacity grown at ``t = 0``, in (0, 1]
        (default 0.15, NE App. C; 0.01 Humanoid/Ant), or one per network, ``{"actor": 0.01, "critic": 0.02}``
        (NE App. C for DrQ).
    :param prune_ratio: omega, pruned connections per grown connection at most, in [0, 1) (default 0.2, NE App. C;
        0.4 Humanoid/Ant).
    :param end_step: T_end in env steps, no event from then on (default: the end of the current ``learn()``,
        ``model._total_timesteps``: NE App. C "ending step is the max training step").
    :param tau: dormancy threshold of the pruning (ReDo score ``<=``; default 0, NE Sec. 3.2).
    :param clip_kappa: kappa of the weight clipping (default 3, NE App. C for MuJoCo; 2 for pixels); None: no
        clipping.
    :param clip_scope: ``"grown"`` (default, NE Alg. 1): the grown connections; ``"all"``: every weight of the
        masked layers from the start (Elsayed et al. 2024's clipping; NE App. C "activated after the network
        initialization").
    :param networks: networks to grow (default: every trainable network with masked layers: ``actor`` and
        ``critic``, or ``policy`` and ``value``); ``("actor",)`` / ``("critic",)`` are NE Fig. 9b's ablations.
    :param growth: ``"gradient"`` (default) or ``"random"``.
    :param prune: prune dormant neurons after growing (default True; False is the "w/o prune" ablation of NE Fig. 3
        and, on NE-DrQ, Table 4).
    :param log_freq: env steps between the density / active-ratio / review logs (default 1000).
    :param clip_bound: ``s`` of the clipping bound ``kappa * s``: ``"fan_in"`` (default), ``1 / sqrt(in_features)``,
        the scale of the layer's init (PyTorch's default ``Linear`` init draws from ``U(-s, s)``), Elsayed et al.'s
        ``s_l``; ``"neurons"``, ``1 / sqrt(out_features)``, NE Alg. 1 read literally ("n_l the number of the
        neurons in layer l"). Equal for square layers (docs/methods.md, Divergences).
    :param reset_optimizer: give grown connections and pruned neurons a fresh optimizer state (zeroed moments, a
        fresh first Adam step: ``surgery.reset_optimizer_entries``). Default False, NE App. C: "Additional optimizer
        resets were eliminated for all methods"; their state is then whatever it was (zero moments for a connection
        that never existed).
    :param review_metric: the critic's active-neuron ratio that feeds the review buffer's epsilon (and every
        ``active_ratio`` this callback logs): ``"per_sample"`` (default; NE Eq. 1 and the official code: the fraction
        of (sample, neuron) pairs with output > 0) or ``"any_sample"`` (the fraction of neurons with output > 0 on
        at least one sample of the batch). See :func:`pooled_active_ratio`.
    :param schedule: how ``rate_t`` decays over the events (NE App. F.5, Table 11; :func:`~sb3_plasticity.topology.
        grow_rate_at`): ``"cosine"`` (default, NE Sec. 3.2), ``"uniform"`` (``rate_0`` at every event) or
        ``"warm_decay"`` (``rate_0 * (1 - t / T_end)``, linear).
    :param initial_neurons: keep only this fraction of each hidden layer's neurons of the grown networks at the start,
        chosen uniformly at random (``round(fraction * n)`` per layer): every maskable connection of the others is
        removed, as a pruned neuron's (NE Sec. 3.1's naive growth starts from 20% of the neurons). Applied once, at
        the start of the first ``learn()`` (``num_timesteps == 0``), on top of the policy's masks: use a masked policy
        with ``initial_density=1.0`` and ``dense_first_last=False`` for a network of whole neurons. None (default):
        the policy's masks as they are.
    :param compose: run beside another weight-changing callback (ReDo, Reset, ...) on the same networks (NE earlier
        version, App. C). NE then does not claim the networks' neurons (the other callback does: the base class
        allows one claim per network), owns the masks alone and re-applies them (zeroes the stored weights of masked
        connections) at the end of every rollout, before the next training pass, whatever the other callback wrote.
        See docs/methods.md, "NE combined with LN, ReDo or Reset".
    :param verbose: 0 silent, 1 prints each event.
    """

    method: ClassVar[str] = "neuroplastic_expansion"
    claims_neurons = True
    trainable_only = True
    state_key: ClassVar[str] = "neuroplastic_expansion"  # type: ignore[misc]
    legacy_methods: ClassVar[tuple[str, ...]] = ("ne",)  # the state key (and tag prefix) before issue 12

    def __init__(
        self,
        grow_interval: int = 20_000,
        grow_rate: float | dict[str, float] = 0.15,
        prune_ratio: float = 0.2,
        end_step: int | None = None,
        tau: float = 0.0,
        clip_kappa: float | None = 3.0,
        clip_scope: str = "grown",
        networks: str | Sequence[str] | None = None,
        growth: str = "gradient",
        prune: bool = True,
        log_freq: int = 1000,
        clip_bound: str = "fan_in",
        reset_optimizer: bool = False,
        review_metric: str = "per_sample",
        schedule: str = "cosine",
        initial_neurons: float | None = None,
        compose: bool = False,
        verbose: int = 0,
    ) -> None:
        super().__init__(networks, verbose)
        self.schedule = check_choice("schedule", schedule, GROWTH_SCHEDULES)
        self.initial_neurons = (
            None if initial_neurons is None else check_range("initial_neurons", initial_neurons, 0.0, 1.0, low_open=True)
        )
        self.compose = check_bool("compose", compose)
        # the base class lets one callback claim a network's neurons; composed, NE leaves the claim to the other method
        self.claims_neurons = not compose  # type: ignore[misc]
        self.event_schedule = EveryN(grow_interval, name="grow_interval")
        self.grow_interval = self.event_schedule.freq
        if isinstance(grow_rate, dict):
            if not grow_rate:
                raise ValueError("grow_rate must be a number or a non-empty {network: rate} dict, got {}")
            self.grow_rate: float | dict[str, float] = {
                str(net): check_range(f"grow_rate[{net!r}]", rate, 0.0, 1.0, low_open=True) for net, rate in grow_rate.items()
            }
        else:
            self.grow_rate = check_range("grow_rate", grow_rate, 0.0, 1.0, low_open=True)
        self.prune_ratio = check_range("prune_ratio", prune_ratio, 0.0, 1.0, high_open=True)
        self.end_step = None if end_step is None else check_positive_int("end_step", end_step, unit="env steps")
        self.tau = check_nonnegative("tau", tau)
        self.clip_kappa = None if clip_kappa is None else check_range("clip_kappa", clip_kappa, 0.0, low_open=True)
        self.clip_scope = check_choice("clip_scope", clip_scope, CLIP_SCOPES)
        self.growth = check_choice("growth", growth, GROWTH)
        self.prune = check_bool("prune", prune)
        self.clip_bound = check_choice("clip_bound", clip_bound, CLIP_BOUNDS)
        self.reset_optimizer = check_bool("reset_optimizer", reset_optimizer)
        self.review_metric = check_choice("review_metric", review_metric, REVIEW_METRICS)
        self.log_schedule = EveryN(log_freq, name="log_freq")
        self.log_freq = self.log_schedule.freq
        self.n_events = 0
        self.total_grown = 0
        self.total_pruned = 0
        self.t_end = 0
        self.masked: dict[str, list[tuple[str, MaskedLinear]]] = {}
        self.meter: Capture | None = None  # the critic, every training pass
        self.capture: Capture | None = None  # the grown networks, for an event or a logged measurement
        self._measure: set[str] = set()
        self.clip: WeightClip | None = None
        self.review_buffer: ExperienceReviewBuffer | None = None
        self._event_step: int | None = None
        self._pending: set[str] = set()
        self._grads: dict[MaskedLinear, th.Tensor] = {}
        self._event_log: dict[str, float] = {}
        self._ratios: dict[str, list[float]] = {}
        self._alive: dict[str, tuple[list[tuple[NeuronGroup, th.Tensor | None]], int]] = {}
        self._handles: list = []
        self._review_counts = (0, 0)

    # -- the method (NE Alg. 1) ---------------------------------------------------------------------------
    def expand(self, network: str) -> None:
        """Grow, then prune, one network on its recorded training pass."""
        rate = self.rate(network)
        grown = 0
        for name, layer in self.masked[network]:
            new = grow_connections(layer, self.grow_scores(layer), rate)
            if self.reset_optimizer:
                reset_optimizer_entries(layer.weight, new, self.neurons.optimizers_of(layer.weight))
            if self.clip is not None and self.clip_scope == "grown":
                self.clip.add(layer, new)
            self._event_log[f"{network}/{name}/grown"] = int(new.sum())
            grown += int(new.sum())
        pruned, pruned_neurons = self.prune_dormant(network, math.floor(self.prune_ratio * grown)) if self.prune else (0, 0)
        self._event_log[f"{network}/grown"] = grown
        self._event_log[f"{network}/pruned"] = pruned
        self._event_log[f"{network}/pruned_neurons"] = pruned_neurons

    def rate(self, network: str, step: int | None = None) -> float:
        """``rate_t`` of ``network`` at the event of env step ``step`` (default: the current event; NE Sec. 3.2;
        ``schedule``, with ``T_end`` = ``t_end``)."""
        rate_0 = self.grow_rate[network] if isinstance(self.grow_rate, dict) else self.grow_rate
        return grow_rate_at(self.schedule, rate_0, self._event_step if step is None else step, self.t_end)

    def grow_scores(self, layer: MaskedLinear) -> th.Tensor:
        """``|dL/dW|`` of the recorded pass (gradient growth) or uniform noise (random growth)."""
        grad = self._grads.pop(layer)
        return grad if self.growth == "gradient" else th.rand_like(grad)

    def prune_dormant(self, network: str, budget: int) -> tuple[int, int]:
        """Prune dormant neurons of ``network`` truncated to ``budget`` connections (NE Alg. 2), re-initialise
        them; returns (connections, neurons) pruned."""
        candidates = []
        for group in self.groups(network):
            counts = masked_connections_per_neuron(group)
            dormant = dormant_mask(self.capture.records[group].activation, self.tau, group.alive()) & (counts > 0)
            idx = dormant.nonzero().flatten()
            candidates.append((group, idx, counts[idx]))
        removed = n_neurons = 0
        for group, idx in truncate_prune(candidates, budget).items():
            removed += prune_neurons(group, idx)
            # a grow candidate again (NE Sec. 3.2): a neuron left without incoming connections gets a positive bias,
            # so it is active and its connections get gradients (surgery.reinitialize_incoming)
            n_neurons += reset_neurons(group, idx, outgoing="zero", optimizer=self.reset_optimizer)
        return removed, n_neurons

    # -- set-up ---------------------------------------------------------------------------------------------
    def groups(self, network: str) -> list[NeuronGroup]:
        return [g for g in self.neurons.groups if g.network == network]

    def _setup(self) -> None:
        self._teardown()
        buffer = getattr(self.model, "replay_buffer", None)
        if isinstance(buffer, ExperienceReviewBuffer) and "critic" not in self.neurons.trainable_networks:
            # the review buffer's epsilon comes from the critic's active-neuron ratio (NE Sec. 3.3): without a critic
            # it would never get one and would sample uniformly, silently
            raise ValueError(
                f"{type(self).__name__} with an ExperienceReviewBuffer needs a trainable network named 'critic' (its "
                f"active-neuron ratio drives the review); {type(self.model).__name__}'s "
                f"{type(self.model.policy).__name__} has {sorted(self.neurons.trainable_networks)!r}: use SB3's "
                "ReplayBuffer instead (Experience Review is defined for actor-critic algorithms)"
            )
        masked = {net: self._masked_layers(net) for net in self.neurons.trainable_networks}
        if not any(masked.values()):
            raise ValueError(
                f"{type(self).__name__} needs a policy with MaskedLinear layers (MaskedTD3Policy, MaskedSACPolicy, "
                "MaskedTQCPolicy, MaskedActorCriticPolicy, MaskedDQNPolicy, MaskedQRDQNPolicy); "
                f"{type(self.model.policy).__name__} has none"
            )
        names = self.networks if self.networks is not None else [n for n, layers in masked.items() if layers]
        for net in names:
            if not masked[net]:
                raise ValueError(f"networks={self.networks!r}: network {net!r} has no masked layer to grow")
        self.masked = {net: masked[net] for net in names}
        if self.initial_neurons is not None and self.model.num_timesteps == 0:
            self._keep_initial_neurons()
        if isinstance(self.grow_rate, dict) and set(self.grow_rate) != set(names):
            raise ValueError(
                f"grow_rate={self.grow_rate!r} must give a rate for exactly the networks that grow, {sorted(names)!r}"
            )
        self.t_end = self.end_step if self.end_step is not None else int(self.model._total_timesteps)
        self.review_buffer = buffer if isinstance(buffer, ExperienceReviewBuffer) else None
        if self.review_buffer is not None:
            self.review_buffer.active_ratio_metric = self.review_metric
        has_critic = "critic" in self.neurons.trainable_networks
        measured = set(names) | ({"critic"} if has_critic else set())
        self.meter = Capture(self.neurons, self.groups("critic"), gradients=False) if has_critic else None
        if self.meter is not None:
            self.meter.arm()
        self.capture = Capture(self.neurons, [g for g in self.neurons.groups if g.network in names], gradients=False)
        self._measure = set()
        self._ratios = {"critic": []} if has_critic else {}
        self._alive = {}
        for net in measured:
            self._refresh_alive(net)
        self.clip = None if self.clip_kappa is None else WeightClip(self.clip_kappa, self.clip_bound)
        self._register_step_hooks()
        self.event_schedule.start(self.model.num_timesteps)
        self.log_schedule.start(self.model.num_timesteps)
        self._pending, self._event_step, self._grads, self._event_log = set(), None, {}, {}
        self._review_counts = self._review_counters()
        self._log_densities()  # the curve starts at the initial topology
        # which active-neuron ratio the logs show and epsilon is made of: a text TensorBoard shows (Text tab)
        self.logger.record(f"plasticity/{self.method}/review_metric", self.review_metric, exclude=("stdout", "log"))
        self.dump()

    @th.no_grad()
    def _keep_initial_neurons(self) -> None:
        """Remove the maskable connections of all but ``initial_neurons`` of each hidden layer's neurons (chosen
        uniformly at random) in the grown networks, then give the target networks the online masks."""
        for network in self.masked:
            for group in self.groups(network):
                keep = round(self.initial_neurons * group.n_neurons)
                drop = th.randperm(group.n_neurons)[keep:]
                prune_neurons(group, th.sort(drop).values)
            for online, target in self._twins(network):
                sync_masks(online, target)

    def remask(self) -> None:
        """Zero the stored weights of every masked connection of the grown networks (and their targets)."""
        for network, layers in self.masked.items():
            for _, layer in layers:
                layer.apply_mask()
            for _online, target in self._twins(network):
                for _, layer in masked_layers(target):
                    layer.apply_mask()

    def _masked_layers(self, network: str) -> list[tuple[str, MaskedLinear]]:
        # named as the neuron model names them (a group's producer, or a consumer such as an output layer)
        names: dict[nn.Module, str] = {}
        for group in self.groups(network):
            names.setdefault(group.producer, group.name)
            for consumer in group.consumers:
                names.setdefault(consumer.module, consumer.name)
        found: list[tuple[str, MaskedLinear]] = []
        for module in self.neurons.network_modules.get(network, []):
            found += [(names.get(layer, name), layer) for name, layer in masked_layers(module)]
        return found

    def _register_step_hooks(self) -> None:
        """After every optimizer step of the grown networks: re-zero the stored weights of masked connections (when
        optimizer state is kept, see below) and clip (NE Alg. 1).

        A pruned connection keeps its Adam moments when ``reset_optimizer`` is False (NE App. C), so Adam keeps
        moving its stored weight although its gradient is 0. The forward pass multiplies by the mask, so that
        changes nothing now, but growth must find it at 0 again (grown weights start at 0, the function is
        unchanged at the event): the official NE code re-applies its masks after every step for the same reason.
        """
        remask = not self.reset_optimizer
        if self.clip is None and not remask:
            return
        per_optimizer: dict[int, tuple[th.optim.Optimizer, list[MaskedLinear]]] = {}
        for layers in self.masked.values():
            for _, layer in layers:
                if self.clip is not None and self.clip_scope == "all":
                    self.clip.add(layer, th.ones_like(layer.mask, dtype=th.bool))
                for opt in self.neurons.optimizers_of(layer.weight):
                    per_optimizer.setdefault(id(opt), (opt, []))[1].append(layer)
        for opt, layers in per_optimizer.values():
            # TOPOLOGY: first after the update, so hooks that read the updated weights (CBP) see them masked and clipped
            self._handles.append(step_hooks(opt).add_post(TOPOLOGY, self._step_hook(layers, remask)))

    def _step_hook(self, layers: list[MaskedLinear], remask: bool):
        def hook(optimizer: th.optim.Optimizer, args, kwargs) -> None:
            for layer in layers:
                if remask:
                    layer.apply_mask()
                if self.clip is not None and layer in self.clip.clipped:
                    self.clip.apply(layer)

        return hook

    # -- schedule -------------------------------------------------------------------------------------------
    def _on_step(self) -> bool:
        self._collect()
        if self.event_schedule.poll(self.num_timesteps):
            due = self.event_schedule.last  # the multiple of grow_interval this event belongs to
            if due < self.t_end and self._event_step is None:
                self._start_event(due)
        if self.log_schedule.poll(self.num_timesteps):
            self._log_health()
            self.dump()
        return True

    def _on_rollout_start(self) -> None:
        self._collect()  # PPO/A2C: train() ran since the last step

    def _on_rollout_end(self) -> None:
        if self.compose:
            # after every callback's _on_step of the rollout (another method's event among them), before train()
            self.remask()

    def _start_event(self, step: int) -> None:
        self._event_step = step
        self._pending = set(self.masked)
        self.capture.arm()  # afresh: the activations must come from the pass that gives the gradients
        for layers in self.masked.values():
            for _, layer in layers:
                layer.dense_grad_hook = self._grad_catcher(layer)

    def _grad_catcher(self, layer: MaskedLinear):
        def hook(grad: th.Tensor) -> None:
            # the first backward after arming is the layer's own loss (critic: TD loss before the actor loss)
            if layer not in self._grads:
                self._grads[layer] = grad.detach().abs()

        return hook

    def _collect(self) -> None:
        """Read the last training pass: the critic's active ratio (for the review buffer), the networks measured for
        the logs, and the pending event's networks."""
        if self.meter is not None and self.meter.network_complete("critic"):
            ratio = self._active_ratio("critic", self.meter)
            self._ratios["critic"].append(ratio)
            if self.review_buffer is not None:
                self.review_buffer.record_active_ratio(ratio)
        if self.meter is not None:
            self.meter.records = {}  # the hooks stay: the next pass is recorded afresh
        for network in sorted(self._measure):
            if self.capture.network_complete(network):
                self.record(f"{self.method}/{network}/active_ratio", self._active_ratio(network, self.capture))
                self._measure.discard(network)
                if not self._measure:
                    self.dump()
        for network in sorted(self._pending):
            layers = [layer for _, layer in self.masked[network]]
            if self.capture.network_complete(network) and all(layer in self._grads for layer in layers):
                for layer in layers:
                    layer.dense_grad_hook = None
                self.expand(network)
                self._pending.discard(network)
                if network in self._alive:
                    self._refresh_alive(network)
        if self._event_step is not None and not self._pending:
            self._finish_event()
        if not self._pending and not self._measure:
            self.capture.disarm()

    def _active_ratio(self, network: str, capture: Capture) -> float:
        """``review_metric`` pooled over the network's hidden layers, over the neurons that exist."""
        groups, _ = self._alive[network]
        return pooled_active_ratio([(capture.records[g].activation, alive) for g, alive in groups], self.review_metric)

    def _refresh_alive(self, network: str) -> None:
        # the topology only changes at events: the existing neurons are not recomputed every training pass
        groups: list[tuple[NeuronGroup, th.Tensor | None]] = []
        total = 0
        for group in self.groups(network):
            alive = group.alive()
            n_alive = group.n_neurons if alive is None else int(alive.sum())
            groups.append((group, None if n_alive == group.n_neurons else alive))
            total += n_alive
        self._alive[network] = (groups, total)

    def _finish_event(self) -> None:
        for network in self.masked:
            for online, target in self._twins(network):
                sync_masks(online, target)
        release_fresh_steps(self.model.policy)
        grown = sum(int(v) for k, v in self._event_log.items() if k.count("/") == 1 and k.endswith("/grown"))
        pruned = sum(int(v) for k, v in self._event_log.items() if k.endswith("/pruned"))
        pruned_neurons = sum(int(v) for k, v in self._event_log.items() if k.endswith("/pruned_neurons"))
        self.n_events += 1
        self.total_grown += grown
        self.total_pruned += pruned
        for key, value in self._event_log.items():
            self.record(f"{self.method}/{key}", value)
        self.record(f"{self.method}/grown", grown)
        self.record(f"{self.method}/pruned", pruned)
        self.record(f"{self.method}/pruned_neurons", pruned_neurons)
        for network in self.masked:
            self.record(f"{self.method}/{network}/grow_rate", self.rate(network))
        if not isinstance(self.grow_rate, dict):
            self.record(f"{self.method}/grow_rate", self.rate(next(iter(self.masked))))
        self.record(f"{self.method}/n_events", self.n_events)
        self._log_densities()
        self.dump()
        if self.verbose >= 1:
            print(f"{type(self).__name__} at step {self.num_timesteps}: grew {grown}, pruned {pruned} connections")
        self._event_step, self._event_log = None, {}
        self.save_state()

    def _twins(self, network: str) -> list[tuple[nn.Module, nn.Module]]:
        targets = self.neurons.network_modules.get(f"{network}_target", [])
        online = self.neurons.network_modules.get(network, [])
        return list(zip(online, targets, strict=True)) if targets else []

    # -- logging --------------------------------------------------------------------------------------------
    def density(self, network: str) -> float:
        """Fraction of the connections of ``network``'s masked layers that exist."""
        on = sum(float(layer.mask.sum()) for _, layer in self.masked[network])
        return on / sum(layer.mask.numel() for _, layer in self.masked[network])

    def _log_densities(self) -> None:
        for network, layers in self.masked.items():
            self.record(f"{network}/density", self.density(network))
            for name, layer in layers:
                self.record(f"{network}/{name}/density", layer.density)

    def _review_counters(self) -> tuple[int, int]:
        buf = self.review_buffer
        return (buf.n_batches, buf.n_review_batches) if buf is not None else (0, 0)

    def _log_health(self) -> None:
        self._log_densities()
        ratios = self._ratios.get("critic")
        if ratios:
            self.record(f"{self.method}/critic/active_ratio", sum(ratios) / len(ratios))
            self._ratios["critic"] = []
        if self.review_buffer is not None:
            batches, reviews = self._review_counters()
            d_batches, d_reviews = batches - self._review_counts[0], reviews - self._review_counts[1]
            self._review_counts = (batches, reviews)
            self.record(f"{self.method}/epsilon", self.review_buffer.epsilon)
            if d_batches > 0:
                self.record(f"{self.method}/review_fraction", d_reviews / d_batches)
        # the other networks are measured on the next training pass (not on every pass: they feed no rule)
        self._measure = {net for net in self.masked if net != "critic" or self.meter is None}
        if self._measure and not self.capture.armed:
            self.capture.arm()

    # -- end, state -----------------------------------------------------------------------------------------
    def _finish(self) -> None:
        # the last train() of this learn() ran after the last step (off-policy) or rollout (PPO/A2C): read its pass now,
        # its active ratio and a pending event's activations and gradients, or a resumed run would lose them
        self._collect()
        if self._event_step is not None and self._event_log:
            self._finish_event()  # some networks grew in the last train() of this learn()
        self._teardown()

    def _teardown(self) -> None:
        for capture in (self.meter, self.capture):
            if capture is not None:
                capture.disarm()
        self._measure = set()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for layers in self.masked.values():
            for _, layer in layers:
                layer.dense_grad_hook = None
        self._pending, self._event_step, self._grads = set(), None, {}

    def layers_by_key(self) -> dict[str, MaskedLinear]:
        """The grown networks' masked layers by ``"<network>/<layer>"`` (the keys of the saved clip state)."""
        return {f"{net}/{name}": layer for net, layers in self.masked.items() for name, layer in layers}

    def get_state(self) -> dict[str, Any]:
        clipped = {}
        if self.clip is not None and self.clip_scope == "grown":
            keys = {layer: key for key, layer in self.layers_by_key().items()}
            clipped = {keys[layer]: mask.cpu() for layer, mask in self.clip.clipped.items() if layer in keys}
        return {
            "n_events": self.n_events,
            "total_grown": self.total_grown,
            "total_pruned": self.total_pruned,
            "clipped": clipped,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.n_events = int(state.get("n_events", 0))
        self.total_grown = int(state.get("total_grown", 0))
        self.total_pruned = int(state.get("total_pruned", 0))
        if self.clip is not None and self.clip_scope == "grown":
            layers = self.layers_by_key()
            for key, mask in state.get("clipped", {}).items():
                if key in layers:
                    self.clip.add(layers[key], mask.to(layers[key].weight.device))


NECallback = NeuroplasticExpansionCallback


class MaskedLayerNormTD3Policy(_MaskedOffPolicy, LayerNormTD3Policy):
    """:class:`~sb3_plasticity.LayerNormTD3Policy` (``Linear -> LayerNorm -> activation`` in every hidden layer of the
    actor and of each Q-network) with the maskable hidden layers of :class:`~sb3_plasticity.MaskedTD3Policy`: NE with
    LayerNorm (NE earlier version, App. C). Takes the kwargs of both. The norms are dense (never masked); a neuron
    without connections still enters its layer's norm statistics with its pre-activation, its bias.
    """

    actor_part = "mu"
    actor_output_after = False
    actor_output_inside = True
