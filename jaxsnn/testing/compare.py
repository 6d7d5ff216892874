"""Comparing layer outputs: tolerances, spike-by-spike and entry-by-entry, and how much was compared.

Equalities that hold exactly in real arithmetic are compared with
``|a - b| <= atol + rtol * scale``; ``scale`` is the largest finite magnitude among the compared
values and ``rtol`` defaults to ``default_rtol`` of the first argument's dtype (``1e-4`` for
float32, ``1e-6`` for float64).

* ``assert_events_close``: two ``Spikes`` buffers of one sample, neuron by neuron (same number of
  spikes, times within tolerance; the order of simultaneous events is irrelevant).
* ``assert_arrays_close``: two dense arrays, entrywise (equal infinities match).
* ``assert_trees_close``: two pytrees (e.g. ``(carry, outputs, recording)``), leaf by leaf;
  ``Spikes`` leaves are compared as events (batched buffers sample by sample).

Each returns **how many values it compared**: spike times (events) or entries (arrays; a pair
of NaNs matches but does not count). A comparison that compared nothing checked nothing, so each
takes ``min_compared`` (default 1) and raises ``AssertionError`` naming what was compared and
the minimum required when the count is lower. ``require_compared`` is the same guard for counts
computed elsewhere (e.g. summed over the examples of a hypothesis test).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import jax
import numpy as np

from jaxsnn.spikes import Spikes
from jaxsnn.testing._layers import is_event

__all__ = [
    "default_rtol",
    "require_compared",
    "assert_events_close",
    "assert_arrays_close",
    "assert_outputs_close",
    "assert_trees_close",
    "describe_events",
]


def default_rtol(dtype: Any) -> float:
    """Default relative tolerance for an output dtype: 1e-6 for float64, 1e-4 otherwise.

    Relative to the largest compared magnitude (for spike times: the latest spike, so roughly
    the window length). Well-conditioned float64 spike times agree to ~1e-14; the default
    leaves room for near-tangential crossings, whose time is only determined to about
    ``sqrt(machine epsilon)`` (~1e-8 in float64, ~3e-4 in float32: tangential cases in float32
    need a looser ``rtol`` or float64).
    """
    return 1e-6 if np.dtype(dtype) == np.float64 else 1e-4


def require_compared(compared: int, min_compared: int, what: str, hint: str = "") -> int:
    """Fail unless at least ``min_compared`` values were compared.

    Args:
        compared: how many values a comparison compared.
        min_compared: the least that makes the comparison meaningful (>= 0).
        what: what was counted, e.g. ``"causality: output spike times at or before t=0.5"``.
        hint: how to get more compared values (appended to the message).

    Returns:
        ``compared``.

    Raises:
        AssertionError: if ``compared < min_compared``.
        ValueError: if ``min_compared`` is negative.
    """
    if int(min_compared) != min_compared or min_compared < 0:
        raise ValueError(f"min_compared must be an integer >= 0, got {min_compared!r}")
    if compared < min_compared:
        raise AssertionError(
            f"{what}: compared {compared}, at least {min_compared} required (min_compared={min_compared}); "
            "a check that compares nothing cannot fail." + (f" {hint}" if hint else "")
        )
    return int(compared)


def dtype_of(value: Any) -> Any:
    """The float dtype of an output (spike times, or the first float leaf; float32 if none)."""
    if is_event(value):
        return np.asarray(value.time).dtype
    for leaf in jax.tree_util.tree_leaves(value):
        array = np.asarray(leaf)
        if np.issubdtype(array.dtype, np.floating):
            return array.dtype
    return np.dtype(np.float32)


def by_neuron(spikes: Spikes) -> Dict[int, np.ndarray]:
    """{neuron: sorted spike times} of the real events of one sample."""
    time = np.asarray(spikes.time, dtype=np.float64).reshape(-1)
    idx = np.asarray(spikes.idx).reshape(-1)
    return {int(n): np.sort(time[idx == n]) for n in np.unique(idx[idx >= 0])}


def describe_events(spikes: Spikes, limit: int = 12) -> str:
    """``[(time, idx), ...]`` of the real events, for error messages."""
    time = np.asarray(spikes.time, dtype=np.float64).reshape(-1)
    idx = np.asarray(spikes.idx).reshape(-1)
    keep = idx >= 0
    pairs = [f"({t:.9g}, {i})" for t, i in zip(time[keep], idx[keep])]
    more = f" ... ({len(pairs) - limit} more)" if len(pairs) > limit else ""
    return "[" + ", ".join(pairs[:limit]) + more + "]"


def tolerance(values: Sequence[np.ndarray], dtype: Any, rtol: Optional[float], atol: Optional[float]) -> float:
    """``atol + rtol * (largest finite magnitude in values)`` with the dtype's default ``rtol``."""
    rtol = default_rtol(dtype) if rtol is None else rtol
    finite = [np.abs(v[np.isfinite(v)]) for v in values if np.size(v)]
    scale = max([float(f.max()) for f in finite if f.size] + [0.0])
    return (0.0 if atol is None else atol) + rtol * scale


def assert_events_close(
    got: Spikes, want: Spikes, context: str = "events", *, rtol: Optional[float] = None,
    atol: Optional[float] = None, min_compared: int = 1, got_label: str = "got", want_label: str = "expected",
) -> int:
    """Two spike buffers of one sample hold the same spikes, neuron by neuron.

    Every neuron must spike as often in ``got`` as in ``want``; its ``k``-th spike times must
    agree within ``atol + rtol * scale`` (``scale``: the latest spike of either buffer).

    Args:
        got: the buffer under test.
        want: the expected buffer.
        context: what is compared (the first words of the error message).
        rtol, atol: tolerances (``rtol`` default: ``default_rtol`` of ``got``'s dtype).
        min_compared: fewest spike times that must be compared.
        got_label, want_label: names of the two buffers in the message.

    Returns:
        The number of spike times compared (spikes of ``got``, once they all matched).

    Raises:
        AssertionError: naming the neuron and both values on a mismatch, or if fewer than
            ``min_compared`` spike times were compared.
    """
    a, b = by_neuron(got), by_neuron(want)
    tol = tolerance(list(a.values()) + list(b.values()), dtype_of(got), rtol, atol)
    compared = 0
    for neuron in sorted(set(a) | set(b)):
        ta, tb = a.get(neuron, np.zeros(0)), b.get(neuron, np.zeros(0))
        if ta.size != tb.size:
            raise AssertionError(
                f"{context}: neuron {neuron} spikes {ta.size} time(s) ({got_label}) but {tb.size} "
                f"time(s) ({want_label}).\n  {got_label}: {describe_events(got)}\n  {want_label}: "
                f"{describe_events(want)}"
            )
        if ta.size:
            error = np.abs(ta - tb)
            error = np.where(np.isnan(error), np.inf, error)
            k = int(np.argmax(error))
            if error[k] > tol:
                raise AssertionError(
                    f"{context}: spike {k} of neuron {neuron} is at {float(ta[k])!r} ({got_label}) but "
                    f"{float(tb[k])!r} ({want_label}); |difference| {error[k]:.3g} > tolerance {tol:.3g}.\n"
                    f"  {got_label}: {describe_events(got)}\n  {want_label}: {describe_events(want)}"
                )
            compared += ta.size
    return require_compared(compared, min_compared, f"{context}: spike times",
                            "Both buffers are empty: draw inputs and weights that make the layer spike.")


def assert_arrays_close(
    got: Any, want: Any, context: str = "arrays", *, rtol: Optional[float] = None,
    atol: Optional[float] = None, min_compared: int = 1,
) -> int:
    """Two dense arrays agree entrywise: ``|a - b| <= atol + rtol * scale``.

    Equal infinities match; a NaN matches only a NaN, and such pairs are not counted as compared.

    Args:
        got: the array under test.
        want: the expected array (same shape).
        context: what is compared (the first words of the error message).
        rtol, atol: tolerances (``rtol`` default: ``default_rtol`` of ``got``'s dtype).
        min_compared: fewest entries that must be compared.

    Returns:
        The number of entries compared.

    Raises:
        AssertionError: on a shape mismatch, on entries out of tolerance (naming the worst), or
            if fewer than ``min_compared`` entries were compared.
    """
    a = np.asarray(got, dtype=np.float64)
    b = np.asarray(want, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{context}: shape {a.shape} differs from {b.shape}")
    both_nan = np.isnan(a) & np.isnan(b)
    if a.size:
        same = (a == b) | both_nan
        tol = tolerance([a, b], dtype_of(got), rtol, atol)
        with np.errstate(invalid="ignore"):
            error = np.where(same, 0.0, np.abs(a - b))
        error = np.where(np.isnan(error), np.inf, error)
        worst = np.unravel_index(int(np.argmax(error)), error.shape)
        if error[worst] > tol:
            n_bad = int(np.sum(error > tol))
            raise AssertionError(
                f"{context}: {n_bad} of {a.size} entries differ; worst at index "
                f"{tuple(int(i) for i in worst)}: {a[worst]!r} vs {b[worst]!r} (|difference| "
                f"{error[worst]:.3g} > tolerance {tol:.3g})"
            )
    compared = int(a.size - np.sum(both_nan))
    return require_compared(compared, min_compared, f"{context}: entries ({a.size} of shape {a.shape}, "
                            f"{int(np.sum(both_nan))} NaN in both)")


def assert_outputs_close(
    got: Any, want: Any, context: str = "outputs", *, rtol: Optional[float] = None,
    atol: Optional[float] = None, min_compared: int = 1, **labels: str,
) -> int:
    """``assert_events_close`` for two ``Spikes``, else ``assert_arrays_close``; returns the count."""
    if is_event(got) and is_event(want):
        return assert_events_close(got, want, context, rtol=rtol, atol=atol, min_compared=min_compared, **labels)
    return assert_arrays_close(got, want, context, rtol=rtol, atol=atol, min_compared=min_compared)


def assert_trees_close(
    got: Any, want: Any, context: str = "trees", *, rtol: Optional[float] = None,
    atol: Optional[float] = None, min_compared: int = 1,
) -> int:
    """Two pytrees have the same structure and close leaves (``Spikes`` compared as events).

    Args:
        got: the tree under test.
        want: the expected tree.
        context: what is compared (the first words of the error message, with the leaf path).
        rtol, atol: tolerances.
        min_compared: fewest values (spike times plus array entries) that must be compared.

    Returns:
        The number of values compared over all leaves.

    Raises:
        AssertionError: naming the first differing leaf, or if fewer than ``min_compared``
            values were compared.
    """
    got_leaves, got_def = jax.tree_util.tree_flatten(got, is_leaf=is_event)
    want_leaves, want_def = jax.tree_util.tree_flatten(want, is_leaf=is_event)
    if got_def != want_def:
        raise AssertionError(f"{context}: structures differ: {got_def} vs {want_def}")
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(got, is_leaf=is_event)[0]]
    compared = 0
    for path, a, b in zip(paths, got_leaves, want_leaves):
        if is_event(a):
            if np.ndim(a.time) > 1:
                for k in range(np.shape(a.time)[0]):
                    compared += assert_events_close(
                        Spikes(a.time[k], a.idx[k]), Spikes(b.time[k], b.idx[k]), f"{context} at {path}[{k}]",
                        rtol=rtol, atol=atol, min_compared=0,
                    )
            else:
                compared += assert_events_close(a, b, f"{context} at {path}", rtol=rtol, atol=atol, min_compared=0)
        elif a is None or b is None:
            if a is not b:
                raise AssertionError(f"{context} at {path}: {a!r} vs {b!r}")
        else:
            compared += assert_arrays_close(a, b, f"{context} at {path}", rtol=rtol, atol=atol, min_compared=0)
    return require_compared(compared, min_compared, f"{context}: values (spike times and array entries)")
