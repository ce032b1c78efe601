"""One run of an experiment, trained by rl_zoo3's own ``ExperimentManager``.

``python -m sb3_plasticity.experiments.worker RUN_DIR`` reads ``RUN_DIR/run.json`` (written by the runner) and
trains that method on that env with that seed, exactly as ``python -m rl_zoo3.train --conf-file ...`` would
(conf file, callbacks, eval, TensorBoard), with three additions:

- the registry's overrides are applied to the conf's entry before rl-zoo pre-processes it;
- a checkpoint (model, replay buffer, VecNormalize statistics) is written every ``checkpoint_freq`` env steps at the
  start of a rollout, after the previous update, so that an interrupted run continues from it:
  ``learn(target - done, reset_num_timesteps=False)`` ends at the same total step count;
- ``progress.json`` tells the runner the steps done, and ``done.json`` marks a finished run.

Layout of ``RUN_DIR``: ``run.json``, ``hyperparams.yml`` (the resolved hyperparameters), ``tb/`` (TensorBoard),
``zoo/`` (rl-zoo's log folder: ``config.yml``, ``args.yml``, the final model), ``checkpoint/``, ``train.log``,
``progress.json``, ``done.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity.experiments.files import (
    CHECKPOINT_DIR,
    DONE_FILE,
    PROGRESS_FILE,
    RUN_FILE,
    checkpoint_steps,
    write_json,
)
from sb3_plasticity.schedule import EveryN


def _plain(value: Any) -> Any:
    """A yaml-safe form of a hyperparameter: classes and objects become their dotted name or repr."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


class RunCallback(BaseCallback):
    """Writes ``progress.json`` and the periodic checkpoint at the start of a rollout (after the last update).

    The checkpoints are due at the multiples of ``checkpoint_freq`` (:class:`~sb3_plasticity.schedule.EveryN`): one at
    the first rollout start at or after each multiple, none at or after ``target``; a resumed ``learn()`` continues at
    the first multiple after its start step.

    :param run_dir: the run's folder.
    :param env_name: the env id (the checkpoint's VecNormalize file is named after it).
    :param target: the run's total env steps.
    :param checkpoint_freq: env steps between checkpoints (a positive integer).
    :param progress_every_s: seconds between writes of ``progress.json`` (default 2).
    """

    def __init__(self, run_dir: Path, env_name: str, target: int, checkpoint_freq: int, progress_every_s: float = 2.0):
        super().__init__()
        self.run_dir, self.env_name, self.target, self.checkpoint_freq = run_dir, env_name, target, checkpoint_freq
        self.progress_every_s = progress_every_s
        self._last_write = 0.0
        self.checkpoints = EveryN(checkpoint_freq, name="checkpoint_freq")

    def _on_training_start(self) -> None:
        self.checkpoints.start(self.num_timesteps)
        self._progress(force=True)

    def _progress(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_write >= self.progress_every_s:
            self._last_write = now
            write_json(
                self.run_dir / PROGRESS_FILE,
                {"num_timesteps": self.num_timesteps, "target": self.target, "time": now, "pid": os.getpid()},
            )

    def _on_rollout_start(self) -> None:
        if self.num_timesteps < self.target and self.checkpoints.poll(self.num_timesteps):
            save_checkpoint(self.model, self.run_dir, self.env_name)

    def _on_step(self) -> bool:
        self._progress()
        return True


def _make_manager_class():
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_plasticity.algos import register_zoo_algos

    register_zoo_algos()  # --algo drqv2 and the package's other algorithms, in rl-zoo's ALGOS table
    from stable_baselines3.common.base_class import BaseAlgorithm

    from sb3_plasticity.experiments.entries import apply_overrides

    class RunManager(ExperimentManager):
        """rl-zoo's ExperimentManager with the registry's overrides, the run folder and resumption."""

        def __init__(self, run_dir: Path, overrides: dict[str, Any], resume_steps: int, target: int, **kwargs):
            self.overrides, self.resume_steps, self.target = overrides, resume_steps, target
            self.run_dir = run_dir
            super().__init__(**kwargs)
            # One fixed folder per run (rl-zoo would number <env>_<k> folders), so that reruns find their files.
            self.save_path = str(run_dir / "zoo")
            self.params_path = f"{self.save_path}/{self.env_name}"

        def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
            hyperparams, _ = super().read_hyperparameters()
            hyperparams = apply_overrides(hyperparams, self.overrides)
            saved = {key: hyperparams[key] for key in sorted(hyperparams)}
            (self.run_dir / "hyperparams.yml").write_text(yaml.safe_dump(_plain(saved), sort_keys=True))
            return hyperparams, saved

        def _save_config(self, saved_hyperparams: dict[str, Any]) -> None:
            # rl-zoo's enjoy reads config.yml back with yaml.load: classes must be written as their dotted names.
            super()._save_config(_plain(saved_hyperparams))

        def create_callbacks(self) -> None:
            super().create_callbacks()
            freq = int(self.args.checkpoint_freq)
            self.callbacks.append(RunCallback(self.run_dir, str(self.env_name), self.target, freq))

        def learn(self, model: BaseAlgorithm) -> None:
            kwargs: dict[str, Any] = {"reset_num_timesteps": self.resume_steps == 0, "tb_log_name": "run"}
            if self.log_interval > -1:
                kwargs["log_interval"] = self.log_interval
            if self.callbacks:
                kwargs["callback"] = self.callbacks
            try:
                model.learn(self.n_timesteps, **kwargs)
            finally:
                if model.env is not None:
                    model.env.close()

    return RunManager


def save_checkpoint(model: Any, run_dir: Path, env_name: str) -> None:
    """Model, replay buffer and VecNormalize statistics into ``run_dir/checkpoint`` (replaced as a whole)."""
    final = run_dir / CHECKPOINT_DIR
    tmp = run_dir / (CHECKPOINT_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save(tmp / "model.zip")
    if hasattr(model, "save_replay_buffer") and getattr(model, "replay_buffer", None) is not None:
        model.save_replay_buffer(tmp / "replay_buffer.pkl")
    vec_normalize = model.get_vec_normalize_env()
    if vec_normalize is not None:
        # rl-zoo looks for <dir of the trained agent>/<env name>/vecnormalize.pkl
        (tmp / env_name).mkdir()
        vec_normalize.save(str(tmp / env_name / "vecnormalize.pkl"))
    write_json(tmp / "meta.json", {"num_timesteps": int(model.num_timesteps), "time": time.time()})
    old = run_dir / (CHECKPOINT_DIR + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def run(run_dir: Path) -> int:
    """Train (or continue) the run in ``run_dir``; 0 when it reached its target steps."""
    config = json.loads((run_dir / RUN_FILE).read_text())
    spec, options = config["spec"], config["options"]
    if (run_dir / DONE_FILE).exists():
        return 0
    threads = int(options.get("threads") or 1)
    import torch as th

    th.set_num_threads(threads)
    import sb3_plasticity  # noqa: F401  (registers the environments, like --gym-packages sb3_plasticity)
    from sb3_plasticity.experiments.entries import zoo_configs_dir

    target = int(spec["timesteps"])
    resume_steps = checkpoint_steps(run_dir)
    trained_agent = str(run_dir / CHECKPOINT_DIR / "model.zip") if resume_steps else ""
    env_tag = spec["env"].replace("/", "-")
    args = argparse.Namespace(
        **spec,
        conf_file=str(zoo_configs_dir() / spec["conf"]),
        device=options.get("device", "auto"),
        threads=threads,
        checkpoint_freq=max(1, int(options.get("checkpoint_freq") or max(1, target // 10))),
        resume_steps=resume_steps,
    )
    RunManager = _make_manager_class()
    manager = RunManager(
        run_dir=run_dir,
        overrides=spec["overrides"],
        resume_steps=resume_steps,
        target=target,
        args=args,
        algo=spec["algo"],
        env_id=spec["env"],
        log_folder=str(run_dir / "zoo"),
        tensorboard_log=str(run_dir / "tb"),
        n_timesteps=max(1, target - resume_steps),
        eval_freq=int(options.get("eval_freq") or -1),
        n_eval_episodes=int(options.get("eval_episodes") or 5),
        trained_agent=trained_agent,
        seed=int(spec["seed"]),
        log_interval=int(options.get("log_interval", -1)),
        save_replay_buffer=False,
        verbose=int(options.get("verbose", 0)),
        device=options.get("device", "auto"),
        config=args.conf_file,
    )
    print(f"run {spec['entry_id']} {spec['method']} {spec['env']} seed {spec['seed']}: target {target} steps", flush=True)
    if resume_steps:
        print(f"resuming from the checkpoint at {resume_steps} steps", flush=True)
    start = time.time()
    model, _ = manager.setup_experiment()
    if resume_steps and model.num_timesteps != resume_steps:
        raise RuntimeError(f"checkpoint says {resume_steps} steps, the loaded model {model.num_timesteps}")
    manager.learn(model)
    if model.num_timesteps < target:
        print(f"stopped at {model.num_timesteps} of {target} steps; run the same command to resume", flush=True)
        return 3
    manager.save_trained_model(model)
    write_json(
        run_dir / PROGRESS_FILE,
        {"num_timesteps": int(model.num_timesteps), "target": target, "time": time.time(), "pid": os.getpid()},
    )
    write_json(
        run_dir / DONE_FILE,
        {
            "num_timesteps": int(model.num_timesteps),
            "resumed_from": resume_steps,
            "wall_s": round(time.time() - start, 2),
            "env_tag": env_tag,
        },
    )
    # The final model is in zoo/; the checkpoint (and its replay buffer) is no longer needed.
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sb3_plasticity.experiments.worker", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        return run(args.run_dir)
    except KeyboardInterrupt:
        print("interrupted; run the same command to resume from the last checkpoint", flush=True)
        return 130


if __name__ == "__main__":
    sys.exit(main())
