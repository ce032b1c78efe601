# LN-TD3, a baseline of the Neuroplastic Expansion paper's MuJoCo experiments (Sec. 4.1, Fig. 6; App. C.2,
# Table 2), with sb3_plasticity's monitor attached.
#
# LayerNorm (Lyle et al. 2024): App. C.2 "we introduce layer normalization after the hidden layers of both the
# critic and actor networks to establish the LN-TD3 baseline". Policy sb3_plasticity.LayerNormTD3Policy: every
# hidden layer of the actor and of each Q-network (targets too) is Linear -> LayerNorm -> ReLU; the output layers
# have no norm (docs/networks.md). No other change: the settings below are td3.yml's.
#
# Paper settings used here (App. C.1 Table 1, C.2 Table 2): actor and critic hidden (256, 128) ReLU, actor lr 1e-4,
# critic lr 1e-3, batch 128, buffer 1e6, gamma 0.99, Adam, exploration noise N(0, 0.1), raw observations and
# rewards (no normalisation). TD3 itself follows github.com/sfujim/TD3 (= SB3's defaults): policy delay 2,
# target policy noise 0.2 clipped at 0.5, tau 0.005, one update per env step.
# - learning_starts 25000: the official NE code's start_timesteps (stl/train.py; the paper gives none).
# - n_timesteps 6e6: Sec. 4.1 "long-term training setting, i.e. 3M steps -> 6M"; the official code's
#   max_timesteps is 6e6 too.
# - SB3 has a single `learning_rate`: NetworkLearningRateCallback sets actor 1e-4 and critic 1e-3 in an
#   optimizer pre-step hook. `learning_rate` is set to the actor's 1e-4 because SB3 rewrites every optimizer's
#   lr at each train() and the actor, updated every 2nd step only, would otherwise hold SB3's value between
#   its updates (and in a saved model).
# - Open reading: Table 2 prints six values per row under five method names. Read left to right (the blank
#   column last, as in the earlier version's table), its LN-TD3 column has critic lr 3e-4 and a
#   "representation model" lr 1e-4 (an MLP TD3 has no representation model). This file keeps td3.yml's critic lr
#   1e-3, as td3_redo.yml and td3_reset.yml do; to use 3e-4, set the NetworkLearningRateCallback's `critic`.
# - Noise: SB3 adds N(0, 0.1) in the [-1, 1]-rescaled action space, i.e. 0.1 * max_action as sfujim/TD3 does.
# - Deviation: the official NE code's critic has three hidden layers with a LayerNorm; this follows the
#   paper's Table 1.
# - PlasticityMonitorCallback logs neuron health under plasticity/ every 5000 env steps.
# A .py file like the NE configs beside it: the TD3 settings come from sb3_plasticity.zoo.ne_paper_td3, where they
# live once (rl_zoo3 resolves the dotted `policy` string itself, in yaml too).
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo td3 --env HalfCheetah-v5 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/neuroplastic_expansion/td3_ln.py -tb runs/ne -f logs/ne
# (--env Hopper-v5 | Walker2d-v5 | HalfCheetah-v5 | Ant-v5 | Humanoid-v5)

from sb3_plasticity.zoo import NE_TASKS, ne_paper_td3


def ln_td3() -> dict:
    return dict(
        ne_paper_td3(),  # td3.yml's settings, listed above
        policy="sb3_plasticity.LayerNormTD3Policy",  # rl_zoo3 needs a dotted string, even in .py configs
        policy_kwargs=dict(net_arch=[256, 128]),
        callback=[
            {"sb3_plasticity.NetworkLearningRateCallback": dict(actor=1e-4, critic=1e-3)},
            {"sb3_plasticity.PlasticityMonitorCallback": dict(log_freq=5000)},
        ],
    )


# Hopper-v5, Walker2d-v5, HalfCheetah-v5, Ant-v5, Humanoid-v5
hyperparams = {env_id: ln_td3() for env_id in NE_TASKS}
