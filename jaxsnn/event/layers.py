"""Event-based layers: ``LIF``, ``RecurrentLIF`` (spiking) and ``LI`` (non-spiking readout).

Each factory returns a ``jaxsnn.Layer`` ``(init, apply)`` pair usable inside ``jaxsnn.serial``:

* input shape ``(n_in,)``, output shape ``(size,)`` (``LI`` with ``readout="times"``:
  ``(n_times, size)``); inputs are one sample's ``Spikes`` (batch with ``jax.vmap``);
* ``params = {"weight": (n_in, size)}`` (``RecurrentLIF`` adds ``"recurrent_weight"``);
* ``carry`` is a ``LIFState`` at the end of the window (``None`` = start at rest), whose
  ``refractory_until`` is relative to the window end, so chunks can be chained;
* spiking layers record ``LIFRecording(spikes, overflow)``.

Two gradient paths: ``gradient="analytic"`` differentiates through the exact simulation (spike
times are differentiated through the next-spike kernels); ``gradient="eventprop"`` (default)
uses ``jaxsnn.event.eventprop``, which also accepts ``external`` spikes (measured on hardware)
as this layer's forward output.

The factories check the settings (neuron parameters, capacity, window) and resolve the static
choices (``jaxsnn.event.plan.Plan``: kernel, forward algorithm, refractory handling) once, while
the constants are concrete; ``apply`` checks only its arguments (weights, input spikes, carry)
and runs the planned simulation.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxsnn._validate import check_positive, is_concrete, positive_int
from jaxsnn.event.dynamics import evolve, extremum_time, free_membrane, psp_kernel, rest_state
from jaxsnn.event.eventprop import simulate_eventprop_planned
from jaxsnn.event.neuron import LIFParameters, LIFState, check_parameter_shapes, validate_parameters
from jaxsnn.event.plan import resolve_plan
from jaxsnn.event.simulate import (
    SimulationResult,
    checked_inputs,
    required_capacity,
    simulate_planned,
    validate_arrays,
)
from jaxsnn.initializers import default_dtype, init_weight, make_weight_init
from jaxsnn.spikes import Spikes
from jaxsnn.spikes import validate as validate_spikes
from jaxsnn.types import Layer, named_layer

__all__ = ["LIF", "RecurrentLIF", "LI", "LIFRecording", "LIRecording", "psp_peak"]

WeightInit = Callable[[jax.Array, Tuple[int, ...], Any], jax.Array]
GRADIENTS = ("eventprop", "analytic")
READOUTS = ("max", "times")


class LIFRecording(NamedTuple):
    """What a spiking event layer (``LIF``, ``RecurrentLIF``) records.

    Not the same type as ``jaxsnn.discrete.LIFRecording`` (a dense ``(time, *features)`` spike
    grid and an optional membrane trace): event layers record their spike buffer and whether
    it overflowed; membranes are available in closed form at any time instead
    (``jaxsnn.event.superposition.state_at``, or ``LI(readout="times")``).

    Attributes:
        spikes: the layer's output spikes (same as its output).
        overflow: bool, True if more spikes would have occurred than ``capacity``.
    """

    spikes: Spikes
    overflow: jax.Array


class LIRecording(NamedTuple):
    """What an event ``LI`` readout records (``jaxsnn.discrete.LIRecording`` names its trace ``v``).

    Attributes:
        membrane: the readout value (the layer's output): the maximum of ``v`` over the window,
            or ``v`` at the requested times.
    """

    membrane: jax.Array


def psp_peak(tau_mem: float, tau_syn: float) -> float:
    """Peak of ``u`` after a unit weight input at rest: ``max_s K(s)``.

    Args:
        tau_mem: membrane time constant, > 0.
        tau_syn: synaptic time constant, > 0.

    Returns:
        The peak value (e.g. 0.25 for ``tau_mem = 2 tau_syn``, ``1/e`` for equal taus).
    """
    s_ext, _ = extremum_time(jnp.asarray(0.0), jnp.asarray(1.0), tau_mem, tau_syn)
    return float(psp_kernel(s_ext, tau_mem, tau_syn))


def _neuron(tau_syn, tau_mem, v_th, v_reset, v_leak, t_ref, size) -> LIFParameters:
    neuron = validate_parameters(
        LIFParameters(tau_syn=tau_syn, tau_mem=tau_mem, v_th=v_th, v_reset=v_reset, v_leak=v_leak, t_ref=t_ref)
    )
    check_parameter_shapes(neuron, size)
    return neuron


def _input_size(label: str, input_shape: Any) -> int:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise TypeError(f"input_shape must be a tuple of ints, got {input_shape!r}") from None
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(
            f"{label} takes Spikes of shape (n_inputs,), got input shape {shape}; "
            "use jaxsnn.event.ToSpikes after a dense (time, features) layer"
        )
    return shape[0]


def _spiking_layer(
    label: str,
    size: int,
    neuron: LIFParameters,
    capacity: int,
    t_max: float,
    kernel: str,
    gradient: str,
    weight_init: WeightInit,
    recurrent_init: Optional[WeightInit],
    checked: bool,
    dtype: Any,
    algorithm: str = "auto",
    backward: str = "auto",
) -> Layer:
    capacity = positive_int("capacity", capacity)
    check_positive("t_max", t_max)
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    if gradient == "analytic" and backward != "auto":
        raise ValueError(
            f"{label}: backward={backward!r} chooses an EventProp backward pass, but gradient='analytic' "
            "differentiates the forward pass; use gradient='eventprop' or leave backward='auto'"
        )
    recurrent = recurrent_init is not None
    plan = resolve_plan(neuron, t_max, kernel=kernel, algorithm=algorithm, backward=backward, recurrent=recurrent)

    def init(rng: jax.Array, input_shape: Any) -> Tuple[Tuple[int, ...], Any]:
        n_in = _input_size(label, input_shape)
        key_in, key_rec = jax.random.split(rng)
        params = {"weight": init_weight(label, key_in, (n_in, size), dtype, weight_init)}
        if recurrent:
            params["recurrent_weight"] = init_weight(label, key_rec, (size, size), dtype, recurrent_init)
        return (size,), params

    def apply(params: Any, inputs: Spikes, external: Optional[Spikes] = None, carry: Optional[LIFState] = None):
        if not isinstance(params, dict) or "weight" not in params:
            raise TypeError(f"{label}: params must be a dict with 'weight', got {type(params).__name__}")
        if recurrent and "recurrent_weight" not in params:
            raise TypeError(f"{label}: params must contain 'recurrent_weight'")
        if gradient == "analytic" and external is not None:
            raise ValueError(
                f"{label}: external spikes (measured outputs) need gradient='eventprop'; "
                "the analytic gradient differentiates the simulated spike times"
            )
        weight = params["weight"]
        recurrent_weight = params["recurrent_weight"] if recurrent else None
        layer_size = validate_arrays(
            weight, inputs, recurrent_weight=recurrent_weight, initial_state=carry, v_th=neuron.v_th,
            spikes_name=f"{label} input spikes",
        )
        if layer_size != size:
            raise ValueError(f"{label}: params['weight'] must have {size} columns, got shape {jnp.shape(weight)}")
        if external is not None:
            with jax.ensure_compile_time_eval():
                validate_spikes(external, n_neurons=size, name="external_spikes")
        if checked and not is_concrete((params, inputs)):
            checked_inputs(weight, inputs, neuron, t_max=t_max, recurrent_weight=recurrent_weight)
        kwargs = dict(capacity=capacity, t_max=t_max, recurrent_weight=recurrent_weight, initial_state=carry)
        if gradient == "analytic":
            result: SimulationResult = simulate_planned(plan, weight, inputs, neuron, **kwargs)
        else:
            result = simulate_eventprop_planned(plan, weight, inputs, neuron, external_spikes=external, **kwargs)
        if checked:
            _check_overflow(result, weight, inputs, recurrent_weight, carry)
        return result.final_state, result.spikes, LIFRecording(spikes=result.spikes, overflow=result.overflow)

    def _check_overflow(result, weight, inputs, recurrent_weight, carry):
        if is_concrete(result.overflow):
            if bool(result.overflow):
                needed = required_capacity(
                    weight, inputs, neuron, t_max=t_max, kernel=plan.kernel, recurrent_weight=recurrent_weight,
                    initial_state=carry, start=2 * capacity,
                )
                raise ValueError(
                    f"{label}: capacity {capacity} is too small: the layer emits {needed} spikes; "
                    f"use capacity >= {needed}"
                )
        else:
            checkify.check(
                ~result.overflow,
                f"{label}: more output spikes than capacity {capacity}; increase capacity",
            )

    return named_layer(init, apply, label)


def LIF(
    size: int,
    *,
    tau_syn: Any = 5e-3,
    tau_mem: Any = 1e-2,
    v_th: Any = 1.0,
    v_reset: Any = 0.0,
    v_leak: Any = 0.0,
    t_ref: Any = 0.0,
    capacity: int,
    t_max: float,
    kernel: str = "auto",
    gradient: str = "eventprop",
    weight_init: Optional[WeightInit] = None,
    weight_scale: float = 1.0,
    weight_mean: float = 0.0,
    dtype: Any = None,
    checked: bool = False,
    algorithm: str = "auto",
    backward: str = "auto",
) -> Layer:
    """Feed-forward layer of event-based LIF neurons with exact spike times.

    Args:
        size: number of neurons.
        tau_syn, tau_mem, v_th, v_reset, v_leak, t_ref: neuron parameters (see
            ``jaxsnn.event.LIFParameters``), scalars or ``(size,)`` arrays.
        capacity: maximum number of output spikes per sample.
        t_max: end of the simulation window.
        kernel: next-spike kernel, ``"auto"`` (analytic when ``tau_mem/tau_syn`` is exactly 1 or
            2, else the root solver), ``"lambertw"``, ``"quadratic"`` or ``"root"``.
        gradient: ``"eventprop"`` (adjoint method, default) or ``"analytic"`` (autodiff through
            the exact spike times).
        weight_init: ``(key, shape, dtype) -> weight`` (the ``jax.nn.initializers``
            signature, e.g. ``jaxsnn.initializers.normal(stddev, mean)``); default
            ``weight_mean + weight_scale * unit * N(0, 1) / sqrt(n_in)`` with
            ``unit = (v_th - v_leak) / psp_peak`` (the weight whose PSP peaks at threshold).
        weight_scale, weight_mean: parameters of the default initialiser.
        dtype: parameter dtype (default float32, float64 under x64).
        checked: raise when the capacity overflows: eagerly with the required capacity when
            values are concrete, through ``checkify`` under ``jax.jit``.
        algorithm: forward algorithm, ``"auto"`` (default: the parallel search for single-spike
            layers, ``jaxsnn.event.plan.choose_feedforward`` between the multi-spike search and
            the scan otherwise), ``"scan"``, ``"parallel"`` or ``"multispike"`` (see
            ``jaxsnn.event.simulate``). All are exact; the choice only changes speed.
        backward: EventProp backward pass, ``"auto"`` (default: the closed form, one or
            several spikes per neuron), ``"scan"`` (the event scan) or ``"parallel"`` (the
            closed form, explicitly; ``jaxsnn.event.plan.resolve_backward``).

    Returns:
        A ``Layer``: ``apply(params, spikes, external=None, carry=None) ->
        (final LIFState, output Spikes, LIFRecording)``.

    Raises:
        ValueError: on invalid parameters (tau <= 0, v_th <= v_reset, capacity < 1, ...).
    """
    size = positive_int("size", size)
    neuron = _neuron(tau_syn, tau_mem, v_th, v_reset, v_leak, t_ref, size)
    reference = float(np.max(np.asarray(v_th) - np.asarray(v_leak))) / psp_peak(
        float(np.mean(tau_mem)), float(np.mean(tau_syn))
    )
    init = make_weight_init(weight_init, weight_scale, weight_mean, reference)
    return _spiking_layer(
        f"LIF({size})", size, neuron, capacity, t_max, kernel, gradient, init, None, checked,
        default_dtype(dtype), algorithm, backward,
    )


def RecurrentLIF(
    size: int,
    *,
    tau_syn: Any = 5e-3,
    tau_mem: Any = 1e-2,
    v_th: Any = 1.0,
    v_reset: Any = 0.0,
    v_leak: Any = 0.0,
    t_ref: Any = 0.0,
    capacity: int,
    t_max: float,
    kernel: str = "auto",
    gradient: str = "eventprop",
    weight_init: Optional[WeightInit] = None,
    weight_scale: float = 1.0,
    weight_mean: float = 0.0,
    recurrent_init: Optional[WeightInit] = None,
    recurrent_scale: float = 0.5,
    recurrent_mean: float = 0.0,
    dtype: Any = None,
    checked: bool = False,
    backward: str = "auto",
) -> Layer:
    """LIF layer whose output spikes also feed back: spike of neuron ``i`` adds ``W_rec[i]`` to ``I``.

    Args:
        size, tau_syn, tau_mem, v_th, v_reset, v_leak, t_ref, capacity, t_max, kernel, gradient,
            weight_init, weight_scale, weight_mean, dtype, checked, backward: as for ``LIF``
            (recurrent layers always run the scan forward and backward).
        recurrent_init: ``(key, (size, size), dtype) -> recurrent weight``; default
            ``recurrent_mean + recurrent_scale * unit * N(0, 1) / sqrt(size)``.
        recurrent_scale, recurrent_mean: parameters of the default recurrent initialiser.

    Returns:
        A ``Layer`` with params ``{"weight", "recurrent_weight"}``.

    Raises:
        ValueError: as ``LIF``.
    """
    size = positive_int("size", size)
    neuron = _neuron(tau_syn, tau_mem, v_th, v_reset, v_leak, t_ref, size)
    reference = float(np.max(np.asarray(v_th) - np.asarray(v_leak))) / psp_peak(
        float(np.mean(tau_mem)), float(np.mean(tau_syn))
    )
    init = make_weight_init(weight_init, weight_scale, weight_mean, reference)
    rec_init = make_weight_init(recurrent_init, recurrent_scale, recurrent_mean, reference)
    return _spiking_layer(
        f"RecurrentLIF({size})", size, neuron, capacity, t_max, kernel, gradient, init, rec_init,
        checked, default_dtype(dtype), "auto", backward,
    )


@jax.jit
def _li_max(weight, inputs: Spikes, neuron: LIFParameters, t_max, state: LIFState):
    """Exact maximum of ``v`` over ``[0, t_max]``: per inter-event interval, the larger of the
    interval's end values and, if it lies inside, the value at the interval's single extremum."""
    dtype = weight.dtype
    in_time = jnp.where((inputs.idx >= 0) & (inputs.time <= t_max), inputs.time, jnp.inf).astype(dtype)
    rows = weight[jnp.clip(inputs.idx, 0, weight.shape[0] - 1)]

    def interval_max(t, state, t_end):
        u0 = state.v - neuron.v_leak
        s_ext, exists = extremum_time(u0, state.current, neuron.tau_mem, neuron.tau_syn)
        inside = exists & (s_ext < t_end - t)
        u_ext = free_membrane(jnp.where(inside, s_ext, 0.0), u0, state.current, neuron.tau_mem, neuron.tau_syn)
        end = evolve(state, t, t_end, neuron)
        best = jnp.maximum(end.v, jnp.where(inside, neuron.v_leak + u_ext, -jnp.inf))
        return end, best

    def step(carry, event):
        t, state, vmax = carry
        t_event, row = event
        active = jnp.isfinite(t_event)
        t_end = jnp.where(active, t_event, t)
        end, best = interval_max(t, state, t_end)
        vmax = jnp.where(active, jnp.maximum(vmax, best), vmax)
        current = end.current + jnp.where(active, row, jnp.zeros_like(row))
        return (t_end, end._replace(current=current), vmax), None

    (t, state_end, vmax), _ = jax.lax.scan(step, (jnp.zeros((), dtype), state, state.v), (in_time, rows))
    final, best = interval_max(t, state_end, t_max)
    return final, jnp.maximum(vmax, best)


@jax.jit
def _li_times(weight, inputs: Spikes, neuron: LIFParameters, state: LIFState, times):
    """Membrane at each query time by superposition (the LI neuron is linear)."""
    valid = inputs.idx >= 0
    rows = jnp.where(valid[:, None], weight[jnp.clip(inputs.idx, 0, weight.shape[0] - 1)], 0.0)
    lag = times[:, None] - jnp.where(valid, inputs.time, 0.0)[None, :]  # (n_times, n_slots)
    active = valid[None, :] & (lag >= 0)
    response = jnp.where(active, psp_kernel(jnp.where(active, lag, 0.0), neuron.tau_mem, neuron.tau_syn), 0.0)
    drive = response @ rows  # (n_times, size)
    u0 = state.v - neuron.v_leak
    free = free_membrane(times[:, None], u0[None, :], state.current[None, :], neuron.tau_mem, neuron.tau_syn)
    return neuron.v_leak + free + drive


def LI(
    size: int,
    *,
    tau_syn: Any = 5e-3,
    tau_mem: Any = 1e-2,
    v_leak: Any = 0.0,
    t_max: float,
    readout: str = "max",
    times: Any = None,
    weight_init: Optional[WeightInit] = None,
    weight_scale: float = 1.0,
    weight_mean: float = 0.0,
    dtype: Any = None,
) -> Layer:
    """Non-spiking leaky-integrator readout driven by input spikes.

    ``v`` follows the LIF dynamics without threshold. ``readout="max"`` outputs the exact
    maximum of ``v`` over ``[0, t_max]`` (closed form: on each inter-event interval ``v`` has at
    most one extremum, ``jaxsnn.event.dynamics.extremum_time``); ``readout="times"`` outputs ``v``
    at the given times. Both are differentiable by plain autodiff.

    Args:
        size: number of readout neurons.
        tau_syn, tau_mem, v_leak: neuron parameters.
        t_max: end of the window.
        readout: ``"max"`` (output ``(size,)``) or ``"times"`` (output ``(n_times, size)``).
        times: 1-d array of times in ``[0, t_max]``, required for ``readout="times"``.
        weight_init, weight_scale, weight_mean, dtype: as for ``LIF``, with
            ``unit = 1 / psp_peak``.

    Returns:
        A ``Layer``: ``apply(params, spikes, external=None, carry=None) -> (state at t_max,
        readout, LIRecording)``.

    Raises:
        ValueError: on invalid parameters, unknown readout, or missing/invalid ``times``.
    """
    size = positive_int("size", size)
    check_parameter_shapes(LIFParameters(tau_syn=tau_syn, tau_mem=tau_mem, v_leak=v_leak), size)
    # Threshold irrelevant for a readout; v_th is set above v_leak only to pass validation.
    neuron = _neuron(tau_syn, tau_mem, np.asarray(v_leak) + 1.0, v_leak, v_leak, 0.0, size)
    check_positive("t_max", t_max)
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    if readout == "times":
        if times is None:
            raise ValueError("readout='times' needs times (1-d array of readout times in [0, t_max])")
        times_np = np.asarray(times, dtype=np.float64)
        if times_np.ndim != 1 or times_np.size == 0:
            raise ValueError(f"times must be a non-empty 1-d array, got shape {times_np.shape}")
        if not np.all(np.isfinite(times_np)) or np.any(times_np < 0) or np.any(times_np > t_max):
            raise ValueError("times must be finite and within [0, t_max]")
    reference = 1.0 / psp_peak(float(np.mean(tau_mem)), float(np.mean(tau_syn)))
    init_weights = make_weight_init(weight_init, weight_scale, weight_mean, reference)
    param_dtype = default_dtype(dtype)
    label = f"LI({size})"

    def init(rng: jax.Array, input_shape: Any):
        n_in = _input_size(label, input_shape)
        params = {"weight": init_weight(label, rng, (n_in, size), param_dtype, init_weights)}
        out_shape = (size,) if readout == "max" else (len(times_np), size)
        return out_shape, params

    def apply(params: Any, inputs: Spikes, external: Any = None, carry: Optional[LIFState] = None):
        if external is not None:
            raise ValueError(f"{label} is a readout and takes no external data")
        if not isinstance(params, dict) or "weight" not in params:
            raise TypeError(f"{label}: params must be a dict with 'weight', got {type(params).__name__}")
        weight = jnp.asarray(params["weight"])
        layer_size = validate_arrays(weight, inputs, initial_state=carry, spikes_name=f"{label} input spikes")
        if layer_size != size:
            raise ValueError(f"{label}: params['weight'] must have {size} columns, got shape {weight.shape}")
        dtype = jnp.result_type(weight, inputs.time)
        weight = weight.astype(dtype)
        local = LIFParameters(*[jnp.asarray(value, dtype) for value in neuron])
        state = rest_state(size, local, dtype) if carry is None else LIFState(*[jnp.asarray(x, dtype) for x in carry])
        t_end = jnp.asarray(t_max, dtype)
        final, vmax = _li_max(weight, inputs, local, t_end, state)
        if readout == "max":
            output = vmax
        else:
            output = _li_times(weight, inputs, local, state, jnp.asarray(times_np, dtype))
        final = final._replace(refractory_until=jnp.full((size,), -jnp.inf, dtype))
        return final, output, LIRecording(membrane=output)

    return named_layer(init, apply, label)
