"""Silent no-ops get one clear ``UserWarning`` at the start of ``learn()``: a review buffer nothing feeds, a masked
policy nothing grows, a method whose first event falls after the end of ``learn()``, and ``learning_starts`` at or
beyond the end of ``learn()``."""

from __future__ import annotations

import warnings

import pytest
from stable_baselines3 import PPO, SAC, TD3

from sb3_plasticity import (
    CycleResetDistillCallback,
    ExperienceReviewBuffer,
    MaskedTD3Policy,
    NeuroplasticExpansionCallback,
    PlasticityInjectionCallback,
    PlasticityMonitorCallback,
    ReDoCallback,
    ResetCallback,
)

ARCH = dict(net_arch=[16, 16])
OFF = dict(learning_starts=50, buffer_size=500, batch_size=16, seed=0, device="cpu")
BUFFER = "ExperienceReviewBuffer without a NeuroplasticExpansionCallback"
POLICY = "MaskedTD3Policy is trained without a NeuroplasticExpansionCallback"
LATE = "it will not run in this learn()"
STARTS = "takes no gradient step"


def td3(policy=MaskedTD3Policy, review: bool = True, **kwargs) -> TD3:
    if review:
        kwargs["replay_buffer_class"] = ExperienceReviewBuffer
    return TD3(policy, "Pendulum-v1", policy_kwargs=dict(ARCH), **{**OFF, **kwargs})


def messages(model, steps: int, callback=None) -> list[str]:
    """The UserWarnings of ``model.learn(steps, callback)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.learn(steps, callback=callback)
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def count(found: list[str], text: str) -> int:
    return sum(text in m for m in found)


# ----------------------------------------------------------------------------------------------------------------
# The review buffer and the masked policy without the NE callback
# ----------------------------------------------------------------------------------------------------------------
def test_review_buffer_without_ne_warns_once():
    model = td3(policy="MlpPolicy")
    with pytest.warns(UserWarning, match=BUFFER):
        model.learn(60)
    assert count(messages(model, 60), BUFFER) == 0  # once per buffer


def test_review_buffer_with_a_fixed_probability_or_with_ne_does_not_warn():
    model = td3(policy="MlpPolicy")
    model.replay_buffer.review_probability = 0.5
    assert count(messages(model, 60), BUFFER) == 0
    found = messages(td3(), 120, NeuroplasticExpansionCallback(grow_interval=100))
    assert count(found, BUFFER) == 0 and count(found, POLICY) == 0


def test_masked_policy_without_ne_warns_at_its_first_training_pass():
    model = td3(review=False)
    with pytest.warns(UserWarning, match=POLICY):
        model.learn(60)  # learning_starts 50: trained from step 51
    assert count(messages(model, 60), POLICY) == 0  # once per policy


def test_masked_policy_with_another_method_only_warns():
    found = messages(td3(review=False), 60, PlasticityMonitorCallback(log_freq=50))
    assert count(found, POLICY) == 1


# ----------------------------------------------------------------------------------------------------------------
# A first event after the end of learn()
# ----------------------------------------------------------------------------------------------------------------
LATE_CASES = [
    pytest.param(lambda: ReDoCallback(reset_freq=1000), "ReDoCallback: its first event (reset_freq=1000)", id="redo"),
    pytest.param(lambda: ResetCallback(), "ResetCallback: its first event (reset_freq=90000)", id="reset"),
    pytest.param(
        lambda: NeuroplasticExpansionCallback(grow_interval=20_000), "its first event (every 20000 env steps)", id="ne"
    ),
    pytest.param(lambda: PlasticityInjectionCallback(inject_at=500), "its first injection (inject_at=[500])", id="inject"),
]


@pytest.mark.parametrize("make, text", LATE_CASES)
def test_first_event_after_the_end_of_learn_warns(make, text):
    # injection refuses a masked policy that did not opt in (InjectablePolicy); "MlpPolicy" takes its injectable class
    model = td3("MlpPolicy", review=False) if "injection" in text else td3()
    with pytest.warns(UserWarning, match=LATE) as record:
        model.learn(100, callback=make())
    assert any(text in str(w.message) and "this learn() ends at step 100" in str(w.message) for w in record)


def test_ne_event_at_the_last_step_does_not_run_and_warns():
    # NE grows only before end_step (default: the end of learn()): an event due at the last step never runs
    model = td3()
    cb = NeuroplasticExpansionCallback(grow_interval=100)
    assert count(messages(model, 100, cb), LATE) == 1
    assert cb.n_events == 0


def test_sbp_event_in_the_last_ppo_rollout_warns():
    # PPO runs an SBP event at the start of the rollout after the one it fell in: none in the last rollout
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=dict(ARCH), seed=0)
    cb = CycleResetDistillCallback(reset_freq=100, max_distill_epochs=1)
    found = messages(model, 128, cb)
    assert count(found, "no event runs from step 65 on") == 1
    assert cb.n_events == 0


def test_events_that_run_do_not_warn():
    model = td3(policy="MlpPolicy", review=False)
    redo, reset = ReDoCallback(reset_freq=50, networks="actor"), ResetCallback(reset_freq=100, networks="critic")
    found = messages(model, 100, [redo, reset])
    assert count(found, LATE) == 0 and count(found, STARTS) == 0
    assert redo.n_events == 2 and reset.n_events == 1
    ne = NeuroplasticExpansionCallback(grow_interval=60)
    assert count(messages(td3(), 100, ne), LATE) == 0
    assert ne.n_events == 1
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=dict(ARCH), seed=0)
    cb = CycleResetDistillCallback(reset_freq=64, max_distill_epochs=1)
    assert count(messages(model, 128, cb), LATE) == 0
    assert cb.n_events == 1


# ----------------------------------------------------------------------------------------------------------------
# learning_starts at or beyond the end of learn()
# ----------------------------------------------------------------------------------------------------------------
def test_learning_starts_beyond_the_end_warns_once_per_learn():
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(ARCH), **{**OFF, "learning_starts": 5000})
    callbacks = [PlasticityMonitorCallback(log_freq=50), ReDoCallback(reset_freq=50)]
    with pytest.warns(UserWarning, match="learning_starts=5000 is not below the end of this learn"):
        model.learn(100, callback=callbacks)
    found = messages(model, 100, callbacks)
    assert count(found, STARTS) == 1  # two callbacks, one warning
    assert count(messages(SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(ARCH), **OFF), 100, callbacks), STARTS) == 0
