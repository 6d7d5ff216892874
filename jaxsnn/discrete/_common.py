"""Argument checks and weight initialisation shared by the discrete-time layers."""

from __future__ import annotations

from typing import Any, Tuple, Union

import jax

from jaxsnn._validate import (
    check_finite,
    check_float_dtype,
    check_ndim,
    positive_int,
)

Array = jax.Array
Features = Union[int, Tuple[int, ...]]


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
    """Raise ``ValueError`` unless ``external`` is ``None`` (discrete layers take no data in)."""
    if external is not None:
        raise ValueError(
            f"{label} takes no external data (external must be None), "
            f"got {type(external).__name__}"
        )
