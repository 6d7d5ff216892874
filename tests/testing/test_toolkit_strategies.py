"""The strategies produce valid values, cover what they promise, and shrink toward simple ones."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import find, given, settings

import jaxsnn.testing
from jaxsnn import spikes as spikes_lib
from jaxsnn.event.neuron import LIFParameters, validate_parameters
from jaxsnn.testing import strategies as S


def draw_one(strategy):
    """One value of ``strategy`` (a deterministic draw through ``given``)."""
    values = []

    @settings(max_examples=1, database=None, derandomize=True)
    @given(strategy)
    def grab(value):
        values.append(value)

    grab()
    return values[-1]


@given(S.spikes(4, 7, 2.0))
def test_spikes_are_valid_buffers(buffer):
    spikes_lib.validate(buffer, n_neurons=4)
    assert buffer.capacity == 7


@given(S.spikes(3, 6, 1.0, simultaneous=False, min_events=2, capacity=9))
def test_spikes_without_ties_have_distinct_times(buffer):
    spikes_lib.validate(buffer, n_neurons=3)
    time = np.asarray(buffer.time)[np.asarray(buffer.idx) >= 0]
    assert time.size >= 2 and np.unique(time).size == time.size and buffer.capacity == 9
    assert np.all(time <= 1.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spikes_without_ties_keep_events_drawn_at_the_window_end(dtype):
    # Events drawn at (or just below) t_max are spread downward, not pushed out of the window.
    from jaxsnn.testing.strategies import _spread_apart

    for drawn in ([1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [0.5, 1.0 - 2.0**-20, 1.0, 1.0]):
        times = _spread_apart(np.asarray(drawn, dtype), 1.0)
        assert times.dtype == dtype and times.size == len(drawn)
        assert np.all(np.diff(times) > 0) and times[0] >= 0 and times[-1] <= 1.0, times


def test_spikes_do_not_depend_on_jax_enable_x64():
    # Float64 times keep float64 precision with x64 off (the fields are NumPy arrays); the
    # default dtype is float32 whatever the setting.
    with jax.enable_x64(False):
        precise = find(S.spikes(3, 4, 1.0, dtype=np.float64),
                       lambda s: any(t != np.float32(t) for t in np.asarray(s.time)[np.asarray(s.idx) >= 0]))
        assert isinstance(precise.time, np.ndarray) and precise.time.dtype == np.float64
        assert draw_one(S.spikes(3, 4, 1.0)).time.dtype == np.float32
        assert draw_one(S.invalid_spikes(dtype=np.float64)).spikes.time.dtype == np.float64
    with jax.enable_x64(True):
        assert draw_one(S.spikes(3, 4, 1.0)).time.dtype == np.float32
        network = draw_one(S.networks("discrete", max_layers=1))
        assert all(leaf.dtype == np.float32 for leaf in jax.tree_util.tree_leaves(network.params))


def test_spikes_shrink_to_one_early_event_and_can_tie():
    smallest = find(S.spikes(3, 6, 1.0), lambda s: int(s.count()) >= 1)
    assert int(smallest.count()) == 1 and float(smallest.time[0]) == 0.0 and int(smallest.idx[0]) == 0
    tied = find(S.spikes(3, 6, 1.0), lambda s: int(s.count()) >= 2 and float(s.time[0]) == float(s.time[1])
                and float(s.time[0]) > 0)
    assert int(tied.count()) == 2


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_inputs=0, max_events=2, t_max=1.0), "n_inputs"),
    (dict(n_inputs=2, max_events=2, t_max=0.0), "t_max"),
    (dict(n_inputs=2, max_events=3, t_max=1.0, capacity=2), "capacity"),
    (dict(n_inputs=2, max_events=1, t_max=1.0, min_events=2), "min_events"),
])
def test_spikes_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        draw_one(S.spikes(**kwargs))


@given(S.lif_parameters("event"))
def test_event_parameters_are_valid(params):
    assert isinstance(params, LIFParameters)
    validate_parameters(params)
    assert params.t_ref >= 0


@given(S.lif_parameters("discrete"))
def test_discrete_parameters_are_valid(kwargs):
    assert kwargs["v_th"] > kwargs["v_reset"] and kwargs["v_th"] > kwargs["v_leak"]
    assert 0 < kwargs["dt"] <= min(kwargs["tau_syn"], kwargs["tau_mem"]) / 2
    assert kwargs["reset"] in ("subtract", "hard")


def test_parameters_cover_analytic_ratios_leak_resets_and_refractory():
    ratio = lambda p: p.tau_mem / p.tau_syn  # noqa: E731
    find(S.lif_parameters("event"), lambda p: ratio(p) == 1.0)
    find(S.lif_parameters("event"), lambda p: ratio(p) == 2.0)
    find(S.lif_parameters("event"), lambda p: ratio(p) not in (1.0, 2.0))
    find(S.lif_parameters("event"), lambda p: p.v_reset < p.v_leak != 0)
    find(S.lif_parameters("event"), lambda p: p.v_reset > p.v_leak)
    find(S.lif_parameters("event"), lambda p: p.t_ref > 0)
    simplest = find(S.lif_parameters("event"), lambda p: True)
    assert simplest == LIFParameters(tau_syn=5e-3, tau_mem=5e-3, v_th=1.0, v_reset=0.0, v_leak=0.0, t_ref=0.0)


@given(S.lif_parameters("event", tau_ratio=2.0), S.lif_parameters("discrete", tau_ratio=(0.5, 0.7)))
def test_tau_ratio_argument(fixed, ranged):
    assert fixed.tau_mem == 2.0 * fixed.tau_syn
    assert 0.5 <= ranged["tau_mem"] / ranged["tau_syn"] <= 0.7 + 1e-12


def test_lif_parameters_rejects_unknown_kind_and_ratio():
    with pytest.raises(ValueError, match="kind"):
        draw_one(S.lif_parameters("analog"))
    with pytest.raises(ValueError, match="tau_ratio"):
        draw_one(S.lif_parameters("event", tau_ratio=-1.0))


@given(S.weights((3, 4), low=-0.5, high=2.0, ties=True))
def test_weights_shape_range(w):
    assert w.shape == (3, 4) and w.dtype == np.float64 and np.all((w >= -0.5) & (w <= 2.0))


def test_weights_ties_and_shrinking():
    tied = find(S.weights((2, 3), ties=True), lambda w: np.any(w != 0) and any(
        np.array_equal(w[:, a], w[:, b]) and np.any(w[:, a] != 0) for a in range(3) for b in range(a + 1, 3)))
    assert tied.shape == (2, 3)
    assert np.all(find(S.weights((2, 2)), lambda w: True) == 0)


@given(S.dense_inputs(5, 3), S.dense_inputs(4, 2, binary=False, low=-2.0, high=0.5))
def test_dense_inputs(binary, real):
    assert binary.shape == (5, 3) and set(np.unique(binary)) <= {0.0, 1.0}
    assert real.shape == (4, 2) and np.all((real >= -2.0) & (real <= 0.5))


@settings(max_examples=5)
@given(S.networks("discrete", n_inputs=2, T=6, max_layers=3, max_size=3))
def test_discrete_networks_run(network):
    assert network.description.startswith("serial(")
    _, outputs, recording = network.layer.apply(network.params, jnp.ones(network.input_shape))
    assert outputs.shape == network.output_shape
    assert len(recording) == len(network.params)


def test_networks_include_nested_serials():
    descriptions = []

    @settings(max_examples=40)
    @given(S.networks("discrete", max_layers=3, max_size=2))
    def collect(network):
        descriptions.append(network.description)

    collect()
    assert any(d.count("serial(") >= 2 for d in descriptions), descriptions


# What spikes.validate says about each defect.
INVALID_SPIKES_MESSAGES = {
    "unsorted": "is not sorted by ascending time",
    "negative": "has negative times",
    "nan": "contains NaN times",
    "inf": r"has a real event \(idx >= 0\) with a non-finite time",
    "index_too_large": r"has indices >= n_neurons \(3\)",
    "index_below_padding": r"has indices below -1",
    "padding_time": r"has padding \(idx -1\) whose time is not \+inf",
}


@given(S.invalid_spikes(n_inputs=3))
def test_invalid_spikes_are_rejected_naming_the_problem(bad):
    with pytest.raises(ValueError, match=INVALID_SPIKES_MESSAGES[bad.problem]):
        spikes_lib.validate(bad.spikes, n_neurons=3)
    assert bad.argument == ("idx" if bad.problem.startswith("index") else "time")


@pytest.mark.parametrize("problem", sorted(INVALID_SPIKES_MESSAGES))
def test_invalid_spikes_cover_every_problem(problem):
    bad = draw_one(S.invalid_spikes(problems=(problem,)))
    assert bad.problem == problem
    with pytest.raises(ValueError, match=INVALID_SPIKES_MESSAGES[problem]):
        spikes_lib.validate(bad.spikes, n_neurons=3)


@given(S.invalid_lif_parameters())
def test_invalid_event_parameters_are_rejected(bad):
    with pytest.raises(ValueError, match=bad.argument):
        validate_parameters(bad.params)


@given(S.invalid_discrete_parameters())
def test_invalid_discrete_parameters_name_the_argument(bad):
    from jaxsnn import discrete
    from jaxsnn.testing import reference

    # Every defect (v_reset >= v_th included) is rejected, naming the argument, by the discrete
    # reference and by the discrete layer alike.
    with pytest.raises(ValueError, match=bad.argument):
        reference.simulate_discrete(np.ones((1, 1)), np.zeros((2, 1)), **bad.params)
    with pytest.raises(ValueError, match=bad.argument):
        discrete.LIF(2, **bad.params)


@pytest.mark.parametrize("argument", ["tau_syn", "tau_mem", "dt", "v_reset", "reset"])
def test_invalid_discrete_parameters_cover_every_defect(argument):
    find(S.invalid_discrete_parameters(), lambda bad: bad.argument == argument)


def test_profiles_are_registered_and_selected_by_environment(monkeypatch):
    ci = settings.get_profile("ci")
    thorough = settings.get_profile("thorough")
    assert ci.derandomize and ci.deadline is None and ci.max_examples < thorough.max_examples
    current = settings.default
    original = os.environ.get(jaxsnn.testing.PROFILE_ENV_VAR, "ci")
    try:
        monkeypatch.setenv(jaxsnn.testing.PROFILE_ENV_VAR, "thorough")
        assert jaxsnn.testing.load_profile_from_env() == "thorough"
        assert settings.default.max_examples == thorough.max_examples
        monkeypatch.setenv(jaxsnn.testing.PROFILE_ENV_VAR, "nonsense")
        with pytest.raises(ValueError, match="JAXSNN_HYPOTHESIS_PROFILE"):
            jaxsnn.testing.load_profile_from_env()
    finally:
        settings.load_profile(original)
    assert settings.default.max_examples == current.max_examples


@settings(max_examples=3)
@given(S.networks("event", n_inputs=2, max_layers=2, max_size=3))
def test_event_networks_build(network):
    # Construction and init only: running event layers eagerly compiles them (slow).
    assert network.kind == "event" and network.input_shape == (2,)
    assert len(network.params) == network.description.count("LIF(")
    assert all("weight" in p for p in network.params)
