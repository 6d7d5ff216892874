"""Is ``ConvLIF`` (convolution fused into the LIF scan, hand-written adjoint) faster than
``serial(Conv, LIF)`` on ``cnn48``? Interleaved, same-process comparison, so that machine load
affects every variant alike (figures from a loaded machine are only good for ratios).

    python benchmarks/profile_conv_lif.py [--T 20 --batch 32 --rounds 4 --workload cnn48]

Variants (all batched with ``jaxsnn.discrete.time_major``): ``serial(Conv, LIF, Conv, LIF)``
with Conv's patch weight gradient (the previous benchmark network), and
``serial(ConvLIF, ConvLIF)`` with each ``weight_gradient`` option (``--workload cnn_pool``: the
same with max-pools, a dense LIF layer and ``ConvLIF`` in place of each ``Conv, LIF``). Writes
``benchmarks/results/profile_conv_lif.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "workers"))

import harness  # noqa: E402
import w_jaxsnn as ours  # noqa: E402

VARIANTS = {
    "serial(Conv, LIF, Conv, LIF), Conv backward=patches": dict(variant="conv+lif"),
    "serial(ConvLIF, ConvLIF), weight_gradient=scan": dict(variant="scan"),
    "serial(ConvLIF, ConvLIF), weight_gradient=bands": dict(variant="bands"),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--workload", choices=("cnn48", "cnn_pool"), default="cnn48")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" /
                                         "profile_conv_lif.json"))
    args = ap.parse_args(argv)
    cfg = {"T": args.T, "batch": args.batch, "channels_in": 2, "channels": 16,
           "size": args.size, "kernel": 3, "p_in": 0.1, "seed": 0}
    if args.workload == "cnn_pool":
        cfg.update(pool=2, classes=11)
    variants = VARIANTS if args.workload == "cnn48" else {
        name.replace("serial(Conv, LIF, Conv, LIF)", "serial(Conv, LIF, MaxPool, Conv, LIF, ...)")
        .replace("serial(ConvLIF, ConvLIF)", "serial(ConvLIF, MaxPool, ConvLIF, ...)"): extra
        for name, extra in VARIANTS.items()}
    built = {name: ours.build(args.workload, dict(cfg, **extra))
             for name, extra in variants.items()}
    outputs, grads = {}, {}
    for name, b in built.items():  # compile + warm up; keep outputs to compare
        outputs[name] = jax.block_until_ready(b["forward"]())
        grads[name] = jax.block_until_ready(b["backward"]())
    base = next(iter(variants))
    def weights(g):  # the weight gradients of every layer that has one, in order
        return [p["weight"] for p in g if "weight" in p]

    ref_grad = weights(grads[base])
    agreement = {}
    for name in built:
        g = weights(grads[name])
        agreement[name] = {
            "fraction_of_output_spikes_differing": float(jnp.mean(outputs[name] != outputs[base])),
            "max_relative_weight_gradient_difference": max(
                float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(g, ref_grad)),
        }
    times = {name: {"forward": [], "forward+backward": []} for name in built}
    for _ in range(args.rounds):  # interleaved rounds: load hits every variant alike
        for name, b in built.items():
            for mode, fn in (("forward", b["forward"]), ("forward+backward", b["backward"])):
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times[name][mode].append(time.perf_counter() - t0)
    result = {"workload": args.workload, "config": cfg, "machine": harness.machine_info(), "rounds": args.rounds,
              "note": "design measurement on a shared, loaded 2-core machine: interleaved in one "
                      "process, so only the ratios between variants mean anything; command: "
                      "python benchmarks/profile_conv_lif.py " + " ".join(argv or sys.argv[1:]),
              "variants": {}}
    for name, t in times.items():
        row = {mode: {"median_s": statistics.median(ts), "min_s": min(ts), "times_s": ts}
               for mode, ts in t.items()}
        row.update(agreement[name])
        result["variants"][name] = row
        print(f"{name:55s} " + "  ".join(
            f"{m}: median {r['median_s']:.3f} s (min {r['min_s']:.3f})"
            for m, r in row.items() if isinstance(r, dict)) + f"  {agreement[name]}", flush=True)
    result["load_average_end"] = harness.load_average()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
