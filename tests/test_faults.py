"""Faults inside learn(): NaN/inf in the captured statistics skip an event without changing anything, and an
exception raised inside a callback event leaves the model trainable and saveable with every hook removed."""

from __future__ import annotations

import math

import pytest
import torch as th
from helpers import Recorder, forward_hook_count, model_optimizers
from stable_baselines3 import TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from sb3_plasticity import (
    CBPCallback,
    ExperienceReviewBuffer,
    GraMaResetCallback,
    PlasticityMonitorCallback,
    ReDoCallback,
)
from sb3_plasticity.capture import Capture
from sb3_plasticity.hooks import step_hooks
from sb3_plasticity.methods import cbp as cbp_module
from sb3_plasticity.methods import monitor as monitor_module
from sb3_plasticity.methods import neuron_reset

ARCH = dict(net_arch=[16, 16])
FREQ = 50
POISON_UNTIL = 200  # captured statistics are NaN before this step, clean after


def make_model() -> tuple[TD3, Recorder]:
    model = TD3("MlpPolicy", "Pendulum-v1", learning_starts=50, buffer_size=500, batch_size=32, policy_kwargs=ARCH, seed=0)
    recorder = Recorder()
    model.set_logger(Logger(None, [recorder]))
    return model, recorder


class Poison(BaseCallback):
    """Makes every tensor a Capture records NaN until ``POISON_UNTIL`` (training itself is untouched)."""

    def __init__(self, flag: dict) -> None:
        super().__init__()
        self.flag = flag

    def _on_step(self) -> bool:
        self.flag["on"] = self.num_timesteps < POISON_UNTIL
        return True


@pytest.fixture
def poisoned(monkeypatch):
    flag = {"on": True}
    trim = Capture._trim

    def nan_trim(self, x):
        out = trim(self, x)
        return th.full_like(out, math.nan) if flag["on"] else out

    monkeypatch.setattr(Capture, "_trim", nan_trim)
    return flag


def spy_resets(monkeypatch, module, flag) -> list[bool]:
    """Replace ``module.reset_neurons``: records, per call, whether the statistics were poisoned then."""
    calls: list[bool] = []
    real = module.reset_neurons

    def spy(*args, **kwargs):
        calls.append(flag["on"])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "reset_neurons", spy)
    return calls


# every event resets neurons when its statistics are clean
NAN_CASES = [
    pytest.param(lambda: ReDoCallback(reset_freq=FREQ, reset_fraction=0.25), "redo", neuron_reset, id="redo"),
    pytest.param(lambda: GraMaResetCallback(reset_freq=FREQ, tau=0.5), "regrama", neuron_reset, id="regrama"),
    pytest.param(lambda: CBPCallback(replacement_rate=0.05, maturity_threshold=5, log_freq=FREQ), "cbp", cbp_module, id="cbp"),
]


@pytest.mark.parametrize("make_cb, tag, module, ", NAN_CASES)
def test_nan_statistics_skip_the_event(monkeypatch, poisoned, make_cb, tag, module):
    calls = spy_resets(monkeypatch, module, poisoned)
    model, recorder = make_model()
    cb = make_cb()
    with pytest.warns(RuntimeWarning, match="skipped"):
        model.learn(400, callback=[Poison(poisoned), cb])
    assert model.num_timesteps == 400  # training went on
    skipped = recorder.values(f"plasticity/{tag}/skipped_events")
    assert skipped and skipped[-1][1] == cb.skipped_events >= 1
    assert calls and not any(calls)  # no reset from poisoned statistics; resets once they are clean
    assert cb.total_reset > 0
    for key in {k for _, row in recorder.rows for k in row if k.startswith(f"plasticity/{tag}/")}:
        assert all(math.isfinite(v) for _, v in recorder.values(key)), key
    if tag == "cbp":
        for state in cb.states.values():
            assert th.isfinite(state.utility).all() and th.isfinite(state.mean_activation).all()


def test_nan_statistics_skip_the_monitors_measurement(poisoned):
    model, recorder = make_model()
    monitor = PlasticityMonitorCallback(log_freq=FREQ)
    with pytest.warns(RuntimeWarning, match="skipped"):
        model.learn(300, callback=[Poison(poisoned), monitor])
    skipped = recorder.values("plasticity/monitor/skipped_events")
    assert skipped and monitor.skipped_events >= 2  # one per network and poisoned measurement
    ratios = recorder.values("plasticity/critic/dormant_ratio")
    assert ratios and min(step for step, _ in ratios) >= POISON_UNTIL  # nothing logged from NaN statistics
    for key in {k for _, row in recorder.rows for k in row if k.startswith("plasticity/")}:
        assert all(math.isfinite(v) for _, v in recorder.values(key)), key


def test_review_buffer_drops_nonfinite_ratios():
    import gymnasium as gym

    env = gym.make("Pendulum-v1")
    buffer = ExperienceReviewBuffer(100, env.observation_space, env.action_space, device="cpu", review_window=4)
    buffer.record_active_ratio(0.5)
    with pytest.warns(RuntimeWarning, match="dropped"):
        buffer.record_active_ratio(math.nan)
        buffer.record_active_ratio(math.inf)
    buffer.record_active_ratio(0.4)
    assert buffer.n_skipped_ratios == 2
    assert buffer.epsilon == pytest.approx(0.25) and math.isfinite(buffer._change_sum)


# ----------------------------------------------------------------------------------------------------
# An exception inside an event
# ----------------------------------------------------------------------------------------------------
def _raise(*args, **kwargs):
    raise RuntimeError("boom inside the event")


RAISE_CASES = [
    pytest.param(lambda: ReDoCallback(reset_freq=FREQ), ReDoCallback, "score", id="redo-on_step"),
    pytest.param(lambda: GraMaResetCallback(reset_freq=FREQ), GraMaResetCallback, "score", id="regrama-step-hook"),
    pytest.param(
        lambda: CBPCallback(replacement_rate=0.05, maturity_threshold=5, log_freq=FREQ),
        cbp_module,
        "contribution_utility",
        id="cbp-step-hook",
    ),
    pytest.param(lambda: PlasticityMonitorCallback(log_freq=FREQ), monitor_module, "layer_metrics", id="monitor"),
]


@pytest.mark.parametrize("make_cb, target, name", RAISE_CASES)
def test_exception_in_an_event_removes_every_hook(monkeypatch, tmp_path, make_cb, target, name):
    model, _ = make_model()
    cb = make_cb()
    with monkeypatch.context() as m:
        m.setattr(target, name, _raise)
        with pytest.raises(RuntimeError, match="boom inside the event"):
            model.learn(300, callback=cb)
    assert forward_hook_count(model.policy.modules()) == 0
    assert all(not m._backward_hooks and not m._backward_pre_hooks for m in model.policy.modules())
    for opt in model_optimizers(model):
        # the first event raised before it reset anything, so not even surgery's fresh-step registry (which stays
        # only while reset entries wait for their first gradient) is left
        ordered = step_hooks(opt)
        assert not ordered.pre_hooks and not ordered.post_hooks and ordered.fresh is None
        assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks  # nor the PyTorch hooks running them
    model.save(tmp_path / "model.zip")
    updates = model._n_updates
    model.learn(100, reset_num_timesteps=False)  # no callback: trains
    assert model._n_updates > updates
    assert forward_hook_count(model.policy.modules()) == 0
    TD3.load(tmp_path / "model.zip")
