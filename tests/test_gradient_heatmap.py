"""GradientHeatmapCallback: the saved arrays are |dL/dW| of the recorded pass (a hand-computed loss, and TD3's own
training pass), files and scalars exist, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from helpers import Recorder
from stable_baselines3 import TD3
from stable_baselines3.common.logger import Logger

from sb3_plasticity import GradientHeatmapCallback


def _td3(**kwargs) -> TD3:
    return TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[4]), seed=0, device="cpu", **kwargs)


def test_hand_computed_loss(tmp_path):
    model = _td3()
    model.set_logger(Logger(folder=None, output_formats=[]))
    cb = GradientHeatmapCallback(steps=[1], networks="critic", save_dir=str(tmp_path))
    cb.init_callback(model)
    obs, act = th.randn(5, 3), th.randn(5, 1)
    critic = model.critic

    def loss() -> th.Tensor:
        return sum(((q - 1.0) ** 2).mean() for q in critic(obs, act))

    layers = [m for m in critic.modules() if isinstance(m, th.nn.Linear)]
    expected = [g.abs().numpy() for g in th.autograd.grad(loss(), [m.weight for m in layers])]
    cb.arm()
    critic.optimizer.zero_grad()
    loss().backward()
    critic.optimizer.step()
    cb.poll()
    assert not cb.armed and list(cb.heatmaps) == [0]
    saved = cb.heatmaps[0]
    assert [name for _, name in saved] == ["qf0.0", "qf0.2", "qf1.0", "qf1.2"]
    for (network, name), want in zip(saved, expected, strict=True):
        np.testing.assert_allclose(saved[(network, name)], want, rtol=1e-6)
        np.testing.assert_allclose(np.load(tmp_path / network / f"{name}_step0.npy"), want, rtol=1e-6)
        assert (tmp_path / network / f"{name}_step0.png").read_bytes()[:4] == b"\x89PNG"


def test_td3_training_pass_at_chosen_steps(tmp_path):
    model = _td3(learning_starts=50)
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    seen: list[tuple[int, list[np.ndarray]]] = []  # a spy: the actor's grads at each actor optimizer step
    actor_layers = [m for m in model.actor.modules() if isinstance(m, th.nn.Linear)]
    model.actor.optimizer.register_step_pre_hook(
        lambda *_: seen.append((model.num_timesteps, [m.weight.grad.abs().numpy().copy() for m in actor_layers]))
    )
    cb = GradientHeatmapCallback(steps=[20, 30, 80, 81], layers=["mu.0", "mu.2", "qf0.0"], save_dir=str(tmp_path))
    model.learn(120, callback=cb)
    # 20 and 30 fall before learning_starts: one map, at the first actor update (the 2nd gradient step, policy_delay
    # 2: step 52); armed at 80, the actor updates in the pass after step 80; armed again at 81: the next one, 82
    actor_steps = [s for s, _ in seen]
    assert actor_steps[:3] == [52, 54, 56] and 80 in actor_steps and 82 in actor_steps
    assert sorted(cb.heatmaps) == [52, 80, 82]
    for step, maps in cb.heatmaps.items():
        assert set(maps) == {("actor", "mu.0"), ("actor", "mu.2"), ("critic", "qf0.0")}
        first = next(grads for s, grads in seen if s >= step)
        np.testing.assert_allclose(maps[("actor", "mu.0")], first[0])
        np.testing.assert_allclose(maps[("actor", "mu.2")], first[1])
        assert maps[("critic", "qf0.0")].shape == (4, 4)
        for network, name in maps:
            assert (tmp_path / network / f"{name}_step{step}.png").exists()
        logged = dict(rec.values("plasticity/heatmap/actor/mu.0/mean_abs_grad"))
        assert logged[step] == pytest.approx(float(maps[("actor", "mu.0")].mean()))
    assert dict(rec.values("plasticity/heatmap/critic/mean_abs_grad")).keys() == {52, 80, 82}


def test_errors():
    with pytest.raises(ValueError, match="steps"):
        GradientHeatmapCallback(steps=[])
    with pytest.raises(ValueError, match="positive"):
        GradientHeatmapCallback(steps=[0, 10])
    model = _td3(learning_starts=10)
    with pytest.raises(ValueError, match="not layers"):
        model.learn(20, callback=GradientHeatmapCallback(steps=[5], layers=["nope"]))
