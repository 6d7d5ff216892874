"""Discrete-time current-based leaky integrate-and-fire layers: ``LIF``, ``LI``, ``RecurrentLIF``.

The neuron (``jaxsnn.discrete.dynamics``), per time step ``t`` with ``a = exp(-dt / tau)`` and
input scale ``g`` (default ``1 - a_mem``)::

    I_t = a_syn * I_{t-1} + x_t @ W              (+ z_{t-1} @ W_rec for RecurrentLIF)
    u_t = v_leak + a_mem * (v_{t-1} - v_leak) + g * I_t
    z_t = H(u_t - v_th)                          (H(0) = 0; surrogate derivative backward)
    v_t = u_t - z_t (v_th - v_reset)  ("subtract")  or  v_reset where z_t = 1  ("hard")

``tau_syn = 0`` is the single-state neuron ``I_t = x_t @ W``; with ``input_scale = 1`` and
``v_leak = 0`` it is ``v_t = beta v_{t-1} + x_t @ W`` (snnTorch ``Leaky``, Spyx/Slax ``LIF``).
The output at step ``t`` is ``z_t`` (``LI``: ``v_t``, no threshold). Rest is ``v = v_leak``,
``I = 0``; ``carry`` holds the state after the last step, so a window simulated in chunks equals
the window simulated at once.

Speed: a feed-forward layer computes ``x @ W`` for the whole window in one matrix multiply
(batched by ``jax.vmap`` into one ``(batch * time, n_in) @ (n_in, size)`` product) and scans
only the elementwise update. ``LIF`` differentiates that scan with a hand-written adjoint
(``jax.custom_vjp``): the forward pass keeps only the pre-reset membrane ``(time, size)`` and
the backward pass is one reverse elementwise scan, so backpropagation through time stores one
array of the window's size and never copies weights per step.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp

from jaxsnn._validate import check_finite, check_float_dtype
from jaxsnn.discrete._common import (
    Features,
    check_inputs,
    check_no_external,
    feature_shape,
    format_size,
    input_shape_tuple,
)
from jaxsnn.discrete.dynamics import (
    LIFConfig,
    LIFState,
    RecurrentLIFState,
    check_backward,
    li_scan,
    lif_config,
    lif_scan,
    recurrent_lif_scan,
    rest_state,
)
from jaxsnn.initializers import WeightInit, default_dtype, init_weight, make_weight_init
from jaxsnn.types import Layer, named_layer

Array = jax.Array

__all__ = ["LI", "LIF", "LIFRecording", "LIRecording", "RecurrentLIF"]


class LIFRecording(NamedTuple):
    """What a discrete ``LIF``/``RecurrentLIF`` layer records: dense ``(time, ...)`` arrays.

    Not ``jaxsnn.event.LIFRecording``, which holds a ``Spikes`` event buffer and an overflow
    flag: here spikes are a dense 0/1 array on the time grid and there is no capacity.

    Attributes:
        spikes: ``(time, *features)`` spikes (0/1 in the input dtype).
        v: ``(time, *features)`` membrane after reset when ``record_membrane=True``, else ``None``.
    """

    spikes: Array
    v: Optional[Array] = None


class LIRecording(NamedTuple):
    """What a discrete ``LI`` layer records (the event ``LIRecording`` has ``membrane``).

    Attributes:
        v: ``(time, *features)`` membrane trace (also the layer's output).
    """

    v: Array


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
    if weight is None:
        return inputs
    if inputs.shape[0] == 1:
        # one step (the online rules' per-step calls, vectorised over steps and samples):
        # without the unit time axis the batched weight product needs no transposed copies
        return jnp.matmul(inputs[0], weight)[None]
    return jnp.matmul(inputs, weight)


def _initial(config: LIFConfig, carry: Any, dtype: Any, features: Tuple[int, ...]):
    if carry is None:
        return rest_state(config, features, dtype)
    return tuple(jnp.asarray(c, dtype) for c in carry[:2])


# The numeric cores are jitted with the (hashable) neuron constants static: eager callers get
# one compiled program per configuration, and inside a caller's jit they are inlined.
@functools.partial(jax.jit, static_argnums=(0, 1))
def _lif_core(config: LIFConfig, backward: str, weight, inputs, carry):
    drive = _drive(weight, inputs)
    v0, i0 = _initial(config, carry, drive.dtype, drive.shape[1:])
    spikes, trace, v_last, i_last = lif_scan(config, drive, v0, i0, backward)
    return LIFState(v_last, i_last), spikes, LIFRecording(spikes, trace)


@functools.partial(jax.jit, static_argnums=(0,))
def _li_core(config: LIFConfig, weight, inputs, carry):
    drive = _drive(weight, inputs)
    v0, i0 = _initial(config, carry, drive.dtype, drive.shape[1:])
    trace, v_last, i_last = li_scan(config, drive, v0, i0)
    return LIFState(v_last, i_last), trace, LIRecording(trace)


@functools.partial(jax.jit, static_argnums=(0,))
def _recurrent_core(config: LIFConfig, weight, w_rec, inputs, carry):
    drive = _drive(weight, inputs)
    dtype = jnp.result_type(drive.dtype, w_rec.dtype)
    drive = drive.astype(dtype)
    w_rec = w_rec.astype(dtype)
    features = drive.shape[1:]
    v0, i0 = _initial(config, carry, dtype, features)
    z0 = jnp.zeros(features, dtype) if carry is None else jnp.asarray(carry[2], dtype)
    spikes, trace, v_last, i_last, z_last = recurrent_lif_scan(config, drive, w_rec, v0, i0, z0)
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
    config = lif_config(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        dt=dt,
        v_th=v_th,
        v_reset=v_reset,
        v_leak=v_leak,
        reset=reset,
        surrogate=surrogate,
        input_scale=input_scale,
        record_membrane=record_membrane,
        unroll=unroll,
    )
    backward = check_backward(backward)
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
    config = lif_config(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        dt=dt,
        v_leak=v_leak,
        input_scale=input_scale,
        unroll=unroll,
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
    config = lif_config(
        tau_syn=tau_syn,
        tau_mem=tau_mem,
        dt=dt,
        v_th=v_th,
        v_reset=v_reset,
        v_leak=v_leak,
        reset=reset,
        surrogate=surrogate,
        input_scale=input_scale,
        record_membrane=record_membrane,
        unroll=unroll,
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
