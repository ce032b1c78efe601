# Vanilla TD3 at a larger network size (NE Fig. 2, Fig. 14): the settings of td3.yml (App. C) with a deeper actor
# and critic.
# Network size level 2 (NE App. C.1's scale-up, sb3_plasticity.zoo.scaled_net_arch):
# actor hidden [256, 256, 256, 128], each Q-network hidden [256, 128, 256, 256].
# The paper's sizes for Fig. 2 / Fig. 14 are not in the text: levels 1-3 are our choice, level 1 being the
# paper's "1.8x" agent read as one added 256-unit layer per network.
# A .py file: the settings are built once in sb3_plasticity/zoo.py.
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo td3 --env HalfCheetah-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/neuroplastic_expansion/td3_scale2.py -tb runs/ne -f logs/ne
# (--env Hopper-v5 | Walker2d-v5 | HalfCheetah-v5 | Ant-v5 | Humanoid-v5)

from sb3_plasticity.zoo import td3_scaled_hyperparams

hyperparams = td3_scaled_hyperparams(2)
