"""Figures of spiking networks: spike rasters, membrane traces, first-spike maps, training curves.

Needs matplotlib (``pip install 'jaxsnn[plot]'``), imported only when a function draws, so
``import jaxsnn.plot`` works without it. Every function draws into ``ax`` (a new figure when
``ax`` is None), returns the artists it made so their data can be inspected, and never calls
``show`` or ``savefig``: use ``artist.axes.figure``. Times are shown in ``time_unit`` (ms by
default, for times in seconds).
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from jaxsnn.spikes import Spikes


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "jaxsnn.plot needs matplotlib; install it with pip install 'jaxsnn[plot]'"
        ) from error
    return plt


def _with_bad_color(cmap: Any, color: str = "lightgray") -> Any:
    # the colour map with a colour for masked values (silent neurons, undecided samples)
    import matplotlib

    if isinstance(cmap, str):
        cmap = matplotlib.colormaps[cmap]
    return cmap.with_extremes(bad=color)


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots()
    return ax


def _time_label(time_unit: Optional[float], in_steps: bool = False) -> str:
    names = {1.0: "s", 1e-3: "ms", 1e-6: "us"}
    if in_steps:
        return "time step"
    if time_unit is None:
        return "time"
    return f"time ({names.get(time_unit, f'x {time_unit:g} s')})"


def _positive(name: str, value: Optional[float]) -> None:
    if value is not None and not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def raster_events(spikes: Any, dt: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The ``(times, neurons)`` of every spike in a buffer or a dense grid, as NumPy arrays.

    Args:
        spikes: one sample: ``jaxsnn.Spikes`` with 1-d ``time``/``idx`` (padding, ``idx < 0``
            or an infinite time, is left out), or a dense ``(T, n)`` grid (a spike wherever the
            entry is not 0).
        dt: step width of a dense grid; its spike at step ``s`` is placed at ``s * dt``
            (``None``: at ``s``, in steps). Ignored for ``Spikes``.

    Returns:
        ``(times, neurons)``: float and int arrays of equal length.

    Raises:
        ValueError: for a batch (use one sample) or ``dt <= 0``.
    """
    _positive("dt", dt)
    if isinstance(spikes, Spikes):
        time, idx = np.asarray(spikes.time), np.asarray(spikes.idx)
        if time.ndim != 1:
            raise ValueError(
                f"spike_raster draws one sample: Spikes.time must be 1-d, got shape {time.shape}"
            )
        valid = (idx >= 0) & np.isfinite(time)
        return time[valid].astype(float), idx[valid].astype(int)
    grid = np.asarray(spikes)
    if grid.ndim != 2:
        raise ValueError(
            f"spike_raster draws one sample: a dense grid must be (T, n), got shape {grid.shape}"
        )
    steps, neurons = np.nonzero(grid)
    times = steps.astype(float) * (1.0 if dt is None else dt)
    return times, neurons.astype(int)


def spike_raster(
    spikes: Any,
    ax: Any = None,
    *,
    dt: Optional[float] = None,
    time_unit: Optional[float] = 1e-3,
    **scatter_kwargs: Any,
) -> Any:
    """Spike raster of one sample: a tick at (spike time, neuron index) for every spike.

    Args:
        spikes: ``jaxsnn.Spikes`` (1-d buffer) or a dense ``(T, n)`` grid (see
            ``raster_events``).
        ax: matplotlib axes to draw into (default: a new figure).
        dt: step width of a dense grid (``None``: the x axis counts steps).
        time_unit: unit of the x axis in the unit of the times (``1e-3``: ms for seconds;
            ``None``: the times as they are); ignored for a dense grid without ``dt``.
        **scatter_kwargs: passed to ``ax.scatter`` (default marker ``"|"``, black).

    Returns:
        The ``PathCollection``; ``get_offsets()`` holds ``(time / time_unit, neuron)``.

    Raises:
        ValueError: as ``raster_events``, or ``time_unit <= 0``.
        ImportError: without matplotlib.
    """
    _positive("time_unit", time_unit)
    times, neurons = raster_events(spikes, dt)
    in_steps = not isinstance(spikes, Spikes) and dt is None
    scale = 1.0 if in_steps or time_unit is None else time_unit
    ax = _axes(ax)
    options = {"marker": "|", "c": "k", "s": 30, "linewidths": 1.0, **scatter_kwargs}
    artist = ax.scatter(times / scale, neurons, **options)
    ax.set_xlabel(_time_label(time_unit, in_steps))
    ax.set_ylabel("neuron")
    return artist


def membrane_traces(
    membrane: Any,
    ax: Any = None,
    *,
    dt: Optional[float] = None,
    neurons: Optional[Sequence[int]] = None,
    threshold: Optional[float] = None,
    time_unit: Optional[float] = 1e-3,
    labels: Optional[Sequence[str]] = None,
    **line_kwargs: Any,
) -> List[Any]:
    """Membrane potential over time, one line per neuron, of one sample.

    Args:
        membrane: ``(T, n)`` trace (e.g. the outputs of a discrete ``LI`` readout).
        ax: matplotlib axes (default: a new figure).
        dt: step width (``None``: the x axis counts steps).
        neurons: indices to draw (default: all).
        threshold: draw a dashed horizontal line at this value (not returned).
        time_unit: unit of the x axis when ``dt`` is given.
        labels: one legend label per drawn neuron (default ``"neuron j"``).
        **line_kwargs: passed to ``ax.plot``.

    Returns:
        The ``Line2D`` of every drawn neuron, in the order of ``neurons``.

    Raises:
        ValueError: if ``membrane`` is not ``(T, n)``, an index is out of range, ``labels``
            has the wrong length, or ``dt``/``time_unit`` is not positive.
        ImportError: without matplotlib.
    """
    _positive("dt", dt)
    _positive("time_unit", time_unit)
    trace = np.asarray(membrane)
    if trace.ndim != 2:
        raise ValueError(f"membrane must be (T, n) for one sample, got shape {trace.shape}")
    chosen = list(range(trace.shape[1])) if neurons is None else [int(j) for j in neurons]
    bad = [j for j in chosen if not 0 <= j < trace.shape[1]]
    if bad:
        raise ValueError(f"neurons {bad} out of range for {trace.shape[1]} neurons")
    if labels is not None and len(labels) != len(chosen):
        raise ValueError(
            f"labels must name each of the {len(chosen)} drawn neurons, got {len(labels)}"
        )
    steps = np.arange(trace.shape[0], dtype=float)
    time = steps if dt is None else steps * dt / (1.0 if time_unit is None else time_unit)
    ax = _axes(ax)
    lines = []
    for position, j in enumerate(chosen):
        label = f"neuron {j}" if labels is None else labels[position]
        lines.extend(ax.plot(time, trace[:, j], label=label, **line_kwargs))
    if threshold is not None:
        ax.axhline(threshold, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel(_time_label(time_unit, in_steps=dt is None))
    ax.set_ylabel("membrane")
    return lines


def first_spike_scatter(
    points: Any,
    first_times: Any,
    ax: Any = None,
    *,
    time_unit: float = 1e-3,
    colorbar: bool = True,
    **scatter_kwargs: Any,
) -> Any:
    """First-spike time of one neuron over the input plane, one coloured point per sample.

    Silent samples (``+inf``) are drawn in light grey.

    Args:
        points: ``(N, 2)`` input coordinates (e.g. the Yin-Yang ``x, y``).
        first_times: ``(N,)`` first-spike times of the neuron, ``+inf`` = silent.
        ax: matplotlib axes (default: a new figure).
        time_unit: unit of the colour scale.
        colorbar: add a colour bar labelled with the unit.
        **scatter_kwargs: passed to ``ax.scatter`` (default colour map ``"magma"``).

    Returns:
        The ``PathCollection``; ``get_array()`` holds ``first_times / time_unit``, masked where
        the neuron was silent.

    Raises:
        ValueError: for mismatched shapes, NaN or ``-inf`` times, or ``time_unit <= 0``.
        ImportError: without matplotlib.
    """
    _positive("time_unit", time_unit)
    xy = _points(points)
    times = np.asarray(first_times, dtype=float)
    if times.shape != (xy.shape[0],):
        raise ValueError(f"first_times must be ({xy.shape[0]},), one per point, got {times.shape}")
    if np.any(np.isnan(times) | (times == -np.inf)):
        raise ValueError("first_times must not hold NaN or -inf (+inf marks a silent neuron)")
    shown = np.ma.masked_invalid(times / time_unit)
    ax = _axes(ax)
    options = {"s": 6, "plotnonfinite": True, **scatter_kwargs}
    options["cmap"] = _with_bad_color(options.get("cmap", "magma"))
    artist = ax.scatter(xy[:, 0], xy[:, 1], c=shown, **options)
    if colorbar:
        ax.figure.colorbar(artist, ax=ax, label=f"first spike {_time_label(time_unit)[5:]}")
    ax.set_aspect("equal")
    return artist


def prediction_scatter(
    points: Any,
    predicted: Any,
    labels: Optional[Any] = None,
    ax: Any = None,
    *,
    n_classes: Optional[int] = None,
    **scatter_kwargs: Any,
) -> Tuple[Any, Optional[Any]]:
    """Predicted class over the input plane; with ``labels``, the errors circled in red.

    Args:
        points: ``(N, 2)`` input coordinates.
        predicted: ``(N,)`` predicted classes, ``-1`` for no decision (``jaxsnn.loss``'s
            ``predict_*``), drawn in light grey.
        labels: optional ``(N,)`` true classes; a sample is an error where they differ.
        ax: matplotlib axes (default: a new figure).
        n_classes: number of classes for the colour scale (default: ``max + 1``).
        **scatter_kwargs: passed to the class scatter (default colour map ``"viridis"``).

    Returns:
        ``(classes, errors)``: the class ``PathCollection`` and the error circles
        (``None`` without ``labels``); ``errors.get_offsets()`` are the wrong points.

    Raises:
        ValueError: for mismatched shapes.
        ImportError: without matplotlib.
    """
    xy = _points(points)
    predicted = np.asarray(predicted).astype(int)
    if predicted.shape != (xy.shape[0],):
        raise ValueError(
            f"predicted must be ({xy.shape[0]},), one per point, got {predicted.shape}"
        )
    top = max(int(predicted.max(initial=0)), 0) if n_classes is None else n_classes - 1
    ax = _axes(ax)
    shown = np.ma.masked_less(predicted.astype(float), 0)
    options = {"s": 6, "vmin": 0, "vmax": max(top, 1), "plotnonfinite": True, **scatter_kwargs}
    options["cmap"] = _with_bad_color(options.get("cmap", "viridis"))
    classes = ax.scatter(xy[:, 0], xy[:, 1], c=shown, **options)
    errors = None
    if labels is not None:
        labels = np.asarray(labels).astype(int)
        if labels.shape != predicted.shape:
            raise ValueError(
                f"labels must have the shape of predicted {predicted.shape}, got {labels.shape}"
            )
        wrong = predicted != labels
        errors = ax.scatter(
            xy[wrong, 0],
            xy[wrong, 1],
            facecolors="none",
            edgecolors="red",
            s=25,
            linewidths=0.8,
            label=f"wrong ({int(wrong.sum())})",
        )
    ax.set_aspect("equal")
    return classes, errors


def training_curves(
    curves: Mapping[str, Any],
    ax: Any = None,
    *,
    scale: float = 1.0,
    band: bool = True,
    **line_kwargs: Any,
) -> Dict[str, Any]:
    """Per-epoch curves, e.g. loss or accuracy; over several seeds, the mean and a min-max band.

    Args:
        curves: name -> ``(epochs,)`` values or ``(epochs, seeds)`` values per seed. The x axis
            counts epochs from 1.
        ax: matplotlib axes (default: a new figure).
        scale: factor applied to every value (e.g. 100 for accuracies in %).
        band: shade the range between the smallest and the largest seed.
        **line_kwargs: passed to every ``ax.plot``.

    Returns:
        name -> the ``Line2D`` of the (mean) curve, labelled with the name.

    Raises:
        ValueError: for an empty mapping or a curve that is not 1-d or 2-d.
        ImportError: without matplotlib.
    """
    if not curves:
        raise ValueError("curves must name at least one curve")
    arrays = {}
    for name, values in curves.items():
        array = np.asarray(values, dtype=float)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2 or array.shape[0] < 1:
            raise ValueError(
                f"curve {name!r} must be (epochs,) or (epochs, seeds), got shape {np.shape(values)}"
            )
        arrays[name] = scale * array
    ax = _axes(ax)
    lines = {}
    for name, array in arrays.items():
        epochs = np.arange(1, array.shape[0] + 1)
        (line,) = ax.plot(epochs, array.mean(axis=1), label=name, **line_kwargs)
        if band and array.shape[1] > 1:
            ax.fill_between(
                epochs,
                array.min(axis=1),
                array.max(axis=1),
                color=line.get_color(),
                alpha=0.2,
                linewidth=0,
            )
        lines[name] = line
    ax.set_xlabel("epoch")
    return lines


def _points(points: Any) -> np.ndarray:
    xy = np.asarray(points, dtype=float)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"points must be (N, 2) coordinates, got shape {xy.shape}")
    return xy


__all__ = [
    "first_spike_scatter",
    "membrane_traces",
    "prediction_scatter",
    "raster_events",
    "spike_raster",
    "training_curves",
]
