"""The event steps of the callbacks outside the methods that keep an EveryN schedule: the analysis callbacks'
training-pass events and the experiment worker's checkpoints; known answers written out, in one run and in a run
split in two ``learn()`` calls."""

from __future__ import annotations

from pathlib import Path

import pytest
from stable_baselines3 import PPO, TD3
from stable_baselines3.common.env_util import make_vec_env

from sb3_plasticity.analysis.base import TrainingPassAnalysisCallback
from sb3_plasticity.analysis.scores import NeuronScores
from sb3_plasticity.experiments import worker


class StepsAnalysis(TrainingPassAnalysisCallback):
    """Records the env step of every analysis."""

    def __init__(self, freq: int) -> None:
        super().__init__(freq)
        self.steps: list[int] = []

    def analyse(self, scores: list[NeuronScores]) -> None:
        assert scores  # every group was scored on the training pass
        self.steps.append(self.num_timesteps)


def _td3(n_envs: int = 1) -> TD3:
    env = make_vec_env("Pendulum-v1", n_envs=n_envs, seed=0)
    return TD3("MlpPolicy", env, policy_kwargs=dict(net_arch=[8]), learning_starts=100, seed=0, device="cpu")


def test_analysis_events_of_a_split_run_are_those_of_one_run():
    """Due at 100, 200, 300, 400: the capture is armed at the first step at or after each multiple and the analysis
    runs once a training pass has gone through every network. TD3 trains from step 101 on and updates its actor at
    every second gradient step: the first analysis is at 102, the others at their step; learn(250) then learn(150)
    gives the steps of learn(400)."""
    model, analysis = _td3(), StepsAnalysis(freq=100)
    model.learn(250, callback=analysis)
    assert analysis.steps == [102, 200] and analysis.first_event() == (300, "event (every 100 env steps)")
    model.learn(150, callback=analysis, reset_num_timesteps=False)
    assert analysis.steps == [102, 200, 300, 400] and analysis.n_events == 4


def test_analysis_events_with_three_envs():
    """num_timesteps 3, 6, ...: armed at 102, 201, 300 and 402, analysed at the first step with an actor update from
    there (the last one has no training pass left in this learn())."""
    model, analysis = _td3(n_envs=3), StepsAnalysis(freq=100)
    assert analysis.freq == 100
    model.learn(400, callback=analysis)
    assert analysis.steps == [105, 201, 303]


def test_analysis_freq_is_checked():
    with pytest.raises(ValueError, match="freq"):
        StepsAnalysis(freq=0)


def test_worker_checkpoints_at_rollout_starts_after_each_multiple(monkeypatch, tmp_path: Path):
    saved: list[int] = []
    monkeypatch.setattr(worker, "save_checkpoint", lambda model, run_dir, env_name: saved.append(model.num_timesteps))
    model = PPO(
        "MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, n_epochs=1, policy_kwargs=dict(net_arch=[8]), seed=0,
        device="cpu",
    )  # fmt: skip
    # rollouts start at 0, 32, ..., 192; checkpoints due at 50, 100, 150 (200 is the target: none there)
    model.learn(200, callback=worker.RunCallback(tmp_path, "CartPole-v1", target=400, checkpoint_freq=50))
    assert saved == [64, 128, 160]
    # the run goes on from step 224 (the last rollout ended there): due at 250, 300, 350; none at or after the target
    saved.clear()
    model.learn(176, callback=worker.RunCallback(tmp_path, "CartPole-v1", target=400, checkpoint_freq=50),
                reset_num_timesteps=False)  # fmt: skip
    assert saved == [256, 320, 352]
    with pytest.raises(ValueError, match="checkpoint_freq"):
        worker.RunCallback(tmp_path, "CartPole-v1", target=400, checkpoint_freq=0)
