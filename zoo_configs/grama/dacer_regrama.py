# DACER + ReGraMa: resetting neurons guided by GraMa on the diffusion policy of the GraMa paper's Sec. 5.2
# (Fig. 10-11; App. A.2), on Ant-v5 and Walker2d-v5, with the monitor attached. Same DACER settings as dacer.py
# (see its header).
#
# - GraMaResetCallback, App. A.2: tau 0.01, reset every 1000 steps, read as 1,000 updates = 20,000 env steps (the
#   official DACER trainer makes one update per 20-env vector step; the GraMa code counts updates). GraMa score
#   E|dL/dz_i| normalised per layer (Eq. 2) on the gradients of the next training pass (critics: the distributional
#   critic loss; denoiser: the actor loss backpropagated through all 20 reverse-diffusion steps, every step's
#   gradient counted, docs/networks.md "DACER"); neurons with score <= tau re-initialised between backward and the
#   optimizer step in every hidden layer of the denoiser (its MLP and its time-embedding MLP) and of the critics.
#   App. A.2 says GraMa puts the two metrics "into the policy model": pass networks=["actor"] to reset the
#   denoiser only.
# - PlasticityMonitorCallback every 20,000 env steps with tau 0.02 and grama_tau 0.01 (App. A.2).
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m sb3_plasticity.zoo_plugin train --algo dacer --env Walker2d-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/grama/dacer_regrama.py -tb runs/grama -f logs/grama
# (--env Ant-v5 | Walker2d-v5)

DACER_SETTINGS = dict(
    n_timesteps=30_000_000,  # official --total_step (20 envs): 1.5M updates
    policy="MlpPolicy",
    policy_kwargs="dict(net_arch=[256, 256, 256], activation_fn=nn.Mish, diffusion_steps=20, noise_scale=0.1)",
    n_envs=20,
    learning_rate=3e-4,  # Table 5
    buffer_size=1_000_000,
    learning_starts=30_000,
    batch_size=256,
    gamma=0.99,
    tau=0.005,
    train_freq=1,
    gradient_steps=1,
    policy_delay=2,
    reward_scale=1.0,  # Table 5
    alpha_learning_rate=3e-2,
    alpha_update_interval=10_000,
    entropy_samples=200,
    gmm_components=3,
)

REGRAMA = {"sb3_plasticity.GraMaResetCallback": {"reset_freq": 20_000, "tau": 0.01}}
MONITOR = {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 20_000, "tau": 0.02, "grama_tau": 0.01}}

hyperparams = {env_id: dict(DACER_SETTINGS, callback=[REGRAMA, MONITOR]) for env_id in ("Ant-v5", "Walker2d-v5")}
