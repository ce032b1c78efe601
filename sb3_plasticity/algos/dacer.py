"""DACER (Wang, Wang, Jiang et al., NeurIPS 2024, "Diffusion Actor-Critic with Entropy Regulator") as an SB3
off-policy algorithm, following its official JAX code (``happy-yan/DACER-Diffusion-with-Online-RL``:
``relax/algorithm/dacer.py``, ``relax/network/dacer.py``, ``relax/utils/diffusion.py``, ``scripts/train_mujoco.py``).

The actor is the reverse process of a diffusion model: ``T`` (20) denoising steps turn Gaussian noise into an
action, and the actor is trained by backpropagating ``-Q`` through all of them. The entropy of such a policy has no
closed form; DACER estimates it by fitting a Gaussian mixture to sampled actions and learns a factor ``alpha`` that
scales Gaussian noise added to the action (the entropy regulator). The critics are DSAC-T's distributional twin
critics (mean and std of the return). ::

    from sb3_plasticity import DACER

    model = DACER("MlpPolicy", "Walker2d-v5", tensorboard_log="runs")
    model.learn(1_000_000)

One update, at update counter ``k`` (``_n_updates`` before it; every ``train_freq`` env steps after
``learning_starts``), on a batch ``(s, a, r, s', d)``:

1. target: ``a' = actor.sample(s')`` (with the regulator's noise), for each target critic ``mu'_i, sigma'_i`` and a
   sample ``q'_i = mu'_i + sigma'_i clip(N(0, 1), -3, 3)``; ``j = argmin_i mu'_i``;
   ``y = c r + (1 - d) gamma mu'_j`` and ``y_s = c r + (1 - d) gamma q'_j`` (``c = reward_scale``; no entropy term);
2. critics (DSAC-T loss, per critic ``i`` with its running mean std ``m_i``, ``m_i <- tau mean(sigma_i) + (1 - tau)
   m_i``, the first value taken as is): with ``sg`` the stop-gradient, ``eps = 0.1``,
   ``y_b = sg(mu + clip(y_s - mu, -3 m, 3 m))`` and ``s = sg(max(sigma, 0))``::

       L_i = -(m^2 + eps) * mean( mu * sg(y - mu) / (s^2 + eps) + sigma * ((sg(mu) - y_b)^2 - s^2) / (s^3 + eps) )

3. actor, when ``k % policy_delay == 0``: ``L_pi = -mean(min_i mu_i(s, actor.sample(s)))`` through the whole chain,
   with the critics as they were before this update's critic step (the official update computes every gradient
   from the same parameters);
4. entropy regulator, when ``k % alpha_update_interval == 0``: ``H`` = the mean over the batch's states of the GMM
   entropy of ``entropy_samples`` (200) sampled actions per state (:func:`gmm_entropy`, 3 components), and one Adam
   step on ``L_alpha = -log_alpha * (target_entropy - H)``;
5. steps: critics every update; actor and the soft target update (``tau``) when ``k % policy_delay == 0``.

Acting: uniform random actions for the first ``learning_starts`` steps, then ``actor.sample(s)``;
``predict(obs, deterministic=True)`` is the chain on a fixed noise sequence without the regulator's noise (see
:class:`~sb3_plasticity.algos.dacer_policies.DACERActor`). Defaults are the official code's, each cited below.
``docs/networks.md`` ("DACER") lists where this implementation departs from the paper and the official code.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, ReplayBufferSamples, Schedule
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from sb3_plasticity.algos.dacer_policies import DACERActor, DACERCritic, DACERPolicy

__all__ = ["DACER", "gmm_entropy"]

SelfDACER = TypeVar("SelfDACER", bound="DACER")

_LOG_2PI = math.log(2.0 * math.pi)
# official q_loss_fn / q_evaluate constants
_DSAC_EPS = 0.1
_TARGET_BOUND = 3.0
_Z_CLIP = 3.0


def _m_step(x: th.Tensor, resp: th.Tensor, reg_covar: float) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Weights ``(B, K)``, means ``(B, K, d)`` and full covariances ``(B, K, d, d)`` from responsibilities
    ``(B, N, K)`` (scikit-learn's ``_estimate_gaussian_parameters``)."""
    n = x.shape[1]
    nk = resp.sum(dim=1) + 10 * th.finfo(x.dtype).eps
    means = resp.transpose(1, 2) @ x / nk[..., None]
    diff = x[:, None] - means[:, :, None]  # (B, K, N, d)
    cov = th.einsum("bnk,bkni,bknj->bkij", resp, diff, diff) / nk[..., None, None]
    cov = cov + reg_covar * th.eye(x.shape[2], dtype=x.dtype, device=x.device)
    return nk / n, means, cov


def _e_step(x: th.Tensor, weights: th.Tensor, means: th.Tensor, cov: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Responsibilities ``(B, N, K)``, the mean log-likelihood per batch entry ``(B,)`` and ``log det`` of each
    covariance ``(B, K)``."""
    chol = th.linalg.cholesky(cov)
    diff = (x[:, None] - means[:, :, None]).transpose(2, 3)  # (B, K, d, N)
    solved = th.linalg.solve_triangular(chol, diff, upper=False)
    maha = solved.pow(2).sum(dim=2)  # (B, K, N)
    log_det = 2.0 * th.log(th.diagonal(chol, dim1=-2, dim2=-1)).sum(dim=-1)  # (B, K)
    log_prob = -0.5 * (x.shape[2] * _LOG_2PI + maha + log_det[..., None])
    weighted = log_prob + th.log(weights)[..., None]
    log_norm = th.logsumexp(weighted, dim=1)  # (B, N)
    resp = (weighted - log_norm[:, None]).exp().transpose(1, 2)
    return resp, log_norm.mean(dim=1), log_det


def gmm_entropy(
    samples: th.Tensor,
    n_components: int = 3,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    seed: int = 42,
) -> th.Tensor:
    """DACER's entropy estimate (official ``estimate_entropy``) for each of a batch of sample sets: fit a Gaussian
    mixture with full covariances to each set and return ``-sum_k w_k log w_k + sum_k w_k H(N(mu_k, Sigma_k))``,
    ``H(N) = d/2 (1 + log 2 pi) + 1/2 log det Sigma`` (an upper bound of the mixture's entropy; the paper's Eq. 13-14).

    The fit is scikit-learn's ``GaussianMixture(n_components, covariance_type="full")`` with its defaults (``tol``
    1e-3 on the mean log-likelihood, ``reg_covar`` 1e-6, ``max_iter`` 100, k-means initialisation; the official
    ``random_state=42`` is the seed of the k-means++ seeding), run batched in float64 in PyTorch instead of a
    scikit-learn loop over states.

    :param samples: ``(batch, n, d)`` (or ``(n, d)``).
    :return: entropies, ``(batch,)`` (or a scalar), float64 on the samples' device.
    """
    squeeze = samples.dim() == 2
    x = samples.detach().to(th.float64)
    if squeeze:
        x = x[None]
    batch, n, dim = x.shape
    k = max(1, min(int(n_components), n))
    rows = th.arange(batch, device=x.device)
    generator = th.Generator().manual_seed(seed)
    # k-means++ seeding, then Lloyd iterations (scikit-learn initialises the mixture with a k-means labelling)
    first = (th.rand(batch, generator=generator) * n).long().clamp_max(n - 1).to(x.device)
    centers = [x[rows, first]]
    dist2 = (x - centers[0][:, None]).pow(2).sum(dim=-1)
    for _ in range(1, k):
        total = dist2.sum(dim=1, keepdim=True)
        probs = th.where(total > 0, dist2 / total.clamp_min(1e-300), th.full_like(dist2, 1.0 / n))
        u = th.rand(batch, 1, generator=generator, dtype=x.dtype).to(x.device)
        idx = (probs.cumsum(dim=1) < u).sum(dim=1).clamp_max(n - 1)
        centers.append(x[rows, idx])
        dist2 = th.minimum(dist2, (x - centers[-1][:, None]).pow(2).sum(dim=-1))
    center = th.stack(centers, dim=1)  # (B, K, d)
    labels = None
    for _ in range(100):
        new_labels = th.cdist(x, center).argmin(dim=-1)
        if labels is not None and th.equal(new_labels, labels):
            break
        labels = new_labels
        onehot = F.one_hot(labels, k).to(x.dtype)
        counts = onehot.sum(dim=1)
        moved = onehot.transpose(1, 2) @ x / counts.clamp_min(1.0)[..., None]
        center = th.where(counts[..., None] > 0, moved, center)
    resp = F.one_hot(th.cdist(x, center).argmin(dim=-1), k).to(x.dtype)
    weights, means, cov = _m_step(x, resp, reg_covar)
    previous = None
    for _ in range(max_iter):
        resp, lower_bound, _ = _e_step(x, weights, means, cov)
        weights, means, cov = _m_step(x, resp, reg_covar)
        if previous is not None and bool(((lower_bound - previous).abs() < tol).all()):
            break
        previous = lower_bound
    log_det = 2.0 * th.log(th.diagonal(th.linalg.cholesky(cov), dim1=-2, dim2=-1)).sum(dim=-1)
    component = 0.5 * dim * (1.0 + _LOG_2PI) + 0.5 * log_det
    entropy = -th.special.xlogy(weights, weights).sum(dim=1) + (weights * component).sum(dim=1)
    return entropy[0] if squeeze else entropy


class DACER(OffPolicyAlgorithm):
    """DACER (Wang et al. 2024): a diffusion-model actor trained through its sampler against distributional twin
    critics, with an entropy regulator. See the module docstring for the update.

    Defaults are the official code's (``scripts/train_mujoco.py``, ``relax/algorithm/dacer.py``,
    ``relax/trainer/off_policy.py``); the network defaults are :class:`~sb3_plasticity.DACERPolicy`'s. The official
    script runs 20 vector envs with one update per vector step (``n_envs=20``, ``train_freq=1``), 3e7 env steps
    (1.5M updates); with SB3 that is ``make_vec_env(env_id, n_envs=20)`` (rl-zoo ``n_envs: 20``).

    :param policy: ``"MlpPolicy"`` (= :class:`~sb3_plasticity.DACERPolicy`) or a subclass.
    :param env: an env with Box observations and Box actions.
    :param learning_rate: Adam rate of the actor and of the critics (default 1e-4, official ``--lr``; the GraMa
        paper's Table 5 lists 3e-4), or an SB3 schedule.
    :param buffer_size: replay capacity (default 1e6, official ``TreeBuffer`` size).
    :param learning_starts: env steps of uniform random actions before the first update (default 30,000: official
        ``--start_step`` "other envs 3e4"; 2e5 for Humanoid and HalfCheetah).
    :param batch_size: minibatch size (default 256, official ``OffPolicyTrainer``).
    :param tau: soft update rate of the target critics and of the running mean std of the critic loss (default
        0.005, official).
    :param gamma: discount (default 0.99).
    :param train_freq: env steps between updates (default 1; with ``n_envs`` envs one step is ``n_envs``
        transitions, the official ``sample_per_iteration=1``).
    :param gradient_steps: updates per ``train_freq`` (default 1, official ``update_per_iteration``).
    :param policy_delay: updates between actor (and target) updates (default 2, official ``delay_update``).
    :param reward_scale: factor of the rewards in the targets (default 0.2, official ``reward_scale``; the GraMa
        paper's Table 5 lists 1.0).
    :param alpha_learning_rate: Adam rate of ``log_alpha`` (default 3e-2, official ``alpha_lr``).
    :param alpha_update_interval: updates between entropy estimates and ``log_alpha`` steps (default 10,000,
        official ``delay_alpha_update``).
    :param target_entropy: target of the entropy regulator (default ``"auto"``: ``-0.9 * action_dim``, official).
    :param entropy_samples: actions sampled per state for the GMM fit (default 200, official ``num_samples``).
    :param gmm_components: mixture components (default 3, official ``estimate_entropy``).
    :param action_noise: extra SB3 action noise (default None; DACER has its own).
    :param replay_buffer_class: default None: SB3's ``ReplayBuffer``.
    :param replay_buffer_kwargs: its keyword arguments.
    :param optimize_memory_usage: SB3's memory-saving buffer.
    :param policy_kwargs: the policy's keyword arguments (``net_arch``, ``activation_fn``, ``diffusion_steps``,
        ``noise_scale``, ``initial_alpha``, ...).
    :param stats_window_size: episodes averaged in the rollout logs.
    :param tensorboard_log: TensorBoard folder (None: no TensorBoard).
    :param verbose: 0, 1 or 2.
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    :param seed: seed of all random generators.
    :param _init_setup_model: build the networks now (SB3's ``load`` passes False).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": DACERPolicy, "DACERPolicy": DACERPolicy}
    policy: DACERPolicy
    actor: DACERActor
    critic: DACERCritic
    critic_target: DACERCritic

    def __init__(
        self,
        policy: str | type[DACERPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 30_000,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        policy_delay: int = 2,
        reward_scale: float = 0.2,
        alpha_learning_rate: float = 3e-2,
        alpha_update_interval: int = 10_000,
        target_entropy: str | float = "auto",
        entropy_samples: int = 200,
        gmm_components: int = 3,
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
        for name, value in (
            ("policy_delay", policy_delay),
            ("alpha_update_interval", alpha_update_interval),
            ("entropy_samples", entropy_samples),
            ("gmm_components", gmm_components),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(alpha_learning_rate, (int, float)) and alpha_learning_rate >= 0):
            raise ValueError(f"alpha_learning_rate must be a number >= 0, got {alpha_learning_rate!r}")
        if not isinstance(reward_scale, (int, float)) or isinstance(reward_scale, bool):
            raise ValueError(f"reward_scale must be a number, got {reward_scale!r}")
        numeric = isinstance(target_entropy, (int, float)) and not isinstance(target_entropy, bool)
        if not (target_entropy == "auto" or numeric):
            raise ValueError(f"target_entropy must be 'auto' or a number, got {target_entropy!r}")
        self.policy_delay = policy_delay
        self.reward_scale = float(reward_scale)
        self.alpha_learning_rate = float(alpha_learning_rate)
        self.alpha_update_interval = alpha_update_interval
        self.target_entropy = target_entropy
        self.entropy_samples = entropy_samples
        self.gmm_components = gmm_components
        # running mean std of each critic (official mean_q1_std / mean_q2_std, -1 = not set yet) and the last
        # entropy estimate: plain floats, saved with the model
        self.mean_q_std: list[float] = []
        self.entropy = 0.0
        if _init_setup_model:
            self._setup_model()

    # -- set-up ----------------------------------------------------------------------------------------------
    def _setup_model(self) -> None:
        super()._setup_model()
        self._create_aliases()
        action_dim = int(np.prod(self.action_space.shape))
        self._target_entropy = -0.9 * action_dim if self.target_entropy == "auto" else float(self.target_entropy)
        self.alpha_optimizer = th.optim.Adam([self.actor.log_alpha], lr=self.alpha_learning_rate)
        if len(self.mean_q_std) != self.critic.n_critics:
            self.mean_q_std = [-1.0] * self.critic.n_critics

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target

    # -- losses ----------------------------------------------------------------------------------------------
    def targets(self, replay_data: ReplayBufferSamples) -> tuple[th.Tensor, th.Tensor]:
        """``(y, y_s)``, each ``(batch,)``, without gradient: ``c r + (1 - d) gamma mu'_j`` and ``c r + (1 - d) gamma
        q'_j`` with ``j = argmin_i mu'_i(s', a')``, ``a' = actor.sample(s')`` and ``q'_i = mu'_i + sigma'_i
        clip(N(0, 1), -3, 3)`` (official ``q_evaluate``)."""
        with th.no_grad():
            next_obs = replay_data.next_observations
            next_actions = self.actor(next_obs, deterministic=False, record=False)
            means, stds = self.critic_target.mean_std(next_obs, next_actions)
            samples = means + stds * th.randn_like(means).clamp(-_Z_CLIP, _Z_CLIP)
            j = means.argmin(dim=0, keepdim=True)
            next_mean = means.gather(0, j)[0]
            next_sample = samples.gather(0, j)[0]
            rewards = self.reward_scale * replay_data.rewards.flatten()
            not_done = 1.0 - replay_data.dones.flatten()
            return rewards + not_done * self.gamma * next_mean, rewards + not_done * self.gamma * next_sample

    def critic_loss(self, replay_data: ReplayBufferSamples) -> tuple[th.Tensor, dict[str, float]]:
        """The sum over critics of DSAC-T's loss (official ``q_loss_fn``; see the module docstring); updates the
        running mean stds ``mean_q_std``. Returns the loss and logged statistics."""
        target, target_sample = self.targets(replay_data)
        means, stds = self.critic.mean_std(replay_data.observations, replay_data.actions)
        loss = means.new_zeros(())
        for i in range(self.critic.n_critics):
            mean, std = means[i], stds[i]
            batch_std = float(std.detach().mean())
            old = self.mean_q_std[i]
            m = batch_std if old == -1.0 else self.tau * batch_std + (1.0 - self.tau) * old
            self.mean_q_std[i] = m
            bounded = (mean + (target_sample - mean).clamp(-_TARGET_BOUND * m, _TARGET_BOUND * m)).detach()
            std_d = std.detach().clamp_min(0.0)
            loss = loss - (m**2 + _DSAC_EPS) * th.mean(
                mean * (target - mean).detach() / (std_d**2 + _DSAC_EPS)
                + std * ((mean.detach() - bounded) ** 2 - std_d**2) / (std_d**3 + _DSAC_EPS)
            )
        stats = {
            "q_mean": float(means.detach().mean()),
            "q_std": float(stds.detach().mean()),
            "target_q": float(target.mean()),
        }
        return loss, stats

    def actor_loss(self, observations: th.Tensor) -> th.Tensor:
        """``-mean(min_i mu_i(s, a))`` with ``a = actor.sample(s)`` (regulator noise included), backpropagated through
        the sampler. The critics' parameters get no gradient from it."""
        critic_params = list(self.critic.parameters())
        flags = [p.requires_grad for p in critic_params]
        for p in critic_params:
            p.requires_grad_(False)
        try:
            actions = self.actor(observations, deterministic=False)
            means, _ = self.critic.mean_std(observations, actions)
            return -means.min(dim=0).values.mean()
        finally:
            for p, flag in zip(critic_params, flags, strict=True):
                p.requires_grad_(flag)

    @th.no_grad()
    def estimate_entropy(self, observations: th.Tensor) -> float:
        """Mean GMM entropy (:func:`gmm_entropy`) of ``entropy_samples`` actions sampled for each observation (the
        official ``cal_entropy``)."""
        n = observations.shape[0]
        repeated = observations.repeat_interleave(self.entropy_samples, dim=0)
        actions = self.actor(repeated, deterministic=False, record=False).view(n, self.entropy_samples, -1)
        return float(gmm_entropy(actions, self.gmm_components).mean())

    # -- the update ------------------------------------------------------------------------------------------
    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])
        critic_losses, actor_losses, stats = [], [], []
        for _ in range(gradient_steps):
            step = self._n_updates
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]

            loss, stat = self.critic_loss(replay_data)
            self.critic.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            critic_losses.append(loss.item())
            stats.append(stat)

            update_actor = step % self.policy_delay == 0
            if update_actor:  # before the critic step: the official update reads the critics' old parameters
                a_loss = self.actor_loss(replay_data.observations)
                self.actor.optimizer.zero_grad(set_to_none=True)
                a_loss.backward()
                actor_losses.append(a_loss.item())

            update_alpha = step % self.alpha_update_interval == 0
            if update_alpha:
                self.entropy = self.estimate_entropy(replay_data.observations)

            self.critic.optimizer.step()
            if update_actor:
                self.actor.optimizer.step()
            if update_alpha:
                self.alpha_optimizer.zero_grad(set_to_none=True)
                alpha_loss = -self.actor.log_alpha * (self._target_entropy - self.entropy)
                alpha_loss.backward()
                self.alpha_optimizer.step()
            if update_actor:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            self._n_updates += 1

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/critic_loss", float(np.mean(critic_losses)))
        if actor_losses:
            self.logger.record("train/actor_loss", float(np.mean(actor_losses)))
        for key in ("q_mean", "q_std", "target_q"):
            self.logger.record(f"train/{key}", float(np.mean([s[key] for s in stats])))
        self.logger.record("train/mean_q_std", float(np.mean(self.mean_q_std)))
        self.logger.record("train/alpha", self.actor.alpha)
        self.logger.record("train/entropy", self.entropy)

    # -- SB3 plumbing ----------------------------------------------------------------------------------------
    def learn(
        self: SelfDACER,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "DACER",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDACER:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "actor", "critic", "critic_target", "alpha_optimizer"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "actor.optimizer", "critic.optimizer", "alpha_optimizer"], []
