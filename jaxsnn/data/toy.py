"""Small synthetic classification datasets in the unit square: circle, linear, constant.

All return ``Dataset(inputs, labels)`` as JAX arrays, drawn with a JAX key (jittable with the
sizes static). With ``mirror=True`` (default) a point ``(x, y)`` becomes the feature vector
``(x, y, 1 - x, 1 - y)``, the Yin-Yang convention that keeps the input activity of every
sample equal after latency encoding.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn.data.yinyang import Dataset, _check_size

#: Radius of a circle centred in the unit square that covers half of it.
BALANCED_RADIUS = 1.0 / math.sqrt(2.0 * math.pi)


def _features(points: jax.Array, mirror: bool) -> jax.Array:
    return jnp.concatenate([points, 1.0 - points], axis=-1) if mirror else points


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def circle(
    key: jax.Array,
    size: int = 1000,
    radius: float = BALANCED_RADIUS,
    center: Tuple[float, float] = (0.5, 0.5),
    mirror: bool = True,
) -> Dataset:
    """Points uniform in ``[0, 1]^2``; label 1 inside the circle, 0 outside.

    ``label = 1 if (x - cx)^2 + (y - cy)^2 < radius^2 else 0``. The default radius
    ``1 / sqrt(2 pi)`` makes both classes equally likely.

    Args:
        key: PRNG key.
        size: number of samples, >= 0.
        radius: circle radius, > 0.
        center: circle centre ``(cx, cy)``.
        mirror: return ``(x, y, 1 - x, 1 - y)`` instead of ``(x, y)``.

    Returns:
        ``Dataset`` with ``inputs`` ``(size, 4)`` (or ``(size, 2)``) and int32 ``labels``.

    Raises:
        TypeError: non-int ``size`` or non-numeric geometry.
        ValueError: ``size < 0``, ``radius <= 0``, non-finite geometry or a bad ``center``.
    """
    size = _check_size("size", size)
    radius = _check_number("radius", radius)
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    if len(center) != 2:
        raise ValueError(f"center must be a pair (cx, cy), got {center!r}")
    cx, cy = (_check_number("center", value) for value in center)
    return _circle(key, size, radius, cx, cy, bool(mirror))


@functools.partial(jax.jit, static_argnums=(1, 5))
def _circle(key: jax.Array, size: int, radius: Any, cx: Any, cy: Any, mirror: bool) -> Dataset:
    points = jax.random.uniform(key, (size, 2))
    inside = (points[:, 0] - cx) ** 2 + (points[:, 1] - cy) ** 2 < radius**2
    return Dataset(_features(points, mirror), inside.astype(jnp.int32))


def linear(
    key: jax.Array,
    size: int = 1000,
    slope: float = 1.0,
    intercept: float = 0.0,
    mirror: bool = True,
) -> Dataset:
    """Points uniform in ``[0, 1]^2``, linearly separable: label 1 above the line.

    ``label = 1 if y > slope * x + intercept else 0``.

    Args:
        key: PRNG key.
        size: number of samples, >= 0.
        slope: slope of the separating line.
        intercept: intercept of the separating line.
        mirror: return ``(x, y, 1 - x, 1 - y)`` instead of ``(x, y)``.

    Returns:
        ``Dataset`` with ``inputs`` ``(size, 4)`` (or ``(size, 2)``) and int32 ``labels``.

    Raises:
        TypeError: non-int ``size`` or non-numeric line parameters.
        ValueError: ``size < 0`` or non-finite line parameters.
    """
    size = _check_size("size", size)
    slope = _check_number("slope", slope)
    intercept = _check_number("intercept", intercept)
    return _linear(key, size, slope, intercept, bool(mirror))


@functools.partial(jax.jit, static_argnums=(1, 4))
def _linear(key: jax.Array, size: int, slope: Any, intercept: Any, mirror: bool) -> Dataset:
    points = jax.random.uniform(key, (size, 2))
    above = points[:, 1] > slope * points[:, 0] + intercept
    return Dataset(_features(points, mirror), above.astype(jnp.int32))


def constant(
    size: int = 100, value: Sequence[float] = (0.2, 0.8, 0.8, 0.2), label: int = 0
) -> Dataset:
    """The same sample ``size`` times: a sanity check that a network can fit one input.

    Args:
        size: number of samples, >= 0.
        value: the feature vector of every sample (finite).
        label: the class of every sample, >= 0.

    Returns:
        ``Dataset`` with ``inputs`` ``(size, len(value))`` and int32 ``labels`` ``(size,)``.

    Raises:
        TypeError: non-int ``size`` or ``label``.
        ValueError: ``size < 0``, ``label < 0``, empty or non-finite ``value``.
    """
    size = _check_size("size", size)
    label = _check_size("label", label)
    features = np.asarray(value, dtype=np.float64)
    if features.ndim != 1 or features.size == 0:
        raise ValueError(f"value must be a non-empty 1-d sequence, got shape {features.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError("value must be finite (NaN/inf found)")
    row = jnp.asarray(features, dtype=jnp.zeros(()).dtype)
    inputs = jnp.broadcast_to(row, (size, features.size))
    return Dataset(inputs, jnp.full((size,), label, dtype=jnp.int32))
