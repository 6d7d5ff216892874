"""Per-step dynamics of the discrete-time current-based LIF neuron, and the scans over a window.

Per time step ``t`` (``a_syn = exp(-dt / tau_syn)``, ``a_mem = exp(-dt / tau_mem)``, input scale
``g = 1 - a_mem`` unless ``input_scale`` is given)::

    I_t = a_syn * I_{t-1} + d_t                  (d_t = x_t @ W [+ z_{t-1} @ W_rec], the drive)
    u_t = v_leak + a_mem * (v_{t-1} - v_leak) + g * I_t
    z_t = H(u_t - v_th)                          (H(0) = 0; surrogate derivative backward)
    "subtract": v_t = u_t - z_t * (v_th - v_reset)
    "hard":     v_t = u_t + z_t * (v_reset - u_t)

``u_t`` is the membrane before the reset, ``v_t`` after it; the ``LI`` readout has no threshold
(``v_t = u_t``). Rest is ``v = v_leak``, ``I = 0``.

Single-state neurons: ``tau_syn = 0`` means no synaptic filter (``a_syn = 0``, ``I_t = d_t``),
the neuron of most online-learning papers, snnTorch ``Leaky``, Spyx ``LIF`` and Slax ``LIF``.
With the default ``g = 1 - a_mem`` it is the ``tau_syn -> 0`` limit of the two-state neuron
(``u_t = v_leak + a_mem (v_{t-1} - v_leak) + (1 - a_mem) d_t``); ``input_scale = 1`` with
``v_leak = 0`` gives the common form ``u_t = beta v_{t-1} + x_t @ W`` with ``beta = a_mem``
(``tau_mem = tau_from_decay(beta, dt)``), so weights mean the same as in those libraries. The
state keeps its ``current`` field (the last step's drive), which then no longer influences
later steps.

Everything here is elementwise over the neuron axes (any shape), pure, and works under
``jax.jit``/``jax.vmap``/``jax.grad``. ``lif_scan`` differentiates the window with a
hand-written adjoint (``jax.custom_vjp``): the forward pass keeps only the pre-reset membrane
``u`` (one array of the window's size) and the backward pass is one reverse elementwise scan::

    lam_u_t = lam_v_t * dv_t/du_t + dL/dz_t * sigma_t      (sigma = surrogate derivative)
    lam_I_t = a_syn * lam_I_{t+1} + g * lam_u_t              (= dL/dd_t)
    lam_v_{t-1} = a_mem * lam_u_t

The layers built on these functions are in ``jaxsnn.discrete.lif``.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax

from jaxsnn._validate import positive_int, positive_scalar, real_scalar
from jaxsnn.discrete import surrogate as surrogate_lib

Array = jax.Array

__all__ = [
    "BACKWARDS",
    "RESETS",
    "LIFConfig",
    "LIFState",
    "RecurrentLIFState",
    "decay_factors",
    "li_scan",
    "lif_config",
    "lif_dynamics",
    "lif_scan",
    "lif_step",
    "recurrent_lif_scan",
    "tau_from_decay",
]

RESETS = ("subtract", "hard")
BACKWARDS = ("adjoint", "autodiff")


class LIFState(NamedTuple):
    """State (``carry``) of a discrete ``LIF`` or ``LI`` layer after its last time step.

    Not ``jaxsnn.event.LIFState``: the discrete state holds the values at the end of the last
    step of a fixed grid and has no refractory field; the event state is the state at an
    arbitrary time with ``refractory_until``. Arrays are shaped like the layer's features
    (per sample; ``jax.vmap`` adds the batch axis).

    Attributes:
        v: membrane potential after the last step (after reset).
        current: synaptic current ``I`` after the last step (with ``tau_syn = 0`` the last
            step's drive, which does not influence later steps).
    """

    v: Array
    current: Array


class RecurrentLIFState(NamedTuple):
    """State (``carry``) of a discrete ``RecurrentLIF`` layer after its last time step.

    Attributes:
        v: membrane potential after the last step (after reset).
        current: synaptic current after the last step.
        spikes: spikes of the last step (they reach the layer through ``W_rec`` next step).
    """

    v: Array
    current: Array
    spikes: Array


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


class LIFConfig(NamedTuple):
    """Static (hashable) neuron constants and scan options; build it with ``lif_config``.

    Attributes:
        a_syn, a_mem: decay factors per step (``decay_factors``).
        input_scale: factor ``g`` of ``I_t`` in the membrane update.
        v_th, v_reset, v_leak: threshold, reset value, resting potential.
        reset: ``"subtract"`` or ``"hard"``.
        spike_fn: Heaviside forward with a surrogate derivative (``surrogate.step`` for ``LI``).
        record_membrane: whether the scans return the post-reset membrane trace.
        unroll: time steps per loop iteration of the scans.
    """

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


def lif_config(
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
    unroll: int = 1,
    spiking: bool = True,
) -> LIFConfig:
    """Validate the neuron constants once and bundle them as a ``LIFConfig``.

    Args:
        tau_syn, tau_mem, dt, v_th, v_reset, v_leak, reset, surrogate, input_scale,
            record_membrane, unroll: see ``jaxsnn.discrete.LIF``.
        spiking: ``False`` for the ``LI`` readout (threshold, reset and surrogate unused).

    Returns:
        The ``LIFConfig``.

    Raises:
        ValueError: bad constants (``tau_syn < 0``, ``tau_mem`` or ``dt`` <= 0,
            ``input_scale <= 0``, ``v_th <= v_reset``), unknown ``reset``/surrogate name.
        TypeError: non-numeric constants, a non-bool ``record_membrane``.
    """
    a_syn, a_mem = decay_factors(tau_syn, tau_mem, dt)
    if input_scale is None:
        input_scale = 1.0 - a_mem
    else:
        input_scale = positive_scalar("input_scale", input_scale)
    v_th = real_scalar("v_th", v_th)
    v_reset = real_scalar("v_reset", v_reset)
    v_leak = real_scalar("v_leak", v_leak)
    if spiking:
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
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
    return LIFConfig(
        a_syn, a_mem, input_scale, v_th, v_reset, v_leak, reset, spike_fn, record_membrane, unroll
    )


def check_backward(backward: str) -> str:
    """Return ``backward`` if it is one of ``BACKWARDS``, else raise ``ValueError``."""
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    return backward


def rest_state(config: LIFConfig, features: Tuple[int, ...], dtype) -> Tuple[Array, Array]:
    """``(v, current) = (v_leak, 0)`` shaped ``features``."""
    return jnp.full(features, config.v_leak, dtype), jnp.zeros(features, dtype)


def _current(config: LIFConfig, current: Array, drive: Array) -> Array:
    # tau_syn = 0: the current is this step's drive (static branch, no multiply by zero).
    return drive if config.a_syn == 0.0 else config.a_syn * current + drive


def _membrane(config: LIFConfig, v: Array, current: Array) -> Array:
    return config.v_leak + config.a_mem * (v - config.v_leak) + config.input_scale * current


def _after_reset(config: LIFConfig, u: Array, z: Array) -> Array:
    if config.reset == "subtract":
        return u - z * (config.v_th - config.v_reset)
    return u + z * (config.v_reset - u)


def lif_step(
    config: LIFConfig, state: Tuple[Array, Array], drive: Array, spike_fn=None
) -> Tuple[Tuple[Array, Array], Tuple[Array, Array]]:
    """One time step of the LIF neuron (see the module docstring).

    Args:
        config: the neuron constants.
        state: ``(v_{t-1}, I_{t-1})``.
        drive: ``d_t`` (``x_t @ W``, plus the recurrent term for ``RecurrentLIF``).
        spike_fn: override ``config.spike_fn`` (e.g. the plain step in a custom VJP's forward).

    Returns:
        ``((v_t, I_t), (z_t, u_t))``: the new state and the step's spikes and pre-reset
        membrane.
    """
    spike_fn = config.spike_fn if spike_fn is None else spike_fn
    v, current = state
    current = _current(config, current, drive)
    u = _membrane(config, v, current)
    z = spike_fn(u - config.v_th)
    return (_after_reset(config, u, z), current), (z, u)


def _forward_scan(config: LIFConfig, drive: Array, v0: Array, i0: Array, spike_fn):
    """The forward recurrence; returns ((v_T, I_T), (spikes, pre-reset membrane, trace))."""

    def body(state, d):
        state, (z, u) = lif_step(config, state, d, spike_fn)
        trace = state[0] if config.record_membrane else None
        return state, (z, u, trace)

    return _scan(body, (v0, i0), drive, config.unroll)


def _scan(body, init, xs, unroll: int = 1, reverse: bool = False):
    """``lax.scan``, or the body applied once for a one-step window (the online rules step
    networks one time step at a time: no loop to build, vectorise and differentiate)."""
    if jax.tree_util.tree_leaves(xs)[0].shape[0] == 1:
        carry, ys = body(init, jax.tree_util.tree_map(lambda a: a[0], xs))
        return carry, jax.tree_util.tree_map(lambda a: a[None], ys)
    return lax.scan(body, init, xs, unroll=unroll, reverse=reverse)


def _outputs(final, ys):
    (v_last, i_last), (spikes, _, trace) = final, ys
    return spikes, trace, v_last, i_last


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _lif_adjoint(config: LIFConfig, drive: Array, v0: Array, i0: Array):
    return _outputs(*_forward_scan(config, drive, v0, i0, surrogate_lib.step))


def _lif_adjoint_fwd(config: LIFConfig, drive: Array, v0: Array, i0: Array):
    final, ys = _forward_scan(config, drive, v0, i0, surrogate_lib.step)
    # The pre-reset membrane u is the only residual: spikes and surrogate derivatives are
    # recomputed from it in the backward scan (cheap elementwise work instead of memory).
    return _outputs(final, ys), ys[1]


def _lif_adjoint_bwd(config: LIFConfig, u_trace: Array, cotangents):
    g_spikes, g_trace, g_v_last, g_i_last = cotangents
    ones = jnp.ones_like(u_trace[0])

    def body(adjoint, inputs):
        lam_v, lam_i = adjoint
        if config.record_membrane:
            u, g_z, g_m = inputs
            lam_v = lam_v + g_m
        else:
            u, g_z = inputs
        z, sigma = jax.jvp(config.spike_fn, (u - config.v_th,), (ones,))
        if config.reset == "subtract":
            dv_du = 1.0 - (config.v_th - config.v_reset) * sigma
        else:
            dv_du = (1.0 - z) + (config.v_reset - u) * sigma
        lam_u = lam_v * dv_du + g_z * sigma
        lam_i = lam_i + config.input_scale * lam_u
        return (config.a_mem * lam_u, config.a_syn * lam_i), lam_i

    xs = (u_trace, g_spikes, g_trace) if config.record_membrane else (u_trace, g_spikes)
    (g_v0, g_i0), g_drive = _scan(body, (g_v_last, g_i_last), xs, config.unroll, reverse=True)
    return g_drive, g_v0, g_i0


_lif_adjoint.defvjp(_lif_adjoint_fwd, _lif_adjoint_bwd)


def lif_scan(
    config: LIFConfig, drive: Array, v0: Array, i0: Array, backward: str = "adjoint"
) -> Tuple[Array, Optional[Array], Array, Array]:
    """``lif_step`` over the leading (time) axis of ``drive``.

    Args:
        config: the neuron constants.
        drive: ``(time, *features)``.
        v0, i0: initial state, shaped ``features`` (cast to ``drive``'s dtype).
        backward: ``"adjoint"`` (the custom VJP) or ``"autodiff"`` (JAX differentiates the
            scan; also forward mode).

    Returns:
        ``(spikes, trace, v_last, i_last)``: spikes ``(time, *features)``, the post-reset
        membrane trace (``None`` unless ``config.record_membrane``) and the final state.
    """
    v0 = jnp.asarray(v0, drive.dtype)
    i0 = jnp.asarray(i0, drive.dtype)
    if backward == "adjoint":
        return _lif_adjoint(config, drive, v0, i0)
    return _outputs(*_forward_scan(config, drive, v0, i0, config.spike_fn))


def li_scan(config: LIFConfig, drive: Array, v0: Array, i0: Array) -> Tuple[Array, Array, Array]:
    """The leaky integrator (no threshold) over the leading axis of ``drive``.

    Returns:
        ``(v, v_last, i_last)``: the membrane trace ``(time, *features)`` and the final state.
    """

    def body(state, d):
        v, current = state
        current = _current(config, current, d)
        v = _membrane(config, v, current)
        return (v, current), v

    (v_last, i_last), trace = _scan(
        body, (jnp.asarray(v0, drive.dtype), jnp.asarray(i0, drive.dtype)), drive,
        config.unroll,
    )
    return trace, v_last, i_last


def recurrent_lif_scan(
    config: LIFConfig, drive: Array, recurrent_weight: Array, v0: Array, i0: Array, z0: Array
):
    """LIF with the recurrent drive ``z_{t-1} @ W_rec`` added every step (autodiff backward).

    Returns:
        ``(spikes, trace, v_last, i_last, z_last)``.
    """

    def body(state, d):
        v, current, z_prev = state
        (v, current), (z, _) = lif_step(
            config, (v, current), d + jnp.matmul(z_prev, recurrent_weight)
        )
        trace = v if config.record_membrane else None
        return (v, current, z), (z, trace)

    (v_last, i_last, z_last), (spikes, trace) = _scan(body, (v0, i0, z0), drive, config.unroll)
    return spikes, trace, v_last, i_last, z_last


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
            ``jaxsnn.discrete.LIF``.
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
    config = lif_config(
        tau_syn=tau_syn, tau_mem=tau_mem, dt=dt, v_th=v_th, v_reset=v_reset, v_leak=v_leak,
        reset=reset, surrogate=surrogate, input_scale=input_scale,
        record_membrane=record_membrane, unroll=unroll,
    )
    return lif_scan(config, jnp.asarray(currents), v0, i0, check_backward(backward))
