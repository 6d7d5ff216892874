"""Event layers: LIF, RecurrentLIF, LI, converters; properties, capacity checks, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

from jaxsnn import serial
from jaxsnn import spikes as spikes_lib
from jaxsnn.event import LI, LIF, LIFParameters, LIFState, RecurrentLIF, ToDense, ToSpikes, psp_peak
from jaxsnn.testing import properties
from jaxsnn.testing.reference import event_state_at

N_IN, SIZE, SLOTS, CAPACITY = 3, 4, 8, 24
T_MAX = 0.05
NEURON = LIFParameters(t_ref=1e-3)


def _layer(**kwargs):
    options = dict(capacity=CAPACITY, t_max=T_MAX, t_ref=1e-3, gradient="analytic")
    options.update(kwargs)
    return LIF(SIZE, **options)


LAYER = _layer()
_, PARAMS = LAYER.init(jax.random.PRNGKey(0), (N_IN,))
PARAMS = {"weight": PARAMS["weight"] + 2.0}  # strong enough that most neurons spike


def _inputs(seed, n=6, dtype=None):
    rng = np.random.default_rng(seed)
    return spikes_lib.from_lists(rng.uniform(0, 0.02, n), rng.integers(0, N_IN, n), capacity=SLOTS, dtype=dtype)


def test_init_shapes_and_default_scale():
    shape, params = LIF(120, capacity=8, t_max=T_MAX).init(jax.random.PRNGKey(1), (5,))
    assert shape == (120,) and params["weight"].shape == (5, 120)
    # Default std: threshold / (psp peak * sqrt(n_in)).
    np.testing.assert_allclose(np.std(params["weight"]), 1.0 / (0.25 * np.sqrt(5)), rtol=0.15)
    assert abs(psp_peak(1e-2, 5e-3) - 0.25) < 1e-6 and abs(psp_peak(5e-3, 5e-3) - np.exp(-1)) < 1e-6
    shape, params = RecurrentLIF(4, capacity=8, t_max=T_MAX).init(jax.random.PRNGKey(1), (3,))
    assert params["recurrent_weight"].shape == (4, 4)


def test_layer_matches_reference_and_records_overflow():
    with jax.enable_x64(True):
        params = {"weight": jnp.asarray(PARAMS["weight"], jnp.float64)}
        inputs = _inputs(1, dtype=jnp.float64)
        properties.check_matches_reference(LAYER, params, inputs, properties.event_reference(NEURON, T_MAX),
                                           rtol=0, atol=1e-9 * T_MAX)
        carry, out, record = LAYER.apply(params, inputs)
        assert not bool(record.overflow) and record.spikes is out
        assert carry.v.shape == (SIZE,)


def _tied_inputs(seed):
    """Six events in three pairs of simultaneous events from different sources (ties to permute)."""
    rng = np.random.default_rng(seed)
    times = np.repeat(np.sort(rng.uniform(0, 0.02, 3)), 2)
    first = rng.integers(0, N_IN, 3)
    idx = np.stack([first, (first + 1 + rng.integers(0, N_IN - 1, 3)) % N_IN], axis=1).reshape(-1)
    return spikes_lib.from_lists(times, idx, capacity=SLOTS)


@given(seed=st.integers(0, 1000), shift=st.floats(0.0, 0.01))
@settings(max_examples=3)
@example(seed=7, shift=3e-3)  # known to spike: independent of what hypothesis draws
def test_properties(seed, shift):
    inputs = _tied_inputs(seed)
    n_out = int(LAYER.apply(PARAMS, inputs)[1].count())
    assert n_out > 0  # the properties are checked on spikes
    properties.check_time_shift(LAYER, PARAMS, inputs, shift, t_max=T_MAX)
    # Three tie groups are permuted; every output spike is compared (the check itself fails
    # if it compared none).
    assert properties.check_simultaneous_order(LAYER, PARAMS, inputs, seed=seed, min_compared=1) == n_out
    properties.check_first_spike_monotone(LAYER, PARAMS, inputs, factor=1.5)


def test_simultaneous_inputs_permutation():
    inputs = spikes_lib.from_lists([1e-3, 1e-3, 1e-3, 4e-3], [2, 0, 1, 0], capacity=SLOTS)
    properties.check_simultaneous_order(LAYER, PARAMS, inputs, seed=0, min_compared=1)


def test_no_input_jit_vmap():
    properties.check_no_input_no_spike(LAYER, PARAMS, _inputs(0))
    properties.check_jit_equals_eager(LAYER, PARAMS, _inputs(2))
    batch = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *[_inputs(k) for k in range(3)])
    properties.check_vmap_equals_loop(LAYER, PARAMS, batch)


def test_serial_two_layers_gradient():
    net = serial(_layer(), LIF(2, capacity=8, t_max=T_MAX, gradient="analytic"))
    _, params = net.init(jax.random.PRNGKey(3), (N_IN,))
    params = [{"weight": params[0]["weight"] + 2.0}, {"weight": params[1]["weight"] + 2.0}]
    # The apply jitted once: the 11 evaluations (value, gradient, 5 coordinates x 2) reuse one
    # compilation instead of tracing the event loops eagerly each time.
    report = properties.check_gradients(jax.jit(net.apply), params, _inputs(4), rtol=1e-4, max_coordinates=5)
    assert report.checked >= 3 and report.nonzero >= 1


def test_checked_capacity_raises_with_required_capacity():
    layer = _layer(capacity=2, checked=True)
    inputs = _inputs(5)
    with pytest.raises(ValueError, match=r"capacity 2 is too small.*capacity >= \d+"):
        layer.apply(PARAMS, inputs)
    unchecked = _layer(capacity=2)
    _, _, record = unchecked.apply(PARAMS, inputs)
    assert bool(record.overflow)  # flagged, not silent
    # Under jit the same check goes through checkify.
    jitted = checkify.checkify(jax.jit(lambda p, s: layer.apply(p, s)[1]))
    error, _ = jitted(PARAMS, inputs)
    with pytest.raises(checkify.JaxRuntimeError, match="more output spikes than capacity"):
        error.throw()


def test_recurrent_layer_matches_reference():
    with jax.enable_x64(True):
        layer = RecurrentLIF(SIZE, capacity=CAPACITY, t_max=T_MAX, t_ref=1e-3, gradient="analytic")
        _, params = layer.init(jax.random.PRNGKey(2), (N_IN,))
        params = {"weight": jnp.asarray(params["weight"], jnp.float64) + 2.0,
                  "recurrent_weight": jnp.asarray(params["recurrent_weight"], jnp.float64)}
        reference = properties.event_reference(NEURON, T_MAX, recurrent_key="recurrent_weight")
        properties.check_matches_reference(layer, params, _inputs(6, dtype=jnp.float64), reference,
                                           rtol=0, atol=1e-9 * T_MAX)


def test_li_readouts_match_reference(x64):
    times = np.linspace(0.0, T_MAX, 64)
    max_layer = LI(2, t_max=T_MAX, readout="max")
    times_layer = LI(2, t_max=T_MAX, readout="times", times=times)
    shape, params = times_layer.init(jax.random.PRNGKey(0), (N_IN,))
    assert shape == (64, 2) and max_layer.init(jax.random.PRNGKey(0), (N_IN,))[0] == (2,)
    params = {"weight": jnp.asarray([[1.0, -2.0], [0.5, 1.5], [-1.0, 3.0]])}
    inputs = _inputs(7, dtype=jnp.float64)
    never = LIFParameters(v_th=1e9)  # the reference without threshold
    args = (np.asarray(params["weight"]), np.asarray(inputs.time), np.asarray(inputs.idx), never)
    _, trace, _ = times_layer.apply(params, inputs)
    want = np.stack([event_state_at(*args, t)[0] for t in times])
    np.testing.assert_allclose(trace, want, atol=1e-12)
    # Exact maximum >= every sampled value, and attained: maxima sit at input times (kinks) or
    # at smooth interior extrema, where a 2.5e-6 s grid is within ~1e-7 of the peak.
    _, vmax, _ = max_layer.apply(params, inputs)
    fine = np.sort(np.concatenate([np.linspace(0.0, T_MAX, 20001), np.asarray(inputs.time)[: int(inputs.count())]]))
    fine_trace = LI(2, t_max=T_MAX, readout="times", times=fine).apply(params, inputs)[1]
    assert np.all(np.asarray(vmax) >= np.max(np.asarray(fine_trace), axis=0) - 1e-15)
    np.testing.assert_allclose(vmax, np.max(np.asarray(fine_trace), axis=0), atol=1e-7)
    # Differentiable by plain autodiff (finite differences, rtol 1e-6).
    def objective(w):
        return jnp.sum(max_layer.apply({"weight": w}, inputs)[1])
    grad = jax.grad(objective)(params["weight"])
    e = jnp.zeros((N_IN, 2)).at[1, 1].set(1e-6)
    fd = (objective(params["weight"] + e) - objective(params["weight"] - e)) / 2e-6
    np.testing.assert_allclose(grad[1, 1], fd, rtol=1e-6)


def test_li_with_leak_and_initial_state_matches_reference(x64):
    """``v_leak != 0`` and a charged initial state: both readouts against the reference."""
    v_leak = 0.3
    times = np.linspace(0.0, T_MAX, 41)
    params = {"weight": jnp.asarray([[1.0, -2.0], [0.5, 1.5], [-1.0, 3.0]])}
    inputs = _inputs(9, dtype=jnp.float64)
    carry = LIFState(jnp.asarray([0.8, -0.1]), jnp.asarray([1.0, -0.5]), jnp.full((2,), -jnp.inf))
    never = LIFParameters(v_th=1e9, v_leak=v_leak, v_reset=v_leak)
    args = (np.asarray(params["weight"]), np.asarray(inputs.time), np.asarray(inputs.idx), never)
    initial = (np.asarray(carry.v), np.asarray(carry.current))
    want = np.stack([event_state_at(*args, t, initial_state=initial)[0] for t in times])
    layer = LI(2, t_max=T_MAX, readout="times", times=times, v_leak=v_leak)
    final, trace, _ = layer.apply(params, inputs, carry=carry)
    np.testing.assert_allclose(trace, want, rtol=0, atol=1e-12)
    want_end = event_state_at(*args, T_MAX, initial_state=initial)
    np.testing.assert_allclose(final.v, want_end[0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(final.current, want_end[1], rtol=0, atol=1e-12)
    # The maximum readout: at least every sampled value, and attained (grid of 2.5e-5 s plus
    # the input times, where the maxima of a piecewise-smooth membrane can sit).
    fine = np.sort(np.concatenate([np.linspace(0.0, T_MAX, 2001), np.asarray(inputs.time)[: int(inputs.count())]]))
    sampled = np.stack([event_state_at(*args, t, initial_state=initial)[0] for t in fine])
    _, vmax, _ = LI(2, t_max=T_MAX, v_leak=v_leak).apply(params, inputs, carry=carry)
    assert np.all(np.asarray(vmax) >= sampled.max(axis=0) - 1e-15)
    np.testing.assert_allclose(vmax, sampled.max(axis=0), atol=1e-5)
    # Without input and from rest the readout stays at v_leak.
    properties.check_no_input_no_spike(layer, params, inputs, rest_value=v_leak)


SPLIT, END = 0.012, 0.03


def _chunk_inputs(seed):
    rng = np.random.default_rng(seed)
    return spikes_lib.from_lists(rng.uniform(0, 0.025, 10), rng.integers(0, N_IN, 10), capacity=12,
                                 dtype=jnp.float64)


def _hidden(kind, t_max):
    options = dict(capacity=64, t_max=t_max, t_ref=2e-3, tau_mem=7.5e-3, weight_mean=1.5,
                   dtype=jnp.float64)
    if kind == "RecurrentLIF":
        return RecurrentLIF(SIZE, recurrent_mean=0.3, **options)
    return LIF(SIZE, **options)


@pytest.mark.parametrize("kind", ["LIF", "RecurrentLIF"])
def test_event_layers_continue_through_carry_inside_serial(x64, kind):
    """Two windows chained through serial's carry equal one window (spikes and final carries)."""
    def network(t_max):
        return serial(_hidden(kind, t_max), LIF(2, capacity=16, t_max=t_max, t_ref=1e-3, weight_mean=2.0,
                                                dtype=jnp.float64))

    first, second, whole = network(SPLIT), network(END - SPLIT), network(END)
    _, params = whole.init(jax.random.PRNGKey(4), (N_IN,))
    inputs = _chunk_inputs(5)
    properties.check_chunked_equals_whole(first, params, inputs, SPLIT, second_layer=second, whole_layer=whole,
                                          rtol=0, atol=1e-12, min_compared=10)
    # Not vacuous: both layers spike in both chunks, and a refractory period crosses the split.
    carry, _, record = first.apply(params, spikes_lib.from_lists(
        *[np.asarray(x)[np.asarray(inputs.time) <= SPLIT] for x in inputs], capacity=12, dtype=jnp.float64))
    _, _, record_whole = whole.apply(params, inputs)
    for layer in range(2):
        assert not bool(record_whole[layer].overflow) and not bool(record[layer].overflow)
        early = np.asarray(record_whole[layer].spikes.time)
        assert np.sum(early <= SPLIT) > 0 and np.sum((early > SPLIT) & np.isfinite(early)) > 0
    assert np.any(np.asarray(carry[0].refractory_until) > 0)


def test_li_continues_through_carry_inside_serial(x64):
    """LIF -> LI(readout="times") and LIF -> LI(readout="max") in two windows equal one window."""
    times = np.linspace(0.0, END, 61)
    inputs = _chunk_inputs(6)
    early = np.asarray(inputs.time) <= SPLIT
    part1 = spikes_lib.from_lists(np.asarray(inputs.time)[early], np.asarray(inputs.idx)[early], capacity=12,
                                  dtype=jnp.float64)
    late = early | (np.asarray(inputs.idx) < 0)
    part2 = spikes_lib.from_lists(np.asarray(inputs.time)[~late] - SPLIT, np.asarray(inputs.idx)[~late],
                                  capacity=12, dtype=jnp.float64)

    def network(t_max, readout, readout_times=None):
        return serial(_hidden("LIF", t_max), LI(2, t_max=t_max, v_leak=0.2, readout=readout, times=readout_times,
                                                dtype=jnp.float64))

    _, params = network(END, "max").init(jax.random.PRNGKey(7), (N_IN,))
    whole_carry, whole, _ = network(END, "times", times).apply(params, inputs)
    carry, out1, _ = network(SPLIT, "times", times[times <= SPLIT]).apply(params, part1)
    carry2, out2, _ = network(END - SPLIT, "times", times[times > SPLIT] - SPLIT).apply(params, part2, carry=carry)
    np.testing.assert_allclose(np.concatenate([out1, out2]), whole, rtol=0, atol=1e-12)
    for got, want in zip(carry2, whole_carry):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert float(np.ptp(np.asarray(whole))) > 0.1  # the readout moves
    _, max1, _ = network(SPLIT, "max").apply(params, part1)
    _, max2, _ = network(END - SPLIT, "max").apply(params, part2, carry=carry)
    _, max_whole, _ = network(END, "max").apply(params, inputs)
    np.testing.assert_allclose(np.maximum(max1, max2), max_whole, rtol=0, atol=1e-12)


def test_converters_roundtrip_in_serial():
    # Times at bin centres, and ToSpikes places events at bin centres (offset dt/2).
    net = serial(ToDense(N_IN, dt=1e-3, n_steps=50), ToSpikes(dt=1e-3, capacity=SLOTS, offset=5e-4))
    shape, params = net.init(jax.random.PRNGKey(0), (N_IN,))
    assert shape == (N_IN,)
    inputs = spikes_lib.from_lists([1.5e-3, 5.5e-3, 7.5e-3], [0, 2, 1], capacity=SLOTS)
    _, out, _ = net.apply(params, inputs)
    np.testing.assert_allclose(out.time[:3], [1.5e-3, 5.5e-3, 7.5e-3], rtol=1e-6)
    np.testing.assert_array_equal(out.idx[:3], [0, 2, 1])
    dense_shape, _ = ToDense(N_IN, dt=1e-3, n_steps=50).init(jax.random.PRNGKey(0), (N_IN,))
    assert dense_shape == (50, N_IN)


@pytest.mark.parametrize(
    "build,error,match",
    [
        (lambda: ToDense(N_IN, dt=0.0, n_steps=5), ValueError, "dt must be finite and > 0"),
        (lambda: ToDense(N_IN, dt=1e-3, n_steps=0), ValueError, "n_steps must be a positive integer"),
        (lambda: ToDense(2.0, dt=1e-3, n_steps=5), TypeError, "n_neurons must be a positive integer"),
        (lambda: ToSpikes(dt=1e-3, capacity=1.5), TypeError, "capacity must be a positive integer"),
        (lambda: ToDense(N_IN, dt=1e-3, n_steps=5).init(jax.random.PRNGKey(0), (N_IN + 1,)), ValueError,
         "ToDense was built for 3 neurons"),
        (lambda: ToSpikes(dt=1e-3, capacity=4).init(jax.random.PRNGKey(0), (N_IN,)), ValueError,
         r"ToSpikes takes inputs of shape \(time, n_neurons\)"),
    ],
)
def test_converter_errors(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_external_requires_eventprop():
    with pytest.raises(ValueError, match="external spikes.*eventprop"):
        LAYER.apply(PARAMS, _inputs(0), external=_inputs(1))


def test_eventprop_dispatch_matches_analytic_forward():
    layer = _layer(gradient="eventprop")
    inputs = _inputs(8)
    _, analytic, _ = LAYER.apply(PARAMS, inputs)
    _, adjoint, _ = layer.apply(PARAMS, inputs)
    np.testing.assert_array_equal(adjoint.idx, analytic.idx)
    np.testing.assert_allclose(adjoint.time, analytic.time, rtol=1e-6)


@pytest.mark.parametrize(
    "factory,kwargs,match",
    [
        (LIF, dict(capacity=0), "capacity must be a positive integer"),
        (LIF, dict(v_th=np.ones(SIZE + 1)), r"neuron.v_th must be a scalar or have shape \(3,\)"),
        (RecurrentLIF, dict(kernel="lambertw"), "kernel='lambertw' needs tau_mem == tau_syn"),
        (LI, dict(v_leak=[0.0, 0.1]), r"neuron.v_leak must be a scalar or have shape \(3,\)"),
        (LIF, dict(tau_syn=0.0), "tau_syn"),
        (LIF, dict(tau_mem=-1e-3), "tau_mem"),
        (LIF, dict(v_th=0.0, v_reset=0.5), "v_th must be > v_reset"),
        (LIF, dict(t_max=-1.0), "t_max"),
        (LIF, dict(kernel="euler"), "kernel must be one of"),
        (LIF, dict(gradient="surrogate"), "gradient must be one of"),
        (LI, dict(readout="mean"), "readout must be one of"),
        (LI, dict(readout="times"), "needs times"),
        (LI, dict(readout="times", times=[0.0, 1.0]), "within"),
    ],
)
def test_constructor_errors(factory, kwargs, match):
    options = dict(t_max=T_MAX) if factory is LI else dict(capacity=4, t_max=T_MAX)
    options.update(kwargs)
    with pytest.raises(ValueError, match=match):
        factory(3, **options)


def test_apply_errors_name_the_problem():
    with pytest.raises(ValueError, match="n_neurons"):
        LAYER.apply(PARAMS, spikes_lib.from_lists([1e-3], [3], capacity=SLOTS))  # idx out of range
    with pytest.raises(ValueError, match="not sorted"):
        LAYER.apply(PARAMS, spikes_lib.Spikes(jnp.asarray([2e-3, 1e-3]), jnp.asarray([0, 1], jnp.int32)))
    with pytest.raises(ValueError, match="cannot take input shape"):
        serial(LAYER).init(jax.random.PRNGKey(0), (8, N_IN))


@pytest.mark.parametrize("single_spike", [True, False])
def test_layer_algorithm_and_backward_options_reach_the_plan_and_agree(monkeypatch, x64, single_spike):
    """``LIF(algorithm=..., backward=...)``: the layer runs the plan it was given (recorded at the
    simulation call), and every choice gives the same spikes and EventProp gradients."""
    import jaxsnn.event.layers as layers_module

    t_ref = 2 * T_MAX if single_spike else 1e-3
    choices = ([("parallel", "parallel"), ("parallel", "scan"), ("scan", "scan")] if single_spike
               else [("multispike", "scan"), ("scan", "scan")])
    rng = np.random.default_rng(3)
    spikes = spikes_lib.from_lists(np.sort(rng.uniform(0, 0.02, 6)), rng.integers(0, N_IN, 6),
                                   capacity=SLOTS, dtype=jnp.float64)
    seen = []
    original = layers_module.simulate_eventprop_planned

    def recording(plan, *args, **kwargs):
        seen.append((plan.algorithm, plan.backward))
        return original(plan, *args, **kwargs)

    monkeypatch.setattr(layers_module, "simulate_eventprop_planned", recording)
    results = []
    for algorithm, backward in choices:
        init, apply = LIF(SIZE, t_ref=t_ref, capacity=CAPACITY, t_max=T_MAX, algorithm=algorithm,
                          backward=backward)
        _, params = init(jax.random.PRNGKey(0), (N_IN,))
        params = {"weight": params["weight"] + 2.0}

        def loss(params):
            out = apply(params, spikes)[1]
            return jnp.sum(jnp.where(out.idx >= 0, out.time * (1.0 + out.idx), 0.0)), out

        (value, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
        assert seen[-1] == (algorithm, backward)
        results.append((out, grads["weight"]))
    first_out, first_grad = results[0]
    assert int(first_out.count()) > 0 and np.any(np.asarray(first_grad) != 0)
    for out, grad in results[1:]:
        np.testing.assert_array_equal(out.idx, first_out.idx)
        np.testing.assert_allclose(out.time, first_out.time, rtol=0, atol=1e-12 * T_MAX)
        np.testing.assert_allclose(grad, first_grad, rtol=1e-9, atol=1e-12)


def test_layer_algorithm_and_backward_errors():
    """Choices that are not exact for the layer, unknown names, and backward with the analytic
    gradient are refused when the layer is built, naming the fix."""
    with pytest.raises(ValueError, match="algorithm"):
        LIF(SIZE, t_ref=1e-3, capacity=CAPACITY, t_max=T_MAX, algorithm="parallel")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        LIF(SIZE, capacity=CAPACITY, t_max=T_MAX, algorithm="fast")
    with pytest.raises(ValueError, match="backward must be one of"):
        LIF(SIZE, capacity=CAPACITY, t_max=T_MAX, backward="fast")
    with pytest.raises(ValueError, match="gradient='eventprop'"):
        LIF(SIZE, capacity=CAPACITY, t_max=T_MAX, gradient="analytic", backward="scan")
    with pytest.raises(ValueError, match="backward"):
        RecurrentLIF(SIZE, t_ref=2 * T_MAX, capacity=CAPACITY, t_max=T_MAX, backward="parallel")
