"""Layer 3: plasticity metrics.

Pure functions from neuron outputs ``h`` (or the loss gradients ``g = dL/dz`` at the neurons'
pre-activations, see :mod:`sb3_plasticity.capture` for why) to numbers. Tensors have shape
``(batch, neurons)`` for Linear layers and ``(batch, channels, H, W)`` for Conv layers: a conv neuron is a
channel, and expectations run over the batch *and* the spatial positions. ``alive`` is an optional bool
mask of the neurons that exist in the current topology; ratios are taken over those only, so masked-out
capacity is never counted as dormant.

Definitions (``E`` is the mean over the batch, and over spatial positions for conv neurons):

- **activity score** ``a_i = E|h_i|`` and its **normalised** form ``s_i = a_i / mean_k a_k`` (the mean over
  the layer's alive neurons; ReDo, Sokar et al. 2023, Eq. 1 / GraMa paper Eq. 1). A layer whose mean
  is 0 has ``s = 0`` everywhere.
- **tau-dormant** neuron: ``s_i <= tau`` (``<=``, as in GraMa Sec. 4.2, so ``tau = 0`` flags exactly the
  neurons whose output is 0 on the whole batch).
- **GraMa inactive** neuron (GraMa paper, Eq. 2): the same normalisation applied to ``E|dL/dz_i|``,
  inactive when ``G_i <= tau``. For a ReLU MLP a neuron dead on the batch has ``G_i = 0`` (Theorem 1).
- **active** neuron: ``h_i(x) > 0`` for at least one input of the batch (NE's activated-neuron ratio at the batch
  level; NE Eq. 1 as the official code computes it is the per-sample fraction, :func:`active_ratio_per_sample`).
  ``active_ratio_per_sample`` is the variant the official NE code logs: the fraction of
  (sample, neuron) pairs with ``h > 0`` (for conv neurons, a channel is active on a sample when any
  position is > 0).
- **activation norm**: ``mean |h|`` over batch, neurons and positions (P3O appendix).
- **effective rank** (Roy & Vetterli 2007): ``exp(H(p))`` with ``p_k = sigma_k / sum_j sigma_j`` the
  normalised singular values of the ``(batch, neurons)`` feature matrix.
- **weight L1** (P3O Sec. 5.2, Fig. 5 "the average L1 norm of all neuron weights"): ``mean |w|`` over every
  entry of the given tensors, next to the L2 ``weight_norm``.
- **contribution utility** (CBP, Dohare et al. 2024): ``E|h_i| * mean_k |w_ki|``, ``w_ki`` the weights that
  carry neuron ``i``'s output to the next layer(s) (:func:`outgoing_magnitude`).
- **gradient correlation** (P3O App. A.4.1, Fig. 28-30): the correlation matrix of the per-sample loss
  gradients ``dL/dz`` at the neurons, between neurons (Pearson over the batch) or between samples (cosine over
  the neurons); summarised by :func:`mean_abs_offdiagonal`.

Network-level ratios pool the neurons of all the network's layers (each neuron counts once: a
per-neuron average, not a mean of per-layer ratios).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch as th
from torch import nn

from sb3_plasticity.checks import check_choice, check_nonnegative

__all__ = [
    "LayerMetrics",
    "activation_norm",
    "active_mask",
    "active_ratio",
    "active_ratio_per_sample",
    "activity",
    "contribution_utility",
    "correlation_matrix",
    "dormant_mask",
    "dormant_ratio",
    "effective_rank",
    "gradient_correlation",
    "grama_inactive_mask",
    "grama_inactive_ratio",
    "layer_metrics",
    "lowest",
    "mean_abs_offdiagonal",
    "normalized_scores",
    "outgoing_magnitude",
    "weight_l1",
    "weight_norm",
]


def _per_neuron(x: th.Tensor) -> th.Tensor:
    """Move the neuron axis (1) first and flatten the rest: ``(neurons, batch * positions)``."""
    if x.dim() < 2:
        raise ValueError(f"expected a (batch, neurons, ...) tensor, got shape {tuple(x.shape)}")
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def activity(x: th.Tensor) -> th.Tensor:
    """``E|x_i|`` per neuron (over batch and positions), shape ``(neurons,)``."""
    return _per_neuron(x).abs().mean(dim=1)


def normalized_scores(scores: th.Tensor, alive: th.Tensor | None = None) -> th.Tensor:
    """``scores / mean(scores over alive neurons)``; all zeros when that mean is 0."""
    ref = scores if alive is None else scores[alive]
    mean = ref.mean() if ref.numel() > 0 else scores.new_zeros(())
    if mean <= 0:
        return th.zeros_like(scores)
    return scores / mean


def _ratio(flags: th.Tensor, alive: th.Tensor | None) -> float:
    if alive is not None:
        flags = flags[alive]
    return float(flags.float().mean()) if flags.numel() > 0 else 0.0


def _at_or_below(signal: th.Tensor, tau: float, alive: th.Tensor | None) -> th.Tensor:
    """Neurons whose normalised ``E|signal_i|`` is ``<= tau``; neurons that do not exist are False."""
    check_nonnegative("tau", tau)
    flags = normalized_scores(activity(signal), alive) <= tau
    return flags if alive is None else flags & alive


def dormant_mask(h: th.Tensor, tau: float = 0.1, alive: th.Tensor | None = None) -> th.Tensor:
    """tau-dormant neurons (``s_i <= tau``), bool ``(neurons,)``. Dead (not alive) neurons are False."""
    return _at_or_below(h, tau, alive)


def dormant_ratio(h: th.Tensor, tau: float = 0.1, alive: th.Tensor | None = None) -> float:
    """Fraction of alive neurons that are tau-dormant (ReDo score)."""
    return _ratio(dormant_mask(h, tau, alive), alive)


def grama_inactive_mask(grad: th.Tensor, tau: float = 0.0, alive: th.Tensor | None = None) -> th.Tensor:
    """GraMa-inactive neurons (``G_i <= tau``, GraMa Eq. 2) from ``dL/dz``, bool ``(neurons,)``."""
    return _at_or_below(grad, tau, alive)


def grama_inactive_ratio(grad: th.Tensor, tau: float = 0.0, alive: th.Tensor | None = None) -> float:
    """Fraction of alive neurons that are GraMa-inactive."""
    return _ratio(grama_inactive_mask(grad, tau, alive), alive)


def active_mask(h: th.Tensor) -> th.Tensor:
    """Neurons with output > 0 on at least one sample, bool ``(neurons,)``."""
    if h.dim() == 2:  # (batch, neurons): one reduction, no transposed copy (NE measures this every training pass)
        return h.amax(dim=0) > 0
    return (_per_neuron(h) > 0).any(dim=1)


def active_ratio(h: th.Tensor, alive: th.Tensor | None = None) -> float:
    """Fraction of alive neurons that are active on at least one sample (tau = 0; the per-sample fraction of NE Eq. 1
    is :func:`active_ratio_per_sample`)."""
    return _ratio(active_mask(h), alive)


def active_ratio_per_sample(h: th.Tensor, alive: th.Tensor | None = None) -> float:
    """Fraction of (sample, alive neuron) pairs with output > 0 (the official NE code's FAU)."""
    per_sample = h.reshape(h.shape[0], h.shape[1], -1).gt(0).any(dim=2)  # (batch, neurons)
    if alive is not None:
        per_sample = per_sample[:, alive]
    return float(per_sample.float().mean()) if per_sample.numel() > 0 else 0.0


def activation_norm(h: th.Tensor) -> float:
    """Mean absolute neuron output."""
    return float(h.abs().mean())


def effective_rank(features: th.Tensor) -> float:
    """Effective rank ``exp(entropy of normalised singular values)`` of a ``(batch, features)`` matrix.

    Extra dimensions are flattened into the feature axis. 0 for an all-zero matrix. Computed in float32;
    singular values below ``sigma_max * max(shape) * eps`` (numerical rank tolerance) are left out.
    """
    f = features.reshape(features.shape[0], -1).float()
    sigma = th.linalg.svdvals(f)
    if sigma.numel() == 0 or sigma.max() <= 0:
        return 0.0
    # singular values below the numerical-rank tolerance are float32 round-off, not directions
    sigma = sigma[sigma > sigma.max() * max(f.shape) * th.finfo(f.dtype).eps]
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma / total
    p = p[p > 0]
    return float(th.exp(-(p * p.log()).sum()))


def weight_norm(params: Iterable[th.Tensor]) -> float:
    """L2 norm of all the given tensors taken together."""
    sq = None
    for p in params:
        s = p.detach().pow(2).sum()
        sq = s if sq is None else sq + s
    return float(sq.sqrt()) if sq is not None else 0.0


def weight_l1(params: Iterable[th.Tensor]) -> float:
    """Average L1 norm: ``sum |w| / (number of entries)`` over all the given tensors taken together (P3O Fig. 5)."""
    total, count = None, 0
    for p in params:
        s = p.detach().abs().sum()
        total = s if total is None else total + s
        count += p.numel()
    return float(total) / count if total is not None and count > 0 else 0.0


def outgoing_magnitude(group) -> th.Tensor:
    """``mean_k |w_ki|`` over every consumer weight reading neuron ``i`` of a
    :class:`~sb3_plasticity.neurons.NeuronGroup` (as in Dohare et al.'s GnT), shape ``(neurons,)``. A conv neuron
    read by a Linear layer after a flatten feeds ``H * W`` columns; all of them count."""
    total = th.zeros(group.n_neurons, device=group.producer.weight.device)
    idx = th.arange(group.n_neurons, device=total.device)
    n_out = 0
    for c in group.consumers:
        w = c.module.weight.detach().abs()
        cols = c.input_index(idx).reshape(group.n_neurons, -1)  # (neurons, block)
        per_col = w.reshape(w.shape[0], w.shape[1], -1).sum(dim=(0, 2))  # (in_features or in_channels,)
        total += per_col[cols].sum(dim=1)
        n_out += w[:, :1].numel() * cols.shape[1]
    return total / max(n_out, 1)


def contribution_utility(h: th.Tensor, outgoing: th.Tensor) -> th.Tensor:
    """CBP's contribution utility of one batch, ``E|h_i| * outgoing_i`` per neuron (``outgoing`` from
    :func:`outgoing_magnitude`), shape ``(neurons,)``. CBP keeps a running average of it
    (:class:`~sb3_plasticity.CBPCallback`)."""
    return activity(h) * outgoing.to(h.device)


def lowest(scores: th.Tensor, k: int, candidates: th.Tensor | None = None) -> th.Tensor:
    """Indices of the ``k`` lowest ``scores`` among ``candidates`` (default: all), ties broken by index, sorted."""
    if candidates is None:
        candidates = th.arange(scores.numel(), device=scores.device)
    candidates = candidates.to(scores.device)
    k = max(0, min(int(k), candidates.numel()))
    picked = candidates[th.argsort(scores[candidates], stable=True)[:k]]
    return picked.sort().values


def correlation_matrix(x: th.Tensor, centered: bool = True) -> tuple[th.Tensor, th.Tensor]:
    """Correlation between the columns of a ``(rows, columns)`` matrix: Pearson (``centered``: each column minus
    its mean over the rows) or cosine similarity (not centred).

    Returns ``(matrix, valid)``: the ``(columns, columns)`` matrix in float32 and the bool mask of the valid
    columns. A column with a zero norm, or, when centred, a constant one (centred norm below ``1e-5`` of the
    column's own norm: float32 round-off) has an undefined correlation: its row and column are 0 and it is not
    valid. The diagonal is 1 for valid columns.
    """
    x = x.reshape(x.shape[0], -1).float()
    raw = x.norm(dim=0)
    if centered:
        x = x - x.mean(dim=0, keepdim=True)
    norms = x.norm(dim=0)
    # constant columns: zero, or float32 round-off of the centring (relative to the column's own size)
    valid = (norms > 0) & (norms > raw * 1e-5 if centered else norms > 0)
    unit = th.where(valid, x / norms.clamp_min(1e-30), th.zeros_like(x))
    corr = (unit.T @ unit).clamp(-1.0, 1.0)
    corr.diagonal().copy_(valid.float())
    return corr, valid


def mean_abs_offdiagonal(corr: th.Tensor, valid: th.Tensor | None = None) -> float:
    """Mean ``|C_ij|`` over the pairs ``i != j`` of valid entries (all when ``valid`` is None); 0.0 with fewer than
    two valid entries."""
    if valid is not None:
        corr = corr[valid][:, valid]
    n = corr.shape[0]
    if n < 2:
        return 0.0
    off = corr.abs().sum() - corr.diagonal().abs().sum()
    return float(off) / (n * (n - 1))


def gradient_correlation(grad: th.Tensor, over: str = "neurons") -> tuple[th.Tensor, th.Tensor]:
    """Correlation matrix of the per-sample gradients at the neurons, ``grad = dL/dz`` of shape
    ``(batch, neurons, *spatial)`` (a conv neuron's gradient is summed over its positions).

    - ``over="neurons"``: ``(neurons, neurons)``, Pearson correlation over the batch of two neurons' gradients;
    - ``over="samples"``: ``(batch, batch)``, cosine similarity of two samples' gradient vectors (Lyle et al.'s
      gradient covariance, normalised).

    Returns ``(matrix, valid)`` as :func:`correlation_matrix` (neurons with a constant gradient, or samples with a
    zero gradient, are not valid).
    """
    check_choice("over", over, ("neurons", "samples"))
    if grad.dim() < 2:
        raise ValueError(f"expected a (batch, neurons, ...) tensor, got shape {tuple(grad.shape)}")
    g = grad.reshape(grad.shape[0], grad.shape[1], -1).sum(dim=2)  # (batch, neurons)
    if over == "neurons":
        return correlation_matrix(g, centered=True)
    return correlation_matrix(g.T, centered=False)  # over == "samples"


@dataclass
class LayerMetrics:
    """Counts and values for one neuron group; network values pool these (per-neuron average)."""

    n_alive: int
    dormant: int | None = None
    active: int | None = None
    grama_inactive: int | None = None
    active_pairs: float | None = None  # sum over alive neurons of their per-sample active fraction
    activation_abs_sum: float | None = None
    activation_count: int | None = None
    effective_rank: float | None = None
    weight_norm: float = 0.0
    values: dict[str, float] = field(default_factory=dict)


def layer_metrics(
    producer: nn.Module,
    activation: th.Tensor | None,
    grad: th.Tensor | None,
    alive: th.Tensor | None,
    tau: float,
    grama_tau: float,
    rank_samples: int | None = 256,
    rank: bool = True,
) -> LayerMetrics:
    """All metrics of one layer, as values (``.values``) and as counts for pooling across layers.

    :param rank: compute the effective rank (an SVD, the costliest metric) for this layer.
    """
    n = producer.weight.shape[0]
    if alive is not None:
        alive = alive.to(activation.device if activation is not None else producer.weight.device)
    n_alive = int(alive.sum()) if alive is not None else n
    m = LayerMetrics(n_alive=n_alive, weight_norm=weight_norm([producer.weight]))
    m.values["weight_norm"] = m.weight_norm
    m.values["weight_l1"] = weight_l1([producer.weight])
    if activation is not None:
        m.dormant = int(dormant_mask(activation, tau, alive).sum())
        m.active = int((active_mask(activation) & alive).sum()) if alive is not None else int(active_mask(activation).sum())
        per_sample = active_ratio_per_sample(activation, alive)
        m.active_pairs = per_sample * n_alive
        m.activation_abs_sum = float(activation.abs().sum())
        m.activation_count = activation.numel()
        denom = max(n_alive, 1)
        m.values.update(
            dormant_ratio=m.dormant / denom,
            active_ratio=m.active / denom,
            active_ratio_per_sample=per_sample,
            activation_norm=m.activation_abs_sum / max(m.activation_count, 1),
        )
        if rank and isinstance(producer, nn.Linear):
            feats = activation if rank_samples is None else activation[:rank_samples]
            if alive is not None:
                feats = feats[:, alive]
            m.effective_rank = effective_rank(feats)
            m.values["effective_rank"] = m.effective_rank
    if grad is not None:
        m.grama_inactive = int(grama_inactive_mask(grad, grama_tau, alive).sum())
        m.values["grama_inactive_ratio"] = m.grama_inactive / max(n_alive, 1)
    return m


def pool(layers: Iterable[LayerMetrics], last_hidden: Iterable[bool]) -> dict[str, float]:
    """Network-level values: ratios pooled over all neurons; effective rank averaged over last hidden layers."""
    layers = list(layers)
    last_hidden = list(last_hidden)
    out: dict[str, float] = {}
    n = sum(m.n_alive for m in layers)
    denom = max(n, 1)
    for key in ("dormant", "active", "grama_inactive"):
        vals = [getattr(m, key) for m in layers]
        if vals and all(v is not None for v in vals):
            name = {"dormant": "dormant_ratio", "active": "active_ratio", "grama_inactive": "grama_inactive_ratio"}[key]
            out[name] = sum(vals) / denom
    if layers and all(m.active_pairs is not None for m in layers):
        out["active_ratio_per_sample"] = sum(m.active_pairs for m in layers) / denom
        out["activation_norm"] = sum(m.activation_abs_sum for m in layers) / max(sum(m.activation_count for m in layers), 1)
    ranks = [m.effective_rank for m, last in zip(layers, last_hidden, strict=True) if last and m.effective_rank is not None]
    if ranks:
        out["effective_rank"] = sum(ranks) / len(ranks)
    return out
