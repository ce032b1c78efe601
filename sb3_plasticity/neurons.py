"""Layer 1: the neuron model.

A *neuron group* is one producer layer (the out-features of an ``nn.Linear`` or the out-channels of an
``nn.Conv2d``), the norm and activation modules that follow it, the consumer layers that read its
output, the optimizers that own those parameters, and the twin group in the target network.

:func:`discover` builds a :class:`NeuronModel` for the built-in policies of TD3, DDPG, SAC, PPO and A2C
(MLP and NatureCNN extractors, shared or separate extractors, any ``n_critics``). A custom policy
declares its networks by defining ``neuron_paths()`` (sequential data-flow paths, walked like the
built-in ones) or ``neuron_groups()`` (the groups themselves). See ``docs/neuron_model.md``.

Output layers (action, value and Q heads) are consumers, never groups: no method resets them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch as th
from torch import nn

from sb3_plasticity.adapters import (
    DefaultInit,
    InitScheme,
    NetworkPath,
    NeuronDiscoveryError,
    OrthogonalInit,
    Stage,
    adapter_for,
    is_norm,
)

__all__ = [
    "Branch",
    "Consumer",
    "DefaultInit",
    "InitScheme",
    "Layer",
    "NetworkPath",
    "NeuronDiscoveryError",
    "NeuronGroup",
    "NeuronModel",
    "OrthogonalInit",
    "Stage",
    "discover",
]

Producer = nn.Linear | nn.Conv2d
_PRODUCERS = (nn.Linear, nn.Conv2d)
_PASS_THROUGH = (nn.Identity, nn.Dropout)


# ----------------------------------------------------------------------------------------------------
# Groups
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Consumer:
    """A layer that reads a neuron group's output.

    :param module: the consuming ``nn.Linear`` or ``nn.Conv2d``.
    :param offset: input column (Linear) or input channel (Conv) fed by neuron 0.
    :param block: input columns fed by each neuron: 1, or ``H * W`` after conv -> flatten -> linear
        (channel ``c`` feeds columns ``[offset + c*block, offset + (c+1)*block)``).
    :param name: path of the consumer inside its network (matches the target twin's consumer).
    """

    module: Producer
    offset: int = 0
    block: int = 1
    name: str = ""

    def input_index(self, neurons: th.Tensor) -> th.Tensor:
        """Input columns (or channels) of :attr:`module` that read the given neurons."""
        neurons = neurons.to(self.module.weight.device)
        if self.block == 1:
            return neurons + self.offset
        cols = self.offset + neurons[:, None] * self.block + th.arange(self.block, device=neurons.device)
        return cols.reshape(-1)


@dataclass(frozen=True, eq=False)
class Layer:
    """A Linear or Conv layer of a network (hidden or output), for whole-layer methods (Reset, S&P).

    :param norm: the norm module right after it, if any.
    """

    network: str
    name: str
    module: Producer
    init: InitScheme
    norm: nn.Module | None = None


@dataclass(eq=False)
class NeuronGroup:
    """The neurons of one producer layer.

    :param network: network name (``actor``, ``critic``, ``actor_target``, ``policy``, ``value``, ...).
    :param name: path of the producer inside the network's root module, e.g. ``qf0.0``.
    :param producer: the ``nn.Linear`` / ``nn.Conv2d`` whose outputs are the neurons.
    :param output: module whose forward output is the neuron output (the activation, else the norm,
        else the producer). Activations and gradients are captured there.
    :param consumers: the layers that read the neurons.
    :param norm: normalisation module between producer and activation, if any.
    :param init: how to draw fresh incoming weights (the layer's own init).
    :param optimizers: optimizers owning any parameter of the group (producer, norm or consumers).
    :param twin: the same group in the target network, if there is one.
    :param is_target: True for groups of a target network (never trained by gradient).
    :param norm_after_activation: the norm follows the activation (CrossQ's BatchRenorm before the next layer):
        :attr:`output` is then the activation, and ``z`` the producer's output.
    """

    network: str
    name: str
    producer: Producer
    output: nn.Module
    consumers: tuple[Consumer, ...]
    norm: nn.Module | None = None
    init: InitScheme = field(default_factory=DefaultInit)
    optimizers: tuple[th.optim.Optimizer, ...] = ()
    twin: NeuronGroup | None = None
    is_target: bool = False
    is_last_hidden: bool = False
    norm_after_activation: bool = False

    @property
    def pre_activation(self) -> nn.Module:
        """The module whose output is the neuron's pre-activation ``z``: the norm when it precedes the activation
        (``Linear -> LayerNorm -> ReLU``), else the producer (also for CrossQ's ``Linear -> ReLU -> BatchRenorm``)."""
        return self.norm if self.norm is not None and not self.norm_after_activation else self.producer

    @property
    def n_neurons(self) -> int:
        return self.producer.weight.shape[0]

    @property
    def key(self) -> str:
        """``<network>/<name>``: unique within a model, used in TensorBoard tags."""
        return f"{self.network}/{self.name}"

    def alive(self) -> th.Tensor | None:
        """Bool mask of the neurons that exist in the current topology, or None when all do.

        A producer with a connection ``mask`` buffer (``MaskedLinear``) has a neuron only where at least one
        incoming connection is unmasked; masked-out capacity is not counted as dormant.
        """
        mask = getattr(self.producer, "mask", None)
        if mask is None:
            return None
        return mask.reshape(mask.shape[0], -1).any(dim=1)

    def incoming_parameters(self) -> list[nn.Parameter]:
        params = [self.producer.weight]
        if self.producer.bias is not None:
            params.append(self.producer.bias)
        if self.norm is not None:
            # "scale": sb3-contrib's BatchRenorm names its per-neuron weight so
            names = ("weight", "scale", "bias")
            params += [p for p in (getattr(self.norm, n, None) for n in names) if isinstance(p, nn.Parameter)]
        return params

    def __repr__(self) -> str:
        return (
            f"NeuronGroup({self.key}, {type(self.producer).__name__}, n={self.n_neurons}, "
            f"consumers={[type(c.module).__name__ for c in self.consumers]}, init={self.init})"
        )


# ----------------------------------------------------------------------------------------------------
# Branching modules (plasticity injection's old + new - copy heads).
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Branch:
    """One branch of a *branching module*: a module with a ``neuron_branches()`` method returning its branches,
    each of which reads the module's whole input; the module's output combines the branches' outputs (e.g.
    ``PlasticityInjectionCallback``'s ``old(x) + new(x) - copy(x)``).

    Discovery treats every branch's first layer as a consumer of the neurons feeding the module, so surgery
    (zeroed outgoing weights, bias transfer, twin sync) covers all of them. Only ``trainable`` branches are
    walked further: their hidden layers are neuron groups and their layers enter ``NeuronModel.layers``;
    frozen branches are never reset or re-initialised.

    :param name: the branch's child name inside the module (``new``).
    :param module: the branch.
    :param trainable: whether the branch's parameters are trained.
    :param inits: init scheme of each Linear/Conv layer of the branch in data-flow order (default: the
        enclosing stage's).
    """

    name: str
    module: nn.Module
    trainable: bool = True
    inits: tuple[InitScheme, ...] | None = None


def _branches(module: nn.Module) -> list[Branch] | None:
    fn = getattr(module, "neuron_branches", None)
    return list(fn()) if callable(fn) else None


def _expand_branches(leaves: list[_Leaf]) -> list[tuple[list[_Leaf], bool]]:
    """One leaf list per route through the branching modules on a path, and whether the route is trainable.

    A frozen branch's route ends at its first layer (it is only there as a consumer of what feeds it).
    """
    at = next((i for i, leaf in enumerate(leaves) if _branches(leaf.module) is not None), None)
    if at is None:
        return [(leaves, True)]
    head, before, after = leaves[at], leaves[:at], leaves[at + 1 :]
    routes: list[tuple[list[_Leaf], bool]] = []
    for branch in _branches(head.module) or []:
        stage = Stage(head.network, _join(head.name, branch.name), branch.module, head.init, head.column_offset)
        inner = _leaves(stage)
        inits = iter(branch.inits or ())
        for leaf in inner:
            if isinstance(leaf.module, _PRODUCERS):
                leaf.init = next(inits, leaf.init)
        if branch.trainable:
            routes += _expand_branches(before + inner + after)
        else:
            for route, _ in _expand_branches(inner):
                first = next((i for i, leaf in enumerate(route) if isinstance(leaf.module, _PRODUCERS)), len(route))
                routes.append((before + route[: first + 1], False))
    return routes


@dataclass
class _Leaf:
    network: str
    name: str
    module: nn.Module
    init: InitScheme
    column_offset: int


def _leaves(stage: Stage) -> list[_Leaf]:
    leaves = list(_flatten(stage.module, stage.prefix, stage))
    # The previous stage's output enters this stage's first layer at ``column_offset``.
    for leaf in leaves:
        if isinstance(leaf.module, _PRODUCERS) or _branches(leaf.module) is not None:
            leaf.column_offset = stage.column_offset
            break
    return leaves


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _flatten(module: nn.Module, prefix: str, stage: Stage) -> Iterator[_Leaf]:
    from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN

    if _branches(module) is not None:
        yield _Leaf(stage.network, prefix, module, stage.init, 0)  # expanded into its branches by _walk
    elif isinstance(module, (nn.Sequential, NatureCNN, FlattenExtractor)):
        # NatureCNN.forward is linear(cnn(x)) and FlattenExtractor.forward is flatten(x): their children in
        # registration order are their data flow, like a Sequential's.
        for name, child in module.named_children():
            yield from _flatten(child, _join(prefix, name), stage)
    elif isinstance(module, (*_PRODUCERS, *_PASS_THROUGH, nn.Flatten)) or is_norm(module) or not _has_parameters(module):
        # Parameter-free modules (activations, flatten, parameter-free extractors) are leaves.
        yield _Leaf(stage.network, prefix, module, stage.init, 0)
    else:
        raise NeuronDiscoveryError(
            f"cannot follow the data flow of {stage.network}.{prefix} ({type(module).__name__}): only "
            "nn.Sequential, Linear, Conv2d, norm and activation layers, FlattenExtractor and NatureCNN are "
            "understood automatically. Declare the policy's neurons with a `neuron_paths()` or "
            "`neuron_groups()` method (see docs/neuron_model.md)."
        )


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _routes(path: NetworkPath) -> list[tuple[list[_Leaf], bool]]:
    """The path's leaves, one list per route through its branching modules (and whether it is trainable)."""
    return _expand_branches([leaf for stage in path.stages for leaf in _leaves(stage)])


def _walk(path: NetworkPath) -> list[_Found]:
    """(producer leaf, output module, norm, consumer or None if it is an output layer, norm after activation) along a
    path."""
    return [found for leaves, _ in _routes(path) for found in _walk_leaves(leaves)]


_Found = tuple[_Leaf, nn.Module, "nn.Module | None", "Consumer | None", bool]


def _walk_leaves(leaves: list[_Leaf]) -> list[_Found]:
    found = []
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf.module, _PRODUCERS):
            continue
        producer = leaf.module
        output: nn.Module = producer
        norm = None
        activated = False
        norm_after = False
        flattened = False
        consumer = None
        for nxt in leaves[i + 1 :]:
            mod = nxt.module
            if isinstance(mod, _PRODUCERS):
                consumer = _make_consumer(producer, mod, flattened, nxt, leaf)
                break
            if isinstance(mod, nn.Flatten):
                flattened = True
            elif is_norm(mod):
                norm = mod
                if activated:
                    # CrossQ: Linear -> activation -> BatchRenorm -> next Linear. The neuron is the activation's
                    # output; the norm is part of the group (its per-neuron entries are reset with it).
                    norm_after = True
                else:
                    output = mod
            elif not isinstance(mod, _PASS_THROUGH) and not _is_container(mod):
                output = mod  # an activation; parameter-free containers (extractors) pass data through
                activated = True
        found.append((leaf, output, norm, consumer, norm_after))
    return found


def _is_container(mod: nn.Module) -> bool:
    return len(list(mod.children())) > 0


def _make_consumer(producer: Producer, consumer: Producer, flattened: bool, c_leaf: _Leaf, p_leaf: _Leaf) -> Consumer:
    n = producer.weight.shape[0]
    offset = c_leaf.column_offset
    if isinstance(consumer, nn.Linear):
        width = consumer.in_features - offset
        if isinstance(producer, nn.Conv2d):
            if not flattened or width % n != 0:
                raise NeuronDiscoveryError(
                    f"{p_leaf.network}.{p_leaf.name} (Conv2d, {n} channels) feeds {c_leaf.network}.{c_leaf.name} "
                    f"(Linear, in_features={consumer.in_features}) without a Flatten that maps channels to columns"
                )
            return Consumer(consumer, offset, width // n, c_leaf.name)
        if width < n:
            raise NeuronDiscoveryError(
                f"{p_leaf.network}.{p_leaf.name} has {n} outputs but {c_leaf.network}.{c_leaf.name} reads only "
                f"{consumer.in_features} inputs"
            )
        return Consumer(consumer, offset, 1, c_leaf.name)
    if isinstance(producer, nn.Linear) or consumer.in_channels != n:
        raise NeuronDiscoveryError(
            f"{p_leaf.network}.{p_leaf.name} ({type(producer).__name__}, {n} outputs) cannot feed "
            f"{c_leaf.network}.{c_leaf.name} (Conv2d, in_channels={consumer.in_channels})"
        )
    return Consumer(consumer, offset, 1, c_leaf.name)


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------
class NeuronModel:
    """All neuron groups of a policy, by network.

    :param groups: every group, online and target.
    :param network_modules: for each network, the modules whose parameters make it up (for norms).
    :param optimizers: every optimizer of the policy / algorithm.
    :param layer_paths: the Linear/Conv layers along each input-to-output path, in data-flow order (output
        layers included); by default the groups' producers and consumers.
    """

    def __init__(
        self,
        groups: Sequence[NeuronGroup],
        network_modules: dict[str, Sequence[nn.Module]],
        optimizers: Sequence[th.optim.Optimizer] = (),
        layer_paths: Sequence[Sequence[Layer]] | None = None,
    ) -> None:
        self.groups: list[NeuronGroup] = list(groups)
        if layer_paths is None:
            layer_paths = [
                [Layer(g.network, g.name, g.producer, g.init, g.norm)]
                + [Layer(g.network, c.name, c.module, g.init) for c in g.consumers]
                for g in self.groups
            ]
        self.layer_paths = [list(p) for p in layer_paths]
        for group in self.groups:
            if group.network.endswith("_target"):
                group.is_target = True
        self.networks: dict[str, list[NeuronGroup]] = {}
        for group in self.groups:
            self.networks.setdefault(group.network, []).append(group)
        self.network_modules = {k: list(v) for k, v in network_modules.items()}
        self.optimizers = list(optimizers)
        owners: dict[int, list[th.optim.Optimizer]] = {}
        for opt in self.optimizers:
            for pg in opt.param_groups:
                for p in pg["params"]:
                    owners.setdefault(id(p), [])
                    if opt not in owners[id(p)]:
                        owners[id(p)].append(opt)
        self._owners = owners
        for group in self.groups:
            params = group.incoming_parameters() + [c.module.weight for c in group.consumers]
            opts: list[th.optim.Optimizer] = []
            for p in params:
                for opt in owners.get(id(p), []):
                    if opt not in opts:
                        opts.append(opt)
            group.optimizers = tuple(opts)
        _mark_last_hidden(self.groups)

    def layers(self, network: str, last: int | None = None) -> list[Layer]:
        """The network's Linear/Conv layers (output layers included), in data-flow order.

        :param last: only the last ``last`` layers of the network along each path (e.g. ``qf0.2, qf0.4`` and
            ``qf1.2, qf1.4`` for ``last=2`` on a TD3 critic).
        """
        out: list[Layer] = []
        for path in self.layer_paths:
            mine = [layer for layer in path if layer.network == network]
            if last is not None:
                mine = mine[-last:] if last > 0 else []
            out += [layer for layer in mine if all(layer.module is not o.module for o in out)]
        return out

    def layer(self, network: str, name: str) -> Layer | None:
        """The layer called ``name`` in ``network`` (e.g. the target twin of an online layer)."""
        for path in self.layer_paths:
            for layer in path:
                if layer.network == network and layer.name == name:
                    return layer
        return None

    def optimizers_of(self, param: nn.Parameter) -> list[th.optim.Optimizer]:
        return self._owners.get(id(param), [])

    @property
    def network_names(self) -> list[str]:
        return list(self.networks)

    @property
    def trainable_networks(self) -> list[str]:
        return [name for name, groups in self.networks.items() if not groups[0].is_target]

    def network_parameters(self, network: str) -> list[nn.Parameter]:
        seen: set[int] = set()
        params = []
        for module in self.network_modules.get(network, []):
            for p in module.parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    params.append(p)
        return params

    def select(self, networks: Iterable[str] | None = None, *, targets: bool = True) -> list[NeuronGroup]:
        """Groups of the given networks (all when None), optionally without target networks."""
        names = self.network_names if networks is None else list(networks)
        self.check_networks(names)
        return [g for n in names for g in self.networks[n] if targets or not g.is_target]

    def check_networks(self, names: Iterable[str], parameter: str = "networks") -> None:
        unknown = [n for n in names if n not in self.networks]
        if unknown:
            raise ValueError(
                f"{parameter}={list(names)!r}: the model has no network named {unknown!r}; it has {self.network_names!r}"
            )

    def __repr__(self) -> str:
        lines = [f"NeuronModel({len(self.groups)} groups)"]
        for name, groups in self.networks.items():
            lines.append(f"  {name}: " + ", ".join(f"{g.name}[{g.n_neurons}]" for g in groups))
        return "\n".join(lines)


def _mark_last_hidden(groups: Sequence[NeuronGroup]) -> None:
    # per network: a shared extractor's last layer feeds hidden layers of other networks but is the last
    # hidden layer of the "features" network
    producers = {(g.network, id(g.producer)) for g in groups}
    for g in groups:
        g.is_last_hidden = not any((g.network, id(c.module)) in producers for c in g.consumers)


def layers_from_paths(paths: Sequence[NetworkPath]) -> list[list[Layer]]:
    """The Linear/Conv layers along each path (each trainable route of a path with branching modules), in data-flow
    order."""
    return [
        [Layer(leaf.network, leaf.name, leaf.module, leaf.init, norm) for leaf, _, norm, _, _ in _walk_leaves(leaves)]
        for path in paths
        for leaves, trainable in _routes(path)
        if trainable
    ]


def groups_from_paths(paths: Sequence[NetworkPath]) -> list[NeuronGroup]:
    """Walk the paths and merge what they say about each producer into one group per producer."""
    by_producer: dict[int, NeuronGroup] = {}
    order: list[int] = []
    for path in paths:
        for leaf, output, norm, consumer, norm_after in _walk(path):
            key = id(leaf.module)
            group = by_producer.get(key)
            if group is None:
                if consumer is None:
                    continue  # output layer on this path
                group = NeuronGroup(leaf.network, leaf.name, leaf.module, output, (), norm, leaf.init)
                group.norm_after_activation = norm_after
                by_producer[key] = group
                order.append(key)
            if consumer is not None and all(c.module is not consumer.module for c in group.consumers):
                group.consumers = (*group.consumers, consumer)
    return [by_producer[k] for k in order]


# ----------------------------------------------------------------------------------------------------
# Discovery for SB3's built-in policies
# ----------------------------------------------------------------------------------------------------
def _link_twins(online: list[NeuronGroup], target: list[NeuronGroup], suffix: str = "_target") -> None:
    by_key = {(g.network, g.name): g for g in target}
    by_name = {g.name: g for g in target}
    for g in online:
        # SAC with a shared extractor: the online extractor is its own network ("features") while
        # critic_target keeps a private copy that polyak averaging tracks; the name still matches.
        twin = by_key.get((g.network + suffix, g.name)) or (by_name.get(g.name) if g.network == "features" else None)
        if twin is not None:
            g.twin = twin
            twin.is_target = True
            online_names = {c.name for c in g.consumers}
            if twin.producer.weight.shape != g.producer.weight.shape or any(
                c.name not in online_names for c in twin.consumers
            ):
                raise NeuronDiscoveryError(f"target twin of {g.key} does not match it ({twin})")


def discover(model) -> NeuronModel:
    """Build the :class:`NeuronModel` of an SB3 / sb3-contrib algorithm (or of a bare policy).

    The policy's adapter (:func:`~sb3_plasticity.adapters.adapter_for`) gives its paths, networks and optimizers.
    Policies defining ``neuron_groups()`` or ``neuron_paths()`` are used as they declare.

    :param model: an algorithm (TD3, DDPG, SAC, PPO, A2C, DQN, TQC, CrossQ, QR-DQN, DrQ-v2, DACER, ...) or its policy.
    :raises NeuronDiscoveryError: naming the part of the policy that was not understood (an
        :class:`~sb3_plasticity.adapters.UnsupportedPolicyError` for a policy with no adapter).
    """
    policy = getattr(model, "policy", model)
    adapter = adapter_for(policy)
    optimizers = adapter.optimizers(policy)

    if hasattr(policy, "neuron_groups"):
        groups = list(policy.neuron_groups())
        modules = getattr(policy, "neuron_network_modules", lambda: {})()
        return NeuronModel(groups, modules, optimizers)

    paths = adapter.neuron_paths(policy)
    groups = groups_from_paths(paths)
    modules = adapter.network_modules(policy, paths)
    targets = set(adapter.targets(policy).values())
    target_groups = [g for g in groups if g.network in targets or g.network.endswith("_target")]
    _link_twins([g for g in groups if g not in target_groups], target_groups)
    return NeuronModel(groups, modules, optimizers, layers_from_paths(paths))
