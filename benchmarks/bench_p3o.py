"""Wall-time and extra-epoch cost of P3O (PPO + CycleResetDistillCallback) against plain PPO.

What it measures, for PPO on a Gymnasium env (default ``HalfCheetah-v5``) at the P3O paper's settings
(App. A.1, Table 3: n_steps 8192 with one env, minibatch 256, 10 epochs, lr 3e-4, gamma 0.99, clip 0.2,
actor and critic 3x256 tanh; SBP every 50,000 env steps, reset rate 0.01, alpha 0.4, tau 0.01; other PPO
settings SB3's defaults, as in ``zoo_configs/p3o/``):

- the wall-time ratio ``time(model.learn with P3O) / time(model.learn plain PPO)``;
- the extra epochs: the callback's total distillation epochs (``total_distill_epochs``) against PPO's own
  epochs (``model._n_updates``: ``n_epochs`` per rollout), their ratio (the paper's Table 2 "Epoch Ratio",
  there over whole runs) and the distillation epochs per event (Table 2's "Per-Reset Epochs");
- per event: its wall time, distillation epochs, ``kl_before`` / ``kl_final`` (KL(teacher || student) right
  after the reset and after distillation) and whether the epoch cap stopped it. From the mean event time a
  long-run ratio is projected: ``1 + (event seconds * n_steps / reset_freq) / (plain seconds per rollout)``,
  i.e. one event per ``reset_freq / n_steps`` rollouts as in a full-length run.

A P3O event runs at the start of the rollout after the update that crossed its ``reset_freq`` mark (the
callback's design: the teacher is the policy after that update). With 8192-step rollouts the 50,000 mark falls
in rollout 7, so its event runs when rollout 8 starts: the default ``--timesteps 65536`` (8 rollouts) holds
exactly one event; 57344 (7 rollouts) would hold none.

How: everything runs in one process. After an optional untimed warm-up pair (imports, MuJoCo and torch lazy
initialisation; the P3O warm-up resets every rollout so that one distillation runs), the script runs
``--pairs`` alternating pairs ``plain, p3o, plain, p3o, ...`` so that machine drift (thermal state, other
processes) affects both variants equally. Each run builds a fresh model with ``verbose=0`` and
``tensorboard_log=<temp dir>`` for BOTH variants, so TensorBoard's own logging cost is in both; both runs of a
pair use the same seed (``--seed + pair``). Only ``model.learn(...)`` is timed, with ``time.perf_counter()``.
The script reports the per-pair times and ratios, the ratio of the medians and the ratio of the sums, the
epoch counts, and optionally writes them all as JSON.

``torch.set_num_threads(1)`` is set at start (``--threads``): on a small machine (2 CPU cores) torch's
intra-op thread pool competes with the env and with other processes, which adds noise. ``--threads 0`` keeps
torch's default.

Reproduce (from the repository root; on the 2-core reference machine a plain rollout took ~5.4 s on one
thread, so ~45 s per run and ~8 minutes for 5 pairs with the warm-up)::

    python benchmarks/bench_p3o.py --pairs 5 --output benchmarks/results/p3o_ppo_halfcheetah.json

Smoke test (an event every rollout, two rollouts per run)::

    python benchmarks/bench_p3o.py --timesteps 16384 --reset-freq 8192 --warmup-timesteps 0
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import torch
from common import machine_info, write_results
from stable_baselines3 import PPO

from sb3_plasticity import CycleResetDistillCallback

# P3O paper, App. A.1, Table 3 (PPO and SBP rows); everything else is SB3's PPO default.
N_STEPS = 8192
PPO_KWARGS: dict[str, Any] = {
    "n_steps": N_STEPS,
    "batch_size": 256,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "gamma": 0.99,
    "clip_range": 0.2,
    "policy_kwargs": {"net_arch": {"pi": [256, 256, 256], "vf": [256, 256, 256]}, "activation_fn": torch.nn.Tanh},
}
SBP_KWARGS: dict[str, Any] = {"reset_rate": 0.01, "alpha": 0.4, "distill_tau": 0.01}


class TimedCycleResetDistill(CycleResetDistillCallback):
    """The same callback; also keeps, per event, its wall time and the ``distill/*`` values it logs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: list[dict[str, float]] = []
        self._current: dict[str, float] | None = None

    def record(self, key: str, value: float) -> None:
        super().record(key, value)
        if self._current is not None and key.startswith(f"{self.method}/distill/"):
            self._current[key.rsplit("/", 1)[1]] = float(value)

    def run_event(self) -> dict[tuple[str, str], int]:
        self._current = {"step": float(self.num_timesteps)}
        start = time.perf_counter()
        try:
            return super().run_event()
        finally:
            self._current["seconds"] = time.perf_counter() - start
            self.events.append(self._current)
            self._current = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument(
        "--timesteps", type=int, default=8 * N_STEPS, help="env steps per timed run (default 65536: one event at 50,000)"
    )
    p.add_argument("--reset-freq", type=int, default=50_000, help="env steps between P3O events (Table 3: 50,000)")
    p.add_argument(
        "--max-distill-epochs",
        type=int,
        default=None,
        help="cap on distillation epochs per event (default: the callback's default)",
    )
    p.add_argument("--pairs", type=int, default=1, help="alternating (plain, p3o) pairs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: keep torch's default)")
    p.add_argument(
        "--warmup-timesteps",
        type=int,
        default=2 * N_STEPS,
        help="untimed warm-up pair; its P3O run resets every rollout (default 16384; 0: none)",
    )
    p.add_argument("--output", default=None, help="optional JSON path for the results")
    return p.parse_args(argv)


def timed_run(
    args: argparse.Namespace, p3o: bool, seed: int, timesteps: int, reset_freq: int
) -> tuple[float, PPO, TimedCycleResetDistill | None]:
    """Build a fresh model, time ``model.learn``; return (seconds, model, callback or None)."""
    with tempfile.TemporaryDirectory(prefix="bench_p3o_") as tb_dir:
        model = PPO("MlpPolicy", args.env, seed=seed, device=args.device, tensorboard_log=tb_dir, verbose=0, **PPO_KWARGS)
        callback = None
        if p3o:
            extra = {} if args.max_distill_epochs is None else {"max_distill_epochs": args.max_distill_epochs}
            callback = TimedCycleResetDistill(reset_freq=reset_freq, **SBP_KWARGS, **extra)
        start = time.perf_counter()
        model.learn(total_timesteps=timesteps, callback=callback)
        elapsed = time.perf_counter() - start
        model.get_env().close()
    return elapsed, model, callback


def pair_result(plain_s: float, p3o_s: float, model: PPO, callback: TimedCycleResetDistill) -> dict[str, Any]:
    """Times and epoch counts of one (plain, p3o) pair."""
    n_events = len(callback.events)
    distill_epochs = callback.total_distill_epochs
    ppo_epochs = model._n_updates
    return {
        "plain_s": plain_s,
        "p3o_s": p3o_s,
        "ratio": p3o_s / plain_s,
        "rollouts": model.num_timesteps // N_STEPS,
        "n_events": n_events,
        "event_s": sum(e["seconds"] for e in callback.events),
        "distill_epochs": distill_epochs,
        "ppo_epochs": ppo_epochs,
        "epoch_ratio": distill_epochs / max(ppo_epochs, 1),
        "distill_epochs_per_event": distill_epochs / n_events if n_events else None,
        "events": callback.events,
    }


def print_table(pairs: list[dict[str, Any]]) -> None:
    """Per-pair times, ratios and epochs."""
    print(
        f"{'pair':>4}  {'plain [s]':>10}  {'p3o [s]':>9}  {'ratio':>7}  {'events':>6}  {'event [s]':>9}  "
        f"{'distill ep':>10}  {'ppo ep':>6}  {'ep ratio':>8}"
    )
    for i, r in enumerate(pairs):
        print(
            f"{i:>4}  {r['plain_s']:>10.2f}  {r['p3o_s']:>9.2f}  {r['ratio']:>7.3f}  {r['n_events']:>6d}  "
            f"{r['event_s']:>9.2f}  {r['distill_epochs']:>10d}  {r['ppo_epochs']:>6d}  {r['epoch_ratio']:>8.4f}"
        )
    for i, r in enumerate(pairs):
        for e in r["events"]:
            print(
                f"pair {i} event at step {int(e['step'])}: {e['seconds']:.2f} s, {int(e.get('epochs', 0))} distillation "
                f"epochs, kl_before {e.get('kl_before', float('nan')):.3g}, kl_final {e.get('kl_final', float('nan')):.3g}, "
                f"cap_hit {int(e.get('cap_hit', 0))}"
            )


def summarize(args: argparse.Namespace, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios over all pairs, epoch totals and the projected long-run ratio."""
    plain = [r["plain_s"] for r in pairs]
    p3o = [r["p3o_s"] for r in pairs]
    events = [e for r in pairs for e in r["events"]]
    distill_epochs = sum(r["distill_epochs"] for r in pairs)
    ppo_epochs = sum(r["ppo_epochs"] for r in pairs)
    summary: dict[str, Any] = {
        "median_plain_s": statistics.median(plain),
        "median_p3o_s": statistics.median(p3o),
        "ratio_of_medians": statistics.median(p3o) / statistics.median(plain),
        "ratio_of_sums": sum(p3o) / sum(plain),
        "pair_ratios": [r["ratio"] for r in pairs],
        "n_events": len(events),
        "distill_epochs": distill_epochs,
        "ppo_epochs": ppo_epochs,
        "epoch_ratio": distill_epochs / max(ppo_epochs, 1),
        "distill_epochs_per_event": distill_epochs / len(events) if events else None,
        "mean_event_s": statistics.mean(e["seconds"] for e in events) if events else None,
    }
    if events:
        plain_per_rollout = sum(plain) / sum(r["rollouts"] for r in pairs)
        summary["plain_s_per_rollout"] = plain_per_rollout
        summary["projected_long_run_ratio"] = 1 + summary["mean_event_s"] * N_STEPS / args.reset_freq / plain_per_rollout
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, optionally write JSON; return the results."""
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    info = machine_info()
    print(
        f"PPO vs P3O on {args.env}: {args.pairs} pairs x {args.timesteps} steps (rollouts of {N_STEPS}), P3O every "
        f"{args.reset_freq} steps, device={args.device}, cpu_count={info['cpu_count']}, "
        f"torch threads={info['torch_threads']}",
        flush=True,
    )
    if args.warmup_timesteps > 0:
        for p3o in (False, True):
            t, _, _ = timed_run(args, p3o, args.seed, args.warmup_timesteps, min(args.reset_freq, N_STEPS))
            print(f"warm-up {'p3o' if p3o else 'plain'}: {t:.2f} s (not counted)", flush=True)

    pairs: list[dict[str, Any]] = []
    for i in range(args.pairs):
        plain_s, _, _ = timed_run(args, False, args.seed + i, args.timesteps, args.reset_freq)
        p3o_s, model, callback = timed_run(args, True, args.seed + i, args.timesteps, args.reset_freq)
        pairs.append(pair_result(plain_s, p3o_s, model, callback))
        print(f"pair {i}: plain {plain_s:.2f} s, p3o {p3o_s:.2f} s, ratio {p3o_s / plain_s:.3f}", flush=True)

    summary = summarize(args, pairs)
    print()
    print_table(pairs)
    print(f"median: plain {summary['median_plain_s']:.2f} s, p3o {summary['median_p3o_s']:.2f} s")
    print(f"time ratio (sum p3o / sum plain): {summary['ratio_of_sums']:.3f}")
    print(f"time ratio (median p3o / median plain): {summary['ratio_of_medians']:.3f}")
    print(
        f"epochs: {summary['distill_epochs']} distillation vs {summary['ppo_epochs']} PPO, epoch ratio "
        f"{summary['epoch_ratio']:.4f}, {summary['n_events']} events"
    )
    if summary["n_events"]:
        print(
            f"per event: {summary['distill_epochs_per_event']:.2f} distillation epochs, {summary['mean_event_s']:.2f} s; "
            f"projected long-run time ratio (one event per {args.reset_freq / N_STEPS:.2f} rollouts): "
            f"{summary['projected_long_run_ratio']:.3f}"
        )
    else:
        print(
            "no P3O event ran: an event runs at the start of the rollout after the one that crossed its mark, so "
            "--timesteps must cover at least one more rollout"
        )

    return write_results(args, info, pairs, summary)


if __name__ == "__main__":
    main()
