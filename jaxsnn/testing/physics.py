"""Checks of what any correct spiking layer does physically, whatever its neuron model.

* ``check_causality``: outputs up to a time do not depend on later inputs;
* ``check_time_shift``: delaying the inputs delays the outputs;
* ``check_simultaneous_order``: the listing order of simultaneous inputs is irrelevant;
* ``check_unsorted_inputs``: an unsorted buffer is rejected or handled, never silently lost;
* ``check_no_input_no_spike``: without input a layer at rest stays silent;
* ``check_first_spike_monotone``: larger positive weights never delay a first spike.

Each runs the layer on concrete ``params`` and ``inputs``, raises ``AssertionError`` with a
readable explanation when the property does not hold, and returns how many output values it
compared (spike times for event layers, entries for dense ones). Each takes ``min_compared``
(default 1): comparing nothing (e.g. a layer silent before the split) checked nothing and fails.
Pass ``min_compared=0`` for examples that may legitimately compare nothing and require a total
over all examples instead (``jaxsnn.testing.compare.require_compared``).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn import spikes as spikes_lib
from jaxsnn.spikes import Spikes
from jaxsnn.testing._layers import (
    filter_events,
    is_event,
    is_full,
    outputs,
    overflow_note,
    rebuild,
    valid_events,
)
from jaxsnn.testing.compare import (
    assert_arrays_close,
    assert_events_close,
    default_rtol,
    describe_events,
    dtype_of,
    require_compared,
    tolerance,
)

__all__ = [
    "check_causality",
    "check_time_shift",
    "check_simultaneous_order",
    "check_unsorted_inputs",
    "check_no_input_no_spike",
    "check_first_spike_monotone",
]

_SPIKE_HINT = "Draw inputs and weights that make the layer spike, or pass min_compared=0 and require a total."


def check_causality(
    layer: Any, params: Any, inputs: Any, split: Any, *, replacement: Any = None,
    rtol: Optional[float] = None, atol: Optional[float] = None, min_compared: int = 1,
) -> int:
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
        rtol, atol: tolerances (see ``jaxsnn.testing.compare``).
        min_compared: fewest output values (spike times at or before ``split``, or entries of
            rows ``:k``) that must be compared.

    Returns:
        The number of output values compared.

    Raises:
        AssertionError: if an output at or before ``split`` changed, or too little was compared.
    """
    if is_event(inputs):
        split = float(split)
        time, idx = valid_events(inputs)
        keep = time <= split
        new_time, new_idx = time[keep], idx[keep]
        if replacement is not None:
            r_time, r_idx = valid_events(replacement)
            if np.any(r_time <= split):
                raise ValueError("replacement events must all be later than split")
            new_time, new_idx = np.concatenate([new_time, r_time]), np.concatenate([new_idx, r_idx])
        capacity = max(inputs.capacity, new_time.size)
        perturbed = rebuild(new_time, new_idx, inputs, capacity)
        before = filter_events(outputs(layer, params, inputs), lambda t: t <= split)
        after = filter_events(outputs(layer, params, perturbed), lambda t: t <= split)
        compared = assert_events_close(
            after, before,
            f"causality: output spikes up to t={split!r} changed when only inputs after it changed "
            f"(inputs {describe_events(inputs)} -> {describe_events(perturbed)})",
            rtol=rtol, atol=atol, min_compared=0, got_label="changed future", want_label="original",
        )
        return require_compared(compared, min_compared, f"causality: output spike times at or before t={split!r}",
                                _SPIKE_HINT)
    x = np.asarray(inputs)
    k = int(split)
    if replacement is None:
        binary = np.all((x == 0) | (x == 1))
        future = 1 - x[k:] if binary else x[k:] + 1
    else:
        future = np.asarray(replacement, dtype=x.dtype)
    perturbed = np.concatenate([x[:k], future.astype(x.dtype)], axis=0)
    before = np.asarray(outputs(layer, params, jnp.asarray(x)))[:k]
    after = np.asarray(outputs(layer, params, jnp.asarray(perturbed)))[:k]
    compared = assert_arrays_close(
        after, before, f"causality: output steps [0, {k}) changed when only input steps >= {k} changed",
        rtol=rtol, atol=atol, min_compared=0,
    )
    return require_compared(compared, min_compared, f"causality: output entries of steps [0, {k})",
                            "Split after step 0.")


def check_time_shift(
    layer: Any, params: Any, inputs: Any, shift: Any, *, t_max: Optional[float] = None,
    rtol: Optional[float] = None, atol: Optional[float] = None, min_compared: int = 1,
) -> int:
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
        min_compared: fewest output values (spike times inside the window, or entries of rows
            ``shift:``) that must be compared.

    Returns:
        The number of output values compared.

    Raises:
        AssertionError: if the shifted outputs differ, or too little was compared.
    """
    if is_event(inputs):
        shift = float(shift)
        if shift < 0:
            raise ValueError(f"shift must be >= 0, got {shift}")
        shifted_inputs = spikes_lib.shift(inputs, shift)
        original = outputs(layer, params, inputs)
        shifted = outputs(layer, params, shifted_inputs)
        o_time, _ = valid_events(original)
        o_idx = np.asarray(original.idx)
        moved = Spikes(np.where(o_idx >= 0, np.asarray(original.time, np.float64) + shift, np.inf), o_idx)
        rtol = default_rtol(dtype_of(original)) if rtol is None else rtol  # moved is float64
        if t_max is not None:
            tol = tolerance([np.asarray(o_time, np.float64) + shift], dtype_of(original), rtol, atol)
            limit = float(t_max) - 10 * tol - 1e-12 * abs(float(t_max))
            moved = filter_events(moved, lambda t: t < limit)
            shifted = filter_events(shifted, lambda t: t < limit)
        compared = assert_events_close(
            shifted, moved,
            f"time shift: delaying the inputs by {shift!r} did not delay the outputs by {shift!r} "
            f"(inputs {describe_events(inputs)}){overflow_note(original)}",
            rtol=rtol, atol=atol, min_compared=0, got_label="shifted run", want_label="original run + shift",
        )
        return require_compared(compared, min_compared, "time shift: output spike times inside the window",
                                _SPIKE_HINT)
    x = np.asarray(inputs)
    k = int(shift)
    if not 0 <= k <= x.shape[0]:
        raise ValueError(f"shift must be in [0, {x.shape[0]}] steps, got {k}")
    delayed = np.concatenate([np.zeros((k,) + x.shape[1:], x.dtype), x[: x.shape[0] - k]], axis=0)
    original = np.asarray(outputs(layer, params, jnp.asarray(x)))
    shifted = np.asarray(outputs(layer, params, jnp.asarray(delayed)))
    compared = assert_arrays_close(
        shifted[k:], original[: x.shape[0] - k],
        f"time shift: delaying the inputs by {k} step(s) did not delay the outputs by {k} step(s)",
        rtol=rtol, atol=atol, min_compared=0,
    )
    return require_compared(compared, min_compared, f"time shift: output entries of steps [{k}, {x.shape[0]})",
                            f"Shift by fewer than {x.shape[0]} steps.")


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
    rtol: Optional[float] = None, atol: Optional[float] = None, min_compared: int = 1,
) -> int:
    """The order in which simultaneous inputs are listed does not matter.

    Event inputs: events with equal times from different sources are permuted among themselves
    (a seeded random permutation of every group of ties; the buffer stays sorted); the outputs
    must agree. Inputs without such a tie exercise nothing: they compare 0 values. Dense inputs
    have no listing order within a step; the analogue checked is that permuting the input
    channels together with the rows of the input weights (``permute_params``, default: rows of
    ``params["weight"]``) leaves the outputs unchanged.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: one sample's inputs.
        seed: seed of the permutation.
        permute_params: dense inputs only: ``(params, permutation) -> params``.
        rtol, atol: tolerances.
        min_compared: fewest output values (spike times, or entries) that must be compared.

    Returns:
        The number of output values compared (0 for event inputs without a tie).

    Raises:
        AssertionError: if the outputs depend on the order, or too little was compared (for
            event inputs the message says whether the inputs had no tie or the layer was silent).
    """
    rng = np.random.default_rng(seed)
    if is_event(inputs):
        time, idx = valid_events(inputs)
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
            return require_compared(
                0, min_compared, "simultaneous inputs: output spike times",
                f"The inputs {describe_events(inputs)} have no two events at the same time from different "
                "sources, so there is no order to change: draw inputs with ties "
                "(strategies.spikes(..., simultaneous=True)) or build them.",
            )
        permuted = rebuild(time, new_idx, inputs)
        compared = assert_events_close(
            outputs(layer, params, permuted), outputs(layer, params, inputs),
            f"simultaneous inputs: listing the events at equal times in another order changed the "
            f"output (inputs {describe_events(inputs)} -> {describe_events(permuted)})",
            rtol=rtol, atol=atol, min_compared=0, got_label="permuted", want_label="original",
        )
        return require_compared(compared, min_compared,
                                f"simultaneous inputs: output spike times ({groups} tie group(s) permuted)",
                                _SPIKE_HINT)
    x = np.asarray(inputs)
    permutation = rng.permutation(x.shape[-1])
    permuted_params = (permute_params or _permute_weight_rows)(params, permutation)
    compared = assert_arrays_close(
        outputs(layer, permuted_params, jnp.asarray(x[..., permutation])),
        outputs(layer, params, jnp.asarray(x)),
        f"simultaneous inputs: permuting input channels {permutation.tolist()} (with the weight rows) "
        "changed the output",
        rtol=rtol, atol=atol, min_compared=0,
    )
    return require_compared(compared, min_compared, "simultaneous inputs: output entries")


def check_unsorted_inputs(
    layer: Any, params: Any, inputs: Spikes, *, seed: int = 0,
    rtol: Optional[float] = None, atol: Optional[float] = None, min_compared: int = 1,
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
        min_compared: if the layer processes the unsorted buffer, the fewest output spike times
            that must be compared (a silent layer cannot show lost inputs).

    Returns:
        True if the layer raised, False if it processed the unsorted buffer correctly.

    Raises:
        AssertionError: if the layer silently gave a different output, if ``inputs`` has fewer
            than two distinct times (nothing to scramble), or too little was compared.
        TypeError: for dense inputs (they have no order to break).
    """
    if not is_event(inputs):
        raise TypeError("check_unsorted_inputs applies to event layers (Spikes inputs)")
    time, idx = valid_events(inputs)
    if np.unique(time).size < 2:
        raise AssertionError(
            f"unsorted inputs: compared nothing: the inputs {describe_events(inputs)} have "
            f"{np.unique(time).size} distinct time(s), so they cannot be put out of order; pass a buffer "
            "with at least two distinct times (strategies.spikes(..., min_events=2, simultaneous=False))"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(time.size)
    while np.all(np.diff(time[order]) >= 0):
        order = rng.permutation(time.size)
    scrambled = rebuild(time[order], idx[order], inputs)
    expected = outputs(layer, params, inputs)
    try:
        got = outputs(layer, params, scrambled)
    except (ValueError, TypeError):
        return True
    except Exception as error:  # checkify / XLA runtime errors
        if "sort" in str(error).lower() or "order" in str(error).lower():
            return True
        raise
    compared = assert_events_close(
        got, expected,
        f"unsorted inputs: the buffer {describe_events(scrambled)} (unsorted) was neither rejected "
        "nor simulated like its sorted version",
        rtol=rtol, atol=atol, min_compared=0, got_label="unsorted", want_label="sorted",
    )
    require_compared(compared, min_compared, "unsorted inputs (processed, not rejected): output spike times",
                     _SPIKE_HINT)
    return False


def check_no_input_no_spike(
    layer: Any, params: Any, inputs_like: Any, *, rest_value: Any = None, min_compared: int = 1,
) -> int:
    """Without input a layer at rest stays silent.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs_like: an input of the right shape/capacity/dtype (its values are ignored: an
            empty ``Spikes`` buffer or an all-zero array of the same shape is used).
        rest_value: for non-spiking readouts with dense outputs (e.g. ``LI``), the value every
            output must equal (``v_leak``); default: outputs must all be 0.
        min_compared: fewest output values (buffer slots, or entries) that must be checked.

    Returns:
        The number of output values checked (slots of the output buffer, or dense entries).

    Raises:
        AssertionError: if the layer produced spikes (or a non-rest readout), or too little was
            checked.
    """
    if is_event(inputs_like):
        silent = spikes_lib.empty(inputs_like.capacity, dtype=np.asarray(inputs_like.time).dtype)
        out = outputs(layer, params, silent)
        if is_event(out):
            count = int(np.sum(np.asarray(out.idx) >= 0))
            if count:
                raise AssertionError(f"no input -> no spike: the layer fired {count} spike(s) {describe_events(out)}")
            return require_compared(int(np.size(out.idx)), min_compared, "no input -> no spike: output slots")
    else:
        silent = jnp.zeros_like(jnp.asarray(inputs_like))
        out = outputs(layer, params, silent)
    target = 0.0 if rest_value is None else rest_value
    values = np.asarray(out, dtype=np.float64)
    bad = ~np.isclose(values, target, rtol=0, atol=1e-6 * max(1.0, abs(float(np.max(np.abs(target))))))
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"no input -> no spike: {int(bad.sum())} output entries are not {target!r} without input; "
            f"first at index {where}: {values[where]!r}"
        )
    return require_compared(int(values.size), min_compared, "no input -> no spike: output entries")


def _default_weight_selector(path: Tuple[Any, ...], leaf: Any) -> bool:
    text = jax.tree_util.keystr(path).lower()
    array = np.asarray(leaf)
    return array.ndim == 2 and np.issubdtype(array.dtype, np.floating) and "recurrent" not in text


def _first_spikes(outputs_: Any, n_neurons: int) -> np.ndarray:
    if is_event(outputs_):
        time, idx = valid_events(outputs_)
        first = np.full(n_neurons, np.inf)
        for t, i in zip(np.asarray(time, np.float64), idx):
            if i < n_neurons:
                first[i] = min(first[i], t)
        return first
    x = np.asarray(outputs_).reshape(np.shape(outputs_)[0], -1)
    fired = x > 0
    first = np.where(fired.any(axis=0), np.argmax(fired, axis=0), np.inf)
    return first.astype(np.float64)


def check_first_spike_monotone(
    layer: Any, params: Any, inputs: Any, *, factor: float = 1.5,
    select: Optional[Callable[[Tuple[Any, ...], Any], bool]] = None,
    n_neurons: Optional[int] = None, rtol: Optional[float] = None, atol: Optional[float] = None,
    min_compared: int = 1,
) -> int:
    """Scaling up positive input weights never delays any neuron's first spike.

    Before its first spike a neuron's potential is a non-negative combination of its input
    weights (the PSP kernel is >= 0), so making positive weights larger can only make it cross
    earlier. Holds for one feed-forward layer; recurrent weights are excluded by default.
    Compared are the neurons that spike with the original weights. If the buffer of the
    stronger run is full, a first spike later than its last event may have been cut off by the
    capacity: such neurons are not comparable and not counted.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: one sample's inputs.
        factor: scale applied to positive weights, > 1.
        select: ``(path, leaf) -> bool`` choosing the weight leaves (default: 2-D float leaves
            whose path does not mention "recurrent").
        n_neurons: layer size (default: inferred from the outputs).
        rtol, atol: tolerances on event times (dense outputs compare step indices exactly).
        min_compared: fewest neurons whose first spikes must be compared.

    Returns:
        The number of neurons whose first spikes were compared.

    Raises:
        AssertionError: if some neuron's first spike came later (or vanished), or too few
            neurons were compared.
    """
    if not factor > 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    chooser = select or _default_weight_selector

    def scale(path, leaf):
        if chooser(path, leaf):
            return jnp.where(leaf > 0, leaf * factor, leaf)
        return leaf

    stronger = jax.tree_util.tree_map_with_path(scale, params)
    before = outputs(layer, params, inputs)
    after = outputs(layer, stronger, inputs)
    if n_neurons is None:
        if is_event(before):
            n_neurons = 1 + int(max(np.max(np.asarray(before.idx), initial=-1),
                                    np.max(np.asarray(after.idx), initial=-1)))
        else:
            n_neurons = int(np.prod(np.shape(before)[1:]))
    t_before, t_after = _first_spikes(before, n_neurons), _first_spikes(after, n_neurons)
    comparable = np.isfinite(t_before)
    if is_full(after):
        # Events after the last one kept in a full buffer are unknown.
        horizon = float(np.max(np.asarray(valid_events(after)[0], np.float64)))
        comparable &= np.isfinite(t_after) | (t_before < horizon)
    tol = tolerance([t_before, t_after], dtype_of(before), rtol, atol) if is_event(before) else 0.0
    later = comparable & ~(t_after <= t_before + tol)
    if np.any(later):
        n = int(np.argmax(later))
        raise AssertionError(
            f"first-spike monotonicity: scaling positive weights by {factor} delayed neuron {n}'s first "
            f"spike from {t_before[n]!r} to {t_after[n]!r}"
            + (f" (inputs {describe_events(inputs)}){overflow_note(after)}" if is_event(inputs) else "")
        )
    return require_compared(int(np.sum(comparable)), min_compared,
                            "first-spike monotonicity: neurons that spike with the original weights", _SPIKE_HINT)
