"""The ``Backend`` protocol and the bridge that calls a backend from (jitted) JAX code.

A backend is anything that runs a network's forward pass on a batch of input spikes and
returns the spikes it measured for each layer: a driver for a neuromorphic chip (Python, or
C++ behind Python bindings), the ``Emulator`` in this package, or a test double. It works
on host (NumPy) data and is never traced by JAX.

Two ways to call it:

* ``measure_host(backend, params, input_spikes, trial)``: eager, on concrete values. Errors
  surface as ``MeasurementError`` directly. Use it in a training loop that measures first
  and then runs a jitted gradient step on the measurement (``jaxsnn.hardware.loop``).
* ``measure(backend, params, input_spikes, trial)``: the same through ``jax.pure_callback``,
  usable inside ``jax.jit``. The result carries no gradient (a measurement is data). An error
  raised on the host while jitted code runs reaches the caller as a
  ``jax.errors.JaxRuntimeError`` whose message contains the ``MeasurementError`` text.

Both sanitise every layer's measurement with ``jaxsnn.hardware.sanitize`` and bound the
backend's run time with ``timeout_s``.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn.hardware.sanitize import PROBLEMS, MeasurementError, SanitizePolicy, SanitizeReport, sanitize_layer
from jaxsnn.spikes import Spikes


@runtime_checkable
class Backend(Protocol):
    """What the in-the-loop machinery needs from a chip (or an emulator of one).

    Attributes:
        layer_sizes: number of neurons of each measured layer, in network order.
        capacities: number of spike slots per sample for each measured layer; the measured
            buffers handed to training have exactly this size.
    """

    layer_sizes: Sequence[int]
    capacities: Sequence[int]

    def run(self, params: Sequence[Any], input_spikes: Spikes, trial: int) -> Sequence[Spikes]:
        """Run the network's forward pass on the hardware for a batch.

        Args:
            params: the network's flat parameter list (NumPy arrays), as ``serial`` uses it;
                the backend maps it onto the hardware (quantising weights, etc.).
            input_spikes: ``Spikes`` with a leading batch axis, in model time units.
            trial: a run counter; a physical chip may ignore it, an emulator derives its
                trial-to-trial noise from it so that runs are reproducible.

        Returns:
            One ``Spikes`` per measured layer, each with a leading batch axis, times in model
            units, local neuron indices, padding idx -1. The buffers may hold any number of
            slots and may be malformed: the caller sanitises them.
        """
        ...


def backend_name(backend: Any) -> str:
    """A readable name for error messages (the ``name`` attribute or the class name)."""
    return str(getattr(backend, "name", type(backend).__name__))


def check_backend(backend: Any) -> Backend:
    """Check that ``backend`` implements the ``Backend`` protocol.

    Args:
        backend: the object to check.

    Returns:
        ``backend`` unchanged.

    Raises:
        TypeError: if ``run``, ``layer_sizes`` or ``capacities`` is missing, or the sizes are
            not positive integers of equal length.
    """
    if not isinstance(backend, Backend) or not callable(getattr(backend, "run", None)):
        raise TypeError(
            f"{type(backend).__name__} is not a jaxsnn.hardware.Backend: it needs a "
            "run(params, input_spikes, trial) method and layer_sizes/capacities attributes"
        )
    sizes, capacities = list(backend.layer_sizes), list(backend.capacities)
    if len(sizes) != len(capacities) or not sizes:
        raise TypeError(
            f"{backend_name(backend)}: layer_sizes ({len(sizes)}) and capacities ({len(capacities)}) "
            "must be non-empty and of equal length"
        )
    for kind, values in (("layer_sizes", sizes), ("capacities", capacities)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in values):
            raise TypeError(f"{backend_name(backend)}: {kind} must be positive ints, got {values}")
    return backend


def call_with_timeout(function: Callable[[], Any], timeout_s: Optional[float], what: str) -> Any:
    """Call ``function()`` and give up after ``timeout_s`` seconds.

    The call runs in a daemon thread; a hung driver thread is abandoned, not killed (Python
    cannot kill threads), so a driver should also enforce its own timeout.

    Args:
        function: the zero-argument call.
        timeout_s: seconds to wait, or ``None`` to wait forever.
        what: description used in error messages.

    Returns:
        ``function()``'s result.

    Raises:
        MeasurementError: if the call raises (chained to the original exception) or does not
            return within ``timeout_s``.
    """
    if timeout_s is None:
        try:
            return function()
        except MeasurementError:
            raise
        except Exception as error:
            raise MeasurementError(f"{what} failed: {type(error).__name__}: {error}") from error
    if not (timeout_s > 0):
        raise ValueError(f"timeout_s must be > 0 or None, got {timeout_s!r}")
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # handed to the waiting thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise MeasurementError(f"{what} timed out: no answer within {timeout_s:g} s")
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, MeasurementError):
            raise error
        raise MeasurementError(f"{what} failed: {type(error).__name__}: {error}") from error
    return outcome["value"]


def _host_spikes(spikes: Spikes) -> Spikes:
    return Spikes(np.asarray(spikes.time), np.asarray(spikes.idx))


def measure_host(
    backend: Backend,
    params: Sequence[Any],
    input_spikes: Spikes,
    trial: int = 0,
    *,
    policy: SanitizePolicy = SanitizePolicy(),
    timeout_s: Optional[float] = None,
    layer_names: Optional[Sequence[str]] = None,
    dtype: Any = None,
) -> Tuple[List[Spikes], SanitizeReport]:
    """Run ``backend`` eagerly on a batch and return sanitised measurements.

    Args:
        backend: a ``Backend``.
        params: the network's flat parameter list (any arrays; converted to NumPy).
        input_spikes: batched input ``Spikes`` ``(batch, capacity)``.
        trial: run counter handed to the backend.
        policy: how measurements are checked (see ``jaxsnn.hardware.sanitize``).
        timeout_s: the longest the backend may take, or ``None``.
        layer_names: names of the measured layers for messages (default ``"layer k"``).
        dtype: float dtype of the returned times (default: the input times' dtype).

    Returns:
        ``(measured, report)``: one NumPy-backed ``Spikes`` ``(batch, capacities[l])`` per
        measured layer, and the counts of repaired events.

    Raises:
        TypeError: if ``backend`` does not implement the protocol.
        MeasurementError: if the backend raises, times out, returns the wrong number of
            layers or batch size, or a measurement is bad (see ``sanitize_layer``). The
            message names the backend and the layer.
    """
    check_backend(backend)
    name = backend_name(backend)
    sizes, capacities = list(backend.layer_sizes), list(backend.capacities)
    names = list(layer_names) if layer_names is not None else [f"layer {k}" for k in range(len(sizes))]
    if len(names) != len(sizes):
        raise ValueError(f"layer_names has {len(names)} entries, the backend measures {len(sizes)} layers")
    host_params = jax.tree_util.tree_map(np.asarray, list(params))
    host_inputs = _host_spikes(input_spikes)
    if host_inputs.time.ndim != 2:
        raise ValueError(
            f"input_spikes must be batched, shape (batch, capacity), got {host_inputs.time.shape}"
        )
    batch = host_inputs.time.shape[0]
    dtype = np.dtype(dtype) if dtype is not None else host_inputs.time.dtype
    measured = call_with_timeout(
        lambda: backend.run(host_params, host_inputs, int(trial)),
        timeout_s,
        f"backend {name} (trial {int(trial)})",
    )
    if not isinstance(measured, (list, tuple)) or len(measured) != len(sizes):
        got = len(measured) if isinstance(measured, (list, tuple)) else type(measured).__name__
        raise MeasurementError(
            f"backend {name} returned {got} layer measurements, expected {len(sizes)} (one per measured layer)"
        )
    out: List[Spikes] = []
    counts = np.zeros((len(sizes), len(PROBLEMS)), dtype=np.int64)
    n_events = np.zeros(len(sizes), dtype=np.int64)
    for layer, (spikes, size, capacity) in enumerate(zip(measured, sizes, capacities)):
        label = f"backend {name}, {names[layer]}"
        if not isinstance(spikes, Spikes):
            raise MeasurementError(f"{label}: expected a jaxsnn.Spikes, got {type(spikes).__name__}")
        spikes = _host_spikes(spikes)
        if spikes.time.ndim != 2 or spikes.time.shape[0] != batch:
            raise MeasurementError(
                f"{label}: measured buffer has shape {spikes.time.shape}, expected ({batch}, n_events)"
            )
        time, idx, layer_counts, layer_events = sanitize_layer(
            spikes.time, spikes.idx, n_neurons=size, capacity=capacity, policy=policy, layer=label
        )
        out.append(Spikes(time.astype(dtype), idx))
        counts[layer] = layer_counts
        n_events[layer] = layer_events
    return out, SanitizeReport(counts, n_events)


def measure(
    backend: Backend,
    params: Sequence[Any],
    input_spikes: Spikes,
    trial: Any = 0,
    *,
    policy: SanitizePolicy = SanitizePolicy(),
    timeout_s: Optional[float] = None,
    layer_names: Optional[Sequence[str]] = None,
) -> Tuple[List[Spikes], SanitizeReport]:
    """``measure_host`` through ``jax.pure_callback``: callable inside ``jax.jit``.

    The measurement is returned under ``jax.lax.stop_gradient``: gradients flow through the
    software model evaluated at the measured times (see ``jaxsnn.hardware.loop``), never
    through the hardware.

    Args:
        backend: a ``Backend`` (a static Python object, closed over, not traced).
        params: the flat parameter list (may be traced).
        input_spikes: batched input ``Spikes`` (may be traced).
        trial: run counter (may be traced; an int32 scalar).
        policy: see ``measure_host``.
        timeout_s: see ``measure_host``.
        layer_names: see ``measure_host``.

    Returns:
        ``(measured, report)`` as in ``measure_host``, as JAX arrays; ``report`` fields are
        int32 arrays.

    Raises:
        TypeError: if ``backend`` does not implement the protocol (at trace time).
        MeasurementError: when called eagerly with a bad measurement; under ``jax.jit`` the
            same message arrives wrapped in ``jax.errors.JaxRuntimeError``.
    """
    check_backend(backend)
    sizes, capacities = list(backend.layer_sizes), list(backend.capacities)
    batch = jnp.shape(input_spikes.time)[0]
    dtype = jnp.result_type(input_spikes.time)
    result_shape = (
        [
            Spikes(
                jax.ShapeDtypeStruct((batch, capacity), dtype),
                jax.ShapeDtypeStruct((batch, capacity), jnp.int32),
            )
            for capacity in capacities
        ],
        SanitizeReport(
            jax.ShapeDtypeStruct((len(sizes), len(PROBLEMS)), jnp.int32),
            jax.ShapeDtypeStruct((len(sizes),), jnp.int32),
        ),
    )

    def host(host_params: Any, host_inputs: Spikes, host_trial: Any) -> Any:
        measured, report = measure_host(
            backend,
            host_params,
            host_inputs,
            int(np.asarray(host_trial)),
            policy=policy,
            timeout_s=timeout_s,
            layer_names=layer_names,
            dtype=dtype,
        )
        return measured, SanitizeReport(
            np.asarray(report.counts, np.int32), np.asarray(report.n_events, np.int32)
        )

    measured, report = jax.pure_callback(
        host,
        result_shape,
        jax.lax.stop_gradient(list(params)),
        jax.lax.stop_gradient(input_spikes),
        jnp.asarray(trial, jnp.int32),
        vmap_method="sequential",
    )
    return jax.lax.stop_gradient(measured), report
