"""Score-based pruning during training (GraMa paper, Sec. 4.2 "ReGraMa identifies inactive neurons more effectively
in complex architectures", Fig. 7): the ReDo pipeline, but the flagged neurons are removed for good instead of reset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch as th
from torch import nn

from sb3_plasticity.capture import GroupRecord
from sb3_plasticity.checks import check_choice
from sb3_plasticity.hooks import AFTER_UPDATE, step_hooks
from sb3_plasticity.methods.neuron_reset import NeuronResetCallback
from sb3_plasticity.methods.redo import ReDoCallback
from sb3_plasticity.methods.regrama import GraMaResetCallback
from sb3_plasticity.metrics import normalized_scores
from sb3_plasticity.neurons import NeuronGroup
from sb3_plasticity.surgery import _incoming_entries, _outgoing_entries, reset_optimizer_state, sync_twin

__all__ = ["ScorePruningCallback"]

# score name -> (the method whose score is used, where it is scored, the ratio it logs, GraMa App. A.1's tau)
_SCORES: dict[str, tuple[type[NeuronResetCallback], str, str, float]] = {
    "redo": (ReDoCallback, "batch", "dormant_ratio", 0.02),
    "grama": (GraMaResetCallback, "training_pass", "grama_inactive_ratio", 0.01),
}


class ScorePruningCallback(NeuronResetCallback):
    """Every ``prune_freq`` env steps, score the hidden neurons with ReDo's or GraMa's score and *prune* those at
    or below ``tau``: they are removed for the rest of training (GraMa Fig. 7: "pruning neurons identified as
    inactive by ReGraMa during the training has less impact on the performance").

    Scoring and scheduling are those of :class:`~sb3_plasticity.ReDoCallback` (``score="redo"``: activations on a
    training batch sampled when the event is due) and :class:`~sb3_plasticity.GraMaResetCallback` (``score="grama"``:
    gradients of the algorithm's next training pass, pruned between its backward and its optimizer step); the score
    is the method's own, renormalised over the neurons not pruned yet (a pruned neuron scores 0 and would otherwise
    drag the layer mean down). Pruned neurons are never flagged again.

    Pruning neuron ``i`` of a group zeroes its incoming weights, its bias and its norm's affine entries (so its
    output ``h_i`` is exactly 0 for an activation with ``act(0) = 0``: ReLU, LeakyReLU, Tanh, SiLU, GELU, ELU; for
    others, e.g. Sigmoid, its outgoing weights are zeroed as well), their optimizer state, and the same entries of
    the target twin. An optimizer post-step hook zeroes them again after every step, so neither Adam's momentum nor
    weight decay brings them back and Polyak averaging keeps the target twin at 0. The zeros live in the weights, so
    a saved model evaluates pruned without this callback; the masks are kept in ``model.plasticity_state`` so a
    loaded model trained further with the callback keeps them pruned. (A LayerNorm still counts the pruned
    neuron's constant 0 in its mean and variance: its width cannot change.)

    Logs as :class:`NeuronResetCallback` under ``plasticity/score_pruning/<score>/`` (the method's one name, as its
    class and file; ``plasticity/prune_<score>/`` before issue 12): ``reset_count`` is the neurons pruned at the
    event, ``total_reset_count`` all so far, plus ``<network>/pruned_ratio``: the share of the network's hidden
    neurons pruned so far. The masks are kept in ``model.plasticity_state["score_pruning/<score>"]``
    (``"score_pruning/<score>[<network>+...]"`` with ``networks``); a model saved with the old key
    (``"prune_<score>..."``) resumes.

    :param score: ``"grama"`` (default) or ``"redo"``.
    :param tau: threshold (``<=``); default GraMa App. A.1's: 0.01 for GraMa, 0.02 for ReDo.
    :param prune_freq: env steps between events (default 1000, GraMa App. A.1's reset period).
    :param networks: trainable networks to act on (default: all; target networks follow their twins).
    :param max_prune_fraction: at most this fraction of each layer's remaining neurons is pruned per event, lowest
        scores first (default: no cap).
    :param probe_batch_size: observations of the fixed output-drift probe (default 256).
    :param verbose: 0 or 1.
    """

    def __init__(
        self,
        score: str = "grama",
        tau: float | None = None,
        prune_freq: int = 1000,
        networks: str | Sequence[str] | None = None,
        max_prune_fraction: float | None = None,
        probe_batch_size: int = 256,
        verbose: int = 0,
    ) -> None:
        self.score_name = check_choice("score", score, sorted(_SCORES))
        self._scorer, self.scored_on, self.ratio, default_tau = _SCORES[score]
        self.method = f"score_pruning/{score}"
        self.legacy_methods = (f"prune_{score}",)  # the tag prefix and state key before issue 12
        self.score_type = "activation_grad"  # GraMaResetCallback.score reads it: the paper's GraMa (Eq. 2)
        super().__init__(
            prune_freq, default_tau if tau is None else tau, networks, max_prune_fraction, "zero", probe_batch_size, verbose
        )
        self.prune_freq = self.freq
        self.pruned: dict[str, th.Tensor] = {}  # group key -> bool (neurons,) on CPU
        self._post_handles: list = []
        self._entries: dict[int, list[tuple[nn.Parameter, tuple]]] = {}  # id(optimizer) -> entries kept at 0

    # -- the score: the method's own, over the neurons that are left --------------------------------------------
    def _kept(self, group: NeuronGroup, device: th.device) -> th.Tensor:
        keep = th.ones(group.n_neurons, dtype=th.bool, device=device)
        pruned = self.pruned.get(group.key)
        if pruned is not None:
            keep &= ~pruned.to(device)
        alive = group.alive()
        return keep if alive is None else keep & alive.to(device)

    def score(self, group: NeuronGroup, record: GroupRecord) -> th.Tensor:
        raw = self._scorer.score(self, group, record)
        keep = self._kept(group, raw.device)
        scores = normalized_scores(raw, keep)  # raw / mean over the kept neurons (raw is a / mean over all)
        return scores.masked_fill(~keep, float("inf"))  # pruned neurons are never flagged again

    # -- pruning instead of resetting ----------------------------------------------------------------------------
    def reset_groups(self, groups: Sequence[NeuronGroup], zero_grad: bool = False) -> None:
        policy_side = any(g.network not in ("critic", "value") for g in groups)
        before = self.probe.output() if self.probe is not None and policy_side else None
        for group in groups:
            idx, _ = self.select(group, self.score(group, self.capture.records[group]))
            self._counts[(group.network, group.name)] = self.prune(group, idx, zero_grad=zero_grad)
        if before is not None:
            self._drift += self.probe.drift(before, self.probe.output())
        for network, share in self.pruned_ratios(groups).items():
            self.record(f"{self.method}/{network}/pruned_ratio", share)

    def prune(self, group: NeuronGroup, neurons: th.Tensor | Sequence[int], zero_grad: bool = False) -> int:
        """Prune ``neurons`` of ``group`` now (and keep them pruned while this callback runs); returns how many."""
        idx = th.as_tensor(neurons, dtype=th.long, device=group.producer.weight.device).reshape(-1)
        if idx.numel() == 0:
            return 0
        mask = self.pruned.setdefault(group.key, th.zeros(group.n_neurons, dtype=th.bool))
        mask[idx.cpu()] = True
        self._zero(group, idx, zero_grad)
        self._index_entries()
        return int(idx.numel())

    def pruned_ratios(self, groups: Sequence[NeuronGroup] | None = None) -> dict[str, float]:
        """Share of each network's hidden neurons pruned so far."""
        counts: dict[str, list[int]] = {}
        for g in groups if groups is not None else self.capture.groups:
            mask = self.pruned.get(g.key)
            tot = counts.setdefault(g.network, [0, 0])
            tot[0] += int(mask.sum()) if mask is not None else 0
            tot[1] += g.n_neurons
        return {network: k / max(n, 1) for network, (k, n) in counts.items()}

    @staticmethod
    def _zero_outgoing(group: NeuronGroup) -> bool:
        """Whether a zero pre-activation still gives a non-zero output (Sigmoid, Softplus): then the outgoing
        weights are zeroed too."""
        out = group.output
        if out is group.producer or out is group.norm:
            return False
        try:
            with th.no_grad():
                return bool(out(th.zeros(1, 1, device=group.producer.weight.device)).abs().max() > 0)
        except Exception:  # not elementwise: remove the outgoing weights as well
            return True

    def _group_entries(self, group: NeuronGroup, idx: th.Tensor) -> list[tuple[nn.Parameter, tuple]]:
        entries = _incoming_entries(group, idx)
        if self._zero_outgoing(group):
            entries += _outgoing_entries(group, idx)
        return entries

    @th.no_grad()
    def _zero(self, group: NeuronGroup, idx: th.Tensor, zero_grad: bool) -> None:
        outgoing = self._zero_outgoing(group)
        for param, selector in self._group_entries(group, idx):
            param[selector] = 0.0
            if zero_grad and param.grad is not None:
                param.grad[selector] = 0.0
        reset_optimizer_state(group, idx, incoming=True, outgoing=outgoing, fresh_step=False)
        sync_twin(group, idx, outgoing=outgoing)

    def _index_entries(self) -> None:
        """The pruned entries of every optimizer, for the post-step hook."""
        self._entries = {}
        by_key = {g.key: g for g in self.capture.groups}
        for key, mask in self.pruned.items():
            group = by_key.get(key)
            if group is None or not bool(mask.any()):
                continue
            idx = mask.nonzero().flatten().to(group.producer.weight.device)
            for param, selector in self._group_entries(group, idx):
                for opt in self.neurons.optimizers_of(param):
                    self._entries.setdefault(id(opt), []).append((param, selector))

    @th.no_grad()
    def _after_step(self, optimizer: th.optim.Optimizer, args, kwargs) -> None:
        for param, selector in self._entries.get(id(optimizer), ()):
            param[selector] = 0.0

    # -- hooks and state -------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        super()._setup()
        optimizers = {id(o): o for g in self.capture.groups for o in g.optimizers}
        # AFTER_UPDATE: zero the pruned entries after every other post-step hook (NE's re-masking) has run
        self._post_handles = [step_hooks(opt).add_post(AFTER_UPDATE, self._after_step) for opt in optimizers.values()]
        self._index_entries()

    def _teardown(self) -> None:
        super()._teardown()
        for handle in self._post_handles:
            handle.remove()
        self._post_handles = []

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "pruned": {k: v.clone() for k, v in self.pruned.items()}}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.pruned = {k: v.clone().bool().cpu() for k, v in (state.get("pruned") or {}).items()}
        by_key = {g.key: g for g in self.capture.groups}
        for key, mask in self.pruned.items():
            if key in by_key and bool(mask.any()):
                group = by_key[key]
                self._zero(group, mask.nonzero().flatten().to(group.producer.weight.device), zero_grad=False)
        self._index_entries()
