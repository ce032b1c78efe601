"""Why masked layers slow down PyTorch's default CPU Adam: a micro-benchmark of ``sqrt`` and of one Adam step.

Masked weights never get a gradient, so Adam's second moments of the masked entries stay exact zeros, and the
per-tensor CPU Adam (SB3's default; ``foreach`` falls back to it on CPU) computes ``exp_avg_sq.sqrt()`` at every
step. This script times, in one process with one torch thread:

1. ``torch.sqrt`` of a 256x128 float32 tensor of positive numbers, exact zeros and denormals, with and without
   ``torch.set_flush_denormal(True)``; the same for bfloat16 (a kernel that does not go through MKL's vector math)
   and ``numpy.sqrt`` on the same float32 zeros (the CPU's own vector ``sqrt`` instruction);
2. one ``Adam.step()`` over the parameters of NE-TD3's actor and twin critics on HalfCheetah (hidden (256, 128), the
   hidden layer's weights masked at the given density, the first and last layers dense), per-tensor
   (``foreach=False``), ``foreach=True`` and ``fused=True``, with constant gradients that are zero on masked entries.

Each figure is the best of ``--repeats`` timings of ``--iters`` calls, in microseconds of this process's CPU time per
call (``time.process_time``: steadier than wall time on a shared machine).

Reproduce (from the repository root)::

    python benchmarks/bench_adam_kernel.py --output benchmarks/results/adam_kernel.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch
from common import machine_info
from torch import nn

# NE-TD3 on HalfCheetah-v5 (obs 17, action 6), hidden (256, 128): (out, in) of every Linear weight
ACTOR = [(256, 17), (128, 256), (6, 128)]
CRITIC = [(256, 23), (128, 256), (1, 128)] * 2
MASKED = {1}  # index of the masked (hidden) layer in each network: first and last are dense


def best_us(fn: Callable[[], Any], iters: int, repeats: int) -> float:
    """Best over ``repeats`` of the mean time of ``iters`` calls, in microseconds."""
    for _ in range(max(iters // 10, 5)):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(iters):
            fn()
        best = min(best, (time.process_time() - start) / iters * 1e6)
    return best


def sqrt_timings(iters: int, repeats: int) -> dict[str, float]:
    """``sqrt`` of a 256x128 tensor by value, dtype, flush-denormal setting and library."""
    out: dict[str, float] = {}
    for ftz in (False, True):
        torch.set_flush_denormal(ftz)
        for name, value in (("positive", 1.0), ("zero", 0.0), ("denormal", 1e-40)):
            x = torch.full((256, 128), value)
            y = torch.empty_like(x)
            out[f"torch_float32_{name}{'_ftz' if ftz else ''}"] = best_us(partial(torch.sqrt, x, out=y), iters, repeats)
    torch.set_flush_denormal(False)
    for name, value in (("positive", 1.0), ("zero", 0.0)):
        x = torch.full((256, 128), value, dtype=torch.bfloat16)
        y = torch.empty_like(x)
        out[f"torch_bfloat16_{name}"] = best_us(partial(torch.sqrt, x, out=y), iters, repeats)
        xn = np.full((256, 128), value, np.float32)
        yn = np.empty_like(xn)
        out[f"numpy_float32_{name}"] = best_us(partial(np.sqrt, xn, out=yn), iters, repeats)
    return out


def adam_step_timings(density: float, iters: int, repeats: int) -> dict[str, float]:
    """One Adam step over NE-TD3's weights and biases, by Adam implementation."""
    gen = torch.Generator().manual_seed(0)
    out: dict[str, float] = {}
    for impl, kwargs in (("per_tensor", dict(foreach=False)), ("foreach", dict(foreach=True)), ("fused", dict(fused=True))):
        params = []
        for net in (ACTOR, CRITIC):
            for i, shape in enumerate(net):
                layer = i % len(ACTOR)
                mask = (torch.rand(shape, generator=gen) < density).float() if layer in MASKED else torch.ones(shape)
                weight = nn.Parameter(torch.randn(shape, generator=gen) * mask)
                weight.grad = torch.randn(shape, generator=gen) * mask
                bias = nn.Parameter(torch.zeros(shape[0]))
                bias.grad = torch.randn(shape[0], generator=gen)
                params += [weight, bias]
        opt = torch.optim.Adam(params, lr=1e-3, **kwargs)
        out[impl] = best_us(opt.step, iters, repeats)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both parts, print them, optionally write JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--densities", type=float, nargs="+", default=[1.0, 0.25])
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    results: dict[str, Any] = {"config": vars(args), "machine": machine_info()}
    results["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    results["sqrt_us"] = sqrt_timings(args.iters, args.repeats)
    for name, us in results["sqrt_us"].items():
        print(f"sqrt {name:32s} {us:8.1f} us")
    results["adam_step_us"] = {}
    for density in args.densities:
        timings = adam_step_timings(density, args.iters, args.repeats)
        results["adam_step_us"][f"density_{density:g}"] = timings
        print(f"Adam step, hidden density {density:g}: " + ", ".join(f"{k} {v:.1f} us" for k, v in timings.items()))
    if args.output:
        import json

        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.output}")
    return results


if __name__ == "__main__":
    main()
