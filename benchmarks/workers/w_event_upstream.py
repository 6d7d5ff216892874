"""Upstream jaxsnn 0.3.0 on the event-based Yin-Yang workloads, built as in its
``examples/event/yinyang_layered_event_prop.py``: ``Topology(t_max, backprop_method)`` with
``Source``, ``Linear(pre_weights=...)`` and ``LIF(size, n_steps, params)``; EventProp training
step = its ``training.update`` with the example's optimizer chain and ``mse_loss``.

Workloads: ``event_forward`` (jitted batched forward) and ``eventprop`` (training step and epoch),
``eventprop_accuracy`` (training with ``event_recipe`` to a Yin-Yang test accuracy) and
``event_multi`` (the time-coded Randman network ``n_in -> hidden -> n_out``, neurons spiking
several times: upstream's LIF with ``v_reset = 0`` and no refractory period, forward with its
analytical method, ``grad`` with ``backprop_method="eventprop"``). Spike times and gradients are
written to ``cfg["out"]`` (npz) for the equality check.
"""

from __future__ import annotations

from functools import partial

from common_jax import block, harness

import jax
import jax.numpy as jnp
import numpy as np


def network(cfg, p, n_in, n_out, w1, w2, method, n_steps_hidden, n_steps_output):
    """Upstream's two-layer ``Topology``: ``(init_fn, apply_fn)`` batched over the leading axis."""
    from jaxsnn.event.modules import LIF, Linear, Source
    from jaxsnn.event.modules.lif.lif import LIFParameters
    from jaxsnn.event.topology import Topology

    neuron = LIFParameters(v_reset=p["v_reset"], v_th=p["v_th"], tau_syn=p["tau_syn"],
                           tau_mem=p["tau_mem"])
    builder = Topology(t_max=p["t_max"], backprop_method=method)
    builder.add({
        "inp": Source(n_in),
        "lif1": LIF(cfg["hidden"], n_steps_hidden, neuron),
        "lif2": LIF(n_out, n_steps_output, neuron),
        "syn1": Linear(pre_weights=jnp.asarray(w1)),
        "syn2": Linear(pre_weights=jnp.asarray(w2)),
    })
    builder.connect([("inp", "syn1"), ("syn1", "lif1"), ("lif1", "syn2"), ("syn2", "lif2")])
    return builder.done()


def spikes_of(times, idx):
    from jaxsnn.event.types import Spike

    times, idx = jnp.asarray(times), jnp.asarray(idx)
    return Spike(time=times, idx=idx, current=jnp.zeros_like(times),
                 layer_idx=jnp.zeros_like(idx), internal=jnp.ones_like(idx, dtype=bool))


def layer_spikes(events, node):
    """A layer's own spikes (its buffer also holds its input events), padding ``(inf, -1)``."""
    s = events[node]
    keep = s.internal & (s.idx >= 0)
    return jnp.where(keep, s.time, jnp.inf), jnp.where(keep, s.idx, -1)


def build_multi(cfg):
    import w_event_jaxsnn  # the shared loss (plain jax)

    p = dict(harness.multi_params(cfg))
    if cfg.get("single"):
        p["v_reset"] = -1000.0  # upstream's way to let each neuron spike once
    elif p["t_ref"] > 0:
        raise NotImplementedError("jaxsnn 0.3.0's event LIF has no refractory period (t_ref > 0)")
    data = harness.multi_data(cfg)
    B, n_in, n_out = cfg["batch"], cfg["n_in"], cfg["n_out"]
    n_events = data["times"].shape[1]
    # upstream's layer buffers hold the layer's input events as well as its own spikes
    steps_hidden = n_events + cfg["capacity_hidden"]
    steps_output = steps_hidden + cfg["capacity_output"]
    batch_in = {"inp": spikes_of(data["times"][:B], data["idx"][:B])}
    labels = jnp.asarray(data["labels"][:B])
    versions = harness.package_versions("jaxsnn", "jax", "jaxlib")

    _, apply_fwd = network(cfg, p, n_in, n_out, data["w1"], data["w2"], "analytical",
                           steps_hidden, steps_output)
    init_grad, apply_grad = network(cfg, p, n_in, n_out, data["w1"], data["w2"], "eventprop",
                                    steps_hidden, steps_output)
    weights = init_grad(jax.random.PRNGKey(0))
    forward = jax.jit(lambda w, x: apply_fwd(x, w))

    def loss_fn(w):
        t2, i2 = layer_spikes(apply_grad(batch_in, w), "lif2")
        return w_event_jaxsnn.multi_loss(t2, i2, labels, n_out, p["t_max"])

    grad = jax.jit(jax.value_and_grad(loss_fn))

    def save():
        ev = forward(weights, batch_in)
        t1, i1 = layer_spikes(ev, "lif1")
        t2, i2 = layer_spikes(ev, "lif2")
        loss, g = grad(weights)
        np.savez(cfg["out"], t1=np.asarray(t1), i1=np.asarray(i1), t2=np.asarray(t2),
                 i2=np.asarray(i2), g1=np.asarray(g["syn1"]), g2=np.asarray(g["syn2"]),
                 loss=np.asarray(loss))
        return [float(np.mean(np.sum(np.asarray(i1) >= 0, axis=1))),
                float(np.mean(np.sum(np.asarray(i2) >= 0, axis=1)))]

    return {"forward": lambda: forward(weights, batch_in), "grad": lambda: grad(weights),
            "block": block, "rates": save, "versions": versions,
            "info": {"steps_hidden": steps_hidden, "steps_output": steps_output},
            "implementation": "jaxsnn 0.3.0 Topology(Source, Linear, LIF(v_reset=0)); forward "
                              "'analytical', grad 'eventprop'"}


def build_accuracy(cfg):
    import event_recipe

    p = harness.event_params(cfg)
    data = harness.event_data(dict(cfg, n_samples=1))  # the initial weights only
    hidden = cfg["hidden"]
    n_in = data["w1"].shape[0]
    init_fn, apply_fn = network(cfg, p, n_in, 3, data["w1"], data["w2"], "eventprop",
                                hidden + n_in, hidden + n_in + 3)

    def forward(w, times, idx):
        events = apply_fn({"inp": spikes_of(times, idx)}, {"syn1": w[0], "syn2": w[1]})
        t1, i1 = layer_spikes(events, "lif1")
        t2, i2 = layer_spikes(events, "lif2")
        return (event_recipe.first_times(jax.lax.stop_gradient(t1), i1, hidden),
                event_recipe.first_times(t2, i2, 3))

    train = harness.yinyang_split("train", cfg.get("train_samples", 0))
    test = harness.yinyang_split("test", cfg.get("test_samples", 0))
    info = event_recipe.train_to_accuracy(forward, (data["w1"], data["w2"]), train, test, p,
                                          cfg["target"], cfg["max_epochs"], cfg["max_seconds"])
    return {"block": block, "info": info,
            "versions": harness.package_versions("jaxsnn", "jax", "jaxlib", "optax"),
            "implementation": "jaxsnn 0.3.0 Topology(backprop_method='eventprop') + event_recipe"}


def build(workload, cfg):
    if workload == "event_multi":
        return build_multi(cfg)
    if workload == "eventprop_accuracy":
        return build_accuracy(cfg)
    import optax
    from jaxsnn.event.loss import first_spike, mse_loss
    from jaxsnn.event.modules import LIF, Linear, Source
    from jaxsnn.event.modules.lif.lif import LIFParameters
    from jaxsnn.event.topology import Topology
    from jaxsnn.event.training import update
    from jaxsnn.event.types import OptState, Spike

    p = harness.event_params(cfg)
    data = harness.event_data(cfg)
    hidden, n_in = cfg["hidden"], data["w1"].shape[0]
    neuron = LIFParameters(v_reset=p["v_reset"], v_th=p["v_th"], tau_syn=p["tau_syn"],
                           tau_mem=p["tau_mem"])
    method = "eventprop" if workload == "eventprop" else "analytical"
    builder = Topology(t_max=p["t_max"], backprop_method=method)
    builder.add({
        "inp": Source(n_in),
        "lif1": LIF(hidden, cfg["capacity_hidden"], neuron),
        "lif2": LIF(3, cfg["capacity_output"], neuron),
        "syn1": Linear(pre_weights=jnp.asarray(data["w1"])),
        "syn2": Linear(pre_weights=jnp.asarray(data["w2"])),
    })
    builder.connect([("inp", "syn1"), ("syn1", "lif1"), ("lif1", "syn2"), ("syn2", "lif2")])
    init_fn, apply_fn = builder.done()  # batched over the leading axis (mock mode)
    weights = init_fn(jax.random.PRNGKey(0))

    def spikes_of(times, idx):
        times, idx = jnp.asarray(times), jnp.asarray(idx)
        return Spike(time=times, idx=idx, current=jnp.zeros_like(times),
                     layer_idx=jnp.zeros_like(idx), internal=jnp.ones_like(idx, dtype=bool))

    versions = harness.package_versions("jaxsnn", "jax", "jaxlib", "optax")
    B = cfg["batch"]
    batch_in = {"inp": spikes_of(data["times"][:B], data["idx"][:B])}

    def layer_spikes(events, node):
        s = events[node]
        s = s.where(s.internal)
        return s.time, s.idx

    if workload == "event_forward":
        forward = jax.jit(lambda w, x: apply_fn(x, w))

        def save():
            ev = forward(weights, batch_in)
            t1, i1 = layer_spikes(ev, "lif1")
            t2, i2 = layer_spikes(ev, "lif2")
            np.savez(cfg["out"], t1=np.asarray(t1), i1=np.asarray(i1), t2=np.asarray(t2),
                     i2=np.asarray(i2))
            return [float(np.mean(np.sum(np.asarray(i1) >= 0, axis=1))),
                    float(np.mean(np.sum(np.asarray(i2) >= 0, axis=1)))]

        return {"forward": lambda: forward(weights, batch_in), "block": block, "rates": save,
                "versions": versions,
                "implementation": "jaxsnn 0.3.0 event Topology(Source, Linear, LIF), analytical"}

    # EventProp training: the example's loss and optimizer
    def loss_fn(params, batch):
        events = apply_fn(batch[0], params)
        t_first = jax.vmap(first_spike, in_axes=(0, None))(events["lif2"], 3)
        loss = jnp.mean(jax.vmap(mse_loss, in_axes=(0, 0, None))(t_first, batch[1], p["tau_mem"]))
        return loss, (t_first, events)

    optimizer = optax.chain(optax.scale(1.0 / p["tau_syn"]), optax.clip(0.01),
                            optax.adam(optax.exponential_decay(5e-3, 78, 0.99)))
    state = OptState(optimizer.init(weights), weights, jax.random.PRNGKey(0))
    targets = jnp.asarray(data["targets"])
    step = jax.jit(partial(update, optimizer, loss_fn))
    batch = (batch_in, targets[:B])
    n_batches = cfg["n_samples"] // B
    all_in = spikes_of(data["times"][: n_batches * B].reshape(n_batches, B, -1),
                       data["idx"][: n_batches * B].reshape(n_batches, B, -1))
    epoch_data = ({"inp": all_in}, targets[: n_batches * B].reshape(n_batches, B, 3))
    epoch = jax.jit(lambda s: jax.lax.scan(partial(update, optimizer, loss_fn), s, epoch_data)[0])

    def save():
        grad = jax.jit(jax.grad(lambda w: loss_fn(w, batch)[0]))(weights)
        loss = jax.jit(lambda w: loss_fn(w, batch)[0])(weights)
        np.savez(cfg["out"], g1=np.asarray(grad["syn1"]), g2=np.asarray(grad["syn2"]),
                 loss=np.asarray(loss))
        return [float(loss)]

    return {"step": lambda: step(state, batch), "epoch": lambda: epoch(state), "block": block,
            "rates": save, "versions": versions,
            "implementation":
                "jaxsnn 0.3.0 Topology(backprop_method='eventprop') + training.update"}


if __name__ == "__main__":
    harness.run_worker(build)
