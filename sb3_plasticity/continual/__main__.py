"""``python -m sb3_plasticity.continual``: class-incremental CIFAR-100 with vanilla / ReDo / ReGraMa (GraMa Fig. 5)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sb3_plasticity.continual.data import load_cifar100, synthetic_blobs
from sb3_plasticity.continual.harness import METHODS, ContinualClassification, ContinualConfig

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    d = ContinualConfig()
    p = argparse.ArgumentParser(
        prog="python -m sb3_plasticity.continual",
        description=(
            "Class-incremental classification (GraMa paper Fig. 5 right; Dohare et al. 2024): an MLP learns new "
            "classes every --epochs-per-task epochs, with no intervention, ReDo or ReGraMa resets at each switch. "
            "Logs test accuracy and the GraMa inactive ratio to TensorBoard."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="folder holding cifar-100-python/{train,test} (the python version)")
    src.add_argument("--synthetic", action="store_true", help="Gaussian blobs (3x8x8, 20 classes) instead of CIFAR-100")
    p.add_argument("--method", choices=METHODS, default=d.method)
    p.add_argument("--tau", type=float, default=None, help="reset threshold (default: ReDo 0.02, ReGraMa 0.01)")
    p.add_argument("--max-reset-fraction", type=float, default=None)
    p.add_argument("--n-classes", type=int, default=None, help="classes used (default: all)")
    p.add_argument("--initial-classes", type=int, default=d.initial_classes)
    p.add_argument("--classes-per-task", type=int, default=d.classes_per_task)
    p.add_argument("--epochs-per-task", type=int, default=d.epochs_per_task)
    p.add_argument("--hidden", type=int, nargs="+", default=list(d.hidden))
    p.add_argument("--activation", default=d.activation)
    p.add_argument("--optimizer", choices=("sgd", "adam"), default=d.optimizer)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--score-batch", type=int, default=d.score_batch)
    p.add_argument("--measure-batch", type=int, default=d.measure_batch)
    p.add_argument("--dormant-tau", type=float, default=d.dormant_tau)
    p.add_argument("--grama-tau", type=float, default=d.grama_tau)
    p.add_argument("--no-shuffle-classes", action="store_true", help="keep the label order instead of a seeded shuffle")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument(
        "--logdir", type=Path, default=None, help="TensorBoard folder (default: runs/continual/<data>_<method>_s<seed>)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    data = synthetic_blobs(n_classes=20, seed=args.seed) if args.synthetic else load_cifar100(args.data)
    config = ContinualConfig(
        method=args.method,
        tau=args.tau,
        max_reset_fraction=args.max_reset_fraction,
        n_classes=args.n_classes,
        initial_classes=args.initial_classes,
        classes_per_task=args.classes_per_task,
        epochs_per_task=args.epochs_per_task,
        hidden=tuple(args.hidden),
        activation=args.activation,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        score_batch=args.score_batch,
        measure_batch=args.measure_batch,
        dormant_tau=args.dormant_tau,
        grama_tau=args.grama_tau,
        shuffle_classes=not args.no_shuffle_classes,
        seed=args.seed,
        device=args.device,
    )
    name = "synthetic" if args.synthetic else "cifar100"
    logdir = args.logdir or Path("runs") / "continual" / f"{name}_{args.method}_s{args.seed}"
    run = ContinualClassification(data, config, logdir)
    print(f"{run.n_tasks} tasks, {run.n_classes} classes, {config.epochs_per_task} epochs each; logging to {logdir}")
    result = run.run()
    for row in result.tasks:
        print(
            f"task {row['task']:3d}  classes {row['n_classes']:3d}  test accuracy {row['accuracy']:.3f}  "
            f"grama_inactive_ratio {row['grama_inactive_ratio']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
