"""``dialect="auto"``: recognise the library that wrote a NIR file, or ask.

Each writer leaves traces (checked on every neuron of the file, nested graphs included):

* jaxsnn: graph metadata ``writer = "jaxsnn"``.
* Spyx: ``r = beta = 1 - dt / tau`` (``0 < r < 1`` and ``tau * (1 - r)`` the same for every
  neuron), node names ``layer_<i>``, or a nested recurrent graph with an edge
  ``input -> w_rec``.
* snnTorch: ``r = tau / dt`` (``r > 1``, ``tau / r`` the same for every neuron; its writer
  uses ``dt = 1e-4``) and, for ``CubaLIF``, ``w_in = tau_syn / dt``.
* Norse: ``r = 1`` and ``w_in = 1`` with stored time constants below ``1e-4`` (Norse writes
  ``dt * tau``, e.g. ``1e-5`` for ``tau = 10 ms`` at ``dt = 1 ms``).

A file that matches none, or more than one, raises an error that asks for ``dialect=``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple

import numpy as np

from jaxsnn.nir._dialects import as_text

NEURONS = ("I", "IF", "LI", "LIF", "CubaLI", "CubaLIF")
_SPYX_NAME = re.compile(r"^layer_\d+(_threshold)?(\..*)?$")


def _walk(graph: Any, prefix: str = ""):
    for key, node in graph.nodes.items():
        name = prefix + str(key)
        yield name, node
        if type(node).__name__ == "NIRGraph":
            yield from _walk(node, name + ".")


def _array(node: Any, name: str):
    value = getattr(node, name, None)
    if value is None:
        return None
    try:
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None


def _same(values: List[float], rtol: float = 1e-4) -> bool:
    if not values:
        return False
    values = np.asarray(values)
    return bool(np.allclose(values, values[0], rtol=rtol, atol=0.0))


def writer_evidence(graph: Any) -> Dict[str, List[str]]:
    """What in ``graph`` points at each writer: ``{dialect: [reasons]}``."""
    evidence: Dict[str, List[str]] = {"jaxsnn": [], "spyx": [], "snntorch": [], "norse": []}
    meta = getattr(graph, "metadata", None) or {}
    if isinstance(meta, dict) and as_text(meta.get("writer")) == "jaxsnn":
        evidence["jaxsnn"].append("graph metadata writer='jaxsnn'")
    spyx_dt: List[float] = []
    torch_dt: List[float] = []
    norse_like = []
    names = []
    for name, node in _walk(graph):
        kind = type(node).__name__
        names.append((name, kind))
        if kind == "NIRGraph":
            sub_kinds = {str(k): type(v).__name__ for k, v in node.nodes.items()}
            sub_edges = {(str(a), str(b)) for a, b in node.edges}
            for a, b in sub_edges:
                closes_loop = any(
                    sub_kinds.get(c) in ("IF", "LIF", "CubaLIF")
                    and (b, c) in sub_edges
                    and (c, b) in sub_edges
                    for c in sub_kinds
                )
                if (
                    sub_kinds.get(a) == "Input"
                    and sub_kinds.get(b) in ("Linear", "Affine")
                    and closes_loop
                ):
                    evidence["spyx"].append(
                        f"nested recurrent graph {name!r} with an edge {a!r} -> {b!r}"
                    )
            continue
        if kind not in NEURONS:
            continue
        r = _array(node, "r")
        taus = [_array(node, f) for f in ("tau", "tau_mem", "tau_syn")]
        taus = [t for t in taus if t is not None]
        tau_main = _array(node, "tau") if kind in ("LI", "LIF") else _array(node, "tau_mem")
        w_in = _array(node, "w_in")
        if r is None:
            continue
        if tau_main is not None and r.size and np.all(r > 0) and np.all(r < 1):
            spyx_dt.extend((tau_main * (1.0 - r)).tolist())
        if tau_main is not None and np.all(r > 1):
            torch_dt.extend((tau_main / r).tolist())
            if w_in is not None and kind == "CubaLIF":
                tau_syn = _array(node, "tau_syn")
                torch_dt.extend((tau_syn / w_in).tolist())
        ones = bool(np.allclose(r, 1.0) and (w_in is None or np.allclose(w_in, 1.0)))
        norse_like.append((ones, bool(taus) and all(np.all(t < 1e-4) for t in taus), bool(taus)))
    if spyx_dt and _same(spyx_dt):
        evidence["spyx"].append(
            f"r = 1 - dt / tau with dt = {np.mean(spyx_dt):.6g} for every neuron"
        )
    if torch_dt and _same(torch_dt):
        evidence["snntorch"].append(
            f"r = tau / dt with dt = {np.mean(torch_dt):.6g} for every neuron"
        )
    # Every neuron has r = 1 (and w_in = 1), and every one with time constants stores them
    # below 1e-4 (IF/I nodes have none; at least one node must have some).
    if (
        norse_like
        and all(ones for ones, _, _ in norse_like)
        and any(has for _, _, has in norse_like)
        and all(small for _, small, has in norse_like if has)
    ):
        evidence["norse"].append("r = 1, w_in = 1 and stored time constants < 1e-4 (dt * tau)")
    top = [n for n, k in names if "." not in n and k not in ("Input", "Output")]
    if top and all(_SPYX_NAME.match(n) for n in top):
        evidence["spyx"].append("node names layer_<i>")
    return evidence


def reading_dialect(graph: Any):
    """How ``dialect="auto"`` reads ``graph``: a dialect name, or for files jaxsnn wrote for a
    peer's importer (``to_nir(..., dialect=peer)``) the dialect that reads them as it does."""
    name, _ = detect(graph)
    if name != "jaxsnn":
        return name
    meta = getattr(graph, "metadata", None) or {}
    target = as_text(meta.get("dialect")) if isinstance(meta, dict) else None
    from jaxsnn.nir._dialects import Norse, SnnTorch, Spyx

    readers = {
        "snntorch": lambda: SnnTorch(reset_mechanism="zero", reset_delay=False),
        "norse": lambda: Norse(convention="reader"),
        "spyx": Spyx,
    }
    return readers[target]() if target in readers else "jaxsnn"


def detect(graph: Any) -> Tuple[str, str]:
    """The dialect name of ``graph``'s writer and why; raises ``ValueError`` when unsure."""
    evidence = writer_evidence(graph)
    if evidence["jaxsnn"]:
        return "jaxsnn", evidence["jaxsnn"][0]
    found = {k: v for k, v in evidence.items() if v}
    if len(found) == 1:
        name, reasons = next(iter(found.items()))
        return name, "; ".join(reasons)
    detail = (
        "it matches " + " and ".join(f"{k} ({'; '.join(v)})" for k, v in found.items())
        if found
        else "no writer's traces were found (checked: jaxsnn metadata; Spyx's r = 1 - dt/tau, "
        "layer_<i> names and nested recurrent graphs; snnTorch's r = tau/dt; Norse's r = 1 "
        "with dt * tau < 1e-4)"
    )
    raise ValueError(
        f"dialect='auto' cannot tell which library wrote this NIR file: {detail}. Pass "
        "dialect='spec' (the NIR equations, exact at dt) or the writer: 'snntorch', 'norse', "
        "'spyx' or 'jaxsnn'"
    )
