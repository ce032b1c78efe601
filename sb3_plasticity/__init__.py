"""sb3-plasticity: plasticity-loss methods of deep RL as drop-in parts of Stable-Baselines3.

Everything a user needs is importable from here.
"""

from sb3_plasticity.capture import Capture, GroupRecord, probe, sample_batch
from sb3_plasticity.methods import PlasticityCallback, PlasticityMonitorCallback
from sb3_plasticity.neurons import (
    Consumer,
    DefaultInit,
    NetworkPath,
    NeuronDiscoveryError,
    NeuronGroup,
    NeuronModel,
    OrthogonalInit,
    Stage,
    discover,
)
from sb3_plasticity.surgery import reinitialize_incoming, reset_neurons, reset_optimizer_state, sync_twin, zero_outgoing

__version__ = "0.1.0"

__all__ = [
    "Capture",
    "Consumer",
    "DefaultInit",
    "GroupRecord",
    "NetworkPath",
    "NeuronDiscoveryError",
    "NeuronGroup",
    "NeuronModel",
    "OrthogonalInit",
    "PlasticityCallback",
    "PlasticityMonitorCallback",
    "Stage",
    "__version__",
    "discover",
    "probe",
    "reinitialize_incoming",
    "reset_neurons",
    "reset_optimizer_state",
    "sample_batch",
    "sync_twin",
    "zero_outgoing",
]
