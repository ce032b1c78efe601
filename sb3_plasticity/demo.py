"""The main job: a short training run with a plasticity method that writes TensorBoard logs.

``python -m sb3_plasticity`` trains NE-TD3 on Pendulum-v1 for 5000 steps on the CPU: ``MaskedTD3Policy`` at 25%
density, :class:`~sb3_plasticity.ExperienceReviewBuffer` and Neuroplastic Expansion growing the networks every 500
steps (``plasticity/<network>/density`` climbs from 0.25), with :class:`~sb3_plasticity.PlasticityMonitorCallback`;
it shows SB3's progress bar and prints where the logs are. ``--method`` picks another method (on SB3's dense
``MlpPolicy``), or ``none`` for the monitor alone.

On the CPU it runs torch with one thread (``--threads``): the networks are tiny, intra-op threads gain nothing, and on
a small machine shared with other jobs (two processes with two torch threads each on two cores) they make every
small op many times slower.
"""

from __future__ import annotations

import argparse
import os

from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity.buffers import ExperienceReviewBuffer
from sb3_plasticity.methods import (
    CBPCallback,
    CycleResetDistillCallback,
    GraMaResetCallback,
    NeuroplasticExpansionCallback,
    PlasticityMonitorCallback,
    ReDoCallback,
    ResetCallback,
    ShrinkPerturbCallback,
)
from sb3_plasticity.policies import MaskedActorCriticPolicy, MaskedSACPolicy, MaskedTD3Policy

ALGOS = ("td3", "ddpg", "sac", "ppo", "a2c")
# method name -> a factory for a callback that shows its effect within a few thousand steps
METHODS = {
    "none": None,
    "ne": lambda: NeuroplasticExpansionCallback(grow_interval=500, grow_rate=0.5),
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
        default="ne",
        help="plasticity method (default ne, Neuroplastic Expansion; sbp needs a stochastic actor: --algo sac, ppo or a2c)",
    )
    parser.add_argument("--timesteps", type=int, default=5000, help="env steps to train (default 5000)")
    parser.add_argument("--log-freq", type=int, default=500, help="env steps between plasticity measurements")
    parser.add_argument("--tensorboard-log", default="runs", help="TensorBoard root folder (default ./runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: 1 on the CPU, torch's own choice on a GPU; 0: torch's own choice)",
    )
    parser.add_argument("--no-progress-bar", action="store_true")
    return parser.parse_args(argv)


def torch_threads(threads: int | None, device: str) -> int:
    """The torch thread count to set: ``threads`` if given, else 1 when the model runs on the CPU; 0 means leave
    torch's default."""
    if threads is not None:
        if threads < 0:
            raise ValueError(f"--threads must be >= 0, got {threads}")
        return threads
    import torch as th

    on_cpu = device == "cpu" or (device == "auto" and not th.cuda.is_available())
    return 1 if on_cpu else 0


def main(argv: list[str] | None = None) -> str:
    """Run the job; returns the TensorBoard run folder."""
    from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3

    args = parse_args(argv)
    threads = torch_threads(args.threads, args.device)
    if threads > 0:
        import torch as th

        th.set_num_threads(threads)
    algo_cls = {"td3": TD3, "ddpg": DDPG, "sac": SAC, "ppo": PPO, "a2c": A2C}[args.algo]
    off_policy = args.algo in ("td3", "ddpg", "sac")
    kwargs: dict = {"learning_starts": 500} if off_policy else {}
    policy = "MlpPolicy"
    if args.method == "ne":  # a masked policy that starts sparse, and the experience review buffer
        policy = {"sac": MaskedSACPolicy, "ppo": MaskedActorCriticPolicy, "a2c": MaskedActorCriticPolicy}.get(
            args.algo, MaskedTD3Policy
        )
        if off_policy:
            kwargs.update(replay_buffer_class=ExperienceReviewBuffer, replay_buffer_kwargs=dict(review_window=100))
    model = algo_cls(policy, args.env, tensorboard_log=args.tensorboard_log, seed=args.seed, device=args.device, **kwargs)
    callback = PlasticityMonitorCallback(log_freq=args.log_freq)
    callbacks: list[BaseCallback] = [callback]
    method = METHODS[args.method]() if METHODS[args.method] is not None else None
    if method is not None:
        callbacks.insert(0, method)
    model.learn(args.timesteps, callback=callbacks, progress_bar=not args.no_progress_bar)
    run_dir = os.path.abspath(model.logger.dir)
    names = " + ".join(type(c).__name__ for c in callbacks)
    print(f"\nTrained {args.algo.upper()} on {args.env} for {model.num_timesteps} steps with {names}.")
    if isinstance(method, NeuroplasticExpansionCallback):
        density = ", ".join(f"{net} {method.density(net):.2f}" for net in method.masked)
        print(
            f"{type(method).__name__}: {method.n_events} events, {method.total_grown} connections grown, "
            f"{method.total_pruned} pruned; density now {density} "
            f"(plasticity/<network>/density, plasticity/{method.method}/...)"
        )
    elif method is not None:
        tags = f"plasticity/{method.method}/..."
        print(f"{type(method).__name__}: {method.n_events} events, {method.total_reset} neurons reset ({tags})")
    print(f"TensorBoard logs ({callback.n_logged} network measurements under plasticity/<network>/...): {run_dir}")
    print(f"Open them with:  tensorboard --logdir {os.path.abspath(args.tensorboard_log)}")
    return run_dir


if __name__ == "__main__":
    main()
