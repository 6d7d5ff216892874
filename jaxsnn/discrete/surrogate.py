"""Spike functions with surrogate derivatives.

The forward value of every spike function is the Heaviside step ``H(x) = 1 if x > 0 else 0``
(``H(0) = 0``: a neuron spikes only when its membrane is strictly above threshold). Its true
derivative is zero almost everywhere, which stops gradient flow, so the backward pass uses a
smooth *surrogate* derivative instead (Neftci, Mostafa & Zenke 2019). Each factory below returns
a ``jax.custom_jvp`` function ``spike(x)`` whose tangent rule is ``spike'(x) * x_dot`` with the
surrogate ``spike'`` listed here (``k`` is the ``slope``):

=============  ===============================================  =================
name           surrogate derivative ``spike'(x)``                value at ``x=0``
=============  ===============================================  =================
``superspike`` ``1 / (1 + k |x|)^2``  (fast sigmoid)              ``1``
``sigmoid``    ``k s (1 - s)`` with ``s = 1 / (1 + exp(-k x))``  ``k / 4``
``triangle``   ``max(0, 1 - k |x|)``                             ``1``
``arctan``     ``(k / 2) / (1 + (pi k x / 2)^2)``                ``k / 2``
=============  ===============================================  =================

``heaviside`` is the step with its true (zero) derivative, for evaluation-only networks.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Dict, Optional, Union

import jax
import jax.numpy as jnp

Array = jax.Array
SpikeFn = Callable[[Array], Array]

__all__ = [
    "SpikeFn",
    "arctan",
    "arctan_derivative",
    "get",
    "heaviside",
    "names",
    "sigmoid",
    "sigmoid_derivative",
    "spike_function",
    "step",
    "superspike",
    "superspike_derivative",
    "triangle",
    "triangle_derivative",
]


def step(x: Array) -> Array:
    """Heaviside step with ``H(0) = 0``, in the dtype of ``x``.

    Args:
        x: membrane potential minus threshold.

    Returns:
        ``1`` where ``x > 0``, else ``0`` (same shape and dtype as ``x``).
    """
    x = jnp.asarray(x)
    return (x > 0).astype(x.dtype)


def _check_slope(slope: float) -> float:
    if isinstance(slope, bool) or not isinstance(slope, (int, float)):
        raise TypeError(f"slope must be a Python number, got {type(slope).__name__}")
    if not math.isfinite(slope) or slope <= 0:
        raise ValueError(f"slope must be finite and > 0, got {slope!r}")
    return float(slope)


def superspike_derivative(x: Array, slope: float) -> Array:
    """Fast-sigmoid (SuperSpike, Zenke & Ganguli 2018) surrogate: ``1 / (1 + slope |x|)^2``."""
    return 1.0 / (1.0 + slope * jnp.abs(x)) ** 2


def sigmoid_derivative(x: Array, slope: float) -> Array:
    """Derivative of the logistic ``s(slope x)``: ``slope s (1 - s)``."""
    s = jax.nn.sigmoid(slope * x)
    return slope * s * (1.0 - s)


def triangle_derivative(x: Array, slope: float) -> Array:
    """Triangular surrogate: ``max(0, 1 - slope |x|)`` (support ``|x| < 1 / slope``)."""
    return jnp.maximum(0.0, 1.0 - slope * jnp.abs(x))


def arctan_derivative(x: Array, slope: float) -> Array:
    """Arctan surrogate ``(slope/2) / (1 + (pi slope x / 2)^2)``.

    It is the derivative of the smooth step ``1/2 + arctan(pi slope x / 2) / pi``.
    """
    return (0.5 * slope) / (1.0 + (0.5 * math.pi * slope * x) ** 2)


def spike_function(derivative: Callable[[Array], Array], name: str = "spike") -> SpikeFn:
    """Build a Heaviside spike function whose JVP uses ``derivative``.

    Args:
        derivative: the surrogate derivative, ``x -> spike'(x)`` (elementwise).
        name: a name for the function (shown in ``repr`` and errors).

    Returns:
        ``spike(x) = H(x)`` (``H(0) = 0``) as a ``jax.custom_jvp`` function with tangent
        ``derivative(x) * x_dot``. Works under ``jit``, ``vmap``, ``grad`` and reverse mode.
    """

    @jax.custom_jvp
    def spike(x: Array) -> Array:
        return step(x)

    @spike.defjvp
    def _spike_jvp(primals, tangents):
        (x,), (x_dot,) = primals, tangents
        x = jnp.asarray(x)
        return step(x), (derivative(x) * x_dot).astype(x.dtype)

    spike.__name__ = name
    spike.__qualname__ = name
    return spike


def superspike(slope: float = 10.0) -> SpikeFn:
    """Heaviside with the SuperSpike (fast sigmoid) surrogate ``1 / (1 + slope |x|)^2``.

    Args:
        slope: sharpness ``> 0`` (larger = narrower surrogate).

    Returns:
        A spike function ``x -> H(x)``.

    Raises:
        ValueError: if ``slope`` is not finite and > 0.
    """
    return _cached("superspike", _check_slope(slope))


def sigmoid(slope: float = 10.0) -> SpikeFn:
    """Heaviside with the sigmoid surrogate ``slope s (1 - s)``, ``s = sigmoid(slope x)``.

    Args:
        slope: sharpness ``> 0``.

    Returns:
        A spike function ``x -> H(x)``.

    Raises:
        ValueError: if ``slope`` is not finite and > 0.
    """
    return _cached("sigmoid", _check_slope(slope))


def triangle(slope: float = 1.0) -> SpikeFn:
    """Heaviside with the triangular surrogate ``max(0, 1 - slope |x|)``.

    Args:
        slope: sharpness ``> 0``; the surrogate is non-zero for ``|x| < 1 / slope``.

    Returns:
        A spike function ``x -> H(x)``.

    Raises:
        ValueError: if ``slope`` is not finite and > 0.
    """
    return _cached("triangle", _check_slope(slope))


def arctan(slope: float = 2.0) -> SpikeFn:
    """Heaviside with the arctan surrogate ``(slope/2) / (1 + (pi slope x / 2)^2)``.

    Args:
        slope: sharpness ``> 0``.

    Returns:
        A spike function ``x -> H(x)``.

    Raises:
        ValueError: if ``slope`` is not finite and > 0.
    """
    return _cached("arctan", _check_slope(slope))


def heaviside() -> SpikeFn:
    """The plain step ``H(x)`` with its true derivative (zero): no gradient flows through spikes.

    Returns:
        A spike function ``x -> H(x)``.
    """
    return _cached("heaviside", 0.0)


_DERIVATIVES = {
    "superspike": superspike_derivative,
    "sigmoid": sigmoid_derivative,
    "triangle": triangle_derivative,
    "arctan": arctan_derivative,
}


@functools.lru_cache(maxsize=None)
def _cached(name: str, slope: float) -> SpikeFn:
    # One function object per (name, slope): layers built with equal settings share it, so
    # jitted code keyed on it is compiled once instead of once per layer.
    if name == "heaviside":
        return spike_function(jnp.zeros_like, "heaviside")
    derivative = _DERIVATIVES[name]
    return spike_function(lambda x: derivative(x, slope), f"{name}({slope:g})")


_FACTORIES: Dict[str, Callable[..., SpikeFn]] = {
    "superspike": superspike,
    "fast_sigmoid": superspike,
    "sigmoid": sigmoid,
    "triangle": triangle,
    "arctan": arctan,
    "heaviside": heaviside,
}


def names() -> tuple:
    """Names accepted by ``get`` (and by the ``surrogate`` argument of the discrete layers)."""
    return tuple(sorted(_FACTORIES))


def get(surrogate: Union[str, SpikeFn], slope: Optional[float] = None) -> SpikeFn:
    """Resolve a surrogate given by name or as a spike function.

    Args:
        surrogate: one of ``names()`` or a callable ``x -> spike`` (returned unchanged).
        slope: slope for a named surrogate (default: the factory's default). Not allowed with a
            callable (its slope is already fixed).

    Returns:
        The spike function.

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or a bad slope.
        TypeError: if ``surrogate`` is neither a string nor callable.
    """
    if isinstance(surrogate, str):
        try:
            factory = _FACTORIES[surrogate]
        except KeyError:
            raise ValueError(
                f"surrogate: unknown name {surrogate!r}; choose one of {', '.join(names())} "
                "or pass a spike function such as jaxsnn.discrete.surrogate.superspike(25.0)"
            ) from None
        if factory is heaviside:
            if slope is not None:
                raise ValueError("surrogate: 'heaviside' takes no slope")
            return heaviside()
        return factory() if slope is None else factory(slope)
    if callable(surrogate):
        if slope is not None:
            raise ValueError(
                "surrogate: slope only applies to a surrogate given by name; "
                "build the spike function with the slope instead, e.g. superspike(slope)"
            )
        return surrogate
    raise TypeError(
        f"surrogate must be a name ({', '.join(names())}) or a callable, "
        f"got {type(surrogate).__name__}"
    )
