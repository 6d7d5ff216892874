"""Training sharded over 4 simulated CPU devices equals training on one device.

The test runs ``sharded_checks.py`` once, in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the flag must be set before jax is
imported), and asserts on what it reports; every check trains 3 steps of Adam (with a global-norm
clip) on the same batch. ``JAXSNN_DISTRIBUTED_EXTENDED=1`` adds the checks too slow for every CI
run: the EventProp network alone (chunked), ``in_the_loop`` in a step partitioned by XLA, and
the EventProp example (``--devices 2``, killed and resumed).

Tolerances (float32): ``chunked_sum`` steps are bitwise equal. Plain steps partitioned by XLA
(``data_parallel``) and seeds split over devices are not: an all-reduce adds the per-device
partial sums of the batch in another order, and a device holding 1 of 4 seeds runs matrix
products of another shape, so gradients differ in the last bits; after 3 steps parameters
agree to 1e-6 (observed: 1.5e-8 discrete, 6e-8 event, at parameter magnitudes of 4 to 10),
losses to 1e-6 relative, output spike times to 1e-7 s and spike counts exactly.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import run_json_script  # noqa: E402,F401  (a fixture)

N_STEPS = 3
PARAMS_ATOL = 1e-6
LOSS_RTOL = 1e-6
TIME_ATOL = 1e-7

# all in one process: programs that several checks share compile once
CHECKS = [
    "discrete_data_parallel", "discrete_chunked", "discrete_seeds", "chunked_transforms", "errors",
    "hardware_chunked", "example_discrete",
]
EXTENDED_CHECKS = ["event_chunked", "hardware_data_parallel", "example_eventprop"]


def _trained(result: dict) -> None:
    # the comparison compared something: the parameters moved and the networks were active
    assert result["params_moved"] > 1e-3, f"training did not change the parameters: {result}"
    assert len(result["loss_reference"]) == N_STEPS


def _bitwise(name: str, result: dict) -> None:
    _trained(result)
    assert result["bitwise"], (
        f"{name}: sharded run differs from one device (params by {result['max_abs_diff_params']:.3g}, "
        f"outputs by {result['max_abs_diff_outputs']:.3g}); losses {result['loss_reference']} vs {result['loss_sharded']}"
    )
    assert result["max_abs_diff_params"] == 0.0 and result["loss_reference"] == result["loss_sharded"]


def _close(name: str, result: dict, outputs_atol: float) -> None:
    _trained(result)
    assert result["max_abs_diff_params"] <= PARAMS_ATOL, f"{name}: params differ by {result['max_abs_diff_params']:.3g}"
    assert result["max_abs_diff_outputs"] <= outputs_atol, f"{name}: outputs differ by {result['max_abs_diff_outputs']:.3g}"
    np.testing.assert_allclose(result["loss_sharded"], result["loss_reference"], rtol=LOSS_RTOL, err_msg=name)


def check_discrete_data_parallel(result: dict) -> None:
    _close("discrete data_parallel", result, outputs_atol=0.0)  # spike counts: exact
    assert result["hidden_spikes"] > 0
    # the batch was split (per-sample outputs in 4 pieces, an all-reduce adds the gradient
    # parts), the parameters replicated
    assert result["batch_inputs_split"] == [True, True], f"the batch was not split: {result}"
    assert result["params_inputs_replicated"], f"params not replicated: {result}"
    assert result["output_devices"] == 4 and result["all_reduce_in_program"], f"the batch was not split: {result}"
    assert result["params_pieces"] == 1 and result["params_devices"] == 4, f"params not replicated: {result}"


def check_discrete_chunked(result: dict) -> None:
    _bitwise("discrete chunked_sum", result)
    assert result["hidden_spikes"] > 0 and result["output_devices"] == 4
    # the chunked sum is the same maths as the plain mean, summed in another order
    assert result["max_abs_diff_to_plain"] <= PARAMS_ATOL


def check_discrete_seeds(result: dict) -> None:
    _close("discrete seeds split over devices", result, outputs_atol=0.0)
    assert result["hidden_spikes"] > 0 and result["params_pieces"] == 4  # one seed per device


def check_chunked_transforms(result: dict) -> None:
    assert result["grad_max_abs_diff"] <= 1e-6 * result["grad_scale"] * 10, result
    assert result["vmap_max_abs_diff"] <= 1e-6 * result["vmap_scale"] * 10, result
    assert result["grad_scale"] > 0.1 and result["vmap_scale"] > 0.1


def check_errors(messages: dict) -> None:
    expected = {
        "shard_batch": r"ValueError: cannot split a leading axis of 6 over 4 devices: use a batch .* divisible by 4",
        "chunks": r"ValueError: chunks \(6\) must be a multiple of the number of devices \(4\)",
        "device_mesh": r"ValueError: asked for 5 devices but only 4 cpu device\(s\) exist; .*xla_force_host_platform_device_count",
        "data_parallel": r"ValueError: cannot split a leading axis of 10 over 4 devices",
    }
    for name, pattern in expected.items():
        assert re.search(pattern, messages[name]), f"{name}: {messages[name]!r} does not match {pattern!r}"


def check_event_chunked(result: dict) -> None:
    _bitwise("event chunked_sum", result)
    assert result["finite_first_spikes"] > 0.5 and result["output_devices"] == 4


def check_hardware_data_parallel(result: dict) -> None:
    _close("chip in the loop, data_parallel", result, outputs_atol=TIME_ATOL)
    assert result["finite_first_spikes"] > 0.5 and result["output_devices"] == 2
    # the callback ran once per step with the whole batch, as on one device
    whole = [result["batch"]] * N_STEPS
    assert result["callback_batches_reference"] == whole
    assert result["callback_batches_sharded"] == whole


def check_hardware_chunked(result: dict) -> None:
    # the chip measures the whole batch once per step (a callback in the sharded step), then
    # EventProp at the measured times in chunked_sum: bitwise equal on 1 and 2 devices
    _bitwise("chip in the loop, chunked EventProp", result)
    assert result["finite_first_spikes"] > 0.5 and result["output_devices"] == 2
    whole = [result["batch"]] * N_STEPS
    assert result["callback_batches_reference"] == whole
    assert result["callback_batches_sharded"] == whole


def _example(name: str, result: dict) -> None:
    # --devices 2 splits the 2 seeds; equal to one device to float32 rounding (the vmap over one
    # seed per device compiles to other matrix-product shapes); a run resumed from the epoch-1
    # checkpoint equals the uninterrupted one bit for bit
    assert result["epochs_recorded"] == 2 and all(np.isfinite(result["first_epoch_loss"]))
    if "devices_history_max_abs_diff" in result:
        difference = result["devices_history_max_abs_diff"]
        assert difference <= 1e-5, f"{name}: the --devices 2 history differs from one device's by {difference:.3g}"
    assert result["resumed_from_epoch"] == [0, 1], result["resumed_from_epoch"]
    assert result["resumed_history_equal"] and result["resumed_test_accuracy_equal"], f"{name}: the resumed run differs"


def check_example_discrete(result: dict) -> None:
    assert "devices_history_max_abs_diff" in result
    _example("yinyang_discrete", result)


def check_example_eventprop(result: dict) -> None:
    _example("yinyang_eventprop", result)


def test_sharded_training_equals_one_device(run_json_script):
    names = CHECKS + (EXTENDED_CHECKS if os.environ.get("JAXSNN_DISTRIBUTED_EXTENDED") == "1" else [])
    results = run_json_script("sharded_checks.py", names, devices=4, timeout=900)
    assert results["devices"] == 4, results
    failures = []
    for name in names:
        result = results[name]
        if "error" in result:
            failures.append(f"{name} raised:\n{result['error']}")
            continue
        try:
            globals()[f"check_{name}"](result)
        except AssertionError as error:
            failures.append(f"{name}: {error}")
    assert not failures, "\n\n".join(failures)
