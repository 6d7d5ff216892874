"""The closed-form currents of ``jaxsnn.event.superposition``: every method equals the dense sum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn.event.superposition as superposition
from jaxsnn.event.superposition import Sources, currents_at, currents_dense, currents_table

SIZE, N_IN = 5, 4


def _problem(seed: int, n_in: int, k_out: int, n_pad: int = 2):
    """Input and recurrent sources (sorted, padded, with ties and events at 0) and queries."""
    rng = np.random.default_rng(seed)
    in_time = np.sort(rng.uniform(0, 0.02, n_in))
    in_time[0] = 0.0  # an input at the very start
    in_time[2] = in_time[1]  # simultaneous inputs
    out_time = np.sort(rng.uniform(0, 0.02, k_out))
    out_time[0] = 0.0
    out_time[1] = in_time[3]  # a spike at an input time
    out_time = np.sort(out_time)
    pad = np.full(n_pad, np.inf)
    sources = (
        Sources(jnp.asarray(np.concatenate([in_time, pad])),
                jnp.asarray(np.concatenate([rng.integers(0, N_IN, n_in), -np.ones(n_pad)]), jnp.int32),
                jnp.asarray(rng.normal(size=(N_IN, SIZE))),
                jnp.asarray(np.arange(n_in + n_pad) < n_in)),
        Sources(jnp.asarray(np.concatenate([out_time, pad])),
                jnp.asarray(np.concatenate([rng.integers(0, SIZE, k_out), -np.ones(n_pad)]), jnp.int32),
                jnp.asarray(rng.normal(size=(SIZE, SIZE))),
                jnp.asarray(np.arange(k_out + n_pad) < k_out)),
    )
    # Queries at event times (both limits), at 0, between events, after the last, and padding.
    times = np.concatenate([in_time, out_time, [0.0, 0.0], rng.uniform(0, 0.025, 10), [np.inf]])
    times = np.concatenate([times, times])
    inclusive = np.arange(times.shape[0]) >= times.shape[0] // 2
    neuron = rng.integers(0, SIZE, times.shape[0])
    return (jnp.asarray(times), jnp.asarray(neuron, jnp.int32), jnp.asarray(inclusive), sources,
            jnp.asarray(rng.normal(size=SIZE)), jnp.asarray(rng.uniform(3e-3, 8e-3, SIZE)))


@pytest.mark.parametrize("seed", range(4))
def test_current_table_equals_dense_sum(x64, seed):
    args = _problem(seed, n_in=12, k_out=9)
    table, dense = jax.jit(currents_table)(*args), jax.jit(currents_dense)(*args)
    # The two limits differ at event times: the comparison covers both.
    half = args[0].shape[0] // 2
    assert np.count_nonzero(np.asarray(dense[:half]) != np.asarray(dense[half:])) >= 10
    np.testing.assert_allclose(table, dense, rtol=1e-12, atol=1e-14)


def test_current_table_under_vmap_and_in_float32():
    problems = [_problem(seed, n_in=12, k_out=9) for seed in range(3)]
    batch = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves).astype(
        jnp.float32 if jnp.issubdtype(leaves[0].dtype, jnp.floating) else leaves[0].dtype), *problems)
    table = jax.jit(jax.vmap(currents_table))(*batch)
    dense = jax.jit(jax.vmap(currents_dense))(*batch)
    assert table.dtype == jnp.float32
    np.testing.assert_allclose(table, dense, rtol=2e-5, atol=1e-5)


def test_currents_at_picks_the_table_between_the_limits(x64, monkeypatch):
    used = []

    def spy(name):
        original = getattr(superposition, name)

        def wrapped(*args):
            used.append(name)
            return original(*args)

        monkeypatch.setattr(superposition, name, wrapped)

    spy("currents_table")
    spy("currents_scan")
    monkeypatch.setattr(superposition, "DENSE_CURRENT_LIMIT", 16)
    args = _problem(5, n_in=12, k_out=9)
    dense = jax.jit(currents_dense)(*args)
    # Jitted (the choice is made while tracing; eagerly every operation compiles on its own),
    # through a new function each time so that the second call traces again.
    np.testing.assert_allclose(jax.jit(lambda *a: currents_at(*a))(*args), dense, rtol=1e-12, atol=1e-14)
    assert used == ["currents_table"]
    monkeypatch.setattr(superposition, "TABLE_CURRENT_LIMIT", 8)
    np.testing.assert_allclose(jax.jit(lambda *a: currents_at(*a))(*args), dense, rtol=1e-12, atol=1e-14)
    assert used == ["currents_table", "currents_scan"]  # the scan above both limits
