"""Every check passes on a correct layer and fails, with a small shrunk counterexample, on a broken one.

Correct layers and mutants live in ``toolkit_toys.py`` (independent of ``jaxsnn.event``). Each
mutation test runs the check under hypothesis, expects the ``AssertionError`` hypothesis
re-raises after shrinking, and asserts that the last (shrunk) failing example is small.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxsnn.event.neuron import LIFParameters
from jaxsnn.spikes import Spikes
from jaxsnn.testing import properties as P
from jaxsnn.testing import strategies as S

# The suite imports test modules with --import-mode=importlib, so make the sibling module importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from toolkit_toys import (  # noqa: E402
    Bug,
    first_of_simultaneous,
    grid_quantised,
    loses_unsorted,
    peeking,
    ratio2_first_spike,
    toy_discrete_lif,
    toy_event_lif,
)

N_IN, SIZE, IN_CAP, OUT_CAP = 3, 3, 6, 12
TAU_SYN = 1.0
T_MAX = 8.0 * TAU_SYN
INPUT_WINDOW = 4.0 * TAU_SYN
SEARCH = 60  # examples a mutation search may use (it stops at the first failure)


@pytest.fixture(autouse=True, scope="module")
def _float64():
    # The toy event layer and the reference are compared in float64 (tolerance: default_rtol,
    # 1e-6 of the largest spike time).
    with jax.enable_x64(True):
        yield


def event_inputs(min_events=1, simultaneous=True):
    # At most 4 events in a 6-slot buffer: every example shares one compiled shape.
    return S.spikes(N_IN, 4, INPUT_WINDOW, capacity=IN_CAP, min_events=min_events,
                    simultaneous=simultaneous, dtype=jnp.float64)


EVENT_WEIGHTS = S.weights((N_IN, SIZE), low=-1.0, high=4.0)
NEURONS = S.lif_parameters("event", tau_syn=TAU_SYN)


def n_events(spikes: Spikes) -> int:
    return int(np.sum(np.asarray(spikes.idx) >= 0))


# A mutation search reports one shrunk failure (not an ExceptionGroup of every distinct one).
def mutation_settings(max_examples):
    return settings(max_examples=max_examples, report_multiple_bugs=False)


def expect_caught(run, shrunk, predicate_small, description):
    """``run()`` must raise AssertionError; the last recorded (shrunk) example must be small."""
    with pytest.raises(AssertionError) as info:
        run()
    assert shrunk, f"{description}: no failing example was recorded"
    assert predicate_small(shrunk[-1]), f"{description}: shrunk counterexample too large: {shrunk[-1]}"
    return str(info.value)


def recorded(store, example, check, *args, **kwargs):
    try:
        check(*args, **kwargs)
    except AssertionError:
        store.append(example)
        raise


# ----------------------------------------------------------------------------- causality
def _causality_search(make_layer, store, max_examples):
    @mutation_settings(max_examples)
    @given(inputs=event_inputs(), w=EVENT_WEIGHTS, neuron=NEURONS, k=st.integers(0, IN_CAP - 2),
           fraction=st.floats(0.05, 0.95))
    def run(inputs, w, neuron, k, fraction):
        # Split between two consecutive input events (where a look-ahead shows), else anywhere.
        times = np.unique(np.asarray(inputs.time)[np.asarray(inputs.idx) >= 0])
        split = times[k] + fraction * (times[k + 1] - times[k]) if k + 1 < times.size else fraction * INPUT_WINDOW
        layer = make_layer(neuron)
        recorded(store, (inputs, split), P.check_causality, layer, {"weight": w}, inputs, split)

    return run


def test_causality_passes_on_correct_layer():
    _causality_search(lambda n: toy_event_lif(SIZE, n, T_MAX, OUT_CAP), [], settings.default.max_examples)()


def test_causality_catches_layer_that_peeks_at_future_inputs():
    store = []
    message = expect_caught(
        _causality_search(lambda n: peeking(toy_event_lif(SIZE, n, T_MAX, OUT_CAP)), store, 4 * SEARCH), store,
        lambda ex: n_events(ex[0]) <= 3, "peeking layer",
    )
    assert "causality" in message


# ----------------------------------------------------------------------------- reference
def _reference_search(bug, store, max_examples, ties=False, neurons=NEURONS):
    @mutation_settings(max_examples)
    @given(inputs=event_inputs(), w=S.weights((N_IN, SIZE), low=-1.0, high=4.0, ties=ties), neuron=neurons)
    def run(inputs, w, neuron):
        layer = toy_event_lif(SIZE, neuron, T_MAX, OUT_CAP, bug=bug)
        recorded(store, (inputs, w, neuron), P.check_matches_reference, layer, {"weight": w}, inputs,
                 P.event_reference(neuron, T_MAX))

    return run


def test_reference_agreement_passes_on_correct_layer():
    _reference_search(Bug(), [], settings.default.max_examples, ties=True)()


def test_reference_catches_dropped_simultaneous_crossing():
    store = []
    message = expect_caught(_reference_search(Bug(drop_simultaneous=True), store, 4 * SEARCH, ties=True), store,
                            lambda ex: n_events(ex[0]) <= 3, "drops simultaneous crossings")
    assert "spikes" in message


def test_reference_catches_ignored_v_leak():
    store = []
    expect_caught(_reference_search(Bug(ignore_leak=True), store, 4 * SEARCH), store,
                  lambda ex: n_events(ex[0]) <= 3 and ex[2].v_leak != 0, "ignores v_leak")


def test_reference_catches_wrong_tau_ratio_dispatch():
    store = []
    expect_caught(_reference_search(Bug(ratio_dispatch=True), store, 8 * SEARCH), store,
                  lambda ex: n_events(ex[0]) <= 3 and ex[2].tau_mem != 2 * ex[2].tau_syn,
                  "wrong closed form")


# ----------------------------------------------------------------------------- unsorted
def _unsorted_search(wrap, store, max_examples):
    @mutation_settings(max_examples)
    @given(inputs=event_inputs(min_events=2, simultaneous=False), w=EVENT_WEIGHTS, neuron=NEURONS)
    def run(inputs, w, neuron):
        layer = wrap(toy_event_lif(SIZE, neuron, T_MAX, OUT_CAP))
        recorded(store, inputs, P.check_unsorted_inputs, layer, {"weight": w}, inputs)

    return run


def test_unsorted_check_passes_on_layer_that_handles_or_rejects_unsorted_input():
    def sorting(layer):  # a correct layer that sorts its input itself
        from jaxsnn import spikes as spikes_lib

        return layer._replace(apply=lambda p, x, external=None, carry=None: layer.apply(p, spikes_lib.sort(x)))

    def rejecting(layer):
        def apply(p, x, external=None, carry=None):
            t = np.asarray(x.time)
            if np.any(t[1:] < t[:-1]):
                raise ValueError("inputs must be sorted by time")
            return layer.apply(p, x)

        return layer._replace(apply=apply)

    _unsorted_search(sorting, [], settings.default.max_examples)()
    _unsorted_search(rejecting, [], settings.default.max_examples)()


def test_unsorted_check_catches_layer_that_silently_loses_events():
    store = []
    expect_caught(_unsorted_search(loses_unsorted, store, SEARCH), store, lambda ex: n_events(ex) <= 3,
                  "loses unsorted events")


# ----------------------------------------------------------------------------- gradients
def distinct_columns(w):
    # The toy's gradients are wrong at exact ties between neurons (see toolkit_toys).
    return len({tuple(column) for column in np.asarray(w).T}) == w.shape[1]


def _gradient_search(scale, store, max_examples):
    @mutation_settings(max_examples)
    @given(inputs=event_inputs(), w=S.weights((N_IN, SIZE), low=0.0, high=4.0).filter(distinct_columns),
           neuron=NEURONS)
    def run(inputs, w, neuron):
        layer = toy_event_lif(SIZE, neuron, T_MAX, OUT_CAP, bug=Bug(gradient_scale_below_rest=scale))
        recorded(store, (inputs, neuron), P.check_gradients, layer, {"weight": w}, inputs, max_coordinates=3)

    return run


def test_gradient_check_passes_on_correct_layer():
    # rtol 1e-4 against float64 central differences (observed errors ~1e-9 relative).
    _gradient_search(1.0, [], settings.default.max_examples)()


def test_gradient_check_catches_gradient_off_by_three_percent_below_rest():
    store = []
    message = expect_caught(_gradient_search(1.03, store, SEARCH // 2), store,
                            lambda ex: n_events(ex[0]) <= 3 and ex[1].v_reset < ex[1].v_leak, "gradient 3% off")
    assert "central differences" in message


def test_gradient_check_skips_perturbations_that_change_the_spike_count():
    neuron = LIFParameters(tau_syn=1.0, tau_mem=2.0)
    layer = toy_event_lif(SIZE, neuron, T_MAX, OUT_CAP)
    # Peak of w (q - q^2) is w/4: w = 4 + 1e-7 barely crosses, so +-1e-6 on row 0 deletes the
    # spike (skipped); rows 1 and 2 carry no input event (gradient 0, comparable).
    weight = jnp.zeros((N_IN, SIZE)).at[0].set(4.0 + 1e-7)
    inputs = Spikes(jnp.array([0.0] + [jnp.inf] * (IN_CAP - 1)), jnp.array([0] + [-1] * (IN_CAP - 1), jnp.int32))
    report = P.check_gradients(layer, {"weight": weight}, inputs, max_coordinates=N_IN * SIZE)
    assert report.skipped == SIZE and report.checked == (N_IN - 1) * SIZE
    with pytest.raises(AssertionError, match="at least 9"):
        P.check_gradients(layer, {"weight": weight}, inputs, max_coordinates=N_IN * SIZE, min_checked=9)


def test_finite_gradients_without_spikes():
    silent = Spikes(jnp.array([0.0, jnp.inf]), jnp.array([0, -1], jnp.int32))
    params = {"weight": jnp.array([[0.5, 1.0]])}  # peak w/4 < 1: nobody fires
    P.check_finite_gradients_without_spikes(ratio2_first_spike(2, 1.0, safe=True), params, silent)
    with pytest.raises(AssertionError, match="non-finite"):
        P.check_finite_gradients_without_spikes(ratio2_first_spike(2, 1.0, safe=False), params, silent)
    with pytest.raises(AssertionError, match="precondition"):
        P.check_finite_gradients_without_spikes(ratio2_first_spike(2, 1.0), {"weight": jnp.array([[5.0, 1.0]])},
                                                silent)


# ----------------------------------------------------------------------------- time shift / order
def _shift_search(wrap, store, max_examples):
    @mutation_settings(max_examples)
    @given(inputs=event_inputs(), w=EVENT_WEIGHTS, neuron=NEURONS, shift=st.floats(0.0, 2.0))
    def run(inputs, w, neuron, shift):
        layer = wrap(toy_event_lif(SIZE, neuron, T_MAX, OUT_CAP))
        recorded(store, inputs, P.check_time_shift, layer, {"weight": w}, inputs, shift, t_max=T_MAX)

    return run


def test_time_shift_passes_on_correct_layer():
    _shift_search(lambda layer: layer, [], settings.default.max_examples)()


def test_time_shift_catches_grid_quantised_layer():
    store = []
    expect_caught(_shift_search(lambda layer: grid_quantised(layer, 0.25), store, SEARCH), store,
                  lambda ex: n_events(ex) <= 3, "grid-quantised layer")


def _order_search(wrap, store, max_examples):
    @mutation_settings(max_examples)
    @given(inputs=event_inputs(min_events=2), w=EVENT_WEIGHTS, neuron=NEURONS, seed=st.integers(0, 3))
    def run(inputs, w, neuron, seed):
        layer = wrap(toy_event_lif(SIZE, neuron, T_MAX, OUT_CAP))
        recorded(store, inputs, P.check_simultaneous_order, layer, {"weight": w}, inputs, seed=seed)

    return run


def test_simultaneous_order_passes_on_correct_layer():
    _order_search(lambda layer: layer, [], settings.default.max_examples)()


def test_simultaneous_order_catches_layer_keeping_only_first_of_ties():
    store = []
    expect_caught(_order_search(first_of_simultaneous, store, SEARCH), store, lambda ex: n_events(ex) <= 3,
                  "first-of-simultaneous layer")


def test_simultaneous_order_dense_permutes_channels_with_weight_rows():
    layer = toy_discrete_lif(2, tau_syn=1.0, tau_mem=2.0, dt=0.1)
    x = np.random.default_rng(0).integers(0, 2, (12, 3)).astype(np.float64)
    _, params = layer.init(jax.random.PRNGKey(0), (12, 3))
    assert P.check_simultaneous_order(layer, params, x) == 3
    with pytest.raises(TypeError, match="permute_params"):
        P.check_simultaneous_order(layer, [params], x)


# ----------------------------------------------------------------------------- discrete checks
DISCRETE = dict(tau_syn=1.0, tau_mem=2.0, dt=0.25, v_th=0.5)
# Dense counterexamples are (T_STEPS, 3) by construction; shrinking drives them to constant
# rows (all zeros or all ones), which is what this accepts as "small".
DENSE_SMALL = lambda x: all(np.all(row == row[0]) for row in np.asarray(x).T)  # noqa: E731
T_STEPS = 12


def _dense_search(make_layer, check, store, max_examples, binary=True, **check_kwargs):
    layer = make_layer()

    @mutation_settings(max_examples)
    @given(x=S.dense_inputs(T_STEPS, 3, binary=binary, low=0.0, high=3.0, dtype=np.float64),
           seed=st.integers(0, 2**16), split=st.integers(1, T_STEPS - 1))
    def run(x, seed, split):
        _, params = layer.init(jax.random.PRNGKey(seed), (T_STEPS, 3))
        params = {"weight": jnp.abs(params["weight"]) * jnp.array([[1.0], [1.0], [-1.0]])}
        takes_split = check in (P.check_chunked_equals_whole, P.check_causality, P.check_time_shift)
        args = (split,) if takes_split else ()
        recorded(store, x, check, layer, params, jnp.asarray(x), *args, **check_kwargs)

    return run


def test_chunked_passes_on_correct_discrete_layer():
    _dense_search(lambda: toy_discrete_lif(2, **DISCRETE), P.check_chunked_equals_whole, [],
                  settings.default.max_examples)()


def test_chunked_catches_layer_that_forgets_synaptic_current_in_carry():
    store = []
    expect_caught(
        _dense_search(lambda: toy_discrete_lif(2, forget_current=True, **DISCRETE), P.check_chunked_equals_whole,
                      store, SEARCH),
        store, DENSE_SMALL, "forgets the current",
    )


def test_discrete_causality_and_shift_pass_on_correct_layer():
    _dense_search(lambda: toy_discrete_lif(2, **DISCRETE), P.check_causality, [], settings.default.max_examples)()
    _dense_search(lambda: toy_discrete_lif(2, **DISCRETE), P.check_time_shift, [], settings.default.max_examples)()


def test_discrete_shift_catches_wrong_initial_state():
    # Starting away from rest: the zero rows prepended by the shift let the state relax first.
    store = []
    expect_caught(_dense_search(lambda: toy_discrete_lif(2, initial_v=0.45, **DISCRETE), P.check_time_shift, store,
                                SEARCH), store, DENSE_SMALL, "wrong initial state")


def test_no_input_no_spike():
    good = toy_discrete_lif(2, **DISCRETE)
    _, params = good.init(jax.random.PRNGKey(0), (T_STEPS, 3))
    P.check_no_input_no_spike(good, params, jnp.ones((T_STEPS, 3)))
    with pytest.raises(AssertionError, match="no input -> no spike"):
        P.check_no_input_no_spike(toy_discrete_lif(2, bias=1.0, **DISCRETE), params, jnp.ones((T_STEPS, 3)))
    event = toy_event_lif(SIZE, LIFParameters(tau_syn=1.0, tau_mem=2.0), T_MAX, OUT_CAP)
    P.check_no_input_no_spike(event, {"weight": jnp.ones((N_IN, SIZE))}, Spikes(jnp.zeros(4), jnp.zeros(4, jnp.int32)))
    with pytest.raises(AssertionError, match="fired"):
        P.check_no_input_no_spike(peeking(event)._replace(apply=lambda p, x, **k: event.apply(
            p, Spikes(x.time.at[0].set(0.0), x.idx.at[0].set(0)))), {"weight": 5 * jnp.ones((N_IN, SIZE))},
            Spikes(jnp.zeros(4), jnp.zeros(4, jnp.int32)))


def test_readout_rest_value():
    layer = toy_discrete_lif(2, **DISCRETE)
    _, params = layer.init(jax.random.PRNGKey(0), (T_STEPS, 3))

    def membrane(p, x, external=None, carry=None):
        state, _, _ = layer.apply(p, x)
        return state, jnp.broadcast_to(state[0], (x.shape[0], 2)), None

    P.check_no_input_no_spike(membrane, params, jnp.ones((T_STEPS, 3)), rest_value=0.0)
    with pytest.raises(AssertionError, match="not 0.25"):
        P.check_no_input_no_spike(membrane, params, jnp.ones((T_STEPS, 3)), rest_value=0.25)


def test_first_spike_monotone():
    good = toy_discrete_lif(2, **DISCRETE)
    _dense_search(lambda: good, P.check_first_spike_monotone, [], settings.default.max_examples)()
    store = []
    expect_caught(_dense_search(lambda: toy_discrete_lif(2, wrap_weights=True, **DISCRETE),
                                P.check_first_spike_monotone, store, SEARCH), store, DENSE_SMALL, "wrapping weights")


def test_first_spike_monotone_event():
    @settings(max_examples=settings.default.max_examples)
    @given(inputs=event_inputs(), w=EVENT_WEIGHTS, neuron=NEURONS)
    def run(inputs, w, neuron):
        P.check_first_spike_monotone(toy_event_lif(SIZE, neuron, T_MAX, OUT_CAP), {"weight": w}, inputs,
                                     n_neurons=SIZE)

    run()


def test_jit_equals_eager():
    x = 2.0 * jnp.ones((T_STEPS, 3))
    good = toy_discrete_lif(2, **DISCRETE)
    _, params = good.init(jax.random.PRNGKey(1), (T_STEPS, 3))
    params = {"weight": jnp.abs(params["weight"])}
    P.check_jit_equals_eager(good, params, x)
    with pytest.raises(AssertionError, match="jit vs eager"):
        P.check_jit_equals_eager(toy_discrete_lif(2, clip_only_eagerly=True, **DISCRETE), params, x)


def test_vmap_equals_loop():
    batch = jnp.asarray(np.random.default_rng(2).integers(0, 2, (3, T_STEPS, 3)), jnp.float64)
    good = toy_discrete_lif(2, **DISCRETE)
    _, params = good.init(jax.random.PRNGKey(1), (T_STEPS, 3))
    P.check_vmap_equals_loop(good, params, batch)
    with pytest.raises(AssertionError, match="vmap vs loop"):
        P.check_vmap_equals_loop(toy_discrete_lif(2, hidden_counter=True, **DISCRETE), params, batch)


def test_event_vmap_and_jit():
    layer = toy_event_lif(SIZE, LIFParameters(tau_syn=1.0, tau_mem=1.5, v_leak=0.1), T_MAX, OUT_CAP)
    rng = np.random.default_rng(3)
    times = np.sort(rng.uniform(0, 3, (2, IN_CAP)), axis=1)
    batch = Spikes(jnp.asarray(times), jnp.asarray(rng.integers(0, N_IN, (2, IN_CAP)), jnp.int32))
    params = {"weight": jnp.asarray(rng.uniform(0, 3, (N_IN, SIZE)))}
    P.check_vmap_equals_loop(layer, params, batch)
    P.check_jit_equals_eager(layer, params, Spikes(batch.time[0], batch.idx[0]))


def test_messages_name_the_neuron_and_both_values():
    a = Spikes(np.array([0.1, 0.2, np.inf]), np.array([0, 1, -1]))
    b = Spikes(np.array([0.1, 0.3, np.inf]), np.array([0, 1, -1]))
    with pytest.raises(AssertionError, match=r"spike 0 of neuron 1 is at 0\.2.*but 0\.3"):
        P._assert_events_close(a, b, "ctx", None, None)
    c = Spikes(np.array([0.1, np.inf, np.inf]), np.array([0, -1, -1]))
    with pytest.raises(AssertionError, match="neuron 1 spikes 1 time"):
        P._assert_events_close(a, c, "ctx", None, None)


def test_bad_arguments_of_checks():
    layer = toy_discrete_lif(2, **DISCRETE)
    _, params = layer.init(jax.random.PRNGKey(0), (T_STEPS, 3))
    x = jnp.zeros((T_STEPS, 3))
    with pytest.raises(ValueError, match="split"):
        P.check_chunked_equals_whole(layer, params, x, 0)
    with pytest.raises(ValueError, match="factor"):
        P.check_first_spike_monotone(layer, params, x, factor=1.0)
    with pytest.raises(TypeError, match="event layers"):
        P.check_unsorted_inputs(layer, params, x)
    with pytest.raises(TypeError, match="layer"):
        P.check_jit_equals_eager(3, params, x)
