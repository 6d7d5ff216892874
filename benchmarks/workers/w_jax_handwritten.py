"""Reference: the discrete workloads written directly in JAX (one matmul per layer for all time
steps, then a ``lax.scan`` of the elementwise LIF update). It is the yardstick for what a
library-free implementation reaches on this machine, and for the peak-matmul measurement.
"""

from __future__ import annotations

from common_jax import block, harness, mean_rates

import jax
import jax.numpy as jnp
import numpy as np


@jax.custom_jvp
def spike(x):
    """Heaviside step H(x) (H(0) = 0) with a fast-sigmoid surrogate derivative."""
    return (x > 0).astype(x.dtype)


@spike.defjvp
def _spike_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return spike(x), dx / (1.0 + 10.0 * jnp.abs(x)) ** 2


def lif_scan(currents):
    """``v_t = DECAY v_{t-1} + I_t``; spike when ``v_t > THRESHOLD``; subtract the threshold."""

    def step(v, current):
        v = harness.DECAY * v + current
        z = spike(v - harness.THRESHOLD)
        return v - z * harness.THRESHOLD, z

    _, z = jax.lax.scan(step, jnp.zeros(currents.shape[1:], currents.dtype), currents)
    return z


def mlp(params, x):
    w1, w2 = params
    z1 = lif_scan(jnp.einsum("tbi,ih->tbh", x, w1))
    z2 = lif_scan(jnp.einsum("tbi,ih->tbh", z1, w2))
    return z1, z2


def conv(x, kernel):
    # x: (T, B, C, H, W) -> fold time into batch for one convolution over all steps
    T, B = x.shape[:2]
    y = jax.lax.conv_general_dilated(
        x.reshape((T * B,) + x.shape[2:]), kernel, (1, 1), "SAME",
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
    )
    return y.reshape((T, B) + y.shape[1:])


def cnn(params, x):
    k1, k2 = params
    z1 = lif_scan(conv(x, k1))
    z2 = lif_scan(conv(z1, k2))
    return z1, z2


def max_pool(z, p):
    """Max over non-overlapping ``p x p`` windows of ``(T, B, C, H, W)``."""
    return jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 1, 1, p, p), (1, 1, 1, p, p),
                                 "VALID")


def cnn_pool(params, x, pool):
    k1, k2, w3 = params
    z1 = lif_scan(conv(x, k1))
    z2 = lif_scan(conv(max_pool(z1, pool), k2))
    flat = max_pool(z2, pool).reshape(z2.shape[:2] + (-1,))  # (T, B, C * h * w)
    z3 = lif_scan(jnp.einsum("tbi,io->tbo", flat, w3))
    return z1, z2, z3


def build(workload, cfg):
    if workload == "matmul_peak":
        T, B, n = cfg["T"], cfg["batch"], cfg["hidden"]
        a = jnp.asarray(np.random.default_rng(0).standard_normal((T * B, cfg["n_in"]), np.float32))
        b = jnp.asarray(np.random.default_rng(1).standard_normal((cfg["n_in"], n), np.float32))
        dot = jax.jit(jnp.dot)
        return {"forward": lambda: dot(a, b), "block": block,
                "versions": harness.package_versions("jax", "jaxlib"),
                "implementation": "jax.jit(jnp.dot)"}
    if workload in ("mlp2048", "scaling"):
        data = harness.mlp_data(cfg)
        net = mlp
        params = (jnp.asarray(data["w1"]), jnp.asarray(data["w2"]))
    elif workload == "cnn48":
        data = harness.cnn_data(cfg)
        net = cnn
        params = (jnp.asarray(data["k1"]), jnp.asarray(data["k2"]))
    elif workload == "cnn_pool":
        data = harness.cnn_pool_data(cfg)
        net = lambda p, x: cnn_pool(p, x, cfg["pool"])  # noqa: E731
        params = (jnp.asarray(data["k1"]), jnp.asarray(data["k2"]), jnp.asarray(data["w3"]))
    else:
        raise ValueError(f"unknown workload {workload!r}")
    x = jnp.asarray(data["x"])
    forward = jax.jit(lambda p, x: net(p, x)[-1])
    grad = jax.jit(jax.grad(lambda p, x: net(p, x)[-1].sum()))
    rates = jax.jit(net)
    return {
        "forward": lambda: forward(params, x),
        "backward": lambda: grad(params, x),
        "block": block,
        "rates": lambda: mean_rates(*rates(params, x)),
        "versions": harness.package_versions("jax", "jaxlib"),
        "implementation": "jnp.einsum for all steps + lax.scan of the LIF update",
    }


if __name__ == "__main__":
    harness.run_worker(build)
