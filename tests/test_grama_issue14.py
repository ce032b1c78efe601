"""GraMa issue 14: ResNet-SAC (Fig. 4(a)), score-based pruning during training (Fig. 7) and their zoo configs."""

import runpy
from pathlib import Path

import pytest
import torch as th
from stable_baselines3 import SAC

from sb3_plasticity import PlasticityMonitorCallback, ReDoCallback, ScorePruningCallback, discover
from sb3_plasticity.capture import GroupRecord
from sb3_plasticity.resnet_policies import ResNetMlp, ResNetSACPolicy

CONFS = Path(__file__).resolve().parent.parent / "zoo_configs" / "grama"


def _sac(policy="MlpPolicy", **policy_kwargs) -> SAC:
    return SAC(policy, "Pendulum-v1", policy_kwargs=policy_kwargs, learning_starts=100, batch_size=32, seed=0, device="cpu")


# ----------------------------------------------------------------------------------------------------
# ResNet-SAC
# ----------------------------------------------------------------------------------------------------
def test_resnet_mlp_is_residual():
    net = ResNetMlp(3, width=8, n_blocks=2, output_dim=1)
    x = th.randn(5, 3)
    stream = net.stem(x)
    for block in net.blocks:
        stream = stream + block.net(stream)
    assert th.allclose(net(x), net.head(stream))
    with pytest.raises(ValueError, match="net_arch"):
        _sac(ResNetSACPolicy, net_arch=[64, 64])


def test_resnet_sac_groups_monitor_and_redo_act(tmp_path):
    model = _sac(ResNetSACPolicy, width=16, critic_blocks=2)
    names = {g.key for g in discover(model).select()}
    assert names == {
        "actor/latent_pi.stem.0", "actor/latent_pi.blocks.0.net.0",
        *(f"{net}/qf{i}.{layer}" for net in ("critic", "critic_target") for i in (0, 1)
          for layer in ("stem.0", "blocks.0.net.0", "blocks.1.net.0")),
    }  # fmt: skip
    stem = discover(model).select(["critic"])[0]
    assert stem.name == "qf0.stem.0" and len(stem.consumers) == 3  # both blocks and the Q head read the stem
    redo = ReDoCallback(reset_freq=100, tau=0.5)  # a high tau: some neurons are always flagged
    monitor = PlasticityMonitorCallback(log_freq=100)
    model.learn(300, callback=[redo, monitor])
    assert redo.total_reset > 0 and redo.n_events >= 2
    path = tmp_path / "resnet"
    model.save(path)
    loaded = SAC.load(path, device="cpu")
    assert isinstance(loaded.policy, ResNetSACPolicy) and loaded.policy.critic_blocks == 2
    x = th.randn(4, 3)
    assert th.allclose(loaded.policy.actor.latent_pi(x), model.policy.actor.latent_pi(x))


# ----------------------------------------------------------------------------------------------------
# Score-based pruning
# ----------------------------------------------------------------------------------------------------
KILLED = 5


def _kill(model: SAC) -> None:
    """Neuron 5 of qf0's first hidden layer never fires: its ReLU output and its gradient are always 0."""
    with th.no_grad():
        model.critic.qf0[0].weight[KILLED] = 0.0
        model.critic.qf0[0].bias[KILLED] = -100.0


@pytest.mark.parametrize("score", ["redo", "grama"])
def test_pruning_removes_a_dead_neuron_for_good(score, tmp_path):
    model = _sac(net_arch=[32, 32])
    _kill(model)
    prune = ScorePruningCallback(score=score, tau=0.0, prune_freq=150, networks="critic")
    model.learn(200, callback=prune)
    mask = prune.pruned["critic/qf0.0"]
    assert bool(mask[KILLED])
    assert model.logger.name_to_value.get(f"plasticity/score_pruning/{score}/total_reset_count", 1) >= 1
    layer, target = model.critic.qf0[0], model.critic_target.qf0[0]
    # later optimizer steps (Adam moments, weight decay, Polyak) leave the pruned neurons at 0
    model.learn(150, callback=prune, reset_num_timesteps=False)
    for net in (layer, target):
        assert th.all(net.weight[mask] == 0) and th.all(net.bias[mask] == 0)
    x = th.randn(64, 4)
    assert th.all(model.critic.qf0[:2](x)[:, mask] == 0)
    # the zeros are in the saved weights; the masks in plasticity_state, and a resumed learn() keeps them
    path = tmp_path / "pruned"
    model.save(path)
    loaded = SAC.load(path, env=model.get_env(), device="cpu")
    assert bool(loaded.plasticity_state[prune.state_key]["pruned"]["critic/qf0.0"][KILLED])
    assert th.all(loaded.critic.qf0[0].weight[mask] == 0)
    resumed = ScorePruningCallback(score=score, tau=0.0, prune_freq=10_000, networks="critic")
    loaded.learn(100, callback=resumed, reset_num_timesteps=False)
    assert bool(resumed.pruned["critic/qf0.0"][KILLED])
    assert th.all(loaded.critic.qf0[:2](x)[:, mask] == 0)


def test_pruning_state_saved_under_the_old_method_name_resumes():
    # models saved before issue 12, when the tags and state key were "prune_<score>"
    source = _sac(net_arch=[32, 32])
    prune = ScorePruningCallback(score="redo", networks="critic")
    prune.init_callback(source)
    assert prune.state_key == "score_pruning/redo[critic]"
    prune.prune(next(g for g in prune.capture.groups if g.key == "critic/qf0.0"), [KILLED])
    model = _sac(net_arch=[32, 32])
    model.plasticity_state = {"prune_redo[critic]": prune.get_state()}
    assert not bool((model.critic.qf0[0].weight[KILLED] == 0).all())
    resumed = ScorePruningCallback(score="redo", networks="critic")
    resumed.init_callback(model)
    assert bool(resumed.pruned["critic/qf0.0"][KILLED]) and int(resumed.pruned["critic/qf0.0"].sum()) == 1
    assert th.all(model.critic.qf0[0].weight[KILLED] == 0) and model.critic.qf0[0].bias[KILLED] == 0
    assert set(model.plasticity_state) == {"score_pruning/redo[critic]"}


def test_pruning_score_ignores_pruned_neurons():
    model = _sac(net_arch=[8, 8])
    prune = ScorePruningCallback(score="redo", tau=0.0, prune_freq=100)
    model.learn(120, callback=prune)
    group = next(g for g in prune.capture.groups if g.key == "critic/qf0.0")
    prune.pruned = {}  # forget what learn() pruned
    prune.prune(group, [0, 1])
    act = th.ones(4, 8)
    act[:, :2] = 0
    scores = prune.score(group, GroupRecord(activation=act))
    assert th.isinf(scores[:2]).all() and th.allclose(scores[2:], th.ones(6))  # mean over the 6 kept neurons
    with pytest.raises(ValueError, match="score"):
        ScorePruningCallback(score="dormant")


# ----------------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "conf, policy, callback",
    [
        ("resnet_sac.py", "sb3_plasticity.ResNetSACPolicy", None),
        ("resnet_sac_redo.py", "sb3_plasticity.ResNetSACPolicy", ("sb3_plasticity.ReDoCallback", 0.02)),
        ("resnet_sac_regrama.py", "sb3_plasticity.ResNetSACPolicy", ("sb3_plasticity.GraMaResetCallback", 0.0)),
        ("bro_sac_prune_redo.py", "sb3_plasticity.BroNetSACPolicy", ("sb3_plasticity.ScorePruningCallback", 0.02)),
        ("bro_sac_prune_grama.py", "sb3_plasticity.BroNetSACPolicy", ("sb3_plasticity.ScorePruningCallback", 0.01)),
        ("bro_sac_pixels.py", "sb3_plasticity.BroNetSACPolicy", None),
        ("bro_sac_pixels_redo.py", "sb3_plasticity.BroNetSACPolicy", ("sb3_plasticity.ReDoCallback", 0.02)),
        ("bro_sac_pixels_regrama.py", "sb3_plasticity.BroNetSACPolicy", ("sb3_plasticity.GraMaResetCallback", 0.01)),
    ],
)
def test_configs(conf, policy, callback):
    hyperparams = runpy.run_path(str(CONFS / conf))["hyperparams"]
    assert hyperparams
    for env_id, hp in hyperparams.items():
        assert env_id.startswith("sb3_plasticity/DMC")
        assert hp["policy"] == policy
        names = [next(iter(c)) for c in hp["callback"]]
        assert "sb3_plasticity.PlasticityMonitorCallback" in names
        if callback is not None:
            name, tau = callback
            kwargs = hp["callback"][names.index(name)][name]
            assert kwargs["tau"] == tau
            assert kwargs.get("reset_freq", kwargs.get("prune_freq")) == 1000


def test_bro_net_behind_nature_cnn_builds_and_regrama_acts():
    """GraMa Fig. 1's pixel BRO-net: BroNetSACPolicy takes SB3's NatureCNN as it is (networks.py unchanged)."""
    from helpers import image_env
    from stable_baselines3.common.torch_layers import NatureCNN

    from sb3_plasticity import BroNetSACPolicy, GraMaResetCallback

    model = SAC(
        BroNetSACPolicy, image_env(discrete=False), policy_kwargs=dict(width=16, features_extractor_class=NatureCNN,
        features_extractor_kwargs=dict(features_dim=16)), learning_starts=20, batch_size=8, buffer_size=200, seed=0,
        device="cpu",
    )  # fmt: skip
    keys = {g.key for g in discover(model).select(["critic"])}
    assert "critic/features_extractor.cnn.0" in keys and "critic/qf0.stem.0" in keys
    regrama = GraMaResetCallback(reset_freq=30, tau=0.5)
    model.learn(60, callback=regrama)
    assert regrama.n_events >= 1 and regrama.total_reset > 0
