"""Tests of ``serial`` and the stax adapter, with small stand-in layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

import jaxsnn
from jaxsnn import Layer, serial, stateless


def Accumulate(size):
    """A stateful toy layer: running sum over time of a projection, carried across calls."""

    def init(rng, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"expects (time, features), got {input_shape}")
        return (input_shape[0], size), jax.random.normal(rng, (input_shape[-1], size))

    def apply(params, inputs, external=None, carry=None):
        start = jnp.zeros(size) if carry is None else carry
        total = start + jnp.cumsum(inputs @ params, axis=0)
        outputs = total if external is None else external
        return total[-1], outputs, {"last": total[-1]}

    return jaxsnn.named_layer(init, apply, f"Accumulate({size})")


def test_layer_unpacks_like_stax():
    layer = Accumulate(3)
    init, apply = layer
    assert layer.name == "Accumulate(3)" and layer.leaves is None
    # The name lives in the Layer value, not on the function: a new pair has the factory's name.
    assert Layer(init, apply).name == "Accumulate"
    assert jaxsnn.layer_name(stax.Dense(2)) == "Dense"


def test_metadata_lives_in_the_layer_value_and_survives_wrapping():
    import functools

    inner = Accumulate(2)
    net = serial(Accumulate(3), serial(inner, Accumulate(2)))
    assert net.leaves == 3 and jaxsnn.leaf_count(net) == 3
    # Wrapping the functions (jit, partial) and putting them back keeps the leaf count and name.
    wrapped = net._replace(init=functools.partial(net.init), apply=jax.jit(net.apply))
    assert wrapped.leaves == 3 and wrapped.name == net.name
    outer = serial(wrapped, Accumulate(1))
    assert outer.leaves == 4
    _, params = outer.init(jax.random.PRNGKey(0), (5, 2))
    assert len(params) == 4
    # Naming a layer built from another layer's functions must not rename the original.
    renamed = jaxsnn.named_layer(inner.init, inner.apply, "Other")
    assert renamed.name == "Other" and inner.name == "Accumulate(2)"
    with pytest.raises(ValueError, match="leaves must be None"):
        Layer(inner.init, inner.apply, leaves=0)
    with pytest.raises(ValueError, match="unknown fields"):
        inner._replace(name="x")


def test_serial_params_are_flat_and_nesting_is_invisible():
    flat = serial(Accumulate(4), stateless(stax.Relu), Accumulate(3), Accumulate(2))
    nested = serial(Accumulate(4), serial(stateless(stax.Relu), serial(Accumulate(3))), Accumulate(2))
    assert jaxsnn.leaf_count(flat) == jaxsnn.leaf_count(nested) == 4
    rng = jax.random.PRNGKey(0)
    shape_flat, params_flat = flat.init(rng, (6, 5))
    shape_nested, params_nested = nested.init(rng, (6, 5))
    assert shape_flat == shape_nested == (6, 2)
    assert len(params_flat) == len(params_nested) == 4
    inputs = jax.random.normal(rng, (6, 5))
    carry_flat, out_flat, rec_flat = flat.apply(params_flat, inputs)
    carry_nested, out_nested, rec_nested = nested.apply(params_flat, inputs)
    np.testing.assert_array_equal(out_flat, out_nested)
    assert len(carry_flat) == len(carry_nested) == len(rec_flat) == len(rec_nested) == 4
    assert carry_flat[1] is None and rec_nested[1] is None


def test_serial_threads_carry_for_chunked_runs():
    net = serial(Accumulate(3), serial(Accumulate(2)))
    _, params = net.init(jax.random.PRNGKey(1), (8, 4))
    inputs = jax.random.normal(jax.random.PRNGKey(2), (8, 4))
    _, whole, _ = net.apply(params, inputs)
    carry, first, _ = net.apply(params, inputs[:4])
    _, second, _ = net.apply(params, inputs[4:], carry=carry)
    np.testing.assert_allclose(jnp.concatenate([first, second]), whole, rtol=1e-5, atol=1e-5)


def test_serial_routes_external_to_the_right_leaf():
    net = serial(Accumulate(3), serial(Accumulate(2), Accumulate(2)))
    _, params = net.init(jax.random.PRNGKey(1), (5, 4))
    inputs = jnp.ones((5, 4))
    injected = jnp.full((5, 2), 7.0)
    _, outputs, _ = net.apply(params, inputs, external=[None, injected, None])
    expected = jnp.cumsum(injected @ params[2], axis=0)
    np.testing.assert_allclose(outputs, expected, rtol=1e-6)


def test_serial_under_jit_vmap_grad():
    net = serial(stateless(stax.Dense(4)), Accumulate(3), stateless(stax.Tanh))
    _, params = net.init(jax.random.PRNGKey(0), (6, 2))
    batch = jax.random.normal(jax.random.PRNGKey(3), (5, 6, 2))

    def loss(params, batch):
        _, outputs, _ = jax.vmap(lambda x: net.apply(params, x))(batch)
        return jnp.sum(outputs**2)

    value, grads = jax.jit(jax.value_and_grad(loss))(params, batch)
    assert np.isfinite(value)
    assert len(grads) == 3 and grads[2] == ()
    loop = sum(jnp.sum(net.apply(params, x)[1] ** 2) for x in batch)
    np.testing.assert_allclose(value, loop, rtol=1e-5)


def SumOverTime():
    """A stax-style stateless layer that drops the time axis."""
    return (lambda rng, shape: (tuple(shape[1:]), ()), lambda params, x, **kwargs: x.sum(0))


def test_init_shape_error_names_layer_and_shape():
    net = serial(Accumulate(3), serial(stateless(SumOverTime()), Accumulate(2)))
    message = r"layer 1\.1 \(Accumulate\(2\)\) cannot take input shape \(3,\): expects \(time"
    with pytest.raises(ValueError, match=message):
        net.init(jax.random.PRNGKey(0), (6, 4))
    with pytest.raises(ValueError, match=r"layer 0 \(Accumulate\(3\)\) cannot take input shape \(6, 4, 3\)"):
        net.init(jax.random.PRNGKey(0), (6, 4, 3))


def test_serial_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least one layer"):
        serial()
    with pytest.raises(TypeError, match="argument 1 must be an"):
        serial(Accumulate(2), "not a layer")
    net = serial(Accumulate(2), Accumulate(2))
    _, params = net.init(jax.random.PRNGKey(0), (3, 2))
    with pytest.raises(ValueError, match="params has 1 entries but the network has 2"):
        net.apply(params[:1], jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="carry has 3 entries"):
        net.apply(params, jnp.ones((3, 2)), carry=[None] * 3)
    with pytest.raises(TypeError, match="external must be None or a list"):
        net.apply(params, jnp.ones((3, 2)), external=jnp.ones(2))


def test_stateless_adapter_refuses_external():
    init, apply = stateless(stax.Relu)
    _, params = init(jax.random.PRNGKey(0), (2, 3))
    with pytest.raises(ValueError, match="takes no external data"):
        apply(params, jnp.ones((2, 3)), external=jnp.ones(3))


# ----------------------------------------------------------------------------- combinators
from hypothesis import assume, example, given, settings  # noqa: E402

from jaxsnn import Spikes, fan_in_concat, fan_in_sum, fan_out, identity, parallel, residual  # noqa: E402
from jaxsnn.discrete import LI, LIF  # noqa: E402
from jaxsnn.event import LIFParameters  # noqa: E402
from jaxsnn.testing import properties, strategies  # noqa: E402
from jaxsnn.testing.reference import simulate_discrete, simulate_event  # noqa: E402

KW = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)
T, N_IN = 10, 3

# x ─ fan_out(2) ─┬─ LIF(4) ───────────┬─ fan_in_concat ─ LI(2)
#                 └─ residual(LIF(3)) ─┘
BRANCHES = serial(
    fan_out(2),
    parallel(LIF(4, **KW), residual(LIF(N_IN, **KW))),
    fan_in_concat(),
    LI(2, **KW),
)
BRANCHES_APPLY = jax.jit(BRANCHES.apply)


def branches_reference(params, x):
    """The same network by explicit Python loops over time (float64)."""
    a = simulate_discrete(params[1]["weight"], x, **KW)["spikes"]
    b = simulate_discrete(params[2]["weight"], x, **KW)["spikes"] + x
    return simulate_discrete(params[4]["weight"], np.concatenate([a, b], axis=1), readout=True, **KW)["v"], a, b


@settings(max_examples=6)
@given(
    x=strategies.dense_inputs(T, N_IN, dtype=np.float64),
    w_a=strategies.weights((N_IN, 4), low=-1.0, high=4.0),
    w_b=strategies.weights((N_IN, N_IN), low=-1.0, high=4.0),
    w_out=strategies.weights((4 + N_IN, 2)),
)
@example(x=np.ones((T, N_IN)), w_a=np.full((N_IN, 4), 2.0), w_b=np.full((N_IN, N_IN), 2.0), w_out=np.ones((7, 2)))
def test_discrete_branches_and_residual_match_python_loop(x, w_a, w_b, w_out):
    assert BRANCHES.leaves == 5  # fan_out, LIF, LIF (residual adds no leaf), fan_in_concat, LI
    with jax.enable_x64(True):
        params = [(), {"weight": jnp.asarray(w_a)}, {"weight": jnp.asarray(w_b)}, (), {"weight": jnp.asarray(w_out)}]
        carry, out, recording = BRANCHES_APPLY(params, jnp.asarray(x))
        want, a, b = branches_reference(params, x)
        assume(a.sum() > 0 and b.sum() > x.sum())
        np.testing.assert_array_equal(np.asarray(recording[1].spikes), a)
        np.testing.assert_array_equal(np.asarray(recording[2].spikes) + x, b)
        np.testing.assert_allclose(np.asarray(out), want, rtol=1e-12, atol=1e-12)
        assert carry[0] is None and carry[3] is None and recording[0] is None and recording[3] is None


def test_combinators_chunked_jit_vmap_and_exact_gradients():
    rng = np.random.default_rng(0)
    params = [(), {"weight": jnp.asarray(rng.uniform(-1, 4, (N_IN, 4)), jnp.float32)},
              {"weight": jnp.asarray(rng.uniform(-1, 4, (N_IN, N_IN)), jnp.float32)}, (),
              {"weight": jnp.asarray(rng.uniform(-1, 1, (7, 2)), jnp.float32)}]
    x = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (T, N_IN)), np.float32)
    _, _, recording = BRANCHES.apply(params, jnp.asarray(x))
    assert float(recording[1].spikes.sum()) > 0 and float(recording[2].spikes.sum()) > 0
    properties.check_chunked_equals_whole(BRANCHES_APPLY, params, x, T // 2)
    properties.check_jit_equals_eager(BRANCHES, params, jnp.asarray(x))
    batch = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(2), 0.5, (2, T, N_IN)), np.float32)
    properties.check_vmap_equals_loop(BRANCHES_APPLY, params, jnp.asarray(batch))
    properties.check_causality(BRANCHES_APPLY, params, x, 5)
    # Exact path (no threshold): LI branches summed, with a skip; FD from the NumPy reference.
    with jax.enable_x64(True):
        net = serial(fan_out(2), parallel(LI(3, **KW), residual(LI(N_IN, **KW))), fan_in_sum())
        _, p = net.init(jax.random.PRNGKey(0), (T, N_IN))
        xs = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (T, N_IN)))
        c = np.cos(np.arange(T * 3)).reshape(T, 3)
        grads = jax.grad(lambda p: jnp.sum(c * net.apply(p, jnp.asarray(xs))[1]))(p)

    def reference(w1, w2):
        y1 = simulate_discrete(w1, xs, readout=True, **KW)["v"]
        y2 = simulate_discrete(w2, xs, readout=True, **KW)["v"] + xs
        return float(np.sum(c * (y1 + y2)))

    w1, w2 = np.asarray(p[1]["weight"]), np.asarray(p[2]["weight"])
    for which, (w, g) in enumerate(((w1, grads[1]["weight"]), (w2, grads[2]["weight"]))):
        for index in np.ndindex(*w.shape):
            plus, minus = w.copy(), w.copy()
            plus[index] += 1e-6
            minus[index] -= 1e-6
            fd = ((reference(plus, w2) - reference(minus, w2)) if which == 0
                  else (reference(w1, plus) - reference(w1, minus))) / 2e-6
            assert abs(float(g[index]) - fd) <= 1e-8 + 1e-6 * abs(fd), (which, index)


def test_parallel_flat_order_and_external_routing():
    net = serial(fan_out(2), parallel(Accumulate(3), serial(Accumulate(2), Accumulate(2))), fan_in_concat())
    assert net.leaves == 5
    _, params = net.init(jax.random.PRNGKey(0), (5, 4))
    assert params[0] == () and params[1].shape == (4, 3) and params[2].shape == (4, 2) and params[3].shape == (2, 2)
    injected = jnp.full((5, 2), 7.0)
    carry, out, recording = net.apply(params, jnp.ones((5, 4)), external=[None, None, injected, None, None])
    np.testing.assert_allclose(out[:, 3:], jnp.cumsum(injected @ params[3], axis=0), rtol=1e-6)
    assert out.shape == (5, 5) and len(carry) == len(recording) == 5
    # parallel on its own: a tuple in, a tuple out; nesting inside parallel keeps the flat order
    par = parallel(Accumulate(1), parallel(Accumulate(2), identity()))
    shapes, p = par.init(jax.random.PRNGKey(1), ((5, 4), ((5, 3), (5, 2))))
    assert shapes == ((5, 1), ((5, 2), (5, 2))) and len(p) == 3 and p[2] == ()
    _, (y0, (y1, y2)), _ = par.apply(p, (jnp.ones((5, 4)), (jnp.ones((5, 3)), jnp.zeros((5, 2)))))
    assert y0.shape == (5, 1) and y1.shape == (5, 2) and float(jnp.abs(y2).sum()) == 0.0


def test_combinator_errors():
    with pytest.raises(ValueError, match=r"fan_out: n must be an int >= 1"):
        fan_out(0)
    with pytest.raises(ValueError, match="parallel needs at least one branch"):
        parallel()
    with pytest.raises(TypeError, match=r"parallel: argument 1 must be an \(init, apply\) pair"):
        parallel(Accumulate(2), 3)
    par = parallel(Accumulate(2), Accumulate(2))
    with pytest.raises(ValueError, match=r"parallel takes a tuple of 2 input shapes"):
        par.init(jax.random.PRNGKey(0), (5, 3))
    _, p = par.init(jax.random.PRNGKey(0), ((5, 3), (5, 3)))
    with pytest.raises(ValueError, match=r"parallel takes a tuple of 2 inputs \(one per branch, e.g. from fan_out\), got tuple of 3"):
        par.apply(p, (jnp.ones((5, 3)),) * 3)
    with pytest.raises(ValueError, match=r"fan_in_sum: branch 1 has shape \(5, 2\) but branch 0 has \(5, 3\)"):
        fan_in_sum().init(jax.random.PRNGKey(0), ((5, 3), (5, 2)))
    with pytest.raises(ValueError, match=r"fan_in_concat: branch 1 has shape \(4, 2\) but branch 0 has \(5, 3\)"):
        fan_in_concat().init(jax.random.PRNGKey(0), ((5, 3), (4, 2)))
    with pytest.raises(ValueError, match=r"fan_in_concat: sizes \(3, 3\) do not match the branches' shapes"):
        fan_in_concat(sizes=(3, 3)).init(jax.random.PRNGKey(0), ((3,), (2,)))
    spikes = jaxsnn.spikes.from_lists([0.1], [0], capacity=2, n_neurons=2)
    with pytest.raises(ValueError, match=r"fan_in_concat: Spikes carry no neuron count, so concatenating them needs sizes"):
        fan_in_concat().apply((), (spikes, spikes))
    with pytest.raises(ValueError, match=r"fan_in_sum: cannot merge Spikes with dense values"):
        fan_in_sum().apply((), (spikes, jnp.ones(2)))
    with pytest.raises(ValueError, match=r"residual: merge must be one of"):
        residual(Accumulate(2), merge="max")
    with pytest.raises(ValueError, match=r"residual\(Accumulate\(2\)\): the layer's output shape \(5, 2\) cannot be merged \(sum\) with its input shape \(5, 3\)"):
        residual(Accumulate(2)).init(jax.random.PRNGKey(0), (5, 3))
    with pytest.raises(ValueError, match=r"identity is a wiring layer and takes no external data"):
        identity().apply((), jnp.ones(2), external=jnp.ones(2))
    # A failing branch is named by its position, through every level of nesting.
    net = serial(Accumulate(3), fan_out(2), parallel(Accumulate(2), serial(stateless(SumOverTime()), Accumulate(2))))
    with pytest.raises(ValueError, match=r"serial: layer 2\.1\.1 \(Accumulate\(2\)\) cannot take input shape \(3,\)"):
        net.init(jax.random.PRNGKey(0), (6, 4))


# ----------------------------------------------------------------------------- event combinators
T_MAX = 0.03
EVENT_KW = dict(tau_syn=5e-3, tau_mem=1e-2, t_max=T_MAX)
NEURON = LIFParameters(tau_syn=5e-3, tau_mem=1e-2)


def event_branches(t_max=T_MAX):
    kw = dict(tau_syn=5e-3, tau_mem=1e-2, t_max=t_max)
    # spikes ─ fan_out(2) ─┬─ LIF(3) ─────────────────┬─ fan_in_concat(3, 3) ─ LIF(2)
    #                      └─ residual(LIF(3), sum) ──┘      (input and LIF spikes united)
    return serial(
        fan_out(2),
        parallel(jaxsnn.event.LIF(3, capacity=12, **kw), residual(jaxsnn.event.LIF(N_IN, capacity=12, **kw))),
        fan_in_concat(sizes=(3, N_IN)),
        jaxsnn.event.LIF(2, capacity=12, **kw),
    )


EVENT_BRANCHES = event_branches()
EVENT_APPLY = jax.jit(EVENT_BRANCHES.apply)


def event_branches_reference(params, spikes):
    t_in, i_in = np.asarray(spikes.time, np.float64), np.asarray(spikes.idx)
    a_t, a_i = simulate_event(params[1]["weight"], t_in, i_in, NEURON, T_MAX)
    b_t, b_i = simulate_event(params[2]["weight"], t_in, i_in, NEURON, T_MAX)
    keep = i_in >= 0
    b_t, b_i = np.concatenate([b_t, t_in[keep]]), np.concatenate([b_i, i_in[keep]])  # residual: union
    merged_t, merged_i = np.concatenate([a_t, b_t]), np.concatenate([a_i, b_i + 3])  # concat: offsets
    out = simulate_event(params[4]["weight"], merged_t, merged_i, NEURON, T_MAX)
    return out, (a_t, a_i), (merged_t, merged_i)


@settings(max_examples=6)
@given(
    spikes=strategies.spikes(N_IN, 5, T_MAX * 0.8, capacity=5, dtype=np.float64),
    w_a=strategies.weights((N_IN, 3), low=-0.5, high=3.0),
    w_b=strategies.weights((N_IN, N_IN), low=-0.5, high=3.0),
    w_out=strategies.weights((3 + N_IN, 2), low=-0.5, high=2.0),
)
@example(spikes=jaxsnn.spikes.from_lists([0.001, 0.002, 0.002, 0.01], [0, 1, 2, 0], capacity=5, n_neurons=N_IN,
                                         dtype=np.float64),
         w_a=np.full((N_IN, 3), 2.0), w_b=np.full((N_IN, N_IN), 1.5), w_out=np.full((6, 2), 1.0))
def test_event_branches_match_float64_reference(spikes, w_a, w_b, w_out):
    with jax.enable_x64(True):
        params = [(), {"weight": jnp.asarray(w_a)}, {"weight": jnp.asarray(w_b)}, (), {"weight": jnp.asarray(w_out)}]
        _, out, recording = EVENT_APPLY(params, spikes)
        (want_t, want_i), (a_t, _), _ = event_branches_reference(params, spikes)
        assume(len(a_t) > 0 and len(want_t) > 0 and len(want_t) <= 12 and len(a_t) <= 12)
        assert not bool(recording[4].overflow)
        n = int(out.count())
        assert n == len(want_t)
        np.testing.assert_array_equal(np.asarray(out.idx[:n]), want_i)
        np.testing.assert_allclose(np.asarray(out.time[:n]), want_t, rtol=0, atol=1e-12 * T_MAX)


def test_event_merges_state_capacity_and_stay_sorted():
    a = jaxsnn.spikes.from_lists([0.002, 0.004], [1, 0], capacity=3, n_neurons=2)
    b = jaxsnn.spikes.from_lists([0.001, 0.004, 0.004], [2, 0, 1], capacity=4, n_neurons=3)
    _, concat, _ = fan_in_concat(sizes=(2, 3)).apply((), (a, b))
    assert concat.capacity == 7  # sum of the capacities: nothing is dropped
    jaxsnn.spikes.validate(concat, n_neurons=5)
    np.testing.assert_allclose(concat.time[:5], [0.001, 0.002, 0.004, 0.004, 0.004])
    np.testing.assert_array_equal(concat.idx, [4, 1, 0, 2, 3, -1, -1])  # ties in index order
    _, summed, _ = fan_in_sum().apply((), (b, a))
    assert summed.capacity == 7
    np.testing.assert_array_equal(summed.idx, [2, 1, 0, 0, 1, -1, -1])
    # Under jit/vmap/grad: the time gradient flows back through the merge to each input event.
    batch = Spikes(jnp.stack([a.time, a.time + 0.001]), jnp.stack([a.idx, a.idx]))
    merged = jax.jit(jax.vmap(lambda s: fan_in_concat(sizes=(2, 3)).apply((), (s, b))[1]))(batch)
    assert merged.time.shape == (2, 7)
    grad = jax.grad(lambda t: jnp.sum(jnp.where(
        jnp.isfinite(fan_in_concat(sizes=(2, 3)).apply((), (Spikes(t, a.idx), b))[1].time),
        fan_in_concat(sizes=(2, 3)).apply((), (Spikes(t, a.idx), b))[1].time * jnp.arange(7.0), 0.0)))(a.time)
    np.testing.assert_allclose(grad, [1.0, 2.0, 0.0])  # a's events sit in slots 1 and 2 (or 3)


def test_event_branches_properties_chunked_causality():
    with jax.enable_x64(True):
        params = [(), {"weight": jnp.full((N_IN, 3), 2.0)}, {"weight": jnp.full((N_IN, N_IN), 1.5)}, (),
                  {"weight": jnp.full((6, 2), 1.0)}]
        spikes = jaxsnn.spikes.from_lists([0.001, 0.002, 0.004, 0.012], [0, 1, 2, 0], capacity=5, n_neurons=N_IN,
                                          dtype=np.float64)
        _, out, _ = EVENT_APPLY(params, spikes)
        assert int(out.count()) > 0
        split = 0.007
        properties.check_chunked_equals_whole(jax.jit(event_branches(split).apply), params, spikes, split,
                                              second_layer=jax.jit(event_branches(T_MAX - split).apply),
                                              whole_layer=EVENT_APPLY)
        # output spikes at 6.5 ms and 8.7 ms lie before the split, the input at 12 ms after it
        assert properties.check_causality(EVENT_APPLY, params, spikes, 0.01) >= 4
