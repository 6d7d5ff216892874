"""jaxsnn.plot: the drawn data equals the input (Agg backend), errors, lazy matplotlib import."""

import importlib
import sys

import numpy as np
import pytest

import matplotlib  # the [plot] extra, also in [test]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import jaxsnn.plot as plot  # noqa: E402
from jaxsnn import spikes as spike_buffers  # noqa: E402

INF = np.inf


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_spike_raster_of_a_buffer_draws_every_event_and_no_padding(ax):
    events = spike_buffers.from_lists([0.002, 0.0005, 0.004], [1, 0, 2], capacity=6)
    artist = plot.spike_raster(events, ax)
    assert artist.axes is ax
    np.testing.assert_allclose(artist.get_offsets(), [[0.5, 0], [2.0, 1], [4.0, 2]])
    assert ax.get_xlabel() == "time (ms)" and ax.get_ylabel() == "neuron"
    # the same events on a dense grid (dt = 0.5 ms): the same points
    grid = spike_buffers.to_dense(events, 3, 5e-4, 10)
    fig, other = plt.subplots()
    dense = plot.spike_raster(grid, other, dt=5e-4)
    np.testing.assert_allclose(dense.get_offsets(), artist.get_offsets())
    steps = plot.spike_raster(grid, other)  # without dt: the x axis counts steps
    np.testing.assert_allclose(steps.get_offsets(), [[1, 0], [4, 1], [8, 2]])
    assert other.get_xlabel() == "time step"
    plt.close(fig)
    empty = plot.spike_raster(spike_buffers.empty(4), ax)
    assert len(empty.get_offsets()) == 0


def test_spike_raster_new_figure_and_kwargs():
    events = spike_buffers.from_lists([0.001], [3], capacity=2)
    artist = plot.spike_raster(events, time_unit=1.0, c="tab:red")
    np.testing.assert_allclose(artist.get_offsets(), [[0.001, 3]])
    np.testing.assert_allclose(artist.get_facecolor()[0][:3], matplotlib.colors.to_rgb("tab:red"))
    assert artist.axes.get_xlabel() == "time (s)"
    plt.close(artist.axes.figure)


def test_membrane_traces(ax):
    trace = np.stack([np.linspace(0, 1, 5), np.linspace(1, 0, 5), np.zeros(5)], axis=1)
    lines = plot.membrane_traces(trace, ax, dt=1e-3, neurons=[2, 0], threshold=0.8)
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_ydata(), trace[:, 2])
    np.testing.assert_array_equal(lines[1].get_ydata(), trace[:, 0])
    np.testing.assert_allclose(lines[0].get_xdata(), [0, 1, 2, 3, 4])  # ms
    assert [line.get_label() for line in lines] == ["neuron 2", "neuron 0"]
    threshold = [line for line in ax.lines if line not in lines]
    assert len(threshold) == 1 and np.all(np.asarray(threshold[0].get_ydata()) == 0.8)
    labelled = plot.membrane_traces(trace, ax, labels=["a", "b", "c"])
    assert [line.get_label() for line in labelled] == ["a", "b", "c"]
    np.testing.assert_array_equal(labelled[1].get_xdata(), np.arange(5))


def test_first_spike_scatter_masks_silent_samples(ax):
    points = np.array([[0.1, 0.2], [0.5, 0.5], [0.9, 0.3]])
    times = np.array([0.004, INF, 0.0065])
    artist = plot.first_spike_scatter(points, times, ax)
    np.testing.assert_allclose(artist.get_offsets(), points)
    values = artist.get_array()
    assert np.ma.is_masked(values) and values.mask.tolist() == [False, True, False]
    np.testing.assert_allclose(values.compressed(), [4.0, 6.5])
    assert len(ax.figure.axes) == 2  # the colour bar
    np.testing.assert_allclose(
        artist.cmap(np.ma.masked_invalid([np.nan]))[0], matplotlib.colors.to_rgba("lightgray")
    )


def test_prediction_scatter_circles_the_errors(ax):
    points = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    predicted = np.array([0, 2, -1, 1])
    labels = np.array([0, 1, 2, 1])
    classes, errors = plot.prediction_scatter(points, predicted, labels, ax, n_classes=3)
    np.testing.assert_allclose(classes.get_offsets(), points)
    assert classes.get_array().mask.tolist() == [False, False, True, False]  # -1: no decision
    np.testing.assert_allclose(errors.get_offsets(), [[1.0, 0.0], [0.0, 1.0]])
    assert errors.get_label() == "wrong (2)"
    _, none = plot.prediction_scatter(points, predicted, None, ax)
    assert none is None


def test_training_curves_mean_and_band(ax):
    per_seed = np.array([[1.0, 3.0], [0.5, 1.5], [0.2, 0.4]])  # (epochs, seeds)
    lines = plot.training_curves({"train": per_seed, "test": per_seed[:, 0]}, ax, scale=100)
    np.testing.assert_allclose(lines["train"].get_ydata(), [200.0, 100.0, 30.0])
    np.testing.assert_array_equal(lines["train"].get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(lines["test"].get_ydata(), [100.0, 50.0, 20.0])
    assert lines["train"].get_label() == "train" and ax.get_xlabel() == "epoch"
    assert len(ax.collections) == 1  # a band for the curve with two seeds only
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() == pytest.approx(20.0) and band[:, 1].max() == pytest.approx(300.0)


def test_errors(ax):
    with pytest.raises(ValueError, match=r"Spikes.time must be 1-d, got shape \(2, 3\)"):
        plot.spike_raster(spike_buffers.Spikes(np.zeros((2, 3)), np.zeros((2, 3), np.int32)), ax)
    with pytest.raises(ValueError, match=r"a dense grid must be \(T, n\), got shape \(2, 3, 4\)"):
        plot.spike_raster(np.zeros((2, 3, 4)), ax)
    with pytest.raises(ValueError, match="dt must be finite and > 0"):
        plot.spike_raster(np.zeros((2, 3)), ax, dt=0.0)
    with pytest.raises(ValueError, match=r"membrane must be \(T, n\)"):
        plot.membrane_traces(np.zeros(5), ax)
    with pytest.raises(ValueError, match=r"neurons \[3\] out of range for 2 neurons"):
        plot.membrane_traces(np.zeros((5, 2)), ax, neurons=[3])
    with pytest.raises(ValueError, match="labels must name each of the 2 drawn neurons"):
        plot.membrane_traces(np.zeros((5, 2)), ax, labels=["a"])
    with pytest.raises(ValueError, match=r"points must be \(N, 2\)"):
        plot.first_spike_scatter(np.zeros((3, 3)), np.zeros(3), ax)
    with pytest.raises(ValueError, match=r"first_times must be \(3,\)"):
        plot.first_spike_scatter(np.zeros((3, 2)), np.zeros(4), ax)
    with pytest.raises(ValueError, match="must not hold NaN or -inf"):
        plot.first_spike_scatter(np.zeros((2, 2)), np.array([np.nan, 1.0]), ax)
    with pytest.raises(ValueError, match=r"labels must have the shape of predicted \(2,\)"):
        plot.prediction_scatter(np.zeros((2, 2)), np.zeros(2), np.zeros(3), ax)
    with pytest.raises(ValueError, match="curves must name at least one curve"):
        plot.training_curves({}, ax)
    with pytest.raises(ValueError, match=r"curve 'loss' must be \(epochs,\) or \(epochs, seeds\)"):
        plot.training_curves({"loss": np.zeros((2, 2, 2))}, ax)


def test_matplotlib_is_imported_lazily_with_a_clear_error(monkeypatch):
    events = spike_buffers.from_lists([0.001], [0], capacity=1)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    reloaded = importlib.reload(plot)  # importing jaxsnn.plot needs no matplotlib
    with pytest.raises(ImportError, match=r"pip install 'jaxsnn\[plot\]'"):
        reloaded.spike_raster(events)
    monkeypatch.undo()
    importlib.reload(plot)
