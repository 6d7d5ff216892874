"""slax (flax.linen) on the discrete workloads: ``slax.RNN(nn.Sequential([Dense, LIF, Dense,
LIF]))``. slax's LIF: ``v = sigmoid(init_tau) v + x``, spike ``H(v - 1)``, subtract reset."""

from __future__ import annotations

import math

from common_jax import block, harness, mean_rates

import flax.linen as nn
import jax
import jax.numpy as jnp
import slax

# slax parameterises the leak as sigmoid(init_tau); sigmoid(log(9)) = 0.9
INIT_TAU = math.log(harness.DECAY / (1.0 - harness.DECAY))


def build(workload, cfg):
    if workload in ("mlp2048", "scaling"):
        data = harness.mlp_data(cfg)
        h = cfg["hidden"]
        layer = lambda: nn.Dense(h, use_bias=False)  # noqa: E731
        kernels = [jnp.asarray(data["w1"]), jnp.asarray(data["w2"])]
        x = jnp.asarray(data["x"])  # (T, B, n_in)
    elif workload in ("cnn48", "cnn_pool"):
        data = harness.cnn_pool_data(cfg) if workload == "cnn_pool" else harness.cnn_data(cfg)
        c, k = cfg["channels"], cfg["kernel"]
        layer = lambda: nn.Conv(c, (k, k), padding="SAME", use_bias=False)  # noqa: E731
        kernels = [jnp.asarray(data["k1"].transpose(2, 3, 1, 0)),
                   jnp.asarray(data["k2"].transpose(2, 3, 1, 0))]
        x = jnp.asarray(data["x"]).transpose(0, 1, 3, 4, 2)  # (T, B, H, W, C)
    else:
        raise ValueError(workload)

    def lif():
        return slax.LIF(init_tau=INIT_TAU, v_threshold=harness.THRESHOLD, subtraction_reset=True)

    if workload == "cnn_pool":
        p = cfg["pool"]
        pool = lambda z: nn.max_pool(z, (p, p), strides=(p, p))  # noqa: E731
        flatten = lambda z: z.reshape(z.shape[0], -1)  # noqa: E731
        kernels.append(jnp.asarray(harness.hwc_rows(data["w3"], cfg)))
        stack = [layer(), lif(), pool, layer(), lif(), pool, flatten,
                 nn.Dense(cfg["classes"], use_bias=False), lif()]
        lif_ends = (2, 5)
    else:
        stack = [layer(), lif(), layer(), lif()]
        lif_ends = (2,)
    model = slax.RNN(nn.Sequential(stack))
    variables = model.init(jax.random.PRNGKey(0), x)
    params = jax.tree_util.tree_map(lambda a: a, variables["params"])
    # put the shared weights in place of the random ones (two kernels, in layer order)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    assert len(leaves) == len(kernels), f"expected {len(kernels)} kernels, got {len(leaves)}"
    params = jax.tree_util.tree_unflatten(treedef, kernels)
    # init runs the first step to create the membrane variables; start every run from rest
    carry = jax.tree_util.tree_map(jnp.zeros_like, variables.get("carry", {}))

    def run(params, x):
        out, _ = model.apply({"params": params, "carry": carry}, x, mutable=["carry"])
        return out

    fronts = []
    for end in lif_ends:  # the network up to each hidden LIF layer, for its spike rate
        front = slax.RNN(nn.Sequential(stack[:end]))
        fvars = front.init(jax.random.PRNGKey(0), x)
        fleaves, ftree = jax.tree_util.tree_flatten(fvars["params"])
        fparams = jax.tree_util.tree_unflatten(ftree, kernels[: len(fleaves)])
        fcarry = jax.tree_util.tree_map(jnp.zeros_like, fvars.get("carry", {}))
        fronts.append(jax.jit(lambda f=front, p=fparams, c=fcarry: f.apply(
            {"params": p, "carry": c}, x, mutable=["carry"])[0]))
    forward = jax.jit(run)
    grad = jax.jit(jax.grad(lambda p, x: run(p, x).sum()))
    return {
        "forward": lambda: forward(params, x),
        "backward": lambda: grad(params, x),
        "block": block,
        "rates": lambda: mean_rates(*[f() for f in fronts], forward(params, x)),
        "versions": harness.package_versions("slax", "jax", "jaxlib", "flax"),
        "implementation": "slax.RNN(flax.linen.Sequential([Dense, slax.LIF, Dense, slax.LIF]))",
    }


if __name__ == "__main__":
    harness.run_worker(build)
