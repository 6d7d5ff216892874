"""From a NIR graph to one jaxsnn ``Layer``: flattening, shapes, scheduling and execution.

Scheduling. The flattened graph is split into strongly connected components. A node on no
feedback loop runs over the whole window at once (a stateless node as one array operation,
e.g. one ``(T, n_in) @ (n_in, n_out)`` matrix multiply; a neuron as one ``lax.scan`` of its
elementwise update), in topological order. The nodes of each feedback loop advance together in
one ``lax.scan`` over time. Inside a loop, a node's same-step inputs must be computed before it,
which is possible unless the loop passes only through feed-through nodes; there, one edge per
cycle delivers its source's output of the previous step (zeros at rest): the last edge leaving
a stateful node (a neuron's spikes) on the cycle that a depth-first search from the loop's
entry (in the file's edge order) closes, or the closing edge itself if the cycle has no
stateful node. A node that fires from its previous state (``Node.emit``) breaks a loop without
that delay.

Summation. Several edges into one node are summed, inputs from outside a loop first, then in
the file's edge order.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsnn._validate import check_finite, check_float_dtype
from jaxsnn.nir._dialects import Dialect
from jaxsnn.nir._node import Node, NodeRecord, sum_inputs
from jaxsnn.types import Layer

Array = jax.Array
Shape = Tuple[int, ...]


def require_nir():
    """Import ``nir`` or explain how to install it."""
    try:
        import nir  # noqa: F401
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "jaxsnn.nir needs the 'nir' package: pip install -e '.[nir]' (or pip install nir)"
        ) from None
    return nir


def load(graph_or_path: Any):
    """A ``nir.NIRGraph`` from a graph or a file path (read without NIR's type check)."""
    nir = require_nir()
    if isinstance(graph_or_path, (str, bytes, os.PathLike)):
        path = os.fspath(graph_or_path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no NIR file at {path!r}")
        return nir.read(path, type_check=False)
    if isinstance(graph_or_path, nir.NIRGraph):
        return graph_or_path
    raise TypeError(
        "graph_or_path must be a nir.NIRGraph or the path of a NIR file, got "
        f"{type(graph_or_path).__name__}"
    )


def _type_name(node: Any) -> str:
    return type(node).__name__


def flatten_graph(graph: Any, dialect: Dialect) -> Tuple[Dict[str, Any], List[Tuple[str, str]]]:
    """Inline nested ``NIRGraph`` nodes (``"outer.inner"`` names), keeping edge order.

    The nested graph's Input and Output nodes disappear: an edge into the nested graph goes to
    every target of its Input, an edge out of it leaves from every source of its Output; edges
    inside a nested graph follow the edges of the enclosing graph.
    """
    return _inline(graph.nodes, graph.edges, dialect, "the NIR graph")


def _inline(raw_nodes, raw_edges, dialect, where):
    nodes: Dict[str, Any] = {}
    for key, node in raw_nodes.items():
        nodes[str(key)] = node
    edges = [(str(a), str(b)) for a, b in raw_edges]
    for a, b in edges:
        for end in (a, b):
            if end not in nodes:
                raise ValueError(
                    f"{where}: edge ({a!r}, {b!r}) refers to a node {end!r} that does not exist"
                )
    flat: Dict[str, Any] = {}
    ports: Dict[str, Tuple[List[str], List[str]]] = {}
    inner_edges: List[Tuple[str, str]] = []
    for key, node in nodes.items():
        if _type_name(node) != "NIRGraph":
            if key in flat:
                raise ValueError(f"{where}: node name {key!r} is used twice")
            flat[key] = node
            continue
        sub_nodes = {str(k): v for k, v in node.nodes.items()}
        sub_edges = [(str(a), str(b)) for a, b in node.edges]
        sub_nodes, sub_edges = dialect.rewrite_subgraph(key, sub_nodes, sub_edges)
        sub_flat, sub_flat_edges = _inline(sub_nodes, sub_edges, dialect, f"nested graph {key!r}")
        inputs = [k for k, v in sub_flat.items() if _type_name(v) == "Input"]
        outputs = [k for k, v in sub_flat.items() if _type_name(v) == "Output"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"nested NIR graph {key!r} has {len(inputs)} Input and {len(outputs)} Output "
                "nodes; an edge to or from it is ambiguous unless it has exactly one of each"
            )
        (sub_in,), (sub_out,) = inputs, outputs
        for a, b in sub_flat_edges:
            if a == sub_out or b == sub_in:
                raise ValueError(
                    f"nested NIR graph {key!r}: edge ({a!r}, {b!r}) leaves its Output or enters "
                    "its Input"
                )
        prefix = key + "."
        ports[key] = (
            [prefix + b for a, b in sub_flat_edges if a == sub_in],
            [prefix + a for a, b in sub_flat_edges if b == sub_out],
        )
        for k, v in sub_flat.items():
            if k in (sub_in, sub_out):
                continue
            if prefix + k in nodes or prefix + k in flat:
                raise ValueError(f"{where}: node name {prefix + k!r} is used twice")
            flat[prefix + k] = v
        for a, b in sub_flat_edges:
            if a == sub_in and b == sub_out:
                raise ValueError(f"nested NIR graph {key!r} connects its Input to its Output")
            if a != sub_in and b != sub_out:
                inner_edges.append((prefix + a, prefix + b))
    out_edges: List[Tuple[str, str]] = []
    for a, b in edges:
        sources = ports[a][1] if a in ports else [a]
        targets = ports[b][0] if b in ports else [b]
        out_edges.extend((s, t) for s in sources for t in targets)
    out_edges.extend(inner_edges)
    return flat, list(dict.fromkeys(out_edges))


def _shape_of(value: Any) -> Optional[Shape]:
    if value is None:
        return None
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
        if value is None:
            return None
    try:
        return tuple(int(s) for s in np.ravel(np.asarray(value)))
    except (TypeError, ValueError):
        return None


def _tarjan(names: List[str], successors: Dict[str, List[str]]) -> List[List[str]]:
    """Strongly connected components (iterative Tarjan), in reverse topological order."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack = set()
    stack: List[str] = []
    components: List[List[str]] = []
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, iter(successors[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors[child])))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


class Group(NamedTuple):
    """Nodes advanced together step by step (a feedback loop)."""

    members: Tuple[str, ...]  # all members, file order
    order: Tuple[str, ...]  # feed-through members in evaluation order
    emitters: Tuple[str, ...]  # members without feed-through (output from state)
    delayed: frozenset  # edges (src, dst) that deliver the previous step
    external: Tuple[str, ...]  # sources outside the group read by members


class GraphState(NamedTuple):
    """``carry`` of an imported graph: the state of every stateful node and, for edges that
    deliver the previous step, their sources' last outputs."""

    nodes: Dict[str, Any]
    previous: Dict[str, Array]


class Program(NamedTuple):
    """Everything needed to run an imported graph (static)."""

    nodes: Dict[str, Node]
    input_name: str
    input_shape: Shape
    output_name: str
    output_shape: Shape
    sources: Dict[str, Tuple[str, ...]]
    plan: Tuple[Any, ...]  # node names (whole window) and Groups
    dialect: Dialect
    dt: float


def build_program(graph: Any, dialect: Dialect, dt: float, spike_fn) -> Program:
    """Flatten, type and schedule ``graph`` under ``dialect`` at step ``dt``."""
    nodes, edges = flatten_graph(graph, dialect)
    inputs = [k for k, v in nodes.items() if _type_name(v) == "Input"]
    outputs = [k for k, v in nodes.items() if _type_name(v) == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"the NIR graph has {len(inputs)} Input and {len(outputs)} Output nodes ({inputs}, "
            f"{outputs}); jaxsnn.nir imports graphs with exactly one of each"
        )
    input_name, output_name = inputs[0], outputs[0]
    input_shape = _shape_of(nodes[input_name].input_type)
    if input_shape is None:
        raise ValueError(f"the Input node {input_name!r} has no shape")
    input_shape = dialect.io_shape(input_shape)
    for a, b in edges:
        if b == input_name:
            raise ValueError(f"edge ({a!r}, {b!r}) enters the Input node")
        if a == output_name:
            raise ValueError(f"edge ({a!r}, {b!r}) leaves the Output node")
    sources_in_file: Dict[str, List[str]] = {k: [] for k in nodes}
    for a, b in edges:
        sources_in_file[b].append(a)
    internal = [k for k in nodes if k not in (input_name, output_name)]

    built: Dict[str, Node] = {}
    shapes: Dict[str, Shape] = {input_name: input_shape}
    progress = True
    while progress:
        progress = False
        for key in internal:
            if key in built:
                continue
            known = [s for s in sources_in_file[key] if s in shapes]
            if not known:
                continue
            node = dialect.build(key, nodes[key], shapes[known[0]], dt, spike_fn)
            built[key] = node
            shapes[key] = node.out_shape
            progress = True
    missing = [k for k in internal if k not in built]
    if missing:
        raise ValueError(
            f"NIR nodes {missing} are not reachable from the Input node {input_name!r}; every "
            "node must be driven from the Input (nothing is dropped silently)"
        )
    for a, b in edges:
        if b == output_name:
            continue
        if shapes[a] != built[b].in_shape:
            raise ValueError(
                f"NIR edge ({a!r}, {b!r}): {a!r} gives shape {shapes[a]} but {b!r} takes "
                f"{built[b].in_shape}"
            )
    if not sources_in_file[output_name]:
        raise ValueError(f"the Output node {output_name!r} has no incoming edge")
    out_shapes = {shapes[s] for s in sources_in_file[output_name]}
    if len(out_shapes) != 1:
        raise ValueError(f"edges into the Output node carry different shapes {sorted(out_shapes)}")
    output_shape = out_shapes.pop()
    stored = _shape_of(getattr(nodes[output_name], "output_type", None))
    stored = None if stored is None else dialect.io_shape(stored)
    if stored is not None and stored != output_shape and int(np.prod(stored)) != 0:
        raise ValueError(
            f"the Output node {output_name!r} stores shape {stored} but the graph computes "
            f"{output_shape} under dialect {dialect.name!r}"
        )

    successors = {k: [b for a, b in edges if a == k and b in built] for k in internal}
    components = _tarjan(internal, successors)[::-1]  # topological order
    position = {k: i for i, k in enumerate(internal)}
    plan: List[Any] = []
    sources: Dict[str, Tuple[str, ...]] = {}
    for component in components:
        members = sorted(component, key=position.get)
        looped = len(members) > 1 or members[0] in successors[members[0]]
        if not looped:
            sources[members[0]] = tuple(sources_in_file[members[0]])
            plan.append(members[0])
            continue
        plan.append(_group(members, built, sources_in_file, sources))
    sources[output_name] = tuple(sources_in_file[output_name])
    return Program(
        built,
        input_name,
        tuple(input_shape),
        output_name,
        output_shape,
        sources,
        tuple(plan),
        dialect,
        dt,
    )


def _delayed_edges(members, depends, entries, built) -> set:
    """Edges that deliver the previous step, so that the same-step dependencies are acyclic.

    A depth-first search from the loop's entries (members driven from outside the loop, in
    file order) finds the edge that closes each cycle; the delay is put on the last edge of
    that cycle that leaves a stateful node (a neuron's spikes, rather than a stateless node's
    output, so that e.g. the bias of a recurrent ``Affine`` acts from the first step), or on
    the closing edge when the cycle has no stateful node. Repeated until no cycle is left.
    """
    delayed: set = set()

    def successors(node):
        return [
            t for t in members if t in depends and node in depends[t] and (node, t) not in delayed
        ]

    while True:
        state: Dict[str, str] = {}
        parent: Dict[str, str] = {}
        back: List[Tuple[str, str]] = []
        for root in entries + list(members):
            if root in state:
                continue
            state[root] = "open"
            stack = [(root, iter(successors(root)))]
            while stack:
                node, children = stack[-1]
                for child in children:
                    if state.get(child) == "open":
                        back.append((node, child))
                    elif child not in state:
                        state[child] = "open"
                        parent[child] = node
                        stack.append((child, iter(successors(child))))
                        break
                else:
                    state[node] = "done"
                    stack.pop()
        if not back:
            return delayed
        for u, v in back:
            chosen = (u, v)
            if not built[u].stateful:
                node = u
                while node != v and node in parent:
                    if built[parent[node]].stateful:
                        chosen = (parent[node], node)
                        break
                    node = parent[node]
            delayed.add(chosen)


def _group(members, built, sources_in_file, sources) -> Group:
    member_set = set(members)
    for key in members:
        outside = [s for s in sources_in_file[key] if s not in member_set]
        inside = [s for s in sources_in_file[key] if s in member_set]
        sources[key] = tuple(outside + inside)
    feed = [k for k in members if built[k].feedthrough]
    emitters = tuple(k for k in members if not built[k].feedthrough)
    # Same-step dependencies: an edge into a feed-through member.
    depends = {k: [s for s in sources[k] if s in member_set] for k in feed}
    entries = [k for k in members if any(s not in member_set for s in sources[k])]
    delayed = _delayed_edges(members, depends, entries, built)
    # Evaluation order of the feed-through members: dependencies without delayed edges.
    remaining = {k: [s for s in depends[k] if s in depends and (s, k) not in delayed] for k in feed}
    order: List[str] = []
    while remaining:
        ready = [k for k in feed if k in remaining and not remaining[k]]
        if not ready:  # pragma: no cover - the depth-first search removes every cycle
            raise RuntimeError(f"could not order the feedback loop {members}")
        for k in ready:
            order.append(k)
            del remaining[k]
        for k in remaining:
            remaining[k] = [s for s in remaining[k] if s not in ready]
    external = tuple(dict.fromkeys(s for k in members for s in sources[k] if s not in member_set))
    return Group(tuple(members), tuple(order), emitters, frozenset(delayed), external)


# --------------------------------------------------------------------------------------------
# execution


def _node_params(params: Dict[str, Any], key: str) -> Dict[str, Any]:
    return params.get(key, {})


def _window(node: Node, p: Any, x: Array, state: Any, dtype: Any):
    """Run one node over the whole window; returns (state, y, record)."""
    if not node.stateful:
        y = node.apply(p, x)
        return None, y, NodeRecord(y)
    state = node.init_state(dtype) if state is None else state

    def body(s, x_t):
        s, y_t = node.step(p, s, [x_t])
        return s, (y_t, s)

    state, (y, trace) = lax.scan(body, state, x)
    return state, y, NodeRecord(y, trace)


def _run_group(group: Group, program: Program, params, values, carry_nodes, carry_prev, dtype):
    nodes = program.nodes
    members = group.members
    member_set = set(members)
    states0 = {
        k: (carry_nodes.get(k) if carry_nodes.get(k) is not None else nodes[k].init_state(dtype))
        for k in members
        if nodes[k].stateful
    }
    delayed_sources = tuple(dict.fromkeys(s for s, _ in sorted(group.delayed)))
    prev0 = {
        s: (carry_prev[s] if s in carry_prev else jnp.zeros(nodes[s].out_shape, dtype))
        for s in delayed_sources
    }
    xs = {s: values[s] for s in group.external}

    def inputs_of(key, ext_t, outs, prev):
        collected = []
        for s in program.sources[key]:
            if s not in member_set:
                collected.append(ext_t[s])
            elif (s, key) in group.delayed:
                collected.append(prev[s])
            else:
                collected.append(outs[s])
        return collected

    def step_of(key):
        node = nodes[key]
        return node.loop_step if node.loop_step is not None else node.step

    def body(carry, ext_t):
        states, prev = carry
        outs: Dict[str, Array] = {}
        new_states = dict(states)
        for key in group.emitters:
            outs[key] = nodes[key].emit(_node_params(params, key), states[key])
        for key in group.order:
            node = nodes[key]
            p = _node_params(params, key)
            collected = inputs_of(key, ext_t, outs, prev)
            if node.stateful:
                new_states[key], outs[key] = step_of(key)(p, states[key], collected)
            else:
                outs[key] = node.apply(p, sum_inputs(collected))
        for key in group.emitters:
            collected = inputs_of(key, ext_t, outs, prev)
            new_states[key], _ = step_of(key)(_node_params(params, key), states[key], collected)
        new_prev = {s: outs[s] for s in delayed_sources}
        return (new_states, new_prev), (outs, new_states)

    (states_T, prev_T), (outs, traces) = lax.scan(body, (states0, prev0), xs)
    records = {
        k: NodeRecord(outs[k], traces.get(k) if nodes[k].stateful else None) for k in members
    }
    return states_T, prev_T, outs, records


def run_program(
    program: Program, params: Dict[str, Any], inputs: Array, carry: Optional[GraphState]
):
    """Run the imported graph on one sample ``inputs (T, *input_shape)``."""
    dtype = jnp.result_type(inputs.dtype, *jax.tree_util.tree_leaves(params))
    inputs = inputs.astype(dtype)
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), params)
    carry_nodes = {} if carry is None else dict(carry.nodes)
    carry_prev = {} if carry is None else dict(carry.previous)
    values: Dict[str, Array] = {program.input_name: inputs}
    records: Dict[str, NodeRecord] = {}
    new_nodes: Dict[str, Any] = {}
    new_prev: Dict[str, Array] = {}
    for entry in program.plan:
        if isinstance(entry, Group):
            states, prev, outs, recs = _run_group(
                entry, program, params, values, carry_nodes, carry_prev, dtype
            )
            new_nodes.update(states)
            new_prev.update(prev)
            values.update(outs)
            records.update(recs)
            continue
        node = program.nodes[entry]
        x = sum_inputs([values[s] for s in program.sources[entry]])
        state, y, record = _window(
            node, _node_params(params, entry), x, carry_nodes.get(entry), dtype
        )
        if node.stateful:
            new_nodes[entry] = state
        values[entry] = y
        records[entry] = record
    output = sum_inputs([values[s] for s in program.sources[program.output_name]])
    return GraphState(new_nodes, new_prev), output, records


def initial_params(program: Program, dtype: Any) -> Dict[str, Dict[str, Array]]:
    """The file's parameters as JAX arrays of ``dtype`` (only nodes that have parameters)."""
    return {
        key: {k: jnp.asarray(v, dtype) for k, v in node.params.items()}
        for key, node in program.nodes.items()
        if node.params
    }


def make_layer(program: Program, params0: Dict[str, Any], label: str) -> Layer:
    """The jaxsnn ``Layer`` running ``program`` (see ``jaxsnn.nir.from_nir``)."""
    expected = {k: {f: tuple(np.shape(v)) for f, v in d.items()} for k, d in params0.items()}
    n_time_dims = 1

    def init(rng, input_shape):
        del rng
        try:
            shape = tuple(int(s) for s in input_shape)
        except TypeError:
            raise TypeError(
                f"{label}: input_shape must be a tuple of ints, got {input_shape!r}"
            ) from None
        if shape[n_time_dims:] != program.input_shape or len(shape) != 1 + len(program.input_shape):
            raise ValueError(
                f"{label} takes inputs (time, {', '.join(map(str, program.input_shape))}) (the "
                f"file's Input node, channels first), got input shape {shape}"
            )
        return (shape[0],) + tuple(program.output_shape), params0

    def check_params(params):
        if not isinstance(params, dict) or set(params) != set(expected):
            got = sorted(params) if isinstance(params, dict) else type(params).__name__
            raise ValueError(
                f"{label}: params must be the dict returned by from_nir with keys "
                f"{sorted(expected)}, got {got}"
            )
        for key, fields in expected.items():
            if not isinstance(params[key], dict) or set(params[key]) != set(fields):
                raise ValueError(f"{label}: params[{key!r}] must have keys {sorted(fields)}")
            for f, shape in fields.items():
                value = params[key][f]
                check_float_dtype(f"{label}: params[{key!r}][{f!r}]", value)
                if tuple(jnp.shape(value)) != shape:
                    raise ValueError(
                        f"{label}: params[{key!r}][{f!r}] has shape {tuple(jnp.shape(value))}, "
                        f"expected {shape}"
                    )
        check_finite(f"{label}: params", params)

    def apply(params, inputs, external=None, carry=None):
        if external is not None:
            raise ValueError(f"{label} takes no external data (external must be None)")
        if not hasattr(inputs, "shape") or not hasattr(inputs, "dtype"):
            raise TypeError(f"{label}: inputs must be an array, got {type(inputs).__name__}")
        check_float_dtype(f"{label}: inputs", inputs)
        if tuple(inputs.shape[1:]) != program.input_shape or inputs.ndim != 1 + len(
            program.input_shape
        ):
            raise ValueError(
                f"{label}: inputs must be (time, {', '.join(map(str, program.input_shape))}) "
                f"for one sample (batch with jax.vmap), got shape {tuple(inputs.shape)}"
            )
        check_finite(f"{label}: inputs", inputs)
        check_params(params)
        if carry is not None and not isinstance(carry, GraphState):
            raise ValueError(
                f"{label}: carry must be None (rest) or the GraphState returned by a previous call"
            )
        return run_program(program, params, inputs, carry)

    return Layer(init, apply, name=label)
