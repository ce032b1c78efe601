"""ResNet-SAC: SAC whose actor and Q-networks are residual MLPs (GraMa paper Sec. 4.1, Fig. 4(a)).

The paper runs "Resnet-SAC [Shah and Kumar, 2021]" on state Dog Walk with CleanRL's SAC (App. A.3: "We utilize
CleanRL for SAC (also Resnet SAC) implementation") and says no more about its layers. Shah and Kumar's RRL puts a
pretrained ResNet-34 *image* encoder in front of an RL agent, which does not apply to a state task; CleanRL has no
ResNet SAC. We read it as CleanRL's SAC (Table 6: 256-wide hidden layers, ReLU) with the hidden layers made residual,
the multi-branch structure Sec. 4.1 (i) is about:

- **stem** ``Linear(input_dim, width) -> activation``;
- ``n`` :class:`ResidualBlock` ``x + Linear(activation(Linear(x)))`` (two branches, the identity and the two-layer
  MLP, fused by a sum), no normalisation (CleanRL's SAC has none; BRO-net is the LayerNorm variant);
- the output layer(s) (SAC's ``mu``/``log_std``, the Q head).

The skip is the identity and no activation follows the sum, so the residual stream stays linear and the neuron
model is the BRO-net one (``docs/networks.md``): the stem's neurons are read by every block's first layer and by the
output layers; each block's first layer is a neuron group read by the block's second layer, whose output joins the
stream and is not a neuron. ReDo scores the stem's neurons on their own activation, before the blocks add to the
stream, so an activation-silent stem neuron can still matter through the stream's fused value: the misalignment
Fig. 2(a) draws.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from sb3_plasticity.checks import check_int
from sb3_plasticity.networks import (
    BRO_BLOCKS,
    BroNet,
    Route,
    _off_policy_network_modules,
    _off_policy_paths,
    _replace_q_networks,
)
from sb3_plasticity.neurons import NetworkPath

__all__ = ["ResNetMlp", "ResNetSACPolicy", "ResidualBlock"]


class ResidualBlock(nn.Module):
    """``x + Linear(activation(Linear(x)))``; ``net`` is ``Sequential(Linear, activation, Linear)``.

    :param width: input, hidden and output features.
    :param activation_fn: activation class (default ``nn.ReLU``, CleanRL's).
    """

    def __init__(self, width: int, activation_fn: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), activation_fn(), nn.Linear(width, width))

    def forward(self, x):
        return x + self.net(x)


class ResNetMlp(BroNet):
    """A residual MLP: ``stem = Linear(input_dim, width) -> activation``, ``n_blocks`` :class:`ResidualBlock`, an
    optional output layer ``head``. Structure, ``forward`` and ``routes`` (the neuron declaration) are
    :class:`~sb3_plasticity.BroNet`'s without its LayerNorms.

    :param input_dim: input features.
    :param width: width of the stem and the blocks (default 256, CleanRL's SAC).
    :param n_blocks: residual blocks.
    :param activation_fn: activation class (default ``nn.ReLU``).
    :param output_dim: features of the output layer; 0 for none (SAC's actor).
    """

    def __init__(
        self,
        input_dim: int,
        width: int = 256,
        n_blocks: int = 1,
        activation_fn: type[nn.Module] = nn.ReLU,
        output_dim: int = 0,
    ) -> None:
        nn.Module.__init__(self)
        self.stem = nn.Sequential(nn.Linear(input_dim, width), activation_fn())
        self.blocks = nn.Sequential(*(ResidualBlock(width, activation_fn) for _ in range(n_blocks)))
        self.head = nn.Linear(width, output_dim) if output_dim > 0 else None
        self.squash = nn.Identity()


class ResNetSACPolicy(SACPolicy):
    """ResNet-SAC (GraMa Fig. 4(a); see the module docstring for what we build and why): SB3's ``SACPolicy`` whose
    actor trunk is ``latent_pi = ResNetMlp(features, width, actor_blocks)`` (then SB3's ``mu``/``log_std`` and
    squashed Gaussian) and whose Q-networks are ``ResNetMlp([features, actions], width, critic_blocks, output_dim=1)``.
    Neurons are declared (``neuron_paths``): the stems and every block's first layer; output layers are consumers.
    ``net_arch`` is not accepted (the width and block counts size the networks); other SAC kwargs are
    (``activation_fn``, ``n_critics``, ``features_extractor_class``, ...).

    :param width: width of every hidden layer (default 256, CleanRL's SAC, GraMa Table 6).
    :param actor_blocks: residual blocks of the actor, 1 to 4 (default 1: stem + one block = three hidden layers,
        one more than CleanRL's two).
    :param critic_blocks: residual blocks of each Q-network, 1 to 4 (default 1).
    """

    def __init__(self, *args: Any, width: int = 256, actor_blocks: int = 1, critic_blocks: int = 1, **kwargs: Any):
        self.width = check_int("width", width, 1)
        self.actor_blocks = check_int("actor_blocks", actor_blocks, BRO_BLOCKS[0], BRO_BLOCKS[-1])
        self.critic_blocks = check_int("critic_blocks", critic_blocks, BRO_BLOCKS[0], BRO_BLOCKS[-1])
        if kwargs.get("net_arch") is not None:
            raise ValueError(
                f"net_arch={kwargs['net_arch']!r}: ResNetSACPolicy is sized by width, actor_blocks and critic_blocks, "
                "not net_arch"
            )
        kwargs["net_arch"] = [self.width]  # SB3 sizes mu and log_std from net_arch[-1]
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["net_arch"] = None
        data.update(width=self.width, actor_blocks=self.actor_blocks, critic_blocks=self.critic_blocks)
        return data

    def make_actor(self, features_extractor=None):
        actor = super().make_actor(features_extractor)
        actor.latent_pi = ResNetMlp(actor.features_dim, self.width, self.actor_blocks, self.activation_fn).to(self.device)
        return actor

    def make_critic(self, features_extractor=None):
        critic = super().make_critic(features_extractor)
        input_dim = critic.features_extractor.features_dim + get_action_dim(critic.action_space)
        _replace_q_networks(
            critic,
            lambda: ResNetMlp(input_dim, self.width, self.critic_blocks, self.activation_fn, output_dim=1).to(self.device),
        )
        return critic

    def _routes(self, network: str, net: nn.Module) -> list[Route]:
        if network.startswith("actor"):
            heads = [("mu", net.mu)] + ([("log_std", net.log_std)] if isinstance(net.log_std, nn.Module) else [])
            return net.latent_pi.routes("latent_pi", heads)
        return [route for i, q_net in enumerate(net.q_networks) for route in q_net.routes(f"qf{i}")]

    def neuron_paths(self) -> list[NetworkPath]:
        """Neuron declaration for :func:`~sb3_plasticity.neurons.discover`: the stem and each block's first layer of
        every network (the critic target included, linked to its twin by name); output layers are consumers."""
        return _off_policy_paths(self, self._routes)

    def neuron_network_modules(self) -> dict[str, list[nn.Module]]:
        return _off_policy_network_modules(self)
