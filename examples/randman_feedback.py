"""Randman classification with a discrete-time network that has skip and feedback connections.

Data: Randman (Zenke & Vogels 2021), 10 classes, 1-d manifolds embedded in 40 dimensions,
latency coded on a 1 ms grid (one spike per input neuron in [0, 40 ms], 50 steps); 80 % of the
samples train, 20 % test.

Two networks with the same neurons (``tau_syn = 5 ms``, ``tau_mem = 10 ms``), trained with BPTT
and the SuperSpike surrogate on the max-membrane cross-entropy, from the same seeds::

    graph:  input ─> h1 ─> h2 ─> out          plain:  input ─> h1 ─> h2 ─> out
                     ^ │    │     ^                    serial(LIF(64), LIF(64), LI(10))
                     │ └────┼─────┘  skip h1 -> out
                     └──────┘        feedback h2 -> h1 (one step later)

``graph`` is ``jaxsnn.graph.discrete_graph``: h1 and h2 form a cycle and are advanced together
one step at a time in one ``lax.scan``; the readout (off the cycle) runs on the whole window.
Both start as the same function: the graph's feed-forward weights are the plain network's
initial weights and its feedback and skip weights start at zero (they learn from there). The
reported accuracy is on the test part with the last epoch's parameters, 5 seeds.

Run ``python examples/randman_feedback.py``; the result goes to ``outputs/randman_feedback.json``
(untracked); ``--record`` writes the committed ``benchmarks/results/randman_feedback.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsnn
from jaxsnn import data, encode, loss
from jaxsnn.discrete import LI, LIF
from jaxsnn.graph import discrete_graph

if str(Path(__file__).resolve().parent) not in sys.path:  # examples/_common.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

NAME = "randman_feedback"
VARIANTS = ("plain", "graph")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--samples-per-class", type=int, default=200)
    parser.add_argument("--embedding", type=int, default=10)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--dt", type=float, default=1e-3)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", default=None,
                        help="result JSON (default: outputs/randman_feedback.json, untracked)")
    parser.add_argument("--record", action="store_true",
                        help="write the committed record benchmarks/results/randman_feedback.json (overrides --out)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.record or args.out is None:
        args.out = str(_common.output_paths(NAME, record=args.record).result)
    return args


def build(variant: str, args) -> jaxsnn.Layer:
    neuron = dict(tau_syn=5e-3, tau_mem=1e-2, dt=args.dt)
    h1 = LIF(args.hidden, weight_scale=10.0, **neuron)
    h2 = LIF(args.hidden, weight_scale=5.0, **neuron)
    out = LI(args.classes, **neuron)
    if variant == "plain":
        return jaxsnn.serial(h1, h2, out)
    return discrete_graph(
        {"h1": h1, "h2": h2, "out": out},
        [("input", "h1"), ("h1", "h2"), ("h2", "h1"), ("h1", "out"), ("h2", "out")],
        output="out",
    )


def run(argv) -> Dict[str, Any]:
    args = parse_args(argv)
    dataset = data.randman(jax.random.PRNGKey(0), n_classes=args.classes, samples_per_class=args.samples_per_class,
                           embedding_dim=args.embedding, manifold_dim=1, alpha=2.0)
    inputs = encode.latency_dense(jnp.asarray(dataset.inputs, jnp.float32), args.steps, args.dt,
                                  t_max=(args.steps - 10) * args.dt)
    labels = jnp.asarray(dataset.labels, jnp.int32)
    n_train = int(0.8 * labels.shape[0])
    train_x, train_y, test_x, test_y = inputs[:n_train], labels[:n_train], inputs[n_train:], labels[n_train:]
    optimizer = optax.adam(args.lr)
    seeds = list(range(args.seeds))
    results: Dict[str, Any] = {}
    load_start = os.getloadavg()
    plain = build("plain", args)

    def initial(seed):
        return plain.init(jax.random.PRNGKey(seed), (args.steps, args.embedding))[1]

    def with_zero_extras(params):
        # h1 reads [input, h2] and out reads [h1, h2] (edge order): the new rows start at zero.
        w1, w2, w_out = (p["weight"] for p in params)
        zeros = lambda w, rows: jnp.zeros(w.shape[:-2] + (rows, w.shape[-1]), w.dtype)  # noqa: E731
        return [{"weight": jnp.concatenate([w1, zeros(w1, args.hidden)], axis=-2)}, {"weight": w2},
                {"weight": jnp.concatenate([zeros(w_out, args.hidden), w_out], axis=-2)}]

    for variant in VARIANTS:
        net = build(variant, args)

        def forward(params, x):
            _, membrane, recording = jax.vmap(lambda sample: net.apply(params, sample))(x)
            return membrane, jnp.mean(recording[0].spikes), jnp.mean(recording[1].spikes)

        def batch_loss(params, x, y):
            membrane, rate1, rate2 = forward(params, x)
            return loss.max_membrane_cross_entropy(membrane, y), (rate1, rate2)

        def epoch(params, opt_state, key):
            (xs, ys), _ = data.epoch_batches((train_x, train_y), args.batch_size, key)

            def step(carry, batch):
                params, opt_state = carry
                (value, rates), grads = jax.value_and_grad(batch_loss, has_aux=True)(params, *batch)
                updates, opt_state = optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), (value, rates)

            (params, opt_state), (losses, rates) = jax.lax.scan(step, (params, opt_state), (xs, ys))
            membrane, _, _ = forward(params, test_x)
            return params, opt_state, jnp.mean(losses), loss.max_membrane_accuracy(membrane, test_y), rates

        epoch_fn = jax.jit(jax.vmap(epoch))
        params = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[initial(s) for s in seeds])
        if variant == "graph":
            params = with_zero_extras(params)
        opt_state = jax.vmap(optimizer.init)(params)
        keys = jnp.stack([jax.random.PRNGKey(1000 + s) for s in seeds])
        history = {"train_loss": [], "test_acc": []}
        epochs = range(args.epochs)
        if not args.no_progress:
            from tqdm import tqdm

            epochs = tqdm(epochs, desc=f"randman {variant}", unit="epoch")
        start = time.perf_counter()
        rates = None
        for e in epochs:
            epoch_keys = jax.vmap(lambda k: jax.random.fold_in(k, e))(keys)
            params, opt_state, train_loss, test_acc, rates = epoch_fn(params, opt_state, epoch_keys)
            history["train_loss"].append(np.asarray(train_loss).tolist())
            history["test_acc"].append(np.asarray(test_acc).tolist())
            if hasattr(epochs, "set_postfix"):
                epochs.set_postfix(loss=f"{np.mean(train_loss):.3f}", test=f"{np.mean(test_acc):.3f}")
        wall = time.perf_counter() - start
        accuracy = np.asarray(history["test_acc"][-1])
        results[variant] = {
            "test_accuracy_mean": float(accuracy.mean()),
            "test_accuracy_std": float(accuracy.std()),
            "test_accuracy_per_seed": accuracy.tolist(),
            "hidden_spike_rates_last_epoch": [float(np.mean(rates[0])), float(np.mean(rates[1]))],
            "parameters": int(sum(np.prod(leaf.shape[1:]) for leaf in jax.tree_util.tree_leaves(params))),
            "wall_time_s": wall,
            "history": history,
        }
        print(f"{variant:6s}: test accuracy {100 * accuracy.mean():.2f} +- {100 * accuracy.std():.2f} % "
              f"(per seed {np.round(100 * accuracy, 1).tolist()}), {wall:.0f} s")
    record = {
        "name": "randman_feedback",
        "networks": {
            "plain": f"serial(LIF({args.hidden}), LIF({args.hidden}), LI({args.classes}))",
            "graph": "discrete_graph: input->h1->h2->out, feedback h2->h1 (delay 1), skip h1->out",
        },
        "variants": results,
        "graph_minus_plain_mean": results["graph"]["test_accuracy_mean"] - results["plain"]["test_accuracy_mean"],
        "seeds": seeds,
        "epochs": args.epochs,
        "settings": vars(args),
        "command": _common.command("randman_feedback.py", argv),
        "machine": {**_common.machine(), "load_average_start": load_start, "load_average_end": os.getloadavg()},
    }
    if not args.no_save:
        _common.write_record(_common.OutputPaths(Path(args.out), Path(args.out).parent), record)
    return record


if __name__ == "__main__":
    run(sys.argv[1:])
