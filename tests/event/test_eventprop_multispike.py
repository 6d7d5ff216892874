"""The closed-form EventProp backward of feed-forward layers whose neurons spike several times.

``multispike_eventprop_gradients`` must give the gradients of the scan backward
(``eventprop_gradients``) to rounding (float64, rtol 1e-10; measured ~3e-15) on networks where
neurons really do spike several times, with and without refractory periods and initial states,
and handle padding, overflowing buffers and silent neurons like the scan. Its agreement with
float64 finite differences of the reference simulator is checked in
``test_eventprop.py::test_gradients_match_finite_differences`` (rtol 1e-4, multi-spike networks).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, note, settings
from hypothesis import strategies as st

from jaxsnn import spikes as spikes_lib
from jaxsnn.event import LIF, LIFParameters, LIFState
from jaxsnn.event.eventprop import eventprop_gradients, multispike_eventprop_gradients, simulate_eventprop
from jaxsnn.spikes import Spikes
from jaxsnn.testing import strategies as jst

N_IN, SIZE, K_IN = 4, 5, 12
TAU_SYN = 5e-3
T_MAX = 6 * TAU_SYN
# The default run compares one tau ratio; the other two are the extended tier (``pytest -m extended``).
RATIOS = [pytest.param(1.0, marks=pytest.mark.extended), 2.0, pytest.param(1.5, marks=pytest.mark.extended)]


def _assert_close(got, expected, name):
    got, expected = np.asarray(got), np.asarray(expected)
    assert np.all(np.isfinite(got)), f"{name}: non-finite gradient {got}"
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    # rtol 1e-10 on each entry; entries that cancel to ~0 are compared at 1e-13 of the largest.
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13 * scale, err_msg=name)


def _loss(result, coefficients):
    """Weighted spike times plus weighted final membrane and current (every cotangent nonzero)."""
    capacity = result.spikes.capacity
    valid = result.spikes.idx >= 0
    spike_term = jnp.sum(jnp.where(valid, coefficients[:capacity] * result.spikes.time, 0.0))
    state = result.final_state
    return (spike_term + jnp.sum(coefficients[capacity:capacity + SIZE] * state.v)
            + jnp.sum(coefficients[capacity + SIZE:capacity + 2 * SIZE] * state.current))


@functools.partial(jax.jit, static_argnames=("capacity", "backward"))
def _grads(weight, times, idx, initial_state, neuron, coefficients, *, capacity, backward):
    """Gradients w.r.t. weights, input times and the initial state, and the forward spikes.

    The neuron parameters are traced (one compilation for every drawn neuron); with traced
    ``t_ref`` an explicit ``backward="parallel"`` resolves to the multi-spike closed form.
    """

    def loss(weight, times, initial_state):
        result = simulate_eventprop(
            weight, Spikes(times, idx), neuron, capacity=capacity, t_max=T_MAX,
            initial_state=initial_state, algorithm="scan", backward=backward,
        )
        return _loss(result, coefficients), result.spikes

    return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(weight, times, initial_state)


@st.composite
def _initial_states(draw, neuron):
    """No initial state, or one below threshold, with some neurons refractory at ``t = 0``."""
    if not draw(st.booleans()):
        return None
    v_th, v_leak = float(neuron.v_th), float(neuron.v_leak)
    v = draw(jst.weights((SIZE,), low=v_leak - 0.5, high=v_th - 0.05))
    current = draw(jst.weights((SIZE,), low=-1.0, high=2.0))
    refractory = draw(jst.weights((SIZE,), low=-0.2 * T_MAX, high=1.2 * T_MAX))
    return LIFState(v=v, current=current, refractory_until=refractory)


@pytest.mark.parametrize("ratio", RATIOS)
@settings(max_examples=4, deadline=None)
@given(data=st.data())
def test_multispike_backward_equals_scan(ratio, data):
    """Weights, input times, initial v, current and refractory end: closed form == scan (rtol 1e-10)."""
    with jax.enable_x64(True):
        _equals_scan(ratio, data)


def _equals_scan(ratio, data):
    neuron = data.draw(jst.lif_parameters("event", tau_ratio=ratio, tau_syn=TAU_SYN))
    neuron = neuron._replace(t_ref=data.draw(st.sampled_from([0.0, 0.2 * TAU_SYN, TAU_SYN])))
    weight = jnp.asarray(data.draw(jst.weights((N_IN, SIZE), low=-1.0, high=8.0)))
    inputs = data.draw(jst.spikes(N_IN, K_IN, 0.8 * T_MAX, min_events=2, dtype=np.float64))
    initial_state = data.draw(_initial_states(neuron))
    capacity = data.draw(st.sampled_from([3, 8 * SIZE]))  # overflowing and roomy buffers
    coefficients = jnp.asarray(data.draw(jst.weights((capacity + 2 * SIZE,), low=-1.0, high=1.0)))
    # |c| >= 0.1: an all-zero draw (hypothesis finds it) has zero gradients and compares nothing
    coefficients = coefficients + jnp.where(coefficients >= 0, 0.1, -0.1)
    args = (weight, jnp.asarray(inputs.time), jnp.asarray(inputs.idx), initial_state, neuron, coefficients)
    scan, scan_spikes = _grads(*args, capacity=capacity, backward="scan")
    closed, closed_spikes = _grads(*args, capacity=capacity, backward="parallel")
    idx = np.asarray(scan_spikes.idx)
    most = int(np.max(np.bincount(idx[idx >= 0], minlength=SIZE)))
    note(f"{int(np.sum(idx >= 0))} output spikes, at most {most} per neuron")
    # The point of this test is neurons that spike again: hypothesis must find such networks.
    assume(most >= 2)
    np.testing.assert_array_equal(closed_spikes.idx, scan_spikes.idx)
    grad_weight, grad_times, grad_state = closed
    _assert_close(grad_weight, scan[0], "weight")
    _assert_close(grad_times, scan[1], "input times")
    assert np.any(np.asarray(scan[0]) != 0) and np.any(np.asarray(scan[1]) != 0)
    if initial_state is not None:
        for name, got, expected in zip(LIFState._fields, grad_state, scan[2]):
            _assert_close(got, expected, f"initial {name}")


def test_per_neuron_parameters_and_output_time_gradients(x64):
    """Per-neuron constants, many spikes per neuron; ``output_times`` (dL/dt_k with the reset term) too."""
    rng = np.random.default_rng(11)
    neuron = LIFParameters(
        tau_syn=rng.uniform(3e-3, 6e-3, SIZE), tau_mem=rng.uniform(3e-3, 1.2e-2, SIZE),
        v_th=rng.uniform(0.8, 1.3, SIZE), v_leak=rng.uniform(-0.2, 0.2, SIZE), v_reset=-0.3,
        t_ref=rng.uniform(0.0, 2e-3, SIZE),
    )
    weight = jnp.asarray(rng.uniform(0.0, 6.0, (N_IN, SIZE)))
    inputs = spikes_lib.from_lists(np.sort(rng.uniform(0, 0.02, 10)), rng.integers(0, N_IN, 10), capacity=K_IN,
                                   dtype=jnp.float64)
    result = simulate_eventprop(weight, inputs, neuron, capacity=64, t_max=T_MAX, algorithm="scan")
    idx = np.asarray(result.spikes.idx)
    assert np.max(np.bincount(idx[idx >= 0])) >= 3, "the network must spike several times per neuron"
    cotangent = jnp.asarray(rng.normal(size=64))
    final = (jnp.asarray(rng.normal(size=SIZE)), jnp.asarray(rng.normal(size=SIZE)))
    args = (weight, inputs, result.spikes, neuron, T_MAX, cotangent)
    expected = jax.jit(eventprop_gradients, static_argnames=("refractory",))(
        *args, final_state_cotangent=final, refractory=True)
    got = jax.jit(multispike_eventprop_gradients)(*args, final_state_cotangent=final)
    for name in ("weight", "input_times", "initial_v", "initial_current", "output_times"):
        _assert_close(getattr(got, name), getattr(expected, name), name)
    assert np.any(np.asarray(got.output_times)[idx >= 0] != np.asarray(cotangent)[idx >= 0]), \
        "the reset term must change dL/dt_k of spikes followed by another"


def test_silent_neurons_padding_and_late_inputs_give_the_scans_zeros_without_nan(x64):
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, t_ref=1e-3)
    weight = jnp.zeros((N_IN, SIZE)).at[:, 0].set(6.0)  # only neuron 0 can spike, several times
    inputs = spikes_lib.from_lists([1e-3, 2e-3, 3e-3, 1.5 * T_MAX], [0, 1, 0, 2], capacity=K_IN, dtype=jnp.float64)
    result = simulate_eventprop(weight, inputs, neuron, capacity=8, t_max=T_MAX, algorithm="scan")
    assert int(result.spikes.count()) >= 2 and set(np.asarray(result.spikes.idx)[:2]) == {0}
    cotangent = jnp.where(result.spikes.idx >= 0, 1.0, jnp.nan)
    args = (weight, inputs, result.spikes, neuron, T_MAX, cotangent)
    expected = jax.jit(eventprop_gradients)(*args)
    got = jax.jit(multispike_eventprop_gradients)(*args)
    for name in ("weight", "input_times", "initial_v", "initial_current", "output_times"):
        value = np.asarray(getattr(got, name))
        assert np.all(np.isfinite(value)), name
        _assert_close(value, getattr(expected, name), name)
    assert np.all(np.asarray(got.weight)[:, 1:] == 0), "silent neurons get zero weight gradients"
    assert np.all(np.asarray(got.input_times)[3:] == 0), "padding and late inputs get zero"
    assert np.asarray(got.weight)[0, 0] != 0


def test_layer_gradient_under_vmap_and_jit_equals_the_scan_layer(x64):
    """``LIF`` with several spikes per neuron: ``backward="parallel"`` (closed form) equals the scan."""
    rng = np.random.default_rng(5)
    times = np.sort(rng.uniform(0, 0.02, (3, 8)), axis=1)
    batch = Spikes(jnp.asarray(times), jnp.asarray(rng.integers(0, N_IN, (3, 8)), jnp.int32))
    grads = {}
    for backward in ("parallel", "scan"):
        layer = LIF(SIZE, t_ref=5e-4, t_max=T_MAX, capacity=48, backward=backward, dtype=jnp.float64)
        _, params = layer.init(jax.random.PRNGKey(0), (N_IN,))
        params = jax.tree_util.tree_map(lambda w: 3.0 * jnp.abs(w), params)

        def loss(params, spikes):
            _, out, _ = layer.apply(params, spikes)
            return jnp.sum(jnp.where(out.idx >= 0, jnp.sin(100.0 * out.time), 0.0))

        grads[backward] = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, batch)
        counts = jax.vmap(lambda s: layer.apply(params, s)[1].count())(batch)
        assert int(jnp.max(counts)) > SIZE, "the layer must spike several times per neuron"
    for got, expected in zip(jax.tree_util.tree_leaves(grads["parallel"]), jax.tree_util.tree_leaves(grads["scan"])):
        _assert_close(got, expected, "weight")
        assert np.any(np.asarray(expected) != 0)


def test_multispike_forward_hands_its_current_table_to_the_closed_form(x64, monkeypatch):
    """With the multi-spike forward the backward reads the currents from the forward's table.

    The gradients must equal the scan's (forward and backward, rtol 1e-10), and the table must be
    what the forward actually handed over (a spy counts the calls), with refractory periods and
    an initial state, so that the currents at releases are read too.
    """
    import jaxsnn.event.eventprop as eventprop_module
    from jaxsnn.event.multispike import simulate_multispike

    calls = []
    original = eventprop_module.multispike_with_current_table

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(eventprop_module, "multispike_with_current_table", spy)
    rng = np.random.default_rng(3)
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, v_reset=-0.2, t_ref=1e-3)
    weight = jnp.asarray(rng.uniform(0.0, 6.0, (N_IN, SIZE)))
    inputs = spikes_lib.from_lists(np.sort(rng.uniform(0, 0.02, 10)), rng.integers(0, N_IN, 10), capacity=K_IN,
                                   dtype=jnp.float64)
    initial_state = LIFState(v=jnp.full((SIZE,), 0.3), current=jnp.linspace(-0.5, 1.5, SIZE),
                             refractory_until=jnp.asarray([0.0, 2e-3, 0.0, 7e-3, 0.0]))
    coefficients = jnp.asarray(rng.uniform(0.2, 1.0, 48 + 2 * SIZE))

    def grads(algorithm, backward):
        def loss(weight, times, initial_state):
            result = simulate_eventprop(weight, Spikes(times, inputs.idx), neuron, capacity=48, t_max=T_MAX,
                                        initial_state=initial_state, algorithm=algorithm, backward=backward)
            return _loss(result, coefficients), result.spikes

        return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(weight, inputs.time, initial_state)

    (expected, expected_spikes), before = grads("scan", "scan"), len(calls)
    (got, got_spikes), after = grads("multispike", "parallel"), len(calls)
    assert before == 0 and after == 1, "the multi-spike forward must hand its current table over"
    idx = np.asarray(got_spikes.idx)
    assert np.max(np.bincount(idx[idx >= 0])) >= 3, "the network must spike several times per neuron"
    np.testing.assert_array_equal(idx, expected_spikes.idx)
    for name, got_leaf, expected_leaf in zip(("weight", "input times", "initial state"), got, expected):
        for leaf_got, leaf_expected in zip(jax.tree_util.tree_leaves(got_leaf), jax.tree_util.tree_leaves(expected_leaf)):
            _assert_close(leaf_got, leaf_expected, name)
    assert np.any(np.asarray(got[0]) != 0)

    # The closed form itself, with and without the table: the same gradients.
    result, table = simulate_multispike(weight, inputs, neuron, jnp.asarray(T_MAX), initial_state, capacity=48,
                                        rounds=48, method="quadratic", with_current_table=True)
    assert table.shape == (K_IN + 1, SIZE)
    cotangent = jnp.asarray(rng.normal(size=48))
    args = (weight, inputs, result.spikes, neuron, T_MAX, cotangent)
    plain = jax.jit(multispike_eventprop_gradients)(*args, initial_state=initial_state)
    tabled = jax.jit(multispike_eventprop_gradients)(*args, initial_state=initial_state, current_table=table)
    for name in ("weight", "input_times", "initial_v", "initial_current", "initial_refractory_until", "output_times"):
        _assert_close(getattr(tabled, name), getattr(plain, name), name)


def test_current_table_needs_the_multispike_algorithm():
    """``multispike_with_current_table`` refuses a plan whose algorithm is not the multi-spike search."""
    from jaxsnn.event.plan import resolve_plan
    from jaxsnn.event.simulate import multispike_with_current_table

    neuron = LIFParameters(t_ref=0.0)
    for algorithm, t_ref in (("scan", 0.0), ("parallel", 2 * T_MAX)):  # parallel: one spike per neuron
        plan = resolve_plan(neuron._replace(t_ref=t_ref), T_MAX, algorithm=algorithm)
        with pytest.raises(ValueError, match="needs the 'multispike' algorithm, got '" + algorithm):
            multispike_with_current_table(plan, jnp.ones((N_IN, SIZE)), spikes_lib.empty(K_IN),
                                          neuron._replace(t_ref=t_ref), capacity=SIZE, t_max=T_MAX)
    plan = resolve_plan(neuron, T_MAX, algorithm="multispike")
    result, table = multispike_with_current_table(plan, jnp.ones((N_IN, SIZE)), spikes_lib.empty(K_IN), neuron,
                                                  capacity=SIZE, t_max=T_MAX)
    assert table.shape == (K_IN + 1, SIZE) and int(result.spikes.count()) == 0
