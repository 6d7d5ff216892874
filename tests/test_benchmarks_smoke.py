"""Smoke tests: every benchmark's jaxsnn side runs at tiny size, in-process, so the benchmark
scripts cannot silently rot. Timings are not checked (benchmarks are run by
``python benchmarks/run.py``, outside the test suite)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "workers"))

import harness  # noqa: E402
import report  # noqa: E402

pytestmark = pytest.mark.benchmark

TINY_MLP = {"T": 6, "batch": 2, "n_in": 12, "hidden": 12, "p_in": 0.3, "seed": 0, "gain": 4.0}
TINY_CNN = {"T": 3, "batch": 2, "channels_in": 2, "channels": 3, "size": 6, "kernel": 3,
            "p_in": 0.3, "seed": 0, "gain": 4.0}
TINY_EVENT = {"hidden": 6, "dup": 1, "batch": 2, "n_samples": 4, "capacity_hidden": 6,
              "capacity_output": 3, "kernel": "quadratic"}


@pytest.fixture(scope="module")
def built_mlp():
    import w_jaxsnn

    return w_jaxsnn.build("mlp2048", dict(TINY_MLP))


@pytest.mark.parametrize("workload,cfg", [("mlp2048", TINY_MLP), ("cnn48", TINY_CNN)])
def test_discrete_workloads_match_hand_written_reference(workload, cfg, built_mlp):
    import w_jax_handwritten
    import w_jaxsnn

    ours = built_mlp if workload == "mlp2048" else w_jaxsnn.build(workload, dict(cfg))
    ref = w_jax_handwritten.build(workload, dict(cfg))
    out = np.asarray(ours["block"](ours["forward"]()))
    grads = ours["block"](ours["backward"]())
    # The benchmark feeds every library the same network: jaxsnn's spikes must equal the
    # hand-written recurrence exactly (both time-major; jaxsnn NHWC, the reference NCHW).
    axes = (0, 1, 2) if workload == "mlp2048" else (0, 1, 4, 2, 3)
    np.testing.assert_array_equal(out.transpose(axes), np.asarray(ref["forward"]()))
    assert ours["rates"]() == pytest.approx(ref["rates"](), abs=0)
    assert all(np.all(np.isfinite(np.asarray(g["weight"]))) for g in grads if g)
    assert 0 < ours["rates"]()[0] < 1  # the tiny network does spike


def test_timing_and_report_files(tmp_path, built_mlp):
    built = built_mlp
    timing = harness.time_call(built["forward"], built["block"], iterations=3, warmup=1)
    assert timing["iterations"] == 3 and timing["min_s"] <= timing["median_s"] <= timing["max_s"]
    timing.pop("result")
    result = {"workload": "mlp2048", "preliminary": True, "machine": harness.machine_info(),
              "load_average_start": harness.load_average(), "load_average_end": None,
              "config": TINY_MLP, "libraries": {
                  "jaxsnn": {"modes": {"forward": timing}, "spike_rates": built["rates"](),
                             "versions": {"jaxsnn": "x"}},
                  "broken-peer": {"error": "install failed: example"}}}
    report.add_ratios(result, "jaxsnn")
    assert result["libraries"]["jaxsnn"]["modes"]["forward"]["ratio_to_jaxsnn"] == 1.0
    report.write(result, tmp_path / "mlp2048")
    saved = json.loads((tmp_path / "mlp2048.json").read_text())
    assert saved["libraries"]["broken-peer"]["error"].startswith("install failed")
    md = (tmp_path / "mlp2048.md").read_text()
    assert "broken-peer" in md and "error" in md and "Preliminary" in md
    assert (tmp_path / "mlp2048.png").stat().st_size < 300_000


def test_event_forward_and_eventprop_jaxsnn_side(tmp_path):
    import event_common
    import w_event_jaxsnn

    fwd = w_event_jaxsnn.build("event_forward", dict(TINY_EVENT, out=str(tmp_path / "f.npz")))
    fwd["block"](fwd["forward"]())
    counts = fwd["rates"]()
    assert counts[0] > 0  # hidden neurons spike
    same = event_common.compare_spikes(str(tmp_path / "f.npz"), str(tmp_path / "f.npz"))
    assert same["hidden"]["max_abs_time_diff_s"] == 0 and same["hidden"]["spikes_only_in_one"] == 0

    train = w_event_jaxsnn.build("eventprop", dict(TINY_EVENT, out=str(tmp_path / "g.npz")))
    (params, _), loss = train["block"](train["step"]())
    assert np.isfinite(float(loss))
    before = harness.event_data(TINY_EVENT)["w1"]
    after = np.asarray(params[0]["weight"])
    assert np.all(np.isfinite(after)) and not np.array_equal(after, before)  # a real update


def test_event_data_is_identical_for_every_library():
    a = harness.event_data(dict(TINY_EVENT, dup=2))
    b = harness.event_data(dict(TINY_EVENT, dup=2))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.all(np.diff(a["times"], axis=1) >= 0)  # sorted per sample
    assert a["w1"].shape == (10, 6)


def test_profile_conv_runs_and_reports_every_operation(tmp_path):
    import profile_conv

    out = tmp_path / "conv.json"
    result = profile_conv.main(["--images", "2", "--size", "6", "--channels", "3", "--rounds", "1",
                                "--out", str(out)])
    assert set(result["operations"]) == {"forward", "input_gradient", "weight_gradient", "matmul_same_flops"}
    assert all(op["gflops"] > 0 for op in result["operations"].values())
    assert json.loads(out.read_text())["gflop_per_call"] == pytest.approx(2 * 2 * 36 * 9 * 9 / 1e9)
