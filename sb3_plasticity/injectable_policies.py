"""Policies that keep plasticity injection's heads through ``save`` / ``load`` (opt-in, like the masked policies).

:class:`~sb3_plasticity.PlasticityInjectionCallback` changes a policy's structure: each injected head becomes an
``old + new - copy`` module (:class:`~sb3_plasticity.InjectedHead`). ``model.save`` stores the policy class and its
constructor arguments, and ``load`` builds the policy from them before loading the parameters, so the class must
rebuild the injected heads from a constructor argument. :class:`InjectablePolicy` is the mixin that does: it takes
``plasticity_injection`` (the injections done, in order) and replays them after the base class has built the policy
and its optimizers; the injection keeps that argument up to date in the algorithm's ``policy_kwargs``.

Opt in by passing an injectable class as the policy:

- SB3: ``InjectableTD3Policy`` (TD3, DDPG), ``InjectableSACPolicy``, ``InjectableActorCriticPolicy`` (PPO, A2C),
  ``InjectableDQNPolicy``;
- sb3-contrib (:mod:`sb3_plasticity.injectable_contrib`, imported only when used): ``InjectableTQCPolicy``,
  ``InjectableCrossQPolicy``, ``InjectableQRDQNPolicy``;
- this package: ``InjectableLayerNormTD3Policy``, ``InjectableLayerNormSACPolicy``,
  ``InjectableLayerNormActorCriticPolicy``, ``InjectableBroNetTD3Policy``, ``InjectableBroNetSACPolicy``,
  ``InjectableMultiHeadTD3Policy``, ``InjectableMultiHeadSACPolicy``, ``InjectableResNetSACPolicy``,
  ``InjectableDrQV2Policy``, ``InjectableLayerNormDrQV2Policy``;
- any other policy class by mixing it in first, in a module that ``load`` can import::

      class InjectableMyPolicy(InjectablePolicy, MyPolicy):
          pass

A policy built from a string name (``"MlpPolicy"``, ``"CnnPolicy"``, ``"MultiInputPolicy"`` of SB3 and sb3-contrib,
and DrQ-v2's ``"DrQV2Policy"`` / ``"LayerNormDrQV2Policy"``) takes its injectable class at the first injection, so
``TD3("MlpPolicy", env)`` saves and loads injected heads without naming one. SB3's ``CnnPolicy`` and
``MultiInputPolicy`` only change constructor defaults, which ``save`` stores, so they take the injectable class of the
policy they derive from. Any other class that did not opt in is refused when the injection is set up
(:class:`NotInjectablePolicyError`, naming the class to pass or how to write one).
"""

from __future__ import annotations

import base64
import copy
import importlib
from typing import Any

from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy

from sb3_plasticity.algos.drqv2_policies import DrQV2Policy, LayerNormDrQV2Policy
from sb3_plasticity.injected_heads import SPEC_KWARG
from sb3_plasticity.methods.injection import inject_heads
from sb3_plasticity.networks import (
    BroNetSACPolicy,
    BroNetTD3Policy,
    LayerNormActorCriticPolicy,
    LayerNormSACPolicy,
    LayerNormTD3Policy,
    MultiHeadSACPolicy,
    MultiHeadTD3Policy,
)
from sb3_plasticity.resnet_policies import ResNetSACPolicy

__all__ = [
    "InjectableActorCriticPolicy",
    "InjectableBroNetSACPolicy",
    "InjectableBroNetTD3Policy",
    "InjectableDQNPolicy",
    "InjectableDrQV2Policy",
    "InjectableLayerNormActorCriticPolicy",
    "InjectableLayerNormDrQV2Policy",
    "InjectableLayerNormSACPolicy",
    "InjectableLayerNormTD3Policy",
    "InjectableMultiHeadSACPolicy",
    "InjectableMultiHeadTD3Policy",
    "InjectablePolicy",
    "InjectableResNetSACPolicy",
    "InjectableSACPolicy",
    "InjectableTD3Policy",
    "NotInjectablePolicyError",
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


class NotInjectablePolicyError(ValueError):
    """Plasticity injection was asked of a policy whose class cannot rebuild injected heads when loaded (it is not an
    :class:`InjectablePolicy`); the message names the class to pass instead, or how to write one."""


# ----------------------------------------------------------------------------------------------------
# SB3's policies
# ----------------------------------------------------------------------------------------------------
class InjectableTD3Policy(InjectablePolicy, TD3Policy):
    """SB3's ``TD3Policy`` (TD3, DDPG) whose injected heads survive ``save`` / ``load``."""


class InjectableSACPolicy(InjectablePolicy, SACPolicy):
    """SB3's ``SACPolicy`` whose injected heads survive ``save`` / ``load``."""


class InjectableActorCriticPolicy(InjectablePolicy, ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (PPO, A2C) whose injected heads survive ``save`` / ``load``."""


class InjectableDQNPolicy(InjectablePolicy, DQNPolicy):
    """SB3's ``DQNPolicy`` whose injected heads survive ``save`` / ``load``."""


# ----------------------------------------------------------------------------------------------------
# This package's policies
# ----------------------------------------------------------------------------------------------------
class InjectableLayerNormTD3Policy(InjectablePolicy, LayerNormTD3Policy):
    """:class:`~sb3_plasticity.LayerNormTD3Policy` (TD3, DDPG) whose injected heads survive ``save`` / ``load``."""


class InjectableLayerNormSACPolicy(InjectablePolicy, LayerNormSACPolicy):
    """:class:`~sb3_plasticity.LayerNormSACPolicy` whose injected heads survive ``save`` / ``load``."""


class InjectableLayerNormActorCriticPolicy(InjectablePolicy, LayerNormActorCriticPolicy):
    """:class:`~sb3_plasticity.LayerNormActorCriticPolicy` (PPO, A2C) whose injected heads survive ``save`` /
    ``load``."""


class InjectableBroNetTD3Policy(InjectablePolicy, BroNetTD3Policy):
    """:class:`~sb3_plasticity.BroNetTD3Policy` (TD3, DDPG; head: each network's output layer ``head``) whose
    injected heads survive ``save`` / ``load``."""


class InjectableBroNetSACPolicy(InjectablePolicy, BroNetSACPolicy):
    """:class:`~sb3_plasticity.BroNetSACPolicy` whose injected heads survive ``save`` / ``load``."""


class InjectableMultiHeadTD3Policy(InjectablePolicy, MultiHeadTD3Policy):
    """:class:`~sb3_plasticity.MultiHeadTD3Policy` (every task's output layer is a head) whose injected heads
    survive ``save`` / ``load``."""


class InjectableMultiHeadSACPolicy(InjectablePolicy, MultiHeadSACPolicy):
    """:class:`~sb3_plasticity.MultiHeadSACPolicy` whose injected heads survive ``save`` / ``load``."""


class InjectableResNetSACPolicy(InjectablePolicy, ResNetSACPolicy):
    """:class:`~sb3_plasticity.ResNetSACPolicy` whose injected heads survive ``save`` / ``load``."""


class InjectableDrQV2Policy(InjectablePolicy, DrQV2Policy):
    """:class:`~sb3_plasticity.DrQV2Policy` (PI-DrQ) whose injected heads survive ``save`` / ``load``."""


class InjectableLayerNormDrQV2Policy(InjectablePolicy, LayerNormDrQV2Policy):
    """``LayerNormDrQV2Policy`` whose injected heads survive ``save`` / ``load``."""


# ----------------------------------------------------------------------------------------------------
# Which injectable class a policy class takes
# ----------------------------------------------------------------------------------------------------
_HERE = __name__
_CONTRIB = "sb3_plasticity.injectable_contrib"


def _key(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _each(module: str, names: tuple[str, ...], injectable: str) -> dict[str, str]:
    return {f"{module}:{name}": injectable for name in names}


_CNN_MULTI = ("CnnPolicy", "MultiInputPolicy")
# Classes an algorithm builds from a string policy name -> their injectable class, as "module:qualname" (so that
# sb3_contrib is imported only when one of its policies is injected). They switch at the first injection.
AUTOMATIC: dict[str, str] = {
    **_each("stable_baselines3.td3.policies", ("TD3Policy", *_CNN_MULTI), f"{_HERE}:InjectableTD3Policy"),
    **_each("stable_baselines3.sac.policies", ("SACPolicy", *_CNN_MULTI), f"{_HERE}:InjectableSACPolicy"),
    **_each(
        "stable_baselines3.common.policies",
        ("ActorCriticPolicy", "ActorCriticCnnPolicy", "MultiInputActorCriticPolicy"),
        f"{_HERE}:InjectableActorCriticPolicy",
    ),
    **_each("stable_baselines3.dqn.policies", ("DQNPolicy", *_CNN_MULTI), f"{_HERE}:InjectableDQNPolicy"),
    **_each("sb3_contrib.tqc.policies", ("TQCPolicy", *_CNN_MULTI), f"{_CONTRIB}:InjectableTQCPolicy"),
    **_each("sb3_contrib.crossq.policies", ("CrossQPolicy",), f"{_CONTRIB}:InjectableCrossQPolicy"),
    **_each("sb3_contrib.qrdqn.policies", ("QRDQNPolicy", *_CNN_MULTI), f"{_CONTRIB}:InjectableQRDQNPolicy"),
    _key(DrQV2Policy): f"{_HERE}:InjectableDrQV2Policy",
    _key(LayerNormDrQV2Policy): f"{_HERE}:InjectableLayerNormDrQV2Policy",
}

# Classes a user names -> the injectable class to name instead (they do not switch: the user opts in).
NAMED: dict[str, str] = {
    _key(base): f"{_HERE}:Injectable{base.__name__}"
    for base in (
        LayerNormTD3Policy,
        LayerNormSACPolicy,
        LayerNormActorCriticPolicy,
        BroNetTD3Policy,
        BroNetSACPolicy,
        MultiHeadTD3Policy,
        MultiHeadSACPolicy,
        ResNetSACPolicy,
    )
}


def _resolve(path: str) -> type:
    module, qualname = path.split(":")
    return getattr(importlib.import_module(module), qualname)


def injectable_class(base: type) -> type:
    """The class an injected policy of class ``base`` takes so that ``save`` / ``load`` keep its heads: ``base``
    itself when it opted in (an :class:`InjectablePolicy`), or the injectable class of a policy built from a string
    name (:data:`AUTOMATIC`).

    :raises NotInjectablePolicyError: for any other class, naming the injectable class to pass instead (or, when
        this package has none, how to write one).
    """
    if issubclass(base, InjectablePolicy):
        return base
    key = _key(base)
    if key in AUTOMATIC:
        return _resolve(AUTOMATIC[key])
    where = f"{base.__name__} ({base.__module__}.{base.__qualname__})"
    why = (
        f"plasticity injection changes the structure of the policy, and {where} cannot rebuild its injected heads "
        "when a saved model is loaded: it is not an InjectablePolicy."
    )
    if key in NAMED:
        name = NAMED[key].split(":")[1]
        raise NotInjectablePolicyError(f"{why} Pass sb3_plasticity.{name} as the policy instead of {base.__name__}.")
    raise NotInjectablePolicyError(
        f"{why} Define `class Injectable{base.__name__}(sb3_plasticity.InjectablePolicy, {base.__name__}): pass` (the "
        "mixin first, at the top level of a module that load can import) and pass it as the policy."
    )


# ----------------------------------------------------------------------------------------------------
# Models saved before the opt-in classes
# ----------------------------------------------------------------------------------------------------
# Injected policies used to be saved with a class generated at injection time, stored as
# sb3_plasticity.methods.injection.InjectionPolicy_<base32 of the base class's "module:qualname">; that module's
# __getattr__ looks the name up in this table (explicit: every class that generated one is listed) so that those
# models still load, as the injectable class of their base.
LEGACY_PREFIX = "InjectionPolicy_"


def legacy_name(base_key: str) -> str:
    """The name a generated class of the base class ``"module:qualname"`` was saved under."""
    return LEGACY_PREFIX + base64.b32encode(base_key.encode()).decode().rstrip("=")


LEGACY: dict[str, str] = {legacy_name(base): injectable for base, injectable in {**AUTOMATIC, **NAMED}.items()}


def legacy_class(name: str) -> type:
    """The injectable class that replaces the generated class saved under ``name`` (see :data:`LEGACY`).

    :raises AttributeError: for a name not in the table (a generated class of a user's own policy class), saying how
        to load such a model.
    """
    if name in LEGACY:
        return _resolve(LEGACY[name])
    encoded = name[len(LEGACY_PREFIX) :]
    try:
        base = base64.b32decode(encoded + "=" * (-len(encoded) % 8)).decode()
    except ValueError:
        base = "an unknown class"
    raise AttributeError(
        f"module 'sb3_plasticity.methods.injection' has no attribute {name!r}: a model whose policy ({base}) was "
        "injected and saved with a generated class, which no longer exists. Load it with the injectable class of that "
        "policy: Algo.load(path, custom_objects={'policy_class': InjectableMyPolicy}), where "
        "`class InjectableMyPolicy(sb3_plasticity.InjectablePolicy, MyPolicy): pass`."
    )
