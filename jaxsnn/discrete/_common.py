"""Argument checks and weight initialisation shared by the discrete-time layers."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn._validate import check_finite, check_float_dtype, check_ndim

Array = jax.Array
WeightInit = Callable[[jax.Array, Tuple[int, ...], Any], Array]
Features = Union[int, Tuple[int, ...]]


def real_scalar(name: str, value: Any) -> float:
    """Return ``value`` as a float (``TypeError``: not a real number, ``ValueError``: not finite)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if not (isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def positive_scalar(name: str, value: Any) -> float:
    """Return ``value`` as a float, raising ``ValueError`` unless it is finite and > 0."""
    value = real_scalar(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an int, raising unless it is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def feature_shape(name: str, size: Features) -> Tuple[int, ...]:
    """Normalise a layer size (int or tuple of ints) to a tuple of positive ints."""
    if isinstance(size, (tuple, list)):
        if not size:
            raise ValueError(f"{name} must not be empty")
        return tuple(positive_int(f"{name}[{k}]", s) for k, s in enumerate(size))
    return (positive_int(name, size),)


def format_size(size: Tuple[int, ...]) -> str:
    """``(120,) -> "120"``, ``(4, 4, 8) -> "(4, 4, 8)"``."""
    return str(size[0]) if len(size) == 1 else str(tuple(size))


def input_shape_tuple(label: str, input_shape: Any, min_ndim: int, layout: str) -> Tuple[int, ...]:
    """Check an ``init`` input shape: a tuple of ints ``layout`` with ``>= min_ndim`` entries."""
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise TypeError(
            f"{label}: input_shape must be a tuple of ints {layout}, got {input_shape!r}"
        ) from None
    if len(shape) < min_ndim:
        raise ValueError(f"{label} takes {layout} inputs, got input shape {shape}")
    if any(s <= 0 for s in shape[1:]):
        raise ValueError(f"{label}: input_shape feature sizes must be positive, got {shape}")
    return shape


def default_dtype(dtype: Any) -> Any:
    """The float dtype for new parameters (float64 only when x64 is enabled)."""
    if dtype is None:
        return jax.dtypes.canonicalize_dtype(jnp.float64)
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    return jax.dtypes.canonicalize_dtype(dtype)


def make_weight_init(
    weight_init: Optional[WeightInit], weight_scale: float, weight_mean: float
) -> WeightInit:
    """Weight initialiser: ``weight_init`` if given, else ``mean + scale * N(0, 1) / sqrt(fan_in)``.

    ``fan_in`` is the product of all but the last dimension of the weight shape.
    """
    if weight_init is not None:
        if not callable(weight_init):
            raise TypeError(
                "weight_init must be a callable (key, shape, dtype) -> array, "
                f"e.g. jax.nn.initializers.glorot_normal(), got {type(weight_init).__name__}"
            )
        return weight_init
    scale = real_scalar("weight_scale", weight_scale)
    mean = real_scalar("weight_mean", weight_mean)

    def init(key: jax.Array, shape: Tuple[int, ...], dtype: Any) -> Array:
        fan_in = max(1, int(np.prod(shape[:-1])))
        noise = jax.random.normal(key, shape, dtype)
        return (mean + scale * noise / math.sqrt(fan_in)).astype(dtype)

    return init


def init_weight(
    label: str, key: jax.Array, shape: Tuple[int, ...], dtype: Any, init: WeightInit
) -> Array:
    """Run ``init`` and check the result's shape and dtype."""
    weight = jnp.asarray(init(key, shape, dtype))
    if weight.shape != tuple(shape):
        raise ValueError(
            f"{label}: weight_init returned shape {weight.shape}, expected {tuple(shape)}"
        )
    check_float_dtype(f"{label} weight", weight)
    return weight


def check_inputs(label: str, inputs: Any, features: Tuple[int, ...]) -> Array:
    """Validate a per-sample input ``(time, *features)``: float dtype, ndim, sizes, finiteness."""
    if not hasattr(inputs, "shape") or not hasattr(inputs, "dtype"):
        raise TypeError(f"{label}: inputs must be an array, got {type(inputs).__name__}")
    check_float_dtype(f"{label}: inputs", inputs)
    ndim = 1 + len(features)
    try:
        check_ndim(f"{label}: inputs", inputs, ndim)
    except ValueError as error:
        raise ValueError(
            f"{error}; per-sample inputs are (time, {', '.join(map(str, features))}) — "
            "batch with jax.vmap"
        ) from None
    if tuple(inputs.shape[1:]) != tuple(features):
        raise ValueError(
            f"{label}: inputs have features {tuple(inputs.shape[1:])} but the parameters expect "
            f"{tuple(features)} (input shape must be (time, {', '.join(map(str, features))}))"
        )
    check_finite(f"{label}: inputs", inputs)
    return inputs


def check_no_external(label: str, external: Any) -> None:
    """Raise ``ValueError`` unless ``external`` is ``None`` (discrete layers take no injected data)."""
    if external is not None:
        raise ValueError(
            f"{label} takes no external data (external must be None), "
            f"got {type(external).__name__}"
        )
