"""Spatial pooling and flattening for convolutional stacks: ``SumPool``, ``AvgPool``,
``MaxPool``, ``Flatten``.

Per sample the input is ``(time, height, width, channels)`` (the output of ``Conv`` or of an
``LIF`` after it); every time step is pooled at once with ``lax.reduce_window`` over the two
spatial axes (window ``(1, wh, ww, 1)``), so under ``jax.vmap`` the whole batch and window is one
operation. ``Flatten`` turns ``(time, *features)`` into ``(time, prod(features))`` for a ``Dense``
or ``LIF`` that follows. All four are stateless ``Layer``s without parameters (``{}``)::

    net = jaxsnn.serial(
        Conv(16, 3), LIF((48, 48, 16), project=False, **neuron), MaxPool(2),
        Conv(32, 3), LIF((24, 24, 32), project=False, **neuron), MaxPool(2),
        Flatten(), LIF(10, **neuron),
    )

On 0/1 spikes ``MaxPool`` is a logical OR over the window (its gradient goes to the window's
first maximum, as in ``lax.reduce_window``), ``SumPool`` counts spikes and ``AvgPool`` gives the
spike fraction. ``MaxPool`` over non-overlapping windows without padding (the default) has a
hand-written derivative (an elementwise first-maximum mask) equal to ``reduce_window``'s, whose
select-and-scatter gradient is slow on CPU.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax

from jaxsnn._validate import check_finite, check_float_dtype
from jaxsnn.discrete._common import check_no_external, input_shape_tuple
from jaxsnn.discrete.conv import _pair, _padding
from jaxsnn.types import Layer, named_layer

Array = jax.Array

__all__ = ["AvgPool", "Flatten", "MaxPool", "SumPool"]

_LAYOUT = "(time, height, width, channels)"


def _check_params(label: str, params: Any) -> None:
    if params not in ({}, (), None):
        raise ValueError(f"{label} has no parameters: params must be {{}}, got {params!r}")


def _check_spatial_inputs(label: str, inputs: Any) -> Array:
    if not hasattr(inputs, "shape") or not hasattr(inputs, "dtype"):
        raise TypeError(f"{label}: inputs must be an array, got {type(inputs).__name__}")
    if len(inputs.shape) != 4:
        raise ValueError(
            f"{label}: inputs must be 4-dimensional {_LAYOUT} per sample, got shape "
            f"{tuple(inputs.shape)}; batch with jax.vmap"
        )
    check_float_dtype(f"{label}: inputs", inputs)
    check_finite(f"{label}: inputs", inputs)
    return inputs


def _window_entries(inputs: Array, window: Tuple[int, int]) -> list:
    """The ``wh * ww`` entries of every non-overlapping window, in row-major order within the
    window, each as one strided slice ``(time, H // wh, W // ww, C)``; rows and columns beyond
    the last whole window are dropped (``"VALID"``). Strided slices, unlike a reshape into
    tiles, need no transpose under ``jax.vmap`` whatever the batch axis (time-major batches)."""
    rows, cols = inputs.shape[1] // window[0], inputs.shape[2] // window[1]
    return [
        lax.slice(inputs, (0, i, j, 0),
                  (inputs.shape[0], i + (rows - 1) * window[0] + 1, j + (cols - 1) * window[1] + 1,
                   inputs.shape[3]),
                  (1, window[0], window[1], 1))
        for i in range(window[0]) for j in range(window[1])
    ]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _max_of_tiles(inputs: Array, window: Tuple[int, int]) -> Array:
    """``MaxPool`` over non-overlapping windows (stride = window, no padding).

    The values equal ``lax.reduce_window``'s max bit for bit, and so do both derivatives: the
    tangent (and so the gradient) of each window is its first maximum's, in row-major order, as
    for ``reduce_window`` (on 0/1 spikes windows are full of ties). ``reduce_window``'s gradient
    is a select-and-scatter, which on CPU took about half of the ``cnn_pool`` benchmark's
    forward + backward; here the derivative is an elementwise mask, built only under
    differentiation.
    """
    return lax.reduce_window(inputs, -jnp.inf, lax.max, (1,) + window + (1,), (1,) + window + (1,),
                             "VALID")


@_max_of_tiles.defjvp
def _max_of_tiles_jvp(window, primals, tangents):
    (inputs,), (tangent,) = primals, tangents
    out = _max_of_tiles(inputs, window)
    tangent_out = jnp.zeros_like(out)
    taken = jnp.zeros(out.shape, bool)
    for entry, entry_tangent in zip(_window_entries(inputs, window), _window_entries(tangent, window)):
        chosen = (entry == out) & ~taken  # the first maximum, as reduce_window
        tangent_out = jnp.where(chosen, entry_tangent, tangent_out)
        taken = taken | chosen
    return out, tangent_out


def _pool(kind: str, window: Any, stride: Any, padding: Any) -> Layer:
    window = _pair("window", window)
    strides = window if stride is None else _pair("stride", stride)
    pad = _padding(padding)
    label = f"{kind}({window[0] if window[0] == window[1] else window})"
    dims = (1,) + window + (1,)
    steps = (1,) + strides + (1,)
    pads = pad if isinstance(pad, str) else ((0, 0),) + tuple(pad) + ((0, 0),)

    tiled = strides == window and (pads == "VALID" or pads == ((0, 0), (0, 0), (0, 0), (0, 0)))

    def reduce(inputs: Array) -> Array:
        if kind == "MaxPool":
            if tiled:
                return _max_of_tiles(inputs, window)
            return lax.reduce_window(inputs, -jnp.inf, lax.max, dims, steps, pads)
        total = lax.reduce_window(inputs, 0.0, lax.add, dims, steps, pads)
        if kind == "SumPool":
            return total
        # Average over the entries inside the input (padding is not counted), as stax does.
        ones = jnp.ones((1,) + inputs.shape[1:3] + (1,), inputs.dtype)
        count = lax.reduce_window(ones, 0.0, lax.add, dims, steps, pads)
        return total / count

    def init(rng: jax.Array, input_shape: Any) -> Tuple[Tuple[int, ...], dict]:
        del rng
        shape = input_shape_tuple(label, input_shape, 4, _LAYOUT)
        if len(shape) != 4:
            raise ValueError(f"{label} takes {_LAYOUT} inputs, got input shape {shape}")
        try:
            out = jax.eval_shape(reduce, jax.ShapeDtypeStruct(shape, jnp.float32))
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{label}: window {window} cannot be applied to input {shape}: {error}"
            ) from None
        if any(s <= 0 for s in out.shape):
            raise ValueError(
                f"{label}: window {window} with padding {pad!r} is larger than the input "
                f"{shape[1:3]}; use a smaller window or padding='SAME'"
            )
        return tuple(out.shape), {}

    def apply(params, inputs, external=None, carry=None):
        del carry
        check_no_external(label, external)
        _check_params(label, params)
        inputs = _check_spatial_inputs(label, inputs)
        if isinstance(pad, str) and pad == "VALID" and (
            inputs.shape[1] < window[0] or inputs.shape[2] < window[1]
        ):
            raise ValueError(
                f"{label}: window {window} is larger than the input {tuple(inputs.shape[1:3])}"
            )
        return None, reduce(inputs), None

    return named_layer(init, apply, label)


def SumPool(
    window: Union[int, Sequence[int]],
    stride: Union[None, int, Sequence[int]] = None,
    padding: Any = "VALID",
) -> Layer:
    """Sum over spatial windows of every time step: ``y[t, i, j, c] = sum_window x[t, ., ., c]``.

    Args:
        window: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``; default the window (non-overlapping windows, as
            ``torch.nn.MaxPool2d``; note that ``stax``'s pools default to stride 1).
        padding: ``"VALID"`` (default), ``"SAME"``, ``"SAME_LOWER"`` or
            ``((top, bottom), (left, right))``; padded entries count as 0.

    Returns:
        A stateless ``Layer`` without parameters: ``apply({}, inputs (time, H, W, C))`` returns
        ``(None, (time, H', W', C), None)``.

    Raises:
        ValueError: a non-positive window/stride, bad padding; at ``init`` an input shape that
            is not ``(time, H, W, C)`` or smaller than the window; at ``apply`` inputs of the
            wrong rank, params other than ``{}``, or NaN/inf.
        TypeError: non-integer window/stride, non-float inputs.
    """
    return _pool("SumPool", window, stride, padding)


def AvgPool(
    window: Union[int, Sequence[int]],
    stride: Union[None, int, Sequence[int]] = None,
    padding: Any = "VALID",
) -> Layer:
    """Mean over spatial windows of every time step (padded entries are not counted).

    Args:
        window, stride, padding: as for ``SumPool``.

    Returns:
        A stateless ``Layer`` without parameters (see ``SumPool``).

    Raises:
        ValueError, TypeError: as for ``SumPool``.
    """
    return _pool("AvgPool", window, stride, padding)


def MaxPool(
    window: Union[int, Sequence[int]],
    stride: Union[None, int, Sequence[int]] = None,
    padding: Any = "VALID",
) -> Layer:
    """Maximum over spatial windows of every time step (on spikes: 1 if any neuron spiked).

    Args:
        window, stride, padding: as for ``SumPool`` (padded entries count as ``-inf``).

    Returns:
        A stateless ``Layer`` without parameters (see ``SumPool``).

    Raises:
        ValueError, TypeError: as for ``SumPool``.
    """
    return _pool("MaxPool", window, stride, padding)


def Flatten() -> Layer:
    """Flatten the features of every time step: ``(time, *features) -> (time, prod(features))``.

    Returns:
        A stateless ``Layer`` without parameters: ``apply({}, inputs (time, ...))`` returns
        ``(None, (time, n), None)``.

    Raises:
        ValueError: at ``init`` an input shape with fewer than two entries; at ``apply``
            inputs of rank below 2 or params other than ``{}``.
    """
    label = "Flatten"

    def init(rng: jax.Array, input_shape: Any) -> Tuple[Tuple[int, ...], dict]:
        del rng
        shape = input_shape_tuple(label, input_shape, 2, "(time, *features)")
        return (shape[0], math.prod(shape[1:])), {}

    def apply(params, inputs, external=None, carry=None):
        del carry
        check_no_external(label, external)
        _check_params(label, params)
        if not hasattr(inputs, "shape") or len(inputs.shape) < 2:
            raise ValueError(
                f"{label}: inputs must be (time, *features) per sample, got shape "
                f"{tuple(getattr(inputs, 'shape', ()))}; batch with jax.vmap"
            )
        return None, jnp.reshape(inputs, (inputs.shape[0], -1)), None

    return named_layer(init, apply, label)
