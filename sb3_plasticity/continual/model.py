"""The classifier of the harness, and its neuron model for the shared metrics and surgery layers."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch as th
from torch import nn

from sb3_plasticity.checks import check_choice, check_positive_int, check_sequence
from sb3_plasticity.neurons import NetworkPath, NeuronModel, Stage, groups_from_paths, layers_from_paths

__all__ = ["ACTIVATIONS", "make_mlp", "module_neuron_model"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}


def make_mlp(in_features: int, hidden: Sequence[int], n_outputs: int, activation: str = "relu") -> nn.Sequential:
    """``flatten -> (fc<i> -> act<i>) * len(hidden) -> out``, PyTorch's default init.

    The hidden layers are named ``fc1``, ``fc2``, ... (the neuron groups' layer names in the logs); ``out`` is the
    classification head (a consumer, never reset).
    """
    check_choice("activation", activation, sorted(ACTIVATIONS))
    hidden = check_sequence("hidden", hidden, check_positive_int)
    layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
    width = in_features
    for i, h in enumerate(hidden, start=1):
        layers += [(f"fc{i}", nn.Linear(width, h)), (f"act{i}", ACTIVATIONS[activation]())]
        width = h
    layers.append(("out", nn.Linear(width, n_outputs)))
    return nn.Sequential(OrderedDict(layers))


def module_neuron_model(module: nn.Module, optimizers: Sequence[th.optim.Optimizer] = (), network: str = "mlp") -> NeuronModel:
    """The :class:`~sb3_plasticity.neurons.NeuronModel` of a plain PyTorch module (no SB3 model needed).

    The module is walked like a one-stage ``neuron_paths()`` declaration (``nn.Sequential`` of Linear/Conv2d, norm,
    activation and flatten layers), so its groups get the same consumers, init scheme (PyTorch's default) and
    optimizer links as an SB3 policy's: the metrics, :class:`~sb3_plasticity.capture.Capture` and
    :func:`~sb3_plasticity.surgery.reset_neurons` work on it unchanged.

    :param network: the network name used in tags (``plasticity/<network>/...``).
    """
    paths = [NetworkPath((Stage(network, "", module),))]
    return NeuronModel(groups_from_paths(paths), {network: [module]}, optimizers, layers_from_paths(paths))
