"""Exact rules against BPTT (float64), OTTT against its defining formula in NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jaxsnn import online
from jaxsnn.online.rules import RTRL

from .conftest import (
    build,
    count_spikes,
    cross_entropy,
    gradient_fn,
    max_relative_error,
    scaled_params,
    spiking_inputs,
)

T = 12
RTOL = 1e-6


def _case(name, seed, scale, rate):
    net, n_in = build(name)
    params = scaled_params(net, n_in, T, seed, scale, jnp.float64)
    inputs = spiking_inputs(seed, T, n_in, rate, jnp.float64)
    labels = jax.random.randint(jax.random.PRNGKey(seed + 7), (T,), 0, 3)
    return net, params, inputs, labels


EVERY_STEP = np.ones(T)
LAST_STEP = np.zeros(T)
LAST_STEP[-1] = 1.0
VARIANTS = {  # windows of 5 steps (T = 12: two windows and a remainder of 2), and the other
    # code paths on one network each: one step at a time, all sensitivities dense
    "feedforward": [RTRL(window=5), RTRL(window=1)],
    "split": [RTRL(window=5), RTRL(structured=False, window=5)],
    "recurrent": [RTRL(window=5)],
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
@settings(deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(12.0, 24.0), rate=st.floats(0.4, 0.8))
@example(seed=0, scale=12.0, rate=0.5)
def test_rtrl_equals_bptt(name, seed, scale, rate):
    """RTRL (every code path) equals BPTT in float64, losses at every step and at the last."""
    with jax.enable_x64(True):
        net, params, inputs, labels = _case(name, seed, scale, rate)
        assert count_spikes(net, params, inputs) > 0
        for weights in (EVERY_STEP, LAST_STEP):
            weights = jnp.asarray(weights)
            loss_ref, grads_ref = gradient_fn("bptt", name)(params, inputs, labels, weights)
            for rule in VARIANTS[name] if seed == 0 else VARIANTS[name][:1]:
                loss, grads = gradient_fn(rule, name)(params, inputs, labels, weights)
                np.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-12)
                assert max_relative_error(grads, grads_ref) < RTOL, rule


@pytest.mark.parametrize("name", ["feedforward", "split"])
def test_ostl_and_otpe_exact_where_they_should_be(name):
    """Both are exact for the output layer. For the first layer OSTL is an approximation, and
    so is OTPE behind a spiking layer; behind a leaky-integrator readout (no reset, no
    surrogate) OTPE's subthreshold estimate of the next layer is exact, so OTPE is exact."""
    with jax.enable_x64(True):
        net, params, inputs, labels = _case(name, 3, 12.0, 0.4)
        assert count_spikes(net, params, inputs) > 0
        weights = jnp.ones(T)
        _, ref = gradient_fn("bptt", name)(params, inputs, labels, weights)
        n_out = 2 if name == "split" else 1  # Dense + LI(project=False) are the output layer
        for rule in ("ostl", "otpe"):
            _, grads = gradient_fn(rule, name)(params, inputs, labels, weights)
            assert max_relative_error(grads[-n_out:], ref[-n_out:]) < RTOL, rule
            first = max_relative_error(grads[0], ref[0])
            if rule == "otpe" and name == "split":
                assert first < RTOL
            else:
                assert first > 1e-3, rule  # an approximation: the comparison can fail


WINDOWED = {"truncated": online.Truncated, "ottt": online.OTTT, "ostl": online.OSTL,
            "otpe": online.OTPE}


@pytest.mark.parametrize("rule,name", [
    ("truncated", "feedforward"), ("truncated", "recurrent"),
    ("ottt", "feedforward"), ("ottt", "split"),
    ("ostl", "feedforward"), ("ostl", "split"), ("ostl", "single_layer"), ("ostl", "recurrent"),
    ("otpe", "feedforward"), ("otpe", "split"),
])
def test_windows_equal_steps(rule, name):
    """A window of steps computed at once (windows of 5 steps and of the whole sequence,
    T = 12) gives the gradient of the rule's per-step recursion (float64, losses at every step
    and at the last). ``RecurrentLIF`` has a dense OSTL trace: there the window advances step
    by step."""
    make = WINDOWED[rule]
    with jax.enable_x64(True):
        net, params, inputs, labels = _case(name, 3, 12.0, 0.5)
        assert count_spikes(net, params, inputs) > 0
        engine = online.gradient.prepare("test", make(window=5), net, params, inputs,
                                         cross_entropy).engine
        assert engine.windowed == (rule == "truncated" or name != "recurrent")
        for weights in (EVERY_STEP, LAST_STEP):
            weights = jnp.asarray(weights)
            loss_ref, ref = gradient_fn(make(window=1), name)(params, inputs, labels, weights)
            for window in (5, T):
                loss, grads = gradient_fn(make(window=window), name)(
                    params, inputs, labels, weights)
                np.testing.assert_allclose(float(loss), float(loss_ref), rtol=1e-12)
                assert max_relative_error(grads, ref) < 1e-12, window


def test_windowed_training_step_equals_the_per_step_recursion():
    """The deferred trainer runs a batch through the windows at once (one gradient product for
    the whole batch); its update equals that of the per-step recursion."""
    import optax

    from .conftest import weighted_cross_entropy

    with jax.enable_x64(True):
        net, params, _, _ = _case("feedforward", 3, 12.0, 0.5)
        inputs = jnp.stack([spiking_inputs(s, T, 4, 0.5, jnp.float64) for s in range(3)])
        labels = jax.random.randint(jax.random.PRNGKey(1), (3, T), 0, 3)
        targets = (labels, jnp.ones((3, T)))
        for make in WINDOWED.values():
            new = []
            for window in (1, 5):
                trainer = online.make_trainer(make(window=window), net, weighted_cross_entropy,
                                              optax.sgd(1.0))
                state, loss = trainer.step(trainer.init(params), inputs, targets)
                update = jax.tree_util.tree_map(lambda a, b: a - b, state.params, params)
                new.append((update, loss))
            assert all(float(jnp.max(jnp.abs(u))) > 0 for u in jax.tree_util.tree_leaves(new[0][0]))
            np.testing.assert_allclose(float(new[1][1]), float(new[0][1]), rtol=1e-12)
            assert max_relative_error(new[1][0], new[0][0]) < 1e-10


def test_ostl_exact_for_a_single_layer():
    with jax.enable_x64(True):
        net, params, inputs, labels = _case("single_layer", 5, 12.0, 0.5)
        assert count_spikes(net, params, inputs) > 0
        weights = jnp.ones(T)
        _, ref = gradient_fn("bptt", "single_layer")(params, inputs, labels, weights)
        _, grads = gradient_fn("ostl", "single_layer")(params, inputs, labels, weights)
        assert max_relative_error(grads, ref) < RTOL


# ------------------------------------------------------------------------- OTTT formula


def _numpy_ottt(params, inputs, labels, a_syn, a_mem, g, v_th, slope):
    """OTTT from its definition for a two-layer current-based LIF network (float64 NumPy).

    Per layer: u_t = a_mem v_{t-1} + g (a_syn I_{t-1} + x_t W), z_t = H(u_t - v_th), subtract
    reset; presynaptic trace of the subthreshold dynamics (both state variables):
    aI_t = a_syn aI_{t-1} + x_t,  av_t = a_mem av_{t-1} + g (a_syn aI_{t-1} + x_t) (= du_t/dW
    without reset), and grad W = sum_t outer(av_t, delta_t) with delta_t = dl_t/du_t through
    the same step only (surrogate 1 / (1 + slope |u - v_th|)^2).
    """
    W = [np.asarray(p["weight"], np.float64) for p in params]
    x = np.asarray(inputs, np.float64)
    sizes = [w.shape[1] for w in W]
    v = [np.zeros(n) for n in sizes]
    current = [np.zeros(n) for n in sizes]
    aI = [np.zeros(w.shape[0]) for w in W]
    av = [np.zeros(w.shape[0]) for w in W]
    grads = [np.zeros_like(w) for w in W]
    surrogate = lambda d: 1.0 / (1.0 + slope * np.abs(d)) ** 2  # noqa: E731
    for t in range(x.shape[0]):
        layer_in = [x[t]]
        us, zs = [], []
        for layer in range(2):
            I_new = a_syn * current[layer] + layer_in[layer] @ W[layer]
            u = a_mem * v[layer] + g * I_new
            z = (u > v_th).astype(np.float64)
            us.append(u)
            zs.append(z)
            v[layer] = u - z * v_th
            current[layer] = I_new
            layer_in.append(z)
            aI_new = a_syn * aI[layer] + layer_in[layer]
            av[layer] = a_mem * av[layer] + g * aI_new
            aI[layer] = aI_new
        p = np.exp(zs[1] - zs[1].max())
        p /= p.sum()
        dz2 = p - np.eye(len(p))[labels[t]]
        delta2 = dz2 * surrogate(us[1] - v_th)
        delta1 = (W[1] @ (g * delta2)) * surrogate(us[0] - v_th)
        grads[1] += np.outer(av[1], delta2)
        grads[0] += np.outer(av[0], delta1)
    return grads


def test_ottt_matches_its_defining_formula(x64):
    """OTTT on a two-layer two-state network equals the NumPy formula (both state variables
    in the presynaptic trace)."""
    import math

    from jaxsnn.discrete import LIF, surrogate

    a_syn, a_mem = math.exp(-1e-3 / 5e-3), math.exp(-1e-3 / 1e-2)
    g, slope, v_th = 1.0 - a_mem, 10.0, 1.0
    kw = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3, surrogate=surrogate.superspike(slope))
    import jaxsnn

    net = jaxsnn.serial(LIF(6, **kw), LIF(3, **kw))
    params = scaled_params(net, 4, 12, 11, 40.0, jnp.float64)
    inputs = spiking_inputs(11, 12, 4, 0.5, jnp.float64)
    labels = np.asarray(jax.random.randint(jax.random.PRNGKey(3), (12,), 0, 3))
    assert count_spikes(net, params, inputs) > 0
    _, grads, _ = jax.jit(
        lambda p: online.sequence_gradient("ottt", net, p, inputs, jnp.asarray(labels),
                                           cross_entropy)
    )(params)
    expected = _numpy_ottt(params, inputs, labels, a_syn, a_mem, g, v_th, slope)
    for got, want in zip(grads, expected):
        assert np.max(np.abs(want)) > 0
        np.testing.assert_allclose(np.asarray(got["weight"]), want, rtol=1e-9,
                                   atol=1e-12 * np.max(np.abs(want)))
