"""The main job: a short training run with a plasticity callback that writes TensorBoard logs.

``python -m sb3_plasticity`` trains TD3 on Pendulum-v1 for 5000 steps on the CPU with
:class:`~sb3_plasticity.PlasticityMonitorCallback`, shows SB3's progress bar and prints where the logs are.
"""

from __future__ import annotations

import argparse
import os

from sb3_plasticity.methods import PlasticityMonitorCallback

ALGOS = ("td3", "ddpg", "sac", "ppo", "a2c")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sb3_plasticity", description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=ALGOS, default="td3")
    parser.add_argument("--env", default="Pendulum-v1")
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
    model.learn(args.timesteps, callback=callback, progress_bar=not args.no_progress_bar)
    run_dir = os.path.abspath(model.logger.dir)
    print(f"\nTrained {args.algo.upper()} on {args.env} for {model.num_timesteps} steps with {type(callback).__name__}.")
    print(f"TensorBoard logs ({callback.n_logged} network measurements under plasticity/...): {run_dir}")
    print(f"Open them with:  tensorboard --logdir {os.path.abspath(args.tensorboard_log)}")
    return run_dir


if __name__ == "__main__":
    main()
