"""ReBorn: weight sharing from over-active to dormant neurons (Qin et al., NeurIPS 2024, "The Dormant Neuron
Phenomenon in Multi-Agent Reinforcement Learning Value Factorization"; GraMa Table 8 baseline)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch as th
from torch import nn

from sb3_plasticity.capture import GroupRecord
from sb3_plasticity.checks import check_range
from sb3_plasticity.methods.neuron_reset import NeuronResetCallback
from sb3_plasticity.metrics import activity, normalized_scores
from sb3_plasticity.neurons import Consumer, NeuronGroup
from sb3_plasticity.surgery import reset_neurons, reset_optimizer_state

__all__ = ["ReBornCallback", "Transfer", "assign_receivers", "draw_transfer", "scalable", "transfer_neurons"]

# act(a * z) = a * act(z) for every a > 0: a reborn neuron may carry a scaled copy of its donor's pre-activation
_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU, nn.Identity)


def _per_neuron_affine(norm: nn.Module | None, n: int) -> bool:
    w = getattr(norm, "weight", None)
    return isinstance(w, nn.Parameter) and w.dim() == 1 and w.shape[0] == n


def scalable(group: NeuronGroup) -> bool:
    """Whether a reborn neuron of ``group`` can carry ``alpha`` times its donor's output (``alpha`` in ReBorn's
    random range) without changing the network's function: the activation is positively homogeneous (ReLU,
    LeakyReLU, none) and, with a norm, the norm has a per-neuron affine weight to carry ``alpha``. Otherwise reborn
    neurons are exact copies of their donor (``alpha = 1``), which keeps the function for any activation."""
    out = group.output
    homogeneous = out is group.producer or out is group.norm or isinstance(out, _HOMOGENEOUS)
    return homogeneous and (group.norm is None or _per_neuron_affine(group.norm, group.n_neurons))


def assign_receivers(
    dormant: th.Tensor, donors: th.Tensor, max_receivers: int, generator: th.Generator | None = None
) -> tuple[th.Tensor, th.Tensor]:
    """Pair dormant neurons with over-active donors (official ReBorn code, ``reborn()``): the dormant neurons are
    taken in random order, and each goes to a donor drawn uniformly among those with fewer than ``max_receivers``
    receivers so far; once every donor is full the remaining dormant neurons get none.

    :return: ``(receivers, donor_of_each_receiver)``, two long tensors of the same length, on ``dormant``'s device.
    """
    device = dormant.device
    dormant, donors = dormant.detach().cpu().long(), donors.detach().cpu().long()
    if dormant.numel() == 0 or donors.numel() == 0 or max_receivers <= 0:
        empty = th.zeros(0, dtype=th.long, device=device)
        return empty, empty.clone()
    order = dormant[th.randperm(dormant.numel(), generator=generator)]
    load = th.zeros(donors.numel(), dtype=th.long)
    receivers, donor_of = [], []
    for neuron in order.tolist():
        free = (load < max_receivers).nonzero().flatten()
        if free.numel() == 0:
            break
        k = int(free[th.randint(free.numel(), (1,), generator=generator)])
        load[k] += 1
        receivers.append(neuron)
        donor_of.append(int(donors[k]))
    return th.tensor(receivers, dtype=th.long, device=device), th.tensor(donor_of, dtype=th.long, device=device)


@dataclass
class Transfer:
    """One layer's ReBorn weight transfer.

    :param receivers: the dormant neurons that receive weights, ``(R,)``.
    :param donor_of: the over-active neuron each receiver copies, ``(R,)``.
    :param scale: ``alpha_r`` per receiver, ``(R,)``: the receiver's output is ``alpha_r`` times its donor's.
    :param donors: the donors used, without repeats, ``(U,)``.
    :param share: per consumer (by name), ``beta_r`` per receiver and output unit, ``(R, out)``.
    :param keep: per consumer (by name), ``beta_u`` per donor and output unit, ``(U, out)``; for every donor and
        output unit, ``beta_u + sum of its receivers' beta_r = 1``.
    """

    receivers: th.Tensor
    donor_of: th.Tensor
    scale: th.Tensor
    donors: th.Tensor
    share: dict[str, th.Tensor] = field(default_factory=dict)
    keep: dict[str, th.Tensor] = field(default_factory=dict)


def draw_transfer(
    group: NeuronGroup,
    receivers: th.Tensor,
    donor_of: th.Tensor,
    scale_range: tuple[float, float] = (0.3, 0.8),
    generator: th.Generator | None = None,
) -> Transfer:
    """Draw ReBorn's random factors for the given pairs: ``alpha_r ~ U(scale_range)`` (1 where :func:`scalable` is
    False), and for every donor, consumer and output unit a split ``softmax(N(0, 1) draws)`` of the donor's outgoing
    weight over the donor and its receivers (official ReBorn code)."""
    device = group.producer.weight.device
    dtype = group.producer.weight.dtype
    n = receivers.numel()
    low, high = scale_range
    if scalable(group):
        scale = low + (high - low) * th.rand(n, generator=generator, dtype=dtype)
    else:
        scale = th.ones(n, dtype=dtype)
    donors = th.unique(donor_of.cpu(), sorted=True)
    slot = {int(u): i for i, u in enumerate(donors.tolist())}
    share: dict[str, th.Tensor] = {}
    keep: dict[str, th.Tensor] = {}
    for consumer in group.consumers:
        out = consumer.module.weight.shape[0]
        share_c = th.empty(n, out, dtype=dtype)
        keep_c = th.empty(donors.numel(), out, dtype=dtype)
        for u, i in slot.items():
            mine = (donor_of.cpu() == u).nonzero().flatten()
            split = th.softmax(th.randn(mine.numel() + 1, out, generator=generator, dtype=dtype), dim=0)
            share_c[mine] = split[:-1]
            keep_c[i] = split[-1]
        share[consumer.name] = share_c.to(device)
        keep[consumer.name] = keep_c.to(device)
    return Transfer(receivers.to(device), donor_of.to(device), scale.to(device), donors.to(device), share, keep)


def _columns(consumer: Consumer, neurons: th.Tensor) -> th.Tensor:
    """Input columns (channels) of ``consumer`` read by each neuron: ``(neurons, block)``."""
    return consumer.input_index(neurons).reshape(neurons.numel(), -1)


@th.no_grad()
def _apply(group: NeuronGroup, t: Transfer) -> None:
    recv, donor, scale = t.receivers.to(group.producer.weight.device), t.donor_of, t.scale
    donor = donor.to(recv.device)
    scale = scale.to(group.producer.weight.device)
    producer, norm = group.producer, group.norm
    carry_on_norm = norm is not None and _per_neuron_affine(norm, group.n_neurons)
    in_scale = th.ones_like(scale) if carry_on_norm else scale
    shape = (-1,) + (1,) * (producer.weight.dim() - 1)
    producer.weight[recv] = producer.weight[donor] * in_scale.view(shape)
    if producer.bias is not None:
        producer.bias[recv] = producer.bias[donor] * in_scale
    if norm is not None:
        for name in ("weight", "bias"):
            p = getattr(norm, name, None)
            if isinstance(p, nn.Parameter) and p.dim() == 1 and p.shape[0] == group.n_neurons:
                p[recv] = p[donor] * scale
        for name in ("running_mean", "running_var"):  # BatchNorm: per-neuron statistics follow the copy
            buf = getattr(norm, name, None)
            if isinstance(buf, th.Tensor) and buf.dim() == 1 and buf.shape[0] == group.n_neurons:
                buf[recv] = buf[donor]
    for consumer in group.consumers:
        weight = consumer.module.weight.transpose(0, 1)  # a view: (inputs, outputs, *kernel)
        extra = (1,) * (weight.dim() - 2)
        share = t.share[consumer.name].to(weight.device)
        keep = t.keep[consumer.name].to(weight.device)
        src = weight[_columns(consumer, donor)]  # (R, block, outputs, *kernel), a copy
        factor = (share / scale.to(weight.device)[:, None]).view(share.shape[0], 1, share.shape[1], *extra)
        weight[_columns(consumer, recv)] = src * factor
        cols = _columns(consumer, t.donors.to(weight.device))
        weight[cols] = weight[cols] * keep.view(keep.shape[0], 1, keep.shape[1], *extra)


def transfer_neurons(group: NeuronGroup, transfer: Transfer, optimizer: bool = True, twin: bool = True) -> int:
    """ReBorn's weight sharing on one group; returns the number of receivers.

    Every receiver ``r`` with donor ``u`` and factor ``alpha_r`` gets ``w_in[r] = alpha_r * w_in[u]`` and
    ``b[r] = alpha_r * b[u]`` (with a norm: unscaled incoming weights and ``alpha_r`` times the donor's norm affine
    weight and bias; BatchNorm running statistics copied), and outgoing weights
    ``w_out[:, r] = beta_r * w_out[:, u] / alpha_r``; the donor keeps ``w_out[:, u] = beta_u * w_out[:, u]``, with
    ``beta_u + sum_r beta_r = 1`` for every output unit. With a positively homogeneous activation the receivers output
    ``alpha_r h_u`` and the consumers read ``sum (beta / alpha) * alpha h_u = h_u``: the network's function is
    unchanged (the receivers' own earlier outgoing weights are replaced, so that holds exactly when they were silent).

    :param optimizer: reset the optimizer state of every changed entry: the receivers' incoming and outgoing
        entries and the donors' outgoing entries (:func:`~sb3_plasticity.surgery.reset_optimizer_state`, with its
        fresh Adam first step).
    :param twin: apply the same transfer (same pairs and factors) to the target twin's own weights, so the target
        network keeps its function too.
    """
    if transfer.receivers.numel() == 0:
        return 0
    _apply(group, transfer)
    if optimizer:
        reset_optimizer_state(group, transfer.receivers, incoming=True, outgoing=True)
        reset_optimizer_state(group, transfer.donors, incoming=False, outgoing=True)
    if twin and group.twin is not None:
        _apply(group.twin, transfer)
    return int(transfer.receivers.numel())


class ReBornCallback(NeuronResetCallback):
    """ReBorn (Qin et al., NeurIPS 2024): move weights from over-active neurons to dormant ones.

    Every ``reset_freq`` env steps, on a training batch (as :class:`~sb3_plasticity.ReDoCallback`: ``batch_size``
    transitions from the replay buffer, the rollout buffer for PPO/A2C):

    1. score every hidden neuron ``s_i = E|h_i| / mean_k E|h_k|`` (the ReDo score; the official code averages the
       signed activation, the same for ReLU);
    2. dormant neurons: ``s_i <= tau``; over-active neurons: ``s_i > overactive_threshold``;
    3. the dormant neurons, in random order, are each given to an over-active donor drawn uniformly among those with
       fewer than ``max_receivers`` receivers; each receiver ``r`` of donor ``u`` gets ``w_in[r] = alpha_r w_in[u]``,
       ``b[r] = alpha_r b[u]`` with ``alpha_r ~ U(scale_range)``, and the donor's outgoing weights are split:
       ``w_out[:, r] = beta_r w_out[:, u] / alpha_r`` and ``w_out[:, u] <- beta_u w_out[:, u]``, the ``beta`` of a
       donor and its receivers a softmax of normal draws per output unit (summing to 1). With ReLU the network's
       function is unchanged (the paper's Knowledge Invariant principle): the receivers output ``alpha_r h_u``;
    4. dormant neurons left without a donor (none over-active, or all donors full) are reset the ReDo way
       (fresh incoming weights, zero outgoing weights).

    Every changed entry gets a fresh optimizer state (as ReDo's resets), and target twins get the same transfer on
    their own weights. Sources: the paper's abstract and the public summaries of its method figure (``w_in``,
    ``w_out``, ``b`` of an over-active neuron shared with ``M`` dormant ones with random ``alpha_i``, ``beta_i``; its
    full text was not available to us) and, for the exact rule and the defaults, the authors' code
    (github.com/xmu-rl-3dv/ReBorn, ``src/learners/q_learner.py``: ``find`` and ``reborn``); see ``docs/methods.md``.

    Where the activation is not positively homogeneous (Tanh, SiLU, ...: PPO's default) or a norm without
    per-neuron affine parameters sits before it, receivers are exact copies (``alpha = 1``), which still keeps the
    function; a ``UserWarning`` says where. With LayerNorm (BRO-net) the copy changes the layer's statistics, and in
    a residual stream the zeroed/split columns also scale the residual: the function is then only approximately
    kept (as with ReDo's zeroed outgoing weights). Masked (sparse) layers are not supported.

    Logged under ``plasticity/reborn/``: ``reset_count`` (dormant neurons changed, with or without a donor),
    ``total_reset_count``, ``transferred_count`` and ``total_transferred_count`` (receivers of a transfer),
    ``<network>/reset_count``, ``<network>/<layer>/reset_count``, ``<network>/transferred_count``,
    ``<network>/donor_count``, ``<network>/dormant_ratio_before`` / ``_after`` and
    ``<network>/overactive_ratio_before`` / ``_after`` on the scored batch, and the policy drift on the probe batch
    (``action_change`` or ``policy_kl``). ``last_transfers`` keeps the last event's :class:`Transfer` per
    ``(network, layer)`` (pairs and random factors).

    :param reset_freq: env steps between events (default 1000: GraMa's reset period for its reset baselines, App. A;
        Table 8 gives no ReBorn setting).
    :param tau: dormant threshold (``<=``; default 0.1, the official code's ``tau`` and ReDo's MLP value).
    :param overactive_threshold: over-active threshold (``>``; default 3.0, the official code's ``beta``).
    :param max_receivers: at most this many dormant neurons per over-active donor (default 5, official code).
    :param scale_range: ``(low, high)`` of ``alpha`` (default ``(0.3, 0.8)``, official code ``rand * 0.5 + 0.3``);
        ``(1, 1)`` makes exact copies everywhere.
    :param networks: trainable networks to act on (default: all).
    :param max_reset_fraction: cap on the dormant neurons handled per layer and event, lowest scores first.
    :param probe_batch_size: observations of the fixed output-drift probe (default 256).
    :param verbose: 0 or 1.
    """

    method = "reborn"
    ratio = "dormant_ratio"
    scored_on = "batch"

    def __init__(
        self,
        reset_freq: int = 1000,
        tau: float = 0.1,
        overactive_threshold: float = 3.0,
        max_receivers: int = 5,
        scale_range: tuple[float, float] = (0.3, 0.8),
        networks: str | Sequence[str] | None = None,
        max_reset_fraction: float | None = None,
        probe_batch_size: int = 256,
        verbose: int = 0,
    ) -> None:
        super().__init__(reset_freq, tau, networks, max_reset_fraction, "zero", probe_batch_size, verbose)
        self.overactive_threshold = check_range("overactive_threshold", overactive_threshold, self.tau, low_open=True)
        self.max_receivers = int(check_range("max_receivers", max_receivers, 1, integer=True))
        if not (isinstance(scale_range, Sequence) and len(scale_range) == 2):
            raise ValueError(f"scale_range must be a pair (low, high) with 0 < low <= high, got {scale_range!r}")
        low = check_range("scale_range[0]", scale_range[0], 0.0, low_open=True)
        high = check_range("scale_range[1]", scale_range[1], low)
        self.scale_range = (low, high)
        self.total_transferred = 0
        self.last_transfers: dict[tuple[str, str], Transfer] = {}

    # -- the method ------------------------------------------------------------------------------------
    def score(self, group: NeuronGroup, record: GroupRecord) -> th.Tensor:
        return normalized_scores(activity(record.activation), group.alive())

    def overactive(self, scores: th.Tensor) -> th.Tensor:
        """Indices of the over-active neurons (``s_i > overactive_threshold``)."""
        return (scores > self.overactive_threshold).nonzero().flatten()

    def reset_groups(self, groups: Sequence[NeuronGroup], zero_grad: bool = False) -> None:
        policy_side = any(g.network not in ("critic", "value") for g in groups)
        before = self.probe.output() if self.probe is not None and policy_side else None
        for group in groups:
            scores = self.score(group, self.capture.records[group])
            dormant, _ = self.select(group, scores)
            receivers, donor_of = assign_receivers(dormant, self.overactive(scores), self.max_receivers)
            unmatched = dormant[~th.isin(dormant, receivers)] if receivers.numel() else dormant
            n = reset_neurons(group, unmatched, outgoing="zero", zero_grad=zero_grad)
            transfer = draw_transfer(group, receivers, donor_of, self.scale_range)
            n += transfer_neurons(group, transfer)
            self._counts[(group.network, group.name)] = n
            self.last_transfers[(group.network, group.name)] = transfer
        if before is not None:
            self._drift += self.probe.drift(before, self.probe.output())

    # -- schedule ---------------------------------------------------------------------------------------
    def _setup(self) -> None:
        super()._setup()
        groups = self.capture.groups
        masked = [g.key for g in groups if getattr(g.producer, "mask", None) is not None]
        if masked:
            raise ValueError(
                f"ReBornCallback copies whole incoming weight rows, which masked (sparse) layers cannot take: {masked}; "
                "choose networks without masked layers (`networks=`) or use ReDoCallback"
            )
        if self.scale_range != (1.0, 1.0):
            exact = sorted({f"{g.key} ({type(g.output).__name__})" for g in groups if not scalable(g)})
            if exact:
                warnings.warn(
                    f"ReBornCallback: {exact} have an activation that is not positively homogeneous (or a norm "
                    "without per-neuron affine weights): their reborn neurons copy the donor unscaled (alpha = 1) so "
                    "that the network's function is kept",
                    UserWarning,
                    stacklevel=2,
                )

    def _batch_event(self) -> None:
        self.last_transfers = {}
        super()._batch_event()

    # -- logging ----------------------------------------------------------------------------------------
    def _log_ratios(self, when: str, network: str | None = None) -> None:
        super()._log_ratios(when, network)
        over: dict[str, list[int]] = {}
        for group in self.capture.groups:
            if network is not None and group.network != network:
                continue
            scores = self.score(group, self.capture.records[group])
            tot = over.setdefault(group.network, [0, 0])
            tot[0] += int(self.overactive(scores).numel())
            tot[1] += group.n_neurons
        for net, (k, n) in over.items():
            self.record(f"{self.method}/{net}/overactive_ratio_{when}", k / max(n, 1))

    def _log_event(self) -> None:
        per_network: dict[str, list[int]] = {}
        for (network, _), transfer in self.last_transfers.items():
            tot = per_network.setdefault(network, [0, 0])
            tot[0] += int(transfer.receivers.numel())
            tot[1] += int(transfer.donors.numel())
        for network, (n_recv, n_donors) in per_network.items():
            self.record(f"{self.method}/{network}/transferred_count", n_recv)
            self.record(f"{self.method}/{network}/donor_count", n_donors)
        n_total = sum(v[0] for v in per_network.values())
        self.total_transferred += n_total
        self.record(f"{self.method}/transferred_count", n_total)
        self.record(f"{self.method}/total_transferred_count", self.total_transferred)
        super()._log_event()

    # -- resuming ----------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["total_transferred"] = self.total_transferred
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.total_transferred = int(state.get("total_transferred", 0))
