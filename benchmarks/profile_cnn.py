"""Where does the ``cnn48`` time go? Interleaved, same-process comparison of jaxsnn's
``serial(Conv, LIF, Conv, LIF)`` in its layouts and gradient options with hand-written JAX
variants, so that machine load affects every variant alike (figures from a loaded machine are
only good for relative comparisons).

    python benchmarks/profile_cnn.py [--T 100 --batch 32 --rounds 3]

Variants: jaxsnn batch-major (``jax.vmap`` over ``(B, T, ...)``) and time-major
(``jaxsnn.discrete.time_major``), each with Conv's patch weight gradient (default) and XLA's
(``backward="autodiff"``); the hand-written NCHW reference worker; and a hand-written forward
pass that convolves one time step at a time inside the LIF scan (the "conv fused into the scan"
design). Writes ``benchmarks/results/profile_cnn.json``.
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
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "workers"))

import harness  # noqa: E402
import w_jax_handwritten as hw  # noqa: E402
import w_jaxsnn as ours  # noqa: E402


def fused_forward(kernels, x):
    """Both conv + LIF layers inside one scan over time (``x`` is ``(T, B, H, W, C)``)."""
    k1, k2 = kernels

    def conv(z, k):
        return lax.conv_general_dilated(z, k, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def step(state, x_t):
        v1, v2 = state
        u1 = harness.DECAY * v1 + conv(x_t, k1)
        z1 = (u1 > harness.THRESHOLD).astype(u1.dtype)
        u2 = harness.DECAY * v2 + conv(z1, k2)
        z2 = (u2 > harness.THRESHOLD).astype(u2.dtype)
        return (u1 - harness.THRESHOLD * z1, u2 - harness.THRESHOLD * z2), z2

    zeros = jnp.zeros(x.shape[1:4] + (k2.shape[3],), x.dtype)
    return lax.scan(step, (zeros, zeros), x)[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" /
                                         "profile_cnn.json"))
    args = ap.parse_args(argv)
    cfg = {"T": args.T, "batch": args.batch, "channels_in": 2, "channels": 16,
           "size": args.size, "kernel": 3, "p_in": 0.1, "seed": 0}
    variants = {}
    outputs = {}
    for layout in ("batch-major", "time-major"):
        for backward in ("autodiff", "patches"):
            built = ours.build("cnn48", dict(cfg, layout=layout, conv_backward=backward))
            name = f"jaxsnn {layout}, Conv backward={backward}"
            variants[name] = (built["forward"], built["backward"])
    built = hw.build("cnn48", dict(cfg))
    variants["hand-written NCHW, time folded into the batch"] = (built["forward"],
                                                                  built["backward"])
    _, params, x_tm, _ = ours.network("cnn48", cfg)
    kernels = (params[0]["weight"], params[2]["weight"])
    fused = jax.jit(fused_forward)
    variants["hand-written conv inside the LIF scan (forward only)"] = (
        lambda: fused(kernels, x_tm), None)

    for name, (f, g) in variants.items():  # compile + warm up; keep outputs to compare
        outputs[name] = jax.block_until_ready(f())
        if g:
            jax.block_until_ready(g())
    reference = outputs["jaxsnn time-major, Conv backward=patches"]
    agreement = {}
    for name, out in outputs.items():
        out = jnp.asarray(out)
        if out.shape != reference.shape and out.ndim == 5 and out.shape[2] == cfg["channels"]:
            out = out.transpose(0, 1, 3, 4, 2)  # NCHW -> NHWC
        if out.shape != reference.shape:
            out = out.swapaxes(0, 1)  # batch-major -> time-major
        agreement[name] = float(jnp.mean(out != reference))
    times = {name: {"forward": [], "backward": []} for name in variants}
    for _ in range(args.rounds):  # interleaved rounds: load hits every variant alike
        for name, (f, g) in variants.items():
            for mode, fn in (("forward", f), ("backward", g)):
                if fn is None:
                    continue
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times[name][mode].append(time.perf_counter() - t0)
    result = {"config": cfg, "machine": harness.machine_info(), "rounds": args.rounds,
              "note": "interleaved in one process; on a loaded machine only the ratios mean "
                      "anything", "variants": {}}
    for name, t in times.items():
        row = {mode: {"median_s": statistics.median(ts), "min_s": min(ts), "times_s": ts}
               for mode, ts in t.items() if ts}
        row["fraction_of_output_spikes_differing"] = agreement[name]
        result["variants"][name] = row
        print(f"{name:58s} " + "  ".join(
            f"{m}: median {r['median_s']:.3f} s (min {r['min_s']:.3f})"
            for m, r in row.items() if isinstance(r, dict)), flush=True)
    result["load_average_end"] = harness.load_average()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
