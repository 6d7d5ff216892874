"""Next threshold crossing of a current-based LIF neuron after an event (the next-spike kernels).

Between events the membrane relative to rest, ``u(s) = v(s) - v_leak``, is::

    u(s) = a exp(-s / tau_mem) + b exp(-s / tau_syn)           (tau_mem != tau_syn)
    u(s) = (u0 + I0 s / tau) exp(-s / tau)                        (tau_mem == tau_syn == tau)

with ``b = I0 tau_syn / (tau_syn - tau_mem)``, ``a = u0 - b``. Given ``u0 < theta = v_th - v_leak``
(``theta > 0``), the kernels return the smallest ``s`` in ``[0, horizon]`` with ``u(s) = theta``
(``+inf`` if there is none). Three solvers, all elementwise:

* ``"lambertw"`` (``tau_mem == tau_syn``): ``s = tau (-W0(z) - u0/I0)``,
  ``z = -(theta/I0) exp(-u0/I0)``; ``z`` is handled through ``log(-z)`` and the distance to the
  branch point ``1 + e z`` is computed with ``expm1``, so grazing crossings and tiny or huge currents
  neither overflow nor lose the root.
* ``"quadratic"`` (``tau_mem == 2 tau_syn``): with ``q = exp(-s/tau_mem)``,
  ``I0 q^2 - (u0 + I0) q + theta = 0``; the first crossing is the larger root
  ``q = (c + sqrt(c^2 - 4 I0 theta)) / (2 I0)``, ``c = u0 + I0`` (no cancellation since ``c > 0``).
* ``"root"`` (any ratio): ``u`` has at most one interior extremum, at a closed-form ``s_ext``
  (``jaxsnn.event.dynamics.extremum_time``). Because ``u -> 0 < theta`` as ``s -> inf`` and
  ``u0 < theta``, a crossing exists only before a maximum: exactly when ``u(min(s_ext, horizon)) >=
  theta``. Then ``[0, min(s_ext, horizon)]`` is an exact bracket on which ``u`` is increasing, and a
  safeguarded Newton-bisection iteration converges to the unique root (to a few ulp). A crossing is
  therefore never missed and never invented.

All three are differentiated by the implicit function theorem (``jax.custom_jvp``): at the root
``u(s*; p) = theta``, so ``ds*/dp = -(du/dp) / (du/ds)``; no solver iteration is ever unrolled.
At a tangential crossing ``du/ds = 0`` and the true derivative is unbounded; the kernels then
return a zero tangent rather than ``inf``/``NaN``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from jaxsnn._validate import is_concrete
from jaxsnn.event.dynamics import extremum_time, free_membrane, membrane_slope
from jaxsnn.event.neuron import LIFParameters

__all__ = ["KERNELS", "lambertw0", "next_crossing", "resolve_kernel"]

#: Valid values of the ``kernel`` option.
KERNELS = ("auto", "lambertw", "quadratic", "root")

_MAX_ROOT_ITERATIONS = 100


# ----------------------------------------------------------------------------- Lambert W


def _w0_from_parts(z: jax.Array, branch_gap: jax.Array) -> jax.Array:
    """Principal-branch Lambert W for ``z >= -1/e`` given ``branch_gap = 1 + e z`` computed accurately.

    Near the branch point ``W = -1 + p - p^2/3 + 11 p^3/72 - 43 p^4/540 + ...``, ``p = sqrt(2 gap)``;
    elsewhere a starting guess is refined by Halley's iteration on ``w e^w - z``.
    """
    dtype = jnp.result_type(z)
    eps = float(jnp.finfo(dtype).eps)
    p = jnp.sqrt(2.0 * jnp.maximum(branch_gap, 0.0))
    branch_series = -1.0 + p * (1.0 + p * (-1.0 / 3 + p * (11.0 / 72 + p * (-43.0 / 540 + p * 769.0 / 17280))))
    near_branch = z < -0.25
    small_series = z * (1.0 - z * (1.0 - z * (1.5 - z * 8.0 / 3)))
    large_guess = jnp.log1p(jnp.maximum(z, 0.0))
    guess = jnp.where(near_branch, branch_series, jnp.where(z < 0.5, small_series, large_guess))

    def halley(_, w):
        ew = jnp.exp(w)
        f = w * ew - z
        wp1 = w + 1.0
        safe_wp1 = jnp.where(jnp.abs(wp1) > eps, wp1, eps)
        step = f / (ew * wp1 - (w + 2.0) * f / (2.0 * safe_wp1))
        step = jnp.where(jnp.isfinite(step), step, 0.0)
        return w - step

    w = jax.lax.fori_loop(0, 6, halley, guess)
    # Within p < eps^(1/5) the truncated series is exact to rounding, and better conditioned
    # than any iteration on the residual, which cancels catastrophically there.
    return jnp.where(p < eps**0.2, branch_series, w)


@jax.custom_jvp
def lambertw0(z: jax.Array) -> jax.Array:
    """Principal branch ``W0`` of the Lambert W function (``W e^W = z``) for real ``z >= -1/e``.

    JAX has no Lambert W. Accurate to a few ulp away from the branch point and to the
    conditioning of the problem (``dW/dz ~ 1/sqrt(1 + e z)``) next to it.

    Args:
        z: float array, ``z >= -1/e`` (smaller values give NaN).

    Returns:
        ``W0(z)`` elementwise; derivative ``W' = 1 / ((1 + W) e^W)``.
    """
    z = jnp.asarray(z, dtype=jnp.result_type(z, 0.0))
    gap = 1.0 + np.e * z
    w = _w0_from_parts(z, gap)
    return jnp.where(gap < 0, jnp.nan, w)


@lambertw0.defjvp
def _lambertw0_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    w = lambertw0(z)
    return w, dz / ((1.0 + w) * jnp.exp(w))


# ----------------------------------------------------------------------------- solvers


def _solve_lambertw(u0, current0, theta, tau_mem, tau_syn, horizon):
    del tau_syn  # equal to tau_mem for this kernel
    positive = current0 > 0
    safe_current = jnp.where(positive, current0, 1.0)
    ratio = u0 / safe_current
    # log(-z) with z = -(theta / I0) exp(-u0 / I0): never overflows, whatever the current.
    log_minus_z = jnp.log(theta) - jnp.log(safe_current) - ratio
    exists = positive & (log_minus_z <= -1.0)
    log_minus_z = jnp.where(exists, log_minus_z, -1.0)
    z = -jnp.exp(log_minus_z)
    branch_gap = -jnp.expm1(1.0 + log_minus_z)  # 1 + e z, exact near the branch point
    w = _w0_from_parts(z, branch_gap)
    x = -w - ratio
    s = tau_mem * jnp.maximum(x, 0.0)
    found = exists & (x >= 0) & (s <= horizon)
    return jnp.where(found, s, jnp.inf)


def _solve_quadratic(u0, current0, theta, tau_mem, tau_syn, horizon):
    del tau_syn  # equal to tau_mem / 2 for this kernel
    c = u0 + current0
    discriminant = c * c - 4.0 * current0 * theta
    exists = (current0 > 0) & (c > 0) & (discriminant >= 0)
    root_sum = c + jnp.sqrt(jnp.where(exists, discriminant, 0.0))
    safe_sum = jnp.where(exists, root_sum, 1.0)
    safe_current = jnp.where(exists, current0, 1.0)
    # s = tau_mem log(1/q) = tau_mem log1p((2 I0 - c - sqrt(D)) / (c + sqrt(D))). The numerator
    # (I0 - u0) - sqrt(D) cancels for large currents; where I0 > u0 it equals
    # 4 I0 (theta - u0) / ((I0 - u0) + sqrt(D)) exactly, which does not.
    root = safe_sum - c
    gap = current0 - u0
    rationalised = 4.0 * safe_current * (theta - u0) / jnp.where(gap > 0, gap + root, 1.0)
    numerator = jnp.where(gap > 0, rationalised, gap - root)
    excess = numerator / safe_sum
    found = exists & (excess >= 0)
    s = tau_mem * jnp.log1p(jnp.where(found, excess, 0.0))
    found = found & (s <= horizon)
    return jnp.where(found, s, jnp.inf)


def _solve_root(u0, current0, theta, tau_mem, tau_syn, horizon):
    dtype = jnp.result_type(u0)
    eps = float(jnp.finfo(dtype).eps)
    s_ext, has_extremum = extremum_time(u0, current0, tau_mem, tau_syn)
    upper = jnp.minimum(jnp.where(has_extremum, s_ext, 0.0), jnp.maximum(horizon, 0.0))
    excess_upper = free_membrane(upper, u0, current0, tau_mem, tau_syn) - theta
    exists = has_extremum & (excess_upper >= 0) & (horizon >= 0)

    def excess(s):
        return free_membrane(s, u0, current0, tau_mem, tau_syn) - theta

    excess_lower = u0 - theta  # < 0
    # Regula-falsi starting point inside the bracket.
    span = jnp.where(exists, excess_upper - excess_lower, 1.0)
    start = jnp.where(exists, upper * (-excess_lower) / span, 0.0)
    tolerance = 4.0 * eps * jnp.maximum(upper, jnp.minimum(tau_mem, tau_syn))

    def cond(carry):
        iteration, _, _, _, step = carry
        return (iteration < _MAX_ROOT_ITERATIONS) & jnp.any(exists & (jnp.abs(step) > tolerance))

    def body(carry):
        iteration, lower, upper_, s, previous_step = carry
        f = excess(s)
        slope = membrane_slope(s, u0, current0, tau_mem, tau_syn)
        below = f < 0
        lower = jnp.where(below, s, lower)
        upper_ = jnp.where(below, upper_, s)
        safe_slope = jnp.where(slope > 0, slope, 1.0)
        newton = s - f / safe_slope
        # Newton is used while it stays inside the bracket and its steps at least halve
        # (rtsafe); otherwise bisect. So the iteration cannot stall, and it converges
        # quadratically once Newton takes over.
        trusted = (
            (slope > 0) & (newton > lower) & (newton < upper_)
            & (jnp.abs(newton - s) <= 0.5 * jnp.abs(previous_step))
        )
        candidate = jnp.where(trusted, newton, 0.5 * (lower + upper_))
        step = jnp.where(exists & (f != 0), candidate - s, 0.0)
        return iteration + 1, lower, upper_, jnp.where(f == 0, s, candidate), step

    initial = (jnp.asarray(0), jnp.zeros_like(start), upper, start, jnp.full_like(start, jnp.inf))
    _, lower, upper_final, s, _ = jax.lax.while_loop(cond, body, initial)
    # Return the bracket end at or above threshold when the iterate ended below it, so the
    # reported time never precedes the crossing by more than the final step.
    s = jnp.where(excess(s) >= 0, s, jnp.where(upper_final - s <= tolerance, upper_final, s))
    return jnp.where(exists, s, jnp.inf)


_SOLVERS = {"lambertw": _solve_lambertw, "quadratic": _solve_quadratic, "root": _solve_root}


def _crossing_primal(method, u0, current0, theta, tau_mem, tau_syn, horizon):
    immediate = (u0 >= theta) & (horizon >= 0)
    # Solvers assume u0 < theta; feed a harmless value where the crossing is immediate.
    safe_u0 = jnp.where(immediate, 0.0, u0)
    s = _SOLVERS[method](safe_u0, current0, theta, tau_mem, tau_syn, horizon)
    return jnp.where(immediate, jnp.zeros_like(s), s)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _crossing(method, u0, current0, theta, tau_mem, tau_syn, horizon):
    return _crossing_primal(method, u0, current0, theta, tau_mem, tau_syn, horizon)


def _crossing_jvp(method, primals, tangents):
    u0, current0, theta, tau_mem, tau_syn, horizon = primals
    s = _crossing(method, *primals)
    interior = jnp.isfinite(s) & (s > 0)
    s_safe = jnp.where(interior, s, 0.0)
    # Only arguments with a nonzero tangent are differentiated (parameters are usually constant).
    live = [k for k in range(5) if not isinstance(tangents[k], SymbolicZero)]
    if not live:
        return s, jnp.zeros_like(s)

    def excess(*live_values):
        values = list(primals[:5])
        for k, value in zip(live, live_values):
            values[k] = value
        u0_, current0_, theta_, tau_mem_, tau_syn_ = values
        return free_membrane(s_safe, u0_, current0_, tau_mem_, tau_syn_) - theta_

    _, d_excess = jax.jvp(
        excess, tuple(primals[k] for k in live), tuple(tangents[k] for k in live)
    )
    slope = membrane_slope(s_safe, u0, current0, tau_mem, tau_syn)
    usable = interior & (slope > 0)
    ds = jnp.where(usable, -d_excess / jnp.where(usable, slope, 1.0), 0.0)
    return s, ds


_crossing.defjvp(_crossing_jvp, symbolic_zeros=True)


def next_crossing(
    u0: jax.Array,
    current0: jax.Array,
    theta: Any,
    tau_mem: Any,
    tau_syn: Any,
    horizon: Any,
    method: str = "root",
) -> jax.Array:
    """Earliest ``s`` in ``[0, horizon]`` with ``u(s) = theta`` (``+inf`` if none), elementwise.

    Args:
        u0: ``v - v_leak`` at ``s = 0``; where ``u0 >= theta`` the crossing is immediate (``s = 0``).
        current0: synaptic current at ``s = 0``.
        theta: ``v_th - v_leak``, > 0.
        tau_mem: membrane time constant.
        tau_syn: synaptic time constant.
        horizon: latest admissible crossing time (``s <= horizon``); negative means none.
        method: ``"lambertw"`` (requires ``tau_mem == tau_syn``), ``"quadratic"`` (requires
            ``tau_mem == 2 tau_syn``) or ``"root"`` (any ratio). Not checked here; see
            ``resolve_kernel``.

    Returns:
        Crossing times relative to ``s = 0``, broadcast shape of the inputs. Differentiable
        (implicit function theorem) w.r.t. every argument but ``horizon`` and ``method``.

    Raises:
        ValueError: on an unknown ``method``.
    """
    if method not in _SOLVERS:
        raise ValueError(f"method must be one of {tuple(_SOLVERS)}, got {method!r}")
    arrays = jnp.broadcast_arrays(
        *[jnp.asarray(x) for x in (u0, current0, theta, tau_mem, tau_syn, horizon)]
    )
    dtype = jnp.result_type(*arrays, 0.0)
    arrays = [x.astype(dtype) for x in arrays]
    return _crossing(method, *arrays)


def resolve_kernel(kernel: str, neuron: LIFParameters) -> str:
    """Turn the ``kernel`` option into a concrete solver name.

    ``"auto"`` picks ``"lambertw"`` when ``tau_mem == tau_syn`` exactly, ``"quadratic"`` when
    ``tau_mem == 2 tau_syn`` exactly, else ``"root"`` (also when the time constants are traced,
    e.g. while differentiating with respect to them).

    Args:
        kernel: one of ``KERNELS``.
        neuron: the neuron parameters.

    Returns:
        ``"lambertw"``, ``"quadratic"`` or ``"root"``.

    Raises:
        ValueError: on an unknown kernel, or an analytic kernel whose tau ratio does not hold.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    taus = (neuron.tau_mem, neuron.tau_syn)
    concrete = is_concrete(taus)
    if concrete:
        tau_mem = np.asarray(neuron.tau_mem, dtype=np.float64)
        tau_syn = np.asarray(neuron.tau_syn, dtype=np.float64)
        equal = bool(np.all(tau_mem == tau_syn))
        double = bool(np.all(tau_mem == 2.0 * tau_syn))
    if kernel == "auto":
        if not concrete:
            return "root"
        return "lambertw" if equal else "quadratic" if double else "root"
    if kernel == "lambertw" and concrete and not equal:
        raise ValueError(
            "kernel='lambertw' needs tau_mem == tau_syn, got "
            f"tau_mem={neuron.tau_mem!r}, tau_syn={neuron.tau_syn!r}; use kernel='root' or 'auto'"
        )
    if kernel == "quadratic" and concrete and not double:
        raise ValueError(
            "kernel='quadratic' needs tau_mem == 2 * tau_syn, got "
            f"tau_mem={neuron.tau_mem!r}, tau_syn={neuron.tau_syn!r}; use kernel='root' or 'auto'"
        )
    return kernel
