"""slax on the ``feedback`` graph workload: ``slax.RNN(slax.connect([Dense, LIF, Dense, LIF],
p={0: [3]}))``. ``connect`` adds to the output of module 0 a second Dense applied to the output
module 3 produced at the previous step (slax's recurrent connection), so layer 1 receives
``x_t W1 + z2_{t-1} W_fb``. slax's LIF: ``v = sigmoid(init_tau) v + x``, subtract reset."""

from __future__ import annotations

import math
import os
import sys

from common_jax import block, harness, mean_rates

import flax.linen as nn
import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from graph_common import feedback_data  # noqa: E402

INIT_TAU = math.log(harness.DECAY / (1.0 - harness.DECAY))  # sigmoid(INIT_TAU) = 0.9


def build(workload, cfg):
    import slax

    if workload != "feedback":
        raise ValueError(workload)
    data = feedback_data(cfg)
    h = cfg["hidden"]
    x = jnp.asarray(data["x"])  # (T, B, n_in)

    def lif():
        return slax.LIF(init_tau=INIT_TAU, v_threshold=harness.THRESHOLD, subtraction_reset=True)

    model = slax.RNN(slax.connect([nn.Dense(h, use_bias=False), lif(), nn.Dense(h, use_bias=False), lif()],
                                  p={0: [3]}))
    variables = model.init(jax.random.PRNGKey(0), x)
    params = variables["params"]
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    names = {jax.tree_util.keystr(path): leaf.shape for path, leaf in flat}
    # Put the shared weights in place by module name: chain_0 (W1), chain_0_rec_3 (W_fb), chain_2 (W2).
    by_name = {"chain_0_rec_3": data["w_fb"], "chain_0": data["w1"], "chain_2": data["w2"]}

    def assign(path, leaf):
        key = jax.tree_util.keystr(path)
        for name in by_name:  # the longest name first, so chain_0_rec_3 is not taken for chain_0
            if f"'{name}'" in key:
                return jnp.asarray(by_name[name])
        raise KeyError(f"unexpected slax parameter {key}; parameters are {names}")

    params = jax.tree_util.tree_map_with_path(assign, params)
    carry = jax.tree_util.tree_map(jnp.zeros_like, variables.get("carry", {}))

    def run(params, x):
        out, _ = model.apply({"params": params, "carry": carry}, x, mutable=["carry"])
        return out

    forward = jax.jit(run)
    grad = jax.jit(jax.grad(lambda p, x: run(p, x).sum()))
    return {
        "forward": lambda: forward(params, x),
        "backward": lambda: grad(params, x),
        "block": block,
        "rates": lambda: mean_rates(forward(params, x)),
        "versions": harness.package_versions("slax", "jax", "jaxlib", "flax"),
        "implementation": "slax.RNN(slax.connect([Dense, LIF, Dense, LIF], p={0: [3]}))",
        "parameters": {k: list(v) for k, v in names.items()},
    }


if __name__ == "__main__":
    harness.run_worker(build)
