"""Next-spike kernels and closed-form dynamics: accuracy, robustness, implicit-function gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn.event import (
    LIFParameters,
    evolve,
    extremum_time,
    free_membrane,
    lambertw0,
    next_crossing,
    psp_kernel,
    psp_peak,
    resolve_kernel,
)
from jaxsnn.event.dynamics import expm1_ratio, log1p_ratio, membrane_decay_and_kernel, rest_state
from jaxsnn.event.neuron import LIFState
from jaxsnn.testing.reference import free_evolution, simulate_event

TAU_SYN = 5e-3
CASES = [(1.0, "lambertw"), (2.0, "quadratic"), (1.0, "root"), (2.0, "root"), (0.5, "root"),
         (1.5, "root"), (3.0, "root"), (10.0, "root")]


# Jitted once per method: eager op-by-op dispatch would dominate the test time.
_crossing = jax.jit(next_crossing, static_argnames="method")
_evolve = jax.jit(evolve)
_psp = jax.jit(psp_kernel)
_psp_slope = jax.jit(jax.vmap(jax.grad(psp_kernel), in_axes=(0, None, None)))


def test_lambertw0_inverts_w_exp_w(x64):
    z = jnp.concatenate([jnp.linspace(-1 / np.e, 0.0, 2001), jnp.linspace(0.0, 50.0, 501)])
    w = np.asarray(jax.jit(lambertw0)(z))
    residual = np.abs(w * np.exp(w) - np.asarray(z))
    assert np.max(residual / np.maximum(1.0, np.abs(np.asarray(z)))) < 1e-14
    assert np.all(w >= -1.0)  # principal branch
    assert np.isnan(float(lambertw0(jnp.asarray(-0.5))))  # outside the domain: NaN, not a value


def test_lambertw0_derivative(x64):
    z = jnp.asarray([-0.3, -0.1, 0.0, 0.5, 3.0])
    grad = jax.jit(jax.vmap(jax.grad(lambertw0)))(z)
    h = 1e-6
    w = jax.jit(lambertw0)
    fd = (w(z + h) - w(z - h)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7)


def _draws(seed, tau_mem, n=300):
    """Wide-range currents (mostly no crossing, extreme magnitudes), currents near the threshold,
    and grazing ones: from rest, a peak ``1 + delta`` times the threshold, ``delta`` in [1e-8, 1e-2].
    """
    rng = np.random.default_rng(seed)
    n_wide, n_graze = n // 2, n // 6
    u0 = rng.uniform(-1.0, 0.99, n)
    u0[n - n_graze:] = 0.0
    wide = rng.uniform(-2.0, 10.0, n_wide) * np.exp(rng.uniform(-20.0, 3.0, n_wide))
    # Currents whose PSP peaks between 0.3 and 3 times the threshold distance.
    peak = float(psp_peak(tau_mem, TAU_SYN))
    near = rng.uniform(0.3, 3.0, n - n_wide - n_graze) * (1.0 - u0[n_wide:n - n_graze]) / peak
    grazing = (1.0 + 10.0 ** rng.uniform(-8.0, -2.0, n_graze)) / peak
    return u0, np.concatenate([wide, near, grazing])


def _reference_crossing(u0, current0, tau_mem, horizon):
    """First time in [0, horizon] at which the float64 reference neuron reaches v_th = 1."""
    never_again = LIFParameters(tau_syn=TAU_SYN, tau_mem=tau_mem, t_ref=10 * horizon)
    times, _ = simulate_event(np.zeros((1, 1)), [], [], never_again, horizon, initial_state=(u0, current0))
    return times[0] if len(times) else np.inf


def _reference_slope(s, u0, current0, tau_mem):
    """``du/ds = (I - u) / tau_mem`` of the reference's closed form at ``s``."""
    u, current = free_evolution(s, u0, current0, tau_mem, TAU_SYN, 0.0)
    return (current - u) / tau_mem


@pytest.mark.parametrize("ratio,method", CASES)
def test_kernel_finds_exactly_the_crossings(x64, ratio, method):
    """Judged by the float64 reference (independent code), not by the library's own membrane.

    Where the reference neuron crosses with a slope above ``1e-6 theta / tau_mem`` (not
    tangentially), the kernel finds the crossing, within ``4e-14 tau_syn`` (measured: <= 1e-14)
    plus the conditioning ``4 eps theta / slope`` of the reference's time. Where the reference finds none, the kernel
    finds none either, unless the membrane only touches the threshold: then the reference
    membrane at the kernel's time is at threshold to 1e-12. Tangential crossings (slope below
    the bound) may be found or not, and are checked the same way when found.
    """
    tau_mem = ratio * TAU_SYN
    horizon = 10 * TAU_SYN
    u0, current = _draws(int(ratio * 10) + len(method), tau_mem)
    s = np.asarray(_crossing(u0, current, 1.0, tau_mem, TAU_SYN, horizon, method=method))
    expected = np.array([_reference_crossing(a, b, tau_mem, horizon) for a, b in zip(u0, current)])
    slope = np.array([_reference_slope(t, a, b, tau_mem) if np.isfinite(t) else 0.0
                      for t, a, b in zip(expected, u0, current)])
    clear = np.isfinite(expected) & (slope * tau_mem > 1e-6)
    assert np.sum(clear) >= 80, "too few crossings compared"
    assert np.sum(~np.isfinite(expected)) >= 80, "too few draws without a crossing"
    # Never missed, at the reference's time.
    missed = clear & ~np.isfinite(s)
    assert not np.any(missed), (u0[missed], current[missed], expected[missed])
    eps = np.finfo(np.float64).eps
    tolerance = 4e-14 * TAU_SYN + 4 * eps / np.where(clear, slope, 1.0)
    error = np.where(clear, np.abs(np.where(clear, s, 0.0) - np.where(clear, expected, 0.0)), 0.0)
    assert np.all(error <= tolerance), (np.max(error / tolerance), u0[np.argmax(error / tolerance)])
    # Never invented: every other crossing the kernel reports is a touch of the threshold, and
    # not before the reference's own crossing (the reference reports the first float at or
    # above threshold).
    other = np.isfinite(s) & ~clear
    for t, a, b, t_ref in zip(s[other], u0[other], current[other], expected[other]):
        assert 0.0 <= t <= horizon
        u, _ = free_evolution(t, a, b, tau_mem, TAU_SYN, 0.0)
        assert abs(u - 1.0) < 1e-12, (a, b, t, u)
        assert t >= t_ref - 1e-9 * TAU_SYN or not np.isfinite(t_ref), (a, b, t, t_ref)


@pytest.mark.parametrize("ratio,method", [(1.0, "lambertw"), (2.0, "quadratic"), (1.5, "root")])
def test_kernel_grazing_and_extreme_currents(x64, ratio, method):
    tau_mem = ratio * TAU_SYN
    s_peak, _ = extremum_time(jnp.asarray(0.0), jnp.asarray(1.0), tau_mem, TAU_SYN)
    peak = float(free_membrane(s_peak, 0.0, 1.0, tau_mem, TAU_SYN))
    # One call for all cases (one compilation): tangential touch (maximum == threshold up to
    # the rounding of the current), slightly above, slightly below; tiny, zero, negative and
    # huge currents from three potentials; already at threshold; negative horizon.
    touch = 1.0 / peak
    currents = [1e-300, 1e-30, 0.0, -1e-30, -5.0, 1e30]
    u0 = [0.0, 0.0, 0.0] + [u for u in (0.0, -0.5, 0.5) for _ in currents] + [1.0, 0.0]
    current = [touch, touch * (1 + 1e-9), touch * (1 - 1e-9)] + currents * 3 + [0.0, 10.0]
    horizon = [1.0] * (len(u0) - 1) + [-1.0]
    s = np.asarray(_crossing(jnp.asarray(u0), jnp.asarray(current), 1.0, tau_mem, TAU_SYN,
                             jnp.asarray(horizon), method=method))
    assert not np.any(np.isnan(s))
    assert np.all(np.isfinite(s[:2])) and np.isinf(s[2])
    # A grazing crossing is ill-conditioned (time error ~ sqrt(eps) tau); still close to the peak.
    np.testing.assert_allclose(s[0], float(s_peak), rtol=1e-6)
    extreme = s[3:21].reshape(3, 6)
    assert np.all(np.isinf(extreme[:, :5]))  # no false crossing, whatever the tiny current
    assert np.all((extreme[:, 5] > 0) & (extreme[:, 5] < 1e-30))  # huge current: almost at once
    assert s[21] == 0.0  # at threshold: immediate
    assert np.isinf(s[22])  # negative horizon: none


@pytest.mark.parametrize("ratio,method", CASES[:2] + [(0.5, "root"), (3.0, "root")])
def test_kernel_gradient_implicit_function(x64, ratio, method):
    """d s / d (u0, I0, theta, tau_mem, tau_syn) against central differences (rtol 1e-6)."""
    args = jnp.asarray([0.1, 6.0, 1.0, ratio * TAU_SYN, TAU_SYN])

    @jax.jit
    def crossing(a):
        return next_crossing(a[0], a[1], a[2], a[3], a[4], 1.0, method)

    grad = np.asarray(jax.jit(jax.grad(crossing))(args))
    fd = np.zeros(5)
    for k in range(5):
        h = 1e-6 * max(1.0, abs(float(args[k])))
        if k >= 3:
            h = 1e-9
        if method != "root" and k >= 3:
            continue  # analytic kernels require the tau ratio to be kept exactly
        e = np.zeros(5)
        e[k] = h
        fd[k] = (float(crossing(args + e)) - float(crossing(args - e))) / (2 * h)
    checked = slice(0, 5) if method == "root" else slice(0, 3)
    np.testing.assert_allclose(grad[checked], fd[checked], rtol=1e-6)
    # No crossing: zero gradient, never NaN.
    none = jax.grad(lambda c: next_crossing(0.0, c, 1.0, ratio * TAU_SYN, TAU_SYN, 1.0, method))(-1.0)
    assert float(none) == 0.0


def test_series_helpers_match_direct_formula(x64):
    x = jnp.asarray([-0.5, -1e-3, -1e-4, 0.0, 1e-6, 1e-3, 0.7])
    direct_exp = np.where(np.asarray(x) == 0, 1.0, np.expm1(np.asarray(x)) / np.where(np.asarray(x) == 0, 1, np.asarray(x)))
    direct_log = np.where(np.asarray(x) == 0, 1.0, np.log1p(np.asarray(x)) / np.where(np.asarray(x) == 0, 1, np.asarray(x)))
    np.testing.assert_allclose(expm1_ratio(x), direct_exp, rtol=1e-15)
    np.testing.assert_allclose(log1p_ratio(x), direct_log, rtol=1e-15)


EVOLVE_RATIOS = [1.0, 1.0 + 1e-9, 2.0, 0.3, 0.5, 1.5, 3.0, 10.0]


@pytest.mark.parametrize("ratio", EVOLVE_RATIOS)
def test_free_evolution_matches_reference(x64, ratio):
    """``evolve`` from (v0, I0) equals the reference's closed form (rtol 1e-14), refractoriness too."""
    tau_mem = ratio * TAU_SYN
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=tau_mem, v_leak=0.1, v_reset=-0.2)
    cases = [(0.0, 0.2, 1.0), (3e-3, -0.4, 2.5), (0.02, 0.9, -1.0), (0.2, 0.5, 3.0)]
    s = jnp.asarray([c[0] for c in cases])
    # Neurons 0..3 free; neurons 4..7 the same, held at v_reset until 2e-3 (refractory).
    state = LIFState(
        jnp.asarray([c[1] for c in cases] * 2),
        jnp.asarray([c[2] for c in cases] * 2),
        jnp.asarray([-jnp.inf] * 4 + [2e-3] * 4),
    )
    got = _evolve(state, jnp.zeros(8), jnp.concatenate([s, s]), neuron)
    for k, (elapsed, v0, current0) in enumerate(cases):
        want_v, want_i = free_evolution(elapsed, v0, current0, tau_mem, TAU_SYN, 0.1)
        np.testing.assert_allclose(float(got.v[k]), want_v, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(float(got.current[k]), want_i, rtol=1e-14)
        if elapsed <= 2e-3:
            want_v = -0.2
        else:
            released = current0 * np.exp(-2e-3 / TAU_SYN)
            want_v, _ = free_evolution(elapsed - 2e-3, -0.2, released, tau_mem, TAU_SYN, 0.1)
        np.testing.assert_allclose(float(got.v[4 + k]), want_v, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(float(got.current[4 + k]), want_i, rtol=1e-14)


def test_evolve_refractory_clamp(x64):
    neuron = LIFParameters(v_reset=-0.2, v_leak=0.0)
    state = LIFState(jnp.asarray([-0.2, -0.2]), jnp.asarray([3.0, 3.0]), jnp.asarray([2e-3, -jnp.inf]))
    mid = evolve(state, 0.0, 1e-3, neuron)
    assert float(mid.v[0]) == -0.2 and float(mid.v[1]) != -0.2
    end = evolve(state, 0.0, 5e-3, neuron)
    want_v, _ = free_evolution(3e-3, -0.2, 3.0 * np.exp(-2e-3 / 5e-3), 1e-2, 5e-3, 0.0)
    np.testing.assert_allclose(float(end.v[0]), want_v, rtol=1e-14)


PSP_RATIOS = [0.1, 0.5, 1.0 - 1e-9, 1.0, 1.0 + 1e-9, 1.5, 2.0, 3.0, 10.0]


@pytest.mark.parametrize("ratio", PSP_RATIOS)
def test_psp_kernel_matches_reference(x64, ratio):
    """``K(s)`` is the reference membrane after a unit current from rest (rtol 1e-13), any ratio."""
    tau_mem = ratio * TAU_SYN
    s = np.concatenate([[0.0, 1e-9], np.linspace(1e-4, 0.1, 40)])
    got = np.asarray(_psp(jnp.asarray(s), tau_mem, TAU_SYN))
    want = np.array([free_evolution(t, 0.0, 1.0, tau_mem, TAU_SYN, 0.0)[0] for t in s])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)
    assert got[0] == 0.0 and np.all(got[1:] > 0)
    # dK/ds = (exp(-s/tau_syn) - K) / tau_mem, by autodiff (the membrane slope of a unit PSP).
    slope = np.asarray(_psp_slope(jnp.asarray(s), tau_mem, TAU_SYN))
    np.testing.assert_allclose(slope, (np.exp(-s / TAU_SYN) - want) / tau_mem, rtol=1e-9, atol=1e-9 / tau_mem)


@pytest.mark.parametrize("ratio", PSP_RATIOS)
def test_membrane_decay_and_kernel_match_the_reference(x64, ratio):
    """The adjoints' pair ``(exp(-s/tau_mem), K(s))``: the reference membrane (rtol 1e-13) and
    ``psp_kernel`` to a few ulp (rtol 2e-15), any ratio, from s = 0 to 1e4 tau (no overflow);
    under ``jit`` and ``vmap`` over per-neuron time constants."""
    tau_mem = ratio * TAU_SYN
    s = np.concatenate([[0.0, 1e-12, 1e-9], np.geomspace(1e-7, 1e-3, 20), np.linspace(1e-4, 0.1, 40)])
    decay, kernel = jax.jit(membrane_decay_and_kernel)(jnp.asarray(s), tau_mem, TAU_SYN)
    want = np.array([free_evolution(t, 0.0, 1.0, tau_mem, TAU_SYN, 0.0)[0] for t in s])
    np.testing.assert_allclose(np.asarray(kernel), want, rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(np.asarray(kernel), np.asarray(_psp(jnp.asarray(s), tau_mem, TAU_SYN)),
                               rtol=2e-15, atol=1e-300)
    # (XLA may round -s / tau_mem as s * (-1 / tau_mem): a few ulp of the argument)
    np.testing.assert_allclose(np.asarray(decay), np.exp(-s / tau_mem), rtol=1e-13, atol=0)
    assert float(kernel[0]) == 0.0 and np.all(np.asarray(kernel[1:]) > 0)
    long = jnp.asarray([1e2, 1e4]) * TAU_SYN
    decay_long, kernel_long = membrane_decay_and_kernel(long, tau_mem, TAU_SYN)
    assert np.all(np.isfinite(np.asarray(decay_long))) and np.all(np.isfinite(np.asarray(kernel_long)))
    np.testing.assert_allclose(np.asarray(kernel_long), np.asarray(_psp(long, tau_mem, TAU_SYN)), rtol=2e-15,
                               atol=1e-300)
    taus = jnp.asarray([[0.5, 1.0], [1.0, 1.0], [2.0, 1.0]]) * TAU_SYN
    batched = jax.jit(jax.vmap(membrane_decay_and_kernel, in_axes=(None, 0, 0)))(jnp.asarray(s), taus[:, 0], taus[:, 1])
    for k in range(3):
        np.testing.assert_allclose(np.asarray(batched[1][k]), np.asarray(_psp(jnp.asarray(s), taus[k, 0], taus[k, 1])),
                                   rtol=2e-15, atol=1e-300)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_psp_kernel_long_gaps_neither_overflow_nor_underflow_early(dtype):
    """Gaps of 1e4 tau: finite, never NaN, and as large as the slower exponential allows."""
    with jax.enable_x64(dtype == jnp.float64):
        s = jnp.asarray([1e-3, 1.0, 40.0, 1e3], dtype)
        for tau_mem, tau_syn in ((1e-3, 1e-1), (1e-1, 1e-3), (1e-2, 1e-2)):
            got = np.asarray(_psp(s, jnp.asarray(tau_mem, dtype), jnp.asarray(tau_syn, dtype)), np.float64)
            assert np.all(np.isfinite(got)) and np.all(got >= 0), (tau_mem, tau_syn, got)
            slow = max(tau_mem, tau_syn)
            # K(s) ~ tau_syn / |tau_syn - tau_mem| exp(-s / tau_slow) once the fast decay is gone
            if tau_mem != tau_syn:
                expected = tau_syn / abs(tau_syn - tau_mem) * np.exp(-np.asarray(s, np.float64)[1:2] / slow)
                np.testing.assert_allclose(got[1:2], expected, rtol=1e-5)
        # tau_mem << tau_syn after 40 s: exp(-s/tau_mem) underflows, K = exp(-400) (~1e-174) does
        # not in float64; in float32 it underflows to 0 with the true value.
        value = float(_psp(jnp.asarray(40.0, dtype), jnp.asarray(1e-3, dtype), jnp.asarray(1e-1, dtype)))
        if dtype == jnp.float64:
            np.testing.assert_allclose(value, 0.1 / 0.099 * np.exp(-400.0), rtol=1e-10)
        else:
            assert value == 0.0


def test_psp_kernel_under_jit_vmap_grad(x64):
    taus = jnp.asarray([[2.5e-3, 5e-3], [5e-3, 5e-3], [7.5e-3, 5e-3]])
    s = jnp.asarray(4e-3)
    batched = jax.jit(jax.vmap(lambda t: psp_kernel(s, t[0], t[1])))(taus)
    for k in range(3):
        assert float(batched[k]) == float(psp_kernel(s, taus[k, 0], taus[k, 1]))
    # d K / d (tau_mem, tau_syn) against central differences, equal time constants included.
    grad = jax.jit(jax.vmap(jax.grad(psp_kernel, argnums=(1, 2)), in_axes=(None, 0, 0)))(s, taus[:, 0], taus[:, 1])
    h = 1e-9
    fd_mem = (psp_kernel(s, taus[:, 0] + h, taus[:, 1]) - psp_kernel(s, taus[:, 0] - h, taus[:, 1])) / (2 * h)
    fd_syn = (psp_kernel(s, taus[:, 0], taus[:, 1] + h) - psp_kernel(s, taus[:, 0], taus[:, 1] - h)) / (2 * h)
    np.testing.assert_allclose(grad[0], fd_mem, rtol=1e-6)
    np.testing.assert_allclose(grad[1], fd_syn, rtol=1e-6)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0, 3.0])
def test_extremum_time_is_the_maximum(x64, ratio):
    tau_mem = ratio * TAU_SYN
    s_ext, exists = extremum_time(jnp.asarray(0.3), jnp.asarray(2.0), tau_mem, TAU_SYN)
    assert bool(exists)
    grid = jnp.linspace(0, 0.1, 200001)
    u = free_membrane(grid, 0.3, 2.0, tau_mem, TAU_SYN)
    np.testing.assert_allclose(float(s_ext), float(grid[jnp.argmax(u)]), atol=1e-6)
    # A negative current after a positive potential gives a minimum instead.
    s_min, exists = extremum_time(jnp.asarray(0.3), jnp.asarray(-2.0), tau_mem, TAU_SYN)
    u = free_membrane(grid, 0.3, -2.0, tau_mem, TAU_SYN)
    assert bool(exists)
    np.testing.assert_allclose(float(s_min), float(grid[jnp.argmin(u)]), atol=1e-6)
    # No current, or a current that only adds to a decaying potential: monotone, no extremum.
    for u0, current in [(0.3, 0.0), (0.3, 0.1), (-0.3, -1.0)]:
        _, none = extremum_time(jnp.asarray(u0), jnp.asarray(current), tau_mem, TAU_SYN)
        u = np.asarray(free_membrane(grid, u0, current, tau_mem, TAU_SYN))
        monotone = np.all(np.diff(u) <= 0) or np.all(np.diff(u) >= 0)
        assert bool(none) != monotone


def test_resolve_kernel():
    assert resolve_kernel("auto", LIFParameters(tau_syn=5e-3, tau_mem=5e-3)) == "lambertw"
    assert resolve_kernel("auto", LIFParameters(tau_syn=5e-3, tau_mem=1e-2)) == "quadratic"
    assert resolve_kernel("auto", LIFParameters(tau_syn=5e-3, tau_mem=7e-3)) == "root"
    with pytest.raises(ValueError, match="lambertw.*tau_mem == tau_syn"):
        resolve_kernel("lambertw", LIFParameters(tau_syn=5e-3, tau_mem=1e-2))
    with pytest.raises(ValueError, match="quadratic"):
        resolve_kernel("quadratic", LIFParameters(tau_syn=5e-3, tau_mem=5e-3))
    with pytest.raises(ValueError, match="kernel must be one of"):
        resolve_kernel("newton", LIFParameters())
    with pytest.raises(ValueError, match="method must be one of"):
        next_crossing(0.0, 1.0, 1.0, 1.0, 1.0, 1.0, "newton")


def test_rest_state():
    state = rest_state(3, LIFParameters(v_leak=-0.1))
    np.testing.assert_array_equal(state.v, np.full(3, -0.1, np.float32))
    assert np.all(np.isneginf(state.refractory_until))
