"""The toolkit's checks applied to the project's own layers (jaxsnn.discrete and jaxsnn.event).

Every layer is compared with the float64 reference and put through the generic properties.
Neuron parameters are fixed per layer (module level) so each layer compiles once; hypothesis
draws inputs and weights. Layers are wrapped in ``jax.jit`` except where eager behaviour is
the point (jit vs eager, eager validation of unsorted input). Checks that may compare nothing
in a single example (a silent layer, inputs without ties) run with ``min_compared=0``; their
counts are summed over the examples and each total must be positive, and an explicit example
exercises every check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from jaxsnn import discrete, event
from jaxsnn.event.neuron import LIFParameters
from jaxsnn.spikes import Spikes
from jaxsnn.testing import properties as P
from jaxsnn.testing import strategies as S
from jaxsnn.types import Layer


@pytest.fixture(autouse=True, scope="module")
def _float64():
    # Exactness is asserted in float64: spike times within default_rtol (1e-6) of the window.
    with jax.enable_x64(True):
        yield


def jitted(layer):
    run = jax.jit(lambda params, inputs, carry: layer.apply(params, inputs, carry=carry))
    return Layer(layer.init, lambda params, inputs, external=None, carry=None: run(params, inputs, carry))


# ----------------------------------------------------------------------------- discrete
T, N_IN, SIZE = 16, 3, 3
DISCRETE_CONFIGS = {
    "subtract_leak": dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3, v_th=1.0, v_reset=-0.2, v_leak=0.1, reset="subtract"),
    "hard_equal_taus": dict(tau_syn=5e-3, tau_mem=5e-3, dt=1e-3, v_th=0.8, v_reset=0.3, v_leak=-0.1, reset="hard"),
}


def _discrete_layers(name):
    kwargs = DISCRETE_CONFIGS[name]
    return {
        "LIF": jitted(discrete.LIF(SIZE, **kwargs, dtype=jnp.float64)),
        "RecurrentLIF": jitted(discrete.RecurrentLIF(SIZE, **kwargs, dtype=jnp.float64)),
        "LI": jitted(discrete.LI(SIZE, **{k: kwargs[k] for k in ("tau_syn", "tau_mem", "dt", "v_leak")},
                                 dtype=jnp.float64)),
    }


DISCRETE_LAYERS = {name: _discrete_layers(name) for name in DISCRETE_CONFIGS}
DENSE = S.dense_inputs(T, N_IN, dtype=np.float64)
DISCRETE_WEIGHTS = S.weights((N_IN, SIZE), low=-2.0, high=8.0)


def _discrete_reference(kind, name):
    kwargs = DISCRETE_CONFIGS[name]
    if kind == "LI":
        li = {k: kwargs[k] for k in ("tau_syn", "tau_mem", "dt", "v_leak")}
        return P.discrete_reference(output="v", readout=True, **li)
    recurrent = "recurrent_weight" if kind == "RecurrentLIF" else None
    return P.discrete_reference(output="spikes", recurrent_key=recurrent, **kwargs)


def _discrete_params(kind, w, rng_seed=0):
    params = {"weight": jnp.asarray(w)}
    if kind == "RecurrentLIF":
        params["recurrent_weight"] = jnp.asarray(np.random.default_rng(rng_seed).normal(0, 1.0, (SIZE, SIZE)))
    return params


@pytest.mark.parametrize("name", sorted(DISCRETE_CONFIGS))
@pytest.mark.parametrize("kind", ["LIF", "RecurrentLIF", "LI"])
def test_discrete_layers_match_reference_and_chunking(kind, name):
    layer = DISCRETE_LAYERS[name][kind]

    @given(x=DENSE, w=DISCRETE_WEIGHTS, split=st.integers(1, T - 1))
    def run(x, w, split):
        params = _discrete_params(kind, w)
        # Spikes are compared exactly (0/1); LI membranes within rtol 1e-6 of their largest value.
        P.check_matches_reference(layer, params, x, _discrete_reference(kind, name))
        P.check_chunked_equals_whole(layer, params, x, split)
        P.check_causality(layer, params, x, split)
        P.check_time_shift(layer, params, x, split)

    run()


@pytest.mark.parametrize("name", sorted(DISCRETE_CONFIGS))
def test_discrete_lif_structural_properties(name):
    layer = DISCRETE_LAYERS[name]["LIF"]

    monotone = []

    @given(x=DENSE, w=DISCRETE_WEIGHTS)
    @example(x=np.ones((T, N_IN)), w=np.full((N_IN, SIZE), 2.0))
    def run(x, w):
        params = {"weight": jnp.asarray(w)}
        monotone.append(P.check_first_spike_monotone(layer, params, x, min_compared=0))
        P.check_simultaneous_order(layer, params, x)
        P.check_no_input_no_spike(layer, params, x)

    run()
    P.require_compared(sum(monotone), 1, "first-spike monotonicity over all examples: neurons")
    x = np.random.default_rng(1).integers(0, 2, (4, T, N_IN)).astype(np.float64)
    params = {"weight": jnp.asarray(np.random.default_rng(2).uniform(-1, 6, (N_IN, SIZE)))}
    P.check_vmap_equals_loop(layer, params, jnp.asarray(x))
    P.check_jit_equals_eager(discrete.LIF(SIZE, **DISCRETE_CONFIGS[name], dtype=jnp.float64), params, x[0])


def test_discrete_li_rest_and_exact_gradients():
    kwargs = DISCRETE_CONFIGS["subtract_leak"]
    layer = DISCRETE_LAYERS["subtract_leak"]["LI"]
    params = {"weight": jnp.asarray(np.random.default_rng(3).normal(0, 1, (N_IN, SIZE)))}
    x = np.random.default_rng(4).integers(0, 2, (T, N_IN)).astype(np.float64)
    P.check_no_input_no_spike(layer, params, x, rest_value=kwargs["v_leak"])
    # The LI readout is linear in its weights: its gradient must equal central differences (rtol 1e-4).
    report = P.check_gradients(layer, params, x, min_compared=5)
    assert report.skipped == 0


# ----------------------------------------------------------------------------- event
T_MAX = 8.0
IN_CAP, OUT_CAP = 6, 24
EVENT_CONFIGS = {
    # ratio 2 (quadratic kernel), leak, reset below rest, refractory; analytic gradients
    "quadratic": (LIFParameters(tau_syn=1.0, tau_mem=2.0, v_th=1.0, v_reset=-0.2, v_leak=0.1, t_ref=0.1), "analytic"),
    # arbitrary ratio (root solver), reset above rest; EventProp gradients
    "root": (LIFParameters(tau_syn=1.0, tau_mem=1.5, v_th=1.0, v_reset=0.3, v_leak=0.0, t_ref=0.0), "eventprop"),
    # ratio 1 (Lambert W)
    "lambertw": (LIFParameters(tau_syn=1.0, tau_mem=1.0, v_th=1.0, v_reset=0.0, v_leak=-0.1, t_ref=0.0), "analytic"),
}
EVENT_INPUTS = S.spikes(N_IN, IN_CAP, 4.0, capacity=IN_CAP, min_events=1, dtype=jnp.float64)
EVENT_WEIGHTS = S.weights((N_IN, SIZE), low=-1.0, high=4.0, ties=True)


def _event_layer(name, t_max=T_MAX, recurrent=False):
    neuron, gradient = EVENT_CONFIGS[name]
    factory = event.RecurrentLIF if recurrent else event.LIF
    return factory(SIZE, **neuron._asdict(), capacity=OUT_CAP, t_max=t_max, gradient=gradient)


EVENT_LAYERS = {name: jitted(_event_layer(name)) for name in EVENT_CONFIGS}


def _events(*events):
    time = np.full(IN_CAP, np.inf)
    idx = np.full(IN_CAP, -1, np.int32)
    for k, (t, i) in enumerate(events):
        time[k], idx[k] = t, i
    return Spikes(time, idx)


# Two inputs at t=0 (a tie to permute) and one at t=1.5; every neuron spikes before t=2.
EXERCISES_ALL = dict(inputs=_events((0.0, 0), (0.0, 1), (1.5, 2)),
                     w=np.array([[2.0, 2.5, 3.0], [1.0, 1.5, 2.0], [0.5, 1.0, 1.5]]), split=2.0, shift=0.5, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EVENT_CONFIGS))
def test_event_lif_matches_reference_and_properties(name):
    layer = EVENT_LAYERS[name]
    neuron, _ = EVENT_CONFIGS[name]
    totals = {"reference": 0, "causality": 0, "time shift": 0, "simultaneous order": 0, "first-spike monotonicity": 0}

    @given(inputs=EVENT_INPUTS, w=EVENT_WEIGHTS, split=st.floats(0.0, 4.0), shift=st.floats(0.0, 2.0),
           seed=st.integers(0, 3))
    @example(**EXERCISES_ALL)
    def run(inputs, w, split, shift, seed):
        params = {"weight": jnp.asarray(w)}
        # 1e-7 of the window (8e-7 tau_syn): inside the 1e-6 tau_syn float64 requirement.
        compared = P.check_matches_reference(layer, params, inputs, P.event_reference(neuron, T_MAX), rtol=1e-7,
                                             min_compared=0)
        assume(compared > 0)  # a silent example exercises none of the checks below
        totals["reference"] += compared
        totals["causality"] += P.check_causality(layer, params, inputs, split, min_compared=0)
        totals["time shift"] += P.check_time_shift(layer, params, inputs, shift, t_max=T_MAX, min_compared=0)
        totals["simultaneous order"] += P.check_simultaneous_order(layer, params, inputs, seed=seed, min_compared=0)
        totals["first-spike monotonicity"] += P.check_first_spike_monotone(layer, params, inputs, n_neurons=SIZE,
                                                                          min_compared=0)
        P.check_no_input_no_spike(layer, params, inputs)

    run()
    for check, total in totals.items():
        P.require_compared(total, 1, f"{check} over all examples")


def untied(w):
    """Add 0, 0.25, 0.5 to the columns: every input event then drives the neurons differently,
    so no two neurons cross the threshold at the same instant (see the tie tests below)."""
    return np.asarray(w) + 0.25 * np.arange(SIZE)


TIE = _events((0.0, 0), (0.0, 1))  # with equal columns, all neurons cross at the same instant
TIED = np.full((N_IN, SIZE), 2.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quadratic", "root"])
def test_event_lif_gradients_match_finite_differences(name):
    layer = EVENT_LAYERS[name]
    # Equal columns: the three neurons spike at the same instant. Each neuron's spike time
    # still depends only on its own column, so the gradient is well defined and central
    # differences (which move one neuron at a time) are valid, for EventProp ("root") and the
    # analytic gradient ("quadratic") alike (see also the next test).
    examples = [dict(inputs=TIE, w=untied(TIED)), dict(inputs=TIE, w=TIED)]

    @settings(max_examples=max(2, settings.default.max_examples // 3))
    @given(inputs=EVENT_INPUTS, w=S.weights((N_IN, SIZE), low=0.5, high=4.0).map(untied))
    def run(inputs, w):
        report = P.check_gradients(layer, {"weight": jnp.asarray(w)}, inputs, max_coordinates=4)
        assume(report.nonzero > 0)

    for kwargs in examples:
        run = example(**kwargs)(run)
    run()
    silent = Spikes(jnp.array([0.5, jnp.inf]), jnp.array([0, -1], jnp.int32))
    P.check_finite_gradients_without_spikes(layer, {"weight": jnp.full((N_IN, SIZE), 0.1)}, silent)


@pytest.mark.slow
def test_event_lif_analytic_gradients_at_simultaneous_crossings():
    # Every neuron crosses at the same instant; each spike time has its own derivative (the
    # simulation once handed all of them the average through the minimum over neurons).
    layer = EVENT_LAYERS["quadratic"]
    out = layer.apply({"weight": jnp.asarray(TIED)}, TIE)[1]
    assert np.unique(np.asarray(out.time)[np.asarray(out.idx) >= 0]).size == 1 and int(out.count()) == SIZE
    report = P.check_gradients(layer, {"weight": jnp.asarray(TIED)}, TIE, max_coordinates=N_IN * SIZE)
    assert report.nonzero == 2 * SIZE  # rows of inputs 0 and 1


@pytest.mark.slow
def test_event_lif_chunked_vmap_jit_and_unsorted():
    name, split = "quadratic", 3.0
    first, second = jitted(_event_layer(name, t_max=split)), jitted(_event_layer(name, t_max=T_MAX - split))
    rng = np.random.default_rng(5)
    params = {"weight": jnp.asarray(rng.uniform(0.0, 3.0, (N_IN, SIZE)))}
    times = np.sort(rng.uniform(0, 6, (3, IN_CAP)), axis=1)
    batch = Spikes(jnp.asarray(times), jnp.asarray(rng.integers(0, N_IN, (3, IN_CAP)), jnp.int32))
    sample = Spikes(batch.time[0], batch.idx[0])
    P.check_chunked_equals_whole(first, params, sample, split, second_layer=second, whole_layer=EVENT_LAYERS[name])
    P.check_vmap_equals_loop(EVENT_LAYERS[name], params, batch)
    eager = _event_layer(name)
    P.check_jit_equals_eager(eager, params, sample)
    assert P.check_unsorted_inputs(eager, params, sample) is True  # rejected eagerly


@pytest.mark.slow
def test_event_recurrent_lif_matches_reference():
    neuron, _ = EVENT_CONFIGS["lambertw"]
    layer = jitted(_event_layer("lambertw", recurrent=True))

    @given(inputs=EVENT_INPUTS, w=EVENT_WEIGHTS, w_rec=S.weights((SIZE, SIZE), low=-1.0, high=1.0))
    @example(inputs=EXERCISES_ALL["inputs"], w=EXERCISES_ALL["w"], w_rec=np.full((SIZE, SIZE), 0.5) - np.eye(SIZE))
    def run(inputs, w, w_rec):
        params = {"weight": jnp.asarray(w), "recurrent_weight": jnp.asarray(w_rec)}
        compared = P.check_matches_reference(
            layer, params, inputs, P.event_reference(neuron, T_MAX, recurrent_key="recurrent_weight"), rtol=1e-7,
            min_compared=0)
        assume(compared > 0)

    run()
