"""Network architectures of the papers' baselines, as SB3 policies: LayerNorm MLPs, BRO-net and multi-head networks.

Like :mod:`sb3_plasticity.policies`, every class here is SB3's own policy whose networks are changed inside
``make_actor`` / ``make_critic`` / ``_build_mlp_extractor``, before the optimizers exist, so the optimizers, the
target copies, ``.to(device)`` and ``save``/``load`` see the final modules. ``activation_fn`` (SB3's policy kwarg)
picks the activation of every hidden layer (ReLU, Tanh, Sigmoid, LeakyReLU, SiLU, ...).

- **LayerNorm** (``LayerNormTD3Policy``, ``LayerNormSACPolicy``, ``LayerNormActorCriticPolicy``): an
  ``nn.LayerNorm`` after each hidden ``nn.Linear`` (``Linear -> LayerNorm -> activation``), output layers untouched:
  the NE paper's LN-TD3 baseline (App. C.2: "layer normalization after the hidden layers of both the critic and
  actor networks"). Discovery needs no declaration: the norm sits inside the ``nn.Sequential``.
- **BRO-net** (``BroNetTD3Policy``, ``BroNetSACPolicy``; GraMa paper App. A.1, Tables 1-2): an input layer
  ``Linear-LayerNorm-activation`` (the *stem*), ``n`` residual :class:`BroNetBlock` (``x + LN(Linear(act(LN(
  Linear(x)))))``), then the output layer. The policies declare their neurons (``neuron_paths``).
- **Multi-head** (``MultiHeadTD3Policy``, ``MultiHeadSACPolicy``; NE paper Sec. 4.2): a shared trunk and one output
  layer per task, chosen by a one-hot task id at the end of the observation. Heads are consumers, so the methods
  act on the trunk only.

See ``docs/networks.md`` for which neurons each architecture exposes and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy, ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import FlattenExtractor, create_mlp
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, SACPolicy
from stable_baselines3.sac.policies import Actor as SACActor
from stable_baselines3.td3.policies import TD3Policy
from torch import nn

from sb3_plasticity.adapters import NetworkPath, OffPolicyAdapter, adapter_for
from sb3_plasticity.checks import check_bool, check_int

__all__ = [
    "BRO_BLOCKS",
    "BroNet",
    "BroNetBlock",
    "BroNetSACPolicy",
    "BroNetTD3Policy",
    "LayerNormActorCriticPolicy",
    "LayerNormSACPolicy",
    "LayerNormTD3Policy",
    "MultiHeadMlp",
    "MultiHeadSACActor",
    "MultiHeadSACPolicy",
    "MultiHeadTD3Policy",
    "TaskHeads",
    "add_layer_norms",
    "task_id_dims",
]

# Residual blocks per network that BRO-net policies accept: GraMa App. A.1 scales BRO-net from 1 to 4 blocks.
BRO_BLOCKS = (1, 2, 3, 4)

# A route is one input-to-output data flow through a network: (name inside the network, module) in order.
Route = list[tuple[str, nn.Module]]


# ----------------------------------------------------------------------------------------------------
# Discovery helpers shared by the BRO-net and multi-head policies
# ----------------------------------------------------------------------------------------------------
def _off_policy_adapter(policy: nn.Module) -> OffPolicyAdapter:
    adapter = adapter_for(policy)
    if not isinstance(adapter, OffPolicyAdapter):
        raise TypeError(f"{type(policy).__name__} is not an off-policy actor-critic policy ({adapter.family})")
    return adapter


def _off_policy_paths(policy: nn.Module, routes: Callable[[str, nn.Module], list[Route]]) -> list[NetworkPath]:
    """One :class:`NetworkPath` per route of every TD3/SAC network (online first, then targets), each after the
    network's features extractor (a shared one is the network ``features``): the policy adapter's
    :meth:`~sb3_plasticity.adapters.OffPolicyAdapter.paths_from_routes`."""
    return _off_policy_adapter(policy).paths_from_routes(policy, routes)


def _off_policy_network_modules(policy: nn.Module) -> dict[str, list[nn.Module]]:
    """The modules whose parameters make up each network (for the weight norms), like the built-in discovery."""
    return _off_policy_adapter(policy).own_network_modules(policy)


def _replace_q_networks(critic: ContinuousCritic, build: Callable[[], nn.Module]) -> None:
    """Give each Q-network a new module. Only while the critic has no optimizer: ``critic.q_networks`` is a plain
    list next to the registered ``qf<i>`` children, so both are set."""
    for i in range(len(critic.q_networks)):
        q_net = build()
        critic.add_module(f"qf{i}", q_net)  # replaces the registered child of that name
        critic.q_networks[i] = q_net


# ----------------------------------------------------------------------------------------------------
# LayerNorm
# ----------------------------------------------------------------------------------------------------
def add_layer_norms(sequential: nn.Sequential, last_is_output: bool) -> list[nn.LayerNorm]:
    """Insert an ``nn.LayerNorm(out_features)`` right after each hidden ``nn.Linear`` of ``sequential``, in place
    (the Sequential object stays the same, so lists holding it stay valid). Call before the optimizer exists.

    :param sequential: SB3's MLP (``create_mlp`` output: ``Linear, act, Linear, act, ...``).
    :param last_is_output: the last ``Linear`` is the network's output layer (TD3's ``mu``, a Q-network) and gets
        no norm; False when the output layer comes after the Sequential (SAC's ``latent_pi``, PPO's branches).
    :return: the inserted norms.
    """
    positions = [i for i, module in enumerate(sequential) if isinstance(module, nn.Linear)]
    if last_is_output:
        positions = positions[:-1]
    norms = []
    for i in reversed(positions):  # from the back, so earlier positions stay valid
        linear = sequential[i]
        norm = nn.LayerNorm(linear.out_features, device=linear.weight.device, dtype=linear.weight.dtype)
        sequential.insert(i + 1, norm)
        norms.append(norm)
    return norms[::-1]


class _LayerNormOffPolicy:
    """TD3 / SAC: norms in the actor's ``actor_part`` Sequential and in every Q-network (targets are copies)."""

    actor_part: str
    actor_output_inside: bool  # the actor's output layer is the Sequential's last Linear (TD3's mu)

    def make_actor(self, features_extractor=None):
        actor = super().make_actor(features_extractor)
        add_layer_norms(getattr(actor, self.actor_part), last_is_output=self.actor_output_inside)
        return actor

    def make_critic(self, features_extractor=None):
        critic = super().make_critic(features_extractor)
        for q_net in critic.q_networks:
            add_layer_norms(q_net, last_is_output=True)
        return critic


class LayerNormTD3Policy(_LayerNormOffPolicy, TD3Policy):
    """SB3's ``TD3Policy`` (also for DDPG) with ``Linear -> LayerNorm -> activation`` in every hidden layer of the
    actor and of each Q-network (targets too): the NE paper's LN-TD3 baseline (App. C.2). The output layers have no
    norm. Takes SB3's ``TD3Policy`` kwargs (``net_arch``, ``activation_fn``, ``n_critics``, ...)."""

    actor_part = "mu"
    actor_output_inside = True


class LayerNormSACPolicy(_LayerNormOffPolicy, SACPolicy):
    """SB3's ``SACPolicy`` with ``Linear -> LayerNorm -> activation`` in every hidden layer of the actor
    (``latent_pi``; ``mu`` and ``log_std`` are the output layers) and of each Q-network (the target too)."""

    actor_part = "latent_pi"
    actor_output_inside = False


class LayerNormActorCriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` (PPO, A2C) with ``Linear -> LayerNorm -> activation`` in every hidden layer of
    the policy and value branches of ``mlp_extractor`` (``action_net`` and ``value_net`` are the output layers).
    SB3's orthogonal init touches the Linear layers only; the norms start at weight 1, bias 0."""

    def _build_mlp_extractor(self) -> None:
        super()._build_mlp_extractor()
        add_layer_norms(self.mlp_extractor.policy_net, last_is_output=False)
        add_layer_norms(self.mlp_extractor.value_net, last_is_output=False)


# ----------------------------------------------------------------------------------------------------
# BRO-net
# ----------------------------------------------------------------------------------------------------
class BroNetBlock(nn.Module):
    """BRO-net's residual block (GraMa App. A.1, Table 1): ``x + LN(Linear(act(LN(Linear(x)))))``.

    ``net`` is ``Sequential(Linear, LayerNorm, activation, Linear, LayerNorm)``; the block adds its input.

    :param width: the block's width ``H_b`` (input, hidden and output features; 256 in the paper).
    :param activation_fn: activation class (default ``nn.ReLU``, the paper's).
    """

    def __init__(self, width: int, activation_fn: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(width, width), nn.LayerNorm(width), activation_fn(), nn.Linear(width, width), nn.LayerNorm(width)
        )

    def forward(self, x: th.Tensor) -> th.Tensor:
        return x + self.net(x)


class BroNet(nn.Module):
    """A BRO-net (GraMa App. A.1, Table 2): ``stem`` = ``Linear(input_dim, width) -> LayerNorm -> activation``, then
    ``blocks`` (``n_blocks`` :class:`BroNetBlock`), then an optional output layer ``head`` (and ``tanh``).

    :param input_dim: input features (observation features, plus actions for a Q-network).
    :param width: width of the stem and the blocks (default 256, GraMa App. A.1).
    :param n_blocks: residual blocks (actor 1, critic 2 in GraMa Table 3; 1 to 4 in its scaling experiments).
    :param activation_fn: activation class (default ``nn.ReLU``).
    :param output_dim: features of the output layer; 0 for none (SAC's actor: SB3's ``mu``/``log_std`` follow).
    :param squash_output: apply ``tanh`` after the output layer (TD3's actor).
    """

    def __init__(
        self,
        input_dim: int,
        width: int = 256,
        n_blocks: int = 1,
        activation_fn: type[nn.Module] = nn.ReLU,
        output_dim: int = 0,
        squash_output: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(input_dim, width), nn.LayerNorm(width), activation_fn())
        self.blocks = nn.Sequential(*(BroNetBlock(width, activation_fn) for _ in range(n_blocks)))
        self.head = nn.Linear(width, output_dim) if output_dim > 0 else None
        self.squash = nn.Tanh() if squash_output else nn.Identity()

    def forward(self, x: th.Tensor) -> th.Tensor:
        x = self.blocks(self.stem(x))
        if self.head is not None:
            x = self.squash(self.head(x))
        return x

    def routes(self, prefix: str, heads: Sequence[tuple[str, nn.Module]] = ()) -> list[Route]:
        """The data flows that make the neuron groups (see ``docs/networks.md``).

        ``stem -> block b`` for every block: the stem's consumers are the first layers of all blocks, and each
        block's first layer is a group read by the block's second layer, which ends the route (its LayerNorm
        output joins the residual stream and is not a neuron). ``stem -> head`` for every output layer: the
        head reads the residual stream too.

        :param prefix: this module's name inside its network (``mu``, ``latent_pi``, ``qf0``).
        :param heads: ``(name, module)`` of the output layers after it (default: its own ``head``).
        """
        if not heads and self.head is not None:
            heads = [(f"{prefix}.head", self.head)]
        stem = (f"{prefix}.stem", self.stem)
        routes: list[Route] = [[stem, (f"{prefix}.blocks.{b}.net", block.net)] for b, block in enumerate(self.blocks)]
        routes += [[stem, head] for head in heads]
        return routes


class _BroNetPolicy:
    """What the BRO-net policies share: their kwargs, the critic and the neuron declaration.

    :param width: width of every layer (default 256, GraMa App. A.1).
    :param actor_blocks: residual blocks of the actor, one of :data:`BRO_BLOCKS` (default 1, GraMa Table 3).
    :param critic_blocks: residual blocks of each Q-network, one of :data:`BRO_BLOCKS` (default 2, GraMa Table 3).
    :param blocks: sets ``actor_blocks`` and ``critic_blocks`` together (GraMa Fig. 9 scales "from 1 to 4 in both
        actor and critic"); exclusive with them. Default None.
    """

    width: int
    actor_blocks: int
    critic_blocks: int
    activation_fn: type[nn.Module]
    device: th.device
    critic: ContinuousCritic

    def __init__(
        self,
        *args: Any,
        width: int = 256,
        actor_blocks: int = 1,
        critic_blocks: int = 2,
        blocks: int | None = None,
        **kwargs: Any,
    ) -> None:
        if blocks is not None:
            if (actor_blocks, critic_blocks) != (1, 2):
                raise ValueError(
                    f"blocks={blocks!r} sets actor_blocks and critic_blocks together: give either blocks or "
                    f"actor_blocks/critic_blocks, not both (got actor_blocks={actor_blocks}, critic_blocks={critic_blocks})"
                )
            actor_blocks = critic_blocks = blocks
        self.width = check_int("width", width, 1)
        self.actor_blocks = check_int("actor_blocks", actor_blocks, BRO_BLOCKS[0], BRO_BLOCKS[-1])
        self.critic_blocks = check_int("critic_blocks", critic_blocks, BRO_BLOCKS[0], BRO_BLOCKS[-1])
        if kwargs.get("net_arch") is not None:
            raise ValueError(
                f"net_arch={kwargs['net_arch']!r}: BRO-net policies are sized by width, actor_blocks and critic_blocks, "
                "not net_arch"
            )
        # SB3 sizes the layers it builds after the hidden layers (SAC's mu and log_std) from net_arch[-1]
        kwargs["net_arch"] = [self.width]
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["net_arch"] = None  # set from width again
        data.update(width=self.width, actor_blocks=self.actor_blocks, critic_blocks=self.critic_blocks)
        return data

    def make_critic(self, features_extractor=None):
        critic = super().make_critic(features_extractor)
        input_dim = critic.features_extractor.features_dim + get_action_dim(critic.action_space)
        _replace_q_networks(
            critic,
            lambda: BroNet(input_dim, self.width, self.critic_blocks, self.activation_fn, output_dim=1).to(self.device),
        )
        return critic

    def _actor_routes(self, actor: nn.Module) -> list[Route]:
        raise NotImplementedError

    def _routes(self, network: str, net: nn.Module) -> list[Route]:
        if network.startswith("actor"):
            return self._actor_routes(net)
        return [route for i, q_net in enumerate(net.q_networks) for route in q_net.routes(f"qf{i}")]

    def neuron_paths(self) -> list[NetworkPath]:
        """Neuron declaration for :func:`~sb3_plasticity.neurons.discover`: the stem and each block's first layer of
        every network (targets included, linked to their twins by name); output layers are consumers."""
        return _off_policy_paths(self, self._routes)

    def neuron_network_modules(self) -> dict[str, list[nn.Module]]:
        return _off_policy_network_modules(self)


class BroNetTD3Policy(_BroNetPolicy, TD3Policy):
    """TD3 (also DDPG) with BRO-net actor and Q-networks (GraMa App. A.1, Tables 1-2).

    Actor: ``BroNet(features, width, actor_blocks)`` then ``Linear(width, action_dim)`` and ``tanh``. Each
    Q-network: ``BroNet([features, actions], width, critic_blocks)`` then ``Linear(width, 1)``. ``activation_fn``
    replaces the ReLUs; ``net_arch`` is not accepted (the width and block counts size the networks).

    :param width: width of every layer (default 256, GraMa App. A.1).
    :param actor_blocks: residual blocks of the actor, 1 to 4 (default 1, GraMa Table 3).
    :param critic_blocks: residual blocks of each Q-network, 1 to 4 (default 2, GraMa Table 3).
    """

    def make_actor(self, features_extractor=None):
        actor = super().make_actor(features_extractor)
        action_dim = get_action_dim(self.action_space)
        actor.mu = BroNet(
            actor.features_dim, self.width, self.actor_blocks, self.activation_fn, output_dim=action_dim, squash_output=True
        ).to(self.device)
        return actor

    def _actor_routes(self, actor: nn.Module) -> list[Route]:
        return actor.mu.routes("mu")


class BroNetSACPolicy(_BroNetPolicy, SACPolicy):
    """SAC with BRO-net actor and Q-networks (GraMa App. A.1, Tables 1-2).

    Actor: ``latent_pi = BroNet(features, width, actor_blocks)``, then SB3's ``mu`` and ``log_std`` layers (one
    ``Linear(width, 2 * action_dim)`` split in two, as in Table 2) and SB3's squashed Gaussian. Each Q-network:
    ``BroNet([features, actions], width, critic_blocks)`` then ``Linear(width, 1)``. gSDE works (its ``log_std`` is
    a parameter, not a layer). Parameters as :class:`BroNetTD3Policy`.
    """

    def make_actor(self, features_extractor=None):
        actor = super().make_actor(features_extractor)
        actor.latent_pi = BroNet(actor.features_dim, self.width, self.actor_blocks, self.activation_fn).to(self.device)
        return actor

    def _actor_routes(self, actor: nn.Module) -> list[Route]:
        # with gSDE, log_std is a Parameter and mu may be Sequential(Linear, Hardtanh): both walk fine as stages
        heads = [("mu", actor.mu)] + ([("log_std", actor.log_std)] if isinstance(actor.log_std, nn.Module) else [])
        return actor.latent_pi.routes("latent_pi", heads)


# ----------------------------------------------------------------------------------------------------
# Multi-head
# ----------------------------------------------------------------------------------------------------
def task_id_dims(observation_space: spaces.Space, n_tasks: int | None = None) -> int:
    """The number of task-id dims at the end of a multi-head policy's observations, checked against the contract.

    CONTRACT: a flat ``Box`` whose last ``n_tasks`` dims are a one-hot task id with ``low=0`` and ``high=1``
    exactly; every earlier dim is the (padded) observation, at least one of them.

    :param n_tasks: the number of tasks; None infers it as the number of trailing dims bounded exactly [0, 1]
        (at least 2 are needed: pass ``n_tasks`` when a single task or when the observation's own last dims are
        bounded [0, 1] too).
    :raises ValueError: naming what does not fit the contract.
    """
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            "multi-head policies need a flat Box observation space ending in a one-hot task id (low=0, high=1 on the "
            f"last n_tasks dims), got {observation_space}"
        )
    low, high = observation_space.low, observation_space.high
    is_task_dim = (low == 0) & (high == 1)
    size = observation_space.shape[0]
    if n_tasks is None:
        n = 0
        while n < size and is_task_dim[size - 1 - n]:
            n += 1
        if n < 2:
            raise ValueError(
                f"multi-head policies read the task id from the observation's last dims (a one-hot with low=0 and "
                f"high=1 exactly), but this observation space ends with {n} such dim(s) (low={low[-3:]}, "
                f"high={high[-3:]} at the end): it has no task id. Use an env that appends one, or pass n_tasks "
                "explicitly if the task id has a single dim"
            )
    else:
        n = check_int("n_tasks", n_tasks, 1, size)
        if not is_task_dim[size - n :].all():
            raise ValueError(
                f"n_tasks={n}: the last {n} observation dims must be a one-hot task id with low=0 and high=1 exactly, "
                f"got low={low[size - n :]}, high={high[size - n :]}"
            )
    if n >= size:
        raise ValueError(
            f"the observation space has {size} dims, all bounded [0, 1]: with n_tasks={n} no observation is left before "
            "the task id; pass a smaller n_tasks"
        )
    return n


def split_task(x: th.Tensor, task_start: int, n_tasks: int, keep_task: bool) -> tuple[th.Tensor, th.Tensor]:
    """``(input for the trunk, task index)`` of a batch whose columns ``[task_start, task_start + n_tasks)`` are the
    one-hot task id. The index is the one-hot's argmax (a VecNormalize'd one-hot keeps it once more than one task
    has been seen; before that every task dim normalises to 0 and the argmax is task 0, so do not normalise the
    observations of a multi-head policy)."""
    task = x[:, task_start : task_start + n_tasks].argmax(dim=1)
    if not keep_task:
        x = th.cat([x[:, :task_start], x[:, task_start + n_tasks :]], dim=1)
    return x, task


class TaskHeads(nn.ModuleList):
    """One ``Linear(in_features, out_features)`` output layer per task; row ``b`` of a batch goes through head
    ``task[b]``. Only the heads of the tasks in the batch run, so the others get no gradient at all (``grad`` stays
    None and Adam leaves them alone).

    :param in_features: features of the trunk's output.
    :param out_features: outputs of each head.
    :param n_tasks: number of heads.
    """

    def __init__(self, in_features: int, out_features: int, n_tasks: int) -> None:
        super().__init__(nn.Linear(in_features, out_features) for _ in range(n_tasks))
        self.out_features = out_features

    def forward(self, x: th.Tensor, task: th.Tensor) -> th.Tensor:  # type: ignore[override]
        present = th.unique(task)
        if present.numel() == 1:
            return self[int(present.item())](x)
        out = x.new_zeros(x.shape[0], self.out_features)
        for t in present.tolist():
            rows = (task == t).nonzero(as_tuple=True)[0]
            out = out.index_copy(0, rows, self[t](x[rows]))
        return out


class MultiHeadMlp(nn.Module):
    """``trunk`` (SB3's MLP of ``net_arch``) then the head of each sample's task (``heads``), then ``tanh`` if asked.

    :param input_dim: input features, task id included.
    :param output_dim: outputs of each head.
    :param net_arch: hidden layer widths of the trunk (at least one layer).
    :param activation_fn: activation class.
    :param n_tasks: number of tasks (heads).
    :param task_start: first input column of the one-hot task id (``input_dim - n_tasks`` for an actor; for a
        Q-network the actions follow the observation, so it is ``features_dim - n_tasks``).
    :param task_in_trunk: feed the one-hot to the trunk as well (default False: the head choice is the only task
        conditioning).
    :param squash_output: ``tanh`` after the head (TD3's actor).
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        net_arch: Sequence[int],
        activation_fn: type[nn.Module],
        n_tasks: int,
        task_start: int,
        task_in_trunk: bool = False,
        squash_output: bool = False,
    ) -> None:
        super().__init__()
        self.n_tasks = n_tasks
        self.task_start = task_start
        self.task_in_trunk = task_in_trunk
        trunk_dim = input_dim if task_in_trunk else input_dim - n_tasks
        self.trunk = nn.Sequential(*create_mlp(trunk_dim, -1, list(net_arch), activation_fn))
        self.heads = TaskHeads(net_arch[-1], output_dim, n_tasks)
        self.squash = nn.Tanh() if squash_output else nn.Identity()

    def forward(self, x: th.Tensor) -> th.Tensor:
        x, task = split_task(x, self.task_start, self.n_tasks, self.task_in_trunk)
        return self.squash(self.heads(self.trunk(x), task))

    def routes(self, prefix: str) -> list[Route]:
        """``trunk -> head t`` for every task: the last trunk layer's consumers are all heads."""
        return [[(f"{prefix}.trunk", self.trunk), (f"{prefix}.heads.{t}", head)] for t, head in enumerate(self.heads)]


class MultiHeadSACActor(SACActor):
    """SB3's SAC ``Actor`` with a shared trunk (``latent_pi``) and per-task ``mu`` and ``log_std`` heads
    (:class:`TaskHeads`). Takes SB3's SAC ``Actor`` arguments plus:

    :param n_tasks: number of tasks: the last ``n_tasks`` features are the one-hot task id.
    :param task_in_trunk: feed the one-hot to the trunk as well (default False).
    """

    def __init__(self, *args: Any, n_tasks: int, task_in_trunk: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.use_sde:
            raise ValueError("use_sde=True: multi-head SAC has no gSDE (its log_std is not a per-task layer)")
        self.n_tasks = n_tasks
        self.task_in_trunk = task_in_trunk
        trunk_dim = self.features_dim if task_in_trunk else self.features_dim - n_tasks
        action_dim = get_action_dim(self.action_space)
        self.latent_pi = nn.Sequential(*create_mlp(trunk_dim, -1, list(self.net_arch), self.activation_fn))
        self.mu = TaskHeads(self.net_arch[-1], action_dim, n_tasks)
        self.log_std = TaskHeads(self.net_arch[-1], action_dim, n_tasks)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "n_tasks": self.n_tasks, "task_in_trunk": self.task_in_trunk}

    def get_action_dist_params(self, obs) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        features = self.extract_features(obs, self.features_extractor)
        x, task = split_task(features, self.features_dim - self.n_tasks, self.n_tasks, self.task_in_trunk)
        latent_pi = self.latent_pi(x)
        mean_actions = self.mu(latent_pi, task)
        log_std = th.clamp(self.log_std(latent_pi, task), LOG_STD_MIN, LOG_STD_MAX)  # SB3's clamp
        return mean_actions, log_std, {}

    def routes(self) -> list[Route]:
        trunk = ("latent_pi", self.latent_pi)
        return [[trunk, (f"{name}.{t}", head)] for name in ("mu", "log_std") for t, head in enumerate(getattr(self, name))]


class _MultiHeadPolicy:
    """What the multi-head policies share: the observation contract, their kwargs, the critic and the neurons.

    :param n_tasks: number of tasks; None (default) infers it from the observation space (see :func:`task_id_dims`).
    :param task_in_trunk: feed the one-hot task id to the trunks as well (default False).
    """

    n_tasks: int
    task_in_trunk: bool
    activation_fn: type[nn.Module]
    device: th.device
    actor_kwargs: dict[str, Any]
    critic_kwargs: dict[str, Any]

    def __init__(
        self,
        observation_space: spaces.Space,
        *args: Any,
        n_tasks: int | None = None,
        task_in_trunk: bool = False,
        **kwargs: Any,
    ) -> None:
        self.n_tasks = task_id_dims(observation_space, n_tasks)
        self._n_tasks_arg = n_tasks
        self.task_in_trunk = check_bool("task_in_trunk", task_in_trunk)
        extractor = kwargs.get("features_extractor_class", FlattenExtractor)
        if extractor is not FlattenExtractor:
            raise ValueError(
                f"features_extractor_class={getattr(extractor, '__name__', extractor)}: multi-head policies read the "
                "task id from the last observation dims and need the FlattenExtractor"
            )
        super().__init__(observation_space, *args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(n_tasks=self._n_tasks_arg, task_in_trunk=self.task_in_trunk)
        return data

    def _trunk_arch(self, kwargs: dict[str, Any], network: str) -> list[int]:
        net_arch = list(kwargs["net_arch"])
        if not net_arch:
            raise ValueError(f"multi-head policies need a shared trunk: the {network}'s net_arch is empty")
        return net_arch

    def make_critic(self, features_extractor=None):
        critic = super().make_critic(features_extractor)
        net_arch = self._trunk_arch(self.critic_kwargs, "critic")
        features_dim = critic.features_extractor.features_dim
        action_dim = get_action_dim(critic.action_space)

        def build() -> nn.Module:
            # the Q-network reads [features, actions]: the one-hot sits at the end of the features
            q_net = MultiHeadMlp(
                features_dim + action_dim, 1, net_arch, self.activation_fn, self.n_tasks, features_dim - self.n_tasks,
                self.task_in_trunk,
            )  # fmt: skip
            return q_net.to(self.device)

        _replace_q_networks(critic, build)
        return critic

    def _actor_routes(self, actor: nn.Module) -> list[Route]:
        raise NotImplementedError

    def _routes(self, network: str, net: nn.Module) -> list[Route]:
        if network.startswith("actor"):
            return self._actor_routes(net)
        return [route for i, q_net in enumerate(net.q_networks) for route in q_net.routes(f"qf{i}")]

    def neuron_paths(self) -> list[NetworkPath]:
        """Neuron declaration for :func:`~sb3_plasticity.neurons.discover`: the trunks' hidden layers; every head of
        a trunk is a consumer of its last hidden layer (never reset)."""
        return _off_policy_paths(self, self._routes)

    def neuron_network_modules(self) -> dict[str, list[nn.Module]]:
        return _off_policy_network_modules(self)


class MultiHeadTD3Policy(_MultiHeadPolicy, TD3Policy):
    """TD3 (also DDPG) with a shared trunk and one output layer per task in the actor and in each Q-network (NE
    paper Sec. 4.2: "each task maintains an output head (1 layer MLP), which is trained in conjunction with the
    backbone network"; the methods act "on all layers except the output head").

    Observation CONTRACT: a flat ``Box`` whose last ``n_tasks`` dims are a one-hot task id (``low=0``, ``high=1``
    exactly), e.g. ``sb3_plasticity/ContinualMuJoCo-v0``; an env without one raises ValueError here. Each sample
    uses the head of its own task (the one-hot's argmax), so a batch may mix tasks. The trunks are SB3's MLPs of
    ``net_arch`` (at least one hidden layer) and, by default, do not see the one-hot. Takes SB3's ``TD3Policy``
    kwargs (the features extractor must be the default ``FlattenExtractor``) plus:

    :param n_tasks: number of tasks; None (default) infers it as the number of trailing observation dims bounded
        exactly [0, 1] (at least 2).
    :param task_in_trunk: feed the one-hot to the trunks as well (default False).
    """

    def make_actor(self, features_extractor=None):
        actor = super().make_actor(features_extractor)
        net_arch = self._trunk_arch(self.actor_kwargs, "actor")
        actor.mu = MultiHeadMlp(
            actor.features_dim, get_action_dim(self.action_space), net_arch, self.activation_fn, self.n_tasks,
            actor.features_dim - self.n_tasks, self.task_in_trunk, squash_output=True,
        ).to(self.device)  # fmt: skip
        return actor

    def _actor_routes(self, actor: nn.Module) -> list[Route]:
        return actor.mu.routes("mu")


class MultiHeadSACPolicy(_MultiHeadPolicy, SACPolicy):
    """SAC with a shared trunk and per-task output layers: :class:`MultiHeadSACActor` (per-task ``mu`` and
    ``log_std``) and per-task Q heads; the contract and parameters are those of :class:`MultiHeadTD3Policy`.
    ``use_sde=True`` is refused."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("use_sde", False):
            raise ValueError("use_sde=True: multi-head SAC has no gSDE (its log_std is not a per-task layer)")
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor=None):
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        self._trunk_arch(actor_kwargs, "actor")
        return MultiHeadSACActor(**actor_kwargs, n_tasks=self.n_tasks, task_in_trunk=self.task_in_trunk).to(self.device)

    def _actor_routes(self, actor: nn.Module) -> list[Route]:
        return actor.routes()
