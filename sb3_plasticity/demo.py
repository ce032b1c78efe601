"""The main job: a short training run with a plasticity method that writes TensorBoard logs.

``python -m sb3_plasticity`` trains TD3 on Pendulum-v1 for 5000 steps on the CPU with ReDo (reset every 1000
steps, the NE paper's ReDo-TD3 baseline) and :class:`~sb3_plasticity.PlasticityMonitorCallback`, shows SB3's
progress bar and prints where the logs are. ``--method`` picks another method, or ``none`` for the monitor alone.
"""

from __future__ import annotations

import argparse
import os

from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity.methods import (
    CBPCallback,
    CycleResetDistillCallback,
    GraMaResetCallback,
    PlasticityMonitorCallback,
    ReDoCallback,
    ResetCallback,
    ShrinkPerturbCallback,
)

ALGOS = ("td3", "ddpg", "sac", "ppo", "a2c")
# method name -> a factory for a callback that shows its effect within a few thousand steps
METHODS = {
    "none": None,
    "redo": lambda: ReDoCallback(reset_freq=1000),
    "regrama": lambda: GraMaResetCallback(reset_freq=1000),
    "reset": lambda: ResetCallback(reset_freq=2500),
    "shrink_perturb": lambda: ShrinkPerturbCallback(freq=1000),
    "cbp": lambda: CBPCallback(),
    "sbp": lambda: CycleResetDistillCallback(reset_freq=1000, reset_rate=0.1),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_plasticity", description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=ALGOS, default="td3")
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument(
        "--method",
        choices=tuple(METHODS),
        default="redo",
        help="plasticity method (default redo; sbp needs a stochastic actor: --algo sac, ppo or a2c)",
    )
    parser.add_argument("--timesteps", type=int, default=5000, help="env steps to train (default 5000)")
    parser.add_argument("--log-freq", type=int, default=500, help="env steps between plasticity measurements")
    parser.add_argument("--tensorboard-log", default="runs", help="TensorBoard root folder (default ./runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-progress-bar", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    """Run the job; returns the TensorBoard run folder."""
    from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3

    args = parse_args(argv)
    algo_cls = {"td3": TD3, "ddpg": DDPG, "sac": SAC, "ppo": PPO, "a2c": A2C}[args.algo]
    kwargs = {"learning_starts": 500} if args.algo in ("td3", "ddpg", "sac") else {}
    model = algo_cls("MlpPolicy", args.env, tensorboard_log=args.tensorboard_log, seed=args.seed, device=args.device, **kwargs)
    callback = PlasticityMonitorCallback(log_freq=args.log_freq)
    callbacks: list[BaseCallback] = [callback]
    method = METHODS[args.method]() if METHODS[args.method] is not None else None
    if method is not None:
        callbacks.insert(0, method)
    model.learn(args.timesteps, callback=callbacks, progress_bar=not args.no_progress_bar)
    run_dir = os.path.abspath(model.logger.dir)
    names = " + ".join(type(c).__name__ for c in callbacks)
    print(f"\nTrained {args.algo.upper()} on {args.env} for {model.num_timesteps} steps with {names}.")
    if method is not None:
        tags = f"plasticity/{method.method}/..."
        print(f"{type(method).__name__}: {method.n_events} events, {method.total_reset} neurons reset ({tags})")
    print(f"TensorBoard logs ({callback.n_logged} network measurements under plasticity/<network>/...): {run_dir}")
    print(f"Open them with:  tensorboard --logdir {os.path.abspath(args.tensorboard_log)}")
    return run_dir


if __name__ == "__main__":
    main()
