"""Yin-Yang trained with the chip in the loop, on the emulated BrainScaleS-2 style chip.

The forward pass of every training step runs on the emulated chip (``jaxsnn.hardware.Emulator``
with its default, realistic non-idealities: 6-bit weights, fixed-pattern and trial-to-trial
threshold noise, time-constant mismatch, spike-time jitter, a 125 MHz time-stamp clock at a
1000x time scale, spike loss). The measured spikes of both layers are injected into the
software network through ``external`` (``jaxsnn.hardware.inject``), so the gradient is EventProp
evaluated at the measured spike times. As on the chip, every input line is duplicated
(``--copies``) so that 6-bit synapses reach the drive the network needs.

For comparison the same network is trained purely in software (ideal model) and then deployed
to the same emulated chip. Test accuracy is measured on the emulated chip for both.

Network: 5 inputs (x, y, 1-x, 1-y latency coded, plus a bias spike), each duplicated, -> 120 LIF
-> 3 LIF; ``tau_syn = 5 ms``, ``tau_mem = 10 ms``, inputs coded into [0, 10 ms], a 20 ms window
and one spike per neuron; loss (``--loss``): ``hybrid`` (default), the first-spike cross-entropy
plus 10x the squared error of the output first-spike times to target times (4 ms correct, 6 ms
wrong), which keeps wrong neurons from falling silent (see ``examples/yinyang_eventprop.py``);
``mse`` or ``ce`` alone. Silent label neurons are bumped and gradients clipped. Seeds are trained
in parallel (``vmap``), an epoch is one jitted ``lax.scan``. The emulator is a pure JAX backend,
so it is called directly inside the jitted step (``Emulator.run_jax``); a physical chip would
be called through ``jaxsnn.hardware.measure`` (``jax.pure_callback``) instead, with the same
result (tested in ``tests/hardware``).

Run ``python examples/yinyang_hardware.py`` (defaults: 5 seeds); results go to
``benchmarks/results/yinyang_hardware.json`` and plots to ``examples/figures/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsnn
from jaxsnn import spikes as spikes_lib
from jaxsnn.data import epoch_batches, load_yinyang
from jaxsnn.encode import latency_spikes
from jaxsnn.event import LIF, LIFParameters
from jaxsnn.hardware import (
    EmulatedLayer,
    Emulator,
    EmulatorConfig,
    duplicate_inputs,
    inject,
)
from jaxsnn.initializers import normal
from jaxsnn.loss import first_spike_cross_entropy, first_spike_mse

REPO = Path(__file__).resolve().parents[1]
N_CLASSES = 3
N_FEATURES = 5  # x, y, 1-x, 1-y, bias


class Config(NamedTuple):
    """Everything that defines one training run (model times in seconds)."""

    seeds: int = 5
    epochs: int = 20
    batch_size: int = 32
    hidden: int = 120
    copies: int = 5  # physical synapse rows per logical input
    tau_syn: float = 5e-3
    tau_mem: float = 1e-2
    t_late: float = 1e-2
    bias_time: float = 0.0
    t_max: float = 2e-2
    t_ref: float = 2e-2  # a whole window: every neuron spikes at most once
    hidden_capacity: int = 120
    output_capacity: int = 3
    lr: float = 2e-2
    lr_decay: float = 0.794  # per epoch: 20 epochs end at lr / 100
    clip: float = 1.0  # global gradient-norm clip (0 = off)
    bump: float = 1e-2  # weight bumping of silent label neurons
    loss: str = "hybrid"  # "hybrid", "mse" or "ce" (as in examples/yinyang_eventprop.py)
    mse_weight: float = 10.0
    t_correct: float = 4e-3
    t_wrong: float = 6e-3
    temperature: float = 1.25e-4  # as in examples/yinyang_eventprop.py
    early_weight: float = 0.01
    hidden_mean: float = 3.0  # of the logical (summed over copies) weight
    hidden_std: float = 1.6
    output_mean: float = 0.5
    output_std: float = 0.8
    chip_seed: int = 0
    train_samples: int = 0
    first_seed: int = 0


def encode(inputs: np.ndarray, config: Config) -> jaxsnn.Spikes:
    """Latency-code Yin-Yang features plus a bias spike, each line duplicated ``copies`` times."""
    spikes = latency_spikes(jnp.asarray(inputs, jnp.float32), t_min=0.0, t_max=config.t_late, bias_time=config.bias_time)
    return duplicate_inputs(spikes, N_FEATURES, config.copies)


def build_network(config: Config) -> jaxsnn.Layer:
    """``serial(LIF(hidden), LIF(3))`` with EventProp gradients (the software twin of the chip)."""
    common = dict(tau_syn=config.tau_syn, tau_mem=config.tau_mem, t_max=config.t_max, t_ref=config.t_ref,
                  gradient="eventprop")
    return jaxsnn.serial(
        LIF(config.hidden, capacity=config.hidden_capacity, 
            weight_init=normal(config.hidden_std / np.sqrt(config.copies), config.hidden_mean / config.copies), **common),
        LIF(N_CLASSES, capacity=config.output_capacity, 
            weight_init=normal(config.output_std, config.output_mean), **common),
    )


def build_emulator(config: Config, chip: EmulatorConfig) -> Emulator:
    """The emulated chip running the same two layers."""
    neuron = LIFParameters(tau_syn=config.tau_syn, tau_mem=config.tau_mem, v_th=1.0, t_ref=config.t_ref)
    return Emulator(
        [
            EmulatedLayer(config.hidden, neuron, config.hidden_capacity, config.t_max),
            EmulatedLayer(N_CLASSES, neuron, config.output_capacity, config.t_max),
        ],
        chip,
        chip_seed=config.chip_seed,
    )


def make_functions(config: Config, emulator: Emulator):
    """Loss, one training epoch (in the loop or in software) and evaluation on chip/software."""
    init_net, apply_net = build_network(config)
    network = jaxsnn.Layer(init_net, apply_net)

    if config.loss not in ("hybrid", "mse", "ce"):
        raise ValueError(f"loss must be 'hybrid', 'mse' or 'ce', got {config.loss!r}")

    def loss_from_first(first, labels):
        correct = (jnp.argmin(first, axis=-1) == labels) & jnp.isfinite(jnp.min(first, axis=-1))
        targets = jnp.where(jnp.arange(N_CLASSES) == labels[:, None], config.t_correct, config.t_wrong)
        mse = first_spike_mse(first, targets, t_missing=config.t_max) / config.tau_mem**2
        ce = first_spike_cross_entropy(first, labels, temperature=config.temperature, t_missing=config.t_max)
        safe = jnp.where(jnp.isfinite(first), first, config.t_max)
        early = jnp.take_along_axis(safe, labels[:, None], axis=1)[:, 0] / config.t_max
        ce = ce + config.early_weight * jnp.mean(early)
        loss = {"mse": mse, "ce": ce, "hybrid": ce + config.mse_weight * mse}[config.loss]
        return loss, (jnp.mean(correct), first)

    def first_times(out_spikes):
        return jax.vmap(lambda s: spikes_lib.first_spike_times(s, N_CLASSES))(out_spikes)

    def software_loss(params, samples, labels):
        _, out, _ = jax.vmap(lambda x: apply_net(params, x))(samples)
        return loss_from_first(first_times(out), labels)

    def in_the_loop_loss(params, samples, labels, trial):
        # forward on the chip (data, no gradient), backward: EventProp at the measured times
        measured = jax.lax.stop_gradient(emulator.run_jax(jax.lax.stop_gradient(params), samples, trial))
        out, _ = inject(network, params, samples, measured)
        return loss_from_first(first_times(out), labels)

    def init(seed: int):
        _, params = init_net(jax.random.PRNGKey(seed), (N_FEATURES * config.copies,))
        return params

    def optimizer(n_batches: int):
        opt = optax.adam(optax.exponential_decay(config.lr, transition_steps=n_batches, decay_rate=config.lr_decay))
        return optax.chain(optax.clip_by_global_norm(config.clip), opt) if config.clip else opt

    def bump_silent_labels(params, first, labels):
        # weight bumping (Goeltz et al. 2021): an output neuron that stayed silent where it was
        # the label gets no gradient; raise its input weights directly
        silent = jnp.mean(~jnp.isfinite(first) & (labels[:, None] == jnp.arange(N_CLASSES)), axis=0)
        bumped = list(params)
        bumped[-1] = dict(params[-1], weight=params[-1]["weight"] + config.bump * silent)
        return type(params)(bumped)

    def train_epoch(params, opt_state, samples, labels, first_trial, n_batches: int, hardware: bool):
        opt = optimizer(n_batches)

        def step(carry, batch):
            params, opt_state = carry
            batch_samples, batch_labels, trial = batch
            if hardware:
                loss_fn = lambda p: in_the_loop_loss(p, batch_samples, batch_labels, trial)  # noqa: E731
            else:
                loss_fn = lambda p: software_loss(p, batch_samples, batch_labels)  # noqa: E731
            (loss, (acc, first)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
            updates, new_state = opt.update(grads, opt_state, params)
            # the copies of an input line get the same gradient, so Adam moves their sum
            # ``copies`` times as far: scale the input layer's steps back to the logical rate
            updates = [jax.tree_util.tree_map(lambda u: u / config.copies, updates[0])] + list(updates[1:])
            new_params = bump_silent_labels(optax.apply_updates(params, updates), first, batch_labels)
            # never apply a non-finite update: keep the parameters (and optimiser state) as they were
            params = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), new_params, params)
            opt_state = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), new_state, opt_state)
            return (params, opt_state), (loss, acc, ~finite)

        trials = first_trial + jnp.arange(samples.time.shape[0], dtype=jnp.uint32)
        (params, opt_state), (loss, acc, skipped) = jax.lax.scan(step, (params, opt_state), (samples, labels, trials))
        return params, opt_state, jnp.mean(loss), jnp.mean(acc), jnp.sum(skipped)

    def evaluate_chip(params, samples, labels, trial):
        measured = emulator.run_jax(params, samples, trial)
        loss, (acc, _) = loss_from_first(first_times(measured[-1]), labels)
        return loss, acc

    def evaluate_software(params, samples, labels):
        loss, (acc, _) = software_loss(params, samples, labels)
        return loss, acc

    return init, optimizer, train_epoch, evaluate_chip, evaluate_software, apply_net


def train(config: Config, chip: EmulatorConfig, hardware: bool, progress: bool = True,
          data_dir: Optional[str] = None) -> Dict[str, Any]:
    """Train ``config.seeds`` networks in parallel, in the loop (``hardware``) or in software.

    Returns:
        Per-epoch curves (lists over epochs of per-seed lists), final per-seed test accuracies
        on the emulated chip and in software, parameters and wall time.
    """
    train_set = load_yinyang("train", directory=data_dir)
    test_set = load_yinyang("test", directory=data_dir)
    n_train = config.train_samples or len(train_set.labels)
    train_inputs = encode(train_set.inputs[:n_train], config)
    train_labels = jnp.asarray(train_set.labels[:n_train], jnp.int32)
    test_inputs = encode(test_set.inputs, config)
    test_labels = jnp.asarray(test_set.labels, jnp.int32)

    emulator = build_emulator(config, chip)
    init, optimizer, train_epoch, evaluate_chip, evaluate_software, _ = make_functions(config, emulator)
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    params = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *[init(s) for s in seeds])
    n_batches = n_train // config.batch_size
    opt_state = jax.vmap(optimizer(n_batches).init)(params)

    @jax.jit
    def run_epoch(params, opt_state, keys, first_trial):
        def one_seed(params, opt_state, key, seed_index):
            (samples, labels), _ = epoch_batches((train_inputs, train_labels), config.batch_size, key)
            # each seed's runs get their own trial numbers on the shared chip
            trial = first_trial + seed_index * jnp.uint32(1_000_000)
            return train_epoch(params, opt_state, samples, labels, trial, n_batches, hardware)

        return jax.vmap(one_seed)(params, opt_state, keys, jnp.arange(len(seeds), dtype=jnp.uint32))

    @jax.jit
    def run_eval(params, trial):
        chip_loss, chip_acc = jax.vmap(evaluate_chip, in_axes=(0, None, None, None))(params, test_inputs, test_labels, trial)
        sw_loss, sw_acc = jax.vmap(evaluate_software, in_axes=(0, None, None))(params, test_inputs, test_labels)
        return chip_loss, chip_acc, sw_loss, sw_acc

    names = ("train_loss", "train_acc", "test_loss_chip", "test_acc_chip", "test_loss_software",
             "test_acc_software", "skipped_steps")
    history: Dict[str, list] = {name: [] for name in names}
    keys = jnp.stack([jax.random.PRNGKey(1000 + s) for s in seeds])
    epochs = range(config.epochs)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(epochs, desc="in the loop" if hardware else "software", unit="epoch")
        epochs = bar
    start = time.perf_counter()
    eval_trial = jnp.uint32(2**31)  # test runs never reuse a training trial number
    for epoch in epochs:
        pairs = jax.vmap(jax.random.split)(keys)
        keys, epoch_keys = pairs[:, 0], pairs[:, 1]
        params, opt_state, loss, acc, skipped = run_epoch(params, opt_state, epoch_keys, jnp.uint32(epoch * n_batches))
        values = (loss, acc) + tuple(run_eval(params, eval_trial + epoch)) + (skipped,)
        for name, value in zip(names, values):
            history[name].append(np.asarray(value).tolist())
        if bar is not None:
            bar.set_postfix(train=f"{np.mean(acc):.3f}", chip=f"{np.mean(history['test_acc_chip'][-1]):.4f}",
                            software=f"{np.mean(history['test_acc_software'][-1]):.4f}")
    wall = time.perf_counter() - start
    return {
        "history": history,
        "test_accuracy_chip": history["test_acc_chip"][-1],
        "test_accuracy_software": history["test_acc_software"][-1],
        "params": params,
        "seeds": seeds,
        "wall_time_s": wall,
        "test_inputs": test_inputs,
        "test_set": test_set,
        "emulator": emulator,
    }


def save_plots(results: Dict[str, Dict[str, Any]], config: Config, prefix: Path) -> list:
    """Accuracy curves of both trainings (on chip and in software), and chip predictions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, result, color in (("in the loop", results["in_the_loop"], "C0"), ("software-trained", results["software"], "C1")):
        for key, style in (("test_acc_chip", "-"), ("test_acc_software", ":")):
            acc = 100 * np.asarray(result["history"][key])
            epochs = np.arange(1, acc.shape[0] + 1)
            where = "on chip" if key.endswith("chip") else "in software"
            ax.plot(epochs, acc.mean(1), style, color=color, label=f"{label}, tested {where}")
            ax.fill_between(epochs, acc.min(1), acc.max(1), color=color, alpha=0.15)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(80, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Yin-Yang on the emulated chip (min-max band over seeds)")
    fig.tight_layout()
    paths.append(prefix.with_name(prefix.name + "_curves.png"))
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    xy = results["in_the_loop"]["test_set"].inputs[:, :2]
    labels = results["in_the_loop"]["test_set"].labels
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, (label, key) in zip(axes, (("in the loop", "in_the_loop"), ("software-trained", "software"))):
        result = results[key]
        params0 = jax.tree_util.tree_map(lambda leaf: leaf[0], result["params"])
        measured = jax.jit(result["emulator"].run_jax)(params0, result["test_inputs"], jnp.uint32(2**31 - 1))
        first = np.asarray(jax.vmap(lambda s: spikes_lib.first_spike_times(s, N_CLASSES))(measured[-1]))
        predicted = np.where(np.isfinite(first.min(1)), np.argmin(first, axis=1), -1)
        wrong = predicted != labels
        ax.scatter(xy[:, 0], xy[:, 1], c=np.maximum(predicted, 0), cmap="viridis", s=6, vmin=0, vmax=2)
        ax.scatter(xy[wrong, 0], xy[wrong, 1], facecolors="none", edgecolors="red", s=25, lw=0.8)
        ax.set(aspect="equal", xlabel="x", ylabel="y", title=f"{label} on chip, seed 0 ({wrong.sum()} wrong)")
    fig.tight_layout()
    paths.append(prefix.with_name(prefix.name + "_predictions.png"))
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    return paths


def _record(results: Dict[str, Dict[str, Any]], config: Config, chip: EmulatorConfig, argv) -> Dict[str, Any]:
    """The result JSON: accuracies measured on the emulated chip (and in software) per training mode."""
    summary = {}
    for key, result in results.items():
        chip_acc = np.asarray(result["test_accuracy_chip"])
        sw_acc = np.asarray(result["test_accuracy_software"])
        summary[key] = {
            "test_accuracy_chip_mean": float(chip_acc.mean()),
            "test_accuracy_chip_std": float(chip_acc.std()),
            "test_accuracy_chip_per_seed": chip_acc.tolist(),
            "test_accuracy_software_mean": float(sw_acc.mean()),
            "test_accuracy_software_std": float(sw_acc.std()),
            "test_accuracy_software_per_seed": sw_acc.tolist(),
            "wall_time_s": result["wall_time_s"],
            "skipped_steps": int(np.sum(result["history"]["skipped_steps"])),
            "history": result["history"],
        }
        print(f"{key}: on the emulated chip {100 * chip_acc.mean():.2f} +- {100 * chip_acc.std():.2f} % "
              f"(per seed {np.round(100 * chip_acc, 2).tolist()}); in software {100 * sw_acc.mean():.2f} +- "
              f"{100 * sw_acc.std():.2f} %; {result['wall_time_s']:.0f} s")
    loop = summary["in_the_loop"]
    return {
        "name": "yinyang_hardware",
        "test_accuracy_mean": loop["test_accuracy_chip_mean"],
        "test_accuracy_std": loop["test_accuracy_chip_std"],
        "test_accuracy_per_seed": loop["test_accuracy_chip_per_seed"],
        "measured_on": "emulated chip (jaxsnn.hardware.Emulator, realistic defaults)",
        "seeds": results["in_the_loop"]["seeds"],
        "epochs": config.epochs,
        "wall_time_s": sum(r["wall_time_s"] for r in results.values()),
        "emulator": {**chip.to_dict(), "chip_seed": config.chip_seed},
        "config": config._asdict(),
        "results": summary,
        "command": " ".join(["python", "examples/yinyang_hardware.py"] + (sys.argv[1:] if argv is None else list(argv))),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
        },
    }


def main(argv=None) -> Dict[str, Any]:
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=defaults.seeds, help="number of seeds (trained in parallel)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--copies", type=int, default=defaults.copies, help="duplicates of each input line")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--loss", choices=("hybrid", "mse", "ce"), default=defaults.loss)
    parser.add_argument("--lr-decay", type=float, default=defaults.lr_decay, help="per-epoch factor")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help="softmax time scale of the first-spike cross-entropy (s)")
    parser.add_argument("--mse-weight", type=float, default=defaults.mse_weight, help="mse term of the hybrid loss")
    parser.add_argument("--chip-seed", type=int, default=defaults.chip_seed, help="fixed pattern of the emulated chip")
    parser.add_argument("--train-samples", type=int, default=defaults.train_samples, help="0 = all 5000")
    parser.add_argument("--first-seed", type=int, default=defaults.first_seed)
    parser.add_argument("--skip-software", action="store_true", help="skip the software-trained comparison")
    parser.add_argument("--data-dir", default=None, help="directory of the published Yin-Yang arrays")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "yinyang_hardware.json"))
    parser.add_argument("--figures", default=str(REPO / "examples" / "figures"))
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    config = defaults._replace(
        seeds=args.seeds, epochs=args.epochs, batch_size=args.batch_size, hidden=args.hidden, copies=args.copies,
        lr=args.lr, lr_decay=args.lr_decay, loss=args.loss, chip_seed=args.chip_seed, train_samples=args.train_samples,
        first_seed=args.first_seed, temperature=args.temperature, mse_weight=args.mse_weight,
    )
    chip = EmulatorConfig()  # the realistic defaults
    out = Path(args.out)
    results: Dict[str, Dict[str, Any]] = {}
    phases = [("in_the_loop", True)] + ([] if args.skip_software else [("software", False)])
    for key, hardware in phases:
        results[key] = train(config, chip, hardware=hardware, progress=not args.no_progress, data_dir=args.data_dir)
        record = _record(results, config, chip, argv)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1))  # written after each phase: partial results survive
        print("wrote", out)
    if not args.no_plots and "software" in results:
        figures = Path(args.figures)
        figures.mkdir(parents=True, exist_ok=True)
        for path in save_plots(results, config, figures / "yinyang_hardware"):
            print("saved", path)
    return record


if __name__ == "__main__":
    main()
