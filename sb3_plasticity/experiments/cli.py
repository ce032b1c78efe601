"""The ``sb3-plasticity`` command: list, show, run and report the papers' experiments."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from sb3_plasticity.experiments.entries import PAPERS, ExperimentError, expand, get_entry, load_registry

DEFAULT_OUT = "experiments"
PACKAGE_ALGOS = ("drqv2", "dacer")  # sb3_plasticity.algos.ZOO_ALGOS, named here to keep this module light

EPILOG = """workflow:
  sb3-plasticity list --paper ne                      # what exists, and what each entry still needs
  sb3-plasticity show ne/fig6                         # the runs it expands to, with their commands
  sb3-plasticity run ne/fig6 --budget-scale 0.01 --seeds 2 --jobs 2
  sb3-plasticity report experiments                   # figures, CIs and report.md under experiments/report/
"""


# The package's env modules and Gymnasium's MuJoCo envs by entry point, and the extra each needs (pyproject.toml).
_ENTRY_POINT_EXTRAS: tuple[tuple[str, str], ...] = (
    ("gymnasium.envs.mujoco", "mujoco"),
    ("sb3_plasticity.envs.cycle_friction", "mujoco"),
    ("sb3_plasticity.envs.continual", "mujoco"),
    ("sb3_plasticity.envs.dmc", "dmc"),
    ("shimmy", "dmc"),
    ("ale_py", "atari"),
)


def _require(extra: str, what: str) -> None:
    """An :class:`ExperimentError` (one line from :func:`main`) naming ``extra`` when one of its modules is missing."""
    from sb3_plasticity.extras import missing_modules

    missing = missing_modules(extra)
    if missing:
        raise ExperimentError(
            f'{what} needs the extra [{extra}] (missing: {", ".join(missing)}): pip install "sb3-plasticity[{extra}]"'
        )


def env_extra(env_id: str) -> str | None:
    """The extra that the env ``env_id`` needs (``"mujoco"``, ``"dmc"``, ``"atari"``), or None (core Gymnasium, or not
    known before rl-zoo imports its ``--gym-packages``)."""
    import gymnasium as gym

    if env_id.startswith("ALE/") or "NoFrameskip" in env_id:  # ale_py registers these ids when it is imported
        return "atari"
    spec = gym.registry.get(env_id)  # the package's ids are registered: importing sb3_plasticity did it
    entry_point = spec.entry_point if spec is not None else None
    if isinstance(entry_point, str):
        for prefix, extra in _ENTRY_POINT_EXTRAS:
            if entry_point.startswith(prefix):
                return extra
    return None


def _cmd_list(args: argparse.Namespace) -> int:
    registry = load_registry()
    papers = sorted({e.paper for e in registry.values()})
    if args.paper is not None and args.paper not in papers:
        raise ExperimentError(f"unknown paper {args.paper!r}; allowed: {', '.join(papers)}")
    entries = [e for e in registry.values() if args.paper is None or e.paper == args.paper]
    if args.runnable:
        entries = [e for e in entries if e.status == "runnable"]
    width = max((len(e.id) for e in entries), default=2)
    print(f"{'id':<{width}}  {'status':<8}  {'algo':<5} {'runs':>5}  shows")
    for e in entries:
        runs = len(e.methods) * len(e.envs) * e.seeds
        print(f"{e.id:<{width}}  {e.status:<8}  {e.algo:<5} {runs:>5}  {e.shows}")
        if args.needs:
            for line in e.missing():
                print(f"{'':<{width}}  needs: {line.split(': ', 1)[1]}")
    counts = {s: sum(e.status == s for e in entries) for s in ("runnable", "partial", "needs")}
    print(
        f"\n{len(entries)} entries: {counts['runnable']} runnable, {counts['partial']} partial, {counts['needs']} need parts"
    )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    e = get_entry(args.id)
    print(f"{e.id} ({e.kind}): {e.shows}")
    per_env = "".join(f", {env}: {n}" for env, n in e.env_budgets.items())
    print(f"algo {e.algo}; paper budget {e.budget} env steps per run{per_env}; {e.seeds} seeds; baseline {e.baseline}")
    print(f"envs: {', '.join(e.envs)}")
    print(f"metrics: {', '.join(e.metrics)}")
    if e.grid:
        print(f"grid: {e.grid['param']} in {e.grid['values']}")
    for line in e.missing():
        print(f"needs: {line.split(': ', 1)[1]}")
    print("methods:")
    for name, m in e.methods.items():
        extra = f" overrides {m.overrides}" if m.overrides else ""
        extra += f" (needs: {m.needs})" if m.needs else ""
        print(f"  {name}: --algo {m.algo} --conf-file zoo_configs/{m.conf}{extra}")
    if e.paper_numbers:
        print(f"paper numbers: {e.paper_numbers.get('metric')} ({e.paper_numbers.get('statistic', '')})")
    if e.notes:
        print(f"notes: {e.notes}")
    methods = args.methods or e.runnable_methods
    if not methods or e.needs:
        return 0
    runs = expand(e, methods, args.envs, args.seeds, args.timesteps, args.budget_scale)
    print(f"\n{len(runs)} runs (method x env x seed), each trained by rl_zoo3's ExperimentManager as:")
    for run in runs:
        hyper = " ".join(f"{k.split('.', 1)[1]}:{v!r}" for k, v in run.overrides.items() if k.startswith("hyperparams."))
        other = {k: v for k, v in run.overrides.items() if not k.startswith("hyperparams.")}
        # rl-zoo checks --algo before importing --gym-packages: the package's own algorithms go through its plugin
        train = "sb3_plasticity.zoo_plugin train" if run.algo in PACKAGE_ALGOS else "rl_zoo3.train"
        cmd = (
            f"python -m {train} --algo {run.algo} --env {run.env} --gym-packages sb3_plasticity "
            f"--conf-file zoo_configs/{run.conf} -n {run.timesteps} --seed {run.seed}"
            f" -tb {DEFAULT_OUT}/{run.rel_dir}/tb"
        )
        if hyper:
            cmd += f" --hyperparams {hyper}"
        if other:
            cmd += f"  # + registry overrides {other}"
        print(f"  [{run.method} | {run.env} | seed {run.seed}] {cmd}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from sb3_plasticity.experiments.entries import check_runs
    from sb3_plasticity.experiments.runner import Runner, RunOptions

    e = get_entry(args.id)
    runs = expand(e, args.methods, args.envs, args.seeds, args.timesteps, args.budget_scale)
    # before any run starts, rather than every run failing inside its worker
    _require("zoo", "sb3-plasticity run (rl-zoo trains every run)")
    for env in sorted({run.env for run in runs}):
        extra = env_extra(env)
        if extra is not None:
            _require(extra, f"{e.id} (env {env})")
    check_runs(runs)
    options = RunOptions(
        jobs=args.jobs,
        threads=args.threads,
        device=args.device,
        checkpoint_freq=args.checkpoint_freq,
        eval_freq=args.eval_freq,
        verbose=args.verbose,
    )
    runner = Runner(runs, Path(args.out), options, backend=args.backend, ray_address=args.ray_address)
    summary = runner.run()
    print(
        f"{e.id}: {summary['done']} runs trained, {summary['skipped']} already done, {summary['failed']} failed. "
        f"Report: sb3-plasticity report {args.out} --id {e.id}"
    )
    return 1 if summary["failed"] else 0


def _cmd_report(args: argparse.Namespace) -> int:
    _require("report", "sb3-plasticity report")
    from sb3_plasticity.experiments.report import make_report

    if args.id is not None:
        get_entry(args.id)
    if args.runs_of is not None:
        get_entry(args.runs_of)
    out = Path(args.out) if args.out else None
    paths = make_report(Path(args.dir), args.id, out, reps=args.reps, runs_of=args.runs_of)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sb3-plasticity",
        description="Every figure and table of the NE, SBP/P3O and GraMa papers as one command: list the registered "
        "experiments, show the runs one expands to, run them (locally or on Ray) through rl_zoo3, report them "
        "with figures and rliable confidence intervals.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,show,run,report}")

    p = sub.add_parser("list", help="the registered experiments and their status")
    p.add_argument("--paper", help=f"only this paper's entries ({', '.join(PAPERS)})")
    p.add_argument("--runnable", action="store_true", help="only entries whose every part is built")
    p.add_argument("--needs", action="store_true", help="print what each entry still needs")
    p.set_defaults(func=_cmd_list)

    def selection(p: argparse.ArgumentParser) -> None:
        p.add_argument("id", help="experiment id, e.g. ne/fig6 (sb3-plasticity list)")
        p.add_argument("--seeds", type=_positive_int, help="number of seeds, run as 0..N-1 (default: the paper's)")
        p.add_argument("--envs", nargs="+", metavar="ENV", help="a subset of the entry's env ids")
        p.add_argument("--methods", nargs="+", metavar="METHOD", help="a subset of the entry's methods")
        budget = p.add_mutually_exclusive_group()
        budget.add_argument(
            "--budget-scale", type=_positive_float, metavar="F", help="fraction of the paper's env steps per run"
        )
        budget.add_argument("--timesteps", type=_positive_int, metavar="N", help="env steps per run")

    p = sub.add_parser("show", help="the runs an experiment expands to, with their commands")
    selection(p)
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser(
        "run",
        help="train an experiment's runs (finished runs are skipped, interrupted ones resume)",
        description="Train every run of an experiment through rl_zoo3's ExperimentManager into "
        "OUT/<id>/<method>/<env>/seed_<k>/. Finished runs are skipped; an interrupted run (Ctrl-C, a crash, a lost "
        "node) continues from its last checkpoint when the same command is run again.",
    )
    selection(p)
    p.add_argument("--jobs", type=_positive_int, default=1, help="runs at once (default 1)")
    p.add_argument(
        "--threads", type=_positive_int, default=1, help="torch threads per run (default 1; keep jobs x threads <= cores)"
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local processes or Ray tasks")
    p.add_argument("--ray-address", help="an existing Ray cluster's address (default: start a local Ray)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto", help="PyTorch device (default auto)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"runs folder (default ./{DEFAULT_OUT})")
    p.add_argument("--checkpoint-freq", type=_positive_int, help="env steps between checkpoints (default: run / 10)")
    p.add_argument(
        "--eval-freq",
        type=int,
        default=-1,
        help="rl-zoo evaluation every N env steps (default -1: none; the report then uses the training return)",
    )
    p.add_argument("--verbose", type=int, default=0, help="rl-zoo/SB3 verbosity inside each run's train.log")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="figures, rliable CIs and report.md from a runs folder")
    p.add_argument("dir", help="the runs folder given to run --out")
    p.add_argument("--id", help="only this experiment")
    p.add_argument("--out", help="report folder (default DIR/report)")
    p.add_argument("--reps", type=_positive_int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument(
        "--from",
        dest="runs_of",
        metavar="ID",
        help="with --id: report it from the runs made for entry ID (the methods with the same conf and overrides)",
    )
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ExperimentError as exc:
        print(f"sb3-plasticity: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def quote(argv: list[str]) -> str:
    return shlex.join(argv)


if __name__ == "__main__":
    sys.exit(main())
