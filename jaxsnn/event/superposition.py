"""The state of a layer in closed form, by superposition over its events (no simulation).

Between resets the LIF neuron is linear, so given *all* events of a window (input spikes, and
the layer's own output spikes taken as given, simulated or measured) its state at any time is a
sum over the earlier events::

    I_n(t) = I_n(0) exp(-t/tau_syn) + sum_{events e: t_e <= t} W_e[n] exp(-(t - t_e)/tau_syn)
    v_n(t) = v_leak + (v_start - v_leak) exp(-(t - a_n)/tau_mem) + I_n(a_n) K(t - a_n)
             + sum_{a_n < t_e <= t} W_e[n] K(t - t_e)

where ``a_n`` is the instant neuron ``n``'s membrane last left ``v_reset`` (its last spike plus
``t_ref``; 0 without spikes), ``v_start`` the value it left from, and ``K`` the PSP kernel
(``jaxsnn.event.dynamics.psp_kernel``). An event ``e`` is an input spike (``W_e`` a row of the
input weights) or, in a recurrent layer, an output spike (a row of the recurrent weights).

EventProp needs the currents just before every output spike and just after every release of a
membrane; injected (measured) output spikes need the state at the window end. Both come from
here, so the backward pass never re-simulates.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from jaxsnn.event.dynamics import free_membrane, psp_kernel
from jaxsnn.event.neuron import LIFParameters, LIFState, per_neuron
from jaxsnn.spikes import Spikes

__all__ = ["Sources", "currents_at", "currents_dense", "currents_scan", "currents_table", "state_at"]

# Above this many (query, source) pairs per sample ``currents_at`` leaves the dense masked sum.
DENSE_CURRENT_LIMIT = 1 << 16
# Up to this many (source event, neuron) entries per sample it then tabulates the current after
# every event (``currents_table``); beyond, it scans the events (O(events) memory).
TABLE_CURRENT_LIMIT = 1 << 22


class Sources(NamedTuple):
    """Events that inject current into the layer.

    Attributes:
        time: ``(n,)`` event times.
        row: ``(n,)`` row of ``matrix`` each event adds to the current.
        matrix: ``(rows, size)`` weights (input or recurrent).
        valid: ``(n,)`` bool, False for padding and ignored events.
    """

    time: jax.Array
    row: jax.Array
    matrix: jax.Array
    valid: jax.Array


def currents_dense(
    query_time: jax.Array,
    query_neuron: jax.Array,
    query_inclusive: jax.Array,
    sources: Tuple[Sources, ...],
    initial_current: jax.Array,
    tau_syn: jax.Array,
) -> jax.Array:
    """Synaptic current of neuron ``query_neuron[q]`` at ``query_time[q]`` as a masked sum.

    ``I_n(t) = I_n(0) exp(-t/tau_syn) + sum_{events e before t} W_e[n] exp(-(t - t_e)/tau_syn)``;
    "before" is ``t_e < t`` (left limit) or ``t_e <= t`` (right limit, ``query_inclusive``).
    Memory O(queries x events).

    Args:
        query_time: ``(q,)`` times (non-finite entries give 0).
        query_neuron: ``(q,)`` neuron of each query.
        query_inclusive: ``(q,)`` bool, right limit (events at the query time count).
        sources: the current-injecting events.
        initial_current: ``(size,)`` current at ``t = 0``.
        tau_syn: ``(size,)`` synaptic time constants.

    Returns:
        ``(q,)`` currents.
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


def currents_scan(
    query_time: jax.Array,
    query_neuron: jax.Array,
    query_inclusive: jax.Array,
    sources: Tuple[Sources, ...],
    initial_current: jax.Array,
    tau_syn: jax.Array,
) -> jax.Array:
    """Same as ``currents_dense``, by one forward scan over all events (O(events) memory)."""
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
        t, _, r, o = item
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
        # One slot written in place: a ``where`` over the whole buffer would copy all queries
        # at every event (O(events x queries)).
        answers = answers.at[q].set(jnp.where((o == -1) & finite, value, answers[q]))
        return (current, t_eff, answers), None

    init = (initial_current, jnp.zeros((), time.dtype), jnp.zeros((n_query,), time.dtype))
    (_, _, answers), _ = jax.lax.scan(step, init, (time[order], kind[order], row[order], owner[order]))
    return jnp.where(query_ok, answers, 0.0)


def _after_each_event(time: jax.Array, rows: jax.Array, tau_syn: jax.Array) -> jax.Array:
    """``C[k]``: the current injected by the first ``k`` events alone, just after event ``k - 1``.

    ``C[0] = 0`` and ``C[k] = C[k - 1] exp(-(t_{k-1} - t_{k-2})/tau_syn) + rows[k - 1]``: an affine
    recurrence, solved by a forward ``associative_scan`` (O(log events) depth). Non-finite times
    (padding, last) add nothing and are never reached by a finite query.
    """
    finite = jnp.isfinite(time)
    previous = jnp.concatenate([jnp.zeros((1,), time.dtype), time[:-1]])
    gap = jnp.where(finite, time - jnp.where(jnp.isfinite(previous), previous, 0.0), 0.0)
    factor = jnp.exp(-gap[:, None] / tau_syn[None, :])
    offset = jnp.where(finite[:, None], rows, 0.0)

    def compose(earlier, later):
        earlier_offset, earlier_factor = earlier
        later_offset, later_factor = later
        return later_offset + later_factor * earlier_offset, later_factor * earlier_factor

    after, _ = jax.lax.associative_scan(compose, (offset, factor))
    return jnp.concatenate([jnp.zeros_like(after[:1]), after])


def currents_table(
    query_time: jax.Array,
    query_neuron: jax.Array,
    query_inclusive: jax.Array,
    sources: Tuple[Sources, ...],
    initial_current: jax.Array,
    tau_syn: jax.Array,
) -> jax.Array:
    """Same as ``currents_dense`` for sources whose valid events are sorted by time.

    The buffer contract of the library (sorted events, padding last) guarantees that order;
    invalid events must come after every valid one. For each source the current injected just
    after each of its events is tabulated once (``O(events x neurons)``, an ``associative_scan``);
    a query then finds the last event before it by binary search and decays that entry:
    ``O(queries x log events)``. Memory O(events x neurons).
    """
    query_ok = jnp.isfinite(query_time)
    t_q = jnp.where(query_ok, query_time, 0.0)
    neuron = jnp.clip(query_neuron, 0, tau_syn.shape[0] - 1)
    tau_q = tau_syn[neuron]
    total = initial_current[neuron] * jnp.exp(-t_q / tau_q)
    # (At 0 the next float is subnormal, which XLA's CPU comparisons flush to 0: the smallest
    # normal float is above 0 and below every event time that is not 0 itself.)
    after = jnp.where(t_q == 0, jnp.finfo(t_q.dtype).tiny, jnp.nextafter(t_q, jnp.inf))
    search_time = jnp.where(query_inclusive, after, t_q)
    for source in sources:
        time = jnp.where(source.valid, source.time, jnp.inf)
        rows = source.matrix[jnp.clip(source.row, 0, source.matrix.shape[0] - 1)]
        table = _after_each_event(time, jnp.where(source.valid[:, None], rows, 0.0), tau_syn)
        # Events strictly before the query (left limit) or at it too (right limit): events at
        # or before t are those strictly before the next float after t, so one search does both.
        holder = jnp.searchsorted(time, search_time, side="left")
        t_holder = jnp.concatenate([jnp.zeros((1,), time.dtype), time])[holder]
        lag = jnp.where(holder > 0, t_q - t_holder, 0.0)
        total = total + table[holder, neuron] * jnp.exp(-lag / tau_q)
    return jnp.where(query_ok, total, 0.0)


def currents_at(
    query_time: jax.Array,
    query_neuron: jax.Array,
    query_inclusive: jax.Array,
    sources: Tuple[Sources, ...],
    initial_current: jax.Array,
    tau_syn: jax.Array,
) -> jax.Array:
    """The currents at the queries by the cheapest exact method for the problem size.

    ``currents_dense`` up to ``DENSE_CURRENT_LIMIT`` (query, event) pairs, then
    ``currents_table`` (sources sorted by time, as every event buffer is) up to
    ``TABLE_CURRENT_LIMIT`` (event, neuron) entries, else ``currents_scan``.
    """
    events = sum(source.time.shape[0] for source in sources)
    if query_time.shape[0] * events <= DENSE_CURRENT_LIMIT:
        method = currents_dense
    elif events * tau_syn.shape[0] <= TABLE_CURRENT_LIMIT:
        method = currents_table
    else:
        method = currents_scan
    return method(query_time, query_neuron, query_inclusive, sources, initial_current, tau_syn)


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
    Closed form (module docstring), no simulation.

    Args:
        weight: ``(n_inputs, size)`` input weights.
        input_spikes: input events.
        output_spikes: output events of this layer (taken as given).
        neuron: ``LIFParameters``.
        t: the time (right limit: events at ``t`` are included).
        recurrent_weight: optional ``(size, size)``.
        initial_state: optional ``LIFState`` at ``t = 0`` (default: rest).

    Returns:
        ``LIFState(v, current, refractory_until)`` at ``t``; ``refractory_until`` is relative
        to ``t`` (as in ``simulate``'s final state).
    """
    weight = jnp.asarray(weight)
    dtype = jnp.result_type(weight.dtype, input_spikes.time.dtype)
    weight = weight.astype(dtype)
    n_inputs, size = weight.shape
    p = per_neuron(neuron, size, dtype)
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
        v0, current0, ref0 = (jnp.broadcast_to(jnp.asarray(value, dtype), (size,)) for value in initial_state)
    sources = [Sources(in_time, in_idx, weight, in_valid)]
    if recurrent_weight is not None:
        sources.append(Sources(out_time, out_idx, jnp.asarray(recurrent_weight, dtype), out_valid))
    sources = tuple(sources)
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
    current = currents_dense(jnp.broadcast_to(t, (size,)), neurons, full, sources, current0, p.tau_syn)
    current_start = currents_dense(start, neurons, full, sources, current0, p.tau_syn)
    u = free_membrane(t - start, v_start - p.v_leak, current_start, p.tau_mem, p.tau_syn)
    for source in sources:
        lag = t - source.time[:, None]
        mask = source.valid[:, None] & (source.time[:, None] > start[None, :])
        lag = jnp.where(mask, lag, 0.0)
        rows = jnp.clip(source.row, 0, source.matrix.shape[0] - 1)
        response = psp_kernel(lag, p.tau_mem[None, :], p.tau_syn[None, :])
        u = u + jnp.sum(jnp.where(mask, source.matrix[rows] * response, 0.0), axis=0)
    v = jnp.where(clamped, p.v_reset, p.v_leak + u)
    return LIFState(v=v, current=current, refractory_until=refractory_until)
