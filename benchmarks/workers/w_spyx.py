"""spyx (flax.nnx) on the discrete workloads: ``spyx.nn.Sequential(Linear, LIF, Linear, LIF)``
run over time with ``spyx.nn.run``. spyx's LIF: ``V = beta V + x - H(V_prev - th) th``."""

from __future__ import annotations

from common_jax import block, harness, mean_rates

import jax
import jax.numpy as jnp
import spyx
from flax import nnx


def build(workload, cfg):
    rngs = nnx.Rngs(0)
    beta = harness.DECAY
    if workload in ("mlp2048", "scaling"):
        data = harness.mlp_data(cfg)
        n_in, h = cfg["n_in"], cfg["hidden"]
        l1 = nnx.Linear(n_in, h, use_bias=False, rngs=rngs)
        l2 = nnx.Linear(h, h, use_bias=False, rngs=rngs)
        l1.kernel[...] = jnp.asarray(data["w1"])
        l2.kernel[...] = jnp.asarray(data["w2"])
        shape = (h,)
        x = jnp.asarray(data["x"])  # time-major (T, B, n_in)
    elif workload == "cnn48":
        data = harness.cnn_data(cfg)
        c, s, k = cfg["channels"], cfg["size"], cfg["kernel"]
        l1 = nnx.Conv(cfg["channels_in"], c, (k, k), padding="SAME", use_bias=False, rngs=rngs)
        l2 = nnx.Conv(c, c, (k, k), padding="SAME", use_bias=False, rngs=rngs)
        l1.kernel[...] = jnp.asarray(data["k1"].transpose(2, 3, 1, 0))
        l2.kernel[...] = jnp.asarray(data["k2"].transpose(2, 3, 1, 0))
        shape = (s, s, c)
        x = jnp.asarray(data["x"]).transpose(0, 1, 3, 4, 2)  # (T, B, H, W, C)
    else:
        raise ValueError(workload)
    lif1 = spyx.nn.LIF(shape, beta=beta, threshold=harness.THRESHOLD, rngs=rngs)
    lif2 = spyx.nn.LIF(shape, beta=beta, threshold=harness.THRESHOLD, rngs=rngs)
    model = spyx.nn.Sequential(l1, lif1, l2, lif2)
    graphdef, state = nnx.split(model)

    def run(state, x):
        m = nnx.merge(graphdef, state)
        out, _ = spyx.nn.run(m, x)
        return out

    forward = jax.jit(run)
    grad = jax.jit(jax.grad(lambda s, x: run(s, x).sum()))
    # layer-1 rate: run the first two layers only
    front = spyx.nn.Sequential(l1, lif1)
    fgraph, fstate = nnx.split(front)
    rate1 = jax.jit(lambda s, x: spyx.nn.run(nnx.merge(fgraph, s), x)[0])
    return {
        "forward": lambda: forward(state, x),
        "backward": lambda: grad(state, x),
        "block": block,
        "rates": lambda: mean_rates(rate1(fstate, x), forward(state, x)),
        "versions": harness.package_versions("spyx", "jax", "jaxlib", "flax"),
        "implementation": "spyx.nn.Sequential(nnx.Linear, spyx.nn.LIF, ...) + spyx.nn.run",
    }


if __name__ == "__main__":
    harness.run_worker(build)
