"""Hyperparameters of the Neuroplastic Expansion experiments for rl_zoo3's ``.py`` conf files, and what those
files need to go through rl_zoo3's whole workflow (``train``, ``enjoy``, ``record_video``, ``--trained-agent``,
``-optimize``).

The settings live here once and ``zoo_configs/neuroplastic_expansion/*.py`` are built from them:
:func:`ne_paper_td3` (the NE paper's TD3), :func:`ne_callbacks`, :func:`ne_td3_hyperparams` (NE-TD3 and its ablations
on MuJoCo) and :func:`drq_settings` (DrQ on DMC pixels, NE Table 3).

- :func:`zoo_class`: a class as the string rl_zoo3 ``eval``s itself (``replay_buffer_class``), so that the
  ``config.yml`` rl_zoo3 saves holds text, not a class object: its ``enjoy`` / ``record_video`` test
  ``"HerReplayBuffer" in hyperparams["replay_buffer_class"]`` and crash on a class.
- :class:`PolicyKwargsGuardCallback`: rl_zoo3's ``-optimize`` replaces the whole ``policy_kwargs`` with its own
  ``net_arch`` (and, on-policy, ``activation_fn``), which drops what a method's policy needs (a masked policy's
  ``initial_density``, its size). The guard, first in a config's ``callback`` list, puts the config's
  ``policy_kwargs`` back with a warning.

NE-TD3 (NE paper App. C.1 Table 1, C.2 Table 2, and the "NE" paragraph of App. C):

- TD3 as in ``zoo_configs/neuroplastic_expansion/td3.yml``: hidden (256, 128) ReLU, actor lr 1e-4, critic lr 1e-3
  (:class:`~sb3_plasticity.NetworkLearningRateCallback`), batch 128, buffer 1e6, gamma 0.99, exploration noise
  N(0, 0.1), learning_starts 25000, 6e6 steps, raw observations and rewards;
- masked actor and critic (:class:`~sb3_plasticity.MaskedTD3Policy`): 25% initial density (Sec. 4.1), Erdos-Renyi,
  first and last layers dense;
- Hopper, Walker2d, HalfCheetah: grow interval 20000, grow rate 0.15 of the remaining capacity, prune bound
  omega 0.2, review floor ("threshold of ER") 0.25; Humanoid, Ant: 25000, 0.01, 0.4, 0.35; all: ER window
  c = 450, kappa = 3, T_end = the training length.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Sequence
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity.buffers import ExperienceReviewBuffer
from sb3_plasticity.checks import check_choice, check_int

__all__ = [
    "NE_TASKS",
    "PolicyKwargsGuardCallback",
    "drq_settings",
    "guarded_callbacks",
    "ne_callbacks",
    "ne_combined_hyperparams",
    "ne_paper_td3",
    "ne_td3_hyperparams",
    "scaled_net_arch",
    "td3_naive_growth_hyperparams",
    "td3_scaled_hyperparams",
    "zoo_class",
]

GUARD = "sb3_plasticity.zoo.PolicyKwargsGuardCallback"


def zoo_class(cls: type) -> str:
    """``cls`` as a Python expression that rl_zoo3 ``eval``s itself (``replay_buffer_class``, ``policy_kwargs`` and
    ``replay_buffer_kwargs`` strings are evaluated in ``rl_zoo3/exp_manager.py``, where ``__import__`` is a builtin),
    e.g. ``"__import__('sb3_plasticity').ExperienceReviewBuffer"``.

    A ``.py`` config that gives the class object instead trains, but the ``config.yml`` rl_zoo3 saves then holds a
    ``!!python/name`` tag and rl_zoo3's ``enjoy`` / ``record_video`` crash on it (``TypeError: argument of type
    'ABCMeta' is not iterable``); with the string they read it back, and ``--trained-agent`` evaluates it again.
    """
    top = cls.__module__.split(".")[0]
    if getattr(importlib.import_module(top), cls.__name__, None) is cls:
        return f"__import__({top!r}).{cls.__name__}"
    return f"__import__({cls.__module__!r}, fromlist=[{cls.__name__!r}]).{cls.__qualname__}"


class PolicyKwargsGuardCallback(BaseCallback):
    """Keeps a config's ``policy_kwargs`` when rl_zoo3's tuner (``-optimize``) replaced them.

    The zoo's samplers return a fresh ``policy_kwargs`` with their own ``net_arch`` (and ``activation_fn`` for PPO /
    A2C) that replaces the config's as a whole, so a masked policy would silently lose its size and
    ``initial_density``. At the start of ``learn()`` this callback compares the model's ``policy_kwargs`` with
    ``policy_kwargs`` (the config's): if a key of the config's is missing, they were replaced wholesale; the
    config's are put back over them (the tuner's ``net_arch`` is ignored), the policy, optimizers and buffer are
    rebuilt before any step, and a ``UserWarning`` says so. A complete override, one that sets every key of the
    config's (``-params policy_kwargs:"dict(net_arch=[64, 64], initial_density=0.25)"``), is kept.

    It must come first in the ``callback`` list (the callbacks after it then see the rebuilt policy); see
    :func:`guarded_callbacks`. It does nothing on a loaded model (``--trained-agent``), whose ``policy_kwargs``
    are the saved ones.

    :param policy_kwargs: the config's ``policy_kwargs``.
    """

    def __init__(self, policy_kwargs: dict[str, Any], verbose: int = 0) -> None:
        super().__init__(verbose)
        if not isinstance(policy_kwargs, dict) or not policy_kwargs:
            raise ValueError(f"policy_kwargs must be a non-empty dict (the config's), got {policy_kwargs!r}")
        self.policy_kwargs = dict(policy_kwargs)
        self.restored = False

    def _init_callback(self) -> None:
        current = dict(self.model.policy_kwargs or {})
        missing = sorted(k for k in self.policy_kwargs if k not in current)
        if not missing or self.model.num_timesteps > 0:
            return
        warnings.warn(
            f"policy_kwargs={current!r} lack {missing} of this config's policy_kwargs={self.policy_kwargs!r}: they were "
            "replaced as a whole (rl_zoo3's -optimize does that with its own net_arch). The config's are restored, so "
            "the method keeps its architecture and the tuner's net_arch is ignored; to change the architecture, edit "
            "the config (or give every key of its policy_kwargs).",
            UserWarning,
        )
        self.model.policy_kwargs = {**current, **self.policy_kwargs}
        self.model._setup_model()  # a new policy (and optimizers, buffer) before the first step
        self.restored = True

    def _on_step(self) -> bool:
        return True


def guarded_callbacks(policy_kwargs: dict[str, Any], callbacks: list) -> list:
    """A zoo ``callback`` list: :class:`PolicyKwargsGuardCallback` for ``policy_kwargs`` first, then ``callbacks``."""
    return [{GUARD: {"policy_kwargs": dict(policy_kwargs)}}, *callbacks]


# env id -> (grow_interval, grow_rate, prune_ratio, review_floor), NE App. C
NE_TASKS: dict[str, tuple[int, float, float, float]] = {
    "Hopper-v5": (20_000, 0.15, 0.2, 0.25),
    "Walker2d-v5": (20_000, 0.15, 0.2, 0.25),
    "HalfCheetah-v5": (20_000, 0.15, 0.2, 0.25),
    "Ant-v5": (25_000, 0.01, 0.4, 0.35),
    "Humanoid-v5": (25_000, 0.01, 0.4, 0.35),
}


def ne_paper_td3() -> dict[str, Any]:
    """TD3 of the NE experiments (App. C.1 Table 1, C.2 Table 2; td3.yml): everything but the policy, the replay
    buffer and the callbacks."""
    return dict(
        n_timesteps=6e6,
        learning_rate=1e-4,  # the actor's rate (see td3.yml); the critic's is set by NetworkLearningRateCallback
        buffer_size=1_000_000,
        learning_starts=25_000,
        batch_size=128,
        gamma=0.99,
        tau=0.005,
        train_freq=1,
        gradient_steps=1,
        policy_delay=2,
        target_policy_noise=0.2,
        target_noise_clip=0.5,
        noise_type="normal",
        noise_std=0.1,
    )


def ne_callbacks(ne_kwargs: dict[str, Any]) -> list[dict[str, dict[str, Any]]]:
    """The zoo ``callback`` list of an NE-TD3 run: actor/critic learning rates (1e-4 / 1e-3), the NE callback with
    ``ne_kwargs``, the monitor every 5000 steps."""
    return [
        {"sb3_plasticity.NetworkLearningRateCallback": dict(actor=1e-4, critic=1e-3)},
        {"sb3_plasticity.NeuroplasticExpansionCallback": ne_kwargs},
        {"sb3_plasticity.PlasticityMonitorCallback": dict(log_freq=5000)},
    ]


def scaled_net_arch(extra_layers: int = 0) -> list[int] | dict[str, list[int]]:
    """``net_arch`` of the NE paper's scaled-up TD3 (App. C.1, the capacity axis of Fig. 2 and Fig. 14).

    App. C.1: "For the 1.8x agent, we add one MLP as a hidden layer in two critic networks in front of the output
    head and one MLP layer as the embedding layer at the front of the actor. And the hidden dim is also increased to
    256. And so on, we follow the above approach to grow the model by an equal amount each time." Our reading: level
    ``n`` adds ``n`` hidden layers of 256 units, at the front of the actor and in front of each Q-network's output,
    and keeps Table 1's (256, 128): actor ``[256] * n + [256, 128]``, critic ``[256, 128] + [256] * n``. Level 0 is
    Table 1's network, level 1 the paper's "1.8x" (on HalfCheetah it has about 2.1x the weights and 1.7x the hidden
    neurons of level 0: the paper does not say what its factor counts). The sizes of Fig. 2 and Fig. 14 are not in
    the text: the configs give levels 0 to 3.
    """
    extra_layers = check_int("extra_layers", extra_layers, 0)
    if extra_layers == 0:
        return [256, 128]
    return dict(pi=[256] * extra_layers + [256, 128], qf=[256, 128] + [256] * extra_layers)


def td3_scaled_hyperparams(extra_layers: int) -> dict[str, dict[str, Any]]:
    """Vanilla TD3 (td3.yml's settings) with the network of :func:`scaled_net_arch` level ``extra_layers``."""
    policy_kwargs = dict(net_arch=scaled_net_arch(extra_layers))
    return {
        env_id: dict(
            ne_paper_td3(),
            policy="MlpPolicy",
            policy_kwargs=dict(policy_kwargs),
            callback=[
                {"sb3_plasticity.NetworkLearningRateCallback": dict(actor=1e-4, critic=1e-3)},
                {"sb3_plasticity.PlasticityMonitorCallback": dict(log_freq=5000)},
            ],
        )
        for env_id in NE_TASKS
    }


def td3_naive_growth_hyperparams(extra_layers: int = 0, initial_neurons: float = 0.2) -> dict[str, dict[str, Any]]:
    """TD3 with NE Sec. 3.1's naive random growth (the "naive growth" of Fig. 2 and Fig. 14).

    Sec. 3.1: the network starts at "20% of neurons from each layer of the full TD3 architecture", chosen uniformly,
    and grows by "uniformly adding k new connections" per layer. Here: every layer of actor and critic maskable
    (:class:`~sb3_plasticity.MaskedTD3Policy` with ``initial_density=1.0``, ``dense_first_last=False``), the NE
    callback keeps 20% of each hidden layer's neurons at the start (``initial_neurons``: the other neurons lose all
    their connections) and grows random connections (``growth="random"``) on NE's schedule of the task (App. C: grow
    interval, cosine rate); no pruning, no experience review (both come later, Sec. 3.2), no weight clipping (Sec. 3.1
    names none). ``k`` per event is not given for the naive growth: NE's rate is our choice.
    """
    out = {}
    for env_id, (interval, rate, _omega, _floor) in NE_TASKS.items():
        ne_kwargs: dict[str, Any] = dict(
            grow_interval=interval,
            grow_rate=rate,
            prune_ratio=0.0,
            clip_kappa=None,
            growth="random",
            prune=False,
            initial_neurons=initial_neurons,
        )
        policy_kwargs = dict(net_arch=scaled_net_arch(extra_layers), initial_density=1.0, dense_first_last=False)
        out[env_id] = dict(
            ne_paper_td3(),
            policy="sb3_plasticity.MaskedTD3Policy",
            policy_kwargs=policy_kwargs,
            callback=guarded_callbacks(policy_kwargs, ne_callbacks(ne_kwargs)),
        )
    return out


COMBINED = {
    "redo": {"sb3_plasticity.ReDoCallback": dict(reset_freq=1000, tau=0.1)},  # as td3_redo.yml
    "reset": {"sb3_plasticity.ResetCallback": dict(reset_freq=90000, layers="all")},  # as td3_reset.yml
}


def ne_combined_hyperparams(other: str) -> dict[str, dict[str, Any]]:
    """NE-TD3 (:func:`ne_td3_hyperparams`) combined with LayerNorm, ReDo or Reset (NE earlier version, App. C, Fig. 11).

    - ``"ln"``: the policy is :class:`~sb3_plasticity.MaskedLayerNormTD3Policy` (td3_ln.py's norms on NE's masked
      networks); the NE callback as in ne_td3.py.
    - ``"redo"`` / ``"reset"``: the callback of td3_redo.yml / td3_reset.yml (same settings) runs on the same masked
      networks, listed before the NE callback, which gets ``compose=True``: NE owns the masks, the other method the
      values of the existing weights (see docs/methods.md, "NE combined with LN, ReDo or Reset").
    """
    check_choice("other", other, ("ln", *COMBINED))
    out = ne_td3_hyperparams()
    for hp in out.values():
        if other == "ln":
            hp["policy"] = "sb3_plasticity.MaskedLayerNormTD3Policy"
            continue
        callbacks = hp["callback"]
        ne = next(i for i, item in enumerate(callbacks) if "sb3_plasticity.NeuroplasticExpansionCallback" in item)
        callbacks[ne] = {
            "sb3_plasticity.NeuroplasticExpansionCallback": dict(
                callbacks[ne]["sb3_plasticity.NeuroplasticExpansionCallback"], compose=True
            )
        }
        callbacks.insert(ne, {k: dict(v) for k, v in COMBINED[other].items()})
    return out


def ne_td3_hyperparams(
    review: bool = True,
    prune: bool = True,
    networks: Sequence[str] | None = None,
    growth: str = "gradient",
    extra_layers: int = 0,
) -> dict[str, dict[str, Any]]:
    """rl_zoo3 hyperparameters of NE-TD3 for every task of NE Fig. 6, or one of the paper's ablations.

    :param review: use the :class:`~sb3_plasticity.ExperienceReviewBuffer` (False: NE Fig. 9a "w/o ER").
    :param prune: prune dormant neurons (False: NE Fig. 3 "w/o pruning" on TD3; NE Table 4's "w/o prune" is NE-DrQ
        on DMC pixels, ``ne_drq_pixels.py`` with ``prune: False``).
    :param networks: networks that grow (``("actor",)`` or ``("critic",)``: NE Fig. 9b); None: both.
    :param growth: ``"gradient"`` or ``"random"`` (NE Fig. 3's random growth).
    :param extra_layers: the network of :func:`scaled_net_arch` (NE Fig. 2 and 14; 0: Table 1's (256, 128)).
    """
    out = {}
    for env_id, (interval, rate, omega, floor) in NE_TASKS.items():
        ne_kwargs: dict[str, Any] = dict(grow_interval=interval, grow_rate=rate, prune_ratio=omega, clip_kappa=3.0)
        if not prune:
            ne_kwargs["prune"] = False
        if networks is not None:
            ne_kwargs["networks"] = list(networks)
        if growth != "gradient":
            ne_kwargs["growth"] = growth
        policy_kwargs = dict(net_arch=scaled_net_arch(extra_layers), initial_density=0.25)
        hyperparams: dict[str, Any] = dict(
            ne_paper_td3(),
            policy="sb3_plasticity.MaskedTD3Policy",  # rl_zoo3 needs a dotted string, even in .py configs
            policy_kwargs=policy_kwargs,
            callback=guarded_callbacks(policy_kwargs, ne_callbacks(ne_kwargs)),
        )
        if review:
            hyperparams["replay_buffer_class"] = zoo_class(ExperienceReviewBuffer)
            hyperparams["replay_buffer_kwargs"] = dict(review_window=450, review_floor=floor)
        out[env_id] = hyperparams
    return out


def drq_settings() -> dict[str, Any]:
    """DrQ on DMC pixels as in NE App. C Table 3 (see ``zoo_configs/neuroplastic_expansion/drq_pixels.py``):
    everything but the policy, the replay buffer and the callbacks.

    Replay buffer 1e6 transitions (Table 3). SB3 stores each stacked ``(9, 84, 84)`` uint8 observation twice
    (``observations`` and ``next_observations``, 127 kB per transition, 127 GB when full). The DrQ buffers reserve
    that memory without committing it (:class:`~sb3_plasticity.buffers.LazyStorageMixin`; SB3's own ``np.zeros``
    of one 59 GiB array fails on a machine with less RAM + swap under Linux's default overcommit heuristic), so it
    becomes resident as transitions are written: 63.5 GB after the 5e5 agent steps of these configs (a warning at
    start says when the full size exceeds the available memory). ``optimize_memory_usage`` (one copy) is not used:
    n-step buffers refuse it (SB3's ``NStepReplayBuffer``, :class:`~sb3_plasticity.ExperienceReviewBuffer` with
    ``n_steps > 1``), and SB3's one-step buffers allow it only with ``handle_timeout_termination=False``, which on
    DMC, whose episodes end only by the time limit, would make every episode end a terminal state. On a smaller
    machine pass ``-params buffer_size:100000`` (DrQ's own capacity)."""
    return dict(
        n_timesteps=500_000,
        policy_kwargs=dict(net_arch=[1024, 1024], features_extractor_kwargs=dict(features_dim=50)),
        learning_rate=1e-4,
        buffer_size=1_000_000,
        learning_starts=2000,
        batch_size=256,
        gamma=0.99,
        tau=0.01,
        train_freq=2,
        gradient_steps=1,
        ent_coef="auto_0.1",
    )


# GraMa Sec. 5.1: the DMC tasks from state of Fig. 8 and Table 8 (humanoid-run)
GRAMA_BRO_TASKS = ("humanoid-stand", "humanoid-walk", "humanoid-run", "dog-stand", "dog-walk")


def grama_bro_sac(method_callbacks: list[dict[str, dict[str, Any]]] | None = None) -> dict[str, dict[str, Any]]:
    """rl_zoo3 hyperparameters of BRO-net SAC with GraMa's settings (App. A.1, Table 3) on the DMC state tasks of
    GraMa Fig. 8, with ``method_callbacks`` before the learning-rate and monitor callbacks.

    Table 3: ``BroNetSACPolicy`` width 256, actor 1 block, critic 2 blocks, actor lr 1e-4, critic lr 1e-3
    (:class:`~sb3_plasticity.NetworkLearningRateCallback`), replay ratio 2 (``gradient_steps: 2`` per env step),
    batch 128, buffer 1e6, gamma 0.99. Not given by the paper, ours: learning_starts 5000 (GraMa's MLP SAC, App.
    A.3), SB3's SAC defaults otherwise (target tau 0.005, automatic entropy), 1e6 env steps (BRO's DMC budget). The
    monitor uses App. A.1's thresholds (ReDo tau 0.02, GraMa tau 0.01) so its ratios are the ones the paper plots.
    """
    out = {}
    for name in GRAMA_BRO_TASKS:
        domain, task = name.split("-", 1)
        out[f"sb3_plasticity/DMC-{domain}-{task}-v0"] = dict(
            n_timesteps=1_000_000,
            policy="sb3_plasticity.BroNetSACPolicy",
            policy_kwargs=dict(width=256, actor_blocks=1, critic_blocks=2),
            learning_rate=1e-3,  # the entropy coefficient's; actor and critic rates below
            buffer_size=1_000_000,
            learning_starts=5000,
            batch_size=128,
            gamma=0.99,
            tau=0.005,
            train_freq=1,
            gradient_steps=2,
            ent_coef="auto",
            callback=[
                *(method_callbacks or []),
                {"sb3_plasticity.NetworkLearningRateCallback": dict(actor=1e-4, critic=1e-3)},
                {"sb3_plasticity.PlasticityMonitorCallback": dict(log_freq=5000, tau=0.02, grama_tau=0.01)},
            ],
        )
    return out


def grama_mlp_sac(
    env_ids: Sequence[str],
    policy: str = "MlpPolicy",
    activation: str | None = None,
    method_callbacks: list[dict[str, dict[str, Any]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """rl_zoo3 hyperparameters of GraMa's MLP SAC (App. A.3, Table 7: ``grama/sac.yml``'s settings) on ``env_ids``,
    with another policy or hidden ``activation`` (a ``torch.nn`` class name: GraMa Fig. 4's LeakyReLU and LayerNorm
    SAC) and ``method_callbacks`` before the learning-rate and monitor callbacks. ``policy_kwargs`` is the string
    rl_zoo3 evaluates, so the saved ``config.yml`` holds no class object (``rl_zoo3.enjoy`` reads it back)."""
    activation_kwarg = f", activation_fn=nn.{activation}" if activation else ""
    return {
        env_id: dict(
            n_timesteps=3_000_000,
            policy=policy,
            policy_kwargs=f"dict(net_arch=[256, 256]{activation_kwarg})",
            learning_rate=1e-3,  # the entropy coefficient's; actor 3e-4 and critic 1e-3 below
            buffer_size=1_000_000,
            learning_starts=5000,
            batch_size=256,
            gamma=0.99,
            tau=0.005,
            train_freq=1,
            gradient_steps=1,
            target_update_interval=1,
            ent_coef="auto",
            callback=[
                *(method_callbacks or []),
                {"sb3_plasticity.NetworkLearningRateCallback": dict(actor=3e-4, critic=1e-3)},
                {"sb3_plasticity.PlasticityMonitorCallback": dict(log_freq=5000)},
            ],
        )
        for env_id in env_ids
    }


def grama_drqv2_quadruped(
    method_callbacks: list[dict[str, dict[str, Any]]] | None = None, weight_decay: float | None = None
) -> dict[str, dict[str, Any]]:
    """rl_zoo3 hyperparameters of DrQ-v2 on pixel Quadruped Run for GraMa Table 9 (App. C): ``drqv2/drqv2.py``'s
    settings (1.5e6 agent steps = GraMa's "3M step" read as frames), ``method_callbacks`` before the monitor, and
    ``weight_decay`` in Adam's kwargs (coupled L2, as SB3's optimizer_kwargs give it)."""
    from sb3_plasticity.zoo_plugin import drqv2_settings

    settings = drqv2_settings("quadruped", "run")
    if weight_decay is not None:
        settings["policy_kwargs"] = dict(settings["policy_kwargs"], optimizer_kwargs=dict(weight_decay=weight_decay))
    return {
        "sb3_plasticity/DMCPixels-quadruped-run-v0": dict(
            settings,
            n_timesteps=1_500_000,
            callback=[*(method_callbacks or []), {"sb3_plasticity.PlasticityMonitorCallback": dict(log_freq=5000)}],
        )
    }


ATARI_GAMES = ("DemonAttack", "Pong", "Breakout", "Seaquest", "Asterix")


def redo_dqn_atari(method_callbacks: list[dict[str, dict[str, Any]]] | None = None) -> dict[str, dict[str, Any]]:
    """rl_zoo3 hyperparameters of DQN on Atari in ReDo's setting (Sokar et al. 2023, Fig. 1: Dopamine's DQN at replay
    ratio 1, 10M frames), for ``ALE/<game>-v5`` of :data:`ATARI_GAMES`, with ``method_callbacks`` before the monitor
    (every 50,000 agent steps). The settings and their sources are listed in ``zoo_configs/redo_dqn/dqn_atari.py``."""
    ATARI_DQN = {
        "env_wrapper": [
            {"stable_baselines3.common.atari_wrappers.AtariWrapper": {"noop_max": 0, "terminal_on_life_loss": False}}
        ],
        "env_kwargs": {"frameskip": 1, "repeat_action_probability": 0.25},
        "frame_stack": 4,
        "policy": "CnnPolicy",
        "policy_kwargs": "dict(optimizer_kwargs=dict(eps=1.5e-4))",
        "n_timesteps": 2_500_000,
        "buffer_size": 1_000_000,
        "learning_rate": 6.25e-5,
        "batch_size": 32,
        "gamma": 0.99,
        "learning_starts": 20_000,
        "train_freq": 1,
        "gradient_steps": 1,
        "target_update_interval": 2000,
        "exploration_fraction": 0.1,
        "exploration_initial_eps": 1.0,
        "exploration_final_eps": 0.01,
        "optimize_memory_usage": False,
    }
    monitor = {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 50_000}}
    return {f"ALE/{game}-v5": dict(ATARI_DQN, callback=[*(method_callbacks or []), monitor]) for game in ATARI_GAMES}
