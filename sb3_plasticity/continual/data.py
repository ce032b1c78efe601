"""Data sets of the continual-classification harness: a user's local CIFAR-100 copy and a synthetic stand-in.

CIFAR-100 is read from the standard *python* version of the data set (``cifar-100-python.tar.gz`` from
https://www.cs.toronto.edu/~kriz/cifar.html, unpacked), nothing is downloaded::

    DIR/
      cifar-100-python/
        train     # pickle: {b"data": uint8 (50000, 3072), b"fine_labels": [int] * 50000, ...}
        test      # pickle: {b"data": uint8 (10000, 3072), b"fine_labels": [int] * 10000, ...}
        meta      # optional: {b"fine_label_names": [...]} (only used for class names)

``DIR`` may also be the ``cifar-100-python`` folder itself. A row of ``data`` is one 32x32 RGB image stored
channel-major (1024 red, 1024 green, 1024 blue values, row-major within each channel); torchvision is not needed.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch as th

__all__ = ["CIFAR100_FOLDER", "ClassificationData", "load_cifar100", "synthetic_blobs"]

CIFAR100_FOLDER = "cifar-100-python"


@dataclass
class ClassificationData:
    """Images and integer labels, split into train and test.

    ``x`` is stored as loaded (uint8 for CIFAR-100, to keep 50,000 images at 150 MB instead of 600 MB) and turned
    into network input batch by batch by :meth:`prepare`: ``(x - mean) / std`` per channel, with ``mean`` and
    ``std`` in the stored scale (computed on the training images).

    :param train_x: ``(n, C, H, W)`` training images.
    :param train_y: ``(n,)`` int64 labels.
    :param test_x: ``(m, C, H, W)`` test images.
    :param test_y: ``(m,)`` int64 labels.
    :param mean: ``(C,)`` per-channel mean of the training images.
    :param std: ``(C,)`` per-channel standard deviation of the training images.
    :param class_names: optional names, indexed by label.
    """

    train_x: th.Tensor
    train_y: th.Tensor
    test_x: th.Tensor
    test_y: th.Tensor
    mean: th.Tensor
    std: th.Tensor
    class_names: list[str] | None = None

    @property
    def classes(self) -> list[int]:
        """The labels present in the training set, sorted."""
        return sorted(int(c) for c in th.unique(self.train_y))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def prepare(self, x: th.Tensor, device: th.device | str = "cpu") -> th.Tensor:
        """Network input: float32 on ``device``, normalised per channel."""
        x = x.to(device).float()
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.to(device).view(shape)) / self.std.to(device).view(shape)


def _channel_stats(x: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double()
    mean = flat.mean(dim=1)
    std = flat.std(dim=1).clamp_min(1e-8)
    return mean.float(), std.float()


def _read_split(path: Path) -> tuple[th.Tensor, th.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-100 split file {path} does not exist")
    with path.open("rb") as f:
        raw = pickle.load(f, encoding="bytes")
    data = raw.get(b"data", raw.get("data"))
    labels = raw.get(b"fine_labels", raw.get("fine_labels"))
    if data is None or labels is None:
        raise ValueError(f"{path} is not a CIFAR-100 python pickle: it has no 'data' and 'fine_labels' entries")
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' must have shape (n, 3072), got {data.shape}")
    x = th.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    y = th.as_tensor(np.asarray(labels, dtype=np.int64))
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{path}: {x.shape[0]} images but {y.shape[0]} labels")
    return x, y


def load_cifar100(root: str | Path) -> ClassificationData:
    """CIFAR-100 (fine labels) from a local copy of the python version (layout in the module docstring).

    :param root: the folder holding ``cifar-100-python/``, or that folder itself.
    """
    root = Path(root)
    folder = root / CIFAR100_FOLDER if (root / CIFAR100_FOLDER).is_dir() else root
    if not (folder / "train").is_file():
        raise FileNotFoundError(
            f"no CIFAR-100 found at {root}: expected {root / CIFAR100_FOLDER / 'train'} and '.../test' (the python version "
            "of CIFAR-100, https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz, unpacked); nothing is downloaded"
        )
    train_x, train_y = _read_split(folder / "train")
    test_x, test_y = _read_split(folder / "test")
    names = None
    meta = folder / "meta"
    if meta.is_file():
        with meta.open("rb") as f:
            raw = pickle.load(f, encoding="bytes")
        found = raw.get(b"fine_label_names", raw.get("fine_label_names"))
        if found is not None:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in found]
    mean, std = _channel_stats(train_x)
    return ClassificationData(train_x, train_y, test_x, test_y, mean, std, names)


def synthetic_blobs(
    n_classes: int = 10,
    train_per_class: int = 100,
    test_per_class: int = 20,
    shape: tuple[int, ...] = (3, 8, 8),
    noise: float = 1.0,
    seed: int = 0,
) -> ClassificationData:
    """Gaussian blobs: class ``c`` is ``center_c + noise * N(0, I)`` with centers drawn from ``N(0, I)``.

    A learnable stand-in for CIFAR-100 (tests and the CLI's ``--synthetic``): with ``noise`` about 1 and inputs of a
    few hundred dimensions the classes are nearly linearly separable.
    """
    gen = th.Generator().manual_seed(seed)
    centers = th.randn((n_classes, *shape), generator=gen)

    def draw(per_class: int) -> tuple[th.Tensor, th.Tensor]:
        y = th.arange(n_classes).repeat_interleave(per_class)
        x = centers[y] + noise * th.randn((y.numel(), *shape), generator=gen)
        return x, y

    train_x, train_y = draw(train_per_class)
    test_x, test_y = draw(test_per_class)
    mean, std = _channel_stats(train_x)
    return ClassificationData(train_x, train_y, test_x, test_y, mean, std)
