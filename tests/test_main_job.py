"""The main job (``python -m sb3_plasticity``): a short TD3 run that writes plasticity logs to TensorBoard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import event_files, read_scalars

from sb3_plasticity.demo import main, torch_threads


def test_main_writes_plasticity_logs(tmp_path, capsys):
    run_dir = main(["--timesteps", "600", "--log-freq", "100", "--tensorboard-log", str(tmp_path), "--no-progress-bar"])
    run_dir = Path(run_dir)
    assert run_dir.is_dir() and run_dir.parent == tmp_path.resolve()
    assert event_files(run_dir)
    scalars = read_scalars(run_dir)
    steps = [s for s, _ in scalars["plasticity/critic/dormant_ratio"]]
    # The job's TD3 starts learning after 500 steps: measurements at its first training pass and at 600.
    assert len(steps) >= 2 and min(steps) > 500 and max(steps) <= 600
    assert all(0.0 <= v <= 1.0 for _, v in scalars["plasticity/critic/dormant_ratio"])
    assert "plasticity/actor/grad_norm" in scalars
    # the default method is Neuroplastic Expansion: one growth event, due at step 500, done once the actor has
    # had its first (delayed) update after learning_starts; density up from 0.25
    density = scalars["plasticity/critic/density"]
    assert density[0] == (0, pytest.approx(0.25, abs=0.01)) and density[-1][1] > density[0][1]
    assert [s for s, _ in scalars["plasticity/neuroplastic_expansion/grown"]] == [502]
    out = capsys.readouterr().out
    assert f"tensorboard --logdir {os.path.abspath(tmp_path)}" in out
    assert str(run_dir) in out
    assert "NeuroplasticExpansionCallback: 1 events" in out


@pytest.mark.parametrize("method", [pytest.param("redo", marks=pytest.mark.slow), "regrama"])  # one is enough by default
def test_main_runs_the_method(method, tmp_path, capsys):
    args = ["--timesteps", "1100", "--method", method, "--tensorboard-log", str(tmp_path), "--no-progress-bar"]
    scalars = read_scalars(Path(main(args)))
    # TD3 learns from step 500 and the method resets every 1000 steps: one event
    assert len(scalars[f"plasticity/{method}/reset_count"]) == 1
    assert "plasticity/critic/dormant_ratio" in scalars  # the monitor runs alongside
    assert "1 events" in capsys.readouterr().out


def test_module_help():
    result = subprocess.run(
        [sys.executable, "-m", "sb3_plasticity", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--timesteps" in result.stdout and "--log-freq" in result.stdout and "--threads" in result.stdout


def test_one_torch_thread_by_default_on_the_cpu():
    assert torch_threads(None, "cpu") == 1
    assert torch_threads(None, "cuda") == 0  # torch's own choice
    assert torch_threads(3, "cpu") == 3 and torch_threads(0, "cpu") == 0
    with pytest.raises(ValueError, match="--threads"):
        torch_threads(-1, "cpu")
