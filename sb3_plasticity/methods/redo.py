"""ReDo: recycling dormant neurons (Sokar et al., ICML 2023)."""

from __future__ import annotations

from collections.abc import Sequence

import torch as th

from sb3_plasticity.capture import GroupRecord
from sb3_plasticity.methods.neuron_reset import NeuronResetCallback
from sb3_plasticity.metrics import activity, normalized_scores
from sb3_plasticity.neurons import NeuronGroup

__all__ = ["ReDoCallback"]


class ReDoCallback(NeuronResetCallback):
    """ReDo (Sokar et al. 2023; the baseline of all three papers of this project).

    Every ``reset_freq`` env steps:

    1. sample a training batch (``batch_size`` transitions from the replay buffer; PPO: from the full rollout
       buffer at the end of the rollout; A2C, which has no ``batch_size``: the whole rollout, its own training
       batch) and run the networks on it;
    2. score every hidden neuron ``s_i = E|h_i| / mean_k E|h_k|`` (tau-dormant score, GraMa Eq. 1);
    3. re-initialise the neurons with ``s_i <= tau`` (or, with ``reset_fraction``, the ``floor(reset_fraction *
       n)`` lowest-scoring of each layer's ``n`` neurons, the P3O paper's ReDo baseline, App. A.1): incoming weights
       from the layer's own init, outgoing weights zeroed, their optimizer state fresh, target twins updated.

    Sampling the scoring batch uses the global NumPy RNG, like SB3's own sampling.

    Output layers are never reset. Logs are described in :class:`NeuronResetCallback` (ratio:
    ``dormant_ratio``).

    :param reset_freq: env steps between resets (default 1000, GraMa App. A; ReDo's 1000 gradient steps
        with SB3's default ``train_freq=1, gradient_steps=1``).
    :param tau: dormancy threshold (default 0.1, ReDo's MLP value; GraMa App. A.1 uses 0.02 for BRO-net).
    :param networks: trainable networks to act on (default: all).
    :param max_reset_fraction: cap per layer and event, lowest scores first (default: none).
    :param outgoing: ``"zero"`` (default, ReDo) or ``"keep"``.
    :param probe_batch_size: observations of the fixed output-drift probe (default 256).
    :param verbose: 0 or 1.
    :param reset_fraction: fixed-fraction mode: reset the ``floor(reset_fraction * n)`` lowest-scoring neurons of
        each layer at every event, whatever their score (P3O App. A.1 / Table 3: 0.01 every 50,000 env steps);
        default None: the ``tau`` threshold. ``tau`` then only sets the logged ``dormant_ratio_*``.
    :param log_reset_proportion: also log ``<network>/reset_proportion`` (share of the hidden neurons reset at least
        once so far; P3O Table 4).
    """

    method = "redo"
    ratio = "dormant_ratio"
    scored_on = "batch"

    def __init__(
        self,
        reset_freq: int = 1000,
        tau: float = 0.1,
        networks: str | Sequence[str] | None = None,
        max_reset_fraction: float | None = None,
        outgoing: str = "zero",
        probe_batch_size: int = 256,
        verbose: int = 0,
        reset_fraction: float | None = None,
        log_reset_proportion: bool = False,
    ) -> None:
        super().__init__(
            reset_freq,
            tau,
            networks,
            max_reset_fraction,
            outgoing,
            probe_batch_size,
            verbose,
            reset_fraction=reset_fraction,
            log_reset_proportion=log_reset_proportion,
        )

    def score(self, group: NeuronGroup, record: GroupRecord) -> th.Tensor:
        return normalized_scores(activity(record.activation), group.alive())
