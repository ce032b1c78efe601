"""Separate learning rates for the actor and the critic, as the papers' TD3 and SAC settings use."""

from __future__ import annotations

from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity.checks import check_range
from sb3_plasticity.hooks import LEARNING_RATE, step_hooks

__all__ = ["NetworkLearningRateCallback"]


class NetworkLearningRateCallback(BaseCallback):
    """Sets a constant learning rate per network optimizer: ``NetworkLearningRateCallback(actor=1e-4, critic=1e-3)``.

    SB3 TD3/SAC use one ``learning_rate`` for both optimizers and rewrite every param group's lr at each
    ``train()``; this callback sets the rate in an optimizer pre-step hook, i.e. after SB3's rewrite and right
    before each update (the first of the pre-step hooks: ``sb3_plasticity.hooks.LEARNING_RATE``). The NE paper's
    TD3 uses actor 1e-4, critic 1e-3 (App. C, Table 2); the GraMa paper's SAC uses policy 3e-4, Q 1e-3 (App. A.3).
    What SB3 logs as ``train/learning_rate`` stays the algorithm's.

    :param actor: learning rate of ``policy.actor.optimizer`` (None: leave SB3's).
    :param critic: learning rate of ``policy.critic.optimizer`` (None: leave SB3's).
    """

    def __init__(self, actor: float | None = None, critic: float | None = None, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.rates = {
            name: check_range(name, value, 0.0, low_open=True)
            for name, value in (("actor", actor), ("critic", critic))
            if value is not None
        }
        self._handles: list = []

    def _init_callback(self) -> None:
        self._remove()
        for name, lr in self.rates.items():
            net = getattr(self.model.policy, name, None)
            optimizer = getattr(net, "optimizer", None)
            if optimizer is None:
                raise ValueError(
                    f"{name}={lr}: {type(self.model).__name__}'s policy has no {name} optimizer "
                    "(this callback is for TD3, DDPG and SAC)"
                )
            self._handles.append(step_hooks(optimizer).add_pre(LEARNING_RATE, _set_lr(lr)))

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        # TD3 skips the actor step on every other update, so the actor optimizer may still hold SB3's rate
        # from the last train(): leave the configured rates in place, which is what model.save stores.
        for name, lr in self.rates.items():
            _set_lr(lr)(self.model.policy.get_submodule(name).optimizer, (), {})
        self._remove()


def _set_lr(lr: float):
    def hook(optimizer, args, kwargs) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr

    return hook
