"""CBP: replacement of the lowest-utility mature units at the configured rate, bias compensation, inside learn()."""

import math

import pytest
import torch as th
from stable_baselines3 import SAC
from torch import nn

from sb3_plasticity import CBPCallback
from sb3_plasticity.methods.cbp import CBPLayerState, _compensate_next_bias
from sb3_plasticity.neurons import NetworkPath, NeuronModel, Stage, groups_from_paths
from tests.helpers import read_scalars

DECAY = 0.99


def _run(utilities: th.Tensor, updates: int, rate: float, maturity: int) -> list[list[int]]:
    state = CBPLayerState.zeros(utilities.numel(), th.device("cpu"))
    replaced = []
    for _ in range(updates):
        state.update(utilities, th.zeros_like(utilities), DECAY)
        idx = state.to_replace(rate, maturity, DECAY)
        # bias correction makes the running average equal the constant utility from the first update on
        assert th.allclose(state.corrected(state.utility, DECAY)[state.age > 0], utilities[state.age > 0])
        if idx.numel():
            mature = (state.age > maturity).nonzero().flatten()
            lowest = mature[th.argsort(utilities[mature], stable=True)[: idx.numel()]]
            assert sorted(idx.tolist()) == sorted(lowest.tolist())  # the lowest-utility mature units
            state.forget(idx)
        replaced.append(idx.tolist())
    return replaced


def test_count_after_n_updates_is_rate_times_n_times_width():
    width, updates, rate = 50, 100, 0.01
    utilities = th.randperm(width).float() + 1.0
    replaced = _run(utilities, updates, rate, maturity=0)
    # all units are mature from their first update on: rate x N x width = 50, fractional counts accumulated
    assert sum(len(r) for r in replaced) == math.floor(rate * updates * width)
    # with maturity 0 the same (lowest) unit is replaced each time
    assert {i for r in replaced for i in r} == {int(utilities.argmin())}


def test_young_units_are_protected_and_the_next_lowest_goes():
    utilities = th.tensor([5.0, 1.0, 2.0, 3.0, 4.0])
    replaced = [r for r in _run(utilities, 400, rate=0.1, maturity=10) if r]
    # unit 1 (lowest) goes first; while it is immature (10 updates) the next lowest mature ones go
    assert replaced[0] == [1]
    assert [2] in replaced[1:4]
    # the count follows the mature units only: rate x (# mature) per update, so at most rate x N x width
    assert sum(len(r) for r in replaced) <= math.floor(0.1 * (400 - 10) * 5)


def test_next_layer_bias_absorbs_the_mean_contribution():
    th.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model = NeuronModel(groups_from_paths([NetworkPath((Stage("net", "", net),))]), {"net": [net]})
    group = model.networks["net"][0]
    bias = net[2].bias.detach().clone()
    w = net[2].weight.detach().clone()
    f = th.tensor([0.5, 2.0])
    _compensate_next_bias(group, th.tensor([1, 3]), f)
    assert th.allclose(net[2].bias, bias + w[:, 1] * 0.5 + w[:, 3] * 2.0)


def test_inside_learn_count_per_layer_and_state_round_trip(tmp_path):
    model = SAC(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), learning_starts=100,
        tensorboard_log=str(tmp_path), seed=0, device="cpu",
    )  # fmt: skip
    cb = CBPCallback(replacement_rate=0.01, maturity_threshold=0, log_freq=100)
    model.learn(300, callback=cb)
    updates = model._n_updates  # SAC updates actor and critic once per gradient step
    scalars = read_scalars(model.logger.dir)
    for layer in ("critic/qf0.0", "critic/qf1.2", "actor/latent_pi.0"):
        count = sum(v for _, v in scalars[f"plasticity/cbp/{layer}/reset_count"])
        assert abs(count - 0.01 * updates * 32) <= 1, layer
    # replaced units start over: ages are the updates since the last replacement, at most n_updates
    state = cb.states["critic/qf0.0"]
    assert int(state.age.max()) <= updates and int(state.age.min()) < updates
    # the utilities, ages and fractional counts survive save -> load -> learn
    path = tmp_path / "sac_cbp"
    model.save(path)
    loaded = SAC.load(path, device="cpu")
    cb2 = CBPCallback(replacement_rate=0.01, maturity_threshold=0, log_freq=100)
    cb2.init_callback(loaded)
    for key, s in cb.states.items():
        assert th.equal(cb2.states[key].age, s.age)
        assert th.allclose(cb2.states[key].utility, s.utility)
        assert cb2.states[key].pending == pytest.approx(s.pending)
    assert cb2.total_reset == cb.total_reset
