"""The multi-spike parallel algorithm (rounds over all input intervals) for feed-forward layers.

It must agree with the event-by-event scan (itself checked against the float64 reference in
``test_simulate.py``) and with the reference directly, for neurons that spike several times:
same spikes, same final state, same overflow flag, same gradients; and ``"auto"`` must choose
it by the documented rule.
"""

import functools
import importlib
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings

import jaxsnn
from jaxsnn.event import LIFParameters, LIFState, simulate
from jaxsnn.event.eventprop import simulate_eventprop
from jaxsnn.event.plan import (
    MULTISPIKE_COST_FACTOR,
    MULTISPIKE_MIN_WORK,
    choose_feedforward,
    multispike_block,
    multispike_rounds,
    resolve_plan,
    spike_bound,
)
from jaxsnn.testing import strategies
from jaxsnn.testing.reference import simulate_event

N_IN, SIZE, SLOTS = 4, 5, 12
TAU_SYN = 5e-3
T_MAX = 8 * TAU_SYN
CAPACITY = 3 * SIZE
RATIOS = [(1.0, "lambertw"), (2.0, "quadratic"), (1.5, "root")]
# The module (``jaxsnn.event.simulate`` the attribute is the function of the same name).
SIMULATE_MODULE = importlib.import_module("jaxsnn.event.simulate")


@functools.partial(jax.jit, static_argnames=("kernel", "capacity", "algorithm"))
def run(weight, spikes, neuron, initial_state=None, *, kernel, capacity, algorithm):
    return simulate(weight, spikes, neuron, capacity=capacity, t_max=T_MAX, kernel=kernel,
                    initial_state=initial_state, algorithm=algorithm)


def _reference(weight, spikes, neuron):
    return simulate_event(np.asarray(weight, np.float64), np.asarray(spikes.time), np.asarray(spikes.idx),
                          LIFParameters(*[float(v) for v in neuron]), T_MAX)


# A case with several spikes per neuron, so every run of the property test compares some.
_KNOWN_NEURON = LIFParameters(tau_syn=TAU_SYN, tau_mem=TAU_SYN, v_th=1.0, v_reset=-0.2, v_leak=0.0, t_ref=0.2 * TAU_SYN)
_KNOWN_WEIGHT = np.linspace(1.0, 5.0, N_IN * SIZE).reshape(N_IN, SIZE)
_KNOWN_SPIKES = jaxsnn.Spikes(
    np.concatenate([np.linspace(0.0, 0.7 * T_MAX, 8), np.full(SLOTS - 8, np.inf)]),
    np.asarray([0, 1, 2, 3, 0, 1, 2, 3] + [-1] * (SLOTS - 8), np.int32),
)


@pytest.mark.parametrize("ratio,kernel", RATIOS)
def test_multispike_equals_scan_and_reference(ratio, kernel):
    """Spike times equal the scan's to 1e-12 tau_syn and the float64 reference's to 1e-10 tau_syn.

    Final states agree to 1e-12 (relative) when the buffer holds every spike (after an overflow
    the scan stops early, so its final state is not the window end's), overflow flags exactly
    (strongly driven draws exceed the capacity). Weights are drawn without
    exact ties (see ``test_simulate_parallel``: tangential crossings are ill-conditioned).
    Across the examples spikes must have been compared and some neuron must have spiked twice.
    """
    seen = {"spikes": 0, "repeated": 0, "overflow": 0, "complete": 0}

    @given(
        neuron=strategies.lif_parameters("event", tau_ratio=ratio, tau_syn=TAU_SYN),
        weight=strategies.weights((N_IN, SIZE), low=-1.0, high=6.0),
        spikes=strategies.spikes(N_IN, SLOTS, 0.8 * T_MAX, dtype=np.float64),
    )
    # Known cases: one overflows the buffer (31 to 52 spikes), one fits (7 to 13, a neuron twice).
    @example(neuron=_KNOWN_NEURON._replace(tau_mem=ratio * TAU_SYN), weight=_KNOWN_WEIGHT, spikes=_KNOWN_SPIKES)
    @example(neuron=_KNOWN_NEURON._replace(tau_mem=ratio * TAU_SYN), weight=0.35 * _KNOWN_WEIGHT,
             spikes=_KNOWN_SPIKES)
    @settings(max_examples=8, deadline=None)
    def check(neuron, weight, spikes):
        capacity = CAPACITY  # one static capacity: one compilation per algorithm and kernel
        with jax.enable_x64(True):
            scan = run(jnp.asarray(weight), spikes, neuron, kernel=kernel, capacity=capacity, algorithm="scan")
            multi = run(jnp.asarray(weight), spikes, neuron, kernel=kernel, capacity=capacity,
                        algorithm="multispike")
            assert bool(scan.overflow) == bool(multi.overflow)
            np.testing.assert_array_equal(np.asarray(multi.spikes.idx), np.asarray(scan.spikes.idx))
            np.testing.assert_allclose(np.asarray(multi.spikes.time), np.asarray(scan.spikes.time),
                                       rtol=0, atol=1e-12 * TAU_SYN)
            if not bool(multi.overflow):
                for field in LIFState._fields:
                    np.testing.assert_allclose(np.asarray(getattr(multi.final_state, field)),
                                               np.asarray(getattr(scan.final_state, field)),
                                               rtol=1e-12, atol=1e-12)
            want_t, want_i = _reference(weight, spikes, neuron)
            n = min(len(want_t), capacity)
            assert bool(multi.overflow) == (len(want_t) > capacity)
            assert int(multi.spikes.count()) == n
            got_t = np.asarray(multi.spikes.time[:n])
            got_i = np.asarray(multi.spikes.idx[:n])
            for neuron_index in range(SIZE):
                np.testing.assert_allclose(got_t[got_i == neuron_index], want_t[:n][want_i[:n] == neuron_index],
                                           rtol=0, atol=1e-10 * TAU_SYN)
            seen["spikes"] += n
            seen["overflow" if bool(multi.overflow) else "complete"] += 1
            if n:
                seen["repeated"] += int(np.bincount(got_i).max() > 1)

    check()
    assert seen["spikes"] > 0, "no spikes were compared"
    assert seen["repeated"] > 0, "no neuron spiked more than once"
    assert seen["overflow"] > 0 and seen["complete"] > 0, seen


def test_multispike_streams_from_an_initial_state(x64):
    """A non-rest initial state (charged, partly refractory) is honoured as the scan does."""
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, v_reset=-0.1, t_ref=0.5 * TAU_SYN)
    rng = np.random.default_rng(3)
    weight = jnp.asarray(rng.uniform(0.0, 4.0, (N_IN, SIZE)))
    spikes = jaxsnn.Spikes(jnp.asarray([0.0, 1e-3, 4e-3, 9e-3, 2e-2, jnp.inf]),
                           jnp.asarray([3, 0, 2, 1, 0, -1], jnp.int32))
    state = LIFState(v=jnp.linspace(-0.5, 0.9, SIZE), current=jnp.linspace(0.0, 3.0, SIZE),
                     refractory_until=jnp.asarray([-jnp.inf, 5e-3, -1e-3, 2 * T_MAX, 1e-3]))
    results = [run(weight, spikes, neuron, state, kernel="quadratic", capacity=8 * SIZE, algorithm=a)
               for a in ("scan", "multispike")]
    counts = np.bincount(np.asarray(results[0].spikes.idx[: int(results[0].spikes.count())]), minlength=SIZE)
    assert counts.max() >= 2 and counts[3] == 0  # several spikes; neuron 3 refractory throughout
    assert not bool(results[1].overflow)
    np.testing.assert_array_equal(np.asarray(results[0].spikes.idx), np.asarray(results[1].spikes.idx))
    np.testing.assert_allclose(np.asarray(results[0].spikes.time), np.asarray(results[1].spikes.time), atol=1e-15)
    for a, b in zip(results[0].final_state, results[1].final_state):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


def test_multispike_per_neuron_time_constants_equal_the_scan(x64):
    """Per-neuron constants (time constants, threshold, leak, t_ref): the free trajectory decays per
    neuron then, and the spikes, final state and overflow are the scan's (times to 1e-12 tau_syn)."""
    rng = np.random.default_rng(12)
    neuron = LIFParameters(tau_syn=rng.uniform(3e-3, 6e-3, SIZE), tau_mem=rng.uniform(4e-3, 1.2e-2, SIZE),
                           v_th=rng.uniform(0.8, 1.3, SIZE), v_leak=rng.uniform(-0.2, 0.2, SIZE), v_reset=-0.3,
                           t_ref=rng.uniform(0.0, 2e-3, SIZE))
    weight = jnp.asarray(rng.uniform(0.0, 6.0, (N_IN, SIZE)))
    spikes = jaxsnn.Spikes(jnp.asarray(_KNOWN_SPIKES.time), jnp.asarray(_KNOWN_SPIKES.idx))
    results = [run(weight, spikes, neuron, None, kernel="root", capacity=16 * SIZE, algorithm=a)
               for a in ("scan", "multispike")]
    n = int(results[0].spikes.count())
    counts = np.bincount(np.asarray(results[0].spikes.idx[:n]), minlength=SIZE)
    assert counts.max() >= 3 and not bool(results[0].overflow), counts
    assert bool(results[1].overflow) == bool(results[0].overflow)
    np.testing.assert_array_equal(np.asarray(results[1].spikes.idx), np.asarray(results[0].spikes.idx))
    np.testing.assert_allclose(np.asarray(results[1].spikes.time), np.asarray(results[0].spikes.time),
                               rtol=0, atol=1e-12 * TAU_SYN)
    for got, want in zip(results[1].final_state, results[0].final_state):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-11, atol=1e-12)


def test_every_window_of_the_search_gives_the_same_result(x64):
    """The search's window (``block``: 1 interval, a few, all of them) changes only its speed.

    Spikes (indices exactly, times to 1e-14), final state and overflow are equal for every block,
    and so is the analytic gradient of the layer that fits its buffer,
    on a layer that fits its buffer (several spikes per neuron, some in one inter-input interval,
    from a charged, partly refractory state) and on one that overflows it (the merge pass).
    """
    from jaxsnn.event.multispike import simulate_multispike

    kernel = "quadratic"
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, v_reset=-0.1, t_ref=0.05 * TAU_SYN)
    neuron = LIFParameters(*[jnp.asarray(v, jnp.float64) for v in neuron])
    weight = jnp.asarray(np.random.default_rng(11).uniform(2.0, 6.0, (N_IN, SIZE)))
    spikes = jaxsnn.Spikes(jnp.asarray(_KNOWN_SPIKES.time), jnp.asarray(_KNOWN_SPIKES.idx))
    state = LIFState(v=jnp.linspace(-0.5, 0.9, SIZE), current=jnp.linspace(0.0, 3.0, SIZE),
                     refractory_until=jnp.asarray([-jnp.inf, 5e-3, -1e-3, 2 * T_MAX, 1e-3]))
    n_intervals = SLOTS + 1
    t_max = jnp.asarray(T_MAX)

    def forward(weight, capacity, block):
        return simulate_multispike(weight, spikes, neuron, t_max, state, capacity=capacity, rounds=capacity,
                                   method=kernel, block=block)

    for capacity, overflows in ((16 * SIZE, False), (6, True)):
        results = {block: forward(weight, capacity, block) for block in (1, 3, n_intervals)}
        reference = results[n_intervals]
        assert bool(reference.overflow) == overflows
        scan = run(weight, spikes, neuron, state, kernel=kernel, capacity=capacity, algorithm="scan")
        np.testing.assert_array_equal(np.asarray(reference.spikes.idx), np.asarray(scan.spikes.idx))
        np.testing.assert_allclose(np.asarray(reference.spikes.time), np.asarray(scan.spikes.time), atol=1e-15)
        n = int(reference.spikes.count())
        times, idx = np.asarray(reference.spikes.time[:n]), np.asarray(reference.spikes.idx[:n])
        interval = np.searchsorted(np.asarray(spikes.time), times, side="left")
        assert len(set(zip(idx, interval))) < n  # some neuron spiked twice between two inputs
        if not overflows:  # the replay does not depend on the block: one gradient check is enough
            grads = {block: jax.grad(lambda w, b=block: _objective(*forward(w, capacity, b).spikes))(weight)
                     for block in (1, n_intervals)}
            assert float(jnp.max(jnp.abs(grads[n_intervals]))) > 0
            np.testing.assert_allclose(np.asarray(grads[1]), np.asarray(grads[n_intervals]), rtol=1e-12)
        for block, result in results.items():
            np.testing.assert_array_equal(np.asarray(result.spikes.idx), np.asarray(reference.spikes.idx))
            assert bool(result.overflow) == bool(reference.overflow)
            # the same arithmetic, fused differently per block shape: equal to the last bits
            for got, want in zip(jax.tree_util.tree_leaves((result.spikes.time, result.final_state)),
                                 jax.tree_util.tree_leaves((reference.spikes.time, reference.final_state))):
                np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-14, atol=1e-17,
                                           err_msg=f"block {block}")


def test_window_test_of_the_quadratic_kernel_agrees_with_the_kernel(x64):
    """The search's crossing test for ``tau_mem = 2 tau_syn`` (no logarithm) says what the kernel says."""
    from jaxsnn.event.kernels import next_crossing
    from jaxsnn.event.multispike import _crossing_exists

    rng = np.random.default_rng(2)
    n = 20000
    u0 = rng.uniform(-1.0, 1.2, n)
    current0 = rng.uniform(-2.0, 4.0, n)
    horizon = rng.uniform(-0.2, 1.5, n) * TAU_SYN
    tau_mem, tau_syn = 2 * TAU_SYN, TAU_SYN
    kernel = np.isfinite(np.asarray(next_crossing(u0, current0, 1.0, tau_mem, tau_syn, horizon, "quadratic")))
    window = np.asarray(_crossing_exists("quadratic", jnp.asarray(u0), jnp.asarray(current0), 1.0, tau_mem,
                                         tau_syn, jnp.asarray(horizon)))
    assert 0.1 * n < kernel.sum() < 0.9 * n  # both answers drawn often
    np.testing.assert_array_equal(window, kernel)


def test_search_advances_where_the_window_test_and_the_kernel_disagree(monkeypatch):
    """A window test that sees a crossing the kernel does not find (at worst: everywhere) only slows
    the search down: it moves on interval by interval and the spikes stay the scan's."""
    from jaxsnn.event import multispike

    monkeypatch.setattr(multispike, "_crossing_exists", lambda method, u0, current0, theta, tau_mem, tau_syn,
                        horizon, x_end=None: horizon >= 0)
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN, v_reset=-0.1, t_ref=0.05 * TAU_SYN)
    weight = jnp.asarray(np.random.default_rng(4).uniform(0.5, 4.0, (N_IN, SIZE)), jnp.float32)
    spikes = jaxsnn.Spikes(jnp.asarray(_KNOWN_SPIKES.time, jnp.float32), jnp.asarray(_KNOWN_SPIKES.idx))
    capacity = 7 * SIZE + 1  # a shape no other test compiles: the patched test is traced
    scan = simulate(weight, spikes, neuron, capacity=capacity, t_max=T_MAX, algorithm="scan")
    multi = simulate(weight, spikes, neuron, capacity=capacity, t_max=T_MAX, algorithm="multispike")
    assert int(scan.spikes.count()) > SIZE and not bool(scan.overflow)
    np.testing.assert_array_equal(np.asarray(multi.spikes.idx), np.asarray(scan.spikes.idx))
    np.testing.assert_allclose(np.asarray(multi.spikes.time), np.asarray(scan.spikes.time), rtol=1e-6)
    assert bool(multi.overflow) == bool(scan.overflow)


def _gradient_case(ratio=1.5):
    rng = np.random.default_rng(5)
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=ratio * TAU_SYN, v_th=1.0, v_reset=-0.2, t_ref=0.3 * TAU_SYN)
    weight = rng.uniform(0.0, 3.5, (N_IN, SIZE))
    times = np.sort(rng.uniform(0.0, 0.8 * T_MAX, SLOTS))
    idx = rng.integers(0, N_IN, SLOTS).astype(np.int32)
    return neuron, weight, times, idx


def _objective(time, idx):
    """A smooth function of the output times (padding contributes a constant)."""
    return jnp.sum(jnp.where(idx >= 0, jnp.sin(time / TAU_SYN) * (1.0 + 0.1 * idx), 0.0))


def test_multispike_gradients_equal_scan_and_reference_differences(x64):
    """d loss / d (weight, input times): multi-spike == scan (rtol 1e-10) == reference FD (rtol 1e-4)."""
    neuron, weight, times, idx = _gradient_case()

    def loss(weight, times, algorithm):
        out = simulate(weight, jaxsnn.Spikes(times, jnp.asarray(idx)), neuron, capacity=6 * SIZE, t_max=T_MAX,
                       kernel="root", algorithm=algorithm)
        return _objective(out.spikes.time, out.spikes.idx), out.spikes

    grads, outputs = {}, {}
    for algorithm in ("scan", "multispike"):
        (_, outputs[algorithm]), grads[algorithm] = jax.jit(
            jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2
        )(jnp.asarray(weight), jnp.asarray(times), algorithm)
    out = outputs["multispike"]
    n = int(out.count())
    counts = np.bincount(np.asarray(out.idx[:n]), minlength=SIZE)
    assert n >= 10 and counts.max() >= 3  # several spikes per neuron
    for a, b in zip(grads["multispike"], grads["scan"]):
        assert float(jnp.max(jnp.abs(b))) > 0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(b))))

    def reference_loss(weight, times):
        want_t, want_i = simulate_event(weight, times, idx, neuron, T_MAX)
        assert len(want_t) == n  # the perturbation neither creates nor deletes a spike
        return float(np.sum(np.sin(want_t / TAU_SYN) * (1.0 + 0.1 * want_i)))

    checked = 0
    for row, col in [(0, 0), (1, 2), (2, 4), (3, 1)]:
        step = 1e-6
        plus, minus = weight.copy(), weight.copy()
        plus[row, col] += step
        minus[row, col] -= step
        fd = (reference_loss(plus, times) - reference_loss(minus, times)) / (2 * step)
        if abs(fd) > 1e-3:
            np.testing.assert_allclose(float(grads["multispike"][0][row, col]), fd, rtol=1e-4)
            checked += 1
    for k in [1, 5, 9]:
        step = 1e-9
        plus, minus = times.copy(), times.copy()
        plus[k] += step
        minus[k] -= step
        fd = (reference_loss(weight, plus) - reference_loss(weight, minus)) / (2 * step)
        if abs(fd) > 1e-3 / TAU_SYN:
            np.testing.assert_allclose(float(grads["multispike"][1][k]), fd, rtol=1e-4)
            checked += 1
    assert checked >= 5, f"only {checked} finite-difference comparisons had a nonzero derivative"


def test_multispike_under_jit_vmap_grad(x64):
    """A batch under vmap + jit equals the samples one by one; grad of the batch loss is finite."""
    neuron, weight, times, idx = _gradient_case(ratio=2.0)  # the quadratic kernel compiles fastest
    rng = np.random.default_rng(8)
    batch_times = jnp.asarray(np.sort(rng.uniform(0.0, 0.8 * T_MAX, (3, SLOTS)), axis=1))
    batch = jaxsnn.Spikes(batch_times, jnp.asarray(np.tile(idx, (3, 1))))

    def forward(weight, spikes):
        return simulate(weight, spikes, neuron, capacity=6 * SIZE, t_max=T_MAX, algorithm="multispike")

    batched = jax.jit(jax.vmap(forward, in_axes=(None, 0)))(jnp.asarray(weight), batch)
    total = 0
    for sample in range(3):
        one = forward(jnp.asarray(weight), jaxsnn.Spikes(batch.time[sample], batch.idx[sample]))
        np.testing.assert_array_equal(np.asarray(batched.spikes.idx[sample]), np.asarray(one.spikes.idx))
        np.testing.assert_allclose(np.asarray(batched.spikes.time[sample]), np.asarray(one.spikes.time),
                                   rtol=0, atol=1e-15)
        total += int(one.spikes.count())
    assert total > 10

    def loss(weight):
        out = jax.vmap(forward, in_axes=(None, 0))(weight, batch).spikes
        return _objective(out.time, out.idx)

    grad = jax.jit(jax.grad(loss))(jnp.asarray(weight))
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.max(jnp.abs(grad))) > 0


def test_eventprop_with_multispike_forward(x64):
    """EventProp on a multi-spike feed-forward layer: the same gradients whichever forward runs."""
    neuron, weight, times, idx = _gradient_case(ratio=2.0)

    def loss(weight, times, algorithm):
        out = simulate_eventprop(weight, jaxsnn.Spikes(times, jnp.asarray(idx)), neuron, capacity=6 * SIZE,
                                 t_max=T_MAX, algorithm=algorithm)
        return _objective(out.spikes.time, out.spikes.idx)

    grads = {a: jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)(jnp.asarray(weight), jnp.asarray(times), a)
             for a in ("scan", "multispike")}
    analytic = jax.grad(lambda w, t: _objective(*simulate(
        w, jaxsnn.Spikes(t, jnp.asarray(idx)), neuron, capacity=6 * SIZE, t_max=T_MAX, algorithm="multispike"
    ).spikes))(jnp.asarray(weight), jnp.asarray(times))
    for a, b in zip(grads["multispike"], grads["scan"]):
        assert float(jnp.max(jnp.abs(b))) > 0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(b))))
    np.testing.assert_allclose(np.asarray(grads["multispike"][0]), np.asarray(analytic), rtol=1e-7,
                               atol=1e-9 * float(jnp.max(jnp.abs(analytic))))


def test_spike_bound_and_rounds():
    assert spike_bound(LIFParameters(t_ref=0.0), T_MAX) == 0
    assert spike_bound(LIFParameters(t_ref=TAU_SYN), T_MAX) == 9  # floor(8) + 1
    assert spike_bound(LIFParameters(t_ref=np.asarray([TAU_SYN, 2 * TAU_SYN])), T_MAX) == 9
    assert spike_bound(LIFParameters(t_ref=T_MAX), T_MAX) == 2
    assert multispike_rounds(0, 40) == 40
    assert multispike_rounds(9, 40) == 9
    assert multispike_rounds(9, 4) == 4


def test_auto_choice_rule():
    """``auto``: parallel for single spikes, scan for recurrence, otherwise the cost rule."""
    multi = LIFParameters(t_ref=TAU_SYN)
    assert resolve_plan(LIFParameters(t_ref=T_MAX), T_MAX).algorithm == "parallel"
    assert resolve_plan(multi, T_MAX, recurrent=True).algorithm == "scan"
    plan = resolve_plan(multi, T_MAX)
    assert plan.algorithm == "feedforward" and plan.spike_bound == 9
    assert resolve_plan(multi, T_MAX, algorithm="scan").algorithm == "scan"
    assert resolve_plan(LIFParameters(), T_MAX, algorithm="multispike").algorithm == "multispike"
    # slots + 1 + spikes x block <= factor x (slots + capacity), spikes = min(bound or capacity,
    # ceil(capacity / size)), block = ceil((slots + 1) / (ceil(capacity / size) + 1))
    assert MULTISPIKE_COST_FACTOR["root"] == 1  # the boundary cases below are for this factor
    assert MULTISPIKE_COST_FACTOR["quadratic"] == 2  # its cheaper window test
    assert multispike_block(100, 522, 128) == 17 and multispike_block(522, 59, 10) == 75
    assert multispike_block(100, 0, 128) == 101 and multispike_block(0, 40, 2) == 1
    assert choose_feedforward(0, 100, 522, 128) == "multispike"  # 101 + 5 x 17 <= 622 (Randman hidden)
    assert choose_feedforward(0, 522, 59, 10) == "scan"  # 523 + 6 x 75 > 581 (Randman output)
    assert choose_feedforward(0, 522, 59, 10, "quadratic") == "multispike"  # 973 <= 2 x 581
    # the search evaluates at most ~2 x (slots + 1) intervals, so with factor 2 the quadratic
    # kernel takes it wherever the layer is large enough
    assert choose_feedforward(0, 522, 1, 10, "quadratic") == "multispike"  # 523 + 262 <= 2 x 523
    assert choose_feedforward(0, 522, 1, 10) == "scan"
    assert MULTISPIKE_MIN_WORK == 4096
    assert choose_feedforward(9, 100, 522, 100) == "multispike"  # 101 + 6 x 15 <= 622
    # 8 neurons, 1024 slots, capacity 1161: 1025 + 146 x 7 <= 2185; capacity 1160: 1025 + 145 x 8 > 2184
    assert choose_feedforward(0, 1024, 1161, 8) == "multispike"
    assert choose_feedforward(0, 1024, 1160, 8) == "scan"
    assert choose_feedforward(2, 1024, 1160, 8) == "multispike"  # the refractory bound: 1025 + 2 x 8
    # neurons x slots below MULTISPIKE_MIN_WORK: the scan (its boundary counts for multispike)
    assert choose_feedforward(9, 100, 500, MULTISPIKE_MIN_WORK // 100 + 1) == "multispike"
    assert choose_feedforward(9, 64, 500, MULTISPIKE_MIN_WORK // 64) == "multispike"
    assert choose_feedforward(9, 64, 500, MULTISPIKE_MIN_WORK // 64 - 1) == "scan"


@pytest.mark.parametrize("algorithm,neuron,capacity,min_work,expected", [
    ("auto", LIFParameters(t_ref=TAU_SYN), 4 * SIZE, 0, True),       # 13 + 4 x 3 <= 12 + 20
    ("auto", LIFParameters(t_ref=TAU_SYN), 4 * SIZE, None, False),   # 5 x 12 < MULTISPIKE_MIN_WORK
    ("auto", LIFParameters(t_ref=0.0, tau_mem=7.5e-3), 8, 0, False),  # root: 13 + 2 x 5 > 12 + 8
    ("auto", LIFParameters(t_ref=0.0), 8, 0, True),                  # quadratic: 23 <= 2 x 20
    ("scan", LIFParameters(t_ref=TAU_SYN), 4 * SIZE, 0, False),
    ("multispike", LIFParameters(t_ref=0.0), 8 * SIZE, None, True),
])
def test_algorithm_option_runs_the_chosen_algorithm(algorithm, neuron, capacity, min_work, expected, monkeypatch):
    if min_work is not None:  # this layer is small: lower the threshold to reach the cost rule
        monkeypatch.setattr(importlib.import_module("jaxsnn.event.plan"), "MULTISPIKE_MIN_WORK", min_work)
    calls = []
    original = SIMULATE_MODULE.simulate_multispike

    def counting(*args, **kwargs):
        calls.append(kwargs["rounds"])
        return original(*args, **kwargs)

    weight = jnp.full((N_IN, SIZE), 3.0)
    spikes = jaxsnn.Spikes(jnp.linspace(0.0, T_MAX / 2, SLOTS), jnp.zeros((SLOTS,), jnp.int32))
    with mock.patch.object(SIMULATE_MODULE, "simulate_multispike", counting):
        result = simulate(weight, spikes, neuron, capacity=capacity, t_max=T_MAX, algorithm=algorithm)
    assert int(result.spikes.count()) > SIZE  # several spikes per neuron
    assert bool(calls) == expected


def test_multispike_with_recurrent_weights_raises():
    with pytest.raises(ValueError, match="'multispike' does not support recurrent weights"):
        simulate(jnp.ones((2, 3)), jaxsnn.Spikes(jnp.asarray([1e-3]), jnp.asarray([0], jnp.int32)),
                 LIFParameters(), capacity=3, t_max=T_MAX, algorithm="multispike",
                 recurrent_weight=jnp.zeros((3, 3)))


def test_overflow_of_one_neuron_is_flagged():
    """One neuron spiking more often than the capacity (the rounds) overflows as in the scan."""
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=2 * TAU_SYN)
    weight = jnp.full((1, 1), 20.0)
    spikes = jaxsnn.Spikes(jnp.asarray([0.0]), jnp.asarray([0], jnp.int32))
    full = run(weight, spikes, neuron, kernel="quadratic", capacity=40, algorithm="scan")
    assert 3 < int(full.spikes.count()) < 40 and not bool(full.overflow)
    for algorithm in ("scan", "multispike"):
        small = run(weight, spikes, neuron, kernel="quadratic", capacity=3, algorithm=algorithm)
        assert bool(small.overflow), algorithm
        np.testing.assert_allclose(np.asarray(small.spikes.time), np.asarray(full.spikes.time[:3]), rtol=1e-6)
