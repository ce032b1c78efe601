# Vanilla BRO-net SAC with the irreversibility tracer of GraMa Fig. 6(b) (Sec. 4.2).
# GraMa paper ("Measure gradients, not activations"), Sec. 5.1 (Fig. 8), App. A.1, Table 3: BRO-net SAC on
# the DMC tasks from state of Fig. 8 and Table 8 (sb3_plasticity/DMC-{humanoid-stand,humanoid-walk,humanoid-run,
# dog-stand,dog-walk}-v0), with
# sb3_plasticity's monitor attached. Settings are built once in sb3_plasticity.zoo.grama_bro_sac:
# - Table 3: BroNetSACPolicy width 256, actor 1 / critic 2 blocks, actor lr 1e-4, critic lr 1e-3
#   (NetworkLearningRateCallback), replay ratio 2 (gradient_steps 2 per env step), batch 128, buffer 1e6, gamma 0.99.
# - Not in the paper ("the default settings" of BRO, whose official code differs from Table 3), ours:
#   learning_starts 5000 (GraMa's MLP SAC, App. A.3), SB3's SAC defaults otherwise (target tau 0.005, automatic
#   entropy tuning), n_timesteps 1e6 (BRO's DMC budget).
# - The monitor uses App. A.1's thresholds (tau 0.02, grama_tau 0.01), so its dormant / GraMa-inactive ratios are
#   the paper's.
#
# - IrreversibilityCallback (sb3_plasticity.analysis, docs/analysis.md): 1000 neurons with GraMa score <= 0.0095 sampled
#   at the first check ("pre-training period", our reading), followed every 10,000 env steps: their inactive and
#   never-recovered shares and score histogram (plasticity/analysis/<network>/...).
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo sac --env sb3_plasticity/DMC-dog-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/grama/bro_sac_irreversibility.py -tb runs/grama -f logs/grama

from sb3_plasticity.zoo import grama_bro_sac

hyperparams = grama_bro_sac([{"sb3_plasticity.IrreversibilityCallback": dict(check_freq=10_000, tau=0.0095, n_neurons=1000)}])
