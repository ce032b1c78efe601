"""rl-zoo's whole workflow on the configs: ``train``, then ``enjoy`` (and ``record_video``) on the saved
``config.yml``, ``--trained-agent`` continuation, and ``-optimize`` with a tiny budget; plus the two parts that make
``.py`` configs go through it (:func:`~sb3_plasticity.zoo.zoo_class`, :class:`~sb3_plasticity.zoo.PolicyKwargsGuardCallback`).

The rl-zoo runs are subprocesses of a few seconds to a minute each: marked ``slow`` (``python -m pytest -m slow``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rl_zoo3.exp_manager
import torch as th
import yaml
from helpers import run_zoo, zoo_enjoy, zoo_train
from stable_baselines3 import TD3

from sb3_plasticity import (
    DrQExperienceReviewBuffer,
    ExperienceReviewBuffer,
    MaskedLinear,
    MaskedTD3Policy,
    NeuroplasticExpansionCallback,
)
from sb3_plasticity.zoo import PolicyKwargsGuardCallback, zoo_class

ZOO = Path(__file__).resolve().parents[1] / "zoo_configs"


# ----------------------------------------------------------------------------------------------------------------
# The parts (fast)
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [ExperienceReviewBuffer, DrQExperienceReviewBuffer, th.nn.ReLU])
def test_zoo_class_is_a_string_rl_zoo_evaluates_to_the_class(cls):
    expression = zoo_class(cls)
    assert isinstance(expression, str) and "HerReplayBuffer" not in expression
    assert eval(expression, vars(rl_zoo3.exp_manager)) is cls  # where rl-zoo evaluates replay_buffer_class
    assert yaml.safe_load(yaml.dump({"replay_buffer_class": expression})) == {"replay_buffer_class": expression}


def masked_layers(model) -> list[MaskedLinear]:
    return [m for m in model.policy.modules() if isinstance(m, MaskedLinear)]


def test_guard_restores_policy_kwargs_the_tuner_replaced():
    config = {"net_arch": [16, 16], "initial_density": 0.5}
    # what rl-zoo's TD3 sampler leaves: a fresh policy_kwargs with its own net_arch only
    model = TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs={"net_arch": [8, 8]}, learning_starts=50, seed=0, device="cpu")
    guard, ne = PolicyKwargsGuardCallback(config), NeuroplasticExpansionCallback(grow_interval=60)
    with pytest.warns(UserWarning, match=r"lack \['initial_density'\].*The config's are restored"):
        model.learn(80, callback=[guard, ne])
    assert guard.restored and model.policy_kwargs == config
    layers = masked_layers(model)
    assert layers and all(layer.weight.shape == (16, 16) for layer in layers)
    # the callbacks after the guard work on the rebuilt policy, whose optimizers own its parameters
    assert ne.n_events == 1 and all(layer in layers for net in ne.masked.values() for _, layer in net)
    owned = {id(p) for g in model.actor.optimizer.param_groups for p in g["params"]}
    assert owned == {id(p) for p in model.actor.parameters()}


def test_guard_keeps_a_complete_override():
    given = {"net_arch": [8, 8], "initial_density": 0.5}
    model = TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(given), learning_starts=50, seed=0, device="cpu")
    policy = model.policy
    guard = PolicyKwargsGuardCallback({"net_arch": [16, 16], "initial_density": 0.25})
    model.learn(60, callback=[guard, NeuroplasticExpansionCallback(grow_interval=50)])
    assert not guard.restored and model.policy is policy and model.policy_kwargs == given


# ----------------------------------------------------------------------------------------------------------------
# rl-zoo's tools (slow)
# ----------------------------------------------------------------------------------------------------------------
# one config of each paper folder: (algo, env, conf, -params making -n 300 train)
WORKFLOW = [
    pytest.param("td3", "Hopper-v5", "neuroplastic_expansion/ne_td3.py", ["learning_starts:100"], id="ne_td3.py"),
    pytest.param("sac", "Hopper-v5", "grama/sac_regrama.yml", ["learning_starts:100"], id="sac_regrama.yml"),
    pytest.param("ppo", "Hopper-v5", "p3o/p3o.yml", ["n_steps:128", "batch_size:64", "n_epochs:2"], id="p3o.yml"),
]


@pytest.mark.slow
@pytest.mark.parametrize("algo, env_id, conf, params", WORKFLOW)
def test_train_then_enjoy_and_continue(algo, env_id, conf, params, tmp_path):
    zoo_train(algo, env_id, ZOO / conf, tmp_path, 300, ["-params", *params])
    run = tmp_path / "logs" / algo / f"{env_id}_1"
    # rl-zoo's tools read the saved config back as rl-zoo does (an OrderedDict); no class objects in it
    saved = dict(yaml.load((run / env_id / "config.yml").read_text(), Loader=yaml.UnsafeLoader))
    assert all(not isinstance(v, type) for v in saved.values())
    assert isinstance(saved.get("replay_buffer_class", ""), str)
    result = zoo_enjoy(algo, env_id, tmp_path, 50)
    assert f"Loading {run / env_id}.zip" in result.stdout
    # --trained-agent: continue from the saved model into a new run folder
    zoo_train(algo, env_id, ZOO / conf, tmp_path, 100, ["-params", *params, "-i", str(run / f"{env_id}.zip")])
    assert (tmp_path / "logs" / algo / f"{env_id}_2" / f"{env_id}.zip").is_file()
    if conf.endswith(".py"):  # record_video reads the same config.yml (headless: MUJOCO_GL=egl)
        args = ["--algo", algo, "--env", env_id, "-f", str(tmp_path / "logs"), "-n", "20", "-o", str(tmp_path / "video")]
        run_zoo("record_video", [*args, "--exp-id", "1"], tmp_path)
        assert list((tmp_path / "video").glob("*.mp4"))


OPTIMIZE = [
    pytest.param("sac", "grama/sac_regrama.yml", id="sac_regrama.yml"),
    pytest.param("td3", "neuroplastic_expansion/ne_td3.py", id="ne_td3.py"),
]


@pytest.mark.slow
@pytest.mark.parametrize("algo, conf", OPTIMIZE)
def test_optimize_two_trials(algo, conf, tmp_path):
    tune = ["-optimize", "--n-trials", "2", "--n-jobs", "1", "--sampler", "random", "--pruner", "none"]
    extra = ["-params", "learning_starts:250", *tune, "--no-optim-plots", "--eval-episodes", "2"]
    result = zoo_train(algo, "Hopper-v5", ZOO / conf, tmp_path, 300, extra)
    assert "Number of finished trials:  2" in result.stdout
    assert list((tmp_path / "logs" / algo).glob("report_Hopper-v5_2-trials-300-random-none_*.csv"))  # pandas
    restored = result.stderr.count("The config's are restored")
    # the NE config keeps its masked network's policy_kwargs in every trial; GraMa's SAC lets the tuner pick net_arch
    assert restored == (2 if conf.endswith(".py") else 0), result.stderr[-3000:]
