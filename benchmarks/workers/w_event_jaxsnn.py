"""jaxsnn (this repository) on the event-based workloads.

* ``event_forward``, ``eventprop``: the Yin-Yang network ``serial(event.LIF(hidden),
  event.LIF(3))`` with ``jax.vmap`` over the batch; training uses EventProp
  (``gradient="eventprop"``) with the same loss and optimizer chain as the upstream side.
* ``eventprop_accuracy``: the same network trained with ``event_recipe`` until the Yin-Yang test
  accuracy reaches ``cfg["target"]``.
* ``event_multi``: ``n_in -> hidden -> n_out`` LIF on time-coded Randman inputs
  (``harness.multi_data``), neurons spiking several times (or once with ``single``), through the
  public ``jaxsnn.event.simulate`` / ``simulate_eventprop`` with ``algorithm=cfg["algorithm"]``
  (``"auto"``: whatever jaxsnn chooses; ``"scan"``: the event-by-event scan). Modes ``forward``
  and ``grad`` (forward + EventProp backward of ``multi_loss``).
"""

from __future__ import annotations

from common_jax import block, harness

import jax
import jax.numpy as jnp
import numpy as np


def build(workload, cfg):
    if workload == "event_multi":
        return build_multi(cfg)
    if workload == "eventprop_accuracy":
        return build_accuracy(cfg)
    import optax

    import jaxsnn
    from jaxsnn import Spikes
    from jaxsnn.event import LIF

    p = harness.event_params(cfg)
    data = harness.event_data(cfg)
    hidden = cfg["hidden"]
    neuron = dict(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], v_th=p["v_th"],
                  v_reset=p["v_reset"], t_max=p["t_max"], gradient="eventprop",
                  # one spike per neuron, as upstream's v_reset = -1000 intends; this is
                  # also what selects jaxsnn's parallel single-spike algorithm
                  t_ref=p["t_max"],
                  kernel=cfg.get("kernel", "auto"))
    _, apply = jaxsnn.serial(LIF(hidden, capacity=cfg["capacity_hidden"], **neuron),
                             LIF(3, capacity=cfg["capacity_output"], **neuron))
    params = [{"weight": jnp.asarray(data["w1"])}, {"weight": jnp.asarray(data["w2"])}]
    B = cfg["batch"]
    batch_in = Spikes(jnp.asarray(data["times"][:B]), jnp.asarray(data["idx"][:B]))

    def run(params, spikes):
        return jax.vmap(lambda s: apply(params, s))(spikes)

    versions = dict(harness.package_versions("jax", "jaxlib", "optax"), jaxsnn=jaxsnn.__version__)
    if workload == "event_forward":
        forward = jax.jit(run)  # one compiled function for timing and for the saved spikes

        def save():
            _, out, rec = forward(params, batch_in)
            h, o = rec[0].spikes, rec[1].spikes
            np.savez(cfg["out"], t1=np.asarray(h.time), i1=np.asarray(h.idx),
                     t2=np.asarray(o.time), i2=np.asarray(o.idx))
            return [float(np.mean(np.sum(np.asarray(h.idx) >= 0, axis=1))),
                    float(np.mean(np.sum(np.asarray(o.idx) >= 0, axis=1)))]

        return {"forward": lambda: forward(params, batch_in), "block": block, "rates": save,
                "versions": versions,
                "implementation": "jaxsnn.serial(event.LIF, event.LIF) + jax.vmap"}

    def first_spikes(out):
        hit = out.idx[..., None] == jnp.arange(3)
        return jnp.min(jnp.where(hit, out.time[..., None], jnp.inf), axis=-2)

    def loss_fn(params, batch):
        spikes, target = batch
        t_first = first_spikes(run(params, spikes)[1])
        err = (jnp.minimum(t_first, 2 * p["tau_mem"]) - target) / p["tau_mem"]
        return jnp.mean(jnp.sum(jnp.square(err), axis=-1))

    optimizer = optax.chain(optax.scale(1.0 / p["tau_syn"]), optax.clip(0.01),
                            optax.adam(optax.exponential_decay(5e-3, 78, 0.99)))

    def update(state, batch):
        params, opt_state = state
        loss, grad = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = optimizer.update(grad, opt_state)
        return (optax.apply_updates(params, updates), opt_state), loss

    state = (params, optimizer.init(params))
    targets = jnp.asarray(data["targets"])
    batch = (batch_in, targets[:B])
    n_batches = cfg["n_samples"] // B
    epoch_data = (Spikes(jnp.asarray(data["times"][: n_batches * B].reshape(n_batches, B, -1)),
                         jnp.asarray(data["idx"][: n_batches * B].reshape(n_batches, B, -1))),
                  targets[: n_batches * B].reshape(n_batches, B, 3))
    step = jax.jit(update)
    epoch = jax.jit(lambda s: jax.lax.scan(update, s, epoch_data)[0])

    def save():
        loss, grad = jax.jit(jax.value_and_grad(lambda w: loss_fn(w, batch)))(params)
        np.savez(cfg["out"], g1=np.asarray(grad[0]["weight"]), g2=np.asarray(grad[1]["weight"]),
                 loss=np.asarray(loss))
        return [float(loss)]

    return {"step": lambda: step(state, batch), "epoch": lambda: epoch(state), "block": block,
            "rates": save, "versions": versions,
            "implementation": "jaxsnn.serial(event.LIF(gradient='eventprop'), ...) + optax"}


def multi_neuron(cfg, p):
    """Neuron of the multi-spike workload; ``single``: one spike per neuron as upstream's
    ``v_reset = -1000`` (and ``t_ref = t_max``, which lets jaxsnn choose its parallel algorithm)."""
    from jaxsnn.event import LIFParameters

    if cfg.get("single"):
        return LIFParameters(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], v_th=p["v_th"],
                             v_reset=-1000.0, t_ref=p["t_max"])
    return LIFParameters(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], v_th=p["v_th"],
                         v_reset=p["v_reset"], t_ref=p["t_ref"])


def multi_capacities(cfg, p, neuron, weights, spikes):
    """Smallest buffers that hold every sample's spikes (hidden, output), with a small margin.

    Single-spike networks need exactly ``hidden`` and ``n_out``; multi-spike ones are probed with
    the scan at doubling capacities until no sample overflows. Both libraries then run with the
    same buffers (upstream's also hold the layer's input events)."""
    from jaxsnn.event import simulate

    if cfg.get("single"):
        return cfg["hidden"], cfg["n_out"]
    caps = []
    inputs = spikes
    for w, n in zip(weights, (cfg["hidden"], cfg["n_out"])):
        cap = 8 * n  # about 4 spikes per neuron: one compilation, rarely two
        while True:
            sim = jax.jit(jax.vmap(lambda s: simulate(w, s, neuron, capacity=cap, t_max=p["t_max"],
                                                      algorithm="scan")))
            res = sim(inputs)
            if not bool(jnp.any(res.overflow)):
                break
            cap *= 2
        count = int(jnp.max(jnp.sum(res.spikes.idx >= 0, axis=-1)))
        caps.append(max(count + max(4, count // 16), 1))
        inputs = res.spikes
    return tuple(caps)


def multi_loss(out_time, out_idx, labels, n_out, t_max):
    """A smooth loss of every output spike: the label neuron's spikes pulled earlier, the others'
    pushed later, ``mean_b sum_spikes s_k t / t_max`` with ``s = +1`` for the label and
    ``-1 / (n_out - 1)`` otherwise (padding contributes nothing)."""
    valid = out_idx >= 0
    sign = jnp.where(out_idx == labels[:, None], 1.0, -1.0 / (n_out - 1))
    return jnp.mean(jnp.sum(jnp.where(valid, sign * out_time / t_max, 0.0), axis=-1))


def build_multi(cfg):
    import jaxsnn
    from jaxsnn import Spikes
    from jaxsnn.event import simulate
    from jaxsnn.event.eventprop import simulate_eventprop

    p = harness.multi_params(cfg)
    data = harness.multi_data(cfg)
    neuron = multi_neuron(cfg, p)
    B, algorithm = cfg["batch"], cfg.get("algorithm", "auto")
    w = (jnp.asarray(data["w1"]), jnp.asarray(data["w2"]))
    spikes = Spikes(jnp.asarray(data["times"][:B]), jnp.asarray(data["idx"][:B]))
    labels = jnp.asarray(data["labels"][:B])
    if "capacity_hidden" in cfg:
        caps = (cfg["capacity_hidden"], cfg["capacity_output"])
    else:
        caps = multi_capacities(cfg, p, neuron, w, spikes)
    info = {"capacity_hidden": caps[0], "capacity_output": caps[1], "algorithm": algorithm}

    def network(simulate_fn, weights, spikes, **options):
        def one(s):
            h = simulate_fn(weights[0], s, neuron, capacity=caps[0], t_max=p["t_max"],
                            algorithm=algorithm, **options)
            o = simulate_fn(weights[1], h.spikes, neuron, capacity=caps[1], t_max=p["t_max"],
                            algorithm=algorithm, **options)
            return h.spikes, o.spikes, h.overflow | o.overflow
        return jax.vmap(one)(spikes)

    forward = jax.jit(lambda weights, s: network(simulate, weights, s))

    def loss_fn(weights, s):
        # "scan": the event scan forward and backward (the reference the closed forms replace)
        backward = "scan" if algorithm == "scan" else "auto"
        _, out, _ = network(simulate_eventprop, weights, s, backward=backward)
        return multi_loss(out.time, out.idx, labels, cfg["n_out"], p["t_max"])

    grad = jax.jit(jax.value_and_grad(loss_fn))

    def save():
        h, o, overflow = forward(w, spikes)
        loss, g = grad(w, spikes)
        info["overflow"] = bool(jnp.any(overflow))
        np.savez(cfg["out"], t1=np.asarray(h.time), i1=np.asarray(h.idx), t2=np.asarray(o.time),
                 i2=np.asarray(o.idx), g1=np.asarray(g[0]), g2=np.asarray(g[1]),
                 loss=np.asarray(loss))
        return [float(np.mean(np.sum(np.asarray(h.idx) >= 0, axis=1))),
                float(np.mean(np.sum(np.asarray(o.idx) >= 0, axis=1)))]

    return {"forward": lambda: forward(w, spikes), "grad": lambda: grad(w, spikes),
            "block": block, "rates": save, "info": info,
            "versions": dict(harness.package_versions("jax", "jaxlib"), jaxsnn=jaxsnn.__version__),
            "implementation": f"jaxsnn.event.simulate / simulate_eventprop(algorithm={algorithm!r}, "
                              f"backward={'scan' if algorithm == 'scan' else 'auto'!r}) "
                              "x 2 layers + jax.vmap"}


def build_accuracy(cfg):
    import event_recipe

    import jaxsnn
    from jaxsnn import Spikes
    from jaxsnn.event import LIF

    p = harness.event_params(cfg)
    data = harness.event_data(dict(cfg, n_samples=1))  # the initial weights only
    neuron = dict(tau_syn=p["tau_syn"], tau_mem=p["tau_mem"], v_th=p["v_th"], v_reset=p["v_reset"],
                  t_max=p["t_max"], gradient="eventprop", t_ref=p["t_max"])
    hidden = cfg["hidden"]
    _, apply = jaxsnn.serial(LIF(hidden, capacity=hidden, **neuron), LIF(3, capacity=3, **neuron))

    def forward(w, times, idx):
        params = [{"weight": w[0]}, {"weight": w[1]}]
        _, out, rec = jax.vmap(lambda s: apply(params, s))(Spikes(times, idx))
        h = rec[0].spikes
        hidden_first = event_recipe.first_times(jax.lax.stop_gradient(h.time), h.idx, hidden)
        return hidden_first, event_recipe.first_times(out.time, out.idx, 3)

    train = harness.yinyang_split("train", cfg.get("train_samples", 0))
    test = harness.yinyang_split("test", cfg.get("test_samples", 0))
    info = event_recipe.train_to_accuracy(forward, (data["w1"], data["w2"]), train, test, p,
                                          cfg["target"], cfg["max_epochs"], cfg["max_seconds"])
    return {"block": block, "info": info,
            "versions": dict(harness.package_versions("jax", "jaxlib", "optax"),
                             jaxsnn=jaxsnn.__version__),
            "implementation": "jaxsnn.serial(event.LIF(gradient='eventprop'), ...) + event_recipe"}


if __name__ == "__main__":
    harness.run_worker(build)
