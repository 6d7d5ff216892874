"""Static choices of an event layer's simulation, resolved once while the constants are concrete.

Three choices depend only on the neuron parameters, the window and the wiring, never on data:

* ``kernel``: the next-spike solver. ``"auto"`` becomes ``"lambertw"`` (``tau_mem == tau_syn``),
  ``"quadratic"`` (``tau_mem == 2 tau_syn``) or ``"root"`` (any ratio); see
  ``jaxsnn.event.kernels.resolve_kernel``.
* ``algorithm``: ``"scan"`` (event by event, any layer), ``"parallel"`` (every inter-input
  interval at once; exact when no neuron can spike twice, ``t_ref >= t_max``, and the layer is
  feed-forward) or ``"multispike"`` (every neuron searches windows of intervals from its last
  release; any feed-forward layer); see ``resolve_algorithm``. For a feed-forward layer whose
  neurons may spike several times ``"auto"`` resolves to ``"feedforward"``: the choice between
  ``"multispike"`` and ``"scan"`` is then made per call, from the static shapes, by
  ``choose_feedforward`` (the rule is stated there).
* ``spike_bound``: the most spikes one neuron can emit in the window, ``floor(t_max / t_ref) + 1``
  when ``t_ref > 0`` and both are concrete (consecutive spikes of a neuron are more than
  ``t_ref`` apart: after the refractory period the membrane restarts at ``v_reset < v_th``),
  else 0 (unknown); see ``spike_bound``.
* ``refractory``: whether the EventProp backward pass models the instant a membrane is released
  from ``v_reset``. False only when ``t_ref`` is concretely 0 everywhere: then the release is the
  reset itself and the shorter event list gives the same gradient.
* ``backward``: the EventProp backward pass. ``"scan"`` (reverse scan over the events, any
  layer) or a closed form without a scan over events for feed-forward layers: ``"parallel"``
  (one spike per neuron, the conditions of the parallel forward) or ``"multispike"`` (any
  number of spikes per neuron). ``"auto"`` gives ``"parallel"`` where one spike per neuron is
  certain, the scan for recurrent layers, and otherwise ``"feedforward"``: the choice between
  ``"multispike"`` and ``"scan"`` is then made per call from the static shapes by
  ``choose_backward``; see ``resolve_backward``.

Under ``jax.jit``, ``jax.grad`` or inside a ``custom_vjp`` the parameters are traced and these
conditions cannot be seen ("auto" would fall back to the slower root solver). So the layer
factories (``jaxsnn.event.LIF`` ...) and the emulator resolve one ``Plan`` at construction, the
public functions (``simulate``, ``simulate_eventprop``) on entry, and the plan is passed down as
one hashable, static value.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jaxsnn._validate import is_concrete
from jaxsnn.event.kernels import resolve_kernel
from jaxsnn.event.neuron import LIFParameters

__all__ = [
    "ALGORITHMS",
    "BACKWARDS",
    "MULTISPIKE_COST_FACTOR",
    "MULTISPIKE_MIN_WORK",
    "Plan",
    "choose_backward",
    "choose_feedforward",
    "expected_spikes",
    "multispike_block",
    "multispike_rounds",
    "resolve_algorithm",
    "resolve_backward",
    "resolve_plan",
    "resolve_refractory",
    "spike_bound",
]

#: Valid values of the ``algorithm`` option.
ALGORITHMS = ("auto", "scan", "parallel", "multispike")

#: How many interval evaluations of the multi-spike search (per neuron, vectorised over a window
#: of intervals) cost as much as one sequential step of the scan, per next-spike kernel, in
#: ``choose_feedforward``'s rule. Each scan step solves every neuron's next crossing and pays a
#: fixed sequential overhead; the search evaluates a crossing test per (interval, neuron): for
#: ``"quadratic"`` a few multiplications (``jaxsnn.event.multispike``), for the others the
#: kernel's own test, about twice as costly.
MULTISPIKE_COST_FACTOR = {"quadratic": 2, "lambertw": 1, "root": 1}

#: Smallest ``neurons x input slots`` for which ``choose_feedforward`` considers the multi-spike
#: algorithm. Below it both algorithms run in a few milliseconds at most, and the scan compiles
#: in about half the time (measured: the emulator's test file, small layers, 24 s vs 44 s).
#: The benchmark layers are above it: hidden (100 input slots x 125-500 neurons) and output
#: (522 slots x 10 neurons: 7.9 ms against 10.7 ms for the scan, batch 32).
MULTISPIKE_MIN_WORK = 4096

#: Valid values of the ``backward`` option (EventProp backward pass). ``"parallel"`` asks for the
#: closed form; ``resolve_backward`` resolves it to ``"parallel"`` (one spike per neuron) or
#: ``"multispike"`` (several).
BACKWARDS = ("auto", "scan", "parallel")


class Plan(NamedTuple):
    """The resolved static choices of one layer (hashable; a static argument under ``jax.jit``).

    Attributes:
        kernel: ``"lambertw"``, ``"quadratic"`` or ``"root"``.
        algorithm: ``"scan"``, ``"parallel"``, ``"multispike"`` or ``"feedforward"`` (a
            feed-forward layer that may spike several times: ``choose_feedforward`` picks
            ``"multispike"`` or ``"scan"`` per call from the shapes).
        refractory: whether EventProp models the release of the membrane after ``t_ref``.
        backward: EventProp backward pass: ``"scan"``, ``"parallel"`` (closed form, one spike per
            neuron), ``"multispike"`` (closed form, any number of spikes; feed-forward) or
            ``"feedforward"`` (``choose_backward`` picks ``"multispike"`` or ``"scan"`` per call).
        spike_bound: most spikes per neuron in the window implied by ``t_ref`` and ``t_max``
            (0: no bound known).
    """

    kernel: str
    algorithm: str
    refractory: bool
    backward: str = "scan"
    spike_bound: int = 0


def resolve_algorithm(algorithm: str, neuron: LIFParameters, t_max: Any, recurrent: bool) -> str:
    """Turn the ``algorithm`` option of ``simulate`` into the algorithm of a ``Plan``.

    ``"parallel"`` is exact only when no neuron can spike twice (every ``t_ref >= t_max``) and
    the layer has no recurrent weights; ``"auto"`` picks it exactly then. ``"multispike"`` is
    exact for every feed-forward layer. For the other feed-forward layers (several spikes per
    neuron possible, or ``t_ref``/``t_max`` traced so that it cannot be checked) ``"auto"``
    returns ``"feedforward"``: ``choose_feedforward`` then picks ``"multispike"`` or
    ``"scan"`` per call. Recurrent layers always get ``"scan"``. An explicit ``"parallel"``
    with traced ``t_ref`` or ``t_max`` is trusted: the caller guarantees it.

    Args:
        algorithm: one of ``ALGORITHMS``.
        neuron: the neuron parameters.
        t_max: end of the window.
        recurrent: whether the layer has recurrent weights.

    Returns:
        ``"scan"``, ``"parallel"``, ``"multispike"`` or ``"feedforward"``.

    Raises:
        ValueError: unknown ``algorithm``, or ``"parallel"``/``"multispike"`` requested where
            it is not exact.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if algorithm == "scan":
        return "scan"
    if algorithm == "multispike":
        if recurrent:
            raise ValueError(
                "algorithm='multispike' does not support recurrent weights; use 'scan' or 'auto'"
            )
        return "multispike"
    with jax.ensure_compile_time_eval():
        known = is_concrete((neuron.t_ref, t_max))
        single_spike = known and bool(np.all(np.asarray(neuron.t_ref) >= np.asarray(t_max)))
    if algorithm == "auto":
        if recurrent:
            return "scan"
        return "parallel" if single_spike else "feedforward"
    if recurrent:
        raise ValueError("algorithm='parallel' does not support recurrent weights; use 'scan' or 'auto'")
    if known and not single_spike:
        raise ValueError(
            "algorithm='parallel' needs every neuron to spike at most once: t_ref >= t_max "
            f"(concrete values), got t_ref={neuron.t_ref!r}, t_max={t_max!r}; use 'scan' or 'auto'"
        )
    return "parallel"


def resolve_backward(backward: str, algorithm: str, neuron: LIFParameters, t_max: Any, recurrent: bool) -> str:
    """Turn the ``backward`` option of ``simulate_eventprop`` into the backward pass of a ``Plan``.

    Feed-forward layers have a closed-form EventProp backward without a scan over events:
    ``"parallel"`` (``jaxsnn.event.eventprop.parallel_eventprop_gradients``) where every neuron
    spikes at most once (the conditions of the parallel forward), ``"multispike"``
    (``multispike_eventprop_gradients``) for any number of spikes. An explicit ``"parallel"``
    asks for the closed form that fits: ``"parallel"`` where one spike per neuron is certain
    (the forward ``algorithm`` is ``"parallel"``, or concrete ``t_ref >= t_max``), else
    ``"multispike"`` (exact for any number of spikes, traced ``t_ref`` included). ``"auto"``
    gives the scan for recurrent layers, ``"parallel"`` where one spike per neuron is certain,
    and ``"feedforward"`` otherwise: ``choose_backward`` then compares the costs of the
    multi-spike closed form and the scan from the static shapes, per call. ``"scan"`` is the
    scan (``eventprop_gradients``), for any layer.

    Args:
        backward: one of ``BACKWARDS``.
        algorithm: the resolved forward algorithm (``"scan"``, ``"parallel"``,
            ``"multispike"`` or ``"feedforward"``).
        neuron: the neuron parameters.
        t_max: end of the window.
        recurrent: whether the layer has recurrent weights.

    Returns:
        ``"scan"``, ``"parallel"`` or ``"multispike"``.

    Raises:
        ValueError: unknown ``backward``, or ``"parallel"`` for a recurrent layer.
    """
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    if backward == "scan":
        return "scan"
    if backward == "auto" and recurrent:
        return "scan"
    if recurrent:
        raise ValueError(
            "backward='parallel' (the closed form) needs a feed-forward layer: recurrent weights make "
            "the adjoints of the neurons depend on each other; use 'scan' or 'auto'"
        )
    if algorithm == "parallel":
        return "parallel"  # the forward pass already holds (or was told) one spike per neuron
    with jax.ensure_compile_time_eval():
        known = is_concrete((neuron.t_ref, t_max))
        single_spike = known and bool(np.all(np.asarray(neuron.t_ref) >= np.asarray(t_max)))
    # Traced t_ref or t_max: one spike per neuron cannot be checked, and the multi-spike form
    # is exact either way.
    if single_spike:
        return "parallel"
    return "feedforward" if backward == "auto" else "multispike"


def spike_bound(neuron: LIFParameters, t_max: Any) -> int:
    """The most spikes one neuron can emit in ``[0, t_max]``, from the refractory period alone.

    After a spike at ``t`` the membrane is held at ``v_reset < v_th`` until ``t + t_ref`` and
    then needs a positive time to reach ``v_th`` again, so consecutive spikes are more than
    ``t_ref`` apart and at most ``floor(t_max / t_ref) + 1`` fit into the window.

    Args:
        neuron: the neuron parameters.
        t_max: end of the window.

    Returns:
        That bound (for the smallest ``t_ref`` of the layer), or 0 when some ``t_ref`` is 0 or
        ``t_ref``/``t_max`` are traced (no bound known).
    """
    with jax.ensure_compile_time_eval():
        if not is_concrete((neuron.t_ref, t_max)):
            return 0
        t_ref = float(np.min(np.asarray(neuron.t_ref, np.float64)))
        if not t_ref > 0:
            return 0
        # The relative margin keeps the bound safe where t_max / t_ref is an integer up to
        # rounding (a bound one too small would only raise the overflow flag, never lose a spike
        # silently: the multi-spike algorithm checks for a further crossing after its last round).
        ratio = float(np.max(np.asarray(t_max, np.float64))) / t_ref
        return int(np.floor(ratio * (1.0 + 1e-6))) + 1


def multispike_rounds(bound: int, capacity: int) -> int:
    """Rounds of the multi-spike algorithm: ``min(capacity, bound)`` (``capacity`` if no bound).

    A neuron with more spikes than ``capacity`` overflows the buffer anyway, so ``capacity``
    rounds are always enough; the refractory bound (``spike_bound``) is often far smaller.

    Args:
        bound: ``Plan.spike_bound`` (0: none).
        capacity: output buffer size.

    Returns:
        The static number of rounds, >= 1.
    """
    return max(1, min(int(capacity), int(bound))) if bound > 0 else max(1, int(capacity))


def expected_spikes(capacity: int, size: int) -> int:
    """Spikes per neuron the buffer holds on average, ``ceil(capacity / size)``."""
    return -(-int(capacity) // max(int(size), 1))


def multispike_block(n_slots: int, capacity: int, size: int) -> int:
    """Intervals per window of the multi-spike search: ``ceil((n_slots + 1) / (expected + 1))``.

    Each neuron of the search evaluates ``block`` intervals per iteration (see
    ``jaxsnn.event.multispike``), so it takes about ``(n_slots + 1) / block`` iterations to walk
    the window plus one per spike; with ``expected = expected_spikes(capacity, size)`` spikes
    this block splits the work evenly between the two, and a neuron evaluates about
    ``n_slots + 1 + expected * block`` intervals in all, never more than twice the intervals.
    Measured (Randman 100 -> 128 LIF, float32, batch 32, 2 CPU cores, t_ref 0): blocks 12, 17, 24
    and 101 (every interval, one spike per neuron per iteration): 17.1, 16.1, 16.6 and 28.0 ms.

    Args:
        n_slots: input buffer capacity (static shape).
        capacity: output buffer capacity.
        size: number of neurons of the layer.

    Returns:
        The static block size, in ``[1, n_slots + 1]``.
    """
    intervals = int(n_slots) + 1
    return max(1, min(intervals, -(-intervals // (expected_spikes(capacity, size) + 1))))


def choose_feedforward(bound: int, n_slots: int, capacity: int, size: int, kernel: str = "root") -> str:
    """The automatic choice for a feed-forward layer whose neurons may spike several times.

    Rule: ``"multispike"`` when ``size * n_slots >= MULTISPIKE_MIN_WORK`` and
    ``n_slots + 1 + spikes * block <= MULTISPIKE_COST_FACTOR[kernel] * (n_slots + capacity)``, else
    ``"scan"``, with ``block = multispike_block(n_slots, capacity, size)`` and
    ``spikes = min(multispike_rounds(bound, capacity), expected_spikes(capacity, size))``. Per
    neuron the multi-spike search evaluates about the left-hand side in intervals (vectorised,
    ``block`` at a time); the scan takes ``n_slots + capacity`` sequential steps. Both are linear
    in neurons, exact and give the same spikes, so the rule only affects speed. Measured (2 CPU
    cores, float32, batch 32, time-coded Randman, t_ref 0, ``"quadratic"``): hidden layer
    100 -> 128 (186 against 622): multispike 11.8 ms, scan 34.1 ms; output layer 522 -> 10 (973
    against 2 x 581): multispike 8.7 ms, scan 10.7 ms. With the kernels' own test (as for
    ``"lambertw"`` and ``"root"``) the output layer took 12.6 ms against 11.1 ms for the scan.

    Args:
        bound: ``Plan.spike_bound`` (0: none).
        n_slots: input buffer capacity (static shape).
        capacity: output buffer capacity.
        size: number of neurons of the layer.
        kernel: the next-spike kernel (``Plan.kernel``).

    Returns:
        ``"multispike"`` or ``"scan"``.
    """
    if int(size) * int(n_slots) < MULTISPIKE_MIN_WORK:
        return "scan"
    spikes = min(multispike_rounds(bound, capacity), expected_spikes(capacity, size))
    evaluations = int(n_slots) + 1 + spikes * multispike_block(n_slots, capacity, size)
    cheaper = evaluations <= MULTISPIKE_COST_FACTOR.get(kernel, 1) * (int(n_slots) + int(capacity))
    return "multispike" if cheaper else "scan"


def choose_backward(n_slots: int, capacity: int, size: int, releases: bool) -> str:
    """The automatic EventProp backward pass of a feed-forward layer whose neurons may spike several times.

    Rule: the closed form (``"multispike"``) when
    ``10 * n_slots * size <= (133 + size) * steps``, else ``"scan"``, with
    ``steps = n_slots + capacity`` (``n_slots + 2 capacity`` where releases after ``t_ref`` are
    events of the scan too). The closed form evaluates the adjoint at every (input event,
    neuron) pair, about 45 ns each on a 2-core CPU; a step of the scan cost about
    ``600 + 4.5 size`` ns (Randman layers 100 -> 128 and 522 -> 10, 20 -> 128 with 2000 input
    events, float32, batch 16-32; ``benchmarks/profile_multispike_layers.py``). So layers with
    many input events and few spikes take the scan. Both are exact and give the same
    gradients; the rule only affects speed.

    Args:
        n_slots: input buffer capacity (static shape).
        capacity: output buffer capacity.
        size: number of neurons of the layer.
        releases: whether the scan models releases after ``t_ref`` (``Plan.refractory``).

    Returns:
        ``"multispike"`` or ``"scan"``.
    """
    steps = int(n_slots) + int(capacity) * (2 if releases else 1)
    closed = 10 * int(n_slots) * int(size) <= (133 + int(size)) * steps
    return "multispike" if closed else "scan"


def resolve_refractory(neuron: LIFParameters) -> bool:
    """Whether EventProp must model refractory releases: False only when ``t_ref`` is concretely 0.

    Args:
        neuron: the neuron parameters.

    Returns:
        True unless every ``t_ref`` is known to be zero (True is always correct, False faster).
    """
    with jax.ensure_compile_time_eval():
        return not (is_concrete(neuron.t_ref) and bool(np.all(np.asarray(neuron.t_ref) == 0)))


def resolve_plan(
    neuron: LIFParameters,
    t_max: Any,
    *,
    kernel: str = "auto",
    algorithm: str = "auto",
    recurrent: bool = False,
    backward: str = "auto",
) -> Plan:
    """Resolve every static choice of a layer at once (see the module docstring).

    Call it where the time constants, ``t_ref`` and ``t_max`` are concrete (at layer
    construction, or on entry to a public function); traced values give the safe general
    choices (root solver, scan, refractory modelled).

    Args:
        neuron: the neuron parameters.
        t_max: end of the window.
        kernel: one of ``jaxsnn.event.KERNELS``.
        algorithm: one of ``ALGORITHMS``.
        recurrent: whether the layer has recurrent weights.
        backward: one of ``BACKWARDS`` (EventProp backward pass).

    Returns:
        The ``Plan``.

    Raises:
        ValueError: unknown options, an analytic kernel whose tau ratio does not hold, or
            ``"parallel"``/``"multispike"`` where it is not exact.
    """
    resolved = resolve_algorithm(algorithm, neuron, t_max, recurrent)
    return Plan(
        kernel=resolve_kernel(kernel, neuron),
        algorithm=resolved,
        refractory=resolve_refractory(neuron),
        backward=resolve_backward(backward, resolved, neuron, t_max, recurrent),
        spike_bound=spike_bound(neuron, t_max),
    )
