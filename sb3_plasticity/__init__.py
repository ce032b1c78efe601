"""sb3-plasticity: plasticity-loss methods of deep RL as drop-in parts of Stable-Baselines3.

Everything a user needs is importable from here. The import is light: it needs only the core dependencies and
never imports MuJoCo, dm_control, rl_zoo3 or sb3-contrib. The names that need one of them (:data:`LAZY_NAMES`) load
their module on first access, and raise an ``ImportError`` naming the extra to install when it is missing (see
:mod:`sb3_plasticity.extras`). Importing the package registers its env ids with Gymnasium (entry points are strings,
so no env module is loaded before an env is made), which is what ``--gym-packages sb3_plasticity`` relies on.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from sb3_plasticity.algos import DACER, DACERPolicy, DrQV2, DrQV2Policy, MaskedDrQV2Policy
from sb3_plasticity.algos.drqv2_policies import LayerNormDrQV2Policy
from sb3_plasticity.analysis import IrreversibilityCallback, QuadrantAnalysisCallback, prune_and_evaluate
from sb3_plasticity.analysis.heatmap import GradientHeatmapCallback
from sb3_plasticity.augmentation import (
    DrQExperienceReviewBuffer,
    DrQNStepReplayBuffer,
    DrQReplayBuffer,
    RandomShiftMixin,
    random_shift,
)
from sb3_plasticity.buffers import ExperienceReviewBuffer
from sb3_plasticity.capture import Capture, GroupRecord, probe, sample_batch
from sb3_plasticity.continual import ContinualConfig, run_continual
from sb3_plasticity.envs import (  # importing it registers the env ids with Gymnasium
    CONTINUAL_MUJOCO_ID,
    CYCLE_FRICTION_TASKS,
    DMC_TASKS,
    PhasedEnv,
    cycle_friction_env_id,
    dmc_env_id,
    register_dmc,
    register_envs,
)
from sb3_plasticity.envs.continual import ContinualMuJoCoEnv
from sb3_plasticity.envs.dmc import DMCEnv
from sb3_plasticity.extras import MissingExtraError, missing_modules
from sb3_plasticity.injectable_policies import (
    InjectableActorCriticPolicy,
    InjectableBroNetSACPolicy,
    InjectableBroNetTD3Policy,
    InjectableDQNPolicy,
    InjectableDrQV2Policy,
    InjectableLayerNormActorCriticPolicy,
    InjectableLayerNormDrQV2Policy,
    InjectableLayerNormSACPolicy,
    InjectableLayerNormTD3Policy,
    InjectableMultiHeadSACPolicy,
    InjectableMultiHeadTD3Policy,
    InjectablePolicy,
    InjectableResNetSACPolicy,
    InjectableSACPolicy,
    InjectableTD3Policy,
    NotInjectablePolicyError,
)
from sb3_plasticity.methods import (
    CBPCallback,
    CycleResetDistillCallback,
    GraMaResetCallback,
    InjectedHead,
    InterventionCallback,
    L2InitCallback,
    NECallback,
    NetworkLearningRateCallback,
    NeuronResetCallback,
    NeuroplasticExpansionCallback,
    PhaseEvalCallback,
    PlasticityCallback,
    PlasticityInjectionCallback,
    PlasticityMonitorCallback,
    PolicyProbe,
    ReBornCallback,
    ReDoCallback,
    ResetCallback,
    ShrinkPerturbCallback,
    alpha_dkl,
    inject_heads,
)
from sb3_plasticity.methods.neuroplastic_expansion import MaskedLayerNormTD3Policy
from sb3_plasticity.methods.score_pruning import ScorePruningCallback
from sb3_plasticity.networks import (
    BroNet,
    BroNetBlock,
    BroNetSACPolicy,
    BroNetTD3Policy,
    LayerNormActorCriticPolicy,
    LayerNormSACPolicy,
    LayerNormTD3Policy,
    MultiHeadMlp,
    MultiHeadSACActor,
    MultiHeadSACPolicy,
    MultiHeadTD3Policy,
    TaskHeads,
)
from sb3_plasticity.neurons import (
    Branch,
    Consumer,
    DefaultInit,
    Layer,
    NetworkPath,
    NeuronDiscoveryError,
    NeuronGroup,
    NeuronModel,
    OrthogonalInit,
    Stage,
    discover,
)
from sb3_plasticity.policies import (
    MaskedActorCriticPolicy,
    MaskedMultiHeadSACPolicy,
    MaskedMultiHeadTD3Policy,
    MaskedSACPolicy,
    MaskedTD3Policy,
)
from sb3_plasticity.resnet_policies import ResidualBlock, ResNetMlp, ResNetSACPolicy
from sb3_plasticity.surgery import (
    reinitialize_incoming,
    reset_layer,
    reset_neurons,
    reset_optimizer_state,
    shrink_perturb_layer,
    sync_twin,
    zero_outgoing,
)
from sb3_plasticity.topology import MaskedLinear, WeightClip, cosine_grow_rate, sync_masks
from sb3_plasticity.zoo import PolicyKwargsGuardCallback, zoo_class

__version__ = "0.1.0"

__all__ = [
    "CONTINUAL_MUJOCO_ID",
    "CYCLE_FRICTION_TASKS",
    "DACER",
    "DMC_TASKS",
    "Branch",
    "BroNet",
    "BroNetBlock",
    "BroNetSACPolicy",
    "BroNetTD3Policy",
    "CBPCallback",
    "Capture",
    "Consumer",
    "ContinualConfig",
    "ContinualMuJoCoEnv",
    "CycleResetDistillCallback",
    "DACERPolicy",
    "DMCEnv",
    "DefaultInit",
    "DrQExperienceReviewBuffer",
    "DrQNStepReplayBuffer",
    "DrQReplayBuffer",
    "DrQV2",
    "DrQV2Policy",
    "ExperienceReviewBuffer",
    "GraMaResetCallback",
    "GradientHeatmapCallback",
    "GroupRecord",
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
    "InjectedHead",
    "InterventionCallback",
    "IrreversibilityCallback",
    "L2InitCallback",
    "Layer",
    "LayerNormActorCriticPolicy",
    "LayerNormDrQV2Policy",
    "LayerNormSACPolicy",
    "LayerNormTD3Policy",
    "MaskedActorCriticPolicy",
    "MaskedDrQV2Policy",
    "MaskedLayerNormTD3Policy",
    "MaskedLinear",
    "MaskedMultiHeadSACPolicy",
    "MaskedMultiHeadTD3Policy",
    "MaskedSACPolicy",
    "MaskedTD3Policy",
    "MissingExtraError",
    "MultiHeadMlp",
    "MultiHeadSACActor",
    "MultiHeadSACPolicy",
    "MultiHeadTD3Policy",
    "NECallback",
    "NetworkLearningRateCallback",
    "NetworkPath",
    "NeuronDiscoveryError",
    "NeuronGroup",
    "NeuronModel",
    "NeuronResetCallback",
    "NeuroplasticExpansionCallback",
    "NotInjectablePolicyError",
    "OrthogonalInit",
    "PhaseEvalCallback",
    "PhasedEnv",
    "PlasticityCallback",
    "PlasticityInjectionCallback",
    "PlasticityMonitorCallback",
    "PolicyKwargsGuardCallback",
    "PolicyProbe",
    "QuadrantAnalysisCallback",
    "RandomShiftMixin",
    "ReBornCallback",
    "ReDoCallback",
    "ResNetMlp",
    "ResNetSACPolicy",
    "ResetCallback",
    "ResidualBlock",
    "ScorePruningCallback",
    "ShrinkPerturbCallback",
    "Stage",
    "TaskHeads",
    "WeightClip",
    "__version__",
    "alpha_dkl",
    "cosine_grow_rate",
    "cycle_friction_env_id",
    "discover",
    "dmc_env_id",
    "inject_heads",
    "probe",
    "prune_and_evaluate",
    "random_shift",
    "register_dmc",
    "register_envs",
    "reinitialize_incoming",
    "reset_layer",
    "reset_neurons",
    "reset_optimizer_state",
    "run_continual",
    "sample_batch",
    "shrink_perturb_layer",
    "sync_masks",
    "sync_twin",
    "zero_outgoing",
    "zoo_class",
]

# Names loaded on first access: name -> (module, the extra its module needs, or None when it needs only the core).
LAZY_NAMES: dict[str, tuple[str, str | None]] = {
    # Gymnasium's MuJoCo envs are the base classes, so the module imports MuJoCo
    "CycleFrictionMixin": ("sb3_plasticity.envs.cycle_friction", "mujoco"),
    "make_cycle_friction_env": ("sb3_plasticity.envs.cycle_friction", "mujoco"),
    # masked policies of sb3-contrib's TQC and QR-DQN (and SB3's DQN, in the same module)
    "MaskedTQCPolicy": ("sb3_plasticity.masked_contrib", "contrib"),
    "MaskedQRDQNPolicy": ("sb3_plasticity.masked_contrib", "contrib"),
    "MaskedDQNPolicy": ("sb3_plasticity.masked_contrib", "contrib"),
    # injectable policies of sb3-contrib's TQC, CrossQ and QR-DQN (plasticity injection)
    "InjectableTQCPolicy": ("sb3_plasticity.injectable_contrib", "contrib"),
    "InjectableCrossQPolicy": ("sb3_plasticity.injectable_contrib", "contrib"),
    "InjectableQRDQNPolicy": ("sb3_plasticity.injectable_contrib", "contrib"),
    # policy adapters: core only, loaded lazily to keep the import of this package light
    "PolicyAdapter": ("sb3_plasticity.adapters", None),
    "register_adapter": ("sb3_plasticity.adapters", None),
    "adapter_for": ("sb3_plasticity.adapters", None),
}


def __getattr__(name: str) -> Any:
    """Load a name of :data:`LAZY_NAMES` (PEP 562); a missing extra raises :class:`MissingExtraError` naming it."""
    if name not in LAZY_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, extra = LAZY_NAMES[name]
    try:
        value = getattr(importlib.import_module(module_name), name)  # a module may load its extra in its own getattr
    except ImportError as exc:
        missing = missing_modules(extra) if extra is not None else []
        if missing:
            raise MissingExtraError(extra, f"sb3_plasticity.{name}", missing) from exc
        raise
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    """Every public name, the lazy ones included (whether or not their extra is installed)."""
    return sorted(set(globals()) | set(LAZY_NAMES))


def _loadable(module_name: str, extra: str | None) -> bool:
    """Whether ``module_name`` exists and its extra is installed, found without importing either."""
    if extra is not None and missing_modules(extra):
        return False
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


# ``from sb3_plasticity import *`` takes the eager names and the lazy names that can load here, so it never fails on
# a missing extra; __dir__ and LAZY_NAMES list them all.
__all__ += [name for name, (module, extra) in LAZY_NAMES.items() if _loadable(module, extra)]
