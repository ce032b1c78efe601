# ReDo-DrQ, a baseline of the Neuroplastic Expansion paper's image-input experiments (Sec. 4.4, Fig. 10; App. C.2:
# "the default settings of the official ReDo codebase"), on DrQ-v2 with drqv2.py's settings (NE Table 3) and
# sb3_plasticity's monitor attached.
# - ReDoCallback(reset_freq=1000, tau=0.1): as td3_redo.yml (ReDo's MLP tau; the paper names none); the encoder's
#   channels are a neuron group too (network "features"): ReDo acts on actor, critic and encoder.

# Run (from the repository root; -tb turns TensorBoard on; MUJOCO_GL=egl renders headless):
#   MUJOCO_GL=egl python -m sb3_plasticity.zoo_plugin train --algo drqv2 \
#       --env sb3_plasticity/DMCPixels-walker-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/drqv2/drqv2_redo.py -tb runs/drqv2 -f logs/drqv2
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
            {"sb3_plasticity.ReDoCallback": {"reset_freq": 1000, "tau": 0.1}},
            {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}},
        ],
    )
    for (domain, task), n_timesteps in TASKS.items()
}
