"""Hypothesis properties of the discrete layers, checked against the float64 reference."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxsnn.discrete import LI, LIF, LIFState, RecurrentLIF
from jaxsnn.testing import properties, strategies

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


@given(
    params=_neurons(),
    weight=strategies.weights((3, 4), low=-1.0, high=3.0),
    inputs=strategies.dense_inputs(T, 3, dtype=np.float64),
)
def test_lif_matches_reference(params, weight, inputs):
    with jax.enable_x64(True):
        layer = LIF(4, **_layer_kwargs(params))
        reference = properties.discrete_reference(**_layer_kwargs(params))
        # Spikes are 0/1: identical to the reference; membranes to float64 round-off (rtol 1e-9).
        properties.check_matches_reference(
            layer, {"weight": jnp.asarray(weight)}, jnp.asarray(inputs), reference, rtol=0, atol=0
        )


@given(
    params=_neurons(),
    weight=strategies.weights((2, 3)),
    recurrent=strategies.weights((3, 3), low=-2.0, high=2.0),
    inputs=strategies.dense_inputs(T, 2, dtype=np.float64),
)
def test_recurrent_lif_and_li_match_reference(params, weight, recurrent, inputs):
    with jax.enable_x64(True):
        kwargs = _layer_kwargs(params)
        rec_layer = RecurrentLIF(3, **kwargs)
        properties.check_matches_reference(
            rec_layer,
            {"weight": jnp.asarray(weight), "recurrent_weight": jnp.asarray(recurrent)},
            jnp.asarray(inputs),
            properties.discrete_reference(recurrent_key="recurrent_weight", **kwargs),
            rtol=0,
            atol=0,
        )
        li_kwargs = {
            k: kwargs[k] for k in ("tau_syn", "tau_mem", "dt", "v_leak", "input_scale") if k in kwargs
        }
        properties.check_matches_reference(
            LI(3, **li_kwargs),
            {"weight": jnp.asarray(weight)},
            jnp.asarray(inputs),
            properties.discrete_reference(output="v", readout=True, **li_kwargs),
            rtol=1e-12,
            atol=1e-12,
        )


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
    shift=st.integers(0, T),
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
