"""Layer 4: neuron surgery, the only code that changes weights outside the optimizer.

One path for Linear and Conv producers. For the chosen neurons of a :class:`~sb3_plasticity.neurons.NeuronGroup`:

1. :func:`reinitialize_incoming`: draw fresh incoming weights and biases from the layer's own init
   (``group.init``: PyTorch's default for TD3/SAC, orthogonal with SB3's gains for PPO/A2C) and reset the
   per-neuron affine parameters of a following norm (weight 1, bias 0). A neuron of a masked layer left
   without any incoming connection (pruned by Neuroplastic Expansion) gets a positive bias, so it is not
   dead for good.
2. :func:`zero_outgoing`: zero the consumers' input columns (Linear), channels (Conv), or the ``H * W``
   columns per channel after conv -> flatten -> linear. Zeroed outgoing weights leave the network's
   output unchanged at reset time (the ReDo recipe).
3. :func:`reset_optimizer_state`: zero the optimizer state (Adam moments, RMSprop averages, momentum
   buffers) of exactly those entries, and give them a *fresh first step* (below).
4. :func:`sync_twin`: copy the touched entries into the target network's twin, so the target agrees
   at once instead of converging at the polyak rate.

:func:`reset_neurons` does all four. For whole layers (Reset, Shrink & Perturb): :func:`reset_layer` and
:func:`shrink_perturb_layer`.

**Adam's step counter.** Adam keeps one ``step`` per tensor. Zeroing a reset entry's moments while the
tensor's step is large gives it ``m_hat = 0.1 g`` and ``v_hat = 0.001 g^2`` on its next update, a step of
about ``3.16 * lr`` instead of a fresh parameter's ``lr``. Resetting the whole tensor's step instead
(timoklein/redo) restarts bias correction for every *other* entry of the tensor, shrinking their steps
for thousands of updates. We do neither: the moments of the reset entries are zeroed now, and a one-shot
optimizer pre-step hook sets them, at the first step where each entry gets a non-zero gradient ``g``, to
``m = g (c1 - (1 - b1)) / b1`` and ``v = g^2 (c2 - (1 - b2)) / b2`` with ``c = 1 - b^t`` the bias
corrections of that step, so that Adam computes ``m_t = c1 g`` and ``v_t = c2 g^2``: exactly a fresh
parameter's first update ``lr * g / (|g| + eps)``. Other entries are untouched. Entries whose gradient is
still 0 (incoming weights of a neuron whose outgoing weights were just zeroed) keep zero moments and do
not move until their first non-zero gradient. RMSprop and SGD-momentum need no such correction: their
state starts at zero for a fresh parameter too.

The fresh-step hook is one entry of the optimizer's ordered step hooks (:mod:`sb3_plasticity.hooks`), at priority
``FRESH_STEP``: after every hook that adds to the gradient (L2 Init) or resets neurons inside the step, so the
moments it sets come from the gradient Adam is about to use. PyTorch forbids registering an optimizer's step hooks
while that optimizer runs them, so surgery done *inside* an optimizer pre-step hook (ReGraMa resets between backward
and step) must call :func:`hold_fresh_steps` beforehand, and a hook with nothing pending is removed only by
:func:`release_fresh_steps`, called from callback context (it costs one Python call per step until then).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch as th
from torch import nn

from sb3_plasticity.checks import check_choice
from sb3_plasticity.hooks import FRESH_STEP, existing_step_hooks, step_hooks
from sb3_plasticity.neurons import Consumer, Layer, NeuronGroup, NeuronModel

__all__ = [
    "fresh_steps_state",
    "hold_fresh_steps",
    "reinitialize_incoming",
    "release_fresh_steps",
    "reset_layer",
    "reset_neurons",
    "reset_optimizer_entries",
    "reset_optimizer_state",
    "restore_fresh_steps",
    "shrink_perturb_layer",
    "sync_twin",
    "zero_outgoing",
]


def _as_index(neurons: th.Tensor | Sequence[int], device: th.device) -> th.Tensor:
    idx = th.as_tensor(neurons, dtype=th.long, device=device).reshape(-1)
    return idx


# A norm's per-neuron entries and their fresh values, by attribute name: the affine scale (``weight`` in PyTorch's
# norms, ``scale`` in sb3-contrib's BatchRenorm) 1 and shift 0; the running statistics (``running_mean`` /
# ``running_var`` in BatchNorm, ``ra_mean`` / ``ra_var`` in BatchRenorm) mean 0 and variance 1, as in a fresh layer.
_NORM_AFFINE: dict[str, float] = {"weight": 1.0, "scale": 1.0, "bias": 0.0}
_NORM_STATS: dict[str, float] = {"running_mean": 0.0, "ra_mean": 0.0, "running_var": 1.0, "ra_var": 1.0}


def _norm_affine(norm: nn.Module, n_neurons: int) -> list[tuple[nn.Parameter, float]]:
    """The per-neuron affine parameters of ``norm`` (one entry per neuron) with their fresh values."""
    found = []
    for name, value in _NORM_AFFINE.items():
        p = getattr(norm, name, None)
        if isinstance(p, nn.Parameter) and p.dim() == 1 and p.shape[0] == n_neurons:
            found.append((p, value))
    return found


@th.no_grad()
def _reset_norm(norm: nn.Module, n_neurons: int, idx: th.Tensor | slice) -> None:
    """Set the entries ``idx`` of ``norm``'s per-neuron affine parameters and running statistics to a fresh layer's
    values (see ``_NORM_AFFINE`` and ``_NORM_STATS``)."""
    for p, value in _norm_affine(norm, n_neurons):
        p[idx] = value
    for name, value in _NORM_STATS.items():
        buf = getattr(norm, name, None)
        if isinstance(buf, th.Tensor) and buf.dim() == 1 and buf.shape[0] == n_neurons:
            buf[idx] = value


def _incoming_entries(group: NeuronGroup, idx: th.Tensor) -> list[tuple[nn.Parameter, tuple]]:
    entries: list[tuple[nn.Parameter, tuple]] = [(group.producer.weight, (idx,))]
    if group.producer.bias is not None:
        entries.append((group.producer.bias, (idx,)))
    if group.norm is not None:
        entries += [(p, (idx,)) for p, _ in _norm_affine(group.norm, group.n_neurons)]
    return entries


def _outgoing_entries(group: NeuronGroup, idx: th.Tensor) -> list[tuple[nn.Parameter, tuple]]:
    return [(c.module.weight, (slice(None), c.input_index(idx))) for c in group.consumers]


def _live_bias(bias: th.Tensor, unconnected: th.Tensor, fan_in: int, generator: th.Generator | None) -> th.Tensor:
    """Biases for re-initialised neurons, positive where the neuron has no incoming connection.

    Such a neuron outputs ``act(b)`` on every input. With ``b <= 0`` and ReLU that is 0 everywhere, with a zero
    gradient on its bias, its incoming weights and its outgoing weights alike: nothing, gradient-based growth
    included, could ever bring it back. A positive ``b`` makes it a live constant unit (its outgoing weights are
    zeroed or masked, so the network's function does not change) whose connections get non-zero gradients.
    The bias is the magnitude of the layer's fresh bias; where that is 0 (SB3's orthogonal init has zero biases)
    it is drawn from ``(0, 1/sqrt(fan_in)]``, PyTorch's default bias bound.
    """
    if not bool(unconnected.any()):
        return bias
    bias = th.where(unconnected, bias.abs(), bias)
    zero = unconnected & (bias == 0)
    n_zero = int(zero.sum())
    if n_zero:
        bound = 1.0 / math.sqrt(max(fan_in, 1))
        draw = th.empty(n_zero, dtype=bias.dtype, device=bias.device).uniform_(0.0, bound, generator=generator)
        bias[zero] = bound - draw  # in (0, bound]
    return bias


@th.no_grad()
def reinitialize_incoming(
    group: NeuronGroup, neurons: th.Tensor | Sequence[int], generator: th.Generator | None = None
) -> None:
    """Re-draw the incoming weights and bias of ``neurons`` from ``group.init``; reset the norm's entries of
    ``neurons`` as in a fresh norm: scale (``weight``, or BatchRenorm's ``scale``) 1, ``bias`` 0, running mean 0 and
    running variance 1 (BatchNorm's ``running_mean``/``running_var``, BatchRenorm's ``ra_mean``/``ra_var``).

    A producer with a connection ``mask`` keeps its masked entries at zero. A neuron left with no incoming
    connection at all (a neuron pruned by Neuroplastic Expansion) gets a positive bias, so that it stays
    reachable by gradients (see ``_live_bias``; ``docs/methods.md``, Neuroplastic Expansion).
    """
    producer = group.producer
    idx = _as_index(neurons, producer.weight.device)
    if idx.numel() == 0:
        return
    weight, bias = group.init.fresh(producer, generator)
    producer.weight[idx] = weight[idx]
    mask = getattr(producer, "mask", None)
    if mask is not None:
        producer.weight[idx] *= mask[idx].to(producer.weight.dtype)
    if producer.bias is not None and bias is not None:
        new_bias = bias[idx]
        if mask is not None:
            unconnected = ~mask[idx].reshape(idx.numel(), -1).any(dim=1)
            new_bias = _live_bias(new_bias, unconnected, weight[0].numel(), generator)
        producer.bias[idx] = new_bias
    if group.norm is not None:
        _reset_norm(group.norm, group.n_neurons, idx)


@th.no_grad()
def zero_outgoing(group: NeuronGroup, neurons: th.Tensor | Sequence[int]) -> None:
    """Zero the consumers' weights that read ``neurons`` (function preserved at reset time)."""
    idx = _as_index(neurons, group.producer.weight.device)
    if idx.numel() == 0:
        return
    for consumer in group.consumers:
        consumer.module.weight[:, consumer.input_index(idx)] = 0.0


# ----------------------------------------------------------------------------------------------------
# Optimizer state
# ----------------------------------------------------------------------------------------------------
_ADAM_TYPES = (th.optim.Adam, th.optim.AdamW)


class _FreshStepHook:
    """Surgery's fresh-step registry of one optimizer: a :data:`~sb3_plasticity.hooks.FRESH_STEP` pre-step hook giving
    pending Adam entries a fresh parameter's first update (kept in the optimizer's
    :class:`~sb3_plasticity.hooks.StepHooks` while entries are pending or it is held)."""

    # entries still without gradient this many steps after the last reset are left with zero moments (a neuron
    # dead again after its reset): no per-step cost for ever
    max_wait = 1000

    def __init__(self, optimizer: th.optim.Optimizer) -> None:
        # parameter -> flat indices (sorted, unique) of its entries still waiting: the per-step check reads only
        # those entries, so a few dead-again neurons waiting out max_wait cost next to nothing per step
        self.pending: dict[nn.Parameter, th.Tensor] = {}
        self.holds = 0
        self.waited = 0
        self.handle = step_hooks(optimizer).add_pre(FRESH_STEP, self)

    def add(self, param: nn.Parameter, selector: tuple) -> None:
        mask = self.mask(param)
        mask[selector] = True
        self.set_mask(param, mask)
        self.waited = 0

    def mask(self, param: nn.Parameter) -> th.Tensor:
        """The waiting entries of ``param`` as a boolean mask of its shape."""
        mask = th.zeros(param.numel(), dtype=th.bool, device=param.device)
        if param in self.pending:
            mask[self.pending[param]] = True
        return mask.view_as(param)

    def set_mask(self, param: nn.Parameter, mask: th.Tensor) -> None:
        idx = mask.reshape(-1).nonzero().squeeze(1)
        if idx.numel():
            self.pending[param] = idx
        else:
            self.pending.pop(param, None)

    @staticmethod
    def _group_of(optimizer: th.optim.Optimizer, param: nn.Parameter) -> dict:
        for pg in optimizer.param_groups:
            if any(p is param for p in pg["params"]):
                return pg
        raise KeyError("parameter not in optimizer")

    @th.no_grad()
    def __call__(self, optimizer: th.optim.Optimizer, args, kwargs) -> None:
        if not self.pending:
            return
        self.waited += 1
        if self.waited > self.max_wait:
            self.pending.clear()
            return
        for param in list(self.pending):
            idx = self.pending[param]
            state = optimizer.state.get(param)
            if param.grad is None or not state or "exp_avg" not in state:
                continue
            pg = self._group_of(optimizer, param)
            grad = param.grad.reshape(-1)[idx]
            if pg.get("maximize", False):
                grad = -grad
            if (
                pg.get("weight_decay", 0)
                and not isinstance(optimizer, th.optim.AdamW)
                and not pg.get("decoupled_weight_decay", False)
            ):
                grad = grad + pg["weight_decay"] * param.detach().reshape(-1)[idx]
            ready = grad != 0
            if not bool(ready.any()):
                continue
            beta1, beta2 = pg["betas"]
            t = float(state["step"]) + 1.0
            c1, c2 = 1.0 - beta1**t, 1.0 - beta2**t
            g, at = grad[ready], idx[ready]
            # Adam's state tensors are contiguous (zeros_like of the parameter): write through flat views
            state["exp_avg"].view(-1)[at] = g * ((c1 - (1.0 - beta1)) / beta1)
            state["exp_avg_sq"].view(-1)[at] = g.pow(2) * ((c2 - (1.0 - beta2)) / beta2)
            if "max_exp_avg_sq" in state:
                state["max_exp_avg_sq"].view(-1)[at] = 0.0
            rest = idx[~ready]
            if rest.numel():
                self.pending[param] = rest
            else:
                del self.pending[param]


def _fresh_of(optimizer: th.optim.Optimizer) -> _FreshStepHook | None:
    """The fresh-step registry of ``optimizer``, if it has one."""
    hooks = existing_step_hooks(optimizer)
    return None if hooks is None else hooks.fresh


def _fresh_hook(optimizer: th.optim.Optimizer) -> _FreshStepHook:
    hooks = step_hooks(optimizer)
    if hooks.fresh is None:
        hooks.fresh = _FreshStepHook(optimizer)
    return hooks.fresh


def _as_optimizers(optimizers: Sequence[th.optim.Optimizer] | nn.Module) -> list[th.optim.Optimizer]:
    if isinstance(optimizers, nn.Module):
        return list(_optimizers_of(optimizers).values())
    return list(optimizers)


def hold_fresh_steps(optimizers: Sequence[th.optim.Optimizer]) -> None:
    """Register the fresh-step hooks now (outside ``step()``) and keep them until :func:`release_fresh_steps`."""
    for opt in optimizers:
        _fresh_hook(opt).holds += 1


def release_fresh_steps(optimizers: Sequence[th.optim.Optimizer] | nn.Module, hold: bool = False) -> None:
    """Remove the fresh-step hooks that are neither held nor pending (call outside ``step()``).

    :param optimizers: the optimizers to look at, or a policy: all of its optimizers.
    :param hold: also drop one hold taken by :func:`hold_fresh_steps` on each of ``optimizers``.
    """
    for opt in _as_optimizers(optimizers):
        hook = _fresh_of(opt)
        if hook is None:
            continue
        if hold:
            hook.holds = max(hook.holds - 1, 0)
        if not hook.pending and hook.holds == 0:
            step_hooks(opt).fresh = None
            hook.handle.remove()


def fresh_steps_state(policy: nn.Module) -> dict[str, Any]:
    """The entries of ``policy``'s optimizers still waiting for their fresh first step (CPU masks by optimizer, named
    by the module that holds it, and parameter index), to keep across ``save``/``load``: see
    :func:`restore_fresh_steps`."""
    state: dict[str, Any] = {}
    for name, optimizer in _optimizers_of(policy).items():
        hook = _fresh_of(optimizer)
        if hook is not None and hook.pending:
            index = {id(p): i for i, p in enumerate(_params_of(optimizer))}
            pending = {index[id(p)]: hook.mask(p).cpu() for p in hook.pending}
            state[name] = {"pending": pending, "waited": hook.waited}
    return state


def restore_fresh_steps(policy: nn.Module, state: dict[str, Any] | None) -> None:
    """Put back what :func:`fresh_steps_state` returned (call outside ``step()``)."""
    optimizers = _optimizers_of(policy)
    for name, entry in (state or {}).items():
        if name not in optimizers:
            continue
        params = _params_of(optimizers[name])
        hook = _fresh_hook(optimizers[name])
        for i, mask in entry["pending"].items():
            if i < len(params) and params[i].shape == mask.shape:
                hook.set_mask(params[i], mask.to(params[i].device))
        hook.waited = int(entry.get("waited", 0))


def _optimizers_of(policy: nn.Module) -> dict[str, th.optim.Optimizer]:
    """The optimizers of an SB3 policy by the name of the module holding them (``actor``, ``critic``; ``""``: PPO's)."""
    return {
        name: module.optimizer
        for name, module in policy.named_modules()
        if isinstance(getattr(module, "optimizer", None), th.optim.Optimizer)
    }


def _params_of(optimizer: th.optim.Optimizer) -> list[nn.Parameter]:
    return [p for pg in optimizer.param_groups for p in pg["params"]]


@th.no_grad()
def _reset_entries(
    entries: Sequence[tuple[nn.Parameter, tuple]], optimizers: Sequence[th.optim.Optimizer], fresh_step: bool
) -> None:
    for param, selector in entries:
        for opt in optimizers:
            state = opt.state.get(param)
            if not state:
                continue  # no step taken yet: the entries are fresh already
            for value in state.values():
                if isinstance(value, th.Tensor) and value.shape == param.shape:
                    value[selector] = 0
            if fresh_step and isinstance(opt, _ADAM_TYPES) and "exp_avg" in state:
                _fresh_hook(opt).add(param, selector)


def reset_optimizer_state(
    group: NeuronGroup,
    neurons: th.Tensor | Sequence[int],
    incoming: bool = True,
    outgoing: bool = True,
    fresh_step: bool = True,
) -> None:
    """Zero the optimizer state of the neurons' incoming and/or outgoing entries in every owning optimizer.

    :param fresh_step: for Adam/AdamW, make each entry's next non-zero update that of a fresh parameter
        (see the module docstring); False only zeroes the moments.
    """
    idx = _as_index(neurons, group.producer.weight.device)
    if idx.numel() == 0:
        return
    entries = (_incoming_entries(group, idx) if incoming else []) + (_outgoing_entries(group, idx) if outgoing else [])
    _reset_entries(entries, group.optimizers, fresh_step)


def reset_optimizer_entries(
    param: nn.Parameter, entries: th.Tensor, optimizers: Sequence[th.optim.Optimizer], fresh_step: bool = True
) -> None:
    """Zero the optimizer state of ``param[entries]`` (a bool mask or an index) in ``optimizers``, with a fresh
    Adam first step as in :func:`reset_optimizer_state` (used for connections grown by Neuroplastic Expansion)."""
    _reset_entries([(param, (entries,))], optimizers, fresh_step)


@th.no_grad()
def sync_twin(group: NeuronGroup, neurons: th.Tensor | Sequence[int], outgoing: bool = True) -> None:
    """Copy the neurons' incoming (and outgoing) entries from the online group into its target twin."""
    twin = group.twin
    if twin is None:
        return
    idx = _as_index(neurons, group.producer.weight.device)
    if idx.numel() == 0:
        return
    for (src, sel), (dst, _) in zip(_incoming_entries(group, idx), _incoming_entries(twin, idx), strict=True):
        dst[sel] = src[sel].to(dst.device)
    if outgoing:
        # matched by name: SAC's shared online extractor also feeds the actor, its critic_target twin does not
        by_name = {c.name: c for c in group.consumers}
        for c_dst in twin.consumers:
            _copy_columns(by_name[c_dst.name], c_dst, idx)
    src_mask, dst_mask = getattr(group.producer, "mask", None), getattr(twin.producer, "mask", None)
    if src_mask is not None and dst_mask is not None:
        dst_mask[idx] = src_mask[idx]


def _copy_columns(src: Consumer, dst: Consumer, idx: th.Tensor) -> None:
    cols = src.input_index(idx)
    dst.module.weight[:, cols] = src.module.weight[:, cols].to(dst.module.weight.device)


def reset_neurons(
    group: NeuronGroup,
    neurons: th.Tensor | Sequence[int],
    outgoing: str = "zero",
    optimizer: bool = True,
    twin: bool = True,
    fresh_step: bool = True,
    generator: th.Generator | None = None,
    zero_grad: bool = False,
) -> int:
    """Re-initialise ``neurons`` of ``group`` the ReDo way; returns how many were reset.

    :param outgoing: ``"zero"`` zeroes the outgoing weights (function preserved), ``"keep"`` leaves them.
    :param optimizer: reset the optimizer state of the touched entries.
    :param twin: apply the same change to the target network's twin group.
    :param fresh_step: see :func:`reset_optimizer_state`.
    :param generator: random generator for the fresh weights (default: torch's global RNG).
    :param zero_grad: also zero the current ``.grad`` of the touched entries, for a reset between backward and
        the optimizer step: that step then leaves them where the reset put them (official GraMa code).
    """
    check_choice("outgoing", outgoing, ("zero", "keep"))
    idx = _as_index(neurons, group.producer.weight.device)
    if idx.numel() == 0:
        return 0
    reinitialize_incoming(group, idx, generator)
    if outgoing == "zero":
        zero_outgoing(group, idx)
    if zero_grad:
        entries = _incoming_entries(group, idx) + (_outgoing_entries(group, idx) if outgoing == "zero" else [])
        with th.no_grad():
            for param, selector in entries:
                if param.grad is not None:
                    param.grad[selector] = 0
    if optimizer:
        reset_optimizer_state(group, idx, incoming=True, outgoing=outgoing == "zero", fresh_step=fresh_step)
    if twin:
        sync_twin(group, idx, outgoing=outgoing == "zero")
    return int(idx.numel())


# ----------------------------------------------------------------------------------------------------
# Whole layers
# ----------------------------------------------------------------------------------------------------
def _layer_params(layer: Layer) -> list[nn.Parameter]:
    params = [p for p in (layer.module.weight, layer.module.bias) if p is not None]
    if layer.norm is not None:
        params += list(layer.norm.parameters())
    return params


def _twin_layer(model: NeuronModel, layer: Layer) -> Layer | None:
    if layer.network.endswith("_target"):
        return None
    return model.layer(layer.network + "_target", layer.name)


@th.no_grad()
def reset_layer(
    model: NeuronModel, layer: Layer, optimizer: bool = True, twin: bool = True, generator: th.Generator | None = None
) -> int:
    """Re-initialise a whole layer (and its norm) from its own init; returns the number of neurons (outputs).

    :param optimizer: drop the optimizer state of the layer's parameters: the whole tensors are new, so their
        step counts restart as well (exactly a fresh parameter).
    :param twin: copy the new values into the target network's layer of the same name.
    """
    module = layer.module
    weight, bias = layer.init.fresh(module, generator)
    mask = getattr(module, "mask", None)
    module.weight.copy_(weight if mask is None else weight * mask.to(weight.dtype))
    if module.bias is not None and bias is not None:
        module.bias.copy_(bias)
    if layer.norm is not None:
        if hasattr(layer.norm, "reset_parameters"):
            layer.norm.reset_parameters()
        if hasattr(layer.norm, "reset_running_stats"):
            layer.norm.reset_running_stats()
        # norms without those methods (sb3-contrib's BatchRenorm): every entry, and its step count (warm-up again)
        _reset_norm(layer.norm, module.weight.shape[0], slice(None))
        steps = getattr(layer.norm, "steps", None)
        if isinstance(steps, th.Tensor) and steps.dim() == 0:
            steps.zero_()
    if optimizer:
        for param in _layer_params(layer):
            for opt in model.optimizers_of(param):
                opt.state.pop(param, None)
    target = _twin_layer(model, layer) if twin else None
    if target is not None:
        for src, dst in zip(_layer_params(layer), _layer_params(target), strict=True):
            dst.copy_(src)
    return module.weight.shape[0]


@th.no_grad()
def shrink_perturb_layer(
    model: NeuronModel,
    layer: Layer,
    shrink: float,
    perturb: float,
    twin: bool = True,
    generator: th.Generator | None = None,
) -> None:
    """Shrink & Perturb (Ash & Adams 2020): ``theta <- shrink * theta + perturb * eps``, ``eps`` drawn from the
    layer's own init. The target twin gets the same transform with the same ``eps``; optimizer state is kept.
    Norm parameters are left alone."""
    module = layer.module
    eps_w, eps_b = layer.init.fresh(module, generator)
    mask = getattr(module, "mask", None)
    if mask is not None:
        eps_w = eps_w * mask.to(eps_w.dtype)
    targets = [layer.module]
    target = _twin_layer(model, layer) if twin else None
    if target is not None:
        targets.append(target.module)
    for mod in targets:
        mod.weight.mul_(shrink).add_(eps_w.to(mod.weight.device), alpha=perturb)
        if mod.bias is not None and eps_b is not None:
            mod.bias.mul_(shrink).add_(eps_b.to(mod.bias.device), alpha=perturb)
