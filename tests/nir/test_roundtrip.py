"""Writing: ``from_nir(to_nir(net))`` reproduces every jaxsnn discrete layer exactly, written files
pass NIR's type check, and event layers are written as the exact ODE."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jax.example_libraries import stax

import jaxsnn
import jaxsnn.nir as jnir
from jaxsnn.discrete import LI, LIF, Conv, Dense, RecurrentLIF
from jaxsnn.testing import strategies

nir = pytest.importorskip("nir")
DT = 1e-3
KW = dict(tau_syn=5e-3, tau_mem=1e-2, dt=DT)


def W(scale=1.0, seed=0):
    """A NumPy weight initialiser (``scale * N(0, 1) / sqrt(fan_in)``): no jax.random
    compilation per weight shape, which dominates these tests' time otherwise."""

    def init(key, shape, dtype=jnp.float32):
        rng = np.random.RandomState(seed + int(np.prod(shape)))
        fan_in = int(np.prod(shape[:-1]))
        return jnp.asarray(rng.randn(*shape) * scale / np.sqrt(fan_in), dtype)

    return init


def B(high=0.5, seed=1):
    """A NumPy bias initialiser: uniform in [0, high)."""

    def init(key, shape, dtype=jnp.float32):
        return jnp.asarray(np.random.RandomState(seed).uniform(0.0, high, shape), dtype)

    return init


def spikes_in(recording):
    return sum(float(np.sum(np.asarray(r.spikes))) for r in recording if hasattr(r, "spikes"))


def round_trip(net, in_shape, x, channels_last=False, tmp_path=None):
    """Run ``net`` and ``from_nir(to_nir(net))`` (through a file if ``tmp_path``); return both."""
    _, params = net.init(jax.random.PRNGKey(3), in_shape)
    graph = jnir.to_nir(net, params, in_shape, dt=DT)
    source = graph
    if tmp_path is not None:
        source = tmp_path / "net.nir"
        nir.write(source, graph)
        nir.read(source)  # NIR's own type check accepts the file
    layer, imported = jnir.from_nir(source, dt=DT)
    _, expected, recording = jax.jit(net.apply)(params, x)
    nir_input = np.transpose(x, (0, 3, 1, 2)) if channels_last else x
    _, got, nir_recording = jax.jit(layer.apply)(imported, jnp.asarray(nir_input))
    expected = np.asarray(expected)
    if expected.ndim == 4:
        expected = np.transpose(expected, (0, 3, 1, 2))
    return expected, np.asarray(got), recording, nir_recording, graph


def bernoulli(shape, p=0.4, seed=1, scale=1.0):
    return (np.random.RandomState(seed).rand(*shape) < p).astype(np.float32) * np.float32(scale)


CASES = {
    "lif-subtract": (jaxsnn.serial(LIF(8, weight_init=W(4.0), **KW)), (30, 5)),
    "lif-hard-leak-reset": (
        jaxsnn.serial(
            LIF(8, weight_init=W(4.0), reset="hard", v_leak=0.1, v_reset=-0.2, v_th=0.8, **KW)
        ),
        (30, 5),
    ),
    "dense-bias-lif-project-false": (
        jaxsnn.serial(
            Dense(8, bias=True, bias_init=B(0.5), weight_init=W(4.0)),
            LIF(8, project=False, **KW),
        ),
        (30, 5),
    ),
    "dense-no-bias-li": (
        jaxsnn.serial(Dense(6, weight_init=W(2.0)), LI(6, project=False, **KW)),
        (30, 5),
    ),
    "li-project": (
        jaxsnn.serial(LIF(8, weight_init=W(4.0), **KW), LI(3, weight_init=W(), **KW)),
        (30, 5),
    ),
    "recurrent": (
        jaxsnn.serial(RecurrentLIF(8, weight_init=W(4.0), recurrent_init=W(2.0, seed=7), **KW)),
        (30, 5),
    ),
    "recurrent-project-false": (
        jaxsnn.serial(
            Dense(8, weight_init=W(4.0)),
            RecurrentLIF(8, project=False, recurrent_init=W(2.0, seed=7), reset="hard", **KW),
        ),
        (30, 5),
    ),
    "stax-dense-flatten": (
        jaxsnn.serial(jaxsnn.stateless(stax.Dense(8, W(4.0), B(0.5))), LIF(8, project=False, **KW)),
        (30, 5),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_is_exact(case, tmp_path):
    net, in_shape = CASES[case]
    x = bernoulli(in_shape, scale=2.0)
    expected, got, recording, _, _ = round_trip(net, in_shape, x, tmp_path=tmp_path)
    np.testing.assert_array_equal(got, expected)
    assert spikes_in(recording) > 0 or case.startswith("dense-no-bias")


CONV_CASES = {
    "same-bias": dict(padding="SAME", bias=True),
    "valid-stride2": dict(padding="VALID", stride=2),
    "explicit": dict(padding=((2, 2), (1, 1))),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_round_trip_is_exact(case, tmp_path):
    conv = Conv(3, 3, weight_init=W(3.0), bias_init=B(0.5), **CONV_CASES[case])
    shape, _ = conv.init(jax.random.PRNGKey(0), (12, 7, 7, 2))
    net = jaxsnn.serial(
        conv,
        LIF(shape[1:], project=False, **KW),
        jaxsnn.stateless(stax.Flatten),
        LIF(4, weight_init=W(25.0, seed=2), **KW),
    )
    x = bernoulli((12, 7, 7, 2), scale=1.0)
    expected, got, recording, nir_recording, graph = round_trip(
        net, (12, 7, 7, 2), x, channels_last=True, tmp_path=tmp_path
    )
    np.testing.assert_array_equal(got, expected)
    # The NIR graph is channels first; the conv layer's spikes match after the transpose.
    conv_spikes = np.transpose(np.asarray(recording[1].spikes), (0, 3, 1, 2))
    np.testing.assert_array_equal(np.asarray(nir_recording["layer1_lif"].output), conv_spikes)
    assert conv_spikes.sum() > 0 and expected.sum() > 0
    assert [type(n).__name__ for n in graph.nodes.values()].count("Flatten") == 1


def test_single_state_lif_round_trip_if_available(tmp_path):
    try:
        layer = LIF(6, tau_syn=0.0, tau_mem=1e-2, dt=DT, weight_init=W(4.0))
    except ValueError:
        pytest.skip("this jaxsnn has no single-state (tau_syn=0) LIF")
    net = jaxsnn.serial(layer, LI(3, weight_init=W(), **KW))
    x = bernoulli((30, 5), scale=2.0)
    expected, got, recording, _, graph = round_trip(net, (30, 5), x, tmp_path=tmp_path)
    np.testing.assert_array_equal(got, expected)
    assert "LIF" in [type(n).__name__ for n in graph.nodes.values()]


@settings(max_examples=4, deadline=None)
@given(
    params=strategies.lif_parameters("discrete"),
    seed=st.integers(0, 2**16),
)
@example(
    params=dict(
        tau_syn=5e-3, tau_mem=5e-3, dt=1e-3, v_th=1.0, v_reset=0.0, v_leak=0.0, reset="subtract"
    ),
    seed=0,
)
def test_round_trip_is_exact_for_any_constants(params, seed):
    net = jaxsnn.serial(
        Dense(6, bias=True, bias_init=B(1.0), weight_init=W(5.0)),
        LIF(6, project=False, **params),
        RecurrentLIF(5, weight_init=W(5.0), recurrent_init=W(2.0, seed=7), **params),
    )
    x = bernoulli((25, 4), p=0.5, seed=seed, scale=3.0)
    expected, got, recording, nir_recording, _ = round_trip(net, (25, 4), x)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        np.asarray(nir_recording["layer1_lif"].output), np.asarray(recording[1].spikes)
    )
    assert spikes_in(recording) > 0


def test_write_and_read_files(tmp_path):
    net = jaxsnn.serial(LIF(5, weight_init=W(8.0, seed=4), **KW))
    _, params = net.init(jax.random.PRNGKey(0), (20, 3))
    graph = jnir.write(tmp_path / "net.nir", net, params, (20, 3), dt=DT)
    assert jnir.detect_dialect(tmp_path / "net.nir") == "jaxsnn"
    layer, imported = jnir.read(tmp_path / "net.nir", dt=DT)
    x = bernoulli((20, 3), p=0.6, scale=3.0)
    _, expected, _ = jax.jit(net.apply)(params, x)
    np.testing.assert_array_equal(jax.jit(layer.apply)(imported, x)[1], expected)
    assert float(np.sum(expected)) > 0 and set(graph.nodes) == set(
        nir.read(tmp_path / "net.nir").nodes
    )


def test_written_graph_declares_writer_and_reset():
    net = jaxsnn.serial(LIF(4, reset="subtract", weight_init=W(), **KW))
    _, params = net.init(jax.random.PRNGKey(0), (5, 3))
    graph = jnir.to_nir(net, params, (5, 3), dt=DT)
    assert graph.metadata["writer"] == "jaxsnn" and graph.metadata["dt"] == DT
    lif = graph.nodes["layer0_lif"]
    assert type(lif).__name__ == "CubaLIF" and lif.metadata["jaxsnn_reset"] == "subtract"
    np.testing.assert_allclose(lif.tau_syn, 5e-3, rtol=1e-12)
    np.testing.assert_allclose(lif.tau_mem, 1e-2, rtol=1e-12)
    np.testing.assert_array_equal(
        graph.nodes["layer0_linear"].weight, np.asarray(params[0]["weight"]).T
    )


def test_imported_layer_composes_in_serial():
    net = jaxsnn.serial(LIF(6, weight_init=W(4.0), **KW))
    _, params = net.init(jax.random.PRNGKey(0), (20, 4))
    layer, imported = jnir.from_nir(jnir.to_nir(net, params, (20, 4), dt=DT), dt=DT)
    combined = jaxsnn.serial(layer, LI(2, weight_init=W(), **KW))
    shape, combined_params = combined.init(jax.random.PRNGKey(1), (20, 4))
    assert shape == (20, 2)
    x = bernoulli((20, 4), scale=2.0)
    _, out, recording = combined.apply(combined_params, x)
    assert out.shape == (20, 2) and "layer0_lif" in recording[0]


# ------------------------------------------------------------------------------------------
# event layers: the exact ODE


def test_event_layers_are_written_as_the_exact_ode(tmp_path):
    from jaxsnn.event import LI as EventLI
    from jaxsnn.event import LIF as EventLIF
    from jaxsnn.event import RecurrentLIF as EventRecurrentLIF

    net = jaxsnn.serial(
        EventLIF(
            5,
            tau_syn=4e-3,
            tau_mem=9e-3,
            v_th=0.7,
            v_reset=-0.1,
            v_leak=0.05,
            capacity=16,
            t_max=0.02,
            weight_init=W(),
        ),
        EventRecurrentLIF(
            4,
            tau_syn=5e-3,
            tau_mem=1e-2,
            capacity=16,
            t_max=0.02,
            weight_init=W(),
            recurrent_init=W(seed=3),
        ),
        EventLI(2, tau_syn=5e-3, tau_mem=1e-2, t_max=0.02, weight_init=W()),
    )
    _, params = net.init(jax.random.PRNGKey(0), (3,))
    graph = jnir.to_nir(net, params, (3,), dt=1e-4)
    nir.write(tmp_path / "event.nir", graph)
    nir.read(tmp_path / "event.nir")  # NIR's type check accepts the cycle and every node
    kinds = {k: type(v).__name__ for k, v in graph.nodes.items()}
    assert kinds == {
        "input": "Input",
        "layer0_linear": "Linear",
        "layer0_lif": "CubaLIF",
        "layer1_linear": "Linear",
        "layer1_lif": "CubaLIF",
        "layer1_rec": "Linear",
        "layer2_linear": "Linear",
        "layer2_li": "CubaLI",
        "output": "Output",
    }
    lif = graph.nodes["layer0_lif"]
    for field, value in dict(
        tau_syn=4e-3, tau_mem=9e-3, v_threshold=0.7, v_reset=-0.1, v_leak=0.05, r=4e-3, w_in=1.0
    ).items():
        np.testing.assert_array_equal(getattr(lif, field), np.full(5, value), err_msg=field)
    np.testing.assert_array_equal(
        graph.nodes["layer1_rec"].weight, np.asarray(params[1]["recurrent_weight"]).T
    )
    assert ("layer1_rec", "layer1_lif") in graph.edges


def test_spec_integrates_the_event_ode_exactly(x64):
    """Reading an exported event layer with "spec" samples the exact ODE solution on the grid."""
    from jaxsnn.event import LIF as EventLIF
    from jaxsnn.event.neuron import LIFParameters
    from jaxsnn.testing.reference import event_state_at, simulate_event

    dt, n_steps = 2.5e-4, 80
    params_neuron = LIFParameters(
        tau_syn=3e-3, tau_mem=7e-3, v_th=0.5, v_reset=0.0, v_leak=0.02, t_ref=0.0
    )
    net = EventLIF(3, tau_syn=3e-3, tau_mem=7e-3, v_th=0.5, v_leak=0.02, capacity=32, t_max=0.02)
    rng = np.random.RandomState(0)
    weight = rng.uniform(-0.2, 1.2, (4, 3))
    graph = jnir.to_nir(net, {"weight": weight}, (4,), dt=dt)
    layer, imported = jnir.from_nir(graph, dt=dt, dialect="spec")
    grid = (rng.rand(n_steps, 4) < 0.08).astype(np.float64)
    grid[0, :] = 1.0
    steps, idx = np.nonzero(grid)
    times = steps * dt  # an input of step t arrives at its start, t * dt
    _, out, recording = layer.apply(imported, jnp.asarray(grid))
    v = np.asarray(recording["layer0_lif"].state.v)
    out = np.asarray(out)
    # The exact solution: the same ODE, simulated event by event in float64.
    spike_times, spike_idx = simulate_event(weight, times, idx, params_neuron, t_max=n_steps * dt)
    first_steps = [np.flatnonzero(out[:, i]) for i in range(3)]
    assert sum(len(s) for s in first_steps) > 0, "no spikes: pick larger weights"
    for i in range(3):
        reference = np.sort(spike_times[spike_idx == i])
        if len(first_steps[i]) == 0:
            assert len(reference) == 0
            continue
        first = first_steps[i][0]
        # The membrane is sampled at the end of each step: the first crossing lies in it.
        assert first * dt < reference[0] <= (first + 1) * dt + 1e-12
        # Before the first spike the sampled membrane is the exact solution.
        for t in range(first):
            v_ref, _ = event_state_at(weight, times, idx, params_neuron, (t + 1) * dt - 1e-13)
            assert abs(v[t, i] - v_ref[i]) < 1e-9


# ------------------------------------------------------------------------------------------
# files for the peers' importers (to_nir(..., dialect=peer)), read back as those importers do


def _targeted(target, reset, read_dt):
    kw = dict(tau_syn=5e-3, tau_mem=1e-2, dt=DT, reset=reset)
    net = jaxsnn.serial(
        Dense(8, bias=True, bias_init=B(0.5), weight_init=W(3.0)),
        LIF(8, project=False, **kw),
        RecurrentLIF(5, weight_init=W(5.0), recurrent_init=W(1.0, seed=7), **kw),
    )
    _, params = net.init(jax.random.PRNGKey(0), (30, 6))
    x = bernoulli((30, 6), scale=1.0)
    graph = jnir.to_nir(net, params, (30, 6), dt=DT, dialect=target)
    layer, imported = jnir.from_nir(graph, dt=read_dt)  # "auto": as that importer reads it
    _, expected, recording = jax.jit(net.apply)(params, x)
    _, got, _ = jax.jit(layer.apply)(imported, x)
    return np.asarray(expected), np.asarray(got), recording, graph


@pytest.mark.parametrize("target,read_dt", [("snntorch", 1e-4), ("norse", DT)])
def test_files_for_snntorch_and_norse_reproduce_hard_reset_layers(target, read_dt):
    expected, got, recording, graph = _targeted(target, "hard", read_dt)
    assert graph.metadata["dialect"] == target
    np.testing.assert_array_equal(got, expected)
    assert spikes_in(recording) > 0 and expected.sum() > 0


def test_files_for_spyx_reproduce_subtract_layers_one_step_later_per_layer():
    expected, got, _, _ = _targeted("spyx", "subtract", DT)
    assert expected.sum() > 0
    assert not np.array_equal(got, expected)
    np.testing.assert_array_equal(got[2:], expected[:-2])  # two spiking layers


def test_targets_refuse_what_the_importer_cannot_express():
    def params_of(net):
        return net.init(jax.random.PRNGKey(0), (5, 3))[1]

    subtract = jaxsnn.serial(LIF(4, weight_init=W(), **KW))
    with pytest.raises(
        ValueError,
        match=r"dialect='snntorch'\): LIF\(4\) resets by subtraction; "
        r"snnTorch's importer resets to zero",
    ):
        jnir.to_nir(subtract, params_of(subtract), (5, 3), dt=DT, dialect="snntorch")
    hard = jaxsnn.serial(LIF(4, reset="hard", weight_init=W(), **KW))
    with pytest.raises(ValueError, match=r"resets to v_reset; Spyx's neurons reset by subtracting"):
        jnir.to_nir(hard, params_of(hard), (5, 3), dt=DT, dialect="spyx")
    readout = jaxsnn.serial(LI(4, weight_init=W(), **KW))
    with pytest.raises(ValueError, match=r"non-spiking readout, which this library's NIR importer"):
        jnir.to_nir(readout, params_of(readout), (5, 3), dt=DT, dialect="norse")
    leaky = jaxsnn.serial(LIF(4, reset="hard", v_leak=0.1, weight_init=W(), **KW))
    with pytest.raises(ValueError, match=r"has v_leak=0.1.*write it with dialect='spec'"):
        jnir.to_nir(leaky, params_of(leaky), (5, 3), dt=DT, dialect="norse")
    with pytest.raises(ValueError, match=r"dialect must be one of"):
        jnir.to_nir(hard, params_of(hard), (5, 3), dt=DT, dialect="brian")


def test_pool_and_flatten_round_trip_if_available(tmp_path):
    discrete = jaxsnn.discrete
    if not all(hasattr(discrete, n) for n in ("SumPool", "AvgPool", "MaxPool", "Flatten")):
        pytest.skip("this jaxsnn has no discrete pooling layers")
    net = jaxsnn.serial(
        Conv(3, 3, padding=((1, 1), (1, 1)), weight_init=W(3.0), bias_init=B(0.5)),
        LIF((8, 8, 3), project=False, **KW),
        discrete.SumPool(2),
        LIF((4, 4, 3), project=False, **KW),
        discrete.AvgPool(2),
        discrete.Flatten(),
        LIF(4, weight_init=W(25.0, seed=2), **KW),
    )
    x = bernoulli((12, 8, 8, 2), scale=1.0)
    expected, got, recording, _, graph = round_trip(
        net, (12, 8, 8, 2), x, channels_last=True, tmp_path=tmp_path
    )
    np.testing.assert_array_equal(got, expected)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert {"SumPool2d", "AvgPool2d", "Flatten"} <= set(kinds)
    assert float(np.sum(np.asarray(recording[3].spikes))) > 0
    maxpool = jaxsnn.serial(Conv(3, 3, weight_init=W()), discrete.MaxPool(2))
    _, params = maxpool.init(jax.random.PRNGKey(0), (4, 8, 8, 2))
    with pytest.raises(ValueError, match=r"MaxPool\(2\) has no NIR node"):
        jnir.to_nir(maxpool, params, (4, 8, 8, 2), dt=DT)
