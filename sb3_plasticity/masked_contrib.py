"""Masked policies (dynamic sparse training, Neuroplastic Expansion) for DQN and sb3-contrib's TQC and QR-DQN.

Like :mod:`sb3_plasticity.policies`, each class is the algorithm's own policy whose hidden ``nn.Linear`` layers
become :class:`~sb3_plasticity.topology.MaskedLinear` before the optimizer exists, with the same kwargs
(``initial_density``, ``mask_distribution``, ``dense_first_last``). This module imports ``sb3_contrib``; import it
only when those algorithms are used.

- :class:`MaskedTQCPolicy`: TQC's SAC-style actor (``latent_pi``; ``mu`` and ``log_std`` are the dense output layers)
  and every quantile Q-network (first and last layer dense); the target critic copies the masks.
- :class:`MaskedDQNPolicy` / :class:`MaskedQRDQNPolicy`: the MLP of ``q_net`` (``quantile_net``), first and last layer
  dense; ``q_net_target`` is built as a copy of ``q_net`` (SB3's ``load_state_dict``), masks included.

DQN has no actor/critic split: its one trained network ``q_net`` is both the policy (greedy action) and the value
estimate. :class:`~sb3_plasticity.NeuroplasticExpansionCallback` grows and prunes ``q_net`` (its default
``networks``: every network with masked layers) and gives ``q_net_target`` the online masks. NE's experience review
measures the *critic*'s active-neuron ratio (NE Sec. 3.3); a DQN has no network called ``critic``, so the review has
nothing to read: use SB3's default replay buffer with DQN.
"""

from __future__ import annotations

from sb3_contrib.qrdqn.policies import QRDQNPolicy
from sb3_contrib.tqc.policies import TQCPolicy
from stable_baselines3.dqn.policies import DQNPolicy

from sb3_plasticity.policies import _MaskedOffPolicy, _Masking

__all__ = ["MaskedDQNPolicy", "MaskedQRDQNPolicy", "MaskedTQCPolicy"]


class MaskedTQCPolicy(_MaskedOffPolicy, TQCPolicy):
    """sb3-contrib's ``TQCPolicy`` with maskable hidden layers in the actor (``latent_pi``) and in each quantile
    Q-network; the parameters are those of :class:`~sb3_plasticity.MaskedTD3Policy`.

    :param initial_density: overall density of the masked layers of each network, in (0, 1] (default 0.25).
    :param mask_distribution: ``"erdos_renyi"`` (default) or ``"uniform"``.
    :param dense_first_last: keep the first and last layer of each network dense (default True).
    """

    actor_part = "latent_pi"
    actor_output_after = True  # mu and log_std are the output layers


class _MaskedQNetwork(_Masking):
    """DQN / QR-DQN: the MLP ``<net_attr>`` of each Q-network built by ``make_<net_attr>`` is masked (first and last
    layer dense); the target network gets the online network's masks when SB3 copies its state dict."""

    net_attr: str

    def _mask_q_net(self, q_net):
        self._mask_network([getattr(q_net, self.net_attr)], has_output_after=False)
        return q_net


class MaskedDQNPolicy(_MaskedQNetwork, DQNPolicy):
    """SB3's ``DQNPolicy`` with maskable hidden layers in ``q_net`` (and ``q_net_target``, a copy); the parameters
    are those of :class:`~sb3_plasticity.MaskedTD3Policy`. With ``net_arch=[h1, h2]`` the ``h1 -> h2`` layer is
    masked (the first and last layers stay dense by default)."""

    net_attr = "q_net"

    def make_q_net(self):
        return self._mask_q_net(super().make_q_net())


class MaskedQRDQNPolicy(_MaskedQNetwork, QRDQNPolicy):
    """sb3-contrib's ``QRDQNPolicy`` with maskable hidden layers in ``quantile_net`` (and its target); parameters as
    :class:`MaskedDQNPolicy`."""

    net_attr = "quantile_net"

    def make_quantile_net(self):
        return self._mask_q_net(super().make_quantile_net())
