"""Turning worker results into JSON, a markdown table and bar/log-log charts."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import harness

MODES = ("forward", "backward")
MODE_TITLES = {"forward": "forward", "backward": "forward + backward"}


def one_line(res: Dict[str, Any]) -> str:
    """A short progress line for one library's result."""
    if "error" in res:
        return "ERROR " + res["error"][:300]
    parts = []
    for mode, m in res.get("modes", {}).items():
        parts.append(f"{mode} " + (f"{m['median_s']:.4f} s" if "median_s" in m else
                                   "ERROR " + m.get("error", "")[:200]))
    if "spike_rates" in res:
        parts.append("rates " + ", ".join(f"{r:.3f}" for r in res["spike_rates"]))
    return "; ".join(parts)


def peak_summary(peak: Dict[str, Any], cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Measured GFLOP/s of one jitted ``jnp.dot`` of shape ``(T*B, n_in) @ (n_in, hidden)``."""
    fwd = peak.get("modes", {}).get("forward", {})
    if "median_s" not in fwd:
        return {"error": peak.get("error") or fwd.get("error")}
    flops = 2.0 * cfg["T"] * cfg["batch"] * cfg["n_in"] * cfg["hidden"]
    return {
        "shape": f"({cfg['T'] * cfg['batch']}, {cfg['n_in']}) @ ({cfg['n_in']}, {cfg['hidden']})",
        "flops": flops,
        "median_s": fwd["median_s"],
        "min_s": fwd["min_s"],
        "gflops_median": flops / fwd["median_s"] / 1e9,
        "gflops_best": flops / fwd["min_s"] / 1e9,
    }


def add_ratios(result: Dict[str, Any], reference: str) -> None:
    """Add ``ratio_to_<reference>`` (library median / reference median) and % of matmul peak."""
    ref = result["libraries"].get(reference, {}).get("modes", {})
    peak = result.get("matmul_peak", {})
    cfg = result["config"]
    for lib, res in result["libraries"].items():
        for mode, m in res.get("modes", {}).items():
            if "median_s" not in m:
                continue
            if "median_s" in ref.get(mode, {}):
                m["ratio_to_" + reference] = m["median_s"] / ref[mode]["median_s"]
            flops = _flops(result["workload"], cfg, mode)
            if flops:
                m["flops"] = flops
                m["gflops"] = flops / m["median_s"] / 1e9
                if "gflops_median" in peak:
                    m["percent_of_matmul_peak"] = 100.0 * m["gflops"] / peak["gflops_median"]


def _flops(workload: str, cfg: Dict[str, Any], mode: str):
    if workload in ("mlp2048", "scaling"):
        return harness.mlp_flops(cfg, mode == "backward")
    if workload == "cnn48":
        return harness.cnn_flops(cfg, mode == "backward")
    if workload == "cnn_pool":
        return harness.cnn_pool_flops(cfg, mode == "backward")
    return None


def write(result: Dict[str, Any], stem: Path) -> None:
    """Write ``stem.json``, ``stem.md`` and ``stem.png``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    bar_chart(result, stem.with_suffix(".png"))


def _fmt(x, digits=3):
    return "" if x is None else f"{x:.{digits}f}"


def markdown(result: Dict[str, Any]) -> str:
    """A markdown table: one row per library, median/min/max and ratio per mode."""
    m = result["machine"]
    lines = [f"# {result['workload']}", ""]
    if result.get("preliminary"):
        lines += ["**Preliminary**: not a `--final` run; see the load averages below.",
                  ""]
    lines += [
        f"Machine: {m['cpu']}, {m['cores']} cores; load average at start "
        f"{result.get('load_average_start')}, at end {result.get('load_average_end')}.",
        "Config: `"
        + json.dumps({k: v for k, v in result["config"].items() if k != "modes"}) + "`",
        "",
    ]
    peak = result.get("matmul_peak")
    if peak and "gflops_median" in peak:
        lines += [f"Measured matmul peak (jitted `jnp.dot` {peak['shape']}): "
                  f"{peak['gflops_median']:.1f} GFLOP/s (median), "
                  f"{peak['gflops_best']:.1f} best.", ""]
    header = ("| library | version | mode | median s | min s | max s | first call s | "
              "ratio to jaxsnn |")
    has_peak = bool(peak and "gflops_median" in peak)
    if has_peak:
        header += " GFLOP/s | % of peak |"
    header += " spike rates | peak RSS MiB |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    for lib, res in result["libraries"].items():
        version = _lib_version(lib, res)
        if "error" in res:
            lines.append(f"| {lib} | {version} | error | {_short(res['error'])} |")
            continue
        rates = ", ".join(f"{r:.3f}" for r in res.get("spike_rates", []))
        for mode in MODES:
            t = res.get("modes", {}).get(mode)
            if t is None:
                continue
            if "median_s" not in t:
                lines.append(f"| {lib} | {version} | {MODE_TITLES[mode]} | error: "
                             f"{_short(t.get('error', ''))} |")
                continue
            row = (f"| {lib} | {version} | {MODE_TITLES[mode]} | {_fmt(t['median_s'])} | "
                   f"{_fmt(t['min_s'])} | {_fmt(t['max_s'])} | {_fmt(t['first_call_s'], 2)} | "
                   f"{_fmt(t.get('ratio_to_jaxsnn'), 2)} |")
            if has_peak:
                row += f" {_fmt(t.get('gflops'), 1)} | {_fmt(t.get('percent_of_matmul_peak'), 0)} |"
            row += f" {rates} | {res.get('peak_rss_mib', '')} |"
            lines.append(row)
    lines += ["", "Ratio = library median / jaxsnn median (above 1: jaxsnn is faster). "
              "Spike rates: mean output rate of each layer.", ""]
    return "\n".join(lines)


def _short(text: str, n: int = 160) -> str:
    return text.replace("|", "/").replace("\n", " ")[:n]


def _lib_version(lib: str, res: Dict[str, Any]) -> str:
    versions = res.get("versions") or {}
    key = {"jaxsnn-0.3.0": "jaxsnn", "jax (hand-written)": "jax"}.get(lib, lib)
    return versions.get(key, versions.get("jaxsnn", ""))


def bar_chart(result: Dict[str, Any], path: Path) -> None:
    """Horizontal bars of the median time per library, one panel per mode (min-max whiskers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    libs = result["libraries"].values()
    modes = [mo for mo in MODES if any(mo in r.get("modes", {}) for r in libs)]
    if not modes:
        return
    fig, axes = plt.subplots(1, len(modes), figsize=(5.0 * len(modes), 3.2), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        names, med, lo, hi = [], [], [], []
        for lib, res in result["libraries"].items():
            t = res.get("modes", {}).get(mode, {})
            if "median_s" in t:
                names.append(lib)
                med.append(t["median_s"])
                lo.append(t["median_s"] - t["min_s"])
                hi.append(t["max_s"] - t["median_s"])
        colors = ["tab:red" if n == "jaxsnn" else "tab:gray" for n in names]
        ax.barh(range(len(names)), med, xerr=[lo, hi], color=colors, capsize=2)
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlabel("median time per call [s]")
        ax.set_title(f"{result['workload']}: {MODE_TITLES[mode]}")
        for i, v in enumerate(med):
            ax.text(v, i, f" {v:.3g}", va="center", fontsize=8)
    if result.get("preliminary"):
        fig.suptitle("preliminary (shared machine)", fontsize=8, color="tab:red", x=0.99,
                     ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_scaling(run_worker: Callable, libs: List[str], base: Dict[str, Any],
                axes: Dict[str, List[int]], args, preliminary: bool, stem: Path) -> Dict:
    """Forward+backward time of the MLP workload along each axis, one library at a time."""
    result: Dict[str, Any] = {
        "workload": "scaling",
        "preliminary": preliminary,
        "machine": harness.machine_info(),
        "load_average_start": harness.load_average(),
        "config": dict(base),
        "libraries_compared": libs,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "axes": {},
    }
    for axis, values in axes.items():
        result["axes"][axis] = {}
        for lib in libs:
            points = []
            for value in (values if not args.tiny else values[:2]):
                cfg = dict(base, modes=["backward"], iterations=args.scaling_iterations,
                           warmup=1, max_seconds=args.scaling_max_seconds)
                if axis == "hidden":
                    cfg["n_in"] = cfg["hidden"] = value if not args.tiny else value // 16
                elif args.tiny:
                    cfg[axis] = max(value // 16, 1)
                else:
                    cfg[axis] = value
                res = run_worker(lib, "scaling", cfg, args.timeout)
                back = res.get("modes", {}).get("backward", {})
                point = {axis: cfg[axis], "load_average": res.get("load_average_end")}
                if "median_s" in back:
                    point.update(median_s=back["median_s"], min_s=back["min_s"],
                                 max_s=back["max_s"], iterations=back["iterations"],
                                 first_call_s=back["first_call_s"],
                                 gflops=harness.mlp_flops(cfg, True) / back["median_s"] / 1e9)
                else:
                    point["error"] = res.get("error") or back.get("error")
                points.append(point)
                print(f"[scaling] {axis}={cfg[axis]} {lib}: "
                      f"{point.get('median_s', point.get('error'))}", flush=True)
            result["axes"][axis][lib] = points
            _write_scaling(result, stem)  # after every library: a cut-short run keeps its data
    _write_scaling(result, stem)
    return result


def _write_scaling(result: Dict[str, Any], stem: Path) -> None:
    result["load_average_end"] = harness.load_average()
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    stem.with_suffix(".md").write_text(scaling_markdown(result))
    scaling_chart(result, stem.with_suffix(".png"))


def scaling_markdown(result: Dict[str, Any]) -> str:
    lines = ["# scaling (mlp2048 forward + backward)", ""]
    if result.get("preliminary"):
        lines += ["**Preliminary**: not a `--final` run; see the load averages below.", ""]
    for axis, per_lib in result["axes"].items():
        libs = list(per_lib)
        values = [p[axis] for p in per_lib[libs[0]]]
        lines += [f"## {axis}", "", f"| {axis} | " + " | ".join(f"{lib} s" for lib in libs) + " |",
                  "|" + "---|" * (len(libs) + 1)]
        for i, v in enumerate(values):
            cells = []
            for lib in libs:
                p = per_lib[lib][i] if i < len(per_lib[lib]) else {}
                cells.append(_fmt(p.get("median_s"), 4) if "median_s" in p else "error")
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def scaling_chart(result: Dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    axes_names = list(result["axes"])
    fig, axes = plt.subplots(1, len(axes_names), figsize=(4.2 * len(axes_names), 3.2),
                             squeeze=False)
    for ax, axis in zip(axes[0], axes_names):
        for lib, points in result["axes"][axis].items():
            xs = [p[axis] for p in points if "median_s" in p]
            ys = [p["median_s"] for p in points if "median_s" in p]
            if xs:
                ax.loglog(xs, ys, "o-", label=lib, color="tab:red" if lib == "jaxsnn" else None)
        values = sorted({p[axis] for points in result["axes"][axis].values() for p in points})
        if values:
            # label the measured sizes only: matplotlib's default minor labels overlap on log axes
            ax.set_xticks(values, [str(v) for v in values])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(axis)
        ax.set_ylabel("forward + backward [s]")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
