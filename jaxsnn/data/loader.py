"""Shuffling and batching of any pytree of per-sample arrays (including ``Spikes``).

Every leaf of the data pytree has the samples on its leading axis, all with the same number
of samples ``n``. ``epoch_batches`` returns one whole epoch stacked as ``(n_batches, batch_size,
...)`` per leaf, ready for ``jax.lax.scan``; ``iterate_batches`` is a plain Python iterator.
Both shuffle with a JAX key (``None`` keeps the stored order).
"""

from __future__ import annotations

import functools
from typing import Any, Iterator, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def num_samples(data: Any) -> int:
    """Number of samples of a data pytree (the common leading dimension of its leaves).

    Args:
        data: pytree of arrays (e.g. ``(inputs, labels)`` or ``Spikes``).

    Returns:
        The leading dimension shared by all leaves.

    Raises:
        ValueError: if the pytree has no leaves, a scalar leaf, or leaves disagree.
    """
    leaves = jax.tree_util.tree_leaves(data)
    if not leaves:
        raise ValueError("data must contain at least one array")
    sizes = []
    for leaf in leaves:
        shape = jnp.shape(leaf)
        if len(shape) == 0:
            raise ValueError("every array in data needs a leading sample axis, got a scalar")
        sizes.append(shape[0])
    if len(set(sizes)) != 1:
        raise ValueError(
            f"all arrays in data must have the same number of samples (leading axis), got {sizes}"
        )
    return int(sizes[0])


def num_batches(n_samples: int, batch_size: int, drop_last: bool = True) -> int:
    """Number of batches in one epoch.

    Args:
        n_samples: samples in the dataset.
        batch_size: samples per batch, >= 1.
        drop_last: drop the final incomplete batch.

    Returns:
        ``n_samples // batch_size``, plus one if ``drop_last`` is False and there is a remainder.
    """
    batch_size = _check_batch_size(batch_size)
    full, rest = divmod(int(n_samples), batch_size)
    return full + (0 if drop_last or rest == 0 else 1)


def _order(key: Optional[jax.Array], n_samples: int) -> jax.Array:
    if key is None:
        return jnp.arange(n_samples)
    return jax.random.permutation(key, n_samples)


def epoch_batches(
    data: Any,
    batch_size: int,
    key: Optional[jax.Array] = None,
    drop_last: bool = True,
) -> Tuple[Any, jax.Array]:
    """One epoch of shuffled batches, stacked so the epoch can be a ``lax.scan``.

    The sample order is ``jax.random.permutation(key, n)`` (or ``0..n-1`` without a key). With
    ``drop_last=False`` and ``n % batch_size != 0`` the final batch is filled up with the first
    samples of the permutation (so shapes stay static) and ``mask`` marks those fillers False;
    weight per-sample losses with ``mask`` so every sample counts exactly once.

    Jittable with ``batch_size`` and ``drop_last`` static.

    Args:
        data: pytree of arrays with a common leading sample axis (arrays, tuples, ``Spikes``).
        batch_size: samples per batch, >= 1.
        key: PRNG key for shuffling, or ``None`` for the stored order.
        drop_last: drop the final incomplete batch (default) instead of padding it.

    Returns:
        ``(batches, mask)``: ``batches`` has the structure of ``data`` with each leaf shaped
        ``(n_batches, batch_size, *leaf.shape[1:])``; ``mask`` is ``(n_batches, batch_size)``
        bool, True for real samples.

    Raises:
        TypeError: if ``batch_size`` is not an int.
        ValueError: if ``batch_size < 1``, the leaves disagree on the number of samples, or the
            epoch would hold no batch (``drop_last`` with fewer samples than ``batch_size``).
    """
    batch_size = _check_batch_size(batch_size)
    n_samples = num_samples(data)
    n_batches = num_batches(n_samples, batch_size, drop_last)
    if n_batches == 0:
        raise ValueError(
            f"no batch: {n_samples} samples with batch_size {batch_size} and drop_last=True; "
            "use a smaller batch_size or drop_last=False"
        )
    return _epoch(data, key, n_samples, n_batches, batch_size)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _epoch(
    data: Any, key: Optional[jax.Array], n_samples: int, n_batches: int, batch_size: int
) -> Tuple[Any, jax.Array]:
    order = _order(key, n_samples)
    positions = jnp.arange(n_batches * batch_size)
    # Positions beyond the data wrap around to the start of the permutation (fillers).
    take = order[positions % n_samples]
    mask = (positions < n_samples).reshape(n_batches, batch_size)

    def gather(leaf: Any) -> jax.Array:
        picked = jnp.take(leaf, take, axis=0)
        return picked.reshape((n_batches, batch_size) + tuple(jnp.shape(leaf)[1:]))

    return jax.tree_util.tree_map(gather, data), mask


def iterate_batches(
    data: Any,
    batch_size: int,
    key: Optional[jax.Array] = None,
    drop_last: bool = False,
) -> Iterator[Any]:
    """Iterate over one epoch of shuffled batches (a plain Python generator).

    Leaves are indexed with NumPy indices, so NumPy leaves stay NumPy (keeping, e.g., float64)
    and JAX leaves stay JAX arrays.

    Args:
        data: pytree of arrays with a common leading sample axis.
        batch_size: samples per batch, >= 1.
        key: PRNG key for shuffling, or ``None`` for the stored order.
        drop_last: skip the final incomplete batch; if False (default) it is yielded smaller.

    Returns:
        An iterator of pytrees like ``data`` whose leaves hold ``batch_size`` samples (the last
        one possibly fewer).

    Raises:
        TypeError: if ``batch_size`` is not an int.
        ValueError: if ``batch_size < 1`` or the leaves disagree on the number of samples.
    """
    # Validate now, not at the first ``next()``: a generator body runs lazily.
    batch_size = _check_batch_size(batch_size)
    n_samples = num_samples(data)
    order = np.asarray(_order(key, n_samples))
    stop = n_samples - n_samples % batch_size if drop_last else n_samples
    return _generate(data, order, batch_size, stop)


def _generate(data: Any, order: np.ndarray, batch_size: int, stop: int) -> Iterator[Any]:
    for start in range(0, stop, batch_size):
        chosen = order[start : start + batch_size]
        yield jax.tree_util.tree_map(lambda leaf: leaf[chosen], data)
