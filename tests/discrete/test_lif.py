"""LIF, LI and RecurrentLIF: float64 reference, carry chunking, adjoint vs autodiff gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn
from jaxsnn.discrete import LI, LIF, LIFRecording, LIFState, RecurrentLIF, RecurrentLIFState
from jaxsnn.discrete import decay_factors, lif_dynamics, surrogate
from jaxsnn.testing.reference import simulate_discrete

NEURON = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)


def _inputs(key, T, n, p=0.4):
    return (jax.random.uniform(jax.random.PRNGKey(key), (T, n)) < p).astype(jnp.float64)


@pytest.mark.parametrize("reset,v_reset,v_leak", [("subtract", 0.0, 0.0), ("hard", -0.3, 0.2)])
def test_lif_matches_float64_reference(x64, reset, v_reset, v_leak):
    kwargs = dict(NEURON, v_th=1.1, v_reset=v_reset, v_leak=v_leak, reset=reset)
    layer = LIF(6, **kwargs, weight_scale=8.0, record_membrane=True)
    shape, params = layer.init(jax.random.PRNGKey(0), (40, 4))
    assert shape == (40, 6) and params["weight"].dtype == jnp.float64
    x = _inputs(1, 40, 4)
    state, spikes, rec = layer.apply(params, x)
    want = simulate_discrete(np.asarray(params["weight"]), np.asarray(x), **kwargs)
    assert 0 < want["spikes"].sum() < want["spikes"].size  # the comparison is not vacuous
    np.testing.assert_array_equal(np.asarray(spikes), want["spikes"])
    np.testing.assert_allclose(np.asarray(rec.v), want["v"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(state.v), want["v"][-1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(state.current), want["current"][-1], rtol=1e-12, atol=1e-12
    )
    assert isinstance(rec, LIFRecording) and isinstance(state, LIFState)


def test_li_matches_float64_reference(x64):
    layer = LI(3, **NEURON, v_leak=0.25)
    _, params = layer.init(jax.random.PRNGKey(2), (30, 5))
    x = _inputs(3, 30, 5)
    state, v, rec = layer.apply(params, x)
    want = simulate_discrete(
        np.asarray(params["weight"]), np.asarray(x), **NEURON, v_leak=0.25, readout=True
    )
    np.testing.assert_allclose(np.asarray(v), want["v"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(rec.v), want["v"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        np.asarray(state.current), want["current"][-1], rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("reset", ["subtract", "hard"])
def test_recurrent_lif_matches_float64_reference(x64, reset):
    layer = RecurrentLIF(
        5, **NEURON, reset=reset, weight_scale=8.0, recurrent_scale=3.0, record_membrane=True
    )
    _, params = layer.init(jax.random.PRNGKey(4), (40, 3))
    x = _inputs(5, 40, 3)
    state, spikes, rec = layer.apply(params, x)
    want = simulate_discrete(
        np.asarray(params["weight"]),
        np.asarray(x),
        **NEURON,
        reset=reset,
        recurrent_weight=np.asarray(params["recurrent_weight"]),
    )
    assert want["spikes"].sum() > 0
    np.testing.assert_array_equal(np.asarray(spikes), want["spikes"])
    np.testing.assert_allclose(np.asarray(rec.v), want["v"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(state.spikes), want["spikes"][-1])
    assert isinstance(state, RecurrentLIFState)
    # The recurrent weights matter: without them the spikes differ.
    alone = simulate_discrete(np.asarray(params["weight"]), np.asarray(x), **NEURON, reset=reset)
    assert not np.array_equal(alone["spikes"], want["spikes"])


@pytest.mark.parametrize(
    "layer",
    [
        LIF(4, **NEURON, weight_scale=8.0, record_membrane=True),
        LIF(4, **NEURON, reset="hard", weight_scale=8.0, backward="autodiff"),
        LI(4, **NEURON),
        RecurrentLIF(4, **NEURON, weight_scale=8.0, recurrent_scale=3.0),
    ],
    ids=["LIF", "LIF-hard-autodiff", "LI", "RecurrentLIF"],
)
def test_two_chunks_equal_one_window_exactly(x64, layer):
    _, params = layer.init(jax.random.PRNGKey(6), (24, 3))
    x = _inputs(7, 24, 3)
    carry_all, out_all, rec_all = layer.apply(params, x)
    carry_1, out_1, rec_1 = layer.apply(params, x[:12])
    carry_2, out_2, rec_2 = layer.apply(params, x[12:], carry=carry_1)
    assert float(jnp.sum(jnp.abs(out_all))) > 0
    # Exact equality: the chunked run performs the same float64 operations in the same order.
    np.testing.assert_array_equal(np.concatenate([out_1, out_2]), np.asarray(out_all))
    for a, b in zip(jax.tree_util.tree_leaves(carry_2), jax.tree_util.tree_leaves(carry_all)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_chunking_through_serial(x64):
    net = jaxsnn.serial(
        LIF(5, **NEURON, weight_scale=8.0),
        jaxsnn.serial(RecurrentLIF(4, **NEURON, weight_scale=6.0), LI(2, **NEURON)),
    )
    _, params = net.init(jax.random.PRNGKey(8), (20, 3))
    x = _inputs(9, 20, 3)
    carry_all, out_all, _ = net.apply(params, x)
    carry_1, out_1, _ = net.apply(params, x[:10])
    carry_2, out_2, _ = net.apply(params, x[10:], carry=carry_1)
    np.testing.assert_array_equal(np.concatenate([out_1, out_2]), np.asarray(out_all))
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), carry_2, carry_all
    )


def _loss_of(layer_kwargs, record):
    def objective(weight, carry, x):
        layer = LIF(3, **layer_kwargs, record_membrane=record)
        state, spikes, rec = layer.apply({"weight": weight}, x, carry=carry)
        coefficients = jnp.cos(jnp.arange(spikes.size, dtype=spikes.dtype)).reshape(spikes.shape)
        value = (
            jnp.sum(coefficients * spikes)
            + 0.3 * jnp.sum(state.v**2)
            - 0.2 * jnp.sum(state.current)
        )
        if record:
            value = value + jnp.sum(jnp.sin(rec.v))
        return value

    return objective


@pytest.mark.parametrize(
    "reset,record,surrogate_name",
    [
        ("subtract", False, "superspike"),
        ("hard", True, "triangle"),
        ("subtract", True, "sigmoid"),
        ("hard", False, "arctan"),
    ],
)
def test_adjoint_gradient_equals_autodiff(x64, reset, record, surrogate_name):
    kwargs = dict(NEURON, v_reset=-0.1, v_leak=0.05, reset=reset, surrogate=surrogate_name)
    weight = jax.random.normal(jax.random.PRNGKey(10), (4, 3)) * 3.0
    x = _inputs(11, 30, 4)
    carry = LIFState(jnp.array([0.3, -0.2, 0.9]), jnp.array([0.5, 0.0, 1.0]))
    adjoint = jax.grad(_loss_of(dict(kwargs, backward="adjoint"), record), argnums=(0, 1, 2))(
        weight, carry, x
    )
    autodiff = jax.grad(_loss_of(dict(kwargs, backward="autodiff"), record), argnums=(0, 1, 2))(
        weight, carry, x
    )
    assert float(jnp.max(jnp.abs(adjoint[0]))) > 0
    # Same maths, different summation order: agreement to float64 round-off.
    jax.tree_util.tree_map(
        lambda a, b: np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12
        ),
        adjoint,
        autodiff,
    )


def test_li_gradient_matches_finite_differences(x64):
    """LI is linear in its weights: the exact gradient must match central differences."""
    layer = LI(2, **NEURON, v_leak=0.1)
    _, params = layer.init(jax.random.PRNGKey(12), (15, 3))
    x = _inputs(13, 15, 3)

    def objective(weight):
        v = layer.apply({"weight": weight}, x)[1]
        return jnp.sum(jnp.sin(v) * jnp.arange(v.size, dtype=v.dtype).reshape(v.shape))

    grad = np.asarray(jax.grad(objective)(params["weight"]))
    objective = jax.jit(objective)
    eps = 1e-6
    w = np.asarray(params["weight"])
    fd = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        step = np.zeros_like(w)
        step[index] = eps
        fd[index] = (objective(jnp.asarray(w + step)) - objective(jnp.asarray(w - step))) / (
            2 * eps
        )
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)


def test_lif_dynamics_function(x64):
    currents = jax.random.normal(jax.random.PRNGKey(14), (20, 3)) * 0.8
    spikes, trace, v_last, i_last = lif_dynamics(
        currents, jnp.zeros(3), jnp.zeros(3), **NEURON, record_membrane=True
    )
    a_syn, a_mem = decay_factors(**NEURON)
    assert a_syn == pytest.approx(math.exp(-0.2)) and a_mem == pytest.approx(math.exp(-0.1))
    v = i = np.zeros(3)
    for t in range(20):
        i = a_syn * i + np.asarray(currents[t])
        v = a_mem * v + (1 - a_mem) * i
        z = (v > 1.0).astype(float)
        v = v - z
        np.testing.assert_array_equal(np.asarray(spikes[t]), z)
        np.testing.assert_allclose(np.asarray(trace[t]), v, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(v_last), v, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(np.asarray(i_last), i, rtol=1e-13, atol=1e-14)
    assert trace is not None
    assert lif_dynamics(currents, jnp.zeros(3), jnp.zeros(3), **NEURON)[1] is None


def test_autodiff_backward_supports_forward_mode(x64):
    layer = LIF(2, **NEURON, backward="autodiff", weight_scale=8.0)
    _, params = layer.init(jax.random.PRNGKey(15), (10, 2))
    x = _inputs(16, 10, 2)
    f = lambda w: jnp.sum(layer.apply({"weight": w}, x)[1])  # noqa: E731
    forward = jax.jit(jax.jacfwd(f))(params["weight"])
    reverse = jax.grad(f)(params["weight"])
    np.testing.assert_allclose(np.asarray(forward), np.asarray(reverse), rtol=1e-12)


def test_project_false_equals_dense_then_lif(x64):
    from jaxsnn.discrete import Dense

    fused = LIF(4, **NEURON, weight_scale=8.0, weight_mean=2.0)
    split = jaxsnn.serial(Dense(4), LIF(4, **NEURON, project=False))
    _, params = fused.init(jax.random.PRNGKey(17), (25, 3))
    x = _inputs(18, 25, 3)
    _, want, _ = fused.apply(params, x)
    _, got, _ = split.apply([{"weight": params["weight"]}, {}], x)
    assert float(jnp.sum(want)) > 0
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_project_false_accepts_feature_maps():
    layer = LIF((2, 3), **NEURON, project=False, record_membrane=True)
    shape, params = layer.init(jax.random.PRNGKey(0), (7, 2, 3))
    assert shape == (7, 2, 3) and params == {}
    state, spikes, rec = layer.apply(params, jnp.full((7, 2, 3), 0.9, jnp.float32))
    assert spikes.shape == (7, 2, 3) and state.v.shape == (2, 3) and rec.v.shape == (7, 2, 3)
    assert layer.name == "LIF((2, 3))"


def test_no_input_stays_at_rest_and_layer_names():
    for layer, name in (
        (LIF(3, **NEURON, v_leak=0.2), "LIF(3)"),
        (LI(3, **NEURON, v_leak=0.2), "LI(3)"),
        (RecurrentLIF(3, **NEURON, v_leak=0.2), "RecurrentLIF(3)"),
    ):
        assert layer.name == name
        _, params = layer.init(jax.random.PRNGKey(1), (5, 2))
        state, out, _ = layer.apply(params, jnp.zeros((5, 2), jnp.float32))
        np.testing.assert_allclose(np.asarray(state.v), 0.2, rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(state.current), 0.0)
        if name != "LI(3)":
            np.testing.assert_array_equal(np.asarray(out), 0.0)


def _gaussian_surrogate(x):
    return 0.7 * jnp.exp(-4.0 * x**2)


@pytest.mark.parametrize("backward", ["adjoint", "autodiff"])
@pytest.mark.parametrize(
    "spike_fn,derivative",
    [
        (surrogate.arctan(3.0), lambda x: 1.5 / (1.0 + (math.pi * 1.5 * x) ** 2)),
        (surrogate.spike_function(_gaussian_surrogate), lambda x: 0.7 * np.exp(-4.0 * x**2)),
    ],
    ids=["arctan", "user-defined"],
)
def test_custom_surrogate_and_weight_init(x64, spike_fn, derivative, backward):
    calls = []

    def init(key, shape, dtype):
        calls.append(shape)
        return jnp.full(shape, 0.5, dtype)

    layer = LIF(5, **NEURON, weight_init=init, surrogate=spike_fn, backward=backward)
    _, params = layer.init(jax.random.PRNGKey(0), (1, 3))
    assert calls == [(3, 5)]
    np.testing.assert_array_equal(np.asarray(params["weight"]), 0.5)
    # One step from rest: u = g x @ W and z = H(u - v_th), so
    # d sum_j c_j z_j / d W_ij = c_j * spike'(u_j - v_th) * g * x_i with the surrogate spike'.
    x = np.array([[1.0, 0.5, -0.25]])
    weight = np.array(
        [[8.0, 9.0, 10.0, 11.0, 12.0], [2.0, 2.0, 2.0, 2.0, -2.0], [4.0, 0.0, -3.2, 2.0, -4.0]]
    )
    coefficients = np.array([1.0, -2.0, 0.5, 3.0, 1.5])
    gain = 1.0 - decay_factors(**NEURON)[1]
    u = gain * (x @ weight)[0]
    assert np.all(np.abs(u - 1.0) < 0.3) and np.any(u > 1.0) and np.any(u < 1.0)
    got = jax.grad(lambda w: jnp.sum(coefficients * layer.apply({"weight": w}, x)[1]))(
        jnp.asarray(weight)
    )
    want = np.outer(x[0], coefficients * derivative(u - 1.0) * gain)
    assert np.count_nonzero(want) == want.size
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-15)
    mean_layer = LIF(2, **NEURON, weight_mean=2.0, weight_scale=0.0)
    np.testing.assert_array_equal(
        np.asarray(mean_layer.init(jax.random.PRNGKey(0), (4, 3))[1]["weight"]), 2.0
    )


def test_unroll_does_not_change_results(x64):
    x = _inputs(19, 23, 3)
    base = LIF(4, **NEURON, weight_scale=8.0)
    _, params = base.init(jax.random.PRNGKey(20), (23, 3))
    want = base.apply(params, x)[1]
    got = LIF(4, **NEURON, weight_scale=8.0, unroll=5).apply(params, x)[1]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    g1 = jax.grad(lambda w: jnp.sum(base.apply({"weight": w}, x)[1] * x[:, :1]))(params["weight"])
    g2 = jax.grad(
        lambda w: jnp.sum(
            LIF(4, **NEURON, weight_scale=8.0, unroll=5).apply({"weight": w}, x)[1] * x[:, :1]
        )
    )(params["weight"])
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-12, atol=1e-14)
