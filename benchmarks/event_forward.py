"""Forward time of the event-based Yin-Yang network, jaxsnn vs upstream jaxsnn 0.3.0.

    python benchmarks/event_forward.py     # -> benchmarks/results/event_forward.{json,md,png}

Network ``5 * dup -> hidden -> 3`` LIF (tau_syn 5 ms, tau_mem 10 ms, one spike per neuron as in
upstream's EventProp example), batch 64, jitted, after warm-up. Sweeps the hidden size
(30 -> 1000) and the input events per sample (``dup``). Both libraries get identical inputs and
weights; the maximum spike-time difference between them is recorded.
"""

from __future__ import annotations

from pathlib import Path

import event_common as ec


def main() -> int:
    args = ec.parse_args(__doc__)
    libs = ("jaxsnn",) if args.only_jaxsnn else ec.LIBS
    if args.tiny:
        hidden_sweep, dup_sweep, batch = [8, 16], [1, 2], 4
    else:
        hidden_sweep, dup_sweep, batch = [30, 120, 300, 1000], [1, 4, 16], 64
    result = ec.header("event_forward", args)
    result["batch"] = batch
    points = []
    configs = [dict(hidden=h, dup=1) for h in hidden_sweep]
    configs += [dict(hidden=hidden_sweep[1], dup=d) for d in dup_sweep if d != 1]
    for c in configs:
        cfg = dict(c, batch=batch, n_samples=batch, modes=["forward"],
                   iterations=args.iterations, warmup=2)
        res = ec.run_pair("event_forward", cfg, args, libs)
        point = {"hidden": c["hidden"], "dup": c["dup"], "input_events_per_sample": 5 * c["dup"],
                 "libraries": res}
        ok = [lib for lib in libs if "median_s" in res[lib].get("modes", {}).get("forward", {})]
        if len(ok) == 2:
            up = res["jaxsnn-0.3.0"]["modes"]["forward"]["median_s"]
            ours = res["jaxsnn"]["modes"]["forward"]["median_s"]
            point["speedup_vs_upstream"] = up / ours
            point["agreement"] = ec.compare_spikes(res["jaxsnn"]["npz"], res["jaxsnn-0.3.0"]["npz"])
        # spike_rates of the event workers hold mean spike counts per sample (hidden, output)
        counts = res["jaxsnn"].get("spike_rates")
        if counts:
            point["spikes_per_sample"] = {"hidden": counts[0], "output": counts[1]}
            point["events_per_sample"] = 5 * c["dup"] + counts[0] + counts[1]
        points.append(point)
    result["points"] = points
    result["load_average_end"] = ec.harness.load_average()
    stem = Path(args.results) / "event_forward"
    ec.write(result, stem, markdown(result))
    chart(result, stem.with_suffix(".png"))
    return 0


def markdown(result) -> str:
    lines = ["# event_forward (Yin-Yang event network, batch %d)" % result["batch"], ""]
    if result["preliminary"]:
        lines += ["**Preliminary**: not a `--final` run; see the load averages below.", ""]
    m = result["machine"]
    lines += [f"Machine: {m['cpu']}, {m['cores']} cores, load {result['load_average_start']} -> "
              f"{result.get('load_average_end')}", "",
              "| hidden | input events | events/sample | jaxsnn s | jaxsnn-0.3.0 s | speedup | "
              "max spike-time diff (s) | spikes only in one | peak RSS MiB (jaxsnn / 0.3.0) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for p in result["points"]:
        t = {lib: r.get("modes", {}).get("forward", {}).get("median_s") for lib, r in
             p["libraries"].items()}
        agree = p.get("agreement", {})
        diff = max((a["max_abs_time_diff_s"] for a in agree.values()), default=None)
        only = sum(a["spikes_only_in_one"] for a in agree.values()) if agree else None
        fmt = lambda x, f: "" if x is None else format(x, f)  # noqa: E731
        lines.append(f"| {p['hidden']} | {p['input_events_per_sample']} | "
                     f"{fmt(p.get('events_per_sample'), '.1f')} | {fmt(t.get('jaxsnn'), '.4f')} | "
                     f"{fmt(t.get('jaxsnn-0.3.0'), '.4f')} | "
                     f"{fmt(p.get('speedup_vs_upstream'), '.2f')} | "
                     f"{fmt(diff, '.2e')} | {'' if only is None else only} | "
                     + " / ".join(str(p["libraries"].get(lib, {}).get("peak_rss_mib", ""))
                                  for lib in ("jaxsnn", "jaxsnn-0.3.0")) + " |")
    errors = [(p["hidden"], lib, r["error"]) for p in result["points"]
              for lib, r in p["libraries"].items() if "error" in r]
    for h, lib, e in errors:
        lines.append(f"\nhidden {h}, {lib}: error {e[:300]}")
    return "\n".join(lines) + "\n"


def chart(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.2))
    for ax, key, sel in ((axes[0], "hidden", lambda p: p["dup"] == 1),
                         (axes[1], "input_events_per_sample",
                          lambda p: p["hidden"] == result["points"][1]["hidden"]
                          if len(result["points"]) > 1 else True)):
        pts = [p for p in result["points"] if sel(p)]
        for lib in ("jaxsnn", "jaxsnn-0.3.0"):
            xs, ys = [], []
            for p in pts:
                t = p["libraries"].get(lib, {}).get("modes", {}).get("forward", {})
                if "median_s" in t:
                    xs.append(p[key])
                    ys.append(t["median_s"])
            if xs:
                color = "tab:red" if lib == "jaxsnn" else "tab:gray"
                ax.loglog(xs, ys, "o-", label=lib, color=color)
        ax.set_xlabel(key.replace("_", " "))
        ax.set_ylabel("forward, batch 64 [s]")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
