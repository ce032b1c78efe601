"""Bad input table (issue 11, part 4): every public constructor and policy kwarg of the package's methods, buffers and
policies rejects a wrong type or range with one ``ValueError`` (the package's check helpers, :mod:`sb3_plasticity.
methods.base`, raise ``ValueError`` for wrong types too) whose message names the parameter, the value and what is
allowed. Rows that need a model (a method on an algorithm it does not support) raise at ``learn()`` start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import pytest
from stable_baselines3 import DQN, PPO, TD3

from sb3_plasticity import (
    CBPCallback,
    CycleResetDistillCallback,
    ExperienceReviewBuffer,
    GraMaResetCallback,
    L2InitCallback,
    MaskedActorCriticPolicy,
    MaskedSACPolicy,
    MaskedTD3Policy,
    NetworkLearningRateCallback,
    NeuroplasticExpansionCallback,
    PlasticityInjectionCallback,
    PlasticityMonitorCallback,
    ReBornCallback,
    ReDoCallback,
    ResetCallback,
    ShrinkPerturbCallback,
)

ARCH = dict(net_arch=[8, 8])


def td3(**kwargs: Any) -> TD3:
    return TD3("MlpPolicy", "Pendulum-v1", learning_starts=10, buffer_size=100, batch_size=8, policy_kwargs=ARCH, **kwargs)


def learn_td3(cb) -> None:
    td3().learn(2, callback=cb)


def masked(policy, algo=TD3, env_id="Pendulum-v1", **policy_kwargs) -> Callable[[], Any]:
    return lambda: algo(policy, env_id, policy_kwargs=dict(net_arch=[8, 8], **policy_kwargs))


def learn_dqn(cb, policy: str = "MaskedDQNPolicy", **kwargs: Any) -> None:
    """DQN on CartPole with the package's policy called ``policy`` (MaskedDQNPolicy needs the [contrib] extra)."""
    import sb3_plasticity

    policy_class = getattr(sb3_plasticity, policy) if policy.startswith("Masked") else policy
    DQN(policy_class, "CartPole-v1", learning_starts=10, buffer_size=100, batch_size=8, policy_kwargs=ARCH, **kwargs).learn(
        2, callback=cb
    )


def review_buffer(**kwargs: Any) -> ExperienceReviewBuffer:
    env = gym.make("Pendulum-v1")
    return ExperienceReviewBuffer(100, env.observation_space, env.action_space, device="cpu", **kwargs)


# (id, make, exception, what the message must contain: the parameter, the value, what is allowed)
ROWS: list[tuple[str, Callable[[], Any], type[Exception], tuple[str, ...]]] = [
    # -- frequencies <= 0 and wrong types ------------------------------------------------------------------
    ("redo-reset_freq-0", lambda: ReDoCallback(reset_freq=0), ValueError, ("reset_freq", "0", "positive integer")),
    ("redo-reset_freq-float", lambda: ReDoCallback(reset_freq=1.5), ValueError, ("reset_freq", "1.5", "positive integer")),
    ("redo-reset_freq-str", lambda: ReDoCallback(reset_freq="100"), ValueError, ("reset_freq", "'100'", "positive")),
    ("regrama-reset_freq-neg", lambda: GraMaResetCallback(reset_freq=-1), ValueError, ("reset_freq", "-1", "positive")),
    ("reset-reset_freq-0", lambda: ResetCallback(reset_freq=0), ValueError, ("reset_freq", "0", "positive integer")),
    ("sp-freq-0", lambda: ShrinkPerturbCallback(freq=0), ValueError, ("freq", "0", "positive integer")),
    ("cbp-log_freq-0", lambda: CBPCallback(log_freq=0), ValueError, ("log_freq", "0", "positive integer")),
    ("cbp-replace_every-0", lambda: CBPCallback(replace_every=0), ValueError, ("replace_every", "0", "positive")),
    ("monitor-log_freq-0", lambda: PlasticityMonitorCallback(log_freq=0), ValueError, ("log_freq", "0", "positive")),
    ("monitor-log_freq-bool", lambda: PlasticityMonitorCallback(log_freq=True), ValueError, ("log_freq", "True", "positive")),
    ("l2init-log_freq-0", lambda: L2InitCallback(log_freq=0), ValueError, ("log_freq", "0", "positive integer")),
    ("sbp-reset_freq-0", lambda: CycleResetDistillCallback(reset_freq=0), ValueError, ("reset_freq", "0", "positive")),
    ("reborn-reset_freq-0", lambda: ReBornCallback(reset_freq=0), ValueError, ("reset_freq", "0", "positive integer")),
    (
        "ne-grow_interval-0",
        lambda: NeuroplasticExpansionCallback(grow_interval=0),
        ValueError,
        ("grow_interval", "0", "positive"),
    ),
    ("ne-log_freq-0", lambda: NeuroplasticExpansionCallback(log_freq=0), ValueError, ("log_freq", "0", "positive")),
    ("redo-probe_batch_size-0", lambda: ReDoCallback(probe_batch_size=0), ValueError, ("probe_batch_size", "0", "positive")),
    # -- thresholds: tau < 0 -------------------------------------------------------------------------------
    ("redo-tau-neg", lambda: ReDoCallback(tau=-0.1), ValueError, ("tau", "-0.1", "[0, inf]")),
    ("redo-tau-str", lambda: ReDoCallback(tau="0.1"), ValueError, ("tau", "'0.1'", "[0, inf]")),
    ("regrama-tau-neg", lambda: GraMaResetCallback(tau=-0.01), ValueError, ("tau", "-0.01", "[0, inf]")),
    ("reborn-tau-neg", lambda: ReBornCallback(tau=-1.0), ValueError, ("tau", "-1.0", "[0, inf]")),
    ("monitor-tau-neg", lambda: PlasticityMonitorCallback(tau=-0.1), ValueError, ("tau", "-0.1", "[0, inf]")),
    ("monitor-grama_tau-neg", lambda: PlasticityMonitorCallback(grama_tau=-0.1), ValueError, ("grama_tau", "-0.1", "[0")),
    ("reset-dormant_tau-neg", lambda: ResetCallback(dormant_tau=-1), ValueError, ("dormant_tau", "-1", "[0, inf]")),
    ("ne-tau-neg", lambda: NeuroplasticExpansionCallback(tau=-0.1), ValueError, ("tau", "-0.1", "0")),
    # -- fractions and rates ---------------------------------------------------------------------------------
    (
        "redo-max_reset_fraction-0",
        lambda: ReDoCallback(max_reset_fraction=0),
        ValueError,
        ("max_reset_fraction", "0", "(0, 1]"),
    ),
    ("redo-reset_fraction-1.5", lambda: ReDoCallback(reset_fraction=1.5), ValueError, ("reset_fraction", "1.5", "(0, 1]")),
    (
        "cbp-replacement_rate-neg",
        lambda: CBPCallback(replacement_rate=-0.1),
        ValueError,
        ("replacement_rate", "-0.1", "[0, 1]"),
    ),
    ("cbp-replacement_rate-1.5", lambda: CBPCallback(replacement_rate=1.5), ValueError, ("replacement_rate", "1.5", "[0, 1]")),
    ("cbp-decay_rate-1", lambda: CBPCallback(decay_rate=1.0), ValueError, ("decay_rate", "1.0", "[0, 1)")),
    (
        "cbp-maturity_threshold-neg",
        lambda: CBPCallback(maturity_threshold=-1),
        ValueError,
        ("maturity_threshold", "-1", "integer"),
    ),
    ("sbp-reset_rate-0", lambda: CycleResetDistillCallback(reset_rate=0), ValueError, ("reset_rate", "0", "(0, 1]")),
    ("sbp-alpha-neg", lambda: CycleResetDistillCallback(alpha=-0.1), ValueError, ("alpha", "-0.1", "[0, 1]")),
    ("sbp-alpha-1.5", lambda: CycleResetDistillCallback(alpha=1.5), ValueError, ("alpha", "1.5", "[0, 1]")),
    ("sbp-distill_tau-0", lambda: CycleResetDistillCallback(distill_tau=0), ValueError, ("distill_tau", "0", "(0, inf]")),
    ("sp-shrink-1.5", lambda: ShrinkPerturbCallback(shrink=1.5), ValueError, ("shrink", "1.5", "[0, 1]")),
    ("sp-perturb-neg", lambda: ShrinkPerturbCallback(perturb=-0.2), ValueError, ("perturb", "-0.2", "[0, inf]")),
    ("l2init-lam-0", lambda: L2InitCallback(lam=0), ValueError, ("lam", "0", "(0, inf]")),
    ("lr-actor-0", lambda: NetworkLearningRateCallback(actor=0), ValueError, ("actor", "0", "(0, inf]")),
    ("reborn-scale_range", lambda: ReBornCallback(scale_range=(0.8, 0.3)), ValueError, ("scale_range[1]", "0.3", "[0.8")),
    ("ne-grow_rate-neg", lambda: NeuroplasticExpansionCallback(grow_rate=-0.1), ValueError, ("grow_rate", "-0.1", "0")),
    ("ne-prune_ratio-1.5", lambda: NeuroplasticExpansionCallback(prune_ratio=1.5), ValueError, ("prune_ratio", "1.5", "1")),
    # -- choices ---------------------------------------------------------------------------------------------
    ("redo-outgoing", lambda: ReDoCallback(outgoing="drop"), ValueError, ("outgoing", "'drop'", "'zero'")),
    ("regrama-score", lambda: GraMaResetCallback(score="grad"), ValueError, ("score", "'grad'", "activation_grad")),
    ("reset-layers-0", lambda: ResetCallback(layers=0), ValueError, ("layers", "0", "'all'")),
    ("reset-reset_on", lambda: ResetCallback(reset_on="episodes"), ValueError, ("reset_on", "'episodes'", "steps")),
    (
        "monitor-grad_correlation",
        lambda: PlasticityMonitorCallback(grad_correlation="x"),
        ValueError,
        ("grad_correlation", "'x'", "'neurons'"),
    ),
    (
        "sbp-selection",
        lambda: CycleResetDistillCallback(selection="random-ish"),
        ValueError,
        ("selection", "'random-ish'", "cycle"),
    ),
    ("redo-networks-int", lambda: ReDoCallback(networks=3), ValueError, ("networks", "3", "network name")),
    ("redo-networks-empty", lambda: ReDoCallback(networks=[]), ValueError, ("networks", "[]", "non-empty")),
    # -- buffers ---------------------------------------------------------------------------------------------
    ("erb-review_window-0", lambda: review_buffer(review_window=0), ValueError, ("review_window", "0", "positive integer")),
    ("erb-review_floor-1.5", lambda: review_buffer(review_floor=1.5), ValueError, ("review_floor", "1.5", "[0, 1]")),
    ("erb-n_steps-0", lambda: review_buffer(n_steps=0), ValueError, ("n_steps", "0", "positive integer")),
    ("erb-gamma-2", lambda: review_buffer(gamma=2.0), ValueError, ("gamma", "2.0", "[0, 1]")),
    # -- policies ---------------------------------------------------------------------------------------------
    ("masked-td3-density-0", masked(MaskedTD3Policy, initial_density=0), ValueError, ("initial_density", "0", "(0, 1]")),
    ("masked-td3-density-1.5", masked(MaskedTD3Policy, initial_density=1.5), ValueError, ("initial_density", "1.5", "(0, 1]")),
    (
        "masked-sac-density-str",
        masked(MaskedSACPolicy, initial_density="0.5"),
        ValueError,
        ("initial_density", "'0.5'", "(0, 1]"),
    ),
    (
        "masked-ppo-distribution",
        masked(MaskedActorCriticPolicy, algo=PPO, mask_distribution="uniformly"),
        ValueError,
        ("mask_distribution", "'uniformly'", "erdos_renyi"),
    ),
    (
        "masked-td3-dense_first_last-1",
        masked(MaskedTD3Policy, dense_first_last=1),
        ValueError,
        ("dense_first_last", "1", "True or False"),
    ),
    (
        "erb-review_probability-2",
        lambda: setattr(review_buffer(), "review_probability", 2),
        ValueError,
        ("review_probability", "2", "[0, 1]"),
    ),
    # -- a method on an algorithm or policy it does not support --------------------------------------------
    (
        "sbp-on-td3",
        lambda: learn_td3(CycleResetDistillCallback()),
        ValueError,
        ("CycleResetDistillCallback", "TD3", "PPO, A2C, SAC"),
    ),
    (
        "ne-on-dense-policy",
        lambda: learn_td3(NeuroplasticExpansionCallback()),
        ValueError,
        ("NeuroplasticExpansionCallback", "TD3Policy", "MaskedLinear"),
    ),
    (
        "ne-on-dense-dqn",
        lambda: learn_dqn(NeuroplasticExpansionCallback(), policy="MlpPolicy"),
        ValueError,
        ("DQNPolicy", "MaskedLinear", "MaskedDQNPolicy", "MaskedQRDQNPolicy", "MaskedTQCPolicy"),
    ),
    (
        "ne-review-buffer-on-dqn",
        lambda: learn_dqn(NeuroplasticExpansionCallback(), replay_buffer_class=ExperienceReviewBuffer),
        ValueError,
        ("ExperienceReviewBuffer", "'critic'", "MaskedDQNPolicy", "['q_net']", "ReplayBuffer"),
    ),
    ("redo-unknown-network", lambda: learn_td3(ReDoCallback(networks="critc")), ValueError, ("networks", "'critc'")),
    (
        "erb-on-ppo",
        lambda: PPO("MlpPolicy", "Pendulum-v1", replay_buffer_class=ExperienceReviewBuffer),
        TypeError,  # SB3's own: PPO has no replay buffer argument
        ("replay_buffer_class",),
    ),
    # -- injection ---------------------------------------------------------------------------------------------
    (
        "injection-head_layers-0",
        lambda: PlasticityInjectionCallback(inject_at=100, head_layers=0),
        ValueError,
        ("head_layers", "0", "positive"),
    ),
    (
        "injection-inject_at-neg",
        lambda: PlasticityInjectionCallback(inject_at=-5),
        ValueError,
        ("inject_at", "-5", "integer >= 1"),
    ),
]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("make, exc, parts", [pytest.param(m, e, p, id=i) for i, m, e, p in ROWS])
def test_bad_input_is_rejected(make, exc, parts):
    with pytest.raises(exc) as info:
        make()
    message = str(info.value)
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
