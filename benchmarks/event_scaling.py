"""Multi-spike event network and scaling of the event-based simulation, jaxsnn vs upstream 0.3.0.

    python benchmarks/event_scaling.py     # -> benchmarks/results/event_scaling.{json,md,png}

Network: time-coded Randman inputs (``harness.multi_data``: each of ``n_in`` input neurons spikes
``spikes_per_input`` times in 20 ms) -> ``hidden`` LIF -> ``n_out`` LIF, tau_syn 5 ms, tau_mem
10 ms, window 30 ms. ``multi``: reset to 0 and no refractory period (upstream 0.3.0 has none),
so every neuron spikes several times (about 3-4 spikes per hidden neuron); ``single``: one spike
per neuron (upstream's ``v_reset = -1000``; jaxsnn ``t_ref = t_max``). Every point runs each
library in its own process on identical inputs and weights; ``forward`` is the jitted batched
forward pass, ``grad`` forward + EventProp backward of a loss of every output spike time
(``w_event_jaxsnn.multi_loss``). Event buffers are as small as the spikes allow, the same for
both libraries (jaxsnn finds them, upstream's also hold each layer's input events).

1. ``multispike``: Randman 100 -> 128 -> 10, batch 32, ``multi``: jaxsnn with
   ``algorithm="auto"`` (whatever jaxsnn chooses), jaxsnn with ``algorithm="scan"`` and
   ``backward="scan"`` (the event-by-event scan, forward and EventProp backward), the event scan
   of commit ``FILED_COMMIT`` (when the speed-up figure was set; run from a git worktree of it,
   t_ref 0 only) and upstream; spike-time and gradient agreement between them; and the
   same network with a 1 ms refractory period (jaxsnn only: upstream has no ``t_ref``).
2. ``sweeps``: hidden size (100 input events; ``single`` 30 -> 4000, ``multi`` 30 -> 500, whose
   hidden spikes grow with the hidden size), input events per sample 20 -> 2000 (20 inputs,
   1 -> 100 spikes each, hidden 128) for the ``single`` and the ``multi`` network, and batch
   1 -> 256 (``multi``, 100 -> 128 -> 10), batch 16 elsewhere; forward and grad, jaxsnn (auto)
   vs upstream; peak RSS of every process.
3. ``slopes``: least-squares slope of log(time) against log(work) per sweep, network, library
   and mode (1 = cost linear in the work), for two work measures:
   ``synaptic_work`` = batch x sum over layers of (events arriving at the layer x its neurons)
   = batch x (input events x hidden + hidden spikes x n_out), the number of synaptic events the
   network processes (the "events x neurons" of the cost model); and the coarser ``work`` =
   batch x (input events + hidden + output spikes) x (hidden + n_out), which also multiplies
   each layer's events by the other layer's neurons.

``python benchmarks/event_scaling.py --rescore`` recomputes the work measures, slopes, table and
chart from the committed ``event_scaling.json`` without measuring again.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

import event_common as ec

JAXSNN, SCAN, UPSTREAM = "jaxsnn", "jaxsnn (scan)", "jaxsnn-0.3.0"
#: The event scan as it was when the event-training speed figures were set (issue filed at this
#: commit): its forward + backward is the baseline of the multi-spike speed-up, run from a
#: temporary git worktree of that commit in the same run.
FILED_COMMIT = "92ac727"
FILED = f"jaxsnn (scan, {FILED_COMMIT})"
MODES = ("forward", "grad")

FULL = {
    "multispike": dict(n_in=100, hidden=128, n_out=10, spikes_per_input=1, batch=32),
    "t_ref": 1e-3,
    # a multi-spike hidden layer's spikes grow with its size, so its scan costs hidden^2:
    # upstream's multi-spike grad at 4000 would take minutes per call
    "hidden": {"single": [30, 250, 1000, 4000], "multi": [30, 125, 500]},
    "events": [1, 10, 100],  # spikes per input neuron, 20 inputs: 20 -> 2000 input events
    "events_n_in": 20,
    "events_hidden": 128,
    "batch": [1, 16, 256],
    "sweep_batch": 16,
    "iterations": 5,
    # calls of a few milliseconds are timed for at least this long (up to 200 calls): five
    # samples of a 1-3 ms call gave medians 1.6x apart between runs
    "min_seconds": 1.0,
    "max_seconds": 20.0,
    "timeout": 300.0,
}
TINY = {
    "multispike": dict(n_in=8, hidden=6, n_out=3, spikes_per_input=1, batch=2),
    "t_ref": 1e-3,
    "hidden": {"single": [4, 8], "multi": [4, 8]},
    "events": [1, 2],
    "events_n_in": 4,
    "events_hidden": 6,
    "batch": [1, 2],
    "sweep_batch": 2,
    "iterations": 1,
    "max_seconds": 5.0,
    "timeout": 300.0,
}


def filed_tree() -> Optional[Path]:
    """A detached git worktree of ``FILED_COMMIT`` (made once per run), or None without git."""
    import subprocess

    target = Path(tempfile.gettempdir()) / f"jaxsnn-{FILED_COMMIT}"
    if (target / "benchmarks" / "workers").is_dir():
        return target
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run(["git", "-C", str(repo), "worktree", "add", "--force", "--detach", str(target),
                           FILED_COMMIT], capture_output=True, text=True)
    return target if done.returncode == 0 else None


def run_point(cfg: Dict[str, Any], labels: List[str], args, timeout: float) -> Dict[str, Any]:
    """Run the ``event_multi`` workload for every label (jaxsnn first: it sizes the buffers)."""
    runner = ec.runner
    tmp = Path(tempfile.mkdtemp(prefix="jaxsnn-event-scaling-"))
    out: Dict[str, Any] = {}
    caps: Optional[Dict[str, int]] = None
    for label in labels:
        lib = UPSTREAM if label == UPSTREAM else "jaxsnn"
        runner.LIBRARIES.setdefault(f"event:{lib}", {
            "worker": ec.WORKER[lib], "venv": None if lib == "jaxsnn" else "jaxsnn-0.3.0"})
        if label == FILED:
            tree = filed_tree()
            if tree is None:
                out[label] = {"error": f"no git worktree of {FILED_COMMIT} could be made"}
                continue
            lib = FILED
            runner.LIBRARIES.setdefault(f"event:{lib}", {"worker": ec.WORKER["jaxsnn"], "venv": None,
                                                          "tree": str(tree)})
        wcfg = dict(cfg, out=str(tmp / f"{label.replace(' ', '_').replace(',', '')}.npz"),
                    algorithm="scan" if label in (SCAN, FILED) else "auto")
        if caps is not None:
            wcfg.update(caps)
        elif lib != "jaxsnn":
            out[label] = {"error": "no buffer sizes: the jaxsnn run failed"}
            continue
        if lib == UPSTREAM and cfg.get("t_ref", 0.0) > 0 and not cfg.get("single"):
            out[label] = {"error": "not run: jaxsnn 0.3.0's event LIF has no refractory period"}
            continue
        res = runner.run_worker(f"event:{lib}", "event_multi", wcfg, timeout)
        res["npz"] = wcfg["out"]
        if label == FILED:
            res["source"] = f"git worktree of {FILED_COMMIT} (its jaxsnn package and worker)"
        info = res.get("info", {})
        if caps is None and "capacity_hidden" in info:
            caps = {"capacity_hidden": info["capacity_hidden"],
                    "capacity_output": info["capacity_output"]}
        out[label] = res
        shown = {k: cfg[k] for k in ("hidden", "n_in", "spikes_per_input", "batch", "single",
                                     "t_ref") if k in cfg}
        print(f"[event_scaling] {json.dumps(shown)} {label}: {ec.summary(res)}", flush=True)
    return out


def median(res: Dict[str, Any], mode: str) -> Optional[float]:
    return res.get("modes", {}).get(mode, {}).get("median_s")


def agreement(res: Dict[str, Any], a: str, b: str) -> Optional[Dict[str, Any]]:
    """Spike-time and gradient agreement of two labels' files (None if either failed)."""
    if any("error" in res.get(x, {"error": 1}) or not Path(res[x]["npz"]).exists() for x in (a, b)):
        return None
    return {"spikes": ec.compare_spikes(res[a]["npz"], res[b]["npz"]),
            "gradients": ec.compare_gradients(res[a]["npz"], res[b]["npz"])}


def describe(cfg: Dict[str, Any], res: Dict[str, Any]) -> Dict[str, Any]:
    """A result point: configuration, measured spikes, events, work measure and libraries."""
    point = {k: cfg[k] for k in ("n_in", "hidden", "n_out", "spikes_per_input", "batch")}
    point["network"] = "single" if cfg.get("single") else "multi"
    point["t_ref_s"] = cfg.get("t_ref", 0.0)
    point["input_events_per_sample"] = cfg["n_in"] * cfg["spikes_per_input"]
    counts = res.get(JAXSNN, {}).get("spike_rates")
    if counts:
        point["spikes_per_sample"] = {"hidden": counts[0], "output": counts[1]}
        point["spikes_per_hidden_neuron"] = counts[0] / cfg["hidden"]
        events = point["input_events_per_sample"] + counts[0] + counts[1]
        point["events_per_sample"] = events
        point["work"] = cfg["batch"] * events * (cfg["hidden"] + cfg["n_out"])
        point["synaptic_work"] = cfg["batch"] * (
            point["input_events_per_sample"] * cfg["hidden"] + counts[0] * cfg["n_out"])
    point["libraries"] = res
    return point


WORK_MEASURES = ("synaptic_work", "work")


def slope(xs: List[float], ys: List[float]) -> Optional[float]:
    """Least-squares slope of log(y) against log(x) (None below two distinct points)."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def slopes(sweeps: Dict[str, List[Dict[str, Any]]], measure: str = "synaptic_work") -> List[Dict[str, Any]]:
    """Per sweep, network, library and mode: the log-log slope of time against ``measure``."""
    rows = []
    for sweep, points in sweeps.items():
        for network in ("single", "multi"):
            pts = [p for p in points if p["network"] == network and measure in p]
            for lib in (JAXSNN, UPSTREAM):
                for mode in MODES:
                    xy = [(p[measure], median(p["libraries"].get(lib, {}), mode)) for p in pts]
                    xy = [(x, y) for x, y in xy if y]
                    s = slope([x for x, _ in xy], [y for _, y in xy])
                    if s is not None:
                        rows.append({"sweep": sweep, "network": network, "library": lib,
                                     "mode": mode, "measure": measure, "slope": s, "points": len(xy),
                                     "work_range": [min(x for x, _ in xy), max(x for x, _ in xy)]})
    return rows


def all_slopes(sweeps: Dict[str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    """The slopes against every work measure (``synaptic_work`` first)."""
    return [row for measure in WORK_MEASURES for row in slopes(sweeps, measure)]


def rescore(stem: Path) -> None:
    """Recompute work measures, slopes, table and chart of a saved run (no new measurement)."""
    result = json.loads(stem.with_suffix(".json").read_text())
    for points in result["sweeps"].values():
        for p in points:
            counts = p.get("spikes_per_sample")
            if counts:
                p["synaptic_work"] = p["batch"] * (
                    p["input_events_per_sample"] * p["hidden"] + counts["hidden"] * p["n_out"])
    result["slopes"] = all_slopes(result["sweeps"])
    result["rescored"] = ("work measures and slopes recomputed from the saved measurements by "
                          "python benchmarks/event_scaling.py --rescore")
    ec.write(result, stem, markdown(result))
    chart(result, stem.with_suffix(".png"))


def _options(ap) -> None:
    ap.add_argument("--sections", default="multispike,hidden,events,batch",
                    help="comma list of the parts to run (multispike, hidden, events, batch); "
                         "a partial run is marked preliminary")
    ap.add_argument("--rescore", action="store_true",
                    help="recompute work measures, slopes, table and chart of the saved run only")


def main() -> int:
    args = ec.parse_args(__doc__, _options)
    if args.rescore:
        rescore(Path(args.results) / "event_scaling")
        return 0
    sections = set(args.sections.split(","))
    unknown = sections - {"multispike", "hidden", "events", "batch"}
    if unknown:
        raise SystemExit(f"unknown --sections {sorted(unknown)}")
    if len(sections) < 4:
        args.final = False
    sizes = TINY if args.tiny else FULL
    libs = [JAXSNN] if args.only_jaxsnn else [JAXSNN, UPSTREAM]
    base = dict(n_samples=0, modes=list(MODES), iterations=min(args.iterations, sizes["iterations"]),
                warmup=2, max_seconds=sizes["max_seconds"], min_seconds=sizes.get("min_seconds"))
    timeout = min(args.timeout, sizes["timeout"])
    result = ec.header("event_scaling", args)
    result["neuron"] = ec.harness.MULTI_DEFAULTS
    result["sizes"] = sizes
    result["sections"] = sorted(sections)

    # 1. the multi-spike network: auto vs scan vs upstream, and with a refractory period
    net = sizes["multispike"]
    multispike = []
    for t_ref in (0.0, sizes["t_ref"]) if "multispike" in sections else ():
        cfg = dict(base, **net, n_samples=net["batch"], t_ref=t_ref)
        res = run_point(cfg, [JAXSNN, SCAN] + libs[1:] + ([FILED] if t_ref == 0.0 else []), args, timeout)
        point = describe(cfg, res)
        point["agreement_auto_vs_scan"] = agreement(res, JAXSNN, SCAN)
        if UPSTREAM in res:
            point["agreement_auto_vs_upstream"] = agreement(res, JAXSNN, UPSTREAM)
        for mode in MODES:
            t = {lab: median(r, mode) for lab, r in res.items()}
            if t.get(JAXSNN) and t.get(SCAN):
                point[f"{mode}_speedup_vs_scan"] = t[SCAN] / t[JAXSNN]
            if t.get(JAXSNN) and t.get(UPSTREAM):
                point[f"{mode}_speedup_vs_upstream"] = t[UPSTREAM] / t[JAXSNN]
            if t.get(JAXSNN) and t.get(FILED):
                point[f"{mode}_speedup_vs_filed_scan"] = t[FILED] / t[JAXSNN]
        if median(res[JAXSNN], "forward") and median(res[JAXSNN], "grad"):
            point["grad_over_forward"] = median(res[JAXSNN], "grad") / median(res[JAXSNN], "forward")
        multispike.append(point)
    result["multispike"] = multispike

    # 2. sweeps
    sweeps: Dict[str, List[Dict[str, Any]]] = {"hidden": [], "events": [], "batch": []}
    batch = sizes["sweep_batch"]
    for network in ("single", "multi"):
        for hidden in sizes["hidden"][network] if "hidden" in sections else ():
            cfg = dict(base, n_in=net["n_in"], hidden=hidden, n_out=net["n_out"],
                       spikes_per_input=1, batch=batch, n_samples=batch, single=network == "single")
            sweeps["hidden"].append(describe(cfg, run_point(cfg, libs, args, timeout)))
        for per in sizes["events"] if "events" in sections else ():
            cfg = dict(base, n_in=sizes["events_n_in"], hidden=sizes["events_hidden"],
                       n_out=net["n_out"], spikes_per_input=per, batch=batch, n_samples=batch,
                       single=network == "single")
            sweeps["events"].append(describe(cfg, run_point(cfg, libs, args, timeout)))
    for b in sizes["batch"] if "batch" in sections else ():
        cfg = dict(base, n_in=net["n_in"], hidden=net["hidden"], n_out=net["n_out"],
                   spikes_per_input=1, batch=b, n_samples=b)
        sweeps["batch"].append(describe(cfg, run_point(cfg, libs, args, timeout)))
    for points in sweeps.values():  # the spike files are not kept
        for p in points:
            for r in p["libraries"].values():
                r.pop("npz", None)
    for p in multispike:
        for r in p["libraries"].values():
            r.pop("npz", None)
    result["sweeps"] = sweeps
    result["slopes"] = all_slopes(sweeps)
    result["load_average_end"] = ec.harness.load_average()
    stem = Path(args.results) / "event_scaling"
    ec.write(result, stem, markdown(result))
    chart(result, stem.with_suffix(".png"))
    return 0


def _fmt(x, f: str) -> str:
    return "" if x is None else format(x, f)


def _cell(res: Dict[str, Any], mode: str) -> str:
    t = median(res, mode)
    if t is not None:
        return f"{t:.4f}"
    err = res.get("error") or res.get("modes", {}).get(mode, {}).get("error")
    return f"error: {err[:80]}" if err else ""


def markdown(result: Dict[str, Any]) -> str:
    lines = ["# event_scaling (time-coded Randman, multi- and single-spike event networks)", ""]
    if result["preliminary"]:
        lines += ["**Preliminary**: not a `--final` run; see the load averages below.", ""]
    m = result["machine"]
    lines += [f"Machine: {m['cpu']}, {m['cores']} cores, load {result['load_average_start']} -> "
              f"{result.get('load_average_end')}", ""]
    for point in result["multispike"]:
        lines += [f"## {point['n_in']} -> {point['hidden']} -> {point['n_out']}, batch "
                  f"{point['batch']}, t_ref {point['t_ref_s'] * 1e3:g} ms "
                  f"({_fmt(point.get('spikes_per_hidden_neuron'), '.2f')} spikes per hidden "
                  f"neuron, {_fmt(point.get('events_per_sample'), '.0f')} events per sample)", "",
                  "| library | forward s | forward + backward s | peak RSS MiB |",
                  "|---|---|---|---|"]
        for lab, res in point["libraries"].items():
            lines.append(f"| {lab} | {_cell(res, 'forward')} | {_cell(res, 'grad')} | "
                         f"{res.get('peak_rss_mib', '')} |")
        lines.append("")
        for key in ("forward_speedup_vs_scan", "grad_speedup_vs_scan", "forward_speedup_vs_upstream",
                    "grad_speedup_vs_upstream", "forward_speedup_vs_filed_scan", "grad_speedup_vs_filed_scan",
                    "grad_over_forward"):
            if key in point:
                lines.append(f"- {key.replace('_', ' ')}: {point[key]:.2f}x")
        for key in ("agreement_auto_vs_scan", "agreement_auto_vs_upstream"):
            a = point.get(key)
            if a:
                s, g = a["spikes"], a["gradients"]
                lines.append(
                    f"- {key.replace('_', ' ')}: max spike-time difference "
                    f"{max(s['hidden']['max_abs_time_diff_s'], s['output']['max_abs_time_diff_s']):.2e} s, "
                    f"spikes only in one {s['hidden']['spikes_only_in_one'] + s['output']['spikes_only_in_one']}"
                    f" of {s['hidden']['spikes'] + s['output']['spikes']}; max |gradient difference| "
                    f"{g['max_abs_grad_diff']:.2e} (max |gradient| {g['max_abs_grad']:.2e})")
        lines.append("")
    sizes, net = result["sizes"], result["sizes"]["multispike"]
    titles = {"hidden": f"hidden size ({net['n_in']} input events)",
              "events": f"input events per sample ({sizes['events_n_in']} inputs, hidden "
                        f"{sizes['events_hidden']})",
              "batch": f"batch (multi-spike, {net['n_in']} -> {net['hidden']} -> {net['n_out']})"}
    for sweep, points in result["sweeps"].items():
        lines += [f"## Sweep: {titles[sweep]}", "",
                  "| network | hidden | input events | events/sample | batch | "
                  + " | ".join(f"{lib} {mode} s" for lib in (JAXSNN, UPSTREAM) for mode in MODES)
                  + " | RSS MiB (jaxsnn / 0.3.0) |",
                  "|---|---|---|---|---|" + "---|" * (2 * len(MODES)) + "---|"]
        for p in points:
            cells = [_cell(p["libraries"].get(lib, {}), mode) for lib in (JAXSNN, UPSTREAM)
                     for mode in MODES]
            rss = " / ".join(str(p["libraries"].get(lib, {}).get("peak_rss_mib", ""))
                             for lib in (JAXSNN, UPSTREAM))
            lines.append(f"| {p['network']} | {p['hidden']} | {p['input_events_per_sample']} | "
                         f"{_fmt(p.get('events_per_sample'), '.0f')} | {p['batch']} | "
                         + " | ".join(cells) + f" | {rss} |")
        lines.append("")
    lines += ["## Log-log slopes of time against work", "",
              "Work measures: `synaptic_work` = batch x (input events x hidden + hidden spikes x "
              "n_out), the synaptic events the network processes; `work` = batch x (all events per "
              "sample) x (hidden + n_out), which also counts each layer's events against the other "
              "layer's neurons.", ""]
    if result.get("rescored"):
        lines += [f"({result['rescored']}.)", ""]
    lines += ["| sweep | network | library | mode | measure | slope | points |",
              "|---|---|---|---|---|---|---|"]
    for row in result["slopes"]:
        lines.append(f"| {row['sweep']} | {row['network']} | {row['library']} | {row['mode']} | "
                     f"{row.get('measure', 'work')} | {row['slope']:.2f} | {row['points']} |")
    return "\n".join(lines) + "\n"


def chart(result: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    colors = {JAXSNN: "tab:red", UPSTREAM: "tab:gray"}
    for ax, (sweep, points) in zip(axes, result["sweeps"].items()):
        for network, marker in (("single", "s"), ("multi", "o")):
            pts = [p for p in points if p["network"] == network and "synaptic_work" in p]
            for lib in (JAXSNN, UPSTREAM):
                for mode, style in (("forward", "-"), ("grad", "--")):
                    xy = [(p["synaptic_work"], median(p["libraries"].get(lib, {}), mode)) for p in pts]
                    xy = [(x, y) for x, y in xy if y]
                    if xy:
                        ax.loglog(*zip(*xy), marker=marker, linestyle=style, color=colors[lib],
                                  label=f"{lib} {network} {mode}", markersize=4)
        ax.set_title(f"sweep: {sweep}", fontsize=9)
        ax.set_xlabel("synaptic work: batch x events into a layer x its neurons", fontsize=7)
        ax.set_ylabel("time [s]", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=4)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
