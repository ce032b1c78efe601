"""Reset (Nikishin et al., ICML 2022, "The primacy bias in deep RL"): re-initialisation of layers, periodic or at every
phase (task) switch of a non-stationary training env (NE paper Sec. 4.2, Fig. 7-8)."""

from __future__ import annotations

from collections.abc import Sequence

from sb3_plasticity.checks import check_choice
from sb3_plasticity.methods.intervention import InterventionCallback
from sb3_plasticity.surgery import reset_layer

__all__ = ["ResetCallback"]

_RESET_ON = ("steps", "phase")
_PHASE_FROM = ("mode", "first", "min", "max")


def pick_phase(phases: Sequence[int], phase_from: str) -> int:
    """One phase from the phases of a VecEnv's copies, as ``PhaseEvalCallback`` picks it: ``"mode"`` (the phase
    most copies are in, the lowest on a tie), ``"first"`` (copy 0), ``"min"`` or ``"max"``."""
    phases = [int(p) for p in phases]
    if phase_from == "first":
        return phases[0]
    if phase_from == "min":
        return min(phases)
    if phase_from == "max":
        return max(phases)
    return max(set(phases), key=lambda p: (phases.count(p), -p))


class ResetCallback(InterventionCallback):
    """Every ``reset_freq`` env steps, or at every phase switch of the training env (``reset_on="phase"``),
    re-initialise whole layers of the selected networks.

    Each layer (Linear/Conv, output layers included, with its norm) is drawn again from its own init, its
    optimizer state is dropped (the tensors start over as fresh parameters, step counts included), and the
    target network's layer of the same name is hard-copied from it, like Nikishin et al.'s new agent. The
    replay buffer is kept. SAC's entropy coefficient and PPO's ``log_std`` are not layers and are not reset.

    Phase mode (``reset_on="phase"``, the NE paper's continual-adaptation baseline, Sec. 4.2: "initializing the
    parameters after each task"): after every env step the training env's phase is read through the VecEnv
    (``training_env.get_attr("phase")``, the phase contract of :mod:`sb3_plasticity.envs.base`, as
    ``PhaseEvalCallback`` reads it) and a reset runs at the first step at which it differs from the phase seen
    before, and only then; ``reset_freq`` is ignored. The phase at the start of ``learn()`` is the reference (no
    reset at the start, also when resuming). With several env copies, ``phase_from`` picks the phase that counts.

    :param reset_freq: env steps between resets in ``"steps"`` mode (default 90 000: the NE paper's Reset-TD3,
        App. C.2; Nikishin et al. reset every 2e5 steps for SAC).
    :param networks: trainable networks to reset (default: all).
    :param layers: ``"all"`` or ``k``: the last ``k`` layers of each network along each path (the NE paper's
        Reset-DrQ resets the last 3 MLP layers, App. C.2).
    :param reset_optimizer: drop the reset layers' optimizer state (default True).
    :param reset_on: ``"steps"`` (default: every ``reset_freq`` env steps) or ``"phase"`` (when the training env's
        phase changes; the env must follow the phase contract, checked at training start).
    :param phase_from: with ``reset_on="phase"`` and several env copies (each runs its own schedule): the phase
        that counts, ``"mode"`` (default: the phase most copies are in, the lowest on a tie), ``"first"``
        (copy 0), ``"min"`` or ``"max"``.
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
        reset_on: str = "steps",
        phase_from: str = "mode",
    ) -> None:
        super().__init__(reset_freq, networks, dormant_tau, probe_batch_size, verbose)
        if layers != "all" and not (isinstance(layers, int) and not isinstance(layers, bool) and layers > 0):
            raise ValueError(f"layers must be 'all' or a positive number of last layers, got {layers!r}")
        self.layers = layers
        self.reset_freq = self.freq
        self.reset_optimizer = bool(reset_optimizer)
        self.reset_on = check_choice("reset_on", reset_on, _RESET_ON)
        self.phase_from = check_choice("phase_from", phase_from, _PHASE_FROM)
        self.phase: int | None = None  # phase mode: the training env's phase last seen
        self.event_steps: list[int] = []  # env steps of this object's resets (both modes)

    # -- schedule ------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        super()._setup()
        if self.reset_on == "phase":
            env = self.training_env
            if env is None or not env.has_attr("phase"):
                raise ValueError(
                    "ResetCallback(reset_on='phase') needs a training env that follows the phase contract of "
                    "sb3_plasticity.envs (a `phase` property reached through VecEnv.get_attr)"
                )
            self.phase = self.training_phase()

    def training_phase(self) -> int:
        """The training env's phase (see ``phase_from``)."""
        return pick_phase(self.training_env.get_attr("phase"), self.phase_from)

    def _on_step(self) -> bool:
        if self.reset_on == "steps":
            return super()._on_step()
        phase = self.training_phase()
        if phase != self.phase:
            self.phase = phase
            self.record(f"{self.method}/phase", phase)
            self.run_event()
        return True

    def first_event(self) -> tuple[int, str] | None:
        return super().first_event() if self.reset_on == "steps" else None  # phase switches have no known step

    def run_event(self) -> dict[tuple[str, str], int]:
        self.event_steps.append(self.num_timesteps)
        return super().run_event()

    def intervene(self) -> dict[tuple[str, str], int]:
        last = None if self.layers == "all" else self.layers
        return {
            (network, layer.name): reset_layer(self.neurons, layer, optimizer=self.reset_optimizer)
            for network in self.network_names
            for layer in self.neurons.layers(network, last=last)
        }
