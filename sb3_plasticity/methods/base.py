"""Shared plumbing of the package's callbacks: neuron discovery at training start, claims and logging.

The argument checks live in :mod:`sb3_plasticity.checks`; ``check_range`` and its siblings are re-exported here for
code that imports them from this module.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, TypeVar

from stable_baselines3.common.callbacks import BaseCallback
from torch.utils.hooks import RemovableHandle

from sb3_plasticity.capture import Capture
from sb3_plasticity.checks import check_fraction, check_nonnegative, check_positive_int, check_range
from sb3_plasticity.hooks import StepHookHandle, plasticity_state
from sb3_plasticity.neurons import NeuronGroup, NeuronModel, discover
from sb3_plasticity.schedule import EveryN

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "PlasticityCallback",
    "active_callbacks",
    "check_fraction",
    "check_nonnegative",
    "check_positive_int",
    "check_range",
    "normalize_networks",
]

# SB3's stdout/log writers truncate keys to 36 characters and raise when two truncate alike; our per-layer
# keys are long, so they go to TensorBoard, CSV and JSON only.
_EXCLUDE = ("stdout", "log")


# Which callback changes the neurons of which network (per model and learn() call) lives in the model's
# PlasticityState (sb3_plasticity.hooks), on its policy.

# The package's callbacks running in a learn(), by the model's policy and replay buffer (see active_callbacks for
# why this stays a module-level weak map rather than moving into the per-model PlasticityState).
_ACTIVE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def active_callbacks(obj: Any) -> list[PlasticityCallback]:
    """The package's callbacks of the running ``learn()`` (those between their ``_init_callback`` and
    ``on_training_end``) whose model has ``obj`` as its policy or replay buffer.

    A masked policy (:class:`~sb3_plasticity.MaskedTD3Policy` and its siblings) and an
    :class:`~sb3_plasticity.ExperienceReviewBuffer` do not know their model or its callbacks; they ask here, at their
    first use in training, whether a Neuroplastic Expansion callback drives them, and warn when none does.

    Why a module-level weak map (keyed by the policy or buffer object, holding the callbacks weakly) and not the
    model's :class:`~sb3_plasticity.hooks.PlasticityState`, which keeps the other run-time wiring per model: the
    policy could find that state (it lives on the policy), but the replay buffer cannot reach its model, and nothing
    on the buffer can point there without going into the buffer's pickle. SB3's ``save_replay_buffer`` pickles the
    buffer object whole (``pickle.dump``; ``ReplayBuffer`` and ``DictReplayBuffer`` define no ``__getstate__``,
    ``HerReplayBuffer``'s drops only its env), and ``CheckpointCallback(save_replay_buffer=True)`` and the experiment
    worker's checkpoints call it in the middle of a ``learn()``. A reference to the model would write the model
    (policy, optimizers, env) into every buffer file, and could fail on an env that does not pickle; a holder that
    pickles empty (as ``PlasticityState`` does) would still write a reference to this package into the file, so that
    a plain SB3 buffer saved while one of the package's callbacks runs could no longer be loaded without the package.
    The weak map leaves the policy and buffer untouched (their pickles are those of plain SB3 objects), needs no
    clean-up (an entry goes with its object, a callback with its last reference) and answers for exactly the
    callbacks between ``_init_callback`` and ``on_training_end``.
    """
    try:
        callbacks = _ACTIVE.get(obj)
    except TypeError:  # an object without weak references (no policy or buffer): driven by nothing
        return []
    return [] if callbacks is None else list(callbacks)


def normalize_networks(networks: str | Sequence[str] | None) -> list[str] | None:
    if networks is None:
        return None
    if isinstance(networks, str):
        return [networks]
    if not isinstance(networks, Sequence) or not all(isinstance(n, str) for n in networks) or len(networks) == 0:
        raise ValueError(f"networks must be None, a network name or a non-empty list of names, got {networks!r}")
    return list(dict.fromkeys(networks))  # without duplicates, in the given order


class PlasticityCallback(BaseCallback):
    """Base class: discovers the model's neurons in ``_init_callback`` (every ``learn()``, so a loaded model's
    new optimizers are found) and checks ``networks`` against them.

    :param networks: names of the networks to act on (``actor``, ``critic``, ``actor_target``,
        ``critic_target``, ``policy``, ``value``, ``features``); None means all of them.
    :param verbose: 0 silent, 1 prints what was discovered.

    **Faults.** Statistics that hold NaN or inf (a diverging network) never become scores, masks or resets: the event
    is skipped (:meth:`check_finite`, :meth:`skip_event`), a ``RuntimeWarning`` is given (once per ``learn()``) and
    ``plasticity/<method>/skipped_events`` counts the skipped events; training goes on. An exception raised inside
    one of the callback's events (its ``on_step``/rollout calls and the optimizer hooks it registers, see
    :meth:`guarded`) first removes every hook the callback registered, then propagates out of ``learn()``: the
    model stays trainable and saveable. (SB3's ``learn()`` has no ``finally``: an exception raised elsewhere, by
    another callback or the env, leaves an armed callback's hooks until the callback's next ``learn()``.)

    Subclasses that change weights set ``claims_neurons = True``: two such callbacks acting on the same
    network in one ``learn()`` raise an error, since they would fight over the same neurons. Subclasses
    with state that matters for resuming set ``state_key`` and implement :meth:`get_state` /
    :meth:`set_state`; the state is kept in ``model.plasticity_state[state_key]``, which ``model.save``
    pickles and ``load`` restores.

    At the start of ``learn()`` (``_on_training_start``) a ``UserWarning`` says when the callback would do nothing
    in this ``learn()``: its first scheduled event (:meth:`first_event`) falls after the end of ``learn()``, or an
    off-policy algorithm's ``learning_starts`` is not below the end of ``learn()`` (no training pass at all: one
    warning per ``learn()``).
    """

    claims_neurons: ClassVar[bool] = False
    state_key: ClassVar[str | None] = None
    trainable_only: ClassVar[bool] = False
    method: ClassVar[str] = "plasticity"  # the <method> of the plasticity/<method>/... tags
    # ``method`` names from before a rename: a model whose state was saved under ``<old method><rest of state_key>``
    # resumes (see _migrate_saved_state)
    legacy_methods: ClassVar[tuple[str, ...]] = ()

    def __init__(self, networks: str | Sequence[str] | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.networks = normalize_networks(networks)
        self.neurons: NeuronModel | None = None
        self._ended = False
        self.skipped_events = 0  # events skipped because their statistics held NaN or inf
        self._warned_skip = False

    # -- faults: an exception inside an event removes the callback's hooks before it leaves learn() ----------
    @contextlib.contextmanager
    def _aborting(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._abort()
            raise

    def guarded(self, fn: F) -> F:
        """``fn`` (an optimizer or module hook this callback registers) such that an exception inside it removes
        the callback's hooks first (see :meth:`_abort`)."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._aborting():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def _abort(self) -> None:
        """An exception is leaving ``learn()`` through this callback: end it as ``on_training_end`` would (flush,
        remove its hooks, drop its claims), and, should that fail too, remove every hook it still holds."""
        if self._ended:
            return
        try:
            self._on_training_end()
        except Exception:  # the original exception is the one to report
            pass
        finally:
            self._ended = True
            self._drop_hooks()

    def _drop_hooks(self) -> None:
        """Disarm every :class:`~sb3_plasticity.capture.Capture` and remove every hook handle this callback keeps in
        its attributes, or in an attribute with a ``drop_hooks()`` method (an event mechanism), which is called (the
        fallback of :meth:`_abort`)."""
        for value in list(vars(self).values()):
            if isinstance(value, Capture):
                value.disarm()
            elif callable(getattr(value, "drop_hooks", None)):
                value.drop_hooks()
            elif isinstance(value, (RemovableHandle, StepHookHandle)):
                value.remove()
            elif isinstance(value, (list, tuple)):
                for item in value:
                    if isinstance(item, (RemovableHandle, StepHookHandle)):
                        item.remove()
                    elif isinstance(item, Capture):
                        item.disarm()

    def init_callback(self, model: Any) -> None:
        with self._aborting():
            super().init_callback(model)

    def on_training_start(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
        with self._aborting():
            super().on_training_start(locals_, globals_)

    def on_step(self) -> bool:
        with self._aborting():
            return super().on_step()

    def on_rollout_start(self) -> None:
        with self._aborting():
            super().on_rollout_start()

    def on_rollout_end(self) -> None:
        with self._aborting():
            super().on_rollout_end()

    # -- faults: NaN or inf in the statistics of an event ------------------------------------------------------
    def check_finite(self, capture: Capture, groups: Sequence[NeuronGroup] | None = None, dump: bool = True) -> bool:
        """True when the capture's records of ``groups`` (default: all) are finite; else the event is skipped
        (:meth:`skip_event`) and False is returned: the caller changes and scores nothing."""
        bad = capture.nonfinite(groups)
        if not bad:
            return True
        self.skip_event(f"NaN or inf in the captured statistics of {', '.join(bad)}", dump=dump)
        return False

    def skip_event(self, reason: str, dump: bool = True) -> None:
        """Count a skipped event in ``plasticity/<method>/skipped_events`` and warn (once per ``learn()``)."""
        self.skipped_events += 1
        if not self._warned_skip:
            self._warned_skip = True
            warnings.warn(
                f"{type(self).__name__} at step {self.num_timesteps}: {reason} (a diverging network?). The event is "
                f"skipped: nothing is scored or changed, training goes on; plasticity/{self.method}/skipped_events "
                "counts this and later skips.",
                RuntimeWarning,
                stacklevel=2,
            )
        self.record(f"{self.method}/skipped_events", self.skipped_events)
        if dump:
            self.dump()

    def _init_callback(self) -> None:
        self._migrate_saved_state()
        self.neurons = discover(self.model)
        if self.networks is not None:
            self.neurons.check_networks(self.networks)
            if self.trainable_only:
                targets = [n for n in self.networks if n not in self.neurons.trainable_networks]
                if targets:
                    raise ValueError(
                        f"networks={self.networks!r}: {targets!r} are target networks, which follow their online "
                        f"twins; choose among {self.neurons.trainable_networks!r}"
                    )
        self._ended = False
        self._warned_skip = False
        if self.claims_neurons:
            self._claim()
        if self.verbose >= 1:
            print(f"{type(self).__name__}: {self.neurons}")
        self._setup()
        state = getattr(self.model, "plasticity_state", {}).get(self.state_key) if self.state_key else None
        if state is not None:
            self.set_state(state)
        for obj in (self.model.policy, getattr(self.model, "replay_buffer", None)):
            if obj is not None:
                _ACTIVE.setdefault(obj, weakref.WeakSet()).add(self)

    def _migrate_saved_state(self) -> None:
        """Move state saved under one of ``legacy_methods`` (the method's name before a rename) to ``state_key``."""
        saved = getattr(self.model, "plasticity_state", None)
        if not self.state_key or not isinstance(saved, dict) or self.state_key in saved:
            return
        rest = self.state_key.removeprefix(self.method)
        for old in self.legacy_methods:
            if old + rest in saved:
                saved[self.state_key] = saved.pop(old + rest)
                return

    # -- silent no-ops: warned at the start of learn() -------------------------------------------------------
    def first_event(self) -> tuple[int, str] | None:
        """``(env step, what)`` of this callback's first scheduled event in the current ``learn()``, or None when
        it has no schedule.

        The default reads ``event_schedule`` (an :class:`~sb3_plasticity.schedule.EveryN`, which the scheduled methods
        keep: the :class:`~sb3_plasticity.InterventionCallback` family and Neuroplastic Expansion), or else
        ``_next_event`` (the next due step) and the interval in ``freq`` or ``grow_interval``; subclasses with
        another schedule override it.
        """
        schedule = getattr(self, "event_schedule", None)
        if isinstance(schedule, EveryN):
            step, interval = schedule.next, schedule.freq
        else:
            step = getattr(self, "_next_event", None)
            interval = getattr(self, "freq", None) or getattr(self, "grow_interval", None)
        if not isinstance(step, int) or isinstance(step, bool) or step <= 0:
            return None
        return step, f"event (every {interval} env steps)" if interval else "event"

    def events_end(self) -> int:
        """The first env step at which no event runs any more in this ``learn()``: one past its end
        (``model._total_timesteps``), or an earlier end the method keeps in ``t_end`` (NE's ``end_step``)."""
        end = int(self.model._total_timesteps) + 1
        t_end = getattr(self, "t_end", None)
        return min(end, int(t_end)) if isinstance(t_end, int) and t_end > 0 else end

    def _on_training_start(self) -> None:
        self._warn_idle()

    def _warn_idle(self) -> None:
        total = int(getattr(self.model, "_total_timesteps", 0) or 0)
        learning_starts = getattr(self.model, "learning_starts", None)
        learn_id = getattr(self.model, "start_time", None)
        if (
            isinstance(learning_starts, int)
            and learning_starts >= total
            and plasticity_state(self.model.policy).warned_learn != learn_id
        ):
            plasticity_state(self.model.policy).warned_learn = learn_id  # one warning per learn(), not per callback
            warnings.warn(
                f"learning_starts={learning_starts} is not below the end of this learn() at step {total}: "
                f"{type(self.model).__name__} takes no gradient step, so the plasticity callbacks measure and change "
                "nothing. Train for more steps than learning_starts (rl-zoo: a larger -n, or -params "
                "learning_starts:<n>).",
                UserWarning,
            )
        event = self.first_event()
        if event is not None:
            step, what = event
            end = self.events_end()
            if step >= end:
                until = f"this learn() ends at step {total}"
                if end <= total:
                    until += f" and no event runs from step {end} on"
                warnings.warn(
                    f"{type(self).__name__}: its first {what} is due at step {step}, but {until}: it will not run in "
                    "this learn(). Lower its interval or train longer.",
                    UserWarning,
                )

    def _claim(self) -> None:
        # Keyed by the learn() call (SB3 sets start_time in _setup_learn, before the callbacks' init), so
        # claims of an earlier learn() that ended without on_training_end do not linger.
        per_model = plasticity_state(self.model.policy).claims
        learn_id = getattr(self.model, "start_time", None)
        for network in self.network_names:
            owner = per_model.get(network)
            if owner is None or owner[0] is self:
                continue
            if owner[1] != learn_id:
                # left by a learn() that ended in an exception, without on_training_end: remove its hooks now
                owner[0]._on_training_end()
                continue
            # learn() stops here and never calls on_training_end: undo what this learn's callbacks set up
            for other, other_id in list(per_model.values()):
                if other_id == learn_id:
                    other._on_training_end()
            raise ValueError(
                f"{type(self).__name__} and {type(owner[0]).__name__} would both change the neurons of "
                f"network {network!r}; give them disjoint `networks`"
            )
        for network in self.network_names:
            per_model[network] = (self, learn_id)

    def get_state(self) -> dict[str, Any]:
        """State to keep across ``save``/``load`` (CPU tensors and Python values)."""
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`get_state` returned."""

    def save_state(self) -> None:
        if self.state_key is None:
            return
        if not isinstance(getattr(self.model, "plasticity_state", None), dict):
            self.model.plasticity_state = {}
        self.model.plasticity_state[self.state_key] = self.get_state()

    def _setup(self) -> None:
        """Subclasses build their state here; ``self.neurons`` is ready."""

    @property
    def network_names(self) -> list[str]:
        assert self.neurons is not None
        if self.networks is not None:
            return self.networks
        return self.neurons.trainable_networks if self.trainable_only else self.neurons.network_names

    def record(self, key: str, value: float) -> None:
        """Record ``plasticity/<key>`` as a Python float (a 0-dim tensor would become a histogram)."""
        self.logger.record(f"plasticity/{key}", float(value), exclude=_EXCLUDE)

    def dump(self) -> None:
        """Write now, at ``num_timesteps``: off-policy SB3 only dumps every ``log_interval`` episodes."""
        self.logger.dump(self.num_timesteps)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        # rl-zoo calls on_training_end() twice on the first callback of a config: run once per learn().
        if self._ended:
            return
        self._ended = True
        try:
            self._finish()
        finally:
            for obj in (self.model.policy, getattr(self.model, "replay_buffer", None)):
                if obj is not None and obj in _ACTIVE:
                    _ACTIVE[obj].discard(self)
            if self.claims_neurons:
                plasticity_state(self.model.policy).release(self)

    def _finish(self) -> None:
        """Subclasses flush pending logs and remove hooks here."""
