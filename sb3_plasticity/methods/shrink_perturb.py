"""Shrink & Perturb (Ash & Adams, NeurIPS 2020, "On warm-starting neural network training")."""

from __future__ import annotations

from collections.abc import Sequence

from sb3_plasticity.checks import check_probability, check_range
from sb3_plasticity.methods.intervention import InterventionCallback
from sb3_plasticity.surgery import shrink_perturb_layer

__all__ = ["ShrinkPerturbCallback"]


class ShrinkPerturbCallback(InterventionCallback):
    """Every ``freq`` env steps, ``theta <- shrink * theta + perturb * eps`` for every layer of the selected
    networks, with ``eps`` a fresh draw from the layer's own init (output layers included, norms untouched).
    Target layers get the same transform with the same ``eps``; optimizer state is kept.

    The three papers of this project use S&P as a baseline without giving its settings (GraMa Table 8);
    the defaults here are ours: an 80/20 interpolation towards a fresh initialisation every 10 000 steps.
    ``reset_count`` counts every neuron of the transformed layers.

    :param freq: env steps between applications (default 10 000).
    :param shrink: factor on the current weights, in [0, 1] (default 0.8).
    :param perturb: factor on the fresh draw, >= 0 (default 0.2).
    :param networks: trainable networks (default: all).
    :param dormant_tau: threshold of the logged dormant ratios (default 0.1).
    :param probe_batch_size: observations of the fixed probe batch (default 256).
    :param verbose: 0 or 1.
    """

    method = "shrink_perturb"

    def __init__(
        self,
        freq: int = 10_000,
        shrink: float = 0.8,
        perturb: float = 0.2,
        networks: str | Sequence[str] | None = None,
        dormant_tau: float = 0.1,
        probe_batch_size: int = 256,
        verbose: int = 0,
    ) -> None:
        super().__init__(freq, networks, dormant_tau, probe_batch_size, verbose, freq_name="freq")
        self.shrink = check_probability("shrink", shrink)
        self.perturb = check_range("perturb", perturb, 0.0)

    def intervene(self) -> dict[tuple[str, str], int]:
        counts = {}
        for network in self.network_names:
            for layer in self.neurons.layers(network):
                shrink_perturb_layer(self.neurons, layer, self.shrink, self.perturb)
                counts[(network, layer.name)] = layer.module.weight.shape[0]
        return counts
