"""Test-wide settings."""

import torch as th

import sb3_plasticity  # noqa: F401  (registers the package's env ids, which config tests look up with gym.spec)

# Tiny networks gain nothing from intra-op threads, and on a 2-core CI machine two threads fighting a busy
# core make small ops tens of times slower.
th.set_num_threads(1)
