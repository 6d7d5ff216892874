"""``jaxsnn.distributed`` on this process's devices (usually one): placement, transforms, errors.

Equality across several devices is tested in ``test_sharding.py`` (simulated devices) and
``test_multihost.py`` (two processes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsnn import distributed

RNG = np.random.default_rng(0)
WEIGHT = jnp.asarray(RNG.normal(size=(3, 2)), jnp.float32)
BATCH = jnp.asarray(RNG.normal(size=(8, 3)), jnp.float32)


def _terms(weight, chunk):
    activity = jnp.tanh(chunk @ weight)
    return jnp.sum(activity**2), activity


def _plain(weight, batch):
    return jnp.sum(jnp.tanh(batch @ weight) ** 2)


def test_device_mesh_and_placement():
    mesh = distributed.device_mesh()
    assert mesh.axis_names == (distributed.BATCH_AXIS,) and mesh.size == len(jax.devices())
    one = distributed.device_mesh(1, axis_name="seeds")
    assert one.axis_names == ("seeds",) and list(one.devices.flat) == jax.devices()[:1]
    assert distributed.device_mesh(jax.devices()[:1]).size == 1
    placed = distributed.shard_batch((BATCH, jnp.arange(8)), one)
    assert placed[0].sharding == distributed.batch_sharding(one)
    np.testing.assert_array_equal(placed[0], BATCH)
    replicated = distributed.replicate({"w": WEIGHT, "key": jax.random.key(0)}, one)
    assert replicated["w"].sharding == distributed.replicated(one)
    assert jax.dtypes.issubdtype(replicated["key"].dtype, jax.dtypes.prng_key)
    host = distributed.to_host({"w": replicated["w"], "key": replicated["key"]})
    assert isinstance(host["w"], np.ndarray) and host["key"].dtype == np.uint32


def test_chunked_sum_equals_plain_sum_and_orders_per_sample_outputs():
    mesh = distributed.device_mesh(1)
    summed = distributed.chunked_sum(_terms, mesh, chunks=4)
    total, activity = jax.jit(summed)(WEIGHT, BATCH)
    np.testing.assert_allclose(total, _plain(WEIGHT, BATCH), rtol=1e-6)
    np.testing.assert_allclose(activity, jnp.tanh(BATCH @ WEIGHT), rtol=1e-6)  # in batch order
    # the sum runs chunk by chunk, left to right: exactly this sequence of float32 additions
    parts = [jnp.sum(jnp.tanh(BATCH[k : k + 2] @ WEIGHT) ** 2) for k in range(0, 8, 2)]
    in_order = ((parts[0] + parts[1]) + parts[2]) + parts[3]
    np.testing.assert_allclose(total, in_order, rtol=1e-7)


def test_chunked_sum_under_grad_vmap_and_eager():
    mesh = distributed.device_mesh(1)
    summed = distributed.chunked_sum(_terms, mesh, chunks=2)
    grad = jax.jit(jax.grad(lambda w: summed(w, BATCH)[0]))(WEIGHT)
    np.testing.assert_allclose(grad, jax.grad(_plain)(WEIGHT, BATCH), rtol=1e-5, atol=1e-6)
    scales = jnp.asarray([0.5, 2.0])
    batched = jax.vmap(lambda s: summed(WEIGHT * s, BATCH)[0])(scales)
    np.testing.assert_allclose(batched, [_plain(WEIGHT * s, BATCH) for s in scales], rtol=1e-5)
    eager, _ = summed(WEIGHT, BATCH)
    np.testing.assert_allclose(eager, _plain(WEIGHT, BATCH), rtol=1e-6)


def test_data_parallel_on_one_device_equals_jit_bitwise():
    mesh = distributed.device_mesh(1)

    def step(weight, batch):
        loss, grad = jax.value_and_grad(_plain)(weight, batch)
        return weight - 0.1 * grad, loss, jnp.tanh(batch @ weight)

    run = distributed.data_parallel(step, mesh, batch_argnums=-1, batch_outputs=2)
    got, want = run(WEIGHT, BATCH), jax.jit(step)(WEIGHT, BATCH)
    for a, b in zip(got, want):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert got[2].sharding.is_equivalent_to(distributed.batch_sharding(mesh), 2)
    assert got[0].sharding.is_equivalent_to(distributed.replicated(mesh), 2)


def test_backend_on_device_runs_the_backend_there():
    device = jax.devices()[-1]

    class Probe:
        layer_sizes, capacities, name = (2,), (3,), "probe"

        def run(self, params, input_spikes, trial):
            return jnp.zeros(1).devices(), params, trial

    pinned = distributed.backend_on_device(Probe(), device)
    assert pinned.layer_sizes == (2,) and pinned.capacities == (3,) and "probe on" in pinned.name
    devices, params, trial = pinned.run("p", None, 4)
    assert devices == {device} and params == "p" and trial == 4
    with pytest.raises(TypeError, match="is not a jaxsnn.hardware.Backend: it has no 'run'"):
        distributed.backend_on_device(object(), device)


def test_errors_name_the_problem():
    mesh = distributed.device_mesh(1)
    with pytest.raises(ValueError, match=r"asked for \d+ devices but only \d+ .*xla_force_host_platform_device_count"):
        distributed.device_mesh(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="devices must be a positive integer"):
        distributed.device_mesh(0)
    with pytest.raises(TypeError, match="devices must be None, an int or a sequence"):
        distributed.device_mesh(2.0)
    with pytest.raises(ValueError, match="empty sequence"):
        distributed.device_mesh([])
    with pytest.raises(TypeError, match="mesh must be a jax.sharding.Mesh"):
        distributed.shard_batch(BATCH, "mesh")
    with pytest.raises(ValueError, match="the mesh has no axis 'time'"):
        distributed.batch_sharding(mesh, "time")
    with pytest.raises(ValueError, match=r"disagree on their leading \(batch\) axis: \[8, 5\]"):
        distributed.shard_batch((BATCH, jnp.zeros(5)), mesh)
    with pytest.raises(ValueError, match="needs a leading .* axis, got a scalar"):
        distributed.shard_batch(jnp.zeros(()), mesh)
    with pytest.raises(TypeError, match="chunks must be a positive integer"):
        distributed.chunked_sum(_terms, mesh, chunks=2.0)
    summed = distributed.chunked_sum(_terms, mesh, chunks=3)
    with pytest.raises(ValueError, match="a batch of 8 cannot be cut into 3 equal chunks"):
        summed(WEIGHT, BATCH)
    not_a_pair = distributed.chunked_sum(lambda w, chunk: jnp.sum(chunk), mesh, chunks=2)
    with pytest.raises(TypeError, match=r"fn must return a pair \(sums, per_sample\)"):
        not_a_pair(WEIGHT, BATCH)
    wrong_rows = distributed.chunked_sum(lambda w, chunk: (jnp.sum(chunk), chunk[:1]), mesh, chunks=2)
    with pytest.raises(ValueError, match=r"per-sample outputs need the chunk size \(4\) on their leading axis, got shape \(1, 3\)"):
        wrong_rows(WEIGHT, BATCH)
    run = distributed.data_parallel(lambda w, b: w, mesh, batch_argnums=3)
    with pytest.raises(ValueError, match=r"batch_argnums \(3,\) do not fit a call with 2 arguments"):
        run(WEIGHT, BATCH)
    not_tuple = distributed.data_parallel(lambda w, b: w, mesh, batch_argnums=1, batch_outputs=0)
    with pytest.raises(TypeError, match="batch_outputs=\\(0,\\) needs step to return a tuple"):
        not_tuple(WEIGHT, BATCH)
    with pytest.raises(TypeError, match="batch_argnums must hold ints"):
        distributed.data_parallel(lambda w, b: w, mesh, batch_argnums=(1.0,))
