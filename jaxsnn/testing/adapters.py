"""Comparing a layer with the float64 reference simulators of ``jaxsnn.testing.reference``.

``event_reference`` and ``discrete_reference`` adapt the simulators to the signature
``(params, inputs) -> expected outputs``; ``check_matches_reference`` compares a layer with such
a function (or any other of that signature) and returns how many output values it compared.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from jaxsnn.spikes import Spikes
from jaxsnn.testing._layers import is_event, is_full, outputs, overflow_note, valid_events
from jaxsnn.testing.compare import assert_outputs_close, describe_events, require_compared

__all__ = ["event_reference", "discrete_reference", "check_matches_reference"]


def _get(params: Any, key: Any) -> Any:
    return key(params) if callable(key) else params[key]


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

    def reference_fn(params, inputs):
        recurrent = None if recurrent_key is None else np.asarray(_get(params, recurrent_key), np.float64)
        times, idx = simulate_event(
            np.asarray(_get(params, weight_key), np.float64), np.asarray(inputs.time, np.float64),
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

    def reference_fn(params, inputs):
        recurrent = None if recurrent_key is None else np.asarray(_get(params, recurrent_key), np.float64)
        record = simulate_discrete(np.asarray(_get(params, weight_key), np.float64), np.asarray(inputs, np.float64),
                                   recurrent_weight=recurrent, readout=readout, **neuron)
        return record[output]

    return reference_fn


def check_matches_reference(
    layer: Any, params: Any, inputs: Any, reference_fn: Callable[[Any, Any], Any], *,
    rtol: Optional[float] = None, atol: Optional[float] = None, min_compared: int = 1,
) -> int:
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
        min_compared: fewest output values (spike times, or entries) that must be compared; a
            silent layer that matches a silent reference compared no spike time.

    Returns:
        The number of output values compared.

    Raises:
        AssertionError: describing the first disagreement, or if too little was compared.
    """
    got = outputs(layer, params, inputs)
    want = reference_fn(params, inputs)
    if is_event(want) and is_full(got):
        # A full buffer may legitimately (and flagged) hold only the earliest `capacity` spikes.
        w_time, w_idx = valid_events(want)
        order = np.lexsort((w_idx, w_time))[: got.capacity]
        want = Spikes(np.asarray(w_time, np.float64)[order], np.asarray(w_idx)[order])
    compared = assert_outputs_close(
        got, want,
        "reference: the layer disagrees with the float64 reference"
        + (f" (inputs {describe_events(inputs)}){overflow_note(got)}" if is_event(inputs) else ""),
        rtol=rtol, atol=atol, min_compared=0,
        **({"got_label": "layer", "want_label": "reference"} if is_event(got) else {}),
    )
    if is_event(got):
        return require_compared(
            compared, min_compared, "reference: output spike times compared with the float64 reference",
            "Layer and reference are both silent: draw inputs and weights that make the layer spike, or pass "
            "min_compared=0 and require a total over all examples.",
        )
    return require_compared(compared, min_compared, "reference: output entries compared with the float64 reference")
