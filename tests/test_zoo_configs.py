"""The rl_zoo3 hyperparameter files under ``zoo_configs/``: they parse, their callbacks import, and cheap ones train."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import yaml
from helpers import logged_networks, read_scalars, zoo_train
from rl_zoo3.utils import get_callback_list, get_class_by_name
from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity import PlasticityMonitorCallback

ROOT = Path(__file__).resolve().parents[1]
# One torch thread in the child too: on a small busy machine, intra-op threads make tiny ops much slower.
CONFIGS = sorted((ROOT / "zoo_configs").rglob("*.yml")) + sorted((ROOT / "zoo_configs").rglob("*.yaml"))


def callback_paths(spec) -> list[str]:
    """Dotted class paths of a zoo ``callback`` entry (a string, or a list of strings / one-key dicts)."""
    if spec is None:
        return []
    items = spec if isinstance(spec, list) else [spec]
    paths = []
    for item in items:
        if isinstance(item, dict):
            assert len(item) == 1, f"a callback dict must have one key, got {item!r}"
            item = next(iter(item))
        assert isinstance(item, str), item
        paths.append(item)
    return paths


def test_configs_exist():
    names = {p.relative_to(ROOT).as_posix() for p in CONFIGS}
    assert {"zoo_configs/monitor/td3.yml", "zoo_configs/monitor/ppo.yml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_parses_and_callbacks_import(path):
    text = path.read_text()
    assert text.lstrip().startswith("#"), "a comment header says what the file is and how to run it"
    assert "python -m rl_zoo3.train" in text
    config = yaml.safe_load(text)
    assert isinstance(config, dict) and config
    for env_id, hyperparams in config.items():
        gym.spec(env_id)  # the key is an exact registered env id (raises otherwise)
        assert "n_timesteps" in hyperparams and "policy" in hyperparams, env_id
        paths = callback_paths(hyperparams.get("callback"))
        for dotted in paths:
            cls = get_class_by_name(dotted)
            assert isinstance(cls, type) and issubclass(cls, BaseCallback), dotted
        # Built exactly as the zoo builds them (kwargs are plain YAML values).
        callbacks = get_callback_list(hyperparams)
        assert len(callbacks) == len(paths), env_id


@pytest.mark.parametrize(
    "conf, env_id",
    [("monitor/td3.yml", "HalfCheetah-v5"), ("monitor/td3.yml", "Pendulum-v1"), ("monitor/ppo.yml", "CartPole-v1")],
)
def test_monitor_configs_attach_the_monitor(conf, env_id):
    hyperparams = yaml.safe_load((ROOT / "zoo_configs" / conf).read_text())[env_id]
    (monitor,) = get_callback_list(hyperparams)
    assert isinstance(monitor, PlasticityMonitorCallback)
    assert monitor.log_freq == 1000


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
@pytest.mark.parametrize(
    "conf, env_id, algo, extra, networks",
    [
        (
            "monitor/td3.yml",
            "Pendulum-v1",
            "td3",
            ["-params", "learning_starts:100"],
            {"actor", "critic", "actor_target", "critic_target"},
        ),
        ("monitor/ppo.yml", "CartPole-v1", "ppo", [], {"policy", "value"}),
    ],
)
def test_zoo_train_logs_plasticity(tmp_path, conf, env_id, algo, extra, networks):
    zoo_train(algo, env_id, ROOT / "zoo_configs" / conf, tmp_path, 300, extra)
    scalars = read_scalars(tmp_path / "tb")
    assert logged_networks(scalars) == networks
    assert f"plasticity/{sorted(networks)[0]}/dormant_ratio" in scalars
    assert all(0.0 <= v <= 1.0 for tag, vals in scalars.items() if tag.endswith("_ratio") for _, v in vals)
