# Plain DQN on Atari (ale-py) in the setting of Sokar et al. 2023 ("The Dormant Neuron Phenomenon in Deep
# Reinforcement Learning", ICML 2023), with the monitor attached: the baseline of dqn_atari_redo.py.
#
# Settings: Dopamine's JAX DQN (dopamine/jax/agents/dqn/configs/dqn.gin, which ReDo's own configs include:
# dopamine/labs/redo/configs/dqn_dense.gin) at ReDo's main replay ratio 1 (Sokar et al. Fig. 1: "DQN, with a
# replay ratio of 1", 10M frames, IQM over 17 games), as in the PyTorch port timoklein/redo (src/config.py):
# - Nature CNN (SB3's CnnPolicy: 3 conv + 512 ReLU), Adam lr 6.25e-5, eps 1.5e-4, batch 32, gamma 0.99,
#   1-step Huber TD loss, buffer 1e6, learning_starts (min_replay_history) 20,000 agent steps, epsilon 1 -> 0.01
#   over 250,000 agent steps (exploration_fraction 0.1 of 2.5M), sticky actions 0.25, frame skip 4 with max-pooling,
#   84x84 grey frames, 4 stacked, rewards clipped to [-1, 1], no life-loss terminal, 108,000 frames per episode.
# - Replay ratio 1: one gradient step per agent step (train_freq 1); target update period 2000 agent steps
#   (Dopamine's 8000 at update period 4, scaled with the replay ratio as timoklein/redo does).
# - 10M frames = 2.5M agent steps (the x-axis of Sokar et al. Fig. 1). ReDo's dqn_dense.gin sets 40 Dopamine
#   iterations of 250,000 agent steps (40M frames): `-n 10000000` runs that length.
# Deviations (SB3 / rl_zoo3): SB3's DQN clips gradients at norm 10 (Dopamine: none); torch's default init
# (Dopamine: Xavier uniform); epsilon decays from step 0 (Dopamine: after the 20,000 warm-up steps); SB3's
# AtariWrapper presses FIRE on reset in games that have it; no-op starts off (noop_max 0: sticky actions
# instead, as Dopamine). The env is `ALE/<Game>-v5` with `frameskip: 1` (AtariWrapper does the skip) and
# ALE's sticky actions (repeat_action_probability 0.25, v5's default).
# - PlasticityMonitorCallback logs neuron health under plasticity/ every 50,000 agent steps (ReDo's
#   summary_writing_frequency in dqn_dense.gin).
# GAMES: DemonAttack (the game Sokar et al. discuss, timoklein/redo's default) and four common games of our choice;
# any ALE game runs with the same settings: add it to ATARI_GAMES in sb3_plasticity/zoo.py.
#
# Needs the [atari] extra (ale-py, opencv). Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo dqn --env ALE/DemonAttack-v5 --gym-packages sb3_plasticity ale_py \
#       --conf-file zoo_configs/redo_dqn/dqn_atari.py -tb runs/redo_dqn -f logs/redo_dqn

from sb3_plasticity.zoo import redo_dqn_atari

hyperparams = redo_dqn_atari(None)
