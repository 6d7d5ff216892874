"""Batching a discrete network over time-major data: ``time_major``.

A discrete layer's ``apply`` works on one sample ``(time, ...)``; ``jax.vmap`` batches it. On
batch-major data ``(batch, time, ...)`` every LIF scan (which runs over time) needs its input
transposed to ``(time, batch, ...)`` and its output transposed back, one copy of the window's
activations each way per layer. On time-major data ``(time, batch, ...)``, vmapped over axis 1,
a ``Dense``/``LIF`` stack has no transpose at all: the matmul's output and the scan's input
are already in place (``benchmarks/profile_discrete.py`` measures the difference).
"""

from __future__ import annotations

from typing import Any, Callable, Tuple, Union

import jax

from jaxsnn.types import Layer

__all__ = ["time_major"]

ApplyFn = Callable[..., Tuple[Any, Any, Any]]


def time_major(layer: Union[Layer, ApplyFn]) -> ApplyFn:
    """Batch a discrete layer or network over time-major inputs ``(time, batch, ...)``.

    ``time_major(net)(params, inputs)`` equals ``jax.vmap(lambda x: net.apply(params, x))``
    applied to ``inputs.swapaxes(0, 1)``, with the outputs swapped back, but never moves the
    time axis: outputs and recordings are ``(time, batch, ...)``, the carry (the state after
    the last step) is ``(batch, ...)`` and is accepted in that form to continue a window.

    Args:
        layer: a ``Layer`` (e.g. a ``jaxsnn.serial`` of discrete layers) or its ``apply``.

    Returns:
        ``apply(params, inputs, external=None, carry=None) -> (carry, outputs, recording)``
        for ``inputs`` shaped ``(time, batch, ...)``. Works under ``jax.jit`` and ``jax.grad``.

    Raises:
        TypeError: if ``layer`` is neither a ``Layer`` nor callable.
        ValueError: (from the returned function) inputs with fewer than two axes, a batch size
            that differs from the carry's, or ``external`` data (discrete layers take none).
    """
    apply = layer.apply if isinstance(layer, Layer) else layer
    if not callable(apply):
        raise TypeError(
            f"time_major takes a Layer or an apply function, got {type(layer).__name__}"
        )

    def batched(params: Any, inputs: Any, external: Any = None, carry: Any = None):
        if external is not None:
            raise ValueError(
                "time_major: discrete layers take no external data (external must be None)"
            )
        if not hasattr(inputs, "shape") or len(inputs.shape) < 2:
            raise ValueError(
                "time_major: inputs must be (time, batch, ...), got shape "
                f"{tuple(getattr(inputs, 'shape', ()))}"
            )
        if carry is None:
            return jax.vmap(lambda x: apply(params, x), in_axes=1, out_axes=(0, 1, 1))(inputs)
        batch = inputs.shape[1]
        for leaf in jax.tree_util.tree_leaves(carry):
            if not hasattr(leaf, "shape") or len(leaf.shape) == 0 or leaf.shape[0] != batch:
                raise ValueError(
                    f"time_major: every carry array must have the batch axis first (size "
                    f"{batch}, the inputs' axis 1), got shape {tuple(getattr(leaf, 'shape', ()))}"
                )
        return jax.vmap(
            lambda x, c: apply(params, x, carry=c), in_axes=(1, 0), out_axes=(0, 1, 1)
        )(inputs, carry)

    return batched
