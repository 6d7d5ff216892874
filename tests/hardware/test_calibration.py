"""Calibration recovers a chip's thresholds and time constants; the corrections undo them.

Three sources of probe data: the float64 reference simulator (``jaxsnn.testing.reference``,
independent of the emulator and of the fit), an ideal emulated chip (``probe_spikes`` must
reproduce the reference), and emulated chips with every non-ideality on (``calibrate_layer``
end to end).
"""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn.event.neuron import LIFParameters
from jaxsnn.hardware import (
    CalibratedBackend,
    Calibration,
    EmulatedLayer,
    Emulator,
    EmulatorConfig,
    Probe,
    calibrate_layer,
    correct_weights,
    default_probes,
    fit_calibration,
    probe_spikes,
    time_correction,
)
from jaxsnn.spikes import Spikes
from jaxsnn.testing import reference

NOMINAL = LIFParameters(tau_syn=5e-3, tau_mem=1e-2, v_th=1.0)
N_LINES, SIZE = 8, 6
WEIGHT_SCALE = 32.0
T_MAX = 0.06
REPETITIONS = 16  # with SIZE neurons and 6 spikes per run, every fit in this file has one shape: one compile


def _reference_probe_times(probes, n_pre, neuron, *, repetitions=1, max_spikes=6, threshold_trial_std=0.0,
                           threshold_offsets=None, distinct=None, seed=0):
    """Probe spike times ``(n_probes, repetitions, size, max_spikes)`` from the float64 reference.

    ``neuron`` holds per-neuron arrays; with ``threshold_trial_std`` every run draws its own
    thresholds ``v_th + theta * std * z`` (what a chip's trial-to-trial noise does); or
    ``threshold_offsets`` ``(distinct,)`` gives run ``r`` of every probe the thresholds
    ``v_th + theta * offsets[r]``. Only ``distinct`` runs per probe are simulated (the
    reference is slow); repetition ``r`` repeats run ``r % distinct``.
    """
    rng = np.random.default_rng(seed)
    size = np.shape(neuron.v_th)[0]
    theta = np.asarray(neuron.v_th) - np.asarray(neuron.v_leak)
    times = np.full((len(probes), repetitions, size, max_spikes), np.nan)
    if distinct is None:
        noisy = threshold_trial_std > 0 or threshold_offsets is not None
        distinct = repetitions if noisy else 1
    for k, probe in enumerate(probes):
        weight = np.zeros((N_LINES, size))
        weight[:n_pre] = probe.pre_level / WEIGHT_SCALE
        weight[n_pre:] = probe.level / WEIGHT_SCALE
        input_times = np.concatenate([np.zeros(n_pre), np.full(N_LINES - n_pre, probe.delay)])
        for rep in range(distinct):
            if threshold_offsets is not None:
                v_th = np.asarray(neuron.v_th) + theta * threshold_offsets[rep]
            else:
                v_th = np.asarray(neuron.v_th) + theta * threshold_trial_std * rng.standard_normal(size)
            out_t, out_i = reference.simulate_event(
                weight, input_times, np.arange(N_LINES), neuron._replace(v_th=v_th), T_MAX
            )
            for n in range(size):
                own = out_t[out_i == n][:max_spikes]
                times[k, rep, n, : own.size] = own
    times[:, distinct:] = times[:, np.arange(distinct, repetitions) % distinct]
    return times


# ---- fit_calibration on exact reference data -------------------------------------------------

# off-nominal time constants (each neuron its own ratio), offset thresholds, a reset below the
# leak potential (v_reset != v_leak), a refractory period and a nonzero leak potential
SYNTHETIC_NOMINAL = LIFParameters(tau_syn=5e-3, tau_mem=1e-2, v_th=1.2, v_reset=-0.1, v_leak=0.2, t_ref=1e-3)
SYNTHETIC_CHIP = SYNTHETIC_NOMINAL._replace(
    tau_mem=np.array([1.2e-2, 0.9e-2, 1.0e-2, 1.1e-2, 0.8e-2, 1.0e-2]),
    tau_syn=np.array([4.5e-3, 5.5e-3, 5.0e-3, 4.0e-3, 5.0e-3, 6.0e-3]),
    v_th=np.array([1.1, 1.2, 1.3, 1.25, 1.15, 1.2]),
)


@pytest.fixture(scope="module")
def synthetic_probes():
    probes, n_pre = default_probes(SYNTHETIC_NOMINAL, N_LINES, WEIGHT_SCALE)
    return probes, n_pre


@pytest.mark.parametrize("threshold_trial_std", [0.0, 0.01])
def test_fit_recovers_off_nominal_parameters_from_reference_probe_times(synthetic_probes, threshold_trial_std):
    """Noiseless spike times fix (v_th, tau_mem, tau_syn) to float32 rounding (1e-5 relative;
    5e-7 reached). With 1 % run-to-run threshold noise the time constants stay exact (each
    run is fitted with its own threshold) and v_th is the mean over runs: within 0.5 % for
    15 probes x 4 distinct runs (the standard error is about 0.13 %)."""
    probes, n_pre = synthetic_probes
    times = _reference_probe_times(probes, n_pre, SYNTHETIC_CHIP, repetitions=REPETITIONS,
                                   threshold_trial_std=threshold_trial_std, distinct=4 if threshold_trial_std else 1)
    calibration = fit_calibration(times, probes, SYNTHETIC_NOMINAL, n_pre=n_pre, n_test=N_LINES - n_pre,
                                  weight_scale=WEIGHT_SCALE)
    n_spikes = np.sum(np.isfinite(times), axis=(0, 1, 3))
    fired = np.sum(np.isfinite(times[:, 0, :, 0]), axis=0)
    assert np.all(fired >= 14), fired  # each neuron fired in (almost) every probe
    assert np.all(calibration.n_spikes >= 0.99 * n_spikes)  # (almost) no spike was discarded
    np.testing.assert_allclose(calibration.tau_mem, SYNTHETIC_CHIP.tau_mem, rtol=1e-5)
    np.testing.assert_allclose(calibration.tau_syn, SYNTHETIC_CHIP.tau_syn, rtol=1e-5)
    theta = SYNTHETIC_CHIP.v_th - SYNTHETIC_CHIP.v_leak
    theta_tolerance = 1e-5 if threshold_trial_std == 0 else 5e-3
    np.testing.assert_allclose(np.asarray(calibration.v_th) - SYNTHETIC_CHIP.v_leak, theta, rtol=theta_tolerance)
    assert np.all(calibration.rms_residual < 1e-7)  # time residuals, model units (tau_syn = 5e-3)


def test_runs_silent_because_of_a_high_threshold_do_not_bias_the_threshold(synthetic_probes):
    """Repetitions alternate thresholds 5 % above and below the truth. Where a weak probe
    fires only in the low-threshold runs, averaging the runs that fired would put v_th too
    low; averaging over the probes in which every run fired gives it exactly."""
    probes, n_pre = synthetic_probes
    offsets = [0.05, -0.05]
    times = _reference_probe_times(probes, n_pre, SYNTHETIC_CHIP, repetitions=REPETITIONS, threshold_offsets=offsets,
                                   distinct=2)
    fired = np.isfinite(times[:, :, :, 0])
    censored = np.any(fired, axis=1) & ~np.all(fired, axis=1)  # (probe, neuron): only some runs fired
    assert np.all(fired[:, 1::2] | ~fired[:, ::2])  # a high-threshold run never fired alone
    assert np.sum(censored) >= 2, censored
    calibration = fit_calibration(times, probes, SYNTHETIC_NOMINAL, n_pre=n_pre, n_test=N_LINES - n_pre,
                                  weight_scale=WEIGHT_SCALE)
    np.testing.assert_allclose(calibration.v_th, SYNTHETIC_CHIP.v_th, rtol=1e-5)
    np.testing.assert_allclose(calibration.tau_mem, SYNTHETIC_CHIP.tau_mem, rtol=1e-5)


def test_fit_drops_a_lost_spike_and_reports_silent_neurons_as_nan(synthetic_probes):
    probes, n_pre = synthetic_probes
    times = _reference_probe_times(probes, n_pre, SYNTHETIC_CHIP, repetitions=REPETITIONS)
    strongest = 9  # the strongest single pulse: the longest spike trains
    assert np.sum(np.isfinite(times[strongest, 0, 1])) >= 4
    times[strongest, 0, 1, 1:-1] = times[strongest, 0, 1, 2:].copy()  # neuron 1 loses its second spike
    times[strongest, 0, 1, -1] = np.nan
    times[:, :, 5] = np.nan  # neuron 5 never fired
    calibration = fit_calibration(times, probes, SYNTHETIC_NOMINAL, n_pre=n_pre, n_test=N_LINES - n_pre,
                                  weight_scale=WEIGHT_SCALE)
    for name in ("v_th", "tau_mem", "tau_syn"):
        np.testing.assert_allclose(getattr(calibration, name)[:5], getattr(SYNTHETIC_CHIP, name)[:5], rtol=1e-5)
    kept = np.sum(np.isfinite(times), axis=(0, 1, 3))
    assert calibration.n_spikes[1] < kept[1]  # the spike after the gap was dropped as an outlier
    np.testing.assert_array_equal(calibration.n_spikes[[0, 2, 3, 4]], kept[[0, 2, 3, 4]])
    assert calibration.n_spikes[5] == 0
    assert np.isnan(calibration.v_th[5]) and np.isnan(calibration.tau_mem[5]) and np.isnan(calibration.tau_syn[5])


def test_fit_calibration_rejects_bad_arguments(synthetic_probes):
    probes, n_pre = synthetic_probes
    times = np.full((len(probes), 1, 2, 3), np.nan)
    kwargs = dict(n_pre=n_pre, n_test=N_LINES - n_pre, weight_scale=WEIGHT_SCALE)
    with pytest.raises(ValueError, match=r"times must be \(n_probes, repetitions, size, max_spikes\) with "
                                         r"n_probes = len\(probes\), got \(15, 1, 2, 3\) for 14 probes"):
        fit_calibration(times, probes[:-1], SYNTHETIC_NOMINAL, **kwargs)
    with pytest.raises(ValueError, match="weight_scale must be finite and > 0, got 0.0"):
        fit_calibration(times, probes, SYNTHETIC_NOMINAL, **dict(kwargs, weight_scale=0.0))
    with pytest.raises(ValueError, match="n_test must be an int >= 1, got 0"):
        fit_calibration(times, probes, SYNTHETIC_NOMINAL, **dict(kwargs, n_test=0))
    with pytest.raises(ValueError, match="clock_tick must be None or finite and > 0, got -1.0"):
        fit_calibration(times, probes, SYNTHETIC_NOMINAL, clock_tick=-1.0, **kwargs)
    with pytest.raises(ValueError, match="v_th"):
        fit_calibration(times, probes, SYNTHETIC_NOMINAL._replace(v_reset=2.0), **kwargs)


# ---- probe_spikes on an ideal chip equals the reference -------------------------------------

# Emulators shared by the tests below, each always run with batch BATCH: one compile each.
# The capacity holds every spike of a probe run (the emulated chip drops events beyond it).
BATCH, CAPACITY = 3, 64


@pytest.fixture(scope="module")
def threshold_chip():
    """An ideal chip except for fixed-pattern threshold offsets (10 % std)."""
    return Emulator([EmulatedLayer(SIZE, NOMINAL, CAPACITY, T_MAX)], EmulatorConfig.ideal(threshold_fixed_std=0.1), chip_seed=5)


@pytest.fixture(scope="module")
def ideal_chip():
    return Emulator([EmulatedLayer(SIZE, NOMINAL, CAPACITY, T_MAX)], EmulatorConfig.ideal())


def test_probe_spikes_on_an_ideal_chip_equals_the_reference_simulation(threshold_chip):
    chip = threshold_chip
    hidden = chip.hidden_parameters(0)
    probes = [Probe(30, 0.0, 30), Probe(63, 0.0, 63), Probe(20, 4e-3, 50)]
    n_pre = 3  # an uneven split of the 8 lines: conditioning and test lines must not be swapped
    measured = probe_spikes(chip, N_LINES, probes, n_pre=n_pre, weight_scale=WEIGHT_SCALE, repetitions=BATCH, max_spikes=3)
    neuron = NOMINAL._replace(v_th=np.asarray(hidden.v_th, np.float64))
    expected = _reference_probe_times(probes, n_pre, neuron, repetitions=BATCH, max_spikes=3)
    assert measured.shape == (3, BATCH, SIZE, 3)
    np.testing.assert_array_equal(np.isnan(measured), np.isnan(expected))
    assert np.sum(np.isfinite(expected[:, :, :, 2])) > 0  # some trains are truncated at max_spikes
    assert np.all(np.isfinite(expected[:, :, :, 0]))  # every neuron fired in every probe
    np.testing.assert_allclose(measured, expected, rtol=2e-5)


def test_probe_spikes_rejects_bad_arguments():
    chip = Emulator([EmulatedLayer(2, NOMINAL, 4, T_MAX)], EmulatorConfig.ideal())
    two_layers = Emulator([EmulatedLayer(2, NOMINAL, 4, T_MAX)] * 2, EmulatorConfig.ideal())
    good = [Probe(10, 0.0, 10)]
    with pytest.raises(ValueError, match="the probe backend must measure exactly one layer, it measures 2"):
        probe_spikes(two_layers, N_LINES, good, n_pre=4, weight_scale=WEIGHT_SCALE)
    with pytest.raises(ValueError, match=r"n_pre must be in \[1, n_inputs=8\), got 8"):
        probe_spikes(chip, N_LINES, good, n_pre=8, weight_scale=WEIGHT_SCALE)
    with pytest.raises(ValueError, match=r"probe levels must be ints in \[0, 63\], got Probe\(pre_level=64"):
        probe_spikes(chip, N_LINES, [Probe(64, 0.0, 10)], n_pre=4, weight_scale=WEIGHT_SCALE)
    with pytest.raises(ValueError, match=r"probe delay must be >= 0, got Probe\(pre_level=10, delay=-0.001"):
        probe_spikes(chip, N_LINES, [Probe(10, -1e-3, 10)], n_pre=4, weight_scale=WEIGHT_SCALE)


# ---- calibrate_layer on emulated chips with every non-ideality on ---------------------------

@pytest.fixture(scope="module")
def offset_chip():
    """Thresholds offset by 10 % (std), nominal time constants; noise, jitter, clock, loss on."""
    config = EmulatorConfig(threshold_fixed_std=0.1, tau_mismatch_std=0.0)
    chip = Emulator([EmulatedLayer(SIZE, NOMINAL, 16, T_MAX)], config, chip_seed=3)
    tick = config.time_scale / config.clock_hz
    calibration = calibrate_layer(chip, N_LINES, NOMINAL, weight_scale=config.weight_scale, repetitions=16, clock_tick=tick)
    return chip, calibration


def test_time_constants_identified_separately_from_threshold(offset_chip):
    """Offset thresholds must not leak into the time constants: with 1 % trial-to-trial
    threshold noise, 20 ns jitter, the 8 ns clock and spike loss, 16 repetitions of the 15
    default probes give both taus within 2 % of the (nominal) truth, and the thresholds within
    2 % while they are off by up to 14 %."""
    chip, calibration = offset_chip
    hidden_v_th = np.asarray(chip.hidden_parameters(0).v_th)
    assert np.max(np.abs(hidden_v_th / NOMINAL.v_th - 1)) > 0.1  # the offsets are large
    assert np.all(calibration.n_spikes > 300)
    for name in ("tau_mem", "tau_syn"):
        error = np.asarray(getattr(calibration, name)) / getattr(NOMINAL, name) - 1
        assert np.all(np.abs(error) < 0.02), (name, error)  # NaN fails too
    v_error = np.asarray(calibration.v_th) / hidden_v_th - 1
    assert np.all(np.abs(v_error) < 0.02), v_error


@pytest.mark.slow
def test_calibration_recovers_hidden_parameters():
    """The default (realistic) chip: per-neuron thresholds (2 %) and time constants (3 %) off
    nominal, every non-ideality on: all three recovered within 2 % per neuron."""
    config = EmulatorConfig()
    chip = Emulator([EmulatedLayer(SIZE, NOMINAL, 16, T_MAX)], config, chip_seed=3)
    tick = config.time_scale / config.clock_hz
    calibration = calibrate_layer(chip, N_LINES, NOMINAL, weight_scale=config.weight_scale, repetitions=16, clock_tick=tick)
    hidden = chip.hidden_parameters(0)
    assert np.all(calibration.n_spikes > 300)
    errors = {name: np.asarray(getattr(calibration, name)) / np.asarray(getattr(hidden, name)) - 1
              for name in ("v_th", "tau_mem", "tau_syn")}
    for name in ("tau_mem", "tau_syn"):
        assert np.max(np.abs(np.asarray(getattr(hidden, name)) / getattr(NOMINAL, name) - 1)) > 0.02  # off nominal
    for name, error in errors.items():
        assert np.all(np.abs(error) < 0.02), (name, error)
    # and much better than assuming the nominal values
    nominal_err = np.asarray(hidden.v_th) / NOMINAL.v_th - 1
    assert np.mean(np.abs(errors["v_th"])) < 0.6 * np.mean(np.abs(nominal_err))


# ---- corrections -----------------------------------------------------------------------------

def test_weight_correction_is_exact_for_threshold_offsets(threshold_chip, ideal_chip):
    """A chip with thresholds only off (no noise): corrected weights reproduce the nominal chip."""
    chip, ideal = threshold_chip, ideal_chip
    hidden = chip.hidden_parameters(0)
    calibration = Calibration(hidden.v_th, hidden.tau_mem, hidden.tau_syn, np.zeros(SIZE), np.zeros(SIZE))
    rng = np.random.default_rng(0)
    weight = jnp.asarray(rng.uniform(0.2, 1.5, (N_LINES, SIZE)), jnp.float32)
    inputs = Spikes(jnp.asarray(np.sort(rng.uniform(0, 0.01, (BATCH, N_LINES)), -1), jnp.float32),
                    jnp.tile(jnp.arange(N_LINES, dtype=jnp.int32), (BATCH, 1)))
    wrapped = CalibratedBackend(chip, [calibration], [NOMINAL])
    (corrected,) = wrapped.run([{"weight": weight}], inputs, 0)
    (reference_out,) = ideal.run([{"weight": weight}], inputs, 0)
    (raw,) = chip.run([{"weight": weight}], inputs, 0)
    np.testing.assert_array_equal(corrected.idx, reference_out.idx)
    np.testing.assert_allclose(corrected.time, reference_out.time, rtol=1e-5)  # float32 rounding of the rescaled weights
    assert not np.array_equal(raw.time, reference_out.time)  # uncorrected, the offsets show
    np.testing.assert_allclose(np.asarray(correct_weights(weight, calibration, NOMINAL)),
                               np.asarray(weight) * np.asarray(hidden.v_th)[None, :], rtol=1e-6)


def test_time_correction_undoes_a_uniformly_slow_chip(ideal_chip):
    slow = NOMINAL._replace(tau_syn=1.1 * NOMINAL.tau_syn, tau_mem=1.1 * NOMINAL.tau_mem)
    chip = Emulator([EmulatedLayer(SIZE, slow, CAPACITY, T_MAX)], EmulatorConfig.ideal())
    ideal = ideal_chip
    calibration = Calibration(np.ones(SIZE), np.full(SIZE, slow.tau_mem), np.full(SIZE, slow.tau_syn), np.zeros(SIZE), np.zeros(SIZE))
    factor = time_correction([calibration], [NOMINAL])
    assert factor == pytest.approx(1.1, rel=1e-6)
    rng = np.random.default_rng(1)
    weight = jnp.asarray(rng.uniform(0.2, 1.5, (N_LINES, SIZE)), jnp.float32)
    inputs = Spikes(jnp.asarray(np.sort(rng.uniform(0, 0.01, (BATCH, N_LINES)), -1), jnp.float32),
                    jnp.tile(jnp.arange(N_LINES, dtype=jnp.int32), (BATCH, 1)))
    wrapped = CalibratedBackend(chip, [None], [NOMINAL], time_factor=factor)
    (corrected,) = wrapped.run([{"weight": weight}], inputs, 0)
    (reference_out,) = ideal.run([{"weight": weight}], inputs, 0)
    np.testing.assert_array_equal(corrected.idx, reference_out.idx)
    np.testing.assert_allclose(corrected.time, reference_out.time, rtol=1e-5)
