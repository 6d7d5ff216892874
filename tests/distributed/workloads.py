"""Small networks and training steps shared by the device, multi-host and checkpoint tests.

Kept tiny so that each compiles in a few seconds; the tests run them in subprocesses (simulated
devices, several processes), so this module must not import pytest.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxsnn
from jaxsnn import distributed
from jaxsnn import spikes as spikes_lib
from jaxsnn.discrete import LI, LIF
from jaxsnn.encode import latency_spikes
from jaxsnn.event import LIF as EventLIF
from jaxsnn.initializers import normal

STEPS, N_IN, N_CLASSES = 12, 5, 3
T_MAX = 0.03


def optimizer() -> optax.GradientTransformation:
    # the global-norm clip is itself a sum over all parameters: it must match as well
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))


def discrete_problem(batch: int = 16, seed: int = 0) -> Tuple[jaxsnn.Layer, Any, Any]:
    """``LIF(8) -> LI(3)`` on ``(STEPS, 5)`` Bernoulli inputs, random labels."""
    neuron = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)
    net = jaxsnn.serial(LIF(8, weight_scale=8.0, **neuron), LI(N_CLASSES, **neuron))
    _, params = net.init(jax.random.PRNGKey(seed), (STEPS, N_IN))
    rng = np.random.default_rng(seed)
    inputs = (rng.random((batch, STEPS, N_IN)) < 0.3).astype(np.float32)
    labels = rng.integers(0, N_CLASSES, batch).astype(np.int32)
    return net, params, (inputs, labels)


def discrete_sample_loss(net: jaxsnn.Layer) -> Callable[[Any, Any], Tuple[jax.Array, jax.Array]]:
    """Per-sample max-membrane cross-entropy; the per-sample output is the hidden spike count."""

    def sample_loss(params: Any, sample: Any) -> Tuple[jax.Array, jax.Array]:
        inputs, label = sample
        _, membrane, recording = net.apply(params, inputs)
        logits = jnp.max(membrane, axis=0)
        return -jax.nn.log_softmax(logits)[label], jnp.sum(recording[0].spikes)

    return sample_loss


def event_problem(batch: int = 8, seed: int = 0) -> Tuple[jaxsnn.Layer, Any, Any]:
    """``LIF(8) -> LIF(3)`` (EventProp), one spike per neuron, latency-coded random points."""
    common = dict(tau_syn=5e-3, tau_mem=1e-2, t_max=T_MAX, t_ref=T_MAX, gradient="eventprop")
    net = jaxsnn.serial(
        EventLIF(8, capacity=8, weight_init=normal(1.0, 2.5), **common),
        EventLIF(N_CLASSES, capacity=N_CLASSES, weight_init=normal(0.8, 1.5), **common),
    )
    _, params = net.init(jax.random.PRNGKey(seed), (N_IN,))
    rng = np.random.default_rng(seed)
    points = rng.random((batch, 4)).astype(np.float32)
    inputs = latency_spikes(jnp.asarray(points), t_min=0.0, t_max=0.01, bias_time=0.0)
    labels = rng.integers(0, N_CLASSES, batch).astype(np.int32)
    return net, params, (jax.tree_util.tree_map(np.asarray, inputs), labels)


def first_spike_loss(first: jax.Array, label: jax.Array) -> jax.Array:
    """Squared error of the output first-spike times to 4 ms (label) and 7 ms (others)."""
    targets = jnp.where(jnp.arange(N_CLASSES) == label, 4e-3, 7e-3)
    return jaxsnn.loss.first_spike_mse(first, targets, t_missing=T_MAX) / 1e-4


def event_sample_loss(net: jaxsnn.Layer) -> Callable[[Any, Any], Tuple[jax.Array, jax.Array]]:
    """Per-sample first-spike loss; the per-sample output is the output first-spike times."""

    def sample_loss(params: Any, sample: Any) -> Tuple[jax.Array, jax.Array]:
        inputs, label = sample
        _, out, _ = net.apply(params, inputs)
        first = spikes_lib.first_spike_times(out, N_CLASSES)
        return first_spike_loss(first, label), first

    return sample_loss


def plain_step(sample_loss: Callable, opt: optax.GradientTransformation) -> Callable:
    """The ordinary step: mean loss over the batch (``vmap``), one gradient, one update."""

    def step(params: Any, opt_state: Any, batch: Any) -> Tuple[Any, Any, jax.Array, Any]:
        def batch_loss(p: Any) -> Tuple[jax.Array, Any]:
            losses, per_sample = jax.vmap(sample_loss, in_axes=(None, 0))(p, batch)
            return jnp.mean(losses), per_sample

        (loss, per_sample), grads = jax.value_and_grad(batch_loss, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, per_sample

    return step


def chunked_step(sample_loss: Callable, opt: optax.GradientTransformation, mesh: Any, chunks: int) -> Callable:
    """The same step with the batch sums taken by ``distributed.chunked_sum``."""

    def chunk_terms(params: Any, chunk: Any) -> Tuple[Any, Any]:
        def chunk_loss(p: Any) -> Tuple[jax.Array, Any]:
            losses, per_sample = jax.vmap(sample_loss, in_axes=(None, 0))(p, chunk)
            return jnp.sum(losses), per_sample

        (loss, per_sample), grads = jax.value_and_grad(chunk_loss, has_aux=True)(params)
        return (loss, grads), per_sample

    summed = distributed.chunked_sum(chunk_terms, mesh, chunks=chunks)

    def step(params: Any, opt_state: Any, batch: Any) -> Tuple[Any, Any, jax.Array, Any]:
        size = jax.tree_util.tree_leaves(batch)[0].shape[0]
        (loss, grads), per_sample = summed(params, batch)
        grads = jax.tree_util.tree_map(lambda g: g / size, grads)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss / size, per_sample

    return step


def train(step: Callable, params: Any, opt_state: Any, batches: Any, n_steps: int) -> Tuple[Any, Any, list, Any]:
    """``n_steps`` steps on the same batch; returns params, state, losses, last per-sample output."""
    losses = []
    per_sample = None
    for _ in range(n_steps):
        params, opt_state, loss, per_sample = step(params, opt_state, batches)
        losses.append(loss)
    # wait: host callbacks of the last step must have run before anyone counts them
    return jax.block_until_ready((params, opt_state, losses, per_sample))


def max_abs_difference(a: Any, b: Any) -> float:
    """Largest absolute elementwise difference of two pytrees (on the host; inf == inf)."""
    a, b = distributed.to_host(a), distributed.to_host(b)
    worst = 0.0
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            return float("inf")
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        worst = max(worst, float(np.max(np.where(same, 0.0, np.abs(x - y)), initial=0.0)))
    return worst


def bitwise_equal(a: Any, b: Any) -> bool:
    """Same structure, shapes, dtypes and bytes."""
    a, b = distributed.to_host(a), distributed.to_host(b)
    if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
        return False
    return all(
        x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    )
