"""Shared plumbing of the package's callbacks: neuron discovery at training start, argument checks and logging."""

from __future__ import annotations

from collections.abc import Sequence

from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity.neurons import NeuronModel, discover

__all__ = ["PlasticityCallback", "check_nonnegative", "check_positive_int", "normalize_networks"]

# SB3's stdout/log writers truncate keys to 36 characters and raise when two truncate alike; our per-layer
# keys are long, so they go to TensorBoard, CSV and JSON only.
_EXCLUDE = ("stdout", "log")


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer (env steps), got {value!r}")
    return value


def check_nonnegative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def normalize_networks(networks: str | Sequence[str] | None) -> list[str] | None:
    if networks is None:
        return None
    if isinstance(networks, str):
        return [networks]
    if not all(isinstance(n, str) for n in networks) or len(networks) == 0:
        raise ValueError(f"networks must be None, a network name or a non-empty list of names, got {networks!r}")
    return list(networks)


class PlasticityCallback(BaseCallback):
    """Base class: discovers the model's neurons in ``_init_callback`` (every ``learn()``, so a loaded model's
    new optimizers are found) and checks ``networks`` against them.

    :param networks: names of the networks to act on (``actor``, ``critic``, ``actor_target``,
        ``critic_target``, ``policy``, ``value``, ``features``); None means all of them.
    :param verbose: 0 silent, 1 prints what was discovered.
    """

    def __init__(self, networks: str | Sequence[str] | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.networks = normalize_networks(networks)
        self.neurons: NeuronModel | None = None
        self._ended = False

    def _init_callback(self) -> None:
        self.neurons = discover(self.model)
        if self.networks is not None:
            self.neurons.check_networks(self.networks)
        self._ended = False
        if self.verbose >= 1:
            print(f"{type(self).__name__}: {self.neurons}")
        self._setup()

    def _setup(self) -> None:
        """Subclasses build their state here; ``self.neurons`` is ready."""

    @property
    def network_names(self) -> list[str]:
        assert self.neurons is not None
        return self.networks if self.networks is not None else self.neurons.network_names

    def record(self, key: str, value: float) -> None:
        """Record ``plasticity/<key>`` as a Python float (a 0-dim tensor would become a histogram)."""
        self.logger.record(f"plasticity/{key}", float(value), exclude=_EXCLUDE)

    def dump(self) -> None:
        """Write now, at ``num_timesteps``: off-policy SB3 only dumps every ``log_interval`` episodes."""
        self.logger.dump(self.num_timesteps)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        # rl-zoo calls on_training_end() twice on the first callback of a config: run once per learn().
        if self._ended:
            return
        self._ended = True
        self._finish()

    def _finish(self) -> None:
        """Subclasses flush pending logs and remove hooks here."""
