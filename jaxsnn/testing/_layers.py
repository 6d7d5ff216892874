"""Plumbing shared by the checks: running a layer and editing spike buffers (NumPy side)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import jax.numpy as jnp
import numpy as np

from jaxsnn.spikes import Spikes


def apply_fn(layer: Any) -> Callable[..., Any]:
    """The ``apply`` function of a ``Layer``, an ``(init, apply)`` pair or a bare ``apply``."""
    if isinstance(layer, tuple) and len(layer) == 2 and callable(layer[1]):
        return layer[1]
    if callable(layer):
        return layer
    raise TypeError(f"layer must be an (init, apply) pair or an apply function, got {type(layer).__name__}")


def run(layer: Any, params: Any, inputs: Any, carry: Any = None) -> Tuple[Any, Any, Any]:
    """``(carry, outputs, recording)`` of one call (``carry`` passed only when given)."""
    apply = apply_fn(layer)
    return apply(params, inputs, carry=carry) if carry is not None else apply(params, inputs)


def outputs(layer: Any, params: Any, inputs: Any) -> Any:
    """The outputs of one call."""
    return run(layer, params, inputs)[1]


def is_event(value: Any) -> bool:
    """Whether ``value`` is a spike buffer (event layers) rather than a dense array."""
    return isinstance(value, Spikes)


def valid_events(spikes: Spikes) -> Tuple[np.ndarray, np.ndarray]:
    """``(time, idx)`` of the real events (``idx >= 0``), flattened, in buffer order."""
    time = np.asarray(spikes.time)
    idx = np.asarray(spikes.idx)
    keep = idx >= 0
    return time[keep], idx[keep]


def n_events(spikes: Spikes) -> int:
    """Number of real events in a buffer."""
    return int(np.sum(np.asarray(spikes.idx) >= 0))


def is_full(spikes: Any) -> bool:
    """Whether an (unbatched) output buffer is full, so later events may have been cut off."""
    return is_event(spikes) and n_events(spikes) >= spikes.capacity


def filter_events(spikes: Spikes, keep: Callable[[np.ndarray], np.ndarray]) -> Spikes:
    """The events whose time satisfies ``keep``, others replaced by padding (in place); the
    times keep their dtype (the default tolerance depends on it)."""
    time = np.asarray(spikes.time)
    idx = np.asarray(spikes.idx)
    mask = (idx >= 0) & keep(time.astype(np.float64))
    return Spikes(np.where(mask, time, np.asarray(np.inf, time.dtype)), np.where(mask, idx, -1))


def rebuild(time: np.ndarray, idx: np.ndarray, like: Spikes, capacity: Optional[int] = None) -> Spikes:
    """A buffer with events in the given order (not re-sorted), padded to ``like``'s capacity."""
    capacity = like.capacity if capacity is None else capacity
    dtype = np.asarray(like.time).dtype
    out_time = np.full(capacity, np.inf, dtype=dtype)
    out_idx = np.full(capacity, -1, dtype=np.int32)
    out_time[: time.size] = time
    out_idx[: idx.size] = idx
    return Spikes(jnp.asarray(out_time), jnp.asarray(out_idx))


def overflow_note(outputs_: Any) -> str:
    """A remark for error messages when an output buffer is full."""
    if is_full(outputs_):
        return " (note: the output buffer is full, so events may have been cut off by its capacity)"
    return ""
