"""Surgery: function preservation, untouched entries, optimizer state, fresh Adam steps, target twins, conv mapping."""

import math

import pytest
import torch as th
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.envs import FakeImageEnv
from torch import nn

from sb3_plasticity.neurons import NetworkPath, NeuronModel, Stage, discover, groups_from_paths
from sb3_plasticity.surgery import reinitialize_incoming, reset_layer, reset_neurons, reset_optimizer_state, zero_outgoing

LR = 1e-3


def _net_and_model(seed: int = 0) -> tuple[nn.Sequential, NeuronModel, th.optim.Optimizer]:
    th.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    opt = th.optim.Adam(net.parameters(), lr=LR)
    model = NeuronModel(groups_from_paths([NetworkPath((Stage("net", "", net),))]), {"net": [net]}, [opt])
    return net, model, opt


def _train(net: nn.Module, opt: th.optim.Optimizer, steps: int, seed: int = 1) -> None:
    gen = th.Generator().manual_seed(seed)
    for _ in range(steps):
        x = th.rand(32, 3, generator=gen)
        loss = (net(x) - th.stack([x.sum(1), x.prod(1)], 1)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _snapshot(net: nn.Module) -> dict[str, th.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_reset_of_dead_neurons_preserves_the_function_and_touches_nothing_else():
    net, model, opt = _net_and_model()
    _train(net, opt, 20)
    with th.no_grad():
        net[2].bias[[1, 4]] = -1e3  # kill two neurons of the second hidden layer
    x = th.rand(64, 3)
    before_out = net(x).detach()
    before = _snapshot(net)
    group = model.networks["net"][1]
    assert reset_neurons(group, [1, 4]) == 2
    after = _snapshot(net)
    # the dead neurons contributed nothing and their outgoing weights are now zero: same outputs
    assert th.equal(net(x).detach(), before_out)
    # the revived neurons' pre-activations are back in the range of a fresh layer (they were ~-1e3)
    bound = 1 / math.sqrt(8)
    assert net[2].bias[[1, 4]].abs().max() <= bound
    assert net[:3](x)[:, [1, 4]].abs().max() < 10
    # only the reset rows / entries / columns changed
    others = [i for i in range(6) if i not in (1, 4)]
    assert th.equal(after["2.weight"][others], before["2.weight"][others])
    assert th.equal(after["2.bias"][others], before["2.bias"][others])
    assert th.equal(after["4.weight"][:, others], before["4.weight"][:, others])
    assert th.equal(after["4.weight"][:, [1, 4]], th.zeros(2, 2))
    for key in ("0.weight", "0.bias", "4.bias"):
        assert th.equal(after[key], before[key])


def test_default_init_draws_from_pytorch_default_distribution():
    net, model, _ = _net_and_model()
    group = model.networks["net"][0]  # Linear(3, 8): bound 1/sqrt(3)
    with th.no_grad():
        net[0].weight.fill_(10.0)
        net[0].bias.fill_(10.0)
    reinitialize_incoming(group, list(range(8)), generator=th.Generator().manual_seed(0))
    bound = 1 / math.sqrt(3)
    assert net[0].weight.abs().max() <= bound and net[0].bias.abs().max() <= bound
    assert net[0].weight.std() > bound / 4  # not a constant


def test_ppo_reset_uses_orthogonal_init_with_sb3_gain():
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, device="cpu")
    group = discover(model).networks["policy"][1]  # Linear(64, 64), gain sqrt(2)
    with th.no_grad():
        group.producer.weight.fill_(1.0)
        group.producer.bias.fill_(1.0)
    reinitialize_incoming(group, [0, 5, 7])
    rows = group.producer.weight[[0, 5, 7]].detach()
    # rows of a square orthogonal matrix with gain sqrt(2): norm sqrt(2), pairwise orthogonal, zero bias
    assert th.allclose(rows.norm(dim=1), th.full((3,), math.sqrt(2)), atol=1e-5)
    assert th.allclose(rows @ rows.T, 2 * th.eye(3), atol=1e-5)
    assert th.equal(group.producer.bias[[0, 5, 7]].detach(), th.zeros(3))


def test_optimizer_state_of_exactly_the_reset_entries_is_zeroed():
    net, model, opt = _net_and_model()
    _train(net, opt, 50)
    group = model.networks["net"][0]
    state_before = {p: {k: v.clone() for k, v in opt.state[p].items()} for p in net.parameters()}
    reset_neurons(group, [2, 3])
    w0, b0, w1 = net[0].weight, net[0].bias, net[2].weight
    for key in ("exp_avg", "exp_avg_sq"):
        assert th.equal(opt.state[w0][key][[2, 3]], th.zeros(2, 3))
        assert th.equal(opt.state[b0][key][[2, 3]], th.zeros(2))
        assert th.equal(opt.state[w1][key][:, [2, 3]], th.zeros(6, 2))
        keep = [0, 1, 4, 5, 6, 7]
        assert th.equal(opt.state[w0][key][keep], state_before[w0][key][keep])
        assert th.equal(opt.state[w1][key][:, keep], state_before[w1][key][:, keep])
    # the per-tensor step counter is not touched (other entries keep their bias correction)
    assert float(opt.state[w0]["step"]) == 50.0


def _fresh_first_step(grad: th.Tensor) -> th.Tensor:
    """The first Adam update of a brand-new parameter with this gradient."""
    p = nn.Parameter(th.zeros_like(grad))
    o = th.optim.Adam([p], lr=LR)
    p.grad = grad.clone()
    o.step()
    return p.detach().clone()


@pytest.mark.parametrize("fresh_step", [True, False])
def test_reset_entries_next_adam_update_is_a_fresh_parameters(fresh_step):
    net, model, opt = _net_and_model()
    _train(net, opt, 300)
    group = model.networks["net"][1]
    reset_neurons(group, list(range(6)), fresh_step=fresh_step)  # all six: some are active on the batch
    consumer = net[4].weight
    before = consumer.detach().clone()
    # next training step: outgoing columns (zero now) get a non-zero gradient
    x = th.rand(32, 3)
    loss = (net(x) - 1.0).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    grad = consumer.grad.clone()
    opt.step()
    delta = consumer.detach() - before
    nonzero = grad != 0
    assert nonzero.any()
    fresh = _fresh_first_step(grad)
    if fresh_step:
        # exactly a fresh parameter's first update, lr * g / (|g| + eps), i.e. ~lr in size
        assert th.allclose(delta[nonzero], fresh[nonzero], rtol=1e-4, atol=1e-9)
        assert delta[nonzero].abs().max() <= LR * 1.0001
    else:
        # zeroing the moments alone at t = 301: m_hat = 0.1 g / c1, v_hat = 0.001 g^2 / c2, so every entry moves
        # lr * (0.1 / c1) / sqrt(0.001 / c2) = 1.62 lr (3.16 lr once c2 -> 1)
        t = 301
        c1, c2 = 1 - 0.9**t, 1 - 0.999**t
        expected = LR * (0.1 / c1) / math.sqrt(0.001 / c2)
        assert th.allclose(delta[nonzero].abs(), th.full_like(delta[nonzero], expected), rtol=1e-3)
        assert expected > 1.6 * LR


def test_incoming_entries_get_their_fresh_step_when_their_gradient_arrives():
    net, model, opt = _net_and_model()
    _train(net, opt, 300)
    group = model.networks["net"][1]
    reset_neurons(group, [2])
    with th.no_grad():
        group.producer.bias[2] = 0.5  # make sure the fresh neuron is active on the batches below
    w = net[2].weight
    # step 1: outgoing weights are zero, so the incoming row gets no gradient and must not move
    before = w.detach().clone()
    _train(net, opt, 1, seed=5)
    assert th.equal(w.detach()[2], before[2])
    # step 2: the outgoing column is non-zero now, the incoming row moves by ~lr per entry (fresh step)
    before = w.detach().clone()
    x = th.rand(32, 3, generator=th.Generator().manual_seed(9))
    loss = (net(x) - th.stack([x.sum(1), x.prod(1)], 1)).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    grad = w.grad[2].clone()
    opt.step()
    delta = w.detach()[2] - before[2]
    assert (grad != 0).any()
    assert th.allclose(delta, _fresh_first_step(grad), rtol=1e-4, atol=1e-9)


def test_target_twins_receive_the_same_reset():
    model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), learning_starts=10, device="cpu")
    model.learn(60)
    neurons = discover(model)
    group = neurons.networks["critic"][0]  # qf0.0
    twin = group.twin
    assert twin is not None and twin.network == "critic_target" and twin.name == "qf0.0"
    target_before = {k: v.clone() for k, v in model.critic_target.state_dict().items()}
    reset_neurons(group, [1, 7])
    target_after = model.critic_target.state_dict()
    assert th.equal(twin.producer.weight[[1, 7]], group.producer.weight[[1, 7]])
    assert th.equal(twin.producer.bias[[1, 7]], group.producer.bias[[1, 7]])
    assert th.equal(twin.consumers[0].module.weight[:, [1, 7]], th.zeros(16, 2))
    keep = [i for i in range(16) if i not in (1, 7)]
    assert th.equal(target_after["qf0.0.weight"][keep], target_before["qf0.0.weight"][keep])
    assert th.equal(target_after["qf0.2.weight"][:, keep], target_before["qf0.2.weight"][:, keep])
    for key in ("qf1.0.weight", "qf1.2.weight", "qf0.4.weight"):
        assert th.equal(target_after[key], target_before[key])
    # target Q-values unchanged when the reset neurons were dead in the target too
    with th.no_grad():
        twin.producer.bias[[2]] = -1e3
        group.producer.bias[[2]] = -1e3
    obs = th.rand(8, 3)
    act = th.rand(8, 1)
    q_before = model.critic_target(obs, act)[0].detach()
    reset_neurons(group, [2])
    assert th.equal(model.critic_target(obs, act)[0].detach(), q_before)


def test_sac_last_hidden_layer_resets_both_heads():
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), device="cpu")
    group = discover(model).networks["actor"][1]
    assert {id(c.module) for c in group.consumers} == {id(model.actor.mu), id(model.actor.log_std)}
    zero_outgoing(group, [3])
    assert th.equal(model.actor.mu.weight[:, 3], th.zeros(1))
    assert th.equal(model.actor.log_std.weight[:, 3], th.zeros(1))


def test_conv_to_flatten_to_linear_resets_the_right_columns():
    env = FakeImageEnv(screen_height=64, screen_width=64, n_channels=1, discrete=True)
    model = PPO("CnnPolicy", env, n_steps=16, batch_size=16, device="cpu")
    neurons = discover(model)
    last_conv = next(g for g in neurons.networks["features"] if g.name == "features_extractor.cnn.4")
    (consumer,) = last_conv.consumers
    assert consumer.block == 16  # 64 channels of 4x4 after NatureCNN on 64x64
    linear = consumer.module
    before = linear.weight.detach().clone()
    zero_outgoing(last_conv, [5])
    cols = list(range(5 * 16, 6 * 16))
    keep = [c for c in range(linear.in_features) if c not in cols]
    assert th.equal(linear.weight[:, cols], th.zeros(linear.out_features, 16))
    assert th.equal(linear.weight[:, keep], before[:, keep])
    # and the function is preserved when the channel is dead: zeroing the channel's columns equals
    # zeroing the channel's activations
    obs = th.as_tensor(model.policy.observation_space.sample()[None]).float() / 255.0  # CHW after VecTransposeImage
    conv_out = model.policy.features_extractor.cnn(obs)
    with th.no_grad():
        expected = linear(conv_out)
        conv_out_masked = conv_out.clone().reshape(1, 64, 16)
        conv_out_masked[:, 5] = 0
        assert th.allclose(linear(conv_out_masked.reshape(1, -1)), expected, atol=1e-6)


def test_conv_to_conv_resets_input_channels_and_optimizer_state():
    env = FakeImageEnv(screen_height=64, screen_width=64, n_channels=1, discrete=True)
    model = PPO("CnnPolicy", env, n_steps=16, batch_size=16, n_epochs=1, device="cpu")
    model.learn(16)
    neurons = discover(model)
    first = neurons.networks["features"][0]
    reset_neurons(first, [4, 9])
    nxt = first.consumers[0].module
    assert isinstance(nxt, nn.Conv2d)
    assert th.equal(nxt.weight[:, [4, 9]], th.zeros(64, 2, 4, 4))
    state = model.policy.optimizer.state[nxt.weight]
    assert th.equal(state["exp_avg"][:, [4, 9]], th.zeros(64, 2, 4, 4))
    assert state["exp_avg"][:, [0, 1]].abs().sum() > 0
    assert th.equal(first.producer.bias[[4, 9]].detach(), th.zeros(2))  # orthogonal init: zero bias


def test_no_optimizer_state_yet_is_fine():
    _, model, opt = _net_and_model()
    reset_optimizer_state(model.networks["net"][0], [0])  # Adam has no state before its first step
    assert len(opt.state) == 0


def test_bad_outgoing_mode():
    _, model, _ = _net_and_model()
    with pytest.raises(ValueError, match="outgoing"):
        reset_neurons(model.networks["net"][0], [0], outgoing="drop")


def _scrambled_crossq():
    """A tiny CrossQ whose BatchRenorm scale, bias and running statistics hold non-default values."""
    from sb3_contrib import CrossQ

    model = CrossQ("MlpPolicy", "Pendulum-v1", seed=0, device="cpu", policy_kwargs=dict(net_arch=[6, 4]))
    neurons = discover(model)
    gen = th.Generator().manual_seed(3)
    for group in neurons.groups:
        norm = group.norm
        with th.no_grad():
            for t in (norm.scale, norm.bias, norm.ra_mean):
                t.copy_(th.rand(t.shape, generator=gen) + 2.0)
            norm.ra_var.copy_(th.rand(norm.ra_var.shape, generator=gen) + 5.0)
        norm.steps.fill_(7)
    return model, neurons


def _renorm_state(norm: nn.Module) -> dict[str, th.Tensor]:
    return {name: getattr(norm, name).detach().clone() for name in ("scale", "bias", "ra_mean", "ra_var")}


def test_crossq_batch_renorm_entries_of_reset_neurons_are_fresh():
    _model, neurons = _scrambled_crossq()
    group = next(g for g in neurons.groups if g.key == "critic/qf0.1")
    other = next(g for g in neurons.groups if g.key == "critic/qf1.1")
    before, other_before = _renorm_state(group.norm), _renorm_state(other.norm)
    k = [1, 4]
    reset_neurons(group, k)
    after = _renorm_state(group.norm)
    fresh = {"scale": 1.0, "bias": 0.0, "ra_mean": 0.0, "ra_var": 1.0}
    keep = th.ones(group.n_neurons, dtype=th.bool)
    keep[k] = False
    for name, value in fresh.items():
        assert th.equal(after[name][k], th.full((2,), value)), name
        assert th.equal(after[name][keep], before[name][keep]), name  # the other neurons keep theirs
        assert th.equal(getattr(other.norm, name), other_before[name]), name  # other groups untouched
    assert int(group.norm.steps) == 7


def test_crossq_whole_layer_reset_makes_its_batch_renorm_fresh():
    _model, neurons = _scrambled_crossq()
    group = next(g for g in neurons.groups if g.key == "critic/qf0.4")
    other = next(g for g in neurons.groups if g.key == "critic/qf0.1")
    other_before = _renorm_state(other.norm)
    layer = neurons.layer("critic", "qf0.4")
    assert layer is not None and layer.norm is group.norm
    assert reset_layer(neurons, layer) == group.n_neurons
    n = group.n_neurons
    expected = {"scale": th.ones(n), "bias": th.zeros(n), "ra_mean": th.zeros(n), "ra_var": th.ones(n)}
    for name, value in expected.items():
        assert th.equal(getattr(group.norm, name), value), name
        assert th.equal(getattr(other.norm, name), other_before[name]), name
    assert int(group.norm.steps) == 0  # a fresh BatchRenorm warms up again
