"""SBP / P3O: alpha-DKL values, the cycle covering every neuron once, frozen reset neurons, untouched critic."""

import copy
import math

import pytest
import torch as th
from stable_baselines3 import PPO, SAC, TD3
from torch.distributions import Categorical, Normal

from sb3_plasticity import CycleResetDistillCallback, alpha_dkl
from tests.helpers import read_scalars


def _gauss_kl(p: Normal, q: Normal) -> th.Tensor:
    return (th.log(q.scale / p.scale) + (p.scale**2 + (p.loc - q.loc) ** 2) / (2 * q.scale**2) - 0.5).sum(-1).mean()


def test_alpha_dkl_is_forward_and_reverse_kl_at_the_ends():
    th.manual_seed(0)
    t = Normal(th.randn(5, 3), th.rand(5, 3) + 0.5)
    s = Normal(th.randn(5, 3), th.rand(5, 3) + 0.5)
    assert alpha_dkl(t, s, 1.0) == pytest.approx(float(_gauss_kl(t, s)), rel=1e-5)
    assert alpha_dkl(t, s, 0.0) == pytest.approx(float(_gauss_kl(s, t)), rel=1e-5)
    tc, sc = Categorical(logits=th.randn(4, 6)), Categorical(logits=th.randn(4, 6))
    forward = (tc.probs * (tc.probs.log() - sc.probs.log())).sum(-1).mean()
    reverse = (sc.probs * (sc.probs.log() - tc.probs.log())).sum(-1).mean()
    assert alpha_dkl(tc, sc, 1.0) == pytest.approx(float(forward), rel=1e-5)
    assert alpha_dkl(tc, sc, 0.0) == pytest.approx(float(reverse), rel=1e-5)
    assert alpha_dkl(tc, sc, 0.3) == pytest.approx(float(0.3 * forward + 0.7 * reverse), rel=1e-5)


def test_alpha_dkl_matches_monte_carlo_for_gaussians():
    th.manual_seed(1)
    t = Normal(th.tensor([[0.3, -1.0]]), th.tensor([[0.8, 1.5]]))
    s = Normal(th.tensor([[-0.2, 0.5]]), th.tensor([[1.2, 0.6]]))
    n = 400_000
    xt, xs = t.sample((n,)), s.sample((n,))
    forward = (t.log_prob(xt) - s.log_prob(xt)).sum(-1).mean()
    reverse = (s.log_prob(xs) - t.log_prob(xs)).sum(-1).mean()
    alpha = 0.4
    assert alpha_dkl(t, s, alpha) == pytest.approx(float(alpha * forward + (1 - alpha) * reverse), rel=2e-2)


@pytest.mark.parametrize("rate", [0.01, 0.25, 0.3])
@pytest.mark.parametrize("width", [37, 64, 256])
def test_one_cycle_resets_every_neuron_exactly_once(rate, width):
    cb = CycleResetDistillCallback(reset_rate=rate)
    seen = []
    for _ in range(cb.events_per_cycle):
        seen += cb.cycle_indices(width).tolist()
        cb.cycle_index = (cb.cycle_index + 1) % cb.events_per_cycle
    assert sorted(seen) == list(range(width))
    assert cb.events_per_cycle == math.ceil(1 / rate - 1e-9)


def _ppo(tmp_path=None, **kwargs):
    return PPO(
        "MlpPolicy", "Pendulum-v1", n_steps=128, batch_size=64, n_epochs=2, policy_kwargs=dict(net_arch=[16, 16]),
        seed=0, device="cpu", tensorboard_log=str(tmp_path) if tmp_path else None, **kwargs,
    )  # fmt: skip


def _value_state(model) -> dict[str, th.Tensor]:
    keep = ("mlp_extractor.value_net", "value_net")
    return {k: v.clone() for k, v in model.policy.state_dict().items() if k.startswith(keep)}


def _event(model, seed: int = 0, **kwargs) -> tuple[dict[str, th.Tensor], dict[str, float]]:
    """Run one event of a callback driven by hand on the model's last rollout: the policy's state afterwards and the
    values the event recorded."""
    cb = CycleResetDistillCallback(reset_freq=1, reset_rate=0.25, **kwargs)
    cb.init_callback(model)
    cb.take_rollout()
    recorded = {}
    cb.record = lambda key, value: recorded.__setitem__(key, float(value))
    th.manual_seed(seed)  # the reset's fresh weights
    cb.run_event()
    return {k: v.clone() for k, v in model.policy.state_dict().items()}, recorded


def test_event_freezes_reset_neurons_and_leaves_the_critic_alone():
    model = _ppo()
    model.learn(256)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    values = _value_state(model)
    # the same event without distillation, on a twin (same seeds, same training), gives the weights right after the
    # reset (same seed: same fresh weights)
    twin = _ppo()
    twin.learn(256)
    assert all(th.equal(v, before[k]) for k, v in twin.policy.state_dict().items())
    after_reset, _ = _event(twin, distill=False)
    after, recorded = _event(model, distill_tau=1e-6, max_distill_epochs=3)

    for name in ("mlp_extractor.policy_net.0", "mlp_extractor.policy_net.2"):
        w, b = f"{name}.weight", f"{name}.bias"
        # the cycle's first event resets neurons 0-3 (a quarter of 16) of each hidden layer of the actor
        reset = [i for i in range(16) if not th.equal(after_reset[w][i], before[w][i])]
        assert reset == [0, 1, 2, 3], name
        # freshly initialised (orthogonal rows of norm sqrt(2), zero bias), then frozen during distillation
        if name.endswith(".2"):  # square 16x16 layer: orthonormal rows scaled by SB3's gain sqrt(2)
            assert th.allclose(after_reset[w][reset].norm(dim=1), th.full((4,), math.sqrt(2)), atol=1e-5)
        assert not after_reset[b][reset].any()
        assert th.equal(after[w][reset], after_reset[w][reset])
        assert th.equal(after[b][reset], after_reset[b][reset])
        # the other neurons of the actor did learn
        others = [i for i in range(16) if i not in reset]
        assert not th.equal(after[w][others], after_reset[w][others])
    assert not th.equal(after["action_net.weight"], after_reset["action_net.weight"])
    assert not th.equal(after["log_std"], after_reset["log_std"])
    # the value branch is untouched
    for key, value in values.items():
        assert th.equal(after[key], value), key
    # the final loss is <= tau or the cap was hit, and it says which
    assert recorded["cycle_reset_distill/distill/epochs"] == 3 and recorded["cycle_reset_distill/distill/cap_hit"] == 1.0
    assert recorded["cycle_reset_distill/distill/loss"] > 1e-6
    assert recorded["cycle_reset_distill/distill/kl_final"] <= recorded["cycle_reset_distill/distill/kl_before"]
    assert recorded["cycle_reset_distill/cursor"] == 0.0


def test_distillation_reaches_tau_when_not_capped():
    model = _ppo()
    model.learn(256)
    cb = CycleResetDistillCallback(reset_freq=1, reset_rate=0.5, distill_tau=0.01, max_distill_epochs=200)
    cb.init_callback(model)
    cb.take_rollout()
    recorded = {}
    cb.record = lambda key, value: recorded.__setitem__(key, float(value))
    cb.run_event()
    assert cb.cycle_index == 1  # the cursor moved on: the next event resets the second half
    assert recorded["cycle_reset_distill/distill/loss"] <= 0.01 and recorded["cycle_reset_distill/distill/cap_hit"] == 0.0


def test_take_rollout_needs_a_rollout_buffer():
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), device="cpu")
    cb = CycleResetDistillCallback()
    cb.init_callback(model)
    with pytest.raises(ValueError, match="SAC has no rollout buffer"):
        cb.take_rollout()


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_inside_learn_events_and_tags(algo, tmp_path):
    if algo == "ppo":
        model = _ppo(tmp_path)
        cb = CycleResetDistillCallback(reset_freq=200, reset_rate=0.5)
        model.learn(700, callback=cb)  # due at 200, 400, 600: run when the next rollout starts (256, 512, 640)
        expected_steps = [256, 512, 640]
        network = "policy"
    else:
        model = SAC(
            "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), learning_starts=50, seed=0,
            device="cpu", tensorboard_log=str(tmp_path),
        )  # fmt: skip
        critic = copy.deepcopy(model.critic.state_dict())
        cb = CycleResetDistillCallback(reset_freq=100, reset_rate=0.5, alpha=0.8, distill_samples=256)
        model.learn(300, callback=cb)
        expected_steps = [100, 200, 300]
        network = "actor"
        assert any(not th.equal(v, critic[k]) for k, v in model.critic.state_dict().items())  # SAC still trains it
    scalars = read_scalars(model.logger.dir)
    assert [s for s, _ in scalars["plasticity/cycle_reset_distill/reset_count"]] == expected_steps
    assert [v for _, v in scalars["plasticity/cycle_reset_distill/cursor"]] == [0.0, 0.5, 0.0]
    for tag in ("epochs", "total_epochs", "epoch_ratio", "loss", "kl_before", "kl_final", "cap_hit"):
        assert len(scalars[f"plasticity/cycle_reset_distill/distill/{tag}"]) == 3, tag
    assert f"plasticity/cycle_reset_distill/{network}/mlp_extractor.policy_net.0/reset_count" in scalars or (
        f"plasticity/cycle_reset_distill/{network}/latent_pi.0/reset_count" in scalars
    )
    assert "plasticity/cycle_reset_distill/policy_kl" in scalars


def test_cycle_ablation_does_not_distill(tmp_path):
    model = _ppo(tmp_path)
    cb = CycleResetDistillCallback(reset_freq=200, reset_rate=0.5, distill=False)
    model.learn(300, callback=cb)
    scalars = read_scalars(model.logger.dir)
    assert "plasticity/cycle_reset_distill/reset_count" in scalars
    assert not any(k.startswith("plasticity/cycle_reset_distill/distill/") for k in scalars)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(alpha=-0.1), "alpha"),
        (dict(alpha=1.5), "alpha"),
        (dict(reset_rate=0.0), "reset_rate"),
        (dict(reset_rate=1.5), "reset_rate"),
        (dict(distill_tau=0.0), "distill_tau"),
        (dict(distill_tau=-1), "distill_tau"),
        (dict(reset_freq=0), "reset_freq"),
        (dict(max_distill_epochs=0), "max_distill_epochs"),
        (dict(outgoing="drop"), "outgoing"),
    ],
)
def test_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CycleResetDistillCallback(**kwargs)


def test_deterministic_actor_is_refused():
    model = TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), device="cpu")
    with pytest.raises(ValueError, match="stochastic"):
        model.learn(10, callback=CycleResetDistillCallback())


def test_cursor_survives_save_and_load(tmp_path):
    model = _ppo(tmp_path)
    cb = CycleResetDistillCallback(reset_freq=200, reset_rate=0.25, max_distill_epochs=1)
    model.learn(300, callback=cb)
    assert cb.cycle_index == 1
    model.save(tmp_path / "p3o")
    loaded = PPO.load(tmp_path / "p3o", device="cpu")
    cb2 = CycleResetDistillCallback(reset_freq=200, reset_rate=0.25)
    cb2.init_callback(loaded)
    assert cb2.cycle_index == 1 and cb2.total_distill_epochs == cb.total_distill_epochs


def test_state_saved_under_the_old_method_name_resumes():
    # models saved when the method's tags and state key were "cycle_reset"
    model = _ppo()
    model.plasticity_state = {"cycle_reset[policy]": {"cycle_index": 2, "total_distill_epochs": 7}}
    cb = CycleResetDistillCallback(reset_freq=200, reset_rate=0.25)
    cb.init_callback(model)
    assert cb.cycle_index == 2 and cb.total_distill_epochs == 7
    assert set(model.plasticity_state) == {"cycle_reset_distill[policy]"} and cb.state_key == "cycle_reset_distill[policy]"


def test_old_module_path_is_the_same_module():
    import sb3_plasticity.methods.cycle_reset_distill as new
    import sb3_plasticity.methods.sbp as old

    assert old is new and old.CycleResetDistillCallback is CycleResetDistillCallback


def test_sac_event_leaves_the_critic_and_its_target_untouched():
    model = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16, 16]), learning_starts=50, seed=0, device="cpu")
    model.learn(120)
    critic = {k: v.clone() for k, v in model.critic.state_dict().items()}
    target = {k: v.clone() for k, v in model.critic_target.state_dict().items()}
    actor = {k: v.clone() for k, v in model.actor.state_dict().items()}
    cb = CycleResetDistillCallback(reset_freq=1, reset_rate=0.25, alpha=0.8, distill_samples=64, max_distill_epochs=2)
    cb.init_callback(model)
    cb.run_event()
    assert all(th.equal(v, critic[k]) for k, v in model.critic.state_dict().items())
    assert all(th.equal(v, target[k]) for k, v in model.critic_target.state_dict().items())
    assert any(not th.equal(v, actor[k]) for k, v in model.actor.state_dict().items())  # the actor did change
