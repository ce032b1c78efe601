"""Policy adapters (issue 12): known answers for each family's networks, names, twins, optimizers and heads; the
registry; the unknown-policy error; and an output-drift probe that reads 0 when no weight changed, on every
algorithm."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from sb3_contrib import QRDQN, TQC, CrossQ
from sb3_contrib.common.torch_layers import BatchRenorm1d
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from sb3_plasticity.adapters import (
    ActorCriticAdapter,
    CrossQAdapter,
    DQNAdapter,
    PolicyAdapter,
    SACAdapter,
    TD3Adapter,
    TQCAdapter,
    UnsupportedPolicyError,
    adapter_for,
    is_norm,
    register_adapter,
)
from sb3_plasticity.capture import forward_networks
from sb3_plasticity.methods.drift import PolicyProbe
from sb3_plasticity.neurons import NeuronDiscoveryError, discover

ARCH = dict(net_arch=[16, 8])
OFF = dict(learning_starts=10, buffer_size=100)
ALGOS = {
    "td3": (TD3, "Pendulum-v1", OFF),
    "ddpg": (DDPG, "Pendulum-v1", OFF),
    "sac": (SAC, "Pendulum-v1", OFF),
    "tqc": (TQC, "Pendulum-v1", OFF),
    "crossq": (CrossQ, "Pendulum-v1", OFF),
    "ppo": (PPO, "CartPole-v1", dict(n_steps=16)),
    "a2c": (A2C, "CartPole-v1", dict(n_steps=16)),
    "dqn": (DQN, "CartPole-v1", OFF),
    "qrdqn": (QRDQN, "CartPole-v1", OFF),
}


def make(name: str, **policy_kwargs):
    algo, env, kwargs = ALGOS[name]
    return algo("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={**ARCH, **policy_kwargs}, **kwargs)


def observations(model, n: int = 64) -> th.Tensor:
    space = model.observation_space
    space.seed(0)
    return th.as_tensor(np.stack([space.sample() for _ in range(n)]), dtype=th.float32)


def names(model) -> dict[str, list[str]]:
    return {net: [g.name for g in groups] for net, groups in discover(model).networks.items()}


# ----------------------------------------------------------------------------------------------------
# Families: networks, names, twins, optimizers
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, adapter_cls",
    [
        ("td3", TD3Adapter),
        ("ddpg", TD3Adapter),
        ("sac", SACAdapter),
        ("tqc", TQCAdapter),
        ("crossq", CrossQAdapter),
        ("ppo", ActorCriticAdapter),
        ("a2c", ActorCriticAdapter),
        ("dqn", DQNAdapter),
        ("qrdqn", DQNAdapter),
    ],
)
def test_each_algorithm_gets_its_family_adapter(name, adapter_cls):
    model = make(name)
    assert type(adapter_for(model)) is adapter_cls
    assert adapter_for(model) is adapter_for(model.policy)


def test_the_package_policies_use_their_family_adapter():
    import sb3_plasticity as sp
    from sb3_plasticity.adapters import DACERAdapter, DrQV2Adapter
    from sb3_plasticity.masked_contrib import MaskedDQNPolicy, MaskedQRDQNPolicy, MaskedTQCPolicy
    from sb3_plasticity.resnet_policies import ResNetSACPolicy

    expected = {
        TD3Adapter: [sp.LayerNormTD3Policy, sp.BroNetTD3Policy, sp.MultiHeadTD3Policy, sp.MaskedTD3Policy],
        SACAdapter: [sp.LayerNormSACPolicy, sp.BroNetSACPolicy, sp.MultiHeadSACPolicy, sp.MaskedSACPolicy, ResNetSACPolicy],
        ActorCriticAdapter: [sp.LayerNormActorCriticPolicy, sp.MaskedActorCriticPolicy],
        TQCAdapter: [MaskedTQCPolicy],
        DQNAdapter: [MaskedDQNPolicy, MaskedQRDQNPolicy],
        DrQV2Adapter: [sp.DrQV2Policy, sp.LayerNormDrQV2Policy, sp.MaskedDrQV2Policy],
        DACERAdapter: [sp.DACERPolicy],
    }
    for adapter_cls, classes in expected.items():
        for cls in classes:
            assert type(adapter_for(cls)) is adapter_cls, cls.__name__
    assert adapter_for(MaskedQRDQNPolicy).net == "quantile_net" and adapter_for(MaskedDQNPolicy).net == "q_net"


def test_tqc_quantile_critics_and_targets():
    model = make("tqc", n_quantiles=5)
    neurons = discover(model)
    assert names(model) == {
        "actor": ["latent_pi.0", "latent_pi.2"],
        "critic": ["qf0.0", "qf0.2", "qf1.0", "qf1.2"],
        "critic_target": ["qf0.0", "qf0.2", "qf1.0", "qf1.2"],
    }
    adapter = adapter_for(model)
    assert adapter.targets(model.policy) == {"critic": "critic_target"}
    assert adapter.is_stochastic(model.policy) and adapter.actor_network(model.policy) == "actor"
    critic_last = neurons.networks["critic"][1]
    assert critic_last.twin is neurons.networks["critic_target"][1]
    assert [c.module.out_features for c in critic_last.consumers] == [5]  # the quantile output layer is a consumer
    assert critic_last.optimizers == (model.critic.optimizer,)
    (quantiles,) = adapter.run(model.policy, "critic", observations(model, 4), th.zeros(4, 1))
    assert quantiles.shape == (4, 2, 5)  # (batch, n_critics, n_quantiles)
    routes = adapter.head_routes(model.policy, "critic")
    assert [r[-1].module.out_features for r in routes] == [5, 5]


def test_crossq_batch_renorm_is_the_norm_of_its_group_and_there_is_no_target():
    model = make("crossq")
    neurons = discover(model)
    assert names(model) == {"actor": ["latent_pi.1", "latent_pi.4"], "critic": ["qf0.1", "qf0.4", "qf1.1", "qf1.4"]}
    assert adapter_for(model).targets(model.policy) == {}
    for group in neurons.groups:
        # Linear -> ReLU -> BatchRenorm -> next Linear: the neuron is the ReLU's output, z the Linear's
        assert isinstance(group.norm, BatchRenorm1d) and group.norm_after_activation
        assert isinstance(group.output, nn.ReLU) and group.pre_activation is group.producer
        incoming = {id(p) for p in group.incoming_parameters()}
        assert id(group.norm.scale) in incoming and id(group.norm.bias) in incoming
        assert group.twin is None
    assert is_norm(model.critic.qf0[0]) and not is_norm(model.critic.qf0[2])
    forward_networks(model, observations(model, 8), th.zeros(8, 1))  # no critic_target: runs what exists


def test_dqn_and_qrdqn_networks_and_twins():
    for name, net in (("dqn", "q_net"), ("qrdqn", "quantile_net")):
        model = make(name)
        neurons = discover(model)
        assert names(model) == {net: [f"{net}.0", f"{net}.2"], f"{net}_target": [f"{net}.0", f"{net}.2"]}
        adapter = adapter_for(model)
        assert adapter.targets(model.policy) == {net: f"{net}_target"}
        assert adapter.actor_network(model.policy) == net and adapter.head_networks(model.policy) == [net]
        assert not adapter.is_stochastic(model.policy) and adapter.discrete_actions(model.policy)
        assert adapter.optimizer_of(model.policy, net) is model.policy.optimizer
        assert all(g.twin is not None and g.twin.network == f"{net}_target" for g in neurons.networks[net])
        assert neurons.trainable_networks == [net]


def test_ppo_separate_extractors_and_sac_networks():
    ppo = make("ppo", share_features_extractor=False)
    assert names(ppo) == {"policy": ["mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2"],
                          "value": ["mlp_extractor.value_net.0", "mlp_extractor.value_net.2"]}  # fmt: skip
    assert adapter_for(ppo).actor_network(ppo.policy) == "policy"
    sac = make("sac")
    assert adapter_for(sac).targets(sac.policy) == {"critic": "critic_target"}
    td3 = make("td3")
    assert adapter_for(td3).targets(td3.policy) == {"actor": "actor_target", "critic": "critic_target"}
    assert adapter_for(td3).optimizer_of(td3.policy, "actor") is td3.actor.optimizer


# ----------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------
class _UnknownPolicy(nn.Module):
    pass


def test_unknown_policy_gets_one_clear_error():
    with pytest.raises(UnsupportedPolicyError) as err:
        adapter_for(_UnknownPolicy())
    message = str(err.value)
    assert "_UnknownPolicy" in message and "test_adapters._UnknownPolicy" in message
    assert "register_adapter" in message and "neuron_paths" in message
    assert isinstance(err.value, NeuronDiscoveryError) and isinstance(err.value, ValueError)


def test_registration_nearest_class_wins_and_decorator_form():
    class MyPolicy(TD3Policy):
        pass

    class MyAdapter(TD3Adapter):
        family = "mine"

    model = TD3(MyPolicy, "Pendulum-v1", policy_kwargs=dict(ARCH), device="cpu", buffer_size=100)
    assert type(adapter_for(model)) is TD3Adapter  # inherited through the MRO
    mine = register_adapter(MyPolicy, MyAdapter())
    assert adapter_for(model) is mine

    class Other(nn.Module):
        pass

    @register_adapter(f"{Other.__module__}:{Other.__qualname__}")  # by name, without importing the class
    class OtherAdapter(PolicyAdapter):
        family = "other"

    assert type(adapter_for(Other())) is OtherAdapter
    with pytest.raises(TypeError, match="PolicyAdapter"):
        register_adapter(Other, object())


# ----------------------------------------------------------------------------------------------------
# Drift: 0 when nothing changed, > 0 when the policy's output layer changed
# ----------------------------------------------------------------------------------------------------
def _output_layer(model) -> nn.Linear:
    policy = model.policy
    net = adapter_for(policy).actor_network(policy)
    if net == "policy":
        return policy.action_net
    layers = [m for m in getattr(policy, net).modules() if isinstance(m, nn.Linear)]
    return layers[-1] if net != "actor" or not hasattr(policy.actor, "latent_pi") else policy.actor.mu


@pytest.mark.parametrize("name", list(ALGOS))
def test_drift_is_zero_without_change_and_positive_after_one(name):
    model = make(name)
    model.policy.set_training_mode(True)  # CrossQ's BatchRenorm in training mode: the probe must not depend on it
    probe = PolicyProbe(model, observations(model))
    expected = "policy_kl" if name in ("sac", "tqc", "crossq", "ppo", "a2c") else "action_change"
    assert probe.name == expected
    stats = [b.ra_mean.clone() for b in model.policy.modules() if isinstance(b, BatchRenorm1d)]
    before = probe.output()
    assert probe.drift(before, probe.output()) == 0.0
    after = [b.ra_mean for b in model.policy.modules() if isinstance(b, BatchRenorm1d)]
    assert all(th.equal(s, b) for s, b in zip(stats, after, strict=True))  # running statistics left alone
    with th.no_grad():  # negate the output layer: greedy actions become the worst, Gaussians move and flip width
        layer = _output_layer(model)
        layer.weight.neg_()
        layer.bias.neg_()
    assert probe.drift(before, probe.output()) > 0.0


def test_dqn_drift_is_the_share_of_changed_greedy_actions():
    model = make("dqn")
    probe = PolicyProbe(model, observations(model, 100))
    before = probe.output()
    with th.no_grad():
        model.q_net.q_net[-1].bias.copy_(th.tensor([-1e6, 1e6]))  # always action 1
    assert probe.drift(before, probe.output()) == pytest.approx(float((before == 0).float().mean()))
