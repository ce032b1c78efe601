# ReDo-DQN on Atari (ale-py) in ReDo's own setting: Sokar et al. 2023 ("The Dormant Neuron Phenomenon in Deep
# Reinforcement Learning", ICML 2023), DQN at replay ratio 1, with the monitor attached. Baseline: dqn_atari.py.
#
# DQN settings: those of dqn_atari.py (Dopamine's JAX DQN, dqn.gin, at replay ratio 1 as in Sokar et al. Fig. 1
# and timoklein/redo): Nature CNN, Adam lr 6.25e-5 eps 1.5e-4, batch 32, gamma 0.99, buffer 1e6, learning_starts
# 20,000, epsilon 1 -> 0.01 over 250,000 agent steps, target update every 2000 agent steps, one gradient step per
# agent step, sticky actions 0.25, frame skip 4, 84x84x4 frames, clipped rewards, 2.5M agent steps = 10M frames.
# See dqn_atari.py for the deviations of SB3 / rl_zoo3 from Dopamine.
# ReDo settings:
# - Recycling every 1000 gradient steps (Sokar et al.; timoklein/redo's redo_check_interval 1000): reset_freq
#   1000 agent steps = 1000 gradient steps at train_freq 1.
# - tau 0.1: the threshold for replay ratio 1 (timoklein/redo's config: "0.025 for default, else 0.1"; we could
#   not read the paper's appendix table ourselves). At Dopamine's default replay ratio 0.25 (train_freq 4,
#   target_update_interval 8000) use tau 0.025 and reset_freq 4000 (= 1000 gradient steps).
# - ReDoCallback scores every hidden neuron (the conv channels of the Nature CNN and the 512 units) with
#   E|h_i| / mean_k E|h_k| on a replay batch of the algorithm's batch_size (32; ReDo's official code scores 256
#   samples, timoklein/redo 64), re-draws the incoming weights of those with score <= tau from the layer's own
#   init, zeroes their outgoing weights and their Adam moments, and copies the touched entries into q_net_target
#   (the package's target-twin convention; ReDo's code leaves that to the next periodic target update). The
#   Q-value output layer is never reset.
# - PlasticityMonitorCallback logs neuron health under plasticity/ every 50,000 agent steps (ReDo's
#   summary_writing_frequency in dqn_dense.gin).
# GAMES: DemonAttack (the game Sokar et al. discuss, timoklein/redo's default) and four common games of our choice;
# any ALE game runs with the same settings: add it to ATARI_GAMES in sb3_plasticity/zoo.py.
#
# Needs the [atari] extra (ale-py, opencv). Run (from the repository root; -tb turns TensorBoard on):
#   python -m rl_zoo3.train --algo dqn --env ALE/DemonAttack-v5 --gym-packages sb3_plasticity ale_py \
#       --conf-file zoo_configs/redo_dqn/dqn_atari_redo.py -tb runs/redo_dqn -f logs/redo_dqn

from sb3_plasticity.zoo import redo_dqn_atari

hyperparams = redo_dqn_atari([{"sb3_plasticity.ReDoCallback": {"reset_freq": 1000, "tau": 0.1}}])
