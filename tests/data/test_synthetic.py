"""Circle, linear, constant and Randman datasets."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn import data

KEY = jax.random.PRNGKey(0)


def test_circle_labels_follow_geometry_and_are_balanced():
    inputs, labels = data.circle(KEY, 2000)
    x, y = np.asarray(inputs[:, 0]), np.asarray(inputs[:, 1])
    np.testing.assert_allclose(inputs[:, 2:], 1.0 - inputs[:, :2], rtol=0, atol=1e-7)
    inside = (x - 0.5) ** 2 + (y - 0.5) ** 2 < data.BALANCED_RADIUS**2
    np.testing.assert_array_equal(labels, inside.astype(np.int32))
    assert abs(float(labels.mean()) - 0.5) < 0.04  # 3.6 sigma of binomial(2000, 0.5)
    small, small_labels = data.circle(KEY, 500, radius=0.1, center=(0.2, 0.3), mirror=False)
    assert small.shape == (500, 2)
    expected = (small[:, 0] - 0.2) ** 2 + (small[:, 1] - 0.3) ** 2 < 0.01
    np.testing.assert_array_equal(small_labels, expected)


def test_linear_labels_follow_line():
    inputs, labels = data.linear(KEY, 500, slope=-0.5, intercept=0.7)
    expected = inputs[:, 1] > -0.5 * inputs[:, 0] + 0.7
    np.testing.assert_array_equal(labels, expected.astype(np.int32))
    assert 0 < int(labels.sum()) < 500
    again = data.linear(KEY, 500, slope=-0.5, intercept=0.7)
    np.testing.assert_array_equal(inputs, again.inputs)


def test_constant():
    inputs, labels = data.constant(4, value=(0.1, 0.9), label=2)
    np.testing.assert_allclose(inputs, [[0.1, 0.9]] * 4, rtol=1e-7)
    np.testing.assert_array_equal(labels, [2, 2, 2, 2])


def test_synthetic_sets_are_jittable():
    jitted = jax.jit(functools.partial(data.circle, size=10))
    np.testing.assert_array_equal(jitted(KEY).labels, data.circle(KEY, 10).labels)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: data.circle(KEY, -1), ValueError, "size must be >= 0"),
        (lambda: data.circle(KEY, 10, radius=0.0), ValueError, "radius must be > 0"),
        (lambda: data.circle(KEY, 10, center=(0.5,)), ValueError, "center must be a pair"),
        (lambda: data.circle(KEY, 10, center=(0.5, np.nan)), ValueError, "center must be finite"),
        (lambda: data.linear(KEY, 10, slope="steep"), TypeError, "slope must be a number"),
        (lambda: data.linear(KEY, 10, intercept=np.inf), ValueError, "intercept must be finite"),
        (lambda: data.constant(3, value=()), ValueError, "value must be a non-empty 1-d"),
        (lambda: data.constant(3, value=(np.nan,)), ValueError, "value must be finite"),
        (lambda: data.constant(3, label=-1), ValueError, "label must be >= 0"),
        (lambda: data.constant(2.0), TypeError, "size must be an int"),
    ],
)
def test_synthetic_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_randman_embed_matches_numpy_formula(x64):
    params = data.randman_params(KEY, n_classes=2, embedding_dim=3, manifold_dim=2, alpha=2.0)
    coords = np.array([0.3, 0.8])
    a, f, p = (np.asarray(field[1]) for field in params[:3])  # class 1: (n, d, K)
    k = np.arange(1, a.shape[-1] + 1)
    expected = np.ones(3)
    for j in range(3):
        for i in range(2):
            phase = 2 * np.pi * (k * f[j, i] * coords[i] + p[j, i])
            expected[j] *= np.sum(a[j, i] / k**2.0 * np.sin(phase))
    np.testing.assert_allclose(data.randman_embed(params, coords, 1), expected, rtol=1e-12)
    assert a.shape[-1] == data.n_terms(2.0) == math.ceil(1e-3 ** -0.5)


def test_randman_dataset_range_balance_and_smoothness():
    inputs, labels = data.randman(KEY, n_classes=3, samples_per_class=40, embedding_dim=6)
    ordered = data.randman(KEY, n_classes=3, samples_per_class=40, embedding_dim=6, shuffle=False)
    np.testing.assert_array_equal(ordered.labels, np.repeat([0, 1, 2], 40))
    # same samples, only reordered
    np.testing.assert_allclose(np.sort(ordered.inputs[:, 0]), np.sort(inputs[:, 0]), rtol=1e-6)
    assert inputs.shape == (120, 6) and labels.dtype == jnp.int32
    assert float(inputs.min()) == 0.0 and float(inputs.max()) == pytest.approx(1.0)
    assert np.bincount(np.asarray(labels)).tolist() == [40, 40, 40]
    assert not np.array_equal(np.asarray(labels[:40]), np.zeros(40))  # shuffled
    # smooth: nearby intrinsic points map to nearby embeddings, other classes map elsewhere
    params = data.randman_params(KEY, 2, 6, alpha=2.0)
    here, near = data.randman_embed(params, jnp.array([0.4]), 0), data.randman_embed(
        params, jnp.array([0.401]), 0)
    elsewhere = data.randman_embed(params, jnp.array([0.4]), 1)
    assert float(jnp.linalg.norm(here - near)) < 0.05 * float(jnp.linalg.norm(here - elsewhere))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(n_classes=0), ValueError, "n_classes must be >= 1"),
        (dict(embedding_dim=0), ValueError, "embedding_dim must be >= 1"),
        (dict(manifold_dim=1.5), TypeError, "manifold_dim must be an int"),
        (dict(samples_per_class=0), ValueError, "samples_per_class must be >= 1"),
        (dict(alpha=0.0), ValueError, "alpha must be a finite number > 0"),
        (dict(precision=1.0), ValueError, r"precision must lie in \(0, 1\)"),
        (dict(max_terms=0), ValueError, "max_terms must be >= 1"),
    ],
)
def test_randman_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        data.randman(KEY, **kwargs)
