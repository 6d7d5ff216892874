"""Next-spike kernels and closed-form dynamics: accuracy, robustness, implicit-function gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn.event import LIFParameters, evolve, extremum_time, free_membrane, lambertw0, next_crossing, resolve_kernel
from jaxsnn.event.dynamics import expm1_ratio, log1p_ratio, rest_state
from jaxsnn.event.neuron import LIFState
from jaxsnn.testing.reference import free_evolution

TAU_SYN = 5e-3
CASES = [(1.0, "lambertw"), (2.0, "quadratic"), (1.0, "root"), (2.0, "root"), (0.5, "root"),
         (1.5, "root"), (3.0, "root"), (10.0, "root")]


# Jitted once per method: eager op-by-op dispatch would dominate the test time.
_crossing = jax.jit(next_crossing, static_argnames="method")


def _draws(seed, n=1500):
    rng = np.random.default_rng(seed)
    u0 = rng.uniform(-1.0, 0.99, n)
    current = rng.uniform(-2.0, 10.0, n) * np.exp(rng.uniform(-20.0, 3.0, n))
    return u0, current


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


@pytest.mark.parametrize("ratio,method", CASES)
def test_kernel_finds_exactly_the_crossings(x64, ratio, method):
    """Never misses a crossing in the window, never invents one; the root is exact to ~1e-14."""
    tau_mem = ratio * TAU_SYN
    horizon = 10 * TAU_SYN
    u0, current = _draws(int(ratio * 10) + len(method))
    s = np.asarray(_crossing(u0, current, 1.0, tau_mem, TAU_SYN, horizon, method=method))
    grid = np.linspace(0.0, horizon, 2001)
    u_grid = np.asarray(free_membrane(jnp.asarray(grid)[None, :], jnp.asarray(u0)[:, None],
                                      jnp.asarray(current)[:, None], tau_mem, TAU_SYN))
    on_grid = u_grid >= 1.0
    found = np.isfinite(s)
    # Every crossing seen on the grid is found, and found ones precede the first grid hit.
    assert np.all(found[on_grid.any(axis=1)])
    first_grid = np.where(on_grid.any(axis=1), grid[np.argmax(on_grid, axis=1)], np.inf)
    assert np.all(s[found] <= first_grid[found] + 1e-15)
    # Found crossings are real: u(s) = theta (float64, ~machine precision) and inside the window.
    u_at = np.asarray(free_membrane(jnp.asarray(np.where(found, s, 0.0)), u0, current, tau_mem, TAU_SYN))
    assert np.max(np.abs(u_at[found] - 1.0)) < 1e-12
    assert np.all((s[found] >= 0) & (s[found] <= horizon))
    # ... and u stays below threshold before them (checked on the grid up to s).
    before = grid[None, :] < s[:, None] - 1e-12
    assert not np.any(on_grid & before)


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


@pytest.mark.parametrize("ratio", [1.0, 1.0 + 1e-9, 2.0, 0.3])
def test_free_evolution_matches_reference(x64, ratio):
    tau_mem = ratio * TAU_SYN
    for s, v0, current0 in [(0.0, 0.2, 1.0), (3e-3, -0.4, 2.5), (0.02, 0.9, -1.0)]:
        want_v, want_i = free_evolution(s, v0, current0, tau_mem, TAU_SYN, 0.1)
        neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=tau_mem, v_leak=0.1)
        state = LIFState(jnp.asarray([v0]), jnp.asarray([current0]), jnp.asarray([-jnp.inf]))
        got = evolve(state, 0.0, s, neuron)
        np.testing.assert_allclose(float(got.v[0]), want_v, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(float(got.current[0]), want_i, rtol=1e-14)


def test_evolve_refractory_clamp(x64):
    neuron = LIFParameters(v_reset=-0.2, v_leak=0.0)
    state = LIFState(jnp.asarray([-0.2, -0.2]), jnp.asarray([3.0, 3.0]), jnp.asarray([2e-3, -jnp.inf]))
    mid = evolve(state, 0.0, 1e-3, neuron)
    assert float(mid.v[0]) == -0.2 and float(mid.v[1]) != -0.2
    end = evolve(state, 0.0, 5e-3, neuron)
    want_v, _ = free_evolution(3e-3, -0.2, 3.0 * np.exp(-2e-3 / 5e-3), 1e-2, 5e-3, 0.0)
    np.testing.assert_allclose(float(end.v[0]), want_v, rtol=1e-14)


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
