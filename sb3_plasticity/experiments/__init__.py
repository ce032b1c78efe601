"""Experiments: every figure and table of the three papers as one command (``sb3-plasticity``).

- :mod:`~sb3_plasticity.experiments.entries`: the registry (``registry/<paper>.yaml``), expanded into runs;
- :mod:`~sb3_plasticity.experiments.runner`: runs them through rl_zoo3, locally or as Ray tasks, with resumption;
- :mod:`~sb3_plasticity.experiments.report`: figures, rliable aggregates and ``report.md`` from their logs;
- :mod:`~sb3_plasticity.experiments.cli`: the ``sb3-plasticity`` command.

This layer sits on top of the package: nothing in ``sb3_plasticity`` imports it, and importing it imports neither
rl_zoo3 nor Ray (the runner's worker processes do).
"""

from sb3_plasticity.experiments.entries import (
    Entry,
    ExperimentError,
    MethodSpec,
    RunSpec,
    expand,
    get_entry,
    load_registry,
)

__all__ = ["Entry", "ExperimentError", "MethodSpec", "RunSpec", "expand", "get_entry", "load_registry"]
