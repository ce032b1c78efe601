"""Capture records the algorithm's own training pass (the right one), nothing else, and leaves no hooks behind."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.torch_layers import NatureCNN

from sb3_plasticity.capture import Capture, probe
from sb3_plasticity.neurons import discover


def _recording_sampler(model):
    """Wrap the replay buffer's sample() to keep the batches the algorithm trains on."""
    batches = []
    original = model.replay_buffer.sample

    def sample(*args, **kwargs):
        data = original(*args, **kwargs)
        batches.append(data)
        return data

    model.replay_buffer.sample = sample
    return batches


def _no_hooks_left(neurons) -> bool:
    modules_clean = all(not g.output._forward_hooks and not g.producer._forward_hooks for g in neurons.groups)
    return modules_clean and all(not opt._optimizer_step_pre_hooks for opt in neurons.optimizers)


@pytest.mark.parametrize("algo", [TD3, SAC])
def test_off_policy_critic_and_actor_are_recorded_on_their_own_loss_passes(algo):
    model = algo("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), learning_starts=100, device="cpu")
    model.learn(100)  # fills the buffer, no training yet
    neurons = discover(model)
    capture = Capture(neurons)
    actor0, critic0 = copy.deepcopy(model.actor), copy.deepcopy(model.critic)
    batches = _recording_sampler(model)
    capture.arm()
    model.train(gradient_steps=2, batch_size=32)  # TD3 updates its actor on the 2nd step (policy_delay 2)
    assert capture.complete
    capture.disarm()
    assert _no_hooks_left(neurons)

    # critic: the critic-loss forward on the first batch's replay actions (not the actor-loss forward
    # on the actor's actions, which comes later through qf0)
    b0 = batches[0]
    x = th.cat([b0.observations, b0.actions], dim=1)
    for q in ("qf0", "qf1"):
        expected = critic0.get_submodule(q)[:2](x)
        group = next(g for g in neurons.networks["critic"] if g.name == f"{q}.0")
        assert th.allclose(capture.records[group].activation, expected.detach())
        assert capture.records[group].grad.shape == (32, 16)
        assert capture.records[group].grad.abs().sum() > 0
    # actor: the forward of its own loss pass, with the weights it had then
    actor_batch = batches[1] if algo is TD3 else batches[0]
    first = neurons.networks["actor"][0]
    body = actor0.mu if algo is TD3 else actor0.latent_pi
    expected = body[:2](actor_batch.observations)
    assert th.allclose(capture.records[first].activation, expected.detach())
    assert capture.records[first].grad is not None
    # targets: recorded (TD-target pass), activations only
    target = neurons.networks["critic_target"][0]
    assert capture.records[target].activation.shape == (32, 16) and capture.records[target].grad is None
    assert set(capture.network_gradients) == {"actor", "critic"}
    assert capture.network_gradients["critic"].total_sq > 0


def test_rollout_and_predict_forwards_are_not_recorded():
    model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), learning_starts=1000, device="cpu")
    neurons = discover(model)
    capture = Capture(neurons)
    capture.arm()
    model.learn(50)  # rollouts only: actor forwards under no_grad
    for _ in range(3):
        model.predict(model.observation_space.sample())
    assert all(rec.activation is None for rec in capture.records.values())
    assert not capture.complete
    capture.disarm()
    assert _no_hooks_left(neurons)


def test_ppo_records_the_first_minibatch():
    model = PPO(
        "MlpPolicy", "CartPole-v1", n_steps=64, batch_size=16, n_epochs=2, policy_kwargs=dict(net_arch=[8]), device="cpu"
    )
    neurons = discover(model)
    capture = Capture(neurons)
    capture.arm()
    model.learn(64)
    assert capture.complete
    for group in neurons.groups:
        assert capture.records[group].activation.shape == (16, 8)
        assert capture.records[group].grad.shape == (16, 8)
    assert set(capture.network_gradients) == {"policy", "value"}
    capture.disarm()
    assert _no_hooks_left(neurons)


def test_probe_records_every_network_on_a_buffer_batch():
    model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8, 4]), learning_starts=1000, device="cpu")
    model.learn(40)
    neurons = discover(model)
    capture = Capture(neurons, gradients=False)
    probe(model, capture, batch_size=20)
    assert not capture.armed
    assert {g.key for g in neurons.groups} == {g.key for g, r in capture.records.items() if r.activation is not None}
    assert all(r.activation.shape[0] == 20 for r in capture.records.values())


def test_max_batch_bounds_what_is_kept():
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), learning_starts=50, batch_size=64, device="cpu")
    neurons = discover(model)
    capture = Capture(neurons, max_batch=10)
    capture.arm()
    model.learn(60)
    assert all(r.activation.shape[0] == 10 for r in capture.records.values() if r.activation is not None)


class _TinyImages(gym.Env):
    """36x36 RGB noise (NatureCNN's smallest input), 2-d actions: a SAC critic with its own CNN features extractor."""

    observation_space = spaces.Box(0, 255, (3, 36, 36), np.uint8)
    action_space = spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), float(action[0]), False, False, {}


def test_another_captures_probe_is_not_the_training_pass():
    # SB3's critic runs its own features extractor under th.set_grad_enabled(True) even inside the probe's no_grad:
    # an armed capture used to take that forward for the training pass and then wait forever for its gradient.
    policy_kwargs = dict(net_arch=[8], features_extractor_class=NatureCNN, features_extractor_kwargs=dict(features_dim=8))
    model = SAC("CnnPolicy", _TinyImages(), policy_kwargs=policy_kwargs, learning_starts=20, batch_size=8, buffer_size=100)
    model.learn(21)
    neurons = discover(model)
    watcher = Capture(neurons, neurons.select(["critic"]), gradients=True)
    watcher.arm()
    probe(model, Capture(neurons, gradients=False), batch_size=8)
    assert all(rec.activation is None for rec in watcher.records.values())
    model.learn(1, reset_num_timesteps=False)  # one training pass
    critic_features = [g for g in watcher.groups if g.name.startswith("features_extractor")]
    assert critic_features and all(watcher.group_complete(g) for g in critic_features)
    assert watcher.network_complete("critic")
    watcher.disarm()
