# BRO-net SAC, pruning the neurons the ReDo score flags during training (GraMa Fig. 7).
# GraMa paper Sec. 4.2 ("ReGraMa identifies inactive neurons more effectively in complex architectures"), Fig. 7:
# BRO-net SAC on Dog Walk with App. A.1 / Table 3's settings, built by sb3_plasticity.zoo.grama_bro_sac (see
# grama/bro_sac.py for the settings and what is ours), the monitor attached.
# - ScorePruningCallback(score="redo", tau=0.02, prune_freq=1000): every 1000 env steps the neurons with a ReDo
#   score <= 0.02 are pruned for good (incoming weights, bias and LayerNorm entries held at 0, so their output is 0)
#   instead of reset. The paper states no pruning period or threshold: App. A.1's reset settings (every 1000 steps;
#   ReDo 0.02, GraMa 0.01).
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo sac --env sb3_plasticity/DMC-dog-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/grama/bro_sac_prune_redo.py -tb runs/grama -f logs/grama

from sb3_plasticity.zoo import grama_bro_sac

hyperparams = grama_bro_sac([{"sb3_plasticity.ScorePruningCallback": dict(score="redo", tau=0.02, prune_freq=1000)}])
