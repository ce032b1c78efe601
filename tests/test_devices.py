"""misplaced_tensors finds a tensor a method left on another device than the model's."""

import torch as th
from stable_baselines3 import TD3

from sb3_plasticity import ReDoCallback
from sb3_plasticity.devices import misplaced_tensors


def test_finds_tensors_on_another_device():
    model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), device="cpu")
    cb = ReDoCallback()
    assert misplaced_tensors(model, cb) == []
    # "meta" tensors exist without memory on any machine: a stand-in for a CUDA model's stray CPU tensor
    cb.stray = {"scores": [th.zeros(3, device="meta")]}
    model.plasticity_state = {"redo": {"cursor": th.zeros(1, device="meta")}}
    found = misplaced_tensors(model, cb)
    assert found == ["plasticity_state['redo']['cursor'] (meta)", "ReDoCallback[0].stray['scores'][0] (meta)"]
    model.policy.actor.mu[0].register_buffer("mask", th.ones(8, 3, device="meta"))
    assert "policy.actor.mu.0.mask (meta)" in misplaced_tensors(model)
