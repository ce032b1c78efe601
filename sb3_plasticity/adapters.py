"""Policy adapters: the one place that knows how SB3 and sb3-contrib build their policies.

A :class:`PolicyAdapter` describes one policy family: its networks and their names, the data-flow paths that hold
its neuron groups (walked by :func:`sb3_plasticity.neurons.discover`), the target twin of each network, which
optimizer trains which network, the output heads (for plasticity injection), how to run each network on a batch,
and the policy's action distribution (or that the policy is deterministic). Every other module asks
:func:`adapter_for` instead of checking SB3 policy classes, so supporting a new algorithm is one
:func:`register_adapter` call.

Built-in adapters (by the policy class they are registered for; subclasses inherit them through the MRO):

- ``TD3Policy`` (TD3, DDPG): deterministic ``actor`` (``features_extractor -> mu``), ``critic`` (``qf<i>``) and the
  targets ``actor_target`` / ``critic_target``;
- ``SACPolicy``: squashed-Gaussian ``actor`` (``latent_pi -> mu, log_std``), ``critic``, ``critic_target``;
- ``ActorCriticPolicy`` (PPO, A2C; MLP and CNN, shared or separate extractors): ``policy`` and ``value`` branches,
  ``features`` when the extractor is shared; no targets;
- ``DQNPolicy`` (DQN): ``q_net`` and its twin ``q_net_target``; greedy (deterministic) discrete actions;
- sb3-contrib, resolved by class name so that ``sb3_contrib`` is never imported here: ``TQCPolicy`` (SAC's actor,
  quantile critics), ``CrossQPolicy`` (SAC's actor, BatchRenorm critics, no target network), ``QRDQNPolicy``
  (``quantile_net`` / ``quantile_net_target``);
- the package's DrQ-v2 (deterministic actor, ``critic`` / ``critic_target``, shared encoder ``features``) and DACER
  (diffusion actor, run deterministically) policies.

The package's LayerNorm, masked, BRO-net, ResNet and multi-head policies subclass SB3's and use their family's
adapter; those whose networks are not plain ``nn.Sequential`` declare their paths with ``neuron_paths()`` (see
``docs/neuron_model.md``), which takes precedence over the adapter's own paths.

A custom policy class gets its adapter with ``register_adapter(MyPolicy, MyAdapter())`` (or
``@register_adapter(MyPolicy)`` on the adapter class); :func:`adapter_for` raises :class:`UnsupportedPolicyError`
for a policy whose class (and bases) has none. Override only what differs from the closest built-in family, e.g. a
SAC policy whose actor reads its features through a ``trunk`` Sequential::

    from sb3_plasticity.adapters import SACAdapter, register_adapter

    @register_adapter(MySACPolicy)
    class MySACAdapter(SACAdapter):
        family = "my SAC"

        def actor_stages(self, policy, network, actor):
            # routes after the actor's features extractor: (name inside the actor, module)
            return [[("trunk", actor.trunk), ("mu", actor.mu)], [("trunk", actor.trunk), ("log_std", actor.log_std)]]

Every method (monitor, ReDo, ReGraMa, Reset, S&P, CBP, SBP, injection, NE) then works on it as on SAC. Plasticity
injection also needs the policy to opt in, so that a saved model reloads its injected heads:
``class InjectableMyPolicy(InjectablePolicy, MyPolicy): pass``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch as th
from torch import nn

Producer = nn.Linear | nn.Conv2d

__all__ = [
    "ActorCriticAdapter",
    "DQNAdapter",
    "DefaultInit",
    "HeadSlot",
    "InitScheme",
    "NetworkPath",
    "NeuronDiscoveryError",
    "OffPolicyAdapter",
    "OrthogonalInit",
    "PolicyAdapter",
    "SACAdapter",
    "Stage",
    "TD3Adapter",
    "UnsupportedPolicyError",
    "adapter_for",
    "is_norm",
    "register_adapter",
    "register_norm",
]


class NeuronDiscoveryError(ValueError):
    """The neuron model could not understand part of a policy."""


# ----------------------------------------------------------------------------------------------------
# Initialisation schemes: what "re-initialise with the layer's own init" means for a producer.
# ----------------------------------------------------------------------------------------------------
class InitScheme:
    """Draws fresh ``(weight, bias)`` tensors for a layer, from the distribution it was initialised with."""

    def fresh(self, layer: Producer, generator: th.Generator | None = None) -> tuple[th.Tensor, th.Tensor | None]:
        raise NotImplementedError


class DefaultInit(InitScheme):
    """PyTorch's default ``reset_parameters`` for Linear and Conv layers (used by SB3's TD3, DDPG and SAC):
    weight ~ kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and bias ~ the same
    uniform."""

    def fresh(self, layer: Producer, generator: th.Generator | None = None) -> tuple[th.Tensor, th.Tensor | None]:
        weight = th.empty_like(layer.weight)
        fan_in = weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        # kaiming_uniform_ with a=sqrt(5) has exactly this bound: gain sqrt(1/3) * sqrt(3 / fan_in).
        weight.uniform_(-bound, bound, generator=generator)
        bias = None
        if layer.bias is not None:
            bias = th.empty_like(layer.bias).uniform_(-bound, bound, generator=generator)
        return weight, bias

    def __repr__(self) -> str:
        return "DefaultInit()"


class OrthogonalInit(InitScheme):
    """Orthogonal weights with a gain and zero bias: SB3's ``BasePolicy.init_weights`` for PPO and A2C
    (gain sqrt(2) for extractor and MLP layers)."""

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def fresh(self, layer: Producer, generator: th.Generator | None = None) -> tuple[th.Tensor, th.Tensor | None]:
        weight = th.empty_like(layer.weight)
        # A whole orthogonal matrix is drawn and rows are taken from it, so reset rows have the marginal
        # distribution of the rows SB3 drew at construction.
        nn.init.orthogonal_(weight, gain=self.gain, generator=generator)
        bias = th.zeros_like(layer.bias) if layer.bias is not None else None
        return weight, bias

    def __repr__(self) -> str:
        return f"OrthogonalInit(gain={self.gain:.4g})"


# ----------------------------------------------------------------------------------------------------
# Paths: sequential data flow through modules, walked to find producer -> ... -> consumer chains.
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Stage:
    """A module on a data-flow path, owned by ``network`` and named ``prefix`` inside it.

    :param column_offset: first input column of this stage's first layer that the previous stage feeds
        (0 in SB3: the critic concatenates ``[features, actions]``).
    """

    network: str
    prefix: str
    module: nn.Module
    init: InitScheme = field(default_factory=DefaultInit)
    column_offset: int = 0


@dataclass(frozen=True)
class NetworkPath:
    """One input-to-output route through a policy, e.g. ``features_extractor -> latent_pi -> mu``."""

    stages: tuple[Stage, ...]


class UnsupportedPolicyError(NeuronDiscoveryError):
    """No adapter is registered for a policy class (nor for any of its bases)."""


# ----------------------------------------------------------------------------------------------------
# Norm layers: modules that normalise each neuron of a group (LayerNorm, BatchNorm, CrossQ's BatchRenorm)
# ----------------------------------------------------------------------------------------------------
_NORM_TYPES: list[type] = [nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm]
# by "module:qualname", so that sb3_contrib is not imported to recognise its BatchRenorm
_NORM_NAMES: set[str] = {"sb3_contrib.common.torch_layers:BatchRenorm"}


def _class_key(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def register_norm(norm: type | str) -> None:
    """Make neuron discovery treat a module class (or ``"module:qualname"``, subclasses included) as a per-neuron
    norm layer: part of the neuron group it follows, like ``nn.LayerNorm``."""
    if isinstance(norm, str):
        _NORM_NAMES.add(norm)
    else:
        _NORM_TYPES.append(norm)


def is_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a norm layer of a neuron group (see :func:`register_norm`)."""
    if isinstance(module, tuple(_NORM_TYPES)):
        return True
    return any(_class_key(cls) in _NORM_NAMES for cls in type(module).__mro__)


# ----------------------------------------------------------------------------------------------------
# Heads
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HeadSlot:
    """A place that holds one module of a network's head part: the child ``key`` of ``container``."""

    container: nn.Module
    key: str

    @property
    def module(self) -> nn.Module:
        return self.container._modules[self.key]

    def set(self, module: nn.Module) -> None:
        # Module.__setattr__ replaces the registered child in place: a Sequential keeps its order and indices
        setattr(self.container, self.key, module)


def _sequential_slots(module: nn.Module) -> list[HeadSlot]:
    slots: list[HeadSlot] = []
    for key, child in module._modules.items():
        slots += _sequential_slots(child) if isinstance(child, nn.Sequential) else [HeadSlot(module, key)]
    return slots


def module_routes(module: nn.Module, where: str) -> list[list[HeadSlot]]:
    """The routes through a network part up to its output layer(s): one for an ``nn.Sequential`` (its children's
    order is its data flow), one per task for a multi-head network (``heads``: each task's output layer), one for a
    network that names its output layer ``head`` (BRO-net)."""
    if isinstance(module, nn.Sequential):
        return [_sequential_slots(module)]
    heads = getattr(module, "heads", None)
    if isinstance(heads, nn.ModuleList):
        return [[HeadSlot(heads, key)] for key in heads._modules]
    if isinstance(getattr(module, "head", None), nn.Module):
        return [[HeadSlot(module, "head")]]
    raise ValueError(
        f"cannot locate the head of {where}: it is a {type(module).__name__}, not an nn.Sequential of layers "
        "(plasticity injection supports SB3's MLP heads, multi-head and BRO-net policies)"
    )


def _named_slots(container: nn.Module, name: str) -> list[list[HeadSlot]]:
    """A named output layer, or each of a per-task list of them (multi-head SAC's ``mu`` / ``log_std``)."""
    module = getattr(container, name)
    if isinstance(module, nn.ModuleList):
        return [[HeadSlot(module, key)] for key in module._modules]
    return [[HeadSlot(container, name)]]


# ----------------------------------------------------------------------------------------------------
# Adapters
# ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def evaluation_mode(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode (norms with running statistics read them and do not update them, dropout is
    off), restoring every submodule's own mode afterwards: measurements must not change the model."""
    modes = [(m, m.training) for m in module.modules()]
    module.train(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


class PolicyAdapter:
    """What sb3_plasticity knows about one family of policies. Adapters are stateless: every method takes the
    policy. Subclass it (override what differs) and register it with :func:`register_adapter`.

    Network names are those of the tags (``plasticity/<network>/...``) and of the methods' ``networks`` argument;
    a target network is named ``<online>_target``.
    """

    #: short name of the family, used in messages
    family: str = "policy"

    # -- structure -------------------------------------------------------------------------------------
    def neuron_paths(self, policy: nn.Module) -> list[NetworkPath]:
        """Data-flow paths through every network (online networks first, then targets) that neuron discovery
        walks. Default: the policy's own ``neuron_paths()``."""
        declared = getattr(policy, "neuron_paths", None)
        if callable(declared):
            return list(declared())
        raise NeuronDiscoveryError(f"{self.family} adapter: {type(policy).__name__} declares no neuron paths")

    def network_modules(self, policy: nn.Module, paths: Sequence[NetworkPath] | None = None) -> dict[str, list[nn.Module]]:
        """For each network, the modules whose parameters make it up (for network-level norms). Default: the
        policy's ``neuron_network_modules()``, else the stages of the paths."""
        declared = getattr(policy, "neuron_network_modules", None)
        modules: dict[str, list[nn.Module]] = dict(declared()) if callable(declared) else {}
        if not modules:
            for path in paths if paths is not None else self.neuron_paths(policy):
                for stage in path.stages:
                    mods = modules.setdefault(stage.network, [])
                    if all(stage.module is not m for m in mods):
                        mods.append(stage.module)
        return modules

    def targets(self, policy: nn.Module) -> dict[str, str]:
        """Online network -> its target twin (only networks that have one)."""
        return {}

    def optimizers(self, policy: nn.Module) -> list[th.optim.Optimizer]:
        """Every optimizer of the policy (the policy's ``optimizer`` and those of its submodules)."""
        found: list[th.optim.Optimizer] = []
        candidates = [getattr(policy, "optimizer", None)] + [getattr(m, "optimizer", None) for m in policy.modules()]
        for opt in candidates:
            if isinstance(opt, th.optim.Optimizer) and all(opt is not o for o in found):
                found.append(opt)
        return found

    def optimizer_of(self, policy: nn.Module, network: str) -> th.optim.Optimizer | None:
        """The optimizer that trains ``network`` (None for target networks)."""
        opt = getattr(getattr(policy, network, None), "optimizer", None)
        return opt if isinstance(opt, th.optim.Optimizer) else None

    # -- acting ----------------------------------------------------------------------------------------
    def actor_network(self, policy: nn.Module) -> str | None:
        """The network whose output is the policy (``actor``, ``policy``, ``q_net``), or None."""
        return "actor" if isinstance(getattr(policy, "actor", None), nn.Module) else None

    def is_stochastic(self, policy: nn.Module) -> bool:
        """Whether the policy has an action distribution (:meth:`distribution`); else :meth:`action` is its policy."""
        return False

    def discrete_actions(self, policy: nn.Module) -> bool:
        """Whether :meth:`action` returns discrete action indices."""
        return False

    def distribution(self, policy: nn.Module, observations: Any) -> Any:
        """The action distribution on a batch, differentiable w.r.t. the policy's parameters: a
        ``torch.distributions`` object, or a list of them (multi-discrete)."""
        raise ValueError(f"{type(policy).__name__} ({self.family}) has a deterministic policy: no action distribution")

    def action(self, policy: nn.Module, observations: Any) -> th.Tensor:
        """The deterministic (greedy) action on a batch."""
        actor = getattr(policy, "actor", None)
        if actor is None:
            raise ValueError(f"{type(policy).__name__} ({self.family}) has no actor network")
        return actor(observations)

    # -- running networks ------------------------------------------------------------------------------
    def run(self, policy: nn.Module, network: str, observations: Any, actions: th.Tensor | None = None) -> list[th.Tensor]:
        """The outputs of ``network`` on a batch (critics read ``actions`` too)."""
        net = getattr(policy, network, None)
        if not isinstance(net, nn.Module):
            raise ValueError(f"{type(policy).__name__} has no network {network!r}")
        out = net(observations, actions) if network.startswith("critic") else net(observations)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def runnable_networks(self, policy: nn.Module) -> list[str]:
        """The networks :meth:`run_all` runs (online first, then targets)."""
        names = ["actor", "critic"]
        names += [self.targets(policy)[n] for n in names if n in self.targets(policy)]
        return [n for n in names if isinstance(getattr(policy, n, None), nn.Module)]

    def run_all(self, policy: nn.Module, observations: Any, actions: th.Tensor | None) -> None:
        """Run every network on a batch (for activation probes; the caller picks grad mode and module mode)."""
        for network in self.runnable_networks(policy):
            self.run(policy, network, observations, actions)

    # -- heads -----------------------------------------------------------------------------------------
    def head_networks(self, policy: nn.Module) -> list[str]:
        """The online networks with an injectable output head (plasticity injection)."""
        return []

    def head_routes(self, policy: nn.Module, network: str) -> list[list[HeadSlot]]:
        """The slots along each input-to-output route of ``network``'s head part (features extractors excluded);
        the head is at the end of each route."""
        raise ValueError(f"{type(policy).__name__} ({self.family}) has no injectable head in {network!r}")

    def max_head_layers(self, policy: nn.Module, network: str) -> int | None:
        """The most layers a head of ``network`` may have (None: no limit beyond the network's depth)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


class OffPolicyAdapter(PolicyAdapter):
    """Actor-critic policies of off-policy algorithms: an ``actor``, a ``critic`` with Q-networks ``qf<i>``
    (``critic.q_networks``) reading ``[features, actions]``, and target copies ``actor_target`` /
    ``critic_target`` where they exist. A features extractor shared by actor and critic is the network
    ``features`` (its target copy ``features_target``)."""

    family = "off-policy actor-critic"
    actor_names = ("actor", "actor_target")
    critic_names = ("critic", "critic_target")

    def targets(self, policy: nn.Module) -> dict[str, str]:
        out = {}
        for online in ("actor", "critic"):
            if isinstance(getattr(policy, f"{online}_target", None), nn.Module):
                out[online] = f"{online}_target"
        if self._shared(policy, "actor_target", "critic_target"):
            out["features"] = "features_target"  # TD3 with a shared extractor (SAC's critic_target has its own copy)
        return out

    @staticmethod
    def _shared(policy: nn.Module, actor_name: str, critic_name: str) -> bool:
        actor, critic = getattr(policy, actor_name, None), getattr(policy, critic_name, None)
        if actor is None or critic is None:
            return False
        fe = getattr(actor, "features_extractor", None)
        return fe is not None and fe is getattr(critic, "features_extractor", None)

    def extractor_network(self, policy: nn.Module, network: str) -> str:
        """The network a features extractor of ``network`` belongs to: ``network`` itself, or ``features`` /
        ``features_target`` when the actor and the critic (or their targets) share it."""
        target = network.endswith("_target")
        pair = ("actor_target", "critic_target") if target else ("actor", "critic")
        if network in pair and self._shared(policy, *pair):
            return "features_target" if target else "features"
        return network

    def actor_stages(self, policy: nn.Module, network: str, actor: nn.Module) -> list[list[tuple[str, nn.Module]]]:
        """The routes ``(name inside the actor, module)`` after the actor's features extractor."""
        raise NotImplementedError

    def paths_from_routes(
        self, policy: nn.Module, routes: Callable[[str, nn.Module], list[list[tuple[str, nn.Module]]]]
    ) -> list[NetworkPath]:
        """One path per route of every network (online first, then targets), each starting at the network's features
        extractor. ``routes(network, module)`` gives the routes after it."""
        paths = []
        for network in (*self.actor_names[:1], *self.critic_names[:1], *self.actor_names[1:], *self.critic_names[1:]):
            net = getattr(policy, network, None)
            if not isinstance(net, nn.Module):
                continue
            fe = Stage(self.extractor_network(policy, network), "features_extractor", net.features_extractor)
            for route in routes(network, net):
                paths.append(NetworkPath((fe, *(Stage(network, name, module) for name, module in route))))
        return paths

    def _routes(self, network: str, net: nn.Module, policy: nn.Module) -> list[list[tuple[str, nn.Module]]]:
        if network in self.critic_names:
            return [[(f"qf{i}", q_net)] for i, q_net in enumerate(net.q_networks)]
        return self.actor_stages(policy, network, net)

    def neuron_paths(self, policy: nn.Module) -> list[NetworkPath]:
        if callable(getattr(policy, "neuron_paths", None)):
            return super().neuron_paths(policy)
        return self.paths_from_routes(policy, lambda network, net: self._routes(network, net, policy))

    def network_modules(self, policy: nn.Module, paths: Sequence[NetworkPath] | None = None) -> dict[str, list[nn.Module]]:
        if callable(getattr(policy, "neuron_network_modules", None)):
            return super().network_modules(policy, paths)
        return self.own_network_modules(policy)

    def own_network_modules(self, policy: nn.Module) -> dict[str, list[nn.Module]]:
        """The modules of each network: the whole ``actor`` / ``critic`` (and targets), or, with a shared extractor,
        their other children and the extractor as the network ``features`` (``features_target``)."""
        modules: dict[str, list[nn.Module]] = {}
        for network in (*self.actor_names, *self.critic_names):
            net = getattr(policy, network, None)
            if not isinstance(net, nn.Module):
                continue
            fe_network = self.extractor_network(policy, network)
            if fe_network == network:
                modules[network] = [net]
            else:
                modules[network] = [m for name, m in net.named_children() if name != "features_extractor"]
                modules[fe_network] = [net.features_extractor]
        return modules

    def runnable_networks(self, policy: nn.Module) -> list[str]:
        names = [*self.actor_names, *self.critic_names]
        return [n for n in names if isinstance(getattr(policy, n, None), nn.Module)]

    def run(self, policy: nn.Module, network: str, observations: Any, actions: th.Tensor | None = None) -> list[th.Tensor]:
        if network in self.critic_names:
            out = getattr(policy, network)(observations, actions)
            return list(out) if isinstance(out, (tuple, list)) else [out]
        if network in self.actor_names and self.is_stochastic(policy):
            mean, log_std, _ = getattr(policy, network).get_action_dist_params(observations)
            return [mean, log_std]
        return super().run(policy, network, observations, actions)

    def head_networks(self, policy: nn.Module) -> list[str]:
        return [n for n in ("actor", "critic") if isinstance(getattr(policy, n, None), nn.Module)]

    def head_routes(self, policy: nn.Module, network: str) -> list[list[HeadSlot]]:
        root = getattr(policy, network)
        if network in self.critic_names:
            # q_networks is a plain list holding the same modules as qf0, qf1, ...: changed in place, both see it
            return [r for i, q in enumerate(root.q_networks) for r in module_routes(q, f"{network}.qf{i}")]
        return self.actor_head_routes(root, network)

    def actor_head_routes(self, actor: nn.Module, network: str) -> list[list[HeadSlot]]:
        return module_routes(actor.mu, f"{network}.mu")


class TD3Adapter(OffPolicyAdapter):
    """TD3 and DDPG (SB3's ``TD3Policy``): a deterministic actor ``features_extractor -> mu`` (``mu`` ends in tanh)."""

    family = "TD3/DDPG"

    def actor_stages(self, policy: nn.Module, network: str, actor: nn.Module) -> list[list[tuple[str, nn.Module]]]:
        return [[("mu", actor.mu)]]


class SACAdapter(OffPolicyAdapter):
    """SAC (SB3's ``SACPolicy``) and the sb3-contrib algorithms with SAC's actor: ``features_extractor ->
    latent_pi -> mu, log_std``, a squashed diagonal Gaussian (with gSDE, ``log_std`` is a parameter, not a layer).
    The distribution is the Gaussian *before* tanh squashing: tanh is a bijection, so KLs between squashed
    Gaussians equal those between the Gaussians, which have closed forms."""

    family = "SAC"

    def actor_stages(self, policy: nn.Module, network: str, actor: nn.Module) -> list[list[tuple[str, nn.Module]]]:
        heads = [("mu", actor.mu)] + ([("log_std", actor.log_std)] if isinstance(actor.log_std, nn.Module) else [])
        return [[("latent_pi", actor.latent_pi), head] for head in heads]

    def is_stochastic(self, policy: nn.Module) -> bool:
        return True

    def distribution(self, policy: nn.Module, observations: Any) -> Any:
        actor = policy.actor
        mean, log_std, kwargs = actor.get_action_dist_params(observations)
        return actor.action_dist.proba_distribution(mean, log_std, **kwargs).distribution

    def action(self, policy: nn.Module, observations: Any) -> th.Tensor:
        return policy.actor(observations, deterministic=True)

    def actor_head_routes(self, actor: nn.Module, network: str) -> list[list[HeadSlot]]:
        # with gSDE, log_std is a Parameter (the exploration matrix's scale), not a layer: it is not a head
        return _named_slots(actor, "mu") + (_named_slots(actor, "log_std") if isinstance(actor.log_std, nn.Module) else [])

    def max_head_layers(self, policy: nn.Module, network: str) -> int | None:
        # mu and log_std both read latent_pi: each is a one-layer head
        return 1 if network in self.actor_names else None


class TQCAdapter(SACAdapter):
    """sb3-contrib's TQC: SAC's actor; the critic's Q-networks ``qf<i>`` output ``n_quantiles`` quantiles each (the
    critic's forward stacks them, ``(batch, n_critics, n_quantiles)``); ``critic_target`` as SAC."""

    family = "TQC"


class CrossQAdapter(SACAdapter):
    """sb3-contrib's CrossQ: SAC's actor and critic with BatchRenorm layers before each Linear layer (after each
    activation), and no target network. A BatchRenorm layer that follows a hidden layer's activation is that neuron
    group's norm (see :func:`is_norm`); the one before the first layer normalises the input. Networks run in eval mode
    for measurements (:func:`evaluation_mode`), so probes read the running statistics and leave them alone."""

    family = "CrossQ"


class ActorCriticAdapter(PolicyAdapter):
    """PPO and A2C (SB3's ``ActorCriticPolicy``, MLP or CNN extractors, shared or separate): networks ``policy``
    (``[pi_features_extractor ->] mlp_extractor.policy_net -> action_net``), ``value`` (``[vf_features_extractor
    ->] mlp_extractor.value_net -> value_net``) and ``features`` (a shared extractor). No targets. With SB3's
    ``ortho_init``, layers re-initialise orthogonally with SB3's gains (sqrt(2) hidden, 0.01 action, 1 value)."""

    family = "PPO/A2C"

    def neuron_paths(self, policy: nn.Module) -> list[NetworkPath]:
        if callable(getattr(policy, "neuron_paths", None)):
            return super().neuron_paths(policy)
        from stable_baselines3.common.torch_layers import MlpExtractor

        mlp = policy.mlp_extractor
        if not isinstance(mlp, MlpExtractor):
            raise NeuronDiscoveryError(
                f"policy.mlp_extractor is a {type(mlp).__name__}, not SB3's MlpExtractor: declare the neurons with "
                "`neuron_paths()` or `neuron_groups()` (see docs/neuron_model.md)"
            )
        ortho = bool(getattr(policy, "ortho_init", False))
        hidden_init: InitScheme = OrthogonalInit(math.sqrt(2)) if ortho else DefaultInit()
        if policy.share_features_extractor:
            pi_fe = vf_fe = Stage("features", "features_extractor", policy.features_extractor, hidden_init)
        else:
            pi_fe = Stage("policy", "pi_features_extractor", policy.pi_features_extractor, hidden_init)
            vf_fe = Stage("value", "vf_features_extractor", policy.vf_features_extractor, hidden_init)
        action_init: InitScheme = OrthogonalInit(0.01) if ortho else DefaultInit()
        value_init: InitScheme = OrthogonalInit(1.0) if ortho else DefaultInit()
        return [
            NetworkPath(
                (
                    pi_fe,
                    Stage("policy", "mlp_extractor.policy_net", mlp.policy_net, hidden_init),
                    Stage("policy", "action_net", policy.action_net, action_init),
                )
            ),
            NetworkPath(
                (
                    vf_fe,
                    Stage("value", "mlp_extractor.value_net", mlp.value_net, hidden_init),
                    Stage("value", "value_net", policy.value_net, value_init),
                )
            ),
        ]

    def network_modules(self, policy: nn.Module, paths: Sequence[NetworkPath] | None = None) -> dict[str, list[nn.Module]]:
        if callable(getattr(policy, "neuron_network_modules", None)) or callable(getattr(policy, "neuron_paths", None)):
            return super().network_modules(policy, paths)
        mlp = policy.mlp_extractor
        modules: dict[str, list[nn.Module]] = {
            "policy": [mlp.policy_net, policy.action_net],
            "value": [mlp.value_net, policy.value_net],
        }
        if policy.share_features_extractor:
            modules["features"] = [policy.features_extractor]
        else:
            modules["policy"].insert(0, policy.pi_features_extractor)
            modules["value"].insert(0, policy.vf_features_extractor)
        return modules

    def optimizer_of(self, policy: nn.Module, network: str) -> th.optim.Optimizer | None:
        return policy.optimizer

    def actor_network(self, policy: nn.Module) -> str | None:
        return "policy"

    def is_stochastic(self, policy: nn.Module) -> bool:
        return True

    def distribution(self, policy: nn.Module, observations: Any) -> Any:
        return policy.get_distribution(observations).distribution

    def action(self, policy: nn.Module, observations: Any) -> th.Tensor:
        return policy.get_distribution(observations).get_actions(deterministic=True)

    def discrete_actions(self, policy: nn.Module) -> bool:
        from gymnasium import spaces

        return isinstance(policy.action_space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary))

    def run(self, policy: nn.Module, network: str, observations: Any, actions: th.Tensor | None = None) -> list[th.Tensor]:
        features = policy.extract_features(observations)
        if not policy.share_features_extractor:
            features = features[0] if network == "policy" else features[1]
        if network == "policy":
            return [policy.action_net(policy.mlp_extractor.forward_actor(features))]
        if network == "value":
            return [policy.value_net(policy.mlp_extractor.forward_critic(features))]
        raise ValueError(f"{type(policy).__name__} has no network {network!r}; it has 'policy' and 'value'")

    def run_all(self, policy: nn.Module, observations: Any, actions: th.Tensor | None) -> None:
        if actions is None:
            for network in ("policy", "value"):
                self.run(policy, network, observations)
        else:
            policy.evaluate_actions(observations, actions)

    def head_networks(self, policy: nn.Module) -> list[str]:
        return ["policy", "value"]

    def head_routes(self, policy: nn.Module, network: str) -> list[list[HeadSlot]]:
        mlp = policy.mlp_extractor
        if network == "policy":
            return [[*module_routes(mlp.policy_net, "mlp_extractor.policy_net")[0], HeadSlot(policy, "action_net")]]
        if network == "value":
            return [[*module_routes(mlp.value_net, "mlp_extractor.value_net")[0], HeadSlot(policy, "value_net")]]
        return super().head_routes(policy, network)


class DQNAdapter(PolicyAdapter):
    """DQN (SB3's ``DQNPolicy``: ``q_net`` / ``q_net_target``) and, with ``net="quantile_net"``, sb3-contrib's
    QR-DQN (``quantile_net`` / ``quantile_net_target``). Each network is ``features_extractor -> <net>`` (an MLP,
    after a NatureCNN for images); its output layer gives the Q-values (QR-DQN: ``n_quantiles`` per action). The
    policy is the greedy action (deterministic, discrete); one optimizer (``policy.optimizer``) trains the online
    network. SB3 builds these networks with PyTorch's default init.

    :param net: attribute name of the online network and of its ``nn.Sequential`` MLP inside it.
    """

    family = "DQN"

    def __init__(self, net: str = "q_net") -> None:
        self.net = net
        self.family = "DQN" if net == "q_net" else "QR-DQN"

    def neuron_paths(self, policy: nn.Module) -> list[NetworkPath]:
        if callable(getattr(policy, "neuron_paths", None)):
            return super().neuron_paths(policy)
        paths = []
        for network in (self.net, f"{self.net}_target"):
            root = getattr(policy, network)
            fe = Stage(network, "features_extractor", root.features_extractor)
            paths.append(NetworkPath((fe, Stage(network, self.net, getattr(root, self.net)))))
        return paths

    def network_modules(self, policy: nn.Module, paths: Sequence[NetworkPath] | None = None) -> dict[str, list[nn.Module]]:
        if callable(getattr(policy, "neuron_network_modules", None)) or callable(getattr(policy, "neuron_paths", None)):
            return super().network_modules(policy, paths)
        return {self.net: [getattr(policy, self.net)], f"{self.net}_target": [getattr(policy, f"{self.net}_target")]}

    def targets(self, policy: nn.Module) -> dict[str, str]:
        return {self.net: f"{self.net}_target"}

    def optimizer_of(self, policy: nn.Module, network: str) -> th.optim.Optimizer | None:
        return policy.optimizer if network == self.net else None

    def actor_network(self, policy: nn.Module) -> str | None:
        return self.net

    def discrete_actions(self, policy: nn.Module) -> bool:
        return True

    def action(self, policy: nn.Module, observations: Any) -> th.Tensor:
        return getattr(policy, self.net)._predict(observations, deterministic=True)

    def run(self, policy: nn.Module, network: str, observations: Any, actions: th.Tensor | None = None) -> list[th.Tensor]:
        if network not in (self.net, f"{self.net}_target"):
            raise ValueError(f"{type(policy).__name__} has no network {network!r}; it has {self.net!r}")
        return [getattr(policy, network)(observations)]

    def runnable_networks(self, policy: nn.Module) -> list[str]:
        return [self.net, f"{self.net}_target"]

    def head_networks(self, policy: nn.Module) -> list[str]:
        return [self.net]

    def head_routes(self, policy: nn.Module, network: str) -> list[list[HeadSlot]]:
        root = getattr(policy, network)
        return module_routes(getattr(root, self.net), f"{network}.{self.net}")


class DrQV2Adapter(OffPolicyAdapter):
    """The package's DrQ-v2 policy: a shared encoder (network ``features``), a deterministic ``actor`` (``trunk ->
    mu``), ``critic`` (``trunk -> qf<i>``) and ``critic_target``; the paths are the policy's ``neuron_paths()``."""

    family = "DrQ-v2"

    def targets(self, policy: nn.Module) -> dict[str, str]:
        return {"critic": "critic_target"}


class DACERAdapter(OffPolicyAdapter):
    """The package's DACER policy: a diffusion actor, run deterministically (its mean action ``x_0``) for probes,
    ``critic`` and ``critic_target``; the paths are the policy's ``neuron_paths()``. No injectable heads."""

    family = "DACER"

    def targets(self, policy: nn.Module) -> dict[str, str]:
        return {"critic": "critic_target"}

    def head_networks(self, policy: nn.Module) -> list[str]:
        return []


class DeclaredPolicyAdapter(OffPolicyAdapter):
    """For a policy of no registered family that declares its neurons (``neuron_paths()`` / ``neuron_groups()``):
    discovery uses the declaration; networks named ``actor`` / ``critic`` (and their ``_target`` twins) are run like
    an off-policy actor-critic's, the actor as a deterministic policy. Register a proper adapter for anything more
    (action distributions, heads)."""

    family = "declared"

    def head_networks(self, policy: nn.Module) -> list[str]:
        return []


# ----------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------
_REGISTRY: dict[type | str, PolicyAdapter] = {}


def register_adapter(policy_cls: type | str, adapter: PolicyAdapter | None = None) -> Any:
    """Register ``adapter`` for ``policy_cls`` and its subclasses (a closer base's adapter wins, as in method lookup).

    ``policy_cls`` may be ``"module:QualName"``, so that a class is matched without importing its module (how the
    sb3-contrib adapters are registered). Without ``adapter``, returns a class decorator for a
    :class:`PolicyAdapter` subclass (registered as an instance built without arguments)::

        @register_adapter(MyPolicy)
        class MyAdapter(TD3Adapter): ...

    :raises TypeError: if ``adapter`` is not a :class:`PolicyAdapter`.
    """
    if adapter is None:

        def decorator(cls: type[PolicyAdapter]) -> type[PolicyAdapter]:
            register_adapter(policy_cls, cls())
            return cls

        return decorator
    if not isinstance(adapter, PolicyAdapter):
        raise TypeError(f"adapter must be a PolicyAdapter instance, got {adapter!r}")
    _REGISTRY[policy_cls] = adapter
    return adapter


def _known_families() -> str:
    names = sorted({(k if isinstance(k, str) else _class_key(k)).split(":")[-1] for k in _REGISTRY})
    return ", ".join(names)


def adapter_for(policy: Any) -> PolicyAdapter:
    """The adapter of a policy (or of an algorithm's ``policy``, or of a policy class): the one registered for the
    nearest class in its MRO. A policy of no registered family that declares ``neuron_paths()`` / ``neuron_groups()`` gets a
    :class:`DeclaredPolicyAdapter`.

    :raises UnsupportedPolicyError: naming the class and how to register an adapter.
    """
    _register_builtins()
    cls = policy if isinstance(policy, type) else type(getattr(policy, "policy", policy))
    for base in cls.__mro__:
        adapter = _REGISTRY.get(base) or _REGISTRY.get(_class_key(base))
        if adapter is not None:
            return adapter
    if callable(getattr(cls, "neuron_paths", None)) or callable(getattr(cls, "neuron_groups", None)):
        return _DECLARED
    raise UnsupportedPolicyError(
        f"{cls.__name__} ({cls.__module__}.{cls.__qualname__}) is not a policy sb3_plasticity understands: no policy "
        f"adapter is registered for it or its base classes (adapters exist for {_known_families()}). Register one "
        "with `sb3_plasticity.adapters.register_adapter(YourPolicy, YourAdapter())`, where YourAdapter subclasses "
        "PolicyAdapter (or TD3Adapter, SACAdapter, ActorCriticAdapter, DQNAdapter), or declare the policy's neurons "
        "with a `neuron_paths()` or `neuron_groups()` method (see docs/neuron_model.md)"
    )


_DECLARED = DeclaredPolicyAdapter()
_BUILTINS_DONE = False


def _register_builtins() -> None:
    # SB3's classes are imported on first use, the contrib and package ones matched by name (no import)
    global _BUILTINS_DONE
    if _BUILTINS_DONE:
        return
    _BUILTINS_DONE = True
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    defaults: dict[type | str, PolicyAdapter] = {
        TD3Policy: TD3Adapter(),
        SACPolicy: SACAdapter(),
        ActorCriticPolicy: ActorCriticAdapter(),
        DQNPolicy: DQNAdapter("q_net"),
        "sb3_contrib.tqc.policies:TQCPolicy": TQCAdapter(),
        "sb3_contrib.crossq.policies:CrossQPolicy": CrossQAdapter(),
        "sb3_contrib.qrdqn.policies:QRDQNPolicy": DQNAdapter("quantile_net"),
        "sb3_plasticity.algos.drqv2_policies:DrQV2Policy": DrQV2Adapter(),
        "sb3_plasticity.algos.dacer_policies:DACERPolicy": DACERAdapter(),
    }
    for key, adapter in defaults.items():
        _REGISTRY.setdefault(key, adapter)  # a user's earlier registration wins
