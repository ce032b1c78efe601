# Reset-DrQ, a baseline of the Neuroplastic Expansion paper's image-input experiments (Sec. 4.4, Fig. 10; App. C:
# "For Reset-DrQ, we only reset the last three MLP layers which is suggested by their paper"), on DrQ-v2 with
# drqv2.py's settings (NE Table 3) and sb3_plasticity's monitor attached.
# - ResetCallback(layers=3, networks=[actor, critic]): the last three linear layers of the actor and of the critics
#   (the trunk's 50-d projection and the two hidden layers are the neuron groups; with the output layer that is the
#   MLP head Nikishin et al. reset), with a fresh optimizer state; the target critic follows; the encoder is kept.
# - Reset interval: the NE paper gives none for DrQ. 100,000 agent steps is our choice (Nikishin et al. 2022 reset
#   DrQ on DMC every 100k steps); Reset-TD3's 90,000 (App. C.2) is the MuJoCo setting.

# Run (from the repository root; -tb turns TensorBoard on; MUJOCO_GL=egl renders headless):
#   MUJOCO_GL=egl python -m sb3_plasticity.zoo_plugin train --algo drqv2 \
#       --env sb3_plasticity/DMCPixels-walker-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/drqv2/drqv2_reset.py -tb runs/drqv2 -f logs/drqv2
# (--env sb3_plasticity/DMCPixels-{reacher-easy,reacher-hard,walker-walk,cartpole-swingup_sparse}-v0)

from sb3_plasticity import dmc_env_id
from sb3_plasticity.zoo_plugin import drqv2_settings

# NE Sec. 4.3-4.4: 500k agent steps each (the paper gives no length)
TASKS = {
    ("reacher", "easy"): 500_000,
    ("reacher", "hard"): 500_000,
    ("walker", "walk"): 500_000,
    ("cartpole", "swingup_sparse"): 500_000,
}

hyperparams = {
    dmc_env_id(domain, task, pixels=True): dict(
        drqv2_settings(domain, task),
        n_timesteps=n_timesteps,
        callback=[
            {"sb3_plasticity.ResetCallback": {"reset_freq": 100_000, "layers": 3, "networks": ["actor", "critic"]}},
            {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}},
        ],
    )
    for (domain, task), n_timesteps in TASKS.items()
}
