"""The parallel (all-intervals-at-once) algorithm for single-spike feed-forward layers.

It must agree with the event-by-event scan (itself checked against the float64 reference in
``test_simulate.py``) and with the reference directly: same spikes, same final state, same
overflow flag, same gradients.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxsnn
from jaxsnn.event import LIFParameters, LIFState, simulate
from jaxsnn.event.simulate import resolve_algorithm
from jaxsnn.testing import strategies
from jaxsnn.testing.reference import simulate_event

N_IN, SIZE, SLOTS = 4, 6, 10
TAU_SYN = 5e-3
T_MAX = 6 * TAU_SYN
RATIOS = [(1.0, "lambertw"), (2.0, "quadratic"), (1.5, "root")]


@functools.partial(jax.jit, static_argnames=("kernel", "capacity", "algorithm"))
def run(weight, spikes, neuron, initial_state=None, *, kernel, capacity, algorithm):
    return simulate(weight, spikes, neuron, capacity=capacity, t_max=T_MAX, kernel=kernel,
                    initial_state=initial_state, algorithm=algorithm)


def _single_spike(neuron: LIFParameters) -> LIFParameters:
    return neuron._replace(t_ref=np.asarray(T_MAX + float(neuron.t_ref), np.float64))


@pytest.mark.parametrize("ratio,kernel", RATIOS)
@given(data=st.data())
@settings(max_examples=6)
def test_parallel_equals_scan_and_reference(ratio, kernel, data):
    """Spike times equal the scan's to 1e-12 tau_syn and the float64 reference's to 1e-11 tau_syn.

    Final states agree to 1e-12 (relative) when the buffer holds every spike (after an overflow
    the scan stops early, so its final state is not the window end's), overflow flags exactly;
    capacities below and above the number of spikes are both drawn.

    Weights are drawn without exact ties: tied integer weights can make a membrane touch the
    threshold exactly at its maximum (e.g. ``I0 = 4`` with ``tau_mem = 2 tau_syn``). Such a
    tangential crossing is ill-conditioned (a rounding error ``eps`` in the membrane moves it by
    ``~sqrt(eps)`` in time, or removes it), so two exact algorithms that round differently may
    disagree about it; simultaneous crossings are covered in ``test_simulate.py``.
    """
    with jax.enable_x64(True):
        neuron = _single_spike(data.draw(strategies.lif_parameters("event", tau_ratio=ratio, tau_syn=TAU_SYN)))
        weight = np.asarray(data.draw(strategies.weights((N_IN, SIZE), low=-1.0, high=6.0)))
        spikes = data.draw(strategies.spikes(N_IN, SLOTS, 0.8 * T_MAX, dtype=np.float64))
        capacity = data.draw(st.sampled_from([2, SIZE, 2 * SIZE]))
        scan = run(jnp.asarray(weight), spikes, neuron, kernel=kernel, capacity=capacity, algorithm="scan")
        par = run(jnp.asarray(weight), spikes, neuron, kernel=kernel, capacity=capacity, algorithm="parallel")
        assert bool(scan.overflow) == bool(par.overflow)
        np.testing.assert_array_equal(np.asarray(par.spikes.idx), np.asarray(scan.spikes.idx))
        np.testing.assert_allclose(np.asarray(par.spikes.time), np.asarray(scan.spikes.time),
                                   rtol=0, atol=1e-12 * TAU_SYN)
        if not bool(par.overflow):
            for field in LIFState._fields:
                np.testing.assert_allclose(np.asarray(getattr(par.final_state, field)),
                                           np.asarray(getattr(scan.final_state, field)), rtol=1e-12, atol=1e-15)
        want_t, want_i = simulate_event(
            weight, np.asarray(spikes.time), np.asarray(spikes.idx),
            LIFParameters(*[float(v) for v in neuron]), T_MAX,
        )
        n = min(len(want_t), capacity)
        assert bool(par.overflow) == (len(want_t) > capacity)
        got_t = np.asarray(par.spikes.time[:n])
        got_i = np.asarray(par.spikes.idx[:n])
        assert int(par.spikes.count()) == n
        for neuron_index in range(SIZE):
            np.testing.assert_allclose(got_t[got_i == neuron_index], want_t[:n][want_i[:n] == neuron_index],
                                       rtol=0, atol=1e-11 * TAU_SYN)


def test_parallel_streams_from_an_initial_state(x64):
    """A non-rest initial state (charged, partly refractory) is honoured like the scan does."""
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, t_ref=2 * T_MAX)
    rng = np.random.default_rng(3)
    weight = jnp.asarray(rng.uniform(0.0, 3.0, (N_IN, SIZE)))
    spikes = jaxsnn.Spikes(jnp.asarray([1e-3, 4e-3, 9e-3, jnp.inf]), jnp.asarray([0, 2, 1, -1], jnp.int32))
    state = LIFState(v=jnp.linspace(-0.5, 0.9, SIZE), current=jnp.linspace(0.0, 2.0, SIZE),
                     refractory_until=jnp.asarray([-jnp.inf, 5e-3, -jnp.inf, 2e-2, -jnp.inf, 1e-3]))
    results = [run(weight, spikes, neuron, state, kernel="quadratic", capacity=SIZE, algorithm=a)
               for a in ("scan", "parallel")]
    assert int(results[0].spikes.count()) >= 2  # the case exercises spikes
    np.testing.assert_array_equal(np.asarray(results[0].spikes.idx), np.asarray(results[1].spikes.idx))
    np.testing.assert_allclose(np.asarray(results[0].spikes.time), np.asarray(results[1].spikes.time), atol=1e-15)
    for a, b in zip(results[0].final_state, results[1].final_state):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("gradient", [pytest.param("analytic", marks=pytest.mark.extended), "eventprop"])
def test_parallel_gradients_equal_scan_gradients(x64, gradient):
    """Through two stacked layers: gradients w.r.t. both weight matrices agree to 1e-10 (relative)."""
    from jaxsnn.event.eventprop import simulate_eventprop

    rng = np.random.default_rng(0)
    inputs = jaxsnn.Spikes(jnp.asarray(np.sort(rng.uniform(0, 0.015, (8, 5)))),
                           jnp.asarray(rng.integers(0, 5, (8, 5)), jnp.int32))
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, t_ref=T_MAX)
    params = (jnp.asarray(rng.normal(2.0, 1.0, (5, 20))), jnp.asarray(rng.normal(0.8, 0.5, (20, 3))))
    sim = simulate if gradient == "analytic" else simulate_eventprop

    def loss(params, algorithm):
        def one(spikes):
            hidden = sim(params[0], spikes, neuron, capacity=20, t_max=T_MAX, algorithm=algorithm).spikes
            out = sim(params[1], hidden, neuron, capacity=3, t_max=T_MAX, algorithm=algorithm).spikes
            return hidden, out

        hidden, out = jax.vmap(one)(inputs)
        hidden_first = jnp.where(hidden.idx >= 0, hidden.time, T_MAX)
        out_first = jnp.where(out.idx >= 0, out.time, T_MAX)
        return jnp.sum(hidden_first ** 2) + jnp.sum(out_first), (hidden.count(), out.count())

    grads = {}
    for algorithm in ("scan", "parallel"):
        (_, counts), grads[algorithm] = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)(
            params, algorithm)
        assert int(jnp.sum(counts[0])) > 40 and int(jnp.sum(counts[1])) > 5  # spikes in both layers
    for layer in range(2):
        a, b = grads["parallel"][layer], grads["scan"][layer]
        assert float(jnp.max(jnp.abs(b))) > 0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12 * float(jnp.max(jnp.abs(b))))


def test_auto_picks_parallel_only_where_exact():
    single = LIFParameters(t_ref=T_MAX)
    multi = LIFParameters(t_ref=0.5 * T_MAX)
    assert resolve_algorithm("auto", single, T_MAX, recurrent=False) == "parallel"
    assert resolve_algorithm("auto", single, T_MAX, recurrent=True) == "scan"
    assert resolve_algorithm("auto", multi, T_MAX, recurrent=False) == "feedforward"
    assert resolve_algorithm("scan", single, T_MAX, recurrent=False) == "scan"


@pytest.mark.parametrize("neuron,recurrent,match", [
    (LIFParameters(t_ref=0.5 * T_MAX), False, "at most once: t_ref >= t_max"),
    (LIFParameters(t_ref=T_MAX), True, "does not support recurrent weights"),
])
def test_parallel_where_not_exact_raises(neuron, recurrent, match):
    weight = jnp.ones((2, 3))
    spikes = jaxsnn.Spikes(jnp.asarray([1e-3]), jnp.asarray([0], jnp.int32))
    with pytest.raises(ValueError, match=match):
        simulate(weight, spikes, neuron, capacity=3, t_max=T_MAX, algorithm="parallel",
                 recurrent_weight=jnp.zeros((3, 3)) if recurrent else None)


def test_unknown_algorithm_raises():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        simulate(jnp.ones((2, 3)), jaxsnn.Spikes(jnp.asarray([1e-3]), jnp.asarray([0], jnp.int32)),
                 LIFParameters(), capacity=3, t_max=T_MAX, algorithm="fast")
