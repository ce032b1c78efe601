"""DrQ-v2 (``sb3_plasticity.DrQV2``): known answers for the n-step target, the std schedule and the gradient flow,
save/load, ``learn()`` with the package's callbacks (monitor, ReDo, NE on the masked policy) and the rl_zoo3 route."""

from __future__ import annotations

import inspect
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import rl_zoo3.exp_manager
import torch as th
from helpers import SINGLE_THREAD_ENV, Recorder, read_scalars
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.logger import Logger

from sb3_plasticity import (
    DrQNStepReplayBuffer,
    DrQV2,
    DrQV2Policy,
    ExperienceReviewBuffer,
    GraMaResetCallback,
    MaskedDrQV2Policy,
    MaskedLinear,
    NeuroplasticExpansionCallback,
    PlasticityMonitorCallback,
    ReDoCallback,
    discover,
)
from sb3_plasticity.algos import ZOO_ALGOS, register_zoo_algos
from sb3_plasticity.algos.drqv2 import NStepExperienceReviewBuffer, StdSchedule, noisy_action
from sb3_plasticity.zoo_plugin import DRQV2_SCHEDULES, main

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo_configs" / "drqv2"
OBS_SHAPE = (3, 24, 24)  # 24x24 frames: the 4 convolutions leave 5x5
ACTION_DIM = 5  # FakeImageEnv's Box actions
TINY = dict(net_arch=[32, 32], feature_dim=8, features_extractor_kwargs=dict(n_filters=8))


def image_env() -> FakeImageEnv:
    return FakeImageEnv(
        screen_height=OBS_SHAPE[1], screen_width=OBS_SHAPE[2], n_channels=3, discrete=False, channel_first=True
    )


def make(policy=DrQV2Policy, **kwargs) -> DrQV2:
    kw = dict(learning_starts=100, batch_size=32, buffer_size=1000, policy_kwargs=TINY, seed=0, device="cpu")
    kw.update(kwargs)
    return DrQV2(policy, image_env(), **kw)


def recorder(model: DrQV2) -> Recorder:
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    return rec


def frame(value: int) -> np.ndarray:
    return np.full((1, *OBS_SHAPE), value, dtype=np.uint8)


def fill(buffer: ReplayBuffer, rewards, terminated=(), truncated=()) -> None:
    """Transition t: obs = frame(t), next_obs = frame(t + 1), reward rewards[t]; episode ends where asked."""
    for t, reward in enumerate(rewards):
        done = t in terminated or t in truncated
        infos = [{"TimeLimit.truncated": t in truncated}]
        action = np.zeros((1, ACTION_DIM), dtype=np.float32)
        buffer.add(frame(t), frame(t + 1), action, np.array([reward], dtype=np.float32), np.array([done]), infos)


def constant_target_q(model: DrQV2, values=(5.0, 3.0)) -> float:
    """Make each target Q-network output a constant (zero output weights, bias = value); returns their min."""
    with th.no_grad():
        for q_net, value in zip(model.critic_target.q_networks, values, strict=True):
            q_net[-1].weight.zero_()
            q_net[-1].bias.fill_(value)
    return min(values)


# -- known answers ----------------------------------------------------------------------------------------------
GAMMA = 0.9
REWARDS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]


@pytest.mark.parametrize(
    "case, expected, last",
    [
        # r0 + g r1 + g^2 r2 + g^3 min Q'(s3): no episode end within 3 steps
        ("none", 1 + 0.9 * 2 + 0.81 * 4 + 0.729 * 3.0, 2),
        # the episode terminates at t = 1: r0 + g r1, no bootstrap
        ("terminated", 1 + 0.9 * 2, 1),
        # time limit at t = 1: r0 + g r1 + g^2 min Q'(s2)
        ("truncated", 1 + 0.9 * 2 + 0.81 * 3.0, 1),
    ],
)
@pytest.mark.parametrize("buffer_class", [None, NStepExperienceReviewBuffer])
def test_n_step_target_known_answer(case, expected, last, buffer_class):
    model = make(gamma=GAMMA, buffer_size=16, replay_buffer_class=buffer_class)
    buffer = model.replay_buffer
    assert isinstance(buffer, NStepReplayBuffer) and (buffer.n_steps, buffer.gamma) == (3, GAMMA)
    q_min = constant_target_q(model)
    assert q_min == 3.0
    fill(buffer, REWARDS, terminated=(1,) if case == "terminated" else (), truncated=(1,) if case == "truncated" else ())
    data = buffer._get_samples(np.array([0]))
    assert th.equal(data.next_observations, th.as_tensor(frame(last + 1)))  # s' of the last summed step
    target = model.target_q(data, std=0.5)
    assert target.shape == (1, 1)
    assert float(target) == pytest.approx(expected, rel=1e-6)


def test_one_step_target_known_answer():
    model = make(gamma=GAMMA, buffer_size=16, n_steps=1)
    assert type(model.replay_buffer) is ReplayBuffer
    q_min = constant_target_q(model)
    fill(model.replay_buffer, REWARDS)
    data = model.replay_buffer._get_samples(np.array([0]))
    assert float(model.target_q(data, std=0.0)) == pytest.approx(1 + GAMMA * q_min, rel=1e-6)


def test_std_schedule_values():
    linear = StdSchedule("linear(1.0,0.1,500000)")
    assert linear(0) == pytest.approx(1.0)
    assert linear(250_000) == pytest.approx(0.55)
    assert linear(500_000) == pytest.approx(0.1)
    assert linear(2_000_000) == pytest.approx(0.1)
    step = StdSchedule("step_linear(1.0,0.5,100,0.1,100)")
    assert [step(t) for t in (0, 50, 100, 150, 200, 1000)] == pytest.approx([1.0, 0.75, 0.5, 0.3, 0.1, 0.1])
    assert StdSchedule(0.2)(10**9) == pytest.approx(0.2)
    assert StdSchedule(lambda t: 1.0 / (1 + t))(3) == pytest.approx(0.25)
    for bad in ("cosine(1,0,10)", "linear(1.0,0.1)", "linear(1,0.1,0)", -0.1, None):
        with pytest.raises(ValueError, match="std_schedule"):
            StdSchedule(bad)
    # the algorithm reads the schedule at its env step; the default is DrQ-v2's medium schedule
    model = make()
    assert model.std_schedule == "linear(1.0,0.1,500000)" == DRQV2_SCHEDULES["medium"][0]
    for t, std in ((0, 1.0), (250_000, 0.55), (500_000, 0.1)):
        model.num_timesteps = t
        assert model.exploration_std == pytest.approx(std)


def test_noisy_action_clip_and_straight_through_gradient():
    mean = th.tensor([[0.9999999, 0.0, -0.5]], requires_grad=True)
    action = noisy_action(mean, std=0.0, clip=0.3)
    assert action.detach().max() <= 1 - 1e-6
    action.sum().backward()
    assert th.equal(mean.grad, th.ones_like(mean))  # the clamp passes the gradient straight through
    th.manual_seed(0)
    wide = noisy_action(th.zeros(10_000, 1), std=100.0, clip=0.3)
    assert wide.abs().max() <= 0.3 + 1e-6 and wide.abs().max() > 0.29


def test_encoder_trained_by_critic_loss_only():
    model = make()
    fill(model.replay_buffer, list(range(40)))
    data = model.augment(model.replay_buffer.sample(8))
    parameters = {
        "encoder": list(model.encoder.parameters()),
        "actor": list(model.actor.parameters()),
        "critic": list(model.critic.parameters()),
    }
    # the encoder is in the critic's optimizer (DrQ-v2's encoder Adam steps with the critic's), not the actor's
    critic_params = {id(p) for group in model.critic.optimizer.param_groups for p in group["params"]}
    actor_params = {id(p) for group in model.actor.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in critic_params and id(p) not in actor_params for p in parameters["encoder"])

    loss, features, _ = model.critic_loss(data, std=0.5)
    loss.backward()
    for net in ("encoder", "critic"):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in parameters[net]), net
    assert all(p.grad is None for p in parameters["actor"])  # the target's actor pass has no gradient

    for params in parameters.values():
        for p in params:
            p.grad = None
    model.actor_loss(features, std=0.5).backward()
    assert all(p.grad is None for p in parameters["encoder"])  # the actor sees detached features
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.actor.mu.parameters())


def test_predict_deterministic_is_the_mean_and_noise_follows_the_schedule():
    model = make(std_schedule="linear(1.0,0.1,100)")
    obs = np.stack([image_env().observation_space.sample() for _ in range(64)])
    with th.no_grad():
        mean = model.actor(th.as_tensor(obs)).numpy()
    action, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(action, mean, atol=1e-6)
    model.num_timesteps = 0
    model.policy.exploration_std = model.exploration_std
    noisy, _ = model.predict(obs, deterministic=False)
    assert np.abs(noisy).max() <= 1.0
    assert np.std(noisy - mean) == pytest.approx(1.0, rel=0.3)  # clipping at +-1 lowers it a little


def test_save_load_round_trip(tmp_path):
    model = make(std_schedule="linear(1.0,0.1,200)")
    model.learn(150)
    assert model._n_updates == 25  # train every 2 steps after learning_starts=100
    obs = np.stack([image_env().observation_space.sample() for _ in range(16)])
    expected, _ = model.predict(obs, deterministic=True)
    model.save(tmp_path / "drqv2.zip")
    loaded = DrQV2.load(tmp_path / "drqv2.zip", device="cpu")
    assert type(loaded.policy) is DrQV2Policy and loaded.num_timesteps == 150 and loaded._n_updates == 25
    assert loaded.std_schedule == "linear(1.0,0.1,200)"
    assert loaded.exploration_std == pytest.approx(model.exploration_std) == pytest.approx(1.0 - 0.9 * 150 / 200)
    assert loaded.policy.exploration_std == pytest.approx(loaded.exploration_std)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    for name in ("actor", "critic"):
        saved = getattr(model, name).optimizer.state_dict()["state"]
        restored = getattr(loaded, name).optimizer.state_dict()["state"]
        assert saved.keys() == restored.keys() and all(th.equal(saved[k]["exp_avg"], restored[k]["exp_avg"]) for k in saved)
    # the target reads the online encoder, also after loading (no private copy)
    assert loaded.critic_target.features_extractor is loaded.policy.features_extractor is loaded.actor.features_extractor
    model.policy.save(tmp_path / "policy.pth")
    policy = DrQV2Policy.load(tmp_path / "policy.pth", device="cpu")
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], expected)
    loaded.set_env(image_env())
    loaded.learn(20, reset_num_timesteps=False)  # training resumes from the loaded state
    assert loaded.num_timesteps == 170 and loaded._n_updates == 35


def test_errors_and_buffers():
    with pytest.raises(ValueError, match="image observation space"):
        DrQV2("CnnPolicy", gym.make("Pendulum-v1"), device="cpu")
    with pytest.raises(ValueError, match="std_schedule"):
        make(std_schedule="exp(1)")
    with pytest.raises(ValueError, match="augmentation_pad"):
        make(augmentation_pad=-1)
    with pytest.raises(ValueError, match="too small"):
        DrQV2("CnnPolicy", FakeImageEnv(screen_height=8, screen_width=8, discrete=False, channel_first=True), device="cpu")
    assert make()._augment and not make(augmentation_pad=0)._augment
    # a buffer that shifts images itself: DrQV2 does not shift them a second time
    shifted = make(replay_buffer_class=DrQNStepReplayBuffer)
    assert not shifted._augment and shifted.replay_buffer.n_steps == 3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        review = make(replay_buffer_class=NStepExperienceReviewBuffer, replay_buffer_kwargs=dict(review_window=5))
    assert not [w for w in caught if "n_steps" in str(w.message)]  # SB3's "n_steps is ignored" does not apply
    assert isinstance(review.replay_buffer, ExperienceReviewBuffer) and review.replay_buffer.review_window == 5


# -- learn() with the package's callbacks ------------------------------------------------------------------------
def test_learn_with_monitor_and_redo():
    model = make(std_schedule="linear(1.0,0.1,300)")
    neurons = discover(model)
    assert set(neurons.networks) == {"features", "actor", "critic", "critic_target"}
    assert [g.name for g in neurons.networks["actor"]] == ["trunk.0", "mu.0", "mu.2"]
    assert [c.name for c in neurons.networks["critic"][0].consumers] == ["qf0.0", "qf1.0"]
    assert neurons.networks["critic"][1].twin is neurons.networks["critic_target"][1]
    rec = recorder(model)
    monitor = PlasticityMonitorCallback(log_freq=100)
    redo = ReDoCallback(reset_freq=100, tau=0.9)
    model.learn(300, callback=[monitor, redo])
    for network in ("features", "actor", "critic", "critic_target"):
        values = [v for _, v in rec.values(f"plasticity/{network}/dormant_ratio")]
        assert len(values) >= 2 and all(0.0 <= v <= 1.0 for v in values), network
    for key in ("actor/mu.0", "actor/trunk.0", "critic/qf1.2", "features/features_extractor.cnn.6"):
        assert rec.values(f"plasticity/{key}/active_ratio"), key
    assert rec.values("plasticity/critic/grama_inactive_ratio") and rec.values("plasticity/features/grad_norm")
    counts = rec.values("plasticity/redo/reset_count")
    assert len(counts) == 3 and redo.total_reset > 0
    assert {net for net, _ in redo.last_counts} == {"features", "actor", "critic"}  # target twins follow
    stds = [v for _, v in rec.values("train/exploration_std")]
    assert stds == sorted(stds, reverse=True) and stds[-1] < 0.5
    assert rec.values("train/critic_loss") and rec.values("train/actor_loss")


def test_learn_with_regrama():
    model = make()
    rec = recorder(model)
    regrama = GraMaResetCallback(reset_freq=100, tau=0.5)
    model.learn(300, callback=regrama)
    # scored on the gradients of the algorithm's own training pass: the encoder's come from the critic loss
    assert len(rec.values("plasticity/regrama/reset_count")) == 3 and regrama.total_reset > 0
    assert rec.values("plasticity/regrama/features/grama_inactive_ratio_before")


def test_masked_policy_grows_with_neuroplastic_expansion():
    model = make(
        MaskedDrQV2Policy,
        replay_buffer_class=NStepExperienceReviewBuffer,
        replay_buffer_kwargs=dict(review_window=10, review_floor=0.18),
    )
    policy = model.policy
    masked = {
        "actor": [policy.actor.mu[0], policy.actor.mu[2]],
        "critic": [q[i] for q in policy.critic.q_networks for i in (0, 2)],
    }
    assert all(isinstance(layer, MaskedLinear) for layers in masked.values() for layer in layers)
    dense = [policy.actor.trunk[0], policy.critic.trunk[0], policy.actor.mu[4], policy.critic.qf0[4]]
    assert not any(isinstance(layer, MaskedLinear) for layer in dense)  # embedding and output layers stay dense

    def density(net):
        return sum(float(lay.mask.sum()) for lay in masked[net]) / sum(lay.mask.numel() for lay in masked[net])

    before = {net: density(net) for net in masked}
    assert before["actor"] == pytest.approx(0.25, abs=0.02) and before["critic"] == pytest.approx(0.25, abs=0.02)
    rec = recorder(model)
    ne = NeuroplasticExpansionCallback(grow_interval=100, grow_rate={"actor": 0.3, "critic": 0.5}, log_freq=100)
    model.learn(300, callback=ne)
    assert ne.n_events == 2 and ne.total_grown > 0
    for net in masked:
        assert density(net) > before[net]
        logged = [v for _, v in rec.values(f"plasticity/{net}/density")]
        assert logged[0] == pytest.approx(before[net]) and logged[-1] == pytest.approx(density(net))
    targets = dict(policy.critic_target.named_modules())
    for name, layer in policy.critic.named_modules():
        if isinstance(layer, MaskedLinear):
            assert th.equal(layer.mask, targets[name].mask)  # target masks follow
            assert not (layer.weight * (1 - layer.mask)).any()  # masked weights stay zero
    assert rec.values("plasticity/neuroplastic_expansion/epsilon") and model.replay_buffer.n_steps == 3


# -- rl_zoo3 -------------------------------------------------------------------------------------------------------
def read_config(path: Path) -> dict:
    namespace: dict = {}
    exec(path.read_text(), namespace)
    return namespace["hyperparams"]


def test_zoo_registration(monkeypatch, capsys):
    # importing sb3_plasticity never imports rl_zoo3
    code = "import sys, sb3_plasticity; assert 'rl_zoo3' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=SINGLE_THREAD_ENV, timeout=120)
    table: dict = {"td3": object}
    assert register_zoo_algos(table) is table and table["drqv2"] is DrQV2 and ZOO_ALGOS["drqv2"] is DrQV2
    assert register_zoo_algos()["drqv2"] is DrQV2  # rl_zoo3.utils.ALGOS
    # the train script built by the plugin accepts --algo drqv2
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0 and "drqv2" in capsys.readouterr().out


def test_zoo_configs_follow_the_papers():
    algo_kwargs = set(inspect.signature(DrQV2).parameters)
    zoo_only = {"n_timesteps", "callback", "policy"}
    config = read_config(ZOO / "drqv2.py")
    assert len(config) == 5
    for env_id, hp in config.items():
        gym.spec(env_id)
        assert set(hp) - zoo_only <= algo_kwargs
        assert hp["policy"] == "sb3_plasticity.DrQV2Policy"
        assert hp["policy_kwargs"] == {"net_arch": [1024, 1024], "feature_dim": 50}
        assert (hp["learning_rate"], hp["batch_size"], hp["gamma"], hp["tau"]) == (1e-4, 256, 0.99, 0.01)
        assert (hp["train_freq"], hp["n_steps"], hp["learning_starts"], hp["std_clip"]) == (2, 3, 2000, 0.3)
        assert hp["callback"] == [{"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}}]
        StdSchedule(hp["std_schedule"])
    assert config["sb3_plasticity/DMCPixels-walker-walk-v0"]["std_schedule"] == "linear(1.0,0.1,100000)"
    assert config["sb3_plasticity/DMCPixels-quadruped-run-v0"]["n_timesteps"] == 1_500_000
    ne_config = read_config(ZOO / "ne_drqv2.py")
    assert len(ne_config) == 4
    for hp in ne_config.values():
        assert hp["policy"] == "sb3_plasticity.MaskedDrQV2Policy" and hp["policy_kwargs"]["initial_density"] == 0.25
        assert eval(hp["replay_buffer_class"], vars(rl_zoo3.exp_manager)) is NStepExperienceReviewBuffer
        assert hp["replay_buffer_kwargs"] == {"review_window": 250, "review_floor": 0.18}
        callbacks = {k: v for item in hp["callback"] for k, v in item.items()}
        ne_kwargs = callbacks["sb3_plasticity.NeuroplasticExpansionCallback"]
        assert ne_kwargs == {
            "grow_interval": 20000,
            "grow_rate": {"actor": 0.01, "critic": 0.02},
            "prune_ratio": 0.23,
            "clip_kappa": 2.0,
        }
        NeuroplasticExpansionCallback(**ne_kwargs)
    for path in (ZOO / "drqv2.py", ZOO / "ne_drqv2.py"):
        assert (
            path.read_text().startswith("#") and "python -m sb3_plasticity.zoo_plugin train --algo drqv2" in path.read_text()
        )


@pytest.mark.slow
def test_zoo_train_and_enjoy(tmp_path):
    """``python -m sb3_plasticity.zoo_plugin train/enjoy --algo drqv2`` with ``zoo_configs/drqv2/drqv2.py``."""
    conf = tmp_path / "fast_drqv2.py"
    conf.write_text(
        f"exec(open({str(ZOO / 'drqv2.py')!r}).read())\n"
        "for hp in hyperparams.values():\n"
        "    hp.update(buffer_size=500, batch_size=16, learning_starts=100)\n"
        "    hp['policy_kwargs'] = dict(net_arch=[32, 32], feature_dim=8)\n"
        "    hp['callback'] = [{'sb3_plasticity.PlasticityMonitorCallback': {'log_freq': 100}}]\n"
    )
    env_id = "sb3_plasticity/DMCPixels-cartpole-swingup_sparse-v0"
    common = ["--algo", "drqv2", "--env", env_id, "--gym-packages", "sb3_plasticity", "--seed", "0", "--num-threads", "1"]
    train = [*common, "--conf-file", str(conf), "-n", "300", "--eval-freq", "-1", "-tb", "tb", "-f", "logs"]
    env = {"MUJOCO_GL": "egl", **SINGLE_THREAD_ENV}
    for args in (["train", *train], ["enjoy", *common, "-f", "logs", "-n", "20", "--no-render"]):
        cmd = [sys.executable, "-m", "sb3_plasticity.zoo_plugin", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env, check=False)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scalars = read_scalars(tmp_path / "tb")
    for network in ("features", "actor", "critic", "critic_target"):
        assert f"plasticity/{network}/dormant_ratio" in scalars
    assert "train/critic_loss" in scalars and "train/exploration_std" in scalars
