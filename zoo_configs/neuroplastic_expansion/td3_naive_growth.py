# TD3 with NE Sec. 3.1's naive random growth ("naive growth" of NE Fig. 2 and Fig. 14), Table 1's network size.
#
# Sec. 3.1: start from 20% of the neurons of each layer of the full TD3 network, chosen uniformly, and grow by adding
# k random connections per layer and event. Here (sb3_plasticity.zoo.td3_naive_growth_hyperparams): MaskedTD3Policy
# with every layer maskable (initial_density 1.0, dense_first_last False), the NE callback with initial_neurons 0.2
# (the other 80% of each hidden layer's neurons start without connections), growth random on NE's schedule of the
# task (App. C: every 20000 steps, rate 0.15 of the remaining capacity, cosine; Ant/Humanoid 25000, 0.01), no
# pruning, no experience review, no weight clipping. TD3 as in td3.yml. The paper gives no k for the naive growth.
# A .py file: the settings are built once in sb3_plasticity/zoo.py.
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo td3 --env HalfCheetah-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/neuroplastic_expansion/td3_naive_growth.py -tb runs/ne -f logs/ne
# (--env Hopper-v5 | Walker2d-v5 | HalfCheetah-v5 | Ant-v5 | Humanoid-v5)

from sb3_plasticity.zoo import td3_naive_growth_hyperparams

hyperparams = td3_naive_growth_hyperparams()
