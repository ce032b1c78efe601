"""SBP / P3O: cycle reset with inner distillation ("Stay Hungry, Keep Learning", Zhou et al., ICML 2025)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from sb3_plasticity.adapters import adapter_for
from sb3_plasticity.capture import Capture, sample_batch
from sb3_plasticity.checks import check_choice, check_fraction, check_positive_int, check_range
from sb3_plasticity.methods.intervention import InterventionCallback
from sb3_plasticity.methods.neuron_reset import ResetTracker
from sb3_plasticity.metrics import activity, contribution_utility, lowest, normalized_scores, outgoing_magnitude
from sb3_plasticity.neurons import NeuronGroup
from sb3_plasticity.surgery import fresh_steps_state, reset_neurons, restore_fresh_steps

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
    """The action distribution of a stochastic policy (PPO/A2C, or the actor of SAC, TQC, CrossQ), differentiable
    w.r.t. its parameters, from the policy's adapter (:meth:`~sb3_plasticity.adapters.PolicyAdapter.distribution`).

    SAC-like actors: the Gaussian *before* tanh squashing. tanh is a bijection, so the KL between two squashed
    Gaussians equals the KL between the Gaussians, which has a closed form.
    """
    policy = algorithm.policy
    dist = adapter_for(policy).distribution(policy, observations)
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

    Variants of the paper's ablations (App. A.4), each composable with distillation on or off:

    - ``selection`` (Fig. 22, "Baseline with Inner Distillation"): which neurons step 2 resets. ``"cycle"`` (the
      cursor above); ``"random"`` (drawn uniformly without replacement, torch's global RNG); ``"redo"`` (the lowest
      ReDo scores ``E|h_i| / mean_k E|h_k|``); ``"cbp"`` (the lowest CBP contribution utilities ``E|h_i| mean_k
      |w_ki|``). ReDo and CBP score on the distillation data, from the forward that gives the teacher (the
      scores of :mod:`sb3_plasticity.metrics`; CBP's instantaneous utility, without its running average and
      maturity). Every selection resets as many neurons per layer as the cycle would at that event (the cursor
      advances for all of them), so only *which* neurons differs.
    - ``reset_range`` (Fig. 19-20, "Ablation of reset ratio"): resets stay within the first ``floor(reset_range
      l)`` neurons of each layer for the whole training. The cursor still advances by ``reset_rate`` (each event
      resets ``reset_rate l`` neurons, as in the full cycle) and wraps at ``reset_range``, so a cycle takes
      ``ceil(reset_range / reset_rate)`` events; the other selections pick among those neurons only.
    - recovery training (``recovery_threshold``, with ``distill=False``; Fig. 21, Table 5, "Inner distillation
      versus extra training"): after the reset, run extra epochs of the algorithm's own training (PPO/A2C's
      ``train()``, one epoch at a time, on the rollout the update just used), and after each epoch evaluate the
      policy on ``recovery_episodes`` episodes of a copy of the env (deterministic actions); stop when the mean
      return has recovered, or after ``max_recovery_epochs``. ``recovery_mode="drop"`` (default): recovered when
      the return is at least the return measured the same way right before the reset minus
      ``recovery_threshold``; ``"absolute"``: when it is at least ``recovery_threshold``. At least one epoch runs.

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

    Logged under ``plasticity/cycle_reset_distill/`` (the method's one name, as its class and file; earlier tags:
    ``plasticity/cycle_reset/``, ``plasticity/distill/``, ``plasticity/recovery/``): besides
    :class:`InterventionCallback`'s counts, dormant ratios and ``policy_kl`` drift, ``cursor`` (p before the event),
    ``<network>/reset_proportion`` (share of the actor's hidden neurons reset at least once so far, P3O Table 4),
    ``distill/epochs``, ``distill/total_epochs``, ``distill/epoch_ratio`` (total distillation epochs / the
    algorithm's own epochs or gradient steps so far, P3O Table 2), ``distill/loss`` (final alpha-DKL),
    ``distill/kl_before`` and ``distill/kl_final`` (KL(teacher || student) right after the reset and after
    distillation), ``distill/cap_hit`` (1 when the epoch cap stopped it above ``distill_tau``); with recovery
    training ``recovery/epochs``, ``recovery/total_epochs``, ``recovery/gradient_steps`` (extra optimizer steps of
    this event), ``recovery/return_before`` (``"drop"`` mode), ``recovery/target``, ``recovery/return_after`` (the
    last evaluation), ``recovery/eval_steps`` (env steps the evaluations took; not counted in ``num_timesteps``)
    and ``recovery/cap_hit``. A model saved with the old state key (``plasticity_state["cycle_reset[<actor>]"]``) resumes.

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
    :param selection: ``"cycle"`` (default), ``"random"``, ``"redo"`` or ``"cbp"`` (see above).
    :param reset_range: in (0, 1]: resets stay within the first ``reset_range`` of each layer (default 1.0).
    :param recovery_threshold: recovery training instead of distillation (PPO/A2C, ``distill=False``): the return
        drop allowed (``"drop"``) or the return to reach (``"absolute"``); default None: off. App. A.4.5: 100.
    :param recovery_mode: ``"drop"`` (default) or ``"absolute"``.
    :param recovery_episodes: evaluation episodes per measurement (default 5).
    :param max_recovery_epochs: cap on recovery epochs per event (default 100, as ``max_distill_epochs``).
    :param verbose: 0 or 1.
    """

    method = "cycle_reset_distill"
    legacy_methods = ("cycle_reset",)  # the method's name (tags, state key) before issue 12
    SELECTIONS = ("cycle", "random", "redo", "cbp")

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
        selection: str = "cycle",
        reset_range: float = 1.0,
        recovery_threshold: float | None = None,
        recovery_mode: str = "drop",
        recovery_episodes: int = 5,
        max_recovery_epochs: int = 100,
    ) -> None:
        super().__init__(reset_freq, None, dormant_tau, probe_batch_size, verbose)
        self.reset_rate = check_fraction("reset_rate", reset_rate, allow_none=False)
        self.alpha = check_range("alpha", alpha, 0.0, 1.0)
        self.distill_tau = check_range("distill_tau", distill_tau, 0.0, low_open=True)
        if distill_lr is not None:
            check_range("distill_lr", distill_lr, 0.0, low_open=True)
        check_choice("outgoing", outgoing, ("keep", "zero"))
        check_choice("selection", selection, self.SELECTIONS)
        self.reset_range = check_fraction("reset_range", reset_range, allow_none=False)
        check_choice("recovery_mode", recovery_mode, ("drop", "absolute"))
        if recovery_threshold is not None:
            if recovery_mode == "drop":
                check_range("recovery_threshold", recovery_threshold, 0.0)
            else:
                check_range("recovery_threshold", recovery_threshold)
            if distill:
                raise ValueError(
                    f"recovery_threshold={recovery_threshold} trains after the reset instead of distilling: set distill=False"
                )
        self.reset_freq = self.freq
        self.distill = bool(distill)
        self.max_distill_epochs = check_positive_int("max_distill_epochs", max_distill_epochs)
        self.distill_batch_size = check_positive_int("distill_batch_size", distill_batch_size)
        self.distill_samples = check_positive_int("distill_samples", distill_samples)
        self.distill_lr = distill_lr
        self.outgoing = outgoing
        self.selection = selection
        self.recovery_threshold = None if recovery_threshold is None else float(recovery_threshold)
        self.recovery_mode = recovery_mode
        self.recovery_episodes = check_positive_int("recovery_episodes", recovery_episodes)
        self.max_recovery_epochs = check_positive_int("max_recovery_epochs", max_recovery_epochs)
        self.events_per_cycle = math.ceil(self.reset_range / self.reset_rate - 1e-9)
        self.cycle_index = 0  # j: the cursor is p = j * reset_rate
        self.total_distill_epochs = 0
        self.total_recovery_epochs = 0
        self.tracker = ResetTracker()
        self._due = False
        self._data: th.Tensor | None = None
        self._rollout: RolloutBuffer | None = None  # recovery training: the rollout of the last update
        self._eval_env: VecEnv | None = None
        self._eval_steps = 0

    # -- wiring ------------------------------------------------------------------------------------------
    def _init_callback(self) -> None:
        policy = self.model.policy
        adapter = adapter_for(policy)
        if not adapter.is_stochastic(policy):
            raise ValueError(
                f"CycleResetDistillCallback distils a stochastic actor (PPO, A2C, SAC, TQC, CrossQ); "
                f"{type(self.model).__name__} has a deterministic one"
            )
        if self.recovery_threshold is not None and getattr(self.model, "rollout_buffer", None) is None:
            raise ValueError(
                f"recovery_threshold={self.recovery_threshold}: recovery training reruns the update on the last rollout "
                f"(PPO, A2C); {type(self.model).__name__} has none"
            )
        self.networks = [adapter.actor_network(policy)]
        super()._init_callback()

    @property
    def on_policy(self) -> bool:
        return getattr(self.model, "rollout_buffer", None) is not None

    def _on_step(self) -> bool:
        if self.event_schedule.poll(self.num_timesteps):  # due: for PPO/A2C it runs after the rollout's update
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
            self.take_rollout()

    def take_rollout(self) -> None:
        """PPO/A2C: keep the observations of the model's rollout buffer as the data of the next event (distillation
        set, teacher inputs) and, with recovery training, a copy of the rollout itself (the next rollout empties the
        algorithm's own). The callback calls it at the end of the rollout in which an event falls due; call it before
        :meth:`run_event` when driving the callback by hand after ``learn()``."""
        buffer = getattr(self.model, "rollout_buffer", None)
        if buffer is None:
            raise ValueError(f"take_rollout: {type(self.model).__name__} has no rollout buffer (PPO, A2C)")
        obs = buffer.observations.reshape(-1, *buffer.obs_shape)
        self._data = buffer.to_torch(obs)
        if self.recovery_threshold is not None:
            self._rollout = copy.deepcopy(buffer)

    def _on_rollout_start(self) -> None:
        if self._due and self.on_policy and self._data is not None:
            self._due = False
            self.run_event()
            self._data = None
            self._rollout = None

    def _finish(self) -> None:
        self.save_state()  # an event due but not run yet (PPO/A2C: at the next rollout start) and its data
        if self._eval_env is not None:
            self._eval_env.close()
            self._eval_env = None

    # -- the method --------------------------------------------------------------------------------------
    def range_size(self, n_neurons: int) -> int:
        """Neurons a layer of ``n_neurons`` exposes to resets: ``floor(reset_range * n)``, at least 1."""
        return max(1, min(n_neurons, math.floor(self.reset_range * n_neurons + 1e-9)))

    def cycle_indices(self, n_neurons: int) -> th.Tensor:
        """Indices ``[p l, (p + rate) l)`` of the current event, within the first :meth:`range_size` neurons; the
        last event of a cycle ends there."""
        j = self.cycle_index
        n_range = self.range_size(n_neurons)
        start = math.floor(j * self.reset_rate * n_neurons + 1e-9)
        end = n_range if j == self.events_per_cycle - 1 else math.floor((j + 1) * self.reset_rate * n_neurons + 1e-9)
        return th.arange(min(start, n_range), min(end, n_range))

    def select_neurons(self, group: NeuronGroup, activation: th.Tensor | None) -> th.Tensor:
        """The neurons of ``group`` to reset at this event (sorted): the cycle's slice, or as many chosen by
        ``selection`` among the first :meth:`range_size` (alive) neurons. ``activation``: the group's outputs on the
        distillation data (``"redo"``, ``"cbp"``)."""
        cycle = self.cycle_indices(group.n_neurons)
        if self.selection == "cycle":
            return cycle
        device = group.producer.weight.device
        candidates = th.arange(self.range_size(group.n_neurons), device=device)
        alive = group.alive()
        if alive is not None:
            candidates = candidates[alive.to(device)[candidates]]
        k = min(int(cycle.numel()), int(candidates.numel()))
        if self.selection == "random":
            return candidates[th.randperm(candidates.numel())[:k].to(device)].sort().values
        if activation is None:
            raise RuntimeError(f"selection={self.selection!r} needs the activations of {group.name}")
        if self.selection == "redo":
            scores = normalized_scores(activity(activation), alive)
        else:
            scores = contribution_utility(activation, outgoing_magnitude(group))
        return lowest(scores.to(device), k, candidates)

    def actor_parameters(self) -> list[th.nn.Parameter]:
        params = list(self.neurons.network_parameters(self.networks[0]))
        log_std = getattr(self.model.policy, "log_std", None)
        if isinstance(log_std, th.nn.Parameter) and all(p is not log_std for p in params):
            params.append(log_std)
        return params

    def intervene(self) -> dict[tuple[str, str], int]:
        data = self._data if self.on_policy else sample_batch(self.model, self.distill_samples)[0]
        groups = self.neurons.select(self.networks, targets=False)
        capture = Capture(self.neurons, groups, gradients=False) if self.selection in ("redo", "cbp") else None
        with th.no_grad():
            if capture is not None:
                capture.arm()
                with capture.forced():
                    teacher = _detach(policy_distribution(self.model, data))
                capture.disarm()
            else:
                teacher = _detach(policy_distribution(self.model, data))
        records = capture.records if capture is not None else {}
        reset: dict[NeuronGroup, th.Tensor] = {
            g: self.select_neurons(g, records[g].activation if g in records else None) for g in groups
        }
        return_before = None
        if self.recovery_threshold is not None and self.recovery_mode == "drop":
            return_before = self._evaluate_return()
        self.record(f"{self.method}/cursor", self.cycle_index * self.reset_rate)
        counts = {(g.network, g.name): reset_neurons(g, idx, outgoing=self.outgoing) for g, idx in reset.items()}
        for g, idx in reset.items():
            self.tracker.add(g, idx)
        for network, share in self.tracker.proportions(groups).items():
            self.record(f"{self.method}/{network}/reset_proportion", share)
        self.cycle_index = (self.cycle_index + 1) % self.events_per_cycle
        if self.distill:
            self._distill(data, teacher, reset)
        elif self.recovery_threshold is not None:
            self._recover(return_before)
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
        self.record(f"{self.method}/distill/epochs", epochs)
        self.record(f"{self.method}/distill/total_epochs", self.total_distill_epochs)
        self.record(f"{self.method}/distill/epoch_ratio", self.total_distill_epochs / own_epochs)
        self.record(f"{self.method}/distill/loss", loss)
        self.record(f"{self.method}/distill/kl_before", kl_before)
        self.record(f"{self.method}/distill/kl_final", kl)
        self.record(f"{self.method}/distill/cap_hit", float(loss > self.distill_tau))

    # -- recovery training (App. A.4.5) -------------------------------------------------------------------
    def recovery_target(self, return_before: float | None) -> float:
        """The mean return that counts as recovered."""
        assert self.recovery_threshold is not None
        if self.recovery_mode == "absolute":
            return self.recovery_threshold
        assert return_before is not None
        return return_before - self.recovery_threshold

    def _recover(self, return_before: float | None) -> None:
        target = self.recovery_target(return_before)
        epochs, steps, ret = 0, 0, -math.inf
        while epochs < self.max_recovery_epochs:
            steps += self._train_one_epoch()
            epochs += 1
            ret = self._evaluate_return()
            if ret >= target:
                break
        self.total_recovery_epochs += epochs
        if return_before is not None:
            self.record(f"{self.method}/recovery/return_before", return_before)
        self.record(f"{self.method}/recovery/target", target)
        self.record(f"{self.method}/recovery/return_after", ret)
        self.record(f"{self.method}/recovery/epochs", epochs)
        self.record(f"{self.method}/recovery/total_epochs", self.total_recovery_epochs)
        self.record(f"{self.method}/recovery/gradient_steps", steps)
        self.record(f"{self.method}/recovery/eval_steps", self._eval_steps)
        self.record(f"{self.method}/recovery/cap_hit", float(ret < target))
        self._eval_steps = 0

    def _train_one_epoch(self) -> int:
        """One more epoch of the algorithm's own ``train()`` on the rollout of the last update; returns the optimizer
        steps it took."""
        model = self.model
        live, buffer = model.rollout_buffer, self._rollout
        if buffer is None:
            raise RuntimeError("recovery training needs the rollout of the last update")
        n_epochs = getattr(model, "n_epochs", None)
        before = model._n_updates
        model.rollout_buffer = buffer
        try:
            if n_epochs is not None:
                model.n_epochs = 1
            model.train()
        finally:
            model.rollout_buffer = live
            if n_epochs is not None:
                model.n_epochs = n_epochs
        if n_epochs is None:  # A2C: one step per train()
            return model._n_updates - before
        size = buffer.buffer_size * buffer.n_envs
        return math.ceil(size / model.batch_size)

    def _evaluate_return(self) -> float:
        """Mean return of ``recovery_episodes`` deterministic episodes on a copy of the training env."""
        env = self._recovery_env()
        vec_normalize = self.model.get_vec_normalize_env()
        if vec_normalize is not None:
            env.obs_rms = copy.deepcopy(vec_normalize.obs_rms)
        returns, lengths = evaluate_policy(
            self.model, env, n_eval_episodes=self.recovery_episodes, deterministic=True, return_episode_rewards=True
        )
        self._eval_steps += int(sum(lengths))
        return float(np.mean(returns))

    def _recovery_env(self) -> VecEnv:
        if self._eval_env is None:
            spec = self.training_env.get_attr("spec", [0])[0]
            if spec is None:
                raise RuntimeError("recovery training evaluates on a copy of the training env, which has no gym spec")
            # the registered env with its kwargs; the wrappers added around it (Monitor, ...) are not recreatable
            spec = dataclasses.replace(spec, additional_wrappers=())
            env: VecEnv = DummyVecEnv([lambda: Monitor(gym.make(spec))])
            if self.model.get_vec_normalize_env() is not None:
                env = VecNormalize(env, training=False, norm_reward=False)
            seed = getattr(self.model, "seed", None)
            if seed is not None:
                env.seed(int(seed) + 10_000)
            self._eval_env = env
        return self._eval_env

    # -- resuming ----------------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(
            cycle_index=self.cycle_index,
            total_distill_epochs=self.total_distill_epochs,
            total_recovery_epochs=self.total_recovery_epochs,
            due=self._due,
            ever_reset=self.tracker.get_state(),
            # reset entries whose fresh Adam step is still to come (their gradient was 0 so far)
            fresh_steps=fresh_steps_state(self.model.policy),
        )
        if self._due and self._data is not None:  # PPO/A2C: the pending event's rollout (and its copy for recovery)
            state["data"] = self._data.detach().cpu()
            state["rollout"] = self._rollout
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.cycle_index = int(state.get("cycle_index", 0)) % self.events_per_cycle
        self.total_distill_epochs = int(state.get("total_distill_epochs", 0))
        self.total_recovery_epochs = int(state.get("total_recovery_epochs", 0))
        self._due = bool(state.get("due", False))
        self.tracker.set_state(state.get("ever_reset"))
        restore_fresh_steps(self.model.policy, state.get("fresh_steps"))
        if self._due and state.get("data") is not None:
            self._data = state["data"].to(self.model.device)
            self._rollout = state.get("rollout")


def _freeze(reset: dict[NeuronGroup, th.Tensor]) -> None:
    """Zero the gradients of the reset neurons' incoming weights: a fresh Adam leaves them where they are."""
    with th.no_grad():
        for group, idx in reset.items():
            params: Sequence[th.nn.Parameter] = group.incoming_parameters()
            for p in params:
                if p.grad is not None:
                    p.grad[idx] = 0
