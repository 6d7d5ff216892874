"""jaxsnn on the ``feedback`` graph workload: ``jaxsnn.graph.discrete_graph``.

Nodes (in this order): ``in`` Dense (off the cycle: one matrix multiply for the whole window),
``h1`` LIF, ``d2`` Dense, ``h2`` LIF, ``fb`` Dense; edges ``input -> in -> h1 -> d2 -> h2 -> fb``
and the feedback ``fb -> h1`` (delay 1 step). ``h1`` sums its two inputs. The cycle
``h1 -> d2 -> h2 -> fb`` advances one step at a time in one ``lax.scan``; ``jax.vmap`` over the
batch. The neuron mapping is that of ``w_jaxsnn.py``.
"""

from __future__ import annotations

import os
import sys

from common_jax import block, harness, mean_rates

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from graph_common import feedback_data  # noqa: E402

import math  # noqa: E402

import jaxsnn  # noqa: E402
from jaxsnn.discrete import LIF, Dense  # noqa: E402
from jaxsnn.graph import discrete_graph  # noqa: E402

# The mapping of w_jaxsnn.py: a_syn = exp(-200) (the current holds only this step's input),
# a_mem = 0.9 and weights W / (1 - a_mem) give v_t = 0.9 v_{t-1} + x_t W.
DT = 1.0
TAU_MEM = -DT / math.log(harness.DECAY)
TAU_SYN = DT / 200.0
INPUT_SCALE = 1.0 / (1.0 - harness.DECAY)


def lif(size):
    return LIF(size, tau_syn=TAU_SYN, tau_mem=TAU_MEM, dt=DT, v_th=harness.THRESHOLD, reset="subtract",
               project=False)


def build(workload, cfg):
    if workload != "feedback":
        raise ValueError(workload)
    data = feedback_data(cfg)
    h = cfg["hidden"]
    net = discrete_graph(
        {"in": Dense(h), "h1": lif(h), "d2": Dense(h), "h2": lif(h), "fb": Dense(h)},
        [("input", "in"), ("in", "h1"), ("fb", "h1"), ("h1", "d2"), ("d2", "h2"), ("h2", "fb")],
        output="h2", merge={"h1": "sum"},
    )
    scaled = lambda w: {"weight": jnp.asarray(w * INPUT_SCALE)}  # noqa: E731
    params = [scaled(data["w1"]), {}, scaled(data["w2"]), {}, scaled(data["w_fb"])]
    x = jnp.asarray(data["x"]).transpose(1, 0, 2)  # (batch, time, n_in)

    def run(params, x):
        _, out, rec = jax.vmap(lambda xs: net.apply(params, xs))(x)
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
        "implementation": "jaxsnn.graph.discrete_graph(Dense, LIF, Dense, LIF, Dense; feedback fb -> h1) under vmap",
    }


if __name__ == "__main__":
    harness.run_worker(build)
