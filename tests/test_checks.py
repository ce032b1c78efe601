"""The argument checks of :mod:`sb3_plasticity.checks`: what each accepts, what it returns and its exact message."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sb3_plasticity import checks
from sb3_plasticity.checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_nonnegative,
    check_positive_int,
    check_probability,
    check_range,
    check_sequence,
)

# (call, exact message)
BAD = [
    (lambda: check_range("tau", -0.1, 0.0), "tau must be a number in [0, inf], got -0.1"),
    (lambda: check_range("tau", "0.1", 0.0), "tau must be a number in [0, inf], got '0.1'"),
    (lambda: check_range("x", True, 0.0), "x must be a number in [0, inf], got True"),
    (lambda: check_range("decay_rate", 1.0, 0.0, 1.0, high_open=True), "decay_rate must be a number in [0, 1), got 1.0"),
    (lambda: check_range("lam", 0, 0.0, low_open=True), "lam must be a number in (0, inf], got 0"),
    (lambda: check_range("k", 1.5, 0, integer=True), "k must be an integer in [0, inf], got 1.5"),
    (lambda: check_range("k", -1, 0, integer=True), "k must be an integer in [0, inf], got -1"),
    (lambda: check_positive_int("log_freq", 0), "log_freq must be a positive integer, got 0"),
    (lambda: check_positive_int("log_freq", True), "log_freq must be a positive integer, got True"),
    (lambda: check_positive_int("freq", 1.0, unit="env steps"), "freq must be a positive integer (env steps), got 1.0"),
    (lambda: check_int("extra_layers", -1, 0), "extra_layers must be an integer >= 0, got -1"),
    (lambda: check_int("blocks", 5, 1, 4), "blocks must be an integer in [1, 4], got 5"),
    (lambda: check_int("blocks", "2", 1, 4), "blocks must be an integer in [1, 4], got '2'"),
    (lambda: check_nonnegative("dormant_tau", -1), "dormant_tau must be a number in [0, inf], got -1"),
    (lambda: check_probability("alpha", 1.5), "alpha must be a number in [0, 1], got 1.5"),
    (lambda: check_probability("alpha", -0.1), "alpha must be a number in [0, 1], got -0.1"),
    (lambda: check_fraction("reset_fraction", 0), "reset_fraction must be a number in (0, 1], got 0"),
    (lambda: check_fraction("top", None, allow_none=False), "top must be a number in (0, 1], got None"),
    (lambda: check_bool("prune", 1), "prune must be True or False, got 1"),
    (lambda: check_bool("prune", "yes"), "prune must be True or False, got 'yes'"),
    (lambda: check_choice("outgoing", "drop", ("zero", "keep")), "outgoing must be 'zero' or 'keep', got 'drop'"),
    (
        lambda: check_choice("schedule", "linear", ("cosine", "uniform", "warm_decay")),
        "schedule must be one of ('cosine', 'uniform', 'warm_decay'), got 'linear'",
    ),
    (lambda: check_choice("growth", ["x"], ("gradient", "random")), "growth must be 'gradient' or 'random', got ['x']"),
    (
        lambda: check_choice("mode", np.zeros(3), ("a", "b", "c")),
        "mode must be one of ('a', 'b', 'c'), got array([0., 0., 0.])",
    ),
    (lambda: check_sequence("hidden", [64, 0], check_positive_int), "hidden[1] must be a positive integer, got 0"),
    (lambda: check_sequence("hidden", [], check_positive_int), "hidden must be a non-empty sequence, got []"),
    (lambda: check_sequence("hidden", 64, check_positive_int), "hidden must be a non-empty sequence, got 64"),
    (lambda: check_sequence("tasks", "Hopper", str), "tasks must be a non-empty sequence, got 'Hopper'"),
    (lambda: check_sequence("hidden", {64: 1}, check_positive_int), "hidden must be a non-empty sequence, got {64: 1}"),
    (
        lambda: check_sequence("frictions", np.ones((1, 2)), check_nonnegative),
        "frictions must be a non-empty sequence, got array([[1., 1.]])",
    ),
]


@pytest.mark.parametrize("call, message", BAD)
def test_bad_values_raise_the_exact_message(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


def test_good_values_come_back_in_their_python_type():
    assert check_range("x", 1, 0.0) == 1.0 and type(check_range("x", 1, 0.0)) is float
    assert type(check_range("x", np.float32(0.5), 0.0, 1.0)) is float
    assert check_range("k", np.int64(3), 0, integer=True) == 3 and type(check_range("k", np.int64(3), 0, integer=True)) is int
    assert check_range("x", 0.0, 0.0, 1.0) == 0.0 and check_range("x", 1.0, 0.0, 1.0) == 1.0  # closed ends
    assert check_positive_int("n", np.int32(7)) == 7 and type(check_positive_int("n", np.int32(7))) is int
    assert check_int("blocks", 4, 1, 4) == 4 and check_int("extra_layers", 0, 0) == 0
    assert check_nonnegative("tau", 0) == 0.0
    assert check_probability("alpha", 0) == 0.0 and check_probability("alpha", 1) == 1.0
    assert check_fraction("f", None) is None and check_fraction("f", 1) == 1.0
    assert check_bool("b", np.bool_(True)) is True and check_bool("b", False) is False
    assert check_choice("outgoing", "keep", ("zero", "keep")) == "keep"
    assert check_choice("review_metric", "any_sample", {"per_sample": 0, "any_sample": 1}) == "any_sample"
    assert check_sequence("hidden", [64, np.int64(32)], check_positive_int) == (64, 32)
    frictions = check_sequence("frictions", np.array([0.5, 2]), check_nonnegative)
    assert frictions == (0.5, 2.0) and all(type(f) is float for f in frictions)


def test_methods_base_still_exports_the_checks():
    from sb3_plasticity.methods import base

    for name in ("check_range", "check_positive_int", "check_nonnegative", "check_fraction"):
        assert getattr(base, name) is getattr(checks, name)
