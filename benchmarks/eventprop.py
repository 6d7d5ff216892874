"""EventProp training speed on the event-based Yin-Yang network, jaxsnn vs upstream jaxsnn 0.3.0.

    python benchmarks/eventprop.py                # -> benchmarks/results/eventprop.{json,md}

Both sides: ``5 -> 120 -> 3`` LIF, upstream's EventProp example configuration (one spike per
neuron, MSE on first-spike times, ``scale(1/tau_syn) -> clip(0.01) -> adam``), batch 64.
Measures one jitted training step (forward + EventProp backward + update), one epoch of
4992 samples (78 steps in a ``lax.scan``), the gradients' agreement on identical weights and
inputs, and peak memory as the trial length ``t_max`` grows (same events, longer window).

Time to accuracy: both libraries train the same network from the same weights with the same
recipe (``workers/event_recipe.py``: the loss, optimiser, weight bumping and batch 32 of
``examples/yinyang_eventprop.py``, one seed) on the published Yin-Yang training split and test
after every epoch; recorded is the wall time (compilation and tests included) until the test
accuracy first reaches 98 %, or that it did not within ``ACCURACY["max_epochs"]`` epochs /
``ACCURACY["max_seconds"]`` seconds. Every entry records the peak RSS of its process.
"""

from __future__ import annotations

from pathlib import Path

import event_common as ec

ACCURACY = {"target": 0.98, "max_epochs": 40, "max_seconds": 240.0}
TINY_ACCURACY = {"target": 0.98, "max_epochs": 1, "max_seconds": 60.0, "train_samples": 64,
                 "test_samples": 64}


def main() -> int:
    args = ec.parse_args(__doc__)
    libs = ("jaxsnn",) if args.only_jaxsnn else ec.LIBS
    hidden, batch, n_epoch = (8, 4, 16) if args.tiny else (120, 64, 4992)
    result = ec.header("eventprop", args)
    result.update(hidden=hidden, batch=batch, epoch_samples=n_epoch)
    base = dict(hidden=hidden, dup=1, batch=batch, warmup=2)
    step = ec.run_pair("eventprop", dict(base, n_samples=batch, modes=["step"],
                                         iterations=args.iterations), args, libs)
    epoch = ec.run_pair("eventprop", dict(base, n_samples=n_epoch, modes=["epoch"],
                                          iterations=max(3, args.iterations // 3), warmup=1),
                        args, libs)
    result["step"], result["epoch"] = step, epoch
    for name, res, mode in (("step", step, "step"), ("epoch", epoch, "epoch")):
        t = {lib: res[lib].get("modes", {}).get(mode, {}).get("median_s") for lib in libs}
        if all(t.values()) and len(t) == 2:
            result[f"{name}_speedup_vs_upstream"] = t["jaxsnn-0.3.0"] / t["jaxsnn"]
    if len(libs) == 2 and all("error" not in step[lib] for lib in libs):
        result["agreement"] = ec.compare_gradients(step["jaxsnn"]["npz"], step["jaxsnn-0.3.0"]["npz"])
    memory = []
    for factor in ([1, 4] if args.tiny else [1, 4, 16]):
        cfg = dict(base, n_samples=batch, modes=["step"], iterations=3,
                   t_max=ec.harness.EVENT_DEFAULTS["t_max"] * factor)
        res = ec.run_pair("eventprop", cfg, args, libs)
        memory.append({"t_max_factor": factor, "t_max_s": cfg["t_max"],
                       "peak_rss_mib": {lib: res[lib].get("peak_rss_mib") for lib in libs},
                       "step_median_s": {lib: res[lib].get("modes", {}).get("step", {})
                                         .get("median_s") for lib in libs}})
    result["memory_vs_trial_length"] = memory
    acc_cfg = dict(TINY_ACCURACY if args.tiny else ACCURACY, hidden=hidden, dup=1, batch=batch,
                   n_samples=batch, modes=[])
    acc = ec.run_pair("eventprop_accuracy", acc_cfg, args, libs)
    result["time_to_accuracy"] = {"config": acc_cfg, "libraries": acc}
    t = {lib: acc[lib].get("info", {}).get("seconds_to_target") for lib in libs}
    if len(libs) == 2 and all(t.values()):
        result["time_to_accuracy"]["speedup_vs_upstream"] = t["jaxsnn-0.3.0"] / t["jaxsnn"]
    result["load_average_end"] = ec.harness.load_average()
    stem = Path(args.results) / "eventprop"
    ec.write(result, stem, markdown(result, libs))
    chart(result, stem.with_suffix(".png"))
    return 0


def chart(result, path) -> None:
    """Test accuracy against wall time (compilation and tests included) of the time-to-accuracy
    runs, with the target as a horizontal line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tta = result.get("time_to_accuracy")
    if not tta:
        return
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for lib, res in tta["libraries"].items():
        info = res.get("info")
        if not info:
            continue
        elapsed = np.cumsum(np.add(info["epoch_s"], info["test_s"]))
        ax.plot(elapsed, np.multiply(info["test_accuracy"], 100), "o-", markersize=3, label=lib,
                color="tab:red" if lib == "jaxsnn" else "tab:gray")
    ax.axhline(100 * tta["config"]["target"], color="k", linewidth=0.8, linestyle=":")
    ax.set_xlabel("wall time [s] (compilation and tests included)")
    ax.set_ylabel("Yin-Yang test accuracy [%]")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def markdown(result, libs) -> str:
    def med(res, mode):
        t = res.get("modes", {}).get(mode, {}).get("median_s")
        return "error: " + res.get("error", "")[:120] if t is None and "error" in res else (
            "" if t is None else f"{t:.4f}")

    lines = [f"# eventprop (Yin-Yang 5-{result['hidden']}-3, batch {result['batch']})", ""]
    if result["preliminary"]:
        lines += ["**Preliminary**: not a `--final` run; see the load averages below.", ""]
    m = result["machine"]
    lines += [f"Machine: {m['cpu']}, {m['cores']} cores, load {result['load_average_start']} -> "
              f"{result['load_average_end']}", "",
              "| library | step median s | epoch median s (%d samples) | peak RSS MiB "
              "(step / epoch) |" % result["epoch_samples"], "|---|---|---|---|"]
    for lib in libs:
        lines.append(f"| {lib} | {med(result['step'][lib], 'step')} | "
                     f"{med(result['epoch'][lib], 'epoch')} | "
                     f"{result['step'][lib].get('peak_rss_mib', '')} / "
                     f"{result['epoch'][lib].get('peak_rss_mib', '')} |")
    for key in ("step_speedup_vs_upstream", "epoch_speedup_vs_upstream"):
        if key in result:
            lines.append(f"\n{key.replace('_', ' ')}: {result[key]:.2f}x")
    if "agreement" in result:
        a = result["agreement"]
        lines.append(f"\nSame weights and inputs: loss {a['loss'][0]:.6f} (jaxsnn) vs "
                     f"{a['loss'][1]:.6f} (0.3.0); max |gradient difference| "
                     f"{a['max_abs_grad_diff']:.3e} (max |gradient| {a['max_abs_grad']:.3e}).")
    lines += ["", "| t_max factor | " + " | ".join(f"{lib} RSS MiB | {lib} step s" for lib in libs)
              + " |", "|---|" + "---|---|" * len(libs)]
    for row in result["memory_vs_trial_length"]:
        cells = []
        for lib in libs:
            s = row["step_median_s"][lib]
            cells += [str(row["peak_rss_mib"][lib]), "" if s is None else f"{s:.4f}"]
        lines.append(f"| {row['t_max_factor']} | " + " | ".join(cells) + " |")
    if "time_to_accuracy" in result:
        tta = result["time_to_accuracy"]
        cfg = tta["config"]
        lines += ["", f"## Time to {cfg['target']:.0%} Yin-Yang test accuracy (one seed, at most "
                  f"{cfg['max_epochs']} epochs / {cfg['max_seconds']:.0f} s)", "",
                  "| library | reached | epochs | wall s to target | training s to target | "
                  "best test accuracy | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
        for lib, res in tta["libraries"].items():
            info = res.get("info")
            if not info:
                lines.append(f"| {lib} | error: {res.get('error', '')[:120]} | | | | | |")
                continue
            reached = "yes" if info["reached"] else (
                f"no, not within {info['epochs']} epochs / {info['seconds_run']:.0f} s")
            fmt = lambda x: "" if x is None else f"{x:.1f}"  # noqa: E731
            lines.append(f"| {lib} | {reached} | {info['epochs']} | {fmt(info['seconds_to_target'])} | "
                         f"{fmt(info['train_seconds_to_target'])} | {info['best_test_accuracy']:.4f} | "
                         f"{res.get('peak_rss_mib', '')} |")
        if "speedup_vs_upstream" in tta:
            lines.append(f"\ntime to accuracy speedup vs upstream: {tta['speedup_vs_upstream']:.2f}x")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
