"""L2 Init (Kumar et al. 2023): the added gradient, composition with ReDo in one learn(), theta_0 across save/load."""

import pytest
import torch as th
from helpers import Recorder
from stable_baselines3 import PPO, TD3
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger

from sb3_plasticity import L2InitCallback, ReDoCallback

LAM = 1e-2


def _td3(**kwargs) -> TD3:
    return TD3(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), learning_starts=50, batch_size=32, seed=0,
        device="cpu", **kwargs,
    )  # fmt: skip


def _params(module) -> dict[str, th.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_added_gradient_is_two_lambda_times_the_distance_to_theta0():
    """d/dtheta lam * ||theta - theta_0||^2 = 2 lam (theta - theta_0), added to the loss gradient between backward
    and step; a parameter without gradient gets the penalty's gradient alone; hooks go at the end of training."""
    model = _td3()
    theta0 = _params(model.policy)
    cb = L2InitCallback(lam=LAM)
    cb.init_callback(model)
    assert cb.theta0.keys() == {k for k in theta0 if k.startswith(("actor.", "critic."))}  # targets excluded
    assert all(th.equal(cb.theta0[k], theta0[k]) for k in cb.theta0)
    with th.no_grad():
        for p in model.policy.parameters():
            p.add_(0.1 * th.randn_like(p))
    obs, act = th.randn(8, 3), th.rand(8, 1) * 2 - 1
    critic, actor = model.critic, model.actor
    critic.optimizer.zero_grad()
    sum(q.pow(2).mean() for q in critic(obs, act)).backward()
    loss_grads = {n: p.grad.clone() for n, p in critic.named_parameters()}
    current = {n: p.detach().clone() for n, p in critic.named_parameters()}
    seen = {}

    def snapshot(opt, args, kwargs):  # registered after the callback's hook: sees the gradient the step will use
        seen.update({n: p.grad.clone() for n, p in critic.named_parameters()})

    handle = critic.optimizer.register_step_pre_hook(snapshot)
    critic.optimizer.step()
    handle.remove()
    for name, grad in loss_grads.items():
        expected = grad + (current[name] - theta0[f"critic.{name}"]).mul_(2 * LAM)
        assert th.equal(seen[name], expected), name
    # no backward on the actor: its step uses the penalty's gradient alone
    actor.optimizer.zero_grad()
    before = {n: p.detach().clone() for n, p in actor.named_parameters()}
    actor.optimizer.step()
    for name, p in actor.named_parameters():
        assert th.equal(p.grad, (before[name] - theta0[f"actor.{name}"]).mul_(2 * LAM)), name
    n_hooks = len(critic.optimizer._optimizer_step_pre_hooks)
    cb.on_training_end()
    assert len(critic.optimizer._optimizer_step_pre_hooks) == n_hooks - 1


def test_composes_with_redo_in_one_learn():
    model = _td3()
    theta0 = _params(model.policy)
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    redo, l2 = ReDoCallback(reset_freq=100, tau=0.5), L2InitCallback(lam=LAM, log_freq=100)
    model.learn(400, callback=CallbackList([redo, l2]))
    assert redo.n_events == 4 and redo.total_reset > 0
    for network in ("actor", "critic"):
        dist = rec.values(f"plasticity/l2_init/{network}/distance")
        penalty = rec.values(f"plasticity/l2_init/{network}/penalty")
        assert [s for s, _ in dist] == [100, 200, 300, 400] and dist[-1][1] > 0
        assert penalty[-1][1] == pytest.approx(LAM * dist[-1][1] ** 2)
    assert rec.values("plasticity/redo/reset_count")
    assert all(th.equal(l2.theta0[k], theta0[k]) for k in l2.theta0)  # theta_0 stays the initial draw


def test_save_load_keeps_theta0(tmp_path):
    model = _td3()
    theta0 = _params(model.policy)
    model.learn(100, callback=L2InitCallback(lam=LAM))
    model.save(tmp_path / "model.zip")
    loaded = TD3.load(tmp_path / "model.zip", env=model.get_env(), device="cpu")
    stored = loaded.plasticity_state["l2_init"]["theta0"]
    assert stored.keys() == {k for k in theta0 if k.startswith(("actor.", "critic."))}
    assert all(th.equal(stored[k], theta0[k]) for k in stored)
    assert not th.equal(stored["critic.qf0.0.weight"], loaded.policy.critic.qf0[0].weight)  # not the trained weights
    cb = L2InitCallback(lam=LAM)
    loaded.learn(100, callback=cb, reset_num_timesteps=False)
    assert all(th.equal(cb.theta0[k], theta0[k]) for k in cb.theta0)


def test_ppo_shared_optimizer_and_bad_arguments():
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    cb = L2InitCallback(lam=LAM, networks="value")
    model.learn(64, callback=cb)
    assert {k.split(".")[0] for k in cb.theta0} == {"mlp_extractor", "value_net"}
    assert all(k.startswith(("mlp_extractor.value_net.", "value_net.")) for k in cb.theta0)
    with pytest.raises(ValueError, match="lam"):
        L2InitCallback(lam=0.0)
    with pytest.raises(ValueError, match="no network named"):
        L2InitCallback(networks="nope").init_callback(model)
