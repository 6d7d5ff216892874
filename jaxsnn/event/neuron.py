"""The current-based leaky integrate-and-fire neuron shared by all event-based code.

Dynamics between events (exact for any ratio of time constants)::

    tau_mem dv/dt = -(v - v_leak) + I
    tau_syn dI/dt = -I

An input spike of source ``j`` at time ``t`` adds ``W[j, :]`` to ``I``. When ``v`` reaches
``v_th`` the neuron emits a spike, ``v`` is set to ``v_reset`` and held there for ``t_ref``
(the refractory period) while ``I`` keeps decaying and receiving input; afterwards ``v``
evolves freely again from ``v_reset``. At rest ``v = v_leak`` and ``I = 0``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn._validate import check_nonnegative, check_positive, is_concrete


class LIFParameters(NamedTuple):
    """Parameters of the current-based LIF neuron (scalars or per-neuron arrays).

    Attributes:
        tau_syn: synaptic time constant, > 0.
        tau_mem: membrane time constant, > 0.
        v_th: threshold; must exceed ``v_reset`` and ``v_leak``.
        v_reset: value ``v`` is set to after a spike.
        v_leak: resting potential.
        t_ref: refractory period, >= 0 (0 = none).
    """

    tau_syn: Any = 5e-3
    tau_mem: Any = 1e-2
    v_th: Any = 1.0
    v_reset: Any = 0.0
    v_leak: Any = 0.0
    t_ref: Any = 0.0


class LIFState(NamedTuple):
    """State of a population of event-based LIF neurons (the ``carry`` of ``jaxsnn.event`` layers).

    Not the same type as ``jaxsnn.discrete.LIFState`` (fields ``v, current`` only): event
    neurons live in continuous time and have a refractory period, so their state also says
    until when each membrane is held at ``v_reset``. The two are not interchangeable.

    Attributes:
        v: membrane potential, shape ``(size,)``.
        current: synaptic current ``I``, shape ``(size,)``.
        refractory_until: time until which ``v`` is clamped to ``v_reset``, shape ``(size,)``
            (``-inf`` when not refractory). In a layer's ``carry`` and ``simulate``'s final
            state it is relative to the window end, so it is the next window's start time.
    """

    v: jax.Array
    current: jax.Array
    refractory_until: jax.Array


def validate_parameters(params: LIFParameters) -> LIFParameters:
    """Check a ``LIFParameters`` (eagerly, where values are concrete).

    Args:
        params: the neuron parameters.

    Returns:
        ``params`` unchanged.

    Raises:
        TypeError: if ``params`` is not a ``LIFParameters``.
        ValueError: if ``tau_syn`` or ``tau_mem`` is not > 0, ``t_ref`` < 0, any value is
            not finite, ``v_th <= v_reset`` or ``v_th <= v_leak`` (a neuron resting at or above
            threshold would fire without input).
    """
    if not isinstance(params, LIFParameters):
        raise TypeError(f"neuron parameters must be a LIFParameters, got {type(params).__name__}")
    check_positive("tau_syn", params.tau_syn)
    check_positive("tau_mem", params.tau_mem)
    check_nonnegative("t_ref", params.t_ref)
    for name in ("v_th", "v_reset", "v_leak"):
        value = getattr(params, name)
        if is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if is_concrete(params):
        v_th = np.asarray(params.v_th)
        if np.any(v_th <= np.asarray(params.v_reset)):
            raise ValueError(
                f"v_th must be > v_reset, got v_th={params.v_th!r}, v_reset={params.v_reset!r}"
            )
        if np.any(v_th <= np.asarray(params.v_leak)):
            raise ValueError(
                f"v_th must be > v_leak, got v_th={params.v_th!r}, v_leak={params.v_leak!r}"
            )
    return params


def check_parameter_shapes(params: LIFParameters, size: int) -> None:
    """Raise ``ValueError`` unless every parameter is a scalar or has shape ``(size,)``.

    Args:
        params: the neuron parameters.
        size: number of neurons of the layer.

    Raises:
        ValueError: naming the first parameter of another shape.
    """
    for name in LIFParameters._fields:
        value = getattr(params, name)
        shape = np.shape(value)  # also for lists (jnp.shape warns)
        if len(shape) > 1 or (len(shape) == 1 and shape[0] != size):
            raise ValueError(f"neuron.{name} must be a scalar or have shape ({size},), got shape {shape}")


def per_neuron(params: LIFParameters, size: int, dtype: Any) -> LIFParameters:
    """Every parameter as a ``(size,)`` array of ``dtype`` (scalars are broadcast).

    Args:
        params: scalars or ``(size,)`` arrays.
        size: number of neurons.
        dtype: float dtype of the result.

    Returns:
        The broadcast ``LIFParameters``.
    """
    return LIFParameters(*(jnp.broadcast_to(jnp.asarray(value, dtype), (size,)) for value in params))
