"""Exact event simulation of coupled LIF groups whose connections carry transmission delays.

Used by ``jaxsnn.graph.event_graph`` for a cycle with delayed edges. The neurons of all groups
form one layer (group ``g`` holds the neurons ``offsets[g] .. offsets[g] + sizes[g]``) with input
weights, optional instantaneous recurrent weights and ``E`` *delayed connections*: connection
``e`` takes every spike ``(t, i)`` of its source group ``sources[e]`` and delivers it at
``t + delays[e]`` to the whole layer, adding row ``i`` (source-local index) of
``delayed_weight[e]`` (shape ``(sizes[sources[e]], n_neurons)``) to the synaptic current.

Why no sorting is needed. A delay is one number per connection, so the arrivals of connection
``e`` are the source group's output spikes shifted by ``delays[e]``: in emission order, which is
time order. Each connection keeps a pointer into its source group's output buffer (and into
the spikes carried from the previous window), and the next arrival is the spike under the
pointer plus the delay. The scan of ``jaxsnn.event.simulate`` is extended by these ``E``
candidates: every step takes the earliest of

* the next threshold crossing (crossings win ties, as in ``simulate``),
* the next input spike,
* the next arrival of every delayed connection (input before arrival, lower ``e`` first, on ties),

and applies it exactly. A delayed arrival is an input event at its exact time, so the result is
exact; per step the work is O(n_neurons + E) and the scan has
``n_input_slots + sum(capacities) + sum_e (history + capacity of sources[e])`` steps (each
step consumes an input, emits at least one spike or delivers one arrival).

Gradients: ``jax.grad`` through the scan, as the "analytic" path of ``simulate``: spike times
are differentiated through the kernels (implicit function theorem), an arrival time
``t_k + d_e`` passes ``d loss / d arrival`` to both the source spike time and the delay, so
``d loss / d d_e`` is exact (away from spike creation and deletion).

Streaming. ``history[g]`` holds group ``g``'s spikes of the previous window, with times relative
to this window's start (``<= 0``); arrivals from them that fall into this window are delivered.
The returned history holds the spikes of this window whose arrival lies after ``t_max``
(times shifted by ``-t_max``), so a window simulated in chunks equals one run. Only one window is kept, so
a spike whose arrival lies beyond the *next* window is lost: ``overflow`` flags it (a delay
longer than the window length needs a longer window).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn import spikes as spikes_lib
from jaxsnn.compose import _first_kept
from jaxsnn.event.dynamics import evolve, rest_state
from jaxsnn.event.neuron import LIFParameters, LIFState
from jaxsnn.event.simulate import _next_crossings
from jaxsnn.spikes import Spikes

__all__ = ["DelayedResult", "simulate_delayed"]


class DelayedResult(NamedTuple):
    """Result of ``simulate_delayed``.

    Attributes:
        spikes: per group, its output ``Spikes`` (``capacities[g]`` slots, group-local indices,
            its earliest spikes, sorted by time then index).
        history: per group, those of its spikes that a connection delivers after ``t_max``,
            with times shifted by ``-t_max`` (the ``history`` argument of the next window).
        final_state: the layer's state at ``t_max`` (``refractory_until`` relative to ``t_max``).
        overflow: per group, True if it emitted more spikes than its capacity, if the scan ran
            out of steps, or if a carried spike's arrival lies beyond this window (lost).
    """

    spikes: Tuple[Spikes, ...]
    history: Tuple[Spikes, ...]
    final_state: LIFState
    overflow: jax.Array


@functools.partial(jax.jit, static_argnames=("sizes", "capacities", "sources", "method"))
def simulate_delayed(
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    t_max: jax.Array,
    recurrent_weight: Optional[jax.Array],
    delayed_weight: Tuple[jax.Array, ...],
    delays: jax.Array,
    initial_state: Optional[LIFState],
    history: Optional[Tuple[Spikes, ...]],
    *,
    sizes: Tuple[int, ...],
    capacities: Tuple[int, ...],
    sources: Tuple[int, ...],
    method: str,
) -> DelayedResult:
    """Simulate coupled groups with delayed connections exactly (see the module doc).

    Dynamics per neuron as ``jaxsnn.event.simulate``. Arguments are trusted (the caller
    validates): delays ``>= 0`` and finite, shapes consistent.

    Args:
        weight: ``(n_inputs, n_neurons)`` input weights.
        input_spikes: input ``Spikes`` (indices in ``[0, n_inputs)``); times after ``t_max`` ignored.
        neuron: ``LIFParameters`` (scalars or ``(n_neurons,)``).
        t_max: end of the window.
        recurrent_weight: ``(n_neurons, n_neurons)`` instantaneous recurrent weights, or ``None``.
        delayed_weight: per connection ``e``, ``(sizes[sources[e]], n_neurons)``.
        delays: ``(E,)`` delays, ``>= 0``.
        initial_state: state at ``t = 0`` (``None``: rest).
        history: per group, spikes of the previous window with times ``<= 0`` (``None``: none).
        sizes: neurons per group (static).
        capacities: output slots per group (static).
        sources: source group of each connection (static).
        method: next-crossing kernel (static).

    Returns:
        ``DelayedResult``.
    """
    dtype = weight.dtype
    n_groups = len(sizes)
    n_neurons = int(sum(sizes))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32)
    bases = np.concatenate([[0], np.cumsum(capacities)[:-1]]).astype(np.int32)
    group_of = np.repeat(np.arange(n_groups), sizes).astype(np.int32)
    total_capacity = int(sum(capacities))
    n_edges = len(sources)
    in_time = jnp.where((input_spikes.idx >= 0) & (input_spikes.time <= t_max), input_spikes.time, jnp.inf)
    in_idx = input_spikes.idx
    n_slots = in_time.shape[0]
    state = rest_state(n_neurons, neuron, dtype) if initial_state is None else initial_state
    delays = jnp.asarray(delays, dtype)
    if history is None:
        history = tuple(spikes_lib.empty(1, dtype) for _ in range(n_groups))
    history = tuple(Spikes(jnp.where(h.idx >= 0, h.time.astype(dtype), jnp.inf), h.idx) for h in history)
    history_count = [jnp.sum(h.idx >= 0, dtype=jnp.int32) for h in history]
    # Arrivals from the carried spikes at times <= 0 were delivered in the previous window.
    pointer0 = jnp.stack(
        [jnp.sum((history[s].idx >= 0) & (history[s].time + delays[e] <= 0), dtype=jnp.int32) for e, s in enumerate(sources)]
    ) if n_edges else jnp.zeros((0,), jnp.int32)

    def arrival(e, pointer, out_time, out_idx, n_out):
        """Time (inf if none in the window) and source-local index of connection e's next arrival."""
        s = sources[e]
        hist = history[s]
        p = pointer[e]
        in_history = p < history_count[s]
        h = jnp.clip(p, 0, hist.time.shape[0] - 1)
        c = jnp.clip(p - history_count[s], 0, capacities[s] - 1)
        emitted = (p - history_count[s]) < jnp.minimum(n_out[s], capacities[s])
        sent = jnp.where(in_history, hist.time[h], jnp.where(emitted, out_time[bases[s] + c], jnp.inf))
        source_idx = jnp.where(in_history, hist.idx[h], out_idx[bases[s] + c] - offsets[s])
        at = sent + delays[e]
        return jnp.where(at <= t_max, at, jnp.inf), jnp.clip(source_idx, 0, sizes[s] - 1)

    def arrivals(pointer, out_time, out_idx, n_out):
        if not n_edges:
            return jnp.full((0,), jnp.inf, dtype), jnp.zeros((0,), jnp.int32)
        found = [arrival(e, pointer, out_time, out_idx, n_out) for e in range(n_edges)]
        return jnp.stack([f[0] for f in found]), jnp.stack([f[1] for f in found])

    def step(carry, _):
        t, state, in_pointer, pointer, out_time, out_idx, n_out = carry
        slot = jnp.minimum(in_pointer, n_slots - 1)
        t_in = jnp.where(in_pointer < n_slots, in_time[slot], jnp.inf)
        t_arrive, source_idx = arrivals(pointer, out_time, out_idx, n_out)
        t_arrival = jnp.min(t_arrive) if n_edges else jnp.asarray(jnp.inf, dtype)
        t_cross = _next_crossings(state, t, t_max, neuron, method)
        t_out = jnp.min(t_cross)
        is_spike = jnp.isfinite(t_out) & (t_out <= t_in) & (t_out <= t_arrival)
        is_input = ~is_spike & jnp.isfinite(t_in) & (t_in <= t_arrival)
        is_arrival = ~is_spike & ~is_input & jnp.isfinite(t_arrival)
        t_next = jnp.where(is_spike, t_out, jnp.where(is_input, t_in, jnp.where(is_arrival, t_arrival, t)))
        state = evolve(state, t, t_next, neuron)
        free = state.refractory_until < t_next
        fired = is_spike & ((t_cross == t_out) | (free & (state.v >= neuron.v_th)))
        # Each neuron's spike time is its own crossing (see jaxsnn.event.simulate).
        t_spike = jnp.where(t_cross == t_out, t_cross, t_next)
        refractory_end = jnp.where(neuron.t_ref > 0, t_spike + neuron.t_ref, -jnp.inf)
        v = jnp.where(fired, neuron.v_reset, state.v)
        refractory_until = jnp.where(fired, refractory_end, state.refractory_until)
        current = state.current
        if recurrent_weight is not None:
            current = current + fired.astype(dtype) @ recurrent_weight
        row = weight[jnp.clip(in_idx[slot], 0, weight.shape[0] - 1)]
        current = current + jnp.where(is_input, row, jnp.zeros_like(row))
        if n_edges:
            chosen = jnp.argmin(t_arrive)
            for e in range(n_edges):
                take = is_arrival & (chosen == e)
                delivered = delayed_weight[e][source_idx[e]]
                current = current + jnp.where(take, delivered, jnp.zeros_like(delivered))
            pointer = pointer + (is_arrival & (jnp.arange(n_edges) == chosen)).astype(jnp.int32)
        # Each group writes its spikes, in emission (= time) order, into its own segment.
        fired_int = fired.astype(jnp.int32)
        cumulative = jnp.cumsum(fired_int)
        before_group = jnp.concatenate([jnp.zeros((1,), jnp.int32), cumulative])[offsets][group_of]
        rank = cumulative - before_group - 1
        n_group = jnp.asarray(n_out)[group_of]
        position = n_group + rank
        capacity_of = jnp.asarray(capacities, jnp.int32)[group_of]
        target = jnp.where(fired & (position < capacity_of), jnp.asarray(bases)[group_of] + position, total_capacity)
        out_time = out_time.at[target].set(t_spike, mode="drop")
        out_idx = out_idx.at[target].set(jnp.arange(n_neurons, dtype=jnp.int32), mode="drop")
        n_out = n_out + jax.ops.segment_sum(fired_int, jnp.asarray(group_of), num_segments=n_groups)
        new_state = LIFState(v=v, current=current, refractory_until=refractory_until)
        return (t_next, new_state, in_pointer + is_input.astype(jnp.int32), pointer, out_time, out_idx, n_out), None

    length = n_slots + total_capacity + sum(history[s].time.shape[0] + capacities[s] for s in sources)
    initial = (
        jnp.zeros((), dtype),
        state,
        jnp.zeros((), jnp.int32),
        pointer0,
        jnp.full((total_capacity,), jnp.inf, dtype),
        jnp.full((total_capacity,), spikes_lib.PAD_IDX, jnp.int32),
        jnp.zeros((n_groups,), jnp.int32),
    )
    (t, state, in_pointer, pointer, out_time, out_idx, n_out), _ = jax.lax.scan(step, initial, None, length=length)
    # Work left after the last step means a buffer was too small (as in jaxsnn.event.simulate).
    pending_crossing = jnp.any(jnp.isfinite(_next_crossings(state, t, t_max, neuron, method)))
    pending_input = (in_pointer < n_slots) & jnp.isfinite(in_time[jnp.minimum(in_pointer, n_slots - 1)])
    pending_arrival = jnp.any(jnp.isfinite(arrivals(pointer, out_time, out_idx, n_out)[0])) if n_edges else False
    # Carried spikes that have not arrived by t_max would need a second window of history.
    lost = [
        jnp.any((history[s].idx >= 0) & (history[s].time + delays[e] > t_max)) for e, s in enumerate(sources)
    ]
    everywhere = pending_crossing | pending_input | pending_arrival | jnp.any(jnp.asarray(lost + [False]))
    overflow = (n_out > jnp.asarray(capacities)) | everywhere
    final = evolve(state, t, t_max, neuron)
    final = final._replace(refractory_until=final.refractory_until - t_max)
    outputs, histories = [], []
    for g in range(n_groups):
        segment = slice(int(bases[g]), int(bases[g]) + capacities[g])
        idx = out_idx[segment]
        valid = idx >= 0
        local = jnp.where(valid, idx - offsets[g], spikes_lib.PAD_IDX)
        time = jnp.where(valid, out_time[segment], jnp.inf)
        # Emission order is time order; ties across steps (rounding) are put in index order.
        by_idx = jnp.argsort(jnp.where(valid, local, sizes[g]), stable=True)
        by_time = by_idx[jnp.argsort(time[by_idx], stable=True)]
        spikes = Spikes(time[by_time], local[by_time].astype(jnp.int32))
        outputs.append(spikes)
        # Keep only the spikes that some connection still has to deliver after t_max.
        reach = [delays[e] for e, s in enumerate(sources) if s == g]
        if reach:
            longest = jnp.max(jnp.stack(reach))
            pending = (spikes.idx >= 0) & (spikes.time + longest > t_max)
        else:
            pending = jnp.zeros_like(spikes.idx, bool)
        kept, _ = _first_kept(spikes.time - t_max, spikes.idx, pending, capacities[g])
        histories.append(kept)
    return DelayedResult(tuple(outputs), tuple(histories), final, overflow)
