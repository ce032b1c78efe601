# BRO-net SAC + ReGraMa from pixels on the Dog tasks (GraMa Fig. 1).
# GraMa paper Sec. 1, Fig. 1: "vision RL BRO-net agent" on "3 image-input tasks" (Dog Stand, Dog Walk, Dog Run) on
# sb3_plasticity/DMCPixels-dog-{stand,walk,run}-v0 (84x84 RGB, 3 frames stacked, action repeat 2).
# - BRO-net and its settings as grama/bro_sac.py (sb3_plasticity.zoo.grama_bro_sac: App. A.1 / Table 3, width 256,
#   actor 1 / critic 2 blocks, lrs 1e-4 / 1e-3, replay ratio 2, batch 128), the monitor attached (tau 0.02,
#   grama_tau 0.01).
# - Ours (the paper names no encoder): SB3's NatureCNN (features_extractor_class) in front of the BRO-net actor and
#   Q-networks, one per network (SAC's share_features_extractor=False, the default); its conv and linear layers are
#   neuron groups too (network actor / critic), so the methods and the monitor act on them. No augmentation.
# - buffer_size 100000 (not Table 3's 1e6: a (9, 84, 84) uint8 transition takes 127 kB in SB3's buffer, 12.7 GB
#   at 1e5; raise it with -params buffer_size:... on a machine with the memory).
# - 1e6 agent steps (2e6 frames).
# - ReGraMa (App. A.1): GraMaResetCallback tau 0.01 every 1000 env steps.
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo sac --env sb3_plasticity/DMCPixels-dog-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/grama/bro_sac_pixels_regrama.py -tb runs/grama -f logs/grama

from sb3_plasticity.zoo import grama_bro_sac

CNN = "__import__('stable_baselines3.common.torch_layers', fromlist=['NatureCNN']).NatureCNN"
state = grama_bro_sac([{"sb3_plasticity.GraMaResetCallback": dict(reset_freq=1000, tau=0.01)}])[
    "sb3_plasticity/DMC-dog-walk-v0"
]
hyperparams = {
    f"sb3_plasticity/DMCPixels-dog-{task}-v0": dict(
        state,
        policy_kwargs=f"dict(width=256, actor_blocks=1, critic_blocks=2, features_extractor_class={CNN})",
        buffer_size=100_000,
    )
    for task in ("stand", "walk", "run")
}
