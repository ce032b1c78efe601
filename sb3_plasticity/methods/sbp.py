"""SBP / P3O: cycle reset with inner distillation ("Stay Hungry, Keep Learning", Zhou et al., ICML 2025)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.sac.policies import Actor as SACActor

from sb3_plasticity.capture import sample_batch
from sb3_plasticity.methods.base import check_fraction, check_positive_int, check_range
from sb3_plasticity.methods.intervention import InterventionCallback
from sb3_plasticity.neurons import NeuronGroup
from sb3_plasticity.surgery import reset_neurons

__all__ = ["CycleResetDistillCallback", "alpha_dkl", "policy_distribution"]

Distribution = th.distributions.Normal | th.distributions.Categorical


def alpha_dkl(teacher: Distribution, student: Distribution, alpha: float) -> th.Tensor:
    """alpha-weighted double KL (P3O Eq. 4): ``alpha KL(teacher || student) + (1 - alpha) KL(student || teacher)``.

    Closed forms (``torch.distributions``) for diagonal Gaussians (summed over action dimensions) and
    categoricals; the mean over the batch.
    """
    forward = th.distributions.kl_divergence(teacher, student)
    reverse = th.distributions.kl_divergence(student, teacher)
    if forward.dim() > 1:
        forward, reverse = forward.sum(dim=-1), reverse.sum(dim=-1)
    return (alpha * forward + (1 - alpha) * reverse).mean()


def policy_distribution(algorithm, observations: th.Tensor) -> Distribution:
    """The action distribution of a PPO/A2C policy or a SAC actor, differentiable w.r.t. its parameters.

    SAC: the Gaussian *before* tanh squashing. tanh is a bijection, so the KL between two squashed Gaussians
    equals the KL between the Gaussians, which has a closed form.
    """
    policy = algorithm.policy
    if isinstance(policy, ActorCriticPolicy):
        dist = policy.get_distribution(observations).distribution
    else:
        actor = policy.actor
        mean, log_std, kwargs = actor.get_action_dist_params(observations)
        dist = actor.action_dist.proba_distribution(mean, log_std, **kwargs).distribution
    if not isinstance(dist, (th.distributions.Normal, th.distributions.Categorical)):
        raise ValueError(f"distillation needs a Gaussian or categorical policy, got {type(dist).__name__}")
    return dist


def _detach(dist: Distribution) -> Distribution:
    if isinstance(dist, th.distributions.Normal):
        return th.distributions.Normal(dist.loc.detach(), dist.scale.detach())
    return th.distributions.Categorical(logits=dist.logits.detach())


def _rows(dist: Distribution, idx: th.Tensor) -> Distribution:
    if isinstance(dist, th.distributions.Normal):
        return th.distributions.Normal(dist.loc[idx], dist.scale.expand_as(dist.loc)[idx])
    return th.distributions.Categorical(logits=dist.logits[idx])


class CycleResetDistillCallback(InterventionCallback):
    """SBP (P3O paper, Alg. 1-2): cycle reset of the actor's neurons with inner distillation.

    Every ``reset_freq`` env steps, after the algorithm's update:

    1. the teacher: the current actor's action distributions on the distillation data (the rollout just used for
       PPO/A2C's update; ``distill_samples`` transitions sampled from the replay buffer for SAC, App. A.5);
    2. cycle reset: in every hidden layer of the actor (``l`` neurons), re-initialise the incoming weights of
       the neurons with index in ``[p l, (p + reset_rate) l)`` from the layer's own init and give those entries
       fresh optimizer state; the cursor ``p`` then advances by ``reset_rate`` and wraps to 0, so every
       ``ceil(1 / reset_rate)`` events each hidden neuron of the actor is reset exactly once;
    3. inner distillation (``distill=True``): with the reset neurons' incoming weights frozen, train the actor
       to match the teacher with ``alpha KL(teacher || student) + (1 - alpha) KL(student || teacher)``
       (:func:`alpha_dkl`), in epochs over the data in minibatches of ``distill_batch_size``, until the loss
       over all the data is ``<= distill_tau`` (at least one epoch, as in Alg. 2) or ``max_distill_epochs``.

    Our choices where the paper is silent (no public code exists):

    - outgoing weights of reset neurons are kept (``outgoing="keep"``): zeroing them would preserve the
      function and leave nothing to distill; they train during distillation, only incoming weights are frozen;
    - distillation uses its own Adam optimizer over the actor's parameters (learning rate ``distill_lr``,
      default: the actor optimizer's current rate), discarded afterwards, so the RL optimizer's moments are not
      mixed with the distillation's;
    - the actor is the ``actor`` network for SAC and the ``policy`` branch for PPO/A2C (with ``log_std``); a
      features extractor shared with the critic is neither reset nor distilled (the critic stays untouched);
    - SAC's squashed Gaussian: the KL of the Gaussians before tanh (see :func:`policy_distribution`);
    - for PPO the teacher is taken after the update (Alg. 2: update, then reset): the rollout is copied at the
      end of the rollout and the event runs when the next rollout starts; an event that falls due in the last
      rollout of a ``learn()`` runs when a later ``learn()`` continues (the pending flag is saved);
    - at least one distillation epoch runs, as in Alg. 2 (``d = None`` starts the loop), even when the KL after
      the reset is already below ``distill_tau``; with a small distillation set the fresh optimizer's first
      steps can then raise it slightly.

    Logged (besides :class:`InterventionCallback`'s counts, dormant ratios and ``policy_kl`` drift under
    ``plasticity/cycle_reset/``): ``plasticity/cycle_reset/cursor`` (p before the event),
    ``plasticity/distill/epochs``, ``total_epochs``, ``epoch_ratio`` (total distillation epochs / the
    algorithm's own epochs or gradient steps so far, P3O Table 2), ``loss`` (final alpha-DKL), ``kl_before`` and
    ``kl_final`` (KL(teacher || student) right after the reset and after distillation), ``cap_hit`` (1 when the
    epoch cap stopped it above ``distill_tau``).

    :param reset_freq: env steps between events (default 50 000, P3O Table 3; SAC: 10 000, Table 6).
    :param reset_rate: fraction of each hidden layer reset per event, in (0, 1] (default 0.01, Table 3).
    :param alpha: weight of the forward KL, in [0, 1] (default 0.4, Table 3; Sec. 5.3 finds 0.3 often better;
        SAC: 0.8, Table 6).
    :param distill_tau: distillation stops when the alpha-DKL is ``<=`` this, > 0 (default 0.01).
    :param distill: False gives the "Cycle" ablation (reset only).
    :param max_distill_epochs: cap on distillation epochs per event (default 100; Table 2 reports 2-31 per reset).
    :param distill_batch_size: minibatch size of distillation (default 256, PPO's minibatch in Table 3).
    :param distill_samples: SAC: transitions sampled from the replay buffer (default 8192, App. A.5).
    :param distill_lr: learning rate of the distillation optimizer (default: the actor optimizer's).
    :param outgoing: ``"keep"`` (default) or ``"zero"`` for the reset neurons' outgoing weights.
    :param verbose: 0 or 1.
    """

    method = "cycle_reset"

    def __init__(
        self,
        reset_freq: int = 50_000,
        reset_rate: float = 0.01,
        alpha: float = 0.4,
        distill_tau: float = 0.01,
        distill: bool = True,
        max_distill_epochs: int = 100,
        distill_batch_size: int = 256,
        distill_samples: int = 8192,
        distill_lr: float | None = None,
        outgoing: str = "keep",
        dormant_tau: float = 0.1,
        probe_batch_size: int = 256,
        verbose: int = 0,
    ) -> None:
        super().__init__(reset_freq, None, dormant_tau, probe_batch_size, verbose)
        self.reset_rate = check_fraction("reset_rate", reset_rate, allow_none=False)
        self.alpha = check_range("alpha", alpha, 0.0, 1.0)
        self.distill_tau = check_range("distill_tau", distill_tau, 0.0, low_open=True)
        if distill_lr is not None:
            check_range("distill_lr", distill_lr, 0.0, low_open=True)
        if outgoing not in ("keep", "zero"):
            raise ValueError(f"outgoing must be 'keep' or 'zero', got {outgoing!r}")
        self.reset_freq = self.freq
        self.distill = bool(distill)
        self.max_distill_epochs = check_positive_int("max_distill_epochs", max_distill_epochs)
        self.distill_batch_size = check_positive_int("distill_batch_size", distill_batch_size)
        self.distill_samples = check_positive_int("distill_samples", distill_samples)
        self.distill_lr = distill_lr
        self.outgoing = outgoing
        self.events_per_cycle = math.ceil(1 / self.reset_rate - 1e-9)
        self.cycle_index = 0  # j: the cursor is p = j * reset_rate
        self.total_distill_epochs = 0
        self._due = False
        self._data: th.Tensor | None = None

    # -- wiring ------------------------------------------------------------------------------------------
    def _init_callback(self) -> None:
        policy = self.model.policy
        stochastic = isinstance(policy, ActorCriticPolicy) or isinstance(getattr(policy, "actor", None), SACActor)
        if not stochastic:
            raise ValueError(
                f"CycleResetDistillCallback distils a stochastic actor (PPO, A2C, SAC); "
                f"{type(self.model).__name__} has a deterministic one"
            )
        self.networks = ["policy"] if isinstance(policy, ActorCriticPolicy) else ["actor"]
        super()._init_callback()

    @property
    def on_policy(self) -> bool:
        return getattr(self.model, "rollout_buffer", None) is not None

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_event:  # due: for PPO/A2C it runs after the rollout's update
            self._next_event = (self.num_timesteps // self.freq + 1) * self.freq
            self._due = True
        if self._due and not self.on_policy:
            self._due = False
            self.run_event()
        return True

    def events_end(self) -> int:
        """PPO/A2C: an event runs at the start of the rollout after the one it fell in, so none runs from the first
        step of the last rollout of this ``learn()`` on."""
        end = super().events_end()
        if not self.on_policy:
            return end
        rollout = self.model.n_steps * self.model.n_envs
        last_rollout_start = (math.ceil(self.model._total_timesteps / rollout) - 1) * rollout
        return min(end, last_rollout_start + 1)

    def _on_rollout_end(self) -> None:
        super()._on_rollout_end()
        if self._due and self.on_policy:
            buffer = self.model.rollout_buffer
            obs = buffer.observations.reshape(-1, *buffer.obs_shape)
            self._data = buffer.to_torch(obs)

    def _on_rollout_start(self) -> None:
        if self._due and self.on_policy and self._data is not None:
            self._due = False
            self.run_event()
            self._data = None

    # -- the method --------------------------------------------------------------------------------------
    def cycle_indices(self, n_neurons: int) -> th.Tensor:
        """Indices ``[p l, (p + rate) l)`` of the current event; the last event of a cycle ends at ``l``."""
        j = self.cycle_index
        start = math.floor(j * self.reset_rate * n_neurons + 1e-9)
        end = n_neurons if j == self.events_per_cycle - 1 else math.floor((j + 1) * self.reset_rate * n_neurons + 1e-9)
        return th.arange(start, min(end, n_neurons))

    def actor_parameters(self) -> list[th.nn.Parameter]:
        params = list(self.neurons.network_parameters(self.networks[0]))
        log_std = getattr(self.model.policy, "log_std", None)
        if isinstance(log_std, th.nn.Parameter) and all(p is not log_std for p in params):
            params.append(log_std)
        return params

    def intervene(self) -> dict[tuple[str, str], int]:
        data = self._data if self.on_policy else sample_batch(self.model, self.distill_samples)[0]
        with th.no_grad():
            teacher = _detach(policy_distribution(self.model, data))
        self.record("cycle_reset/cursor", self.cycle_index * self.reset_rate)
        groups = self.neurons.select(self.networks, targets=False)
        reset: dict[NeuronGroup, th.Tensor] = {g: self.cycle_indices(g.n_neurons) for g in groups}
        counts = {(g.network, g.name): reset_neurons(g, idx, outgoing=self.outgoing) for g, idx in reset.items()}
        self.cycle_index = (self.cycle_index + 1) % self.events_per_cycle
        if self.distill:
            self._distill(data, teacher, reset)
        return counts

    def _distill(self, data: th.Tensor, teacher: Distribution, reset: dict[NeuronGroup, th.Tensor]) -> None:
        params = self.actor_parameters()
        lr = self.distill_lr
        if lr is None:
            owner = self.neurons.optimizers_of(params[0])
            lr = owner[0].param_groups[0]["lr"] if owner else 3e-4
        optimizer = th.optim.Adam(params, lr=lr)
        n = data.shape[0]

        def full_loss() -> tuple[float, float]:
            with th.no_grad():
                student = policy_distribution(self.model, data)
                return float(alpha_dkl(teacher, student, self.alpha)), float(alpha_dkl(teacher, student, 1.0))

        _, kl_before = full_loss()
        epochs, loss = 0, math.inf
        while epochs < self.max_distill_epochs:
            for idx in th.randperm(n, device=data.device).split(self.distill_batch_size):
                student = policy_distribution(self.model, data[idx])
                batch_loss = alpha_dkl(_rows(teacher, idx), student, self.alpha)
                optimizer.zero_grad(set_to_none=True)
                batch_loss.backward()
                _freeze(reset)
                optimizer.step()
            epochs += 1
            loss, kl = full_loss()
            if loss <= self.distill_tau:
                break
        optimizer.zero_grad(set_to_none=True)
        self.total_distill_epochs += epochs
        own_epochs = max(self.model._n_updates, 1)
        self.record("distill/epochs", epochs)
        self.record("distill/total_epochs", self.total_distill_epochs)
        self.record("distill/epoch_ratio", self.total_distill_epochs / own_epochs)
        self.record("distill/loss", loss)
        self.record("distill/kl_before", kl_before)
        self.record("distill/kl_final", kl)
        self.record("distill/cap_hit", float(loss > self.distill_tau))

    # -- resuming ----------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(cycle_index=self.cycle_index, total_distill_epochs=self.total_distill_epochs, due=self._due)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.cycle_index = int(state.get("cycle_index", 0)) % self.events_per_cycle
        self.total_distill_epochs = int(state.get("total_distill_epochs", 0))
        self._due = bool(state.get("due", False))


def _freeze(reset: dict[NeuronGroup, th.Tensor]) -> None:
    """Zero the gradients of the reset neurons' incoming weights: a fresh Adam leaves them where they are."""
    with th.no_grad():
        for group, idx in reset.items():
            params: Sequence[th.nn.Parameter] = group.incoming_parameters()
            for p in params:
                if p.grad is not None:
                    p.grad[idx] = 0
