"""Strong scaling of data-parallel training over devices: 1, 2, 4 simulated CPU devices, and GPUs.

    python benchmarks/scaling_devices.py               # CPU table; on a GPU machine the GPU table too
    python benchmarks/scaling_devices.py --small       # small sizes (a few minutes on 2 cores)
    python benchmarks/scaling_devices.py --platform cpu --devices 1,2,4,8
    python benchmarks/scaling_devices.py --accelerator --out OUT/scaling_gpu.json   # GPU machine

``--accelerator`` is the one command for a machine with a GPU: it checks that jax sees the GPU
(when ``nvidia-smi`` finds one but jax has no CUDA backend it tries ``pip install
"jax[cuda13]"`` and ``"jax[cuda12]"`` for the installed jax version, then the latest
``"jax[cuda12]"``; what happened is in the JSON),
times the accelerator (every device count up to the number of GPUs, two global batch sizes),
then, in the time left of ``--budget-s``, the same step on 1, 2, 4, 8 simulated devices of that
machine's CPU. It writes the JSON (and a Markdown table beside it) even when a part fails, and
exits with 1 when no accelerator was timed.

One training step (forward, gradient, Adam) of two networks with a fixed global batch, split
over ``n`` devices (parameters replicated):

* ``event``: the Yin-Yang EventProp network, 5 latency-coded inputs -> 120 -> 3 event LIF
  neurons, one spike per neuron, first-spike loss;
* ``discrete``: 5 latency-coded inputs on a 100-step grid -> LIF(hidden) -> LI(3), BPTT with a
  surrogate gradient, max-membrane cross-entropy.

Two ways to split the batch (``jaxsnn.distributed``): ``data_parallel`` (XLA partitions the
plain step; equal to one device to float32 rounding) and ``chunked`` (``chunked_sum`` with as
many chunks as the largest device count; bitwise equal on every device count). Each row also
reports how far the parameters after one step are from the one-device step.

CPU devices are simulated (``--xla_force_host_platform_device_count``): they are one process's
XLA devices sharing the machine's cores, so a speedup here shows how well the step's work is
split across those cores, not what separate machines would give. Each device count's timing
is interleaved with the others' (round robin), so machine load drifts affect all alike.

Every platform runs in its own child process (the device flag must be set before jax is
imported); the parent writes ``benchmarks/results/scaling_devices_<platform>.json`` and ``.md``
(``<platform>`` is ``gpu`` when an accelerator was found, else ``cpu``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402  (stdlib + NumPy only)

SIZES = {
    # global batches (the first is timed in both modes, the others with data_parallel only);
    # hidden sizes; timed steps per round; rounds
    "tiny": {"batches": [32], "hidden": 16, "discrete_hidden": 16, "steps": 2, "rounds": 2},
    "small": {"batches": [128], "hidden": 120, "discrete_hidden": 120, "steps": 3, "rounds": 3},
    "cpu": {"batches": [512], "hidden": 120, "discrete_hidden": 256, "steps": 5, "rounds": 5},
    "gpu": {"batches": [8192, 1024], "hidden": 120, "discrete_hidden": 256, "steps": 10, "rounds": 5},
}
T_MAX, STEPS_DISCRETE, DT = 0.02, 100, 2.5e-4


# --------------------------------------------------------------------------- child side
def _hardware(platform: str) -> Dict[str, Any]:
    import jax

    info = {"device_kind": jax.devices()[0].device_kind, "device_count": len(jax.devices()), **harness.machine_info()}
    if platform == "gpu":
        try:
            query = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30,
            )
            info["nvidia_smi"] = query.stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError) as error:
            info["nvidia_smi"] = f"unavailable: {error}"
    return info


def _problem(workload: str, size: Dict[str, Any], batch: int):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import jaxsnn
    from jaxsnn import spikes as spikes_lib
    from jaxsnn.encode import latency_dense, latency_spikes
    from jaxsnn.initializers import normal

    rng = np.random.default_rng(0)
    if workload == "event":
        from jaxsnn.event import LIF

        common = dict(tau_syn=5e-3, tau_mem=1e-2, t_max=T_MAX, t_ref=T_MAX, gradient="eventprop")
        net = jaxsnn.serial(
            LIF(size["hidden"], capacity=size["hidden"], weight_init=normal(1.6, 3.0), **common),
            LIF(3, capacity=3, weight_init=normal(0.8, 0.5), **common),
        )
        _, params = net.init(jax.random.PRNGKey(0), (5,))
        xy = rng.random((batch, 2)).astype(np.float32)
        points = jnp.asarray(np.concatenate([xy, 1 - xy], axis=1))
        inputs = latency_spikes(points, t_min=0.0, t_max=0.01, bias_time=0.0)

        def sample_loss(params, sample):
            spikes, label = sample
            _, out, _ = net.apply(params, spikes)
            first = spikes_lib.first_spike_times(out, 3)
            targets = jnp.where(jnp.arange(3) == label, 4e-3, 6e-3)
            return jaxsnn.loss.first_spike_mse(first, targets, t_missing=T_MAX) / 1e-4

    else:
        from jaxsnn.discrete import LI, LIF

        neuron = dict(tau_syn=5e-3, tau_mem=1e-2, dt=DT)
        net = jaxsnn.serial(LIF(size["discrete_hidden"], weight_scale=6.0, **neuron), LI(3, weight_scale=2.0, **neuron))
        _, params = net.init(jax.random.PRNGKey(0), (STEPS_DISCRETE, 5))
        xy = rng.random((batch, 2)).astype(np.float32)
        points = jnp.asarray(np.concatenate([xy, 1 - xy], axis=1))
        inputs = latency_dense(points, STEPS_DISCRETE, DT, t_min=0.0, t_max=0.015, bias_time=0.0)

        def sample_loss(params, sample):
            grid, label = sample
            _, membrane, _ = net.apply(params, grid)
            return -jax.nn.log_softmax(jnp.max(membrane, axis=0))[label]

    labels = jnp.asarray(rng.integers(0, 3, batch), jnp.int32)
    return params, (inputs, labels), sample_loss, optax.adam(1e-3)


def _step(mode: str, sample_loss, opt, mesh, chunks: int):
    import jax
    import jax.numpy as jnp
    import optax

    from jaxsnn import distributed

    if mode == "data_parallel":

        def step(params, opt_state, batch):
            def batch_loss(p):
                return jnp.mean(jax.vmap(sample_loss, in_axes=(None, 0))(p, batch))

            loss, grads = jax.value_and_grad(batch_loss)(params)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

    else:

        def chunk_terms(params, chunk):
            def chunk_loss(p):
                return jnp.sum(jax.vmap(sample_loss, in_axes=(None, 0))(p, chunk))

            return jax.value_and_grad(chunk_loss)(params), None

        summed = distributed.chunked_sum(chunk_terms, mesh, chunks=chunks)

        def step(params, opt_state, batch):
            size = batch[1].shape[0]
            (loss, grads), _ = summed(params, batch)
            grads = jax.tree_util.tree_map(lambda g: g / size, grads)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss / size

    return distributed.data_parallel(step, mesh, batch_argnums=2)


def _max_abs_diff(a, b) -> float:
    import jax
    import numpy as np

    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


def _bitwise(a, b) -> bool:
    import jax
    import numpy as np

    return all(
        np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )


def _time_entry(workload, mode, batch_size, counts, size, chunks, deadline) -> Dict[str, Any]:
    """Compile and time one (workload, mode, global batch) on every device count, interleaved."""
    import jax

    from jaxsnn import distributed

    params, batch, sample_loss, opt = _problem(workload, size, batch_size)
    opt_state = opt.init(params)
    entry: Dict[str, Any] = {
        "workload": workload, "mode": mode, "global_batch": batch_size,
        "chunks": chunks if mode == "chunked" else None, "rows": [],
    }
    steps, first_call, one_step = {}, {}, {}
    for n in counts:
        mesh = distributed.device_mesh(n)
        steps[n] = _step(mode, sample_loss, opt, mesh, chunks)
        t0 = time.perf_counter()
        one_step[n] = jax.block_until_ready(steps[n](params, opt_state, batch))
        first_call[n] = time.perf_counter() - t0
    times: Dict[int, List[float]] = {n: [] for n in counts}
    for _ in range(size["rounds"]):
        for n in counts:  # interleaved: load drifts hit every device count alike
            state = (one_step[n][0], one_step[n][1])
            t0 = time.perf_counter()
            for _ in range(size["steps"]):
                state = steps[n](state[0], state[1], batch)[:2]
            jax.block_until_ready(state)
            times[n].append((time.perf_counter() - t0) / size["steps"])
        if time.perf_counter() > deadline:
            entry["truncated"] = f"time budget reached after {len(times[counts[0]])} rounds"
            break
    base = statistics.median(times[counts[0]]) * counts[0]
    reference = distributed.to_host(one_step[counts[0]][0])
    for n in counts:
        median = statistics.median(times[n])
        after_one = distributed.to_host(one_step[n][0])
        entry["rows"].append({
            "devices": n,
            "step_s_median": median,
            "step_s_min": min(times[n]),
            "step_s_max": max(times[n]),
            "samples_per_s": batch_size / median,
            "speedup": base / median,
            "efficiency": base / median / n,
            "first_call_s": first_call[n],
            "params_max_abs_diff_to_1_device": _max_abs_diff(after_one, reference),
            "bitwise_equal_to_1_device": _bitwise(after_one, reference),
            "rounds": len(times[n]),
        })
    return entry


def run_child(platform: str, device_counts: List[int], size_name: str, workloads: List[str], modes: List[str],
              budget_s: float, out: Optional[Path] = None) -> Dict[str, Any]:
    """Time every (workload, mode, batch) on ``platform``; rewrites ``out`` after each entry.

    Entries are skipped once ``budget_s`` has passed (a started entry finishes its compilation
    and at least one timing round); ``out`` then holds everything timed so far.
    """
    import jax

    start = time.perf_counter()
    deadline = start + budget_s
    backend = jax.default_backend()
    found = "cpu" if backend == "cpu" else "gpu" if backend in ("gpu", "cuda", "rocm") else backend
    if platform == "accelerator" and found == "cpu":
        return {"platform": "none", "note": f"no accelerator found (jax.default_backend() is 'cpu'; devices {jax.devices()})"}
    available = len(jax.devices())
    counts = [n for n in device_counts if n <= available]
    if platform in ("accelerator", "cpu-as-accelerator"):  # every count up to the number of accelerators
        counts = sorted({1, *[n for n in (2, 4, 8, 16) if n <= available], *counts})
    size = dict(SIZES[size_name])
    simulated = found == "cpu"
    record: Dict[str, Any] = {
        "platform": found,
        "simulated_devices": simulated,
        "note": (
            f"{available} simulated XLA CPU devices in one process, sharing this machine's "
            f"{os.cpu_count()} logical cores: speedups show how the step's work spreads over those "
            "cores, not what separate machines would give"
            if simulated
            else f"{available} {jax.devices()[0].device_kind} device(s)"
        ),
        "hardware": _hardware(found),
        "jax": jax.__version__,
        "jaxlib": getattr(__import__("jaxlib"), "__version__", "unknown"),
        "devices": [str(device) for device in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "size": size_name,
        "settings": size,
        "device_counts": counts,
        "results": [],
        "skipped": [],
    }
    chunks = max(counts)
    plan = [
        (workload, mode, batch)
        for k, batch in enumerate(size["batches"])
        for workload in workloads
        for mode in modes
        if k == 0 or mode == "data_parallel"
    ]
    for workload, mode, batch in plan:
        if time.perf_counter() > deadline:
            record["skipped"].append({"workload": workload, "mode": mode, "global_batch": batch,
                                      "why": f"time budget of {budget_s:.0f} s spent"})
            continue
        entry = _time_entry(workload, mode, batch, counts, size, chunks, deadline)
        record["results"].append(entry)
        print(_table(entry), flush=True)
        record["load_average_end"] = harness.load_average()
        record["wall_s"] = time.perf_counter() - start
        if out is not None:
            out.write_text(json.dumps(record, indent=1))
    record["load_average_end"] = harness.load_average()
    record["wall_s"] = time.perf_counter() - start
    return record


# --------------------------------------------------------------------------- parent side
def _table(entry: Dict[str, Any]) -> str:
    lines = [
        f"{entry['workload']} / {entry['mode']} (global batch {entry['global_batch']}"
        + (f", {entry['chunks']} chunks" if entry.get("chunks") else "") + ")",
        "| devices | step (ms, median) | samples/s | speedup | efficiency | first call (s) | params vs 1 device |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in entry["rows"]:
        same = "bitwise" if row["bitwise_equal_to_1_device"] else f"{row['params_max_abs_diff_to_1_device']:.1e}"
        lines.append(
            f"| {row['devices']} | {1e3 * row['step_s_median']:.1f} ({1e3 * row['step_s_min']:.1f}-"
            f"{1e3 * row['step_s_max']:.1f}) | {row['samples_per_s']:.0f} | {row['speedup']:.2f} | "
            f"{100 * row['efficiency']:.0f} % | {row['first_call_s']:.1f} | {same} |"
        )
    if entry.get("truncated"):
        lines.append(f"({entry['truncated']})")
    return "\n".join(lines)


def _markdown(result: Dict[str, Any]) -> str:
    parts = [f"# Strong scaling over devices ({result['date']})", "", f"`{result['command']}`", ""]
    for line in result.get("setup", {}).get("log", []):
        parts.append(f"- setup: {line}")
    for run in result["runs"]:
        if run.get("platform") in (None, "none") or "hardware" not in run:
            parts += ["", f"- {run.get('platform', '?')}: {run.get('note') or run.get('error')}", ""]
            continue
        hardware = run["hardware"]
        parts += [
            "",
            f"## {run['platform']}: {hardware['device_count']} x {hardware['device_kind']} "
            f"(host: {hardware['cpu']}, {hardware['cores']} logical cores)",
            "", run["note"] + ".",
            f"jax {run['jax']}, jaxlib {run['jaxlib']}; load average at start {hardware['load_average']}, "
            f"at end {run.get('load_average_end')}.",
        ]
        if hardware.get("nvidia_smi"):
            parts.append(f"nvidia-smi: {hardware['nvidia_smi']}")
        if run.get("error"):
            parts.append(f"incomplete: {run['error']}")
        parts.append("")
        for entry in run["results"]:
            parts += [_table(entry), ""]
        for skipped in run.get("skipped", []):
            parts.append(f"- not timed: {skipped['workload']} / {skipped['mode']} (batch {skipped['global_batch']}): {skipped['why']}")
    return "\n".join(parts)


def _child(platform: str, args: argparse.Namespace, timeout_s: float) -> Dict[str, Any]:
    """Run one platform in a child process; on failure or timeout keep what it wrote so far."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    if platform in ("cpu", "cpu-as-accelerator"):
        env["JAX_PLATFORMS"] = "cpu"
        flags.append(f"--xla_force_host_platform_device_count={max(args.device_counts)}")
    else:
        env.pop("JAX_PLATFORMS", None)
    env["XLA_FLAGS"] = " ".join(flags)
    out = Path(args.tmp) / f"scaling_devices_child_{platform}.json"
    out.unlink(missing_ok=True)
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", platform, "--child-out", str(out),
        "--devices", ",".join(map(str, args.device_counts)), "--size", args.size_name,
        "--workloads", ",".join(args.workload_list), "--modes", ",".join(args.mode_list),
        "--budget-s", str(args.budget_s),
    ]
    error = None
    try:
        done = subprocess.run(command, env=env, timeout=timeout_s, text=True, stdout=sys.stdout, stderr=subprocess.PIPE)
        if done.returncode != 0:
            error = f"exit code {done.returncode}: {done.stderr[-3000:]}"
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout_s:.0f} s"
    if not out.exists():
        return {"platform": platform, "error": error or "the child wrote no result"}
    record = json.loads(out.read_text())
    if error:
        record["error"] = error
    return record


def _run_quietly(command: List[str], timeout_s: float) -> Tuple[int, str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout_s:.0f} s"
    except OSError as error:
        return -1, str(error)
    return done.returncode, (done.stdout + done.stderr).strip()


def _jax_backend() -> Tuple[str, str]:
    """``(default backend, devices)`` as a fresh process without ``JAX_PLATFORMS`` sees them."""
    env = {key: value for key, value in os.environ.items() if key != "JAX_PLATFORMS"}
    probe = "import jax; print(jax.default_backend()); print(jax.__version__, jax.devices())"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=90, env=env)
    except subprocess.TimeoutExpired:
        return "error", "python -c 'import jax; jax.devices()' timed out after 90 s"
    if done.returncode != 0:
        return "error", done.stderr.strip()[-2000:]
    lines = done.stdout.strip().splitlines()
    return lines[0], " ".join(lines[1:])


def _ensure_accelerator(allow_install: bool) -> Dict[str, Any]:
    """Check that jax sees a GPU; if an NVIDIA GPU is present but jax has no CUDA backend, try pip."""
    log: List[str] = []
    backend, devices = _jax_backend()
    log.append(f"jax backend {backend!r}: {devices}")
    if backend not in ("cpu", "error"):
        return {"backend": backend, "log": log}
    code, smi = _run_quietly(["nvidia-smi", "-L"], 30)
    log.append(f"nvidia-smi -L: {smi[-500:] if code == 0 else 'no NVIDIA GPU found (' + smi[-200:] + ')'}")
    if code != 0 or not allow_install:
        return {"backend": backend, "log": log}
    from importlib import metadata

    try:
        version = metadata.version("jax")
    except metadata.PackageNotFoundError:
        version = None
    # the installed jax's own CUDA plugin first (CUDA 13 for recent drivers, then 12), then the latest
    attempts = ([f"jax[cuda13]=={version}", f"jax[cuda12]=={version}"] if version else []) + ["jax[cuda12]"]
    deadline = time.perf_counter() + 150.0  # all attempts together: the measurements need the time
    for requirement in attempts:
        left = deadline - time.perf_counter()
        if left < 10:
            log.append(f"pip install -U {requirement!r}: not tried (150 s spent on installing)")
            continue
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--retries", "0", "--timeout", "15", "-U", requirement]
        code, output = _run_quietly(command, left)
        log.append(f"pip install -U {requirement!r}: exit code {code}" + (f": {output[-800:]}" if code else ""))
        if code == 0:
            backend, devices = _jax_backend()
            log.append(f"jax backend after install {backend!r}: {devices}")
            if backend not in ("cpu", "error"):
                break
    return {"backend": backend, "log": log}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--platform", choices=("auto", "cpu"), default="auto",
                        help="auto: the CPU table, plus the accelerator's where one is found")
    parser.add_argument("--accelerator", action="store_true",
                        help="the GPU-machine run: make sure jax sees the GPU (pip install jax[cuda12] if "
                             "needed), time it, then the machine's CPU with simulated devices in the time left; "
                             "exit code 1 when no accelerator was timed")
    parser.add_argument("--no-install", action="store_true", help="with --accelerator: never run pip")
    parser.add_argument("--devices", default=None, help="device counts (CPU: simulated; default 1,2,4, "
                                                        "with --accelerator 1,2,4,8)")
    parser.add_argument("--small", action="store_true", help="small sizes (global batch 128, 3 rounds)")
    parser.add_argument("--workloads", default="event,discrete")
    parser.add_argument("--modes", default="data_parallel,chunked")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop starting new measurements once this many seconds have passed, all platforms "
                             "together (a started one still compiles and times one round); default 240, "
                             "with --accelerator 270")
    parser.add_argument("--timeout-s", type=float, default=None,
                        help="per platform child process (default 600; with --accelerator 330 in all)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/scaling_devices_<platform>.json)")
    parser.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", default=None, help=argparse.SUPPRESS)
    # smoke test of the --accelerator path on a machine without one: the CPU plays the accelerator
    parser.add_argument("--cpu-as-accelerator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    default_devices = "1,2,4,8" if args.accelerator else "1,2,4"
    args.device_counts = sorted({int(n) for n in (args.devices or default_devices).split(",")})
    args.workload_list = [w for w in args.workloads.split(",") if w]
    args.mode_list = [m for m in args.modes.split(",") if m]
    for workload in args.workload_list:
        if workload not in ("event", "discrete"):
            parser.error(f"unknown workload {workload!r} (event, discrete)")
    for mode in args.mode_list:
        if mode not in ("data_parallel", "chunked"):
            parser.error(f"unknown mode {mode!r} (data_parallel, chunked)")
    if args.child:
        out = Path(args.child_out)
        record = run_child(args.child, args.device_counts, args.size, args.workload_list, args.mode_list,
                           args.budget_s, out)
        out.write_text(json.dumps(record, indent=1))
        return record

    import tempfile

    args.tmp = args.tmp or tempfile.mkdtemp(prefix="scaling_devices_")
    started = time.perf_counter()
    total_budget = args.budget_s if args.budget_s is not None else (270.0 if args.accelerator else 240.0)
    runs: List[Dict[str, Any]] = []
    setup: Dict[str, Any] = {}
    if args.accelerator:
        total_timeout = args.timeout_s if args.timeout_s is not None else 330.0
        if args.cpu_as_accelerator:
            setup = {"backend": "cpu", "log": ["--cpu-as-accelerator: the CPU plays the accelerator (smoke test)"]}
        else:
            setup = _ensure_accelerator(allow_install=not args.no_install)
        for line in setup["log"]:
            print(f"setup: {line}", flush=True)
        spent = time.perf_counter() - started
        if setup["backend"] not in ("cpu", "error") or args.cpu_as_accelerator:
            args.size_name = "small" if args.small else ("tiny" if args.cpu_as_accelerator else "gpu")
            args.budget_s = max(10.0, 0.6 * (total_budget - spent))
            platform_name = "cpu-as-accelerator" if args.cpu_as_accelerator else "accelerator"
            runs.append(_child(platform_name, args, max(30.0, total_timeout - spent - 30.0)))
        else:
            runs.append({"platform": "none", "note": "no accelerator: " + "; ".join(setup["log"])})
        # the same step on the machine's CPU (simulated devices), in the time left
        spent = time.perf_counter() - started
        if total_budget - spent > 20 and total_timeout - spent > 40:
            args.size_name = "small" if args.small else ("tiny" if args.cpu_as_accelerator else "cpu")
            args.budget_s = total_budget - spent
            runs.append(_child("cpu", args, total_timeout - spent - 10.0))
    else:
        timeout = args.timeout_s if args.timeout_s is not None else 600.0
        if args.platform == "auto":
            args.size_name = "small" if args.small else "gpu"
            args.budget_s = total_budget / 2
            accelerator = _child("accelerator", args, timeout)
            if accelerator.get("platform") not in ("none", None) or "error" in accelerator:
                runs.append(accelerator)
        args.size_name = "small" if args.small else "cpu"
        args.budget_s = max(10.0, total_budget - (time.perf_counter() - started))
        runs.append(_child("cpu", args, timeout))
    timed_accelerator = any(run.get("platform") not in ("cpu", "none", None) and run.get("results") for run in runs)
    if args.cpu_as_accelerator:
        timed_accelerator = bool(runs and runs[0].get("results"))
    platform = "gpu" if any(run.get("platform") == "gpu" for run in runs) else "cpu"
    result = {
        "name": "scaling_devices",
        "date": datetime.date.today().isoformat(),
        "command": "python benchmarks/scaling_devices.py" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:] if argv is None else argv)),
        "load_average_start": harness.load_average(),
        "setup": setup,
        "runs": runs,
        "wall_s": time.perf_counter() - started,
    }
    out = Path(args.out) if args.out else HERE / "results" / f"scaling_devices_{platform}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(_markdown(result) + "\n")
    print(_markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')} ({result['wall_s']:.0f} s)")
    if args.accelerator and not timed_accelerator:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
