"""EventProp gradients: exact against finite differences, autodiff, and in every edge case.

Tolerances: against float64 central finite differences of the float64 reference simulator
(``jaxsnn.testing.reference``, independent of the code under test), rtol 1e-4 (measured
errors are ~1e-7); against ``jax.grad`` through the analytic kernels, rtol 1e-5 (measured
~1e-12).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import jaxsnn
from jaxsnn import spikes as spikes_lib
from jaxsnn.event import LI, LIF, LIFParameters, LIFState, RecurrentLIF, simulate
from jaxsnn.event.dynamics import psp_kernel
from jaxsnn.event.eventprop import (
    MIN_SLOPE_FRACTION,
    eventprop_gradients,
    multispike_eventprop_gradients,
    simulate_eventprop,
)
from jaxsnn.event.superposition import Sources, currents_dense, currents_scan, state_at
from jaxsnn.initializers import normal
from jaxsnn.spikes import Spikes
from jaxsnn.testing import reference
from jaxsnn.testing import strategies as jst

N_IN, SIZE, K_IN = 3, 4, 6
T_MAX = 0.05
TAU_SYN = 5e-3
FD_STEP = 1e-6


# ----------------------------------------------------------------------------------------------
# EventProp backward pass vs float64 finite differences of the reference simulator


@functools.partial(jax.jit, static_argnames=("refractory",))
def _backward(weight, in_time, in_idx, out_time, out_idx, neuron, cotangent, *, refractory):
    return eventprop_gradients(
        weight, Spikes(in_time, in_idx), Spikes(out_time, out_idx), neuron, T_MAX, cotangent,
        refractory=refractory,
    )


@jax.jit
def _closed_form(weight, in_time, in_idx, out_time, out_idx, neuron, cotangent):
    """The multi-spike closed-form backward (feed-forward layers) at the same spikes."""
    return multispike_eventprop_gradients(
        weight, Spikes(in_time, in_idx), Spikes(out_time, out_idx), neuron, T_MAX, cotangent,
    )


def _central_difference(f, x, step):
    grad = np.full(x.shape, np.nan)
    for position in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[position] += step
        minus[position] -= step
        grad[position] = (f(plus) - f(minus)) / (2 * step)
    return grad


def _assert_matches_fd(got, fd, name, min_finite):
    """rtol 1e-4 on every entry whose perturbations kept the spike pattern (no creation/deletion).

    At least ``min_finite`` entries must be comparable (finite), and at least one of them
    nonzero: a comparison of nothing, or of zeros only, fails.
    """
    got = np.asarray(got)
    ok = np.isfinite(fd)
    assert np.sum(ok) >= min_finite, f"{name}: only {np.sum(ok)} of {fd.size} finite differences are finite"
    assert np.any(fd[ok] != 0), f"{name}: every finite difference is zero (nothing depends on it)"
    scale = np.max(np.abs(fd[ok]))
    np.testing.assert_allclose(got[ok], fd[ok], rtol=1e-4, atol=1e-6 * scale, err_msg=name)


def test_fd_comparison_fails_when_it_compares_nothing():
    """``_assert_matches_fd`` rejects all-NaN differences, too few finite ones, and zeros only."""
    got = np.ones(4)
    with pytest.raises(AssertionError, match="only 0 of 4 finite differences are finite"):
        _assert_matches_fd(got, np.full(4, np.nan), "x", min_finite=1)
    with pytest.raises(AssertionError, match="only 2 of 4"):
        _assert_matches_fd(got, np.array([1.0, np.nan, 1.0, np.nan]), "x", min_finite=3)
    with pytest.raises(AssertionError, match="every finite difference is zero"):
        _assert_matches_fd(np.zeros(4), np.zeros(4), "x", min_finite=4)
    with pytest.raises(AssertionError, match="x"):
        _assert_matches_fd(got, np.array([1.0, 1.0, 1.001, np.nan]), "x", min_finite=3)
    _assert_matches_fd(got, np.array([1.0, 1.0, 1.00001, np.nan]), "x", min_finite=3)


def _ordinals(idx):
    """Per event, how many earlier events of the same neuron precede it (0 for a first spike)."""
    idx = np.asarray(idx)
    return np.array([np.sum(idx[:k] == n) for k, n in enumerate(idx)], dtype=int)


def _reference_loss(neuron, coefficients, counts):
    """``L = sum_n sum_j c[n, j] t_{n,j}`` of the float64 reference (``t_{n,j}``: the ``j``-th
    spike of neuron ``n``); NaN where a perturbation creates or deletes a spike.

    The coefficients are attached to each neuron's own spikes, not to positions in the merged,
    time-sorted output: where two neurons spike at the same instant (identical weight columns,
    which hypothesis draws readily), a perturbation of one swaps their order in the merged
    buffer, so a loss over buffer positions is not differentiable there, while every neuron's
    own spike times still are.
    """

    def loss(weight, in_time, in_idx, recurrent_weight=None):
        times, idx = reference.simulate_event(weight, in_time, in_idx, neuron, T_MAX, recurrent_weight=recurrent_weight)
        if np.any(np.bincount(idx, minlength=len(counts)) != counts):
            return np.nan
        return float(np.sum(coefficients[idx, _ordinals(idx)] * times))

    return loss


def _cotangent(coefficients, idx):
    """The cotangent of each slot of an output buffer for ``_reference_loss`` (0 on padding)."""
    idx = np.asarray(idx)
    valid = idx >= 0
    return np.where(valid, coefficients[np.where(valid, idx, 0), np.minimum(_ordinals(idx), coefficients.shape[1] - 1)],
                    0.0)


def _padded(times, idx, capacity):
    """Reference output events as a ``Spikes`` buffer of a fixed capacity (one compilation)."""
    assert len(times) <= capacity, f"{len(times)} reference spikes do not fit the test buffer"
    return spikes_lib.from_lists(times, idx, capacity=capacity, dtype=jnp.float64)


FD_NEURONS = {
    1.0: LIFParameters(tau_syn=TAU_SYN, tau_mem=TAU_SYN),
    2.0: LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, v_leak=0.2, v_reset=-0.3),
    1.5: LIFParameters(tau_syn=TAU_SYN, tau_mem=1.5 * TAU_SYN, t_ref=2e-3, v_th=1.3),
}
# Output buffer of the backward pass: holds every reference spike of the drawn networks (at most
# 6 inputs of weight <= 4 each: a few dozen spikes); the reference itself has no capacity.
FD_CAPACITY = 128
# Input times are drawn in [0, 0.03] and start at this offset, so every perturbed time stays
# >= 0 and every input-time finite difference is defined.
FD_OFFSET = 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("tau_ratio", [1.0, 2.0, 1.5])
@settings(max_examples=4, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    weight=jst.weights((N_IN, SIZE), low=-0.5, high=4.0),
    inputs=jst.spikes(N_IN, K_IN, 0.03, simultaneous=False, min_events=2, dtype=np.float64),
)
# Five inputs of weight 4 within 2 us drive one neuron to 24 spikes (the buffer of an earlier
# version of this test held exactly 24 and rejected the example as an overflow).
@example(
    weight=np.array([[2.0, 4.0, 0.0, 0.0], [0.0] * 4, [0.0] * 4]),
    inputs=Spikes(np.arange(5) * 0.03 * 2.0**-16, np.zeros(5, np.int32)),
)
# Three neurons with identical weight columns spike at the same instants: a loss over positions
# in the merged output buffer had no derivative there (most differences were NaN).
@example(
    weight=np.array([[3.0, 3.0, 3.0, 1.0], [3.0] * 4, [3.0] * 4]),
    inputs=Spikes(np.array([1e-4, 3.1e-3, 9.7e-3, 1e-2, 1.27e-2, 2.63e-2]), np.array([1, 0, 2, 2, 0, 0], np.int32)),
)
def test_gradients_match_finite_differences(x64, tau_ratio, weight, inputs):
    """EventProp (scan and closed form) at the reference's spike times vs central differences of the reference."""
    neuron = FD_NEURONS[tau_ratio]
    valid = np.asarray(inputs.idx) >= 0
    in_time = np.asarray(inputs.time, np.float64)[valid] + FD_OFFSET
    in_idx = np.asarray(inputs.idx)[valid]
    out_time, out_idx = reference.simulate_event(weight, in_time, in_idx, neuron, T_MAX)
    # A silent network has nothing to compare: hypothesis replaces it (and fails if it cannot).
    assume(len(out_time) > 0)
    coefficients = np.random.default_rng(int(1e6 * weight[0, 0]) % 1000).normal(size=(SIZE, FD_CAPACITY))
    loss = _reference_loss(neuron, coefficients, np.bincount(out_idx, minlength=SIZE))
    fd_w = _central_difference(lambda w: loss(w, in_time, in_idx), weight, FD_STEP)
    fd_t = _central_difference(lambda t: loss(weight, t, in_idx), in_time, FD_STEP * TAU_SYN)
    outputs = _padded(out_time, out_idx, FD_CAPACITY)
    # Padded output slots get NaN cotangents: they must be ignored.
    cotangent = np.where(np.asarray(outputs.idx) >= 0, _cotangent(coefficients, outputs.idx), np.nan)
    neuron_arrays = LIFParameters(*(jnp.asarray(v, jnp.float64) for v in neuron))
    buffer = spikes_lib.from_lists(in_time, in_idx, capacity=K_IN, dtype=jnp.float64)
    args = (jnp.asarray(weight), buffer.time, buffer.idx, outputs.time, outputs.idx, neuron_arrays,
            jnp.asarray(cotangent))
    grads = _backward(*args, refractory=True)
    # Rows of inputs that never occur have exactly zero gradient and difference: compare the rest.
    used = np.isin(np.arange(N_IN), in_idx)
    assert np.all(np.asarray(grads.weight)[~used] == 0)
    _assert_matches_fd(np.asarray(grads.weight)[used], fd_w[used], "weight", min_finite=used.sum() * SIZE // 2)
    _assert_matches_fd(np.asarray(grads.input_times)[: len(in_time)], fd_t, "input times",
                       min_finite=max(1, len(in_time) // 2))
    assert np.all(np.asarray(grads.input_times)[len(in_time):] == 0)
    # The closed form of feed-forward layers (several spikes per neuron) against the same differences.
    closed = _closed_form(*args)
    _assert_matches_fd(np.asarray(closed.weight)[used], fd_w[used], "weight (closed form)",
                       min_finite=used.sum() * SIZE // 2)
    _assert_matches_fd(np.asarray(closed.input_times)[: len(in_time)], fd_t, "input times (closed form)",
                       min_finite=max(1, len(in_time) // 2))
    if not neuron.t_ref:
        # Without refractoriness the release events are redundant: both code paths agree.
        fast = _backward(*args, refractory=False)
        np.testing.assert_allclose(fast.weight, grads.weight, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(fast.input_times, grads.input_times, rtol=1e-10, atol=1e-14)


def test_recurrent_gradients_match_finite_differences(x64):
    """Weights, recurrent weights and input times of a recurrent layer vs reference differences."""
    rng = np.random.default_rng(3)
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=7e-3, t_ref=1e-3, v_leak=0.1, v_reset=-0.2)
    weight = rng.uniform(0.5, 3.0, (N_IN, SIZE))
    recurrent = rng.normal(0.0, 0.5, (SIZE, SIZE))
    in_time = np.sort(rng.uniform(0, 0.02, 8))
    in_idx = rng.integers(0, N_IN, 8)
    out_time, out_idx = reference.simulate_event(weight, in_time, in_idx, neuron, T_MAX, recurrent_weight=recurrent)
    assert len(out_time) > 5
    coefficients = rng.normal(size=(SIZE, len(out_time)))
    grads = _eventprop_gradients(
        jnp.asarray(weight), spikes_lib.from_lists(in_time, in_idx, dtype=jnp.float64),
        spikes_lib.from_lists(out_time, out_idx, dtype=jnp.float64), neuron, T_MAX,
        jnp.asarray(_cotangent(coefficients, out_idx)), recurrent_weight=jnp.asarray(recurrent),
    )
    loss = _reference_loss(neuron, coefficients, np.bincount(out_idx, minlength=SIZE))
    fd_w = _central_difference(lambda w: loss(w, in_time, in_idx, recurrent), weight, FD_STEP)
    fd_r = _central_difference(lambda r: loss(weight, in_time, in_idx, r), recurrent, FD_STEP)
    fd_t = _central_difference(lambda t: loss(weight, t, in_idx, recurrent), in_time, FD_STEP * TAU_SYN)
    _assert_matches_fd(grads.weight, fd_w, "weight", min_finite=weight.size)
    _assert_matches_fd(grads.recurrent_weight, fd_r, "recurrent", min_finite=recurrent.size)
    _assert_matches_fd(grads.input_times, fd_t, "input times", min_finite=in_time.size)


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
    """Jitted gradient; also returns the forward spikes and overflow flag (no second compile)."""
    def loss(weight, in_time, in_idx, rec, coefficients):
        result = simulator(
            weight, Spikes(in_time, in_idx), neuron, capacity=CAPACITY, t_max=T_MAX,
            recurrent_weight=rec,
        )
        return _time_loss(result, coefficients), (result.spikes, result.overflow)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 3) if recurrent else (0, 1), has_aux=True))


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
@pytest.mark.parametrize(
    "name,recurrent",
    # Every kernel and both wirings are covered by the default run through two cases; the other
    # four combinations run with -m extended.
    [
        (name, recurrent) if (name, recurrent) in {("root", False), ("ratio1", True)}
        else pytest.param(name, recurrent, marks=pytest.mark.extended)
        for name in NEURONS
        for recurrent in (False, True)
    ],
)
@settings(max_examples=3, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_equals_autodiff_through_analytic_kernel(x64, grad_pairs, name, recurrent, data):
    weight = jnp.asarray(data.draw(jst.weights((N_IN, SIZE), low=-0.5, high=4.0)))
    inputs = data.draw(jst.spikes(N_IN, K_IN, 0.03, simultaneous=False, dtype=jnp.float64))
    rec = jnp.asarray(data.draw(jst.weights((SIZE, SIZE), low=-1.0, high=1.0))) if recurrent else None
    coefficients = jnp.asarray(np.random.default_rng(7).normal(size=CAPACITY))
    analytic, eventprop = grad_pairs[(name, recurrent)]
    args = (weight, inputs.time, inputs.idx, rec, coefficients)
    expected, (spikes, overflow) = analytic(*args)
    assume(not bool(overflow))
    # Away from simultaneous output spikes: there spike times are not differentiable, and
    # autodiff through min() shares one spike's sensitivity among all tied neurons.
    times = np.asarray(spikes.time)[np.asarray(spikes.idx) >= 0]
    assume(len(times) > 0 and len(np.unique(times)) == len(times))
    got, (same_spikes, _) = eventprop(*args)
    np.testing.assert_array_equal(same_spikes.idx, spikes.idx)
    for e, g in zip(expected, got):
        scale = float(jnp.max(jnp.abs(e))) + 1e-12
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-9 * scale)


def _network_grads(layers, inputs, x64_labels):
    init, apply = jaxsnn.serial(*layers)
    _, params = init(jax.random.PRNGKey(0), (N_IN,))

    def loss(params, in_time):
        _, out, _ = apply(params, Spikes(in_time, inputs.idx))
        return x64_labels(out)

    # One compilation of the whole backward pass (eager autodiff compiles piece by piece).
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, inputs.time)


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
@pytest.mark.parametrize("readout", ["lif", pytest.param("li", marks=pytest.mark.extended)])
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

    expected = jax.jit(jax.grad(functools.partial(loss, simulate), argnums=(0, 1, 2)))(
        weight, state0.v, state0.current)
    got = jax.jit(jax.grad(functools.partial(loss, simulate_eventprop), argnums=(0, 1, 2)))(
        weight, state0.v, state0.current)
    _assert_trees_close(got, expected, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# edge cases: finite gradients everywhere


EDGE_CAPACITY = 8


@jax.jit
def _grad_of_sum(weight, inputs):
    """Gradient of the summed first-spike times (``T_MAX`` for silent neurons); one compilation
    serves every edge case below (same shapes: 6 input slots, ``EDGE_CAPACITY`` output slots)."""

    def loss(weight, in_time):
        result = simulate_eventprop(weight, Spikes(in_time, inputs.idx), LIFParameters(), capacity=EDGE_CAPACITY,
                                    t_max=T_MAX)
        first = spikes_lib.first_spike_times(result.spikes, weight.shape[1])
        return jnp.sum(jnp.where(jnp.isfinite(first), first, T_MAX))

    return jax.grad(loss, argnums=(0, 1))(weight, inputs.time)


def _assert_finite(tree):
    for leaf in jax.tree_util.tree_leaves(tree):
        assert np.all(np.isfinite(np.asarray(leaf))), leaf


def test_no_spikes_gives_zero_finite_gradients():
    grads = _grad_of_sum(jnp.zeros((N_IN, SIZE)), INPUTS)
    _assert_finite(grads)
    assert float(jnp.max(jnp.abs(grads[0]))) == 0.0


def test_empty_input_gives_finite_gradients():
    grads = _grad_of_sum(jnp.ones((N_IN, SIZE)), spikes_lib.empty(INPUTS.capacity))
    _assert_finite(grads)


def test_saturated_capacity_gives_finite_gradients():
    weight = jnp.full((N_IN, SIZE), 6.0)
    result = simulate(weight, INPUTS, LIFParameters(), capacity=EDGE_CAPACITY, t_max=T_MAX)
    assert bool(result.overflow)
    grads = _grad_of_sum(weight, INPUTS)
    _assert_finite(grads)
    assert float(jnp.max(jnp.abs(grads[0]))) > 0


def test_simultaneous_inputs_give_finite_gradients():
    inputs = spikes_lib.from_lists([2e-3] * 5, [0, 1, 2, 0, 1], capacity=INPUTS.capacity)
    weight = jnp.asarray(np.random.default_rng(0).uniform(0.0, 2.0, (N_IN, SIZE)), jnp.float32)
    grads = _grad_of_sum(weight, inputs)
    _assert_finite(grads)
    assert float(jnp.max(jnp.abs(grads[0]))) > 0


_eventprop_gradients = jax.jit(eventprop_gradients, static_argnames=("refractory",))


@pytest.mark.parametrize("refractory", [False, True])
def test_tangential_crossing_gradient_is_the_floored_slope(refractory):
    """A spike whose membrane slope is below the floor gets exactly the floored-slope gradient.

    One input at 0 with a tiny weight and an output spike at 5e-3 (as if measured): the slope
    there, ``(I - (v_th - v_leak)) / tau_mem``, is about ``-1/tau_mem``, so the floor
    ``MIN_SLOPE_FRACTION (v_th - v_reset) / tau_mem`` applies: ``lambda_v`` jumps to
    ``-1 / floor`` and ``dL/dW = -K(5e-3) / floor``, ``dL/dv(0) = -exp(-5e-3/tau_mem) / floor``.
    """
    neuron = LIFParameters(v_reset=-0.5, t_ref=1e-3 if refractory else 0.0)
    out = Spikes(jnp.asarray([5e-3, jnp.inf]), jnp.asarray([0, -1], jnp.int32))
    inputs = Spikes(jnp.asarray([0.0]), jnp.asarray([0], jnp.int32))
    state0 = LIFState(jnp.zeros(1), jnp.zeros(1), jnp.full((1,), -jnp.inf))
    grads = _eventprop_gradients(jnp.full((1, 1), 1e-9), inputs, out, neuron, T_MAX, jnp.asarray([1.0, 0.0]),
                                 initial_state=state0, refractory=refractory)
    floor = MIN_SLOPE_FRACTION * (neuron.v_th - neuron.v_reset) / neuron.tau_mem
    kernel = float(psp_kernel(5e-3, neuron.tau_mem, neuron.tau_syn))
    np.testing.assert_allclose(float(grads.weight[0, 0]), -kernel / floor, rtol=1e-5)
    np.testing.assert_allclose(float(grads.initial_v[0]), -np.exp(-0.5) / floor, rtol=1e-5)
    np.testing.assert_allclose(float(grads.output_times[0]), 1.0, rtol=1e-6)


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

    loss_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))  # one compilation, two measurements
    (value, result), grad = loss_and_grad(weight, measured)
    np.testing.assert_array_equal(result.spikes.time, measured.time)
    np.testing.assert_array_equal(result.spikes.idx, measured.idx)
    direct = _eventprop_gradients(weight, INPUTS, measured, neuron, T_MAX,
                                  jnp.where(measured.idx >= 0, coefficients, 0.0))
    np.testing.assert_allclose(grad, direct.weight, rtol=1e-6)
    # Injecting exactly the simulated spikes reproduces the simulation's gradient and state.
    (_, same), grad_same = loss_and_grad(weight, simulated)

    def simulated_loss(weight):
        result = simulate_eventprop(weight, INPUTS, neuron, capacity=12, t_max=T_MAX)
        return jnp.sum(jnp.where(result.spikes.idx >= 0, coefficients * result.spikes.time, 0.0))

    np.testing.assert_allclose(grad_same, jax.jit(jax.grad(simulated_loss))(weight), rtol=1e-6)
    reference_state = simulate(weight, INPUTS, neuron, capacity=12, t_max=T_MAX).final_state
    np.testing.assert_allclose(same.final_state.v, reference_state.v, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(same.final_state.current, reference_state.current, rtol=1e-5, atol=1e-6)


def test_state_at_matches_reference_with_refractoriness(x64):
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=7e-3, t_ref=3e-3, v_leak=0.1, v_reset=-0.2)
    weight = jnp.asarray(np.random.default_rng(4).uniform(0.5, 3.0, (N_IN, SIZE)))
    recurrent = jnp.asarray(np.random.default_rng(5).normal(0.0, 0.3, (SIZE, SIZE)))
    inputs = Spikes(INPUTS.time.astype(jnp.float64), INPUTS.idx)
    # Traced time, fixed output capacity: one compilation for every t.
    at = jax.jit(lambda out, t: state_at(weight, inputs, out, neuron, t, recurrent_weight=recurrent))
    spiked = 0
    for t in (3e-3, 1e-2, 2.2e-2):
        out_time, out_idx = reference.simulate_event(weight, inputs.time, inputs.idx, neuron, t, recurrent_weight=recurrent)
        spiked = max(spiked, len(out_time))
        out = spikes_lib.from_lists(out_time, out_idx, capacity=16, dtype=jnp.float64)
        v, current = reference.event_state_at(weight, inputs.time, inputs.idx, neuron, t, recurrent_weight=recurrent)
        state = at(out, t)
        np.testing.assert_allclose(state.v, v, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state.current, current, rtol=1e-9, atol=1e-12)
    assert spiked >= 3  # resets, refractory clamps and recurrent jumps are exercised


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
    result = jax.jit(lambda weight, external: simulate_eventprop(
        weight, INPUTS, LIFParameters(), capacity=2, t_max=T_MAX, external_spikes=external,
    ))(jnp.ones((N_IN, SIZE)), external)
    assert bool(result.overflow)
    assert result.spikes.capacity == 2
    np.testing.assert_array_equal(result.spikes.idx, [0, 1])


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
    rng = np.random.default_rng(8)
    weight = jnp.asarray(rng.normal(size=(N_IN, SIZE)))
    recurrent = jnp.asarray(rng.normal(size=(SIZE, SIZE)))
    in_time = jnp.asarray(np.sort(rng.uniform(0, 0.02, 7)).tolist() + [np.inf])
    in_idx = jnp.asarray(rng.integers(0, N_IN, 7).tolist() + [-1], jnp.int32)
    out_time = jnp.asarray([1e-3, float(in_time[2]), 1.5e-2, np.inf])
    out_idx = jnp.asarray([0, 3, 1, -1], jnp.int32)
    sources = (
        Sources(in_time, in_idx, weight, in_idx >= 0),
        Sources(out_time, out_idx, recurrent, out_idx >= 0),
    )
    query_time = jnp.concatenate([out_time, out_time + 1e-3])
    query_neuron = jnp.concatenate([out_idx, out_idx])
    inclusive = jnp.asarray([False] * 4 + [True] * 4)
    args = (query_time, query_neuron, inclusive, sources, jnp.asarray(rng.normal(size=SIZE)), jnp.full((SIZE,), TAU_SYN))
    scan, dense = jax.jit(currents_scan)(*args), jax.jit(currents_dense)(*args)
    assert np.count_nonzero(np.asarray(dense)) >= 6
    np.testing.assert_allclose(scan, dense, rtol=1e-12, atol=1e-12)


def test_auto_kernel_is_resolved_before_the_custom_vjp(monkeypatch):
    """Inside the custom_vjp the taus are traced; "auto" must already be the analytic kernel."""
    import jaxsnn.event.eventprop as eventprop_module

    seen = []

    def spy(plan, *args):
        seen.append(plan.kernel)
        return None  # only the plan matters here; the simulation itself is tested elsewhere

    monkeypatch.setattr(eventprop_module, "_eventprop_core", spy)
    inputs = jaxsnn.spikes.from_lists([1e-3, 2e-3], [0, 1], capacity=4)
    weight = jnp.full((2, 3), 2.0)
    for tau_mem, expected in ((1e-2, "quadratic"), (5e-3, "lambertw"), (1.5e-2, "root")):
        neuron = LIFParameters(tau_syn=5e-3, tau_mem=tau_mem)
        eventprop_module.simulate_eventprop(weight, inputs, neuron, capacity=4, t_max=0.03)
        assert seen[-1] == expected


def test_layers_resolve_their_plan_at_construction(monkeypatch):
    """Applied under jit (everything traced), a layer still runs the plan of its concrete constants."""
    import jaxsnn.event.layers as layers_module
    from jaxsnn.event.simulate import SimulationResult

    seen = []

    def spy(plan, weight, inputs, neuron, **kwargs):
        seen.append(plan)
        return SimulationResult(inputs, None, jnp.zeros((), bool))

    monkeypatch.setattr(layers_module, "simulate_eventprop_planned", spy)
    inputs = jaxsnn.spikes.from_lists([1e-3, 2e-3], [0, 1], capacity=4)
    for options, expected in (
        (dict(tau_mem=1e-2), ("quadratic", "feedforward", False, "feedforward", 0)),
        (dict(tau_mem=5e-3, t_ref=0.03), ("lambertw", "parallel", True, "parallel", 2)),
        (dict(tau_mem=1.5e-2, t_ref=1e-3), ("root", "feedforward", True, "feedforward", 31)),
        (dict(tau_mem=1e-2, backward="parallel"), ("quadratic", "feedforward", False, "multispike", 0)),
        (dict(tau_mem=1e-2, backward="scan"), ("quadratic", "feedforward", False, "scan", 0)),
    ):
        layer = LIF(3, capacity=4, t_max=0.03, **options)
        jax.jit(layer.apply)({"weight": jnp.full((2, 3), 2.0)}, inputs)
        assert tuple(seen[-1]) == expected
