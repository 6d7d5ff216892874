"""time_major: equals batch-major vmap with swapped axes, continues through carry, jit/grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn
from jaxsnn.discrete import LI, LIF, RecurrentLIF, time_major

NEURON = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)


def _net():
    return jaxsnn.serial(
        LIF(6, **NEURON, record_membrane=True), RecurrentLIF(5, **NEURON, weight_scale=8.0),
        LI(2, **NEURON),
    )  # every kind of discrete state and recording


def test_time_major_equals_batch_major_vmap():
    net = _net()
    _, params = net.init(jax.random.PRNGKey(0), (10, 4))
    params[0]["weight"] = params[0]["weight"] * 12.0
    x = (jax.random.uniform(jax.random.PRNGKey(1), (10, 3, 4)) < 0.5).astype(jnp.float32)
    carry, out, rec = jax.jit(time_major(net))(params, x)
    want_carry, want_out, want_rec = jax.vmap(lambda xs: net.apply(params, xs))(x.swapaxes(0, 1))
    assert out.shape == (10, 3, 2)
    assert float(jnp.sum(rec[0].spikes)) > 0 and float(jnp.sum(rec[1].spikes)) > 0
    np.testing.assert_array_equal(np.asarray(out), np.asarray(want_out).swapaxes(0, 1))
    for got, want in zip(jax.tree_util.tree_leaves(rec), jax.tree_util.tree_leaves(want_rec)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want).swapaxes(0, 1))
    for got, want in zip(jax.tree_util.tree_leaves(carry), jax.tree_util.tree_leaves(want_carry)):
        assert got.shape[0] == 3
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # Continuing a window through the (batch-first) carry equals the whole window.
    apply = time_major(net.apply)
    first_carry, first, _ = apply(params, x[:4])
    _, second, _ = apply(params, x[4:], carry=first_carry)
    np.testing.assert_array_equal(np.concatenate([first, second]), np.asarray(out))
    # Gradients agree with the batch-major formulation.
    grad_tm = jax.grad(lambda p: jnp.sum(time_major(net)(p, x)[1] ** 2))(params)
    grad_bm = jax.grad(
        lambda p: jnp.sum(jax.vmap(lambda xs: net.apply(p, xs))(x.swapaxes(0, 1))[1] ** 2)
    )(params)
    assert float(jnp.max(jnp.abs(grad_tm[0]["weight"]))) > 0
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                                                atol=1e-6),
        grad_tm, grad_bm,
    )


def test_time_major_errors():
    net = _net()
    _, params = net.init(jax.random.PRNGKey(0), (10, 4))
    apply = time_major(net)
    with pytest.raises(ValueError, match=r"inputs must be \(time, batch, \.\.\.\)"):
        apply(params, jnp.zeros(4))
    with pytest.raises(ValueError, match="take no external data"):
        apply(params, jnp.zeros((10, 3, 4)), external=[None] * 4)
    carry, _, _ = apply(params, jnp.zeros((10, 3, 4)))
    with pytest.raises(ValueError, match=r"batch axis first \(size 2, the inputs' axis 1\)"):
        apply(params, jnp.zeros((10, 2, 4)), carry=carry)
    with pytest.raises(TypeError, match="takes a Layer or an apply function"):
        time_major(3)
