"""Per-model plasticity state and optimizer step hooks run in an explicit order.

The lowest layer: nothing here knows SB3 or the package's other modules (only ``torch``).

Two objects replace what used to be module-level registries:

- :class:`StepHooks`, one per optimizer (:func:`step_hooks`): an ordered list of pre-step and post-step hooks with
  explicit priorities (the constants below), run by *one* PyTorch pre-step hook and *one* post-step hook that it
  registers on the optimizer while it has hooks. The hooks run by priority, whatever order the callbacks registered
  them in; hooks of equal priority run in registration order. It lives on the optimizer itself (an optimizer belongs
  to one model), so surgery, which only sees optimizers, and the continual harness, which has no SB3 model, find it.
  Surgery's fresh-step registry (Adam entries waiting for a fresh first update) is one of its hooks.
- :class:`PlasticityState`, one per model (:func:`plasticity_state`), attached to the model's policy: which callback
  claims the neurons of which network, and the :class:`StepHooks` of the policy's optimizers.

Neither is saved: a policy is saved as its ``state_dict`` and an optimizer pickles only its ``state_dict``, so
``save``/``load``, ``set_parameters`` and ``copy.deepcopy`` never carry them (a deep copy of a policy starts with an
empty state; hooks are runtime wiring of one ``learn()``, re-registered by the callbacks of the next). Device moves
keep the parameter objects, hence the state. Callbacks keep the handles that :meth:`StepHooks.add_pre` and
:meth:`StepHooks.add_post` return and remove them when their ``learn()`` ends.

**Order of the pre-step hooks** (after ``backward()``, before the optimizer's update):

1. :data:`LEARNING_RATE`: set param-group hyperparameters (per-network learning rates). SB3 rewrites every group's
   ``lr`` in ``train()`` before the loss, so a pre-step hook is the last word; it comes first so that every later hook
   sees the rate the step will use.
2. :data:`GRADIENT`: add terms to the gradient (L2 Init's ``2 lam (theta - theta_0)``). From here on ``.grad`` is the
   gradient of the whole objective the step minimises (PyTorch's own ``weight_decay`` is added inside ``step()``).
3. :data:`OBSERVE`: read the gradients (GraMa's gradient statistics, gradient heatmaps): they see the gradient the
   step applies.
4. :data:`SURGERY`: change weights between backward and step (ReGraMa's in-pass resets): scores on what was just
   observed, and zeroes the stale gradients of the entries it resets.
5. :data:`FRESH_STEP`: last. Sets the Adam moments of entries reset earlier from the exact gradient Adam is about to
   use, i.e. after every term was added to it and after this step's surgery (see :mod:`sb3_plasticity.surgery`).

**Order of the post-step hooks** (after the update):

1. :data:`TOPOLOGY`: re-apply masks and clip weights (Neuroplastic Expansion): afterwards the weights are final.
2. :data:`AFTER_UPDATE`: read the updated weights or optimizer state (CBP's utilities, score pruning): they see the
   final, masked and clipped weights.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch as th
from torch.utils.hooks import RemovableHandle

__all__ = [
    "AFTER_UPDATE",
    "FRESH_STEP",
    "GRADIENT",
    "LEARNING_RATE",
    "OBSERVE",
    "SURGERY",
    "TOPOLOGY",
    "PlasticityState",
    "StepHookHandle",
    "StepHooks",
    "existing_step_hooks",
    "plasticity_state",
    "step_hooks",
]

# pre-step priorities (lower runs first); see the module docstring for why this order
LEARNING_RATE = 100
GRADIENT = 200
OBSERVE = 300
SURGERY = 400
FRESH_STEP = 500
# post-step priorities
TOPOLOGY = 100
AFTER_UPDATE = 200

StepHook = Callable[[th.optim.Optimizer, tuple, dict], Any]

_ATTRIBUTE = "_sb3_plasticity_step_hooks"  # on the optimizer
_STATE_ATTRIBUTE = "_sb3_plasticity_state"  # on the policy


class StepHookHandle:
    """Removes one hook from a :class:`StepHooks` list (idempotent), like PyTorch's ``RemovableHandle``."""

    def __init__(self, owner: StepHooks, key: int) -> None:
        self.owner = owner
        self.key = key

    def remove(self) -> None:
        self.owner._remove(self.key)


class StepHooks:
    """The ordered pre-step and post-step hooks of one optimizer (create it with :func:`step_hooks`).

    PyTorch forbids adding or removing an optimizer's own hooks while it runs them; hooks added to or removed from
    these lists during a step are fine (they take effect at the next step). The one PyTorch hook per kind is
    registered when the first hook of that kind is added and removed when the last one goes, unless that happens
    during a step of this optimizer: then it stays (one Python call per step) until the next :meth:`prune` outside a
    step, or until an exception leaves the step (which ends PyTorch's loop over its hooks). Code that adds hooks from
    inside a step of an optimizer that has none yet would register a PyTorch hook there, which PyTorch refuses: it
    makes sure one is registered beforehand (surgery's ``hold_fresh_steps``).

    :param optimizer: the optimizer whose steps run the hooks.
    """

    def __init__(self, optimizer: th.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._counter = itertools.count()
        self._pre: dict[int, tuple[int, StepHook]] = {}
        self._post: dict[int, tuple[int, StepHook]] = {}
        self._pre_handle: RemovableHandle | None = None
        self._post_handle: RemovableHandle | None = None
        self._running = 0
        self.fresh: Any = None  # surgery's fresh-step registry of this optimizer (a FRESH_STEP hook), or None

    # -- registration ------------------------------------------------------------------------------------
    def add_pre(self, priority: int, hook: StepHook) -> StepHookHandle:
        """Run ``hook(optimizer, args, kwargs)`` before every step, in ``priority`` order (see the constants)."""
        return self._add(self._pre, priority, hook)

    def add_post(self, priority: int, hook: StepHook) -> StepHookHandle:
        """Run ``hook(optimizer, args, kwargs)`` after every step, in ``priority`` order (see the constants)."""
        return self._add(self._post, priority, hook)

    def _add(self, table: dict[int, tuple[int, StepHook]], priority: int, hook: StepHook) -> StepHookHandle:
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TypeError(f"priority must be an int (one of sb3_plasticity.hooks' constants), got {priority!r}")
        key = next(self._counter)
        table[key] = (priority, hook)
        self._install()
        return StepHookHandle(self, key)

    def _remove(self, key: int) -> None:
        self._pre.pop(key, None)
        self._post.pop(key, None)
        self.prune()

    @property
    def pre_hooks(self) -> list[StepHook]:
        """The pre-step hooks in the order they run."""
        return [hook for _, hook in self._ordered(self._pre)]

    @property
    def post_hooks(self) -> list[StepHook]:
        """The post-step hooks in the order they run."""
        return [hook for _, hook in self._ordered(self._post)]

    # -- the PyTorch hooks -------------------------------------------------------------------------------
    def _install(self) -> None:
        if self._pre and self._pre_handle is None:
            self._pre_handle = self.optimizer.register_step_pre_hook(self._run_pre)
        if self._post and self._post_handle is None:
            self._post_handle = self.optimizer.register_step_post_hook(self._run_post)

    def prune(self) -> None:
        """Remove the PyTorch hooks that have nothing to run (no-op during a step of this optimizer)."""
        if self._running:
            return
        if not self._pre and self._pre_handle is not None:
            self._pre_handle.remove()
            self._pre_handle = None
        if not self._post and self._post_handle is not None:
            self._post_handle.remove()
            self._post_handle = None

    @staticmethod
    def _ordered(table: dict[int, tuple[int, StepHook]]) -> list[tuple[int, StepHook]]:
        # by priority, then by registration (the key counts registrations)
        return [(key, hook) for key, (_, hook) in sorted(table.items(), key=lambda item: (item[1][0], item[0]))]

    def _run(self, table: dict[int, tuple[int, StepHook]], optimizer: th.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        self._running += 1
        try:
            for key, hook in self._ordered(table):
                if key in table:  # not removed by an earlier hook of this step
                    hook(optimizer, args, kwargs)
        except BaseException:
            # an exception ends PyTorch's loop over its hooks for good, so the PyTorch hooks left with nothing to run
            # (a callback that aborted removed its hooks) can go now: no step may leave them behind
            self._running -= 1
            self.prune()
            raise
        else:
            self._running -= 1

    def _run_pre(self, optimizer: th.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        self._run(self._pre, optimizer, args, kwargs)

    def _run_post(self, optimizer: th.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        self._run(self._post, optimizer, args, kwargs)


def step_hooks(optimizer: th.optim.Optimizer) -> StepHooks:
    """The :class:`StepHooks` of ``optimizer``, created at first use (it is never pickled or deep-copied with it)."""
    hooks = optimizer.__dict__.get(_ATTRIBUTE)
    if hooks is None:
        hooks = StepHooks(optimizer)
        optimizer.__dict__[_ATTRIBUTE] = hooks
    return hooks


def existing_step_hooks(optimizer: th.optim.Optimizer) -> StepHooks | None:
    """The :class:`StepHooks` of ``optimizer`` if it has one (creates nothing)."""
    return optimizer.__dict__.get(_ATTRIBUTE)


class PlasticityState:
    """What the package's callbacks share about one model at run time (create it with :func:`plasticity_state`).

    ``claims`` maps a network name to ``(callback, learn id)``: the weight-changing callback that owns the network's
    neurons in that ``learn()`` (two such callbacks on one network raise, unless one composes, e.g. NE's
    ``compose=True``); the callbacks claim in their ``_init_callback`` and release in ``on_training_end``.
    ``warned_learn`` is the ``learn()`` whose ``learning_starts`` warning was given (one per ``learn()``).
    """

    def __init__(self) -> None:
        self.claims: dict[str, tuple[Any, Any]] = {}
        self.warned_learn: Any = None

    def release(self, owner: Any) -> None:
        """Drop every claim of ``owner``."""
        for network in [n for n, (o, _) in self.claims.items() if o is owner]:
            del self.claims[network]

    @staticmethod
    def step_hooks(optimizer: th.optim.Optimizer) -> StepHooks:
        """The ordered step hooks of one of the model's optimizers (see :func:`step_hooks`)."""
        return step_hooks(optimizer)

    # run-time wiring only: never pickled, and a deep copy of a policy starts without claims
    def __reduce__(self) -> tuple:
        return (PlasticityState, ())

    def __deepcopy__(self, memo: dict) -> PlasticityState:
        return PlasticityState()


def plasticity_state(policy: th.nn.Module) -> PlasticityState:
    """The :class:`PlasticityState` of the model whose policy is ``policy``, created at first use. It is kept on the
    policy (one per model; ``model.policy`` stays the same object across ``set_parameters`` and device moves; a model
    loaded from a file has a new policy and starts with an empty state, as a new process would)."""
    state = policy.__dict__.get(_STATE_ATTRIBUTE)
    if state is None:
        state = PlasticityState()
        policy.__dict__[_STATE_ATTRIBUTE] = state
    return state
