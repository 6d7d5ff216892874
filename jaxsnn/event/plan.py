"""Static choices of an event layer's simulation, resolved once while the constants are concrete.

Three choices depend only on the neuron parameters, the window and the wiring, never on data:

* ``kernel``: the next-spike solver. ``"auto"`` becomes ``"lambertw"`` (``tau_mem == tau_syn``),
  ``"quadratic"`` (``tau_mem == 2 tau_syn``) or ``"root"`` (any ratio); see
  ``jaxsnn.event.kernels.resolve_kernel``.
* ``algorithm``: ``"scan"`` (event by event, any layer) or ``"parallel"`` (every inter-input
  interval at once; exact when no neuron can spike twice, ``t_ref >= t_max``, and the layer is
  feed-forward); see ``resolve_algorithm``.
* ``refractory``: whether the EventProp backward pass models the instant a membrane is released
  from ``v_reset``. False only when ``t_ref`` is concretely 0 everywhere: then the release is the
  reset itself and the shorter event list gives the same gradient.
* ``backward``: the EventProp backward pass. ``"scan"`` (reverse scan over the events, any
  layer) or ``"parallel"`` (closed form, whole-array; exact under the same conditions as the
  parallel forward); ``"auto"`` follows the forward algorithm; see ``resolve_backward``.

Under ``jax.jit``, ``jax.grad`` or inside a ``custom_vjp`` the parameters are traced and these
conditions cannot be seen ("auto" would fall back to the slower root solver). So the layer
factories (``jaxsnn.event.LIF`` ...) and the emulator resolve one ``Plan`` at construction, the
public functions (``simulate``, ``simulate_eventprop``) on entry, and the plan is passed down as
one hashable, static value.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jaxsnn._validate import is_concrete
from jaxsnn.event.kernels import resolve_kernel
from jaxsnn.event.neuron import LIFParameters

__all__ = ["ALGORITHMS", "BACKWARDS", "Plan", "resolve_algorithm", "resolve_backward", "resolve_plan",
           "resolve_refractory"]

#: Valid values of the ``algorithm`` option.
ALGORITHMS = ("auto", "scan", "parallel")

#: Valid values of the ``backward`` option (EventProp backward pass).
BACKWARDS = ("auto", "scan", "parallel")


class Plan(NamedTuple):
    """The resolved static choices of one layer (hashable; a static argument under ``jax.jit``).

    Attributes:
        kernel: ``"lambertw"``, ``"quadratic"`` or ``"root"``.
        algorithm: ``"scan"`` or ``"parallel"``.
        refractory: whether EventProp models the release of the membrane after ``t_ref``.
        backward: EventProp backward pass, ``"scan"`` or ``"parallel"``.
    """

    kernel: str
    algorithm: str
    refractory: bool
    backward: str = "scan"


def resolve_algorithm(algorithm: str, neuron: LIFParameters, t_max: Any, recurrent: bool) -> str:
    """Turn the ``algorithm`` option of ``simulate`` into ``"scan"`` or ``"parallel"``.

    ``"parallel"`` is exact only when no neuron can spike twice (every ``t_ref >= t_max``) and
    the layer has no recurrent weights; ``"auto"`` picks it exactly then (and ``"scan"`` when
    ``t_ref`` or ``t_max`` are traced, since the condition cannot be checked). An explicit
    ``"parallel"`` with traced ``t_ref`` or ``t_max`` is trusted: the caller guarantees it.

    Args:
        algorithm: one of ``ALGORITHMS``.
        neuron: the neuron parameters.
        t_max: end of the window.
        recurrent: whether the layer has recurrent weights.

    Returns:
        ``"scan"`` or ``"parallel"``.

    Raises:
        ValueError: unknown ``algorithm``, or ``"parallel"`` requested where it is not exact.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "scan":
        return "scan"
    with jax.ensure_compile_time_eval():
        known = is_concrete((neuron.t_ref, t_max))
        single_spike = known and bool(np.all(np.asarray(neuron.t_ref) >= np.asarray(t_max)))
    if algorithm == "auto":
        return "parallel" if single_spike and not recurrent else "scan"
    if recurrent:
        raise ValueError("algorithm='parallel' does not support recurrent weights; use 'scan' or 'auto'")
    if known and not single_spike:
        raise ValueError(
            "algorithm='parallel' needs every neuron to spike at most once: t_ref >= t_max "
            f"(concrete values), got t_ref={neuron.t_ref!r}, t_max={t_max!r}; use 'scan' or 'auto'"
        )
    return "parallel"


def resolve_backward(backward: str, algorithm: str, neuron: LIFParameters, t_max: Any, recurrent: bool) -> str:
    """Turn the ``backward`` option of ``simulate_eventprop`` into ``"scan"`` or ``"parallel"``.

    The parallel EventProp backward (``jaxsnn.event.eventprop.parallel_eventprop_gradients``)
    needs what the parallel forward needs: every neuron spikes at most once (``t_ref >= t_max``)
    and the layer is feed-forward. ``"auto"`` picks it exactly when the forward ``algorithm``
    (already resolved) is ``"parallel"``; an explicit ``"parallel"`` is checked like
    ``algorithm="parallel"`` (``resolve_algorithm``).

    Args:
        backward: one of ``BACKWARDS``.
        algorithm: the resolved forward algorithm, ``"scan"`` or ``"parallel"``.
        neuron: the neuron parameters.
        t_max: end of the window.
        recurrent: whether the layer has recurrent weights.

    Returns:
        ``"scan"`` or ``"parallel"``.

    Raises:
        ValueError: unknown ``backward``, or ``"parallel"`` where it is not exact.
    """
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    if backward == "auto":
        return algorithm
    if backward == "parallel":
        try:
            resolve_algorithm("parallel", neuron, t_max, recurrent)
        except ValueError as error:
            raise ValueError(f"backward='parallel' has the conditions of algorithm='parallel': {error}") from None
    return backward


def resolve_refractory(neuron: LIFParameters) -> bool:
    """Whether EventProp must model refractory releases: False only when ``t_ref`` is concretely 0.

    Args:
        neuron: the neuron parameters.

    Returns:
        True unless every ``t_ref`` is known to be zero (True is always correct, False faster).
    """
    with jax.ensure_compile_time_eval():
        return not (is_concrete(neuron.t_ref) and bool(np.all(np.asarray(neuron.t_ref) == 0)))


def resolve_plan(
    neuron: LIFParameters,
    t_max: Any,
    *,
    kernel: str = "auto",
    algorithm: str = "auto",
    recurrent: bool = False,
    backward: str = "auto",
) -> Plan:
    """Resolve every static choice of a layer at once (see the module docstring).

    Call it where the time constants, ``t_ref`` and ``t_max`` are concrete (at layer
    construction, or on entry to a public function); traced values give the safe general
    choices (root solver, scan, refractory modelled).

    Args:
        neuron: the neuron parameters.
        t_max: end of the window.
        kernel: one of ``jaxsnn.event.KERNELS``.
        algorithm: one of ``ALGORITHMS``.
        recurrent: whether the layer has recurrent weights.
        backward: one of ``BACKWARDS`` (EventProp backward pass).

    Returns:
        The ``Plan``.

    Raises:
        ValueError: unknown options, an analytic kernel whose tau ratio does not hold, or
            ``"parallel"`` where it is not exact.
    """
    resolved = resolve_algorithm(algorithm, neuron, t_max, recurrent)
    return Plan(
        kernel=resolve_kernel(kernel, neuron),
        algorithm=resolved,
        refractory=resolve_refractory(neuron),
        backward=resolve_backward(backward, resolved, neuron, t_max, recurrent),
    )
