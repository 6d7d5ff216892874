"""Hypothesis properties of the discrete layers, checked against the float64 reference.

Spikes must equal the reference's exactly and membranes agree to rtol 1e-9; the drawn cases
make every neuron spike (``_spiking_cases``), so no comparison is vacuous.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jaxsnn.discrete import LI, LIF, LIFState, RecurrentLIF, decay_factors
from jaxsnn.testing import properties, strategies
from jaxsnn.testing.reference import simulate_discrete

T = 16


def _layer_kwargs(params):
    keys = ("tau_syn", "tau_mem", "dt", "v_th", "v_reset", "v_leak", "reset", "input_scale")
    return {k: params[k] for k in keys if k in params}


@st.composite
def _neurons(draw):
    """Discrete LIF parameters, a third of them single-state (``tau_syn = 0``, with the default
    input scale ``1 - a_mem`` or the common ``v_t = beta v_{t-1} + x_t W`` form)."""
    params = dict(draw(strategies.lif_parameters("discrete")))
    if draw(st.integers(0, 2)) == 0:
        params["tau_syn"] = 0.0
        params["input_scale"] = draw(st.sampled_from([None, 1.0]))
    return params


@st.composite
def _spiking_cases(draw, n_in, size, recurrent=False):
    """A neuron, weights, inputs (and recurrent weights) under which every neuron spikes.

    Weights are drawn in units of ``(v_th - v_leak) / g`` (the drive that moves the membrane
    from rest to threshold in one step), so every drawn neuron sees comparable drive. An extra
    input pulses once at step 0 with a weight of 2.6 to 4 units, more than the other inputs
    (at most ``n_in`` times -0.5 units) can cancel: every neuron spikes at step 0, then the
    random inputs take over.
    """
    neuron = draw(_neurons())
    a_syn, a_mem = decay_factors(neuron["tau_syn"], neuron["tau_mem"], neuron["dt"])
    gain = 1.0 - a_mem if neuron.get("input_scale") is None else neuron["input_scale"]
    unit = (neuron["v_th"] - neuron["v_leak"]) / gain
    # The synaptic filter accumulates a steady input about 1 / (1 - a_syn) times: scale the
    # ongoing weights down by that, or most neurons would fire at every step.
    ongoing = unit * (1.0 - a_syn)
    assert n_in * 0.5 < 2.6 - 1.0
    weight = draw(strategies.weights((n_in, size), low=-0.5, high=1.5)) * ongoing
    onset = draw(strategies.weights((1, size), low=2.6, high=4.0)) * unit
    weight = np.concatenate([weight, onset])
    pulse = np.zeros((T, 1))
    pulse[0] = 1.0
    inputs = np.concatenate([draw(strategies.dense_inputs(T, n_in, dtype=np.float64)), pulse], 1)
    rec = None
    if recurrent:
        rec = draw(strategies.weights((size, size), low=-2.0, high=2.0)) * ongoing
    return neuron, weight, inputs, rec


def _assert_matches(got_spikes, got_v, record):
    """Spikes identical, post-reset membranes to float64 round-off (rtol 1e-9)."""
    want_spikes, want_v = record["spikes"], record["v"]
    assert want_spikes.sum() > 0  # the comparison is not vacuous (true by construction)
    np.testing.assert_array_equal(np.asarray(got_spikes), want_spikes)
    scale = max(1.0, float(np.max(np.abs(want_v))))
    np.testing.assert_allclose(np.asarray(got_v), want_v, rtol=1e-9, atol=1e-9 * scale)


_SINGLE_STATE = dict(
    tau_syn=0.0, tau_mem=3.0, dt=1.0, v_th=1.0, v_reset=0.0, v_leak=0.0, reset="subtract",
    input_scale=1.0,
)


@example(case=(_SINGLE_STATE, np.array([[0.5, -0.4], [3.0, 3.0]]), np.eye(T, 2)[:, ::-1], None))
@given(case=_spiking_cases(3, 4))
def test_lif_matches_reference(case):
    neuron, weight, inputs, _ = case
    with jax.enable_x64(True):
        layer = LIF(weight.shape[1], **_layer_kwargs(neuron), record_membrane=True)
        state, spikes, rec = layer.apply({"weight": jnp.asarray(weight)}, jnp.asarray(inputs))
        record = simulate_discrete(weight, inputs, **_layer_kwargs(neuron))
        _assert_matches(spikes, rec.v, record)
        np.testing.assert_allclose(np.asarray(state.v), record["v"][-1], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(
            np.asarray(state.current), record["current"][-1], rtol=1e-9, atol=1e-9
        )


@given(case=_spiking_cases(2, 3, recurrent=True))
def test_recurrent_lif_and_li_match_reference(case):
    neuron, weight, inputs, recurrent = case
    kwargs = _layer_kwargs(neuron)
    with jax.enable_x64(True):
        x = jnp.asarray(inputs)
        params = {"weight": jnp.asarray(weight), "recurrent_weight": jnp.asarray(recurrent)}
        state, spikes, rec = RecurrentLIF(3, **kwargs, record_membrane=True).apply(params, x)
        record = simulate_discrete(weight, inputs, **kwargs, recurrent_weight=recurrent)
        _assert_matches(spikes, rec.v, record)
        np.testing.assert_array_equal(np.asarray(state.spikes), record["spikes"][-1])

        li_kwargs = {
            k: kwargs[k]
            for k in ("tau_syn", "tau_mem", "dt", "v_leak", "input_scale")
            if k in kwargs
        }
        _, v, _ = LI(3, **li_kwargs).apply({"weight": jnp.asarray(weight)}, x)
        want = simulate_discrete(weight, inputs, **li_kwargs, readout=True)["v"]
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(np.asarray(v), want, rtol=1e-12, atol=1e-12 * scale)


@settings(max_examples=5)
@given(
    params=_neurons(), v0=st.floats(-2.0, 0.99), i0=st.floats(-2.0, 2.0)
)
def test_no_input_no_spikes_and_decay_to_rest(params, v0, i0):
    kwargs = _layer_kwargs(params)
    layer = LIF(2, **kwargs, record_membrane=True)
    _, weight = layer.init(jax.random.PRNGKey(0), (T, 3))
    properties.check_no_input_no_spike(layer, weight, jnp.zeros((T, 3)))
    # Started below threshold without current, the membrane relaxes monotonically to v_leak.
    v_leak, v_th = kwargs["v_leak"], kwargs["v_th"]
    start = v_leak + v0 * (v_th - v_leak)
    state = LIFState(jnp.full(2, start, jnp.float32), jnp.zeros(2, jnp.float32))
    _, spikes, rec = layer.apply(weight, jnp.zeros((T, 3)), carry=state)
    assert float(jnp.sum(spikes)) == 0
    distance = np.abs(np.asarray(rec.v, np.float64) - v_leak)
    assert np.all(np.diff(distance, axis=0) <= 1e-6 * (1 + abs(start)))
    # With any initial current the state still returns to rest after many time constants.
    long = 40 * int(round(max(kwargs["tau_syn"], kwargs["tau_mem"]) / kwargs["dt"]))
    state = LIFState(jnp.full(2, start, jnp.float32), jnp.full(2, i0, jnp.float32))
    final, _, _ = layer.apply(weight, jnp.zeros((long, 3)), carry=state)
    np.testing.assert_allclose(np.asarray(final.v), v_leak, atol=1e-5)
    np.testing.assert_allclose(np.asarray(final.current), 0.0, atol=1e-5)


@given(
    params=_neurons(),
    weight=strategies.weights((3, 1), low=0.0, high=3.0),
    factor=st.floats(1.0, 4.0),
    inputs=strategies.dense_inputs(24, 3, dtype=np.float64),
)
def test_larger_positive_weights_never_reduce_spike_count(params, weight, factor, inputs):
    with jax.enable_x64(True):
        layer = LIF(1, **_layer_kwargs(params))
        x = jnp.asarray(inputs)
        weaker = layer.apply({"weight": jnp.asarray(weight)}, x)[1]
        stronger = layer.apply({"weight": jnp.asarray(weight * factor)}, x)[1]
        assert float(jnp.sum(stronger)) >= float(jnp.sum(weaker)), (
            float(jnp.sum(stronger)),
            float(jnp.sum(weaker)),
        )


@given(
    params=_neurons(),
    weight=strategies.weights((3, 4)),
    inputs=strategies.dense_inputs(T, 3),
    shift=st.integers(0, T - 1),  # a shift of T leaves nothing to compare
)
def test_time_shift_shifts_output(params, weight, inputs, shift):
    layer = LIF(4, **_layer_kwargs(params))
    properties.check_time_shift(
        layer, {"weight": jnp.asarray(weight, jnp.float32)}, jnp.asarray(inputs), shift
    )


@settings(max_examples=3)
@given(
    network=strategies.networks("discrete", T=T),
    inputs=strategies.dense_inputs(T, 3),
    split=st.integers(1, T - 1),
)
def test_random_networks_chunk_and_vmap(network, inputs, split):
    x = jnp.asarray(inputs)
    properties.check_chunked_equals_whole(network.layer, network.params, x, split)
    properties.check_vmap_equals_loop(network.layer, network.params, jnp.stack([x, 1.0 - x]))
