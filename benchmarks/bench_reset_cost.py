"""Run-time cost of ReGraMa vs ReDo on BRO-net SAC (GraMa paper Sec. 4.2, Fig. 5 left), against plain BRO-net SAC.

What it measures, in one process: the wall time of ``model.learn`` for BRO-net SAC (GraMa App. A.1 / Table 3
network: ``BroNetSACPolicy`` width 256, actor 1 / critic 2 blocks, batch 128, replay ratio 2) three ways: plain,
with ``ReDoCallback`` (tau 0.02) and with ``GraMaResetCallback`` (tau 0.01), both every ``--freq`` env steps (App.
A.1: 1000). It reports

- ``ratio_<method>``: ``time(method) / time(plain)`` per round and over the sums (the end-to-end overhead: for
  ReGraMa this includes recording the gradients of one training pass per event, for ReDo the extra forward passes
  on a sampled batch);
- ``event_<method>_ms``: the mean time of one event, from its start to the reset done (ReDo: sample a batch, run
  the networks, score, reset, re-score for the logged ``_after`` ratio; ReGraMa: from arming the gradient capture
  to the end of the recorded training pass's resets, training pass included);
- ``score_reset_<method>_ms``: the mean time of the scoring and reset itself per event (the shared
  ``NeuronResetCallback.reset_groups``: the score of every neuron from the captured statistics, the selection and
  the surgery), which differs only in the statistic scored.

How: after an untimed warm-up round, ``--rounds`` rounds each run plain, ReDo and ReGraMa (order rotated every
round, so drift hits all three alike), each a fresh model with the same seed (``--seed + round``); only
``model.learn`` is timed with ``time.perf_counter()``, and on CUDA every timer reads after
``torch.cuda.synchronize()``. ``torch.set_num_threads(1)`` unless ``--threads 0``. The paper's numbers come from an
RTX3090: compare ratios, not seconds.

Reproduce (from the repository root; ``--device cuda`` on a GPU machine)::

    python benchmarks/bench_reset_cost.py --env sb3_plasticity/DMC-dog-walk-v0 --rounds 3 --timesteps 6000 \
        --device cuda --output benchmarks/results/reset_cost_bro_sac_dog_walk_cuda.json
    python benchmarks/bench_reset_cost.py --env Pendulum-v1 --rounds 1 --timesteps 2000   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch
from common import machine_info, write_results
from stable_baselines3 import SAC

import sb3_plasticity  # noqa: F401  (registers the DMC ids)
from sb3_plasticity import BroNetSACPolicy, GraMaResetCallback, ReDoCallback
from sb3_plasticity.methods.neuron_reset import TrainingPassScoring

METHODS = ("plain", "redo", "regrama")


def _sync(device: str) -> None:
    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(cls: type) -> type:
    """``cls`` with timers around its event and its ``reset_groups`` (the scoring and the reset)."""

    class Timed(cls):  # type: ignore[misc, valid-type]
        device_name = "cpu"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.event_s: list[float] = []
            self.score_reset_s: list[float] = []
            self._event_start: float | None = None

        def _now(self) -> float:
            _sync(self.device_name)
            return time.perf_counter()

        def reset_groups(self, groups, zero_grad: bool = False) -> None:
            start = self._now()
            super().reset_groups(groups, zero_grad)
            self.score_reset_s.append(self._now() - start)

        # ReDo: the whole event runs in _batch_event
        def _batch_event(self) -> None:
            start = self._now()
            super()._batch_event()
            self.event_s.append(self._now() - start)

        # ReGraMa: from arming the capture to the end of the recorded pass's resets, timed around its event
        # mechanism (NeuronResetCallback's TrainingPassScoring object)
        def _init_callback(self) -> None:
            super()._init_callback()
            events = self.events
            if isinstance(events, TrainingPassScoring) and not getattr(events, "_timed", False):
                start_event, finish_event = events._start_event, events._finish_event

                def timed_start() -> None:
                    self._event_start = self._now()
                    start_event()

                def timed_finish() -> None:
                    finish_event()
                    if self._event_start is not None:
                        self.event_s.append(self._now() - self._event_start)
                        self._event_start = None

                events._start_event, events._finish_event, events._timed = timed_start, timed_finish, True

    Timed.__name__ = f"Timed{cls.__name__}"
    return Timed


TimedReDo = timed(ReDoCallback)
TimedGraMa = timed(GraMaResetCallback)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="sb3_plasticity/DMC-dog-walk-v0")
    p.add_argument("--timesteps", type=int, default=6000, help="env steps per timed run")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3, help="rounds of (plain, redo, regrama)")
    p.add_argument("--freq", type=int, default=1000, help="reset_freq of both methods (GraMa App. A.1: 1000)")
    p.add_argument("--redo-tau", type=float, default=0.02)
    p.add_argument("--grama-tau", type=float, default=0.01)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--gradient-steps", type=int, default=2, help="replay ratio (Table 3: 2)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: keep torch's default)")
    p.add_argument("--warmup-timesteps", type=int, default=None, help="untimed warm-up (default learning-starts+500)")
    p.add_argument("--output", default=None, help="optional JSON path for the results")
    args = p.parse_args(argv)
    if args.warmup_timesteps is None:
        args.warmup_timesteps = args.learning_starts + 500
    return args


def timed_run(args: argparse.Namespace, method: str, seed: int, timesteps: int) -> dict[str, Any]:
    """A fresh BRO-net SAC trained ``timesteps`` steps with ``method``; its times."""
    callback = None
    if method == "redo":
        callback = TimedReDo(reset_freq=args.freq, tau=args.redo_tau)
    elif method == "regrama":
        callback = TimedGraMa(reset_freq=args.freq, tau=args.grama_tau)
    if callback is not None:
        callback.device_name = args.device
    with tempfile.TemporaryDirectory(prefix="bench_reset_cost_") as tb_dir:
        model = SAC(
            BroNetSACPolicy,
            args.env,
            policy_kwargs=dict(width=args.width, actor_blocks=1, critic_blocks=2),
            learning_starts=args.learning_starts,
            batch_size=args.batch_size,
            train_freq=1,
            gradient_steps=args.gradient_steps,
            seed=seed,
            device=args.device,
            tensorboard_log=tb_dir,
            verbose=0,
        )
        _sync(args.device)
        start = time.perf_counter()
        model.learn(total_timesteps=timesteps, callback=callback)
        _sync(args.device)
        elapsed = time.perf_counter() - start
        model.get_env().close()
    out: dict[str, Any] = {"method": method, "seconds": elapsed}
    if callback is not None:
        out.update(
            events=len(callback.event_s),
            resets=callback.total_reset,
            event_ms=1000 * statistics.mean(callback.event_s) if callback.event_s else float("nan"),
            score_reset_ms=1000 * statistics.mean(callback.score_reset_s) if callback.score_reset_s else float("nan"),
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    info = machine_info()
    if args.device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    print(
        f"BRO-net SAC on {args.env}: {args.rounds} rounds x {args.timesteps} steps, learning_starts={args.learning_starts}, "
        f"resets every {args.freq} steps, device={args.device}, torch threads={info['torch_threads']}",
        flush=True,
    )
    if args.warmup_timesteps > 0:
        for method in METHODS:
            r = timed_run(args, method, args.seed, args.warmup_timesteps)
            print(f"warm-up {method}: {r['seconds']:.2f} s (not counted)", flush=True)

    rounds: list[dict[str, Any]] = []
    for i in range(args.rounds):
        order = METHODS[i % 3 :] + METHODS[: i % 3]
        runs = {m: timed_run(args, m, args.seed + i, args.timesteps) for m in order}
        row: dict[str, Any] = {f"{m}_s": runs[m]["seconds"] for m in METHODS}
        for m in ("redo", "regrama"):
            row[f"ratio_{m}"] = runs[m]["seconds"] / runs["plain"]["seconds"]
            row[f"event_{m}_ms"] = runs[m]["event_ms"]
            row[f"score_reset_{m}_ms"] = runs[m]["score_reset_ms"]
            row[f"events_{m}"] = runs[m]["events"]
            row[f"resets_{m}"] = runs[m]["resets"]
        rounds.append(row)
        print(
            f"round {i}: plain {row['plain_s']:.2f} s, redo {row['redo_s']:.2f} s (x{row['ratio_redo']:.3f}, event "
            f"{row['event_redo_ms']:.1f} ms, score+reset {row['score_reset_redo_ms']:.1f} ms), regrama "
            f"{row['regrama_s']:.2f} s (x{row['ratio_regrama']:.3f}, event {row['event_regrama_ms']:.1f} ms, "
            f"score+reset {row['score_reset_regrama_ms']:.1f} ms)",
            flush=True,
        )

    summary: dict[str, Any] = {f"median_{m}_s": statistics.median(r[f"{m}_s"] for r in rounds) for m in METHODS}
    for m in ("redo", "regrama"):
        summary[f"ratio_{m}_of_sums"] = sum(r[f"{m}_s"] for r in rounds) / sum(r["plain_s"] for r in rounds)
        summary[f"event_{m}_ms"] = statistics.median(r[f"event_{m}_ms"] for r in rounds)
        summary[f"score_reset_{m}_ms"] = statistics.median(r[f"score_reset_{m}_ms"] for r in rounds)
    summary["regrama_over_redo"] = summary["median_regrama_s"] / summary["median_redo_s"]
    print()
    for key, value in summary.items():
        print(f"{key}: {value:.4g}")
    return write_results(args, info, rounds, summary)


if __name__ == "__main__":
    main()
