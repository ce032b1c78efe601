"""Test-wide settings."""

import torch as th

# Tiny networks gain nothing from intra-op threads, and on a 2-core CI machine two threads fighting a busy
# core make small ops tens of times slower.
th.set_num_threads(1)
