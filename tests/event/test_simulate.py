"""Exact event-driven simulation against the shared float64 reference, gradients, overflow, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

from jaxsnn import spikes as spikes_lib
from jaxsnn.event import (
    LIFParameters,
    LIFState,
    checked_inputs,
    psp_peak,
    required_capacity,
    simulate,
    validate_inputs,
)
from jaxsnn.testing import strategies
from jaxsnn.testing.reference import simulate_event

N_IN, SIZE, SLOTS, CAPACITY = 3, 3, 8, 32
TAU_SYN = 5e-3
T_MAX = 10 * TAU_SYN
RATIOS = [(1.0, "lambertw"), (2.0, "quadratic"), (0.5, "root"), (1.5, "root"), (3.0, "root"), (10.0, "root")]


# Neuron parameters are traced arguments, so one compilation serves every drawn parameter set
# (per kernel and dtype); the analytic kernels are named explicitly.
@functools.partial(jax.jit, static_argnames=("kernel", "capacity"))
def run(weight, spikes, neuron, recurrent_weight=None, *, kernel, capacity=CAPACITY, t_max=T_MAX,
        initial_state=None):
    return simulate(weight, spikes, neuron, capacity=capacity, t_max=t_max, kernel=kernel,
                    recurrent_weight=recurrent_weight, initial_state=initial_state)


def _valid(result):
    n = int(result.spikes.count())
    return np.asarray(result.spikes.time[:n], np.float64), np.asarray(result.spikes.idx[:n])


def _compare(weight, spikes, neuron, kernel, dtype, tolerance, recurrent=None):
    """Spike times of ``simulate`` vs the float64 reference, neuron by neuron.

    Returns ``(largest error, number of reference spikes compared)``. When the reference has
    more spikes than ``CAPACITY``, the overflow must be flagged and the spikes that fit must be
    the earliest ones: those before a cutoff in the last clear gap (> 4 tolerances) among the
    reference's first ``CAPACITY`` spikes are compared.
    """
    weight = np.asarray(weight, dtype)
    recurrent = None if recurrent is None else np.asarray(recurrent, dtype)
    neuron = LIFParameters(*[np.asarray(v, dtype) for v in neuron])
    result = run(jnp.asarray(weight), spikes, neuron,
                 None if recurrent is None else jnp.asarray(recurrent), kernel=kernel)
    want_t, want_i = simulate_event(
        weight.astype(np.float64), np.asarray(spikes.time, np.float64), np.asarray(spikes.idx),
        LIFParameters(*[float(v) for v in neuron]), T_MAX,
        recurrent_weight=None if recurrent is None else recurrent.astype(np.float64),
    )
    got_t, got_i = _valid(result)
    if len(want_t) > CAPACITY:
        assert bool(result.overflow), f"{len(want_t)} reference spikes in {CAPACITY} slots, overflow not flagged"
        head = want_t[:CAPACITY]
        gaps = np.flatnonzero(np.diff(head) > 4 * tolerance)
        assert gaps.size, "no clear gap among the first spikes"
        cutoff = 0.5 * (head[gaps[-1]] + head[gaps[-1] + 1])
        keep_want, keep_got = want_t < cutoff, got_t < cutoff
        want_t, want_i, got_t, got_i = want_t[keep_want], want_i[keep_want], got_t[keep_got], got_i[keep_got]
    else:
        assert not bool(result.overflow)
    assert len(got_t) == len(want_t), (got_t, want_t, got_i, want_i)
    # Same neurons in the same order (up to the order of events closer than the tolerance).
    for neuron_index in range(weight.shape[1]):
        np.testing.assert_allclose(got_t[got_i == neuron_index], want_t[want_i == neuron_index],
                                   rtol=0, atol=tolerance)
    error = max((np.max(np.abs(got_t[got_i == n] - want_t[want_i == n]), initial=0.0)
                 for n in range(weight.shape[1])), default=0.0)
    return error, len(want_t)


@st.composite
def spiking_weights(draw, neuron):
    """Weights in units of the threshold-reaching weight, with neuron 0 excitatory from every input.

    ``unit = (v_th - v_leak) / psp_peak``: one input of weight ``unit`` lifts a neuron at rest
    exactly to threshold. Column 0 is at least ``1.2 unit`` (so neuron 0 spikes after the first
    input, whatever the tau ratio), the rest in ``[-1, 4] unit``; ties (two identical columns)
    are kept.
    """
    factors = draw(strategies.weights((N_IN, SIZE), low=-1.0, high=4.0, ties=True))
    tied = [k for k in range(SIZE) if np.array_equal(factors[:, k], factors[:, 0])]
    factors[:, tied] += max(0.0, 1.2 - float(np.min(factors[:, 0])))
    unit = (float(neuron.v_th) - float(neuron.v_leak)) / psp_peak(float(neuron.tau_mem), float(neuron.tau_syn))
    return factors * unit


def _draw_case(data, ratio, dtype):
    neuron = data.draw(strategies.lif_parameters("event", tau_ratio=ratio, tau_syn=TAU_SYN))
    weight = data.draw(spiking_weights(neuron))
    spikes = data.draw(strategies.spikes(N_IN, SLOTS, 0.6 * T_MAX, min_events=1, dtype=dtype))
    return neuron, weight, spikes


@pytest.mark.parametrize("ratio,kernel", RATIOS)
@given(data=st.data())
@settings(max_examples=4)
def test_matches_reference_float64(ratio, kernel, data):
    """Spike times within 1e-6 tau_syn of the float64 reference (observed: ~1e-13 tau_syn).

    Every drawn network spikes (``spiking_weights``); none is discarded.
    """
    # A context manager rather than the x64 fixture: fixtures are not reset between examples.
    with jax.enable_x64(True):
        neuron, weight, spikes = _draw_case(data, ratio, np.float64)
        error, compared = _compare(weight, spikes, neuron, kernel, np.float64, 1e-6 * TAU_SYN)
        assert compared > 0, "the reference neuron 0 must spike"
        assert error <= 1e-11 * TAU_SYN  # near machine precision, not merely the tolerance


@pytest.mark.parametrize("ratio,kernel", [(1.0, "lambertw"), (2.0, "quadratic"), (1.5, "root")])
@given(data=st.data())
@settings(max_examples=4)
def test_matches_reference_float32(ratio, kernel, data):
    """float32: spike times within 1e-4 tau_syn of the float64 reference on the same inputs."""
    neuron, weight, spikes = _draw_case(data, ratio, np.float32)
    _, compared = _compare(weight, spikes, neuron, kernel, np.float32, 1e-4 * TAU_SYN)
    assert compared > 0, "the reference neuron 0 must spike"


@pytest.mark.parametrize("ratio,kernel", [(2.0, "quadratic"), (3.0, "root")])
def test_recurrent_matches_reference(x64, ratio, kernel):
    rng = np.random.default_rng(7)
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=ratio * TAU_SYN, t_ref=1e-3, v_reset=-0.1)
    for _ in range(3):
        weight = rng.normal(2.0, 2.0, (N_IN, SIZE))
        recurrent = rng.normal(0.0, 1.5, (SIZE, SIZE))
        spikes = spikes_lib.from_lists(rng.uniform(0, 0.02, 6), rng.integers(0, N_IN, 6), capacity=SLOTS,
                                       dtype=jnp.float64)
        error, compared = _compare(weight, spikes, neuron, kernel, np.float64, 1e-6 * TAU_SYN, recurrent)
        assert compared > 0 and error <= 1e-11 * TAU_SYN


def test_simultaneous_crossings_all_emitted(x64):
    """Identical neurons cross at the same instant: every one is emitted, in index order."""
    weight = jnp.full((N_IN, SIZE), 5.0)
    spikes = spikes_lib.from_lists([1e-3, 1e-3, 2e-3], [0, 1, 2], capacity=SLOTS, dtype=jnp.float64)
    neuron = LIFParameters(t_ref=1.0)
    result = run(weight, spikes, neuron, kernel="quadratic")
    times, idx = _valid(result)
    assert list(idx) == [0, 1, 2] and times[0] == times[1] == times[2]


@pytest.mark.parametrize("recurrent", [False, True])
def test_scan_emits_simultaneous_crossings_one_per_step_with_their_own_derivatives(x64, recurrent):
    """The scan emits one spike per step: identical neurons crossing together (several times each,
    t_ref < t_max) are all emitted at the same instant in index order, each spike time's
    derivative is its own neuron's, a buffer one spike too small is flagged, and the result
    equals the float64 reference."""
    n_in, size = 3, 4
    weight = jnp.full((n_in, size), 5.0)
    recurrent_weight = jnp.full((size, size), 0.1) if recurrent else None
    # a full input buffer: with one spike too many the scan's steps run out while the last tied
    # spike is still pending (the overflow check must see it)
    spikes = spikes_lib.from_lists([1e-3, 1e-3, 2e-3], [0, 1, 2], capacity=3, dtype=jnp.float64)
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, t_ref=4e-3)
    result = simulate(weight, spikes, neuron, capacity=40, t_max=T_MAX, kernel="quadratic",
                      recurrent_weight=recurrent_weight, algorithm="scan")
    times, idx = _valid(result)
    groups = len(idx) // size
    assert groups >= 2 and len(idx) == groups * size and not bool(result.overflow)
    for g in range(groups):  # every neuron fires in every group, at one instant, in index order
        assert list(idx[g * size:(g + 1) * size]) == list(range(size))
        assert np.all(times[g * size:(g + 1) * size] == times[g * size])
    ref_times, ref_idx = simulate_event(np.asarray(weight), np.asarray([1e-3, 1e-3, 2e-3]), np.asarray([0, 1, 2]),
                                        neuron, T_MAX, None if recurrent_weight is None else np.asarray(recurrent_weight))
    assert len(ref_times) == len(times)
    np.testing.assert_allclose(np.sort(times), np.sort(ref_times), rtol=0, atol=1e-12 * TAU_SYN)
    # one spike fewer than needed: flagged, never silently dropped
    short = simulate(weight, spikes, neuron, capacity=len(idx) - 1, t_max=T_MAX, kernel="quadratic",
                     recurrent_weight=recurrent_weight, algorithm="scan")
    assert bool(short.overflow)

    # d(first spike of neuron k)/d(weights): only column k moves it (its own crossing), whatever
    # the order in which the tied spikes were emitted
    def first_time(w, k):
        out = simulate(w, spikes, neuron, capacity=40, t_max=T_MAX, kernel="quadratic",
                       recurrent_weight=None, algorithm="scan").spikes
        return jnp.min(jnp.where(out.idx == k, out.time, jnp.inf))

    for k in range(size):
        g = np.asarray(jax.grad(first_time)(weight, k))
        assert np.all(np.isfinite(g)) and np.all(g[:, k] != 0.0)
        others = np.delete(g, k, axis=1)
        assert np.all(others == 0.0), (k, g)


def _neuron_weighted_sum(times, idx, coefficients):
    """``sum_n sum_j c[n, j] t_{n,j}`` over the spikes of a buffer (``t_{n,j}``: the ``j``-th spike
    of neuron ``n``); coefficients per neuron's own spikes, so ties between neurons do not matter."""
    valid = idx >= 0
    one_hot = (idx[:, None] == jnp.arange(coefficients.shape[0])) & valid[:, None]
    ordinal = jnp.sum((jnp.cumsum(one_hot, axis=0) - one_hot) * one_hot, axis=1)
    c = coefficients[jnp.clip(idx, 0, coefficients.shape[0] - 1), jnp.clip(ordinal, 0, coefficients.shape[1] - 1)]
    return jnp.sum(jnp.where(valid, c * jnp.where(valid, times, 0.0), 0.0))


def _reference_objective(coefficients, counts, t_max=T_MAX):
    """The same sum from the float64 reference; NaN where a perturbation creates or deletes a spike."""

    def objective(weight, in_time, in_idx, neuron):
        times, idx = simulate_event(np.asarray(weight, np.float64), in_time, in_idx, neuron, t_max)
        if np.any(np.bincount(idx, minlength=len(counts)) != counts):
            return np.nan
        ordinal = np.array([np.sum(idx[:k] == n) for k, n in enumerate(idx)], dtype=int)
        return float(np.sum(coefficients[idx, ordinal] * times))

    return objective


# (The Lambert W kernel's implicit-function gradient is checked in test_kernels.py.)
@pytest.mark.parametrize("ratio,kernel", [(2.0, "quadratic"), (1.5, "root")])
def test_gradient_matches_finite_differences(x64, ratio, kernel):
    """d(spike times)/d(weights, input times) vs float64 central differences of the float64
    reference (independent of the code under test), rtol 1e-4; every difference is defined."""
    rng = np.random.default_rng(11)
    drawn = rng.normal(2.0, 1.5, (N_IN, SIZE))
    times = np.sort(rng.uniform(0, 0.01, 6))
    idx = rng.integers(0, N_IN, 6)
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=ratio * TAU_SYN, t_ref=2e-3, v_reset=-0.1, v_leak=0.05)
    coefficients = rng.normal(size=(SIZE, CAPACITY))

    pad_idx = jnp.asarray(np.pad(idx, (0, SLOTS - 6), constant_values=-1), jnp.int32)

    @jax.jit
    def objective(w, t):
        spikes = spikes_lib.Spikes(jnp.pad(t, (0, SLOTS - 6), constant_values=jnp.inf), pad_idx)
        result = simulate(w, spikes, neuron, capacity=CAPACITY, t_max=T_MAX, kernel=kernel)
        return _neuron_weighted_sum(result.spikes.time, result.spikes.idx, jnp.asarray(coefficients)), result

    gradient = jax.jit(jax.grad(lambda w, t: objective(w, t)[0], argnums=(0, 1)))
    # Drawn weights, and the same with columns 1 and 2 equal to column 0: then neurons cross at
    # the same instants, where each spike time must keep its own derivative.
    tied = np.repeat(drawn[:, :1], SIZE, axis=1)
    for weight, simultaneous in ((jnp.asarray(drawn), False), (jnp.asarray(tied), True)):
        _, result = objective(weight, jnp.asarray(times))
        assert int(result.spikes.count()) >= 3 and not bool(result.overflow)
        spiking = np.asarray(result.spikes.time)[np.asarray(result.spikes.idx) >= 0]
        assert (np.unique(spiking).size < spiking.size) == simultaneous
        _, out_idx = simulate_event(np.asarray(weight), times, idx, neuron, T_MAX)
        np.testing.assert_array_equal(np.asarray(result.spikes.idx[: len(out_idx)]), out_idx)
        reference = _reference_objective(coefficients, np.bincount(out_idx, minlength=SIZE))
        grad_w, grad_t = gradient(weight, jnp.asarray(times))
        h = 1e-7
        weight64 = np.asarray(weight)
        for k in range(weight64.size):
            e = np.zeros(weight64.size)
            e[k] = h
            e = e.reshape(weight64.shape)
            fd = (reference(weight64 + e, times, idx, neuron) - reference(weight64 - e, times, idx, neuron)) / (2 * h)
            assert np.isfinite(fd), f"weight {k}: a perturbation of {h} changed the spike count"
            np.testing.assert_allclose(grad_w.reshape(-1)[k], fd, rtol=1e-4, atol=1e-9)
        for k in range(len(times)):
            e = np.zeros(len(times))
            e[k] = 1e-9
            fd = (reference(weight64, times + e, idx, neuron) - reference(weight64, times - e, idx, neuron)) / 2e-9
            assert np.isfinite(fd), f"input time {k}: a perturbation of 1e-9 changed the spike count"
            np.testing.assert_allclose(grad_t[k], fd, rtol=1e-4, atol=1e-9)


def test_gradient_wrt_neuron_parameters(x64):
    """Traced time constants select the root solver; its gradient matches central differences
    of the float64 reference."""
    rng = np.random.default_rng(5)
    weight = jnp.asarray(rng.normal(2.5, 1.0, (N_IN, SIZE)))
    in_time, in_idx = np.asarray([1e-3, 2e-3, 4e-3]), np.asarray([0, 1, 2])
    spikes = spikes_lib.from_lists(in_time, in_idx, capacity=SLOTS, dtype=jnp.float64)
    coefficients = np.ones((SIZE, CAPACITY))

    @jax.jit
    def objective(p):
        neuron = LIFParameters(tau_syn=p[0], tau_mem=p[1], v_th=p[2])
        result = simulate(weight, spikes, neuron, capacity=CAPACITY, t_max=T_MAX)
        return _neuron_weighted_sum(result.spikes.time, result.spikes.idx, jnp.asarray(coefficients))

    def reference_neuron(p):
        return LIFParameters(tau_syn=float(p[0]), tau_mem=float(p[1]), v_th=float(p[2]))

    p = np.asarray([TAU_SYN, 1.7 * TAU_SYN, 1.0])
    _, out_idx = simulate_event(np.asarray(weight), in_time, in_idx, reference_neuron(p), T_MAX)
    assert len(out_idx) >= 2
    reference = _reference_objective(coefficients, np.bincount(out_idx, minlength=SIZE))
    grad = jax.grad(objective)(jnp.asarray(p))
    for k, h in enumerate([1e-9, 1e-9, 1e-7]):
        e = np.zeros(3)
        e[k] = h
        fd = (reference(weight, in_time, in_idx, reference_neuron(p + e))
              - reference(weight, in_time, in_idx, reference_neuron(p - e))) / (2 * h)
        assert np.isfinite(fd) and fd != 0
        np.testing.assert_allclose(grad[k], fd, rtol=1e-4)


def test_overflow_is_flagged_never_silent():
    weight = jnp.full((N_IN, SIZE), 8.0)
    spikes = spikes_lib.from_lists([0.0, 1e-3, 2e-3], [0, 1, 2], capacity=SLOTS)
    neuron = LIFParameters()
    full = run(weight, spikes, neuron, kernel="quadratic")
    n_spikes = int(full.spikes.count())
    assert not bool(full.overflow) and 4 < n_spikes < CAPACITY
    short = run(weight, spikes, neuron, kernel="quadratic", capacity=n_spikes - 1)
    assert bool(short.overflow)
    # The spikes that fit are the earliest ones, exactly.
    np.testing.assert_array_equal(short.spikes.time, full.spikes.time[: n_spikes - 1])
    # n_spikes slots suffice (required_capacity starts there and does not overflow).
    assert required_capacity(weight, spikes, neuron, t_max=T_MAX, start=n_spikes) == n_spikes


def test_jit_equals_eager_and_vmap_equals_loop():
    rng = np.random.default_rng(2)
    weight = jnp.asarray(rng.normal(2.0, 2.0, (N_IN, SIZE)), jnp.float32)
    batch = [spikes_lib.from_lists(rng.uniform(0, 0.02, 5), rng.integers(0, N_IN, 5), capacity=SLOTS)
             for _ in range(4)]
    neuron = LIFParameters()
    eager = [simulate(weight, s, neuron, capacity=CAPACITY, t_max=T_MAX) for s in batch]
    jitted = [run(weight, s, neuron, kernel="quadratic") for s in batch]
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *batch)
    vmapped = jax.vmap(lambda s: run(weight, s, neuron, kernel="quadratic"))(stacked)
    for k, (a, b) in enumerate(zip(eager, jitted)):
        np.testing.assert_array_equal(a.spikes.idx, b.spikes.idx)
        np.testing.assert_allclose(a.spikes.time, b.spikes.time, rtol=1e-6)
        np.testing.assert_array_equal(vmapped.spikes.idx[k], b.spikes.idx)
        np.testing.assert_allclose(vmapped.spikes.time[k], b.spikes.time, rtol=1e-6)
    assert sum(int(r.spikes.count()) for r in eager) > 0


def test_streaming_with_final_state(x64):
    """Two windows chained through final_state equal one window of twice the length."""
    rng = np.random.default_rng(3)
    weight = jnp.asarray(rng.normal(2.0, 2.0, (N_IN, SIZE)))
    neuron = LIFParameters(t_ref=2e-3)
    times = np.sort(rng.uniform(0, 2 * T_MAX, SLOTS))
    idx = rng.integers(0, N_IN, SLOTS)

    def buffer(t, i):
        return spikes_lib.from_lists(t, i, capacity=SLOTS, dtype=jnp.float64)

    whole = run(weight, buffer(times, idx), neuron, kernel="quadratic", t_max=2 * T_MAX)
    first_part = times <= T_MAX
    first = run(weight, buffer(times[first_part], idx[first_part]), neuron, kernel="quadratic")
    second = run(weight, buffer(times[~first_part] - T_MAX, idx[~first_part]), neuron, kernel="quadratic",
                 initial_state=first.final_state)
    t1, i1 = _valid(first)
    t2, i2 = _valid(second)
    tw, iw = _valid(whole)
    assert len(tw) > 2
    np.testing.assert_array_equal(np.concatenate([i1, i2]), iw)
    np.testing.assert_allclose(np.concatenate([t1, t2 + T_MAX]), tw, atol=1e-12)
    np.testing.assert_allclose(second.final_state.v, whole.final_state.v, atol=1e-12)


def test_no_input_no_spike_and_padding_only():
    result = run(jnp.ones((N_IN, SIZE)), spikes_lib.empty(SLOTS), LIFParameters(), kernel="quadratic")
    assert int(result.spikes.count()) == 0 and not bool(result.overflow)
    np.testing.assert_array_equal(result.final_state.v, np.zeros(SIZE))


GOOD = dict(weight=np.ones((N_IN, SIZE), np.float32), neuron=LIFParameters())


def _good_spikes():
    return spikes_lib.from_lists([1e-3, 2e-3], [0, 1], capacity=4)


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(input_spikes=spikes_lib.Spikes(jnp.asarray([2e-3, 1e-3]), jnp.asarray([0, 1], jnp.int32))), "not sorted"),
        (dict(input_spikes=spikes_lib.Spikes(jnp.asarray([-1e-3, 1e-3]), jnp.asarray([0, 1], jnp.int32))), "negative"),
        (dict(input_spikes=spikes_lib.Spikes(jnp.asarray([1e-3, jnp.nan]), jnp.asarray([0, 1], jnp.int32))), "NaN"),
        (dict(input_spikes=spikes_lib.Spikes(jnp.asarray([1e-3, jnp.inf]), jnp.asarray([0, 1], jnp.int32))), "non-finite"),
        (dict(input_spikes=spikes_lib.Spikes(jnp.asarray([1e-3, 2e-3]), jnp.asarray([0, 3], jnp.int32))), "n_neurons"),
        (dict(capacity=0), "capacity must be a positive integer, got 0"),
        (dict(capacity=2.5), "capacity must be a positive integer, got float"),
        (dict(neuron=LIFParameters(tau_syn=0.0)), "tau_syn"),
        (dict(neuron=LIFParameters(tau_mem=-1.0)), "tau_mem"),
        (dict(neuron=LIFParameters(v_th=0.0, v_reset=0.0)), "v_th must be > v_reset"),
        (dict(neuron=LIFParameters(t_ref=-1.0)), "t_ref"),
        (dict(t_max=float("inf")), "t_max"),
        (dict(t_max=0.0), "t_max"),
        (dict(weight=np.ones((N_IN,), np.float32)), "weight must be 2-dimensional"),
        (dict(weight=np.full((N_IN, SIZE), np.nan, np.float32)), "weight contains"),
        (dict(recurrent_weight=np.ones((2, 2), np.float32)), "recurrent_weight must have shape"),
        (dict(initial_state=LIFState(jnp.full(SIZE, 2.0), jnp.zeros(SIZE), jnp.zeros(SIZE))), "below v_th"),
        (dict(kernel="quadratic", neuron=LIFParameters(tau_mem=7e-3)), "quadratic"),
    ],
)
def test_bad_input_raises_naming_the_argument(change, match):
    arguments = dict(GOOD, input_spikes=_good_spikes(), capacity=4, t_max=T_MAX)
    arguments.update(change)
    error = TypeError if "got float" in match else ValueError
    with pytest.raises(error, match=match):
        simulate(arguments.pop("weight"), arguments.pop("input_spikes"), arguments.pop("neuron"), **arguments)


def _spikes(times, idx, time_dtype=np.float32, idx_dtype=np.int32):
    return spikes_lib.Spikes(np.asarray(times, time_dtype), np.asarray(idx, idx_dtype))


VALID = dict(
    weight=np.ones((N_IN, SIZE), np.float32),
    input_spikes=_spikes([1e-3, 2e-3, np.inf], [0, 1, -1]),
    neuron=LIFParameters(),
    capacity=4,
    t_max=T_MAX,
    recurrent_weight=None,
    initial_state=None,
)
STATE = LIFState(np.zeros(SIZE), np.zeros(SIZE), np.full(SIZE, -np.inf))

# Every error path of validate_inputs: (changed arguments, exception, message).
VALIDATION_ERRORS = [
    (dict(capacity=0), ValueError, r"capacity must be a positive integer, got 0"),
    (dict(capacity=3.0), TypeError, r"capacity must be a positive integer, got float"),
    (dict(capacity=True), TypeError, r"capacity must be a positive integer, got bool"),
    (dict(t_max=0.0), ValueError, r"t_max must be finite and > 0"),
    (dict(t_max=np.nan), ValueError, r"t_max must be finite and > 0"),
    (dict(neuron=(5e-3, 1e-2, 1.0, 0.0, 0.0, 0.0)), TypeError, r"must be a LIFParameters, got tuple"),
    (dict(neuron=LIFParameters(tau_syn=-1.0)), ValueError, r"tau_syn must be finite and > 0"),
    (dict(neuron=LIFParameters(tau_mem=0.0)), ValueError, r"tau_mem must be finite and > 0"),
    (dict(neuron=LIFParameters(t_ref=-1e-3)), ValueError, r"t_ref must be finite and >= 0"),
    (dict(neuron=LIFParameters(v_th=np.inf)), ValueError, r"v_th must be finite"),
    (dict(neuron=LIFParameters(v_reset=np.nan)), ValueError, r"v_reset must be finite"),
    (dict(neuron=LIFParameters(v_leak=-np.inf)), ValueError, r"v_leak must be finite"),
    (dict(neuron=LIFParameters(v_th=0.5, v_reset=0.5)), ValueError, r"v_th must be > v_reset"),
    (dict(neuron=LIFParameters(v_th=0.5, v_leak=0.6, v_reset=0.0)), ValueError, r"v_th must be > v_leak"),
    (dict(neuron=LIFParameters(v_th=np.ones(SIZE + 1))), ValueError,
     rf"neuron.v_th must be a scalar or have shape \({SIZE},\), got shape \({SIZE + 1},\)"),
    (dict(neuron=LIFParameters(tau_mem=np.full((2, SIZE), 1e-2))), ValueError, r"neuron.tau_mem must be a scalar"),
    (dict(weight=np.ones(N_IN, np.float32)), ValueError, r"weight must be 2-dimensional \(n_inputs, size\)"),
    (dict(weight=np.ones((N_IN, SIZE), np.int32)), TypeError, r"weight must have a floating-point dtype"),
    (dict(weight=np.full((N_IN, SIZE), np.inf, np.float32)), ValueError, rf"weight contains {N_IN * SIZE} NaN/inf"),
    (dict(input_spikes=(np.zeros(2), np.zeros(2, np.int32))), TypeError, r"input_spikes must be a jaxsnn.Spikes"),
    (dict(input_spikes=_spikes([1e-3, 2e-3], [0])), ValueError, r"input_spikes.time and input_spikes.idx must have"),
    (dict(input_spikes=_spikes(1e-3, 0)), ValueError, r"input_spikes must have a capacity axis"),
    (dict(input_spikes=_spikes([1e-3], [0], time_dtype=np.int32)), TypeError, r"input_spikes.time must be floating"),
    (dict(input_spikes=_spikes([1e-3], [0], idx_dtype=np.float32)), TypeError, r"input_spikes.idx must be an integer"),
    (dict(input_spikes=_spikes([np.nan], [0])), ValueError, r"input_spikes contains NaN times"),
    (dict(input_spikes=_spikes([np.inf], [0])), ValueError, r"input_spikes has a real event .* non-finite time"),
    (dict(input_spikes=_spikes([-1e-3], [0])), ValueError, r"input_spikes has negative times"),
    (dict(input_spikes=_spikes([1e-3], [-2])), ValueError, r"input_spikes has indices below -1"),
    (dict(input_spikes=_spikes([1e-3, 2e-3], [0, -1])), ValueError, r"input_spikes has padding .* not \+inf"),
    (dict(input_spikes=_spikes([2e-3, 1e-3], [0, 1])), ValueError, r"input_spikes is not sorted"),
    (dict(input_spikes=_spikes([1e-3], [N_IN])), ValueError, rf"input_spikes has indices >= n_neurons \({N_IN}\)"),
    (dict(input_spikes=_spikes([[1e-3], [2e-3]], [[0], [1]])), ValueError,
     r"input_spikes must hold one sample .* use jax.vmap for batches"),
    (dict(recurrent_weight=np.ones((SIZE, SIZE + 1), np.float32)), ValueError,
     rf"recurrent_weight must have shape \({SIZE}, {SIZE}\)"),
    (dict(recurrent_weight=np.full((SIZE, SIZE), np.nan, np.float32)), ValueError, r"recurrent_weight contains"),
    (dict(initial_state=(np.zeros(SIZE), np.zeros(SIZE), np.zeros(SIZE))), TypeError,
     r"initial_state must be a jaxsnn.event.LIFState, got tuple"),
    (dict(initial_state=STATE._replace(current=np.zeros(SIZE + 1))), ValueError,
     rf"initial_state.current must have shape \({SIZE},\)"),
    (dict(initial_state=STATE._replace(v=np.full(SIZE, np.nan))), ValueError, r"initial_state.v contains"),
    (dict(initial_state=STATE._replace(current=np.full(SIZE, np.inf))), ValueError, r"initial_state.current contains"),
    (dict(initial_state=STATE._replace(v=np.full(SIZE, 1.0))), ValueError, r"initial_state.v must be below v_th"),
]


@pytest.mark.parametrize("change,error,match", VALIDATION_ERRORS)
def test_validate_inputs_every_error_path(change, error, match):
    """Each wrong argument raises the documented exception with a message naming the problem."""
    arguments = dict(VALID, **change)
    with pytest.raises(error, match=match):
        validate_inputs(arguments.pop("weight"), arguments.pop("input_spikes"), arguments.pop("neuron"), **arguments)


def test_validate_inputs_accepts_valid_arguments_and_skips_traced_values():
    arguments = dict(VALID, recurrent_weight=np.zeros((SIZE, SIZE), np.float32), initial_state=STATE)
    validate_inputs(arguments.pop("weight"), arguments.pop("input_spikes"), arguments.pop("neuron"), **arguments)

    @jax.jit
    def traced(weight, time):
        # NaN weights and unsorted times are invisible under jit (checked_inputs covers them);
        # shapes are still checked.
        validate_inputs(weight, spikes_lib.Spikes(time, jnp.asarray([0, 1], jnp.int32)), LIFParameters(),
                        capacity=4, t_max=T_MAX)
        return weight

    traced(jnp.full((N_IN, SIZE), jnp.nan), jnp.asarray([2e-3, 1e-3]))
    with pytest.raises(ValueError, match="weight must be 2-dimensional"):
        traced(jnp.ones(N_IN), jnp.asarray([1e-3, 2e-3]))


def test_checkify_path_under_jit():
    """Under jit values are unknown: checked_inputs reports bad values through checkify."""

    @jax.jit
    def checked(weight, spikes):
        checked_inputs(weight, spikes, LIFParameters(), t_max=T_MAX)
        return simulate(weight, spikes, LIFParameters(), capacity=4, t_max=T_MAX).spikes

    run_checked = checkify.checkify(checked)
    error, _ = run_checked(jnp.ones((N_IN, SIZE)), _good_spikes())
    error.throw()  # valid input: no error
    bad = spikes_lib.Spikes(jnp.asarray([2e-3, 1e-3]), jnp.asarray([0, 5], jnp.int32))
    error, _ = run_checked(jnp.ones((N_IN, SIZE)), bad)
    with pytest.raises(checkify.JaxRuntimeError, match="input_spikes"):
        error.throw()
