"""Gradient heat maps (NE paper App. F.6, Fig. 11): the per-layer ``|dL/dW|`` of one training pass, as images.

"We contrasted the backpropagation gradient heatmaps of a standard network with those of a network containing
numerous dormant neurons [...] darker colors indicate higher gradients and faster weight optimization."
:class:`GradientHeatmapCallback` takes, at chosen env steps, the weight gradients of the algorithm's next training
pass, layer by layer, and writes each as a ``.npy`` array and a PNG image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th

from sb3_plasticity.hooks import OBSERVE, step_hooks
from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.neurons import Layer

__all__ = ["GradientHeatmapCallback", "save_heatmap_png"]


def save_heatmap_png(array: np.ndarray, path: str, title: str | None = None, cmap: str = "Greys") -> None:
    """Write a 2-d array as a PNG heat map (matplotlib's Agg canvas, no pyplot state): rows are output neurons,
    columns input features; with the default ``"Greys"`` darker is higher, as in the NE paper's Fig. 11."""
    from sb3_plasticity.extras import require_extra

    require_extra("report", "GradientHeatmapCallback's PNG images (matplotlib)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(array, cmap=cmap, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="|dL/dW|")
    ax.set_xlabel("input")
    ax.set_ylabel("output neuron")
    if title:
        ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=100)


class GradientHeatmapCallback(PlasticityCallback):
    """At each of ``steps`` (env steps), records ``|dL/dW|`` of every selected layer on the algorithm's next
    training pass, saves it and logs its mean.

    When ``num_timesteps`` reaches a step, optimizer pre-step hooks are registered on the optimizers of the selected
    networks; at the first step of the optimizer that owns a network's weights the gradients of that optimizer's own
    loss are read (TD3/DDPG/SAC critic: the critic loss; actor: the actor loss, TD3's delayed update included;
    PPO/A2C: the first minibatch, after SB3's gradient clipping), then the hooks are removed. Nothing in the model
    changes. Each layer's gradient is a 2-d array ``(out, in)`` (a conv weight is flattened to ``(out, in * kh *
    kw)``; a masked layer's pruned weights show their raw gradient). Per layer it writes, under ``save_dir``:

    - ``<network>/<layer>_step<N>.npy``: the array (``N`` is the env step at which the pass ran);
    - ``<network>/<layer>_step<N>.png``: the heat map (see :func:`save_heatmap_png`);

    and logs ``plasticity/heatmap/<network>/<layer>/mean_abs_grad`` and ``plasticity/heatmap/<network>/mean_abs_grad``
    (mean over all weights of the selected layers). Every result is also kept in :attr:`heatmaps`,
    ``{step: {(network, layer): array}}``. A step that falls before ``learning_starts`` is taken at the first
    training pass; several steps that fall before one pass give one heat map.

    :param steps: env steps at which to arm (positive; sorted and deduplicated).
    :param networks: trainable networks (default: all; target networks get no gradient).
    :param layers: layer names to keep (as in ``docs/networks.md``, e.g. ``"qf0.0"``, ``"mu.trunk.2"``; default:
        every Linear/Conv layer of each network, output layers included); a name found in no selected network
        raises at training start.
    :param save_dir: folder of the files; None (default) writes under ``<logger dir>/gradient_heatmaps`` when the
        logger has a folder (rl-zoo with ``-tb``, or a logger set with ``configure``), else writes no file.
    :param cmap: matplotlib colormap of the images (default ``"Greys"``: darker is higher).
    :param verbose: 0 or 1 (prints each saved heat map).
    """

    trainable_only = True

    def __init__(
        self,
        steps: Sequence[int],
        networks: str | Sequence[str] | None = None,
        layers: Sequence[str] | None = None,
        save_dir: str | None = None,
        cmap: str = "Greys",
        verbose: int = 0,
    ) -> None:
        super().__init__(networks, verbose)
        if isinstance(steps, (int, str)) or not steps:
            raise ValueError(f"steps must be a non-empty list of env steps, got {steps!r}")
        if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in steps):
            raise ValueError(f"steps must be positive integers, got {steps!r}")
        self.steps = sorted({int(s) for s in steps})
        if isinstance(layers, str):
            layers = [layers]
        self.layer_names = None if layers is None else list(layers)
        self.save_dir = save_dir
        self.cmap = cmap
        self.heatmaps: dict[int, dict[tuple[str, str], np.ndarray]] = {}
        self._pending: list[int] = []
        self._layers: dict[str, list[Layer]] = {}
        self._grads: dict[str, dict[str, np.ndarray]] = {}
        self._handles: list = []

    # -- setup -----------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        self.disarm()
        self._layers = {n: self.neurons.layers(n) for n in self.network_names}
        if self.layer_names is not None:
            known = {layer.name for layers in self._layers.values() for layer in layers}
            unknown = [n for n in self.layer_names if n not in known]
            if unknown:
                raise ValueError(
                    f"layers {unknown!r} are not layers of networks {self.network_names!r}; known: {sorted(known)}"
                )
            self._layers = {n: [la for la in ls if la.name in self.layer_names] for n, ls in self._layers.items()}
            self._layers = {n: ls for n, ls in self._layers.items() if ls}
        self._pending = [s for s in self.steps if s > self.model.num_timesteps]

    def first_event(self) -> tuple[int, str] | None:
        return (self._pending[0], "gradient heat map") if self._pending else None

    @property
    def armed(self) -> bool:
        return bool(self._handles)

    def arm(self) -> None:
        """Register the hooks that read the next training pass's weight gradients (also callable by hand)."""
        self.disarm()
        self._grads = {}
        optimizers = {
            id(o): o for layers in self._layers.values() for la in layers for o in self.neurons.optimizers_of(la.module.weight)
        }
        for opt in optimizers.values():
            # OBSERVE: the gradient the step applies (after GRADIENT terms), before any surgery zeroes entries of it
            self._handles.append(step_hooks(opt).add_pre(OBSERVE, self._step_hook))

    def disarm(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _step_hook(self, optimizer: th.optim.Optimizer, args: Any, kwargs: Any) -> None:
        for network, layers in self._layers.items():
            if network in self._grads:
                continue
            owned = [la for la in layers if optimizer in self.neurons.optimizers_of(la.module.weight)]
            if not owned or all(la.module.weight.grad is None for la in owned):
                continue
            grads = {}
            for la in owned:
                g = la.module.weight.grad
                if g is None:
                    a = np.zeros(tuple(la.module.weight.shape), np.float32)
                else:
                    a = g.detach().abs().float().cpu().numpy()
                grads[la.name] = a.reshape(a.shape[0], -1)
            self._grads[network] = grads

    @property
    def complete(self) -> bool:
        return all(n in self._grads for n in self._layers)

    # -- schedule ----------------------------------------------------------------------------------------------
    def _on_step(self) -> bool:
        self.poll()
        if not self.armed and self._pending and self.num_timesteps >= self._pending[0]:
            self._pending = [s for s in self._pending if s > self.num_timesteps]
            self.arm()
        return True

    def _on_rollout_start(self) -> None:
        self.poll()  # right after train(): written at the step its pass ran

    def _finish(self) -> None:
        self.poll()
        self.disarm()

    def folder(self) -> str | None:
        """Where the files go (see ``save_dir``)."""
        if self.save_dir is not None:
            return self.save_dir
        root = self.logger.get_dir() if self.logger is not None else None
        return os.path.join(root, "gradient_heatmaps") if root else None

    def poll(self) -> None:
        """Save and log the recorded pass once every network was recorded (called after each step)."""
        if not self.armed or not self.complete:
            return
        self.disarm()
        step = int(self.num_timesteps)
        folder = self.folder()
        result: dict[tuple[str, str], np.ndarray] = {}
        for network, grads in self._grads.items():
            total, count = 0.0, 0
            for name, array in grads.items():
                result[(network, name)] = array
                self.record(f"heatmap/{network}/{name}/mean_abs_grad", float(array.mean()))
                total += float(array.sum())
                count += array.size
                if folder is not None:
                    os.makedirs(os.path.join(folder, network), exist_ok=True)
                    base = os.path.join(folder, network, f"{name}_step{step}")
                    np.save(base + ".npy", array)
                    save_heatmap_png(array, base + ".png", f"{network} {name}, step {step}: |dL/dW|", self.cmap)
                    if self.verbose >= 1:
                        print(f"GradientHeatmapCallback: {base}.png")
            self.record(f"heatmap/{network}/mean_abs_grad", total / max(count, 1))
        self.heatmaps[step] = result
        self._grads = {}
        self._pending = [s for s in self._pending if s > step]  # steps passed while waiting for this pass
        self.dump()
