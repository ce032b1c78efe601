"""PlasticityMonitorCallback inside real ``learn()`` runs: tags, value ranges, schedule, hooks and errors."""

from __future__ import annotations

import copy
import math

import gymnasium as gym
import pytest
from helpers import (
    NETWORK_METRICS,
    NORM_METRICS,
    ONLINE_ONLY_METRICS,
    RATIO_METRICS,
    HookSpy,
    RaiseAt,
    Scalars,
    forward_hook_count,
    image_env,
    layer_metrics,
    logged_networks,
    model_optimizers,
    network_metrics,
    plasticity_scalars,
    read_scalars,
    run_dirs,
    split_tag,
)
from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3
from stable_baselines3.common.callbacks import EvalCallback

from sb3_plasticity import PlasticityMonitorCallback

WIDTH = 32
ARCH = dict(net_arch=[WIDTH, WIDTH])
LEARNING_STARTS = 100
OFF_POLICY = dict(learning_starts=LEARNING_STARTS, buffer_size=1000, batch_size=64, policy_kwargs=ARCH)
PPO_KW = dict(n_steps=64, batch_size=32, n_epochs=2, policy_kwargs=ARCH)
A2C_KW = dict(policy_kwargs=ARCH)  # n_steps=5: one 5-sample batch per train()

ALL = NETWORK_METRICS | ONLINE_ONLY_METRICS
MU = {"mu.0", "mu.2"}
QF = {"qf0.0", "qf0.2", "qf1.0", "qf1.2"}
QF_DDPG = {"qf0.0", "qf0.2"}  # one critic
LATENT_PI = {"latent_pi.0", "latent_pi.2"}
PI = {"mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2"}
VF = {"mlp_extractor.value_net.0", "mlp_extractor.value_net.2"}
CONV = ("features_extractor.cnn.0", "features_extractor.cnn.2", "features_extractor.cnn.4")
CNN_FEATURES_DIM = 64
CNN_KW = dict(features_extractor_kwargs=dict(features_dim=CNN_FEATURES_DIM))

TD3_NETS = {"actor": MU, "critic": QF, "actor_target": MU, "critic_target": QF}
DDPG_NETS = {"actor": MU, "critic": QF_DDPG, "actor_target": MU, "critic_target": QF_DDPG}
SAC_NETS = {"actor": LATENT_PI, "critic": QF, "critic_target": QF}
AC_NETS = {"policy": PI, "value": VF}
FIRST_OFF_POLICY_TRAIN = LEARNING_STARTS + 1  # off-policy trains once num_timesteps > learning_starts

# (algorithm, env id, kwargs, {network: per-layer names}, first env step at which train() runs)
MLP_CASES = [
    pytest.param(TD3, "Pendulum-v1", OFF_POLICY, TD3_NETS, FIRST_OFF_POLICY_TRAIN, id="td3"),
    pytest.param(DDPG, "Pendulum-v1", OFF_POLICY, DDPG_NETS, FIRST_OFF_POLICY_TRAIN, id="ddpg"),
    pytest.param(SAC, "Pendulum-v1", OFF_POLICY, SAC_NETS, FIRST_OFF_POLICY_TRAIN, id="sac"),
    pytest.param(PPO, "CartPole-v1", PPO_KW, AC_NETS, PPO_KW["n_steps"], id="ppo"),
    pytest.param(A2C, "CartPole-v1", A2C_KW, AC_NETS, 5, id="a2c-cartpole"),
    pytest.param(A2C, "Pendulum-v1", A2C_KW, AC_NETS, 5, id="a2c-pendulum"),
]


def make(algo, env, tmp_path, policy="MlpPolicy", **kwargs):
    # Deep copy: DDPG writes n_critics=1 into the policy_kwargs dict it is given.
    return algo(policy, env, tensorboard_log=str(tmp_path), seed=0, device="cpu", **copy.deepcopy(kwargs))


def expected_metrics(network: str, conv: bool = False) -> set[str]:
    metrics = set(NETWORK_METRICS if network.endswith("_target") else ALL)
    if conv:
        metrics.discard("effective_rank")  # computed for Linear layers only
    return metrics


def check_values(scalars: Scalars, max_rank: int) -> int:
    """Every plasticity value is in its range; returns how many values were checked."""
    checked = 0
    for tag, values in plasticity_scalars(scalars).items():
        metric = split_tag(tag)[2]
        for _, v in values:
            assert math.isfinite(v), (tag, v)
            if metric in RATIO_METRICS:
                assert 0.0 <= v <= 1.0, (tag, v)
            elif metric in NORM_METRICS:
                assert v >= 0.0, (tag, v)
            elif metric == "effective_rank":
                assert 1.0 <= v <= max_rank + 1e-6, (tag, v)
            else:
                raise AssertionError(f"unknown metric in {tag}")
            checked += 1
    return checked


def check_structure(scalars: Scalars, layers: dict[str, set[str]], conv_layers: set[str] = frozenset()) -> None:
    """Exactly the given networks, each with its full metric set, per layer too."""
    assert logged_networks(scalars) == set(layers)
    for network, names in layers.items():
        assert network_metrics(scalars, network) == expected_metrics(network), network
        per_layer = layer_metrics(scalars, network)
        assert set(per_layer) == names, network
        ranked = set()
        for layer, metrics in per_layer.items():
            expected = expected_metrics(network, conv=layer in conv_layers)
            if network.endswith("_target"):
                # target networks get the (costly) per-layer rank on their last hidden layers only
                expected.discard("effective_rank")
                if "effective_rank" in metrics:
                    ranked.add(layer)
                    metrics = metrics - {"effective_rank"}
            assert metrics == expected, (network, layer)
        if network.endswith("_target"):
            assert ranked and ranked != set(names) - set(conv_layers), (network, ranked)


def assert_no_hooks(model) -> None:
    assert forward_hook_count(model.policy.modules()) == 0
    for opt in model_optimizers(model):
        assert len(opt._optimizer_step_pre_hooks) == 0


# ----------------------------------------------------------------------------------------------------
# Tags and values
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo, env_id, kwargs, layers, first_train", MLP_CASES)
def test_logs_every_network_with_valid_values(tmp_path, algo, env_id, kwargs, layers, first_train):
    model = make(algo, env_id, tmp_path, **kwargs)
    monitor = PlasticityMonitorCallback(log_freq=100)
    model.learn(300, callback=monitor)
    scalars = read_scalars(tmp_path)

    check_structure(scalars, layers)
    assert check_values(scalars, max_rank=WIDTH) > 0

    measured = 0
    for network in layers:
        steps = [s for s, _ in scalars[f"plasticity/{network}/dormant_ratio"]]
        measured += len(steps)
        # Several measurements, one value per step, none before the first training pass.
        assert len(steps) >= 2 and len(set(steps)) == len(steps), (network, steps)
        assert first_train <= min(steps) and max(steps) <= model.num_timesteps, (network, steps)
        for metric in expected_metrics(network):
            assert [s for s, _ in scalars[f"plasticity/{network}/{metric}"]] == steps, (network, metric)
    assert monitor.n_logged == measured
    if algo in (TD3, DDPG, SAC):
        # 300 steps = 1 finished 200-step episode: SB3 (log_interval=4 episodes) never dumped by itself,
        # so the steps above come from the monitor's own dumps.
        assert "rollout/ep_rew_mean" not in scalars


def test_td3_critic_layer_tag(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    model.learn(200, callback=PlasticityMonitorCallback(log_freq=100))
    scalars = read_scalars(tmp_path)
    assert "plasticity/critic/qf0.0/dormant_ratio" in scalars
    assert "plasticity/critic/qf1.2/grama_inactive_ratio" in scalars
    assert "plasticity/critic_target/qf0.0/dormant_ratio" in scalars
    assert "plasticity/critic_target/qf0.0/grama_inactive_ratio" not in scalars
    assert "plasticity/critic_target/grad_norm" not in scalars
    assert "plasticity/actor_target/grad_norm" not in scalars


def test_ppo_cnn_shared_features(tmp_path):
    model = make(
        PPO, image_env(discrete=True), tmp_path, "CnnPolicy", n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=CNN_KW
    )
    model.learn(128, callback=PlasticityMonitorCallback(log_freq=64))
    scalars = read_scalars(tmp_path)
    # CnnPolicy's default net_arch is []: the heads read the shared extractor directly, so the policy and
    # value networks have no hidden neurons and only the shared extractor is logged.
    check_structure(scalars, {"features": {*CONV, "features_extractor.linear.0"}}, conv_layers=set(CONV))
    assert "plasticity/features/features_extractor.cnn.0/dormant_ratio" in scalars
    assert len(scalars["plasticity/features/features_extractor.cnn.4/active_ratio"]) == 2
    assert check_values(scalars, max_rank=CNN_FEATURES_DIM) > 0


def test_ppo_cnn_separate_extractors(tmp_path):
    model = make(
        PPO,
        image_env(discrete=True),
        tmp_path,
        "CnnPolicy",
        n_steps=64,
        batch_size=32,
        n_epochs=1,
        policy_kwargs=dict(share_features_extractor=False, **CNN_KW),
    )
    model.learn(64, callback=PlasticityMonitorCallback(log_freq=64))
    scalars = read_scalars(tmp_path)
    pi_conv = {c.replace("features_extractor", "pi_features_extractor") for c in CONV}
    vf_conv = {c.replace("features_extractor", "vf_features_extractor") for c in CONV}
    layers = {"policy": {*pi_conv, "pi_features_extractor.linear.0"}, "value": {*vf_conv, "vf_features_extractor.linear.0"}}
    check_structure(scalars, layers, conv_layers=pi_conv | vf_conv)
    assert not any(tag.startswith("plasticity/features/") for tag in scalars)
    assert "plasticity/policy/pi_features_extractor.cnn.0/dormant_ratio" in scalars
    assert "plasticity/value/vf_features_extractor.cnn.0/dormant_ratio" in scalars
    assert check_values(scalars, max_rank=CNN_FEATURES_DIM) > 0


def test_td3_cnn(tmp_path):
    env = image_env(discrete=False, action_dim=2)
    model = make(
        TD3,
        env,
        tmp_path,
        "CnnPolicy",
        learning_starts=LEARNING_STARTS,
        buffer_size=500,
        batch_size=32,
        policy_kwargs=dict(net_arch=[WIDTH, WIDTH], **CNN_KW),
    )
    model.learn(200, callback=PlasticityMonitorCallback(log_freq=100))
    scalars = read_scalars(tmp_path)
    features = {*CONV, "features_extractor.linear.0"}
    layers = {
        "actor": features | MU,
        "critic": features | QF,
        "actor_target": features | MU,
        "critic_target": features | QF,
    }
    check_structure(scalars, layers, conv_layers=set(CONV))
    assert "plasticity/critic/features_extractor.cnn.0/dormant_ratio" in scalars
    assert check_values(scalars, max_rank=CNN_FEATURES_DIM) > 0


# ----------------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------------
def test_networks_restricts_logging(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    monitor = PlasticityMonitorCallback(log_freq=100, networks=["critic"])
    model.learn(300, callback=monitor)
    scalars = read_scalars(tmp_path)
    check_structure(scalars, {"critic": QF})
    assert {g.network for g in monitor.capture.groups} == {"critic"}
    assert monitor.n_logged == len(scalars["plasticity/critic/dormant_ratio"]) >= 2


def test_network_name_as_string(tmp_path):
    model = make(PPO, "CartPole-v1", tmp_path, **PPO_KW)
    model.learn(64, callback=PlasticityMonitorCallback(log_freq=64, networks="value"))
    assert logged_networks(read_scalars(tmp_path)) == {"value"}


def test_per_layer_false(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    model.learn(200, callback=PlasticityMonitorCallback(log_freq=100, per_layer=False))
    scalars = read_scalars(tmp_path)
    tags = plasticity_scalars(scalars)
    assert tags and all(split_tag(tag)[1] is None for tag in tags)
    for network in ("actor", "critic", "actor_target", "critic_target"):
        assert network_metrics(scalars, network) == expected_metrics(network)


def test_excluded_from_stdout(tmp_path, capsys):
    model = make(TD3, "Pendulum-v1", tmp_path, verbose=1, **OFF_POLICY)
    model.learn(200, callback=PlasticityMonitorCallback(log_freq=100), log_interval=1)
    out = capsys.readouterr().out
    assert "ep_rew_mean" in out  # SB3's own table was printed
    assert "plasticity" not in out and "dormant" not in out
    assert "plasticity/critic/dormant_ratio" in read_scalars(tmp_path)


# ----------------------------------------------------------------------------------------------------
# Argument errors
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(log_freq=0), "^log_freq"),
        (dict(log_freq=-5), "^log_freq"),
        (dict(log_freq=1.5), "^log_freq"),
        (dict(log_freq=True), "^log_freq"),
        (dict(tau=-0.1), "^tau"),
        (dict(tau=float("nan")), "^tau"),
        (dict(grama_tau=-1), "^grama_tau"),
        (dict(networks=[]), "^networks"),
        (dict(rank_samples=0), "^rank_samples"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        PlasticityMonitorCallback(**kwargs)


@pytest.mark.parametrize(
    "algo, env_id, kwargs, bad, existing",
    [
        (TD3, "Pendulum-v1", OFF_POLICY, "critc", ["actor", "critic", "actor_target", "critic_target"]),
        (PPO, "CartPole-v1", PPO_KW, "actor", ["policy", "value"]),
    ],
)
def test_unknown_network_raises_at_learn_start(tmp_path, algo, env_id, kwargs, bad, existing):
    model = make(algo, env_id, tmp_path, **kwargs)
    monitor = PlasticityMonitorCallback(networks=[bad])  # names are checked against the model in learn()
    with pytest.raises(ValueError) as info:
        model.learn(200, callback=monitor)
    message = str(info.value)
    assert repr(bad) in message
    for name in existing:
        assert repr(name) in message
    assert model.num_timesteps == 0
    assert_no_hooks(model)


# ----------------------------------------------------------------------------------------------------
# What is recorded, and hooks
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "algo, env_id, kwargs, batch_size, n_networks, steps",
    [
        (TD3, "Pendulum-v1", OFF_POLICY, OFF_POLICY["batch_size"], 4, 150),
        (PPO, "CartPole-v1", PPO_KW, PPO_KW["batch_size"], 2, 64),
    ],
)
def test_rollout_and_eval_forwards_not_recorded(tmp_path, algo, env_id, kwargs, batch_size, n_networks, steps):
    model = make(algo, env_id, tmp_path, **kwargs)
    evaluation = EvalCallback(gym.make(env_id), eval_freq=50, n_eval_episodes=1, log_path=str(tmp_path / "eval"), verbose=0)
    monitor = PlasticityMonitorCallback(log_freq=100_000)  # armed at the first step, exactly one measurement
    model.learn(steps, callback=[evaluation, monitor])
    assert monitor.n_logged == n_networks
    # An evaluation (batch 1) ran while the capture was armed, before the first training pass, and so did
    # rollout forwards (batch 1, n_envs=1); the records are the training batch all the same.
    assert evaluation.evaluations_timesteps[0] == 50
    records = monitor.capture.records
    assert set(records) == set(monitor.capture.groups)
    for group, rec in records.items():
        assert rec.activation.shape[0] == batch_size, group
        if not group.is_target:
            assert rec.grad is not None and rec.grad.shape == rec.activation.shape, group


@pytest.mark.parametrize(
    "algo, env_id, kwargs",
    [(TD3, "Pendulum-v1", OFF_POLICY), (SAC, "Pendulum-v1", OFF_POLICY), (PPO, "CartPole-v1", PPO_KW)],
)
def test_hooks_removed_after_learn(tmp_path, algo, env_id, kwargs):
    model = make(algo, env_id, tmp_path, **kwargs)
    assert_no_hooks(model)
    monitor, spy = PlasticityMonitorCallback(log_freq=100), HookSpy()
    model.learn(300, callback=[monitor, spy])
    # While armed there was at least one forward hook per group and a step pre-hook per online optimizer.
    assert spy.max_forward >= len(monitor.capture.groups)
    assert spy.max_step_pre >= 1
    for group in monitor.capture.groups:
        assert len(group.output._forward_hooks) == 0, group
        assert len(group.producer._forward_hooks) == 0, group
        for opt in group.optimizers:
            assert len(opt._optimizer_step_pre_hooks) == 0, group
    assert_no_hooks(model)


@pytest.mark.parametrize("steps, logged", [(50, set()), (101, {"critic", "critic_target", "actor_target"})])
def test_hooks_removed_when_learn_ends_mid_measurement(tmp_path, steps, logged):
    # Armed from the first step; 50 steps: no training pass at all; 101 steps: one gradient step, in which
    # TD3 (policy_delay=2) updates the critic but not the actor, so the actor's measurement never completes.
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    monitor, spy = PlasticityMonitorCallback(log_freq=100), HookSpy()
    model.learn(steps, callback=[monitor, spy])
    assert spy.max_forward > 0
    assert monitor.n_logged == len(logged)
    if logged:
        scalars = read_scalars(tmp_path)
        assert logged_networks(scalars) == logged
        assert [s for s, _ in scalars["plasticity/critic/dormant_ratio"]] == [101]
    assert_no_hooks(model)


def test_learn_twice_same_callback_no_stacking(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    monitor, spy = PlasticityMonitorCallback(log_freq=100), HookSpy()
    model.learn(300, callback=[monitor, spy])
    first = (spy.max_forward, spy.max_step_pre)
    n_first = monitor.n_logged
    assert first[0] > 0 and first[1] > 0
    spy.max_forward = spy.max_step_pre = 0
    model.learn(300, callback=[monitor, spy])  # new TensorBoard run (reset_num_timesteps=True)
    assert (spy.max_forward, spy.max_step_pre) == first
    assert monitor.n_logged == 2 * n_first
    assert_no_hooks(model)
    runs = run_dirs(tmp_path)
    assert len(runs) == 2
    for run in runs:
        steps = [s for s, _ in read_scalars(run)["plasticity/critic/grad_norm"]]
        assert len(steps) >= 2 and min(steps) > LEARNING_STARTS


def test_learn_again_after_interrupted_learn(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    monitor, spy = PlasticityMonitorCallback(log_freq=100), HookSpy()
    with pytest.raises(RuntimeError, match="interrupted"):
        model.learn(300, callback=[monitor, spy, RaiseAt(50)])  # armed, never trained, no on_training_end
    armed = (spy.max_forward, spy.max_step_pre)
    assert armed[0] > 0
    spy.max_forward = spy.max_step_pre = 0
    model.learn(300, callback=[monitor, spy])
    assert (spy.max_forward, spy.max_step_pre) == armed  # the leftover hooks were removed, not stacked
    assert_no_hooks(model)
    assert "plasticity/actor/grad_norm" in read_scalars(run_dirs(tmp_path)[-1])


@pytest.mark.parametrize("reuse", [False, True], ids=["new-callback", "same-callback"])
def test_save_load_learn_again(tmp_path, reuse):
    model = make(TD3, "Pendulum-v1", tmp_path / "first", **OFF_POLICY)
    monitor = PlasticityMonitorCallback(log_freq=100)
    model.learn(200, callback=monitor)
    model.save(tmp_path / "td3.zip")
    loaded = TD3.load(
        tmp_path / "td3.zip", env=gym.make("Pendulum-v1"), device="cpu", tensorboard_log=str(tmp_path / "second")
    )
    again = monitor if reuse else PlasticityMonitorCallback(log_freq=100)
    n_before = again.n_logged
    loaded.learn(300, callback=again)
    scalars = read_scalars(tmp_path / "second")
    # grad_norm is logged only once the loaded model's (new) optimizers were hooked and stepped.
    check_structure(scalars, TD3_NETS)
    assert len(scalars["plasticity/critic/grad_norm"]) >= 2
    networks = ("actor", "critic", "actor_target", "critic_target")
    assert again.n_logged - n_before == sum(len(scalars[f"plasticity/{n}/dormant_ratio"]) for n in networks)
    loaded_params = {id(p) for p in loaded.policy.parameters()}
    assert all(id(g.producer.weight) in loaded_params for g in again.capture.groups)
    assert_no_hooks(loaded)
    assert_no_hooks(model)


def test_on_training_end_twice(tmp_path):
    model = make(TD3, "Pendulum-v1", tmp_path, **OFF_POLICY)
    monitor = PlasticityMonitorCallback(log_freq=100)
    model.learn(250, callback=monitor)
    n_logged = monitor.n_logged
    before = read_scalars(tmp_path)
    monitor.on_training_end()  # rl-zoo calls it again on the first callback of a config
    monitor.on_training_end()
    assert monitor.n_logged == n_logged
    assert read_scalars(tmp_path) == before
    assert_no_hooks(model)


def test_td3_train_freq_episode(tmp_path):
    # Training runs only at episode ends (every 200 steps); log_freq=100 arms at 1, 300 and 500.
    model = make(TD3, "Pendulum-v1", tmp_path, train_freq=(1, "episode"), gradient_steps=2, **OFF_POLICY)
    monitor = PlasticityMonitorCallback(log_freq=100)
    model.learn(600, callback=monitor)
    scalars = read_scalars(tmp_path)
    check_structure(scalars, TD3_NETS)
    for network in ("actor", "critic", "actor_target", "critic_target"):
        assert [s for s, _ in scalars[f"plasticity/{network}/dormant_ratio"]] == [200, 400, 600], network
    assert monitor.n_logged == 12
    assert check_values(scalars, max_rank=WIDTH) > 0
