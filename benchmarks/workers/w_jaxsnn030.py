"""Upstream jaxsnn 0.3.0 (PyPI) on the discrete MLP workload, built as in its discrete Yin-Yang
example: ``Topology`` with ``Input``, ``Linear``, ``LIF`` modules, ``jax.vmap`` over the batch.

Its LIF step (Euler): ``v <- v + dt/tau_mem (v_leak - v + I)``, ``I <- I - dt/tau_syn I + input``,
reset to ``v_reset``. With ``dt/tau_mem = 0.1`` and ``dt/tau_syn = 1`` it is
``v_t = 0.9 v_{t-1} + 0.1 input_{t-1}``: the benchmark neuron with weights ``W / 0.1``.
It has no convolution module, so ``cnn48`` is reported as unsupported.
"""

from __future__ import annotations

from common_jax import block, harness, mean_rates

import jax
import jax.numpy as jnp

DT = 1e-3
INPUT_SCALE = 1.0 / (1.0 - harness.DECAY)


def build(workload, cfg):
    from jaxsnn.discrete.functional import LIFParameters
    from jaxsnn.discrete.modules import LIF, Input, Linear
    from jaxsnn.discrete.topology import Topology

    versions = harness.package_versions("jaxsnn", "jax", "jaxlib")
    if workload not in ("mlp2048", "scaling"):
        return {"versions": versions, "block": block,
                "implementation": "no convolution module in jaxsnn 0.3.0"}
    data = harness.mlp_data(cfg)
    h = cfg["hidden"]
    params_lif = LIFParameters(tau_syn=DT, tau_mem=DT / (1.0 - harness.DECAY),
                               v_th=harness.THRESHOLD, v_leak=0.0, v_reset=0.0)
    builder = Topology(time_steps=cfg["T"], dt=DT, record_states=False)
    builder.add({
        "inp": Input(cfg["n_in"]),
        "lif1": LIF(h, params_lif),
        "lif2": LIF(h, params_lif),
        "syn1": Linear(pre_weights=jnp.asarray(data["w1"] * INPUT_SCALE)),
        "syn2": Linear(pre_weights=jnp.asarray(data["w2"] * INPUT_SCALE)),
    })
    builder.connect([("inp", "syn1"), ("syn1", "lif1"), ("lif1", "syn2"), ("syn2", "lif2")])
    init_fn, apply_fn = builder.done()
    params = init_fn(jax.random.PRNGKey(0))
    apply_batched = jax.vmap(apply_fn, in_axes=(0, None))
    x = {"inp": jnp.asarray(data["x"]).transpose(1, 0, 2)}  # (B, T, n_in)

    def run(params, x):
        _, outputs = apply_batched(x, params)
        return outputs

    forward = jax.jit(lambda p, x: run(p, x)["lif2"])
    grad = jax.jit(jax.grad(lambda p, x: run(p, x)["lif2"].sum()))
    both = jax.jit(lambda p, x: (run(p, x)["lif1"], run(p, x)["lif2"]))
    return {
        "forward": lambda: forward(params, x),
        "backward": lambda: grad(params, x),
        "block": block,
        "rates": lambda: mean_rates(*both(params, x)),
        "versions": versions,
        "implementation": "jaxsnn 0.3.0 discrete Topology(Input, Linear, LIF, Linear, LIF) + vmap",
    }


if __name__ == "__main__":
    harness.run_worker(build)
