"""The parts of plasticity injection (Nikishin et al., NeurIPS 2023) that change a policy's structure: the
``old(x) + new(x) - copy(x)`` head module, where a network's head is (through the policy's adapter), a fresh head
drawn from the layers' own init, putting a module in a head's place, and handing the old head's optimizer entries to
the new one. :mod:`sb3_plasticity.methods.injection` composes them into the paper's procedure.

Below the methods (like :mod:`sb3_plasticity.surgery`, the code that changes weights): nothing here knows a callback.

- :class:`InjectedHead` takes the head's place *inside* its container (the ``nn.Sequential`` of ``actor.mu`` or
  ``critic.qf<i>``, or the ``action_net`` / ``value_net`` / SAC ``mu`` / ``log_std`` attribute), so SB3's own
  references (``critic.q_networks``, optimizers, aliases) stay valid; the earlier layers of a multi-layer head
  leave ``nn.Identity`` behind (:func:`take_head`), which keeps every other state-dict key unchanged.
- :func:`swap_in_optimizers`: in every optimizer that trained the old head, its parameters are replaced by the
  new head's (their optimizer state dropped, so the new head starts like a fresh parameter).
- The injections done are recorded in the policy's ``plasticity_injection`` (:data:`SPEC_KWARG`: a dict with the
  list ``"injections"`` of ``{"network", "head_layers"}``), which :class:`~sb3_plasticity.InjectablePolicy` takes
  as a constructor argument to rebuild them when a saved model is loaded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch as th
from torch import nn

from sb3_plasticity.adapters import HeadSlot, adapter_for
from sb3_plasticity.neurons import Branch, DefaultInit, InitScheme, discover

__all__ = [
    "SPEC_KWARG",
    "InjectedHead",
    "detached_copy",
    "freeze",
    "fresh_head",
    "frozen_copy",
    "head_networks",
    "head_routes",
    "injected_networks",
    "layer_inits",
    "swap_in_optimizers",
    "take_head",
]

LAYERS = (nn.Linear, nn.Conv2d)
# the policy-constructor argument (and ``policy_kwargs`` key) that records the injections
SPEC_KWARG = "plasticity_injection"

# One head route: the slots from the network's input to its output, the index of the head's first and last slot.
Route = tuple[list[HeadSlot], int, int]


class InjectedHead(nn.Module):
    """An injected head: ``old(x) + new(x) - copy(x)``.

    :param old: the head before injection (frozen); after a second injection, the previous ``InjectedHead``.
    :param new: the fresh head (trained).
    :param copy: a frozen copy of ``new`` as it was at injection.
    :param inits: init scheme of each Linear/Conv layer of ``new``, in data-flow order (used for later
        injections and by neuron resets inside a multi-layer head).
    :param head_layers: number of Linear/Conv layers of the head.
    """

    def __init__(
        self, old: nn.Module, new: nn.Module, copy: nn.Module, inits: Sequence[InitScheme] = (), head_layers: int = 1
    ) -> None:
        super().__init__()
        self.old = old
        self.new = new
        self.copy = copy
        self.inits = tuple(inits)
        self.head_layers = int(head_layers)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.old(x) + self.new(x) - self.copy(x)

    def neuron_branches(self) -> list[Branch]:
        """For neuron discovery: every branch reads the input; only ``new`` is trained."""
        return [
            Branch("old", self.old, trainable=False),
            Branch("new", self.new, trainable=True, inits=self.inits or None),
            Branch("copy", self.copy, trainable=False),
        ]

    @property
    def injections(self) -> int:
        """Injections stacked in this head (1 + those inside ``old``)."""
        return 1 + (self.old.injections if isinstance(self.old, InjectedHead) else 0)

    def extra_repr(self) -> str:
        return f"injections={self.injections}, head_layers={self.head_layers}"


# ----------------------------------------------------------------------------------------------------
# Where the heads are: the policy's adapter knows (sb3_plasticity.adapters)
# ----------------------------------------------------------------------------------------------------
def head_networks(policy: nn.Module) -> list[str]:
    """The networks of a policy that have an injectable head (target networks excluded)."""
    adapter = adapter_for(policy)
    heads = adapter.head_networks(policy)
    if not heads:
        raise ValueError(
            f"plasticity injection supports the policies of TD3, DDPG, SAC, TQC, CrossQ, PPO, A2C, DQN, QR-DQN and "
            f"DrQ-v2; {type(policy).__name__} ({adapter.family}) has no injectable head"
        )
    return heads


def _head_range(path: list[HeadSlot], head_layers: int, where: str) -> tuple[int, int]:
    """Indices of the first and last slot of the head: the last ``head_layers`` Linear/Conv layers of the path
    (with what lies between them), or the ``InjectedHead`` already there."""
    last = max((i for i, s in enumerate(path) if isinstance(s.module, (*LAYERS, InjectedHead))), default=None)
    if last is None:
        raise ValueError(f"{where} has no Linear or Conv2d output layer to inject into")
    out = path[last].module
    if isinstance(out, InjectedHead):
        if out.head_layers != head_layers:
            raise ValueError(
                f"head_layers={head_layers}: {where} was injected with head_layers={out.head_layers}; a later "
                "injection must use the same number of layers"
            )
        return last, last
    found, start = 0, last
    for i in range(last, -1, -1):
        if isinstance(path[i].module, LAYERS):
            found, start = found + 1, i
            if found == head_layers:
                return start, last
    raise ValueError(
        f"head_layers={head_layers}: {where} has only {found} Linear/Conv2d layer(s) after its features extractor"
    )


def head_routes(policy: nn.Module, network: str, head_layers: int) -> list[Route]:
    """The head of every input-to-output route of ``network`` (features extractors excluded), with a clear error
    where it cannot be injected."""
    adapter = adapter_for(policy)
    limit = adapter.max_head_layers(policy, network)
    if limit is not None and head_layers > limit:
        raise ValueError(
            f"head_layers={head_layers}: SAC's actor head is its two output layers `mu` and `log_std`, which read "
            f"the shared `latent_pi`; only head_layers={limit} is supported for it (pass networks='critic' to inject "
            "deeper critic heads)"
        )
    if network == "policy" and head_layers > 1 and getattr(policy, "use_sde", False):
        raise ValueError(
            f"head_layers={head_layers}: with gSDE the policy's last hidden features feed the exploration noise, so "
            "only its output layer (head_layers=1) can be injected"
        )
    routes = []
    for i, path in enumerate(adapter.head_routes(policy, network)):
        start, last = _head_range(path, head_layers, f"{network} (route {i})")
        routes.append((path, start, last))
    return routes


# ----------------------------------------------------------------------------------------------------
# Building heads
# ----------------------------------------------------------------------------------------------------
def _clear_hooks(module: nn.Module) -> None:
    # deepcopy copies forward hooks (an armed Capture's, for example): a fresh head must not report to them
    for m in module.modules():
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            hooks = getattr(m, name, None)
            if hooks:
                hooks.clear()


def freeze(module: nn.Module) -> nn.Module:
    """``requires_grad=False`` and no gradient on every parameter of ``module``; returns it."""
    for p in module.parameters():
        p.requires_grad_(False)
        p.grad = None
    return module


def detached_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` without its hooks."""
    clone = copy.deepcopy(module)
    _clear_hooks(clone)
    return clone


def frozen_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` (``h_copy``)."""
    return freeze(detached_copy(module))


@th.no_grad()
def fresh_head(template: nn.Module, inits: Sequence[InitScheme]) -> nn.Module:
    """A copy of ``template``'s structure with every layer drawn again from its init scheme (``h_new``)."""
    fresh = detached_copy(template)
    layers = [m for m in fresh.modules() if isinstance(m, LAYERS)]
    for layer, init in zip(layers, inits, strict=True):
        weight, bias = init.fresh(layer)
        mask = getattr(layer, "mask", None)
        layer.weight.copy_(weight if mask is None else weight * mask.to(weight.dtype))
        if layer.bias is not None and bias is not None:
            layer.bias.copy_(bias)
    for m in fresh.modules():
        if not isinstance(m, LAYERS) and hasattr(m, "reset_parameters") and any(True for _ in m.parameters(False)):
            m.reset_parameters()  # norms inside a multi-layer head
    for p in fresh.parameters():
        p.requires_grad_(True)
        p.grad = None
    return fresh


def take_head(route: Route) -> nn.Module:
    """The head's modules as one module (``Sequential`` for several), with Identity left in their earlier slots (or
    the ``InjectedHead`` already there)."""
    path, start, last = route
    modules = [s.module for s in path[start : last + 1]]
    for slot in path[start:last]:
        slot.set(nn.Identity())
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def layer_inits(policy: nn.Module, network: str) -> Callable[[nn.Module], InitScheme]:
    """Each layer's own init scheme, as neuron discovery knows it (SB3's orthogonal gains for PPO/A2C)."""
    neurons = discover(policy)
    known = {id(layer.module): layer.init for layer in neurons.layers(network)} if network in neurons.networks else {}
    return lambda module: known.get(id(module), DefaultInit())


def swap_in_optimizers(
    policy: nn.Module, network: str, old: Sequence[nn.Parameter], new: Sequence[nn.Parameter]
) -> list[th.optim.Optimizer]:
    """Put ``new`` where ``old`` was in every optimizer holding any of ``old`` (their state dropped); returns
    those optimizers. Without any, ``new`` joins the network's optimizer as a parameter group."""
    old_ids = {id(p) for p in old}
    owners = []
    adapter = adapter_for(policy)
    for opt in adapter.optimizers(policy):
        touched = False
        for group in opt.param_groups:
            params: list[nn.Parameter] = []
            for p in group["params"]:
                if id(p) not in old_ids:
                    params.append(p)
                    continue
                opt.state.pop(p, None)
                if not touched:
                    params += list(new)  # at the old head's place: the group layout is independent of injection order
                    touched = True
            group["params"] = params
        if touched:
            owners.append(opt)
    if not owners:
        opt = adapter.optimizer_of(policy, network)
        if opt is None:
            raise ValueError(f"no optimizer trains {network}'s head, and {network} has no `optimizer` to add it to")
        opt.add_param_group({"params": list(new)})
        owners.append(opt)
    return owners


def injected_networks(policy: nn.Module) -> dict[str, int]:
    """Injections done so far per network, from ``policy.plasticity_injection``."""
    counts: dict[str, int] = {}
    for entry in (getattr(policy, SPEC_KWARG, None) or {}).get("injections", []):
        counts[entry["network"]] = counts.get(entry["network"], 0) + 1
    return counts
