"""Analysis callbacks that score neurons on the algorithm's own training pass every ``freq`` env steps."""

from __future__ import annotations

from collections.abc import Sequence

from sb3_plasticity.analysis.scores import NeuronScores, scores_from_records
from sb3_plasticity.capture import Capture
from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.schedule import EveryN

__all__ = ["TrainingPassAnalysisCallback"]


class TrainingPassAnalysisCallback(PlasticityCallback):
    """Every ``freq`` env steps, records the next training pass of the selected (trainable) networks with a
    :class:`~sb3_plasticity.capture.Capture` (activations and loss gradients, exactly as ``PlasticityMonitorCallback``
    and ``GraMaResetCallback`` do: the critic-loss pass for critics, the actor-loss pass for actors, PPO's first
    minibatch), then calls :meth:`analyse` with every group's ReDo and GraMa scores and writes the logs at once.
    Nothing changes the model, and no hook stays between events.

    The events are due at the multiples of ``freq`` (:class:`~sb3_plasticity.schedule.EveryN`): the capture is armed
    at the first step at or after each multiple and the analysis runs when the next training pass has completed it (an
    off-policy model before ``learning_starts`` has none: its first analysis follows the first update).

    :param freq: env steps between analyses.
    :param networks: trainable networks to analyse (default: all; target networks get no gradient).
    :param verbose: 0 or 1.
    """

    trainable_only = True

    def __init__(self, freq: int, networks: str | Sequence[str] | None = None, verbose: int = 0) -> None:
        super().__init__(networks, verbose)
        self.event_schedule = EveryN(freq)
        self.freq = self.event_schedule.freq
        self.capture: Capture | None = None
        self.n_events = 0

    def analyse(self, scores: list[NeuronScores]) -> None:
        """Log what the analysis finds (``self.record``); called once per event with the scores of every group."""
        raise NotImplementedError

    def _setup(self) -> None:
        if self.capture is not None:
            self.capture.disarm()
        self.capture = Capture(self.neurons, self.neurons.select(self.network_names, targets=False), gradients=True)
        self.event_schedule.start(self.model.num_timesteps)

    def _on_step(self) -> bool:
        self._poll()
        # an armed capture waits for its training pass: the next event is not taken before that one is done
        if not self.capture.armed and self.event_schedule.poll(self.num_timesteps):
            self.capture.arm()
        return True

    def _on_rollout_start(self) -> None:
        self._poll()  # right after train(): the event is logged at the step its pass ran

    def _poll(self) -> None:
        capture = self.capture
        if capture is None or not capture.armed or not capture.complete:
            return
        capture.disarm()
        self.analyse(scores_from_records(capture.groups, capture.records))
        self.n_events += 1
        self.dump()
        self.save_state()

    def _finish(self) -> None:
        self._poll()
        if self.capture is not None:
            self.capture.disarm()
