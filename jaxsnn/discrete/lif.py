"""Discrete-time current-based leaky integrate-and-fire layers: ``LIF``, ``LI``, ``RecurrentLIF``.

Per time step ``t`` (``a_syn = exp(-dt / tau_syn)``, ``a_mem = exp(-dt / tau_mem)``, input scale
``g = 1 - a_mem`` unless ``input_scale`` is given)::

    I_t = a_syn * I_{t-1} + x_t @ W              (+ z_{t-1} @ W_rec for RecurrentLIF)
    v_t = v_leak + a_mem * (v_{t-1} - v_leak) + g * I_t
    z_t = H(v_t - v_th)                          (H(0) = 0; surrogate derivative backward)
    "subtract": v_t <- v_t - z_t * (v_th - v_reset)
    "hard":     v_t <- v_t + z_t * (v_reset - v_t)

The output at step ``t`` is ``z_t`` (``LI``: ``v_t``, no threshold). Rest is ``v = v_leak``,
``I = 0``; ``carry`` holds the state after the last step, so a window simulated in chunks equals
the window simulated at once.

Single-state neurons: ``tau_syn=0`` means no synaptic filter (``a_syn = 0``, ``I_t = x_t @ W``),
the neuron of most online-learning papers, snnTorch ``Leaky``, Spyx ``LIF`` and Slax ``LIF``.
With the default ``g = 1 - a_mem`` it is the ``tau_syn -> 0`` limit of the two-state neuron
(``v_t = v_leak + a_mem (v_{t-1} - v_leak) + (1 - a_mem) x_t W``); ``input_scale=1.0`` with
``v_leak = 0`` gives the common form ``v_t = beta v_{t-1} + x_t W`` with ``beta = a_mem``
(``tau_mem = tau_from_decay(beta, dt)``), so weights mean the same as in those libraries. The
state keeps its ``current`` field (the last step's ``x_t @ W``), which then no longer influences
later steps.

Speed: a feed-forward layer computes ``x @ W`` for the whole window in one matrix multiply
(batched by ``jax.vmap`` into one ``(batch * time, n_in) @ (n_in, size)`` product) and scans
only the elementwise update. ``LIF`` differentiates that scan with a hand-written adjoint
(``jax.custom_vjp``): the forward pass keeps only the pre-reset membrane ``(time, size)`` and
the backward pass is one reverse elementwise scan, so backpropagation through time stores one
array of the window's size and never copies weights per step.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax

from jaxsnn._validate import (
    check_finite,
    check_float_dtype,
    positive_int,
    positive_scalar,
    real_scalar,
)
from jaxsnn.discrete import surrogate as surrogate_lib
from jaxsnn.discrete._common import (
    Features,
    check_inputs,
    check_no_external,
    feature_shape,
    format_size,
    input_shape_tuple,
)
from jaxsnn.initializers import WeightInit, default_dtype, init_weight, make_weight_init
from jaxsnn.types import Layer, named_layer

Array = jax.Array

__all__ = [
    "LI",
    "LIF",
    "LIFRecording",
    "LIFState",
    "LIRecording",
    "RecurrentLIF",
    "RecurrentLIFState",
    "decay_factors",
    "lif_dynamics",
    "tau_from_decay",
]

_RESETS = ("subtract", "hard")
_BACKWARDS = ("adjoint", "autodiff")


class LIFState(NamedTuple):
    """State of an ``LIF`` or ``LI`` layer (``carry``): arrays shaped like the layer's features.

    Attributes:
        v: membrane potential after the last step (after reset).
        current: synaptic current ``I`` after the last step.
    """

    v: Array
    current: Array


class RecurrentLIFState(NamedTuple):
    """State of a ``RecurrentLIF`` layer (``carry``).

    Attributes:
        v: membrane potential after the last step (after reset).
        current: synaptic current after the last step.
        spikes: spikes of the last step (they reach the layer through ``W_rec`` next step).
    """

    v: Array
    current: Array
    spikes: Array


class LIFRecording(NamedTuple):
    """What an ``LIF``/``RecurrentLIF`` layer records.

    Attributes:
        spikes: ``(time, *features)`` spikes (0/1 in the input dtype).
        v: ``(time, *features)`` membrane after reset when ``record_membrane=True``, else ``None``.
    """

    spikes: Array
    v: Optional[Array] = None


class LIRecording(NamedTuple):
    """What an ``LI`` layer records.

    Attributes:
        v: ``(time, *features)`` membrane trace (also the layer's output).
    """

    v: Array


def decay_factors(tau_syn: float, tau_mem: float, dt: float) -> Tuple[float, float]:
    """Per-step decay factors of the current and the membrane.

    Args:
        tau_syn: synaptic time constant, >= 0 (0: no synaptic filter, ``a_syn = 0``).
        tau_mem: membrane time constant, > 0.
        dt: time step, > 0 (same unit as the time constants).

    Returns:
        ``(a_syn, a_mem) = (exp(-dt / tau_syn), exp(-dt / tau_mem))``; ``a_syn = 0`` for
        ``tau_syn = 0``.

    Raises:
        ValueError: if ``tau_mem`` or ``dt`` is not finite and > 0, or ``tau_syn`` is not
            finite and >= 0.
    """
    tau_syn = real_scalar("tau_syn", tau_syn)
    if tau_syn < 0:
        raise ValueError(
            f"tau_syn must be >= 0 (0 for a neuron without synaptic filter), got {tau_syn!r}"
        )
    tau_mem = positive_scalar("tau_mem", tau_mem)
    dt = positive_scalar("dt", dt)
    a_syn = 0.0 if tau_syn == 0 else math.exp(-dt / tau_syn)
    return a_syn, math.exp(-dt / tau_mem)


def tau_from_decay(decay: float, dt: float = 1.0) -> float:
    """The time constant whose per-step decay factor is ``decay``: ``-dt / log(decay)``.

    For neurons specified by a decay per step (``v_t = beta v_{t-1} + ...``), e.g.
    ``LIF(n, tau_syn=0, tau_mem=tau_from_decay(0.881), dt=1.0, input_scale=1.0)``.

    Args:
        decay: decay factor per step, in ``(0, 1)``.
        dt: time step, > 0.

    Returns:
        ``tau`` with ``exp(-dt / tau) == decay`` (to rounding).

    Raises:
        ValueError: if ``decay`` is not in ``(0, 1)`` or ``dt`` is not finite and > 0.
    """
    decay = real_scalar("decay", decay)
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay must be in (0, 1) (a factor per step), got {decay!r}")
    return -positive_scalar("dt", dt) / math.log(decay)


class _Config(NamedTuple):
    """Static (hashable) neuron constants, used as a non-differentiable argument."""

    a_syn: float
    a_mem: float
    input_scale: float
    v_th: float
    v_reset: float
    v_leak: float
    reset: str
    spike_fn: Callable[[Array], Array]
    record_membrane: bool
    unroll: int


def _membrane(config: _Config, v: Array, current: Array) -> Array:
    return config.v_leak + config.a_mem * (v - config.v_leak) + config.input_scale * current


def _current(config: _Config, current: Array, drive: Array) -> Array:
    # tau_syn = 0: the current is this step's drive (static branch, no multiply by zero).
    return drive if config.a_syn == 0.0 else config.a_syn * current + drive


def _after_reset(config: _Config, u: Array, z: Array) -> Array:
    if config.reset == "subtract":
        return u - z * (config.v_th - config.v_reset)
    return u + z * (config.v_reset - u)


def _forward_scan(config: _Config, currents: Array, v0: Array, i0: Array, spike_fn):
    """The forward recurrence; returns ((v_T, I_T), (spikes, pre-reset membrane, trace))."""

    def body(state, drive):
        v, current = state
        current = _current(config, current, drive)
        u = _membrane(config, v, current)
        z = spike_fn(u - config.v_th)
        v = _after_reset(config, u, z)
        trace = v if config.record_membrane else None
        return (v, current), (z, u, trace)

    return lax.scan(body, (v0, i0), currents, unroll=config.unroll)


def _outputs(config: _Config, final, ys):
    (v_last, i_last), (spikes, _, trace) = final, ys
    return spikes, trace, v_last, i_last


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lif_adjoint(config: _Config, currents: Array, v0: Array, i0: Array):
    final, ys = _forward_scan(config, currents, v0, i0, surrogate_lib.step)
    return _outputs(config, final, ys)


def _lif_adjoint_fwd(config: _Config, currents: Array, v0: Array, i0: Array):
    final, ys = _forward_scan(config, currents, v0, i0, surrogate_lib.step)
    # The pre-reset membrane u is the only residual: spikes and surrogate derivatives are
    # recomputed from it in the backward scan (cheap elementwise work instead of memory).
    return _outputs(config, final, ys), ys[1]


def _lif_adjoint_bwd(config: _Config, u_trace: Array, cotangents):
    g_spikes, g_trace, g_v_last, g_i_last = cotangents
    spike_fn = config.spike_fn
    ones = jnp.ones_like(u_trace[0])

    def surrogate_and_spike(x):
        z, sigma = jax.jvp(spike_fn, (x,), (ones,))
        return z, sigma

    def body(adjoint, inputs):
        lam_v, lam_i = adjoint
        if config.record_membrane:
            u, g_z, g_m = inputs
            lam_v = lam_v + g_m
        else:
            u, g_z = inputs
        z, sigma = surrogate_and_spike(u - config.v_th)
        if config.reset == "subtract":
            dv_du = 1.0 - (config.v_th - config.v_reset) * sigma
        else:
            dv_du = (1.0 - z) + (config.v_reset - u) * sigma
        lam_u = lam_v * dv_du + g_z * sigma
        lam_i = lam_i + config.input_scale * lam_u
        return (config.a_mem * lam_u, config.a_syn * lam_i), lam_i

    xs = (u_trace, g_spikes, g_trace) if config.record_membrane else (u_trace, g_spikes)
    (g_v0, g_i0), g_currents = lax.scan(
        body, (g_v_last, g_i_last), xs, reverse=True, unroll=config.unroll
    )
    return g_currents, g_v0, g_i0


_lif_adjoint.defvjp(_lif_adjoint_fwd, _lif_adjoint_bwd)


def _lif_autodiff(config: _Config, currents: Array, v0: Array, i0: Array):
    final, ys = _forward_scan(config, currents, v0, i0, config.spike_fn)
    return _outputs(config, final, ys)


def lif_dynamics(
    currents: Array,
    v0: Array,
    i0: Array,
    *,
    tau_syn: float,
    tau_mem: float,
    dt: float,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    v_leak: float = 0.0,
    reset: str = "subtract",
    surrogate: Union[str, Callable[[Array], Array]] = "superspike",
    input_scale: Optional[float] = None,
    record_membrane: bool = False,
    backward: str = "adjoint",
    unroll: int = 1,
):
    """Elementwise LIF recurrence driven by precomputed input currents ``x_t @ W``.

    Args:
        currents: ``(time, *features)`` input drive per step.
        v0: initial membrane, shape ``features``.
        i0: initial synaptic current, shape ``features``.
        tau_syn, tau_mem, dt, v_th, v_reset, v_leak, reset, surrogate, input_scale: see
            ``LIF``.
        record_membrane: also return the post-reset membrane trace.
        backward: ``"adjoint"`` (hand-written reverse scan, stores only the pre-reset
            membrane; reverse mode only) or ``"autodiff"`` (JAX differentiates the scan; also
            supports forward mode).
        unroll: time steps per loop iteration of the scans.

    Returns:
        ``(spikes, trace, v_last, i_last)``: spikes ``(time, *features)``, the trace (or
        ``None``) and the state after the last step.

    Raises:
        ValueError: for invalid constants, an unknown ``reset``/``backward``/surrogate name.
    """
    config = _make_config(
        tau_syn,
        tau_mem,
        dt,
        v_th,
        v_reset,
        v_leak,
        reset,
        surrogate,
        record_membrane,
        unroll,
        input_scale=input_scale,
    )
    return _run_lif(config, _check_backward(backward), currents, v0, i0)


def _run_lif(config: _Config, backward: str, currents: Array, v0: Array, i0: Array):
    dtype = currents.dtype
    v0 = jnp.asarray(v0, dtype)
    i0 = jnp.asarray(i0, dtype)
    if backward == "adjoint":
        return _lif_adjoint(config, currents, v0, i0)
    return _lif_autodiff(config, currents, v0, i0)


def _check_backward(backward: str) -> str:
    if backward not in _BACKWARDS:
        raise ValueError(f"backward must be one of {_BACKWARDS}, got {backward!r}")
    return backward


def _make_config(
    tau_syn,
    tau_mem,
    dt,
    v_th,
    v_reset,
    v_leak,
    reset,
    surrogate,
    record_membrane,
    unroll,
    *,
    input_scale: Optional[float] = None,
    spiking: bool = True,
) -> _Config:
    a_syn, a_mem = decay_factors(tau_syn, tau_mem, dt)
    if input_scale is None:
        input_scale = 1.0 - a_mem
    else:
        input_scale = positive_scalar("input_scale", input_scale)
    v_th = real_scalar("v_th", v_th)
    v_reset = real_scalar("v_reset", v_reset)
    v_leak = real_scalar("v_leak", v_leak)
    if spiking:
        if reset not in _RESETS:
            raise ValueError(f"reset must be one of {_RESETS}, got {reset!r}")
        if v_th <= v_reset:
            raise ValueError(
                f"v_th must be > v_reset (a reset must lower the membrane), got v_th={v_th}, "
                f"v_reset={v_reset}"
            )
        spike_fn = surrogate_lib.get(surrogate)
    else:
        spike_fn = surrogate_lib.step
    if not isinstance(record_membrane, bool):
        raise TypeError(f"record_membrane must be a bool, got {type(record_membrane).__name__}")
    unroll = positive_int("unroll", unroll)
    return _Config(
        a_syn, a_mem, input_scale, v_th, v_reset, v_leak, reset, spike_fn, record_membrane, unroll
    )


def _rest_state(config: _Config, features: Tuple[int, ...], dtype: Any) -> Tuple[Array, Array]:
    return jnp.full(features, config.v_leak, dtype), jnp.zeros(features, dtype)


def _check_carry(
    label: str, carry: Any, features: Tuple[int, ...], n_fields: int
) -> Tuple[Array, ...]:
    if not isinstance(carry, tuple) or len(carry) != n_fields:
        expected = "(v, current)" if n_fields == 2 else "(v, current, spikes)"
        raise ValueError(
            f"{label}: carry must be None (rest) or the state tuple {expected} returned by a "
            f"previous call, got {type(carry).__name__}"
        )
    for field, value in zip(("v", "current", "spikes"), carry):
        check_float_dtype(f"{label}: carry.{field}", value)
        if tuple(jnp.shape(value)) != tuple(features):
            raise ValueError(
                f"{label}: carry.{field} has shape {tuple(jnp.shape(value))}, expected "
                f"{tuple(features)} (per sample; batch with jax.vmap)"
            )
    check_finite(f"{label}: carry", carry)
    return tuple(carry)


class _Projection(NamedTuple):
    """How a layer maps its input to per-step drive: ``x @ W`` or the identity."""

    project: bool
    init: WeightInit
    dtype: Any


def _layer_init(label: str, features: Tuple[int, ...], projection: _Projection):
    """Shared ``init`` of LIF/LI: ``W (n_in, size)`` with ``project``, else no parameters."""

    def init(rng: jax.Array, input_shape: Tuple[int, ...]):
        if projection.project:
            shape = input_shape_tuple(label, input_shape, 2, "(time, features)")
            if len(shape) != 2:
                raise ValueError(
                    f"{label} with project=True takes (time, features) inputs, got {shape}; "
                    "flatten first or use project=False after a Dense/Conv layer"
                )
            weight = init_weight(
                label, rng, (shape[1], features[0]), projection.dtype, projection.init
            )
            return (shape[0],) + features, {"weight": weight}
        shape = input_shape_tuple(
            label, input_shape, 1 + len(features), f"(time, {', '.join(map(str, features))})"
        )
        if shape[1:] != features:
            raise ValueError(
                f"{label} with project=False has no weights, so its input features must equal its "
                f"size {features}, got input shape {shape}; put a Dense/Conv layer before it or "
                "use project=True"
            )
        return shape, {}

    return init


def _checked_weight(label: str, params: Any, inputs: Any, features: Tuple[int, ...], project: bool):
    """Validate ``params``/``inputs``; return the input weight (``None`` without projection)."""
    if not isinstance(params, dict):
        raise TypeError(
            f"{label}: params must be the dict returned by init, got {type(params).__name__}"
        )
    if project:
        if "weight" not in params:
            raise ValueError(f"{label}: params has no 'weight' (was it built with project=False?)")
        weight = params["weight"]
        check_float_dtype(f"{label}: params['weight']", weight)
        if jnp.ndim(weight) != 2 or jnp.shape(weight)[1] != features[0]:
            raise ValueError(
                f"{label}: params['weight'] has shape {tuple(jnp.shape(weight))}, expected "
                f"(n_in, {features[0]})"
            )
        check_finite(f"{label}: params['weight']", weight)
        check_inputs(label, inputs, (jnp.shape(weight)[0],))
        return weight
    extra = sorted(k for k in params if k != "recurrent_weight")
    if extra:
        raise ValueError(f"{label} with project=False has no input weights, got keys {extra}")
    check_inputs(label, inputs, features)
    return None


def _drive(weight: Optional[Array], inputs: Array) -> Array:
    return inputs if weight is None else jnp.matmul(inputs, weight)


def _initial(config: _Config, carry: Any, dtype: Any, features: Tuple[int, ...]):
    if carry is None:
        return _rest_state(config, features, dtype)
    return tuple(jnp.asarray(c, dtype) for c in carry[:2])


# The numeric cores are jitted with the (hashable) neuron constants static: eager callers get
# one compiled program per configuration, and inside a caller's jit they are inlined.
@functools.partial(jax.jit, static_argnums=(0, 1))
def _lif_core(config: _Config, backward: str, weight, inputs, carry):
    drive = _drive(weight, inputs)
    v0, i0 = _initial(config, carry, drive.dtype, drive.shape[1:])
    spikes, trace, v_last, i_last = _run_lif(config, backward, drive, v0, i0)
    return LIFState(v_last, i_last), spikes, LIFRecording(spikes, trace)


@functools.partial(jax.jit, static_argnums=(0,))
def _li_core(config: _Config, weight, inputs, carry):
    drive = _drive(weight, inputs)
    v0, i0 = _initial(config, carry, drive.dtype, drive.shape[1:])

    def body(state, x):
        v, current = state
        current = _current(config, current, x)
        v = _membrane(config, v, current)
        return (v, current), v

    (v_last, i_last), trace = lax.scan(body, (v0, i0), drive, unroll=config.unroll)
    return LIFState(v_last, i_last), trace, LIRecording(trace)


@functools.partial(jax.jit, static_argnums=(0,))
def _recurrent_core(config: _Config, weight, w_rec, inputs, carry):
    drive = _drive(weight, inputs)
    dtype = jnp.result_type(drive.dtype, w_rec.dtype)
    drive = drive.astype(dtype)
    w_rec = w_rec.astype(dtype)
    features = drive.shape[1:]
    v0, i0 = _initial(config, carry, dtype, features)
    z0 = jnp.zeros(features, dtype) if carry is None else jnp.asarray(carry[2], dtype)

    def body(state, x):
        v, current, z_prev = state
        current = _current(config, current, x + jnp.matmul(z_prev, w_rec))
        u = _membrane(config, v, current)
        z = config.spike_fn(u - config.v_th)
        v = _after_reset(config, u, z)
        trace = v if config.record_membrane else None
        return (v, current, z), (z, trace)

    (v_last, i_last, z_last), (spikes, trace) = lax.scan(
        body, (v0, i0, z0), drive, unroll=config.unroll
    )
    return RecurrentLIFState(v_last, i_last, z_last), spikes, LIFRecording(spikes, trace)


def LIF(
    size: Features,
    *,
    tau_syn: float,
    tau_mem: float,
    dt: float,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    v_leak: float = 0.0,
    reset: str = "subtract",
    surrogate: Union[str, Callable[[Array], Array]] = "superspike",
    input_scale: Optional[float] = None,
    project: bool = True,
    weight_init: Optional[WeightInit] = None,
    weight_scale: float = 1.0,
    weight_mean: float = 0.0,
    dtype: Any = None,
    record_membrane: bool = False,
    backward: str = "adjoint",
    unroll: int = 1,
) -> Layer:
    """A population of discrete-time current-based LIF neurons (see the module docstring).

    Args:
        size: number of neurons; with ``project=False`` also a tuple (e.g. ``(H, W, C)`` after
            a ``Conv``).
        tau_syn: synaptic time constant, >= 0; ``0`` removes the synaptic filter
            (single-state neuron, ``I_t = x_t @ W``).
        tau_mem: membrane time constant, > 0.
        dt: time step, > 0, in the unit of the time constants.
        v_th: threshold (> ``v_reset``).
        v_reset: membrane value after a spike (``"hard"``) or the value ``v_th - v_reset``
            is subtracted (``"subtract"``).
        v_leak: resting potential.
        reset: ``"subtract"`` or ``"hard"``.
        surrogate: a name from ``surrogate.names()`` or a spike function such as
            ``surrogate.superspike(25.0)``.
        input_scale: factor ``g`` of ``I_t`` in the membrane update, > 0; default
            ``1 - a_mem``. ``tau_syn=0, input_scale=1.0, v_leak=0`` is the common
            ``v_t = beta v_{t-1} + x_t @ W`` (snnTorch ``Leaky``, Spyx/Slax ``LIF``).
        project: own a weight ``W (n_in, size)`` and drive the neurons with ``x_t @ W``; with
            ``False`` the input is the drive itself and must have ``size`` features.
        weight_init: ``(key, shape, dtype) -> W``; default
            ``weight_mean + weight_scale * N(0, 1) / sqrt(n_in)``.
        weight_scale, weight_mean: parameters of the default initialiser.
        dtype: parameter dtype (default float32, float64 under x64).
        record_membrane: also record the membrane trace (after reset).
        backward: ``"adjoint"`` (default, memory-lean custom reverse pass; no forward-mode
            autodiff) or ``"autodiff"`` (JAX differentiates the scan).
        unroll: time steps per loop iteration of the scan.

    Returns:
        A ``Layer``. ``apply(params, inputs (time, n_in), external=None, carry=None)`` returns
        ``(LIFState, spikes (time, *size), LIFRecording)``.

    Raises:
        ValueError: bad constants (``tau_syn < 0``, ``tau_mem`` or ``dt`` <= 0,
            ``input_scale <= 0``, ``v_th <= v_reset``),
            unknown ``reset``/``surrogate``/``backward``; at ``init``, an input shape that does
            not fit; at ``apply``, inputs/params/carry of the wrong shape or with NaN/inf.
        TypeError: non-float inputs or parameters.
    """
    features = feature_shape("size", size)
    if project and len(features) != 1:
        raise ValueError(f"size must be an int with project=True, got {size!r}")
    config = _make_config(
        tau_syn,
        tau_mem,
        dt,
        v_th,
        v_reset,
        v_leak,
        reset,
        surrogate,
        record_membrane,
        unroll,
        input_scale=input_scale,
    )
    backward = _check_backward(backward)
    label = f"LIF({format_size(features)})"
    projection = _Projection(
        bool(project),
        make_weight_init(weight_init, weight_scale, weight_mean),
        default_dtype(dtype),
    )

    def apply(params, inputs, external=None, carry=None):
        check_no_external(label, external)
        weight = _checked_weight(label, params, inputs, features, projection.project)
        if carry is not None:
            carry = _check_carry(label, carry, features, 2)
        return _lif_core(config, backward, weight, inputs, carry)

    return named_layer(_layer_init(label, features, projection), apply, label)


def LI(
    size: Features,
    *,
    tau_syn: float,
    tau_mem: float,
    dt: float,
    v_leak: float = 0.0,
    input_scale: Optional[float] = None,
    project: bool = True,
    weight_init: Optional[WeightInit] = None,
    weight_scale: float = 1.0,
    weight_mean: float = 0.0,
    dtype: Any = None,
    unroll: int = 1,
) -> Layer:
    """Leaky-integrator readout: the LIF update without threshold; outputs the membrane trace.

    Args:
        size: number of neurons (a tuple is allowed with ``project=False``).
        tau_syn, tau_mem, dt: time constants and step (``tau_syn >= 0``, the others > 0).
        v_leak: resting potential.
        input_scale: as for ``LIF``.
        project, weight_init, weight_scale, weight_mean, dtype, unroll: as for ``LIF``.

    Returns:
        A ``Layer``. ``apply(params, inputs, external=None, carry=None)`` returns
        ``(LIFState, v (time, *size), LIRecording)``.

    Raises:
        ValueError, TypeError: as for ``LIF``.
    """
    features = feature_shape("size", size)
    if project and len(features) != 1:
        raise ValueError(f"size must be an int with project=True, got {size!r}")
    config = _make_config(
        tau_syn,
        tau_mem,
        dt,
        1.0,
        0.0,
        v_leak,
        "subtract",
        "heaviside",
        False,
        unroll,
        input_scale=input_scale,
        spiking=False,
    )
    label = f"LI({format_size(features)})"
    projection = _Projection(
        bool(project),
        make_weight_init(weight_init, weight_scale, weight_mean),
        default_dtype(dtype),
    )

    def apply(params, inputs, external=None, carry=None):
        check_no_external(label, external)
        weight = _checked_weight(label, params, inputs, features, projection.project)
        if carry is not None:
            carry = _check_carry(label, carry, features, 2)
        return _li_core(config, weight, inputs, carry)

    return named_layer(_layer_init(label, features, projection), apply, label)


def RecurrentLIF(
    size: int,
    *,
    tau_syn: float,
    tau_mem: float,
    dt: float,
    v_th: float = 1.0,
    v_reset: float = 0.0,
    v_leak: float = 0.0,
    reset: str = "subtract",
    surrogate: Union[str, Callable[[Array], Array]] = "superspike",
    input_scale: Optional[float] = None,
    project: bool = True,
    weight_init: Optional[WeightInit] = None,
    weight_scale: float = 1.0,
    weight_mean: float = 0.0,
    recurrent_init: Optional[WeightInit] = None,
    recurrent_scale: float = 1.0,
    recurrent_mean: float = 0.0,
    dtype: Any = None,
    record_membrane: bool = False,
    unroll: int = 1,
) -> Layer:
    """LIF population with all-to-all recurrent weights: ``I_t += z_{t-1} @ W_rec``.

    The input drive ``x @ W`` is still one matrix multiply for the window; the recurrent
    term needs one ``(size, size)`` product per step. Gradients are JAX's reverse mode through
    the scan with the surrogate derivative.

    Args:
        size: number of neurons.
        tau_syn, tau_mem, dt, v_th, v_reset, v_leak, reset, surrogate, input_scale, project,
            weight_init, weight_scale, weight_mean, dtype, record_membrane, unroll: as for
            ``LIF``.
        recurrent_init: ``(key, shape, dtype) -> W_rec``; default
            ``recurrent_mean + recurrent_scale * N(0, 1) / sqrt(size)``.
        recurrent_scale, recurrent_mean: parameters of the default recurrent initialiser.

    Returns:
        A ``Layer`` with params ``{"weight": (n_in, size), "recurrent_weight": (size, size)}``
        (no ``"weight"`` with ``project=False``); ``apply`` returns
        ``(RecurrentLIFState, spikes (time, size), LIFRecording)``.

    Raises:
        ValueError, TypeError: as for ``LIF``.
    """
    features = feature_shape("size", size)
    if len(features) != 1:
        raise ValueError(f"size must be an int, got {size!r}")
    config = _make_config(
        tau_syn,
        tau_mem,
        dt,
        v_th,
        v_reset,
        v_leak,
        reset,
        surrogate,
        record_membrane,
        unroll,
        input_scale=input_scale,
    )
    label = f"RecurrentLIF({features[0]})"
    projection = _Projection(
        bool(project),
        make_weight_init(weight_init, weight_scale, weight_mean),
        default_dtype(dtype),
    )
    rec_init = make_weight_init(recurrent_init, recurrent_scale, recurrent_mean)
    base_init = _layer_init(label, features, projection)

    def init(rng: jax.Array, input_shape: Tuple[int, ...]):
        key_in, key_rec = jax.random.split(rng)
        output_shape, params = base_init(key_in, input_shape)
        params = dict(params)
        params["recurrent_weight"] = init_weight(
            label, key_rec, (features[0], features[0]), projection.dtype, rec_init
        )
        return output_shape, params

    def apply(params, inputs, external=None, carry=None):
        check_no_external(label, external)
        if not isinstance(params, dict) or "recurrent_weight" not in params:
            raise ValueError(f"{label}: params must be a dict with key 'recurrent_weight'")
        w_rec = params["recurrent_weight"]
        check_float_dtype(f"{label}: params['recurrent_weight']", w_rec)
        if tuple(jnp.shape(w_rec)) != (features[0], features[0]):
            raise ValueError(
                f"{label}: params['recurrent_weight'] has shape {tuple(jnp.shape(w_rec))}, "
                f"expected {(features[0], features[0])}"
            )
        check_finite(f"{label}: params['recurrent_weight']", w_rec)
        weight = _checked_weight(label, params, inputs, features, projection.project)
        if carry is not None:
            carry = _check_carry(label, carry, features, 3)
        return _recurrent_core(config, weight, w_rec, inputs, carry)

    return named_layer(init, apply, label)
