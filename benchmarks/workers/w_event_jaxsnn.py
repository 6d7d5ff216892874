"""jaxsnn (this repository) on the event-based Yin-Yang workloads:
``serial(event.LIF(hidden), event.LIF(3))`` with ``jax.vmap`` over the batch; training uses
EventProp (``gradient="eventprop"``) with the same loss and optimizer chain as the upstream side.
"""

from __future__ import annotations

from common_jax import block, harness

import jax
import jax.numpy as jnp
import numpy as np


def build(workload, cfg):
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


if __name__ == "__main__":
    harness.run_worker(build)
