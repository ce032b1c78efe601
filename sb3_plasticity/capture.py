"""Layer 2: capture of neuron statistics during the algorithm's own training pass.

A :class:`Capture` is *armed* by a method when it needs data. While armed, forward hooks on each group's
output module record the first neuron output ``h`` that takes part in a gradient computation (SB3 runs
rollouts, ``predict`` and evaluation under ``th.no_grad()``, so those forwards are not counted), and a
tensor hook on the activation's input in that same forward records ``dL/dz``, the gradient of the
training loss w.r.t. the neuron's pre-activation ``z`` (the norm's output if the group has a norm, else
the producer's output).

Why ``dL/dz`` for GraMa (paper Eq. 2 writes ``grad_h L``): the proof of the paper's Theorem 1 takes the
gradient through the activation's derivative, and the official code scores ``|dL/dW|`` of the incoming
weights, which is ``dL/dz`` times the inputs. Both are the signal that reaches the neuron's own
parameters: zero exactly for a dead ReLU neuron. The gradient after the activation is not: it is
``W_out^T delta`` whatever the neuron's state. With a norm, ``z`` is the norm's output (the activation's
input, as in the theorem; the official code's LayerNorm score ``|dL/dgamma_i|`` is taken there too): before
the norm, LayerNorm's statistics would leak every other neuron's gradient into a neuron whose own output
no longer affects the loss. When the
optimizer owning a network is about to step, the network's parameter gradients are read (in PPO/A2C
after SB3's gradient clipping). Once every group has what it needs the capture is *complete*; the method
reads :attr:`Capture.records` and calls :meth:`Capture.disarm`, which removes every hook, so nothing
runs between events and no algorithm's loss code is copied.

Which pass is recorded (the first gradient-enabled forward after arming, for each group):

- TD3/DDPG and SAC critic: the critic-loss pass (it precedes the actor-loss pass in every gradient step,
  and the actor-loss forward through the critic comes after the group has been recorded).
- TD3/DDPG and SAC actor: the actor-loss pass. SAC target networks and TD3 target networks run only
  inside ``train()`` under ``no_grad``; their first forward after arming (the TD target) is recorded.
- PPO/A2C: the first minibatch of the next ``train()``.
- TQC: as SAC. CrossQ (no target network): the critic's first gradient-enabled forward is its joint pass over
  ``[observations, next_observations]`` (twice the batch, BatchRenorm in training mode); the actor's is the
  actor-loss pass.
- DQN / QR-DQN: ``q_net`` (``quantile_net``): the TD-loss pass; the target network's first forward after arming
  (the TD target, under ``no_grad``).

:func:`probe` runs the same recording on demand, on a batch from the replay or rollout buffer.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch as th
from torch import nn

from sb3_plasticity.adapters import adapter_for, evaluation_mode
from sb3_plasticity.hooks import OBSERVE, step_hooks
from sb3_plasticity.neurons import NeuronGroup, NeuronModel

# Set while a probe (an on-demand measurement pass of one capture) runs. Other armed captures must not count its
# forwards: they are not the algorithm's training pass, and ``no_grad`` does not tell them apart, because SB3's critics
# re-enable gradients for their own features extractor (``th.set_grad_enabled(not share_features_extractor)``).
_PROBING: contextvars.ContextVar[bool] = contextvars.ContextVar("sb3_plasticity_probing", default=False)

__all__ = [
    "Capture",
    "GroupRecord",
    "NetworkGradients",
    "buffer_ready",
    "forward_networks",
    "is_finite",
    "measurement_pass",
    "probe",
    "sample_batch",
    "training_batch_size",
]


@dataclass
class GroupRecord:
    """What one armed pass recorded for a group.

    :param activation: neuron outputs ``h`` (after norm and activation), shape ``(batch, neurons, *spatial)``,
        detached.
    :param grad: ``dL/dz``, the loss gradient at the activation's input (the norm's output, else the producer's
        output), same shape, or None when no gradient reached it.
    """

    activation: th.Tensor | None = None
    grad: th.Tensor | None = None
    grad_hooked: bool = False
    weight_grad: th.Tensor | None = None  # mean |dL/dW| over each neuron's incoming weights, (neurons,)

    def finite(self) -> bool:
        """Whether every recorded tensor is free of NaN and inf (a diverging network fails this)."""
        return all(is_finite(t) for t in (self.activation, self.grad, self.weight_grad))


def is_finite(x: th.Tensor | float | None) -> bool:
    """True when ``x`` (a tensor, a number or None) holds no NaN and no inf."""
    if x is None:
        return True
    if isinstance(x, th.Tensor):
        return bool(th.isfinite(x).all()) if x.is_floating_point() else True
    return math.isfinite(float(x))


@dataclass
class NetworkGradients:
    """Parameter gradients of one network, read just before its optimizer stepped.

    :param total_sq: sum of squared gradients over all the network's parameters.
    :param layer_norms: L2 norm of each group's producer weight gradient, by group name.
    """

    total_sq: float = 0.0
    layer_norms: dict[str, float] = field(default_factory=dict)


class Capture:
    """Records neuron outputs, their gradients and parameter gradients during one training pass.

    :param model: the :class:`~sb3_plasticity.neurons.NeuronModel` of the algorithm.
    :param groups: the groups to record (default: all).
    :param gradients: also record ``dL/dz`` for online groups and the networks' parameter gradients.
    :param max_batch: keep at most this many samples of each recorded tensor (memory bound for big batches
        and conv layers); None keeps the whole batch.
    """

    def __init__(
        self,
        model: NeuronModel,
        groups: Sequence[NeuronGroup] | None = None,
        gradients: bool = True,
        max_batch: int | None = None,
    ) -> None:
        self.model = model
        self.groups: list[NeuronGroup] = list(model.groups if groups is None else groups)
        self.gradients = gradients
        self.max_batch = max_batch
        self.records: dict[NeuronGroup, GroupRecord] = {}
        self.network_gradients: dict[str, NetworkGradients] = {}
        self._handles: list = []
        self._forced = False
        self._networks = sorted({g.network for g in self.groups if not g.is_target})

    # -- state ----------------------------------------------------------------------------------------
    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def _needs_grad(self, group: NeuronGroup) -> bool:
        return self.gradients and not group.is_target

    def group_complete(self, group: NeuronGroup) -> bool:
        rec = self.records.get(group)
        if rec is None or rec.activation is None:
            return False
        return not self._needs_grad(group) or rec.grad is not None

    @property
    def complete(self) -> bool:
        """Every group recorded (with its gradient when asked) and every network's parameter gradients read."""
        groups_done = all(self.group_complete(g) for g in self.groups)
        grads_done = not self.gradients or all(n in self.network_gradients for n in self._networks)
        return groups_done and grads_done

    def nonfinite(self, groups: Sequence[NeuronGroup] | None = None) -> list[str]:
        """``<network>/<layer>`` of the groups (default: all) whose records or network gradient norm hold NaN or inf:
        statistics of a diverging network, which no method may turn into scores, masks or resets."""
        bad = []
        for group in self.groups if groups is None else groups:
            rec = self.records.get(group)
            grads = self.network_gradients.get(group.network)
            if (rec is not None and not rec.finite()) or (grads is not None and not is_finite(grads.total_sq)):
                bad.append(f"{group.network}/{group.name}")
        return bad

    def network_complete(self, network: str) -> bool:
        done = all(self.group_complete(g) for g in self.groups if g.network == network)
        if self.gradients and network in self._networks:
            done = done and network in self.network_gradients
        return done

    # -- arming ---------------------------------------------------------------------------------------
    def arm(self) -> None:
        """Clear previous records and register the hooks for the next training pass."""
        self.disarm()
        self.records = {}
        self.network_gradients = {}
        for group in self.groups:
            if self._needs_grad(group):
                self._handles.append(group.pre_activation.register_forward_hook(self._producer_hook(group)))
            self._handles.append(group.output.register_forward_hook(self._output_hook(group)))
        if self.gradients:
            optimizers = {id(o): o for g in self.groups if not g.is_target for o in g.optimizers}
            for opt in optimizers.values():
                # OBSERVE: after the gradient terms (L2 Init), before surgery that reads what was recorded here
                self._handles.append(step_hooks(opt).add_pre(OBSERVE, self._step_hook))

    def disarm(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @contextlib.contextmanager
    def forced(self) -> Iterator[None]:
        """Record forwards run under ``no_grad`` too (for :func:`probe`)."""
        self._forced = True
        try:
            yield
        finally:
            self._forced = False

    # -- hooks ----------------------------------------------------------------------------------------
    def _trim(self, x: th.Tensor) -> th.Tensor:
        x = x.detach()
        return x[: self.max_batch] if self.max_batch is not None else x

    def _counts(self, group: NeuronGroup) -> bool:
        # Rollout, predict and evaluation forwards run under no_grad; target networks only run in train(); another
        # capture's probe is not a training pass.
        if self._forced:
            return True
        return not _PROBING.get() and (group.is_target or th.is_grad_enabled())

    def _producer_hook(self, group: NeuronGroup):
        def hook(module: nn.Module, inputs: tuple, output: th.Tensor) -> None:
            rec = self.records.setdefault(group, GroupRecord())
            if rec.grad_hooked or rec.activation is not None or not self._counts(group) or not output.requires_grad:
                return
            rec.grad_hooked = True

            def grad_hook(grad: th.Tensor) -> None:
                if rec.grad is None:
                    rec.grad = self._trim(grad)

            output.register_hook(grad_hook)

        return hook

    def _output_hook(self, group: NeuronGroup):
        def hook(module: nn.Module, inputs: tuple, output: th.Tensor) -> None:
            rec = self.records.setdefault(group, GroupRecord())
            if rec.activation is None and self._counts(group):
                rec.activation = self._trim(output)

        return hook

    def _step_hook(self, optimizer: th.optim.Optimizer, args, kwargs) -> None:
        for network in self._networks:
            if network in self.network_gradients:
                continue
            groups = [g for g in self.groups if g.network == network]
            if not all(self.records.get(g) is not None and self.records[g].activation is not None for g in groups):
                continue  # this step does not belong to the recorded pass of that network
            params = self.model.network_parameters(network)
            owned = [p for p in params if optimizer in self.model.optimizers_of(p)]
            if not owned or all(p.grad is None for p in owned):
                continue
            grads = NetworkGradients()
            sq = th.zeros((), device=owned[0].device)
            for p in params:
                if p.grad is not None:
                    sq = sq + p.grad.detach().pow(2).sum()
            grads.total_sq = float(sq)
            for g in groups:
                wg = g.producer.weight.grad
                grads.layer_norms[g.name] = float(wg.norm()) if wg is not None else 0.0
                if wg is not None:
                    # the official GraMa code's score: mean |dL/dW_ij| over neuron i's incoming weights
                    self.records[g].weight_grad = wg.detach().abs().reshape(wg.shape[0], -1).mean(dim=1)
            self.network_gradients[network] = grads


# ----------------------------------------------------------------------------------------------------
# On-demand measurement pass
# ----------------------------------------------------------------------------------------------------
def buffer_ready(algorithm) -> bool:
    """Whether :func:`sample_batch` has data: a non-empty replay buffer or a full rollout buffer."""
    replay = getattr(algorithm, "replay_buffer", None)
    if replay is not None:
        return replay.size() > 0
    rollout = getattr(algorithm, "rollout_buffer", None)
    return rollout is not None and rollout.full


def training_batch_size(algorithm) -> int | None:
    """The size of the algorithm's own training batches: ``batch_size`` (TD3, DDPG, SAC, PPO), or None for A2C, which
    has no ``batch_size`` and trains on the whole rollout (``n_steps * n_envs`` transitions; :func:`sample_batch`
    reads None as that)."""
    return getattr(algorithm, "batch_size", None)


def sample_batch(algorithm, batch_size: int | None) -> tuple[th.Tensor, th.Tensor]:
    """``(observations, actions)`` from the algorithm's replay buffer or (full) rollout buffer.

    ``batch_size`` None takes the whole rollout buffer (A2C's training batch; see :func:`training_batch_size`);
    a replay buffer needs a number. Replay samples go through ``VecNormalize`` like the algorithm's own
    (``env=algorithm._vec_normalize_env``). Uses the global NumPy RNG, like SB3's own sampling.
    """
    replay = getattr(algorithm, "replay_buffer", None)
    if replay is not None:
        if replay.size() == 0:
            raise RuntimeError("the replay buffer is empty: no batch to measure on yet")
        if batch_size is None:
            raise ValueError(f"{type(algorithm).__name__} samples a replay buffer: give batch_size as a number")
        data = replay.sample(batch_size, env=getattr(algorithm, "_vec_normalize_env", None))
        return data.observations, data.actions
    rollout = getattr(algorithm, "rollout_buffer", None)
    if rollout is not None:
        if not rollout.full:
            raise RuntimeError("the rollout buffer is not full: no batch to measure on yet")
        data = next(rollout.get(batch_size))
        return data.observations, data.actions
    raise RuntimeError(f"{type(algorithm).__name__} has neither a replay buffer nor a rollout buffer")


@contextlib.contextmanager
def measurement_pass() -> Iterator[None]:
    """Mark the forwards run inside as a measurement (a probe, a drift or function-preservation check), not the
    algorithm's training pass: armed captures ignore them unless :meth:`Capture.forced`."""
    token = _PROBING.set(True)
    try:
        yield
    finally:
        _PROBING.reset(token)


def forward_networks(algorithm, observations: th.Tensor, actions: th.Tensor | None) -> None:
    """Run every network of the algorithm (targets included) on a batch under ``no_grad`` (activations only), as its
    adapter says (:meth:`~sb3_plasticity.adapters.PolicyAdapter.run_all`). Networks run in eval mode, so norms with
    running statistics (CrossQ's BatchRenorm) read them without updating them. Armed captures that are not
    :meth:`Capture.forced` do not record these forwards (SB3's critics turn gradients back on for their own features
    extractor, so ``no_grad`` alone does not mark them)."""
    policy = algorithm.policy
    with measurement_pass(), th.no_grad(), evaluation_mode(policy):
        adapter_for(policy).run_all(policy, observations, actions)


def probe(algorithm, capture: Capture, batch: tuple[th.Tensor, th.Tensor] | None = None, batch_size: int = 256) -> None:
    """Record the capture's groups on one forward pass over a batch (default: sampled from the buffer).

    Records activations only: no loss is computed, so ``dL/dh`` needs a training pass (:meth:`Capture.arm`).
    """
    observations, actions = batch if batch is not None else sample_batch(algorithm, batch_size)
    was_armed = capture.armed
    if not was_armed:
        capture.arm()
    try:
        with capture.forced():
            forward_networks(algorithm, observations, actions)
    finally:
        if not was_armed:
            capture.disarm()
