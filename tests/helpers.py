"""Shared helpers for the integration tests (no tests here): TensorBoard reading, tiny envs, hook counting."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.logger import KVWriter
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

PREFIX = "plasticity/"

# Network-level metrics of every network, and those logged for online (non-target) networks only.
NETWORK_METRICS = frozenset(
    {
        "dormant_ratio",
        "active_ratio",
        "active_ratio_per_sample",
        "activation_norm",
        "effective_rank",
        "weight_norm",
        "weight_l1",
    }
)
ONLINE_ONLY_METRICS = frozenset({"grama_inactive_ratio", "grad_norm"})
RATIO_METRICS = frozenset({"dormant_ratio", "active_ratio", "active_ratio_per_sample", "grama_inactive_ratio"})
NORM_METRICS = frozenset({"activation_norm", "weight_norm", "weight_l1", "grad_norm"})

Scalars = dict[str, list[tuple[int, float]]]


def event_files(log_dir: str | Path) -> list[Path]:
    """Every TensorBoard event file under ``log_dir`` (recursively), sorted."""
    return sorted(Path(log_dir).rglob("events.out.tfevents.*"))


def run_dirs(log_dir: str | Path) -> list[Path]:
    """The folders under ``log_dir`` (itself included) that hold event files, sorted (e.g. ``TD3_1``, ``TD3_2``)."""
    return sorted({f.parent for f in event_files(log_dir)})


def read_scalars(log_dir: str | Path) -> Scalars:
    """All scalars of all runs under ``log_dir``: ``{tag: [(step, value), ...]}`` sorted by step.

    Runs are merged, so pass a single run folder (see :func:`run_dirs`) to keep runs apart.
    """
    dirs = run_dirs(log_dir)
    if not dirs:
        raise AssertionError(f"no TensorBoard event file under {log_dir}")
    out: Scalars = {}
    for d in dirs:
        acc = EventAccumulator(str(d), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(values) for tag, values in out.items()}


def plasticity_scalars(scalars: Scalars) -> Scalars:
    return {tag: v for tag, v in scalars.items() if tag.startswith(PREFIX)}


def split_tag(tag: str) -> tuple[str, str | None, str]:
    """``plasticity/<network>[/<layer>]/<metric>`` -> ``(network, layer or None, metric)``."""
    parts = tag[len(PREFIX) :].split("/")
    if len(parts) == 2:
        return parts[0], None, parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise AssertionError(f"unexpected plasticity tag {tag!r}")


def logged_networks(scalars: Scalars) -> set[str]:
    return {split_tag(tag)[0] for tag in plasticity_scalars(scalars)}


def network_metrics(scalars: Scalars, network: str) -> set[str]:
    """Network-level metric names logged for ``network``."""
    found = set()
    for tag in plasticity_scalars(scalars):
        net, layer, metric = split_tag(tag)
        if net == network and layer is None:
            found.add(metric)
    return found


def layer_metrics(scalars: Scalars, network: str) -> dict[str, set[str]]:
    """``{layer: {metric, ...}}`` logged per layer for ``network``."""
    found: dict[str, set[str]] = {}
    for tag in plasticity_scalars(scalars):
        net, layer, metric = split_tag(tag)
        if net == network and layer is not None:
            found.setdefault(layer, set()).add(metric)
    return found


def image_env(discrete: bool = True, action_dim: int = 2) -> FakeImageEnv:
    """64x64x1 random images (NatureCNN's last conv then has a 4x4 output); discrete or Box actions."""
    return FakeImageEnv(action_dim=action_dim, screen_height=64, screen_width=64, n_channels=1, discrete=discrete)


def forward_hook_count(modules: Iterable[th.nn.Module]) -> int:
    return sum(len(m._forward_hooks) for m in modules)


def step_pre_hook_count(optimizers: Iterable[th.optim.Optimizer]) -> int:
    return sum(len(o._optimizer_step_pre_hooks) for o in optimizers)


def step_post_hook_count(optimizers: Iterable[th.optim.Optimizer]) -> int:
    return sum(len(o._optimizer_step_post_hooks) for o in optimizers)


def model_optimizers(model) -> list[th.optim.Optimizer]:
    """Every optimizer of an SB3 model (TD3/SAC actor and critic, SAC entropy coefficient, PPO/A2C policy)."""
    found: list[th.optim.Optimizer] = []
    candidates = [getattr(m, "optimizer", None) for m in model.policy.modules()]
    candidates.append(getattr(model, "ent_coef_optimizer", None))  # SAC's entropy coefficient
    for opt in candidates:
        if isinstance(opt, th.optim.Optimizer) and all(opt is not o for o in found):
            found.append(opt)
    return found


# rl_zoo3 runs in a subprocess; one thread each, so two of them do not fight over a 2-core machine
SINGLE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_zoo(module: str, args: Sequence[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m rl_zoo3.<module> <args>`` in ``cwd`` with one torch thread (``--num-threads 1`` for ``train`` and
    ``enjoy``, which have it) and headless MuJoCo rendering (``MUJOCO_GL=egl`` unless set); fails the test with the
    run's output if it does not exit 0, else returns the finished process (its output as text)."""
    cmd = [sys.executable, "-m", f"rl_zoo3.{module}", *args]
    if module in ("train", "enjoy"):
        cmd += ["--num-threads", "1"]
    env = {"MUJOCO_GL": "egl", **SINGLE_THREAD_ENV}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False)
    assert result.returncode == 0, " ".join(cmd) + "\n" + result.stdout[-3000:] + result.stderr[-3000:]
    return result


def zoo_train(
    algo: str, env_id: str, conf_file: Path, tmp_path: Path, n_steps: int, extra: Sequence[str] = ()
) -> subprocess.CompletedProcess:
    """``python -m rl_zoo3.train`` with our package, TensorBoard in ``tmp_path/tb`` and logs in ``tmp_path/logs``;
    fails the test with the run's output if it does not exit 0."""
    args = [
        "--algo", algo, "--env", env_id, "--gym-packages", "sb3_plasticity",
        "--conf-file", str(conf_file), "-n", str(n_steps), "--eval-freq", "-1", "--log-interval", "1",
        "-tb", str(tmp_path / "tb"), "-f", str(tmp_path / "logs"), "--seed", "0", *extra,
    ]  # fmt: skip
    return run_zoo("train", args, tmp_path)


def zoo_enjoy(algo: str, env_id: str, tmp_path: Path, n_steps: int, extra: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """``python -m rl_zoo3.enjoy`` of the latest model :func:`zoo_train` left in ``tmp_path/logs``, for ``n_steps``
    steps without rendering; fails the test if it does not exit 0."""
    args = [
        "--algo", algo, "--env", env_id, "--gym-packages", "sb3_plasticity", "-f", str(tmp_path / "logs"),
        "-n", str(n_steps), "--no-render", "--seed", "0", *extra,
    ]  # fmt: skip
    return run_zoo("enjoy", args, tmp_path)


class HookSpy(BaseCallback):
    """Put after the callback under test: the most forward hooks, optimizer step pre-hooks and post-hooks seen on the
    model at any step."""

    def __init__(self) -> None:
        super().__init__()
        self.max_forward = 0
        self.max_step_pre = 0
        self.max_step_post = 0

    def _on_step(self) -> bool:
        optimizers = model_optimizers(self.model)
        self.max_forward = max(self.max_forward, forward_hook_count(self.model.policy.modules()))
        self.max_step_pre = max(self.max_step_pre, step_pre_hook_count(optimizers))
        self.max_step_post = max(self.max_step_post, step_post_hook_count(optimizers))
        return True


class RaiseAt(BaseCallback):
    """Raises inside learn() once ``step`` env steps are reached (an interrupted run)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step:
            raise RuntimeError("interrupted")
        return True


class Recorder(KVWriter):
    """A logger output that keeps every dump in memory: ``[(step, {key: value})]``."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        self.rows.append((step, dict(key_values)))

    def close(self) -> None:
        pass

    def values(self, key: str) -> list[tuple[int, float]]:
        return [(step, row[key]) for step, row in self.rows if key in row]
