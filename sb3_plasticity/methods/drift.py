"""Output drift of the policy around an intervention, on a fixed probe batch."""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.sac.policies import Actor as SACActor

from sb3_plasticity.capture import sample_batch

__all__ = ["PolicyProbe"]


class PolicyProbe:
    """A fixed batch of observations on which the policy's output is compared before and after an event.

    The drift is the mean absolute action change for deterministic policies (TD3, DDPG: tag suffix
    ``action_change``) and the mean ``KL(before || after)`` of the action distributions for stochastic ones
    (SAC: the Gaussian before tanh squashing, which has the same KL; PPO/A2C: the action distribution;
    tag suffix ``policy_kl``).

    :param algorithm: the SB3 algorithm.
    :param observations: the probe batch (kept as given, on the model's device).
    :param actions: actions of the same transitions (for critic forwards on the probe batch).
    """

    def __init__(self, algorithm, observations: th.Tensor | dict[str, th.Tensor], actions: th.Tensor | None = None) -> None:
        self.algorithm = algorithm
        self.observations = observations
        self.actions = actions
        policy = algorithm.policy
        self.deterministic = not isinstance(policy, ActorCriticPolicy) and not isinstance(
            getattr(policy, "actor", None), SACActor
        )
        self.name = "action_change" if self.deterministic else "policy_kl"

    @classmethod
    def from_buffer(cls, algorithm, batch_size: int = 256) -> PolicyProbe:
        observations, actions = sample_batch(algorithm, batch_size)
        return cls(algorithm, observations, actions)

    @th.no_grad()
    def output(self) -> Any:
        policy = self.algorithm.policy
        obs = self.observations
        if isinstance(policy, ActorCriticPolicy):
            return policy.get_distribution(obs).distribution
        actor = policy.actor
        if isinstance(actor, SACActor):
            mean, log_std, kwargs = actor.get_action_dist_params(obs)
            return actor.action_dist.proba_distribution(mean, log_std, **kwargs).distribution
        return actor(obs)

    @th.no_grad()
    def drift(self, before: Any, after: Any) -> float:
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
