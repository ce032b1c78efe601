"""Score-based pruning of a dense network (GraMa paper, Sec. 4.2 "ReGraMa identifies inactive neurons more
effectively in complex architectures", Fig. 7): remove the neurons a criterion calls inactive and measure the return.

"The degree of post-pruning performance degradation reflects both the relevance of the pruned neurons and the
reliability of the underlying metric": pruning the neurons GraMa flags should cost little, pruning those ReDo flags
(activation-silent but still learning or contributing) more. :func:`prune_and_evaluate` does this on a trained SB3
model: a pruned neuron's output ``h_i`` is set to 0 by a forward hook (:func:`masked_neurons`) for the evaluation,
and nothing is changed for good.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch as th

from sb3_plasticity.analysis.scores import NeuronScores, acting_networks, activation_scores, training_pass_scores
from sb3_plasticity.checks import check_choice, check_fraction, check_nonnegative, check_positive_int
from sb3_plasticity.metrics import lowest
from sb3_plasticity.neurons import NeuronGroup, discover

__all__ = ["DEFAULT_TAU", "PruningResult", "flagged_neurons", "masked_neurons", "prune_and_evaluate"]

# GraMa App. A.1: "the recommended values for tau (0.01 for Grama and 0.02 for ReDo)"
DEFAULT_TAU = {"grama": 0.01, "redo": 0.02}


@contextlib.contextmanager
def masked_neurons(masks: Mapping[NeuronGroup, th.Tensor]) -> Iterator[None]:
    """Inside the block, the neurons marked True in ``masks[group]`` output 0 (a forward hook multiplies the group's
    output ``h`` by 0 there), so every layer reading them sees nothing from them: the neurons are pruned. The hooks
    are removed on exit; no weight is touched."""
    handles = []
    try:
        for group, mask in masks.items():
            mask = mask.detach().bool().reshape(-1)
            if mask.numel() != group.n_neurons:
                raise ValueError(f"mask of {group.key} has {mask.numel()} entries, the group has {group.n_neurons} neurons")
            if not bool(mask.any()):
                continue
            keep = (~mask).float()

            def hook(module, inputs, output, keep=keep):
                shape = (1, -1) + (1,) * (output.dim() - 2)
                return output * keep.to(device=output.device, dtype=output.dtype).view(shape)

            handles.append(group.output.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def flagged_neurons(
    scores: Sequence[NeuronScores], score: str = "grama", tau: float | None = None, fraction: float | None = None
) -> dict[NeuronGroup, th.Tensor]:
    """The neurons a criterion flags, as a bool mask per group.

    :param score: ``"grama"`` (``G_i``) or ``"redo"`` (``s_i``).
    :param tau: flag ``score <= tau`` (default: 0.01 for GraMa, 0.02 for ReDo, GraMa App. A.1).
    :param fraction: instead of ``tau``, flag the ``floor(fraction * n)`` lowest-scoring of each layer's ``n``
        neurons (ties by index), so that both criteria remove as many neurons.
    """
    check_choice("score", score, ("grama", "redo"))
    if tau is not None and fraction is not None:
        raise ValueError(f"give tau ({tau}) or fraction ({fraction}), not both")
    check_fraction("fraction", fraction)
    if tau is not None:
        check_nonnegative("tau", tau)
    tau = DEFAULT_TAU[score] if tau is None and fraction is None else tau
    out = {}
    for s in scores:
        values = s.score(score)
        alive = s.alive_mask()
        if fraction is not None:
            candidates = alive.nonzero().flatten()
            mask = th.zeros_like(alive)
            mask[lowest(values, math.floor(fraction * candidates.numel() + 1e-9), candidates)] = True
        else:
            mask = (values <= tau) & alive
        out[s.group] = mask
    return out


@dataclass
class PruningResult:
    """What :func:`prune_and_evaluate` measured.

    :param pruned: neurons pruned per group key; ``pruned_ratio``: share of each network's neurons pruned.
    :param returns: the pruned model's episode returns; ``mean_return``, ``std_return`` their mean and std.
    :param baseline_returns: the same episodes (same seed) without pruning (empty with ``baseline=False``).
    """

    score: str
    tau: float | None
    fraction: float | None
    networks: list[str]
    pruned: dict[str, int] = field(default_factory=dict)
    pruned_ratio: dict[str, float] = field(default_factory=dict)
    returns: list[float] = field(default_factory=list)
    baseline_returns: list[float] = field(default_factory=list)

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns)) if self.returns else float("nan")

    @property
    def baseline_mean(self) -> float:
        return float(np.mean(self.baseline_returns)) if self.baseline_returns else float("nan")

    @property
    def return_drop(self) -> float:
        """``baseline_mean - mean_return``: what pruning cost."""
        return self.baseline_mean - self.mean_return


def _evaluate(model, env, n_episodes: int, deterministic: bool, seed: int | None) -> list[float]:
    from stable_baselines3.common.evaluation import evaluate_policy

    if seed is not None:
        env.seed(seed)  # the same start states for the pruned and the unpruned policy
    returns, _ = evaluate_policy(
        model, env, n_eval_episodes=n_episodes, deterministic=deterministic, return_episode_rewards=True, warn=False
    )
    return [float(r) for r in returns]


def prune_and_evaluate(
    model,
    env,
    score: str = "grama",
    tau: float | None = None,
    fraction: float | None = None,
    n_eval_episodes: int = 10,
    networks: str | Sequence[str] | None = None,
    scores: Sequence[NeuronScores] | None = None,
    deterministic: bool = True,
    baseline: bool = True,
    seed: int | None = 0,
) -> PruningResult:
    """Prune the neurons that ``score`` flags in a trained model and measure the return over ``n_eval_episodes``
    (GraMa Fig. 7: ``score="grama"`` vs ``score="redo"``).

    1. Score every hidden neuron of ``networks``: GraMa on one training pass of the algorithm's own loss, after
       which the model is restored (:func:`~sb3_plasticity.analysis.training_pass_scores`; needs data in the
       replay / rollout buffer), ReDo on a forward pass over a buffer batch; or take ``scores`` (e.g. from
       :func:`~sb3_plasticity.analysis.training_pass_scores` called earlier).
    2. Flag ``score <= tau`` (default 0.01 GraMa, 0.02 ReDo), or the ``fraction`` lowest of each layer.
    3. Evaluate with the flagged neurons' outputs set to 0 (:func:`masked_neurons`), and without (``baseline``), on
       the same episodes (``env.seed(seed)`` before each evaluation, deterministic actions by default).

    The model is unchanged afterwards.

    :param env: a Gymnasium env or a VecEnv (wrapped in a ``DummyVecEnv`` if needed).
    :param networks: networks to prune (default: those that choose the actions, ``actor`` / ``policy`` and a shared
        ``features`` extractor: pruning a critic does not change the return of the policy being evaluated).
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

    neurons = discover(model)
    names = acting_networks(neurons) if networks is None else ([networks] if isinstance(networks, str) else list(networks))
    neurons.check_networks(names)
    check_positive_int("n_eval_episodes", n_eval_episodes)
    if scores is None:
        if score == "grama":
            scores = training_pass_scores(model, names, neurons=neurons)
        elif score == "redo":
            scores = activation_scores(model, names, neurons=neurons)
        else:
            raise ValueError(f"score must be 'grama' or 'redo', got {score!r}")
    scores = [s for s in scores if s.network in names]
    masks = flagged_neurons(scores, score, tau, fraction)
    if not isinstance(env, VecEnv):
        single = env
        env = DummyVecEnv([lambda: single])
    result = PruningResult(score, DEFAULT_TAU[score] if tau is None and fraction is None else tau, fraction, names)
    totals: dict[str, list[int]] = {}
    for s in scores:
        n = int(masks[s.group].sum())
        result.pruned[s.key] = n
        tot = totals.setdefault(s.network, [0, 0])
        tot[0] += n
        tot[1] += int(s.alive_mask().sum())
    result.pruned_ratio = {net: k / max(n, 1) for net, (k, n) in totals.items()}
    if baseline:
        result.baseline_returns = _evaluate(model, env, n_eval_episodes, deterministic, seed)
    with masked_neurons(masks):
        result.returns = _evaluate(model, env, n_eval_episodes, deterministic, seed)
    return result
