"""``ConvLIF`` (convolution fused into the LIF scan, hand-written adjoint) against the unfused
``serial(Conv, LIF)`` it replaces: equal spikes, states and membrane traces, and equal gradients
(weight, bias, inputs, carry) to float64 round-off (relative 1e-9) and float32 round-off
(relative 1e-4) for strides, paddings, both reset modes, synaptic currents, both per-step
convolutions and both weight-gradient schedules; under jit, vmap, ``time_major`` and grad;
and the error messages of bad input; a hypothesis property over weights, bias, inputs and
carry."""

import functools

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import jaxsnn
from jaxsnn.discrete import LIF, Conv, ConvLIF, time_major


def _pair(out_channels, kernel, stride, padding, *, bias, method, weight_gradient, **neuron):
    fused = ConvLIF(out_channels, kernel, stride, padding, bias=bias, method=method,
                    weight_gradient=weight_gradient, **neuron)
    conv = Conv(out_channels, kernel, stride, padding, bias=bias)
    return fused, conv, neuron


def _setup(fused, conv, neuron, size, scale):
    # data from NumPy: every eager jax.random call would compile a small program
    out_shape, initial = fused.init(jax.random.PRNGKey(0), size)
    rng = np.random.default_rng(0)
    shape, dtype = initial["weight"].shape, initial["weight"].dtype
    params = {"weight": jnp.asarray(scale * rng.normal(size=shape) / np.sqrt(np.prod(shape[:3])),
                                    dtype)}
    if "bias" in initial:
        params["bias"] = jnp.asarray(0.1 * np.arange(out_shape[-1]), dtype)
    reference = jaxsnn.serial(conv, LIF(out_shape[1:], project=False, **neuron))
    x = jnp.asarray(rng.uniform(size=size) < 0.4, dtype)
    return out_shape, params, reference, x


def _loss(apply, cotangent):
    """``(params, x, carry) -> (gradients, (state, spikes, recording))``, jitted (one
    compilation gives both the outputs and the gradients)."""

    def loss(params, x, carry):
        state, spikes, recording = apply(params, x, carry)
        total = jnp.sum(spikes * cotangent) + jnp.sum(state.v) + 0.5 * jnp.sum(state.current)
        if recording.v is not None:
            total = total + 0.1 * jnp.sum(recording.v)
        return total, (state, spikes, recording)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))


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
    rng = np.random.default_rng(1)
    carry = jaxsnn.discrete.LIFState(jnp.asarray(0.3 * rng.uniform(size=features)),
                                     jnp.asarray(0.1 * rng.normal(size=features)))
    ref_params = [params, {}]

    def fused_apply(p, xs, c):
        return fused.apply(p, xs, carry=c)

    def ref_apply(p, xs, c):
        state, spikes, rec = reference.apply(p, xs, carry=[None, c])
        return state[1], spikes, rec[1]

    cotangent = jnp.asarray(rng.normal(size=out_shape))
    g_got, got = _loss(fused_apply, cotangent)(params, x, carry)
    g_want, want = _loss(ref_apply, cotangent)(ref_params, x, carry)
    rate = float(jnp.mean(want[1]))
    assert 0.02 < rate < 0.9, f"the case must spike, and not always (rate {rate})"
    np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
    for a, b in zip(jax.tree_util.tree_leaves((got[0], got[2])),
                    jax.tree_util.tree_leaves((want[0], want[2]))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)

    g_want = (g_want[0][0], g_want[1], g_want[2])
    leaves_got, leaves_want = jax.tree_util.tree_leaves(g_got), jax.tree_util.tree_leaves(g_want)
    assert len(leaves_got) == len(leaves_want) == (5 if bias else 4)
    for name, a, b in zip(("weight", "inputs"), g_got[:2], g_want[:2]):
        assert float(jnp.max(jnp.abs(b["weight"] if name == "weight" else b))) > 0, name
    for a, b in zip(leaves_got, leaves_want):
        # with tau_syn = 0 the carried current does not act, and both give exact zeros
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize("out,kernel,stride,padding,size,bias,method,weight_gradient,neuron",
                         CASES)
def test_forward_without_gradient_or_recording_equals_the_differentiated_forward(
        x64, out, kernel, stride, padding, size, bias, method, weight_gradient, neuron):
    """Without AD and without a membrane recording the scan emits spikes instead of the
    membrane; spikes and final state must equal the forward pass under ``jax.vjp`` (which keeps
    the membrane for the backward pass) bit for bit, and ``serial(Conv, LIF)`` to rounding."""
    neuron = dict(neuron, record_membrane=False)
    fused, conv, neuron = _pair(out, kernel, stride, padding, bias=bias, method=method,
                                weight_gradient=weight_gradient, **neuron)
    out_shape, params, reference, x = _setup(fused, conv, neuron, size, scale=2.0)
    rng = np.random.default_rng(2)
    carry = jaxsnn.discrete.LIFState(jnp.asarray(0.3 * rng.uniform(size=out_shape[1:])),
                                     jnp.asarray(0.1 * rng.normal(size=out_shape[1:])))
    state, spikes, recording = jax.jit(lambda p, xs, c: fused.apply(p, xs, carry=c))(params, x, carry)
    (ad_state, ad_spikes, _), _ = jax.vjp(lambda p: fused.apply(p, x, carry=carry), params)
    ref_state, ref_spikes, _ = reference.apply([params, {}], x, carry=[None, carry])
    assert recording.v is None
    assert 0.02 < float(jnp.mean(spikes)) < 0.9 and float(jnp.mean(spikes[-1])) > 0
    np.testing.assert_array_equal(np.asarray(spikes), np.asarray(ad_spikes))
    np.testing.assert_array_equal(np.asarray(spikes), np.asarray(ref_spikes))
    for a, b, c in zip(state, ad_state, ref_state[1]):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-12, atol=1e-12)


def _count_primitive(jaxpr, name: str) -> int:
    """Occurrences of primitive ``name`` in ``jaxpr`` and all its sub-jaxprs (scan bodies)."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == name
        for sub in jax_core.jaxprs_in_params(eqn.params):
            count += _count_primitive(sub, name)
    return count


@pytest.mark.parametrize("out,kernel,stride,padding,size,bias,method,weight_gradient,neuron",
                         CASES)
def test_gradients_of_a_part_equal_the_full_gradients_and_skip_the_rest(
        x64, out, kernel, stride, padding, size, bias, method, weight_gradient, neuron):
    """Differentiating only the params (inputs are data, as for a first layer) or only the
    inputs (frozen params) gives the same cotangents as differentiating both; the backward pass
    then computes no per-step ``conv^T`` of the input, resp. no patch products for the weight."""
    fused, conv, neuron = _pair(out, kernel, stride, padding, bias=bias, method=method,
                                weight_gradient=weight_gradient, **neuron)
    out_shape, params, _, x = _setup(fused, conv, neuron, size, scale=2.0)
    cotangent = jnp.asarray(np.random.default_rng(3).normal(size=out_shape))

    def loss(p, xs):
        state, spikes, _ = fused.apply(p, xs)
        return jnp.sum(spikes * cotangent) + jnp.sum(state.v)

    g_params, g_inputs = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    only_params = jax.jit(jax.grad(loss, argnums=0))(params, x)
    only_inputs = jax.jit(jax.grad(loss, argnums=1))(params, x)
    assert float(jnp.max(jnp.abs(g_params["weight"]))) > 0
    assert float(jnp.max(jnp.abs(g_inputs))) > 0
    for a, b in zip(jax.tree_util.tree_leaves(only_params), jax.tree_util.tree_leaves(g_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(only_inputs), np.asarray(g_inputs))

    # conv^T of the input is an XLA convolution in the reverse scan (and, with method="xla",
    # one more in the forward scan); the weight's patch products are dot_generals
    def counts(argnums):
        jaxpr = jax.make_jaxpr(jax.grad(loss, argnums=argnums))(params, x).jaxpr
        return (_count_primitive(jaxpr, "conv_general_dilated"),
                _count_primitive(jaxpr, "dot_general"))

    forward_convs = 1 if method == "xla" else 0
    (conv_both, dot_both), (conv_params, dot_params), (conv_inputs, dot_inputs) = (
        counts((0, 1)), counts(0), counts(1))
    assert conv_both == conv_inputs == forward_convs + 1
    assert conv_params == forward_convs
    assert dot_params == dot_both > dot_inputs


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
    x = np.random.default_rng(0).uniform(size=(size[0], batch) + size[1:]) < 0.4
    x = jnp.asarray(x, jnp.float32)

    def grad(net):
        def loss(p, xs):
            spikes = time_major(net)(p, xs)[1]
            return jnp.sum(spikes * jnp.arange(4.0)), spikes

        return jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))

    (g_p, g_x), got = grad(fused)(params, x)
    (r_p, r_x), want = grad(unfused)(ref_params, x)
    assert got.shape == (size[0], batch) + out_shape[1:]
    assert 0.02 < float(jnp.mean(want)) < 0.9
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
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


_PROPERTY_NEURON = dict(tau_syn=4.0, tau_mem=8.0, dt=1.0, v_th=0.2, record_membrane=True)
_PROPERTY_SIZE = (4, 6, 6, 2)


@functools.cache
def _property_functions():
    """Jitted forward and gradient of both networks, built once (fixed shapes and neuron)."""
    fused = ConvLIF(3, 3, bias=True, **_PROPERTY_NEURON)
    reference = jaxsnn.serial(Conv(3, 3, bias=True), LIF((6, 6, 3), project=False,
                                                          **_PROPERTY_NEURON))

    def fused_apply(p, xs, c):
        return fused.apply(p, xs, carry=c)

    def ref_apply(p, xs, c):
        state, spikes, rec = reference.apply([p, {}], xs, carry=[None, c])
        return state[1], spikes, rec[1]

    cotangent = jnp.linspace(-1.0, 1.0, 4 * 6 * 6 * 3).reshape(4, 6, 6, 3)
    return _loss(fused_apply, cotangent), _loss(ref_apply, cotangent)


@example(seed=0, weight_scale=3.0, rate=0.5, bias=0.3)
@settings(deadline=None)
@given(seed=st.integers(0, 2**16), weight_scale=st.floats(0.5, 4.0),
       rate=st.floats(0.1, 0.8), bias=st.floats(0.25, 0.6))
def test_property_fused_equals_unfused(seed, weight_scale, rate, bias):
    """For random weights, bias (above threshold: every example spikes), input spikes and
    carry, ConvLIF equals serial(Conv, LIF) in float64: spikes, state, membrane, gradients."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        params = {"weight": jnp.asarray(weight_scale / 4.0 * rng.normal(size=(3, 3, 2, 3))),
                  "bias": jnp.full((3,), bias, jnp.float64)}
        x = jnp.asarray(rng.uniform(size=_PROPERTY_SIZE) < rate, jnp.float64)
        carry = jaxsnn.discrete.LIFState(jnp.asarray(0.2 * rng.uniform(size=(6, 6, 3))),
                                         jnp.asarray(0.1 * rng.normal(size=(6, 6, 3))))
        fused, reference = _property_functions()
        (g_got, got), (g_want, want) = fused(params, x, carry), reference(params, x, carry)
        assert float(jnp.sum(want[1])) > 0
        np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]))
        for a, b in zip(jax.tree_util.tree_leaves((got[0], got[2], g_got)),
                        jax.tree_util.tree_leaves((want[0], want[2], g_want))):
            scale = float(jnp.max(jnp.abs(b)))
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0,
                                       atol=1e-9 * max(scale, 1e-300))
