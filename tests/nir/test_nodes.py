"""What each NIR node computes under ``dialect="spec"`` (and where dialects differ), checked
against small NumPy implementations written from the NIR definitions."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn.nir as jnir

nir = pytest.importorskip("nir")


def graph_of(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def chain(*nodes, input_shape):
    names = ["input"] + [f"n{i}" for i in range(len(nodes))] + ["output"]
    all_nodes = {"input": nir.Input(input_type={"input": np.array(input_shape)})}
    all_nodes.update({f"n{i}": node for i, node in enumerate(nodes)})
    all_nodes["output"] = nir.Output(output_type={"output": np.array([0])})
    return graph_of(all_nodes, list(zip(names[:-1], names[1:])))


def run(graph, x, dt=1e-3, dialect="spec"):
    layer, params = jnir.from_nir(graph, dt=dt, dialect=dialect)
    _, out, recording = jax.jit(layer.apply)(params, jnp.asarray(x))
    return np.asarray(out), recording


def test_affine_bias_is_a_current_in_spec_and_per_step_in_peers():
    RNG = np.random.RandomState(0)
    w, b = RNG.randn(3, 4), RNG.randn(3)
    x = RNG.randn(5, 4).astype(np.float32)
    dt = 0.01
    out, _ = run(chain(nir.Affine(weight=w, bias=b), input_shape=[4]), x, dt=dt)
    np.testing.assert_allclose(out, x @ w.T + b * dt, rtol=1e-5, atol=1e-6)
    out, _ = run(chain(nir.Affine(weight=w, bias=b), input_shape=[4]), x, dt=dt, dialect="norse")
    np.testing.assert_allclose(out, x @ w.T + b, rtol=1e-5, atol=1e-6)
    out, _ = run(chain(nir.Linear(weight=w), input_shape=[4]), x, dt=dt)
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-5, atol=1e-6)


def test_scale_and_threshold():
    s = np.array([2.0, -1.0, 0.5])
    x = np.array([[1.0, 1.0, 2.0], [0.5, -1.0, 4.0]], np.float32)
    out, _ = run(
        chain(
            nir.Scale(scale=s), nir.Threshold(threshold=np.array([1.0, 1.0, 1.0])), input_shape=[3]
        ),
        x,
    )
    # 2 > 1, -1 > 1, 1 > 1 (no: H(0) = 0); 1 > 1 (no), 1 > 1 (no), 2 > 1
    np.testing.assert_array_equal(out, [[1, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize("start,end", [(0, -1), (1, 2), (0, 1), (-2, -1)])
def test_flatten_respects_stored_dims(start, end):
    RNG = np.random.RandomState(0)
    x = RNG.randn(3, 2, 3, 4).astype(np.float32)
    out, _ = run(
        chain(
            nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=start, end_dim=end),
            input_shape=[2, 3, 4],
        ),
        x,
    )
    s, e = start % 3, end % 3
    shape = (3,) + (2, 3, 4)[:s] + (int(np.prod((2, 3, 4)[s : e + 1])),) + (2, 3, 4)[e + 1 :]
    np.testing.assert_array_equal(out, x.reshape(shape))


def test_spyx_flattens_channels_last():
    RNG = np.random.RandomState(0)
    x = RNG.randn(2, 2, 3, 4).astype(np.float32)
    node = nir.Flatten(input_type={"input": np.array([2, 3, 4])}, start_dim=0, end_dim=-1)
    out, _ = run(chain(node, input_shape=[2, 3, 4]), x, dialect="spyx")
    np.testing.assert_array_equal(out, np.transpose(x, (0, 2, 3, 1)).reshape(2, -1))


def conv_reference(x, w, b, stride, pads, dilation, groups):
    """Cross-correlation by loops, NCHW / OIHW (PyTorch's and NIR's definition)."""
    n_spatial = w.ndim - 2
    x = np.pad(x, [(0, 0)] + [tuple(p) for p in pads])
    c_out, c_in_g = w.shape[:2]
    kernel = w.shape[2:]
    out_shape = [
        (x.shape[1 + d] - dilation[d] * (kernel[d] - 1) - 1) // stride[d] + 1
        for d in range(n_spatial)
    ]
    y = np.zeros([c_out] + out_shape)
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        for pos in itertools.product(*[range(s) for s in out_shape]):
            acc = b[o]
            for i in range(c_in_g):
                for k in itertools.product(*[range(s) for s in kernel]):
                    index = tuple(pos[d] * stride[d] + k[d] * dilation[d] for d in range(n_spatial))
                    acc += w[(o, i) + k] * x[(g * c_in_g + i,) + index]
            y[(o,) + pos] = acc
    return y


CONVS = [
    # (n_spatial, padding, stride, dilation, groups)
    (2, 1, 1, 1, 1),
    (2, (1, 2), (2, 1), 1, 1),
    (2, "same", 1, (2, 1), 1),
    (2, "valid", 2, 1, 2),
    (2, 0, 1, 2, 2),
    (1, 2, 2, 1, 1),
    (1, "same", 1, 3, 2),
    (1, "valid", 1, 1, 1),
]


@pytest.mark.parametrize("n_spatial,padding,stride,dilation,groups", CONVS)
def test_conv_matches_the_definition(n_spatial, padding, stride, dilation, groups):
    RNG = np.random.RandomState(0)
    c_in, c_out, size = 4, 4, 7
    kernel = (3,) * n_spatial if n_spatial == 1 else (3, 2)
    w = RNG.randn(c_out, c_in // groups, *kernel)
    b = RNG.randn(c_out)
    spatial = (size,) * n_spatial
    x = RNG.randn(2, c_in, *spatial).astype(np.float32)
    cls = nir.Conv1d if n_spatial == 1 else nir.Conv2d
    node = cls(
        input_shape=spatial[0] if n_spatial == 1 else spatial,
        weight=w,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=b,
    )
    dt = 0.5
    out, _ = run(chain(node, input_shape=[c_in, *spatial]), x, dt=dt)

    def tup(v):
        return tuple(np.broadcast_to(np.asarray(v), (n_spatial,)).tolist())

    dil = tup(dilation)
    if padding == "same":
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dil)]
    elif padding == "valid":
        pads = [(0, 0)] * n_spatial
    else:
        pads = [(p, p) for p in tup(padding)]
    for t in range(2):
        expected = conv_reference(
            x[t].astype(np.float64), w, b * dt, tup(stride), pads, dil, groups
        )
        np.testing.assert_allclose(out[t], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mean", [False, True])
def test_pooling_matches_the_definition(mean):
    RNG = np.random.RandomState(0)
    x = RNG.randn(2, 3, 7, 6).astype(np.float32)
    cls = nir.AvgPool2d if mean else nir.SumPool2d
    node = cls(kernel_size=np.array([3, 2]), stride=np.array([2, 2]), padding=np.array([1, 0]))
    out, _ = run(chain(node, input_shape=[3, 7, 6]), x)
    padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (0, 0)])
    expected = np.zeros((2, 3, 4, 3))
    for i, j in itertools.product(range(4), range(3)):
        window = padded[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 2]
        expected[:, :, i, j] = window.sum(axis=(2, 3)) / (6.0 if mean else 1.0)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_delay_shifts_each_element_by_its_steps():
    RNG = np.random.RandomState(0)
    dt = 1e-3
    delays = np.array([0.0, 1e-3, 3e-3])
    x = RNG.randn(8, 3).astype(np.float32)
    graph = chain(nir.Delay(delay=delays), input_shape=[3])
    out, _ = run(graph, x, dt=dt)
    expected = np.zeros_like(x)
    for i, k in enumerate([0, 1, 3]):
        expected[k:, i] = x[: 8 - k, i]
    np.testing.assert_array_equal(out, expected)
    # Chunks with the carry equal one window.
    layer, params = jnir.from_nir(graph, dt=dt, dialect="spec")
    carry, first, _ = layer.apply(params, x[:5])
    _, second, _ = layer.apply(params, x[5:], carry=carry)
    np.testing.assert_array_equal(np.concatenate([first, second]), expected)


def exact_li(x, tau, r, v_leak, dt, v0):
    """tau dv/dt = v_leak - v + r I with I = sum_t x_t delta(t - t dt), sampled at step ends."""
    v, out = v0, []
    for x_t in x:
        v = v + r * x_t / tau  # the impulse at the start of the step
        v = v_leak + (v - v_leak) * np.exp(-dt / tau)  # free decay over the step
        out.append(v)
    return np.array(out)


def test_li_and_lif_integrate_the_ode_exactly(x64):
    RNG = np.random.RandomState(0)
    tau, r, v_leak, dt = np.array([4e-3, 9e-3]), np.array([0.5, 2.0]), np.array([0.1, -0.2]), 1e-3
    x = RNG.rand(30, 2) * 0.01
    out, _ = run(chain(nir.LI(tau=tau, r=r, v_leak=v_leak), input_shape=[2]), x, dt=dt)
    np.testing.assert_allclose(out, exact_li(x, tau, r, v_leak, dt, v_leak), rtol=1e-12, atol=1e-14)
    # LIF: the same, then v > v_threshold -> spike and v = v_reset in the same step.
    thr, v_reset = np.array([0.3, 0.2]), np.array([0.0, -0.1])
    node = nir.LIF(tau=tau, r=r, v_leak=v_leak, v_threshold=thr, v_reset=v_reset)
    x = RNG.rand(30, 2) * 0.02
    out, rec = run(chain(node, input_shape=[2]), x, dt=dt)
    v, spikes, vs = v_leak.copy(), [], []
    for x_t in x:
        v = v_leak + (v + r * x_t / tau - v_leak) * np.exp(-dt / tau)
        z = (v > thr).astype(float)
        v = np.where(z > 0, v_reset, v)
        spikes.append(z)
        vs.append(v)
    assert np.sum(spikes) > 3
    np.testing.assert_array_equal(out, np.array(spikes))
    np.testing.assert_allclose(np.asarray(rec["n0"].state.v), np.array(vs), rtol=1e-12, atol=1e-14)


def test_integrators():
    r, thr, v_reset = np.array([1.0, 0.5]), np.array([1.0, 1.0]), np.array([0.0, 0.25])
    x = np.array([[0.6, 1.0], [0.6, 1.0], [0.0, 1.0], [0.5, 1.0]], np.float32)
    out, _ = run(chain(nir.I(r=r), input_shape=[2]), x)
    np.testing.assert_allclose(out, np.cumsum(x * r, axis=0), rtol=1e-6)
    out, rec = run(chain(nir.IF(r=r, v_threshold=thr, v_reset=v_reset), input_shape=[2]), x)
    # neuron 0: 0.6, 1.2 -> spike, reset 0; 0; 0.5.  neuron 1: 0.5, 1.0 (not > 1), 1.5 -> spike,
    # reset 0.25; 0.75.
    np.testing.assert_array_equal(out, [[0, 0], [1, 0], [0, 1], [0, 0]])
    np.testing.assert_allclose(
        np.asarray(rec["n0"].state.v), [[0.6, 0.5], [0.0, 1.0], [0.0, 0.25], [0.5, 0.75]], rtol=1e-6
    )


def test_several_edges_into_one_node_are_summed():
    RNG = np.random.RandomState(0)
    w1, w2 = RNG.randn(3, 4), RNG.randn(3, 4)
    lif = dict(
        tau=np.full(3, 5e-3), r=np.full(3, 5.0), v_leak=np.zeros(3), v_threshold=np.full(3, 0.5)
    )
    nodes = {
        "input": nir.Input(input_type={"input": np.array([4])}),
        "a": nir.Linear(weight=w1),
        "b": nir.Linear(weight=w2),
        "lif": nir.LIF(**lif),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "a"), ("input", "b"), ("a", "lif"), ("b", "lif"), ("lif", "output")]
    x = (RNG.rand(20, 4) < 0.5).astype(np.float32)
    two, rec = run(graph_of(nodes, edges), x)
    one, _ = run(chain(nir.Linear(weight=w1 + w2), nir.LIF(**lif), input_shape=[4]), x)
    np.testing.assert_array_equal(two, one)
    assert one.sum() > 0 and set(rec) == {"a", "b", "lif"}


def test_nested_graph_is_inlined():
    RNG = np.random.RandomState(0)
    w = RNG.randn(3, 4) * 3
    lif = nir.LIF(
        tau=np.full(3, 5e-3), r=np.full(3, 5.0), v_leak=np.zeros(3), v_threshold=np.full(3, 0.5)
    )
    inner = graph_of(
        {
            "in": nir.Input(input_type={"input": np.array([4])}),
            "w": nir.Linear(weight=w),
            "lif": lif,
            "out": nir.Output(output_type={"output": np.array([3])}),
        },
        [("in", "w"), ("w", "lif"), ("lif", "out")],
    )
    outer = graph_of(
        {
            "input": nir.Input(input_type={"input": np.array([4])}),
            "sub": inner,
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        [("input", "sub"), ("sub", "output")],
    )
    x = (RNG.rand(20, 4) < 0.5).astype(np.float32)
    nested, rec = run(outer, x)
    flat, _ = run(chain(nir.Linear(weight=w), lif, input_shape=[4]), x)
    np.testing.assert_array_equal(nested, flat)
    assert nested.sum() > 0 and set(rec) == {"sub.w", "sub.lif"}


def test_feedback_loop_delays_the_spikes_in_spec():
    """lif -> Affine(w_rec, b) -> lif: the loop delivers Affine(z_{t-1}); the bias acts from t=0."""
    RNG = np.random.RandomState(0)
    n, dt = 3, 1e-3
    w_in, w_rec, b = RNG.randn(n, 2) * 2, RNG.randn(n, n) * 2, 100.0 + 100.0 * RNG.rand(n)
    tau, r, thr = np.full(n, 5e-3), np.full(n, 5e-3), np.full(n, 0.4)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2])}),
        "w": nir.Linear(weight=w_in),
        "lif": nir.LIF(tau=tau, r=r, v_leak=np.zeros(n), v_threshold=thr),
        "rec": nir.Affine(weight=w_rec, bias=b),
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    edges = [("input", "w"), ("w", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")]
    x = (RNG.rand(30, 2) < 0.4).astype(np.float64)
    with jax.enable_x64(True):
        out, recording = run(graph_of(nodes, edges), x, dt=dt)
    a = np.exp(-dt / tau)
    v, z, expected, membrane = np.zeros(n), np.zeros(n), [], []
    for x_t in x:
        drive = w_in @ x_t + (w_rec @ z + b * dt)
        v = a * (v + r * drive / tau)
        z = (v > thr).astype(float)
        v = np.where(z > 0, 0.0, v)
        expected.append(z)
        membrane.append(v)
    assert 0 < np.sum(expected) < np.size(expected)
    np.testing.assert_array_equal(out, np.array(expected))
    np.testing.assert_allclose(
        np.asarray(recording["lif"].state.v), np.array(membrane), rtol=1e-12, atol=1e-14
    )


def test_loop_of_two_neurons_delays_the_edge_that_closes_it():
    """input -> a -> b -> a: the edge b -> a (closing the loop) carries the previous step."""
    RNG = np.random.RandomState(0)
    n = 2
    lif = dict(
        tau=np.full(n, 5e-3), r=np.full(n, 5.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.3)
    )
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n])}),
        "a": nir.LIF(**lif),
        "b": nir.LIF(**lif),
        "output": nir.Output(output_type={"output": np.array([n])}),
    }
    edges = [("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")]
    x = (RNG.rand(25, n) < 0.5).astype(np.float32)
    layer, params = jnir.from_nir(graph_of(nodes, edges), dt=1e-3, dialect="spec")
    _, out, rec = layer.apply(params, jnp.asarray(x))
    a_out, b_out = np.asarray(rec["a"].output), np.asarray(rec["b"].output)
    assert b_out.sum() > 0
    # Rerun "a" alone driven by x_t + b_{t-1}: it must give the same spikes.
    shifted = x + np.concatenate([np.zeros((1, n)), b_out[:-1]])
    alone, _ = run(chain(nir.LIF(**lif), input_shape=[n]), shifted)
    np.testing.assert_array_equal(alone, a_out)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
def test_cubali_integrates_the_ode_exactly(x64, ratio):
    """CubaLI with arbitrary r, w_in, v_leak against the float64 event-by-event solution of
    tau_syn dI/dt = -I + w_in S, tau_mem dv/dt = v_leak - v + r I (tau_mem = tau_syn is the
    limit case of the exact gain)."""
    RNG = np.random.RandomState(0)
    from jaxsnn.event.neuron import LIFParameters
    from jaxsnn.testing.reference import event_state_at

    dt, n_steps, tau_syn = 5e-4, 40, 4e-3
    tau_mem = ratio * tau_syn
    r, w_in, v_leak = np.array([0.7, 2.0]), np.array([1.5, 0.3]), np.array([0.1, -0.2])
    node = nir.CubaLI(
        tau_syn=np.full(2, tau_syn), tau_mem=np.full(2, tau_mem), r=r, v_leak=v_leak, w_in=w_in
    )
    x = RNG.rand(n_steps, 2) * (RNG.rand(n_steps, 2) < 0.3) * 1e-2
    out, _ = run(chain(node, input_shape=[2]), x, dt=dt)
    # The event reference: I_ref = r I jumps by r w_in x / tau_syn at the start of each step,
    # one reference input per event (its own amplitude as its weight).
    steps, idx = np.nonzero(x)
    times = steps * dt
    neuron = LIFParameters(
        tau_syn=tau_syn, tau_mem=tau_mem, v_th=1e9, v_reset=0.0, v_leak=v_leak, t_ref=0.0
    )
    for t in range(0, n_steps, 7):
        expected = np.zeros(2)
        for i in range(2):
            mine = idx == i
            w = (r[i] * w_in[i] / tau_syn) * x[steps[mine], i][:, None]
            params_i = neuron._replace(v_leak=v_leak[i])
            # At the end of step t (an input at that instant changes I, not v).
            v, _ = event_state_at(w, times[mine], np.arange(mine.sum()), params_i, (t + 1) * dt)
            expected[i] = v[0]
        np.testing.assert_allclose(out[t], expected, rtol=1e-10, atol=1e-13)
