"""Gradient comparison (matched by tree path) and loss landscapes."""

from __future__ import annotations

from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn
from jaxsnn import analysis
from jaxsnn.discrete import LIF, surrogate

RNG = np.random.default_rng(0)


def _tree(scale=1.0):
    return [
        {"weight": jnp.asarray(RNG.normal(size=(4, 3)) * scale)},
        {"weight": jnp.asarray(RNG.normal(size=(3, 2)) * scale),
         "bias": jnp.asarray(RNG.normal(size=2))},
    ]


def _np_cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_metrics_against_numpy():
    a, b = _tree(), _tree()
    # zeros in the reference (a silent neuron's gradient) are left out of the sign agreement
    b[0]["weight"] = b[0]["weight"].at[0].set(0.0)
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(t)])  # noqa
    fa, fb = flat(a), flat(b)
    np.testing.assert_allclose(analysis.cosine_similarity(a, b), _np_cos(fa, fb), rtol=1e-6)
    agree = np.mean(np.sign(fa[fb != 0]) == np.sign(fb[fb != 0]))
    assert agree != np.mean(np.sign(fa) == np.sign(fb))  # the zeros matter here
    np.testing.assert_allclose(analysis.sign_agreement(a, b), agree, rtol=1e-6)
    np.testing.assert_allclose(analysis.relative_norm(a, b),
                               np.linalg.norm(fa) / np.linalg.norm(fb), rtol=1e-6)
    layers = analysis.cosine_similarity(a, b, by="layer")
    assert set(layers) == {"[0]", "[1]"}
    layer1 = np.concatenate([np.ravel(a[1]["bias"]), np.ravel(a[1]["weight"])])
    ref1 = np.concatenate([np.ravel(b[1]["bias"]), np.ravel(b[1]["weight"])])
    np.testing.assert_allclose(layers["[1]"], _np_cos(layer1, ref1), rtol=1e-6)
    leaves = analysis.compare(a, b, by="leaf")
    assert set(leaves) == {"[0]['weight']", "[1]['bias']", "[1]['weight']"}
    np.testing.assert_allclose(leaves["[1]['bias']"]["cosine"],
                               _np_cos(np.ravel(a[1]["bias"]), np.ravel(b[1]["bias"])), rtol=1e-6)
    assert float(analysis.cosine_similarity(a, a)) == pytest.approx(1.0)
    assert float(analysis.cosine_similarity(a, jax.tree_util.tree_map(lambda x: -x, a))) == \
        pytest.approx(-1.0)


def test_matched_by_path_not_leaf_order():
    """OrderedDicts keep insertion order, so the leaf orders differ; paths decide."""
    w, v = jnp.arange(1.0, 7.0), jnp.asarray([1.0, -1.0])
    estimate = OrderedDict([("w", w), ("v", v)])
    reference = OrderedDict([("v", v), ("w", w)])
    first = [jax.tree_util.tree_leaves(t)[0].shape for t in (estimate, reference)]
    assert first[0] != first[1]
    assert float(analysis.cosine_similarity(estimate, reference)) == pytest.approx(1.0)
    per = analysis.cosine_similarity(estimate, reference, by="leaf")
    assert float(per["['w']"]) == pytest.approx(1.0) and float(per["['v']"]) == pytest.approx(1.0)
    swapped = OrderedDict([("v", v), ("w", -w)])
    assert float(analysis.cosine_similarity(estimate, swapped, by="leaf")["['w']"]) == \
        pytest.approx(-1.0)


def test_zero_norm_is_nan_not_a_silent_pass():
    a = _tree()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, a)
    assert np.isnan(float(analysis.cosine_similarity(a, zeros)))
    assert np.isnan(float(analysis.sign_agreement(a, zeros)))
    assert np.isnan(float(analysis.relative_norm(a, zeros)))


def test_comparison_errors():
    a = _tree()
    b = [a[0], {"weight": a[1]["weight"]}]
    with pytest.raises(ValueError, match=r"missing in the estimate \[\"\[1\]\['bias'\]\"\]"):
        analysis.cosine_similarity(b, a)
    with pytest.raises(ValueError, match=r"not in the reference \[\"\[1\]\['bias'\]\"\]"):
        analysis.cosine_similarity(a, b)
    c = [a[0], {"weight": a[1]["weight"][:2], "bias": a[1]["bias"]}]
    with pytest.raises(ValueError, match=r"at \[1\]\['weight'\] have different shapes"):
        analysis.relative_norm(c, a)
    with pytest.raises(ValueError, match="by must be one of"):
        analysis.cosine_similarity(a, a, by="neuron")
    with pytest.raises(ValueError, match="hold no arrays"):
        analysis.cosine_similarity([], [])


def test_metrics_under_jit_vmap_and_grad():
    a, b = _tree(), _tree()
    jitted = jax.jit(lambda x, y: analysis.compare(x, y, by="layer"))(a, b)
    np.testing.assert_allclose(jitted["[0]"]["cosine"],
                               analysis.cosine_similarity(a, b, by="layer")["[0]"], rtol=1e-6)
    stacked = jax.tree_util.tree_map(lambda x, y: jnp.stack([x, y]), a, b)
    cos = jax.vmap(lambda x: analysis.cosine_similarity(x, b))(stacked)
    np.testing.assert_allclose(cos, [analysis.cosine_similarity(a, b), 1.0], rtol=1e-6)
    grad = jax.grad(lambda x: analysis.cosine_similarity(x, b))(a)
    # d cos / d a is orthogonal to a (cos is scale invariant)
    dot = sum(float(jnp.vdot(g, x)) for g, x in zip(jax.tree_util.tree_leaves(grad),
                                                      jax.tree_util.tree_leaves(a)))
    assert abs(dot) < 1e-5 and all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grad))


def test_compare_rules_table():
    kw = dict(tau_syn=0.0, tau_mem=1e-2, dt=1e-3, input_scale=1.0,
              surrogate=surrogate.superspike(10.0))
    net = jaxsnn.serial(LIF(5, **kw), LIF(3, **kw))
    _, params = net.init(jax.random.PRNGKey(0), (8, 4))
    params = jax.tree_util.tree_map(lambda w: (w + 0.5) * 2.0, params)
    inputs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (3, 8, 4)).astype(jnp.float32)
    labels = jnp.broadcast_to(jnp.arange(3)[:, None], (3, 8))
    loss = lambda y, t: -jax.nn.log_softmax(y)[t]  # noqa: E731
    table = analysis.compare_rules(net, params, (inputs, labels), loss, ["ostl", "rtrl"])
    assert set(table) == {"ostl", "rtrl"}
    assert set(table["rtrl"]) == {"global", "[0] LIF(5)", "[1] LIF(3)"}
    for group in table["rtrl"].values():
        assert group["cosine"] == pytest.approx(1.0, abs=1e-5)
        assert group["relative_norm"] == pytest.approx(1.0, abs=1e-4)
    assert table["ostl"]["[1] LIF(3)"]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert table["ostl"]["[0] LIF(5)"]["cosine"] < 0.999
    markdown = analysis.format_table(table)
    assert markdown.splitlines()[0] == "| rule | global | [0] LIF(5) | [1] LIF(3) |"
    assert "| rtrl | 1.000 | 1.000 | 1.000 |" in markdown
    with pytest.raises(ValueError, match=r"batch must be \(inputs \(batch, time"):
        analysis.compare_rules(net, params, (inputs[0], labels[0]), loss, ["ostl"])


def _quadratic_trajectory():
    """Checkpoints moving in the plane spanned by two known directions, towards 0."""
    e1 = {"a": jnp.asarray([1.0, 0.0, 0.0]), "b": jnp.asarray([[0.0, 0.0]])}
    e2 = {"a": jnp.asarray([0.0, 0.0, 0.0]), "b": jnp.asarray([[0.0, 1.0]])}
    center = {"a": jnp.asarray([0.5, -1.0, 2.0]), "b": jnp.asarray([[3.0, 1.0]])}
    coords = [(-3.0, 1.0), (-2.0, 0.6), (-1.0, 0.1), (-0.5, 0.05), (0.0, 0.0)]
    trajectory = [
        jax.tree_util.tree_map(lambda c, x, y: c + s * x + t * y, center, e1, e2)
        for s, t in coords
    ]
    return center, trajectory, np.asarray(coords)


def test_pca_directions_recover_the_plane_and_projection():
    center, trajectory, coords = _quadratic_trajectory()
    directions = analysis.pca_directions([trajectory], center)
    d1 = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(directions.d1)])
    d2 = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(directions.d2)])
    assert abs(d1 @ d2) < 1e-6 and abs(np.linalg.norm(d1) - 1) < 1e-6
    assert abs(np.linalg.norm(d2) - 1) < 1e-6
    # both directions lie in the plane of the trajectory (entries 0 and 4 of the flat vector)
    np.testing.assert_allclose(d1[[1, 2, 3]], 0.0, atol=1e-6)
    np.testing.assert_allclose(d2[[1, 2, 3]], 0.0, atol=1e-6)
    np.testing.assert_allclose(float(jnp.sum(directions.explained)), 1.0, rtol=1e-6)
    # d1 is the top right-singular vector of the deviations (NumPy SVD, independent)
    deviations = np.stack([coords[:, 0], coords[:, 1]], axis=1)
    _, _, vt = np.linalg.svd(deviations, full_matrices=False)
    np.testing.assert_allclose(np.abs(d1[[0, 4]]), np.abs(vt[0]), atol=1e-6)
    # projecting reconstructs every checkpoint (they lie in the plane)
    projected = np.asarray(analysis.project(trajectory, directions))
    for (a, b), point in zip(projected, trajectory):
        rebuilt = jax.tree_util.tree_map(lambda c, x, y: c + a * x + b * y, center,
                                         directions.d1, directions.d2)
        for u, w in zip(jax.tree_util.tree_leaves(rebuilt), jax.tree_util.tree_leaves(point)):
            np.testing.assert_allclose(u, w, atol=1e-5)
    # training moves in +d1: the first checkpoint has a non-positive coordinate
    assert projected[0, 0] <= 0 and projected[0, 1] <= 0
    with pytest.raises(ValueError, match="at least two checkpoints"):
        analysis.pca_directions([trajectory[:1]], center)
    with pytest.raises(ValueError, match="structure and shapes of the centre"):
        analysis.pca_directions([[{"a": jnp.zeros(2), "b": jnp.zeros((1, 2))}] * 2], center)


def test_loss_grid_is_the_loss_on_the_plane():
    center, trajectory, _ = _quadratic_trajectory()
    directions = analysis.pca_directions([trajectory], center)

    def loss(p):
        return jnp.sum(p["a"] ** 2) + 2.0 * jnp.sum(p["b"] ** 2)

    alphas, betas = jnp.linspace(-1, 1, 5), jnp.linspace(-2, 2, 4)
    grid = np.asarray(analysis.loss_grid(loss, directions, alphas, betas))
    assert grid.shape == (5, 4)
    for i, a in enumerate(np.asarray(alphas)):
        for j, b in enumerate(np.asarray(betas)):
            point = jax.tree_util.tree_map(lambda c, x, y: c + a * x + b * y, center,
                                           directions.d1, directions.d2)
            np.testing.assert_allclose(grid[i, j], loss(point), rtol=1e-5)
    with pytest.raises(ValueError, match="alphas and betas must be 1-D"):
        analysis.loss_grid(loss, directions, jnp.zeros((2, 2)), betas)


def test_plot_landscape_draws_contours_and_trajectories():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas, betas = np.linspace(-1, 1, 6), np.linspace(-1, 1, 5)
    losses = alphas[:, None] ** 2 + betas[None, :] ** 2
    ax = analysis.plot_landscape(alphas, betas, losses,
                                 {"bptt": np.asarray([[-1.0, -1.0], [0.0, 0.0]])}, title="t")
    assert ax.get_title() == "t" and ax.get_legend() is not None
    assert [line.get_label() for line in ax.get_lines()][0] == "bptt"
    plt.close(ax.figure)
