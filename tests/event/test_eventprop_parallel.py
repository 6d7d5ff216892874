"""The parallel (closed-form) EventProp backward of single-spike feed-forward layers.

It must give the gradients of the scan backward (``eventprop_gradients``) to rounding (float64,
rtol 1e-10; measured ~1e-14) and of float64 central finite differences of the reference
simulator (``jaxsnn.testing.reference``, rtol 1e-4), be chosen automatically exactly when the
forward pass is the parallel algorithm, and handle silent neurons and padding like the scan.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, example, given, note, settings
from hypothesis import strategies as st

from jaxsnn import spikes as spikes_lib
from jaxsnn.event import LIF, LIFParameters, LIFState, resolve_plan
from jaxsnn.event.plan import choose_backward
from jaxsnn.event import eventprop as eventprop_module
from jaxsnn.event.eventprop import parallel_eventprop_gradients, simulate_eventprop
from jaxsnn.spikes import Spikes
from jaxsnn.testing import reference
from jaxsnn.testing import strategies as jst

N_IN, SIZE, K_IN = 4, 6, 10
TAU_SYN = 5e-3
T_MAX = 6 * TAU_SYN
RATIOS = [1.0, 2.0, 1.5]
# The default run compares one tau ratio; the other two are the extended tier (``pytest -m extended``).
EQUALS_SCAN_RATIOS = [pytest.param(1.0, marks=pytest.mark.extended), 2.0,
                      pytest.param(1.5, marks=pytest.mark.extended)]
FD_STEP = 1e-6


def _single_spike(neuron: LIFParameters) -> LIFParameters:
    """The same neuron with ``t_ref > t_max``: at most one spike each (the parallel case)."""
    return neuron._replace(t_ref=T_MAX + float(neuron.t_ref))


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

    The neuron parameters are traced (one compilation for every drawn neuron), so the parallel
    forward pass is requested explicitly (``"auto"`` cannot see ``t_ref >= t_max`` then).
    """

    def loss(weight, times, initial_state):
        result = simulate_eventprop(
            weight, Spikes(times, idx), neuron, capacity=capacity, t_max=T_MAX,
            initial_state=initial_state, algorithm="parallel", backward=backward,
        )
        return _loss(result, coefficients), result.spikes

    return jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(weight, times, initial_state)


def _assert_close(got, expected, name):
    got, expected = np.asarray(got), np.asarray(expected)
    assert np.all(np.isfinite(got)), f"{name}: non-finite gradient {got}"
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    # rtol 1e-10 on each entry; entries that cancel to ~0 are compared at 1e-13 of the largest.
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13 * scale, err_msg=name)


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


@pytest.mark.parametrize("ratio", EQUALS_SCAN_RATIOS)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_parallel_backward_equals_scan(ratio, data):
    """Weights, input times, initial v, current and refractory end: parallel == scan (rtol 1e-10)."""
    with jax.enable_x64(True):
        _parallel_equals_scan(ratio, data)


def _parallel_equals_scan(ratio, data):
    neuron = _single_spike(data.draw(jst.lif_parameters("event", tau_ratio=ratio, tau_syn=TAU_SYN)))
    weight = jnp.asarray(data.draw(jst.weights((N_IN, SIZE), low=-1.0, high=6.0)))
    inputs = data.draw(jst.spikes(N_IN, K_IN, 0.8 * T_MAX, min_events=1, dtype=np.float64))
    initial_state = data.draw(_initial_states(neuron))
    capacity = data.draw(st.sampled_from([2, 2 * SIZE]))  # overflowing and roomy buffers
    coefficients = jnp.asarray(data.draw(jst.weights((capacity + 2 * SIZE,), low=-1.0, high=1.0)))
    # |c| >= 0.1: an all-zero draw (hypothesis finds it) has zero gradients and compares nothing
    coefficients = coefficients + jnp.where(coefficients >= 0, 0.1, -0.1)
    args = (weight, jnp.asarray(inputs.time), jnp.asarray(inputs.idx), initial_state, neuron, coefficients)
    scan, scan_spikes = _grads(*args, capacity=capacity, backward="scan")
    parallel, parallel_spikes = _grads(*args, capacity=capacity, backward="parallel")
    count = int(scan_spikes.count())
    note(f"{count} output spikes")
    # A silent layer compares only the final-state terms: hypothesis must find spiking ones.
    assume(count > 0)
    np.testing.assert_array_equal(parallel_spikes.idx, scan_spikes.idx)
    grad_weight, grad_times, grad_state = parallel
    _assert_close(grad_weight, scan[0], "weight")
    _assert_close(grad_times, scan[1], "input times")
    assert np.any(np.asarray(scan[0]) != 0) and np.any(np.asarray(scan[1]) != 0)
    if initial_state is not None:
        for name, got, expected in zip(LIFState._fields, grad_state, scan[2]):
            _assert_close(got, expected, f"initial {name}")


def test_parallel_backward_equals_scan_per_neuron_parameters(x64):
    """Per-neuron time constants, thresholds and leaks: the closed form is per neuron too."""
    rng = np.random.default_rng(7)
    neuron = LIFParameters(
        tau_syn=rng.uniform(3e-3, 6e-3, SIZE), tau_mem=rng.uniform(3e-3, 1.2e-2, SIZE),
        v_th=rng.uniform(0.8, 1.3, SIZE), v_leak=rng.uniform(-0.2, 0.2, SIZE), v_reset=-0.3, t_ref=2 * T_MAX,
    )
    weight = jnp.asarray(rng.uniform(0.0, 4.0, (N_IN, SIZE)))
    inputs = spikes_lib.from_lists(np.sort(rng.uniform(0, 0.02, 8)), rng.integers(0, N_IN, 8), capacity=K_IN,
                                   dtype=jnp.float64)
    coefficients = jnp.asarray(rng.normal(size=(SIZE + 2 * SIZE,)))
    args = (weight, inputs.time, inputs.idx, None, neuron, coefficients)
    scan, spikes = _grads(*args, capacity=SIZE, backward="scan")
    parallel, _ = _grads(*args, capacity=SIZE, backward="parallel")
    assert int(spikes.count()) >= 4
    _assert_close(parallel[0], scan[0], "weight")
    _assert_close(parallel[1], scan[1], "input times")


# ----------------------------------------------------------------------------------------------
# Against float64 finite differences of the reference simulator


def _reference_loss(neuron, coefficients, spiking, initial_v=None, initial_current=None):
    """``sum_n c_n t_n`` over the reference's spikes; NaN where a perturbation adds or removes one."""

    def loss(weight, in_time, in_idx, v0=initial_v, current0=initial_current):
        state = None if v0 is None else (v0, current0)
        times, idx = reference.simulate_event(weight, in_time, in_idx, neuron, T_MAX, initial_state=state)
        if not np.array_equal(np.sort(idx), spiking):
            return np.nan
        return float(np.sum(coefficients[idx] * times))

    return loss


def _central_difference(f, x, step):
    grad = np.full(x.shape, np.nan)
    for position in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[position] += step
        minus[position] -= step
        grad[position] = (f(plus) - f(minus)) / (2 * step)
    return grad


def _assert_matches_fd(got, fd, name, min_finite):
    """rtol 1e-4 where the spike pattern survived the perturbation; something must be compared."""
    got = np.asarray(got)
    ok = np.isfinite(fd)
    assert np.sum(ok) >= min_finite, f"{name}: only {np.sum(ok)} of {fd.size} finite differences are finite"
    assert np.any(fd[ok] != 0), f"{name}: every finite difference is zero"
    np.testing.assert_allclose(got[ok], fd[ok], rtol=1e-4, atol=1e-6 * np.max(np.abs(fd[ok])), err_msg=name)


@pytest.mark.parametrize("ratio", RATIOS)
@settings(max_examples=3, deadline=None)
@given(
    weight=jst.weights((N_IN, SIZE), low=-0.5, high=4.0),
    inputs=jst.spikes(N_IN, 6, 0.6 * T_MAX, simultaneous=False, min_events=2, dtype=np.float64),
    with_state=st.booleans(),
)
@example(
    weight=np.array([[2.0, 3.0, 0.5, 1.0, 4.0, 0.0], [1.0] * SIZE, [0.0] * SIZE, [2.5] * SIZE]),
    inputs=Spikes(np.array([1e-3, 4e-3, 6e-3, 9e-3]), np.array([0, 1, 3, 0], np.int32)),
    with_state=True,
)
def test_parallel_backward_matches_reference_finite_differences(ratio, weight, inputs, with_state):
    """Weights, input times, initial v and current vs central differences of the reference (rtol 1e-4)."""
    with jax.enable_x64(True):
        _matches_finite_differences(ratio, weight, inputs, with_state)


def _matches_finite_differences(ratio, weight, inputs, with_state):
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=ratio * TAU_SYN, v_leak=0.1, v_reset=-0.2, t_ref=2 * T_MAX)
    valid = np.asarray(inputs.idx) >= 0
    in_time = np.asarray(inputs.time, np.float64)[valid] + 1e-3  # perturbed times stay >= 0
    in_idx = np.asarray(inputs.idx)[valid]
    rng = np.random.default_rng(len(in_time))
    v0 = rng.uniform(-0.2, 0.6, SIZE) if with_state else None
    current0 = rng.uniform(-0.5, 1.0, SIZE) if with_state else None
    out_time, out_idx = reference.simulate_event(
        weight, in_time, in_idx, neuron, T_MAX, initial_state=None if v0 is None else (v0, current0),
    )
    assume(len(out_time) > 0)
    assert len(np.unique(out_idx)) == len(out_idx), "t_ref > t_max: one spike per neuron"
    coefficients = rng.normal(size=SIZE)
    loss = _reference_loss(neuron, coefficients, np.sort(out_idx), v0, current0)
    fd_w = _central_difference(lambda w: loss(w, in_time, in_idx), weight, FD_STEP)
    fd_t = _central_difference(lambda t: loss(weight, t, in_idx), in_time, FD_STEP * TAU_SYN)
    outputs = spikes_lib.from_lists(out_time, out_idx, capacity=SIZE, dtype=jnp.float64)
    cotangent = np.where(np.asarray(outputs.idx) >= 0, coefficients[np.maximum(np.asarray(outputs.idx), 0)], np.nan)
    initial_state = None
    if with_state:
        initial_state = LIFState(jnp.asarray(v0), jnp.asarray(current0), jnp.full((SIZE,), -jnp.inf))
    grads = jax.jit(parallel_eventprop_gradients)(
        jnp.asarray(weight), spikes_lib.from_lists(in_time, in_idx, capacity=6, dtype=jnp.float64), outputs,
        neuron, T_MAX, jnp.asarray(cotangent), initial_state=initial_state,
    )
    used = np.isin(np.arange(N_IN), in_idx)
    assert np.all(np.asarray(grads.weight)[~used] == 0)
    _assert_matches_fd(np.asarray(grads.weight)[used], fd_w[used], "weight", min_finite=len(out_idx))
    _assert_matches_fd(grads.input_times[: len(in_time)], fd_t, "input times", min_finite=1)
    assert np.all(np.asarray(grads.input_times)[len(in_time):] == 0)
    if with_state:
        fd_v = _central_difference(lambda v: loss(weight, in_time, in_idx, v, current0), v0, FD_STEP)
        fd_i = _central_difference(lambda i: loss(weight, in_time, in_idx, v0, i), current0, FD_STEP)
        _assert_matches_fd(grads.initial_v, fd_v, "initial v", min_finite=len(out_idx))
        _assert_matches_fd(grads.initial_current, fd_i, "initial current", min_finite=len(out_idx))


# ----------------------------------------------------------------------------------------------
# Silent neurons, padding, transformations


def test_silent_neurons_and_padding_give_the_scans_zeros_without_nan(x64):
    """Silent neurons, padded input and output slots, inputs after t_max, NaN padding cotangents."""
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, t_ref=2 * T_MAX)
    weight = jnp.zeros((N_IN, SIZE)).at[:, 0].set(3.0)  # only neuron 0 can spike
    inputs = spikes_lib.from_lists([1e-3, 2e-3, 1.5 * T_MAX], [0, 1, 2], capacity=K_IN, dtype=jnp.float64)
    result = simulate_eventprop(weight, inputs, neuron, capacity=3, t_max=T_MAX)
    assert int(result.spikes.count()) == 1
    cotangent = jnp.asarray([1.0, jnp.nan, jnp.nan])
    args = (weight, inputs, result.spikes, neuron, T_MAX, cotangent)
    expected = jax.jit(eventprop_module.eventprop_gradients)(*args)
    got = jax.jit(parallel_eventprop_gradients)(*args)
    for name in ("weight", "input_times", "initial_v", "initial_current", "output_times"):
        value = np.asarray(getattr(got, name))
        assert np.all(np.isfinite(value)), name
        _assert_close(value, getattr(expected, name), name)
    assert np.all(np.asarray(got.weight)[:, 1:] == 0), "silent neurons get zero weight gradients"
    assert np.all(np.asarray(got.input_times)[2:] == 0), "padding and late inputs get zero"
    assert np.all(np.asarray(got.output_times)[1:] == 0), "padding output slots get zero"
    assert np.asarray(got.weight)[0, 0] != 0


def test_no_spikes_and_no_inputs_give_finite_zero_gradients(x64):
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=TAU_SYN, t_ref=2 * T_MAX)

    @jax.jit
    def grad(weight, times, idx):
        def loss(weight, times):
            result = simulate_eventprop(weight, Spikes(times, idx), neuron, capacity=2, t_max=T_MAX)
            return jnp.sum(jnp.where(result.spikes.idx >= 0, result.spikes.time, 0.0))
        return jax.grad(loss, argnums=(0, 1))(weight, times)

    empty = spikes_lib.empty(K_IN, dtype=jnp.float64)
    for weight, inputs in ((jnp.full((N_IN, SIZE), 0.1), spikes_lib.from_lists([1e-3], [0], capacity=K_IN,
                                                                                 dtype=jnp.float64)),
                           (jnp.full((N_IN, SIZE), 3.0), empty)):
        grads = grad(weight, inputs.time, inputs.idx)
        for leaf in grads:
            assert np.all(np.asarray(leaf) == 0) and np.all(np.isfinite(np.asarray(leaf)))


def test_vmap_of_grad_equals_loop_and_jit_equals_eager(x64):
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=1.5 * TAU_SYN, t_ref=2 * T_MAX)
    rng = np.random.default_rng(2)
    weight = jnp.asarray(rng.uniform(0.0, 3.0, (N_IN, SIZE)))
    batch = [spikes_lib.from_lists(np.sort(rng.uniform(0, 0.02, 5)), rng.integers(0, N_IN, 5), capacity=K_IN,
                                   dtype=jnp.float64) for _ in range(3)]
    times = jnp.stack([b.time for b in batch])
    idx = jnp.stack([b.idx for b in batch])

    def loss(weight, times, idx):
        result = simulate_eventprop(weight, Spikes(times, idx), neuron, capacity=SIZE, t_max=T_MAX)
        return jnp.sum(jnp.where(result.spikes.idx >= 0, result.spikes.time, 0.0))

    grad = jax.grad(loss, argnums=(0, 1))
    batched = jax.jit(jax.vmap(grad, in_axes=(None, 0, 0)))(weight, times, idx)
    for k in range(3):
        eager = grad(weight, times[k], idx[k])
        _assert_close(batched[0][k], eager[0], "weight")
        _assert_close(batched[1][k], eager[1], "input times")
    assert np.any(np.asarray(batched[0]) != 0)


# ----------------------------------------------------------------------------------------------
# Choice of the backward pass, and bad options


def test_auto_backward_is_the_closed_form_of_feed_forward_layers():
    single = LIFParameters(t_ref=1.0)
    assert resolve_plan(single, 0.5).backward == "parallel"
    assert resolve_plan(single, 0.5, algorithm="scan").backward == "parallel"
    assert resolve_plan(single, 0.5, recurrent=True).backward == "scan"
    # Several spikes per neuron: the cost rule (choose_backward) per call, whatever the forward.
    assert resolve_plan(LIFParameters(t_ref=0.1), 0.5).backward == "feedforward"
    assert resolve_plan(LIFParameters(t_ref=0.0), 0.5, algorithm="multispike").backward == "feedforward"
    assert resolve_plan(LIFParameters(t_ref=0.0), 0.5, algorithm="scan").backward == "feedforward"
    assert resolve_plan(LIFParameters(t_ref=0.1), 0.5, backward="parallel").backward == "multispike"
    assert resolve_plan(LIFParameters(t_ref=0.1), 0.5, recurrent=True).backward == "scan"
    # Explicit choices: the scan always; "parallel" is the closed form that fits the layer.
    assert resolve_plan(single, 0.5, backward="scan").backward == "scan"
    assert resolve_plan(LIFParameters(t_ref=0.1), 0.5, backward="scan").backward == "scan"
    assert resolve_plan(single, 0.5, algorithm="scan", backward="parallel").backward == "parallel"
    assert resolve_plan(LIFParameters(t_ref=0.1), 0.5, algorithm="scan", backward="parallel").backward == "multispike"


def test_backward_cost_rule():
    # 10 * slots * size <= (133 + size) * (slots + capacity [x 2 with releases])
    assert choose_backward(100, 522, 128, False) == "multispike"  # Randman hidden: 128000 <= 162342
    assert choose_backward(522, 59, 10, False) == "multispike"  # Randman output: 52200 <= 83083
    assert choose_backward(2000, 511, 128, False) == "scan"  # 2000 input events: 2560000 > 655371
    assert choose_backward(100, 400, 128, True) == "multispike"  # releases: 900 steps
    # the boundary counts for the closed form: 10 * 1 * 133 = 1330 = 266 * (1 + 4)
    assert choose_backward(1, 4, 133, False) == "multispike"
    assert choose_backward(1, 3, 133, False) == "scan"  # 1330 > 266 * 4
    assert choose_backward(1, 2, 133, True) == "multispike"  # releases: 1 + 2 x 2 steps


@pytest.mark.parametrize("kwargs,message", [
    (dict(backward="adjoint"), "backward must be one of"),
    (dict(backward="parallel", recurrent=True), "backward='parallel'.*feed-forward.*recurrent"),
    (dict(backward="parallel", t_ref=0.1, recurrent=True), "backward='parallel'.*feed-forward.*recurrent"),
])
def test_bad_backward_raises(kwargs, message):
    t_ref = kwargs.pop("t_ref", 1.0)
    with pytest.raises(ValueError, match=message):
        resolve_plan(LIFParameters(t_ref=t_ref), 0.5, **kwargs)


def test_parallel_backward_with_external_spikes_raises():
    weight = jnp.ones((2, 3))
    inputs = spikes_lib.from_lists([1e-3], [0], capacity=2)
    external = spikes_lib.from_lists([2e-3, 3e-3], [0, 0], capacity=2)
    with pytest.raises(ValueError, match="backward='parallel' needs the simulated spikes"):
        simulate_eventprop(weight, inputs, LIFParameters(t_ref=1.0), capacity=2, t_max=0.01,
                           external_spikes=external, backward="parallel")


def _record_backwards(monkeypatch):
    """Wrap both backward functions to record which one a gradient calls."""
    calls = []
    for name in ("eventprop_gradients", "parallel_eventprop_gradients", "multispike_eventprop_gradients"):
        original = getattr(eventprop_module, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(eventprop_module, name, wrapper)
    return calls


def test_gradient_uses_the_closed_form_of_feed_forward_layers_unless_asked(monkeypatch):
    calls = _record_backwards(monkeypatch)
    weight = jnp.full((2, 3), 2.0)
    inputs = spikes_lib.from_lists([1e-3, 2e-3], [0, 1], capacity=3)

    def grad(neuron, **kwargs):
        calls.clear()
        eventprop_module._adjoint.clear_cache()  # equal plans would reuse the traced program

        def loss(weight):
            result = simulate_eventprop(weight, inputs, neuron, capacity=3, t_max=0.02, **kwargs)
            return jnp.sum(jnp.where(result.spikes.idx >= 0, result.spikes.time, 0.0))

        jax.make_jaxpr(jax.grad(loss))(weight)  # traces the backward pass; compiling adds nothing here
        return list(calls)

    single = LIFParameters(t_ref=1.0)
    assert grad(single) == ["parallel_eventprop_gradients"]
    assert grad(single, backward="scan") == ["eventprop_gradients"]
    # Several spikes per neuron: the multi-spike closed form, unless the scan is asked for.
    assert grad(LIFParameters(t_ref=1e-3)) == ["multispike_eventprop_gradients"]
    assert grad(LIFParameters(t_ref=1e-3), algorithm="multispike") == ["multispike_eventprop_gradients"]
    assert grad(LIFParameters(t_ref=1e-3), backward="scan") == ["eventprop_gradients"]
    assert grad(LIFParameters(t_ref=1e-3), backward="parallel") == ["multispike_eventprop_gradients"]
    assert grad(LIFParameters(t_ref=1e-3), algorithm="scan", backward="parallel") == ["multispike_eventprop_gradients"]
    assert grad(single, external_spikes=spikes_lib.from_lists([5e-3], [1], capacity=3)) == ["eventprop_gradients"]
    # Layers resolve the same plan at construction.
    layer = LIF(3, t_ref=1.0, t_max=0.02, capacity=3)
    _, params = layer.init(jax.random.PRNGKey(0), (2,))

    def layer_loss(params):
        _, out, _ = layer.apply(params, inputs)
        return jnp.sum(jnp.where(out.idx >= 0, out.time, 0.0))

    calls.clear()
    jax.make_jaxpr(jax.grad(layer_loss))(params)
    assert calls == ["parallel_eventprop_gradients"]


def test_long_window_input_long_after_a_spike_has_a_finite_gradient():
    """float32, window of 200 tau_syn: an input 180 tau_syn after a neuron's spike must not turn
    its weight gradient into NaN (a decay factor evaluated past the spike overflowed once)."""
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, t_ref=2.0)
    weight = jnp.asarray([[5.0, 0.5]], jnp.float32)
    inputs = Spikes(jnp.asarray([1e-3, 0.9], jnp.float32), jnp.asarray([0, 0], jnp.int32))

    def loss(weight, backward):
        result = simulate_eventprop(weight, inputs, neuron, capacity=2, t_max=1.0, backward=backward)
        spiked = result.spikes.idx >= 0
        return jnp.sum(jnp.where(spiked, result.spikes.time, 0.0)) + jnp.sum(result.final_state.v)

    assert int(simulate_eventprop(weight, inputs, neuron, capacity=2, t_max=1.0).spikes.count()) == 1
    closed, scan = (jax.jit(jax.grad(loss), static_argnums=1)(weight, b) for b in ("parallel", "scan"))
    assert np.all(np.isfinite(np.asarray(closed))), closed
    assert float(jnp.abs(closed[0, 0])) > 0
    np.testing.assert_allclose(np.asarray(closed), np.asarray(scan), rtol=1e-5)


def test_forward_spike_currents_equal_the_backwards_own_sum(x64):
    """The parallel forward's I(t_n-) (handed to the closed form) equals the sum over the inputs."""
    from jaxsnn.event.simulate import parallel_with_spike_currents

    rng = np.random.default_rng(5)
    neuron = LIFParameters(tau_syn=rng.uniform(3e-3, 6e-3, SIZE), tau_mem=rng.uniform(4e-3, 1.2e-2, SIZE),
                           t_ref=1.0)
    weight = rng.uniform(-1.0, 6.0, (N_IN, SIZE))
    weight[:, -1] = -1.0  # one neuron stays silent
    weight = jnp.asarray(weight)
    inputs = spikes_lib.from_lists(np.sort(rng.uniform(0, 0.8 * T_MAX, K_IN - 2)), rng.integers(0, N_IN, K_IN - 2),
                                   capacity=K_IN, dtype=jnp.float64)
    state = LIFState(v=jnp.zeros(SIZE), current=jnp.asarray(rng.uniform(0, 2, SIZE)),
                     refractory_until=jnp.full(SIZE, -jnp.inf))
    plan = resolve_plan(neuron, T_MAX)
    assert plan.algorithm == "parallel"
    result, current = parallel_with_spike_currents(plan, weight, inputs, neuron, capacity=SIZE, t_max=T_MAX,
                                                   initial_state=state)
    spiked = np.zeros(SIZE, bool)
    idx = np.asarray(result.spikes.idx)
    spiked[idx[idx >= 0]] = True
    assert 2 <= spiked.sum() < SIZE, "the comparison needs spiking and silent neurons"
    assert np.all(np.asarray(current)[~spiked] == 0)
    # The backward's own sum, through its default path, against the forward's values.
    cotangent = jnp.asarray(rng.normal(size=SIZE))
    args = (weight, inputs, result.spikes, neuron, T_MAX, cotangent)
    summed = parallel_eventprop_gradients(*args, initial_state=state)
    handed = parallel_eventprop_gradients(*args, initial_state=state, current_before_spike=current)
    for name in ("weight", "input_times", "initial_v", "initial_current"):
        assert np.any(np.asarray(getattr(summed, name)) != 0), name
    for name, got, expected in zip(summed._fields, handed, summed):
        if expected is not None:
            np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-11, atol=1e-14, err_msg=name)
    # And the slope they imply is the one of a real crossing (the current is above threshold drive).
    assert np.all(np.asarray(current)[spiked] > float(neuron.v_th - neuron.v_leak) - 1e-9)


def test_spike_currents_need_the_parallel_plan():
    from jaxsnn.event.simulate import parallel_with_spike_currents

    plan = resolve_plan(LIFParameters(t_ref=0.0), T_MAX)
    with pytest.raises(ValueError, match="plan.algorithm == 'parallel'"):
        parallel_with_spike_currents(plan, jnp.ones((N_IN, SIZE)), spikes_lib.empty(K_IN), LIFParameters(t_ref=0.0),
                                     capacity=SIZE, t_max=T_MAX)
