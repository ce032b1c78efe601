"""DACER (``sb3_plasticity.DACER``): known answers for the noise schedule, the time embedding, the sampler, the GMM
entropy, the critic and actor losses and the entropy regulator; the recording form of the chain; ``learn()`` with the
monitor, ReDo and ReGraMa; save/load; the rl_zoo3 registration and configs."""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import rl_zoo3.exp_manager
import torch as th
from helpers import SINGLE_THREAD_ENV, Recorder, read_scalars
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sb3_plasticity import (
    DACER,
    Capture,
    DACERPolicy,
    GraMaResetCallback,
    PlasticityMonitorCallback,
    ReDoCallback,
    discover,
)
from sb3_plasticity.algos import ZOO_ALGOS, gmm_entropy, register_zoo_algos
from sb3_plasticity.algos.dacer_policies import GaussianDiffusion, TruncatedNormalInit, timestep_embedding, vp_beta_schedule

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo_configs" / "grama"
STEPS = 5  # diffusion steps of the tiny models
TINY = dict(net_arch=[16, 16], diffusion_steps=STEPS)


def make(**kwargs) -> DACER:
    kw = dict(
        learning_starts=100,
        batch_size=32,
        buffer_size=1000,
        alpha_update_interval=50,
        entropy_samples=16,
        policy_kwargs=TINY,
        seed=0,
        device="cpu",
    )
    kw.update(kwargs)
    return DACER("MlpPolicy", gym.make("Pendulum-v1"), **kw)


def recorder(model: DACER) -> Recorder:
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    return rec


def observations(n: int, seed: int = 0) -> th.Tensor:
    rng = np.random.default_rng(seed)
    return th.as_tensor(rng.uniform(-1.0, 1.0, size=(n, 3)), dtype=th.float32)


def fill(model: DACER, n: int = 64) -> None:
    """``n`` random transitions in the replay buffer."""
    rng = np.random.default_rng(1)
    for _ in range(n):
        obs, next_obs = rng.uniform(-1, 1, (1, 3)), rng.uniform(-1, 1, (1, 3))
        action = rng.uniform(-1, 1, (1, 1))
        model.replay_buffer.add(obs, next_obs, action, rng.normal(size=1), np.array([False]), [{}])


def constant_critic(critic, means, rhos) -> None:
    """Make Q-network i output the constant ``(means[i], softplus(rhos[i]))`` (zero output weights)."""
    with th.no_grad():
        for q_net, mean, rho in zip(critic.q_networks, means, rhos, strict=True):
            q_net[-1].weight.zero_()
            q_net[-1].bias.copy_(th.tensor([mean, rho]))


# -- known answers ----------------------------------------------------------------------------------------------
def test_noise_schedule_and_time_embedding_known_values():
    T = 20
    # beta_t = 1 - exp(-b_min / T - (b_max - b_min) (2t - 1) / (2 T^2)), t = 1..T, b_min 0.1, b_max 10
    first = 1 - math.exp(-0.1 / 20 - 0.5 * 9.9 * 1 / 400)  # t = 1: 1 - exp(-0.017375)
    last = 1 - math.exp(-0.1 / 20 - 0.5 * 9.9 * 39 / 400)  # t = T: 1 - exp(-0.487625)
    betas = vp_beta_schedule(T)
    assert betas.shape == (T,) and betas[0] == pytest.approx(first, rel=1e-12) and betas[-1] == pytest.approx(last, rel=1e-12)
    assert first == pytest.approx(0.0172249, abs=1e-6) and last == pytest.approx(0.3859169, abs=1e-6)
    d = GaussianDiffusion(T)
    assert d.betas[0].item() == pytest.approx(first, rel=1e-6) and d.betas[-1].item() == pytest.approx(last, rel=1e-6)
    np.testing.assert_allclose(d.alphas.numpy(), 1 - betas, rtol=1e-6)
    # sum_t (2t - 1) = T^2: abar_T = exp(-b_min - (b_max - b_min) / 2) = exp(-5.05) whatever T
    assert d.alphas_cumprod[-1].item() == pytest.approx(math.exp(-5.05), rel=1e-5)
    assert GaussianDiffusion(7).alphas_cumprod[-1].item() == pytest.approx(math.exp(-5.05), rel=1e-5)
    assert d.alphas_cumprod[0].item() == pytest.approx(1 - first, rel=1e-6)
    # the last reverse step (t = 0): x_{-1} = x_0 reconstruction exactly, no noise
    assert d.posterior_mean_coef1[0].item() == pytest.approx(1.0) and d.posterior_mean_coef2[0].item() == 0.0
    assert d.posterior_std[0].item() == 0.0 and d.posterior_variance[0].item() == 0.0
    # t = T - 1: variance beta_T (1 - abar_{T-1}) / (1 - abar_T)
    abar_prev = math.exp(-5.05) / (1 - last)
    assert d.posterior_variance[-1].item() == pytest.approx(last * (1 - abar_prev) / (1 - math.exp(-5.05)), rel=1e-5)
    # time embedding: [sin(t f_j), cos(t f_j)] / sqrt(16), f_j = 10000^(-j/8)
    emb = timestep_embedding(th.tensor([0, 3]), 16)
    np.testing.assert_allclose(emb[0].numpy(), [0.0] * 8 + [0.25] * 8, atol=1e-7)
    freqs = 10000.0 ** (-np.arange(8) / 8)
    np.testing.assert_allclose(emb[1].numpy(), np.r_[np.sin(3 * freqs), np.cos(3 * freqs)] / 4, atol=1e-6)


def test_sampler_shapes_bounds_and_deterministic_actions():
    model = make()
    actor = model.actor
    obs = observations(64)
    with th.no_grad():
        x0 = actor.denoise(obs)
        actions = actor(obs, deterministic=False)
        det = actor(obs)
    assert x0.shape == actions.shape == det.shape == (64, 1)
    assert x0.abs().max() <= 1.0  # the last step returns the clipped x_0 reconstruction
    assert actions.abs().max() <= 1.0 and not th.equal(actions, det)
    # deterministic: one fixed noise sequence, no regulator noise: per observation, repeatable
    with th.no_grad():
        assert th.equal(actor(obs), det) and th.allclose(actor(obs[5:6]), det[5:6], atol=1e-6)
    # SB3 predict rescales [-1, 1] to Pendulum's [-2, 2]
    pred, _ = model.predict(obs.numpy(), deterministic=True)
    np.testing.assert_allclose(pred, 2.0 * det.numpy(), atol=1e-6)
    noisy, _ = model.predict(obs.numpy(), deterministic=False)
    assert noisy.shape == (64, 1) and np.abs(noisy).max() <= 2.0
    # the regulator's noise: std noise_scale * alpha around x_0 (official initial alpha 3, lambda 0.1)
    assert actor.alpha == pytest.approx(3.0) and actor.noise_scale == 0.1
    th.manual_seed(0)
    with th.no_grad():
        x = actor.denoise(obs[:1].repeat(4000, 1))
    th.manual_seed(0)
    with th.no_grad():
        a = actor.sample(obs[:1].repeat(4000, 1))
    inside = (a.abs() < 1).flatten()
    assert (a - x).flatten()[inside].std().item() == pytest.approx(0.3, rel=0.1)


def test_recording_chain_has_the_plain_chains_value_and_gradients():
    """With a hook on the denoiser (an armed capture), its modules run once on all T steps' inputs, and the sampled
    action and every parameter gradient equal the plain chain's."""
    actor = make().actor
    obs = observations(8)

    def run() -> tuple[th.Tensor, list[th.Tensor]]:
        actor.denoiser.zero_grad(set_to_none=True)
        th.manual_seed(3)
        action = actor(obs, deterministic=False)
        (action.pow(3).sum() + action.sum()).backward()
        return action.detach(), [p.grad.clone() for p in actor.denoiser.parameters()]

    plain_action, plain_grads = run()
    seen: list[tuple[int, ...]] = []
    handle = actor.denoiser.net[1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        action, grads = run()
    finally:
        handle.remove()
    assert seen == [(STEPS * 8, 16)]  # one call, every step's rows
    th.testing.assert_close(action, plain_action, rtol=0, atol=1e-6)
    for g, pg in zip(grads, plain_grads, strict=True):
        th.testing.assert_close(g, pg, rtol=1e-4, atol=1e-6)


def test_gmm_entropy_known_answers():
    gen = th.Generator().manual_seed(0)
    # one component: the entropy of the fitted (maximum-likelihood) Gaussian, d/2 (1 + log 2 pi) + 1/2 log det
    x = th.randn(2, 500, 2, generator=gen, dtype=th.float64) @ th.tensor([[1.0, 0.0], [0.5, 0.2]], dtype=th.float64)
    centered = x - x.mean(dim=1, keepdim=True)
    cov = centered.transpose(1, 2) @ centered / 500 + 1e-6 * th.eye(2, dtype=th.float64)
    expected = 0.5 * 2 * (1 + math.log(2 * math.pi)) + 0.5 * th.logdet(cov)
    th.testing.assert_close(gmm_entropy(x, n_components=1), expected, rtol=0, atol=1e-9)
    # three far-apart equal clusters of std 0.1: log 3 + 3 x Gaussian entropy with sigma = 0.1
    centers = th.tensor([[-5.0, 0.0], [0.0, 5.0], [5.0, 0.0]], dtype=th.float64)
    clusters = centers.repeat_interleave(1000, dim=0) + 0.1 * th.randn(3000, 2, generator=gen, dtype=th.float64)
    h = gmm_entropy(clusters[th.randperm(3000, generator=gen)])
    assert h.item() == pytest.approx(math.log(3) + (1 + math.log(2 * math.pi)) + 2 * math.log(0.1), abs=0.03)


def test_critic_loss_known_answer():
    model = make(reward_scale=0.5, gamma=0.9, tau=0.1)
    mu, rho = (1.0, 2.0), (0.0, 0.5)  # critics: means 1 and 2, stds softplus(0), softplus(0.5)
    constant_critic(model.critic, mu, rho)
    constant_critic(model.critic_target, (4.0, 3.0), (-40.0, -40.0))  # target std ~ 0: the sample is the mean
    rewards = th.tensor([1.0, -2.0, 10.0, 0.0])
    dones = th.tensor([0.0, 0.0, 0.0, 1.0])
    data = ReplayBufferSamples(
        observations=observations(4),
        actions=th.zeros(4, 1),
        next_observations=observations(4, seed=1),
        dones=dones[:, None],
        rewards=rewards[:, None],
        discounts=None,
    )
    model.mean_q_std = [2.0, -1.0]  # critic 0: running value 2; critic 1: not set yet (first batch)
    loss, stats = model.critic_loss(data)
    y = (0.5 * rewards + (1 - dones) * 0.9 * 3.0).numpy()  # min of the target means: 3
    expected, grad_mean = 0.0, []
    for i, (m_old, eps) in enumerate(((2.0, 0.1), (-1.0, 0.1))):
        sigma = math.log1p(math.exp(rho[i]))
        m = sigma if m_old == -1.0 else 0.1 * sigma + 0.9 * m_old
        assert model.mean_q_std[i] == pytest.approx(m)
        bounded = mu[i] + np.clip(y - mu[i], -3 * m, 3 * m)
        terms = mu[i] * (y - mu[i]) / (sigma**2 + eps) + sigma * ((mu[i] - bounded) ** 2 - sigma**2) / (sigma**3 + eps)
        expected += -(m**2 + eps) * terms.mean()
        grad_mean.append(-(m**2 + eps) / (sigma**2 + eps) * (y - mu[i]).mean())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert stats["target_q"] == pytest.approx(y.mean(), rel=1e-5)
    loss.backward()
    for i, q_net in enumerate(model.critic.q_networks):
        # d loss / d mean: -(m^2 + eps) / (sigma^2 + eps) * mean(y - mu); with m = sigma: the MSE/2 gradient
        assert q_net[-1].bias.grad[0].item() == pytest.approx(grad_mean[i], rel=1e-5)
    assert grad_mean[1] == pytest.approx(-(y - 2.0).mean(), rel=1e-6)


def test_actor_loss_is_minus_min_q_of_the_sampled_action():
    model = make()
    obs = observations(16)
    th.manual_seed(7)
    loss = model.actor_loss(obs)
    th.manual_seed(7)
    with th.no_grad():
        actions = model.actor(obs, deterministic=False)
        q = th.cat(model.critic(obs, actions), dim=1)
    assert loss.item() == pytest.approx(-q.min(dim=1).values.mean().item(), rel=1e-6)
    loss.backward()
    assert all(p.grad is None for p in model.critic.parameters())  # the critics get nothing from it
    assert model.actor.log_alpha.grad is None
    assert all(p.grad is not None for p in model.actor.denoiser.parameters())
    assert all(p.requires_grad for p in model.critic.parameters())  # restored


def test_update_schedule_and_entropy_regulator():
    model = make(alpha_update_interval=2, target_entropy=10.0, alpha_learning_rate=0.05)
    fill(model)
    model.set_logger(Logger(folder=None, output_formats=[]))
    log_alpha = model.actor.log_alpha.item()
    model.train(gradient_steps=3, batch_size=16)
    # updates 0, 1, 2: critics every update, the actor and the targets at 0 and 2 (policy_delay 2), alpha at 0 and 2
    steps = lambda opt: max(int(s["step"]) for s in opt.state.values())  # noqa: E731
    assert steps(model.critic.optimizer) == 3 and steps(model.actor.optimizer) == 2 and steps(model.alpha_optimizer) == 2
    # entropy below the target: log_alpha grows by ~alpha_lr per Adam step (first steps of Adam are ~lr * sign)
    assert model.entropy < 10.0
    assert model.actor.log_alpha.item() == pytest.approx(log_alpha + 2 * 0.05, abs=1e-3)
    assert model._target_entropy == 10.0 and make()._target_entropy == pytest.approx(-0.9)
    with pytest.raises(ValueError, match="policy_delay"):
        make(policy_delay=0)
    with pytest.raises(ValueError, match="Box observation"):
        DACERPolicy(gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (1,)), lambda _: 1e-3)
    with pytest.raises(ValueError, match="parameter-free"):
        make(policy_kwargs=dict(net_arch=[8], activation_fn=th.nn.PReLU))


def test_neurons_and_reinit_scheme():
    model = make()
    neurons = discover(model)
    assert set(neurons.networks) == {"actor", "critic", "critic_target"}
    assert [g.name for g in neurons.networks["actor"]] == ["denoiser.time_mlp.0", "denoiser.net.0", "denoiser.net.2"]
    assert [c.name for c in neurons.networks["actor"][0].consumers] == ["denoiser.time_mlp.2"]
    assert [g.name for g in neurons.networks["critic"]] == ["qf0.0", "qf0.2", "qf1.0", "qf1.2"]
    assert neurons.networks["critic"][1].twin is neurons.networks["critic_target"][1]
    assert all(isinstance(g.init, TruncatedNormalInit) for g in neurons.groups)
    layer = th.nn.Linear(400, 300)
    weight, bias = TruncatedNormalInit().fresh(layer, th.Generator().manual_seed(0))
    # Haiku's default: N(0, 1/fan_in) truncated at 2 std (std of the truncated law: 0.8796 / sqrt(fan_in))
    assert weight.abs().max().item() <= 2 / 20 and weight.std().item() == pytest.approx(0.8796 / 20, rel=0.02)
    assert not bias.any()


# -- learn() with the package's callbacks ------------------------------------------------------------------------
def test_learn_with_monitor_redo_and_regrama():
    model = make()
    rec = recorder(model)
    monitor = PlasticityMonitorCallback(log_freq=100, tau=0.02, grama_tau=0.01)
    redo = ReDoCallback(reset_freq=100, tau=0.5, networks=["actor"])
    regrama = GraMaResetCallback(reset_freq=100, tau=0.5, networks=["critic"])
    model.learn(300, callback=[monitor, redo, regrama])
    assert model._n_updates == 200
    # alpha stepped at updates 0, 50, 100, 150, each time down (the entropy is above -0.9 * 1): Adam steps of ~lr
    assert model.actor.log_alpha.item() == pytest.approx(math.log(3) - 4 * 0.03, abs=0.01)
    for network in ("actor", "critic", "critic_target"):
        values = [v for _, v in rec.values(f"plasticity/{network}/dormant_ratio")]
        assert len(values) >= 2 and all(0.0 <= v <= 1.0 for v in values), network
    for key in ("actor/grama_inactive_ratio", "critic/grama_inactive_ratio", "actor/denoiser.net.2/active_ratio"):
        assert rec.values(f"plasticity/{key}"), key
    # the denoiser's statistics cover every reverse step: T x batch rows (critics: the batch)
    capture = Capture(discover(model))
    capture.arm()
    model.train(gradient_steps=1, batch_size=32)  # update 200: critics and actor
    assert capture.complete
    capture.disarm()
    for group, record in capture.records.items():
        rows = STEPS * 32 if group.network == "actor" else 32
        assert record.activation.shape[0] == rows, group.key
        assert group.is_target or record.grad.shape[0] == rows, group.key
    assert len(rec.values("plasticity/redo/reset_count")) == 3 and redo.total_reset > 0
    assert rec.values("plasticity/redo/action_change")
    assert len(rec.values("plasticity/regrama/reset_count")) >= 2 and regrama.total_reset > 0
    assert rec.values("plasticity/regrama/critic/grama_inactive_ratio_before")
    for key in ("critic_loss", "actor_loss", "alpha", "entropy", "q_mean", "q_std", "mean_q_std"):
        assert rec.values(f"train/{key}"), key


def test_save_load_round_trip(tmp_path):
    model = make()
    model.learn(150)
    obs = observations(16).numpy()
    expected, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "dacer.zip")
    loaded = DACER.load(tmp_path / "dacer.zip", device="cpu")
    assert type(loaded.policy) is DACERPolicy and loaded.num_timesteps == 150 and loaded._n_updates == 50
    assert loaded.policy.diffusion_steps == STEPS and loaded.policy.net_arch == [16, 16]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    assert loaded.actor.log_alpha.item() == model.actor.log_alpha.item() != math.log(3)
    assert loaded.mean_q_std == model.mean_q_std and loaded.entropy == model.entropy != 0.0
    for name in ("actor.optimizer", "critic.optimizer", "alpha_optimizer"):
        saved = eval(f"model.{name}").state_dict()["state"]
        restored = eval(f"loaded.{name}").state_dict()["state"]
        assert saved.keys() == restored.keys() and all(th.equal(saved[k]["exp_avg"], restored[k]["exp_avg"]) for k in saved)
    assert loaded.alpha_optimizer.param_groups[0]["params"][0] is loaded.actor.log_alpha
    model.policy.save(tmp_path / "policy.pth")
    policy = DACERPolicy.load(tmp_path / "policy.pth", device="cpu")
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], expected)
    loaded.set_env(gym.make("Pendulum-v1"))
    loaded.learn(20, reset_num_timesteps=False)  # training resumes from the loaded state
    assert loaded.num_timesteps == 170 and loaded._n_updates == 70


# -- rl_zoo3 -------------------------------------------------------------------------------------------------------
def read_config(path: Path) -> dict:
    namespace: dict = {}
    exec(path.read_text(), namespace)
    return namespace["hyperparams"]


def test_zoo_registration_and_configs():
    table: dict = {"td3": object}
    assert register_zoo_algos(table) is table and table["dacer"] is DACER and ZOO_ALGOS["dacer"] is DACER
    algo_kwargs = set(inspect.signature(DACER).parameters)
    zoo_only = {"n_timesteps", "callback", "policy", "n_envs"}
    expected_callbacks = {
        "dacer.py": {},
        "dacer_redo.py": {"sb3_plasticity.ReDoCallback": {"reset_freq": 20_000, "tau": 0.02}},
        "dacer_regrama.py": {"sb3_plasticity.GraMaResetCallback": {"reset_freq": 20_000, "tau": 0.01}},
    }
    settings = []
    for name, resets in expected_callbacks.items():
        config = read_config(ZOO / name)
        assert set(config) == {"Ant-v5", "Walker2d-v5"}
        text = (ZOO / name).read_text()
        assert text.startswith("#") and "python -m sb3_plasticity.zoo_plugin train --algo dacer" in text
        for env_id, hp in config.items():
            gym.spec(env_id)
            assert set(hp) - zoo_only <= algo_kwargs
            kwargs = eval(hp["policy_kwargs"], vars(rl_zoo3.exp_manager))
            assert kwargs == dict(net_arch=[256, 256, 256], activation_fn=th.nn.Mish, diffusion_steps=20, noise_scale=0.1)
            # GraMa Table 5 and the official code
            assert (hp["learning_rate"], hp["alpha_learning_rate"], hp["batch_size"], hp["tau"]) == (3e-4, 3e-2, 256, 0.005)
            assert (hp["policy_delay"], hp["reward_scale"], hp["gamma"], hp["buffer_size"]) == (2, 1.0, 0.99, 1_000_000)
            assert (hp["n_envs"], hp["train_freq"], hp["n_timesteps"], hp["learning_starts"]) == (20, 1, 30_000_000, 30_000)
            callbacks = {k: v for item in hp["callback"] for k, v in item.items()}
            assert callbacks.pop("sb3_plasticity.PlasticityMonitorCallback") == {
                "log_freq": 20_000,
                "tau": 0.02,
                "grama_tau": 0.01,
            }
            assert callbacks == resets
            settings.append({k: v for k, v in hp.items() if k != "callback"})
    assert all(s == settings[0] for s in settings)
    ReDoCallback(**expected_callbacks["dacer_redo.py"]["sb3_plasticity.ReDoCallback"])
    GraMaResetCallback(**expected_callbacks["dacer_regrama.py"]["sb3_plasticity.GraMaResetCallback"])


@pytest.mark.slow
def test_zoo_train_and_enjoy(tmp_path):
    """``python -m sb3_plasticity.zoo_plugin train/enjoy --algo dacer`` with ``zoo_configs/grama/dacer_regrama.py``."""
    conf = tmp_path / "fast_dacer.py"
    conf.write_text(
        f"exec(open({str(ZOO / 'dacer_regrama.py')!r}).read())\n"
        "hp = dict(hyperparams['Walker2d-v5'])\n"
        "hp.update(n_envs=2, buffer_size=1000, batch_size=16, learning_starts=100, alpha_update_interval=50,\n"
        "          entropy_samples=8, policy_kwargs='dict(net_arch=[16, 16], diffusion_steps=3)')\n"
        "hp['callback'] = [{'sb3_plasticity.GraMaResetCallback': {'reset_freq': 100, 'tau': 0.01}},\n"
        "                  {'sb3_plasticity.PlasticityMonitorCallback': {'log_freq': 100}}]\n"
        "hyperparams = {'Pendulum-v1': hp}\n"
    )
    common = ["--algo", "dacer", "--env", "Pendulum-v1", "--gym-packages", "sb3_plasticity", "--seed", "0"]
    train = [*common, "--num-threads", "1", "--conf-file", str(conf), "-n", "400", "--eval-freq", "-1", "-tb", "tb"]
    for args in (["train", *train, "-f", "logs"], ["enjoy", *common, "-f", "logs", "-n", "20", "--no-render"]):
        cmd = [sys.executable, "-m", "sb3_plasticity.zoo_plugin", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=SINGLE_THREAD_ENV)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scalars = read_scalars(tmp_path / "tb")
    for network in ("actor", "critic", "critic_target"):
        assert f"plasticity/{network}/dormant_ratio" in scalars
    assert "plasticity/regrama/reset_count" in scalars and "train/entropy" in scalars
