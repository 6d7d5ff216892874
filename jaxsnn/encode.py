"""Encoders: real values to spike times, rates to spike trains, class labels to target times.

Event-based layers take ``jaxsnn.Spikes``; discrete-time layers take dense ``(T, n)`` grids
(one sample; batch with ``jax.vmap`` or a leading axis, both are supported here).
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn._validate import (
    check_finite,
    check_int_dtype,
    check_nonnegative,
    concrete_scalar,
    is_concrete,
    positive_int,
)
from jaxsnn.spikes import Spikes


def _as_float(name: str, values: Any) -> jax.Array:
    array = jnp.asarray(values)
    if jnp.issubdtype(array.dtype, jnp.bool_) or not (
        jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)
    ):
        raise TypeError(f"{name} must be a real-valued array, got dtype {array.dtype}")
    if not jnp.issubdtype(array.dtype, jnp.floating):
        array = array.astype(jnp.zeros(()).dtype)
    return array


def _check_window(t_min: Any, t_max: Any) -> tuple:
    t_min = concrete_scalar("t_min", t_min)
    t_max = concrete_scalar("t_max", t_max)
    if t_min < 0:
        raise ValueError(f"t_min must be >= 0 (spike times are non-negative), got {t_min}")
    if t_min >= t_max:
        raise ValueError(f"t_min must be < t_max, got t_min={t_min}, t_max={t_max}")
    return t_min, t_max


def latency_times(
    values: Any,
    t_min: float = 0.0,
    t_max: float = 1.0,
    v_min: float = 0.0,
    v_max: float = 1.0,
    larger_first: bool = False,
) -> jax.Array:
    """Map values linearly to spike times in ``[t_min, t_max]`` (one spike per value).

    With ``u = clip((v - v_min) / (v_max - v_min), 0, 1)`` the time is
    ``t = t_min + u (t_max - t_min)``, or ``t = t_max - u (t_max - t_min)`` when
    ``larger_first`` (larger values spike earlier). Values outside ``[v_min, v_max]`` are
    clipped to the window edges. The map is strictly monotonic inside the range.

    Args:
        values: array of any shape.
        t_min: earliest time, >= 0.
        t_max: latest time, > t_min.
        v_min: value mapped to ``t_min`` (or ``t_max`` if ``larger_first``).
        v_max: value mapped to ``t_max`` (or ``t_min``), > v_min.
        larger_first: larger values spike earlier.

    Returns:
        Float array of spike times, same shape as ``values``.

    Raises:
        TypeError: for a non-numeric ``values`` dtype or a traced window parameter.
        ValueError: if ``values`` holds NaN/inf, ``t_min < 0``, ``t_min >= t_max`` or
            ``v_min >= v_max``.
    """
    array = _as_float("values", values)
    check_finite("values", array)
    t_min, t_max = _check_window(t_min, t_max)
    v_min = concrete_scalar("v_min", v_min)
    v_max = concrete_scalar("v_max", v_max)
    if v_min >= v_max:
        raise ValueError(f"v_min must be < v_max, got v_min={v_min}, v_max={v_max}")
    return _latency(array, t_min, t_max, v_min, v_max, bool(larger_first))


# Module-level jit of the numeric cores: validation stays eager (outside), eager callers get
# one compiled program instead of op-by-op dispatch, and inside a user's jit they are inlined.
@functools.partial(jax.jit, static_argnums=(5,))
def _latency(
    array: jax.Array, t_min: Any, t_max: Any, v_min: Any, v_max: Any, larger_first: bool
) -> jax.Array:
    fraction = jnp.clip((array - v_min) / (v_max - v_min), 0.0, 1.0)
    if larger_first:
        return t_max - fraction * (t_max - t_min)
    return t_min + fraction * (t_max - t_min)


def _with_bias(times: jax.Array, bias_time: Optional[float]) -> jax.Array:
    if bias_time is None:
        return times
    bias_time = concrete_scalar("bias_time", bias_time)
    check_nonnegative("bias_time", bias_time)
    bias = jnp.full(times.shape[:-1] + (1,), bias_time, dtype=times.dtype)
    return jnp.concatenate([times, bias], axis=-1)


def latency_spikes(
    values: Any,
    t_min: float = 0.0,
    t_max: float = 1.0,
    v_min: float = 0.0,
    v_max: float = 1.0,
    larger_first: bool = False,
    bias_time: Optional[float] = None,
) -> Spikes:
    """Latency-encode feature vectors into ``Spikes`` for event-based layers.

    Feature ``j`` of a sample spikes once at ``latency_times(values)[..., j]`` as input
    neuron ``j``; with ``bias_time`` an extra neuron ``n`` (the last index) spikes at
    ``bias_time`` in every sample. Events are sorted by time (ties by neuron index).

    Args:
        values: ``(n,)`` for one sample or ``(..., n)`` for a batch.
        t_min: earliest time, >= 0.
        t_max: latest time, > t_min.
        v_min: value mapped to the start of the window (see ``latency_times``).
        v_max: value mapped to the end of the window, > v_min.
        larger_first: larger values spike earlier.
        bias_time: time of the bias spike (>= 0), or ``None`` for no bias neuron.

    Returns:
        ``Spikes`` with capacity ``n`` (``n + 1`` with a bias) and the batch shape of
        ``values``; no padding.

    Raises:
        TypeError, ValueError: as ``latency_times``; ValueError also for scalar ``values`` or
            a negative / non-finite ``bias_time``.
    """
    if jnp.ndim(values) < 1:
        raise ValueError("values must have a feature axis: shape (n,) or (..., n), got a scalar")
    times = _with_bias(latency_times(values, t_min, t_max, v_min, v_max, larger_first), bias_time)
    return _events(times)


@jax.jit
def _events(times: jax.Array) -> Spikes:
    neuron = jnp.broadcast_to(jnp.arange(times.shape[-1], dtype=jnp.int32), times.shape)
    order = jnp.argsort(times, axis=-1, stable=True)
    return Spikes(
        jnp.take_along_axis(times, order, axis=-1), jnp.take_along_axis(neuron, order, axis=-1)
    )


def _check_grid(n_steps: Any, dt: Any) -> tuple:
    n_steps = positive_int("n_steps", n_steps)
    dt = concrete_scalar("dt", dt)
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    return n_steps, dt


def latency_dense(
    values: Any,
    n_steps: int,
    dt: float,
    t_min: float = 0.0,
    t_max: Optional[float] = None,
    v_min: float = 0.0,
    v_max: float = 1.0,
    larger_first: bool = False,
    bias_time: Optional[float] = None,
) -> jax.Array:
    """Latency-encode feature vectors on a time grid for discrete-time layers.

    Each feature (and the bias neuron, if any) has a single 1 at step ``floor(t / dt)``
    where ``t`` is its spike time (the same binning as ``jaxsnn.spikes.to_dense``, so
    ``latency_dense == to_dense(latency_spikes)``).

    Args:
        values: ``(n,)`` or ``(..., n)``.
        n_steps: number of time steps T, >= 1.
        dt: step width, > 0.
        t_min: earliest time, >= 0.
        t_max: latest time, > t_min and < ``n_steps * dt``; default
            ``(n_steps - 1) * dt`` (the start of the last step).
        v_min: value mapped to the start of the window.
        v_max: value mapped to the end of the window.
        larger_first: larger values spike earlier.
        bias_time: time of the bias spike, in ``[0, n_steps * dt)``, or ``None``.

    Returns:
        ``(..., n_steps, n)`` (``n + 1`` with bias) array of 0/1 in the float dtype of the
        times.

    Raises:
        TypeError, ValueError: as ``latency_times``, plus ``n_steps < 1``, ``dt <= 0`` or a
            time that falls outside the grid.
    """
    n_steps, dt = _check_grid(n_steps, dt)
    if t_max is None:
        t_max = (n_steps - 1) * dt
    t_max = concrete_scalar("t_max", t_max)
    if t_max >= n_steps * dt:
        raise ValueError(
            f"t_max ({t_max}) must be < n_steps * dt ({n_steps * dt}) so every spike is on the grid"
        )
    if bias_time is not None and concrete_scalar("bias_time", bias_time) >= n_steps * dt:
        raise ValueError(f"bias_time ({bias_time}) must be < n_steps * dt ({n_steps * dt})")
    if jnp.ndim(values) < 1:
        raise ValueError("values must have a feature axis: shape (n,) or (..., n), got a scalar")
    times = _with_bias(latency_times(values, t_min, t_max, v_min, v_max, larger_first), bias_time)
    return _one_hot_steps(times, dt, n_steps)


@functools.partial(jax.jit, static_argnums=(2,))
def _one_hot_steps(times: jax.Array, dt: Any, n_steps: int) -> jax.Array:
    # Validation guarantees t < n_steps * dt in float64; rounding in a lower precision may still
    # land on step n_steps, which would silently drop the spike, so clamp to the last step.
    step = jnp.minimum(jnp.floor(times / dt).astype(jnp.int32), n_steps - 1)
    grid = jnp.arange(n_steps, dtype=jnp.int32)[:, None]
    return (grid == step[..., None, :]).astype(times.dtype)


def bernoulli_spike_train(key: jax.Array, probabilities: Any, n_steps: int) -> jax.Array:
    """Independent Bernoulli spikes: neuron ``j`` spikes in each step with probability ``p_j``.

    Args:
        key: PRNG key.
        probabilities: ``(..., n)`` values in ``[0, 1]``.
        n_steps: number of time steps T, >= 1.

    Returns:
        ``(..., n_steps, n)`` float array of 0/1.

    Raises:
        ValueError: if ``n_steps < 1`` or a concrete probability is NaN or outside ``[0, 1]``.
    """
    n_steps, _ = _check_grid(n_steps, 1.0)
    probs = _as_float("probabilities", probabilities)
    if probs.ndim < 1:
        raise ValueError("probabilities must have a neuron axis: shape (n,) or (..., n)")
    if is_concrete(probs):
        p = np.asarray(probs)
        if np.any(np.isnan(p)) or np.any(p < 0) or np.any(p > 1):
            raise ValueError("probabilities must lie in [0, 1] (no NaN)")
    return _bernoulli(key, probs, n_steps)


@functools.partial(jax.jit, static_argnums=(2,))
def _bernoulli(key: jax.Array, probs: jax.Array, n_steps: int) -> jax.Array:
    shape = probs.shape[:-1] + (n_steps,) + probs.shape[-1:]
    draws = jax.random.uniform(key, shape, dtype=probs.dtype)
    return (draws < jnp.expand_dims(probs, -2)).astype(probs.dtype)


def rate_spike_train(key: jax.Array, rates: Any, n_steps: int, dt: float) -> jax.Array:
    """Poisson-like spike trains on a grid: spike probability per step ``rate * dt``.

    Args:
        key: PRNG key.
        rates: ``(..., n)`` firing rates (in 1 / time unit of ``dt``), ``rate * dt <= 1``.
        n_steps: number of time steps, >= 1.
        dt: step width, > 0.

    Returns:
        ``(..., n_steps, n)`` float array of 0/1.

    Raises:
        ValueError: for ``dt <= 0``, negative or NaN rates, or ``rate * dt > 1``.
    """
    n_steps, dt = _check_grid(n_steps, dt)
    rates = _as_float("rates", rates)
    if is_concrete(rates):
        r = np.asarray(rates)
        if np.any(np.isnan(r)) or np.any(r < 0):
            raise ValueError("rates must be >= 0 (no NaN)")
        if np.any(r * dt > 1):
            raise ValueError(
                f"rate * dt must be <= 1 (max rate {r.max()} with dt {dt}); use a smaller dt"
            )
    return bernoulli_spike_train(key, rates * dt, n_steps)


def poisson_spikes(
    key: jax.Array, rates: Any, t_max: float, capacity: int
) -> Tuple[Spikes, jax.Array]:
    """Independent Poisson spike trains on ``[0, t_max]`` as an event buffer.

    Exact sampling of the superposition: the events of all neurons form one Poisson process of
    rate ``R = sum_j r_j``; its inter-event intervals are exponential with mean ``1 / R`` and
    each event belongs to neuron ``j`` with probability ``r_j / R``. The first ``capacity``
    events are drawn; those after ``t_max`` become padding.

    Args:
        key: PRNG key.
        rates: ``(n,)`` firing rates (per time unit), >= 0.
        t_max: end of the window, > 0.
        capacity: slots of the buffer, >= 1.

    Returns:
        ``(spikes, overflow)``: a sorted ``Spikes`` buffer and a bool that is True when the
        buffer is full before ``t_max`` (further events were not drawn; raise the capacity).

    Raises:
        TypeError: non-int ``capacity``.
        ValueError: negative or NaN rates, wrong ``rates`` shape, ``t_max <= 0``,
            ``capacity < 1``.
    """
    rates = _as_float("rates", rates)
    if rates.ndim != 1:
        raise ValueError(f"rates must be 1-d (n_neurons,), got shape {rates.shape}; vmap batches")
    if is_concrete(rates) and not np.all(np.asarray(rates) >= 0):  # also catches NaN
        raise ValueError("rates must be >= 0 (no NaN)")
    t_max = concrete_scalar("t_max", t_max)
    if t_max <= 0:
        raise ValueError(f"t_max must be > 0, got {t_max}")
    capacity = positive_int("capacity", capacity)
    return _poisson(key, rates, t_max, capacity)


@functools.partial(jax.jit, static_argnums=(3,))
def _poisson(
    key: jax.Array, rates: jax.Array, t_max: Any, capacity: int
) -> Tuple[Spikes, jax.Array]:
    key_time, key_neuron = jax.random.split(key)
    total = jnp.sum(rates)
    silent = total <= 0
    safe_total = jnp.where(silent, 1.0, total)
    intervals = jax.random.exponential(key_time, (capacity,), dtype=rates.dtype) / safe_total
    times = jnp.cumsum(intervals)
    logits = jnp.log(jnp.where(silent, 1.0, rates / safe_total))
    neuron = jax.random.categorical(key_neuron, logits, shape=(capacity,)).astype(jnp.int32)
    valid = (times <= t_max) & ~silent
    overflow = valid[-1]
    return (
        Spikes(jnp.where(valid, times, jnp.inf), jnp.where(valid, neuron, -1).astype(jnp.int32)),
        overflow,
    )


def target_times(
    labels: Any, n_classes: int, t_correct: float, t_wrong: float
) -> jax.Array:
    """Target first-spike times: the labelled class at ``t_correct``, the others at ``t_wrong``.

    ``targets[..., k] = t_correct if k == labels[...] else t_wrong``, chosen by a select, so
    every entry is exactly ``t_correct`` or ``t_wrong`` in the default float dtype (an
    arithmetic blend such as ``t_wrong + onehot * (t_correct - t_wrong)`` rounds in float32).

    Args:
        labels: integer class indices, any shape.
        n_classes: number of classes, >= 1.
        t_correct: target time of the correct class.
        t_wrong: target time of the other classes.

    Returns:
        ``(*labels.shape, n_classes)`` float array.

    Raises:
        TypeError: if ``labels`` is not integer or ``n_classes`` not an int.
        ValueError: for ``n_classes < 1``, non-finite times, or labels out of range.
    """
    labels = jnp.asarray(labels)
    check_int_dtype("labels", labels)
    n_classes = positive_int("n_classes", n_classes)
    _check_label_range(labels, n_classes)
    t_correct = concrete_scalar("t_correct", t_correct)
    t_wrong = concrete_scalar("t_wrong", t_wrong)
    return _target_times(labels, n_classes, t_correct, t_wrong)


@functools.partial(jax.jit, static_argnums=(1,))
def _target_times(labels: jax.Array, n_classes: int, t_correct: Any, t_wrong: Any) -> jax.Array:
    dtype = jnp.zeros(()).dtype  # the default float dtype (float64 under jax_enable_x64)
    is_label = labels[..., None] == jnp.arange(n_classes, dtype=labels.dtype)
    return jnp.where(is_label, jnp.asarray(t_correct, dtype), jnp.asarray(t_wrong, dtype))


def _check_label_range(labels: Any, n_classes: int) -> None:
    if is_concrete(labels) and np.size(labels):
        array = np.asarray(labels)
        if array.min() < 0 or array.max() >= n_classes:
            raise ValueError(
                f"labels must lie in [0, {n_classes}), got range [{array.min()}, {array.max()}]"
            )


__all__ = [
    "bernoulli_spike_train",
    "latency_dense",
    "latency_spikes",
    "latency_times",
    "poisson_spikes",
    "rate_spike_train",
    "target_times",
]
