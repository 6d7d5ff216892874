"""Shared helpers of the NIR tests: fixture files and the comparison with a writer's own run."""

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_data(name):
    """``(path of <name>.nir, npz data)`` of a committed fixture."""
    return FIXTURES / f"{name}.nir", np.load(FIXTURES / f"{name}.npz")


def _binary(a):
    return bool(np.all((a == 0) | (a == 1)))


def assert_close_trace(ours, reference, what):
    """Membranes within 1e-5 relative (absolute floor 1e-6 of the trace's range)."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} != {reference.shape}"
    scale = float(np.max(np.abs(reference)))
    assert scale > 0, f"{what}: the reference trace is all zeros (compares nothing)"
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6 * scale, err_msg=what)


def assert_reproduces(data, output, recording):
    """The imported run equals the writer's own run: same spikes, membranes within 1e-5.

    Returns the number of reference spikes and of traces compared (both must be > 0, so that
    the comparison cannot pass by comparing nothing).
    """
    reference = data["output"]
    output = np.asarray(output)
    spikes = 0.0
    if _binary(reference):
        assert output.shape == reference.shape
        assert np.array_equal(output, reference), (
            f"output spikes differ in {int(np.sum(output != reference))} of {reference.size} "
            f"entries ({int(reference.sum())} reference spikes)"
        )
        spikes += float(reference.sum())
    else:
        assert_close_trace(output, reference, "output")
    traces = 0
    for key in data.files:
        if not key.startswith("trace/"):
            continue
        _, node, field = key.split("/")
        assert node in recording, f"node {node!r} missing from the recording"
        record = recording[node]
        ours = record.output if field == "output" else getattr(record.state, field)
        reference_trace = data[key]
        if field == "output" and _binary(reference_trace):
            assert np.array_equal(np.asarray(ours), reference_trace), f"{node} spikes differ"
            spikes += float(reference_trace.sum())
        else:
            assert_close_trace(ours, reference_trace, f"{node}.{field}")
        traces += 1
    assert spikes > 0, "no reference spikes: the comparison would compare nothing"
    assert traces > 0, "no traces compared"
    return spikes, traces


class _Helpers:
    """The helpers above, handed to tests through the ``nirtest`` fixture."""

    FIXTURES = FIXTURES
    fixture_data = staticmethod(fixture_data)
    assert_close_trace = staticmethod(assert_close_trace)
    assert_reproduces = staticmethod(assert_reproduces)


@pytest.fixture(scope="session")
def nirtest():
    return _Helpers
