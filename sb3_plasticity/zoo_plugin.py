"""rl_zoo3 support for the package's own algorithms: ``--algo drqv2`` (:class:`~sb3_plasticity.DrQV2`).

rl_zoo3 looks algorithms up in the dict ``rl_zoo3.utils.ALGOS``, and its scripts check ``--algo`` against
``list(ALGOS)`` when they build their argument parser, before ``--gym-packages`` are imported. So
``python -m rl_zoo3.train --algo drqv2 --gym-packages sb3_plasticity`` cannot work: the name is rejected before
``sb3_plasticity`` is imported. Run rl_zoo3's scripts through this module instead; it adds the algorithms to
``ALGOS`` first and then runs the script with the remaining arguments, unchanged::

    python -m sb3_plasticity.zoo_plugin train --algo drqv2 --env sb3_plasticity/DMCPixels-walker-walk-v0 \\
        --gym-packages sb3_plasticity --conf-file zoo_configs/drqv2/drqv2.py -tb runs/drqv2 -f logs/drqv2
    python -m sb3_plasticity.zoo_plugin enjoy --algo drqv2 --env sb3_plasticity/DMCPixels-walker-walk-v0 \\
        --gym-packages sb3_plasticity -f logs/drqv2 --no-render

Scripts: ``train``, ``enjoy``, ``record_video``, ``record_training`` (``python -m rl_zoo3.<script>``). In your own
code call :func:`register_zoo_algos` before using rl_zoo3 (``ExperimentManager``, ``ALGOS["drqv2"]``); importing
``sb3_plasticity`` after rl_zoo3 registers them too (:func:`register_if_zoo_loaded`). Importing this module or
``sb3_plasticity`` never imports rl_zoo3.

Not supported for these algorithms: ``-optimize`` (rl_zoo3 has no hyperparameter sampler for them).

:func:`drqv2_settings` holds DrQ-v2's hyperparameters per DeepMind Control task for the conf files in
``zoo_configs/drqv2/``.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence
from typing import Any

from sb3_plasticity.algos import ZOO_ALGOS, register_if_zoo_loaded, register_zoo_algos

__all__ = [
    "DRQV2_DIFFICULTY",
    "DRQV2_SCHEDULES",
    "SCRIPTS",
    "ZOO_ALGOS",
    "drqv2_settings",
    "main",
    "register_if_zoo_loaded",
    "register_zoo_algos",
]

# the rl_zoo3 scripts this module runs (``python -m rl_zoo3.<name>``)
SCRIPTS = ("train", "enjoy", "record_video", "record_training")

# DrQ-v2's task groups (official cfgs/task/{easy,medium,hard}.yaml): exploration std schedule and training frames
DRQV2_SCHEDULES: dict[str, tuple[str, int]] = {
    "easy": ("linear(1.0,0.1,100000)", 1_100_000),
    "medium": ("linear(1.0,0.1,500000)", 3_100_000),
    "hard": ("linear(1.0,0.1,2000000)", 30_100_000),
}
# the group of each task of the papers (official cfgs/task/<domain>_<task>.yaml)
DRQV2_DIFFICULTY: dict[tuple[str, str], str] = {
    ("reacher", "easy"): "medium",
    ("reacher", "hard"): "medium",
    ("walker", "walk"): "easy",
    ("cartpole", "swingup_sparse"): "medium",
    ("quadruped", "run"): "medium",
    ("cheetah", "run"): "easy",
    ("humanoid", "stand"): "hard",
    ("humanoid", "walk"): "hard",
    ("humanoid", "run"): "hard",
}


def drqv2_settings(domain: str, task: str) -> dict[str, Any]:
    """rl_zoo3 hyperparameters of DrQ-v2 on a DeepMind Control pixel task (``sb3_plasticity/DMCPixels-*``, action
    repeat 2): DrQ-v2 App. B Table 1 / NE Table 3 and the task's std schedule from :data:`DRQV2_SCHEDULES` (the
    official task group; ``"medium"`` for tasks not in :data:`DRQV2_DIFFICULTY`). Everything but ``n_timesteps``,
    ``callback`` and the NE parts. ``buffer_size`` is 100,000 (SB3 stores ``obs`` and ``next_obs``: 1e6 would take
    127 GB; the official quadruped_run capacity is 100,000 too)."""
    schedule, _ = DRQV2_SCHEDULES[DRQV2_DIFFICULTY.get((domain, task), "medium")]
    return dict(
        policy="sb3_plasticity.DrQV2Policy",  # rl_zoo3 needs a dotted string, even in .py configs
        policy_kwargs=dict(net_arch=[1024, 1024], feature_dim=50),  # Table 1: hidden dim 1024, feature dim 50
        learning_rate=1e-4,  # Table 1
        buffer_size=100_000,
        learning_starts=2000,  # seed frames 4000 / action repeat 2
        batch_size=256,  # Table 1
        gamma=0.99,  # Table 1
        tau=0.01,  # Table 1: critic soft-update rate
        train_freq=2,  # Table 1: agent update frequency
        gradient_steps=1,
        n_steps=3,  # Table 1: n-step returns
        std_schedule=schedule,  # Sec. 3.2, official task groups
        std_clip=0.3,  # official stddev_clip
        augmentation_pad=4,  # Sec. 3.1
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m sb3_plasticity.zoo_plugin <script> [rl_zoo3 arguments...]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        print(f"usage: python -m sb3_plasticity.zoo_plugin {{{','.join(SCRIPTS)}}} [rl_zoo3 arguments ...]")
        return
    script, rest = args[0], args[1:]
    if script not in SCRIPTS:
        raise SystemExit(f"unknown rl_zoo3 script {script!r}; choose one of {list(SCRIPTS)}")
    register_zoo_algos()
    sys.argv = [f"rl_zoo3.{script}", *rest]
    runpy.run_module(f"rl_zoo3.{script}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
