"""Event graphs with delays on the edges of a cycle: float64 reference, serial, gradients, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import jaxsnn
from jaxsnn import Spikes, serial
from jaxsnn.event import LIFParameters
from jaxsnn.graph import GraphCarry, event_graph, population
from jaxsnn.testing import properties, strategies
from jaxsnn.testing.reference_graph import simulate_event_graph

T_MAX = 0.03
TAU_SYN = 5e-3
T_REF = 2e-3  # bounds the spikes per neuron, also for drawn runaway weights
NEURON = LIFParameters(tau_syn=TAU_SYN, tau_mem=1e-2, t_ref=T_REF)
N_IN, N1, N2 = 3, 4, 3
CAPACITY = 24
# Spike times against the float64 reference.
ATOL = 1e-10 * TAU_SYN
D12, D21, D22 = 1.5e-3, 2.5e-3, 0.7e-3


def populations(t_max=T_MAX, capacity=CAPACITY, **extra):
    kw = dict(tau_syn=TAU_SYN, tau_mem=1e-2, t_ref=T_REF, t_max=t_max, gradient="analytic", **extra)
    return {"h1": population(N1, capacity=capacity, **kw), "h2": population(N2, capacity=capacity, **kw)}


def fixed_edges(d12=D12, d21=D21, d22=D22):
    # input -> h1 -> h2 (delayed), feedback h2 -> h1 (delayed), h2 -> h2 (delayed self-feedback)
    return [("input", "h1"), ("h1", "h2", d12), ("h2", "h1", d21), ("h2", "h2", d22)]


def fixed_graph(t_max=T_MAX, capacity=CAPACITY, **extra):
    return event_graph(populations(t_max, capacity, **extra), fixed_edges(), output="h2", input_size=N_IN)


# The feedback delay h2 -> h1 is learnable: a Delay node on the cycle.
LEARNABLE_EDGES = [("input", "h1"), ("h1", "h2", D12), ("h2", "d"), ("d", "h1"), ("h2", "h2", D22)]


def learnable_graph(t_max=T_MAX):
    nodes = {**populations(t_max), "d": jaxsnn.event.Delay(per="layer")}
    return event_graph(nodes, LEARNABLE_EDGES, output="h2", input_size=N_IN)


FIXED = fixed_graph()
FIXED_APPLY = jax.jit(FIXED.apply)
LEARNABLE = learnable_graph()
LEARNABLE_APPLY = jax.jit(LEARNABLE.apply)


def reference(w1, w2, spikes, edges, t_max=T_MAX):
    nodes = {"h1": {"weight": np.asarray(w1, np.float64), "neuron": NEURON},
             "h2": {"weight": np.asarray(w2, np.float64), "neuron": NEURON}}
    return simulate_event_graph(nodes, edges, np.asarray(spikes.time), np.asarray(spikes.idx),
                                input_size=N_IN, t_max=t_max)


def known_case():
    w1 = np.full((N_IN + N2, N1), 1.5) * np.linspace(0.8, 1.2, N1)
    w1[N_IN:] = 0.5 * np.array([1.0, 0.6, 0.3])[:, None]  # excitatory feedback from h2
    w2 = np.full((N1 + N2, N2), 2.0) * np.linspace(0.7, 1.3, N2)
    w2[N1:] = 0.1
    spikes = jaxsnn.spikes.from_lists([0.001, 0.004, 0.004, 0.009], [0, 1, 2, 0], capacity=6, n_neurons=N_IN,
                                      dtype=np.float64)
    return w1, w2, spikes


def trains(spikes):
    n = int(spikes.count())
    return np.asarray(spikes.time[:n], np.float64), np.asarray(spikes.idx[:n])


def assert_matches(recording, want, names=("h1", "h2")):
    worst = 0.0
    for k, name in enumerate(names):
        assert not bool(recording[k].overflow)
        got_t, got_i = trains(recording[k].spikes)
        want_t, want_i = want[name]
        assert len(got_t) == len(want_t), (name, got_t, want_t)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_t, want_t, rtol=0, atol=ATOL)
        if len(got_t):
            worst = max(worst, float(np.max(np.abs(got_t - want_t))))
    return worst


def params_of(w1, w2, delay=None):
    params = [{"weight": jnp.asarray(w1)}, {"weight": jnp.asarray(w2)}]
    if delay is not None:
        params.append({"delay": jnp.asarray(delay)})
    return params


KNOWN_W1, KNOWN_W2, _ = known_case()


# Every delay learnable: Delay nodes on all three delayed connections (one compiled graph for
# all drawn delays); the edge into "a" adds a fixed 0.1 ms to the learnable one.
ALL_LEARNABLE_EDGES = [("input", "h1"), ("h1", "a", 1e-4), ("a", "h2"), ("h2", "b"), ("b", "h1"), ("h2", "c"), ("c", "h2")]
ALL_LEARNABLE = event_graph({**populations(), **{n: jaxsnn.event.Delay(per="layer") for n in "abc"}},
                            ALL_LEARNABLE_EDGES, output="h2", input_size=N_IN)
ALL_LEARNABLE_APPLY = jax.jit(ALL_LEARNABLE.apply)


@settings(deadline=None)
@given(
    spikes=strategies.spikes(N_IN, 6, T_MAX * 0.8, capacity=6, dtype=np.float64),
    w1=strategies.weights((N_IN + N2, N1), low=-0.5, high=2.5),
    w2=strategies.weights((N1 + N2, N2), low=-0.5, high=2.5),
    delays=st.tuples(*[st.floats(0.2e-3, 8e-3) for _ in range(3)]),
)
@example(spikes=known_case()[2], w1=KNOWN_W1, w2=KNOWN_W2, delays=(D12, D21, D22))
def test_delayed_feedback_matches_float64_reference(spikes, w1, w2, delays):
    d12, d21, d22 = delays
    with jax.enable_x64(True):
        params = params_of(w1, w2) + [{"delay": jnp.asarray(d)} for d in delays]
        _, _, recording = ALL_LEARNABLE_APPLY(params, spikes)
        want = reference(w1, w2, spikes, fixed_edges(d12 + 1e-4, d21, d22))
        assume(len(want["h1"][0]) > 0 and len(want["h2"][0]) > 0)
        assume(all(len(want[n][0]) <= CAPACITY for n in ("h1", "h2")))
        assert_matches(recording, want)


def test_known_case_delays_act_and_a_delay_node_equals_the_fixed_edge():
    w1, w2, spikes = known_case()
    with jax.enable_x64(True):
        _, _, recording = FIXED_APPLY(params_of(w1, w2), spikes)
        want = reference(w1, w2, spikes, fixed_edges())
        worst = assert_matches(recording, want)
        assert worst <= ATOL
        counts = [int(r.spikes.count()) for r in recording]
        assert counts[0] >= 4 and counts[1] >= 4, counts
        # The feedback delay changes when h1 fires again (so arrivals are really delayed) ...
        longer = fixed_edges(d21=D21 + 1e-3)
        other = event_graph(populations(), longer, output="h2", input_size=N_IN)
        _, _, moved = jax.jit(other.apply)(params_of(w1, w2), spikes)
        assert_matches(moved, reference(w1, w2, spikes, longer))
        assert not np.array_equal(trains(moved[0].spikes)[0], trains(recording[0].spikes)[0])
        # ... and the feedback acts at all.
        muted = w1.copy()
        muted[N_IN:] = 0.0
        _, _, silent = FIXED_APPLY(params_of(muted, w2), spikes)
        assert len(trains(silent[0].spikes)[0]) < counts[0]
        # A learnable Delay node on the cycle with the same value equals the fixed edge delay.
        _, out, learned = LEARNABLE_APPLY(params_of(w1, w2, D21), spikes)
        for k in range(2):
            np.testing.assert_array_equal(learned[k].spikes.idx, recording[k].spikes.idx)
            np.testing.assert_allclose(learned[k].spikes.time, recording[k].spikes.time, rtol=0, atol=1e-15)
        # The Delay node's own output is h2's spikes shifted by its delay.
        h2_t, h2_i = trains(recording[1].spikes)
        d_t, d_i = trains(learned[2].spikes)
        np.testing.assert_allclose(d_t, h2_t + D21, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(d_i, h2_i)


def test_zero_delay_equals_instant_feedback_and_zero_feedback_equals_serial_with_delay():
    w1, w2, spikes = known_case()
    with jax.enable_x64(True):
        # A Delay node with delay 0 on the cycle: the same spikes as the undelayed cycle (which
        # runs through jaxsnn.event.simulate with block recurrent weights).
        instant = event_graph(populations(), [("input", "h1"), ("h1", "h2"), ("h2", "h1"), ("h2", "h2")],
                              output="h2", input_size=N_IN)
        zero_edges = [("input", "h1"), ("h1", "h2"), ("h2", "d"), ("d", "h1"), ("h2", "h2")]
        zero = event_graph({**populations(), "d": jaxsnn.event.Delay(per="layer")}, zero_edges, output="h2",
                           input_size=N_IN)
        _, _, want = jax.jit(instant.apply)(params_of(w1, w2), spikes)
        _, _, got = jax.jit(zero.apply)(params_of(w1, w2, 0.0), spikes)
        assert int(want[0].spikes.count()) > 0
        for k in range(2):
            np.testing.assert_array_equal(got[k].spikes.idx, want[k].spikes.idx)
            np.testing.assert_allclose(got[k].spikes.time, want[k].spikes.time, rtol=0, atol=1e-15)
        # No feedback (zero feedback and self blocks): the delayed cycle equals the same layers
        # in serial with a Delay layer between them.
        w1_ff, w2_ff = w1.copy(), w2.copy()
        w1_ff[N_IN:] = 0.0
        w2_ff[N1:] = 0.0
        _, _, cycle = FIXED_APPLY(params_of(w1_ff, w2_ff), spikes)
        kw = dict(tau_syn=TAU_SYN, tau_mem=1e-2, t_ref=T_REF, t_max=T_MAX, capacity=CAPACITY)
        chain = serial(jaxsnn.event.LIF(N1, **kw), jaxsnn.event.Delay(per="layer"), jaxsnn.event.LIF(N2, **kw))
        chain_params = [{"weight": jnp.asarray(w1[:N_IN])}, {"delay": jnp.asarray(D12)}, {"weight": jnp.asarray(w2[:N1])}]
        _, _, chained = jax.jit(chain.apply)(chain_params, spikes)
        for k, j in ((0, 0), (1, 2)):
            got_t, got_i = trains(cycle[k].spikes)
            want_t, want_i = trains(chained[j].spikes)
            assert len(got_t) > 0
            np.testing.assert_array_equal(got_i, want_i)
            np.testing.assert_allclose(got_t, want_t, rtol=0, atol=1e-15)


def objective(recording):
    """A smooth function of every spike time of both populations (padding contributes 0)."""
    total = 0.0
    for k in range(2):
        s = recording[k].spikes
        valid = s.idx >= 0
        total = total + jnp.sum(jnp.where(valid, jnp.where(valid, s.time, 0.0) / (1.0 + k + s.idx), 0.0))
    return total


def test_delay_and_weight_gradients_match_float64_finite_differences_of_the_reference():
    w1, w2, spikes = known_case()
    with jax.enable_x64(True):
        params = params_of(w1, w2, D21)
        value, grads = jax.jit(jax.value_and_grad(lambda p: objective(LEARNABLE.apply(p, spikes)[2])))(params)

    def reference_objective(w1_, w2_, delay):
        edges = fixed_edges(d21=delay)
        want = reference(w1_, w2_, spikes, edges)
        total, structure = 0.0, []
        for k, name in enumerate(("h1", "h2")):
            t, i = want[name]
            total += float(np.sum(t / (1.0 + k + i)))
            structure.append(tuple(np.sort(i)))
        return total, tuple(structure)

    value0, structure0 = reference_objective(w1, w2, D21)
    assert abs(float(value) - value0) < 1e-13
    h = 1e-8
    f_plus, s_plus = reference_objective(w1, w2, D21 + h)
    f_minus, s_minus = reference_objective(w1, w2, D21 - h)
    assert s_plus == s_minus == structure0
    fd_delay = (f_plus - f_minus) / (2 * h)
    got_delay = float(grads[2]["delay"])
    assert abs(fd_delay) > 1e-3  # the delay matters for this objective
    assert abs(got_delay - fd_delay) <= 1e-6 * abs(fd_delay), (got_delay, fd_delay)
    # Weights, including the delayed feedback block (rows N_IN: of w1) and the self block of h2.
    rng = np.random.default_rng(0)
    checked = 0
    indices = [(0, (N_IN + j, int(rng.integers(0, N1)))) for j in range(N2)]
    indices += [(0, (int(rng.integers(0, N_IN)), int(rng.integers(0, N1)))) for _ in range(2)]
    indices += [(1, (N1 + j, int(rng.integers(0, N2)))) for j in range(N2)]
    indices += [(1, (int(rng.integers(0, N1)), int(rng.integers(0, N2)))) for _ in range(2)]
    for which, index in indices:
        h = 1e-7
        base = [w1.copy(), w2.copy()]
        plus, minus = [b.copy() for b in base], [b.copy() for b in base]
        plus[which][index] += h
        minus[which][index] -= h
        f_plus, s_plus = reference_objective(*plus, D21)
        f_minus, s_minus = reference_objective(*minus, D21)
        if s_plus != structure0 or s_minus != structure0:
            continue
        fd = (f_plus - f_minus) / (2 * h)
        got = float(grads[which]["weight"][index])
        assert abs(got - fd) <= 1e-9 + 1e-5 * abs(fd), (which, index, got, fd)
        checked += 1
    assert checked >= 8
    assert float(jnp.abs(grads[0]["weight"][N_IN:]).max()) > 0
    assert float(jnp.abs(grads[1]["weight"][N1:]).max()) > 0


def test_delayed_cycle_vmap_chunked_causality():
    w1, w2, spikes = known_case()
    with jax.enable_x64(True):
        params = params_of(w1, w2, D21)
        # Split at 11.5 ms: both populations spike on both sides, spikes of both sent before the
        # split arrive after it (so the carried spikes in transit are needed), and h2's spike at
        # 10.5 ms has arrived through its 0.7 ms self edge but not yet through the 2.5 ms one.
        split = 0.0115
        first, second = learnable_graph(split), learnable_graph(T_MAX - split)
        carry, _, first_recording = jax.jit(first.apply)(params, spikes)
        for k in range(2):
            assert isinstance(carry[k], GraphCarry) and int(carry[k].history.count()) > 0
        properties.check_chunked_equals_whole(jax.jit(first.apply), params, spikes, split,
                                              second_layer=jax.jit(second.apply), whole_layer=LEARNABLE_APPLY,
                                              rtol=1e-11, atol=1e-15)
        # Without the spikes in transit the continuation differs: the carry is really used.
        stripped = [GraphCarry(c.state, jaxsnn.spikes.empty(CAPACITY, jnp.float64)) for c in carry[:2]] + [None]
        late = jaxsnn.spikes.from_lists([], [], capacity=6, n_neurons=N_IN, dtype=np.float64)
        _, _, with_history = jax.jit(second.apply)(params, late, carry=carry)
        _, _, without = jax.jit(second.apply)(params, late, carry=stripped)
        assert not np.array_equal(np.asarray(with_history[0].spikes.time), np.asarray(without[0].spikes.time))
        # Later input spikes do not change earlier output spikes.
        extra = jaxsnn.spikes.from_lists([0.02, 0.021], [1, 2], capacity=2, n_neurons=N_IN, dtype=np.float64)
        assert properties.check_causality(LEARNABLE_APPLY, params, spikes, 0.0195, replacement=extra) >= 2
        batch = Spikes(jnp.stack([spikes.time, spikes.time + 0.001]), jnp.stack([spikes.idx, spikes.idx]))
        properties.check_vmap_equals_loop(LEARNABLE_APPLY, params, batch)
        # Batched gradients (vmap of grad) equal per-sample ones.
        grad = jax.grad(lambda p, x: objective(LEARNABLE.apply(p, x)[2]))
        batched = jax.jit(jax.vmap(grad, in_axes=(None, 0)))(params, batch)
        single = grad(params, spikes)
        np.testing.assert_allclose(batched[2]["delay"][0], single[2]["delay"], rtol=1e-12)


def test_lost_spikes_in_transit_and_small_capacity_are_flagged():
    w1, w2, spikes = known_case()
    with jax.enable_x64(True):
        # A chunk shorter than the delay: spikes carried from the previous chunk would arrive
        # after the next chunk too, and one window of history cannot hold them.
        first, second = learnable_graph(0.011), learnable_graph(0.001)
        params = params_of(w1, w2, 5e-3)
        carry, _, recording = jax.jit(first.apply)(params, spikes)
        assert int(carry[1].history.count()) > 0 and not bool(recording[1].overflow)
        late = jaxsnn.spikes.from_lists([], [], capacity=6, n_neurons=N_IN, dtype=np.float64)
        _, _, short = jax.jit(second.apply)(params, late, carry=carry)
        assert bool(short[0].overflow) and bool(short[1].overflow)
        # Too small a capacity is flagged; a checked population raises.
        small = fixed_graph(capacity=2)
        _, _, cramped = jax.jit(small.apply)(params_of(w1, w2), spikes)
        assert bool(cramped[0].overflow)
        strict = fixed_graph(capacity=2, checked=True)
        with pytest.raises(ValueError, match=r"the cycle \['h1', 'h2'\] emitted more spikes than a node's capacity"):
            strict.apply(params_of(w1, w2), spikes)


def test_delayed_graph_errors_name_the_edge():
    pops = populations()
    with pytest.raises(ValueError, match=r"edge 'h2' -> 'h1' has delay -0.001; event edge delays are transmission times, finite and >= 0"):
        event_graph(pops, fixed_edges(d21=-1e-3), output="h2", input_size=N_IN)
    with pytest.raises(ValueError, match=r"edge 'h1' -> 'h2' has delay nan; event edge delays"):
        event_graph(pops, fixed_edges(d12=float("nan")), output="h2", input_size=N_IN)
    with pytest.raises(ValueError, match=r"edge 'input' -> 'h1' has delay 0.002 but is not inside a cycle"):
        event_graph(pops, [("input", "h1", 2e-3), ("h1", "h2"), ("h2", "h1")], output="h2", input_size=N_IN)
    eventprop = {name: population(n, capacity=4, tau_syn=TAU_SYN, tau_mem=1e-2, t_max=T_MAX)
                 for name, n in (("h1", N1), ("h2", N2))}
    with pytest.raises(ValueError, match=r"the cycle \['h1', 'h2'\] has delayed connections \(edge 'h2' -> 'h1', edge 'h1' -> 'h2'\); its populations need gradient='analytic'"):
        event_graph(eventprop, [("input", "h1"), ("h1", "h2", 1e-3), ("h2", "h1", 1e-3)], output="h2", input_size=N_IN)
    with pytest.raises(ValueError, match=r"node 'd' \(Delay\(per=neuron\)\) is on a cycle .* must be Delay\(per='layer'\) without t_max"):
        event_graph({**pops, "d": jaxsnn.event.Delay(per="neuron")}, LEARNABLE_EDGES, output="h2", input_size=N_IN)
    with pytest.raises(ValueError, match=r"must be Delay\(per='layer'\) without t_max"):
        event_graph({**pops, "d": jaxsnn.event.Delay(per="layer", t_max=T_MAX)}, LEARNABLE_EDGES, output="h2",
                    input_size=N_IN)
    with pytest.raises(ValueError, match=r"node 'd' \(Delay\(per=layer\)\) is on a cycle .* receives edge 'h2' -> 'd', edge 'input' -> 'd'; a Delay on a cycle must receive exactly one edge"):
        event_graph({**pops, "d": jaxsnn.event.Delay(per="layer")}, LEARNABLE_EDGES + [("input", "d")],
                    output="h2", input_size=N_IN)
    w1, w2, spikes = known_case()
    with pytest.raises(ValueError, match=r"node 'h2': its spikes travel along delayed edges, so its carry entry must be None or the GraphCarry"):
        FIXED.apply(params_of(w1, w2), spikes, carry=[None, (jnp.zeros(N2),) * 3])
    with pytest.raises(ValueError, match=r"node 'd' \(a Delay on the cycle \['h1', 'h2', 'd'\]\) takes no external data"):
        LEARNABLE.apply(params_of(w1, w2, D21), spikes, external=[None, None, spikes])
