"""The zoo configs of the package's envs: static checks against the papers and their sibling configs, and short
``python -m rl_zoo3.train --gym-packages sb3_plasticity`` runs on a Cycle Friction env, ContinualMuJoCo (in a
subprocess env) and a DMC pixel task with the DrQ buffer."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import rl_zoo3.exp_manager
import yaml
from helpers import logged_networks, read_scalars, zoo_train

from sb3_plasticity import CYCLE_FRICTION_TASKS, DrQNStepReplayBuffer, cycle_friction_env_id

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo_configs"
DRQ = ZOO / "neuroplastic_expansion" / "drq_pixels.py"
NE_PIXEL_TASKS = ["reacher-easy", "reacher-hard", "walker-walk", "cartpole-swingup_sparse"]  # NE Sec. 4.3


def load_yaml(conf: str) -> dict:
    return yaml.safe_load((ZOO / conf).read_text())


def load_py(path: Path) -> dict:
    """``hyperparams`` of a .py config, read as rl-zoo reads it (exec in a fresh namespace)."""
    namespace: dict = {}
    exec(path.read_text(), namespace)
    return namespace["hyperparams"]


def test_cycle_friction_configs_are_the_mujoco_configs_on_the_cycle_friction_ids():
    for conf, sibling in [("p3o/cycle_friction.yml", "p3o/p3o.yml"), ("p3o/cycle_friction_ppo.yml", "p3o/ppo.yml")]:
        config, mujoco = load_yaml(conf), load_yaml(sibling)
        assert set(config) == {cycle_friction_env_id(task) for task in CYCLE_FRICTION_TASKS}
        for task in CYCLE_FRICTION_TASKS:
            hp = dict(config[cycle_friction_env_id(task)])
            assert hp.pop("env_kwargs") == {"period": 1_000_000}  # P3O Sec. 5.1
            assert hp == mujoco[f"{task}-v5"], (conf, task)


def test_continual_config_is_ne_td3_on_the_continual_env():
    config = load_yaml("neuroplastic_expansion/td3_continual.yml")
    td3 = load_yaml("neuroplastic_expansion/td3.yml")["HalfCheetah-v5"]
    ((env_id, hp),) = config.items()
    assert env_id == "sb3_plasticity/ContinualMuJoCo-v0"
    hp = dict(hp)
    assert hp.pop("env_kwargs") == {"episodes_per_task": 1000, "cycles": 3}  # NE Sec. 4.2
    assert hp.pop("n_timesteps") == 1.2e7
    assert hp.pop("policy") == "sb3_plasticity.MultiHeadTD3Policy"  # one output head per task (Sec. 4.2)
    # td3.yml's callbacks plus an evaluation per task (PhaseEvalCallback follows the training env's phase)
    *callbacks, phase_eval = hp.pop("callback")
    assert callbacks == td3["callback"]
    assert next(iter(phase_eval)) == "sb3_plasticity.PhaseEvalCallback"
    assert hp == {k: v for k, v in td3.items() if k not in ("n_timesteps", "policy", "callback")}


def test_drq_py_config():
    text = DRQ.read_text()
    assert text.lstrip().startswith("#") and "python -m rl_zoo3.train" in text
    config = load_py(DRQ)
    assert set(config) == {f"sb3_plasticity/DMCPixels-{task}-v0" for task in NE_PIXEL_TASKS}
    for env_id, hp in config.items():
        gym.spec(env_id)
        assert hp["policy"] == "CnnPolicy"
        # a string rl-zoo evaluates itself, so that the config.yml it saves reads back in enjoy
        assert eval(hp["replay_buffer_class"], vars(rl_zoo3.exp_manager)) is DrQNStepReplayBuffer
        # NE App. C Table 3
        assert hp["replay_buffer_kwargs"] == {"n_steps": 3, "gamma": 0.99, "pad": 4}
        assert (hp["learning_rate"], hp["batch_size"], hp["gamma"], hp["tau"], hp["train_freq"]) == (1e-4, 256, 0.99, 0.01, 2)
        assert hp["policy_kwargs"] == {"net_arch": [1024, 1024], "features_extractor_kwargs": {"features_dim": 50}}
        assert hp["learning_starts"] == 2000  # 4000 seed frames / action repeat 2


def scaled_down_p3o(tmp_path: Path) -> Path:
    config = load_yaml("p3o/cycle_friction.yml")
    for hp in config.values():
        hp.update(n_steps=128, batch_size=64, n_epochs=1, env_kwargs={"period": 100})
        for item in hp["callback"]:
            ((path, kwargs),) = item.items()
            if path.endswith("CycleResetDistillCallback"):
                kwargs.update(reset_freq=128, max_distill_epochs=1)
            else:
                kwargs.update(log_freq=128)
    out = tmp_path / "cycle_friction.yml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
def test_zoo_trains_p3o_on_cycle_friction(tmp_path):
    zoo_train("ppo", "sb3_plasticity/CycleFrictionHopper-v0", scaled_down_p3o(tmp_path), tmp_path, 384)
    scalars = read_scalars(tmp_path / "tb")
    assert logged_networks({t: v for t, v in scalars.items() if "/cycle_reset_distill/" not in t}) >= {"policy", "value"}
    assert scalars.get("plasticity/cycle_reset_distill/reset_count")
    assert (tmp_path / "logs" / "ppo" / "sb3_plasticity-CycleFrictionHopper-v0_1").is_dir()


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
def test_zoo_trains_td3_on_continual_mujoco_in_a_subprocess_env(tmp_path):
    zoo_train(
        "td3",
        "sb3_plasticity/ContinualMuJoCo-v0",
        ZOO / "neuroplastic_expansion" / "td3_continual.yml",
        tmp_path,
        300,
        # 20-step episodes, 2 per task: the run goes through all four tasks and into the second cycle
        ["--vec-env", "subproc", "--env-kwargs", "episodes_per_task:2", "max_episode_steps:20",
         "-params", "learning_starts:100", "buffer_size:1000"],
    )  # fmt: skip
    scalars = read_scalars(tmp_path / "tb")
    assert "plasticity/critic/dormant_ratio" in scalars
    lengths = scalars["rollout/ep_len_mean"]
    assert lengths and lengths[-1][1] <= 20


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
def test_zoo_trains_drq_on_dmc_pixels(tmp_path):
    # 150 rendered agent steps (300 frames), 25 updates on small batches: about 10 s
    zoo_train(
        "sac",
        "sb3_plasticity/DMCPixels-walker-walk-v0",
        DRQ,
        tmp_path,
        150,
        ["-params", "learning_starts:100", "buffer_size:200", "batch_size:16", "policy_kwargs:dict(net_arch=[64])"],
    )
    scalars = read_scalars(tmp_path / "tb")
    assert "plasticity/critic/dormant_ratio" in scalars and "train/critic_loss" in scalars
