"""Injection of measured spikes: forward value = measurement, gradient = EventProp at measured times."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn
from jaxsnn.event import LIF, LIFParameters
from jaxsnn.event.eventprop import simulate_eventprop
from jaxsnn.hardware import (
    EmulatedLayer,
    Emulator,
    EmulatorConfig,
    in_the_loop,
    inject,
    measure_host,
)
from jaxsnn.initializers import normal
from jaxsnn.spikes import Spikes

NEURON = LIFParameters(tau_syn=5e-3, tau_mem=1e-2, v_th=1.0)
T_MAX = 0.04
N_IN, N_HID, N_OUT = 4, 5, 3
CAP_HID, CAP_OUT = 10, 6
BATCH = 4


def _network(gradient="eventprop"):
    common = dict(tau_syn=5e-3, tau_mem=1e-2, t_max=T_MAX, gradient=gradient)
    return jaxsnn.serial(
        LIF(N_HID, capacity=CAP_HID, weight_init=normal(0.6, 1.5), **common),
        LIF(N_OUT, capacity=CAP_OUT, weight_init=normal(0.8, 1.2), **common),
    )


def _layers():
    return [EmulatedLayer(N_HID, NEURON, CAP_HID, T_MAX), EmulatedLayer(N_OUT, NEURON, CAP_OUT, T_MAX)]


def _data(dtype):
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0.0, 0.01, (BATCH, N_IN)), axis=-1).astype(dtype)
    idx = np.stack([rng.permutation(N_IN) for _ in range(BATCH)]).astype(np.int32)
    return Spikes(jnp.asarray(times), jnp.asarray(idx))


def _loss_of(hidden: Spikes, out: Spikes):
    """A smooth function of all spike times of both layers (padding contributes nothing)."""
    out_term = jnp.sum(jnp.where(out.idx >= 0, (out.time / T_MAX) ** 2 * (1.0 + out.idx), 0.0))
    hidden_term = jnp.sum(jnp.where(hidden.idx >= 0, hidden.time / T_MAX, 0.0))
    return out_term + 0.5 * hidden_term


@pytest.fixture(scope="module")
def perturbed():
    """A measurement that differs from the software model: fixed-pattern thresholds and jitter."""
    network = _network()
    _, params = network.init(jax.random.PRNGKey(1), (N_IN,))
    emulator = Emulator(_layers(), EmulatorConfig.ideal(threshold_fixed_std=0.1, jitter_std=2e-4), chip_seed=3)
    inputs = _data(np.float32)
    measured, _ = measure_host(emulator, params, inputs, 0)
    measured = [Spikes(jnp.asarray(m.time), jnp.asarray(m.idx)) for m in measured]
    assert all(int(jnp.sum(m.idx >= 0)) > 0 for m in measured)
    return network, params, inputs, measured, emulator


@pytest.fixture(scope="module")
def loop_gradient(perturbed):
    """The two-stage loop: ``measure_host`` ran the chip on the host (the ``perturbed``
    fixture), then value and gradient of the loss through a jitted ``inject`` of that
    measurement (compiled once, shared by tests)."""
    network, params, inputs, measured, _ = perturbed

    def loop_loss(p):
        outputs, recording = inject(network, p, inputs, measured)
        return _loss_of(recording[0].spikes, outputs)

    return jax.jit(jax.value_and_grad(loop_loss))(params)


def test_forward_output_is_the_injected_measurement(perturbed):
    network, params, inputs, measured, _ = perturbed
    outputs, recording = jax.jit(lambda p, x, m: inject(network, p, x, m))(params, inputs, measured)
    np.testing.assert_array_equal(np.asarray(outputs.time), np.asarray(measured[1].time))
    np.testing.assert_array_equal(np.asarray(outputs.idx), np.asarray(measured[1].idx))
    np.testing.assert_array_equal(np.asarray(recording[0].spikes.time), np.asarray(measured[0].time))
    # the software model alone would have produced different spikes
    _, simulated, _ = jax.vmap(lambda x: network.apply(params, x))(inputs)
    assert not np.array_equal(np.asarray(simulated.time), np.asarray(measured[1].time))


def test_gradient_is_eventprop_at_the_measured_times(perturbed, loop_gradient):
    network, params, inputs, measured, _ = perturbed

    def chained_loss(p):
        # EventProp layer by layer, each layer's forward value replaced by its measurement
        def one(x, m_hidden, m_out):
            hidden = simulate_eventprop(p[0]["weight"], x, NEURON, capacity=CAP_HID, t_max=T_MAX,
                                        external_spikes=m_hidden).spikes
            out = simulate_eventprop(p[1]["weight"], hidden, NEURON, capacity=CAP_OUT, t_max=T_MAX,
                                     external_spikes=m_out).spikes
            return hidden, out

        hidden, out = jax.vmap(one)(inputs, measured[0], measured[1])
        return _loss_of(hidden, out)

    _, got = loop_gradient
    expected = jax.jit(jax.grad(chained_loss))(params)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g["weight"]), np.asarray(e["weight"]), rtol=1e-6, atol=1e-9)
    assert float(jnp.max(jnp.abs(got[0]["weight"]))) > 0  # hidden weights get gradient through measured times


@pytest.mark.slow
def test_ideal_chip_in_the_loop_gradient_equals_exact_software_gradient(x64):
    """With a perfect chip the in-the-loop gradient is the exact gradient of the model: checked
    against float64 central finite differences of the software forward pass along random
    directions (rtol 1e-5; step 1e-6 keeps every spike on the same side of t_max)."""
    network = _network()
    _, params = network.init(jax.random.PRNGKey(1), (N_IN,))
    params = jax.tree_util.tree_map(lambda leaf: jnp.asarray(leaf, jnp.float64), params)
    inputs = _data(np.float64)
    emulator = Emulator(_layers(), EmulatorConfig.ideal())
    measured, _ = measure_host(emulator, params, inputs, 0)

    def loop_loss(p):
        outputs, recording = inject(network, p, inputs, measured)
        return _loss_of(recording[0].spikes, outputs)

    @jax.jit
    def software_loss(p):
        _, outputs, recording = jax.vmap(lambda x: network.apply(p, x))(inputs)
        return _loss_of(recording[0].spikes, outputs)

    grads = jax.jit(jax.grad(loop_loss))(params)
    rng = np.random.default_rng(7)
    step = 1e-6
    for _ in range(3):
        direction = [{"weight": jnp.asarray(rng.normal(size=p["weight"].shape))} for p in params]
        shifted = lambda sign: jax.tree_util.tree_map(lambda p, d: p + sign * step * d, params, direction)  # noqa: E731
        numeric = (float(software_loss(shifted(1.0))) - float(software_loss(shifted(-1.0)))) / (2 * step)
        analytic = sum(float(jnp.sum(g["weight"] * d["weight"])) for g, d in zip(grads, direction))
        assert analytic == pytest.approx(numeric, rel=1e-5)


def test_one_call_helper_under_jit_equals_two_stage_host_measurement_then_inject(perturbed, loop_gradient):
    """``in_the_loop`` measures through ``jax.pure_callback`` inside the jitted gradient; the
    two-stage loop measures with ``measure_host`` first and differentiates ``inject`` of that
    measurement. Same trial, same chip: same value, gradient and sanitising report. (Both
    gradients are jitted: an event network run op by op takes minutes to dispatch.)"""
    network, params, inputs, measured, emulator = perturbed
    apply = in_the_loop(network, emulator)

    def loss(p):
        outputs, recording, report = apply(p, inputs, 0)
        return _loss_of(recording[0].spikes, outputs), report

    (value, report), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    _, host_report = measure_host(emulator, params, inputs, 0)
    np.testing.assert_array_equal(np.asarray(report.counts), np.asarray(host_report.counts))
    np.testing.assert_array_equal(np.asarray(report.n_events), np.asarray(host_report.n_events))
    assert int(np.sum(host_report.n_events)) > 0
    expected_value, expected_grads = loop_gradient
    np.testing.assert_allclose(float(value), float(expected_value), rtol=1e-6)
    for g, e in zip(grads, expected_grads):
        np.testing.assert_allclose(np.asarray(g["weight"]), np.asarray(e["weight"]), rtol=1e-6, atol=1e-9)


def test_layer_mapping_errors(perturbed):
    network, params, inputs, measured, emulator = perturbed
    with pytest.raises(ValueError, match="measured_layers must be distinct leaf positions"):
        inject(network, params, inputs, measured, measured_layers=[0, 0])
    with pytest.raises(ValueError, match="the backend measures 2 layers but measured_layers lists 1"):
        in_the_loop(network, emulator, measured_layers=[1])
