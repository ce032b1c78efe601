"""Injectable policies (plasticity injection's heads kept through ``save`` / ``load``) of sb3-contrib's TQC, CrossQ
and QR-DQN; see :mod:`sb3_plasticity.injectable_policies`. This module imports ``sb3_contrib``: it is loaded only
when one of these classes is used (``sb3_plasticity.InjectableTQCPolicy`` loads it on first access), or when a
model built with ``TQC("MlpPolicy", ...)`` (CrossQ, QR-DQN) is injected and takes the class below.

- :class:`InjectableTQCPolicy`: heads are the actor's ``mu`` and ``log_std`` and the output layer of every quantile
  Q-network (the target critic follows);
- :class:`InjectableCrossQPolicy`: the actor's ``mu`` and ``log_std`` and every Q-network's output layer (CrossQ has
  no target network);
- :class:`InjectableQRDQNPolicy`: the output layer of ``quantile_net`` (and of ``quantile_net_target``).
"""

from __future__ import annotations

from sb3_contrib.crossq.policies import CrossQPolicy
from sb3_contrib.qrdqn.policies import QRDQNPolicy
from sb3_contrib.tqc.policies import TQCPolicy

from sb3_plasticity.injectable_policies import InjectablePolicy

__all__ = ["InjectableCrossQPolicy", "InjectableQRDQNPolicy", "InjectableTQCPolicy"]


class InjectableTQCPolicy(InjectablePolicy, TQCPolicy):
    """sb3-contrib's ``TQCPolicy`` whose injected heads survive ``save`` / ``load``."""


class InjectableCrossQPolicy(InjectablePolicy, CrossQPolicy):
    """sb3-contrib's ``CrossQPolicy`` whose injected heads survive ``save`` / ``load``."""


class InjectableQRDQNPolicy(InjectablePolicy, QRDQNPolicy):
    """sb3-contrib's ``QRDQNPolicy`` whose injected heads survive ``save`` / ``load``."""
