"""How fast is XLA's CPU convolution at the ``cnn48`` layer shape? Times the forward convolution,
its input gradient and its weight gradient (``lax.conv_general_dilated``, 3x3 'same', 16 -> 16
channels, 48x48 images, NHWC) and reports GFLOP/s, next to a plain ``jnp.dot`` of the same
number of FLOPs, so the ``cnn48`` gap to PyTorch's convolutions can be read off per operation.

    python benchmarks/profile_conv.py [--images 800 --channels 16 --rounds 3]

Run it on a quiet machine; ``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1" taskset -c 1 python benchmarks/profile_conv.py`` measures one core.
Writes ``benchmarks/results/profile_conv.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "profile_conv.json"


def main(argv=None) -> Dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=800, help="images per call (T * batch)")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)

    n, c, s = args.images, args.channels, args.size
    inputs = (jax.random.uniform(jax.random.PRNGKey(0), (n, s, s, c)) < 0.1).astype(jnp.float32)
    weight = 0.1 * jax.random.normal(jax.random.PRNGKey(1), (3, 3, c, c))
    cotangent = jax.random.normal(jax.random.PRNGKey(2), (n, s, s, c))

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    flops = 2 * n * s * s * 9 * c * c  # one pass: forward, input gradient and weight gradient alike
    operations = {
        "forward": (jax.jit(conv), (inputs, weight)),
        "input_gradient": (jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[0]), (inputs, weight, cotangent)),
        "weight_gradient": (jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1]), (inputs, weight, cotangent)),
    }
    # a matmul with the same FLOPs: (n*s*s, 9c) @ (9c, c) is what an im2col convolution computes
    lhs = jax.random.normal(jax.random.PRNGKey(3), (n * s * s, 9 * c))
    rhs = jax.random.normal(jax.random.PRNGKey(4), (9 * c, c))
    operations["matmul_same_flops"] = (jax.jit(jnp.dot), (lhs, rhs))
    result = {
        "machine": harness.machine_info(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "config": vars(args),
        "gflop_per_call": flops / 1e9,
        "operations": {},
    }
    for name, (fn, fn_args) in operations.items():
        # fastest of ``rounds`` calls after one untimed (compiling) call
        seconds = harness.time_call(lambda: fn(*fn_args), jax.block_until_ready,
                                    iterations=args.rounds, warmup=1)["min_s"]
        result["operations"][name] = {"seconds": seconds, "gflops": flops / seconds / 1e9}
        print(f"{name:18s} {seconds:.4f} s  {flops / seconds / 1e9:.1f} GFLOP/s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
