"""Accuracy of the float64 reference simulators (jaxsnn.testing.reference).

The event reference is checked against (a) hand-derived closed forms and (b) an independent
brute-force integrator that knows nothing of the closed form: classic fourth-order Runge-Kutta
on the ODE itself with step <= 2e-3 tau, event and refractory boundaries hit exactly, and every
threshold crossing refined by bisection on the length of a single RK4 step (local error
O(h^5) ~ 1e-14). Tolerances reached are stated at each assertion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxsnn.event.neuron import LIFParameters
from jaxsnn.testing import reference


# ---------------------------------------------------------------- independent brute force
def _rk4_step(v, current, h, p):
    def deriv(v_, i_):
        return (-(v_ - p.v_leak) + i_) / p.tau_mem, -i_ / p.tau_syn

    k1 = deriv(v, current)
    k2 = deriv(v + 0.5 * h * k1[0], current + 0.5 * h * k1[1])
    k3 = deriv(v + 0.5 * h * k2[0], current + 0.5 * h * k2[1])
    k4 = deriv(v + h * k3[0], current + h * k3[1])
    return (
        v + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
        current + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]),
    )


def brute_force_event(weight, times, idx, p, t_max, recurrent=None, step=2e-3):
    """RK4 integration of the LIF ODE with bisection-refined crossings (scalar taus only)."""
    size = weight.shape[1]
    h_max = step * min(p.tau_syn, p.tau_mem)
    v = np.full(size, float(p.v_leak))
    current = np.zeros(size)
    ref_until = np.full(size, -np.inf)
    events = sorted(zip(times, idx))
    out = []
    t, k = 0.0, 0
    while t < t_max:
        boundaries = [t + h_max, t_max]
        if k < len(events):
            boundaries.append(events[k][0])
        boundaries += [r for r in ref_until if r > t]
        t_next = min(boundaries)
        h = t_next - t
        refractory = ref_until > t  # whole step refractory, since ref ends are boundaries
        v_new, i_new = _rk4_step(v, current, h, p)
        v_new = np.where(refractory, p.v_reset, v_new)
        crossing = (~refractory) & (v_new >= p.v_th)
        if crossing.any():
            # Refine each crossing neuron by bisection on the step length; take the earliest.
            best_h, best_n = math.inf, -1
            for n in np.flatnonzero(crossing):
                lo, hi = 0.0, h
                for _ in range(200):
                    mid = 0.5 * (lo + hi)
                    if mid <= lo or mid >= hi:
                        break
                    if _rk4_step(v, current, mid, p)[0][n] >= p.v_th:
                        hi = mid
                    else:
                        lo = mid
                if hi < best_h:
                    best_h, best_n = hi, n
            v_new, i_new = _rk4_step(v, current, best_h, p)
            v_new = np.where(refractory, p.v_reset, v_new)
            t = t + best_h
            v, current = v_new, i_new
            v[best_n] = p.v_reset
            ref_until[best_n] = t + p.t_ref if p.t_ref > 0 else -np.inf
            out.append((t, best_n))
            if recurrent is not None:
                current = current + recurrent[best_n]
            continue
        v, current, t = v_new, i_new, t_next
        while k < len(events) and events[k][0] <= t:
            current = current + weight[events[k][1]]
            k += 1
    out.sort()
    return np.array([o[0] for o in out]), np.array([o[1] for o in out], dtype=int)


# ---------------------------------------------------------------- hand-derived cases
def _lambert_first_root(ratio):
    """Smallest x > 0 with x exp(-x) = ratio (ratio < 1/e), by Newton from x = 0."""
    x = 0.0
    for _ in range(100):
        x -= (x * math.exp(-x) - ratio) / ((1 - x) * math.exp(-x))
    return x


@pytest.mark.parametrize("weight", [1.2 * math.e, 3.0, 10.0])
def test_single_input_tau_ratio_1_matches_lambert_form(weight):
    # u(t) = w (t/tau) exp(-t/tau); crossing of v_th = 1 at t = tau x with x exp(-x) = 1/w.
    tau = 2e-3
    params = LIFParameters(tau_syn=tau, tau_mem=tau, v_th=1.0)
    times, idx = reference.simulate_event(np.array([[weight]]), [0.0], [0], params, 10 * tau)
    expected = tau * _lambert_first_root(1.0 / weight)
    assert idx[0] == 0
    assert abs(times[0] - expected) <= 1e-13 * tau  # reached: ~1 ulp


@pytest.mark.parametrize("weight", [4.1, 5.0, 20.0])
def test_single_input_tau_ratio_2_matches_quadratic_form(weight):
    # tau_mem = 2 tau_syn: u(t) = w (x - x^2) with x = exp(-t/tau_mem) -> larger root of the quadratic.
    tau_syn = 1e-3
    params = LIFParameters(tau_syn=tau_syn, tau_mem=2 * tau_syn, v_th=1.0)
    times, _ = reference.simulate_event(np.array([[weight]]), [0.0], [0], params, 10 * tau_syn)
    x = (1 + math.sqrt(1 - 4 / weight)) / 2
    assert abs(times[0] - (-2 * tau_syn * math.log(x))) <= 1e-13 * tau_syn


def test_delayed_input_and_leak_shift_the_crossing_exactly():
    # Shifting the input by d and v_leak/v_th together leaves the crossing time shifted by d.
    tau = 1.0
    base = LIFParameters(tau_syn=tau, tau_mem=tau, v_th=1.0)
    shifted = LIFParameters(tau_syn=tau, tau_mem=tau, v_th=0.5, v_leak=-0.5, v_reset=-0.5)
    t0, _ = reference.simulate_event(np.array([[3.0]]), [0.0], [0], base, 10.0)
    t1, _ = reference.simulate_event(np.array([[3.0]]), [0.25], [0], shifted, 10.0)
    assert abs(t1[0] - (t0[0] + 0.25)) <= 1e-14


def test_near_tangential_crossings_are_found_and_non_crossings_are_not():
    # Ratio 1, one input w: v peaks at w/e exactly at t = tau. A threshold 1e-12 below the peak is
    # crossed (an excursion ~1e-6 tau long that any fixed grid coarser than that misses); one
    # 1e-12 above is not.
    tau, weight = 1.0, 2.0
    peak = weight / math.e
    hit = LIFParameters(tau_syn=tau, tau_mem=tau, v_th=peak - 1e-12)
    miss = LIFParameters(tau_syn=tau, tau_mem=tau, v_th=peak + 1e-12)
    times, _ = reference.simulate_event(np.array([[weight]]), [0.0], [0], hit, 5.0)
    assert times.size == 1
    # Root of the quadratic approximation around the peak: tau (1 - sqrt(2 e * 1e-12 / w)).
    assert abs(times[0] - (1 - math.sqrt(2 * math.e * 1e-12 / weight))) <= 1e-9
    times, _ = reference.simulate_event(np.array([[weight]]), [0.0], [0], miss, 5.0)
    assert times.size == 0


def test_nearly_equal_time_constants_are_continuous():
    # The expm1 form keeps tau_mem -> tau_syn smooth: ratio 1 + 1e-9 differs from 1 by ~1e-9.
    w = np.array([[3.0]])
    t_equal, _ = reference.simulate_event(w, [0.0], [0], LIFParameters(tau_syn=1.0, tau_mem=1.0), 5.0)
    t_close, _ = reference.simulate_event(w, [0.0], [0], LIFParameters(tau_syn=1.0, tau_mem=1 + 1e-9), 5.0)
    assert abs(t_equal[0] - t_close[0]) <= 1e-8


def test_refractory_neuron_cannot_spike_and_restarts_from_reset():
    # Strong constant drive: with t_ref the inter-spike interval is at least t_ref, and the time
    # from (end of refractoriness) to next spike equals a fresh crossing from v_reset with the
    # current at that moment.
    params = LIFParameters(tau_syn=1.0, tau_mem=1.0, v_th=1.0, v_reset=-0.2, t_ref=0.3)
    times, _ = reference.simulate_event(np.array([[30.0]]), [0.0], [0], params, 5.0)
    assert times.size >= 3
    assert np.all(np.diff(times) >= 0.3)
    start = times[0] + 0.3
    current = 30.0 * math.exp(-start)
    fresh, _ = reference.simulate_event(
        np.array([[1.0]]), [], [], params, 5.0, initial_state=(np.array([-0.2]), np.array([current]))
    )
    assert abs((start + fresh[0]) - times[1]) <= 1e-12


def test_simultaneous_crossings_are_all_emitted():
    params = LIFParameters(tau_syn=1.0, tau_mem=2.0)
    times, idx = reference.simulate_event(np.array([[5.0, 5.0, 5.0]]), [0.0], [0], params, 1.0)
    assert idx.tolist() == [0, 1, 2] and np.all(times == times[0])


# ---------------------------------------------------------------- against brute force
CASES = [
    # (tau_mem / tau_syn, v_leak, v_reset, t_ref, recurrent)
    (1.0, 0.0, 0.0, 0.0, False),
    (2.0, 0.0, -0.3, 0.0, False),
    (0.5, 0.2, 0.4, 0.0, False),
    (1.5, -0.3, -0.5, 0.2, True),
    (3.0, 0.0, 0.5, 0.1, True),
    (10.0, 0.1, -0.2, 0.0, False),
]


@pytest.mark.parametrize("ratio,v_leak,v_reset,t_ref,recurrent", CASES)
def test_event_reference_matches_brute_force_rk4(ratio, v_leak, v_reset, t_ref, recurrent):
    rng = np.random.default_rng(1)
    n_in, size, tau_syn = 4, 3, 1.0
    params = LIFParameters(
        tau_syn=tau_syn, tau_mem=ratio * tau_syn, v_th=1.0, v_reset=v_reset, v_leak=v_leak, t_ref=t_ref
    )
    gain = 1.0 + 1.0 / ratio  # short tau_mem needs more drive to fire
    weight = rng.uniform(0.0, 2.5 * gain, (n_in, size)) - 0.3 * gain
    times = rng.uniform(0, 3 * tau_syn, 20)
    idx = rng.integers(0, n_in, 20)
    rec = rng.normal(0, 0.3 * gain, (size, size)) if recurrent else None
    t_max = 5 * tau_syn
    got_t, got_i = reference.simulate_event(weight, times, idx, params, t_max, recurrent_weight=rec)
    want_t, want_i = brute_force_event(weight, times, idx, params, t_max, recurrent=rec)
    assert got_t.size >= 4 and np.all(np.bincount(got_i) >= 1), "case should be non-trivial"
    assert got_i.tolist() == want_i.tolist()
    # Reached: max |difference| 1e-13 .. 2e-11 tau_syn (the RK4 global error, O(step^4));
    # asserted at 1e-10 tau_syn.
    np.testing.assert_allclose(got_t, want_t, rtol=0, atol=1e-10 * tau_syn)


def test_event_state_at_matches_brute_force_membrane():
    params = LIFParameters(tau_syn=1.0, tau_mem=1.5, v_leak=0.1, v_th=5.0)
    weight = np.array([[1.0, -0.5], [0.3, 2.0]])
    times, idx = [0.1, 0.4, 0.4], [0, 1, 0]
    v, current = reference.event_state_at(weight, times, idx, params, 0.9)
    # RK4 from 0 to 0.9 across the events, no spikes (threshold unreachable).
    state_v, state_i, t = np.full(2, 0.1), np.zeros(2), 0.0
    for t_event, drive in [(0.1, weight[0]), (0.4, weight[1] + weight[0]), (0.9, 0.0)]:
        n = 2000
        for _ in range(n):
            state_v, state_i = _rk4_step(state_v, state_i, (t_event - t) / n, params)
        t = t_event
        state_i = state_i + drive
    np.testing.assert_allclose(v, state_v, rtol=0, atol=1e-12)
    np.testing.assert_allclose(current, state_i, rtol=0, atol=1e-12)


def test_per_neuron_parameters_equal_separate_runs():
    weight = np.array([[2.5, 3.0]])
    params = LIFParameters(tau_syn=1.0, tau_mem=np.array([1.0, 2.0]), v_leak=np.array([0.0, 0.1]))
    times, idx = reference.simulate_event(weight, [0.0], [0], params, 5.0)
    for n in range(2):
        single = LIFParameters(tau_syn=1.0, tau_mem=[1.0, 2.0][n], v_leak=[0.0, 0.1][n])
        t_n, _ = reference.simulate_event(weight[:, n:n + 1], [0.0], [0], single, 5.0)
        assert np.array_equal(times[idx == n], t_n)


def test_padding_is_ignored_and_order_of_inputs_is_irrelevant():
    params = LIFParameters(tau_syn=1.0, tau_mem=2.0)
    weight = np.array([[3.0, 1.0], [-1.0, 4.0]])
    a = reference.simulate_event(weight, [0.5, 0.5, 0.1, np.inf], [1, 0, 0, -1], params, 5.0)
    b = reference.simulate_event(weight, [0.1, 0.5, 0.5], [0, 0, 1], params, 5.0)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input_idx=[3]), "input_idx"),
        (dict(input_times=[-1.0]), "input_times"),
        (dict(input_times=[np.nan]), "input_times"),
        (dict(weight=np.ones(3)), "weight"),
        (dict(params=LIFParameters(tau_syn=0.0)), "tau_syn"),
        (dict(params=LIFParameters(v_th=0.0, v_reset=0.0)), "v_reset"),
        (dict(t_max=-1.0), "t_max"),
        (dict(recurrent_weight=np.ones((2, 2))), "recurrent_weight"),
        (dict(initial_state=(np.array([2.0]), np.array([0.0]))), "initial_state"),
    ],
)
def test_event_reference_rejects_bad_input(kwargs, match):
    args = dict(weight=np.ones((2, 1)), input_times=[0.0], input_idx=[0], params=LIFParameters(), t_max=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        reference.simulate_event(**args)


# ---------------------------------------------------------------- discrete
def test_discrete_reference_hand_computed_steps():
    # One input spike at step 0, weight 2, v_th 0.3, subtractive reset; three steps by hand.
    a_syn, a_mem = math.exp(-0.5), math.exp(-0.25)
    out = reference.simulate_discrete(
        np.array([[2.0]]), np.array([[1.0], [0.0], [0.0]]), tau_syn=2.0, tau_mem=4.0, dt=1.0, v_th=0.3
    )
    i1 = 2.0
    v1 = (1 - a_mem) * i1  # 0.442 > 0.3: spike, subtract 0.3
    i2 = a_syn * i1
    v2 = a_mem * (v1 - 0.3) + (1 - a_mem) * i2  # 0.379 > 0.3: spike again
    i3 = a_syn * i2
    v3 = a_mem * (v2 - 0.3) + (1 - a_mem) * i3  # 0.225 < 0.3: no spike
    assert v1 > 0.3 and v2 > 0.3 and v3 < 0.3
    assert out["spikes"][:, 0].tolist() == [1.0, 1.0, 0.0]
    np.testing.assert_allclose(out["v"][:, 0], [v1 - 0.3, v2 - 0.3, v3], rtol=1e-15)
    np.testing.assert_allclose(out["v_before_reset"][:, 0], [v1, v2, v3], rtol=1e-15)
    np.testing.assert_allclose(out["current"][:, 0], [i1, i2, i3], rtol=1e-15)


def test_discrete_reference_threshold_is_strict_and_hard_reset_goes_to_v_reset():
    # v_t exactly at v_th does not spike (H(0) = 0).
    a_mem = math.exp(-1.0)
    w = 1.0 / (1 - a_mem)
    out = reference.simulate_discrete(np.array([[w]]), np.array([[1.0]]), tau_syn=1e9, tau_mem=1.0, dt=1.0,
                                      v_th=(1 - a_mem) * w)
    assert out["spikes"][0, 0] == 0.0
    out = reference.simulate_discrete(np.array([[5.0]]), np.array([[1.0]]), tau_syn=1.0, tau_mem=1.0, dt=1.0,
                                      v_reset=-0.5, reset="hard")
    assert out["spikes"][0, 0] == 1.0 and out["v"][0, 0] == -0.5


def test_discrete_reference_leak_recurrence_and_readout():
    out = reference.simulate_discrete(np.zeros((1, 2)), np.zeros((3, 1)), tau_syn=1.0, tau_mem=1.0, dt=0.1,
                                      v_leak=0.4)
    assert np.all(out["v"] == 0.4)  # rest is a fixed point
    rec = np.array([[0.0, 10.0], [0.0, 0.0]])
    out = reference.simulate_discrete(np.array([[50.0, 0.0]]), np.array([[1.0], [0.0], [0.0]]), tau_syn=1.0,
                                      tau_mem=1.0, dt=0.1, recurrent_weight=rec)
    assert out["spikes"][0, 0] == 1.0
    # Neuron 1 receives 10 at step 1 (one step of delay).
    assert out["current"][0, 1] == 0.0 and out["current"][1, 1] == 10.0
    readout = reference.simulate_discrete(np.array([[50.0]]), np.array([[1.0]]), tau_syn=1.0, tau_mem=1.0,
                                          dt=0.1, readout=True)
    assert readout["spikes"][0, 0] == 0.0 and readout["v"][0, 0] > 1.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tau_syn=-1.0), "tau_syn must be finite and >= 0"),
        (dict(dt=-1.0), "dt"),
        (dict(reset="zero"), "reset"),
        (dict(inputs=np.zeros((3, 5))), "inputs"),
        (dict(recurrent_weight=np.zeros((3, 3))), "recurrent_weight"),
        (dict(v_th=0.2, v_reset=0.2), "v_reset must be < v_th"),
        (dict(v_leak=np.nan), "v_leak must be finite"),
    ],
)
def test_discrete_reference_rejects_bad_input(kwargs, match):
    args = dict(weight=np.ones((2, 1)), inputs=np.zeros((3, 2)), tau_syn=1.0, tau_mem=1.0, dt=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        reference.simulate_discrete(**args)
