"""What the benchmark scripts share."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import stable_baselines3
import torch


def machine_info() -> dict[str, Any]:
    """Versions and hardware facts stored with the results."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
    }
