"""Exact multi-spike forward pass of a feed-forward LIF layer, searching windows of input intervals.

In a feed-forward layer the synaptic current ``I_n(t)`` does not depend on the layer's own
spikes, and between resets the membrane equation is linear. Let ``u_free`` be the membrane
(relative to ``v_leak``) of a neuron that never resets, started from the initial state; it is
known in closed form just after every input spike from one cheap scan over the inputs
(``O(inputs x neurons)``). A neuron whose membrane leaves ``v_reset`` at the *release* time
``a`` (its previous spike plus ``t_ref``, or the window start) obeys the same equation with the
same current, so the difference decays with ``tau_mem`` alone::

    u(t) = u_free(t) + (u_a - u_free(a)) exp(-(t - a) / tau_mem),    t >= a,

with ``u_a = v_reset - v_leak`` after a spike (the initial membrane for the first release).
Hence the membrane at the start of every inter-input interval after ``a`` is exact in closed
form, and so is the next threshold crossing inside each interval (the next-spike kernels of
``jaxsnn.event.kernels``).

The search walks every neuron forward from its release through windows of ``block``
consecutive intervals, all neurons at once. An iteration reads one window, shared by the neurons
of the sample: it starts at the earliest interval any active neuron still has to examine, and
each neuron examines it from its own position on (neurons further ahead wait), so the window is
one contiguous slice of the tables. Each iteration:

1. ``u_free(a)`` and ``I(a)`` by evolving from the last input before ``a``, once per release:
   that input is found in the window that reaches ``a`` (no binary search), and the values
   are carried while the neuron's windows move on;
2. for every interval of the neuron's window the start state (the release itself for the
   interval that holds ``a``, the formula above for the later ones) and whether the membrane
   reaches ``v_th`` in it: for the root solver the closed-form bracket test (the value at the
   interior maximum or the interval end, ``jaxsnn.event.dynamics.extremum_time``), for the
   analytic kernels the kernel itself; a crossing exactly at an input time belongs to the
   interval it ends (crossings win ties, as in the scan);
3. the crossing in the earliest such interval, solved once per neuron: this is the neuron's
   next spike, ``spike + t_ref`` its next release, and its next window starts at the spike's
   interval. A neuron without a crossing in its window moves on to the next window.

A neuron is done when its release is past ``t_max`` or its window past the last interval; the
loop (a ``while_loop``) stops when every neuron is. With ``block`` equal to the number of
intervals every iteration gives every neuron its next spike ("rounds"); with ``block = 1`` a
neuron steps through the intervals one by one. ``jaxsnn.event.plan.multispike_block`` picks the
block from the shapes so that a neuron evaluates about twice its intervals at most, in about
``intervals / block + spikes`` iterations. The number of spikes per neuron is bounded statically
by ``jaxsnn.event.plan.multispike_rounds`` (the output capacity, or fewer when ``t_ref`` bounds
the spikes per neuron); a neuron that would spike once more, or more spikes in all than
``capacity``, sets ``overflow``, as for the scan. Work: about ``2 x (inputs + 1) x neurons``
cheap elementwise evaluations plus one solver call per spike, in about ``intervals / block +
spikes per neuron`` sequential iterations (a few more where neurons wait for the shared window)
instead of the scan's ``inputs + capacity`` steps over all neurons.

Gradients. The search (step 2) is a discrete choice and carries no derivative; it records each
spike's interval and its rank among the neuron's spikes (its "round"). A replay then
recomputes every spike (step 3) from its recorded interval, in a ``lax.scan`` over the bounded
rounds with ``O(neurons)`` work each: the kernel's crossing
from a start state that is a differentiable closed-form function of the weights, the input
times, the neuron parameters and the previous spike time (through ``a``). ``jax.grad``
therefore gives the exact derivative of every spike time by the implicit function theorem per
spike (the kernels' ``custom_jvp``), chained from spike to spike by plain autodiff, as the
scan's analytic gradient does.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxsnn import spikes as spikes_lib
from jaxsnn.event.dynamics import acting_inputs, evolve, extremum_time, free_membrane, psp_kernel, rest_state
from jaxsnn.event.kernels import next_crossing
from jaxsnn.event.neuron import LIFParameters, LIFState, per_neuron
from jaxsnn.spikes import Spikes

__all__ = ["simulate_multispike"]


def _crossing_exists(method, u0, current0, theta, tau_mem, tau_syn, horizon, x_end=None):
    """Whether ``u`` reaches ``theta`` within ``[0, horizon]`` (no derivative; see module docstring).

    For ``"root"`` this is the solver's own existence test (immediate crossing, or a maximum
    bracket whose upper end is at or above ``theta``), without the iteration. For
    ``"quadratic"`` it is the same maximum test in ``x = exp(-s / tau_mem)``, where the membrane
    is a parabola: no logarithm or square root (it halved the search's time on the Randman
    layers); it can differ from the kernel only by rounding at the interval end, which the
    search allows for. ``"lambertw"`` calls its kernel. ``x_end``: ``exp(-horizon / tau_mem)``
    where the caller has it (``"quadratic"`` only).
    """
    if method == "quadratic":
        # tau_mem = 2 tau_syn: with x = exp(-s / tau_mem), u = c x - I0 x^2, c = u0 + I0, a
        # parabola in x on [x_end, 1]; it reaches theta at x_end or at its vertex x = c / (2 I0).
        if x_end is None:
            x_end = jnp.exp(-jnp.maximum(horizon, 0.0) / tau_mem)
        c = u0 + current0
        at_end = c * x_end - current0 * x_end * x_end >= theta
        at_vertex = (current0 > 0) & (c >= 2.0 * current0 * x_end) & (c <= 2.0 * current0) & (c * c >= 4.0 * current0 * theta)
        return (horizon >= 0) & ((u0 >= theta) | at_end | at_vertex)
    if method != "root":
        return jnp.isfinite(next_crossing(u0, current0, theta, tau_mem, tau_syn, horizon, method))
    immediate = (u0 >= theta) & (horizon >= 0)
    safe_u0 = jnp.where(immediate, 0.0, u0)
    s_ext, has_extremum = extremum_time(safe_u0, current0, tau_mem, tau_syn)
    upper = jnp.minimum(jnp.where(has_extremum, s_ext, 0.0), jnp.maximum(horizon, 0.0))
    excess_upper = free_membrane(upper, safe_u0, current0, tau_mem, tau_syn) - theta
    return immediate | (has_extremum & (excess_upper >= 0) & (horizon >= 0))


class _Tables(NamedTuple):
    """The free (never-reset) trajectory of a layer at the start of every inter-input interval.

    Interval ``k`` runs from ``t_start[k]`` (0 or input ``k - 1``) to ``t_end[k]`` (input ``k``
    or ``t_max``); ``u_free[k]`` and ``current_free[k]`` are the free membrane (relative to
    ``v_leak``) and current just after input ``k - 1``. ``p`` holds per-neuron parameters.
    """

    t_start: jax.Array
    t_end: jax.Array
    u_free: jax.Array
    current_free: jax.Array
    p: LIFParameters
    t_max: jax.Array


class _Search(NamedTuple):
    """The search's loop state: per neuron, then the output slots, the overflow flag, and per
    neuron the interval holding its release with the free membrane and current there (valid once
    a window has reached the release)."""

    spikes_of: jax.Array
    release: jax.Array
    k0: jax.Array
    u_release: jax.Array
    count: jax.Array
    slot_time: jax.Array
    slot_idx: jax.Array
    slot_round: jax.Array
    slot_interval: jax.Array
    pending: jax.Array
    holder: jax.Array
    u_free_a: jax.Array
    current_a: jax.Array


def _at_release(tables: _Tables, release):
    """Interval holding each neuron's release, the free membrane and the current there."""
    n_intervals, size = tables.u_free.shape
    neurons = jnp.arange(size)
    live = release <= tables.t_max  # False for +inf (no further spike) and releases after the window
    a = jnp.where(live, release, 0.0)
    holder = jnp.clip(jnp.searchsorted(tables.t_start, a, side="right") - 1, 0, n_intervals - 1)
    gap = a - tables.t_start[holder]
    p = tables.p
    u_free_a = free_membrane(gap, tables.u_free[holder, neurons], tables.current_free[holder, neurons], p.tau_mem, p.tau_syn)
    current_a = tables.current_free[holder, neurons] * jnp.exp(-gap / p.tau_syn)
    return live, a, holder, u_free_a, current_a


def _start_state(k, holder, live, a, u_release, u_free_a, current_a, t_start_k, t_end_k, u_free_k, current_k,
                 tau_mem):
    """Start time, state and horizon of interval(s) ``k``, given each neuron's release.

    ``holder`` is the interval holding the release ``a`` (state ``u_release``; free membrane
    ``u_free_a`` and current ``current_a`` there); ``*_k`` are the tables at ``k``; ``live`` masks
    intervals that cannot hold a spike (horizon -1). All arguments broadcast together.

    Returns:
        ``(own, s0, u0, current0, horizon)``; ``own`` is where ``k`` holds the release.
    """
    own = k == holder
    later = k > holder
    lag = jnp.where(later, t_start_k - a, 0.0)
    u_k = u_free_k + (u_release - u_free_a) * jnp.exp(-lag / tau_mem)
    u0 = jnp.where(own, u_release, u_k)
    current0 = jnp.where(own, current_a, current_k)
    s0 = jnp.where(own, a, t_start_k)
    horizon = jnp.where(live & (k >= holder), t_end_k - s0, -1.0)
    return own, s0, u0, current0, horizon


def _interval_starts(tables: _Tables, k, release, u_release):
    """Start time, state and horizon of interval(s) ``k`` (any shape broadcasting to neurons)."""
    neurons = jnp.arange(tables.u_free.shape[1])
    live, a, holder, u_free_a, current_a = _at_release(tables, release)
    _, s0, u0, current0, horizon = _start_state(
        k, holder, live, a, u_release, u_free_a, current_a, tables.t_start[k], tables.t_end[k],
        tables.u_free[k, neurons], tables.current_free[k, neurons], tables.p.tau_mem)
    return s0, u0, current0, horizon


def _next_spike(method, p: LIFParameters, any_crossing, s0, u0, current0, horizon):
    """The crossing from each interval start (where ``any_crossing``): spike time and next release."""
    s = next_crossing(u0, current0, p.v_th - p.v_leak, p.tau_mem, p.tau_syn, horizon, method)
    spiked = any_crossing & jnp.isfinite(s)
    t_spike = jnp.where(spiked, s0 + jnp.where(spiked, s, 0.0), jnp.inf)
    return t_spike, jnp.where(spiked, t_spike + p.t_ref, jnp.inf)


def _spike_in(method, tables: _Tables, k, any_crossing, release, u_release):
    """The crossing in interval ``k`` of each neuron: its spike time and next release."""
    return _next_spike(method, tables.p, any_crossing, *_interval_starts(tables, k, release, u_release))


def _replay(method, tables: _Tables, release0, u_release0, intervals, found):
    """Every round's spikes recomputed from their recorded intervals: ``(rounds, size)`` times.

    Differentiable (``O(size)`` work per round); only its derivative is ever used
    (``_slot_times``).
    """
    u_reset = tables.p.v_reset - tables.p.v_leak

    def step(carry, item):
        release, u_release = carry
        k, any_crossing = item
        t_spike, next_release = _spike_in(method, tables, k, any_crossing, release, u_release)
        return (next_release, u_reset), t_spike

    _, spike_times = jax.lax.scan(step, (release0, u_release0), (intervals, found))
    return spike_times


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _slot_times(method, rounds, tables, release0, u_release0, slot_round, slot_idx, slot_interval, slot_time):
    """The recorded spike times of the slots, with the derivative of the replay.

    The value is the search's (``slot_time``), so a forward pass never replays; the JVP replays
    the ``rounds`` rounds from the recorded intervals and differentiates that
    (implicit-function-theorem derivative per spike, chained through each release).
    """
    del method, rounds, tables, release0, u_release0, slot_round, slot_idx, slot_interval
    return slot_time


@_slot_times.defjvp
def _slot_times_jvp(method, rounds, primals, tangents):
    tables, release0, u_release0, slot_round, slot_idx, slot_interval, slot_time = primals
    tables_dot, release0_dot, u_release0_dot = tangents[:3]
    size = tables.u_free.shape[1]
    valid = jnp.isfinite(slot_time)
    row = jnp.where(valid, slot_round, rounds)  # padding rows are dropped
    column = jnp.clip(slot_idx, 0, size - 1)
    intervals = jnp.zeros((rounds, size), jnp.int32).at[row, column].set(slot_interval, mode="drop")
    found = jnp.zeros((rounds, size), bool).at[row, column].set(True, mode="drop")
    _, grid_dot = jax.jvp(
        lambda t, r, u: _replay(method, t, r, u, intervals, found),
        (tables, release0, u_release0), (tables_dot, release0_dot, u_release0_dot),
    )
    tangent = jnp.where(valid, grid_dot[jnp.clip(row, 0, rounds - 1), column], 0.0)
    return slot_time, tangent.astype(slot_time.dtype)


# Jitted so eager calls compile once per shape; inside a caller's jit it is simply inlined.
@functools.partial(jax.jit, static_argnames=("capacity", "rounds", "method", "block", "with_current_table"))
def simulate_multispike(
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    t_max: jax.Array,
    initial_state: Optional[LIFState],
    *,
    capacity: int,
    rounds: int,
    method: str,
    block: Optional[int] = None,
    with_current_table: bool = False,
):
    """Simulate a feed-forward LIF layer exactly, ``rounds`` spikes per neuron at most.

    Checks nothing; called by ``jaxsnn.event.simulate.simulate_planned`` with valid arguments of
    one dtype. Equal to ``simulate(..., algorithm="scan")`` up to rounding whenever no neuron
    spikes more than ``rounds`` times (otherwise ``overflow`` is set).

    Args:
        weight: ``(n_inputs, size)`` input weights.
        input_spikes: one sample's input ``Spikes``; inputs after ``t_max`` are ignored.
        neuron: ``LIFParameters`` (scalars or ``(size,)`` arrays).
        t_max: end of the window (scalar array).
        initial_state: state at ``t = 0`` or ``None`` (rest).
        capacity: output buffer size (static).
        rounds: most spikes per neuron found (static). The search stops when every neuron is
            done; the derivative replays all ``rounds`` ranks.
        method: next-spike kernel (``"lambertw"``, ``"quadratic"`` or ``"root"``).
        block: intervals per window of the search (static; default: all of them). Any value
            gives the same result; ``jaxsnn.event.plan.multispike_block`` is the fast choice.
        with_current_table: also return the free synaptic current just after every input event
            (static; for the EventProp closed form, which needs the current at every spike).

    Returns:
        ``jaxsnn.event.simulate.SimulationResult(spikes, final_state, overflow)``; with
        ``with_current_table`` the pair ``(result, table)``, ``table`` of shape ``(n_inputs + 1,
        size)``: row 0 the initial current, row ``k`` the current just after input ``k - 1`` of the
        buffer (an input that does not act, padding or after ``t_max``, adds nothing).
    """
    from jaxsnn.event.simulate import SimulationResult  # the result type lives with the public API

    dtype = weight.dtype
    size = weight.shape[1]
    p = per_neuron(neuron, size, dtype)
    theta = p.v_th - p.v_leak
    u_reset = p.v_reset - p.v_leak
    times, rows = acting_inputs(weight, input_spikes, t_max)
    state = rest_state(size, p, dtype) if initial_state is None else initial_state

    # The never-reset trajectory u_free (relative to v_leak) and I just after every input: one
    # cheap scan (an associative scan over the inputs was slower on CPU) with evolve's
    # arithmetic minus its refractory branch, which the free trajectory never takes. The decays
    # over every gap between inputs are computed before the scan, all at once, so a scan step
    # is two multiply-adds per neuron (it halved the scan on the Randman output layer, 522
    # inputs -> 10 neurons, where the per-step overhead dominates). With one pair of time
    # constants for the layer the decays are the same for every neuron: one per input.
    gap = jnp.diff(times, prepend=jnp.zeros((1,), dtype))
    if jnp.ndim(neuron.tau_mem) == 0 and jnp.ndim(neuron.tau_syn) == 0:
        tau_mem, tau_syn = (jnp.asarray(tau, dtype) for tau in (neuron.tau_mem, neuron.tau_syn))
    else:
        tau_mem, tau_syn = p.tau_mem, p.tau_syn
        gap = gap[:, None]
    decays = (jnp.exp(-gap / tau_mem), psp_kernel(gap, tau_mem, tau_syn), jnp.exp(-gap / tau_syn))

    def step(carry, item):
        u_free, current = carry
        decay_mem, kernel, decay_syn, row = item
        u_free, current = u_free * decay_mem + current * kernel, current * decay_syn + row
        return (u_free, current), (u_free, current)

    (u_last, current_last), (u_after, current_after) = jax.lax.scan(
        step, (state.v - p.v_leak, state.current), (*decays, rows))
    t_last = times[-1] if times.shape[0] else jnp.zeros((), dtype)
    last = LIFState(p.v_leak + u_last, current_last, jnp.full((size,), -jnp.inf, dtype))
    tables = _Tables(
        t_start=jnp.concatenate([jnp.zeros((1,), dtype), times]),
        t_end=jnp.concatenate([times, t_max[None]]),
        u_free=jnp.concatenate([(state.v - p.v_leak)[None], u_after]),
        current_free=jnp.concatenate([state.current[None], current_after]),
        p=p,
        t_max=t_max,
    )
    n_intervals = tables.t_start.shape[0]
    block = n_intervals if block is None else max(1, min(int(block), n_intervals))
    neurons = jnp.arange(size)
    final_free = evolve(last, t_last, t_max, p)

    initially_refractory = state.refractory_until > 0
    release0 = jnp.where(initially_refractory, state.refractory_until, 0.0)
    u_release0 = jnp.where(initially_refractory, u_reset, state.v - p.v_leak)

    # Search (no derivative). Every neuron walks forward from its release through windows of
    # ``block`` intervals: it evaluates the crossing test on the whole window at once and either
    # spikes in the earliest interval with a crossing (its next window starts there, from the
    # new release) or moves on to the next window. A neuron past ``t_max`` or the last interval
    # is done; the loop stops when every neuron is. A neuron that would spike more than
    # ``rounds`` times stops too and sets ``pending`` (overflow). The spikes found in an
    # iteration are appended to slots of the output buffer, so the buffer costs O(capacity).
    fixed = jax.lax.stop_gradient(tables)
    theta_fixed = jax.lax.stop_gradient(theta)
    p_fixed = fixed.p
    # Each iteration reads one window of ``block`` intervals, shared by the neurons of the sample:
    # it starts at the earliest interval any active neuron still has to examine, and each neuron
    # examines the intervals of it from its own position on. The window is then one contiguous
    # slice of every table (no per-neuron gather); neurons ahead of it wait, which costs few
    # iterations (the Randman hidden layer, block 17: 12 iterations instead of 11 with one window
    # per neuron). Against one window per neuron (gathered per element, or sliced per neuron
    # from neuron-major tables) the Randman layers' searches went from 5.25 to 4.24 ms (hidden)
    # and 1.98 to 1.61 ms (output), and 20 inputs x 100 spikes into 128 neurons from 86 to 45
    # ms (forward, batch 16), with bit-identical spikes. Intervals past the end are padding
    # (``t_start = inf``) and masked out.
    pad = block + 1
    starts_padded = jnp.concatenate([fixed.t_start, jnp.full((pad,), jnp.inf, dtype)])
    ends_padded = jnp.concatenate([fixed.t_end, jnp.full((pad,), jnp.inf, dtype)])
    window_tables = [fixed.u_free, fixed.current_free]
    if method == "quadratic":
        # exp(-(interval length) / tau_mem): the quadratic test's x at the end of an interval
        # entered at its start (all but the one holding the release); once per interval with
        # one tau_mem for the layer.
        length = (fixed.t_end - fixed.t_start)[:, None]
        tau_column = p_fixed.tau_mem[:1] if jnp.ndim(neuron.tau_mem) == 0 else p_fixed.tau_mem
        window_tables.append(jnp.exp(-length / tau_column[None, :]))
    tables_padded = [jnp.concatenate([table, jnp.zeros((pad, table.shape[1]), dtype)]) for table in window_tables]
    offsets = jnp.arange(block, dtype=jnp.int32)[:, None]

    def window_at(window_start, k0, a, live, holder, u_free_a, current_a, u_release):
        """The earliest interval with a crossing in each neuron's part of the window
        ``[max(k0, window_start), window_start + block)`` after its release ``a``.

        The interval holding ``a`` (``searchsorted`` in ``t_start``, side right) is found in the
        window itself: inside it the state at ``a`` comes from the tables as in ``_at_release``;
        a holder before the window was found in an earlier iteration of the same release (its
        state is carried); a window that ends before ``a`` holds no interval after it.
        """
        starts = jax.lax.dynamic_slice_in_dim(starts_padded, window_start, block + 1)
        ends = jax.lax.dynamic_slice_in_dim(ends_padded, window_start, block)
        u_free_w, current_w, *decay_w = (jax.lax.dynamic_slice_in_dim(table, window_start, block)
                                         for table in tables_padded)
        count = jnp.sum((starts[:, None] <= a[None, :]).astype(jnp.int32), axis=0)
        here = (count >= 1) & (count <= block)
        at_holder = jnp.clip(count - 1, 0, block - 1)
        gap = a - starts[at_holder]
        u_free_h = jnp.take_along_axis(u_free_w, at_holder[None, :], axis=0)[0]
        current_h = jnp.take_along_axis(current_w, at_holder[None, :], axis=0)[0]
        u_free_a = jnp.where(here, free_membrane(gap, u_free_h, current_h, p_fixed.tau_mem, p_fixed.tau_syn), u_free_a)
        current_a = jnp.where(here, current_h * jnp.exp(-gap / p_fixed.tau_syn), current_a)
        beyond = n_intervals + block  # a release after the window: no interval of it counts
        holder = jnp.where(here, window_start + count - 1, jnp.where(count == 0, holder, beyond)).astype(jnp.int32)

        def starts_of(k, starts_k, ends_k, u_free_k, current_k, examined):
            """``_start_state`` of intervals ``k`` (the window, or one interval per neuron)."""
            return _start_state(k, holder, live & examined, a, u_release, u_free_a, current_a, starts_k, ends_k,
                                u_free_k, current_k, p_fixed.tau_mem)

        k = window_start + offsets  # (block, 1)
        # A neuron examines the window from its own position on, and no interval past the end.
        examined = (k >= k0[None, :]) & (k < n_intervals)
        own, _, u0, current0, horizon = starts_of(k, starts[:block, None], ends[:, None], u_free_w, current_w, examined)
        if decay_w:
            end_own = jnp.exp(-jnp.maximum(ends[at_holder] - a, 0.0) / p_fixed.tau_mem)
            x_end = jnp.where(own, end_own[None, :], decay_w[0])
        else:
            x_end = None
        exists = _crossing_exists(method, u0, current0, theta_fixed, p_fixed.tau_mem, p_fixed.tau_syn, horizon, x_end)
        # One reduction over the window (argmax); whether it found anything is read back at that
        # place, and the chosen interval's start state is recomputed for it alone, so the window
        # is evaluated once and never stored.
        first = jnp.argmax(exists, axis=0)
        found = jnp.take_along_axis(exists, first[None, :], axis=0)[0]
        k_first = window_start + first.astype(jnp.int32)
        _, s0, u0, current0, horizon = starts_of(
            k_first, starts[first], ends[first], jnp.take_along_axis(u_free_w, first[None, :], axis=0)[0],
            jnp.take_along_axis(current_w, first[None, :], axis=0)[0], k_first < n_intervals)
        return found, k_first, (s0, u0, current0, horizon), holder, u_free_a, current_a

    def search_cond(carry):
        return jnp.any((carry.release <= t_max) & (carry.k0 < n_intervals))

    def search_body(carry, merge):
        (spikes_of, release, k0, u_release, count, slot_time, slot_idx, slot_round, slot_interval, pending,
         holder, u_free_a, current_a) = carry
        active = (release <= t_max) & (k0 < n_intervals)
        live = release <= t_max
        a = jnp.where(live, release, 0.0)
        window_start = jnp.minimum(jnp.min(jnp.where(active, k0, n_intervals)), n_intervals)
        any_crossing, k, (s0, u0, current0, horizon), holder, u_free_a, current_a = window_at(
            window_start, k0, a, live, holder, u_free_a, current_a, u_release)
        any_crossing = any_crossing & active
        t_spike, next_release = _next_spike(method, p_fixed, any_crossing, s0, u0, current0, horizon)
        spiked = jnp.isfinite(t_spike)
        recorded = spiked & (spikes_of < rounds)
        beyond = spiked & ~recorded  # one spike more than ``rounds``: overflow
        new = (jnp.where(recorded, t_spike, jnp.inf), neurons.astype(jnp.int32), spikes_of, k.astype(jnp.int32))
        if merge:
            # Keep the ``capacity`` earliest spikes (time, then index), as the scan's full buffer.
            merged = [jnp.concatenate([old, fresh]) for old, fresh in
                      zip((slot_time, slot_idx, slot_round, slot_interval), new)]
            keep = jnp.lexsort((merged[1], merged[0]))[:capacity]
            slot_time, slot_idx, slot_round, slot_interval = (field[keep] for field in merged)
            slot_idx = jnp.where(jnp.isfinite(slot_time), slot_idx, size)
        else:
            position = count + jnp.cumsum(recorded, dtype=jnp.int32) - 1
            target = jnp.where(recorded, position, capacity)  # out of range: dropped
            slot_time, slot_idx, slot_round, slot_interval = (
                slot.at[target].set(value, mode="drop")
                for slot, value in zip((slot_time, slot_idx, slot_round, slot_interval), new))
        count = count + jnp.sum(recorded, dtype=jnp.int32)
        pending = pending | jnp.any(beyond)
        release = jnp.where(recorded, next_release, jnp.where(beyond, jnp.inf, release))
        u_release = jnp.where(recorded, u_reset, u_release)
        # After a spike the next window starts at its interval. Where the window test saw a
        # crossing that the kernel, solving it, places just past the interval end (rounding at
        # an input time), the search moves on to the next interval, which starts at or above
        # threshold if the crossing is real: so the loop always advances.
        k0 = jnp.where(spiked, k, jnp.where(any_crossing, k + 1, jnp.maximum(k0, window_start + block)))
        return _Search(spikes_of + recorded.astype(jnp.int32), release, k0, u_release, count, slot_time, slot_idx,
                       slot_round, slot_interval, pending, holder, u_free_a, current_a)

    search_start = jax.lax.stop_gradient(_Search(
        jnp.zeros((size,), jnp.int32), release0, jnp.zeros((size,), jnp.int32), u_release0,
        jnp.zeros((), jnp.int32),
        jnp.full((capacity,), jnp.inf, dtype), jnp.full((capacity,), size, jnp.int32),
        jnp.zeros((capacity,), jnp.int32), jnp.zeros((capacity,), jnp.int32), jnp.zeros((), bool),
        jnp.zeros((size,), jnp.int32), jnp.zeros((size,), dtype), jnp.zeros((size,), dtype),
    ))
    # Appending keeps the first ``capacity`` spikes found; they are the earliest in time only if
    # no spike was dropped. A sample whose buffer overflowed searches again, keeping the earliest
    # spikes at every merge: that loop runs no iteration at all (also under vmap) unless some
    # sample overflowed.
    # Every iteration moves the shared window on by at least one interval, or records a spike of
    # a neuron at its start (at most ``rounds`` per neuron), or ends the search: so the loop ends
    # within this many iterations. The bound only guards against a defect (a loop that stopped
    # advancing would otherwise never return); a search cut short by it sets ``overflow``.
    max_iterations = n_intervals + size * rounds + 1

    def bounded_search(keep_going, merge):
        def cond(state):
            iteration, carry = state
            return (iteration < max_iterations) & keep_going(carry)

        def body(state):
            iteration, carry = state
            return iteration + 1, search_body(carry, merge)

        _, carry = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), search_start))
        return carry._replace(pending=carry.pending | keep_going(carry))

    searched = bounded_search(search_cond, merge=False)
    dropped = searched.count > capacity
    again = bounded_search(lambda carry: dropped & search_cond(carry), merge=True)
    searched = jax.tree_util.tree_map(lambda a, b: jnp.where(dropped, b, a), searched, again)
    count, slot_time, slot_idx, slot_round, slot_interval, pending = (
        searched.count, searched.slot_time, searched.slot_idx, searched.slot_round, searched.slot_interval,
        searched.pending)
    # The spike times carry the replay's derivative (see ``_slot_times``).
    slot_time = _slot_times(method, rounds, tables, release0, u_release0, slot_round, slot_idx,
                            slot_interval, slot_time)

    # The buffer: time order, index order on ties (as the scan); padding (inf, size) sorts last.
    order = spikes_lib.time_order(slot_time, slot_idx, size + 1)
    out_time = slot_time[order]
    valid = jnp.isfinite(out_time)
    out_idx = jnp.where(valid, slot_idx[order], spikes_lib.PAD_IDX)
    overflow = (count > capacity) | pending

    # Final state at t_max: the membrane restarted at the last release (clamped if it is later).
    # A neuron whose later spikes were dropped (overflow) has no exact final state anyway.
    target = jnp.where(jnp.isfinite(slot_time), slot_idx, size)
    last_spike = jnp.full((size + 1,), -jnp.inf, dtype).at[target].max(slot_time)[:size]
    spiked = jnp.isfinite(last_spike)
    last_spike = jnp.where(spiked, last_spike, 0.0)
    final_release = jnp.where(spiked, last_spike + p.t_ref, release0)
    final_u_release = jnp.where(spiked, u_reset, u_release0)
    live, a, _, u_free_a, _ = _at_release(tables, final_release)
    lag = jnp.where(live, t_max - a, 0.0)
    u_end = final_free.v - p.v_leak + (final_u_release - u_free_a) * jnp.exp(-lag / p.tau_mem)
    clamped = final_release >= t_max
    refractory_end = jnp.where(p.t_ref > 0, last_spike + p.t_ref, -jnp.inf)
    final = LIFState(
        v=jnp.where(clamped, p.v_reset, p.v_leak + u_end),
        current=final_free.current,
        refractory_until=jnp.where(spiked, refractory_end, state.refractory_until) - t_max,
    )
    result = SimulationResult(spikes=Spikes(out_time, out_idx), final_state=final, overflow=overflow)
    if with_current_table:
        return result, tables.current_free
    return result
