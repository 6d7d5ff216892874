"""snnax (equinox) on the discrete workloads: ``snnax.snn.Sequential(Linear, SimpleLIF, Linear,
SimpleLIF)`` per sample, ``jax.vmap`` over the batch (snnax's documented usage).

snnax's SimpleLIF: ``v = a v + (1 - a) x``, spike ``H(v - th)``, then ``v -= softplus(reset_val)
* spike``. With ``a = 0.9``, weights ``W / (1 - a)`` and ``softplus(reset_val) = th`` this is the
benchmark neuron with subtractive reset. snnax's Sequential feeds each layer the previous
layer's output from the previous time step (one step of delay per layer), by design.
"""

from __future__ import annotations

import math

from common_jax import block, harness, mean_rates

import equinox as eqx
import jax
import jax.numpy as jnp

RESET_VAL = math.log(math.expm1(harness.THRESHOLD))  # softplus(RESET_VAL) = THRESHOLD
INPUT_SCALE = 1.0 / (1.0 - harness.DECAY)


def build(workload, cfg):
    import snnax.snn as snn  # imported here so that an import failure is recorded as a result

    key = jax.random.PRNGKey(0)
    k1, k2 = jax.random.split(key)
    if workload in ("mlp2048", "scaling"):
        data = harness.mlp_data(cfg)
        n_in, h = cfg["n_in"], cfg["hidden"]
        l1 = eqx.nn.Linear(n_in, h, use_bias=False, key=k1)
        l2 = eqx.nn.Linear(h, h, use_bias=False, key=k2)
        l1 = eqx.tree_at(lambda m: m.weight, l1, jnp.asarray(data["w1"].T * INPUT_SCALE))
        l2 = eqx.tree_at(lambda m: m.weight, l2, jnp.asarray(data["w2"].T * INPUT_SCALE))
        in_shape = (n_in,)
        x = jnp.asarray(data["x"]).transpose(1, 0, 2)  # (B, T, n_in)
    elif workload == "cnn48":
        data = harness.cnn_data(cfg)
        c, k = cfg["channels"], cfg["kernel"]
        l1 = eqx.nn.Conv2d(cfg["channels_in"], c, k, padding="SAME", use_bias=False, key=k1)
        l2 = eqx.nn.Conv2d(c, c, k, padding="SAME", use_bias=False, key=k2)
        l1 = eqx.tree_at(lambda m: m.weight, l1, jnp.asarray(data["k1"] * INPUT_SCALE))
        l2 = eqx.tree_at(lambda m: m.weight, l2, jnp.asarray(data["k2"] * INPUT_SCALE))
        in_shape = (cfg["channels_in"], cfg["size"], cfg["size"])
        x = jnp.asarray(data["x"]).transpose(1, 0, 2, 3, 4)  # (B, T, C, H, W)
    else:
        raise ValueError(workload)

    def lif():
        return snn.SimpleLIF([harness.DECAY], threshold=harness.THRESHOLD, reset_val=RESET_VAL)

    model = snn.Sequential(l1, lif(), l2, lif())
    state0 = model.init_state(in_shape, key)

    def run(model, x):
        def one(xs):
            _, outs = model(state0, xs, key)
            return outs[-1]

        return jax.vmap(one)(x)

    front = snn.Sequential(l1, lif())
    fstate0 = front.init_state(in_shape, key)
    rate1 = eqx.filter_jit(lambda m, x: jax.vmap(lambda xs: m(fstate0, xs, key)[1][-1])(x))
    forward = eqx.filter_jit(run)
    grad = eqx.filter_jit(eqx.filter_grad(lambda m, x: run(m, x).sum()))
    return {
        "forward": lambda: forward(model, x),
        "backward": lambda: grad(model, x),
        "block": block,
        "rates": lambda: mean_rates(rate1(front, x), forward(model, x)),
        "versions": harness.package_versions("snnax", "jax", "jaxlib", "equinox"),
        "implementation": "snnax.snn.Sequential(eqx.nn.Linear, snn.SimpleLIF, ...) + jax.vmap",
    }


if __name__ == "__main__":
    harness.run_worker(build)
