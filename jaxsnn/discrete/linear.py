"""Feed-forward projection over a whole window: ``Dense``."""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from jaxsnn._validate import check_finite, check_float_dtype, positive_int
from jaxsnn.discrete._common import check_inputs, check_no_external, input_shape_tuple
from jaxsnn.initializers import WeightInit, default_dtype, init_weight, make_weight_init
from jaxsnn.types import Layer, named_layer

Array = jax.Array

__all__ = ["Dense", "Linear"]


def Dense(
    size: int,
    *,
    bias: bool = False,
    weight_init: Optional[WeightInit] = None,
    weight_scale: float = 1.0,
    weight_mean: float = 0.0,
    bias_init: Optional[WeightInit] = None,
    dtype: Any = None,
) -> Layer:
    """Dense projection of every time step at once: ``y_t = x_t @ W (+ b)``.

    One ``(time, n_in) @ (n_in, size)`` matrix multiply per sample (under ``jax.vmap`` one
    ``(batch * time, n_in)`` product). Follow it with ``LIF(size, project=False)``.

    Args:
        size: number of output features.
        bias: add a learnable bias ``b (size,)`` (initialised to zero unless ``bias_init``).
        weight_init: ``(key, shape, dtype) -> W``; default
            ``weight_mean + weight_scale * N(0, 1) / sqrt(n_in)``.
        weight_scale, weight_mean: parameters of the default initialiser.
        bias_init: ``(key, shape, dtype) -> b``; default zeros.
        dtype: parameter dtype (default float32, float64 under x64).

    Returns:
        A stateless ``Layer``: params ``{"weight": (n_in, size)[, "bias": (size,)]}``;
        ``apply(params, inputs (time, n_in))`` returns ``(None, (time, size), None)``.

    Raises:
        ValueError: non-positive ``size``; at ``init`` an input shape that is not
            ``(time, n_in)``; at ``apply`` inputs whose features do not match ``W`` or
            NaN/inf in inputs or params.
        TypeError: non-float inputs or params.
    """
    size = positive_int("size", size)
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
    label = f"Dense({size})"
    w_init = make_weight_init(weight_init, weight_scale, weight_mean)
    param_dtype = default_dtype(dtype)

    def init(rng: jax.Array, input_shape):
        shape = input_shape_tuple(label, input_shape, 2, "(time, features)")
        if len(shape) != 2:
            raise ValueError(f"{label} takes (time, features) inputs, got {shape}")
        key_w, key_b = jax.random.split(rng)
        params = {"weight": init_weight(label, key_w, (shape[1], size), param_dtype, w_init)}
        if bias:
            if bias_init is None:
                params["bias"] = jnp.zeros((size,), param_dtype)
            else:
                params["bias"] = init_weight(label, key_b, (size,), param_dtype, bias_init)
        return (shape[0], size), params

    def apply(params, inputs, external=None, carry=None):
        del carry
        check_no_external(label, external)
        if not isinstance(params, dict) or "weight" not in params:
            raise ValueError(f"{label}: params must be the dict returned by init (key 'weight')")
        if bias != ("bias" in params):
            raise ValueError(
                f"{label}: built with bias={bias} but params "
                f"{'has' if 'bias' in params else 'has no'} 'bias'"
            )
        weight = params["weight"]
        check_float_dtype(f"{label}: params['weight']", weight)
        if jnp.ndim(weight) != 2 or jnp.shape(weight)[1] != size:
            raise ValueError(
                f"{label}: params['weight'] has shape {tuple(jnp.shape(weight))}, "
                f"expected (n_in, {size})"
            )
        check_finite(f"{label}: params", params)
        inputs = check_inputs(label, inputs, (jnp.shape(weight)[0],))
        outputs = jnp.matmul(inputs, weight)
        if bias:
            outputs = outputs + params["bias"]
        return None, outputs, None

    return named_layer(init, apply, label)


Linear = Dense
