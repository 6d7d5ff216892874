"""Yin-Yang with exact spike times and gradients through the analytic next-spike kernel.

Network: 5 input spikes (latency-coded x, y, 1-x, 1-y and a bias spike) -> 120 LIF -> 3 LIF,
time-to-first-spike classification (the earliest output neuron wins), trained with the
first-spike cross-entropy plus the early-spike regulariser of Wunderlich & Pehle
(``jaxsnn.loss.wunderlich_pehle_loss``). Gradients: ``jax.grad`` through the exact event
simulation (``gradient="analytic"``). With ``tau_mem = 2 tau_syn`` (default) every spike time is
the closed-form root of a quadratic; ``--tau-mem`` selects other ratios (Lambert W for equal
time constants, the root solver otherwise). Each neuron spikes at most once (refractory for the
whole window), so capacities equal layer sizes and overflow is impossible. Silent neurons are
revived by weight bumping (``jaxsnn.optim.bump_silent``, chained after Adam). All seeds train
at once (``vmap`` over seeds, one jitted ``lax.scan`` per epoch).

Run ``python examples/yinyang_analytic.py`` (defaults: 5 seeds); the result JSON and plots go
to ``outputs/`` (untracked); ``--record`` writes the committed
``benchmarks/results/yinyang_analytic.json`` and ``examples/figures/yinyang_analytic_*.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np
import optax

if str(Path(__file__).resolve().parent) not in sys.path:  # examples/_common.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import jaxsnn  # noqa: E402
from jaxsnn import encode, loss, plot  # noqa: E402
from jaxsnn.data import epoch_batches, load_yinyang  # noqa: E402
from jaxsnn.event import LIF  # noqa: E402
from jaxsnn.initializers import normal  # noqa: E402
from jaxsnn.optim import bump_silent, silent_fraction  # noqa: E402
from jaxsnn.spikes import first_spike_times  # noqa: E402

NAME = "yinyang_analytic"
FIGURES = ("training", "spike_times")
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
    """The optimiser, one training epoch and the evaluation, for one seed (vmapped by the caller)."""

    def first_times(params, spikes):
        _, out, recording = apply(params, spikes)
        return first_spike_times(out, 3), recording

    batched = jax.vmap(first_times, in_axes=(None, 0))

    def objective(params, spikes, labels):
        times, recording = batched(params, spikes)
        value = loss.wunderlich_pehle_loss(
            times, labels, tau_0=args.tau_0 * TAU_SYN, tau_1=args.tau_1 * TAU_SYN, alpha=args.alpha,
            t_missing=T_MAX,
        )
        hidden_first = jax.vmap(first_spike_times, in_axes=(0, None))(recording[0].spikes, args.hidden)
        # What weight bumping raises: a hidden neuron silent for the whole batch fully, an output
        # neuron in proportion to the fraction of the batch in which it stayed silent.
        silent = [(silent_fraction(hidden_first) >= 1.0).astype(times.dtype), silent_fraction(times)]
        return value, silent

    optimizer = optax.chain(
        optax.clip_by_global_norm(args.clip),
        optax.adam(optax.exponential_decay(args.lr, transition_steps=1, decay_rate=args.lr_decay)),
        bump_silent(args.bump),  # after Adam, whose normalisation would shrink the bump
    )

    def train_epoch(params, opt_state, key, data):
        (spikes, labels), _ = epoch_batches(data, args.batch_size, key)

        def step(carry, batch):
            params, opt_state = carry
            (value, silent), grads = jax.value_and_grad(objective, has_aux=True)(params, *batch)
            updates, opt_state = optimizer.update(grads, opt_state, params, silent=silent)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, opt_state), values = jax.lax.scan(step, (params, opt_state), (spikes, labels))
        return params, opt_state, jnp.mean(values)

    def evaluate(params, spikes, labels):
        times, recording = batched(params, spikes)
        overflow = jnp.any(jnp.stack([r.overflow for r in recording]))
        return loss.first_spike_accuracy(times, labels), times, overflow

    return optimizer, train_epoch, evaluate


def train(args, data: Dict[str, Any], progress: bool) -> Dict[str, Any]:
    """Train every seed in parallel; per-epoch training loss and test accuracy per seed."""
    init, apply = build(args)
    optimizer, train_epoch, evaluate = make_functions(apply, args)
    seeds = _common.seed_list(args)
    params = _common.init_seeds(init, seeds, (5,))
    opt_state = jax.vmap(optimizer.init)(params)
    keys = jnp.stack([jax.random.PRNGKey(1000 + seed) for seed in seeds])
    run_epoch = jax.jit(jax.vmap(train_epoch, in_axes=(0, 0, 0, None)))
    evaluate_seeds = jax.jit(jax.vmap(evaluate, in_axes=(0, None, None)))
    history = {"train_loss": [], "test_acc": []}
    bar = _common.progress(range(args.epochs), progress, "yinyang analytic", unit="epoch")
    start = time.perf_counter()
    for _ in bar:
        keys, epoch_keys = _common.split_keys(keys)
        params, opt_state, mean_loss = run_epoch(params, opt_state, epoch_keys, data["train"])
        test_acc = evaluate_seeds(params, *data["test"])[0]
        history["train_loss"].append(np.asarray(mean_loss).tolist())
        history["test_acc"].append(np.asarray(test_acc).tolist())
        _common.set_postfix(bar, loss=f"{float(np.mean(mean_loss)):.3f}", test=f"{float(np.mean(test_acc)):.3f}")
    wall = time.perf_counter() - start
    test_acc, test_times, overflow = evaluate_seeds(params, *data["test"])
    return {
        "seeds": seeds,
        "history": history,
        "test_accuracy": np.asarray(test_acc).tolist(),
        "train_accuracy": np.asarray(evaluate_seeds(params, *data["train"])[0]).tolist(),
        "overflow": np.asarray(overflow).tolist(),
        "test_times": np.asarray(test_times),
        "wall_time_s": wall,
    }


def save_plots(result: Dict[str, Any], test_set, paths: _common.OutputPaths) -> list:
    """Training loss and test accuracy over epochs; the best seed's predictions and spike times."""
    plt = _common.pyplot()
    saved = []
    history = result["history"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    plot.training_curves({"training loss": history["train_loss"]}, axes[0])
    plot.training_curves({"test accuracy": history["test_acc"]}, axes[1])
    axes[0].set(ylabel="training loss", yscale="log")
    axes[1].set(ylabel="test accuracy", ylim=(0.5, 1.0))
    fig.suptitle(f"{len(result['seeds'])} seeds: mean and min-max band", fontsize=9)
    fig.tight_layout()
    saved.append(_common.save_figure(fig, paths.figure(NAME, "training"), dpi=90))

    best = int(np.argmax(result["test_accuracy"]))
    times = result["test_times"][best]
    features, labels = np.asarray(test_set.inputs), np.asarray(test_set.labels)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    predicted = np.asarray(loss.predict_first_spike(times))
    plot.prediction_scatter(features[:, :2], predicted, labels, axes[0], n_classes=3)
    axes[0].set(title=f"predicted class (test, seed {result['seeds'][best]})", xlabel="x", ylabel="y")
    axes[0].legend(fontsize=7, loc="upper right")
    plot.first_spike_scatter(features[:, :2], times[np.arange(len(labels)), labels], axes[1])
    axes[1].set(title="first-spike time of the label neuron", xlabel="x")
    fig.tight_layout()
    saved.append(_common.save_figure(fig, paths.figure(NAME, "spike_times"), dpi=90))
    return saved


def main(argv=None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_arguments(parser, seeds=5, epochs=40)
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
    args = parser.parse_args(argv)
    paths = _common.output_paths(NAME, args.out_dir, args.record)

    train_set = load_yinyang("train", directory=args.data_dir)
    test_set = load_yinyang("test", directory=args.data_dir)
    n_train = args.train_samples or len(train_set.labels)
    data = {
        "train": (encode_inputs(jnp.asarray(train_set.inputs[:n_train], jnp.float32)),
                  jnp.asarray(train_set.labels[:n_train], jnp.int32)),
        "test": (encode_inputs(jnp.asarray(test_set.inputs, jnp.float32)), jnp.asarray(test_set.labels, jnp.int32)),
    }
    result = train(args, data, progress=not args.no_progress)
    accuracy = np.asarray(result["test_accuracy"])
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("out_dir", "record", "no_plots", "no_progress")}
    record = {
        "name": NAME,
        "description": "Yin-Yang, 5 -> 120 LIF -> 3 LIF, first-spike loss, jax.grad through exact spike times",
        "test_accuracy_mean": float(accuracy.mean()),
        "test_accuracy_std": float(accuracy.std()),
        "test_accuracy_per_seed": accuracy.tolist(),
        "train_accuracy_per_seed": result["train_accuracy"],
        "overflow_per_seed": result["overflow"],
        "seeds": result["seeds"],
        "epochs": args.epochs,
        "test_split": "published Yin-Yang test split (1000 samples, seed 40)",
        "wall_time_s": result["wall_time_s"],
        "config": settings,
        "kernel": jaxsnn.event.resolve_kernel("auto", jaxsnn.event.LIFParameters(tau_syn=TAU_SYN, tau_mem=args.tau_mem)),
        "history": result["history"],
        "command": _common.command("yinyang_analytic.py", argv),
        "machine": _common.machine(),
    }
    print(f"test accuracy {_common.accuracy_text(accuracy)}, {result['wall_time_s']:.0f} s")
    print("wrote", _common.write_record(paths, record))
    if not args.no_plots:
        for path in save_plots(result, test_set, paths):
            print("saved", path)
    return record


if __name__ == "__main__":
    main()
