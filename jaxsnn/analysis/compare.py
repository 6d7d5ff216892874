"""Compare gradient estimates: cosine similarity, sign agreement, relative norm.

Two gradient pytrees are matched **by tree path** (``jax.tree_util.keystr``), never by leaf
order: the same parameter must sit at the same path in both (e.g. ``[1]['weight']`` for the
weight of layer 1 of a ``serial``). Metrics are computed globally (all arrays concatenated),
per layer (grouped by the first path entry: the leaf index of a ``serial``'s params list, or
the top-level key of a dict) or per array::

    cosine(a, b)     = <a, b> / (|a| |b|)             (NaN if either norm is zero)
    sign_agreement   = mean over entries with b != 0 of [sign(a) == sign(b)]   (NaN if none)
    relative_norm    = |a| / |b|                       (NaN if |b| is zero)

``compare_rules`` runs several rules on one batch and tabulates each against a reference rule.
All metric functions are pure ``jax.numpy`` and work under ``jit``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence, Tuple, Union

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = [
    "BY",
    "compare",
    "layer_names",
    "compare_rules",
    "cosine_similarity",
    "format_table",
    "paths",
    "relative_norm",
    "sign_agreement",
]

BY = ("global", "layer", "leaf")


def paths(tree: Any) -> Dict[str, Array]:
    """``{path: array}`` of a pytree, paths as ``jax.tree_util.keystr`` (``"[0]['weight']"``)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in flat}


def layer_names(net: Any) -> List[str]:
    """Names of the leaf layers of a composite (``serial``) in the order of its params list.

    Args:
        net: a ``jaxsnn.serial`` (or other composite) layer.

    Returns:
        ``["LIF(128)", "LIF(10)"]``-style names (``"layer k"`` where a name is unknown).
    """
    from jaxsnn.online._network import leaf_names

    n = getattr(net, "leaves", None)
    return leaf_names(net, n) if n else [getattr(net, "name", "layer 0")]


def _layer_key(path: Tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path[:1]) if path else ""


def _matched(estimate: Any, reference: Any) -> List[Tuple[str, str, Array, Array]]:
    """``[(path, layer, a, b)]`` for the arrays of both trees, matched by path."""
    flat_a, _ = jax.tree_util.tree_flatten_with_path(estimate)
    flat_b, _ = jax.tree_util.tree_flatten_with_path(reference)
    a = {jax.tree_util.keystr(p): (p, leaf) for p, leaf in flat_a}
    b = {jax.tree_util.keystr(p): (p, leaf) for p, leaf in flat_b}
    missing = sorted(set(b) - set(a))
    extra = sorted(set(a) - set(b))
    if missing or extra:
        raise ValueError(
            "gradient trees do not hold the same parameters (matched by path): "
            + (f"missing in the estimate {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"not in the reference {extra}" if extra else "")
        )
    out = []
    for key in sorted(b):
        pa, la = a[key]
        pb, lb = b[key]
        if jnp.shape(la) != jnp.shape(lb):
            raise ValueError(
                f"gradient arrays at {key} have different shapes: {jnp.shape(la)} vs "
                f"{jnp.shape(lb)}"
            )
        out.append((key, _layer_key(pb), jnp.ravel(la), jnp.ravel(lb)))
    if not out:
        raise ValueError("gradient trees hold no arrays: nothing to compare")
    return out


def _check_by(by: str) -> None:
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, got {by!r}")


def _groups(matched, by: str) -> Dict[str, Tuple[Array, Array]]:
    groups: Dict[str, Tuple[List[Array], List[Array]]] = {}
    for key, layer, a, b in matched:
        name = "global" if by == "global" else (layer if by == "layer" else key)
        groups.setdefault(name, ([], []))
        groups[name][0].append(a)
        groups[name][1].append(b)
    return {k: (jnp.concatenate(v[0]), jnp.concatenate(v[1])) for k, v in groups.items()}


def _cosine(a: Array, b: Array) -> Array:
    na, nb = jnp.linalg.norm(a), jnp.linalg.norm(b)
    return jnp.where((na > 0) & (nb > 0), jnp.vdot(a, b) / jnp.where(na * nb > 0, na * nb, 1.0),
                     jnp.nan)


def _sign(a: Array, b: Array) -> Array:
    mask = b != 0
    count = jnp.sum(mask)
    agree = jnp.sum(mask & (jnp.sign(a) == jnp.sign(b)))
    return jnp.where(count > 0, agree / jnp.maximum(count, 1), jnp.nan)


def _ratio(a: Array, b: Array) -> Array:
    nb = jnp.linalg.norm(b)
    return jnp.where(nb > 0, jnp.linalg.norm(a) / jnp.where(nb > 0, nb, 1.0), jnp.nan)


def _metric(fn, estimate, reference, by):
    _check_by(by)
    groups = _groups(_matched(estimate, reference), by)
    values = {k: fn(a, b) for k, (a, b) in groups.items()}
    return values["global"] if by == "global" else values


def cosine_similarity(
    estimate: Any, reference: Any, by: str = "global"
) -> Union[Array, Dict[str, Array]]:
    """Cosine similarity of two gradient pytrees (matched by path).

    Args:
        estimate, reference: pytrees with the same paths and shapes.
        by: ``"global"`` (one scalar), ``"layer"`` or ``"leaf"`` (dicts keyed by path).

    Returns:
        A scalar, or ``{path: scalar}``; NaN where a norm is zero.

    Raises:
        ValueError: the trees hold different paths or shapes, or nothing.
    """
    return _metric(_cosine, estimate, reference, by)


def sign_agreement(
    estimate: Any, reference: Any, by: str = "global"
) -> Union[Array, Dict[str, Array]]:
    """Fraction of entries (where the reference is non-zero) whose signs agree."""
    return _metric(_sign, estimate, reference, by)


def relative_norm(
    estimate: Any, reference: Any, by: str = "global"
) -> Union[Array, Dict[str, Array]]:
    """``|estimate| / |reference|`` (global, per layer or per array)."""
    return _metric(_ratio, estimate, reference, by)


def compare(estimate: Any, reference: Any, by: str = "layer") -> Dict[str, Dict[str, Array]]:
    """All three metrics: ``{group: {"cosine", "sign_agreement", "relative_norm"}}``."""
    _check_by(by)
    groups = _groups(_matched(estimate, reference), by)
    return {
        k: {"cosine": _cosine(a, b), "sign_agreement": _sign(a, b), "relative_norm": _ratio(a, b)}
        for k, (a, b) in groups.items()
    }


def compare_rules(
    net: Any,
    params: Any,
    batch: Tuple[Array, Any],
    loss: Callable[[Any, Any], Array],
    rules: Sequence[Any],
    reference: Any = "bptt",
) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Gradient of every rule on one batch, compared with a reference rule, per layer.

    Args:
        net: a discrete network (``jaxsnn.serial``).
        params: its parameters.
        batch: ``(inputs (B, T, ...), targets)`` with targets of leading axes ``(B, T)``.
        loss: ``loss(output_t, target_t) -> scalar`` (summed over steps, averaged over the batch).
        rules: rule names or objects.
        reference: the rule the others are compared with (default ``"bptt"``).

    Returns:
        ``{rule: {group: {"cosine", "sign_agreement", "relative_norm"}}}`` with groups
        ``"global"`` and one per layer (``"[k] <layer name>"``), as Python floats.
    """
    from jaxsnn.online import get_rule, sequence_gradient

    inputs, targets = batch
    if not hasattr(inputs, "ndim") or inputs.ndim < 3:
        raise ValueError(
            "compare_rules: batch must be (inputs (batch, time, features...), targets), got "
            f"inputs of shape {getattr(inputs, 'shape', None)}"
        )

    def gradient(rule):
        fn = jax.jit(jax.vmap(lambda x, t: sequence_gradient(rule, net, params, x, t, loss)[1]))
        return jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), fn(inputs, targets))

    reference_rule = get_rule(reference)
    ref = gradient(reference_rule)
    names = layer_names(net) if getattr(net, "leaves", None) else None
    table: Dict[str, Dict[str, Dict[str, float]]] = {}
    for rule in rules:
        rule = get_rule(rule)
        grads = gradient(rule)
        rows = {"global": compare(grads, ref, "global")["global"]}
        for key, values in compare(grads, ref, "layer").items():
            label = key
            if names is not None and key.startswith("[") and key[1:-1].isdigit():
                label = f"{key} {names[int(key[1:-1])]}"
            rows[label] = values
        name = rule.name if rule == type(rule)() else repr(rule)
        table[name] = {g: {m: float(v) for m, v in vals.items()} for g, vals in rows.items()}
    return table


def format_table(table: Dict[str, Dict[str, Dict[str, float]]], metric: str = "cosine") -> str:
    """A Markdown table (rules x groups) of one metric from ``compare_rules``."""
    groups: List[str] = []
    for rows in table.values():
        for g in rows:
            if g not in groups:
                groups.append(g)
    lines = ["| rule | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for rule, rows in table.items():
        cells = [f"{rows[g][metric]:.3f}" if g in rows else "" for g in groups]
        lines.append(f"| {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
