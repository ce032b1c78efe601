"""Layer 6: the methods, one file each, as SB3 callbacks."""

from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.methods.cbp import CBPCallback
from sb3_plasticity.methods.cycle_reset_distill import CycleResetDistillCallback, alpha_dkl
from sb3_plasticity.methods.drift import PolicyProbe
from sb3_plasticity.methods.injection import InjectedHead, PlasticityInjectionCallback, inject_heads
from sb3_plasticity.methods.intervention import InterventionCallback
from sb3_plasticity.methods.l2_init import L2InitCallback
from sb3_plasticity.methods.learning_rates import NetworkLearningRateCallback
from sb3_plasticity.methods.monitor import PlasticityMonitorCallback
from sb3_plasticity.methods.neuron_reset import NeuronResetCallback
from sb3_plasticity.methods.neuroplastic_expansion import NECallback, NeuroplasticExpansionCallback
from sb3_plasticity.methods.phase_eval import PhaseEvalCallback
from sb3_plasticity.methods.reborn import ReBornCallback
from sb3_plasticity.methods.redo import ReDoCallback
from sb3_plasticity.methods.regrama import GraMaResetCallback
from sb3_plasticity.methods.reset import ResetCallback
from sb3_plasticity.methods.shrink_perturb import ShrinkPerturbCallback

__all__ = [
    "CBPCallback",
    "CycleResetDistillCallback",
    "GraMaResetCallback",
    "InjectedHead",
    "InterventionCallback",
    "L2InitCallback",
    "NECallback",
    "NetworkLearningRateCallback",
    "NeuronResetCallback",
    "NeuroplasticExpansionCallback",
    "PhaseEvalCallback",
    "PlasticityCallback",
    "PlasticityInjectionCallback",
    "PlasticityMonitorCallback",
    "PolicyProbe",
    "ReBornCallback",
    "ReDoCallback",
    "ResetCallback",
    "ShrinkPerturbCallback",
    "alpha_dkl",
    "inject_heads",
]
