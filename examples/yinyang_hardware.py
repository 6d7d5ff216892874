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
``mse`` or ``ce`` alone (``jaxsnn.loss.first_spike_hybrid_loss``). Silent label neurons are
bumped (``jaxsnn.optim.bump_silent``, chained after Adam), gradients clipped, and a step with a
non-finite gradient is skipped (``optax.apply_if_finite``). Seeds are trained in parallel
(``vmap``), an epoch is one jitted ``lax.scan``. The emulator is a pure JAX backend,
so it is called directly inside the jitted step (``Emulator.run_jax``); a physical chip would
be called through ``jaxsnn.hardware.measure`` (``jax.pure_callback``) instead, with the same
result (tested in ``tests/hardware``).

Run ``python examples/yinyang_hardware.py`` (defaults: 5 seeds); the result JSON and plots go
to ``outputs/`` (untracked); ``--record`` writes the committed
``benchmarks/results/yinyang_hardware.json`` and ``examples/figures/yinyang_hardware_*.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

if str(Path(__file__).resolve().parent) not in sys.path:  # examples/_common.py, also when loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import jaxsnn  # noqa: E402
from jaxsnn import plot  # noqa: E402
from jaxsnn.data import epoch_batches, load_yinyang  # noqa: E402
from jaxsnn.encode import latency_spikes, target_times  # noqa: E402
from jaxsnn.event import LIF, LIFParameters  # noqa: E402
from jaxsnn.hardware import (  # noqa: E402
    EmulatedLayer,
    Emulator,
    EmulatorConfig,
    duplicate_inputs,
    inject,
)
from jaxsnn.initializers import normal  # noqa: E402
from jaxsnn.loss import (  # noqa: E402
    first_spike_accuracy,
    first_spike_hybrid_loss,
    first_spike_mse,
    predict_first_spike,
)
from jaxsnn.optim import bump_silent, silent_fraction  # noqa: E402
from jaxsnn.spikes import first_spike_times  # noqa: E402

NAME = "yinyang_hardware"
FIGURES = ("curves", "predictions")
N_CLASSES = 3
N_FEATURES = 5  # x, y, 1-x, 1-y, bias
LOSSES = ("hybrid", "mse", "ce")


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
    if config.loss not in LOSSES:
        raise ValueError(f"loss must be 'hybrid', 'mse' or 'ce', got {config.loss!r}")
    network = build_network(config)  # the Layer itself: inject needs its leaf count
    init_net, apply_net = network

    def loss_from_first(first, labels):
        targets = target_times(labels, N_CLASSES, config.t_correct, config.t_wrong)
        if config.loss == "mse":
            loss = first_spike_mse(first, targets, t_missing=config.t_max) / config.tau_mem**2
        else:
            loss = first_spike_hybrid_loss(
                first, labels, targets=targets, temperature=config.temperature, t_missing=config.t_max,
                mse_weight=config.mse_weight if config.loss == "hybrid" else 0.0,
                time_scale=config.tau_mem, early_weight=config.early_weight,
            )
        return loss, (first_spike_accuracy(first, labels), first)

    def first_times(out_spikes):
        return jax.vmap(lambda s: first_spike_times(s, N_CLASSES))(out_spikes)

    def software_loss(params, samples, labels):
        _, out, _ = jax.vmap(lambda x: apply_net(params, x))(samples)
        return loss_from_first(first_times(out), labels)

    def in_the_loop_loss(params, samples, labels, trial):
        # forward on the chip (data, no gradient), backward: EventProp at the measured times
        measured = jax.lax.stop_gradient(emulator.run_jax(jax.lax.stop_gradient(params), samples, trial))
        out, _ = inject(network, params, samples, measured)
        return loss_from_first(first_times(out), labels)

    def optimizer(n_batches: int):
        schedule = optax.exponential_decay(config.lr, transition_steps=n_batches, decay_rate=config.lr_decay)
        clip = [optax.clip_by_global_norm(config.clip)] if config.clip else []
        # the copies of an input line get the same gradient, so Adam moves their sum ``copies``
        # times as far: scale the input layer's steps back to the logical rate
        per_line = optax.stateless(
            lambda updates, params: [jax.tree_util.tree_map(lambda u: u / config.copies, updates[0])]
            + list(updates[1:])
        )
        chained = optax.chain(*clip, optax.adam(schedule), per_line, bump_silent(config.bump))
        # never apply a non-finite gradient: keep the parameters and optimiser state as they were
        return optax.apply_if_finite(chained, max_consecutive_errors=np.iinfo(np.int32).max)

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
            # weight bumping: an output neuron, by the fraction of the batch in which it was the
            # label and stayed silent (a silent neuron gets no gradient)
            is_label = batch_labels[:, None] == jnp.arange(N_CLASSES)
            silent = [None, silent_fraction(first, where=is_label)]
            updates, opt_state = opt.update(grads, opt_state, params, silent=silent)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), (loss, acc, ~opt_state.last_finite)

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

    return init_net, optimizer, train_epoch, evaluate_chip, evaluate_software, apply_net


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
    init_net, optimizer, train_epoch, evaluate_chip, evaluate_software, _ = make_functions(config, emulator)
    seeds = list(range(config.first_seed, config.first_seed + config.seeds))
    params = _common.init_seeds(init_net, seeds, (N_FEATURES * config.copies,))
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
    bar = _common.progress(range(config.epochs), progress, "in the loop" if hardware else "software", unit="epoch")
    start = time.perf_counter()
    eval_trial = jnp.uint32(2**31)  # test runs never reuse a training trial number
    for epoch in bar:
        keys, epoch_keys = _common.split_keys(keys)
        params, opt_state, loss, acc, skipped = run_epoch(params, opt_state, epoch_keys, jnp.uint32(epoch * n_batches))
        values = (loss, acc) + tuple(run_eval(params, eval_trial + epoch)) + (skipped,)
        for name, value in zip(names, values):
            history[name].append(np.asarray(value).tolist())
        _common.set_postfix(bar, train=f"{np.mean(acc):.3f}", chip=f"{np.mean(history['test_acc_chip'][-1]):.4f}",
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


def save_plots(results: Dict[str, Dict[str, Any]], config: Config, paths: _common.OutputPaths) -> list:
    """Accuracy curves of the trainings that ran (on chip and in software), and chip predictions."""
    plt = _common.pyplot()
    saved = []
    phases = [(label, key, color) for label, key, color in
              (("in the loop", "in_the_loop", "C0"), ("software-trained", "software", "C1")) if key in results]
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, key, color in phases:
        result = results[key]
        for curve, style in (("test_acc_chip", "-"), ("test_acc_software", ":")):
            where = "on chip" if curve.endswith("chip") else "in software"
            plot.training_curves({f"{label}, tested {where}": result["history"][curve]}, ax, scale=100,
                                 color=color, linestyle=style)
    ax.set(ylabel="test accuracy (%)", ylim=(80, 100))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Yin-Yang on the emulated chip (min-max band over seeds)")
    fig.tight_layout()
    saved.append(_common.save_figure(fig, paths.figure(NAME, "curves"), dpi=90))

    xy = results["in_the_loop"]["test_set"].inputs[:, :2]
    labels = results["in_the_loop"]["test_set"].labels
    fig, axes = plt.subplots(1, len(phases), figsize=(4 * len(phases), 3.8), squeeze=False)
    for ax, (label, key, _) in zip(axes[0], phases):
        result = results[key]
        params0 = _common.unstack(result["params"], 0)
        measured = jax.jit(result["emulator"].run_jax)(params0, result["test_inputs"], jnp.uint32(2**31 - 1))
        first = jax.vmap(lambda s: first_spike_times(s, N_CLASSES))(measured[-1])
        predicted = np.asarray(predict_first_spike(first))
        _, errors = plot.prediction_scatter(xy, predicted, labels, ax, n_classes=N_CLASSES)
        ax.set(xlabel="x", ylabel="y")
        ax.set_title(f"{label} on chip, seed 0 ({len(errors.get_offsets())} wrong)", fontsize=9)
    fig.tight_layout()
    saved.append(_common.save_figure(fig, paths.figure(NAME, "predictions"), dpi=80))
    return saved


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
        print(f"{key}: on the emulated chip {_common.accuracy_text(chip_acc)}; in software "
              f"{_common.accuracy_text(sw_acc)}; {result['wall_time_s']:.0f} s")
    loop = summary["in_the_loop"]
    return {
        "name": NAME,
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
        "command": _common.command("yinyang_hardware.py", argv),
        "machine": _common.machine(),
    }


def main(argv=None) -> Dict[str, Any]:
    defaults = Config()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    _common.add_arguments(parser, seeds=defaults.seeds, epochs=defaults.epochs,
                          first_seed=defaults.first_seed, train_samples=defaults.train_samples)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--copies", type=int, default=defaults.copies, help="duplicates of each input line")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--loss", choices=LOSSES, default=defaults.loss)
    parser.add_argument("--lr-decay", type=float, default=defaults.lr_decay, help="per-epoch factor")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help="softmax time scale of the first-spike cross-entropy (s)")
    parser.add_argument("--mse-weight", type=float, default=defaults.mse_weight, help="mse term of the hybrid loss")
    parser.add_argument("--chip-seed", type=int, default=defaults.chip_seed, help="fixed pattern of the emulated chip")
    parser.add_argument("--skip-software", action="store_true", help="skip the software-trained comparison")
    args = parser.parse_args(argv)
    config = defaults._replace(
        seeds=args.seeds, epochs=args.epochs, batch_size=args.batch_size, hidden=args.hidden, copies=args.copies,
        lr=args.lr, lr_decay=args.lr_decay, loss=args.loss, chip_seed=args.chip_seed, train_samples=args.train_samples,
        first_seed=args.first_seed, temperature=args.temperature, mse_weight=args.mse_weight,
    )
    chip = EmulatorConfig()  # the realistic defaults
    paths = _common.output_paths(NAME, args.out_dir, args.record)
    results: Dict[str, Dict[str, Any]] = {}
    phases = [("in_the_loop", True)] + ([] if args.skip_software else [("software", False)])
    for key, hardware in phases:
        results[key] = train(config, chip, hardware=hardware, progress=not args.no_progress, data_dir=args.data_dir)
        record = _record(results, config, chip, argv)
        print("wrote", _common.write_record(paths, record))  # after each phase: partial results survive
    if not args.no_plots:
        for path in save_plots(results, config, paths):
            print("saved", path)
    return record


if __name__ == "__main__":
    main()
