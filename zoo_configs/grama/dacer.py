# DACER (Wang et al., NeurIPS 2024, "Diffusion Actor-Critic with Entropy Regulator"), the diffusion-policy agent of
# the GraMa paper's Sec. 5.2 (Fig. 10-11; App. A.2, Tables 4-5), on Ant-v5 and Walker2d-v5, with sb3_plasticity's
# monitor attached: the vanilla baseline. dacer_redo.py and dacer_regrama.py add ReDo and ReGraMa to these settings.
# sb3_plasticity.DACER is an SB3 algorithm of this package (not part of SB3 or rl_zoo3), so the zoo needs it
# registered first: run rl_zoo3 through sb3_plasticity.zoo_plugin.
#
# Settings (GraMa App. A.2: "All parameters follow official defaults"; Table 5 where it gives a value; the official
# DACER code, happy-yan/DACER-Diffusion-with-Online-RL, for the rest; docs/networks.md "DACER"):
# - Table 5: learning rate 3e-4 for actor and critics (official --lr 1e-4), alpha lr 3e-2, gamma 0.99, batch 256,
#   buffer 1e6, target rate tau 5e-3, policy update delay 2, hidden size 256, reward scale 1.0 (official 0.2).
# - Official code: 20 vector envs with one update per vector step (n_envs 20, train_freq 1, gradient_steps 1),
#   3e7 env steps = 1.5M updates (--total_step 3e7, the DACER paper's 1.5M iterations), 30,000 env steps of
#   uniform random actions first (--start_step "other envs 3e4"), denoiser and critics 3 x 256 with Mish,
#   T = 20 diffusion steps, entropy-regulator noise lambda 0.1 ("other envs"; 0.15 is for Humanoid and HalfCheetah),
#   initial alpha 3, alpha stepped every 10,000 updates on the GMM entropy (3 components) of 200 actions per state,
#   target entropy -0.9 * action dim (DACER's defaults for those).
# - Network: GraMa Sec. 5.2 says "Unet backbone with Swish activations", its Table 4 lists 2x256 ReLU MLPs; the
#   official code (which App. A.2 says GraMa's runs are based on) has no U-Net: an MLP denoiser with a time-embedding
#   MLP, Mish activations. The official network is used; Table 4's is
#   -params policy_kwargs:"dict(net_arch=[256, 256], activation_fn=nn.ReLU)".
# - The paper ran MuJoCo-v4 (Ant-v4, Walker2d-v4); v5 here as in the rest of the project.
# - PlasticityMonitorCallback every 20,000 env steps (1,000 updates) with GraMa's thresholds (App. A.2: tau 0.02
#   for the dormant ratio, 0.01 for the GraMa ratio). Networks: actor (the denoiser), critic, critic_target.
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m sb3_plasticity.zoo_plugin train --algo dacer --env Walker2d-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/grama/dacer.py -tb runs/grama -f logs/grama
# (--env Ant-v5 | Walker2d-v5; `python -m rl_zoo3.train --algo dacer` itself rejects the name: rl_zoo3 checks
# --algo before it imports --gym-packages, see sb3_plasticity.zoo_plugin.)

DACER_SETTINGS = dict(
    n_timesteps=30_000_000,  # official --total_step (20 envs): 1.5M updates
    policy="MlpPolicy",
    # official network (Table 4 lists 2 x 256 ReLU instead); T and lambda as the official code for Ant / Walker2d
    policy_kwargs="dict(net_arch=[256, 256, 256], activation_fn=nn.Mish, diffusion_steps=20, noise_scale=0.1)",
    n_envs=20,  # official --num_vec_envs
    learning_rate=3e-4,  # Table 5 (official 1e-4)
    buffer_size=1_000_000,  # Table 5
    learning_starts=30_000,  # official --start_step, "other envs"
    batch_size=256,  # Table 5
    gamma=0.99,  # Table 5
    tau=0.005,  # Table 5
    train_freq=1,  # one update per vector step, as the official trainer
    gradient_steps=1,
    policy_delay=2,  # Table 5
    reward_scale=1.0,  # Table 5 (official 0.2)
    alpha_learning_rate=3e-2,  # Table 5
    alpha_update_interval=10_000,  # official delay_alpha_update
    entropy_samples=200,  # official num_samples
    gmm_components=3,  # official estimate_entropy
)

MONITOR = {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 20_000, "tau": 0.02, "grama_tau": 0.01}}

hyperparams = {env_id: dict(DACER_SETTINGS, callback=[MONITOR]) for env_id in ("Ant-v5", "Walker2d-v5")}
