"""Dense and Conv: agreement with stax, time folded into the batch, composition with LIF."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

import jaxsnn
from jaxsnn.discrete import LIF, Conv, Dense, Linear

NEURON = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)


@pytest.mark.parametrize("bias", [False, True])
def test_dense_equals_stax_dense(bias):
    layer = Dense(4, bias=bias)
    shape, params = layer.init(jax.random.PRNGKey(0), (6, 3))
    assert shape == (6, 4) and layer.name == "Dense(4)"
    assert sorted(params) == (["bias", "weight"] if bias else ["weight"])
    if bias:
        params["bias"] = jnp.arange(4.0)
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 3))
    carry, out, rec = layer.apply(params, x)
    assert carry is None and rec is None
    _, stax_apply = stax.Dense(4)
    want = stax_apply((params["weight"], params.get("bias", jnp.zeros(4))), x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(want), rtol=1e-6)
    assert Linear is Dense


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (2, "VALID"), ((1, 2), ((1, 0), (2, 1)))])
def test_conv_equals_stax_conv_per_time_step(stride, padding):
    layer = Conv(3, (3, 2), stride=stride, padding=padding, bias=True)
    shape, params = layer.init(jax.random.PRNGKey(2), (5, 7, 6, 2))
    params["bias"] = jnp.array([0.1, -0.2, 0.3])
    strides = stride if isinstance(stride, tuple) else (stride, stride)
    stax_init, stax_apply = stax.Conv(3, (3, 2), strides=strides, padding=padding)
    stax_shape, _ = stax_init(jax.random.PRNGKey(0), (5, 7, 6, 2))
    assert shape == tuple(stax_shape)
    x = jax.random.normal(jax.random.PRNGKey(3), (5, 7, 6, 2))
    _, out, _ = layer.apply(params, x)
    # Time folded into the batch dimension equals convolving each step on its own.
    for t in range(5):
        want = stax_apply((params["weight"], params["bias"].reshape(1, 1, 1, 3)), x[t : t + 1])
        np.testing.assert_allclose(
            np.asarray(out[t : t + 1]), np.asarray(want), rtol=1e-5, atol=1e-6
        )


def test_conv_lif_network_under_vmap_jit_grad():
    net = jaxsnn.serial(
        Conv(2, 3, stride=2, weight_scale=4.0), LIF((3, 3, 2), **NEURON, project=False)
    )
    shape, params = net.init(jax.random.PRNGKey(4), (8, 6, 6, 1))
    assert shape == (8, 3, 3, 2)
    assert net.name == "serial(Conv(2, 3), LIF((3, 3, 2)))"
    x = (jax.random.uniform(jax.random.PRNGKey(5), (3, 8, 6, 6, 1)) < 0.5).astype(jnp.float32)

    def total_spikes(p, x):
        return jnp.sum(jax.vmap(lambda xi: net.apply(p, xi)[1])(x))

    value, grads = jax.jit(jax.value_and_grad(total_spikes))(params, x)
    single = sum(float(jnp.sum(net.apply(params, x[k])[1])) for k in range(3))
    assert float(value) == pytest.approx(single)
    assert float(value) > 0
    assert grads[0]["weight"].shape == (3, 3, 1, 2) and grads[1] == {}
    assert (
        bool(jnp.all(jnp.isfinite(grads[0]["weight"])))
        and float(jnp.max(jnp.abs(grads[0]["weight"]))) > 0
    )


def test_conv_shape_errors():
    with pytest.raises(ValueError, match=r"Conv\(2, 3\) takes \(time, height, width, channels\)"):
        Conv(2, 3).init(jax.random.PRNGKey(0), (5, 4, 4))
    with pytest.raises(ValueError, match="larger than the input"):
        Conv(2, 5, padding="VALID").init(jax.random.PRNGKey(0), (5, 3, 3, 1))
    layer = Conv(2, 3)
    _, params = layer.init(jax.random.PRNGKey(0), (5, 4, 4, 1))
    with pytest.raises(ValueError, match="inputs must be 4-dimensional"):
        layer.apply(params, jnp.zeros((5, 4, 4)))
    with pytest.raises(ValueError, match=r"inputs have features \(4, 4, 2\)"):
        layer.apply(params, jnp.zeros((5, 4, 4, 2)))
    with pytest.raises(TypeError, match="floating-point"):
        layer.apply(params, jnp.zeros((5, 4, 4, 1), jnp.int32))
    with pytest.raises(ValueError, match="NaN/inf"):
        layer.apply(params, jnp.full((5, 4, 4, 1), jnp.nan))
    with pytest.raises(ValueError, match="padding must be"):
        Conv(2, 3, padding="FULL")
    with pytest.raises(ValueError, match="kernel_size must be an int or a pair"):
        Conv(2, (3, 3, 3))
    with pytest.raises(ValueError, match="out_channels must be a positive integer"):
        Conv(0, 3)
    with pytest.raises(ValueError, match="built with bias=True"):
        Conv(2, 3, bias=True).apply(params, jnp.zeros((5, 4, 4, 1)))


def test_dense_errors():
    layer = Dense(3)
    with pytest.raises(ValueError, match=r"Dense\(3\) takes \(time, features\)"):
        layer.init(jax.random.PRNGKey(0), (4, 2, 2))
    _, params = layer.init(jax.random.PRNGKey(0), (4, 2))
    with pytest.raises(
        ValueError, match=r"inputs have features \(5,\) but the parameters expect \(2,\)"
    ):
        layer.apply(params, jnp.zeros((4, 5)))
    with pytest.raises(ValueError, match="must be 2-dimensional"):
        layer.apply(params, jnp.zeros((2, 4, 2)))
    with pytest.raises(TypeError, match="floating-point dtype"):
        layer.apply(params, jnp.zeros((4, 2), bool))
    with pytest.raises(ValueError, match=r"params contains 1 NaN/inf"):
        layer.apply({"weight": params["weight"].at[0, 0].set(jnp.inf)}, jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match="takes no external data"):
        layer.apply(params, jnp.zeros((4, 2)), external=jnp.zeros(2))
    with pytest.raises(TypeError, match="bias must be a bool"):
        Dense(3, bias=1)
    with pytest.raises(ValueError, match="size must be a positive integer"):
        Dense(-1)
