"""Run an experiment's runs: locally in ``--jobs`` processes, or as Ray tasks; skip finished runs, resume the rest.

Each run is one ``python -m sb3_plasticity.experiments.worker RUN_DIR`` process (rl_zoo3's ``ExperimentManager``
inside), so a run is trained exactly as ``python -m rl_zoo3.train`` trains it, a crash or Ctrl-C of one run leaves
the others alone, and torch in each process uses its share of the cores: two processes with two torch threads each
on two cores run many times slower, not two times.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sb3_plasticity.experiments.entries import ExperimentError, RunSpec
from sb3_plasticity.experiments.files import DONE_FILE, PROGRESS_FILE, RUN_FILE, read_json, write_json

__all__ = ["RunOptions", "Runner", "run_state"]

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class RunOptions:
    """How runs are executed.

    :param jobs: runs at once (local backend; Ray schedules by ``threads`` CPUs per task).
    :param threads: torch threads per run (default 1: SB3's small networks gain little from more, and several runs
        with several threads each on a few cores run many times slower).
    :param device: ``cpu``, ``cuda`` or ``auto`` (SB3's choice).
    :param checkpoint_freq: env steps between checkpoints (None: a tenth of the run).
    :param eval_freq: rl-zoo's ``--eval-freq`` in env steps (-1: no separate evaluation; the report then reads the
        training episodes' return, ``rollout/ep_rew_mean``).
    """

    jobs: int = 1
    threads: int = 1
    device: str = "auto"
    checkpoint_freq: int | None = None
    eval_freq: int = -1
    eval_episodes: int = 5
    verbose: int = 0

    def threads_per_run(self) -> int:
        return self.threads

    def to_dict(self) -> dict[str, Any]:
        return {
            "threads": self.threads_per_run(),
            "device": self.device,
            "checkpoint_freq": self.checkpoint_freq,
            "eval_freq": self.eval_freq,
            "eval_episodes": self.eval_episodes,
            "verbose": self.verbose,
        }


def run_state(run_dir: Path) -> tuple[str, int, int]:
    """``(state, steps, target)`` of a run folder; state is ``done``, ``started`` or ``new``."""
    done = read_json(run_dir / DONE_FILE)
    progress = read_json(run_dir / PROGRESS_FILE) or {}
    config = read_json(run_dir / RUN_FILE) or {}
    target = int(config.get("spec", {}).get("timesteps", progress.get("target", 0)))
    if done:
        return "done", int(done["num_timesteps"]), target
    if progress:
        return "started", int(progress.get("num_timesteps", 0)), target
    return "new", 0, target


def worker_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "sb3_plasticity.experiments.worker", str(run_dir)]


def worker_env(threads: int) -> dict[str, str]:
    """The environment of a worker process: its thread share for torch, OpenMP and BLAS."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    env.setdefault("MUJOCO_GL", "egl")
    return env


def _execute(run_dir: Path, threads: int) -> int:
    """Run one worker process, its output appended to ``train.log``; its exit code."""
    with open(run_dir / "train.log", "ab") as log:
        proc = subprocess.Popen(worker_command(run_dir), stdout=log, stderr=subprocess.STDOUT, env=worker_env(threads))
        try:
            return proc.wait()
        except BaseException:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


def _ray_task(run_dir: str, threads: int) -> int:
    return _execute(Path(run_dir), threads)


class Runner:
    """Trains the runs of one entry under ``out`` (``out/<id>/<method>/<env>/seed_<k>/``).

    :param runs: the expanded runs (all of one entry).
    :param out: the output folder.
    :param options: how to execute them.
    :param backend: ``local`` or ``ray``.
    :param ray_address: an existing Ray cluster (``ray://...`` or ``auto``); None starts a local Ray instance.
    :param echo: where progress lines go (default: print).
    """

    def __init__(
        self,
        runs: Sequence[RunSpec],
        out: Path,
        options: RunOptions,
        backend: str = "local",
        ray_address: str | None = None,
        echo: Callable[[str], None] = print,
    ):
        if backend not in ("local", "ray"):
            raise ExperimentError(f"unknown backend {backend!r}; allowed: local, ray")
        if options.jobs < 1 or options.threads < 1:
            raise ExperimentError(f"--jobs and --threads must be >= 1, got {options.jobs} and {options.threads}")
        cores = os.cpu_count() or 1
        if backend == "local" and options.jobs * options.threads > cores:
            echo(
                f"warning: {options.jobs} jobs x {options.threads} threads > {cores} cores: runs will compete for the "
                "cores and each will run many times slower"
            )
        if options.device not in ("cpu", "cuda", "auto"):
            raise ExperimentError(f"unknown device {options.device!r}; allowed: cpu, cuda, auto")
        if backend == "ray":
            _import_ray()
        self.runs, self.out, self.options = list(runs), Path(out), options
        self.backend, self.ray_address, self.echo = backend, ray_address, echo

    def run_dir(self, run: RunSpec) -> Path:
        return self.out / run.rel_dir

    def prepare(self) -> list[Path]:
        """Write each run's ``run.json`` (keeping a started run's own) and the entry's ``plan.json``; the runs to do."""
        todo = []
        for run in self.runs:
            run_dir = self.run_dir(run)
            run_dir.mkdir(parents=True, exist_ok=True)
            existing = read_json(run_dir / RUN_FILE)
            if existing and existing["spec"] != run.to_dict():
                state = run_state(run_dir)[0]
                if state != "new":
                    raise ExperimentError(
                        f"{run_dir} holds a {state} run with other settings ({existing['spec']['timesteps']} steps, "
                        f"overrides {existing['spec']['overrides']}); use another --out or remove it"
                    )
            write_json(run_dir / RUN_FILE, {"spec": run.to_dict(), "options": self.options.to_dict()})
            if run_state(run_dir)[0] != "done":
                todo.append(run_dir)
        if self.runs:
            plan_path = self.out / self.runs[0].entry_id / PLAN_FILE
            plan = read_json(plan_path) or {"runs": []}
            known = {tuple(sorted(r.items())) for r in map(_hashable, plan["runs"])}
            for run in self.runs:
                if tuple(sorted(_hashable(run.to_dict()).items())) not in known:
                    plan["runs"].append(run.to_dict())
            write_json(plan_path, plan)
        return todo

    def run(self) -> dict[str, int]:
        """Train every run not yet done; a summary ``{"done": n, "failed": n, "skipped": n}``."""
        todo = self.prepare()
        skipped = len(self.runs) - len(todo)
        threads = self.options.threads_per_run()
        self.echo(
            f"{len(self.runs)} runs: {skipped} already done, {len(todo)} to run "
            f"({self.backend}, {self.options.jobs if self.backend == 'local' else 'Ray'} at once, "
            f"{threads} torch thread(s) each) under {self.out}"
        )
        results: dict[Path, int] = {}
        stop = threading.Event()
        monitor = threading.Thread(target=self._monitor, args=(todo, results, stop), daemon=True)
        monitor.start()
        try:
            if self.backend == "local":
                with ThreadPoolExecutor(max_workers=self.options.jobs) as pool:
                    for run_dir, code in zip(todo, pool.map(lambda d: _execute(d, threads), todo), strict=True):
                        results[run_dir] = code
            else:
                results.update(self._run_ray(todo, threads))
        except KeyboardInterrupt:
            self.echo("interrupted: run the same command again to resume from each run's last checkpoint")
            raise
        finally:
            stop.set()
            monitor.join()
        failed = [d for d, code in results.items() if code != 0]
        for run_dir in failed:
            self.echo(f"FAILED ({results[run_dir]}): {run_dir} (see {run_dir / 'train.log'})")
        return {"done": len(results) - len(failed), "failed": len(failed), "skipped": skipped}

    def _run_ray(self, todo: list[Path], threads: int) -> dict[Path, int]:
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.ray_address, include_dashboard=False, log_to_driver=False)
        try:
            num_gpus = 1 if self.options.device == "cuda" else 0
            task = ray.remote(num_cpus=threads, num_gpus=num_gpus, max_retries=0)(_ray_task)
            refs = {task.remote(str(run_dir), threads): run_dir for run_dir in todo}
            return {refs[ref]: code for ref, code in zip(refs, ray.get(list(refs)), strict=True)}
        finally:
            if started_here:
                ray.shutdown()

    def _monitor(self, todo: list[Path], results: dict[Path, int], stop: threading.Event) -> None:
        """Print runs done / running / left and each running run's steps, every few seconds."""
        last = ""
        interval = 2.0 if sys.stdout.isatty() else 30.0
        next_print = 0.0
        while not stop.wait(1.0):
            running = []
            done = 0
            for run_dir in todo:
                state, steps, target = run_state(run_dir)
                if state == "done":
                    done += 1
                elif run_dir in results:
                    continue
                elif state == "started" and _alive(run_dir):
                    running.append(f"{run_dir.relative_to(self.out)} {steps}/{target}")
            line = f"[{done} done / {len(running)} running / {len(todo) - done - len(running)} left] " + "; ".join(running)
            if line != last and time.time() >= next_print:
                self.echo(line)
                last, next_print = line, time.time() + interval


def _alive(run_dir: Path) -> bool:
    progress = read_json(run_dir / PROGRESS_FILE) or {}
    return time.time() - float(progress.get("time", 0)) < 120


def _hashable(run: dict[str, Any]) -> dict[str, Any]:
    return {k: (repr(sorted(v.items())) if isinstance(v, dict) else v) for k, v in run.items()}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExperimentError(
            '--backend ray needs Ray: pip install "sb3-plasticity[ray]" (or pip install "ray[default]")'
        ) from None
    return ray
