"""Stateless array operations of the NIR importer (pure JAX, any leading axes).

Every function here maps an array shaped ``(*lead, *node_input_shape)`` to
``(*lead, *node_output_shape)``; the leading axes are time (a whole window at once) or nothing
(one step inside a scan). Layouts are NIR's: channels first, convolution kernels
``(C_out, C_in / groups, *kernel)``.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
Pads = Tuple[Tuple[int, int], ...]


def fold_leading(x: Array, n_trailing: int) -> Tuple[Array, Tuple[int, ...]]:
    """Merge all axes before the last ``n_trailing`` into one batch axis (for convolutions)."""
    lead = tuple(x.shape[: x.ndim - n_trailing])
    return jnp.reshape(
        x, (int(np.prod(lead, dtype=np.int64)),) + tuple(x.shape[x.ndim - n_trailing :])
    ), lead


def unfold_leading(y: Array, lead: Tuple[int, ...]) -> Array:
    """Inverse of ``fold_leading``."""
    return jnp.reshape(y, lead + tuple(y.shape[1:]))


def affine(x: Array, weight: Array, bias) -> Array:
    """``x @ weight (+ bias)`` with ``weight`` shaped ``(n_in, n_out)``."""
    y = jnp.matmul(x, weight)
    return y if bias is None else y + bias


def conv(
    x: Array,
    weight: Array,
    bias,
    stride: Sequence[int],
    padding: Pads,
    dilation: Sequence[int],
    groups: int,
) -> Array:
    """N-d convolution (cross-correlation, as in PyTorch and NIR), channels first.

    Args:
        x: ``(*lead, C_in, *spatial)``.
        weight: ``(C_out, C_in / groups, *kernel)``.
        bias: ``(C_out,)`` or ``None``.
        stride, dilation: one int per spatial axis.
        padding: one ``(low, high)`` pair per spatial axis (zeros).
        groups: feature groups.

    Returns:
        ``(*lead, C_out, *spatial_out)``.
    """
    n_spatial = weight.ndim - 2
    folded, lead = fold_leading(x, n_spatial + 1)
    spatial = "HWD"[:n_spatial]
    numbers = ("NC" + spatial, "OI" + spatial, "NC" + spatial)
    y = lax.conv_general_dilated(
        folded,
        weight,
        window_strides=tuple(stride),
        padding=tuple(tuple(p) for p in padding),
        rhs_dilation=tuple(dilation),
        dimension_numbers=numbers,
        feature_group_count=groups,
    )
    if bias is not None:
        y = y + jnp.reshape(bias, (-1,) + (1,) * n_spatial)
    return unfold_leading(y, lead)


def pool2d(
    x: Array, kernel: Sequence[int], stride: Sequence[int], padding: Pads, mean: bool
) -> Array:
    """Sum (or mean over the whole window, zero padding included) over the last two axes."""
    window = (1,) * (x.ndim - 2) + tuple(int(k) for k in kernel)
    strides = (1,) * (x.ndim - 2) + tuple(int(s) for s in stride)
    pads = ((0, 0),) * (x.ndim - 2) + tuple(tuple(p) for p in padding)
    # A concrete zero makes this the (differentiable) windowed-sum primitive.
    y = lax.reduce_window(x, np.zeros((), x.dtype), lax.add, window, strides, pads)
    if mean:
        y = y / float(np.prod(kernel))
    return y


def flatten(x: Array, start_dim: int, end_dim: int, n_node_dims: int, channels_last: bool) -> Array:
    """NIR ``Flatten`` over the node's own axes (the leading time axis, if any, is kept).

    Args:
        x: ``(*lead, *shape)`` with ``len(shape) == n_node_dims``.
        start_dim, end_dim: NIR's (already normalised, non-negative) flatten range.
        n_node_dims: number of node axes.
        channels_last: flatten a ``(C, H, W)`` tensor in ``(H, W, C)`` order (how libraries
            that run channels-last flatten), instead of ``(C, H, W)`` order.
    """
    n_lead = x.ndim - n_node_dims
    if channels_last:
        perm = tuple(range(n_lead)) + tuple(n_lead + a for a in range(1, n_node_dims)) + (n_lead,)
        x = jnp.transpose(x, perm)
    shape = tuple(x.shape)
    start, end = n_lead + start_dim, n_lead + end_dim
    merged = int(np.prod(shape[start : end + 1], dtype=np.int64))
    return jnp.reshape(x, shape[:start] + (merged,) + shape[end + 1 :])


def delay_window(x: Array, steps: np.ndarray, history: Array) -> Array:
    """Delay each element of ``x (T, *shape)`` by its own number of steps.

    Args:
        x: ``(T, *shape)`` inputs of this window.
        steps: integer delays ``shape`` (>= 0), static.
        history: ``(K, *shape)`` the last ``K = max(steps)`` inputs before this window
            (zeros at rest), oldest first.

    Returns:
        ``y (T, *shape)`` with ``y[t] = x[t - steps]`` (reading ``history`` for ``t < steps``).
    """
    k_max = history.shape[0]
    padded = jnp.concatenate([history, x], axis=0)
    index = jnp.arange(x.shape[0]).reshape((-1,) + (1,) * (x.ndim - 1)) + (k_max - steps)
    return jnp.take_along_axis(padded, index, axis=0)
