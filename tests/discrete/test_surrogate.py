"""Spike functions: Heaviside forward, analytic surrogate derivative backward."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn.discrete import surrogate

X = np.array([-2.0, -0.7, -0.1, -1e-3, 0.0, 1e-3, 0.05, 0.3, 1.5], dtype=np.float64)


def _analytic(name, x, k):
    """The documented formulas, written independently of the implementation."""
    if name == "superspike":
        return 1.0 / (1.0 + k * np.abs(x)) ** 2
    if name == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-k * x))
        return k * s * (1.0 - s)
    if name == "triangle":
        return np.maximum(0.0, 1.0 - k * np.abs(x))
    if name == "arctan":
        return (k / 2.0) / (1.0 + (math.pi * k * x / 2.0) ** 2)
    raise AssertionError(name)


FACTORIES = {
    "superspike": surrogate.superspike,
    "sigmoid": surrogate.sigmoid,
    "triangle": surrogate.triangle,
    "arctan": surrogate.arctan,
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize("slope", [0.5, 3.0, 25.0])
def test_derivative_matches_formula(x64, name, slope):
    spike = FACTORIES[name](slope)
    x = jnp.asarray(X)
    # Elementwise derivative through reverse mode (grad of the sum) and forward mode (jvp).
    reverse = jax.grad(lambda v: jnp.sum(spike(v)))(x)
    _, forward = jax.jvp(spike, (x,), (jnp.ones_like(x),))
    expected = _analytic(name, X, slope)
    np.testing.assert_allclose(np.asarray(reverse), expected, rtol=1e-13, atol=0)
    np.testing.assert_allclose(np.asarray(forward), expected, rtol=1e-13, atol=0)


@pytest.mark.parametrize("name", sorted(FACTORIES) + ["heaviside"])
def test_forward_is_heaviside_with_h0_zero(name):
    spike = surrogate.get(name)
    out = np.asarray(spike(jnp.asarray(X, jnp.float32)))
    np.testing.assert_array_equal(out, (X > 0).astype(np.float32))
    assert spike(jnp.float32(0.0)) == 0.0
    assert spike(jnp.zeros(3, jnp.float32)).dtype == jnp.float32


def test_derivative_helpers_match_formulas(x64):
    for name, helper in (
        ("superspike", surrogate.superspike_derivative),
        ("sigmoid", surrogate.sigmoid_derivative),
        ("triangle", surrogate.triangle_derivative),
        ("arctan", surrogate.arctan_derivative),
    ):
        np.testing.assert_allclose(
            np.asarray(helper(jnp.asarray(X), 4.0)), _analytic(name, X, 4.0), rtol=1e-13
        )


def test_heaviside_has_zero_gradient():
    grad = jax.grad(lambda v: jnp.sum(surrogate.heaviside()(v)))(jnp.asarray(X, jnp.float32))
    np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_step_and_custom_spike_function(x64):
    np.testing.assert_array_equal(np.asarray(surrogate.step(jnp.asarray(X))), (X > 0).astype(float))
    spike = surrogate.spike_function(lambda x: 2.0 * jnp.ones_like(x), "double")
    assert spike.__name__ == "double"
    grad = jax.grad(lambda v: jnp.sum(spike(v) * jnp.arange(v.size)))(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(grad), 2.0 * np.arange(X.size))


def test_works_under_jit_and_vmap():
    spike = surrogate.superspike(10.0)
    x = jnp.asarray(X.reshape(3, 3), jnp.float32)
    g = jax.jit(jax.vmap(jax.grad(lambda v: jnp.sum(spike(v)))))(x)
    np.testing.assert_allclose(
        np.asarray(g), _analytic("superspike", X, 10.0).reshape(3, 3), rtol=1e-6
    )


def test_get_resolves_names_and_slopes(x64):
    assert set(surrogate.names()) >= {"superspike", "sigmoid", "triangle", "arctan", "heaviside"}
    spike = surrogate.get("sigmoid", slope=2.0)
    grad = jax.grad(lambda v: jnp.sum(spike(v)))(jnp.asarray(X))
    np.testing.assert_allclose(np.asarray(grad), _analytic("sigmoid", X, 2.0), rtol=1e-13)
    custom = surrogate.superspike(3.0)
    assert surrogate.get(custom) is custom


def test_get_errors():
    with pytest.raises(ValueError, match="unknown name 'boxcar'.*superspike"):
        surrogate.get("boxcar")
    with pytest.raises(ValueError, match="slope only applies"):
        surrogate.get(surrogate.superspike(), slope=3.0)
    with pytest.raises(ValueError, match="heaviside' takes no slope"):
        surrogate.get("heaviside", slope=1.0)
    with pytest.raises(TypeError, match="surrogate must be a name"):
        surrogate.get(3.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_bad_slope(bad):
    with pytest.raises(ValueError, match="slope must be finite and > 0"):
        surrogate.superspike(bad)


def test_slope_type():
    with pytest.raises(TypeError, match="slope must be a Python number"):
        surrogate.triangle(jnp.ones(2))
