"""An imported graph is a jaxsnn layer: jit, vmap, grad, chunks with ``carry``, recording."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsnn
import jaxsnn.nir as jnir
from jaxsnn.discrete import LI, LIF, Dense, RecurrentLIF

nir = pytest.importorskip("nir")
DT = 1e-3
KW = dict(tau_syn=5e-3, tau_mem=1e-2, dt=DT)


def W(scale=1.0, seed=0):
    """A NumPy weight initialiser (``scale * N(0, 1) / sqrt(fan_in)``): no jax.random
    compilation per weight shape, which dominates these tests' time otherwise."""

    def init(key, shape, dtype=jnp.float32):
        rng = np.random.RandomState(seed + int(np.prod(shape)))
        fan_in = int(np.prod(shape[:-1]))
        return jnp.asarray(rng.randn(*shape) * scale / np.sqrt(fan_in), dtype)

    return init


def B(high=0.5, seed=1):
    """A NumPy bias initialiser: uniform in [0, high)."""

    def init(key, shape, dtype=jnp.float32):
        return jnp.asarray(np.random.RandomState(seed).uniform(0.0, high, shape), dtype)

    return init


@pytest.fixture(scope="module")
def network():
    net = jaxsnn.serial(
        Dense(8, bias=True, bias_init=B(0.5), weight_init=W(4.0)),
        LIF(8, project=False, **KW),
        RecurrentLIF(6, weight_init=W(4.0), recurrent_init=W(2.0, seed=7), **KW),
        LI(3, weight_init=W(), **KW),
    )
    _, params = net.init(jax.random.PRNGKey(0), (30, 5))
    layer, imported = jnir.from_nir(jnir.to_nir(net, params, (30, 5), dt=DT), dt=DT)
    x = (np.random.RandomState(1).rand(4, 30, 5) < 0.4).astype(np.float32) * 2.0
    return net, params, layer, imported, x


def test_jit_equals_eager(network):
    _, _, layer, imported, x = network
    eager = layer.apply(imported, x[0])
    jitted = jax.jit(layer.apply)(imported, x[0])
    jax.tree_util.tree_map(np.testing.assert_array_equal, eager, jitted)


def test_vmap_equals_a_loop(network):
    _, _, layer, imported, x = network
    _, batched, recording = jax.vmap(lambda xs: layer.apply(imported, xs))(x)
    apply = jax.jit(layer.apply)
    for b in range(x.shape[0]):
        _, single, _ = apply(imported, x[b])
        np.testing.assert_allclose(batched[b], single, rtol=1e-6, atol=1e-6)
    assert recording["layer2_lif"].output.shape == (4, 30, 6)


def test_gradient_equals_the_original_network(network):
    """Same surrogate, same dynamics: the imported graph's gradient is the network's."""
    net, params, layer, imported, x = network

    def loss_net(p):
        return jnp.sum(net.apply(p, x[0])[1] ** 2)

    def loss_nir(p):
        return jnp.sum(layer.apply(p, x[0])[1] ** 2)

    g_net = jax.grad(loss_net)(params)
    g_nir = jax.grad(loss_nir)(imported)
    pairs = [
        (g_net[0]["weight"], g_nir["layer0_affine"]["weight"]),
        # The imported params hold what is added per step (the file's bias * dt for "spec").
        (g_net[0]["bias"], g_nir["layer0_affine"]["bias"]),
        (g_net[2]["weight"], g_nir["layer2_linear"]["weight"]),
        (g_net[2]["recurrent_weight"], g_nir["layer2_rec"]["weight"]),
        (g_net[3]["weight"], g_nir["layer3_linear"]["weight"]),
    ]
    for expected, got in pairs:
        assert float(jnp.max(jnp.abs(expected))) > 0
        np.testing.assert_allclose(
            got, expected, rtol=2e-4, atol=1e-6 * float(jnp.max(jnp.abs(expected)))
        )


def test_chunks_with_carry_equal_one_window(network):
    _, _, layer, imported, x = network
    _, whole, _ = layer.apply(imported, x[0])
    carry, first, _ = layer.apply(imported, x[0, :11])
    carry, second, _ = layer.apply(imported, x[0, 11:20], carry=carry)
    _, third, _ = layer.apply(imported, x[0, 20:], carry=carry)
    np.testing.assert_array_equal(np.concatenate([first, second, third]), whole)


def test_recording_holds_every_internal_node(network):
    _, _, layer, imported, x = network
    _, _, recording = layer.apply(imported, x[0])
    assert set(recording) == {
        "layer0_affine",
        "layer1_lif",
        "layer2_linear",
        "layer2_lif",
        "layer2_rec",
        "layer3_linear",
        "layer3_li",
    }
    assert recording["layer1_lif"].state.current.shape == (30, 8)
    assert recording["layer0_affine"].state is None
    assert float(recording["layer2_lif"].output.sum()) > 0


@pytest.mark.parametrize("name", ["snntorch_rec", "spyx_rec", "spyx_conv"])
def test_peer_graphs_are_differentiable(nirtest, name):
    path, data = nirtest.fixture_data(name)
    layer, params = jnir.from_nir(path, dt=float(data["dt"]))

    def loss(p):
        _, out, recording = layer.apply(p, data["input"])
        total = jnp.sum(out)
        for record in recording.values():
            if record.state is not None:
                total = total + 1e-3 * jnp.sum(record.state.v)
        return total

    grads = jax.jit(jax.grad(loss))(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)
