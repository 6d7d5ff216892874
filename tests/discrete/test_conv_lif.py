"""``ConvLIF`` (convolution fused into the LIF scan, hand-written adjoint) against the unfused
``serial(Conv, LIF)`` it replaces: equal spikes, states and membrane traces, and equal gradients
(weight, bias, inputs, carry) to float64 round-off (relative 1e-9) and float32 round-off
(relative 1e-4) for strides, paddings, both reset modes, synaptic currents, both per-step
convolutions and both weight-gradient schedules; under jit, vmap, ``time_major`` and grad;
and the error messages of bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn
from jaxsnn.discrete import LIF, Conv, ConvLIF, time_major


def _pair(out_channels, kernel, stride, padding, *, bias, method, weight_gradient, **neuron):
    fused = ConvLIF(out_channels, kernel, stride, padding, bias=bias, method=method,
                    weight_gradient=weight_gradient, **neuron)
    conv = Conv(out_channels, kernel, stride, padding, bias=bias)
    return fused, conv, neuron


def _setup(fused, conv, neuron, size, scale):
    out_shape, params = fused.init(jax.random.PRNGKey(0), size)
    params = jax.tree_util.tree_map(lambda w: w * scale, params)
    if "bias" in params:
        params["bias"] = params["bias"] + 0.1 * jnp.arange(params["bias"].shape[0])
    reference = jaxsnn.serial(conv, LIF(out_shape[1:], project=False, **neuron))
    assert reference.init(jax.random.PRNGKey(0), size)[0] == out_shape
    x = (jax.random.uniform(jax.random.PRNGKey(1), size) < 0.4).astype(params["weight"].dtype)
    return out_shape, params, reference, x


def _loss(apply, cotangent):
    def loss(params, x, carry):
        state, spikes, recording = apply(params, x, carry)
        total = jnp.sum(spikes * cotangent) + jnp.sum(state.v) + 0.5 * jnp.sum(state.current)
        if recording.v is not None:
            total = total + 0.1 * jnp.sum(recording.v)
        return total

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


CASES = [
    # (out, kernel, stride, padding, in shape, bias, method, weight_gradient, neuron)
    (3, 3, (1, 2), ((1, 0), (2, 1)), (4, 7, 8, 2), True, "auto", "scan",
     dict(tau_syn=5.0, tau_mem=10.0, dt=0.5, v_th=0.3, v_reset=-0.1, record_membrane=True)),
    (4, (3, 2), 2, "SAME_LOWER", (4, 9, 8, 3), True, "xla", "bands",
     dict(tau_syn=0.0, tau_mem=8.0, dt=1.0, v_th=0.4, input_scale=1.0, reset="hard",
          record_membrane=True)),
]


@pytest.mark.parametrize("out,kernel,stride,padding,size,bias,method,weight_gradient,neuron",
                         CASES)
def test_equals_serial_conv_lif_float64(x64, out, kernel, stride, padding, size, bias, method,
                                        weight_gradient, neuron):
    fused, conv, neuron = _pair(out, kernel, stride, padding, bias=bias, method=method,
                                weight_gradient=weight_gradient, **neuron)
    out_shape, params, reference, x = _setup(fused, conv, neuron, size, scale=2.0)
    features = out_shape[1:]
    carry = jaxsnn.discrete.LIFState(
        0.3 * jax.random.uniform(jax.random.PRNGKey(3), features),
        0.1 * jax.random.normal(jax.random.PRNGKey(4), features))
    ref_params = [params, {}]

    def fused_apply(p, xs, c):
        return fused.apply(p, xs, carry=c)

    def ref_apply(p, xs, c):
        state, spikes, rec = reference.apply(p, xs, carry=[None, c])
        return state[1], spikes, rec[1]

    got, want = fused_apply(params, x, carry), ref_apply(ref_params, x, carry)
    rate = float(jnp.mean(want[1]))
    assert 0.02 < rate < 0.9, f"the case must spike, and not always (rate {rate})"
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
    for a, b in zip(jax.tree_util.tree_leaves((got[0], got[2])),
                    jax.tree_util.tree_leaves((want[0], want[2]))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)

    cotangent = jax.random.normal(jax.random.PRNGKey(2), out_shape)
    g_got = _loss(fused_apply, cotangent)(params, x, carry)
    g_want = _loss(ref_apply, cotangent)(ref_params, x, carry)
    g_want = (g_want[0][0], g_want[1], g_want[2])
    leaves_got, leaves_want = jax.tree_util.tree_leaves(g_got), jax.tree_util.tree_leaves(g_want)
    assert len(leaves_got) == len(leaves_want) == (5 if bias else 4)
    for name, a, b in zip(("weight", "inputs"), g_got[:2], g_want[:2]):
        assert float(jnp.max(jnp.abs(b["weight"] if name == "weight" else b))) > 0, name
    for a, b in zip(leaves_got, leaves_want):
        # with tau_syn = 0 the carried current does not act, and both give exact zeros
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-9 * scale)


def test_float32_time_major_vmap_jit_and_rest_state():
    """The benchmark's use: two layers, float32, batched time-major, carry None (rest)."""
    neuron = dict(tau_syn=0.0, tau_mem=10.0, dt=1.0, input_scale=1.0, v_th=0.5)
    size = (4, 10, 10, 2)
    fused = jaxsnn.serial(ConvLIF(4, 3, **neuron), ConvLIF(4, 3, **neuron))
    unfused = jaxsnn.serial(Conv(4, 3), LIF((10, 10, 4), project=False, **neuron),
                            Conv(4, 3), LIF((10, 10, 4), project=False, **neuron))
    out_shape, params = fused.init(jax.random.PRNGKey(0), size)
    params = [{"weight": 2.0 * params[0]["weight"]}, {"weight": 2.0 * params[1]["weight"]}]
    ref_params = [params[0], {}, params[1], {}]
    batch = 3
    x = (jax.random.uniform(jax.random.PRNGKey(1), (size[0], batch) + size[1:]) < 0.4)
    x = x.astype(jnp.float32)

    def fwd(net):
        return jax.jit(lambda p, xs: time_major(net)(p, xs)[1])

    def grad(net):
        return jax.jit(jax.grad(lambda p, xs: jnp.sum(fwd(net)(p, xs) * jnp.arange(4.0)),
                                argnums=(0, 1)))

    got, want = fwd(fused)(params, x), fwd(unfused)(ref_params, x)
    assert got.shape == (size[0], batch) + out_shape[1:]
    assert 0.02 < float(jnp.mean(want)) < 0.9
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    (g_p, g_x), (r_p, r_x) = grad(fused)(params, x), grad(unfused)(ref_params, x)
    for a, b in ((g_p[0]["weight"], r_p[0]["weight"]), (g_p[1]["weight"], r_p[2]["weight"]),
                 (g_x, r_x)):
        scale = float(jnp.max(jnp.abs(b)))
        assert scale > 0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-4 * scale)


def _layer():
    return ConvLIF(3, 3, tau_syn=0.0, tau_mem=10.0, dt=1.0)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(method="fft"), ValueError, "method must be one of"),
    (dict(weight_gradient="later"), ValueError, "weight_gradient must be one of"),
    (dict(bias=1), TypeError, "bias must be a bool"),
    (dict(kernel_size=(3, 3, 3)), ValueError, "kernel_size"),
])
def test_bad_construction(kwargs, error, match):
    args = dict(out_channels=3, kernel_size=3, tau_syn=0.0, tau_mem=10.0, dt=1.0)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ConvLIF(**args)


def test_bad_init_and_apply():
    with pytest.raises(ValueError, match="larger than the input"):
        ConvLIF(3, 3, padding="VALID", tau_syn=0.0, tau_mem=10.0, dt=1.0).init(
            jax.random.PRNGKey(0), (4, 2, 2, 1))
    layer = _layer()
    _, params = layer.init(jax.random.PRNGKey(0), (4, 6, 6, 2))
    x = jnp.zeros((4, 6, 6, 2))
    with pytest.raises(ValueError, match="batch with jax.vmap"):
        layer.apply(params, jnp.zeros((2, 4, 6, 6, 2)))
    with pytest.raises(ValueError, match="features"):
        layer.apply(params, jnp.zeros((4, 6, 6, 3)))
    with pytest.raises(TypeError, match="float"):
        layer.apply(params, x.astype(jnp.int32))
    with pytest.raises(ValueError, match=r"params\['weight'\] has shape"):
        layer.apply({"weight": jnp.zeros((3, 3, 2, 5))}, x)
    with pytest.raises(ValueError, match="has 'bias'"):
        layer.apply(dict(params, bias=jnp.zeros(3)), x)
    with pytest.raises(ValueError, match="external must be None"):
        layer.apply(params, x, external=x)
    with pytest.raises(ValueError, match=r"carry\.v has shape"):
        layer.apply(params, x, carry=(jnp.zeros((6, 6, 2)), jnp.zeros((6, 6, 2))))
    with pytest.raises(ValueError, match="NaN|finite"):
        layer.apply(params, x.at[0, 0, 0, 0].set(jnp.nan))
