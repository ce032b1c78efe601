"""Algorithms that SB3 does not ship, as SB3 ``OffPolicyAlgorithm`` subclasses: :class:`DrQV2` (DrQ-v2, Yarats et al.
2022) with its policies :class:`DrQV2Policy` and :class:`MaskedDrQV2Policy`; :class:`DACER` (Wang et al. 2024, diffusion
actor-critic with entropy regulator) with :class:`DACERPolicy`.

rl_zoo3 runs them through ``python -m sb3_plasticity.zoo_plugin`` (``--algo drqv2``, ``--algo dacer``; see
:mod:`sb3_plasticity.zoo_plugin`). Importing this package does not import rl_zoo3; when rl_zoo3 is already imported,
the algorithms are added to its ``ALGOS`` table here (:func:`register_if_zoo_loaded`).
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

from sb3_plasticity.algos.dacer import DACER, gmm_entropy
from sb3_plasticity.algos.dacer_policies import DACERActor, DACERCritic, DACERDenoiser, DACERPolicy
from sb3_plasticity.algos.drqv2 import DrQV2, NStepExperienceReviewBuffer, StdSchedule, noisy_action
from sb3_plasticity.algos.drqv2_policies import DrQV2Actor, DrQV2Critic, DrQV2Encoder, DrQV2Policy, MaskedDrQV2Policy

__all__ = [
    "DACER",
    "ZOO_ALGOS",
    "DACERActor",
    "DACERCritic",
    "DACERDenoiser",
    "DACERPolicy",
    "DrQV2",
    "DrQV2Actor",
    "DrQV2Critic",
    "DrQV2Encoder",
    "DrQV2Policy",
    "MaskedDrQV2Policy",
    "NStepExperienceReviewBuffer",
    "StdSchedule",
    "gmm_entropy",
    "noisy_action",
    "register_if_zoo_loaded",
    "register_zoo_algos",
]

# rl_zoo3 ``--algo`` name -> algorithm class
ZOO_ALGOS: dict[str, type] = {"drqv2": DrQV2, "dacer": DACER}


def register_zoo_algos(algos: MutableMapping[str, Any] | None = None) -> MutableMapping[str, Any]:
    """Add the package's algorithms (:data:`ZOO_ALGOS`) to rl_zoo3's ``rl_zoo3.utils.ALGOS`` (or to ``algos``); names
    already there are left alone. Imports rl_zoo3 when ``algos`` is None. Returns the table."""
    if algos is None:
        from rl_zoo3.utils import ALGOS

        algos = ALGOS
    for name, cls in ZOO_ALGOS.items():
        algos.setdefault(name, cls)
    return algos


def register_if_zoo_loaded() -> bool:
    """:func:`register_zoo_algos` when rl_zoo3 is already imported (it is never imported here); returns whether it
    was."""
    algos = getattr(sys.modules.get("rl_zoo3.utils"), "ALGOS", None)
    if not isinstance(algos, MutableMapping):
        return False
    register_zoo_algos(algos)
    return True


register_if_zoo_loaded()
