"""Every runnable entry of the NE and GraMa papers, trained at a tiny budget the way ``sb3-plasticity run`` trains it,
then read back from its TensorBoard log (issues 14 and 15, acceptance: "tests run each at a tiny budget and check its
logs").

How the runs are made:

- Each run is a :class:`~sb3_plasticity.experiments.entries.RunSpec` from ``expand(entry, [method], [env], seeds=1,
  timesteps=TIMESTEPS)`` (the command line's ``--seeds 1 --envs <env> --timesteps N``), written to its run folder by
  the :class:`~sb3_plasticity.experiments.runner.Runner` and trained by the worker's ``run`` (rl-zoo's
  ``ExperimentManager`` with the registry's overrides applied), in this process: the runner would start one
  ``python -m sb3_plasticity.experiments.worker`` process per run, which trains the same way.
- To make every event happen in a few hundred steps, the test adds registry overrides on top of the entry's own:
  ``learning_starts`` 200 (of 300 steps), ``env_kwargs.max_episode_steps`` 50 (episodes end, so that SB3 logs the
  training return every 4 episodes), and a period of ``EVENT_FREQ`` steps for the conf's callbacks
  (:func:`tiny_overrides`).
  Networks keep their size. Pixel runs (DMCPixels) are 200 steps with learning from step 150, 48x48 frames
  (``env_kwargs.height/width``) and a batch of 32: an update of DrQ-v2's conv encoder on 256 84x84 frames takes
  about a second on a CPU core. Checkpoints are off (``--checkpoint-freq`` beyond the run).
- Entries that share a conf train it once: a run is keyed by (algo, conf, overrides), where a numeric override value
  stands for the whole sweep (a grid value or a sweep column changes a number the conf passes on, which
  ``tests/test_experiments.py::test_overrides_reach_the_conf_entry`` checks). Non-numeric overrides (a growth mode,
  a schedule, ``prune: false``) are separate runs. The run takes the first env of :data:`ENV_ORDER` that any entry
  of the group lists.

What each test checks on the run of each of the entry's methods:

- every tag the entry plots (``metrics``; ``return`` is rl-zoo's evaluation or the training episodes' return, as
  the report reads it) was logged at least once;
- the method did what it should at least once, from the callbacks in the run's resolved conf and its algorithm
  (:func:`behaviour_checks`): NE grew connections, a reset method logged its reset counts, Reset reset every neuron
  of a layer, injection injected, the analyses wrote their tags and files, DrQ-v2 trained with n-step returns and
  augmentation, ...

Not run here (see each entry's ``needs``): ``ne/table7`` (Meta-World), ``grama/fig5_left`` (a benchmark:
``tests/test_registry_runs.py::test_grama_fig5_left_benchmark_runs`` runs its script at a tiny size) and
``grama/fig5_right`` (the supervised continual harness: ``test_grama_fig5_right_continual_harness_runs``).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sb3_plasticity.experiments.entries import RunSpec, apply_overrides, expand, load_registry, read_conf
from sb3_plasticity.experiments.report import RETURN_TAGS, read_scalars

pytestmark = pytest.mark.slow

PAPERS = ("ne", "grama")
TIMESTEPS = 300  # env steps per run
LEARNING_STARTS = 200  # 100 updates (SAC BRO-net: 200), events at 100 (before learning), 200 and 300
EVENT_FREQ = 100  # env steps between the events of every callback
EPISODE_STEPS = 50  # time limit of the episodes (SB3 logs the training return every 4 episodes)
# Pixel runs: fewer updates (one event after learning starts), smaller frames and batches.
PIXEL_TIMESTEPS = 200
PIXEL_LEARNING_STARTS = 150
PIXEL_BATCH = 32
PIXEL_SIZE = 48

# Cheapest first: a group's run takes the first env here that one of its entries lists.
ENV_ORDER = (
    "Hopper-v5",
    "HalfCheetah-v5",
    "Walker2d-v5",
    "Ant-v5",
    "Humanoid-v5",
    "sb3_plasticity/ContinualMuJoCo-v0",
    "sb3_plasticity/DMC-humanoid-stand-v0",
    "sb3_plasticity/DMC-humanoid-walk-v0",
    "sb3_plasticity/DMC-humanoid-run-v0",
    "sb3_plasticity/DMC-dog-walk-v0",
    "sb3_plasticity/DMC-dog-stand-v0",
    "sb3_plasticity/DMCPixels-cartpole-swingup_sparse-v0",
    "sb3_plasticity/DMCPixels-reacher-hard-v0",
    "sb3_plasticity/DMCPixels-reacher-easy-v0",
    "sb3_plasticity/DMCPixels-walker-walk-v0",
    "sb3_plasticity/DMCPixels-quadruped-run-v0",
    "sb3_plasticity/DMCPixels-dog-stand-v0",
    "sb3_plasticity/DMCPixels-dog-walk-v0",
    "sb3_plasticity/DMCPixels-dog-run-v0",
)

# Entries not trained here, and why (their `needs` in the registry says what is missing).
NOT_RUN = {
    "ne/table7": "Meta-World envs: metaworld pins mujoco==3.3.0, this package mujoco>=3.17",
    "grama/fig5_left": "a benchmark, not a training run: test_grama_fig5_left_benchmark_runs",
    "grama/fig5_right": "the supervised continual harness: test_grama_fig5_right_continual_harness_runs",
}


def _callbacks(hyperparams: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Class name -> kwargs of the conf's callbacks."""
    out = {}
    items = hyperparams.get("callback") or []
    for item in items if isinstance(items, list) else [items]:
        name, kwargs = (item, {}) if isinstance(item, str) else next(iter(item.items()))
        out[name.rsplit(".", 1)[-1]] = dict(kwargs or {})
    return out


def resolved_hyperparams(run: RunSpec) -> dict[str, Any]:
    """The conf's entry for the run's env with the run's overrides, as the worker hands it to rl-zoo."""
    conf = read_conf(run.conf)
    return apply_overrides(conf.get(run.env, conf.get("default", {})), run.overrides)


def tiny_overrides(run: RunSpec) -> dict[str, Any]:
    """Registry overrides that make the run's events happen within :data:`TIMESTEPS` env steps."""
    hp = resolved_hyperparams(run)
    callbacks = _callbacks(hp)
    pixels = "DMCPixels" in run.env
    out: dict[str, Any] = {"hyperparams.learning_starts": LEARNING_STARTS, "env_kwargs.max_episode_steps": EPISODE_STEPS}
    if pixels:
        # An update of the conv encoder on the paper's batch of 256 84x84 frames takes seconds on a CPU core.
        out.update(
            {
                "hyperparams.learning_starts": PIXEL_LEARNING_STARTS,
                "hyperparams.batch_size": PIXEL_BATCH,
                "env_kwargs.height": PIXEL_SIZE,
                "env_kwargs.width": PIXEL_SIZE,
            }
        )
    if "ContinualMuJoCo" in run.env:
        out["env_kwargs.episodes_per_task"] = 2  # a task switch every 2 episodes of <= 50 steps
    per_callback: dict[str, dict[str, Any]] = {
        "PlasticityMonitorCallback": {"log_freq": EVENT_FREQ},
        "NeuroplasticExpansionCallback": {"grow_interval": EVENT_FREQ, "log_freq": EVENT_FREQ},
        "ReDoCallback": {"reset_freq": EVENT_FREQ},
        "GraMaResetCallback": {"reset_freq": EVENT_FREQ},
        "ReBornCallback": {"reset_freq": EVENT_FREQ},
        "ShrinkPerturbCallback": {"freq": EVENT_FREQ},
        "ScorePruningCallback": {"prune_freq": EVENT_FREQ},
        "QuadrantAnalysisCallback": {"freq": EVENT_FREQ},
        "IrreversibilityCallback": {"check_freq": EVENT_FREQ},
        "CBPCallback": {"log_freq": EVENT_FREQ, "maturity_threshold": 10},
        "L2InitCallback": {"log_freq": EVENT_FREQ},
        # once, 50 steps before the end (after learning has started)
        "PlasticityInjectionCallback": {"inject_at": run.timesteps - 50},
        "GradientHeatmapCallback": {"steps": [run.timesteps - 50]},
    }
    for name, kwargs in callbacks.items():
        if name == "ResetCallback" and kwargs.get("reset_on", "steps") == "steps":
            out["callback.ResetCallback.reset_freq"] = EVENT_FREQ
        elif name == "PhaseEvalCallback":
            env_kwargs = {**(kwargs.get("env_kwargs") or {}), "max_episode_steps": EPISODE_STEPS}
            if "ContinualMuJoCo" in str(kwargs.get("eval_env")):
                env_kwargs["episodes_per_task"] = 2
            out.update(
                {
                    "callback.PhaseEvalCallback.eval_freq": EVENT_FREQ,
                    "callback.PhaseEvalCallback.n_eval_episodes": 1,
                    "callback.PhaseEvalCallback.env_kwargs": env_kwargs,
                }
            )
        for kwarg, value in per_callback.get(name, {}).items():
            out[f"callback.{name}.{kwarg}"] = value
    return out


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(overrides: dict[str, Any]) -> str:
    """What makes a run of its own: the non-numeric overrides (a growth mode, a schedule, ``prune: false``). A
    numeric override (a sweep's value, a grid's depth or threshold) changes a number the conf passes on; the run of
    the conf without it stands for the sweep."""
    return json.dumps({k: v for k, v in overrides.items() if not _numeric(v)}, sort_keys=True, default=str)


@dataclass
class Group:
    """The runs of several (entry, method) pairs that share a conf and the kind of their overrides."""

    key: tuple
    members: list[tuple[str, str]]  # (entry id, method)
    envs: set[str]
    run: RunSpec | None = None


def _entries():
    return [e for e in load_registry().values() if e.paper in PAPERS]


def _groups() -> dict[tuple, Group]:
    groups: dict[tuple, Group] = {}
    for entry in _entries():
        if entry.id in NOT_RUN:
            continue
        for name, spec in entry.methods.items():
            key = (spec.algo, spec.conf, _kind(spec.overrides))
            group = groups.setdefault(key, Group(key, [], set()))
            group.members.append((entry.id, name))
            group.envs.update(entry.envs)
    registry = load_registry()
    for group in groups.values():
        env = next(e for e in ENV_ORDER if e in group.envs)
        entry_id, method = next((i, m) for i, m in group.members if env in registry[i].envs)
        steps = PIXEL_TIMESTEPS if "DMCPixels" in env else TIMESTEPS
        (run,) = expand(registry[entry_id], [method], [env], seeds=1, timesteps=steps)
        own = {k: v for k, v in run.overrides.items() if not _numeric(v)}
        run = replace(run, overrides=own)
        group.run = replace(run, overrides={**own, **tiny_overrides(run)})
    return groups


GROUPS = _groups()
GROUP_OF = {member: group for group in GROUPS.values() for member in group.members}


@dataclass
class Trained:
    run: RunSpec
    run_dir: Path
    scalars: dict[str, tuple[np.ndarray, np.ndarray]]
    hyperparams: dict[str, Any]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Trains each group's run on first use; the same run serves every entry of the group."""
    from sb3_plasticity.experiments import worker
    from sb3_plasticity.experiments.runner import Runner, RunOptions

    out = tmp_path_factory.mktemp("registry_runs")
    cache: dict[tuple, Trained] = {}

    def get(entry_id: str, method: str) -> Trained:
        group = GROUP_OF[(entry_id, method)]
        if group.key not in cache:
            # No checkpoints (--checkpoint-freq beyond the run): the default, every tenth of the run, costs a third of
            # a tiny run's time; resumption has its own test in test_experiments.py.
            options = RunOptions(device="cpu", checkpoint_freq=10 * group.run.timesteps)
            runner = Runner([group.run], out, options, echo=lambda _: None)
            (run_dir,) = runner.prepare()
            code = worker.run(run_dir)
            assert code == 0, f"{group.run.entry_id} {group.run.method} on {group.run.env} stopped with code {code}"
            assert json.loads((run_dir / "done.json").read_text())["num_timesteps"] >= group.run.timesteps
            hyperparams = yaml.safe_load((run_dir / "hyperparams.yml").read_text())
            cache[group.key] = Trained(group.run, run_dir, read_scalars(run_dir), hyperparams)
        return cache[group.key]

    return get


def _has(scalars, tag: str) -> bool:
    return tag in scalars and len(scalars[tag][1]) > 0


def _max(scalars, tag: str) -> float:
    return float(np.max(scalars[tag][1])) if _has(scalars, tag) else -math.inf


def _ne_checks(t: Trained, kwargs: dict[str, Any]) -> list[tuple[str, bool]]:
    s = t.scalars
    checks = [
        ("NE grew connections at an event", _max(s, "plasticity/neuroplastic_expansion/grown") > 0),
        ("NE had an event", _max(s, "plasticity/neuroplastic_expansion/n_events") >= 1),
    ]
    if kwargs.get("prune", True):
        checks.append(("NE logged its pruning", _has(s, "plasticity/neuroplastic_expansion/pruned")))
    if "Review" in str(t.hyperparams.get("replay_buffer_class", "")):
        checks.append(("experience review logged epsilon", _has(s, "plasticity/neuroplastic_expansion/epsilon")))
    return checks


def _reset_counts(method: str):
    def check(t: Trained, kwargs: dict[str, Any]) -> list[tuple[str, bool]]:
        return [
            (f"{method} logged its reset count at each event", _has(t.scalars, f"plasticity/{method}/reset_count")),
            (f"{method} logged the running total", _has(t.scalars, f"plasticity/{method}/total_reset_count")),
        ]

    return check


def _reset_checks(t: Trained, kwargs: dict[str, Any]) -> list[tuple[str, bool]]:
    checks = [("Reset reset neurons", _max(t.scalars, "plasticity/reset/total_reset_count") > 0)]
    if kwargs.get("reset_on") == "phase":
        checks.append(("phase-triggered Reset logged the phase", _has(t.scalars, "plasticity/reset/phase")))
    return checks


def _any_tag(what: str, part: str):
    return lambda t, kwargs: [(what, any(part in k for k in t.scalars))]


def _max_above(what: str, tag: str, bound: float):
    return lambda t, kwargs: [(what, _max(t.scalars, tag) > bound)]


# Callback class -> what its log must show after a tiny run.
CALLBACK_CHECKS = {
    "PlasticityMonitorCallback": _any_tag("monitor logged the critic's active ratio", "plasticity/critic/active_ratio"),
    "NeuroplasticExpansionCallback": _ne_checks,
    "ReDoCallback": _reset_counts("redo"),
    "GraMaResetCallback": _reset_counts("regrama"),
    "ShrinkPerturbCallback": _reset_counts("shrink_perturb"),
    "ResetCallback": _reset_checks,
    "ReBornCallback": _any_tag("ReBorn logged its transfers", "plasticity/reborn/transferred_count"),
    "CBPCallback": _max_above("CBP replaced neurons", "plasticity/cbp/total_reset_count", 0),
    "PlasticityInjectionCallback": _max_above("injection happened", "plasticity/injection/injected", 0),
    "L2InitCallback": _max_above("L2-init penalty > 0", "plasticity/l2_init/penalty", 0),
    "ScorePruningCallback": lambda t, kwargs: [
        (
            "score pruning logged its pruned share",
            any(k.startswith("plasticity/score_pruning/") and k.endswith("/pruned_ratio") for k in t.scalars),
        )
    ],
    "QuadrantAnalysisCallback": _any_tag("quadrant analysis logged", "/quadrant_"),
    "IrreversibilityCallback": _any_tag("irreversibility logged", "never_recovered_ratio"),
    "PhaseEvalCallback": _any_tag("phase evaluation logged per task block", "eval/phase_"),
    "GradientHeatmapCallback": lambda t, kwargs: [
        ("gradient heat maps saved as .npy", any(t.run_dir.rglob("gradient_heatmaps/**/*.npy")))
    ],
}


def behaviour_checks(t: Trained) -> list[tuple[str, bool]]:
    """(what the method should have done, whether the log shows it) for the run's callbacks and algorithm."""
    s, hp = t.scalars, t.hyperparams
    checks = [("trained (train/critic_loss logged)", _has(s, "train/critic_loss"))]
    for name, kwargs in _callbacks(hp).items():
        checks += CALLBACK_CHECKS.get(name, lambda t, kwargs: [])(t, kwargs)
    if t.run.algo == "drqv2":
        checks.append(("DrQ-v2 n-step returns (n_steps 3)", hp.get("n_steps") == 3))
        checks.append(("DrQ-v2 random-shift augmentation on", int(hp.get("augmentation_pad") or 0) > 0))
        checks.append(("DrQ-v2 scheduled exploration logged", _has(s, "train/exploration_std")))
    if t.run.algo == "dacer":
        checks.append(("DACER's entropy estimate and alpha logged", _has(s, "train/alpha") and _has(s, "train/entropy")))
    return checks


def _entry_params():
    return [e.id for e in _entries() if e.id not in NOT_RUN]


# Tags every method of an entry logs (the return, the monitor's per-network curves); any other plotted tag belongs to
# one method (plasticity/redo/reset_count, an analysis callback's tags) and must come from at least one of them.
EVERY_METHOD_TAGS = ("plasticity/critic/", "plasticity/actor/")


def _logged(scalars, tag: str) -> bool:
    return any(_has(scalars, r) for r in RETURN_TAGS) if tag == "return" else _has(scalars, tag)


@pytest.mark.parametrize("entry_id", _entry_params())
def test_entry_runs_and_logs_its_tags(entry_id, trained):
    """Each method of the entry trains through the runner's worker and does what it should at least once, and every
    tag the entry plots is in the log (of every method for the return and the per-network curves, else of at least
    one method)."""
    entry = load_registry()[entry_id]
    problems = []
    runs = {method: trained(entry_id, method) for method in entry.methods}
    for method, t in runs.items():
        where = f"{method} (trained as {t.run.entry_id}:{t.run.method} on {t.run.env})"
        for tag in entry.metrics:
            if (tag == "return" or tag.startswith(EVERY_METHOD_TAGS)) and not _logged(t.scalars, tag):
                problems.append(f"{where}: tag {tag!r} never logged")
        for what, ok in behaviour_checks(t):
            if not ok:
                problems.append(f"{where}: {what}: not in the log")
    for tag in entry.metrics:
        if not any(_logged(t.scalars, tag) for t in runs.values()):
            problems.append(f"tag {tag!r} logged by none of {list(runs)}")
    known = [p for p in problems if any(p.startswith(f"{m} (") and what in p for m, what in KNOWN_BUGS.get(entry_id, {}))]
    assert not [p for p in problems if p not in known], "\n".join(problems)
    if known:
        pytest.xfail("known bug: " + "; ".join(known))


# Problems found by this test and not fixed yet: entry -> {(method, what the log misses)}. A listed problem makes the
# test xfail while it lasts; any other problem fails it.
KNOWN_BUGS: dict[str, set[tuple[str, str]]] = {}


def test_every_entry_is_run_or_listed():
    """Nothing of the two papers is silently skipped: an entry is trained here or named in NOT_RUN with its reason,
    and the NOT_RUN ones are exactly the entries the registry marks as not runnable."""
    ids = {e.id for e in _entries()}
    assert set(NOT_RUN) <= ids
    assert {e.id for e in _entries() if e.status != "runnable"} == set(NOT_RUN)


def test_grama_fig5_left_benchmark_runs(tmp_path):
    """Fig. 5 left is a timing benchmark (its registry ``needs`` gives the command): the script runs at a tiny size and
    writes plain / ReDo / ReGraMa times, their ratios and the resets of each method."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_reset_cost.py"
    output = tmp_path / "bench.json"
    cmd = [sys.executable, str(script), "--env", "sb3_plasticity/DMC-dog-walk-v0", "--rounds", "1", "--timesteps", "250"]
    cmd += ["--learning-starts", "50", "--warmup-timesteps", "0", "--freq", "100", "--device", "cpu"]
    cmd += ["--output", str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(output.read_text())
    (row,) = result["pairs"]
    for method in ("redo", "regrama"):
        assert row[f"ratio_{method}"] > 0
        assert math.isfinite(row[f"score_reset_{method}_ms"])  # the scoring and reset ran inside the timed window
    assert row["events_redo"] >= 1
    assert row["events_regrama"] >= 1 and math.isfinite(row["event_regrama_ms"])  # ReGraMa's event timed too


def _tiny_cifar100(root: Path, n_classes: int, train_per_class: int, test_per_class: int) -> None:
    """A CIFAR-100 python-version folder (``cifar-100-python/{train,test,meta}``) of random images, in the layout
    :func:`sb3_plasticity.continual.data.load_cifar100` reads; each class has its own mean colour, so it is learnable."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    means = rng.integers(40, 216, size=(n_classes, 3))
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(n_classes), per_class)
        images = means[labels][:, :, None] + rng.normal(0, 20, size=(len(labels), 3, 1024))
        data = np.clip(images, 0, 255).astype(np.uint8).reshape(len(labels), 3072)
        with (folder / split).open("wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist()}, f)
    with (folder / "meta").open("wb") as f:
        pickle.dump({b"fine_label_names": [f"class_{c}".encode() for c in range(n_classes)]}, f)


@pytest.mark.parametrize("method", ["vanilla", "redo", "regrama"])
def test_grama_fig5_right_continual_harness_runs(method, tmp_path):
    """Fig. 5 right: the command of the entry's ``needs`` (``python -m sb3_plasticity.continual --data DIR --method
    ...``, here its ``main``) on a generated CIFAR-100-format folder of 6 classes, 3 tasks of 1 epoch, logs the tags the
    entry plots, and ReDo / ReGraMa log their resets at the task switches."""
    from tbparse import SummaryReader

    from sb3_plasticity.continual.__main__ import main

    entry = load_registry()["grama/fig5_right"]
    _tiny_cifar100(tmp_path / "data", n_classes=6, train_per_class=30, test_per_class=10)
    logdir = tmp_path / "tb"
    argv = ["--data", str(tmp_path / "data"), "--method", method, "--initial-classes", "2", "--classes-per-task", "2"]
    argv += ["--epochs-per-task", "1", "--batch-size", "30", "--device", "cpu", "--logdir", str(logdir)]
    assert main(argv) == 0
    df = SummaryReader(str(logdir)).scalars
    tags = set(df["tag"])
    assert set(entry.metrics) <= tags, f"missing: {set(entry.metrics) - tags}"
    assert (df[df["tag"] == "continual/n_classes"]["value"].max()) == 6  # every task was reached
    if method != "vanilla":
        assert f"plasticity/{method}/reset_count" in tags  # a reset event at each of the 2 task switches
        assert len(df[df["tag"] == f"plasticity/{method}/reset_count"]) == 2
