"""LayerNorm, BRO-net and multi-head policies: discovery, training with the monitor and resets, heads, save/load, errors."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from helpers import image_env, logged_networks, read_scalars
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.torch_layers import NatureCNN
from torch import nn

from sb3_plasticity import (
    BroNetSACPolicy,
    BroNetTD3Policy,
    GraMaResetCallback,
    LayerNormActorCriticPolicy,
    LayerNormSACPolicy,
    LayerNormTD3Policy,
    MultiHeadSACPolicy,
    MultiHeadTD3Policy,
    PlasticityMonitorCallback,
    ReDoCallback,
    discover,
)

WIDTH = 16
CAP = 0.25  # max_reset_fraction: with tau=1e9 every neuron is flagged and exactly floor(CAP * WIDTH) are reset
OFF_POLICY = dict(learning_starts=100, buffer_size=1000, batch_size=32)


class TaskPendulum(gym.Env):
    """Pendulum-v1 with a one-hot task id appended (the multi-head observation contract). The task changes every
    ``switch_every`` episodes of ``episode_steps`` steps; odd tasks flip the action's sign, so heads must differ."""

    def __init__(self, n_tasks: int = 2, episode_steps: int = 50, switch_every: int = 1) -> None:
        self.pendulum = PendulumEnv()
        self.n_tasks, self.episode_steps, self.switch_every = n_tasks, episode_steps, switch_every
        inner = self.pendulum.observation_space
        self.observation_space = spaces.Box(
            np.concatenate([inner.low, np.zeros(n_tasks)]).astype(np.float32),
            np.concatenate([inner.high, np.ones(n_tasks)]).astype(np.float32),
        )
        self.action_space = self.pendulum.action_space
        self.episodes, self.task, self.t = -1, 0, 0

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, np.eye(self.n_tasks)[self.task]]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episodes += 1
        self.task = (self.episodes // self.switch_every) % self.n_tasks
        self.t = 0
        obs, _ = self.pendulum.reset(seed=seed)
        return self._obs(obs), {"task_id": self.task}

    def step(self, action):
        sign = -1.0 if self.task % 2 else 1.0
        obs, reward, terminated, _, _ = self.pendulum.step(sign * np.asarray(action))
        self.t += 1
        return self._obs(obs), float(reward), terminated, self.t >= self.episode_steps, {"task_id": self.task}


def make(algo, policy, env, tmp_path=None, policy_kwargs=None, **kwargs):
    kw = dict(OFF_POLICY) if algo in (TD3, SAC) else {}
    kw.update(kwargs)
    log = dict(tensorboard_log=str(tmp_path)) if tmp_path is not None else {}
    return algo(policy, env, policy_kwargs=copy.deepcopy(policy_kwargs or {}), seed=0, device="cpu", **log, **kw)


LN_KW = dict(net_arch=[WIDTH, WIDTH])
BRO_KW = dict(width=WIDTH)
MH_KW = dict(net_arch=[WIDTH, WIDTH])

# (algorithm, policy, env, policy_kwargs, {network: neuron group names})
BRO_TD3_ACTOR = {"mu.stem.0", "mu.blocks.0.net.0"}
BRO_CRITIC = {f"qf{i}.{layer}" for i in (0, 1) for layer in ("stem.0", "blocks.0.net.0", "blocks.1.net.0")}
BRO_SAC_ACTOR = {"latent_pi.stem.0", "latent_pi.blocks.0.net.0"}
LN_CRITIC = {"qf0.0", "qf0.3", "qf1.0", "qf1.3"}
MH_CRITIC = {"qf0.trunk.0", "qf0.trunk.2", "qf1.trunk.0", "qf1.trunk.2"}


def td3_nets(actor: set[str], critic: set[str]) -> dict[str, set[str]]:
    return {"actor": actor, "critic": critic, "actor_target": actor, "critic_target": critic}


def sac_nets(actor: set[str], critic: set[str]) -> dict[str, set[str]]:
    return {"actor": actor, "critic": critic, "critic_target": critic}


CASES = [
    pytest.param(TD3, LayerNormTD3Policy, "Pendulum-v1", LN_KW, td3_nets({"mu.0", "mu.3"}, LN_CRITIC), id="ln-td3"),
    pytest.param(
        SAC, LayerNormSACPolicy, "Pendulum-v1", LN_KW, sac_nets({"latent_pi.0", "latent_pi.3"}, LN_CRITIC), id="ln-sac"
    ),
    pytest.param(TD3, BroNetTD3Policy, "Pendulum-v1", BRO_KW, td3_nets(BRO_TD3_ACTOR, BRO_CRITIC), id="bro-td3"),
    pytest.param(SAC, BroNetSACPolicy, "Pendulum-v1", BRO_KW, sac_nets(BRO_SAC_ACTOR, BRO_CRITIC), id="bro-sac"),
    pytest.param(TD3, MultiHeadTD3Policy, TaskPendulum, MH_KW, td3_nets({"mu.trunk.0", "mu.trunk.2"}, MH_CRITIC), id="mh-td3"),
    pytest.param(
        SAC, MultiHeadSACPolicy, TaskPendulum, MH_KW, sac_nets({"latent_pi.0", "latent_pi.2"}, MH_CRITIC), id="mh-sac"
    ),
]


def env_of(env):
    return env() if isinstance(env, type) else gym.make(env)


def groups_by_network(model) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for g in discover(model).groups:
        out.setdefault(g.network, set()).add(g.name)
    return out


# ----------------------------------------------------------------------------------------------------
# Training with the monitor and ReDo
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo, policy, env, policy_kwargs, networks", CASES)
def test_trains_with_monitor_and_redo(tmp_path, algo, policy, env, policy_kwargs, networks):
    model = make(algo, policy, env_of(env), tmp_path, policy_kwargs)
    assert groups_by_network(model) == networks
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    monitor = PlasticityMonitorCallback(log_freq=100)
    redo = ReDoCallback(reset_freq=100, tau=1e9, max_reset_fraction=CAP)
    model.learn(300, callback=[monitor, redo])
    scalars = read_scalars(tmp_path)
    assert logged_networks({k: v for k, v in scalars.items() if not k.startswith("plasticity/redo/")}) == set(networks)
    for network, layers in networks.items():
        values = [v for _, v in scalars[f"plasticity/{network}/dormant_ratio"]]
        assert len(values) >= 2 and all(0.0 <= v <= 1.0 for v in values)
        for layer in layers:
            assert f"plasticity/{network}/{layer}/active_ratio" in scalars
            if not network.endswith("_target"):
                counts = [v for _, v in scalars[f"plasticity/redo/{network}/{layer}/reset_count"]]
                assert counts == [math.floor(CAP * WIDTH)] * redo.n_events, (network, layer)
    assert redo.n_events >= 2
    after = model.policy.state_dict()
    assert all(not th.equal(before[k], after[k]) for k in before if k.endswith(".weight"))


def test_layer_norm_ppo_trains_with_the_monitor(tmp_path):
    model = PPO(
        LayerNormActorCriticPolicy, "CartPole-v1", n_steps=64, batch_size=32, n_epochs=2, seed=0, device="cpu",
        policy_kwargs=dict(net_arch=[WIDTH, WIDTH]), tensorboard_log=str(tmp_path),
    )  # fmt: skip
    branches = {net: [m for m in getattr(model.policy.mlp_extractor, net)] for net in ("policy_net", "value_net")}
    for modules in branches.values():
        assert [type(m) for m in modules] == [nn.Linear, nn.LayerNorm, nn.Tanh] * 2
    model.learn(256, callback=PlasticityMonitorCallback(log_freq=64))
    scalars = read_scalars(tmp_path)
    assert logged_networks(scalars) == {"policy", "value"}
    for net, branch in (("policy", "policy_net"), ("value", "value_net")):
        for layer in (0, 3):
            values = [v for _, v in scalars[f"plasticity/{net}/mlp_extractor.{branch}.{layer}/active_ratio"]]
            assert len(values) >= 2 and all(0.0 <= v <= 1.0 for v in values)


def test_regrama_resets_bro_net(tmp_path):
    model = make(SAC, BroNetSACPolicy, "Pendulum-v1", tmp_path, BRO_KW)
    cb = GraMaResetCallback(reset_freq=100, tau=1e9, max_reset_fraction=CAP)
    model.learn(300, callback=cb)
    scalars = read_scalars(tmp_path)
    assert cb.n_events >= 2
    for network, layers in sac_nets(BRO_SAC_ACTOR, BRO_CRITIC).items():
        if network.endswith("_target"):
            continue
        for layer in layers:
            assert scalars[f"plasticity/regrama/{network}/{layer}/reset_count"][-1][1] == math.floor(CAP * WIDTH)


# ----------------------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------------------
ACTIVATIONS = [nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.SiLU]
FAMILIES = {"builtin": ("MlpPolicy", LN_KW), "layer_norm": (LayerNormTD3Policy, LN_KW), "bro": (BroNetTD3Policy, BRO_KW)}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("activation_fn", ACTIVATIONS, ids=lambda a: a.__name__)
def test_monitor_and_redo_run_with_each_activation(tmp_path, family, activation_fn):
    policy, kw = FAMILIES[family]
    model = make(TD3, policy, "Pendulum-v1", tmp_path, {**kw, "activation_fn": activation_fn}, learning_starts=50)
    groups = discover(model).groups
    assert groups and all(isinstance(g.output, activation_fn) for g in groups)
    assert all(isinstance(g.norm, nn.LayerNorm) for g in groups) == (family != "builtin")
    redo = ReDoCallback(reset_freq=50, tau=1e9, max_reset_fraction=CAP)
    model.learn(150, callback=[PlasticityMonitorCallback(log_freq=50), redo])
    scalars = read_scalars(tmp_path)
    assert redo.total_reset > 0
    for network in ("actor", "critic", "critic_target"):
        values = [v for _, v in scalars[f"plasticity/{network}/active_ratio"]]
        assert values and all(0.0 <= v <= 1.0 for v in values)
        assert all(math.isfinite(v) for _, v in scalars[f"plasticity/{network}/activation_norm"])


# ----------------------------------------------------------------------------------------------------
# Discovery
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "algo, policy, env",
    [
        (TD3, LayerNormTD3Policy, "Pendulum-v1"),
        (SAC, LayerNormSACPolicy, "Pendulum-v1"),
        (PPO, LayerNormActorCriticPolicy, "CartPole-v1"),
    ],
)
def test_layer_norm_groups_have_their_norm_and_twins(algo, policy, env):
    model = make(algo, policy, env, policy_kwargs=dict(net_arch=[WIDTH, 8]))
    neurons = discover(model)
    assert len(neurons.groups) == {TD3: 12, SAC: 10, PPO: 4}[algo]
    for g in neurons.groups:
        assert isinstance(g.norm, nn.LayerNorm) and g.norm.normalized_shape == (g.n_neurons,)
        assert g.output is not g.norm  # the activation follows the norm
        if g.network in ("actor", "critic"):
            has_target = g.network + "_target" in neurons.networks  # SAC has no actor target
            assert (g.twin is not None) == has_target
            assert not has_target or (isinstance(g.twin.norm, nn.LayerNorm) and g.twin.norm is not g.norm)
    # the output layers have no norm; the targets are exact copies
    if algo is TD3:
        assert [type(m) for m in model.actor.mu] == [nn.Linear, nn.LayerNorm, nn.ReLU] * 2 + [nn.Linear, nn.Tanh]
        assert [type(m) for m in model.critic.qf0] == [nn.Linear, nn.LayerNorm, nn.ReLU] * 2 + [nn.Linear]
        for k, v in model.actor.state_dict().items():
            assert th.equal(v, model.actor_target.state_dict()[k])
    if algo is SAC:
        assert model.critic.q_networks[0] is model.critic.qf0  # converted in place
        assert any(isinstance(m, nn.LayerNorm) for m in model.critic_target.qf1)


def test_bro_net_groups_consumers_layers_and_twins():
    model = make(
        TD3, BroNetTD3Policy, "Pendulum-v1", policy_kwargs=dict(width=8, actor_blocks=3, critic_blocks=4, n_critics=3)
    )
    neurons = discover(model)
    by_key = {g.key: g for g in neurons.groups}
    assert set(neurons.networks) == {"actor", "critic", "actor_target", "critic_target"}
    assert len(neurons.networks["actor"]) == 1 + 3 and len(neurons.networks["critic"]) == 3 * (1 + 4)
    stem = by_key["critic/qf2.stem.0"]
    # the stem feeds the residual stream: every block's first layer and the Q head read it
    assert [c.name for c in stem.consumers] == [f"qf2.blocks.{b}.net.0" for b in range(4)] + ["qf2.head"]
    assert stem.norm is model.critic.qf2.stem[1] and stem.output is model.critic.qf2.stem[2]
    block = by_key["critic/qf2.blocks.3.net.0"]
    net = model.critic.qf2.blocks[3].net
    assert block.producer is net[0] and block.norm is net[1] and block.output is net[2]
    assert [c.module for c in block.consumers] == [net[3]]  # the block's second layer ends it: not a neuron group
    assert "critic/qf2.blocks.3.net.3" not in by_key
    for key, g in by_key.items():
        if not g.is_target:
            assert g.twin is by_key[key.replace(g.network, g.network + "_target", 1)]
    # every layer, with its norm, in data-flow order (whole-layer methods: Reset, Shrink & Perturb)
    layers = neurons.layers("actor")
    assert [layer.name for layer in layers] == ["mu.stem.0"] + [f"mu.blocks.{b}.net.{i}" for b in range(3) for i in (0, 3)] + [
        "mu.head"
    ]
    assert all(isinstance(layer.norm, nn.LayerNorm) for layer in layers[:-1]) and layers[-1].norm is None
    assert set(neurons.network_modules) == set(neurons.networks)


def test_bro_net_sac_heads_and_gsde():
    model = make(SAC, BroNetSACPolicy, "Pendulum-v1", policy_kwargs=dict(width=8))
    stem = next(g for g in discover(model).groups if g.key == "actor/latent_pi.stem.0")
    assert [c.name for c in stem.consumers] == ["latent_pi.blocks.0.net.0", "mu", "log_std"]
    assert model.actor.mu.in_features == 8
    sde = make(SAC, BroNetSACPolicy, "Pendulum-v1", policy_kwargs=dict(width=8), use_sde=True)
    stem = next(g for g in discover(sde).groups if g.key == "actor/latent_pi.stem.0")
    # gSDE: mu is Sequential(Linear, Hardtanh) and log_std a Parameter, not a layer
    assert [c.name for c in stem.consumers] == ["latent_pi.blocks.0.net.0", "mu.0"]
    sde.learn(110)


@pytest.mark.parametrize("share", [False, True])
def test_bro_net_behind_a_cnn_extractor(share):
    model = SAC(
        BroNetSACPolicy, image_env(discrete=False), buffer_size=100, seed=0, device="cpu",
        policy_kwargs=dict(width=8, features_extractor_class=NatureCNN, features_extractor_kwargs=dict(features_dim=16),
                           share_features_extractor=share),
    )  # fmt: skip
    neurons = discover(model)
    by_key = {g.key: g for g in neurons.groups}
    # the extractor's last layer feeds the stems; a shared extractor is a network of its own, as in the built-in
    # discovery, and critic_target keeps its private copy
    if share:
        linear = by_key["features/features_extractor.linear.0"]
        assert [c.name for c in linear.consumers] == ["latent_pi.stem.0", "qf0.stem.0", "qf1.stem.0"]
        assert linear.twin is by_key["critic_target/features_extractor.linear.0"]
        assert neurons.network_modules["features"] == [model.actor.features_extractor]
        assert not any(isinstance(m, NatureCNN) for m in neurons.network_modules["actor"] + neurons.network_modules["critic"])
    else:
        assert [c.name for c in by_key["actor/features_extractor.linear.0"].consumers] == ["latent_pi.stem.0"]
        linear = by_key["critic/features_extractor.linear.0"]
        assert [c.name for c in linear.consumers] == ["qf0.stem.0", "qf1.stem.0"]
        assert linear.twin is by_key["critic_target/features_extractor.linear.0"]


def test_bro_net_reset_event_surgery(tmp_path):
    model = make(TD3, BroNetTD3Policy, "Pendulum-v1", tmp_path, dict(width=WIDTH, critic_blocks=2))
    model.learn(150)
    cb = ReDoCallback(tau=1e9, max_reset_fraction=CAP, networks="critic")
    cb.init_callback(model)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    cb.run_event()
    after = model.policy.state_dict()
    n = math.floor(CAP * WIDTH)
    for q in ("qf0", "qf1"):
        p = f"critic.{q}"
        # which neurons were reset: their incoming bias was redrawn
        stem = after[f"{p}.stem.0.bias"] != before[f"{p}.stem.0.bias"]
        hidden = [after[f"{p}.blocks.{b}.net.0.bias"] != before[f"{p}.blocks.{b}.net.0.bias"] for b in (0, 1)]
        assert [int(stem.sum()), *(int(h.sum()) for h in hidden)] == [n, n, n]
        for prefix, idx in [(f"{p}.stem", stem), *((f"{p}.blocks.{b}.net", hidden[b]) for b in (0, 1))]:
            assert after[f"{prefix}.1.weight"][idx].eq(1).all() and after[f"{prefix}.1.bias"][idx].eq(0).all()
        # the stem's outgoing columns are zeroed in every reader of the residual stream (except in the rows of the
        # blocks' reset neurons, whose incoming weights were redrawn after that)
        for reader, redrawn in ((f"{p}.blocks.0.net.0", hidden[0]), (f"{p}.blocks.1.net.0", hidden[1]), (f"{p}.head", None)):
            w = after[f"{reader}.weight"] if redrawn is None else after[f"{reader}.weight"][~redrawn]
            assert not w[:, stem].any(), reader
        # each block's hidden neurons are read by its second layer only
        for b in (0, 1):
            w = f"{p}.blocks.{b}.net.3.weight"
            assert not after[w][:, hidden[b]].any()
            assert th.equal(after[w][~hidden[b]][:, ~hidden[b]], before[w][~hidden[b]][:, ~hidden[b]])
            assert th.equal(after[f"{p}.blocks.{b}.net.4.weight"], before[f"{p}.blocks.{b}.net.4.weight"])
    for key in before:
        if key.startswith("critic."):  # the twin in critic_target got exactly the changed entries
            diff = after[key] != before[key]
            target = "critic_target." + key.split(".", 1)[1]
            assert th.equal(after[target][diff], after[key][diff]), key
        elif key.startswith("actor"):
            assert th.equal(after[key], before[key]), key


# ----------------------------------------------------------------------------------------------------
# Multi-head
# ----------------------------------------------------------------------------------------------------
def task_batch(tasks: list[int], n_tasks: int = 2) -> th.Tensor:
    """Random Pendulum observations with the given task ids."""
    space = TaskPendulum(n_tasks).observation_space
    obs = th.as_tensor(np.stack([space.sample() for _ in tasks]))
    obs[:, -n_tasks:] = th.eye(n_tasks)[tasks]
    return obs


def test_multi_head_td3_selects_the_task_head():
    model = make(TD3, MultiHeadTD3Policy, TaskPendulum(), policy_kwargs=MH_KW)
    assert model.policy.n_tasks == 2
    mu = model.actor.mu
    assert mu.trunk[0].in_features == 3  # the trunk does not see the one-hot
    obs = task_batch([0, 1, 1, 0])
    with th.no_grad():
        latent = mu.trunk(obs[:, :3])
        expected = th.stack([th.tanh(mu.heads[t](latent[i])) for i, t in enumerate([0, 1, 1, 0])])
        assert th.allclose(model.actor(obs), expected)
        actions = th.zeros(4, 1)
        q0 = model.critic.qf0
        expected_q = th.stack([q0.heads[t](q0.trunk(th.cat([obs[i, :3], actions[i]]))) for i, t in enumerate([0, 1, 1, 0])])
        assert th.allclose(model.critic(obs, actions)[0], expected_q)
    # heads are consumers of the trunk's last layer, never groups
    neurons = discover(model)
    last = next(g for g in neurons.groups if g.key == "critic/qf1.trunk.2")
    assert [c.name for c in last.consumers] == ["qf1.heads.0", "qf1.heads.1"]
    assert not any("heads" in g.name for g in neurons.groups)
    assert last.twin is not None and last.twin.network == "critic_target"


@pytest.mark.parametrize("task", [0, 1])
def test_multi_head_gradients_reach_only_the_active_head(task):
    for algo, policy in ((TD3, MultiHeadTD3Policy), (SAC, MultiHeadSACPolicy)):
        model = make(algo, policy, TaskPendulum(), policy_kwargs=MH_KW)
        obs = task_batch([task] * 8)
        model.policy.zero_grad(set_to_none=True)
        actions = model.actor(obs) if algo is TD3 else model.actor.action_log_prob(obs)[0]
        loss = sum(q.sum() for q in model.critic(obs, actions))
        loss.backward()
        head_sets = [model.critic.qf0.heads, model.critic.qf1.heads]
        head_sets += [model.actor.mu.heads] if algo is TD3 else [model.actor.mu, model.actor.log_std]
        for heads in head_sets:
            assert heads[task].weight.grad is not None and heads[task].weight.grad.abs().sum() > 0
            assert heads[1 - task].weight.grad is None
        trunk = model.actor.mu.trunk if algo is TD3 else model.actor.latent_pi
        assert trunk[0].weight.grad is not None


def test_multi_head_sac_selects_the_task_head_and_can_see_the_task():
    model = make(SAC, MultiHeadSACPolicy, TaskPendulum(n_tasks=3), policy_kwargs=dict(net_arch=[8], task_in_trunk=True))
    actor = model.actor
    assert model.policy.n_tasks == 3 and actor.latent_pi[0].in_features == 3 + 3
    obs = task_batch([2, 0], n_tasks=3)
    mean, _, _ = actor.get_action_dist_params(obs)
    with th.no_grad():
        latent = actor.latent_pi(obs)
        assert th.allclose(mean[0], actor.mu[2](latent[0])) and th.allclose(mean[1], actor.mu[0](latent[1]))
    assert model.critic.qf0.trunk[0].in_features == 3 + 3 + 1


def test_multi_head_without_task_id_raises():
    with pytest.raises(ValueError, match="no task id"):
        TD3(MultiHeadTD3Policy, "Pendulum-v1", device="cpu")
    with pytest.raises(ValueError, match="n_tasks=3: the last 3 observation dims must be a one-hot"):
        TD3(MultiHeadTD3Policy, TaskPendulum(), policy_kwargs=dict(n_tasks=3), device="cpu")


@pytest.mark.parametrize(
    "algo, policy, policy_kwargs, kwargs, pattern",
    [
        (TD3, BroNetTD3Policy, dict(actor_blocks=0), {}, r"actor_blocks must be an integer in \[1, 4\], got 0"),
        (TD3, BroNetTD3Policy, dict(critic_blocks=5), {}, r"critic_blocks must be an integer in \[1, 4\], got 5"),
        (SAC, BroNetSACPolicy, dict(actor_blocks=2.0), {}, r"actor_blocks must be an integer .* got 2.0"),
        (SAC, BroNetSACPolicy, dict(critic_blocks=True), {}, r"critic_blocks must be an integer .* got True"),
        (SAC, BroNetSACPolicy, dict(width=0), {}, r"width must be an integer >= 1, got 0"),
        (TD3, BroNetTD3Policy, dict(net_arch=[64, 64]), {}, r"net_arch=\[64, 64\]: BRO-net policies are sized by width"),
        (TD3, MultiHeadTD3Policy, dict(n_tasks=0), {}, r"n_tasks must be an integer in \[1, 5\], got 0"),
        (TD3, MultiHeadTD3Policy, dict(task_in_trunk="yes"), {}, "task_in_trunk must be True or False"),
        (TD3, MultiHeadTD3Policy, dict(net_arch=[]), {}, "need a shared trunk: the actor's net_arch is empty"),
        (SAC, MultiHeadSACPolicy, dict(net_arch=dict(pi=[8], qf=[])), {}, "the critic's net_arch is empty"),
        (SAC, MultiHeadSACPolicy, dict(features_extractor_class=NatureCNN), {}, "need the FlattenExtractor"),
        (SAC, MultiHeadSACPolicy, {}, dict(use_sde=True), "use_sde=True: multi-head SAC has no gSDE"),
    ],
)
def test_bad_policy_kwargs_raise(algo, policy, policy_kwargs, kwargs, pattern):
    env = TaskPendulum() if policy in (MultiHeadTD3Policy, MultiHeadSACPolicy) else "Pendulum-v1"
    with pytest.raises(ValueError, match=pattern):
        algo(policy, env, policy_kwargs=policy_kwargs, device="cpu", **kwargs)


# ----------------------------------------------------------------------------------------------------
# Save and load
# ----------------------------------------------------------------------------------------------------
SAVE_CASES = [
    pytest.param(TD3, LayerNormTD3Policy, "Pendulum-v1", LN_KW, id="ln-td3"),
    pytest.param(SAC, LayerNormSACPolicy, "Pendulum-v1", LN_KW, id="ln-sac"),
    pytest.param(PPO, LayerNormActorCriticPolicy, "CartPole-v1", LN_KW, id="ln-ppo"),
    pytest.param(TD3, BroNetTD3Policy, "Pendulum-v1", dict(width=8, actor_blocks=2, critic_blocks=3), id="bro-td3"),
    pytest.param(SAC, BroNetSACPolicy, "Pendulum-v1", dict(width=8, actor_blocks=4, critic_blocks=1), id="bro-sac"),
    pytest.param(TD3, MultiHeadTD3Policy, TaskPendulum, dict(net_arch=[8], task_in_trunk=True), id="mh-td3"),
    pytest.param(SAC, MultiHeadSACPolicy, TaskPendulum, dict(net_arch=[8], n_tasks=2), id="mh-sac"),
]


@pytest.mark.parametrize("algo, policy, env, policy_kwargs", SAVE_CASES)
def test_save_load_round_trip(tmp_path, algo, policy, env, policy_kwargs):
    model = make(algo, policy, env_of(env), policy_kwargs=policy_kwargs)
    with th.no_grad():
        for p in model.policy.parameters():
            p.add_(th.randn_like(p) * 0.1)  # not the init: norms and heads must come back as saved
    model.save(tmp_path / "model.zip")
    loaded = algo.load(tmp_path / "model.zip", env=env_of(env), device="cpu")
    assert type(loaded.policy) is policy
    state, loaded_state = model.policy.state_dict(), loaded.policy.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(th.equal(state[k], loaded_state[k]) for k in state)
    obs = np.stack([loaded.observation_space.sample() for _ in range(4)])
    if policy in (MultiHeadTD3Policy, MultiHeadSACPolicy):
        obs[:, -2:] = np.eye(2)[[0, 1, 1, 0]]
    assert np.array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    assert len(discover(loaded).groups) == len(discover(model).groups)
    # the policy alone, through its constructor parameters
    model.policy.save(tmp_path / "policy.pth")
    alone = policy.load(tmp_path / "policy.pth", device="cpu")
    assert np.array_equal(model.predict(obs, deterministic=True)[0], alone.predict(obs, deterministic=True)[0])


def test_bronet_blocks_sets_actor_and_critic_depth_together():
    from stable_baselines3 import SAC

    from sb3_plasticity import BroNetSACPolicy

    model = SAC(BroNetSACPolicy, "Pendulum-v1", policy_kwargs=dict(width=8, blocks=3), device="cpu")
    assert (model.policy.actor_blocks, model.policy.critic_blocks) == (3, 3)
    with pytest.raises(ValueError, match="blocks=2 sets actor_blocks and critic_blocks together"):
        SAC(BroNetSACPolicy, "Pendulum-v1", policy_kwargs=dict(width=8, blocks=2, critic_blocks=4), device="cpu")
