# ResNet-SAC + ReGraMa on Dog Walk (GraMa Fig. 4(a)).
# GraMa paper Sec. 4.1, Fig. 4(a): "Resnet-SAC [Shah and Kumar, 2021]" with App. A.3 / Table 7's settings (CleanRL SAC,
# "also Resnet SAC": buffer 1e6, batch 256, learning_starts 5000, actor lr 3e-4, critic lr 1e-3, automatic entropy,
# 3e6 steps) on DMC Dog Walk from state, built by sb3_plasticity.zoo.grama_mlp_sac, the monitor attached.
# - Policy: sb3_plasticity.ResNetSACPolicy (sb3_plasticity/resnet_policies.py): CleanRL's 256-wide ReLU SAC with
#   residual hidden layers, stem Linear-ReLU then 1 block x + Linear(ReLU(Linear(x))) in the actor and each
#   Q-network, no normalisation. The paper describes no layers; RRL (Shah and Kumar) is a pixel ResNet encoder,
#   which does not apply to the state task: see the module docstring and docs/networks.md.
# - ReGraMa tau 0 every 1000 env steps (Fig. 4 states no tau: Table 7's MLP SAC value).
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo sac --env sb3_plasticity/DMC-dog-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/grama/resnet_sac_regrama.py -tb runs/grama -f logs/grama

from sb3_plasticity.zoo import grama_mlp_sac

ENVS = ["sb3_plasticity/DMC-dog-walk-v0"]
hyperparams = grama_mlp_sac(
    ENVS,
    policy="sb3_plasticity.ResNetSACPolicy",
    method_callbacks=[{"sb3_plasticity.GraMaResetCallback": dict(reset_freq=1000, tau=0.0)}],
)
for settings in hyperparams.values():
    settings["policy_kwargs"] = "dict(width=256, actor_blocks=1, critic_blocks=1)"
