"""ReBorn (Qin et al. 2024): pairing, the function-preserving weight transfer, one event on a TD3 critic, learn()."""

import pytest
import torch as th
from helpers import Recorder
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.logger import Logger
from torch import nn

from sb3_plasticity import MaskedTD3Policy, ReBornCallback
from sb3_plasticity.methods.reborn import assign_receivers, draw_transfer, scalable, transfer_neurons
from sb3_plasticity.metrics import activity, normalized_scores
from sb3_plasticity.neurons import NetworkPath, NeuronModel, Stage, groups_from_paths

# -- pairing ------------------------------------------------------------------------------------------------


def test_assign_receivers_fills_donors_up_to_max_receivers():
    th.manual_seed(0)
    dormant, donors = th.tensor([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]), th.tensor([5, 9])
    receivers, donor_of = assign_receivers(dormant, donors, max_receivers=5)
    assert receivers.numel() == 10  # 2 donors x 5: two dormant neurons are left without a donor
    assert len(set(receivers.tolist())) == 10 and set(receivers.tolist()) <= set(dormant.tolist())
    assert set(donor_of.tolist()) == {5, 9} and all((donor_of == u).sum() == 5 for u in (5, 9))
    receivers, donor_of = assign_receivers(dormant[:3], donors, max_receivers=5)
    assert sorted(receivers.tolist()) == [0, 2, 4]
    assert assign_receivers(dormant, donors[:0], 5)[0].numel() == 0


# -- the transfer on hand-built networks --------------------------------------------------------------------


def _model(net: nn.Module) -> tuple[NeuronModel, th.optim.Optimizer]:
    opt = th.optim.Adam(net.parameters(), lr=1e-3)
    return NeuronModel(groups_from_paths([NetworkPath((Stage("net", "", net),))]), {"net": [net]}, [opt]), opt


def _adam_step(net: nn.Module, opt: th.optim.Optimizer, x: th.Tensor) -> None:
    opt.zero_grad()
    net(x).pow(2).mean().backward()
    opt.step()


MLPS = {
    "relu": lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2)),
    "leaky": lambda: nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(), nn.Linear(8, 6), nn.LeakyReLU(), nn.Linear(6, 2)),
    "tanh": lambda: nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 2)),
    "batchnorm": lambda: nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)),
    "cnn": lambda: nn.Sequential(
        nn.Conv2d(2, 6, 3), nn.ReLU(), nn.Conv2d(6, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 3)
    ),
}


@pytest.mark.parametrize("kind", list(MLPS))
def test_transfer_keeps_the_output_and_moves_the_donor_weights(kind):
    """Silent neurons 1 and 3 of the first layer receive donor 2's weights: outputs unchanged on a batch (float64:
    up to rounding), incoming rows ``alpha * donor`` (exact copies where the activation is not homogeneous), outgoing
    columns ``beta / alpha``-split with the donor's kept share, fresh Adam state on exactly the changed entries."""
    th.manual_seed(0)
    net = MLPS[kind]().double()
    model, opt = _model(net)
    group = model.networks["net"][0]
    x = th.randn(32, 2, 8, 8, dtype=th.double) if kind == "cnn" else th.randn(32, 4, dtype=th.double)
    with th.no_grad():  # neurons 1 and 3 output 0 on every input, with any of the activations
        group.producer.weight[[1, 3]] = 0.0
        group.producer.bias[[1, 3]] = 0.0
    _adam_step(net, opt, x)
    with th.no_grad():
        group.producer.weight[[1, 3]] = 0.0
        group.producer.bias[[1, 3]] = 0.0
        if kind == "batchnorm":
            group.norm.running_mean[[1, 3]] = 0.0  # (0 - 0) * gamma + beta: 0 only with zero beta
            group.norm.bias[[1, 3]] = 0.0
    net.eval()
    y_before = net(x).detach()
    consumer = group.consumers[0]
    w_in, w_out = group.producer.weight.detach().clone(), consumer.module.weight.detach().clone()
    state_before = {p: {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}

    receivers, donor_of = assign_receivers(th.tensor([1, 3]), th.tensor([2]), max_receivers=5)
    transfer = draw_transfer(group, receivers, donor_of)
    assert sorted(receivers.tolist()) == [1, 3] and donor_of.tolist() == [2, 2]
    assert transfer_neurons(group, transfer) == 2

    assert th.allclose(net(x), y_before, rtol=0, atol=1e-12)
    homogeneous = kind != "tanh"
    assert scalable(group) == homogeneous
    scale = transfer.scale
    assert ((scale >= 0.3) & (scale <= 0.8)).all() if homogeneous else (scale == 1).all()
    for k, r in enumerate(transfer.receivers.tolist()):
        if kind == "batchnorm":  # the norm carries alpha; incoming rows are plain copies
            assert th.equal(group.producer.weight[r], w_in[2])
            assert group.norm.weight[r] == group.norm.weight[2] * scale[k]
        else:
            assert th.allclose(group.producer.weight[r], w_in[2] * scale[k], rtol=1e-15, atol=0)
    # the donor's outgoing weight is split: kept share + sum over receivers of alpha * their column = the original
    cols = consumer.input_index(th.tensor([1, 2, 3])).reshape(3, -1)
    w_now = consumer.module.weight.detach().transpose(0, 1)
    w_old = w_out.transpose(0, 1)
    alpha = {r: scale[k] for k, r in enumerate(transfer.receivers.tolist())}
    total = w_now[cols[1]] + alpha[1] * w_now[cols[0]] + alpha[3] * w_now[cols[2]]
    assert th.allclose(total, w_old[cols[1]], rtol=0, atol=1e-12)
    assert not th.allclose(w_now[cols[1]], w_old[cols[1]])
    # fresh Adam state on the receivers' incoming and outgoing entries and the donor's outgoing entries only
    changed = {group.producer.weight: (th.tensor([1, 3]),), group.producer.bias: (th.tensor([1, 3]),)}
    for param, state in opt.state.items():
        before = state_before[param]
        mask = th.zeros_like(param, dtype=th.bool)
        if param in changed:
            mask[changed[param]] = True
        if param is consumer.module.weight:
            mask.transpose(0, 1)[cols.reshape(-1)] = True
        for key in ("exp_avg", "exp_avg_sq"):
            assert not state[key][mask].any(), (param.shape, key)
            assert th.equal(state[key][~mask], before[key][~mask])


def test_layernorm_transfer_is_only_approximate_and_unscaled_without_affine():
    """With LayerNorm the copy changes the layer's statistics (documented); alpha goes into the norm's affine weight,
    and a norm without affine weights gets exact copies."""
    th.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8, elementwise_affine=False), nn.ReLU(), nn.Linear(8, 2))
    model, _ = _model(net)
    group = model.networks["net"][0]
    assert not scalable(group)
    transfer = draw_transfer(group, th.tensor([1]), th.tensor([2]))
    assert (transfer.scale == 1).all()
    transfer_neurons(group, transfer)
    assert th.equal(group.producer.weight[1], group.producer.weight[2])


# -- one event on a TD3 critic ------------------------------------------------------------------------------

DEAD = {"qf0.0": [3, 7, 11], "qf1.0": [0, 20]}
LOUD = {"qf0.0": [5], "qf1.0": [9]}


def _td3() -> TD3:
    model = TD3(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), learning_starts=100, batch_size=64, seed=0,
        device="cpu",
    )  # fmt: skip
    model.learn(200)
    with th.no_grad():
        for name, idx in DEAD.items():
            model.critic.get_submodule(name).bias[idx] = -1e4
        for name, idx in LOUD.items():
            layer = model.critic.get_submodule(name)
            layer.weight[idx] *= 40.0
            layer.bias[idx] = 40.0
    model.critic_target.load_state_dict(model.critic.state_dict())  # dead and loud in both
    return model


def _scores(model, obs_act: th.Tensor) -> dict[str, th.Tensor]:
    out = {}
    with th.no_grad():
        for i in range(2):
            x = obs_act
            for j in (0, 2):
                layer = model.critic.get_submodule(f"qf{i}.{j}")
                x = th.relu(layer(x))
                out[f"qf{i}.{j}"] = normalized_scores(activity(x))
    return out


def test_one_event_moves_loud_weights_to_the_dead_neurons():
    model = _td3()
    batch = model.replay_buffer.sample(64)
    model.replay_buffer.sample = lambda *args, **kwargs: batch
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    cb = ReBornCallback(tau=0.0, overactive_threshold=3.0, networks="critic")
    cb.init_callback(model)
    obs_act = th.cat([batch.observations, batch.actions], dim=1)
    scores = _scores(model, obs_act)
    before = {k: v.detach().clone() for k, v in model.critic.state_dict().items()}
    with th.no_grad():
        q_before = [q.clone() for net in (model.critic, model.critic_target) for q in net(batch.observations, batch.actions)]

    counts = cb.run_event()

    with th.no_grad():
        q_after = [q for net in (model.critic, model.critic_target) for q in net(batch.observations, batch.actions)]
    for qa, qb in zip(q_after, q_before, strict=True):
        assert th.allclose(qa, qb, rtol=1e-5, atol=1e-4)
    for name, s in scores.items():
        dead = (s == 0).nonzero().flatten().tolist()
        loud = (s > 3.0).nonzero().flatten().tolist()
        if name in DEAD:
            assert set(DEAD[name]) <= set(dead) and set(LOUD[name]) <= set(loud)
        assert counts[("critic", name)] == len(dead)
        transfer = cb.last_transfers[("critic", name)]
        assert transfer.receivers.numel() == min(len(dead), 5 * len(loud))
        assert set(transfer.receivers.tolist()) <= set(dead) and set(transfer.donors.tolist()) <= set(loud)
        layer = model.critic.get_submodule(name)
        for k, (r, u) in enumerate(zip(transfer.receivers.tolist(), transfer.donor_of.tolist(), strict=True)):
            # (a donor row of the second layer has its columns from the first layer's transfer: compare it now)
            assert th.equal(layer.weight[r], layer.weight[u] * transfer.scale[k])
            if name.endswith(".0"):
                assert th.equal(layer.weight[u], before[f"{name}.weight"][u])
            assert th.equal(model.critic_target.get_submodule(name).weight[r], layer.weight[r])
            state = model.critic.optimizer.state[layer.weight]
            assert not state["exp_avg"][r].any() and not state["exp_avg_sq"][r].any()
    # every first-layer neuron killed by hand fires again
    with th.no_grad():
        h = th.relu(model.critic.qf0[0](obs_act))
    assert (h[:, DEAD["qf0.0"]].abs().sum(dim=0) > 0).all()
    logged = rec.rows[-1][1]
    n_recv = sum(t.receivers.numel() for t in cb.last_transfers.values())
    assert logged["plasticity/reborn/transferred_count"] == logged["plasticity/reborn/critic/transferred_count"] == n_recv
    assert logged["plasticity/reborn/reset_count"] == sum(counts.values())
    assert logged["plasticity/reborn/critic/overactive_ratio_before"] > 0
    assert logged["plasticity/reborn/critic/dormant_ratio_after"] < logged["plasticity/reborn/critic/dormant_ratio_before"]


def test_bad_arguments_and_masked_layers_raise():
    with pytest.raises(ValueError, match="overactive_threshold"):
        ReBornCallback(tau=0.5, overactive_threshold=0.5)
    with pytest.raises(ValueError, match="scale_range"):
        ReBornCallback(scale_range=(0.0, 0.5))
    with pytest.raises(ValueError, match="max_receivers"):
        ReBornCallback(max_receivers=0)
    model = TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), device="cpu")
    with pytest.raises(ValueError, match="masked"):
        ReBornCallback().init_callback(model)


# -- learn() ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["td3", "sac", "ppo"])
def test_learn_runs_events_and_logs(algo):
    rec = Recorder()
    small = dict(net_arch=[32, 32])
    if algo == "ppo":
        model = PPO(
            "MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=small, seed=0, device="cpu"
        )
    else:
        cls = TD3 if algo == "td3" else SAC
        model = cls("MlpPolicy", "Pendulum-v1", learning_starts=100, batch_size=32, policy_kwargs=small, seed=0, device="cpu")
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    cb = ReBornCallback(reset_freq=64, tau=0.3, overactive_threshold=1.5)
    if algo == "ppo":  # Tanh: exact copies, with a warning
        with pytest.warns(UserWarning, match="not positively homogeneous"):
            model.learn(384, callback=cb)
    else:
        model.learn(384, callback=cb)
    events = rec.values("plasticity/reborn/reset_count")
    assert len(events) == cb.n_events >= 4
    assert cb.total_reset == sum(n for _, n in events) > 0
    transferred = rec.values("plasticity/reborn/transferred_count")
    assert cb.total_transferred == sum(n for _, n in transferred) > 0
    networks = ("policy", "value") if algo == "ppo" else ("actor", "critic")
    for network in networks:
        for tag in ("overactive_ratio_before", "overactive_ratio_after", "dormant_ratio_before", "transferred_count"):
            assert rec.values(f"plasticity/reborn/{network}/{tag}"), (network, tag)
    assert rec.values("plasticity/reborn/" + ("policy_kl" if algo != "td3" else "action_change"))
    state = model.plasticity_state["reborn"]
    assert state["total_transferred"] == cb.total_transferred and state["n_events"] == cb.n_events
