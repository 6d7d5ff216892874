"""Layers converting between event buffers and dense time grids, so discrete (``(time, n)``
arrays) and event (``Spikes``) layers can share one ``jaxsnn.serial``."""

from __future__ import annotations

from typing import Any, Optional

import jax

from jaxsnn import spikes as spikes_lib
from jaxsnn._validate import check_positive, positive_int
from jaxsnn.spikes import Spikes
from jaxsnn.types import Layer, named_layer

__all__ = ["ToDense", "ToSpikes"]


def _shape(label: str, input_shape: Any, ndim: int, meaning: str):
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise TypeError(f"input_shape must be a tuple of ints, got {input_shape!r}") from None
    if len(shape) != ndim:
        raise ValueError(f"{label} takes inputs of shape {meaning}, got {shape}")
    return shape


def ToDense(n_neurons: int, dt: float, n_steps: int) -> Layer:
    """Bin ``Spikes`` of ``n_neurons`` neurons onto a grid: ``(n,)`` -> ``(n_steps, n)`` spike counts.

    An event at time ``t`` lands in step ``floor(t / dt)``; events at or after ``n_steps * dt``
    are dropped. Not differentiable w.r.t. spike times (binning is piecewise constant).

    Args:
        n_neurons: number of neurons of the incoming ``Spikes`` (checked against the input
            shape at init; static, because the output width must be known under jit).
        dt: step width, > 0.
        n_steps: number of steps.

    Returns:
        A stateless ``Layer`` without parameters.

    Raises:
        TypeError: if ``n_steps`` or ``n_neurons`` is not an int.
        ValueError: if ``dt <= 0``, ``n_steps < 1`` or ``n_neurons < 1``; at init, if the input
            shape is not ``(n_neurons,)``.
    """
    check_positive("dt", dt)
    n_steps = positive_int("n_steps", n_steps)
    n_neurons = positive_int("n_neurons", n_neurons)
    label = "ToDense"

    def init(rng: jax.Array, input_shape: Any):
        (n,) = _shape(label, input_shape, 1, "(n_neurons,) (Spikes)")
        if n != n_neurons:
            raise ValueError(f"{label} was built for {n_neurons} neurons, got input shape ({n},)")
        return (n_steps, n), {}

    def apply(params: Any, inputs: Spikes, external: Any = None, carry: Any = None):
        if external is not None:
            raise ValueError(f"{label} takes no external data")
        spikes_lib.validate(inputs, n_neurons=n_neurons, name=f"{label} input spikes")
        return None, spikes_lib.to_dense(inputs, n_neurons, dt, n_steps), None

    return named_layer(init, apply, label)


def ToSpikes(dt: float, capacity: int, offset: float = 0.0) -> Layer:
    """Turn a binary ``(n_steps, n)`` grid into ``Spikes``: ``(n_steps, n)`` -> ``(n,)``.

    A nonzero entry at step ``k`` becomes an event at ``offset + k * dt``. Not differentiable.

    Args:
        dt: step width, > 0.
        capacity: slots of the output buffer.
        offset: time of step 0 within its bin.

    Returns:
        A stateless ``Layer``.

    Raises:
        TypeError: if ``capacity`` is not an int.
        ValueError: if ``dt <= 0`` or ``capacity < 1``; at apply, if a concrete grid holds more
            spikes than ``capacity``.
    """
    check_positive("dt", dt)
    capacity = positive_int("capacity", capacity)
    label = "ToSpikes"

    def init(rng: jax.Array, input_shape: Any):
        shape = _shape(label, input_shape, 2, "(time, n_neurons)")
        return (shape[1],), {}

    def apply(params: Any, inputs: jax.Array, external: Optional[Any] = None, carry: Any = None):
        if external is not None:
            raise ValueError(f"{label} takes no external data")
        return None, spikes_lib.from_dense(inputs, dt, capacity, offset), None

    return named_layer(init, apply, label)
