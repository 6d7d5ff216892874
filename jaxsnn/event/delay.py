"""Learnable axonal delays for event-based networks: ``Delay``.

Every spike of input neuron ``j`` arrives ``d_j`` later: ``(t, j) -> (t + d_j, j)``, with one
delay per neuron (``per="neuron"``) or one for the whole layer (``per="layer"``). The delayed
events are sorted again (by time, then index), so the buffer stays a valid ``Spikes`` buffer.

Gradient. The delayed time is ``t' = t + d_j``, so ``d t' / d d_j = 1`` for every spike of
neuron ``j`` and, for any loss,

    d loss / d d_j = sum over the spikes k of neuron j of d loss / d t'_k,

the gradient with respect to the *input* spike times of the next layer, which EventProp
computes exactly (``jaxsnn.event.eventprop``). ``jax.grad`` assembles exactly this sum
through the gather and the sorting permutation; no approximation is involved. Delays are
clipped to ``[0, max_delay]`` (no spike can arrive before it was sent); a clipped delay has zero
gradient.

Streaming. With ``t_max`` the layer keeps the spikes delayed beyond the window end in its
``carry`` (times relative to the next window's start) and emits them in the next window, so a
stream simulated in chunks equals one long run.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn import spikes as spikes_lib
from jaxsnn._validate import check_nonnegative, check_positive, is_concrete
from jaxsnn.compose import _first_kept, _sorted_spikes
from jaxsnn.initializers import default_dtype
from jaxsnn.spikes import PAD_IDX, Spikes
from jaxsnn.types import Layer

__all__ = ["Delay", "DelayLayer", "DelayRecording", "DelaySpec", "clip_delay", "delay_spikes"]

PER = ("neuron", "layer")


class DelayRecording(NamedTuple):
    """What a ``Delay`` layer records.

    Attributes:
        spikes: the delayed spikes (the layer's output).
        overflow: bool, True if an output or pending buffer was too small (events dropped).
    """

    spikes: Spikes
    overflow: jax.Array


class DelaySpec(NamedTuple):
    """The settings of a ``Delay`` layer (an event graph reads them to put it on a cycle).

    Attributes:
        per: ``"neuron"`` or ``"layer"``.
        max_delay: upper clip of the delays (``None``: none).
        t_max: streaming window (``None``: no streaming).
    """

    per: str
    max_delay: Optional[float]
    t_max: Optional[float]


class DelayLayer(Layer):
    """The ``Layer`` returned by ``Delay``; it also carries its ``DelaySpec``."""

    def __new__(cls, init, apply, *, name: Optional[str] = None, spec: DelaySpec) -> "DelayLayer":
        self = super().__new__(cls, init, apply, name=name)
        self._spec = spec
        return self

    @property
    def spec(self) -> DelaySpec:
        """The layer's ``per``, ``max_delay`` and ``t_max``."""
        return self._spec

    def _replace(self, **fields: Any) -> "DelayLayer":
        unknown = set(fields) - {"init", "apply"}
        if unknown:
            raise ValueError(f"Layer._replace: unknown fields {sorted(unknown)}; use init or apply")
        return DelayLayer(fields.get("init", self.init), fields.get("apply", self.apply),
                          name=getattr(self, "_name", None), spec=self._spec)


def clip_delay(delay: jax.Array, max_delay: Optional[float]) -> jax.Array:
    """Clip delays to ``[0, max_delay]`` (no spike arrives before it was sent).

    ``where``, not ``maximum``/``minimum``: at a delay of exactly 0 the gradient stays 1; a
    clipped delay has zero gradient.
    """
    delay = jnp.where(delay < 0, jnp.zeros_like(delay), delay)
    if max_delay is not None:
        delay = jnp.where(delay > max_delay, jnp.full_like(delay, max_delay), delay)
    return delay


def delay_spikes(spikes: Spikes, delay: jax.Array) -> Spikes:
    """Shift each event by its neuron's delay and sort again (time, then index).

    Args:
        spikes: one sample's buffer.
        delay: ``(n,)`` per-neuron delays or a scalar, used as given (no clipping).

    Returns:
        A buffer of the same capacity: ``(t + delay[j], j)`` for every event ``(t, j)``, sorted.
    """
    delay = jnp.asarray(delay)
    valid = spikes.idx >= 0
    if jnp.ndim(delay) == 0:
        per_event = delay
    else:
        per_event = delay[jnp.clip(spikes.idx, 0, delay.shape[0] - 1)]
    time = jnp.where(valid, spikes.time + jnp.where(valid, per_event, 0.0), jnp.inf)
    return _sorted_spikes(time, spikes.idx)


def _int_or_none(name: str, value: Any) -> Optional[int]:
    if value is None:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
    return int(value)


def Delay(
    *,
    per: str = "neuron",
    initial_delay: float = 0.0,
    delay_init: Optional[Callable[..., jax.Array]] = None,
    max_delay: Optional[float] = None,
    t_max: Optional[float] = None,
    capacity: Optional[int] = None,
    pending_capacity: Optional[int] = None,
    dtype: Any = None,
) -> Layer:
    """Axonal delays: every spike of input neuron ``j`` arrives ``d_j`` later (see module doc).

    Args:
        per: ``"neuron"`` (params ``{"delay": (n,)}``, one delay per input neuron) or
            ``"layer"`` (params ``{"delay": ()}``, one delay for all).
        initial_delay: initial value of every delay (>= 0), used unless ``delay_init`` is given.
        delay_init: ``(key, shape, dtype) -> delays`` (the ``jax.nn.initializers`` signature).
        max_delay: delays are clipped to ``[0, max_delay]`` (default: ``[0, inf)``).
        t_max: window length for streaming: spikes delayed beyond ``t_max`` are kept in the
            ``carry`` and emitted in the next window. ``None`` (default): no streaming, every
            delayed spike is emitted (also those after the window, which an event layer ignores).
        capacity: streaming only: slots of the output buffer (default: input capacity plus
            pending capacity, which never overflows).
        pending_capacity: streaming only: slots of the carried buffer (default: the input
            capacity, or that of the carry passed in).
        dtype: parameter dtype (default float32, float64 under x64).

    Returns:
        A ``DelayLayer`` (a ``Layer`` carrying its ``DelaySpec``; with ``per="layer"`` and no
        ``t_max`` it can sit on a cycle of an ``event_graph``). ``init(rng, (n,))`` gives ``(n,)``; ``apply(params, spikes, external=None,
        carry=None)`` returns ``(carry, delayed Spikes, DelayRecording)``; without ``t_max``
        the carry is ``None`` and the output has the input's capacity.

    Raises:
        ValueError: unknown ``per``, a negative ``initial_delay``/``max_delay``, ``t_max`` not
            > 0, a bad capacity; at ``apply``, malformed spikes, a delay vector of the wrong
            size, a carry without ``t_max``, or external data.
    """
    if per not in PER:
        raise ValueError(f"Delay: per must be one of {PER}, got {per!r}")
    check_nonnegative("initial_delay", initial_delay)
    if max_delay is not None:
        check_nonnegative("max_delay", max_delay)
    if t_max is not None:
        check_positive("t_max", t_max)
    capacity = _int_or_none("capacity", capacity)
    pending_capacity = _int_or_none("pending_capacity", pending_capacity)
    if t_max is None and (capacity is not None or pending_capacity is not None):
        raise ValueError("Delay: capacity and pending_capacity apply to streaming only; give t_max too")
    if delay_init is not None and not callable(delay_init):
        raise TypeError(f"Delay: delay_init must be a callable (key, shape, dtype) -> array, got {type(delay_init).__name__}")
    param_dtype = default_dtype(dtype)
    label = f"Delay(per={per})"

    def init(rng: jax.Array, input_shape: Any):
        try:
            shape = tuple(int(s) for s in input_shape)
        except TypeError:
            raise TypeError(f"{label}: input_shape must be a tuple of ints, got {input_shape!r}") from None
        if len(shape) != 1 or shape[0] < 1:
            raise ValueError(f"{label} takes Spikes of shape (n_inputs,), got input shape {shape}")
        delay_shape = shape if per == "neuron" else ()
        if delay_init is None:
            delay = jnp.full(delay_shape, initial_delay, param_dtype)
        else:
            delay = jnp.asarray(delay_init(rng, delay_shape, param_dtype))
            if delay.shape != delay_shape:
                raise ValueError(f"{label}: delay_init returned shape {delay.shape}, expected {delay_shape}")
        return shape, {"delay": delay}

    def apply(params: Any, inputs: Spikes, external: Any = None, carry: Optional[Spikes] = None):
        if external is not None:
            raise ValueError(f"{label} takes no external data, got {type(external).__name__}")
        if not isinstance(params, dict) or "delay" not in params:
            raise TypeError(f"{label}: params must be the dict {{'delay': ...}} returned by init")
        delay = jnp.asarray(params["delay"])
        if per == "layer" and jnp.ndim(delay) != 0:
            raise ValueError(f"{label}: params['delay'] must be a scalar, got shape {jnp.shape(delay)}")
        if per == "neuron" and jnp.ndim(delay) != 1:
            raise ValueError(f"{label}: params['delay'] must have shape (n_inputs,), got {jnp.shape(delay)}")
        n_neurons = jnp.shape(delay)[0] if per == "neuron" else None
        with jax.ensure_compile_time_eval():
            spikes_lib.validate(inputs, n_neurons=n_neurons, name=f"{label} input spikes")
        dtype = jnp.result_type(delay, inputs.time)
        delay = clip_delay(delay.astype(dtype), max_delay)
        shifted = delay_spikes(Spikes(inputs.time.astype(dtype), inputs.idx), delay)
        if t_max is None:
            if carry is not None:
                raise ValueError(f"{label}: without t_max the layer keeps no carry (got one); give t_max to stream")
            return None, shifted, DelayRecording(shifted, jnp.zeros((), bool))
        if carry is None:
            pending = spikes_lib.empty(pending_capacity or inputs.capacity, dtype)
        else:
            if not isinstance(carry, Spikes):
                raise TypeError(f"{label}: carry must be None or the pending Spikes of a previous call")
            if is_concrete(carry):
                spikes_lib.validate(carry, n_neurons=n_neurons, name=f"{label} carry")
            pending = Spikes(carry.time.astype(dtype), carry.idx)
        merged = _sorted_spikes(
            jnp.concatenate([pending.time, shifted.time]), jnp.concatenate([pending.idx, shifted.idx])
        )
        valid = merged.idx >= 0
        inside = valid & (merged.time <= t_max)
        later = valid & (merged.time > t_max)
        out_capacity = capacity or (inputs.capacity + pending.capacity)
        outputs, n_inside = _first_kept(merged.time, merged.idx, inside, out_capacity)
        next_pending, n_later = _first_kept(merged.time - t_max, merged.idx, later, pending_capacity or pending.capacity)
        overflow = (n_inside > out_capacity) | (n_later > next_pending.capacity)
        return next_pending, outputs, DelayRecording(outputs, overflow)

    return DelayLayer(init, apply, name=label, spec=DelaySpec(per, None if max_delay is None else float(max_delay),
                                                              None if t_max is None else float(t_max)))
