"""Per-model plasticity state and ordered optimizer step hooks (sb3_plasticity.hooks)."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch as th
from stable_baselines3 import TD3
from torch import nn

from sb3_plasticity import ReDoCallback, surgery
from sb3_plasticity.hooks import (
    AFTER_UPDATE,
    FRESH_STEP,
    GRADIENT,
    LEARNING_RATE,
    OBSERVE,
    SURGERY,
    TOPOLOGY,
    plasticity_state,
    step_hooks,
)
from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.surgery import release_fresh_steps, reset_optimizer_entries


def _adam(lr: float = 0.1) -> tuple[nn.Linear, th.optim.Adam]:
    th.manual_seed(0)
    layer = nn.Linear(2, 3)
    return layer, th.optim.Adam(layer.parameters(), lr=lr)


def _step(layer: nn.Linear, opt: th.optim.Optimizer) -> None:
    opt.zero_grad()
    layer(th.ones(4, 2)).sum().backward()
    opt.step()


def test_priorities_are_ordered():
    assert LEARNING_RATE < GRADIENT < OBSERVE < SURGERY < FRESH_STEP
    assert TOPOLOGY < AFTER_UPDATE


def test_hooks_run_by_priority_whatever_the_registration_order():
    layer, opt = _adam()
    calls: list[str] = []
    hooks = step_hooks(opt)
    assert step_hooks(opt) is hooks  # one per optimizer
    registered = [(FRESH_STEP, "fresh"), (OBSERVE, "observe"), (LEARNING_RATE, "lr"), (SURGERY, "surgery")]
    registered += [(GRADIENT, "gradient"), (OBSERVE, "observe2")]  # equal priority: registration order
    handles = [hooks.add_pre(p, lambda o, a, k, n=name: calls.append(n)) for p, name in registered]
    handles += [
        hooks.add_post(AFTER_UPDATE, lambda o, a, k: calls.append("after")),
        hooks.add_post(TOPOLOGY, lambda o, a, k: calls.append("topology")),
    ]
    assert len(opt._optimizer_step_pre_hooks) == 1 and len(opt._optimizer_step_post_hooks) == 1
    _step(layer, opt)
    assert calls == ["lr", "gradient", "observe", "observe2", "surgery", "fresh", "topology", "after"]

    calls.clear()
    handles[1].remove()
    handles[1].remove()  # idempotent
    _step(layer, opt)
    assert calls == ["lr", "gradient", "observe2", "surgery", "fresh", "topology", "after"]
    for handle in handles:
        handle.remove()
    # nothing left: the PyTorch hooks go too
    assert len(opt._optimizer_step_pre_hooks) == 0 and len(opt._optimizer_step_post_hooks) == 0
    calls.clear()
    _step(layer, opt)
    assert calls == []


def test_a_hook_removed_during_the_step_is_skipped_and_the_torch_hook_stays_until_pruned():
    layer, opt = _adam()
    calls: list[str] = []
    hooks = step_hooks(opt)
    later = hooks.add_pre(SURGERY, lambda o, a, k: calls.append("later"))
    first = hooks.add_pre(LEARNING_RATE, lambda o, a, k: (calls.append("first"), first.remove(), later.remove()))
    _step(layer, opt)  # PyTorch forbids removing its own hook here: ours stays registered, empty
    assert calls == ["first"]
    assert len(opt._optimizer_step_pre_hooks) == 1
    hooks.prune()
    assert len(opt._optimizer_step_pre_hooks) == 0


def test_a_hook_that_removes_itself_and_raises_leaves_no_torch_hook():
    """A callback aborting inside a step removes its hooks and re-raises: the exception ends PyTorch's loop over its
    hooks, so the emptied PyTorch hook goes at once (nothing of the aborted callback outlives the step)."""
    layer, opt = _adam()
    hooks = step_hooks(opt)
    weight = layer.weight.detach().clone()

    def abort_post(o, a, k):
        post.remove()
        raise RuntimeError("boom after")

    def abort_pre(o, a, k):
        pre.remove()
        raise RuntimeError("boom before")

    post = hooks.add_post(AFTER_UPDATE, abort_post)
    kept = hooks.add_pre(OBSERVE, lambda o, a, k: None)
    with pytest.raises(RuntimeError, match="boom after"):
        _step(layer, opt)
    assert not th.equal(layer.weight, weight)  # the update ran; only its post-step hook raised
    assert len(opt._optimizer_step_post_hooks) == 0
    assert len(opt._optimizer_step_pre_hooks) == 1  # the pre-step hook still has a hook to run
    kept.remove()
    pre = hooks.add_pre(SURGERY, abort_pre)
    weight = layer.weight.detach().clone()
    with pytest.raises(RuntimeError, match="boom before"):
        _step(layer, opt)
    assert th.equal(layer.weight, weight)  # the step never ran
    assert len(opt._optimizer_step_pre_hooks) == 0
    _step(layer, opt)  # trains on without hooks


def test_fresh_step_sees_the_gradient_added_after_it_was_registered():
    """The fresh-step hook sets a reset entry's Adam moments from the gradient the step uses. Registered before a
    GRADIENT hook (a resumed learn(): pending entries, then L2 Init's hook), it still runs after it: the entry moves by
    exactly ``lr`` against the full gradient's sign (a fresh parameter's first Adam update)."""
    layer, opt = _adam(lr=0.1)
    for _ in range(50):
        _step(layer, opt)
    entries = th.zeros_like(layer.weight, dtype=th.bool)
    entries[0] = True
    reset_optimizer_entries(layer.weight, entries, [opt])
    fresh = surgery._fresh_of(opt)
    assert fresh is not None and fresh.pending and step_hooks(opt).pre_hooks == [fresh]

    def add(o, a, k) -> None:  # the loss gradient of row 0 is +4; this makes it -6: the step must go up
        layer.weight.grad[0] -= 10.0

    handle = step_hooks(opt).add_pre(GRADIENT, add)
    assert step_hooks(opt).pre_hooks == [add, fresh]
    before = layer.weight.detach().clone()
    _step(layer, opt)
    moved = (layer.weight.detach() - before)[0]
    assert th.allclose(moved, th.full_like(moved, 0.1), rtol=1e-4), moved
    # entries cleared after their step; the registry goes at the next release
    assert not fresh.pending
    handle.remove()
    release_fresh_steps([opt])
    assert surgery._fresh_of(opt) is None
    assert len(opt._optimizer_step_pre_hooks) == 0


def test_hooks_and_state_are_not_copied_or_pickled():
    layer, opt = _adam()
    step_hooks(opt).add_pre(LEARNING_RATE, lambda o, a, k: None)
    copied = copy.deepcopy(opt)
    assert "_sb3_plasticity_step_hooks" not in copied.__dict__
    assert len(copied._optimizer_step_pre_hooks) == 0
    pickle.dumps(opt.state_dict())
    policy = nn.Sequential(layer)
    plasticity_state(policy).claims["critic"] = (object(), 1)
    assert plasticity_state(copy.deepcopy(policy)).claims == {}
    assert plasticity_state(pickle.loads(pickle.dumps(policy))).claims == {}


class _Claims(PlasticityCallback):
    """Records the claims of its model at training start."""

    claims_neurons = True

    def _on_training_start(self) -> None:
        self.seen = dict(plasticity_state(self.model.policy).claims)


def _td3(seed: int = 0) -> TD3:
    return TD3("MlpPolicy", "Pendulum-v1", learning_starts=50, policy_kwargs=dict(net_arch=[8]), seed=seed)


def test_two_models_claims_are_independent_and_released_when_learn_ends():
    first, second = _td3(0), _td3(1)
    a, b = _Claims(networks="critic"), _Claims(networks="critic")
    first.learn(20, callback=a)
    second.learn(20, callback=b)  # same network of another model: no conflict
    assert a.seen == {"critic": (a, first.start_time)}
    assert b.seen == {"critic": (b, second.start_time)}
    assert plasticity_state(first.policy).claims == {} and plasticity_state(second.policy).claims == {}
    # on one model two claiming callbacks of one network still raise
    with pytest.raises(ValueError, match="would both change the neurons of network 'critic'"):
        first.learn(20, callback=[_Claims(networks="critic"), ReDoCallback(networks="critic", reset_freq=10)])
    assert plasticity_state(first.policy).claims == {}
    first.learn(20, callback=ReDoCallback(networks="critic", reset_freq=10))  # nothing left behind
