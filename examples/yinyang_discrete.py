"""Train a discrete-time spiking network on Yin-Yang with surrogate gradients (BPTT).

Network: 5 inputs (x, y, 1-x, 1-y and a bias) -> LIF(120) -> LI(3). Inputs are latency
encoded (one spike per feature on the time grid, the bias spikes at t = 0) or current encoded
(each feature is a constant input current for the whole window). The loss is the
cross-entropy of the readout membranes' maxima over time; the prediction is the readout with
the largest maximum. All seeds train at once (``jax.vmap`` over the seed axis), each epoch is
one jitted ``lax.scan`` over its batches.

Usage::

    python examples/yinyang_discrete.py                   # 5 seeds, defaults below
    python examples/yinyang_discrete.py --seeds 1 --epochs 5 --no-plots   # quick look

Writes ``outputs/yinyang_discrete.json`` (test accuracy mean/std over seeds, per-seed values,
settings, wall time, command, machine) and ``outputs/yinyang_discrete_*.png`` (untracked);
``--record`` writes the committed ``benchmarks/results/yinyang_discrete.json`` and
``examples/figures/yinyang_discrete_*.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

if str(Path(__file__).resolve().parent) not in sys.path:  # examples/_common.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import jaxsnn  # noqa: E402
from jaxsnn import data, encode, loss, plot  # noqa: E402
from jaxsnn.discrete import LI, LIF  # noqa: E402

NAME = "yinyang_discrete"
FIGURES = ("training", "raster")


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_arguments(parser, seeds=5, epochs=100)
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


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    paths = _common.output_paths(NAME, args.out_dir, args.record)
    net = build_network(args)
    train = data.load_yinyang("train", directory=args.data_dir)
    validation = data.load_yinyang("validation", directory=args.data_dir)
    test = data.load_yinyang("test", directory=args.data_dir)
    n_train = args.train_samples or len(train.labels)
    train_x = encode_inputs(train.inputs[:n_train], args)
    train_y = jnp.asarray(train.labels[:n_train], jnp.int32)
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

    seeds = _common.seed_list(args)
    keys = jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])
    init_keys, shuffle_keys = jax.vmap(lambda k: tuple(jax.random.split(k)))(keys)
    params = jax.vmap(lambda k: net.init(k, (args.steps, 5))[1])(init_keys)
    opt_state = jax.vmap(optimizer.init)(params)
    epoch_fn = jax.jit(jax.vmap(train_epoch))

    history = {"loss": [], "rate": [], "val_acc": [], "test_acc": []}
    start = time.perf_counter()
    progress = _common.progress(range(args.epochs), not args.no_progress, NAME, unit="epoch")
    for epoch in progress:
        epoch_keys = jax.vmap(lambda k: jax.random.fold_in(k, epoch))(shuffle_keys)
        params, opt_state, ep_loss, ep_rate, val_acc, test_acc = epoch_fn(
            params, opt_state, epoch_keys
        )
        for name, value in zip(history, (ep_loss, ep_rate, val_acc, test_acc)):
            history[name].append(np.asarray(value, np.float64))
        _common.set_postfix(
            progress,
            loss=f"{float(np.mean(ep_loss)):.3f}",
            val=f"{float(np.mean(val_acc)):.3f}",
            test=f"{float(np.mean(test_acc)):.3f}",
        )
    jax.block_until_ready(params)
    wall = time.perf_counter() - start
    history = {name: np.stack(values) for name, values in history.items()}  # (epochs, seeds)

    final_test = history["test_acc"][-1]
    final_val = history["val_acc"][-1]
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("out_dir", "record", "no_plots", "no_progress")}
    result = {
        "name": NAME,
        "test_accuracy_mean": float(np.mean(final_test)),
        "test_accuracy_std": float(np.std(final_test)),
        "test_accuracy_per_seed": [float(a) for a in final_test],
        "validation_accuracy_mean": float(np.mean(final_val)),
        "validation_accuracy_per_seed": [float(a) for a in final_val],
        "final_train_loss_per_seed": [float(a) for a in history["loss"][-1]],
        "hidden_spike_rate_per_step": float(np.mean(history["rate"][-1])),
        "seeds": seeds,
        "epochs": args.epochs,
        "settings": settings,
        "network": f"5 -> LIF({args.hidden}) -> LI(3)",
        "wall_time_s": wall,
        "history": {name: values.tolist() for name, values in history.items()},
        "command": _common.command("yinyang_discrete.py", argv),
        "machine": _common.machine(),
    }
    print(f"test accuracy {_common.accuracy_text(final_test)}; wall {wall:.0f} s")
    print("wrote", _common.write_record(paths, result))
    if not args.no_plots:
        for path in save_figures(args, net, params, history, test_x, test_y, paths):
            print("saved", path)
    return result


def save_figures(args, net, params, history, test_x, test_y, paths: _common.OutputPaths) -> list:
    """Loss/accuracy curves and, for the first seed, spikes and readouts of one sample per class."""
    plt = _common.pyplot()
    saved = []
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    plot.training_curves({"training loss": history["loss"]}, ax_loss)
    plot.training_curves({"test accuracy": history["test_acc"]}, ax_acc, scale=100)
    ax_loss.set(ylabel="training loss", yscale="log", title="max-membrane cross-entropy")
    ax_acc.set(ylabel="test accuracy [%]", ylim=(60, 100), title="Yin-Yang test split (min-max band)")
    ax_acc.axhline(97, color="gray", ls="--", lw=0.8)
    fig.tight_layout()
    saved.append(_common.save_figure(fig, paths.figure(NAME, "training"), dpi=100))

    first = _common.unstack(params, 0)
    samples = [int(np.flatnonzero(np.asarray(test_y) == label)[0]) for label in range(3)]
    fig, axes = plt.subplots(3, 3, figsize=(10, 6.5), sharex=True,
                             gridspec_kw={"height_ratios": [1, 3, 2]})
    for column, index in enumerate(samples):
        _, membrane, recording = net.apply(first, test_x[index])
        plot.spike_raster(test_x[index], axes[0, column], dt=args.dt, c="tab:red")
        plot.spike_raster(recording[0].spikes, axes[1, column], dt=args.dt, s=8)
        plot.membrane_traces(membrane, axes[2, column], dt=args.dt,
                             labels=[f"readout {k}" for k in range(3)])
        axes[0, column].set(title=f"test sample {index} (class {int(test_y[index])})", ylabel="input",
                            xlabel="")
        axes[1, column].set(ylabel="hidden neuron", xlabel="")
        axes[2, column].set(ylabel="readout membrane")
    axes[2, 0].legend(fontsize=7)
    fig.tight_layout()
    saved.append(_common.save_figure(fig, paths.figure(NAME, "raster"), dpi=90))
    return saved


if __name__ == "__main__":
    main()
