"""``stepwise(net)``: the network run a window of steps at a time in one loop equals the
network run over the whole window (float64), under jit, vmap (``time_major``) and grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn
from jaxsnn.discrete import LIF, ConvLIF, Dense, Flatten, MaxPool, stepwise, time_major

NEURON = dict(tau_syn=4.0, tau_mem=8.0, dt=1.0)


def _net():
    # v_leak != 0: rest is not all zeros, so a stepwise run that starts from zeros differs
    return jaxsnn.serial(
        ConvLIF(3, 3, v_th=0.4, record_membrane=True, **NEURON), MaxPool(2), Flatten(),
        Dense(5), LIF(5, project=False, v_th=0.3, v_leak=0.2, **NEURON),
    )


def _data(batch=None, steps=6):
    rng = np.random.default_rng(0)
    shape = (steps, 6, 6, 2) if batch is None else (steps, batch, 6, 6, 2)
    return jnp.asarray((rng.uniform(size=shape) < 0.5).astype(np.float64))


def _params(net):
    _, params = net.init(jax.random.PRNGKey(1), (6, 6, 6, 2))
    params[0]["weight"] = 3.0 * params[0]["weight"]
    params[3]["weight"] = 4.0 * params[3]["weight"]
    return params


def _assert_same(got, want):
    leaves_got, leaves_want = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    assert len(leaves_got) == len(leaves_want) > 0
    for a, b in zip(leaves_got, leaves_want):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("window", [1, 2])
def test_equals_the_whole_window_from_rest_and_from_a_carry(x64, window):
    net = _net()
    params, x = _params(net), _data()
    run = jax.jit(lambda p, xs, c: stepwise(net, window).apply(p, xs, carry=c))
    want = jax.jit(lambda p, xs, c: net.apply(p, xs, carry=c))
    carry, spikes, recording = want(params, x, None)
    rates = [float(jnp.mean(recording[0].spikes)), float(jnp.mean(spikes))]
    assert all(0.05 < r < 0.95 for r in rates), f"the network must spike, and not always: {rates}"
    _assert_same(run(params, x, None), (carry, spikes, recording))
    # continuing from a carry (streaming) equals continuing the whole-window run
    _assert_same(run(params, x, carry), want(params, x, carry))


def test_time_major_batches_and_gradients_equal_the_whole_window(x64):
    net = _net()
    params, x = _params(net), _data(batch=3)

    def loss(apply):
        def value(p, xs):
            _, spikes, recording = apply(p, xs)
            return jnp.sum(spikes * jnp.arange(5.0)) + jnp.sum(recording[0].v ** 2)
        return jax.jit(jax.value_and_grad(value))

    got_value, got_grad = loss(time_major(stepwise(net, 2)))(params, x)
    want_value, want_grad = loss(time_major(net))(params, x)
    assert abs(float(got_value - want_value)) <= 1e-12 * abs(float(want_value))
    assert float(jnp.max(jnp.abs(want_grad[0]["weight"]))) > 0
    _assert_same(got_grad, want_grad)


def test_bad_use_is_an_error():
    net = _net()
    with pytest.raises(TypeError, match="stepwise takes a jaxsnn Layer"):
        stepwise(net.apply)
    with pytest.raises(ValueError, match="window"):
        stepwise(net, 0)
    params, x = _params(net), _data(steps=5)
    with pytest.raises(ValueError, match="divisible by window=2"):
        stepwise(net, 2).apply(params, x)
    with pytest.raises(ValueError, match=r"inputs must be \(time, \.\.\.\).*got shape \(\)"):
        stepwise(net).apply(params, jnp.zeros(()))
    with pytest.raises(ValueError, match="external data"):
        stepwise(net).apply(params, x, external=[None] * 5)
