"""Where does jaxsnn's discrete MLP time go? Interleaved, same-process comparison of
jaxsnn's ``serial(Dense, LIF, Dense, LIF)`` with hand-written JAX variants on the ``mlp2048``
workload (or a smaller one), so that machine load affects every variant alike.

    python benchmarks/profile_discrete.py [--T 100 --batch 32 --hidden 2048 --rounds 5]

Prints median seconds per variant (forward and forward+backward) and the ratio to the
plain ``jnp.dot`` of the same total shape; writes benchmarks/results/profile_discrete.json.
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
import w_jax_handwritten as hw  # noqa: E402
import w_jaxsnn as ours  # noqa: E402


def time_major_mlp(params, x, unroll=1):
    """Hand-written, time-major (T, B, N): one einsum per layer, scan over T with (B, N) state."""
    w1, w2 = params

    def lif(currents):
        def step(v, c):
            v = harness.DECAY * v + c
            z = hw.spike(v - harness.THRESHOLD)
            return v - z * harness.THRESHOLD, z

        return jax.lax.scan(step, jnp.zeros(currents.shape[1:]), currents, unroll=unroll)[1]

    z1 = lif(jnp.einsum("tbi,ih->tbh", x, w1))
    return lif(jnp.einsum("tbi,ih->tbh", z1, w2))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" /
                                         "profile_discrete.json"))
    args = ap.parse_args()
    cfg = {"T": args.T, "batch": args.batch, "n_in": args.hidden, "hidden": args.hidden,
           "p_in": 0.1, "seed": 0}
    data = harness.mlp_data(cfg)
    x_tm = jnp.asarray(data["x"])
    params_hw = (jnp.asarray(data["w1"]), jnp.asarray(data["w2"]))
    built_bm = ours.build("mlp2048", dict(cfg, layout="batch-major"))
    built_tm = ours.build("mlp2048", dict(cfg))  # jaxsnn.discrete.time_major (the default)
    a = jnp.ones((args.T * args.batch, args.hidden), jnp.float32)
    dot = jax.jit(jnp.dot)

    variants = {
        "matmul (T*B, n) @ (n, n)": (lambda: dot(a, params_hw[0]), None),
        "jaxsnn serial + jax.vmap, batch-major x": (built_bm["forward"], built_bm["backward"]),
        "jaxsnn serial + time_major, time-major x": (built_tm["forward"], built_tm["backward"]),
    }
    for unroll in (1, 4):
        f = jax.jit(lambda p, x, u=unroll: time_major_mlp(p, x, u))
        g = jax.jit(jax.grad(lambda p, x, u=unroll: time_major_mlp(p, x, u).sum()))
        variants[f"hand-written time-major unroll={unroll}"] = (
            lambda f=f: f(params_hw, x_tm), lambda g=g: g(params_hw, x_tm))
    # jaxsnn's LIF dynamics driven time-major directly (no vmap, no serial)
    from jaxsnn.discrete import lif_dynamics

    lif_kw = dict(tau_syn=0.0, tau_mem=ours.TAU_MEM, dt=ours.DT, input_scale=1.0,
                  v_th=harness.THRESHOLD)

    def lif_tm(params, x):
        w1, w2 = params
        zeros = jnp.zeros((args.batch, args.hidden))
        z1 = lif_dynamics(jnp.einsum("tbi,ih->tbh", x, w1), zeros, zeros, **lif_kw)[0]
        return lif_dynamics(jnp.einsum("tbi,ih->tbh", z1, w2), zeros, zeros, **lif_kw)[0]

    f_tm = jax.jit(lif_tm)
    g_tm = jax.jit(jax.grad(lambda p, x: lif_tm(p, x).sum()))
    variants["jaxsnn lif_dynamics time-major"] = (lambda: f_tm(params_hw, x_tm),
                                                  lambda: g_tm(params_hw, x_tm))

    times = {name: {"forward": [], "backward": []} for name in variants}
    for name, (f, g) in variants.items():  # compile + warm up
        jax.block_until_ready(f())
        if g:
            jax.block_until_ready(g())
    for _ in range(args.rounds):  # interleaved rounds: load hits every variant alike
        for name, (f, g) in variants.items():
            for mode, fn in (("forward", f), ("backward", g)):
                if fn is None:
                    continue
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                times[name][mode].append(time.perf_counter() - t0)
    dot_med = statistics.median(times["matmul (T*B, n) @ (n, n)"]["forward"])
    flops_dot = 2.0 * args.T * args.batch * args.hidden * args.hidden
    out = {"config": cfg, "machine": harness.machine_info(), "rounds": args.rounds,
           "matmul_gflops": flops_dot / dot_med / 1e9, "variants": {}}
    for name, t in times.items():
        row = {}
        for mode, ts in t.items():
            if ts:
                med = statistics.median(ts)
                flops = (flops_dot if name.startswith("matmul")
                         else harness.mlp_flops(cfg, mode == "backward"))
                row[mode] = {"median_s": med, "min_s": min(ts),
                             "percent_of_matmul_peak": 100 * flops / med / 1e9 /
                             (flops_dot / dot_med / 1e9)}
        out["variants"][name] = row
        print(name, {m: f"median {r['median_s']:.4f} s, min {r['min_s']:.4f} s "
                        f"({r['percent_of_matmul_peak']:.0f}% of peak)"
                     for m, r in row.items()}, flush=True)
    out["load_average_end"] = harness.load_average()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
