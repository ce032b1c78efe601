"""Layer 5: topology for dynamic sparse training (the Neuroplastic Expansion paper).

:class:`MaskedLinear` is an ``nn.Linear`` whose ``mask`` (a persistent buffer of the weight's shape, 1 = the
connection exists) multiplies the weight in the forward pass. Because it *is* an ``nn.Linear``, optimizers,
target networks (``load_state_dict``), ``.to(device)``, SB3's orthogonal init and ``save``/``load`` keep working;
because the mask is a buffer, polyak averaging does not touch it, so :func:`sync_masks` copies masks to target
networks after every topology change.

Masked connections contribute nothing to the output and get a zero gradient, so their Adam moments stay at zero;
their stored weights are kept at zero too (:meth:`MaskedLinear.apply_mask`).

The selection rules of Neuroplastic Expansion live here too, so the method's file reads like its pseudocode:
:func:`cosine_grow_rate` (the growth schedule), :func:`grow_connections` (top-k inactive connections by a score,
NE Sec. 3.2), :func:`masked_connections_per_neuron` and :func:`truncate_prune` (NE Alg. 2), :func:`prune_neurons`
(cut a neuron's maskable connections) and :class:`WeightClip` (NE Alg. 1, after Elsayed et al. 2024).

Not to be confused with sb3-contrib's "Maskable" classes (``MaskablePPO``), which mask invalid *actions*.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_plasticity.checks import check_choice, check_fraction
from sb3_plasticity.neurons import NeuronGroup

__all__ = [
    "GROWTH_SCHEDULES",
    "MaskedLinear",
    "WeightClip",
    "cosine_grow_rate",
    "erdos_renyi_densities",
    "grow_connections",
    "grow_rate_at",
    "masked_connections_per_neuron",
    "masked_layers",
    "prune_neurons",
    "random_mask",
    "sync_masks",
    "truncate_prune",
]


class MaskedLinear(nn.Linear):
    """``nn.Linear`` with a connection mask: ``y = x (W * mask)^T + b``.

    :param mask: the ``mask`` buffer (same shape as ``weight``; 1.0 keeps a connection), all ones by default.
    """

    mask: th.Tensor

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias, device, dtype)
        self.register_buffer("mask", th.ones_like(self.weight), persistent=True)
        # set by a method that needs dL/dW for every entry, masked ones included (NE's gradient-based growth)
        self.dense_grad_hook: Callable[[th.Tensor], None] | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> MaskedLinear:
        """A masked copy of ``linear`` (same weights, all connections on)."""
        layer = cls(
            linear.in_features, linear.out_features, linear.bias is not None, linear.weight.device, linear.weight.dtype
        )
        with th.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: th.Tensor) -> th.Tensor:
        weight = self.weight * self.mask
        if self.dense_grad_hook is not None and weight.requires_grad:
            weight.register_hook(self.dense_grad_hook)  # dL/d(W * mask): dense, unlike weight.grad
        return F.linear(x, weight, self.bias)

    @th.no_grad()
    def set_mask(self, mask: th.Tensor) -> None:
        """Set the mask (0/1 of the weight's shape) and zero the weights it removes."""
        if mask.shape != self.weight.shape:
            raise ValueError(f"mask of shape {tuple(mask.shape)} for a weight of shape {tuple(self.weight.shape)}")
        self.mask.copy_(mask.to(self.mask.dtype))
        self.apply_mask()

    @th.no_grad()
    def apply_mask(self) -> None:
        """Zero the stored weights of masked connections (their value never reaches the output)."""
        self.weight.mul_(self.mask)

    @property
    def density(self) -> float:
        return float(self.mask.mean())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, density={self.density:.3f}"


def masked_layers(module: nn.Module) -> list[tuple[str, MaskedLinear]]:
    """``(name, layer)`` for every :class:`MaskedLinear` in ``module``."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, MaskedLinear)]


def erdos_renyi_densities(shapes: Sequence[tuple[int, int]], density: float) -> list[float]:
    """Per-layer densities for an overall ``density`` of the given ``(out, in)`` weight shapes, Erdos-Renyi style.

    Layer ``l`` gets ``d_l = eps * (fan_in + fan_out) / (fan_in * fan_out)`` (smaller layers denser), with ``eps``
    solved so that ``sum_l d_l N_l = density * sum_l N_l`` (``N_l`` = weights of layer ``l``); a layer whose
    ``d_l`` would exceed 1 is made dense and ``eps`` solved again for the rest (as in RigL / RLx2 / the NE code).

    :param density: overall density in (0, 1].
    """
    density = check_fraction("density", density, allow_none=False)
    sizes = [out * inp for out, inp in shapes]
    raw = [(out + inp) / (out * inp) for out, inp in shapes]
    dense: set[int] = set()
    while True:
        budget = density * sum(sizes) - sum(sizes[i] for i in dense)
        free = [i for i in range(len(shapes)) if i not in dense]
        if not free:
            return [1.0] * len(shapes)
        eps = budget / sum(raw[i] * sizes[i] for i in free)
        over = [i for i in free if eps * raw[i] > 1]
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]
        dense.update(over)


def random_mask(shape: tuple[int, ...], density: float, generator: th.Generator | None = None, device=None) -> th.Tensor:
    """A 0/1 float mask with exactly ``round(density * numel)`` ones at random places."""
    numel = int(th.Size(shape).numel())
    k = round(density * numel)
    flat = th.zeros(numel, device=device)
    flat[th.randperm(numel, generator=generator)[:k].to(flat.device)] = 1.0
    return flat.reshape(shape)


@th.no_grad()
def sync_masks(online: nn.Module, target: nn.Module) -> None:
    """Copy every mask of ``online`` into the same-named layer of ``target`` (and zero what it removes there)."""
    target_layers = dict(masked_layers(target))
    for name, layer in masked_layers(online):
        twin = target_layers.get(name)
        if twin is None:
            raise ValueError(f"target network has no masked layer {name!r}")
        twin.set_mask(layer.mask)


# ----------------------------------------------------------------------------------------------------
# Neuroplastic Expansion: growth, pruning, clipping
# ----------------------------------------------------------------------------------------------------
def cosine_grow_rate(grow_rate: float, step: int, end_step: int) -> float:
    """``rate_t = grow_rate / 2 * (1 + cos(pi * t / T_end))`` (NE Sec. 3.2, App. F.5); 0 from ``end_step`` on."""
    if step >= end_step:
        return 0.0
    return grow_rate / 2.0 * (1.0 + math.cos(math.pi * step / end_step))


GROWTH_SCHEDULES = ("cosine", "uniform", "warm_decay")


def grow_rate_at(schedule: str, grow_rate: float, step: int, end_step: int) -> float:
    """The fraction of a layer's inactive connections grown by an event at env step ``step`` (NE App. F.5, Table 11).

    - ``"cosine"``: ``grow_rate / 2 * (1 + cos(pi * t / T_end))`` (NE Sec. 3.2, the paper's choice);
    - ``"uniform"``: ``grow_rate`` at every event (a constant fraction of the remaining capacity);
    - ``"warm_decay"``: ``grow_rate * (1 - t / T_end)``, a linear decay to 0 at ``T_end``.

    The paper names the three modes only ("uniform schedule, warm decay, and cosine annealing"; cosine "includes
    cyclicality based on warm decay"): uniform and warm decay are our reading (docs/methods.md). All three start at
    ``grow_rate`` at ``t = 0`` and are 0 from ``end_step`` on.
    """
    check_choice("schedule", schedule, GROWTH_SCHEDULES)
    if step >= end_step:
        return 0.0
    if schedule == "cosine":
        return cosine_grow_rate(grow_rate, step, end_step)
    if schedule == "uniform":
        return float(grow_rate)
    return grow_rate * (1.0 - step / end_step)


@th.no_grad()
def grow_connections(layer: MaskedLinear, scores: th.Tensor, rate: float) -> th.Tensor:
    """Switch on the ``k = floor(rate * inactive)`` inactive connections of ``layer`` with the highest ``scores``.

    NE Sec. 3.2: ``I_grow = ArgTopk_{i not in theta}(|dL/dW|)`` with ``k`` a fraction of the layer's remaining
    capacity. The grown weights keep their stored value, 0, so the layer's function does not change at the event.

    :param scores: a score per weight (the dense gradient magnitude, or random numbers for random growth).
    :param rate: fraction of the inactive connections to grow, in [0, 1].
    :return: bool mask of the grown connections (the weight's shape).
    """
    inactive = layer.mask == 0
    k = int(rate * int(inactive.sum()))
    grown = th.zeros_like(inactive)
    if k > 0:
        masked_scores = th.where(inactive, scores.to(layer.weight.dtype), th.full_like(layer.weight, -math.inf))
        grown.view(-1)[th.topk(masked_scores.flatten(), k, sorted=False).indices] = True
        layer.mask[grown] = 1.0
    return grown


def _maskable_columns(group: NeuronGroup) -> list[tuple[MaskedLinear, th.Tensor]]:
    """``(consumer, columns)`` for every masked consumer: ``columns[i]`` are the inputs that read neuron ``i``."""
    out = []
    for consumer in group.consumers:
        if isinstance(consumer.module, MaskedLinear):
            neurons = th.arange(group.n_neurons, device=consumer.module.weight.device)
            out.append((consumer.module, consumer.input_index(neurons).reshape(group.n_neurons, -1)))
    return out


@th.no_grad()
def masked_connections_per_neuron(group: NeuronGroup) -> th.Tensor:
    """Active maskable connections of each neuron: its incoming row (when the producer is a :class:`MaskedLinear`)
    plus its columns in masked consumers. Connections of dense layers are not counted: they cannot be pruned."""
    counts = th.zeros(group.n_neurons, device=group.producer.weight.device)
    if isinstance(group.producer, MaskedLinear):
        counts += group.producer.mask.sum(dim=1)
    for layer, columns in _maskable_columns(group):
        counts += layer.mask.sum(dim=0)[columns].sum(dim=1).to(counts.device)
    return counts


def truncate_prune(
    candidates: list[tuple[NeuronGroup, th.Tensor, th.Tensor]], budget: int, generator: th.Generator | None = None
) -> dict[NeuronGroup, th.Tensor]:
    """NE Alg. 2 (truncate process) by whole neurons: visit the candidate neurons in random order and keep each
    one whose connections still fit in ``budget`` (at most ``budget`` connections pruned in all).

    :param candidates: ``(group, neuron indices, connections per listed neuron)``.
    :param budget: the most connections to prune (``omega * |I_grow|``).
    :return: the neurons to prune, per group.
    """
    flat = [
        (group, neuron, n)
        for group, idx, counts in candidates
        for neuron, n in zip(idx.tolist(), counts.long().tolist(), strict=True)
    ]
    chosen: dict[NeuronGroup, list[int]] = {}
    left = budget
    for j in th.randperm(len(flat), generator=generator).tolist():
        group, neuron, n = flat[j]
        if 0 < n <= left:
            chosen.setdefault(group, []).append(neuron)
            left -= n
    return {g: th.tensor(sorted(idx), dtype=th.long) for g, idx in chosen.items()}


@th.no_grad()
def prune_neurons(group: NeuronGroup, neurons: th.Tensor) -> int:
    """Remove every maskable connection of ``neurons`` (incoming row, columns in masked consumers) and zero those
    weights; returns the number of connections removed."""
    removed = 0
    if neurons.numel() == 0:
        return 0
    if isinstance(group.producer, MaskedLinear):
        rows = neurons.to(group.producer.mask.device)
        removed += int(group.producer.mask[rows].sum())
        group.producer.mask[rows] = 0.0
        group.producer.apply_mask()
    for layer, columns in _maskable_columns(group):
        cols = columns[neurons.to(columns.device)].reshape(-1)
        removed += int(layer.mask[:, cols].sum())
        layer.mask[:, cols] = 0.0
        layer.apply_mask()
    return removed


class WeightClip:
    """Keep chosen weights of masked layers within ``[-kappa * s_l, kappa * s_l]`` (NE Alg. 1, after Elsayed et al.
    2024), by clamping after every optimizer step.

    :param kappa: the clipping factor (NE App. C: 3 for MuJoCo, 2 for pixels).
    :param bound_by: ``s_l``: ``"fan_in"`` (default) ``1 / sqrt(in_features)``, the bound of the layer's init
        (PyTorch's default ``Linear`` init, Elsayed et al.'s ``s_l``); ``"neurons"`` ``1 / sqrt(out_features)``,
        NE Alg. 1's "n_l the number of the neurons in layer l" read literally.
    """

    BOUNDS = ("fan_in", "neurons")

    def __init__(self, kappa: float, bound_by: str = "fan_in") -> None:
        check_choice("bound_by", bound_by, self.BOUNDS)
        self.kappa = kappa
        self.bound_by = bound_by
        self.clipped: dict[MaskedLinear, th.Tensor] = {}  # bool: which weights of the layer are clipped
        self._bounds: dict[MaskedLinear, tuple[th.Tensor, th.Tensor]] = {}

    def bound(self, layer: MaskedLinear) -> float:
        """``kappa * s_l`` of ``layer``."""
        n = layer.in_features if self.bound_by == "fan_in" else layer.out_features
        return self.kappa / math.sqrt(n)

    def add(self, layer: MaskedLinear, entries: th.Tensor) -> None:
        """Clip ``entries`` (bool, the weight's shape) of ``layer`` from now on (and clip them now)."""
        mask = self.clipped.get(layer)
        mask = entries.clone() if mask is None else mask | entries
        self.clipped[layer] = mask
        b = self.bound(layer)
        inf = th.full_like(layer.weight, math.inf)
        self._bounds[layer] = (th.where(mask, -b, -inf), th.where(mask, b, inf))
        self.apply(layer)

    @th.no_grad()
    def apply(self, layer: MaskedLinear | None = None) -> None:
        """Clamp the clipped weights (of one layer, or all)."""
        for lay, (low, high) in self._bounds.items() if layer is None else [(layer, self._bounds[layer])]:
            lay.weight.clamp_(low, high)
