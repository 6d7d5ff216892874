"""Calibration recovers the emulated chip's hidden thresholds and time constants; corrections help."""

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
    calibrate_layer,
    correct_weights,
    default_probes,
    time_correction,
)
from jaxsnn.spikes import Spikes

NOMINAL = LIFParameters(tau_syn=5e-3, tau_mem=1e-2, v_th=1.0)
N_LINES, SIZE = 8, 6


@pytest.fixture(scope="module")
def calibrated():
    config = EmulatorConfig()  # every non-ideality on: noise, jitter, clock, loss, quantisation
    chip = Emulator([EmulatedLayer(SIZE, NOMINAL, 16, 0.06)], config, chip_seed=3)
    tick = config.time_scale / config.clock_hz
    calibration = calibrate_layer(chip, N_LINES, NOMINAL, weight_scale=config.weight_scale, repetitions=16, clock_tick=tick)
    return chip, calibration


@pytest.mark.slow
def test_calibration_recovers_hidden_parameters(calibrated):
    chip, calibration = calibrated
    hidden = chip.hidden_parameters(0)
    assert np.all(calibration.n_spikes > 100)
    v_err = np.asarray(calibration.v_th) / np.asarray(hidden.v_th) - 1
    mem_err = np.asarray(calibration.tau_mem) / np.asarray(hidden.tau_mem) - 1
    syn_err = np.asarray(calibration.tau_syn) / np.asarray(hidden.tau_syn) - 1
    # stated tolerance, 3% per neuron, under realistic noise (1% trial-to-trial threshold noise,
    # 20 ns jitter, 8 ns clock, spike loss) with 16 repetitions of 15 probe protocols
    assert np.max(np.abs(v_err)) < 0.03, v_err
    assert np.max(np.abs(mem_err)) < 0.03, mem_err
    assert np.max(np.abs(syn_err)) < 0.03, syn_err
    # and much better than assuming the nominal values
    nominal_err = np.asarray(hidden.v_th) / NOMINAL.v_th - 1
    assert np.mean(np.abs(v_err)) < 0.6 * np.mean(np.abs(nominal_err))


def test_time_constants_identified_separately_from_threshold(calibrated):
    _, calibration = calibrated
    # the paired-pulse probes exist and were used: both taus differ from the nominal start
    probes, n_pre = default_probes(NOMINAL, N_LINES, 32.0)
    assert n_pre == N_LINES // 2 and any(p.delay > 0 for p in probes)
    assert not np.allclose(np.asarray(calibration.tau_mem), NOMINAL.tau_mem, rtol=1e-4)


def test_weight_correction_is_exact_for_threshold_offsets():
    """A chip with thresholds only off (no noise): corrected weights reproduce the nominal chip."""
    config = EmulatorConfig.ideal(threshold_fixed_std=0.1)
    chip = Emulator([EmulatedLayer(SIZE, NOMINAL, 16, 0.06)], config, chip_seed=5)
    ideal = Emulator([EmulatedLayer(SIZE, NOMINAL, 16, 0.06)], EmulatorConfig.ideal())
    hidden = chip.hidden_parameters(0)
    calibration = Calibration(hidden.v_th, hidden.tau_mem, hidden.tau_syn, np.zeros(SIZE), np.zeros(SIZE))
    rng = np.random.default_rng(0)
    weight = jnp.asarray(rng.uniform(0.2, 1.5, (N_LINES, SIZE)), jnp.float32)
    inputs = Spikes(jnp.asarray(np.sort(rng.uniform(0, 0.01, (3, N_LINES)), -1), jnp.float32),
                    jnp.tile(jnp.arange(N_LINES, dtype=jnp.int32), (3, 1)))
    wrapped = CalibratedBackend(chip, [calibration], [NOMINAL])
    (corrected,) = wrapped.run([{"weight": weight}], inputs, 0)
    (reference,) = ideal.run([{"weight": weight}], inputs, 0)
    (raw,) = chip.run([{"weight": weight}], inputs, 0)
    np.testing.assert_array_equal(corrected.idx, reference.idx)
    np.testing.assert_allclose(corrected.time, reference.time, rtol=1e-5)  # float32 rounding of the rescaled weights
    assert not np.array_equal(raw.time, reference.time)  # uncorrected, the offsets show
    np.testing.assert_allclose(np.asarray(correct_weights(weight, calibration, NOMINAL)),
                               np.asarray(weight) * np.asarray(hidden.v_th)[None, :], rtol=1e-6)


def test_time_correction_undoes_a_uniformly_slow_chip():
    slow = NOMINAL._replace(tau_syn=1.1 * NOMINAL.tau_syn, tau_mem=1.1 * NOMINAL.tau_mem)
    chip = Emulator([EmulatedLayer(SIZE, slow, 16, 0.06)], EmulatorConfig.ideal())
    ideal = Emulator([EmulatedLayer(SIZE, NOMINAL, 16, 0.06)], EmulatorConfig.ideal())
    calibration = Calibration(np.ones(SIZE), np.full(SIZE, slow.tau_mem), np.full(SIZE, slow.tau_syn), np.zeros(SIZE), np.zeros(SIZE))
    factor = time_correction([calibration], [NOMINAL])
    assert factor == pytest.approx(1.1, rel=1e-6)
    rng = np.random.default_rng(1)
    weight = jnp.asarray(rng.uniform(0.2, 1.5, (N_LINES, SIZE)), jnp.float32)
    inputs = Spikes(jnp.asarray(np.sort(rng.uniform(0, 0.01, (3, N_LINES)), -1), jnp.float32),
                    jnp.tile(jnp.arange(N_LINES, dtype=jnp.int32), (3, 1)))
    wrapped = CalibratedBackend(chip, [None], [NOMINAL], time_factor=factor)
    (corrected,) = wrapped.run([{"weight": weight}], inputs, 0)
    (reference,) = ideal.run([{"weight": weight}], inputs, 0)
    np.testing.assert_array_equal(corrected.idx, reference.idx)
    np.testing.assert_allclose(corrected.time, reference.time, rtol=1e-5)
