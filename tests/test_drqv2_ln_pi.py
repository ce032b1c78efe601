"""LN-DrQ and PI-DrQ (NE paper Fig. 10 baselines): ``DrQV2Policy(layer_norm=True)`` / ``LayerNormDrQV2Policy``
and ``PlasticityInjectionCallback`` on ``DrQV2Policy``, with known answers, save/load and the zoo configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch as th
from helpers import Recorder
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.logger import Logger
from torch import nn

from sb3_plasticity import (
    DrQV2,
    DrQV2Policy,
    InjectedHead,
    LayerNormDrQV2Policy,
    PlasticityInjectionCallback,
    PlasticityMonitorCallback,
    discover,
)
from sb3_plasticity.methods.injection import head_networks, inject_heads

ZOO = Path(__file__).resolve().parents[1] / "zoo_configs" / "drqv2"
TINY = dict(net_arch=[32, 16], feature_dim=8, features_extractor_kwargs=dict(n_filters=4))


def image_env() -> FakeImageEnv:
    return FakeImageEnv(screen_height=24, screen_width=24, n_channels=3, discrete=False, channel_first=True)


def make(policy=DrQV2Policy, **policy_kwargs) -> DrQV2:
    kw = dict(learning_starts=50, batch_size=16, buffer_size=500, seed=0, device="cpu")
    return DrQV2(policy, image_env(), policy_kwargs={**TINY, **policy_kwargs}, **kw)


def observations(n: int = 16) -> np.ndarray:
    space = image_env().observation_space
    space.seed(1)
    return np.stack([space.sample() for _ in range(n)])


def read_config(path: Path) -> dict:
    namespace: dict = {}
    exec(path.read_text(), namespace)
    return namespace["hyperparams"]


# -- LN-DrQ --------------------------------------------------------------------------------------------------------
def test_layer_norm_policy_structure_groups_and_save_load(tmp_path):
    model = make(LayerNormDrQV2Policy)
    policy = model.policy
    assert policy.layer_norm is True and DrQV2Policy is not type(policy)
    hidden = ["Linear", "LayerNorm", "ReLU", "Linear", "LayerNorm", "ReLU", "Linear"]
    # Linear -> LayerNorm -> ReLU in both hidden layers, output layer without norm, then DrQ-v2's tanh
    assert [type(m).__name__ for m in policy.actor.mu] == [*hidden, "Tanh"]
    for critic in (policy.critic, policy.critic_target):
        for q_net in critic.q_networks:
            assert [type(m).__name__ for m in q_net] == hidden
    assert [m.normalized_shape for m in policy.actor.mu if isinstance(m, nn.LayerNorm)] == [(32,), (16,)]
    # the same flag on the plain class builds the same network; default off keeps DrQ-v2
    assert sum(isinstance(m, nn.LayerNorm) for m in make(layer_norm=True).policy.actor.mu.modules()) == 2
    assert not any(isinstance(m, nn.LayerNorm) for m in make().policy.actor.mu.modules())
    with pytest.raises(ValueError, match="layer_norm"):
        make(layer_norm=1)
    # neuron groups: the hidden layers' widths as in DrQ-v2, each norm in its layer's group (gain of each neuron)
    groups = {g.key: g for g in discover(policy).groups}
    assert {k: g.n_neurons for k, g in groups.items() if k.startswith("actor/")} == {
        "actor/trunk.0": 8,
        "actor/mu.0": 32,
        "actor/mu.3": 16,
    }
    for network, root in (("actor", policy.actor), ("critic", policy.critic), ("critic_target", policy.critic_target)):
        for name, module in root.named_modules():
            if isinstance(module, nn.LayerNorm) and not name.startswith("trunk"):
                producer = f"{name.rsplit('.', 1)[0]}.{int(name.rsplit('.', 1)[1]) - 1}"
                group = groups[f"{network}/{producer}"]
                assert group.norm is module and any(p is module.weight for p in group.incoming_parameters())
                assert isinstance(group.output, nn.ReLU)  # the activation after the norm
    # learn with the monitor, then save/load keeps the norms
    model.learn(80, callback=PlasticityMonitorCallback(log_freq=40))
    obs = observations()
    expected = model.predict(obs, deterministic=True)[0]
    model.save(tmp_path / "ln.zip")
    loaded = DrQV2.load(tmp_path / "ln.zip", device="cpu")
    assert type(loaded.policy) is LayerNormDrQV2Policy and loaded.policy.layer_norm
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)


# -- PI-DrQ --------------------------------------------------------------------------------------------------------
def _outputs(model: DrQV2, obs: th.Tensor, actions: th.Tensor) -> list[th.Tensor]:
    with th.no_grad():
        return [model.actor(obs), *model.critic(obs, actions), *model.critic_target(obs, actions)]


def test_injection_on_drqv2_preserves_outputs_then_trains_new_heads(tmp_path):
    model = make()
    assert head_networks(model.policy) == ["actor", "critic"]
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    obs = th.as_tensor(observations())
    actions = th.rand(16, 5) * 2 - 1
    seen = {}

    class Probe(PlasticityInjectionCallback):
        def inject(self) -> None:
            seen["before"] = _outputs(self.model, obs, actions)
            super().inject()
            seen["after"] = _outputs(self.model, obs, actions)
            seen["old"] = [p.clone() for p in self.model.actor.mu[-2].old.parameters()]
            seen["new"] = [p.clone() for p in self.model.actor.mu[-2].new.parameters()]

    model.learn(120, callback=Probe(inject_at=0.5))  # step 60: after learning_starts 50, 5 updates before
    for before, after in zip(seen["before"], seen["after"], strict=True):
        assert float((after - before).abs().max()) <= 1e-6
    [(_, change)] = rec.values("plasticity/injection/critic/output_change")
    assert change <= 1e-6 and rec.values("plasticity/injection/actor/output_change")[0][1] <= 1e-6
    # heads: actor's output layer (before the tanh), each Q-network's output, the target critic's too
    head = model.actor.mu[-2]
    assert isinstance(head, InjectedHead) and isinstance(model.actor.mu[-1], nn.Tanh)
    for critic in (model.critic, model.critic_target):
        assert all(isinstance(q[-1], InjectedHead) for q in critic.q_networks)
    # the new heads trained (30 updates after step 60), the old and the copy stayed frozen
    assert all(not th.equal(a, b) for a, b in zip(seen["new"], head.new.parameters(), strict=True))
    assert all(th.equal(a, b) for a, b in zip(seen["old"], head.old.parameters(), strict=True))
    assert not any(p.requires_grad for p in (*head.old.parameters(), *head.copy.parameters()))
    actor_params = {id(p) for g in model.actor.optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in head.new.parameters()} <= actor_params
    assert not {id(p) for p in (*head.old.parameters(), *head.copy.parameters())} & actor_params
    critic_params = {id(p) for g in model.critic.optimizer.param_groups for p in g["params"]}
    # the shared encoder stays in the critic's optimizer and keeps training
    assert {id(p) for p in model.policy.features_extractor.parameters()} <= critic_params
    for q in model.critic.q_networks:
        assert {id(p) for p in q[-1].new.parameters()} <= critic_params
    # the target critic's new heads follow the online ones (Polyak)
    assert not th.equal(model.critic_target.qf0[-1].new.weight, model.critic_target.qf0[-1].copy.weight)
    # save / load keeps the injected structure and the function
    expected = model.predict(observations(), deterministic=True)[0]
    before_q = _outputs(model, obs, actions)
    model.save(tmp_path / "pi.zip")
    loaded = DrQV2.load(tmp_path / "pi.zip", device="cpu")
    assert isinstance(loaded.policy, DrQV2Policy) and isinstance(loaded.actor.mu[-2], InjectedHead)
    np.testing.assert_array_equal(loaded.predict(observations(), deterministic=True)[0], expected)
    for a, b in zip(_outputs(loaded, obs, actions), before_q, strict=True):
        th.testing.assert_close(a, b, rtol=0, atol=0)
    # resumed training does not inject again
    loaded.set_env(image_env())
    loaded.learn(20, reset_num_timesteps=False, callback=PlasticityInjectionCallback(inject_at=60))
    assert loaded.plasticity_state["injection"]["n_injected"] == 1
    assert not isinstance(loaded.actor.mu[-2].old, InjectedHead)


def test_injection_on_layer_norm_drqv2_policy():
    model = make(LayerNormDrQV2Policy)
    model.learn(60)
    obs, actions = th.as_tensor(observations(8)), th.zeros(8, 5)
    before = _outputs(model, obs, actions)
    assert inject_heads(model, "critic") == 2 * (16 + 1)  # two fresh output layers (16 -> 1)
    assert inject_heads(model, "actor") == 16 * 5 + 5
    for a, b in zip(_outputs(model, obs, actions), before, strict=True):
        assert float((a - b).abs().max()) <= 1e-6


# -- configs -------------------------------------------------------------------------------------------------------
def test_ln_and_pi_zoo_configs():
    base = read_config(ZOO / "drqv2_redo.py")
    ln, pi = read_config(ZOO / "drqv2_ln.py"), read_config(ZOO / "drqv2_pi.py")
    assert set(ln) == set(pi) == set(base) and len(ln) == 4
    for env_id, hp in ln.items():
        assert hp["policy_kwargs"] == {"net_arch": [1024, 1024], "feature_dim": 50, "layer_norm": True}
        assert hp["callback"] == [{"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}}]
        assert {k: v for k, v in hp.items() if k not in ("policy_kwargs", "callback")} == {
            k: v for k, v in base[env_id].items() if k not in ("policy_kwargs", "callback")
        }
    for env_id, hp in pi.items():
        assert hp["callback"][0] == {"sb3_plasticity.PlasticityInjectionCallback": {"inject_at": 0.25}}
        assert {k: v for k, v in hp.items() if k != "callback"} == {k: v for k, v in base[env_id].items() if k != "callback"}
        PlasticityInjectionCallback(**hp["callback"][0]["sb3_plasticity.PlasticityInjectionCallback"])
