"""The paper configs under ``zoo_configs/grama`` and ``zoo_configs/neuroplastic_expansion``: static checks of every
zoo config file, and short rl_zoo3 runs (HalfCheetah-v5) that reset, log and save the configured learning rates."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import rl_zoo3.exp_manager
import yaml
from helpers import logged_networks, read_scalars, zoo_train
from rl_zoo3.utils import get_class_by_name
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.callbacks import BaseCallback

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo_configs"
# One torch thread in the child too: on a small busy machine, intra-op threads make tiny ops much slower.
ALL_CONFIGS = sorted(ZOO.rglob("*.yml")) + sorted(ZOO.rglob("*.yaml"))
MUJOCO = {"Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5"}
ENV = "HalfCheetah-v5"
N_STEPS = 400
TEST_RESET_FREQ = 100  # so that resets happen within N_STEPS

SAC_LR = {"actor": 3.0e-4, "critic": 1.0e-3}  # GraMa App. A.3, Table 7
TD3_LR = {"actor": 1.0e-4, "critic": 1.0e-3}  # NE App. C.2, Table 2
# file -> (algo, method callback or None, its kwargs on HalfCheetah-v5, learning rates, net_arch)
METHOD_CONFIGS = {
    "grama/sac.yml": ("sac", None, None, SAC_LR, [256, 256]),
    "grama/sac_regrama.yml": ("sac", "GraMaResetCallback", {"reset_freq": 1000, "tau": 0.0}, SAC_LR, [256, 256]),
    "grama/sac_redo.yml": ("sac", "ReDoCallback", {"reset_freq": 1000, "tau": 0.02}, SAC_LR, [256, 256]),
    "neuroplastic_expansion/td3.yml": ("td3", None, None, TD3_LR, [256, 128]),
    "neuroplastic_expansion/td3_redo.yml": ("td3", "ReDoCallback", {"reset_freq": 1000, "tau": 0.1}, TD3_LR, [256, 128]),
    "neuroplastic_expansion/td3_reset.yml": (
        "td3",
        "ResetCallback",
        {"reset_freq": 90000, "layers": "all"},
        TD3_LR,
        [256, 128],
    ),
}
METHOD_TAG = {"GraMaResetCallback": "regrama", "ReDoCallback": "redo", "ResetCallback": "reset"}
NETWORKS = {"sac": {"actor", "critic", "critic_target"}, "td3": {"actor", "critic", "actor_target", "critic_target"}}


def callback_items(spec) -> list[tuple[str, dict]]:
    """``(dotted class path, kwargs)`` of each entry of a zoo ``callback`` value."""
    if spec is None:
        return []
    items = []
    for item in spec if isinstance(spec, list) else [spec]:
        if isinstance(item, str):
            items.append((item, {}))
        else:
            assert isinstance(item, dict) and len(item) == 1, f"a callback entry is a path or a one-key dict: {item!r}"
            ((path, kwargs),) = item.items()
            items.append((path, kwargs or {}))
    return items


def load(conf: str) -> dict:
    return yaml.safe_load((ZOO / conf).read_text())


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: p.relative_to(ZOO).as_posix())
def test_config_file_is_valid(path):
    config = yaml.safe_load(path.read_text())
    assert isinstance(config, dict) and config
    for env_id, hyperparams in config.items():
        gym.spec(env_id)  # an exact registered id (raises otherwise)
        if isinstance(hyperparams.get("policy_kwargs"), str):
            # Evaluated as the zoo does, in rl_zoo3.exp_manager's globals.
            assert isinstance(eval(hyperparams["policy_kwargs"], vars(rl_zoo3.exp_manager)), dict), env_id
        for dotted, kwargs in callback_items(hyperparams.get("callback")):
            cls = get_class_by_name(dotted)
            assert isinstance(cls, type) and issubclass(cls, BaseCallback), dotted
            assert isinstance(cls(**kwargs), cls)


def test_method_configs_follow_the_papers():
    for conf, (_, method, kwargs, lrs, net_arch) in METHOD_CONFIGS.items():
        config = load(conf)
        assert set(config) == MUJOCO, conf
        for env_id, hyperparams in config.items():
            callbacks = dict(callback_items(hyperparams["callback"]))
            assert callbacks["sb3_plasticity.NetworkLearningRateCallback"] == lrs, (conf, env_id)
            assert callbacks["sb3_plasticity.PlasticityMonitorCallback"] == {"log_freq": 5000}, (conf, env_id)
            assert eval(hyperparams["policy_kwargs"], vars(rl_zoo3.exp_manager)) == {"net_arch": net_arch}
            if method is not None:
                expected = dict(kwargs)
                if env_id == "Humanoid-v5" and conf.startswith("grama/"):
                    expected["max_reset_fraction"] = 0.05  # GraMa App. A.3: Humanoid only
                assert callbacks[f"sb3_plasticity.{method}"] == expected, (conf, env_id)
            assert len(callbacks) == 2 + (method is not None), (conf, env_id)
        hp = config[ENV]
        if conf.startswith("grama/"):
            assert (hp["n_timesteps"], hp["learning_starts"], hp["batch_size"], hp["buffer_size"]) == (3e6, 5000, 256, 10**6)
            assert (hp["gamma"], hp["tau"], hp["target_update_interval"], hp["ent_coef"]) == (0.99, 0.005, 1, "auto")
        else:
            assert (hp["n_timesteps"], hp["learning_starts"], hp["batch_size"], hp["buffer_size"]) == (6e6, 25000, 128, 10**6)
            assert (hp["gamma"], hp["noise_type"], hp["noise_std"], hp["policy_delay"]) == (0.99, "normal", 0.1, 2)


def lowered_reset_freq(conf: str, tmp_path: Path) -> Path:
    """A copy of ``conf`` whose callbacks' ``reset_freq`` is TEST_RESET_FREQ; everything else is kept."""
    config = load(conf)
    for hyperparams in config.values():
        for item in hyperparams.get("callback", []):
            kwargs = next(iter(item.values())) if isinstance(item, dict) else None
            if kwargs and "reset_freq" in kwargs:
                kwargs["reset_freq"] = TEST_RESET_FREQ
    out = tmp_path / Path(conf).name
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def train_and_load(algo: str, conf_file: Path, tmp_path: Path, n_steps: int = N_STEPS, params: tuple[str, ...] = ()):
    zoo_train(algo, ENV, conf_file, tmp_path, n_steps, ["-params", "learning_starts:100", "train_freq:1", *params])
    return (SAC if algo == "sac" else TD3).load(tmp_path / "logs" / algo / f"{ENV}_1" / f"{ENV}.zip", device="cpu")


def optimizer_lrs(model) -> dict[str, list[float]]:
    return {net: [g["lr"] for g in getattr(model.policy, net).optimizer.param_groups] for net in ("actor", "critic")}


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
@pytest.mark.parametrize("conf", sorted(METHOD_CONFIGS))
def test_zoo_run(tmp_path, conf):
    algo, method, _, lrs, net_arch = METHOD_CONFIGS[conf]
    model = train_and_load(algo, lowered_reset_freq(conf, tmp_path), tmp_path)

    scalars = read_scalars(tmp_path / "tb")
    if method is not None:
        counts = scalars.get(f"plasticity/{METHOD_TAG[method]}/reset_count")
        assert counts, sorted(t for t in scalars if t.startswith("plasticity/"))[:20]
        assert len(counts) >= 2  # events every TEST_RESET_FREQ steps after learning_starts
        if method == "ResetCallback":
            assert all(n > 0 for _, n in counts)  # whole layers
    methods = tuple(f"plasticity/{tag}/" for tag in METHOD_TAG.values())
    monitor = {tag: v for tag, v in scalars.items() if not tag.startswith(methods)}
    assert logged_networks(monitor) == NETWORKS[algo]
    assert "plasticity/critic/dormant_ratio" in scalars and "plasticity/actor/grama_inactive_ratio" in scalars

    assert optimizer_lrs(model) == {net: [lr] for net, lr in lrs.items()}
    assert model.policy_kwargs["net_arch"] == net_arch


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
def test_td3_saved_actor_lr_after_odd_update_count(tmp_path):
    # 401 steps with learning_starts 100: 301 updates, the last one without an actor step.
    model = train_and_load("td3", ZOO / "neuroplastic_expansion/td3.yml", tmp_path, N_STEPS + 1, ("learning_rate:1e-3",))
    assert optimizer_lrs(model)["actor"] == [TD3_LR["actor"]]
