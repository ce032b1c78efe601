"""``sb3-plasticity report``: figures, rliable aggregates and ``report.md`` from the runs of ``sb3-plasticity run``.

For each experiment found under the runs folder:

- the TensorBoard scalars of every run are read with tbparse (a resumed run's duplicated steps keep the value written
  last);
- one figure per plotted quantity, one panel per env, a line per method with a shaded 95% CI across seeds
  (percentile bootstrap over seeds at each step, on a common grid of steps);
- each run's score is the mean of its return over the last 10% of its logged steps; per env, the mean and IQM across
  seeds with 95% stratified-bootstrap CIs (rliable); across envs, IQM, mean and optimality gap of min-max normalised
  scores (0: the worst run of the env, 1: the best) and the probability of improvement of each method over the
  entry's baseline;
- the final value of every other plotted quantity (same last-10% mean) per env, with the same CIs;
- ``report.md`` embeds them, states the budget and seeds run beside the paper's, prints the paper's numbers beside
  ours where the registry has them, and lists what is missing;
- ``series.csv`` (every run's plotted series) and ``runs.json`` (the runs' specs and states) are the compact data
  behind the figures: ``sb3-plasticity report`` on a folder holding them draws the same report without the
  TensorBoard logs, so a report can be published and re-drawn without re-running.

"return" is rl-zoo's evaluation return (``eval/mean_reward``) when every run has it, else the training episodes'
return (``rollout/ep_rew_mean``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sb3_plasticity.experiments.entries import Entry, ExperimentError, RunSpec, load_registry
from sb3_plasticity.experiments.files import RUN_FILE, read_json
from sb3_plasticity.experiments.runner import PLAN_FILE, run_state

__all__ = ["RunData", "collect", "final_score", "load_series", "make_report", "score_matrix", "write_series"]

RETURN_TAGS = ("eval/mean_reward", "rollout/ep_rew_mean")
SERIES_FILE = "series.csv"
RUNS_FILE = "runs.json"
_SERIES_COLUMNS = ("method", "env", "seed", "tag", "step", "value")
FINAL_FRACTION = 0.1
CURVE_POINTS = 100


@dataclass
class RunData:
    """One run's spec, state and TensorBoard scalars (tag -> (steps, values), sorted by step)."""

    spec: RunSpec
    run_dir: Path
    state: str
    steps_done: int
    scalars: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag of the run's event files; where a resumed run logged a step twice, the later write wins."""
    from tbparse import SummaryReader

    tb = run_dir / "tb"
    if not tb.exists():
        return {}
    df = SummaryReader(str(tb), extra_columns={"wall_time"}).scalars
    if df.empty:
        return {}
    df = df.sort_values("wall_time").drop_duplicates(["tag", "step"], keep="last").sort_values("step")
    return {
        tag: (group["step"].to_numpy(dtype=float), group["value"].to_numpy(dtype=float)) for tag, group in df.groupby("tag")
    }


def write_series(folder: Path, runs: list[RunData], tags: list[str]) -> None:
    """``folder/series.csv`` (the runs' series of ``tags``) and ``folder/runs.json`` (their specs and states)."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / SERIES_FILE, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(_SERIES_COLUMNS)
        for r in runs:
            for tag in tags:
                for step, value in zip(*r.scalars.get(tag, ((), ())), strict=True):
                    writer.writerow((r.spec.method, r.spec.env, r.spec.seed, tag, int(step), f"{value:.6g}"))
    listing = [{"spec": r.spec.to_dict(), "state": r.state, "steps_done": r.steps_done} for r in runs]
    (folder / RUNS_FILE).write_text(json.dumps(listing, indent=1))


def load_series(folder: Path) -> list[RunData]:
    """The runs that :func:`write_series` saved in ``folder``, with the series it kept as their scalars."""
    import csv

    runs = {}
    for item in json.loads((Path(folder) / RUNS_FILE).read_text()):
        spec = RunSpec.from_dict(item["spec"])
        runs[spec.method, spec.env, spec.seed] = RunData(spec, Path(folder), item["state"], item["steps_done"])
    points: dict[tuple, list[tuple[float, float]]] = {}
    with open(Path(folder) / SERIES_FILE, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["method"], row["env"], int(row["seed"]))
            points.setdefault((*key, row["tag"]), []).append((float(row["step"]), float(row["value"])))
    for (*key, tag), pairs in points.items():
        steps, values = np.array(pairs).T
        runs[tuple(key)].scalars[tag] = (steps, values)
    return list(runs.values())


def collect(root: Path, entry_id: str | None = None) -> dict[str, list[RunData]]:
    """The runs under ``root`` grouped by entry id (only ``entry_id`` if given), with their scalars.

    ``root`` is a runs folder of ``sb3-plasticity run``, or (when it holds no run) a folder with the ``runs.json`` /
    ``series.csv`` files of an earlier report, searched recursively.
    """
    out: dict[str, list[RunData]] = {}
    for run_file in sorted(Path(root).rglob(RUN_FILE)):
        config = read_json(run_file)
        if not config or "spec" not in config:
            continue
        spec = RunSpec.from_dict(config["spec"])
        if entry_id is not None and spec.entry_id != entry_id:
            continue
        state, steps, _ = run_state(run_file.parent)
        out.setdefault(spec.entry_id, []).append(RunData(spec, run_file.parent, state, steps, read_scalars(run_file.parent)))
    if out:
        return out
    seen = set()  # a report re-drawn into the data folder leaves a second copy of the same runs
    for listing in sorted(Path(root).rglob(RUNS_FILE)):
        for run in load_series(listing.parent):
            key = (run.spec.entry_id, run.spec.method, run.spec.env, run.spec.seed)
            if (entry_id is None or run.spec.entry_id == entry_id) and key not in seen:
                seen.add(key)
                out.setdefault(run.spec.entry_id, []).append(run)
    return out


def return_tag(runs: list[RunData]) -> str:
    for tag in RETURN_TAGS:
        if runs and all(tag in r.scalars for r in runs):
            return tag
    return RETURN_TAGS[-1]


def final_score(steps: np.ndarray, values: np.ndarray, fraction: float = FINAL_FRACTION) -> float:
    """Mean of ``values`` over the last ``fraction`` of the steps logged (at least the last point)."""
    if len(values) == 0:
        return float("nan")
    start = steps[-1] - fraction * (steps[-1] - steps[0])
    return float(np.mean(values[steps >= start]))


def curve(
    series: list[tuple[np.ndarray, np.ndarray]], points: int = CURVE_POINTS, reps: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95% percentile-bootstrap CI across seeds on a common grid; each seed counts only inside its range.

    :return: ``(grid, mean, low, high)``.
    """
    lo = min(s[0] for s, _ in series)
    hi = max(s[-1] for s, _ in series)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    table = np.full((len(series), len(grid)), np.nan)
    for i, (steps, values) in enumerate(series):
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        table[i, inside] = np.interp(grid[inside], steps, values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(table, axis=0)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(series), size=(reps, len(series)))
        boot = np.nanmean(table[idx], axis=1)
        low, high = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    return grid, mean, low, high


def score_matrix(runs: list[RunData], tag: str, methods: list[str], envs: list[str]) -> dict[str, np.ndarray]:
    """method -> (seeds x envs) final scores, over the seeds every env of that method has (rliable's layout)."""
    out = {}
    for method in methods:
        per_env = {
            env: {
                r.spec.seed: final_score(*r.scalars[tag])
                for r in runs
                if r.spec.method == method and r.spec.env == env and tag in r.scalars
            }
            for env in envs
        }
        seeds = sorted(set.intersection(*(set(s) for s in per_env.values()))) if per_env else []
        if seeds:
            out[method] = np.array([[per_env[env][seed] for env in envs] for seed in seeds])
    return out


def _interval(score_dict: dict[str, Any], func, reps: int, seed: int) -> tuple[dict, dict]:
    from rliable import library as rly

    with warnings.catch_warnings():
        # arch (rliable's bootstrap) deprecates RandomState; rliable 1.2 still passes one.
        warnings.simplefilter("ignore", FutureWarning)
        return rly.get_interval_estimates(score_dict, func, reps=reps, random_state=np.random.RandomState(seed))


def aggregates(scores: dict[str, np.ndarray], reps: int, seed: int = 0) -> dict[str, dict[str, tuple]]:
    """Per method: IQM, mean and optimality gap (point, low, high) of min-max normalised scores across envs."""
    from rliable import metrics

    stacked = np.concatenate(list(scores.values()), axis=0)
    lo, hi = stacked.min(axis=0), stacked.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    normalised = {m: (s - lo) / span for m, s in scores.items()}

    def func(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), metrics.aggregate_optimality_gap(x, 1)])

    points, intervals = _interval(normalised, func, reps, seed)
    return {
        m: {name: (points[m][i], intervals[m][0, i], intervals[m][1, i]) for i, name in enumerate(("iqm", "mean", "gap"))}
        for m in scores
    }


def per_env_stats(scores: dict[str, np.ndarray], envs: list[str], reps: int, seed: int = 0) -> dict:
    """(method, env) -> {"mean": (point, low, high), "iqm": (...)} of raw scores (rliable, one task at a time)."""
    from rliable import metrics

    def func(x: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_mean(x), metrics.aggregate_iqm(x)])

    out = {}
    for j, env in enumerate(envs):
        column = {m: s[:, j : j + 1] for m, s in scores.items()}
        points, intervals = _interval(column, func, reps, seed)
        for m in column:
            out[m, env] = {
                name: (points[m][i], intervals[m][0, i], intervals[m][1, i]) for i, name in enumerate(("mean", "iqm"))
            }
    return out


def improvement(scores: dict[str, np.ndarray], baseline: str, reps: int, seed: int = 0) -> dict[str, tuple]:
    """method -> P(method > baseline) (point, low, high) over the envs (rliable's probability of improvement)."""
    from rliable import metrics

    pairs = {m: [s, scores[baseline]] for m, s in scores.items() if m != baseline}
    if baseline not in scores or not pairs:
        return {}
    # Both methods need the same seeds per env for the stratified bootstrap's pairing.
    n = min(len(scores[baseline]), *(len(s) for s, _ in pairs.values()))
    pairs = {m: [x[:n], y[:n]] for m, (x, y) in pairs.items()}
    points, intervals = _interval(pairs, metrics.probability_of_improvement, reps, seed)
    return {
        m: (float(np.ravel(points[m])[0]), float(np.ravel(intervals[m])[0]), float(np.ravel(intervals[m])[-1])) for m in pairs
    }


def _fmt(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.4g}"


def _ci(point_low_high: tuple) -> str:
    p, lo, hi = point_low_high
    return f"{_fmt(p)} [{_fmt(lo)}, {_fmt(hi)}]"


def _slug(tag: str) -> str:
    return tag.replace("/", "_").replace(" ", "_")


def _plot_metric(path: Path, title: str, runs: list[RunData], tag: str, methods: list[str], envs: list[str]) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(envs), figsize=(max(6.0, 4.2 * len(envs)), 3.6), squeeze=False)
    drawn = False
    for ax, env in zip(axes[0], envs, strict=True):
        for k, method in enumerate(methods):
            series = [r.scalars[tag] for r in runs if r.spec.method == method and r.spec.env == env and tag in r.scalars]
            series = [s for s in series if len(s[0])]
            if not series:
                continue
            grid, mean, low, high = curve(series)
            color = f"C{k % 10}"
            ax.plot(
                grid,
                mean,
                color=color,
                marker="o" if len(grid) < 2 else None,
                markersize=4,
                label=f"{method} ({len(series)} seeds)",
            )
            ax.fill_between(grid, low, high, color=color, alpha=0.2, linewidth=0)
            drawn = True
        ax.set_title(env.split("/")[-1], fontsize=10)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(title.rsplit("/", 1)[-1])
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        h, lab = ax.get_legend_handles_labels()
        handles += [x for x, y in zip(h, lab, strict=True) if y not in labels]
        labels += [y for y in lab if y not in labels]
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"{title} (mean and 95% bootstrap CI across seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    if drawn:
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def _plot_aggregates(path: Path, aggs: dict[str, dict[str, tuple]], poi: dict[str, tuple], baseline: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(aggs)
    panels = [("iqm", "IQM"), ("mean", "Mean"), ("gap", "Optimality gap")]
    if poi:
        panels.append(("poi", f"P(method > {baseline})"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 0.5 * len(methods) + 1.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        rows = [(m, poi[m] if key == "poi" else aggs[m][key]) for m in methods if key != "poi" or m in poi]
        for y, (m, (p, lo, hi)) in enumerate(rows):
            ax.barh(y, hi - lo, left=lo, height=0.6, color=f"C{methods.index(m) % 10}", alpha=0.75)
            ax.plot([p, p], [y - 0.3, y + 0.3], color="black")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([m for m, _ in rows] if ax is axes[0][0] or key == "poi" else [""] * len(rows))
        ax.set_title(label, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Final scores, min-max normalised per env (95% stratified bootstrap CIs, rliable)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _budget(entry: Entry | None) -> str:
    if entry is None:
        return "?"
    return str(entry.budget) + "".join(f"; {env}: {n}" for env, n in entry.env_budgets.items())


def _paper_rows(entry: Entry, stats: dict, envs: list[str]) -> list[str]:
    numbers = entry.paper_numbers or {}
    values = numbers.get("values") or {}
    if not values:
        return []
    lines = [
        f"Paper: {numbers.get('metric', 'return')}, {numbers.get('statistic', '')}. Ours: mean return "
        "[95% CI] over our seeds at our budget.",
        "",
        "| method | env | paper | ours |",
        "|---|---|---|---|",
    ]
    for method, per_env in values.items():
        if not isinstance(per_env, dict):
            lines.append(f"| {method} | (all) | {per_env} | |")
            continue
        for env, paper_value in per_env.items():
            ours = _ci(stats[method, env]["mean"]) if (method, env) in stats else "not run"
            lines.append(f"| {method} | {env} | {paper_value} | {ours} |")
    del envs
    return lines


def _missing_lines(entry: Entry | None, runs: list[RunData], plan: dict[str, Any] | None) -> list[str]:
    lines = []
    have = {(r.spec.method, r.spec.env, r.spec.seed) for r in runs if r.state == "done"}
    for r in runs:
        if r.state != "done":
            lines.append(
                f"- incomplete: {r.spec.method} on {r.spec.env}, seed {r.spec.seed} ({r.steps_done} of "
                f"{r.spec.timesteps} steps)"
            )
    for planned in (plan or {}).get("runs", []):
        if entry is not None and planned["method"] not in entry.methods:
            continue  # a plan of another entry whose runs this report shares (runs_of)
        key = (planned["method"], planned["env"], planned["seed"])
        if key not in have and not any((r.spec.method, r.spec.env, r.spec.seed) == key for r in runs):
            lines.append(f"- not started: {key[0]} on {key[1]}, seed {key[2]}")
    if entry is not None:
        ran_methods = {r.spec.method for r in runs}
        ran_envs = {r.spec.env for r in runs}
        for m in entry.methods:
            if m not in ran_methods:
                why = f" ({entry.methods[m].needs})" if entry.methods[m].needs else ""
                lines.append(f"- method not run: {m}{why}")
        for env in entry.envs:
            if env not in ran_envs:
                lines.append(f"- env not run: {env}")
    return lines


def _final_values(
    runs: list[RunData], tags: list[str], methods: list[str], envs: list[str], reps: int
) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Final-value scores of ``tags`` (tag -> method -> seeds x envs) and their table for ``report.md``."""
    other_scores = {tag: score_matrix(runs, tag, methods, envs) for tag in tags}
    other_scores = {tag: sc for tag, sc in other_scores.items() if sc}
    if not other_scores:
        return {}, []
    lines = [
        "## Final value of the other plotted quantities",
        "",
        f"Mean over the last {FINAL_FRACTION:.0%} of each run's logged steps; mean across seeds with its 95% "
        f"stratified bootstrap CI (rliable, {reps} resamples).",
        "",
        "| quantity | method | env | seeds | mean [95% CI] |",
        "|---|---|---|---|---|",
    ]
    for tag, sc in other_scores.items():
        tag_stats = per_env_stats(sc, envs, reps)
        for m in sc:
            for env in envs:
                lines.append(f"| `{tag}` | {m} | {env} | {len(sc[m])} | {_ci(tag_stats[m, env]['mean'])} |")
    return other_scores, [*lines, ""]


def report_entry(
    entry_id: str, runs: list[RunData], out: Path, root: Path, reps: int = 2000, runs_of: str | None = None
) -> Path:
    """Write ``out/report.md`` and its figures for one experiment (from the runs made for ``runs_of`` if given); the
    path of ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    entry = load_registry().get(entry_id)
    done = [r for r in runs if r.scalars]
    methods = [m for m in (entry.methods if entry else {}) if any(r.spec.method == m for r in done)]
    methods += sorted({r.spec.method for r in done} - set(methods))
    envs = [e for e in (entry.envs if entry else ()) if any(r.spec.env == e for r in done)]
    envs += sorted({r.spec.env for r in done} - set(envs))
    ret = return_tag(done)
    title = entry.shows if entry else entry_id
    lines = [f"# {entry_id}: {title}", ""]
    seeds_run = sorted({r.spec.seed for r in runs})
    budgets = sorted({r.spec.timesteps for r in runs})
    lines += [
        "| | paper | ours |",
        "|---|---|---|",
        f"| budget (env steps per run) | {_budget(entry)} | {', '.join(map(str, budgets))} |",
        f"| seeds | {entry.seeds if entry else '?'} | {len(seeds_run)} ({', '.join(map(str, seeds_run))}) |",
        f"| methods | {', '.join(entry.methods) if entry else '?'} | {', '.join(methods)} |",
        f"| envs | {', '.join(entry.envs) if entry else '?'} | {', '.join(envs)} |",
        "",
        f"Runs: {sum(r.state == 'done' for r in runs)} done of {len(runs)} found under `{root}`"
        + (f" (the runs made for {runs_of}: same methods, confs and overrides). " if runs_of else ". ")
        + f"Return: `{ret}`; a run's score is its mean return over the last {FINAL_FRACTION:.0%} of its logged steps. "
        "The curves show every run as far as it got; the tables score finished runs only.",
        "",
    ]
    plan = read_json(root / (runs_of or entry_id) / PLAN_FILE)
    if plan and runs_of and entry is not None:  # the other entry's plan: keep the runs this entry shares
        source = load_registry().get(runs_of)
        plan = {"runs": [p for p in plan.get("runs", []) if source is not None and _same_method(entry, source, p["method"])]}
    missing = _missing_lines(entry, runs, plan)
    if missing:
        lines += ["## Missing", "", *missing, ""]
    if not done:
        lines += ["No run has logged anything yet.", ""]
        (out / "report.md").write_text("\n".join(lines))
        return out / "report.md"

    lines += ["## Curves", ""]
    metrics = [ret] + [m for m in (entry.metrics if entry else ()) if m != "return"]
    for tag in metrics:
        name = "return" if tag == ret else tag
        png = out / f"{_slug(name)}.png"
        if _plot_metric(png, name, done, tag, methods, envs):
            lines += [f"![{name}]({png.name})", ""]
        else:
            lines += [f"- `{tag}`: not logged by these runs", ""]

    write_series(out, runs, metrics)
    # an unfinished run's last values are not its final ones: the tables take finished runs only
    finished = [r for r in done if r.state == "done"]
    other_scores, other_lines = _final_values(finished, [tag for tag in metrics if tag != ret], methods, envs, reps)
    lines += other_lines

    scores = score_matrix(finished, ret, methods, envs)
    if scores:
        stats = per_env_stats(scores, envs, reps)
        lines += [
            "## Final return per env",
            "",
            "Mean and IQM across seeds with 95% stratified bootstrap CIs (rliable, "
            f"{reps} resamples); seeds used: the seeds every env of the method has.",
            "",
            "| method | env | seeds | mean [95% CI] | IQM [95% CI] |",
            "|---|---|---|---|---|",
        ]
        for m in scores:
            for env in envs:
                s = stats[m, env]
                lines.append(f"| {m} | {env} | {len(scores[m])} | {_ci(s['mean'])} | {_ci(s['iqm'])} |")
        lines.append("")
        aggs = aggregates(scores, reps)
        baseline = entry.baseline if entry and entry.baseline in scores else None
        poi = improvement(scores, baseline, reps) if baseline else {}
        _plot_aggregates(out / "aggregate.png", aggs, poi, baseline)
        lines += [
            "## Aggregate across envs",
            "",
            "Scores min-max normalised per env (0: the env's worst run, 1: its best); optimality gap to 1.",
            "",
            "![aggregate](aggregate.png)",
            "",
            "| method | IQM [95% CI] | mean [95% CI] | optimality gap [95% CI] |"
            + (f" P(method > {baseline}) [95% CI] |" if poi else ""),
            "|---|---|---|---|" + ("---|" if poi else ""),
        ]
        for m, a in aggs.items():
            row = f"| {m} | {_ci(a['iqm'])} | {_ci(a['mean'])} | {_ci(a['gap'])} |"
            if poi:
                row += f" {_ci(poi[m]) if m in poi else 'baseline'} |"
            lines.append(row)
        lines.append("")
        if entry is not None:
            paper = _paper_rows(entry, stats, envs)
            if paper:
                lines += ["## The paper's numbers beside ours", "", *paper, ""]
        summary = {
            "entry": entry_id,
            "return_tag": ret,
            "scores": {m: s.tolist() for m, s in scores.items()},
            "envs": envs,
            "aggregates": {m: {k: list(map(float, v)) for k, v in a.items()} for m, a in aggs.items()},
            "probability_of_improvement": {m: list(v) for m, v in poi.items()},
            "final_values": {tag: {m: x.tolist() for m, x in sc.items()} for tag, sc in other_scores.items()},
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if entry is not None and entry.notes:
        lines += ["## Notes from the registry", "", entry.notes, ""]
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.md"


def _same_method(entry: Entry, other: Entry, name: str) -> bool:
    """Whether method ``name`` of ``other`` trains what ``entry``'s method of that name trains (same conf, overrides)."""
    if name not in entry.methods or name not in other.methods:
        return False
    a, b = entry.methods[name], other.methods[name]
    return a.conf == b.conf and dict(a.overrides) == dict(b.overrides)


def runs_shared_with(entry: Entry, runs: list[RunData]) -> list[RunData]:
    """The runs of another entry that are runs of ``entry`` as well, relabelled as ``entry``'s.

    Several figures and tables of a paper plot different quantities of the same training runs (P3O's Table 1,
    Fig. 4-6 and Table 2 come from one set of runs). A run counts for ``entry`` when ``entry`` has a method of the
    same name with the same conf and overrides, and lists the run's env.
    """
    shared = []
    for run in runs:
        method = entry.methods.get(run.spec.method)
        if method is None or run.spec.env not in entry.envs:
            continue
        if method.conf != run.spec.conf or dict(method.overrides) != dict(run.spec.overrides):
            continue
        shared.append(replace(run, spec=replace(run.spec, entry_id=entry.id)))
    return shared


def make_report(
    root: Path, entry_id: str | None = None, out: Path | None = None, reps: int = 2000, runs_of: str | None = None
) -> list[Path]:
    """Reports for every experiment under ``root`` (or only ``entry_id``), written to ``out/<id>/``.

    :param runs_of: with ``entry_id``: report ``entry_id`` from the runs made for this other entry (see
        :func:`runs_shared_with`), e.g. ``entry_id="p3o/table2", runs_of="p3o/fig5"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ExperimentError(f"runs folder {root} does not exist")
    if runs_of is not None:
        if entry_id is None:
            raise ExperimentError("runs_of (--from) needs the entry to report (--id)")
        entry = load_registry().get(entry_id)
        if entry is None:
            raise ExperimentError(f"unknown experiment id {entry_id!r} (sb3-plasticity list)")
        source = collect(root, runs_of).get(runs_of, [])
        shared = runs_shared_with(entry, source)
        if not shared:
            raise ExperimentError(
                f"none of the {len(source)} runs of {runs_of} under {root} is a run of {entry_id}: it needs a method of "
                "the same name, conf and overrides, on one of its envs"
            )
        out = Path(out) if out is not None else root / "report"
        return [report_entry(entry_id, shared, out / entry_id, root, reps, runs_of=runs_of)]
    groups = collect(root, entry_id)
    if not groups:
        what = f"experiment {entry_id}" if entry_id else "any experiment"
        raise ExperimentError(f"no runs of {what} under {root} (sb3-plasticity run writes them)")
    out = Path(out) if out is not None else root / "report"
    return [report_entry(eid, runs, out / eid, root, reps) for eid, runs in groups.items()]
