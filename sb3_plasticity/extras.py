"""The package's optional extras: which ``pip install "sb3-plasticity[<extra>]"`` brings which modules.

``import sb3_plasticity`` needs only the core dependencies (Stable-Baselines3, PyTorch, Gymnasium, ...). The parts
that need MuJoCo, dm_control, rl_zoo3, sb3-contrib, ale-py, Ray or the report's libraries load when they are used,
and call :func:`require_extra` first, so a missing extra gives one clear error naming what to install. The table
below mirrors ``[project.optional-dependencies]`` of ``pyproject.toml``; checking a module uses
:func:`importlib.util.find_spec`, which imports nothing.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtraError", "missing_modules", "require_extra"]

# extra -> the top-level modules it provides that this package imports (the distributions are in pyproject.toml)
EXTRAS: dict[str, tuple[str, ...]] = {
    "mujoco": ("mujoco",),
    "dmc": ("dm_control", "mujoco"),
    "contrib": ("sb3_contrib",),
    "zoo": ("rl_zoo3", "sb3_contrib"),
    "atari": ("ale_py", "cv2"),
    "report": ("tbparse", "rliable", "matplotlib", "pandas"),
    "ray": ("ray",),
}


class MissingExtraError(ImportError):
    """An optional part of the package was used without its extra installed.

    :param extra: the extra's name (a key of :data:`EXTRAS`).
    :param feature: what needed it, for the message (``"sb3_plasticity.CycleFrictionMixin"``).
    :param missing: the modules that could not be found.
    """

    def __init__(self, extra: str, feature: str, missing: list[str]) -> None:
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"{feature} needs the optional extra [{extra}] (missing: {', '.join(missing)}); "
            f'install it with: pip install "sb3-plasticity[{extra}]"',
            name=missing[0] if missing else None,
        )


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module blocked with sys.modules[name] = None, or a broken parent
        return False


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` (a key of :data:`EXTRAS`) that are not installed; empty when the extra is usable."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; choose one of {sorted(EXTRAS)}")
    return [module for module in EXTRAS[extra] if not _found(module)]


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` (an ``ImportError``) naming ``extra`` when one of its modules is missing.

    :param extra: a key of :data:`EXTRAS`.
    :param feature: what needs it, for the message.
    """
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(extra, feature, missing)
