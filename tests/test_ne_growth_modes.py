"""NE issue 15 items 5, 6, 8: growth schedules (NE Table 11), network sizes and the naive neuron-level growth (NE
Fig. 2 / 14, Sec. 3.1), and NE combined with LayerNorm, ReDo or Reset (NE earlier version, App. C)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity import (
    MaskedLayerNormTD3Policy,
    MaskedLinear,
    MaskedTD3Policy,
    NeuroplasticExpansionCallback,
    ReDoCallback,
    ResetCallback,
)
from sb3_plasticity.topology import grow_connections, grow_rate_at
from sb3_plasticity.zoo import GUARD, NE_TASKS, scaled_net_arch

ZOO = Path(__file__).resolve().parents[1] / "zoo_configs" / "neuroplastic_expansion"
NE = "sb3_plasticity.NeuroplasticExpansionCallback"


# -- growth schedules (NE App. F.5, Table 11) -------------------------------------------------------------------
# A 10x10 layer with no connection, rate_0 = 0.5, T_end = 4, events at t = 0, 1, 2, 3: k = floor(rate_t * inactive)
#   cosine:     rate 0.5, 0.4268, 0.25, 0.0732 -> inactive 100, 50, 29, 22 -> k 50, 21, 7, 1
#   uniform:    rate 0.5 every event           -> inactive 100, 50, 25, 13 -> k 50, 25, 12, 6
#   warm_decay: rate 0.5, 0.375, 0.25, 0.125   -> inactive 100, 50, 32, 24 -> k 50, 18, 8, 3
GROWN = {"cosine": [50, 21, 7, 1], "uniform": [50, 25, 12, 6], "warm_decay": [50, 18, 8, 3]}


@pytest.mark.parametrize("schedule", sorted(GROWN))
def test_grown_per_event_under_each_schedule(schedule):
    layer = MaskedLinear(10, 10)
    layer.set_mask(th.zeros(10, 10))
    callback = NeuroplasticExpansionCallback(grow_rate=0.5, schedule=schedule)
    callback.t_end = 4
    grown = []
    for t in range(4):
        grown.append(int(grow_connections(layer, th.rand(10, 10), callback.rate("critic", step=t)).sum()))
    assert grown == GROWN[schedule]
    assert grow_rate_at(schedule, 0.5, 4, 4) == 0.0  # no growth from T_end on


def test_schedule_rates():
    assert grow_rate_at("cosine", 0.2, 1, 4) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert grow_rate_at("uniform", 0.2, 3, 4) == 0.2
    assert grow_rate_at("warm_decay", 0.2, 3, 4) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="schedule"):
        NeuroplasticExpansionCallback(schedule="linear")
    with pytest.raises(ValueError, match="initial_neurons"):
        NeuroplasticExpansionCallback(initial_neurons=0.0)


# -- tiny models ---------------------------------------------------------------------------------------------
def tiny_td3(policy=MaskedTD3Policy, **policy_kwargs) -> TD3:
    policy_kwargs = {"net_arch": [10, 10], **policy_kwargs}
    return TD3(policy, "Pendulum-v1", learning_starts=30, batch_size=16, policy_kwargs=policy_kwargs, seed=0, device="cpu")


def masked(module: th.nn.Module) -> list[MaskedLinear]:
    return [m for m in module.modules() if isinstance(m, MaskedLinear)]


def off_mask_max(policy) -> float:
    """The largest stored |weight| of a masked connection, over every masked layer (targets too)."""
    return max(float((layer.weight * (1 - layer.mask)).abs().max()) for layer in masked(policy))


def assert_twins_equal(policy) -> None:
    for online, target in ((policy.actor, policy.actor_target), (policy.critic, policy.critic_target)):
        for a, b in zip(masked(online), masked(target), strict=True):
            assert th.equal(a.mask, b.mask)


# -- naive growth (NE Sec. 3.1): 20% of each layer's neurons at the start --------------------------------------
def test_initial_neurons_keeps_a_fifth_of_each_layer():
    model = tiny_td3(initial_density=1.0, dense_first_last=False)
    ne = NeuroplasticExpansionCallback(initial_neurons=0.2, growth="random", prune=False, grow_interval=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.learn(5, callback=ne)
    for seq in [model.policy.actor.mu, *model.policy.critic.q_networks]:
        first, second, last = masked(seq)
        kept1 = first.mask.any(dim=1)
        kept2 = second.mask.any(dim=1)
        assert int(kept1.sum()) == int(kept2.sum()) == 2  # round(0.2 * 10) per hidden layer
        # kept neurons are fully connected to kept neurons (and inputs), the others to nothing
        assert th.equal(first.mask, kept1[:, None].float().expand_as(first.mask))
        assert th.equal(second.mask, (kept2[:, None] & kept1[None, :]).float())
        assert th.equal(last.mask, kept2[None, :].float().expand_as(last.mask))
    assert_twins_equal(model.policy)
    assert off_mask_max(model.policy) == 0.0


# -- NE with LayerNorm, ReDo, Reset (NE earlier version, App. C) ---------------------------------------------------
class OffMaskProbe(BaseCallback):
    """Listed right after the other method's callback (before NE, so NE's re-masking does not help): the largest
    stored |weight| of a masked connection after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.worst = 0.0

    def _on_step(self) -> bool:
        self.worst = max(self.worst, off_mask_max(self.model.policy))
        return True


@pytest.mark.parametrize("other", ["redo", "reset"])
def test_ne_with_redo_or_reset_keeps_masks(other):
    model = tiny_td3()
    method = ReDoCallback(reset_freq=40, tau=10.0) if other == "redo" else ResetCallback(reset_freq=40)
    probe = OffMaskProbe()
    ne = NeuroplasticExpansionCallback(grow_interval=40, grow_rate=0.5, compose=True, clip_kappa=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.learn(130, callback=[method, probe, ne])
    assert method.n_events == 3 and ne.n_events == 3  # at 40, 80, 120
    if other == "redo":
        assert method.total_reset > 0  # tau 10: every neuron is "dormant"
    assert probe.worst == 0.0  # the other method never wrote a masked connection
    assert off_mask_max(model.policy) == 0.0
    assert_twins_equal(model.policy)
    assert 0.25 < ne.density("critic") < 1.0


def test_two_claiming_callbacks_still_raise_without_compose():
    model = tiny_td3()
    with pytest.raises(ValueError, match="would both change"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.learn(5, callback=[ReDoCallback(reset_freq=40), NeuroplasticExpansionCallback(grow_interval=40)])


def test_masked_layernorm_policy_grows():
    model = tiny_td3(MaskedLayerNormTD3Policy)
    mu = model.policy.actor.mu
    names = ["Linear", "LayerNorm", "ReLU", "MaskedLinear", "LayerNorm", "ReLU", "Linear", "Tanh"]
    assert [type(m).__name__ for m in mu] == names
    assert sum(isinstance(m, th.nn.LayerNorm) for m in model.policy.critic.modules()) == 4
    ne = NeuroplasticExpansionCallback(grow_interval=40, grow_rate=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.learn(90, callback=ne)
    assert ne.n_events == 2 and ne.density("actor") > 0.25
    assert off_mask_max(model.policy) == 0.0
    assert_twins_equal(model.policy)


# -- configs --------------------------------------------------------------------------------------------------
def read_config(name: str) -> dict:
    namespace: dict = {}
    exec((ZOO / name).read_text(), namespace)
    return namespace["hyperparams"]


def callbacks_of(hp: dict) -> dict:
    return {k: v for item in hp["callback"] for k, v in item.items()}


def test_scaled_net_arch():
    assert scaled_net_arch(0) == [256, 128]
    assert scaled_net_arch(2) == {"pi": [256, 256, 256, 128], "qf": [256, 128, 256, 256]}


@pytest.mark.parametrize("level", [1, 2, 3])
def test_size_configs(level):
    arch = scaled_net_arch(level)
    for name in (f"td3_scale{level}.py", f"ne_td3_scale{level}.py", f"td3_naive_growth_scale{level}.py"):
        assert f"neuroplastic_expansion/{name}" in (ZOO / name).read_text()
        config = read_config(name)
        assert set(config) == set(NE_TASKS)
        for hp in config.values():
            assert hp["policy_kwargs"]["net_arch"] == arch
            if GUARD in callbacks_of(hp):
                assert callbacks_of(hp)[GUARD] == {"policy_kwargs": hp["policy_kwargs"]}


def test_naive_growth_config():
    for name in ("td3_naive_growth.py", "td3_naive_growth_scale1.py"):
        for env_id, hp in read_config(name).items():
            assert hp["policy"] == "sb3_plasticity.MaskedTD3Policy"
            assert hp["policy_kwargs"]["initial_density"] == 1.0 and hp["policy_kwargs"]["dense_first_last"] is False
            ne = callbacks_of(hp)[NE]
            assert ne["initial_neurons"] == 0.2 and ne["growth"] == "random" and ne["prune"] is False
            assert (ne["grow_interval"], ne["grow_rate"]) == NE_TASKS[env_id][:2]
            assert "replay_buffer_class" not in hp
            NeuroplasticExpansionCallback(**ne)


@pytest.mark.parametrize("other", ["ln", "redo", "reset"])
def test_combined_configs(other):
    name = f"ne_td3_{other}.py"
    assert f"neuroplastic_expansion/{name}" in (ZOO / name).read_text()
    for hp in read_config(name).values():
        names = [next(iter(item)) for item in hp["callback"]]
        ne = callbacks_of(hp)[NE]
        NeuroplasticExpansionCallback(**ne)
        if other == "ln":
            assert hp["policy"] == "sb3_plasticity.MaskedLayerNormTD3Policy" and "compose" not in ne
            continue
        assert hp["policy"] == "sb3_plasticity.MaskedTD3Policy" and ne["compose"] is True
        cls = {"redo": "sb3_plasticity.ReDoCallback", "reset": "sb3_plasticity.ResetCallback"}[other]
        assert names.index(cls) == names.index(NE) - 1  # the other method first, then NE
        expected = {"reset_freq": 1000, "tau": 0.1} if other == "redo" else {"reset_freq": 90000, "layers": "all"}
        assert callbacks_of(hp)[cls] == expected  # as td3_redo.yml / td3_reset.yml
