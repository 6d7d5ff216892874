"""Hardware in the loop: run the forward pass on a chip (or its emulator), train in software.

* ``Backend``: the protocol a chip driver implements (``run(params, input_spikes, trial)``).
* ``measure`` / ``measure_host``: call a backend from jitted code (``jax.pure_callback``) or
  eagerly, with every measurement sanitised (``SanitizePolicy``, ``MeasurementError``).
* ``Emulator``: an emulated BrainScaleS-2 style chip with documented, seedable non-idealities
  (``EmulatorConfig``); ``EmulatorConfig.ideal()`` equals the software simulation exactly.
* ``in_the_loop`` / ``inject``: measured spikes enter ``serial`` through ``external``; the
  gradient is EventProp at the measured spike times. ``guarded_step`` never loses parameters.
* ``calibrate_layer`` / ``correct_weights`` / ``CalibratedBackend``: estimate effective
  thresholds and time constants from probe runs and correct for them.
"""

from jaxsnn.hardware.backend import (
    Backend,
    backend_name,
    call_with_timeout,
    check_backend,
    measure,
    measure_host,
)
from jaxsnn.hardware.calibration import (
    CalibratedBackend,
    Calibration,
    Probe,
    calibrate_layer,
    default_probes,
    correct_weights,
    fit_calibration,
    probe_spikes,
    time_correction,
)
from jaxsnn.hardware.emulator import (
    MAX_WEIGHT_LEVEL,
    ChipParameters,
    EmulatedLayer,
    Emulator,
    EmulatorConfig,
    default_weights,
    duplicate_inputs,
    quantize_weights,
    replace_weights,
)
from jaxsnn.hardware.loop import StepOutcome, guarded_step, in_the_loop, inject
from jaxsnn.hardware.sanitize import (
    PROBLEMS,
    MeasurementError,
    SanitizePolicy,
    SanitizeReport,
    sanitize_layer,
)

__all__ = [
    "Backend",
    "CalibratedBackend",
    "Calibration",
    "Probe",
    "ChipParameters",
    "EmulatedLayer",
    "Emulator",
    "EmulatorConfig",
    "MAX_WEIGHT_LEVEL",
    "MeasurementError",
    "PROBLEMS",
    "SanitizePolicy",
    "SanitizeReport",
    "StepOutcome",
    "backend_name",
    "calibrate_layer",
    "call_with_timeout",
    "check_backend",
    "correct_weights",
    "default_probes",
    "default_weights",
    "duplicate_inputs",
    "fit_calibration",
    "guarded_step",
    "in_the_loop",
    "inject",
    "measure",
    "measure_host",
    "probe_spikes",
    "quantize_weights",
    "replace_weights",
    "sanitize_layer",
    "time_correction",
]
