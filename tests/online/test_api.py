"""The public entry point: bad input, transformations, silent networks, memory flat in T."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.example_libraries import stax

import jaxsnn
from jaxsnn import event, online
from jaxsnn.discrete import LI, LIF, RecurrentLIF

from .conftest import (
    TWO_STATE,
    build,
    cross_entropy,
    gradient_fn,
    max_relative_error,
    scaled_params,
    spiking_inputs,
)

T = 12


def _small():
    net, n_in = build("feedforward")
    params = scaled_params(net, n_in, T, 0, 12.0, jnp.float32)
    inputs = spiking_inputs(0, T, n_in, 0.5, jnp.float32)
    labels = jnp.zeros((T,), jnp.int32)
    return net, params, inputs, labels


# ------------------------------------------------------------------------------- errors


def _zero_params(net):
    """Zero parameters of the right structure, shapes and dtypes, from the shapes of ``init``
    (traced, not run: no random-number kernels to compile for tests of error messages)."""
    shapes = jax.eval_shape(lambda key: net.init(key, (T, 4))[1], jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)



def test_unknown_rule_is_named():
    net, params, inputs, labels = _small()
    with pytest.raises(ValueError, match=r"unknown rule 'sgd'.*choose one of"):
        online.sequence_gradient("sgd", net, params, inputs, labels, cross_entropy)
    with pytest.raises(TypeError, match="rule must be a name"):
        online.sequence_gradient(3, net, params, inputs, labels, cross_entropy)


def test_event_layer_is_named_with_what_to_do():
    net = jaxsnn.serial(
        LIF(4, **TWO_STATE),
        event.ToSpikes(dt=1e-3, capacity=16),
        event.LIF(3, capacity=8, t_max=1e-2),
    )
    params = _zero_params(net)
    inputs = jnp.ones((T, 4))
    with pytest.raises(ValueError, match=r"layer [12] \(.*\) is an event-based layer.*EventProp"):
        online.sequence_gradient("ostl", net, params, inputs, jnp.zeros((T,), int), cross_entropy)


def test_shape_errors():
    net, params, inputs, labels = _small()
    with pytest.raises(ValueError, match=r"cannot run on inputs of shape \(time, 5\): .*LIF\(6\)"):
        online.sequence_gradient("ostl", net, params, jnp.ones((T, 5)), labels, cross_entropy)
    with pytest.raises(ValueError, match=r"every target array must start with the time axis "
                                         r"of the inputs \(12,\), got a target of shape \(11,\)"):
        online.sequence_gradient("ostl", net, params, inputs, labels[:-1], cross_entropy)
    with pytest.raises(ValueError, match=r"inputs must be \(time, features...\).*jax.vmap"):
        online.sequence_gradient("ostl", net, params, inputs[0], labels, cross_entropy)
    with pytest.raises(TypeError, match="floating-point dtype"):
        online.sequence_gradient("ostl", net, params, inputs.astype(int), labels, cross_entropy)
    with pytest.raises(ValueError, match=r"params must be the flat list of 2 per-layer"):
        online.sequence_gradient("ostl", net, params[:1], inputs, labels, cross_entropy)
    with pytest.raises(ValueError, match=r"carry must be None \(rest\) or the flat list of 2"):
        online.sequence_gradient("ostl", net, params, inputs, labels, cross_entropy, carry=[None])
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        online.sequence_gradient("ostl", net, params, inputs, labels, "ce")
    with pytest.raises(TypeError, match="net must be a jaxsnn layer"):
        online.sequence_gradient("ostl", "net", params, inputs, labels, cross_entropy)


def test_rules_name_the_layer_they_cannot_handle():
    net = jaxsnn.serial(RecurrentLIF(5, **TWO_STATE), LIF(3, **TWO_STATE))
    params = _zero_params(net)
    inputs, labels = jnp.ones((T, 4)), jnp.zeros((T,), int)
    with pytest.raises(ValueError, match=r"ottt needs neuron-local layers.*layer 0 "
                                         r"\(RecurrentLIF\(5\)\).*use 'ostl', 'rtrl'"):
        online.sequence_gradient("ottt", net, params, inputs, labels, cross_entropy)
    with pytest.raises(ValueError, match=r"otpe needs neuron-local layers \(LIF, LI\) but "
                                         r"layer 0 \(RecurrentLIF\(5\)\)"):
        online.sequence_gradient("otpe", net, params, inputs, labels, cross_entropy)
    # a Dense two leaves before the LIF it drives: not a per-neuron weight of that LIF
    net = jaxsnn.serial(jaxsnn.stateless(stax.Dense(6)), jaxsnn.stateless(stax.Relu),
                        LIF(6, project=False, **TWO_STATE))
    params = _zero_params(net)
    with pytest.raises(ValueError, match=r"ottt needs the parameters of layer 0 \(Dense\) to be"):
        online.sequence_gradient("ottt", net, params, inputs, labels, cross_entropy)
    # the input of a Dense that follows a stax layer is not recorded
    net = jaxsnn.serial(LIF(6, **TWO_STATE), jaxsnn.stateless(stax.Relu),
                        jaxsnn.discrete.Dense(3), LIF(3, project=False, **TWO_STATE))
    params = _zero_params(net)
    with pytest.raises(ValueError, match=r"ottt needs the presynaptic activity of layer 2 "
                                         r"\(Dense\(3\)\).*layer 1 \(elementwise\)"):
        online.sequence_gradient("ottt", net, params, inputs, labels, cross_entropy)


def test_rule_and_trainer_options_are_checked():
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        online.RTRL(window=0)
    for bad in (0, 2.0, True):
        for make in (online.Truncated, online.OTTT, online.OSTL, online.OTPE):
            with pytest.raises(ValueError, match=f"{make.__name__}: window must be an int >= 1"):
                make(window=bad)
    with pytest.raises(TypeError, match="structured must be a bool"):
        online.RTRL(structured=1)
    with pytest.raises(ValueError, match="alpha must be a number > 0"):
        online.FPTT(alpha=0.0)
    with pytest.raises(ValueError, match=r"beta must be a number in \(0, 1\]"):
        online.FPTT(beta=1.5)
    net, _, _, _ = _small()
    with pytest.raises(ValueError, match=r"mode must be one of \('deferred', 'online'\)"):
        online.make_trainer("ostl", net, cross_entropy, optax.sgd(0.1), mode="batch")
    with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
        online.make_trainer("ostl", net, cross_entropy, 0.1)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        online.make_trainer("ostl", net, None, optax.sgd(0.1))
    assert online.get_rule("RTRL") == online.RTRL()
    assert online.RTRL(window=3) != online.RTRL()
    assert hash(online.OSTL()) == hash(online.get_rule("ostl"))
    assert online.OSTL(window=1) != online.OSTL() and repr(online.OSTL(3)) == "OSTL(window=3)"


# ------------------------------------------------------------------------- transformations


def test_jit_vmap_and_grad():
    """``sequence_gradient`` under ``jit`` and ``vmap`` equals a loop, and ``jax.grad`` of its
    loss is the BPTT gradient."""
    net, params, inputs, labels = _small()
    batch = jnp.stack([inputs, spiking_inputs(1, T, 4, 0.5, jnp.float32)])
    weights = jnp.ones((T,))
    fn = gradient_fn("ostl", "feedforward")
    batched = jax.jit(jax.vmap(fn, in_axes=(None, 0, None, None)))(params, batch, labels, weights)
    for b in range(2):
        single = fn(params, batch[b], labels, weights)
        np.testing.assert_allclose(batched[0][b], single[0], rtol=1e-6)
        assert max_relative_error(jax.tree_util.tree_map(lambda a: a[b], batched[1]),
                                  single[1]) < 1e-5

    # jax.grad through a rule: its loss is the same function as BPTT's, so its gradient is
    # BPTT's. (Leaky integrators: the surrogate spike functions have zero derivative under
    # nested differentiation, so a spiking network would compare zeros.)
    linear = jaxsnn.serial(LI(5, tau_syn=5e-3, tau_mem=1e-2, dt=1e-3),
                           LI(3, tau_syn=0.0, tau_mem=1e-2, dt=1e-3))
    _, lin_params = linear.init(jax.random.PRNGKey(1), (T, 4))
    _, reference, _ = online.sequence_gradient("bptt", linear, lin_params, inputs, labels,
                                               cross_entropy)
    for rule in ("truncated", "ottt", "ostl", "rtrl"):
        def loss(p, rule=rule):
            return online.sequence_gradient(rule, linear, p, inputs, labels, cross_entropy)[0]

        assert max_relative_error(jax.jit(jax.grad(loss))(lin_params), reference) < 1e-5


def test_carry_streams_a_sequence_in_chunks():
    """Two chunks with the carry equal one window (state and loss) for a forward rule."""
    net, params, inputs, labels = _small()
    fn = jax.jit(lambda x, y, c: online.sequence_gradient("truncated", net, params, x, y,
                                                          cross_entropy, carry=c))
    rest = list(net.apply(params, inputs[:0])[0])
    whole = fn(inputs, labels, rest)
    first = fn(inputs[:6], labels[:6], rest)  # the two chunks share one compilation
    second = fn(inputs[6:], labels[6:], first[2])
    np.testing.assert_allclose(first[0] + second[0], whole[0], rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(second[2]), jax.tree_util.tree_leaves(whole[2])):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    for a, b, c in zip(jax.tree_util.tree_leaves(first[1]), jax.tree_util.tree_leaves(second[1]),
                       jax.tree_util.tree_leaves(whole[1])):
        np.testing.assert_allclose(a + b, c, rtol=1e-5, atol=1e-6)


def test_single_layer_network_without_serial():
    layer = LIF(3, **TWO_STATE)
    _, params = layer.init(jax.random.PRNGKey(0), (T, 4))
    params = jax.tree_util.tree_map(lambda a: a * 12.0, params)
    inputs = spiking_inputs(0, T, 4, 0.5, jnp.float32)
    labels = jnp.zeros((T,), jnp.int32)
    loss, grads, carry = online.sequence_gradient("ostl", layer, params, inputs, labels,
                                                  cross_entropy)
    _, ref, ref_carry = online.sequence_gradient("bptt", layer, params, inputs, labels,
                                                 cross_entropy)
    assert isinstance(grads, dict) and type(carry) is type(ref_carry)
    assert max_relative_error(grads, ref) < 1e-5


# ------------------------------------------------------------------------ silent networks


@pytest.mark.parametrize("rule", ["bptt", "truncated", "ottt", "ostl", "otpe",
                                  online.RTRL(window=5)])
def test_gradients_are_finite_for_a_silent_network(rule):
    """No spikes anywhere (zero weights): every rule still returns finite gradients. (Float64,
    shapes and rule objects as in ``test_exactness``: the compiled functions are shared.)"""
    with jax.enable_x64(True):
        net, n_in = build("feedforward")
        _, params = net.init(jax.random.PRNGKey(0), (T, n_in))
        params = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, jnp.float64), params)
        inputs = spiking_inputs(0, T, n_in, 0.5, jnp.float64)
        _, _, recording = net.apply(params, inputs)
        assert all(float(jnp.sum(r.spikes)) == 0 for r in recording)  # silent indeed
        loss, grads = gradient_fn(rule, "feedforward")(params, inputs, jnp.zeros((T,), int),
                                                       jnp.ones((T,)))
        assert np.isfinite(float(loss))
        for g in jax.tree_util.tree_leaves(grads):
            assert g.dtype == jnp.float64 and np.all(np.isfinite(np.asarray(g)))


# -------------------------------------------------------------------- memory flat in time


def _scan_carry_bytes(rule, T_):
    """Bytes carried by the time loop of ``sequence_gradient``, and the loop lengths."""
    net, params, _, _ = _small()
    inputs = jnp.ones((T_, 4))
    labels = jnp.zeros((T_,), jnp.int32)
    jaxpr = jax.make_jaxpr(
        lambda p, x, y: online.sequence_gradient(rule, net, p, x, y, cross_entropy)
    )(params, inputs, labels)
    scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
    carried = 0
    lengths = []
    for eqn in scans:
        n_consts, n_carry = eqn.params["num_consts"], eqn.params["num_carry"]
        avals = [v.aval for v in eqn.invars[n_consts:n_consts + n_carry]]
        carried += sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in avals)
        lengths.append(eqn.params["length"])
    return carried, lengths


@pytest.mark.parametrize("rule", [online.Truncated(window=5), online.Truncated(window=1),
                                  online.OTTT(window=5), online.OTTT(window=1),
                                  online.OSTL(window=5),
                                  online.OSTL(window=1), online.OTPE(window=5),
                                  online.OTPE(window=1), online.RTRL(window=5),
                                  online.RTRL(window=1)])
def test_memory_carried_through_time_does_not_grow_with_T(rule):
    short, short_loops = _scan_carry_bytes(rule, 20)
    long, long_loops = _scan_carry_bytes(rule, 60)
    assert short > 0 and short == long
    window = online.rules.window_of(online.get_rule(rule))
    # one loop over time (not unrolled): T / window iterations
    assert short_loops == [20 // window] and long_loops == [60 // window]


def test_bptt_memory_grows_with_T():
    """The reference keeps the window: its compiled temporary memory grows with T, while the
    exact forward rule's does not."""
    net, params, _, _ = _small()

    def temp_bytes(rule, T_):
        inputs, labels = jnp.ones((T_, 4)), jnp.zeros((T_,), jnp.int32)
        f = jax.jit(lambda p, x, y: online.sequence_gradient(rule, net, p, x, y, cross_entropy))
        return f.lower(params, inputs, labels).compile().memory_analysis().temp_size_in_bytes

    bptt = temp_bytes("bptt", 50), temp_bytes("bptt", 500)
    rtrl = temp_bytes(online.RTRL(window=5), 50), temp_bytes(online.RTRL(window=5), 500)
    assert bptt[1] > 5 * bptt[0]
    assert rtrl[1] == rtrl[0]
