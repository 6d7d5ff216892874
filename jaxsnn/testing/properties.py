"""Checks of the properties every correct spiking layer has, for any ``(init, apply)`` layer.

This module gathers the checks in one namespace; each lives in the module of its concept:

* ``jaxsnn.testing.compare``: tolerances and output comparison (``default_rtol``,
  ``assert_events_close``, ``assert_arrays_close``, ``assert_trees_close``,
  ``require_compared``);
* ``jaxsnn.testing.physics``: causality, time shift, order of simultaneous inputs, unsorted
  inputs, silence without input, first-spike monotonicity;
* ``jaxsnn.testing.transforms``: jit vs eager, vmap vs loop, chunked vs whole;
* ``jaxsnn.testing.gradients``: gradients vs float64 central differences, finite gradients
  without spikes;
* ``jaxsnn.testing.adapters``: comparison with the float64 reference simulators.

Each ``check_*`` function runs a layer on concrete ``params`` and ``inputs`` and raises
``AssertionError`` with a readable explanation when the property does not hold. Use them
inside hypothesis tests so a failure comes with a shrunk counterexample::

    @given(spikes=strategies.spikes(3, 8, t_max=0.05), split=st.floats(0, 0.05))
    def test_causal(spikes, split):
        properties.check_causality(layer, params, spikes, split, min_compared=0)

Every check returns how much it compared (output spike times or array entries; neurons for
``check_first_spike_monotone``; a ``GradientReport`` for ``check_gradients``; whether the
layer rejected the input for ``check_unsorted_inputs``) and takes ``min_compared`` (default 1):
a check that compared nothing fails, because it could not have failed otherwise. Where single
examples may legitimately compare nothing (a silent layer), pass ``min_compared=0`` and require
a total over all examples with ``require_compared``.

Two kinds of layers are understood, told apart by the inputs:

* **event layers** take ``jaxsnn.Spikes`` and return ``Spikes`` (outputs are compared neuron
  by neuron: same number of spikes, times within tolerance; the order of simultaneous output
  events is irrelevant);
* **discrete layers** take dense ``(T, n)`` arrays and return dense ``(T, ...)`` arrays.

Tolerances: equalities that hold exactly in real arithmetic are compared with
``|a - b| <= atol + rtol * scale``; by default ``rtol`` is ``1e-4`` for float32 and ``1e-6``
for float64 outputs (see ``default_rtol``) and ``scale`` is the largest finite magnitude among
the compared values. Every check accepts ``rtol``/``atol`` to override.

``layer`` may be a ``Layer``, any ``(init, apply)`` pair, or a bare ``apply`` function.
"""

from __future__ import annotations

from jaxsnn.testing.adapters import check_matches_reference, discrete_reference, event_reference
from jaxsnn.testing.compare import (
    assert_arrays_close,
    assert_events_close,
    assert_outputs_close,
    assert_trees_close,
    default_rtol,
    require_compared,
)
from jaxsnn.testing.gradients import GradientReport, check_finite_gradients_without_spikes, check_gradients
from jaxsnn.testing.physics import (
    check_causality,
    check_first_spike_monotone,
    check_no_input_no_spike,
    check_simultaneous_order,
    check_time_shift,
    check_unsorted_inputs,
)
from jaxsnn.testing.transforms import check_chunked_equals_whole, check_jit_equals_eager, check_vmap_equals_loop

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
    "require_compared",
    "assert_events_close",
    "assert_arrays_close",
    "assert_outputs_close",
    "assert_trees_close",
]
