# PI-DrQ, a baseline of the Neuroplastic Expansion paper's image-input experiments (Sec. 4.4, Fig. 10; App. C.2:
# Plasticity Injection "following the guidelines from the official paper"), on DrQ-v2 with drqv2.py's settings
# (NE Table 3) and sb3_plasticity's monitor attached.
# - PlasticityInjectionCallback(inject_at=0.25): the NE paper gives no injection step; as
#   zoo_configs/neuroplastic_expansion/td3_pi.yml, the injection paper's standard protocol of a single injection
#   after a quarter of training ("after 50M frames" of its 200M): step 125,000 of 500,000 (a fraction of the
#   learn() call's total_timesteps, so a shorter run injects at its own quarter).
# - Heads (head_layers 1, the callback's default): the output layer of the actor's MLP and of each Q-network; the
#   target critic follows. The old head is frozen, a fresh one and a frozen copy of it are added
#   (h_old + h_new - h_copy: the outputs are unchanged at injection). The shared encoder and the trunks are the
#   injection paper's "encoder": they keep training. The fresh heads join the actor's and the critic's Adam.
# - PlasticityMonitorCallback logs neuron health under plasticity/ every 5000 env steps; the injection logs under
#   plasticity/injection/.

# Run (from the repository root; -tb turns TensorBoard on; MUJOCO_GL=egl renders headless):
#   MUJOCO_GL=egl python -m sb3_plasticity.zoo_plugin train --algo drqv2 \
#       --env sb3_plasticity/DMCPixels-walker-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/drqv2/drqv2_pi.py -tb runs/drqv2 -f logs/drqv2
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
            {"sb3_plasticity.PlasticityInjectionCallback": {"inject_at": 0.25}},
            {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}},
        ],
    )
    for (domain, task), n_timesteps in TASKS.items()
}
