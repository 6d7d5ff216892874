"""A convolution fused into the LIF scan: ``ConvLIF``.

``ConvLIF(out_channels, kernel_size, ..., tau_syn=..., tau_mem=..., dt=...)`` is
``serial(Conv(out_channels, kernel_size, ...), LIF((H', W', out_channels), project=False, ...))``
computed differently: one scan over time convolves each step's input inside the LIF update, so
the step's drive ``d_t = conv(x_t, W)`` is consumed by the neurons while it is still in cache
instead of being written for the whole window and read back. Per step ``t``::

    d_t = conv(x_t, W) (+ b)
    I_t = a_syn * I_{t-1} + d_t
    u_t = v_leak + a_mem * (v_{t-1} - v_leak) + g * I_t
    z_t = H(u_t - v_th);  v_t = reset(u_t, z_t)           (see jaxsnn.discrete.dynamics)

Backward (``jax.custom_vjp``, hand-written adjoint): the forward pass keeps only the pre-reset
membrane ``u`` (one array of the window's size; the input is kept by the caller anyway), and
one reverse scan computes, per step, the adjoint of the neuron
(``dL/dd_t = lam_I_t`` as in ``jaxsnn.discrete.dynamics``) and the input gradient
``dL/dx_t = conv^T(dL/dd_t, W)``; the weight gradient
``dL/dW[i, j, c, o] = sum_{t, y, x} xpad[t, s y + i, s x + j, c] dL/dd[t, y, x, o]`` is
accumulated as products of image patches with ``dL/dd``. Only the cotangents in use are
computed (``symbolic_zeros``): no ``conv^T`` for an input that is not differentiated, such as
the data into a first layer, and no patch products for frozen parameters. Without AD and without a membrane
recording, the scan emits the spikes themselves, so no membrane trace of the window's size is
written and read back (``cnn_pool`` forward 0.60 s -> 0.41 s, ``cnn48`` 1.00 s -> 0.72 s, T = 100,
batch 32, 2 cores).

How a step is convolved (static, chosen from the kernel): XLA's ``lax.conv_general_dilated``,
or, for few input taps (``kh * kw * C_in <= 32``, e.g. a 3x3 kernel on 2-channel event-camera
frames), a direct sum of ``kh * kw * C_in`` shifted input slices times weight rows, which XLA
fuses with the neuron update into one loop (XLA's convolution is slow for so few input
channels).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero

from jaxsnn._validate import check_finite, check_float_dtype, positive_int
from jaxsnn.discrete import surrogate as surrogate_lib
from jaxsnn.discrete._common import check_inputs, check_no_external, input_shape_tuple
from jaxsnn.discrete.conv import (
    _conv_spec,
    _ConvSpec,
    _padding,
    _pair,
    _patch_weight_gradient,
    _xla_conv,
    init_conv_params,
)
from jaxsnn.discrete.dynamics import (
    LIFConfig,
    LIFState,
    _after_reset,
    _current,
    _membrane,
    lif_config,
)
from jaxsnn.discrete.lif import LIFRecording, _check_carry
from jaxsnn.initializers import WeightInit, default_dtype, make_weight_init
from jaxsnn.types import Layer, named_layer

Array = jax.Array

__all__ = ["ConvLIF"]

_METHODS = ("auto", "direct", "xla")
_WEIGHT_GRADIENTS = ("scan", "bands")
#: Largest ``kh * kw * C_in`` convolved as a direct sum of shifted slices by ``method="auto"``.
_DIRECT_TAPS = 32


class _Plan(NamedTuple):
    """Static description of the per-step convolution (hashable: a ``custom_vjp`` argument)."""

    spec: _ConvSpec
    method: str  # "direct" or "xla"
    weight_gradient: str  # "scan" (in the reverse scan) or "bands" (after it)
    bias: bool


def _direct_conv(spec: _ConvSpec, inputs: Array, weight: Array) -> Array:
    """``sum_{i, j, c} xpad[:, s y + i, s x + j, c] * W[i, j, c, :]``, inputs ``(n, H, W, C)``."""
    (top, bottom), (left, right) = spec.pads
    zero = jnp.zeros((), inputs.dtype)
    padded = lax.pad(inputs, zero, ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
    n, channels = inputs.shape[0], inputs.shape[3]
    (kh, kw), (sh, sw) = spec.kernel, spec.strides
    out_h = (padded.shape[1] - kh) // sh + 1
    out_w = (padded.shape[2] - kw) // sw + 1
    total = None
    for i in range(kh):
        for j in range(kw):
            view = lax.slice(
                padded, (0, i, j, 0),
                (n, i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, channels), (1, sh, sw, 1),
            )
            for c in range(channels):
                term = view[..., c:c + 1] * weight[i, j, c]
                total = term if total is None else total + term
    return total


def _conv_step(plan: _Plan, x_t: Array, weight: Array, bias: Optional[Array]) -> Array:
    """The drive of one step: ``(H, W, C) -> (H', W', O)``."""
    conv = _direct_conv if plan.method == "direct" else _xla_conv
    drive = conv(plan.spec, x_t[None], weight)[0]
    return drive if bias is None else drive + bias


def _forward_scan(config: LIFConfig, plan: _Plan, weight, bias, inputs, v0, i0, emit_spikes=False):
    """The forward recurrence; returns the pre-reset membrane ``u (T, ...)`` and ``I_T``.

    The scan carries ``(u_{t-1}, I_{t-1})`` and emits ``u_t``, which is also the carry, so XLA
    writes each step's membrane once and copies no state (carrying ``v`` and emitting ``u``
    costs a copy of the state per step). ``v_{t-1} = reset(u_{t-1})``, except at ``t = 0``
    where it is ``v0`` (a scalar for the rest state, so nothing is read per step).
    """

    def body(carry, xs):
        t, x_t = xs
        u_prev, i_prev = carry
        v_prev = _after_reset(config, u_prev, surrogate_lib.step(u_prev - config.v_th))
        v_prev = jnp.where(t == 0, v0, v_prev)
        drive = _conv_step(plan, x_t, weight, bias)
        current = _current(config, i_prev, drive)
        u = _membrane(config, v_prev, current)
        return (u, current), (surrogate_lib.step(u - config.v_th) if emit_spikes else u)

    shape = jax.eval_shape(
        lambda x: _conv_step(plan, x, weight, bias),
        jax.ShapeDtypeStruct(inputs.shape[1:], inputs.dtype),
    ).shape
    dtype = jnp.result_type(inputs.dtype, weight.dtype)
    u_init = jnp.zeros(shape, dtype)
    i_init = jnp.broadcast_to(jnp.asarray(i0, dtype), shape)
    (u_last, i_last), emitted = lax.scan(
        body, (u_init, i_init), (jnp.arange(inputs.shape[0]), inputs), unroll=config.unroll
    )
    if emit_spikes:
        return emitted, u_last, i_last
    return emitted, i_last


def _outputs(config: LIFConfig, u_trace: Array, i_last: Array):
    spikes = surrogate_lib.step(u_trace - config.v_th)
    trace = _after_reset(config, u_trace, spikes) if config.record_membrane else None
    v_last = _after_reset(config, u_trace[-1], spikes[-1])
    return spikes, trace, v_last, i_last


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _conv_lif(config: LIFConfig, plan: _Plan, weight, bias, inputs, v0, i0):
    if config.record_membrane:
        return _outputs(config, *_forward_scan(config, plan, weight, bias, inputs, v0, i0))
    # Without AD and without a membrane recording, the scan emits the spikes: no membrane trace
    # of the window's size is written and read back.
    spikes, u_last, i_last = _forward_scan(config, plan, weight, bias, inputs, v0, i0,
                                           emit_spikes=True)
    return spikes, None, _after_reset(config, u_last, spikes[-1]), i_last


@dataclasses.dataclass(frozen=True)
class _Needed:
    """Which cotangents the backward scan must compute (static: a pytree without leaves)."""

    inputs: bool
    params: bool


jax.tree_util.register_static(_Needed)


def _value(primal):
    return primal.value if isinstance(primal, CustomVJPPrimal) else primal


def _perturbed(tree) -> bool:
    leaves = jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, CustomVJPPrimal))
    return any(leaf.perturbed for leaf in leaves if isinstance(leaf, CustomVJPPrimal))


def _conv_lif_fwd(config: LIFConfig, plan: _Plan, weight, bias, inputs, v0, i0):
    # symbolic_zeros: each array arrives as CustomVJPPrimal(value, perturbed). An input that is
    # not differentiated (the data fed to a network's first layer) needs no conv^T per step in
    # the reverse scan; frozen parameters need no patch products.
    needed = _Needed(inputs=_perturbed(inputs), params=_perturbed((weight, bias)))
    weight, bias, inputs, v0, i0 = jax.tree_util.tree_map(
        _value, (weight, bias, inputs, v0, i0), is_leaf=lambda x: isinstance(x, CustomVJPPrimal)
    )
    u_trace, i_last = _forward_scan(config, plan, weight, bias, inputs, v0, i0)
    return _outputs(config, u_trace, i_last), (weight, bias, inputs, v0, i0, u_trace, needed)


def _instantiate(cotangent, like_shape, dtype):
    """A dense cotangent for an output that the caller did not differentiate (symbolic zero)."""
    if cotangent is None or isinstance(cotangent, SymbolicZero):
        return jnp.zeros(like_shape, dtype)
    return cotangent


def _transposed_kernel(weight: Array) -> Array:
    """``W[kh - 1 - i, kw - 1 - j, o, c]``: the HWIO kernel of the transposed convolution."""
    return jnp.swapaxes(weight[::-1, ::-1], 2, 3)


def _input_gradient(spec: _ConvSpec, cotangent: Array, flipped: Array, in_hw) -> Array:
    """``conv^T(g)``: the cotangent of the convolution's input, ``(n, H', W', O) -> (n, H, W, C)``.

    A forward convolution of the (stride-dilated) cotangent with the flipped kernel in the
    canonical HWIO layout (XLA's own transpose uses an ``OI`` kernel layout that its CPU
    backend runs far slower inside a loop).
    """
    pads = []
    for axis in range(2):
        k, s = spec.kernel[axis], spec.strides[axis]
        lo, hi = spec.pads[axis]
        n_out = cotangent.shape[1 + axis]
        # rows of the input that the forward convolution read: (n_out - 1) * s + k - lo - hi
        covered = (n_out - 1) * s + k - lo - hi
        pads.append((k - 1 - lo, k - 1 - hi + in_hw[axis] - covered))
    return lax.conv_general_dilated(
        cotangent, flipped, (1, 1), pads, lhs_dilation=spec.strides,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def _tap_products(spec: _ConvSpec, x_t: Array, g_drive: Array, out_hw) -> Array:
    """``dW[i, j] = xpad[s y + i, s x + j, :]^T @ g[y, x, :]`` summed over pixels, one
    ``(C, P) @ (P, O)`` product per kernel tap; returns ``(kh * kw * C, O)``."""
    (top, bottom), (left, right) = spec.pads
    padded = lax.pad(x_t, jnp.zeros((), x_t.dtype), ((top, bottom, 0), (left, right, 0), (0, 0, 0)))
    (sh, sw), (oh, ow) = spec.strides, out_hw
    channels = x_t.shape[2]
    blocks = []
    for i in range(spec.kernel[0]):
        for j in range(spec.kernel[1]):
            view = lax.slice(padded, (i, j, 0), (i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1,
                                                 channels), (sh, sw, 1))
            blocks.append(jnp.matmul(view.reshape(-1, channels).T, g_drive))
    return jnp.concatenate(blocks, axis=0)


def _conv_lif_bwd(config: LIFConfig, plan: _Plan, residuals, cotangents):
    weight, bias, inputs, v0, i0, u_trace, needed = residuals
    dtype = u_trace.dtype
    g_spikes, g_trace, g_v_last, g_i_last = cotangents
    g_spikes = _instantiate(g_spikes, u_trace.shape, dtype)
    if config.record_membrane:
        g_trace = _instantiate(g_trace, u_trace.shape, dtype)
    g_v_last = _instantiate(g_v_last, u_trace.shape[1:], dtype)
    g_i_last = _instantiate(g_i_last, u_trace.shape[1:], dtype)
    ones = jnp.ones_like(u_trace[0])
    out_hw, out_channels = u_trace.shape[1:3], u_trace.shape[3]
    in_hw = inputs.shape[1:3]
    flipped = _transposed_kernel(weight)
    rows = plan.spec.kernel[0] * plan.spec.kernel[1] * inputs.shape[3]
    in_scan = plan.weight_gradient == "scan" and needed.params

    def body(carry, xs):
        lam_v, lam_i, g_w, g_b = carry
        if config.record_membrane:
            x_t, u, g_z, g_m = xs
            lam_v = lam_v + g_m
        else:
            x_t, u, g_z = xs
        z, sigma = jax.jvp(config.spike_fn, (u - config.v_th,), (ones,))
        if config.reset == "subtract":
            dv_du = 1.0 - (config.v_th - config.v_reset) * sigma
        else:
            dv_du = (1.0 - z) + (config.v_reset - u) * sigma
        lam_u = lam_v * dv_du + g_z * sigma
        lam_i = lam_i + config.input_scale * lam_u  # dL/dd_t
        g_x = _input_gradient(plan.spec, lam_i[None], flipped, in_hw)[0] if needed.inputs else None
        g_drive = lam_i.reshape(-1, out_channels)
        if in_scan:
            g_w = g_w + _tap_products(plan.spec, x_t, g_drive, out_hw)
            if plan.bias:
                g_b = g_b + g_drive.sum(axis=0)
        carry = (config.a_mem * lam_u, config.a_syn * lam_i, g_w, g_b)
        return carry, (g_x, None if in_scan or not needed.params else lam_i)

    xs = (inputs, u_trace, g_spikes) + ((g_trace,) if config.record_membrane else ())
    g_w0 = jnp.zeros((rows, out_channels) if in_scan else (), dtype)
    g_b0 = jnp.zeros((out_channels,) if in_scan and plan.bias else (), dtype)
    (g_v, g_i0, g_w, g_b), (g_inputs, g_drive) = lax.scan(
        body, (g_v_last, g_i_last, g_w0, g_b0), xs, reverse=True, unroll=config.unroll
    )
    if not needed.params:
        g_w, g_b = None, None  # frozen parameters: a zero cotangent, nothing computed
    else:
        if not in_scan:
            g_w = _patch_weight_gradient(plan.spec, inputs, g_drive)
            g_b = g_drive.sum(axis=(0, 1, 2)) if plan.bias else None
        g_w = g_w.reshape(weight.shape).astype(weight.dtype)
        g_b = g_b.astype(bias.dtype) if plan.bias else None
    g_inputs = g_inputs.astype(inputs.dtype) if needed.inputs else None
    # v0 enters only at t = 0: its cotangent is the adjoint left after the first step; the
    # rest state (a scalar v0) gets the sum, as broadcasting would.
    return g_w, g_b, g_inputs, _like(g_v, v0), _like(g_i0, i0)


def _like(cotangent: Array, primal: Array) -> Array:
    """The cotangent of a state that was broadcast from ``primal`` (a scalar for rest)."""
    if jnp.ndim(primal) == 0:
        cotangent = jnp.sum(cotangent)
    return cotangent.astype(jnp.result_type(primal))


_conv_lif.defvjp(_conv_lif_fwd, _conv_lif_bwd, symbolic_zeros=True)


def ConvLIF(
    out_channels: int,
    kernel_size: Union[int, Tuple[int, int]],
    stride: Union[int, Tuple[int, int]] = 1,
    padding: Any = "SAME",
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
    bias: bool = False,
    weight_init: Optional[WeightInit] = None,
    weight_scale: float = 1.0,
    weight_mean: float = 0.0,
    bias_init: Optional[WeightInit] = None,
    dtype: Any = None,
    record_membrane: bool = False,
    method: str = "auto",
    weight_gradient: str = "scan",
    unroll: int = 1,
) -> Layer:
    """LIF neurons driven by a 2-D convolution, both computed step by step in one scan.

    Equals ``serial(Conv(out_channels, kernel_size, stride, padding, bias=bias, ...),
    LIF((H', W', out_channels), project=False, tau_syn=..., ...))`` (to float32 round-off of
    the convolution's summation order) with the same ``{"weight": (kh, kw, C_in, C_out)}``
    parameters as that ``Conv``, but faster on CPU and with less memory for backpropagation
    through time (see the module docstring).

    Args:
        out_channels: number of output channels.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``.
        padding: ``"SAME"``, ``"VALID"``, ``"SAME_LOWER"`` or ``((top, bottom), (left, right))``.
        tau_syn, tau_mem, dt, v_th, v_reset, v_leak, reset, surrogate, input_scale,
            record_membrane, unroll: the neuron, as for ``jaxsnn.discrete.LIF``.
        bias: add a learnable bias per output channel to the drive (zero-initialised unless
            ``bias_init``).
        weight_init: ``(key, shape, dtype) -> W`` with shape ``(kh, kw, C_in, out_channels)``;
            default ``weight_mean + weight_scale * N(0, 1) / sqrt(kh * kw * C_in)``.
        weight_scale, weight_mean: parameters of the default initialiser.
        bias_init: ``(key, (out_channels,), dtype) -> b``; default zeros.
        dtype: parameter dtype (default float32, float64 under x64).
        method: how a step is convolved: ``"auto"`` (``"direct"`` when
            ``kh * kw * C_in <= 32``, else ``"xla"``), ``"direct"`` (sum of shifted slices
            times weight rows, fused with the neuron update) or ``"xla"``
            (``lax.conv_general_dilated``).
        weight_gradient: ``"scan"`` (patch products accumulated in the reverse scan) or
            ``"bands"`` (after it, in bands of output rows, as ``Conv``).

    Returns:
        A ``Layer``: params ``{"weight"[, "bias"]}``; ``apply(params, inputs (time, H, W, C_in),
        external=None, carry=None)`` returns ``(LIFState, spikes (time, H', W', C_out),
        LIFRecording)``, the state shaped ``(H', W', C_out)`` (per sample; batch with
        ``jax.vmap`` or ``jaxsnn.discrete.time_major``). Reverse-mode differentiable (a
        hand-written adjoint; no forward mode).

    Raises:
        ValueError: bad sizes/padding/neuron constants or an unknown ``method``/
            ``weight_gradient``; at ``init`` an input shape that is not ``(time, H, W, C)`` or
            too small for the kernel; at ``apply`` inputs, params or carry of the wrong shape,
            or with NaN/inf.
        TypeError: non-float inputs or params.
    """
    out_channels = positive_int("out_channels", out_channels)
    kernel = _pair("kernel_size", kernel_size)
    strides = _pair("stride", stride)
    pad = _padding(padding)
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if weight_gradient not in _WEIGHT_GRADIENTS:
        raise ValueError(
            f"weight_gradient must be one of {_WEIGHT_GRADIENTS}, got {weight_gradient!r}"
        )
    config = lif_config(
        tau_syn=tau_syn, tau_mem=tau_mem, dt=dt, v_th=v_th, v_reset=v_reset, v_leak=v_leak,
        reset=reset, surrogate=surrogate, input_scale=input_scale,
        record_membrane=record_membrane, unroll=unroll,
    )
    size = kernel[0] if kernel[0] == kernel[1] else kernel
    label = f"ConvLIF({out_channels}, {size})"
    w_init = make_weight_init(weight_init, weight_scale, weight_mean)
    param_dtype = default_dtype(dtype)

    def plan_for(in_shape: Tuple[int, ...]) -> _Plan:
        spec = _conv_spec(kernel, strides, pad, in_shape[1:3])
        chosen = method
        if method == "auto":
            chosen = "direct" if kernel[0] * kernel[1] * in_shape[3] <= _DIRECT_TAPS else "xla"
        return _Plan(spec, chosen, weight_gradient, bias)

    def init(rng: jax.Array, input_shape):
        shape = input_shape_tuple(label, input_shape, 4, "(time, height, width, channels)")
        if len(shape) != 4:
            raise ValueError(f"{label} takes (time, height, width, channels) inputs, got {shape}")
        return init_conv_params(
            label, rng, shape, kernel, strides, pad, out_channels, bias, param_dtype, w_init, bias_init
        )

    def apply(params, inputs, external=None, carry=None):
        check_no_external(label, external)
        if not isinstance(params, dict) or "weight" not in params:
            raise ValueError(f"{label}: params must be the dict returned by init (key 'weight')")
        if bias != ("bias" in params):
            raise ValueError(
                f"{label}: built with bias={bias} but params "
                f"{'has' if 'bias' in params else 'has no'} 'bias'"
            )
        weight = params["weight"]
        check_float_dtype(f"{label}: params['weight']", weight)
        if (
            jnp.ndim(weight) != 4
            or tuple(jnp.shape(weight)[:2]) != kernel
            or jnp.shape(weight)[3] != out_channels
        ):
            raise ValueError(
                f"{label}: params['weight'] has shape {tuple(jnp.shape(weight))}, expected "
                f"({kernel[0]}, {kernel[1]}, C_in, {out_channels})"
            )
        if bias and tuple(jnp.shape(params["bias"])) != (out_channels,):
            raise ValueError(
                f"{label}: params['bias'] has shape {tuple(jnp.shape(params['bias']))}, "
                f"expected ({out_channels},)"
            )
        check_finite(f"{label}: params", params)
        if not hasattr(inputs, "shape") or len(inputs.shape) != 4:
            raise ValueError(
                f"{label}: inputs must be 4-dimensional (time, height, width, channels) per "
                f"sample, got shape {tuple(getattr(inputs, 'shape', ()))}; batch with jax.vmap "
                "or jaxsnn.discrete.time_major"
            )
        inputs = check_inputs(label, inputs, tuple(inputs.shape[1:3]) + (jnp.shape(weight)[2],))
        plan = plan_for(tuple(inputs.shape))
        compute = jnp.result_type(inputs.dtype, weight.dtype)
        features = tuple(
            jax.eval_shape(
                functools.partial(_xla_conv, plan.spec),
                jax.ShapeDtypeStruct((1,) + tuple(inputs.shape[1:]), compute),
                jax.ShapeDtypeStruct(jnp.shape(weight), compute),
            ).shape[1:]
        )
        if carry is not None:
            carry = _check_carry(label, carry, features, 2)
        b = params["bias"].astype(compute) if bias else None
        return _core(config, plan, weight.astype(compute), b, inputs.astype(compute), carry)

    return named_layer(init, apply, label)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _core(config: LIFConfig, plan: _Plan, weight, bias, inputs, carry):
    dtype = inputs.dtype
    if carry is None:
        v0, i0 = jnp.asarray(config.v_leak, dtype), jnp.zeros((), dtype)
    else:
        v0, i0 = (jnp.asarray(c, dtype) for c in carry)
    spikes, trace, v_last, i_last = _conv_lif(config, plan, weight, bias, inputs, v0, i0)
    return LIFState(v_last, i_last), spikes, LIFRecording(spikes, trace)
