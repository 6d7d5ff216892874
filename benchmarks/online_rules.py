"""Speed and compile time of the online rules against BPTT on the Randman network.

One training step (gradient of a batch of sequences plus an ``adamax`` update) of the network of
``examples/randman_online.py`` (100 -> LIF(128) -> LIF(10), single-state neurons, T = 100) for
every rule, in deferred mode (one update per batch) and optionally online mode (an update after
every time step). Everything runs in one process; the timed calls are interleaved (one call of
each rule per round), so a change of machine load hits all rules alike, and the ratio to BPTT
is the median of the per-round ratios. Compile time is ``lower`` + ``compile`` of each rule's
jitted step (ahead of time, nothing cached before).

Usage::

    python benchmarks/online_rules.py                      # batch 32 and RTRL at batch 2
    python benchmarks/online_rules.py --rounds 3 --tiny    # a check that everything runs

Writes ``benchmarks/results/online_rules.speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jaxsnn  # noqa: E402
from jaxsnn import online  # noqa: E402
from jaxsnn.discrete import LIF, surrogate, tau_from_decay  # noqa: E402

RULES = ("bptt", "truncated", "ottt", "ostl", "otpe", "rtrl")


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", default=",".join(RULES))
    parser.add_argument("--modes", default="deferred", help="deferred and/or online")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--small-batch", type=int, default=2,
                        help="also time RTRL at this batch size (0: skip)")
    parser.add_argument("--time-steps", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10, help="timed calls per rule")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "online_rules.speed.json")
    args = parser.parse_args(argv)
    args.rules = [r for r in args.rules.split(",") if r]
    args.modes = [m for m in args.modes.split(",") if m]
    if args.tiny:
        args.batch, args.small_batch, args.time_steps, args.hidden = 2, 0, 8, 8
    return args


def network(hidden: int) -> jaxsnn.Layer:
    neuron = dict(tau_syn=0.0, tau_mem=tau_from_decay(0.881), dt=1.0, input_scale=1.0,
                  surrogate=surrogate.superspike(25.0), weight_scale=3.0)
    return jaxsnn.serial(LIF(hidden, **neuron), LIF(10, **neuron))


def step_loss(output, label):
    return -jax.nn.log_softmax(output)[label]


def workload(args, batch: int):
    net = network(args.hidden)
    _, params = net.init(jax.random.PRNGKey(0), (args.time_steps, 100))
    # one input spike per unit at a random step, like Randman's latency code
    steps = jax.random.randint(jax.random.PRNGKey(1), (batch, 100), 0, args.time_steps)
    inputs = (jnp.arange(args.time_steps)[None, :, None] == steps[:, None, :]).astype(jnp.float32)
    labels = jax.random.randint(jax.random.PRNGKey(2), (batch,), 0, 10)
    targets = jnp.broadcast_to(labels[:, None], (batch, args.time_steps))
    return net, params, inputs, targets


def load_average() -> List[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def compiled_steps(net, params, inputs, targets, keys):
    """AOT-compile each (rule, mode) step; returns callables and trace/compile seconds."""
    out: Dict[str, Any] = {}
    for key in keys:
        rule, mode = key.split("/")
        trainer = online.make_trainer(rule, net, step_loss, optax.adamax(0.01), mode)
        state = trainer.init(params)
        t0 = time.perf_counter()
        lowered = trainer.step.lower(state, inputs, targets)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        out[key] = {"call": compiled, "state": state, "trace_s": t1 - t0, "compile_s": t2 - t1}
    return out


def time_interleaved(steps: Dict[str, Any], inputs, targets, rounds: int) -> Dict[str, List[float]]:
    for entry in steps.values():  # warm-up call
        jax.block_until_ready(entry["call"](entry["state"], inputs, targets))
    times: Dict[str, List[float]] = {key: [] for key in steps}
    for _ in range(rounds):
        for key, entry in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(entry["call"](entry["state"], inputs, targets))
            times[key].append(time.perf_counter() - start)
    return times


def main(argv: List[str]) -> Dict[str, Any]:
    args = parse_args(argv)
    load_start = load_average()
    started = time.time()
    net, params, inputs, targets = workload(args, args.batch)
    keys = [f"{rule}/{mode}" for mode in args.modes for rule in args.rules]
    steps = compiled_steps(net, params, inputs, targets, keys)
    times = time_interleaved(steps, inputs, targets, args.rounds)
    reference = times.get(f"bptt/{args.modes[0]}", times.get("bptt/deferred"))
    results: Dict[str, Any] = {}
    for key, values in times.items():
        mode = key.split("/")[1]
        ref = times.get(f"bptt/{mode}", reference)
        ratios = [v / r for v, r in zip(values, ref)] if ref else []
        results[key] = {
            "median_s": round(float(np.median(values)), 5),
            "min_s": round(float(np.min(values)), 5),
            "max_s": round(float(np.max(values)), 5),
            "ratio_to_bptt_deferred": round(float(np.median(
                [v / r for v, r in zip(values, reference)])), 2) if reference else None,
            "ratio_to_bptt_same_mode": round(float(np.median(ratios)), 2) if ratios else None,
            "trace_s": round(steps[key]["trace_s"], 2),
            "compile_s": round(steps[key]["compile_s"], 2),
            "trace_plus_compile_s": round(steps[key]["trace_s"] + steps[key]["compile_s"], 2),
        }
    small: Dict[str, Any] = {}
    if args.small_batch and "rtrl" in args.rules:
        net_s, params_s, inputs_s, targets_s = workload(args, args.small_batch)
        small_steps = compiled_steps(net_s, params_s, inputs_s, targets_s,
                                     ["bptt/deferred", "rtrl/deferred"])
        small_times = time_interleaved(small_steps, inputs_s, targets_s, args.rounds)
        small = {key: {"median_s": round(float(np.median(v)), 5)} for key, v in small_times.items()}
        ratios = [a / b for a, b in zip(small_times["rtrl/deferred"], small_times["bptt/deferred"])]
        small["rtrl/deferred"]["ratio_to_bptt"] = round(float(np.median(ratios)), 2)
    load_end = load_average()
    loaded = bool(load_start and load_start[0] > (os.cpu_count() or 1))
    result = {
        "workload": f"randman network 100 -> LIF({args.hidden}) -> LIF(10), T = "
                    f"{args.time_steps}, batch {args.batch}: one training step (gradient + "
                    "adamax update)",
        "note": ("measured on a shared, loaded machine (load average above the core count): "
                 "ratios inside one process are indicative, absolute times are not final")
        if loaded else "load average below the core count at the start",
        "rounds": args.rounds,
        "results": results,
        f"batch_{args.small_batch}": small,
        "command": "python benchmarks/online_rules.py " + " ".join(argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "jax": jax.__version__, "device": str(jax.devices()[0]),
                    "load_average_start": load_start, "load_average_end": load_end},
        "wall_time_s": round(time.time() - started, 1),
    }
    if not args.tiny:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
