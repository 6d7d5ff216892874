"""jaxsnn (this repository) on the discrete workloads: ``serial(Dense, LIF, Dense, LIF)``.

The benchmark neuron is ``v_t = 0.9 v_{t-1} + x_t @ W``. jaxsnn's LIF is current-based
(``I_t = a_syn I_{t-1} + x_t W``, ``v_t = a_mem v_{t-1} + (1 - a_mem) I_t``); with
``a_syn = 0`` (tau_syn << dt), ``a_mem = 0.9`` and weights ``W / (1 - a_mem)`` it is the same
recurrence, so every library sees the same network.
"""

from __future__ import annotations

import math

from common_jax import block, harness, mean_rates

import jax
import jax.numpy as jnp

import jaxsnn
from jaxsnn.discrete import LIF, Conv, Dense

DT = 1.0
TAU_MEM = -DT / math.log(harness.DECAY)  # a_mem = 0.9
TAU_SYN = DT / 200.0  # a_syn = exp(-200): the current holds only this step's input
INPUT_SCALE = 1.0 / (1.0 - harness.DECAY)


def lif(size):
    return LIF(size, tau_syn=TAU_SYN, tau_mem=TAU_MEM, dt=DT, v_th=harness.THRESHOLD,
               reset="subtract", project=False)


def build(workload, cfg):
    if workload in ("mlp2048", "scaling"):
        data = harness.mlp_data(cfg)
        hidden = cfg["hidden"]
        net = jaxsnn.serial(Dense(hidden), lif(hidden), Dense(hidden), lif(hidden))
        params = [{"weight": jnp.asarray(data["w1"] * INPUT_SCALE)}, {},
                  {"weight": jnp.asarray(data["w2"] * INPUT_SCALE)}, {}]
        x = jnp.asarray(data["x"]).transpose(1, 0, 2)  # (batch, time, n_in)
    elif workload == "cnn48":
        data = harness.cnn_data(cfg)
        c, s = cfg["channels"], cfg["size"]
        net = jaxsnn.serial(Conv(c, cfg["kernel"]), lif((s, s, c)),
                            Conv(c, cfg["kernel"]), lif((s, s, c)))
        hwio = lambda k: jnp.asarray(k.transpose(2, 3, 1, 0) * INPUT_SCALE)  # noqa: E731
        params = [{"weight": hwio(data["k1"])}, {}, {"weight": hwio(data["k2"])}, {}]
        x = jnp.asarray(data["x"]).transpose(1, 0, 3, 4, 2)  # (batch, time, H, W, C)
    else:
        raise ValueError(f"unknown workload {workload!r}")
    _, apply = net

    def run(params, x):
        _, out, rec = jax.vmap(lambda xs: apply(params, xs))(x)
        return out, rec

    forward = jax.jit(lambda p, x: run(p, x)[0])
    grad = jax.jit(jax.grad(lambda p, x: run(p, x)[0].sum()))
    rates = jax.jit(lambda p, x: (run(p, x)[1][1].spikes, run(p, x)[1][3].spikes))
    return {
        "forward": lambda: forward(params, x),
        "backward": lambda: grad(params, x),
        "block": block,
        "rates": lambda: mean_rates(*rates(params, x)),
        "versions": dict(harness.package_versions("jax", "jaxlib"), jaxsnn=jaxsnn.__version__),
        "implementation": "jaxsnn.serial(Dense, LIF(project=False), Dense, LIF) under jax.vmap",
    }


if __name__ == "__main__":
    harness.run_worker(build)
