"""The experiments registry: one entry per figure and table of the three papers, read from ``registry/<paper>.yaml``.

The YAML files are data (their schema: ``registry/SCHEMA.md``); this module turns them into :class:`Entry` objects,
checks them, expands an entry into its runs (method x env x seed) and resolves each method's rl-zoo conf file and
overrides. Nothing here trains: :mod:`sb3_plasticity.experiments.runner` does.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "PAPERS",
    "Entry",
    "ExperimentError",
    "MethodSpec",
    "RunSpec",
    "get_entry",
    "load_registry",
    "zoo_configs_dir",
]

PAPERS = ("ne", "p3o", "grama")
REGISTRY_DIR = Path(__file__).parent / "registry"
_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.=+-]*$")
_OVERRIDE_ROOTS = ("hyperparams", "policy_kwargs", "env_kwargs", "replay_buffer_kwargs", "callback")


class ExperimentError(ValueError):
    """A registry entry, a command-line selection or a run that cannot go ahead; the message says why in one line."""


def zoo_configs_dir() -> Path:
    """The ``zoo_configs/`` folder the registry's ``conf`` paths are relative to.

    ``SB3_PLASTICITY_ZOO_CONFIGS`` if set, else the repository's ``zoo_configs/`` next to the package (an editable or
    source install, which is how the configs are used).
    """
    env = os.environ.get("SB3_PLASTICITY_ZOO_CONFIGS")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "zoo_configs"
    if not path.is_dir():
        raise ExperimentError(
            f"zoo_configs folder not found at {path}: install sb3-plasticity from its repository (pip install -e .) "
            "or set SB3_PLASTICITY_ZOO_CONFIGS"
        )
    return path


@dataclass(frozen=True)
class MethodSpec:
    """One compared method of an entry: an rl-zoo conf file plus overrides.

    :param name: short name, used in run folders and legends.
    :param conf: path of the conf file under ``zoo_configs/`` (yaml or ``.py``).
    :param algo: rl-zoo ``--algo``.
    :param overrides: flat dotted keys (``hyperparams.x``, ``policy_kwargs.x``, ``env_kwargs.x``,
        ``replay_buffer_kwargs.x``, ``callback.<CallbackClass>.<kwarg>``) applied to the conf's entry for the env.
    :param needs: what is missing before this method can run (None: it can).
    """

    name: str
    conf: str
    algo: str
    overrides: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None

    @property
    def runnable(self) -> bool:
        return self.needs is None


@dataclass(frozen=True)
class Entry:
    """One figure or table of a paper (see ``registry/SCHEMA.md`` for every field)."""

    paper: str
    key: str
    kind: str
    shows: str
    algo: str
    methods: dict[str, MethodSpec]
    baseline: str | None
    envs: tuple[str, ...]
    seeds: int
    budget: int
    metrics: tuple[str, ...]
    env_budgets: dict[str, int] = field(default_factory=dict)
    paper_numbers: dict[str, Any] | None = None
    needs: tuple[str, ...] = ()
    grid: dict[str, Any] | None = None
    notes: str = ""

    @property
    def id(self) -> str:
        return f"{self.paper}/{self.key}"

    def budget_for(self, env: str) -> int:
        """The paper's env steps per run on ``env`` (``budget``, or its per-env value)."""
        return self.env_budgets.get(env, self.budget)

    @property
    def runnable_methods(self) -> list[str]:
        return [name for name, m in self.methods.items() if m.runnable]

    @property
    def status(self) -> str:
        """``runnable``, ``partial`` (some methods can run) or ``needs``."""
        if self.needs or not self.runnable_methods:
            return "needs"
        return "runnable" if len(self.runnable_methods) == len(self.methods) else "partial"

    def missing(self, methods: list[str] | None = None) -> list[str]:
        """What is missing before ``methods`` (default: all) of this entry can run, one line each."""
        out = [f"{self.id}: {n}" for n in self.needs]
        for name in methods or list(self.methods):
            if self.methods[name].needs:
                out.append(f"{self.id} method {name!r}: {self.methods[name].needs}")
        return out


@dataclass(frozen=True)
class RunSpec:
    """One training run of an entry: a method on an env with a seed, trained for ``timesteps`` env steps."""

    entry_id: str
    method: str
    algo: str
    conf: str
    overrides: dict[str, Any]
    env: str
    seed: int
    timesteps: int

    @property
    def rel_dir(self) -> Path:
        """``<paper>/<entry>/<method>/<env>/seed_<k>`` (a ``/`` in an env id becomes ``-``)."""
        return Path(self.entry_id) / self.method / self.env.replace("/", "-") / f"seed_{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "method": self.method,
            "algo": self.algo,
            "conf": self.conf,
            "overrides": dict(self.overrides),
            "env": self.env,
            "seed": self.seed,
            "timesteps": self.timesteps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        return cls(**data)


def _grid_methods(key: str, base: MethodSpec, grid: dict[str, Any]) -> dict[str, MethodSpec]:
    param, values = grid.get("param"), grid.get("values")
    if not isinstance(param, str) or not isinstance(values, list) or not values:
        raise ExperimentError(f"{key}: grid needs a 'param' (dotted key) and a non-empty list of 'values'")
    short = param.rsplit(".", 1)[-1]
    prefix = base.name if base.name.endswith(short) else f"{base.name}_{short}"
    return {
        f"{prefix}={value}": MethodSpec(
            name=f"{prefix}={value}",
            conf=base.conf,
            algo=base.algo,
            overrides={**base.overrides, param: value},
            needs=base.needs,
        )
        for value in values
    }


def _check_override_keys(where: str, overrides: dict[str, Any]) -> None:
    for key in overrides:
        root = key.split(".", 1)[0]
        parts = key.split(".")
        if root not in _OVERRIDE_ROOTS or len(parts) < 2 or (root == "callback" and len(parts) != 3):
            raise ExperimentError(
                f"{where}: override {key!r} is not one of hyperparams.<key>, policy_kwargs.<key>, env_kwargs.<key>, "
                "replay_buffer_kwargs.<key>, callback.<CallbackClass>.<kwarg>"
            )


def _parse_entry(paper: str, raw: dict[str, Any]) -> Entry:
    key = str(raw.get("id", ""))
    where = f"{paper}/{key}"
    if not _NAME.match(key):
        raise ExperimentError(f"{paper}.yaml: entry id {key!r} must be lower case letters, digits and _")
    algo = raw.get("algo")
    methods: dict[str, MethodSpec] = {}
    for name, spec in (raw.get("methods") or {}).items():
        if not _NAME.match(str(name)) or not isinstance(spec, dict) or "conf" not in spec:
            raise ExperimentError(f"{where}: method {name!r} needs a lower-case name and a 'conf' path")
        overrides = dict(spec.get("overrides") or {})
        _check_override_keys(f"{where} method {name!r}", overrides)
        methods[str(name)] = MethodSpec(
            name=str(name),
            conf=str(spec["conf"]),
            algo=str(spec.get("algo", algo)),
            overrides=overrides,
            needs=spec.get("needs"),
        )
    grid = raw.get("grid")
    if grid is not None:
        base = grid.get("base")
        if base not in methods:
            raise ExperimentError(f"{where}: grid base {base!r} is not one of the entry's methods {list(methods)}")
        _check_override_keys(f"{where} grid", {grid.get("param", ""): None})
        expanded = _grid_methods(where, methods.pop(base), grid)
        methods = {**expanded, **methods}
    if not methods:
        raise ExperimentError(f"{where}: no methods")
    baseline = raw.get("baseline")
    if baseline is not None and baseline not in methods:
        raise ExperimentError(f"{where}: baseline {baseline!r} is not one of the entry's methods {list(methods)}")
    needs = raw.get("needs") or ()
    if isinstance(needs, str):
        needs = (needs,)
    envs = tuple(raw.get("envs") or ())
    try:
        seeds = int(raw["seeds"])
        budgets = raw["budget"] if isinstance(raw["budget"], dict) else {"default": raw["budget"]}
        budgets = {str(k): int(float(v)) for k, v in budgets.items()}
        budget = budgets.pop("default")
    except (KeyError, TypeError, ValueError) as exc:
        raise ExperimentError(f"{where}: 'seeds' and 'budget' (a number or {{default: n, <env>: n}}) ({exc})") from None
    if not envs or seeds < 1 or budget < 1 or any(v < 1 for v in budgets.values()):
        raise ExperimentError(f"{where}: needs at least one env, seeds >= 1 and budgets >= 1")
    if set(budgets) - set(envs):
        raise ExperimentError(f"{where}: per-env budgets for envs not in the entry: {sorted(set(budgets) - set(envs))}")
    return Entry(
        paper=paper,
        key=key,
        kind=str(raw.get("kind", "figure")),
        shows=str(raw.get("shows", "")),
        algo=str(algo),
        methods=methods,
        baseline=baseline,
        envs=envs,
        seeds=seeds,
        budget=budget,
        env_budgets=budgets,
        metrics=tuple(raw.get("metrics") or ("return",)),
        paper_numbers=raw.get("paper_numbers"),
        needs=tuple(str(n) for n in needs),
        grid=grid,
        notes=str(raw.get("notes", "") or ""),
    )


def registry_files() -> list[Path]:
    """The papers' YAML files, then any ``*.yaml`` in the folders of ``SB3_PLASTICITY_REGISTRY`` (your own
    experiments, same schema; ``os.pathsep``-separated)."""
    files = [REGISTRY_DIR / f"{paper}.yaml" for paper in PAPERS if (REGISTRY_DIR / f"{paper}.yaml").exists()]
    for folder in filter(None, os.environ.get("SB3_PLASTICITY_REGISTRY", "").split(os.pathsep)):
        files += sorted(Path(folder).glob("*.yaml"))
    return files


@cache
def _load(files: tuple[Path, ...]) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for path in files:
        data = yaml.safe_load(path.read_text()) or {}
        paper = str(data.get("paper", path.stem))
        for raw in data.get("entries") or []:
            entry = _parse_entry(paper, raw)
            if entry.id in entries:
                raise ExperimentError(f"{path.name}: duplicate entry id {entry.id!r}")
            entries[entry.id] = entry
    return entries


def load_registry() -> dict[str, Entry]:
    """Every registered entry, keyed by id (``"ne/fig6"``), in the papers' order (see :func:`registry_files`)."""
    return _load(tuple(registry_files()))


def get_entry(entry_id: str) -> Entry:
    """The entry ``entry_id`` (``"ne/fig6"``), or an :class:`ExperimentError` naming the close ids."""
    registry = load_registry()
    if entry_id in registry:
        return registry[entry_id]
    paper = entry_id.split("/", 1)[0]
    same_paper = [i for i in registry if i.startswith(f"{paper}/")]
    hint = ", ".join(same_paper) if same_paper else f"ids start with one of {', '.join(p + '/' for p in PAPERS)}"
    raise ExperimentError(f"unknown experiment id {entry_id!r}; known: {hint} (sb3-plasticity list)")


def select(
    entry: Entry,
    methods: list[str] | None = None,
    envs: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Check a command line's ``--methods`` / ``--envs`` against the entry; return them (default: all)."""
    for chosen, allowed, what in ((methods, list(entry.methods), "method"), (envs, list(entry.envs), "env")):
        for value in chosen or []:
            if value not in allowed:
                raise ExperimentError(f"unknown {what} {value!r} for {entry.id}; allowed: {', '.join(allowed)}")
    return list(methods or entry.methods), list(envs or entry.envs)


def expand(
    entry: Entry,
    methods: list[str] | None = None,
    envs: list[str] | None = None,
    seeds: int | None = None,
    timesteps: int | None = None,
    budget_scale: float | None = None,
) -> list[RunSpec]:
    """The runs of ``entry`` (method x env x seed), or an :class:`ExperimentError` before anything runs.

    :param seeds: number of seeds (default: the paper's), run as seeds ``0 .. seeds-1``.
    :param timesteps: env steps per run; exclusive with ``budget_scale`` (default: the paper's budget for the env).
    :param budget_scale: fraction of the paper's budget (> 0).
    """
    methods, envs = select(entry, methods, envs)
    missing = entry.missing(methods)
    if missing:
        runnable = entry.runnable_methods
        hint = f" (runnable methods: --methods {' '.join(runnable)})" if runnable and not entry.needs else ""
        raise ExperimentError("; ".join(missing) + hint)
    if timesteps is not None and budget_scale is not None:
        raise ExperimentError("give --timesteps or --budget-scale, not both")
    if budget_scale is not None and not budget_scale > 0:
        raise ExperimentError(f"--budget-scale must be > 0, got {budget_scale}")
    if timesteps is not None and timesteps < 1:
        raise ExperimentError(f"--timesteps must be >= 1, got {timesteps}")
    if seeds is not None and seeds < 1:
        raise ExperimentError(f"--seeds must be >= 1, got {seeds}")
    runs = []
    for name in methods:
        spec = entry.methods[name]
        for env in envs:
            steps = timesteps if timesteps is not None else max(1, round(entry.budget_for(env) * (budget_scale or 1.0)))
            for seed in range(seeds or entry.seeds):
                runs.append(RunSpec(entry.id, name, spec.algo, spec.conf, dict(spec.overrides), env, seed, steps))
    return runs


def read_conf(conf: str) -> dict[str, Any]:
    """The hyperparameter dict of a zoo conf file (``path`` under ``zoo_configs/``), read as rl-zoo reads it."""
    path = zoo_configs_dir() / conf
    if not path.exists():
        raise ExperimentError(f"conf file {conf!r} not found under {zoo_configs_dir()}")
    if path.suffix == ".py":
        scope: dict[str, Any] = {}
        exec(path.read_text(), scope)
        return scope["hyperparams"]
    return yaml.safe_load(path.read_text())


def _eval_kwargs(value: Any) -> dict[str, Any]:
    """A ``policy_kwargs``-style value as rl-zoo evaluates it (a string is Python with nn, th, np in scope)."""
    if isinstance(value, str):
        import numpy as np
        import torch as th
        from torch import nn

        return dict(eval(value, {"nn": nn, "th": th, "np": np}))
    return dict(value or {})


def apply_overrides(hyperparams: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``hyperparams`` (one env's conf entry) with the registry's dotted ``overrides`` applied (a new dict)."""
    out = dict(hyperparams)
    for key, value in overrides.items():
        root, rest = key.split(".", 1)
        if root == "hyperparams":
            out[rest] = value
        elif root == "callback":
            cls_name, kwarg = rest.split(".")
            callbacks = out.get("callback") or []
            callbacks = [callbacks] if not isinstance(callbacks, list) else list(callbacks)
            for i, item in enumerate(callbacks):
                name, kwargs = (item, {}) if isinstance(item, str) else next(iter(item.items()))
                if name.rsplit(".", 1)[-1] == cls_name:
                    callbacks[i] = {name: {**(kwargs or {}), kwarg: value}}
                    break
            else:
                raise ExperimentError(f"override {key!r}: the conf has no callback {cls_name} (it has {callbacks})")
            out["callback"] = callbacks
        else:
            out[root] = {**_eval_kwargs(out.get(root)), rest: value}
    return out


def check_runs(runs: list[RunSpec]) -> None:
    """Every run's conf file exists and has its env (so a run never fails halfway on a missing config)."""
    for run in runs:
        conf = read_conf(run.conf)
        if run.env not in conf and "default" not in conf:
            raise ExperimentError(f"{run.entry_id} method {run.method!r}: {run.conf} has no entry for {run.env}")
