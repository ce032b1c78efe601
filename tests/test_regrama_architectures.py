"""ReGraMa on non-ReLU activations and on a declared residual block with LayerNorm, inside real learn()."""

import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from sb3_plasticity import Consumer, GraMaResetCallback, NetworkPath, NeuronGroup, Stage
from sb3_plasticity.neurons import groups_from_paths
from tests.helpers import read_scalars


@pytest.mark.parametrize("activation_fn", [nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.SiLU])
def test_regrama_runs_with_any_activation(activation_fn, tmp_path):
    model = SAC(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32], activation_fn=activation_fn),
        learning_starts=100, seed=0, device="cpu", tensorboard_log=str(tmp_path),
    )  # fmt: skip
    cb = GraMaResetCallback(reset_freq=100, tau=0.1)
    model.learn(400, callback=cb)
    scalars = read_scalars(model.logger.dir)
    assert cb.n_events >= 2
    for network in ("actor", "critic"):
        values = [v for _, v in scalars[f"plasticity/regrama/{network}/grama_inactive_ratio_before"]]
        assert values and all(0.0 <= v <= 1.0 for v in values)


class ResidualExtractor(BaseFeaturesExtractor):
    """h = Linear(obs); out = h + Linear(ReLU(LayerNorm(Linear(h)))): a BRO-net-style residual block."""

    def __init__(self, observation_space, features_dim: int = 16):
        super().__init__(observation_space, features_dim)
        self.embed = nn.Linear(observation_space.shape[0], features_dim)
        self.block = nn.Sequential(
            nn.Linear(features_dim, features_dim), nn.LayerNorm(features_dim), nn.ReLU(), nn.Linear(features_dim, features_dim)
        )

    def forward(self, obs: th.Tensor) -> th.Tensor:
        h = self.embed(obs)
        return h + self.block(h)


class ResidualSACPolicy(SACPolicy):
    """Declares its neurons: the residual block's inner layer (skip connections are not sequential paths),
    plus the standard heads after the extractor, walked as paths."""

    def neuron_groups(self) -> list[NeuronGroup]:
        groups = []
        for net_name in ("actor", "critic", "critic_target"):
            net = getattr(self, net_name)
            block = net.features_extractor.block
            groups.append(
                NeuronGroup(
                    net_name,
                    "features_extractor.block.0",
                    block[0],
                    output=block[2],
                    consumers=(Consumer(block[3], name="features_extractor.block.3"),),
                    norm=block[1],
                )
            )
        paths = [NetworkPath((Stage("actor", "latent_pi", self.actor.latent_pi), Stage("actor", "mu", self.actor.mu)))]
        for name in ("critic", "critic_target"):
            critic = getattr(self, name)
            paths += [NetworkPath((Stage(name, f"qf{i}", q),)) for i, q in enumerate(critic.q_networks)]
        groups += groups_from_paths(paths)
        by_key = {(g.network, g.name): g for g in groups}
        for g in groups:
            g.twin = by_key.get((g.network + "_target", g.name)) if not g.network.endswith("_target") else None
        return groups

    def neuron_network_modules(self) -> dict[str, list[nn.Module]]:
        return {"actor": [self.actor], "critic": [self.critic], "critic_target": [self.critic_target]}


def _residual_sac(tmp_path) -> SAC:
    return SAC(
        ResidualSACPolicy, "Pendulum-v1", learning_starts=100, batch_size=64, seed=0, device="cpu",
        tensorboard_log=str(tmp_path), policy_kwargs=dict(net_arch=[32, 32], features_extractor_class=ResidualExtractor),
    )  # fmt: skip


def test_regrama_in_a_residual_layernorm_block_flags_neurons_that_no_longer_move_the_loss(tmp_path):
    model = _residual_sac(tmp_path)
    model.learn(150)
    with th.no_grad():
        for net in (model.critic, model.critic_target):
            net.features_extractor.block[3].weight[:, [1, 2]] = 0.0  # their output no longer reaches anything
    cb = GraMaResetCallback(reset_freq=1000, tau=0.0, networks="critic")
    cb.init_callback(model)
    cb.request_event()  # arm: the next training pass is scored and reset between backward and step
    model.train(gradient_steps=1, batch_size=64)
    record = cb.capture.records[next(g for g in cb.capture.groups if g.name == "features_extractor.block.0")]
    cb.advance()
    # the zero-gradient neurons are flagged although they are active (after LayerNorm + ReLU)
    assert (record.grad[:, [1, 2]] == 0).all()
    assert (record.activation[:, [1, 2]].abs().sum(dim=0) > 0).all()
    assert cb.last_counts[("critic", "features_extractor.block.0")] >= 2
    block = model.critic.features_extractor.block
    assert block[1].weight[[1, 2]].eq(1.0).all() and block[1].bias[[1, 2]].eq(0.0).all()  # LayerNorm entries reset
    target = model.critic_target.features_extractor.block
    # the target twin got the same rows (the polyak step after the reset computes (1 - tau) x + tau x: ulps)
    assert th.allclose(target[0].weight[[1, 2]], block[0].weight[[1, 2]], rtol=0, atol=1e-7)


def test_regrama_learns_on_the_residual_policy(tmp_path):
    model = _residual_sac(tmp_path)
    cb = GraMaResetCallback(reset_freq=100, tau=0.1)
    model.learn(400, callback=cb)
    scalars = read_scalars(model.logger.dir)
    assert cb.n_events >= 2
    assert "plasticity/regrama/critic/features_extractor.block.0/reset_count" in scalars
