"""Hand-written JAX on the ``feedback`` graph workload: the input projection for the whole
window in one matmul, then one ``lax.scan`` over time steps with both layers and the feedback
(time-major ``(T, B, n)``). The library-free yardstick."""

from __future__ import annotations

import os
import sys

from common_jax import block, harness, mean_rates

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from graph_common import feedback_data  # noqa: E402
from w_jax_handwritten import spike  # noqa: E402


def network(params, x):
    w1, w2, w_fb = params
    drive = jnp.einsum("tbi,ih->tbh", x, w1)
    batch, hidden = x.shape[1], w1.shape[1]

    def lif(v, current):
        v = harness.DECAY * v + current
        z = spike(v - harness.THRESHOLD)
        return v - z * harness.THRESHOLD, z

    def step(state, d):
        v1, v2, z2 = state
        v1, z1 = lif(v1, d + z2 @ w_fb)
        v2, z2 = lif(v2, z1 @ w2)
        return (v1, v2, z2), (z1, z2)

    zeros = jnp.zeros((batch, hidden), x.dtype)
    _, (z1, z2) = jax.lax.scan(step, (zeros, zeros, zeros), drive)
    return z1, z2


def build(workload, cfg):
    if workload != "feedback":
        raise ValueError(workload)
    data = feedback_data(cfg)
    params = tuple(jnp.asarray(data[k]) for k in ("w1", "w2", "w_fb"))
    x = jnp.asarray(data["x"])
    forward = jax.jit(lambda p, x: network(p, x)[1])
    grad = jax.jit(jax.grad(lambda p, x: network(p, x)[1].sum()))
    rates = jax.jit(network)
    return {
        "forward": lambda: forward(params, x),
        "backward": lambda: grad(params, x),
        "block": block,
        "rates": lambda: mean_rates(*rates(params, x)),
        "versions": harness.package_versions("jax", "jaxlib"),
        "implementation": "einsum input projection + one lax.scan over time (both layers, feedback)",
    }


if __name__ == "__main__":
    harness.run_worker(build)
