"""Metric values on hand-built tensors and tiny networks whose answers are known by hand."""

import math

import pytest
import torch as th
from torch import nn

from sb3_plasticity.capture import Capture
from sb3_plasticity.metrics import (
    activation_norm,
    active_mask,
    active_ratio,
    active_ratio_per_sample,
    activity,
    dormant_mask,
    dormant_ratio,
    effective_rank,
    grama_inactive_mask,
    grama_inactive_ratio,
    layer_metrics,
    pool,
    weight_norm,
)
from sb3_plasticity.neurons import NetworkPath, NeuronModel, Stage, groups_from_paths

# Four neurons over four samples. E|h| = [0, 2, 1, 0.01], layer mean 0.7525,
# normalised scores [0, 2.658, 1.329, 0.0133].
H = th.tensor(
    [
        [0.0, 1.0, 2.0, 0.0],
        [0.0, 3.0, 0.0, 0.0],
        [0.0, 1.0, 2.0, 0.0],
        [0.0, 3.0, 0.0, 0.04],
    ]
)


def test_activity_and_scores():
    assert th.allclose(activity(H), th.tensor([0.0, 2.0, 1.0, 0.01]))


def test_dormant_ratio_by_hand():
    assert dormant_mask(H, tau=0.1).tolist() == [True, False, False, True]
    assert dormant_ratio(H, tau=0.1) == pytest.approx(0.5)
    # tau = 0 flags only neurons that are exactly 0 on the whole batch
    assert dormant_ratio(H, tau=0.0) == pytest.approx(0.25)
    # <= (not <): a neuron whose score equals tau is dormant
    assert dormant_ratio(th.ones(3, 4), tau=1.0) == pytest.approx(1.0)
    assert dormant_ratio(th.ones(3, 4), tau=0.999) == pytest.approx(0.0)


def test_active_ratios_by_hand():
    assert active_mask(H).tolist() == [False, True, True, True]
    assert active_ratio(H) == pytest.approx(0.75)
    # positive entries per sample: 2, 1, 2, 2 of 4
    assert active_ratio_per_sample(H) == pytest.approx(7 / 16)
    assert activation_norm(H) == pytest.approx(float(H.abs().mean()))


def test_grama_ratio_by_hand():
    grad = th.tensor([[0.0, -0.2, 0.1, 0.0], [0.0, 0.2, -0.1, 0.001]])
    # E|g| = [0, 0.2, 0.1, 0.0005], mean 0.075125 -> scores [0, 2.66, 1.33, 0.00666]
    assert grama_inactive_mask(grad, tau=0.0).tolist() == [True, False, False, False]
    assert grama_inactive_mask(grad, tau=0.01).tolist() == [True, False, False, True]
    assert grama_inactive_ratio(grad, tau=0.01) == pytest.approx(0.5)


def test_alive_mask_excludes_masked_capacity():
    alive = th.tensor([True, True, True, False])
    # over the alive neurons: E|h| = [0, 2, 1], mean 1 -> only neuron 0 dormant
    assert dormant_ratio(H, tau=0.1, alive=alive) == pytest.approx(1 / 3)
    assert dormant_mask(H, tau=0.1, alive=alive).tolist() == [True, False, False, False]
    assert active_ratio(H, alive=alive) == pytest.approx(2 / 3)
    assert active_ratio_per_sample(H, alive=alive) == pytest.approx(6 / 12)


def test_all_zero_layer_is_all_dormant():
    z = th.zeros(5, 3)
    assert dormant_ratio(z, tau=0.0) == 1.0
    assert grama_inactive_ratio(z, tau=0.0) == 1.0
    assert active_ratio(z) == 0.0


def test_conv_neurons_are_channels():
    # (batch=2, channels=3, 1x2): channel 0 dead everywhere, channel 2 positive at one position of one sample
    h = th.zeros(2, 3, 1, 2)
    h[:, 1] = 1.0
    h[1, 2, 0, 1] = 4.0
    assert th.allclose(activity(h), th.tensor([0.0, 1.0, 1.0]))
    assert dormant_mask(h, tau=0.0).tolist() == [True, False, False]
    assert active_ratio(h) == pytest.approx(2 / 3)
    # per sample: sample 0 has channel 1 active; sample 1 has channels 1 and 2
    assert active_ratio_per_sample(h) == pytest.approx(3 / 6)


def test_effective_rank_known_values():
    assert effective_rank(th.eye(5)) == pytest.approx(5.0)
    assert effective_rank(th.outer(th.arange(1.0, 7.0), th.arange(1.0, 4.0))) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(th.zeros(4, 4)) == 0.0
    # singular values (2, 1, 1, 0): p = (.5, .25, .25) -> exp(1.5 ln 2) = 2 sqrt(2)
    assert effective_rank(th.diag(th.tensor([2.0, 1.0, 1.0, 0.0]))) == pytest.approx(2 * math.sqrt(2))


def test_weight_norm():
    assert weight_norm([th.full((2, 2), 1.0), th.tensor([2.0])]) == pytest.approx(math.sqrt(8.0))


def test_negative_tau_is_rejected():
    with pytest.raises(ValueError, match="tau"):
        dormant_ratio(H, tau=-0.1)
    with pytest.raises(ValueError, match="tau"):
        grama_inactive_ratio(H, tau=-1)


def _tiny_net(dead: list[int]) -> tuple[nn.Sequential, NeuronModel, th.optim.Optimizer]:
    th.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    with th.no_grad():
        net[0].bias[dead] = -100.0  # never positive for inputs in [-1, 1]
    opt = th.optim.Adam(net.parameters(), lr=1e-3)
    groups = groups_from_paths([NetworkPath((Stage("net", "", net),))])
    return net, NeuronModel(groups, {"net": [net]}, [opt]), opt


def test_dead_neurons_are_exactly_the_dormant_and_grama_inactive_ones():
    net, model, opt = _tiny_net(dead=[1, 3])
    capture = Capture(model)
    capture.arm()
    x = th.rand(64, 2) * 2 - 1
    loss = (net(x) - 1.0).pow(2).mean()
    loss.backward()
    opt.step()
    assert capture.complete
    capture.disarm()
    first = model.networks["net"][0]
    rec = capture.records[first]
    assert rec.activation.shape == (64, 4)
    assert dormant_mask(rec.activation, tau=0.1).nonzero().flatten().tolist() == [1, 3]
    assert dormant_mask(rec.activation, tau=0.0).nonzero().flatten().tolist() == [1, 3]
    assert grama_inactive_mask(rec.grad, tau=0.0).nonzero().flatten().tolist() == [1, 3]
    assert active_mask(rec.activation).tolist() == [True, False, True, False]


def test_layer_and_network_pooling():
    net, model, opt = _tiny_net(dead=[0, 1, 2])
    capture = Capture(model)
    capture.arm()
    net(th.rand(16, 2)).sum().backward()
    opt.step()
    capture.disarm()
    g0, g1 = model.networks["net"]
    m0 = layer_metrics(g0.producer, capture.records[g0].activation, capture.records[g0].grad, None, 0.0, 0.0)
    m1 = layer_metrics(g1.producer, capture.records[g1].activation, capture.records[g1].grad, None, 0.0, 0.0)
    assert m0.values["dormant_ratio"] == pytest.approx(3 / 4)
    # pooled per neuron: (3 dormant of 4) + (d1 of 3) over 7 neurons, not the mean of the two ratios
    values = pool([m0, m1], [g0.is_last_hidden, g1.is_last_hidden])
    assert values["dormant_ratio"] == pytest.approx((3 + m1.dormant) / 7)
    assert values["effective_rank"] == pytest.approx(m1.effective_rank)  # last hidden layer only
    assert g1.is_last_hidden and not g0.is_last_hidden
