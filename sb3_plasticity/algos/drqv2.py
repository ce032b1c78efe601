"""DrQ-v2 (Yarats, Fergus, Lazaric, Pinto 2022, "Mastering Visual Continuous Control: Improved Data-Augmented
Reinforcement Learning", ICLR 2022) as an SB3 off-policy algorithm.

DrQ-v2 is DDPG from pixels: a convolutional encoder shared by actor and critic and trained by the critic loss
only, clipped double Q-learning with n-step returns, a deterministic actor explored with Gaussian noise whose
std follows a linear schedule, and random-shift augmentation of every sampled batch. ::

    from sb3_plasticity import DrQV2

    model = DrQV2("CnnPolicy", "sb3_plasticity/DMCPixels-walker-walk-v0", tensorboard_log="runs")
    model.learn(500_000)

One update (every ``train_freq=2`` env steps), with ``std = std_schedule(num_timesteps)`` and ``clip = std_clip``:

1. sample a batch (SB3's ``NStepReplayBuffer``: n-step returns ``R = sum_k gamma^k r_k`` up to the first episode
   end, bootstrap discount ``gamma^n`` or less), shift ``obs`` and ``next_obs`` by random integer offsets up to
   ``augmentation_pad`` pixels (:func:`~sb3_plasticity.random_shift`, each image its own shift);
2. critic: ``a' = clamp(pi(z') + clip(N(0, std), -clip, clip))`` with ``z' = encoder(next_obs)`` (online encoder,
   no gradient), ``y = R + (1 - done) * discount * min_i Q'_i(z', a')``, loss ``sum_i MSE(Q_i(encoder(obs), a), y)``;
   one Adam step on the critic and the encoder;
3. actor: ``a = clamp(pi(sg(z)) + clip(N(0, std), -clip, clip))`` (the clamp passes gradients straight through,
   as DrQ-v2's ``TruncatedNormal``), loss ``-min_i Q_i(sg(z), a)``; one Adam step on the actor;
4. ``critic_target <- tau * critic + (1 - tau) * critic_target`` (trunk and Q-networks; there is no target
   encoder).

Acting: uniform random actions for the first ``learning_starts`` steps, then ``clip(pi(obs) + N(0, std), -1, 1)``;
``predict(obs, deterministic=True)`` is ``pi(obs)``. Defaults are DrQ-v2's (App. B Table 1, official
``cfgs/config.yaml``; the NE paper's Table 3 lists the same), each cited below. ``docs/networks.md`` ("DrQ-v2")
lists where this implementation departs from the paper and the official code.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from sb3_plasticity.algos.drqv2_policies import (
    DrQV2Actor,
    DrQV2Critic,
    DrQV2Encoder,
    DrQV2Policy,
    LayerNormDrQV2Policy,
    MaskedDrQV2Policy,
)
from sb3_plasticity.augmentation import RandomShiftMixin, random_shift
from sb3_plasticity.buffers import ExperienceReviewBuffer
from sb3_plasticity.checks import check_int, check_nonnegative, check_positive_int

__all__ = ["DrQV2", "NStepExperienceReviewBuffer", "StdSchedule", "noisy_action"]

SelfDrQV2 = TypeVar("SelfDrQV2", bound="DrQV2")

# DrQ-v2 TruncatedNormal: samples are clamped to [-1 + eps, 1 - eps]
_ACTION_EPS = 1e-6


class StdSchedule:
    """The std of DrQ-v2's exploration noise as a function of the env step (DrQ-v2 Sec. 3.2, ``utils.schedule``).

    ``spec`` is a number (constant std), DrQ-v2's ``"linear(init,final,duration)"`` (``init`` at step 0, linearly to
    ``final`` at ``duration``, then constant), its ``"step_linear(init,final1,duration1,final2,duration2)"`` (two
    linear pieces), or a callable ``step -> std``. Steps are env steps (SB3's ``num_timesteps``), which is DrQ-v2's
    ``global_step`` (agent steps: an action repeat of 2 makes 2 frames per step).

    :param spec: the schedule.
    :raises ValueError: for any other string, a negative std or a non-positive duration.
    """

    _PATTERN = re.compile(r"\s*(linear|step_linear)\s*\((.*)\)\s*")

    def __init__(self, spec: float | str | Callable[[int], float]) -> None:
        self.spec = spec
        self._segments: list[tuple[float, float, float, float]] = []  # (start step, std there, std at end, duration)
        self._fn: Callable[[int], float] | None = None
        if callable(spec):
            self._fn = spec
            return
        if isinstance(spec, numbers.Real) and not isinstance(spec, bool):
            self._segments = [(0.0, float(spec), float(spec), 1.0)]
            self._check_values([float(spec)])
            return
        if not isinstance(spec, str):
            raise ValueError(f"std_schedule must be a number, a 'linear(...)' string or a callable, got {spec!r}")
        match = self._PATTERN.fullmatch(spec)
        try:
            args = [float(a) for a in match.group(2).split(",")] if match else []
        except ValueError:
            args = []
        kind = match.group(1) if match else None
        if kind == "linear" and len(args) == 3:
            init, final, duration = args
            self._segments = [(0.0, init, final, duration)]
            durations = [duration]
        elif kind == "step_linear" and len(args) == 5:
            init, final1, duration1, final2, duration2 = args
            self._segments = [(0.0, init, final1, duration1), (duration1, final1, final2, duration2)]
            durations = [duration1, duration2]
        else:
            raise ValueError(
                f"std_schedule={spec!r}: expected a number, 'linear(init,final,duration)' or "
                "'step_linear(init,final1,duration1,final2,duration2)' (DrQ-v2's schedule strings)"
            )
        if any(d <= 0 for d in durations):
            raise ValueError(f"std_schedule={spec!r}: durations must be positive")
        self._check_values([v for seg in self._segments for v in seg[1:3]])

    def _check_values(self, values: list[float]) -> None:
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError(f"std_schedule={self.spec!r}: stds must be finite and >= 0")

    def __call__(self, step: int) -> float:
        if self._fn is not None:
            return float(self._fn(step))
        segment = self._segments[0]
        for seg in self._segments:
            if step >= seg[0]:
                segment = seg
        start, begin, end, duration = segment
        mix = min(max((step - start) / duration, 0.0), 1.0)
        return (1.0 - mix) * begin + mix * end

    def __repr__(self) -> str:
        return f"StdSchedule({self.spec!r})"


def noisy_action(mean: th.Tensor, std: float, clip: float | None) -> th.Tensor:
    """``mean + eps``, ``eps ~ N(0, std)`` clipped to ``[-clip, clip]`` (no clipping when ``clip`` is None), clamped to
    ``[-1 + 1e-6, 1 - 1e-6]`` with a straight-through gradient (DrQ-v2's ``TruncatedNormal.sample``): the gradient
    w.r.t. ``mean`` is 1 even where the clamp is active."""
    noise = th.randn_like(mean) * std
    if clip is not None:
        noise = noise.clamp(-clip, clip)
    action = mean + noise
    clamped = action.clamp(-1.0 + _ACTION_EPS, 1.0 - _ACTION_EPS)
    return action - action.detach() + clamped.detach()


class DrQV2(OffPolicyAlgorithm):
    """DrQ-v2 (Yarats et al. 2022): DDPG from pixels with a critic-trained shared encoder, n-step clipped double
    Q-learning, scheduled exploration noise and random-shift augmentation. See the module docstring for the update.

    Defaults follow DrQ-v2 App. B Table 1 and the official ``cfgs/config.yaml`` (``medium`` tasks); the NE paper's
    Table 3 (its DrQ backbone) gives the same values.

    :param policy: ``"CnnPolicy"`` (= :class:`~sb3_plasticity.DrQV2Policy`), :class:`~sb3_plasticity.DrQV2Policy` or
        :class:`~sb3_plasticity.MaskedDrQV2Policy`.
    :param env: an env with uint8 image observations (frames stacked on the channel axis, e.g.
        ``sb3_plasticity/DMCPixels-<domain>-<task>-v0``) and Box actions.
    :param learning_rate: Adam rate of actor, critic and encoder (default 1e-4, Table 1 "learning rate"; 8e-5 for
        humanoid), or an SB3 schedule.
    :param buffer_size: replay capacity in transitions (default 1e6, Table 1 "replay buffer capacity"; official
        quadruped_run: 1e5). SB3 stores ``obs`` and ``next_obs``: 1e6 84x84x9 transitions take 127 GB.
    :param learning_starts: env steps of uniform random actions before the first update (default 2000: Table 1
        "seed frames 4000" and "exploration steps 2000" with action repeat 2, the official ``num_seed_frames //
        action_repeat`` and ``num_expl_steps``).
    :param batch_size: minibatch size (default 256, Table 1; official walker_walk: 512).
    :param tau: soft update rate of the target critic (default 0.01, Table 1 "critic Q-function soft-update rate").
    :param gamma: discount (default 0.99, Table 1).
    :param train_freq: env steps between updates (default 2, Table 1 "agent update frequency").
    :param gradient_steps: updates per ``train_freq`` (default 1).
    :param n_steps: n of the n-step returns (default 3, Table 1 "n-step returns"; official walker_walk: 1). Used
        through SB3's ``NStepReplayBuffer`` (also when ``replay_buffer_class`` is a ``NStepReplayBuffer`` subclass
        such as :class:`NStepExperienceReviewBuffer`, whose ``n_steps``/``gamma`` are filled in).
    :param std_schedule: std of the exploration noise over env steps (default ``"linear(1.0,0.1,500000)"``, Sec. 3.2
        and the official ``medium`` tasks; ``"linear(1.0,0.1,100000)"`` for ``easy``, ``"linear(1.0,0.1,2000000)"``
        for ``hard``). See :class:`StdSchedule`.
    :param std_clip: noise clip of target policy smoothing and of the actor loss's sampled action (default 0.3,
        official ``stddev_clip``).
    :param augmentation_pad: largest random shift in pixels (default 4, Sec. 3.1 "pad each side by 4"); 0 turns
        augmentation off. Skipped (the buffer already shifts) with a :class:`~sb3_plasticity.RandomShiftMixin` buffer.
    :param action_noise: extra SB3 action noise on top of DrQ-v2's own (default None).
    :param replay_buffer_class: default None: SB3's ``NStepReplayBuffer`` (``ReplayBuffer`` when ``n_steps=1``).
    :param replay_buffer_kwargs: its extra keyword arguments.
    :param optimize_memory_usage: SB3's memory-saving buffer (not with n-step returns).
    :param policy_kwargs: the policy's keyword arguments (``net_arch``, ``feature_dim``, ...).
    :param stats_window_size: episodes averaged in the rollout logs.
    :param tensorboard_log: TensorBoard folder (None: no TensorBoard).
    :param verbose: 0, 1 or 2.
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    :param seed: seed of all random generators.
    :param _init_setup_model: build the networks now (SB3's ``load`` passes False).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "CnnPolicy": DrQV2Policy,
        "DrQV2Policy": DrQV2Policy,
        "MaskedDrQV2Policy": MaskedDrQV2Policy,
        "LayerNormDrQV2Policy": LayerNormDrQV2Policy,
    }
    policy: DrQV2Policy
    actor: DrQV2Actor
    critic: DrQV2Critic
    critic_target: DrQV2Critic
    encoder: DrQV2Encoder

    def __init__(
        self,
        policy: str | type[DrQV2Policy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 2000,
        batch_size: int = 256,
        tau: float = 0.01,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 2,
        gradient_steps: int = 1,
        n_steps: int = 3,
        std_schedule: float | str | Callable[[int], float] = "linear(1.0,0.1,500000)",
        std_clip: float = 0.3,
        augmentation_pad: int = 4,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        policy_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        device: th.device | str = "auto",
        seed: int | None = None,
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Box,),
            support_multi_env=True,
        )
        check_positive_int("n_steps", n_steps)
        check_int("augmentation_pad", augmentation_pad, 0)
        check_nonnegative("std_clip", std_clip)
        self.std_schedule = std_schedule
        self.std_clip = float(std_clip)
        self.augmentation_pad = augmentation_pad
        self._std_fn = StdSchedule(std_schedule)  # checks the spec now
        self._augment = augmentation_pad > 0
        if _init_setup_model:
            self._setup_model()

    # -- set-up ----------------------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        n_steps = self.n_steps
        buffer_class = self.replay_buffer_class
        if buffer_class is not None and issubclass(buffer_class, NStepReplayBuffer):
            # a custom n-step buffer gets the algorithm's n and gamma unless given, and SB3's warning that
            # n_steps is ignored with a custom buffer class does not apply
            self.replay_buffer_kwargs = {"n_steps": n_steps, "gamma": self.gamma, **self.replay_buffer_kwargs}
            self.n_steps = 1
        try:
            super()._setup_model()
        finally:
            self.n_steps = n_steps
        self._std_fn = StdSchedule(self.std_schedule)
        self._create_aliases()
        buffer = self.replay_buffer
        self._augment = self.augmentation_pad > 0
        if self._augment and isinstance(buffer, RandomShiftMixin):
            self._augment = False  # the buffer shifts every batch already: once is DrQ-v2's augmentation
            if buffer.pad != self.augmentation_pad:
                warnings.warn(
                    f"{type(buffer).__name__} shifts sampled images by up to pad={buffer.pad} pixels itself; "
                    f"DrQV2's augmentation_pad={self.augmentation_pad} is not applied on top of it",
                    UserWarning,
                )
        self.policy.exploration_std = self.exploration_std

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target
        self.encoder = self.policy.features_extractor

    @property
    def exploration_std(self) -> float:
        """The std of the exploration and smoothing noise now: ``std_schedule(num_timesteps)``."""
        return self._std_fn(self.num_timesteps)

    # -- acting ----------------------------------------------------------------------------------------------
    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        self.policy.exploration_std = self.exploration_std  # the policy's noise follows the schedule
        return super()._sample_action(learning_starts, action_noise, n_envs)

    # -- the update ------------------------------------------------------------------------------------------
    def augment(self, replay_data: ReplayBufferSamples) -> ReplayBufferSamples:
        """``replay_data`` with ``observations`` and ``next_observations`` randomly shifted (DrQ-v2 Sec. 3.1), unless
        augmentation is off or the buffer shifted them already."""
        if not self._augment:
            return replay_data
        return replay_data._replace(
            observations=random_shift(replay_data.observations, self.augmentation_pad),
            next_observations=random_shift(replay_data.next_observations, self.augmentation_pad),
        )

    def target_q(self, replay_data: ReplayBufferSamples, std: float, next_features: th.Tensor | None = None) -> th.Tensor:
        """The TD target ``y = R + (1 - done) * discount * min_i Q'_i(z', a')``, ``(batch, 1)``, without gradient.

        ``R``, ``done`` and ``discount`` are the buffer's (n-step return, episode end without timeout,
        ``gamma^k`` for the k steps summed; ``gamma`` for a 1-step buffer), ``z' = encoder(next_obs)`` and
        ``a' = clamp(pi(z') + clip(N(0, std), -std_clip, std_clip))`` (target policy smoothing with the current std).

        :param next_features: the encoder output of ``replay_data.next_observations`` if already computed.
        """
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        with th.no_grad():
            if next_features is None:
                next_features = self.encoder(replay_data.next_observations)
            next_actions = noisy_action(self.actor.action_from_features(next_features), std, self.std_clip)
            next_q = th.cat(self.critic_target.q_values(next_features, next_actions), dim=1)
            next_q = th.min(next_q, dim=1, keepdim=True).values
            return replay_data.rewards + (1.0 - replay_data.dones) * discounts * next_q

    def critic_loss(self, replay_data: ReplayBufferSamples, std: float) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """``sum_i MSE(Q_i(encoder(obs), a), y)`` (gradients reach the critic and the encoder).

        :return: the loss, the encoder features of ``observations`` (with their graph) and the target ``y``.
        """
        features = self.encoder(replay_data.observations)
        target = self.target_q(replay_data, std)
        current = self.critic.q_values(features, replay_data.actions)
        loss = sum(F.mse_loss(q, target) for q in current)
        return loss, features, target  # type: ignore[return-value]

    def actor_loss(self, features: th.Tensor, std: float) -> th.Tensor:
        """``-mean(min_i Q_i(sg(z), a))`` with ``a = clamp(pi(sg(z)) + clip(N(0, std), -std_clip, std_clip))``: the
        features are detached, so the encoder gets no gradient from it."""
        features = features.detach()
        actions = noisy_action(self.actor.action_from_features(features), std, self.std_clip)
        q = th.cat(self.critic.q_values(features, actions), dim=1)
        return -th.min(q, dim=1, keepdim=True).values.mean()

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])
        std = self.exploration_std
        critic_losses, actor_losses, q_values = [], [], []
        for _ in range(gradient_steps):
            self._n_updates += 1
            replay_data = self.augment(self.replay_buffer.sample(batch_size, env=self._vec_normalize_env))  # type: ignore[union-attr]

            loss, features, target = self.critic_loss(replay_data, std)
            self.critic.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.critic.optimizer.step()  # critic and encoder
            critic_losses.append(loss.item())
            q_values.append(target.mean().item())

            a_loss = self.actor_loss(features, std)
            self.actor.optimizer.zero_grad(set_to_none=True)
            a_loss.backward()
            self.actor.optimizer.step()
            actor_losses.append(a_loss.item())

            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/critic_loss", float(np.mean(critic_losses)))
        self.logger.record("train/actor_loss", float(np.mean(actor_losses)))
        self.logger.record("train/target_q", float(np.mean(q_values)))
        self.logger.record("train/exploration_std", std)

    # -- SB3 plumbing ----------------------------------------------------------------------------------------
    def learn(
        self: SelfDrQV2,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "DrQV2",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDrQV2:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "actor", "critic", "critic_target", "encoder", "_std_fn"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor.optimizer", "critic.optimizer"], []


class NStepExperienceReviewBuffer(ExperienceReviewBuffer, NStepReplayBuffer):
    """NE's :class:`~sb3_plasticity.ExperienceReviewBuffer` with SB3's n-step returns: uniform and review batches
    (the oldest quarter) both carry n-step returns and discounts. For NE-DrQ on :class:`DrQV2` (NE Table 3: 3-step
    returns), which fills in ``n_steps`` and ``gamma`` from the algorithm; DrQ-v2 shifts the images itself.

    :param n_steps: n of the returns (default 3).
    :param gamma: discount, the algorithm's (default 0.99).
    :param review_window: see :class:`~sb3_plasticity.ExperienceReviewBuffer`.
    :param review_floor: see :class:`~sb3_plasticity.ExperienceReviewBuffer`.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: Any = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        n_steps: int = 3,
        gamma: float = 0.99,
        review_window: int = 450,
        review_floor: float = 0.25,
    ) -> None:
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device,
            n_envs,
            optimize_memory_usage,
            handle_timeout_termination,
            review_window=review_window,
            review_floor=review_floor,
        )
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        self.n_steps = n_steps
        self.gamma = float(gamma)
