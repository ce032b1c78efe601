"""Evaluation that follows a non-stationary training env's phase (Cycle Friction's friction, a task sequence's task).

SB3's ``EvalCallback`` (and rl-zoo's, which is one) evaluates on its own env instance, which never sees the
training env's phase changes: on Cycle Friction it keeps evaluating the first friction, on a task sequence the
first task. :class:`PhaseEvalCallback` moves its eval env to the training env's current phase before every
evaluation and logs the return per phase and per phase name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecEnv,
    VecEnvWrapper,
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
    sync_envs_normalization,
)

from sb3_plasticity.checks import check_choice, check_positive_int
from sb3_plasticity.schedule import EveryN

__all__ = ["PhaseEvalCallback"]

_PHASE_FROM = ("mode", "first", "min", "max")
# per-phase keys can be long and truncate alike in SB3's stdout table (which then raises): TensorBoard/CSV/JSON only
_EXCLUDE = ("stdout", "log")


def _check_contract(env: VecEnv, which: str, names: Sequence[str]) -> None:
    missing = [name for name in names if not env.has_attr(name)]
    if missing:
        raise ValueError(
            f"{which} does not follow the phase contract of sb3_plasticity.envs (missing {missing!r} on the env "
            "reached through VecEnv.get_attr): it needs a `phase` property (0-based index of the current phase) "
            "and a `set_phase(phase)` method that moves the env to the start of that phase and holds it there; "
            "`phase_name` is optional"
        )


def _mirror_vec_wrappers(training_env: VecEnv, eval_env: VecEnv) -> VecEnv:
    """Wrap ``eval_env`` in the training env's VecEnv wrappers (innermost first) so observations match and
    ``sync_envs_normalization`` can copy the statistics."""
    chain = []
    env = training_env
    while isinstance(env, VecEnvWrapper):
        chain.append(env)
        env = env.venv
    for wrapper in reversed(chain):
        if isinstance(wrapper, VecNormalize):
            eval_env = VecNormalize(
                eval_env,
                training=False,
                norm_obs=wrapper.norm_obs,
                norm_reward=False,
                clip_obs=wrapper.clip_obs,
                gamma=wrapper.gamma,
                epsilon=wrapper.epsilon,
                norm_obs_keys=wrapper.norm_obs_keys,
            )
        elif isinstance(wrapper, VecFrameStack) and isinstance(wrapper.observation_space, gym.spaces.Box):
            stacked = wrapper.stacked_obs
            eval_env = VecFrameStack(eval_env, stacked.n_stack, "first" if stacked.channels_first else "last")
        elif isinstance(wrapper, VecTransposeImage):
            eval_env = VecTransposeImage(eval_env)
        else:
            raise ValueError(
                f"PhaseEvalCallback cannot rebuild the training env's {type(wrapper).__name__} around an eval env made "
                "from an id; pass a ready eval env object (wrapped like the training env) as `eval_env`"
            )
    return eval_env


def _has_vec_normalize(env: VecEnv) -> bool:
    while isinstance(env, VecEnvWrapper):
        if isinstance(env, VecNormalize):
            return True
        env = env.venv
    return False


def _tag(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


class PhaseEvalCallback(BaseCallback):
    """Like SB3's ``EvalCallback``, but before each evaluation the eval env is moved to the *training* env's phase.

    Every ``eval_freq`` env steps: read the training env's ``phase`` (``training_env.get_attr("phase")``), call
    ``set_phase(phase)`` on every copy of the eval env (which holds it there), evaluate ``n_eval_episodes`` with
    SB3's ``evaluate_policy`` and log, then dump at ``num_timesteps``:

    - ``eval/mean_reward``, ``eval/std_reward``, ``eval/mean_ep_length`` (as ``EvalCallback``) and ``eval/phase``;
    - ``eval/phase_<k>/mean_reward`` and ``eval/phase_<k>/mean_ep_length``: per phase index (each visit of a
      cycling schedule is its own curve);
    - ``eval/<phase_name>/mean_reward`` and ``.../mean_ep_length``: per phase *name*, e.g. per friction value or per
      task, so the visits of one friction or task form one curve (when the env has ``phase_name``; characters
      other than letters, digits, ``_.-`` become ``_``).

    The per-phase keys go to TensorBoard, CSV and JSON, not to SB3's stdout table. Results are also kept in
    :attr:`evaluations` (and in ``<log_path>/evaluations.npz`` when ``log_path`` is given).

    Phase contract (``sb3_plasticity.envs``; checked at construction for the eval env and at training start
    for the training env, with a clear error): the unwrapped env has a property ``phase: int`` (0-based index of
    the current phase), a method ``set_phase(phase)`` that moves it to the start of that phase and holds it there,
    and optionally ``phase_name: str``.

    With rl-zoo, turn its own evaluation off (``--eval-freq -1``) and list this callback in the config; yaml gives
    only plain values, so the eval env is given by its id::

        callback:
          - sb3_plasticity.PhaseEvalCallback:
              eval_env: sb3_plasticity/CycleFrictionHalfCheetah-v0
              env_kwargs: {period: 1000000}
              eval_freq: 10000

    :param eval_env: the eval env: a Gymnasium id (made with SB3's ``make_vec_env`` with ``env_kwargs``,
        ``n_eval_envs``, ``env_wrapper`` and ``seed``, then wrapped in the training env's ``VecNormalize`` /
        ``VecFrameStack`` / ``VecTransposeImage`` at training start, its normalisation statistics copied before
        every evaluation), or an env / VecEnv object wrapped like the training env.
    :param eval_freq: env steps (``num_timesteps``) between evaluations (default 10 000, like rl-zoo's default).
    :param n_eval_episodes: episodes per evaluation (default 5).
    :param deterministic: deterministic actions (default True).
    :param env_kwargs: keyword arguments of the env's constructor, for an id (e.g. ``period``).
    :param n_eval_envs: env copies for an id (default 1).
    :param env_wrapper: Gymnasium wrapper(s) of each copy, for an id, in rl-zoo's ``env_wrapper`` format: a class,
        a dotted path, a ``{path: kwargs}`` dict, or a list of them (needed when the training env has wrappers
        that change observations, e.g. ``gymnasium.wrappers.FlattenObservation``).
    :param seed: seed of the eval env made from an id (default None: unseeded).
    :param phase_from: which phase to evaluate when the training env's copies are in different phases (a task
        sequence's copies switch tasks at their own pace): ``"mode"`` (default: the phase most copies are in, the
        lowest on a tie), ``"first"`` (copy 0), ``"min"`` or ``"max"``.
    :param log_path: folder for ``evaluations.npz`` (timesteps, phases, episode rewards and lengths); None: none.
    :param warn: passed to ``evaluate_policy`` (warns when the eval env has no ``Monitor``).
    :param verbose: 0 or 1 (prints each evaluation).
    """

    def __init__(
        self,
        eval_env: str | gym.Env | VecEnv,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 5,
        deterministic: bool = True,
        env_kwargs: dict[str, Any] | None = None,
        n_eval_envs: int = 1,
        env_wrapper: Any = None,
        seed: int | None = None,
        phase_from: str = "mode",
        log_path: str | None = None,
        warn: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.eval_schedule = EveryN(eval_freq, name="eval_freq")
        self.eval_freq = self.eval_schedule.freq
        self.n_eval_episodes = check_positive_int("n_eval_episodes", n_eval_episodes)
        self.phase_from = check_choice("phase_from", phase_from, _PHASE_FROM)
        self.deterministic = bool(deterministic)
        self.warn = bool(warn)
        self.log_path = log_path
        self._from_id = isinstance(eval_env, str)
        self._mirrored = False
        if isinstance(eval_env, str):
            check_positive_int("n_eval_envs", n_eval_envs)
            wrapper_class = None
            if env_wrapper is not None:
                from rl_zoo3.utils import get_wrapper_class  # the zoo's own format, and only when asked for

                wrapper_class = get_wrapper_class({"env_wrapper": env_wrapper})
            self.eval_env: VecEnv = make_vec_env(
                eval_env,
                n_envs=n_eval_envs,
                seed=seed,
                env_kwargs=env_kwargs,
                wrapper_class=wrapper_class,
                vec_env_cls=DummyVecEnv,
            )
        elif isinstance(eval_env, (gym.Env, VecEnv)):
            if env_kwargs is not None or env_wrapper is not None or seed is not None or n_eval_envs != 1:
                raise ValueError("env_kwargs, n_eval_envs, env_wrapper and seed apply only when eval_env is an env id")
            self.eval_env = BaseAlgorithm._wrap_env(eval_env)
        else:
            raise ValueError(f"eval_env must be a Gymnasium env id, a gymnasium.Env or a VecEnv, got {eval_env!r}")
        _check_contract(self.eval_env, "eval_env", ("phase", "set_phase"))
        self._has_name = self.eval_env.has_attr("phase_name")
        self.evaluations: list[dict[str, Any]] = []
        self.last_mean_reward = -np.inf

    def _init_callback(self) -> None:
        _check_contract(self.training_env, "the training env", ("phase",))
        if self._from_id and not self._mirrored:
            self.eval_env = _mirror_vec_wrappers(self.training_env, self.eval_env)
            self._mirrored = True
        if self.eval_env.observation_space != self.model.observation_space:
            raise ValueError(
                f"eval_env's observation space {self.eval_env.observation_space} differs from the model's "
                f"{self.model.observation_space}: wrap it like the training env (see env_wrapper)"
            )
        if self.model.get_vec_normalize_env() is not None and not _has_vec_normalize(self.eval_env):
            raise ValueError(
                "the training env is normalised with VecNormalize but eval_env is not: wrap it in VecNormalize(..., "
                "training=False, norm_reward=False) like the training env, or give the eval env by its id"
            )
        self.eval_schedule.start(self.model.num_timesteps)
        if self.log_path is not None:
            os.makedirs(self.log_path, exist_ok=True)

    def _on_step(self) -> bool:
        if self.eval_schedule.poll(self.num_timesteps):
            self.evaluate()
        return True

    def training_phase(self) -> int:
        """The phase to evaluate, from the training env's copies (see ``phase_from``)."""
        phases = [int(p) for p in self.training_env.get_attr("phase")]
        if self.phase_from == "first":
            return phases[0]
        if self.phase_from == "min":
            return min(phases)
        if self.phase_from == "max":
            return max(phases)
        return max(set(phases), key=lambda p: (phases.count(p), -p))

    def evaluate(self) -> dict[str, Any]:
        """Move the eval env to the training env's phase, evaluate, log and dump; returns the result."""
        phase = self.training_phase()
        self.eval_env.env_method("set_phase", phase)
        reached = [int(p) for p in self.eval_env.get_attr("phase")]
        if any(p != phase for p in reached):
            raise RuntimeError(f"eval_env.set_phase({phase}) left the eval env in phase(s) {reached}")
        name = str(self.eval_env.get_attr("phase_name")[0]) if self._has_name else None
        if self.model.get_vec_normalize_env() is not None:
            sync_envs_normalization(self.training_env, self.eval_env)
        rewards, lengths = evaluate_policy(
            self.model,
            self.eval_env,
            n_eval_episodes=self.n_eval_episodes,
            deterministic=self.deterministic,
            return_episode_rewards=True,
            warn=self.warn,
        )
        mean_reward, std_reward = float(np.mean(rewards)), float(np.std(rewards))
        mean_length = float(np.mean(lengths))
        self.last_mean_reward = mean_reward
        result = {
            "timestep": self.num_timesteps,
            "phase": phase,
            "phase_name": name,
            "rewards": list(map(float, rewards)),
            "lengths": list(map(int, lengths)),
        }
        self.evaluations.append(result)
        self.logger.record("eval/mean_reward", mean_reward)
        self.logger.record("eval/std_reward", std_reward)
        self.logger.record("eval/mean_ep_length", mean_length)
        self.logger.record("eval/phase", phase)
        prefixes = [f"eval/phase_{phase}"]
        # a name spelled like an index tag would write into another phase's curve
        if name is not None and not re.fullmatch(r"phase_\d+", _tag(name)):
            prefixes.append(f"eval/{_tag(name)}")
        for prefix in prefixes:
            self.logger.record(f"{prefix}/mean_reward", mean_reward, exclude=_EXCLUDE)
            self.logger.record(f"{prefix}/mean_ep_length", mean_length, exclude=_EXCLUDE)
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        if self.verbose >= 1:
            label = f"phase {phase}" + (f" ({name})" if name is not None else "")
            print(f"Eval num_timesteps={self.num_timesteps}, {label}: episode_reward={mean_reward:.2f} +/- {std_reward:.2f}")
        self.logger.dump(self.num_timesteps)
        if self.log_path is not None:
            self._save()
        return result

    def _save(self) -> None:
        np.savez(
            os.path.join(self.log_path, "evaluations.npz"),
            timesteps=np.array([e["timestep"] for e in self.evaluations]),
            phases=np.array([e["phase"] for e in self.evaluations]),
            phase_names=np.array([e["phase_name"] or "" for e in self.evaluations]),
            results=np.array([e["rewards"] for e in self.evaluations]),
            ep_lengths=np.array([e["lengths"] for e in self.evaluations]),
        )
