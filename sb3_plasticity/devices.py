"""Where a model's tensors live: a check that the methods create nothing on another device than the model's."""

from __future__ import annotations

from typing import Any

import torch as th

__all__ = ["misplaced_tensors"]

_SKIP_ATTRS = frozenset({"model", "parent", "logger", "training_env", "locals", "globals"})


def _optimizer_tensors(optimizer: th.optim.Optimizer, path: str) -> list[tuple[str, th.device]]:
    # Adam keeps its scalar step counter on the CPU unless capturable/fused: not a misplacement.
    return [
        (f"{path}.state[{i}].{key}", value.device)
        for i, state in enumerate(optimizer.state.values())
        for key, value in state.items()
        if isinstance(value, th.Tensor) and not (key == "step" and value.dim() == 0)
    ]


def _walk(obj: Any, path: str, seen: set[int], out: list[tuple[str, th.device]], depth: int) -> None:
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, th.Tensor):
        out.append((path, obj.device))
    elif isinstance(obj, th.nn.Module):
        for name, tensor in obj.state_dict(keep_vars=True).items():
            out.append((f"{path}.{name}", tensor.device))
    elif isinstance(obj, th.optim.Optimizer):
        out.extend(_optimizer_tensors(obj, path))
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _walk(value, f"{path}[{key!r}]", seen, out, depth + 1)
    elif isinstance(obj, (list, tuple, set)):
        for i, value in enumerate(obj):
            _walk(value, f"{path}[{i}]", seen, out, depth + 1)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("sb3_plasticity"):
        for key, value in vars(obj).items():
            if key not in _SKIP_ATTRS:
                _walk(value, f"{path}.{key}", seen, out, depth + 1)


def misplaced_tensors(model: Any, *objects: Any) -> list[str]:
    """Every tensor of ``model``'s policy, its optimizers and ``model.plasticity_state``, and of ``objects`` (for
    example the callbacks of a ``learn()``: their attributes are searched, the model they point to is not), that is
    not on ``model.device``; each as ``"path (device)"``. An empty list means everything is in place.

    Adam's scalar ``step`` counters are left out: PyTorch keeps them on the CPU by design.
    """
    device = th.device(model.device)
    found: list[tuple[str, th.device]] = []
    seen: set[int] = set()
    _walk(model.policy, "policy", seen, found, 0)
    for name, module in model.policy.named_modules():
        optimizer = getattr(module, "optimizer", None)
        if isinstance(optimizer, th.optim.Optimizer):
            _walk(optimizer, f"policy.{name or 'policy'}.optimizer", seen, found, 0)
    _walk(getattr(model, "plasticity_state", {}), "plasticity_state", seen, found, 0)
    for i, obj in enumerate(objects):
        _walk(obj, f"{type(obj).__name__}[{i}]", seen, found, 0)
    return [f"{path} ({dev})" for path, dev in found if dev.type != device.type]
