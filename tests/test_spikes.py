"""Tests of the fixed-capacity spike buffer and its helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify

from jaxsnn import Spikes
from jaxsnn import spikes as S


def test_from_lists_sorts_and_pads():
    buffer = S.from_lists([0.3, 0.1, 0.2], [1, 0, 2], capacity=5)
    np.testing.assert_array_equal(buffer.time, np.float32([0.1, 0.2, 0.3, np.inf, np.inf]))
    np.testing.assert_array_equal(buffer.idx, [0, 2, 1, -1, -1])
    assert buffer.capacity == 5
    assert int(buffer.count()) == 3
    assert buffer.idx.dtype == jnp.int32


def test_from_lists_keeps_order_of_simultaneous_events():
    buffer = S.from_lists([0.2, 0.1, 0.2], [4, 3, 1])
    np.testing.assert_array_equal(buffer.idx, [3, 4, 1])


def test_from_lists_empty_gives_padding():
    buffer = S.from_lists([], [], capacity=3)
    assert int(buffer.count()) == 0
    assert np.all(np.isinf(buffer.time))


@pytest.mark.parametrize(
    "times, idx, kwargs, error, message",
    [
        ([0.1, 0.2], [0], {}, ValueError, "same length"),
        ([0.1, 0.2, 0.3], [0, 1, 2], {"capacity": 2}, ValueError, "capacity must be >= 3"),
        ([0.1, np.nan], [0, 1], {}, ValueError, "finite"),
        ([0.1, np.inf], [0, 1], {}, ValueError, "finite"),
        ([-0.1, 0.2], [0, 1], {}, ValueError, ">= 0"),
        ([0.1, 0.2], [0, -2], {}, ValueError, "idx must be >= 0"),
        ([0.1, 0.2], [0, 5], {"n_neurons": 5}, ValueError, "out of range"),
        ([0.1], [0.5], {}, TypeError, "integers"),
        ([0.1], [0], {"capacity": 0}, ValueError, "capacity must be >= 1"),
        ([0.1], [0], {"capacity": 2.0}, TypeError, "capacity must be an int"),
    ],
)
def test_from_lists_rejects_bad_input(times, idx, kwargs, error, message):
    with pytest.raises(error, match=message):
        S.from_lists(times, idx, **kwargs)


def test_empty_and_its_errors():
    buffer = S.empty(4)
    assert buffer.capacity == 4 and int(buffer.count()) == 0
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        S.empty(0)


@given(
    st.lists(
        st.tuples(st.floats(0, 10, allow_nan=False), st.integers(0, 4)), min_size=0, max_size=12
    )
)
def test_sort_matches_numpy_stable_sort(events):
    times = np.array([t for t, _ in events], dtype=np.float32)
    idx = np.array([i for _, i in events], dtype=np.int32)
    capacity = 16
    raw = Spikes(
        jnp.concatenate([jnp.asarray(times), jnp.full(capacity - len(events), jnp.inf)]),
        jnp.concatenate([jnp.asarray(idx), jnp.full(capacity - len(events), -1, jnp.int32)]),
    )
    # Reverse so the buffer is unsorted, padding first.
    shuffled = Spikes(raw.time[::-1], raw.idx[::-1])
    result = jax.jit(S.sort)(shuffled)
    order = np.argsort(np.asarray(shuffled.time), kind="stable")
    np.testing.assert_array_equal(result.time, np.asarray(shuffled.time)[order])
    np.testing.assert_array_equal(result.idx, np.asarray(shuffled.idx)[order])
    S.validate(result, n_neurons=5)


def test_sort_turns_invalid_slots_into_padding():
    messy = Spikes(jnp.array([0.5, 0.1, 0.3]), jnp.array([2, -1, 0], jnp.int32))
    result = S.sort(messy)
    np.testing.assert_array_equal(result.time, np.float32([0.3, 0.5, np.inf]))
    np.testing.assert_array_equal(result.idx, [0, 2, -1])


def test_merge_and_truncating_capacity():
    first = S.from_lists([0.1, 0.4], [0, 1], capacity=3)
    second = S.from_lists([0.2, 0.3], [2, 3], capacity=2)
    merged = S.merge(first, second)
    assert merged.capacity == 5
    np.testing.assert_array_equal(merged.idx, [0, 2, 3, 1, -1])
    short = S.merge(first, second, capacity=3)
    np.testing.assert_array_equal(short.idx, [0, 2, 3])


def test_pad_grows_and_refuses_to_drop_events():
    buffer = S.from_lists([0.1, 0.2], [0, 1], capacity=2)
    grown = S.pad(buffer, 4)
    np.testing.assert_array_equal(grown.idx, [0, 1, -1, -1])
    assert S.pad(grown, 2).capacity == 2
    with pytest.raises(ValueError, match="capacity must be >= 2"):
        S.pad(grown, 1)


def test_pad_with_allow_truncation_keeps_the_earliest_events():
    buffer = S.from_lists([0.3, 0.1, 0.2, 0.4], [3, 1, 2, 0], capacity=5)
    short = S.pad(buffer, 2, allow_truncation=True)
    np.testing.assert_array_equal(short.time, np.float32([0.1, 0.2]))
    np.testing.assert_array_equal(short.idx, [1, 2])
    # the same under jit and on a batch (last axis), where no count check can run
    batch = Spikes(jnp.stack([buffer.time, S.shift(buffer, 1.0).time]), jnp.stack([buffer.idx, buffer.idx]))
    jitted = jax.jit(lambda b: S.pad(b, 3, allow_truncation=True))(batch)
    np.testing.assert_allclose(jitted.time, np.float32([[0.1, 0.2, 0.3], [1.1, 1.2, 1.3]]), rtol=1e-6)
    np.testing.assert_array_equal(jitted.idx, [[1, 2, 3], [1, 2, 3]])
    # without permission the same shrink is refused, naming the capacity needed
    with pytest.raises(ValueError, match="it holds 4 events; capacity must be >= 4"):
        S.pad(buffer, 2)


def test_batched_helpers_work_on_last_axis():
    batch = jax.vmap(lambda t: S.shift(S.from_lists([0.1, 0.2], [0, 1], capacity=3), t))(
        jnp.array([0.0, 1.0])
    )
    assert batch.time.shape == (2, 3)
    np.testing.assert_array_equal(batch.count(), [2, 2])
    grown = S.pad(batch, 5)
    assert grown.time.shape == (2, 5)


@pytest.mark.parametrize(
    "time, idx, n_neurons, message",
    [
        ([0.2, 0.1, np.inf], [0, 1, -1], None, "not sorted"),
        ([-0.1, 0.1, np.inf], [0, 1, -1], None, "negative"),
        ([0.1, np.nan, np.inf], [0, 1, -1], None, "NaN"),
        ([0.1, np.inf, np.inf], [0, 1, -1], None, "non-finite"),
        ([0.1, 0.2, 0.3], [0, 1, -1], None, "padding"),
        ([0.1, 0.2, np.inf], [0, 3, -1], 3, "n_neurons"),
        ([0.1, 0.2, np.inf], [0, -4, -1], None, "below -1"),
    ],
)
def test_validate_reports_each_problem(time, idx, n_neurons, message):
    bad = Spikes(jnp.array(time, jnp.float32), jnp.array(idx, jnp.int32))
    with pytest.raises(ValueError, match=message):
        S.validate(bad, n_neurons=n_neurons, name="inputs")


def test_validate_checks_types_and_shapes():
    with pytest.raises(TypeError, match="jaxsnn.Spikes"):
        S.validate((jnp.zeros(3), jnp.zeros(3, jnp.int32)))
    with pytest.raises(ValueError, match="same shape"):
        S.validate(Spikes(jnp.zeros(3), jnp.zeros(2, jnp.int32)))
    with pytest.raises(TypeError, match="integer"):
        S.validate(Spikes(jnp.zeros(3), jnp.zeros(3)))
    with pytest.raises(TypeError, match="floating"):
        S.validate(Spikes(jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32)))
    good = S.from_lists([0.1], [0], capacity=2)
    assert S.validate(good, n_neurons=1) is good


def test_checked_validate_raises_under_jit():
    def run(buffer):
        S.checked_validate(buffer, n_neurons=2, name="inputs")
        return buffer.time.sum()

    checked = jax.jit(checkify.checkify(run))
    error, _ = checked(S.from_lists([0.1, 0.2], [0, 1], capacity=3))
    error.throw()  # a well-formed buffer passes
    bad = Spikes(jnp.array([0.3, 0.1, jnp.inf]), jnp.array([0, 1, -1], jnp.int32))
    error, _ = checked(bad)
    with pytest.raises(checkify.JaxRuntimeError, match="not sorted"):
        error.throw()


def test_dense_round_trip():
    buffer = S.from_lists([0.0, 0.25, 0.25, 0.75], [1, 0, 2, 1], capacity=6)
    dense = S.to_dense(buffer, n_neurons=3, dt=0.25, n_steps=4)
    expected = np.zeros((4, 3))
    expected[0, 1] = expected[1, 0] = expected[1, 2] = expected[3, 1] = 1
    np.testing.assert_array_equal(dense, expected)
    back = S.from_dense(dense, dt=0.25, capacity=6)
    np.testing.assert_array_equal(back.time, buffer.time)
    np.testing.assert_array_equal(back.idx, buffer.idx)


@pytest.mark.parametrize("offset", [0.1, 0.25, 0.49])
def test_from_dense_with_offset_places_events_inside_their_bins(offset):
    dt = 0.5
    dense = np.zeros((4, 3), np.float32)
    dense[0, 2] = dense[1, 0] = dense[1, 1] = dense[3, 2] = 1
    buffer = S.from_dense(jnp.asarray(dense), dt=dt, capacity=6, offset=offset)
    np.testing.assert_allclose(
        buffer.time, np.float32([offset, dt + offset, dt + offset, 3 * dt + offset, np.inf, np.inf]), rtol=1e-6
    )
    np.testing.assert_array_equal(buffer.idx, [2, 0, 1, 2, -1, -1])
    S.validate(buffer, n_neurons=3)
    np.testing.assert_array_equal(S.to_dense(buffer, 3, dt, 4), dense)  # each event stays in its bin
    jitted = jax.jit(lambda d: S.from_dense(d, dt, 6, offset))(jnp.asarray(dense))
    np.testing.assert_array_equal(jitted.time, buffer.time)


@pytest.mark.parametrize("offset", [-0.1, 0.5, 0.7, float("nan")])
def test_from_dense_rejects_offset_outside_the_bin(offset):
    with pytest.raises(ValueError, match=r"offset must be in \[0, dt\) = \[0, 0.5\)"):
        S.from_dense(jnp.ones((2, 2)), dt=0.5, capacity=4, offset=offset)


def test_to_dense_drops_events_outside_window_and_counts_repeats():
    buffer = S.from_lists([0.1, 0.15, 5.0], [0, 0, 1], capacity=4)
    dense = jax.jit(S.to_dense, static_argnums=(1, 3))(buffer, 2, 0.5, 4)
    assert dense[0, 0] == 2 and dense.sum() == 2


def test_from_dense_errors():
    dense = jnp.ones((2, 2))
    with pytest.raises(ValueError, match="capacity must be >= 4"):
        S.from_dense(dense, dt=0.1, capacity=3)
    with pytest.raises(ValueError, match="dt must be finite and > 0"):
        S.from_dense(dense, dt=-0.1, capacity=4)
    with pytest.raises(ValueError, match="n_steps, n_neurons"):
        S.from_dense(jnp.ones(3), dt=0.1, capacity=4)
    with pytest.raises(ValueError, match="dt must be finite and > 0"):
        S.to_dense(S.empty(2), 2, 0.0, 3)


def test_first_spike_times_and_counts():
    buffer = S.from_lists([0.1, 0.2, 0.3], [1, 1, 0], capacity=5)
    np.testing.assert_allclose(S.first_spike_times(buffer, 3), [0.3, 0.1, np.inf])
    np.testing.assert_array_equal(S.spike_counts(buffer, 3), [1, 2, 0])


def test_first_spike_times_is_differentiable():
    def earliest(times):
        buffer = Spikes(times, jnp.array([1, 0, -1], jnp.int32))
        return S.first_spike_times(buffer, 2).sum()

    grad = jax.grad(earliest)(jnp.array([0.1, 0.3, jnp.inf]))
    np.testing.assert_array_equal(grad, [1.0, 1.0, 0.0])


def test_shift_keeps_padding():
    buffer = S.shift(S.from_lists([0.1], [0], capacity=2), 1.0)
    np.testing.assert_allclose(buffer.time, [1.1, np.inf])


def test_validate_concrete_buffer_captured_inside_jit():
    good = S.from_lists([0.1], [0], capacity=2)
    bad = Spikes(jnp.array([0.3, 0.1]), jnp.array([0, 1], jnp.int32))

    @jax.jit
    def uses(x):
        S.validate(good, n_neurons=1)
        return x + 1

    assert int(uses(1)) == 2

    @jax.jit
    def uses_bad(x):
        S.validate(bad)
        return x

    with pytest.raises(ValueError, match="not sorted"):
        uses_bad(1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_time_order_is_a_stable_lexsort(dtype):
    """Time, then tie, then position; ties, negative times, -0.0 and +inf included; jit and vmap;
    and the lexsort fallback where the composite key would not fit."""
    rng = np.random.default_rng(7)
    n = 400
    times = rng.choice(np.asarray([-2.5, -1.0, -0.0, 0.0, 1e-3, 1.0, 7.0, np.inf]), (3, n))
    times[:, :100] = rng.normal(size=(3, 100))  # distinct values too
    times = times.astype(dtype)
    tie = rng.integers(0, 4, (3, n)).astype(np.int32)
    with jax.enable_x64(dtype == np.float64):
        got = jax.jit(jax.vmap(lambda t, k: S.time_order(t, k, 4)))(jnp.asarray(times), jnp.asarray(tie))
        for row in range(3):
            np.testing.assert_array_equal(np.asarray(got[row]), np.lexsort((tie[row], times[row])))
        # no tie key: time, then position
        np.testing.assert_array_equal(np.asarray(S.time_order(jnp.asarray(times[0]))),
                                      np.argsort(times[0], kind="stable"))
        # a tie bound too large for one integer key: the lexsort itself
        big = S.time_order(jnp.asarray(times[1]), jnp.asarray(tie[1]), 2**40)
        np.testing.assert_array_equal(np.asarray(big), np.lexsort((tie[1], times[1])))


def test_stable_order_is_a_stable_argsort():
    """Integer keys with many ties: equal to a stable argsort, under jit, and through the
    argsort fallback where the composite key would not fit in int32."""
    rng = np.random.default_rng(3)
    key = rng.integers(0, 7, 500).astype(np.int32)
    want = np.argsort(key, kind="stable")
    got = jax.jit(S.stable_order, static_argnums=1)(jnp.asarray(key), 7)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(got), want)
    np.testing.assert_array_equal(np.asarray(S.stable_order(jnp.asarray(key), 2**30)), want)
