"""Networks wired by edges, including feedback: ``discrete_graph``, ``event_graph``.

A graph is a set of named nodes (layers or composites) and edges ``(source, target, delay)``
between them; ``"input"`` is the graph's input. An edge may point backwards (to the same or an
earlier node): a feedback edge. Each node's input is the merge of its incoming edges in the
order the edges are listed: ``"concat"`` (default; features stacked, spike indices offset) or
``"sum"``. The result is a ``Layer`` whose flat ``params``/``external``/``carry``/``recording``
hold the leaves of the nodes in the order the nodes are given, so it nests in ``serial`` and the
other combinators like any composite::

    input ──> h1 ──> h2 ──> out           discrete_graph(
               ^      │                       {"h1": LIF(64, ...), "h2": LIF(64, ...), "out": LI(3, ...)},
               └──────┘  (feedback)           [("input", "h1"), ("h1", "h2"), ("h2", "h1"), ("h2", "out")],
                                              output="out")

How it runs. The graph is split into strongly connected components. A node that is not on a
cycle runs on the whole window at once, exactly as in ``serial`` (one matrix multiply per
window, no step-wise loop), in topological order. Only the nodes of a cycle are simulated
together, step by step:

* discrete time: one ``lax.scan`` over the window advances every node of the cycle by one step
  (each node's ``apply`` on a window of length 1, its ``carry`` passed along). An edge with
  delay ``d`` delivers the source's output of step ``t - d``; a feedback edge defaults to
  ``d = 1`` (the source's output of the previous step), a forward edge to ``d = 0`` (same
  step). A cycle whose edges all have delay 0 is an algebraic loop and is rejected.
* event based: the nodes of a cycle (``population`` layers) are simulated exactly as one layer
  whose recurrent weights are block-structured: the block ``(source, target)`` holds the rows of
  the target's input weights that belong to that edge. A spike changes only the synaptic current
  of its targets, never a membrane potential directly, so delivering it at the same instant is
  exact (no algebraic loop); gradients are EventProp's for that layer (``gradient`` of the
  populations), propagated into the blocks by ``jax.grad``.
* event based, with delays: an edge of a cycle may carry a transmission delay ``d >= 0`` (a
  spike of the source at ``t`` reaches the target at ``t + d``), fixed in the ``Edge`` or
  learnable through a ``jaxsnn.event.Delay(per="layer")`` node on the cycle (source population
  -> Delay -> targets; its ``{"delay": ()}`` parameter is added to the edge delays). Each
  delayed connection delivers its source's spikes, in emission order, as input events at their
  exact arrival times, merged into the event scan (``jaxsnn.event.delayed``); gradients,
  including ``d loss / d delay``, by differentiating that exact simulation
  (``gradient="analytic"`` populations).

State. ``carry[k]`` is node ``k``'s own carry. A node whose outgoing edges are delayed also keeps
its last ``D`` outputs (``D`` = its largest outgoing delay): its carry entry (for a composite node,
that of its last leaf) is then a ``GraphCarry(state, history)`` with ``history`` of shape
``(D, *features)``, oldest first. ``carry=None`` (or a ``None`` entry) starts from rest, with zero
outputs before the window. A window simulated in chunks equals one run. In an event graph, a
population whose spikes travel along delayed edges keeps ``GraphCarry(state, history)`` with
``history`` the ``Spikes`` (times relative to the next window's start) still in transit; only
one window is kept, so chunking needs every delay shorter than the next chunk (else the
recording's ``overflow`` is set).
"""

from __future__ import annotations

import functools
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxsnn import spikes as spikes_lib
from jaxsnn._validate import is_concrete
from jaxsnn.compose import _check_layer, _Children, _first_kept, merge_concat, merge_sum
from jaxsnn.spikes import Spikes
from jaxsnn.types import Layer, layer_name

__all__ = [
    "INPUT",
    "Edge",
    "GraphCarry",
    "Population",
    "PopulationSpec",
    "discrete_graph",
    "event_graph",
    "population",
]

INPUT = "input"
MERGES = ("concat", "sum")


class Edge(NamedTuple):
    """A connection from ``source`` (a node name or ``"input"``) to ``target`` (a node name).

    Attributes:
        source: the node whose output is sent, or ``"input"``.
        target: the node that receives it.
        delay: discrete graphs: delay in time steps (``None``: 1 for a feedback edge, i.e. a
            target at or before the source in node order, else 0). Event graphs: a
            transmission time ``>= 0`` (``None``: 0), allowed > 0 only on the edges of a cycle
            (use ``jaxsnn.event.Delay`` nodes for delays on forward paths).
    """

    source: str
    target: str
    delay: Optional[int] = None


class GraphCarry(NamedTuple):
    """Carry entry of a node whose outgoing edges are delayed.

    Attributes:
        state: the node's (or its last leaf's) own carry.
        history: ``(D, *features)`` outputs of the node in the ``D`` steps before the next
            window, oldest first.
    """

    state: Any
    history: jax.Array


# ----------------------------------------------------------------------------- structure
class _Block(NamedTuple):
    members: Tuple[int, ...]  # node indices; cyclic blocks: in zero-delay topological order
    cyclic: bool


class _Plan(NamedTuple):
    names: Tuple[str, ...]
    layers: Tuple[Any, ...]
    edges: Tuple[Edge, ...]  # delays resolved to ints
    incoming: Tuple[Tuple[int, ...], ...]  # per node: edge indices, in edge-list order
    merge: Tuple[str, ...]
    depth: Tuple[int, ...]  # per node: largest delay of an outgoing edge (0: none)
    blocks: Tuple[_Block, ...]  # topological order
    order: Tuple[int, ...]  # all nodes, block by block
    output: Union[int, Tuple[int, ...]]


def _edge_label(edge: Edge) -> str:
    return f"edge {edge.source!r} -> {edge.target!r}"


def _as_edge(kind: str, position: int, edge: Any) -> Edge:
    if isinstance(edge, Edge):
        return edge
    if isinstance(edge, (tuple, list)) and len(edge) in (2, 3):
        return Edge(*edge)
    raise TypeError(
        f"{kind}: edge {position} must be an Edge or a (source, target[, delay]) tuple, got {edge!r}"
    )


def _strongly_connected(n: int, successors: Sequence[Sequence[int]]) -> List[List[int]]:
    """Tarjan's algorithm (iterative); components in reverse topological order."""
    index: Dict[int, int] = {}
    low: Dict[int, int] = {}
    on_stack = [False] * n
    stack: List[int] = []
    components: List[List[int]] = []
    counter = 0
    for root in range(n):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack[node] = True
            descended = False
            for position in range(child, len(successors[node])):
                nxt = successors[node][position]
                if nxt not in index:
                    work.append((node, position + 1))
                    work.append((nxt, 0))
                    descended = True
                    break
                if on_stack[nxt]:
                    low[node] = min(low[node], index[nxt])
            if descended:
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def _topological(nodes: Sequence[int], edges: Sequence[Tuple[int, int]]) -> Optional[List[int]]:
    """Kahn's algorithm, smallest index first among ready nodes; None if there is a cycle."""
    members = set(nodes)
    indegree = {k: 0 for k in nodes}
    successors: Dict[int, List[int]] = {k: [] for k in nodes}
    for src, dst in edges:
        if src in members and dst in members:
            indegree[dst] += 1
            successors[src].append(dst)
    ready = sorted(k for k in nodes if indegree[k] == 0)
    result = []
    while ready:
        k = ready.pop(0)
        result.append(k)
        for nxt in successors[k]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
                ready.sort()
    return result if len(result) == len(members) else None


def _plan(kind: str, nodes: Any, edges: Any, output: Any, merge: Any, event: bool) -> _Plan:
    if isinstance(nodes, Mapping):
        items = list(nodes.items())
    else:
        items = list(nodes)
    if not items:
        raise ValueError(f"{kind}: needs at least one node")
    names: List[str] = []
    layers: List[Any] = []
    for position, item in enumerate(items):
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"{kind}: nodes must be a dict name -> layer (or (name, layer) pairs), got {item!r}")
        name, layer = item
        if not isinstance(name, str) or not name:
            raise TypeError(f"{kind}: node names must be non-empty strings, got {name!r}")
        if name == INPUT:
            raise ValueError(f"{kind}: {INPUT!r} is the graph's input and cannot name a node")
        if name in names:
            raise ValueError(f"{kind}: node name {name!r} is used twice")
        _check_layer(position, layer, f"{kind}: node {name!r}")
        names.append(name)
        layers.append(layer)
    index = {name: k for k, name in enumerate(names)}

    parsed: List[Edge] = []
    seen = set()
    for position, raw in enumerate(edges):
        edge = _as_edge(kind, position, raw)
        if edge.source != INPUT and edge.source not in index:
            raise ValueError(
                f"{kind}: {_edge_label(edge)} starts at a missing node {edge.source!r}; "
                f"nodes are {names} (and {INPUT!r})"
            )
        if edge.target not in index:
            raise ValueError(
                f"{kind}: {_edge_label(edge)} ends at a missing node {edge.target!r}; nodes are {names}"
            )
        if (edge.source, edge.target) in seen:
            raise ValueError(f"{kind}: {_edge_label(edge)} is listed twice")
        seen.add((edge.source, edge.target))
        feedback = edge.source != INPUT and index[edge.target] <= index[edge.source]
        delay = edge.delay
        if event:
            if delay is None:
                delay = 0.0
            if (not isinstance(delay, (int, float, np.integer, np.floating)) or isinstance(delay, bool)
                    or not np.isfinite(delay) or delay < 0):
                raise ValueError(
                    f"{kind}: {_edge_label(edge)} has delay {delay!r}; event edge delays are "
                    "transmission times, finite and >= 0 (None or 0: no delay)"
                )
            delay = float(delay)
        else:
            if delay is None:
                delay = 1 if feedback else 0
            if not isinstance(delay, (int, np.integer)) or isinstance(delay, bool) or delay < 0:
                raise ValueError(f"{kind}: {_edge_label(edge)} has delay {delay!r}; delays are ints >= 0 (time steps)")
            delay = int(delay)
            if edge.source == INPUT and delay > 0:
                raise ValueError(
                    f"{kind}: {_edge_label(edge)} has delay {delay}; the graph input has no history "
                    "to delay; put a jaxsnn.discrete.Delay node after the input instead"
                )
        parsed.append(Edge(edge.source, edge.target, delay))
    if not parsed:
        raise ValueError(f"{kind}: needs at least one edge (from {INPUT!r})")
    n = len(names)
    incoming = tuple(
        tuple(e for e, edge in enumerate(parsed) if edge.target == name) for name in names
    )
    for k, name in enumerate(names):
        if not incoming[k]:
            raise ValueError(f"{kind}: node {name!r} has no incoming edge; connect it (e.g. ({INPUT!r}, {name!r}))")
    if not any(edge.source == INPUT for edge in parsed):
        raise ValueError(f"{kind}: no edge starts at {INPUT!r}, so the graph ignores its input")

    if isinstance(merge, str) or merge is None:
        merges = [merge or "concat"] * n
    elif isinstance(merge, Mapping):
        unknown = sorted(set(merge) - set(names))
        if unknown:
            raise ValueError(f"{kind}: merge names missing nodes {unknown}")
        merges = [merge.get(name, "concat") for name in names]
    else:
        raise TypeError(f"{kind}: merge must be 'concat', 'sum' or a dict node -> merge, got {merge!r}")
    for name, value in zip(names, merges):
        if value not in MERGES:
            raise ValueError(f"{kind}: merge of node {name!r} must be one of {MERGES}, got {value!r}")

    node_edges = [(index[e.source], index[e.target]) for e in parsed if e.source != INPUT]
    successors = [[dst for src, dst in node_edges if src == k] for k in range(n)]
    components = _strongly_connected(n, successors)
    component_of = {k: c for c, members in enumerate(components) for k in members}
    # Blocks in topological order of the condensation, earliest node first among ready ones.
    block_edges = {(component_of[s], component_of[d]) for s, d in node_edges if component_of[s] != component_of[d]}
    block_order = _topological(list(range(len(components))), sorted(block_edges))
    assert block_order is not None  # a condensation is acyclic
    blocks: List[_Block] = []
    for c in block_order:
        members = components[c]
        cyclic = len(members) > 1 or any(s == d == members[0] for s, d in node_edges)
        if cyclic and not event:
            zero = [(index[e.source], index[e.target]) for e in parsed
                    if e.source != INPUT and e.delay == 0 and index[e.source] in members and index[e.target] in members]
            ordered = _topological(members, zero)
            if ordered is None:
                raise ValueError(f"{kind}: {_zero_delay_cycle(parsed, names, members, index)}")
            members = ordered
        blocks.append(_Block(tuple(members), cyclic))
    depth = tuple(
        max([e.delay for e in parsed if e.source == name] + [0]) for name in names
    )
    if isinstance(output, str):
        if output not in index:
            raise ValueError(f"{kind}: output {output!r} is not a node; nodes are {names}")
        out: Union[int, Tuple[int, ...]] = index[output]
    else:
        try:
            outputs = tuple(output)
        except TypeError:
            raise TypeError(f"{kind}: output must be a node name or a sequence of names, got {output!r}") from None
        missing = [o for o in outputs if o not in index]
        if missing or not outputs:
            raise ValueError(f"{kind}: outputs {missing or outputs} are not nodes; nodes are {names}")
        out = tuple(index[o] for o in outputs)
    order = tuple(k for block in blocks for k in block.members)
    return _Plan(tuple(names), tuple(layers), tuple(parsed), incoming, tuple(merges), depth, tuple(blocks), order, out)


def _zero_delay_cycle(edges: Sequence[Edge], names: Sequence[str], members: Sequence[int], index) -> str:
    """Describe one cycle of zero-delay edges among ``members`` (naming its edges)."""
    member_names = {names[k] for k in members}
    zero = [e for e in edges if e.delay == 0 and e.source in member_names and e.target in member_names]
    successors: Dict[str, List[Edge]] = {}
    for e in zero:
        successors.setdefault(e.source, []).append(e)
    # Walk until a node repeats: the walk stays inside nodes that are on some zero-delay cycle.
    remaining = set(member_names)
    changed = True
    while changed:  # drop nodes without zero-delay successors/predecessors inside the set
        changed = False
        for name in list(remaining):
            has_out = any(e.target in remaining for e in successors.get(name, []))
            has_in = any(e.target == name and e.source in remaining for e in zero)
            if not (has_out and has_in):
                remaining.discard(name)
                changed = True
    start = min(remaining, key=lambda name: index[name])
    path: List[Edge] = []
    visited: Dict[str, int] = {}
    node = start
    while node not in visited:
        visited[node] = len(path)
        edge = next(e for e in successors[node] if e.target in remaining)
        path.append(edge)
        node = edge.target
    cycle = path[visited[node]:]
    described = ", ".join(_edge_label(e) for e in cycle)
    return (
        f"zero-delay algebraic loop through {described}: every edge of this cycle has delay 0, so "
        "each step's output would depend on itself; give one of them delay >= 1 (feedback edges "
        "default to 1)"
    )


# ----------------------------------------------------------------------------- shapes
def _output_shape(layer: Any, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """A layer's output shape for ``input_shape``, from its ``init`` traced abstractly."""
    found: List[Any] = []

    def trace(key):
        shape, params = layer[0](key, input_shape)
        found.append(shape)
        return params

    jax.eval_shape(trace, jax.random.PRNGKey(0))
    return _shape_tuple(found[0])


def _shape_tuple(shape: Any) -> Tuple[int, ...]:
    return tuple(int(s) for s in shape)


def _merged_shape(kind: str, plan: _Plan, k: int, parts: Sequence[Tuple[Edge, Tuple[int, ...]]]) -> Tuple[int, ...]:
    """The input shape of node ``k`` from the shapes its edges deliver (naming a bad edge)."""
    name = plan.names[k]
    first_edge, first = parts[0]
    if plan.merge[k] == "sum":
        for edge, shape in parts[1:]:
            if shape != first:
                raise ValueError(
                    f"{kind}: {_edge_label(edge)} delivers shape {shape} but {_edge_label(first_edge)} "
                    f"delivers {first}; node {name!r} sums its inputs (merge='sum'), so they must have "
                    "one shape"
                )
        return first
    for edge, shape in parts[1:]:
        if not shape or len(shape) != len(first) or shape[:-1] != first[:-1]:
            raise ValueError(
                f"{kind}: {_edge_label(edge)} delivers shape {shape} but {_edge_label(first_edge)} "
                f"delivers {first}; node {name!r} concatenates its inputs along the last axis, so "
                "they must agree in every other axis"
            )
    return first[:-1] + (sum(shape[-1] for _, shape in parts),)


def _node_error(kind: str, plan: _Plan, k: int, shape, parts, error: Exception) -> Exception:
    inputs = ", ".join(f"{_edge_label(edge)} {s}" for edge, s in parts)
    wrapped = type(error)(
        f"{kind}: node {plan.names[k]!r} ({layer_name(plan.layers[k])}) cannot take input shape "
        f"{shape} (from {inputs}): {error}"
    )
    return wrapped


def _resolve_shapes(kind: str, plan: _Plan, input_shape: Tuple[int, ...]):
    """Input and output shape of every node (feedback sources are resolved by iteration)."""
    n = len(plan.names)
    out: Dict[Any, Tuple[int, ...]] = {INPUT: tuple(input_shape)}
    ins: Dict[int, Tuple[int, ...]] = {}
    complete = [False] * n
    for _ in range(n + 2):
        changed = False
        for k in plan.order:
            parts = [(plan.edges[e], out[_source(plan, e)]) for e in plan.incoming[k] if _source(plan, e) in out]
            if not parts:
                continue
            full = len(parts) == len(plan.incoming[k])
            if not full:
                # Provisional: some feedback sources are not known yet. Failures are retried.
                try:
                    shape = _merged_shape(kind, plan, k, parts)
                    new = _output_shape(plan.layers[k], shape)
                except (ValueError, TypeError):
                    continue
            else:
                shape = _merged_shape(kind, plan, k, parts)
                try:
                    new = _output_shape(plan.layers[k], shape)
                except (ValueError, TypeError) as error:
                    raise _node_error(kind, plan, k, shape, parts, error) from error
                ins[k] = shape
            if out.get(k) != new:
                out[k] = new
                changed = True
            complete[k] = full
        if not changed and all(complete):
            return ins, out
    missing = [plan.names[k] for k in range(n) if not complete[k]]
    raise ValueError(
        f"{kind}: cannot determine the input shapes of nodes {missing}: their feedback sources' "
        "output shapes depend on them; check that every node's output shape does not depend on its "
        "feedback input"
    )


def _source(plan: _Plan, e: int) -> Any:
    source = plan.edges[e].source
    return INPUT if source == INPUT else plan.names.index(source)


def _graph_init(kind: str, plan: _Plan, children: _Children):
    def init(rng: jax.Array, input_shape: Any):
        input_shape = _shape_tuple(input_shape)
        ins, outs = _resolve_shapes(kind, plan, input_shape)
        params: List[Any] = []
        keys = jax.random.split(rng, len(plan.names))
        for k, (layer, key) in enumerate(zip(plan.layers, keys)):
            _, node_params = layer[0](key, ins[k])
            children.extend(k, params, node_params)
        if isinstance(plan.output, tuple):
            return tuple(outs[k] for k in plan.output), params
        return outs[plan.output], params

    return init


def _select_output(plan: _Plan, values: Dict[int, Any]) -> Any:
    if isinstance(plan.output, tuple):
        return tuple(values[k] for k in plan.output)
    return values[plan.output]


def _merge(kind: str, plan: _Plan, k: int, values: Sequence[Any], sizes: Optional[Sequence[int]] = None) -> Any:
    label = f"{kind}: node {plan.names[k]!r}"
    if len(values) == 1:
        return values[0]
    if plan.merge[k] == "sum":
        return merge_sum(label, values)
    return merge_concat(label, values, sizes)


# ----------------------------------------------------------------------------- carry handling
def _split_carry(plan: _Plan, children: _Children, carry: Optional[Sequence[Any]]):
    """Per node: (its carry share without the history, its history or None)."""
    shares, histories = [], []
    for k in range(len(plan.names)):
        share = children.part(k, carry)
        history = None
        if plan.depth[k]:
            last = share[-1] if children.composite[k] and share is not None else share
            if isinstance(last, GraphCarry):
                history = last.history
                last = last.state
            elif last is not None:
                raise ValueError(
                    f"node {plan.names[k]!r}: its outgoing edges are delayed, so its carry entry must be "
                    f"None or the GraphCarry(state, history) returned by a previous call, got {type(last).__name__}"
                )
            if children.composite[k] and share is not None:
                share = list(share[:-1]) + [last]
            else:
                share = last
        shares.append(share)
        histories.append(history)
    return shares, histories


def _join_carry(plan: _Plan, children: _Children, k: int, state: Any, history: Any) -> Any:
    if not plan.depth[k]:
        return state
    if children.composite[k]:
        return list(state[:-1]) + [GraphCarry(state[-1], history)]
    return GraphCarry(state, history)


def _run_node(children: _Children, k: int, params, inputs, external_share, carry_share):
    layer = children.layers[k]
    node_params = children.part(k, params)
    return layer[1](node_params, inputs, external=external_share, carry=carry_share)


# ----------------------------------------------------------------------------- discrete graphs
def _window_value(plan: _Plan, e: int, outputs: Dict[Any, Any], before: Dict[int, Any]) -> Any:
    """What edge ``e`` delivers over the whole window: the source output delayed by ``d`` steps."""
    edge = plan.edges[e]
    source = _source(plan, e)
    value = outputs[source]
    if edge.delay == 0:
        return value
    history = before[source]
    depth = history.shape[0]
    full = jnp.concatenate([history.astype(value.dtype), value], axis=0)
    start = depth - edge.delay
    return full[start:start + value.shape[0]]


def _stack_steps(first: Any, rest: Any, n_rest: int) -> Any:
    """Join step 0's value with the scanned steps 1..T-1 along time.

    Leaves with a leading axis of length 1 (a window of one step) are concatenated along it;
    other leaves get a new leading time axis.
    """

    def join(a, b):
        a = jnp.asarray(a)
        if a.ndim >= 1 and a.shape[0] == 1:
            return jnp.concatenate([a, b.reshape((n_rest,) + a.shape[1:])], axis=0)
        return jnp.concatenate([a[None], b], axis=0)

    if n_rest == 0:
        return jax.tree_util.tree_map(lambda a: a if jnp.ndim(a) >= 1 and jnp.shape(a)[0] == 1 else jnp.asarray(a)[None], first)
    return jax.tree_util.tree_map(join, first, rest)


def discrete_graph(
    nodes: Union[Mapping[str, Any], Sequence[Tuple[str, Any]]],
    edges: Sequence[Any],
    output: Union[str, Sequence[str]],
    *,
    merge: Union[str, Mapping[str, str]] = "concat",
) -> Layer:
    """A discrete-time network of named nodes and edges, feedback allowed (see module doc).

    Args:
        nodes: ``{name: layer}`` (or ``(name, layer)`` pairs) in the order of the flat lists.
            Layers take and give ``(time, *features)`` arrays; composites (``serial``, ...) are
            allowed and contribute all their leaves.
        edges: ``Edge(source, target, delay=None)`` or ``(source, target[, delay])`` tuples;
            ``source`` may be ``"input"``. ``delay`` in time steps (>= 0); default 1 for a
            feedback edge (target at or before source in node order), else 0.
        output: the node whose output the graph returns, or several (a tuple is returned).
        merge: how a node combines several incoming edges, in edge-list order: ``"concat"``
            (along the last axis) or ``"sum"``; one value or a dict per node.

    Returns:
        A composite ``Layer`` (``leaves`` = total leaves of the nodes). ``init(rng, (T,
        *features))`` returns the output shape and flat params; ``apply(params, inputs,
        external=None, carry=None)`` returns ``(carry, outputs, recording)``. Inside a cycle a
        node's recording is that of its one-step windows joined along time (leaves without a
        leading time axis get one).

    Raises:
        TypeError: malformed nodes, edges or merge.
        ValueError: at construction, an edge to or from a missing node, a duplicate edge, a
            negative or non-integer delay, a delayed edge from the input, a node without
            incoming edges, a zero-delay cycle (algebraic loop; the message names its edges);
            at ``init``, a shape mismatch (naming the edge) or a node that cannot take its
            merged input; at ``apply``, flat lists of the wrong length or a bad carry entry.
    """
    kind = "discrete_graph"
    plan = _plan(kind, nodes, edges, output, merge, event=False)
    children = _Children(plan.layers)
    init = _graph_init(kind, plan, children)
    # One jitted step-wise simulation per cycle, built once: eager calls compile it once per
    # input shape instead of re-tracing the scan on every call; inside a caller's jit it inlines.
    cycle_runners = {
        block: jax.jit(functools.partial(_run_cycle, kind, plan, children, block))
        for block in plan.blocks if block.cyclic
    }

    def apply(params, inputs, external=None, carry=None):
        children.check(kind, params, external, carry)
        inputs = jnp.asarray(inputs)
        shares, histories = _split_carry(plan, children, carry)
        outputs: Dict[Any, Any] = {INPUT: inputs}
        before: Dict[int, Any] = {}
        states: Dict[int, Any] = {}
        records: Dict[int, Any] = {}
        for block in plan.blocks:
            if not block.cyclic:
                k = block.members[0]
                x = _merge(kind, plan, k, [_window_value(plan, e, outputs, before) for e in plan.incoming[k]])
                state, y, record = _run_node(children, k, params, x, children.part(k, external), shares[k])
                outputs[k], states[k], records[k] = y, state, record
                if plan.depth[k]:
                    before[k] = histories[k] if histories[k] is not None else jnp.zeros(
                        (plan.depth[k],) + tuple(y.shape[1:]), y.dtype)
                continue
            members = block.members
            member_set = set(members)
            # What edges from outside the cycle deliver, over the whole window (one value per step).
            outside = {
                e: _window_value(plan, e, outputs, before)
                for k in members for e in plan.incoming[k] if _source(plan, e) not in member_set
            }
            results = cycle_runners[block](
                params, {k: children.part(k, external) for k in members}, {k: shares[k] for k in members},
                {k: histories[k] for k in members if plan.depth[k]}, outside, inputs,
            )
            for k, (y, state, record, history) in results.items():
                outputs[k], states[k], records[k] = y, state, record
                if plan.depth[k]:
                    before[k] = history
        new_carry: List[Any] = []
        recording: List[Any] = []
        for k in range(len(plan.names)):
            history = None
            if plan.depth[k]:
                y = outputs[k]
                history = jnp.concatenate([before[k].astype(y.dtype), y], axis=0)[-plan.depth[k]:]
            children.extend(k, new_carry, _join_carry(plan, children, k, states[k], history))
            children.extend(k, recording, records[k])
        return new_carry, _select_output(plan, outputs), recording

    name = "discrete_graph(" + ", ".join(plan.names) + ")"
    return Layer(init, apply, name=name, leaves=children.n_leaves)


def _run_cycle(kind, plan, children, block, params, node_external, shares, histories, outside, inputs):
    """Simulate the nodes of one cycle step by step in one ``lax.scan``.

    Returns ``{node: (outputs (T, ...), final carry, recording, history before the window)}``.
    """
    members = block.members
    member_set = set(members)
    n_steps = inputs.shape[0]
    shapes = _resolve_shapes(kind, plan, (1,) + tuple(inputs.shape[1:]))[1]
    delayed = [k for k in members if plan.depth[k]]

    def step(layer_states, history, outside_t, external_t):
        produced: Dict[int, Any] = {}
        new_states, step_records = {}, {}
        for k in members:
            parts = []
            for e in plan.incoming[k]:
                source = _source(plan, e)
                edge = plan.edges[e]
                if source not in member_set:
                    parts.append(outside_t[e])
                elif edge.delay == 0:
                    parts.append(produced[source])
                else:
                    parts.append(history[source][plan.depth[source] - edge.delay])
            x = _merge(kind, plan, k, parts)[None]
            state, y, record = _run_node(children, k, params, x, external_t[k], layer_states[k])
            produced[k] = y[0]
            new_states[k], step_records[k] = state, record
        new_history = {
            k: jnp.concatenate([history[k][1:], produced[k][None].astype(history[k].dtype)], axis=0)
            for k in delayed
        }
        return new_states, new_history, produced, step_records

    def at(tree, t):
        return jax.tree_util.tree_map(lambda a: a[t], tree)

    def first_external():
        return {k: jax.tree_util.tree_map(lambda a: a[0:1], node_external[k]) for k in members}

    def initial_history(dtypes):
        result = {}
        for k in delayed:
            if histories.get(k) is not None:
                result[k] = jnp.asarray(histories[k])
            else:
                result[k] = jnp.zeros((plan.depth[k],) + tuple(shapes[k][1:]), dtypes[k])
        return result

    # The dtype of each node's output decides the dtype of its zero history: find it abstractly.
    dtypes = {k: inputs.dtype for k in delayed}
    for _ in range(len(members) + 2):
        probe = jax.eval_shape(
            lambda: step({k: shares[k] for k in members}, initial_history(dtypes), at(outside, 0), first_external())[2]
        )
        found = {k: probe[k].dtype for k in delayed}
        if found == dtypes:
            break
        dtypes = found
    history0 = initial_history(dtypes)
    first_states, history1, first_out, first_records = step(
        {k: shares[k] for k in members}, history0, at(outside, 0), first_external()
    )
    if n_steps > 1:
        rest_outside = jax.tree_util.tree_map(lambda a: a[1:], outside)
        # Leaves of external data are time-major; step t gets a[t:t+1].
        rest_external = {
            k: jax.tree_util.tree_map(lambda a: a[1:], node_external[k]) for k in members
        }

        def body(carry, xs):
            layer_states, history = carry
            outside_t, external_t = xs
            external_t = {k: jax.tree_util.tree_map(lambda a: a[None], external_t[k]) for k in members}
            new_states, new_history, produced, step_records = step(layer_states, history, outside_t, external_t)
            return (new_states, new_history), (produced, step_records)

        (last_states, _), (rest_out, rest_records) = jax.lax.scan(
            body, (first_states, history1), (rest_outside, rest_external)
        )
    else:
        last_states, rest_out, rest_records = first_states, None, None
    results = {}
    for k in members:
        if rest_out is None:
            y = first_out[k][None]
        else:
            y = jnp.concatenate([first_out[k][None], rest_out[k]], axis=0)
        record = _stack_steps(first_records[k], None if rest_records is None else rest_records[k], n_steps - 1)
        results[k] = (y, last_states[k], record, history0.get(k))
    return results


# ----------------------------------------------------------------------------- event populations
class PopulationSpec(NamedTuple):
    """What an event graph needs to know about a ``population`` node to simulate cycles.

    Attributes:
        size: number of neurons.
        neuron: ``jaxsnn.event.LIFParameters``.
        capacity: output spike capacity.
        t_max: end of the window.
        kernel: next-spike kernel option.
        gradient: ``"eventprop"`` or ``"analytic"``.
        recurrent: whether the population has its own ``recurrent_weight``.
        checked: raise on capacity overflow.
    """

    size: int
    neuron: Any
    capacity: int
    t_max: float
    kernel: str
    gradient: str
    recurrent: bool
    checked: bool


class Population(Layer):
    """An event LIF layer that also carries its ``PopulationSpec`` (see ``population``)."""

    def __new__(cls, init, apply, *, name: Optional[str] = None, spec: PopulationSpec) -> "Population":
        self = super().__new__(cls, init, apply, name=name)
        self._spec = spec
        return self

    @property
    def spec(self) -> PopulationSpec:
        """The population's neuron parameters, capacity, window and gradient method."""
        return self._spec

    def _replace(self, **fields: Any) -> "Population":
        unknown = set(fields) - {"init", "apply"}
        if unknown:
            raise ValueError(f"Layer._replace: unknown fields {sorted(unknown)}; use init or apply")
        return Population(fields.get("init", self.init), fields.get("apply", self.apply),
                          name=getattr(self, "_name", None), spec=self._spec)


def population(
    size: int,
    *,
    recurrent: bool = False,
    tau_syn: Any = 5e-3,
    tau_mem: Any = 1e-2,
    v_th: Any = 1.0,
    v_reset: Any = 0.0,
    v_leak: Any = 0.0,
    t_ref: Any = 0.0,
    capacity: int,
    t_max: float,
    kernel: str = "auto",
    gradient: str = "eventprop",
    checked: bool = False,
    **weights: Any,
) -> Population:
    """An event LIF layer usable on a cycle of an ``event_graph``.

    On its own (or in ``serial``) it is exactly ``jaxsnn.event.LIF`` (``RecurrentLIF`` with
    ``recurrent=True``) with the same arguments; the returned ``Population`` also carries the
    neuron parameters, which an event graph needs to simulate a cycle as one layer.

    Args:
        size, tau_syn, tau_mem, v_th, v_reset, v_leak, t_ref, capacity, t_max, kernel,
            gradient, checked: as for ``jaxsnn.event.LIF``.
        recurrent: build a ``RecurrentLIF`` (own all-to-all ``recurrent_weight``).
        **weights: ``weight_init``, ``weight_scale``, ``weight_mean``, ``dtype`` (and
            ``recurrent_init``, ``recurrent_scale``, ``recurrent_mean`` with ``recurrent``).

    Returns:
        A ``Population`` (a ``Layer``).

    Raises:
        ValueError, TypeError: as ``jaxsnn.event.LIF``.
    """
    from jaxsnn.event.layers import LIF, RecurrentLIF
    from jaxsnn.event.neuron import LIFParameters

    factory = RecurrentLIF if recurrent else LIF
    base = factory(size, tau_syn=tau_syn, tau_mem=tau_mem, v_th=v_th, v_reset=v_reset, v_leak=v_leak,
                   t_ref=t_ref, capacity=capacity, t_max=t_max, kernel=kernel, gradient=gradient,
                   checked=checked, **weights)
    neuron = LIFParameters(tau_syn=tau_syn, tau_mem=tau_mem, v_th=v_th, v_reset=v_reset, v_leak=v_leak, t_ref=t_ref)
    spec = PopulationSpec(int(size), neuron, int(capacity), float(t_max), kernel, gradient, bool(recurrent), bool(checked))
    return Population(base.init, base.apply, name=base.name, spec=spec)


# ----------------------------------------------------------------------------- event graphs
def _combined_neuron(specs: Sequence[PopulationSpec]):
    """One ``LIFParameters`` for the members of a cycle: scalars when shared, else per neuron."""
    from jaxsnn.event.neuron import LIFParameters

    fields = {}
    for name in LIFParameters._fields:
        values = [np.asarray(getattr(spec.neuron, name), np.float64) for spec in specs]
        if all(v.ndim == 0 for v in values) and all(float(v) == float(values[0]) for v in values):
            fields[name] = float(values[0])
        else:
            fields[name] = np.concatenate([np.broadcast_to(v, (spec.size,)) for v, spec in zip(values, specs)])
    return LIFParameters(**fields)


class _CycleLayout(NamedTuple):
    populations: Tuple[int, ...]  # node indices, in node order (= neuron layout)
    delay_nodes: Tuple[int, ...]  # Delay(per="layer") nodes on the cycle
    delayed: bool  # some connection of the cycle is delayed
    history: Tuple[int, ...]  # populations whose spikes travel along a delayed connection


def _cycle_layout(kind: str, plan: _Plan, block: _Block) -> _CycleLayout:
    """Check the nodes of one cycle and find its delayed connections (construction time)."""
    from jaxsnn.event.delay import DelayLayer

    members = sorted(block.members)
    cycle = [plan.names[m] for m in members]
    populations, delay_nodes = [], []
    for k in members:
        layer = plan.layers[k]
        if isinstance(layer, Population):
            populations.append(k)
        elif isinstance(layer, DelayLayer):
            if layer.spec.per != "layer" or layer.spec.t_max is not None:
                raise ValueError(
                    f"{kind}: node {plan.names[k]!r} ({layer_name(layer)}) is on a cycle (nodes {cycle}); "
                    "a Delay on a cycle must be Delay(per='layer') without t_max (one delay for all "
                    "its spikes; the graph keeps the pending spikes itself)"
                )
            incoming = [plan.edges[e] for e in plan.incoming[k]]
            sources = [e.source for e in incoming]
            if len(incoming) != 1 or sources[0] == INPUT or plan.names.index(sources[0]) not in block.members \
                    or not isinstance(plan.layers[plan.names.index(sources[0])], Population):
                raise ValueError(
                    f"{kind}: node {plan.names[k]!r} ({layer_name(layer)}) is on a cycle (nodes {cycle}) "
                    f"and receives {', '.join(_edge_label(e) for e in incoming)}; a Delay on a cycle must "
                    "receive exactly one edge, from a population of the same cycle"
                )
            delay_nodes.append(k)
        else:
            raise ValueError(
                f"{kind}: node {plan.names[k]!r} ({layer_name(layer)}) is on a cycle "
                f"(nodes {cycle}) but is not a jaxsnn.graph.population (or a jaxsnn.event.Delay); only "
                "spiking populations (and delays between them) can be simulated exactly together"
            )
    specs = [plan.layers[k].spec for k in populations]
    for attribute in ("t_max", "gradient"):
        values = {getattr(spec, attribute) for spec in specs}
        if len(values) > 1:
            raise ValueError(
                f"{kind}: the populations on the cycle {cycle} must share {attribute}, got {sorted(values)}"
            )
    history = set()
    delayed_labels = []
    for k in populations:
        for e in plan.incoming[k]:
            edge = plan.edges[e]
            if edge.source == INPUT or plan.names.index(edge.source) not in block.members:
                continue
            source = plan.names.index(edge.source)
            if source in delay_nodes:
                source = plan.names.index(plan.edges[plan.incoming[source][0]].source)
            elif edge.delay == 0:
                continue
            history.add(source)
            delayed_labels.append(_edge_label(edge))
    delayed = bool(delayed_labels)
    if delayed and specs[0].gradient != "analytic":
        raise ValueError(
            f"{kind}: the cycle {cycle} has delayed connections ({', '.join(delayed_labels)}); its "
            "populations need gradient='analytic' (exact gradients by differentiating the exact "
            "simulation; EventProp's adjoint does not cover delayed feedback)"
        )
    return _CycleLayout(tuple(populations), tuple(delay_nodes), delayed, tuple(sorted(history)))


def event_graph(
    nodes: Union[Mapping[str, Any], Sequence[Tuple[str, Any]]],
    edges: Sequence[Any],
    output: Union[str, Sequence[str]],
    *,
    input_size: int,
    merge: Union[str, Mapping[str, str]] = "concat",
) -> Layer:
    """An event-based network of named nodes and edges, feedback allowed (see module doc).

    Nodes off cycles may be any event layers (``jaxsnn.event.LIF``, ``LI``, ``Delay``, ...) and
    run one after another on the whole window. Nodes on a cycle must be ``population`` layers
    sharing ``t_max`` and ``gradient``; they are simulated exactly, together, as one layer with
    block-structured recurrent weights (capacity: the sum of theirs; each node's output holds its
    own earliest ``capacity`` spikes, ``overflow`` flags a node that had more). Spikes travel
    along edges without delay, unless an edge of a cycle has a delay or a
    ``jaxsnn.event.Delay(per="layer")`` node (without ``t_max``) sits on the cycle between two
    populations: then every spike arrives exactly ``d`` later (see the module doc; the scan has
    ``input slots + sum of capacities + sum over delayed edges of the source's capacity (twice
    with a carry)`` steps).

    Args:
        nodes: ``{name: layer}`` (or ``(name, layer)`` pairs) in the order of the flat lists.
        edges: ``Edge(source, target, delay=None)`` or ``(source, target[, delay])`` tuples
            (``source`` may be ``"input"``); ``delay``: a time ``>= 0``, > 0 only on the edges
            of a cycle.
        output: the node whose output is returned, or several (a tuple is returned).
        input_size: number of input neurons (the ``Spikes`` buffer does not say; spike merges
            with index offsets need it).
        merge: ``"concat"`` (indices of the ``k``-th incoming edge offset by the sizes of the
            earlier ones; the target's input weights are stacked in the same order) or
            ``"sum"`` (one index space); one value or a dict per node.

    Returns:
        A composite ``Layer``: ``init(rng, (input_size,))``; ``apply(params, spikes,
        external=None, carry=None) -> (carry, outputs, recording)``.

    Raises:
        TypeError: malformed nodes, edges or merge.
        ValueError: at construction, as ``discrete_graph`` (missing nodes, duplicates), a
            negative or non-finite delay, a delay > 0 on an edge outside a cycle (each naming
            the edge), a node on a cycle that is not a ``population`` or a
            ``Delay(per="layer")`` fed by one population of the cycle, populations on one cycle
            with different ``t_max`` or ``gradient``, a cycle with delays whose populations do
            not use ``gradient="analytic"``; at ``init``, shape mismatches (naming the edge); at
            ``apply``, an edge into a cycle that does not carry ``Spikes``, external spikes for
            only some nodes of a cycle, a bad carry entry, or (``checked``) a capacity overflow.
    """
    kind = "event_graph"
    if not isinstance(input_size, (int, np.integer)) or isinstance(input_size, bool) or input_size < 1:
        raise ValueError(f"{kind}: input_size must be an int >= 1 (number of input neurons), got {input_size!r}")
    input_size = int(input_size)
    plan = _plan(kind, nodes, edges, output, merge, event=True)
    children = _Children(plan.layers)
    layouts = {block: _cycle_layout(kind, plan, block) for block in plan.blocks if block.cyclic}
    block_of = {k: block for block in plan.blocks for k in block.members}
    for edge in plan.edges:
        if edge.delay > 0 and not (edge.source != INPUT and block_of[plan.names.index(edge.source)].cyclic
                                   and block_of[plan.names.index(edge.source)] is block_of[plan.names.index(edge.target)]):
            raise ValueError(
                f"{kind}: {_edge_label(edge)} has delay {edge.delay!r} but is not inside a cycle; event "
                "graphs delay spikes on the edges of a cycle (simulated exactly); on a forward path "
                "put a jaxsnn.event.Delay node instead"
            )
    graph_init = _graph_init(kind, plan, children)
    # One jitted exact simulation per cycle, built once (eager calls compile it once per shape).
    cycle_runners = {
        block: jax.jit(functools.partial(_event_cycle_core, kind, plan, children, block, layouts[block], input_size))
        for block in plan.blocks if block.cyclic
    }

    def init(rng, input_shape):
        if _shape_tuple(input_shape) != (input_size,):
            raise ValueError(f"{kind}: input shape must be ({input_size},) (input_size), got {tuple(input_shape)}")
        return graph_init(rng, input_shape)

    def apply(params, inputs, external=None, carry=None):
        children.check(kind, params, external, carry)
        if not isinstance(inputs, Spikes):
            raise TypeError(f"{kind}: inputs must be jaxsnn.Spikes, got {type(inputs).__name__}")
        with jax.ensure_compile_time_eval():
            spikes_lib.validate(inputs, n_neurons=input_size, name=f"{kind} input spikes")
        shares = [children.part(k, carry) for k in range(len(plan.names))]
        _, shapes = _resolve_shapes(kind, plan, (input_size,))
        sizes = {INPUT: input_size, **{k: int(shapes[k][-1]) for k in range(len(plan.names))}}
        outputs: Dict[Any, Any] = {INPUT: inputs}
        states: Dict[int, Any] = {}
        records: Dict[int, Any] = {}
        for block in plan.blocks:
            if not block.cyclic:
                k = block.members[0]
                sources = [_source(plan, e) for e in plan.incoming[k]]
                x = _merge(kind, plan, k, [outputs[s] for s in sources], [sizes[s] for s in sources])
                states[k], outputs[k], records[k] = _run_node(
                    children, k, params, x, children.part(k, external), shares[k])
                continue
            _run_event_cycle(kind, plan, children, block, layouts[block], cycle_runners[block], params,
                             external, shares, outputs, states, records)
        new_carry: List[Any] = []
        recording: List[Any] = []
        for k in range(len(plan.names)):
            children.extend(k, new_carry, states[k])
            children.extend(k, recording, records[k])
        return new_carry, _select_output(plan, outputs), recording

    name = "event_graph(" + ", ".join(plan.names) + ")"
    return Layer(init, apply, name=name, leaves=children.n_leaves)


def _cycle_sources(plan: _Plan, block: _Block) -> List[Any]:
    """Sources outside a cycle that feed it, each once, in order of first appearance."""
    member_set = set(block.members)
    outside: List[Any] = []
    for k in sorted(block.members):
        for e in plan.incoming[k]:
            source = _source(plan, e)
            if source not in member_set and source not in outside:
                outside.append(source)
    return outside


def _run_event_cycle(kind, plan, children, block, layout, runner, params, external, shares, outputs, states, records):
    """Simulate the populations of one cycle exactly as one layer with block recurrent weights.

    Checks what can be checked on Python values here, runs the jitted ``runner`` and raises for
    ``checked`` populations whose capacity overflowed.
    """
    members = list(layout.populations)
    names = [plan.names[k] for k in sorted(block.members)]
    outside = _cycle_sources(plan, block)
    for source in outside:
        if not isinstance(outputs[source], Spikes):
            label = INPUT if source == INPUT else plan.names[source]
            raise ValueError(
                f"{kind}: node {label!r} feeds the cycle {names} but gives "
                f"{type(outputs[source]).__name__}, not Spikes"
            )
    for k in layout.delay_nodes:
        if children.part(k, external) is not None:
            raise ValueError(f"{kind}: node {plan.names[k]!r} (a Delay on the cycle {names}) takes no external data")
        if shares[k] is not None:
            raise ValueError(f"{kind}: node {plan.names[k]!r} (a Delay on the cycle {names}) keeps no carry, got one")
    member_external = [children.part(k, external) for k in members]
    if any(x is None for x in member_external) and not all(x is None for x in member_external):
        missing = [plan.names[k] for k, x in zip(members, member_external) if x is None]
        raise ValueError(
            f"{kind}: external spikes were given for some nodes of the cycle {names} "
            f"but not for {missing}; a cycle is simulated as one layer, so give all or none"
        )
    specs = {k: plan.layers[k].spec for k in members}
    if specs[members[0]].gradient != "eventprop" and member_external[0] is not None:
        raise ValueError(f"{kind}: external spikes need gradient='eventprop'")
    member_carry = []
    for k in members:
        share = shares[k]
        if k in layout.history:
            if share is not None and not isinstance(share, GraphCarry):
                raise ValueError(
                    f"{kind}: node {plan.names[k]!r}: its spikes travel along delayed edges, so its carry "
                    "entry must be None or the GraphCarry(state, history) returned by a previous call, "
                    f"got {type(share).__name__}"
                )
        member_carry.append(share)
    results, overflow = runner(
        params, [outputs[source] for source in outside], member_external, member_carry
    )
    for k, value in results.items():
        outputs[k], states[k], records[k] = value
    if any(specs[k].checked for k in members):
        if is_concrete(overflow):
            if bool(overflow):
                raise ValueError(
                    f"{kind}: the cycle {names} emitted more spikes than a node's capacity "
                    f"({[specs[k].capacity for k in members]}); increase the capacities"
                )
        else:
            checkify.check(~overflow, f"{kind}: the cycle {names} overflowed a node's capacity; increase the capacities")


def _event_cycle_core(kind, plan, children, block, layout, input_size, params, outside_values, member_external, member_carry):
    """The numeric part of ``_run_event_cycle`` (jitted once per cycle).

    Neuron layout: the populations in node order. A connection from a population of the cycle
    (directly with delay 0) is a block of the recurrent weights; one with a delay (an edge delay
    > 0, or a path through a ``Delay`` node) is a delayed connection of
    ``jaxsnn.event.delayed.simulate_delayed``; one from outside is a block of the input weights.
    """
    from jaxsnn.event.delay import clip_delay, delay_spikes, DelayRecording
    from jaxsnn.event.delayed import simulate_delayed
    from jaxsnn.event.dynamics import rest_state
    from jaxsnn.event.eventprop import simulate_eventprop
    from jaxsnn.event.kernels import resolve_kernel
    from jaxsnn.event.layers import LIFRecording
    from jaxsnn.event.neuron import LIFParameters, LIFState
    from jaxsnn.event.simulate import simulate

    _, shapes = _resolve_shapes(kind, plan, (input_size,))
    sizes = {INPUT: input_size, **{k: int(shapes[k][-1]) for k in range(len(plan.names))}}
    members = list(layout.populations)  # neuron layout: node order
    member_set = set(block.members)
    specs = {k: plan.layers[k].spec for k in members}
    offsets, total = {}, 0
    for k in members:
        offsets[k] = total
        total += specs[k].size
    outside = _cycle_sources(plan, block)
    in_offsets, n_outside = {}, 0
    for source in outside:
        in_offsets[source] = n_outside
        n_outside += sizes[source]

    weights = {k: jnp.asarray(children.part(k, params)["weight"]) for k in members}
    dtype = jnp.result_type(*weights.values(), *[value.time for value in outside_values])

    def node_delay(d):
        """A Delay node's clipped delay and the delay of the edge into it."""
        layer = plan.layers[d]
        into = plan.edges[plan.incoming[d][0]]
        value = clip_delay(jnp.asarray(children.part(d, params)["delay"], dtype), layer.spec.max_delay)
        return plan.names.index(into.source), value + into.delay

    input_weight = jnp.zeros((max(n_outside, 1), total), dtype)
    recurrent_weight = jnp.zeros((total, total), dtype)
    delayed_weight, delayed_source, delayed_value = [], [], []
    for k in members:
        row = 0
        for e in plan.incoming[k]:
            edge = plan.edges[e]
            source = _source(plan, e)
            n_source = sizes[source]
            block_rows = weights[k][row:row + n_source].astype(dtype)
            columns = slice(offsets[k], offsets[k] + specs[k].size)
            if source not in member_set:
                rows = slice(in_offsets[source], in_offsets[source] + n_source)
                input_weight = input_weight.at[rows, columns].add(block_rows)
            elif source in layout.delay_nodes or edge.delay > 0:
                if source in layout.delay_nodes:
                    origin, value = node_delay(source)
                    value = value + edge.delay
                else:
                    origin, value = source, jnp.asarray(edge.delay, dtype)
                delayed_weight.append(jnp.zeros((n_source, total), dtype).at[:, columns].set(block_rows))
                delayed_source.append(members.index(origin))
                delayed_value.append(value)
            else:
                rows = slice(offsets[source], offsets[source] + n_source)
                recurrent_weight = recurrent_weight.at[rows, columns].add(block_rows)
            if plan.merge[k] == "concat":
                row += n_source
        if specs[k].recurrent:
            own = slice(offsets[k], offsets[k] + specs[k].size)
            recurrent_weight = recurrent_weight.at[own, own].add(
                jnp.asarray(children.part(k, params)["recurrent_weight"], dtype))
    if outside:
        merged_inputs = merge_concat(kind, list(outside_values), [sizes[s] for s in outside])
    else:
        merged_inputs = spikes_lib.empty(1, dtype)
    neuron = _combined_neuron([specs[k] for k in members])
    kernels = {resolve_kernel(specs[k].kernel, specs[k].neuron) for k in members}
    kernel = kernels.pop() if len(kernels) == 1 else "root"
    capacity = sum(specs[k].capacity for k in members)
    t_max = specs[members[0]].t_max
    gradient = specs[members[0]].gradient

    states = [c.state if isinstance(c, GraphCarry) else c for c in member_carry]
    if all(c is None for c in states):
        initial_state = None
    else:
        parts = []
        for k, c in zip(members, states):
            parts.append(rest_state(specs[k].size, specs[k].neuron, dtype) if c is None else LIFState(*c))
        initial_state = LIFState(*[jnp.concatenate([jnp.asarray(p[f], dtype) for p in parts]) for f in range(3)])
    results: Dict[int, Any] = {}
    overflows = []
    if layout.delayed:
        history = []
        for k, c in zip(members, member_carry):
            if isinstance(c, GraphCarry):
                history.append(Spikes(jnp.asarray(c.history.time, dtype), c.history.idx))
            else:
                history.append(spikes_lib.empty(1, dtype))
        result = simulate_delayed(
            input_weight,
            Spikes(merged_inputs.time.astype(dtype), merged_inputs.idx),
            LIFParameters(*[jnp.asarray(value, dtype) for value in neuron]),
            jnp.asarray(t_max, dtype),
            recurrent_weight,
            tuple(delayed_weight),
            jnp.stack(delayed_value),
            initial_state,
            tuple(history),
            sizes=tuple(specs[k].size for k in members),
            capacities=tuple(specs[k].capacity for k in members),
            sources=tuple(delayed_source),
            method=kernel,
        )
        for g, k in enumerate(members):
            low, high = offsets[k], offsets[k] + specs[k].size
            spikes = result.spikes[g]
            overflow = result.overflow[g]
            state = LIFState(*[field[low:high] for field in result.final_state])
            if k in layout.history:
                state = GraphCarry(state, result.history[g])
            results[k] = (spikes, state, LIFRecording(spikes=spikes, overflow=overflow))
            overflows.append(overflow)
    else:
        if member_external[0] is None:
            external_spikes = None
        else:
            external_spikes = merge_concat(kind, list(member_external), [specs[k].size for k in members])
        if gradient == "eventprop":
            result = simulate_eventprop(
                input_weight, merged_inputs, neuron, capacity=capacity, t_max=t_max, kernel=kernel,
                recurrent_weight=recurrent_weight, initial_state=initial_state, external_spikes=external_spikes,
            )
        else:
            result = simulate(
                input_weight, merged_inputs, neuron, capacity=capacity, t_max=t_max, kernel=kernel,
                recurrent_weight=recurrent_weight, initial_state=initial_state,
            )
        for k in members:
            low, high = offsets[k], offsets[k] + specs[k].size
            mine = (result.spikes.idx >= low) & (result.spikes.idx < high)
            spikes, count = _first_kept(result.spikes.time, result.spikes.idx - low, mine, specs[k].capacity)
            overflow = result.overflow | (count > specs[k].capacity)
            state = LIFState(*[field[low:high] for field in result.final_state])
            results[k] = (spikes, state, LIFRecording(spikes=spikes, overflow=overflow))
            overflows.append(overflow)
    for d in layout.delay_nodes:
        origin, value = node_delay(d)
        # What the Delay node itself gives (to edges leaving the cycle): its source's spikes, shifted.
        shifted = delay_spikes(results[origin][0], value)
        results[d] = (shifted, None, DelayRecording(shifted, jnp.zeros((), bool)))
    return results, jnp.any(jnp.stack(overflows))
