"""Compare online learning rules with BPTT on the Randman task (every rule, both modes).

Task (Zenke & Vogels 2021): 10 classes of random smooth 1-D manifolds embedded in 100
dimensions (alpha 2), each coordinate one input spike on a 100-step grid; 200 training and 100
test samples per class. Network: 100 -> LIF(128) -> LIF(10), single-state neurons
``v_t = 0.881 v_{t-1} + x_t W`` (``tau_syn=0``, ``input_scale=1``), threshold 1, reset by
subtraction, fast-sigmoid surrogate of slope 25, weights ``N(0, (3/sqrt(fan_in))^2)``. Loss: the
softmax cross-entropy of the output spikes at every step, summed over time (mean over the
batch); prediction: the output with the most spikes. 500 mini-batches of 32 with
``adamax(0.01)``, for each rule in ``deferred`` mode (one update per mini-batch) and ``online``
mode (an update after every time step).

Per seed it records the test accuracy during training, the time per training step, the
per-layer cosine similarity of every rule's gradient to BPTT's (on 256 test samples) at
initialisation and at each rule's trained parameters, and parameter checkpoints for a loss
landscape.

Usage::

    python examples/randman_online.py --record                # the full comparison (CPU-heavy)
    python examples/randman_online.py --steps 20 --seeds 1 --rules bptt,ostl   # quick

Writes ``outputs/online_rules.json`` and the figures ``outputs/online_rules_summary.png``,
``outputs/online_rules_landscape.png`` (``--out-dir`` to change the folder); ``--record`` writes
the committed ``benchmarks/results/online_rules.json`` and ``examples/figures/online_rules_*.png``
instead. Timings are of this process on this machine (see the JSON for the load average at
start and end); ``benchmarks/online_rules.py`` measures speed and compile time on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np
import optax

if str(Path(__file__).resolve().parent) not in sys.path:  # examples/_common.py, also by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

import jaxsnn  # noqa: E402
from jaxsnn import analysis, data, encode, online  # noqa: E402
from jaxsnn.discrete import LIF, surrogate, tau_from_decay  # noqa: E402

NAME = "online_rules"
FIGURES = ("summary", "landscape")
ALL_RULES = ("bptt", "truncated", "ottt", "ostl", "otpe", "rtrl")


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="mini-batch steps per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--rules", default=",".join(ALL_RULES), help="comma-separated rules")
    parser.add_argument("--modes", default="deferred,online", help="deferred and/or online")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01, help="adamax learning rate")
    parser.add_argument("--time-steps", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--eval-every", type=int, default=25, help="steps between test evaluations")
    parser.add_argument("--cosine-samples", type=int, default=256,
                        help="test samples for the gradient cosines")
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--out-dir", type=Path, default=_common.OUTPUTS,
                        help="folder for the result JSON and figures (default: outputs/)")
    parser.add_argument("--record", action="store_true",
                        help="write the committed records: benchmarks/results/online_rules.json "
                             "and examples/figures/online_rules_*.png (overrides --out-dir)")
    parser.add_argument("--no-plots", action="store_true", help="write no figures")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    args = parser.parse_args(argv)
    args.rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for rule in args.rules:
        online.get_rule(rule)
    for mode in args.modes:
        if mode not in online.MODES:
            parser.error(f"unknown mode {mode!r}; choose from {online.MODES}")
    return args


def build_network(args: argparse.Namespace) -> jaxsnn.Layer:
    neuron = dict(
        tau_syn=0.0,
        tau_mem=tau_from_decay(0.881),
        dt=1.0,
        input_scale=1.0,
        v_th=1.0,
        reset="subtract",
        surrogate=surrogate.superspike(25.0),
        weight_scale=3.0,
    )
    return jaxsnn.serial(LIF(args.hidden, **neuron), LIF(10, **neuron))


def make_data(seed: int, args: argparse.Namespace):
    """Randman train/test split (200/100 per class by default), one input spike per unit."""
    n_train, n_test = args.train_per_class, args.test_per_class
    dataset = data.randman(
        jax.random.PRNGKey(10_000 + seed), n_classes=10, samples_per_class=n_train + n_test,
        embedding_dim=100, manifold_dim=1, alpha=2.0, shuffle=False,
    )
    values = np.asarray(dataset.inputs).reshape(10, n_train + n_test, 100)
    labels = np.asarray(dataset.labels).reshape(10, n_train + n_test)
    train_x, test_x = (values[:, :n_train].reshape(-1, 100),
                       values[:, n_train:].reshape(-1, 100))
    train_y, test_y = labels[:, :n_train].reshape(-1), labels[:, n_train:].reshape(-1)
    encode_grid = lambda v: encode.latency_dense(jnp.asarray(v, jnp.float32),  # noqa: E731
                                                 args.time_steps, 1.0)
    return (encode_grid(train_x), jnp.asarray(train_y, jnp.int32),
            encode_grid(test_x), jnp.asarray(test_y, jnp.int32))


def step_loss(output, label):
    """Softmax cross-entropy of one step's output spikes for the sample's class."""
    return -jax.nn.log_softmax(output)[label]


def per_step_targets(labels: jax.Array, time_steps: int) -> jax.Array:
    return jnp.broadcast_to(labels[:, None], (labels.shape[0], time_steps))


def make_accuracy(net):
    @jax.jit
    def accuracy(params, inputs, labels):
        outputs = jax.vmap(lambda x: net.apply(params, x)[1])(inputs)
        return jnp.mean(jnp.argmax(outputs.sum(axis=1), axis=-1) == labels)

    return accuracy


def load_average() -> List[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def make_batch_gradient(net, rule):
    """Jitted mean gradient of a batch under ``rule`` (compiled once, reused for every seed)."""

    @jax.jit
    def gradient(params, inputs, targets):
        grads = jax.vmap(
            lambda x, t: online.sequence_gradient(rule, net, params, x, t, step_loss)[1]
        )(inputs, targets)
        return jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), grads)

    return gradient


def cosines(gradients, params, batch, rules, names) -> Dict[str, Dict[str, float]]:
    """Per-layer and global cosine of each rule's gradient to BPTT's on ``batch``."""
    reference = gradients["bptt"](params, *batch)
    out = {}
    for rule in rules:
        grads = gradients[rule](params, *batch)
        rows = {"global": analysis.cosine_similarity(grads, reference)}
        for key, value in analysis.cosine_similarity(grads, reference, by="layer").items():
            rows[f"{key} {names[int(key[1:-1])]}"] = value
        out[online.get_rule(rule).name] = {g: round(float(v), 4) for g, v in rows.items()}
    return out


def train_run(trainer, params, train, test, accuracy, args, key, progress, checkpoints):
    """``args.steps`` mini-batches; returns accuracy curve, step times, final params."""
    train_x, train_y = train
    test_x, test_y = test
    state = trainer.init(params)
    n = train_x.shape[0]
    curve, times, losses, saved = [], [], [], []
    order = np.asarray(jax.random.permutation(key, n))
    position = 0
    for step in range(args.steps):
        if position + args.batch_size > n:
            key, sub = jax.random.split(key)
            order, position = np.asarray(jax.random.permutation(sub, n)), 0
        index = order[position:position + args.batch_size]
        position += args.batch_size
        inputs, labels = train_x[index], train_y[index]
        start = time.perf_counter()
        state, loss = trainer.step(state, inputs, per_step_targets(labels, args.time_steps))
        loss = float(loss)  # waits for the step
        times.append(time.perf_counter() - start)
        losses.append(loss)
        if checkpoints and (step % args.eval_every == 0):
            saved.append(jax.device_get(state.params))
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            curve.append((step + 1, float(accuracy(state.params, test_x, test_y))))
        progress()
    if checkpoints:
        saved.append(jax.device_get(state.params))
    return curve, times, losses, state.params, saved


def main(argv: List[str]) -> Dict[str, Any]:
    args = parse_args(argv)
    net = build_network(args)
    accuracy = make_accuracy(net)
    optimizer = optax.adamax(args.lr)
    trainers = {
        (rule, mode): online.make_trainer(rule, net, step_loss, optimizer, mode)
        for rule in args.rules for mode in args.modes
    }
    gradients = {rule: make_batch_gradient(net, rule) for rule in set(args.rules) | {"bptt"}}
    names = analysis.layer_names(net)
    total = args.seeds * len(trainers) * args.steps
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, disable=args.no_progress, desc="randman_online", mininterval=5)
        progress, close = (lambda: bar.update(1)), bar.close
    except ImportError:  # pragma: no cover - tqdm is in the [examples] extra
        progress, close = (lambda: None), (lambda: None)

    started, load_start = time.time(), load_average()
    runs: Dict[str, Any] = {}
    landscape: Dict[str, Any] = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        train_x, train_y, test_x, test_y = make_data(seed, args)
        _, params = net.init(jax.random.PRNGKey(seed), (args.time_steps, 100))
        cos_batch = (test_x[: args.cosine_samples],
                     per_step_targets(test_y[: args.cosine_samples], args.time_steps))
        init_accuracy = float(accuracy(params, test_x, test_y))
        init_cosines = cosines(gradients, params, cos_batch, args.rules, names)
        seed_runs: Dict[str, Any] = {"init_accuracy": init_accuracy, "init_cosine": init_cosines}
        for (rule, mode), trainer in trainers.items():
            keep = seed == args.first_seed and mode == "deferred"
            curve, times, losses, final, saved = train_run(
                trainer, params, (train_x, train_y), (test_x, test_y), accuracy, args,
                jax.random.PRNGKey(1000 + seed), progress, keep,
            )
            trained_cosine = cosines(gradients, final, cos_batch, [rule],
                                     names)[online.get_rule(rule).name]
            later = times[2:] if len(times) > 4 else times
            seed_runs[f"{rule}/{mode}"] = {
                "accuracy_curve": curve,
                "final_accuracy": curve[-1][1],
                "first_step_s": round(times[0], 3),
                "median_step_s": round(float(np.median(later)), 5),
                "min_step_s": round(float(np.min(later)), 5),
                "final_loss": round(losses[-1], 4),
                "trained_cosine": trained_cosine,
            }
            if keep:
                landscape[rule] = saved
        runs[str(seed)] = seed_runs
    close()
    summary = summarize(runs, args)
    result = {
        "task": "randman: 10 classes, 100 units, T=100, manifold dim 1, alpha 2, one spike per "
                "unit, 200 train / 100 test per class",
        "network": "100 -> LIF(128) -> LIF(10), v_t = 0.881 v_{t-1} + x_t W, threshold 1, "
                   "subtract reset, fast sigmoid slope 25, W ~ N(0, (3/sqrt(fan_in))^2)",
        "training": f"{args.steps} mini-batches of {args.batch_size}, adamax({args.lr}), loss: "
                    "per-step softmax cross-entropy of the output spikes summed over time",
        "settings": {k: v for k, v in vars(args).items()
                     if k not in ("out_dir", "record", "no_plots", "no_progress")},
        "summary": summary,
        "runs": runs,
        "command": _common.command("randman_online.py", argv),
        "machine": dict(_common.machine(), load_average_start=load_start,
                        load_average_end=load_average()),
        "wall_time_s": round(time.time() - started, 1),
    }
    paths = _common.output_paths(NAME, args.out_dir, args.record)
    print(json.dumps(summary, indent=1))
    print("wrote", _common.write_record(paths, result))
    if not args.no_plots:
        plot_summary(summary, runs, args, paths.figure(NAME, "summary"))
        if landscape:
            plot_landscape(net, landscape, (test_x[:128], test_y[:128]), args,
                           paths.figure(NAME, "landscape"))
    return result


def _mean_std(values: List[float]) -> Dict[str, float]:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}


def summarize(runs: Dict[str, Any], args: argparse.Namespace) -> Dict[str, Any]:
    seeds = list(runs)
    summary: Dict[str, Any] = {"init_cosine": {}, "trained_cosine": {}, "accuracy": {},
                               "median_step_s": {}}
    for rule in args.rules:
        name = online.get_rule(rule).name
        groups = runs[seeds[0]]["init_cosine"][name].keys()
        summary["init_cosine"][name] = {
            g: _mean_std([runs[s]["init_cosine"][name][g] for s in seeds]) for g in groups
        }
        for mode in args.modes:
            key = f"{rule}/{mode}"
            summary["trained_cosine"][key] = {
                g: _mean_std([runs[s][key]["trained_cosine"][g] for s in seeds])
                for g in runs[seeds[0]][key]["trained_cosine"]
            }
            summary["accuracy"][key] = _mean_std([runs[s][key]["final_accuracy"] for s in seeds])
            summary["median_step_s"][key] = _mean_std(
                [runs[s][key]["median_step_s"] for s in seeds])
    return summary


def plot_summary(summary, runs, args, path: Path) -> None:
    plt = _common.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    rules = [online.get_rule(r).name for r in args.rules if online.get_rule(r).name != "bptt"]
    groups = [g for g in summary["init_cosine"][rules[0]] if g != "global"] if rules else []
    ax = axes[0]
    width = 0.8 / max(1, 2 * len(groups))
    for i, group in enumerate(groups):
        sources = (("init", "init_cosine"), ("trained", "trained_cosine"))
        for j, (label, source) in enumerate(sources):
            values, errors = [], []
            for rule in rules:
                key = rule if source == "init_cosine" else f"{rule}/deferred"
                entry = summary[source].get(key, {}).get(group, {"mean": np.nan, "std": 0})
                values.append(entry["mean"])
                errors.append(entry["std"])
            offset = (2 * i + j - len(groups)) * width + width / 2
            ax.bar(np.arange(len(rules)) + offset, values, width, yerr=errors,
                   label=f"{group} ({label})", alpha=0.6 + 0.4 * j)
    ax.set_xticks(np.arange(len(rules)), rules)
    ax.set_ylabel("cosine to BPTT gradient")
    ax.set_title("(a) per-layer cosine to BPTT (init; after deferred training)")
    ax.set_ylim(-0.1, 1.05)
    ax.legend(fontsize=7)
    ax = axes[1]
    seeds = list(runs)
    for rule in args.rules:
        for mode, style in (("deferred", "-"), ("online", "--")):
            key = f"{rule}/{mode}"
            if key not in runs[seeds[0]]:
                continue
            steps = [s for s, _ in runs[seeds[0]][key]["accuracy_curve"]]
            values = np.asarray([[a for _, a in runs[s][key]["accuracy_curve"]] for s in seeds])
            line = ax.plot(steps, values.mean(0), style, label=key)[0]
            ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.1)
    ax.set_xlabel("mini-batch step")
    ax.set_ylabel("test accuracy")
    ax.set_title("(b) test accuracy (mean, min-max over seeds)")
    ax.legend(fontsize=6, ncol=2)
    ax = axes[2]
    labels = list(summary["median_step_s"])
    ax.bar(np.arange(len(labels)), [summary["median_step_s"][k]["mean"] for k in labels])
    ax.set_xticks(np.arange(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("seconds per training step (median)")
    ax.set_title(f"(c) time per step, batch {args.batch_size}, T {args.time_steps}")
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=120)


def plot_landscape(net, trajectories: Dict[str, List[Any]], batch, args, path: Path) -> None:
    plt = _common.pyplot()
    reference = trajectories.get("bptt", next(iter(trajectories.values())))
    center = reference[-1]
    directions = analysis.pca_directions(list(trajectories.values()), center)
    coords = {rule: np.asarray(analysis.project(t, directions)) for rule, t in trajectories.items()}
    every = np.concatenate(list(coords.values()))
    span = 1.2 * np.max(np.abs(every), axis=0) + 1e-3
    alphas = jnp.linspace(-span[0], span[0], 21)
    betas = jnp.linspace(-span[1], span[1], 21)
    inputs, labels = batch
    targets = per_step_targets(labels, args.time_steps)

    def mean_loss(params):
        def one(x, t):
            outputs = net.apply(params, x)[1]
            return jnp.sum(jax.vmap(step_loss)(outputs, t))

        return jnp.mean(jax.vmap(one)(inputs, targets))

    losses = jax.jit(lambda a, b: analysis.loss_grid(mean_loss, directions, a, b))(alphas, betas)
    fig, ax = plt.subplots(figsize=(7, 6))
    explained = np.asarray(directions.explained)
    analysis.plot_landscape(alphas, betas, losses, coords, ax=ax,
                            title="test loss around BPTT's trained parameters "
                                  f"(PCs explain {explained[0]:.0%}, {explained[1]:.0%})")
    fig.tight_layout()
    _common.save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1:])
