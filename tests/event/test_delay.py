"""Axonal delays for event layers: exact shifts, sorted buffers, streaming, exact (EventProp) gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, example, given, settings

import jaxsnn
from jaxsnn import Spikes
from jaxsnn.event import LIF, Delay, LIFParameters
from jaxsnn.testing import properties, strategies
from jaxsnn.testing.reference import simulate_event

N_IN, SIZE, SLOTS = 3, 3, 6
T_MAX = 0.03
NEURON = LIFParameters(tau_syn=5e-3, tau_mem=1e-2)
EVENT_KW = dict(tau_syn=5e-3, tau_mem=1e-2, t_max=T_MAX)

NET = jaxsnn.serial(Delay(), LIF(SIZE, capacity=12, **EVENT_KW))
NET_APPLY = jax.jit(NET.apply)


def shifted(spikes, delay):
    t, i = np.asarray(spikes.time, np.float64), np.asarray(spikes.idx)
    keep = i >= 0
    return t[keep] + np.broadcast_to(np.asarray(delay, np.float64), (N_IN,))[i[keep]], i[keep]


@settings(max_examples=10)
@given(spikes=strategies.spikes(N_IN, SLOTS, T_MAX * 0.6, capacity=SLOTS, dtype=np.float64),
       delay=strategies.weights((N_IN,), low=0.0, high=0.01),
       weight=strategies.weights((N_IN, SIZE), low=-0.5, high=3.0))
@example(spikes=Spikes(np.array([0.001, 0.002, 0.002, 0.006, np.inf, np.inf]), np.array([0, 1, 2, 0, -1, -1], np.int32)),
         delay=np.array([0.004, 0.0, 0.001]), weight=np.full((N_IN, SIZE), 2.0))
def test_delayed_spikes_are_shifted_sorted_and_drive_the_next_layer_exactly(spikes, delay, weight):
    with jax.enable_x64(True):
        params = [{"delay": jnp.asarray(delay)}, {"weight": jnp.asarray(weight)}]
        _, out, recording = NET_APPLY(params, spikes)
        delayed = recording[0].spikes
        jaxsnn.spikes.validate(delayed, n_neurons=N_IN)  # sorted, padded, in range
        want_t, want_i = shifted(spikes, delay)
        order = np.lexsort((want_i, want_t))
        n = int(delayed.count())
        assert n == len(want_t)
        np.testing.assert_array_equal(np.asarray(delayed.idx[:n]), want_i[order])
        np.testing.assert_allclose(np.asarray(delayed.time[:n]), want_t[order], rtol=0, atol=1e-15)
        ref_t, ref_i = simulate_event(weight, want_t, want_i, NEURON, T_MAX)
        assume(len(ref_t) > 0 and len(ref_t) <= 12)
        m = int(out.count())
        assert m == len(ref_t)
        np.testing.assert_array_equal(np.asarray(out.idx[:m]), ref_i)
        np.testing.assert_allclose(np.asarray(out.time[:m]), ref_t, rtol=0, atol=1e-12 * T_MAX)


def _known_case():
    spikes = jaxsnn.spikes.from_lists([0.001, 0.002, 0.0035, 0.006], [0, 1, 2, 0], capacity=SLOTS,
                                      n_neurons=N_IN, dtype=np.float64)
    delay = np.array([0.004, 0.0005, 0.002])
    weight = np.array([[2.0, 0.8, 1.4], [1.5, 2.2, -0.3], [0.7, 1.9, 2.4]])
    return spikes, delay, weight


def _objective(out):
    valid = out.idx >= 0
    return jnp.sum(jnp.where(valid, jnp.where(valid, out.time, 0.0) / (1.0 + out.idx), 0.0))


@pytest.mark.parametrize("per", ["neuron", "layer"])
def test_delay_gradient_matches_float64_finite_differences_of_the_reference(per):
    """EventProp gives d loss / d t_in; the delay gradient is its sum over each neuron's spikes."""
    with jax.enable_x64(True):
        spikes, delay, weight = _known_case()
        if per == "layer":
            delay = np.asarray(0.002)
        net = jaxsnn.serial(Delay(per=per), LIF(SIZE, capacity=12, **EVENT_KW))
        params = [{"delay": jnp.asarray(delay)}, {"weight": jnp.asarray(weight)}]
        grad_delay = jax.jit(jax.grad(lambda p: _objective(net.apply(p, spikes)[1])))(params)[0]["delay"]
        # The same from the input-time gradient of the LIF layer alone (EventProp's dL/dt_in).
        delayed = jax.jit(net.apply)(params, spikes)[2][0].spikes
        lif = LIF(SIZE, capacity=12, **EVENT_KW)
        grad_times = jax.jit(jax.grad(lambda t: _objective(lif.apply(params[1], Spikes(t, delayed.idx))[1])))(
            delayed.time)
        per_neuron = np.zeros(N_IN)
        np.add.at(per_neuron, np.asarray(delayed.idx)[np.asarray(delayed.idx) >= 0],
                  np.asarray(grad_times)[np.asarray(delayed.idx) >= 0])
        np.testing.assert_allclose(grad_delay, per_neuron if per == "neuron" else per_neuron.sum(), rtol=1e-12)

    def reference(d):
        t, i = shifted(spikes, d)
        out_t, out_i = simulate_event(weight, t, i, NEURON, T_MAX)
        return float(np.sum(out_t / (1.0 + out_i))), tuple(out_i)

    value, structure = reference(delay)
    assert len(structure) >= 3
    h = 1e-8
    flat = np.atleast_1d(np.asarray(delay, np.float64))
    for j in range(flat.size):
        plus, minus = flat.copy(), flat.copy()
        plus[j] += h
        minus[j] -= h
        (f_plus, s_plus), (f_minus, s_minus) = reference(plus.reshape(np.shape(delay))), reference(minus.reshape(np.shape(delay)))
        assert s_plus == s_minus == structure
        fd = (f_plus - f_minus) / (2 * h)
        got = float(np.atleast_1d(np.asarray(grad_delay))[j])
        assert abs(got - fd) <= 1e-7 + 1e-5 * abs(fd), (j, got, fd)
        assert abs(fd) > 1e-3  # every delay moves an output spike


def test_streaming_delays_chunked_equal_whole_and_clipping():
    with jax.enable_x64(True):
        spikes, delay, weight = _known_case()
        params = [{"delay": jnp.asarray(delay)}, {"weight": jnp.asarray(weight)}]

        def net(t_max):
            return jaxsnn.serial(Delay(t_max=t_max, max_delay=0.01),
                                 LIF(SIZE, capacity=12, tau_syn=5e-3, tau_mem=1e-2, t_max=t_max))

        split = 0.0045  # spikes of neuron 0 (sent at 1 ms) and 2 (3.5 ms) arrive after the split
        whole = jax.jit(net(T_MAX).apply)
        first = jax.jit(net(split).apply)
        carry, out, recording = whole(params, spikes)
        assert int(out.count()) > 0 and not bool(recording[0].overflow)
        properties.check_chunked_equals_whole(first, params, spikes, split,
                                              second_layer=jax.jit(net(T_MAX - split).apply), whole_layer=whole)
        first_carry, _, first_rec = first(params, Spikes(jnp.where(spikes.time <= split, spikes.time, jnp.inf),
                                                         jnp.where(spikes.time <= split, spikes.idx, -1)))
        assert int(first_carry[0].count()) == 2  # two spikes still travelling at the split
        # Delays are clipped to [0, max_delay]: out-of-range values act as the bound, with zero gradient.
        clipped = [{"delay": jnp.asarray([-0.003, 0.05, 0.002])}, params[1]]
        bounded = [{"delay": jnp.asarray([0.0, 0.01, 0.002])}, params[1]]
        np.testing.assert_array_equal(whole(clipped, spikes)[1].time, whole(bounded, spikes)[1].time)
        grad = jax.jit(jax.grad(lambda p: _objective(whole(p, spikes)[1])))(clipped)[0]["delay"]
        assert float(grad[0]) == 0.0 and float(grad[1]) == 0.0 and float(grad[2]) != 0.0


def test_delay_jit_vmap_and_errors():
    spikes, delay, _ = _known_case()
    layer = Delay(initial_delay=0.001)
    _, params = layer.init(jax.random.PRNGKey(0), (N_IN,))
    np.testing.assert_allclose(params["delay"], [0.001] * N_IN)
    properties.check_jit_equals_eager(layer, params, spikes)
    batch = Spikes(jnp.stack([spikes.time, spikes.time + 0.001]), jnp.stack([spikes.idx, spikes.idx]))
    properties.check_vmap_equals_loop(layer, params, batch)
    _, p_layer = Delay(per="layer", delay_init=lambda k, s, d: jnp.full(s, 0.002, d)).init(jax.random.PRNGKey(0), (N_IN,))
    assert p_layer["delay"].shape == ()
    with pytest.raises(ValueError, match=r"Delay: per must be one of \('neuron', 'layer'\)"):
        Delay(per="synapse")
    with pytest.raises(ValueError, match=r"initial_delay must be finite and >= 0"):
        Delay(initial_delay=-1.0)
    with pytest.raises(ValueError, match=r"capacity and pending_capacity apply to streaming only"):
        Delay(capacity=4)
    with pytest.raises(ValueError, match=r"Delay\(per=neuron\) takes Spikes of shape \(n_inputs,\)"):
        layer.init(jax.random.PRNGKey(0), (4, 3))
    with pytest.raises(ValueError, match=r"Delay\(per=neuron\) input spikes"):
        layer.apply({"delay": jnp.zeros(2)}, spikes)  # index 2 is out of range for 2 delays
    with pytest.raises(ValueError, match=r"without t_max the layer keeps no carry"):
        layer.apply(params, spikes, carry=spikes)
    with pytest.raises(ValueError, match=r"takes no external data"):
        layer.apply(params, spikes, external=spikes)
    with pytest.raises(ValueError, match=r"params\['delay'\] must be a scalar"):
        Delay(per="layer").apply({"delay": jnp.zeros(3)}, spikes)
