# DrQ (SAC from pixels with random-shift augmentation) on the image-based DeepMind Control tasks of the
# Neuroplastic Expansion paper (Sec. 4.3, Fig. 10; App. C, Table 3), with sb3_plasticity's monitor attached:
# the "vanilla DrQ" baseline those experiments build on.
#
# A .py config: rl-zoo evaluates `replay_buffer_class` strings with only nn/th/np (and builtins) in scope, so the
# class is written as the string zoo_class builds (`__import__('sb3_plasticity').DrQNStepReplayBuffer`), which keeps
# the saved config.yml readable by rl-zoo's enjoy and record_video. `policy` stays a string (the zoo needs it).
#
# Env sb3_plasticity/DMCPixels-<domain>-<task>-v0 (docs/environments.md): 84x84 RGB from DrQ's camera, 3 frames
# stacked into a channel-first uint8 (9, 84, 84) observation, action repeat 2 (Table 3); 500 agent steps per
# episode. Tasks (Sec. 4.3): Reacher Easy, Reacher Hard, Walker Walk, Cartpole Swingup Sparse.
# Paper settings used here (Table 3): learning rate 1e-4 (actor, critic, temperature), mini-batch 256, gamma
# 0.99, critic soft-update rate 0.01, agent update every 2 env steps (train_freq 2), 3-step returns
# (DrQNStepReplayBuffer = SB3's NStepReplayBuffer + DrQ's random shift, pad 4), features dim 50 (NatureCNN's
# output), hidden dim 1024 (two layers), seed frames 4000 = 2000 agent steps of random actions (learning_starts).
# Replay buffer 1e6 transitions (Table 3). Memory: SB3 stores every stacked observation twice (obs and next obs,
#   2 x 63.5 kB = 127 kB per transition, 127 GB when full). The buffer reserves it without committing it
#   (sb3_plasticity.buffers.LazyStorageMixin): it becomes resident as transitions are written, 63.5 GB after the
#   5e5 agent steps below (a warning at start says when the full size exceeds the available memory).
#   optimize_memory_usage (one copy) is not used: SB3's NStepReplayBuffer refuses it. On a smaller machine add
#   `-params buffer_size:100000` (DrQ's own capacity).
# - Deviation: the encoder is SB3's NatureCNN (3 conv layers, then a 50-d linear layer with ReLU), one per actor
#   and critic (SB3 SAC's default; SB3's shared-encoder mode trains it with the actor loss only), where DrQ has
#   one 4-layer 32-channel encoder trained by the critic and a LayerNorm-tanh 50-d output. One augmentation per
#   sample, no K/M averaging of Q targets (DrQ-v2's choice). "Exploration steps 2000" is DrQ-v2's DDPG noise
#   schedule; SAC explores through its entropy term (initial temperature 0.1, DrQ).
# - n_timesteps 5e5 agent steps (1e6 frames): our choice, the paper gives no length.
# - PlasticityMonitorCallback logs neuron health under plasticity/ every 5000 env steps (NatureCNN channels are
#   neuron groups too, under plasticity/<network>/...).
#
# Run (from the repository root; -tb turns TensorBoard on; MUJOCO_GL=egl renders headless):
#   MUJOCO_GL=egl python -m rl_zoo3.train --algo sac --env sb3_plasticity/DMCPixels-walker-walk-v0 \
#       --gym-packages sb3_plasticity --conf-file zoo_configs/neuroplastic_expansion/drq_pixels.py \
#       -tb runs/ne_drq -f logs/ne_drq
# (--env sb3_plasticity/DMCPixels-{reacher-easy,reacher-hard,walker-walk,cartpole-swingup_sparse}-v0)

from sb3_plasticity import DrQNStepReplayBuffer, dmc_env_id
from sb3_plasticity.zoo import drq_settings, zoo_class

# NE Sec. 4.3
TASKS = [("reacher", "easy"), ("reacher", "hard"), ("walker", "walk"), ("cartpole", "swingup_sparse")]

drq = dict(
    drq_settings(),  # Table 3, listed above
    policy="CnnPolicy",
    replay_buffer_class=zoo_class(DrQNStepReplayBuffer),
    replay_buffer_kwargs=dict(n_steps=3, gamma=0.99, pad=4),
    callback=[{"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}}],
)

hyperparams = {dmc_env_id(domain, task, pixels=True): dict(drq) for domain, task in TASKS}
