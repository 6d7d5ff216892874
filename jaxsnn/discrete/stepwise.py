"""Run a discrete network a few time steps at a time, all layers in one loop: ``stepwise``.

A ``serial`` of discrete layers runs layer by layer: each layer processes the whole window
(one matmul or one scan over time) and writes its output, ``(time, ...)``, for the next layer
to read. For training this is what backpropagation through time needs anyway. For inference
on wide layers (a convolutional stack on event-camera frames: ``(T, B, 48, 48, 16)`` float32
spikes are 472 MB at T = 100, B = 32) writing and reading every hidden layer's output costs
more than computing it. ``stepwise(net)`` instead loops over the window once and, per step,
runs the whole network on that step's input, continuing from the state (``carry``) the
previous step left:

    carry_0 = rest;   (carry_k, y_k, r_k) = net.apply(params, x[k w:(k+1) w], carry=carry_{k-1})

so only the last layer's output is written for the whole window. Because every discrete layer
continues exactly from its carry, the result equals ``net.apply(params, x)``: bit for bit for
the neurons' dynamics; a ``Dense`` projection of ``w`` steps instead of the whole window sums
in a different order, which can move a membrane that lands within float32 round-off of the
threshold across it (float64: equal spikes, states to ``1e-12``; see the tests).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxsnn._validate import positive_int
from jaxsnn.types import Layer, layer_name

__all__ = ["stepwise"]


def stepwise(layer: Layer, window: int = 1) -> Layer:
    """The same network, run ``window`` time steps at a time with all its layers in one loop.

    ``stepwise(net).apply(params, inputs, carry=carry)`` equals ``net.apply(params, inputs,
    carry=carry)`` (see the module docstring for round-off) for any network whose layers
    continue a window exactly from their ``carry`` (every ``jaxsnn.discrete`` layer). It runs
    one loop over ``time / window`` windows; the first window starts from ``carry`` (``None``:
    each layer's rest state, as the layers define it; that window then runs before the loop).
    Use it for inference and streaming; for training, ``net`` itself is faster (its layers'
    hand-written adjoints work on whole windows, while gradients of ``stepwise`` go through the
    loop step by step). Batch with ``jaxsnn.discrete.time_major(stepwise(net))``.

    Args:
        layer: a discrete ``Layer`` or ``serial`` of them (per-sample ``(time, ...)`` inputs;
            outputs and recordings with time on axis 0).
        window: time steps per loop iteration; must divide the number of time steps. 1 keeps
            the fewest activations in memory; larger windows give ``Dense`` layers bigger
            matmuls.

    Returns:
        A ``Layer`` with ``layer``'s ``init``, params, carry and recording structure.
        ``apply(params, inputs, external=None, carry=None) -> (carry, outputs, recording)``
        with ``recording`` leaves ``(time, ...)`` as from ``layer``. Works under ``jax.jit``,
        ``jax.vmap`` and ``jax.grad``.

    Raises:
        TypeError: if ``layer`` is not a ``Layer``.
        ValueError: a ``window`` that is not a positive int; (from ``apply``) ``external`` data
            (not split over time; run ``layer`` itself), inputs without a time axis, or a
            number of time steps that ``window`` does not divide.
    """
    if not isinstance(layer, Layer):
        raise TypeError(
            f"stepwise takes a jaxsnn Layer (e.g. jaxsnn.serial(...)), got {type(layer).__name__}"
        )
    window = positive_int("window", window)
    name = f"stepwise({layer_name(layer)})"

    def apply(params: Any, inputs: Any, external: Any = None, carry: Any = None):
        if external is not None:
            raise ValueError(
                f"{name}: external data is not split over time; run the network itself "
                "(without stepwise) to inject it"
            )
        steps = int(inputs.shape[0]) if hasattr(inputs, "shape") and len(inputs.shape) else 0
        if steps == 0 or steps % window:
            raise ValueError(
                f"{name}: inputs must be (time, ...) with a number of time steps divisible by "
                f"window={window}, got shape {tuple(getattr(inputs, 'shape', ()))}; pad the "
                "inputs or choose a window that divides the time steps"
            )
        windows = inputs.reshape((steps // window, window) + tuple(inputs.shape[1:]))
        if carry is None:
            # Rest is each layer's own definition (carry=None), so the first window runs
            # outside the loop; its outputs go into preallocated buffers that the loop fills
            # in place (a scan over the other windows plus a concatenation would copy the
            # whole output once more; a lax.cond on the first window inside the scan costs
            # copies of the carry at every step: both measured slower).
            first_carry, first_out, first_rec = layer.apply(params, windows[0])
            start = 1
        else:
            first_carry, first_out, first_rec = carry, None, None
            start = 0
        n_windows = windows.shape[0]
        out_shape, rec_shape = jax.eval_shape(
            lambda c, x: layer.apply(params, x, carry=c)[1:], first_carry, windows[0]
        )

        def buffers(shapes, first):
            full = jax.tree_util.tree_map(
                lambda s: jnp.zeros((n_windows,) + tuple(s.shape), s.dtype), shapes
            )
            if first is None:
                return full
            return jax.tree_util.tree_map(lambda b, f: b.at[0].set(f), full, first)

        def body(index, state):
            previous, out_buffer, rec_buffer = state
            x_window = lax.dynamic_index_in_dim(windows, index, keepdims=False)
            new, outputs, recording = layer.apply(params, x_window, carry=previous)
            put = lambda b, v: lax.dynamic_update_index_in_dim(b, v, index, 0)  # noqa: E731
            return (new, jax.tree_util.tree_map(put, out_buffer, outputs),
                    jax.tree_util.tree_map(put, rec_buffer, recording))

        last, outputs, recording = lax.fori_loop(
            start, n_windows, body,
            (first_carry, buffers(out_shape, first_out), buffers(rec_shape, first_rec)),
        )
        merge = lambda a: a.reshape((steps,) + a.shape[2:])  # noqa: E731  (n, w, ...) -> (T, ...)
        return last, jax.tree_util.tree_map(merge, outputs), jax.tree_util.tree_map(merge, recording)

    return Layer(layer.init, apply, name=name, leaves=layer.leaves)
