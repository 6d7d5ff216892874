"""Checking and repairing spike measurements returned by a hardware backend.

A chip's recording path can return data a simulation never would: NaN or negative time
stamps (a corrupted word), events out of order (several recording channels merged late),
neuron indices outside the layer (a mis-routed event), the same event twice (a replayed
packet), or more events than the buffer can hold. Training on such data silently would
produce wrong gradients, so every measurement passes through ``sanitize_layer`` before it
reaches the differentiable code.

Two modes (``SanitizePolicy.mode``):

* ``"strict"``: any problem raises ``MeasurementError`` naming the layer, the problem and how
  many events are affected.
* ``"repair"``: the documented repairs below are applied and counted in a ``SanitizeReport``;
  if more than ``max_drop_fraction`` of a layer's events had to be dropped, the measurement is
  rejected anyway (``MeasurementError``), so garbage never reaches training.

Repairs, in this order (each event is counted once, under the first rule that drops it):

=================  ==========================================================================
problem            repair
=================  ==========================================================================
``nan``            events with a NaN time are dropped
``infinite``       real events (idx >= 0) with an infinite time are dropped
``negative``       events with a time < 0 are dropped
``late``           events after ``t_max`` are dropped (only if ``t_max`` is given)
``out_of_range``   events with idx >= layer size or idx < -1 are dropped
``duplicate``      repeated (time, idx) pairs are reduced to one event
``unsorted``       events are sorted by (time, idx); counted as the number of events that moved
``overflow``       events beyond the buffer capacity are dropped, latest first
=================  ==========================================================================

``unsorted`` moves no event out of the measurement, so it never counts toward
``max_drop_fraction``. Padding slots (idx -1) are normalised to time ``+inf`` without being
counted: a finite time on a padding slot carries no event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

PROBLEMS: Tuple[str, ...] = (
    "nan",
    "infinite",
    "negative",
    "late",
    "out_of_range",
    "duplicate",
    "unsorted",
    "overflow",
)
"""Names of the problems ``sanitize_layer`` detects, in the order they are applied."""

_DESCRIPTIONS: Dict[str, str] = {
    "nan": "event(s) with a NaN time",
    "infinite": "real event(s) with an infinite time",
    "negative": "event(s) with a negative time",
    "late": "event(s) after t_max",
    "out_of_range": "event(s) with a neuron index outside the layer",
    "duplicate": "duplicate event(s) (same time and neuron)",
    "unsorted": "event(s) out of time order",
    "overflow": "event(s) beyond the buffer capacity",
}


class MeasurementError(ValueError):
    """A measurement from a hardware backend is unusable (bad values, failure, timeout)."""


@dataclass(frozen=True)
class SanitizePolicy:
    """How measured spikes are checked.

    Attributes:
        mode: ``"strict"`` (raise on any problem) or ``"repair"`` (apply the documented
            repairs and count them).
        max_drop_fraction: in ``"repair"`` mode, the largest fraction of a layer's events
            (over the whole batch) that may be dropped before the measurement is rejected;
            in [0, 1].
        t_max: if given, events later than ``t_max`` are a problem (``"late"``).
    """

    mode: str = "repair"
    max_drop_fraction: float = 0.05
    t_max: Optional[float] = None

    def __post_init__(self) -> None:
        if self.mode not in ("strict", "repair"):
            raise ValueError(f"SanitizePolicy.mode must be 'strict' or 'repair', got {self.mode!r}")
        if not (0.0 <= float(self.max_drop_fraction) <= 1.0):
            raise ValueError(
                f"SanitizePolicy.max_drop_fraction must be in [0, 1], got {self.max_drop_fraction!r}"
            )
        if self.t_max is not None and not (np.isfinite(self.t_max) and self.t_max > 0):
            raise ValueError(f"SanitizePolicy.t_max must be finite and > 0, got {self.t_max!r}")


class SanitizeReport(NamedTuple):
    """Counts of repaired events per layer.

    Attributes:
        counts: ``(n_layers, len(PROBLEMS))`` int array; ``counts[l, k]`` is the number of
            events of layer ``l`` affected by problem ``PROBLEMS[k]`` (whole batch).
        n_events: ``(n_layers,)`` int array, the number of real events the backend returned
            per layer before repairs.
    """

    counts: np.ndarray
    n_events: np.ndarray

    def dropped(self) -> np.ndarray:
        """Events dropped per layer (every problem except ``unsorted``)."""
        keep = [k for k, name in enumerate(PROBLEMS) if name != "unsorted"]
        return np.asarray(self.counts)[..., keep].sum(axis=-1)

    def as_dict(self, layer_names: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, int]]:
        """Readable form: ``{layer name: {problem: count}}`` listing nonzero counts only."""
        counts = np.asarray(self.counts)
        names = list(layer_names) if layer_names is not None else [
            f"layer {k}" for k in range(counts.shape[0])
        ]
        return {
            names[layer]: {
                problem: int(counts[layer, k]) for k, problem in enumerate(PROBLEMS) if counts[layer, k]
            }
            for layer in range(counts.shape[0])
        }


def sanitize_layer(
    time: np.ndarray,
    idx: np.ndarray,
    *,
    n_neurons: int,
    capacity: int,
    policy: SanitizePolicy,
    layer: str,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Check and (in repair mode) repair one layer's measured spikes for a whole batch.

    Args:
        time: ``(batch, n)`` measured spike times (any ``n``; it may exceed ``capacity``).
        idx: ``(batch, n)`` measured neuron indices; -1 marks padding.
        n_neurons: number of neurons in the layer; valid indices are ``0..n_neurons-1``.
        capacity: slots of the returned buffers.
        policy: the checking mode and limits.
        layer: the layer's name, used in error messages.

    Returns:
        ``(time, idx, counts, n_events)``: ``(batch, capacity)`` float times sorted ascending
        and padded with ``+inf``, int32 indices padded with -1, the ``(len(PROBLEMS),)``
        counts per problem, and the number of real events before repairs.

    Raises:
        MeasurementError: in strict mode on any problem; in repair mode when more than
            ``policy.max_drop_fraction`` of the events were dropped. The message names the
            layer, the problem and the number of affected events.
    """
    time = np.asarray(time)
    idx = np.asarray(idx)
    if time.shape != idx.shape or time.ndim != 2:
        raise MeasurementError(
            f"{layer}: the backend returned time and idx of shapes {time.shape} and {idx.shape}; "
            "both must be (batch, n_events)"
        )
    if not np.issubdtype(time.dtype, np.floating):
        raise MeasurementError(f"{layer}: measured times must be floating point, got {time.dtype}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise MeasurementError(f"{layer}: measured indices must be integers, got {idx.dtype}")
    out_dtype = time.dtype
    time = time.astype(np.float64)
    idx = idx.astype(np.int64)
    batch = time.shape[0]
    counts = np.zeros(len(PROBLEMS), dtype=np.int64)
    is_event = idx != -1  # any other negative index is out of range, not padding
    n_events = int(is_event.sum())
    keep = is_event.copy()

    def drop(name: str, mask: np.ndarray) -> None:
        hit = keep & mask
        counts[PROBLEMS.index(name)] += int(hit.sum())
        keep[hit] = False

    drop("nan", np.isnan(time))
    drop("infinite", np.isinf(time))
    drop("negative", time < 0)
    if policy.t_max is not None:
        drop("late", time > policy.t_max)
    drop("out_of_range", (idx < 0) | (idx >= n_neurons))

    out_time = np.full((batch, capacity), np.inf)
    out_idx = np.full((batch, capacity), -1, dtype=np.int64)
    for sample in range(batch):
        sample_time = time[sample][keep[sample]]
        sample_idx = idx[sample][keep[sample]]
        # order within the received stream, before any repair, decides "unsorted"
        order = np.lexsort((sample_idx, sample_time))
        counts[PROBLEMS.index("unsorted")] += int(np.sum(order != np.arange(order.size)))
        sample_time, sample_idx = sample_time[order], sample_idx[order]
        if sample_time.size > 1:
            repeated = np.concatenate(
                [[False], (sample_time[1:] == sample_time[:-1]) & (sample_idx[1:] == sample_idx[:-1])]
            )
            counts[PROBLEMS.index("duplicate")] += int(repeated.sum())
            sample_time, sample_idx = sample_time[~repeated], sample_idx[~repeated]
        if sample_time.size > capacity:
            counts[PROBLEMS.index("overflow")] += int(sample_time.size - capacity)
            sample_time, sample_idx = sample_time[:capacity], sample_idx[:capacity]
        out_time[sample, : sample_time.size] = sample_time
        out_idx[sample, : sample_idx.size] = sample_idx

    if policy.mode == "strict":
        problems = [
            f"{counts[k]} {_DESCRIPTIONS[name]}" for k, name in enumerate(PROBLEMS) if counts[k]
        ]
        if problems:
            raise MeasurementError(
                f"{layer}: bad measurement: " + ", ".join(problems)
                + " (use SanitizePolicy(mode='repair') to drop such events and count them)"
            )
    else:
        dropped = int(counts.sum() - counts[PROBLEMS.index("unsorted")])
        if n_events and dropped > policy.max_drop_fraction * n_events:
            details = ", ".join(
                f"{counts[k]} {_DESCRIPTIONS[name]}"
                for k, name in enumerate(PROBLEMS)
                if counts[k] and name != "unsorted"
            )
            raise MeasurementError(
                f"{layer}: measurement rejected: {dropped} of {n_events} events "
                f"({dropped / n_events:.1%}) would be dropped, more than "
                f"max_drop_fraction={policy.max_drop_fraction:g} ({details})"
            )
    return out_time.astype(out_dtype), out_idx.astype(np.int32), counts, n_events
