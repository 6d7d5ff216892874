"""Single-state LIF (``tau_syn=0``) and ``input_scale``: float64 reference, the common
``v_t = beta v_{t-1} + x_t W`` form, gradients and argument errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn
from jaxsnn.discrete import (
    LI,
    LIF,
    RecurrentLIF,
    decay_factors,
    lif_dynamics,
    surrogate,
    tau_from_decay,
)
from jaxsnn.testing.reference import simulate_discrete

BETA = 0.881  # decay per step of the Randman online-learning network
SINGLE = dict(tau_syn=0.0, tau_mem=tau_from_decay(BETA), dt=1.0)


def _inputs(key, T, n, p=0.3):
    return (jax.random.uniform(jax.random.PRNGKey(key), (T, n)) < p).astype(jnp.float64)


def test_decay_helpers():
    assert decay_factors(0.0, 2.0, 1.0) == (0.0, pytest.approx(math.exp(-0.5)))
    assert math.exp(-1.0 / tau_from_decay(BETA)) == pytest.approx(BETA, rel=1e-15)
    assert math.exp(-0.5 / tau_from_decay(0.3, dt=0.5)) == pytest.approx(0.3, rel=1e-15)


@pytest.mark.parametrize("input_scale", [None, 1.0, 0.37])
@pytest.mark.parametrize("reset,v_reset,v_leak", [("subtract", 0.0, 0.0), ("hard", -0.2, 0.1)])
def test_single_state_layers_match_float64_reference(x64, input_scale, reset, v_reset, v_leak):
    kwargs = dict(SINGLE, v_th=1.0, v_reset=v_reset, v_leak=v_leak, reset=reset)
    # Weights large enough to spike with either input scale (1 - beta = 0.119 needs ~8x).
    scale = 3.0 if input_scale == 1.0 else 16.0
    x = _inputs(1, 40, 5)
    layer = LIF(6, **kwargs, input_scale=input_scale, weight_scale=scale, record_membrane=True)
    _, params = layer.init(jax.random.PRNGKey(0), (40, 5))
    state, spikes, rec = layer.apply(params, x)
    want = simulate_discrete(
        np.asarray(params["weight"]), np.asarray(x), **kwargs, input_scale=input_scale
    )
    assert 0 < want["spikes"].sum() < want["spikes"].size  # the comparison is not vacuous
    np.testing.assert_array_equal(np.asarray(spikes), want["spikes"])
    np.testing.assert_allclose(np.asarray(rec.v), want["v"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(state.v), want["v"][-1], rtol=1e-12, atol=1e-12)
    # tau_syn = 0: the current is this step's drive (to summation order).
    np.testing.assert_allclose(np.asarray(state.current), want["current"][-1], rtol=1e-14)
    np.testing.assert_allclose(
        want["current"], np.asarray(x) @ np.asarray(params["weight"]), rtol=1e-13, atol=1e-15
    )

    rec_layer = RecurrentLIF(
        6, **kwargs, input_scale=input_scale, weight_scale=scale, recurrent_scale=scale,
        record_membrane=True,
    )
    _, rparams = rec_layer.init(jax.random.PRNGKey(2), (40, 5))
    rstate, rspikes, rrec = rec_layer.apply(rparams, x)
    rwant = simulate_discrete(
        np.asarray(rparams["weight"]), np.asarray(x), **kwargs, input_scale=input_scale,
        recurrent_weight=np.asarray(rparams["recurrent_weight"]),
    )
    assert 0 < rwant["spikes"].sum() < rwant["spikes"].size
    np.testing.assert_array_equal(np.asarray(rspikes), rwant["spikes"])
    np.testing.assert_allclose(np.asarray(rrec.v), rwant["v"], rtol=1e-12, atol=1e-12)

    li = LI(6, tau_syn=0.0, tau_mem=SINGLE["tau_mem"], dt=1.0, v_leak=v_leak,
            input_scale=input_scale)
    _, v, li_rec = li.apply(params, x)
    li_want = simulate_discrete(
        np.asarray(params["weight"]), np.asarray(x), **kwargs, input_scale=input_scale,
        readout=True,
    )
    np.testing.assert_allclose(np.asarray(v), li_want["v"], rtol=1e-12, atol=1e-12)


def _common_form(weight, x, beta, v_th=1.0):
    """``v_t = beta v_{t-1} + x_t W``, spike when ``v_t > v_th``, subtract ``v_th`` (NumPy)."""
    v = np.zeros(weight.shape[1])
    spikes, membrane = [], []
    for x_t in x:
        v = beta * v + x_t @ weight
        z = (v > v_th).astype(np.float64)
        membrane.append(v.copy())
        v = v - v_th * z
        spikes.append(z)
    return np.array(spikes), np.array(membrane)


def _common_form_grad(weight, x, coefficients, beta, slope, v_th=1.0):
    """Hand-written float64 BPTT of ``sum(coefficients * z)`` for ``_common_form`` with the
    fast-sigmoid surrogate ``1 / (1 + slope |u - v_th|)^2``."""
    _, u = _common_form(weight, x, beta, v_th)
    sigma = 1.0 / (1.0 + slope * np.abs(u - v_th)) ** 2
    grad_u = np.zeros_like(u)
    grad_v = np.zeros(u.shape[1])  # dL/dv_t (post-reset), carried backwards
    for t in reversed(range(len(u))):
        grad_u[t] = coefficients[t] * sigma[t] + grad_v * (1.0 - v_th * sigma[t])
        grad_v = beta * grad_u[t]
    return x.T @ grad_u


def test_common_form_randman_network(x64):
    """``tau_syn=0, input_scale=1`` is ``v_t = 0.881 v_{t-1} + x_t W`` (Randman network:
    threshold 1, subtract reset, weights N(0, (3 / sqrt(fan_in))^2), fast sigmoid slope 25)."""
    n_in, hidden, T = 20, 16, 50
    net = jaxsnn.serial(
        LIF(hidden, **SINGLE, input_scale=1.0, surrogate=surrogate.superspike(25.0),
            weight_scale=3.0),
        LIF(4, **SINGLE, input_scale=1.0, surrogate=surrogate.superspike(25.0), weight_scale=3.0),
    )
    _, params = net.init(jax.random.PRNGKey(3), (T, n_in))
    std = float(np.std(np.asarray(params[0]["weight"])))
    assert 0.8 * 3.0 / math.sqrt(n_in) < std < 1.2 * 3.0 / math.sqrt(n_in)
    x = np.asarray(_inputs(4, T, n_in, p=0.1))
    _, out, rec = net.apply(params, jnp.asarray(x))
    w1, w2 = (np.asarray(p["weight"]) for p in params)
    z1, _ = _common_form(w1, x, BETA)
    z2, _ = _common_form(w2, z1, BETA)
    assert z1.sum() > 10 and z2.sum() > 0  # the network spikes
    np.testing.assert_array_equal(np.asarray(rec[0].spikes), z1)
    np.testing.assert_array_equal(np.asarray(out), z2)

    # Gradient of the single layer: adjoint and autodiff equal the hand-written BPTT.
    coefficients = np.cos(np.arange(T * hidden)).reshape(T, hidden)
    want = _common_form_grad(w1, x, coefficients, BETA, 25.0)
    assert np.count_nonzero(np.abs(want) > 1e-6) > want.size // 2
    for backward in ("adjoint", "autodiff"):
        layer = LIF(hidden, **SINGLE, input_scale=1.0, surrogate=surrogate.superspike(25.0),
                    backward=backward)
        got = jax.grad(
            lambda w: jnp.sum(jnp.asarray(coefficients) * layer.apply({"weight": w}, x)[1])
        )(jnp.asarray(w1))
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reset", ["subtract", "hard"])
def test_single_state_adjoint_equals_autodiff_with_carry(x64, reset):
    currents = jax.random.normal(jax.random.PRNGKey(5), (30, 3)) * 0.9
    v0, i0 = jnp.array([0.3, -0.2, 0.9]), jnp.array([0.5, 0.0, 1.0])

    def loss(backward):
        def f(currents, v0, i0):
            spikes, trace, v_last, i_last = lif_dynamics(
                currents, v0, i0, **SINGLE, reset=reset, v_reset=-0.1, input_scale=1.0,
                record_membrane=True, backward=backward,
            )
            c = jnp.cos(jnp.arange(spikes.size, dtype=spikes.dtype)).reshape(spikes.shape)
            return jnp.sum(c * spikes) + jnp.sum(jnp.sin(trace)) + jnp.sum(v_last**2) + jnp.sum(
                i_last
            )

        return jax.grad(f, argnums=(0, 1, 2))(currents, v0, i0)

    adjoint, autodiff = loss("adjoint"), loss("autodiff")
    assert float(jnp.sum(lif_dynamics(currents, v0, i0, **SINGLE, input_scale=1.0)[0])) > 0
    # The initial current is forgotten (a_syn = 0): its gradient is exactly zero.
    np.testing.assert_array_equal(np.asarray(adjoint[2]), 0.0)
    for a, b in zip(adjoint, autodiff):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_single_state_jit_vmap_and_chunking():
    layer = LIF(5, **SINGLE, input_scale=1.0, weight_scale=3.0)
    _, params = layer.init(jax.random.PRNGKey(6), (20, 4))
    x = (jax.random.uniform(jax.random.PRNGKey(7), (3, 20, 4)) < 0.3).astype(jnp.float32)
    looped = jnp.stack([layer.apply(params, xs)[1] for xs in x])
    batched = jax.jit(jax.vmap(lambda xs: layer.apply(params, xs)[1]))(x)
    assert float(jnp.sum(looped)) > 0
    np.testing.assert_array_equal(np.asarray(batched), np.asarray(looped))
    carry, first, _ = layer.apply(params, x[0, :8])
    _, second, _ = layer.apply(params, x[0, 8:], carry=carry)
    np.testing.assert_array_equal(np.concatenate([first, second]), np.asarray(looped[0]))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tau_syn=-1.0), "tau_syn must be >= 0"),
        (dict(tau_syn=0.0, input_scale=0.0), "input_scale must be > 0"),
        (dict(tau_syn=0.0, input_scale=-1.0), "input_scale must be > 0"),
        (dict(tau_syn=0.0, input_scale=math.nan), "input_scale"),
    ],
)
def test_single_state_bad_arguments(kwargs, match):
    base = dict(tau_mem=5.0, dt=1.0)
    for factory in (LIF, RecurrentLIF, LI):
        with pytest.raises(ValueError, match=match):
            factory(3, **base, **kwargs)


@pytest.mark.parametrize(
    "decay,dt,match",
    [(1.0, 1.0, r"decay must be in \(0, 1\)"), (0.0, 1.0, "decay must be in"),
     (0.5, 0.0, "dt must be > 0")],
)
def test_tau_from_decay_errors(decay, dt, match):
    with pytest.raises(ValueError, match=match):
        tau_from_decay(decay, dt)
