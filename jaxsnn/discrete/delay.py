"""A fixed transmission delay on the time grid: ``Delay(steps)``.

``y_t = x_{t - steps}``; before the first input has arrived the output is zero (rest). The
layer keeps the last ``steps`` inputs as its ``carry``, so a window simulated in chunks equals
the window simulated at once. Over a whole window it is one concatenation and one slice, no
scan; gradients flow through unchanged (``d y_t / d x_{t - steps} = 1``).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp

from jaxsnn._validate import check_float_dtype
from jaxsnn.discrete._common import check_no_external, input_shape_tuple
from jaxsnn.types import Layer, named_layer

Array = jax.Array

__all__ = ["Delay", "delay_window"]


def _nonnegative_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an int >= 0 (time steps), got {value!r}")
    return int(value)


def delay_window(inputs: Array, history: Array, steps: int) -> Tuple[Array, Array]:
    """Delay a ``(time, *features)`` window by ``steps`` given the ``steps`` inputs before it.

    Args:
        inputs: ``(T, *features)``.
        history: ``(steps, *features)``: the inputs of steps ``-steps .. -1`` (oldest first).
        steps: the delay, >= 0.

    Returns:
        ``(outputs, new_history)``: ``outputs[t] = inputs[t - steps]`` (``history`` before the
        window) and the last ``steps`` inputs, to delay the next window.
    """
    full = jnp.concatenate([jnp.asarray(history, inputs.dtype), inputs], axis=0)
    n_steps = inputs.shape[0]
    return full[:n_steps], full[n_steps:]


def Delay(steps: int) -> Layer:
    """Delay a discrete signal by a whole number of time steps: ``y_t = x_{t - steps}``.

    Args:
        steps: delay in time steps, >= 0 (0 is the identity).

    Returns:
        A ``Layer`` with params ``{}``. ``apply(params, inputs (time, *features),
        external=None, carry=None)`` returns ``(history, outputs, None)``: ``history`` is
        ``(steps, *features)``, the last ``steps`` inputs (``carry=None`` is rest: zeros).

    Raises:
        ValueError: if ``steps`` is not an int >= 0; at ``apply``, a carry of the wrong shape
            or external data.
        TypeError: non-float inputs.
    """
    steps = _nonnegative_int("steps", steps)
    label = f"Delay({steps})"

    def init(rng: jax.Array, input_shape: Tuple[int, ...]):
        del rng
        shape = input_shape_tuple(label, input_shape, 1, "(time, *features)")
        return shape, {}

    def apply(params: Any, inputs: Array, external: Any = None, carry: Optional[Array] = None):
        del params
        check_no_external(label, external)
        if not hasattr(inputs, "shape") or jnp.ndim(inputs) < 1:
            raise TypeError(f"{label}: inputs must be a (time, *features) array, got {type(inputs).__name__}")
        check_float_dtype(f"{label}: inputs", inputs)
        features = tuple(inputs.shape[1:])
        if carry is None:
            history = jnp.zeros((steps,) + features, inputs.dtype)
        else:
            if tuple(jnp.shape(carry)) != (steps,) + features:
                raise ValueError(
                    f"{label}: carry must be None (rest) or the (steps, *features) = "
                    f"{(steps,) + features} history returned by a previous call, got shape "
                    f"{tuple(jnp.shape(carry))}"
                )
            history = carry
        outputs, history = delay_window(inputs, history, steps)
        return history, outputs, None

    return named_layer(init, apply, label)
