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

``K`` is the forward PSP kernel itself (``jaxsnn.event.dynamics.psp_kernel``, exact for equal
time constants and overflow-safe for long gaps).

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

Parallel backward. Where every neuron spikes at most once and the layer is feed-forward (the
conditions of the parallel forward, ``t_ref >= t_max``), each neuron's adjoint has a single jump,
at its spike, and the solution above collapses to one closed form per (event, neuron) pair:
``parallel_eventprop_gradients`` evaluates it with whole-array operations and no scan over
events (maths in its docstring). Where neurons spike several times (any ``t_ref``, still
feed-forward), ``lambda_v`` of a neuron jumps only at its own spikes and ``lambda_I`` never
jumps, so each neuron's adjoint is a short chain over its own spikes: two affine recurrences
solved for all neurons at once by a reverse ``associative_scan`` over the output slots, then
carried to every input event by the free backward dynamics, restarted from the closed form at each
of a neuron's spikes and releases (``multispike_eventprop_gradients``). ``simulate_eventprop``
uses the closed form that fits every feed-forward layer (``backward="auto"``, or explicitly
``"parallel"``), whatever its forward algorithm; ``backward="scan"`` asks for the scan;
recurrent layers and injected spikes always use the scan.

The current ``I_i`` just before a spike is a closed-form sum over the earlier events
(``jaxsnn.event.superposition``), so the backward pass needs only the events themselves:
weights, input spikes, output spikes, neuron parameters and the cotangents of the output
times. This is also why the gradient can be evaluated at spike times that were measured rather
than simulated (``external_spikes``: hardware in the loop): the forward value is the
measurement and the gradient is EventProp at the measured times.

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
from jaxsnn.event.dynamics import membrane_decay_and_kernel, psp_kernel
from jaxsnn.event.neuron import LIFParameters, LIFState, per_neuron
from jaxsnn.event.plan import Plan, choose_backward, resolve_plan, resolve_refractory
from jaxsnn.event.simulate import (
    SimulationResult,
    multispike_with_current_table,
    parallel_with_spike_currents,
    shaped_algorithm,
    simulate_planned,
    validate_inputs,
)
from jaxsnn.event.superposition import Sources, currents_at, state_at
from jaxsnn.spikes import Spikes

__all__ = [
    "AdjointGradients",
    "MIN_SLOPE_FRACTION",
    "eventprop_gradients",
    "multispike_eventprop_gradients",
    "parallel_eventprop_gradients",
    "simulate_eventprop",
    "simulate_eventprop_planned",
]

#: Floor of the membrane slope at a spike, as a fraction of ``(v_th - v_reset) / tau_mem``:
#: keeps the gradient of a (near-)tangential threshold crossing finite.
MIN_SLOPE_FRACTION = 1e-4

# Order of events that share a time stamp (forward order): a spike is caused by the trajectory
# before it, its refractory release follows it (t_ref = 0), input jumps come last.
_SPIKE, _RELEASE, _INPUT = 0, 1, 2


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


class _Events(NamedTuple):
    """The merged event list of the backward pass, one entry per event.

    Attributes:
        time: event time (inactive events sit at ``t_max``).
        kind: ``_SPIKE``, ``_RELEASE`` or ``_INPUT``.
        index: input row (inputs) or neuron (spikes, releases).
        active: False for padding and events after the window.
        cotangent: explicit ``dL/dt`` of an output spike (0 for other kinds).
        current_before: current of the spiking neuron just before its spike.
        current_after: current of the released neuron just after its release.
        beyond: the release falls at or after ``t_max`` (its membrane never moves again).
    """

    time: jax.Array
    kind: jax.Array
    index: jax.Array
    active: jax.Array
    cotangent: jax.Array
    current_before: jax.Array
    current_after: jax.Array
    beyond: jax.Array


def _event_group(time, kind, index, active, dtype, cotangent=None, current_before=None, current_after=None,
                 beyond=None) -> _Events:
    """One kind of events as an ``_Events``; fields a kind does not use are zero."""
    count = time.shape[0]
    zeros = jnp.zeros((count,), dtype)
    return _Events(
        time=time,
        kind=jnp.full((count,), kind, jnp.int32),
        index=index,
        active=active,
        cotangent=zeros if cotangent is None else cotangent,
        current_before=zeros if current_before is None else current_before,
        current_after=zeros if current_after is None else current_after,
        beyond=jnp.zeros((count,), bool) if beyond is None else beyond,
    )


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
        initial_state: optional ``LIFState`` at ``t = 0`` (default: rest).
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
    p = per_neuron(neuron, size, dtype)
    t_max = jnp.asarray(t_max, dtype)
    with_release = resolve_refractory(neuron) if refractory is None else bool(refractory)
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
        initial_current = jnp.broadcast_to(jnp.asarray(initial_state.current, dtype), (size,))
        initial_ref = jnp.broadcast_to(jnp.asarray(initial_state.refractory_until, dtype), (size,))

    sources = [Sources(in_time, in_idx, weight, in_valid)]
    if recurrent:
        sources.append(Sources(out_time, out_idx, recurrent_weight, out_valid))
    sources = tuple(sources)

    # Current just before each spike, and just after the instant its membrane is released.
    release_time = out_time_safe + p.t_ref[out_neuron]
    query_time = jnp.concatenate([jnp.where(out_valid, out_time, jnp.inf),
                                  jnp.where(out_valid & (release_time < t_max), release_time, jnp.inf)])
    query_neuron = jnp.concatenate([out_neuron, out_neuron])
    query_inclusive = jnp.concatenate([jnp.zeros((k_out,), bool), jnp.ones((k_out,), bool)])
    currents = currents_at(query_time, query_neuron, query_inclusive, sources, initial_current, p.tau_syn)
    current_before, current_released = currents[:k_out], currents[k_out:]

    ct = jnp.where(out_valid, jnp.asarray(output_time_cotangent, dtype), 0.0)

    # Merged event list, in original slot order: inputs, spikes, releases, initial releases.
    in_active = in_valid & (in_time <= t_max)
    groups = [
        _event_group(jnp.where(in_active, in_time, t_max), _INPUT, jnp.clip(in_idx, 0, n_inputs - 1),
                     in_active, dtype),
        _event_group(out_time_safe, _SPIKE, out_neuron, out_valid, dtype, cotangent=ct,
                     current_before=current_before, current_after=current_released),
    ]
    if with_release:
        groups.append(_event_group(jnp.minimum(release_time, t_max), _RELEASE, out_neuron, out_valid, dtype,
                                   current_after=current_released, beyond=release_time >= t_max))
        if initial_state is not None:
            ref_active = jnp.isfinite(initial_ref) & (initial_ref > 0)
            ref_time = jnp.where(ref_active, initial_ref, t_max)
            ref_queries = jnp.where(ref_active & (ref_time < t_max), ref_time, jnp.inf)
            neurons = jnp.arange(size, dtype=jnp.int32)
            ref_current = currents_at(
                ref_queries, neurons, jnp.ones((size,), bool), sources, initial_current, p.tau_syn,
            )
            groups.append(_event_group(jnp.minimum(ref_time, t_max), _RELEASE, neurons, ref_active, dtype,
                                       current_after=ref_current, beyond=ref_time >= t_max))
    events = jax.tree_util.tree_map(lambda *fields: jnp.concatenate(fields), *groups)
    events = events._replace(time=jnp.where(events.active, events.time, t_max))
    order = spikes_lib.time_order(events.time, events.kind, 3)
    events = jax.tree_util.tree_map(lambda field: field[order], events)

    s_time, s_kind, s_index, s_active, s_ct, s_before, s_after, s_beyond = events
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
    coupling = psp_kernel(gap_after[extra], tau_mem, tau_syn)
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
    lam_i = lam_i * jnp.exp(-gap_first / tau_syn) + lam_v * psp_kernel(gap_first, tau_mem, tau_syn)
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


def _boundaries(initial_state, final_state_cotangent, size, dtype, t_max):
    """The closed forms' boundary values: initial current, initial release (whether a neuron is
    refractory at 0, and when its membrane starts to move) and the final adjoints."""
    if initial_state is None:
        initial_current = jnp.zeros((size,), dtype)
        released = jnp.zeros((size,), bool)
        start = jnp.zeros((size,), dtype)
    else:
        initial_current = jnp.broadcast_to(jnp.asarray(initial_state.current, dtype), (size,))
        initial_ref = jnp.broadcast_to(jnp.asarray(initial_state.refractory_until, dtype), (size,))
        released = jnp.isfinite(initial_ref) & (initial_ref > 0)
        start = jnp.where(released, jnp.minimum(initial_ref, t_max), 0.0)
    if final_state_cotangent is None:
        lam_v_final = jnp.zeros((size,), dtype)
        lam_i_final = jnp.zeros((size,), dtype)
    else:
        lam_v_final = jnp.broadcast_to(jnp.asarray(final_state_cotangent[0], dtype), (size,))
        lam_i_final = jnp.broadcast_to(jnp.asarray(final_state_cotangent[1], dtype), (size,))
    return initial_current, released, start, lam_v_final, lam_i_final


def _decay_to_end(t: jax.Array, t_max: jax.Array, neuron: LIFParameters, p: LIFParameters) -> jax.Array:
    """``exp(-(t_max - t)/tau_syn)`` at times ``t`` (..., 1 or size), clamped at ``t >= t_max``.

    With one ``tau_syn`` for the layer it is one exponential per time, not per (time, neuron).
    """
    if jnp.ndim(neuron.tau_syn) == 0:
        return jnp.exp(-jnp.maximum(t_max - t, 0.0) / p.tau_syn[0])
    return jnp.exp(-jnp.maximum(t_max - t, 0.0) / p.tau_syn)


def _input_event_gradients(rows, in_idx, in_active, lam_v_in, lam_i_in, p, n_inputs):
    """``dL/dt_i`` and ``dL/dW`` from the adjoint at every input event (inactive rows are zero).

    ``dL/dt_i = sum_n W[j_i, n] (lambda_I / tau_syn - lambda_v / tau_mem)`` and
    ``dL/dW[j, n] = sum_{i: j_i = j} lambda_I,n(t_i)``.
    """
    lam_i_in = jnp.where(in_active[:, None], lam_i_in, 0.0)
    drive = lam_i_in / p.tau_syn - lam_v_in / p.tau_mem
    input_grad = jnp.where(in_active, jnp.sum(rows * drive, axis=1), 0.0)
    weight_rows = jnp.where(in_active, in_idx, n_inputs)
    grad_weight = jax.ops.segment_sum(lam_i_in, weight_rows, num_segments=n_inputs + 1)[:n_inputs]
    return input_grad, grad_weight


def parallel_eventprop_gradients(
    weight: jax.Array,
    input_spikes: Spikes,
    output_spikes: Spikes,
    neuron: LIFParameters,
    t_max: Any,
    output_time_cotangent: jax.Array,
    *,
    initial_state: Optional[LIFState] = None,
    final_state_cotangent: Optional[Tuple[jax.Array, jax.Array]] = None,
    current_before_spike: Optional[jax.Array] = None,
) -> AdjointGradients:
    """EventProp backward pass in closed form for a feed-forward layer whose neurons spike at most once.

    The conditions of the parallel forward (``t_ref >= t_max``, no recurrent weights; see
    ``jaxsnn.event.plan``). No scan over events: every quantity is one whole-array expression
    over (input events x neurons), O(events x neurons) work like the forward pass. It returns the
    same gradients as ``eventprop_gradients`` (to rounding) under these conditions.

    Maths. Without recurrence the neurons are independent and nothing but its own spike resets
    a neuron, so the adjoint of neuron ``n`` has at most one jump. Let ``a_n`` be the instant
    its membrane starts to move (0, or the end of an initial refractory period, at most
    ``T = t_max``) and ``e_n`` the end of its free evolution: its spike ``t_n`` if it spiked in
    the window, else ``T``. With ``(lambda_v^T, lambda_I^T)`` the cotangent of the final state:

    * After its spike the membrane is clamped at ``v_reset`` until ``t_n + t_ref >= T``, so
      ``lambda_v = 0`` on ``(t_n, T]`` (the final ``v`` does not depend on anything) and the
      release at ``t_n + t_ref`` contributes nothing (``dL/dt_k`` is the explicit cotangent
      ``c_k``: the reset term ``r_k`` of the general pass vanishes).
    * At the spike the adjoint jump is the implicit-function-theorem derivative of the
      crossing ``v_n(t_n) = v_th``:
      ``Lambda_n = lambda_v(t_n-) = -c_n / vdot_n(t_n-)``, with
      ``vdot_n(t_n-) = (I_n(t_n-) - (v_th - v_leak)) / tau_mem`` (floored at
      ``MIN_SLOPE_FRACTION (v_th - v_reset) / tau_mem`` as in the scan) and
      ``I_n(t_n-) = I_n(0) exp(-t_n/tau_syn) + sum_{t_i < t_n} W[j_i, n] exp(-(t_n - t_i)/tau_syn)``.
      A silent neuron has ``Lambda_n = lambda_v^T`` at ``e_n = T``.
    * Solving the adjoint equations from ``e_n`` backwards in one step (the propagators compose:
      ``K(s1 + s2) = K(s1) exp(-s2/tau_syn) + exp(-s1/tau_mem) K(s2)``), for ``t <= T``::

          lambda_v(t) = [a_n <= t < e_n] Lambda_n exp(-(e_n - t)/tau_mem)     (t <= e_n if silent)
          lambda_I(t) = lambda_I^T exp(-(T - t)/tau_syn)
                        + Lambda_n K(e_n - c) exp(-(c - t)/tau_syn),   c = clip(t, a_n, e_n)

      (``lambda_I`` has no jumps in a feed-forward layer; before ``a_n`` the clamped membrane
      passes nothing back, ``lambda_v = 0``.)

    Gradients, with input ``i`` at ``t_i`` on row ``j_i`` (active: valid and ``t_i <= T``)::

        dL/dW[j, n]   = sum_{i: j_i = j} lambda_I,n(t_i)
        dL/dt_i       = sum_n W[j_i, n] (lambda_I,n(t_i) / tau_syn - lambda_v,n(t_i) / tau_mem)
        dL/dv(0)      = lambda_v(0),   dL/dI(0) = lambda_I(0)
        dL/da_n       = -lambda_v(a_n+) (I_n(a_n+) - (v_reset - v_leak)) / tau_mem   (a_n < T; else 0)
        dL/dt_k       = c_k  (output slot k; 0 for padding)

    ``dL/dW`` and ``dL/dt_i`` are the implicit-function-theorem derivatives of each spike time
    (``dt_n/dW[j, n] = -K(t_n - t_i) / vdot_n``, ``dt_n/dt_i = W[j_i, n] K'(t_n - t_i) / vdot_n``
    for ``t_i < t_n``) weighted by ``c_n``, plus the final-state terms.

    Args:
        weight: ``(n_inputs, size)`` input weights.
        input_spikes: the layer's input events (sorted, padded).
        output_spikes: the layer's output events, at most one per neuron (simulated by the
            forward pass; padding slots are ignored).
        neuron: ``LIFParameters`` with ``t_ref >= t_max`` (scalars or per-neuron arrays).
        t_max: end of the window.
        output_time_cotangent: ``(output capacity,)`` ``dL/dt_k`` (padding ignored, NaN included).
        initial_state: optional ``LIFState`` at ``t = 0`` (default: rest).
        final_state_cotangent: optional ``(dL/dv, dL/dI)`` at ``t_max``.
        current_before_spike: optional ``(size,)`` ``I_n(t_n-)`` of the neurons that spiked, as
            the forward pass found it (``jaxsnn.event.simulate.parallel_with_spike_currents``);
            default: summed here over the input events (the same value up to rounding).

    Returns:
        ``AdjointGradients`` (``recurrent_weight`` is ``None``).
    """
    weight = jnp.asarray(weight)
    dtype = jnp.result_type(weight.dtype, input_spikes.time.dtype)
    weight = weight.astype(dtype)
    n_inputs, size = weight.shape
    p = per_neuron(neuron, size, dtype)
    t_max = jnp.asarray(t_max, dtype)
    in_time = jnp.asarray(input_spikes.time, dtype)
    in_idx = jnp.asarray(input_spikes.idx, jnp.int32)
    out_time = jnp.asarray(output_spikes.time, dtype)
    out_idx = jnp.asarray(output_spikes.idx, jnp.int32)

    in_active = (in_idx >= 0) & (in_idx < n_inputs) & jnp.isfinite(in_time) & (in_time <= t_max)
    out_valid = (out_idx >= 0) & (out_idx < size) & jnp.isfinite(out_time) & (out_time <= t_max)
    cotangent = jnp.where(out_valid, jnp.asarray(output_time_cotangent, dtype), 0.0)

    # Each neuron's spike (at most one) and its cotangent, gathered from the output slots.
    target = jnp.where(out_valid, out_idx, size)
    spike_time = jnp.full((size + 1,), jnp.inf, dtype).at[target].min(jnp.where(out_valid, out_time, jnp.inf))[:size]
    spiked = jnp.isfinite(spike_time)
    spike_cotangent = jnp.zeros((size + 1,), dtype).at[target].add(cotangent)[:size]
    end = jnp.where(spiked, spike_time, t_max)

    initial_current, released, start, lam_v_final, lam_i_final = _boundaries(
        initial_state, final_state_cotangent, size, dtype, t_max)

    # (input events x neurons): inactive inputs sit at t_max with zero rows and are masked out.
    t_in = jnp.where(in_active, in_time, t_max)
    rows = weight[jnp.clip(in_idx, 0, n_inputs - 1)]
    rows = jnp.where(in_active[:, None], rows, 0.0)

    def current(t, inclusive):
        """``I_n(t)`` of every neuron at its own time ``t[n]`` (left or right limit)."""
        lag = t[None, :] - t_in[:, None]
        before = (lag >= 0) if inclusive else (lag > 0)
        lag = jnp.where(before, lag, 0.0)
        jumps = jnp.where(before, rows * jnp.exp(-lag / p.tau_syn), 0.0)
        return initial_current * jnp.exp(-t / p.tau_syn) + jnp.sum(jumps, axis=0)

    # The adjoint jump at each spike: Lambda_n = -c_n / vdot_n(t_n-) (silent: lambda_v at T).
    slope_floor = MIN_SLOPE_FRACTION * (p.v_th - p.v_reset) / p.tau_mem
    if current_before_spike is None:
        current_before_spike = current(end, False)
    else:
        current_before_spike = jnp.broadcast_to(jnp.asarray(current_before_spike, dtype), (size,))
    slope_before = jnp.maximum((current_before_spike - (p.v_th - p.v_leak)) / p.tau_mem, slope_floor)
    anchor = jnp.where(spiked, -spike_cotangent / slope_before, lam_v_final)

    def adjoint(t):
        """``(lambda_v, lambda_I)`` at times ``t`` (broadcast against the neurons), closed form."""
        inside = (t >= start) & jnp.where(spiked, t < end, t <= end)
        clipped = jnp.clip(t, start, end)
        remaining = end - clipped  # end - t where lambda_v lives
        decay_mem, kernel = membrane_decay_and_kernel(remaining, p.tau_mem, p.tau_syn)
        lam_v = jnp.where(inside, anchor * decay_mem, 0.0)
        from_segment = anchor * kernel
        if initial_state is not None:
            # before a_n the segment's contribution decays back from a_n (after e_n it is K(0) = 0;
            # the clamp keeps exp from overflowing there)
            from_segment = from_segment * jnp.exp(-jnp.maximum(clipped - t, 0.0) / p.tau_syn)
        lam_i = lam_i_final * _decay_to_end(t, t_max, neuron, p) + from_segment
        return lam_v, lam_i

    lam_v_in, lam_i_in = adjoint(t_in[:, None])
    input_grad, grad_weight = _input_event_gradients(rows, in_idx, in_active, lam_v_in, lam_i_in, p, n_inputs)

    lam_v0, lam_i0 = adjoint(jnp.zeros((size,), dtype))
    if initial_state is None:
        grad_refractory = jnp.zeros((size,), dtype)
    else:
        # The membrane leaves v_reset at a_n: dL/da_n = -lambda_v(a_n+) vdot(a_n+) (0 beyond T).
        lam_v_release = anchor * jnp.exp(-jnp.maximum(end - start, 0.0) / p.tau_mem)
        slope_free = (current(start, True) - (p.v_reset - p.v_leak)) / p.tau_mem
        moves = released & (start < t_max)
        grad_refractory = jnp.where(moves, -lam_v_release * slope_free, 0.0)
    return AdjointGradients(
        weight=grad_weight,
        input_times=input_grad,
        recurrent_weight=None,
        initial_v=lam_v0,
        initial_current=lam_i0,
        initial_refractory_until=grad_refractory,
        output_times=cotangent,
    )


def _affine_suffix(offset: jax.Array, factor: jax.Array) -> jax.Array:
    """``x_k = offset_k + factor_k x_{k+1}`` (``x`` beyond the end is 0), for every ``k`` at once.

    A reverse ``associative_scan`` of the affine maps ``x -> offset + factor x``: O(log n) depth
    instead of a sequential loop over the entries.
    """

    def compose(later, earlier):
        # ``later`` is the composition of the maps after ``earlier``'s entries: earlier o later.
        later_offset, later_factor = later
        earlier_offset, earlier_factor = earlier
        return earlier_offset + earlier_factor * later_offset, earlier_factor * later_factor

    return jax.lax.associative_scan(compose, (offset, factor), reverse=True)[0]


def multispike_eventprop_gradients(
    weight: jax.Array,
    input_spikes: Spikes,
    output_spikes: Spikes,
    neuron: LIFParameters,
    t_max: Any,
    output_time_cotangent: jax.Array,
    *,
    initial_state: Optional[LIFState] = None,
    final_state_cotangent: Optional[Tuple[jax.Array, jax.Array]] = None,
    current_table: Optional[jax.Array] = None,
) -> AdjointGradients:
    """EventProp backward pass in closed form for a feed-forward layer whose neurons spike any number of times.

    No recurrent weights; any ``t_ref``. No scan over the merged events: the adjoint of every
    neuron is solved over its own spikes by two affine recurrences (a reverse ``associative_scan``
    over the output slots). At the input events it is then carried by one reverse pass over the
    inputs (``O(size)`` multiply-adds per input, no gather), restarted from the closed form below
    at the last input before each of the neuron's spikes and releases, where it jumps: the
    closed form is evaluated O(spikes) times, not O(inputs x neurons) (on the Randman layers this
    took the backward from 5.4 to 4.6 ms, hidden, and 2.3 to 1.9 ms, output). Same gradients as ``eventprop_gradients`` (to rounding) for such
    layers; ``parallel_eventprop_gradients`` is the cheaper special case of one spike per neuron.

    Maths. Without recurrence ``lambda_I`` never jumps, and ``lambda_v`` of neuron ``n`` jumps only
    at its own spikes ``t_1 < ... < t_m``. Its membrane moves freely on the segments
    ``[a_{k-1}, t_k)`` (``a_0``: 0 or the end of an initial refractory period; ``a_k = t_k + t_ref``)
    and on ``[a_m, T]``, and is clamped at ``v_reset`` in between (``lambda_v = 0`` there). On a
    segment ending at ``e_k`` (``t_k``, or ``T`` for the last one), ``lambda_v(t) = Lambda_k
    exp(-(e_k - t)/tau_mem)``, with ``Lambda_{m+1} = lambda_v^T`` (0 if ``a_m >= T``) and, from the
    jump at spike ``k`` (``G_k = c_k + r_k``, ``r_k = -lambda_v(a_k+) vdot_k(a_k+)``)::

        Lambda_k = -G_k / vdot_k(t_k-)
                 = -c_k / vdot_k(t_k-) + [a_k < T] exp(-(e_{k+1} - a_k)/tau_mem) vdot_k(a_k+) / vdot_k(t_k-) Lambda_{k+1}

    with ``vdot`` as in ``eventprop_gradients`` (the slope before a spike floored). Integrating
    ``d lambda_I/ds = -lambda_I/tau_syn + lambda_v/tau_mem`` backwards, a segment contributes
    ``Lambda_k K(e_k - c) exp(-(c - t)/tau_syn)`` to ``lambda_I(t)``, ``c = clip(t, a_{k-1}, e_k)``,
    ``K`` the PSP kernel. With the suffix sums
    ``B_k = Lambda_k K(e_k - a_{k-1}) + [a_k < T] exp(-(a_k - a_{k-1})/tau_syn) B_{k+1}`` (all
    segments from ``k`` on, seen from ``a_{k-1}``), at a time ``t`` whose next segment is ``k``
    (the first with ``e_k > t``)::

        t >= a_{k-1}:  lambda_v = Lambda_k exp(-(e_k - t)/tau_mem)
                       lambda_I = lambda_I^T e^{-(T - t)/tau_syn} + Lambda_k K(e_k - t)
                                  + [a_k < T] exp(-(a_k - t)/tau_syn) B_{k+1}
        t <  a_{k-1}:  lambda_v = 0,  lambda_I = lambda_I^T e^{-(T - t)/tau_syn} + exp(-(a_{k-1} - t)/tau_syn) B_k

    The gradients then follow as in ``parallel_eventprop_gradients`` (weights and input times from
    the adjoint at each input; initial state from the adjoint at 0). Ties follow the forward
    order: a spike precedes an input at the same instant, a release precedes it too.

    Args:
        weight: ``(n_inputs, size)`` input weights.
        input_spikes: the layer's input events (sorted, padded).
        output_spikes: the layer's output events, sorted by time (padding slots are ignored).
        neuron: ``LIFParameters`` (scalars or per-neuron arrays).
        t_max: end of the window.
        output_time_cotangent: ``(output capacity,)`` ``dL/dt_k`` (padding ignored, NaN included).
        initial_state: optional ``LIFState`` at ``t = 0`` (default: rest).
        final_state_cotangent: optional ``(dL/dv, dL/dI)`` at ``t_max``.
        current_table: optional ``(n_inputs_buffer + 1, size)`` free synaptic current just after
            each input event of the buffer (row 0: the initial current), as the multi-spike forward
            tabulates it (``jaxsnn.event.simulate.multispike_with_current_table``); by default
            the currents at the spikes are summed over the inputs (``currents_at``).

    Returns:
        ``AdjointGradients`` (``recurrent_weight`` is ``None``; ``output_times`` is ``G_k``).
    """
    weight = jnp.asarray(weight)
    dtype = jnp.result_type(weight.dtype, input_spikes.time.dtype)
    weight = weight.astype(dtype)
    n_inputs, size = weight.shape
    p = per_neuron(neuron, size, dtype)
    t_max = jnp.asarray(t_max, dtype)
    in_time = jnp.asarray(input_spikes.time, dtype)
    in_idx = jnp.asarray(input_spikes.idx, jnp.int32)
    out_time = jnp.asarray(output_spikes.time, dtype)
    out_idx = jnp.asarray(output_spikes.idx, jnp.int32)
    k_out = out_time.shape[0]

    in_valid = (in_idx >= 0) & (in_idx < n_inputs) & jnp.isfinite(in_time)
    in_active = in_valid & (in_time <= t_max)
    out_valid = (out_idx >= 0) & (out_idx < size) & jnp.isfinite(out_time) & (out_time <= t_max)
    cotangent = jnp.where(out_valid, jnp.asarray(output_time_cotangent, dtype), 0.0)
    out_neuron = jnp.clip(out_idx, 0, size - 1)
    out_key = jnp.where(out_valid, out_time, jnp.inf)  # padding and late slots sort last

    initial_current, released, start, lam_v_final, lam_i_final = _boundaries(
        initial_state, final_state_cotangent, size, dtype, t_max)

    # Each spike's rank among its neuron's spikes, from one sort of the slots by (neuron, time).
    neuron_key = jnp.where(out_valid, out_idx, size)
    # The slots are in time order already (padding and late slots last), so a stable sort by
    # neuron gives (neuron, time) order.
    by_neuron = spikes_lib.stable_order(neuron_key, size + 1)
    sorted_position = jnp.zeros((k_out,), jnp.int32).at[by_neuron].set(jnp.arange(k_out, dtype=jnp.int32))
    spikes_per_neuron = jnp.zeros((size + 1,), jnp.int32).at[neuron_key].add(1)[:size]
    rank = sorted_position - (jnp.cumsum(spikes_per_neuron) - spikes_per_neuron)[out_neuron]
    # Segments in (neuron, time) order: neuron n's spikes, then its last segment (ending at T),
    # from position first[n]. Every neuron has exactly one last segment, so each chain ends there.
    first = jnp.cumsum(spikes_per_neuron + 1) - (spikes_per_neuron + 1)
    n_segments = k_out + size
    position = jnp.where(out_valid, first[out_neuron] + rank, n_segments)  # out of range: dropped
    last_position = first + spikes_per_neuron
    neurons = jnp.arange(size, dtype=jnp.int32)

    def segments(spike_values, last_values, fill=0):
        """One value per segment, ordered by (neuron, time)."""
        table = jnp.full((n_segments,), fill, jnp.result_type(spike_values, last_values))
        table = table.at[position].set(spike_values, mode="drop")
        return table.at[last_position].set(last_values)

    seg_real = segments(jnp.ones((k_out,), bool), jnp.zeros((size,), bool), False)
    seg_neuron = segments(out_neuron, neurons, 0)
    seg_end = segments(out_time, jnp.broadcast_to(t_max, (size,)), 0.0)  # e_k (T for the last)
    seg_cotangent = segments(cotangent, jnp.zeros((size,), dtype), 0.0)
    seg_first = segments(rank == 0, spikes_per_neuron == 0, False)
    previous_end = jnp.concatenate([jnp.zeros((1,), dtype), seg_end[:-1]])
    seg_start = jnp.where(seg_first, start[seg_neuron], previous_end + p.t_ref[seg_neuron])  # a_{k-1}
    seg_release = jnp.where(seg_real, seg_end + p.t_ref[seg_neuron], t_max)  # a_k
    moves_on = seg_real & (seg_release < t_max)  # a later segment exists
    next_end = jnp.concatenate([seg_end[1:], jnp.zeros((1,), dtype)])
    used = jnp.arange(n_segments) < jnp.sum(spikes_per_neuron) + size

    # Currents just before each spike and just after each release (as the scan's events).
    sources = (Sources(in_time, in_idx, weight, in_valid),)
    if current_table is None:
        query_time = jnp.concatenate([jnp.where(seg_real, seg_end, jnp.inf), jnp.where(moves_on, seg_release, jnp.inf)])
        query_inclusive = jnp.concatenate([jnp.zeros((n_segments,), bool), jnp.ones((n_segments,), bool)])
        currents = currents_at(query_time, jnp.concatenate([seg_neuron, seg_neuron]), query_inclusive, sources,
                               initial_current, p.tau_syn)
        current_before, current_released = currents[:n_segments], currents[n_segments:]
    else:
        # From the forward's table: the entry after the last input before the query (at or
        # before it for the right limit), decayed to the query.
        acting_time = jnp.where(in_active, in_time, t_max)  # the forward's input times
        table = jnp.asarray(current_table, dtype)
        since = jnp.concatenate([jnp.zeros((1,), dtype), acting_time])

        def current_from_table(t, side):
            holder = jnp.searchsorted(acting_time, t, side=side)
            return table[holder, seg_neuron] * jnp.exp(-(t - since[holder]) / p.tau_syn[seg_neuron])

        current_before = jnp.where(seg_real, current_from_table(jnp.where(seg_real, seg_end, 0.0), "left"), 0.0)
        current_released = jnp.where(moves_on, current_from_table(jnp.where(moves_on, seg_release, 0.0), "right"),
                                     0.0)
    tau_mem, tau_syn = p.tau_mem[seg_neuron], p.tau_syn[seg_neuron]
    slope_floor = MIN_SLOPE_FRACTION * (p.v_th - p.v_reset) / p.tau_mem
    slope_before = jnp.maximum((current_before - (p.v_th - p.v_leak)[seg_neuron]) / tau_mem, slope_floor[seg_neuron])
    slope_free = jnp.where(moves_on, (current_released - (p.v_reset - p.v_leak)[seg_neuron]) / tau_mem, 0.0)

    # Lambda_k = alpha_k + beta_k Lambda_{k+1}; the last segment: lambda_v^T unless it is empty.
    to_next = jnp.exp(-jnp.maximum(next_end - seg_release, 0.0) / tau_mem)
    alpha = jnp.where(seg_real, -seg_cotangent / slope_before,
                      jnp.where(seg_start < t_max, lam_v_final[seg_neuron], 0.0))
    beta = jnp.where(moves_on, to_next * slope_free / slope_before, 0.0)
    anchor = jnp.where(used, _affine_suffix(alpha, beta), 0.0)
    next_anchor = jnp.concatenate([anchor[1:], jnp.zeros((1,), dtype)])
    spike_gradient = seg_cotangent - jnp.where(moves_on, next_anchor * to_next * slope_free, 0.0)  # G_k

    # B_k = gamma_k + delta_k B_{k+1}.
    gamma = jnp.where(used, anchor * psp_kernel(jnp.maximum(seg_end - seg_start, 0.0), tau_mem, tau_syn), 0.0)
    delta = jnp.where(moves_on, jnp.exp(-jnp.maximum(seg_release - seg_start, 0.0) / tau_syn), 0.0)
    suffix = _affine_suffix(gamma, delta)
    next_suffix = jnp.where(moves_on, jnp.concatenate([suffix[1:], jnp.zeros((1,), dtype)]), 0.0)

    def adjoint(t, k, tau_mem, tau_syn, lam_i_end):
        """``(lambda_v, lambda_I)`` at times ``t`` whose segment (in (neuron, time) order) is ``k``.

        ``tau_mem``, ``tau_syn`` and ``lam_i_end`` (``lambda_I^T e^{-(T - t)/tau_syn}``) belong to
        the neuron of ``k``; all arguments broadcast together.
        """
        end, seg_a, release, anchor_k = seg_end[k], seg_start[k], seg_release[k], anchor[k]
        inside = t >= seg_a
        decay_mem, kernel = membrane_decay_and_kernel(jnp.maximum(end - t, 0.0), tau_mem, tau_syn)
        lam_v = jnp.where(inside, anchor_k * decay_mem, 0.0)
        # The later segments, seen from a_k (inside) or from a_{k-1} (before it): one exp.
        seen_from = jnp.where(inside, release, seg_a)
        suffix_k = jnp.where(inside, next_suffix[k], suffix[k])
        later = (jnp.where(inside, anchor_k * kernel, 0.0)
                 + jnp.exp(-jnp.maximum(seen_from - t, 0.0) / tau_syn) * suffix_k)
        return lam_v, lam_i_end + later

    # The adjoint at every input event, by one reverse pass over the inputs: between two
    # consecutive inputs a neuron's adjoint moves by the free backward dynamics (no gather, and
    # with one pair of time constants the decays are one per input), except across a boundary
    # of one of its segments (a spike or a release), where it restarts from the closed form. The
    # restarts are evaluated once per segment, not once per (input, neuron).
    t_in = jnp.where(in_active, in_time, t_max)
    lam_v_in, lam_i_in = _adjoint_at_inputs(
        t_in, adjoint, seg_end, seg_start, seg_real, seg_first, seg_neuron, used, first, out_key, out_neuron,
        neuron, p, t_max, lam_i_final)
    rows = jnp.where(in_active[:, None], weight[jnp.clip(in_idx, 0, n_inputs - 1)], 0.0)
    input_grad, grad_weight = _input_event_gradients(rows, in_idx, in_active, lam_v_in, lam_i_in, p, n_inputs)

    zero = jnp.zeros((size,), dtype)
    # At t = 0, before every event (a spike at 0 included), as the scan ends.
    lam_v0, lam_i0 = adjoint(zero, first, p.tau_mem, p.tau_syn, lam_i_final * _decay_to_end(zero, t_max, neuron, p))
    if initial_state is None:
        grad_refractory = zero
    else:
        # The membrane leaves v_reset at a_0: dL/da_0 = -lambda_v(a_0+) vdot(a_0+) (0 beyond T).
        moves = released & (start < t_max)
        current_start = currents_at(jnp.where(moves, start, jnp.inf), neurons, jnp.ones((size,), bool), sources,
                                    initial_current, p.tau_syn)
        lam_v_start = anchor[first] * jnp.exp(-jnp.maximum(seg_end[first] - start, 0.0) / p.tau_mem)
        grad_refractory = jnp.where(moves, -lam_v_start * (current_start - (p.v_reset - p.v_leak)) / p.tau_mem, 0.0)
    output_times = jnp.where(out_valid, spike_gradient[jnp.clip(position, 0, n_segments - 1)], 0.0)
    return AdjointGradients(
        weight=grad_weight,
        input_times=input_grad,
        recurrent_weight=None,
        initial_v=lam_v0,
        initial_current=lam_i0,
        initial_refractory_until=grad_refractory,
        output_times=output_times,
    )


def _adjoint_at_inputs(t_in, adjoint, seg_end, seg_start, seg_real, seg_first, seg_neuron, used, first, out_key,
                       out_neuron, neuron, p, t_max, lam_i_final):
    """``(lambda_v, lambda_I)`` of every neuron at every input time (inputs, size), for
    ``multispike_eventprop_gradients``.

    ``t_in`` is sorted. Between inputs ``i`` and ``i + 1`` a neuron's adjoint follows the free
    backward dynamics (``lambda_v <- lambda_v e^{-s/tau_mem}``, ``lambda_I <- lambda_I e^{-s/tau_syn}
    + lambda_v K(s)``) unless one of its segment boundaries (a spike ``e_k``, or a release ``a_k``
    after a refractory period) lies in ``(t_i, t_{i+1}]``; at those (input, neuron) cells, and at the
    last input, the adjoint is the closed form ``adjoint`` of the segment holding ``t_i``. Each
    segment owns at most two such cells (the gaps holding its release and its end), so the closed
    form is evaluated O(segments) times; the rest is one reverse ``lax.scan`` over the inputs with
    elementwise work per step.
    """
    n_in = t_in.shape[0]
    size = first.shape[0]
    dtype = t_in.dtype
    if n_in == 0:
        return jnp.zeros((0, size), dtype), jnp.zeros((0, size), dtype)
    scalar_tau = jnp.ndim(neuron.tau_mem) == 0 and jnp.ndim(neuron.tau_syn) == 0

    # The input gap holding each boundary: the last input strictly before it (-1: none). Ties: a
    # spike or a release at an input's time precedes that input, as in the forward pass.
    before_end = jnp.searchsorted(t_in, seg_end, side="left").astype(jnp.int32) - 1
    before_start = jnp.searchsorted(t_in, seg_start, side="left").astype(jnp.int32) - 1
    previous_end = jnp.where(seg_first, -1, jnp.concatenate([jnp.full((1,), -1, jnp.int32), before_end[:-1]]))
    last_row = n_in - 1  # restarted for every neuron below
    # A cell belongs to the earliest segment whose boundary lies in that gap.
    end_cell = seg_real & (before_end > previous_end) & (before_end >= 0) & (before_end < last_row)
    start_cell = (used & (before_start > previous_end) & (before_start >= 0) & (before_start < last_row)
                  & ~(seg_real & (before_start == before_end)))
    segment = jnp.arange(seg_end.shape[0], dtype=jnp.int32)
    cell_row = jnp.concatenate([jnp.where(end_cell, before_end, n_in), jnp.where(start_cell, before_start, n_in)])
    cell_segment = jnp.concatenate([segment, segment])
    cell_neuron = seg_neuron[cell_segment]
    cell_time = t_in[jnp.clip(cell_row, 0, last_row)]
    cell_tau_syn = p.tau_syn[cell_neuron]
    cell_v, cell_i = adjoint(cell_time, cell_segment, p.tau_mem[cell_neuron], cell_tau_syn,
                             lam_i_final[cell_neuron] * jnp.exp(-jnp.maximum(t_max - cell_time, 0.0) / cell_tau_syn))
    # The last input: its segment from the spikes at or before it.
    t_last = t_in[last_row]
    spikes_before = jnp.zeros((size + 1,), jnp.int32).at[jnp.where(out_key <= t_last, out_neuron, size)].add(1)
    last_v, last_i = adjoint(t_last, first + spikes_before[:size], p.tau_mem, p.tau_syn,
                             lam_i_final * _decay_to_end(t_last, t_max, neuron, p))
    restart = jnp.zeros((n_in, size), bool).at[cell_row, cell_neuron].set(True, mode="drop").at[last_row].set(True)
    restart_v = jnp.zeros((n_in, size), dtype).at[cell_row, cell_neuron].set(cell_v, mode="drop").at[last_row].set(last_v)
    restart_i = jnp.zeros((n_in, size), dtype).at[cell_row, cell_neuron].set(cell_i, mode="drop").at[last_row].set(last_i)

    # The free backward dynamics over each gap t_{i+1} - t_i (the last row always restarts).
    gap = jnp.concatenate([t_in[1:] - t_in[:-1], jnp.zeros((1,), dtype)])
    if scalar_tau:
        tau_mem, tau_syn = p.tau_mem[0], p.tau_syn[0]
        gap_shape = gap
    else:
        tau_mem, tau_syn = p.tau_mem, p.tau_syn
        gap_shape = gap[:, None]
    decay_mem, kernel = membrane_decay_and_kernel(gap_shape, tau_mem, tau_syn)
    decay_syn = jnp.exp(-gap_shape / tau_syn)

    def step(carry, item):
        lam_v, lam_i = carry
        restart_row, v_row, i_row, decay_mem_row, kernel_row, decay_syn_row = item
        lam_v, lam_i = (jnp.where(restart_row, v_row, lam_v * decay_mem_row),
                        jnp.where(restart_row, i_row, lam_i * decay_syn_row + lam_v * kernel_row))
        return (lam_v, lam_i), (lam_v, lam_i)

    zero = jnp.zeros((size,), dtype)
    _, (lam_v_in, lam_i_in) = jax.lax.scan(
        step, (zero, zero), (restart, restart_v, restart_i, decay_mem, kernel, decay_syn), reverse=True)
    return lam_v_in, lam_i_in


def _zero_cotangent(value: Any) -> Any:
    """A zero cotangent of the right kind for one primal leaf (float0 for integers/bools)."""
    dtype = jnp.result_type(value)
    if jnp.issubdtype(dtype, jnp.inexact):
        return jnp.zeros(jnp.shape(value), dtype)
    return np.zeros(jnp.shape(value), dtype=jax.dtypes.float0)


def _zeros_tree(tree: Any) -> Any:
    return jax.tree_util.tree_map(_zero_cotangent, tree)


def _cotangent_like(primal: Any, gradient: jax.Array) -> Any:
    """``gradient`` as the cotangent of ``primal`` (its dtype; float0 for integer primals)."""
    dtype = jnp.result_type(primal)
    if jnp.issubdtype(dtype, jnp.inexact):
        return gradient.astype(dtype)
    return _zero_cotangent(primal)


@functools.partial(jax.jit, static_argnums=(3,))
def _external_forward(weight, input_spikes, neuron, capacity, t_max, recurrent_weight, initial_state, external):
    """The forward value with injected spikes: the measurement itself, and the state it implies."""
    external = Spikes(jnp.asarray(external.time, input_spikes.time.dtype), jnp.asarray(external.idx, jnp.int32))
    count = external.count()
    if external.capacity < capacity:
        external = spikes_lib.pad(external, capacity)
    elif external.capacity > capacity:
        external = Spikes(external.time[:capacity], external.idx[:capacity])
    final_state = state_at(
        weight, input_spikes, external, neuron, t_max,
        recurrent_weight=recurrent_weight, initial_state=initial_state,
    )
    return SimulationResult(spikes=external, final_state=final_state, overflow=count > capacity)


def _forward(plan, capacity, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external):
    if external is not None:
        return _external_forward(
            weight, input_spikes, neuron, capacity, t_max, recurrent_weight, initial_state, external
        )
    return simulate_planned(
        plan, weight, input_spikes, neuron, capacity=capacity, t_max=t_max,
        recurrent_weight=recurrent_weight, initial_state=initial_state,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _eventprop_core(plan, capacity, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external):
    return _forward(plan, capacity, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external)


def _closed_form_backward(plan, n_inputs, capacity, size, feedforward):
    """The closed-form adjoint the layer's backward pass uses (``"parallel"`` or ``"multispike"``), or None (the scan)."""
    backward = plan.backward
    if backward == "feedforward":  # chosen here, where the shapes are known
        backward = choose_backward(n_inputs, capacity, size, plan.refractory)
    return backward if backward in ("parallel", "multispike") and feedforward else None


def _eventprop_fwd(plan, capacity, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external):
    spike_current = None
    feedforward = external is None and recurrent_weight is None
    n_inputs, size = input_spikes.time.shape[-1], weight.shape[-1]
    backward = _closed_form_backward(plan, n_inputs, capacity, size, feedforward)
    if plan.algorithm == "parallel" and backward == "parallel":
        # the closed-form backward then needs I(t_n-), which this forward has at hand
        result, spike_current = parallel_with_spike_currents(
            plan, weight, input_spikes, neuron, capacity=capacity, t_max=t_max, initial_state=initial_state)
    elif backward == "multispike" and shaped_algorithm(plan, n_inputs, capacity, size, False) == "multispike":
        # the multi-spike closed form needs the current at every spike and release: this
        # forward has tabulated the current after every input
        result, spike_current = multispike_with_current_table(
            plan, weight, input_spikes, neuron, capacity=capacity, t_max=t_max, initial_state=initial_state)
    else:
        result = _forward(plan, capacity, weight, input_spikes, neuron, t_max, recurrent_weight, initial_state,
                          external)
    residuals = (weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external, result.spikes,
                 spike_current)
    return result, residuals


@functools.partial(jax.jit, static_argnums=(0,))
def _adjoint(plan, residuals, result_cotangent):
    """The layer's adjoint gradients as one compiled program (an eager ``jax.grad`` would
    otherwise compile and run the backward pass operation by operation)."""
    weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external, out_spikes, spike_current = residuals
    final_ct = result_cotangent.final_state
    closed_form = {"parallel": parallel_eventprop_gradients, "multispike": multispike_eventprop_gradients}
    # Feed-forward: the closed-form adjoint (no event scan). Injected spikes may break the rules
    # the closed forms rely on (one spike per neuron; no spike while refractory), so they always
    # take the scan.
    backward = _closed_form_backward(plan, input_spikes.time.shape[-1], out_spikes.time.shape[-1], weight.shape[-1],
                                     external is None and recurrent_weight is None)
    if backward is not None:
        extra = {}
        if spike_current is not None:  # what the forward handed over (see ``_eventprop_fwd``)
            extra = {"current_before_spike" if backward == "parallel" else "current_table": spike_current}
        grads = closed_form[backward](
            weight, input_spikes, out_spikes, neuron, t_max, result_cotangent.spikes.time,
            initial_state=initial_state, final_state_cotangent=(final_ct.v, final_ct.current), **extra,
        )
    else:
        grads = eventprop_gradients(
            weight, input_spikes, out_spikes, neuron, t_max, result_cotangent.spikes.time,
            recurrent_weight=recurrent_weight, initial_state=initial_state,
            final_state_cotangent=(final_ct.v, final_ct.current), refractory=plan.refractory,
        )
    return grads


def _eventprop_bwd(plan, capacity, residuals, result_cotangent):
    del capacity
    weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external, _, _ = residuals
    grads = _adjoint(plan, residuals, result_cotangent)
    input_ct = Spikes(
        grads.input_times.astype(input_spikes.time.dtype), _zero_cotangent(input_spikes.idx)
    )
    recurrent_ct = None
    if recurrent_weight is not None:
        recurrent_ct = _cotangent_like(recurrent_weight, grads.recurrent_weight)
    initial_ct = None
    if initial_state is not None:
        initial_ct = LIFState(
            v=_cotangent_like(initial_state.v, grads.initial_v),
            current=_cotangent_like(initial_state.current, grads.initial_current),
            refractory_until=_cotangent_like(initial_state.refractory_until, grads.initial_refractory_until),
        )
    return (
        _cotangent_like(weight, grads.weight), input_ct, _zeros_tree(neuron), _zeros_tree(t_max),
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
    backward: str = "auto",
) -> SimulationResult:
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
        backward: EventProp backward pass: ``"auto"`` (default: the closed form for a
            feed-forward layer, the scan for a recurrent one), ``"scan"``
            (``eventprop_gradients``, any layer) or ``"parallel"`` (the closed form:
            ``parallel_eventprop_gradients`` where one spike per neuron is certain, else
            ``multispike_eventprop_gradients``; needs a feed-forward layer and cannot be
            combined with ``external_spikes``). All give the same gradients to rounding where
            they apply; injected spikes always use the scan.

    Returns:
        ``SimulationResult(spikes, final_state, overflow)``.

    Raises:
        TypeError, ValueError: on invalid arguments (see ``jaxsnn.event.validate_inputs``), or
            malformed ``external_spikes`` (checked eagerly when concrete), or
            ``backward="parallel"`` where it does not apply.
    """
    validate_inputs(
        weight, input_spikes, neuron, capacity=capacity, t_max=t_max,
        recurrent_weight=recurrent_weight, initial_state=initial_state,
    )
    if external_spikes is not None:
        with jax.ensure_compile_time_eval():
            spikes_lib.validate(external_spikes, n_neurons=jnp.shape(weight)[-1], name="external_spikes")
    # Resolved while the time constants are concrete: inside the custom_vjp they are traced.
    plan = resolve_plan(
        neuron, t_max, kernel=kernel, algorithm=algorithm, recurrent=recurrent_weight is not None, backward=backward,
    )
    if backward == "parallel" and external_spikes is not None:
        raise ValueError(
            "backward='parallel' needs the simulated spikes (the closed form assumes one spike per "
            "neuron, or none while refractory); injected external_spikes may break that: use "
            "backward='scan' or 'auto'"
        )
    return simulate_eventprop_planned(
        plan, weight, input_spikes, neuron, capacity=capacity, t_max=t_max,
        recurrent_weight=recurrent_weight, initial_state=initial_state, external_spikes=external_spikes,
    )


def simulate_eventprop_planned(
    plan: Plan,
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    *,
    capacity: int,
    t_max: Any,
    recurrent_weight: Optional[jax.Array] = None,
    initial_state: Optional[LIFState] = None,
    external_spikes: Optional[Spikes] = None,
) -> SimulationResult:
    """``simulate_eventprop`` with its static choices resolved and its inputs already checked.

    Args:
        plan: the resolved kernel, algorithm and refractory handling (``jaxsnn.event.plan``).
        weight, input_spikes, neuron, capacity, t_max, recurrent_weight, initial_state,
            external_spikes: as for ``simulate_eventprop`` (valid).

    Returns:
        ``SimulationResult(spikes, final_state, overflow)``.
    """
    return _eventprop_core(
        plan, int(capacity), weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, external_spikes
    )
