"""Training procedures: deferred and online modes, FPTT."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxsnn
from jaxsnn import online
from jaxsnn.discrete import LIF

from .conftest import SINGLE_STATE, TWO_STATE, cross_entropy, scaled_params, spiking_inputs

B, T = 3, 6
RULES = ["bptt", "truncated", "ottt", "ostl", "otpe", "rtrl"]


def _net():
    return jaxsnn.serial(LIF(5, **TWO_STATE), LIF(3, **SINGLE_STATE))


def _batch(T_=T):
    inputs = jnp.stack([spiking_inputs(b, T_, 4, 0.5, jnp.float32) for b in range(B)])
    labels = jnp.broadcast_to(jnp.arange(B)[:, None] % 3, (B, T_))
    return inputs, labels


def _params(net):
    return scaled_params(net, 4, T, 0, 12.0, jnp.float32)


@pytest.mark.parametrize("rule", RULES)
def test_modes_give_the_same_first_update(rule):
    """After the first time step, online mode has made exactly the update that deferred mode
    makes for a one-step sequence (same gradient, same optimiser)."""
    net = _net()
    params = _params(net)
    inputs, labels = _batch(1)
    results = []
    for mode in ("deferred", "online"):
        trainer = online.make_trainer(rule, net, cross_entropy, optax.adam(1e-2), mode)
        state, loss = trainer.step(trainer.init(params), inputs, labels)
        results.append((state.params, loss))
    (p_def, l_def), (p_on, l_on) = results
    np.testing.assert_allclose(l_def, l_on, rtol=1e-6)
    moved = 0.0
    for a, b, p0 in zip(jax.tree_util.tree_leaves(p_def), jax.tree_util.tree_leaves(p_on),
                        jax.tree_util.tree_leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        moved = max(moved, float(jnp.max(jnp.abs(a - p0))))
    assert moved > 1e-4  # the update did something


def _accumulate_gradients() -> optax.GradientTransformation:
    """An "optimiser" that keeps the parameters and sums the gradients it is given."""

    def init(params):
        return jax.tree_util.tree_map(jnp.zeros_like, params)

    def update(grads, total, params=None):
        return (jax.tree_util.tree_map(jnp.zeros_like, grads),
                jax.tree_util.tree_map(jnp.add, total, grads))

    return optax.GradientTransformation(init, update)


@pytest.mark.parametrize("rule", RULES)
def test_online_gradients_at_fixed_parameters_sum_to_the_deferred_gradient(rule):
    """With the parameters held fixed, the per-step gradients of online mode add up to the
    sequence gradient of deferred mode, computed by the rule's per-step recursion (windows of
    one step): the batched online step is checked against the per-sample recursion."""
    net = _net()
    to64 = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(to64, _params(net))
        inputs, labels = _batch()
        _check_online_sum(rule, net, params, to64(inputs), labels)


def _check_online_sum(rule, net, params, inputs, labels):
    per_step = {"truncated": online.Truncated(window=1), "ottt": online.OTTT(window=1),
                "ostl": online.OSTL(window=1), "otpe": online.OTPE(window=1),
                "rtrl": online.RTRL(window=1)}.get(rule, rule)
    sums = []
    for mode, r in (("online", rule), ("deferred", per_step)):
        trainer = online.make_trainer(r, net, cross_entropy, _accumulate_gradients(), mode)
        state, _ = trainer.step(trainer.init(params), inputs, labels)
        sums.append(state.opt_state)
    online_sum, deferred_sum = sums
    for a, b in zip(jax.tree_util.tree_leaves(online_sum), jax.tree_util.tree_leaves(deferred_sum)):
        assert a.dtype == jnp.float64
        scale = float(jnp.max(jnp.abs(b)))
        assert scale > 0  # a gradient to compare
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-10 * scale


def _one_step(net):
    """Jitted ``sequence_gradient`` of one step with the carry (compiled once per test)."""

    @jax.jit
    def step(params, x, y, carry):
        return online.sequence_gradient("truncated", net, params, x, y, cross_entropy,
                                        carry=carry)

    return step


def _rest(net, params, x):
    return list(net.apply(params, x[:0])[0])


def test_online_mode_updates_after_every_step():
    """Online truncated training with SGD equals a hand loop of one-step gradients, each at the
    parameters left by the previous step, with the network state carried on."""
    net = _net()
    params = _params(net)
    inputs, labels = _batch()
    lr = 5.0
    trainer = online.make_trainer("truncated", net, cross_entropy, optax.sgd(lr), "online")
    state, loss = trainer.step(trainer.init(params), inputs, labels)

    expected, total = params, 0.0
    one_step = _one_step(net)
    carries = [_rest(net, params, inputs[b]) for b in range(B)]
    for t in range(T):
        grads, losses = [], []
        for b in range(B):
            value, g, carries[b] = one_step(expected, inputs[b, t:t + 1], labels[b, t:t + 1],
                                        carries[b])
            grads.append(g)
            losses.append(value)
        mean = jax.tree_util.tree_map(lambda *g: sum(g) / B, *grads)
        expected = jax.tree_util.tree_map(lambda p, g: p - lr * g, expected, mean)
        total += float(np.mean(losses))
    np.testing.assert_allclose(float(loss), total, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # and it differs from one deferred update of the whole sequence
    deferred = online.make_trainer("truncated", net, cross_entropy, optax.sgd(lr), "deferred")
    d_state, _ = deferred.step(deferred.init(params), inputs, labels)
    assert any(float(jnp.max(jnp.abs(a - b))) > 2e-5 for a, b in zip(
        jax.tree_util.tree_leaves(d_state.params), jax.tree_util.tree_leaves(state.params)))


def test_fptt_update_rule():
    """FPTT with SGD: step gradient plus -lambda + alpha (theta - theta_bar), then the dual and
    running-average updates, checked against the formulas by hand for two steps."""
    net = _net()
    params = _params(net)
    inputs, labels = _batch(2)
    lr, alpha, beta = 0.5, 0.3, 0.4
    trainer = online.make_trainer("truncated", net, cross_entropy, optax.sgd(lr),
                                  online.FPTT(alpha=alpha, beta=beta))
    state, _ = trainer.step(trainer.init(params), inputs, labels)

    theta, bar = params, params
    lam = jax.tree_util.tree_map(jnp.zeros_like, params)
    one_step = _one_step(net)
    carries = [_rest(net, params, inputs[b]) for b in range(B)]
    tm = jax.tree_util.tree_map
    for t in range(2):
        grads = []
        for b in range(B):
            _, g, carries[b] = one_step(theta, inputs[b, t:t + 1], labels[b, t:t + 1],
                                        carries[b])
            grads.append(g)
        g = tm(lambda *g: sum(g) / B, *grads)
        g = tm(lambda g, p, b_, value: g - value + alpha * (p - b_), g, theta, bar, lam)
        theta = tm(lambda p, g: p - lr * g, theta, g)
        lam = tm(lambda value, p, b_: value - alpha * (p - b_), lam, theta, bar)
        bar = tm(lambda b_, p, value: (1 - beta) * b_ + beta * p - (beta / alpha) * value,
                 bar, theta, lam)
    for got, want in ((state.params, theta), (state.fptt[0], bar), (state.fptt[1], lam)):
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(float(jnp.max(jnp.abs(value))) > 0 for value in jax.tree_util.tree_leaves(lam))


@pytest.mark.parametrize("rule", RULES[1:])
@pytest.mark.parametrize("mode", ["online", "deferred"])
def test_training_modes_carry_memory_flat_in_T(rule, mode):
    """Each mode's training step is one scan over time (online: T steps; deferred: T / 5
    windows of 5 steps) whose carry does not depend on T."""
    net = _net()
    params = _params(net)
    window = 5
    if mode == "deferred":  # the rule's window form (rtrl: its forward-mode windows)
        rule = {"truncated": online.Truncated, "ottt": online.OTTT, "ostl": online.OSTL,
                "otpe": online.OTPE, "rtrl": online.RTRL}[rule](window=window)
    trainer = online.make_trainer(rule, net, cross_entropy, optax.sgd(0.1), mode)
    state = trainer.init(params)

    def carried(T_):
        inputs, labels = _batch(T_)
        jaxpr = jax.make_jaxpr(trainer.step)(state, inputs, labels)
        eqns = list(jaxpr.jaxpr.eqns)
        while len(eqns) == 1 and "jaxpr" in eqns[0].params:  # the jit wrapper
            eqns = list(eqns[0].params["jaxpr"].jaxpr.eqns)
        scans = [e for e in eqns if e.primitive.name == "scan"]
        expected = T_ if mode == "online" else T_ // window
        assert len(scans) == 1 and scans[0].params["length"] == expected
        n_consts, n_carry = scans[0].params["num_consts"], scans[0].params["num_carry"]
        avals = [v.aval for v in scans[0].invars[n_consts:n_consts + n_carry]]
        return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in avals)

    assert carried(10) == carried(50) > 0
