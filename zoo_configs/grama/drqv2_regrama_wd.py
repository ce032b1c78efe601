# DrQ-v2 + ReGraMa + weight decay on Quadruped Run (GraMa Table 9).
# GraMa paper App. C, Table 9: DrQ-v2 on pixel Quadruped Run (sb3_plasticity/DMCPixels-quadruped-run-v0) with
# drqv2/drqv2.py's settings (DrQ-v2 App. B Table 1; 1.5e6 agent steps = GraMa's "3M step" read as frames), built by
# sb3_plasticity.zoo.grama_drqv2_quadruped, the monitor attached.
# - ReGraMa: tau 0.01 every 1000 env steps (the paper states none for DrQ-v2: BRO-net's App. A.1 value); on DrQ-v2's
#   neuron groups (encoder channels, actor and critic MLPs).
# - Weight decay: Adam's weight_decay 1e-5 (coupled L2). The paper names Lyle et al. 2024's setting without a
#   value: ours.
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m sb3_plasticity.zoo_plugin train --algo drqv2 --env sb3_plasticity/DMCPixels-quadruped-run-v0 \
#       --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/grama/drqv2_regrama_wd.py -tb runs/grama -f logs/grama

from sb3_plasticity.zoo import grama_drqv2_quadruped

hyperparams = grama_drqv2_quadruped(
    [{"sb3_plasticity.GraMaResetCallback": dict(reset_freq=1000, tau=0.01)}], weight_decay=1e-05
)
