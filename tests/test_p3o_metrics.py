"""The P3O paper's metrics (issue 13): the average L1 weight norm (Fig. 5) and the gradient correlation matrices
(Fig. 28-30), by hand and as the monitor logs and saves them."""

import math

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.logger import Logger
from torch import nn

from sb3_plasticity import PlasticityMonitorCallback
from sb3_plasticity.metrics import (
    contribution_utility,
    correlation_matrix,
    gradient_correlation,
    lowest,
    mean_abs_offdiagonal,
    outgoing_magnitude,
    weight_l1,
)
from sb3_plasticity.neurons import NetworkPath, NeuronModel, Stage, groups_from_paths
from tests.helpers import Recorder


def test_weight_l1_is_the_mean_absolute_entry():
    assert weight_l1([th.tensor([[1.0, -2.0], [3.0, -4.0]]), th.tensor([2.0])]) == pytest.approx(12 / 5)
    assert weight_l1([]) == 0.0


def test_pearson_correlation_by_hand():
    # columns: x, -x (corr -1 with x), [1, 0, 1] (centred [1, -2, 1] / 3: orthogonal to x = [-1, 0, 1]), a constant
    x = th.tensor([[1.0, 3.0, 1.0, 5.0], [2.0, 2.0, 0.0, 5.0], [3.0, 1.0, 1.0, 5.0]])
    corr, valid = correlation_matrix(x)
    assert valid.tolist() == [True, True, True, False]
    expected = th.tensor([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert th.allclose(corr, expected, atol=1e-6)
    # pairs among the valid columns: |-1|, 0, 0 out of 3 pairs (each counted twice in the matrix)
    assert mean_abs_offdiagonal(corr, valid) == pytest.approx(1 / 3)
    assert mean_abs_offdiagonal(th.eye(1)) == 0.0


def test_gradient_correlation_between_neurons_and_between_samples():
    g = th.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # (batch 3, neurons 2)
    # neurons: Pearson of [1, 0, 1] and [0, 1, 1] over the batch = (centred [1,-2,1]/3 . [-1,2,1]/3) / (6/9) = -1/2
    corr, valid = gradient_correlation(g, "neurons")
    assert corr.shape == (2, 2) and valid.all()
    assert corr[0, 1] == pytest.approx(-0.5)
    # samples: cosine of the rows: (r0, r1) = 0, (r0, r2) = (r1, r2) = 1 / sqrt(2)
    corr, valid = gradient_correlation(g, "samples")
    assert corr.shape == (3, 3)
    assert corr[0, 1] == pytest.approx(0.0) and corr[0, 2] == pytest.approx(1 / math.sqrt(2))
    assert mean_abs_offdiagonal(corr, valid) == pytest.approx(2 * math.sqrt(2) / 6)
    # a conv neuron's gradient is summed over its positions; a neuron with a constant gradient is left out
    conv = th.stack([g, th.zeros_like(g)], dim=2)[:, :, :, None]  # (3, 2, 2, 1)
    assert th.allclose(gradient_correlation(conv)[0], gradient_correlation(g)[0])
    dead = th.cat([g, th.zeros(3, 1)], dim=1)
    corr, valid = gradient_correlation(dead)
    assert valid.tolist() == [True, True, False] and not corr[2].any()
    assert mean_abs_offdiagonal(corr, valid) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="over"):
        gradient_correlation(g, "layers")


def test_contribution_utility_and_lowest():
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with th.no_grad():
        net[2].weight.copy_(th.tensor([[1.0, -2.0, 0.0, 4.0], [-3.0, 2.0, 0.0, 0.0]]))
    group = NeuronModel(groups_from_paths([NetworkPath((Stage("net", "", net),))]), {"net": [net]}).networks["net"][0]
    out = outgoing_magnitude(group)
    assert out.tolist() == [2.0, 2.0, 0.0, 2.0]  # mean |w| of each column
    h = th.tensor([[1.0, 0.5, 3.0, -0.25], [-1.0, 0.5, 3.0, 0.25]])
    util = contribution_utility(h, out)
    assert util.tolist() == [2.0, 1.0, 0.0, 0.5]
    assert lowest(util, 2).tolist() == [2, 3]
    assert lowest(util, 2, th.tensor([0, 1, 3])).tolist() == [1, 3]
    assert lowest(th.tensor([1.0, 1.0, 1.0]), 2).tolist() == [0, 1]  # ties by index


def _logged(model, cb, steps):
    rec = Recorder()
    model.set_logger(Logger(None, [rec]))
    model.learn(steps, callback=cb)
    return rec


def test_monitor_logs_weight_l1_next_to_l2():
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=dict(net_arch=[8]),
                seed=0, device="cpu")  # fmt: skip
    rec = _logged(model, PlasticityMonitorCallback(log_freq=64), 64)
    [(_, value)] = rec.values("plasticity/policy/weight_l1")
    # the measurement reads the weights right after the update that was recorded: the last one here
    params = list(model.policy.mlp_extractor.policy_net.parameters()) + list(model.policy.action_net.parameters())
    assert value == pytest.approx(weight_l1(params), rel=1e-5)
    [(_, layer)] = rec.values("plasticity/policy/mlp_extractor.policy_net.0/weight_l1")
    assert layer == pytest.approx(float(model.policy.mlp_extractor.policy_net[0].weight.abs().mean()), rel=1e-5)
    assert not any("grad_correlation" in k for _, row in rec.rows for k in row)  # off by default


@pytest.mark.parametrize("over", ["neurons", "samples"])
def test_monitor_logs_and_saves_the_gradient_correlation(tmp_path, over):
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1,
                policy_kwargs=dict(net_arch=[8, 6]), seed=0, device="cpu")  # fmt: skip
    cb = PlasticityMonitorCallback(
        log_freq=64, grad_correlation=over, grad_correlation_steps=[100, 1], grad_correlation_dir=str(tmp_path)
    )
    rec = _logged(model, cb, 192)  # measurements after the updates at 64, 128, 192
    steps = [s for s, _ in rec.values("plasticity/policy/grad_correlation")]
    assert steps == [64, 128, 192]
    tags = {k for _, row in rec.rows for k in row if k.endswith("/grad_correlation")}
    assert all(0.0 <= v <= 1.0 for tag in tags for _, v in rec.values(tag))
    assert len(rec.values("plasticity/policy/mlp_extractor.policy_net.0/grad_correlation")) == 3
    assert len(rec.values("plasticity/value/mlp_extractor.value_net.2/grad_correlation")) == 3
    # saved at the first measurement at or after steps 1 and 100: 64 and 128, for both networks
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"{net}_{over}_step{s}.npy" for net in ("policy", "value") for s in (64, 128))
    size = 8 + 6 if over == "neurons" else 32  # all hidden neurons of the network, or the minibatch
    for s in (64, 128):
        matrix = np.load(tmp_path / f"policy_{over}_step{s}.npy")
        assert matrix.shape == (size, size) and matrix.dtype == np.float32
        assert np.allclose(matrix, matrix.T, atol=1e-6)
        valid = np.isclose(np.diag(matrix), 1.0)
        # the logged summary is the saved matrix's mean off-diagonal |corr| over the valid entries
        logged = dict(rec.values("plasticity/policy/grad_correlation"))[s]
        assert logged == pytest.approx(mean_abs_offdiagonal(th.from_numpy(matrix), th.from_numpy(valid)), rel=1e-5)
    assert cb.saved and cb.grad_correlation_steps == []


def test_monitor_gradient_correlation_on_sac_and_bad_input():
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), learning_starts=50, batch_size=16,
                seed=0, device="cpu")  # fmt: skip
    rec = _logged(model, PlasticityMonitorCallback(log_freq=50, grad_correlation=True), 100)
    for network in ("actor", "critic"):
        assert rec.values(f"plasticity/{network}/grad_correlation"), network
    assert not rec.values("plasticity/critic_target/grad_correlation")  # target networks get no gradient
    with pytest.raises(ValueError, match="grad_correlation"):
        PlasticityMonitorCallback(grad_correlation="weights")
    with pytest.raises(ValueError, match="grad_correlation_steps"):
        PlasticityMonitorCallback(grad_correlation_steps=[1000])
