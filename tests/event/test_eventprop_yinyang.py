"""Short-run tests of the Yin-Yang EventProp example (examples/yinyang_eventprop.py): it learns,
and it runs end to end (the other examples run end to end in tests/test_examples.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "yinyang_eventprop.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("yinyang_eventprop_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.extended
def test_ten_short_epochs_reach_85_percent():
    # 10 epochs of 60 batches (1920 samples), one seed: the default recipe (hybrid loss, weight
    # bumping after Adam, clipping) learns; wall time is not asserted (it depends on the load)
    example = _load_example()
    config = example.Config(seeds=1, epochs=10, train_samples=1920)
    result = example.train(config, progress=False)
    accuracy = float(np.mean(result["test_accuracy"]))
    assert accuracy > 0.85, f"test accuracy after 10 short epochs: {accuracy:.3f}"
    history = result["history"]
    assert np.asarray(history["train_loss"]).shape == (10, 1)
    assert np.all(np.isfinite(np.asarray(history["train_loss"])))


def test_unknown_loss_is_rejected():
    example = _load_example()
    with pytest.raises(ValueError, match="loss must be one of"):
        example.make_functions(example.Config(loss="hinge"))


def test_hardware_example_rejects_unknown_loss():
    spec = importlib.util.spec_from_file_location(
        "yinyang_hardware_example", EXAMPLE.with_name("yinyang_hardware.py")
    )
    hardware = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hardware)
    config = hardware.Config(loss="hinge")
    emulator = hardware.build_emulator(config, hardware.EmulatorConfig())
    with pytest.raises(ValueError, match="loss must be 'hybrid', 'mse' or 'ce'"):
        hardware.make_functions(config, emulator)


def test_unknown_selection_is_rejected():
    example = _load_example()
    with pytest.raises(ValueError, match="select must be one of"):
        example.train(example.Config(select="test"), progress=False)


@pytest.mark.slow
def test_main_with_validation_selection_writes_its_record_and_figures(tmp_path):
    # the example end to end (command line, training, record, figures) on a tiny setting, with
    # --select validation: each seed is tested with the weights of its best-validation epoch
    example = _load_example()
    argv = ["--seeds", "2", "--epochs", "3", "--train-samples", "320", "--select", "validation",
            "--no-progress", "--out-dir", str(tmp_path)]
    example.main(argv)
    assert {path.name for path in tmp_path.iterdir()} == (
        {"yinyang_eventprop.json"} | {f"yinyang_eventprop_{kind}.png" for kind in example.FIGURES})
    record = json.loads((tmp_path / "yinyang_eventprop.json").read_text())
    assert record["command"] == "python examples/yinyang_eventprop.py " + " ".join(argv)
    assert record["selected_by"] == "validation" and record["seeds"] == [0, 1]
    history = record["history"]
    validation = np.asarray(history["validation_acc"])  # (epochs, seeds)
    test = np.asarray(history["test_acc"])
    assert validation.shape == (3, 2)
    np.testing.assert_allclose(
        record["validation_accuracy_per_seed"], validation.max(axis=0), rtol=1e-6)
    # ties go to the later epoch: the last index of the maximum
    chosen = validation.shape[0] - 1 - np.argmax(validation[::-1], axis=0)
    np.testing.assert_allclose(
        record["test_accuracy_per_seed"], test[chosen, np.arange(2)], rtol=1e-6)
    np.testing.assert_allclose(record["test_accuracy_last_epoch_per_seed"], test[-1], rtol=1e-6)
