"""Quadrant analysis (GraMa paper, Sec. 4.1 "Motivating example", Fig. 3): which kinds of neurons does ReDo reset?

"We categorized neurons into four quadrants based on their expressive capacity (measured by activation magnitude)
and learning capacity (measured by gradient magnitude) [...] Neurons are ranked according to these two criteria, and
we select the top 25% of neurons in each ranking" - Fig. 3 then shows "the proportion of resetting 4 neuron types
during the same reset step". A neuron is *high* in a ranking when it is among the top ``top`` fraction of it, *low*
otherwise; the four quadrants are named by both:

============================  =================================================================================
``high_act_high_grad``        expressive and learning (the paper's white)
``high_act_low_grad``         expressive but not learning: low learning capacity that ReDo cannot see (red)
``low_act_high_grad``         learning but not expressive at the moment: what ReDo wrongly resets (dark blue)
``low_act_low_grad``          neither
============================  =================================================================================

:func:`quadrant_analysis` computes the share of each quadrant among the neurons ReDo would reset (activation score
``s_i <= tau``) and among those ReGraMa would reset (``G_i <= grama_tau``); :class:`QuadrantAnalysisCallback` runs it
during ``learn()``. See ``docs/analysis.md`` for the choices the paper leaves open.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch as th

from sb3_plasticity.analysis.base import TrainingPassAnalysisCallback
from sb3_plasticity.analysis.scores import NeuronScores, network_scores
from sb3_plasticity.checks import check_fraction, check_nonnegative, check_positive_int

__all__ = [
    "QUADRANTS",
    "QuadrantAnalysisCallback",
    "QuadrantReport",
    "quadrant_analysis",
    "quadrant_labels",
    "quadrant_shares",
    "top_mask",
]

QUADRANTS = ("high_act_high_grad", "high_act_low_grad", "low_act_high_grad", "low_act_low_grad")


def top_mask(scores: th.Tensor, top: float = 0.25, candidates: th.Tensor | None = None) -> th.Tensor:
    """Bool mask of the ``floor(top * n)`` highest scores among the ``n`` candidates (default: all), ties broken by
    index; a score of 0 is never high (a neuron with no activation, or no gradient, is not "top")."""
    candidates = th.ones(scores.numel(), dtype=th.bool) if candidates is None else candidates.bool().cpu()
    scores = scores.detach().cpu().reshape(-1)
    idx = candidates.nonzero().flatten()
    k = math.floor(top * idx.numel() + 1e-9)
    picked = idx[th.argsort(-scores[idx], stable=True)[:k]]
    mask = th.zeros(scores.numel(), dtype=th.bool)
    mask[picked] = True
    return mask & (scores > 0)


def quadrant_labels(
    activation: th.Tensor, gradient: th.Tensor, top: float = 0.25, alive: th.Tensor | None = None
) -> th.Tensor:
    """Quadrant index (into :data:`QUADRANTS`) of every neuron, ``-1`` for neurons that do not exist (``alive``)."""
    alive = th.ones(activation.numel(), dtype=th.bool) if alive is None else alive.bool().cpu()
    high_act = top_mask(activation, top, alive)
    high_grad = top_mask(gradient, top, alive)
    labels = th.where(high_act, th.where(high_grad, 0, 1), th.where(high_grad, 2, 3))
    return th.where(alive, labels, th.full_like(labels, -1))


def quadrant_shares(labels: th.Tensor, selected: th.Tensor) -> dict[str, float] | None:
    """Share of each quadrant among the ``selected`` neurons (bool mask), or None when none is selected."""
    chosen = labels[selected.bool() & (labels >= 0)]
    if chosen.numel() == 0:
        return None
    return {name: float((chosen == i).float().mean()) for i, name in enumerate(QUADRANTS)}


@dataclass
class QuadrantReport:
    """The quadrant analysis of one network (or one layer with ``per_layer``).

    :param labels: quadrant index per neuron, by group key (``-1``: not alive).
    :param redo_flagged: ReDo's reset set (``s_i <= tau``), by group key.
    :param grama_flagged: ReGraMa's reset set (``G_i <= grama_tau``), by group key.
    :param redo_shares: share of each quadrant among the ReDo-flagged neurons (Fig. 3), None if none is flagged.
    :param grama_shares: the same among the GraMa-flagged neurons.
    :param all_shares: share of each quadrant among all neurons.
    """

    network: str
    n_neurons: int
    labels: dict[str, th.Tensor] = field(default_factory=dict)
    redo_flagged: dict[str, th.Tensor] = field(default_factory=dict)
    grama_flagged: dict[str, th.Tensor] = field(default_factory=dict)
    redo_shares: dict[str, float] | None = None
    grama_shares: dict[str, float] | None = None
    all_shares: dict[str, float] | None = None

    @property
    def redo_ratio(self) -> float:
        return sum(int(m.sum()) for m in self.redo_flagged.values()) / max(self.n_neurons, 1)

    @property
    def grama_ratio(self) -> float:
        return sum(int(m.sum()) for m in self.grama_flagged.values()) / max(self.n_neurons, 1)

    @property
    def overlap(self) -> float | None:
        """Share of the ReDo-flagged neurons that GraMa flags too (None if ReDo flags none)."""
        n = sum(int(m.sum()) for m in self.redo_flagged.values())
        both = sum(int((m & self.grama_flagged[k]).sum()) for k, m in self.redo_flagged.items())
        return both / n if n else None


def _report(name: str, scores: Sequence[NeuronScores], tau: float, grama_tau: float, top: float) -> QuadrantReport:
    alive = th.cat([s.alive_mask() for s in scores])
    act = th.cat([s.activation for s in scores])
    grad = th.cat([s.score("grama") for s in scores])
    labels = quadrant_labels(act, grad, top, alive)
    redo = (act <= tau) & alive
    grama = (grad <= grama_tau) & alive
    report = QuadrantReport(name, int(alive.sum()))
    start = 0
    for s in scores:
        end = start + s.activation.numel()
        report.labels[s.key] = labels[start:end]
        report.redo_flagged[s.key] = redo[start:end]
        report.grama_flagged[s.key] = grama[start:end]
        start = end
    report.redo_shares = quadrant_shares(labels, redo)
    report.grama_shares = quadrant_shares(labels, grama)
    report.all_shares = quadrant_shares(labels, alive)
    return report


def quadrant_analysis(
    scores: Sequence[NeuronScores], tau: float = 0.02, grama_tau: float = 0.01, top: float = 0.25, per_layer: bool = False
) -> dict[str, QuadrantReport]:
    """Quadrants of every network's neurons and their shares among the neurons each method would reset.

    Scores are the per-layer normalised ``s_i`` and ``G_i`` (what ReDo and ReGraMa compare to tau). By default the
    neurons of all of a network's hidden layers are ranked together (one report per network, keyed by its name);
    with ``per_layer`` each layer is ranked alone (keyed by group key ``<network>/<layer>``).

    :param tau: ReDo's threshold (default 0.02, GraMa App. A.1, the BRO-net setting of Fig. 3).
    :param grama_tau: ReGraMa's threshold (default 0.01, GraMa App. A.1).
    :param top: fraction of each ranking that is "high" (default 0.25, GraMa Sec. 4.1).
    """
    check_nonnegative("tau", tau)
    check_nonnegative("grama_tau", grama_tau)
    check_fraction("top", top, allow_none=False)
    if per_layer:
        return {s.key: _report(s.key, [s], tau, grama_tau, top) for s in scores}
    return {net: _report(net, group, tau, grama_tau, top) for net, group in network_scores(scores).items()}


class QuadrantAnalysisCallback(TrainingPassAnalysisCallback):
    """GraMa Fig. 3 during ``learn()``: every ``freq`` env steps, score the neurons on the algorithm's next training
    pass and log, per network (``<network>`` is ``actor``, ``critic``, ``policy``, ...):

    - ``plasticity/analysis/<network>/quadrant_<name>``: share of quadrant ``<name>`` (:data:`QUADRANTS`) among the
      neurons ReDo would reset at this step (Fig. 3); not logged when ReDo flags none;
    - ``plasticity/analysis/<network>/grama_quadrant_<name>``: the same among the neurons ReGraMa would reset;
    - ``plasticity/analysis/<network>/redo_flagged_ratio`` and ``grama_flagged_ratio``: shares of the network's
      neurons each method flags; ``redo_grama_overlap``: share of ReDo's that GraMa flags too.

    At the first event at or after each step of ``save_steps`` the raw data are saved as
    ``<save_dir>/quadrants_step<num_timesteps>.npz`` with, per group ``<network>/<layer>``: ``.../activation_score``
    (``s_i``), ``.../gradient_score`` (``G_i``), ``.../activation_raw`` (``E|h_i|``), ``.../gradient_raw``
    (``E|dL/dz_i|``), ``.../quadrant`` (index into ``quadrant_names``, -1 for masked-out neurons),
    ``.../redo_flagged``, ``.../grama_flagged``; and ``step``, ``tau``, ``grama_tau``, ``top``, ``quadrant_names``.
    ``save_dir`` defaults to ``<logger folder>/quadrants`` (the TensorBoard run folder), else ``./quadrants``.

    The callback only observes: it can run next to ``ReDoCallback`` or ``GraMaResetCallback`` (then the scores are
    those of the pass its own event records, not of the reset method's).

    :param freq: env steps between analyses (default 1000, the reset period of GraMa App. A).
    :param tau: ReDo's threshold (default 0.02, GraMa App. A.1).
    :param grama_tau: ReGraMa's threshold (default 0.01).
    :param top: fraction of each ranking that is "high" (default 0.25, GraMa Sec. 4.1).
    :param per_layer: rank each layer alone (tags ``plasticity/analysis/<network>/<layer>/...``) instead of the
        network's neurons together.
    :param networks: trainable networks to analyse (default: all).
    :param save_steps: env steps at which to save the raw scores.
    :param save_dir: folder of the ``.npz`` files.
    :param verbose: 0 or 1.
    """

    def __init__(
        self,
        freq: int = 1000,
        tau: float = 0.02,
        grama_tau: float = 0.01,
        top: float = 0.25,
        per_layer: bool = False,
        networks: str | Sequence[str] | None = None,
        save_steps: Sequence[int] = (),
        save_dir: str | os.PathLike | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(freq, networks, verbose)
        self.tau = check_nonnegative("tau", tau)
        self.grama_tau = check_nonnegative("grama_tau", grama_tau)
        self.top = check_fraction("top", top, allow_none=False)
        self.per_layer = bool(per_layer)
        self.save_steps = sorted(check_positive_int("save_steps", int(s), unit="env steps") for s in save_steps)
        self.save_dir = save_dir
        self.saved: list[Path] = []
        self.reports: dict[str, QuadrantReport] = {}  # of the last event

    def analyse(self, scores: list[NeuronScores]) -> None:
        self.reports = quadrant_analysis(scores, self.tau, self.grama_tau, self.top, self.per_layer)
        for name, report in self.reports.items():
            prefix = f"analysis/{name}"
            for label, shares in (("quadrant", report.redo_shares), ("grama_quadrant", report.grama_shares)):
                for quadrant, share in (shares or {}).items():
                    self.record(f"{prefix}/{label}_{quadrant}", share)
            self.record(f"{prefix}/redo_flagged_ratio", report.redo_ratio)
            self.record(f"{prefix}/grama_flagged_ratio", report.grama_ratio)
            if report.overlap is not None:
                self.record(f"{prefix}/redo_grama_overlap", report.overlap)
        if self.save_steps and self.num_timesteps >= self.save_steps[0]:
            self.saved.append(self._save(scores))
            while self.save_steps and self.num_timesteps >= self.save_steps[0]:
                self.save_steps.pop(0)
        if self.verbose >= 1:
            for name, report in self.reports.items():
                print(f"step {self.num_timesteps} {name}: ReDo resets by quadrant {report.redo_shares}")

    def _save(self, scores: list[NeuronScores]) -> Path:
        folder = Path(self.save_dir or os.path.join(self.logger.get_dir() or ".", "quadrants"))
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "step": np.array(self.num_timesteps),
            "tau": np.array(self.tau),
            "grama_tau": np.array(self.grama_tau),
            "top": np.array(self.top),
            "quadrant_names": np.array(QUADRANTS),
        }
        labels = {k: v for r in self.reports.values() for k, v in r.labels.items()}
        redo = {k: v for r in self.reports.values() for k, v in r.redo_flagged.items()}
        grama = {k: v for r in self.reports.values() for k, v in r.grama_flagged.items()}
        for s in scores:
            arrays[f"{s.key}/activation_score"] = s.activation.numpy()
            arrays[f"{s.key}/gradient_score"] = s.score("grama").numpy()
            arrays[f"{s.key}/activation_raw"] = s.activation_raw.numpy()
            arrays[f"{s.key}/gradient_raw"] = s.gradient_raw.numpy()
            arrays[f"{s.key}/quadrant"] = labels[s.key].numpy()
            arrays[f"{s.key}/redo_flagged"] = redo[s.key].numpy()
            arrays[f"{s.key}/grama_flagged"] = grama[s.key].numpy()
        path = folder / f"quadrants_step{self.num_timesteps}.npz"
        np.savez(path, **arrays)
        return path
