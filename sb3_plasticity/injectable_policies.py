"""Policies that keep plasticity injection's heads through ``save`` / ``load`` (opt-in, like the masked policies).

:class:`~sb3_plasticity.PlasticityInjectionCallback` changes a policy's structure: each injected head becomes an
``old + new - copy`` module (:class:`~sb3_plasticity.InjectedHead`). ``model.save`` stores the policy class and its
constructor arguments, and ``load`` builds the policy from them before loading the parameters, so the class must
rebuild the injected heads from a constructor argument. :class:`InjectablePolicy` is the mixin that does: it takes
``plasticity_injection`` (the injections done, in order) and replays them after the base class has built the policy
and its optimizers; the callback keeps that argument up to date in the algorithm's ``policy_kwargs``.

Opt in by naming an injectable class: ``TD3(InjectableTD3Policy, env)`` (also DDPG), ``SAC(InjectableSACPolicy,
env)``, ``PPO(InjectableActorCriticPolicy, env)`` (also A2C), ``DQN(InjectableDQNPolicy, env)``,
``DrQV2(InjectableDrQV2Policy, env)``; any other policy class by mixing it in first::

    class InjectableTQCPolicy(InjectablePolicy, TQCPolicy):
        pass

Without opting in: a policy whose class is exactly SB3's ``TD3Policy``, ``SACPolicy``, ``ActorCriticPolicy`` or
``DQNPolicy`` (what ``"MlpPolicy"`` gives), or DrQ-v2's ``DrQV2Policy``, becomes the injectable class above at its
first injection, so plain ``"MlpPolicy"`` models save and load as before. Any other class is given a generated
subclass, found again when a saved model is loaded through a module ``__getattr__`` (how every injected policy was
saved before these classes existed; models saved that way still load): this fallback is deprecated and warns
(``FutureWarning``).
"""

from __future__ import annotations

import base64
import copy
import importlib
import warnings
from typing import Any

from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

from sb3_plasticity.algos.drqv2_policies import DrQV2Policy
from sb3_plasticity.injected_heads import SPEC_KWARG
from sb3_plasticity.methods.injection import inject_heads

__all__ = [
    "InjectableActorCriticPolicy",
    "InjectableDQNPolicy",
    "InjectableDrQV2Policy",
    "InjectablePolicy",
    "InjectableSACPolicy",
    "InjectableTD3Policy",
    "injectable_class",
]


class InjectablePolicy:
    """Mixin (first base) for a policy class whose injected heads survive ``save`` / ``load``.

    :param plasticity_injection: the injections to rebuild, ``{"injections": [{"network": ..., "head_layers":
        ...}, ...]}`` in the order they were made (default None: none). Written by the injection, read by ``load``;
        a user does not pass it.
    """

    plasticity_injection: dict[str, Any]

    def __init__(self, *args: Any, plasticity_injection: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.plasticity_injection = {}
        # replayed in their original order: the optimizers' parameter layout then matches the saved one
        for entry in (plasticity_injection or {}).get("injections", []):
            inject_heads(self, entry["network"], int(entry["head_layers"]))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()  # type: ignore[misc]
        data[SPEC_KWARG] = copy.deepcopy(self.plasticity_injection)
        return data


class InjectableTD3Policy(InjectablePolicy, TD3Policy):
    """SB3's ``TD3Policy`` (TD3, DDPG) whose injected heads survive ``save`` / ``load``."""


class InjectableSACPolicy(InjectablePolicy, SACPolicy):
    """SB3's ``SACPolicy`` whose injected heads survive ``save`` / ``load``."""


class InjectableActorCriticPolicy(InjectablePolicy, ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (PPO, A2C) whose injected heads survive ``save`` / ``load``."""


class InjectableDQNPolicy(InjectablePolicy, DQNPolicy):
    """SB3's ``DQNPolicy`` whose injected heads survive ``save`` / ``load``."""


class InjectableDrQV2Policy(InjectablePolicy, DrQV2Policy):
    """:class:`~sb3_plasticity.DrQV2Policy` (PI-DrQ) whose injected heads survive ``save`` / ``load``."""


# SB3's policy classes (what "MlpPolicy" gives) and DrQ-v2's -> their injectable class
_INJECTABLE = {
    TD3Policy: InjectableTD3Policy,
    SACPolicy: InjectableSACPolicy,
    ActorCriticPolicy: InjectableActorCriticPolicy,
    DQNPolicy: InjectableDQNPolicy,
    DrQV2Policy: InjectableDrQV2Policy,
}


def injectable_class(base: type) -> type:
    """The class an injected policy of class ``base`` takes so that ``save`` / ``load`` keep its heads: ``base``
    itself when it opted in (an :class:`InjectablePolicy`), the injectable class above for SB3's own classes, else a
    generated subclass (deprecated: warns)."""
    if issubclass(base, InjectablePolicy):
        return base
    if base in _INJECTABLE:
        return _INJECTABLE[base]
    warnings.warn(
        f"{base.__name__} is not an InjectablePolicy: plasticity injection gives the policy a generated subclass so "
        f"that save/load keep the injected heads (deprecated). Opt in instead: class Injectable{base.__name__}"
        f"(InjectablePolicy, {base.__name__}): pass, and pass it as the policy (sb3_plasticity.InjectablePolicy).",
        FutureWarning,
        stacklevel=4,
    )
    return _generated(base)


# ----------------------------------------------------------------------------------------------------
# Deprecated: generated classes, as every injected policy was saved before the opt-in classes
# ----------------------------------------------------------------------------------------------------
# They live in sb3_plasticity.methods.injection under a name that encodes the base class's import path; that module's
# __getattr__ finds them again when a saved model is loaded in a fresh process.
_LEGACY_MODULE = "sb3_plasticity.methods.injection"
_LEGACY_PREFIX = "InjectionPolicy_"
_GENERATED: dict[str, type] = {}


def _generated(base: type) -> type:
    key = f"{base.__module__}:{base.__qualname__}"
    name = _LEGACY_PREFIX + base64.b32encode(key.encode()).decode().rstrip("=")
    cls = _GENERATED.get(name)
    if cls is None:
        # type(base)(...): SB3's policies are ABCs, so the class is built by their metaclass
        cls = type(base)(base.__name__, (InjectablePolicy, base), {"__module__": _LEGACY_MODULE, "__qualname__": name})
        _GENERATED[name] = cls
    return cls


def legacy_class(name: str) -> type:
    """The class saved under that name (``InjectionPolicy_<base32 of module:qualname>``): the injectable class of SB3's
    own ``base``, else the generated one."""
    encoded = name[len(_LEGACY_PREFIX) :]
    module_name, qualname = base64.b32decode(encoded + "=" * (-len(encoded) % 8)).decode().split(":", 1)
    base: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        base = getattr(base, part)
    return _INJECTABLE.get(base) or _generated(base)
