"""The rl_zoo3 configs of issue 12: ReDo on DQN (``zoo_configs/redo_dqn``: CartPole-v1 and Atari) and ReGraMa on
sb3-contrib's TQC and CrossQ (``zoo_configs/grama/{tqc,crossq}*.yml``): their settings against their sources (rl_zoo3's
own hyperparameter files, Dopamine's DQN for ReDo's Atari setting), and short rl_zoo3 runs (slow set) that reset and
log under ``plasticity/redo/`` or ``plasticity/regrama/``."""

from __future__ import annotations

import copy
from pathlib import Path

import gymnasium as gym
import pytest
import rl_zoo3
import rl_zoo3.exp_manager
import yaml
from helpers import logged_networks, read_scalars, zoo_train
from rl_zoo3.utils import get_class_by_name
from stable_baselines3.common.callbacks import BaseCallback

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo_configs"
RL_ZOO_HYPERPARAMS = Path(rl_zoo3.__file__).parent / "hyperparams"
MUJOCO = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5")
MONITOR = "sb3_plasticity.PlasticityMonitorCallback"
REDO = "sb3_plasticity.ReDoCallback"
REGRAMA = "sb3_plasticity.GraMaResetCallback"

# file -> (algo, method callback or None, its kwargs (Humanoid: + max_reset_fraction 0.05), monitor log_freq)
CONFIGS = {
    "redo_dqn/dqn_cartpole.yml": ("dqn", None, None, 1000),
    "redo_dqn/dqn_cartpole_redo.yml": ("dqn", REDO, {"reset_freq": 2048, "tau": 0.1}, 1000),
    "redo_dqn/dqn_atari.py": ("dqn", None, None, 50_000),
    "redo_dqn/dqn_atari_redo.py": ("dqn", REDO, {"reset_freq": 1000, "tau": 0.1}, 50_000),
    "grama/tqc.yml": ("tqc", None, None, 5000),
    "grama/tqc_regrama.yml": ("tqc", REGRAMA, {"reset_freq": 1000, "tau": 0.0}, 5000),
    "grama/crossq.yml": ("crossq", None, None, 5000),
    "grama/crossq_regrama.yml": ("crossq", REGRAMA, {"reset_freq": 1000, "tau": 0.01}, 5000),
}
BASELINE = {
    "redo_dqn/dqn_cartpole_redo.yml": "redo_dqn/dqn_cartpole.yml",
    "redo_dqn/dqn_atari_redo.py": "redo_dqn/dqn_atari.py",
    "grama/tqc_regrama.yml": "grama/tqc.yml",
    "grama/crossq_regrama.yml": "grama/crossq.yml",
}
# Dopamine's JAX DQN (dqn.gin) at ReDo's replay ratio 1 (Sokar et al. 2023 Fig. 1; timoklein/redo's config)
DOPAMINE_DQN_RR1 = {
    "policy": "CnnPolicy",
    "frame_stack": 4,
    "n_timesteps": 2_500_000,  # 10M frames
    "buffer_size": 1_000_000,
    "learning_rate": 6.25e-5,
    "batch_size": 32,
    "gamma": 0.99,
    "learning_starts": 20_000,
    "train_freq": 1,
    "gradient_steps": 1,
    "target_update_interval": 2000,
    "exploration_initial_eps": 1.0,
    "exploration_final_eps": 0.01,
    "exploration_fraction": 0.1,  # 250,000 of 2.5M agent steps
}
TAG = {REDO: "redo", REGRAMA: "regrama"}
NETWORKS = {"dqn": {"q_net", "q_net_target"}, "tqc": {"actor", "critic", "critic_target"}, "crossq": {"actor", "critic"}}
N_STEPS = 300  # learning_starts 50: 250 updates, events at steps 100, 200, 300
TEST_FREQ = 100  # reset_freq and log_freq in the short runs


def load_config(conf: str | Path) -> dict:
    """A zoo config as rl_zoo3 reads it: YAML, or the ``hyperparams`` of an executed ``.py`` file."""
    path = ZOO / conf
    if path.suffix == ".py":
        namespace: dict = {}
        exec(path.read_text(), namespace)
        return namespace["hyperparams"]
    return yaml.safe_load(path.read_text())


def callbacks_of(hyperparams: dict) -> dict[str, dict]:
    """``{dotted class path: kwargs}`` of a config entry's ``callback`` list (one-key dicts)."""
    out = {}
    for item in hyperparams.get("callback", []):
        ((path, kwargs),) = item.items()
        out[path] = kwargs
    return out


def without_callbacks(hyperparams: dict) -> dict:
    return {k: v for k, v in hyperparams.items() if k != "callback"}


def rl_zoo_entry(algo: str, env_id: str) -> dict:
    """rl_zoo3's own hyperparameters for ``env_id`` (its MuJoCo entries are keyed ``-v4``)."""
    entries = yaml.safe_load((RL_ZOO_HYPERPARAMS / f"{algo}.yml").read_text())
    return entries[env_id.replace("-v5", "-v4") if env_id in MUJOCO else env_id]


@pytest.mark.parametrize("conf", sorted(CONFIGS))
def test_callbacks_follow_the_configs_header(conf):
    _, method, kwargs, log_freq = CONFIGS[conf]
    for env_id, hyperparams in load_config(conf).items():
        callbacks = callbacks_of(hyperparams)
        assert callbacks[MONITOR] == {"log_freq": log_freq}, (conf, env_id)
        assert len(callbacks) == 1 + (method is not None), (conf, env_id)
        if method is not None:
            expected = dict(kwargs, max_reset_fraction=0.05) if env_id == "Humanoid-v5" else kwargs  # GraMa App. A.3
            assert callbacks[method] == expected, (conf, env_id)
        for dotted, cb_kwargs in callbacks.items():
            cls = get_class_by_name(dotted)
            assert issubclass(cls, BaseCallback) and isinstance(cls(**cb_kwargs), cls)


@pytest.mark.parametrize("conf", sorted(BASELINE))
def test_method_config_is_its_baseline_plus_the_method(conf):
    method_config, baseline = load_config(conf), load_config(BASELINE[conf])
    assert set(method_config) == set(baseline)
    for env_id, hyperparams in method_config.items():
        assert without_callbacks(hyperparams) == without_callbacks(baseline[env_id]), env_id
        assert callbacks_of(baseline[env_id]) == {MONITOR: callbacks_of(hyperparams)[MONITOR]}, env_id


@pytest.mark.parametrize("conf", ["grama/tqc.yml", "grama/tqc_regrama.yml", "grama/crossq.yml", "grama/crossq_regrama.yml"])
def test_mujoco_configs_are_rl_zoos_own_hyperparameters(conf):
    algo = CONFIGS[conf][0]
    config = load_config(conf)
    assert set(config) == set(MUJOCO)
    for env_id, hyperparams in config.items():
        gym.spec(env_id)
        assert without_callbacks(hyperparams) == rl_zoo_entry(algo, env_id), env_id
    if algo == "crossq":
        policy_kwargs = eval(config["HalfCheetah-v5"]["policy_kwargs"], vars(rl_zoo3.exp_manager))
        assert policy_kwargs == {"net_arch": {"pi": [256, 256], "qf": [2048, 2048]}}


@pytest.mark.parametrize("conf", ["redo_dqn/dqn_cartpole.yml", "redo_dqn/dqn_cartpole_redo.yml"])
def test_cartpole_configs_are_rl_zoos_own_hyperparameters(conf):
    config = load_config(conf)
    assert set(config) == {"CartPole-v1"}
    hyperparams = config["CartPole-v1"]
    assert without_callbacks(hyperparams) == rl_zoo_entry("dqn", "CartPole-v1")
    if CONFIGS[conf][1] is not None:
        # ReDo's recycling period, 1000 gradient steps: whole training rounds of 128 gradient steps per 256 env steps
        reset_freq = callbacks_of(hyperparams)[REDO]["reset_freq"]
        assert reset_freq % hyperparams["train_freq"] == 0
        assert reset_freq // hyperparams["train_freq"] * hyperparams["gradient_steps"] == 1024


@pytest.mark.parametrize("conf", ["redo_dqn/dqn_atari.py", "redo_dqn/dqn_atari_redo.py"])
def test_atari_configs_are_redos_dopamine_dqn(conf):
    ale_py = pytest.importorskip("ale_py")  # the [atari] extra
    gym.register_envs(ale_py)
    config = load_config(conf)
    assert "ALE/DemonAttack-v5" in config
    for env_id, hyperparams in config.items():
        assert env_id.startswith("ALE/") and gym.spec(env_id).kwargs["repeat_action_probability"] == 0.25  # sticky
        assert {k: hyperparams[k] for k in DOPAMINE_DQN_RR1} == DOPAMINE_DQN_RR1, env_id
        assert hyperparams["env_kwargs"] == {"frameskip": 1, "repeat_action_probability": 0.25}
        assert hyperparams["env_wrapper"] == [
            {"stable_baselines3.common.atari_wrappers.AtariWrapper": {"noop_max": 0, "terminal_on_life_loss": False}}
        ]
        policy_kwargs = eval(hyperparams["policy_kwargs"], vars(rl_zoo3.exp_manager))
        assert policy_kwargs == {"optimizer_kwargs": {"eps": 1.5e-4}}  # Dopamine's Adam epsilon


def short_run_config(conf: str, tmp_path: Path) -> Path:
    """``conf`` as YAML in ``tmp_path``, with its callbacks' ``reset_freq`` and ``log_freq`` set to TEST_FREQ."""
    config = copy.deepcopy(load_config(conf))
    for hyperparams in config.values():
        for kwargs in callbacks_of(hyperparams).values():
            for key in ("reset_freq", "log_freq"):
                if key in kwargs:
                    kwargs[key] = TEST_FREQ
    out = tmp_path / (Path(conf).stem + ".yml")
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


# CrossQ's 2x2048 critics make a few hundred updates last minutes on a small busy machine (run_zoo's timeout is 300 s):
# the short run uses narrower layers; test_mujoco_configs_are_rl_zoos_own_hyperparameters checks the real ones.
CROSSQ_SMALL = "policy_kwargs:dict(net_arch=dict(pi=[64, 64], qf=[256, 256]))"
ZOO_RUNS = {  # file -> (env id, extra rl_zoo3 arguments)
    "redo_dqn/dqn_cartpole.yml": ("CartPole-v1", ["train_freq:16", "gradient_steps:8"]),
    "redo_dqn/dqn_cartpole_redo.yml": ("CartPole-v1", ["train_freq:16", "gradient_steps:8"]),
    "redo_dqn/dqn_atari.py": ("ALE/DemonAttack-v5", ["buffer_size:1000"]),
    "redo_dqn/dqn_atari_redo.py": ("ALE/DemonAttack-v5", ["buffer_size:1000"]),
    "grama/tqc.yml": ("HalfCheetah-v5", ["buffer_size:1000"]),
    "grama/tqc_regrama.yml": ("HalfCheetah-v5", ["buffer_size:1000"]),
    "grama/crossq.yml": ("HalfCheetah-v5", ["buffer_size:1000", CROSSQ_SMALL]),
    "grama/crossq_regrama.yml": ("HalfCheetah-v5", ["buffer_size:1000", CROSSQ_SMALL]),
}


@pytest.mark.slow  # rl-zoo end to end in a subprocess: the slow set
@pytest.mark.parametrize("conf", sorted(ZOO_RUNS))
def test_zoo_run(tmp_path, conf):
    algo, method, _, _ = CONFIGS[conf]
    env_id, params = ZOO_RUNS[conf]
    extra = ["-params", "learning_starts:50", *params]
    if env_id.startswith("ALE/"):
        pytest.importorskip("ale_py")  # the [atari] extra
        extra += ["--gym-packages", "sb3_plasticity", "ale_py"]  # replaces zoo_train's own --gym-packages
    zoo_train(algo, env_id, short_run_config(conf, tmp_path), tmp_path, N_STEPS, extra)

    scalars = read_scalars(tmp_path / "tb")
    method_tags = tuple(f"plasticity/{tag}/" for tag in TAG.values())
    if method is not None:
        counts = scalars.get(f"plasticity/{TAG[method]}/reset_count")
        assert counts, sorted(t for t in scalars if t.startswith("plasticity/"))[:20]
        assert len(counts) >= 2  # events every TEST_FREQ steps after learning_starts
        # due at multiples of TEST_FREQ; ReGraMa scores in the next training pass that updates every network (CrossQ's
        # actor: every 3rd update, policy_delay 3), so its event may come a few steps later
        assert all(step % TEST_FREQ < 4 for step, _ in counts), counts
    else:
        assert not any(tag.startswith(method_tags) for tag in scalars)
    monitor = {tag: v for tag, v in scalars.items() if not tag.startswith(method_tags)}
    assert logged_networks(monitor) == NETWORKS[algo]
