"""Run the benchmark suite: every workload for every library, one library at a time.

    python benchmarks/run.py --setup          # create benchmarks/.venvs/<peer> (once)
    python benchmarks/run.py                  # all discrete workloads -> benchmarks/results/
    python benchmarks/run.py --all            # also the event-based ones (event_forward, eventprop,
                                              # event_scaling)
    python benchmarks/run.py --workloads event_forward,eventprop,event_scaling --final
                                              # the event-based ones against upstream 0.3.0
    python benchmarks/run.py --setup --all --final   # everything, on a quiet machine

Each library runs in its own subprocess (its own virtual environment for the peers), so no
library's threads, caches or compiled code affect another's timings. A peer that failed to
install or to run is recorded in the results with its error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402

RESULTS = BENCH_DIR / "results"
WORKERS = BENCH_DIR / "workers"

# library -> (worker script, venv name or None for this interpreter)
LIBRARIES: Dict[str, Dict[str, Optional[str]]] = {
    "jaxsnn": {"worker": "w_jaxsnn.py", "venv": None},
    "jax (hand-written)": {"worker": "w_jax_handwritten.py", "venv": None},
    "jaxsnn-0.3.0": {"worker": "w_jaxsnn030.py", "venv": "jaxsnn-0.3.0"},
    "spyx": {"worker": "w_spyx.py", "venv": "spyx"},
    "snnax": {"worker": "w_snnax.py", "venv": "snnax"},
    "slax": {"worker": "w_slax.py", "venv": "slax"},
    "norse": {"worker": "w_norse.py", "venv": "norse"},
    "snntorch": {"worker": "w_snntorch.py", "venv": "snntorch"},
}
REFERENCE = "jaxsnn"
MERGE = False

MLP = {"T": 100, "batch": 32, "n_in": 2048, "hidden": 2048, "p_in": 0.1, "seed": 0}
CNN = {"T": 100, "batch": 32, "channels_in": 2, "channels": 16, "size": 48, "kernel": 3,
       "p_in": 0.1, "seed": 0}
TINY_MLP = {"T": 5, "batch": 2, "n_in": 16, "hidden": 16, "p_in": 0.3, "seed": 0}
TINY_CNN = {"T": 4, "batch": 2, "channels_in": 2, "channels": 4, "size": 8, "kernel": 3,
            "p_in": 0.3, "seed": 0}
# DVS-gesture-like: conv -> LIF -> max-pool -> conv -> LIF -> max-pool -> dense -> LIF
CNN_POOL = dict(CNN, pool=2, classes=11)
TINY_CNN_POOL = dict(TINY_CNN, pool=2, classes=3, gain=4.0)  # strong enough to reach the end
SCALING_AXES = {
    "T": [25, 50, 100, 200, 400],
    "hidden": [256, 512, 1024, 2048, 4096],
    "batch": [1, 4, 16, 64, 256],
}


def run_worker(lib: str, workload: str, cfg: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Run one library on one workload in a fresh subprocess; never raises."""
    spec = LIBRARIES[lib]
    if spec["venv"] is None:
        python = sys.executable
    else:
        status = peers.peer_status(spec["venv"])
        if status is None:
            return {"error": "not installed: run `python benchmarks/run.py --setup`"}
        if not status.get("ok"):
            return {"error": f"install failed: {status.get('error')}", "versions": {}}
        python = str(peers.venv_python(spec["venv"]))
    # ``tree``: another checkout of this repository (e.g. an earlier commit), whose worker and
    # package are run instead of this checkout's.
    workers = Path(spec["tree"]) / "benchmarks" / "workers" if spec.get("tree") else WORKERS
    cmd = [python, str(workers / spec["worker"]), "--workload", workload,
           "--config", json.dumps(cfg)]
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    if spec.get("tree"):
        env["PYTHONPATH"] = str(spec["tree"])
    if spec["venv"] is not None:
        # A PYTHONPATH that points at this checkout would shadow the peer's own packages
        # (jaxsnn 0.3.0 in its venv above all).
        env.pop("PYTHONPATH", None)
    start = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=str(workers))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH_RESULT "):
            out = json.loads(line[len("BENCH_RESULT "):])
            out["wall_s"] = round(time.time() - start, 1)
            return out
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
    return {"error": f"worker exited with code {proc.returncode}: " + " | ".join(tail)}


def run_workload(name: str, workload: str, cfg: Dict[str, Any], libs: List[str],
                 timeout: float, preliminary: bool, extra: Optional[Dict] = None) -> Dict:
    """Run ``libs`` on ``workload`` one after another and write the JSON/markdown/PNG."""
    result: Dict[str, Any] = {
        "workload": name,
        "preliminary": preliminary,
        "machine": harness.machine_info(),
        "load_average_start": harness.load_average(),
        "config": cfg,
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "libraries": {},
    }
    if extra:
        result.update(extra)
    previous = RESULTS / f"{name}.json"
    if MERGE and previous.exists():  # keep the other libraries' results of the last run
        result["libraries"] = json.loads(previous.read_text()).get("libraries", {})
        result["merged"] = True
    for lib in libs:
        print(f"[{name}] {lib} ...", flush=True)
        res = run_worker(lib, workload, cfg, timeout)
        result["libraries"][lib] = res
        print(f"[{name}] {lib}: {report.one_line(res)}", flush=True)
    result["load_average_end"] = harness.load_average()
    report.add_ratios(result, REFERENCE)
    report.write(result, RESULTS / name)
    return result


def fastest_peers(mlp_result: Dict[str, Any], count: int = 2) -> List[str]:
    """The ``count`` peers with the shortest forward+backward median in an mlp2048 result."""
    times = []
    for lib, res in mlp_result["libraries"].items():
        if lib in (REFERENCE, "jax (hand-written)"):
            continue
        back = res.get("modes", {}).get("backward", {})
        if "median_s" in back:
            times.append((back["median_s"], lib))
    return [lib for _, lib in sorted(times)[:count]]


def main(argv=None) -> int:
    global RESULTS, MERGE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--setup", action="store_true", help="create/refresh the peers' venvs first")
    ap.add_argument("--setup-only", action="store_true", help="only create the venvs")
    ap.add_argument("--workloads", default="mlp2048,cnn48,scaling",
                    help="comma list of mlp2048, cnn48, cnn_pool, scaling, event_forward, "
                         "eventprop, event_scaling")
    ap.add_argument("--all", action="store_true", help="all workloads, event-based ones included")
    ap.add_argument("--libs", default=",".join(LIBRARIES), help="comma list of libraries")
    ap.add_argument("--iterations", type=int, default=10, help="timed calls per measurement")
    ap.add_argument("--scaling-iterations", type=int, default=10)
    ap.add_argument("--scaling-max-seconds", type=float, default=120.0,
                    help="stop timing a scaling point after this long (at least 3 calls)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per worker process")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (checks that everything runs)")
    ap.add_argument("--results", default=str(RESULTS),
                    help="output folder (default benchmarks/results; --tiny: a temp folder)")
    ap.add_argument("--merge", action="store_true",
                    help="update only the given --libs in existing result files")
    ap.add_argument("--final", action="store_true",
                    help="mark results as final (use only on a quiet machine)")
    args = ap.parse_args(argv)

    if args.tiny and args.results == str(RESULTS):
        import tempfile

        args.results = tempfile.mkdtemp(prefix="jaxsnn-bench-tiny-")
    RESULTS = Path(args.results)
    MERGE = args.merge
    print(f"results -> {RESULTS}", flush=True)
    if args.setup or args.setup_only:
        for name in peers.PEERS:
            st = peers.setup_peer(name, force=args.setup_only)
            print(f"setup {name}: {'ok' if st['ok'] else st['error']}", flush=True)
        if args.setup_only:
            return 0
    workloads = (["mlp2048", "cnn48", "cnn_pool", "scaling", "event_forward", "eventprop",
                  "event_scaling"]
                 if args.all else args.workloads.split(","))
    libs = [lib for lib in args.libs.split(",") if lib]
    unknown = [lib for lib in libs if lib not in LIBRARIES]
    if unknown:
        ap.error(f"unknown libraries {unknown}; choose from {list(LIBRARIES)}")
    prelim = not args.final
    mlp = dict(TINY_MLP if args.tiny else MLP, iterations=args.iterations, warmup=2)
    mlp_result = None
    if "mlp2048" in workloads:
        peak = run_worker("jax (hand-written)", "matmul_peak",
                          dict(mlp, modes=["forward"], iterations=max(args.iterations, 10)),
                          args.timeout)
        mlp_result = run_workload("mlp2048", "mlp2048", mlp, libs, args.timeout, prelim,
                                  extra={"matmul_peak": report.peak_summary(peak, mlp)})
    if "cnn48" in workloads:
        cnn = dict(TINY_CNN if args.tiny else CNN, iterations=args.iterations, warmup=2)
        run_workload("cnn48", "cnn48", cnn, libs, args.timeout, prelim)
    if "cnn_pool" in workloads:
        cnn_pool = dict(TINY_CNN_POOL if args.tiny else CNN_POOL, iterations=args.iterations,
                        warmup=2)
        run_workload("cnn_pool", "cnn_pool", cnn_pool, libs, args.timeout, prelim)
    if "scaling" in workloads:
        if mlp_result is None and (RESULTS / "mlp2048.json").exists():
            mlp_result = json.loads((RESULTS / "mlp2048.json").read_text())
        chosen = fastest_peers(mlp_result) if mlp_result else []
        scale_libs = [REFERENCE] + [lib for lib in chosen if lib in libs]
        report.run_scaling(run_worker, scale_libs, mlp, SCALING_AXES, args, prelim,
                           RESULTS / "scaling")
    for name in ("event_forward", "eventprop", "event_scaling"):
        if name in workloads:
            cmd = [sys.executable, str(BENCH_DIR / f"{name}.py")]
            cmd += ["--results", str(RESULTS)]
            if args.tiny:
                cmd.append("--tiny")
            if args.final:
                cmd.append("--final")
            print(f"[{name}] " + " ".join(cmd), flush=True)
            start = time.time()
            subprocess.run(cmd, check=False)
            print(f"[{name}] done in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
