"""PhaseEvalCallback: the eval env follows the training env's phase; per-phase and per-name tags carry the right
values on a toy env whose reward encodes the phase; errors; construction from rl-zoo's yaml kwargs; a real Cycle
Friction env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from helpers import Recorder
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_plasticity import PhaseEvalCallback

PERIOD = 50
EP_LEN = 5
TOY_ID = "sb3_plasticity_test/PhaseToy-v0"


class PhaseToyEnv(gym.Env):
    """Follows the phase contract: phase = own steps // period; every step's reward is ``phase + 1``, so an
    episode of ``EP_LEN`` steps returns ``EP_LEN * (phase + 1)`` whatever the policy does."""

    observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, period: int = PERIOD, start_step: int = 0, names: bool = True) -> None:
        self.period = period
        self.steps = start_step
        self.hold = False
        self.t = 0
        self.names = names

    @property
    def phase(self) -> int:
        return self.steps // self.period

    @property
    def phase_name(self) -> str:
        if not self.names:
            raise AttributeError("phase_name")
        return f"level {self.phase % 3}"  # a space, to check tag sanitising

    def set_phase(self, phase: int, hold: bool = True) -> None:
        self.steps = phase * self.period
        self.hold = hold

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        reward = float(self.phase + 1)
        if not self.hold:
            self.steps += 1
        self.t += 1
        return np.zeros(1, np.float32), reward, False, self.t >= EP_LEN, {}


class NoPhaseEnv(PhaseToyEnv):
    phase = None  # type: ignore[assignment]

    def __getattribute__(self, name):
        if name in ("phase", "set_phase", "phase_name"):
            raise AttributeError(name)
        return super().__getattribute__(name)


gym.register(TOY_ID, entry_point=PhaseToyEnv)


def toy_model(env=None, **kwargs) -> tuple[A2C, Recorder]:
    model = A2C("MlpPolicy", env if env is not None else PhaseToyEnv(), n_steps=5, seed=0, device="cpu", **kwargs)
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    return model, rec


def test_eval_follows_training_phase_and_logs_per_phase(tmp_path):
    model, rec = toy_model(policy_kwargs=dict(net_arch=[8]))
    callback = PhaseEvalCallback(PhaseToyEnv(), eval_freq=40, n_eval_episodes=2, log_path=str(tmp_path))
    model.learn(200, callback=callback)
    # the training env's phase at step t is t // PERIOD: evaluations at 40, 80, ..., 200
    expected = {t: t // PERIOD for t in range(40, 201, 40)}
    assert rec.values("eval/phase") == [(t, float(k)) for t, k in expected.items()]
    assert rec.values("eval/mean_reward") == [(t, EP_LEN * (k + 1.0)) for t, k in expected.items()]
    assert rec.values("eval/mean_ep_length") == [(t, float(EP_LEN)) for t in expected]
    for t, k in expected.items():
        assert rec.values(f"eval/phase_{k}/mean_reward") == [(t, EP_LEN * (k + 1.0))]
    # one curve per phase name: phases 0 and 3 are both "level 0"
    assert rec.values("eval/level_0/mean_reward") == [(40, 5.0), (160, 20.0)]
    assert rec.values("eval/level_1/mean_reward") == [(80, 10.0), (200, 25.0)]
    assert [e["phase_name"] for e in callback.evaluations] == ["level 0", "level 1", "level 2", "level 0", "level 1"]
    assert callback.last_mean_reward == 25.0
    data = np.load(tmp_path / "evaluations.npz")
    assert data["timesteps"].tolist() == list(expected) and data["phases"].tolist() == list(expected.values())
    assert data["results"].shape == (5, 2)
    # the training env was not moved by the evaluations
    assert model.get_env().get_attr("phase")[0] == 200 // PERIOD


def test_eval_env_from_an_id_without_names_and_with_vec_normalize():
    train = VecNormalize(make_vec_env(TOY_ID, env_kwargs={"names": False}), gamma=0.99)
    model, rec = toy_model(train, policy_kwargs=dict(net_arch=[8]))
    callback = PhaseEvalCallback(TOY_ID, env_kwargs={"names": False}, eval_freq=60, n_eval_episodes=1, seed=3)
    model.learn(120, callback=callback)
    assert isinstance(callback.eval_env, VecNormalize) and not callback.eval_env.training
    assert rec.values("eval/phase_1/mean_reward") == [(60, 10.0)]
    assert rec.values("eval/phase_2/mean_reward") == [(120, 15.0)]
    assert not any(k.startswith("eval/level") for _, row in rec.rows for k in row)
    np.testing.assert_array_equal(callback.eval_env.obs_rms.mean, train.obs_rms.mean)


@pytest.mark.parametrize("phase_from, expected", [("mode", 1), ("first", 0), ("min", 0), ("max", 2)])
def test_training_envs_in_different_phases(phase_from, expected):
    starts = [0, PERIOD, PERIOD + 1, 2 * PERIOD]  # phases 0, 1, 1, 2
    train = DummyVecEnv([lambda s=s: PhaseToyEnv(start_step=s) for s in starts])
    model, _ = toy_model(train)
    callback = PhaseEvalCallback(PhaseToyEnv(), phase_from=phase_from)
    callback.init_callback(model)
    assert callback.training_phase() == expected


def test_phase_from_mode_tie_takes_the_lowest():
    train = DummyVecEnv([lambda s=s: PhaseToyEnv(start_step=s) for s in (2 * PERIOD, PERIOD)])
    model, _ = toy_model(train)
    callback = PhaseEvalCallback(PhaseToyEnv())
    callback.init_callback(model)
    assert callback.training_phase() == 1


def test_errors():
    with pytest.raises(ValueError, match="eval_env does not follow the phase contract"):
        PhaseEvalCallback(NoPhaseEnv())
    with pytest.raises(ValueError, match="eval_freq"):
        PhaseEvalCallback(PhaseToyEnv(), eval_freq=0)
    with pytest.raises(ValueError, match="phase_from"):
        PhaseEvalCallback(PhaseToyEnv(), phase_from="last")
    with pytest.raises(ValueError, match="only when eval_env is an env id"):
        PhaseEvalCallback(PhaseToyEnv(), env_kwargs={"period": 3})
    with pytest.raises(ValueError, match="eval_env must be"):
        PhaseEvalCallback(42)
    model, _ = toy_model(NoPhaseEnv())
    with pytest.raises(ValueError, match="the training env does not follow the phase contract"):
        model.learn(10, callback=PhaseEvalCallback(PhaseToyEnv()))
    model, _ = toy_model(VecNormalize(DummyVecEnv([PhaseToyEnv])))
    with pytest.raises(ValueError, match="VecNormalize"):
        model.learn(10, callback=PhaseEvalCallback(PhaseToyEnv()))


def test_observation_space_mismatch():
    class Wide(PhaseToyEnv):
        observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    model, _ = toy_model()
    with pytest.raises(ValueError, match="observation space"):
        model.learn(10, callback=PhaseEvalCallback(Wide()))


def test_built_from_zoo_yaml_kwargs():
    from rl_zoo3.utils import get_callback_list

    hyperparams = {
        "callback": [{"sb3_plasticity.PhaseEvalCallback": {"eval_env": TOY_ID, "env_kwargs": {"period": 7}, "eval_freq": 100}}]
    }
    (callback,) = get_callback_list(hyperparams)
    assert isinstance(callback, PhaseEvalCallback) and callback.eval_freq == 100
    assert callback.eval_env.get_attr("period") == [7]


def test_real_cycle_friction_env():
    env_id = "sb3_plasticity/CycleFrictionHopper-v0"
    train = make_vec_env(env_id, env_kwargs={"period": 40}, seed=0)
    model, rec = toy_model(train, policy_kwargs=dict(net_arch=[8]))
    callback = PhaseEvalCallback(env_id, env_kwargs={"period": 40}, eval_freq=50, n_eval_episodes=1, seed=0)
    model.learn(100, callback=callback)
    # friction 4 -> 3 -> 2: phase 1 at step 50, phase 2 at step 100
    assert rec.values("eval/phase") == [(50, 1.0), (100, 2.0)]
    assert [s for s, _ in rec.values("eval/friction_3/mean_reward")] == [50]
    assert [s for s, _ in rec.values("eval/friction_2/mean_reward")] == [100]
    assert callback.eval_env.get_attr("phase") == [2]
