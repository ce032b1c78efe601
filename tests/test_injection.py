"""PlasticityInjectionCallback: function preserved at injection, what trains afterwards, target networks, neuron
discovery on injected heads, save/load, repeated injections, logging and errors."""

from __future__ import annotations

import base64
import copy
import importlib
import json
import zipfile

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch as th
from helpers import Recorder
from sb3_contrib import QRDQN, TQC, CrossQ
from sb3_contrib.tqc.policies import TQCPolicy
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

import sb3_plasticity
from sb3_plasticity import (
    BroNetTD3Policy,
    DrQV2,
    DrQV2Policy,
    InjectableActorCriticPolicy,
    InjectableBroNetSACPolicy,
    InjectableBroNetTD3Policy,
    InjectableDQNPolicy,
    InjectableDrQV2Policy,
    InjectableMultiHeadSACPolicy,
    InjectableMultiHeadTD3Policy,
    InjectablePolicy,
    InjectableSACPolicy,
    InjectableTD3Policy,
    InjectedHead,
    LayerNormDrQV2Policy,
    MaskedTD3Policy,
    MultiHeadSACPolicy,
    NotInjectablePolicyError,
    PlasticityInjectionCallback,
    PlasticityMonitorCallback,
    ReDoCallback,
    discover,
    injectable_policies,
    surgery,
)
from sb3_plasticity.adapters import adapter_for
from sb3_plasticity.methods import injection
from sb3_plasticity.methods.injection import inject_heads, injected_networks

ARCH = dict(net_arch=[16, 8])
OFF = dict(learning_starts=50, buffer_size=1000, batch_size=32, policy_kwargs=ARCH)
ON = dict(n_steps=32, batch_size=16, n_epochs=2, policy_kwargs=ARCH)


def recorded(model) -> Recorder:
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    return rec


def make(algo, env: str = "Pendulum-v1", **kwargs):
    defaults = OFF if algo in (TD3, SAC) else ON if algo is PPO else dict(n_steps=8)
    # a fresh policy_kwargs dict: SB3 writes into it (SAC adds use_sde)
    kwargs = {**defaults, "policy_kwargs": dict(ARCH), **kwargs}
    return algo("MlpPolicy", env, seed=0, device="cpu", **kwargs)


def observations(model, n: int = 64) -> tuple[th.Tensor, th.Tensor]:
    gen = th.Generator().manual_seed(1)
    obs = th.rand((n, *model.observation_space.shape), generator=gen) * 2 - 1
    act = th.rand((n, *model.action_space.shape), generator=gen) * 2 - 1
    return obs, act


@th.no_grad()
def outputs(model, obs: th.Tensor, act: th.Tensor) -> dict[str, th.Tensor]:
    """Every network's output on a batch (targets included)."""
    policy = model.policy
    if isinstance(model, (PPO, A2C)):
        dist = policy.get_distribution(obs).distribution
        logits = dist.logits if hasattr(dist, "logits") else dist.mean
        return {"policy": logits, "value": policy.predict_values(obs)}
    out = {"critic": th.cat(policy.critic(obs, act), 1), "critic_target": th.cat(policy.critic_target(obs, act), 1)}
    if isinstance(model, SAC):
        mean, log_std, _ = policy.actor.get_action_dist_params(obs)
        out["actor"] = th.cat([mean, log_std], 1)
    else:
        out["actor"] = policy.actor(obs)
        out["actor_target"] = policy.actor_target(obs)
    return out


def heads(module: nn.Module) -> list[InjectedHead]:
    return [m for m in module.modules() if isinstance(m, InjectedHead) and not _inside_old(module, m)]


def _inside_old(root: nn.Module, head: InjectedHead) -> bool:
    return any(isinstance(m, InjectedHead) and any(x is head for x in m.old.modules()) for m in root.modules())


def optimizer_params(model) -> set[int]:
    return {id(p) for opt in adapter_for(model.policy).optimizers(model.policy) for g in opt.param_groups for p in g["params"]}


def snapshot(params) -> list[th.Tensor]:
    return [p.detach().clone() for p in params]


def changed(before: list[th.Tensor], params) -> bool:
    return any(not th.equal(b, p) for b, p in zip(before, params, strict=True))


# ----------------------------------------------------------------------------------------------------
# Function preservation and structure
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "algo, env, head_layers",
    [
        (TD3, "Pendulum-v1", 1),
        (TD3, "Pendulum-v1", 2),
        (SAC, "Pendulum-v1", 1),
        (PPO, "Pendulum-v1", 1),
        (PPO, "CartPole-v1", 2),
        (A2C, "CartPole-v1", 1),
    ],
)
def test_function_unchanged_at_injection(algo, env, head_layers):
    model = make(algo, env)
    obs, act = observations(model)
    before = outputs(model, obs, act)
    for network in injection.head_networks(model.policy):
        inject_heads(model.policy, network, head_layers)
    after = outputs(model, obs, act)
    for name, value in before.items():
        assert th.allclose(after[name], value, atol=1e-6, rtol=0), name
    # every route's head is injected, the targets' too
    n_routes = {TD3: 1 + 2 + 1 + 2, SAC: 2 + 2 + 2, PPO: 2, A2C: 2}[algo]
    assert len(heads(model.policy)) == n_routes
    for head in heads(model.policy):
        assert head.head_layers == head_layers
        assert not any(p.requires_grad for p in [*head.old.parameters(), *head.copy.parameters()])
        for p_new, p_copy in zip(head.new.parameters(), head.copy.parameters(), strict=True):
            assert th.equal(p_new, p_copy)


def test_fresh_head_uses_the_layers_init_scheme():
    # PPO's orthogonal init: gain 0.01 for action_net, 1 for value_net, sqrt(2) for hidden layers
    model = make(PPO, "CartPole-v1")
    inject_heads(model.policy, "policy", 2)
    inject_heads(model.policy, "value", 1)
    new_pi, new_vf = model.policy.action_net.new, model.policy.value_net.new
    hidden, out = new_pi[0].weight, new_pi[2].weight
    # rows of an orthogonal matrix (16 x 16 hidden, 2 x 8 output) times the gain
    assert th.allclose(hidden @ hidden.T, 2.0 * th.eye(8), atol=1e-5)
    assert th.allclose(out @ out.T, 1e-4 * th.eye(2), atol=1e-8)
    assert th.allclose(new_vf.weight.norm(), th.tensor(1.0), atol=1e-5)
    assert th.all(new_pi[0].bias == 0) and th.all(new_vf.bias == 0)
    assert not th.equal(new_pi[2].weight, model.policy.action_net.old[2].weight)


def test_only_the_new_head_and_the_trunk_train_and_targets_follow():
    # tau=1: every update copies the online parameters into the target, frozen heads included
    model = make(TD3, tau=1.0, policy_delay=1)
    model.learn(100)
    for network in ("actor", "critic"):
        inject_heads(model.policy, network)
    online_heads = heads(model.actor) + heads(model.critic)
    in_opt = optimizer_params(model)
    new = [p for h in online_heads for p in h.new.parameters()]
    frozen = [p for h in online_heads for p in (*h.old.parameters(), *h.copy.parameters())]
    trunk = [model.critic.qf0[0].weight, model.actor.mu[0].weight]
    assert all(id(p) in in_opt for p in new + trunk)
    assert not any(id(p) in in_opt for p in frozen)
    assert all(p not in opt.state for opt in adapter_for(model.policy).optimizers(model.policy) for p in new)
    new_0, frozen_0, trunk_0 = snapshot(new), snapshot(frozen), snapshot(trunk)
    model.learn(100, reset_num_timesteps=False)
    assert all(changed([b], [p]) for b, p in zip(new_0, new, strict=True))
    assert not changed(frozen_0, frozen)
    assert all(changed([b], [p]) for b, p in zip(trunk_0, trunk, strict=True))
    for online, target in ((model.actor, model.actor_target), (model.critic, model.critic_target)):
        assert [n for n, _ in online.named_parameters()] == [n for n, _ in target.named_parameters()]
        for p, q in zip(online.parameters(), target.parameters(), strict=True):
            assert th.equal(p, q)


def test_target_new_head_equals_online_at_injection_and_polyak_keeps_old():
    model = make(TD3)
    model.learn(80)
    old_target = snapshot(model.critic_target.qf0[4].parameters())
    inject_heads(model.policy, "critic")
    head, t_head = model.critic.qf0[4], model.critic_target.qf0[4]
    assert all(th.equal(p, q) for p, q in zip(head.new.parameters(), t_head.new.parameters(), strict=True))
    assert all(th.equal(p, q) for p, q in zip(head.copy.parameters(), t_head.copy.parameters(), strict=True))
    # the target keeps its own (lagging) old head: its function is unchanged too
    assert all(th.equal(p, q) for p, q in zip(old_target, t_head.old.parameters(), strict=True))
    assert t_head.new is not head.new


def test_sac_actor_heads_are_mu_and_log_std_and_ppo_log_std_trains():
    sac = make(SAC)
    inject_heads(sac.policy, "actor")
    assert isinstance(sac.actor.mu, InjectedHead) and isinstance(sac.actor.log_std, InjectedHead)
    assert isinstance(sac.actor.latent_pi[0], nn.Linear)
    ppo = make(PPO)
    inject_heads(ppo.policy, "policy")
    assert id(ppo.policy.log_std) in optimizer_params(ppo)
    log_std = ppo.policy.log_std.detach().clone()
    ppo.learn(64)
    assert not th.equal(log_std, ppo.policy.log_std)


def test_discovery_sees_injected_heads_as_consumers():
    model = make(TD3)
    for network in ("actor", "critic"):
        inject_heads(model.policy, network, 2)
    neurons = discover(model)
    by_key = {g.key: g for g in neurons.groups}
    trunk = by_key["critic/qf0.0"]
    assert {c.name for c in trunk.consumers} == {"qf0.4.old.0", "qf0.4.new.0", "qf0.4.copy.0"}
    assert trunk.twin is by_key["critic_target/qf0.0"]
    # the new head's hidden layer is a neuron group; the frozen heads' are not
    assert "critic/qf0.4.new.0" in by_key and not any(".old." in k or ".copy." in k for k in by_key)
    assert by_key["critic/qf0.4.new.0"].optimizers == (model.critic.optimizer,)
    assert [layer.name for layer in neurons.layers("critic", last=1)] == ["qf0.4.new.2", "qf1.4.new.2"]
    # ReDo's zeroed outgoing weights cover all three heads, in the online and the target network
    surgery.reset_neurons(trunk, [3])
    head = model.critic.qf0[4]
    for branch in (head.old, head.new, head.copy, model.critic_target.qf0[4].new):
        assert th.all(branch[0].weight[:, 3] == 0)


@pytest.mark.parametrize("algo", [TD3, SAC])
def test_bro_net_head_is_its_output_layer(algo, tmp_path):
    policy = InjectableBroNetTD3Policy if algo is TD3 else InjectableBroNetSACPolicy
    model = algo(policy, "Pendulum-v1", policy_kwargs=dict(width=16), buffer_size=100, seed=0)
    obs = th.as_tensor(np.stack([model.observation_space.sample() for _ in range(8)]))
    act = th.as_tensor(np.stack([model.action_space.sample() for _ in range(8)]))
    with th.no_grad():
        before = th.cat(model.critic(obs, act), dim=1)
    inject_heads(model, "critic", 1)  # given the algorithm, save/load keep the injection
    with th.no_grad():
        assert th.allclose(th.cat(model.critic(obs, act), dim=1), before, atol=1e-6)
    assert isinstance(model.critic.qf0.head, InjectedHead)
    stem = {g.key: g for g in discover(model).groups}["critic/qf0.stem.0"]
    # the stem feeds the blocks and the three heads: ReDo zeroes its columns in all of them
    assert {"qf0.head.old", "qf0.head.new", "qf0.head.copy"} <= {c.name for c in stem.consumers}
    model.save(tmp_path / "bro")
    loaded = algo.load(tmp_path / "bro")
    with th.no_grad():
        assert th.allclose(th.cat(loaded.critic(obs, act), dim=1), before, atol=1e-6)


@pytest.mark.parametrize("algo", [TD3, SAC])
def test_multi_head_injects_every_task_head(algo):
    env = gym.make("sb3_plasticity/ContinualMuJoCo-v0")
    policy = InjectableMultiHeadTD3Policy if algo is TD3 else InjectableMultiHeadSACPolicy
    model = algo(policy, env, policy_kwargs=dict(net_arch=[16]), buffer_size=100, seed=0)
    obs = th.as_tensor(np.stack([env.observation_space.sample() for _ in range(16)])).float()
    with th.no_grad():
        before = model.policy._predict(obs, deterministic=True)
    for network in ("actor", "critic"):
        inject_heads(model, network)
    with th.no_grad():
        assert th.allclose(model.policy._predict(obs, deterministic=True), before, atol=1e-6)
    heads = model.critic.qf0.heads
    assert len(heads) == 4 and all(isinstance(h, InjectedHead) for h in heads)
    actor_heads = model.actor.mu.heads if algo is TD3 else model.actor.mu
    assert all(isinstance(h, InjectedHead) for h in actor_heads)


# ----------------------------------------------------------------------------------------------------
# Inside learn(): logging, other methods, repeated injections
# ----------------------------------------------------------------------------------------------------
def test_callback_logs_and_other_methods_follow():
    model = make(TD3)
    rec = recorded(model)
    monitor = PlasticityMonitorCallback(log_freq=50)
    redo = ReDoCallback(reset_freq=100, networks="critic")
    model.learn(250, callback=[PlasticityInjectionCallback(inject_at=120), monitor, redo])
    assert rec.values("plasticity/injection/injected") == [(120, 1.0)]
    assert rec.values("plasticity/injection/critic/injected") == [(120, 1.0)]
    assert rec.values("plasticity/injection/actor/trainable_parameters") == [(120, 9.0)]
    for network in ("actor", "critic"):
        ((_, change),) = rec.values(f"plasticity/injection/{network}/output_change")
        assert change < 1e-6
    # the other callbacks were re-initialised: their neuron model has the new heads as consumers
    for cb in (monitor, redo):
        trunk = next(g for g in cb.neurons.groups if g.key == "critic/qf0.2")
        assert {c.name for c in trunk.consumers} == {"qf0.4.old", "qf0.4.new", "qf0.4.copy"}
    assert [s for s, _ in rec.values("plasticity/redo/reset_count")] == [100, 200]
    assert any(s > 120 for s, _ in rec.values("plasticity/critic/dormant_ratio"))
    assert model.plasticity_state["injection"] == {"n_injected": 1}


def test_repeated_injections_stack_heads():
    model = make(PPO, "CartPole-v1")
    rec = recorded(model)
    model.learn(128, callback=PlasticityInjectionCallback(inject_at=[0.25, 64], networks="value", head_layers=2))
    head = model.policy.value_net
    assert head.injections == 2 and head.old.injections == 1
    assert rec.values("plasticity/injection/injected") == [(32, 1.0), (64, 2.0)]
    assert injected_networks(model.policy) == {"value": 2}
    assert not isinstance(model.policy.action_net, InjectedHead)
    in_opt = optimizer_params(model)
    assert all(id(p) in in_opt for p in head.new.parameters())
    assert not any(id(p) in in_opt for p in [*head.old.parameters(), *head.copy.parameters()])
    changes = rec.values("plasticity/injection/value/output_change")
    assert [s for s, _ in changes] == [32, 64] and all(v < 1e-6 for _, v in changes)


# ----------------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", [TD3, SAC, PPO])
def test_save_load_continue(algo, tmp_path):
    env = "Pendulum-v1"
    model = make(algo, env)
    model.learn(150, callback=PlasticityInjectionCallback(inject_at=100))
    # "MlpPolicy" did not opt in: SB3's own policy class becomes its injectable class, which save/load keep
    injectable = {TD3: InjectableTD3Policy, SAC: InjectableSACPolicy, PPO: InjectableActorCriticPolicy}[algo]
    assert type(model.policy) is injectable and model.policy_class is injectable
    model.save(tmp_path / "model")
    obs, act = observations(model)
    loaded = algo.load(tmp_path / "model", env=gym.make(env), device="cpu")
    assert type(loaded.policy) is injectable
    before = outputs(model, obs, act)
    after = outputs(loaded, obs, act)
    for key, value in before.items():
        assert th.equal(after[key], value), key
    for opt, opt_loaded in zip(
        adapter_for(model.policy).optimizers(model.policy), adapter_for(loaded.policy).optimizers(loaded.policy), strict=True
    ):
        state, state_loaded = opt.state_dict(), opt_loaded.state_dict()
        assert state["param_groups"] == state_loaded["param_groups"]
        for k, v in state["state"].items():
            assert all(th.equal(v[n], state_loaded["state"][k][n]) for n in v)
    frozen = [p for h in heads(loaded.policy) for p in h.copy.parameters()]
    new = [p for h in heads(loaded.policy) for p in h.new.parameters()]
    frozen_0, new_0 = snapshot(frozen), snapshot(new)
    rec = recorded(loaded)
    loaded.learn(100, reset_num_timesteps=False, callback=PlasticityInjectionCallback(inject_at=100))
    assert rec.values("plasticity/injection/injected") == []
    assert all(h.injections == 1 for h in heads(loaded.policy))
    assert not changed(frozen_0, frozen) and changed(new_0, new)
    assert discover(loaded).groups  # other methods can run on the loaded model


def test_direct_injection_save_load(tmp_path):
    model = make(SAC)
    inject_heads(model, "critic")  # given the algorithm, its policy_class and policy_kwargs follow
    model.save(tmp_path / "model")
    loaded = SAC.load(tmp_path / "model", device="cpu")
    assert loaded.policy_kwargs["plasticity_injection"] == {"injections": [{"network": "critic", "head_layers": 1}]}
    assert isinstance(loaded.critic_target.qf1[4], InjectedHead)
    model.policy.save(tmp_path / "policy.pth")
    policy = type(model.policy).load(tmp_path / "policy.pth")
    obs, act = observations(model)
    with th.no_grad():
        for q, q_loaded in zip(model.critic(obs, act), policy.critic(obs, act), strict=True):
            assert th.equal(q, q_loaded)


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("inject_at", [0, -5, 1.5, "100", [], [100, 0], True, None])
def test_bad_inject_at(inject_at):
    with pytest.raises(ValueError, match="inject_at"):
        PlasticityInjectionCallback(inject_at=inject_at)


def test_bad_head_layers():
    with pytest.raises(ValueError, match="head_layers"):
        PlasticityInjectionCallback(inject_at=10, head_layers=0)


@pytest.mark.parametrize(
    "algo, kwargs, match",
    [
        (TD3, dict(networks="foo"), "no network named"),
        (TD3, dict(networks="critic_target"), "target networks"),
        (TD3, dict(head_layers=4), "has only 3"),
        (SAC, dict(networks="actor", head_layers=2), "SAC's actor head"),
        (PPO, dict(inject_at=[0.5, 16]), "strictly increasing"),
    ],
)
def test_bad_setup(algo, kwargs, match):
    model = make(algo)
    callback = PlasticityInjectionCallback(**{"inject_at": 10, **kwargs})
    with pytest.raises(ValueError, match=match):
        model.learn(32, callback=callback)


# ----------------------------------------------------------------------------------------------------
# Opt-in policy classes: one per family, each keeps its injected heads through save / load
# ----------------------------------------------------------------------------------------------------
CONTINUAL = "sb3_plasticity/ContinualMuJoCo-v0"
IMAGE = "image"  # a tiny FakeImageEnv for DrQ-v2
DRQ = dict(net_arch=[16, 8], feature_dim=8, features_extractor_kwargs=dict(n_filters=4))
Q5 = dict(net_arch=[16, 8], n_quantiles=5)
# (injectable class, the cheapest algorithm of its family, env, policy_kwargs)
FAMILIES = [
    ("InjectableTD3Policy", TD3, "Pendulum-v1", ARCH),
    ("InjectableSACPolicy", SAC, "Pendulum-v1", ARCH),
    ("InjectableActorCriticPolicy", A2C, "CartPole-v1", ARCH),
    ("InjectableDQNPolicy", DQN, "CartPole-v1", ARCH),
    ("InjectableLayerNormTD3Policy", TD3, "Pendulum-v1", ARCH),
    ("InjectableLayerNormSACPolicy", SAC, "Pendulum-v1", ARCH),
    ("InjectableLayerNormActorCriticPolicy", A2C, "CartPole-v1", ARCH),
    ("InjectableBroNetTD3Policy", TD3, "Pendulum-v1", dict(width=16)),
    ("InjectableBroNetSACPolicy", SAC, "Pendulum-v1", dict(width=16)),
    ("InjectableMultiHeadTD3Policy", TD3, CONTINUAL, dict(net_arch=[16])),
    ("InjectableMultiHeadSACPolicy", SAC, CONTINUAL, dict(net_arch=[16])),
    ("InjectableResNetSACPolicy", SAC, "Pendulum-v1", dict(width=16)),
    ("InjectableDrQV2Policy", DrQV2, IMAGE, DRQ),
    ("InjectableLayerNormDrQV2Policy", DrQV2, IMAGE, DRQ),
    ("InjectableTQCPolicy", TQC, "Pendulum-v1", Q5),
    ("InjectableCrossQPolicy", CrossQ, "Pendulum-v1", ARCH),
    ("InjectableQRDQNPolicy", QRDQN, "CartPole-v1", Q5),
]
# slow here: the default suite round-trips these classes already, reached from "MlpPolicy" / "DrQV2Policy"
# (test_save_load_continue, test_dqn_injects_q_net_and_its_target, test_drqv2_ln_pi.py)
COVERED = {
    "InjectableTD3Policy",
    "InjectableSACPolicy",
    "InjectableActorCriticPolicy",
    "InjectableDQNPolicy",
    "InjectableDrQV2Policy",
}


def _env(env_id: str) -> gym.Env:
    if env_id == IMAGE:
        return FakeImageEnv(screen_height=24, screen_width=24, n_channels=3, discrete=False, channel_first=True)
    return gym.make(env_id)


def _batch(model, n: int = 16) -> tuple[th.Tensor, th.Tensor]:
    """Observations and actions sampled from the spaces (seeded): the inputs every network is compared on."""
    model.observation_space.seed(1)
    model.action_space.seed(1)
    obs = np.stack([model.observation_space.sample() for _ in range(n)])
    act = np.stack([model.action_space.sample() for _ in range(n)]).reshape(n, -1)
    return model.policy.obs_to_tensor(obs)[0], th.as_tensor(act, dtype=th.float32)


def _all_outputs(model, obs: th.Tensor, act: th.Tensor) -> dict[str, list[th.Tensor]]:
    """The outputs of every network with a head and of its target twin."""
    policy = model.policy
    adapter = adapter_for(policy)
    names = injection.head_networks(policy)
    names += [t for n in names if (t := adapter.targets(policy).get(n)) is not None]
    return {n: injection._network_outputs(policy, n, obs, act) for n in names}


@pytest.mark.parametrize(
    "name, algo, env_id, policy_kwargs",
    [pytest.param(*f, id=f[0], marks=[pytest.mark.slow] if f[0] in COVERED else []) for f in FAMILIES],
)
def test_each_injectable_class_round_trips_save_load(name, algo, env_id, policy_kwargs, tmp_path, recwarn):
    cls = getattr(sb3_plasticity, name)  # the contrib ones load lazily
    kwargs = dict(n_steps=8) if algo is A2C else dict(learning_starts=10, buffer_size=100, batch_size=8)
    model = algo(cls, _env(env_id), policy_kwargs=dict(policy_kwargs), seed=0, device="cpu", **kwargs)
    # inject at step 16, then train the new heads (and give Adam state to save) until step 32
    model.learn(32, callback=PlasticityInjectionCallback(inject_at=16))
    injected = injected_networks(model.policy)
    assert type(model.policy) is cls and model.policy_class is cls
    assert injected == dict.fromkeys(injection.head_networks(model.policy), 1)
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", device="cpu")
    assert type(loaded.policy) is cls and injected_networks(loaded.policy) == injected
    assert len(heads(loaded.policy)) == len(heads(model.policy)) > 0
    obs, act = _batch(model)
    before, after = _all_outputs(model, obs, act), _all_outputs(loaded, obs, act)
    assert before.keys() == after.keys()
    for network, outs in before.items():
        for a, b in zip(outs, after[network], strict=True):
            assert th.equal(a, b), network
    # the optimizers were rebuilt with the same parameter layout and carry the same Adam state
    optimizers = adapter_for(model).optimizers(model.policy), adapter_for(loaded).optimizers(loaded.policy)
    for opt, opt_loaded in zip(*optimizers, strict=True):
        state, state_loaded = opt.state_dict(), opt_loaded.state_dict()
        assert state["param_groups"] == state_loaded["param_groups"]
        assert state["state"].keys() == state_loaded["state"].keys()
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_policies_built_from_a_string_name_take_their_injectable_class():
    expected = {TD3Policy: InjectableTD3Policy, SACPolicy: InjectableSACPolicy, DQNPolicy: InjectableDQNPolicy,
                ActorCriticPolicy: InjectableActorCriticPolicy, DrQV2Policy: InjectableDrQV2Policy,
                LayerNormDrQV2Policy: sb3_plasticity.InjectableLayerNormDrQV2Policy,
                TQCPolicy: sb3_plasticity.InjectableTQCPolicy}  # fmt: skip
    for base, cls in expected.items():
        assert injectable_policies.injectable_class(base) is cls and injectable_policies.injectable_class(cls) is cls
    # every string name of every algorithm whose policies inject (DrQ-v2's masked policy is NE's: not automatic)
    for algo in (TD3, SAC, PPO, A2C, DQN, TQC, CrossQ, QRDQN, DrQV2):
        for alias, policy_cls in algo.policy_aliases.items():
            if alias == "MaskedDrQV2Policy":
                continue
            cls = injectable_policies.injectable_class(policy_cls)
            assert issubclass(cls, InjectablePolicy) and cls.__bases__[1] in policy_cls.__mro__, (algo, alias)


def test_cnn_and_multi_input_aliases_only_change_constructor_defaults():
    # why they may take the injectable class of the policy they derive from: save stores every constructor argument
    checked = 0
    for key, target in injectable_policies.AUTOMATIC.items():
        module, qualname = key.split(":")
        alias = getattr(importlib.import_module(module), qualname)
        injectable = injectable_policies._resolve(target)
        if injectable.__bases__[1] is alias:
            continue
        assert alias.__bases__ == (injectable.__bases__[1],), key
        assert {k for k in vars(alias) if not k.startswith("__")} <= {"_abc_impl"}, key  # only __init__ defined
        checked += 1
    assert checked == 12  # CnnPolicy and MultiInputPolicy of TD3, SAC, PPO/A2C, DQN, TQC and QR-DQN


class MyTD3Policy(TD3Policy):
    pass


class InjectableMyTD3Policy(InjectablePolicy, MyTD3Policy):
    pass


@pytest.mark.parametrize(
    "policy, message",
    [
        (BroNetTD3Policy, r"Pass sb3_plasticity\.InjectableBroNetTD3Policy as the policy instead of BroNetTD3Policy\."),
        (MultiHeadSACPolicy, r"Pass sb3_plasticity\.InjectableMultiHeadSACPolicy as the policy"),
        (MyTD3Policy, r"Define `class InjectableMyTD3Policy\(sb3_plasticity\.InjectablePolicy, MyTD3Policy\): pass`"),
        (MaskedTD3Policy, r"Define `class InjectableMaskedTD3Policy\(sb3_plasticity\.InjectablePolicy, MaskedTD3Policy\)"),
    ],
)
def test_policy_that_did_not_opt_in_is_refused_before_any_change(policy, message):
    algo = SAC if policy is MultiHeadSACPolicy else TD3
    env = gym.make(CONTINUAL) if policy is MultiHeadSACPolicy else "Pendulum-v1"
    kwargs = dict(width=16) if policy is BroNetTD3Policy else dict(net_arch=[16, 8])
    model = algo(policy, env, policy_kwargs=kwargs, buffer_size=100, seed=0, device="cpu")
    with pytest.raises(NotInjectablePolicyError, match=message):
        model.learn(32, callback=PlasticityInjectionCallback(inject_at=10))
    assert model.num_timesteps == 0  # refused at learn() start
    with pytest.raises(NotInjectablePolicyError, match="it is not an InjectablePolicy"):
        inject_heads(model, "critic")
    assert type(model.policy) is policy and not heads(model.policy) and injected_networks(model.policy) == {}


def test_a_policy_made_injectable_by_the_recipe_loads(tmp_path):
    model = TD3(InjectableMyTD3Policy, "Pendulum-v1", policy_kwargs=dict(ARCH), buffer_size=100, seed=0, device="cpu")
    obs, act = observations(model, 8)
    inject_heads(model, "critic")
    assert type(model.policy) is InjectableMyTD3Policy and model.policy_class is InjectableMyTD3Policy
    with th.no_grad():
        before = th.cat(model.critic(obs, act), dim=1)
    model.save(tmp_path / "mine")
    loaded = TD3.load(tmp_path / "mine", device="cpu")
    assert type(loaded.policy) is InjectableMyTD3Policy and isinstance(loaded.critic.qf1[4], InjectedHead)
    with th.no_grad():
        assert th.equal(th.cat(loaded.critic(obs, act), dim=1), before)


# ----------------------------------------------------------------------------------------------------
# Models saved before the opt-in classes (with a generated class)
# ----------------------------------------------------------------------------------------------------
def _old_name(base_key: str) -> str:
    # how a generated class was named: sb3_plasticity.methods.injection.InjectionPolicy_<base32 of "module:qualname">
    return "InjectionPolicy_" + base64.b32encode(base_key.encode()).decode().rstrip("=")


def _save_as_before_opt_in(path, base_key: str, monkeypatch) -> bytes:
    """Rewrite the policy class of a saved model as it was pickled when the class was generated: a reference to
    ``sb3_plasticity.methods.injection.InjectionPolicy_<...>``; returns the pickle."""
    name = _old_name(base_key)
    generated = type(name, (), {"__module__": injection.__name__, "__qualname__": name})
    with monkeypatch.context() as m:
        m.setattr(injection, name, generated, raising=False)  # pickle stores a class its module has by reference
        pickled = cloudpickle.dumps(generated)
    with zipfile.ZipFile(path) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    data = json.loads(files["data"])
    data["policy_class"] = {":type:": "<class 'abc.ABCMeta'>", ":serialized:": base64.b64encode(pickled).decode()}
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for n, content in files.items():
            archive.writestr(n, content)
    return pickled


@pytest.mark.parametrize(
    "policy, base_key",
    [
        ("MlpPolicy", "stable_baselines3.td3.policies:TD3Policy"),
        (InjectableBroNetTD3Policy, "sb3_plasticity.networks:BroNetTD3Policy"),
    ],
)
def test_models_saved_with_a_generated_class_still_load(policy, base_key, tmp_path, monkeypatch):
    kwargs = dict(width=16) if policy is InjectableBroNetTD3Policy else dict(ARCH)
    model = TD3(policy, "Pendulum-v1", policy_kwargs=kwargs, buffer_size=100, seed=0, device="cpu")
    inject_heads(model, "critic")
    model.save(tmp_path / "old.zip")
    pickled = _save_as_before_opt_in(tmp_path / "old.zip", base_key, monkeypatch)
    assert _old_name(base_key).encode() in pickled and b"sb3_plasticity.methods.injection" in pickled
    loaded = TD3.load(tmp_path / "old.zip", device="cpu")
    assert type(loaded.policy) is type(model.policy) and injected_networks(loaded.policy) == {"critic": 1}
    obs, act = observations(model, 8)
    with th.no_grad():
        assert th.equal(th.cat(loaded.critic(obs, act), dim=1), th.cat(model.critic(obs, act), dim=1))


def test_a_model_saved_with_a_generated_class_of_a_users_policy_loads_with_custom_objects(tmp_path, monkeypatch):
    model = TD3(InjectableMyTD3Policy, "Pendulum-v1", policy_kwargs=dict(ARCH), buffer_size=100, seed=0, device="cpu")
    inject_heads(model, "actor")
    model.save(tmp_path / "old.zip")
    _save_as_before_opt_in(tmp_path / "old.zip", f"{__name__}:MyTD3Policy", monkeypatch)
    with pytest.warns(UserWarning, match="custom_objects"), pytest.raises(KeyError):
        TD3.load(tmp_path / "old.zip", device="cpu")  # SB3 cannot unpickle the class, says so, then misses it
    loaded = TD3.load(tmp_path / "old.zip", device="cpu", custom_objects={"policy_class": InjectableMyTD3Policy})
    assert type(loaded.policy) is InjectableMyTD3Policy and isinstance(loaded.actor.mu[4], InjectedHead)


def test_old_generated_names_are_an_explicit_table():
    for base_key in {**injectable_policies.AUTOMATIC, **injectable_policies.NAMED}:
        assert _old_name(base_key) in injectable_policies.LEGACY
        cls = getattr(injection, _old_name(base_key))
        module, qualname = base_key.split(":")
        base = getattr(importlib.import_module(module), qualname)
        if base_key in injectable_policies.NAMED:
            assert cls.__bases__ == (InjectablePolicy, base), base_key
        else:
            assert cls is injectable_policies.injectable_class(base), base_key
    old_crossq = _old_name("sb3_contrib.crossq.policies:CrossQPolicy")
    assert getattr(injection, old_crossq) is sb3_plasticity.InjectableCrossQPolicy
    # a generated class of a user's own policy is not in the table: the error says how to load such a model
    with pytest.raises(AttributeError, match=r"\(my_module:MyPolicy\).*custom_objects=\{'policy_class'"):
        getattr(injection, _old_name("my_module:MyPolicy"))
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        injection.NoSuchName  # noqa: B018
    assert not hasattr(injection, "injectable_policy_class")  # the deprecated generator is gone


class _UnknownPolicy(nn.Module):
    pass


def test_unsupported_policy():
    with pytest.raises(ValueError, match=r"_UnknownPolicy.*not a policy sb3_plasticity understands"):
        injection.head_networks(_UnknownPolicy())


def test_dqn_injects_q_net_and_its_target(tmp_path):
    model = DQN("MlpPolicy", "CartPole-v1", learning_starts=10, buffer_size=500, seed=0, policy_kwargs=dict(ARCH))
    rec = recorded(model)
    model.learn(60, callback=PlasticityInjectionCallback(inject_at=40))
    assert injection.head_networks(model.policy) == ["q_net"]
    assert isinstance(model.policy.q_net.q_net[4], InjectedHead)
    assert isinstance(model.policy.q_net_target.q_net[4], InjectedHead)
    assert rec.values("plasticity/injection/q_net/trainable_parameters") == [(40, 18.0)]  # 8 * 2 + 2
    ((_, change),) = rec.values("plasticity/injection/q_net/output_change")
    assert change < 1e-6
    model.save(tmp_path / "dqn")
    loaded = DQN.load(tmp_path / "dqn", device="cpu")
    assert isinstance(loaded.policy.q_net.q_net[4], InjectedHead)


def test_later_injection_must_keep_head_layers():
    model = make(TD3)
    inject_heads(model.policy, "critic", 1)
    with pytest.raises(ValueError, match="injected with head_layers=1"):
        inject_heads(model.policy, "critic", 2)
    clone = copy.deepcopy(model.policy)  # deepcopy keeps the injected class and structure
    assert isinstance(clone.critic.qf1[4], InjectedHead)
