"""What the benchmark scripts share."""

from __future__ import annotations

import argparse
import json
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


def write_results(args: argparse.Namespace, info: dict[str, Any], pairs: list[dict[str, Any]], summary: dict[str, Any]):
    """The results as one dict (config, machine, per-pair figures, summary), written as JSON to ``args.output``."""
    results = {"config": vars(args), "machine": info, "pairs": pairs, "summary": summary}
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.output}")
    return results
