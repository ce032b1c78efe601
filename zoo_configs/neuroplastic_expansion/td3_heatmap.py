# Vanilla TD3 (td3.yml's settings) with gradient heat maps for the Neuroplastic Expansion paper's Fig. 11 (App.
# F.6); ne_td3_heatmap.py is the NE-TD3 side and describes the heat maps (same steps: 100k, 1M, 3M, 6M).
#
# TD3 as td3.yml (App. C.1 Table 1, C.2 Table 2): hidden (256, 128) ReLU, actor lr 1e-4, critic lr 1e-3
# (NetworkLearningRateCallback), batch 128, buffer 1e6, gamma 0.99, noise N(0, 0.1), learning_starts 25000, 6e6
# steps, PlasticityMonitorCallback every 5000 steps.
#
# Run (from the repository root):
#   python -m rl_zoo3.train --algo td3 --env HalfCheetah-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/neuroplastic_expansion/td3_heatmap.py -tb runs/ne -f logs/ne

from sb3_plasticity.zoo import NE_TASKS, ne_paper_td3

HEATMAP_STEPS = [100_000, 1_000_000, 3_000_000, 6_000_000]

hyperparams = {
    env_id: dict(
        ne_paper_td3(),
        policy="MlpPolicy",
        policy_kwargs=dict(net_arch=[256, 128]),
        callback=[
            {"sb3_plasticity.NetworkLearningRateCallback": dict(actor=1e-4, critic=1e-3)},
            {"sb3_plasticity.PlasticityMonitorCallback": dict(log_freq=5000)},
            {"sb3_plasticity.GradientHeatmapCallback": dict(steps=HEATMAP_STEPS)},
        ],
    )
    for env_id in NE_TASKS
}
