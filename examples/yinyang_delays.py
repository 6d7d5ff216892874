"""Yin-Yang with exact event-based LIF neurons and learnable axonal delays (EventProp).

Network: 5 input spikes (x, y, 1-x, 1-y latency coded into [0, 10 ms], bias spike at 0)
-> ``Delay`` (one delay per input neuron) -> 120 LIF -> ``Delay`` (one per hidden neuron)
-> 3 LIF; ``tau_syn = 5 ms``, ``tau_mem = 10 ms``, every neuron spikes at most once in the
20 ms window, the class is the output neuron that spikes first.

Two variants are trained from the same initial weights and data order, per seed:

* ``fixed``: the delays stay at 0 (the network is the plain ``serial(LIF, LIF)``);
* ``learned``: the delays (clipped to [0, ``--max-delay``]) are trained with the weights.

The delay gradient is exact: a delay ``d_j`` shifts every spike of neuron ``j``, so
``d loss / d d_j`` is the sum of EventProp's input-time gradients of those spikes
(``jaxsnn.event.Delay``). Loss as in ``examples/yinyang_eventprop.py``: first-spike
cross-entropy (temperature 0.125 ms) + 0.01 x (correct spike time / t_max) + 2 x first-spike
mse (targets 4 ms / 6 ms, in units of tau_mem); silent neurons get their weights bumped;
Adam with an exponentially decaying learning rate, weights clipped to a global norm of 1; the
delays have their own Adam (``--delay-lr``, seconds per step). The reported accuracy is on the
published test split with the last epoch's parameters.

Run ``python examples/yinyang_delays.py`` (5 seeds); the result goes to ``outputs/yinyang_delays.json``
(untracked); ``--record`` writes the committed ``benchmarks/results/yinyang_delays.json``.
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
from jaxsnn import spikes as spikes_lib
from jaxsnn.data import epoch_batches, load_yinyang
from jaxsnn.encode import latency_spikes
from jaxsnn.event import LIF, Delay
from jaxsnn.initializers import normal
from jaxsnn.loss import first_spike_cross_entropy, first_spike_mse

if str(Path(__file__).resolve().parent) not in sys.path:  # examples/_common.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

NAME = "yinyang_delays"
N_CLASSES = 3
VARIANTS = ("fixed", "learned")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=120)
    parser.add_argument("--lr", type=float, default=2e-2)
    parser.add_argument("--lr-final", type=float, default=0.01, help="final lr / initial lr (weights and delays)")
    parser.add_argument("--delay-lr", type=float, default=2e-4, help="Adam step size of the delays (s)")
    parser.add_argument("--max-delay", type=float, default=1e-2, help="delays are clipped to [0, max-delay] (s)")
    parser.add_argument("--train-samples", type=int, default=0, help="0 = the whole training split")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None,
                        help="result JSON (default: outputs/yinyang_delays.json, untracked)")
    parser.add_argument("--record", action="store_true",
                        help="write the committed record benchmarks/results/yinyang_delays.json (overrides --out)")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.record or args.out is None:
        args.out = str(_common.output_paths(NAME, record=args.record).result)
    return args


T_LATE, T_MAX, TAU_SYN, TAU_MEM = 1e-2, 2e-2, 5e-3, 1e-2
TEMPERATURE, EARLY, MSE_WEIGHT, T_CORRECT, T_WRONG, BUMP, CLIP = 1.25e-4, 0.01, 2.0, 4e-3, 6e-3, 1e-2, 1.0


def build_network(args) -> jaxsnn.Layer:
    common = dict(tau_syn=TAU_SYN, tau_mem=TAU_MEM, t_max=T_MAX, t_ref=T_MAX)
    return jaxsnn.serial(
        Delay(max_delay=args.max_delay),
        LIF(args.hidden, capacity=args.hidden + 8, weight_init=normal(1.6, 3.0), **common),
        Delay(max_delay=args.max_delay),
        LIF(N_CLASSES, capacity=N_CLASSES, weight_init=normal(0.8, 0.5), **common),
    )


def run(argv) -> Dict[str, Any]:
    args = parse_args(argv)
    net = build_network(args)
    train_set = load_yinyang("train", directory=args.data_dir)
    test_set = load_yinyang("test", directory=args.data_dir)
    n_train = args.train_samples or len(train_set.labels)

    def encode(points):
        return latency_spikes(jnp.asarray(points, jnp.float32), t_min=0.0, t_max=T_LATE, bias_time=0.0)

    train_x, train_y = encode(train_set.inputs[:n_train]), jnp.asarray(train_set.labels[:n_train], jnp.int32)
    test_x, test_y = encode(test_set.inputs), jnp.asarray(test_set.labels, jnp.int32)
    n_batches = n_train // args.batch_size

    def sample_loss(params, sample, label):
        _, out, recording = net.apply(params, sample)
        first = spikes_lib.first_spike_times(out, N_CLASSES)
        ce = first_spike_cross_entropy(first, label, temperature=TEMPERATURE, t_missing=T_MAX)
        safe = jnp.where(jnp.isfinite(first), first, T_MAX)
        targets = jnp.where(jnp.arange(N_CLASSES) == label, T_CORRECT, T_WRONG)
        mse = first_spike_mse(first, targets, t_missing=T_MAX) / TAU_MEM**2
        return ce + EARLY * safe[label] / T_MAX + MSE_WEIGHT * mse, (first, recording[1].spikes)

    def batch_loss(params, samples, labels):
        losses, (first, hidden) = jax.vmap(sample_loss, in_axes=(None, 0, 0))(params, samples, labels)
        correct = (jnp.argmin(first, axis=-1) == labels) & jnp.isfinite(jnp.min(first, axis=-1))
        return jnp.mean(losses), (jnp.mean(correct), first, hidden)

    decay = dict(transition_steps=n_batches * args.epochs, decay_rate=args.lr_final)
    weight_opt = optax.chain(optax.clip_by_global_norm(CLIP), optax.adam(optax.exponential_decay(args.lr, **decay)))

    def optimizer(learn_delays: bool):
        delay_opt = optax.adam(optax.exponential_decay(args.delay_lr, **decay)) if learn_delays else optax.set_to_zero()
        return optax.multi_transform({"weights": weight_opt, "delays": delay_opt}, label_params)

    def label_params(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "delays" if getattr(path[-1], "key", None) == "delay" else "weights", params)

    def bump_silent(params, first, hidden, labels):
        # Silent neurons get no spike-time gradient: raise their input weights directly.
        is_label = labels[:, None] == jnp.arange(N_CLASSES)
        silent_label = jnp.mean(~jnp.isfinite(first) & is_label, axis=0)
        counts = jax.vmap(lambda s: spikes_lib.spike_counts(s, args.hidden))(hidden)
        silent_hidden = jnp.all(counts == 0, axis=0).astype(first.dtype)
        params = list(params)
        params[1] = dict(params[1], weight=params[1]["weight"] + BUMP * silent_hidden)
        params[3] = dict(params[3], weight=params[3]["weight"] + BUMP * silent_label)
        return params

    def make_epoch(opt):
        def epoch(params, opt_state, key):
            (samples, labels), _ = epoch_batches((train_x, train_y), args.batch_size, key)

            def step(carry, batch):
                params, opt_state = carry
                (loss, (acc, first, hidden)), grads = jax.value_and_grad(batch_loss, has_aux=True)(params, *batch)
                updates, opt_state = opt.update(grads, opt_state, params)
                params = bump_silent(optax.apply_updates(params, updates), first, hidden, batch[1])
                return (params, opt_state), (loss, acc)

            (params, opt_state), (loss, acc) = jax.lax.scan(step, (params, opt_state), (samples, labels))
            test_acc = batch_loss(params, test_x, test_y)[1][0]
            return params, opt_state, jnp.mean(loss), jnp.mean(acc), test_acc

        return jax.jit(jax.vmap(epoch))

    seeds = list(range(args.seeds))
    initial = jax.tree_util.tree_map(
        lambda *leaves: jnp.stack(leaves), *[net.init(jax.random.PRNGKey(s), (5,))[1] for s in seeds])
    results: Dict[str, Any] = {}
    load_start = os.getloadavg()
    for variant in VARIANTS:
        opt = optimizer(variant == "learned")
        epoch_fn = make_epoch(opt)
        params, opt_state = initial, jax.vmap(opt.init)(initial)
        keys = jnp.stack([jax.random.PRNGKey(1000 + s) for s in seeds])
        history = {"train_loss": [], "train_acc": [], "test_acc": []}
        epochs = range(args.epochs)
        if not args.no_progress:
            from tqdm import tqdm

            epochs = tqdm(epochs, desc=f"delays {variant}", unit="epoch")
        start = time.perf_counter()
        for epoch in epochs:
            epoch_keys = jax.vmap(lambda k: jax.random.fold_in(k, epoch))(keys)
            params, opt_state, loss, acc, test_acc = epoch_fn(params, opt_state, epoch_keys)
            for name, value in zip(history, (loss, acc, test_acc)):
                history[name].append(np.asarray(value).tolist())
            if hasattr(epochs, "set_postfix"):
                epochs.set_postfix(train=f"{np.mean(acc):.3f}", test=f"{np.mean(test_acc):.4f}")
        wall = time.perf_counter() - start
        accuracy = np.asarray(history["test_acc"][-1])
        delays_in = np.asarray(params[0]["delay"])
        delays_hidden = np.asarray(params[2]["delay"])
        results[variant] = {
            "test_accuracy_mean": float(accuracy.mean()),
            "test_accuracy_std": float(accuracy.std()),
            "test_accuracy_per_seed": accuracy.tolist(),
            "input_delays_ms_per_seed": np.round(1e3 * delays_in, 4).tolist(),
            "hidden_delay_ms_mean": float(1e3 * delays_hidden.mean()),
            "hidden_delay_ms_max": float(1e3 * delays_hidden.max()),
            "hidden_delays_nonzero_fraction": float(np.mean(delays_hidden > 0)),
            "wall_time_s": wall,
            "history": history,
        }
        print(f"{variant:8s}: test accuracy {100 * accuracy.mean():.2f} +- {100 * accuracy.std():.2f} % "
              f"(per seed {np.round(100 * accuracy, 2).tolist()}), {wall:.0f} s")
    record = {
        "name": "yinyang_delays",
        "network": f"5 -> Delay -> LIF({args.hidden}) -> Delay -> LIF(3), EventProp",
        "variants": results,
        "learned_minus_fixed_mean": results["learned"]["test_accuracy_mean"] - results["fixed"]["test_accuracy_mean"],
        "seeds": seeds,
        "epochs": args.epochs,
        "settings": vars(args),
        "command": _common.command("yinyang_delays.py", argv),
        "machine": {**_common.machine(), "load_average_start": load_start, "load_average_end": os.getloadavg()},
    }
    if not args.no_save:
        _common.write_record(_common.OutputPaths(Path(args.out), Path(args.out).parent), record)
    return record


if __name__ == "__main__":
    run(sys.argv[1:])
