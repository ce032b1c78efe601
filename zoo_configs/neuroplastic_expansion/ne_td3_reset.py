# NE-TD3 with Reset (NE earlier version, App. C, Fig. 11): ne_td3.py's settings (App. C) plus td3_reset.yml's
# ResetCallback (all layers every 90000 steps) on the same masked networks; a reset keeps the masks.
# Order and ownership (docs/methods.md): NE owns the masks, the other method the values of the existing weights;
# its callback comes before NE's, NE runs with compose=True (it leaves the neuron claim to the other method and
# re-zeroes masked weights before every training pass).
# A .py file: the settings are built once in sb3_plasticity/zoo.py.
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo td3 --env HalfCheetah-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/neuroplastic_expansion/ne_td3_reset.py -tb runs/ne -f logs/ne
# (--env Hopper-v5 | Walker2d-v5 | HalfCheetah-v5 | Ant-v5 | Humanoid-v5)

from sb3_plasticity.zoo import ne_combined_hyperparams

hyperparams = ne_combined_hyperparams("reset")
