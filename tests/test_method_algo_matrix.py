"""Every (method, algorithm) pair the README claims, inside a real ``learn()`` of a few hundred steps.

The README says the callbacks are for SB3's TD3, SAC and PPO "(and DDPG, A2C)", that the monitor "works with TD3,
DDPG, SAC, PPO and A2C", and that Neuroplastic Expansion takes ``MaskedTD3Policy`` (TD3, DDPG), ``MaskedSACPolicy``
and ``MaskedActorCriticPolicy`` (PPO/A2C). The exceptions are the methods' own documented limits:
``CycleResetDistillCallback`` distils a stochastic actor (PPO, A2C, SAC) and ``NetworkLearningRateCallback`` sets
separate actor and critic rates (TD3, DDPG, SAC). Each cell runs with event frequencies small enough that the
method acts at least once and checks what it logged (or, for the learning rates, what it set).

Issue 12 adds sb3-contrib's TQC and CrossQ and SB3's DQN and sb3-contrib's QR-DQN (through their policy adapters).
One representative cell per new column runs in the default suite; the others are ``slow``. The cells a method
refuses by design are checked for their clear error (:func:`test_method_refuses_algorithm_clearly`).
:func:`method_algo_table` writes the table for the README (``python tests/test_method_algo_matrix.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch as th
from helpers import Recorder
from sb3_contrib import QRDQN, TQC, CrossQ
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.logger import Logger

from sb3_plasticity import (
    CBPCallback,
    CycleResetDistillCallback,
    ExperienceReviewBuffer,
    GraMaResetCallback,
    L2InitCallback,
    MaskedActorCriticPolicy,
    MaskedSACPolicy,
    MaskedTD3Policy,
    NetworkLearningRateCallback,
    NeuroplasticExpansionCallback,
    PlasticityInjectionCallback,
    PlasticityMonitorCallback,
    ReBornCallback,
    ReDoCallback,
    ResetCallback,
    ScorePruningCallback,
    ShrinkPerturbCallback,
)
from sb3_plasticity.devices import misplaced_tensors
from sb3_plasticity.masked_contrib import MaskedDQNPolicy, MaskedQRDQNPolicy, MaskedTQCPolicy

FREQ = 100
ARCH = [16, 16]  # two hidden layers: the masked policies mask the hidden-to-hidden one
ALGOS: dict[str, tuple[type, str, dict[str, Any], int]] = {
    # name: (class, env, kwargs, env steps)
    "td3": (TD3, "Pendulum-v1", dict(learning_starts=50, buffer_size=1000, batch_size=32), 200),
    "ddpg": (DDPG, "Pendulum-v1", dict(learning_starts=50, buffer_size=1000, batch_size=32), 200),
    "sac": (SAC, "Pendulum-v1", dict(learning_starts=50, buffer_size=1000, batch_size=32), 200),
    "ppo": (PPO, "CartPole-v1", dict(n_steps=64, batch_size=32, n_epochs=2), 256),
    "a2c": (A2C, "CartPole-v1", dict(n_steps=16), 200),  # A2C has no batch_size: it trains on the whole rollout
    "tqc": (TQC, "Pendulum-v1", dict(learning_starts=50, buffer_size=1000, batch_size=32), 200),
    "crossq": (CrossQ, "Pendulum-v1", dict(learning_starts=50, buffer_size=1000, batch_size=32), 200),
    # train_freq 1: ReDo's and ReGraMa's events need a gradient step soon after they fall due
    "dqn": (DQN, "CartPole-v1", dict(learning_starts=50, buffer_size=1000, batch_size=32, train_freq=1), 200),
    "qrdqn": (QRDQN, "CartPole-v1", dict(learning_starts=50, buffer_size=1000, batch_size=32, train_freq=1), 200),
}
# few quantiles keep the quantile losses cheap (defaults: TQC 25, QR-DQN 200)
POLICY_KWARGS: dict[str, dict[str, Any]] = {"tqc": dict(n_quantiles=5), "qrdqn": dict(n_quantiles=5)}
ALL = tuple(ALGOS)
NEW = ("tqc", "crossq", "dqn", "qrdqn")  # issue 12's columns
# (method, algo) cells of the new columns that run in the default suite; the other new cells are slow
DEFAULT_NEW = {("redo", "tqc"), ("regrama", "crossq"), ("redo", "dqn"), ("monitor", "qrdqn")}
# the GraMa paper's other methods (issue 14): one cell each in the default suite, the others slow
LATER_ROWS = ("reborn", "l2_init", "score_pruning")
DEFAULT_LATER = {("reborn", "sac"), ("l2_init", "td3"), ("score_pruning", "ppo")}
STOCHASTIC_ACTOR = ("sac", "ppo", "a2c", "tqc", "crossq")
ACTOR_CRITIC_OPTIMIZERS = ("td3", "ddpg", "sac", "tqc", "crossq")
MASKED = {"td3": MaskedTD3Policy, "ddpg": MaskedTD3Policy, "sac": MaskedSACPolicy, "ppo": MaskedActorCriticPolicy}
MASKED.update(a2c=MaskedActorCriticPolicy, tqc=MaskedTQCPolicy, dqn=MaskedDQNPolicy, qrdqn=MaskedQRDQNPolicy)


@dataclass(frozen=True)
class Method:
    make: Callable[[], Any]
    logged: str | None  # a tag the method must have logged (None: check() only)
    algos: tuple[str, ...] = ALL
    masked: bool = False  # needs a masked policy (and the review buffer off-policy)
    check: Callable[[Any, Any], None] | None = None  # (model, callback) -> assertions


def _learning_rates_set(model, cb) -> None:
    for name, lr in cb.rates.items():
        assert all(g["lr"] == lr for g in getattr(model.policy, name).optimizer.param_groups), name


METHODS = {
    "monitor": Method(lambda: PlasticityMonitorCallback(log_freq=FREQ), None),
    "redo": Method(lambda: ReDoCallback(reset_freq=FREQ), "plasticity/redo/reset_count"),
    "regrama": Method(lambda: GraMaResetCallback(reset_freq=FREQ), "plasticity/regrama/reset_count"),
    "reset": Method(lambda: ResetCallback(reset_freq=FREQ), "plasticity/reset/reset_count"),
    "shrink_perturb": Method(lambda: ShrinkPerturbCallback(freq=FREQ), "plasticity/shrink_perturb/reset_count"),
    "cbp": Method(
        lambda: CBPCallback(replacement_rate=0.01, maturity_threshold=20, log_freq=FREQ), "plasticity/cbp/total_reset_count"
    ),
    "sbp": Method(
        lambda: CycleResetDistillCallback(reset_freq=FREQ, reset_rate=0.25, max_distill_epochs=2, distill_samples=64),
        "plasticity/cycle_reset_distill/reset_count",
        STOCHASTIC_ACTOR,
    ),
    "ne": Method(
        lambda: NeuroplasticExpansionCallback(grow_interval=FREQ, grow_rate=0.5),
        "plasticity/neuroplastic_expansion/grown",
        ("td3", "ddpg", "sac", "ppo", "a2c", "tqc", "dqn", "qrdqn"),
        masked=True,
    ),
    "injection": Method(lambda: PlasticityInjectionCallback(inject_at=150), "plasticity/injection/injected"),
    "learning_rates": Method(
        lambda: NetworkLearningRateCallback(actor=1e-4, critic=2e-3), None, ACTOR_CRITIC_OPTIMIZERS, check=_learning_rates_set
    ),
    "reborn": Method(lambda: ReBornCallback(reset_freq=FREQ), "plasticity/reborn/total_transferred_count"),
    "l2_init": Method(lambda: L2InitCallback(log_freq=FREQ), "plasticity/l2_init/penalty"),
    # its tags are per network (plasticity/score_pruning/<network>/pruned_ratio): n_events is checked
    "score_pruning": Method(lambda: ScorePruningCallback(prune_freq=FREQ), None),
}


def _marks(method: str, algo: str) -> list:
    if method in LATER_ROWS:
        return [] if (method, algo) in DEFAULT_LATER else [pytest.mark.slow]
    return [pytest.mark.slow] if algo in NEW and (method, algo) not in DEFAULT_NEW else []


CELLS = [
    pytest.param(method, algo, id=f"{method}-{algo}", marks=_marks(method, algo))
    for method, m in METHODS.items()
    for algo in m.algos
]
# What a method refuses by design, with the words of its error: (method, algo, exception, match).
REFUSED = [
    *[("sbp", a, ValueError, "distils a stochastic actor") for a in ("td3", "ddpg", "dqn", "qrdqn")],
    *[("learning_rates", a, ValueError, "") for a in ("ppo", "a2c", "dqn", "qrdqn")],
    ("ne", "crossq", ValueError, "needs a policy with MaskedLinear layers"),  # no masked CrossQ policy (yet)
]
# Every cell runs on each device present; CUDA cells are skipped on machines without a GPU (issue 11, part 5).
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not th.cuda.is_available(), reason="no CUDA device")),
]


def test_every_claimed_algorithm_is_covered():
    assert {algo for _, algo in (c.values for c in CELLS)} == set(ALGOS)
    # issue 12: 7 methods x 4 new algos; SBP, learning rates on 2; NE on 3; ReBorn, L2 Init, score pruning on all 9
    assert len(CELLS) == 46 + 7 * 4 + 2 + 2 + 3 + 3 * 9
    claimed = {(c.values[0], c.values[1]) for c in CELLS}
    refused = {(m, a) for m, a, _, _ in REFUSED}
    assert not claimed & refused
    # every (method, algo) pair is either a working cell or a clear error
    assert claimed | refused == {(m, a) for m in METHODS for a in ALGOS}


def _make(method: str, algo: str, device: str = "cpu"):
    m = METHODS[method]
    algo_cls, env_id, kwargs, steps = ALGOS[algo]
    policy = MASKED.get(algo, "MlpPolicy") if m.masked else "MlpPolicy"
    kwargs = dict(kwargs, policy_kwargs=dict(net_arch=list(ARCH), **POLICY_KWARGS.get(algo, {})))
    if m.masked and algo in ("td3", "ddpg", "sac", "tqc"):
        kwargs["replay_buffer_class"] = ExperienceReviewBuffer
    return algo_cls(policy, env_id, seed=0, device=device, **kwargs), steps


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method, algo", CELLS)
def test_method_works_on_algorithm(method, algo, device):
    m = METHODS[method]
    model, steps = _make(method, algo, device)
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    cb = m.make()
    model.learn(steps, callback=cb)
    assert model.num_timesteps >= steps
    if m.logged is not None:
        values = rec.values(m.logged)
        assert values, f"{method} on {algo} logged no {m.logged}"
        assert all(v >= 0 for _, v in values)
    if method == "monitor":
        tags = {k for _, row in rec.rows for k in row if k.startswith("plasticity/") and k.endswith("/dormant_ratio")}
        assert tags and cb.n_logged > 0, f"the monitor logged nothing on {algo}"
    elif hasattr(cb, "n_events") and method != "cbp":
        assert cb.n_events >= 1, f"{method} on {algo}: no event ran"
    if m.check is not None:
        m.check(model, cb)
    # every tensor the method created (state, buffers, masks, optimizer entries) lives on the model's device
    assert misplaced_tensors(model, cb) == []


@pytest.mark.parametrize("method, algo, error, match", REFUSED, ids=[f"{m}-{a}" for m, a, _, _ in REFUSED])
def test_method_refuses_algorithm_clearly(method, algo, error, match):
    model, steps = _make(method, algo)
    with pytest.raises(error, match=match):
        model.learn(steps, callback=METHODS[method].make())
    assert model.num_timesteps == 0  # refused at learn() start, before any step


COLUMNS = {"td3": "TD3", "ddpg": "DDPG", "sac": "SAC", "ppo": "PPO", "a2c": "A2C", "tqc": "TQC", "crossq": "CrossQ"}
COLUMNS.update(dqn="DQN", qrdqn="QR-DQN")
ROWS = {
    "monitor": "`PlasticityMonitorCallback`",
    "redo": "`ReDoCallback`",
    "regrama": "`GraMaResetCallback`",
    "reset": "`ResetCallback`",
    "shrink_perturb": "`ShrinkPerturbCallback`",
    "cbp": "`CBPCallback`",
    "sbp": "`CycleResetDistillCallback` (SBP/P3O)",
    "ne": "`NeuroplasticExpansionCallback` (masked policy)",
    "injection": "`PlasticityInjectionCallback`",
    "learning_rates": "`NetworkLearningRateCallback`",
    "reborn": "`ReBornCallback`",
    "l2_init": "`L2InitCallback`",
    "score_pruning": "`ScorePruningCallback`",
}


def method_algo_table() -> str:
    """The method x algorithm table (Markdown) of this module's parametrisation: "yes" for a cell that runs in a
    real ``learn()`` here, "error" for a clear error by design (:data:`REFUSED`)."""
    refused = {(m, a) for m, a, _, _ in REFUSED}
    lines = ["| method | " + " | ".join(COLUMNS[a] for a in ALGOS) + " |", "|---" * (len(ALGOS) + 1) + "|"]
    for method, m in METHODS.items():
        cells = ["yes" if a in m.algos else "error" if (method, a) in refused else "-" for a in ALGOS]
        lines.append(f"| {ROWS[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_table_has_a_row_per_method_and_a_column_per_algorithm():
    table = method_algo_table().splitlines()
    assert len(table) == 2 + len(METHODS)
    assert table[0] == "| method | TD3 | DDPG | SAC | PPO | A2C | TQC | CrossQ | DQN | QR-DQN |"
    assert table[2 + list(METHODS).index("sbp")].endswith("| error | error | yes | yes | yes | yes | yes | error | error |")
    assert all("-" not in row.split("|")[2:] for row in table[2:])  # no cell is left unexplained


if __name__ == "__main__":
    print(method_algo_table())
