"""Small networks and losses shared by the online-learning tests."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.example_libraries import stax

import jaxsnn
from jaxsnn.discrete import LI, LIF, Dense, RecurrentLIF, surrogate

TWO_STATE = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3, surrogate=surrogate.superspike(10.0))
SINGLE_STATE = dict(tau_syn=0.0, tau_mem=1e-2, dt=1e-3, input_scale=1.0,
                    surrogate=surrogate.superspike(10.0))


def cross_entropy(output, target):
    """Per-step softmax cross-entropy of the output (spikes or membrane) for a class label."""
    return -jax.nn.log_softmax(output)[target]


def weighted_cross_entropy(output, target):
    """``target = (label, weight)``: a per-step weight selects the steps with a loss."""
    label, weight = target
    return weight * cross_entropy(output, label)


@functools.lru_cache(maxsize=None)
def build(name: str):
    """``(net, n_in)`` of the named test network (float64 when x64 is enabled).

    One network object per name, so that everything jitted with the network's ``apply`` as a
    static argument (the rules' kernel probe) compiles once per network, not once per test."""
    if name == "feedforward":  # two-state LIF -> single-state LIF with hard reset
        return jaxsnn.serial(
            LIF(6, **TWO_STATE), LIF(3, reset="hard", v_reset=-0.2, **SINGLE_STATE)
        ), 4
    if name == "split":  # stax.Dense / Dense(bias) then LIF / LI with project=False, nested
        return jaxsnn.serial(
            jaxsnn.serial(jaxsnn.stateless(stax.Dense(6)), LIF(6, project=False, **TWO_STATE)),
            Dense(3, bias=True, bias_init=lambda k, s, d: 0.5 * jax.random.normal(k, s, d)),
            LI(3, tau_syn=5e-3, tau_mem=1e-2, dt=1e-3, project=False),
        ), 4
    if name == "recurrent":
        return jaxsnn.serial(RecurrentLIF(5, **TWO_STATE), LIF(3, **TWO_STATE)), 4
    if name == "single_layer":
        return jaxsnn.serial(LIF(3, **TWO_STATE)), 4
    raise KeyError(name)


def scaled_params(net, n_in: int, T: int, seed: int, scale: float, dtype):
    """Parameters drawn by ``init``, shifted positive and scaled so that every layer spikes."""
    _, params = net.init(jax.random.PRNGKey(seed), (T, n_in))

    def excite(a):
        a = np.asarray(a, np.float64)
        if a.ndim == 2:  # weights (n_in, n): mean 0.8 / sqrt(n_in) before scaling
            a = a + 0.8 / np.sqrt(a.shape[0])
        return jnp.asarray(a * scale, dtype)

    return jax.tree_util.tree_map(excite, params)


def spiking_inputs(seed: int, T: int, n_in: int, rate: float, dtype):
    key = jax.random.PRNGKey(seed + 1000)
    return jax.random.bernoulli(key, rate, (T, n_in)).astype(dtype)


def count_spikes(net, params, inputs) -> int:
    """The smallest spike count of the spiking layers (0 if any layer is silent)."""
    _, _, recording = net.apply(params, inputs)
    counts = [
        int(np.sum(np.asarray(record.spikes)))
        for record in recording
        if record is not None and getattr(record, "spikes", None) is not None
    ]
    return min(counts)


def max_relative_error(a, b) -> float:
    """``max |a - b| / max |b|`` over every array, matched by path."""
    from jaxsnn.analysis import paths

    pa, pb = paths(a), paths(b)
    assert pa.keys() == pb.keys()
    worst = 0.0
    for key in pb:
        x, y = np.asarray(pa[key], np.float64), np.asarray(pb[key], np.float64)
        assert np.all(np.isfinite(x)) and np.all(np.isfinite(y))
        scale = np.max(np.abs(y))
        assert scale > 0, f"reference gradient at {key} is zero: nothing compared"
        worst = max(worst, float(np.max(np.abs(x - y)) / scale))
    return worst


@functools.lru_cache(maxsize=None)
def gradient_fn(rule, name):
    """One jitted ``(loss, grads)`` per (rule, network), shared by the test files; the per-step
    loss weights are an argument, so losses at every step and at the last step only (and any
    parameter values) share one compilation."""
    from jaxsnn import online

    net, _ = build(name)

    @jax.jit
    def fn(params, inputs, labels, weights):
        loss, grads, _ = online.sequence_gradient(
            rule, net, params, inputs, (labels, weights), weighted_cross_entropy
        )
        return loss, grads

    return fn
