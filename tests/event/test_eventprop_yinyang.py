"""Short-run training test of the Yin-Yang EventProp example (examples/yinyang_eventprop.py)."""

from __future__ import annotations

import importlib.util
import time
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
def test_ten_epochs_reach_85_percent_quickly():
    example = _load_example()
    config = example.Config(seeds=1, epochs=10, train_samples=1920)
    # CPU time of this process, not wall time: the bound must not depend on the machine's load.
    start = time.process_time()
    result = example.train(config, progress=False)
    elapsed = time.process_time() - start
    accuracy = float(np.mean(result["test_accuracy"]))
    assert accuracy > 0.85, f"test accuracy after 10 short epochs: {accuracy:.3f}"
    assert elapsed < 300, f"training took {elapsed:.0f} s of CPU time"
    history = result["history"]
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
def test_validation_selection_tests_each_seeds_best_validation_epoch():
    example = _load_example()
    config = example.Config(seeds=2, epochs=3, train_samples=320, select="validation")
    result = example.train(config, progress=False)
    history = result["history"]
    validation = np.asarray(history["validation_acc"])  # (epochs, seeds)
    test = np.asarray(history["test_acc"])
    np.testing.assert_allclose(result["validation_accuracy"], validation.max(axis=0), rtol=1e-6)
    # ties go to the later epoch: the last index of the maximum
    chosen = validation.shape[0] - 1 - np.argmax(validation[::-1], axis=0)
    np.testing.assert_allclose(result["test_accuracy"], test[chosen, np.arange(config.seeds)], rtol=1e-6)
    np.testing.assert_allclose(result["test_accuracy_last_epoch"], test[-1], rtol=1e-6)
