"""Loss functions and accuracy helpers for spiking classifiers.

Conventions:

* ``labels`` are integer class indices shaped like the batch (``()`` for one sample, ``(B,)``
  for a batch, any leading shape works); every loss returns the **mean** over those leading
  axes, so a per-sample call and a batched call agree and ``jax.vmap`` of a per-sample call
  followed by a mean gives the same value.
* Membrane traces and dense spike trains are ``(..., T, n)`` (time on axis -2, as produced by
  the discrete layers); first-spike times are ``(..., n)``.
* A neuron that never spikes has first-spike time ``+inf`` (``jaxsnn.spikes.first_spike_times``).
  First-spike losses replace it by the finite ``t_missing`` you pass (e.g. the end of the
  simulation window) via ``replace_missing``; the gradient with respect to a missing time is
  exactly 0, never NaN. NaN and ``-inf`` are errors, not missing spikes. A silent neuron
  therefore receives no gradient from these losses (no exact gradient exists for creating a
  spike); initialise or regularise so that output neurons spike, or bump the input weights of
  silent neurons (``jaxsnn.optim.bump_silent``).
* Predictions and accuracies follow one tie rule: a sample is classified only when one class is
  strictly ahead (the largest score, the earliest first spike); a tie for the lead or an
  all-silent output predicts ``-1`` and counts as wrong, so every ``*_accuracy`` equals the mean
  of ``predict_* == labels``.

All functions are pure and work under ``jax.jit``, ``jax.vmap`` and ``jax.grad``; eager checks
run when values are concrete.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn._validate import (
    check_finite,
    check_int_dtype,
    check_ndim,
    check_nonnegative,
    check_positive,
    is_concrete,
)


# ---------------------------------------------------------------------------------------------
# validation


def _check_scores(name: str, scores: Any, allow_posinf: bool = False) -> jax.Array:
    array = jnp.asarray(scores)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        if jnp.issubdtype(array.dtype, jnp.integer) and not jnp.issubdtype(array.dtype, jnp.bool_):
            array = array.astype(jnp.zeros(()).dtype)
        else:
            raise TypeError(f"{name} must be a real-valued array, got dtype {array.dtype}")
    if array.ndim < 1:
        raise ValueError(f"{name} must have a class axis (last), got a scalar")
    if array.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one class, got shape {array.shape}")
    if allow_posinf:
        if is_concrete(array):
            values = np.asarray(array)
            bad = np.isnan(values) | (values == -np.inf)
            if np.any(bad):
                raise ValueError(
                    f"{name} contains {int(bad.sum())} NaN/-inf value(s); only +inf (no spike) "
                    "is allowed"
                )
    else:
        check_finite(name, array)
    return array


def _check_labels(labels: Any, batch_shape: tuple, n_classes: int, scores_name: str) -> jax.Array:
    labels = jnp.asarray(labels)
    check_int_dtype("labels", labels)
    if tuple(labels.shape) != tuple(batch_shape):
        raise ValueError(
            f"labels must have shape {tuple(batch_shape)} (the batch shape of {scores_name}), "
            f"got {tuple(labels.shape)}"
        )
    if is_concrete(labels) and labels.size:
        array = np.asarray(labels)
        if array.min() < 0 or array.max() >= n_classes:
            raise ValueError(
                f"labels must lie in [0, {n_classes}) for {n_classes} classes, got range "
                f"[{array.min()}, {array.max()}]"
            )
    return labels


def _check_time_axis(name: str, array: jax.Array) -> None:
    if array.ndim < 2:
        raise ValueError(f"{name} must be (T, n) or (..., T, n), got shape {array.shape}")
    if array.shape[-2] < 1:
        raise ValueError(f"{name} must have at least one time step, got shape {array.shape}")


def _check_t_missing(t_missing: Any) -> None:
    # t_missing may be traced (its shape is still static); its value is checked when concrete
    check_ndim("t_missing", t_missing, 0)
    check_finite("t_missing", t_missing)


# ---------------------------------------------------------------------------------------------
# missing spikes


def replace_missing(first_times: Any, t_missing: Any) -> jax.Array:
    """Replace ``+inf`` (no spike) by the finite ``t_missing``, with zero gradient there.

    Uses the double-``where`` pattern: the ``+inf`` entries are first replaced by 0 so no
    downstream operation ever sees them; a single ``where(t == inf, t_missing, t)`` would give
    NaN gradients once the result enters e.g. ``t**2`` or ``exp(t)``.

    Args:
        first_times: ``(..., n)`` first-spike times; ``+inf`` marks a silent neuron.
        t_missing: finite time used for silent neurons (scalar or broadcastable array).

    Returns:
        Array like ``first_times`` without ``+inf``; ``d out / d first_times`` is 1 where the
        neuron spiked and 0 where it did not.

    Raises:
        ValueError: if ``t_missing`` is not finite (when concrete).
    """
    check_finite("t_missing", t_missing)
    return _replace_missing(jnp.asarray(first_times), t_missing)


# Module-level jit of the numeric cores: validation stays eager (outside), and eager callers
# get one compiled program instead of op-by-op dispatch. Inside a user's jit they are inlined.
@jax.jit
def _replace_missing(times: jax.Array, t_missing: Any) -> jax.Array:
    missing = times == jnp.inf
    safe = jnp.where(missing, jnp.zeros_like(times), times)
    return jnp.where(missing, jnp.asarray(t_missing, dtype=times.dtype), safe)


# ---------------------------------------------------------------------------------------------
# losses


def cross_entropy(logits: Any, labels: Any) -> jax.Array:
    """Mean softmax cross-entropy ``mean(logsumexp(z) - z[label])``.

    Args:
        logits: ``(..., n)`` finite scores.
        labels: ``(...)`` integer classes in ``[0, n)``.

    Returns:
        Scalar mean loss.

    Raises:
        TypeError: non-numeric ``logits`` or non-integer ``labels``.
        ValueError: NaN/inf logits, shape mismatch or labels out of range.
    """
    logits = _check_scores("logits", logits)
    labels = _check_labels(labels, logits.shape[:-1], logits.shape[-1], "logits")
    return _cross_entropy(logits, labels)


@jax.jit
def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    return -jnp.mean(picked)


def max_membrane_cross_entropy(membrane: Any, labels: Any) -> jax.Array:
    """Cross-entropy of the maximum over time of readout membranes (LI readouts).

    ``L = mean_b [ logsumexp_k m_bk - m_{b,label_b} ]`` with ``m_bk = max_t v_{b,t,k}``.
    Event-based readouts that report the maximum directly can use ``cross_entropy``.

    Args:
        membrane: ``(..., T, n)`` membrane traces.
        labels: ``(...)`` integer classes.

    Returns:
        Scalar mean loss.

    Raises:
        TypeError, ValueError: as ``cross_entropy``; ValueError if ``membrane`` has no time axis.
    """
    membrane = _check_scores("membrane", membrane)
    _check_time_axis("membrane", membrane)
    labels = _check_labels(labels, membrane.shape[:-2], membrane.shape[-1], "membrane")
    return _cross_entropy(jnp.max(membrane, axis=-2), labels)


def spike_count_cross_entropy(spikes: Any, labels: Any, scale: float = 1.0) -> jax.Array:
    """Cross-entropy with spike counts as logits: ``logits_k = scale * sum_t z_{t,k}``.

    The gradient flows through the spikes (surrogate derivative in discrete layers).

    Args:
        spikes: ``(..., T, n)`` dense spike trains.
        labels: ``(...)`` integer classes.
        scale: factor applied to the counts (inverse temperature), > 0.

    Returns:
        Scalar mean loss.

    Raises:
        TypeError, ValueError: as ``cross_entropy``; ValueError for ``scale <= 0``.
    """
    spikes = _check_scores("spikes", spikes)
    _check_time_axis("spikes", spikes)
    check_positive("scale", scale)
    labels = _check_labels(labels, spikes.shape[:-2], spikes.shape[-1], "spikes")
    return _cross_entropy(scale * jnp.sum(spikes, axis=-2), labels)


def first_spike_mse(first_times: Any, targets: Any, *, t_missing: Any) -> jax.Array:
    """Mean squared error between first-spike times and target times.

    ``L = mean_{b,k} (t_bk - target_bk)^2`` with silent neurons at ``t_missing``.

    Args:
        first_times: ``(..., n)`` first-spike times (``+inf`` = no spike).
        targets: target times, same shape (see ``jaxsnn.encode.target_times``).
        t_missing: finite time assumed for silent neurons (e.g. the window end ``t_max``).

    Returns:
        Scalar mean loss.

    Raises:
        TypeError: non-numeric inputs.
        ValueError: NaN/-inf times, non-finite targets or ``t_missing``, shape mismatch.
    """
    times = _check_scores("first_times", first_times, allow_posinf=True)
    targets = _check_scores("targets", targets)
    if targets.shape != times.shape:
        raise ValueError(
            f"targets must have the shape of first_times {times.shape}, got {targets.shape}"
        )
    _check_t_missing(t_missing)
    return _mse(times, targets, t_missing)


@jax.jit
def _mse(times: jax.Array, targets: jax.Array, t_missing: Any) -> jax.Array:
    return jnp.mean((_replace_missing(times, t_missing) - targets) ** 2)


def first_spike_cross_entropy(
    first_times: Any, labels: Any, *, temperature: Any, t_missing: Any
) -> jax.Array:
    """Cross-entropy of a softmax over negative first-spike times (earliest neuron wins).

    ``L = mean_b [ logsumexp_k(-t_bk / temperature) + t_{b,label_b} / temperature ]``.

    Args:
        first_times: ``(..., n)`` first-spike times (``+inf`` = no spike).
        labels: ``(...)`` integer classes.
        temperature: time scale of the softmax, > 0.
        t_missing: finite time assumed for silent neurons.

    Returns:
        Scalar mean loss.

    Raises:
        TypeError, ValueError: as ``cross_entropy``; ValueError for NaN/-inf times,
            ``temperature <= 0`` or a non-finite ``t_missing``.
    """
    times = _check_scores("first_times", first_times, allow_posinf=True)
    labels = _check_labels(labels, times.shape[:-1], times.shape[-1], "first_times")
    check_positive("temperature", temperature)
    _check_t_missing(t_missing)
    return _first_spike_cross_entropy(times, labels, temperature, t_missing)


@jax.jit
def _first_spike_cross_entropy(
    times: jax.Array, labels: jax.Array, temperature: Any, t_missing: Any
) -> jax.Array:
    return _cross_entropy(-_replace_missing(times, t_missing) / temperature, labels)


def wunderlich_pehle_loss(
    first_times: Any,
    labels: Any,
    *,
    tau_0: Any,
    tau_1: Any,
    alpha: Any,
    t_missing: Any,
) -> jax.Array:
    """First-spike loss with regulariser of Wunderlich & Pehle (2021), used for Yin-Yang.

    ``L = mean_b [ -log( exp(-t_{b,l} / tau_0) / sum_k exp(-t_bk / tau_0) )
    + alpha (exp(t_{b,l} / tau_1) - 1) ]`` with ``l = label_b``: a cross-entropy over
    ``exp(-t / tau_0)``-weighted classes plus a term that pushes the correct neuron to spike
    early. Give ``tau_0``, ``tau_1`` and ``t_missing`` in the unit of the spike times;
    ``tau_0`` well below the spread of output spike times sharpens the softmax, ``tau_1`` of
    the order of the window keeps the regulariser gentle.

    Args:
        first_times: ``(..., n)`` first-spike times (``+inf`` = no spike).
        labels: ``(...)`` integer classes.
        tau_0: softmax time scale, > 0.
        tau_1: regulariser time scale, > 0.
        alpha: regulariser weight, >= 0.
        t_missing: finite time assumed for silent neurons.

    Returns:
        Scalar mean loss.

    Raises:
        TypeError, ValueError: as ``first_spike_cross_entropy``; ValueError for
            ``tau_1 <= 0`` or ``alpha < 0``.
    """
    times = _check_scores("first_times", first_times, allow_posinf=True)
    labels = _check_labels(labels, times.shape[:-1], times.shape[-1], "first_times")
    check_positive("tau_0", tau_0)
    check_positive("tau_1", tau_1)
    check_nonnegative("alpha", alpha)
    _check_t_missing(t_missing)
    return _wunderlich_pehle(times, labels, tau_0, tau_1, alpha, t_missing)


@jax.jit
def _wunderlich_pehle(
    times: jax.Array, labels: jax.Array, tau_0: Any, tau_1: Any, alpha: Any, t_missing: Any
) -> jax.Array:
    safe = _replace_missing(times, t_missing)
    correct = jnp.take_along_axis(safe, labels[..., None], axis=-1)[..., 0]
    regulariser = alpha * jnp.mean(jnp.expm1(correct / tau_1))
    return _cross_entropy(-safe / tau_0, labels) + regulariser


def first_spike_hybrid_loss(
    first_times: Any,
    labels: Any,
    *,
    targets: Any,
    temperature: Any,
    t_missing: Any,
    mse_weight: Any,
    time_scale: Any = 1.0,
    early_weight: Any = 0.0,
) -> jax.Array:
    """First-spike cross-entropy plus a weighted squared error to target times.

    With silent neurons at ``t_missing`` and ``l = label_b``::

        L = mean_b [ logsumexp_k(-t_bk / temperature) + t_bl / temperature ]
            + early_weight * mean_b [ t_bl ] / t_missing
            + mse_weight * mean_{b,k} [ (t_bk - target_bk)^2 ] / time_scale^2

    The cross-entropy alone only asks the labelled neuron to spike before the others, so it
    pushes the other neurons later without bound until they fall silent (and a silent neuron
    gets no gradient); the squared error to finite targets (e.g.
    ``jaxsnn.encode.target_times``) keeps every output neuron spiking. The optional middle
    term pulls the labelled neuron earlier, in units of the window ``t_missing``.

    Args:
        first_times: ``(..., n)`` first-spike times (``+inf`` = no spike).
        labels: ``(...)`` integer classes.
        targets: target times, shaped like ``first_times``.
        temperature: time scale of the softmax, > 0.
        t_missing: finite time assumed for silent neurons (e.g. the window end), > 0.
        mse_weight: weight of the squared-error term, >= 0.
        time_scale: time unit of the squared error (e.g. ``tau_mem``), > 0.
        early_weight: weight of the early-label term, >= 0.

    Returns:
        Scalar mean loss.

    Raises:
        TypeError, ValueError: as ``first_spike_cross_entropy`` and ``first_spike_mse``;
            ValueError for negative weights, ``time_scale <= 0`` or ``t_missing <= 0``.
    """
    times = _check_scores("first_times", first_times, allow_posinf=True)
    labels = _check_labels(labels, times.shape[:-1], times.shape[-1], "first_times")
    targets = _check_scores("targets", targets)
    if targets.shape != times.shape:
        raise ValueError(
            f"targets must have the shape of first_times {times.shape}, got {targets.shape}"
        )
    check_positive("temperature", temperature)
    _check_t_missing(t_missing)
    check_positive("t_missing", t_missing)
    check_nonnegative("mse_weight", mse_weight)
    check_positive("time_scale", time_scale)
    check_nonnegative("early_weight", early_weight)
    return _hybrid(
        times, labels, targets, temperature, t_missing, mse_weight, time_scale, early_weight
    )


@jax.jit
def _hybrid(
    times: jax.Array,
    labels: jax.Array,
    targets: jax.Array,
    temperature: Any,
    t_missing: Any,
    mse_weight: Any,
    time_scale: Any,
    early_weight: Any,
) -> jax.Array:
    safe = _replace_missing(times, t_missing)
    cross_entropy = _cross_entropy(-safe / temperature, labels)
    labelled = jnp.take_along_axis(safe, labels[..., None], axis=-1)[..., 0]
    early = early_weight * jnp.mean(labelled) / t_missing
    mse = jnp.mean((safe - targets) ** 2) / time_scale**2
    return cross_entropy + early + mse_weight * mse


# ---------------------------------------------------------------------------------------------
# predictions and accuracy


# One tie rule everywhere: a sample has a prediction only when one class is strictly ahead of
# every other (largest score, earliest first spike); a tie for the lead or an all-silent output
# predicts -1 and counts as wrong. So ``accuracy == mean(predict == labels)`` for every helper,
# and an undecided output (all counts 0, two output neurons in the same clock tick) never
# scores by luck.


@jax.jit
def _predict_unique_max(scores: jax.Array) -> jax.Array:
    best = jnp.max(scores, axis=-1, keepdims=True)
    unique = jnp.sum(scores == best, axis=-1) == 1
    winner = jnp.argmax(scores, axis=-1).astype(jnp.int32)
    return jnp.where(unique & (best[..., 0] > -jnp.inf), winner, -1)


def predict_max(scores: Any) -> jax.Array:
    """Predicted class: the index of the strictly largest score, ``-1`` for a tie.

    Args:
        scores: ``(..., n)`` finite scores (e.g. max membranes or spike counts).

    Returns:
        ``(...)`` int32 class indices; ``-1`` where two or more classes share the maximum.
    """
    scores = _check_scores("scores", scores)
    return _predict_unique_max(scores)


def predict_first_spike(first_times: Any) -> jax.Array:
    """Predicted class: the neuron that spikes strictly first; ``-1`` for a tie or silence.

    Args:
        first_times: ``(..., n)`` first-spike times (``+inf`` = no spike).

    Returns:
        ``(...)`` int32 class indices; ``-1`` where no neuron spikes or two or more neurons
        share the earliest time.
    """
    times = _check_scores("first_times", first_times, allow_posinf=True)
    return _predict_unique_max(-times)


@jax.jit
def _accuracy(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of samples whose labelled score is strictly greater than every other score."""
    picked = jnp.take_along_axis(scores, labels[..., None], axis=-1)
    others = jnp.where(
        jnp.arange(scores.shape[-1]) == labels[..., None], -jnp.inf, scores
    )
    hits = picked[..., 0] > jnp.max(others, axis=-1)
    return jnp.mean(hits.astype(scores.dtype))


def accuracy(scores: Any, labels: Any) -> jax.Array:
    """Fraction of samples whose labelled score is strictly the largest.

    A tie for the maximum counts as wrong (``predict_max`` gives ``-1``), so an all-equal
    output (e.g. all counts 0) never scores by luck. For a single class every sample is
    correct.

    Args:
        scores: ``(..., n)`` finite scores.
        labels: ``(...)`` integer classes.

    Returns:
        Scalar in ``[0, 1]``, equal to ``mean(predict_max(scores) == labels)``.
    """
    scores = _check_scores("scores", scores)
    labels = _check_labels(labels, scores.shape[:-1], scores.shape[-1], "scores")
    return _accuracy(scores, labels)


def max_membrane_accuracy(membrane: Any, labels: Any) -> jax.Array:
    """Accuracy of the ``argmax`` over classes of the maximum over time of the membrane.

    Args:
        membrane: ``(..., T, n)`` traces.
        labels: ``(...)`` integer classes.

    Returns:
        Scalar in ``[0, 1]`` (ties count as wrong).
    """
    membrane = _check_scores("membrane", membrane)
    _check_time_axis("membrane", membrane)
    return accuracy(jnp.max(membrane, axis=-2), labels)


def spike_count_accuracy(spikes: Any, labels: Any) -> jax.Array:
    """Accuracy of the ``argmax`` of spike counts.

    Args:
        spikes: ``(..., T, n)`` dense spike trains.
        labels: ``(...)`` integer classes.

    Returns:
        Scalar in ``[0, 1]`` (ties, e.g. all silent, count as wrong).
    """
    spikes = _check_scores("spikes", spikes)
    _check_time_axis("spikes", spikes)
    return accuracy(jnp.sum(spikes, axis=-2), labels)


def first_spike_accuracy(first_times: Any, labels: Any) -> jax.Array:
    """Accuracy of time-to-first-spike classification.

    Correct when the labelled neuron spikes strictly before every other neuron; a silent
    labelled neuron or a tie for the earliest time counts as wrong. Equal to
    ``mean(predict_first_spike(first_times) == labels)``.

    Args:
        first_times: ``(..., n)`` first-spike times (``+inf`` = no spike).
        labels: ``(...)`` integer classes.

    Returns:
        Scalar in ``[0, 1]``.
    """
    times = _check_scores("first_times", first_times, allow_posinf=True)
    labels = _check_labels(labels, times.shape[:-1], times.shape[-1], "first_times")
    return _accuracy(-times, labels)


__all__ = [
    "accuracy",
    "cross_entropy",
    "first_spike_accuracy",
    "first_spike_cross_entropy",
    "first_spike_hybrid_loss",
    "first_spike_mse",
    "max_membrane_accuracy",
    "max_membrane_cross_entropy",
    "predict_first_spike",
    "predict_max",
    "replace_missing",
    "spike_count_accuracy",
    "spike_count_cross_entropy",
    "wunderlich_pehle_loss",
]
