"""Can patches (im2col) + one large matmul beat XLA's CPU convolution at the ``cnn48`` layer?

Times, for one step of the 16 -> 16 layer of ``cnn48`` (``--images`` = batch images of 48x48,
3x3 'same', NHWC), the forward convolution, its weight gradient and its input gradient computed
in several ways, each checked against ``lax.conv_general_dilated`` (float32; the largest
absolute difference relative to the largest magnitude of the result is recorded):

forward ``(N, H, W, C) -> (N, H, W, O)``
    ``xla``: ``lax.conv_general_dilated``; ``im2col_concat``: the 9 shifted views concatenated
    along channels, then ``(N H W, 9 C) @ (9 C, O)``; ``im2col_update``: the same patches
    written with 9 ``dynamic_update_slice``; ``taps``: 9 products of shifted views
    ``(N H W, C) @ (C, O)`` summed; ``channel_major``: ``(C, N Hp Wp)`` layout in which every
    tap is one contiguous offset, ``(O, 9 C) @ (9 C, L)``; ``matmul_only``: the im2col matmul
    alone on ready patches (the bound any im2col variant could reach).
weight gradient ``dW = patches^T @ g``
    ``xla``: ``jax.vjp`` of the convolution; ``im2col``; ``taps``; ``matmul_only``.
input gradient
    ``xla``: ``jax.vjp``; ``flipped_conv``: forward convolution of ``g`` with the flipped kernel
    (what ``ConvLIF`` uses); ``col2im``: ``g @ W^T`` then the 9 shifted blocks added.
weight gradient inside a scan (``--scan-steps`` steps; time per step)
    as ``ConvLIF``'s reverse scan needs it, per sample under ``jax.vmap``: ``taps_vmapped``
    (``ConvLIF``'s per-tap products), ``xla_vmapped`` (``jax.vjp`` of the per-sample
    convolution) and ``xla_folded`` (``jax.vjp`` of the step's batch convolution, no vmap).

All variants run interleaved in one process, so that machine load affects them alike: on a
loaded machine only the ratios mean anything.

    python benchmarks/profile_conv_im2col.py [--images 32 --channels 16 --rounds 10]

Writes ``benchmarks/results/profile_conv_im2col.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "profile_conv_im2col.json"
DIMENSIONS = ("NHWC", "HWIO", "NHWC")
TAPS = [(i, j) for i in range(3) for j in range(3)]


def xla_conv(x, w):
    return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DIMENSIONS)


def shifted_views(x):
    """The 9 views ``xpad[:, i:i+H, j:j+W, :]`` of the zero-padded input."""
    n, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return [lax.slice(padded, (0, i, j, 0), (n, i + h, j + w, c)) for i, j in TAPS]


def patches_concat(x):
    return jnp.concatenate(shifted_views(x), axis=-1).reshape(-1, 9 * x.shape[3])


def patches_update(x):
    n, h, w, c = x.shape
    out = jnp.zeros((n, h, w, 9, c), x.dtype)
    for t, view in enumerate(shifted_views(x)):
        out = lax.dynamic_update_slice(out, view[:, :, :, None, :], (0, 0, 0, t, 0))
    return out.reshape(-1, 9 * c)


def forward_variants(x, w) -> dict[str, tuple[Callable, tuple]]:
    n, h, wd, c = x.shape
    o = w.shape[3]
    w_rows = w.reshape(9 * c, o)

    def im2col_concat(x, w):
        return (patches_concat(x) @ w.reshape(9 * c, o)).reshape(n, h, wd, o)

    def im2col_update(x, w):
        return (patches_update(x) @ w.reshape(9 * c, o)).reshape(n, h, wd, o)

    def taps(x, w):
        total = 0.0
        for (i, j), view in zip(TAPS, shifted_views(x)):
            total = total + view.reshape(-1, c) @ w[i, j]
        return total.reshape(n, h, wd, o)

    hp, wp = h + 2, wd + 2
    offsets = [i * wp + j for i, j in TAPS]
    length = n * hp * wp - offsets[-1]

    def channel_major(x, w):
        flat = jnp.pad(x.transpose(3, 0, 1, 2), ((0, 0), (0, 0), (1, 1), (1, 1))).reshape(c, -1)
        pat = jnp.concatenate([flat[:, s:s + length] for s in offsets], axis=0)
        out = w.reshape(9 * c, o).T @ pat  # (O, L): output pixel q reads q + offset
        out = jnp.pad(out, ((0, 0), (0, offsets[-1]))).reshape(o, n, hp, wp)[:, :, :h, :wd]
        return out.transpose(1, 2, 3, 0)

    ready = patches_concat(x)
    return {
        "xla": (xla_conv, (x, w)),
        "im2col_concat": (im2col_concat, (x, w)),
        "im2col_update": (im2col_update, (x, w)),
        "taps": (taps, (x, w)),
        "channel_major": (channel_major, (x, w)),
        "matmul_only": (lambda p, wr: (p @ wr).reshape(n, h, wd, o), (ready, w_rows)),
    }


def weight_gradient_variants(x, w, g) -> dict[str, tuple[Callable, tuple]]:
    c, o = x.shape[3], g.shape[3]

    def xla(x, g):
        return jax.vjp(lambda k: xla_conv(x, k), w)[1](g)[0]

    def im2col(x, g):
        return (patches_concat(x).T @ g.reshape(-1, o)).reshape(3, 3, c, o)

    def taps(x, g):
        gm = g.reshape(-1, o)
        return jnp.stack([v.reshape(-1, c).T @ gm for v in shifted_views(x)]).reshape(3, 3, c, o)

    ready = patches_concat(x)
    return {
        "xla": (xla, (x, g)),
        "im2col": (im2col, (x, g)),
        "taps": (taps, (x, g)),
        "matmul_only": (lambda p, g: (p.T @ g.reshape(-1, o)).reshape(3, 3, c, o), (ready, g)),
    }


def input_gradient_variants(x, w, g) -> dict[str, tuple[Callable, tuple]]:
    n, h, wd, c = x.shape
    o = g.shape[3]

    def xla(w, g):
        return jax.vjp(lambda inp: xla_conv(inp, w), x)[1](g)[0]

    def flipped_conv(w, g):
        flipped = jnp.swapaxes(w[::-1, ::-1], 2, 3)
        return xla_conv(g, flipped)

    def col2im(w, g):
        blocks = (g.reshape(-1, o) @ w.reshape(9 * c, o).T).reshape(n, h, wd, 9, c)
        total = jnp.zeros((n, h + 2, wd + 2, c), g.dtype)
        for t, (i, j) in enumerate(TAPS):
            total = total.at[:, i:i + h, j:j + wd, :].add(blocks[:, :, :, t, :])
        return total[:, 1:h + 1, 1:wd + 1, :]

    return {"xla": (xla, (w, g)), "flipped_conv": (flipped_conv, (w, g)), "col2im": (col2im, (w, g))}


def scan_weight_gradient_variants(xs, w, gs) -> dict[str, tuple[Callable, tuple]]:
    """Weight gradients accumulated over the steps of ``xs``/``gs`` ``(steps, N, H, W, C)``."""
    n = xs.shape[1]

    def per_sample_taps(x, g):
        gm = g.reshape(-1, g.shape[-1])
        return jnp.stack([v[0].reshape(-1, x.shape[-1]).T @ gm for v in shifted_views(x[None])])

    def per_sample_xla(x, g):
        return jax.vjp(lambda k: xla_conv(x[None], k), w)[1](g[None])[0].reshape(9, *w.shape[2:])

    def vmapped(per_sample):
        def run(xs, gs):
            def body(total, step):
                return total + jax.vmap(per_sample)(*step), None
            zero = jnp.zeros((n, 9) + w.shape[2:], w.dtype)
            return lax.scan(body, zero, (xs, gs))[0].sum(0).reshape(w.shape)
        return run

    def folded_xla(xs, gs):
        def body(total, step):
            x, g = step
            return total + jax.vjp(lambda k: xla_conv(x, k), w)[1](g)[0], None
        return lax.scan(body, jnp.zeros_like(w), (xs, gs))[0]

    return {
        "taps_vmapped": (vmapped(per_sample_taps), (xs, gs)),
        "xla_vmapped": (vmapped(per_sample_xla), (xs, gs)),
        "xla_folded": (folded_xla, (xs, gs)),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=32, help="images per call (one step's batch)")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--scan-steps", type=int, default=2,
                    help="steps of the in-scan weight-gradient group (0: skip it)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    n, s, c = args.images, args.size, args.channels
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    x = (jax.random.uniform(keys[0], (n, s, s, c)) < 0.1).astype(jnp.float32)  # spikes
    w = jax.random.normal(keys[1], (3, 3, c, c), jnp.float32) / (3.0 * c ** 0.5)
    g = jax.random.normal(keys[2], (n, s, s, c), jnp.float32)
    flops = 2.0 * n * s * s * 9 * c * c
    groups = {
        "forward": forward_variants(x, w),
        "weight_gradient": weight_gradient_variants(x, w, g),
        "input_gradient": input_gradient_variants(x, w, g),
    }
    steps = {group: 1 for group in groups}
    if args.scan_steps > 0:
        xs = jnp.stack([jnp.roll(x, t, axis=1) for t in range(args.scan_steps)])
        gs = jnp.stack([jnp.roll(g, t, axis=2) for t in range(args.scan_steps)])
        groups["weight_gradient_in_scan"] = scan_weight_gradient_variants(xs, w, gs)
        steps["weight_gradient_in_scan"] = args.scan_steps
    compiled, errors = {}, {}
    for group, variants in groups.items():
        reference = None
        for name, (fn, fargs) in variants.items():
            jitted = jax.jit(fn)
            out = jax.block_until_ready(jitted(*fargs))
            if reference is None:
                reference = out
            scale = float(jnp.max(jnp.abs(reference)))
            errors[(group, name)] = float(jnp.max(jnp.abs(out - reference))) / scale
            compiled[(group, name)] = (jitted, fargs)
    times = {key: [] for key in compiled}
    for _ in range(args.rounds):  # interleaved: load hits every variant alike
        for key, (fn, fargs) in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*fargs))
            times[key].append(time.perf_counter() - t0)
    command = "python benchmarks/profile_conv_im2col.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    result = {
        "note": "design measurement, interleaved in one process; on a shared, loaded machine "
                "only the ratios between variants of one group mean anything; command: "
                + command.strip(),
        "config": {"images": n, "size": s, "channels": c, "kernel": 3, "padding": "SAME",
                   "layout": "NHWC", "dtype": "float32", "rounds": args.rounds,
                   "scan_steps": args.scan_steps},
        "times": "per call of one step's batch (in-scan group: per step)",
        "flops_per_call": flops,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "machine": harness.machine_info(),
        "groups": {},
    }
    for (group, name), ts in times.items():
        ts = [t / steps[group] for t in ts]  # per step (one call per step outside the scan)
        med, best = statistics.median(ts), min(ts)
        result["groups"].setdefault(group, {})[name] = {
            "median_ms": round(med * 1e3, 3), "min_ms": round(best * 1e3, 3),
            "gflops_at_min": round(flops / best / 1e9, 2),
            "max_relative_difference_to_xla": errors[(group, name)],
        }
        print(f"{group:16s} {name:14s} median {med * 1e3:8.2f} ms  min {best * 1e3:8.2f} ms  "
              f"{flops / best / 1e9:6.1f} GFLOP/s  rel.diff {errors[(group, name)]:.1e}", flush=True)
    result["load_average_end"] = harness.load_average()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
