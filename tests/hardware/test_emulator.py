"""The emulated chip: ideal == software exactly; each non-ideality acts in its documented direction."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn.event.kernels import resolve_kernel
from jaxsnn.event.neuron import LIFParameters
from jaxsnn.event.simulate import simulate
from jaxsnn.hardware import (
    Backend,
    EmulatedLayer,
    Emulator,
    EmulatorConfig,
    duplicate_inputs,
    measure_host,
    quantize_weights,
)
from jaxsnn.hardware.emulator import jitter_spikes, record_spikes
from jaxsnn.spikes import Spikes, first_spike_times

NEURON = LIFParameters(tau_syn=5e-3, tau_mem=1e-2, v_th=1.0)
T_MAX = 0.04
N_IN, N_HID, N_OUT = 4, 6, 3
CAP_HID, CAP_OUT = 12, 8
BATCH = 6


def _network():
    rng = np.random.default_rng(3)
    w1 = jnp.asarray(rng.uniform(0.8, 2.6, (N_IN, N_HID)), jnp.float32)
    w2 = jnp.asarray(rng.uniform(-0.5, 2.5, (N_HID, N_OUT)), jnp.float32)
    times = np.sort(rng.uniform(0.0, 0.01, (BATCH, N_IN)), axis=-1).astype(np.float32)
    idx = np.stack([rng.permutation(N_IN) for _ in range(BATCH)]).astype(np.int32)
    return [w1, w2], Spikes(jnp.asarray(times), jnp.asarray(idx))


PARAMS, INPUTS = _network()
TWO_LAYERS = [EmulatedLayer(N_HID, NEURON, CAP_HID, T_MAX), EmulatedLayer(N_OUT, NEURON, CAP_OUT, T_MAX)]
ONE_LAYER = TWO_LAYERS[:1]


@jax.jit
def _software(params, inputs):
    """The software model, layer by layer (scalar neuron parameters)."""
    def one(x):
        hidden = simulate(params[0], x, NEURON, capacity=CAP_HID, t_max=T_MAX).spikes
        out = simulate(params[1], hidden, NEURON, capacity=CAP_OUT, t_max=T_MAX).spikes
        return hidden, out
    return jax.vmap(one)(inputs)


@pytest.fixture(scope="module")
def software():
    hidden, out = _software(PARAMS, INPUTS)
    assert int(jnp.min(hidden.count())) > 0  # every sample has hidden spikes
    return hidden, out


@jax.jit
def _simulate_per_neuron(weight, inputs, neuron):
    # per-neuron parameter arrays, traced; the taus keep the 2:1 ratio, so the analytic kernel
    # (what "auto" picks for the emulator's concrete parameters) is named explicitly
    return jax.vmap(lambda x: simulate(weight, x, neuron, capacity=CAP_HID, t_max=T_MAX, kernel="quadratic").spikes)(inputs)


def _simulate_layer(weight, inputs, neuron):
    """One layer in software; one compiled function serves every parameter set."""
    neuron = LIFParameters(*[jnp.broadcast_to(jnp.asarray(v, jnp.float32), (N_HID,)) for v in neuron])
    return _simulate_per_neuron(weight, inputs, neuron)


# The emulator and the software model are two different XLA programs computing the same float32
# maths (the emulator draws its parameters, quantises and rescales inside its own jit); how XLA
# fuses each decides the last bits, so spike times are compared to float32 rounding (rtol 1e-6,
# about 8 ulp) and spike indices exactly. The ideal emulator with nominal parameters runs the
# software model's own program and stays bitwise equal.
TIME_RTOL = 1e-6


def _assert_same_spikes(emulated, expected):
    np.testing.assert_array_equal(emulated.idx, np.asarray(expected.idx))
    np.testing.assert_allclose(emulated.time, np.asarray(expected.time), rtol=TIME_RTOL, atol=0.0)


def test_ideal_emulator_equals_software_exactly(software):
    emulator = Emulator(TWO_LAYERS, EmulatorConfig.ideal(), chip_seed=7)
    assert isinstance(emulator, Backend)
    hidden, out = emulator.run(PARAMS, INPUTS, trial=0)
    np.testing.assert_array_equal(hidden.time, np.asarray(software[0].time))
    np.testing.assert_array_equal(hidden.idx, np.asarray(software[0].idx))
    np.testing.assert_array_equal(out.time, np.asarray(software[1].time))
    np.testing.assert_array_equal(out.idx, np.asarray(software[1].idx))
    assert int(np.sum(out.idx >= 0)) > 0


def test_quantize_weights_error_bound_and_saturation():
    scale = 20.0
    w = jnp.linspace(-4.0, 4.0, 2001)
    q = quantize_weights(w, scale)
    levels = np.asarray(q) * scale
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)  # on the 6-bit grid
    assert np.max(np.abs(levels)) <= 63 + 1e-4
    inside = np.abs(np.asarray(w)) <= 63.5 / scale
    assert np.max(np.abs(np.asarray(q - w))[inside]) <= 0.5 / scale + 1e-6
    np.testing.assert_allclose(np.asarray(q)[~inside], np.sign(np.asarray(w)[~inside]) * 63 / scale, rtol=1e-6)
    with pytest.raises(ValueError, match="weight_scale must be finite and > 0"):
        quantize_weights(w, 0.0)


def test_quantisation_in_emulator_equals_software_with_quantised_weights():
    scale = 8.0
    emulator = Emulator(ONE_LAYER, EmulatorConfig.ideal(weight_scale=scale))
    (hidden,) = emulator.run(PARAMS[:1], INPUTS, 0)
    _assert_same_spikes(hidden, _simulate_layer(quantize_weights(PARAMS[0], scale), INPUTS, NEURON))
    unquantised = _simulate_layer(PARAMS[0], INPUTS, NEURON)
    assert not np.allclose(hidden.time, np.asarray(unquantised.time), rtol=100 * TIME_RTOL, atol=0.0)


def test_fixed_pattern_thresholds_delay_or_advance_spikes():
    config = EmulatorConfig.ideal(threshold_fixed_std=0.1)
    emulator = Emulator(ONE_LAYER, config, chip_seed=11)
    v_th = np.asarray(emulator.hidden_parameters(0).v_th)
    # fixed per chip seed, different across chips
    np.testing.assert_array_equal(v_th, np.asarray(Emulator(ONE_LAYER, config, chip_seed=11).hidden_parameters(0).v_th))
    assert not np.allclose(v_th, np.asarray(Emulator(ONE_LAYER, config, chip_seed=12).hidden_parameters(0).v_th))
    (hidden,) = emulator.run(PARAMS[:1], INPUTS, 0)
    again = emulator.run(PARAMS[:1], INPUTS, 5)[0]
    np.testing.assert_array_equal(hidden.time, again.time)  # no trial-to-trial part
    _assert_same_spikes(hidden, _simulate_layer(PARAMS[0], INPUTS, NEURON._replace(v_th=jnp.asarray(v_th))))
    first_emu = np.asarray(jax.vmap(lambda s: first_spike_times(s, N_HID))(Spikes(*map(jnp.asarray, hidden))))
    first_sw = np.asarray(jax.vmap(lambda s: first_spike_times(s, N_HID))(_simulate_layer(PARAMS[0], INPUTS, NEURON)))
    higher, lower = v_th > 1.0, v_th < 1.0
    assert higher.any() and lower.any()
    # a higher threshold delays (or suppresses) the first spike, a lower one advances it
    assert np.all(first_emu[:, higher] >= first_sw[:, higher])
    assert np.all(first_emu[:, lower] <= first_sw[:, lower])


def test_trial_to_trial_threshold_noise_is_reproducible_per_trial():
    emulator = Emulator(ONE_LAYER, EmulatorConfig.ideal(threshold_trial_std=0.05), chip_seed=2)
    same_inputs = Spikes(jnp.tile(INPUTS.time[:1], (BATCH, 1)), jnp.tile(INPUTS.idx[:1], (BATCH, 1)))
    first = emulator.run(PARAMS[:1], same_inputs, 0)[0]
    np.testing.assert_array_equal(first.time, emulator.run(PARAMS[:1], same_inputs, 0)[0].time)
    assert not np.array_equal(first.time, emulator.run(PARAMS[:1], same_inputs, 1)[0].time)
    # every run (sample) of a batch draws its own noise
    assert len({tuple(row) for row in first.time.tolist()}) > 1


def test_time_constant_mismatch():
    common = Emulator(ONE_LAYER, EmulatorConfig.ideal(tau_mismatch_std=0.1, tau_mismatch_common=True), chip_seed=4)
    chip = common.hidden_parameters(0)
    np.testing.assert_array_equal(np.asarray(chip.tau_mem), 2 * np.asarray(chip.tau_syn))  # ratio kept
    assert np.std(np.log(np.asarray(chip.tau_mem))) > 0.02
    neuron = NEURON._replace(tau_mem=chip.tau_mem, tau_syn=chip.tau_syn)
    assert resolve_kernel("auto", neuron) == "quadratic"  # the fast analytic kernel still applies
    (hidden,) = common.run(PARAMS[:1], INPUTS, 0)
    _assert_same_spikes(hidden, _simulate_layer(PARAMS[0], INPUTS, neuron))
    independent = Emulator(ONE_LAYER, EmulatorConfig.ideal(tau_mismatch_std=0.1, tau_mismatch_common=False), chip_seed=4).hidden_parameters(0)
    ratio = np.asarray(independent.tau_mem) / np.asarray(independent.tau_syn)
    assert np.std(np.log(ratio)) > 0.05  # independent draws: the ratio varies per neuron
    # log-normal spread around the nominal value: median factor 1, std 0.1 in log space
    logs = np.log(np.asarray(Emulator([EmulatedLayer(2000, NEURON, 1, T_MAX)], EmulatorConfig.ideal(tau_mismatch_std=0.1)).hidden_parameters(0).tau_syn) / 5e-3)
    assert abs(np.mean(logs)) < 0.01 and abs(np.std(logs) - 0.1) < 0.01


def test_static_choices_are_resolved_once_from_the_nominal_parameters():
    """The chip's parameters are traced under jit: kernel and algorithm come from the nominal ones."""
    common = Emulator(ONE_LAYER, EmulatorConfig(tau_mismatch_common=True))
    assert common.plans[0].kernel == "quadratic" and common.plans[0].algorithm == "feedforward"
    independent = Emulator(ONE_LAYER, EmulatorConfig(tau_mismatch_common=False))
    assert independent.plans[0].kernel == "root"  # the ratio varies per neuron
    single_spike = Emulator([EmulatedLayer(N_HID, NEURON._replace(t_ref=T_MAX), CAP_HID, T_MAX)], EmulatorConfig())
    assert single_spike.plans[0].algorithm == "parallel"  # time scaling keeps t_ref >= t_max
    assert common.layer_backend(0).plans == common.plans[:1]
    with pytest.raises(ValueError, match=r"layers\[0\]: kernel='quadratic' needs the nominal tau ratio"):
        Emulator([EmulatedLayer(N_HID, NEURON, CAP_HID, T_MAX, kernel="quadratic")],
                 EmulatorConfig(tau_mismatch_common=False))
    with pytest.raises(ValueError, match=r"layers\[0\]: kernel='lambertw' needs tau_mem == tau_syn"):
        Emulator([EmulatedLayer(N_HID, NEURON, CAP_HID, T_MAX, kernel="lambertw")], EmulatorConfig.ideal())


def test_run_checks_weight_and_input_shapes():
    emulator = Emulator(TWO_LAYERS, EmulatorConfig.ideal())
    with pytest.raises(ValueError, match=r"layer 1 weight must have shape \(6, 3\), got \(5, 3\)"):
        emulator.run([PARAMS[0], np.ones((N_HID - 1, N_OUT), np.float32)], INPUTS, 0)
    with pytest.raises(ValueError, match=r"layer 0 weight must have shape \(n_inputs, 6\), got \(4,\)"):
        emulator.run([np.ones(N_IN, np.float32), PARAMS[1]], INPUTS, 0)
    with pytest.raises(ValueError, match=r"input_spikes must be a batch \(batch, capacity\)"):
        emulator.run(PARAMS, Spikes(INPUTS.time[0], INPUTS.idx[0]), 0)
    with pytest.raises(ValueError, match=r"Emulator input_spikes has indices >= n_neurons \(4\)"):
        emulator.run_jax(PARAMS, Spikes(INPUTS.time, INPUTS.idx + N_IN), 0)


def test_time_scale_round_trip_matches_software(software):
    emulator = Emulator(ONE_LAYER, EmulatorConfig.ideal(time_scale=1000.0))
    (hidden,) = emulator.run(PARAMS[:1], INPUTS, 0)
    np.testing.assert_array_equal(hidden.idx, np.asarray(software[0].idx))
    # chip microseconds back to model milliseconds: equal up to float32 rounding of the two rescalings
    np.testing.assert_allclose(hidden.time, np.asarray(software[0].time), rtol=1e-5)


def _random_spikes(seed, n=200, t_max=1.0):
    rng = np.random.default_rng(seed)
    time = np.sort(rng.uniform(0.1, 0.9, n)).astype(np.float32)
    idx = rng.integers(0, 10, n).astype(np.int32)
    time[-20:], idx[-20:] = np.inf, -1
    return Spikes(jnp.asarray(time), jnp.asarray(idx))


def test_jitter_has_the_configured_spread():
    spikes = _random_spikes(0)
    sigma = 1e-3
    jittered = jitter_spikes(spikes, jax.random.PRNGKey(0), sigma, 1.0)
    # times are far apart relative to sigma only on average, so compare sorted multisets per neuron
    valid = np.asarray(spikes.idx) >= 0
    shifts = []
    for neuron in range(10):
        a = np.sort(np.asarray(spikes.time)[valid & (np.asarray(spikes.idx) == neuron)])
        b = np.sort(np.asarray(jittered.time)[np.asarray(jittered.idx) == neuron])
        assert a.shape == b.shape
        shifts.append(b - a)
    shifts = np.concatenate(shifts)
    assert abs(np.mean(shifts)) < 4 * sigma / np.sqrt(shifts.size)
    assert 0.8 * sigma < np.std(shifts) < 1.2 * sigma  # 180 samples: std error ~5%
    finite = np.asarray(jittered.time)[np.isfinite(np.asarray(jittered.time))]
    assert finite.size == 180 and np.all(np.diff(finite) >= 0)
    np.testing.assert_array_equal(np.asarray(jittered.idx)[-20:], -1)


def test_recording_clock_loss_and_cap():
    spikes = _random_spikes(1)
    valid = np.asarray(spikes.idx) >= 0
    tick = 8e-3
    clocked = record_spikes(spikes, jax.random.PRNGKey(0), clock_tick=tick, spike_loss=0.0, record_capacity=None)
    steps = np.asarray(clocked.time)[valid] / tick
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # on the clock grid
    delta = np.asarray(spikes.time)[valid] - np.asarray(clocked.time)[valid]
    assert np.all(delta >= -1e-7) and np.all(delta < tick + 1e-7)  # floor: 0 <= t - t_rec < tick

    lossy = record_spikes(spikes, jax.random.PRNGKey(1), clock_tick=None, spike_loss=0.25, record_capacity=None)
    kept = np.asarray(lossy.idx) >= 0
    fraction_lost = 1 - kept.sum() / valid.sum()
    assert 0.15 < fraction_lost < 0.35  # 180 events, p = 0.25: 3 sigma ~ 0.1
    original = set(zip(np.asarray(spikes.time)[valid].tolist(), np.asarray(spikes.idx)[valid].tolist()))
    assert set(zip(np.asarray(lossy.time)[kept].tolist(), np.asarray(lossy.idx)[kept].tolist())) <= original

    capped = record_spikes(spikes, jax.random.PRNGKey(2), clock_tick=None, spike_loss=0.0, record_capacity=15)
    np.testing.assert_array_equal(np.asarray(capped.time)[:15], np.asarray(spikes.time)[:15])
    np.testing.assert_array_equal(np.asarray(capped.idx)[15:], -1)
    assert np.all(np.isinf(np.asarray(capped.time)[15:]))


def test_spike_loss_affects_recording_only(software):
    emulator = Emulator(TWO_LAYERS, EmulatorConfig.ideal(spike_loss=0.3), chip_seed=5)
    hidden, out = emulator.run(PARAMS, INPUTS, 0)
    # the output layer must still receive every hidden spike: then its recorded spikes sit
    # exactly at software times, a subset of them
    for measured, reference in zip((hidden, out), software):
        got = {(b, t, i) for b in range(BATCH) for t, i in zip(measured.time[b], measured.idx[b]) if i >= 0}
        ref = {(b, t, i) for b in range(BATCH) for t, i in zip(np.asarray(reference.time)[b], np.asarray(reference.idx)[b]) if i >= 0}
        assert got < ref  # a strict subset: some lost, none invented, none moved


def test_realistic_defaults_run_and_are_reproducible(software):
    emulator = Emulator(ONE_LAYER, EmulatorConfig(), chip_seed=0)
    (hidden,), report = measure_host(emulator, PARAMS[:1], INPUTS, 3)
    assert int(report.counts.sum()) == 0  # the emulator never returns malformed data
    (again,), _ = measure_host(emulator, PARAMS[:1], INPUTS, 3)
    np.testing.assert_array_equal(hidden.time, again.time)
    (other,), _ = measure_host(emulator, PARAMS[:1], INPUTS, 4)
    assert not np.array_equal(hidden.time, other.time)
    tick = EmulatorConfig().time_scale / EmulatorConfig().clock_hz  # 8 us in the model
    steps = hidden.time[hidden.idx >= 0] / tick
    np.testing.assert_allclose(steps, np.round(steps), atol=2e-3)
    assert not np.array_equal(hidden.time, np.asarray(software[0].time))


def test_config_validation_and_duplication():
    with pytest.raises(ValueError, match="spike_loss must be in"):
        EmulatorConfig(spike_loss=1.0)
    with pytest.raises(ValueError, match="jitter_std must be finite and >= 0"):
        EmulatorConfig(jitter_std=-1.0)
    with pytest.raises(ValueError, match="clock_hz must be None or finite and > 0"):
        EmulatorConfig(clock_hz=0.0)
    with pytest.raises(ValueError, match="record_capacity"):
        EmulatorConfig(record_capacity=0)
    with pytest.raises(ValueError, match="v_th must be > v_reset"):
        Emulator([EmulatedLayer(3, NEURON._replace(v_th=-1.0), 4, 1.0)])
    assert set(dataclasses.asdict(EmulatorConfig())) == set(EmulatorConfig().to_dict())

    spikes = Spikes(jnp.array([0.1, 0.3, jnp.inf]), jnp.array([1, 0, -1], jnp.int32))
    dup = duplicate_inputs(spikes, 2, 3)
    np.testing.assert_array_equal(np.asarray(dup.idx), [3, 4, 5, 0, 1, 2, -1, -1, -1])
    np.testing.assert_array_equal(np.asarray(dup.time)[:6], np.float32([0.1, 0.1, 0.1, 0.3, 0.3, 0.3]))
    with pytest.raises(ValueError, match="copies must be an int >= 1"):
        duplicate_inputs(spikes, 2, 0)
