"""The experiments registry, the ``sb3-plasticity`` command, the runner (local and Ray) and the report."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from sb3_plasticity.experiments import cli, entries
from sb3_plasticity.experiments.entries import ExperimentError, apply_overrides, expand, get_entry, load_registry
from sb3_plasticity.experiments.runner import Runner, RunOptions, run_state, worker_command, worker_env

# Every figure and table with results in the three papers (main text and appendices; `_earlier`: the NE paper's
# earlier version). A dropped entry fails here.
EXPECTED_IDS = {
    "ne": [
        "fig2", "fig3", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9a", "fig9b", "fig10", "fig11", "fig12",
        "fig13", "fig14", "table4", "table5a", "table5b", "table6a", "table6b", "table7", "table8", "table9",
        "table10", "table11", "fig11_earlier",
    ],
    "p3o": [
        "fig1", "table1", "fig4", "fig5", "fig6", "table2", "fig7", "fig8", "fig9", "fig10", "fig11", "fig12",
        "fig13", "fig14", "fig15", "fig16", "fig17", "fig18", "table4", "fig19", "fig20", "fig21", "table5",
        "fig22", "fig23", "fig24", "fig25", "fig26", "fig27", "fig28", "fig29", "fig30",
    ],
    "grama": [
        "fig1", "fig3", "fig4a", "fig4b", "fig4c", "fig5_left", "fig5_right", "fig6a", "fig6b", "fig7", "fig8",
        "fig9_vanilla", "fig9_redo", "fig9_regrama", "fig10", "fig11", "fig12_relu", "fig12_sigmoid",
        "fig12_tanh", "fig13_regrama", "fig13_redo", "table8", "table9",
    ],
}  # fmt: skip

TINY_CONF = {
    "Pendulum-v1": {
        "n_timesteps": 2000,
        "policy": "MlpPolicy",
        "policy_kwargs": "dict(net_arch=[16, 16])",
        "learning_starts": 100,
        "batch_size": 32,
        "callback": [
            {"sb3_plasticity.ReDoCallback": {"reset_freq": 200}},
            {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 100}},
        ],
    }
}

TINY_REGISTRY = {
    "paper": "tiny",
    "entries": [
        {
            "id": "redo",
            "kind": "figure",
            "shows": "SAC vs ReDo-SAC on Pendulum (test entry)",
            "algo": "sac",
            "methods": {
                "sac": {"conf": "tiny/sac.yml", "overrides": {"callback.ReDoCallback.tau": 0.0}},
                "redo": {"conf": "tiny/sac.yml", "overrides": {"callback.ReDoCallback.tau": 0.5}},
            },
            "baseline": "sac",
            "envs": ["Pendulum-v1"],
            "seeds": 2,
            "budget": 1000,
            "metrics": ["return", "plasticity/critic/dormant_ratio", "plasticity/redo/reset_count"],
            "paper_numbers": {"metric": "return", "statistic": "made up", "values": {"redo": {"Pendulum-v1": -150}}},
        },
        {
            "id": "redo_counts",
            "shows": "ReDo's reset counts, from the runs of tiny/redo (test entry for report --from)",
            "algo": "sac",
            "methods": {
                "sac": {"conf": "tiny/sac.yml", "overrides": {"callback.ReDoCallback.tau": 0.1}},
                "redo": {"conf": "tiny/sac.yml", "overrides": {"callback.ReDoCallback.tau": 0.5}},
            },
            "baseline": "sac",
            "envs": ["Pendulum-v1"],
            "seeds": 2,
            "budget": 1000,
            "metrics": ["return", "plasticity/redo/reset_count"],
        },
        {
            "id": "broken",
            "shows": "an entry with a missing part",
            "algo": "sac",
            "methods": {"sac": {"conf": "tiny/sac.yml"}, "new": {"conf": "tiny/new.yml", "needs": "the new method"}},
            "envs": ["Pendulum-v1"],
            "seeds": 1,
            "budget": 100,
        },
    ],
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A zoo folder and a registry folder with the tiny entries, made visible through the environment."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "zoo" / "tiny").mkdir(parents=True)
    (root / "zoo" / "tiny" / "sac.yml").write_text(yaml.safe_dump(TINY_CONF))
    (root / "registry").mkdir()
    (root / "registry" / "tiny.yaml").write_text(yaml.safe_dump(TINY_REGISTRY, sort_keys=False))
    mp = pytest.MonkeyPatch()
    mp.setenv("SB3_PLASTICITY_ZOO_CONFIGS", str(root / "zoo"))
    mp.setenv("SB3_PLASTICITY_REGISTRY", str(root / "registry"))
    yield root
    mp.undo()


# ---------------------------------------------------------------------------------------------------- registry


def test_registry_has_every_figure_and_table():
    registry = load_registry()
    for paper, ids in EXPECTED_IDS.items():
        have = sorted(e.key for e in registry.values() if e.paper == paper)
        assert sorted(ids) == have, paper


def test_entries_are_complete():
    for entry in load_registry().values():
        assert entry.shows and entry.metrics and entry.envs, entry.id
        assert entry.baseline is None or entry.baseline in entry.methods, entry.id
        for name, method in entry.methods.items():
            if method.runnable:
                # conf exists and has the env: nothing fails halfway through a grid
                entries.check_runs(expand(entry, [name], seeds=1) if not entry.needs else [])
        numbers = entry.paper_numbers or {}
        columns = set(entry.envs) | set(numbers.get("columns") or [])  # a table's columns other than envs
        for method, per_column in (numbers.get("values") or {}).items():
            assert method in entry.methods, (entry.id, method)
            if isinstance(per_column, dict):
                assert set(per_column) <= columns, entry.id


def test_grids_expand_into_one_method_per_value():
    entry = get_entry("p3o/fig10")
    grid = entry.grid
    names = [n for n in entry.methods if n.startswith(grid["base"]) and "=" in n]
    assert len(names) == len(grid["values"])
    for name, value in zip(names, grid["values"], strict=True):
        assert entry.methods[name].overrides[grid["param"]] == value


def test_overrides_reach_the_conf_entry():
    conf = {
        "policy_kwargs": "dict(net_arch=[64, 64])",
        "learning_starts": 10,
        "callback": [{"sb3_plasticity.ReDoCallback": {"reset_freq": 5}}, "sb3_plasticity.PlasticityMonitorCallback"],
    }
    out = apply_overrides(
        conf,
        {
            "hyperparams.learning_starts": 3,
            "policy_kwargs.initial_density": 0.5,
            "callback.ReDoCallback.tau": 0.2,
            "callback.PlasticityMonitorCallback.log_freq": 7,
        },
    )
    assert out["learning_starts"] == 3
    assert out["policy_kwargs"] == {"net_arch": [64, 64], "initial_density": 0.5}
    assert out["callback"] == [
        {"sb3_plasticity.ReDoCallback": {"reset_freq": 5, "tau": 0.2}},
        {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 7}},
    ]
    assert conf["learning_starts"] == 10  # the conf is not changed in place
    with pytest.raises(ExperimentError, match="no callback CBPCallback"):
        apply_overrides(conf, {"callback.CBPCallback.replacement_rate": 0.1})


def _unique_runs():
    """One run per distinct (algo, conf, overrides, env) of the runnable methods of all entries."""
    seen = {}
    for entry in load_registry().values():
        if entry.needs:
            continue
        for name in entry.runnable_methods:
            for run in expand(entry, [name], seeds=1, timesteps=64):
                key = (run.algo, run.conf, json.dumps(run.overrides, sort_keys=True, default=str), run.env)
                seen.setdefault(key, run)
    return list(seen.values())


def _cheap(run) -> tuple[str, str, str]:
    """Group the runs so that the test builds each conf with each set of overridden keys once, on its cheapest env
    (the values of a grid differ in numbers only, which the registry test checks reach the conf)."""
    return run.algo, run.conf, ",".join(sorted(run.overrides))


def _build_and_step_params():
    """The chosen runs; a pixel-DMC run (rendering and a CNN: several seconds each) is slow except the first of each
    paper, since tests/test_registry_runs.py (slow) trains every runnable entry through the worker anyway."""
    chosen = {}
    for run in _unique_runs():
        current = chosen.get(_cheap(run))
        if current is None or (current.env.startswith("Humanoid") and not run.env.startswith("Humanoid")):
            chosen[_cheap(run)] = run
    params, pixel_papers = [], set()
    for run in sorted(chosen.values(), key=lambda r: (r.entry_id, r.method)):
        paper, pixels = run.entry_id.split("/")[0], "DMCPixels" in run.env
        slow = pixels and paper in pixel_papers
        pixel_papers.update([paper] if pixels else [])
        params.append(pytest.param(run, marks=pytest.mark.slow) if slow else run)
    return params


@pytest.mark.parametrize("run", _build_and_step_params(), ids=lambda r: f"{r.entry_id}:{r.method}:{r.env}")
def test_runnable_entries_build_and_step(run, tmp_path):
    """The model of every runnable method builds through rl-zoo and learns a few steps (a rollout of 64 steps for
    on-policy algorithms, whose n_steps is reduced for the test)."""
    from sb3_plasticity.experiments.worker import _make_manager_class

    overrides = dict(run.overrides)
    if run.algo in ("ppo", "a2c"):
        overrides.update({"hyperparams.n_steps": 64, "hyperparams.batch_size": 64})
    manager_cls = _make_manager_class()
    import argparse

    manager = manager_cls(
        run_dir=tmp_path,
        overrides=overrides,
        resume_steps=0,
        target=64,
        args=argparse.Namespace(checkpoint_freq=10**9),
        algo=run.algo,
        env_id=run.env,
        log_folder=str(tmp_path / "zoo"),
        n_timesteps=64,
        eval_freq=-1,
        seed=0,
        log_interval=-1,
        verbose=0,
        device="cpu",
        config=str(entries.zoo_configs_dir() / run.conf),
    )
    model, _ = manager.setup_experiment()
    manager.learn(model)
    assert model.num_timesteps >= 64


def test_missing_parts_fail_at_once(tiny, tmp_path, capsys):
    entry = get_entry("tiny/broken")
    assert entry.status == "partial"
    with pytest.raises(ExperimentError, match=r"method 'new': the new method.*--methods sac"):
        expand(entry)
    assert cli.main(["run", "tiny/broken", "--out", str(tmp_path)]) == 2
    assert "the new method" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing started
    assert expand(entry, ["sac"])  # the built part runs


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "ne/fig99"], "unknown experiment id 'ne/fig99'"),
        (["run", "tiny/redo", "--methods", "nope"], "unknown method 'nope' for tiny/redo; allowed: sac, redo"),
        (["run", "tiny/redo", "--envs", "Ant-v5"], "unknown env 'Ant-v5' for tiny/redo; allowed: Pendulum-v1"),
        (["list", "--paper", "xyz"], "unknown paper 'xyz'"),
        (["report", "/nonexistent/runs"], "runs folder /nonexistent/runs does not exist"),
    ],
)
def test_cli_errors_are_one_line(tiny, argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


@pytest.mark.parametrize("scale", ["0", "-1"])
def test_budget_scale_must_be_positive(scale, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "p3o/fig7", "--budget-scale", scale])
    assert exc.value.code == 2
    assert f"--budget-scale: must be > 0, got {scale}" in capsys.readouterr().err


def test_ray_missing_says_how_to_install(tiny, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    assert cli.main(["run", "tiny/redo", "--backend", "ray", "--out", str(tmp_path)]) == 2
    assert 'pip install "sb3-plasticity[ray]"' in capsys.readouterr().err


def test_list_and_show(tiny, capsys):
    assert cli.main(["list", "--paper", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "tiny/redo" in out and "runnable" in out and "partial" in out
    assert cli.main(["show", "tiny/redo", "--seeds", "2", "--timesteps", "500"]) == 0
    out = capsys.readouterr().out
    assert out.count("python -m rl_zoo3.train --algo sac --env Pendulum-v1") == 4
    assert "--seed 1" in out and "-n 500" in out


def test_help_is_clear(capsys):
    for argv in (["--help"], ["run", "--help"], ["report", "--help"], ["list", "--help"], ["show", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert "usage: sb3-plasticity" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ runner and report


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    """``sb3-plasticity run tiny/redo --seeds 2 --jobs 2`` (2 methods x 2 seeds of 1000 steps), then the rerun."""
    out = tmp_path_factory.mktemp("runs")
    argv = ["run", "tiny/redo", "--jobs", "2", "--out", str(out)]
    assert cli.main(argv) == 0
    mtimes = {p: p.stat().st_mtime for p in out.rglob("done.json")}
    assert cli.main(argv) == 0  # second run: everything is skipped
    return out, mtimes


def test_run_layout_and_skip(finished, capsys):
    out, mtimes = finished
    for method in ("sac", "redo"):
        for seed in (0, 1):
            run_dir = out / "tiny" / "redo" / method / "Pendulum-v1" / f"seed_{seed}"
            assert run_state(run_dir) == ("done", 1000, 1000)
            hyper = yaml.safe_load((run_dir / "hyperparams.yml").read_text())
            assert hyper["callback"][0]["sb3_plasticity.ReDoCallback"]["tau"] == (0.0 if method == "sac" else 0.5)
            assert (run_dir / "zoo" / "Pendulum-v1.zip").exists()
            assert yaml.safe_load((run_dir / "zoo" / "Pendulum-v1" / "config.yml").read_text())
            assert list((run_dir / "tb").rglob("events.out.tfevents.*"))
            assert not (run_dir / "checkpoint").exists()
    assert {p: p.stat().st_mtime for p in out.rglob("done.json")} == mtimes  # the rerun trained nothing


def test_report_figures_and_rliable_numbers(finished):
    from rliable import library as rly
    from rliable import metrics

    from sb3_plasticity.experiments.report import collect, final_score, make_report

    out, _ = finished
    [path] = make_report(out, "tiny/redo", reps=200)
    folder = path.parent
    assert {"return.png", "plasticity_critic_dormant_ratio.png", "aggregate.png"} <= {p.name for p in folder.iterdir()}
    text = path.read_text()
    assert "| budget (env steps per run) | 1000 | 1000 |" in text
    assert "| redo | Pendulum-v1 | -150 |" in text  # the paper's number beside ours
    summary = json.loads((folder / "summary.json").read_text())
    # rliable called directly on the same final scores gives the same IQM point estimates
    runs = collect(out, "tiny/redo")["tiny/redo"]
    for method in ("sac", "redo"):
        scores = np.array(
            [
                [final_score(*r.scalars["rollout/ep_rew_mean"])]
                for r in sorted(runs, key=lambda r: r.spec.seed)
                if r.spec.method == method
            ]
        )
        assert np.allclose(summary["scores"][method], scores)
        point, _ = rly.get_interval_estimates({method: scores}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=50)
        mean = scores.mean()
        assert f"| {method} | Pendulum-v1 | 2 | {mean:.4g}" in text
        assert np.isclose(point[method][0], metrics.aggregate_iqm(scores))
    assert summary["probability_of_improvement"]["redo"][1] <= summary["probability_of_improvement"]["redo"][0]
    # the other plotted quantities' final values, and the compact data that re-draws the same report
    assert "| `plasticity/critic/dormant_ratio` | redo | Pendulum-v1 | 2 |" in text
    assert len(summary["final_values"]["plasticity/critic/dormant_ratio"]["redo"]) == 2


def test_report_redraws_from_its_csv(finished, tmp_path):
    import csv

    from sb3_plasticity.experiments.report import make_report

    out, _ = finished
    [path] = make_report(out, "tiny/redo", out=tmp_path / "first", reps=100)
    with open(path.parent / "series.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["tag"] for r in rows} == {
        "rollout/ep_rew_mean",
        "plasticity/critic/dormant_ratio",
        "plasticity/redo/reset_count",
    }
    assert {(r["method"], r["seed"]) for r in rows} == {("sac", "0"), ("sac", "1"), ("redo", "0"), ("redo", "1")}
    # only the CSV and the run list are kept: the same numbers come back without the TensorBoard logs
    data = tmp_path / "data"
    data.mkdir()
    for name in ("series.csv", "runs.json"):
        (data / name).write_bytes((path.parent / name).read_bytes())
    [again] = make_report(data, "tiny/redo", out=tmp_path / "second", reps=100)
    first = json.loads((path.parent / "summary.json").read_text())
    second = json.loads((again.parent / "summary.json").read_text())
    assert np.allclose(first["scores"]["redo"], second["scores"]["redo"], rtol=1e-5)
    assert first["aggregates"].keys() == second["aggregates"].keys()
    assert (again.parent / "return.png").exists()


def test_report_lists_what_is_missing(finished, tmp_path):
    from sb3_plasticity.experiments.report import make_report

    out, _ = finished
    shutil_copy = tmp_path / "runs"
    import shutil

    shutil.copytree(out, shutil_copy)
    shutil.rmtree(shutil_copy / "tiny" / "redo" / "redo" / "Pendulum-v1" / "seed_1")
    (shutil_copy / "tiny" / "redo" / "sac" / "Pendulum-v1" / "seed_1" / "done.json").unlink()  # as if still running
    [path] = make_report(shutil_copy, "tiny/redo", reps=50)
    text = path.read_text()
    assert "not started: redo on Pendulum-v1, seed 1" in text
    assert "incomplete: sac on Pendulum-v1, seed 1" in text
    assert "| redo | Pendulum-v1 | 1 |" in text  # the report still works on the seeds that are there
    assert "| sac | Pendulum-v1 | 1 |" in text  # an unfinished run is drawn but not scored


def test_report_from_the_runs_of_another_entry(finished, tmp_path):
    """Figures of one paper plot other quantities of the same runs: ``report --id B --from A`` uses A's runs of the
    methods that B defines identically (here redo; B's sac has another tau, so A's sac runs are not B's)."""
    from sb3_plasticity.experiments.report import make_report

    out, _ = finished
    [path] = make_report(out, "tiny/redo_counts", out=tmp_path / "rep", reps=50, runs_of="tiny/redo")
    assert path.parent == tmp_path / "rep" / "tiny" / "redo_counts"
    text = path.read_text()
    assert "the runs made for tiny/redo" in text
    assert "| redo | Pendulum-v1 | 2 |" in text
    assert "- method not run: sac" in text and "not started" not in text
    summary = json.loads((path.parent / "summary.json").read_text())
    assert set(summary["scores"]) == {"redo"}
    assert (path.parent / "plasticity_redo_reset_count.png").exists()
    with pytest.raises(ExperimentError, match="none of the 4 runs of tiny/redo"):
        make_report(out, "tiny/broken", out=tmp_path / "no", runs_of="tiny/redo")  # its sac has no overrides
    with pytest.raises(ExperimentError, match="needs the entry to report"):
        make_report(out, None, runs_of="tiny/redo")
    assert cli.main(["report", str(out), "--id", "tiny/redo_counts", "--from", "tiny/redo", "--out", str(tmp_path / "c")]) == 0


def test_killed_run_resumes_from_its_checkpoint(tiny, tmp_path):
    entry = get_entry("tiny/redo")
    [run] = expand(entry, ["redo"], seeds=1, timesteps=800)
    runner = Runner([run], tmp_path, RunOptions(checkpoint_freq=300))
    [run_dir] = runner.prepare()
    with open(run_dir / "train.log", "ab") as log:
        proc = subprocess.Popen(worker_command(run_dir), env=worker_env(1), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not (run_dir / "checkpoint" / "meta.json").exists():
        assert proc.poll() is None and time.time() < deadline, (run_dir / "train.log").read_text()
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run_state(run_dir)[0] == "started"
    checkpoint = json.loads((run_dir / "checkpoint" / "meta.json").read_text())["num_timesteps"]
    assert 0 < checkpoint < 800
    assert runner.run() == {"done": 1, "failed": 0, "skipped": 0}
    done = json.loads((run_dir / "done.json").read_text())
    assert done["num_timesteps"] == 800 and done["resumed_from"] == checkpoint
    from sb3_plasticity.experiments.report import read_scalars

    steps, _ = read_scalars(run_dir)["plasticity/redo/reset_count"]
    assert steps.max() >= 600 and len(set(steps)) == len(steps)  # one value per step across both processes


@pytest.mark.slow
def test_ray_backend_gives_the_same_layout(tiny, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        entry = get_entry("tiny/redo")
        runs = expand(entry, seeds=1, timesteps=300)
        assert Runner(runs, tmp_path, RunOptions(jobs=2), backend="ray").run()["done"] == 2
    finally:
        ray.shutdown()
    for method in ("sac", "redo"):
        assert run_state(tmp_path / "tiny" / "redo" / method / "Pendulum-v1" / "seed_0") == ("done", 300, 300)


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "sb3_plasticity.experiments", "list", "--paper", "p3o"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout
    assert "p3o/table1" in out


def test_show_uses_the_plugin_for_the_package_algorithms(capsys):
    from sb3_plasticity.algos import ZOO_ALGOS

    assert set(cli.PACKAGE_ALGOS) == set(ZOO_ALGOS)
    assert cli.main(["show", "grama/fig10", "--seeds", "1", "--envs", "Ant-v5", "--methods", "dacer"]) == 0
    assert "python -m sb3_plasticity.zoo_plugin train --algo dacer --env Ant-v5" in capsys.readouterr().out
