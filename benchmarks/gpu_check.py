"""Every method on TD3, SAC and PPO on a device (CUDA by default): it runs, leaves every tensor on the model's
device, and what it costs in steps per second against the plain algorithm in the same process.

    python benchmarks/gpu_check.py --device cuda --timesteps 3000 --output benchmarks/results/gpu_check.json

For each algorithm: a plain run, then one run per method (event frequencies small enough that each method acts
several times), each on a fresh model with the same seed; after each run :func:`sb3_plasticity.devices.
misplaced_tensors` lists any tensor of the policy, its optimizers, ``model.plasticity_state`` or the callback that is
not on the model's device. The JSON has steps/s per run, the ratio to the plain run, the events and the misplaced
tensors; the script exits 1 if any run failed or misplaced a tensor. ``--device cpu`` runs the same checks on the CPU
(a smoke test of the script itself).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from common import machine_info, write_results
from stable_baselines3 import PPO, SAC, TD3

from sb3_plasticity import (
    CBPCallback,
    CycleResetDistillCallback,
    ExperienceReviewBuffer,
    GraMaResetCallback,
    MaskedActorCriticPolicy,
    MaskedSACPolicy,
    MaskedTD3Policy,
    NeuroplasticExpansionCallback,
    PlasticityInjectionCallback,
    PlasticityMonitorCallback,
    ReDoCallback,
    ResetCallback,
    ShrinkPerturbCallback,
)
from sb3_plasticity.devices import misplaced_tensors

ALGOS: dict[str, tuple[type, str, dict[str, Any]]] = {
    "td3": (TD3, "Pendulum-v1", dict(learning_starts=500, batch_size=256)),
    "sac": (SAC, "Pendulum-v1", dict(learning_starts=500, batch_size=256)),
    "ppo": (PPO, "Pendulum-v1", dict(n_steps=512, batch_size=128, n_epochs=4)),
}
MASKED = {"td3": MaskedTD3Policy, "sac": MaskedSACPolicy, "ppo": MaskedActorCriticPolicy}


def methods(freq: int) -> dict[str, tuple[Callable[[], Any], tuple[str, ...]]]:
    """name -> (callback factory, algorithms it runs on)."""
    every = ("td3", "sac", "ppo")
    return {
        "monitor": (lambda: PlasticityMonitorCallback(log_freq=freq), every),
        "redo": (lambda: ReDoCallback(reset_freq=freq), every),
        "regrama": (lambda: GraMaResetCallback(reset_freq=freq), every),
        "reset": (lambda: ResetCallback(reset_freq=freq), every),
        "shrink_perturb": (lambda: ShrinkPerturbCallback(freq=freq), every),
        "cbp": (lambda: CBPCallback(replacement_rate=1e-3, maturity_threshold=50, log_freq=freq), every),
        "sbp": (lambda: CycleResetDistillCallback(reset_freq=freq, reset_rate=0.1, max_distill_epochs=3), ("sac", "ppo")),
        "ne": (lambda: NeuroplasticExpansionCallback(grow_interval=freq, grow_rate=0.3), every),
        "injection": (lambda: PlasticityInjectionCallback(inject_at=0.5), every),
    }


def _events(callback: Any) -> int:
    for name in ("n_events", "n_injected", "n_logged"):
        if callback is not None and hasattr(callback, name):
            return int(getattr(callback, name))
    return 0


def run(algo: str, method: str | None, args: argparse.Namespace) -> dict[str, Any]:
    cls, env_id, kwargs = ALGOS[algo]
    kwargs = dict(kwargs, policy_kwargs=dict(net_arch=[256, 256]))
    policy: Any = "MlpPolicy"
    callback = None
    if method is not None:
        make, _ = methods(args.freq)[method]
        callback = make()
        if method == "ne":
            policy = MASKED[algo]
            if algo != "ppo":
                kwargs["replay_buffer_class"] = ExperienceReviewBuffer
    model = cls(policy, env_id, seed=args.seed, device=args.device, verbose=0, **kwargs)
    start = time.perf_counter()
    model.learn(args.timesteps, callback=callback)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    out = {
        "algo": algo,
        "method": method or "plain",
        "steps_per_s": model.num_timesteps / elapsed,
        "seconds": elapsed,
        "events": _events(callback),
        "misplaced": misplaced_tensors(model, *([callback] if callback else [])),
        "device": str(model.device),
    }
    model.get_env().close()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:1, cpu")
    p.add_argument("--timesteps", type=int, default=3000, help="env steps per run")
    p.add_argument("--freq", type=int, default=500, help="event frequency of every method (env steps)")
    p.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    p.add_argument("--methods", nargs="+", default=None, help="default: all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: keep torch's default)")
    p.add_argument("--output", default=None, help="JSON path for the results")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu for a smoke test", file=sys.stderr)
        return 2
    info = machine_info()
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    rows: list[dict[str, Any]] = []
    failed = False
    for algo in args.algos:
        plain = run(algo, None, args)
        rows.append(plain)
        print(f"{algo} plain: {plain['steps_per_s']:.0f} steps/s", flush=True)
        for name, (_, algos) in methods(args.freq).items():
            if algo not in algos or (args.methods and name not in args.methods):
                continue
            try:
                row = run(algo, name, args)
            except Exception:  # a method that fails on the device is a result, not the end of the check
                row = {"algo": algo, "method": name, "error": traceback.format_exc(limit=5)}
            if "error" in row:
                failed = True
                print(f"{algo} {name}: FAILED\n{row['error']}", flush=True)
            else:
                row["ratio_to_plain"] = plain["steps_per_s"] / row["steps_per_s"]
                failed |= bool(row["misplaced"])
                print(
                    f"{algo} {name}: {row['steps_per_s']:.0f} steps/s, time ratio {row['ratio_to_plain']:.3f}, "
                    f"{row['events']} events, misplaced tensors: {row['misplaced'] or 'none'}",
                    flush=True,
                )
            rows.append(row)
    write_results(args, info, rows, {"failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
