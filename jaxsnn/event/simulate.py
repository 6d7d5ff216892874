"""Exact event-driven simulation of one layer of current-based LIF neurons.

``simulate`` is a ``lax.scan`` over ``n_input_slots + capacity`` steps. Each step

1. computes, for every neuron, its next threshold crossing from the current state in closed
   form or by the bracketed root solver (``jaxsnn.event.kernels``): O(neurons) work;
2. takes the earliest event: the earliest crossing if it is not later than the next input spike
   (crossings win ties, as in the model definition), otherwise the next input spike;
3. advances all neurons to that time in closed form and applies the event: an input spike adds
   ``weight[j]`` to the current; a crossing resets every neuron that crosses at that instant
   (all of them are emitted in the same step, in ascending index order) and, for recurrent
   layers, adds their rows of ``recurrent_weight`` to the current.

Every step consumes one input slot or emits at least one spike, so the scan length bounds the
work and the result is exact as long as no more than ``capacity`` spikes occur; otherwise the
``overflow`` flag is set (checked once more after the scan, so even a spike that would follow a
full buffer is detected). Gradients with ``jax.grad`` flow through the kernels (implicit function
theorem) into the spike times: the "analytic" gradient path.

``algorithm="parallel"`` (chosen by ``"auto"`` when it applies) is a second, exact algorithm for
feed-forward layers whose neurons spike at most once in the window (``t_ref >= t_max``, as in
time-to-first-spike networks). The synaptic current does not depend on the neuron's own spikes,
and before its first spike a neuron evolves freely, so the state of every neuron just after
every input spike follows from one short scan over the inputs (O(inputs x neurons) work). The
threshold crossing inside each inter-input interval is then computed for all intervals and
neurons at once, and a neuron's spike is its earliest crossing. The sequential part shrinks
from ``inputs + capacity`` steps over all neurons to ``inputs`` cheap steps, and the kernel
work is one vectorised call.

``algorithm="multispike"`` (``jaxsnn.event.multispike``) extends this to feed-forward layers
whose neurons spike several times: every neuron searches windows of consecutive intervals from
its last release, all neurons and the intervals of a window at once, with the closed-form
membrane after the reset (``u(t) = u_free(t) + (u_a - u_free(a)) exp(-(t - a)/tau_mem)`` after
a release at ``a``); its next spike is its earliest crossing. ``"auto"`` chooses between it and
the scan per call by the rule of ``jaxsnn.event.plan.choose_feedforward``.

``simulate`` is the public boundary: it validates its arguments (``validate_inputs``),
resolves the static choices (``jaxsnn.event.plan.resolve_plan``) and calls
``simulate_planned``, which checks nothing; layers and the emulator call ``simulate_planned``
with the plan they resolved at construction.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxsnn import spikes as spikes_lib
from jaxsnn._validate import check_finite, check_positive, is_concrete, positive_int
from jaxsnn.event.dynamics import acting_inputs, evolve, rest_state
from jaxsnn.event.kernels import next_crossing
from jaxsnn.event.neuron import LIFParameters, LIFState, check_parameter_shapes, validate_parameters
from jaxsnn.event.multispike import simulate_multispike
from jaxsnn.event.plan import (
    ALGORITHMS,
    Plan,
    choose_feedforward,
    multispike_block,
    multispike_rounds,
    resolve_algorithm,
    resolve_plan,
)
from jaxsnn.spikes import Spikes

__all__ = [
    "ALGORITHMS",
    "SimulationResult",
    "checked_inputs",
    "required_capacity",
    "resolve_algorithm",
    "simulate",
    "simulate_planned",
    "validate_inputs",
]


class SimulationResult(NamedTuple):
    """Result of ``simulate``.

    Attributes:
        spikes: output spikes (``capacity`` slots, local indices, sorted by time then index).
        final_state: state at ``t_max``; its ``refractory_until`` is relative to ``t_max``, so it
            can be passed as ``initial_state`` of the next window (streaming).
        overflow: bool scalar, True if more output spikes would have occurred than ``capacity``.
    """

    spikes: Spikes
    final_state: LIFState
    overflow: jax.Array


def validate_inputs(
    weight: Any,
    input_spikes: Any,
    neuron: LIFParameters,
    *,
    capacity: Any,
    t_max: Any,
    recurrent_weight: Any = None,
    initial_state: Optional[LIFState] = None,
) -> None:
    """Eager checks of every ``simulate`` argument (value checks skip traced values).

    Args:
        weight, input_spikes, neuron, capacity, t_max, recurrent_weight, initial_state: as
            for ``simulate``.

    Raises:
        TypeError: wrong types or dtypes (``capacity`` not an int, integer weights, spikes
            that are not ``Spikes``, an ``initial_state`` that is not a ``LIFState``).
        ValueError: bad shapes or values, naming the argument (unsorted, negative or non-finite
            input times, input indices outside ``[0, weight.shape[0])``, ``capacity < 1``,
            ``t_max`` not finite and > 0, invalid neuron parameters or parameter shapes,
            non-finite weights or initial state, an initial membrane at or above ``v_th``).
    """
    # Concrete values are checked now even inside a caller's jit (e.g. closed-over inputs).
    with jax.ensure_compile_time_eval():
        positive_int("capacity", capacity)
        check_positive("t_max", t_max)
        validate_parameters(neuron)
        size = validate_arrays(
            weight, input_spikes, recurrent_weight=recurrent_weight, initial_state=initial_state,
            v_th=neuron.v_th,
        )
        check_parameter_shapes(neuron, size)


def validate_arrays(
    weight: Any,
    input_spikes: Any,
    *,
    recurrent_weight: Any = None,
    initial_state: Optional[LIFState] = None,
    v_th: Any = None,
    spikes_name: str = "input_spikes",
) -> int:
    """The per-call part of ``validate_inputs``: weights, input spikes and initial state.

    Layers check their settings (neuron parameters, capacity, window) once at construction and
    only this part when applied.

    Args:
        weight, input_spikes, recurrent_weight, initial_state: as for ``simulate``.
        v_th: threshold(s) the initial membrane must stay below (``None``: not checked).
        spikes_name: name of the input spikes in messages.

    Returns:
        The layer size ``weight.shape[1]``.

    Raises:
        TypeError, ValueError: as ``validate_inputs``.
    """
    with jax.ensure_compile_time_eval():
        if jnp.ndim(weight) != 2:
            raise ValueError(f"weight must be 2-dimensional (n_inputs, size), got shape {jnp.shape(weight)}")
        if not jnp.issubdtype(jnp.result_type(weight), jnp.floating):
            raise TypeError(f"weight must have a floating-point dtype, got {jnp.result_type(weight)}")
        n_inputs, size = jnp.shape(weight)
        check_finite("weight", weight)
        spikes_lib.validate(input_spikes, n_neurons=n_inputs, name=spikes_name)
        if jnp.ndim(input_spikes.time) != 1:
            raise ValueError(
                f"{spikes_name} must hold one sample (shape (capacity,)), got shape "
                f"{jnp.shape(input_spikes.time)}; use jax.vmap for batches"
            )
        if recurrent_weight is not None:
            if jnp.shape(recurrent_weight) != (size, size):
                raise ValueError(
                    f"recurrent_weight must have shape ({size}, {size}), got {jnp.shape(recurrent_weight)}"
                )
            check_finite("recurrent_weight", recurrent_weight)
        if initial_state is not None:
            if not isinstance(initial_state, LIFState):
                raise TypeError(
                    f"initial_state must be a jaxsnn.event.LIFState, got {type(initial_state).__name__}"
                )
            for name, value in zip(LIFState._fields, initial_state):
                if jnp.shape(value) != (size,):
                    raise ValueError(f"initial_state.{name} must have shape ({size},), got {jnp.shape(value)}")
            check_finite("initial_state.v", initial_state.v)
            check_finite("initial_state.current", initial_state.current)
            if v_th is not None and is_concrete((initial_state.v, v_th)) and np.any(
                np.asarray(initial_state.v) >= np.asarray(v_th)
            ):
                raise ValueError("initial_state.v must be below v_th for every neuron")
    return int(size)


def checked_inputs(
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    *,
    t_max: Any,
    recurrent_weight: Optional[jax.Array] = None,
) -> None:
    """The value checks of ``validate_inputs`` as ``checkify`` checks, for use under ``jax.jit``.

    Call inside a function transformed by ``jax.experimental.checkify.checkify`` and
    ``err.throw()`` its error to raise.

    Args:
        weight, input_spikes, neuron, t_max, recurrent_weight: as for ``simulate`` (may be traced).
    """
    spikes_lib.checked_validate(input_spikes, n_neurons=jnp.shape(weight)[0], name="input_spikes")
    checkify.check(jnp.all(jnp.isfinite(weight)), "weight contains NaN/inf values")
    if recurrent_weight is not None:
        checkify.check(jnp.all(jnp.isfinite(recurrent_weight)), "recurrent_weight contains NaN/inf values")
    checkify.check(jnp.all(jnp.isfinite(t_max) & (t_max > 0)), "t_max must be finite and > 0")
    checkify.check(jnp.all(neuron.tau_syn > 0), "tau_syn must be > 0")
    checkify.check(jnp.all(neuron.tau_mem > 0), "tau_mem must be > 0")
    checkify.check(jnp.all(neuron.t_ref >= 0), "t_ref must be >= 0")
    checkify.check(jnp.all(neuron.v_th > neuron.v_reset), "v_th must be > v_reset")
    checkify.check(jnp.all(neuron.v_th > neuron.v_leak), "v_th must be > v_leak")


def _next_crossings(state: LIFState, t: jax.Array, t_max: jax.Array, neuron: LIFParameters, method: str) -> jax.Array:
    """Absolute time of each neuron's next threshold crossing in ``[t, t_max]`` (``inf`` if none)."""
    clamped = state.refractory_until > t
    start = jnp.where(clamped, state.refractory_until, t)
    current_start = state.current * jnp.exp(-(start - t) / neuron.tau_syn)
    v_start = jnp.where(clamped, jnp.asarray(neuron.v_reset, state.v.dtype), state.v)
    s = next_crossing(
        v_start - neuron.v_leak,
        current_start,
        neuron.v_th - neuron.v_leak,
        neuron.tau_mem,
        neuron.tau_syn,
        t_max - start,
        method,
    )
    return start + s


def simulate(
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    *,
    capacity: int,
    t_max: float,
    kernel: str = "auto",
    recurrent_weight: Optional[jax.Array] = None,
    initial_state: Optional[LIFState] = None,
    algorithm: str = "auto",
) -> SimulationResult:
    """Simulate one layer of LIF neurons exactly, event by event, over ``[0, t_max]``.

    Dynamics (see ``jaxsnn.event.neuron``): ``tau_mem dv/dt = -(v - v_leak) + I``,
    ``tau_syn dI/dt = -I``; input spike ``(t, j)``: ``I += weight[j]``; crossing of ``v_th``:
    spike, ``v = v_reset`` (held for ``t_ref``), ``I += recurrent_weight[i]``.

    Pure, jittable and vmappable (batch over samples with ``jax.vmap``); ``jax.grad`` gives
    exact derivatives of spike times w.r.t. weights, input times and neuron parameters (away
    from spike creation and deletion, where spike times are discontinuous).

    Args:
        weight: ``(n_inputs, size)`` input weights.
        input_spikes: one sample's input ``Spikes`` (indices in ``[0, n_inputs)``). Inputs after
            ``t_max`` are ignored.
        neuron: ``LIFParameters`` (scalars or ``(size,)`` arrays).
        capacity: maximum number of output spikes (static).
        t_max: end of the window; crossings after ``t_max`` are not emitted.
        kernel: ``"auto"``, ``"lambertw"`` (``tau_mem == tau_syn``), ``"quadratic"``
            (``tau_mem == 2 tau_syn``) or ``"root"`` (any ratio).
        recurrent_weight: optional ``(size, size)`` weights from output spikes to the layer.
        initial_state: state at ``t = 0`` (default: rest), e.g. a previous ``final_state``.
        algorithm: ``"auto"`` (default), ``"scan"`` (event by event, any layer),
            ``"parallel"`` (all inter-input intervals at once; needs ``t_ref >= t_max`` and no
            recurrence) or ``"multispike"`` (each neuron searches windows of intervals from its
            last release; no recurrence). All are exact and agree to rounding; ``"auto"``
            picks ``"parallel"`` where it applies, the scan for recurrent layers and otherwise
            ``"multispike"`` or the scan by ``jaxsnn.event.plan.choose_feedforward``; see the
            module docstring.

    Returns:
        ``SimulationResult(spikes, final_state, overflow)``.

    Raises:
        TypeError, ValueError: on invalid arguments (see ``validate_inputs``), kernel or
            algorithm choice.
    """
    validate_inputs(
        weight,
        input_spikes,
        neuron,
        capacity=capacity,
        t_max=t_max,
        recurrent_weight=recurrent_weight,
        initial_state=initial_state,
    )
    plan = resolve_plan(
        neuron, t_max, kernel=kernel, algorithm=algorithm, recurrent=recurrent_weight is not None
    )
    return simulate_planned(
        plan, weight, input_spikes, neuron, capacity=capacity, t_max=t_max,
        recurrent_weight=recurrent_weight, initial_state=initial_state,
    )


def _one_dtype(weight, input_spikes, neuron, t_max, recurrent_weight, initial_state):
    """The arguments in one float dtype (that of the weights and input times together)."""
    weight = jnp.asarray(weight)
    dtype = jnp.result_type(weight, input_spikes.time)
    neuron = LIFParameters(*[jnp.asarray(value, dtype) for value in neuron])
    if recurrent_weight is not None:
        recurrent_weight = jnp.asarray(recurrent_weight, dtype)
    if initial_state is not None:
        initial_state = LIFState(*[jnp.asarray(value, dtype) for value in initial_state])
    weight = weight.astype(dtype)
    input_spikes = Spikes(input_spikes.time.astype(dtype), input_spikes.idx)
    return weight, input_spikes, neuron, jnp.asarray(t_max, dtype), recurrent_weight, initial_state


def parallel_with_spike_currents(
    plan: Plan,
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    *,
    capacity: int,
    t_max: Any,
    initial_state: Optional[LIFState] = None,
) -> Tuple[SimulationResult, jax.Array]:
    """``simulate_planned`` for ``plan.algorithm == "parallel"``, with each neuron's current just before its spike.

    The EventProp closed form needs ``I_n(t_n-)`` (``parallel_eventprop_gradients``'s
    ``current_before_spike``); the forward pass has it from the interval that holds the spike,
    which saves the backward pass a sum over (input events x neurons).

    Args:
        plan: a resolved plan whose algorithm is ``"parallel"``.
        weight, input_spikes, neuron, capacity, t_max, initial_state: as for ``simulate`` (valid).

    Returns:
        ``(SimulationResult, current)``: ``current`` is ``(size,)``, 0 for silent neurons.
    """
    if plan.algorithm != "parallel":
        raise ValueError(f"parallel_with_spike_currents needs plan.algorithm == 'parallel', got {plan.algorithm!r}")
    weight, input_spikes, neuron, t_max, _, initial_state = _one_dtype(
        weight, input_spikes, neuron, t_max, None, initial_state)
    return _simulate_parallel(weight, input_spikes, neuron, t_max, initial_state, capacity=int(capacity),
                              method=plan.kernel, with_current=True)


def simulate_planned(
    plan: Plan,
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    *,
    capacity: int,
    t_max: Any,
    recurrent_weight: Optional[jax.Array] = None,
    initial_state: Optional[LIFState] = None,
) -> SimulationResult:
    """``simulate`` with its static choices resolved (``jaxsnn.event.plan``) and inputs checked.

    The layers and the emulator resolve their ``Plan`` once at construction and validate their
    inputs at their own boundary, then call this; it checks nothing.

    Args:
        plan: the resolved kernel and algorithm.
        weight, input_spikes, neuron, capacity, t_max, recurrent_weight, initial_state: as for
            ``simulate`` (valid).

    Returns:
        ``SimulationResult(spikes, final_state, overflow)``.
    """
    weight, input_spikes, neuron, t_max, recurrent_weight, initial_state = _one_dtype(
        weight, input_spikes, neuron, t_max, recurrent_weight, initial_state)
    static = dict(capacity=int(capacity), method=plan.kernel)
    algorithm = shaped_algorithm(plan, input_spikes.time.shape[0], capacity, weight.shape[1],
                                 recurrent_weight is not None)
    if algorithm == "multispike":
        return _simulate_multispike_planned(plan, weight, input_spikes, neuron, t_max, initial_state,
                                            capacity=int(capacity))
    if algorithm == "parallel":
        return _simulate_parallel(weight, input_spikes, neuron, t_max, initial_state, **static)
    return _simulate_scan(weight, input_spikes, neuron, t_max, recurrent_weight, initial_state, **static)


def shaped_algorithm(plan: Plan, n_inputs: int, capacity: int, size: int, recurrent: bool) -> str:
    """The forward algorithm ``simulate_planned`` runs for these buffer shapes.

    ``plan.algorithm`` itself, except ``"feedforward"``, which is resolved here, where the shapes
    are known (``jaxsnn.event.plan.choose_feedforward``; a recurrent layer takes the scan).
    """
    if plan.algorithm != "feedforward":
        return plan.algorithm
    if recurrent:
        return "scan"
    return choose_feedforward(plan.spike_bound, n_inputs, capacity, size, plan.kernel)


def multispike_with_current_table(
    plan: Plan,
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    *,
    capacity: int,
    t_max: Any,
    initial_state: Optional[LIFState] = None,
) -> Tuple[SimulationResult, jax.Array]:
    """``simulate_planned`` for a feed-forward layer whose algorithm is ``"multispike"``, with the
    free synaptic current after every input.

    The EventProp closed form (``multispike_eventprop_gradients``'s ``current_table``) needs the
    current at every spike and release; the multi-spike search has tabulated it, which saves the
    backward pass a sum over (input events x neurons).

    Args:
        plan: a resolved plan whose algorithm is, for these shapes, ``"multispike"``.
        weight, input_spikes, neuron, capacity, t_max, initial_state: as for ``simulate`` (valid).

    Returns:
        ``(SimulationResult, table)``: ``table`` is ``(n_inputs + 1, size)``, row 0 the initial
        current and row ``k`` the current just after input ``k - 1``.
    """
    algorithm = shaped_algorithm(plan, input_spikes.time.shape[0], capacity, weight.shape[1], False)
    if algorithm != "multispike":
        raise ValueError(f"multispike_with_current_table needs the 'multispike' algorithm, got {algorithm!r}")
    weight, input_spikes, neuron, t_max, _, initial_state = _one_dtype(
        weight, input_spikes, neuron, t_max, None, initial_state)
    return _simulate_multispike_planned(plan, weight, input_spikes, neuron, t_max, initial_state,
                                        capacity=int(capacity), with_current_table=True)


def _simulate_multispike_planned(plan, weight, input_spikes, neuron, t_max, initial_state, *, capacity,
                                 with_current_table=False):
    """``simulate_multispike`` with the plan's kernel and the rounds and block for these shapes."""
    rounds = multispike_rounds(plan.spike_bound, capacity)
    block = multispike_block(input_spikes.time.shape[0], capacity, weight.shape[1])
    return simulate_multispike(weight, input_spikes, neuron, t_max, initial_state, capacity=capacity,
                               method=plan.kernel, rounds=rounds, block=block, with_current_table=with_current_table)


# Jitted so eager calls compile once per shape; inside a caller's jit it is simply inlined.
@functools.partial(jax.jit, static_argnames=("capacity", "method"))
def _simulate_scan(
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    t_max: jax.Array,
    recurrent_weight: Optional[jax.Array],
    initial_state: Optional[LIFState],
    *,
    capacity: int,
    method: str,
) -> SimulationResult:
    dtype = weight.dtype
    size = weight.shape[1]
    in_time = input_spikes.time
    in_idx = input_spikes.idx
    n_slots = in_time.shape[0]
    # Inputs after the window never act; padding (idx -1) is ignored.
    in_time = jnp.where((in_idx >= 0) & (in_time <= t_max), in_time, jnp.inf)
    if initial_state is None:
        state = rest_state(size, neuron, dtype)
    else:
        state = initial_state

    def step(carry, _):
        t, state, pointer, out_time, out_idx, n_out, pending, pending_time = carry
        slot = jnp.minimum(pointer, n_slots - 1)
        t_in = jnp.where(pointer < n_slots, in_time[slot], jnp.inf)
        t_cross = _next_crossings(state, t, t_max, neuron, method)
        # A neuron that fired together with the one emitted by the previous step is still at
        # threshold at this same instant and keeps its own crossing time.
        t_cross = jnp.where(pending, pending_time, t_cross)
        t_out = jnp.min(t_cross)
        is_spike = jnp.isfinite(t_out) & (t_out <= t_in)
        is_input = ~is_spike & jnp.isfinite(t_in)
        t_next = jnp.where(is_spike, t_out, jnp.where(is_input, t_in, t))
        state = evolve(state, t, t_next, neuron)
        # Neurons that cross at this instant, or whose potential reached threshold here through
        # rounding, spike together (refractory neurons cannot).
        free = state.refractory_until < t_next
        fired = is_spike & ((t_cross == t_out) | (free & (state.v >= neuron.v_th)))
        # Each neuron's spike time is its own crossing (equal in value to t_next): the minimum
        # would hand every neuron crossing at this instant the average of their derivatives.
        t_spike = jnp.where(t_cross == t_out, t_cross, t_next)
        # One spike per step: the lowest-index neuron that fired is emitted (reset, refractory,
        # recurrent input, one output slot written in O(1)); the others stay pending and are
        # emitted by the next steps at the same time. Writing every neuron's slot each step (a
        # scatter over the layer) cost two thirds of the step at 500 neurons. A spike takes one
        # step either way, so ``n_slots + capacity`` steps still suffice.
        first = jnp.argmax(fired)
        emit = fired & (jnp.arange(size) == first)
        pending = fired & ~emit
        pending_time = jnp.where(pending, t_spike, jnp.inf)
        refractory_end = jnp.where(neuron.t_ref > 0, t_spike + neuron.t_ref, -jnp.inf)
        v = jnp.where(emit, neuron.v_reset, state.v)
        refractory_until = jnp.where(emit, refractory_end, state.refractory_until)
        current = state.current
        if recurrent_weight is not None:
            current = current + emit.astype(dtype) @ recurrent_weight
        row = weight[jnp.clip(in_idx[slot], 0, weight.shape[0] - 1)]
        current = current + jnp.where(is_input, row, jnp.zeros_like(row))
        position = jnp.minimum(n_out, capacity - 1)
        write = is_spike & (n_out < capacity)
        out_time = jax.lax.dynamic_update_slice(
            out_time, jnp.where(write, t_spike[first], out_time[position])[None], (position,)
        )
        out_idx = jax.lax.dynamic_update_slice(
            out_idx, jnp.where(write, first.astype(jnp.int32), out_idx[position])[None], (position,)
        )
        n_out = n_out + is_spike.astype(jnp.int32)
        new_state = LIFState(v=v, current=current, refractory_until=refractory_until)
        carry = (t_next, new_state, pointer + is_input.astype(jnp.int32), out_time, out_idx, n_out, pending, pending_time)
        return carry, None

    initial = (
        jnp.zeros((), dtype),
        state,
        jnp.zeros((), jnp.int32),
        jnp.full((capacity,), jnp.inf, dtype),
        jnp.full((capacity,), spikes_lib.PAD_IDX, jnp.int32),
        jnp.zeros((), jnp.int32),
        jnp.zeros((size,), bool),
        jnp.full((size,), jnp.inf, dtype),
    )
    (t, state, pointer, out_time, out_idx, n_out, pending, _), _ = jax.lax.scan(
        step, initial, None, length=n_slots + capacity
    )
    # Anything left after the last step (a further crossing, a spike not yet emitted, or an
    # unread input, which can only remain if the steps were spent on spikes) means the buffer
    # was too small.
    pending_crossing = jnp.any(jnp.isfinite(_next_crossings(state, t, t_max, neuron, method))) | jnp.any(pending)
    pending_input = (pointer < n_slots) & jnp.isfinite(in_time[jnp.minimum(pointer, n_slots - 1)])
    overflow = (n_out > capacity) | pending_crossing | pending_input
    final = evolve(state, t, t_max, neuron)
    final = final._replace(refractory_until=final.refractory_until - t_max)
    # Emission order is time order; ties across steps (rounding) are put in index order.
    by_time = spikes_lib.time_order(out_time, jnp.where(out_idx >= 0, out_idx, size), size + 1)
    out = Spikes(out_time[by_time], out_idx[by_time])
    return SimulationResult(spikes=out, final_state=final, overflow=overflow)


@functools.partial(jax.jit, static_argnames=("capacity", "method", "with_current"))
def _simulate_parallel(
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    t_max: jax.Array,
    initial_state: Optional[LIFState],
    *,
    capacity: int,
    method: str,
    with_current: bool = False,
):
    dtype = weight.dtype
    size = weight.shape[1]
    times, rows = acting_inputs(weight, input_spikes, t_max)
    state = rest_state(size, neuron, dtype) if initial_state is None else initial_state

    def step(carry, item):
        state, t = carry
        t_input, row = item
        state = evolve(state, t, t_input, neuron)
        state = state._replace(current=state.current + row)
        return (state, t_input), state

    (last, t_last), after_inputs = jax.lax.scan(step, (state, jnp.zeros((), dtype)), (times, rows))
    # Interval k runs from input k-1 (or 0) to input k (or t_max), starting from the state just
    # after input k-1; a crossing exactly at an input time wins the tie, as in the scan.
    starts = jax.tree_util.tree_map(lambda first, rest: jnp.concatenate([first[None], rest]), state, after_inputs)
    t_start = jnp.concatenate([jnp.zeros((1,), dtype), times])[:, None]
    t_end = jnp.concatenate([times, t_max[None]])[:, None]
    crossings = _next_crossings(starts, t_start, t_end, neuron, method)
    first = jnp.min(crossings, axis=0)
    spiked = jnp.isfinite(first)
    order = spikes_lib.time_order(first)  # time order, index order on ties
    if capacity > size:
        order = jnp.concatenate([order, jnp.zeros((capacity - size,), order.dtype)])
        slot_valid = jnp.arange(capacity) < size
    else:
        slot_valid = jnp.ones((capacity,), bool)
    order = order[:capacity]
    out_time = jnp.where(slot_valid, first[order], jnp.inf)
    out_idx = jnp.where(slot_valid & jnp.isfinite(out_time), order.astype(jnp.int32), spikes_lib.PAD_IDX)
    overflow = jnp.sum(spiked) > capacity
    final = evolve(last, t_last, t_max, neuron)
    # t_ref >= t_max: a neuron that spiked is still clamped at v_reset at the window end.
    refractory_until = jnp.where(spiked, first + neuron.t_ref, final.refractory_until)
    final = LIFState(
        v=jnp.where(spiked, jnp.asarray(neuron.v_reset, dtype), final.v),
        current=final.current,
        refractory_until=refractory_until - t_max,
    )
    result = SimulationResult(spikes=Spikes(out_time, out_idx), final_state=final, overflow=overflow)
    if not with_current:
        return result
    # I(t_n-): the current at the start of the interval that ends at or after the spike (inputs
    # at the spike's time excluded), decayed to the spike.
    holder = jnp.minimum(jnp.searchsorted(t_end[:, 0], first, side="left"), t_end.shape[0] - 1)
    neurons = jnp.arange(size)
    gap = jnp.where(spiked, first - t_start[holder, 0], 0.0)
    tau_syn = jnp.broadcast_to(neuron.tau_syn, (size,))
    current = jnp.where(spiked, starts.current[holder, neurons] * jnp.exp(-gap / tau_syn), 0.0)
    return result, current


def required_capacity(
    weight: jax.Array,
    input_spikes: Spikes,
    neuron: LIFParameters,
    *,
    t_max: float,
    kernel: str = "auto",
    recurrent_weight: Optional[jax.Array] = None,
    initial_state: Optional[LIFState] = None,
    start: int = 1,
    limit: int = 1 << 20,
) -> int:
    """Number of output spikes a simulation produces (eager; doubles the capacity until it fits).

    Args:
        weight, input_spikes, neuron, t_max, kernel, recurrent_weight, initial_state: as for
            ``simulate``; concrete values (not traced).
        start: first capacity tried.
        limit: largest capacity tried.

    Returns:
        The smallest capacity that does not overflow (at least 1).

    Raises:
        ValueError: if even ``limit`` overflows (runaway excitation).
    """
    capacity = max(int(start), 1)
    while True:
        result = simulate(
            weight, input_spikes, neuron, capacity=capacity, t_max=t_max, kernel=kernel,
            recurrent_weight=recurrent_weight, initial_state=initial_state,
        )
        if not bool(result.overflow):
            return max(int(result.spikes.count()), 1)
        if capacity >= limit:
            raise ValueError(f"more than {limit} output spikes: runaway excitation?")
        capacity = min(2 * capacity, limit)
