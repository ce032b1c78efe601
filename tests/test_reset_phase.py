"""ResetCallback(reset_on="phase"): the reset fires at the step the training env's phase changes, and only then."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import A2C
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_plasticity import ResetCallback

PERIOD = 7


class PhasedToyEnv(gym.Env):
    """Phase contract: phase = own env steps // period (advances inside ``step``)."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, period: int = PERIOD) -> None:
        self.period = period
        self.steps = 0
        self.t = 0

    @property
    def phase(self) -> int:
        return self.steps // self.period

    @property
    def phase_name(self) -> str:
        return f"task{self.phase % 2}"

    n_phases = None

    def set_phase(self, phase: int, hold: bool = True) -> None:
        self.steps = phase * self.period

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.steps += 1
        self.t += 1
        return np.full(2, 0.5, np.float32), 1.0, False, self.t >= 5, {}


class NoPhaseEnv(PhasedToyEnv):
    def __getattribute__(self, name):
        if name == "phase":
            raise AttributeError(name)
        return super().__getattribute__(name)


def _model(env) -> A2C:
    return A2C("MlpPolicy", env, n_steps=5, seed=0, device="cpu", policy_kwargs=dict(net_arch=[8]))


def _weights(model) -> list[th.Tensor]:
    return [p.detach().clone() for p in model.policy.parameters()]


def test_phase_reset_fires_at_each_switch_only():
    model = _model(PhasedToyEnv())
    changed_at: list[int] = []

    class Spy(ResetCallback):
        def intervene(self):
            before = _weights(self.model)
            out = super().intervene()
            after = _weights(self.model)
            assert any(not th.equal(a, b) for a, b in zip(before, after, strict=True))
            changed_at.append(self.num_timesteps)
            return out

    cb = Spy(reset_on="phase", reset_freq=3)  # reset_freq is ignored in phase mode
    model.learn(40, callback=cb)
    assert cb.event_steps == [7, 14, 21, 28, 35] == changed_at
    assert cb.n_events == 5 and cb.phase == 40 // PERIOD
    assert cb.first_event() is None


def test_periodic_mode_is_default():
    model = _model(PhasedToyEnv())
    cb = ResetCallback(reset_freq=10)
    assert cb.reset_on == "steps"
    model.learn(40, callback=cb)
    assert cb.event_steps == [10, 20, 30, 40]


def test_phase_from_with_copies_at_their_own_pace():
    env = DummyVecEnv([lambda: PhasedToyEnv(7), lambda: PhasedToyEnv(10)])
    model = A2C("MlpPolicy", env, n_steps=5, seed=0, device="cpu", policy_kwargs=dict(net_arch=[8]))
    cb = ResetCallback(reset_on="phase", phase_from="max")
    model.learn(60, callback=cb)  # 2 copies: num_timesteps grows by 2, copy 0 switches every 7 of its own steps
    # max phase = steps // 7 of copy 0 after k vec-steps: changes at k = 7, 14, 21, 28 -> num_timesteps 14, 28, ...
    assert cb.event_steps == [14, 28, 42, 56]


def test_phase_mode_needs_the_phase_contract():
    with pytest.raises(ValueError, match="reset_on"):
        ResetCallback(reset_on="task")
    with pytest.raises(ValueError, match="phase_from"):
        ResetCallback(reset_on="phase", phase_from="last")
    model = _model(NoPhaseEnv())
    with pytest.raises(ValueError, match="phase contract"):
        model.learn(10, callback=ResetCallback(reset_on="phase"))
