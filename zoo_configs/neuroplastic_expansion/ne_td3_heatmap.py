# NE-TD3 (ne_td3.py, unchanged settings) with gradient heat maps for the Neuroplastic Expansion paper's Fig. 11
# (App. F.6: "backpropagation gradient heatmaps of a standard network and of a network containing numerous dormant
# neurons"); td3_heatmap.py is the vanilla TD3 side.
#
# sb3_plasticity.GradientHeatmapCallback: at env steps 100k, 1M, 3M and 6M (the end) it takes |dL/dW| of every
# Linear layer of actor and critic on the next training pass (critic loss for the critic, actor loss for the actor)
# and writes <layer>_step<N>.npy and .png per network under <TensorBoard run dir>/gradient_heatmaps (the registry
# runner's tb/ folder; rl-zoo: give -tb, else SB3's logger folder), and logs plasticity/heatmap/<network>/mean_abs_grad.
# The paper names neither steps nor task; the "same input batch" of both networks is not reproduced (each run
# records its own training batch).
#
# Run (from the repository root):
#   python -m rl_zoo3.train --algo td3 --env HalfCheetah-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/neuroplastic_expansion/ne_td3_heatmap.py -tb runs/ne -f logs/ne

from sb3_plasticity.zoo import ne_td3_hyperparams

HEATMAP_STEPS = [100_000, 1_000_000, 3_000_000, 6_000_000]
heatmap = {"sb3_plasticity.GradientHeatmapCallback": dict(steps=HEATMAP_STEPS)}

hyperparams = ne_td3_hyperparams()
for settings in hyperparams.values():
    settings["callback"] = [*settings["callback"], heatmap]
