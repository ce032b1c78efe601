"""Wall-time overhead of a plasticity callback on SB3 off-policy training, against plain SB3.

What it measures: the ratio ``time(model.learn with the callback) / time(model.learn without it)`` for
TD3 (or SAC, DQN, and with sb3-contrib TQC, CrossQ, QR-DQN: ``--algo``; DQN and QR-DQN need a discrete env
such as ``--env CartPole-v1``) on a Gymnasium env (default ``HalfCheetah-v5``), with the callback (``--method``:
``monitor`` = PlasticityMonitorCallback, ``redo`` = ReDoCallback, ``regrama`` = GraMaResetCallback) at its
default frequency (``log_freq`` / ``reset_freq``, read from the callback's signature: 1000 env steps).

``--method ne`` compares NE-TD3 with TD3: the method run uses ``MaskedTD3Policy`` (``MaskedSACPolicy`` for SAC),
``ExperienceReviewBuffer`` and ``NeuroplasticExpansionCallback`` (grow_interval 20000, NE App. C), the plain run
SB3's ``MlpPolicy`` and ``ReplayBuffer`` with the same ``--net-arch`` and ``--batch-size``. ``--end-step`` sets the
callback's T_end (a paper run's length, so that the event grows as much as it would in one).

``--adam`` sets the optimizer of both variants: ``default`` (no ``optimizer_kwargs``: what a user gets, SB3's
per-tensor Adam for the plain run and the masked policies' default ``Adam(fused=True)`` for NE), ``fused`` (both
``fused=True``; ``--fused-adam`` is the same) or ``unfused`` (both ``fused=False``: SB3's per-tensor CPU Adam, the
masked policies' optimizer before they defaulted to fused).

How: everything runs in one process. After one untimed warm-up pair (imports, MuJoCo and torch lazy
initialisation), the script runs ``--pairs`` alternating pairs ``plain, method, plain, method, ...`` so
that machine drift (thermal state, other processes such as a test run) affects both variants equally.
Each run builds a fresh model with ``verbose=0`` and ``tensorboard_log=<temp dir>`` for BOTH variants, so
TensorBoard's own logging cost is in both; both runs of a pair use the same seed (``--seed + pair``).
Only ``model.learn(...)`` is timed, with ``time.perf_counter()`` (wall time) and ``time.process_time()`` (this
process's CPU time, all its threads: on a machine shared with other jobs it moves less than wall time, since time
spent waiting for a core is not counted; cache and memory-bandwidth contention still are).
The script reports the per-pair times and ratios, the ratio of the medians and the ratio of the sums, and optionally
writes them as JSON.

``torch.set_num_threads(1)`` is set at start: on a small machine (the reference run used 2 CPU cores)
torch's intra-op thread pool competes with the env and with other processes, which adds noise; one
thread gives steadier timings. Pass ``--threads 0`` to keep torch's default.

Reproduce (from the repository root)::

    python benchmarks/bench_overhead.py --method monitor --algo td3 --pairs 5 --timesteps 6000 \
        --output benchmarks/results/monitor_td3_halfcheetah.json
    python benchmarks/bench_overhead.py --method redo --algo sac --pairs 5 --timesteps 6000 \
        --output benchmarks/results/redo_sac_halfcheetah.json
    python benchmarks/bench_overhead.py --method ne --algo td3 --pairs 3 --timesteps 6000 --freq 5000 --net-arch 256 128 \
        --batch-size 128 --end-step 6000000 --output benchmarks/results/ne_td3_halfcheetah_default_adam.json
    python benchmarks/bench_overhead.py --method ne --algo td3 --pairs 3 --timesteps 21000 --net-arch 256 128 \
        --batch-size 128 --end-step 6000000 --fused-adam --output benchmarks/results/ne_td3_halfcheetah_fused_adam.json
    python benchmarks/bench_overhead.py --method ne --algo td3 --pairs 3 --timesteps 6000 --freq 5000 --net-arch 256 128 \
        --batch-size 128 --end-step 6000000 --adam unfused --output benchmarks/results/ne_td3_halfcheetah_unfused_adam.json
    OMP_NUM_THREADS=1 python benchmarks/bench_overhead.py --method regrama --algo tqc --pairs 5 --timesteps 3000 \
        --output benchmarks/results/regrama_tqc_halfcheetah.json
    OMP_NUM_THREADS=1 python benchmarks/bench_overhead.py --method redo --algo dqn --env CartPole-v1 --pairs 5 \
        --timesteps 20000 --output benchmarks/results/redo_dqn_cartpole.json
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import tempfile
import time
from typing import Any

import torch
from common import machine_info, write_results
from stable_baselines3 import DQN, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_plasticity import (
    ExperienceReviewBuffer,
    GraMaResetCallback,
    MaskedSACPolicy,
    MaskedTD3Policy,
    NeuroplasticExpansionCallback,
    PlasticityMonitorCallback,
    ReDoCallback,
)

ALGOS: dict[str, type[BaseAlgorithm]] = {"td3": TD3, "sac": SAC, "dqn": DQN}
try:  # sb3-contrib's algorithms (the [contrib] extra): TQC, CrossQ, QR-DQN
    from sb3_contrib import QRDQN, TQC, CrossQ

    ALGOS.update({"tqc": TQC, "crossq": CrossQ, "qrdqn": QRDQN})
except ImportError:  # pragma: no cover - without the extra, only SB3's algorithms
    pass
# method -> (callback class, name of its frequency parameter)
METHODS = {
    "monitor": (PlasticityMonitorCallback, "log_freq"),
    "redo": (ReDoCallback, "reset_freq"),
    "regrama": (GraMaResetCallback, "reset_freq"),
    "ne": (NeuroplasticExpansionCallback, "grow_interval"),
}
MASKED_POLICIES = {"td3": MaskedTD3Policy, "sac": MaskedSACPolicy}
ADAM_SETTINGS = ("default", "fused", "unfused")


def default_freq(method: str) -> int:
    """The callback's default frequency, read from its signature."""
    cls, name = METHODS[method]
    return int(inspect.signature(cls.__init__).parameters[name].default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=sorted(METHODS), default="monitor")
    p.add_argument("--algo", choices=sorted(ALGOS), default="td3")
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--timesteps", type=int, default=6000, help="env steps per timed run")
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=3, help="alternating (plain, method) pairs")
    p.add_argument("--freq", type=int, default=None, help="the callback's log_freq / reset_freq (default: its default)")
    p.add_argument("--net-arch", type=int, nargs="+", default=None, help="hidden sizes (default: SB3's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: SB3's")
    p.add_argument(
        "--adam",
        choices=ADAM_SETTINGS,
        default="default",
        help="both variants' Adam: default (no optimizer_kwargs), fused (fused=True), unfused (fused=False)",
    )
    p.add_argument("--fused-adam", action="store_true", help="the same as --adam fused")
    p.add_argument("--end-step", type=int, default=None, help="ne: the callback's end_step (default: the run's length)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: keep torch's default)")
    p.add_argument(
        "--warmup-timesteps", type=int, default=None, help="untimed warm-up pair (default learning-starts+500; 0: none)"
    )
    p.add_argument("--output", default=None, help="optional JSON path for the results")
    args = p.parse_args(argv)
    if args.fused_adam:
        args.adam = "fused"
    if args.warmup_timesteps is None:
        args.warmup_timesteps = args.learning_starts + 500
    if args.freq is None:
        args.freq = default_freq(args.method)
    return args


def uses_fused_adam(model: BaseAlgorithm) -> bool:
    """Whether every optimizer of the model's policy is a fused Adam."""
    groups = [
        g
        for m in model.policy.modules()
        if isinstance(getattr(m, "optimizer", None), torch.optim.Optimizer)
        for g in m.optimizer.param_groups
    ]
    return bool(groups) and all(bool(g.get("fused")) for g in groups)


def timed_run(args: argparse.Namespace, monitor: bool, seed: int, timesteps: int) -> tuple[float, float, int, bool]:
    """Build a fresh model, time ``model.learn``; return (wall seconds, CPU seconds, events: monitor measurements or
    resets, whether the policy's optimizers are fused Adam)."""
    kwargs: dict[str, Any] = {}
    policy_kwargs: dict[str, Any] = {}
    if args.net_arch is not None:
        policy_kwargs["net_arch"] = list(args.net_arch)
    if args.adam != "default":
        policy_kwargs["optimizer_kwargs"] = dict(fused=args.adam == "fused")
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    if args.batch_size is not None:
        kwargs["batch_size"] = args.batch_size
    policy: Any = "MlpPolicy"
    cls, freq_name = METHODS[args.method]
    callback_kwargs: dict[str, Any] = {freq_name: args.freq}
    if args.method == "ne" and monitor:
        policy = MASKED_POLICIES[args.algo]
        kwargs["replay_buffer_class"] = ExperienceReviewBuffer
        callback_kwargs["end_step"] = args.end_step
    with tempfile.TemporaryDirectory(prefix="bench_overhead_") as tb_dir:
        model = ALGOS[args.algo](
            policy,
            args.env,
            learning_starts=args.learning_starts,
            seed=seed,
            device=args.device,
            tensorboard_log=tb_dir,
            verbose=0,
            **kwargs,
        )
        callback = cls(**callback_kwargs) if monitor else None
        fused = uses_fused_adam(model)
        start, start_cpu = time.perf_counter(), time.process_time()
        model.learn(total_timesteps=timesteps, callback=callback)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        model.get_env().close()
    if callback is None:
        return elapsed, cpu, 0, fused
    return elapsed, cpu, callback.n_logged if args.method == "monitor" else callback.n_events, fused


def print_table(pairs: list[dict[str, float]]) -> None:
    """Per-pair times and ratios."""
    print(f"{'pair':>4}  {'plain [s]':>10}  {'method [s]':>11}  {'ratio':>7}  {'events':>6}")
    for i, r in enumerate(pairs):
        print(f"{i:>4}  {r['plain_s']:>10.2f}  {r['monitor_s']:>11.2f}  {r['ratio']:>7.3f}  {r['n_logged']:>6d}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, optionally write JSON; return the results."""
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    info = machine_info()
    print(
        f"{args.algo.upper()} on {args.env}: {args.pairs} pairs x {args.timesteps} steps, learning_starts="
        f"{args.learning_starts}, {args.method} every {args.freq} steps, device={args.device}, "
        f"cpu_count={info['cpu_count']}, torch threads={info['torch_threads']}",
        flush=True,
    )
    if args.warmup_timesteps > 0:
        for monitor in (False, True):
            t, _, _, _ = timed_run(args, monitor, args.seed, args.warmup_timesteps)
            print(f"warm-up {args.method if monitor else 'plain'}: {t:.2f} s (not counted)", flush=True)

    pairs: list[dict[str, Any]] = []
    for i in range(args.pairs):
        plain_s, plain_cpu_s, _, plain_fused = timed_run(args, False, args.seed + i, args.timesteps)
        monitor_s, monitor_cpu_s, n_logged, monitor_fused = timed_run(args, True, args.seed + i, args.timesteps)
        pairs.append(
            {
                "plain_s": plain_s,
                "monitor_s": monitor_s,
                "ratio": monitor_s / plain_s,
                "n_logged": n_logged,
                "plain_cpu_s": plain_cpu_s,
                "monitor_cpu_s": monitor_cpu_s,
                "cpu_ratio": monitor_cpu_s / plain_cpu_s,
                "plain_fused_adam": plain_fused,
                "monitor_fused_adam": monitor_fused,
            }
        )
        print(
            f"pair {i}: plain {plain_s:.2f} s, {args.method} {monitor_s:.2f} s, ratio {monitor_s / plain_s:.3f}; CPU time "
            f"plain {plain_cpu_s:.2f} s, {args.method} {monitor_cpu_s:.2f} s, ratio {monitor_cpu_s / plain_cpu_s:.3f} "
            f"(fused Adam: plain {plain_fused}, {args.method} {monitor_fused})",
            flush=True,
        )

    plain = [r["plain_s"] for r in pairs]
    mon = [r["monitor_s"] for r in pairs]
    summary = {
        "median_plain_s": statistics.median(plain),
        "median_monitor_s": statistics.median(mon),
        "ratio_of_medians": statistics.median(mon) / statistics.median(plain),
        "ratio_of_sums": sum(mon) / sum(plain),
        "pair_ratios": [r["ratio"] for r in pairs],
        "cpu_ratio_of_sums": sum(r["monitor_cpu_s"] for r in pairs) / sum(r["plain_cpu_s"] for r in pairs),
        "cpu_ratio_of_medians": statistics.median(r["monitor_cpu_s"] for r in pairs)
        / statistics.median(r["plain_cpu_s"] for r in pairs),
        "pair_cpu_ratios": [r["cpu_ratio"] for r in pairs],
    }
    print()
    print_table(pairs)
    print(f"median: plain {summary['median_plain_s']:.2f} s, {args.method} {summary['median_monitor_s']:.2f} s")
    print(f"overhead ratio (sum {args.method} / sum plain): {summary['ratio_of_sums']:.3f}")
    print(f"overhead ratio (median {args.method} / median plain): {summary['ratio_of_medians']:.3f}")
    print(f"CPU-time ratio (sum {args.method} / sum plain): {summary['cpu_ratio_of_sums']:.3f}")

    return write_results(args, info, pairs, summary)


if __name__ == "__main__":
    main()
