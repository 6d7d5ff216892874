"""Multi-spike feed-forward network: the multi-spike parallel forward vs the event scan.

A Randman-like time-coded network, 100 -> 128 -> 10 LIF (latency-coded Randman features, one
spike per input neuron; hidden and output neurons spike several times). For each forward
algorithm (``scan``, ``multispike`` in both layers, ``auto``: each layer by the rule of
``jaxsnn.event.plan.choose_feedforward``) it times, in one process and interleaved, the jitted
batched forward pass and forward + backward (``jax.grad`` of a loss of the output spike times
w.r.t. both weight matrices, the analytic gradient), and checks that every algorithm gives the
scan's spikes and gradients. Writes ``results/multispike_forward.json`` with the load average.

    python benchmarks/multispike_forward.py [--batch 32] [--repeats 7] [--x64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxsnn
from jaxsnn.data.randman import randman
from jaxsnn.encode import latency_spikes
from jaxsnn.event import LIFParameters, simulate
from jaxsnn.event.plan import choose_feedforward, multispike_rounds, resolve_plan

RESULTS = Path(__file__).resolve().parent / "results"
N_IN, N_HIDDEN, N_OUT = 100, 128, 10
TAU_SYN, TAU_MEM = 5e-3, 1e-2
T_MAX = 8 * TAU_SYN
T_REF = TAU_SYN
HIDDEN_CAPACITY = 6 * N_HIDDEN
OUT_CAPACITY = 6 * N_OUT
ALGORITHMS = ("scan", "multispike", "auto")


def build(batch: int, seed: int, dtype):
    key_data, key_w1, key_w2 = jax.random.split(jax.random.PRNGKey(seed), 3)
    data = randman(key_data, n_classes=10, samples_per_class=max(1, batch // 10 + 1), embedding_dim=N_IN)
    inputs = latency_spikes(data.inputs[:batch], t_min=0.0, t_max=0.75 * T_MAX)
    inputs = jaxsnn.Spikes(inputs.time.astype(dtype), inputs.idx)
    w1 = (0.18 + 0.24 * jax.random.normal(key_w1, (N_IN, N_HIDDEN))).astype(dtype)
    w2 = (0.0525 + 0.075 * jax.random.normal(key_w2, (N_HIDDEN, N_OUT))).astype(dtype)
    return inputs, (w1, w2)


def network(params, inputs, algorithm):
    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=TAU_MEM, v_th=1.0, v_reset=0.0, t_ref=T_REF)

    def one(spikes):
        hidden = simulate(params[0], spikes, neuron, capacity=HIDDEN_CAPACITY, t_max=T_MAX, algorithm=algorithm)
        out = simulate(params[1], hidden.spikes, neuron, capacity=OUT_CAPACITY, t_max=T_MAX, algorithm=algorithm)
        return hidden.spikes, out.spikes, hidden.overflow | out.overflow

    return jax.vmap(one)(inputs)


def loss(params, inputs, algorithm):
    _, out, _ = network(params, inputs, algorithm)
    valid = out.idx >= 0
    return jnp.sum(jnp.where(valid, jnp.sin(out.time / TAU_SYN) * (1.0 + 0.1 * out.idx), 0.0))


def median_time(fn, *args, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--x64", action="store_true", help="float64 (default float32)")
    ap.add_argument("--out", default=str(RESULTS / "multispike_forward.json"))
    args = ap.parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.float64 if args.x64 else jnp.float32
    inputs, params = build(args.batch, args.seed, dtype)
    load_before = os.getloadavg()

    forward = jax.jit(network, static_argnums=2)
    grad = jax.jit(jax.value_and_grad(loss), static_argnums=2)
    outputs, gradients, compile_s = {}, {}, {}
    for algorithm in ALGORITHMS:
        start = time.perf_counter()
        outputs[algorithm] = jax.block_until_ready(forward(params, inputs, algorithm))
        gradients[algorithm] = jax.block_until_ready(grad(params, inputs, algorithm))
        compile_s[algorithm] = time.perf_counter() - start

    hidden, out, overflow = outputs["scan"]
    assert not bool(jnp.any(overflow)), "capacity too small for this network"
    hidden_counts = np.asarray(hidden.count())
    per_neuron = np.stack([np.bincount(np.asarray(hidden.idx[b][hidden.idx[b] >= 0]), minlength=N_HIDDEN)
                           for b in range(args.batch)])
    checks = {}
    for algorithm in ALGORITHMS[1:]:
        h, o, _ = outputs[algorithm]
        same_idx = bool(np.array_equal(np.asarray(h.idx), np.asarray(hidden.idx))
                        and np.array_equal(np.asarray(o.idx), np.asarray(out.idx)))
        # Per neuron (sorted by index, then time), so that near-simultaneous spikes of two
        # neurons that round into the other order still pair up.
        time_diff, same_counts = 0.0, True
        for got, want in ((h, hidden), (o, out)):
            for b in range(args.batch):
                gi, gt = np.asarray(got.idx[b]), np.asarray(got.time[b])
                wi, wt = np.asarray(want.idx[b]), np.asarray(want.time[b])
                if not np.array_equal(np.sort(gi), np.sort(wi)):
                    same_counts = False
                    continue
                g_order, w_order = np.lexsort((gt, gi)), np.lexsort((wt, wi))
                mask = wi[w_order] >= 0
                if mask.any():
                    time_diff = max(time_diff, float(np.max(np.abs(gt[g_order][mask] - wt[w_order][mask]))))
        grad_rel = max(
            float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
            for a, b in zip(gradients[algorithm][1], gradients["scan"][1])
        )
        checks[algorithm] = dict(same_spike_indices_in_order=same_idx, same_spike_counts_per_neuron=same_counts,
                                 max_time_difference_per_neuron_s=time_diff,
                                 max_gradient_relative_difference=grad_rel)

    timings = {algorithm: {"forward": [], "forward_backward": []} for algorithm in ALGORITHMS}
    for _ in range(args.repeats):  # interleaved, so a change of machine load hits all alike
        for algorithm in ALGORITHMS:
            timings[algorithm]["forward"].append(median_time(forward, params, inputs, algorithm, repeats=1)[0])
            timings[algorithm]["forward_backward"].append(median_time(grad, params, inputs, algorithm, repeats=1)[0])
    load_after = os.getloadavg()
    medians = {a: {k: float(np.median(v)) for k, v in t.items()} for a, t in timings.items()}
    speedup = {a: {k: medians["scan"][k] / medians[a][k] for k in medians[a]} for a in ALGORITHMS[1:]}

    neuron = LIFParameters(tau_syn=TAU_SYN, tau_mem=TAU_MEM, t_ref=T_REF)
    plan = resolve_plan(neuron, T_MAX)
    auto_choice = {
        "hidden": choose_feedforward(plan.spike_bound, inputs.time.shape[1], HIDDEN_CAPACITY, N_HIDDEN, plan.kernel),
        "output": choose_feedforward(plan.spike_bound, HIDDEN_CAPACITY, OUT_CAPACITY, N_OUT, plan.kernel),
    }
    record = dict(
        benchmark="multispike_forward",
        network=f"{N_IN} -> {N_HIDDEN} -> {N_OUT} LIF, Randman latency-coded inputs (one spike per input neuron)",
        neuron=dict(tau_syn=TAU_SYN, tau_mem=TAU_MEM, v_th=1.0, v_reset=0.0, t_ref=T_REF, t_max=T_MAX),
        kernel=plan.kernel,
        dtype=str(jnp.dtype(dtype)),
        batch=args.batch,
        capacities=dict(hidden=HIDDEN_CAPACITY, output=OUT_CAPACITY),
        rounds=dict(hidden=multispike_rounds(plan.spike_bound, HIDDEN_CAPACITY),
                    output=multispike_rounds(plan.spike_bound, OUT_CAPACITY)),
        auto_choice=auto_choice,
        spikes=dict(hidden_per_sample_mean=float(hidden_counts.mean()),
                    output_per_sample_mean=float(np.asarray(out.count()).mean()),
                    hidden_max_per_neuron=int(per_neuron.max()),
                    hidden_neurons_spiking_more_than_once_fraction=float(np.mean(per_neuron > 1))),
        checks_vs_scan=checks,
        seconds_median=medians,
        seconds_all=timings,
        speedup_vs_scan=speedup,
        first_call_seconds_including_compilation=compile_s,
        repeats=args.repeats,
        load_average_before=load_before,
        load_average_after=load_after,
        cpu_count=os.cpu_count(),
        device=str(jax.devices()[0]),
        jax=jax.__version__,
        python=platform.python_version(),
        note="one process, algorithms interleaved per repeat; medians; the machine's load average is recorded",
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(dict(speedup_vs_scan=speedup, seconds_median=medians, checks=checks,
                          spikes=record["spikes"], auto=auto_choice, load=load_after), indent=1))


if __name__ == "__main__":
    main()
