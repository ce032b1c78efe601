# NE-TD3 without dormant-neuron pruning (ablation: NE Fig. 3 on TD3). NE Table 4's "w/o prune" is on DrQ with DMC
# pixels: ne_drq_pixels.py with the NE callback's `prune: False`.
#
# Settings (NE App. C; listed in sb3_plasticity/zoo.py, which builds this dict): TD3 as in td3.yml (hidden
# (256, 128), actor lr 1e-4, critic lr 1e-3, batch 128, noise N(0, 0.1), learning_starts 25000, 6e6 steps) with
# MaskedTD3Policy (25% initial density, Erdos-Renyi, first/last layers dense), NeuroplasticExpansionCallback
# (Hopper/Walker2d/HalfCheetah: every 20000 steps, rate 0.15, omega 0.2; Ant/Humanoid: 25000, 0.01, 0.4; kappa 3)
# and ExperienceReviewBuffer (c = 450, floor 0.25; 0.35 Ant/Humanoid).
# A .py file: the settings are built once in sb3_plasticity/zoo.py. The buffer class is the string rl_zoo3 evaluates
# itself (zoo_class), so the saved config.yml reads back in enjoy/record_video; the tuner (-optimize) keeps the
# masked policy's policy_kwargs (PolicyKwargsGuardCallback, first in the callback list).
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo td3 --env HalfCheetah-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/neuroplastic_expansion/ne_td3_no_prune.py -tb runs/ne -f logs/ne
# (--env Hopper-v5 | Walker2d-v5 | HalfCheetah-v5 | Ant-v5 | Humanoid-v5)

from sb3_plasticity.zoo import ne_td3_hyperparams

hyperparams = ne_td3_hyperparams(prune=False)
