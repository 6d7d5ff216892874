"""Timing and machine-information helpers shared by every benchmark worker.

This module uses only the standard library and NumPy so that it can be imported by the
workers running inside the peers' virtual environments (which do not have jaxsnn).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, Optional

import numpy as np


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> Optional[list]:
    """The 1, 5 and 15 minute load averages, or None where unavailable."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> Dict[str, Any]:
    """CPU model, logical cores, memory, OS and Python version, and the current load average."""
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gib = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average": load_average(),
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def time_call(
    fn: Callable[[], Any],
    block: Callable[[Any], Any],
    iterations: int = 10,
    warmup: int = 2,
    max_seconds: Optional[float] = None,
    min_seconds: Optional[float] = None,
    max_iterations: int = 200,
) -> Dict[str, Any]:
    """Time ``fn`` the way a user would experience it.

    The first call (which includes tracing and compilation for JAX) is timed separately as
    ``first_call_s``; then ``warmup - 1`` further untimed calls; then ``iterations`` timed calls.
    ``block`` waits until the result is ready (``jax.block_until_ready`` or a no-op for torch).

    Args:
        fn: the zero-argument callable to time.
        block: makes asynchronous results concrete.
        iterations: number of timed calls (at least 1).
        warmup: number of calls before timing starts, including the first one (at least 1).
        max_seconds: optional budget: stop timing early (but after at least 3 timed calls).
        min_seconds: optional floor: after ``iterations`` calls, go on timing until this much
            time was timed (at most ``max_iterations`` calls), so that millisecond calls get
            enough samples for a stable median.
        max_iterations: cap of the calls added for ``min_seconds``.

    Returns:
        dict with ``first_call_s``, ``median_s``, ``min_s``, ``max_s``, ``mean_s``,
        ``iterations`` (actually timed), ``times_s`` (all timed calls) and the last result
        under the key ``"result"``.
    """
    start = time.perf_counter()
    out = block(fn())
    first = time.perf_counter() - start
    for _ in range(max(warmup, 1) - 1):
        out = block(fn())
    times = []
    budget_start = time.perf_counter()
    for i in range(max(iterations, 1)):
        t0 = time.perf_counter()
        out = block(fn())
        times.append(time.perf_counter() - t0)
        if max_seconds is not None and i >= 2 and time.perf_counter() - budget_start > max_seconds:
            break
    else:
        # The floor counts timed calls only (not the loop's own overhead), as documented.
        while (min_seconds is not None and len(times) < max_iterations
               and sum(times) < min_seconds):
            t0 = time.perf_counter()
            out = block(fn())
            times.append(time.perf_counter() - t0)
    return {
        "first_call_s": first,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "mean_s": statistics.fmean(times),
        "iterations": len(times),
        "times_s": [round(t, 6) for t in times],
        "result": out,
    }


# ----------------------------------------------------------------------------------------
# Workload data: identical inputs and weights for every library (NumPy, fixed seed)
# ----------------------------------------------------------------------------------------

DECAY = 0.9  # membrane decay per step where a library takes a decay
THRESHOLD = 1.0


def mlp_data(cfg: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Inputs ``(T, B, n_in)`` Bernoulli(p) spikes and the two weight matrices ``(n_in, n_out)``.

    The neuron every library implements is ``v_t = DECAY * v_{t-1} + x_t @ W``, spike when
    ``v_t > THRESHOLD``, reset by subtraction. Weights are Gaussian with a positive mean chosen
    so that both layers spike at a moderate rate (the run records the measured rate).
    """
    rng = np.random.default_rng(cfg.get("seed", 0))
    T, B, n_in, hidden = cfg["T"], cfg["batch"], cfg["n_in"], cfg["hidden"]
    p = cfg.get("p_in", 0.1)
    x = (rng.random((T, B, n_in)) < p).astype(np.float32)
    # Mean drive per step of layer 1: n_in * p * mean; a stationary v of mean/(1-DECAY)
    # about 1.2 * THRESHOLD with fluctuations of the same order makes neurons fire often
    # but not every step.
    gain = cfg.get("gain", 1.0)
    w1 = _spiking_weights(rng, n_in, hidden, p, gain)
    w2 = _spiking_weights(rng, hidden, hidden, cfg.get("p_hidden_guess", 0.15), gain)
    return {"x": x, "w1": w1, "w2": w2}


def _spiking_weights(rng, n_in: int, n_out: int, rate: float, gain: float) -> np.ndarray:
    active = max(n_in * rate, 1.0)
    # mean input per step; the membrane's stationary mean is target_drive / (1 - DECAY)
    target_drive = 0.12 * THRESHOLD * gain
    mean = target_drive / active
    std = 2.0 * target_drive / np.sqrt(active)
    return (mean + std * rng.standard_normal((n_in, n_out))).astype(np.float32)


def mlp_flops(cfg: Dict[str, Any], backward: bool) -> float:
    """Multiply-add FLOPs of the two dense layers (2 per MAC); backward adds two matmuls per layer
    (input gradient and weight gradient), except that the input gradient of the first layer
    is not needed."""
    T, B, n_in, hidden = cfg["T"], cfg["batch"], cfg["n_in"], cfg["hidden"]
    fwd = 2.0 * T * B * (n_in * hidden + hidden * hidden)
    if not backward:
        return fwd
    # weight gradients of both layers + input gradient of layer 2 only
    return fwd + 2.0 * T * B * (n_in * hidden + hidden * hidden) + 2.0 * T * B * hidden * hidden


def cnn_data(cfg: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Inputs ``(T, B, C, H, W)`` Bernoulli(p) spikes and conv kernels in OIHW layout."""
    rng = np.random.default_rng(cfg.get("seed", 0))
    T, B, C, H = cfg["T"], cfg["batch"], cfg["channels_in"], cfg["size"]
    c1, c2, k = cfg["channels"], cfg["channels"], cfg["kernel"]
    p = cfg.get("p_in", 0.1)
    x = (rng.random((T, B, C, H, H)) < p).astype(np.float32)
    gain = cfg.get("gain", 1.0)
    k1 = _spiking_weights(rng, C * k * k, c1, p, gain).T.reshape(c1, C, k, k)
    k2 = _spiking_weights(rng, c1 * k * k, c2, cfg.get("p_hidden_guess", 0.15), gain).T.reshape(
        c2, c1, k, k
    )
    return {"x": x, "k1": np.ascontiguousarray(k1), "k2": np.ascontiguousarray(k2)}


def cnn_flops(cfg: Dict[str, Any], backward: bool) -> float:
    """FLOPs of the two 'same'-padded convolutions (2 per MAC), backward as for ``mlp_flops``."""
    T, B, C, H = cfg["T"], cfg["batch"], cfg["channels_in"], cfg["size"]
    c, k = cfg["channels"], cfg["kernel"]
    l1 = 2.0 * T * B * H * H * C * c * k * k
    l2 = 2.0 * T * B * H * H * c * c * k * k
    fwd = l1 + l2
    return fwd if not backward else fwd + (l1 + l2) + l2


def cnn_pool_data(cfg: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """``cnn_pool``: inputs and conv kernels as ``cnn_data`` plus the dense readout ``w3``.

    The network is conv 3x3 'same' (C_in -> C) -> LIF -> max-pool ``pool`` -> conv (C -> C) ->
    LIF -> max-pool -> flatten -> dense (-> ``classes``) -> LIF. ``w3`` has shape
    ``(C * h * w, classes)`` with rows in PyTorch's flatten order ``(C, h, w)`` of the pooled
    ``(h, w) = (size // pool**2, size // pool**2)`` maps; ``hwc_rows`` reorders them for NHWC
    libraries.
    """
    data = cnn_data(cfg)
    rng = np.random.default_rng(cfg.get("seed", 0) + 1)
    c, side = cfg["channels"], cfg["size"] // cfg["pool"] ** 2
    data["w3"] = _spiking_weights(rng, c * side * side, cfg["classes"],
                                  cfg.get("p_pooled_guess", 0.3), cfg.get("gain", 1.0))
    return data


def hwc_rows(w3: np.ndarray, cfg: Dict[str, Any]) -> np.ndarray:
    """Rows of ``w3`` from ``(C, h, w)`` flatten order to ``(h, w, C)`` (NHWC libraries)."""
    c, side = cfg["channels"], cfg["size"] // cfg["pool"] ** 2
    n = w3.shape[1]
    return np.ascontiguousarray(w3.reshape(c, side, side, n).transpose(1, 2, 0, 3).reshape(-1, n))


def cnn_pool_flops(cfg: Dict[str, Any], backward: bool) -> float:
    """FLOPs of ``cnn_pool``'s two convolutions and dense layer (2 per MAC), backward as above."""
    T, B, C, H = cfg["T"], cfg["batch"], cfg["channels_in"], cfg["size"]
    c, k, p = cfg["channels"], cfg["kernel"], cfg["pool"]
    l1 = 2.0 * T * B * H * H * C * c * k * k
    l2 = 2.0 * T * B * (H // p) ** 2 * c * c * k * k
    l3 = 2.0 * T * B * c * (H // p**2) ** 2 * cfg["classes"]
    fwd = l1 + l2 + l3
    return fwd if not backward else fwd + (l1 + l2 + l3) + (l2 + l3)


def emit(result: Dict[str, Any]) -> None:
    """Print a worker's result as the last line of stdout, prefixed so the runner finds it."""
    sys.stdout.write("\nBENCH_RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_worker_args(argv=None) -> Dict[str, Any]:
    """Workers take ``--workload NAME --config JSON``."""
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", required=True)
    ap.add_argument("--config", required=True, help="JSON dict")
    args = ap.parse_args(argv)
    return {"workload": args.workload, "config": json.loads(args.config)}


def run_worker(build: Callable[[str, Dict[str, Any]], Dict[str, Any]], argv=None) -> None:
    """Common main of a worker: build the workload's callables, time each mode, print JSON.

    ``build(workload, cfg)`` returns a dict with ``forward`` and/or ``backward`` (zero-argument
    callables), ``block`` (waits for a result), ``rates`` (zero-argument callable returning the
    mean spike rate of each layer) and ``versions`` (dict). A mode a library cannot run is left
    out of the dict and reported as unsupported.
    """
    import traceback

    args = parse_worker_args(argv)
    cfg = args["config"]
    result: Dict[str, Any] = {"workload": args["workload"], "config": cfg, "modes": {}}
    result["load_average_start"] = load_average()
    try:
        built = build(args["workload"], cfg)
        result["versions"] = built.get("versions", {})
        result["implementation"] = built.get("implementation", "")
        for mode in cfg.get("modes", ["forward", "backward"]):
            fn = built.get(mode)
            if fn is None:
                result["modes"][mode] = {"error": "unsupported by this library"}
                continue
            try:
                timing = time_call(
                    fn,
                    built["block"],
                    iterations=cfg.get("iterations", 10),
                    warmup=cfg.get("warmup", 2),
                    max_seconds=cfg.get("max_seconds"),
                    min_seconds=cfg.get("min_seconds"),
                )
                timing.pop("result")
                result["modes"][mode] = timing
            except Exception as exc:  # recorded, the run goes on with the next mode
                result["modes"][mode] = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": traceback.format_exc()[-2000:],
                }
        if "rates" in built:
            result["spike_rates"] = [float(r) for r in built["rates"]()]
        if "info" in built:  # workload-specific results (capacities found, training curves)
            result["info"] = built["info"]
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-3000:]
    result["peak_rss_mib"] = peak_rss_mib()
    result["load_average_end"] = load_average()
    emit(result)


def package_versions(*names: str) -> Dict[str, str]:
    """Installed versions of the given distributions (missing ones are skipped)."""
    import importlib.metadata as md

    out = {}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------------------
# Event-based Yin-Yang workload: identical input spikes and weights for every library
# ----------------------------------------------------------------------------------------

EVENT_DEFAULTS = {
    "tau_syn": 5e-3,
    "tau_mem": 1e-2,  # tau_mem = 2 tau_syn: both libraries use their analytic kernel
    "v_th": 1.0,
    "v_reset": -1000.0,  # as upstream's EventProp example: one spike per neuron
    "t_late": 2 * 5e-3,
    "t_max": 4 * 5e-3,
    "correct_target_time": 0.8 * 5e-3,
    "wrong_target_time": 1.2 * 5e-3,
}


def yinyang_dir():
    """Folder of the published Yin-Yang arrays.

    ``$JAXSNN_YINYANG_DIR`` if set, else ``<repo>/../shared/data/yin_yang``.
    """
    from pathlib import Path

    env = os.environ.get("JAXSNN_YINYANG_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "yin_yang"


def event_data(cfg: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Input spikes and weights of the Yin-Yang event network ``5 * dup -> hidden -> 3``.

    Each sample's inputs ``(x, y, 1 - x, 1 - y)`` and a bias spike at t = 0 become latency spikes
    ``value * t_late``; with ``dup > 1`` every input neuron is replicated ``dup`` times (more
    input events per sample) and its weights divided by ``dup`` (the same total drive).
    Samples are the published Yin-Yang training set (random points if it is missing).

    Returns:
        dict with ``times``/``idx`` ``(n_samples, 5 * dup)`` sorted by time, ``labels``,
        ``targets`` ``(n_samples, 3)`` target spike times, ``w1`` ``(5 * dup, hidden)``,
        ``w2`` ``(hidden, 3)`` (float32).
    """
    p = dict(EVENT_DEFAULTS, **cfg)
    rng = np.random.default_rng(cfg.get("seed", 0))
    n, dup, hidden = cfg["n_samples"], cfg.get("dup", 1), cfg["hidden"]
    path = yinyang_dir()
    if (path / "train_samples.npy").exists():
        samples = np.load(path / "train_samples.npy")
        labels = np.load(path / "train_labels.npy")
        reps = -(-n // len(samples))
        samples, labels = np.tile(samples, (reps, 1))[:n], np.tile(labels, reps)[:n]
    else:
        xy = rng.random((n, 2))
        samples, labels = np.concatenate([xy, 1 - xy], axis=1), rng.integers(0, 3, n)
    values = np.concatenate([samples, np.zeros((n, 1))], axis=1)  # bias spike at t = 0
    values = np.repeat(values, dup, axis=1)
    idx = np.tile(np.arange(5 * dup), (n, 1))
    order = np.argsort(values, axis=1, kind="stable")
    times = np.take_along_axis(values, order, axis=1) * p["t_late"]
    idx = np.take_along_axis(idx, order, axis=1)
    w1 = rng.normal(3.0 / dup, 0.72 / np.sqrt(dup), (5 * dup, hidden))
    w2 = rng.normal(0.5, 0.8, (hidden, 3)) * (100.0 / hidden)
    targets = np.full((n, 3), p["wrong_target_time"])
    targets[np.arange(n), labels] = p["correct_target_time"]
    return {"times": times.astype(np.float32), "idx": idx.astype(np.int32),
            "labels": labels.astype(np.int32), "targets": targets.astype(np.float32),
            "w1": w1.astype(np.float32), "w2": w2.astype(np.float32)}


def event_params(cfg: Dict[str, Any]) -> Dict[str, float]:
    """The neuron constants of the event workload (defaults overridden by ``cfg``)."""
    return {k: cfg.get(k, v) for k, v in EVENT_DEFAULTS.items()}


def yinyang_split(split: str, n_samples: int = 0) -> Dict[str, np.ndarray]:
    """A published Yin-Yang split (``train``, ``validation``, ``test``) latency-coded as in
    ``event_data``: ``times``/``idx`` ``(n, 5)`` sorted by time (bias spike at t = 0), ``labels``.

    ``n_samples = 0`` keeps the whole split. The published arrays are read where they are found
    (``yinyang_dir()``, the only source in the peers' environments, whose ``jaxsnn`` is upstream
    0.3.0), else ``jaxsnn.data.load_yinyang`` generates them (bit-identical)."""
    path = yinyang_dir()
    if (path / f"{split}_samples.npy").is_file():
        samples = np.load(path / f"{split}_samples.npy")
        labels = np.load(path / f"{split}_labels.npy")
    else:
        from jaxsnn.data.yinyang import load_yinyang

        dataset = load_yinyang(split, source="generate")
        samples, labels = np.asarray(dataset.inputs), np.asarray(dataset.labels)
    if n_samples:
        samples, labels = samples[:n_samples], labels[:n_samples]
    values = np.concatenate([samples, np.zeros((len(samples), 1))], axis=1)
    order = np.argsort(values, axis=1, kind="stable")
    times = np.take_along_axis(values, order, axis=1) * EVENT_DEFAULTS["t_late"]
    return {"times": times.astype(np.float32), "idx": order.astype(np.int32),
            "labels": labels.astype(np.int32)}


# ----------------------------------------------------------------------------------------
# Multi-spike event workload: time-coded Randman inputs (numpy, identical for every library)
# ----------------------------------------------------------------------------------------

MULTI_DEFAULTS = {
    "tau_syn": 5e-3,
    "tau_mem": 1e-2,  # tau_mem = 2 tau_syn: both libraries use their analytic kernel
    "v_th": 1.0,
    "v_reset": 0.0,  # neurons spike again after the reset (upstream 0.3.0 has no t_ref)
    "t_ref": 0.0,
    "t_late": 2e-2,  # every input neuron's spikes lie in [0, t_late)
    "t_max": 3e-2,
}


def multi_params(cfg: Dict[str, Any]) -> Dict[str, float]:
    """The neuron constants of the multi-spike workload (defaults overridden by ``cfg``)."""
    return {k: cfg.get(k, v) for k, v in MULTI_DEFAULTS.items()}


def _randman_values(rng_manifold, rng_samples, n_samples: int, n_in: int, n_classes: int,
                    terms: int = 4, alpha: float = 2.0) -> tuple:
    """Points on ``n_classes`` smooth random one-dimensional manifolds in ``[0, 1]^n_in``
    (Zenke & Vogels 2021): coordinate ``i`` of class ``c`` at a uniform latent ``x`` is
    ``(1 + sum_k a_k sin(2 pi (k f_cik x + phi_cik)) / sum_k a_k) / 2`` with ``a_k = k^-alpha``.
    Sample ``s`` has class ``s % n_classes`` and does not depend on ``n_samples``."""
    labels = np.arange(n_samples) % n_classes
    freq = rng_manifold.uniform(0.5, 1.5, (n_classes, n_in, terms))
    phase = rng_manifold.uniform(0.0, 1.0, (n_classes, n_in, terms))
    amp = np.arange(1, terms + 1, dtype=np.float64) ** -alpha
    x = rng_samples.uniform(0.0, 1.0, n_samples)
    k = np.arange(1, terms + 1)
    arg = 2 * np.pi * (k * freq[labels] * x[:, None, None] + phase[labels])
    return 0.5 * (1.0 + np.sum(amp * np.sin(arg), axis=-1) / np.sum(amp)), labels


def multi_data(cfg: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Inputs and weights of the multi-spike network ``n_in -> hidden -> n_out``.

    Time-coded Randman: input neuron ``i`` of a sample with manifold coordinate ``v_i`` in [0, 1] spikes
    ``spikes_per_input`` times, at ``(j + v_i) t_late / spikes_per_input`` for
    ``j = 0, 1, ...`` (so ``n_in * spikes_per_input`` input events per sample, in
    ``[0, t_late]``). Weights
    ``w1 ~ N(gain_in, gain_in) / (n_in spikes_per_input)`` and
    ``w2 ~ N(gain_out, gain_out) / hidden`` keep the total drive, and so the spikes per neuron,
    roughly the same as the input events and the hidden size change.

    Returns:
        dict with ``times``/``idx`` ``(n_samples, n_in * spikes_per_input)`` sorted by time,
        ``labels``, ``w1`` ``(n_in, hidden)``, ``w2`` ``(hidden, n_out)`` (float32).
    """
    p = dict(MULTI_DEFAULTS, **cfg)
    seed = cfg.get("seed", 0)
    # separate streams: the manifolds, the samples and the weights do not change one another
    rng_manifold, rng_samples, rng = (np.random.default_rng([seed, k]) for k in range(3))
    n, n_in, hidden, n_out = cfg["n_samples"], cfg["n_in"], cfg["hidden"], cfg["n_out"]
    per = cfg.get("spikes_per_input", 1)
    values, labels = _randman_values(rng_manifold, rng_samples, n, n_in, n_out)
    times = (np.arange(per)[None, None, :] + values[:, :, None]) * (p["t_late"] / per)
    times = times.reshape(n, n_in * per)
    idx = np.tile(np.repeat(np.arange(n_in), per), (n, 1))
    order = np.argsort(times, axis=1, kind="stable")
    times = np.take_along_axis(times, order, axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    gain_in, gain_out = cfg.get("gain_in", 12.0), cfg.get("gain_out", 4.0)
    w1 = rng.normal(gain_in, gain_in, (n_in, hidden)) / (n_in * per)
    w2 = rng.normal(gain_out, gain_out, (hidden, n_out)) / hidden
    return {"times": times.astype(np.float32), "idx": idx.astype(np.int32),
            "labels": labels.astype(np.int32), "w1": w1.astype(np.float32),
            "w2": w2.astype(np.float32)}
