"""The Yin-Yang training recipe of the time-to-accuracy benchmark, in plain JAX and optax so that
jaxsnn and upstream jaxsnn 0.3.0 (its own venv) train with the same loss, optimiser, weight
bumping, batches and test rule; only the network simulation and its EventProp gradient differ.

Recipe (that of ``examples/yinyang_eventprop.py``, written out here because upstream has none
of ``jaxsnn.loss``/``jaxsnn.optim``): first-spike hybrid loss (softmax cross-entropy over
``-t / temperature`` plus an early-label term plus 2 x the squared error to target times 4 ms /
6 ms in units of ``tau_mem``; silent neurons count at ``t_max`` with zero gradient), global-norm
clipping 1.0, Adam with the learning rate decaying from 2e-2 to 2e-4 over ``max_epochs``, weight
bumping 1e-2 of silent neurons after Adam, batch 32, the published training split shuffled per
epoch with a fixed seed. Test accuracy on the published test split after every epoch, strict
tie rule (the label neuron must spike strictly first).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np
import optax

RECIPE = {
    "batch": 32,
    "lr": 2e-2,
    "lr_final": 1e-2,  # factor reached after max_epochs
    "clip": 1.0,
    "temperature": 1.25e-4,
    "early_weight": 0.01,
    "mse_weight": 2.0,
    "t_correct": 4e-3,
    "t_wrong": 6e-3,
    "bump": 1e-2,
}


def first_times(time_: jax.Array, idx: jax.Array, n: int) -> jax.Array:
    """``(..., n)`` first spike time of each neuron from padded event buffers (``inf``: silent)."""
    hit = idx[..., None] == jnp.arange(n)
    return jnp.min(jnp.where(hit, time_[..., None], jnp.inf), axis=-2)


def hybrid_loss(first: jax.Array, labels: jax.Array, p: Dict[str, float]) -> jax.Array:
    """The recipe's loss on ``(B, 3)`` first-spike times (see the module docstring)."""
    r = RECIPE
    t = jnp.where(jnp.isfinite(first), first, p["t_max"])
    t_label = jnp.take_along_axis(t, labels[:, None], axis=1)[:, 0]
    ce = jax.nn.logsumexp(-t / r["temperature"], axis=-1) + t_label / r["temperature"]
    targets = jnp.where(labels[:, None] == jnp.arange(t.shape[-1]), r["t_correct"], r["t_wrong"])
    mse = jnp.mean(jnp.square(t - targets)) / p["tau_mem"] ** 2
    return jnp.mean(ce) + r["early_weight"] * jnp.mean(t_label) / p["t_max"] + r["mse_weight"] * mse


def correct(first: jax.Array, labels: jax.Array) -> jax.Array:
    """Per sample: the label neuron spikes strictly before every other (ties count as wrong)."""
    t_label = jnp.take_along_axis(first, labels[:, None], axis=1)
    others = jnp.where(labels[:, None] == jnp.arange(first.shape[-1]), jnp.inf, first)
    return jnp.isfinite(t_label[:, 0]) & (t_label[:, 0] < jnp.min(others, axis=-1))


def train_to_accuracy(forward: Callable, weights: tuple, train: Dict[str, np.ndarray],
                      test: Dict[str, np.ndarray], p: Dict[str, float], target: float,
                      max_epochs: int, max_seconds: float, seed: int = 0) -> Dict[str, Any]:
    """Train until the test accuracy reaches ``target`` (or ``max_epochs`` / ``max_seconds``).

    Args:
        forward: ``(weights, times, idx) -> (hidden_first (B, H), output_first (B, 3))`` for a
            batch, differentiable in ``weights`` (a ``(w1, w2)`` tuple).
        weights: initial ``(w1, w2)``.
        train, test: ``times``, ``idx``, ``labels`` arrays (``harness.yinyang_split``).
        p: neuron constants (``tau_mem``, ``t_max``).
        target: test accuracy to reach, e.g. 0.98.
        max_epochs, max_seconds: bounds of the run (the time bound is checked after each epoch).

    Returns:
        dict: ``reached`` (bool), ``epochs``, ``seconds_to_target`` (wall time from the start of
        training, compilation and per-epoch tests included; None if not reached),
        ``train_seconds_to_target`` (training epochs only), per-epoch ``test_accuracy``,
        ``epoch_s`` and ``test_s``.
    """
    r = RECIPE
    batch = r["batch"]
    n_batches = len(train["labels"]) // batch
    schedule = optax.exponential_decay(r["lr"], n_batches * max_epochs, r["lr_final"])
    optimizer = optax.chain(optax.clip_by_global_norm(r["clip"]), optax.adam(schedule))

    def loss_fn(w, times, idx, labels):
        hidden_first, first = forward(w, times, idx)
        return hybrid_loss(first, labels, p), (hidden_first, first)

    def step(state, data):
        w, opt_state = state
        times, idx, labels = data
        (loss, (hidden_first, first)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            w, times, idx, labels)
        updates, opt_state = optimizer.update(grads, opt_state, w)
        # weight bumping after Adam: a hidden neuron silent for the whole batch, an output
        # neuron by the fraction of its label's samples in which it stayed silent
        silent_hidden = jnp.all(~jnp.isfinite(hidden_first), axis=0).astype(w[0].dtype)
        is_label = labels[:, None] == jnp.arange(first.shape[-1])
        silent_out = (jnp.sum(is_label & ~jnp.isfinite(first), axis=0)
                      / jnp.maximum(jnp.sum(is_label, axis=0), 1)).astype(w[1].dtype)
        updates = (updates[0] + r["bump"] * silent_hidden, updates[1] + r["bump"] * silent_out)
        return (optax.apply_updates(w, updates), opt_state), loss

    epoch_fn = jax.jit(lambda state, data: jax.lax.scan(step, state, data))
    test_fn = jax.jit(lambda w, times, idx, labels: jnp.mean(correct(forward(w, times, idx)[1], labels)))
    test_in = [jnp.asarray(test[k]) for k in ("times", "idx", "labels")]
    rng = np.random.default_rng(seed)
    state = (tuple(jnp.asarray(x) for x in weights), None)
    state = (state[0], optimizer.init(state[0]))
    history: Dict[str, list] = {"test_accuracy": [], "epoch_s": [], "test_s": [], "loss": []}
    start = time.perf_counter()
    train_seconds = 0.0
    reached = False
    for _ in range(max_epochs):
        order = rng.permutation(len(train["labels"]))[: n_batches * batch]
        data = tuple(jnp.asarray(train[k][order].reshape((n_batches, batch) + train[k].shape[1:]))
                     for k in ("times", "idx", "labels"))
        t0 = time.perf_counter()
        state, losses = epoch_fn(state, data)
        jax.block_until_ready(state)
        t1 = time.perf_counter()
        accuracy = float(test_fn(state[0], *test_in))
        t2 = time.perf_counter()
        train_seconds += t1 - t0
        history["epoch_s"].append(round(t1 - t0, 4))
        history["test_s"].append(round(t2 - t1, 4))
        history["test_accuracy"].append(accuracy)
        history["loss"].append(float(jnp.mean(losses)))
        if accuracy >= target:
            reached = True
            break
        if time.perf_counter() - start > max_seconds:
            break
    total = time.perf_counter() - start
    return {"reached": reached, "target": target, "epochs": len(history["test_accuracy"]),
            "max_epochs": max_epochs, "max_seconds": max_seconds,
            "seconds_to_target": round(total, 3) if reached else None,
            "train_seconds_to_target": round(train_seconds, 3) if reached else None,
            "seconds_run": round(total, 3), "best_test_accuracy": max(history["test_accuracy"]),
            "recipe": dict(RECIPE, max_epochs=max_epochs), **history}
