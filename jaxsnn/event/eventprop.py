"""EventProp: exact gradients of event-based LIF layers by adjoint equations stepped backwards.

The forward pass is the exact event-based simulation (``jaxsnn.event.simulate``). The backward
pass (Wunderlich & Pehle 2021) never looks at a time grid: it walks backwards through the
merged, time-sorted list of events (input spikes, output spikes and, with a refractory period,
the instants at which the membrane is released), so its memory and work grow with the number of
events only.

Adjoint equations. For ``tau_mem dv/dt = -(v - v_leak) + I`` and ``tau_syn dI/dt = -I`` the
adjoint state ``(lambda_v, lambda_I)`` of every neuron obeys, backwards in time
(``s`` = time elapsed going backwards)::

    d lambda_v / ds = -lambda_v / tau_mem
    d lambda_I / ds = -lambda_I / tau_syn + lambda_v / tau_mem

which is solved in closed form over a gap ``s`` between two events::

    lambda_v <- lambda_v exp(-s / tau_mem)
    lambda_I <- lambda_I exp(-s / tau_syn) + lambda_v K(s)
    K(s) = tau_syn / (tau_mem - tau_syn) (exp(-s / tau_mem) - exp(-s / tau_syn))
         = (s / tau_mem) exp(-s / tau_mem) (1 - exp(-x)) / x,  x = s (1/tau_syn - 1/tau_mem)

(the same kernel as the forward PSP; ``x = 0`` gives ``(s/tau) exp(-s/tau)`` for equal taus).

Jumps, with ``vdot = (I - (v - v_leak)) / tau_mem`` evaluated on either side of an event and
``G_k = dL/dt_k`` the total derivative of the loss w.r.t. an event time:

* input spike ``(t, j)``: ``dL/dW[j, :] += lambda_I(t+)``;
  ``dL/dt = sum_n W[j, n] (lambda_I[n] / tau_syn - lambda_v[n] / tau_mem)``.
* output spike of neuron ``i`` at ``t_k`` (``v_i(t_k-) = v_th``, reset to ``v_reset``)::

      G_k = dL/dt_k|explicit + r_k + sum_n W_rec[i, n] (lambda_I[n] / tau_syn - lambda_v'[n] / tau_mem)
      r_k = -lambda_v[i](a_k+) vdot_i(a_k+)         (a_k = t_k + t_ref: where v leaves v_reset)
      lambda_v[i](t_k-) = -G_k / vdot_i(t_k-),   vdot_i(t_k-) = (I_i(t_k-) - (v_th - v_leak)) / tau_mem
      dL/dW_rec[i, :] += lambda_I(t_k+)

  (``lambda_v'`` is ``lambda_v`` with neuron ``i`` excluded: its own reset is ``r_k``). While a
  neuron is refractory its membrane is clamped, so its ``lambda_v`` is zero there.

The current ``I_i`` just before a spike is a closed-form sum over the earlier events, so the
backward pass needs only the events themselves: weights, input spikes, output spikes, neuron
parameters and the cotangents of the output times. This is also why the gradient can be
evaluated at spike times that were measured rather than simulated (``external_spikes``:
hardware in the loop): the forward value is the measurement and the gradient is EventProp at
the measured times.

Limitations (documented, by design):

* Neuron parameters (time constants, thresholds) and ``t_max`` are constants for this
  gradient: their cotangents are zero. Use the analytic kernel (``gradient="analytic"``) to
  differentiate w.r.t. them.
* ``|dv/dt|`` at a spike is floored at ``MIN_SLOPE_FRACTION * (v_th - v_reset) / tau_mem``, so a
  (near-)tangential crossing gives a large but finite gradient instead of inf/NaN.
* The cotangent of ``final_state.refractory_until`` is ignored (zero).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn import spikes as spikes_lib
from jaxsnn._validate import is_concrete
from jaxsnn.event.kernels import resolve_kernel
from jaxsnn.event.neuron import LIFParameters, LIFState
from jaxsnn.spikes import Spikes

__all__ = [
    "AdjointGradients",
    "MIN_SLOPE_FRACTION",
    "adjoint_kernel",
    "eventprop_gradients",
    "simulate_eventprop",
    "state_at",
]

#: Floor of the membrane slope at a spike, as a fraction of ``(v_th - v_reset) / tau_mem``:
#: keeps the gradient of a (near-)tangential threshold crossing finite.
MIN_SLOPE_FRACTION = 1e-4

# Order of events that share a time stamp (forward order): a spike is caused by the trajectory
# before it, its refractory release follows it (t_ref = 0), input jumps come last.
_SPIKE, _RELEASE, _INPUT = 0, 1, 2

# Above this many (query, source) pairs per sample the currents at spike times are computed by
# a forward scan over the events instead of one dense masked sum.
_DENSE_CURRENT_LIMIT = 1 << 16


class AdjointGradients(NamedTuple):
    """Gradients returned by ``eventprop_gradients`` (one sample).

    Attributes:
        weight: ``(n_inputs, size)`` gradient w.r.t. the input weights.
        input_times: ``(input capacity,)`` gradient w.r.t. the input spike times (0 for padding).
        recurrent_weight: ``(size, size)`` gradient w.r.t. the recurrent weights, or ``None``.
        initial_v: ``(size,)`` gradient w.r.t. the membrane at ``t = 0``.
        initial_current: ``(size,)`` gradient w.r.t. the synaptic current at ``t = 0``.
        initial_refractory_until: ``(size,)`` gradient w.r.t. the initial end of refractoriness.
        output_times: ``(output capacity,)`` total derivative ``dL/dt_k`` of each output spike
            (explicit cotangent plus its effect through the reset and recurrent synapses).
    """

    weight: jax.Array
    input_times: jax.Array
    recurrent_weight: Optional[jax.Array]
    initial_v: jax.Array
    initial_current: jax.Array
    initial_refractory_until: jax.Array
    output_times: jax.Array


def adjoint_kernel(elapsed: jax.Array, tau_mem: jax.Array, tau_syn: jax.Array) -> jax.Array:
    """``K(s) = tau_syn / (tau_mem - tau_syn) (exp(-s/tau_mem) - exp(-s/tau_syn))``, stably.

    Exact for every ratio of the time constants (``tau_mem == tau_syn`` gives
    ``(s / tau) exp(-s / tau)``); never overflows for large ``s``.

    Args:
        elapsed: ``s >= 0`` (finite).
        tau_mem: membrane time constant(s), broadcastable.
        tau_syn: synaptic time constant(s), broadcastable.

    Returns:
        ``K(s)`` elementwise.
    """
    rate_gap = 1.0 / tau_syn - 1.0 / tau_mem
    x = elapsed * rate_gap
    near = jnp.abs(x) < 0.5
    x_near = jnp.where(near, x, 1.0)
    x_tiny = jnp.abs(x_near) < 1e-3
    x_div = jnp.where(x_tiny, 1.0, x_near)
    # (1 - exp(-x)) / x, by its series near 0
    one_minus_exp_ratio = jnp.where(
        x_tiny,
        1.0 - x_near * (0.5 - x_near * (1.0 / 6 - x_near * (1.0 / 24 - x_near / 120))),
        -jnp.expm1(-x_div) / x_div,
    )
    decay_mem = jnp.exp(-elapsed / tau_mem)
    near_value = (elapsed / tau_mem) * decay_mem * one_minus_exp_ratio
    gap = jnp.where(near, 1.0, tau_mem - tau_syn)
    far_value = tau_syn / gap * (decay_mem - jnp.exp(-elapsed / tau_syn))
    return jnp.where(near, near_value, far_value)


def _per_neuron(neuron: LIFParameters, size: int, dtype: Any) -> LIFParameters:
    return LIFParameters(*(jnp.broadcast_to(jnp.asarray(value, dtype), (size,)) for value in neuron))


def _t_ref_is_zero(neuron: LIFParameters) -> bool:
    """True when the refractory period is known (concretely) to be zero everywhere."""
    return is_concrete(neuron.t_ref) and bool(np.all(np.asarray(neuron.t_ref) == 0))


class _Sources(NamedTuple):
    """Events that inject current: time, weight row index, weight matrix, validity."""

    time: jax.Array
    row: jax.Array
    matrix: jax.Array
    valid: jax.Array


def _currents_dense(
    query_time: jax.Array,
    query_neuron: jax.Array,
    query_inclusive: jax.Array,
    sources: Tuple[_Sources, ...],
    initial_current: jax.Array,
    tau_syn: jax.Array,
) -> jax.Array:
    """Synaptic current of neuron ``query_neuron[q]`` at ``query_time[q]`` as a masked sum.

    ``I_n(t) = I_n(0) exp(-t/tau_syn) + sum_{events e before t} W_e[n] exp(-(t - t_e)/tau_syn)``;
    "before" is ``t_e < t`` (left limit) or ``t_e <= t`` (right limit, ``query_inclusive``).
    """
    query_ok = jnp.isfinite(query_time)
    t_q = jnp.where(query_ok, query_time, 0.0)
    neuron = jnp.clip(query_neuron, 0, tau_syn.shape[0] - 1)
    tau_q = tau_syn[neuron]
    total = initial_current[neuron] * jnp.exp(-t_q / tau_q)
    for source in sources:
        lag = t_q[None, :] - source.time[:, None]
        before = (lag > 0) | (query_inclusive[None, :] & (lag == 0))
        mask = source.valid[:, None] & query_ok[None, :] & before
        lag = jnp.where(mask, lag, 0.0)
        rows = jnp.clip(source.row, 0, source.matrix.shape[0] - 1)
        weight = source.matrix[rows[:, None], neuron[None, :]]
        total = total + jnp.sum(jnp.where(mask, weight * jnp.exp(-lag / tau_q[None, :]), 0.0), axis=0)
    return jnp.where(query_ok, total, 0.0)


def _currents_scan(
    query_time: jax.Array,
    query_neuron: jax.Array,
    query_inclusive: jax.Array,
    sources: Tuple[_Sources, ...],
    initial_current: jax.Array,
    tau_syn: jax.Array,
) -> jax.Array:
    """Same as ``_currents_dense`` by one forward scan over all events (O(events) memory)."""
    size = tau_syn.shape[0]
    n_query = query_time.shape[0]
    # Forward order at equal times: left-limit queries, then source jumps, then right-limit queries.
    times, kinds, rows, owners = [], [], [], []
    for number, source in enumerate(sources):
        times.append(jnp.where(source.valid, source.time, jnp.inf))
        kinds.append(jnp.ones_like(source.row))
        rows.append(source.row)
        owners.append(jnp.full(source.row.shape, number, jnp.int32))
    query_ok = jnp.isfinite(query_time)
    times.append(jnp.where(query_ok, query_time, jnp.inf))
    kinds.append(jnp.where(query_inclusive, 2, 0).astype(jnp.int32))
    rows.append(jnp.arange(n_query, dtype=jnp.int32))
    owners.append(jnp.full((n_query,), -1, jnp.int32))
    time = jnp.concatenate(times)
    kind = jnp.concatenate(kinds).astype(jnp.int32)
    row = jnp.concatenate(rows).astype(jnp.int32)
    owner = jnp.concatenate(owners)
    order = jnp.lexsort((kind, time))
    neuron_of_query = jnp.clip(query_neuron, 0, size - 1)

    def step(carry, item):
        current, t_prev, answers = carry
        t, k, r, o = item
        finite = jnp.isfinite(t)
        t_eff = jnp.where(finite, t, t_prev)
        current = current * jnp.exp(-(t_eff - t_prev) / tau_syn)
        jump = jnp.zeros_like(current)
        for number, source in enumerate(sources):
            row_index = jnp.clip(r, 0, source.matrix.shape[0] - 1)
            jump = jnp.where((o == number) & finite, source.matrix[row_index], jump)
        current = current + jump
        q = jnp.clip(r, 0, n_query - 1)
        value = current[neuron_of_query[q]]
        answers = jnp.where((o == -1) & finite, answers.at[q].set(value), answers)
        return (current, t_eff, answers), None

    init = (initial_current, jnp.zeros((), time.dtype), jnp.zeros((n_query,), time.dtype))
    (_, _, answers), _ = jax.lax.scan(
        step, init, (time[order], kind[order], row[order], owner[order])
    )
    return jnp.where(query_ok, answers, 0.0)


def _currents_at(query_time, query_neuron, query_inclusive, sources, initial_current, tau_syn):
    pairs = query_time.shape[0] * sum(source.time.shape[0] for source in sources)
    if pairs <= _DENSE_CURRENT_LIMIT:
        return _currents_dense(query_time, query_neuron, query_inclusive, sources, initial_current, tau_syn)
    return _currents_scan(query_time, query_neuron, query_inclusive, sources, initial_current, tau_syn)


def eventprop_gradients(
    weight: jax.Array,
    input_spikes: Spikes,
    output_spikes: Spikes,
    neuron: LIFParameters,
    t_max: Any,
    output_time_cotangent: jax.Array,
    *,
    recurrent_weight: Optional[jax.Array] = None,
    initial_state: Optional[LIFState] = None,
    final_state_cotangent: Optional[Tuple[jax.Array, jax.Array]] = None,
    refractory: Optional[bool] = None,
) -> AdjointGradients:
    """EventProp backward pass of one layer for one sample (vmap for batches).

    Steps the adjoint equations (module docstring) backwards through the merged, time-sorted
    events in one reverse ``lax.scan`` with O(size) work per event; memory is O(events * size)
    at most, independent of any time step.

    Args:
        weight: ``(n_inputs, size)`` input weights.
        input_spikes: the layer's input events (sorted, padded).
        output_spikes: the layer's output events: simulated, or measured (injected).
        neuron: ``LIFParameters`` (scalars or per-neuron arrays).
        t_max: end of the simulation window; events after it have no effect.
        output_time_cotangent: ``(output capacity,)`` ``dL/dt_k`` of each output slot (padding
            slots are ignored, whatever their value, NaN included).
        recurrent_weight: optional ``(size, size)`` recurrent weights.
        initial_state: optional state at ``t = 0`` (default: rest).
        final_state_cotangent: optional ``(dL/dv, dL/dI)`` at ``t_max``.
        refractory: whether to model refractory periods; default: unless ``neuron.t_ref`` is
            concretely zero. ``True`` is always correct, ``False`` is faster.

    Returns:
        ``AdjointGradients``.
    """
    weight = jnp.asarray(weight)
    dtype = jnp.result_type(weight.dtype, input_spikes.time.dtype)
    weight = weight.astype(dtype)
    n_inputs, size = weight.shape
    p = _per_neuron(neuron, size, dtype)
    t_max = jnp.asarray(t_max, dtype)
    with_release = (not _t_ref_is_zero(neuron)) if refractory is None else bool(refractory)
    recurrent = recurrent_weight is not None
    if recurrent:
        recurrent_weight = jnp.asarray(recurrent_weight, dtype)

    in_time = jnp.asarray(input_spikes.time, dtype)
    in_idx = jnp.asarray(input_spikes.idx, jnp.int32)
    out_time = jnp.asarray(output_spikes.time, dtype)
    out_idx = jnp.asarray(output_spikes.idx, jnp.int32)
    k_in, k_out = in_time.shape[0], out_time.shape[0]

    in_valid = (in_idx >= 0) & (in_idx < n_inputs) & jnp.isfinite(in_time)
    out_valid = (out_idx >= 0) & (out_idx < size) & jnp.isfinite(out_time) & (out_time <= t_max)
    out_neuron = jnp.clip(out_idx, 0, size - 1)
    out_time_safe = jnp.where(out_valid, out_time, t_max)

    if initial_state is None:
        initial_current = jnp.zeros((size,), dtype)
        initial_ref = None
    else:
        initial_current = jnp.broadcast_to(jnp.asarray(initial_state[1], dtype), (size,))
        initial_ref = jnp.broadcast_to(jnp.asarray(initial_state[2], dtype), (size,)) if len(initial_state) > 2 else None

    sources = [_Sources(in_time, in_idx, weight, in_valid)]
    if recurrent:
        sources.append(_Sources(out_time, out_idx, recurrent_weight, out_valid))
    sources = tuple(sources)

    # Current just before each spike, and just after the instant its membrane is released.
    release_time = out_time_safe + p.t_ref[out_neuron]
    query_time = jnp.concatenate([jnp.where(out_valid, out_time, jnp.inf),
                                  jnp.where(out_valid & (release_time < t_max), release_time, jnp.inf)])
    query_neuron = jnp.concatenate([out_neuron, out_neuron])
    query_inclusive = jnp.concatenate([jnp.zeros((k_out,), bool), jnp.ones((k_out,), bool)])
    currents = _currents_at(query_time, query_neuron, query_inclusive, sources, initial_current, p.tau_syn)
    current_before, current_released = currents[:k_out], currents[k_out:]

    ct = jnp.where(out_valid, jnp.asarray(output_time_cotangent, dtype), 0.0)

    # Merged event list, in original slot order: inputs, spikes, releases, initial releases.
    in_active = in_valid & (in_time <= t_max)
    lists_time = [jnp.where(in_active, in_time, t_max), out_time_safe]
    lists_kind = [jnp.full((k_in,), _INPUT, jnp.int32), jnp.full((k_out,), _SPIKE, jnp.int32)]
    lists_index = [jnp.clip(in_idx, 0, n_inputs - 1), out_neuron]
    lists_active = [in_active, out_valid]
    lists_ct = [jnp.zeros((k_in,), dtype), ct]
    lists_before = [jnp.zeros((k_in,), dtype), current_before]
    lists_after = [jnp.zeros((k_in,), dtype), current_released]
    lists_beyond = [jnp.zeros((k_in,), bool), jnp.zeros((k_out,), bool)]
    if with_release:
        lists_time.append(jnp.minimum(release_time, t_max))
        lists_kind.append(jnp.full((k_out,), _RELEASE, jnp.int32))
        lists_index.append(out_neuron)
        lists_active.append(out_valid)
        lists_ct.append(jnp.zeros((k_out,), dtype))
        lists_before.append(jnp.zeros((k_out,), dtype))
        lists_after.append(current_released)
        lists_beyond.append(release_time >= t_max)
        if initial_ref is not None:
            ref_active = jnp.isfinite(initial_ref) & (initial_ref > 0)
            ref_time = jnp.where(ref_active, initial_ref, t_max)
            ref_queries = jnp.where(ref_active & (ref_time < t_max), ref_time, jnp.inf)
            ref_current = _currents_at(
                ref_queries, jnp.arange(size, dtype=jnp.int32), jnp.ones((size,), bool),
                sources, initial_current, p.tau_syn,
            )
            lists_time.append(jnp.minimum(ref_time, t_max))
            lists_kind.append(jnp.full((size,), _RELEASE, jnp.int32))
            lists_index.append(jnp.arange(size, dtype=jnp.int32))
            lists_active.append(ref_active)
            lists_ct.append(jnp.zeros((size,), dtype))
            lists_before.append(jnp.zeros((size,), dtype))
            lists_after.append(ref_current)
            lists_beyond.append(ref_time >= t_max)

    ev_time = jnp.concatenate(lists_time)
    ev_kind = jnp.concatenate(lists_kind)
    ev_index = jnp.concatenate(lists_index)
    ev_active = jnp.concatenate(lists_active)
    ev_time = jnp.where(ev_active, ev_time, t_max)
    order = jnp.lexsort((ev_kind, ev_time))
    sorted_items = tuple(
        jnp.concatenate(items)[order] if isinstance(items, list) else items[order]
        for items in (ev_time, ev_kind, ev_index, ev_active, lists_ct, lists_before, lists_after, lists_beyond)
    )

    s_time, s_kind, s_index, s_active, s_ct, s_before, s_after, s_beyond = sorted_items
    s_neuron = jnp.clip(s_index, 0, size - 1)
    # Everything that depends on one event only is computed for all events at once, so the
    # sequential scan is left with a few multiply-adds over the neurons per event.
    # Slopes dv/dt just before a spike (at threshold, floored) and just after a release.
    slope_floor = MIN_SLOPE_FRACTION * (p.v_th - p.v_reset) / p.tau_mem
    s_slope_before = jnp.maximum(
        (s_before - (p.v_th[s_neuron] - p.v_leak[s_neuron])) / p.tau_mem[s_neuron], slope_floor[s_neuron]
    )
    s_slope_free = jnp.where(
        s_beyond, 0.0, (s_after - (p.v_reset[s_neuron] - p.v_leak[s_neuron])) / p.tau_mem[s_neuron]
    )
    # Propagators from each event back to the previous one (the first: back to t = 0). With
    # layer-wide time constants these are scalars per event.
    tau_mem = jnp.asarray(neuron.tau_mem, dtype)
    tau_syn = jnp.asarray(neuron.tau_syn, dtype)
    later = jnp.concatenate([s_time[1:], t_max[None]])
    gap_after = jnp.maximum(later - s_time, 0.0)  # from event k to event k + 1 (or t_max)
    gap_first = jnp.maximum(s_time[0], 0.0)
    extra = (slice(None),) + (None,) * jnp.ndim(tau_mem)
    decay_mem = jnp.exp(-gap_after[extra] / tau_mem)
    decay_syn = jnp.exp(-gap_after[extra] / tau_syn)
    coupling = adjoint_kernel(gap_after[extra], tau_mem, tau_syn)
    inv_tau_mem = 1.0 / p.tau_mem
    inv_tau_syn = 1.0 / p.tau_syn
    neuron_range = jnp.arange(size)
    rec_matrix = recurrent_weight if recurrent else None

    def step(carry, item):
        lam_v, lam_i, pending = carry
        kind, index, n, active, cot, slope_before, slope_free, d_mem, d_syn, k_coupling = item
        # Propagate back from the later event (or t_max) to this one.
        lam_i = lam_i * d_syn + lam_v * k_coupling
        lam_v = lam_v * d_mem

        is_input = active & (kind == _INPUT)
        is_spike = active & (kind == _SPIKE)
        is_release = active & (kind == _RELEASE)
        own = neuron_range == index

        # Input spike: dL/dt_in = W[j] . (lam_I / tau_syn - lam_v / tau_mem).
        drive = lam_i * inv_tau_syn - lam_v * inv_tau_mem
        input_grad = jnp.dot(weight[jnp.clip(index, 0, n_inputs - 1)], drive)

        # Membrane released from v_reset (end of refractoriness, or the reset itself if t_ref = 0).
        release_grad = -lam_v[n] * slope_free

        # Output spike: total dL/dt_k, then the jump of lam_v.
        reset_grad = pending[n] if with_release else release_grad
        if recurrent:
            recurrent_grad = jnp.dot(rec_matrix[n], drive) + lam_v[n] * inv_tau_mem[n] * rec_matrix[n, n]
        else:
            recurrent_grad = 0.0
        spike_grad = cot + reset_grad + recurrent_grad
        lam_v_jump = -spike_grad / slope_before

        lam_v = jnp.where(own & is_spike, lam_v_jump, jnp.where(own & is_release, 0.0, lam_v))
        if with_release:
            pending = jnp.where(own & is_release, release_grad, jnp.where(own & is_spike, 0.0, pending))
        time_grad = jnp.where(is_input, input_grad, jnp.where(is_spike, spike_grad, 0.0))
        lam_i_out = jnp.where(is_input | is_spike, lam_i, 0.0)
        return (lam_v, lam_i, pending), (lam_i_out, time_grad)

    if final_state_cotangent is None:
        lam_v0 = jnp.zeros((size,), dtype)
        lam_i0 = jnp.zeros((size,), dtype)
    else:
        lam_v0 = jnp.broadcast_to(jnp.asarray(final_state_cotangent[0], dtype), (size,))
        lam_i0 = jnp.broadcast_to(jnp.asarray(final_state_cotangent[1], dtype), (size,))
    carry0 = (lam_v0, lam_i0, jnp.zeros((size,), dtype))
    scanned = (s_kind, s_index, s_neuron, s_active, s_ct, s_slope_before, s_slope_free, decay_mem, decay_syn, coupling)
    (lam_v, lam_i, pending), (lam_i_steps, time_grads) = jax.lax.scan(step, carry0, scanned, reverse=True)
    # Propagate from the earliest event back to t = 0.
    lam_i = lam_i * jnp.exp(-gap_first / tau_syn) + lam_v * adjoint_kernel(gap_first, tau_mem, tau_syn)
    lam_v = lam_v * jnp.exp(-gap_first / tau_mem)

    input_rows = jnp.where(s_active & (s_kind == _INPUT), s_index, n_inputs)
    grad_weights = jax.ops.segment_sum(lam_i_steps, input_rows, num_segments=n_inputs + 1)[:n_inputs]
    grad_recurrent = None
    if recurrent:
        spike_rows = jnp.where(s_active & (s_kind == _SPIKE), s_index, size)
        grad_recurrent = jax.ops.segment_sum(lam_i_steps, spike_rows, num_segments=size + 1)[:size]
    unsorted_grads = jnp.zeros_like(time_grads).at[order].set(time_grads)
    return AdjointGradients(
        weight=grad_weights,
        input_times=unsorted_grads[:k_in],
        recurrent_weight=grad_recurrent,
        initial_v=lam_v,
        initial_current=lam_i,
        initial_refractory_until=pending if (with_release and initial_ref is not None) else jnp.zeros((size,), dtype),
        output_times=unsorted_grads[k_in:k_in + k_out],
    )


def state_at(
    weight: jax.Array,
    input_spikes: Spikes,
    output_spikes: Spikes,
    neuron: LIFParameters,
    t: Any,
    *,
    recurrent_weight: Optional[jax.Array] = None,
    initial_state: Optional[LIFState] = None,
) -> LIFState:
    """State of every neuron at time ``t`` given the inputs *and* the output spikes.

    The output spikes are taken as given (simulated or measured): each one resets its neuron
    to ``v_reset`` (held for ``t_ref``) and, in a recurrent layer, adds ``W_rec[i]`` to ``I``.
    Closed form, no simulation: with ``a_n`` the last release of neuron ``n`` before ``t``::

        I_n(t) = I_n(0) exp(-t/tau_syn) + sum_{t_e <= t} W_e[n] exp(-(t - t_e)/tau_syn)
        v_n(t) = v_leak + (v_start - v_leak) exp(-(t - a_n)/tau_mem) + I_n(a_n) K(t - a_n)
                 + sum_{a_n < t_e <= t} W_e[n] K(t - t_e)

    Args:
        weight: ``(n_inputs, size)`` input weights.
        input_spikes: input events.
        output_spikes: output events of this layer (taken as given).
        neuron: ``LIFParameters``.
        t: the time (right limit: events at ``t`` are included).
        recurrent_weight: optional ``(size, size)``.
        initial_state: optional state at ``t = 0`` (default: rest).

    Returns:
        ``LIFState(v, current, refractory_until)`` at ``t``; ``refractory_until`` is relative
        to ``t`` (as in ``simulate``'s final state).
    """
    weight = jnp.asarray(weight)
    dtype = jnp.result_type(weight.dtype, input_spikes.time.dtype)
    weight = weight.astype(dtype)
    n_inputs, size = weight.shape
    p = _per_neuron(neuron, size, dtype)
    t = jnp.asarray(t, dtype)
    in_time = jnp.asarray(input_spikes.time, dtype)
    in_idx = jnp.asarray(input_spikes.idx, jnp.int32)
    out_time = jnp.asarray(output_spikes.time, dtype)
    out_idx = jnp.asarray(output_spikes.idx, jnp.int32)
    in_valid = (in_idx >= 0) & (in_idx < n_inputs) & jnp.isfinite(in_time) & (in_time <= t)
    out_valid = (out_idx >= 0) & (out_idx < size) & jnp.isfinite(out_time) & (out_time <= t)
    if initial_state is None:
        v0 = p.v_leak
        current0 = jnp.zeros((size,), dtype)
        ref0 = jnp.full((size,), -jnp.inf, dtype)
    else:
        v0 = jnp.broadcast_to(jnp.asarray(initial_state[0], dtype), (size,))
        current0 = jnp.broadcast_to(jnp.asarray(initial_state[1], dtype), (size,))
        ref0 = (
            jnp.broadcast_to(jnp.asarray(initial_state[2], dtype), (size,))
            if len(initial_state) > 2
            else jnp.full((size,), -jnp.inf, dtype)
        )
    sources = [_Sources(in_time, in_idx, weight, in_valid)]
    if recurrent_weight is not None:
        sources.append(_Sources(out_time, out_idx, jnp.asarray(recurrent_weight, dtype), out_valid))
    neurons = jnp.arange(size, dtype=jnp.int32)

    # Last spike of each neuron at or before t, and where its membrane starts moving again.
    target = jnp.where(out_valid, out_idx, size)
    last_spike = jnp.full((size + 1,), -jnp.inf, dtype).at[target].max(
        jnp.where(out_valid, out_time, -jnp.inf)
    )[:size]
    spiked = jnp.isfinite(last_spike)
    initially_refractory = jnp.isfinite(ref0) & (ref0 > 0)
    start = jnp.where(spiked, last_spike + p.t_ref, jnp.where(initially_refractory, ref0, 0.0))
    v_start = jnp.where(spiked | initially_refractory, p.v_reset, v0)
    clamped = start >= t
    start = jnp.minimum(start, t)
    # Relative to t, like ``simulate``'s final state, so it can seed the next window.
    refractory_until = jnp.where(
        spiked, jnp.where(p.t_ref > 0, last_spike + p.t_ref, -jnp.inf), ref0
    ) - t

    full = jnp.ones((size,), bool)
    current = _currents_dense(jnp.broadcast_to(t, (size,)), neurons, full, tuple(sources), current0, p.tau_syn)
    current_start = _currents_dense(start, neurons, full, tuple(sources), current0, p.tau_syn)
    elapsed = t - start
    v = p.v_leak + (v_start - p.v_leak) * jnp.exp(-elapsed / p.tau_mem) + current_start * adjoint_kernel(
        elapsed, p.tau_mem, p.tau_syn
    )
    for source in sources:
        lag = t - source.time[:, None]
        after_start = source.time[:, None] > start[None, :]
        mask = source.valid[:, None] & after_start
        lag = jnp.where(mask, lag, 0.0)
        rows = jnp.clip(source.row, 0, source.matrix.shape[0] - 1)
        v = v + jnp.sum(
            jnp.where(mask, source.matrix[rows] * adjoint_kernel(lag, p.tau_mem[None, :], p.tau_syn[None, :]), 0.0),
            axis=0,
        )
    v = jnp.where(clamped, p.v_reset, v)
    return LIFState(v=v, current=current, refractory_until=refractory_until)


def _zero_cotangent(value: Any) -> Any:
    """A zero cotangent of the right kind for one primal leaf (float0 for integers/bools)."""
    dtype = jnp.result_type(value)
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros(jnp.shape(value), dtype)
    return np.zeros(jnp.shape(value), dtype=jax.dtypes.float0)


def _zeros_tree(tree: Any) -> Any:
    return jax.tree_util.tree_map(_zero_cotangent, tree)


def _external_forward(weight, input_spikes, neuron, capacity, t_max, recurrent_weight, initial_state, external):
    from jaxsnn.event.simulate import SimulationResult

    external = Spikes(jnp.asarray(external.time, input_spikes.time.dtype), jnp.asarray(external.idx, jnp.int32))
    count = external.count()
    if external.capacity < capacity:
        external = spikes_lib.pad(external, capacity)
    elif external.capacity > capacity:
        external = Spikes(external.time[:capacity], external.idx[:capacity])
    overflow = count > capacity
    final_state = state_at(
        weight, input_spikes, external, neuron, t_max,
        recurrent_weight=recurrent_weight, initial_state=initial_state,
    )
    return SimulationResult(spikes=external, final_state=final_state, overflow=overflow)


def _forward(static, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external):
    capacity, kernel, _, algorithm = static
    if external is not None:
        return _external_forward(
            weight, input_spikes, neuron, capacity, t_max, recurrent_weight, initial_state, external
        )
    from jaxsnn.event.simulate import simulate

    return simulate(
        weight, input_spikes, neuron, capacity=capacity, t_max=t_max, kernel=kernel,
        recurrent_weight=recurrent_weight, initial_state=initial_state, algorithm=algorithm,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _eventprop_core(static, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external):
    return _forward(static, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external)


def _eventprop_fwd(static, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external):
    result = _forward(static, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external)
    residuals = (weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external, result.spikes)
    return result, residuals


def _eventprop_bwd(static, residuals, result_cotangent):
    _, _, refractory, _ = static
    weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external, out_spikes = residuals
    final_ct = result_cotangent.final_state
    grads = eventprop_gradients(
        weight, input_spikes, out_spikes, neuron, t_max, result_cotangent.spikes.time,
        recurrent_weight=recurrent_weight, initial_state=initial_state,
        final_state_cotangent=(final_ct.v, final_ct.current), refractory=refractory,
    )
    weights_ct = grads.weight.astype(jnp.result_type(weight))
    input_ct = Spikes(
        grads.input_times.astype(input_spikes.time.dtype), _zero_cotangent(input_spikes.idx)
    )
    recurrent_ct = None
    if recurrent_weight is not None:
        recurrent_ct = grads.recurrent_weight.astype(jnp.result_type(recurrent_weight))
    initial_ct = None
    if initial_state is not None:
        fields = [grads.initial_v, grads.initial_current, grads.initial_refractory_until]
        leaves = list(initial_state)
        values = [
            fields[k].astype(jnp.result_type(leaves[k])) if jnp.issubdtype(jnp.result_type(leaves[k]), jnp.inexact)
            else _zero_cotangent(leaves[k])
            for k in range(len(leaves))
        ]
        initial_ct = type(initial_state)(*values) if hasattr(initial_state, "_fields") else type(initial_state)(values)
    return (
        weights_ct, input_ct, _zeros_tree(neuron), _zeros_tree(t_max),
        recurrent_ct, initial_ct, _zeros_tree(external),
    )


_eventprop_core.defvjp(_eventprop_fwd, _eventprop_bwd)


def simulate_eventprop(
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    *,
    capacity: int,
    t_max: Any,
    kernel: str = "auto",
    recurrent_weight: Optional[jax.Array] = None,
    initial_state: Optional[LIFState] = None,
    external_spikes: Optional[Spikes] = None,
    algorithm: str = "auto",
):
    """Event-based simulation of one LIF layer whose gradient is computed by EventProp.

    Forward: ``jaxsnn.event.simulate`` (same arguments), or, when ``external_spikes`` is given,
    the injected spikes themselves (forward value = the measurement; the final state is the
    closed-form state at ``t_max`` given those spikes, ``overflow`` flags a measurement larger
    than ``capacity``). Backward (``jax.custom_vjp``): ``eventprop_gradients`` at the output
    spike times, giving cotangents for ``weight``, ``input_spikes.time``,
    ``recurrent_weight`` and ``initial_state``; neuron parameters, ``t_max`` and the injected
    spikes get zero cotangents. Works under ``jit``, ``vmap`` and ``grad``.

    Args:
        weight: ``(n_inputs, size)`` input weights.
        input_spikes: one sample's input events (vmap for batches).
        neuron: ``LIFParameters``.
        capacity: number of output slots.
        t_max: end of the window.
        kernel: next-spike kernel of the forward simulation (see ``simulate``).
        recurrent_weight: optional ``(size, size)`` recurrent weights.
        initial_state: optional ``LIFState`` at ``t = 0``.
        external_spikes: optional measured output ``Spikes`` of this layer to inject.
        algorithm: forward algorithm (see ``simulate``).

    Returns:
        ``SimulationResult(spikes, final_state, overflow)``.

    Raises:
        TypeError: if ``external_spikes`` is not a ``Spikes``.
        ValueError: if ``external_spikes`` is malformed (checked eagerly when concrete).
    """
    if external_spikes is not None:
        size = jnp.shape(weight)[-1]
        spikes_lib.validate(external_spikes, n_neurons=size, name="external_spikes")
    # Resolve "auto" while the time constants are still concrete: inside the custom_vjp they
    # are traced, and "auto" would fall back to the (much slower) root solver.
    kernel = resolve_kernel(kernel, neuron)
    from jaxsnn.event.simulate import resolve_algorithm

    algorithm = resolve_algorithm(algorithm, neuron, t_max, recurrent_weight is not None)
    static = (capacity, kernel, not _t_ref_is_zero(neuron), algorithm)
    return _eventprop_core(static, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external_spikes)
