"""Loader: every sample once per epoch, key-dependent shuffling, drop_last, Spikes, scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn.data import epoch_batches, iterate_batches, num_batches
from jaxsnn.spikes import Spikes

N = 23


def make_data():
    inputs = np.arange(N * 2, dtype=np.float64).reshape(N, 2)
    labels = np.arange(N)
    return inputs, labels


@pytest.mark.parametrize("drop_last", [True, False])
def test_epoch_batches_every_sample_exactly_once(drop_last):
    inputs, labels = make_data()
    (batch_inputs, batch_labels), mask = epoch_batches(
        (inputs, labels), 5, jax.random.PRNGKey(0), drop_last=drop_last
    )
    n_batches = 4 if drop_last else 5
    assert batch_inputs.shape == (n_batches, 5, 2) and mask.shape == (n_batches, 5)
    seen = np.asarray(batch_labels)[np.asarray(mask)]
    assert len(seen) == len(set(seen.tolist()))  # no duplicate among real samples
    if drop_last:
        assert len(seen) == 20 and mask.all()
    else:
        assert sorted(seen.tolist()) == list(range(N))
        assert int(mask.sum()) == N
    # inputs stay aligned with labels
    assert np.array_equal(np.asarray(batch_inputs)[..., 0], 2 * np.asarray(batch_labels))


def test_shuffle_depends_on_key_only():
    data = make_data()
    order = lambda key: np.asarray(epoch_batches(data, 23, key)[0][1]).ravel()  # noqa: E731
    assert np.array_equal(order(jax.random.PRNGKey(1)), order(jax.random.PRNGKey(1)))
    assert not np.array_equal(order(jax.random.PRNGKey(1)), order(jax.random.PRNGKey(2)))
    assert np.array_equal(order(None), np.arange(N))


def test_spikes_are_batched_as_spikes():
    times = jnp.tile(jnp.array([0.1, 0.2, jnp.inf]), (N, 1)) + jnp.arange(N)[:, None]
    idx = jnp.tile(jnp.array([0, 1, -1], dtype=jnp.int32), (N, 1))
    data = (Spikes(times, idx), jnp.arange(N))
    (spikes, labels), _ = epoch_batches(data, 4, jax.random.PRNGKey(3))
    assert isinstance(spikes, Spikes)
    assert spikes.time.shape == (5, 4, 3) and spikes.idx.dtype == jnp.int32
    np.testing.assert_array_equal(spikes.time[..., 0], labels + 0.1)
    batches = list(iterate_batches(Spikes(times, idx), 10))
    assert [b.time.shape for b in batches] == [(10, 3), (10, 3), (3, 3)]
    assert all(isinstance(b, Spikes) for b in batches)


def test_epoch_is_a_scan_under_jit():
    inputs, labels = make_data()

    @jax.jit
    def epoch_sum(key):
        (_, batch_labels), mask = epoch_batches((inputs, labels), 4, key, drop_last=False)

        def step(total, batch):
            lab, keep = batch
            return total + jnp.sum(jnp.where(keep, lab, 0)), None

        return jax.lax.scan(step, 0, (batch_labels, mask))[0]

    assert int(epoch_sum(jax.random.PRNGKey(5))) == sum(range(N))


@pytest.mark.parametrize("drop_last, sizes", [(False, [5, 5, 5, 5, 3]), (True, [5, 5, 5, 5])])
def test_iterate_batches(drop_last, sizes):
    inputs, labels = make_data()
    batches = list(iterate_batches((inputs, labels), 5, jax.random.PRNGKey(0), drop_last))
    assert [len(b[1]) for b in batches] == sizes
    seen = np.concatenate([b[1] for b in batches])
    assert len(set(seen.tolist())) == len(seen) == sum(sizes)
    assert isinstance(batches[0][0], np.ndarray) and batches[0][0].dtype == np.float64
    # same key -> same order as the stacked epoch
    stacked, _ = epoch_batches((inputs, labels), 5, jax.random.PRNGKey(0))
    assert np.array_equal(np.asarray(stacked[1][0]), batches[0][1])


def test_num_batches():
    assert num_batches(23, 5) == 4 and num_batches(23, 5, drop_last=False) == 5
    assert num_batches(20, 5, drop_last=False) == 4


@pytest.mark.parametrize(
    "batch_size, error, message",
    [(0, ValueError, "batch_size must be >= 1"), (-2, ValueError, "batch_size must be >= 1"),
     (2.0, TypeError, "batch_size must be an int"), (True, TypeError, "batch_size must be an int")],
)
def test_bad_batch_size(batch_size, error, message):
    with pytest.raises(error, match=message):
        epoch_batches(make_data(), batch_size)
    with pytest.raises(error, match=message):
        iterate_batches(make_data(), batch_size)  # raises before the first next()


def test_bad_data():
    with pytest.raises(ValueError, match="same number of samples"):
        epoch_batches((np.zeros((3, 2)), np.zeros(4)), 2)
    with pytest.raises(ValueError, match="leading sample axis"):
        iterate_batches((np.zeros((3, 2)), np.float64(1.0)), 2)
    with pytest.raises(ValueError, match="at least one array"):
        epoch_batches((), 2)
    with pytest.raises(ValueError, match="no batch"):
        epoch_batches(np.zeros((3, 2)), 4, drop_last=True)
