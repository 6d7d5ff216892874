"""Data-parallel training on several devices and hosts with ``jax.sharding``.

jaxsnn adds no engine of its own: a training step is an ordinary jitted JAX function, and JAX's
sharding machinery runs it on many devices. Two ways are offered, both with the batch split
over the devices along its leading axis and the parameters replicated:

* ``data_parallel(step, mesh, batch_argnums=...)``: XLA partitions the unchanged step (GSPMD).
  Each device reduces its part of the batch and an all-reduce adds the parts, so a sum over
  the batch (the mean loss, the weight gradient) is added up in a different order than on one
  device. Results agree to float32 rounding (about 1e-7 relative per step); they are not
  bitwise equal.
* ``chunked_sum(fn, mesh, chunks=C)``: the batch is cut into ``C`` fixed chunks; each device
  evaluates ``fn`` on its chunks one after the other, the per-chunk results are gathered and
  added in chunk order::

      total = (((s_0 + s_1) + s_2) + ... + s_{C-1}),   s_c = fn(shared, batch_c)[0]

  Neither the work of one chunk nor the order of the final sum depends on the number of
  devices, so a step built on it gives bitwise the same result on 1, 2, 4, ... devices (any
  count dividing ``C``), and across hosts.

Work with no sum across the mesh axis is bitwise equal anyway: per-sample outputs (forward
passes, evaluation), and independent runs sharded along their own axis (several seeds trained
with ``jax.vmap``, their stacked parameters split by ``shard_batch``).

Host callbacks (``jax.pure_callback``, e.g. ``jaxsnn.hardware.measure`` for a chip in the
loop) need no annotation: under a sharded ``jit`` XLA gathers the callback's operands onto one
device, calls the host once with the whole batch, and scatters the result back, so a backend
sees exactly what it sees on one device. XLA's partitioner logs an "Involuntary full
rematerialization" warning at compile time for this; constraining the operands to be
replicated first (``jax.lax.with_sharding_constraint(x, replicated(mesh))``) silences it. Do not
call ``measure`` inside ``chunked_sum``: there the callback would run once per device on that
device's part of the batch.

Several hosts: start every process with ``jax.distributed.initialize`` (on SLURM it reads the
cluster from the environment), build the mesh over all devices (``device_mesh()``), and give
each process's part of the global batch to ``shard_batch(..., process_local=True)``.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxsnn._validate import positive_int

BATCH_AXIS = "batch"
"""Default name of the mesh axis the batch is split along."""

_SIMULATE_HINT = (
    "on CPU, simulate devices by setting XLA_FLAGS=--xla_force_host_platform_device_count=N "
    "before jax is imported"
)


def device_mesh(
    devices: Union[None, int, Sequence[Any]] = None, *, axis_name: str = BATCH_AXIS
) -> Mesh:
    """A one-axis ``Mesh`` to split batches over.

    Args:
        devices: ``None`` for every device of every process (``jax.devices()``), an int ``n``
            for the first ``n`` of them, or an explicit sequence of devices.
        axis_name: name of the mesh axis.

    Returns:
        ``Mesh(devices, (axis_name,))``.

    Raises:
        TypeError: if ``devices`` is neither None, an int nor a sequence of devices.
        ValueError: if more devices are asked for than exist, or the sequence is empty or
            repeats a device.
    """
    available = jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        n_devices = positive_int("devices", int(devices))
        if n_devices > len(available):
            raise ValueError(
                f"asked for {n_devices} devices but only {len(available)} "
                f"{available[0].platform} device(s) exist; {_SIMULATE_HINT}"
            )
        chosen = list(available[:n_devices])
    elif isinstance(devices, Sequence) and not isinstance(devices, str):
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices is an empty sequence: give at least one device")
        if len({id(device) for device in chosen}) != len(chosen):
            raise ValueError(f"devices repeats a device: {chosen}")
    else:
        raise TypeError(
            f"devices must be None, an int or a sequence of jax devices, got {type(devices).__name__}"
        )
    return Mesh(np.asarray(chosen, dtype=object), (axis_name,))


def _axis(mesh: Mesh, axis_name: Optional[str]) -> str:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh (see device_mesh), got {type(mesh).__name__}")
    name = mesh.axis_names[0] if axis_name is None else axis_name
    if name not in mesh.axis_names:
        raise ValueError(f"the mesh has no axis {name!r}; its axes are {tuple(mesh.axis_names)}")
    return name


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``."""
    _axis(mesh, None)
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, axis_name: Optional[str] = None) -> NamedSharding:
    """The sharding that splits the leading axis over the mesh axis ``axis_name``.

    Args:
        mesh: the mesh.
        axis_name: mesh axis to split along (default: the mesh's first axis).

    Returns:
        ``NamedSharding(mesh, PartitionSpec(axis_name))``.
    """
    return NamedSharding(mesh, PartitionSpec(_axis(mesh, axis_name)))


def _is_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _place(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """Put one leaf (the same global value on every process) onto ``sharding``."""
    if _is_key(leaf):
        data = _place(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    if jax.process_count() == 1 or (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable):
        return jax.device_put(leaf, sharding)
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _leading(tree: Any, what: str) -> int:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError(f"{what} holds no arrays")
    sizes = []
    for leaf in leaves:
        shape = jnp.shape(leaf)
        if len(shape) == 0:
            raise ValueError(f"every array in {what} needs a leading (batch) axis, got a scalar")
        sizes.append(int(shape[0]))
    if len(set(sizes)) != 1:
        raise ValueError(f"the arrays in {what} disagree on their leading (batch) axis: {sizes}")
    return sizes[0]


def shard_batch(
    tree: Any, mesh: Mesh, *, axis_name: Optional[str] = None, process_local: bool = False
) -> Any:
    """Split every leaf of ``tree`` along its leading axis over the devices of ``mesh``.

    The leading axis is the batch of samples, or the seed axis of independent runs trained
    together with ``jax.vmap``.

    Args:
        tree: pytree of arrays sharing their leading axis.
        mesh: the mesh (see ``device_mesh``).
        axis_name: mesh axis to split along (default: the mesh's first axis).
        process_local: ``False``: ``tree`` is the whole (global) batch, the same on every
            process. ``True``: ``tree`` is this process's consecutive part of the global
            batch (process ``p`` of ``P`` holds rows ``p * n : (p + 1) * n``); the global
            batch is their concatenation in process order.

    Returns:
        ``tree`` with every leaf a global ``jax.Array`` split along its leading axis.

    Raises:
        ValueError: if the leading axes disagree or are not divisible by the number of
            devices (of this process, with ``process_local``).
    """
    axis = _axis(mesh, axis_name)
    sharding = batch_sharding(mesh, axis)
    rows = _leading(tree, "the batch")
    if process_local:
        local = len(mesh.local_devices)
        if rows % local:
            raise ValueError(
                f"this process holds {rows} rows, which its {local} devices of the mesh cannot "
                f"share evenly: give each process a multiple of {local} rows"
            )
        return jax.tree_util.tree_map(
            lambda leaf: jax.make_array_from_process_local_data(sharding, np.asarray(leaf)), tree
        )
    n_devices = mesh.shape[axis]
    if rows % n_devices:
        raise ValueError(
            f"cannot split a leading axis of {rows} over {n_devices} devices: use a batch "
            f"(or number of seeds) divisible by {n_devices}"
        )
    return jax.tree_util.tree_map(lambda leaf: _place(leaf, sharding), tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copy every leaf of ``tree`` (parameters, optimiser state, keys) onto every device.

    Args:
        tree: pytree of arrays, the same values on every process.
        mesh: the mesh.

    Returns:
        ``tree`` with every leaf a replicated global ``jax.Array``.
    """
    sharding = replicated(mesh)
    return jax.tree_util.tree_map(lambda leaf: _place(leaf, sharding), tree)


def to_host(tree: Any) -> Any:
    """Every leaf as a NumPy array holding its global value, on every process.

    Args:
        tree: pytree of (possibly sharded, possibly multi-process) arrays.

    Returns:
        The same pytree with NumPy leaves (typed PRNG keys become their key data).
    """

    def one(leaf: Any) -> np.ndarray:
        if _is_key(leaf):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(leaf)

    return jax.tree_util.tree_map(one, tree)


class _BackendOnDevice:
    """A hardware ``Backend`` whose own JAX computations run on one chosen device."""

    def __init__(self, backend: Any, device: Any) -> None:
        self.backend = backend
        self.device = device
        self.layer_sizes = backend.layer_sizes
        self.capacities = backend.capacities
        self.name = f"{getattr(backend, 'name', type(backend).__name__)} on {device}"

    def run(self, params: Any, input_spikes: Any, trial: int) -> Any:
        with jax.default_device(self.device):
            return self.backend.run(params, input_spikes, trial)


def backend_on_device(backend: Any, device: Any) -> Any:
    """Run a hardware backend's own JAX work (``jaxsnn.hardware.Emulator``) on ``device``.

    A host callback that starts a JAX computation on a device which the calling multi-device
    program occupies can wait for that device forever (on CPU, XLA aborts after 40 s waiting
    for the collective). Backends that run no JAX (chip drivers) need nothing; a JAX-based
    backend called from a step sharded over several devices must run on a device outside
    the mesh: e.g. with 4 simulated CPU devices, a mesh over ``jax.devices()[:2]`` and
    ``backend_on_device(emulator, jax.devices()[3])``.

    Args:
        backend: a ``jaxsnn.hardware.Backend``.
        device: the device its computations run on (``jax.default_device``).

    Returns:
        A ``Backend`` with the same ``layer_sizes`` and ``capacities`` that calls
        ``backend.run`` with ``device`` as JAX's default device.
    """
    for attribute in ("run", "layer_sizes", "capacities"):
        if not hasattr(backend, attribute):
            raise TypeError(f"{type(backend).__name__} is not a jaxsnn.hardware.Backend: it has no {attribute!r}")
    return _BackendOnDevice(backend, device)


def _as_index_set(name: str, values: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    values = (values,) if isinstance(values, (int, np.integer)) else tuple(values)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must hold ints (argument positions), got {values!r}")
    return tuple(int(value) for value in values)


def data_parallel(
    step: Callable[..., Any],
    mesh: Mesh,
    *,
    batch_argnums: Union[int, Sequence[int]],
    batch_outputs: Union[int, Sequence[int]] = (),
    donate_argnums: Union[int, Sequence[int]] = (),
    axis_name: Optional[str] = None,
) -> Callable[..., Any]:
    """Jit ``step`` to run data-parallel over ``mesh`` (XLA partitions it; GSPMD).

    The positional arguments named by ``batch_argnums`` are split along their leading axis
    (``shard_batch``), all others are replicated (``replicate``); arguments already placed
    that way are used as they are. Outputs are replicated, except the top-level outputs named
    by ``batch_outputs`` (per-sample values), which stay split. The step itself is unchanged:
    sums over the batch become per-device partial sums plus an all-reduce, so results equal
    the one-device run to float32 rounding, not bitwise (use ``chunked_sum`` for that).

    Args:
        step: the training (or evaluation) step, a pure function of positional arguments.
        mesh: the mesh (see ``device_mesh``).
        batch_argnums: positions of the batch arguments (negative positions count from the
            end).
        batch_outputs: positions, in the returned tuple, of per-sample outputs to leave split.
        donate_argnums: forwarded to ``jax.jit``.
        axis_name: mesh axis of the batch (default: the mesh's first axis).

    Returns:
        ``run(*args)``: the jitted, sharded step; ``run.lower(*args)`` lowers it for those
        arguments (``.compile().as_text()`` shows the partitioned program and its collectives).

    Raises:
        ValueError: (at call time) if a batch argument's leading axis does not divide over
            the devices.
    """
    axis = _axis(mesh, axis_name)
    batch_args = _as_index_set("batch_argnums", batch_argnums)
    batch_outs = _as_index_set("batch_outputs", batch_outputs)
    split, whole = batch_sharding(mesh, axis), replicated(mesh)

    def constrained(*args: Any) -> Any:
        out = step(*args)
        if batch_outs:
            if not isinstance(out, tuple):
                raise TypeError(f"batch_outputs={batch_outs} needs step to return a tuple, got {type(out).__name__}")
            return tuple(
                jax.lax.with_sharding_constraint(value, split if k in batch_outs else whole)
                for k, value in enumerate(out)
            )
        return jax.lax.with_sharding_constraint(out, whole)

    compiled = jax.jit(constrained, donate_argnums=donate_argnums)

    def place(args: Tuple[Any, ...]) -> list:
        positions = {k % len(args) for k in batch_args if -len(args) <= k < len(args)}
        if len(positions) != len(batch_args):
            raise ValueError(f"batch_argnums {batch_args} do not fit a call with {len(args)} arguments")
        return [
            shard_batch(arg, mesh, axis_name=axis) if k in positions else replicate(arg, mesh)
            for k, arg in enumerate(args)
        ]

    def run(*args: Any) -> Any:
        return compiled(*place(args))

    run.mesh = mesh  # type: ignore[attr-defined]
    # like jax.jit(...).lower: the partitioned program for these arguments, to inspect
    run.lower = lambda *args: compiled.lower(*place(args))  # type: ignore[attr-defined]
    return run


def _shard_map(function: Callable[..., Any], mesh: Mesh, in_specs: Any, out_specs: Any) -> Callable[..., Any]:
    # Replication is not verified: jaxsnn's scans start from fresh zeros, which the checker
    # would flag inside a device-varying body; every replicated output below is the same
    # reduction of all-gathered values on every device, so it holds by construction.
    if hasattr(jax, "shard_map"):
        return jax.shard_map(function, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # jax < 0.6

    return shard_map(function, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def _sum_in_order(values: jax.Array) -> jax.Array:
    """``((v[0] + v[1]) + v[2]) + ...``: a sequential sum XLA does not reorder."""
    total, _ = jax.lax.scan(lambda acc, value: (acc + value, None), values[0], values[1:])
    return total


def chunked_sum(
    fn: Callable[[Any, Any], Tuple[Any, Any]],
    mesh: Mesh,
    *,
    chunks: int,
    axis_name: Optional[str] = None,
) -> Callable[[Any, Any], Tuple[Any, Any]]:
    """Sum ``fn`` over fixed chunks of a batch, bitwise independent of the number of devices.

    With ``batch`` cut along its leading axis into ``chunks`` consecutive chunks
    ``batch_0 .. batch_{C-1}`` of equal size and ``(s_c, a_c) = fn(shared, batch_c)``::

        run(shared, batch) = ((((s_0 + s_1) + s_2) + ... + s_{C-1}), concat(a_0, ..., a_{C-1}))

    Each device evaluates its ``chunks / n_devices`` chunks one after the other
    (``jax.lax.map``), the ``s_c`` are gathered and added in chunk order on every device. A
    chunk's arithmetic and the order of the sum are the same for any number of devices that
    divides ``chunks``, so the result is bitwise the same on 1, 2, 4, ... devices and hosts.
    Typical ``fn``: the value and gradient of the chunk's summed loss, with per-sample
    outputs (first-spike times, recordings) in ``a_c``; divide the total by the batch size
    afterwards for a mean. ``fn`` must not call host callbacks (they would see one device's
    part of the batch): measure on hardware before, and pass the measurement in ``batch``.

    Works under ``jax.jit`` (the intended use, inside a ``data_parallel`` step or a jit with
    batch-sharded inputs), ``jax.vmap`` and ``jax.grad`` (with respect to ``shared``).

    Args:
        fn: ``fn(shared, chunk) -> (sums, per_sample)``; ``sums`` a pytree of arrays,
            ``per_sample`` a pytree whose leaves have the chunk size on their leading axis
            (or ``None``).
        mesh: the mesh (see ``device_mesh``).
        chunks: number of chunks ``C``; a multiple of the number of devices on the axis.
        axis_name: mesh axis of the batch (default: the mesh's first axis).

    Returns:
        ``run(shared, batch) -> (total, per_sample)``: ``total`` replicated, ``per_sample``
        split like ``batch`` along its leading axis.

    Raises:
        ValueError: if ``chunks`` is not a multiple of the number of devices, or (at call
            time) the batch size is not a multiple of ``chunks``, or ``fn``'s per-sample
            outputs do not have the chunk size on their leading axis.
    """
    chunks = positive_int("chunks", chunks)
    axis = _axis(mesh, axis_name)
    n_devices = mesh.shape[axis]
    if chunks % n_devices:
        raise ValueError(
            f"chunks ({chunks}) must be a multiple of the number of devices ({n_devices}), so "
            "that every device holds whole chunks"
        )
    per_device = chunks // n_devices

    def local(shared: Any, batch: Any) -> Tuple[Any, Any]:
        rows = _leading(batch, "the batch")
        chunk_size = rows // per_device
        split = jax.tree_util.tree_map(
            lambda leaf: jnp.reshape(leaf, (per_device, chunk_size) + jnp.shape(leaf)[1:]), batch
        )

        def one(chunk: Any) -> Tuple[Any, Any]:
            out = fn(shared, chunk)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TypeError("fn must return a pair (sums, per_sample); use None for no per-sample outputs")
            for leaf in jax.tree_util.tree_leaves(out[1]):
                if jnp.ndim(leaf) == 0 or jnp.shape(leaf)[0] != chunk_size:
                    raise ValueError(
                        f"fn's per-sample outputs need the chunk size ({chunk_size}) on their "
                        f"leading axis, got shape {jnp.shape(leaf)}"
                    )
            return out

        sums, per_sample = jax.lax.map(one, split)
        gathered = jax.lax.all_gather(sums, axis, tiled=True)  # (chunks, ...) in batch order
        total = jax.tree_util.tree_map(_sum_in_order, gathered)
        per_sample = jax.tree_util.tree_map(
            lambda leaf: jnp.reshape(leaf, (per_device * chunk_size,) + jnp.shape(leaf)[2:]), per_sample
        )
        return total, per_sample

    mapped = _shard_map(local, mesh, (PartitionSpec(), PartitionSpec(axis)), (PartitionSpec(), PartitionSpec(axis)))

    def run(shared: Any, batch: Any) -> Tuple[Any, Any]:
        rows = _leading(batch, "the batch")
        if rows % chunks:
            raise ValueError(
                f"a batch of {rows} cannot be cut into {chunks} equal chunks: use a batch "
                f"size that is a multiple of chunks={chunks}"
            )
        return mapped(shared, batch)

    return run


__all__ = [
    "BATCH_AXIS",
    "backend_on_device",
    "batch_sharding",
    "chunked_sum",
    "data_parallel",
    "device_mesh",
    "replicate",
    "replicated",
    "shard_batch",
    "to_host",
]
