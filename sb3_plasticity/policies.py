"""SB3's own TD3, SAC and actor-critic (PPO/A2C) policies with maskable hidden layers (NE paper, Sec. 3.2).

``TD3(MaskedTD3Policy, env)`` builds SB3's TD3 policy and turns the hidden ``nn.Linear`` layers of every network
into :class:`~sb3_plasticity.topology.MaskedLinear` *in place, before the optimizers exist* (so they, the target
copies and ``save``/``load`` see the masked layers), then draws random masks:

- the first and the last layer of each network stay dense (NE Sec. 3.2 (iii), ``dense_first_last=True``);
  biases are never masked;
- the masked layers of a network start at ``initial_density`` overall (default 0.25: NE Sec. 4.1, App. F.3,
  starting sparsity 0.75), distributed across them Erdos-Renyi (``mask_distribution="erdos_renyi"``) or with the
  same density everywhere (``"uniform"``). The density counts the maskable weights only: first and last layers
  are dense by design and not part of the budget;
- target networks start with the online masks (SB3 copies the state dict, buffers included).

Growing and pruning the masks is the job of the Neuroplastic Expansion callback (not part of this module). A masked
policy trained without it is a fixed sparse network: at its first training pass (``set_training_mode(True)``) it
warns (``UserWarning``) when no :class:`~sb3_plasticity.NeuroplasticExpansionCallback` runs on its model.
These "masked" policies are unrelated to sb3-contrib's ``MaskableActorCriticPolicy`` (invalid-action masking).

**Optimizer.** When the user passes neither ``optimizer_class`` nor ``optimizer_kwargs`` (SB3's default Adam), the
masked policies build ``Adam(..., fused=True)`` (PyTorch >= 2.4, whose fused kernel runs on CPU as well as CUDA, MPS
and XPU): the same update rule in one kernel call, equal to SB3's default Adam up to floating-point rounding. Why:
the gradient of a masked weight is exactly zero, so Adam's second moments of the masked entries (75% at the starting
density) stay exact zeros (those of pruned connections decay through the denormals), and the CPU Adam that SB3 gets
by default (the per-tensor loop; ``foreach=True`` is no better on CPU) takes ``torch.sqrt`` of them at every step.
On CPU that ``sqrt`` goes through MKL's vector math for float32 (ATen's VML path), measured ~6x slower on exact zeros
and ~40x on denormals than on positive numbers (AMD EPYC, flush-to-zero or not), while numpy's ``sqrt``, bfloat16's
and the fused kernel's own vectorised one are not; ``benchmarks/bench_adam_kernel.py``. Any ``optimizer_class`` or
``optimizer_kwargs`` given by the user (``optimizer_kwargs={}`` too) is used as given. The ``fused=True`` chosen here
is part of ``optimizer_kwargs``, so of the policy's saved constructor parameters, and of the optimizer's state dict
(``model.save`` / ``load`` keep it).
"""

from __future__ import annotations

import re
import warnings
from operator import attrgetter
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from sb3_plasticity.checks import check_bool, check_choice, check_fraction
from sb3_plasticity.networks import MultiHeadSACPolicy, MultiHeadTD3Policy
from sb3_plasticity.topology import MaskedLinear, erdos_renyi_densities, random_mask

__all__ = [
    "MaskedActorCriticPolicy",
    "MaskedMultiHeadSACPolicy",
    "MaskedMultiHeadTD3Policy",
    "MaskedSACPolicy",
    "MaskedTD3Policy",
]

DISTRIBUTIONS = ("erdos_renyi", "uniform")


def fused_adam_available() -> bool:
    """Whether this PyTorch has a fused Adam kernel for CPU (PyTorch >= 2.4; CUDA has had one since 2.0)."""
    major, minor = (int(v) for v in re.findall(r"\d+", th.__version__)[:2])
    return (major, minor) >= (2, 4)


class _Masking:
    """What the three policies share: their kwargs, the in-place conversion and the initial masks.

    :param initial_density: overall density of the masked layers of each network, in (0, 1] (default 0.25).
    :param mask_distribution: ``"erdos_renyi"`` (default) or ``"uniform"``.
    :param dense_first_last: keep the first and last layer of each network dense (default True).

    Without ``optimizer_class`` and ``optimizer_kwargs`` (keyword arguments, as SB3 passes ``policy_kwargs``), the
    optimizers are ``Adam(fused=True)`` where PyTorch has the kernel (module docstring, "Optimizer").
    """

    initial_density: float
    mask_distribution: str
    dense_first_last: bool
    optimizer_class: type[th.optim.Optimizer]
    optimizer_kwargs: dict[str, Any]

    def __init__(
        self,
        *args: Any,
        initial_density: float = 0.25,
        mask_distribution: str = "erdos_renyi",
        dense_first_last: bool = True,
        **kwargs: Any,
    ) -> None:
        # set before SB3's __init__, which builds the networks (make_actor / _build_mlp_extractor) right away
        self._set_masking(initial_density, mask_distribution, dense_first_last)
        # nobody chose the optimizer: SB3's default Adam, made fused in _build (SB3 sets its own defaults first,
        # e.g. ActorCriticPolicy's eps=1e-5, which stay)
        self._default_optimizer = "optimizer_class" not in kwargs and kwargs.get("optimizer_kwargs") is None
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Schedule) -> None:
        # every policy family builds its optimizers in _build, called at the end of SB3's __init__
        if self._default_optimizer and self.optimizer_class is th.optim.Adam and fused_adam_available():
            self.optimizer_kwargs = {**self.optimizer_kwargs, "fused": True}
        super()._build(lr_schedule)  # type: ignore[misc]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self._masking_kwargs()}

    def set_training_mode(self, mode: bool) -> None:
        # SB3 calls it with True at the start of every train(): the first one is the masks' first use in training
        if mode and not getattr(self, "_growth_checked", False):
            self._growth_checked = True
            self._warn_without_growth()
        super().set_training_mode(mode)

    def _warn_without_growth(self) -> None:
        from sb3_plasticity.methods.base import active_callbacks
        from sb3_plasticity.methods.neuroplastic_expansion import NeuroplasticExpansionCallback

        if any(isinstance(cb, NeuroplasticExpansionCallback) for cb in active_callbacks(self)):
            return
        warnings.warn(
            f"{type(self).__name__} is trained without a NeuroplasticExpansionCallback: its masks never grow or "
            f"prune, so it trains as a fixed sparse network (density {self.initial_density:g}). Add "
            "NeuroplasticExpansionCallback() to learn()'s callbacks (or ignore this warning if a static sparse "
            "network is what you want).",
            UserWarning,
        )

    def _set_masking(self, initial_density: float, mask_distribution: str, dense_first_last: bool) -> None:
        self.initial_density = check_fraction("initial_density", initial_density, allow_none=False)
        self.mask_distribution = check_choice("mask_distribution", mask_distribution, DISTRIBUTIONS)
        self.dense_first_last = check_bool("dense_first_last", dense_first_last)

    def _masking_kwargs(self) -> dict[str, Any]:
        return dict(
            initial_density=self.initial_density,
            mask_distribution=self.mask_distribution,
            dense_first_last=self.dense_first_last,
        )

    def _mask_network(self, sequentials: list[nn.Sequential], has_output_after: bool) -> list[MaskedLinear]:
        """Convert the Linear layers of one network's Sequentials (in data-flow order) and draw its masks.

        :param has_output_after: the network's output layer comes after these Sequentials (SAC's mu/log_std,
            PPO's action/value nets), so their last Linear is hidden, not the last layer.
        """
        slots = [(seq, i) for seq in sequentials for i, m in enumerate(seq) if isinstance(m, nn.Linear)]
        if self.dense_first_last:
            slots = slots[1:] if has_output_after else slots[1:-1]
        layers = []
        for seq, i in slots:
            seq[i] = MaskedLinear.from_linear(seq[i])
            layers.append(seq[i])
        if layers:
            shapes = [tuple(layer.weight.shape) for layer in layers]
            if self.mask_distribution == "erdos_renyi":
                densities = erdos_renyi_densities(shapes, self.initial_density)
            else:
                densities = [self.initial_density] * len(layers)
            for layer, density in zip(layers, densities, strict=True):
                layer.set_mask(random_mask(tuple(layer.weight.shape), density, device=layer.weight.device))
        return layers


class _MaskedOffPolicy(_Masking):
    """The masked actor and critic of TD3 / SAC: which ``nn.Sequential`` of each network is masked.

    :cvar actor_part: attribute path of the actor's hidden layers (``mu``, ``latent_pi``, ``mu.trunk``).
    :cvar actor_output_after: the actor's output layers come after ``actor_part`` (SAC's ``mu``/``log_std``, the
        task heads), so its last Linear is hidden.
    :cvar critic_part: attribute of each Q-network holding its layers (None: the Q-network itself; ``trunk`` for
        multi-head Q-networks, whose task heads are the output layers).
    """

    actor_part: ClassVar[str]
    actor_output_after: ClassVar[bool]
    critic_part: ClassVar[str | None] = None

    def make_actor(self, features_extractor=None):
        actor = super().make_actor(features_extractor)
        self._mask_network([attrgetter(self.actor_part)(actor)], has_output_after=self.actor_output_after)
        return actor

    def make_critic(self, features_extractor=None):
        critic = super().make_critic(features_extractor)
        for q_net in critic.q_networks:  # each Q-network is a network of its own: first and last layer dense
            part = q_net if self.critic_part is None else getattr(q_net, self.critic_part)
            self._mask_network([part], has_output_after=self.critic_part is not None)
        return critic


class MaskedTD3Policy(_MaskedOffPolicy, TD3Policy):
    """SB3's ``TD3Policy`` (also for DDPG) with maskable hidden layers; see the module docstring.

    :param initial_density: overall density of the masked layers of each network, in (0, 1] (default 0.25).
    :param mask_distribution: ``"erdos_renyi"`` (default) or ``"uniform"``.
    :param dense_first_last: keep the first and last layer of each network dense (default True).
    """

    actor_part = "mu"
    actor_output_after = False


class MaskedSACPolicy(_MaskedOffPolicy, SACPolicy):
    """SB3's ``SACPolicy`` with maskable hidden layers; the parameters are those of :class:`MaskedTD3Policy`."""

    actor_part = "latent_pi"
    actor_output_after = True  # mu and log_std are the output layers


class MaskedActorCriticPolicy(_Masking, ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (PPO, A2C) with maskable hidden layers in ``mlp_extractor``'s policy and value
    branches (``action_net`` and ``value_net`` are the dense output layers); parameters as :class:`MaskedTD3Policy`.
    """

    def _build_mlp_extractor(self) -> None:
        super()._build_mlp_extractor()
        self._mask_network([self.mlp_extractor.policy_net], has_output_after=True)
        self._mask_network([self.mlp_extractor.value_net], has_output_after=True)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        # SB3's orthogonal init ran after the conversion and refilled the masked weights: zero them again
        for module in self.modules():
            if isinstance(module, MaskedLinear):
                module.apply_mask()


class MaskedMultiHeadTD3Policy(_MaskedOffPolicy, MultiHeadTD3Policy):
    """:class:`~sb3_plasticity.MultiHeadTD3Policy` (a shared trunk, one output layer per task) with maskable trunk
    layers, for Neuroplastic Expansion on the continual sequence (NE Sec. 4.2, Fig. 8): the trunk's first layer and
    the task heads stay dense. Takes the multi-head kwargs and those of :class:`MaskedTD3Policy`."""

    actor_part = "mu.trunk"
    actor_output_after = True  # the task heads are the output layers
    critic_part = "trunk"


class MaskedMultiHeadSACPolicy(_MaskedOffPolicy, MultiHeadSACPolicy):
    """:class:`~sb3_plasticity.MultiHeadSACPolicy` with maskable trunk layers; see :class:`MaskedMultiHeadTD3Policy`."""

    actor_part = "latent_pi"
    actor_output_after = True
    critic_part = "trunk"
