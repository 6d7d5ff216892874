"""A feed-forward ``jaxsnn.graph.discrete_graph`` against the same network in ``serial``.

Workload ``mlp2048`` (2048 -> Dense -> LIF -> Dense -> LIF, batch 32, T = 100; see
``benchmarks/README.md``), the same weights and inputs, the same layers: once composed with
``jaxsnn.serial`` and once as a graph of the same four nodes (a chain, no cycle, so it runs
layer by layer over the whole window, like ``serial``). Both are jitted; forward and
forward+backward are timed in interleaved rounds in one process, so machine load hits both
alike, and the medians' ratio is reported (within 5 % is the target). A third variant adds a
skip edge (layer 1's spikes also feed the last LIF, concatenated) to show what a graph-only
feature costs.

    python benchmarks/graph_serial.py [--T 100 --batch 32 --hidden 2048 --rounds 10]

Writes ``benchmarks/results/graph_serial.json``.
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

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR / "workers"))

import harness  # noqa: E402
import w_graph_jaxsnn as graph_worker  # noqa: E402

import jaxsnn  # noqa: E402
from jaxsnn.discrete import Dense  # noqa: E402
from jaxsnn.graph import discrete_graph  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", default=str(BENCH_DIR / "results" / "graph_serial.json"))
    args = ap.parse_args(argv)
    cfg = {"T": args.T, "batch": args.batch, "n_in": args.hidden, "hidden": args.hidden, "p_in": 0.1, "seed": 0}
    data = harness.mlp_data(cfg)
    h = args.hidden
    lif = graph_worker.lif
    scale = graph_worker.INPUT_SCALE
    x = jnp.asarray(data["x"]).transpose(1, 0, 2)  # (batch, time, n_in)
    w1, w2 = jnp.asarray(data["w1"] * scale), jnp.asarray(data["w2"] * scale)
    params = [{"weight": w1}, {}, {"weight": w2}, {}]
    networks = {
        "serial": jaxsnn.serial(Dense(h), lif(h), Dense(h), lif(h)),
        "graph (chain)": discrete_graph({"d1": Dense(h), "l1": lif(h), "d2": Dense(h), "l2": lif(h)},
                                        [("input", "d1"), ("d1", "l1"), ("l1", "d2"), ("d2", "l2")], output="l2"),
        # skip: l1's spikes and d2's drive are concatenated into a Dense that maps them back to h
        "graph (chain + skip l1 -> out)": discrete_graph(
            {"d1": Dense(h), "l1": lif(h), "d2": Dense(h), "l2": lif(h), "out": Dense(h)},
            [("input", "d1"), ("d1", "l1"), ("l1", "d2"), ("d2", "l2"), ("l2", "out"), ("l1", "out")], output="out"),
    }
    skip_params = params + [{"weight": jnp.concatenate([jnp.eye(h), jnp.zeros((h, h))])}]
    all_params = {"serial": params, "graph (chain)": params, "graph (chain + skip l1 -> out)": skip_params}
    fns = {}
    for name, net in networks.items():
        apply = net.apply

        def run(p, x, apply=apply):
            return jax.vmap(lambda xs: apply(p, xs)[1])(x)

        forward = jax.jit(run)
        backward = jax.jit(jax.grad(lambda p, x, run=run: run(p, x).sum()))
        fns[name] = {"forward": (forward, all_params[name]), "backward": (backward, all_params[name])}
    # The chain's outputs equal serial's bit for bit (same operations in the same order).
    same = bool(jnp.all(fns["serial"]["forward"][0](params, x) == fns["graph (chain)"]["forward"][0](params, x)))
    load_start = harness.load_average()
    first = {}
    for name, modes in fns.items():
        for mode, (fn, p) in modes.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(p, x))
            first[(name, mode)] = time.perf_counter() - t0
    times = {(name, mode): [] for name in fns for mode in ("forward", "backward")}
    for _ in range(args.rounds):  # interleaved: load hits every variant alike
        for name, modes in fns.items():
            for mode, (fn, p) in modes.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn(p, x))
                times[(name, mode)].append(time.perf_counter() - t0)
    out = {
        "benchmark": "graph_serial",
        "config": cfg,
        "rounds": args.rounds,
        "machine": harness.machine_info(),
        "load_average_start": load_start,
        "load_average_end": harness.load_average(),
        "chain_output_equals_serial_bitwise": same,
        "command": "python benchmarks/graph_serial.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "variants": {},
    }
    for name in fns:
        row = {}
        for mode in ("forward", "backward"):
            ts = times[(name, mode)]
            ref = statistics.median(times[("serial", mode)])
            row[mode] = {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts),
                         "first_call_s": first[(name, mode)], "ratio_to_serial": statistics.median(ts) / ref,
                         "min_ratio_to_serial": min(ts) / min(times[("serial", mode)])}
        out["variants"][name] = row
        print(f"{name:32s} " + "; ".join(
            f"{mode}: median {r['median_s']:.4f} s (x{r['ratio_to_serial']:.3f} serial), min {r['min_s']:.4f} s"
            for mode, r in row.items()), flush=True)
    print(f"chain output equals serial bit for bit: {same}; load average {load_start} -> {out['load_average_end']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
