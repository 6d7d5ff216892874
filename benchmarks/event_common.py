"""Shared driver of the event-based benchmarks (``event_forward.py``, ``eventprop.py``):
runs jaxsnn and upstream jaxsnn 0.3.0 (its own venv) on identical inputs and weights, one
process each, and checks that both give the same spikes / gradients."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import harness  # noqa: E402
import run as runner  # noqa: E402

LIBS = ("jaxsnn", "jaxsnn-0.3.0")
WORKER = {"jaxsnn": "w_event_jaxsnn.py", "jaxsnn-0.3.0": "w_event_upstream.py"}


def parse_args(description: str, extra=None):
    """The event benchmarks' command line; ``extra(parser)`` adds a script's own options."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes, jaxsnn and upstream")
    ap.add_argument("--only-jaxsnn", action="store_true", help="skip upstream (no venv needed)")
    ap.add_argument("--results", default=str(BENCH_DIR / "results"))
    ap.add_argument("--kernel", default="auto",
                    help="jaxsnn next-spike kernel (auto, quadratic, root); upstream: analytic")
    ap.add_argument("--final", action="store_true", help="mark results as final")
    if extra is not None:
        extra(ap)
    return ap.parse_args()


def capacities(cfg: Dict[str, Any], lib: str) -> Dict[str, int]:
    """Event buffer sizes. Upstream's buffers hold a layer's input events as well as its own
    spikes (its example uses ``hidden + 25`` for 25 input spikes), jaxsnn's only output spikes."""
    n_in_events = 5 * cfg.get("dup", 1)
    if lib == "jaxsnn-0.3.0":
        hidden_cap = cfg["hidden"] + n_in_events
        return {"capacity_hidden": hidden_cap, "capacity_output": hidden_cap + 3}
    return {"capacity_hidden": cfg["hidden"], "capacity_output": 3}


def worker_config(cfg: Dict[str, Any], lib: str, out: str, kernel: str = "auto") -> Dict[str, Any]:
    """The configuration one library's worker receives: the shared workload configuration plus
    that library's buffer capacities, its output file and jaxsnn's kernel choice. The data
    (``harness.event_data``) depends only on the shared keys, so every library sees the same."""
    return dict(cfg, **capacities(cfg, lib), out=out, kernel=kernel)


def run_pair(workload: str, cfg: Dict[str, Any], args, libs=LIBS) -> Dict[str, Any]:
    """Run every library on one configuration; return per-library results and file paths."""
    out: Dict[str, Any] = {}
    tmp = Path(tempfile.mkdtemp(prefix="jaxsnn-event-"))
    for lib in libs:
        runner.LIBRARIES.setdefault(f"event:{lib}", {
            "worker": WORKER[lib], "venv": None if lib == "jaxsnn" else "jaxsnn-0.3.0"})
        wcfg = worker_config(cfg, lib, str(tmp / f"{lib}.npz"), getattr(args, "kernel", "auto"))
        res = runner.run_worker(f"event:{lib}", workload, wcfg, args.timeout)
        res["npz"] = wcfg["out"]
        out[lib] = res
        print(f"[{workload}] {json.dumps({k: cfg[k] for k in ('hidden', 'dup') if k in cfg})} "
              f"{lib}: {summary(res)}", flush=True)
    return out


def summary(res: Dict[str, Any]) -> str:
    if "error" in res:
        return "ERROR " + res["error"][:300]
    parts = [f"{m} {t['median_s']:.4f} s" if "median_s" in t else f"{m} ERROR {t.get('error')}"
             for m, t in res.get("modes", {}).items()]
    return "; ".join(parts)


def spike_sets(path: str, layer: str):
    """Per sample: dict neuron index -> sorted spike times of one layer (t1/i1 or t2/i2)."""
    data = np.load(path)
    times, idx = data["t" + layer], data["i" + layer]
    per_sample = []
    for t_row, i_row in zip(times, idx):
        d: Dict[int, List[float]] = {}
        for t, i in zip(t_row, i_row):
            if i >= 0 and np.isfinite(t):
                d.setdefault(int(i), []).append(float(t))
        per_sample.append({k: sorted(v) for k, v in d.items()})
    return per_sample


def compare_spikes(path_a: str, path_b: str) -> Dict[str, Any]:
    """Max |time difference| over spikes both produce, and how many spikes only one produces."""
    out: Dict[str, Any] = {}
    for layer, name in (("1", "hidden"), ("2", "output")):
        a, b = spike_sets(path_a, layer), spike_sets(path_b, layer)
        max_diff, unmatched, total = 0.0, 0, 0
        for sa, sb in zip(a, b):
            for neuron in set(sa) | set(sb):
                ta, tb = sa.get(neuron, []), sb.get(neuron, [])
                n = min(len(ta), len(tb))
                unmatched += abs(len(ta) - len(tb))
                total += max(len(ta), len(tb))
                if n:
                    max_diff = max(max_diff, float(np.max(np.abs(np.subtract(ta[:n], tb[:n])))))
        out[name] = {"max_abs_time_diff_s": max_diff, "spikes_only_in_one": unmatched,
                     "spikes": total}
    return out


def compare_gradients(path_a: str, path_b: str) -> Dict[str, Any]:
    """Losses of both files, the largest |gradient difference| and the largest |gradient| of
    ``path_b`` over both weight matrices (``g1``, ``g2``)."""
    a, b = np.load(path_a), np.load(path_b)
    return {
        "loss": [float(a["loss"]), float(b["loss"])],
        "max_abs_grad_diff": max(float(np.max(np.abs(a[g] - b[g]))) for g in ("g1", "g2")),
        "max_abs_grad": max(float(np.max(np.abs(b[g]))) for g in ("g1", "g2")),
    }


def header(workload: str, args) -> Dict[str, Any]:
    return {
        "workload": workload,
        "preliminary": not args.final,
        "machine": harness.machine_info(),
        "load_average_start": harness.load_average(),
        "neuron": harness.EVENT_DEFAULTS,
        "jaxsnn_kernel": args.kernel,
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write(result: Dict[str, Any], stem: Path, markdown: str) -> None:
    result["load_average_end"] = harness.load_average()
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown)
