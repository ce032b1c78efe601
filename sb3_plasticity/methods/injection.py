"""Plasticity injection (Nikishin, Oh, Ostrovski, Lyle, Pascanu, Dabney and Barreto, NeurIPS 2023, "Deep
reinforcement learning with plasticity injection", Sec. 3 and Fig. 2).

At an injection step, for each network (and its target twin):

1. freeze the network's head ``h_old`` (its parameters ``theta``);
2. add a fresh head ``h_new``, drawn from the layers' own init, and a frozen copy ``h_copy`` of it;
3. the network's output becomes ``h_old(x) + h_new(x) - h_copy(x)``: the same function at injection time
   (``h_new = h_copy``), with the plasticity of a freshly initialised head from then on;
4. ``h_new`` takes ``h_old``'s place in the optimizers: as many trainable head parameters as before; the trunk below
   the head (the paper's encoder) keeps training.

:func:`inject_heads` does it now; :class:`PlasticityInjectionCallback` does it at the chosen steps. The structural
parts (the head module, where each network's head is, fresh heads, optimizer entries) are in
:mod:`sb3_plasticity.injected_heads`; ``save`` / ``load`` keep the injected heads through the opt-in policy classes
of :mod:`sb3_plasticity.injectable_policies` (``InjectableTD3Policy``, ... or the ``InjectablePolicy`` mixin); a
policy built from a string name (``"MlpPolicy"``, ...) takes its injectable class at the first injection, any other
class is refused with an error that names the class to pass.
"""

from __future__ import annotations

import copy
import itertools
import numbers
from collections.abc import Iterator, Sequence
from typing import Any

import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EventCallback
from torch import nn

from sb3_plasticity.adapters import adapter_for, evaluation_mode
from sb3_plasticity.capture import buffer_ready, measurement_pass, sample_batch
from sb3_plasticity.checks import check_int, check_positive_int, check_range
from sb3_plasticity.injected_heads import (
    LAYERS,
    SPEC_KWARG,
    InjectedHead,
    detached_copy,
    freeze,
    fresh_head,
    frozen_copy,
    head_networks,
    head_routes,
    injected_networks,
    layer_inits,
    swap_in_optimizers,
    take_head,
)
from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.neurons import discover

__all__ = [
    "InjectedHead",
    "PlasticityInjectionCallback",
    "head_networks",
    "inject_heads",
    "injected_networks",
]


def inject_heads(model: Any, network: str, head_layers: int = 1) -> int:
    """Inject plasticity into the head of ``network`` (and its target twin) now; returns the trainable parameters
    added. :class:`PlasticityInjectionCallback` calls it at its injection steps.

    Changes the policy in place (see the module docstring) and records the injection in
    ``policy.plasticity_injection``. The policy must be an :class:`~sb3_plasticity.InjectablePolicy`, or built from
    a string name such as ``"MlpPolicy"`` (it then takes its injectable class); see
    :func:`~sb3_plasticity.injectable_policies.injectable_class`. Given an algorithm, its ``policy_class`` and
    ``policy_kwargs`` are updated too, so ``model.save`` / ``load`` keep the injected heads.

    :param model: a TD3/DDPG, SAC, PPO/A2C, DQN, TQC, CrossQ, QR-DQN or DrQ-v2 algorithm, or its policy.
    :param network: ``actor`` or ``critic`` (TD3, DDPG, SAC, TQC, CrossQ, DrQ-v2), ``policy`` or ``value`` (PPO,
        A2C), ``q_net`` (DQN), ``quantile_net`` (QR-DQN); :func:`head_networks` lists them.
    :param head_layers: how many of the last Linear/Conv layers form the head (default 1, the output layer).
    :raises NotInjectablePolicyError: before any change, for a policy class that cannot keep injected heads.
    """
    policy = getattr(model, "policy", model)
    if network not in head_networks(policy):
        raise ValueError(f"network={network!r} has no injectable head; choose among {head_networks(policy)!r}")
    injectable = _injectable_class(policy)
    check_positive_int("head_layers", head_layers)
    routes = head_routes(policy, network, head_layers)
    target = adapter_for(policy).targets(policy).get(network)
    target_routes = head_routes(policy, target, head_layers) if target is not None else [None] * len(routes)
    init_of = layer_inits(policy, network)
    old_params: list[nn.Parameter] = []
    new_params: list[nn.Parameter] = []
    for route, target_route in zip(routes, target_routes, strict=True):
        path, _, last = route
        # 1. freeze h_old (after a first injection: the whole InjectedHead, whose h_new was the trained part)
        old = take_head(route)
        if isinstance(old, InjectedHead):
            template, inits = old.new, old.inits
        else:
            template, inits = old, tuple(init_of(m) for m in old.modules() if isinstance(m, LAYERS))
        old_params += list(old.parameters())
        freeze(old)
        # 2. a fresh h_new from the layers' own init, and its frozen copy
        new = fresh_head(template, inits)
        new_copy = frozen_copy(new)
        new_params += list(new.parameters())
        # 3. output = h_old + h_new - h_copy, in the old head's place
        path[last].set(InjectedHead(old, new, new_copy, inits, head_layers))
        if target_route is not None:
            # the target twin: its own h_old stays (Polyak keeps moving it towards the frozen online one); its h_new
            # and h_copy equal the online ones now, and Polyak averaging (over parameters()) keeps them together
            t_path, _, t_last = target_route
            t_old = freeze(take_head(target_route))
            t_path[t_last].set(InjectedHead(t_old, detached_copy(new), detached_copy(new_copy), inits, head_layers))
    # 4. h_new trains in h_old's place
    swap_in_optimizers(policy, network, old_params, new_params)
    _record(model, policy, injectable, network, head_layers)
    return sum(p.numel() for p in new_params)


def _injectable_class(policy: nn.Module) -> type:
    """The class ``policy`` takes at injection (its own when it opted in); raises a clear error if it has none."""
    from sb3_plasticity.injectable_policies import injectable_class  # the policy layer, above the methods

    return injectable_class(type(policy))


def _record(model: Any, policy: nn.Module, injectable: type, network: str, head_layers: int) -> None:
    """Record the injection in the policy (and the algorithm's ``policy_kwargs``), which ``save`` / ``load`` use."""
    spec = dict(getattr(policy, SPEC_KWARG, None) or {})
    spec["injections"] = [*spec.get("injections", []), {"network": network, "head_layers": head_layers}]
    policy.__class__ = injectable
    policy.plasticity_injection = spec
    if model is not policy:
        # what model.save stores and load rebuilds the policy from
        model.policy_class = type(policy)
        model.policy_kwargs = {**model.policy_kwargs, SPEC_KWARG: copy.deepcopy(spec)}


def __getattr__(name: str) -> Any:
    # Only the names of an explicit table (sb3_plasticity.injectable_policies.LEGACY): models saved before the opt-in
    # policy classes stored their policy as a class generated here, InjectionPolicy_<...>, which pickle looks up in
    # this module. Resolved on access because the table's classes sit above this module (and sb3-contrib's are
    # imported only when used).
    if not name.startswith("InjectionPolicy_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from sb3_plasticity.injectable_policies import legacy_class

    return legacy_class(name)


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
    with measurement_pass(), evaluation_mode(policy):
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
    model and a resumed ``learn`` does not inject again. For that the policy class must be able to rebuild the
    injected heads: an :class:`~sb3_plasticity.InjectablePolicy` (``InjectableBroNetTD3Policy``, ...), or a policy
    built from a string name (``"MlpPolicy"``, ...), which takes its injectable class at the first injection; any
    other class is refused at ``learn()`` start (:class:`~sb3_plasticity.NotInjectablePolicyError`, naming the class
    to pass). Other plasticity callbacks of the same ``learn()`` are re-initialised right after an injection (their
    saved state kept), so they see the new heads.

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
        _injectable_class(policy)  # a policy that could not be saved with its injected heads is refused before training
        wrong = [n for n in self.injection_networks if n not in heads]
        if wrong:
            raise ValueError(
                f"networks={self.networks!r}: {wrong!r} have no injectable head; choose among {heads!r} (a shared "
                "features extractor is trunk, it keeps training)"
            )
        for network in self.injection_networks:
            head_routes(policy, network, self.head_layers)
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
