"""The masked policies' default optimizer: fused Adam unless the user chose one, same numbers as plain Adam."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from sb3_plasticity import (
    MaskedActorCriticPolicy,
    MaskedMultiHeadSACPolicy,
    MaskedMultiHeadTD3Policy,
    MaskedSACPolicy,
    MaskedTD3Policy,
)
from sb3_plasticity.methods.neuroplastic_expansion import MaskedLayerNormTD3Policy
from sb3_plasticity.policies import fused_adam_available
from sb3_plasticity.surgery import reset_optimizer_entries
from sb3_plasticity.topology import MaskedLinear, masked_layers

pytestmark = pytest.mark.skipif(not fused_adam_available(), reason="no fused CPU Adam in this PyTorch (< 2.4)")

OBS = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
# multi-head policies read a one-hot task id from the last dims (low 0, high 1)
OBS_TASKS = gym.spaces.Box(np.array([-1, -1, -1, 0, 0], np.float32), np.array([1, 1, 1, 1, 1], np.float32))
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
LR = 1e-3
MASKED = [
    MaskedTD3Policy,
    MaskedSACPolicy,
    MaskedActorCriticPolicy,
    MaskedMultiHeadTD3Policy,
    MaskedMultiHeadSACPolicy,
    MaskedLayerNormTD3Policy,
]


def _policy(cls, **kwargs):
    obs = OBS_TASKS if cls in (MaskedMultiHeadTD3Policy, MaskedMultiHeadSACPolicy) else OBS
    return cls(obs, ACT, lambda _: LR, net_arch=[16, 16], **kwargs)


def _optimizers(policy: nn.Module) -> list[th.optim.Optimizer]:
    return [m.optimizer for m in policy.modules() if isinstance(getattr(m, "optimizer", None), th.optim.Optimizer)]


def _fused(policy: nn.Module) -> list[bool]:
    return [bool(g["fused"]) for opt in _optimizers(policy) for g in opt.param_groups]


@pytest.mark.parametrize("cls", MASKED)
def test_default_masked_policy_gets_fused_adam(cls):
    policy = _policy(cls)
    assert masked_layers(policy)
    opts = _optimizers(policy)
    assert len(opts) == (1 if issubclass(cls, ActorCriticPolicy) else 2)
    assert all(type(opt) is th.optim.Adam for opt in opts) and all(_fused(policy))
    assert policy.optimizer_kwargs["fused"] is True
    assert policy._get_constructor_parameters()["optimizer_kwargs"]["fused"] is True
    if issubclass(cls, ActorCriticPolicy):  # SB3's own default for PPO/A2C stays
        assert opts[0].param_groups[0]["eps"] == 1e-5


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(optimizer_kwargs={}),
        dict(optimizer_kwargs=dict(weight_decay=1e-4)),
        dict(optimizer_kwargs=dict(fused=False)),
        dict(optimizer_class=th.optim.Adam),
        dict(optimizer_class=th.optim.AdamW),
    ],
)
@pytest.mark.parametrize("cls", [MaskedTD3Policy, MaskedActorCriticPolicy])
def test_a_users_optimizer_choice_is_kept(cls, kwargs):
    policy = _policy(cls, **kwargs)
    assert not any(_fused(policy))
    assert "fused" not in policy.optimizer_kwargs or policy.optimizer_kwargs["fused"] is False
    assert all(type(opt) is kwargs.get("optimizer_class", th.optim.Adam) for opt in _optimizers(policy))
    if "weight_decay" in kwargs.get("optimizer_kwargs", {}):
        assert all(opt.param_groups[0]["weight_decay"] == 1e-4 for opt in _optimizers(policy))


def test_plain_sb3_policies_are_untouched():
    assert not any(_fused(TD3Policy(OBS, ACT, lambda _: LR, net_arch=[16, 16])))
    assert not any(_fused(ActorCriticPolicy(OBS, ACT, lambda _: LR, net_arch=[16, 16])))


def _masked_loss(policy: MaskedTD3Policy, obs: th.Tensor) -> th.Tensor:
    q_values = policy.critic(obs, policy.actor(obs).detach())
    return policy.actor(obs).pow(2).sum() + sum(q.pow(2).sum() for q in q_values)


def test_default_masked_adam_steps_equal_plain_adam_steps():
    """Known answer: the same gradients through the fused default and SB3's per-tensor Adam give the same weights
    (up to rounding), and masked weights and their Adam moments stay exactly zero."""
    th.manual_seed(0)
    fused = _policy(MaskedTD3Policy)
    plain = copy.deepcopy(fused)
    # SB3's optimizer as it was before the default: per-tensor Adam on the same (masked) parameters
    plain.actor.optimizer = th.optim.Adam(plain.actor.parameters(), lr=LR, foreach=False)
    plain.critic.optimizer = th.optim.Adam(plain.critic.parameters(), lr=LR, foreach=False)
    assert all(_fused(fused)) and not any(_fused(plain))
    init = {k: v.detach().clone() for k, v in fused.named_parameters()}
    gen = th.Generator().manual_seed(1)
    for _ in range(5):
        obs = th.rand(32, 5, generator=gen) * 2 - 1
        for policy in (fused, plain):
            for opt in _optimizers(policy):
                opt.zero_grad()
            _masked_loss(policy, obs).backward()
            for opt in _optimizers(policy):
                opt.step()
    for (name, a), b in zip(fused.named_parameters(), plain.parameters(), strict=True):
        assert th.allclose(a, b, rtol=1e-5, atol=1e-7), name
        if not name.split(".")[0].endswith("_target"):
            assert (a != init[name]).any(), name  # each tensor moved: the comparison is not vacuous
    for (name, layer_f), (_, layer_p) in zip(masked_layers(fused), masked_layers(plain), strict=True):
        assert th.equal(layer_f.mask, layer_p.mask)
        off = layer_f.mask == 0
        assert off.any() and not layer_f.weight[off].any() and not layer_p.weight[off].any()
        if name.split(".")[0].endswith("_target"):
            continue  # no optimizer
        opt = next(o for o in _optimizers(fused) if layer_f.weight in o.state)
        state = opt.state[layer_f.weight]
        assert not state["exp_avg"][off].any() and not state["exp_avg_sq"][off].any()
        assert float(state["step"]) == 5.0


def test_fused_adam_state_takes_the_surgerys_fresh_step():
    """``reset_optimizer_entries`` (NE's ``reset_optimizer=True``, ReDo's resets) on a fused Adam: the reset entries'
    next update is a brand-new parameter's first Adam update, lr * g / (|g| + eps)."""
    th.manual_seed(0)
    layer = MaskedLinear(6, 4)
    opt = th.optim.Adam(layer.parameters(), lr=LR, fused=True)
    gen = th.Generator().manual_seed(2)

    def step() -> th.Tensor:
        x = th.rand(16, 6, generator=gen)
        opt.zero_grad()
        (layer(x) - 1.0).pow(2).mean().backward()
        grad = layer.weight.grad.clone()
        opt.step()
        return grad

    for _ in range(200):
        step()
    assert set(opt.state[layer.weight]) == {"step", "exp_avg", "exp_avg_sq"}  # the layout surgery relies on
    entries = th.zeros_like(layer.mask, dtype=th.bool)
    entries[1] = True
    reset_optimizer_entries(layer.weight, entries, [opt])
    assert not opt.state[layer.weight]["exp_avg"][entries].any()
    assert float(opt.state[layer.weight]["step"]) == 200.0  # the per-tensor step is kept
    before = layer.weight.detach().clone()
    grad = step()
    fresh = nn.Parameter(th.zeros(4, 6))
    first = th.optim.Adam([fresh], lr=LR)
    fresh.grad = grad
    first.step()
    delta = layer.weight.detach() - before
    assert th.allclose(delta[entries], fresh.detach()[entries], rtol=1e-4, atol=1e-9)
    assert delta[entries].abs().max() <= LR * 1.0001


def test_save_load_keeps_fused_or_not(tmp_path):
    env = "Pendulum-v1"
    for policy_kwargs, expected in ((dict(net_arch=[16, 16]), True), (dict(net_arch=[16, 16], optimizer_kwargs={}), False)):
        model = TD3(MaskedTD3Policy, env, policy_kwargs=policy_kwargs, learning_starts=20, seed=0)
        with pytest.warns(UserWarning, match="without a NeuroplasticExpansionCallback"):
            model.learn(40)
        model.save(tmp_path / "model.zip")
        loaded = TD3.load(tmp_path / "model.zip", env=gym.make(env))
        assert _fused(loaded.policy) == [expected, expected]
        steps = []
        for a, b in zip(_optimizers(model.policy), _optimizers(loaded.policy), strict=True):
            assert a.state_dict()["param_groups"] == b.state_dict()["param_groups"]
            for sa, sb in zip(a.state.values(), b.state.values(), strict=True):
                assert float(sa["step"]) == float(sb["step"]) > 0 and th.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
            steps.append(float(next(iter(b.state.values()))["step"]))
        loaded.learn(10, reset_num_timesteps=False)  # the reloaded optimizers step on: 10 critic, 5 actor updates
        after = [float(next(iter(opt.state.values()))["step"]) for opt in _optimizers(loaded.policy)]
        assert after == [steps[0] + 5, steps[1] + 10]
        # the policy alone (BasePolicy.save / load) rebuilds from its constructor parameters
        model.policy.save(tmp_path / "policy.pt")
        assert _fused(MaskedTD3Policy.load(tmp_path / "policy.pt")) == [expected, expected]
