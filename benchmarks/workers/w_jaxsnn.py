"""jaxsnn (this repository) on the discrete workloads: ``serial(Dense, LIF, Dense, LIF)``,
``serial(ConvLIF, ConvLIF)`` for ``cnn48`` (the convolution fused into the LIF scan;
``cfg["variant"] = "conv+lif"`` runs the unfused ``serial(Conv, LIF, Conv, LIF)``, ``"bands"``
ConvLIF with ``weight_gradient="bands"``) and, for ``cnn_pool``,
``serial(ConvLIF, MaxPool, ConvLIF, MaxPool, Flatten, Dense, LIF)`` (the same variants;
``"conv+lif"`` runs ``serial(Conv, LIF, MaxPool, Conv, LIF, MaxPool, Flatten, Dense, LIF)``).

The benchmark neuron ``v_t = 0.9 v_{t-1} + x_t @ W`` is jaxsnn's single-state LIF
(``tau_syn=0``, ``input_scale=1``, ``tau_mem = tau_from_decay(0.9)``), so every library sees the
same network with the same weights. Inputs are time-major ``(T, B, ...)`` and the network is
batched with ``jaxsnn.discrete.time_major`` (``jax.vmap`` over axis 1: no transpose around the
LIF scans); ``cfg["layout"] = "batch-major"`` runs the ``jax.vmap`` over ``(B, T, ...)`` instead.

The forward pass of ``cnn_pool`` runs ``jaxsnn.discrete.stepwise(net)`` (all layers in one loop
over time, so neither conv layer's ``(T, B, 48, 48, 16)`` / ``(T, B, 24, 24, 16)`` spikes are
written for the whole window; the inference API); ``cfg["forward"] = "serial"`` runs the layers
one after another as for the gradient. ``cnn48`` and the MLPs run ``serial`` (stepwise measured
no faster there: its last layer's output is as large as the first's, and the per-step
convolution dominates). Gradients always use ``serial`` (the layers' whole-window adjoints).
"""

from __future__ import annotations

from common_jax import block, harness, mean_rates

import jax
import jax.numpy as jnp

import jaxsnn
from jaxsnn.discrete import (
    LIF,
    Conv,
    ConvLIF,
    Dense,
    Flatten,
    MaxPool,
    stepwise,
    tau_from_decay,
    time_major,
)

DT = 1.0
TAU_MEM = tau_from_decay(harness.DECAY, DT)


def lif(size):
    return LIF(size, tau_syn=0.0, tau_mem=TAU_MEM, dt=DT, input_scale=1.0,
               v_th=harness.THRESHOLD, reset="subtract", project=False)


def conv_lif(channels, kernel, **kw):
    return ConvLIF(channels, kernel, tau_syn=0.0, tau_mem=TAU_MEM, dt=DT, input_scale=1.0,
                   v_th=harness.THRESHOLD, reset="subtract", **kw)


def network(workload, cfg, conv_backward="patches"):
    """The jaxsnn network of ``workload``, its parameters from the shared data, the time-major
    input ``(T, B, ...)`` and the indices of its LIF layers."""
    if workload in ("mlp2048", "scaling"):
        data = harness.mlp_data(cfg)
        hidden = cfg["hidden"]
        net = jaxsnn.serial(Dense(hidden), lif(hidden), Dense(hidden), lif(hidden))
        params = [{"weight": jnp.asarray(data["w1"])}, {}, {"weight": jnp.asarray(data["w2"])}, {}]
        return net, params, jnp.asarray(data["x"]), (1, 3)
    hwio = lambda k: jnp.asarray(k.transpose(2, 3, 1, 0))  # noqa: E731  OIHW -> HWIO
    c, s, k = cfg["channels"], cfg["size"], cfg["kernel"]
    conv = lambda: Conv(c, k, backward=conv_backward)  # noqa: E731
    variant = cfg.get("variant", "scan")
    if variant not in ("scan", "bands", "conv+lif"):
        raise ValueError(f"unknown {workload} variant {variant!r}")
    if workload == "cnn48" and variant != "conv+lif":
        data = harness.cnn_data(cfg)
        net = jaxsnn.serial(conv_lif(c, k, weight_gradient=variant),
                            conv_lif(c, k, weight_gradient=variant))
        params = [{"weight": hwio(data["k1"])}, {"weight": hwio(data["k2"])}]
        lifs = (0, 1)
    elif workload == "cnn48":
        data = harness.cnn_data(cfg)
        net = jaxsnn.serial(conv(), lif((s, s, c)), conv(), lif((s, s, c)))
        params = [{"weight": hwio(data["k1"])}, {}, {"weight": hwio(data["k2"])}, {}]
        lifs = (1, 3)
    elif workload == "cnn_pool" and variant != "conv+lif":
        data = harness.cnn_pool_data(cfg)
        p = cfg["pool"]
        net = jaxsnn.serial(conv_lif(c, k, weight_gradient=variant), MaxPool(p),
                            conv_lif(c, k, weight_gradient=variant), MaxPool(p), Flatten(),
                            Dense(cfg["classes"]), lif(cfg["classes"]))
        params = [{"weight": hwio(data["k1"])}, {}, {"weight": hwio(data["k2"])}, {}, {},
                  {"weight": jnp.asarray(harness.hwc_rows(data["w3"], cfg))}, {}]
        lifs = (0, 2, 6)
    elif workload == "cnn_pool":
        data = harness.cnn_pool_data(cfg)
        p = cfg["pool"]
        net = jaxsnn.serial(conv(), lif((s, s, c)), MaxPool(p), conv(),
                            lif((s // p, s // p, c)), MaxPool(p), Flatten(),
                            Dense(cfg["classes"]), lif(cfg["classes"]))
        params = [{"weight": hwio(data["k1"])}, {}, {}, {"weight": hwio(data["k2"])}, {}, {}, {},
                  {"weight": jnp.asarray(harness.hwc_rows(data["w3"], cfg))}, {}]
        lifs = (1, 4, 8)
    else:
        raise ValueError(f"unknown workload {workload!r}")
    x = jnp.asarray(data["x"]).transpose(0, 1, 3, 4, 2)  # (T, B, C, H, W) -> (T, B, H, W, C)
    return net, params, x, lifs


def build(workload, cfg):
    net, params, x, lifs = network(workload, cfg, cfg.get("conv_backward", "patches"))
    forward_mode = cfg.get("forward", "stepwise" if workload == "cnn_pool" else "serial")
    if forward_mode not in ("serial", "stepwise"):
        raise ValueError(f"unknown forward mode {forward_mode!r}")
    layout = cfg.get("layout", "time-major")
    if layout != "time-major":
        x = x.swapaxes(0, 1)  # (B, T, ...)

    def runner(layer):
        if layout == "time-major":
            batched = time_major(layer)

            def run(params, x):
                _, out, rec = batched(params, x)
                return out, rec
        else:
            def run(params, x):
                _, out, rec = jax.vmap(lambda xs: layer.apply(params, xs))(x)
                return out, rec
        return run

    run = runner(net)
    run_forward = runner(stepwise(net)) if forward_mode == "stepwise" else run
    forward = jax.jit(lambda p, x: run_forward(p, x)[0])
    grad = jax.jit(jax.grad(lambda p, x: run(p, x)[0].sum()))
    rates = jax.jit(lambda p, x: tuple(run(p, x)[1][i].spikes for i in lifs))
    return {
        "forward": lambda: forward(params, x),
        "backward": lambda: grad(params, x),
        "block": block,
        "rates": lambda: mean_rates(*rates(params, x)),
        "versions": dict(harness.package_versions("jax", "jaxlib"), jaxsnn=jaxsnn.__version__),
        "implementation": "jaxsnn.serial(...) (cnn48, cnn_pool: ConvLIF conv layers) batched with "
                          "jaxsnn.discrete.time_major "
                          "(jax.vmap over the batch axis of (T, B, ...) inputs)"
                          + ("; forward: jaxsnn.discrete.stepwise(net)"
                             if forward_mode == "stepwise" else ""),
    }


if __name__ == "__main__":
    harness.run_worker(build)
