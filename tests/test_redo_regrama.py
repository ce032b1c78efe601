"""ReDo and ReGraMa events on hand-killed neurons, and the GraMa paper's point (Sec. 4.1) on LeakyReLU/LayerNorm."""

import pytest
import torch as th
from helpers import Recorder
from stable_baselines3 import A2C, TD3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from torch import nn

from sb3_plasticity import GraMaResetCallback, ReDoCallback
from sb3_plasticity.capture import Capture
from sb3_plasticity.methods import neuron_reset
from sb3_plasticity.metrics import dormant_mask, grama_inactive_mask
from sb3_plasticity.neurons import NetworkPath, NeuronModel, Stage, groups_from_paths

KILLED = {"qf0.0": [3, 7, 11], "qf1.0": [0, 20]}


def _trained_td3(seed: int = 0) -> TD3:
    model = TD3(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32]), learning_starts=100, batch_size=64, seed=seed,
        device="cpu",
    )  # fmt: skip
    model.learn(200)
    return model


def _state(model) -> dict[str, th.Tensor]:
    out = {}
    for prefix, module in (("critic", model.critic), ("critic_target", model.critic_target), ("actor", model.actor)):
        out.update({f"{prefix}.{k}": v.detach().clone() for k, v in module.state_dict().items()})
    return out


def _kill(model) -> None:
    with th.no_grad():
        for net in (model.critic, model.critic_target):
            for name, idx in KILLED.items():
                net.get_submodule(name).bias[idx] = -1e4


class _FixedBatch:
    """Make the replay buffer return one fixed batch, so that the scored batch is known."""

    def __init__(self, model, batch_size: int = 64) -> None:
        self.model = model
        self.batch = model.replay_buffer.sample(batch_size)
        self.original = model.replay_buffer.sample

    def __enter__(self):
        self.model.replay_buffer.sample = lambda *args, **kwargs: self.batch
        return self.batch

    def __exit__(self, *exc) -> None:
        self.model.replay_buffer.sample = self.original


def _outputs(model, batch) -> list[th.Tensor]:
    with th.no_grad():
        return [q.clone() for net in (model.critic, model.critic_target) for q in net(batch.observations, batch.actions)]


def _run_event(model, cb):
    """One event on a fixed batch. Returns (batch, flagged neurons per layer, state/outputs/Adam before and
    after the reset, counts), both taken right around the surgery on the weights that were scored."""
    snaps = {}
    with _FixedBatch(model) as batch:
        cb.init_callback(model)
        if cb.scored_on == "batch":
            snaps["before"] = (_state(model), _outputs(model, batch))
            counts = cb.run_event()
            snaps["after"] = (_state(model), _outputs(model, batch))
            records = None
        else:
            opt = model.critic.optimizer

            def snap(key):
                def hook(*args) -> None:
                    snaps.setdefault(key, (_state(model), _outputs(model, batch)))

                return hook

            first = opt.register_step_pre_hook(snap("before"))
            cb.request_event()  # arms the capture and registers the reset hook, after ours
            last = opt.register_step_pre_hook(snap("after"))
            model.train(gradient_steps=1, batch_size=64)
            first.remove()
            last.remove()
            records = {g.name: cb.capture.records[g] for g in cb.capture.groups}
            cb.advance()  # logs the finished event
            counts = cb.last_counts
    return batch, records, snaps, counts


@pytest.mark.parametrize("cls", [ReDoCallback, GraMaResetCallback])
def test_one_event_revives_exactly_the_dead_neurons(cls):
    model = _trained_td3()
    _kill(model)
    # target = online, so a neuron dead in one is dead in the other (the target lags by polyak averaging: a
    # neuron dead online can be alive there, and its twin's reset then changes the target's output)
    model.critic_target.load_state_dict(model.critic.state_dict())
    cb = cls(reset_freq=1000, tau=0.0, networks=["critic"])
    obs_act = None
    if cls is ReDoCallback:
        # expected: the neurons whose output is 0 on the whole scored batch
        batch, _, snaps, counts = _run_event(model, cb)
        obs_act = th.cat([batch.observations, batch.actions], dim=1)
        before_state = snaps["before"][0]
        dead = {}
        with th.no_grad():
            for i in range(2):
                x = obs_act
                for j in (0, 2):
                    w, b = before_state[f"critic.qf{i}.{j}.weight"], before_state[f"critic.qf{i}.{j}.bias"]
                    x = th.relu(x @ w.T + b)
                    dead[f"qf{i}.{j}"] = (x.abs().sum(dim=0) == 0).nonzero().flatten().tolist()
    else:
        # expected: the neurons with zero loss gradient on the scored training pass (GraMa, tau = 0)
        batch, records, snaps, counts = _run_event(model, cb)
        obs_act = th.cat([batch.observations, batch.actions], dim=1)
        dead = {name: grama_inactive_mask(rec.grad, 0.0).nonzero().flatten().tolist() for name, rec in records.items()}
    for name, idx in KILLED.items():
        assert set(idx) <= set(dead[name])
    assert counts == {("critic", name): len(idx) for name, idx in dead.items()}

    (before, out_before), (after, out_after) = snaps["before"], snaps["after"]
    # outputs of the online critic and its target unchanged by the reset, on the scored batch
    for q, qb in zip(out_after, out_before, strict=True):
        assert th.equal(q, qb)
    touched = {}
    for name, idx in dead.items():
        if not idx:
            continue
        nxt_name = name[:-1] + str(int(name[-1]) + 2)
        layer, nxt = model.critic.get_submodule(name), model.critic.get_submodule(nxt_name)
        # target twins got the same rows; outgoing columns of the reset neurons are zero in both, except in the
        # rows of the next layer's own reset neurons (fresh incoming weights, drawn in full)
        for prefix in ("critic", "critic_target"):
            assert th.equal(after[f"{prefix}.{name}.weight"][idx], after[f"critic.{name}.weight"][idx])
            fresh_rows = dead.get(nxt_name, [])
            kept = [r for r in range(nxt.weight.shape[0]) if r not in fresh_rows]
            assert not after[f"{prefix}.{nxt_name}.weight"][kept][:, idx].any()
            for key, dim in ((f"{prefix}.{name}.weight", 0), (f"{prefix}.{name}.bias", 0), (f"{prefix}.{nxt_name}.weight", 1)):
                mask = touched.setdefault(key, th.zeros_like(before[key], dtype=th.bool))
                if dim == 0:
                    mask[idx] = True
                else:
                    mask[:, idx] = True
        assert after[f"critic.{name}.bias"][idx].abs().max() <= 1 / layer.weight.shape[1] ** 0.5
        # fresh Adam state: zero moments on the reset entries, incoming and outgoing
        for param, sel in ((layer.weight, (idx,)), (layer.bias, (idx,)), (nxt.weight, (slice(None), idx))):
            state = model.critic.optimizer.state[param]
            assert not state["exp_avg"][sel].any() and not state["exp_avg_sq"][sel].any()
    # the killed first-layer neurons fire again on the batch
    for name, idx in KILLED.items():
        with th.no_grad():
            h = th.relu(obs_act @ after[f"critic.{name}.weight"].T + after[f"critic.{name}.bias"])
        assert (h[:, idx].abs().sum(dim=0) > 0).all()
    # every other entry is bit-identical, in the online critic, its target and the actor
    for key, value in before.items():
        keep = ~touched[key] if key in touched else th.ones_like(value, dtype=th.bool)
        assert th.equal(after[key][keep], value[keep]), key


def _zero_gradient_but_active(activation_fn) -> TD3:
    """Critic neurons 2 and 9 of qf0.0 are strongly active but their outgoing weights are zero: no gradient."""
    model = TD3(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32], activation_fn=activation_fn),
        learning_starts=100, batch_size=64, seed=1, device="cpu",
    )  # fmt: skip
    model.learn(150)
    with th.no_grad():
        for net in (model.critic, model.critic_target):
            net.qf0[0].bias[[2, 9]] = 5.0
            net.qf0[2].weight[:, [2, 9]] = 0.0
    return model


@pytest.mark.parametrize("activation_fn", [nn.LeakyReLU, nn.ReLU, nn.Tanh])
def test_regrama_flags_zero_gradient_neurons_that_redo_misses(activation_fn):
    redo, grama = ReDoCallback(tau=0.1, networks="critic"), GraMaResetCallback(tau=0.0, networks="critic")
    model = _zero_gradient_but_active(activation_fn)
    _, _, _, redo_counts = _run_event(model, redo)
    model = _zero_gradient_but_active(activation_fn)
    _, records, _, grama_counts = _run_event(model, grama)
    record = records["qf0.0"]
    assert grama_inactive_mask(record.grad, 0.0)[[2, 9]].all()
    assert not dormant_mask(record.activation, 0.1)[[2, 9]].any()  # large activations: ReDo sees them as healthy
    assert grama_counts[("critic", "qf0.0")] >= 2
    if activation_fn is not nn.ReLU:
        # no exactly-zero activations with LeakyReLU/Tanh: ReDo resets nothing in qf0.0 at tau 0.1 here
        assert redo_counts[("critic", "qf0.0")] < grama_counts[("critic", "qf0.0")]


def test_layernorm_mlp_grama_flags_what_redo_misses():
    th.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 1)
    )
    with th.no_grad():
        net[3].weight[:, [5, 6]] = 0.0  # neurons 5, 6 of the first layer no longer affect the loss
    opt = th.optim.Adam(net.parameters(), lr=1e-3)
    model = NeuronModel(groups_from_paths([NetworkPath((Stage("net", "", net),))]), {"net": [net]}, [opt])
    first = model.networks["net"][0]
    assert first.norm is net[1] and first.output is net[2]
    capture = Capture(model)
    capture.arm()
    x = th.randn(128, 4)
    (net(x) - 1).pow(2).mean().backward()
    opt.step()
    capture.disarm()
    rec = capture.records[first]
    flagged = grama_inactive_mask(rec.grad, tau=0.0)
    assert flagged[[5, 6]].all() and flagged.sum() == 2 + int((rec.activation.abs().sum(0) == 0).sum())
    assert not dormant_mask(rec.activation, tau=0.1)[[5, 6]].any()


@pytest.mark.parametrize("cls, tag", [(ReDoCallback, "redo"), (GraMaResetCallback, "regrama")])
def test_a2c_events_run_and_log_their_counts(cls, tag, monkeypatch):
    """A2C has no ``batch_size`` (it trains on the whole rollout): ReDo scores on the whole rollout, ReGraMa on A2C's
    own training pass; both run their events inside learn() and log the reset counts."""
    scored: list[int] = []
    sample_batch = neuron_reset.sample_batch

    def spy(algorithm, batch_size):
        observations, actions = sample_batch(algorithm, batch_size)
        scored.append(observations.shape[0])
        return observations, actions

    monkeypatch.setattr(neuron_reset, "sample_batch", spy)
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = A2C("MlpPolicy", env, n_steps=8, policy_kwargs=dict(net_arch=[16, 16]), seed=0, device="cpu")
    rec = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[rec]))
    cb = cls(reset_freq=64, tau=0.5)
    model.learn(256, callback=cb)
    counts = rec.values(f"plasticity/{tag}/reset_count")
    assert len(counts) == cb.n_events == 4  # due at 64, 128, 192, 256
    assert cb.total_reset == sum(n for _, n in counts) > 0
    assert {network for network in ("policy", "value") if rec.values(f"plasticity/{tag}/{network}/reset_count")} == {
        "policy",
        "value",
    }
    if cls is ReDoCallback:
        assert scored == [8 * 2] * 4  # the whole rollout: n_steps * n_envs


def test_request_event_runs_one_event_outside_the_schedule():
    """request_event() (public): ReDo scores and resets at once; ReGraMa arms the next training pass, which resets,
    and advance() after it logs the event. Neither runs a second event unasked."""
    model = _trained_td3()
    _kill(model)
    redo = ReDoCallback(reset_freq=10_000, tau=0.0, networks=["critic"])
    redo.init_callback(model)
    redo.request_event()
    assert redo.n_events == 1
    assert all(redo.last_counts[("critic", name)] >= len(idx) for name, idx in KILLED.items())
    redo.advance()
    assert redo.n_events == 1

    model = _trained_td3()
    _kill(model)
    grama = GraMaResetCallback(reset_freq=10_000, tau=0.0, networks=["critic"])
    grama.init_callback(model)
    with pytest.raises(RuntimeError, match="request_event"):
        grama.run_event()
    grama.request_event()
    assert grama.capture.armed and grama.n_events == 0  # the reset waits for the algorithm's training pass
    model.train(gradient_steps=1, batch_size=64)
    grama.advance()
    assert grama.n_events == 1 and not grama.capture.armed
    assert all(grama.last_counts[("critic", name)] >= len(idx) for name, idx in KILLED.items())
    model.train(gradient_steps=1, batch_size=64)
    grama.advance()  # measures the ratio after the event, starts nothing
    model.train(gradient_steps=1, batch_size=64)
    grama.advance()
    assert grama.n_events == 1
    grama.on_training_end()


def test_multiples_passed_before_the_first_update_give_one_regrama_event():
    """ReGraMa's event due at step 30 waits for the first update (learning_starts 100); the multiples 60 and 90 that
    pass meanwhile belong to it (as multiples skipped between polls do), so no second event follows right behind it:
    events at the first update, then at 120 and 150."""
    model = TD3(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), learning_starts=100, batch_size=32, seed=0,
        device="cpu",
    )  # fmt: skip
    rec = Recorder()
    model.set_logger(Logger(None, [rec]))
    grama = GraMaResetCallback(reset_freq=30, tau=0.0, networks=["critic"])
    model.learn(170, callback=grama)
    steps = [step for step, _ in rec.values("plasticity/regrama/reset_count")]
    assert grama.n_events == 3
    assert len(steps) == 3 and steps[0] <= 102 and 120 <= steps[1] < 125 and 150 <= steps[2] < 155
