"""DrQ-v2's networks (Yarats et al. 2022, "Mastering Visual Continuous Control: Improved Data-Augmented
Reinforcement Learning", Sec. 3 and App. A/B) as an SB3 policy for :class:`~sb3_plasticity.algos.drqv2.DrQV2`.

- :class:`DrQV2Encoder`: pixels ``/ 255 - 0.5``, four 3x3 convolutions with 32 channels (stride 2, then 1, 1, 1),
  ReLU after each, flattened (``32 * 35 * 35`` features for 84x84 frames). It is shared by actor and critic and
  trained by the critic loss only.
- :class:`DrQV2Actor`: a trunk ``Linear(repr, 50) -> LayerNorm -> Tanh`` on the *detached* encoder output, then an
  MLP (1024, 1024, ReLU) to the action with a final ``tanh``: a deterministic policy, the mean of DrQ-v2's
  exploration distribution.
- :class:`DrQV2Critic`: its own trunk of the same shape, then ``n_critics`` (2) Q-networks (1024, 1024, ReLU) on
  ``[trunk(features), action]``. The target critic is a copy of trunk and Q-networks that reads the *online*
  encoder (DrQ-v2 has no target encoder).
- Init (DrQ-v2's ``utils.weight_init``): orthogonal weights (gain 1 for Linear, sqrt(2) for Conv), zero biases.

:class:`DrQV2Policy` declares its neurons with ``neuron_paths()`` (networks ``features`` for the encoder's
channels, ``actor``, ``critic`` and ``critic_target``), so the package's callbacks (monitor, ReDo, GraMa, ...)
find them. :class:`MaskedDrQV2Policy` makes the hidden MLP layers of actor and critic
:class:`~sb3_plasticity.MaskedLinear` for Neuroplastic Expansion (NE-DrQ, NE paper Sec. 4.3, App. C).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, create_mlp, get_actor_critic_arch
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from sb3_plasticity.checks import check_bool, check_positive_int
from sb3_plasticity.networks import add_layer_norms
from sb3_plasticity.neurons import NetworkPath, OrthogonalInit, Stage
from sb3_plasticity.policies import _Masking

__all__ = ["DrQV2Actor", "DrQV2Critic", "DrQV2Encoder", "DrQV2Policy", "LayerNormDrQV2Policy", "MaskedDrQV2Policy"]

# DrQ-v2 (Yarats et al. 2022) App. B, Table 1 and the official config (cfgs/config.yaml)
FEATURE_DIM = 50
HIDDEN_DIM = 1024
N_FILTERS = 32
CONV_GAIN = math.sqrt(2.0)  # nn.init.calculate_gain("relu"), DrQ-v2's conv init


def _orthogonal_init(module: nn.Module, gain: float) -> None:
    """DrQ-v2's ``weight_init``: orthogonal weight with ``gain``, zero bias."""
    nn.init.orthogonal_(module.weight, gain=gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class DrQV2Encoder(BaseFeaturesExtractor):
    """DrQ-v2's convolutional encoder: ``obs / 255 - 0.5``, then ``n_layers`` 3x3 convolutions of ``n_filters``
    channels (the first with stride 2, the others stride 1), ReLU after each, flattened.

    Any frame size works as long as the convolutions leave at least one pixel (``H, W >= 2 * n_layers + 1``, e.g.
    24x24 in tests); 84x84 frames give DrQ-v2's 32 x 35 x 35 = 39200 features.

    :param observation_space: a channel-first uint8 image Box ``(C, H, W)`` with bounds [0, 255] (frames stacked on
        the channel axis, as ``sb3_plasticity/DMCPixels-*`` envs give; SB3 transposes channel-last envs itself).
    :param n_filters: channels of every convolution (default 32, DrQ-v2 Sec. 3 / official ``Encoder``).
    :param n_layers: convolutions (default 4, the same).
    """

    def __init__(self, observation_space: spaces.Space, n_filters: int = N_FILTERS, n_layers: int = 4) -> None:
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise ValueError(
                f"DrQV2Encoder needs an image observation space, a Box of shape (channels, height, width); got "
                f"{observation_space}"
            )
        if observation_space.dtype != np.uint8:
            raise ValueError(
                f"DrQV2Encoder scales pixels as obs / 255 - 0.5 (DrQ-v2): the observation space must be uint8, got "
                f"dtype {observation_space.dtype}"
            )
        n_filters = check_positive_int("n_filters", n_filters)
        n_layers = check_positive_int("n_layers", n_layers)
        channels, height, width = observation_space.shape
        if min(height, width) < 2 * n_layers + 1:
            raise ValueError(
                f"observations of {height}x{width} pixels are too small for {n_layers} 3x3 convolutions (stride 2 "
                f"then 1): height and width must be at least {2 * n_layers + 1}"
            )
        layers: list[nn.Module] = []
        in_channels = channels
        for i in range(n_layers):
            conv = nn.Conv2d(in_channels, n_filters, kernel_size=3, stride=2 if i == 0 else 1)
            _orthogonal_init(conv, CONV_GAIN)
            layers += [conv, nn.ReLU()]
            in_channels = n_filters
        layers.append(nn.Flatten())
        cnn = nn.Sequential(*layers)
        with th.no_grad():
            n_flatten = int(cnn(th.zeros(1, *observation_space.shape)).shape[1])
        super().__init__(observation_space, n_flatten)
        self.cnn = cnn
        self.n_filters = n_filters
        self.n_layers = n_layers

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.cnn(observations.float() / 255.0 - 0.5)


def _trunk(repr_dim: int, feature_dim: int) -> nn.Sequential:
    """``Linear(repr_dim, feature_dim) -> LayerNorm -> Tanh`` (DrQ-v2's actor and critic trunks)."""
    linear = nn.Linear(repr_dim, feature_dim)
    _orthogonal_init(linear, 1.0)
    return nn.Sequential(linear, nn.LayerNorm(feature_dim), nn.Tanh())


def _mlp(in_dim: int, out_dim: int, net_arch: list[int], activation_fn: type[nn.Module], squash: bool) -> nn.Sequential:
    mlp = nn.Sequential(*create_mlp(in_dim, out_dim, list(net_arch), activation_fn, squash_output=squash))
    for module in mlp:
        if isinstance(module, nn.Linear):
            _orthogonal_init(module, 1.0)
    return mlp


class _ReadsEncoder(nn.Module):
    """A network that reads the shared encoder without owning it: the encoder is a plain attribute, not a
    registered submodule, so this network's ``parameters()``, ``state_dict()`` and optimizer cover its own layers
    only, and ``polyak_update(critic.parameters(), critic_target.parameters())`` pairs trunk and Q-networks exactly.
    The policy registers (and moves, saves, trains) the encoder."""

    def __init__(self, features_extractor: DrQV2Encoder) -> None:
        super().__init__()
        object.__setattr__(self, "_features_extractor", features_extractor)

    @property
    def features_extractor(self) -> DrQV2Encoder:
        return self._features_extractor

    def set_training_mode(self, mode: bool) -> None:
        self.train(mode)


class DrQV2Actor(_ReadsEncoder):
    """DrQ-v2's actor: ``tanh(mu(trunk(stop_grad(encoder(obs)))))``, actions in [-1, 1].

    :param features_extractor: the shared encoder (read, not owned).
    :param action_dim: action dimensions.
    :param feature_dim: trunk output size (default 50, DrQ-v2 Table 1 "feature dim").
    :param net_arch: hidden layer sizes of the MLP after the trunk (DrQ-v2: [1024, 1024]).
    :param activation_fn: activation of the hidden layers (DrQ-v2: ReLU).
    """

    def __init__(
        self,
        features_extractor: DrQV2Encoder,
        action_dim: int,
        feature_dim: int = FEATURE_DIM,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(features_extractor)
        self.trunk = _trunk(features_extractor.features_dim, feature_dim)
        self.mu = _mlp(
            feature_dim, action_dim, [HIDDEN_DIM, HIDDEN_DIM] if net_arch is None else net_arch, activation_fn, True
        )

    def action_from_features(self, features: th.Tensor) -> th.Tensor:
        """The deterministic action (DrQ-v2's distribution mean) from encoder features."""
        return self.mu(self.trunk(features))

    def forward(self, obs: th.Tensor) -> th.Tensor:
        return self.action_from_features(self.features_extractor(obs).detach())


class DrQV2Critic(_ReadsEncoder):
    """DrQ-v2's critic: ``h = trunk(encoder(obs))``, ``Q_i = qf_i([h, action])`` for ``i < n_critics``.

    The Q-networks are registered as ``qf0``, ``qf1``, ... and listed in ``q_networks`` (as in SB3's
    ``ContinuousCritic``; change layers inside them in place, never replace ``qf0`` itself).

    :param features_extractor: the shared encoder (read, not owned; the critic loss trains it).
    :param action_dim: action dimensions.
    :param feature_dim: trunk output size (default 50).
    :param net_arch: hidden layer sizes of each Q-network (DrQ-v2: [1024, 1024]).
    :param activation_fn: activation of the hidden layers (DrQ-v2: ReLU).
    :param n_critics: Q-networks (default 2, DrQ-v2's clipped double Q).
    """

    def __init__(
        self,
        features_extractor: DrQV2Encoder,
        action_dim: int,
        feature_dim: int = FEATURE_DIM,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        n_critics: int = 2,
    ) -> None:
        super().__init__(features_extractor)
        self.n_critics = n_critics
        self.trunk = _trunk(features_extractor.features_dim, feature_dim)
        arch = [HIDDEN_DIM, HIDDEN_DIM] if net_arch is None else net_arch
        self.q_networks: list[nn.Sequential] = []
        for idx in range(n_critics):
            q_net = _mlp(feature_dim + action_dim, 1, arch, activation_fn, False)
            self.add_module(f"qf{idx}", q_net)
            self.q_networks.append(q_net)

    def q_values(self, features: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        """Every Q-network's value, ``(batch, 1)`` each, from encoder features."""
        h_action = th.cat([self.trunk(features), actions], dim=1)
        return tuple(q_net(h_action) for q_net in self.q_networks)

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        return self.q_values(self.features_extractor(obs), actions)


class DrQV2Policy(BasePolicy):
    """DrQ-v2's encoder, actor, critic and target critic (see the module docstring), for
    :class:`~sb3_plasticity.algos.drqv2.DrQV2` (alias ``"CnnPolicy"``).

    Optimizers (Adam, DrQ-v2 lr 1e-4 from the algorithm's ``learning_rate``): ``actor.optimizer`` over the actor's
    trunk and MLP; ``critic.optimizer`` over the critic's trunk, Q-networks *and the encoder* (DrQ-v2 has a separate
    encoder Adam stepped right after the critic's, with the same rate: the same update).

    ``predict(obs, deterministic=True)`` is the actor's tanh mean; ``deterministic=False`` adds DrQ-v2's exploration
    noise ``N(0, exploration_std)`` (the algorithm sets ``exploration_std`` from its schedule before every action)
    and clips to the action bounds.

    :param net_arch: hidden sizes of the actor's and each Q-network's MLP: a list for both or
        ``dict(pi=[...], qf=[...])`` (default [1024, 1024], DrQ-v2 Table 1 "hidden dim").
    :param feature_dim: trunk output size (default 50, DrQ-v2 Table 1 "feature dim"; 100 for humanoid).
    :param activation_fn: activation of the hidden MLP layers (default ReLU, DrQ-v2).
    :param features_extractor_class: the encoder (default :class:`DrQV2Encoder`).
    :param features_extractor_kwargs: its keyword arguments (``n_filters``, ``n_layers``).
    :param optimizer_class: default Adam (DrQ-v2).
    :param optimizer_kwargs: extra optimizer arguments (default none: torch's Adam defaults, as DrQ-v2).
    :param n_critics: Q-networks (default 2).
    :param layer_norm: insert an ``nn.LayerNorm`` after every hidden ``Linear`` of the actor's and each Q-network's
        MLP (``Linear -> LayerNorm -> ReLU``; output layers, trunks and encoder unchanged): LN-DrQ, the NE paper's
        baseline (App. C). Default False (DrQ-v2). :class:`LayerNormDrQV2Policy` turns it on.
    """

    actor: DrQV2Actor
    critic: DrQV2Critic
    critic_target: DrQV2Critic
    features_extractor: DrQV2Encoder

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        feature_dim: int = FEATURE_DIM,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = DrQV2Encoder,
        features_extractor_kwargs: dict[str, Any] | None = None,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        layer_norm: bool = False,
    ) -> None:
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"DrQ-v2 needs a continuous (Box) action space, got {action_space}")
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=False,  # the encoder scales pixels itself (obs / 255 - 0.5)
        )
        if net_arch is None:
            net_arch = [HIDDEN_DIM, HIDDEN_DIM]
        feature_dim = check_positive_int("feature_dim", feature_dim)
        n_critics = check_positive_int("n_critics", n_critics)
        self.net_arch = net_arch
        self.actor_arch, self.critic_arch = get_actor_critic_arch(net_arch)
        self.feature_dim = feature_dim
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.layer_norm = check_bool("layer_norm", layer_norm)
        self.action_dim = get_action_dim(action_space)
        # std of the exploration noise of predict(deterministic=False); DrQV2 sets it from its schedule
        self.exploration_std = 0.0
        self._build(lr_schedule)

    # -- construction --------------------------------------------------------------------------------------
    def _build(self, lr_schedule: Schedule) -> None:
        self.features_extractor = self.make_features_extractor()
        self.actor = self.make_actor(self.features_extractor)
        self.critic = self.make_critic(self.features_extractor)
        self.critic_target = self.make_critic(self.features_extractor)
        self.critic_target.load_state_dict(self.critic.state_dict())  # masks (buffers) included
        self.critic_target.set_training_mode(False)
        self.actor.optimizer = self.optimizer_class(
            self.actor.parameters(),
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self.optimizer_kwargs,
        )
        self.critic.optimizer = self.optimizer_class(
            [*self.critic.parameters(), *self.features_extractor.parameters()],
            lr=lr_schedule(1),  # type: ignore[call-arg]
            **self.optimizer_kwargs,
        )

    def make_actor(self, features_extractor: DrQV2Encoder) -> DrQV2Actor:
        actor = DrQV2Actor(features_extractor, self.action_dim, self.feature_dim, self.actor_arch, self.activation_fn)
        if self.layer_norm:
            add_layer_norms(actor.mu, last_is_output=True)
        return actor

    def make_critic(self, features_extractor: DrQV2Encoder) -> DrQV2Critic:
        critic = DrQV2Critic(
            features_extractor, self.action_dim, self.feature_dim, self.critic_arch, self.activation_fn, self.n_critics
        )
        if self.layer_norm:
            for q_net in critic.q_networks:
                add_layer_norms(q_net, last_is_output=True)
        return critic

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_arch,
                feature_dim=self.feature_dim,
                activation_fn=self.activation_fn,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
                n_critics=self.n_critics,
                layer_norm=self.layer_norm,
                lr_schedule=self._dummy_schedule,
            )
        )
        data.pop("normalize_images", None)
        return data

    # -- acting ----------------------------------------------------------------------------------------------
    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        mean = self.actor(observation)
        if deterministic or self.exploration_std <= 0:
            return mean
        # DrQ-v2's act(): unclipped noise N(0, std) around the mean, the action clipped to the bounds
        return (mean + self.exploration_std * th.randn_like(mean)).clamp(-1.0, 1.0)

    def set_training_mode(self, mode: bool) -> None:
        # the target critic always stays in eval mode (SB3 PR #553)
        self.features_extractor.train(mode)
        self.actor.set_training_mode(mode)
        self.critic.set_training_mode(mode)
        self.training = mode

    # -- neuron model (sb3_plasticity.neurons) ---------------------------------------------------------------
    def neuron_paths(self) -> list[NetworkPath]:
        """Data-flow paths for :func:`~sb3_plasticity.discover`: the encoder's channels are network ``features``
        (they feed the actor's, the critic's and the target critic's trunks); ``actor`` is ``trunk -> mu``,
        ``critic`` and its twin ``critic_target`` are ``trunk -> qf<i>`` for every Q-network. Re-initialisation
        follows DrQ-v2's init: orthogonal, gain sqrt(2) for convolutions and 1 for linear layers, zero bias."""
        linear = OrthogonalInit(1.0)
        encoder = Stage("features", "features_extractor.cnn", self.features_extractor.cnn, OrthogonalInit(CONV_GAIN))
        paths = [
            NetworkPath(
                (encoder, Stage("actor", "trunk", self.actor.trunk, linear), Stage("actor", "mu", self.actor.mu, linear))
            )
        ]
        for network, critic in (("critic", self.critic), ("critic_target", self.critic_target)):
            for idx, q_net in enumerate(critic.q_networks):
                paths.append(
                    NetworkPath(
                        (encoder, Stage(network, "trunk", critic.trunk, linear), Stage(network, f"qf{idx}", q_net, linear))
                    )
                )
        return paths

    def neuron_network_modules(self) -> dict[str, list[nn.Module]]:
        """The modules of each network (their parameters make the network-level norms; NE pairs ``critic`` with
        ``critic_target`` module by module to copy masks)."""
        return {
            "features": [self.features_extractor],
            "actor": [self.actor],
            "critic": [self.critic],
            "critic_target": [self.critic_target],
        }


class LayerNormDrQV2Policy(DrQV2Policy):
    """:class:`DrQV2Policy` with ``layer_norm=True``: ``Linear -> LayerNorm -> ReLU`` in every hidden layer of the
    actor's MLP and of each Q-network (the target critic too), the output layers without norm; trunks (which already
    have DrQ-v2's LayerNorm) and encoder unchanged. The NE paper's LN-DrQ baseline (App. C: "LayerNorm after the
    hidden layers"). Each norm follows its Linear inside the same Sequential, so neuron discovery counts its
    per-neuron gain and bias in that neuron's group (as for :class:`~sb3_plasticity.LayerNormTD3Policy`)."""

    def __init__(self, *args: Any, layer_norm: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, layer_norm=layer_norm, **kwargs)


class MaskedDrQV2Policy(_Masking, DrQV2Policy):
    """:class:`DrQV2Policy` whose hidden MLP layers are :class:`~sb3_plasticity.MaskedLinear`, for Neuroplastic
    Expansion on DrQ-v2 (NE-DrQ, NE paper Sec. 4.3, App. C).

    With ``dense_first_last=True`` (default) the trunks' ``Linear(repr, 50)`` (the embedding layer: first layer of
    each network) and the output layers stay dense, so the masked layers are the actor's ``mu.0`` (50 -> 1024) and
    ``mu.2`` (1024 -> 1024) and each Q-network's ``qf<i>.0`` ((50 + actions) -> 1024) and ``qf<i>.2``; the encoder
    is never masked (the NE reference's DrQ flag also skips "embedding layer and last layer"). Densities are drawn
    per actor and per Q-network as in :class:`~sb3_plasticity.MaskedTD3Policy`. With ``dense_first_last=False`` the
    critic's shared trunk layer is masked on its own at ``initial_density`` and every layer of each Q-network is
    masked, output included; the actor's layers are all masked.

    :param initial_density: overall density of the masked layers of each network, in (0, 1] (default 0.25, NE
        Sec. 4.1).
    :param mask_distribution: ``"erdos_renyi"`` (default) or ``"uniform"``.
    :param dense_first_last: keep the first (trunk) and last layer of each network dense (default True).
    """

    def make_actor(self, features_extractor: DrQV2Encoder) -> DrQV2Actor:
        actor = super().make_actor(features_extractor)
        self._mask_network([actor.trunk, actor.mu], has_output_after=False)
        return actor

    def make_critic(self, features_extractor: DrQV2Encoder) -> DrQV2Critic:
        critic = super().make_critic(features_extractor)
        if self.dense_first_last:
            # the trunk is each Q-network's first layer: skipped (dense) by every call, converted by none
            for q_net in critic.q_networks:
                self._mask_network([critic.trunk, q_net], has_output_after=False)
        else:
            self._mask_network([critic.trunk], has_output_after=True)
            for q_net in critic.q_networks:
                self._mask_network([q_net], has_output_after=False)
        return critic
