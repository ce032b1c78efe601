"""Layer 5: topology for dynamic sparse training (the Neuroplastic Expansion paper).

:class:`MaskedLinear` is an ``nn.Linear`` whose ``mask`` (a persistent buffer of the weight's shape, 1 = the
connection exists) multiplies the weight in the forward pass. Because it *is* an ``nn.Linear``, optimizers,
target networks (``load_state_dict``), ``.to(device)``, SB3's orthogonal init and ``save``/``load`` keep working;
because the mask is a buffer, polyak averaging does not touch it, so :func:`sync_masks` copies masks to target
networks after every topology change.

Masked connections contribute nothing to the output and get a zero gradient, so their Adam moments stay at zero;
their stored weights are kept at zero too (:meth:`MaskedLinear.apply_mask`).

Not to be confused with sb3-contrib's "Maskable" classes (``MaskablePPO``), which mask invalid *actions*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch as th
from torch import nn
from torch.nn import functional as F

__all__ = ["MaskedLinear", "erdos_renyi_densities", "masked_layers", "random_mask", "sync_masks"]


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
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density!r}")
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
