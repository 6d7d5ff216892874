"""In-the-loop training: the backend runs the forward pass, software differentiates at its spikes.

For a network of event layers (``jaxsnn.event.LIF``) the measured spikes of every layer enter
``serial``'s ``apply`` through ``external``. An event layer given external spikes outputs
exactly those spikes (the forward value is the measurement) and its EventProp backward pass
replays the synaptic currents at the measured times, so the gradient is EventProp evaluated
at the measured spike times. The hardware is never differentiated.

* ``inject(network, params, inputs, measured)``: pure and jittable; the software half.
* ``in_the_loop(network, backend)``: the one-call helper; returns an ``apply`` that measures
  through ``jax.pure_callback`` (``jaxsnn.hardware.measure``) and injects, usable inside
  ``jax.jit`` and ``jax.grad``.
* ``guarded_step(step, params, opt_state, ...)``: runs one training step and, if the
  measurement fails or the update is not finite, returns the parameters it was given (the
  step is skipped, never half-applied) together with the reason.
"""

from __future__ import annotations

from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import jax
import numpy as np

from jaxsnn.compose import leaf_count
from jaxsnn.hardware.backend import Backend, backend_name, check_backend, measure
from jaxsnn.hardware.sanitize import MeasurementError, SanitizePolicy, SanitizeReport
from jaxsnn.spikes import Spikes
from jaxsnn.types import Layer


def _external_list(n_leaves: int, measured_layers: Sequence[int], measured: Sequence[Spikes]) -> List[Any]:
    if len(measured) != len(measured_layers):
        raise ValueError(
            f"{len(measured)} measured layers given but measured_layers lists {len(measured_layers)}"
        )
    external: List[Any] = [None] * n_leaves
    for position, spikes in zip(measured_layers, measured):
        external[position] = spikes
    return external


def _resolve_layers(network: Layer, n_measured: int, measured_layers: Optional[Sequence[int]]) -> List[int]:
    n_leaves = leaf_count(network)
    layers = list(range(n_measured)) if measured_layers is None else [int(k) for k in measured_layers]
    if len(layers) != n_measured:
        raise ValueError(
            f"the backend measures {n_measured} layers but measured_layers lists {len(layers)}"
        )
    if any(not 0 <= k < n_leaves for k in layers) or len(set(layers)) != len(layers):
        raise ValueError(
            f"measured_layers must be distinct leaf positions in [0, {n_leaves}), got {layers}"
        )
    return layers


def inject(
    network: Layer,
    params: Sequence[Any],
    inputs: Spikes,
    measured: Sequence[Spikes],
    measured_layers: Optional[Sequence[int]] = None,
) -> Tuple[Any, List[Any]]:
    """Run the software network on a batch with measured spikes injected (pure, jittable).

    Args:
        network: a ``serial`` of event layers.
        params: its flat params list.
        inputs: batched input ``Spikes`` ``(batch, capacity)``.
        measured: batched measured ``Spikes``, one per measured layer.
        measured_layers: leaf positions of the measured layers (default ``0..len(measured)-1``).

    Returns:
        ``(outputs, recording)`` batched: outputs equal the last measured layer's spikes when
        it is the network's last layer; gradients w.r.t. ``params`` are EventProp at the
        measured times.

    Raises:
        ValueError: if the measured layers do not fit the network.
    """
    layers = _resolve_layers(network, len(measured), measured_layers)
    external = _external_list(leaf_count(network), layers, list(measured))

    def one(sample_inputs: Spikes, sample_external: List[Any]) -> Tuple[Any, Any]:
        _, outputs, recording = network.apply(params, sample_inputs, external=sample_external)
        return outputs, recording

    return jax.vmap(one)(inputs, external)


def in_the_loop(
    network: Layer,
    backend: Backend,
    *,
    measured_layers: Optional[Sequence[int]] = None,
    policy: SanitizePolicy = SanitizePolicy(),
    timeout_s: Optional[float] = None,
    layer_names: Optional[Sequence[str]] = None,
) -> Callable[[Sequence[Any], Spikes, Any], Tuple[Any, List[Any], SanitizeReport]]:
    """Build the in-the-loop ``apply`` of ``network`` running on ``backend``.

    Args:
        network: a ``serial`` of event layers whose measured layers the backend runs.
        backend: the ``Backend`` (chip driver or ``Emulator``).
        measured_layers: leaf positions the backend measures, in the backend's order
            (default: the first ``len(backend.layer_sizes)`` leaves).
        policy: how measurements are sanitised.
        timeout_s: longest time a backend run may take.
        layer_names: names of the measured layers in error messages (default
            ``"layer k (<leaf position>)"``).

    Returns:
        ``apply(params, inputs, trial) -> (outputs, recording, report)`` for a batch
        (``inputs`` with a leading batch axis): ``outputs``/``recording`` as from
        ``inject``, ``report`` the ``SanitizeReport`` of the measurement. Jittable and
        differentiable w.r.t. ``params``.

    Raises:
        TypeError: if ``backend`` is not a ``Backend``.
        ValueError: if the measured layers do not fit the network.
    """
    check_backend(backend)
    layers = _resolve_layers(network, len(backend.layer_sizes), measured_layers)
    names = (
        list(layer_names)
        if layer_names is not None
        else [f"layer {k} (leaf {position})" for k, position in enumerate(layers)]
    )

    def apply(params: Sequence[Any], inputs: Spikes, trial: Any = 0) -> Tuple[Any, List[Any], SanitizeReport]:
        measured, report = measure(
            backend, params, inputs, trial, policy=policy, timeout_s=timeout_s, layer_names=names
        )
        outputs, recording = inject(network, params, inputs, measured, layers)
        return outputs, recording, report

    apply.backend_name = backend_name(backend)  # type: ignore[attr-defined]
    return apply


class StepOutcome(NamedTuple):
    """What happened in ``guarded_step``.

    Attributes:
        applied: whether the update was applied.
        reason: why not (``None`` when applied).
        aux: whatever the step returned besides params and optimiser state (``None`` if skipped).
    """

    applied: bool
    reason: Optional[str]
    aux: Any


def _all_finite(tree: Any) -> bool:
    for leaf in jax.tree_util.tree_leaves(tree):
        array = np.asarray(leaf)
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            return False
    return True


def guarded_step(
    step: Callable[..., Tuple[Any, Any, Any]],
    params: Any,
    opt_state: Any,
    *args: Any,
    **kwargs: Any,
) -> Tuple[Any, Any, StepOutcome]:
    """Run ``step(params, opt_state, *args, **kwargs) -> (params, opt_state, aux)`` safely.

    The step is skipped, and the given ``params``/``opt_state`` returned unchanged, when the
    hardware measurement fails (``MeasurementError``, or a ``jax.errors.JaxRuntimeError``
    raised from inside a jitted measurement) or when the new parameters or optimiser state
    are not finite. Other exceptions (programming errors) propagate.

    Args:
        step: one training step; must not mutate its arguments (JAX arrays cannot be).
        params: current parameters.
        opt_state: current optimiser state.
        *args: forwarded to ``step``.
        **kwargs: forwarded to ``step``.

    Returns:
        ``(params, opt_state, outcome)``: the new ones if applied, else the given ones.
    """
    try:
        new_params, new_state, aux = step(params, opt_state, *args, **kwargs)
        jax.block_until_ready((new_params, new_state))
    except MeasurementError as error:
        return params, opt_state, StepOutcome(False, f"measurement failed: {error}", None)
    except jax.errors.JaxRuntimeError as error:
        text = str(error)
        if "MeasurementError" not in text and "jax.pure_callback failed" not in text:
            raise
        tail = text.strip().splitlines()[-1] if text.strip() else text
        return params, opt_state, StepOutcome(False, f"measurement failed: {tail}", None)
    if not (_all_finite(new_params) and _all_finite(new_state)):
        return params, opt_state, StepOutcome(False, "non-finite update (NaN/inf in params or optimiser state)", None)
    return new_params, new_state, StepOutcome(True, None, aux)
