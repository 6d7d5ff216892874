"""2-D convolution applied to every time step at once: ``Conv``.

The forward pass and the input gradient are XLA's convolution (``lax.conv_general_dilated``,
time folded into the batch). The weight gradient ``dW[i, j, c, o] = sum_{t, y, x} xpad[t, s y + i,
s x + j, c] g[t, y, x, o]`` is, by default, computed as matrix products of image patches with the
output cotangent, ``patches^T @ g``, band by band (a few output rows of one time step; a scan
slices them from the padded input), so the patches never take more than a cache-sized buffer,
also when ``jax.vmap`` stacks a batch into every band. On CPU this is about twice as fast as
XLA's own weight gradient of a 3x3 convolution (interleaved measurement,
``benchmarks/profile_cnn.py``), and it equals it to float32 round-off (``backward="autodiff"``
keeps XLA's).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax

from jaxsnn._validate import check_finite, check_float_dtype, positive_int
from jaxsnn.discrete._common import check_inputs, check_no_external, input_shape_tuple
from jaxsnn.initializers import WeightInit, default_dtype, init_weight, make_weight_init
from jaxsnn.types import Layer, named_layer

Array = jax.Array

__all__ = ["Conv"]

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
_BACKWARDS = ("patches", "autodiff")
#: Output pixels per band of the patch weight gradient for a batch of 16 samples: patches of
#: 4096 rows x (9 C_in) floats stay in a core's cache for small C_in, and the matmul is still
#: large enough to run at speed.
_CHUNK_PIXELS = 4096


class _ConvSpec(NamedTuple):
    """Static geometry of a convolution: kernel, strides and explicit ((lo, hi), (lo, hi)) pads."""

    kernel: Tuple[int, int]
    strides: Tuple[int, int]
    pads: Tuple[Tuple[int, int], Tuple[int, int]]


def _xla_conv(spec: _ConvSpec, inputs: Array, weight: Array) -> Array:
    return lax.conv_general_dilated(
        inputs, weight, spec.strides, spec.pads, dimension_numbers=_DIMENSION_NUMBERS
    )


def _patches(spec: _ConvSpec, inputs: Array, out_hw: Tuple[int, int]) -> Array:
    """``(n, H, W, C) -> (n, H', W', kh * kw * C)``, features ordered ``(kh, kw, C)`` like HWIO."""
    (top, bottom), (left, right) = spec.pads
    zero = jnp.zeros((), inputs.dtype)
    padded = lax.pad(inputs, zero, ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
    n, channels = inputs.shape[0], inputs.shape[3]
    (sh, sw), (oh, ow) = spec.strides, out_hw
    views = [
        lax.slice(
            padded, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, channels),
            (1, sh, sw, 1),
        )
        for i in range(spec.kernel[0])
        for j in range(spec.kernel[1])
    ]
    return jnp.concatenate(views, axis=-1)


def _patch_weight_gradient(spec: _ConvSpec, inputs: Array, cotangent: Array) -> Array:
    """``sum patches(x)^T @ g`` over bands of ``r`` output rows of one step at a time.

    A scan over (step, band) slices the padded input rows a band needs (``dynamic_slice``,
    no copy of the window) and multiplies that band's patches with its cotangent rows; ``r``
    is chosen so that a band has about ``_CHUNK_PIXELS / 16`` output pixels, which keeps the
    patches cache-sized also when ``jax.vmap`` stacks a batch of samples into every band.

    Returns:
        ``(kh, kw, C_in, C_out)``.
    """
    steps, out_h, out_w, out_channels = cotangent.shape
    channels = inputs.shape[3]
    (kh, kw), (sh, _) = spec.kernel, spec.strides
    band = max(1, min(out_h, (_CHUNK_PIXELS // 16) // out_w))
    n_bands = -(-out_h // band)
    extra = n_bands * band - out_h  # zero cotangent rows (and zero input rows) add nothing
    (top, bottom), (left, right) = spec.pads
    zero = jnp.zeros((), inputs.dtype)
    padded = lax.pad(
        inputs, zero, ((0, 0, 0), (top, bottom + extra * sh, 0), (left, right, 0), (0, 0, 0))
    )
    cotangent = lax.pad(cotangent, jnp.zeros((), cotangent.dtype),
                        ((0, 0, 0), (0, extra, 0), (0, 0, 0), (0, 0, 0)))
    band_rows = (band - 1) * sh + kh  # padded input rows under one band of output rows
    rows = kh * kw * channels
    band_spec = _ConvSpec(spec.kernel, spec.strides, ((0, 0), (0, 0)))

    def body(total, index):
        step, first = index // n_bands, (index % n_bands) * band
        x = lax.dynamic_slice(padded, (step, first * sh, 0, 0),
                              (1, band_rows, padded.shape[2], channels))
        g = lax.dynamic_slice(cotangent, (step, first, 0, 0), (1, band, out_w, out_channels))
        patches = _patches(band_spec, x, (band, out_w)).reshape(-1, rows)
        return total + jnp.matmul(patches.T, g.reshape(-1, out_channels)), None

    total = jnp.zeros((rows, out_channels), jnp.result_type(inputs.dtype, cotangent.dtype))
    total, _ = lax.scan(body, total, jnp.arange(steps * n_bands))
    return total.reshape((kh, kw, channels, out_channels))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _patch_conv(spec: _ConvSpec, inputs: Array, weight: Array) -> Array:
    return _xla_conv(spec, inputs, weight)


def _patch_conv_fwd(spec: _ConvSpec, inputs: Array, weight: Array):
    return _xla_conv(spec, inputs, weight), (inputs, weight)


def _patch_conv_bwd(spec: _ConvSpec, residuals, cotangent: Array):
    inputs, weight = residuals
    _, input_vjp = jax.vjp(lambda x: _xla_conv(spec, x, weight), inputs)
    (g_inputs,) = input_vjp(cotangent)
    g_weight = _patch_weight_gradient(spec, inputs, cotangent).astype(weight.dtype)
    return g_inputs, g_weight


_patch_conv.defvjp(_patch_conv_fwd, _patch_conv_bwd)


def _conv_spec(kernel, strides, padding, in_hw) -> _ConvSpec:
    """The ``_ConvSpec`` of a kernel on inputs of spatial size ``in_hw`` (explicit pads)."""
    pads = padding
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(tuple(in_hw), kernel, strides, padding)
    return _ConvSpec(tuple(kernel), tuple(strides), tuple((int(lo), int(hi)) for lo, hi in pads))


def _pair(name: str, value: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return positive_int(f"{name}[0]", value[0]), positive_int(f"{name}[1]", value[1])
    value = positive_int(name, value)
    return value, value


def _padding(padding: Any) -> Any:
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID", "SAME_LOWER"):
            raise ValueError(
                "padding must be 'SAME', 'VALID', 'SAME_LOWER' or ((lo, hi), (lo, hi)), "
                f"got {padding!r}"
            )
        return padding.upper()
    try:
        pairs = tuple((int(lo), int(hi)) for lo, hi in padding)
    except (TypeError, ValueError):
        raise ValueError(
            f"padding must be 'SAME', 'VALID' or ((lo, hi), (lo, hi)), got {padding!r}"
        ) from None
    if len(pairs) != 2:
        raise ValueError(
            f"explicit padding needs one (lo, hi) pair per spatial dimension, got {padding!r}"
        )
    return pairs



def init_conv_params(
    label: str,
    rng: jax.Array,
    shape: Tuple[int, int, int, int],
    kernel: Tuple[int, int],
    strides: Tuple[int, int],
    pad: Any,
    out_channels: int,
    bias: bool,
    param_dtype: Any,
    weight_init: WeightInit,
    bias_init: Optional[WeightInit],
) -> Tuple[Tuple[int, ...], dict]:
    """Output shape and params of a convolution over ``(time, H, W, C)`` inputs (``Conv``, ``ConvLIF``).

    Raises:
        ValueError: the kernel cannot be applied to the input, or is larger than it.
    """
    weight_shape = kernel + (shape[3], out_channels)
    try:
        spec = _conv_spec(kernel, strides, pad, shape[1:3])
        out = jax.eval_shape(
            functools.partial(_xla_conv, spec),
            jax.ShapeDtypeStruct((1,) + tuple(shape[1:]), param_dtype),
            jax.ShapeDtypeStruct(weight_shape, param_dtype),
        )
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{label}: kernel {kernel} cannot be applied to input {shape}: {error}"
        ) from None
    if any(s <= 0 for s in out.shape):
        raise ValueError(
            f"{label}: kernel {kernel} with padding {pad!r} is larger than the input "
            f"{shape[1:3]}"
        )
    key_w, key_b = jax.random.split(rng)
    params = {"weight": init_weight(label, key_w, weight_shape, param_dtype, weight_init)}
    if bias:
        if bias_init is None:
            params["bias"] = jnp.zeros((out_channels,), param_dtype)
        else:
            params["bias"] = init_weight(label, key_b, (out_channels,), param_dtype, bias_init)
    return (shape[0],) + tuple(out.shape[1:]), params

def Conv(
    out_channels: int,
    kernel_size: Union[int, Sequence[int]],
    stride: Union[int, Sequence[int]] = 1,
    padding: Any = "SAME",
    *,
    bias: bool = False,
    weight_init: Optional[WeightInit] = None,
    weight_scale: float = 1.0,
    weight_mean: float = 0.0,
    bias_init: Optional[WeightInit] = None,
    dtype: Any = None,
    backward: str = "patches",
) -> Layer:
    """2-D convolution of every time step, with stax's layout (``NHWC`` inputs, ``HWIO`` kernel).

    Per sample the input is ``(time, height, width, channels)``; time is folded into the batch
    dimension of ``lax.conv_general_dilated``, so the whole window (and, under ``jax.vmap``,
    the whole batch) is one convolution. Follow it with ``LIF((H, W, C), project=False)``.

    Args:
        out_channels: number of output channels.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: ``s`` or ``(sh, sw)``.
        padding: ``"SAME"``, ``"VALID"``, ``"SAME_LOWER"`` or ``((top, bottom), (left, right))``.
        bias: add a learnable bias per output channel (zero-initialised unless ``bias_init``).
        weight_init: ``(key, shape, dtype) -> W`` with shape ``(kh, kw, C_in, out_channels)``;
            default ``weight_mean + weight_scale * N(0, 1) / sqrt(kh * kw * C_in)``.
        weight_scale, weight_mean: parameters of the default initialiser.
        bias_init: ``(key, (out_channels,), dtype) -> b``; default zeros.
        dtype: parameter dtype (default float32, float64 under x64).
        backward: ``"patches"`` (default: weight gradient as chunked ``patches^T @ g``
            matmuls, see the module docstring; reverse mode only) or ``"autodiff"`` (XLA's
            gradient of the convolution; also forward mode).

    Returns:
        A stateless ``Layer``: params ``{"weight": (kh, kw, C_in, C_out)[, "bias": (C_out,)]}``;
        ``apply(params, inputs (time, H, W, C_in))`` returns
        ``(None, (time, H', W', C_out), None)``.

    Raises:
        ValueError: bad sizes/padding; at ``init`` an input shape that is not
            ``(time, H, W, C)`` or too small for the kernel; at ``apply`` inputs whose channels
            or rank do not match, or NaN/inf.
        TypeError: non-float inputs or params.
    """
    out_channels = positive_int("out_channels", out_channels)
    kernel = _pair("kernel_size", kernel_size)
    strides = _pair("stride", stride)
    pad = _padding(padding)
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
    if backward not in _BACKWARDS:
        raise ValueError(f"backward must be one of {_BACKWARDS}, got {backward!r}")
    label = f"Conv({out_channels}, {kernel[0] if kernel[0] == kernel[1] else kernel})"
    w_init = make_weight_init(weight_init, weight_scale, weight_mean)
    param_dtype = default_dtype(dtype)

    def convolve(inputs: Array, weight: Array) -> Array:
        spec = _conv_spec(kernel, strides, pad, inputs.shape[1:3])
        if backward == "autodiff":
            return _xla_conv(spec, inputs, weight)
        return _patch_conv(spec, inputs, weight)

    def init(rng: jax.Array, input_shape):
        shape = input_shape_tuple(label, input_shape, 4, "(time, height, width, channels)")
        if len(shape) != 4:
            raise ValueError(f"{label} takes (time, height, width, channels) inputs, got {shape}")
        return init_conv_params(
            label, rng, shape, kernel, strides, pad, out_channels, bias, param_dtype, w_init, bias_init
        )

    def apply(params, inputs, external=None, carry=None):
        del carry
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
            tuple(jnp.shape(weight)[:2]) != kernel
            or jnp.ndim(weight) != 4
            or jnp.shape(weight)[3] != out_channels
        ):
            raise ValueError(
                f"{label}: params['weight'] has shape {tuple(jnp.shape(weight))}, expected "
                f"({kernel[0]}, {kernel[1]}, C_in, {out_channels})"
            )
        check_finite(f"{label}: params", params)
        if not hasattr(inputs, "shape") or len(inputs.shape) != 4:
            raise ValueError(
                f"{label}: inputs must be 4-dimensional (time, height, width, channels) "
                "per sample, "
                f"got shape {tuple(getattr(inputs, 'shape', ()))}; batch with jax.vmap"
            )
        inputs = check_inputs(label, inputs, tuple(inputs.shape[1:3]) + (jnp.shape(weight)[2],))
        dtype = jnp.result_type(inputs.dtype, weight.dtype)
        outputs = convolve(inputs.astype(dtype), weight.astype(dtype))
        if bias:
            outputs = outputs + params["bias"]
        return None, outputs, None

    return named_layer(init, apply, label)
