"""The P3O paper's baselines and ablations (issue 13), with known answers: ReDo's fixed-fraction selection, CBP every N
gradient steps, SBP's pluggable neuron selection and partial-range cycle, recovery training, reset proportions."""

import collections
import math

import pytest
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.logger import Logger
from torch import nn

from sb3_plasticity import CBPCallback, CycleResetDistillCallback, ReDoCallback
from sb3_plasticity.hooks import AFTER_UPDATE, step_hooks
from sb3_plasticity.methods import neuron_reset
from sb3_plasticity.neurons import NetworkPath, NeuronModel, Stage, groups_from_paths
from tests.helpers import Recorder

PI = ("mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2")


def _ppo(width: int = 16, env: str = "CartPole-v1") -> tuple[PPO, Recorder]:
    model = PPO(
        "MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, policy_kwargs=dict(net_arch=[width, width]), seed=0,
        device="cpu",
    )  # fmt: skip
    rec = Recorder()
    model.set_logger(Logger(None, [rec]))
    return model, rec


def _group(widths=(3, 4, 2)):
    """The hidden group of a Linear-Tanh-Linear net (its consumer: the output layer)."""
    th.manual_seed(0)
    net = nn.Sequential(nn.Linear(widths[0], widths[1]), nn.Tanh(), nn.Linear(widths[1], widths[2]))
    model = NeuronModel(groups_from_paths([NetworkPath((Stage("net", "", net),))]), {"net": [net]})
    return net, model.networks["net"][0]


# ------------------------------------------------------------------------------------------------------------ ReDo
def test_redo_fraction_resets_the_lowest_scores_whatever_tau():
    _, group = _group(widths=(3, 8, 2))
    scores = th.tensor([0.5, 0.1, 0.9, 0.1, 2.0, 3.0, 0.05, 1.0])
    # floor(0.25 * 8) = 2 lowest: 0.05 (neuron 6), then the first of the tied 0.1 (neuron 1); tau plays no part
    cb = ReDoCallback(tau=0.0, reset_fraction=0.25)
    idx, flagged = cb.select(group, scores)
    assert idx.tolist() == [1, 6] and flagged == 0
    # 1% of 256 neurons is floor(2.56) = 2 (P3O Table 4: ReDo's 1800 resets = 300 events x 3 layers x 2)
    _, wide = _group(widths=(3, 256, 2))
    idx, _ = ReDoCallback(reset_fraction=0.01).select(wide, th.arange(256, 0, -1).float())
    assert idx.tolist() == [254, 255]
    # the threshold mode is unchanged: everything <= tau
    assert ReDoCallback(tau=0.1).select(group, scores)[0].tolist() == [1, 3, 6]


def test_redo_fraction_in_ppo_resets_the_bottom_neurons_of_the_scored_batch(monkeypatch):
    model, _ = _ppo()
    model.learn(64)
    obs = model.rollout_buffer.to_torch(model.rollout_buffer.observations.reshape(64, -1))[:32]
    actions = model.rollout_buffer.to_torch(model.rollout_buffer.actions.reshape(64, -1))[:32]
    monkeypatch.setattr(neuron_reset, "sample_batch", lambda *args: (obs, actions))
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    # expected: ReDo scores E|h_i| / mean_k E|h_k| of each tanh layer on the batch, the 4 (25% of 16) lowest
    expected, x = {}, obs
    for name in PI:
        x = th.tanh(x @ before[f"{name}.weight"].T + before[f"{name}.bias"])
        score = x.abs().mean(dim=0)
        expected[name] = sorted(th.argsort(score / score.mean(), stable=True)[:4].tolist())
    cb = ReDoCallback(reset_freq=64, reset_fraction=0.25, networks="policy", log_reset_proportion=True)
    cb.init_callback(model)
    counts = cb.run_event()
    after = model.policy.state_dict()
    assert counts == {("policy", name): 4 for name in PI}
    inputs = {PI[0]: [], PI[1]: expected[PI[0]]}  # columns zeroed as the outgoing weights of the layer below
    for name, consumer in zip(PI, ("mlp_extractor.policy_net.2", "action_net"), strict=True):
        w = f"{name}.weight"
        keep = [c for c in range(after[w].shape[1]) if c not in inputs[name]]
        changed = sorted((after[w][:, keep] != before[w][:, keep]).any(dim=1).nonzero().flatten().tolist())
        assert changed == expected[name], name
        # outgoing weights zeroed (ReDo), except in the consumer's own reset rows, which were drawn afresh
        rows = [r for r in range(after[f"{consumer}.weight"].shape[0]) if r not in expected.get(consumer, [])]
        assert not after[f"{consumer}.weight"][rows][:, expected[name]].any(), name
    assert cb.tracker.proportions(cb.capture.groups) == {"policy": 0.25}


def test_redo_fraction_bad_input():
    with pytest.raises(ValueError, match="reset_fraction"):
        ReDoCallback(reset_fraction=0.0)
    with pytest.raises(ValueError, match="give one of them"):
        ReDoCallback(reset_fraction=0.01, max_reset_fraction=0.05)


# ------------------------------------------------------------------------------------------------------------- CBP
def test_cbp_replace_every_replaces_at_every_nth_gradient_step():
    model, rec = _ppo(width=20)
    cb = CBPCallback(
        replacement_rate=0.1, maturity_threshold=0, replace_every=5, networks="policy", log_freq=64,
        log_reset_proportion=True,
    )  # fmt: skip
    steps = []  # (the layers' update counts, neurons replaced so far) after each optimizer step

    def after_cbp(optimizer, args, kwargs):  # a later post-step hook: CBP's update of this step is done
        steps.append(({cb.states[f"policy/{name}"].n_updates for name in PI}, cb.n_replaced))

    handle = step_hooks(model.policy.optimizer).add_post(AFTER_UPDATE + 1, after_cbp)
    model.learn(256, callback=cb)  # 4 rollouts x 2 epochs x 2 minibatches = 16 gradient steps
    handle.remove()
    assert [updates for updates, _ in steps] == [{n} for n in range(1, 17)]  # both layers count every step
    # the counter accrues only at gradient steps 5, 10 and 15: 0.1 x 20 mature neurons = 2 replaced per layer each time
    totals = [0] + [n for _, n in steps]
    replaced = [(step, totals[step] - totals[step - 1]) for step in range(1, 17) if totals[step] != totals[step - 1]]
    assert replaced == [(5, 4), (10, 4), (15, 4)]
    for name in PI:
        assert sum(v for _, v in rec.values(f"plasticity/cbp/policy/{name}/reset_count")) == 6
    assert cb.n_replaced == cb.total_reset == 12 and not cb.unlogged_counts  # the last window is logged at the end
    share = rec.values("plasticity/cbp/policy/reset_proportion")[-1][1]
    assert 2 / 20 <= share <= 6 / 20


def test_cbp_per_update_mode_is_unchanged_and_replace_every_is_checked():
    model, _ = _ppo(width=20)
    cb = CBPCallback(replacement_rate=0.1, maturity_threshold=0, networks="policy", log_freq=64)
    model.learn(128, callback=cb)  # 8 gradient steps: 0.1 x 20 = 2 per step
    assert cb.total_reset == 8 * 2 * 2  # two layers
    with pytest.raises(ValueError, match="replace_every"):
        CBPCallback(replace_every=0)


# ------------------------------------------------------------------------------------ SBP: which neurons, which event
def _cycle(cb: CycleResetDistillCallback, width: int, events: int) -> list[list[int]]:
    out = []
    for _ in range(events):
        out.append(cb.cycle_indices(width).tolist())
        cb.cycle_index = (cb.cycle_index + 1) % cb.events_per_cycle
    return out


def test_partial_range_cycle_stays_in_the_first_neurons():
    # 20 neurons, 10% per event, first 50%: 2 per event over neurons 0-9, then the cursor wraps
    cb = CycleResetDistillCallback(reset_rate=0.1, reset_range=0.5)
    assert cb.events_per_cycle == 5
    assert _cycle(cb, 20, 6) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [0, 1]]
    # first 25% = 5 neurons: ceil(0.25 / 0.1) = 3 events, the last one cut at the range's end
    cb = CycleResetDistillCallback(reset_rate=0.1, reset_range=0.25)
    assert _cycle(cb, 20, 4) == [[0, 1], [2, 3], [4], [0, 1]]
    # the paper's 1% of 256 with the first 20% (Fig. 19-20): 20 events over neurons 0-50, never beyond
    cb = CycleResetDistillCallback(reset_rate=0.01, reset_range=0.2)
    seen = [i for idx in _cycle(cb, 256, 20) for i in idx]
    assert sorted(seen) == list(range(51)) and cb.cycle_index == 0
    # reset_range 1.0 is the full cycle
    assert CycleResetDistillCallback(reset_rate=0.01).events_per_cycle == 100
    with pytest.raises(ValueError, match="reset_range"):
        CycleResetDistillCallback(reset_range=0.0)


def test_selection_known_answers():
    net, group = _group(widths=(3, 4, 2))
    # ReDo scores E|h| = [0.1, 2, 0, 1]; contribution utility E|h| x mean_k |w_k.| with hand-set outgoing weights
    h = th.tensor([[0.1, -2.0, 0.0, 1.0], [0.1, 2.0, 0.0, -1.0]])
    with th.no_grad():
        net[2].weight.copy_(th.tensor([[10.0, 0.01, 1.0, 1.0], [-10.0, 0.01, -1.0, 1.0]]))  # mean |w|: 10, .01, 1, 1
    picks = {}
    for selection in ("cycle", "redo", "cbp"):
        cb = CycleResetDistillCallback(reset_rate=0.5, selection=selection)  # 2 of 4 per event
        picks[selection] = cb.select_neurons(group, h).tolist()
    assert picks == {"cycle": [0, 1], "redo": [0, 2], "cbp": [1, 2]}  # utilities [1, .02, 0, 1]
    # random: as many as the cycle, drawn with torch's global RNG among the range
    cb = CycleResetDistillCallback(reset_rate=0.25, reset_range=0.5, selection="random")
    _, wide = _group(widths=(3, 16, 2))
    th.manual_seed(7)
    got = cb.select_neurons(wide, None).tolist()
    th.manual_seed(7)
    assert got == sorted(th.randperm(8)[:4].tolist())
    assert all(i < 8 for i in got)
    with pytest.raises(ValueError, match="selection"):
        CycleResetDistillCallback(selection="oldest")


@pytest.mark.parametrize("selection", ["cycle", "random", "redo", "cbp"])
def test_selections_inside_learn_reset_as_many_as_the_cycle(selection):
    model, rec = _ppo()
    chosen = []
    cb = CycleResetDistillCallback(reset_freq=64, reset_rate=0.25, selection=selection, max_distill_epochs=1)
    original = cb.select_neurons

    def spy(group, activation):
        idx = original(group, activation)
        if group.name == PI[0]:
            chosen.append(idx.tolist())
        return idx

    cb.select_neurons = spy
    model.learn(320, callback=cb)  # events run at the rollouts starting at 64, 128, 192, 256
    counts = rec.values(f"plasticity/cycle_reset_distill/policy/{PI[0]}/reset_count")
    assert [s for s, _ in counts] == [64, 128, 192, 256] and all(n == 4 for _, n in counts)
    assert all(len(set(c)) == 4 for c in chosen)
    shares = [v for _, v in rec.values("plasticity/cycle_reset_distill/policy/reset_proportion")]
    assert shares[0] == 0.25 and shares == sorted(shares) and shares[-1] <= 1.0
    if selection == "cycle":
        assert chosen == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
        assert shares == [0.25, 0.5, 0.75, 1.0]
    assert len(rec.values("plasticity/cycle_reset_distill/distill/epochs")) == 4  # selection and distillation compose


def test_reset_proportion_survives_save_and_load(tmp_path):
    model, _ = _ppo()
    cb = CycleResetDistillCallback(reset_freq=64, reset_rate=0.25, reset_range=0.5, distill=False)
    model.learn(192, callback=cb)  # 2 events: the whole first half
    model.save(tmp_path / "m")
    loaded = PPO.load(tmp_path / "m", device="cpu")
    cb2 = CycleResetDistillCallback(reset_freq=64, reset_rate=0.25, reset_range=0.5, distill=False)
    cb2.init_callback(loaded)
    groups = cb2.neurons.select(["policy"], targets=False)
    assert cb2.tracker.proportions(groups) == {"policy": 0.5}
    assert cb2.cycle_index == 0  # two events of a two-event cycle


# ----------------------------------------------------------------------------------------------- recovery training
def _scripted(cb: CycleResetDistillCallback, returns: list[float]) -> list[int]:
    """Replace the evaluation by a script of returns and the extra epoch by a counter."""
    script, epochs = iter(returns), []
    cb._evaluate_return = lambda: next(script)
    cb._train_one_epoch = lambda: epochs.append(1) or 2
    return epochs


@pytest.mark.parametrize(
    ("mode", "threshold", "returns", "epochs", "cap_hit"),
    [
        # drop 100 from a pre-reset 500: recovered at >= 400, after the third epoch (410)
        ("drop", 100.0, [500.0, 350.0, 380.0, 410.0, 999.0], 3, 0.0),
        # at least one epoch even when the first evaluation after it is already fine
        ("drop", 100.0, [500.0, 450.0], 1, 0.0),
        # absolute: recovered at a return >= 100
        ("absolute", 100.0, [50.0, 80.0, 100.0], 3, 0.0),
        # capped at max_recovery_epochs = 4
        ("absolute", 100.0, [1.0, 2.0, 3.0, 4.0, 1000.0], 4, 1.0),
    ],
)
def test_recovery_stops_at_the_threshold(mode, threshold, returns, epochs, cap_hit):
    model, _ = _ppo()
    model.learn(64)
    cb = CycleResetDistillCallback(
        reset_freq=64, reset_rate=0.25, distill=False, recovery_threshold=threshold, recovery_mode=mode,
        max_recovery_epochs=4,
    )  # fmt: skip
    cb.init_callback(model)
    cb.take_rollout()
    ran = _scripted(cb, returns)
    recorded = {}
    cb.record = lambda key, value: recorded.__setitem__(key, float(value))
    cb.run_event()
    assert len(ran) == epochs
    rt = {k.removeprefix("cycle_reset_distill/recovery/"): v for k, v in recorded.items() if "/recovery/" in k}
    assert rt["epochs"] == epochs and rt["total_epochs"] == epochs
    assert rt["gradient_steps"] == 2 * epochs
    assert rt["cap_hit"] == cap_hit
    assert rt["target"] == (returns[0] - threshold if mode == "drop" else threshold)
    assert ("return_before" in rt) == (mode == "drop")
    assert "cycle_reset_distill/distill/epochs" not in recorded


def test_recovery_inside_learn_trains_on_the_last_rollout():
    model, rec = _ppo()
    cb = CycleResetDistillCallback(
        reset_freq=64, reset_rate=0.25, distill=False, recovery_threshold=0.0, recovery_mode="absolute",
        recovery_episodes=1,
    )  # fmt: skip
    model.learn(192, callback=cb)  # 3 rollouts: events at the starts of rollouts 2 and 3
    # CartPole returns are >= 1 > 0: one extra epoch per event, one PPO epoch of 2 minibatches each; PPO counts
    # n_epochs updates per train(): 3 rollouts x 2 epochs + 2 recovery train() calls of 1 epoch
    assert model._n_updates == 3 * 2 + 2
    assert [v for _, v in rec.values("plasticity/cycle_reset_distill/recovery/epochs")] == [1.0, 1.0]
    assert [v for _, v in rec.values("plasticity/cycle_reset_distill/recovery/gradient_steps")] == [2.0, 2.0]
    assert [v for _, v in rec.values("plasticity/cycle_reset_distill/recovery/total_epochs")] == [1.0, 2.0]
    assert all(v > 0 for _, v in rec.values("plasticity/cycle_reset_distill/recovery/eval_steps"))
    assert model.n_epochs == 2 and model.num_timesteps == 192  # restored; evaluation steps are not training steps
    assert cb._eval_env is None  # closed at the end of learn()


def test_recovery_bad_input():
    with pytest.raises(ValueError, match="distill=False"):
        CycleResetDistillCallback(recovery_threshold=100)
    with pytest.raises(ValueError, match="recovery_mode"):
        CycleResetDistillCallback(distill=False, recovery_threshold=100, recovery_mode="best")
    with pytest.raises(ValueError, match="recovery_threshold"):
        CycleResetDistillCallback(distill=False, recovery_threshold=-1)
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), device="cpu")
    with pytest.raises(ValueError, match="rollout"):
        model.learn(10, callback=CycleResetDistillCallback(distill=False, recovery_threshold=100))


def test_table4_arithmetic_of_the_cbp_readings():
    """The count the ppo_cbp.yml header quotes: CBP's rate 0.01 with a maturity of 10,000 gradient steps on 3 x 256
    actor neurons over the runs' gradient steps gives Table 4's 44,208.6 within 0.2%; the literal 1% every 10,000
    steps gives 443. Simulated with the same accumulation as CBPLayerState (counts only)."""

    def replaced(rate: float, maturity: int, updates: int, every: int = 1, n: int = 256) -> int:
        mature, pending, total, queue = 0, 0.0, 0, collections.deque([(maturity + 1, n)])
        for t in range(1, updates + 1):
            while queue and queue[0][0] <= t:
                mature += queue.popleft()[1]
            if t % every:
                continue
            pending += rate * mature
            k = min(math.floor(pending), mature)
            if k:
                pending, mature, total = pending - k, mature - k, total + k
                queue.append((t + maturity + 1, k))
        return total

    short, long = math.ceil(1.25e7 / 8192) * 320, math.ceil(2e7 / 8192) * 320  # 10 epochs x 32 minibatches a rollout

    def table4(**kw) -> float:  # mean over four tasks of 1.25e7 steps and two of 2e7, 3 layers of 256
        return (4 * 3 * replaced(updates=short, **kw) + 2 * 3 * replaced(updates=long, **kw)) / 6

    assert table4(rate=0.01, maturity=10_000) == pytest.approx(44_208.6, rel=0.005)
    assert table4(rate=0.01, maturity=100, every=10_000) < 450
