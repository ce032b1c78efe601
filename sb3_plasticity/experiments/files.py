"""The files of a run folder, shared by the runner, the worker and the report (no heavy imports here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"
DONE_FILE = "done.json"
PROGRESS_FILE = "progress.json"
CHECKPOINT_DIR = "checkpoint"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def checkpoint_steps(run_dir: Path) -> int:
    """Env steps of the run's last complete checkpoint (0: none)."""
    meta = read_json(run_dir / CHECKPOINT_DIR / "meta.json")
    return int(meta["num_timesteps"]) if meta else 0
