# NE-TD3 with LayerNorm (NE earlier version, App. C, Fig. 11): ne_td3.py's settings (App. C) on
# MaskedLayerNormTD3Policy: td3_ln.py's Linear -> LayerNorm -> ReLU hidden layers with NE's masks (norms dense).
# A .py file: the settings are built once in sb3_plasticity/zoo.py.
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo td3 --env HalfCheetah-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/neuroplastic_expansion/ne_td3_ln.py -tb runs/ne -f logs/ne
# (--env Hopper-v5 | Walker2d-v5 | HalfCheetah-v5 | Ant-v5 | Humanoid-v5)

from sb3_plasticity.zoo import ne_combined_hyperparams

hyperparams = ne_combined_hyperparams("ln")
