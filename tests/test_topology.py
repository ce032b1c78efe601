"""MaskedLinear, Erdos-Renyi densities and the masked SB3 policies (the topology part of Neuroplastic Expansion)."""

import gymnasium as gym
import pytest
import torch as th
from stable_baselines3 import PPO, SAC, TD3
from torch import nn

from sb3_plasticity import (
    MaskedActorCriticPolicy,
    MaskedLinear,
    MaskedMultiHeadSACPolicy,
    MaskedMultiHeadTD3Policy,
    MaskedSACPolicy,
    MaskedTD3Policy,
    discover,
)
from sb3_plasticity.topology import erdos_renyi_densities, masked_layers, random_mask, sync_masks


def _layer() -> MaskedLinear:
    th.manual_seed(0)
    layer = MaskedLinear(6, 4)
    layer.set_mask(random_mask((4, 6), 0.5, th.Generator().manual_seed(1)))
    return layer


def test_masked_weights_have_no_effect_and_get_no_gradient():
    layer = _layer()
    x = th.randn(8, 6)
    out = layer(x)
    with th.no_grad():
        layer.weight[layer.mask == 0] = 123.0  # whatever a masked weight holds
    assert th.allclose(layer(x), out)
    layer(x).pow(2).sum().backward()
    assert not layer.weight.grad[layer.mask == 0].any()
    assert layer.weight.grad[layer.mask == 1].abs().sum() > 0


def test_masked_entries_keep_zero_adam_moments_and_zero_weights():
    layer = _layer()
    opt = th.optim.Adam(layer.parameters(), lr=1e-2)
    for _ in range(20):
        opt.zero_grad()
        layer(th.randn(8, 6)).pow(2).sum().backward()
        opt.step()
    masked = layer.mask == 0
    assert not opt.state[layer.weight]["exp_avg"][masked].any()
    assert not opt.state[layer.weight]["exp_avg_sq"][masked].any()
    assert not layer.weight[masked].any()


def test_dense_gradient_hook_sees_masked_entries():
    layer = _layer()
    seen = []
    layer.dense_grad_hook = seen.append
    layer(th.randn(8, 6)).pow(2).sum().backward()
    (dense,) = seen
    assert dense[layer.mask == 0].abs().sum() > 0  # the growth signal for connections that do not exist yet
    assert th.allclose(dense * layer.mask, layer.weight.grad)


@pytest.mark.parametrize(
    "shapes", [[(256, 17), (128, 256), (6, 128)], [(32, 64), (32, 32)], [(400, 300), (300, 400), (1, 300)]]
)
@pytest.mark.parametrize("density", [0.1, 0.25, 0.8])
def test_erdos_renyi_densities_add_up(shapes, density):
    densities = erdos_renyi_densities(shapes, density)
    sizes = [o * i for o, i in shapes]
    assert sum(d * n for d, n in zip(densities, sizes, strict=True)) == pytest.approx(density * sum(sizes))
    assert all(0 < d <= 1 for d in densities)
    # proportional to (fan_in + fan_out) / (fan_in * fan_out) among the layers that are not full
    ratios = [d / ((o + i) / (o * i)) for d, (o, i) in zip(densities, shapes, strict=True) if d < 1]
    assert max(ratios) == pytest.approx(min(ratios))


def test_erdos_renyi_makes_small_layers_dense_first():
    densities = erdos_renyi_densities([(6, 4), (1000, 1000)], 0.3)
    assert densities[0] == 1.0 and densities[1] < 0.3


def test_random_mask_has_the_exact_count():
    mask = random_mask((10, 7), 0.3)
    assert int(mask.sum()) == 21 and set(mask.unique().tolist()) <= {0.0, 1.0}


POLICIES = [
    (TD3, MaskedTD3Policy, "Pendulum-v1", dict(learning_starts=50), {"mu.2", "qf0.2", "qf1.2"}),
    (SAC, MaskedSACPolicy, "Pendulum-v1", dict(learning_starts=50), {"latent_pi.2", "qf0.2", "qf1.2"}),
    (PPO, MaskedActorCriticPolicy, "CartPole-v1", dict(n_steps=64, batch_size=32), {"policy_net.2", "value_net.2"}),
]


@pytest.mark.parametrize(("algo", "policy", "env", "kwargs", "masked"), POLICIES)
def test_masked_policies(algo, policy, env, kwargs, masked, tmp_path):
    model = algo(policy, env, policy_kwargs=dict(net_arch=[64, 64], initial_density=0.25), device="cpu", seed=0, **kwargs)
    layers = dict(masked_layers(model.policy))
    # first and last layers dense: only the hidden-to-hidden layer of each network is masked
    assert {name.split(".", 1)[1].removeprefix("mlp_extractor.") for name in layers} == masked
    assert all(layer.density == pytest.approx(0.25, abs=1e-3) for layer in layers.values())
    for name in ("actor", "critic"):
        target_net = getattr(model.policy, f"{name}_target", None)
        if target_net is not None:  # target networks start with the online masks
            online, target = dict(masked_layers(getattr(model.policy, name))), dict(masked_layers(target_net))
            assert online.keys() == target.keys()
            assert all(th.equal(online[k].mask, target[k].mask) for k in online)
    model.learn(200)
    for layer in layers.values():
        assert not layer.weight[layer.mask == 0].any()  # masked connections stay zero through training
    # the neuron model counts only neurons with an incoming connection
    groups = [g for g in discover(model).groups if g.alive() is not None]
    assert groups and all(int(g.alive().sum()) == int((g.producer.mask.sum(dim=1) > 0).sum()) for g in groups)
    # save -> load keeps masks and the masking kwargs
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", env=model.get_env(), device="cpu")
    loaded_layers = dict(masked_layers(loaded.policy))
    assert all(th.equal(loaded_layers[k].mask, v.mask) for k, v in layers.items())
    assert loaded.policy.initial_density == 0.25
    loaded.learn(100)  # continues


def test_sync_masks_copies_to_the_target():
    model = TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), device="cpu")
    layer = model.actor.mu[2]
    layer.set_mask(th.ones_like(layer.mask))
    assert not th.equal(model.actor_target.mu[2].mask, layer.mask)  # polyak never touches buffers
    sync_masks(model.actor, model.actor_target)
    assert th.equal(model.actor_target.mu[2].mask, layer.mask)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [(dict(initial_density=0.0), "initial_density"), (dict(initial_density=1.5), "initial_density"),
     (dict(mask_distribution="gaussian"), "mask_distribution")],
)  # fmt: skip
def test_bad_masking_kwargs(kwargs, name):
    with pytest.raises(ValueError, match=name):
        TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16], **kwargs), device="cpu")


def test_uniform_distribution_and_all_layers_masked():
    model = TD3(
        MaskedTD3Policy, "Pendulum-v1", device="cpu",
        policy_kwargs=dict(net_arch=[32, 16], mask_distribution="uniform", dense_first_last=False, initial_density=0.5),
    )  # fmt: skip
    layers = dict(masked_layers(model.actor))
    assert set(layers) == {"mu.0", "mu.2", "mu.4"}
    assert all(abs(layer.density - 0.5) < 0.05 for layer in layers.values())
    assert isinstance(model.actor.mu[0], nn.Linear)  # still an nn.Linear: SB3 init, optimizers, targets


@pytest.mark.parametrize(
    ("algo", "policy", "masked"),
    [
        (TD3, MaskedMultiHeadTD3Policy, {"actor.mu.trunk.2", "critic.qf0.trunk.2", "critic.qf1.trunk.2"}),
        (SAC, MaskedMultiHeadSACPolicy, {"actor.latent_pi.2", "critic.qf0.trunk.2", "critic.qf1.trunk.2"}),
    ],
)
def test_masked_multi_head_policies(algo, policy, masked, tmp_path):
    env = gym.make("sb3_plasticity/ContinualMuJoCo-v0", episodes_per_task=1, max_episode_steps=20)
    kwargs = dict(net_arch=[32, 32], initial_density=0.25)
    model = algo(policy, env, policy_kwargs=kwargs, buffer_size=500, learning_starts=50, seed=0)
    layers = {k: v for k, v in masked_layers(model.policy) if not k.endswith("_target") and "_target." not in k}
    # only the trunks' hidden-to-hidden layers: the first trunk layer and every task head stay dense
    assert set(layers) == masked
    assert all(layer.density == pytest.approx(0.25, abs=1e-2) for layer in layers.values())
    model.learn(100)
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", device="cpu")
    loaded_layers = dict(masked_layers(loaded.policy))
    assert all(th.equal(loaded_layers[k].mask, v.mask) for k, v in layers.items())
    assert loaded.policy.n_tasks == 4 and loaded.policy.initial_density == 0.25
