"""Irreversibility of low learning capacity (GraMa paper, Sec. 4.2, Fig. 6).

Fig. 6 (b): "We use GraMa with a threshold of tau = 0.0095 to sample 1000 inactive neurons in the pre-training period
of vanilla agent. We then trace the change of their learning capacity scores [...] none of the sampled neurons
exceed the threshold of 0.0095 as training progresses." :class:`IrreversibilityTracker` follows such a fixed sample
and :class:`IrreversibilityCallback` runs it during ``learn()``.

Fig. 6 (a): "performance degrades significantly as the ratio of low learning capacity neurons increases", across
agents with different proportions of such neurons. :func:`performance_vs_inactive` computes that relation from the
TensorBoard logs of several runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from sb3_plasticity.analysis.base import TrainingPassAnalysisCallback
from sb3_plasticity.analysis.scores import NeuronScores, network_scores
from sb3_plasticity.checks import check_choice, check_nonnegative, check_positive_int

__all__ = [
    "IrreversibilityCallback",
    "IrreversibilityTracker",
    "PerformanceVsInactive",
    "final_value",
    "performance_vs_inactive",
    "read_tensorboard_scalars",
]

SAMPLES = ("inactive", "all")


class IrreversibilityTracker:
    """Follows a fixed sample of one network's neurons across checks of their GraMa score.

    At the first :meth:`update` whose scores have at least one candidate, up to ``n_neurons`` neurons are drawn
    (without replacement, from ``seed``): among the inactive ones (``G_i <= tau``, the paper's Fig. 6 b) with
    ``sample="inactive"``, among all (alive) neurons with ``sample="all"``. Every later update reports, over the sample:

    - ``inactive_ratio``: share inactive now;
    - ``never_recovered_ratio``: share inactive now *and* at every earlier check since the sample was drawn (the
      neurons that never recovered; with ``sample="inactive"``, 1.0 means none came back, the paper's finding);
    - ``recovered_ratio``: share that was inactive at some check and active (``G_i > tau``) at a later one;
    - ``tracked``: sample size; ``checks``: checks since the sample was drawn (the drawing one included).

    Neurons are identified by their position in the concatenated layers, so the network's shape must not change.
    """

    def __init__(self, tau: float = 0.0095, n_neurons: int = 1000, sample: str = "inactive", seed: int = 0) -> None:
        self.tau = check_nonnegative("tau", tau)
        self.n_neurons = check_positive_int("n_neurons", n_neurons)
        self.sample = check_choice("sample", sample, SAMPLES)
        self.seed = int(seed)
        self.indices: th.Tensor | None = None
        self.always_inactive: th.Tensor | None = None
        self.ever_inactive: th.Tensor | None = None
        self.recovered: th.Tensor | None = None
        self.checks = 0

    @property
    def sampled(self) -> bool:
        return self.indices is not None

    def update(self, scores: th.Tensor, alive: th.Tensor | None = None) -> dict[str, float] | None:
        """One check: ``scores`` are the normalised GraMa scores of all the network's neurons (concatenated layers).
        Returns the ratios above, or None while no sample could be drawn."""
        scores = scores.detach().cpu().reshape(-1)
        alive = th.ones_like(scores, dtype=th.bool) if alive is None else alive.detach().cpu().bool().reshape(-1)
        inactive = (scores <= self.tau) & alive
        if self.indices is None:
            candidates = (inactive if self.sample == "inactive" else alive).nonzero().flatten()
            if candidates.numel() == 0:
                return None
            gen = th.Generator().manual_seed(self.seed)
            picked = candidates[th.randperm(candidates.numel(), generator=gen)[: self.n_neurons]]
            self.indices = picked.sort().values
            now = inactive[self.indices]
            self.always_inactive = now.clone()
            self.ever_inactive = now.clone()
            self.recovered = th.zeros_like(now)
            self.checks = 1
        else:
            if int(self.indices.max()) >= scores.numel():
                raise ValueError(f"the network now has {scores.numel()} neurons; the sample was drawn from more")
            now = inactive[self.indices]
            self.recovered |= self.ever_inactive & ~now
            self.always_inactive &= now
            self.ever_inactive |= now
            self.checks += 1
        return {
            "inactive_ratio": float(now.float().mean()),
            "never_recovered_ratio": float(self.always_inactive.float().mean()),
            "recovered_ratio": float(self.recovered.float().mean()),
            "tracked": float(self.indices.numel()),
            "checks": float(self.checks),
        }

    def tracked_scores(self, scores: th.Tensor) -> th.Tensor:
        """The sample's entries of ``scores`` (for the score distribution over time, Fig. 6 b)."""
        if self.indices is None:
            return scores.new_zeros(0)
        return scores.detach().cpu().reshape(-1)[self.indices]

    def get_state(self) -> dict[str, Any]:
        names = ("indices", "always_inactive", "ever_inactive", "recovered")
        state: dict[str, Any] = {n: None if getattr(self, n) is None else getattr(self, n).clone() for n in names}
        state["checks"] = self.checks
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        for name in ("indices", "always_inactive", "ever_inactive", "recovered"):
            value = state.get(name)
            setattr(self, name, None if value is None else value.clone().cpu())
        self.checks = int(state.get("checks", 0))


class IrreversibilityCallback(TrainingPassAnalysisCallback):
    """GraMa Fig. 6 (b) during ``learn()``: every ``check_freq`` env steps, score the neurons (GraMa, on the
    algorithm's next training pass) and follow a fixed sample per network (:class:`IrreversibilityTracker`). Logs
    ``plasticity/analysis/<network>/<quantity>`` with the tracker's ``inactive_ratio``, ``never_recovered_ratio``,
    ``recovered_ratio`` and ``tracked``, the whole network's ``grama_inactive_ratio`` at ``tau``, and (``histogram``)
    the sample's scores as a TensorBoard histogram ``tracked_scores`` (the paper's score distribution over time).

    The sample is drawn at the first check at or after ``sample_at`` where the network has a candidate ("in the
    pre-training period of the vanilla agent"), and kept in ``model.plasticity_state`` across ``save``/``load``.

    :param check_freq: env steps between checks (default 10,000).
    :param tau: GraMa threshold (default 0.0095, GraMa Sec. 4.2).
    :param n_neurons: sample size per network (default 1000, GraMa Sec. 4.2).
    :param sample: ``"inactive"`` (default, the paper) or ``"all"``.
    :param sample_at: first env step at which the sample may be drawn (default 0: the first check).
    :param networks: trainable networks to follow (default: all).
    :param seed: seed of the sample.
    :param histogram: log the sample's score distribution.
    :param verbose: 0 or 1.
    """

    @property
    def state_key(self) -> str:  # type: ignore[override]
        """``model.plasticity_state`` key: ``analysis_irreversibility``, or ``analysis_irreversibility[<networks>]``
        when ``networks`` is given (two callbacks on disjoint networks keep their own samples)."""
        base = "analysis_irreversibility"
        return base if self.networks is None else f"{base}[{'+'.join(self.networks)}]"

    def __init__(
        self,
        check_freq: int = 10_000,
        tau: float = 0.0095,
        n_neurons: int = 1000,
        sample: str = "inactive",
        sample_at: int = 0,
        networks: str | Sequence[str] | None = None,
        seed: int = 0,
        histogram: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(check_positive_int("check_freq", check_freq, unit="env steps"), networks, verbose)
        self.tau = check_nonnegative("tau", tau)
        self.n_neurons = check_positive_int("n_neurons", n_neurons)
        self.sample = check_choice("sample", sample, SAMPLES)
        self.sample_at = int(check_nonnegative("sample_at", sample_at))
        self.seed = int(seed)
        self.histogram = bool(histogram)
        self.trackers: dict[str, IrreversibilityTracker] = {}
        self.history: list[dict[str, float]] = []  # one row per network and check

    def _tracker(self, network: str) -> IrreversibilityTracker:
        if network not in self.trackers:
            self.trackers[network] = IrreversibilityTracker(self.tau, self.n_neurons, self.sample, self.seed)
        return self.trackers[network]

    def analyse(self, scores: list[NeuronScores]) -> None:
        for network, group in network_scores(scores).items():
            grad = th.cat([s.score("grama") for s in group])
            alive = th.cat([s.alive_mask() for s in group])
            inactive = float(((grad <= self.tau) & alive).sum()) / max(int(alive.sum()), 1)
            self.record(f"analysis/{network}/grama_inactive_ratio", inactive)
            tracker = self._tracker(network)
            if not tracker.sampled and self.num_timesteps < self.sample_at:
                continue
            stats = tracker.update(grad, alive)
            if stats is None:
                continue
            for key in ("inactive_ratio", "never_recovered_ratio", "recovered_ratio", "tracked"):
                self.record(f"analysis/{network}/{key}", stats[key])
            if self.histogram:
                self.logger.record(
                    f"plasticity/analysis/{network}/tracked_scores",
                    tracker.tracked_scores(grad),
                    exclude=("stdout", "log", "json", "csv"),
                )
            self.history.append(
                {"step": float(self.num_timesteps), "network": network, "grama_inactive_ratio": inactive, **stats}
            )
            if self.verbose >= 1:
                print(f"step {self.num_timesteps} {network}: {stats}")

    def get_state(self) -> dict[str, Any]:
        return {network: tracker.get_state() for network, tracker in self.trackers.items()}

    def set_state(self, state: dict[str, Any]) -> None:
        for network, tracker_state in state.items():
            self._tracker(network).set_state(tracker_state)


# ----------------------------------------------------------------------------------------------------------------
# Fig. 6 (a): performance against the share of low learning capacity neurons, across runs
# ----------------------------------------------------------------------------------------------------------------
def read_tensorboard_scalars(log_dir: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of the TensorBoard event files under ``log_dir`` (recursively): ``tag -> (steps, values)`` sorted
    by step (a step logged twice keeps the value written last)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(log_dir).rglob("events.out.tfevents.*"))
    if not files:
        raise FileNotFoundError(f"no TensorBoard event file under {log_dir}")
    merged: dict[str, dict[int, float]] = {}
    for folder in sorted({f.parent for f in files}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            values = merged.setdefault(tag, {})
            for event in sorted(acc.Scalars(tag), key=lambda e: e.wall_time):
                values[int(event.step)] = float(event.value)
    return {
        tag: (np.array(sorted(v), dtype=float), np.array([v[s] for s in sorted(v)], dtype=float)) for tag, v in merged.items()
    }


def final_value(steps: np.ndarray, values: np.ndarray, fraction: float = 0.1) -> float:
    """Mean of ``values`` over the last ``fraction`` of the logged steps (at least the last point): the convention
    of ``sb3-plasticity report``."""
    if len(values) == 0:
        return float("nan")
    start = steps[-1] - fraction * (steps[-1] - steps[0])
    return float(np.mean(values[steps >= start]))


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=float)
    ranks[order] = np.arange(len(x), dtype=float)
    for value in np.unique(x):  # ties share their mean rank
        ranks[x == value] = ranks[x == value].mean()
    return ranks


@dataclass
class PerformanceVsInactive:
    """One row per run (``run``, ``inactive_ratio``, ``return``, ``normalized_return``), sorted by inactive ratio,
    and the Pearson and Spearman correlations between the ratio and the return across runs (NaN with fewer than two
    runs or a constant column)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    pearson: float = float("nan")
    spearman: float = float("nan")


def performance_vs_inactive(
    runs: Mapping[str, Any] | Sequence[str | Path],
    ratio_tag: str = "plasticity/critic/grama_inactive_ratio",
    return_tag: str | None = None,
    fraction: float = 0.1,
) -> PerformanceVsInactive:
    """GraMa Fig. 6 (a) from logs: for each run, its share of low learning capacity neurons and its return, both
    the mean over the last ``fraction`` of the logged steps, and the return min-max normalised across the runs
    (0 the worst run, 1 the best; all 1 when they are equal).

    :param runs: TensorBoard run folders (a list, or a ``{name: folder}`` mapping), or ``{name: scalars}`` with
        scalars as :func:`read_tensorboard_scalars` returns them.
    :param ratio_tag: the share's tag, e.g. ``plasticity/critic/grama_inactive_ratio`` (``PlasticityMonitorCallback``)
        or ``plasticity/analysis/critic/never_recovered_ratio`` (:class:`IrreversibilityCallback`).
    :param return_tag: default ``eval/mean_reward`` when logged, else ``rollout/ep_rew_mean``.
    """
    items = list(runs.items()) if isinstance(runs, Mapping) else [(str(r), r) for r in runs]
    rows = []
    for name, run in items:
        scalars = run if isinstance(run, Mapping) else read_tensorboard_scalars(run)
        tag = return_tag or next((t for t in ("eval/mean_reward", "rollout/ep_rew_mean") if t in scalars), None)
        if tag is None or tag not in scalars:
            raise KeyError(f"run {name!r} has no return tag {return_tag or 'eval/mean_reward or rollout/ep_rew_mean'}")
        if ratio_tag not in scalars:
            raise KeyError(f"run {name!r} has no {ratio_tag!r}")
        rows.append(
            {
                "run": name,
                "inactive_ratio": final_value(*scalars[ratio_tag], fraction),
                "return": final_value(*scalars[tag], fraction),
            }
        )
    returns = np.array([r["return"] for r in rows], dtype=float)
    low, high = (float(returns.min()), float(returns.max())) if len(rows) else (0.0, 0.0)
    for r in rows:
        r["normalized_return"] = (r["return"] - low) / (high - low) if high > low else 1.0
    rows.sort(key=lambda r: (r["inactive_ratio"], r["run"]))
    x = np.array([r["inactive_ratio"] for r in rows], dtype=float)
    y = np.array([r["return"] for r in rows], dtype=float)
    result = PerformanceVsInactive(rows, _pearson(x, y))
    if len(rows) >= 2 and not math.isnan(result.pearson):
        result.spearman = _pearson(_ranks(x), _ranks(y))
    return result
