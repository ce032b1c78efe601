"""Plasticity injection (Nikishin, Oh, Ostrovski, Lyle, Pascanu, Dabney and Barreto, NeurIPS 2023, "Deep
reinforcement learning with plasticity injection", Sec. 3 and Fig. 2).

At an injection step the head ``h_old`` of a network is frozen and two heads are added: a fresh one ``h_new``,
drawn from the layers' own init, and a frozen copy ``h_copy`` of it. The network's output becomes
``h_old(x) + h_new(x) - h_copy(x)``: the same function at injection time (``h_new = h_copy``), with the
plasticity of a freshly initialised head from then on, and as many trainable head parameters as before.

Mechanics (see ``docs/methods.md``):

- :class:`InjectedHead` takes the head's place *inside* its container (the ``nn.Sequential`` of ``actor.mu`` or
  ``critic.qf<i>``, or the ``action_net`` / ``value_net`` / SAC ``mu`` / ``log_std`` attribute), so SB3's own
  references (``critic.q_networks``, optimizers, aliases) stay valid; the earlier layers of a multi-layer head
  leave ``nn.Identity`` behind, which keeps every other state-dict key unchanged.
- In every optimizer that trained the old head, its parameters are replaced by ``h_new``'s (their optimizer
  state is dropped, so ``h_new`` starts like a fresh parameter); ``h_old`` and ``h_copy`` have
  ``requires_grad=False`` and belong to no optimizer.
- Target networks get the same structure: their old head stays (Polyak keeps moving it towards the frozen
  online one), their ``h_new`` and ``h_copy`` are copies of the online ones, and Polyak averaging, which runs
  over ``parameters()``, keeps them in step.
- The policy's class becomes a subclass that rebuilds the injected structure from its constructor argument
  ``plasticity_injection``; the algorithm's ``policy_class`` and ``policy_kwargs`` are updated to match, so
  ``model.save`` stores it and a plain ``TD3.load`` / ``SAC.load`` / ``PPO.load`` rebuilds the heads before
  loading the parameters.
"""

from __future__ import annotations

import base64
import copy
import importlib
import itertools
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EventCallback
from torch import nn

from sb3_plasticity.adapters import HeadSlot, adapter_for, evaluation_mode
from sb3_plasticity.capture import buffer_ready, sample_batch
from sb3_plasticity.checks import check_int, check_positive_int, check_range
from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.neurons import Branch, DefaultInit, InitScheme, discover

__all__ = [
    "InjectedHead",
    "PlasticityInjectionCallback",
    "head_networks",
    "inject_heads",
    "injectable_policy_class",
    "injected_networks",
]

_LAYERS = (nn.Linear, nn.Conv2d)
# the policy-constructor argument (and ``policy_kwargs`` key) that records the injections
SPEC_KWARG = "plasticity_injection"


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
_Slot = HeadSlot


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


def _target_name(policy: nn.Module, network: str) -> str | None:
    return adapter_for(policy).targets(policy).get(network)


def _paths(policy: nn.Module, network: str) -> list[list[_Slot]]:
    """Slots along each input-to-output route of a network's head part (features extractors excluded)."""
    return adapter_for(policy).head_routes(policy, network)


def _head_range(path: list[_Slot], head_layers: int, where: str) -> tuple[int, int]:
    """Indices of the first and last slot of the head: the last ``head_layers`` Linear/Conv layers of the path
    (with what lies between them), or the ``InjectedHead`` already there."""
    last = max((i for i, s in enumerate(path) if isinstance(s.module, (*_LAYERS, InjectedHead))), default=None)
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
        if isinstance(path[i].module, _LAYERS):
            found, start = found + 1, i
            if found == head_layers:
                return start, last
    raise ValueError(
        f"head_layers={head_layers}: {where} has only {found} Linear/Conv2d layer(s) after its features extractor"
    )


def _check_network(policy: nn.Module, network: str, head_layers: int) -> list[tuple[list[_Slot], int, int]]:
    """The head of every route of ``network`` (and a clear error where it cannot be injected)."""
    limit = adapter_for(policy).max_head_layers(policy, network)
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
    for i, path in enumerate(_paths(policy, network)):
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


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
        p.grad = None


def _detached_copy(module: nn.Module) -> nn.Module:
    clone = copy.deepcopy(module)
    _clear_hooks(clone)
    return clone


@th.no_grad()
def _fresh(template: nn.Module, inits: Sequence[InitScheme]) -> nn.Module:
    """A copy of ``template``'s structure with every layer drawn again from its init scheme."""
    fresh = _detached_copy(template)
    layers = [m for m in fresh.modules() if isinstance(m, _LAYERS)]
    for layer, init in zip(layers, inits, strict=True):
        weight, bias = init.fresh(layer)
        mask = getattr(layer, "mask", None)
        layer.weight.copy_(weight if mask is None else weight * mask.to(weight.dtype))
        if layer.bias is not None and bias is not None:
            layer.bias.copy_(bias)
    for m in fresh.modules():
        if not isinstance(m, _LAYERS) and hasattr(m, "reset_parameters") and any(True for _ in m.parameters(False)):
            m.reset_parameters()  # norms inside a multi-layer head
    for p in fresh.parameters():
        p.requires_grad_(True)
        p.grad = None
    return fresh


def _take_head(path: list[_Slot], start: int, last: int) -> nn.Module:
    """The head's modules as one module (``Sequential`` for several), with Identity left in their earlier slots."""
    modules = [s.module for s in path[start : last + 1]]
    for slot in path[start:last]:
        slot.set(nn.Identity())
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def _init_lookup(policy: nn.Module, network: str) -> Callable[[nn.Module], InitScheme]:
    """Each layer's own init scheme, as neuron discovery knows it (SB3's orthogonal gains for PPO/A2C)."""
    neurons = discover(policy)
    known = {id(layer.module): layer.init for layer in neurons.layers(network)} if network in neurons.networks else {}
    return lambda module: known.get(id(module), DefaultInit())


def _swap_parameters(
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


def inject_heads(model: Any, network: str, head_layers: int = 1) -> int:
    """Inject plasticity into the head of ``network`` (and its target twin) now; returns the trainable parameters
    added. :class:`PlasticityInjectionCallback` calls it at its injection steps.

    Changes the policy in place (see the module docstring) and records the injection in
    ``policy.plasticity_injection``; the policy's class becomes :func:`injectable_policy_class` of it. Given an
    algorithm, its ``policy_class`` and ``policy_kwargs`` are updated too, so ``model.save`` / ``load`` keep it.

    :param model: a TD3/DDPG, SAC, PPO/A2C or DrQ-v2 algorithm, or its policy.
    :param network: ``actor`` or ``critic`` (TD3, DDPG, SAC, DrQ-v2), ``policy`` or ``value`` (PPO, A2C).
    :param head_layers: how many of the last Linear/Conv layers form the head (default 1, the output layer).
    """
    policy = getattr(model, "policy", model)
    if network not in head_networks(policy):
        raise ValueError(f"network={network!r} has no injectable head; choose among {head_networks(policy)!r}")
    check_positive_int("head_layers", head_layers)
    routes = _check_network(policy, network, head_layers)
    target = _target_name(policy, network)
    t_routes = _check_network(policy, target, head_layers) if target is not None else [None] * len(routes)
    init_of = _init_lookup(policy, network)
    old_params: list[nn.Parameter] = []
    new_params: list[nn.Parameter] = []
    for (path, start, last), t_route in zip(routes, t_routes, strict=True):
        current = path[last].module
        if isinstance(current, InjectedHead):
            old, template, inits = current, current.new, current.inits
        else:
            old = _take_head(path, start, last)
            template = old
            inits = tuple(init_of(m) for m in old.modules() if isinstance(m, _LAYERS))
        new = _fresh(template, inits)
        frozen_copy = _detached_copy(new)
        old_params += list(old.parameters())
        _freeze(old)
        _freeze(frozen_copy)
        path[last].set(InjectedHead(old, new, frozen_copy, inits, head_layers))
        new_params += list(new.parameters())
        if t_route is not None:
            t_path, t_start, t_last = t_route
            t_current = t_path[t_last].module
            t_old = t_current if isinstance(t_current, InjectedHead) else _take_head(t_path, t_start, t_last)
            _freeze(t_old)
            # equal to the online heads now; Polyak averaging (over parameters()) keeps them together
            t_path[t_last].set(InjectedHead(t_old, _detached_copy(new), _detached_copy(frozen_copy), inits, head_layers))
    _swap_parameters(policy, network, old_params, new_params)
    spec = dict(getattr(policy, SPEC_KWARG, None) or {})
    spec["injections"] = [*spec.get("injections", []), {"network": network, "head_layers": head_layers}]
    policy.__class__ = injectable_policy_class(type(policy))
    policy.plasticity_injection = spec
    if model is not policy:
        # what model.save stores and load rebuilds the policy from
        model.policy_class = type(policy)
        model.policy_kwargs = {**model.policy_kwargs, SPEC_KWARG: copy.deepcopy(spec)}
    return sum(p.numel() for p in new_params)


def injected_networks(policy: nn.Module) -> dict[str, int]:
    """Injections done so far per network, from ``policy.plasticity_injection``."""
    counts: dict[str, int] = {}
    for entry in (getattr(policy, SPEC_KWARG, None) or {}).get("injections", []):
        counts[entry["network"]] = counts.get(entry["network"], 0) + 1
    return counts


# ----------------------------------------------------------------------------------------------------
# Save / load: a policy class that rebuilds the injected structure from a constructor argument
# ----------------------------------------------------------------------------------------------------
class _InjectionPolicyMixin:
    """Rebuilds the injections recorded in ``plasticity_injection`` after the base policy is built, so that
    ``load`` finds every parameter and optimizer entry of the saved model."""

    plasticity_injection: dict[str, Any]

    def __init__(self, *args: Any, plasticity_injection: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plasticity_injection = {}
        # replayed in their original order: the optimizers' parameter layout then matches the saved one
        for entry in (plasticity_injection or {}).get("injections", []):
            inject_heads(self, entry["network"], int(entry["head_layers"]))  # type: ignore[arg-type]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data[SPEC_KWARG] = copy.deepcopy(self.plasticity_injection)
        return data


_CLASS_PREFIX = "InjectionPolicy_"


def injectable_policy_class(base: type) -> type:
    """The subclass of policy class ``base`` that accepts (and rebuilds) ``plasticity_injection``.

    It lives in this module under a name that encodes ``base``'s import path, so pickles of it (SB3 stores
    ``policy_class`` in the saved zip) are found again in a fresh process through the module's ``__getattr__``.
    """
    if issubclass(base, _InjectionPolicyMixin):
        return base
    key = f"{base.__module__}:{base.__qualname__}"
    name = _CLASS_PREFIX + base64.b32encode(key.encode()).decode().rstrip("=")
    cls = globals().get(name)
    if cls is None:
        # type(base)(...): SB3's policies are ABCs, so the class is built by their metaclass
        cls = type(base)(base.__name__, (_InjectionPolicyMixin, base), {"__module__": __name__, "__qualname__": name})
        globals()[name] = cls
    return cls


def __getattr__(name: str) -> Any:
    # unpickling an injectable policy class in a process that has not created it yet
    if name.startswith(_CLASS_PREFIX):
        encoded = name[len(_CLASS_PREFIX) :]
        module_name, qualname = base64.b32decode(encoded + "=" * (-len(encoded) % 8)).decode().split(":", 1)
        base: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            base = getattr(base, part)
        return injectable_policy_class(base)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------------
# The callback
# ----------------------------------------------------------------------------------------------------
def _injection_step(item: Any) -> int | float:
    """One entry of ``inject_at``: an env step (an integer >= 1; a float such as ``1e6`` that is an integer counts)
    or a fraction of the training run in (0, 1)."""
    if isinstance(item, numbers.Real) and not isinstance(item, numbers.Integral) and float(item).is_integer():
        item = int(item)
    if isinstance(item, numbers.Integral):
        return check_int("inject_at", item, 1)
    return check_range("inject_at", item, 0.0, 1.0, low_open=True, high_open=True)


def _resolve_steps(inject_at: Any) -> list[int | float]:
    items = list(inject_at) if isinstance(inject_at, (list, tuple)) else [inject_at]
    if not items:
        raise ValueError("inject_at must not be empty")
    try:
        return [_injection_step(item) for item in items]
    except ValueError:  # one message for the whole argument: it may be a list
        raise ValueError(
            f"inject_at must be an env step (an integer >= 1), a fraction of the training run in (0, 1), or a list of "
            f"them; got {inject_at!r}"
        ) from None


def _callbacks(root: BaseCallback | None) -> Iterator[BaseCallback]:
    stack = [root] if root is not None else []
    while stack:
        cb = stack.pop()
        yield cb
        if isinstance(cb, CallbackList):
            stack += list(cb.callbacks)
        if isinstance(cb, EventCallback) and cb.callback is not None:
            stack.append(cb.callback)


@th.no_grad()
def _network_outputs(policy: nn.Module, network: str, obs: Any, actions: th.Tensor | None) -> list[th.Tensor]:
    """The outputs of ``network`` on a batch (for the function-preservation check logged at injection)."""
    with evaluation_mode(policy):
        return adapter_for(policy).run(policy, network, obs, actions)


class PlasticityInjectionCallback(PlasticityCallback):
    """Plasticity injection (Nikishin et al., NeurIPS 2023): at each injection step, freeze each network's head
    and add a fresh head and a frozen copy of it, ``h_old(x) + h_new(x) - h_copy(x)`` (Sec. 3, Fig. 2).

    The function is unchanged at injection time; from then on only ``h_new`` and the layers below the head
    are trained. As in the paper (Fig. 2: the encoder keeps learning, the head's parameters ``theta`` are
    frozen) the trunk (features extractor and hidden layers below the head) keeps training, through all three
    heads. The heads of target networks follow (TD3/DDPG's ``actor_target`` and ``critic_target``, SAC's
    ``critic_target``). Each injection happens once per model: the count is kept in ``model.plasticity_state``
    and the structure in the policy, so ``model.save`` / ``TD3.load`` (and SAC, PPO, ...) restore the injected
    model and a resumed ``learn`` does not inject again. Other plasticity callbacks of the same ``learn()`` are
    re-initialised right after an injection (their saved state kept), so they see the new heads.

    What is "the head" (``head_layers=k``): the last ``k`` Linear layers of each route through the network, with
    the activations between them. TD3/DDPG actor: the output layer of ``actor.mu`` (before its Tanh); critics
    (TD3, DDPG, SAC): the output layer of every Q-network (all ``n_critics``); SAC actor: ``mu`` and ``log_std``
    (each its own fresh layer; ``head_layers`` must be 1 there since both read the shared ``latent_pi``; with
    gSDE ``log_std`` is a parameter and stays as it is); PPO/A2C: ``action_net`` (policy) and ``value_net``
    (value), with ``k - 1`` layers of ``mlp_extractor`` for ``k > 1``; DrQ-v2 (:class:`~sb3_plasticity.DrQV2Policy`,
    PI-DrQ): the output layer of ``actor.mu`` and of every Q-network ``critic.qf<i>`` (the target critic follows),
    while the shared encoder and the trunks keep training. The paper's Atari head is the
    fully-connected part of the Q-network (two layers, ``head_layers=2`` on an MLP critic). PPO's ``log_std``
    and SAC's entropy coefficient are parameters, not layers, and keep training.

    Logged at each injection (and dumped at once): ``plasticity/injection/injected`` (injections so far),
    ``plasticity/injection/<network>/injected`` (per network), ``<network>/trainable_parameters`` (of the new
    heads) and ``<network>/output_change``: the largest absolute change of the network's outputs caused by the
    injection (0 up to float rounding), on 256 transitions of the replay buffer (TD3/SAC, once it has data) or on
    the envs' current observations (PPO/A2C).

    :param inject_at: when to inject, in env steps (``num_timesteps``): an integer >= 1 (``1e6`` is accepted), a
        fraction in (0, 1) of the ``learn()`` call's ``total_timesteps`` (of the final step when
        ``reset_num_timesteps=False``), or a list of them for repeated injections (each stacks a new head on the
        previous injected one). No default: the paper injects once, where a learning curve plateaus (it uses
        the intervention to diagnose plasticity loss).
    :param networks: networks to inject into (default: ``actor`` and ``critic`` for TD3/DDPG/SAC, ``policy`` and
        ``value`` for PPO/A2C); target networks follow their online twins and cannot be named.
    :param head_layers: number of last Linear layers that form the head (default 1: the output layer).
    :param verbose: 0 or 1 (prints each injection).
    """

    trainable_only = True

    def __init__(
        self,
        inject_at: int | float | Sequence[int | float],
        networks: str | Sequence[str] | None = None,
        head_layers: int = 1,
        verbose: int = 0,
    ) -> None:
        super().__init__(networks, verbose)
        self.inject_at = _resolve_steps(inject_at)
        self.head_layers = check_positive_int("head_layers", head_layers)
        self.n_injected = 0
        self.steps: list[int] = []

    @property
    def state_key(self) -> str:  # type: ignore[override]
        """``model.plasticity_state["injection"]``, or ``["injection[<network>+...]"]`` when ``networks`` is given."""
        return "injection" if self.networks is None else f"injection[{'+'.join(self.networks)}]"

    @property
    def injection_networks(self) -> list[str]:
        """The networks this callback injects into."""
        return self.networks if self.networks is not None else head_networks(self.model.policy)

    def _setup(self) -> None:
        policy = self.model.policy
        heads = head_networks(policy)
        wrong = [n for n in self.injection_networks if n not in heads]
        if wrong:
            raise ValueError(
                f"networks={self.networks!r}: {wrong!r} have no injectable head; choose among {heads!r} (a shared "
                "features extractor is trunk, it keeps training)"
            )
        for network in self.injection_networks:
            _check_network(policy, network, self.head_layers)
        total = int(getattr(self.model, "_total_timesteps", 0) or 0)
        steps = [int(s) if isinstance(s, int) else max(1, round(s * total)) for s in self.inject_at]
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(
                f"inject_at={self.inject_at!r} gives the injection steps {steps} for total_timesteps={total}: they must "
                "be strictly increasing"
            )
        self.steps = steps

    def _on_step(self) -> bool:
        if self.n_injected < len(self.steps) and self.num_timesteps >= self.steps[self.n_injected]:
            self.inject()
        return True

    def first_event(self) -> tuple[int, str] | None:
        """The next injection step of this ``learn()`` (None once every injection is done)."""
        if self.n_injected >= len(self.steps):
            return None
        return self.steps[self.n_injected], f"injection (inject_at={self.inject_at!r})"

    def inject(self) -> None:
        """Inject now into every selected network, log it, and re-initialise the other plasticity callbacks."""
        policy = self.model.policy
        batch = self._probe_batch()
        before = {n: _network_outputs(policy, n, *batch) for n in self.injection_networks} if batch is not None else {}
        added = {n: inject_heads(self.model, n, self.head_layers) for n in self.injection_networks}
        self.n_injected += 1
        counts = injected_networks(policy)
        self.record("injection/injected", self.n_injected)
        for network, n_params in added.items():
            self.record(f"injection/{network}/injected", counts.get(network, 0))
            self.record(f"injection/{network}/trainable_parameters", n_params)
            if network in before:
                after = _network_outputs(policy, network, *batch)
                change = max(float((a - b).abs().max()) for a, b in zip(after, before[network], strict=True))
                self.record(f"injection/{network}/output_change", change)
        if self.verbose >= 1:
            print(f"{type(self).__name__}: injection {self.n_injected} at step {self.num_timesteps} into {list(added)}")
        self.dump()
        self.save_state()
        self._refresh()

    def _probe_batch(self) -> tuple[Any, th.Tensor | None] | None:
        if buffer_ready(self.model):
            return sample_batch(self.model, 256)
        last_obs = getattr(self.model, "_last_obs", None)
        if getattr(self.model, "rollout_buffer", None) is not None and last_obs is not None:
            # PPO/A2C inject while a rollout is collected: the envs' current observations are the data at hand
            return self.model.policy.obs_to_tensor(last_obs)[0], None
        return None

    def _refresh(self) -> None:
        # Other methods found the neurons at learn() start: their groups would miss the new heads as consumers.
        self.neurons = discover(self.model)
        for cb in _callbacks(self.locals.get("callback")):
            if cb is self or not isinstance(cb, PlasticityCallback) or cb.neurons is None or cb._ended:
                continue
            if getattr(cb, "model", None) is not self.model:
                continue
            cb.save_state()
            cb._on_training_end()
            cb.init_callback(self.model)

    def get_state(self) -> dict[str, Any]:
        return {"n_injected": self.n_injected}

    def set_state(self, state: dict[str, Any]) -> None:
        self.n_injected = int(state.get("n_injected", 0))
