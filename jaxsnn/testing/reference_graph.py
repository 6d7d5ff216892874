"""Float64 NumPy references for networks wired as graphs, with feedback and delays.

Plain Python and NumPy, written to be obviously correct rather than fast; nothing here uses JAX.

* ``simulate_discrete_graph``: an explicit loop over time steps; at every step the nodes are
  updated in the given order and an edge with delay ``d`` reads the source's output of step
  ``t - d`` (the current step for ``d = 0``, which must come from a node updated earlier).
* ``simulate_event_graph``: exact event-based populations connected by edges, solved by
  *waveform relaxation* on top of the single-layer reference ``reference.simulate_event``:
  starting from silent populations, every population is simulated over the whole window with
  the spike trains the others produced so far, until a sweep changes nothing. A fixed point is a
  consistent solution of the coupled network (every population's output is exactly its response
  to the others' outputs). Each sweep extends the time up to which the iterate agrees with the
  true solution past the next event, because a threshold crossing depends only on the inputs
  before it, so the iteration terminates; it is capped and raises if it does not.
  Edges may carry axonal delays (per edge, or per source neuron).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from jaxsnn.testing.reference import simulate_event

__all__ = ["simulate_discrete_graph", "simulate_event_graph"]

INPUT = "input"


def _edges(edges: Sequence[Any]):
    parsed = []
    for edge in edges:
        source, target = edge[0], edge[1]
        delay = edge[2] if len(edge) > 2 else 0
        parsed.append((source, target, delay))
    return parsed


def simulate_discrete_graph(
    nodes: Mapping[str, Mapping[str, Any]],
    edges: Sequence[Any],
    inputs: Any,
    *,
    merge: Optional[Mapping[str, str]] = None,
) -> Dict[str, np.ndarray]:
    """Discrete-time graph, step by step, in float64.

    Node specs (``nodes[name]``, in update order):

    * ``{"kind": "lif", "weight", "tau_syn", "tau_mem", "dt", "v_th"=1, "v_reset"=0,
      "v_leak"=0, "reset"="subtract"}``: ``I_t = a_syn I_{t-1} + x_t W``,
      ``v_t = v_leak + a_mem (v_{t-1} - v_leak) + (1 - a_mem) I_t``, spike ``z_t = [v_t > v_th]``,
      reset by subtraction (``v -= z (v_th - v_reset)``) or to ``v_reset``; output ``z_t``;
    * ``{"kind": "li", ...}``: the same without threshold; output ``v_t``;
    * ``{"kind": "dense", "weight"}``: ``y_t = x_t W``;
    * ``{"kind": "tanh", "size"}``: ``y_t = tanh(x_t)`` (``size`` is only needed when a delayed
      edge reads the node before its first output).

    ``x_t`` is the concatenation (or, with ``merge[name] == "sum"``, the sum) of the node's
    incoming edges in edge-list order; an edge ``(source, target, delay)`` delivers the source's
    output of step ``t - delay`` (zero before the window).

    Args:
        nodes: ordered node specs (see above).
        edges: ``(source, target)`` or ``(source, target, delay)``; ``source`` may be ``"input"``.
        inputs: ``(T, n_in)``.
        merge: optional ``{name: "concat" | "sum"}``.

    Returns:
        ``{name: (T, size) outputs}``.

    Raises:
        ValueError: a zero-delay edge from a node that is updated later (or itself), or an
            unknown node kind.
    """
    inputs = np.asarray(inputs, np.float64)
    names = list(nodes)
    position = {name: k for k, name in enumerate(names)}
    parsed = _edges(edges)
    for source, target, delay in parsed:
        if delay == 0 and source != INPUT and position[source] >= position[target]:
            raise ValueError(f"zero-delay edge {source!r} -> {target!r} reads a node not yet updated")
    merge = dict(merge or {})
    n_steps = inputs.shape[0]
    history: Dict[str, list] = {INPUT: [inputs[t] for t in range(n_steps)]}
    state: Dict[str, Dict[str, np.ndarray]] = {}
    for name in names:
        history[name] = []
        spec = nodes[name]
        if spec["kind"] in ("lif", "li"):
            size = np.asarray(spec["weight"]).shape[1]
            state[name] = {"v": np.full(size, float(spec.get("v_leak", 0.0))), "current": np.zeros(size)}
    for t in range(n_steps):
        for name in names:
            spec = nodes[name]
            parts = []
            for source, target, delay in parsed:
                if target != name:
                    continue
                if t - delay < 0:
                    size = _output_size(nodes, source, inputs)
                    parts.append(np.zeros(size))
                else:
                    parts.append(history[source][t - delay])
            if merge.get(name, "concat") == "sum":
                x = np.sum(parts, axis=0)
            else:
                x = np.concatenate(parts)
            kind = spec["kind"]
            if kind == "dense":
                y = x @ np.asarray(spec["weight"], np.float64)
            elif kind == "tanh":
                y = np.tanh(x)
            elif kind in ("lif", "li"):
                a_syn = math.exp(-spec["dt"] / spec["tau_syn"])
                a_mem = math.exp(-spec["dt"] / spec["tau_mem"])
                v_leak = float(spec.get("v_leak", 0.0))
                s = state[name]
                s["current"] = a_syn * s["current"] + x @ np.asarray(spec["weight"], np.float64)
                s["v"] = v_leak + a_mem * (s["v"] - v_leak) + (1.0 - a_mem) * s["current"]
                if kind == "li":
                    y = s["v"].copy()
                else:
                    v_th, v_reset = float(spec.get("v_th", 1.0)), float(spec.get("v_reset", 0.0))
                    y = (s["v"] > v_th).astype(np.float64)
                    if spec.get("reset", "subtract") == "subtract":
                        s["v"] = s["v"] - y * (v_th - v_reset)
                    else:
                        s["v"] = np.where(y > 0, v_reset, s["v"])
            else:
                raise ValueError(f"unknown node kind {kind!r}")
            history[name].append(y)
    return {name: np.stack(history[name]) for name in names}


def _output_size(nodes, source, inputs) -> int:
    if source == INPUT:
        return inputs.shape[1]
    spec = nodes[source]
    if "size" in spec:
        return int(spec["size"])
    if "weight" in spec:
        return np.asarray(spec["weight"]).shape[1]
    raise ValueError(
        f"cannot tell the size of node {source!r} ({spec['kind']}) before its first output; give it a 'size'"
    )


def _delayed(times: np.ndarray, idx: np.ndarray, delay: Any) -> Tuple[np.ndarray, np.ndarray]:
    delay = np.asarray(delay, np.float64)
    shift = delay if delay.ndim == 0 else delay[idx]
    return times + shift, idx


def simulate_event_graph(
    nodes: Mapping[str, Mapping[str, Any]],
    edges: Sequence[Any],
    input_times: Any,
    input_idx: Any,
    *,
    input_size: int,
    t_max: float,
    merge: Optional[Mapping[str, str]] = None,
    max_sweeps: int = 1000,
) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Exact event-based graph of LIF populations (float64), feedback and delays allowed.

    Args:
        nodes: ``{name: {"weight": (n_in_total, size), "neuron": LIFParameters,
            "recurrent_weight": optional (size, size)}}``; a node's input index space is the
            concatenation (or, with ``merge[name] == "sum"``, the union) of its incoming edges'
            sources in edge-list order.
        edges: ``(source, target)`` or ``(source, target, delay)``; ``delay`` >= 0 is a scalar
            or a per-source-neuron array (axonal delays); ``source`` may be ``"input"``.
        input_times, input_idx: the input events (padding ``idx == -1`` is ignored).
        input_size: number of input neurons.
        t_max: end of the window.
        merge: optional ``{name: "concat" | "sum"}``.
        max_sweeps: cap on the waveform-relaxation sweeps.

    Returns:
        ``{name: (times, idx)}``: all output spikes of each node in ``[0, t_max]``, sorted by
        time then index.

    Raises:
        RuntimeError: if the iteration does not reach a fixed point within ``max_sweeps``.
    """
    merge = dict(merge or {})
    parsed = _edges(edges)
    input_times = np.asarray(input_times, np.float64).reshape(-1)
    input_idx = np.asarray(input_idx).reshape(-1)
    keep = input_idx >= 0
    trains: Dict[str, Tuple[np.ndarray, np.ndarray]] = {
        INPUT: (input_times[keep], input_idx[keep].astype(np.int64))
    }
    sizes = {INPUT: int(input_size)}
    for name, spec in nodes.items():
        sizes[name] = np.asarray(spec["weight"]).shape[1]
        trains[name] = (np.zeros(0), np.zeros(0, np.int64))
    for _ in range(max_sweeps):
        changed = False
        for name, spec in nodes.items():
            times, idx = [], []
            offset = 0
            for source, target, delay in parsed:
                if target != name:
                    continue
                t, i = _delayed(*trains[source], delay)
                times.append(t)
                idx.append(i + offset)
                if merge.get(name, "concat") == "concat":
                    offset += sizes[source]
            t_in = np.concatenate(times) if times else np.zeros(0)
            i_in = np.concatenate(idx) if idx else np.zeros(0, np.int64)
            inside = t_in <= t_max
            new = simulate_event(
                spec["weight"], t_in[inside], i_in[inside], spec["neuron"], t_max,
                recurrent_weight=spec.get("recurrent_weight"),
            )
            old = trains[name]
            if new[0].shape != old[0].shape or not (np.array_equal(new[0], old[0]) and np.array_equal(new[1], old[1])):
                changed = True
            trains[name] = new
        if not changed:
            return {name: trains[name] for name in nodes}
    raise RuntimeError(f"waveform relaxation did not converge within {max_sweeps} sweeps")
