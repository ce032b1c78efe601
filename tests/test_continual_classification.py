"""The continual-classification harness (GraMa Fig. 5 right) on synthetic data and on a fake CIFAR-100 copy."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch as th
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sb3_plasticity.continual import (
    ContinualClassification,
    ContinualConfig,
    load_cifar100,
    module_neuron_model,
    run_continual,
    synthetic_blobs,
)
from sb3_plasticity.continual.__main__ import main

KILLED = [1, 4, 6]  # hidden neurons of fc1 made dead by hand: zero incoming weights, bias -1e4


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _tiny(**overrides) -> ContinualConfig:
    settings = dict(
        hidden=(16, 16),
        initial_classes=2,
        classes_per_task=2,
        epochs_per_task=2,
        batch_size=32,
        lr=0.05,
        measure_batch=128,
        score_batch=128,
    )
    settings.update(overrides)
    return ContinualConfig(**settings)


def _kill(net) -> None:
    with th.no_grad():
        net.fc1.weight[KILLED] = 0.0
        net.fc1.bias[KILLED] = -1e4


def _write_fake_cifar(root, n_classes: int = 4, train_per_class: int = 8, test_per_class: int = 3):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = [c for c in range(n_classes) for _ in range(per_class)]
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        # class-dependent brightness, so that the classes can be told apart
        data = np.clip(data // 4 + np.array(labels, dtype=np.int64)[:, None] * 50, 0, 255).astype(np.uint8)
        if split == "train":
            data[0, :] = 0
            data[0, 0] = 255  # red (0, 0)
            data[0, 1024 + 1] = 7  # green (0, 1)
            data[0, 2048 + 32] = 9  # blue (1, 0)
        entry = {b"data": data, b"fine_labels": labels, b"coarse_labels": [0] * len(labels), b"batch_label": b"x"}
        with (folder / split).open("wb") as f:
            pickle.dump(entry, f)
    with (folder / "meta").open("wb") as f:
        pickle.dump({b"fine_label_names": [f"class{c}".encode() for c in range(100)]}, f)
    return folder


def test_loader_parses_the_cifar100_python_pickle(tmp_path):
    folder = _write_fake_cifar(tmp_path)
    for root in (tmp_path, folder):  # the parent folder or cifar-100-python itself
        data = load_cifar100(root)
        assert data.train_x.shape == (32, 3, 32, 32) and data.train_x.dtype == th.uint8
        assert data.test_x.shape == (12, 3, 32, 32)
        assert data.train_y.tolist() == [c for c in range(4) for _ in range(8)]
        assert data.classes == [0, 1, 2, 3]
        # rows are channel-major RGB, each channel row-major
        assert int(data.train_x[0, 0, 0, 0]) == 255
        assert int(data.train_x[0, 1, 0, 1]) == 7
        assert int(data.train_x[0, 2, 1, 0]) == 9
        assert data.class_names[:2] == ["class0", "class1"]
        x = data.prepare(data.train_x)
        assert x.dtype == th.float32
        assert th.allclose(x.transpose(0, 1).reshape(3, -1).mean(dim=1), th.zeros(3), atol=1e-4)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_cifar100(tmp_path / "nowhere")


def test_vanilla_learns_a_synthetic_task_sequence_above_chance(tmp_path):
    data = synthetic_blobs(n_classes=6, train_per_class=40, test_per_class=20, noise=1.0, seed=1)
    result = run_continual(data, _tiny(epochs_per_task=3), tmp_path)
    assert [t["n_classes"] for t in result.tasks] == [2, 4, 6]
    for task in result.tasks:
        assert task["accuracy"] > 1.0 / task["n_classes"] + 0.3
    assert result.resets == []
    scalars = _scalars(tmp_path)
    assert [s for s, _ in scalars["continual/accuracy"]] == list(range(1, 10))
    ratios = [v for _, v in scalars["plasticity/mlp/grama_inactive_ratio"]]
    assert len(ratios) == 9 and all(0.0 <= v <= 1.0 for v in ratios)
    assert "plasticity/mlp/fc1/dormant_ratio" in scalars
    assert [s for s, _ in scalars["continual/task_end/accuracy"]] == [0, 1, 2]
    assert not any(tag.startswith(("plasticity/redo/", "plasticity/regrama/")) for tag in scalars)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["epochs"]) == 9 and saved["config"]["method"] == "vanilla"


@pytest.mark.parametrize("method", ["redo", "regrama"])
def test_a_switch_resets_dead_neurons_with_the_surgery_layer(method):
    data = synthetic_blobs(n_classes=4, train_per_class=30, test_per_class=5)
    run = ContinualClassification(data, _tiny(method=method))
    _kill(run.net)
    run.train_epoch(2)  # the optimizer has momentum buffers now
    out_before = run.net.out.weight.detach().clone()
    with th.no_grad():
        probe = run.data.prepare(data.train_x[:16])
        logits_before = run.net(probe)
    event = run.reset(4)
    assert event["counts"]["fc1"] >= len(KILLED)
    assert event[{"redo": "dormant_ratio", "regrama": "grama_inactive_ratio"}[method]] > 0
    fc1, fc2 = run.net.fc1, run.net.fc2
    assert bool((fc1.bias[KILLED] > -1e3).all()) and bool((fc1.weight[KILLED] != 0).any(dim=1).all())
    kept_rows = [i for i in range(fc2.out_features) if i not in event["neurons"]["fc2"]]  # fc2 rows not re-drawn
    assert set(KILLED) <= set(event["neurons"]["fc1"])
    assert bool((fc2.weight[kept_rows][:, KILLED] == 0).all())  # outgoing weights zeroed: the function is kept
    momentum = run.optimizer.state[fc2.weight]["momentum_buffer"]
    assert bool((momentum[:, KILLED] == 0).all())  # SGD momentum of the touched entries cleared
    out = run.net.out.weight
    assert th.equal(out[:, kept_rows], out_before[:, kept_rows])  # the head is never reset, only its reset inputs
    assert bool((out[:, event["neurons"]["fc2"]] == 0).all())
    with th.no_grad():
        assert th.allclose(run.net(probe), logits_before, atol=1e-5)


def test_regrama_resets_at_every_task_switch_and_logs_them(tmp_path):
    data = synthetic_blobs(n_classes=6, train_per_class=30, test_per_class=10)
    run = ContinualClassification(data, _tiny(method="regrama"), tmp_path)
    _kill(run.net)
    result = run.run()
    assert [r["epoch"] for r in result.resets] == [2, 4]  # before the first update on tasks 1 and 2
    assert result.resets[0]["counts"]["fc1"] >= len(KILLED)
    scalars = _scalars(tmp_path)
    counts = scalars["plasticity/regrama/reset_count"]
    assert [s for s, _ in counts] == [2, 4] and counts[0][1] >= len(KILLED)
    assert [s for s, _ in scalars["plasticity/regrama/mlp/fc1/reset_count"]] == [2, 4]
    assert scalars["plasticity/regrama/mlp/grama_inactive_ratio_before"][0][1] > 0
    # dead at the start, the killed neurons are alive again after the first switch
    assert bool((run.net.fc1.bias[KILLED] > -1e3).all())


def test_config_defaults_and_errors():
    assert ContinualConfig(method="redo").reset_tau == 0.02
    assert ContinualConfig(method="regrama").reset_tau == 0.01
    assert ContinualConfig(method="regrama", tau=0.0).reset_tau == 0.0
    with pytest.raises(ValueError, match="method"):
        ContinualConfig(method="cbp")
    with pytest.raises(ValueError, match="epochs_per_task"):
        ContinualConfig(epochs_per_task=0)
    data = synthetic_blobs(n_classes=3, train_per_class=4, test_per_class=2)
    with pytest.raises(ValueError, match="n_classes"):
        ContinualClassification(data, ContinualConfig(n_classes=5, initial_classes=2))


def test_module_neuron_model_finds_the_hidden_layers():
    data = synthetic_blobs(n_classes=3, train_per_class=4, test_per_class=2)
    run = ContinualClassification(data, _tiny(hidden=(8, 5, 3)))
    model = module_neuron_model(run.net, [run.optimizer])
    assert [g.name for g in model.networks["mlp"]] == ["fc1", "fc2", "fc3"]
    assert [[c.name for c in g.consumers] for g in model.networks["mlp"]] == [["fc2"], ["fc3"], ["out"]]
    assert all(g.optimizers == (run.optimizer,) for g in model.groups)


def test_cli_runs_on_a_fake_cifar100_copy(tmp_path, capsys):
    _write_fake_cifar(tmp_path / "data")
    logdir = tmp_path / "runs"
    argv = ["--data", str(tmp_path / "data"), "--method", "regrama", "--initial-classes", "2", "--classes-per-task", "2"]
    argv += ["--epochs-per-task", "1", "--hidden", "8", "--batch-size", "8", "--measure-batch", "16"]
    argv += ["--score-batch", "16", "--device", "cpu", "--logdir", str(logdir)]
    assert main(argv) == 0
    assert "2 tasks, 4 classes" in capsys.readouterr().out
    saved = json.loads((logdir / "results.json").read_text())
    assert [t["n_classes"] for t in saved["tasks"]] == [2, 4]
    assert len(saved["resets"]) == 1
    scalars = _scalars(logdir)
    assert {"continual/accuracy", "plasticity/mlp/grama_inactive_ratio", "plasticity/regrama/reset_count"} <= set(scalars)
