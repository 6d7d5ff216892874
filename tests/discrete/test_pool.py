"""SumPool, AvgPool, MaxPool and Flatten: NumPy loop reference, stax, jit/vmap/grad, errors,
and a conv -> pool -> conv -> pool -> dense LIF network."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

import jaxsnn
from jaxsnn.discrete import LIF, AvgPool, Conv, Flatten, MaxPool, SumPool

NEURON = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)
FACTORIES = {"SumPool": SumPool, "AvgPool": AvgPool, "MaxPool": MaxPool}


def _pads(padding, size, window, stride):
    """Explicit (lo, hi) pads of one axis, as defined by XLA for 'SAME'/'SAME_LOWER'."""
    if not isinstance(padding, str):
        return padding
    if padding == "VALID":
        return (0, 0)
    out = -(-size // stride)
    total = max((out - 1) * stride + window - size, 0)
    small, large = total // 2, total - total // 2
    return (small, large) if padding == "SAME" else (large, small)


def _numpy_pool(kind, x, window, stride, padding):
    """Loop over time, output pixels and channels (float64); padding excluded from the mean."""
    T, H, W, C = x.shape
    pads = padding if not isinstance(padding, str) else (
        _pads(padding, H, window[0], stride[0]), _pads(padding, W, window[1], stride[1])
    )
    (top, bottom), (left, right) = pads
    out_h = (H + top + bottom - window[0]) // stride[0] + 1
    out_w = (W + left + right - window[1]) // stride[1] + 1
    out = np.zeros((T, out_h, out_w, C))
    for t, i, j, c in itertools.product(range(T), range(out_h), range(out_w), range(C)):
        values = [
            x[t, r, q, c]
            for r in range(i * stride[0] - top, i * stride[0] - top + window[0])
            for q in range(j * stride[1] - left, j * stride[1] - left + window[1])
            if 0 <= r < H and 0 <= q < W
        ]
        padded = window[0] * window[1] - len(values)
        if kind == "SumPool":
            out[t, i, j, c] = sum(values)
        elif kind == "AvgPool":
            out[t, i, j, c] = sum(values) / len(values)
        else:
            out[t, i, j, c] = max(values + ([-np.inf] if padded else []))
    return out


CASES = [
    ((2, 2), None, "VALID"),
    ((3, 2), (2, 1), "SAME"),
    ((3, 3), (1, 2), "SAME_LOWER"),
    ((2, 3), (2, 2), ((1, 0), (2, 1))),
]


@pytest.mark.parametrize("kind", sorted(FACTORIES))
@pytest.mark.parametrize("window,stride,padding", CASES)
def test_pool_matches_numpy_loop(x64, kind, window, stride, padding):
    layer = FACTORIES[kind](window, stride, padding)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 7, 6, 2))
    shape, params = layer.init(jax.random.PRNGKey(1), x.shape)
    carry, out, rec = layer.apply(params, x)
    want = _numpy_pool(kind, np.asarray(x), window, stride or window, padding)
    assert params == {} and carry is None and rec is None
    assert shape == out.shape == want.shape
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_pool_equals_stax_per_time_step(kind):
    stax_pool = {"SumPool": stax.SumPool, "AvgPool": stax.AvgPool, "MaxPool": stax.MaxPool}[kind]
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 8, 8, 3))
    _, out, _ = FACTORIES[kind](2, 2, "SAME").apply({}, x)
    _, stax_apply = stax_pool((2, 2), (2, 2), "SAME")
    np.testing.assert_allclose(np.asarray(out), np.asarray(stax_apply((), x)), rtol=1e-6)
    assert FACTORIES[kind](2).name == f"{kind}(2)" and FACTORIES[kind]((2, 3)).name == (
        f"{kind}((2, 3))"
    )


def test_pool_gradients_jit_vmap(x64):
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 3, 4, 4, 2))  # (batch, T, H, W, C)
    weights = jax.random.normal(jax.random.PRNGKey(4), (2, 3, 2, 2, 2))

    def loss(kind, x):
        run = jax.vmap(lambda xs: FACTORIES[kind](2).apply({}, xs)[1])
        return jnp.sum(weights * run(x))

    # Max: the gradient of each window goes to its (unique, continuous inputs) maximum.
    grad_max = np.asarray(jax.jit(jax.grad(lambda x: loss("MaxPool", x)))(x))
    blocks = np.asarray(x).reshape(2, 3, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 6, 3, 5)
    is_max = blocks == blocks.max(axis=(-2, -1), keepdims=True)
    want = (is_max * np.asarray(weights)[..., None, None]).transpose(0, 1, 2, 5, 3, 6, 4)
    np.testing.assert_array_equal(grad_max, want.reshape(x.shape))
    # Sum and average are linear: every input gets its window's weight (/ 4 for the mean).
    for kind, scale in (("SumPool", 1.0), ("AvgPool", 0.25)):
        grad = np.asarray(jax.jit(jax.grad(lambda x, k=kind: loss(k, x)))(x))
        spread = np.repeat(np.repeat(np.asarray(weights), 2, axis=2), 2, axis=3)
        np.testing.assert_allclose(grad, scale * spread, rtol=1e-12)
    # vmap equals a loop over the batch.
    looped = jnp.stack([MaxPool(2).apply({}, xs)[1] for xs in x])
    np.testing.assert_array_equal(
        np.asarray(jax.vmap(lambda xs: MaxPool(2).apply({}, xs)[1])(x)), np.asarray(looped)
    )


@pytest.mark.parametrize("window,shape", [((2, 2), (3, 8, 8, 2)), ((2, 3), (2, 9, 7, 3)), (3, (2, 7, 6, 1))])
def test_max_pool_of_tiles_equals_reduce_window_values_and_gradients_on_ties(window, shape):
    """Non-overlapping MaxPool (a hand-written first-maximum mask as its derivative) equals
    ``lax.reduce_window`` bit for bit in value, reverse- and forward-mode derivative, also on 0/1 spikes where nearly
    every window has ties (the gradient goes to the first maximum) and on sizes that leave rows
    or columns outside the last window."""
    key_spikes, key_cotangent, key_tangent = jax.random.split(jax.random.PRNGKey(7), 3)
    pool = MaxPool(window)
    win = (window, window) if isinstance(window, int) else window
    # about one spike per window: some windows empty, some with ties
    spikes = jax.random.bernoulli(key_spikes, 1.0 / (win[0] * win[1]), shape).astype(jnp.float32)

    def ours(x):
        return pool.apply({}, x)[1]

    def reference(x):
        dims = (1,) + win + (1,)
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, dims, "VALID")

    out, vjp = jax.vjp(ours, spikes)
    want, vjp_want = jax.vjp(reference, spikes)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(want))
    cotangent = jax.random.normal(key_cotangent, want.shape)
    grad, grad_want = np.asarray(vjp(cotangent)[0]), np.asarray(vjp_want(cotangent)[0])
    np.testing.assert_array_equal(grad, grad_want)
    # the comparison saw ties and windows of zeros, and each window passes exactly one gradient
    tied = np.sum(np.asarray(spikes)[:, :out.shape[1] * win[0], :out.shape[2] * win[1]]) > np.sum(np.asarray(out))
    assert tied and np.any(np.asarray(out) == 0.0)
    assert np.count_nonzero(grad) == np.count_nonzero(np.asarray(cotangent))
    tangent = jax.random.normal(key_tangent, shape)
    np.testing.assert_array_equal(np.asarray(jax.jvp(ours, (spikes,), (tangent,))[1]),
                                  np.asarray(jax.jvp(reference, (spikes,), (tangent,))[1]))


def test_flatten():
    layer = Flatten()
    shape, params = layer.init(jax.random.PRNGKey(0), (5, 3, 4, 2))
    assert shape == (5, 24) and params == {} and layer.name == "Flatten"
    x = jnp.arange(5 * 3 * 4 * 2, dtype=jnp.float32).reshape(5, 3, 4, 2)
    _, out, _ = jax.jit(lambda x: layer.apply({}, x))(x)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x).reshape(5, 24))
    assert jax.vmap(lambda x: layer.apply({}, x)[1])(jnp.stack([x, x])).shape == (2, 5, 24)


def test_conv_pool_conv_pool_dense_network():
    """A DVS-gesture-like stack builds, runs under jit/vmap and has finite, non-zero gradients."""
    lif = lambda size: LIF(size, **NEURON, project=False)  # noqa: E731
    net = jaxsnn.serial(
        Conv(4, 3, weight_scale=30.0), lif((8, 8, 4)), MaxPool(2),
        Conv(6, 3, weight_scale=30.0), lif((4, 4, 6)), AvgPool(2),
        Flatten(), LIF(3, **NEURON, weight_scale=30.0),
    )
    shape, params = net.init(jax.random.PRNGKey(5), (12, 8, 8, 2))
    assert shape == (12, 3)
    x = (jax.random.uniform(jax.random.PRNGKey(6), (2, 12, 8, 8, 2)) < 0.4).astype(jnp.float32)

    def loss(params):
        _, out, rec = jax.vmap(lambda xs: net.apply(params, xs))(x)
        return jnp.sum(out * jnp.arange(1.0, 4.0)), rec

    (value, rec), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    assert float(jnp.sum(rec[1].spikes)) > 0 and float(jnp.sum(rec[4].spikes)) > 0
    assert float(value) > 0  # the output layer spikes
    for index in (0, 3, 7):
        g = np.asarray(grads[index]["weight"])
        assert np.all(np.isfinite(g)) and np.any(g != 0), index


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_pool_errors(kind):
    factory = FACTORIES[kind]
    with pytest.raises(ValueError, match="window must be a positive integer"):
        factory(0)
    with pytest.raises(TypeError, match="window must be a positive integer"):
        factory(1.5)
    with pytest.raises(ValueError, match=r"stride\[1\] must be a positive integer"):
        factory(2, (1, 0))
    with pytest.raises(ValueError, match="padding must be 'SAME', 'VALID'"):
        factory(2, padding="FULL")
    layer = factory(4)
    with pytest.raises(ValueError, match=r"window \(4, 4\) .* larger than the input \(3, 5\)"):
        layer.init(jax.random.PRNGKey(0), (6, 3, 5, 2))
    with pytest.raises(ValueError, match=r"takes \(time, height, width, channels\) inputs"):
        layer.init(jax.random.PRNGKey(0), (6, 8, 8))
    with pytest.raises(ValueError, match="inputs must be 4-dimensional"):
        layer.apply({}, jnp.zeros((6, 8, 8)))
    with pytest.raises(ValueError, match=r"window \(4, 4\) is larger than the input \(3, 8\)"):
        layer.apply({}, jnp.zeros((6, 3, 8, 1)))
    with pytest.raises(ValueError, match="has no parameters"):
        layer.apply({"weight": jnp.ones(2)}, jnp.zeros((6, 8, 8, 1)))
    with pytest.raises(TypeError, match="inputs"):
        layer.apply({}, jnp.zeros((6, 8, 8, 1), jnp.int32))
    with pytest.raises(ValueError, match="takes no external data"):
        layer.apply({}, jnp.zeros((6, 8, 8, 1)), external=jnp.ones(1))


def test_flatten_errors():
    with pytest.raises(ValueError, match=r"Flatten takes \(time, \*features\) inputs"):
        Flatten().init(jax.random.PRNGKey(0), (6,))
    with pytest.raises(ValueError, match=r"inputs must be \(time, \*features\)"):
        Flatten().apply({}, jnp.zeros(6))
    with pytest.raises(ValueError, match="has no parameters"):
        Flatten().apply({"weight": 1.0}, jnp.zeros((6, 2)))
