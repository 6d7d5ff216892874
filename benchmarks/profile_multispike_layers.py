"""Each layer of the multi-spike Randman network, forward and EventProp backward, per algorithm.

The network of the ``event_scaling`` workload (time-coded Randman, 100 inputs -> 128 LIF -> 10
LIF, ``tau_syn = 5 ms``, ``tau_mem = 10 ms``, ``t_max = 30 ms``, batch 32, float32, buffers sized
as the benchmark sizes them). For each layer, on the spikes of the scan:

* forward: ``jaxsnn.event.simulate(algorithm="scan" | "multispike")``;
* backward: ``eventprop_gradients`` (the scan) and ``multispike_eventprop_gradients`` (the closed
  form) at the layer's simulated spikes, with a unit cotangent on every spike time.

Every function is one jitted ``vmap`` over the batch; the calls are interleaved over
``--repeats`` rounds so that slow phases of a shared machine hit all of them alike, and the
median and minimum per call are written to ``benchmarks/results/profile_multispike_layers.json``
with the load average::

    python benchmarks/profile_multispike_layers.py [--t-ref 0] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE / "workers")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--t-ref", type=float, default=0.0, help="refractory period (s)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(HERE / "results" / "profile_multispike_layers.json"))
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp

    import harness
    import w_event_jaxsnn as worker
    from jaxsnn import Spikes
    from jaxsnn.event import simulate
    from jaxsnn.event.eventprop import eventprop_gradients, multispike_eventprop_gradients

    batch = args.batch
    cfg = dict(n_in=100, hidden=128, n_out=10, spikes_per_input=1, batch=batch, n_samples=batch,
               t_ref=args.t_ref)
    p = harness.multi_params(cfg)
    data = harness.multi_data(cfg)
    neuron = worker.multi_neuron(cfg, p)
    w1, w2 = jnp.asarray(data["w1"]), jnp.asarray(data["w2"])
    inputs = Spikes(jnp.asarray(data["times"][:batch]), jnp.asarray(data["idx"][:batch]))
    capacities = worker.multi_capacities(cfg, p, neuron, (w1, w2), inputs)
    t_max = p["t_max"]

    def layer_forward(weight, capacity, algorithm):
        return jax.jit(jax.vmap(lambda s: simulate(weight, s, neuron, capacity=capacity, t_max=t_max,
                                                   algorithm=algorithm).spikes))

    hidden = layer_forward(w1, capacities[0], "scan")(inputs)
    output = layer_forward(w2, capacities[1], "scan")(hidden)
    calls, info = {}, {}
    for name, weight, layer_in, capacity, layer_out in (("hidden", w1, inputs, capacities[0], hidden),
                                                        ("output", w2, hidden, capacities[1], output)):
        for algorithm in ("scan", "multispike"):
            forward = layer_forward(weight, capacity, algorithm)
            calls[f"{name} forward {algorithm}"] = (lambda f=forward, x=layer_in: f(x))
        cotangent = jnp.where(layer_out.idx >= 0, 1.0, 0.0)
        for label, backward in (("scan", eventprop_gradients), ("closed form", multispike_eventprop_gradients)):
            fn = jax.jit(jax.vmap(lambda x, y, c, b=backward, w=weight: b(w, x, y, neuron, t_max, c)))
            calls[f"{name} backward {label}"] = (lambda f=fn, x=layer_in, y=layer_out, c=cotangent: f(x, y, c))
        info[name] = {"inputs": int(layer_in.time.shape[1]), "capacity": int(capacity),
                      "spikes_per_sample": float(np.mean(np.sum(np.asarray(layer_out.idx) >= 0, axis=1)))}
    for fn in calls.values():
        jax.block_until_ready(fn())
    load_before = [round(v, 2) for v in os.getloadavg()]
    seconds = {key: [] for key in calls}
    for _ in range(args.repeats):
        for key, fn in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            seconds[key].append(time.perf_counter() - start)
    result = {
        "command": "python benchmarks/profile_multispike_layers.py " + " ".join(sys.argv[1:]),
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average": [load_before, [round(v, 2) for v in os.getloadavg()]],
        "jax": jax.__version__, "batch": batch, "t_ref": args.t_ref, "repeats": args.repeats,
        "layers": info,
        "median_ms": {k: round(1e3 * float(np.median(v)), 3) for k, v in seconds.items()},
        "min_ms": {k: round(1e3 * float(np.min(v)), 3) for k, v in seconds.items()},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for key in calls:
        print(f"{key:32s} median {result['median_ms'][key]:8.2f} ms  min {result['min_ms'][key]:8.2f} ms")
    print(f"load average {result['load_average']} -> {args.out}")


if __name__ == "__main__":
    main()
