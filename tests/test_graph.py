"""Graphs with skip and feedback edges: against float64 references, serial, chunking, gradients, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from jax.example_libraries import stax

import jaxsnn
from jaxsnn import Spikes, serial, stateless
from jaxsnn.discrete import LI, LIF, Delay, Dense
from jaxsnn.event import LIFParameters
from jaxsnn.graph import Edge, GraphCarry, discrete_graph, event_graph, population
from jaxsnn.testing import properties, strategies
from jaxsnn.testing.reference_graph import simulate_discrete_graph, simulate_event_graph

KW = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)
T, N_IN = 12, 4


def count_scans(fn, *args, length=None):
    """Number of ``scan`` primitives (of ``length`` steps, if given) in the jaxpr of ``fn(*args)``."""

    def walk(jaxpr):
        total = 0
        for eqn in jaxpr.eqns:
            total += eqn.primitive.name == "scan" and (length is None or eqn.params["length"] == length)
            for value in eqn.params.values():
                inner = getattr(value, "jaxpr", None)
                if inner is not None:
                    total += walk(getattr(inner, "jaxpr", inner))
        return total

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


# ----------------------------------------------------------------------------- discrete
# input -> h1 -> h2 -> out, feedback h2 -> h1 (delay 1 by default) and out -> h2 (delay 3),
# a delayed skip h1 -> out (delay 2): one cycle {h1, h2, out}.
FEEDBACK_EDGES = [("input", "h1"), ("h1", "h2"), ("h2", "h1"), ("h2", "out"), ("h1", "out", 2), ("out", "h2", 3)]
SIZES = {"h1": 5, "h2": 4, "out": 3}


def feedback_graph():
    return discrete_graph(
        {"h1": LIF(5, **KW), "h2": LIF(4, **KW), "out": LI(3, **KW)}, FEEDBACK_EDGES, output="out"
    )


FEEDBACK_GRAPH = feedback_graph()
FEEDBACK_APPLY = jax.jit(FEEDBACK_GRAPH.apply)


def reference_outputs(params, x):
    specs = {name: dict(kind="lif" if name != "out" else "li", weight=np.asarray(p["weight"], np.float64), **KW)
             for name, p in zip(("h1", "h2", "out"), params)}
    resolved = [(s, d, (1 if (s, d) == ("h2", "h1") else 0) if len(e) == 2 else e[2])
                for e in FEEDBACK_EDGES for s, d in [e[:2]]]
    return simulate_discrete_graph(specs, resolved, x)


@settings(max_examples=10)
@given(
    x=strategies.dense_inputs(T, N_IN, dtype=np.float64),
    w1=strategies.weights((N_IN + 4, 5), low=-1.0, high=4.0),
    w2=strategies.weights((5 + 3, 4), low=-1.0, high=4.0),
    w3=strategies.weights((4 + 5, 3)),
)
@example(
    x=np.ones((T, N_IN)), w1=np.full((N_IN + 4, 5), 2.0), w2=np.full((8, 4), 3.0), w3=np.ones((9, 3))
)
def test_discrete_feedback_matches_python_loop(x, w1, w2, w3):
    with jax.enable_x64(True):
        params = [{"weight": jnp.asarray(w)} for w in (w1, w2, w3)]
        _, out, recording = FEEDBACK_APPLY(params, jnp.asarray(x))
        want = reference_outputs(params, x)
        assume(want["h1"].sum() > 0 and want["h2"].sum() > 0)  # compare something that spikes
        np.testing.assert_array_equal(np.asarray(recording[0].spikes), want["h1"])
        np.testing.assert_array_equal(np.asarray(recording[1].spikes), want["h2"])
        np.testing.assert_allclose(np.asarray(out), want["out"], rtol=1e-12, atol=1e-12)


def test_discrete_feedback_known_case_spikes_and_uses_feedback():
    """The feedback and delayed edges change the result (they are not silently dropped)."""
    with jax.enable_x64(True):
        x = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(7), 0.5, (T, N_IN)), np.float64)
        rng = np.random.default_rng(1)
        params = [{"weight": jnp.asarray(rng.uniform(-1, 4, shape))} for shape in ((N_IN + 4, 5), (8, 4), (9, 3))]
        _, out, recording = FEEDBACK_APPLY(params, jnp.asarray(x))
        assert float(recording[0].spikes.sum()) > 0 and float(recording[1].spikes.sum()) > 0
        muted = [{"weight": params[0]["weight"].at[N_IN:].set(0.0)}, {"weight": params[1]["weight"].at[5:].set(0.0)},
                 params[2]]
        _, out_muted, _ = FEEDBACK_APPLY(muted, jnp.asarray(x))
        assert float(jnp.max(jnp.abs(out - out_muted))) > 1e-3
        np.testing.assert_allclose(out, reference_outputs(params, x)["out"], rtol=1e-12, atol=1e-12)


def test_zero_feedback_equals_serial_bit_for_bit():
    n_in, n1, n2, steps = 40, 32, 24, 30
    graph = discrete_graph(
        {"h1": LIF(n1, **KW), "h2": LIF(n2, **KW), "out": LI(3, **KW)},
        [("input", "h1"), ("h1", "h2"), ("h2", "h1"), ("h2", "out")], output="out",
    )
    _, params = graph.init(jax.random.PRNGKey(0), (steps, n_in))
    assert [p["weight"].shape for p in params] == [(n_in + n2, n1), (n1, n2), (n2, 3)]
    params[0] = {"weight": (3.0 * params[0]["weight"]).at[n_in:].set(0.0)}  # feedback weights zero
    params[1] = {"weight": 3.0 * params[1]["weight"]}
    reference = serial(LIF(n1, **KW), LIF(n2, **KW), LI(3, **KW))
    serial_params = [{"weight": params[0]["weight"][:n_in]}, params[1], params[2]]
    x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (steps, n_in)).astype(jnp.float32)
    carry, out, recording = jax.jit(graph.apply)(params, x)
    carry_s, out_s, recording_s = jax.jit(reference.apply)(serial_params, x)
    assert float(recording[0].spikes.sum()) > 0 and float(recording[1].spikes.sum()) > 0
    np.testing.assert_array_equal(out, out_s)
    for got, want in zip(recording, recording_s):
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            np.testing.assert_array_equal(a, b)
    assert isinstance(carry[1], GraphCarry)  # h2's last output feeds h1 next step
    np.testing.assert_array_equal(carry[1].history[0], recording[1].spikes[-1])
    for got, want in zip([carry[0], carry[1].state, carry[2]], carry_s):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_feedforward_graph_runs_layer_by_layer_like_serial():
    """Without a cycle there is no step-wise loop: the same scans as serial, the same bits."""
    n_in, steps = 16, 20
    chain = discrete_graph({"a": Dense(32), "b": LIF(32, project=False, **KW), "c": LI(3, **KW)},
                           [("input", "a"), ("a", "b"), ("b", "c")], output="c")
    reference = serial(Dense(32), LIF(32, project=False, **KW), LI(3, **KW))
    _, params = chain.init(jax.random.PRNGKey(0), (steps, n_in))
    x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (steps, n_in)).astype(jnp.float32)
    params[0] = {"weight": 4 * params[0]["weight"]}
    assert count_scans(lambda p: chain.apply(p, x)[1], params) == count_scans(lambda p: reference.apply(p, x)[1], params) == 2
    assert count_scans(lambda p: chain.apply(p, x)[1], params, length=steps) == 2
    _, out, recording = chain.apply(params, x)
    assert float(recording[1].spikes.sum()) > 0
    np.testing.assert_array_equal(out, reference.apply(params, x)[1])
    # A cycle adds one step-wise scan over the window (steps 1..T-1; step 0 starts from the carry);
    # the node outside the cycle (c) still runs on the whole window.
    looped = discrete_graph({"a": Dense(32), "b": LIF(32, project=False, **KW), "c": LI(3, **KW)},
                            [("input", "a"), ("a", "b"), ("b", "c"), ("b", "a")], output="c")
    _, looped_params = looped.init(jax.random.PRNGKey(0), (steps, n_in))
    assert count_scans(lambda p: looped.apply(p, x)[1], looped_params, length=steps - 1) == 1
    assert count_scans(lambda p: looped.apply(p, x)[1], looped_params, length=steps) == 1


def test_skip_connection_graph_equals_hand_written_composition():
    n_in, steps = 6, 15
    graph = discrete_graph({"h1": LIF(8, **KW), "h2": LIF(8, **KW), "out": LI(2, **KW)},
                           [("input", "h1"), ("h1", "h2"), ("h2", "out"), ("h1", "out")], output="out",
                           merge={"out": "concat"})
    _, params = graph.init(jax.random.PRNGKey(2), (steps, n_in))
    params = [{"weight": 4 * p["weight"]} for p in params]
    x = jax.random.bernoulli(jax.random.PRNGKey(3), 0.5, (steps, n_in)).astype(jnp.float32)
    _, out, recording = graph.apply(params, x)
    _, s1, _ = LIF(8, **KW).apply(params[0], x)
    _, s2, _ = LIF(8, **KW).apply(params[1], s1)
    _, want, _ = LI(2, **KW).apply(params[2], jnp.concatenate([s2, s1], axis=-1))
    assert float(s1.sum()) > 0 and float(s2.sum()) > 0
    np.testing.assert_array_equal(out, want)


def test_edge_delay_equals_delay_node_and_sum_merge():
    steps, n_in = 14, 3
    with_edge = discrete_graph({"a": LIF(4, **KW), "b": LI(4, project=False, **KW)},
                               [("input", "a"), ("a", "b", 2)], output="b")
    with_node = discrete_graph({"a": LIF(4, **KW), "d": Delay(2), "b": LI(4, project=False, **KW)},
                               [("input", "a"), ("a", "d"), ("d", "b")], output="b")
    _, params = with_edge.init(jax.random.PRNGKey(0), (steps, n_in))
    params[0] = {"weight": 5 * params[0]["weight"]}
    x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.6, (steps, n_in)).astype(jnp.float32)
    carry, out, rec = with_edge.apply(params, x)
    _, out_node, _ = with_node.apply([params[0], {}, params[1]], x)
    assert float(rec[0].spikes.sum()) > 0
    np.testing.assert_array_equal(out, out_node)
    # sum merge: two edges into one node add up
    summed = discrete_graph({"a": Dense(5), "b": Dense(5), "c": stateless(stax.Identity)},
                            [("input", "a"), ("input", "b"), ("a", "c"), ("b", "c")], output="c", merge="sum")
    _, sp = summed.init(jax.random.PRNGKey(0), (steps, n_in))
    np.testing.assert_allclose(summed.apply(sp, x)[1], x @ sp[0]["weight"] + x @ sp[1]["weight"], rtol=1e-6)


def test_discrete_graph_chunked_equals_whole_jit_vmap():
    graph = FEEDBACK_GRAPH
    rng = np.random.default_rng(1)
    params = [{"weight": jnp.asarray(rng.uniform(-1, 4, shape), jnp.float32)} for shape in ((N_IN + 4, 5), (8, 4), (9, 3))]
    x = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(7), 0.5, (T, N_IN)), np.float32)
    _, _, recording = graph.apply(params, jnp.asarray(x))
    assert float(recording[0].spikes.sum()) > 0 and float(recording[1].spikes.sum()) > 0
    # jitted apply: one compilation per input length (T and T/2) serves every check
    properties.check_chunked_equals_whole(FEEDBACK_APPLY, params, x, T // 2)
    properties.check_jit_equals_eager(graph, params, jnp.asarray(x), rtol=0.0, atol=0.0)
    batch = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(6), 0.5, (2, T, N_IN)), np.float32)
    properties.check_vmap_equals_loop(FEEDBACK_APPLY, params, jnp.asarray(batch))
    properties.check_causality(FEEDBACK_APPLY, params, x, 6)
    properties.check_time_shift(FEEDBACK_APPLY, params, x, 3)


def test_discrete_feedback_gradients_match_float64_finite_differences_of_the_reference():
    """An exact (non-spiking) path: LI -> tanh -> LI with feedback; FD from the NumPy loop."""
    edges = [("input", "a"), ("a", "t"), ("t", "b"), ("b", "a"), ("t", "a", 2)]
    with jax.enable_x64(True):
        graph = discrete_graph({"a": LI(4, **KW), "t": stateless(stax.Tanh), "b": LI(3, **KW)}, edges, output="b")
        _, params = graph.init(jax.random.PRNGKey(0), (T, N_IN))
        params = [{"weight": 3 * params[0]["weight"]}, (), {"weight": 3 * params[2]["weight"]}]
        x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (T, N_IN)))
        coefficients = np.cos(np.arange(T * 3)).reshape(T, 3)

        def objective(p):
            return jnp.sum(coefficients * graph.apply(p, jnp.asarray(x))[1])

        grads = jax.jit(jax.grad(objective))(params)
        value = float(objective(params))

    resolved = [("input", "a", 0), ("a", "t", 0), ("t", "b", 0), ("b", "a", 1), ("t", "a", 2)]

    def reference(w_a, w_b):
        specs = {"a": dict(kind="li", weight=w_a, **KW), "t": dict(kind="tanh", size=4), "b": dict(kind="li", weight=w_b, **KW)}
        return float(np.sum(coefficients * simulate_discrete_graph(specs, resolved, x)["b"]))

    w_a, w_b = np.asarray(params[0]["weight"]), np.asarray(params[2]["weight"])
    assert abs(reference(w_a, w_b) - value) < 1e-12
    checked = 0
    for name, weight, grad in (("a", w_a, grads[0]["weight"]), ("b", w_b, grads[2]["weight"])):
        for index in np.ndindex(*weight.shape):
            h = 1e-6
            plus, minus = weight.copy(), weight.copy()
            plus[index] += h
            minus[index] -= h
            args = (plus, w_b) if name == "a" else (w_a, plus)
            args_m = (minus, w_b) if name == "a" else (w_a, minus)
            fd = (reference(*args) - reference(*args_m)) / (2 * h)
            assert abs(float(grad[index]) - fd) <= 1e-7 + 1e-6 * abs(fd), (name, index, float(grad[index]), fd)
            checked += 1
    assert checked == w_a.size + w_b.size and float(np.abs(grads[0]["weight"]).max()) > 0


def test_composite_nodes_and_nesting_keep_flat_lists():
    node = serial(Dense(6), LIF(6, project=False, **KW))
    graph = discrete_graph({"x": node, "y": LI(2, **KW)}, [("input", "x"), ("x", "y"), ("y", "x")], output="y")
    assert graph.leaves == 3 and jaxsnn.leaf_count(graph) == 3
    net = serial(Dense(4), jaxsnn.residual(serial(graph, Dense(4))))
    assert net.leaves == 5
    _, params = net.init(jax.random.PRNGKey(0), (T, N_IN))
    assert len(params) == 5 and params[1]["weight"].shape == (4 + 2, 6)
    x = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (T, N_IN)).astype(jnp.float32)
    carry, out, recording = jax.jit(net.apply)(params, x)
    assert out.shape == (T, 4) and len(carry) == len(recording) == 5
    assert isinstance(carry[3], GraphCarry)  # y's output feeds x one step later
    apply = jax.jit(net.apply)
    carry1, first, _ = apply(params, x[:T // 2])
    _, second, _ = apply(params, x[T // 2:], carry=carry1)
    # (jit vs eager and matmuls of different lengths may differ in the last bit)
    np.testing.assert_allclose(jnp.concatenate([first, second]), out, rtol=1e-6, atol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(net.apply(p, x)[1] ** 2))(params)
    assert len(grads) == 5 and all(np.all(np.isfinite(g["weight"])) for g in grads if g)


def test_external_data_reaches_a_node_inside_a_cycle_step_by_step():
    """Hardware-style ``external``: node b's outputs are injected; a sees them one step later."""

    def Accumulate(size):
        """A toy stateful layer: running sum of a projection; its output is ``external`` when given."""

        def init(rng, input_shape):
            return (input_shape[0], size), jax.random.normal(rng, (input_shape[-1], size))

        def apply(params, inputs, external=None, carry=None):
            total = (jnp.zeros(size) if carry is None else carry) + jnp.cumsum(inputs @ params, axis=0)
            return total[-1], total if external is None else external, None

        return jaxsnn.named_layer(init, apply, f"Accumulate({size})")

    graph = discrete_graph({"a": Accumulate(2), "b": Accumulate(2)}, [("input", "a"), ("a", "b"), ("b", "a")],
                           output=("a", "b"))
    _, params = graph.init(jax.random.PRNGKey(0), (T, N_IN))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (T, N_IN)), np.float32)
    injected = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (T, 2)), np.float32)
    carry, (a, b), _ = jax.jit(graph.apply)(params, jnp.asarray(x), external=[None, jnp.asarray(injected)])
    np.testing.assert_array_equal(b, injected)
    total, want = np.zeros(2), []
    for t in range(T):  # explicit loop: a integrates [x_t, b_{t-1}] @ W_a
        previous = injected[t - 1] if t else np.zeros(2)
        total = total + np.concatenate([x[t], previous]) @ np.asarray(params[0])
        want.append(total)
    np.testing.assert_allclose(a, np.stack(want), rtol=1e-5, atol=1e-5)
    assert isinstance(carry[1], GraphCarry)
    np.testing.assert_array_equal(carry[1].history[0], injected[-1])


def test_discrete_graph_errors_name_the_edge():
    lif = LIF(3, **KW)
    with pytest.raises(ValueError, match=r"edge 'h1' -> 'nope' ends at a missing node 'nope'"):
        discrete_graph({"h1": lif}, [("input", "h1"), ("h1", "nope")], output="h1")
    with pytest.raises(ValueError, match=r"edge 'ghost' -> 'h1' starts at a missing node 'ghost'"):
        discrete_graph({"h1": lif}, [("input", "h1"), ("ghost", "h1")], output="h1")
    with pytest.raises(ValueError, match=r"zero-delay algebraic loop through edge 'a' -> 'b', edge 'b' -> 'a'"):
        discrete_graph({"a": lif, "b": lif}, [("input", "a"), ("a", "b"), ("b", "a", 0)], output="b")
    with pytest.raises(ValueError, match=r"zero-delay algebraic loop through edge 'a' -> 'a'"):
        discrete_graph({"a": lif}, [("input", "a"), Edge("a", "a", 0)], output="a")
    with pytest.raises(ValueError, match=r"edge 'input' -> 'a' has delay 2; the graph input has no history"):
        discrete_graph({"a": lif}, [("input", "a", 2)], output="a")
    with pytest.raises(ValueError, match=r"edge 'a' -> 'b' has delay -1; delays are ints >= 0"):
        discrete_graph({"a": lif, "b": lif}, [("input", "a"), ("a", "b", -1)], output="b")
    with pytest.raises(ValueError, match=r"edge 'input' -> 'a' is listed twice"):
        discrete_graph({"a": lif}, [("input", "a"), ("input", "a")], output="a")
    with pytest.raises(ValueError, match=r"node 'b' has no incoming edge"):
        discrete_graph({"a": lif, "b": lif}, [("input", "a")], output="a")
    with pytest.raises(ValueError, match=r"output 'z' is not a node"):
        discrete_graph({"a": lif}, [("input", "a")], output="z")
    with pytest.raises(ValueError, match=r"'input' is the graph's input and cannot name a node"):
        discrete_graph({"input": lif}, [("input", "input")], output="input")
    with pytest.raises(ValueError, match=r"merge of node 'a' must be one of"):
        discrete_graph({"a": lif}, [("input", "a")], output="a", merge="max")
    with pytest.raises(TypeError, match=r"edge 1 must be an Edge or a \(source, target\[, delay\]\) tuple"):
        discrete_graph({"a": lif}, [("input", "a"), "a->a"], output="a")
    # Shape mismatch of a summed edge: named at init.
    summed = discrete_graph({"a": Dense(3), "b": Dense(5), "c": LI(2, **KW)},
                            [("input", "a"), ("input", "b"), ("a", "c"), ("b", "c")], output="c", merge={"c": "sum"})
    with pytest.raises(ValueError, match=r"edge 'b' -> 'c' delivers shape \(7, 5\) but edge 'a' -> 'c' delivers \(7, 3\)"):
        summed.init(jax.random.PRNGKey(0), (7, 2))
    # A node that cannot take its merged input: named with its edges.
    wrong = discrete_graph({"a": Dense(3), "b": LIF(3, project=False, **KW)},
                           [("input", "a"), ("a", "b"), ("input", "b")], output="b")
    with pytest.raises(ValueError, match=r"node 'b' \(LIF\(3\)\) cannot take input shape \(7, 5\) \(from edge 'a' -> 'b' \(7, 3\), edge 'input' -> 'b' \(7, 2\)\)"):
        wrong.init(jax.random.PRNGKey(0), (7, 2))
    graph = FEEDBACK_GRAPH
    _, params = graph.init(jax.random.PRNGKey(0), (T, N_IN))
    with pytest.raises(ValueError, match=r"params has 2 entries but the network has 3 leaf layers"):
        graph.apply(params[:2], jnp.zeros((T, N_IN)))
    with pytest.raises(ValueError, match=r"node 'h2': its outgoing edges are delayed, so its carry entry must be None or the GraphCarry"):
        graph.apply(params, jnp.zeros((T, N_IN)), carry=[None, (jnp.zeros(4), jnp.zeros(4)), None])


# ----------------------------------------------------------------------------- event
T_MAX = 0.03
EVENT_KW = dict(tau_syn=5e-3, tau_mem=1e-2, t_max=T_MAX)
E_IN, E1, E2 = 3, 4, 3
EVENT_EDGES = [("input", "h1"), ("h1", "h2"), ("h2", "h1"), ("h1", "out"), ("h2", "out")]


T_REF = 2e-3  # bounds the spike count per neuron (t_max / t_ref), also for drawn runaway weights


def event_feedback_graph(t_max=T_MAX, gradient="eventprop"):
    kw = dict(tau_syn=5e-3, tau_mem=1e-2, t_ref=T_REF, t_max=t_max, gradient=gradient)
    return event_graph(
        {"h1": population(E1, capacity=24, **kw), "h2": population(E2, capacity=24, recurrent=True, **kw),
         "out": jaxsnn.event.LIF(2, capacity=8, **kw)},
        EVENT_EDGES, output="out", input_size=E_IN,
    )


EVENT_GRAPH = event_feedback_graph()
EVENT_APPLY = jax.jit(EVENT_GRAPH.apply)


def event_reference(params, spikes, t_max=T_MAX):
    neuron = LIFParameters(tau_syn=5e-3, tau_mem=1e-2, t_ref=T_REF)
    nodes = {
        "h1": {"weight": np.asarray(params[0]["weight"], np.float64), "neuron": neuron},
        "h2": {"weight": np.asarray(params[1]["weight"], np.float64), "neuron": neuron,
               "recurrent_weight": np.asarray(params[1]["recurrent_weight"], np.float64)},
        "out": {"weight": np.asarray(params[2]["weight"], np.float64), "neuron": neuron},
    }
    return simulate_event_graph(nodes, EVENT_EDGES, np.asarray(spikes.time), np.asarray(spikes.idx),
                                input_size=E_IN, t_max=t_max)


def event_params(w1, w2, w_rec, w3):
    return [{"weight": jnp.asarray(w1)}, {"weight": jnp.asarray(w2), "recurrent_weight": jnp.asarray(w_rec)},
            {"weight": jnp.asarray(w3)}]


KNOWN_INPUT = dict(times=[0.001, 0.004, 0.004, 0.009], idx=[0, 1, 2, 0])


def known_event_case():
    w1 = np.full((E_IN + E2, E1), 1.5) * np.linspace(0.8, 1.2, E1)
    w1[E_IN:] = 0.5 * np.array([1.0, 0.6, 0.3])[:, None]  # excitatory feedback from h2: h1 spikes again
    w2 = np.full((E1, E2), 2.0) * np.linspace(0.7, 1.3, E2)
    w_rec = np.full((E2, E2), 0.1)
    w3 = np.full((E1 + E2, 2), 1.2) * np.array([1.0, 0.8])
    spikes = jaxsnn.spikes.from_lists(KNOWN_INPUT["times"], KNOWN_INPUT["idx"], capacity=6, n_neurons=E_IN,
                                      dtype=np.float64)
    return (w1, w2, w_rec, w3), spikes


def _trains(spikes):
    n = int(spikes.count())
    return np.asarray(spikes.time[:n], np.float64), np.asarray(spikes.idx[:n])


@settings(max_examples=8)
@given(
    spikes=strategies.spikes(E_IN, 6, T_MAX * 0.8, capacity=6, dtype=np.float64),
    w1=strategies.weights((E_IN + E2, E1), low=-0.5, high=2.5),
    w2=strategies.weights((E1, E2), low=-0.5, high=2.5),
    w_rec=strategies.weights((E2, E2), low=-1.0, high=0.5),
    w3=strategies.weights((E1 + E2, 2), low=-0.5, high=2.0),
)
def test_event_feedback_matches_float64_reference(spikes, w1, w2, w_rec, w3):
    with jax.enable_x64(True):
        params = event_params(w1, w2, w_rec, w3)
        _, out, recording = EVENT_APPLY(params, spikes)
        want = event_reference(params, spikes)
        assume(len(want["h1"][0]) > 0 and len(want["h2"][0]) > 0)
        assume(all(len(want[n][0]) <= c for n, c in (("h1", 24), ("h2", 24), ("out", 8))))
        for k, name in enumerate(("h1", "h2", "out")):
            assert not bool(recording[k].overflow)
            got_t, got_i = _trains(recording[k].spikes)
            want_t, want_i = want[name]
            assert len(got_t) == len(want_t), (name, got_t, want_t)
            np.testing.assert_array_equal(got_i, want_i)
            np.testing.assert_allclose(got_t, want_t, rtol=0, atol=1e-12 * T_MAX)


def test_event_feedback_known_case_and_feedback_matters():
    with jax.enable_x64(True):
        weights, spikes = known_event_case()
        params = event_params(*weights)
        _, out, recording = EVENT_APPLY(params, spikes)
        want = event_reference(params, spikes)
        counts = [int(r.spikes.count()) for r in recording]
        assert counts[0] > 0 and counts[1] > 0 and counts[2] > 0, counts
        for k, name in enumerate(("h1", "h2", "out")):
            got_t, got_i = _trains(recording[k].spikes)
            np.testing.assert_array_equal(got_i, want[name][1])
            np.testing.assert_allclose(got_t, want[name][0], rtol=0, atol=1e-12 * T_MAX)
        no_feedback = [{"weight": params[0]["weight"].at[E_IN:].set(0.0)}, params[1], params[2]]
        _, _, muted = EVENT_APPLY(no_feedback, spikes)
        assert not np.array_equal(_trains(muted[0].spikes)[0], _trains(recording[0].spikes)[0])


def test_event_zero_feedback_equals_serial():
    """The cycle is simulated as one layer; with the feedback block zero it equals serial to rounding."""
    with jax.enable_x64(True):
        weights, spikes = known_event_case()
        params = event_params(*weights)
        params[0] = {"weight": params[0]["weight"].at[E_IN:].set(0.0)}
        params[1] = {"weight": params[1]["weight"], "recurrent_weight": jnp.zeros((E2, E2))}
        reference = serial(jaxsnn.event.LIF(E1, capacity=24, t_ref=T_REF, **EVENT_KW),
                           jaxsnn.event.LIF(E2, capacity=24, t_ref=T_REF, **EVENT_KW))
        _, _, recording = EVENT_APPLY(params, spikes)
        _, _, recording_s = jax.jit(reference.apply)([{"weight": params[0]["weight"][:E_IN]}, {"weight": params[1]["weight"]}], spikes)
        for k in range(2):
            got_t, got_i = _trains(recording[k].spikes)
            want_t, want_i = _trains(recording_s[k].spikes)
            assert len(got_t) > 0
            np.testing.assert_array_equal(got_i, want_i)
            np.testing.assert_allclose(got_t, want_t, rtol=0, atol=1e-15)


def test_event_feedback_eventprop_gradients_match_float64_finite_differences_of_the_reference():
    with jax.enable_x64(True):
        weights, spikes = known_event_case()
        graph = EVENT_GRAPH
        params = event_params(*weights)

        def objective_of(recording):
            total = 0.0
            for k in range(3):
                s = recording[k].spikes
                valid = s.idx >= 0
                total = total + jnp.sum(jnp.where(valid, jnp.where(valid, s.time, 0.0) / (1.0 + k + s.idx), 0.0))
            return total

        grads = jax.jit(jax.grad(lambda p: objective_of(graph.apply(p, spikes)[2])))(params)

    def reference_objective(ws):
        # NumPy float64 throughout (jnp arrays outside the x64 context would be float32)
        w1, w2, w_rec, w3 = ws
        want = event_reference([{"weight": w1}, {"weight": w2, "recurrent_weight": w_rec}, {"weight": w3}], spikes)
        total, structure = 0.0, []
        for k, name in enumerate(("h1", "h2", "out")):
            t, i = want[name]
            total += float(np.sum(t / (1.0 + k + i)))
            structure.append(tuple(np.sort(i)))
        return total, tuple(structure)

    base = [np.asarray(w, np.float64) for w in weights]
    value0, structure0 = reference_objective(base)
    grad_arrays = [grads[0]["weight"], grads[1]["weight"], grads[1]["recurrent_weight"], grads[2]["weight"]]
    rng = np.random.default_rng(0)
    checked = 0
    for which in range(4):
        for index in [tuple(rng.integers(0, s) for s in base[which].shape) for _ in range(4)]:
            h = 1e-7
            plus = [w.copy() for w in base]
            minus = [w.copy() for w in base]
            plus[which][index] += h
            minus[which][index] -= h
            f_plus, s_plus = reference_objective(plus)
            f_minus, s_minus = reference_objective(minus)
            if s_plus != structure0 or s_minus != structure0:
                continue
            fd = (f_plus - f_minus) / (2 * h)
            got = float(grad_arrays[which][index])
            assert abs(got - fd) <= 1e-9 + 1e-5 * abs(fd), (which, index, got, fd)
            checked += 1
    assert checked >= 12
    # The feedback block and the recurrent weights do get gradient.
    assert float(jnp.abs(grads[0]["weight"][E_IN:]).max()) > 0
    assert float(jnp.abs(grads[1]["recurrent_weight"]).max()) > 0


def test_event_graph_chunked_equals_whole_vmap_and_causality():
    with jax.enable_x64(True):
        weights, spikes = known_event_case()
        params = event_params(*weights)
        split = 0.0095  # h1 and h2 spike on both sides of the split
        first, second = event_feedback_graph(split), event_feedback_graph(T_MAX - split)
        properties.check_chunked_equals_whole(jax.jit(first.apply), params, spikes, split,
                                              second_layer=jax.jit(second.apply), whole_layer=EVENT_APPLY,
                                              rtol=1e-11)
        # out spikes at 10.6 and 11.2 ms lie before 12 ms; two extra input spikes after it change
        # the later output (so the perturbation is real) but must not change those two
        extra = jaxsnn.spikes.from_lists([0.0125, 0.013], [1, 2], capacity=2, n_neurons=E_IN, dtype=np.float64)
        assert properties.check_causality(EVENT_APPLY, params, spikes, 0.012, replacement=extra) >= 2
        perturbed = jaxsnn.spikes.from_lists(KNOWN_INPUT["times"] + [0.0125, 0.013], KNOWN_INPUT["idx"] + [1, 2],
                                             capacity=6, n_neurons=E_IN, dtype=np.float64)
        assert not np.array_equal(np.asarray(EVENT_APPLY(params, perturbed)[1].time),
                                  np.asarray(EVENT_APPLY(params, spikes)[1].time))
        batch = Spikes(jnp.stack([spikes.time, spikes.time + 0.001]), jnp.stack([spikes.idx, spikes.idx]))
        properties.check_vmap_equals_loop(EVENT_APPLY, params, batch)


def test_event_graph_feedforward_and_external_and_population_alone():
    with jax.enable_x64(True):
        weights, spikes = known_event_case()
        params = event_params(*weights)
        # A population alone is exactly jaxsnn.event.LIF.
        alone = population(E1, capacity=24, **EVENT_KW)
        lif = jaxsnn.event.LIF(E1, capacity=24, **EVENT_KW)
        _, p_alone = alone.init(jax.random.PRNGKey(0), (E_IN,))
        _, p_lif = lif.init(jax.random.PRNGKey(0), (E_IN,))
        np.testing.assert_array_equal(p_alone["weight"], p_lif["weight"])
        assert alone._replace(apply=jax.jit(alone.apply)).spec == alone.spec
        # External (measured) spikes for every node of the cycle: the outputs are the measurement,
        # the gradient is EventProp's at the measured times (finite).
        measured_h1 = jaxsnn.spikes.from_lists([0.002, 0.01], [1, 3], capacity=24, n_neurons=E1, dtype=np.float64)
        measured_h2 = jaxsnn.spikes.from_lists([0.005], [2], capacity=24, n_neurons=E2, dtype=np.float64)

        def loss(p):
            _, _, recording = EVENT_GRAPH.apply(p, spikes, external=[measured_h1, measured_h2, None])
            measured = recording[1].spikes
            return jnp.sum(jnp.where(measured.idx >= 0, jnp.where(measured.idx >= 0, measured.time, 0.0), 0.0)), recording

        (_, recording), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
        np.testing.assert_array_equal(recording[0].spikes.time, measured_h1.time)
        np.testing.assert_array_equal(recording[1].spikes.idx, measured_h2.idx)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree_util.tree_leaves(grads))
        assert float(jnp.abs(grads[1]["weight"]).max()) > 0
        # A feed-forward event graph with a concatenating merge equals the hand-written merge.
        ff = event_graph({"a": jaxsnn.event.LIF(E1, capacity=12, **EVENT_KW), "b": jaxsnn.event.LIF(2, capacity=8, **EVENT_KW)},
                         [("input", "a"), ("a", "b"), ("input", "b")], output="b", input_size=E_IN)
        ff_params = [{"weight": jnp.asarray(weights[0][:E_IN])}, {"weight": jnp.full((E1 + E_IN, 2), 0.7)}]
        _, out, rec = ff.apply(ff_params, spikes)
        _, a_out, _ = jaxsnn.event.LIF(E1, capacity=12, **EVENT_KW).apply(ff_params[0], spikes)
        merged = jaxsnn.compose.merge_concat("test", [a_out, spikes], [E1, E_IN])
        _, want, _ = jaxsnn.event.LIF(2, capacity=8, **EVENT_KW).apply(ff_params[1], merged)
        assert int(out.count()) > 0 and int(rec[0].spikes.count()) > 0
        np.testing.assert_array_equal(out.time, want.time)


def test_event_graph_errors():
    pop = population(3, capacity=4, **EVENT_KW)
    with pytest.raises(ValueError, match=r"edge 'a' -> 'b' has delay 0.001 but is not inside a cycle; .* put a jaxsnn.event.Delay node"):
        event_graph({"a": pop, "b": pop}, [("input", "a"), ("a", "b", 0.001)], output="b", input_size=2)
    with pytest.raises(ValueError, match=r"node 'b' \(LIF\(3\)\) is on a cycle \(nodes \['a', 'b'\]\) but is not a jaxsnn.graph.population"):
        event_graph({"a": pop, "b": jaxsnn.event.LIF(3, capacity=4, **EVENT_KW)},
                    [("input", "a"), ("a", "b"), ("b", "a")], output="b", input_size=2)
    other = population(3, capacity=4, tau_syn=5e-3, tau_mem=1e-2, t_max=0.05)
    with pytest.raises(ValueError, match=r"must share t_max, got \[0.03, 0.05\]"):
        event_graph({"a": pop, "b": other}, [("input", "a"), ("a", "b"), ("b", "a")], output="b", input_size=2)
    with pytest.raises(ValueError, match=r"input_size must be an int >= 1"):
        event_graph({"a": pop}, [("input", "a")], output="a", input_size=0)
    graph = event_graph({"a": pop, "b": pop}, [("input", "a"), ("a", "b"), ("b", "a")], output="b", input_size=2)
    with pytest.raises(ValueError, match=r"input shape must be \(2,\) \(input_size\), got \(3,\)"):
        graph.init(jax.random.PRNGKey(0), (3,))
    _, params = graph.init(jax.random.PRNGKey(0), (2,))
    spikes = jaxsnn.spikes.from_lists([0.001], [0], capacity=2, n_neurons=2)
    with pytest.raises(ValueError, match=r"external spikes were given for some nodes of the cycle \['a', 'b'\] but not for \['b'\]"):
        graph.apply(params, spikes, external=[spikes, None])
    with pytest.raises(TypeError, match=r"inputs must be jaxsnn.Spikes"):
        graph.apply(params, jnp.zeros((3, 2)))
    checked = event_graph({"a": population(3, capacity=1, checked=True, **EVENT_KW),
                           "b": population(3, capacity=1, **EVENT_KW)},
                          [("input", "a"), ("a", "b"), ("b", "a")], output="b", input_size=2)
    busy = jaxsnn.spikes.from_lists([0.001, 0.002, 0.003], [0, 1, 0], capacity=3, n_neurons=2)
    strong = [{"weight": jnp.full((5, 3), 3.0)}, {"weight": jnp.full((3, 3), 3.0)}]
    with pytest.raises(ValueError, match=r"the cycle \['a', 'b'\] emitted more spikes than a node's capacity"):
        checked.apply(strong, busy)
