"""Encoders: latency (times, Spikes, dense), Bernoulli/rate trains, target times."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn import encode
from jaxsnn.spikes import Spikes, to_dense, validate

VALUES = jnp.array([[0.0, 0.3, 1.0, 0.7], [0.5, 0.5, 0.1, 0.9]])


def test_latency_times_linear_monotonic_and_bounded(x64):
    values = jnp.linspace(-0.5, 1.5, 41)
    times = encode.latency_times(values, t_min=2.0, t_max=5.0)
    inside = (values >= 0) & (values <= 1)
    np.testing.assert_allclose(times[inside], 2.0 + 3.0 * values[inside], rtol=1e-15)
    assert np.all(np.diff(np.asarray(times[inside])) > 0)  # strictly increasing inside
    assert times.min() == 2.0 and times.max() == 5.0  # clipped outside
    reversed_times = encode.latency_times(values, t_min=2.0, t_max=5.0, larger_first=True)
    assert np.all(np.diff(np.asarray(reversed_times[inside])) < 0)
    np.testing.assert_allclose(times + reversed_times, 7.0, rtol=1e-15)
    scaled = encode.latency_times(jnp.array([10.0, 20.0, 30.0]), 0.0, 1.0, v_min=10.0, v_max=30.0)
    np.testing.assert_allclose(scaled, [0.0, 0.5, 1.0], rtol=1e-15)


def test_latency_spikes_sorted_with_bias():
    spikes = encode.latency_spikes(VALUES, t_min=0.0, t_max=0.02, bias_time=0.005)
    assert spikes.time.shape == (2, 5)
    for sample in range(2):
        one = Spikes(spikes.time[sample], spikes.idx[sample])
        validate(one, n_neurons=5)  # sorted, no NaN, indices in range
        assert sorted(np.asarray(one.idx).tolist()) == [0, 1, 2, 3, 4]
        bias_slot = int(np.argmax(np.asarray(one.idx) == 4))
        assert float(one.time[bias_slot]) == pytest.approx(0.005)
        expected = 0.02 * np.asarray(VALUES[sample])
        for slot in range(5):
            if int(one.idx[slot]) < 4:
                neuron = int(one.idx[slot])
                assert float(one.time[slot]) == pytest.approx(expected[neuron], abs=1e-8)
    # ties keep neuron order (stable sort)
    tie = encode.latency_spikes(jnp.array([0.5, 0.5, 0.2]))
    assert np.asarray(tie.idx).tolist() == [2, 0, 1]


def test_latency_spikes_jit_vmap_match_batched():
    fn = jax.jit(lambda v: encode.latency_spikes(v, 0.0, 1.0, bias_time=0.0))
    batched = fn(VALUES)
    mapped = jax.vmap(fn)(VALUES)
    np.testing.assert_array_equal(batched.time, mapped.time)
    np.testing.assert_array_equal(batched.idx, mapped.idx)


def test_latency_dense_matches_to_dense_of_spikes():
    dense = encode.latency_dense(VALUES, n_steps=20, dt=0.1, t_min=0.0, t_max=1.9, bias_time=0.25)
    assert dense.shape == (2, 20, 5)
    np.testing.assert_array_equal(dense.sum(axis=-2), 1.0)  # one spike per neuron
    spikes = encode.latency_spikes(VALUES, 0.0, 1.9, bias_time=0.25)
    for sample in range(2):
        one = Spikes(spikes.time[sample], spikes.idx[sample])
        np.testing.assert_array_equal(dense[sample], to_dense(one, 5, 0.1, 20))
    # float32 rounds 0.99999999 up to 1.0 = n_steps * dt; the spike must stay on the grid
    edge = encode.latency_dense(jnp.array([1.0]), n_steps=10, dt=0.1, t_max=0.99999999)
    assert float(edge.sum()) == 1.0 and float(edge[9, 0]) == 1.0
    default = encode.latency_dense(VALUES[0], n_steps=10, dt=1.0)  # t_max = 9
    assert np.asarray(jnp.argmax(default, axis=0)).tolist() == [0, 2, 9, 6]


def test_bernoulli_and_rate_trains():
    key = jax.random.PRNGKey(0)
    train = encode.bernoulli_spike_train(key, jnp.array([0.0, 1.0, 0.3]), 2000)
    assert train.shape == (2000, 3)
    assert train[:, 0].sum() == 0 and train[:, 1].sum() == 2000
    # 3 sigma of a binomial(2000, 0.3): 0.3 +- 0.031
    assert abs(float(train[:, 2].mean()) - 0.3) < 0.031
    batched = encode.rate_spike_train(key, jnp.full((4, 2), 50.0), 100, dt=1e-3)
    assert batched.shape == (4, 100, 2) and set(np.unique(batched).tolist()) <= {0.0, 1.0}
    other = encode.bernoulli_spike_train(jax.random.PRNGKey(1), jnp.array([0.5]), 200)
    same = encode.bernoulli_spike_train(jax.random.PRNGKey(1), jnp.array([0.5]), 200)
    np.testing.assert_array_equal(other, same)


def test_poisson_spikes_rates_sorted_and_overflow():
    # one compiled program (same shapes) for every case below
    draw = jax.jit(jax.vmap(lambda k, r: encode.poisson_spikes(k, r, 1.0, 600), in_axes=(0, None)))
    keys = jax.random.split(jax.random.PRNGKey(2), 20)
    spikes, overflow = draw(keys, jnp.array([100.0, 0.0, 300.0]))
    assert not bool(overflow.any())
    counts = np.stack([np.bincount(i[i >= 0], minlength=3) for i in np.asarray(spikes.idx)])
    # mean of 20 Poisson(r) counts: sd sqrt(r / 20); allow 4 sd
    np.testing.assert_allclose(counts.mean(axis=0), [100.0, 0.0, 300.0],
                               atol=4 * np.sqrt(300.0 / 20))
    validate(Spikes(spikes.time[0], spikes.idx[0]), n_neurons=3)
    assert float(spikes.time.max(where=spikes.idx >= 0, initial=0.0)) <= 1.0
    full, overflow = draw(keys, jnp.array([1000.0, 0.0, 0.0]))
    assert bool(overflow.all()) and np.all(np.asarray(full.count()) == 600)
    silent, overflow = draw(keys, jnp.zeros(3))
    assert int(silent.count().sum()) == 0 and not bool(overflow.any())


def test_target_times():
    targets = encode.target_times(jnp.array([2, 0]), 3, t_correct=1.0, t_wrong=4.0)
    np.testing.assert_array_equal(targets, [[4.0, 4.0, 1.0], [1.0, 4.0, 4.0]])
    batched = encode.target_times(jnp.array([[0, 1], [1, 1]]), 2, t_correct=0.5, t_wrong=1.5)
    assert batched.shape == (2, 2, 2)
    np.testing.assert_array_equal(batched[1], [[1.5, 0.5], [1.5, 0.5]])
    traced = jax.jit(lambda labels: encode.target_times(labels, 3, 1.0, 4.0))(jnp.array([2, 0]))
    np.testing.assert_array_equal(traced, targets)
    mapped = jax.vmap(lambda label: encode.target_times(label, 3, 1.0, 4.0))(jnp.array([2, 0]))
    np.testing.assert_array_equal(mapped, targets)


@pytest.mark.parametrize("t_correct, t_wrong", [(4e-3, 6e-3), (0.1, 0.3), (1e-3, 7e-3), (0.7, 0.2)])
def test_target_times_are_exact_in_float32(t_correct, t_wrong):
    # a select, not t_wrong + onehot * (t_correct - t_wrong), which rounds in float32
    targets = encode.target_times(jnp.array([0, 1, 2]), 3, t_correct=t_correct, t_wrong=t_wrong)
    assert targets.dtype == jnp.float32
    expected = np.where(np.eye(3, dtype=bool), np.float32(t_correct), np.float32(t_wrong))
    np.testing.assert_array_equal(np.asarray(targets), expected)


def test_target_times_in_float64(x64):
    targets = encode.target_times(jnp.array([1]), 2, t_correct=0.1, t_wrong=0.3)
    assert targets.dtype == jnp.float64
    np.testing.assert_array_equal(targets, [[0.3, 0.1]])


def test_rate_spike_train_fires_at_the_rate():
    # per neuron 40 trains x 2000 steps = 80000 Bernoulli(rate * dt) draws; the empirical rate
    # has the binomial standard deviation sqrt(p (1 - p) / n) / dt; allow 4 of them (every
    # neuron, one fixed key: a wrong rate by 3 % already fails the 400 Hz neuron)
    rates = jnp.array([0.0, 20.0, 100.0, 400.0, 1000.0])
    dt, n_steps, n_trains = 1e-3, 2000, 40
    trains = encode.rate_spike_train(jax.random.PRNGKey(7), jnp.broadcast_to(rates, (n_trains, 5)),
                                     n_steps, dt=dt)
    assert trains.shape == (n_trains, n_steps, 5)
    draws = n_trains * n_steps
    measured = np.asarray(trains.sum(axis=(0, 1))) / (draws * dt)
    p = np.asarray(rates) * dt
    std = np.sqrt(p * (1 - p) / draws) / dt
    assert measured[0] == 0.0 and measured[-1] == 1000.0  # p = 0 and p = 1 are exact
    np.testing.assert_array_less(np.abs(measured - np.asarray(rates))[1:-1], 4 * std[1:-1])
    # the trains of different trials differ (independent draws, not one train repeated)
    assert not np.array_equal(np.asarray(trains[0, :, 3]), np.asarray(trains[1, :, 3]))
    # under jit with traced rates (checks are skipped, the sampling is the same)
    jitted = jax.jit(lambda r: encode.rate_spike_train(jax.random.PRNGKey(7), r, n_steps, dt=dt))
    np.testing.assert_array_equal(jitted(jnp.broadcast_to(rates, (n_trains, 5))), trains)


def test_window_parameters_may_be_concrete_arrays():
    times = encode.latency_times(VALUES, t_min=np.float32(0.5), t_max=jnp.array(2.5))
    np.testing.assert_allclose(times, 0.5 + 2.0 * np.asarray(VALUES), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(t_min=1.0, t_max=1.0), ValueError, "t_min must be < t_max"),
        (dict(t_min=-1.0, t_max=1.0), ValueError, "t_min must be >= 0"),
        (dict(t_max=float("inf")), ValueError, "t_max must be finite"),
        (dict(v_min=1.0, v_max=0.0), ValueError, "v_min must be < v_max"),
        (dict(t_max=np.ones(2)), ValueError, "t_max must be a scalar"),
    ],
)
def test_latency_rejects_bad_window(kwargs, error, message):
    with pytest.raises(error, match=message):
        encode.latency_times(VALUES, **kwargs)


def test_latency_rejects_bad_values():
    with pytest.raises(ValueError, match="values contains 1 NaN"):
        encode.latency_times(jnp.array([0.1, jnp.nan]))
    with pytest.raises(TypeError, match="values must be a real-valued array"):
        encode.latency_times(jnp.array([True, False]))
    with pytest.raises(ValueError, match="values must have a feature axis"):
        encode.latency_spikes(0.5)
    with pytest.raises(ValueError, match="bias_time must be finite and >= 0"):
        encode.latency_spikes(VALUES, bias_time=-1.0)
    with pytest.raises(TypeError, match="t_min must be a Python number"):
        jax.jit(lambda t: encode.latency_times(VALUES, t_min=t, t_max=2.0))(0.0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(n_steps=0, dt=1.0), ValueError, "n_steps must be a positive integer, got 0"),
        (dict(n_steps=3.0, dt=1.0), TypeError, "n_steps must be a positive integer, got float"),
        (dict(n_steps=10, dt=0.0), ValueError, "dt must be > 0"),
        (dict(n_steps=10, dt=0.1, t_max=1.0), ValueError, "t_max .* must be < n_steps"),
        (dict(n_steps=10, dt=0.1, bias_time=2.0), ValueError, "bias_time .* must be < n_steps"),
    ],
)
def test_latency_dense_rejects_bad_grid(kwargs, error, message):
    with pytest.raises(error, match=message):
        encode.latency_dense(VALUES, **kwargs)


def test_spike_train_and_target_errors():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"probabilities must lie in \[0, 1\]"):
        encode.bernoulli_spike_train(key, jnp.array([1.5]), 5)
    with pytest.raises(ValueError, match="probabilities must have a neuron axis"):
        encode.bernoulli_spike_train(key, 0.5, 5)
    with pytest.raises(ValueError, match="rate \\* dt must be <= 1"):
        encode.rate_spike_train(key, jnp.array([2000.0]), 5, dt=1e-3)
    with pytest.raises(ValueError, match="rates must be >= 0"):
        encode.rate_spike_train(key, jnp.array([-1.0]), 5, dt=1e-3)
    with pytest.raises(ValueError, match="rates must be 1-d"):
        encode.poisson_spikes(key, jnp.ones((2, 2)), 1.0, 4)
    with pytest.raises(ValueError, match="rates must be >= 0"):
        encode.poisson_spikes(key, jnp.array([jnp.nan]), 1.0, 4)
    with pytest.raises(ValueError, match="t_max must be > 0"):
        encode.poisson_spikes(key, jnp.ones(2), 0.0, 4)
    with pytest.raises(ValueError, match="capacity must be a positive integer, got 0"):
        encode.poisson_spikes(key, jnp.ones(2), 1.0, 0)
    with pytest.raises(TypeError, match="capacity must be a positive integer, got float"):
        encode.poisson_spikes(key, jnp.ones(2), 1.0, 4.0)
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        encode.target_times(jnp.array([0.0]), 3, 1.0, 2.0)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        encode.target_times(jnp.array([3]), 3, 1.0, 2.0)
    with pytest.raises(ValueError, match="n_classes must be a positive integer, got 0"):
        encode.target_times(jnp.array([0]), 0, 1.0, 2.0)
    with pytest.raises(TypeError, match="t_correct must be a Python number"):
        jax.jit(lambda t: encode.target_times(jnp.array([0]), 3, t, 2.0))(1.0)
    with pytest.raises(TypeError, match="t_wrong must be a real number"):
        encode.target_times(jnp.array([0]), 3, 1.0, "2.0")
    with pytest.raises(ValueError, match="t_wrong must be finite"):
        encode.target_times(jnp.array([0]), 3, 1.0, float("nan"))
