"""Checks of the properties every correct spiking layer has, for any ``(init, apply)`` layer.

Each ``check_*`` function runs a layer on concrete ``params`` and ``inputs`` and raises
``AssertionError`` with a readable explanation when the property does not hold; it returns
quietly (or a small report) when it does. Use them inside hypothesis tests so a failure comes
with a shrunk counterexample::

    @given(spikes=strategies.spikes(3, 8, t_max=0.05), split=st.floats(0, 0.05))
    def test_causal(spikes, split):
        properties.check_causality(layer, params, spikes, split)

Two kinds of layers are understood, told apart by the inputs:

* **event layers** take ``jaxsnn.Spikes`` and return ``Spikes`` (outputs are compared neuron
  by neuron: same number of spikes, times within tolerance; the order of simultaneous output
  events is irrelevant);
* **discrete layers** take dense ``(T, n)`` arrays and return dense ``(T, ...)`` arrays.

Tolerances: equalities that hold exactly in real arithmetic are compared with
``|a - b| <= atol + rtol * scale``; by default ``rtol`` is ``1e-4`` for float32 and ``1e-6``
for float64 outputs (see ``default_rtol``) and ``scale`` is the largest finite magnitude among the compared values.
Every check accepts ``rtol``/``atol`` to override.

``layer`` may be a ``Layer``, any ``(init, apply)`` pair, or a bare ``apply`` function.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from jaxsnn import spikes as spikes_lib
from jaxsnn.spikes import Spikes

__all__ = [
    "check_causality",
    "check_time_shift",
    "check_simultaneous_order",
    "check_unsorted_inputs",
    "check_no_input_no_spike",
    "check_first_spike_monotone",
    "check_jit_equals_eager",
    "check_vmap_equals_loop",
    "check_chunked_equals_whole",
    "check_gradients",
    "check_finite_gradients_without_spikes",
    "check_matches_reference",
    "event_reference",
    "discrete_reference",
    "GradientReport",
    "default_rtol",
]


# ----------------------------------------------------------------------------- helpers
def _apply_fn(layer: Any) -> Callable[..., Any]:
    if isinstance(layer, tuple) and len(layer) == 2 and callable(layer[1]):
        return layer[1]
    if callable(layer):
        return layer
    raise TypeError(f"layer must be an (init, apply) pair or an apply function, got {type(layer).__name__}")


def _run(layer: Any, params: Any, inputs: Any, carry: Any = None) -> Tuple[Any, Any, Any]:
    return _apply_fn(layer)(params, inputs, carry=carry) if carry is not None else _apply_fn(layer)(params, inputs)


def _outputs(layer: Any, params: Any, inputs: Any) -> Any:
    return _run(layer, params, inputs)[1]


def _is_event(value: Any) -> bool:
    return isinstance(value, Spikes)


def default_rtol(dtype: Any) -> float:
    """Default relative tolerance for an output dtype: 1e-6 for float64, 1e-4 otherwise.

    Relative to the largest compared magnitude (for spike times: the latest spike, so roughly
    the window length). Well-conditioned float64 spike times agree to ~1e-14; the default
    leaves room for near-tangential crossings, whose time is only determined to about
    ``sqrt(machine epsilon)`` (~1e-8 in float64, ~3e-4 in float32: tangential cases in float32
    need a looser ``rtol`` or float64).
    """
    return 1e-6 if np.dtype(dtype) == np.float64 else 1e-4


def _dtype_of(value: Any) -> Any:
    if _is_event(value):
        return np.asarray(value.time).dtype
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(value) if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)]
    return np.asarray(leaves[0]).dtype if leaves else np.float32


def _by_neuron(spikes: Spikes) -> Dict[int, np.ndarray]:
    """{neuron: sorted spike times} of the real events of one sample."""
    time = np.asarray(spikes.time, dtype=np.float64).reshape(-1)
    idx = np.asarray(spikes.idx).reshape(-1)
    return {int(n): np.sort(time[idx == n]) for n in np.unique(idx[idx >= 0])}


def _describe_events(spikes: Spikes, limit: int = 12) -> str:
    time = np.asarray(spikes.time, dtype=np.float64).reshape(-1)
    idx = np.asarray(spikes.idx).reshape(-1)
    keep = idx >= 0
    pairs = [f"({t:.9g}, {i})" for t, i in zip(time[keep], idx[keep])]
    more = f" ... ({len(pairs) - limit} more)" if len(pairs) > limit else ""
    return "[" + ", ".join(pairs[:limit]) + more + "]"


def _filter(spikes: Spikes, keep: Callable[[np.ndarray], np.ndarray]) -> Spikes:
    time = np.asarray(spikes.time, dtype=np.float64)
    idx = np.asarray(spikes.idx)
    mask = (idx >= 0) & keep(time)
    return Spikes(np.where(mask, time, np.inf), np.where(mask, idx, -1))


def _tolerance(values: Sequence[np.ndarray], dtype: Any, rtol: Optional[float], atol: Optional[float]) -> float:
    rtol = default_rtol(dtype) if rtol is None else rtol
    finite = [np.abs(v[np.isfinite(v)]) for v in values if np.size(v)]
    scale = max([float(f.max()) for f in finite if f.size] + [0.0])
    return (0.0 if atol is None else atol) + rtol * scale


def _assert_events_close(
    got: Spikes, want: Spikes, context: str, rtol: Optional[float], atol: Optional[float],
    got_label: str = "got", want_label: str = "expected",
) -> None:
    a, b = _by_neuron(got), _by_neuron(want)
    tol = _tolerance(list(a.values()) + list(b.values()), _dtype_of(got), rtol, atol)
    for neuron in sorted(set(a) | set(b)):
        ta, tb = a.get(neuron, np.zeros(0)), b.get(neuron, np.zeros(0))
        if ta.size != tb.size:
            raise AssertionError(
                f"{context}: neuron {neuron} spikes {ta.size} time(s) ({got_label}) but {tb.size} "
                f"time(s) ({want_label}).\n  {got_label}: {_describe_events(got)}\n  {want_label}: "
                f"{_describe_events(want)}"
            )
        if ta.size:
            error = np.abs(ta - tb)
            k = int(np.argmax(error))
            if error[k] > tol:
                raise AssertionError(
                    f"{context}: spike {k} of neuron {neuron} is at {float(ta[k])!r} ({got_label}) but "
                    f"{float(tb[k])!r} ({want_label}); |difference| {error[k]:.3g} > tolerance {tol:.3g}.\n"
                    f"  {got_label}: {_describe_events(got)}\n  {want_label}: {_describe_events(want)}"
                )


def _assert_arrays_close(got: Any, want: Any, context: str, rtol: Optional[float], atol: Optional[float]) -> None:
    a = np.asarray(got, dtype=np.float64)
    b = np.asarray(want, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"{context}: shape {a.shape} differs from {b.shape}")
    if a.size == 0:
        return
    same_inf = (a == b) | (np.isnan(a) & np.isnan(b))
    tol = _tolerance([a, b], _dtype_of(got), rtol, atol)
    with np.errstate(invalid="ignore"):
        error = np.where(same_inf, 0.0, np.abs(a - b))
    error = np.where(np.isnan(error), np.inf, error)
    worst = np.unravel_index(int(np.argmax(error)), error.shape)
    if error[worst] > tol:
        n_bad = int(np.sum(error > tol))
        raise AssertionError(
            f"{context}: {n_bad} of {a.size} entries differ; worst at index {tuple(int(i) for i in worst)}: "
            f"{a[worst]!r} vs {b[worst]!r} (|difference| {error[worst]:.3g} > tolerance {tol:.3g})"
        )


def _assert_outputs_close(got: Any, want: Any, context: str, rtol=None, atol=None, **labels) -> None:
    if _is_event(got) and _is_event(want):
        _assert_events_close(got, want, context, rtol, atol, **labels)
    else:
        _assert_arrays_close(got, want, context, rtol, atol)


def _assert_trees_close(got: Any, want: Any, context: str, rtol=None, atol=None) -> None:
    got_leaves, got_def = jax.tree_util.tree_flatten(got, is_leaf=_is_event)
    want_leaves, want_def = jax.tree_util.tree_flatten(want, is_leaf=_is_event)
    if got_def != want_def:
        raise AssertionError(f"{context}: structures differ: {got_def} vs {want_def}")
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(got, is_leaf=_is_event)[0]]
    for path, a, b in zip(paths, got_leaves, want_leaves):
        if _is_event(a):
            if np.ndim(a.time) > 1:
                for k in range(np.shape(a.time)[0]):
                    _assert_events_close(Spikes(a.time[k], a.idx[k]), Spikes(b.time[k], b.idx[k]),
                                         f"{context} at {path}[{k}]", rtol, atol)
            else:
                _assert_events_close(a, b, f"{context} at {path}", rtol, atol)
        elif a is None or b is None:
            if a is not b:
                raise AssertionError(f"{context} at {path}: {a!r} vs {b!r}")
        else:
            _assert_arrays_close(a, b, f"{context} at {path}", rtol, atol)


def _valid_events(spikes: Spikes) -> Tuple[np.ndarray, np.ndarray]:
    time = np.asarray(spikes.time)
    idx = np.asarray(spikes.idx)
    keep = idx >= 0
    return time[keep], idx[keep]


def _rebuild(time: np.ndarray, idx: np.ndarray, like: Spikes, capacity: Optional[int] = None) -> Spikes:
    """A buffer with events in the given order (not re-sorted), padded to ``like``'s capacity."""
    capacity = like.capacity if capacity is None else capacity
    dtype = np.asarray(like.time).dtype
    out_time = np.full(capacity, np.inf, dtype=dtype)
    out_idx = np.full(capacity, -1, dtype=np.int32)
    out_time[: time.size] = time
    out_idx[: idx.size] = idx
    return Spikes(jnp.asarray(out_time), jnp.asarray(out_idx))


def _overflow_note(outputs: Any) -> str:
    if _is_event(outputs) and int(np.sum(np.asarray(outputs.idx) >= 0)) >= outputs.capacity:
        return " (note: the output buffer is full, so events may have been cut off by its capacity)"
    return ""


# ----------------------------------------------------------------------------- checks
def check_causality(
    layer: Any, params: Any, inputs: Any, split: Any, *, replacement: Any = None,
    rtol: Optional[float] = None, atol: Optional[float] = None,
) -> None:
    """Outputs up to ``split`` do not change when inputs after ``split`` change.

    Event inputs: ``split`` is a time; every input event later than ``split`` is removed (and
    the events of ``replacement``, all later than ``split``, are added); output events at times
    ``<= split`` must be the same. Dense inputs: ``split`` is a step index ``k``; rows ``k:``
    are replaced by ``replacement`` (default: ``1 - x`` for 0/1 inputs, ``x + 1`` otherwise)
    and output rows ``:k`` must be the same.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: one sample's inputs (``Spikes`` or ``(T, n)``).
        split: time (event) or step index (dense).
        replacement: optional new future inputs (``Spikes`` or ``(T - k, n)`` array).
        rtol, atol: tolerances (see the module docstring).

    Raises:
        AssertionError: if an output at or before ``split`` changed.
    """
    if _is_event(inputs):
        split = float(split)
        time, idx = _valid_events(inputs)
        keep = time <= split
        new_time, new_idx = time[keep], idx[keep]
        if replacement is not None:
            r_time, r_idx = _valid_events(replacement)
            if np.any(r_time <= split):
                raise ValueError("replacement events must all be later than split")
            new_time, new_idx = np.concatenate([new_time, r_time]), np.concatenate([new_idx, r_idx])
        capacity = max(inputs.capacity, new_time.size)
        perturbed = _rebuild(new_time, new_idx, inputs, capacity)
        before = _filter(_outputs(layer, params, inputs), lambda t: t <= split)
        after = _filter(_outputs(layer, params, perturbed), lambda t: t <= split)
        _assert_events_close(
            after, before,
            f"causality: output spikes up to t={split!r} changed when only inputs after it changed "
            f"(inputs {_describe_events(inputs)} -> {_describe_events(perturbed)})",
            rtol, atol, got_label="changed future", want_label="original",
        )
        return
    x = np.asarray(inputs)
    k = int(split)
    if replacement is None:
        binary = np.all((x == 0) | (x == 1))
        future = 1 - x[k:] if binary else x[k:] + 1
    else:
        future = np.asarray(replacement, dtype=x.dtype)
    perturbed = np.concatenate([x[:k], future.astype(x.dtype)], axis=0)
    before = np.asarray(_outputs(layer, params, jnp.asarray(x)))[:k]
    after = np.asarray(_outputs(layer, params, jnp.asarray(perturbed)))[:k]
    _assert_arrays_close(
        after, before,
        f"causality: output steps [0, {k}) changed when only input steps >= {k} changed", rtol, atol,
    )


def check_time_shift(
    layer: Any, params: Any, inputs: Any, shift: Any, *, t_max: Optional[float] = None,
    rtol: Optional[float] = None, atol: Optional[float] = None,
) -> None:
    """Delaying all inputs delays all outputs by the same amount (time-shift equivariance).

    Event inputs: ``shift`` is a time ``>= 0``; if the layer simulates a window ``[0, t_max]``,
    pass ``t_max`` and only outputs that stay inside the window (with a margin) are compared.
    Dense inputs: ``shift`` is a number of steps; the inputs get ``shift`` leading rows of
    zeros (the last rows drop out) and output rows ``shift:`` must equal the original rows
    ``:T - shift``.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: one sample's inputs.
        shift: the delay.
        t_max: the layer's window end (event layers).
        rtol, atol: tolerances.

    Raises:
        AssertionError: if the shifted outputs differ.
    """
    if _is_event(inputs):
        shift = float(shift)
        if shift < 0:
            raise ValueError(f"shift must be >= 0, got {shift}")
        shifted_inputs = spikes_lib.shift(inputs, shift)
        original = _outputs(layer, params, inputs)
        shifted = _outputs(layer, params, shifted_inputs)
        o_time, o_idx = _valid_events(original)
        moved = Spikes(jnp.asarray(np.where(np.asarray(original.idx) >= 0, np.asarray(original.time, np.float64) + shift, np.inf)), original.idx)
        if t_max is not None:
            tol = _tolerance([o_time + shift], _dtype_of(original), rtol, atol)
            limit = float(t_max) - 10 * tol - 1e-12 * abs(float(t_max))
            moved = _filter(moved, lambda t: t < limit)
            shifted = _filter(shifted, lambda t: t < limit)
        _assert_events_close(
            shifted, moved,
            f"time shift: delaying the inputs by {shift!r} did not delay the outputs by {shift!r} "
            f"(inputs {_describe_events(inputs)}){_overflow_note(original)}",
            rtol, atol, got_label="shifted run", want_label="original run + shift",
        )
        return
    x = np.asarray(inputs)
    k = int(shift)
    if not 0 <= k <= x.shape[0]:
        raise ValueError(f"shift must be in [0, {x.shape[0]}] steps, got {k}")
    delayed = np.concatenate([np.zeros((k,) + x.shape[1:], x.dtype), x[: x.shape[0] - k]], axis=0)
    original = np.asarray(_outputs(layer, params, jnp.asarray(x)))
    shifted = np.asarray(_outputs(layer, params, jnp.asarray(delayed)))
    _assert_arrays_close(
        shifted[k:], original[: x.shape[0] - k],
        f"time shift: delaying the inputs by {k} step(s) did not delay the outputs by {k} step(s)",
        rtol, atol,
    )


def _permute_weight_rows(params: Any, permutation: np.ndarray) -> Any:
    if isinstance(params, dict) and "weight" in params:
        new = dict(params)
        new["weight"] = jnp.asarray(params["weight"])[permutation]
        return new
    raise TypeError(
        "check_simultaneous_order on dense inputs permutes input channels together with the rows "
        "of params['weight']; pass permute_params=(params, permutation) -> params for this layer"
    )


def check_simultaneous_order(
    layer: Any, params: Any, inputs: Any, *, seed: int = 0,
    permute_params: Optional[Callable[[Any, np.ndarray], Any]] = None,
    rtol: Optional[float] = None, atol: Optional[float] = None,
) -> int:
    """The order in which simultaneous inputs are listed does not matter.

    Event inputs: events with equal times are permuted among themselves (a seeded random
    permutation of every group of ties; the buffer stays sorted); the outputs must agree.
    Dense inputs have no listing order within a step; the analogue checked is that permuting
    the input channels together with the rows of the input weights (``permute_params``,
    default: rows of ``params["weight"]``) leaves the outputs unchanged.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: one sample's inputs.
        seed: seed of the permutation.
        permute_params: dense inputs only: ``(params, permutation) -> params``.
        rtol, atol: tolerances.

    Returns:
        The number of tie groups permuted (event inputs) or of channels (dense inputs); 0 means
        nothing was exercised (use ``hypothesis.assume`` on it if needed).

    Raises:
        AssertionError: if the outputs depend on the order.
    """
    rng = np.random.default_rng(seed)
    if _is_event(inputs):
        time, idx = _valid_events(inputs)
        new_idx = idx.copy()
        groups = 0
        for value in np.unique(time):
            where = np.flatnonzero(time == value)
            if where.size > 1 and np.unique(idx[where]).size > 1:
                groups += 1
                order = rng.permutation(where.size)
                if np.all(idx[where][order] == idx[where]):
                    order = order[::-1]
                new_idx[where] = idx[where][order]
        if groups == 0:
            return 0
        permuted = _rebuild(time, new_idx, inputs)
        _assert_events_close(
            _outputs(layer, params, permuted), _outputs(layer, params, inputs),
            f"simultaneous inputs: listing the events at equal times in another order changed the "
            f"output (inputs {_describe_events(inputs)} -> {_describe_events(permuted)})",
            rtol, atol, got_label="permuted", want_label="original",
        )
        return groups
    x = np.asarray(inputs)
    permutation = rng.permutation(x.shape[-1])
    permuted_params = (permute_params or _permute_weight_rows)(params, permutation)
    _assert_arrays_close(
        _outputs(layer, permuted_params, jnp.asarray(x[..., permutation])),
        _outputs(layer, params, jnp.asarray(x)),
        f"simultaneous inputs: permuting input channels {permutation.tolist()} (with the weight rows) "
        "changed the output",
        rtol, atol,
    )
    return int(x.shape[-1])


def check_unsorted_inputs(
    layer: Any, params: Any, inputs: Spikes, *, seed: int = 0,
    rtol: Optional[float] = None, atol: Optional[float] = None,
) -> bool:
    """An unsorted spike buffer is rejected with an error or handled correctly, never lost.

    The real events of ``inputs`` are put in a scrambled (unsorted) order. The layer must
    either raise (``ValueError``/``TypeError``, or a ``checkify``/runtime error naming the
    problem) or give the same output as for the sorted buffer. Silently dropping or
    misplacing events is the failure this catches.

    Args:
        layer: an event layer (or its apply function).
        params: its parameters.
        inputs: a valid (sorted) ``Spikes`` buffer with at least two distinct times.
        seed: seed of the scrambling.
        rtol, atol: tolerances.

    Returns:
        True if the layer raised, False if it processed the unsorted buffer correctly.

    Raises:
        AssertionError: if the layer silently gave a different output.
        TypeError: for dense inputs (they have no order to break).
    """
    if not _is_event(inputs):
        raise TypeError("check_unsorted_inputs applies to event layers (Spikes inputs)")
    time, idx = _valid_events(inputs)
    if np.unique(time).size < 2:
        return False
    rng = np.random.default_rng(seed)
    order = rng.permutation(time.size)
    while np.all(np.diff(time[order]) >= 0):
        order = rng.permutation(time.size)
    scrambled = _rebuild(time[order], idx[order], inputs)
    expected = _outputs(layer, params, inputs)
    try:
        got = _outputs(layer, params, scrambled)
    except (ValueError, TypeError) as error:
        del error
        return True
    except Exception as error:  # checkify / XLA runtime errors
        if "sort" in str(error).lower() or "order" in str(error).lower():
            return True
        raise
    _assert_events_close(
        got, expected,
        f"unsorted inputs: the buffer {_describe_events(scrambled)} (unsorted) was neither rejected "
        "nor simulated like its sorted version",
        rtol, atol, got_label="unsorted", want_label="sorted",
    )
    return False


def check_no_input_no_spike(layer: Any, params: Any, inputs_like: Any, *, rest_value: Any = None) -> None:
    """Without input a layer at rest stays silent.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs_like: an input of the right shape/capacity/dtype (its values are ignored: an
            empty ``Spikes`` buffer or an all-zero array of the same shape is used).
        rest_value: for non-spiking readouts with dense outputs (e.g. ``LI``), the value every
            output must equal (``v_leak``); default: outputs must all be 0.

    Raises:
        AssertionError: if the layer produced spikes (or a non-rest readout).
    """
    if _is_event(inputs_like):
        silent = spikes_lib.empty(inputs_like.capacity, dtype=np.asarray(inputs_like.time).dtype)
        out = _outputs(layer, params, silent)
        if _is_event(out):
            count = int(np.sum(np.asarray(out.idx) >= 0))
            if count:
                raise AssertionError(f"no input -> no spike: the layer fired {count} spike(s) {_describe_events(out)}")
            return
    else:
        silent = jnp.zeros_like(jnp.asarray(inputs_like))
        out = _outputs(layer, params, silent)
    target = 0.0 if rest_value is None else rest_value
    values = np.asarray(out, dtype=np.float64)
    bad = ~np.isclose(values, target, rtol=0, atol=1e-6 * max(1.0, abs(float(np.max(np.abs(target))))))
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"no input -> no spike: {int(bad.sum())} output entries are not {target!r} without input; "
            f"first at index {where}: {values[where]!r}"
        )


def _default_weight_selector(path: Tuple[Any, ...], leaf: Any) -> bool:
    text = jax.tree_util.keystr(path).lower()
    return jnp.ndim(leaf) == 2 and jnp.issubdtype(jnp.result_type(leaf), jnp.floating) and "recurrent" not in text


def _first_spikes(outputs: Any, n_neurons: int) -> np.ndarray:
    if _is_event(outputs):
        return np.asarray(spikes_lib.first_spike_times(outputs, n_neurons), dtype=np.float64)
    x = np.asarray(outputs).reshape(np.shape(outputs)[0], -1)
    fired = x > 0
    first = np.where(fired.any(axis=0), np.argmax(fired, axis=0), np.inf)
    return first.astype(np.float64)


def check_first_spike_monotone(
    layer: Any, params: Any, inputs: Any, *, factor: float = 1.5,
    select: Optional[Callable[[Tuple[Any, ...], Any], bool]] = None,
    n_neurons: Optional[int] = None, rtol: Optional[float] = None, atol: Optional[float] = None,
) -> None:
    """Scaling up positive input weights never delays any neuron's first spike.

    Before its first spike a neuron's potential is a non-negative combination of its input
    weights (the PSP kernel is >= 0), so making positive weights larger can only make it cross
    earlier. Holds for one feed-forward layer; recurrent weights are excluded by default.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: one sample's inputs.
        factor: scale applied to positive weights, > 1.
        select: ``(path, leaf) -> bool`` choosing the weight leaves (default: 2-D float leaves
            whose path does not mention "recurrent").
        n_neurons: layer size (default: inferred from the outputs).
        rtol, atol: tolerances on event times (dense outputs compare step indices exactly).

    Raises:
        AssertionError: if some neuron's first spike came later (or vanished).
    """
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    chooser = select or _default_weight_selector

    def scale(path, leaf):
        if chooser(path, leaf):
            return jnp.where(leaf > 0, leaf * factor, leaf)
        return leaf

    stronger = jax.tree_util.tree_map_with_path(scale, params)
    before = _outputs(layer, params, inputs)
    after = _outputs(layer, stronger, inputs)
    if n_neurons is None:
        if _is_event(before):
            n_neurons = int(max(np.max(np.asarray(before.idx), initial=-1), np.max(np.asarray(after.idx), initial=-1))) + 1
        else:
            n_neurons = int(np.prod(np.shape(before)[1:]))
    t_before, t_after = _first_spikes(before, n_neurons), _first_spikes(after, n_neurons)
    tol = _tolerance([t_before, t_after], _dtype_of(before), rtol, atol) if _is_event(before) else 0.0
    later = t_after > t_before + tol
    if np.any(later):
        n = int(np.argmax(later))
        raise AssertionError(
            f"first-spike monotonicity: scaling positive weights by {factor} delayed neuron {n}'s first "
            f"spike from {t_before[n]!r} to {t_after[n]!r}"
            + (f" (inputs {_describe_events(inputs)})" if _is_event(inputs) else "")
        )


def check_jit_equals_eager(
    layer: Any, params: Any, inputs: Any, carry: Any = None,
    rtol: Optional[float] = None, atol: Optional[float] = None,
) -> None:
    """``jax.jit(apply)`` gives the same carry, outputs and recording as eager ``apply``.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: one sample's inputs.
        carry: optional initial state.
        rtol, atol: tolerances.

    Raises:
        AssertionError: naming the first differing leaf.
    """
    apply = _apply_fn(layer)
    eager = apply(params, inputs, carry=carry) if carry is not None else apply(params, inputs)
    jitted = jax.jit(lambda p, x, c: apply(p, x, carry=c) if c is not None else apply(p, x))(params, inputs, carry)
    _assert_trees_close(jitted, eager, "jit vs eager: (carry, outputs, recording)", rtol, atol)


def check_vmap_equals_loop(
    layer: Any, params: Any, batch_inputs: Any, rtol: Optional[float] = None, atol: Optional[float] = None,
) -> None:
    """``jax.vmap`` over a batch of inputs equals a Python loop over the samples.

    Args:
        layer: the layer (or its apply function).
        params: its parameters (shared by all samples).
        batch_inputs: inputs with a leading batch axis (``Spikes`` with ``(B, capacity)``
            fields, or a ``(B, T, n)`` array).
        rtol, atol: tolerances.

    Raises:
        AssertionError: naming the first differing sample and leaf.
    """
    apply = _apply_fn(layer)
    batched = jax.vmap(lambda x: apply(params, x), in_axes=0)(batch_inputs)
    size = int(jax.tree_util.tree_leaves(batch_inputs)[0].shape[0])
    for k in range(size):
        sample = jax.tree_util.tree_map(lambda leaf: leaf[k], batch_inputs)
        single = apply(params, sample)
        from_batch = jax.tree_util.tree_map(lambda leaf: leaf[k], batched)
        _assert_trees_close(from_batch, single, f"vmap vs loop, sample {k}: (carry, outputs, recording)", rtol, atol)


def check_chunked_equals_whole(
    layer: Any, params: Any, inputs: Any, split: Any, *, second_layer: Any = None, whole_layer: Any = None,
    rtol: Optional[float] = None, atol: Optional[float] = None,
) -> None:
    """Simulating in two chunks, passing ``carry`` along, equals one run over the whole window.

    Dense inputs: ``split`` is a step index ``k``; ``apply(x[:k])`` then
    ``apply(x[k:], carry=carry)``: the concatenated outputs and the final carry must equal
    one run over ``x``.

    Event inputs: ``split`` is a time ``t_s`` and the window is part of the layer, so three
    layers are needed: ``layer`` simulates ``[0, t_s]``, ``second_layer`` the rest of the
    window in its own time (``[0, t_end - t_s]``, starting from the first run's ``carry``) and
    ``whole_layer`` the whole ``[0, t_end]``. Input events at ``t <= t_s`` go to the first
    chunk; later ones go to the second with times ``t - t_s``; the second chunk's outputs are
    shifted back by ``t_s``. Output spikes of both chunks together must equal those of the
    whole run (the final carries are compared too).

    Args:
        layer: the layer (dense) or the first-chunk layer (event).
        params: parameters, shared by all runs.
        inputs: one sample's inputs.
        split: step index (dense) or time (event).
        second_layer: event only: the continuation layer.
        whole_layer: event only: the whole-window layer.
        rtol, atol: tolerances.

    Raises:
        AssertionError: if the chunked run differs (outputs or final carry).
        ValueError: on a split outside the window or missing event layers.
    """
    if _is_event(inputs):
        if second_layer is None or whole_layer is None:
            raise ValueError("event inputs need second_layer and whole_layer (see the docstring)")
        t_split = float(split)
        time, idx = _valid_events(inputs)
        early = time <= t_split
        part1 = _rebuild(time[early], idx[early], inputs)
        part2 = _rebuild(time[~early] - t_split, idx[~early], inputs)
        carry1, out1, _ = _run(layer, params, part1)
        carry2, out2, _ = _run(second_layer, params, part2, carry=carry1)
        carry_all, out_all, _ = _run(whole_layer, params, inputs)
        t1, i1 = _valid_events(out1)
        t2, i2 = _valid_events(out2)
        joined = Spikes(np.concatenate([np.asarray(t1, np.float64), np.asarray(t2, np.float64) + t_split]),
                        np.concatenate([i1, i2]))
        _assert_events_close(
            joined, out_all,
            f"chunked run: simulating [0, {t_split!r}] and continuing from its carry differs from one run "
            f"(inputs {_describe_events(inputs)}){_overflow_note(out_all)}",
            rtol, atol, got_label="chunked", want_label="whole",
        )
        _assert_trees_close(carry2, carry_all, "chunked run: final carry", rtol, atol)
        return
    x = jnp.asarray(inputs)
    k = int(split)
    if not 0 < k < x.shape[0]:
        raise ValueError(f"split must be in (0, {x.shape[0]}) steps, got {k}")
    carry1, out1, _ = _run(layer, params, x[:k])
    carry2, out2, _ = _run(layer, params, x[k:], carry=carry1)
    carry_all, out_all, _ = _run(layer, params, x)
    _assert_arrays_close(
        jnp.concatenate([out1, out2], axis=0), out_all,
        f"chunked run: steps [0, {k}) then [{k}, {x.shape[0]}) with carry differ from one run", rtol, atol,
    )
    _assert_trees_close(carry2, carry_all, "chunked run: final carry", rtol, atol)


class GradientReport(NamedTuple):
    """Outcome of ``check_gradients``.

    Attributes:
        checked: coordinates compared with finite differences.
        skipped: coordinates whose perturbation created or deleted a spike (not comparable).
        max_error: largest ``|grad - fd| / (atol + rtol |fd|)`` seen (< 1 means within tolerance).
    """

    checked: int
    skipped: int
    max_error: float


def _to_float64(tree: Any) -> Any:
    def cast(leaf):
        if leaf is None:
            return None
        array = jnp.asarray(leaf)
        return array.astype(jnp.float64) if jnp.issubdtype(array.dtype, jnp.floating) else array

    return jax.tree_util.tree_map(cast, tree)


def _default_objective(outputs: Any) -> jax.Array:
    if _is_event(outputs):
        valid = (outputs.idx >= 0) & jnp.isfinite(outputs.time)
        weight = 1.0 / (1.0 + jnp.maximum(outputs.idx, 0).astype(outputs.time.dtype))
        return jnp.sum(jnp.where(valid, weight * jnp.where(valid, outputs.time, 0.0), 0.0))
    x = jnp.asarray(outputs)
    coefficients = jnp.cos(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape)
    return jnp.sum(coefficients * x)


def _default_structure(outputs: Any) -> Any:
    if _is_event(outputs):
        _, idx = _valid_events(outputs)
        return tuple(int(i) for i in np.sort(idx))  # which neurons spike how often
    x = np.asarray(outputs)
    if np.all((x == 0) | (x == 1)):
        return x.astype(bool).tobytes()
    return None


def check_gradients(
    layer: Any, params: Any, inputs: Any, *, objective: Optional[Callable[[Any], Any]] = None,
    structure: Optional[Callable[[Any], Any]] = None, eps: float = 1e-6, rtol: float = 1e-4,
    atol: Optional[float] = None, max_coordinates: int = 24, seed: int = 0, min_checked: int = 0,
) -> GradientReport:
    """``jax.grad`` of a scalar objective of the outputs equals float64 central differences.

    Everything is cast to float64 and run under ``jax.enable_x64``. For each of up to
    ``max_coordinates`` parameter entries (chosen with ``seed``), ``(f(p + h) - f(p - h)) / 2h``
    with ``h = eps * max(1, |p|)`` is compared with the gradient:
    ``|grad - fd| <= atol + rtol * |fd|``. Perturbations that change the spike structure
    (``structure(outputs)`` differs: a spike is created or deleted) are skipped and counted,
    because the objective is not differentiable there.

    Default objective: event outputs: ``sum_k time_k / (1 + idx_k)`` over real output
    events; dense outputs: a fixed weighted sum of all entries. (Surrogate gradients of
    discrete spiking layers are not derivatives; compare them only on exact paths such as the
    ``LI`` readout.)

    Args:
        layer: the layer (or its apply function); must run in float64 under x64.
        params: its parameters.
        inputs: one sample's inputs.
        objective: ``outputs -> scalar``.
        structure: ``outputs -> hashable``; default: the multiset of spiking neurons (event)
            or the 0/1 pattern (binary dense outputs; none for continuous outputs).
        eps: relative finite-difference step.
        rtol: relative tolerance (default 1e-4).
        atol: absolute tolerance (default ``1e-7 * max(|f(p)|, 1e-30) / max(1, max |p|)``).
        max_coordinates: most parameter entries checked.
        seed: seed choosing the entries.
        min_checked: raise if fewer entries could be compared.

    Returns:
        A ``GradientReport``.

    Raises:
        AssertionError: on a mismatch (naming the parameter entry, both values and the spike
            structure), a non-finite gradient, or fewer than ``min_checked`` comparisons.
    """
    objective = objective or _default_objective
    structure = structure or _default_structure
    apply = _apply_fn(layer)
    with jax.enable_x64(True):
        params64 = _to_float64(params)
        inputs64 = _to_float64(inputs) if not _is_event(inputs) else Spikes(
            jnp.asarray(inputs.time, jnp.float64), jnp.asarray(inputs.idx))

        def f(p):
            return objective(apply(p, inputs64)[1])

        def evaluate(p):
            outputs = apply(p, inputs64)[1]
            return float(objective(outputs)), structure(outputs)

        value0, structure0 = evaluate(params64)
        grads = jax.grad(f)(params64)
        flat_p, unflatten = jax.flatten_util.ravel_pytree(params64)
        flat_g, _ = jax.flatten_util.ravel_pytree(grads)
        flat_p, flat_g = np.asarray(flat_p), np.asarray(flat_g)
        if not np.all(np.isfinite(flat_g)):
            bad = np.flatnonzero(~np.isfinite(flat_g))
            raise AssertionError(f"gradients: {bad.size} non-finite gradient entries (first at flat index {bad[0]})")
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(flat_p.size)[:max_coordinates]
        scale_p = max(1.0, float(np.max(np.abs(flat_p)))) if flat_p.size else 1.0
        tol_abs = atol if atol is not None else 1e-7 * max(abs(value0), 1e-30) / scale_p
        checked = skipped = 0
        worst = 0.0
        for k in chosen:
            h = eps * max(1.0, abs(flat_p[k]))
            plus, minus = flat_p.copy(), flat_p.copy()
            plus[k] += h
            minus[k] -= h
            f_plus, s_plus = evaluate(unflatten(jnp.asarray(plus)))
            f_minus, s_minus = evaluate(unflatten(jnp.asarray(minus)))
            if s_plus != structure0 or s_minus != structure0:
                skipped += 1
                continue
            fd = (f_plus - f_minus) / (2 * h)
            allowed = tol_abs + rtol * abs(fd)
            error = abs(flat_g[k] - fd)
            worst = max(worst, error / allowed if allowed > 0 else (0.0 if error == 0 else np.inf))
            checked += 1
            if error > allowed:
                raise AssertionError(
                    f"gradients: d objective / d params[flat {k}] is {float(flat_g[k])!r} by jax.grad but "
                    f"{float(fd)!r} by float64 central differences (h={h:.3g}); |difference| {error:.3g} > "
                    f"{allowed:.3g} (rtol {rtol}, atol {tol_abs:.3g}); objective {value0!r}, spike "
                    f"structure {structure0!r}"
                    + (f"; inputs {_describe_events(inputs)}" if _is_event(inputs) else "")
                )
    if checked < min_checked:
        raise AssertionError(
            f"gradients: only {checked} coordinate(s) comparable ({skipped} skipped because the "
            f"perturbation created or deleted a spike); at least {min_checked} required"
        )
    return GradientReport(checked, skipped, float(worst))


def check_finite_gradients_without_spikes(
    layer: Any, params: Any, inputs: Any, *, objective: Optional[Callable[[Any, Any], Any]] = None,
) -> None:
    """Gradients are finite (no NaN/inf) when the layer emits no spike at all.

    The classic failure is a ``jnp.where`` over ``+inf`` spike times (padding, silent
    neurons) whose discarded branch still poisons the gradient with ``0 * inf = NaN``.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: inputs for which the layer stays silent (asserted).
        objective: ``(outputs, recording) -> scalar``; default: the sum of all output spike
            times where finite (event) or of all outputs (dense), plus the sum of every finite
            float leaf of the recording.

    Raises:
        AssertionError: if the layer spiked (precondition) or a gradient entry is not finite.
    """
    apply = _apply_fn(layer)

    def default(outputs, recording):
        total = 0.0
        if _is_event(outputs):
            total = jnp.sum(jnp.where(jnp.isfinite(outputs.time), outputs.time, 0.0))
        else:
            total = jnp.sum(outputs)
        for leaf in jax.tree_util.tree_leaves(recording):
            if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
                total = total + jnp.sum(jnp.where(jnp.isfinite(leaf), leaf, 0.0))
        return total

    objective = objective or default
    _, outputs, _ = apply(params, inputs)
    if _is_event(outputs):
        fired = int(np.sum(np.asarray(outputs.idx) >= 0))
    else:
        fired = int(np.sum(np.asarray(outputs) != 0)) if np.all(np.isin(np.asarray(outputs), (0, 1))) else 0
    if fired:
        raise AssertionError(f"finite gradients without spikes: precondition failed, the layer fired {fired} spike(s)")

    def f(p):
        _, out, rec = apply(p, inputs)
        return objective(out, rec)

    grads = jax.grad(f)(params)
    for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]:
        array = np.asarray(leaf)
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise AssertionError(
                f"finite gradients without spikes: gradient of params{jax.tree_util.keystr(path)} has "
                f"{int(np.sum(~np.isfinite(array)))} non-finite entries although nothing spiked"
            )


def event_reference(
    neuron: Any, t_max: float, *, weight_key: Any = "weight", recurrent_key: Any = None,
) -> Callable[[Any, Spikes], Spikes]:
    """A reference function for ``check_matches_reference`` on one event LIF layer.

    Args:
        neuron: the layer's ``LIFParameters``.
        t_max: the layer's window end.
        weight_key: where the ``(n_in, size)`` input weights are in the params (a dict key,
            default ``"weight"`` as in ``jaxsnn.event``, or a callable ``params -> weights``).
        recurrent_key: where the recurrent weights are (``None`` for feed-forward layers,
            ``"recurrent_weight"`` for ``jaxsnn.event.RecurrentLIF``).

    Returns:
        ``(params, inputs) -> Spikes`` computed by ``jaxsnn.testing.reference.simulate_event``
        in float64 (capacity = number of spikes, at least 1).
    """
    from jaxsnn.testing.reference import simulate_event

    def get(params, key):
        return key(params) if callable(key) else params[key]

    def reference_fn(params, inputs):
        recurrent = None if recurrent_key is None else np.asarray(get(params, recurrent_key), np.float64)
        times, idx = simulate_event(
            np.asarray(get(params, weight_key), np.float64), np.asarray(inputs.time, np.float64),
            np.asarray(inputs.idx), neuron, t_max, recurrent_weight=recurrent,
        )
        capacity = max(times.size, 1)
        # NumPy arrays, not jax arrays: keeps float64 even when x64 is off.
        padded_time = np.concatenate([times, np.full(capacity - times.size, np.inf)])
        padded_idx = np.concatenate([idx, np.full(capacity - idx.size, -1)]).astype(np.int32)
        return Spikes(padded_time, padded_idx)

    return reference_fn


def discrete_reference(*, output: str = "spikes", weight_key: Any = "weight", recurrent_key: Any = None,
                       readout: bool = False, **neuron: Any) -> Callable[[Any, Any], np.ndarray]:
    """A reference function for ``check_matches_reference`` on one discrete layer.

    Args:
        output: which record of ``simulate_discrete`` the layer outputs (``"spikes"`` for
            LIF, ``"v"`` for an LI readout).
        weight_key: where the input weights are in the params (dict key or callable).
        recurrent_key: where the recurrent weights are (``None``: feed-forward).
        readout: simulate the non-spiking LI.
        **neuron: ``tau_syn, tau_mem, dt, v_th, v_reset, v_leak, reset``.

    Returns:
        ``(params, inputs) -> (T, size)`` float64 array.
    """
    from jaxsnn.testing.reference import simulate_discrete

    def get(params, key):
        return key(params) if callable(key) else params[key]

    def reference_fn(params, inputs):
        recurrent = None if recurrent_key is None else np.asarray(get(params, recurrent_key), np.float64)
        record = simulate_discrete(np.asarray(get(params, weight_key), np.float64), np.asarray(inputs, np.float64),
                                   recurrent_weight=recurrent, readout=readout, **neuron)
        return record[output]

    return reference_fn


def check_matches_reference(
    layer: Any, params: Any, inputs: Any, reference_fn: Callable[[Any, Any], Any], *,
    rtol: Optional[float] = None, atol: Optional[float] = None,
) -> None:
    """The layer's outputs agree with a float64 reference within a stated tolerance.

    Event outputs: every neuron spikes as often as in the reference and each spike time is
    within ``atol + rtol * scale`` (``scale`` = largest spike time). If the layer's output
    buffer is full, it is compared with the earliest ``capacity`` reference spikes (the layer
    must flag the overflow itself; that is not checked here). Dense outputs: entrywise.
    Build ``reference_fn`` with ``event_reference`` / ``discrete_reference`` or pass your own
    ``(params, inputs) -> expected outputs``.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: one sample's inputs.
        reference_fn: ``(params, inputs) -> expected outputs``.
        rtol, atol: tolerances (defaults: ``default_rtol`` of the layer's output dtype).

    Raises:
        AssertionError: describing the first disagreement.
    """
    got = _outputs(layer, params, inputs)
    want = reference_fn(params, inputs)
    if _is_event(got) and _is_event(want) and int(np.sum(np.asarray(got.idx) >= 0)) >= got.capacity:
        # A full buffer may legitimately (and flagged) hold only the earliest `capacity` spikes.
        w_time, w_idx = _valid_events(want)
        order = np.lexsort((w_idx, w_time))[: got.capacity]
        want = Spikes(np.asarray(w_time, np.float64)[order], np.asarray(w_idx)[order])
    _assert_outputs_close(
        got, want,
        "reference: the layer disagrees with the float64 reference"
        + (f" (inputs {_describe_events(inputs)}){_overflow_note(got)}" if _is_event(inputs) else ""),
        rtol, atol, **({"got_label": "layer", "want_label": "reference"} if _is_event(got) else {}),
    )
