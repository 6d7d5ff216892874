"""Backend protocol, the pure_callback bridge, sanitisation of bad measurements, guarded steps."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn.hardware import (
    PROBLEMS,
    Backend,
    MeasurementError,
    SanitizePolicy,
    check_backend,
    guarded_step,
    measure,
    measure_host,
    sanitize_layer,
)
from jaxsnn.spikes import Spikes


class EchoBackend:
    """Minimal backend: one layer of 4 neurons whose 'measurement' is a fixed function of the input.

    Each input event (t, j) produces an output event (t + 0.5 * w[j], j) where w = params[0].
    """

    layer_sizes = (4,)
    capacities = (6,)

    def __init__(self):
        self.calls = 0

    def run(self, params, input_spikes, trial):
        self.calls += 1
        shift = np.asarray(params[0])[np.maximum(input_spikes.idx, 0)]
        time = np.where(input_spikes.idx >= 0, input_spikes.time + 0.5 * shift, np.inf)
        order = np.argsort(time, axis=-1, kind="stable")
        return [
            Spikes(np.take_along_axis(time, order, -1), np.take_along_axis(input_spikes.idx, order, -1))
        ]


class FixedBackend:
    """Returns a fixed (possibly corrupted) measurement of one layer with 3 neurons."""

    layer_sizes = (3,)
    capacities = (4,)

    def __init__(self, time, idx):
        self.time = np.asarray(time, np.float32)[None]
        self.idx = np.asarray(idx, np.int32)[None]

    def run(self, params, input_spikes, trial):
        return [Spikes(self.time, self.idx)]


def _inputs():
    return Spikes(
        jnp.array([[0.1, 0.2, 0.3, jnp.inf], [0.0, 0.4, jnp.inf, jnp.inf]], jnp.float32),
        jnp.array([[0, 2, 3, -1], [1, 1, -1, -1]], jnp.int32),
    )


PARAMS = [jnp.array([0.2, 0.4, 0.6, 0.8], jnp.float32)]


def test_protocol_conformance():
    backend = EchoBackend()
    assert isinstance(backend, Backend)
    assert check_backend(backend) is backend
    with pytest.raises(TypeError, match="not a jaxsnn.hardware.Backend"):
        check_backend(object())

    class Mismatched(EchoBackend):
        capacities = (6, 6)

    with pytest.raises(TypeError, match="equal length"):
        check_backend(Mismatched())


def test_measure_host_and_callback_agree_and_pad_to_capacity():
    backend = EchoBackend()
    (eager,), report = measure_host(backend, PARAMS, _inputs(), 0)
    assert eager.time.shape == (2, 6)
    np.testing.assert_allclose(eager.time[0, :3], [0.2, 0.5, 0.7], rtol=1e-6)  # t + w[j] / 2
    np.testing.assert_array_equal(eager.idx[0], [0, 2, 3, -1, -1, -1])
    assert np.all(np.isinf(eager.time[0, 3:]))
    assert int(np.sum(report.counts)) == 0

    jitted = jax.jit(lambda p, x, trial: measure(backend, p, x, trial))
    (traced,), traced_report = jitted(PARAMS, _inputs(), 3)
    np.testing.assert_array_equal(np.asarray(traced.time), eager.time)
    np.testing.assert_array_equal(np.asarray(traced.idx), eager.idx)
    assert traced_report.counts.shape == (1, len(PROBLEMS))


def test_measurement_carries_no_gradient():
    backend = EchoBackend()

    def loss(p):
        (spikes,), _ = measure(backend, p, _inputs(), 0)
        return jnp.sum(jnp.where(spikes.idx >= 0, spikes.time, 0.0)) + jnp.sum(p[0])

    grad = jax.jit(jax.grad(loss))(PARAMS)
    # only the explicit sum(p) term contributes: the hardware is not differentiated
    np.testing.assert_array_equal(np.asarray(grad[0]), np.ones(4))


# ---- the bad-measurement table: (case, time, idx, problem, repaired time, repaired idx) ----
BAD = [
    ("nan", [0.1, np.nan, 0.3], [0, 1, 2], "nan", [0.1, 0.3], [0, 2]),
    ("negative", [-0.2, 0.1, 0.3], [0, 1, 2], "negative", [0.1, 0.3], [1, 2]),
    ("infinite", [0.1, np.inf, 0.3], [0, 1, 2], "infinite", [0.1, 0.3], [0, 2]),
    ("unsorted", [0.3, 0.1, 0.2], [0, 1, 2], "unsorted", [0.1, 0.2, 0.3], [1, 2, 0]),
    ("out_of_range", [0.1, 0.2, 0.3], [0, 7, 2], "out_of_range", [0.1, 0.3], [0, 2]),
    ("below_padding", [0.1, 0.2, 0.3], [0, -5, 2], "out_of_range", [0.1, 0.3], [0, 2]),
    ("duplicate", [0.1, 0.2, 0.2], [0, 1, 1], "duplicate", [0.1, 0.2], [0, 1]),
    ("overflow", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [0, 1, 2, 0, 1, 2], "overflow",
     [0.1, 0.2, 0.3, 0.4], [0, 1, 2, 0]),
]
MESSAGES = {
    "nan": "NaN time",
    "negative": "negative time",
    "infinite": "infinite time",
    "unsorted": "out of time order",
    "out_of_range": "neuron index outside the layer",
    "duplicate": "duplicate event",
    "overflow": "beyond the buffer capacity",
}


@pytest.mark.parametrize("case,time,idx,problem,good_time,good_idx", BAD, ids=[row[0] for row in BAD])
def test_bad_measurement_strict_raises_naming_layer_and_problem(case, time, idx, problem, good_time, good_idx):
    backend = FixedBackend(time, idx)
    with pytest.raises(MeasurementError, match=f"hidden.*{MESSAGES[problem]}"):
        measure_host(backend, PARAMS, Spikes(*(a[:1] for a in _inputs())), 0, policy=SanitizePolicy(mode="strict"), layer_names=["hidden"])


@pytest.mark.parametrize("case,time,idx,problem,good_time,good_idx", BAD, ids=[row[0] for row in BAD])
def test_bad_measurement_repair_drops_and_counts(case, time, idx, problem, good_time, good_idx):
    out_time, out_idx, counts, n_events = sanitize_layer(
        np.asarray(time, np.float32)[None], np.asarray(idx, np.int32)[None],
        n_neurons=3, capacity=4, policy=SanitizePolicy(mode="repair", max_drop_fraction=1.0), layer="hidden",
    )
    n = len(good_time)
    np.testing.assert_allclose(out_time[0, :n], good_time, rtol=1e-7)
    np.testing.assert_array_equal(out_idx[0, :n], good_idx)
    assert np.all(np.isinf(out_time[0, n:])) and np.all(out_idx[0, n:] == -1)
    expected = len(time) - n if problem != "unsorted" else 3
    assert counts[PROBLEMS.index(problem)] == expected
    assert counts.sum() == expected  # no other rule fired
    assert n_events == len(time)


def test_repair_rejects_garbage_beyond_max_drop_fraction():
    backend = FixedBackend([np.nan, np.nan, 0.3], [0, 1, 2])
    inputs = Spikes(*(a[:1] for a in _inputs()))
    with pytest.raises(MeasurementError, match=r"hidden: measurement rejected: 2 of 3 events"):
        measure_host(backend, PARAMS, inputs, 0, policy=SanitizePolicy(max_drop_fraction=0.5), layer_names=["hidden"])
    (_, ), report = measure_host(backend, PARAMS, inputs, 0, policy=SanitizePolicy(max_drop_fraction=0.7))
    assert report.dropped().tolist() == [2]
    assert report.as_dict(["hidden"]) == {"hidden": {"nan": 2}}


def test_late_events_with_t_max():
    _, out_idx, counts, _ = sanitize_layer(
        np.array([[0.1, 0.9, 1.5]]), np.array([[0, 1, 2]]), n_neurons=3, capacity=4,
        policy=SanitizePolicy(t_max=1.0, max_drop_fraction=1.0), layer="l",
    )
    assert counts[PROBLEMS.index("late")] == 1 and out_idx[0].tolist() == [0, 1, -1, -1]


def test_late_events_in_strict_mode_raise_naming_layer_count_and_problem():
    backend = FixedBackend([0.1, 0.9, 1.5, 1.7], [0, 1, 2, 0])
    inputs = Spikes(*(a[:1] for a in _inputs()))
    with pytest.raises(MeasurementError, match=r"hidden: bad measurement: 2 event\(s\) after t_max \(use SanitizePolicy\(mode='repair'\)"):
        measure_host(backend, PARAMS, inputs, 0, policy=SanitizePolicy(mode="strict", t_max=1.0), layer_names=["hidden"])
    # an event exactly at t_max is inside the window; without t_max nothing is late
    (spikes,), report = measure_host(FixedBackend([0.1, 1.0], [0, 1]), PARAMS, inputs, 0,
                                     policy=SanitizePolicy(mode="strict", t_max=1.0))
    assert spikes.idx[0].tolist() == [0, 1, -1, -1] and int(report.counts.sum()) == 0
    (spikes,), _ = measure_host(backend, PARAMS, inputs, 0, policy=SanitizePolicy(mode="strict"))
    assert spikes.idx[0].tolist() == [0, 1, 2, 0]


def test_finite_time_on_a_padding_slot_is_normalised_without_counting():
    # slot 1 is padding (idx -1) with a finite time, which carries no event: it is neither
    # dropped, nor "unsorted" (0.5 before 0.3), nor an error in strict mode
    time, idx = np.array([[0.1, 0.5, 0.3, 0.2]], np.float32), np.array([[0, -1, 2, -1]], np.int32)
    for mode in ("strict", "repair"):
        out_time, out_idx, counts, n_events = sanitize_layer(
            time, idx, n_neurons=3, capacity=4, policy=SanitizePolicy(mode=mode, max_drop_fraction=0.0), layer="l",
        )
        np.testing.assert_array_equal(out_time[0], np.float32([0.1, 0.3, np.inf, np.inf]))
        assert out_idx[0].tolist() == [0, 2, -1, -1]
        assert counts.tolist() == [0] * len(PROBLEMS) and n_events == 2


def test_event_with_several_defects_is_counted_once_under_its_first_problem():
    # each bad event breaks several rules; it is counted once, under the first rule of PROBLEMS
    time = np.array([[np.nan, np.inf, -0.5, 2.0, 2.0, 0.1, 0.4]], np.float32)
    idx = np.array([[7, 9, 8, 5, 5, 0, 1]], np.int32)
    #                nan+range, inf+range, negative+range, late+range (x2, duplicates), good, good
    out_time, out_idx, counts, n_events = sanitize_layer(
        time, idx, n_neurons=3, capacity=4, policy=SanitizePolicy(t_max=1.0, max_drop_fraction=1.0), layer="l",
    )
    expected = dict(nan=1, infinite=1, negative=1, late=2)
    assert {name: int(counts[k]) for k, name in enumerate(PROBLEMS) if counts[k]} == expected
    assert int(counts.sum()) == 5 and n_events == 7
    assert out_idx[0].tolist() == [0, 1, -1, -1]
    np.testing.assert_allclose(out_time[0, :2], [0.1, 0.4])
    # strict mode names each first problem with its count, and nothing twice
    with pytest.raises(MeasurementError) as error:
        sanitize_layer(time, idx, n_neurons=3, capacity=4, policy=SanitizePolicy(mode="strict", t_max=1.0), layer="l")
    message = str(error.value)
    assert message.startswith("l: bad measurement: 1 event(s) with a NaN time, 1 real event(s) with an infinite time, "
                              "1 event(s) with a negative time, 2 event(s) after t_max (")
    assert "outside the layer" not in message and "duplicate" not in message


def test_malformed_backend_outputs():
    class WrongCount(EchoBackend):
        def run(self, params, input_spikes, trial):
            return []

    class WrongType(EchoBackend):
        def run(self, params, input_spikes, trial):
            return [np.zeros((2, 6))]

    class WrongBatch(EchoBackend):
        def run(self, params, input_spikes, trial):
            return [Spikes(np.zeros((1, 6), np.float32), np.zeros((1, 6), np.int32))]

    with pytest.raises(MeasurementError, match="returned 0 layer measurements, expected 1"):
        measure_host(WrongCount(), PARAMS, _inputs())
    with pytest.raises(MeasurementError, match="layer 0: expected a jaxsnn.Spikes"):
        measure_host(WrongType(), PARAMS, _inputs())
    with pytest.raises(MeasurementError, match=r"layer 0: measured buffer has shape \(1, 6\), expected \(2, n_events\)"):
        measure_host(WrongBatch(), PARAMS, _inputs())
    with pytest.raises(ValueError, match="SanitizePolicy.mode"):
        SanitizePolicy(mode="lenient")


class RaisingBackend(EchoBackend):
    def __init__(self, fail_on):
        super().__init__()
        self.fail_on = set(fail_on)

    def run(self, params, input_spikes, trial):
        if self.calls + 1 in self.fail_on:
            self.calls += 1
            raise RuntimeError("FPGA link down")
        return EchoBackend.run(self, params, input_spikes, trial)


class SlowBackend(EchoBackend):
    def run(self, params, input_spikes, trial):
        time.sleep(2.0)
        return EchoBackend.run(self, params, input_spikes, trial)


def test_backend_that_raises_or_times_out():
    with pytest.raises(MeasurementError, match=r"backend RaisingBackend \(trial 5\) failed: RuntimeError: FPGA link down"):
        measure_host(RaisingBackend({1}), PARAMS, _inputs(), 5)
    start = time.perf_counter()
    with pytest.raises(MeasurementError, match=r"backend SlowBackend \(trial 0\) timed out: no answer within 0.2 s"):
        measure_host(SlowBackend(), PARAMS, _inputs(), timeout_s=0.2)
    assert time.perf_counter() - start < 1.5


def test_error_inside_jit_reaches_caller_with_message():
    backend = FixedBackend([np.nan, 0.2, 0.3], [0, 1, 2])
    inputs = Spikes(*(a[:1] for a in _inputs()))
    jitted = jax.jit(lambda p, x: measure(backend, p, x, 0, policy=SanitizePolicy(mode="strict"), layer_names=["hidden"]))
    with pytest.raises(jax.errors.JaxRuntimeError, match="hidden: bad measurement: 1 event"):
        jax.block_until_ready(jitted(PARAMS, inputs))


def _make_step(backend):
    @jax.jit
    def gradient(p, measured_time):
        # a toy loss of the measurement and the parameters
        return jax.grad(lambda q: jnp.sum(q[0] ** 2) + 0.0 * jnp.sum(jnp.where(jnp.isfinite(measured_time), measured_time, 0.0)))(p)

    def step(params, opt_state, inputs, trial):
        (spikes,), _ = measure_host(backend, params, inputs, trial)
        grad = gradient(params, jnp.asarray(spikes.time))
        return [params[0] - 0.1 * grad[0]], opt_state + 1, {"trial": trial}

    return step


def test_guarded_step_keeps_parameters_when_backend_fails():
    backend = RaisingBackend({2})
    step = _make_step(backend)
    params, opt_state = PARAMS, 0
    history = []
    for trial in range(3):
        before = params
        params, opt_state, outcome = guarded_step(step, params, opt_state, _inputs(), trial)
        history.append(outcome)
        if not outcome.applied:
            assert params is before  # the very same parameters: nothing lost, nothing half-applied
    assert [o.applied for o in history] == [True, False, True]
    assert "FPGA link down" in history[1].reason
    assert opt_state == 2
    np.testing.assert_allclose(np.asarray(params[0]), np.asarray(PARAMS[0]) * 0.8**2, rtol=1e-6)


def test_guarded_step_rejects_non_finite_update_and_jit_errors():
    def exploding(params, opt_state):
        return [params[0] * jnp.nan], opt_state, None

    params, state, outcome = guarded_step(exploding, PARAMS, 0)
    assert params is PARAMS and not outcome.applied and "non-finite" in outcome.reason

    backend = FixedBackend([np.nan, 0.2, 0.3], [0, 1, 2])
    inputs = Spikes(*(a[:1] for a in _inputs()))

    @jax.jit
    def jitted_step(p, s):
        (spikes,), _ = measure(backend, p, inputs, 0, policy=SanitizePolicy(mode="strict"))
        return [p[0] + 0.0 * jnp.sum(jnp.where(spikes.idx >= 0, spikes.time, 0.0))], s, None

    params, state, outcome = guarded_step(jitted_step, PARAMS, 0)
    assert params is PARAMS and not outcome.applied and "bad measurement" in outcome.reason

    def buggy(params, opt_state):
        raise KeyError("a programming error is not swallowed")

    with pytest.raises(KeyError):
        guarded_step(buggy, PARAMS, 0)
