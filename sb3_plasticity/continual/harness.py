"""Class-incremental classification with neuron resets at every task switch (GraMa paper, Sec. 4.2, Fig. 5 right).

The GraMa paper trains "a traditional fully connected network with ReLU on the CIFAR-100 benchmark, following the
continuous learning experimental setup in Dohare et al. [2024]. Every 15 epochs, a new category of data is added to
the training set, requiring the agent to classify samples from the whole data distribution", and compares no
intervention with ReDo resets and ReGraMa resets "whenever a new data category is introduced", plotting the test
accuracy and the GraMa inactive ratio against epochs. :class:`ContinualClassification` runs that protocol on a plain
PyTorch MLP with the package's own layers: :func:`~sb3_plasticity.continual.model.module_neuron_model` (neuron
groups), :class:`~sb3_plasticity.capture.Capture` (activations and ``dL/dz`` of a pass),
:mod:`sb3_plasticity.metrics` (tau-dormant and GraMa masks and ratios) and
:func:`~sb3_plasticity.surgery.reset_neurons` (re-initialisation, zeroed outgoing weights, optimizer state). The
settings the paper leaves open, and what we chose, are listed in ``docs/analysis.md``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F

from sb3_plasticity.capture import Capture
from sb3_plasticity.checks import check_choice, check_fraction, check_nonnegative, check_positive_int, check_sequence
from sb3_plasticity.continual.data import ClassificationData
from sb3_plasticity.continual.model import ACTIVATIONS, make_mlp, module_neuron_model
from sb3_plasticity.metrics import (
    activity,
    dormant_mask,
    grama_inactive_mask,
    layer_metrics,
    lowest,
    normalized_scores,
    pool,
    weight_norm,
)
from sb3_plasticity.neurons import NeuronGroup
from sb3_plasticity.surgery import release_fresh_steps, reset_neurons

__all__ = ["METHODS", "ContinualClassification", "ContinualConfig", "ContinualResult", "run_continual"]

METHODS = ("vanilla", "redo", "regrama")
# GraMa App. A.1: "the recommended values for tau (0.01 for Grama and 0.02 for ReDo)"
DEFAULT_TAU = {"redo": 0.02, "regrama": 0.01}
NETWORK = "mlp"


@dataclass
class ContinualConfig:
    """Settings of a class-incremental run (defaults and their sources: ``docs/analysis.md``).

    :param method: ``"vanilla"``, ``"redo"`` (reset tau-dormant neurons, activation score) or ``"regrama"`` (reset
        GraMa-inactive neurons, gradient score) at every task switch.
    :param tau: reset threshold (``<=``); default 0.02 for ReDo, 0.01 for ReGraMa (GraMa App. A.1).
    :param max_reset_fraction: cap per layer and switch, lowest scores first (default: none).
    :param n_classes: classes used, the first ``n_classes`` of the (shuffled) class order; default: all.
    :param initial_classes: classes of the first task (Dohare et al. 2024: 5).
    :param classes_per_task: classes added at each switch (Dohare et al. 2024: 5).
    :param epochs_per_task: epochs between switches (GraMa Sec. 4.2: 15).
    :param hidden: hidden widths of the MLP.
    :param activation: one of ``relu`` (the paper), ``leaky_relu``, ``tanh``, ``sigmoid``, ``silu``.
    :param optimizer: ``"sgd"`` (with ``momentum``, Dohare et al.) or ``"adam"``.
    :param lr: learning rate, constant.
    :param momentum: SGD momentum (Dohare et al.: 0.9).
    :param weight_decay: L2 coefficient of the optimizer (Dohare et al.: 5e-4).
    :param batch_size: minibatch size (Dohare et al.: 90).
    :param score_batch: samples of the new task's training set that score the neurons at a switch.
    :param measure_batch: samples of the current training set for the metrics logged after each epoch.
    :param dormant_tau: threshold of the logged ``dormant_ratio`` (default 0.02, ReDo's value in GraMa App. A.1).
    :param grama_tau: threshold of the logged ``grama_inactive_ratio`` (default 0.01, ReGraMa's value).
    :param shuffle_classes: random class order from ``seed`` (Dohare et al.); False keeps label order.
    :param seed: seeds the class order, the initial weights, the minibatch order and the resets.
    :param device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ...
    """

    method: str = "vanilla"
    tau: float | None = None
    max_reset_fraction: float | None = None
    n_classes: int | None = None
    initial_classes: int = 5
    classes_per_task: int = 5
    epochs_per_task: int = 15
    hidden: tuple[int, ...] = (512, 512, 512)
    activation: str = "relu"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 90
    score_batch: int = 1024
    measure_batch: int = 1024
    dormant_tau: float = 0.02
    grama_tau: float = 0.01
    shuffle_classes: bool = True
    seed: int = 0
    device: str = "auto"

    @property
    def reset_tau(self) -> float:
        """The reset threshold: ``tau``, or the method's default when it is None."""
        return DEFAULT_TAU.get(self.method, 0.0) if self.tau is None else self.tau

    def __post_init__(self) -> None:
        # the values stay as given (the config is written to results.json as is); only hidden becomes a tuple
        self.hidden = check_sequence("hidden", self.hidden, check_positive_int)
        check_choice("method", self.method, METHODS)
        for name in ("reset_tau", "dormant_tau", "grama_tau", "lr", "momentum", "weight_decay"):
            check_nonnegative(name, getattr(self, name))
        for name in ("initial_classes", "classes_per_task", "epochs_per_task", "batch_size", "score_batch", "measure_batch"):
            check_positive_int(name, getattr(self, name))
        if self.n_classes is not None:
            check_positive_int("n_classes", self.n_classes)
        check_fraction("max_reset_fraction", self.max_reset_fraction)
        check_choice("optimizer", self.optimizer, ("sgd", "adam"))
        check_choice("activation", self.activation, sorted(ACTIVATIONS))


@dataclass
class ContinualResult:
    """What a run produced: one row per epoch, per task (at its end) and per reset event."""

    config: dict[str, Any]
    class_order: list[int]
    epochs: list[dict[str, float]] = field(default_factory=list)
    tasks: list[dict[str, float]] = field(default_factory=list)
    resets: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path


class ContinualClassification:
    """A class-incremental run on ``data`` (see the module docstring).

    Task ``k`` trains on the classes ``order[:initial_classes + k * classes_per_task]`` for ``epochs_per_task``
    epochs; the network has one output per class used from the start, and the loss, the predictions and the test
    accuracy use the logits of the classes seen so far only (Dohare et al. 2024). At every switch (before the first
    update on the new classes) ``redo`` / ``regrama`` score every hidden neuron on ``score_batch`` samples of the new
    training set and reset those at or below ``tau``: fresh incoming weights from PyTorch's default init, outgoing
    weights zeroed, their optimizer state (SGD momentum, Adam moments) cleared.

    TensorBoard (when ``logdir`` is given; the x-axis is the epoch): ``continual/accuracy`` (test accuracy on the seen
    classes), ``continual/train_accuracy``, ``continual/train_loss``, ``continual/n_classes``, ``continual/task``;
    ``plasticity/mlp/<metric>`` and ``plasticity/mlp/<layer>/<metric>`` (``grama_inactive_ratio``, ``dormant_ratio``,
    ``active_ratio``, ``effective_rank``, ... from :func:`~sb3_plasticity.metrics.layer_metrics`) on
    ``measure_batch`` training samples after each epoch; at each switch ``plasticity/<method>/reset_count``,
    ``plasticity/<method>/mlp/reset_count``, ``plasticity/<method>/mlp/<layer>/reset_count`` and
    ``plasticity/<method>/mlp/<ratio>_before`` (the share flagged, ``dormant_ratio`` or ``grama_inactive_ratio``);
    at the end of task ``k``, at step ``k``: ``continual/task_end/accuracy`` and
    ``continual/task_end/grama_inactive_ratio``. ``results.json`` in ``logdir`` holds the same numbers.

    :param data: the data set (:func:`~sb3_plasticity.continual.load_cifar100`,
        :func:`~sb3_plasticity.continual.synthetic_blobs`).
    :param config: the settings (default :class:`ContinualConfig()`).
    :param logdir: TensorBoard / ``results.json`` folder; None writes nothing.
    """

    def __init__(self, data: ClassificationData, config: ContinualConfig | None = None, logdir: str | Path | None = None):
        self.data = data
        self.config = config = config or ContinualConfig()
        self.logdir = Path(logdir) if logdir is not None else None
        if config.device == "auto":
            self.device = th.device("cuda" if th.cuda.is_available() else "cpu")
        else:
            self.device = th.device(config.device)
        classes = data.classes
        n_classes = len(classes) if config.n_classes is None else config.n_classes
        if n_classes > len(classes):
            raise ValueError(f"n_classes={n_classes}, but the training set has {len(classes)} classes")
        if config.initial_classes > n_classes:
            raise ValueError(f"initial_classes={config.initial_classes} is more than the {n_classes} classes used")
        order = np.asarray(classes)
        if config.shuffle_classes:
            order = np.random.default_rng(config.seed).permutation(order)
        self.class_order = [int(c) for c in order[:n_classes]]
        self.n_classes = n_classes
        # label -> output unit (its position in the class order); -1 for classes not used
        size = max(int(data.train_y.max()), int(data.test_y.max())) + 1
        position = th.full((size,), -1, dtype=th.long)
        position[th.as_tensor(self.class_order)] = th.arange(n_classes)
        self.train_pos = position[data.train_y]
        self.test_pos = position[data.test_y]

        th.manual_seed(config.seed)
        self.generator = th.Generator().manual_seed(config.seed)
        in_features = math.prod(data.input_shape)
        self.net = make_mlp(in_features, config.hidden, n_classes, config.activation).to(self.device)
        if config.optimizer == "sgd":
            self.optimizer: th.optim.Optimizer = th.optim.SGD(
                self.net.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
            )
        else:
            self.optimizer = th.optim.Adam(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.neurons = module_neuron_model(self.net, [self.optimizer], NETWORK)
        self.groups: list[NeuronGroup] = self.neurons.select([NETWORK])
        self.result = ContinualResult(asdict(config), list(self.class_order))
        self.epoch = 0
        self._writer = None

    # -- schedule ------------------------------------------------------------------------------------------------
    @property
    def n_tasks(self) -> int:
        c = self.config
        return 1 + math.ceil(max(self.n_classes - c.initial_classes, 0) / c.classes_per_task)

    def seen_classes(self, task: int) -> int:
        """Number of classes trained on in task ``task`` (0-based)."""
        c = self.config
        return min(c.initial_classes + task * c.classes_per_task, self.n_classes)

    # -- one pass ------------------------------------------------------------------------------------------------
    def _subset(self, positions: th.Tensor, n_seen: int) -> th.Tensor:
        return ((positions >= 0) & (positions < n_seen)).nonzero().flatten()

    def _batch(self, x: th.Tensor, pos: th.Tensor, idx: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.data.prepare(x[idx], self.device), pos[idx].to(self.device)

    def _loss(self, inputs: th.Tensor, targets: th.Tensor, n_seen: int) -> tuple[th.Tensor, th.Tensor]:
        logits = self.net(inputs)[:, :n_seen]
        return F.cross_entropy(logits, targets), logits

    def train_epoch(self, n_seen: int) -> tuple[float, float]:
        """One epoch over the training samples of the first ``n_seen`` classes: ``(mean loss, accuracy)``."""
        self.net.train()
        idx = self._subset(self.train_pos, n_seen)
        idx = idx[th.randperm(idx.numel(), generator=self.generator)]
        total_loss, correct = 0.0, 0
        for start in range(0, idx.numel(), self.config.batch_size):
            inputs, targets = self._batch(self.data.train_x, self.train_pos, idx[start : start + self.config.batch_size])
            loss, logits = self._loss(inputs, targets, n_seen)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += float(loss.detach()) * targets.numel()
            correct += int((logits.argmax(dim=1) == targets).sum())
        n = max(idx.numel(), 1)
        return total_loss / n, correct / n

    @th.no_grad()
    def evaluate(self, n_seen: int, batch_size: int = 2000) -> float:
        """Test accuracy on the test samples of the first ``n_seen`` classes (predictions among those classes)."""
        self.net.eval()
        idx = self._subset(self.test_pos, n_seen)
        correct = 0
        for start in range(0, idx.numel(), batch_size):
            inputs, targets = self._batch(self.data.test_x, self.test_pos, idx[start : start + batch_size])
            correct += int((self.net(inputs)[:, :n_seen].argmax(dim=1) == targets).sum())
        return correct / max(idx.numel(), 1)

    def record_pass(self, n_seen: int, n_samples: int) -> Capture:
        """Forward and backward ``n_samples`` random training samples of the first ``n_seen`` classes with a
        :class:`~sb3_plasticity.capture.Capture` armed (no optimizer step; gradients are cleared after): the capture's
        records hold each group's outputs ``h`` and loss gradients ``dL/dz`` on that batch."""
        self.net.train()
        idx = self._subset(self.train_pos, n_seen)
        idx = idx[th.randperm(idx.numel(), generator=self.generator)[:n_samples]]
        inputs, targets = self._batch(self.data.train_x, self.train_pos, idx)
        capture = Capture(self.neurons, self.groups, gradients=True)
        capture.arm()
        try:
            self.optimizer.zero_grad(set_to_none=True)
            loss, _ = self._loss(inputs, targets, n_seen)
            loss.backward()
        finally:
            capture.disarm()
            self.optimizer.zero_grad(set_to_none=True)
        return capture

    def measure(self, n_seen: int) -> dict[str, float]:
        """Metrics of the network on ``measure_batch`` training samples: pooled (``<metric>``) and per layer
        (``<layer>/<metric>``)."""
        c = self.config
        capture = self.record_pass(n_seen, c.measure_batch)
        layers, values = [], {}
        for g in self.groups:
            rec = capture.records[g]
            m = layer_metrics(g.producer, rec.activation, rec.grad, g.alive(), c.dormant_tau, c.grama_tau)
            layers.append(m)
            values.update({f"{g.name}/{k}": v for k, v in m.values.items()})
        values.update(pool(layers, [g.is_last_hidden for g in self.groups]))
        values["weight_norm"] = weight_norm(self.neurons.network_parameters(NETWORK))
        return values

    def reset(self, n_seen: int) -> dict[str, Any]:
        """Score every hidden neuron on ``score_batch`` samples of the first ``n_seen`` classes and reset those at or
        below ``tau`` (the method's score, capped by ``max_reset_fraction``), layer by layer in data-flow order (a reset
        neuron's fresh incoming row also covers the previous layer's just-reset neurons, as in the RL methods).

        :return: ``counts`` and reset ``neurons`` per layer, their ``total``, and the share of hidden neurons at or
            below ``tau`` (``dormant_ratio`` for ReDo, ``grama_inactive_ratio`` for ReGraMa) before the cap.
        """
        c = self.config
        capture = self.record_pass(n_seen, c.score_batch)
        counts: dict[str, int] = {}
        neurons: dict[str, list[int]] = {}
        flagged_total, n_total = 0, 0
        for g in self.groups:
            rec = capture.records[g]
            signal = rec.activation if c.method == "redo" else rec.grad
            mask_fn = dormant_mask if c.method == "redo" else grama_inactive_mask
            flagged = mask_fn(signal, c.reset_tau, g.alive())
            idx = flagged.nonzero().flatten()
            flagged_total += int(idx.numel())
            n_total += g.n_neurons
            if c.max_reset_fraction is not None:
                cap = math.floor(c.max_reset_fraction * g.n_neurons)
                if idx.numel() > cap:
                    idx = lowest(normalized_scores(activity(signal), g.alive()), cap, idx)
            counts[g.name] = reset_neurons(g, idx, outgoing="zero", optimizer=True, twin=False)
            neurons[g.name] = [int(i) for i in idx]
        release_fresh_steps([self.optimizer])  # Adam: the fresh-step hook stays only while entries are pending
        ratio = "dormant_ratio" if c.method == "redo" else "grama_inactive_ratio"
        return {"counts": counts, "neurons": neurons, "total": sum(counts.values()), ratio: flagged_total / max(n_total, 1)}

    # -- run -----------------------------------------------------------------------------------------------------
    def _scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, float(value), step)

    def run(self) -> ContinualResult:
        """Train through every task; returns (and, with ``logdir``, writes) the :class:`ContinualResult`."""
        c = self.config
        if self.logdir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.logdir))
        try:
            for task in range(self.n_tasks):
                n_seen = self.seen_classes(task)
                if task > 0 and c.method != "vanilla":
                    self._log_reset(task, n_seen, self.reset(n_seen))
                start = time.time()
                for _ in range(c.epochs_per_task):
                    self._run_epoch(task, n_seen)
                last = self.result.epochs[-1]
                row = {
                    "task": task,
                    "n_classes": n_seen,
                    "accuracy": last["accuracy"],
                    "grama_inactive_ratio": last["grama_inactive_ratio"],
                    "dormant_ratio": last["dormant_ratio"],
                    "seconds": time.time() - start,
                }
                self.result.tasks.append(row)
                self._scalar("continual/task_end/accuracy", row["accuracy"], task)
                self._scalar("continual/task_end/grama_inactive_ratio", row["grama_inactive_ratio"], task)
        finally:
            release_fresh_steps([self.optimizer])
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        if self.logdir is not None:
            self.result.to_json(self.logdir / "results.json")
        return self.result

    def _run_epoch(self, task: int, n_seen: int) -> None:
        loss, train_acc = self.train_epoch(n_seen)
        self.epoch += 1
        acc = self.evaluate(n_seen)
        metrics = self.measure(n_seen)
        row = {"epoch": self.epoch, "task": task, "n_classes": n_seen, "train_loss": loss, "train_accuracy": train_acc}
        row["accuracy"] = acc
        row.update(metrics)
        self.result.epochs.append(row)
        for key in ("accuracy", "train_accuracy", "train_loss", "n_classes", "task"):
            self._scalar(f"continual/{key}", row[key], self.epoch)
        for key, value in metrics.items():
            self._scalar(f"plasticity/{NETWORK}/{key}", value, self.epoch)

    def _log_reset(self, task: int, n_seen: int, event: dict[str, Any]) -> None:
        method = self.config.method
        self.result.resets.append({"epoch": self.epoch, "task": task, "n_classes": n_seen, **event})
        self._scalar(f"plasticity/{method}/reset_count", event["total"], self.epoch)
        self._scalar(f"plasticity/{method}/{NETWORK}/reset_count", event["total"], self.epoch)
        for layer, n in event["counts"].items():
            self._scalar(f"plasticity/{method}/{NETWORK}/{layer}/reset_count", n, self.epoch)
        ratio = "dormant_ratio" if method == "redo" else "grama_inactive_ratio"
        self._scalar(f"plasticity/{method}/{NETWORK}/{ratio}_before", event[ratio], self.epoch)


def run_continual(
    data: ClassificationData, config: ContinualConfig | None = None, logdir: str | Path | None = None, **overrides: Any
) -> ContinualResult:
    """Run a class-incremental experiment: ``ContinualClassification(data, config, logdir).run()``.

    ``overrides`` replace fields of ``config`` (e.g. ``method="regrama"``, ``epochs_per_task=15``).
    """
    config = config or ContinualConfig()
    if overrides:
        config = ContinualConfig(**{**asdict(config), **overrides})
    return ContinualClassification(data, config, logdir).run()
