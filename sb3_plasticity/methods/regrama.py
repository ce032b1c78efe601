"""ReGraMa: resetting neurons guided by GraMa, the gradient-magnitude activity metric (GraMa paper, Alg. 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch as th

from sb3_plasticity.capture import GroupRecord
from sb3_plasticity.checks import check_choice
from sb3_plasticity.methods.neuron_reset import NeuronResetCallback
from sb3_plasticity.metrics import activity, normalized_scores
from sb3_plasticity.neurons import NeuronGroup

__all__ = ["GraMaResetCallback"]

SCORES = ("activation_grad", "weight_grad")


class GraMaResetCallback(NeuronResetCallback):
    """ReGraMa (GraMa paper, Sec. 4.2 and Alg. 1): the ReDo pipeline with the GraMa score.

    Every ``reset_freq`` env steps:

    1. record the gradients of the algorithm's next training pass (the critic's TD loss, the actor's policy
       loss, PPO's first minibatch);
    2. score every hidden neuron ``G_i = E|dL/dz_i| / mean_k E|dL/dz_k|`` (GraMa Eq. 2, with ``z`` the
       neuron's pre-activation, see :mod:`sb3_plasticity.capture`);
    3. between that pass's backward and its optimizer step, re-initialise the neurons with ``G_i <= tau`` like
       ReDo and zero their current gradients (see :class:`NeuronResetCallback`).

    The gradient score works whatever the activation (Tanh, Sigmoid, LeakyReLU, SiLU), with LayerNorm and
    with residual blocks: a neuron whose output no longer moves the loss is flagged even when its activation
    is large (GraMa Sec. 4.1), which ReDo's activation score misses.

    :param reset_freq: env steps between resets (default 1000, GraMa App. A; the official code counts
        gradient updates, equal with SB3's default ``train_freq=1, gradient_steps=1``).
    :param tau: threshold (default 0.0, GraMa App. A.3 for MLP SAC; 0.01 for BRO-net, App. A.1).
    :param score: ``"activation_grad"`` (default, the paper) or ``"weight_grad"``: the official code's
        mean ``|dL/dW|`` over each neuron's incoming weights.
    :param networks: trainable networks to act on (default: all; the official code resets the critics only).
    :param max_reset_fraction: cap per layer and event (GraMa App. A.3: 0.05 for Humanoid; default none).
    :param outgoing: ``"zero"`` (default, GraMa Sec. 4.2) or ``"keep"`` (the official code).
    :param probe_batch_size: observations of the fixed output-drift probe (default 256).
    :param verbose: 0 or 1.
    """

    method = "regrama"
    ratio = "grama_inactive_ratio"
    scored_on = "training_pass"

    def __init__(
        self,
        reset_freq: int = 1000,
        tau: float = 0.0,
        score: str = "activation_grad",
        networks: str | Sequence[str] | None = None,
        max_reset_fraction: float | None = None,
        outgoing: str = "zero",
        probe_batch_size: int = 256,
        verbose: int = 0,
    ) -> None:
        self.score_type = check_choice("score", score, SCORES)
        super().__init__(reset_freq, tau, networks, max_reset_fraction, outgoing, probe_batch_size, verbose)

    def score(self, group: NeuronGroup, record: GroupRecord) -> th.Tensor:
        signal = activity(record.grad) if self.score_type == "activation_grad" else record.weight_grad
        return normalized_scores(signal, group.alive())
