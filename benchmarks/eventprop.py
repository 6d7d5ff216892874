"""EventProp training speed on the event-based Yin-Yang network, jaxsnn vs upstream jaxsnn 0.3.0.

    python benchmarks/eventprop.py                # -> benchmarks/results/eventprop.{json,md}

Both sides: ``5 -> 120 -> 3`` LIF, upstream's EventProp example configuration (one spike per
neuron, MSE on first-spike times, ``scale(1/tau_syn) -> clip(0.01) -> adam``), batch 64.
Measures one jitted training step (forward + EventProp backward + update), one epoch of
4992 samples (78 steps in a ``lax.scan``), the gradients' agreement on identical weights and
inputs, and peak memory as the trial length ``t_max`` grows (same events, longer window).
"""

from __future__ import annotations

from pathlib import Path

import event_common as ec


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
    result["load_average_end"] = ec.harness.load_average()
    ec.write(result, Path(args.results) / "eventprop", markdown(result, libs))
    return 0


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
              "| library | step median s | epoch median s (%d samples) | peak RSS MiB |"
              % result["epoch_samples"], "|---|---|---|---|"]
    for lib in libs:
        lines.append(f"| {lib} | {med(result['step'][lib], 'step')} | "
                     f"{med(result['epoch'][lib], 'epoch')} | "
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
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
