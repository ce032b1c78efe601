"""The weight-changing methods (ReDo, ReGraMa, Reset, Shrink & Perturb, CBP) inside real ``learn()`` runs: tags and
counts, which weights change at an event, argument and setup errors, state across save/load, and hooks."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import pytest
import torch as th
from helpers import HookSpy, RaiseAt, forward_hook_count, model_optimizers, read_scalars
from stable_baselines3 import DQN, PPO, SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity import (
    CBPCallback,
    GraMaResetCallback,
    NeuronDiscoveryError,
    ReDoCallback,
    ResetCallback,
    ShrinkPerturbCallback,
)
from sb3_plasticity.hooks import step_hooks

WIDTH = 32
ARCH = dict(net_arch=[WIDTH, WIDTH])
FREQ = 100
OFF_POLICY = dict(learning_starts=100, buffer_size=1000, batch_size=64, policy_kwargs=ARCH)
PPO_KW = dict(n_steps=64, batch_size=32, n_epochs=4, policy_kwargs=ARCH)
CBP_KW = dict(replacement_rate=0.01, maturity_threshold=20, log_freq=FREQ)

# Hidden layers (neuron groups) and output layers of each trainable network.
HIDDEN = {
    TD3: {"actor": {"mu.0", "mu.2"}, "critic": {"qf0.0", "qf0.2", "qf1.0", "qf1.2"}},
    SAC: {"actor": {"latent_pi.0", "latent_pi.2"}, "critic": {"qf0.0", "qf0.2", "qf1.0", "qf1.2"}},
    PPO: {
        "policy": {"mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2"},
        "value": {"mlp_extractor.value_net.0", "mlp_extractor.value_net.2"},
    },
}
OUTPUT = {
    TD3: {"actor": {"mu.4"}, "critic": {"qf0.4", "qf1.4"}},
    SAC: {"actor": {"mu", "log_std"}, "critic": {"qf0.4", "qf1.4"}},
    PPO: {"policy": {"action_net"}, "value": {"value_net"}},
}


@dataclass(frozen=True)
class Method:
    make: Callable[..., Any]
    tag: str  # plasticity/<tag>/...
    ratio: str  # <network>/<ratio>_before|after
    layers: str  # which layers get per-layer counts: "hidden", "all" or "output"


REDO = Method(lambda **kw: ReDoCallback(reset_freq=FREQ, **kw), "redo", "dormant_ratio", "hidden")
GRAMA_ACT = Method(
    lambda **kw: GraMaResetCallback(reset_freq=FREQ, tau=0.1, score="activation_grad", **kw),
    "regrama",
    "grama_inactive_ratio",
    "hidden",
)
GRAMA_W = Method(
    lambda **kw: GraMaResetCallback(reset_freq=FREQ, tau=0.1, score="weight_grad", **kw),
    "regrama",
    "grama_inactive_ratio",
    "hidden",
)
RESET_ALL = Method(lambda **kw: ResetCallback(reset_freq=FREQ, layers="all", **kw), "reset", "dormant_ratio", "all")
RESET_LAST = Method(lambda **kw: ResetCallback(reset_freq=FREQ, layers=1, **kw), "reset", "dormant_ratio", "output")
SHRINK_PERTURB = Method(lambda **kw: ShrinkPerturbCallback(freq=FREQ, **kw), "shrink_perturb", "dormant_ratio", "all")
CBP = Method(lambda **kw: CBPCallback(**CBP_KW, **kw), "cbp", "dormant_ratio", "hidden")

METHODS = [
    pytest.param(REDO, id="redo"),
    pytest.param(GRAMA_ACT, id="regrama-activation_grad"),
    pytest.param(GRAMA_W, id="regrama-weight_grad"),
    pytest.param(RESET_ALL, id="reset-all"),
    pytest.param(RESET_LAST, id="reset-last1"),
    pytest.param(SHRINK_PERTURB, id="shrink_perturb"),
    pytest.param(CBP, id="cbp"),
]
ONE_PER_CLASS = [
    pytest.param(REDO, id="redo"),
    pytest.param(GRAMA_ACT, id="regrama"),
    pytest.param(RESET_ALL, id="reset"),
    pytest.param(SHRINK_PERTURB, id="shrink_perturb"),
    pytest.param(CBP, id="cbp"),
]
# (algorithm, env, kwargs, env steps, drift tag); PPO's events wait for a full rollout buffer or a train().
ALGOS = [
    pytest.param(TD3, "Pendulum-v1", OFF_POLICY, 300, "action_change", id="td3"),
    pytest.param(SAC, "Pendulum-v1", OFF_POLICY, 300, "policy_kl", id="sac"),
    pytest.param(PPO, "CartPole-v1", PPO_KW, 640, "policy_kl", id="ppo"),
]


def make(algo, env, tmp_path, **kwargs):
    return algo("MlpPolicy", env, tensorboard_log=str(tmp_path), seed=0, device="cpu", **copy.deepcopy(kwargs))


# ----------------------------------------------------------------------------------------------------
# Reading the logs
# ----------------------------------------------------------------------------------------------------
Series = list[tuple[int, float]]


def method_scalars(scalars: dict[str, Series], tag: str) -> dict[str, Series]:
    """``plasticity/<tag>/<rest>`` -> ``{rest: series}``."""
    prefix = f"plasticity/{tag}/"
    return {k[len(prefix) :]: v for k, v in scalars.items() if k.startswith(prefix)}


def per_network(logged: dict[str, Series]) -> dict[str, set[str]]:
    """``{network: {metric, ...}}`` of the ``<network>/<metric>`` tags."""
    out: dict[str, set[str]] = {}
    for key in logged:
        parts = key.split("/")
        if len(parts) == 2:
            out.setdefault(parts[0], set()).add(parts[1])
    return out


def per_layer(logged: dict[str, Series]) -> dict[str, set[str]]:
    """``{network: {layer, ...}}`` of the ``<network>/<layer>/reset_count`` tags."""
    out: dict[str, set[str]] = {}
    for key in logged:
        parts = key.split("/")
        if len(parts) == 3:
            assert parts[2] == "reset_count", key
            out.setdefault(parts[0], set()).add(parts[1])
    return out


def values_at(series: Series) -> dict[int, float]:
    steps = [s for s, _ in series]
    assert len(set(steps)) == len(steps), series  # one value per step
    return dict(series)


def expected_layers(algo, kind: str, networks=None) -> dict[str, set[str]]:
    hidden, output = HIDDEN[algo], OUTPUT[algo]
    names = networks or list(hidden)
    pick = {"hidden": lambda n: hidden[n], "output": lambda n: output[n], "all": lambda n: hidden[n] | output[n]}[kind]
    return {n: pick(n) for n in names}


def layer_width(model, network: str, layer: str) -> int:
    root = getattr(model.policy, network) if network in ("actor", "critic") else model.policy
    return root.get_submodule(layer).out_features


def check_counts(logged: dict[str, Series], model, n_events: int) -> Series:
    """Counts are non-negative integers that add up per step; the total is their running sum. Returns reset_count."""
    events = logged["reset_count"]
    totals = logged["total_reset_count"]
    assert [s for s, _ in totals] == [s for s, _ in events]
    assert len(events) == n_events
    running = 0.0
    for (step, n), (_, total) in zip(events, totals, strict=True):
        assert n >= 0 and n == int(n), (step, n)
        running += n
        assert total == running, (step, total, running)
    assert all(a <= b for (_, a), (_, b) in itertools.pairwise(totals))
    layers = per_layer(logged)
    for step, n in events:
        by_network = 0.0
        for network, names in layers.items():
            net_count = values_at(logged.get(f"{network}/reset_count", [])).get(step)
            layer_counts = [values_at(logged[f"{network}/{name}/reset_count"]).get(step) for name in names]
            if net_count is None:  # CBP logs a network only in windows where it replaced neurons
                assert all(c is None for c in layer_counts), (step, network)
                continue
            assert net_count == sum(layer_counts), (step, network)
            for name, c in zip(names, layer_counts, strict=True):
                assert c == int(c) and 0 <= c <= layer_width(model, network, name), (step, network, name, c)
            by_network += net_count
        assert n == by_network, step
    return events


def check_ratios_and_drift(logged: dict[str, Series], ratio: str, drift: str, networks) -> None:
    for network in networks:
        for when in ("before", "after"):
            series = logged[f"{network}/{ratio}_{when}"]
            assert series, (network, when)
            assert all(0.0 <= v <= 1.0 for _, v in series), (network, when, series)
    assert logged[drift]
    assert all(math.isfinite(v) and v >= 0.0 for _, v in logged[drift]), logged[drift]


# ----------------------------------------------------------------------------------------------------
# Hooks
# ----------------------------------------------------------------------------------------------------
def assert_hooks_released(model, fresh_step_ok: bool = True) -> None:
    """No forward hook, no step post-hook; the only step pre-hook allowed is surgery's fresh-step hook, and only while
    it still has entries pending (reset entries whose gradient has been 0 since their reset)."""
    assert forward_hook_count(model.policy.modules()) == 0
    for opt in model_optimizers(model):
        assert len(opt._optimizer_step_post_hooks) == 0
        torch_hooks = list(opt._optimizer_step_pre_hooks.values())
        if not fresh_step_ok:
            assert torch_hooks == []
            continue
        assert len(torch_hooks) <= 1  # the optimizer's StepHooks, which runs the package's pre-step hooks in order
        hooks = step_hooks(opt).pre_hooks if torch_hooks else []
        assert len(hooks) <= 1
        for hook in hooks:
            assert hook is step_hooks(opt).fresh  # surgery's fresh-step registry of this optimizer
            assert hook.holds == 0
            assert hook.pending  # the methods release a hook with nothing pending when they end
            owned = {id(p) for pg in opt.param_groups for p in pg["params"]}
            for param in hook.pending:
                mask = hook.mask(param)
                assert id(param) in owned and mask.any()
                state = opt.state[param]
                # not given its fresh first step yet: its moments are still the zeros the reset left
                assert not state["exp_avg"][mask].any() and not state["exp_avg_sq"][mask].any()


# ----------------------------------------------------------------------------------------------------
# Weights right before and right after each event
# ----------------------------------------------------------------------------------------------------
def snapshot(model) -> dict[str, th.Tensor]:
    weights = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
    if hasattr(model, "log_ent_coef"):
        weights["log_ent_coef"] = model.log_ent_coef.detach().clone()
    return weights


@dataclass
class Event:
    step: int
    before: dict[str, th.Tensor]
    after: dict[str, th.Tensor]
    has_state: dict[str, bool]  # trained parameter -> whether its optimizer holds state for it right after


class WeightsBefore(BaseCallback):
    """Put right before the method in a CallbackList: the weights before each of its step / rollout-start calls."""

    weights: dict[str, th.Tensor]

    def _on_step(self) -> bool:
        self.weights = snapshot(self.model)
        return True

    def _on_rollout_start(self) -> None:
        self.weights = snapshot(self.model)

    def _on_rollout_end(self) -> None:  # ReDo's PPO events wait for the full rollout buffer
        self.weights = snapshot(self.model)


class WeightsAtEvents(BaseCallback):
    """Put right after the method: the weights right before and right after each of its events."""

    def __init__(self, before: WeightsBefore, method) -> None:
        super().__init__()
        self.before = before
        self.method = method
        self.events: list[Event] = []

    def _check(self) -> None:
        if self.method.n_events > len(self.events):
            assert self.method.n_events == len(self.events) + 1
            optimizers = model_optimizers(self.model)
            owned = {id(p) for opt in optimizers for pg in opt.param_groups for p in pg["params"]}
            has_state = {
                name: any(bool(opt.state.get(p)) for opt in optimizers)
                for name, p in self.model.policy.named_parameters()
                if id(p) in owned  # not the target networks
            }
            self.events.append(Event(self.num_timesteps, self.before.weights, snapshot(self.model), has_state))

    def _on_step(self) -> bool:
        self._check()
        return True

    def _on_rollout_start(self) -> None:
        self._check()

    def _on_rollout_end(self) -> None:
        self._check()


def learn_with_events(model, method, steps: int) -> list[Event]:
    before = WeightsBefore()
    at_events = WeightsAtEvents(before, method)
    model.learn(steps, callback=[before, method, at_events])
    assert len(at_events.events) == method.n_events >= 2
    return at_events.events


def changed(event: Event) -> set[str]:
    return {k for k in event.before if not th.equal(event.before[k], event.after[k])}


def twin(key: str) -> str:
    network, rest = key.split(".", 1)
    return f"{network}_target.{rest}"


# ----------------------------------------------------------------------------------------------------
# Every method on every algorithm: tags, values, counts, hooks
# ----------------------------------------------------------------------------------------------------
def check_method_logs(logged: dict[str, Series], model, cb, method: Method, algo, drift: str, networks=None) -> None:
    layers = expected_layers(algo, method.layers, networks)
    ratios = {f"{method.ratio}_before", f"{method.ratio}_after"}
    # exactly these tags: the totals, the drift, each chosen network's count and ratios, and its layers' counts
    assert per_network(logged) == {n: {"reset_count"} | ratios for n in layers}
    assert per_layer(logged) == layers
    assert set(logged) == (
        {"reset_count", "total_reset_count", drift}
        | {f"{n}/{m}" for n in layers for m in {"reset_count"} | ratios}
        | {f"{n}/{layer}/reset_count" for n, names in layers.items() for layer in names}
    )
    events = check_counts(logged, model, cb.n_events)
    assert cb.n_events >= 2
    assert cb.total_reset == sum(n for _, n in events) > 0
    check_ratios_and_drift(logged, method.ratio, drift, layers)
    if method.layers != "hidden":  # whole layers: every output of the chosen layers, at every event
        for network, names in layers.items():
            for name in names:
                width = layer_width(model, network, name)
                assert [v for _, v in logged[f"{network}/{name}/reset_count"]] == [width] * cb.n_events
        assert [s for s, _ in events] == list(range(FREQ, model.num_timesteps + 1, FREQ))


@pytest.mark.parametrize("algo, env_id, kwargs, steps, drift", ALGOS)
@pytest.mark.parametrize("method", METHODS)
def test_learn_logs_counts_ratios_and_drift(tmp_path, method, algo, env_id, kwargs, steps, drift):
    model = make(algo, env_id, tmp_path, **kwargs)
    cb, spy = method.make(), HookSpy()
    model.learn(steps, callback=[cb, spy])
    check_method_logs(method_scalars(read_scalars(tmp_path), method.tag), model, cb, method, algo, drift)
    # hooks between steps: ReGraMa's capture while an event waits for its training pass, CBP's capture and
    # step hooks all along; ReDo, Reset and S&P hook nothing between events. All gone after learn().
    assert (spy.max_forward > 0) == (method.tag in ("regrama", "cbp"))
    assert (spy.max_step_post > 0) == (method.tag == "cbp")
    assert_hooks_released(model, fresh_step_ok=method.tag in ("redo", "regrama", "cbp"))


@pytest.mark.parametrize("method", ONE_PER_CLASS)
def test_networks_restricts_tags(tmp_path, method):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    cb = method.make(networks="critic")  # a name alone is a one-network list
    assert cb.networks == ["critic"]
    model.learn(300, callback=cb)
    logged = method_scalars(read_scalars(tmp_path), method.tag)
    check_method_logs(logged, model, cb, method, TD3, "action_change", networks=["critic"])
    assert not any(key.startswith("actor") for key in logged)


# ----------------------------------------------------------------------------------------------------
# What changes at an event
# ----------------------------------------------------------------------------------------------------
def test_reset_last_layer_changes_only_output_layers_and_syncs_targets(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    events = learn_with_events(model, ResetCallback(reset_freq=FREQ, layers=1), 300)
    assert [e.step for e in events] == [100, 200, 300]
    online = [f"{layer}.{p}" for layer in ("actor.mu.4", "critic.qf0.4", "critic.qf1.4") for p in ("weight", "bias")]
    for e in events:
        assert changed(e) == set(online) | {twin(k) for k in online}, e.step
        for key in online:
            assert th.equal(e.after[twin(key)], e.after[key]), (e.step, key)  # hard copy into the target
        if e.step > 100:  # both networks have trained: the reset layers' optimizer state was dropped, no other
            assert {k for k, has in e.has_state.items() if not has} == {k for k in online}, e.step


def test_reset_all_layers_of_sac(tmp_path):
    model = make(SAC, "Pendulum-v1", tmp_path, **OFF_POLICY)
    events = learn_with_events(model, ResetCallback(reset_freq=FREQ), 300)
    online = {k for k in events[0].before if k.startswith(("actor.", "critic."))}
    assert any(k.startswith("actor.log_std") for k in online)
    for e in events:
        assert changed(e) == online | {k for k in e.before if k.startswith("critic_target.")}, e.step
        for key in online:
            if key.startswith("critic."):
                assert th.equal(e.after[twin(key)], e.after[key]), (e.step, key)
        assert not any(e.has_state.values()), e.step  # every layer starts over as a fresh parameter
        assert "log_ent_coef" not in changed(e)  # the entropy coefficient is not a layer


@pytest.mark.parametrize("shrink", [1.0, 0.5])
def test_shrink_perturb_without_perturbation_scales_every_weight_exactly(tmp_path, shrink):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    events = learn_with_events(model, ShrinkPerturbCallback(freq=FREQ, shrink=shrink, perturb=0.0), 300)
    for e in events:
        assert set(e.before) == set(e.after)
        for key, before in e.before.items():
            # bit-identical for shrink=1; for 0.5 every weight is exactly halved (targets too)
            assert th.equal(e.after[key], before * shrink), (e.step, key)
        assert shrink == 1.0 or changed(e) == set(e.before)
        if e.step > 100:
            assert all(e.has_state.values()), e.step  # optimizer state is kept
    if shrink == 1.0:
        logged = method_scalars(read_scalars(tmp_path), "shrink_perturb")
        assert [v for _, v in logged["action_change"]] == [0.0] * 3
        for network in ("actor", "critic"):
            assert logged[f"{network}/dormant_ratio_before"] == logged[f"{network}/dormant_ratio_after"]


def test_redo_on_the_critic_resets_capped_neurons_there_only(tmp_path):
    # tau=1e9: every neuron is "dormant"; the cap picks floor(0.25 * 32) = 8 per layer and event
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    cb = ReDoCallback(reset_freq=FREQ, tau=1e9, max_reset_fraction=0.25, networks=["critic"])
    events = learn_with_events(model, cb, 300)
    cap = math.floor(0.25 * WIDTH)
    assert [e.step for e in events] == [100, 200, 300]
    for e in events:
        assert not any(k.startswith("actor") for k in changed(e)), e.step  # nor actor_target
        before, after = e.before, e.after
        for q in ("critic.qf0", "critic.qf1"):
            # the reset neurons of each hidden layer: their bias is redrawn
            reset = {layer: after[f"{q}.{layer}.bias"] != before[f"{q}.{layer}.bias"] for layer in ("0", "2")}
            assert [int(m.sum()) for m in reset.values()] == [cap, cap], (e.step, q)
            w0, w2, w4 = (f"{q}.{layer}.weight" for layer in ("0", "2", "4"))
            # first layer: reset rows redrawn, the others untouched
            assert (after[w0][reset["0"]] != before[w0][reset["0"]]).any(dim=1).all()
            assert th.equal(after[w0][~reset["0"]], before[w0][~reset["0"]])
            # second layer: reset rows redrawn; in the other rows the columns read from reset neurons are zeroed
            assert (after[w2][reset["2"]] != before[w2][reset["2"]]).any(dim=1).all()
            kept = after[w2][~reset["2"]], before[w2][~reset["2"]]
            assert not kept[0][:, reset["0"]].any()
            assert th.equal(kept[0][:, ~reset["0"]], kept[1][:, ~reset["0"]])
            # Q head (never reset): only the columns read from reset neurons change, to zero
            assert not after[w4][:, reset["2"]].any()
            assert th.equal(after[w4][:, ~reset["2"]], before[w4][:, ~reset["2"]])
            assert th.equal(after[f"{q}.4.bias"], before[f"{q}.4.bias"])
        for key in before:
            if key.startswith("critic."):  # the target twin gets exactly the changed entries
                diff = after[key] != before[key]
                assert th.equal(after[twin(key)][diff], after[key][diff]), (e.step, key)
                assert th.equal(after[twin(key)][~diff], before[twin(key)][~diff]), (e.step, key)
    logged = method_scalars(read_scalars(tmp_path), "redo")
    assert per_layer(logged) == {"critic": HIDDEN[TD3]["critic"]}
    for layer in HIDDEN[TD3]["critic"]:
        assert [v for _, v in logged[f"critic/{layer}/reset_count"]] == [cap] * 3
    assert [v for _, v in logged["critic/dormant_ratio_before"]] == [1.0] * 3  # before the cap


def test_regrama_counts_the_resets_of_the_last_training_pass(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    cb = GraMaResetCallback(reset_freq=FREQ, tau=1e9, max_reset_fraction=0.25, networks="critic")
    model.learn(FREQ + 1, callback=cb)  # event due at step 100, its training pass is the first and last train()
    # the reset neurons' outgoing columns into the Q heads are still exactly zero (their gradient was zeroed)
    zeroed = sum(int((model.critic.get_submodule(f"qf{i}.4").weight == 0).all(dim=0).sum()) for i in (0, 1))
    assert zeroed == 2 * math.floor(0.25 * WIDTH)
    assert cb.total_reset >= zeroed


@pytest.mark.parametrize(
    "algo, env_id, kwargs, steps",
    [
        pytest.param(TD3, "Pendulum-v1", OFF_POLICY, 300, id="td3"),
        pytest.param(PPO, "CartPole-v1", PPO_KW, 640, id="ppo"),
    ],
)
def test_max_reset_fraction_caps_each_layer(tmp_path, algo, env_id, kwargs, steps):
    model = make(algo, env_id, tmp_path, **kwargs)
    cb = ReDoCallback(reset_freq=FREQ, tau=1e9, max_reset_fraction=0.25)
    model.learn(steps, callback=cb)
    logged = method_scalars(read_scalars(tmp_path), "redo")
    layers = per_layer(logged)
    assert layers == HIDDEN[algo]
    cap = math.floor(0.25 * WIDTH)
    n_layers = sum(len(names) for names in layers.values())
    for network, names in layers.items():
        for layer in names:
            assert [v for _, v in logged[f"{network}/{layer}/reset_count"]] == [cap] * cb.n_events, (network, layer)
    assert [v for _, v in logged["reset_count"]] == [cap * n_layers] * cb.n_events
    assert cb.n_events >= 2


# ----------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kwargs, pattern",
    [
        *[(cls, dict(tau=-0.1), "^tau") for cls in (ReDoCallback, GraMaResetCallback)],
        *[
            (cls, dict(reset_freq=bad), "^reset_freq")
            for cls in (ReDoCallback, GraMaResetCallback, ResetCallback)
            for bad in (0, -1, 1.5)
        ],
        *[(ShrinkPerturbCallback, dict(freq=bad), "^freq") for bad in (0, -1, 1.5)],
        *[(CBPCallback, dict(log_freq=bad), "^log_freq") for bad in (0, -1, 1.5)],
        *[
            (cls, dict(max_reset_fraction=bad), "^max_reset_fraction")
            for cls in (ReDoCallback, GraMaResetCallback)
            for bad in (0, 1.5, -0.1)
        ],
        (GraMaResetCallback, dict(score="x"), "^score"),
        (ReDoCallback, dict(outgoing="x"), "^outgoing"),
        (GraMaResetCallback, dict(outgoing="x"), "^outgoing"),
        (ResetCallback, dict(layers=0), "^layers"),
        (ResetCallback, dict(layers="some"), "^layers"),
        (ShrinkPerturbCallback, dict(shrink=1.5), "^shrink"),
        (ShrinkPerturbCallback, dict(perturb=-1), "^perturb"),
        (CBPCallback, dict(replacement_rate=2), "^replacement_rate"),
        (CBPCallback, dict(maturity_threshold=-1), "^maturity_threshold"),
        (CBPCallback, dict(decay_rate=1.0), "^decay_rate"),
        (ReDoCallback, dict(networks=[]), "^networks"),
        (ResetCallback, dict(dormant_tau=-1), "^dormant_tau"),
        (CBPCallback, dict(probe_batch_size=0), "^probe_batch_size"),
    ],
)
def test_bad_arguments_raise_at_construction(cls, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        cls(**kwargs)


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (ReDoCallback, dict(max_reset_fraction=1.0)),
        (GraMaResetCallback, dict(max_reset_fraction=1.0, tau=0.0)),
        (ResetCallback, dict(layers=1, reset_freq=1)),
        (ShrinkPerturbCallback, dict(shrink=0.0, perturb=0.0)),
        (CBPCallback, dict(replacement_rate=0.0, maturity_threshold=0, decay_rate=0.0)),
    ],
)
def test_edge_arguments_are_accepted(cls, kwargs):
    cb = cls(**kwargs)
    for name, value in kwargs.items():
        assert getattr(cb, name) == value


@pytest.mark.parametrize("bad", ["critic_target", "critc"])
@pytest.mark.parametrize("method", ONE_PER_CLASS)
def test_target_or_unknown_network_raises_at_learn_start(tmp_path, method, bad):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    cb = method.make(networks=["critic", bad])  # names are checked against the model in learn()
    with pytest.raises(ValueError, match=repr(bad)):
        model.learn(200, callback=cb)
    assert model.num_timesteps == 0
    assert_hooks_released(model, fresh_step_ok=False)


def test_unknown_network_of_ppo(tmp_path):
    model = make(PPO, "CartPole-v1", tmp_path, **PPO_KW)
    with pytest.raises(ValueError, match="'actor'") as info:
        model.learn(64, callback=ReDoCallback(reset_freq=FREQ, networks="actor"))
    assert "'policy'" in str(info.value) and "'value'" in str(info.value)  # what the model has


@pytest.mark.parametrize("method", ONE_PER_CLASS)
def test_unsupported_algorithm_raises_at_learn_start(tmp_path, method, monkeypatch):
    from stable_baselines3.dqn.policies import DQNPolicy

    from sb3_plasticity import adapters

    adapters._register_builtins()  # the built-in adapters are registered on first use
    monkeypatch.delitem(adapters._REGISTRY, DQNPolicy)  # DQN has an adapter since issue 12: take it away
    model = make(DQN, "CartPole-v1", tmp_path, learning_starts=100, policy_kwargs=ARCH)
    with pytest.raises(NeuronDiscoveryError, match="DQNPolicy"):  # a ValueError
        model.learn(200, callback=method.make())
    assert issubclass(NeuronDiscoveryError, ValueError)
    assert model.num_timesteps == 0
    assert_hooks_released(model, fresh_step_ok=False)


# ----------------------------------------------------------------------------------------------------
# Several methods on one model
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "first, second, network",
    [
        pytest.param(REDO, CBP, "critic", id="redo-cbp"),
        pytest.param(CBP, REDO, "critic", id="cbp-redo"),
        pytest.param(RESET_ALL, SHRINK_PERTURB, "actor", id="reset-all-vs-s&p-actor"),
    ],
)
def test_two_methods_on_one_network_raise_at_learn_start(tmp_path, first, second, network):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    a = first.make(networks=network) if first is not RESET_ALL else first.make()
    b = second.make(networks=network)
    with pytest.raises(ValueError, match=repr(network)) as info:
        model.learn(200, callback=[a, b])
    assert type(a).__name__ in str(info.value) and type(b).__name__ in str(info.value)
    assert model.num_timesteps == 0


def test_learn_that_fails_to_start_leaves_no_hooks(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    cbp = CBP.make(networks="critic")
    with pytest.raises(ValueError, match="'critic'"):
        model.learn(200, callback=[cbp, REDO.make(networks="critic")])
    model.learn(300)  # no method at all
    assert cbp.n_replaced == 0 and not cbp.unlogged_counts
    assert_hooks_released(model)


def test_methods_on_disjoint_networks_run_together(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    redo, cbp = REDO.make(networks="actor"), CBP.make(networks=["critic"])
    model.learn(300, callback=[redo, cbp])
    scalars = read_scalars(tmp_path)
    check_method_logs(method_scalars(scalars, "redo"), model, redo, REDO, TD3, "action_change", networks=["actor"])
    check_method_logs(method_scalars(scalars, "cbp"), model, cbp, CBP, TD3, "action_change", networks=["critic"])
    assert_hooks_released(model)


def test_methods_in_consecutive_learns_on_one_model(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    redo, cbp = REDO.make(), CBP.make()
    model.learn(300, callback=redo)
    model.learn(300, callback=cbp)  # a new TensorBoard run
    model.learn(300, callback=redo, reset_num_timesteps=False)  # and back
    assert cbp.n_events >= 2 and redo.n_events >= 6
    assert_hooks_released(model)


def test_claims_do_not_outlive_an_interrupted_learn(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    redo = REDO.make(networks="critic")
    with pytest.raises(RuntimeError, match="interrupted"):
        model.learn(300, callback=[redo, RaiseAt(150)])  # no on_training_end
    assert redo.n_events == 1
    cbp = CBP.make(networks="critic")
    model.learn(300, callback=cbp)
    assert cbp.n_events >= 2 and cbp.total_reset > 0


# ----------------------------------------------------------------------------------------------------
# State across save / load
# ----------------------------------------------------------------------------------------------------
class StateAtStart(BaseCallback):
    """Put after the method: its counters, probe and CBP statistics when training starts (after its init)."""

    def __init__(self, method) -> None:
        super().__init__()
        self.method = method

    def _on_training_start(self) -> None:
        m = self.method
        self.total_reset, self.n_events = m.total_reset, m.n_events
        self.probe = None if m.probe is None else (m.probe.observations.clone(), m.probe.actions.clone())
        self.states = {k: copy.deepcopy(s) for k, s in getattr(m, "states", {}).items()}

    def _on_step(self) -> bool:
        return True


@pytest.mark.parametrize("method", [pytest.param(CBP, id="cbp"), pytest.param(REDO, id="redo")])
def test_state_survives_save_and_load(tmp_path, method):
    model = make(SAC, "Pendulum-v1", tmp_path / "first", **OFF_POLICY)
    first = method.make()
    model.learn(300, callback=first)
    assert first.total_reset > 0 and first.n_events >= 2 and first.probe is not None
    states = {k: copy.deepcopy(s) for k, s in getattr(first, "states", {}).items()}
    assert all(s.age.sum() > 0 for s in states.values())
    model.save(tmp_path / "sac.zip")

    loaded = SAC.load(
        tmp_path / "sac.zip", env=gym.make("Pendulum-v1"), device="cpu", tensorboard_log=str(tmp_path / "second")
    )
    second = method.make()
    at_start = StateAtStart(second)
    loaded.learn(300, callback=[second, at_start])

    assert (at_start.total_reset, at_start.n_events) == (first.total_reset, first.n_events)
    assert at_start.probe is not None
    assert th.equal(at_start.probe[0], first.probe.observations) and th.equal(at_start.probe[1], first.probe.actions)
    assert set(at_start.states) == set(states)
    for key, s in states.items():
        restored = at_start.states[key]
        assert th.equal(restored.utility, s.utility) and th.equal(restored.mean_activation, s.mean_activation), key
        assert th.equal(restored.age, s.age) and restored.pending == s.pending, key
    # the second run's totals continue from the first's
    logged = method_scalars(read_scalars(tmp_path / "second"), method.tag)
    running = first.total_reset
    for (_, n), (_, total) in zip(logged["reset_count"], logged["total_reset_count"], strict=True):
        running += n
        assert total == running
    assert second.total_reset == running
    assert second.n_events == first.n_events + len(logged["reset_count"])


def test_state_of_two_cbp_on_disjoint_networks_survives_save_and_load(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    actor, critic = CBP.make(networks="actor"), CBP.make(networks="critic")
    model.learn(300, callback=[actor, critic])
    model.save(tmp_path / "td3.zip")
    loaded = TD3.load(tmp_path / "td3.zip", env=gym.make("Pendulum-v1"), device="cpu")
    actor2, critic2 = CBP.make(networks="actor"), CBP.make(networks="critic")
    spies = StateAtStart(actor2), StateAtStart(critic2)
    loaded.learn(1, callback=[actor2, critic2, *spies])
    assert spies[1].total_reset == critic.total_reset
    assert spies[0].total_reset == actor.total_reset
    for key, s in actor.states.items():
        assert th.equal(spies[0].states[key].age, s.age), key


# ----------------------------------------------------------------------------------------------------
# Hooks after training
# ----------------------------------------------------------------------------------------------------
def test_fresh_step_entries_get_their_first_update_and_the_hook_goes(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    cb = ReDoCallback(reset_freq=FREQ, tau=1e9, max_reset_fraction=0.25)
    model.learn(300, callback=cb)  # last event at step 300, then one update with the reset neurons' outgoing at 0
    assert_hooks_released(model)
    critic_opt = model.critic.optimizer
    hook = step_hooks(critic_opt).fresh  # surgery's fresh-step registry
    assert hook is not None and hook.pending  # the reset neurons' incoming weights have had no gradient yet

    # the first non-zero gradient of a pending entry gives it a fresh parameter's first Adam update: lr * g / |g|
    pending = {p: hook.mask(p).clone() for p in hook.pending}
    before = {p: p.detach().clone() for p in pending}
    critic_opt.zero_grad()
    for group in critic_opt.param_groups:
        for p in group["params"]:
            p.grad = th.ones_like(p)
    critic_opt.step()
    lr = critic_opt.param_groups[0]["lr"]
    for p, mask in pending.items():
        step = (p.detach() - before[p])[mask]
        # (without the fresh step, zeroed moments at a late step would move it by about 3.16 * lr)
        assert th.allclose(step, th.full_like(step, -lr), rtol=1e-3, atol=0), step
    assert not hook.pending
    # nothing pending: the next method to end releases it
    model.learn(10, callback=ReDoCallback(reset_freq=FREQ), reset_num_timesteps=False)
    assert step_hooks(critic_opt).fresh is None and not step_hooks(critic_opt).pre_hooks
    assert len(critic_opt._optimizer_step_pre_hooks) == 0
    assert_hooks_released(model)  # the actor's hook may still wait for its entries


@pytest.mark.parametrize(
    "method", [pytest.param(REDO, id="redo"), pytest.param(GRAMA_ACT, id="regrama"), pytest.param(CBP, id="cbp")]
)
def test_on_training_end_twice_is_harmless(tmp_path, method):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    cb, spy = method.make(), HookSpy()
    model.learn(250, callback=[cb, spy])
    counters = (cb.n_events, cb.total_reset)
    scalars = read_scalars(tmp_path)
    saved = copy.deepcopy(model.plasticity_state)
    cb.on_training_end()  # rl-zoo calls it again on the first callback of a config
    cb.on_training_end()
    assert (cb.n_events, cb.total_reset) == counters
    assert read_scalars(tmp_path) == scalars
    assert saved.keys() == model.plasticity_state.keys()
    assert saved[method.tag]["total_reset"] == model.plasticity_state[method.tag]["total_reset"]
    assert_hooks_released(model)
    # and the callback learns again without stacking hooks
    first = (spy.max_forward, spy.max_step_post)
    spy.max_forward = spy.max_step_post = 0
    model.learn(250, callback=[cb, spy])
    assert (spy.max_forward, spy.max_step_post) == first
    assert cb.n_events > counters[0]
    assert_hooks_released(model)
