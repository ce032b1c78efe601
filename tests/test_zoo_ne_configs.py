"""The Neuroplastic Expansion ``.py`` zoo configs: their settings follow NE App. C, and each one trains through rl_zoo3."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest
import rl_zoo3.exp_manager
import torch as th
from helpers import read_scalars, zoo_train
from stable_baselines3 import TD3

from sb3_plasticity import DrQExperienceReviewBuffer, ExperienceReviewBuffer, MaskedLinear, NeuroplasticExpansionCallback
from sb3_plasticity.zoo import GUARD, NE_TASKS, drq_settings

ZOO = Path(__file__).resolve().parents[1] / "zoo_configs" / "neuroplastic_expansion"
NE = "sb3_plasticity.NeuroplasticExpansionCallback"
# file -> (experience review, NE kwargs beyond the per-task ones)
VARIANTS = {
    "ne_td3.py": (True, {}),
    "ne_td3_no_prune.py": (True, {"prune": False}),
    "ne_td3_no_review.py": (False, {}),
    "ne_td3_actor_only.py": (True, {"networks": ["actor"]}),
    "ne_td3_critic_only.py": (True, {"networks": ["critic"]}),
    "ne_td3_random_growth.py": (True, {"growth": "random"}),
}


def zoo_eval(expression: str):
    """A ``replay_buffer_class`` string evaluated as rl_zoo3 evaluates it (in ``rl_zoo3/exp_manager.py``'s globals)."""
    assert isinstance(expression, str), expression  # a class object would make the saved config.yml unreadable
    return eval(expression, vars(rl_zoo3.exp_manager))


def read_config(path: Path) -> dict:
    """The ``hyperparams`` dict, read as rl_zoo3 reads a ``.py`` conf file."""
    namespace: dict = {}
    exec(path.read_text(), namespace)
    return namespace["hyperparams"]


def test_every_ne_config_is_listed():
    # the size and combination configs are tested in test_ne_growth_modes.py
    others = {"ne_drq_pixels.py", "ne_td3_continual.py", "ne_td3_heatmap.py"}
    others |= {"ne_td3_ln.py", "ne_td3_redo.py", "ne_td3_reset.py"}
    assert {p.name for p in ZOO.glob("ne_*.py")} == {*VARIANTS, *others, *(f"ne_td3_scale{n}.py" for n in (1, 2, 3))}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_config_follows_app_c(name):
    text = (ZOO / name).read_text()
    assert text.startswith("#") and "python -m rl_zoo3.train" in text and f"neuroplastic_expansion/{name}" in text
    review, extra = VARIANTS[name]
    config = read_config(ZOO / name)
    assert set(config) == set(NE_TASKS)
    for env_id, hp in config.items():
        interval, rate, omega, floor = NE_TASKS[env_id]
        assert hp["policy"] == "sb3_plasticity.MaskedTD3Policy"
        assert hp["policy_kwargs"] == {"net_arch": [256, 128], "initial_density": 0.25}
        assert (hp["n_timesteps"], hp["learning_starts"], hp["batch_size"], hp["buffer_size"]) == (6e6, 25000, 128, 10**6)
        assert (hp["noise_type"], hp["noise_std"], hp["policy_delay"], hp["gamma"]) == ("normal", 0.1, 2, 0.99)
        callbacks = {k: v for item in hp["callback"] for k, v in item.items()}
        assert next(iter(hp["callback"][0])) == GUARD  # first: the others see the policy it may rebuild
        assert callbacks[GUARD] == {"policy_kwargs": hp["policy_kwargs"]}
        assert callbacks[NE] == {
            "grow_interval": interval,
            "grow_rate": rate,
            "prune_ratio": omega,
            "clip_kappa": 3.0,
            **extra,
        }
        assert callbacks["sb3_plasticity.NetworkLearningRateCallback"] == {"actor": 1e-4, "critic": 1e-3}
        NeuroplasticExpansionCallback(**callbacks[NE])  # valid kwargs
        if review:
            assert zoo_eval(hp["replay_buffer_class"]) is ExperienceReviewBuffer
            assert hp["replay_buffer_kwargs"] == {"review_window": 450, "review_floor": floor}
        else:
            assert "replay_buffer_class" not in hp
    assert config["Humanoid-v5"]["callback"][2][NE]["grow_rate"] == 0.01  # App. C: Humanoid and Ant
    assert config["Hopper-v5"]["callback"][2][NE]["grow_interval"] == 20000


def fast_conf(path: Path, tmp_path: Path, ne: dict, hp_code: str = "") -> Path:
    """A conf file that runs ``path`` with the NE callback's kwargs updated by ``ne`` and each env's hyperparameters
    ``hp`` changed by ``hp_code`` (everything else as in the file)."""
    out = tmp_path / f"fast_{path.name}"
    out.write_text(
        f"exec(open({str(path)!r}).read())\n"
        "for hp in hyperparams.values():\n"
        "    for item in hp['callback']:\n"
        f"        if {NE!r} in item:\n"
        f"            item[{NE!r}] = dict(item[{NE!r}], **{ne!r})\n"
        + "".join(f"    {line}\n" for line in hp_code.splitlines())
    )
    return out


def fast_copy(name: str, tmp_path: Path) -> Path:
    """``name`` with NE events every 100 steps."""
    return fast_conf(ZOO / name, tmp_path, {"grow_interval": 100, "log_freq": 100})


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_zoo_run(name, tmp_path):
    env = "HalfCheetah-v5"
    zoo_train("td3", env, fast_copy(name, tmp_path), tmp_path, 350, ["-params", "learning_starts:100"])
    scalars = read_scalars(tmp_path / "tb")
    review, extra = VARIANTS[name]
    networks = set(extra.get("networks", ["actor", "critic"]))
    assert {t.split("/")[1] for t in scalars if t.endswith("/density") and t.count("/") == 2} == networks
    for net in networks:
        density = [v for _, v in scalars[f"plasticity/{net}/density"]]
        assert density[0] == pytest.approx(0.25, abs=0.01) and density[-1] > density[0]
    # due at 100, done after the first training pass (101) or the actor's first delayed update (102); 200; 300
    first = 102 if "actor" in networks else 101
    assert [s for s, _ in scalars["plasticity/neuroplastic_expansion/grown"]] == [first, 200, 300]
    assert ("plasticity/neuroplastic_expansion/epsilon" in scalars) == review
    if extra.get("prune") is False:
        assert all(v == 0 for _, v in scalars["plasticity/neuroplastic_expansion/pruned"])
    model = TD3.load(tmp_path / "logs" / "td3" / f"{env}_1" / f"{env}.zip", device="cpu")
    for online, target in (("actor", "actor_target"), ("critic", "critic_target")):
        targets = dict(getattr(model.policy, target).named_modules())
        for layer_name, layer in getattr(model.policy, online).named_modules():
            if isinstance(layer, MaskedLinear):
                assert th.equal(layer.mask, targets[layer_name].mask)


NE_DRQ = ZOO / "ne_drq_pixels.py"


def test_ne_drq_config_follows_app_c():
    text = NE_DRQ.read_text()
    assert text.startswith("#") and "python -m rl_zoo3.train" in text
    config = read_config(NE_DRQ)
    assert len(config) == 4
    for env_id, hp in config.items():
        gym.spec(env_id)
        assert hp["policy"] == "sb3_plasticity.MaskedSACPolicy"
        assert zoo_eval(hp["replay_buffer_class"]) is DrQExperienceReviewBuffer
        # NE Table 3: 3-step returns (gamma the algorithm's), replay buffer 1e6
        assert hp["replay_buffer_kwargs"] == {
            "review_window": 250,
            "review_floor": 0.18,
            "n_steps": 3,
            "gamma": 0.99,
            "pad": 4,
        }
        assert hp["replay_buffer_kwargs"]["gamma"] == hp["gamma"] and hp["buffer_size"] == 10**6
        callbacks = {k: v for item in hp["callback"] for k, v in item.items()}
        assert callbacks[GUARD] == {"policy_kwargs": hp["policy_kwargs"]}
        assert callbacks[NE] == {
            "grow_interval": 20000,
            "grow_rate": {"actor": 0.01, "critic": 0.02},
            "prune_ratio": 0.23,
            "clip_kappa": 2.0,
        }
        NeuroplasticExpansionCallback(**callbacks[NE])


def test_drq_settings_follow_table_3():
    hp = drq_settings()
    assert (hp["buffer_size"], hp["learning_rate"], hp["batch_size"], hp["gamma"], hp["tau"]) == (10**6, 1e-4, 256, 0.99, 0.01)
    (drq,) = {str(v["buffer_size"]) for v in read_config(ZOO / "drq_pixels.py").values()}
    assert drq == str(10**6)


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
def test_ne_drq_zoo_run(tmp_path):
    conf = fast_conf(
        NE_DRQ,
        tmp_path,
        {"grow_interval": 50, "log_freq": 50},
        "hp.update(buffer_size=300, batch_size=16, learning_starts=100, train_freq=1)\n"
        "hp['policy_kwargs'] = dict(hp['policy_kwargs'], net_arch=[64, 64])",
    )
    zoo_train("sac", "sb3_plasticity/DMCPixels-walker-walk-v0", conf, tmp_path, 200)
    scalars = read_scalars(tmp_path / "tb")
    for net in ("actor", "critic"):
        density = [v for _, v in scalars[f"plasticity/{net}/density"]]
        assert density[0] == pytest.approx(0.25, abs=0.01) and density[-1] > density[0]
    ne = "plasticity/neuroplastic_expansion"
    assert len(scalars[f"{ne}/grown"]) >= 2 and f"{ne}/epsilon" in scalars
    assert f"{ne}/critic/grow_rate" in scalars and f"{ne}/grow_rate" not in scalars


NE_CONTINUAL = ZOO / "ne_td3_continual.py"


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
def test_ne_continual_config_and_zoo_run(tmp_path):
    (hp,) = read_config(NE_CONTINUAL).values()
    assert hp["policy"] == "sb3_plasticity.MaskedMultiHeadTD3Policy"
    assert hp["policy_kwargs"] == {"net_arch": [256, 128], "initial_density": 0.15}  # NE App. F.3
    assert hp["replay_buffer_kwargs"] == {"review_window": 450, "review_floor": 0.35}
    assert zoo_eval(hp["replay_buffer_class"]) is ExperienceReviewBuffer
    callbacks = {k: v for item in hp["callback"] for k, v in item.items()}
    assert callbacks[GUARD] == {"policy_kwargs": hp["policy_kwargs"]}
    assert callbacks[NE] == {"grow_interval": 50000, "grow_rate": 0.01, "prune_ratio": 0.4, "clip_kappa": 3.0}
    conf = fast_conf(NE_CONTINUAL, tmp_path, {"grow_interval": 100, "grow_rate": 0.5, "log_freq": 100})
    zoo_train(
        "td3",
        "sb3_plasticity/ContinualMuJoCo-v0",
        conf,
        tmp_path,
        300,
        ["--env-kwargs", "episodes_per_task:2", "max_episode_steps:20", "-params", "learning_starts:100", "buffer_size:1000"],
    )
    scalars = read_scalars(tmp_path / "tb")
    for net in ("actor", "critic"):
        density = [v for _, v in scalars[f"plasticity/{net}/density"]]
        assert density[0] == pytest.approx(0.15, abs=0.01) and density[-1] > density[0]
    assert "plasticity/critic/dormant_ratio" in scalars and "plasticity/neuroplastic_expansion/epsilon" in scalars
