"""Weight initialisers with the ``jax.nn.initializers`` signature ``(key, shape, dtype) -> Array``.

Every layer's ``weight_init`` (and ``recurrent_init``) takes such a function, so anything from
``jax.nn.initializers`` works too. Layers build their default from ``scaled_normal``:
``weight_mean + weight_scale * unit * N(0, 1) / sqrt(fan_in)``, with ``fan_in`` the product of
all but the last dimension of the shape and ``unit`` a layer-specific natural scale (1 for the
discrete layers; for the event layers the input weight whose post-synaptic potential peaks at
the threshold).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn._validate import check_float_dtype, real_scalar

__all__ = ["Initializer", "normal", "scaled_normal"]

Initializer = Callable[[jax.Array, Sequence[int], Any], jax.Array]
WeightInit = Initializer


def normal(stddev: float, mean: float = 0.0) -> Initializer:
    """``mean + stddev * N(0, 1)``: like ``jax.nn.initializers.normal`` with a mean.

    Args:
        stddev: standard deviation (finite).
        mean: mean (finite).

    Returns:
        An initialiser ``(key, shape, dtype=float32) -> Array``.

    Raises:
        TypeError, ValueError: if ``stddev`` or ``mean`` is not a finite real number.
    """
    stddev = real_scalar("stddev", stddev)
    mean = real_scalar("mean", mean)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return mean + stddev * jax.random.normal(key, tuple(shape), dtype)

    return init


def scaled_normal(scale: float = 1.0, mean: float = 0.0, unit: float = 1.0) -> Initializer:
    """``mean + scale * unit * N(0, 1) / sqrt(fan_in)`` with ``fan_in = prod(shape[:-1])``.

    Args:
        scale: standard deviation in units of ``unit / sqrt(fan_in)``.
        mean: mean (absolute).
        unit: the layer's natural weight scale.

    Returns:
        An initialiser ``(key, shape, dtype=float32) -> Array``.

    Raises:
        TypeError, ValueError: if an argument is not a finite real number.
    """
    scale = real_scalar("weight_scale", scale)
    mean = real_scalar("weight_mean", mean)
    unit = real_scalar("unit", unit)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        fan_in = max(1, int(np.prod(tuple(shape)[:-1])))
        stddev = scale * unit / math.sqrt(fan_in)
        return mean + stddev * jax.random.normal(key, tuple(shape), dtype)

    return init


# Helpers the layer factories share (not part of the public initialiser API).


def default_dtype(dtype: Any) -> Any:
    """The float dtype for new parameters (float64 only when x64 is enabled)."""
    if dtype is None:
        return jax.dtypes.canonicalize_dtype(jnp.float64)
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    return jax.dtypes.canonicalize_dtype(dtype)


def make_weight_init(
    weight_init: Optional[WeightInit], weight_scale: float, weight_mean: float, unit: float = 1.0
) -> WeightInit:
    """Weight initialiser: ``weight_init`` if given, else ``jaxsnn.initializers.scaled_normal``.

    Raises:
        TypeError: if ``weight_init`` is not callable.
    """
    if weight_init is not None:
        if not callable(weight_init):
            raise TypeError(
                "weight_init must be a callable (key, shape, dtype) -> array, "
                f"e.g. jax.nn.initializers.glorot_normal(), got {type(weight_init).__name__}"
            )
        return weight_init
    return scaled_normal(weight_scale, weight_mean, unit)


def init_weight(
    label: str, key: jax.Array, shape: Tuple[int, ...], dtype: Any, init: WeightInit
) -> jax.Array:
    """Run ``init`` and check the result's shape and dtype."""
    weight = jnp.asarray(init(key, shape, dtype))
    if weight.shape != tuple(shape):
        raise ValueError(
            f"{label}: weight_init returned shape {weight.shape}, expected {tuple(shape)}"
        )
    check_float_dtype(f"{label} weight", weight)
    return weight
