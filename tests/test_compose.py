"""Tests of ``serial`` and the stax adapter, with small stand-in layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

import jaxsnn
from jaxsnn import Layer, serial, stateless


def Accumulate(size):
    """A stateful toy layer: running sum over time of a projection, carried across calls."""

    def init(rng, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"expects (time, features), got {input_shape}")
        return (input_shape[0], size), jax.random.normal(rng, (input_shape[-1], size))

    def apply(params, inputs, external=None, carry=None):
        start = jnp.zeros(size) if carry is None else carry
        total = start + jnp.cumsum(inputs @ params, axis=0)
        outputs = total if external is None else external
        return total[-1], outputs, {"last": total[-1]}

    return jaxsnn.named_layer(init, apply, f"Accumulate({size})")


def test_layer_unpacks_like_stax():
    layer = Accumulate(3)
    init, apply = layer
    assert layer.name == "Accumulate(3)" and layer.leaves is None
    # The name lives in the Layer value, not on the function: a new pair has the factory's name.
    assert Layer(init, apply).name == "Accumulate"
    assert jaxsnn.layer_name(stax.Dense(2)) == "Dense"


def test_metadata_lives_in_the_layer_value_and_survives_wrapping():
    import functools

    inner = Accumulate(2)
    net = serial(Accumulate(3), serial(inner, Accumulate(2)))
    assert net.leaves == 3 and jaxsnn.leaf_count(net) == 3
    # Wrapping the functions (jit, partial) and putting them back keeps the leaf count and name.
    wrapped = net._replace(init=functools.partial(net.init), apply=jax.jit(net.apply))
    assert wrapped.leaves == 3 and wrapped.name == net.name
    outer = serial(wrapped, Accumulate(1))
    assert outer.leaves == 4
    _, params = outer.init(jax.random.PRNGKey(0), (5, 2))
    assert len(params) == 4
    # Naming a layer built from another layer's functions must not rename the original.
    renamed = jaxsnn.named_layer(inner.init, inner.apply, "Other")
    assert renamed.name == "Other" and inner.name == "Accumulate(2)"
    with pytest.raises(ValueError, match="leaves must be None"):
        Layer(inner.init, inner.apply, leaves=0)
    with pytest.raises(ValueError, match="unknown fields"):
        inner._replace(name="x")


def test_serial_params_are_flat_and_nesting_is_invisible():
    flat = serial(Accumulate(4), stateless(stax.Relu), Accumulate(3), Accumulate(2))
    nested = serial(Accumulate(4), serial(stateless(stax.Relu), serial(Accumulate(3))), Accumulate(2))
    assert jaxsnn.leaf_count(flat) == jaxsnn.leaf_count(nested) == 4
    rng = jax.random.PRNGKey(0)
    shape_flat, params_flat = flat.init(rng, (6, 5))
    shape_nested, params_nested = nested.init(rng, (6, 5))
    assert shape_flat == shape_nested == (6, 2)
    assert len(params_flat) == len(params_nested) == 4
    inputs = jax.random.normal(rng, (6, 5))
    carry_flat, out_flat, rec_flat = flat.apply(params_flat, inputs)
    carry_nested, out_nested, rec_nested = nested.apply(params_flat, inputs)
    np.testing.assert_array_equal(out_flat, out_nested)
    assert len(carry_flat) == len(carry_nested) == len(rec_flat) == len(rec_nested) == 4
    assert carry_flat[1] is None and rec_nested[1] is None


def test_serial_threads_carry_for_chunked_runs():
    net = serial(Accumulate(3), serial(Accumulate(2)))
    _, params = net.init(jax.random.PRNGKey(1), (8, 4))
    inputs = jax.random.normal(jax.random.PRNGKey(2), (8, 4))
    _, whole, _ = net.apply(params, inputs)
    carry, first, _ = net.apply(params, inputs[:4])
    _, second, _ = net.apply(params, inputs[4:], carry=carry)
    np.testing.assert_allclose(jnp.concatenate([first, second]), whole, rtol=1e-5, atol=1e-5)


def test_serial_routes_external_to_the_right_leaf():
    net = serial(Accumulate(3), serial(Accumulate(2), Accumulate(2)))
    _, params = net.init(jax.random.PRNGKey(1), (5, 4))
    inputs = jnp.ones((5, 4))
    injected = jnp.full((5, 2), 7.0)
    _, outputs, _ = net.apply(params, inputs, external=[None, injected, None])
    expected = jnp.cumsum(injected @ params[2], axis=0)
    np.testing.assert_allclose(outputs, expected, rtol=1e-6)


def test_serial_under_jit_vmap_grad():
    net = serial(stateless(stax.Dense(4)), Accumulate(3), stateless(stax.Tanh))
    _, params = net.init(jax.random.PRNGKey(0), (6, 2))
    batch = jax.random.normal(jax.random.PRNGKey(3), (5, 6, 2))

    def loss(params, batch):
        _, outputs, _ = jax.vmap(lambda x: net.apply(params, x))(batch)
        return jnp.sum(outputs**2)

    value, grads = jax.jit(jax.value_and_grad(loss))(params, batch)
    assert np.isfinite(value)
    assert len(grads) == 3 and grads[2] == ()
    loop = sum(jnp.sum(net.apply(params, x)[1] ** 2) for x in batch)
    np.testing.assert_allclose(value, loop, rtol=1e-5)


def SumOverTime():
    """A stax-style stateless layer that drops the time axis."""
    return (lambda rng, shape: (tuple(shape[1:]), ()), lambda params, x, **kwargs: x.sum(0))


def test_init_shape_error_names_layer_and_shape():
    net = serial(Accumulate(3), serial(stateless(SumOverTime()), Accumulate(2)))
    message = r"layer 1\.1 \(Accumulate\(2\)\) cannot take input shape \(3,\): expects \(time"
    with pytest.raises(ValueError, match=message):
        net.init(jax.random.PRNGKey(0), (6, 4))
    with pytest.raises(ValueError, match=r"layer 0 \(Accumulate\(3\)\) cannot take input shape \(6, 4, 3\)"):
        net.init(jax.random.PRNGKey(0), (6, 4, 3))


def test_serial_rejects_bad_arguments():
    with pytest.raises(ValueError, match="at least one layer"):
        serial()
    with pytest.raises(TypeError, match="argument 1 must be an"):
        serial(Accumulate(2), "not a layer")
    net = serial(Accumulate(2), Accumulate(2))
    _, params = net.init(jax.random.PRNGKey(0), (3, 2))
    with pytest.raises(ValueError, match="params has 1 entries but the network has 2"):
        net.apply(params[:1], jnp.ones((3, 2)))
    with pytest.raises(ValueError, match="carry has 3 entries"):
        net.apply(params, jnp.ones((3, 2)), carry=[None] * 3)
    with pytest.raises(TypeError, match="external must be None or a list"):
        net.apply(params, jnp.ones((3, 2)), external=jnp.ones(2))


def test_stateless_adapter_refuses_external():
    init, apply = stateless(stax.Relu)
    _, params = init(jax.random.PRNGKey(0), (2, 3))
    with pytest.raises(ValueError, match="takes no external data"):
        apply(params, jnp.ones((2, 3)), external=jnp.ones(3))
