"""Per-neuron ReDo and GraMa scores of a model, from a training pass of the algorithm's own loss.

``s_i = E|h_i| / mean_k E|h_k|`` (ReDo, GraMa Eq. 1) and ``G_i = E|dL/dz_i| / mean_k E|dL/dz_k|`` (GraMa Eq. 2, with
``z`` the pre-activation, see :mod:`sb3_plasticity.capture`) are computed with :mod:`sb3_plasticity.metrics` from a
:class:`~sb3_plasticity.capture.Capture`'s records, exactly as ``ReDoCallback`` and ``GraMaResetCallback`` score.
"""

from __future__ import annotations

import contextlib
import copy
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch as th

from sb3_plasticity.capture import Capture, GroupRecord, buffer_ready, probe, sample_batch, training_batch_size
from sb3_plasticity.metrics import activity, normalized_scores
from sb3_plasticity.neurons import NeuronGroup, NeuronModel, discover

__all__ = [
    "NeuronScores",
    "acting_networks",
    "activation_scores",
    "network_scores",
    "restored",
    "scores_from_records",
    "training_pass_scores",
]


@dataclass(eq=False)
class NeuronScores:
    """The scores of one neuron group (CPU tensors of shape ``(neurons,)``).

    :param activation: normalised activation score ``s_i`` (ReDo).
    :param gradient: normalised gradient score ``G_i`` (GraMa), None when no gradient was recorded.
    :param activation_raw: ``E|h_i|``.
    :param gradient_raw: ``E|dL/dz_i|`` (or None).
    :param alive: neurons that exist in the current topology (None: all).
    """

    group: NeuronGroup
    activation: th.Tensor
    gradient: th.Tensor | None
    activation_raw: th.Tensor
    gradient_raw: th.Tensor | None
    alive: th.Tensor | None = None

    @property
    def network(self) -> str:
        return self.group.network

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def key(self) -> str:
        return self.group.key

    def score(self, kind: str) -> th.Tensor:
        """``"redo"``/``"activation"``: :attr:`activation`; ``"grama"``/``"gradient"``: :attr:`gradient`."""
        if kind in ("redo", "activation"):
            return self.activation
        if kind in ("grama", "gradient"):
            if self.gradient is None:
                raise ValueError(f"no gradient was recorded for {self.key}: the GraMa score needs a training pass")
            return self.gradient
        raise ValueError(f"score must be 'redo' or 'grama', got {kind!r}")

    def alive_mask(self) -> th.Tensor:
        n = self.activation.numel()
        return th.ones(n, dtype=th.bool) if self.alive is None else self.alive


def scores_from_records(groups: Sequence[NeuronGroup], records: Mapping[NeuronGroup, GroupRecord]) -> list[NeuronScores]:
    """:class:`NeuronScores` of ``groups`` from a capture's records (groups without a recorded activation are left
    out)."""
    out = []
    for g in groups:
        rec = records.get(g)
        if rec is None or rec.activation is None:
            continue
        alive = g.alive()
        alive_cpu = None if alive is None else alive.detach().cpu()
        act = activity(rec.activation)
        grad = activity(rec.grad) if rec.grad is not None else None
        out.append(
            NeuronScores(
                g,
                normalized_scores(act, None if alive is None else alive.to(act.device)).detach().cpu(),
                None if grad is None else normalized_scores(grad, None if alive is None else alive.to(grad.device)).cpu(),
                act.detach().cpu(),
                None if grad is None else grad.detach().cpu(),
                alive_cpu,
            )
        )
    return out


def network_scores(scores: Sequence[NeuronScores]) -> dict[str, list[NeuronScores]]:
    """The scores grouped by network, in the given order."""
    out: dict[str, list[NeuronScores]] = {}
    for s in scores:
        out.setdefault(s.network, []).append(s)
    return out


def acting_networks(neurons: NeuronModel) -> list[str]:
    """The trainable networks that choose the actions: every trainable network but ``critic`` and ``value``
    (``actor``, ``policy``, and ``features`` when the extractor is shared)."""
    return [n for n in neurons.trainable_networks if n not in ("critic", "value")]


def _groups(neurons: NeuronModel, networks: str | Sequence[str] | None) -> list[NeuronGroup]:
    names = neurons.trainable_networks if networks is None else ([networks] if isinstance(networks, str) else list(networks))
    targets = [n for n in names if n in neurons.networks and n not in neurons.trainable_networks]
    if targets:
        raise ValueError(f"networks={names!r}: {targets!r} are target networks, which get no gradient")
    return neurons.select(names, targets=False)


# ----------------------------------------------------------------------------------------------------------------
# A training pass that leaves no trace
# ----------------------------------------------------------------------------------------------------------------
def _optimizers(model) -> list[th.optim.Optimizer]:
    found: list[th.optim.Optimizer] = []
    policy = getattr(model, "policy", None)
    objects = [model] + ([policy, *policy.modules()] if policy is not None else [])
    for obj in objects:
        for value in vars(obj).values():
            if isinstance(value, th.optim.Optimizer) and all(value is not o for o in found):
                found.append(value)
    return found


@contextlib.contextmanager
def restored(model) -> Iterator[None]:
    """Run code on an SB3 model and put everything back afterwards: the policy's parameters and buffers, every
    optimizer's state (and learning rates), tensors held by the algorithm (SAC's ``log_ent_coef``), ``_n_updates``,
    the logger and the NumPy / Python / torch random generators. The replay or rollout buffer is only read."""
    from stable_baselines3.common.logger import Logger

    policy = model.policy
    policy_state = copy.deepcopy(policy.state_dict())
    optimizers = _optimizers(model)
    opt_states = [copy.deepcopy(o.state_dict()) for o in optimizers]
    tensors = {k: v.detach().clone() for k, v in vars(model).items() if isinstance(v, th.Tensor)}
    n_updates = getattr(model, "_n_updates", None)
    had_logger = "_logger" in vars(model)
    old_logger = vars(model).get("_logger")
    custom = getattr(model, "_custom_logger", False)
    rng = (np.random.get_state(), random.getstate(), th.get_rng_state())
    cuda_rng = th.cuda.get_rng_state_all() if th.cuda.is_available() and th.cuda.is_initialized() else None
    model._logger = Logger(folder=None, output_formats=[])  # SB3's train() logs; nothing reaches the user's logs
    try:
        yield
    finally:
        with th.no_grad():
            policy.load_state_dict(policy_state)
            for name, value in tensors.items():
                getattr(model, name).copy_(value)
        for opt, state in zip(optimizers, opt_states, strict=True):
            opt.load_state_dict(state)
        for p in policy.parameters():
            p.grad = None
        if n_updates is not None:
            model._n_updates = n_updates
        if had_logger:
            model._logger = old_logger
        else:
            del model._logger
        model._custom_logger = custom
        policy.set_training_mode(False)
        np.random.set_state(rng[0])
        random.setstate(rng[1])
        th.set_rng_state(rng[2])
        if cuda_rng is not None:
            th.cuda.set_rng_state_all(cuda_rng)


def training_pass_scores(
    model, networks: str | Sequence[str] | None = None, max_passes: int = 8, neurons: NeuronModel | None = None
) -> list[NeuronScores]:
    """ReDo and GraMa scores of every hidden neuron of ``networks`` (default: all trainable networks), recorded on
    a training pass of the algorithm's own loss, after which the model is restored (:func:`restored`): the scores
    come from a real update's batch and loss, and the model is as if nothing had run.

    Off-policy algorithms run ``train(1, batch_size)`` until every network was recorded (TD3's delayed actor update
    takes up to ``policy_delay`` passes); on-policy algorithms run one ``train()`` on the (full) rollout buffer, whose
    first minibatch is recorded.

    :raises RuntimeError: when there is no data to train on (an empty replay buffer: a loaded model needs
        ``model.load_replay_buffer(...)``), or the networks were not all recorded after ``max_passes`` passes.
    """
    neurons = neurons or discover(model)
    groups = _groups(neurons, networks)
    if not buffer_ready(model):
        raise RuntimeError(
            f"{type(model).__name__} has no data to run a training pass on (empty replay buffer or rollout buffer not "
            "full): train it first, load its replay buffer (model.load_replay_buffer), or pass precomputed scores"
        )
    capture = Capture(neurons, groups, gradients=True)
    off_policy = getattr(model, "replay_buffer", None) is not None
    with restored(model):
        capture.arm()
        try:
            for _ in range(max_passes if off_policy else 1):
                if off_policy:
                    model.train(gradient_steps=1, batch_size=model.batch_size)
                else:
                    model.train()
                if capture.complete:
                    break
        finally:
            capture.disarm()
    missing = [g.key for g in groups if not capture.group_complete(g)]
    if missing:
        raise RuntimeError(f"no gradient reached {missing} in {max_passes} training passes")
    return scores_from_records(groups, capture.records)


def activation_scores(
    model, networks: str | Sequence[str] | None = None, batch_size: int | None = None, neurons: NeuronModel | None = None
) -> list[NeuronScores]:
    """ReDo scores only, on a forward pass over a batch from the replay / rollout buffer (the algorithm's
    ``batch_size`` by default, like ``ReDoCallback``); nothing is trained. ``gradient`` is None."""
    neurons = neurons or discover(model)
    groups = _groups(neurons, networks)
    capture = Capture(neurons, groups, gradients=False)
    size = training_batch_size(model) if batch_size is None else batch_size
    state = np.random.get_state()  # sampling draws from NumPy's global generator, like SB3's: leave it as it was
    try:
        batch = sample_batch(model, size)
    finally:
        np.random.set_state(state)
    probe(model, capture, batch=batch)
    return scores_from_records(groups, capture.records)
