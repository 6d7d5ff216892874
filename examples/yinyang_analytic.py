"""Yin-Yang with exact spike times and gradients through the analytic next-spike kernel.

Network: 5 input spikes (latency-coded x, y, 1-x, 1-y and a bias spike) -> 120 LIF -> 3 LIF,
time-to-first-spike classification (the earliest output neuron wins), trained with the
first-spike cross-entropy plus the early-spike regulariser of Wunderlich & Pehle
(``jaxsnn.loss.wunderlich_pehle_loss``). Gradients: ``jax.grad`` through the exact event
simulation (``gradient="analytic"``). With ``tau_mem = 2 tau_syn`` (default) every spike time is
the closed-form root of a quadratic; ``--tau-mem`` selects other ratios (Lambert W for equal
time constants, the root solver otherwise). Each neuron spikes at most once (refractory for the
whole window), so capacities equal layer sizes and overflow is impossible.

Run ``python examples/yinyang_analytic.py`` (defaults: 5 seeds); results go to
``benchmarks/results/yinyang_analytic.json`` and plots to ``examples/figures/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsnn
from jaxsnn import encode, loss
from jaxsnn.data import epoch_batches, load_yinyang
from jaxsnn.event import LIF
from jaxsnn.initializers import normal
from jaxsnn.spikes import first_spike_times

REPO = Path(__file__).resolve().parents[1]

TAU_SYN = 5e-3
T_EARLY = 0.15 * TAU_SYN  # latency window of the inputs
T_LATE = 2.0 * TAU_SYN
T_BIAS = 0.9 * TAU_SYN
T_MAX = 6.0 * TAU_SYN


def build(args):
    """The network and its parameters' initialisation (LIF neurons spike at most once)."""
    common = dict(
        tau_syn=TAU_SYN, tau_mem=args.tau_mem, v_th=1.0, t_ref=2 * T_MAX, t_max=T_MAX,
        gradient="analytic",
    )
    hidden = LIF(
        args.hidden, capacity=args.hidden, weight_init=normal(args.hidden_std, args.hidden_mean), **common
    )
    output = LIF(3, capacity=3, weight_init=normal(args.output_std, args.output_mean), **common)
    return jaxsnn.serial(hidden, output)


def encode_inputs(features):
    return encode.latency_spikes(features, t_min=T_EARLY, t_max=T_LATE, bias_time=T_BIAS)


def make_functions(apply, args):
    def first_times(params, spikes):
        _, out, recording = apply(params, spikes)
        return first_spike_times(out, 3), recording

    batched = jax.vmap(first_times, in_axes=(None, 0))

    def objective(params, spikes, labels):
        times, recording = batched(params, spikes)
        value = loss._wunderlich_pehle(
            times, labels, args.tau_0 * TAU_SYN, args.tau_1 * TAU_SYN, args.alpha, T_MAX
        )
        silent = [
            jnp.mean(jnp.isinf(jax.vmap(first_spike_times, in_axes=(0, None))(r.spikes, size)), axis=0)
            for r, size in zip(recording, (args.hidden, 3))
        ]
        return value, silent

    def bump(params, silent):
        # Silent neurons get no gradient from spike-time losses; raising their input weights
        # (weight bumping, Goeltz et al. 2021) brings them back. Hidden neurons are bumped only
        # when silent for the whole batch, output neurons in proportion to their silence.
        hidden_dead = (silent[0] >= 1.0).astype(jnp.float32)
        scales = (hidden_dead, silent[1])
        return [
            {**layer, "weight": layer["weight"] + args.bump * scale[None, :]}
            for layer, scale in zip(params, scales)
        ]

    optimizer = optax.chain(
        optax.clip_by_global_norm(args.clip),
        optax.adam(optax.exponential_decay(args.lr, transition_steps=1, decay_rate=args.lr_decay)),
    )

    @jax.jit
    def train_epoch(params, opt_state, key, data):
        (spikes, labels), _ = epoch_batches(data, args.batch_size, key)

        def step(carry, batch):
            params, opt_state = carry
            (value, silent), grads = jax.value_and_grad(objective, has_aux=True)(params, *batch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = bump(optax.apply_updates(params, updates), silent)
            return (params, opt_state), value

        (params, opt_state), values = jax.lax.scan(step, (params, opt_state), (spikes, labels))
        return params, opt_state, jnp.mean(values)

    @jax.jit
    def evaluate(params, spikes, labels):
        times, recording = batched(params, spikes)
        predicted = jnp.argmin(times, axis=-1)
        silent = jnp.all(~jnp.isfinite(times), axis=-1)
        accuracy = jnp.mean((predicted == labels) & ~silent)
        overflow = jnp.any(jnp.stack([r.overflow for r in recording]))
        return accuracy, times, overflow

    return optimizer, train_epoch, evaluate


def run_seed(seed, args, data, progress):
    init, apply = build(args)
    _, params = init(jax.random.PRNGKey(seed), (5,))
    optimizer, train_epoch, evaluate = make_functions(apply, args)
    opt_state = optimizer.init(params)
    key = jax.random.PRNGKey(1000 + seed)
    history = {"loss": [], "test_accuracy": []}
    for epoch in range(args.epochs):
        key, sub = jax.random.split(key)
        params, opt_state, mean_loss = train_epoch(params, opt_state, sub, data["train"])
        history["loss"].append(float(mean_loss))
        if epoch % args.eval_every == 0 or epoch == args.epochs - 1:
            test_acc = float(evaluate(params, *data["test"])[0])
            history["test_accuracy"].append((epoch + 1, test_acc))
            progress.set_postfix(seed=seed, loss=f"{float(mean_loss):.3f}", test=f"{test_acc:.3f}")
        progress.update(1)
    test_acc, test_times, overflow = evaluate(params, *data["test"])
    history["final_train_accuracy"] = float(evaluate(params, *data["train"])[0])
    return float(test_acc), bool(overflow), history, params, np.asarray(test_times)


def plot(results, data_test, best, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = REPO / "examples" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for seed, res in results.items():
        axes[0].plot(np.arange(1, len(res["loss"]) + 1), res["loss"], label=f"seed {seed}")
        epochs, accs = zip(*res["test_accuracy"])
        axes[1].plot(epochs, accs, label=f"seed {seed}")
    axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="test accuracy", ylim=(0.5, 1.0))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(figures / "yinyang_analytic_training.png", dpi=90)
    plt.close(fig)

    features, labels = data_test
    times = best["times"]
    predicted = np.argmin(times, axis=-1)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    axes[0].scatter(features[:, 0], features[:, 1], c=predicted, s=6, cmap="viridis")
    wrong = predicted != labels
    axes[0].scatter(features[wrong, 0], features[wrong, 1], marker="x", c="red", s=14, label="error")
    axes[0].set(title="predicted class (test)", xlabel="x", ylabel="y")
    axes[0].legend(fontsize=7, loc="upper right")
    finite = np.where(np.isfinite(times), times, np.nan) / 1e-3
    correct_time = finite[np.arange(len(labels)), labels]
    sc = axes[1].scatter(features[:, 0], features[:, 1], c=correct_time, s=6, cmap="magma")
    fig.colorbar(sc, ax=axes[1], label="label neuron spike time (ms)")
    axes[1].set(title="first-spike time of the label neuron", xlabel="x")
    fig.tight_layout()
    fig.savefig(figures / "yinyang_analytic_spike_times.png", dpi=90)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0..n-1)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=120)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--lr-decay", type=float, default=0.999, help="per-step decay factor")
    parser.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip")
    parser.add_argument("--tau-mem", type=float, default=2 * TAU_SYN)
    parser.add_argument("--tau-0", type=float, default=0.1, help="softmax time scale / tau_syn")
    parser.add_argument("--tau-1", type=float, default=1.28, help="regulariser time scale / tau_syn")
    parser.add_argument("--alpha", type=float, default=3e-3)
    parser.add_argument("--hidden-mean", type=float, default=1.5)
    parser.add_argument("--hidden-std", type=float, default=1.5)
    parser.add_argument("--output-mean", type=float, default=0.3)
    parser.add_argument("--output-std", type=float, default=0.5)
    parser.add_argument("--bump", type=float, default=5e-3, help="weight bump of silent neurons")
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "yinyang_analytic.json")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    train, test = load_yinyang("train"), load_yinyang("test")
    data = {
        "train": (encode_inputs(jnp.asarray(train.inputs, jnp.float32)), jnp.asarray(train.labels, jnp.int32)),
        "test": (encode_inputs(jnp.asarray(test.inputs, jnp.float32)), jnp.asarray(test.labels, jnp.int32)),
    }
    start = time.time()
    results, accuracies, best = {}, [], None
    with tqdm(total=args.seeds * args.epochs, desc="yinyang analytic") as progress:
        for seed in range(args.seeds):
            seed_start = time.time()
            acc, overflow, history, params, times = run_seed(seed, args, data, progress)
            history["wall_s"] = time.time() - seed_start
            history["overflow"] = overflow
            history["final_test_accuracy"] = acc
            results[seed] = history
            accuracies.append(acc)
            if best is None or acc > best["accuracy"]:
                best = {"accuracy": acc, "times": times}
            tqdm.write(f"seed {seed}: test accuracy {acc:.4f} ({history['wall_s']:.0f} s)")
    wall = time.time() - start
    summary = {
        "name": "yinyang_analytic",
        "description": "Yin-Yang, 5 -> 120 LIF -> 3 LIF, first-spike loss, jax.grad through exact spike times",
        "test_accuracy_mean": float(np.mean(accuracies)),
        "test_accuracy_std": float(np.std(accuracies)),
        "test_accuracy_per_seed": accuracies,
        "seeds": list(range(args.seeds)),
        "epochs": args.epochs,
        "test_split": "published Yin-Yang test split (1000 samples, seed 40)",
        "wall_time_s": wall,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "kernel": jaxsnn.event.resolve_kernel("auto", jaxsnn.event.LIFParameters(tau_syn=TAU_SYN, tau_mem=args.tau_mem)),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
        "per_seed": {str(k): v for k, v in results.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=1))
    print(f"test accuracy {summary['test_accuracy_mean']:.4f} +- {summary['test_accuracy_std']:.4f} "
          f"over {args.seeds} seeds, {wall:.0f} s -> {args.output}")
    if not args.no_plots:
        plot(results, (np.asarray(test.inputs), np.asarray(test.labels)), best, args)


if __name__ == "__main__":
    main()
