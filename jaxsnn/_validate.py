"""Argument validation shared by the public API.

Checks run eagerly on concrete values (NumPy arrays, Python numbers, non-traced JAX arrays) and
are skipped for tracers: under ``jax.jit`` values are unknown, and value checks there go through
``jax.experimental.checkify`` (see ``jaxsnn.spikes.checked_validate``). Shape and dtype checks
work on tracers too, because shapes and dtypes are static.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(value: Any) -> bool:
    """Return True when ``value`` holds known numbers (not a tracer inside jit/vmap/grad)."""
    leaves = jax.tree_util.tree_leaves(value)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in leaves)


def _as_numpy(value: Any) -> np.ndarray:
    return np.asarray(value)


def check_positive(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and > 0.

    Args:
        name: argument name shown in the message.
        value: scalar or array; skipped when traced.

    Raises:
        ValueError: if a concrete element is <= 0, NaN or infinite.
    """
    if value is None or not is_concrete(value):
        return
    array = _as_numpy(value)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def check_nonnegative(name: str, value: Any) -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and >= 0.

    Args:
        name: argument name shown in the message.
        value: scalar or array; skipped when traced.

    Raises:
        ValueError: if a concrete element is < 0, NaN or infinite.
    """
    if value is None or not is_concrete(value):
        return
    array = _as_numpy(value)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def check_finite(name: str, value: Any) -> None:
    """Raise ``ValueError`` if a concrete ``value`` (any pytree) holds NaN or inf.

    Args:
        name: argument name shown in the message.
        value: array or pytree of arrays; skipped when traced.

    Raises:
        ValueError: naming ``name`` and how many entries are not finite.
    """
    if value is None or not is_concrete(value):
        return
    for leaf in jax.tree_util.tree_leaves(value):
        array = _as_numpy(leaf)
        if array.dtype.kind in "fc":
            bad = int(np.sum(~np.isfinite(array)))
            if bad:
                raise ValueError(
                    f"{name} contains {bad} NaN/inf value(s) out of {array.size}; "
                    "inputs and parameters must be finite"
                )


def check_float_dtype(name: str, value: Any) -> None:
    """Raise ``TypeError`` unless ``value`` has a floating-point dtype.

    Args:
        name: argument name shown in the message.
        value: an array (traced or not).

    Raises:
        TypeError: if the dtype is not floating point.
    """
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating-point dtype, got {dtype}")


def check_int_dtype(name: str, value: Any) -> None:
    """Raise ``TypeError`` unless ``value`` has an integer dtype.

    Args:
        name: argument name shown in the message.
        value: an array (traced or not).

    Raises:
        TypeError: if the dtype is not an integer type.
    """
    dtype = jnp.result_type(value)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{name} must have an integer dtype, got {dtype}")


def check_shape(name: str, value: Any, expected: Sequence[Optional[int]]) -> None:
    """Raise ``ValueError`` unless ``value.shape`` matches ``expected`` (``None`` = any size).

    Args:
        name: argument name shown in the message.
        value: an array (traced or not).
        expected: the expected shape; ``None`` entries match any size.

    Raises:
        ValueError: naming the argument, the expected and the actual shape.
    """
    shape = tuple(jnp.shape(value))
    ok = len(shape) == len(expected) and all(
        e is None or e == s for e, s in zip(expected, shape)
    )
    if not ok:
        shown = tuple("*" if e is None else e for e in expected)
        raise ValueError(f"{name} must have shape {shown}, got {shape}")


def check_ndim(name: str, value: Any, ndim: int) -> None:
    """Raise ``ValueError`` unless ``value`` has ``ndim`` dimensions.

    Args:
        name: argument name shown in the message.
        value: an array (traced or not).
        ndim: the required number of dimensions.

    Raises:
        ValueError: naming the argument and the actual shape.
    """
    shape = tuple(jnp.shape(value))
    if len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {shape}")


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


def concrete_scalar(name: str, value: Any) -> float:
    """Return a concrete, finite, 0-d real ``value`` as a float.

    Accepts Python numbers, NumPy scalars and 0-d arrays, and non-traced 0-d JAX arrays: values
    that fix the structure of a computation (a time window, a grid step) and must be known
    when it is traced.

    Raises:
        TypeError: if ``value`` is traced (inside ``jax.jit``/``vmap``/``grad``), a bool or not
            a real number.
        ValueError: if ``value`` is not 0-d or not finite.
    """
    if not is_concrete(value):
        raise TypeError(f"{name} must be a Python number (static), not a traced value")
    if isinstance(value, bool) or not (
        isinstance(value, numbers.Real) or isinstance(value, (np.ndarray, np.generic, jax.Array))
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {np.shape(value)}")
    dtype = np.asarray(value).dtype
    if dtype == np.bool_ or dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real number, got dtype {dtype}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number
