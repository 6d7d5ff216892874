"""Conv's patch weight gradient (the default ``backward="patches"``) against XLA's gradient of
``lax.conv_general_dilated`` (``backward="autodiff"``): float64 to round-off, float32 within a
stated tolerance of the float64 value, under jit and vmap, for strides, paddings and kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxsnn.discrete import Conv


def _grads(layer, params, x, cotangent):
    def loss(params, x):
        return jnp.sum(layer.apply(params, x)[1] * cotangent)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)


@pytest.mark.parametrize(
    "kernel,stride,padding,size",
    [
        (3, 1, "SAME", (5, 40, 40, 2)),  # chunks of 2 steps, the last one padded
        ((3, 2), 2, "VALID", (4, 9, 8, 3)),
        (2, (1, 2), ((1, 0), (2, 1)), (3, 7, 6, 2)),
        (3, 2, "SAME_LOWER", (2, 8, 7, 1)),
    ],
)
def test_patch_weight_gradient_equals_xla_float64(x64, kernel, stride, padding, size):
    fast = Conv(4, kernel, stride, padding, bias=True)
    slow = Conv(4, kernel, stride, padding, bias=True, backward="autodiff")
    shape, params = fast.init(jax.random.PRNGKey(0), size)
    x = jax.random.normal(jax.random.PRNGKey(1), size)
    cotangent = jax.random.normal(jax.random.PRNGKey(2), shape)
    got, want = _grads(fast, params, x, cotangent), _grads(slow, params, x, cotangent)
    np.testing.assert_array_equal(np.asarray(fast.apply(params, x)[1]),
                                  np.asarray(slow.apply(params, x)[1]))
    assert float(jnp.max(jnp.abs(want[0]["weight"]))) > 0
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-11)


def test_patch_weight_gradient_float32_tolerance_and_vmap():
    """float32: both gradients within 1e-5 of max |dW| of the float64 value (sums of 2e5 terms);
    under vmap (batch folded into the chunks) as well."""
    size, batch = (6, 24, 24, 8), 3
    fast, slow = Conv(8, 3), Conv(8, 3, backward="autodiff")
    shape, params = fast.init(jax.random.PRNGKey(3), size)
    x = (jax.random.uniform(jax.random.PRNGKey(4), (batch,) + size) < 0.3).astype(jnp.float32)
    cotangent = jax.random.normal(jax.random.PRNGKey(5), (batch,) + shape)

    def weight_grad(layer, x, cotangent, params):
        def loss(p):
            return jnp.sum(jax.vmap(lambda xs: layer.apply(p, xs)[1])(x) * cotangent)

        return jax.jit(jax.grad(loss))(params)["weight"]

    got = np.asarray(weight_grad(fast, x, cotangent, params))
    xla = np.asarray(weight_grad(slow, x, cotangent, params))
    with jax.enable_x64(True):
        exact = np.asarray(weight_grad(
            slow, jnp.asarray(x, jnp.float64), jnp.asarray(cotangent, jnp.float64),
            jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params),
        ))
    scale = np.max(np.abs(exact))
    assert scale > 1.0
    assert np.max(np.abs(got - exact)) <= 1e-5 * scale
    assert np.max(np.abs(xla - exact)) <= 1e-5 * scale


def test_conv_backward_option():
    with pytest.raises(ValueError, match=r"backward must be one of \('patches', 'autodiff'\)"):
        Conv(4, 3, backward="xla")
    # Forward mode needs the autodiff backward.
    layer = Conv(2, 3, backward="autodiff")
    _, params = layer.init(jax.random.PRNGKey(0), (2, 5, 5, 1))
    x = jnp.ones((2, 5, 5, 1))
    jac = jax.jacfwd(lambda w: layer.apply({"weight": w}, x)[1].sum())(params["weight"])
    want = jax.grad(lambda w: lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum())(params["weight"])
    np.testing.assert_allclose(np.asarray(jac), np.asarray(want), rtol=1e-6)
