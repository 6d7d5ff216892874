"""Smoke tests: every benchmark's jaxsnn side runs at tiny size, in-process, so the benchmark
scripts cannot silently rot, and its results are checked against an independent producer:
the hand-written JAX worker for the discrete workloads (spikes and gradients), the float64
reference simulator (``jaxsnn.testing.reference``) for the event workloads (spike files through
the benchmark's own comparison, EventProp gradients against finite differences). The peers'
workers need their own virtual environments and are not run here. Timings are not checked
(benchmarks are run by ``python benchmarks/run.py``, outside the test suite)."""

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
TINY_EVENT = {"hidden": 6, "dup": 1, "batch": 2, "n_samples": 4}


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
    # The benchmark feeds every library the same network: jaxsnn's spikes must equal the
    # hand-written recurrence exactly (jaxsnn's worker: time-major, NHWC; reference: time-major,
    # NCHW).
    axes = (0, 1, 2) if workload == "mlp2048" else (0, 1, 4, 2, 3)
    np.testing.assert_array_equal(out.transpose(axes), np.asarray(ref["forward"]()))
    assert ours["rates"]() == pytest.approx(ref["rates"](), abs=0)
    assert 0 < ours["rates"]()[0] < 1  # the tiny network does spike
    # ... and the backward mode computes the same surrogate gradient of the summed output spikes.
    # jaxsnn's single-state LIF (input_scale=1) takes the reference's weights unchanged (HWIO
    # instead of OIHW for convolutions); float32, measured agreement 2e-6.
    grads = ours["block"](ours["backward"]())
    ref_grads = ref["block"](ref["backward"]())
    to_reference_layout = (lambda g: g) if workload == "mlp2048" else (lambda g: g.transpose(3, 2, 0, 1))
    # mlp2048 is serial(Dense, LIF, Dense, LIF); cnn48 is serial(ConvLIF, ConvLIF).
    weighted = (0, 2) if workload == "mlp2048" else (0, 1)
    assert len(grads) == (4 if workload == "mlp2048" else 2)
    for position, expected in zip(weighted, ref_grads, strict=True):
        expected = np.asarray(expected)
        got = to_reference_layout(np.asarray(grads[position]["weight"]))
        assert np.count_nonzero(expected) > expected.size // 2  # the surrogate reaches most weights
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.max(np.abs(expected)))
    if workload == "mlp2048":
        assert grads[1] == {} and grads[3] == {}


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


def _event_setup():
    from jaxsnn.event.neuron import LIFParameters

    p = harness.event_params(TINY_EVENT)
    neuron = LIFParameters(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], v_th=p["v_th"], v_reset=p["v_reset"],
                           t_ref=p["t_max"])
    return p, neuron, harness.event_data(TINY_EVENT)


def _reference_forward(w1, w2, times, idx, neuron, t_max):
    """Both layers of one sample with the float64 reference simulator."""
    from jaxsnn.testing import reference

    t1, i1 = reference.simulate_event(np.float64(w1), times, idx, neuron, t_max)
    t2, i2 = reference.simulate_event(np.float64(w2), t1, i1, neuron, t_max)
    return t1, i1, t2, i2


def _padded(values, capacity, fill):
    out = np.full(capacity, fill, dtype=np.asarray(values).dtype if len(values) else np.float64)
    out[: len(values)] = values
    return out


def test_event_forward_spike_file_matches_the_float64_reference(tmp_path):
    import event_common
    import w_event_jaxsnn

    cfg = event_common.worker_config(TINY_EVENT, "jaxsnn", str(tmp_path / "jaxsnn.npz"), kernel="quadratic")
    fwd = w_event_jaxsnn.build("event_forward", cfg)
    fwd["block"](fwd["forward"]())
    counts = fwd["rates"]()  # writes the spike file
    assert counts[0] > 0 and counts[1] > 0  # hidden and output neurons spike

    # an independent producer of the same file: the float64 reference simulator
    p, neuron, data = _event_setup()
    columns = {key: [] for key in ("t1", "i1", "t2", "i2")}
    for sample in range(TINY_EVENT["batch"]):
        t1, i1, t2, i2 = _reference_forward(data["w1"], data["w2"], data["times"][sample], data["idx"][sample],
                                            neuron, p["t_max"])
        for key, values, capacity, fill in (("t1", t1, cfg["capacity_hidden"], np.inf), ("i1", i1, cfg["capacity_hidden"], -1),
                                            ("t2", t2, cfg["capacity_output"], np.inf), ("i2", i2, cfg["capacity_output"], -1)):
            columns[key].append(_padded(values, capacity, fill))
    reference_npz = str(tmp_path / "reference.npz")
    np.savez(reference_npz, **{key: np.stack(rows) for key, rows in columns.items()})

    agreement = event_common.compare_spikes(cfg["out"], reference_npz)
    for layer in ("hidden", "output"):
        assert agreement[layer]["spikes"] >= 2, agreement  # the comparison saw spikes
        assert agreement[layer]["spikes_only_in_one"] == 0, agreement
        # float32 against float64: 1e-9 s measured, spike times ~5e-3 s
        assert agreement[layer]["max_abs_time_diff_s"] < 1e-7, agreement

    # and the comparison sees a shifted spike and a missing one
    changed = {key: np.array(value) for key, value in np.load(reference_npz).items()}
    changed["t1"][0, 0] += 1e-4
    changed["t2"][1, 0], changed["i2"][1, 0] = np.inf, -1
    changed_npz = str(tmp_path / "changed.npz")
    np.savez(changed_npz, **changed)
    difference = event_common.compare_spikes(reference_npz, changed_npz)
    assert difference["hidden"]["max_abs_time_diff_s"] == pytest.approx(1e-4, rel=1e-6)
    assert difference["output"]["spikes_only_in_one"] == 1 and difference["hidden"]["spikes_only_in_one"] == 0


def test_eventprop_gradient_file_matches_float64_finite_differences(tmp_path):
    """The gradient the eventprop benchmark saves (and compares with upstream's) is the
    gradient of its loss: central finite differences (step 1e-6) of the loss computed with the
    float64 reference simulator along random directions of both weight matrices agree with
    the saved gradient to 1e-3 of |gradient| |direction|."""
    import event_common
    import w_event_jaxsnn

    cfg = event_common.worker_config(TINY_EVENT, "jaxsnn", str(tmp_path / "jaxsnn.npz"), kernel="quadratic")
    train = w_event_jaxsnn.build("eventprop", cfg)
    (params, _), loss = train["block"](train["step"]())
    assert np.isfinite(float(loss))
    before = harness.event_data(TINY_EVENT)["w1"]
    after = np.asarray(params[0]["weight"])
    assert np.all(np.isfinite(after)) and not np.array_equal(after, before)  # a real update
    train["rates"]()  # writes loss and gradients, as the benchmark does
    saved = np.load(cfg["out"])
    gradient = [np.float64(saved["g1"]), np.float64(saved["g2"])]

    p, neuron, data = _event_setup()

    def reference_loss(w1, w2):
        total = 0.0
        for sample in range(TINY_EVENT["batch"]):
            _, _, t2, i2 = _reference_forward(w1, w2, data["times"][sample], data["idx"][sample], neuron, p["t_max"])
            first = np.array([np.min(t2[i2 == k], initial=np.inf) for k in range(3)])
            error = (np.minimum(first, 2 * p["tau_mem"]) - data["targets"][sample]) / p["tau_mem"]
            total += float(np.sum(error**2))
        return total / TINY_EVENT["batch"]

    weights = [np.float64(data["w1"]), np.float64(data["w2"])]
    assert float(saved["loss"]) == pytest.approx(reference_loss(*weights), rel=1e-5)
    # every weight that can matter does: the output neurons fire, most hidden ones too
    assert np.count_nonzero(gradient[1]) >= gradient[1].size // 2 and np.count_nonzero(gradient[0]) > 0
    rng = np.random.default_rng(0)
    step = 1e-6
    for _ in range(3):
        direction = [rng.standard_normal(w.shape) for w in weights]
        plus = reference_loss(*(w + step * d for w, d in zip(weights, direction)))
        minus = reference_loss(*(w - step * d for w, d in zip(weights, direction)))
        numeric = (plus - minus) / (2 * step)
        analytic = sum(float(np.sum(g * d)) for g, d in zip(gradient, direction))
        scale = np.sqrt(sum(np.sum(g**2) for g in gradient) * sum(np.sum(d**2) for d in direction))
        assert abs(analytic - numeric) < 1e-3 * scale, (analytic, numeric, scale)

    # the benchmark's comparison of two gradient files sees a change of one entry
    changed = dict(np.load(cfg["out"]))
    changed["g2"] = changed["g2"].copy()
    changed["g2"][0, 0] += 0.5
    changed_npz = str(tmp_path / "changed.npz")
    np.savez(changed_npz, **changed)
    difference = event_common.compare_gradients(cfg["out"], changed_npz)
    assert difference["max_abs_grad_diff"] == pytest.approx(0.5, rel=1e-6)
    assert difference["loss"][0] == difference["loss"][1]


def test_event_data_is_identical_for_every_library():
    """Every library's worker gets its own configuration (capacities, output file) and must
    still build the same inputs and weights; the keys that define the data do change it."""
    import event_common

    shared = dict(TINY_EVENT, dup=2)
    configs = [event_common.worker_config(shared, lib, f"/unused/{lib}.npz") for lib in event_common.LIBS]
    assert configs[0]["capacity_hidden"] != configs[1]["capacity_hidden"]  # the configurations differ
    first, second = (harness.event_data(config) for config in configs)
    assert set(first) == set(second) == {"times", "idx", "labels", "targets", "w1", "w2"}
    assert all(np.array_equal(first[key], second[key]) for key in first)
    assert np.all(np.diff(first["times"], axis=1) >= 0)  # sorted per sample
    assert first["w1"].shape == (10, 6)
    for key, value in (("seed", 1), ("n_samples", 5), ("hidden", 7)):
        other = harness.event_data(dict(shared, **{key: value}))
        assert not all(np.array_equal(first[k], other[k]) for k in first), key


def test_profile_conv_runs_and_reports_every_operation(tmp_path):
    import profile_conv

    out = tmp_path / "conv.json"
    result = profile_conv.main(["--images", "2", "--size", "6", "--channels", "3", "--rounds", "1",
                                "--out", str(out)])
    assert set(result["operations"]) == {"forward", "input_gradient", "weight_gradient", "matmul_same_flops"}
    assert all(op["gflops"] > 0 for op in result["operations"].values())
    assert json.loads(out.read_text())["gflop_per_call"] == pytest.approx(2 * 2 * 36 * 9 * 9 / 1e9)


@pytest.mark.extended  # compiles 16 variants: about 18 s on the loaded 2-core machine
def test_profile_conv_im2col_variants_equal_xla_convolution(tmp_path):
    import profile_conv_im2col

    out = tmp_path / "im2col.json"
    result = profile_conv_im2col.main(["--images", "2", "--size", "6", "--channels", "3",
                                       "--rounds", "1", "--scan-steps", "2", "--out", str(out)])
    groups = json.loads(out.read_text())["groups"]
    assert groups == result["groups"]
    assert {g: set(v) for g, v in groups.items()} == {
        "forward": {"xla", "im2col_concat", "im2col_update", "taps", "channel_major",
                    "matmul_only"},
        "weight_gradient": {"xla", "im2col", "taps", "matmul_only"},
        "input_gradient": {"xla", "flipped_conv", "col2im"},
        "weight_gradient_in_scan": {"taps_vmapped", "xla_vmapped", "xla_folded"},
    }
    for group, variants in groups.items():
        for name, row in variants.items():
            # every way of computing it equals lax.conv_general_dilated (float32 round-off)
            assert row["max_relative_difference_to_xla"] < 1e-5, (group, name)
            assert row["min_ms"] > 0, (group, name)


@pytest.mark.parametrize("variant", ["scan", pytest.param("conv+lif", marks=pytest.mark.extended)])
def test_cnn_pool_matches_hand_written_reference(variant):
    import w_jax_handwritten
    import w_jaxsnn

    # conv -> LIF -> max-pool -> conv -> LIF -> max-pool -> dense -> LIF; "scan" is the benchmark's
    # serial(ConvLIF, MaxPool, ConvLIF, MaxPool, Flatten, Dense, LIF), "conv+lif" the unfused one.
    cfg = dict(TINY_CNN, size=8, pool=2, classes=3)
    ours = w_jaxsnn.build("cnn_pool", dict(cfg, variant=variant))
    ref = w_jax_handwritten.build("cnn_pool", dict(cfg))
    out = np.asarray(ours["block"](ours["forward"]()))
    np.testing.assert_array_equal(out, np.asarray(ref["forward"]()))
    rates = ours["rates"]()
    assert rates == pytest.approx(ref["rates"](), abs=0)
    assert all(0 < r < 1 for r in rates)  # every layer of the tiny network spikes
    grads = [g["weight"] for g in ours["block"](ours["backward"]()) if "weight" in g]
    k1, k2, w3 = (np.asarray(g) for g in ref["block"](ref["backward"]()))
    expected = [k1.transpose(2, 3, 1, 0), k2.transpose(2, 3, 1, 0), harness.hwc_rows(w3, cfg)]
    assert len(grads) == 3
    for got, want in zip(grads, expected, strict=True):
        assert np.count_nonzero(want) > want.size // 2
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5 * np.max(np.abs(want)))
