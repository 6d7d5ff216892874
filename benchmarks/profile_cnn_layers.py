"""Where the time of ``cnn48`` / ``cnn_pool`` goes, per layer, as the benchmark runs them.

Times, interleaved in one process (median and minimum of ``--rounds`` calls each):

- the whole network (``time_major(serial(...))``), forward, and forward + backward (gradient of
  the parameters, as in the benchmark), and the forward with ``stepwise``;
- each ``ConvLIF`` layer alone on its own input (the first layer on the data, differentiated
  in its parameters only; the second on the first layer's spikes, differentiated in its
  parameters and its input, as inside the network);
- the convolution of the 16 -> 16 layer alone, one time step per scan iteration as
  ``ConvLIF`` runs it (``lax.conv_general_dilated`` on the step's batch), with its GFLOP/s, and a
  matmul in the same process (the machine's matmul peak) for comparison.

    python benchmarks/profile_cnn_layers.py [--workload cnn48] [--rounds 6]

Writes ``benchmarks/results/profile_cnn_layers_<workload>.json``.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "workers"))

import harness  # noqa: E402
from w_jaxsnn import conv_lif, network  # noqa: E402

import jaxsnn  # noqa: E402
from jaxsnn.discrete import stepwise, time_major  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workload", default="cnn48", choices=["cnn48", "cnn_pool"])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    # the benchmark's configuration (benchmarks/run.py)
    cfg = dict(T=100, batch=32, channels_in=2, channels=16, size=48, kernel=3, p_in=0.1, seed=0)
    if args.workload == "cnn_pool":
        cfg.update(pool=2, classes=11)
    net, params, x, _ = network(args.workload, cfg)
    c, k = cfg["channels"], cfg["kernel"]
    first, second = jaxsnn.serial(conv_lif(c, k)), jaxsnn.serial(conv_lif(c, k))
    second_index = 1 if args.workload == "cnn48" else 2
    tm = time_major(net)
    spikes1 = jax.jit(lambda p, xs: time_major(first)(p, xs)[1])(params[:1], x)
    second_input = spikes1
    if args.workload == "cnn_pool":
        pool = jaxsnn.serial(jaxsnn.discrete.MaxPool(cfg["pool"]))
        second_input = jax.jit(lambda xs: time_major(pool)([{}], xs)[1])(spikes1)

    def total(apply):
        return lambda p, xs: apply(p, xs)[1].sum()

    steps, batch = x.shape[0], x.shape[1]
    side = second_input.shape[2]
    conv_weight = params[second_index]["weight"]

    def conv_scan(w, xs):
        def body(carry, x_t):
            out = lax.conv_general_dilated(x_t, w, (1, 1), "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return carry + out, None
        return lax.scan(body, jnp.zeros(xs.shape[1:-1] + (w.shape[-1],), xs.dtype), xs)[0]

    conv_flops = 2.0 * steps * batch * side * side * k * k * c * c
    lhs = jax.random.normal(jax.random.PRNGKey(0), (3200, 2048))
    rhs = jax.random.normal(jax.random.PRNGKey(1), (2048, 2048))
    matmul_flops = 2.0 * 3200 * 2048 * 2048

    calls = {
        "network forward (serial)": (jax.jit(lambda p, xs: tm(p, xs)[1]), (params, x)),
        "network forward (stepwise)": (
            jax.jit(lambda p, xs: time_major(stepwise(net))(p, xs)[1]), (params, x)),
        "network forward + backward": (jax.jit(jax.grad(total(tm))), (params, x)),
        "layer 1 forward": (jax.jit(lambda p, xs: time_major(first)(p, xs)[1]), (params[:1], x)),
        "layer 1 forward + backward (params)": (
            jax.jit(jax.grad(total(time_major(first)))), (params[:1], x)),
        "layer 2 forward": (jax.jit(lambda p, xs: time_major(second)(p, xs)[1]),
                            ([params[second_index]], second_input)),
        "layer 2 forward + backward (params, input)": (
            jax.jit(jax.grad(total(time_major(second)), argnums=(0, 1))),
            ([params[second_index]], second_input)),
        "layer 2 convolution alone, per step in a scan": (jax.jit(conv_scan),
                                                          (conv_weight, second_input)),
        "matmul (3200, 2048) @ (2048, 2048)": (jax.jit(jnp.dot), (lhs, rhs)),
    }
    times = {name: [] for name in calls}
    for name, (fn, fn_args) in calls.items():
        jax.block_until_ready(fn(*fn_args))
    for _ in range(args.rounds):
        for name, (fn, fn_args) in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*fn_args))
            times[name].append(time.perf_counter() - start)
    result = {
        "workload": args.workload,
        "config": cfg,
        "machine": harness.machine_info(),
        "load_average_at_end": harness.load_average(),
        "rounds": args.rounds,
        "note": "interleaved in one process; command: python benchmarks/profile_cnn_layers.py "
                f"--workload {args.workload} --rounds {args.rounds}",
        "seconds": {name: {"median": statistics.median(v), "min": min(v)} for name, v in times.items()},
        "gflops_at_min": {
            "layer 2 convolution alone, per step in a scan": conv_flops / 1e9 / min(
                times["layer 2 convolution alone, per step in a scan"]),
            "matmul (3200, 2048) @ (2048, 2048)": matmul_flops / 1e9 / min(
                times["matmul (3200, 2048) @ (2048, 2048)"]),
        },
    }
    out = Path(args.out) if args.out else HERE / "results" / f"profile_cnn_layers_{args.workload}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, v in result["seconds"].items():
        print(f"{name:50s} median {v['median']:.3f} s  min {v['min']:.3f} s")
    for name, v in result["gflops_at_min"].items():
        print(f"{name:50s} {v:.1f} GFLOP/s")
    return result


if __name__ == "__main__":
    main()
