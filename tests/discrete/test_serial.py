"""Discrete layers inside serial: jit, vmap, grad, nesting and the stax adapter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

import jaxsnn
from jaxsnn.discrete import LI, LIF, Dense, RecurrentLIF

NEURON = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)
T, N_IN, BATCH = 12, 3, 4


def _layers():
    return (
        LIF(5, **NEURON, weight_scale=8.0, record_membrane=True),
        Dense(4, bias=True),
        LIF(4, **NEURON, project=False),
        RecurrentLIF(3, **NEURON, weight_scale=6.0),
        LI(2, **NEURON),
    )


@pytest.fixture(scope="module")
def network():
    a, b, c, d, e = _layers()
    flat = jaxsnn.serial(a, b, c, d, e)
    nested = jaxsnn.serial(a, jaxsnn.serial(b, jaxsnn.serial(c, d)), e)
    _, params = flat.init(jax.random.PRNGKey(0), (T, N_IN))
    x = (jax.random.uniform(jax.random.PRNGKey(1), (BATCH, T, N_IN)) < 0.5).astype(jnp.float32)
    return flat, nested, params, x


def test_nested_equals_flat(network):
    flat, nested, params, x = network
    shape_flat, params_flat = flat.init(jax.random.PRNGKey(3), (T, N_IN))
    shape_nested, params_nested = nested.init(jax.random.PRNGKey(3), (T, N_IN))
    assert shape_flat == shape_nested == (T, 2)
    assert len(params_flat) == len(params_nested) == 5
    assert jax.tree_util.tree_structure(params_flat) == jax.tree_util.tree_structure(params_nested)
    carry_f, out_f, rec_f = flat.apply(params, x[0])
    carry_n, out_n, rec_n = nested.apply(params, x[0])
    np.testing.assert_array_equal(np.asarray(out_f), np.asarray(out_n))
    assert len(rec_f) == len(rec_n) == 5 and len(carry_f) == len(carry_n) == 5
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), rec_f, rec_n
    )
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), carry_f, carry_n
    )
    assert rec_f[0].v.shape == (T, 5) and rec_f[1] is None and carry_f[1] is None


def test_jit_vmap_grad_under_serial(network):
    flat, nested, params, x = network

    def batched(p, x):
        return jax.vmap(lambda xi: flat.apply(p, xi))(x)

    carry, out, rec = jax.jit(batched)(params, x)
    assert out.shape == (BATCH, T, 2)
    for k in range(BATCH):  # vmap equals a loop over samples
        np.testing.assert_allclose(
            np.asarray(out[k]), np.asarray(flat.apply(params, x[k])[1]), rtol=1e-6, atol=1e-7
        )
    assert float(jnp.sum(rec[0].spikes)) > 0

    def objective(p):
        membrane = jax.vmap(lambda xi: nested.apply(p, xi)[1])(x)
        return jnp.mean(jnp.max(membrane, axis=1)) + jnp.mean(membrane)

    grads = jax.jit(jax.grad(objective))(params)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.max(jnp.abs(grads[0]["weight"]))) > 0  # gradient reaches the first layer


def test_stax_adapter_inside_serial(x64):
    stax_dense = jaxsnn.stateless(stax.Dense(4))
    net = jaxsnn.serial(stax_dense, LIF(4, **NEURON, project=False), LI(2, **NEURON))
    mine = jaxsnn.serial(Dense(4, bias=True), LIF(4, **NEURON, project=False), LI(2, **NEURON))
    shape, params = net.init(jax.random.PRNGKey(5), (T, N_IN))
    assert shape == (T, 2)
    w, b = params[0]
    x = 3.0 * (jax.random.uniform(jax.random.PRNGKey(6), (T, N_IN)) < 0.5).astype(jnp.float64)
    _, want, _ = mine.apply([{"weight": w, "bias": b}] + params[1:], x)
    carry, got, rec = net.apply(params, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12, atol=1e-12)
    assert carry[0] is None and rec[0] is None
    grads = jax.grad(lambda p: jnp.sum(net.apply(p, x)[1] ** 2))(params)
    assert grads[0][0].shape == (N_IN, 4)


def test_serial_init_error_names_the_layer():
    net = jaxsnn.serial(LIF(5, **NEURON), LIF(4, **NEURON, project=False))
    with pytest.raises(
        ValueError,
        match=r"layer 1 \(LIF\(4\)\) cannot take input shape \(12, 5\).*equal its size \(4,\)",
    ):
        net.init(jax.random.PRNGKey(0), (T, 5))
