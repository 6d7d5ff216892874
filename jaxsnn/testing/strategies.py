"""Hypothesis strategies for spiking-network tests.

Every strategy produces valid values of the library's types and shrinks toward simple ones:
fewer and earlier spikes, weights toward zero, the analytic tau ratio 1, ``v_leak = v_reset = 0``,
no refractory period. Bad-input strategies (``invalid_spikes``, ``invalid_lif_parameters``,
``invalid_discrete_parameters``) produce exactly one defect each and say which argument is
wrong, for error-path tests.

Requires ``hypothesis`` (a test-time dependency).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import jax
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxsnn import spikes as spikes_lib
from jaxsnn.event.neuron import LIFParameters
from jaxsnn.spikes import Spikes

__all__ = [
    "spikes",
    "lif_parameters",
    "tau_ratios",
    "weights",
    "dense_inputs",
    "networks",
    "Network",
    "invalid_spikes",
    "InvalidSpikes",
    "invalid_lif_parameters",
    "invalid_discrete_parameters",
    "InvalidParameters",
    "ANALYTIC_TAU_RATIOS",
]

#: tau_mem / tau_syn ratios with closed-form next-spike kernels.
ANALYTIC_TAU_RATIOS = (1.0, 2.0)

_FLOAT = dict(allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _float(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, **_FLOAT)


@st.composite
def spikes(
    draw: Any,
    n_inputs: int,
    max_events: int,
    t_max: float,
    *,
    simultaneous: bool = True,
    capacity: Optional[int] = None,
    min_events: int = 0,
    dtype: Any = None,
) -> Spikes:
    """Valid ``Spikes`` buffers: sorted, padded with ``(+inf, -1)``, indices in ``[0, n_inputs)``.

    Shrinks toward fewer events, earlier times and index 0.

    Args:
        n_inputs: number of source neurons (indices are local, ``< n_inputs``).
        max_events: most real events drawn.
        t_max: events lie in ``[0, t_max]``.
        simultaneous: if True, some events reuse an earlier time exactly (ties are where
            event-based simulators break); if False all times are distinct.
        capacity: buffer size (default ``max(max_events, 1)``); must be ``>= max_events``.
        min_events: fewest real events drawn.
        dtype: float dtype of the times (default float32, JAX's default; the result does not
            depend on ``jax_enable_x64``). Times are rounded to it before sorting, so the
            buffer is valid in that dtype.

    Returns:
        A strategy of ``jaxsnn.Spikes`` whose fields are NumPy arrays (``time`` of ``dtype``,
        ``idx`` int32): the drawn value is the same whatever JAX's configuration; JAX converts
        it when a layer uses it.

    Raises:
        ValueError: if ``n_inputs < 1``, ``t_max <= 0``, ``max_events < min_events`` or
            ``capacity < max_events``.
    """
    if n_inputs < 1:
        raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
    if not t_max > 0:
        raise ValueError(f"t_max must be > 0, got {t_max}")
    if max_events < min_events:
        raise ValueError(f"max_events ({max_events}) must be >= min_events ({min_events})")
    capacity = max(max_events, 1) if capacity is None else capacity
    if capacity < max_events:
        raise ValueError(f"capacity ({capacity}) must be >= max_events ({max_events})")
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    # One list element per event so that shrinking deletes whole events; the flag makes an
    # event simultaneous with the one listed before it.
    events = draw(st.lists(
        st.tuples(_float(0.0, t_max), st.integers(0, n_inputs - 1), st.booleans() if simultaneous else st.just(False)),
        min_size=min_events, max_size=max_events,
    ))
    times: List[float] = []
    for time, _, same in events:
        times.append(times[-1] if same and times else time)
    idx = [event[1] for event in events]
    times_np = np.asarray(times, dtype=np.float64).astype(dtype)
    if not simultaneous and len(np.unique(times_np)) < len(times_np):
        order = np.argsort(times_np, kind="stable")
        times_np, idx = _spread_apart(times_np[order], t_max), [idx[k] for k in order]
    # Sorted (stably: listed ties keep their order) and padded, in NumPy.
    order = np.argsort(times_np, kind="stable")
    time_out = np.full(capacity, np.inf, dtype=dtype)
    idx_out = np.full(capacity, spikes_lib.PAD_IDX, dtype=np.int32)
    time_out[: order.size] = times_np[order]
    idx_out[: order.size] = np.asarray(idx, dtype=np.int32)[order]
    return Spikes(time_out, idx_out)


def _spread_apart(times: np.ndarray, t_max: float) -> np.ndarray:
    """Sorted times made distinct within ``[0, t_max]``, keeping every event.

    Equal times are nudged apart by a resolvable gap (``t_max / 2**16``; not one ulp: XLA
    flushes subnormals, so 0 and the next float would compare equal), upward, then downward
    from ``t_max`` where that overshoots the window.
    """
    times = times.copy()
    gap = np.asarray(t_max * 2.0**-16, times.dtype)
    for k in range(1, times.size):
        times[k] = max(times[k], times[k - 1] + gap)
    for k in range(times.size - 1, -1, -1):
        limit = np.asarray(t_max, times.dtype) if k == times.size - 1 else times[k + 1] - gap
        times[k] = min(times[k], limit)
    return times


def tau_ratios(analytic_only: bool = False, low: float = 0.25, high: float = 10.0) -> st.SearchStrategy[float]:
    """``tau_mem / tau_syn`` ratios: the analytic ones (1 and 2) and arbitrary ones.

    Args:
        analytic_only: only 1 and 2.
        low: smallest arbitrary ratio.
        high: largest arbitrary ratio.

    Returns:
        A strategy of floats; shrinks toward 1.
    """
    analytic = st.sampled_from(ANALYTIC_TAU_RATIOS)
    if analytic_only:
        return analytic
    return st.one_of(analytic, _float(low, high), st.sampled_from((0.5, 1.5, 3.0, 10.0)))


def _ratio_strategy(tau_ratio: Any) -> st.SearchStrategy[float]:
    if tau_ratio is None:
        return tau_ratios()
    if isinstance(tau_ratio, st.SearchStrategy):
        return tau_ratio
    if isinstance(tau_ratio, tuple) and len(tau_ratio) == 2:
        return _float(float(tau_ratio[0]), float(tau_ratio[1]))
    if isinstance(tau_ratio, (list, set, frozenset)):
        return st.sampled_from(sorted(float(r) for r in tau_ratio))
    value = float(tau_ratio)
    if not value > 0:
        raise ValueError(f"tau_ratio must be > 0, got {tau_ratio!r}")
    return st.just(value)


@st.composite
def lif_parameters(
    draw: Any,
    kind: str = "event",
    tau_ratio: Any = None,
    *,
    tau_syn: Any = (2e-3, 1e-2),
    leak: bool = True,
    refractory: bool = True,
    resets: Sequence[str] = ("subtract", "hard"),
    dt_steps: Tuple[int, int] = (2, 20),
) -> Union[LIFParameters, Dict[str, Any]]:
    """Valid current-based LIF parameters.

    ``v_th`` is 1 when ``v_leak = 0``; in general ``v_leak < v_th`` and
    ``v_reset < v_th``, with ``v_reset`` below or above rest. Shrinks toward ratio 1,
    ``v_leak = v_reset = 0``, ``v_th = 1``, ``t_ref = 0``.

    Args:
        kind: ``"event"`` -> ``jaxsnn.event.neuron.LIFParameters``; ``"discrete"`` -> a dict
            of keyword arguments for ``jaxsnn.discrete.LIF`` (``tau_syn, tau_mem, dt, v_th,
            v_reset, v_leak, reset``).
        tau_ratio: ``tau_mem / tau_syn``: ``None`` (analytic ratios 1, 2 and arbitrary ones),
            a number, a ``(low, high)`` tuple, a list of choices or a strategy.
        tau_syn: a number or a ``(low, high)`` range for the synaptic time constant.
        leak: draw ``v_leak`` (else 0).
        refractory: draw ``t_ref`` in ``[0, 2 tau_syn]`` (event kind only; else 0).
        resets: reset modes to draw from (discrete kind only).
        dt_steps: ``dt = tau_min / k`` with ``k`` drawn from this range (discrete kind only).

    Returns:
        A strategy of ``LIFParameters`` or of dicts.

    Raises:
        ValueError: for an unknown ``kind``.
    """
    if kind not in ("event", "discrete"):
        raise ValueError(f"kind must be 'event' or 'discrete', got {kind!r}")
    ratio = draw(_ratio_strategy(tau_ratio))
    if isinstance(tau_syn, tuple):
        tau_s = draw(st.one_of(st.just(5e-3), _float(float(tau_syn[0]), float(tau_syn[1]))))
        tau_s = min(max(tau_s, float(tau_syn[0])), float(tau_syn[1]))
    else:
        tau_s = float(tau_syn)
    tau_m = ratio * tau_s
    v_leak = draw(st.one_of(st.just(0.0), _float(-0.5, 0.5))) if leak else 0.0
    v_th = draw(st.one_of(st.just(1.0), st.just(v_leak + 1.0), _float(v_leak + 0.3, v_leak + 1.5)))
    # Reset below rest (down to 0.5 under it) or above rest (up to 90 % of the way to v_th).
    below = _float(-0.5, 0.0)
    above = _float(0.0, 0.9)
    reset_offset = draw(st.one_of(st.just(0.0), below, above))
    v_reset = v_leak + (reset_offset * (v_th - v_leak) if reset_offset > 0 else reset_offset)
    if kind == "event":
        t_ref = draw(st.one_of(st.just(0.0), _float(0.0, 2 * tau_s))) if refractory else 0.0
        return LIFParameters(
            tau_syn=tau_s, tau_mem=tau_m, v_th=v_th, v_reset=v_reset, v_leak=v_leak, t_ref=t_ref
        )
    steps = draw(st.integers(*dt_steps))
    return dict(
        tau_syn=tau_s,
        tau_mem=tau_m,
        dt=min(tau_s, tau_m) / steps,
        v_th=v_th,
        v_reset=v_reset,
        v_leak=v_leak,
        reset=draw(st.sampled_from(tuple(resets))),
    )


@st.composite
def weights(
    draw: Any,
    shape: Tuple[int, ...],
    *,
    low: float = -1.0,
    high: float = 3.0,
    ties: bool = False,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Weight arrays with entries in ``[low, high]``; shrinks toward zeros.

    Args:
        shape: array shape, e.g. ``(n_in, size)``.
        low: smallest entry.
        high: largest entry.
        ties: if True and the array is 2-D with >= 2 columns, sometimes copy one column onto
            another so two neurons receive identical input (they then cross threshold at the
            same instant: the case where simulators drop spikes).
        dtype: NumPy dtype of the result.

    Returns:
        A strategy of ``np.ndarray``.
    """
    array = draw(hnp.arrays(np.float64, tuple(shape), elements=_float(float(low), float(high))))
    if ties and array.ndim == 2 and array.shape[1] >= 2 and draw(st.booleans()):
        source = draw(st.integers(0, array.shape[1] - 1))
        target = draw(st.integers(0, array.shape[1] - 1).filter(lambda k: k != source))
        array[:, target] = array[:, source]
    return array.astype(dtype)


@st.composite
def dense_inputs(
    draw: Any,
    T: int,
    n: int,
    binary: bool = True,
    *,
    low: float = -1.0,
    high: float = 1.0,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Dense ``(T, n)`` inputs for discrete layers; shrinks toward all zeros.

    Args:
        T: number of time steps.
        n: number of input features.
        binary: 0/1 spike trains (else real values in ``[low, high]``).
        low: smallest real value (``binary=False``).
        high: largest real value (``binary=False``).
        dtype: NumPy dtype of the result.

    Returns:
        A strategy of ``np.ndarray`` with shape ``(T, n)``.
    """
    elements = st.sampled_from((0.0, 1.0)) if binary else _float(float(low), float(high))
    return draw(hnp.arrays(np.float64, (T, n), elements=elements)).astype(dtype)


class Network(NamedTuple):
    """A drawn network.

    Attributes:
        layer: the ``serial`` (a ``Layer``).
        params: its parameters (flat list, one entry per leaf layer).
        input_shape: shape passed to ``init`` (``(T, n_inputs)`` for discrete networks,
            ``(n_inputs,)`` for event networks).
        output_shape: shape returned by ``init``.
        description: the nested structure, e.g. ``"serial(LIF(3), serial(LI(2)))"``.
        kind: ``"discrete"`` or ``"event"``.
    """

    layer: Any
    params: Any
    input_shape: Tuple[int, ...]
    output_shape: Tuple[int, ...]
    description: str
    kind: str


def _default_factories(kind: str) -> Dict[str, Callable[..., Any]]:
    if kind == "discrete":
        from jaxsnn import discrete

        return {"LIF": discrete.LIF, "RecurrentLIF": discrete.RecurrentLIF, "LI": discrete.LI}
    from jaxsnn import event

    return {name: getattr(event, name) for name in ("LIF", "RecurrentLIF") if hasattr(event, name)}


@st.composite
def networks(
    draw: Any,
    kind: str = "discrete",
    *,
    n_inputs: int = 3,
    T: int = 8,
    max_layers: int = 3,
    max_size: int = 4,
    nested: bool = True,
    factories: Optional[Dict[str, Callable[..., Any]]] = None,
    layer_kwargs: Optional[Callable[[Any, str], Dict[str, Any]]] = None,
    dtype: Any = np.float32,
) -> Network:
    """A random ``serial`` of compatible layers (nested ``serial``s included) and its params.

    Discrete networks chain ``LIF``/``RecurrentLIF`` layers and may end with an ``LI``
    readout; event networks chain event ``LIF``/``RecurrentLIF`` layers. Each layer has its own
    drawn size and parameters; layers are grouped into nested ``serial``s at random.

    Args:
        kind: ``"discrete"`` or ``"event"``.
        n_inputs: input features (discrete) or input neurons (event).
        T: time steps of discrete inputs (part of ``input_shape``).
        max_layers: most leaf layers.
        max_size: largest layer size.
        nested: allow nested ``serial``s.
        factories: ``{name: constructor}``; default: the project's layers of that kind. A
            constructor is called as ``factory(size, **kwargs)``.
        layer_kwargs: ``(draw, name) -> kwargs`` for each layer; default: ``lif_parameters``
            of the right kind as keyword arguments (event layers also get
            ``t_max = 10 tau_syn`` and ``capacity = 16``; override them this way).
        dtype: parameter dtype passed to the default layers (explicit, so the drawn params do
            not depend on ``jax_enable_x64``; float64 needs x64 enabled).

    Returns:
        A strategy of ``Network``.
    """
    from jaxsnn.compose import serial

    factories = factories or _default_factories(kind)
    spiking = [name for name in factories if name != "LI"]
    if not spiking:
        raise ValueError(f"no spiking layer factories available for kind {kind!r}")

    def default_kwargs(draw_: Any, name: str) -> Dict[str, Any]:
        if kind == "discrete":
            kwargs = draw_(lif_parameters("discrete"))
            if name == "LI":
                kwargs = {k: kwargs[k] for k in ("tau_syn", "tau_mem", "dt", "v_leak")}
            return dict(kwargs, dtype=dtype)
        params = draw_(lif_parameters("event"))
        return dict(params._asdict(), t_max=10 * params.tau_syn, capacity=16, dtype=dtype)

    make_kwargs = layer_kwargs or default_kwargs
    n_layers = draw(st.integers(1, max_layers))
    names = [draw(st.sampled_from(spiking)) for _ in range(n_layers)]
    if kind == "discrete" and "LI" in factories and draw(st.booleans()):
        names[-1] = "LI"
    leaves = []
    for name in names:
        size = draw(st.integers(1, max_size))
        leaves.append((f"{name}({size})", factories[name](size, **make_kwargs(draw, name))))

    def build(items: List[Tuple[str, Any]]) -> Tuple[str, Any]:
        # Split into consecutive chunks; a shorter chunk may become a nested serial.
        parts: List[Tuple[str, Any]] = []
        k = 0
        while k < len(items):
            length = draw(st.integers(1, len(items) - k)) if nested else 1
            chunk = items[k:k + length]
            k += length
            if nested and length < len(items) and (length > 1 or draw(st.booleans())):
                parts.append(build(chunk))
            else:
                parts.extend(chunk)
        return "serial(" + ", ".join(p[0] for p in parts) + ")", serial(*(p[1] for p in parts))

    description, layer = build(leaves)
    input_shape = (T, n_inputs) if kind == "discrete" else (n_inputs,)
    seed = draw(st.integers(0, 2**31 - 1))
    output_shape, params = layer.init(jax.random.PRNGKey(seed), input_shape)
    return Network(layer, params, input_shape, tuple(output_shape), description, kind)


class InvalidSpikes(NamedTuple):
    """A malformed spike buffer and what is wrong with it.

    Attributes:
        spikes: the buffer (a ``Spikes`` with exactly one defect).
        problem: ``"unsorted"``, ``"negative"``, ``"nan"``, ``"inf"``, ``"index_too_large"``,
            ``"index_below_padding"`` or ``"padding_time"``.
        argument: the argument an error message should name (``"time"`` or ``"idx"``).
    """

    spikes: Spikes
    problem: str
    argument: str


_PROBLEMS = {
    "unsorted": "time",
    "negative": "time",
    "nan": "time",
    "inf": "time",
    "index_too_large": "idx",
    "index_below_padding": "idx",
    "padding_time": "time",
}


@st.composite
def invalid_spikes(
    draw: Any,
    n_inputs: int = 3,
    t_max: float = 1.0,
    *,
    capacity: int = 6,
    problems: Sequence[str] = tuple(_PROBLEMS),
    dtype: Any = None,
) -> InvalidSpikes:
    """Spike buffers with exactly one defect, for error-path tests.

    Args:
        n_inputs: number of valid source indices; ``"index_too_large"`` uses ``>= n_inputs``.
        t_max: valid events lie in ``[0, t_max]``.
        capacity: buffer size, >= 3.
        problems: which defects to draw from (see ``InvalidSpikes.problem``).
        dtype: float dtype of the times (default float32; NumPy arrays as in ``spikes``).

    Returns:
        A strategy of ``InvalidSpikes``.
    """
    if capacity < 3:
        raise ValueError(f"capacity must be >= 3, got {capacity}")
    unknown = set(problems) - set(_PROBLEMS)
    if unknown:
        raise ValueError(f"unknown problems {sorted(unknown)}; choose from {sorted(_PROBLEMS)}")
    problem = draw(st.sampled_from(tuple(problems)))
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    valid = draw(spikes(n_inputs, capacity - 1, t_max, capacity=capacity, min_events=2,
                        simultaneous=False, dtype=dtype))
    time = np.array(valid.time, dtype=np.float64)
    idx = np.array(valid.idx)
    n_valid = int(np.sum(idx >= 0))
    if n_valid < 2:  # distinct times collapsed at t_max: fall back to two plain events
        time[:2], idx[:2] = (0.0, 0.5 * t_max), (0, n_inputs - 1)
        n_valid = 2
    k = draw(st.integers(0, n_valid - 1))
    if problem == "unsorted":
        time[0], time[n_valid - 1] = time[n_valid - 1], time[0]
        if time[0] == time[n_valid - 1]:
            time[0] = time[n_valid - 1] + 0.5 * t_max + 1.0
    elif problem == "negative":
        time[0] = -draw(_float(1e-3, t_max))
    elif problem == "nan":
        time[k] = np.nan
    elif problem == "inf":
        time[n_valid - 1] = np.inf
    elif problem == "index_too_large":
        idx[k] = n_inputs + draw(st.integers(0, 3))
    elif problem == "index_below_padding":
        idx[k] = -2 - draw(st.integers(0, 3))
    else:  # padding_time: a padding slot (idx -1) with a finite time
        time[capacity - 1] = draw(_float(0.0, t_max))
        idx[capacity - 1] = -1
    bad = Spikes(time.astype(dtype), idx.astype(np.int32))
    return InvalidSpikes(bad, problem, _PROBLEMS[problem])


class InvalidParameters(NamedTuple):
    """A parameter set with exactly one invalid entry.

    Attributes:
        params: ``LIFParameters`` (event) or a keyword dict (discrete).
        argument: the name an error message should contain (e.g. ``"tau_syn"``).
    """

    params: Any
    argument: str


@st.composite
def invalid_lif_parameters(draw: Any) -> InvalidParameters:
    """Event ``LIFParameters`` with one defect.

    Defects: ``tau_syn`` or ``tau_mem`` <= 0 or non-finite, ``t_ref < 0``,
    ``v_th <= v_reset``, ``v_th <= v_leak``, a NaN potential.

    Returns:
        A strategy of ``InvalidParameters``; ``argument`` is the field an error should name
        (for ``v_th <= v_reset`` it is ``"v_reset"``, for ``v_th <= v_leak`` ``"v_leak"``).
    """
    good = draw(lif_parameters("event"))
    defect = draw(st.sampled_from(
        ("tau_syn", "tau_mem", "t_ref", "v_reset", "v_leak", "v_th_nan", "tau_nan")
    ))
    if defect in ("tau_syn", "tau_mem"):
        return InvalidParameters(good._replace(**{defect: -draw(_float(0.0, 1.0))}), defect)
    if defect == "tau_nan":
        return InvalidParameters(good._replace(tau_mem=math.nan), "tau_mem")
    if defect == "t_ref":
        return InvalidParameters(good._replace(t_ref=-draw(_float(1e-6, 1.0))), "t_ref")
    if defect == "v_reset":
        return InvalidParameters(good._replace(v_reset=good.v_th + draw(_float(0.0, 1.0))), "v_reset")
    if defect == "v_leak":
        return InvalidParameters(good._replace(v_leak=good.v_th + draw(_float(0.0, 1.0))), "v_leak")
    return InvalidParameters(good._replace(v_th=math.nan), "v_th")


@st.composite
def invalid_discrete_parameters(draw: Any) -> InvalidParameters:
    """Keyword dicts for the discrete layers with one defect.

    Defects: ``tau_syn`` < 0 or non-finite, ``tau_mem`` or ``dt`` <= 0, ``v_th <= v_reset``,
    an unknown ``reset``.

    Returns:
        A strategy of ``InvalidParameters``; ``argument`` is the keyword an error should name.
    """
    good = dict(draw(lif_parameters("discrete")))
    defect = draw(st.sampled_from(("tau_syn", "tau_mem", "dt", "v_reset", "reset", "inf")))
    if defect in ("tau_syn", "tau_mem", "dt"):
        # tau_syn = 0 is valid (no synaptic filter): its defect is strictly negative.
        good[defect] = -draw(_float(1e-6 if defect == "tau_syn" else 0.0, 1.0))
        return InvalidParameters(good, defect)
    if defect == "inf":
        good["tau_syn"] = math.inf
        return InvalidParameters(good, "tau_syn")
    if defect == "v_reset":
        good["v_reset"] = good["v_th"] + draw(_float(0.0, 1.0))
        return InvalidParameters(good, "v_reset")
    good["reset"] = draw(st.sampled_from(("zero", "none", "Subtract")))
    return InvalidParameters(good, "reset")
