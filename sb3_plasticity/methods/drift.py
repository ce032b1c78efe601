"""Output drift of the policy around an intervention, on a fixed probe batch."""

from __future__ import annotations

from typing import Any

import torch as th

from sb3_plasticity.adapters import adapter_for, evaluation_mode
from sb3_plasticity.capture import measurement_pass, sample_batch

__all__ = ["PolicyProbe"]


class PolicyProbe:
    """A fixed batch of observations on which the policy's output is compared before and after an event.

    What is compared comes from the policy's adapter (:func:`~sb3_plasticity.adapters.adapter_for`):

    - stochastic policies (SAC, TQC, CrossQ: the Gaussian before tanh squashing, which has the same KL; PPO/A2C: the
      action distribution): the mean ``KL(before || after)``, tag suffix ``policy_kl``;
    - deterministic continuous policies (TD3, DDPG, DrQ-v2, DACER's mean action): the mean absolute action change,
      tag suffix ``action_change``;
    - greedy discrete policies (DQN, QR-DQN): the fraction of probe observations whose greedy action changed, tag
      suffix ``action_change``.

    The policy runs in eval mode (norms with running statistics read them, see
    :func:`~sb3_plasticity.adapters.evaluation_mode`), so the drift is 0 when no weight changed.

    :param algorithm: the SB3 algorithm.
    :param observations: the probe batch (kept as given, on the model's device).
    :param actions: actions of the same transitions (for critic forwards on the probe batch).
    """

    def __init__(self, algorithm, observations: th.Tensor | dict[str, th.Tensor], actions: th.Tensor | None = None) -> None:
        self.algorithm = algorithm
        self.observations = observations
        self.actions = actions
        self.adapter = adapter_for(algorithm.policy)
        self.deterministic = not self.adapter.is_stochastic(algorithm.policy)
        self.discrete = self.deterministic and self.adapter.discrete_actions(algorithm.policy)
        self.name = "action_change" if self.deterministic else "policy_kl"

    @classmethod
    def from_buffer(cls, algorithm, batch_size: int = 256) -> PolicyProbe:
        observations, actions = sample_batch(algorithm, batch_size)
        return cls(algorithm, observations, actions)

    @th.no_grad()
    def output(self) -> Any:
        policy = self.algorithm.policy
        with measurement_pass(), evaluation_mode(policy):
            if self.deterministic:
                return self.adapter.action(policy, self.observations)
            return self.adapter.distribution(policy, self.observations)

    @th.no_grad()
    def drift(self, before: Any, after: Any) -> float:
        if self.discrete:
            return float((after != before).float().mean())
        if self.deterministic:
            return float((after - before).abs().mean())
        if isinstance(before, list):  # MultiCategorical
            return float(sum(_kl(b, a) for b, a in zip(before, after, strict=True)))
        return _kl(before, after)


def _kl(before: th.distributions.Distribution, after: th.distributions.Distribution) -> float:
    kl = th.distributions.kl_divergence(before, after)
    if kl.dim() > 1:
        kl = kl.sum(dim=-1)
    return max(float(kl.mean()), 0.0)  # float noise can give -1e-9 for identical distributions
