# LayerNorm SAC on Dog Walk (GraMa Fig. 4).
# GraMa paper Sec. 4.1, Fig. 4: MLP SAC with App. A.3 / Table 7's settings (grama/sac.yml: 2x256, buffer 1e6, batch
# 256, learning_starts 5000, actor lr 3e-4, critic lr 1e-3, automatic entropy, 3e6 steps) on DMC Dog Walk from state,
# built by sb3_plasticity.zoo.grama_mlp_sac, the monitor attached.
# - LayerNormSACPolicy: Linear -> LayerNorm -> ReLU in every hidden layer (docs/networks.md).
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo sac --env sb3_plasticity/DMC-dog-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/grama/sac_ln.py -tb runs/grama -f logs/grama

from sb3_plasticity.zoo import grama_mlp_sac

ENVS = ["sb3_plasticity/DMC-dog-walk-v0"]
hyperparams = grama_mlp_sac(ENVS, policy="sb3_plasticity.LayerNormSACPolicy")
