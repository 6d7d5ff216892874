"""Every refusal of ``jaxsnn.nir`` names the node (or layer) and the choice to make."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

import jaxsnn
import jaxsnn.nir as jnir
from jaxsnn.discrete import LIF, Conv, Dense

nir = pytest.importorskip("nir")


def graph_of(nodes, edges):
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def chain(*nodes, input_shape=(3,)):
    names = ["input"] + [f"n{i}" for i in range(len(nodes))] + ["output"]
    all_nodes = {"input": nir.Input(input_type={"input": np.array(input_shape)})}
    all_nodes.update({f"n{i}": node for i, node in enumerate(nodes)})
    all_nodes["output"] = nir.Output(output_type={"output": np.array([0])})
    return graph_of(all_nodes, list(zip(names[:-1], names[1:])))


def lif(n=3, **kw):
    fields = dict(
        tau=np.full(n, 5e-3), r=np.full(n, 1.0), v_leak=np.zeros(n), v_threshold=np.ones(n)
    )
    fields.update(kw)
    return nir.LIF(**fields)


def cuba(n=3, **kw):
    fields = dict(
        tau_syn=np.full(n, 5e-3),
        tau_mem=np.full(n, 1e-2),
        r=np.ones(n),
        v_leak=np.zeros(n),
        v_threshold=np.ones(n),
    )
    fields.update(kw)
    return nir.CubaLIF(**fields)


@dataclasses.dataclass(eq=False)
class Mystery(nir.NIRNode):
    size: int = 3

    def __post_init__(self):
        self.input_type = {"input": np.array([self.size])}
        self.output_type = {"output": np.array([self.size])}


# ------------------------------------------------------------------------------------------
# reading


def test_unsupported_node_is_named():
    with pytest.raises(ValueError, match=r"'n0' has type Mystery.*nothing is dropped silently"):
        jnir.from_nir(chain(Mystery()), dt=1e-3, dialect="spec")


def test_neuron_a_dialect_does_not_define():
    node = nir.CubaLI(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3))
    with pytest.raises(
        ValueError,
        match=r"'n0' is a CubaLI, which the 'snntorch' dialect does "
        r"not define.*dialect='spec'",
    ):
        jnir.from_nir(chain(node), dt=1e-3, dialect="snntorch")


def test_unknown_dialect():
    with pytest.raises(ValueError, match=r"dialect must be 'auto', one of"):
        jnir.from_nir(chain(lif()), dt=1e-3, dialect="brian")


def test_bad_snntorch_options():
    with pytest.raises(ValueError, match=r"reset_mechanism must be 'subtract', 'zero' or 'none'"):
        jnir.SnnTorch(reset_mechanism="hard")
    with pytest.raises(TypeError, match=r"reset_delay must be a bool"):
        jnir.SnnTorch(reset_delay=1)


def test_auto_asks_when_no_writer_is_recognised():
    graph = chain(lif(r=np.full(3, 2.0), tau=np.array([1e-2, 2e-2, 3e-2])))
    with pytest.raises(
        ValueError,
        match=r"cannot tell which library wrote this NIR file: no "
        r"writer's traces.*Pass dialect='spec'",
    ):
        jnir.from_nir(graph, dt=1e-3)


def test_auto_asks_when_several_writers_match():
    # r = tau / 1e-4 for one neuron (snnTorch) and r = 1 - 1e-3 / tau for another (Spyx).
    graph = graph_of(
        {
            "input": nir.Input(input_type={"input": np.array([3])}),
            "layer_0": lif(tau=np.full(3, 1e-3), r=np.full(3, 10.0)),
            "layer_1": lif(tau=np.full(3, 1e-2), r=np.full(3, 0.9)),
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        [("input", "layer_0"), ("layer_0", "layer_1"), ("layer_1", "output")],
    )
    with pytest.raises(ValueError, match=r"it matches spyx .* and snntorch"):
        jnir.detect_dialect(graph)


def test_snntorch_file_read_with_the_wrong_dt_names_the_right_one():
    graph = chain(lif(tau=np.full(3, 1e-3), r=np.full(3, 10.0)))  # written at dt = 1e-4
    with pytest.raises(
        ValueError, match=r"'n0'.*written with dt = tau / r = \[0.0001\].*pass that dt"
    ):
        jnir.from_nir(graph, dt=1e-3, dialect="snntorch")
    layer, _ = jnir.from_nir(graph, dt=1e-4, dialect="snntorch")
    assert layer.name == "from_nir[snntorch]"
    cub = cuba(
        tau_syn=np.full(3, 5e-4), tau_mem=np.full(3, 1e-3), r=np.full(3, 10.0), w_in=np.full(3, 2.0)
    )
    with pytest.raises(ValueError, match=r"w_in = tau_syn / dt.*pass dt = tau_syn / w_in"):
        jnir.from_nir(chain(cub), dt=1e-4, dialect="snntorch")


def test_snntorch_cannot_express_leak_or_reset_potential():
    with pytest.raises(ValueError, match=r"'n0': v_leak != 0, which snnTorch"):
        jnir.from_nir(
            chain(lif(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_leak=np.ones(3))),
            dt=1e-4,
            dialect="snntorch",
        )
    with pytest.raises(ValueError, match=r"'n0': v_reset != 0, which snnTorch"):
        jnir.from_nir(
            chain(lif(tau=np.full(3, 1e-3), r=np.full(3, 10.0), v_reset=np.full(3, -1.0))),
            dt=1e-4,
            dialect="snntorch",
        )


def test_spyx_file_read_with_the_wrong_dt_names_the_right_one():
    graph = chain(lif(tau=np.full(3, 10.0), r=np.full(3, 0.9)))  # beta = 0.9 at dt = 1
    with pytest.raises(
        ValueError, match=r"'n0': Spyx writes r = beta.*dt = tau \* \(1 - r\) = \[1\.\]"
    ):
        jnir.from_nir(graph, dt=0.5, dialect="spyx")
    jnir.from_nir(graph, dt=1.0, dialect="spyx")


def test_spyx_cannot_express_leak_or_input_weight():
    with pytest.raises(ValueError, match=r"'n0': v_leak != 0, which Spyx"):
        jnir.from_nir(
            chain(lif(tau=np.full(3, 10.0), r=np.full(3, 0.9), v_leak=np.ones(3))),
            dt=1.0,
            dialect="spyx",
        )
    with pytest.raises(ValueError, match=r"'n0': w_in != 1, which Spyx does not write"):
        jnir.from_nir(
            chain(
                cuba(
                    tau_mem=np.full(3, 10.0),
                    tau_syn=np.full(3, 5.0),
                    r=np.full(3, 0.9),
                    w_in=np.full(3, 2.0),
                )
            ),
            dt=1.0,
            dialect="spyx",
        )


def test_norse_needs_unit_resistance():
    with pytest.raises(ValueError, match=r"'n0': r != 1, which Norse does not write"):
        jnir.from_nir(chain(lif(r=np.full(3, 2.0))), dt=1e-3, dialect="norse")


def test_spec_refuses_jaxsnn_subtract_reset():
    node = cuba(metadata={"jaxsnn_reset": "subtract"})
    with pytest.raises(ValueError, match=r"'n0' declares reset 'subtract'.*dialect='jaxsnn'"):
        jnir.from_nir(chain(node), dt=1e-3, dialect="spec")
    with pytest.raises(ValueError, match=r"jaxsnn_reset='sideways' is not 'hard' or 'subtract'"):
        jnir.from_nir(chain(cuba(metadata={"jaxsnn_reset": "sideways"})), dt=1e-3, dialect="jaxsnn")


def test_nonpositive_time_constant():
    with pytest.raises(ValueError, match=r"'n0': tau must be > 0"):
        jnir.from_nir(chain(lif(tau=np.array([1e-3, 0.0, 1e-3]))), dt=1e-3, dialect="spec")


def test_parameter_shape_must_fit_the_input():
    with pytest.raises(
        ValueError,
        match=r"'n0': \w+ has shape \(2,\) but the node's input has "
        r"shape \(3,\)",
    ):
        jnir.from_nir(chain(lif(2)), dt=1e-3, dialect="spec")


def test_same_padding_with_stride_is_ambiguous_in_spec():
    node = nir.Conv2d(
        input_shape=(6, 6),
        weight=np.ones((2, 1, 3, 3)),
        stride=2,
        padding="same",
        dilation=1,
        groups=1,
        bias=np.zeros(2),
    )
    with pytest.raises(
        ValueError,
        match=r"'n0' \(Conv2d\): padding 'same' with stride \(2, 2\) is "
        r"ambiguous.*dialect='spyx'",
    ):
        jnir.from_nir(chain(node, input_shape=(1, 6, 6)), dt=1e-3, dialect="spec")


def test_conv_input_must_fit():
    node = nir.Conv2d(
        input_shape=(6, 6),
        weight=np.ones((2, 3, 3, 3)),
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=np.zeros(2),
    )
    with pytest.raises(ValueError, match=r"'n0' \(Conv2d\): input shape \(1, 6, 6\) does not fit"):
        jnir.from_nir(chain(node, input_shape=(1, 6, 6)), dt=1e-3, dialect="spec")


def test_delay_must_be_a_multiple_of_dt():
    with pytest.raises(
        ValueError,
        match=r"'n0' \(Delay\): delays .* are not non-negative "
        r"multiples of dt=0.001",
    ):
        jnir.from_nir(
            chain(nir.Delay(delay=np.array([1e-3, 1.5e-3, 0.0]))), dt=1e-3, dialect="spec"
        )


def test_flatten_dims_must_fit():
    node = nir.Flatten(input_type={"input": np.array([3])}, start_dim=1, end_dim=2)
    with pytest.raises(
        ValueError, match=r"'n0' \(Flatten\): dims start_dim=1, end_dim=2 do not fit"
    ):
        jnir.from_nir(chain(node), dt=1e-3, dialect="spec")


def test_graph_needs_one_input_and_one_output():
    nodes = {
        "a": nir.Input(input_type={"input": np.array([3])}),
        "b": nir.Input(input_type={"input": np.array([3])}),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    with pytest.raises(ValueError, match=r"has 2 Input and 1 Output nodes"):
        jnir.from_nir(graph_of(nodes, [("a", "output"), ("b", "output")]), dt=1e-3, dialect="spec")


def test_unreachable_node_is_not_dropped():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "lost": lif(),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    with pytest.raises(ValueError, match=r"\['lost'\] are not reachable from the Input"):
        jnir.from_nir(graph_of(nodes, [("input", "output")]), dt=1e-3, dialect="spec")


def test_edge_shape_mismatch_names_the_edge():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "a": lif(3),
        "w": nir.Linear(weight=np.ones((3, 3))),
        "b": lif(3),
        "bad": nir.Linear(weight=np.ones((4, 3))),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [
        ("input", "a"),
        ("a", "w"),
        ("w", "b"),
        ("input", "bad"),
        ("bad", "b"),
        ("b", "output"),
    ]
    with pytest.raises(
        ValueError,
        match=r"edge \('bad', 'b'\): 'bad' gives shape \(4,\) but 'b' "
        r"takes \(3,\)",
    ):
        jnir.from_nir(graph_of(nodes, edges), dt=1e-3, dialect="spec")


def test_edge_to_a_missing_node():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    with pytest.raises(ValueError, match=r"edge \('input', 'ghost'\) refers to a node 'ghost'"):
        jnir.from_nir(
            graph_of(nodes, [("input", "ghost"), ("input", "output")]), dt=1e-3, dialect="spec"
        )


def test_nested_graph_with_two_inputs_is_ambiguous():
    inner = graph_of(
        {
            "i1": nir.Input(input_type={"input": np.array([3])}),
            "i2": nir.Input(input_type={"input": np.array([3])}),
            "o": nir.Output(output_type={"output": np.array([3])}),
        },
        [("i1", "o"), ("i2", "o")],
    )
    outer = graph_of(
        {
            "input": nir.Input(input_type={"input": np.array([3])}),
            "sub": inner,
            "output": nir.Output(output_type={"output": np.array([3])}),
        },
        [("input", "sub"), ("sub", "output")],
    )
    with pytest.raises(ValueError, match=r"nested NIR graph 'sub' has 2 Input and 1 Output"):
        jnir.from_nir(outer, dt=1e-3, dialect="spec")


def test_stored_output_shape_must_match():
    nodes = {
        "input": nir.Input(input_type={"input": np.array([3])}),
        "a": lif(3),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    with pytest.raises(
        ValueError,
        match=r"Output node 'output' stores shape \(4,\) but the graph "
        r"computes \(3,\)",
    ):
        jnir.from_nir(graph_of(nodes, [("input", "a"), ("a", "output")]), dt=1e-3, dialect="spec")


def test_bad_source_and_dt():
    with pytest.raises(TypeError, match=r"graph_or_path must be a nir.NIRGraph or the path"):
        jnir.from_nir(42, dt=1e-3)
    with pytest.raises(FileNotFoundError, match=r"no NIR file at"):
        jnir.from_nir("/nonexistent/file.nir", dt=1e-3)
    with pytest.raises(ValueError, match=r"dt"):
        jnir.from_nir(chain(lif()), dt=0.0, dialect="spec")


# ------------------------------------------------------------------------------------------
# running an imported layer


@pytest.fixture(scope="module")
def imported():
    return jnir.from_nir(chain(nir.Linear(weight=np.ones((3, 3))), lif()), dt=1e-3, dialect="spec")


def test_apply_checks_its_inputs(imported):
    layer, params = imported
    with pytest.raises(ValueError, match=r"inputs must be \(time, 3\) for one sample"):
        layer.apply(params, jnp.ones((4, 2)))
    with pytest.raises(TypeError, match=r"inputs must have a floating-point dtype"):
        layer.apply(params, jnp.ones((4, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"inputs contains 1 NaN/inf"):
        layer.apply(params, jnp.ones((4, 3)).at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match=r"takes no external data"):
        layer.apply(params, jnp.ones((4, 3)), external=[1])
    with pytest.raises(ValueError, match=r"carry must be None \(rest\) or the GraphState"):
        layer.apply(params, jnp.ones((4, 3)), carry=(1, 2))
    with pytest.raises(TypeError, match=r"inputs must be an array"):
        layer.apply(params, [[1.0, 1.0, 1.0]])


def test_apply_checks_its_params(imported):
    layer, params = imported
    with pytest.raises(
        ValueError,
        match=r"params must be the dict returned by from_nir with keys "
        r"\['n0'\]",
    ):
        layer.apply({}, jnp.ones((4, 3)))
    with pytest.raises(ValueError, match=r"params\['n0'\] must have keys \['weight'\]"):
        layer.apply({"n0": {"w": params["n0"]["weight"]}}, jnp.ones((4, 3)))
    with pytest.raises(
        ValueError,
        match=r"params\['n0'\]\['weight'\] has shape \(2, 3\), "
        r"expected \(3, 3\)",
    ):
        layer.apply({"n0": {"weight": jnp.ones((2, 3))}}, jnp.ones((4, 3)))


def test_init_checks_the_input_shape(imported):
    layer, _ = imported
    assert layer.init(jax.random.PRNGKey(0), (7, 3))[0] == (7, 3)
    with pytest.raises(ValueError, match=r"takes inputs \(time, 3\) \(the file's Input node"):
        layer.init(jax.random.PRNGKey(0), (7, 4))
    with pytest.raises(TypeError, match=r"input_shape must be a tuple of ints"):
        layer.init(jax.random.PRNGKey(0), None)


# ------------------------------------------------------------------------------------------
# writing


DT = 1e-3
KW = dict(tau_syn=5e-3, tau_mem=1e-2, dt=DT)


def zeros(key, shape, dtype=jnp.float32):
    # The values do not matter here; zeros avoid compiling jax.random for every shape.
    return jnp.zeros(shape, dtype)


def init(net, shape):
    return net.init(jax.random.PRNGKey(0), shape)[1]


def test_to_nir_refuses_unknown_layers():
    net = jaxsnn.serial(LIF(4, weight_init=zeros, **KW), jaxsnn.stateless(stax.Relu))
    with pytest.raises(
        ValueError,
        match=r"layer 1 \(elementwise\) wraps the stax layer "
        r"'elementwise', which to_nir cannot write",
    ):
        jnir.to_nir(net, init(net, (5, 3)), (5, 3), dt=DT)
    from jaxsnn.event import ToSpikes

    net = jaxsnn.serial(LIF(4, weight_init=zeros, **KW), ToSpikes(dt=DT, capacity=8))
    with pytest.raises(ValueError, match=r"converts between spike buffers and dense grids"):
        jnir.to_nir(net, init(net, (5, 3)), (5, 3), dt=DT)
    custom = jaxsnn.Layer(
        lambda rng, shape: (shape, {}),
        lambda p, x, external=None, carry=None: (None, x, None),
        name="Custom",
    )
    with pytest.raises(ValueError, match=r"layer 0 \(Custom, .*\) is not a layer to_nir can write"):
        jnir.to_nir(custom, {}, (5, 3), dt=DT)


def test_to_nir_refuses_asymmetric_padding():
    net = jaxsnn.serial(
        Conv(2, 2, padding="SAME", weight_init=zeros), LIF((6, 6, 2), project=False, **KW)
    )
    with pytest.raises(
        ValueError,
        match=r"Conv\(2, 2\) pads \[\(0, 1\), \(0, 1\)\].*NIR's Conv2d "
        r"pads symmetrically",
    ):
        jnir.to_nir(net, init(net, (3, 6, 6, 1)), (3, 6, 6, 1), dt=DT)


def test_to_nir_refuses_a_trailing_channels_last_flatten():
    net = jaxsnn.serial(
        Conv(2, 3, padding="SAME", weight_init=zeros),
        LIF((6, 6, 2), project=False, **KW),
        jaxsnn.stateless(stax.Flatten),
    )
    with pytest.raises(ValueError, match=r"ends with a Flatten of a \(H, W, C\) tensor"):
        jnir.to_nir(net, init(net, (3, 6, 6, 1)), (3, 6, 6, 1), dt=DT)
    net = jaxsnn.serial(
        Conv(2, 3, padding="SAME", weight_init=zeros),
        LIF((6, 6, 2), project=False, **KW),
        jaxsnn.stateless(stax.Flatten),
        LIF(72, project=False, **KW),
    )
    with pytest.raises(ValueError, match=r"follows a Flatten of a \(H, W, C\) tensor"):
        jnir.to_nir(net, init(net, (3, 6, 6, 1)), (3, 6, 6, 1), dt=DT)


def test_to_nir_refuses_refractory_event_layers_unless_told():
    from jaxsnn.event import LIF as EventLIF

    net = EventLIF(
        3, tau_syn=5e-3, tau_mem=1e-2, t_ref=2e-3, capacity=8, t_max=0.02, weight_init=zeros
    )
    params = init(net, (2,))
    with pytest.raises(ValueError, match=r"refractory period t_ref=0.002.*ignore_refractory=True"):
        jnir.to_nir(net, params, (2,), dt=DT)
    graph = jnir.to_nir(net, params, (2,), dt=DT, ignore_refractory=True)
    np.testing.assert_array_equal(graph.nodes["layer0_lif"].metadata["jaxsnn_t_ref"], [2e-3] * 3)


def test_to_nir_refuses_mixed_and_bad_arguments():
    from jaxsnn.event import LIF as EventLIF

    event = EventLIF(3, tau_syn=5e-3, tau_mem=1e-2, capacity=8, t_max=0.02, weight_init=zeros)
    dense = Dense(2, weight_init=zeros)
    net = jaxsnn.serial(event, dense)
    params = [init(event, (2,)), init(dense, (5, 3))]
    with pytest.raises(ValueError, match=r"layer 1 \(Dense\(2\)\) is discrete but follows event"):
        jnir.to_nir(net, params, (2,), dt=DT)
    net = jaxsnn.serial(LIF(4, weight_init=zeros, **KW))
    with pytest.raises(TypeError, match=r"input_shape must be a tuple of ints"):
        jnir.to_nir(net, init(net, (5, 3)), None, dt=DT)
    with pytest.raises(ValueError, match=r"discrete networks take input_shape \(T, \*features\)"):
        jnir.to_nir(net, init(net, (5, 3)), (3,), dt=DT)
    with pytest.raises(TypeError, match=r"layer must be a jaxsnn Layer"):
        jnir.to_nir("net", None, (5, 3), dt=DT)
    with pytest.raises(ValueError, match=r"dt"):
        jnir.to_nir(net, init(net, (5, 3)), (5, 3), dt=-1.0)
