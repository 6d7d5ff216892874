"""Losses and accuracy helpers: values vs NumPy float64, gradients with missing spikes,
jit/vmap/grad, and every error path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn import loss

INF = np.inf
# batch of 3 samples, 3 classes; sample 1 has a silent correct neuron, sample 2 is all silent
TIMES = np.array([[1.0, 2.5, 3.0], [0.7, INF, 2.0], [INF, INF, INF]])
LABELS = np.array([0, 1, 2])
T_MISSING = 4.0


def np_log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_cross_entropy(logits, labels):
    return -np.mean(np.take_along_axis(np_log_softmax(logits), labels[..., None], -1))


def central_difference(fn, x, h=1e-6):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        if not np.isfinite(x[index]):
            continue
        up, down = x.copy(), x.copy()
        up[index] += h
        down[index] -= h
        grad[index] = (fn(up) - fn(down)) / (2 * h)
    return grad


def test_cross_entropy_losses_match_numpy(x64):
    rng = np.random.default_rng(0)
    membrane = rng.normal(size=(4, 6, 3))
    spikes = (rng.random(size=(4, 6, 3)) < 0.4).astype(np.float64)
    labels = np.array([0, 2, 1, 2])
    # float64 reference; only summation order differs -> rtol 1e-12
    np.testing.assert_allclose(
        loss.max_membrane_cross_entropy(membrane, labels),
        np_cross_entropy(membrane.max(axis=1), labels), rtol=1e-12)
    np.testing.assert_allclose(
        loss.spike_count_cross_entropy(spikes, labels, scale=0.5),
        np_cross_entropy(0.5 * spikes.sum(axis=1), labels), rtol=1e-12)
    np.testing.assert_allclose(
        loss.cross_entropy(membrane[:, 0], labels), np_cross_entropy(membrane[:, 0], labels),
        rtol=1e-12)


def test_first_spike_losses_match_numpy(x64):
    filled = np.where(np.isinf(TIMES), T_MISSING, TIMES)
    targets = np.array([[1.0, 3.0, 3.0], [3.0, 1.0, 3.0], [3.0, 3.0, 1.0]])
    np.testing.assert_allclose(
        loss.first_spike_mse(TIMES, targets, t_missing=T_MISSING),
        np.mean((filled - targets) ** 2), rtol=1e-12)
    np.testing.assert_allclose(
        loss.first_spike_cross_entropy(TIMES, LABELS, temperature=0.5, t_missing=T_MISSING),
        np_cross_entropy(-filled / 0.5, LABELS), rtol=1e-12)
    tau_0, tau_1, alpha = 0.5, 6.4, 3e-3
    correct = filled[np.arange(3), LABELS]
    expected = np_cross_entropy(-filled / tau_0, LABELS) + alpha * np.mean(
        np.exp(correct / tau_1) - 1.0)
    value = loss.wunderlich_pehle_loss(
        TIMES, LABELS, tau_0=tau_0, tau_1=tau_1, alpha=alpha, t_missing=T_MISSING)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    temperature, mse_weight, time_scale, early_weight = 0.5, 2.0, 1.5, 0.3
    expected = (np_cross_entropy(-filled / temperature, LABELS)
                + early_weight * np.mean(correct) / T_MISSING
                + mse_weight * np.mean((filled - targets) ** 2) / time_scale**2)
    value = loss.first_spike_hybrid_loss(
        TIMES, LABELS, targets=targets, temperature=temperature, t_missing=T_MISSING,
        mse_weight=mse_weight, time_scale=time_scale, early_weight=early_weight)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    # without the squared error and the early term it is the first-spike cross-entropy
    np.testing.assert_allclose(
        loss.first_spike_hybrid_loss(TIMES, LABELS, targets=targets, temperature=temperature,
                                     t_missing=T_MISSING, mse_weight=0.0),
        loss.first_spike_cross_entropy(TIMES, LABELS, temperature=temperature, t_missing=T_MISSING),
        rtol=1e-12)


FIRST_SPIKE_LOSSES = {
    "mse": lambda t: loss.first_spike_mse(t, jnp.ones_like(jnp.nan_to_num(t, posinf=0.0)),
                                          t_missing=T_MISSING),
    "cross_entropy": lambda t: loss.first_spike_cross_entropy(
        t, jnp.asarray(LABELS), temperature=0.5, t_missing=T_MISSING),
    "wunderlich_pehle": lambda t: loss.wunderlich_pehle_loss(
        t, jnp.asarray(LABELS), tau_0=0.5, tau_1=6.4, alpha=3e-3, t_missing=T_MISSING),
    "hybrid": lambda t: loss.first_spike_hybrid_loss(
        t, jnp.asarray(LABELS), targets=jnp.full(t.shape, 2.0), temperature=0.5,
        t_missing=T_MISSING, mse_weight=2.0, time_scale=1.5, early_weight=0.3),
}


@pytest.mark.parametrize("name", sorted(FIRST_SPIKE_LOSSES))
def test_gradients_with_missing_spikes_are_finite_and_exact(x64, name):
    fn = FIRST_SPIKE_LOSSES[name]
    value, grad = jax.jit(jax.value_and_grad(fn))(jnp.asarray(TIMES))
    assert np.isfinite(value)
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[np.isinf(TIMES)] == 0.0)  # missing spikes: exactly zero gradient
    numeric = central_difference(lambda t: float(fn(jnp.asarray(t))), TIMES.copy())
    # float64 central differences with h=1e-6: truncation + rounding error < 1e-8 relative
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


def test_gradient_through_first_spike_times_of_a_buffer():
    from jaxsnn import spikes as spike_buffers

    events = spike_buffers.from_lists([0.1, 0.3, 0.2], [0, 0, 2], capacity=5)  # neuron 1 silent

    def total(time):
        first = spike_buffers.first_spike_times(spike_buffers.Spikes(time, events.idx), 3)
        return loss.wunderlich_pehle_loss(first, jnp.array(1), tau_0=0.5, tau_1=6.4, alpha=3e-3,
                                          t_missing=1.0)

    grad = np.asarray(jax.grad(total)(events.time))
    assert np.all(np.isfinite(grad))
    # only the first spike of each neuron matters; padding slots get 0
    assert grad[2] == 0.0 and np.all(grad[3:] == 0.0) and grad[0] != 0.0 and grad[1] != 0.0


def test_replace_missing_double_where():
    grad = jax.grad(lambda t: jnp.sum(jnp.exp(loss.replace_missing(t, 2.0)) ** 2))(
        jnp.array([0.5, jnp.inf]))
    assert np.all(np.isfinite(grad)) and float(grad[1]) == 0.0
    np.testing.assert_array_equal(loss.replace_missing(jnp.array([1.0, jnp.inf]), 3.0), [1.0, 3.0])


def test_vmap_of_per_sample_loss_equals_batched_loss():
    membrane = jax.random.normal(jax.random.PRNGKey(0), (5, 7, 3))
    labels = jnp.array([0, 1, 2, 1, 0])
    per_sample = jax.vmap(loss.max_membrane_cross_entropy)(membrane, labels)
    np.testing.assert_allclose(per_sample.mean(), loss.max_membrane_cross_entropy(membrane, labels),
                               rtol=1e-6)
    times = jnp.asarray(TIMES, dtype=jnp.float32)
    per_sample = jax.vmap(
        lambda t, l: loss.first_spike_cross_entropy(t, l, temperature=1.0, t_missing=T_MISSING)
    )(times, jnp.asarray(LABELS))
    batched = loss.first_spike_cross_entropy(times, jnp.asarray(LABELS), temperature=1.0,
                                             t_missing=T_MISSING)
    np.testing.assert_allclose(per_sample.mean(), batched, rtol=1e-6)
    grad = jax.jit(jax.grad(loss.spike_count_cross_entropy))(membrane, labels)
    assert grad.shape == membrane.shape and np.all(np.isfinite(grad))


def test_accuracy_helpers():
    times = jnp.asarray(TIMES)
    assert float(loss.first_spike_accuracy(times, jnp.array([0, 0, 0]))) == pytest.approx(2 / 3)
    assert float(loss.first_spike_accuracy(times, jnp.asarray(LABELS))) == pytest.approx(1 / 3)
    assert np.asarray(loss.predict_first_spike(times)).tolist() == [0, 0, -1]
    tied_times = jnp.array([[1.0, 1.0, 2.0]])
    assert float(loss.first_spike_accuracy(tied_times, jnp.array([0]))) == 0.0
    counts = jnp.array([[0.0, 0.0], [3.0, 1.0], [1.0, 2.0]])
    labels = jnp.array([0, 0, 1])
    assert float(loss.accuracy(counts, labels)) == pytest.approx(2 / 3)  # the tie is wrong
    assert np.asarray(loss.predict_max(counts)).tolist() == [-1, 0, 1]  # the tie: no prediction
    spikes = jnp.stack([counts, jnp.zeros_like(counts)], axis=1)  # (B, T=2, n)
    assert float(loss.spike_count_accuracy(spikes, labels)) == pytest.approx(2 / 3)
    membrane = jnp.array([[[0.1, 0.9], [0.5, 0.2]]])  # max over time: (0.5, 0.9)
    assert float(loss.max_membrane_accuracy(membrane, jnp.array([1]))) == 1.0
    assert float(jax.jit(loss.max_membrane_accuracy)(membrane, jnp.array([0]))) == 0.0


def test_label_errors():
    logits = jnp.zeros((2, 3))
    with pytest.raises(TypeError, match="labels must have an integer dtype"):
        loss.cross_entropy(logits, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        loss.cross_entropy(logits, jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        loss.cross_entropy(logits, jnp.array([0, 3]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        loss.first_spike_accuracy(logits, jnp.array([-1, 0]))


def test_value_errors():
    labels = jnp.array([0, 1])
    with pytest.raises(ValueError, match="membrane contains 1 NaN"):
        loss.max_membrane_cross_entropy(jnp.array([[[jnp.nan, 0.0]], [[0.0, 0.0]]]), labels)
    with pytest.raises(ValueError, match=r"membrane must be \(T, n\)"):
        loss.max_membrane_cross_entropy(jnp.zeros((3,)), jnp.array(0))
    with pytest.raises(ValueError, match=r"spikes must be \(T, n\)"):
        loss.spike_count_accuracy(jnp.zeros((3,)), jnp.array(0))
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        loss.spike_count_cross_entropy(jnp.zeros((2, 4, 2)), labels, scale=0.0)
    with pytest.raises(ValueError, match="logits must have a class axis"):
        loss.cross_entropy(jnp.array(1.0), jnp.array(0))
    with pytest.raises(TypeError, match="logits must be a real-valued array"):
        loss.cross_entropy(jnp.array([True, False]), jnp.array(0))
    with pytest.raises(ValueError, match="only \\+inf .* is allowed"):
        loss.first_spike_cross_entropy(jnp.array([[-jnp.inf, 1.0], [1.0, 1.0]]), labels,
                                       temperature=1.0, t_missing=2.0)
    with pytest.raises(ValueError, match="first_times contains 1 NaN"):
        loss.predict_first_spike(jnp.array([jnp.nan, 1.0]))


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda t, l: loss.first_spike_cross_entropy(t, l, temperature=0.0, t_missing=1.0),
         "temperature must be finite and > 0"),
        (lambda t, l: loss.first_spike_cross_entropy(t, l, temperature=1.0, t_missing=np.inf),
         "t_missing contains 1 NaN/inf value"),
        (lambda t, l: loss.wunderlich_pehle_loss(t, l, tau_0=-1.0, tau_1=1.0, alpha=0.0,
                                                 t_missing=1.0), "tau_0 must be finite and > 0"),
        (lambda t, l: loss.wunderlich_pehle_loss(t, l, tau_0=1.0, tau_1=0.0, alpha=0.0,
                                                 t_missing=1.0), "tau_1 must be finite and > 0"),
        (lambda t, l: loss.wunderlich_pehle_loss(t, l, tau_0=1.0, tau_1=1.0, alpha=-0.1,
                                                 t_missing=1.0), "alpha must be finite and >= 0"),
        (lambda t, l: loss.first_spike_mse(t, jnp.zeros((2, 3)), t_missing=1.0),
         "targets must have the shape of first_times"),
        (lambda t, l: loss.first_spike_mse(t, jnp.full((2, 2), jnp.nan), t_missing=1.0),
         "targets contains 4 NaN"),
        (lambda t, l: loss.first_spike_mse(t, jnp.zeros((2, 2)), t_missing=jnp.ones(2)),
         r"t_missing must be 0-dimensional, got shape \(2,\)"),
        (lambda t, l: loss.first_spike_hybrid_loss(t, l, targets=jnp.zeros((2, 2)), temperature=1.0,
                                                   t_missing=1.0, mse_weight=-1.0),
         "mse_weight must be finite and >= 0"),
        (lambda t, l: loss.first_spike_hybrid_loss(t, l, targets=jnp.zeros((2, 2)), temperature=1.0,
                                                   t_missing=1.0, mse_weight=1.0, time_scale=0.0),
         "time_scale must be finite and > 0"),
        (lambda t, l: loss.first_spike_hybrid_loss(
            t, l, targets=jnp.zeros((2, 2)), temperature=1.0, t_missing=1.0, mse_weight=1.0,
            early_weight=-1.0),
         "early_weight must be finite and >= 0"),
        (lambda t, l: loss.first_spike_hybrid_loss(t, l, targets=jnp.zeros((2, 2)), temperature=1.0,
                                                   t_missing=0.0, mse_weight=1.0),
         "t_missing must be finite and > 0"),
        (lambda t, l: loss.first_spike_hybrid_loss(t, l, targets=jnp.zeros((2, 3)), temperature=1.0,
                                                   t_missing=1.0, mse_weight=1.0),
         "targets must have the shape of first_times"),
        (lambda t, l: loss.first_spike_hybrid_loss(t, jnp.array([0, 2]), targets=jnp.zeros((2, 2)),
                                                   temperature=1.0, t_missing=1.0, mse_weight=1.0),
         r"labels must lie in \[0, 2\)"),
    ],
)
def test_first_spike_argument_errors(fn, message):
    with pytest.raises(ValueError, match=message):
        fn(jnp.array([[1.0, jnp.inf], [0.5, 2.0]]), jnp.array([0, 1]))


def test_one_tie_rule_for_predictions_and_accuracies():
    # integer scores and times make ties common; +inf times are silent neurons
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 3, size=(400, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=400)
    predicted = np.asarray(loss.predict_max(scores))
    unique = (scores == scores.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert 50 < (~unique).sum() < 350  # the draw holds both ties and clear winners
    np.testing.assert_array_equal(predicted, np.where(unique, scores.argmax(axis=1), -1))
    np.testing.assert_allclose(
        loss.accuracy(scores, labels), np.mean(predicted == labels), rtol=1e-6)
    times = np.where(rng.random((400, 3)) < 0.3, np.inf, rng.integers(1, 4, size=(400, 3)))
    predicted = np.asarray(loss.predict_first_spike(times))
    earliest = times.min(axis=1, keepdims=True)
    unique = ((times == earliest).sum(axis=1) == 1) & np.isfinite(earliest[:, 0])
    assert 50 < (~unique).sum() < 350 and np.any(np.all(np.isinf(times), axis=1))
    np.testing.assert_array_equal(predicted, np.where(unique, times.argmin(axis=1), -1))
    np.testing.assert_array_equal(jax.jit(jax.vmap(loss.predict_first_spike))(jnp.asarray(times)),
                                  predicted)
    np.testing.assert_allclose(
        loss.first_spike_accuracy(times, labels), np.mean(predicted == labels), rtol=1e-6)
    membrane = np.stack([scores, scores - 5], axis=1)  # (B, T=2, n): the maximum is the first step
    np.testing.assert_allclose(loss.max_membrane_accuracy(membrane, labels),
                               np.mean(np.asarray(loss.predict_max(scores)) == labels), rtol=1e-6)
    assert np.asarray(loss.predict_first_spike(jnp.array([jnp.inf]))).tolist() == -1
    assert np.asarray(loss.predict_max(jnp.array([2.0]))).tolist() == 0  # one class: no tie


def test_hybrid_loss_under_jit_vmap_and_float32():
    times = jnp.asarray(TIMES, jnp.float32)
    labels = jnp.asarray(LABELS)
    targets = jnp.full(times.shape, 2.0, jnp.float32)
    fn = lambda t, l, y: loss.first_spike_hybrid_loss(  # noqa: E731
        t, l, targets=y, temperature=0.5, t_missing=T_MISSING, mse_weight=2.0, early_weight=0.3)
    batched = fn(times, labels, targets)
    np.testing.assert_allclose(jax.jit(fn)(times, labels, targets), batched, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(fn)(times, labels, targets).mean(), batched, rtol=1e-6)
    grad = jax.grad(fn)(times, labels, targets)
    assert grad.dtype == jnp.float32 and np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[np.isinf(TIMES)] == 0.0)
