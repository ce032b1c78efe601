"""DACER's networks (Wang et al., NeurIPS 2024, "Diffusion Actor-Critic with Entropy Regulator"; official JAX code
``happy-yan/DACER-Diffusion-with-Online-RL``, files ``relax/network/dacer.py``, ``relax/network/blocks.py``,
``relax/utils/diffusion.py``) as an SB3 policy for :class:`~sb3_plasticity.algos.dacer.DACER`.

- :class:`GaussianDiffusion`: the variance-preserving noise schedule of the official ``vp_beta_schedule``
  (``beta_t = 1 - exp(-b_min / T - (b_max - b_min) (2t - 1) / (2 T^2))``, ``t = 1..T``, ``b_min = 0.1``,
  ``b_max = 10``) and one DDPM reverse step with the clipped ``x_0`` reconstruction (``p_mean_variance``).
- :class:`DACERDenoiser`: the noise-prediction network ``eps(s, x_t, t)`` (official ``DACERPolicyNet``): a sinusoidal
  time embedding (16 dims) through ``Linear(16, 32) -> act -> Linear(32, 16)``, concatenated as ``[s, x_t, emb]`` and
  fed to an MLP (3 x 256, Mish) with a linear output of the action size.
- :class:`DACERActor`: the diffusion policy. An action is ``clip(x_0 + lambda * alpha * N(0, I), -1, 1)``, with
  ``x_0`` from ``T`` (20) reverse steps started at ``x_T ~ N(0, I)`` and ``alpha = exp(log_alpha)`` the entropy
  regulator's noise factor (official ``get_action``).
- :class:`DACERCritic`: ``n_critics`` (2) distributional Q-networks (official ``DistributionalQNet2``): an MLP
  (3 x 256, Mish) on ``[s, a]`` with two outputs, the mean of the return and ``softplus`` of the second as its std.
- Init: Haiku's ``Linear`` default, the official code's: weights from a normal truncated at two standard deviations
  with std ``1 / sqrt(fan_in)``, zero biases (:class:`TruncatedNormalInit`, also used for neuron resets).

:class:`DACERPolicy` declares its neurons with ``neuron_paths()``: network ``actor`` (the denoiser's hidden layers
and its time-embedding MLP's hidden layer), ``critic`` and its twin ``critic_target``, so the package's callbacks
find them. See ``docs/networks.md`` ("DACER") for the choices and how statistics over the ``T`` denoiser calls of a
pass are recorded.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BaseModel, BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, create_mlp, get_actor_critic_arch
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.nn import functional as F

from sb3_plasticity.neurons import InitScheme, NetworkPath, Stage

__all__ = [
    "DACERActor",
    "DACERCritic",
    "DACERDenoiser",
    "DACERPolicy",
    "GaussianDiffusion",
    "TruncatedNormalInit",
    "timestep_embedding",
    "vp_beta_schedule",
]

# Official defaults (scripts/train_mujoco.py, relax/network/dacer.py, relax/network/blocks.py)
HIDDEN_SIZES = (256, 256, 256)  # --hidden_num 3, --hidden_dim 256 (critic) and --diffusion_hidden_dim 256
DIFFUSION_STEPS = 20  # --diffusion_steps 20 (DACER Sec. 5 ablation: 20 steps were best)
TIME_DIM = 16  # DACERPolicyNet.time_dim
BETA_MIN, BETA_MAX = 0.1, 10.0  # vp_beta_schedule
NOISE_SCALE = 0.1  # get_action: "* 0.15 # other envs 0.1": 0.15 for Humanoid and HalfCheetah, 0.1 otherwise
INITIAL_ALPHA = 3.0  # create_dacer_net: log_alpha = log(3) ("math.log(3) or math.log(5) choose one")


def vp_beta_schedule(diffusion_steps: int, beta_min: float = BETA_MIN, beta_max: float = BETA_MAX) -> np.ndarray:
    """The official ``vp_beta_schedule``: ``beta_t = 1 - exp(-b_min / T - 0.5 (b_max - b_min) (2t - 1) / T^2)`` for
    ``t = 1..T`` (float64). ``prod_t (1 - beta_t) = exp(-b_min - (b_max - b_min) / 2)`` whatever ``T``."""
    t = np.arange(1, diffusion_steps + 1, dtype=np.float64)
    T = float(diffusion_steps)
    alpha = np.exp(-beta_min / T - 0.5 * (beta_max - beta_min) * (2 * t - 1) / T**2)
    return 1.0 - alpha


def timestep_embedding(t: th.Tensor, dim: int, theta: float = 10_000.0) -> th.Tensor:
    """The official ``scaled_sinusoidal_encoding``: ``[sin(t f), cos(t f)] / sqrt(dim)`` with frequencies
    ``f_j = theta^(-j / (dim/2))``, ``j < dim/2``; ``t`` of any shape, output ``(*t.shape, dim)``."""
    half = dim // 2
    freqs = theta ** -(th.arange(half, device=t.device, dtype=th.float32) / half)
    emb = t.to(th.float32)[..., None] * freqs
    return th.cat([th.sin(emb), th.cos(emb)], dim=-1) / math.sqrt(dim)


class TruncatedNormalInit(InitScheme):
    """Haiku's ``hk.Linear`` default init (the official DACER code's): weight ~ N(0, 1/fan_in) truncated at two
    standard deviations, zero bias. Used at construction and by neuron resets."""

    def fresh(self, layer: nn.Module, generator: th.Generator | None = None) -> tuple[th.Tensor, th.Tensor | None]:
        weight = th.empty_like(layer.weight)
        fan_in = weight[0].numel()
        std = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.trunc_normal_(weight, 0.0, std, -2.0 * std, 2.0 * std, generator=generator)
        bias = th.zeros_like(layer.bias) if layer.bias is not None else None
        return weight, bias

    def __repr__(self) -> str:
        return "TruncatedNormalInit()"


INIT = TruncatedNormalInit()


def _init_linears(module: nn.Module) -> None:
    with th.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Linear):
                weight, bias = INIT.fresh(layer)
                layer.weight.copy_(weight)
                if bias is not None:
                    layer.bias.copy_(bias)


def _mlp(in_dim: int, out_dim: int, net_arch: list[int], activation_fn: type[nn.Module]) -> nn.Sequential:
    mlp = nn.Sequential(*create_mlp(in_dim, out_dim, list(net_arch), activation_fn))
    _init_linears(mlp)
    return mlp


class GaussianDiffusion(nn.Module):
    """The DDPM coefficients of a noise schedule (official ``BetaScheduleCoefficients.from_beta``, computed in float64,
    stored as float32 buffers) and the reverse step of ``GaussianDiffusion.p_sample``.

    Index ``t`` runs ``0..T-1`` (the official ``jnp.arange(T)``): ``betas[t]`` is the paper's ``beta_{t+1}``.

    :param diffusion_steps: ``T``.
    :param beta_min: ``b_min`` of :func:`vp_beta_schedule`.
    :param beta_max: ``b_max``.
    """

    betas: th.Tensor
    alphas_cumprod: th.Tensor

    def __init__(self, diffusion_steps: int, beta_min: float = BETA_MIN, beta_max: float = BETA_MAX) -> None:
        super().__init__()
        self.diffusion_steps = diffusion_steps
        betas = vp_beta_schedule(diffusion_steps, beta_min, beta_max)
        alphas = 1.0 - betas
        alphas_cumprod = np.cumprod(alphas)
        alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
        posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
        coefficients = {
            "betas": betas,
            "alphas": alphas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod),
            "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / alphas_cumprod - 1.0),
            "posterior_variance": posterior_variance,
            "posterior_log_variance_clipped": np.log(np.maximum(posterior_variance, 1e-20)),
            "posterior_mean_coef1": betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
            "posterior_mean_coef2": (1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
        }
        for name, value in coefficients.items():
            self.register_buffer(name, th.as_tensor(value, dtype=th.float32), persistent=False)
        # exp(0.5 * log variance), 0 at t = 0: the official `(t > 0) * exp(0.5 * model_log_variance) * noise`
        std = np.exp(0.5 * coefficients["posterior_log_variance_clipped"])
        std[0] = 0.0
        self.register_buffer("posterior_std", th.as_tensor(std, dtype=th.float32), persistent=False)

    def step(self, x: th.Tensor, eps: th.Tensor, t: int, noise: th.Tensor) -> th.Tensor:
        """``x_{t-1}`` from ``x_t`` and the predicted noise: ``x_0 = clip(x_t / sqrt(abar_t) - eps sqrt(1/abar_t - 1),
        -1, 1)``, posterior mean ``c1_t x_0 + c2_t x_t``, plus ``sigma_t * noise`` for ``t > 0``."""
        x_recon = (x * self.sqrt_recip_alphas_cumprod[t] - eps * self.sqrt_recipm1_alphas_cumprod[t]).clamp(-1.0, 1.0)
        mean = x_recon * self.posterior_mean_coef1[t] + x * self.posterior_mean_coef2[t]
        return mean + self.posterior_std[t] * noise if t > 0 else mean


class DACERDenoiser(nn.Module):
    """The noise-prediction network ``eps(s, x_t, t)`` (official ``DACERPolicyNet``).

    ``emb = time_mlp(timestep_embedding(t))`` with ``time_mlp = Linear(time_dim, 2 time_dim) -> act ->
    Linear(2 time_dim, time_dim)``, then ``net([s, x_t, emb])``, an MLP with ``net_arch`` hidden layers and a linear
    output of ``action_dim``.

    :param obs_dim: flattened observation size.
    :param action_dim: action size.
    :param net_arch: hidden sizes of ``net`` (official: 3 x 256).
    :param activation_fn: a parameter-free activation module class (official: Mish).
    :param time_dim: size of the time embedding (official: 16).
    """

    def __init__(
        self, obs_dim: int, action_dim: int, net_arch: list[int], activation_fn: type[nn.Module], time_dim: int = TIME_DIM
    ) -> None:
        super().__init__()
        if time_dim <= 0 or time_dim % 2:
            raise ValueError(f"time_dim must be a positive even integer, got {time_dim!r}")
        if any(True for _ in activation_fn().parameters()):
            raise ValueError(f"activation_fn must be a parameter-free activation, got {activation_fn.__name__}")
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, 2 * time_dim), activation_fn(), nn.Linear(2 * time_dim, time_dim))
        _init_linears(self.time_mlp)
        self.net = _mlp(obs_dim + action_dim + time_dim, action_dim, net_arch, activation_fn)

    @staticmethod
    def _times(t: int | th.Tensor, batch: int, device: th.device) -> th.Tensor:
        if isinstance(t, th.Tensor):
            return t.to(device)
        return th.full((batch,), t, device=device, dtype=th.long)

    def forward(self, obs: th.Tensor, x: th.Tensor, t: int | th.Tensor) -> th.Tensor:
        emb = self.time_mlp(timestep_embedding(self._times(t, obs.shape[0], obs.device), self.time_dim))
        return self.net(th.cat([obs, x, emb], dim=-1))

    def forward_unhooked(self, obs: th.Tensor, x: th.Tensor, t: int | th.Tensor, detach_params: bool = False) -> th.Tensor:
        """The same function without running module hooks (``F.linear`` and each activation's ``forward``); with
        ``detach_params`` no gradient reaches the parameters (it still reaches ``x``)."""

        def run(seq: nn.Sequential, h: th.Tensor) -> th.Tensor:
            for module in seq:
                if isinstance(module, nn.Linear):
                    weight, bias = module.weight, module.bias
                    if detach_params:
                        weight = weight.detach()
                        bias = bias.detach() if bias is not None else None
                    h = F.linear(h, weight, bias)
                else:
                    h = module.forward(h)
            return h

        emb = run(self.time_mlp, timestep_embedding(self._times(t, obs.shape[0], obs.device), self.time_dim))
        return run(self.net, th.cat([obs, x, emb], dim=-1))

    def has_hooks(self) -> bool:
        """Whether a forward hook is on any of its modules (a capture of the package's callbacks is armed)."""
        return any(m._forward_hooks or m._forward_pre_hooks for m in self.modules())


class DACERActor(BaseModel):
    """DACER's diffusion policy (official ``DACERNet.get_action``).

    :meth:`sample`: ``x_T ~ N(0, I)``; for ``t = T-1 .. 0``: ``x_{t-1} = GaussianDiffusion.step(x_t, eps(s, x_t, t))``;
    then ``a = clip(x_0 + noise_scale * exp(log_alpha) * N(0, I), -1, 1)``. Gradients flow through the whole chain
    (DACER trains the actor by backpropagating ``-Q`` through the sampler); ``log_alpha`` gets none from it.

    Deterministic actions (``deterministic=True``) add no entropy-regulator noise (the official
    ``get_deterministic_action`` sets ``log_alpha = -inf``) and drive the chain with one fixed noise sequence drawn
    from a generator seeded with ``deterministic_seed``, the same for every observation (the official code draws it
    from a key derived from the observation batch): a deterministic function of each observation.

    Calling the actor, ``actor(obs)``, gives the deterministic action (``PolicyProbe``'s action drift and the
    activation probes of ReDo use it).

    When a forward hook is on the denoiser (a capture of the monitor, ReDo or ReGraMa is armed), :meth:`sample`
    evaluates the same chain so that the denoiser's modules are called *once* on the inputs of all ``T`` steps
    (``T * batch`` rows, in the order ``t = 0, 1, .., T-1``): the recorded activations and ``dL/dz`` cover every
    reverse step, and value and gradients are those of the plain chain (see ``docs/networks.md``, "DACER").

    :param observation_space: a Box.
    :param action_space: a Box.
    :param features_extractor: a parameter-free extractor (``FlattenExtractor``).
    :param features_dim: its output size.
    :param net_arch: hidden sizes of the denoiser's MLP.
    :param activation_fn: activation of the denoiser (official: Mish).
    :param diffusion_steps: ``T`` (official: 20).
    :param time_dim: time-embedding size (official: 16).
    :param beta_min: schedule ``b_min`` (0.1).
    :param beta_max: schedule ``b_max`` (10).
    :param noise_scale: ``lambda`` (official: 0.1; 0.15 for Humanoid and HalfCheetah).
    :param initial_alpha: ``exp(log_alpha)`` at construction (official: 3).
    :param deterministic_seed: seed of the fixed noise of deterministic actions.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.Mish,
        diffusion_steps: int = DIFFUSION_STEPS,
        time_dim: int = TIME_DIM,
        beta_min: float = BETA_MIN,
        beta_max: float = BETA_MAX,
        noise_scale: float = NOISE_SCALE,
        initial_alpha: float = INITIAL_ALPHA,
        deterministic_seed: int = 0,
    ) -> None:
        super().__init__(observation_space, action_space, features_extractor=features_extractor, normalize_images=False)
        self.action_dim = get_action_dim(action_space)
        self.diffusion_steps = diffusion_steps
        self.noise_scale = float(noise_scale)
        self.deterministic_seed = int(deterministic_seed)
        self.denoiser = DACERDenoiser(features_dim, self.action_dim, net_arch, activation_fn, time_dim)
        self.diffusion = GaussianDiffusion(diffusion_steps, beta_min, beta_max)
        self.log_alpha = nn.Parameter(th.tensor(math.log(initial_alpha), dtype=th.float32))

    @property
    def alpha(self) -> float:
        """``exp(log_alpha)``: the noise factor the entropy regulator learns."""
        return float(self.log_alpha.detach().exp())

    def _noises(self, batch: int, deterministic: bool, device: th.device) -> tuple[th.Tensor, th.Tensor]:
        shape = (self.diffusion_steps + 1, batch, self.action_dim)
        if deterministic:
            generator = th.Generator().manual_seed(self.deterministic_seed)
            noise = th.randn((self.diffusion_steps + 1, 1, self.action_dim), generator=generator).to(device)
            noise = noise.expand(shape)
        else:
            noise = th.randn(shape, device=device)
        return noise[0], noise[1:]  # x_T, the noise of each reverse step (official p_sample)

    def _chain(self, obs: th.Tensor, x: th.Tensor, noises: th.Tensor, eps_fn) -> tuple[th.Tensor, list[th.Tensor]]:
        inputs = []
        for i, t in enumerate(reversed(range(self.diffusion_steps))):
            inputs.append(x)
            x = self.diffusion.step(x, eps_fn(obs, x, t), t, noises[i])
        return x, inputs

    def denoise(self, obs: th.Tensor, deterministic: bool = False, record: bool = True) -> th.Tensor:
        """``x_0`` of the reverse chain for observation features ``obs`` (``(batch, features)``).

        :param record: when a hook is on the denoiser, evaluate the chain in the form whose single denoiser call covers
            every step (the same value and gradients); False: always the plain chain (rollouts, targets and the
            entropy estimate, which no capture records).
        """
        x, noises = self._noises(obs.shape[0], deterministic, obs.device)
        denoiser = self.denoiser
        if not (record and denoiser.has_hooks()):
            x0, _ = self._chain(obs, x, noises, denoiser)
            return x0
        # A capture is armed: call the hooked modules once on every step's input (t = 0 first), then splice that
        # call into a hook-free chain whose parameters are detached, so value and gradients stay the plain chain's.
        steps, batch = self.diffusion_steps, obs.shape[0]
        with th.no_grad():
            x0, inputs = self._chain(obs, x, noises, denoiser.forward_unhooked)
        stacked_x = th.cat(inputs[::-1])  # inputs[i] is the input of t = T-1-i
        times = th.arange(steps, device=obs.device).repeat_interleave(batch)
        eps_all = denoiser(obs.repeat(steps, 1), stacked_x, times).view(steps, batch, -1)
        if not th.is_grad_enabled():
            return x0

        def spliced(obs_: th.Tensor, x_: th.Tensor, t: int) -> th.Tensor:
            eps = denoiser.forward_unhooked(obs_, x_, t, detach_params=True)
            return eps + (eps_all[t] - eps_all[t].detach())

        x0, _ = self._chain(obs, x, noises, spliced)
        return x0

    def sample(self, obs: th.Tensor, deterministic: bool = False, record: bool = True) -> th.Tensor:
        """An action in ``[-1, 1]`` for observation features ``obs``: ``clip(x_0 + noise_scale * alpha * N(0, I))``,
        or ``x_0`` (already in ``[-1, 1]``) when ``deterministic``. ``record``: see :meth:`denoise`."""
        x0 = self.denoise(obs, deterministic, record)
        if deterministic:
            return x0.clamp(-1.0, 1.0)
        scale = self.noise_scale * self.log_alpha.detach().exp()
        return (x0 + th.randn_like(x0) * scale).clamp(-1.0, 1.0)

    def forward(self, obs: th.Tensor, deterministic: bool = True, record: bool = True) -> th.Tensor:
        return self.sample(self.extract_features(obs, self.features_extractor), deterministic, record)


class DACERCritic(BaseModel):
    """DACER's distributional critics (official ``DistributionalQNet2``): ``n_critics`` MLPs on ``[s, a]`` with two
    outputs each, ``(mean, softplus(out_2))`` = the mean and std of the return.

    The Q-networks are ``qf0``, ``qf1``, ... and listed in ``q_networks`` (as SB3's ``ContinuousCritic``).

    :param net_arch: hidden sizes (official: 3 x 256).
    :param activation_fn: activation (official: Mish, the activation ``create_dacer_net`` gets for both networks).
    :param n_critics: Q-networks (official: 2).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module] = nn.Mish,
        n_critics: int = 2,
    ) -> None:
        super().__init__(observation_space, action_space, features_extractor=features_extractor, normalize_images=False)
        action_dim = get_action_dim(action_space)
        self.n_critics = n_critics
        self.q_networks: list[nn.Sequential] = []
        for idx in range(n_critics):
            q_net = _mlp(features_dim + action_dim, 2, net_arch, activation_fn)
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)

    def mean_std(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Means and stds of every Q-network, each ``(n_critics, batch)``."""
        features = self.extract_features(obs, self.features_extractor)
        out = th.stack([q_net(th.cat([features, actions], dim=1)) for q_net in self.q_networks])
        return out[..., 0], F.softplus(out[..., 1])

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        """Every Q-network's mean, ``(batch, 1)`` each (SB3's critic interface)."""
        means, _ = self.mean_std(obs, actions)
        return tuple(m.unsqueeze(1) for m in means)

    def set_training_mode(self, mode: bool) -> None:
        self.train(mode)


class DACERPolicy(BasePolicy):
    """DACER's diffusion actor, distributional critics and target critics, for
    :class:`~sb3_plasticity.algos.dacer.DACER` (alias ``"MlpPolicy"``). Defaults are the official code's
    (``scripts/train_mujoco.py``, ``relax/network/dacer.py``); the module docstring lists them.

    Optimizers (Adam): ``actor.optimizer`` over the denoiser (not ``log_alpha``, which the algorithm's
    ``alpha_optimizer`` owns), ``critic.optimizer`` over all Q-networks (the official code has one Adam per
    Q-network with the same rate: the same update).

    ``predict(obs, deterministic=False)`` samples the diffusion policy with the entropy regulator's noise;
    ``deterministic=True`` runs the chain on a fixed noise sequence without that noise (see :class:`DACERActor`).

    :param net_arch: hidden sizes of the denoiser and of each Q-network: a list for both or
        ``dict(pi=[...], qf=[...])`` (default [256, 256, 256], official ``--hidden_num 3 --hidden_dim 256``; the
        GraMa paper's Table 4 lists [256, 256] with ReLU).
    :param activation_fn: activation of both (default ``nn.Mish``, official; must be parameter-free).
    :param n_critics: Q-networks (default 2).
    :param diffusion_steps: reverse diffusion steps ``T`` (default 20, official ``--diffusion_steps``).
    :param time_dim: time-embedding size (default 16, official ``DACERPolicyNet``).
    :param beta_min: noise schedule ``b_min`` (default 0.1, official ``vp_beta_schedule``).
    :param beta_max: noise schedule ``b_max`` (default 10).
    :param noise_scale: ``lambda``, the factor of the entropy regulator's noise (default 0.1, official "other envs";
        0.15 for Humanoid and HalfCheetah).
    :param initial_alpha: initial noise factor ``exp(log_alpha)`` (default 3, official ``log_alpha = log(3)``).
    :param deterministic_seed: seed of the fixed noise of deterministic actions (default 0).
    :param optimizer_class: default Adam (official ``optax.adam``).
    :param optimizer_kwargs: extra optimizer arguments.
    """

    actor: DACERActor
    critic: DACERCritic
    critic_target: DACERCritic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Mish,
        n_critics: int = 2,
        diffusion_steps: int = DIFFUSION_STEPS,
        time_dim: int = TIME_DIM,
        beta_min: float = BETA_MIN,
        beta_max: float = BETA_MAX,
        noise_scale: float = NOISE_SCALE,
        initial_alpha: float = INITIAL_ALPHA,
        deterministic_seed: int = 0,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"DACER needs a continuous (Box) action space, got {action_space}")
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(f"DACER needs a Box observation space (flattened into the networks), got {observation_space}")
        for name, value in (("n_critics", n_critics), ("diffusion_steps", diffusion_steps), ("time_dim", time_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(noise_scale, (int, float)) and noise_scale >= 0):
            raise ValueError(f"noise_scale must be a number >= 0, got {noise_scale!r}")
        if not (isinstance(initial_alpha, (int, float)) and initial_alpha > 0):
            raise ValueError(f"initial_alpha must be a number > 0, got {initial_alpha!r}")
        if not 0 < beta_min < beta_max:
            raise ValueError(f"need 0 < beta_min < beta_max, got beta_min={beta_min!r}, beta_max={beta_max!r}")
        super().__init__(
            observation_space,
            action_space,
            FlattenExtractor,
            None,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,  # actions live in [-1, 1] and are rescaled to the Box bounds
            normalize_images=False,
        )
        if net_arch is None:
            net_arch = list(HIDDEN_SIZES)
        self.net_arch = net_arch
        self.actor_arch, self.critic_arch = get_actor_critic_arch(net_arch)
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.diffusion_steps = diffusion_steps
        self.time_dim = time_dim
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.noise_scale = float(noise_scale)
        self.initial_alpha = float(initial_alpha)
        self.deterministic_seed = int(deterministic_seed)
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        self.actor = self.make_actor()
        self.critic = self.make_critic()
        self.critic_target = self.make_critic()
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.set_training_mode(False)
        self.actor.optimizer = self.optimizer_class(
            self.actor.denoiser.parameters(),
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self.optimizer_kwargs,
        )
        self.critic.optimizer = self.optimizer_class(
            self.critic.parameters(),
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self.optimizer_kwargs,
        )

    def make_actor(self) -> DACERActor:
        extractor = self.make_features_extractor()
        return DACERActor(
            self.observation_space,
            self.action_space,  # type: ignore[arg-type]
            extractor,
            extractor.features_dim,
            self.actor_arch,
            self.activation_fn,
            self.diffusion_steps,
            self.time_dim,
            self.beta_min,
            self.beta_max,
            self.noise_scale,
            self.initial_alpha,
            self.deterministic_seed,
        )

    def make_critic(self) -> DACERCritic:
        extractor = self.make_features_extractor()
        return DACERCritic(
            self.observation_space,
            self.action_space,  # type: ignore[arg-type]
            extractor,
            extractor.features_dim,
            self.critic_arch,
            self.activation_fn,
            self.n_critics,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                activation_fn=self.activation_fn,
                n_critics=self.n_critics,
                diffusion_steps=self.diffusion_steps,
                time_dim=self.time_dim,
                beta_min=self.beta_min,
                beta_max=self.beta_max,
                noise_scale=self.noise_scale,
                initial_alpha=self.initial_alpha,
                deterministic_seed=self.deterministic_seed,
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
                lr_schedule=self._dummy_schedule,
            )
        )
        for key in ("normalize_images", "squash_output", "features_extractor_class", "features_extractor_kwargs"):
            data.pop(key, None)
        return data

    # -- acting ----------------------------------------------------------------------------------------------
    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self.actor(observation, deterministic=deterministic, record=False)

    def set_training_mode(self, mode: bool) -> None:
        # the target critics always stay in eval mode (SB3 PR #553)
        self.actor.set_training_mode(mode)
        self.critic.set_training_mode(mode)
        self.training = mode

    # -- neuron model (sb3_plasticity.neurons) ---------------------------------------------------------------
    def neuron_paths(self) -> list[NetworkPath]:
        """Data-flow paths for :func:`~sb3_plasticity.discover`: network ``actor`` is the denoiser, with two paths:
        ``denoiser.time_mlp`` (its hidden layer ``denoiser.time_mlp.0`` is a group; the embedding output
        ``time_mlp.2``, a linear projection without activation, is its output layer) and ``denoiser.net`` (hidden
        layers ``denoiser.net.0``, ``.2``, ...; output ``eps``); ``critic`` and its twin ``critic_target`` are
        ``qf<i>`` (output: mean and std). Re-initialisation follows the init of the official code
        (:class:`TruncatedNormalInit`)."""
        denoiser = self.actor.denoiser
        paths = [
            NetworkPath((Stage("actor", "denoiser.time_mlp", denoiser.time_mlp, INIT),)),
            NetworkPath((Stage("actor", "denoiser.net", denoiser.net, INIT),)),
        ]
        for network, critic in (("critic", self.critic), ("critic_target", self.critic_target)):
            for idx, q_net in enumerate(critic.q_networks):
                paths.append(NetworkPath((Stage(network, f"qf{idx}", q_net, INIT),)))
        return paths

    def neuron_network_modules(self) -> dict[str, list[nn.Module]]:
        """The modules of each network (their parameters make the network-level norms; ``log_alpha`` is not part of
        ``actor``)."""
        return {"actor": [self.actor.denoiser], "critic": [self.critic], "critic_target": [self.critic_target]}
