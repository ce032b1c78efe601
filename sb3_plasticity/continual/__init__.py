"""Supervised continual learning with the package's metrics and resets on a plain PyTorch model.

The GraMa paper's class-incremental CIFAR-100 check (Sec. 4.2, Fig. 5 right): an MLP learns classes added every
``epochs_per_task`` epochs, with no intervention, ReDo resets or ReGraMa resets at every task switch, logging test
accuracy and the GraMa inactive ratio. ``python -m sb3_plasticity.continual --help`` runs it from the command line;
``docs/analysis.md`` describes the protocol and its settings.
"""

from sb3_plasticity.continual.data import CIFAR100_FOLDER, ClassificationData, load_cifar100, synthetic_blobs
from sb3_plasticity.continual.harness import (
    METHODS,
    ContinualClassification,
    ContinualConfig,
    ContinualResult,
    run_continual,
)
from sb3_plasticity.continual.model import make_mlp, module_neuron_model

__all__ = [
    "CIFAR100_FOLDER",
    "METHODS",
    "ClassificationData",
    "ContinualClassification",
    "ContinualConfig",
    "ContinualResult",
    "load_cifar100",
    "make_mlp",
    "module_neuron_model",
    "run_continual",
    "synthetic_blobs",
]
