"""Neuroplastic Expansion: the selection rules on tiny layers with known answers, and the callback inside learn()."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th
from helpers import read_scalars
from stable_baselines3 import PPO, SAC, TD3
from torch import nn

from sb3_plasticity import (
    ExperienceReviewBuffer,
    MaskedActorCriticPolicy,
    MaskedLinear,
    MaskedSACPolicy,
    MaskedTD3Policy,
    NECallback,
    NeuroplasticExpansionCallback,
    discover,
)
from sb3_plasticity.methods.neuroplastic_expansion import pooled_active_ratio
from sb3_plasticity.surgery import reset_neurons, reset_optimizer_entries
from sb3_plasticity.topology import (
    WeightClip,
    cosine_grow_rate,
    grow_connections,
    masked_connections_per_neuron,
    masked_layers,
    prune_neurons,
    truncate_prune,
)


# -- the rules, by hand ------------------------------------------------------------------------------------
def test_cosine_grow_rate():
    assert cosine_grow_rate(0.2, 0, 100) == pytest.approx(0.2)
    assert cosine_grow_rate(0.2, 50, 100) == pytest.approx(0.1)
    assert cosine_grow_rate(0.2, 25, 100) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)))
    assert cosine_grow_rate(0.2, 100, 100) == 0.0
    assert cosine_grow_rate(0.2, 150, 100) == 0.0


def test_grow_picks_the_top_k_inactive_connections_by_score():
    layer = MaskedLinear(3, 2)
    layer.set_mask(th.tensor([[1.0, 0, 0], [0, 1, 0]]))
    scores = th.tensor([[9.0, 5, 1], [4, 9, 3]])  # 9s are active already: never picked
    before = layer(th.ones(1, 3)).detach()
    grown = grow_connections(layer, scores, rate=0.5)  # 4 inactive -> k = 2: the 5 and the 4
    assert grown.tolist() == [[False, True, False], [True, False, False]]
    assert layer.mask.tolist() == [[1.0, 1, 0], [1, 1, 0]]
    assert th.equal(layer(th.ones(1, 3)).detach(), before)  # grown weights start at 0
    assert int(grow_connections(layer, scores, rate=0.3).sum()) == 0  # floor(0.3 * 2) = 0


def test_grown_entries_get_fresh_adam_state():
    layer = MaskedLinear(4, 4)
    layer.set_mask(th.eye(4))
    opt = th.optim.Adam(layer.parameters(), lr=0.01)
    for _ in range(50):  # a long history: the tensor's step count is large
        opt.zero_grad()
        layer(th.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    layer.dense_grad_hook = None
    grown = grow_connections(layer, th.rand(4, 4), rate=1.0)
    reset_optimizer_entries(layer.weight, grown, [opt])
    assert th.all(opt.state[layer.weight]["exp_avg"][grown] == 0)
    before = layer.weight.detach().clone()
    opt.zero_grad()
    layer(th.randn(8, 4)).pow(2).sum().backward()
    opt.step()
    step = (layer.weight.detach() - before)[grown].abs()
    # a fresh parameter's first Adam step is lr in size, not the ~3.16 lr of zeroed moments at a large step count
    assert th.allclose(step[step > 0], th.full_like(step[step > 0], 0.01), rtol=1e-3)


class _Tiny(nn.Module):
    """in 2 -> dense 3 -> masked 3 -> masked 2: the 3 middle neurons have masked rows and masked columns."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), MaskedLinear(3, 3), nn.ReLU(), MaskedLinear(3, 2))


def _tiny_model():
    from sb3_plasticity.neurons import NetworkPath, Stage, groups_from_paths

    tiny = _Tiny()
    tiny.net[2].set_mask(th.tensor([[1.0, 1, 0], [0, 1, 0], [1, 1, 1]]))
    tiny.net[4].set_mask(th.tensor([[1.0, 0, 1], [1, 1, 0]]))
    groups = groups_from_paths([NetworkPath((Stage("critic", "net", tiny.net),))])
    return tiny, {g.name: g for g in groups}


def test_masked_connections_per_neuron_and_prune():
    tiny, groups = _tiny_model()
    first, second = groups["net.0"], groups["net.2"]
    # first layer is dense: its neurons' maskable connections are their columns in net.2
    assert masked_connections_per_neuron(first).tolist() == [2.0, 3.0, 1.0]
    # net.2's neurons: incoming row + column in net.4
    assert masked_connections_per_neuron(second).tolist() == [2 + 2.0, 1 + 1, 3 + 1]
    removed = prune_neurons(second, th.tensor([2]))
    assert removed == 4
    assert tiny.net[2].mask[2].sum() == 0 and tiny.net[4].mask[:, 2].sum() == 0
    assert th.all(tiny.net[2].weight[2] == 0) and th.all(tiny.net[4].weight[:, 2] == 0)


def test_truncate_keeps_whole_neurons_within_the_budget():
    _, groups = _tiny_model()
    g = groups["net.2"]
    candidates = [(g, th.tensor([0, 1, 2]), th.tensor([4.0, 2.0, 4.0]))]
    for seed in range(20):
        chosen = truncate_prune(candidates, budget=5, generator=th.Generator().manual_seed(seed))
        counts = {0: 4, 1: 2, 2: 4}
        total = sum(counts[int(i)] for i in chosen.get(g, th.tensor([], dtype=th.long)))
        assert 0 < total <= 5
    assert truncate_prune(candidates, budget=1) == {}
    everything = truncate_prune(candidates, budget=100)
    assert everything[g].tolist() == [0, 1, 2]


def test_pooled_active_ratio_by_hand():
    """NE Eq. 1 (per-sample active fraction, the official FAU) vs active on at least one sample, on a hand-built batch."""
    a = th.tensor([[1.0, 0, 0], [2, 0, 0], [0, 0, 3], [0, 0, 0]])  # 4 samples x 3 neurons: 2 + 0 + 1 active pairs
    b = th.tensor([[0.5, 0, 1], [0, 0, 1], [0, 0, 1], [0, -1, 1]])  # neuron 2 does not exist: never counted
    alive_b = th.tensor([True, True, False])
    assert pooled_active_ratio([(a, None)], "per_sample") == pytest.approx(3 / 12)
    assert pooled_active_ratio([(a, None)], "any_sample") == pytest.approx(2 / 3)
    assert pooled_active_ratio([(b, alive_b)], "per_sample") == pytest.approx(1 / 8)
    assert pooled_active_ratio([(b, alive_b)], "any_sample") == pytest.approx(1 / 2)
    # pooled over layers: pairs over pairs, neurons over neurons (not a mean of the layers' ratios)
    assert pooled_active_ratio([(a, None), (b, alive_b)]) == pytest.approx((3 + 1) / (12 + 8))
    assert pooled_active_ratio([(a, None), (b, alive_b)], "any_sample") == pytest.approx((2 + 1) / (3 + 2))
    conv = th.zeros(2, 2, 2, 2)  # 2 samples, 2 channels of 2x2: channel 0 active at one place of sample 0
    conv[0, 0, 1, 1] = 1.0
    assert pooled_active_ratio([(conv, None)], "per_sample") == pytest.approx(1 / 4)
    assert pooled_active_ratio([(conv, None)], "any_sample") == pytest.approx(1 / 2)
    assert pooled_active_ratio([(b, th.zeros(3, dtype=th.bool))]) == 0.0  # no neuron exists
    with pytest.raises(ValueError, match="metric"):
        pooled_active_ratio([(a, None)], "mean")


def test_weight_clip_bound_by_fan_in_or_by_neurons():
    layer = MaskedLinear(4, 16)
    with th.no_grad():
        layer.weight.fill_(5.0)
    everything = th.ones(16, 4, dtype=th.bool)
    assert WeightClip(2.0).bound(layer) == pytest.approx(2.0 / math.sqrt(4))  # kappa / sqrt(fan_in)
    clip = WeightClip(2.0, bound_by="neurons")  # NE Alg. 1 read literally: kappa / sqrt(neurons of the layer)
    clip.add(layer, everything)
    assert th.all(layer.weight == 0.5)
    with pytest.raises(ValueError, match="bound_by"):
        WeightClip(2.0, bound_by="fan_out")


def test_weight_clip_clamps_only_the_chosen_entries():
    layer = MaskedLinear(4, 2)
    with th.no_grad():
        layer.weight.fill_(5.0)
    clip = WeightClip(kappa=1.0)  # bound 1 / sqrt(4) = 0.5
    chosen = th.zeros(2, 4, dtype=th.bool)
    chosen[0, 1] = True
    clip.add(layer, chosen)
    assert layer.weight[0, 1] == 0.5
    with th.no_grad():
        layer.weight.fill_(-5.0)
    clip.apply()
    assert layer.weight[0, 1] == -0.5 and layer.weight[1, 3] == -5.0


# -- the callback inside learn() ---------------------------------------------------------------------------
class _Checked(NeuroplasticExpansionCallback):
    """Checks the invariants after every event and keeps the masks as they were before it."""

    def _start_event(self, step):
        self.masks_before = {k: layer.mask.clone() for k, layer in self.layers_by_key().items()}
        super()._start_event(step)

    def _finish_event(self):
        step = self._event_step
        log = dict(self._event_log)
        super()._finish_event()
        self.events = [*getattr(self, "events", []), (step, log, self.masks_before)]
        policy = self.model.policy
        for online, target in [("actor", "actor_target"), ("critic", "critic_target")]:
            if hasattr(policy, target):
                targets = dict(getattr(policy, target).named_modules())
                for name, m in getattr(policy, online).named_modules():
                    if isinstance(m, MaskedLinear):
                        assert th.equal(m.mask, targets[name].mask), f"{online}.{name} mask differs from the target's"
        for _, layer in (pair for pairs in self.masked.values() for pair in pairs):
            assert th.all(layer.weight[layer.mask == 0] == 0)


def _td3(tmp_path=None, seed=0, **kwargs):
    return TD3(
        MaskedTD3Policy,
        "Pendulum-v1",
        policy_kwargs=dict(net_arch=[64, 64]),
        learning_starts=100,
        replay_buffer_class=ExperienceReviewBuffer,
        replay_buffer_kwargs=dict(review_window=20),
        tensorboard_log=None if tmp_path is None else str(tmp_path),
        seed=seed,
        **kwargs,
    )


def test_ne_td3_grows_by_the_schedule_prunes_within_budget_and_keeps_invariants(tmp_path):
    model = _td3(tmp_path)
    kappa = 0.05  # binding: bound 0.05 / sqrt(64), far below the initial weights
    cb = _Checked(grow_interval=300, grow_rate=0.5, end_step=1500, clip_kappa=kappa, log_freq=300)
    model.learn(1800, callback=cb)
    steps = [step for step, _, _ in cb.events]
    assert steps == [300, 600, 900, 1200]  # every grow_interval before end_step, nothing after
    for step, log, before in cb.events:
        rate = cosine_grow_rate(0.5, step, 1500)
        for net in ("actor", "critic"):
            grown = 0
            for name, _ in cb.masked[net]:
                inactive = int((before[f"{net}/{name}"] == 0).sum())
                assert log[f"{net}/{name}/grown"] == int(rate * inactive)
                grown += log[f"{net}/{name}/grown"]
            assert log[f"{net}/grown"] == grown > 0
            assert log[f"{net}/pruned"] <= 0.2 * grown
    assert cb.total_pruned > 0, "a ReLU TD3 on Pendulum has dormant neurons to prune early on"
    # grown connections are clipped; the initial ones are not (so this check can fail)
    for layer, clipped in cb.clip.clipped.items():
        bound = kappa / math.sqrt(layer.in_features)
        assert th.all(layer.weight[clipped].abs() <= bound + 1e-7)
        assert bool((layer.weight[~clipped].abs() > bound).any())
    scalars = read_scalars(tmp_path)
    density = [v for _, v in scalars["plasticity/critic/density"]]
    assert density[-1] > density[0] + 0.2 and density[0] == pytest.approx(0.25, abs=0.01)
    for tag in ("grown", "pruned", "epsilon", "review_fraction", "critic/active_ratio"):
        assert f"plasticity/neuroplastic_expansion/{tag}" in scalars, tag
    assert "plasticity/actor/density" in scalars
    assert not any(tag.startswith("plasticity/ne/") for tag in scalars)  # the old prefix (before issue 12) is gone
    assert all(0 <= v <= 1 for _, v in scalars["plasticity/neuroplastic_expansion/critic/active_ratio"])
    # applied right after the training pass that follows the due step (before the next env step)
    assert [s for s, _ in scalars["plasticity/neuroplastic_expansion/grown"]] == [300, 600, 900, 1200]
    buffer = model.replay_buffer
    assert len(buffer._ratios) == buffer.review_window + 1  # the critic's ratio is fed every update
    assert buffer.n_review_batches > 0


class _BothRatios(NeuroplasticExpansionCallback):
    """Computes both definitions of the critic's active ratio on each pass it measures."""

    def _active_ratio(self, network, capture):
        groups, _ = self._alive[network]
        layers = [(capture.records[g].activation, alive) for g, alive in groups]
        value = super()._active_ratio(network, capture)
        if network == "critic":
            both = {m: pooled_active_ratio(layers, m) for m in ("per_sample", "any_sample")}
            self.measured = [*getattr(self, "measured", []), both]
        return value


@pytest.mark.parametrize("metric", [None, "any_sample"])
def test_review_metric_feeds_epsilon_and_is_logged(tmp_path, monkeypatch, metric):
    """Issue 11: NE Eq. 1 (the per-sample active fraction) feeds the review buffer by default; "any_sample" (active on
    at least one sample of the batch) on request; the choice is logged as TensorBoard text and kept on the buffer."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = TD3(
        MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), learning_starts=50, seed=0,
        replay_buffer_class=ExperienceReviewBuffer, replay_buffer_kwargs=dict(review_window=20),
        tensorboard_log=str(tmp_path),
    )  # fmt: skip
    fed = []
    record = model.replay_buffer.record_active_ratio
    monkeypatch.setattr(model.replay_buffer, "record_active_ratio", lambda r: (fed.append(r), record(r)))
    cb = _BothRatios(grow_interval=100, grow_rate=0.5, **({} if metric is None else {"review_metric": metric}))
    model.learn(250, callback=cb)
    expected = metric or "per_sample"
    assert cb.review_metric == expected and model.replay_buffer.active_ratio_metric == expected
    assert len(fed) == len(cb.measured) >= 199  # one per training pass (the last one is read at the next step)
    assert fed == [m[expected] for m in cb.measured]
    assert all(m["any_sample"] >= m["per_sample"] for m in cb.measured)
    assert any(m["any_sample"] > m["per_sample"] + 0.05 for m in cb.measured)  # not the same number
    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    (text,) = [t for t in events.Tags()["tensors"] if t.startswith("plasticity/neuroplastic_expansion/review_metric")]
    assert events.Tensors(text)[0].tensor_proto.string_val[0].decode() == expected


@pytest.mark.parametrize("reset_optimizer", [None, True])
def test_optimizer_state_of_grown_and_pruned_entries(monkeypatch, reset_optimizer):
    """NE App. C: "Additional optimizer resets were eliminated": by default grown connections and pruned neurons keep
    their optimizer state; ``reset_optimizer=True`` gives them a fresh one (zeroed moments, a fresh first step)."""
    import sb3_plasticity.methods.neuroplastic_expansion as ne_module
    from sb3_plasticity.hooks import step_hooks

    class Probe(NeuroplasticExpansionCallback):
        def expand(self, network):
            probes = []
            for _, layer in self.masked[network]:
                (opt,) = self.neurons.optimizers_of(layer.weight)
                state, inactive = opt.state[layer.weight], layer.mask == 0
                state["exp_avg"][inactive], state["exp_avg_sq"][inactive] = 7.0, 49.0  # marks the growable entries
                probes.append((layer, opt, state, inactive))
            super().expand(network)
            for layer, opt, state, inactive in probes:
                grown = inactive & (layer.mask == 1)
                hook = step_hooks(opt).fresh
                pending = hook is not None and layer.weight in hook.pending
                self.seen.append((int(grown.sum()), state["exp_avg"][grown].clone(), state["exp_avg_sq"][grown], pending))
                still = inactive & (layer.mask == 0)  # not grown: back to the zero state of a never-used entry
                state["exp_avg"][still], state["exp_avg_sq"][still] = 0.0, 0.0

    calls = []
    monkeypatch.setattr(ne_module, "reset_neurons", lambda *a, **k: (calls.append(k), reset_neurons(*a, **k))[1])
    model = TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), learning_starts=50, seed=0)
    cb = Probe(grow_interval=150, grow_rate=0.5, **({} if reset_optimizer is None else {"reset_optimizer": True}))
    cb.seen = []
    reset_optimizer = bool(reset_optimizer)  # None: the default, the paper's (keep the state)
    model.learn(320, callback=cb)
    assert cb.n_events == 2 and cb.total_pruned > 0 and calls
    assert sum(n for n, *_ in cb.seen) > 0
    for n, m, v, pending in cb.seen:
        if reset_optimizer:
            assert th.all(m == 0) and th.all(v == 0) and (pending or n == 0)
        else:
            assert th.all(m == 7.0) and th.all(v == 49.0) and not pending
    assert all(k["optimizer"] is reset_optimizer for k in calls)  # the pruned neurons' entries alike
    # pruned connections that keep their moments are still moved by Adam; their stored weights stay 0 all the same
    policy = model.policy
    for module in (policy.actor, policy.critic, policy.actor_target, policy.critic_target):
        for _, layer in masked_layers(module):
            assert th.all(layer.weight[layer.mask == 0] == 0)


def test_a_reinitialised_neuron_without_incoming_connections_gets_a_positive_bias():
    """The rule behind pruned neurons staying growth candidates, with SB3's orthogonal init (zero biases, Tanh)."""
    model = PPO(MaskedActorCriticPolicy, "CartPole-v1", policy_kwargs=dict(net_arch=[8, 8]), n_steps=32, batch_size=32)
    group = next(g for g in discover(model).groups if isinstance(g.producer, MaskedLinear))
    layer = group.producer
    mask = layer.mask.clone()
    mask[0], mask[1], mask[1, 0] = 0.0, 0.0, 1.0  # neuron 0: no incoming connection; neuron 1: one
    layer.set_mask(mask)
    with th.no_grad():
        layer.bias[:2] = -1.0
    reset_neurons(group, [0, 1], outgoing="zero")
    bound = 1 / math.sqrt(layer.in_features)
    assert 0 < float(layer.bias[0]) <= bound  # the init's bias is 0: a draw from (0, 1/sqrt(fan_in)]
    assert float(layer.bias[1]) == 0.0  # connected: the layer's own init, untouched by the rule
    assert th.all(layer.weight[0] == 0) and layer.weight[1, 0] != 0  # masked entries stay zero


class _Snapshot(_Checked):
    """Keeps the policy's state (weights and masks) right after each event, before any later optimizer step."""

    def _finish_event(self):
        super()._finish_event()
        self.after = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}


def test_pruned_neurons_stay_reachable_by_growth_and_the_budget_holds(monkeypatch):
    """Issue 11: a pruned neuron of a masked layer loses its whole incoming row. With a bias <= 0 it would output 0
    on every input and get no gradient anywhere: never a growth (or prune) candidate again. Kill neurons of the
    critics' masked layers by hand, run one event and check every pruned neuron on the next pass."""
    import sb3_plasticity.methods.neuroplastic_expansion as ne_module

    model = TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), learning_starts=50, seed=0)
    critic = model.policy.critic
    killed = {}
    for i, q in enumerate(critic.q_networks):
        layer = q[2]
        rows = layer.mask.sum(dim=1).nonzero().flatten()[:6]  # neurons that exist (have incoming connections)
        with th.no_grad():  # non-negative inputs, non-positive weights, bias -10: ReLU output 0 on every input
            layer.weight[rows] = -layer.weight[rows].abs()
            layer.bias[rows] = -10.0
        killed[f"qf{i}.2"] = set(rows.tolist())
    model.policy.critic_target.load_state_dict(critic.state_dict())
    pruned = []

    def spy(group, idx, **kwargs):
        pruned.append((group, idx.clone()))
        return reset_neurons(group, idx, **kwargs)

    monkeypatch.setattr(ne_module, "reset_neurons", spy)
    cb = _Snapshot(grow_interval=64, grow_rate=0.5, prune_ratio=0.9, end_step=1000)
    model.learn(66, callback=cb)
    ((step, log, before),) = cb.events
    rate = cosine_grow_rate(0.5, step, 1000)

    # the budget: growth by the schedule, pruning within omega * grown, nothing else added
    after = cb.after
    prefix = {"actor": "actor.", "critic": "critic."}
    for net in ("actor", "critic"):
        grown = 0
        for name, _ in cb.masked[net]:
            inactive = int((before[f"{net}/{name}"] == 0).sum())
            assert log[f"{net}/{name}/grown"] == int(rate * inactive)
            grown += log[f"{net}/{name}/grown"]
        assert log[f"{net}/pruned"] <= 0.9 * grown
        on_before = sum(int(before[f"{net}/{name}"].sum()) for name, _ in cb.masked[net])
        on_after = sum(int(m.sum()) for k, m in after.items() if k.startswith(prefix[net]) and k.endswith(".mask"))
        assert on_after == on_before + grown - log[f"{net}/pruned"]
    for key, mask in after.items():  # masked weights are zero, masks equal online and target
        if key.endswith(".mask"):
            assert th.all(after[key[: -len("mask")] + "weight"][mask == 0] == 0)
            target = key.replace("actor.", "actor_target.", 1).replace("critic.", "critic_target.", 1)
            assert th.equal(after[target], mask), key

    by_group = {}
    for group, idx in pruned:
        by_group.setdefault(group, set()).update(idx.tolist())
    for name, rows in killed.items():  # the killed neurons were pruned: the checks below are not vacuous
        assert rows <= next(n for g, n in by_group.items() if g.network == "critic" and g.name == name)
        assert not after[f"critic.{name}.mask"][sorted(rows)].any()  # cut: they left the topology

    # the next pass, on the state right after the event: every pruned neuron is active on the batch and its
    # connections get a non-zero dense gradient, so growth can pick them again
    model.policy.load_state_dict(after)
    dense, outputs, handles = {}, {}, []
    for _, layer in masked_layers(model.policy):
        layer.dense_grad_hook = lambda g, layer=layer: dense.__setitem__(layer, g.detach())
    for group in by_group:
        handles.append(group.producer.register_forward_hook(lambda m, i, o, g=group: outputs.__setitem__(g, o.detach())))
    batch = model.replay_buffer.sample(64)
    model.policy.zero_grad()
    qs = model.critic(batch.observations, batch.actions)
    (sum(q.sum() for q in qs) + model.actor(batch.observations).sum()).backward()
    for handle in handles:
        handle.remove()

    def grad_of(module):
        return dense[module] if isinstance(module, MaskedLinear) else module.weight.grad

    for group, neurons in by_group.items():
        for n in sorted(neurons):
            assert (outputs[group][:, n] > 0).any(), f"pruned neuron {group.network}/{group.name}[{n}] is dead"
            incoming = grad_of(group.producer)[n]
            outgoing = [grad_of(c.module)[:, c.input_index(th.tensor([n]))] for c in group.consumers]
            assert incoming.any() or any(o.any() for o in outgoing), f"{group.network}/{group.name}[{n}]: no gradient"


def test_network_selection_random_growth_and_no_pruning():
    model = _td3()
    critic_masks = {n: m.mask.clone() for n, m in model.policy.critic.named_modules() if isinstance(m, MaskedLinear)}
    inactive = int((model.policy.actor.mu[2].mask == 0).sum())
    cb = NECallback(grow_interval=300, grow_rate=0.5, networks="actor", growth="random", prune=False)
    model.learn(700, callback=cb)
    assert cb.n_events == 2 and cb.total_grown > 0 and cb.total_pruned == 0
    for name, m in model.policy.critic.named_modules():
        if isinstance(m, MaskedLinear):
            assert th.equal(m.mask, critic_masks[name])
    for step in (300, 600):  # without pruning the schedule alone sets the density (T_end = 700, this learn())
        inactive -= int(cosine_grow_rate(0.5, step, 700) * inactive)
    assert int((model.policy.actor.mu[2].mask == 0).sum()) == inactive


def test_grow_rate_per_network():
    model = _td3()
    cb = _Checked(grow_interval=300, grow_rate={"actor": 0.2, "critic": 0.6}, end_step=1000, prune=False)
    model.learn(400, callback=cb)
    ((step, log, before),) = cb.events
    for net, rate_0 in (("actor", 0.2), ("critic", 0.6)):
        rate = cosine_grow_rate(rate_0, step, 1000)
        for name, _ in cb.masked[net]:
            assert log[f"{net}/{name}/grown"] == int(rate * int((before[f"{net}/{name}"] == 0).sum()))
    with pytest.raises(ValueError, match="exactly the networks"):
        _td3().learn(10, callback=NECallback(grow_rate={"critic": 0.1}))


def test_save_load_continue_keeps_masks_and_clip_state(tmp_path):
    model = _td3()
    cb = NECallback(grow_interval=300, grow_rate=0.5)
    model.learn(700, callback=cb)
    masks = {k: layer.mask.clone() for k, layer in cb.layers_by_key().items()}
    clipped = {k: v.clone() for k, v in cb.get_state()["clipped"].items()}
    model.save(tmp_path / "ne")
    loaded = TD3.load(tmp_path / "ne", env=model.get_env())
    for online, target in [("actor", "actor_target"), ("critic", "critic_target")]:
        for name, m in getattr(loaded.policy, online).named_modules():
            if isinstance(m, MaskedLinear):
                assert th.equal(m.mask, masks[f"{online}/{name}"])
                assert th.equal(dict(getattr(loaded.policy, target).named_modules())[name].mask, m.mask)
    loaded.replay_buffer = model.replay_buffer
    cb2 = _Checked(grow_interval=300, grow_rate=0.5)
    loaded.learn(400, callback=cb2, reset_num_timesteps=False)
    assert cb2.n_events == cb.n_events + 1  # counted on from the saved state
    for key, mask in clipped.items():  # clipping of earlier grown connections restored, and extended
        assert th.all(cb2.clip.clipped[cb2.layers_by_key()[key]].cpu() >= mask)
    layer_masks = {k: layer.mask for k, layer in cb2.layers_by_key().items()}
    assert all(th.all(layer_masks[k] >= 0) for k in masks)
    assert sum(int(layer_masks[k].sum()) for k in masks) > sum(int(m.sum()) for m in masks.values())


def test_state_saved_under_the_old_method_name_resumes():
    # models saved before issue 12, when NE's tags and state key were "ne"
    model = _td3()
    cb = NECallback(grow_interval=300, grow_rate=0.5)
    model.learn(400, callback=cb)
    assert cb.n_events == 1 and cb.total_grown > 0
    assert set(model.plasticity_state) == {"neuroplastic_expansion"}
    model.plasticity_state = {"ne": model.plasticity_state.pop("neuroplastic_expansion")}
    cb2 = NECallback(grow_interval=300, grow_rate=0.5)
    cb2.init_callback(model)
    assert (cb2.n_events, cb2.total_grown, cb2.total_pruned) == (1, cb.total_grown, cb.total_pruned)
    assert set(model.plasticity_state) == {"neuroplastic_expansion"}


@pytest.mark.parametrize(
    ("algo", "policy", "env", "kwargs", "networks"),
    [
        (SAC, MaskedSACPolicy, "Pendulum-v1", dict(learning_starts=100), ("actor", "critic")),
        (PPO, MaskedActorCriticPolicy, "CartPole-v1", dict(n_steps=128, batch_size=64, n_epochs=2), ("policy", "value")),
    ],
)
def test_sac_and_ppo(algo, policy, env, kwargs, networks):
    model = algo(policy, env, policy_kwargs=dict(net_arch=[64, 64]), seed=0, **kwargs)
    cb = _Checked(grow_interval=256, grow_rate=0.5)
    model.learn(800, callback=cb)
    assert cb.n_events >= 2
    assert sorted(cb.masked) == sorted(networks)
    for net in networks:
        assert cb.density(net) > 0.4


def test_bad_input():
    with pytest.raises(ValueError, match="prune_ratio"):
        NECallback(prune_ratio=1.0)
    with pytest.raises(ValueError, match="prune_ratio"):
        NECallback(prune_ratio=-0.1)
    with pytest.raises(ValueError, match="grow_rate"):
        NECallback(grow_rate=0.0)
    with pytest.raises(ValueError, match="grow_rate"):
        NECallback(grow_rate=1.5)
    with pytest.raises(ValueError, match="grow_rate"):
        NECallback(grow_rate={"actor": 0.0, "critic": 0.1})
    with pytest.raises(ValueError, match="growth"):
        NECallback(growth="magic")
    with pytest.raises(ValueError, match="review_metric"):
        NECallback(review_metric="mean")
    with pytest.raises(ValueError, match="clip_bound"):
        NECallback(clip_bound="fan_out")
    with pytest.raises(ValueError, match="reset_optimizer"):
        NECallback(reset_optimizer="yes")
    with pytest.raises(ValueError, match="grow_interval"):
        NECallback(grow_interval=0)
    with pytest.raises(ValueError, match="initial_density"):
        TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(initial_density=0.0))
    with pytest.raises(ValueError, match="initial_density"):
        TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(initial_density=1.5))
    with pytest.raises(ValueError, match="MaskedLinear"):
        TD3("MlpPolicy", "Pendulum-v1").learn(10, callback=NECallback())
    one_hidden = TD3(MaskedTD3Policy, "Pendulum-v1", policy_kwargs=dict(net_arch=dict(pi=[16], qf=[16, 16])))
    with pytest.raises(ValueError, match="'actor' has no masked layer"):
        one_hidden.learn(10, callback=NECallback(networks="actor"))


@pytest.mark.slow  # rl-zoo end to end in a subprocess (or a long learn): the slow set
def test_ne_td3_learns_pendulum():
    """NE-TD3 with a small grow_interval: density grows as scheduled and the return improves over the run."""
    model = TD3(
        MaskedTD3Policy,
        "Pendulum-v1",
        policy_kwargs=dict(net_arch=[64, 64]),
        learning_starts=1000,
        replay_buffer_class=ExperienceReviewBuffer,
        seed=1,
    )
    cb = NECallback(grow_interval=1000, grow_rate=0.5)
    model.learn(7000, callback=cb)
    returns = [info["r"] for info in model.ep_info_buffer]
    assert len(returns) == 35
    assert np.mean(returns[-5:]) > np.mean(returns[:5]) + 300
    assert cb.n_events == 6 and cb.density("critic") > 0.6
    assert discover(model) is not None
