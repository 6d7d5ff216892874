"""Train a discrete-time spiking network on Yin-Yang with surrogate gradients (BPTT).

Network: 5 inputs (x, y, 1-x, 1-y and a bias) -> LIF(120) -> LI(3). Inputs are latency
encoded (one spike per feature on the time grid, the bias spikes at t = 0) or current encoded
(each feature is a constant input current for the whole window). The loss is the
cross-entropy of the readout membranes' maxima over time; the prediction is the readout with
the largest maximum. All seeds train at once (``jax.vmap`` over the seed axis), each epoch is
one jitted ``lax.scan`` over its batches.

Usage::

    python examples/yinyang_discrete.py                   # 5 seeds, defaults below
    python examples/yinyang_discrete.py --seeds 1 --epochs 5 --no-save   # quick look

Writes ``benchmarks/results/yinyang_discrete.json`` (test accuracy mean/std over seeds, per-seed
values, settings, wall time, command, machine) and ``examples/figures/yinyang_discrete_*.png``.
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

import jaxsnn
from jaxsnn import data, encode, loss
from jaxsnn.discrete import LI, LIF

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seeds", type=int, default=5, help="number of seeds (trained in parallel)"
    )
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=5e-3, help="peak Adam learning rate")
    parser.add_argument(
        "--lr-end",
        type=float,
        default=0.02,
        help="final lr as a fraction of the peak (cosine decay)",
    )
    parser.add_argument("--hidden", type=int, default=120)
    parser.add_argument("--encoding", choices=("latency", "current"), default="latency")
    parser.add_argument("--steps", type=int, default=100, help="time steps per sample")
    parser.add_argument("--dt", type=float, default=5e-4, help="time step [s]")
    parser.add_argument(
        "--t-max", type=float, default=2.5e-2, help="latest input spike time [s] (latency)"
    )
    parser.add_argument("--tau-syn", type=float, default=5e-3)
    parser.add_argument("--tau-mem", type=float, default=1e-2)
    parser.add_argument("--hidden-scale", type=float, default=6.0, help="hidden weight init scale")
    parser.add_argument("--hidden-mean", type=float, default=0.0, help="hidden weight init mean")
    parser.add_argument(
        "--readout-scale", type=float, default=2.0, help="readout weight init scale"
    )
    parser.add_argument(
        "--unroll", type=int, default=1, help="time steps per scan iteration (speed only)"
    )
    parser.add_argument("--readout-mean", type=float, default=0.1, help="readout weight init mean")
    parser.add_argument("--surrogate-slope", type=float, default=10.0)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "yinyang_discrete.json"
    )
    parser.add_argument("--figures", type=Path, default=REPO / "examples" / "figures")
    parser.add_argument("--no-save", action="store_true", help="write neither JSON nor figures")
    parser.add_argument("--no-progress", action="store_true", help="disable the tqdm progress bar")
    return parser.parse_args(argv)


def encode_inputs(points: np.ndarray, args: argparse.Namespace) -> jax.Array:
    """``(n, 4)`` Yin-Yang features -> ``(n, steps, 5)`` network inputs (bias included)."""
    points = jnp.asarray(points, jnp.float32)
    if args.encoding == "latency":
        return encode.latency_dense(
            points, args.steps, args.dt, t_min=0.0, t_max=args.t_max, bias_time=0.0
        )
    features = jnp.concatenate([points, jnp.ones((points.shape[0], 1), points.dtype)], axis=1)
    return jnp.broadcast_to(features[:, None, :], (points.shape[0], args.steps, 5))


def build_network(args: argparse.Namespace) -> jaxsnn.Layer:
    neuron = dict(tau_syn=args.tau_syn, tau_mem=args.tau_mem, dt=args.dt, unroll=args.unroll)
    return jaxsnn.serial(
        LIF(
            args.hidden,
            **neuron,
            surrogate=jaxsnn.discrete.surrogate.superspike(args.surrogate_slope),
            weight_scale=args.hidden_scale,
            weight_mean=args.hidden_mean,
        ),
        LI(3, **neuron, weight_scale=args.readout_scale, weight_mean=args.readout_mean),
    )


def main(argv: List[str]) -> Dict[str, Any]:
    args = parse_args(argv)
    net = build_network(args)
    train = data.load_yinyang("train")
    validation = data.load_yinyang("validation")
    test = data.load_yinyang("test")
    train_x, train_y = encode_inputs(train.inputs, args), jnp.asarray(train.labels, jnp.int32)
    val_x, val_y = encode_inputs(validation.inputs, args), jnp.asarray(validation.labels, jnp.int32)
    test_x, test_y = encode_inputs(test.inputs, args), jnp.asarray(test.labels, jnp.int32)
    n_batches = data.num_batches(train_x.shape[0], args.batch_size, drop_last=True)

    schedule = optax.cosine_decay_schedule(
        args.lr, decay_steps=args.epochs * n_batches, alpha=args.lr_end
    )
    optimizer = optax.adam(schedule)

    def run(params, inputs):
        """Batched forward: readout membranes (batch, steps, 3) and hidden spikes."""
        _, membrane, recording = jax.vmap(lambda x: net.apply(params, x))(inputs)
        return membrane, recording[0].spikes

    def batch_loss(params, inputs, labels):
        membrane, spikes = run(params, inputs)
        return loss.max_membrane_cross_entropy(membrane, labels), spikes.mean()

    def train_step(state, batch):
        params, opt_state = state
        inputs, labels = batch
        (value, rate), grads = jax.value_and_grad(batch_loss, has_aux=True)(params, inputs, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (value, rate)

    def evaluate(params, inputs, labels):
        membrane, spikes = run(params, inputs)
        return loss.max_membrane_accuracy(membrane, labels), spikes.mean()

    def train_epoch(params, opt_state, key):
        (inputs, labels), _ = data.epoch_batches((train_x, train_y), args.batch_size, key)
        (params, opt_state), (losses, rates) = jax.lax.scan(
            train_step, (params, opt_state), (inputs, labels)
        )
        test_acc, _ = evaluate(params, test_x, test_y)
        val_acc, _ = evaluate(params, val_x, val_y)
        return params, opt_state, losses.mean(), rates.mean(), val_acc, test_acc

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    keys = jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])
    init_keys, shuffle_keys = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
    params = jax.vmap(lambda k: net.init(k, (args.steps, 5))[1])(init_keys)
    opt_state = jax.vmap(optimizer.init)(params)
    epoch_fn = jax.jit(jax.vmap(train_epoch))

    history = {"loss": [], "rate": [], "val_acc": [], "test_acc": []}
    start = time.perf_counter()
    epochs = range(args.epochs)
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(epochs, desc="yinyang_discrete", unit="epoch")
        epochs = progress
    for epoch in epochs:
        epoch_keys = jax.vmap(lambda k: jax.random.fold_in(k, epoch))(shuffle_keys)
        params, opt_state, ep_loss, ep_rate, val_acc, test_acc = epoch_fn(
            params, opt_state, epoch_keys
        )
        for name, value in zip(history, (ep_loss, ep_rate, val_acc, test_acc)):
            history[name].append(np.asarray(value, np.float64))
        if progress is not None:
            progress.set_postfix(
                loss=f"{float(np.mean(ep_loss)):.3f}",
                val=f"{float(np.mean(val_acc)):.3f}",
                test=f"{float(np.mean(test_acc)):.3f}",
            )
    jax.block_until_ready(params)
    wall = time.perf_counter() - start
    history = {name: np.stack(values) for name, values in history.items()}  # (epochs, seeds)

    final_test = history["test_acc"][-1]
    final_val = history["val_acc"][-1]
    result = {
        "example": "yinyang_discrete",
        "test_accuracy_mean": float(np.mean(final_test)),
        "test_accuracy_std": float(np.std(final_test)),
        "test_accuracy_per_seed": [float(a) for a in final_test],
        "validation_accuracy_mean": float(np.mean(final_val)),
        "validation_accuracy_per_seed": [float(a) for a in final_val],
        "final_train_loss_per_seed": [float(a) for a in history["loss"][-1]],
        "hidden_spike_rate_per_step": float(np.mean(history["rate"][-1])),
        "seeds": seeds,
        "epochs": args.epochs,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "network": "5 -> LIF(120) -> LI(3)".replace("120", str(args.hidden)),
        "wall_time_s": wall,
        "command": "python " + " ".join([os.path.relpath(__file__, REPO)] + argv),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
        },
    }
    print(
        f"test accuracy {100 * result['test_accuracy_mean']:.2f} +- "
        f"{100 * result['test_accuracy_std']:.2f} % over {len(seeds)} seeds "
        f"(per seed: {', '.join(f'{100 * a:.1f}' for a in final_test)}); wall {wall:.0f} s"
    )
    if not args.no_save:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        save_figures(args, net, params, history, test_x, test_y)
    return result


def save_figures(args, net, params, history, test_x, test_y) -> None:
    """Loss/accuracy curves and a spike raster of the first seed on a few test samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.figures.mkdir(parents=True, exist_ok=True)
    epochs = np.arange(1, history["loss"].shape[0] + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    for seed in range(history["loss"].shape[1]):
        ax_loss.plot(epochs, history["loss"][:, seed], lw=0.8)
        ax_acc.plot(epochs, 100 * history["test_acc"][:, seed], lw=0.8)
    ax_loss.set(
        xlabel="epoch", ylabel="training loss", yscale="log", title="max-membrane cross-entropy"
    )
    ax_acc.set(
        xlabel="epoch", ylabel="test accuracy [%]", ylim=(60, 100), title="Yin-Yang test split"
    )
    ax_acc.axhline(97, color="gray", ls="--", lw=0.8)
    fig.tight_layout()
    fig.savefig(args.figures / "yinyang_discrete_training.png", dpi=100)
    plt.close(fig)

    first = jax.tree_util.tree_map(lambda leaf: leaf[0], params)
    samples = [int(np.flatnonzero(np.asarray(test_y) == label)[0]) for label in range(3)]
    fig, axes = plt.subplots(2, 3, figsize=(10, 5), sharex=True)
    time_ms = np.arange(args.steps) * args.dt * 1e3
    for column, index in enumerate(samples):
        _, membrane, recording = net.apply(first, test_x[index])
        spikes = np.asarray(recording[0].spikes)
        steps, neurons = np.nonzero(spikes)
        axes[0, column].scatter(time_ms[steps], neurons, s=2, c="k", marker="|")
        inputs_t, inputs_j = np.nonzero(np.asarray(test_x[index]))
        axes[0, column].scatter(time_ms[inputs_t], -3 - 2 * inputs_j, s=8, c="tab:red", marker="|")
        axes[0, column].set(
            title=f"test sample {index} (class {int(test_y[index])})", ylabel="hidden neuron"
        )
        for k in range(3):
            axes[1, column].plot(time_ms, np.asarray(membrane[:, k]), label=f"readout {k}")
        axes[1, column].set(xlabel="time [ms]", ylabel="readout membrane")
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.figures / "yinyang_discrete_raster.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
