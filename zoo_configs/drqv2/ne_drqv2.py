# NE-DrQ on DrQ-v2: Neuroplastic Expansion (NE paper Sec. 3.2, 4.3, Fig. 10; App. C "When we combine our method
# with DrQ ..." and Table 3) on the DrQ-v2 agent (Yarats et al. 2022) the paper cites as its DrQ backbone, on the
# NE paper's four image-based DeepMind Control tasks, with sb3_plasticity's monitor attached. drqv2.py is the
# vanilla DrQ-v2 baseline; this file shares its settings (see its header) except where NE needs its own parts:
#
# - policy MaskedDrQV2Policy: the actor's and each Q-network's hidden MLP layers (features+action -> 1024 and
#   1024 -> 1024) start at 25% density (Erdos-Renyi); the encoder, the 50-d trunk (the "embedding layer") and the
#   output layers stay dense (the NE reference code's DrQ flag skips "embedding layer and last layer").
# - NeuroplasticExpansionCallback with App. C's single DrQ setting for all four tasks: grow interval 20000,
#   grow number 0.02 x rest capacity for the critic and 0.01 for the actor, prune bound omega 0.23, kappa 2
#   (App. C.2: image-input tasks).
# - NStepExperienceReviewBuffer: experience review (window c = 250, App. C "{150, 250} work on DMC"; threshold of
#   ER 0.18) with 3-step returns (Table 3; DrQV2 fills in n_steps and gamma); DrQ-v2 shifts the images itself.
#
# Run (from the repository root; -tb turns TensorBoard on; MUJOCO_GL=egl renders headless):
#   MUJOCO_GL=egl python -m sb3_plasticity.zoo_plugin train --algo drqv2 \
#       --env sb3_plasticity/DMCPixels-walker-walk-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/drqv2/ne_drqv2.py -tb runs/ne_drqv2 -f logs/ne_drqv2
# (--env sb3_plasticity/DMCPixels-{reacher-easy,reacher-hard,walker-walk,cartpole-swingup_sparse}-v0)

from sb3_plasticity import dmc_env_id
from sb3_plasticity.algos.drqv2 import NStepExperienceReviewBuffer
from sb3_plasticity.zoo import zoo_class
from sb3_plasticity.zoo_plugin import drqv2_settings

# NE Sec. 4.3; 500k agent steps (1e6 frames) as drqv2.py
TASKS = [("reacher", "easy"), ("reacher", "hard"), ("walker", "walk"), ("cartpole", "swingup_sparse")]


def ne_drqv2(domain: str, task: str) -> dict:
    settings = drqv2_settings(domain, task)
    return dict(
        settings,
        n_timesteps=500_000,
        policy="sb3_plasticity.MaskedDrQV2Policy",  # rl_zoo3 needs a dotted string, even in .py configs
        policy_kwargs=dict(settings["policy_kwargs"], initial_density=0.25),
        replay_buffer_class=zoo_class(NStepExperienceReviewBuffer),  # a string rl_zoo3 evaluates
        replay_buffer_kwargs=dict(review_window=250, review_floor=0.18),
        callback=[
            {
                "sb3_plasticity.NeuroplasticExpansionCallback": dict(
                    grow_interval=20_000, grow_rate={"actor": 0.01, "critic": 0.02}, prune_ratio=0.23, clip_kappa=2.0
                )
            },
            {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}},
        ],
    )


hyperparams = {dmc_env_id(domain, task, pixels=True): ne_drqv2(domain, task) for domain, task in TASKS}
