"""sb3-plasticity: plasticity-loss methods of deep RL as drop-in parts of Stable-Baselines3.

Everything a user needs is importable from here.
"""

from sb3_plasticity.augmentation import (
    DrQExperienceReviewBuffer,
    DrQNStepReplayBuffer,
    DrQReplayBuffer,
    RandomShiftMixin,
    random_shift,
)
from sb3_plasticity.buffers import ExperienceReviewBuffer
from sb3_plasticity.capture import Capture, GroupRecord, probe, sample_batch
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
from sb3_plasticity.envs.cycle_friction import CycleFrictionMixin, make_cycle_friction_env
from sb3_plasticity.envs.dmc import DMCEnv
from sb3_plasticity.methods import (
    CBPCallback,
    CycleResetDistillCallback,
    GraMaResetCallback,
    InterventionCallback,
    NECallback,
    NetworkLearningRateCallback,
    NeuronResetCallback,
    NeuroplasticExpansionCallback,
    PlasticityCallback,
    PlasticityMonitorCallback,
    PolicyProbe,
    ReDoCallback,
    ResetCallback,
    ShrinkPerturbCallback,
    alpha_dkl,
)
from sb3_plasticity.neurons import (
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
from sb3_plasticity.policies import MaskedActorCriticPolicy, MaskedSACPolicy, MaskedTD3Policy
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

__version__ = "0.1.0"

__all__ = [
    "CONTINUAL_MUJOCO_ID",
    "CYCLE_FRICTION_TASKS",
    "DMC_TASKS",
    "CBPCallback",
    "Capture",
    "Consumer",
    "ContinualMuJoCoEnv",
    "CycleFrictionMixin",
    "CycleResetDistillCallback",
    "DMCEnv",
    "DefaultInit",
    "DrQExperienceReviewBuffer",
    "DrQNStepReplayBuffer",
    "DrQReplayBuffer",
    "ExperienceReviewBuffer",
    "GraMaResetCallback",
    "GroupRecord",
    "InterventionCallback",
    "Layer",
    "MaskedActorCriticPolicy",
    "MaskedLinear",
    "MaskedSACPolicy",
    "MaskedTD3Policy",
    "NECallback",
    "NetworkLearningRateCallback",
    "NetworkPath",
    "NeuronDiscoveryError",
    "NeuronGroup",
    "NeuronModel",
    "NeuronResetCallback",
    "NeuroplasticExpansionCallback",
    "OrthogonalInit",
    "PhasedEnv",
    "PlasticityCallback",
    "PlasticityMonitorCallback",
    "PolicyProbe",
    "RandomShiftMixin",
    "ReDoCallback",
    "ResetCallback",
    "ShrinkPerturbCallback",
    "Stage",
    "WeightClip",
    "__version__",
    "alpha_dkl",
    "cosine_grow_rate",
    "cycle_friction_env_id",
    "discover",
    "dmc_env_id",
    "make_cycle_friction_env",
    "probe",
    "random_shift",
    "register_dmc",
    "register_envs",
    "reinitialize_incoming",
    "reset_layer",
    "reset_neurons",
    "reset_optimizer_state",
    "sample_batch",
    "shrink_perturb_layer",
    "sync_masks",
    "sync_twin",
    "zero_outgoing",
]
