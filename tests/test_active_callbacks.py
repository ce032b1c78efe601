"""active_callbacks (methods/base.py): which of the package's callbacks drive a policy or replay buffer during a
learn(), answered without touching either object, so that a replay buffer saved in the middle of a run is a plain SB3
pickle (the reason it stays a module-level weak map; see its docstring)."""

from __future__ import annotations

import pickle

from stable_baselines3 import TD3
from stable_baselines3.common.callbacks import BaseCallback

from sb3_plasticity import PlasticityMonitorCallback, ReDoCallback
from sb3_plasticity.methods.base import active_callbacks


class SaveBufferAt(BaseCallback):
    """Saves the replay buffer at one step of the learn(), as CheckpointCallback(save_replay_buffer=True) would,
    and notes what active_callbacks says there."""

    def __init__(self, step: int, path) -> None:
        super().__init__()
        self.step, self.path = step, path
        self.seen: dict[str, list] = {}

    def _on_step(self) -> bool:
        if self.num_timesteps == self.step:
            self.model.save_replay_buffer(self.path)
            self.seen = {"buffer": active_callbacks(self.model.replay_buffer), "policy": active_callbacks(self.model.policy)}
        return True


def test_running_callbacks_are_known_during_learn_and_leave_no_trace_in_the_buffer_file(tmp_path):
    model = TD3(
        "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[8]), learning_starts=50, buffer_size=500, device="cpu"
    )
    redo, monitor = ReDoCallback(reset_freq=1000), PlasticityMonitorCallback(log_freq=1000)
    saver = SaveBufferAt(60, tmp_path / "buffer.pkl")
    model.learn(80, callback=[redo, monitor, saver])
    # during learn(): the package's callbacks (not SB3's own), by the model's policy and by its buffer
    assert set(saver.seen["buffer"]) == set(saver.seen["policy"]) == {redo, monitor}
    # after it: none
    assert active_callbacks(model.replay_buffer) == [] and active_callbacks(model.policy) == []
    # the buffer file is a plain SB3 pickle: nothing of the package (nor the model) is written into it
    data = (tmp_path / "buffer.pkl").read_bytes()
    assert b"sb3_plasticity" not in data and b"TD3" not in data
    assert type(pickle.loads(data)).__module__ == "stable_baselines3.common.buffers"
    # an object no learn() has seen, weakly referable or not, is driven by nothing
    assert active_callbacks(model.actor) == [] and active_callbacks(object()) == []
