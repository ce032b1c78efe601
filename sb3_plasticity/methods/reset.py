"""Reset (Nikishin et al., ICML 2022, "The primacy bias in deep RL"): periodic re-initialisation of layers."""

from __future__ import annotations

from collections.abc import Sequence

from sb3_plasticity.methods.intervention import InterventionCallback
from sb3_plasticity.surgery import reset_layer

__all__ = ["ResetCallback"]


class ResetCallback(InterventionCallback):
    """Every ``reset_freq`` env steps, re-initialise whole layers of the selected networks.

    Each layer (Linear/Conv, output layers included, with its norm) is drawn again from its own init, its
    optimizer state is dropped (the tensors start over as fresh parameters, step counts included), and the
    target network's layer of the same name is hard-copied from it, like Nikishin et al.'s new agent. The
    replay buffer is kept. SAC's entropy coefficient and PPO's ``log_std`` are not layers and are not reset.

    :param reset_freq: env steps between resets (default 90 000: the NE paper's Reset-TD3, App. C.2; Nikishin
        et al. reset every 2e5 steps for SAC).
    :param networks: trainable networks to reset (default: all).
    :param layers: ``"all"`` or ``k``: the last ``k`` layers of each network along each path (the NE paper's
        Reset-DrQ resets the last 3 MLP layers, App. C.2).
    :param reset_optimizer: drop the reset layers' optimizer state (default True).
    :param dormant_tau: threshold of the logged dormant ratios (default 0.1).
    :param probe_batch_size: observations of the fixed probe batch (default 256).
    :param verbose: 0 or 1.
    """

    method = "reset"

    def __init__(
        self,
        reset_freq: int = 90_000,
        networks: str | Sequence[str] | None = None,
        layers: str | int = "all",
        reset_optimizer: bool = True,
        dormant_tau: float = 0.1,
        probe_batch_size: int = 256,
        verbose: int = 0,
    ) -> None:
        super().__init__(reset_freq, networks, dormant_tau, probe_batch_size, verbose)
        if layers != "all" and not (isinstance(layers, int) and not isinstance(layers, bool) and layers > 0):
            raise ValueError(f"layers must be 'all' or a positive number of last layers, got {layers!r}")
        self.layers = layers
        self.reset_freq = self.freq
        self.reset_optimizer = bool(reset_optimizer)

    def intervene(self) -> dict[tuple[str, str], int]:
        last = None if self.layers == "all" else self.layers
        return {
            (network, layer.name): reset_layer(self.neurons, layer, optimizer=self.reset_optimizer)
            for network in self.network_names
            for layer in self.neurons.layers(network, last=last)
        }
