"""Per-event cost of the exact event scan and of EventProp, compared between two source trees.

Workloads (CPU, float32, one jitted ``vmap`` over the batch, median of ``--repeats`` calls):

* ``scan_forward``: ``jaxsnn.event.simulate(algorithm="scan")`` of a multi-spike layer
  (100 inputs, 200 input events in 50 ms, 128 LIF with ``t_ref = 1 ms``, capacity 512, batch 16;
  about 300 output spikes per sample).
* ``scan_backward``: the scan EventProp backward (``eventprop_gradients``) of the same layer at
  its simulated spikes.
* ``yinyang_forward``, ``yinyang_step_scan``, ``yinyang_step_parallel``: the network of
  ``examples/yinyang_eventprop.py`` (5 latency-coded inputs -> 120 LIF -> 3 LIF, ``t_ref =
  t_max``, batch 32): the forward pass alone, and forward + backward (``value_and_grad`` of a
  first-spike loss) with the scan EventProp backward or the parallel one (where the tree has it).

    python benchmarks/profile_event_scan.py --compare OLD_TREE NEW_TREE [--rounds 5]

runs this script once per round and tree, alternating (``PYTHONPATH=TREE``), and writes the
per-round medians, their median over rounds, the new/old ratios and the load average to
``benchmarks/results/profile_event_scan.json``. Without ``--compare`` it measures the ``jaxsnn``
on the path and prints one JSON line (the worker mode). Timings on a loaded machine are noisy;
the load average is recorded with every round.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict

RESULT = Path(__file__).resolve().parent / "results" / "profile_event_scan.json"


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    import jax

    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _multi_spike_layer():
    import jax.numpy as jnp
    import numpy as np

    from jaxsnn.event import LIFParameters
    from jaxsnn.spikes import Spikes

    rng = np.random.default_rng(0)
    batch, n_in, events, size = 16, 100, 200, 128
    times = np.sort(rng.uniform(0.0, 0.05, (batch, events)), axis=1).astype(np.float32)
    idx = rng.integers(0, n_in, (batch, events)).astype(np.int32)
    weight = jnp.asarray(rng.normal(0.05, 0.4, (n_in, size)).astype(np.float32))
    neuron = LIFParameters(tau_syn=5e-3, tau_mem=1e-2, t_ref=1e-3)
    return weight, Spikes(jnp.asarray(times), jnp.asarray(idx)), neuron, dict(capacity=512, t_max=0.05)


def _yinyang_network():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxsnn.encode import latency_spikes
    from jaxsnn.event import LIFParameters

    rng = np.random.default_rng(1)
    points = rng.uniform(0.0, 1.0, (32, 2))
    features = np.concatenate([points, 1.0 - points], axis=1).astype(np.float32)
    inputs = jax.vmap(lambda x: latency_spikes(x, t_min=0.0, t_max=1e-2, bias_time=0.0))(jnp.asarray(features))
    hidden = jnp.asarray(rng.normal(3.0, 1.6, (5, 120)).astype(np.float32))
    output = jnp.asarray(rng.normal(0.5, 0.8, (120, 3)).astype(np.float32))
    neuron = LIFParameters(tau_syn=5e-3, tau_mem=1e-2, t_ref=2e-2)
    return (hidden, output), inputs, neuron


def measure(repeats: int) -> Dict[str, Any]:
    """Median seconds per call of every workload, for the ``jaxsnn`` on the path."""
    import jax
    import jax.numpy as jnp

    import jaxsnn
    from jaxsnn.event import simulate
    from jaxsnn.event.eventprop import eventprop_gradients, simulate_eventprop

    results: Dict[str, Any] = {"jaxsnn": str(Path(jaxsnn.__file__).resolve().parent.parent)}
    weight, inputs, neuron, window = _multi_spike_layer()

    forward = jax.jit(jax.vmap(lambda w, s: simulate(w, s, neuron, algorithm="scan", **window), in_axes=(None, 0)))
    outputs = forward(weight, inputs)
    results["scan_forward"] = _median_time(lambda: forward(weight, inputs), repeats)
    results["output_spikes_per_sample"] = float(jnp.mean(outputs.spikes.count()))
    cotangent = jnp.ones_like(outputs.spikes.time)
    backward = jax.jit(jax.vmap(
        lambda w, s, o, c: eventprop_gradients(w, s, o, neuron, window["t_max"], c), in_axes=(None, 0, 0, 0)
    ))
    results["scan_backward"] = _median_time(lambda: backward(weight, inputs, outputs.spikes, cotangent), repeats)

    (w_hidden, w_output), yy_inputs, yy_neuron = _yinyang_network()
    has_backward_option = "backward" in inspect.signature(simulate_eventprop).parameters

    def network(weights, sample, backward):
        option = {"backward": backward} if has_backward_option else {}
        hidden = simulate_eventprop(weights[0], sample, yy_neuron, capacity=128, t_max=2e-2, **option).spikes
        out = simulate_eventprop(weights[1], hidden, yy_neuron, capacity=3, t_max=2e-2, **option).spikes
        return jnp.sum(jnp.where(out.idx >= 0, out.time, 2e-2) ** 2) + 0.1 * jnp.sum(
            jnp.where(hidden.idx >= 0, hidden.time, 0.0))

    def batch_loss(weights, backward):
        return jnp.mean(jax.vmap(lambda s: network(weights, s, backward))(yy_inputs))

    weights = (w_hidden, w_output)
    yy_forward = jax.jit(lambda w: batch_loss(w, "auto"))
    results["yinyang_forward"] = _median_time(lambda: yy_forward(weights), repeats)
    variants = ("scan", "parallel") if has_backward_option else ("scan",)
    for variant in variants:
        step = jax.jit(jax.value_and_grad(lambda w, v=variant: batch_loss(w, v)))
        results[f"yinyang_step_{variant}"] = _median_time(lambda: step(weights), repeats)
    return results


def _load_average():
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def compare(old: str, new: str, rounds: int, repeats: int) -> Dict[str, Any]:
    """Alternate worker runs of the two trees; medians over rounds and new/old ratios."""
    per_tree: Dict[str, list] = {"old": [], "new": []}
    for round_number in range(rounds):
        for label, tree in (("old", old), ("new", new)) if round_number % 2 == 0 else (("new", new), ("old", old)):
            env = dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS="cpu")
            load_before = _load_average()
            output = subprocess.run(
                [sys.executable, __file__, "--repeats", str(repeats)], env=env, check=True,
                capture_output=True, text=True,
            ).stdout
            record = json.loads(output.strip().splitlines()[-1])
            record["load_average_before"] = load_before
            per_tree[label].append(record)
            print(label, json.dumps(record), flush=True)
    keys = [key for key in per_tree["new"][0] if key.startswith(("scan_", "yinyang_"))]
    summary = {}
    for key in keys:
        new_median = statistics.median(record[key] for record in per_tree["new"])
        entry = {"new_median_s": new_median}
        if key in per_tree["old"][0]:
            old_median = statistics.median(record[key] for record in per_tree["old"])
            entry.update(old_median_s=old_median, new_over_old=new_median / old_median)
        summary[key] = entry
    for tree in ("old", "new"):
        if "yinyang_forward" in summary:
            forward = summary["yinyang_forward"][f"{tree}_median_s"]
            for variant in ("scan", "parallel"):
                key = f"yinyang_step_{variant}"
                if key in summary and f"{tree}_median_s" in summary[key]:
                    summary[key][f"{tree}_step_over_forward"] = summary[key][f"{tree}_median_s"] / forward
    return {
        "description": __doc__.strip().splitlines()[0],
        "command": f"python benchmarks/profile_event_scan.py --compare {old} {new} --rounds {rounds} "
                   f"--repeats {repeats}",
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_after": _load_average()},
        "note": "Absolute times depend on the machine load (the load average before every round is "
                "recorded); the rounds alternate the two trees so that load affects both alike.",
        "rounds": rounds,
        "repeats_per_round": repeats,
        "summary": summary,
        "per_round": per_tree,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--compare", nargs=2, metavar=("OLD_TREE", "NEW_TREE"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(RESULT))
    args = parser.parse_args()
    if args.compare is None:
        print(json.dumps(measure(args.repeats)))
        return 0
    result = compare(*args.compare, rounds=args.rounds, repeats=args.repeats)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
