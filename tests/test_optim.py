"""jaxsnn.optim: weight bumping as an optax transformation, silent fractions."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsnn.optim import bump_silent, silent_fraction

INF = np.inf


def _params():
    # a serial network's flat params list: 4 -> 3 -> 2, the first layer also recurrent
    hidden = {
        "weight": jnp.arange(12.0, dtype=jnp.float32).reshape(4, 3) / 10,
        "recurrent_weight": jnp.ones((3, 3), jnp.float32),
    }
    output = {"weight": jnp.full((3, 2), 0.5, jnp.float32)}
    return [hidden, output]


def _grads(scale=1.0):
    return jax.tree_util.tree_map(lambda p: scale * jnp.cos(p + 1.0), _params())


def test_bump_adds_amount_times_silent_to_every_input_weight():
    grads = _grads()
    silent = [None, jnp.array([0.0, 0.5], jnp.float32)]
    updates, state = bump_silent(0.1).update(grads, optax.EmptyState(), silent=silent)
    assert state == optax.EmptyState()
    np.testing.assert_array_equal(updates[0]["weight"], grads[0]["weight"])  # None: left alone
    np.testing.assert_array_equal(updates[0]["recurrent_weight"], grads[0]["recurrent_weight"])
    expected = np.asarray(grads[1]["weight"]) + np.float32(0.1) * np.array([0.0, 0.5], np.float32)
    np.testing.assert_array_equal(updates[1]["weight"], expected)
    # every input weight of neuron 1 rose by 0.05, neuron 0 not at all
    np.testing.assert_allclose(
        updates[1]["weight"] - grads[1]["weight"], np.tile([0.0, 0.05], (3, 1)), rtol=1e-6
    )
    # a boolean mask gives the full step; one layer's params may be bumped directly
    mask = jnp.array([True, False, True])
    single, _ = bump_silent(0.25).update(grads[0], optax.EmptyState(), silent=mask)
    np.testing.assert_allclose(
        single["weight"] - grads[0]["weight"], np.tile([0.25, 0.0, 0.25], (4, 1)), rtol=1e-6
    )
    np.testing.assert_array_equal(single["recurrent_weight"], grads[0]["recurrent_weight"])


def test_bump_chained_after_adam_is_not_rescaled_by_it():
    params = _params()
    silent = [jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 1.0])]
    bumped = optax.chain(optax.adam(1e-3), bump_silent(0.05))
    plain = optax.adam(1e-3)
    for scale in (1e-6, 1.0, 1e3):  # Adam normalises the gradient; the bump must not move with it
        grads = _grads(scale)
        updates, _ = bumped.update(grads, bumped.init(params), params, silent=silent)
        reference, _ = plain.update(grads, plain.init(params), params)
        step = np.asarray(updates[1]["weight"] - reference[1]["weight"])
        np.testing.assert_allclose(step, np.tile([0.0, 0.05], (3, 1)), atol=1e-7)
        step = np.asarray(updates[0]["weight"] - reference[0]["weight"])
        np.testing.assert_allclose(step, np.tile([0.05, 0.0, 0.0], (4, 1)), atol=1e-7)
        np.testing.assert_array_equal(
            updates[0]["recurrent_weight"], reference[0]["recurrent_weight"]
        )


def test_bump_under_jit_vmap_grad():
    params, grads = _params(), _grads()
    transform = bump_silent(0.1)
    silent = [jnp.array([0.0, 1.0, 0.5]), jnp.array([0.25, 0.0])]
    eager, _ = transform.update(grads, optax.EmptyState(), silent=silent)
    jitted, _ = jax.jit(lambda g, s: transform.update(g, optax.EmptyState(), silent=s))(
        grads, silent
    )
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_array_equal(a, b)
    # vmap over two seeds: each seed gets its own silent fractions
    stacked = jax.tree_util.tree_map(lambda g: jnp.stack([g, 2 * g]), grads)
    silent2 = [jnp.stack([silent[0], 1 - silent[0]]), jnp.stack([silent[1], 1 - silent[1]])]
    mapped, _ = jax.vmap(lambda g, s: transform.update(g, optax.EmptyState(), silent=s))(
        stacked, silent2
    )
    for seed in range(2):
        one = jax.tree_util.tree_map(lambda x: x[seed], stacked)
        alone, _ = transform.update(one, optax.EmptyState(), silent=[s[seed] for s in silent2])
        for a, b in zip(jax.tree_util.tree_leaves(alone), jax.tree_util.tree_leaves(mapped)):
            np.testing.assert_allclose(a, b[seed], rtol=1e-6)
    # the bump is linear in silent: d sum(updates) / d silent_j = amount * n_inputs
    def total(s):
        updates, _ = transform.update(grads, optax.EmptyState(), silent=s)
        return sum(jnp.sum(u) for u in jax.tree_util.tree_leaves(updates))

    gradient = jax.grad(total)(silent)
    np.testing.assert_allclose(gradient[0], np.full(3, 0.1 * 4), rtol=1e-6)
    np.testing.assert_allclose(gradient[1], np.full(2, 0.1 * 3), rtol=1e-6)
    assert params[0]["weight"].shape == (4, 3)


def test_bump_inside_apply_if_finite_is_skipped_with_a_non_finite_gradient():
    params = _params()
    optimizer = optax.apply_if_finite(optax.chain(optax.adam(1e-2), bump_silent(0.1)), 10)
    state = optimizer.init(params)
    bad = _grads()
    bad[1]["weight"] = bad[1]["weight"].at[0, 0].set(jnp.nan)
    updates, state = optimizer.update(bad, state, params, silent=[None, jnp.ones(2)])
    assert not bool(state.last_finite)
    new = optax.apply_updates(params, updates)
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)  # neither the step nor the bump was applied
    updates, state = optimizer.update(_grads(), state, params, silent=[None, jnp.ones(2)])
    assert bool(state.last_finite) and float(jnp.min(updates[1]["weight"])) > 0.05


def test_silent_fraction_matches_numpy():
    times = np.array(
        [[1.0, INF, INF], [INF, 2.0, INF], [0.5, INF, INF], [INF, INF, INF]], np.float32
    )
    np.testing.assert_array_equal(silent_fraction(times), [0.5, 0.75, 1.0])
    labels = np.array([0, 1, 2, 1])
    is_label = labels[:, None] == np.arange(3)
    # fraction of the batch in which the neuron was the label and stayed silent
    np.testing.assert_array_equal(silent_fraction(times, where=is_label), [0.0, 0.25, 0.25])
    batched = np.stack([times, times[::-1]])  # (2, 4, 3): the mean runs over every leading axis
    np.testing.assert_array_equal(silent_fraction(batched), [0.5, 0.75, 1.0])
    jitted = jax.jit(silent_fraction)(jnp.asarray(times), jnp.asarray(is_label))
    np.testing.assert_array_equal(jitted, [0.0, 0.25, 0.25])
    per_seed = jax.vmap(silent_fraction)(jnp.asarray(batched))
    np.testing.assert_array_equal(per_seed, [[0.5, 0.75, 1.0], [0.5, 0.75, 1.0]])
    assert silent_fraction(times).dtype == jnp.float32
    # a count of silent samples: piecewise constant, so its gradient is exactly zero (not NaN)
    gradient = jax.grad(lambda t: jnp.sum(silent_fraction(t, where=jnp.asarray(is_label))))(
        jnp.asarray(times)
    )
    np.testing.assert_array_equal(gradient, np.zeros_like(times))


def test_errors():
    grads = _grads()
    with pytest.raises(ValueError, match="amount must be finite and >= 0"):
        bump_silent(-0.1)
    with pytest.raises(ValueError, match="amount must be finite"):
        bump_silent(float("nan"))
    with pytest.raises(TypeError, match="amount must be a real number"):
        bump_silent("0.1")
    transform = bump_silent(0.1)
    with pytest.raises(TypeError, match="needs the keyword argument silent="):
        transform.update(grads, optax.EmptyState())
    with pytest.raises(ValueError, match="silent must have the structure of the params list"):
        transform.update(grads, optax.EmptyState(), silent=[None, None, jnp.ones(2)])
    with pytest.raises(ValueError, match=r"silent at \[1\] has shape \(3,\).*\(3, 2\)"):
        transform.update(grads, optax.EmptyState(), silent=[None, jnp.ones(3)])
    with pytest.raises(ValueError, match=r"the params at \[1\] have no 'weight' entry"):
        bump_silent(0.1, weight_key="weight").update(
            [grads[0], {"w": jnp.ones((3, 2))}], optax.EmptyState(), silent=[None, jnp.ones(2)]
        )
    with pytest.raises(TypeError, match="first_times must be a float array"):
        silent_fraction(jnp.array([1, 2]))
    with pytest.raises(ValueError, match="first_times must have a neuron axis"):
        silent_fraction(jnp.array(1.0))
    with pytest.raises(TypeError, match="where must be a boolean mask"):
        silent_fraction(jnp.ones((2, 3)), where=jnp.ones((2, 3)))
    with pytest.raises(
        ValueError, match=r"where must broadcast to the shape of first_times \(2, 3\)"
    ):
        silent_fraction(jnp.ones((2, 3)), where=jnp.ones((3, 3), bool))
