# DrQ-v2 (Yarats et al. 2022, "Mastering Visual Continuous Control") on the image-based DeepMind Control tasks
# of the Neuroplastic Expansion paper (Sec. 4.3, Fig. 10; App. B-C, Table 3: the DrQ backbone) and of the GraMa
# paper (App. C, Table 9: Quadruped Run with DrQ-v2), with sb3_plasticity's monitor attached: the vanilla
# DrQ-v2 baseline those experiments build on. sb3_plasticity.DrQV2 is an SB3 algorithm of this package (not
# part of SB3 or rl_zoo3), so the zoo needs it registered first: run rl_zoo3 through sb3_plasticity.zoo_plugin.
#
# Env sb3_plasticity/DMCPixels-<domain>-<task>-v0 (docs/environments.md): 84x84 RGB from DrQ's camera (camera 2
# for quadruped), 3 frames stacked into a channel-first uint8 (9, 84, 84) observation, action repeat 2; 500 agent
# steps per episode.
# Settings (DrQ-v2 App. B Table 1 = NE Table 3; docs/networks.md "DrQ-v2"; sb3_plasticity.zoo_plugin.drqv2_settings):
# encoder 4 conv layers x 32 channels trained by the critic, trunk feature dim 50 (LayerNorm, tanh), hidden dim
# 1024 (two layers), Adam lr 1e-4, mini-batch 256, gamma 0.99, 3-step returns (SB3's NStepReplayBuffer), critic
# soft-update rate 0.01, update every 2 env steps (train_freq 2), seed frames 4000 = 2000 agent steps of uniform
# random actions (learning_starts), random shift pad 4, target-smoothing / actor-noise clip 0.3, exploration std
# linear(1.0, 0.1, 500000) env steps (official "medium" tasks: reacher, cartpole swingup sparse, quadruped run)
# or linear(1.0, 0.1, 100000) (official "easy": walker walk).
# - Deviation: replay buffer 100,000 transitions, not 1e6. SB3 stores every stacked observation twice (obs and
#   next obs, 2 x 63.5 kB): 1e6 would take 127 GB (the official quadruped_run capacity is 100,000 anyway).
# - Walker Walk follows NE Table 3 (3-step returns, batch 256), not the official walker_walk.yaml (1-step, 512).
# - n_timesteps (agent steps; frames = 2 x steps): 500,000 for the NE tasks (1e6 frames, as
#   neuroplastic_expansion/drq_pixels.py; the NE paper gives no length); 1,500,000 for Quadruped Run (GraMa
#   App. C "3M step", read as DrQ-v2's 3M frames; official medium: 3.1M frames).
# - PlasticityMonitorCallback logs neuron health under plasticity/ every 5000 env steps (networks features =
#   the encoder's channels, actor, critic, critic_target).
#
# Run (from the repository root; -tb turns TensorBoard on; MUJOCO_GL=egl renders headless):
#   MUJOCO_GL=egl python -m sb3_plasticity.zoo_plugin train --algo drqv2 \
#       --env sb3_plasticity/DMCPixels-walker-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/drqv2/drqv2.py -tb runs/drqv2 -f logs/drqv2
# (--env sb3_plasticity/DMCPixels-{reacher-easy,reacher-hard,walker-walk,cartpole-swingup_sparse,quadruped-run}-v0)
# `python -m rl_zoo3.train --algo drqv2` itself rejects the name: rl_zoo3 checks --algo before it imports
# --gym-packages (sb3_plasticity.zoo_plugin explains). enjoy / record_video: `python -m sb3_plasticity.zoo_plugin
# enjoy --algo drqv2 ...` with rl_zoo3's own arguments.

from sb3_plasticity import dmc_env_id
from sb3_plasticity.zoo_plugin import drqv2_settings

# NE Sec. 4.3 (500k agent steps each) and GraMa App. C Table 9 (1.5M agent steps)
TASKS = {
    ("reacher", "easy"): 500_000,
    ("reacher", "hard"): 500_000,
    ("walker", "walk"): 500_000,
    ("cartpole", "swingup_sparse"): 500_000,
    ("quadruped", "run"): 1_500_000,
}

hyperparams = {
    dmc_env_id(domain, task, pixels=True): dict(
        drqv2_settings(domain, task),
        n_timesteps=n_timesteps,
        callback=[{"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}}],
    )
    for (domain, task), n_timesteps in TASKS.items()
}
