# LN-DrQ, a baseline of the Neuroplastic Expansion paper's image-input experiments (Sec. 4.4, Fig. 10; App. C:
# "LN-DrQ: LayerNorm after the hidden layers"), on DrQ-v2 with drqv2.py's settings (NE Table 3) and
# sb3_plasticity's monitor attached.
# - policy_kwargs layer_norm=True (= sb3_plasticity.LayerNormDrQV2Policy): Linear -> LayerNorm -> ReLU in both
#   hidden layers (1024) of the actor's MLP and of each Q-network (the target critic too); the output layers have
#   no norm; the encoder and the 50-d trunks (which already end in DrQ-v2's LayerNorm + tanh) are unchanged.
#   The norms' elementwise gain and bias are per neuron, so each norm belongs to its hidden layer's neuron group
#   (the monitor's and the methods' groups are the same as DrQ-v2's).

# Run (from the repository root; -tb turns TensorBoard on; MUJOCO_GL=egl renders headless):
#   MUJOCO_GL=egl python -m sb3_plasticity.zoo_plugin train --algo drqv2 \
#       --env sb3_plasticity/DMCPixels-walker-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/drqv2/drqv2_ln.py -tb runs/drqv2 -f logs/drqv2
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


def ln_drqv2(domain: str, task: str, n_timesteps: int) -> dict:
    settings = drqv2_settings(domain, task)
    return dict(
        settings,
        n_timesteps=n_timesteps,
        policy_kwargs=dict(settings["policy_kwargs"], layer_norm=True),
        callback=[{"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}}],
    )


hyperparams = {
    dmc_env_id(domain, task, pixels=True): ln_drqv2(domain, task, n_timesteps) for (domain, task), n_timesteps in TASKS.items()
}
