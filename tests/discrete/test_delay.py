"""Discrete ``Delay(steps)``: against a Python loop, chunking, transformations, exact gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import jaxsnn
from jaxsnn.discrete import LI, Delay
from jaxsnn.testing import properties, strategies
from jaxsnn.testing.reference import simulate_discrete

KW = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)
T, N = 9, 3


def loop_delay(x, steps):
    """y_t = x_{t - steps}, zero before the first input arrives (explicit loop)."""
    y = np.zeros_like(x)
    for t in range(x.shape[0]):
        if t - steps >= 0:
            y[t] = x[t - steps]
    return y


@settings(max_examples=10)
@given(x=strategies.dense_inputs(T, N, binary=False), steps=st.integers(0, T + 2), split=st.integers(1, T - 1))
@example(x=np.arange(T * N, dtype=np.float32).reshape(T, N) + 1, steps=2, split=4)
def test_delay_matches_loop_and_chunks(x, steps, split):
    layer = Delay(steps)
    _, params = layer.init(jax.random.PRNGKey(0), (T, N))
    history, y, recording = layer.apply(params, jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(y), loop_delay(x, steps))
    assert history.shape == (steps, N) and recording is None
    # The carry holds the last `steps` inputs: chunks equal one run, bit for bit.
    properties.check_chunked_equals_whole(layer, params, x, split, rtol=0.0, atol=0.0)


def test_delay_jit_vmap_causality_shift_and_identity():
    layer = Delay(2)
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (T, N)), np.float32)
    properties.check_jit_equals_eager(layer, {}, jnp.asarray(x), rtol=0.0, atol=0.0)
    properties.check_vmap_equals_loop(layer, {}, jnp.asarray(np.stack([x, -x])), rtol=0.0, atol=0.0)
    properties.check_causality(layer, {}, x, 4)
    properties.check_time_shift(layer, {}, x, 3, rtol=0.0, atol=0.0)
    np.testing.assert_array_equal(Delay(0).apply({}, jnp.asarray(x))[1], x)
    _, y, _ = Delay(T + 5).apply({}, jnp.asarray(x))
    assert not np.any(np.asarray(y))  # longer than the window: nothing has arrived yet


def test_delay_gradients_are_exact_inside_a_network():
    """serial(Delay(2), LI): weight gradient vs float64 central differences of the NumPy reference."""
    with jax.enable_x64(True):
        net = jaxsnn.serial(Delay(2), LI(2, **KW))
        _, params = net.init(jax.random.PRNGKey(1), (T, N))
        x = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (T, N)))
        c = np.cos(np.arange(T * 2)).reshape(T, 2)
        grad_w = jax.grad(lambda p: jnp.sum(c * net.apply(p, jnp.asarray(x))[1]))(params)[1]["weight"]
        grad_x = jax.grad(lambda xs: jnp.sum(c * net.apply(params, xs)[1]))(jnp.asarray(x))

    def reference(w, xs):
        return float(np.sum(c * simulate_discrete(w, loop_delay(xs, 2), readout=True, **KW)["v"]))

    w = np.asarray(params[1]["weight"])
    for index in np.ndindex(*w.shape):
        plus, minus = w.copy(), w.copy()
        plus[index] += 1e-6
        minus[index] -= 1e-6
        fd = (reference(plus, x) - reference(minus, x)) / 2e-6
        assert abs(float(grad_w[index]) - fd) <= 1e-9 + 1e-6 * abs(fd)
    # The last two input steps never reach the output inside the window: zero gradient.
    assert not np.any(np.asarray(grad_x[-2:])) and np.all(np.any(np.asarray(grad_x[:-2]) != 0, axis=1))


def test_delay_errors():
    with pytest.raises(ValueError, match=r"steps must be an int >= 0 \(time steps\), got -1"):
        Delay(-1)
    with pytest.raises(ValueError, match=r"steps must be an int >= 0"):
        Delay(1.5)
    layer = Delay(2)
    with pytest.raises(ValueError, match=r"Delay\(2\): carry must be None \(rest\) or the \(steps, \*features\) = \(2, 3\) history"):
        layer.apply({}, jnp.ones((T, N)), carry=jnp.zeros((1, N)))
    with pytest.raises(ValueError, match=r"Delay\(2\) takes no external data"):
        layer.apply({}, jnp.ones((T, N)), external=jnp.ones((T, N)))
    with pytest.raises(TypeError, match=r"Delay\(2\): inputs"):
        layer.apply({}, jnp.ones((T, N), jnp.int32))
    with pytest.raises(ValueError, match=r"Delay\(2\) takes \(time, \*features\) inputs"):
        layer.init(jax.random.PRNGKey(0), ())
