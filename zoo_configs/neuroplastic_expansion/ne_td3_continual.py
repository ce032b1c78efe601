# NE-TD3 on the continual-adaptation task of the Neuroplastic Expansion paper (Sec. 4.2, Fig. 7-8; App. C, F.3):
# HalfCheetah -> Humanoid -> Ant -> Hopper, 1000 episodes each, three times, in sb3_plasticity/ContinualMuJoCo-v0
# (docs/environments.md), with sb3_plasticity's monitor attached. td3_continual.yml is the vanilla TD3 baseline with
# the same TD3 settings (those of td3.yml: hidden (256, 128), actor lr 1e-4, critic lr 1e-3, batch 128, noise
# N(0, 0.1), learning_starts 25000; 1.2e7 steps bound the 12,000 episodes).
#
# NE parts:
# - MaskedMultiHeadTD3Policy: a shared (256, 128) trunk with one output layer per task (Sec. 4.2) in the actor and
#   in each Q-network; the trunk's hidden-to-hidden layer is masked, starting at density 0.15 (App. F.3: "for the
#   cycle adaptation task we find that starting from 0.15 is a good choice"); the task heads stay dense.
# - NeuroplasticExpansionCallback: grow interval 50000 "to ensure the topology can continue growing during the
#   long-term training", other parameters as for Humanoid (App. C): grow rate 0.01, omega 0.4, kappa 3.
# - ExperienceReviewBuffer: window c = 450, threshold of ER 0.35 (Humanoid's).
# Evaluation as td3_continual.yml: sb3_plasticity.PhaseEvalCallback every 25000 env steps, 5 episodes on the training
# env's current task block (eval/<task>/mean_reward, eval/phase_<block>/mean_reward). The zoo's own EvalCallback
# would evaluate a sequence of its own: keep it off with --eval-freq -1 (the registry runner's default).
#
# Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo td3 --env sb3_plasticity/ContinualMuJoCo-v0 --gym-packages sb3_plasticity \
#       --conf-file zoo_configs/neuroplastic_expansion/ne_td3_continual.py --eval-freq -1 -tb runs/ne -f logs/ne

from sb3_plasticity import ExperienceReviewBuffer
from sb3_plasticity.zoo import guarded_callbacks, ne_callbacks, ne_paper_td3, zoo_class

policy_kwargs = dict(net_arch=[256, 128], initial_density=0.15)
env_kwargs = dict(episodes_per_task=1000, cycles=3)
phase_eval = {
    "sb3_plasticity.PhaseEvalCallback": dict(
        eval_env="sb3_plasticity/ContinualMuJoCo-v0", env_kwargs=env_kwargs, eval_freq=25_000, n_eval_episodes=5
    )
}
hyperparams = {
    "sb3_plasticity/ContinualMuJoCo-v0": dict(
        ne_paper_td3(),  # td3.yml's settings, listed above
        n_timesteps=1.2e7,
        env_kwargs=env_kwargs,
        policy="sb3_plasticity.MaskedMultiHeadTD3Policy",  # rl_zoo3 needs a dotted string, even in .py configs
        policy_kwargs=policy_kwargs,
        replay_buffer_class=zoo_class(ExperienceReviewBuffer),  # a string rl_zoo3 evaluates: config.yml stays readable
        replay_buffer_kwargs=dict(review_window=450, review_floor=0.35),
        # the guard keeps policy_kwargs when -optimize replaces them
        callback=guarded_callbacks(
            policy_kwargs,
            [
                *ne_callbacks(dict(grow_interval=50_000, grow_rate=0.01, prune_ratio=0.4, clip_kappa=3.0)),
                phase_eval,
            ],
        ),
    )
}
