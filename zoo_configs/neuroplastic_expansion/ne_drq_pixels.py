# NE-DrQ: Neuroplastic Expansion on DrQ (SAC from pixels with random-shift augmentation) on the image-based
# DeepMind Control tasks of the Neuroplastic Expansion paper (Sec. 4.3, Fig. 10; App. C "When we combine our method
# with DrQ ..." and Table 3), with sb3_plasticity's monitor attached. drq_pixels.py is the vanilla DrQ baseline;
# this file shares its settings (see its header) except where NE needs its own parts:
#
# - policy MaskedSACPolicy with NatureCNN encoders (features 50) and hidden (1024, 1024): the actor's and each
#   Q-network's hidden-to-hidden layer start at 25% density (Erdos-Renyi), first and last layers dense; the
#   convolutions are not masked (NE grows connections of the MLP layers).
# - NeuroplasticExpansionCallback with App. C's single DrQ setting for all four tasks: grow interval 20000,
#   grow number 0.02 x rest capacity for the critic and 0.01 for the actor, prune bound omega 0.23, kappa 2
#   (App. C.2: image-input tasks).
# - DrQExperienceReviewBuffer: experience review (window c = 250, App. C "{150, 250} work on DMC"; threshold of ER
#   0.18) with 3-step returns (Table 3, n_steps 3, gamma 0.99: uniform and review batches alike, review batches
#   from the oldest quarter) and DrQ's random shift (pad 4) on every batch.
# - Replay buffer 1e6 (Table 3): 127 kB per transition, reserved and filled as written, 63.5 GB resident after the
#   5e5 steps (see drq_pixels.py; n-step returns rule out optimize_memory_usage); `-params buffer_size:100000` on a
#   smaller machine.
# - NE Table 4 (App. F.1, "w/ prune" vs "w/o prune" on Cartpole Swingup Sparse and Walker Walk) is this config and
#   the same with the NE callback's `prune: False`.
#
# Run (from the repository root; -tb turns TensorBoard on; MUJOCO_GL=egl renders headless):
#   MUJOCO_GL=egl python -m rl_zoo3.train --algo sac --env sb3_plasticity/DMCPixels-walker-walk-v0 \
#       --gym-packages sb3_plasticity --conf-file zoo_configs/neuroplastic_expansion/ne_drq_pixels.py \
#       -tb runs/ne_drq -f logs/ne_drq
# (--env sb3_plasticity/DMCPixels-{reacher-easy,reacher-hard,walker-walk,cartpole-swingup_sparse}-v0)

from stable_baselines3.common.torch_layers import NatureCNN

from sb3_plasticity import DrQExperienceReviewBuffer, dmc_env_id
from sb3_plasticity.zoo import drq_settings, guarded_callbacks, zoo_class

# NE Sec. 4.3
TASKS = [("reacher", "easy"), ("reacher", "hard"), ("walker", "walk"), ("cartpole", "swingup_sparse")]

drq = drq_settings()  # drq_pixels.py's settings (NE Table 3)
policy_kwargs = dict(drq["policy_kwargs"], features_extractor_class=NatureCNN, initial_density=0.25)
ne_drq = dict(
    drq,
    policy="sb3_plasticity.MaskedSACPolicy",  # rl_zoo3 needs a dotted string, even in .py configs
    policy_kwargs=policy_kwargs,
    replay_buffer_class=zoo_class(DrQExperienceReviewBuffer),  # a string rl_zoo3 evaluates: config.yml stays readable
    replay_buffer_kwargs=dict(review_window=250, review_floor=0.18, n_steps=3, gamma=drq["gamma"], pad=4),
    # the guard keeps policy_kwargs when -optimize replaces them
    callback=guarded_callbacks(
        policy_kwargs,
        [
            {
                "sb3_plasticity.NeuroplasticExpansionCallback": dict(
                    grow_interval=20_000, grow_rate={"actor": 0.01, "critic": 0.02}, prune_ratio=0.23, clip_kappa=2.0
                )
            },
            {"sb3_plasticity.PlasticityMonitorCallback": {"log_freq": 5000}},
        ],
    ),
)

hyperparams = {dmc_env_id(domain, task, pixels=True): dict(ne_drq) for domain, task in TASKS}
