"""Neuron discovery on SB3's built-in policies, declared policies, and clear errors for what is not understood."""

import math

import pytest
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from sb3_plasticity.neurons import (
    DefaultInit,
    NetworkPath,
    NeuronDiscoveryError,
    OrthogonalInit,
    Stage,
    discover,
)


def arch(**kwargs):
    # a fresh dict each time: SB3 writes into policy_kwargs (DDPG sets n_critics there)
    return dict(net_arch=[16, 8], **kwargs)


def _names(model):
    return {net: [g.name for g in groups] for net, groups in discover(model).networks.items()}


def test_td3_networks_groups_and_twins():
    model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=arch(), device="cpu")
    neurons = discover(model)
    assert _names(model) == {
        "actor": ["mu.0", "mu.2"],
        "critic": ["qf0.0", "qf0.2", "qf1.0", "qf1.2"],
        "actor_target": ["mu.0", "mu.2"],
        "critic_target": ["qf0.0", "qf0.2", "qf1.0", "qf1.2"],
    }
    assert neurons.trainable_networks == ["actor", "critic"]
    for group in neurons.networks["critic"]:
        assert group.optimizers == (model.critic.optimizer,)
        assert group.twin is not None and group.twin.is_target
        assert group.twin.producer is model.critic_target.get_submodule(group.name)
        assert isinstance(group.init, DefaultInit)
    qf0_0, qf0_2 = neurons.networks["critic"][:2]
    # critic input is [features, actions]: the first layer reads obs (3) + action (1) but is not a consumer here
    assert qf0_0.consumers[0].module is model.critic.qf0[2]
    assert qf0_2.consumers[0].module is model.critic.qf0[4] and qf0_2.is_last_hidden
    assert qf0_0.output is model.critic.qf0[1]  # ReLU after the Linear


@pytest.mark.parametrize("n_critics", [1, 3])
def test_any_number_of_critics(n_critics):
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=arch(n_critics=n_critics), device="cpu")
    names = _names(model)
    assert names["critic"] == [f"qf{i}.{j}" for i in range(n_critics) for j in (0, 2)]
    assert "actor_target" not in names


def test_ddpg_is_td3():
    model = DDPG("MlpPolicy", "Pendulum-v1", policy_kwargs=arch(), device="cpu")
    assert _names(model)["critic"] == ["qf0.0", "qf0.2"]


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_actor_critic_branches_and_orthogonal_init(algo):
    model = algo("MlpPolicy", "CartPole-v1", policy_kwargs=arch(), device="cpu")
    neurons = discover(model)
    assert _names(model) == {
        "policy": ["mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2"],
        "value": ["mlp_extractor.value_net.0", "mlp_extractor.value_net.2"],
    }
    last_pi = neurons.networks["policy"][1]
    assert last_pi.consumers[0].module is model.policy.action_net
    assert neurons.networks["value"][1].consumers[0].module is model.policy.value_net
    assert isinstance(last_pi.init, OrthogonalInit) and last_pi.init.gain == pytest.approx(math.sqrt(2))
    assert all(g.optimizers == (model.policy.optimizer,) for g in neurons.groups)
    no_ortho = algo("MlpPolicy", "CartPole-v1", policy_kwargs=arch(ortho_init=False), device="cpu")
    assert all(isinstance(g.init, DefaultInit) for g in discover(no_ortho).groups)


def _image_env(discrete: bool) -> FakeImageEnv:
    return FakeImageEnv(screen_height=64, screen_width=64, n_channels=1, discrete=discrete)


def test_ppo_cnn_shared_and_separate_extractors():
    shared = PPO("CnnPolicy", _image_env(True), n_steps=16, device="cpu")
    names = _names(shared)
    assert names["features"] == [f"features_extractor.cnn.{i}" for i in (0, 2, 4)] + ["features_extractor.linear.0"]
    linear = discover(shared).networks["features"][-1]
    # the extractor's last layer feeds both branches (empty pi/vf MLPs feed the heads directly)
    assert len(linear.consumers) == 2
    separate = PPO("CnnPolicy", _image_env(True), n_steps=16, policy_kwargs=dict(share_features_extractor=False), device="cpu")
    names = _names(separate)
    assert "features" not in names
    assert names["policy"][0] == "pi_features_extractor.cnn.0"
    assert names["value"][0] == "vf_features_extractor.cnn.0"


def test_td3_cnn_extractors_have_block_mapping_and_twins():
    model = TD3("CnnPolicy", _image_env(False), buffer_size=100, device="cpu")
    neurons = discover(model)
    conv = next(g for g in neurons.networks["critic"] if g.name == "features_extractor.cnn.4")
    assert conv.consumers[0].block == 16
    assert conv.twin is not None and conv.twin.network == "critic_target"


def test_sac_shared_extractor_is_its_own_network_with_both_optimizers():
    model = SAC(
        "CnnPolicy", _image_env(False), buffer_size=100, policy_kwargs=dict(share_features_extractor=True), device="cpu"
    )
    neurons = discover(model)
    features = neurons.networks["features"]
    last = features[-1]
    assert {id(c.module) for c in last.consumers} == {
        id(model.actor.latent_pi[0]),
        id(model.critic.qf0[0]),
        id(model.critic.qf1[0]),
    }
    assert set(map(id, last.optimizers)) == {id(model.actor.optimizer), id(model.critic.optimizer)}
    # critic_target keeps a private extractor copy that polyak averaging tracks: it is the twin
    assert last.twin is not None and last.twin.network == "critic_target"


def test_declared_paths_for_a_custom_policy():
    class DeclaredTD3Policy(TD3Policy):
        def neuron_paths(self):
            return [
                NetworkPath((Stage("actor", "mu", self.actor.mu),)),
                NetworkPath((Stage("critic", "qf0", self.critic.qf0),)),
            ]

    model = TD3(DeclaredTD3Policy, "Pendulum-v1", policy_kwargs=arch(), device="cpu")
    assert _names(model) == {"actor": ["mu.0", "mu.2"], "critic": ["qf0.0", "qf0.2"]}


class _OddExtractor(BaseFeaturesExtractor):
    def __init__(self, observation_space, features_dim: int = 8):
        super().__init__(observation_space, features_dim)
        self.body = nn.Linear(observation_space.shape[0], features_dim)

    def forward(self, obs):
        return self.body(obs) * 2


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.a(x)


def test_unsupported_extractor_is_named_in_the_error():
    model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=arch(features_extractor_class=_OddExtractor), device="cpu")
    with pytest.raises(NeuronDiscoveryError, match=r"actor\.features_extractor \(_OddExtractor\)") as err:
        discover(model)
    assert "neuron_paths" in str(err.value)


class _UnknownPolicy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def test_unsupported_policy_class_is_named_in_the_error():
    with pytest.raises(NeuronDiscoveryError, match="_UnknownPolicy") as err:
        discover(_UnknownPolicy())
    assert "register_adapter" in str(err.value) and "neuron_paths" in str(err.value)


def test_dqn_networks_groups_and_twins():
    model = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=arch(), device="cpu", buffer_size=100)
    neurons = discover(model)
    assert _names(model) == {"q_net": ["q_net.0", "q_net.2"], "q_net_target": ["q_net.0", "q_net.2"]}
    assert neurons.trainable_networks == ["q_net"]
    for group in neurons.networks["q_net"]:
        assert group.twin.name == group.name and group.twin.producer is not group.producer
        assert group.twin.network == "q_net_target" and group.optimizers == (model.policy.optimizer,)


def test_check_networks_names_the_bad_and_the_existing_ones():
    neurons = discover(TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=arch(), device="cpu"))
    with pytest.raises(ValueError, match=r"critc.*'actor', 'critic'"):
        neurons.select(["critc"])
    assert {g.network for g in neurons.select(["critic"])} == {"critic"}
    assert all(not g.is_target for g in neurons.select(targets=False))


def test_last_hidden_is_per_network():
    # the shared extractor's last layer feeds hidden layers of other networks, yet is the features' last hidden
    model = PPO("CnnPolicy", _image_env(True), n_steps=16, policy_kwargs=dict(net_arch=[16]), device="cpu")
    neurons = discover(model)
    assert [g.name for g in neurons.networks["features"] if g.is_last_hidden] == ["features_extractor.linear.0"]
    assert [g.name for g in neurons.networks["policy"] if g.is_last_hidden] == ["mlp_extractor.policy_net.0"]
