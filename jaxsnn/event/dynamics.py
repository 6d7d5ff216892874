"""Closed-form evolution of the current-based LIF neuron between events.

With ``u = v - v_leak`` and ``s`` the time elapsed since the start of an event-free interval::

    I(s) = I0 exp(-s / tau_syn)
    u(s) = u0 exp(-s / tau_mem) + I0 K(s)
    K(s) = tau_syn / (tau_syn - tau_mem) (exp(-s / tau_syn) - exp(-s / tau_mem))

which for every ratio of the time constants, ``tau_mem == tau_syn`` included, is evaluated as::

    K(s) = (s / tau_mem) exp(-s / tau_slow) phi(-s |1/tau_mem - 1/tau_syn|),   phi(x) = expm1(x) / x

with ``tau_slow = max(tau_mem, tau_syn)`` (``phi(0) = 1`` gives the equal-tau kernel
``(s/tau) exp(-s/tau)``; both signs of the rate gap give the same analytic function, so the
derivatives with respect to the time constants are exact at ``tau_mem == tau_syn`` too).
Every factor is bounded (``0 < phi(x) <= 1`` for ``x <= 0``, and the exponential is the
slower of the two decays), so ``K`` never overflows and underflows only where ``K`` itself
does, however long the gap. ``phi`` is evaluated with a series near 0, so nearly
equal time constants lose no precision and gradients stay finite. This one kernel serves the
forward dynamics, the next-spike root solver, the closed-form superposition
(``jaxsnn.event.superposition``) and the EventProp adjoint, whose ``lambda_v -> lambda_I``
coupling over a gap ``s`` is the same ``K(s)``.

``u`` has at most one interior extremum on ``s > 0``, at::

    s_ext = tau_syn c L(c (tau_syn - tau_mem) / tau_mem),   c = 1 - u0 / I0,   L(x) = log1p(x) / x

(a real extremum exists when ``I0 != 0``, ``1 + c (tau_syn - tau_mem)/tau_mem > 0`` and ``s_ext > 0``).
Every function here is elementwise, pure and differentiable by plain autodiff.
"""

from __future__ import annotations

from typing import Any, Tuple

import jax
import jax.numpy as jnp

from jaxsnn.event.neuron import LIFParameters, LIFState
from jaxsnn.spikes import Spikes

__all__ = [
    "expm1_ratio",
    "log1p_ratio",
    "psp_kernel",
    "membrane_decay_and_kernel",
    "free_membrane",
    "membrane_slope",
    "extremum_time",
    "evolve",
    "rest_state",
]

# |x| below which expm1(x)/x and log1p(x)/x are evaluated by their Taylor series: the series
# truncated after x^4 has a relative error below x^5/120 < 1e-17 at x = 1e-3.
_SERIES_RADIUS = 1e-3


def expm1_ratio(x: jax.Array) -> jax.Array:
    """``phi(x) = expm1(x) / x`` with ``phi(0) = 1``, accurate and differentiable near 0.

    Args:
        x: any float array.

    Returns:
        ``phi(x)`` elementwise.
    """
    small = jnp.abs(x) < _SERIES_RADIUS
    safe = jnp.where(small, 1.0, x)
    series = 1.0 + x * (1.0 / 2 + x * (1.0 / 6 + x * (1.0 / 24 + x / 120)))
    return jnp.where(small, series, jnp.expm1(safe) / safe)


def log1p_ratio(x: jax.Array) -> jax.Array:
    """``L(x) = log1p(x) / x`` with ``L(0) = 1``, for ``x > -1``; accurate and differentiable near 0.

    Args:
        x: float array with ``x > -1`` (other entries give NaN or inf; mask them first).

    Returns:
        ``L(x)`` elementwise.
    """
    small = jnp.abs(x) < _SERIES_RADIUS
    safe = jnp.where(small, 1.0, x)
    series = 1.0 - x * (1.0 / 2 - x * (1.0 / 3 - x * (1.0 / 4 - x / 5)))
    return jnp.where(small, series, jnp.log1p(safe) / safe)


def psp_kernel(s: jax.Array, tau_mem: Any, tau_syn: Any) -> jax.Array:
    """Response ``K(s)`` of ``u`` to a unit current step at ``s = 0`` (see module docstring).

    ``K(s) = tau_syn / (tau_syn - tau_mem) (exp(-s/tau_syn) - exp(-s/tau_mem))``, evaluated as
    ``(s/tau_mem) exp(-s/tau_slow) phi(-s |1/tau_mem - 1/tau_syn|)``, ``tau_slow = max(tau_mem,
    tau_syn)``: no cancellation for nearly equal time constants, no overflow for long gaps.

    Args:
        s: elapsed time, >= 0 (finite).
        tau_mem: membrane time constant(s), broadcastable.
        tau_syn: synaptic time constant(s), broadcastable.

    Returns:
        ``K(s)`` elementwise; exact for any ratio, including ``tau_mem == tau_syn``.
    """
    # exp(-s/tau_mem) phi(x) = exp(-s/tau_syn) phi(-x), x = s (1/tau_mem - 1/tau_syn): the same
    # function, so choosing the form with phi's argument <= 0 for s >= 0 (phi in (0, 1], decay
    # with the slower time constant) changes no derivative. Selected with `where` rather than
    # abs/maximum, whose derivatives at tau_mem == tau_syn would not be those of K. The choice
    # depends on the time constants only, so the slower one is picked before the one `exp`
    # (a `where` between two exponentials evaluates both).
    rate_gap = 1.0 / tau_mem - 1.0 / tau_syn
    slow_syn = rate_gap > 0  # tau_mem < tau_syn
    x = s * rate_gap
    decay = jnp.exp(-s / jnp.where(slow_syn, tau_syn, tau_mem))
    return (s / tau_mem) * decay * expm1_ratio(jnp.where(slow_syn, -x, x))


def membrane_decay_and_kernel(s: jax.Array, tau_mem: Any, tau_syn: Any) -> Tuple[jax.Array, jax.Array]:
    """``(exp(-s/tau_mem), K(s))`` together, cheaply: for the EventProp adjoints, which need both at
    every (input event, neuron).

    ``K(s) = (s/tau_mem) exp(-s/tau_slow) phi(x)`` with ``x = -s |1/tau_mem - 1/tau_syn|`` (see
    the module docstring) is evaluated as ``exp(-s/tau_slow) expm1(x) / (-tau_mem |1/tau_mem -
    1/tau_syn|)``: the division is by a per-neuron constant, so there is none per element, and
    ``expm1`` keeps full relative precision for small ``x``; for equal time constants it is
    ``(s/tau_mem) exp(-s/tau_mem)``. ``exp(-s/tau_slow)`` *is* ``exp(-s/tau_mem)`` when the
    membrane is the slower one (the usual case), so the pair then costs one ``exp`` and one
    ``expm1`` (with time constants known at compile time the other branch is folded away).
    Values agree with ``psp_kernel`` to a few ulp for every ratio of the time constants. Unlike
    ``psp_kernel`` its derivative with respect to the time constants is not defined at
    ``tau_mem == tau_syn`` exactly: use it for values (the adjoints), ``psp_kernel`` for
    differentiable dynamics.

    Args:
        s: elapsed time, >= 0 (finite).
        tau_mem: membrane time constant(s), broadcastable.
        tau_syn: synaptic time constant(s), broadcastable.

    Returns:
        ``(exp(-s/tau_mem), K(s))`` elementwise.
    """
    rate_gap = 1.0 / tau_mem - 1.0 / tau_syn
    slow_syn = rate_gap > 0  # tau_mem < tau_syn
    decay_slow = jnp.exp(-s / jnp.where(slow_syn, tau_syn, tau_mem))
    gap = jnp.abs(rate_gap)
    equal = gap == 0
    scale = -1.0 / (tau_mem * jnp.where(equal, 1.0, gap))
    kernel = decay_slow * jnp.where(equal, s / tau_mem, jnp.expm1(-s * gap) * scale)
    decay_mem = jnp.where(slow_syn, jnp.exp(-s / tau_mem), decay_slow)
    return decay_mem, kernel


def free_membrane(s: jax.Array, u0: jax.Array, current0: jax.Array, tau_mem: Any, tau_syn: Any) -> jax.Array:
    """``u(s) = u0 exp(-s/tau_mem) + I0 K(s)``: membrane (relative to ``v_leak``) after ``s``.

    Args:
        s: elapsed time, >= 0.
        u0: ``v - v_leak`` at ``s = 0``.
        current0: synaptic current at ``s = 0``.
        tau_mem: membrane time constant.
        tau_syn: synaptic time constant.

    Returns:
        ``u(s)``.
    """
    return u0 * jnp.exp(-s / tau_mem) + current0 * psp_kernel(s, tau_mem, tau_syn)


def membrane_slope(s: jax.Array, u0: jax.Array, current0: jax.Array, tau_mem: Any, tau_syn: Any) -> jax.Array:
    """``du/ds = (I(s) - u(s)) / tau_mem``.

    Args:
        s: elapsed time, >= 0.
        u0: ``v - v_leak`` at ``s = 0``.
        current0: synaptic current at ``s = 0``.
        tau_mem: membrane time constant.
        tau_syn: synaptic time constant.

    Returns:
        The time derivative of ``u`` at ``s``.
    """
    u = free_membrane(s, u0, current0, tau_mem, tau_syn)
    return (current0 * jnp.exp(-s / tau_syn) - u) / tau_mem


def extremum_time(u0: jax.Array, current0: jax.Array, tau_mem: Any, tau_syn: Any) -> Tuple[jax.Array, jax.Array]:
    """Time of the single interior extremum of ``u`` on ``s > 0``, in closed form.

    Setting ``du/ds = 0`` gives ``exp(s (1/tau_syn - 1/tau_mem)) = I0 tau_mem / (I0 tau_syn - u0 (tau_syn - tau_mem))``,
    i.e. ``s_ext = tau_syn c L(c (tau_syn - tau_mem) / tau_mem)`` with ``c = 1 - u0/I0``.

    Args:
        u0: ``v - v_leak`` at ``s = 0``.
        current0: synaptic current at ``s = 0``.
        tau_mem: membrane time constant.
        tau_syn: synaptic time constant.

    Returns:
        ``(s_ext, exists)``: ``exists`` is True where an extremum lies at ``s > 0``; ``s_ext`` is
        finite everywhere (``0`` where it does not exist) so it is safe to differentiate.
    """
    nonzero = current0 != 0
    safe_current = jnp.where(nonzero, current0, 1.0)
    c = 1.0 - u0 / safe_current
    x = c * (tau_syn - tau_mem) / tau_mem
    valid = nonzero & (x > -1.0) & (c > 0)
    s_ext = tau_syn * c * log1p_ratio(jnp.where(valid, x, 0.0))
    exists = valid & (s_ext > 0) & jnp.isfinite(s_ext)
    return jnp.where(exists, s_ext, 0.0), exists


def rest_state(size: int, neuron: LIFParameters, dtype: Any = None) -> LIFState:
    """The state at rest: ``v = v_leak``, ``I = 0``, not refractory.

    Args:
        size: number of neurons.
        neuron: parameters (``v_leak`` may be per neuron).
        dtype: float dtype (default: JAX's default float).

    Returns:
        A ``LIFState`` with fields of shape ``(size,)``.
    """
    dtype = dtype or jnp.zeros(()).dtype
    v = jnp.broadcast_to(jnp.asarray(neuron.v_leak, dtype), (size,))
    return LIFState(
        v=v,
        current=jnp.zeros((size,), dtype),
        refractory_until=jnp.full((size,), -jnp.inf, dtype),
    )


def evolve(state: LIFState, t_from: jax.Array, t_to: jax.Array, neuron: LIFParameters) -> LIFState:
    """Advance the state from ``t_from`` to ``t_to >= t_from`` without events, refractoriness included.

    While ``t < refractory_until`` the membrane is clamped at ``v_reset`` and only ``I`` decays;
    from ``max(t_from, refractory_until)`` on, ``v`` evolves freely (closed form above).

    Args:
        state: state at ``t_from`` (``refractory_until`` is an absolute time).
        t_from: current time (finite).
        t_to: target time (finite, ``>= t_from``).
        neuron: parameters.

    Returns:
        The state at ``t_to``.
    """
    tau_mem, tau_syn = neuron.tau_mem, neuron.tau_syn
    clamped = state.refractory_until > t_from
    start = jnp.where(clamped, jnp.minimum(state.refractory_until, t_to), t_from)
    current_start = state.current * jnp.exp(-(start - t_from) / tau_syn)
    v_start = jnp.where(clamped, jnp.asarray(neuron.v_reset, state.v.dtype), state.v)
    s_free = t_to - start
    u_end = free_membrane(s_free, v_start - neuron.v_leak, current_start, tau_mem, tau_syn)
    current_end = state.current * jnp.exp(-(t_to - t_from) / tau_syn)
    return LIFState(
        v=(neuron.v_leak + u_end).astype(state.v.dtype),
        current=current_end.astype(state.current.dtype),
        refractory_until=state.refractory_until,
    )


def acting_inputs(weight: jax.Array, input_spikes: Spikes, t_max: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Input times and weight rows for the interval searches of the parallel algorithms.

    Inputs that never act (padding, after the window) sit at the window end with zero weight:
    they only add empty intervals. Valid inputs come first, so the times stay sorted.

    Args:
        weight: ``(n_inputs, n)``.
        input_spikes: sorted input buffer.
        t_max: end of the window.

    Returns:
        ``(times (n_slots,), rows (n_slots, n))``.
    """
    in_idx = input_spikes.idx
    valid = (in_idx >= 0) & (input_spikes.time <= t_max)
    times = jnp.where(valid, input_spikes.time, t_max)
    rows = weight[jnp.clip(in_idx, 0, weight.shape[0] - 1)]
    rows = jnp.where(valid[:, None], rows, jnp.zeros_like(rows))
    return times, rows

