"""Float64 NumPy reference simulators of the current-based LIF neuron: the yardstick.

Everything here is plain Python and NumPy in float64, written to be obviously correct rather
than fast: the test-suite compares the JAX layers against it. The simulations themselves use no
JAX (only the parameter type ``LIFParameters`` and its validation come from ``jaxsnn.event``, so
importing this module imports JAX).

Event based (``simulate_event``, ``event_state_at``). Between events the state evolves in
closed form (``u = v - v_leak``, ``s`` = time since the start of the piece)::

    I(s) = I0 exp(-s / tau_syn)
    u(s) = u0 exp(-s / tau_mem) + I0 K(s)
    K(s) = tau_syn / (tau_syn - tau_mem) (exp(-s / tau_syn) - exp(-s / tau_mem))   (tau_mem != tau_syn)
    K(s) = (s / tau_mem) exp(-s / tau_mem)                                           (tau_mem == tau_syn)

``K`` is evaluated with ``expm1`` when the two exponentials are close, so nearly equal time
constants lose no precision. ``f(s) = u(s) - (v_th - v_leak)`` has the form
``a exp(-s/tau_mem) + b exp(-s/tau_syn) + c`` (or ``(a + b s) exp(-s/tau) + c``) and
``exp(s/tau_mem) f'(s)`` is monotone in ``s``, so ``f`` has at most one interior extremum per
piece. The extremum is located by bisection on the sign of ``f'`` (which is ``(I - u)/tau_mem``),
splitting the piece into at most two monotone parts; a crossing exists in a part exactly when
``f`` is ``< 0`` at its left end and ``>= 0`` at its right end (tangential touches included), and
it is refined by bisection on the absolute time until the bracket is two adjacent floats. The
reported time is the right end: the first float at which ``v >= v_th``.

Accuracy (tested in ``tests/testing/test_toolkit_reference.py``): spike times agree with hand-derived
closed forms (tau ratios 1 and 2) to better than 1e-13 tau_syn and with an independent
fourth-order Runge-Kutta integration with crossing refinement to better than 1e-10 tau_syn on
random networks with several spikes per neuron; the bisection itself brackets the root to one
ulp of the spike time. Precision is lost only where the problem itself is ill-conditioned
(near-tangential crossings, where ``|f'|`` at the root is tiny).

Discrete (``simulate_discrete``): the same per-step update as ``jaxsnn.discrete`` (see the
function's docstring), in float64.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np

from jaxsnn.event.neuron import LIFParameters, validate_parameters

__all__ = ["simulate_event", "event_state_at", "simulate_discrete", "free_evolution"]

#: Upper bound on the number of output spikes, to turn runaway recurrent excitation into an
#: error instead of an endless loop.
MAX_REFERENCE_SPIKES = 100_000


def _kernel(s: float, tau_mem: float, tau_syn: float) -> float:
    """Response of ``u`` at time ``s`` to a unit synaptic current at ``s = 0`` (see module doc)."""
    if tau_mem == tau_syn:
        return (s / tau_mem) * math.exp(-s / tau_mem)
    rate_gap = (tau_syn - tau_mem) / (tau_mem * tau_syn)  # 1/tau_mem - 1/tau_syn
    if abs(s * rate_gap) < 0.5:
        # exp(-s/tau_syn) - exp(-s/tau_mem) = exp(-s/tau_mem) expm1(s (1/tau_mem - 1/tau_syn))
        return tau_syn / (tau_syn - tau_mem) * math.expm1(s * rate_gap) * math.exp(-s / tau_mem)
    return tau_syn / (tau_syn - tau_mem) * (math.exp(-s / tau_syn) - math.exp(-s / tau_mem))


def free_evolution(
    s: float, v0: float, current0: float, tau_mem: float, tau_syn: float, v_leak: float
) -> Tuple[float, float]:
    """Closed-form state of one neuron ``s >= 0`` after ``(v0, current0)``, no events, no threshold.

    Args:
        s: elapsed time, >= 0.
        v0: membrane potential at ``s = 0``.
        current0: synaptic current at ``s = 0``.
        tau_mem: membrane time constant.
        tau_syn: synaptic time constant.
        v_leak: resting potential.

    Returns:
        ``(v(s), I(s))``.
    """
    v = v_leak + (v0 - v_leak) * math.exp(-s / tau_mem) + current0 * _kernel(s, tau_mem, tau_syn)
    return v, current0 * math.exp(-s / tau_syn)


class _Neuron:
    """Mutable per-neuron state of the reference simulation (private to this module)."""

    def __init__(self, tau_syn, tau_mem, v_th, v_reset, v_leak, t_ref, v, current, ref_until):
        self.tau_syn, self.tau_mem = float(tau_syn), float(tau_mem)
        self.v_th, self.v_reset, self.v_leak = float(v_th), float(v_reset), float(v_leak)
        self.t_ref = float(t_ref)
        self.v, self.current, self.ref_until = float(v), float(current), float(ref_until)

    # State at a time ``t >= now`` without events (refractory clamp included).
    def state_at(self, now: float, t: float) -> Tuple[float, float]:
        current_t = self.current * math.exp(-(t - now) / self.tau_syn)
        if self.ref_until >= t:
            return self.v_reset, current_t
        if self.ref_until > now:
            current_free = self.current * math.exp(-(self.ref_until - now) / self.tau_syn)
            v, _ = free_evolution(
                t - self.ref_until, self.v_reset, current_free, self.tau_mem, self.tau_syn, self.v_leak
            )
            return v, current_t
        v, _ = free_evolution(t - now, self.v, self.current, self.tau_mem, self.tau_syn, self.v_leak)
        return v, current_t

    def advance(self, now: float, t: float) -> None:
        self.v, self.current = self.state_at(now, t)

    def first_crossing(self, now: float, horizon: float) -> float:
        """Earliest time in ``(now, horizon]`` at which ``v`` reaches ``v_th`` (inf if none)."""
        start = max(now, self.ref_until)
        if start >= horizon:
            return math.inf
        v_start, current_start = self.state_at(now, start)

        def excess(t: float) -> float:  # f(t) = v(t) - v_th on the free piece
            v, _ = free_evolution(
                t - start, v_start, current_start, self.tau_mem, self.tau_syn, self.v_leak
            )
            return v - self.v_th

        def slope_sign(t: float) -> float:  # sign of dv/dt = (I - (v - v_leak)) / tau_mem
            v, current = free_evolution(
                t - start, v_start, current_start, self.tau_mem, self.tau_syn, self.v_leak
            )
            return current - (v - self.v_leak)

        if excess(start) >= 0:
            # Only reachable through an initial state at threshold, which is rejected, or
            # rounding at a previous boundary: treat it as a crossing right now.
            return start
        breakpoints = [start]
        left_sign, right_sign = slope_sign(start), slope_sign(horizon)
        if (left_sign > 0) != (right_sign > 0):
            # One sign change of f' inside: locate the extremum by bisection on the sign.
            low, high = start, horizon
            while True:
                mid = 0.5 * (low + high)
                if mid <= low or mid >= high:
                    break
                if (slope_sign(mid) > 0) == (left_sign > 0):
                    low = mid
                else:
                    high = mid
            breakpoints.extend([low, high])
        breakpoints.append(horizon)
        previous = start
        for point in breakpoints[1:]:
            if excess(point) >= 0:
                # f(previous) < 0 <= f(point) and f is monotone in between: bisect.
                low, high = previous, point
                while True:
                    mid = 0.5 * (low + high)
                    if mid <= low or mid >= high:
                        return high
                    if excess(mid) >= 0:
                        high = mid
                    else:
                        low = mid
            previous = point
        return math.inf


def _as_per_neuron(name: str, value: Any, size: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    try:
        return np.broadcast_to(array, (size,)).copy()
    except ValueError:
        raise ValueError(
            f"{name} must be a scalar or have shape ({size},) (one value per neuron), got shape {array.shape}"
        ) from None


def _prepare(weight, input_times, input_idx, params, recurrent_weight):
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-dimensional (n_inputs, size), got shape {weight.shape}")
    if not np.all(np.isfinite(weight)):
        raise ValueError("weight must be finite (NaN/inf found)")
    n_inputs, size = weight.shape
    input_times = np.asarray(input_times, dtype=np.float64).reshape(-1)
    input_idx = np.asarray(input_idx).reshape(-1)
    if input_times.shape != input_idx.shape:
        raise ValueError(
            f"input_times and input_idx must have the same length, got {input_times.size} and {input_idx.size}"
        )
    # Padding of a Spikes buffer (idx == -1) is ignored, so buffers can be passed as they are.
    keep = input_idx != -1
    input_times, input_idx = input_times[keep], input_idx[keep].astype(np.int64)
    if not np.all(np.isfinite(input_times)) or np.any(input_times < 0):
        raise ValueError("input_times must be finite and >= 0")
    if np.any(input_idx < 0) or np.any(input_idx >= n_inputs):
        raise ValueError(f"input_idx must be in [0, {n_inputs}) (rows of weight), got {input_idx.tolist()}")
    if recurrent_weight is not None:
        recurrent_weight = np.asarray(recurrent_weight, dtype=np.float64)
        if recurrent_weight.shape != (size, size):
            raise ValueError(
                f"recurrent_weight must have shape ({size}, {size}), got {recurrent_weight.shape}"
            )
        if not np.all(np.isfinite(recurrent_weight)):
            raise ValueError("recurrent_weight must be finite (NaN/inf found)")
    validate_parameters(params)
    per_neuron = {name: _as_per_neuron(name, getattr(params, name), size) for name in LIFParameters._fields}
    return weight, input_times, input_idx, recurrent_weight, per_neuron


def _run(weight, input_times, input_idx, params, t_max, recurrent_weight, initial_state):
    weight, input_times, input_idx, recurrent_weight, p = _prepare(
        weight, input_times, input_idx, params, recurrent_weight
    )
    t_max = float(t_max)
    if not math.isfinite(t_max) or t_max < 0:
        raise ValueError(f"t_max must be finite and >= 0, got {t_max}")
    size = weight.shape[1]
    if initial_state is None:
        v0, current0, ref0 = p["v_leak"], np.zeros(size), np.full(size, -math.inf)
    else:
        fields = tuple(initial_state)
        v0 = _as_per_neuron("initial_state.v", fields[0], size)
        current0 = _as_per_neuron("initial_state.current", fields[1], size)
        ref0 = _as_per_neuron("initial_state.refractory_until", fields[2], size) if len(fields) > 2 else np.full(size, -math.inf)
        if np.any(v0 >= p["v_th"]):
            raise ValueError("initial_state.v must be below v_th for every neuron")
    neurons = [
        _Neuron(p["tau_syn"][i], p["tau_mem"][i], p["v_th"][i], p["v_reset"][i], p["v_leak"][i],
                p["t_ref"][i], v0[i], current0[i], ref0[i])
        for i in range(size)
    ]
    # Group input events by time: all events at one instant are applied together.
    order = np.argsort(input_times, kind="stable")
    group_times = np.unique(input_times[order])
    group_drive = [weight[input_idx[input_times == t]].sum(axis=0) for t in group_times]

    out_times, out_idx = [], []
    now, group = 0.0, 0
    while True:
        next_input = group_times[group] if group < len(group_times) else math.inf
        horizon = min(next_input, t_max)
        crossings = [neuron.first_crossing(now, horizon) for neuron in neurons]
        t_spike = min(crossings) if crossings else math.inf
        if t_spike <= horizon:
            for neuron in neurons:
                neuron.advance(now, t_spike)
            now = t_spike
            # Neurons whose crossing is this instant, or whose potential reached threshold here
            # (rounding), spike together; refractory neurons cannot.
            fired = [
                i for i, neuron in enumerate(neurons)
                if crossings[i] == t_spike or (neuron.ref_until < now and neuron.v >= neuron.v_th)
            ]
            for i in fired:
                neurons[i].v = neurons[i].v_reset
                neurons[i].ref_until = now + neurons[i].t_ref if neurons[i].t_ref > 0 else -math.inf
                out_times.append(now)
                out_idx.append(i)
            if recurrent_weight is not None:
                drive = recurrent_weight[fired].sum(axis=0)
                for i, neuron in enumerate(neurons):
                    neuron.current += drive[i]
            if len(out_times) > MAX_REFERENCE_SPIKES:
                raise RuntimeError(
                    f"more than {MAX_REFERENCE_SPIKES} output spikes before t={now}: runaway excitation"
                )
            continue
        for neuron in neurons:
            neuron.advance(now, horizon)
        now = horizon
        if next_input <= t_max:
            for i, neuron in enumerate(neurons):
                neuron.current += group_drive[group][i]
            group += 1
            continue
        break
    times = np.asarray(out_times, dtype=np.float64)
    idx = np.asarray(out_idx, dtype=np.int64)
    order = np.lexsort((idx, times))
    state = (
        np.array([n.v for n in neurons]),
        np.array([n.current for n in neurons]),
        np.array([n.ref_until for n in neurons]),
    )
    return times[order], idx[order], state


def simulate_event(
    weight: Any,
    input_times: Any,
    input_idx: Any,
    params: LIFParameters,
    t_max: float,
    recurrent_weight: Optional[Any] = None,
    initial_state: Optional[Any] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Exact event-based simulation of one layer of current-based LIF neurons (float64).

    ``tau_mem dv/dt = -(v - v_leak) + I``, ``tau_syn dI/dt = -I``; an input event ``(t, j)``
    adds ``weight[j, :]`` to ``I`` (all events at one instant together); a neuron spikes at the
    first time ``v`` reaches ``v_th`` (tangential touches count), is reset to ``v_reset`` and
    held there for ``t_ref``; an output spike of neuron ``i`` adds ``recurrent_weight[i, :]``
    to ``I`` at the same instant (after the reset).

    Args:
        weight: ``(n_inputs, size)`` input weights.
        input_times: input event times, finite and >= 0, any order. Entries whose index is
            ``-1`` (``Spikes`` padding) are ignored.
        input_idx: source index of each input event, in ``[0, n_inputs)`` (or ``-1`` = padding).
        params: ``LIFParameters`` (scalars or per-neuron ``(size,)`` arrays).
        t_max: end of the window; crossings after ``t_max`` are not emitted.
        recurrent_weight: optional ``(size, size)`` recurrent weights.
        initial_state: optional ``(v, current)`` or ``LIFState`` at ``t = 0`` (default: rest).

    Returns:
        ``(out_times, out_idx)``: float64 and int64 arrays of all output spikes in
        ``[0, t_max]``, sorted by time then neuron index. No capacity limit.

    Raises:
        ValueError: on bad shapes, non-finite values, out-of-range indices, invalid
            parameters, or an initial potential at or above threshold.
        RuntimeError: if more than ``MAX_REFERENCE_SPIKES`` spikes occur (runaway excitation).
    """
    times, idx, _ = _run(weight, input_times, input_idx, params, t_max, recurrent_weight, initial_state)
    return times, idx


def event_state_at(
    weight: Any,
    input_times: Any,
    input_idx: Any,
    params: LIFParameters,
    t: float,
    recurrent_weight: Optional[Any] = None,
    initial_state: Optional[Any] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """State ``(v, I)`` of every neuron at time ``t`` (right limit: events at ``t`` included).

    Args:
        weight, input_times, input_idx, params, recurrent_weight, initial_state: as for
            ``simulate_event``.
        t: the time, >= 0.

    Returns:
        ``(v, I)``, two float64 ``(size,)`` arrays.

    Raises:
        ValueError: as ``simulate_event``.
    """
    _, _, state = _run(weight, input_times, input_idx, params, t, recurrent_weight, initial_state)
    return state[0], state[1]


def simulate_discrete(
    weight: Any,
    inputs: Any,
    *,
    tau_syn: float,
    tau_mem: float,
    dt: float,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    v_leak: float = 0.0,
    reset: str = "subtract",
    recurrent_weight: Optional[Any] = None,
    readout: bool = False,
    input_scale: Optional[float] = None,
) -> Dict[str, np.ndarray]:
    """Discrete-time current-based LIF (or LI readout), step by step in float64.

    With ``a_syn = exp(-dt/tau_syn)`` (``0`` for ``tau_syn = 0``), ``a_mem = exp(-dt/tau_mem)``,
    ``g = input_scale`` (default ``1 - a_mem``), from rest (``v = v_leak``, ``I = 0``, ``z = 0``),
    for each step ``t``::

        I_t = a_syn I_{t-1} + x_t @ W (+ z_{t-1} @ W_rec)
        v_t = v_leak + a_mem (v_{t-1} - v_leak) + g I_t
        z_t = 1 if v_t > v_th else 0                      (not for the readout)
        subtract: v_t -= z_t (v_th - v_reset);  hard: v_t = v_reset where z_t = 1

    Args:
        weight: ``(n_in, size)`` weights.
        inputs: ``(T, n_in)`` inputs.
        tau_syn: synaptic time constant, >= 0 (0: no synaptic filter).
        tau_mem: membrane time constant, > 0.
        dt: step width, > 0.
        v_th: threshold.
        v_reset: reset value (``hard``) or the level the subtraction aims at (``subtract``).
        v_leak: resting potential.
        reset: ``"subtract"`` or ``"hard"``.
        recurrent_weight: optional ``(size, size)`` recurrent weights (previous step's spikes).
        readout: if True, a non-spiking LI: no threshold, no reset, spikes all zero.
        input_scale: factor of ``I_t`` in the membrane update (default ``1 - a_mem``).

    Returns:
        dict with ``spikes`` (``z_t``), ``v`` (after reset, the carried state),
        ``v_before_reset`` and ``current``, each ``(T, size)`` float64.

    Raises:
        ValueError: on bad shapes, non-positive time constants, non-finite potentials,
            ``v_reset >= v_th`` (spiking only: a reset must lower the membrane) or an unknown
            ``reset``.
    """
    weight = np.asarray(weight, dtype=np.float64)
    inputs = np.asarray(inputs, dtype=np.float64)
    if weight.ndim != 2:
        raise ValueError(f"weight must be (n_in, size), got shape {weight.shape}")
    if inputs.ndim != 2 or inputs.shape[1] != weight.shape[0]:
        raise ValueError(f"inputs must be (T, {weight.shape[0]}), got shape {inputs.shape}")
    for name, value in (("tau_syn", tau_syn), ("tau_mem", tau_mem), ("dt", dt)):
        if not (math.isfinite(value) and (value > 0 or (name == "tau_syn" and value == 0))):
            bound = ">= 0" if name == "tau_syn" else "> 0"
            raise ValueError(f"{name} must be finite and {bound}, got {value}")
    for name, value in (("v_th", v_th), ("v_reset", v_reset), ("v_leak", v_leak)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if not readout and not v_reset < v_th:
        raise ValueError(f"v_reset must be < v_th (a reset must lower the membrane), got v_reset={v_reset}, "
                         f"v_th={v_th}")
    if reset not in ("subtract", "hard"):
        raise ValueError(f"reset must be 'subtract' or 'hard', got {reset!r}")
    size = weight.shape[1]
    if recurrent_weight is not None:
        recurrent_weight = np.asarray(recurrent_weight, dtype=np.float64)
        if recurrent_weight.shape != (size, size):
            raise ValueError(f"recurrent_weight must have shape ({size}, {size}), got {recurrent_weight.shape}")
    a_syn = 0.0 if tau_syn == 0 else math.exp(-dt / tau_syn)
    a_mem = math.exp(-dt / tau_mem)
    gain = 1.0 - a_mem if input_scale is None else float(input_scale)
    n_steps = inputs.shape[0]
    record = {key: np.zeros((n_steps, size)) for key in ("spikes", "v", "v_before_reset", "current")}
    v = np.full(size, float(v_leak))
    current = np.zeros(size)
    z = np.zeros(size)
    for t in range(n_steps):
        drive = inputs[t] @ weight
        if recurrent_weight is not None:
            drive = drive + z @ recurrent_weight
        current = a_syn * current + drive
        v = v_leak + a_mem * (v - v_leak) + gain * current
        record["v_before_reset"][t] = v
        if readout:
            z = np.zeros(size)
        else:
            z = (v > v_th).astype(np.float64)
            if reset == "subtract":
                v = v - z * (v_th - v_reset)
            else:
                v = np.where(z > 0, v_reset, v)
        record["spikes"][t], record["v"][t], record["current"][t] = z, v, current
    return record
