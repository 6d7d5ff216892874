"""Calibration: estimate a chip's effective thresholds and time constants from probe runs.

Probe. Every neuron of a layer receives ``n_lines`` simultaneous input spikes at ``t = 0``
through synapses of equal weight ``q / weight_scale`` (on the weight grid, so quantisation
adds no error). From rest, the total weight ``A = n_lines q / weight_scale`` gives
``u(t) = v(t) - v_leak = A K(t)`` with the PSP kernel::

    K(t) = tau_syn / (tau_syn - tau_mem) (exp(-t / tau_syn) - exp(-t / tau_mem))

so the first spike time ``t_1`` solves ``A K(t_1) = theta`` with ``theta = v_th - v_leak``.
After each spike ``u`` restarts from ``u_reset = v_reset - v_leak`` (after the refractory
period ``t_ref``) while the current keeps decaying, so spike ``k`` solves
``u_reset exp(-(t_k - s_k) / tau_mem) + A exp(-s_k / tau_syn) K(t_k - s_k) = theta`` with
``s_k = t_{k-1} + t_ref``. Paired probes add a conditioning pulse before the test pulse; what
is left of its PSP decays with ``tau_mem``. Several amplitudes and delays, each repeated,
determine ``(theta, tau_mem, tau_syn)`` per neuron; ``v_leak``, ``v_reset`` and ``t_ref`` are
taken as known.

Fit. A chip's threshold also fluctuates from run to run (``threshold_trial_std`` in the
emulator): within one run every spike crosses the same threshold ``theta_r``, but
``theta_r`` differs between runs. Fitting one common threshold to all runs turns that noise
into errors of several percent in ``tau_mem`` (``theta`` and ``tau_mem`` trade off against
each other in first-spike times) and lets near-tangential crossings, whose times a small
threshold change moves a lot, dominate the fit. So the fit works within runs:

* For given time constants, the membrane ``u_k`` reached at each measured spike time
  follows in closed form from the protocol and the run's earlier spikes (``_fit_one``).
  The run's threshold ``theta_r`` is the weighted mean of its ``u_k``; the residual of
  spike ``k`` is ``(u_k - theta_r) / w_k``, a time error with ``w_k`` the membrane slope at
  the crossing, softly floored at ``theta / tau_mem`` (``w_k = sqrt(slope_k^2 +
  (theta / tau_mem)^2)``) so that near-tangential crossings weigh less.
* Levenberg-Marquardt on ``log tau_mem, log tau_syn`` minimises these residuals (runs with
  a single spike have none), started from the nominal values, then refits once without
  outliers (residuals beyond four times the RMS, e.g. around a lost spike).
* ``theta`` is the mean of the runs' ``theta_r``, over the probes in which every repetition
  spiked (so runs that stayed silent because their threshold happened to be high do not
  bias it; all runs if no probe is complete).

Starting from the nominal ``tau_mem > tau_syn`` selects the physical branch of the symmetry
``(theta, tau_mem, tau_syn) -> (theta tau_mem / tau_syn, tau_syn, tau_mem)`` of first-spike
times; later spikes of a run break it. With noiseless measurements the fit recovers the
parameters to float32 rounding (tested).

Correction. Because the dynamics are linear in ``v - v_leak``, a neuron with threshold
distance ``theta_i`` driven by weights ``W[:, i] theta_i / theta`` behaves exactly like the
nominal neuron driven by ``W[:, i]`` up to its first spike (``correct_weights``; exact up to
weight quantisation, and for later spikes too when ``v_reset == v_leak``).
A global time-constant deviation is corrected by stretching time (``time_correction``):
inputs are sent at ``c t`` and outputs read at ``t / c``.
"""

from __future__ import annotations

from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn.event.dynamics import psp_kernel
from jaxsnn.event.neuron import LIFParameters, validate_parameters
from jaxsnn.hardware.backend import Backend, check_backend, measure_host
from jaxsnn.hardware.emulator import default_weights, replace_weights
from jaxsnn.hardware.sanitize import SanitizePolicy
from jaxsnn.spikes import Spikes


class Calibration(NamedTuple):
    """Measured per-neuron parameters of one layer, model units.

    Attributes:
        v_th: ``(size,)`` effective thresholds (``v_leak + theta``).
        tau_mem: ``(size,)`` membrane time constants.
        tau_syn: ``(size,)`` synaptic time constants.
        n_spikes: ``(size,)`` probe spikes used by each neuron's fit.
        rms_residual: ``(size,)`` root-mean-square time residual of each fit.
    """

    v_th: np.ndarray
    tau_mem: np.ndarray
    tau_syn: np.ndarray
    n_spikes: np.ndarray
    rms_residual: np.ndarray


class Probe(NamedTuple):
    """One probe protocol: a conditioning pulse at ``t = 0`` and a test pulse at ``delay``.

    The first ``n_pre`` input lines spike at ``t = 0`` with weight ``pre_level / weight_scale``
    each; the remaining ``n_test`` lines spike at ``delay`` with ``level / weight_scale``.
    ``delay = 0`` with ``pre_level == level`` drives all lines at once.

    Attributes:
        pre_level: 6-bit level of the conditioning lines (0 = none).
        delay: time of the test pulse, model units.
        level: 6-bit level of the test lines.
    """

    pre_level: int
    delay: float
    level: int


def probe_spikes(
    backend: Backend,
    n_inputs: int,
    probes: Sequence[Probe],
    *,
    n_pre: int,
    weight_scale: float,
    repetitions: int = 16,
    max_spikes: int = 6,
    send_offset: float = 0.0,
    make_params: Callable[[np.ndarray], Any] = lambda weight: {"weight": weight},
    trial: int = 0,
    policy: SanitizePolicy = SanitizePolicy(),
) -> np.ndarray:
    """Run probe protocols on a single-layer backend and collect each neuron's spike times.

    Args:
        backend: a backend measuring one layer with ``n_inputs`` input lines.
        n_inputs: input lines of the layer.
        probes: the protocols, one backend run each.
        n_pre: lines ``0..n_pre-1`` carry the conditioning pulse, the others the test pulse.
        weight_scale: the chip's weight levels per unit weight.
        repetitions: samples per protocol (batch size of each run).
        max_spikes: spikes kept per neuron and run (the earliest).
        send_offset: added to the test pulse time when sending (half a clock tick makes a
            time-stamp clock that floors input times reproduce ``delay`` exactly).
        make_params: builds the layer's params from an ``(n_inputs, size)`` weight matrix.
        trial: first trial number; protocol ``k`` uses ``trial + k``.
        policy: sanitising policy for the measurements.

    Returns:
        ``(len(probes), repetitions, size, max_spikes)`` spike times, ascending per neuron,
        NaN-padded.

    Raises:
        ValueError: on inconsistent arguments.
        MeasurementError: if a probe measurement is bad.
    """
    check_backend(backend)
    if len(backend.layer_sizes) != 1:
        raise ValueError(f"the probe backend must measure exactly one layer, it measures {len(backend.layer_sizes)}")
    if not 1 <= n_pre < n_inputs:
        raise ValueError(f"n_pre must be in [1, n_inputs={n_inputs}), got {n_pre}")
    size = backend.layer_sizes[0]
    dtype = jnp.zeros(()).dtype
    times = np.full((len(probes), repetitions, size, max_spikes), np.nan)
    for k, probe in enumerate(probes):
        for level in (probe.pre_level, probe.level):
            if not 0 <= int(level) <= 63:
                raise ValueError(f"probe levels must be ints in [0, 63], got {probe}")
        if not probe.delay >= 0:
            raise ValueError(f"probe delay must be >= 0, got {probe}")
        weight = np.zeros((n_inputs, size), dtype=dtype)
        weight[:n_pre] = int(probe.pre_level) / weight_scale
        weight[n_pre:] = int(probe.level) / weight_scale
        test_time = probe.delay + send_offset if probe.delay > 0 else 0.0
        row = np.concatenate([np.zeros(n_pre), np.full(n_inputs - n_pre, test_time)]).astype(dtype)
        inputs = Spikes(np.tile(row, (repetitions, 1)), np.tile(np.arange(n_inputs, dtype=np.int32), (repetitions, 1)))
        (measured,), _ = measure_host(backend, [make_params(weight)], inputs, trial + k, policy=policy)
        for sample in range(repetitions):
            for neuron in range(size):
                own = measured.time[sample][measured.idx[sample] == neuron][:max_spikes]
                times[k, sample, neuron, : own.size] = own
    return times


def _fit_one(times, pre_amp, delay, test_amp, start, theta_scale, u_reset, t_ref, iterations: int):
    """Fit one neuron: ``(theta, tau_mem, tau_syn)``, spikes used, equations, RMS time residual.

    ``times``: ``(n_probes, repetitions, max_spikes)``, NaN = no spike. Spike ``k`` of a run
    starts at ``b`` (the test pulse for the first spike, the previous spike plus ``t_ref``
    after) from ``(u_b, I_b)`` and reaches ``u_k = u_b exp(-(t - b) / tau_mem) + I_b K(t - b)``
    at its measured time ``t``, with slope ``(I(t) - u_k) / tau_mem``; see the module
    docstring for the residuals.
    """
    shape = times.shape
    finite = jnp.isfinite(times)
    d = jnp.broadcast_to(delay[:, None, None], shape)
    # a paired run that spiked before its test pulse is outside the model: drop the run
    early = jnp.any(finite & (times < d), axis=-1, keepdims=True)
    valid = finite & ~early
    safe_t = jnp.where(valid, times, 0.0)
    a1 = jnp.broadcast_to(pre_amp[:, None, None], shape)
    a2 = jnp.broadcast_to(test_amp[:, None, None], shape)
    first = jnp.arange(shape[-1]) == 0
    previous = jnp.concatenate(
        [jnp.zeros(shape[:-1] + (1,), times.dtype), safe_t[..., :-1]], axis=-1
    )
    begin = jnp.where(first, d, jnp.maximum(previous + t_ref, d))
    elapsed = jnp.where(valid, jnp.maximum(safe_t - begin, 0.0), 1.0)

    def reached(log_taus):
        """Membrane reached at each measured spike, and the residual scale (its slope)."""
        tau_mem, tau_syn = jnp.exp(log_taus[0]), jnp.exp(log_taus[1])
        u_begin = jnp.where(first, a1 * psp_kernel(d, tau_mem, tau_syn), u_reset)
        i_begin = a1 * jnp.exp(-begin / tau_syn) + a2 * jnp.exp(-(begin - d) / tau_syn)
        kernel = psp_kernel(elapsed, tau_mem, tau_syn)
        potential = u_begin * jnp.exp(-elapsed / tau_mem) + i_begin * kernel
        # tau_mem du/dt = I - u
        slope = (i_begin * jnp.exp(-elapsed / tau_syn) - potential) / tau_mem
        return potential, jnp.sqrt(slope * slope + (theta_scale / tau_mem) ** 2)

    def run_thresholds(potential, scale, weight):
        w = weight / (scale * scale)
        return jnp.sum(w * potential, axis=-1) / jnp.maximum(jnp.sum(w, axis=-1), 1e-30)

    def raw_residuals(log_taus, weight):
        potential, scale = reached(log_taus)
        theta_run = run_thresholds(potential, scale, weight)[..., None]
        return jnp.where(weight > 0, (potential - theta_run) / scale, 0.0)

    def within_run_dof(weight):
        # each run with n spikes gives n - 1 equations for the time constants
        return jnp.sum(jnp.maximum(jnp.sum(weight > 0, axis=-1) - 1, 0))

    def levenberg_marquardt(start, weight):
        def residuals(log_taus):
            return raw_residuals(log_taus, weight).ravel()

        def step(state, _):
            log_taus, damping = state
            r = residuals(log_taus)
            jac = jax.jacfwd(residuals)(log_taus)
            normal = jac.T @ jac
            lhs = normal + damping * jnp.diag(jnp.diag(normal) + 1e-30)
            gradient = jac.T @ r
            # the 2 x 2 damped normal equations in closed form (positive definite)
            det = lhs[0, 0] * lhs[1, 1] - lhs[0, 1] * lhs[1, 0]
            delta = -jnp.stack([
                lhs[1, 1] * gradient[0] - lhs[0, 1] * gradient[1],
                lhs[0, 0] * gradient[1] - lhs[1, 0] * gradient[0],
            ]) / det
            candidate = log_taus + jnp.clip(delta, -0.3, 0.3)
            r_candidate = residuals(candidate)
            better = jnp.sum(r_candidate * r_candidate) < jnp.sum(r * r)
            log_taus = jnp.where(better, candidate, log_taus)
            damping = jnp.where(better, damping * 0.3, damping * 10.0)
            return (log_taus, jnp.clip(damping, 1e-9, 1e9)), None

        initial = (start, jnp.asarray(1e-3, start.dtype))
        (log_taus, _), _ = jax.lax.scan(step, initial, None, length=iterations)
        return log_taus

    def fit_round(log_taus, outlier_factor):
        # round 0 (factor inf) uses every spike; round 1 drops outliers of round 0, e.g. the
        # spike after a lost one (its interval looks twice as long)
        r = raw_residuals(log_taus, valid.astype(times.dtype))
        rms = jnp.sqrt(jnp.sum(r * r) / jnp.maximum(within_run_dof(valid), 1))
        inlier = valid & (jnp.isinf(outlier_factor) | (jnp.abs(r) <= outlier_factor * rms))
        return levenberg_marquardt(log_taus, inlier.astype(times.dtype)), inlier

    # the two rounds as one scan: the solver is traced (and compiled) once
    log_taus, inliers = jax.lax.scan(fit_round, start, jnp.asarray([jnp.inf, 4.0], times.dtype))
    inlier = inliers[-1]
    weight = inlier.astype(times.dtype)
    r = raw_residuals(log_taus, weight)
    dof = within_run_dof(weight)
    potential, scale = reached(log_taus)
    theta_run = run_thresholds(potential, scale, weight)  # (n_probes, repetitions)
    spiked = jnp.any(inlier, axis=-1)
    complete = jnp.all(spiked, axis=-1, keepdims=True)  # probes in which every repetition spiked
    counted = jnp.where(jnp.any(complete), spiked & complete, spiked)
    theta = jnp.sum(jnp.where(counted, theta_run, 0.0)) / jnp.maximum(jnp.sum(counted), 1)
    params = jnp.concatenate([theta[None], jnp.exp(log_taus)])
    return params, jnp.sum(inlier), dof, jnp.sqrt(jnp.sum(r * r) / jnp.maximum(dof, 1))


# one compiled fit per shape for the whole process (vectorised over neurons)
_fit_layer = jax.jit(jax.vmap(_fit_one, in_axes=(0,) + (None,) * 8), static_argnums=(8,))


def fit_calibration(
    times: np.ndarray,
    probes: Sequence[Probe],
    nominal: LIFParameters,
    *,
    n_pre: int,
    n_test: int,
    weight_scale: float,
    clock_tick: Optional[float] = None,
    iterations: int = 40,
) -> Calibration:
    """Fit per-neuron thresholds and time constants to probe spike times.

    See the module docstring for the model and the fit. Jitted and vectorised over neurons.

    Args:
        times: ``(n_probes, repetitions, size, max_spikes)`` spike times (NaN = none), as
            returned by ``probe_spikes``.
        probes: the protocols that produced them.
        nominal: nominal scalar parameters: the fit starts from ``tau_mem``/``tau_syn``;
            ``v_leak``, ``v_reset`` and ``t_ref`` are taken as known (any ``v_reset < v_th``).
        n_pre: conditioning lines per probe.
        n_test: test lines per probe.
        weight_scale: the chip's weight levels per unit weight.
        clock_tick: the recording clock period in model units, if time stamps are floored to
            a clock; half a tick is added to undo the floor's mean bias.
        iterations: Levenberg-Marquardt iterations (each of the two rounds).

    Returns:
        The ``Calibration`` of the layer. Neurons whose runs give fewer than 3 within-run
        equations (runs with ``n`` spikes give ``n - 1``) get NaN parameters.

    Raises:
        ValueError: if shapes or arguments are inconsistent.
    """
    validate_parameters(nominal)
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 4 or times.shape[0] != len(probes):
        raise ValueError(
            f"times must be (n_probes, repetitions, size, max_spikes) with n_probes = len(probes), "
            f"got {times.shape} for {len(probes)} probes"
        )
    for name, value in (("n_pre", n_pre), ("n_test", n_test), ("iterations", iterations)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not (np.isfinite(weight_scale) and weight_scale > 0):
        raise ValueError(f"weight_scale must be finite and > 0, got {weight_scale!r}")
    if clock_tick is not None and not (np.isfinite(clock_tick) and clock_tick > 0):
        raise ValueError(f"clock_tick must be None or finite and > 0, got {clock_tick!r}")
    if clock_tick is not None:
        times = times + 0.5 * clock_tick
    pre_amp = np.array([n_pre * p.pre_level for p in probes], np.float64) / weight_scale
    test_amp = np.array([n_test * p.level for p in probes], np.float64) / weight_scale
    delay = np.array([p.delay for p in probes], np.float64)
    theta0 = float(nominal.v_th) - float(nominal.v_leak)
    start = np.log(np.array([float(nominal.tau_mem), float(nominal.tau_syn)]))
    u_reset = float(nominal.v_reset) - float(nominal.v_leak)
    dtype = jnp.zeros(()).dtype
    constants = [
        jnp.asarray(x, dtype)
        for x in (pre_amp, delay, test_amp, start, theta0, u_reset, float(nominal.t_ref))
    ]
    per_neuron = jnp.asarray(np.moveaxis(times, 2, 0), dtype)
    params, n_used, dof, rms = _fit_layer(per_neuron, *constants, int(iterations))
    params = np.asarray(params, np.float64)
    params[np.asarray(dof) < 3] = np.nan
    return Calibration(
        v_th=float(nominal.v_leak) + params[:, 0],
        tau_mem=params[:, 1],
        tau_syn=params[:, 2],
        n_spikes=np.asarray(n_used),
        rms_residual=np.asarray(rms, np.float64),
    )


def default_probes(
    nominal: LIFParameters, n_inputs: int, weight_scale: float, clock_tick: Optional[float] = None
) -> Tuple[List[Probe], int]:
    """The default probe set for a layer with ``n_inputs`` lines.

    With ``A*`` the nominal rheobase (total weight whose PSP peak just reaches threshold):
    10 single pulses on all lines from 1.1 to 4 ``A*`` (clipped to the 6-bit range), which
    fix ``theta tau_mem`` and, through repeated spikes on the decaying current, ``tau_syn``;
    and 5 paired pulses, a conditioning pulse of about 0.7 ``A*`` on half of the lines
    followed after 0.3 to 3 ``tau_mem`` by a test pulse of about 1.6 ``A*`` on the other
    half: what is left of the conditioning PSP decays with ``tau_mem``, which separates
    ``tau_mem`` from ``theta``.

    Args:
        nominal: nominal scalar parameters.
        n_inputs: input lines (>= 2).
        weight_scale: the chip's weight levels per unit weight.
        clock_tick: if given, delays are rounded to the clock grid.

    Returns:
        ``(probes, n_pre)``.

    Raises:
        ValueError: if the 6-bit range cannot make the neurons fire.
    """
    if n_inputs < 2:
        raise ValueError(f"calibration needs at least 2 input lines, got {n_inputs}")
    theta = float(nominal.v_th) - float(nominal.v_leak)
    grid = np.linspace(0.0, 20.0, 4001) * float(nominal.tau_mem)
    peak = float(np.max(np.asarray(psp_kernel(jnp.asarray(grid), float(nominal.tau_mem), float(nominal.tau_syn)))))
    rheobase = theta / peak
    n_pre = n_inputs // 2
    n_test = n_inputs - n_pre
    if 1.8 * rheobase / n_test * weight_scale > 63:
        raise ValueError(
            f"with {n_inputs} lines and weight_scale {weight_scale} the 6-bit range cannot make the "
            "neurons fire reliably; use a layer with more input lines or a smaller weight_scale"
        )
    probes: List[Probe] = []
    top = min(4.0, 63 * n_inputs / weight_scale / rheobase)
    for factor in np.linspace(1.1, top, 10):
        level = int(np.clip(np.round(factor * rheobase / n_inputs * weight_scale), 1, 63))
        probes.append(Probe(level, 0.0, level))
    pre_level = int(np.clip(np.round(0.7 * rheobase / n_pre * weight_scale), 1, 63))
    test_level = int(np.clip(np.round(1.6 * rheobase / n_test * weight_scale), 1, 63))
    for factor in (0.3, 0.6, 1.0, 1.6, 3.0):
        delay = factor * float(nominal.tau_mem)
        if clock_tick is not None:
            delay = round(delay / clock_tick) * clock_tick
        probes.append(Probe(pre_level, delay, test_level))
    return probes, n_pre


def calibrate_layer(
    backend: Backend,
    n_inputs: int,
    nominal: LIFParameters,
    *,
    weight_scale: float,
    repetitions: int = 16,
    clock_tick: Optional[float] = None,
    make_params: Callable[[np.ndarray], Any] = lambda weight: {"weight": weight},
    trial: int = 0,
) -> Calibration:
    """Probe a single-layer backend with ``default_probes`` and fit its neurons.

    Args:
        backend: a single-layer backend (e.g. ``Emulator.layer_backend(l)``).
        n_inputs: input lines of the layer.
        nominal: nominal scalar ``LIFParameters`` of the layer.
        weight_scale: the chip's weight levels per unit weight.
        repetitions: runs per protocol.
        clock_tick: recording clock period in model units, if the chip floors time stamps
            (inputs are sent half a tick late so that they land on the intended tick).
        make_params: builds the layer's params from a weight matrix.
        trial: first trial number.

    Returns:
        The layer's ``Calibration``.

    Raises:
        ValueError: if the 6-bit range cannot make the neurons fire.
        MeasurementError: if a probe measurement is bad.
    """
    probes, n_pre = default_probes(nominal, n_inputs, weight_scale, clock_tick)
    times = probe_spikes(
        backend,
        n_inputs,
        probes,
        n_pre=n_pre,
        weight_scale=weight_scale,
        repetitions=repetitions,
        send_offset=0.0 if clock_tick is None else 0.5 * clock_tick,
        make_params=make_params,
        trial=trial,
    )
    return fit_calibration(
        times, probes, nominal, n_pre=n_pre, n_test=n_inputs - n_pre, weight_scale=weight_scale,
        clock_tick=clock_tick,
    )


def correct_weights(weight: Any, calibration: Calibration, nominal: LIFParameters) -> jax.Array:
    """Rescale a layer's input weights so each neuron behaves as if it had the nominal threshold.

    ``W'[:, i] = W[:, i] (v_th_i - v_leak) / (v_th - v_leak)``: exact for threshold deviations
    because the dynamics are linear in ``v - v_leak`` (quantisation of ``W'`` aside), up to
    each neuron's first spike; after it only when ``v_reset == v_leak`` (the reset distance
    is not rescaled). Neurons without a calibration (NaN) keep their weights.

    Args:
        weight: ``(n_in, size)`` weight matrix.
        calibration: the layer's ``Calibration``.
        nominal: the nominal parameters the software model assumes.

    Returns:
        The corrected weight matrix.
    """
    theta_nominal = float(nominal.v_th) - float(nominal.v_leak)
    factor = (np.asarray(calibration.v_th) - float(nominal.v_leak)) / theta_nominal
    factor = np.where(np.isfinite(factor), factor, 1.0)
    weight = jnp.asarray(weight)
    return weight * jnp.asarray(factor, weight.dtype)[None, :]


def time_correction(calibrations: Sequence[Calibration], nominals: Sequence[LIFParameters]) -> float:
    """Global factor ``c`` by which the chip's time constants exceed the nominal ones.

    ``c`` is the geometric mean over all calibrated neurons of
    ``sqrt(tau_mem_i tau_syn_i / (tau_mem tau_syn))``. Send inputs at ``c t`` and read outputs
    at ``t / c`` (``CalibratedBackend``) to run a uniformly slow or fast chip at model speed.

    Args:
        calibrations: one ``Calibration`` per layer.
        nominals: the nominal parameters of each layer.

    Returns:
        The factor ``c`` (1 for a chip on nominal speed).
    """
    logs: List[np.ndarray] = []
    for calibration, nominal in zip(calibrations, nominals):
        ratio = np.asarray(calibration.tau_mem) * np.asarray(calibration.tau_syn) / (
            float(nominal.tau_mem) * float(nominal.tau_syn)
        )
        logs.append(0.5 * np.log(ratio[np.isfinite(ratio)]))
    return float(np.exp(np.mean(np.concatenate(logs))))


class CalibratedBackend:
    """A ``Backend`` wrapper applying calibration corrections to every run.

    Weights of each layer are corrected with ``correct_weights``; input times are multiplied
    by ``time_factor`` and measured times divided by it.

    Args:
        backend: the wrapped backend.
        calibrations: one ``Calibration`` per measured layer (``None`` = no weight correction).
        nominals: the nominal ``LIFParameters`` of each layer.
        time_factor: the factor from ``time_correction`` (1 = none).
        get_weights: extracts the weight matrix from one layer's params.
        set_weights: returns the layer's params with the weight matrix replaced.
    """

    def __init__(
        self,
        backend: Backend,
        calibrations: Sequence[Optional[Calibration]],
        nominals: Sequence[LIFParameters],
        time_factor: float = 1.0,
        get_weights: Callable[[Any], Any] = default_weights,
        set_weights: Callable[[Any, Any], Any] = replace_weights,
    ) -> None:
        check_backend(backend)
        if len(calibrations) != len(backend.layer_sizes) or len(nominals) != len(backend.layer_sizes):
            raise ValueError("calibrations and nominals need one entry per measured layer")
        if not (np.isfinite(time_factor) and time_factor > 0):
            raise ValueError(f"time_factor must be finite and > 0, got {time_factor!r}")
        self.backend = backend
        self.calibrations = list(calibrations)
        self.nominals = list(nominals)
        self.time_factor = float(time_factor)
        self.get_weights = get_weights
        self.set_weights = set_weights
        self.layer_sizes = tuple(backend.layer_sizes)
        self.capacities = tuple(backend.capacities)
        self.name = f"Calibrated({getattr(backend, 'name', type(backend).__name__)})"

    def run(self, params: Sequence[Any], input_spikes: Spikes, trial: int) -> List[Spikes]:
        """``Backend.run`` with corrected weights and stretched time."""
        corrected = []
        for layer_params, calibration, nominal in zip(params, self.calibrations, self.nominals):
            if calibration is None:
                corrected.append(layer_params)
                continue
            weight = correct_weights(self.get_weights(layer_params), calibration, nominal)
            corrected.append(self.set_weights(layer_params, np.asarray(weight)))
        stretched = Spikes(
            np.where(np.asarray(input_spikes.idx) >= 0, np.asarray(input_spikes.time) * self.time_factor, np.inf),
            np.asarray(input_spikes.idx),
        )
        measured = self.backend.run(corrected, stretched, trial)
        return [
            Spikes(np.asarray(m.time) / self.time_factor, np.asarray(m.idx)) for m in measured
        ]
