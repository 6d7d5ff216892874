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
    elif workload == "cnn48":
        data = harness.cnn_data(cfg)
        c, k = cfg["channels"], cfg["kernel"]
        layer = lambda: nn.Conv(c, (k, k), padding="SAME", use_bias=False)  # noqa: E731
        kernels = [jnp.asarray(data["k1"].transpose(2, 3, 1, 0)),
                   jnp.asarray(data["k2"].transpose(2, 3, 1, 0))]
        x = jnp.asarray(data["x"]).transpose(0, 1, 3, 4, 2)  # (T, B, H, W, C)
    else:
        raise ValueError(workload)

    def lif():
        return slax.LIF(init_tau=INIT_TAU, v_threshold=harness.THRESHOLD, subtraction_reset=True)

    model = slax.RNN(nn.Sequential([layer(), lif(), layer(), lif()]))
    variables = model.init(jax.random.PRNGKey(0), x)
    params = jax.tree_util.tree_map(lambda a: a, variables["params"])
    # put the shared weights in place of the random ones (two kernels, in layer order)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    assert len(leaves) == 2, f"expected two kernels, got {len(leaves)}"
    params = jax.tree_util.tree_unflatten(treedef, kernels)
    # init runs the first step to create the membrane variables; start every run from rest
    carry = jax.tree_util.tree_map(jnp.zeros_like, variables.get("carry", {}))

    def run(params, x):
        out, _ = model.apply({"params": params, "carry": carry}, x, mutable=["carry"])
        return out

    front = slax.RNN(nn.Sequential([layer(), lif()]))
    fvars = front.init(jax.random.PRNGKey(0), x)
    fleaves, ftree = jax.tree_util.tree_flatten(fvars["params"])
    fparams = jax.tree_util.tree_unflatten(ftree, kernels[:1])
    rate1 = jax.jit(lambda: front.apply({"params": fparams, "carry": jax.tree_util.tree_map(
        jnp.zeros_like, fvars.get("carry", {}))}, x,
                                        mutable=["carry"])[0])
    forward = jax.jit(run)
    grad = jax.jit(jax.grad(lambda p, x: run(p, x).sum()))
    return {
        "forward": lambda: forward(params, x),
        "backward": lambda: grad(params, x),
        "block": block,
        "rates": lambda: mean_rates(rate1(), forward(params, x)),
        "versions": harness.package_versions("slax", "jax", "jaxlib", "flax"),
        "implementation": "slax.RNN(flax.linen.Sequential([Dense, slax.LIF, Dense, slax.LIF]))",
    }


if __name__ == "__main__":
    harness.run_worker(build)
