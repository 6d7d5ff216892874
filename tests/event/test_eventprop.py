"""EventProp gradients: exact against finite differences, autodiff, and in every edge case.

Tolerances: against float64 central finite differences of the float64 reference simulator,
rtol 1e-4 (measured errors are ~1e-7); against ``jax.grad`` through the analytic kernels,
rtol 1e-5 (measured ~1e-12).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import jaxsnn
from jaxsnn import spikes as spikes_lib
from jaxsnn.event import LI, LIF, LIFParameters, LIFState, RecurrentLIF, simulate
from jaxsnn.event.eventprop import (
    MIN_SLOPE_FRACTION,
    adjoint_kernel,
    eventprop_gradients,
    simulate_eventprop,
    state_at,
)
from jaxsnn.initializers import normal
from jaxsnn.spikes import Spikes
from jaxsnn.testing import reference
from jaxsnn.testing import strategies as jst

N_IN, SIZE, K_IN = 3, 4, 6
T_MAX = 0.05
TAU_SYN = 5e-3
FD_STEP = 1e-6


# ----------------------------------------------------------------------------------------------
# adjoint kernel


def test_adjoint_kernel_matches_two_exponentials(x64):
    s = jnp.linspace(0.0, 0.1, 101)
    for tau_mem in (2.5e-3, 4.999e-3, 5e-3, 7e-3, 5e-2):
        tau_syn = 5e-3
        if tau_mem == tau_syn:
            expected = (s / tau_mem) * jnp.exp(-s / tau_mem)
        else:
            expected = tau_syn / (tau_mem - tau_syn) * (jnp.exp(-s / tau_mem) - jnp.exp(-s / tau_syn))
        got = adjoint_kernel(s, tau_mem, tau_syn)
        np.testing.assert_allclose(got, expected, rtol=1e-6 if tau_mem == 4.999e-3 else 1e-12, atol=1e-15)


def test_adjoint_kernel_finite_for_huge_gaps():
    got = adjoint_kernel(jnp.asarray([0.0, 1.0, 1e3]), 1e-3, 1e-2)
    assert np.all(np.isfinite(np.asarray(got)))


# ----------------------------------------------------------------------------------------------
# EventProp backward pass vs float64 finite differences of the reference simulator


@functools.partial(jax.jit, static_argnames=("refractory",))
def _backward(weight, in_time, in_idx, out_time, out_idx, neuron, cotangent, *, refractory):
    return eventprop_gradients(
        weight, Spikes(in_time, in_idx), Spikes(out_time, out_idx), neuron, T_MAX, cotangent,
        refractory=refractory,
    )


def _central_difference(f, x, step):
    grad = np.full(x.shape, np.nan)
    for position in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[position] += step
        minus[position] -= step
        grad[position] = (f(plus) - f(minus)) / (2 * step)
    return grad


def _assert_matches_fd(got, fd, name):
    """rtol 1e-4 on every entry whose perturbations kept the spike pattern (no creation/deletion)."""
    ok = np.isfinite(fd)
    scale = np.max(np.abs(fd[ok]), initial=0.0) + 1e-12
    np.testing.assert_allclose(np.asarray(got)[ok], fd[ok], rtol=1e-4, atol=1e-6 * scale, err_msg=name)


FD_CAPACITY = 24
FD_NEURONS = {
    1.0: LIFParameters(tau_syn=TAU_SYN, tau_mem=TAU_SYN),
    2.0: LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, v_leak=0.2, v_reset=-0.3),
    1.5: LIFParameters(tau_syn=TAU_SYN, tau_mem=1.5 * TAU_SYN, t_ref=2e-3, v_th=1.3),
}


@functools.lru_cache(maxsize=None)
def _perturbed_simulation(tau_ratio):
    """Jitted float64 simulation of a stack of perturbed (weights, input times)."""
    neuron = FD_NEURONS[tau_ratio]

    def run(weight, in_time, in_idx):
        result = simulate(weight, Spikes(in_time, in_idx), neuron, capacity=FD_CAPACITY, t_max=T_MAX)
        return result.spikes.time, result.spikes.idx

    return jax.jit(jax.vmap(run, in_axes=(0, 0, None)))


def _finite_differences(tau_ratio, weight, inputs, coefficients):
    """Central differences of sum_k c_k t_k w.r.t. weights and input times (NaN where the spike
    pattern changes, i.e. a spike is created or deleted, or the input order changes)."""
    n_w = weight.size
    valid = np.asarray(inputs.idx) >= 0
    in_time = np.asarray(inputs.time)
    steps_w = np.eye(n_w).reshape(n_w, *weight.shape) * FD_STEP
    step_t = FD_STEP * TAU_SYN
    steps_t = np.eye(in_time.size)[valid] * step_t
    weights_batch = np.concatenate([weight + steps_w, weight - steps_w, np.repeat(weight[None], 2 * len(steps_t), 0)])
    times_batch = np.concatenate(
        [np.repeat(in_time[None], 2 * n_w, 0), np.where(np.isfinite(in_time), in_time + steps_t, in_time),
         np.where(np.isfinite(in_time), in_time - steps_t, in_time)]
    )
    base_time, base_idx = _perturbed_simulation(tau_ratio)(weight[None], in_time[None], inputs.idx)
    times, idx = _perturbed_simulation(tau_ratio)(weights_batch, times_batch, inputs.idx)
    times, idx = np.asarray(times), np.asarray(idx)
    same = np.all(idx == np.asarray(base_idx), axis=1)
    # Perturbed input times must stay >= 0 and keep their order.
    ordered = np.all(np.diff(np.where(np.isfinite(times_batch), times_batch, np.inf), axis=1) >= 0, axis=1)
    same &= ordered & np.all(np.nan_to_num(times_batch, posinf=0.0) >= 0, axis=1)
    loss = np.where(same, np.sum(np.where(idx >= 0, coefficients * np.where(idx >= 0, times, 0.0), 0.0), axis=1), np.nan)
    fd_w = (loss[:n_w] - loss[n_w:2 * n_w]).reshape(weight.shape) / (2 * FD_STEP)
    n_t = len(steps_t)
    fd_t = (loss[2 * n_w:2 * n_w + n_t] - loss[2 * n_w + n_t:]) / (2 * step_t)
    return fd_w, fd_t, np.asarray(base_time[0]), np.asarray(base_idx[0])


@pytest.mark.slow
@pytest.mark.parametrize("tau_ratio", [1.0, 2.0, 1.5])
@settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_gradients_match_finite_differences(x64, tau_ratio, data):
    neuron = FD_NEURONS[tau_ratio]
    weight = data.draw(jst.weights((N_IN, SIZE), low=-0.5, high=4.0))
    inputs = data.draw(jst.spikes(N_IN, K_IN, 0.03, simultaneous=False, min_events=2, dtype=np.float64))
    coefficients = np.random.default_rng(int(1e6 * weight[0, 0]) % 1000).normal(size=FD_CAPACITY)
    fd_w, fd_t, out_time, out_idx = _finite_differences(tau_ratio, weight, inputs, coefficients)
    assume(np.any(out_idx >= 0) and np.any(np.isfinite(fd_w)))
    assert np.sum(out_idx >= 0) < FD_CAPACITY  # no overflow
    # Padded output slots get NaN cotangents: they must be ignored.
    cotangent = np.where(out_idx >= 0, coefficients, np.nan)
    neuron_arrays = LIFParameters(*(jnp.asarray(v, jnp.float64) for v in neuron))
    grads = _backward(
        jnp.asarray(weight), inputs.time, inputs.idx, jnp.asarray(out_time), jnp.asarray(out_idx),
        neuron_arrays, jnp.asarray(cotangent), refractory=True,
    )
    _assert_matches_fd(grads.weight, fd_w, "weight")
    valid = np.asarray(inputs.idx) >= 0
    _assert_matches_fd(np.asarray(grads.input_times)[valid], fd_t, "input times")
    assert np.all(np.asarray(grads.input_times)[~valid] == 0)
    if not neuron.t_ref:
        # Without refractoriness the release events are redundant: both code paths agree.
        fast = _backward(
            jnp.asarray(weight), inputs.time, inputs.idx, jnp.asarray(out_time), jnp.asarray(out_idx),
            neuron_arrays, jnp.asarray(cotangent), refractory=False,
        )
        np.testing.assert_allclose(fast.weight, grads.weight, rtol=1e-10, atol=1e-14)


def test_recurrent_gradients_match_finite_differences(x64):
    rng = np.random.default_rng(3)
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=7e-3, t_ref=1e-3, v_leak=0.1, v_reset=-0.2)
    weight = rng.uniform(0.5, 3.0, (N_IN, SIZE))
    recurrent = rng.normal(0.0, 0.5, (SIZE, SIZE))
    in_time = np.sort(rng.uniform(0, 0.02, 8))
    in_idx = rng.integers(0, N_IN, 8)
    out_time, out_idx = reference.simulate_event(weight, in_time, in_idx, neuron, T_MAX, recurrent_weight=recurrent)
    assert len(out_time) > 5
    coefficients = rng.normal(size=len(out_time))
    grads = eventprop_gradients(
        jnp.asarray(weight), spikes_lib.from_lists(in_time, in_idx, dtype=jnp.float64),
        spikes_lib.from_lists(out_time, out_idx, dtype=jnp.float64), neuron, T_MAX,
        jnp.asarray(coefficients), recurrent_weight=jnp.asarray(recurrent),
    )

    def loss(w, r):
        times, idx = reference.simulate_event(w, in_time, in_idx, neuron, T_MAX, recurrent_weight=r)
        if len(idx) != len(out_idx) or np.any(idx != out_idx):
            return np.nan
        return float(np.dot(coefficients, times))

    _assert_matches_fd(grads.weight, _central_difference(lambda w: loss(w, recurrent), weight, FD_STEP), "weight")
    _assert_matches_fd(
        grads.recurrent_weight, _central_difference(lambda r: loss(weight, r), recurrent, FD_STEP), "recurrent"
    )


# ----------------------------------------------------------------------------------------------
# EventProp (custom_vjp) vs jax.grad through the analytic kernels (simulate)

CAPACITY = 24


def _time_loss(result, coefficients):
    valid = result.spikes.idx >= 0
    spike_term = jnp.sum(jnp.where(valid, coefficients[: result.spikes.capacity] * result.spikes.time, 0.0))
    state_term = jnp.sum(coefficients[:SIZE] * result.final_state.v) + jnp.sum(
        coefficients[SIZE : 2 * SIZE] * result.final_state.current
    )
    return spike_term + state_term


def _make_grad(simulator, neuron, recurrent):
    def loss(weight, in_time, in_idx, rec, coefficients):
        result = simulator(
            weight, Spikes(in_time, in_idx), neuron, capacity=CAPACITY, t_max=T_MAX,
            recurrent_weight=rec,
        )
        return _time_loss(result, coefficients)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 3) if recurrent else (0, 1)))


NEURONS = {
    "ratio1": LIFParameters(tau_syn=TAU_SYN, tau_mem=TAU_SYN),
    "ratio2": LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, v_leak=0.1, v_reset=-0.3),
    "root": LIFParameters(tau_syn=TAU_SYN, tau_mem=1.5 * TAU_SYN, t_ref=1e-3),
}


@pytest.fixture(scope="module")
def grad_pairs():
    # Only builds jitted functions (compiled at call time, in float64 through the caller's x64
    # fixture); entering x64 here would keep it on for every later test of this module.
    return {
        (name, rec): (_make_grad(simulate, neuron, rec), _make_grad(simulate_eventprop, neuron, rec))
        for name, neuron in NEURONS.items()
        for rec in (False, True)
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NEURONS))
@pytest.mark.parametrize("recurrent", [False, True])
@settings(max_examples=3, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_equals_autodiff_through_analytic_kernel(x64, grad_pairs, name, recurrent, data):
    weight = jnp.asarray(data.draw(jst.weights((N_IN, SIZE), low=-0.5, high=4.0)))
    inputs = data.draw(jst.spikes(N_IN, K_IN, 0.03, simultaneous=False, dtype=jnp.float64))
    rec = jnp.asarray(data.draw(jst.weights((SIZE, SIZE), low=-1.0, high=1.0))) if recurrent else None
    coefficients = jnp.asarray(np.random.default_rng(7).normal(size=CAPACITY))
    analytic, eventprop = grad_pairs[(name, recurrent)]
    result = simulate(weight, inputs, NEURONS[name], capacity=CAPACITY, t_max=T_MAX, recurrent_weight=rec)
    assume(not bool(result.overflow))
    # Away from simultaneous output spikes: there spike times are not differentiable, and
    # autodiff through min() shares one spike's sensitivity among all tied neurons.
    times = np.asarray(result.spikes.time)[np.asarray(result.spikes.idx) >= 0]
    assume(len(np.unique(times)) == len(times))
    args = (weight, inputs.time, inputs.idx) + ((rec,) if recurrent else ()) + (coefficients,)
    if not recurrent:
        args = (weight, inputs.time, inputs.idx, None, coefficients)
    expected = analytic(*args)
    got = eventprop(*args)
    for e, g in zip(expected, got):
        scale = float(jnp.max(jnp.abs(e))) + 1e-12
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-9 * scale)


def _network_grads(layers, inputs, x64_labels):
    init, apply = jaxsnn.serial(*layers)
    _, params = init(jax.random.PRNGKey(0), (N_IN,))

    def loss(params, in_time):
        _, out, _ = apply(params, Spikes(in_time, inputs.idx))
        return x64_labels(out)

    return jax.grad(loss, argnums=(0, 1))(params, inputs.time)


def _assert_trees_close(got, expected, rtol):
    for g, e in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        scale = float(jnp.max(jnp.abs(e))) + 1e-12
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-9 * scale)


def _first_spike_loss(out):
    first = spikes_lib.first_spike_times(out, 3)
    return jnp.sum(jnp.where(jnp.isfinite(first), first * jnp.arange(1.0, 4.0), 0.0))


INPUTS = Spikes(
    jnp.asarray([0.0, 1e-3, 2.5e-3, 4e-3, 7e-3, jnp.inf]), jnp.asarray([0, 2, 1, 0, 2, -1], jnp.int32)
)


def _layers(gradient, readout):
    # The hidden layer uses the root solver (tau ratio 1.5), the head the quadratic kernel.
    hidden = LIF(8, capacity=16, t_max=T_MAX, tau_mem=7.5e-3, gradient=gradient, weight_init=normal(1.0, 1.0))
    if readout == "lif":
        return [hidden, LIF(3, capacity=4, t_max=T_MAX, gradient=gradient, weight_mean=1.0)]
    return [hidden, LI(3, t_max=T_MAX)]


@pytest.mark.slow
@pytest.mark.parametrize("readout", ["lif", "li"])
def test_stacked_layers_in_serial_equal_analytic(x64, readout):
    inputs = Spikes(INPUTS.time.astype(jnp.float64), INPUTS.idx)
    if readout == "lif":
        head = _first_spike_loss
    else:
        head = lambda out: jnp.sum(out * jnp.asarray([1.0, -2.0, 0.5]))  # noqa: E731
    expected = _network_grads(_layers("analytic", readout), inputs, head)
    got = _network_grads(_layers("eventprop", readout), inputs, head)
    assert float(jnp.max(jnp.abs(expected[1]))) > 0, "input-time gradient must flow through all layers"
    _assert_trees_close(got, expected, rtol=1e-5)


@pytest.mark.slow
def test_recurrent_layer_equals_analytic(x64):
    inputs = Spikes(INPUTS.time.astype(jnp.float64), INPUTS.idx)
    layers = lambda g: [  # noqa: E731
        RecurrentLIF(6, capacity=20, t_max=T_MAX, gradient=g, weight_init=normal(1.0, 1.5), t_ref=5e-4),
        LIF(3, capacity=4, t_max=T_MAX, gradient=g, weight_mean=1.0),
    ]
    expected = _network_grads(layers("analytic"), inputs, _first_spike_loss)
    got = _network_grads(layers("eventprop"), inputs, _first_spike_loss)
    _assert_trees_close(got, expected, rtol=1e-5)


def test_initial_state_and_streaming_gradients_equal_analytic(x64):
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, t_ref=2e-3)
    weight = jnp.asarray(np.random.default_rng(1).uniform(0.5, 3.0, (N_IN, SIZE)))
    inputs = Spikes(INPUTS.time.astype(jnp.float64), INPUTS.idx)
    state0 = LIFState(
        v=jnp.asarray([0.2, -0.1, 0.5, 0.0]), current=jnp.asarray([0.5, 1.0, 0.0, 2.0]),
        refractory_until=jnp.asarray([-jnp.inf, 1e-3, -1.0, 3e-3]),
    )

    def loss(simulator, weight, v0, current0):
        state = LIFState(v0, current0, state0.refractory_until)
        result = simulator(weight, inputs, neuron, capacity=CAPACITY, t_max=0.02, initial_state=state)
        return _time_loss(result, jnp.linspace(-1.0, 1.0, CAPACITY))

    expected = jax.grad(functools.partial(loss, simulate), argnums=(0, 1, 2))(weight, state0.v, state0.current)
    got = jax.grad(functools.partial(loss, simulate_eventprop), argnums=(0, 1, 2))(weight, state0.v, state0.current)
    _assert_trees_close(got, expected, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# edge cases: finite gradients everywhere


def _grad_of_sum(weight, inputs, capacity, neuron=LIFParameters()):
    def loss(weight, in_time):
        result = simulate_eventprop(weight, Spikes(in_time, inputs.idx), neuron, capacity=capacity, t_max=T_MAX)
        first = spikes_lib.first_spike_times(result.spikes, weight.shape[1])
        return jnp.sum(jnp.where(jnp.isfinite(first), first, T_MAX))

    return jax.grad(loss, argnums=(0, 1))(weight, inputs.time)


def _assert_finite(tree):
    for leaf in jax.tree_util.tree_leaves(tree):
        assert np.all(np.isfinite(np.asarray(leaf))), leaf


def test_no_spikes_gives_zero_finite_gradients():
    grads = _grad_of_sum(jnp.zeros((N_IN, SIZE)), INPUTS, 4)
    _assert_finite(grads)
    assert float(jnp.max(jnp.abs(grads[0]))) == 0.0


def test_empty_input_gives_finite_gradients():
    grads = _grad_of_sum(jnp.ones((N_IN, SIZE)), spikes_lib.empty(5), 4)
    _assert_finite(grads)


def test_saturated_capacity_gives_finite_gradients():
    weight = jnp.full((N_IN, SIZE), 6.0)
    result = simulate(weight, INPUTS, LIFParameters(), capacity=2, t_max=T_MAX)
    assert bool(result.overflow)
    grads = _grad_of_sum(weight, INPUTS, 2)
    _assert_finite(grads)
    assert float(jnp.max(jnp.abs(grads[0]))) > 0


def test_simultaneous_inputs_give_finite_gradients():
    inputs = Spikes(jnp.full((5,), 2e-3), jnp.asarray([0, 1, 2, 0, 1], jnp.int32))
    weight = jnp.asarray(np.random.default_rng(0).uniform(0.0, 2.0, (N_IN, SIZE)))
    grads = _grad_of_sum(weight, inputs, 8)
    _assert_finite(grads)
    assert float(jnp.max(jnp.abs(grads[0]))) > 0


def test_tangential_crossing_gradient_is_finite():
    # Slope at the crossing below the floor: the gradient is large but finite.
    neuron = LIFParameters()
    out = Spikes(jnp.asarray([5e-3, jnp.inf]), jnp.asarray([0, -1], jnp.int32))
    inputs = Spikes(jnp.asarray([0.0]), jnp.asarray([0], jnp.int32))
    grads = eventprop_gradients(jnp.full((1, 1), 1e-9), inputs, out, neuron, T_MAX, jnp.asarray([1.0, 0.0]))
    _assert_finite(grads)
    assert MIN_SLOPE_FRACTION > 0


# ----------------------------------------------------------------------------------------------
# injected (measured) spikes


def test_external_spikes_are_the_forward_value_and_gradient_is_eventprop_there():
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN)
    weight = jnp.asarray(np.random.default_rng(2).uniform(0.5, 3.0, (N_IN, SIZE)))
    simulated = simulate(weight, INPUTS, neuron, capacity=12, t_max=T_MAX).spikes
    assert int(simulated.count()) >= 3
    # "Measured" spikes: the simulated ones with timing jitter and one spike lost.
    jitter = jnp.where(simulated.idx >= 0, 1e-4 * jnp.sin(jnp.arange(12.0)), 0.0)
    measured = spikes_lib.sort(Spikes(simulated.time + jitter, simulated.idx.at[1].set(-1)))
    coefficients = jnp.linspace(1.0, 2.0, 12)

    def loss(weight, external):
        result = simulate_eventprop(weight, INPUTS, neuron, capacity=12, t_max=T_MAX, external_spikes=external)
        return jnp.sum(jnp.where(result.spikes.idx >= 0, coefficients * result.spikes.time, 0.0)), result

    (value, result), grad = jax.value_and_grad(loss, has_aux=True)(weight, measured)
    np.testing.assert_array_equal(result.spikes.time, measured.time)
    np.testing.assert_array_equal(result.spikes.idx, measured.idx)
    direct = eventprop_gradients(weight, INPUTS, measured, neuron, T_MAX, jnp.where(measured.idx >= 0, coefficients, 0.0))
    np.testing.assert_allclose(grad, direct.weight, rtol=1e-6)
    # Injecting exactly the simulated spikes reproduces the simulation's gradient and state.
    (_, same), grad_same = jax.value_and_grad(loss, has_aux=True)(weight, simulated)
    def simulated_loss(weight):
        result = simulate_eventprop(weight, INPUTS, neuron, capacity=12, t_max=T_MAX)
        return jnp.sum(jnp.where(result.spikes.idx >= 0, coefficients * result.spikes.time, 0.0))

    np.testing.assert_allclose(grad_same, jax.grad(simulated_loss)(weight), rtol=1e-6)
    reference_state = simulate(weight, INPUTS, neuron, capacity=12, t_max=T_MAX).final_state
    np.testing.assert_allclose(same.final_state.v, reference_state.v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(same.final_state.current, reference_state.current, rtol=1e-5, atol=1e-6)


def test_state_at_matches_reference_with_refractoriness(x64):
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=7e-3, t_ref=3e-3, v_leak=0.1, v_reset=-0.2)
    weight = jnp.asarray(np.random.default_rng(4).uniform(0.5, 3.0, (N_IN, SIZE)))
    recurrent = jnp.asarray(np.random.default_rng(5).normal(0.0, 0.3, (SIZE, SIZE)))
    inputs = Spikes(INPUTS.time.astype(jnp.float64), INPUTS.idx)
    for t in (3e-3, 1e-2, 2.2e-2):
        out_time, out_idx = reference.simulate_event(weight, inputs.time, inputs.idx, neuron, t, recurrent_weight=recurrent)
        out = spikes_lib.from_lists(out_time, out_idx, capacity=max(len(out_time), 1), dtype=jnp.float64)
        v, current = reference.event_state_at(weight, inputs.time, inputs.idx, neuron, t, recurrent_weight=recurrent)
        state = state_at(weight, inputs, out, neuron, t, recurrent_weight=recurrent)
        np.testing.assert_allclose(state.v, v, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state.current, current, rtol=1e-9, atol=1e-12)


def test_external_spikes_bad_input_raises():
    with pytest.raises(TypeError, match="external_spikes"):
        simulate_eventprop(jnp.ones((N_IN, SIZE)), INPUTS, LIFParameters(), capacity=4, t_max=T_MAX,
                           external_spikes=(jnp.zeros(3), jnp.zeros(3, jnp.int32)))
    bad = Spikes(jnp.asarray([1e-3, 2e-3]), jnp.asarray([0, SIZE], jnp.int32))
    with pytest.raises(ValueError, match="external_spikes"):
        simulate_eventprop(jnp.ones((N_IN, SIZE)), INPUTS, LIFParameters(), capacity=4, t_max=T_MAX,
                           external_spikes=bad)
    unsorted = Spikes(jnp.asarray([2e-3, 1e-3]), jnp.asarray([0, 1], jnp.int32))
    with pytest.raises(ValueError, match="sorted"):
        simulate_eventprop(jnp.ones((N_IN, SIZE)), INPUTS, LIFParameters(), capacity=4, t_max=T_MAX,
                           external_spikes=unsorted)


def test_external_overflow_is_flagged():
    external = spikes_lib.from_lists([1e-3, 2e-3, 3e-3], [0, 1, 2])
    result = simulate_eventprop(jnp.ones((N_IN, SIZE)), INPUTS, LIFParameters(), capacity=2, t_max=T_MAX,
                                external_spikes=external)
    assert bool(result.overflow)
    assert result.spikes.capacity == 2


# ----------------------------------------------------------------------------------------------
# transformations


def test_vmap_of_grad_equals_loop_and_jit_equals_eager():
    weight = jnp.asarray(np.random.default_rng(6).uniform(0.5, 3.0, (N_IN, SIZE)))
    batch = Spikes(
        jnp.stack([INPUTS.time, INPUTS.time * 1.5, INPUTS.time + 1e-3]),
        jnp.stack([INPUTS.idx, INPUTS.idx, INPUTS.idx]),
    )

    def loss(weight, inputs):
        result = simulate_eventprop(weight, inputs, LIFParameters(), capacity=10, t_max=T_MAX)
        return jnp.sum(jnp.where(result.spikes.idx >= 0, result.spikes.time, 0.0))

    grad = jax.grad(loss)
    batched = jax.jit(jax.vmap(grad, in_axes=(None, 0)))(weight, batch)
    for k in range(3):
        sample = jax.tree_util.tree_map(lambda leaf: leaf[k], batch)
        np.testing.assert_allclose(batched[k], grad(weight, sample), rtol=1e-5, atol=1e-7)


def test_current_scan_equals_dense_sum(x64):
    # Large layers compute the currents at spike times by a forward scan instead of a dense sum.
    from jaxsnn.event.eventprop import _currents_dense, _currents_scan, _Sources

    rng = np.random.default_rng(8)
    weight = jnp.asarray(rng.normal(size=(N_IN, SIZE)))
    recurrent = jnp.asarray(rng.normal(size=(SIZE, SIZE)))
    in_time = jnp.asarray(np.sort(rng.uniform(0, 0.02, 7)).tolist() + [np.inf])
    in_idx = jnp.asarray(rng.integers(0, N_IN, 7).tolist() + [-1], jnp.int32)
    out_time = jnp.asarray([1e-3, float(in_time[2]), 1.5e-2, np.inf])
    out_idx = jnp.asarray([0, 3, 1, -1], jnp.int32)
    sources = (
        _Sources(in_time, in_idx, weight, in_idx >= 0),
        _Sources(out_time, out_idx, recurrent, out_idx >= 0),
    )
    query_time = jnp.concatenate([out_time, out_time + 1e-3])
    query_neuron = jnp.concatenate([out_idx, out_idx])
    inclusive = jnp.asarray([False] * 4 + [True] * 4)
    args = (query_time, query_neuron, inclusive, sources, jnp.asarray(rng.normal(size=SIZE)), jnp.full((SIZE,), TAU_SYN))
    np.testing.assert_allclose(_currents_scan(*args), _currents_dense(*args), rtol=1e-12, atol=1e-12)


def test_auto_kernel_is_resolved_before_the_custom_vjp(monkeypatch):
    """Inside the custom_vjp the taus are traced; "auto" must already be the analytic kernel."""
    import jaxsnn.event.eventprop as eventprop_module

    seen = []
    real_core = eventprop_module._eventprop_core

    def spy(static, *args):
        seen.append(static[1])
        return real_core(static, *args)

    monkeypatch.setattr(eventprop_module, "_eventprop_core", spy)
    inputs = jaxsnn.spikes.from_lists([1e-3, 2e-3], [0, 1], capacity=4)
    weight = jnp.full((2, 3), 2.0)
    for tau_mem, expected in ((1e-2, "quadratic"), (5e-3, "lambertw"), (1.5e-2, "root")):
        neuron = LIFParameters(tau_syn=5e-3, tau_mem=tau_mem)
        eventprop_module.simulate_eventprop(weight, inputs, neuron, capacity=4, t_max=0.03)
        assert seen[-1] == expected
