"""Smooth random manifolds (Zenke & Vogels, Neural Computation 2021).

Each class is a random smooth map from the ``manifold_dim``-dimensional unit cube into an
``embedding_dim``-dimensional space; samples of a class are images of uniform random points.
Classes overlap in every single coordinate, so the task needs the joint pattern. With one
spike per input neuron at a time proportional to the coordinate (``jaxsnn.encode``) it is the
spike-timing benchmark of the paper.

Map of class ``c``, coordinate ``j`` at point ``x`` in ``[0, 1]^d``::

    f_cj(x) = prod_{i=1..d} sum_{k=1..K} A_cjik / k^alpha * sin(2 pi (k * F_cjik * x_i + P_cjik))

with amplitudes ``A``, frequencies ``F`` and phases ``P`` drawn uniformly from ``[0, 1)``. The
``1 / k^alpha`` spectrum sets the smoothness (larger ``alpha``: smoother); the number of terms
is ``K = min(max_terms, ceil(precision^(-1/alpha)))``, the first ``k`` whose weight drops
below ``precision``. Finally every coordinate is scaled to ``[0, 1]`` over the whole dataset.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxsnn.data.yinyang import Dataset, _check_size


class RandmanParams(NamedTuple):
    """Random coefficients of ``n_classes`` manifolds.

    Attributes:
        amplitude: ``(n_classes, embedding_dim, manifold_dim, K)`` in ``[0, 1)``.
        frequency: same shape, in ``[0, 1)``.
        phase: same shape, in ``[0, 1)``.
        alpha: spectral fall-off exponent.
    """

    amplitude: jax.Array
    frequency: jax.Array
    phase: jax.Array
    alpha: float


def n_terms(alpha: float, precision: float = 1e-3, max_terms: int = 1000) -> int:
    """Number of Fourier terms ``K = min(max_terms, ceil(precision^(-1/alpha)))``.

    Args:
        alpha: spectral exponent, > 0.
        precision: smallest relative weight kept, in ``(0, 1)``.
        max_terms: upper bound, >= 1.

    Returns:
        ``K >= 1``.

    Raises:
        ValueError: for ``alpha <= 0``, ``precision`` outside ``(0, 1)`` or ``max_terms < 1``.
    """
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if not (isinstance(precision, (int, float)) and 0 < precision < 1):
        raise ValueError(f"precision must lie in (0, 1), got {precision!r}")
    if _check_size("max_terms", max_terms) < 1:
        raise ValueError(f"max_terms must be >= 1, got {max_terms}")
    return int(min(max_terms, max(1, math.ceil(precision ** (-1.0 / alpha)))))


def randman_params(
    key: jax.Array,
    n_classes: int,
    embedding_dim: int,
    manifold_dim: int = 1,
    alpha: float = 2.0,
    precision: float = 1e-3,
    max_terms: int = 1000,
) -> RandmanParams:
    """Draw the coefficients of ``n_classes`` random manifolds.

    Args:
        key: PRNG key.
        n_classes: number of manifolds (classes), >= 1.
        embedding_dim: dimension of the embedding space (input neurons), >= 1.
        manifold_dim: intrinsic dimension ``d``, >= 1.
        alpha: smoothness exponent, > 0.
        precision: see ``n_terms``.
        max_terms: see ``n_terms``.

    Returns:
        ``RandmanParams``.

    Raises:
        TypeError, ValueError: for non-int or < 1 sizes and the errors of ``n_terms``.
    """
    _check_dims(n_classes, embedding_dim, manifold_dim)
    terms = n_terms(alpha, precision, max_terms)
    return _draw_params(key, (n_classes, embedding_dim, manifold_dim, terms), float(alpha))


def _check_dims(n_classes: Any, embedding_dim: Any, manifold_dim: Any) -> None:
    for name, value in (
        ("n_classes", n_classes),
        ("embedding_dim", embedding_dim),
        ("manifold_dim", manifold_dim),
    ):
        if _check_size(name, value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def _draw_params(key: jax.Array, shape: tuple, alpha: float) -> RandmanParams:
    return RandmanParams(*_draw_coefficients(key, shape), alpha=alpha)


@functools.partial(jax.jit, static_argnums=(1,))
def _draw_coefficients(key: jax.Array, shape: tuple) -> tuple:
    return tuple(jax.random.uniform(subkey, shape) for subkey in jax.random.split(key, 3))


@jax.jit
def randman_embed(params: RandmanParams, coords: Any, label: Any) -> jax.Array:
    """Evaluate manifold ``label`` at intrinsic coordinates ``coords`` (unnormalised).

    Args:
        params: coefficients from ``randman_params``.
        coords: ``(manifold_dim,)`` point in ``[0, 1]^d`` (vmap for many points).
        label: class index (int, may be traced).

    Returns:
        ``(embedding_dim,)`` values ``f_label(coords)`` (see the module docstring).
    """
    amplitude = params.amplitude[label]  # (n, d, K)
    frequency = params.frequency[label]
    phase = params.phase[label]
    k = jnp.arange(1, amplitude.shape[-1] + 1, dtype=amplitude.dtype)
    x = jnp.asarray(coords, dtype=amplitude.dtype)[None, :, None]
    terms = amplitude / k**params.alpha * jnp.sin(2 * jnp.pi * (k * frequency * x + phase))
    return jnp.prod(jnp.sum(terms, axis=-1), axis=-1)


def randman(
    key: jax.Array,
    n_classes: int = 2,
    samples_per_class: int = 100,
    embedding_dim: int = 10,
    manifold_dim: int = 1,
    alpha: float = 2.0,
    precision: float = 1e-3,
    max_terms: int = 1000,
    shuffle: bool = True,
) -> Dataset:
    """A Randman classification dataset, coordinates scaled to ``[0, 1]``.

    Draws the manifolds with one subkey, ``samples_per_class`` uniform intrinsic points per
    class with another, evaluates the maps, and min-max scales each embedding coordinate over
    the whole dataset (a constant coordinate becomes 0). Feed ``inputs`` to
    ``jaxsnn.encode.latency_spikes`` for one spike per input neuron.

    Args:
        key: PRNG key.
        n_classes: number of classes, >= 1.
        samples_per_class: samples drawn per class, >= 1.
        embedding_dim: number of features (input neurons), >= 1.
        manifold_dim: intrinsic dimension, >= 1.
        alpha: smoothness exponent, > 0.
        precision: see ``n_terms``.
        max_terms: see ``n_terms``.
        shuffle: shuffle the samples (else ordered by class).

    Returns:
        ``Dataset`` with ``inputs`` ``(n_classes * samples_per_class, embedding_dim)`` in
        ``[0, 1]`` and int32 ``labels``.

    Raises:
        TypeError, ValueError: as ``randman_params``, and for ``samples_per_class < 1``.
    """
    if _check_size("samples_per_class", samples_per_class) < 1:
        raise ValueError(f"samples_per_class must be >= 1, got {samples_per_class}")
    terms = n_terms(alpha, precision, max_terms)
    _check_dims(n_classes, embedding_dim, manifold_dim)
    return _randman(key, n_classes, samples_per_class, embedding_dim, manifold_dim,
                    float(alpha), terms, bool(shuffle))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 6))
def _randman(
    key: jax.Array,
    n_classes: int,
    samples_per_class: int,
    embedding_dim: int,
    manifold_dim: int,
    alpha: float,
    terms: int,
    shuffle: Any,
) -> Dataset:
    # One compiled program for the whole dataset: eager op-by-op dispatch is much slower.
    key_params, key_points, key_order = jax.random.split(key, 3)
    params = _draw_params(key_params, (n_classes, embedding_dim, manifold_dim, terms), alpha)
    labels = jnp.repeat(jnp.arange(n_classes, dtype=jnp.int32), samples_per_class)
    coords = jax.random.uniform(key_points, (labels.shape[0], manifold_dim))
    values = jax.vmap(randman_embed, in_axes=(None, 0, 0))(params, coords, labels)
    low, high = values.min(axis=0), values.max(axis=0)
    span = high - low
    safe_span = jnp.where(span > 0, span, 1.0)
    inputs = jnp.where(span > 0, (values - low) / safe_span, 0.0)
    # ``shuffle`` is traced, not static, so both settings share one compiled program.
    order = jnp.where(
        shuffle, jax.random.permutation(key_order, labels.shape[0]), jnp.arange(labels.shape[0])
    )
    return Dataset(inputs[order], labels[order])
