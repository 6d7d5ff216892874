"""Small self-contained layers for testing the toolkit: correct ones and deliberately broken ones.

``toy_event_lif`` is an exact event-based current-based LIF layer written independently of
``jaxsnn.event`` (bracketing by bisection on the closed form, implicit-function-theorem
gradients), so the toolkit's tests do not depend on the project's own layers. Its ``Bug`` flags
switch on one failure mode each, as known from event-based simulators; the wrappers below add
the failure modes that live at the input boundary. Known limitation of the toy (found by
``check_gradients``): at exactly simultaneous crossings of several neurons its spike-time
gradients mix the tied neurons, so gradient tests of the toy offset the weight columns so that
no two neurons cross at the same instant. ``toy_discrete_lif`` is the discrete update of
``jaxsnn.discrete``, written independently, with optional bugs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn.event.neuron import LIFParameters
from jaxsnn.spikes import Spikes
from jaxsnn.types import named_layer

_BISECTIONS = 64


class Bug(NamedTuple):
    """Failure modes of the toy event layer (all off = correct)."""

    drop_simultaneous: bool = False   # a second neuron crossing at the same instant is reset silently
    ignore_leak: bool = False         # dynamics relax to 0 instead of v_leak
    ratio_dispatch: bool = False      # ratios within 0.5 of 2 silently use the tau_mem = 2 tau_syn form
    gradient_scale_below_rest: float = 1.0  # spike-time gradients scaled when v_reset < v_leak


def _kernel(s, tau_mem, tau_syn):
    # (s / tau_mem) exp(-s / tau_mem) expm1(x) / x with x = s (1/tau_mem - 1/tau_syn); exact at x = 0.
    x = s * (tau_syn - tau_mem) / (tau_mem * tau_syn)
    small = jnp.abs(x) < 1e-6
    x_safe = jnp.where(small, 1.0, x)
    ratio = jnp.where(small, 1.0 + 0.5 * x, jnp.expm1(x_safe) / x_safe)
    return (s / tau_mem) * jnp.exp(-s / tau_mem) * ratio


def _free(s, u0, i0, tau_mem, tau_syn):
    """(u(s), I(s)) relative to rest, no threshold."""
    return u0 * jnp.exp(-s / tau_mem) + i0 * _kernel(s, tau_mem, tau_syn), i0 * jnp.exp(-s / tau_syn)


def _evolve(t, v, current, ref, t_to, c):
    tau_syn, tau_mem, v_reset, v_leak = c["tau_syn"], c["tau_mem"], c["v_reset"], c["v_leak"]
    clamped = ref >= t_to
    from_ref = (ref > t) & ~clamped
    start = jnp.where(from_ref, ref, t)
    v_start = jnp.where(from_ref, v_reset, v)
    i_start = current * jnp.exp(-(start - t) / tau_syn)
    u, _ = _free(t_to - start, v_start - v_leak, i_start, tau_mem, tau_syn)
    v_to = jnp.where(clamped, v_reset, v_leak + u)
    return v_to, current * jnp.exp(-(t_to - t) / tau_syn)


def _crossings(t, v, current, ref, horizon, c):
    """Earliest time in (t, horizon] at which each neuron reaches v_th (inf if none)."""
    tau_syn, tau_mem, v_th, v_reset, v_leak = (c[k] for k in ("tau_syn", "tau_mem", "v_th", "v_reset", "v_leak"))
    start = jnp.maximum(t, ref)
    valid = start < horizon
    v_s = jnp.where(ref > t, v_reset, v)
    i_s = current * jnp.exp(-(start - t) / tau_syn)
    end = jnp.where(valid, horizon, start)

    def f(tau):
        return _free(tau - start, v_s - v_leak, i_s, tau_mem, tau_syn)[0] - (v_th - v_leak)

    def slope(tau):
        u, i = _free(tau - start, v_s - v_leak, i_s, tau_mem, tau_syn)
        return i - u

    rising = slope(start) > 0
    has_extremum = rising != (slope(end) > 0)

    def bisect_extremum(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        same = (slope(mid) > 0) == rising
        return jnp.where(same, mid, lo), jnp.where(same, hi, mid)

    lo, hi = jax.lax.fori_loop(0, _BISECTIONS, bisect_extremum, (start, end))
    peak = jnp.where(f(lo) >= f(hi), lo, hi)
    middle = jnp.where(has_extremum, peak, end)
    in_first = f(middle) >= 0
    in_second = ~in_first & (f(end) >= 0)
    lo = jnp.where(in_first, start, middle)
    hi = jnp.where(in_first, middle, end)

    def bisect_root(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = f(mid) >= 0
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    _, root = jax.lax.fori_loop(0, _BISECTIONS, bisect_root, (lo, hi))
    root = jnp.where(f(start) >= 0, start, root)
    found = valid & ((f(start) >= 0) | in_first | in_second)
    return jnp.where(found, root, jnp.inf)


@functools.partial(jax.jit, static_argnames=("capacity",))
def _simulate(weight, in_time, in_idx, constants, t_max, capacity, bug):
    # The bug flags are traced values, so every variant shares one compilation.
    dtype = constants.dtype
    weight, in_time = weight.astype(dtype), in_time.astype(dtype)
    c = dict(zip(("tau_syn", "tau_mem", "v_th", "v_reset", "v_leak", "t_ref"), constants))
    drop_simultaneous, ignore_leak, ratio_dispatch, scale_below_rest = bug
    gradient_scale = jnp.where(c["v_reset"] < c["v_leak"], scale_below_rest, 1.0)
    c["v_leak"] = jnp.where(ignore_leak > 0, 0.0, c["v_leak"])
    near_two = (ratio_dispatch > 0) & (jnp.abs(c["tau_mem"] / c["tau_syn"] - 2.0) < 0.5)
    c["tau_mem"] = jnp.where(near_two, 2.0 * c["tau_syn"], c["tau_mem"])
    size = weight.shape[1]
    n_in = in_time.shape[0]
    in_time = jnp.where(in_idx >= 0, in_time, jnp.inf).astype(dtype)

    def step(state, _):
        t, v, current, ref, k, out_t, out_i, n_out = state
        k_safe = jnp.minimum(k, n_in - 1)
        t_in = jnp.where(k < n_in, in_time[k_safe], jnp.inf)
        horizon = jnp.minimum(t_in, t_max)
        roots = jax.lax.stop_gradient(_crossings(t, v, current, ref, horizon, c))
        n = jnp.argmin(roots)
        t_root = roots[n]
        spike = (t_root <= horizon) & (n_out < capacity)
        do_input = ~spike & (t_in <= t_max)
        # Implicit-function-theorem spike time: value t_root, derivative -(df/dp) / (df/dt).
        start = jnp.maximum(t, ref[n])
        v_s = jnp.where(ref[n] > t, c["v_reset"], v[n])
        i_s = current[n] * jnp.exp(-(start - t) / c["tau_syn"])
        t_r = jnp.where(spike, t_root, start)
        u, i = _free(t_r - start, v_s - c["v_leak"], i_s, c["tau_mem"], c["tau_syn"])
        excess = u - (c["v_th"] - c["v_leak"])
        rate = jax.lax.stop_gradient((i - u) / c["tau_mem"])
        rate = jnp.where(rate > 0, rate, 1.0)
        correction = excess / rate
        t_spike = t_root - gradient_scale * (correction - jax.lax.stop_gradient(correction))
        t_next = jnp.where(spike, t_spike, jnp.where(do_input, t_in, t))
        v, current = _evolve(t, v, current, ref, t_next, c)
        fired = spike & (jnp.arange(size) == n)
        silent = (drop_simultaneous > 0) & spike & (roots == t_root) & ~fired
        v = jnp.where(silent, c["v_reset"], v)
        v = jnp.where(fired, c["v_reset"], v)
        ref = jnp.where(fired, t_next + c["t_ref"], ref)
        slot = jnp.minimum(n_out, capacity - 1)
        out_t = jnp.where(spike, out_t.at[slot].set(t_next), out_t)
        out_i = jnp.where(spike, out_i.at[slot].set(n.astype(jnp.int32)), out_i)
        n_out = n_out + spike.astype(jnp.int32)
        drive = weight[jnp.clip(in_idx[k_safe], 0, weight.shape[0] - 1)]
        current = current + jnp.where(do_input, drive, 0.0)
        k = k + do_input.astype(jnp.int32)
        return (t_next, v, current, ref, k, out_t, out_i, n_out), None

    init = (
        jnp.zeros((), dtype),
        jnp.full((size,), c["v_leak"], dtype),
        jnp.zeros((size,), dtype),
        jnp.full((size,), -jnp.inf, dtype),
        jnp.zeros((), jnp.int32),
        jnp.full((capacity,), jnp.inf, dtype),
        jnp.full((capacity,), -1, jnp.int32),
        jnp.zeros((), jnp.int32),
    )
    final, _ = jax.lax.scan(step, init, None, length=n_in + capacity + 1)
    t, v, current, ref, _, out_t, out_i, n_out = final
    v_end, i_end = _evolve(t, v, current, ref, jnp.asarray(t_max, dtype), c)
    return Spikes(out_t, out_i), (v_end, i_end), n_out >= capacity


def toy_event_lif(size: int, neuron: LIFParameters, t_max: float, capacity: int = 16, bug: Bug = Bug()):
    """Exact event LIF: ``init(rng, (n_in,))``, ``apply(params, Spikes) -> (state, Spikes, record)``."""

    def init(rng, input_shape):
        (n_in,) = input_shape
        return (size,), {"weight": 1.5 * jax.random.uniform(rng, (n_in, size)) - 0.2}

    def apply(params, inputs, external=None, carry=None):
        weight = params["weight"]
        dtype = jnp.result_type(weight, inputs.time)
        # NumPy constants: no eager device work before the one jitted call.
        constants = np.asarray([neuron.tau_syn, neuron.tau_mem, neuron.v_th, neuron.v_reset, neuron.v_leak,
                                neuron.t_ref], dtype)
        flags = np.asarray([float(bug.drop_simultaneous), float(bug.ignore_leak), float(bug.ratio_dispatch),
                            bug.gradient_scale_below_rest], dtype)
        out, state, overflow = _simulate(weight, inputs.time, inputs.idx, constants, np.asarray(t_max, dtype),
                                         capacity, flags)
        return state, out, {"spikes": out, "overflow": overflow}

    return named_layer(init, apply, f"ToyEventLIF({size})")


def peeking(layer):
    """Broken: each input event takes effect at the time of the event before it (looks ahead)."""

    def apply(params, inputs, external=None, carry=None):
        valid = inputs.idx >= 0
        earlier = jnp.concatenate([inputs.time[:1], inputs.time[:-1]])
        return layer.apply(params, Spikes(jnp.where(valid, earlier, inputs.time), inputs.idx))

    return named_layer(layer.init, apply, "Peeking")


def loses_unsorted(layer):
    """Broken: assumes sorted input and silently drops any event earlier than one before it."""

    def apply(params, inputs, external=None, carry=None):
        running_max = jax.lax.cummax(jnp.where(inputs.idx >= 0, inputs.time, -jnp.inf))
        stale = inputs.time < running_max
        return layer.apply(params, Spikes(jnp.where(stale, jnp.inf, inputs.time),
                                          jnp.where(stale, -1, inputs.idx)))

    return named_layer(layer.init, apply, "LosesUnsorted")


def grid_quantised(layer, grid: float):
    """Broken: rounds input times to a fixed grid (not shift-equivariant)."""

    def apply(params, inputs, external=None, carry=None):
        return layer.apply(params, Spikes(jnp.round(inputs.time / grid) * grid, inputs.idx))

    return named_layer(layer.init, apply, "GridQuantised")


def first_of_simultaneous(layer):
    """Broken: keeps only the first listed of several input events at the same time."""

    def apply(params, inputs, external=None, carry=None):
        repeat = jnp.concatenate([jnp.zeros((1,), bool), inputs.time[1:] == inputs.time[:-1]])
        repeat = repeat & (inputs.idx >= 0)
        return layer.apply(params, Spikes(jnp.where(repeat, jnp.inf, inputs.time), jnp.where(repeat, -1, inputs.idx)))

    return named_layer(layer.init, apply, "FirstOfSimultaneous")


def ratio2_first_spike(size: int, tau_syn: float, theta: float = 1.0, safe: bool = True):
    """First spike after a volley at t = 0 for tau_mem = 2 tau_syn (closed form); ``safe=False``
    masks the no-crossing branch with a plain ``where`` (NaN gradients when nothing spikes)."""
    tau_mem = 2 * tau_syn

    def init(rng, input_shape):
        return (size,), {"weight": jax.random.uniform(rng, (input_shape[0], size))}

    @jax.jit  # one compilation instead of many small eager ones
    def first_spike(params, inputs):
        valid = (inputs.idx >= 0)[:, None]
        drive = jnp.sum(jnp.where(valid, params["weight"][jnp.maximum(inputs.idx, 0)], 0.0), axis=0)
        # u = I0 (q - q^2), q = exp(-t / tau_mem): crossing where I0 q^2 - I0 q + theta = 0.
        disc = drive * drive - 4 * drive * theta
        crosses = disc >= 0
        if safe:
            disc = jnp.where(crosses, disc, 1.0)
            drive_safe = jnp.where(crosses, drive, 1.0)
        else:
            drive_safe = drive
        q = (drive_safe + jnp.sqrt(disc)) / (2 * drive_safe)
        time = jnp.where(crosses, -tau_mem * jnp.log(q), jnp.inf)
        return Spikes(time, jnp.where(crosses, jnp.arange(size), -1).astype(jnp.int32))

    def apply(params, inputs, external=None, carry=None):
        return None, first_spike(params, inputs), None

    return named_layer(init, apply, "Ratio2FirstSpike")


# ------------------------------------------------------------------ discrete
@functools.partial(jax.jit, static_argnames=("hard_reset", "forget_current", "wrap_weights"))
def _discrete_run(weight, x, v0, i0, constants, bias, hard_reset, forget_current, wrap_weights):
    a_syn, a_mem, v_th, v_reset, v_leak = constants
    if forget_current:
        i0 = jnp.zeros_like(i0)
    if wrap_weights:  # fixed-point weights in [-2, 2) that wrap around on overflow instead of saturating
        weight = jnp.mod(weight + 2.0, 4.0) - 2.0
    threshold = v_th

    def body(state, drive):
        v, current = state
        current = a_syn * current + drive
        v = v_leak + a_mem * (v - v_leak) + (1 - a_mem) * current
        z = (v > threshold).astype(v.dtype)
        v = jnp.where(z > 0, v_reset, v) if hard_reset else v - z * (threshold - v_reset)
        return (v, current), z

    return jax.lax.scan(body, (v0, i0), x @ weight + bias)


def toy_discrete_lif(size: int, *, tau_syn, tau_mem, dt, v_th=1.0, v_reset=0.0, v_leak=0.0, reset="subtract",
                     forget_current: bool = False, bias: float = 0.0, wrap_weights: bool = False,
                     clip_only_eagerly: bool = False, hidden_counter: bool = False, initial_v=None):
    """Discrete LIF of the shared model spec, with optional bugs.

    Bugs: ``forget_current`` drops ``I`` from the incoming carry; ``bias`` adds an unlisted
    constant drive; ``wrap_weights`` stores weights in a fixed-point range [-2, 2) that wraps
    around on overflow (a larger positive weight can turn negative); ``clip_only_eagerly`` clips
    inputs to [0, 1] only when they are concrete (a check skipped under jit); ``hidden_counter`` keeps a Python call counter that leaks into
    the output (hidden state); ``initial_v`` starts from this potential instead of ``v_leak``.
    """
    a_syn, a_mem = float(np.exp(-dt / tau_syn)), float(np.exp(-dt / tau_mem))
    constants = (a_syn, a_mem, float(v_th), float(v_reset), float(v_leak))
    calls = [0]

    def init(rng, input_shape):
        return (input_shape[0], size), {"weight": jax.random.normal(rng, (input_shape[1], size))}

    def apply(params, inputs, external=None, carry=None):
        x = jnp.asarray(inputs)
        if clip_only_eagerly and not isinstance(x, jax.core.Tracer):
            x = jnp.clip(x, 0.0, 1.0)
        extra = float(bias)
        if hidden_counter:
            calls[0] += 1
            extra += 0.5 * calls[0]
        if carry is None:
            start = v_leak if initial_v is None else initial_v
            carry = (jnp.full((size,), start, x.dtype), jnp.zeros((size,), x.dtype))
        state, spikes = _discrete_run(params["weight"], x, carry[0], carry[1], constants, extra,
                                      reset == "hard", forget_current, wrap_weights)
        return state, spikes, {"spikes": spikes}

    return named_layer(init, apply, f"ToyDiscreteLIF({size})")
