"""spyx (flax.nnx) on the discrete workloads: ``spyx.nn.Sequential(Linear, LIF, Linear, LIF)``
run over time with ``spyx.nn.run``. spyx's LIF: ``V = beta V + x - H(V_prev - th) th``."""

from __future__ import annotations

from common_jax import block, harness, mean_rates

import jax
import jax.numpy as jnp
import spyx
from flax import nnx


class MaxPool(nnx.Module):
    """Non-overlapping ``p x p`` max-pool of ``(B, H, W, C)`` (flax.nnx.max_pool)."""

    def __init__(self, p):
        self.p = p

    def __call__(self, x):
        return nnx.max_pool(x, (self.p, self.p), strides=(self.p, self.p))


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
    elif workload in ("cnn48", "cnn_pool"):
        data = harness.cnn_pool_data(cfg) if workload == "cnn_pool" else harness.cnn_data(cfg)
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
    if workload == "cnn_pool":
        # spyx has SumPool and Flatten but no max-pool: flax's nnx.max_pool in a module
        p, side, classes = cfg["pool"], cfg["size"] // cfg["pool"], cfg["classes"]
        lif2 = spyx.nn.LIF((side, side, c), beta=beta, threshold=harness.THRESHOLD, rngs=rngs)
        l3 = nnx.Linear(c * (side // p) ** 2, classes, use_bias=False, rngs=rngs)
        l3.kernel[...] = jnp.asarray(harness.hwc_rows(data["w3"], cfg))
        lif3 = spyx.nn.LIF((classes,), beta=beta, threshold=harness.THRESHOLD, rngs=rngs)
        model = spyx.nn.Sequential(l1, lif1, MaxPool(p), l2, lif2, MaxPool(p), spyx.nn.Flatten(),
                                   l3, lif3)
    else:
        lif2 = spyx.nn.LIF(shape, beta=beta, threshold=harness.THRESHOLD, rngs=rngs)
        model = spyx.nn.Sequential(l1, lif1, l2, lif2)
    graphdef, state = nnx.split(model)

    def run(state, x):
        m = nnx.merge(graphdef, state)
        out, _ = spyx.nn.run(m, x)
        return out

    forward = jax.jit(run)
    grad = jax.jit(jax.grad(lambda s, x: run(s, x).sum()))
    # rates of the hidden LIF layers: run the network up to each of them
    lif_positions = [i for i, layer in enumerate(model.layers) if isinstance(layer, spyx.nn.LIF)]
    fronts = []
    for end in lif_positions[:-1]:
        fgraph, fstate = nnx.split(spyx.nn.Sequential(*model.layers[: end + 1]))
        fronts.append((jax.jit(lambda s, x, g=fgraph: spyx.nn.run(nnx.merge(g, s), x)[0]), fstate))
    return {
        "forward": lambda: forward(state, x),
        "backward": lambda: grad(state, x),
        "block": block,
        "rates": lambda: mean_rates(*[f(s, x) for f, s in fronts], forward(state, x)),
        "versions": harness.package_versions("spyx", "jax", "jaxlib", "flax"),
        "implementation": "spyx.nn.Sequential(nnx.Linear, spyx.nn.LIF, ...) + spyx.nn.run",
    }


if __name__ == "__main__":
    harness.run_worker(build)
