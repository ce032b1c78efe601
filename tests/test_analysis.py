"""GraMa paper's neuron analyses (Fig. 3, 6, 7) on hand-built networks with known answers, and inside learn()."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3 import TD3
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from sb3_plasticity.analysis import (
    QUADRANTS,
    IrreversibilityCallback,
    IrreversibilityTracker,
    QuadrantAnalysisCallback,
    flagged_neurons,
    masked_neurons,
    performance_vs_inactive,
    prune_and_evaluate,
    quadrant_analysis,
    quadrant_labels,
    scores_from_records,
    top_mask,
    training_pass_scores,
)
from sb3_plasticity.capture import Capture
from sb3_plasticity.continual import module_neuron_model

LOW_LOW, HIGH_ACT_LOW_GRAD, LOW_ACT_HIGH_GRAD, HIGH_HIGH = (
    QUADRANTS.index(n) for n in ("low_act_low_grad", "high_act_low_grad", "low_act_high_grad", "high_act_high_grad")
)


def _hand_net() -> nn.Sequential:
    """2 -> 4 -> 1 with constant hidden outputs h = [0, 5, 1, 1] (neuron 0 dead, bias -1) and outgoing weights
    [1, 0, 3, 1]: neuron 1 is the most active but its output reaches nothing (zero gradient).

    With y = 3 + 1 = 4 and L = mean(y^2), dL/dz = w_out * dL/dy * relu'(z) = [0, 0, 3, 1] * 8 / B, so
    s = [0, 5, 1, 1] / 1.75 (ReDo) and G = [0, 0, 3, 1] (GraMa)."""
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with th.no_grad():
        net[0].weight.zero_()
        net[0].bias.copy_(th.tensor([-1.0, 5.0, 1.0, 1.0]))
        net[2].weight.copy_(th.tensor([[1.0, 0.0, 3.0, 1.0]]))
        net[2].bias.zero_()
    return net


def _hand_scores(net: nn.Sequential):
    model = module_neuron_model(net, network="net")
    capture = Capture(model, gradients=True)
    capture.arm()
    net(th.randn(8, 2)).pow(2).mean().backward()
    capture.disarm()
    return scores_from_records(capture.groups, capture.records)


def test_hand_scores_are_the_redo_and_grama_scores():
    (scores,) = _hand_scores(_hand_net())
    assert th.allclose(scores.activation, th.tensor([0.0, 5.0, 1.0, 1.0]) / 1.75)
    assert th.allclose(scores.gradient, th.tensor([0.0, 0.0, 3.0, 1.0]), atol=1e-6)


def test_dead_and_zero_gradient_neurons_land_in_their_quadrants():
    scores = _hand_scores(_hand_net())
    report = quadrant_analysis(scores, tau=0.1, grama_tau=0.1, top=0.25)["net"]  # top 25% of 4: one neuron
    assert report.labels["net/0"].tolist() == [LOW_LOW, HIGH_ACT_LOW_GRAD, LOW_ACT_HIGH_GRAD, LOW_LOW]
    assert report.redo_flagged["net/0"].tolist() == [True, False, False, False]  # ReDo sees only the dead one
    assert report.grama_flagged["net/0"].tolist() == [True, True, False, False]  # GraMa also the silent one
    assert report.redo_shares == {
        "high_act_high_grad": 0.0,
        "high_act_low_grad": 0.0,
        "low_act_high_grad": 0.0,
        "low_act_low_grad": 1.0,
    }
    assert report.grama_shares["low_act_low_grad"] == 0.5 and report.grama_shares["high_act_low_grad"] == 0.5
    assert report.redo_ratio == 0.25 and report.grama_ratio == 0.5 and report.overlap == 1.0
    # top 50%: activation ties (neurons 2 and 3) go to the lower index
    half = quadrant_analysis(scores, tau=0.1, grama_tau=0.1, top=0.5)["net"]
    assert half.labels["net/0"].tolist() == [LOW_LOW, HIGH_ACT_LOW_GRAD, HIGH_HIGH, LOW_ACT_HIGH_GRAD]
    per_layer = quadrant_analysis(scores, tau=0.1, grama_tau=0.1, per_layer=True)
    assert list(per_layer) == ["net/0"]


def test_top_mask_and_quadrant_labels_edge_cases():
    assert top_mask(th.tensor([0.0, 0.0, 0.0, 0.0]), 0.5).tolist() == [False] * 4  # zero is never "high"
    assert top_mask(th.tensor([1.0, 3.0, 2.0, 3.0]), 0.5).tolist() == [False, True, False, True]
    alive = th.tensor([True, False, True, True])
    labels = quadrant_labels(th.tensor([1.0, 9.0, 2.0, 0.0]), th.tensor([0.0, 9.0, 1.0, 2.0]), 0.34, alive)
    assert labels.tolist() == [LOW_LOW, -1, HIGH_ACT_LOW_GRAD, LOW_ACT_HIGH_GRAD]


def test_pruning_a_neuron_without_outgoing_weights_keeps_the_output():
    net = _hand_net()
    group = module_neuron_model(net).groups[0]
    x = th.randn(5, 2)
    y = net(x)
    with masked_neurons({group: th.tensor([False, True, False, False])}):  # outgoing weight 0
        assert th.equal(net(x), y)
    with masked_neurons({group: th.tensor([False, False, True, False])}):  # h = 1 through weight 3
        assert th.allclose(net(x), y - 3.0)
    assert th.equal(net(x), y) and not net[1]._forward_hooks  # hooks gone, no weight touched
    with pytest.raises(ValueError, match="entries"):
        with masked_neurons({group: th.tensor([True])}):
            pass


def test_flagged_neurons_by_threshold_and_by_fraction():
    scores = _hand_scores(_hand_net())
    (group,) = [s.group for s in scores]
    assert flagged_neurons(scores, "grama")[group].tolist() == [True, True, False, False]  # tau 0.01
    assert flagged_neurons(scores, "redo")[group].tolist() == [True, False, False, False]  # tau 0.02
    assert flagged_neurons(scores, "redo", fraction=0.5)[group].tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="not both"):
        flagged_neurons(scores, "redo", tau=0.1, fraction=0.5)


def test_irreversibility_tracker_follows_a_fixed_sample():
    tracker = IrreversibilityTracker(tau=0.0095, n_neurons=10)
    assert tracker.update(th.tensor([1.0, 2.0, 1.0])) is None  # nothing inactive: no sample yet
    first = tracker.update(th.tensor([0.0, 0.5, 0.0, 0.001, 2.0]))
    assert tracker.indices.tolist() == [0, 2, 3]
    assert (first["inactive_ratio"], first["never_recovered_ratio"], first["recovered_ratio"]) == (1.0, 1.0, 0.0)
    second = tracker.update(th.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))  # neuron 2 recovers
    assert second["inactive_ratio"] == pytest.approx(2 / 3) and second["never_recovered_ratio"] == pytest.approx(2 / 3)
    assert second["recovered_ratio"] == pytest.approx(1 / 3)
    third = tracker.update(th.tensor([0.0, 0.0, 0.0, 0.5, 0.0]))  # 2 is inactive again, 3 recovers
    assert third["inactive_ratio"] == pytest.approx(2 / 3) and third["never_recovered_ratio"] == pytest.approx(1 / 3)
    assert third["recovered_ratio"] == pytest.approx(2 / 3) and third["checks"] == 3
    everyone = IrreversibilityTracker(n_neurons=2, sample="all", seed=3)
    everyone.update(th.tensor([0.0, 1.0, 1.0, 1.0]), alive=th.tensor([False, True, True, True]))
    assert everyone.indices.numel() == 2 and 0 not in everyone.indices.tolist()


def test_performance_vs_inactive_from_tensorboard_logs(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    runs = {"a": (0.1, 100.0), "b": (0.3, 50.0), "c": (0.5, 10.0)}
    for name, (ratio, ret) in runs.items():
        with SummaryWriter(str(tmp_path / name)) as writer:
            for step in (100, 200, 1000):
                writer.add_scalar("plasticity/critic/grama_inactive_ratio", ratio if step == 1000 else 0.9, step)
                writer.add_scalar("rollout/ep_rew_mean", ret if step == 1000 else -1e3, step)
    result = performance_vs_inactive({n: tmp_path / n for n in runs})  # the last 10% of steps: the final point
    assert [r["run"] for r in result.rows] == ["a", "b", "c"]
    assert [r["inactive_ratio"] for r in result.rows] == pytest.approx([0.1, 0.3, 0.5])
    assert [r["normalized_return"] for r in result.rows] == pytest.approx([1.0, 40 / 90, 0.0])
    assert result.spearman == pytest.approx(-1.0) and result.pearson < -0.9
    with pytest.raises(KeyError, match="no 'x'"):
        performance_vs_inactive([tmp_path / "a"], ratio_tag="x")


# ----------------------------------------------------------------------------------------------------------------
# Inside learn() on Pendulum
# ----------------------------------------------------------------------------------------------------------------
CRITIC_KILLED = [3, 7, 11]  # of critic qf0.0, the critic's first group: positions 3, 7, 11 in the network
ACTOR_KILLED = [2, 5]  # of actor mu.0


def _kill(layers, idx) -> None:
    with th.no_grad():
        for layer in layers:
            layer.weight[idx] = 0.0
            layer.bias[idx] = -1e4


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list] = {}
    for folder in sorted({f.parent for f in log_dir.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
        for tag in acc.Tags()["histograms"]:
            out.setdefault(tag, []).extend((e.step, None) for e in acc.Histograms(tag))
    return out


def test_callbacks_and_pruning_on_pendulum(tmp_path):
    model = TD3(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), learning_starts=100, batch_size=64, seed=0,
        device="cpu", tensorboard_log=str(tmp_path / "tb"),
    )  # fmt: skip
    _kill([model.critic.qf0[0], model.critic_target.qf0[0]], CRITIC_KILLED)
    quadrants = QuadrantAnalysisCallback(freq=100, save_steps=[200], save_dir=tmp_path / "npz")
    irreversibility = IrreversibilityCallback(check_freq=100, n_neurons=50, networks="critic")
    model.learn(400, callback=[quadrants, irreversibility])

    scalars = _scalars(tmp_path / "tb")
    for network in ("actor", "critic"):
        assert (
            len(scalars[f"plasticity/analysis/{network}/redo_flagged_ratio"]) == 4
        )  # steps 102 (first update), 200, 300, 400
        assert f"plasticity/analysis/{network}/grama_flagged_ratio" in scalars
    shares = {q: scalars[f"plasticity/analysis/critic/quadrant_{q}"] for q in QUADRANTS}
    assert all(len(v) == 4 for v in shares.values())
    for i in range(4):
        assert sum(v[i][1] for v in shares.values()) == pytest.approx(1.0)
    assert all(v > 0 for _, v in shares["low_act_low_grad"])  # the dead critic neurons
    saved = np.load(quadrants.saved[0])
    assert quadrants.saved[0].name == "quadrants_step200.npz" and int(saved["step"]) == 200
    assert saved["critic/qf0.0/quadrant"][CRITIC_KILLED].tolist() == [LOW_LOW] * 3
    assert saved["critic/qf0.0/redo_flagged"][CRITIC_KILLED].all()
    assert saved["critic/qf0.0/grama_flagged"][CRITIC_KILLED].all()
    assert (saved["critic/qf0.0/activation_raw"][CRITIC_KILLED] == 0).all()

    tracker = irreversibility.trackers["critic"]
    assert set(CRITIC_KILLED) <= set(tracker.indices.tolist())  # dead, hence in the inactive sample
    assert tracker.always_inactive[[tracker.indices.tolist().index(i) for i in CRITIC_KILLED]].all()  # never back
    assert len(scalars["plasticity/analysis/critic/never_recovered_ratio"]) == 4
    assert len(scalars["plasticity/analysis/critic/tracked_scores"]) == 4  # histogram of the sample's scores
    assert "plasticity/analysis/actor/never_recovered_ratio" not in scalars
    assert model.plasticity_state["analysis_irreversibility[critic]"]["critic"]["checks"] == 4
    model.save(tmp_path / "model.zip")
    resumed = IrreversibilityCallback(check_freq=100, networks="critic")
    resumed.init_callback(TD3.load(tmp_path / "model.zip", device="cpu"))  # the sample survives save/load
    assert th.equal(resumed.trackers["critic"].indices, tracker.indices) and resumed.trackers["critic"].checks == 4

    # Fig. 7: prune the actor's neurons that each score flags; the GraMa scores' training pass leaves no trace
    _kill([model.actor.mu[0], model.actor_target.mu[0]], ACTOR_KILLED)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    opt_before = model.critic.optimizer.state_dict()["state"][0]["exp_avg"].clone()
    n_updates = model._n_updates
    scores = training_pass_scores(model, "actor")
    assert all(th.equal(v, model.policy.state_dict()[k]) for k, v in before.items())
    assert th.equal(model.critic.optimizer.state_dict()["state"][0]["exp_avg"], opt_before)
    assert model._n_updates == n_updates
    assert (scores[0].gradient[ACTOR_KILLED] == 0).all() and scores[0].name == "mu.0"

    env = model.get_env()
    grama = prune_and_evaluate(model, env, score="grama", tau=0.0, n_eval_episodes=1)  # scored on its own pass
    assert grama.networks == ["actor"] and grama.pruned["actor/mu.0"] >= len(ACTOR_KILLED)
    assert 0 < grama.pruned_ratio["actor"] < 1
    assert len(grama.returns) == 1 and len(grama.baseline_returns) == 1
    redo = prune_and_evaluate(model, env, score="redo", fraction=0.5, n_eval_episodes=1)
    assert redo.pruned["actor/mu.0"] == 16 and redo.pruned["actor/mu.2"] == 16
    assert redo.baseline_returns == grama.baseline_returns  # same seed, deterministic policy: same episodes
    assert all(th.equal(v, model.policy.state_dict()[k]) for k, v in before.items())
    # pruning the dead neurons changes no action
    group = next(s.group for s in scores if s.name == "mu.0")
    obs = th.as_tensor(model.replay_buffer.observations[:50, 0])
    actions = model.actor(obs)
    with masked_neurons({group: th.isin(th.arange(32), th.tensor(ACTOR_KILLED))}):
        assert th.equal(model.actor(obs), actions)
