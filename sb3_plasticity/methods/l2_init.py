"""L2 Init: regularisation toward the initial parameters (Kumar, Marklund & Van Roy, "Maintaining Plasticity in Continual
Learning via Regenerative Regularization", arXiv 2308.11958; GraMa Table 9 combines it with ReGraMa)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch as th
from torch import nn

from sb3_plasticity.checks import check_range
from sb3_plasticity.hooks import GRADIENT, step_hooks
from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.schedule import EveryN

__all__ = ["L2InitCallback"]


class L2InitCallback(PlasticityCallback):
    """L2 Init: the loss becomes ``L(theta) + lam * ||theta - theta_0||_2^2`` (Kumar et al.'s ``L_reg``: a sum of
    squares, no 1/2), ``theta_0`` the parameters at initialisation.

    Implemented on the gradients, so that no algorithm's loss code is copied: a pre-step hook on every optimizer of
    the selected networks adds ``2 * lam * (theta - theta_0)`` to each parameter's ``.grad`` (the gradient of the
    penalty) between the algorithm's backward pass and its optimizer step. With any optimizer this is the same update
    as adding the penalty to the loss, except that algorithms which clip the gradient norm (PPO/A2C's
    ``max_grad_norm``) clip before the penalty's gradient is added. A parameter without a gradient in that step
    (``.grad`` None) gets the penalty's gradient alone, as it would from the loss. Parameters with
    ``requires_grad=False`` and parameters no optimizer owns are left alone; masked-out entries of masked layers
    (``MaskedLinear``) get no penalty.

    ``theta_0`` is a copy of the selected networks' parameters when the callback first sees the model (the start of
    its first ``learn()``: attach the callback from the first ``learn()`` for the paper's meaning). It is kept in
    ``model.plasticity_state`` (``model.save`` / ``load`` keep it; a new ``L2InitCallback`` on a loaded model uses
    it) and never changes afterwards: when a reset method (ReDo, ReGraMa, ReBorn, CBP, Reset) re-initialises neurons,
    their ``theta_0`` stays the original draw, Kumar et al.'s fixed regularisation target (the paper regularises
    toward the one initial sample; a reset neuron's zeroed outgoing weights are thus pulled back toward their initial
    values too). Weight decay (regularisation toward 0) is the optimizer's own ``weight_decay``, e.g.
    ``policy_kwargs=dict(optimizer_kwargs=dict(weight_decay=1e-4))``; it composes with this callback.

    Logged every ``log_freq`` env steps under ``plasticity/l2_init/``: ``<network>/distance`` (``||theta -
    theta_0||_2`` over the network's regularised parameters), ``<network>/penalty`` (``lam * distance^2``) and
    ``penalty`` (their sum).

    :param lam: the coefficient ``lambda`` (> 0; default 1e-2, GraMa Table 9 with DrQ-v2).
    :param networks: trainable networks to regularise (default: all: TD3/SAC ``actor`` and ``critic``, PPO/A2C
        ``policy``, ``value`` and a shared ``features`` extractor); targets are never regularised.
    :param log_freq: env steps between logs (default 1000).
    :param verbose: 0 or 1.
    """

    method = "l2_init"
    trainable_only = True

    def __init__(
        self,
        lam: float = 1e-2,
        networks: str | Sequence[str] | None = None,
        log_freq: int = 1000,
        verbose: int = 0,
    ) -> None:
        super().__init__(networks, verbose)
        self.lam = check_range("lam", lam, 0.0, low_open=True)
        self.log_schedule = EveryN(log_freq, name="log_freq")
        self.log_freq = self.log_schedule.freq
        self.theta0: dict[str, th.Tensor] = {}
        self._entries: list[tuple[str, str, nn.Parameter, th.Tensor | None]] = []  # (network, name, param, mask)
        self._handles: list = []

    @property
    def state_key(self) -> str:  # type: ignore[override]
        """``theta_0`` lives in ``model.plasticity_state["l2_init"]`` (``"l2_init[<network>+...]"`` with ``networks``)."""
        return self.method if self.networks is None else f"{self.method}[{'+'.join(self.networks)}]"

    # -- set-up ------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        self._remove_hooks()
        names = {id(p): n for n, p in self.model.policy.named_parameters()}
        masks = {
            id(m.weight): m.mask
            for m in self.model.policy.modules()
            if isinstance(getattr(m, "mask", None), th.Tensor) and isinstance(getattr(m, "weight", None), nn.Parameter)
        }
        seen: set[int] = set()
        self._entries = []
        by_optimizer: dict[int, tuple[th.optim.Optimizer, list[int]]] = {}
        for network in self.network_names:
            for i, p in enumerate(self.neurons.network_parameters(network)):
                owners = self.neurons.optimizers_of(p)
                if id(p) in seen or not p.requires_grad or not owners:
                    continue
                seen.add(id(p))
                by_optimizer.setdefault(id(owners[0]), (owners[0], []))[1].append(len(self._entries))
                self._entries.append((network, names.get(id(p), f"{network}.{i}"), p, masks.get(id(p))))
        if not self._entries:
            raise ValueError(f"L2InitCallback: networks={self.network_names!r} have no parameter that an optimizer trains")
        stored = getattr(self.model, "plasticity_state", {}).get(self.state_key)
        if stored is None:
            self.theta0 = {name: p.detach().clone() for _, name, p, _ in self._entries}
            self.save_state()
        for opt, idx in by_optimizer.values():
            entries = [self._entries[k] for k in idx]
            # GRADIENT: before the hooks that read the gradient and before surgery's fresh-step hook, which sets reset
            # entries' Adam moments from the gradient the step uses, this term included
            hook = step_hooks(opt).add_pre(GRADIENT, lambda o, a, k, entries=entries: self._add_gradient(entries))
            self._handles.append(hook)
        self.log_schedule.start(self.model.num_timesteps)

    @th.no_grad()
    def _add_gradient(self, entries: Sequence[tuple[str, str, nn.Parameter, th.Tensor | None]]) -> None:
        """Add ``2 * lam * (theta - theta_0)`` to the gradients (optimizer pre-step hook)."""
        for _, name, p, mask in entries:
            term = (p - self.theta0[name]).mul_(2.0 * self.lam)
            if mask is not None:
                term.mul_(mask.to(term.dtype))
            if p.grad is None:
                p.grad = term
            else:
                p.grad.add_(term)

    # -- logging -----------------------------------------------------------------------------------------
    @th.no_grad()
    def distances(self) -> dict[str, float]:
        """``||theta - theta_0||_2`` per regularised network (masked-out entries excluded)."""
        sq: dict[str, float] = {}
        for network, name, p, mask in self._entries:
            diff = p - self.theta0[name]
            if mask is not None:
                diff = diff * mask.to(diff.dtype)
            sq[network] = sq.get(network, 0.0) + float(diff.pow(2).sum())
        return {network: v**0.5 for network, v in sq.items()}

    def _on_step(self) -> bool:
        if self.log_schedule.poll(self.num_timesteps):
            total = 0.0
            for network, dist in self.distances().items():
                penalty = self.lam * dist**2
                total += penalty
                self.record(f"{self.method}/{network}/distance", dist)
                self.record(f"{self.method}/{network}/penalty", penalty)
            self.record(f"{self.method}/penalty", total)
            self.dump()
        return True

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _finish(self) -> None:
        self._remove_hooks()

    # -- resuming ----------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        return {"theta0": {name: t.detach().cpu().clone() for name, t in self.theta0.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        stored = state.get("theta0", {})
        device = self.model.device
        theta0 = {}
        for _, name, p, _ in self._entries:
            t = stored.get(name)
            if t is None or tuple(t.shape) != tuple(p.shape):
                found = None if t is None else tuple(t.shape)
                raise ValueError(
                    f"L2InitCallback: the stored theta_0 (model.plasticity_state[{self.state_key!r}]) has "
                    f"{name!r} with shape {found}, the model's parameter has {tuple(p.shape)}: it was saved for "
                    "another architecture; delete that entry to start from the current parameters"
                )
            theta0[name] = t.to(device=device, dtype=p.dtype)
        self.theta0 = theta0
