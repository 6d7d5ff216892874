"""Composition of layers: ``serial``, branching combinators, and an adapter for stax layers.

Every composite returns a ``Layer`` whose ``params``, ``external``, ``carry`` and ``recording``
are flat lists with one entry per *leaf* layer, in a fixed order:

* ``serial(a, b, c)``: the leaves of ``a``, then of ``b``, then of ``c``;
* ``parallel(a, b)``: the leaves of branch ``a``, then of branch ``b``;
* ``residual(layer)``: the leaves of ``layer``;
* ``fan_out``, ``fan_in_sum``, ``fan_in_concat`` and ``identity`` are leaves themselves
  (like ``stax.FanOut``): one entry each, with ``params = ()``, ``carry = None`` and
  ``recording = None``.

A nested composite contributes its leaves in place, so ``serial(a, serial(b, c))`` and
``serial(a, b, c)`` take the same params and give the same outputs, and everything that works
for ``serial`` (hardware ``external``, chunked runs through ``carry``, ``jit``/``vmap``/``grad``)
works for every combinator. Branches are stax-style: ``fan_out(n)`` turns one input into a
tuple of ``n`` copies, ``parallel`` maps a tuple of inputs to a tuple of outputs, and the
fan-in layers turn a tuple back into one value::

    x ──fan_out(2)──┬── a ──┐
                    └── b ──┴──fan_in_concat── y      serial(fan_out(2), parallel(a, b), fan_in_concat())

Dense values are merged along the last (feature) axis; event values (``jaxsnn.Spikes``) are
merged into one sorted buffer whose capacity is the sum of the inputs' capacities (nothing is
dropped): ``fan_in_sum`` keeps the indices (the branches share one index space),
``fan_in_concat`` offsets the indices of branch ``k`` by the sizes of branches ``0..k-1``.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from jaxsnn.spikes import PAD_IDX, Spikes
from jaxsnn.types import Layer, Shape, layer_name

__all__ = [
    "fan_in_concat",
    "fan_in_sum",
    "fan_out",
    "identity",
    "leaf_count",
    "merge_concat",
    "merge_sum",
    "parallel",
    "residual",
    "serial",
    "stateless",
]


def leaf_count(layer: Any) -> int:
    """Number of leaf layers in ``layer`` (1 for a plain layer, the total for a composite).

    Args:
        layer: a ``Layer`` or ``(init, apply)`` pair.

    Returns:
        The number of entries the layer occupies in flat params/carry/external/recording lists.
    """
    leaves = layer.leaves if isinstance(layer, Layer) else None
    return 1 if leaves is None else leaves


def _is_composite(layer: Any) -> bool:
    """A composite (``serial``, ``parallel``, ...) takes and returns flat lists, even with one leaf."""
    return isinstance(layer, Layer) and layer.leaves is not None


def _check_layer(position: int, layer: Any, kind: str = "serial") -> None:
    if not (isinstance(layer, tuple) and len(layer) == 2 and all(map(callable, layer))):
        raise TypeError(
            f"{kind}: argument {position} must be an (init, apply) pair such as a jaxsnn.Layer, "
            f"got {type(layer).__name__}"
        )


def _check_flat(kind: str, value: Optional[Sequence[Any]], n_leaves: int, owner: str = "serial") -> None:
    if value is None:
        return
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{owner}: {kind} must be None or a list with one entry per leaf layer "
            f"({n_leaves}), got {type(value).__name__}"
        )
    if len(value) != n_leaves:
        raise ValueError(
            f"{owner}: {kind} has {len(value)} entries but the network has {n_leaves} leaf layers"
        )


def _shape_error(
    error: Exception, position: int, layer: Any, shape: Any, kind: str = "serial", what: str = "layer"
) -> Exception:
    """Wrap an init error with the position of the failing leaf, e.g. ``layer 1.0``."""
    inner = getattr(error, "jaxsnn_init_failure", None)
    if inner is None:
        path, name, failing_shape, detail = [position], layer_name(layer), shape, str(error)
    else:
        path = [position] + inner["path"]
        name, failing_shape, detail = inner["name"], inner["shape"], inner["detail"]
    location = ".".join(map(str, path))
    wrapped = type(error)(
        f"{kind}: {what} {location} ({name}) cannot take input shape {failing_shape}: {detail}"
    )
    wrapped.jaxsnn_init_failure = {  # type: ignore[attr-defined]
        "path": path, "name": name, "shape": failing_shape, "detail": detail,
    }
    return wrapped


class _Children:
    """Where each child of a composite sits in the composite's flat lists."""

    def __init__(self, layers: Sequence[Any]):
        self.layers = list(layers)
        self.counts = [leaf_count(layer) for layer in layers]
        self.composite = [_is_composite(layer) for layer in layers]
        self.n_leaves = sum(self.counts)
        self.offsets = [sum(self.counts[:k]) for k in range(len(layers))]

    def part(self, k: int, flat: Optional[Sequence[Any]]) -> Any:
        """Child ``k``'s share of a flat list: a sub-list for a composite, one entry for a leaf."""
        if flat is None:
            return None
        start = self.offsets[k]
        if self.composite[k]:
            return list(flat[start:start + self.counts[k]])
        return flat[start]

    def extend(self, k: int, flat: List[Any], value: Any) -> None:
        """Append child ``k``'s result (a sub-list or one entry) to a flat list."""
        if self.composite[k]:
            flat.extend(value)
        else:
            flat.append(value)

    def check(self, owner: str, params: Any, external: Any, carry: Any) -> None:
        _check_flat("params", params, self.n_leaves, owner)
        _check_flat("external", external, self.n_leaves, owner)
        _check_flat("carry", carry, self.n_leaves, owner)

    def run(self, k: int, params: Sequence[Any], inputs: Any, external: Any, carry: Any):
        """Apply child ``k`` to ``inputs`` with its share of the flat lists."""
        return self.layers[k][1](
            self.part(k, params), inputs, external=self.part(k, external), carry=self.part(k, carry)
        )


def serial(*layers: Any) -> Layer:
    """Compose layers (and nested composites) in sequence.

    Args:
        *layers: ``(init, apply)`` pairs; ``jaxsnn`` layers, adapted stax layers (see
            ``stateless``), other ``serial``s or any combinator of this module.

    Returns:
        A ``Layer``. Its ``init(rng, input_shape)`` returns ``(output_shape, params)`` with
        ``params`` a flat list, one entry per leaf layer. Its
        ``apply(params, inputs, external=None, carry=None)`` returns
        ``(carry, outputs, recording)``, where ``carry`` and ``recording`` are flat lists and
        ``external``/``carry`` may be ``None`` or flat lists (entries may be ``None``).

    Raises:
        TypeError: if an argument is not an ``(init, apply)`` pair.
        ValueError: at ``init``, if a layer cannot take the shape produced by the layer before
            it (the message names the layer, its position, e.g. ``layer 1.0`` for the first leaf
            of a nested ``serial`` in position 1, and the shape); at ``apply``, if a flat list
            has the wrong length.
    """
    if not layers:
        raise ValueError("serial needs at least one layer")
    for position, layer in enumerate(layers):
        _check_layer(position, layer)
    children = _Children(layers)

    def init(rng: jax.Array, input_shape: Shape) -> Tuple[Shape, List[Any]]:
        params: List[Any] = []
        shape = tuple(input_shape)
        keys = jax.random.split(rng, len(layers))
        for position, (layer, key) in enumerate(zip(layers, keys)):
            try:
                new_shape, layer_params = layer[0](key, shape)
            except (ValueError, TypeError) as error:
                raise _shape_error(error, position, layer, shape) from error
            children.extend(position, params, layer_params)
            shape = tuple(new_shape)
        return shape, params

    def apply(
        params: Sequence[Any],
        inputs: Any,
        external: Optional[Sequence[Any]] = None,
        carry: Optional[Sequence[Any]] = None,
    ) -> Tuple[List[Any], Any, List[Any]]:
        children.check("serial", params, external, carry)
        new_carry: List[Any] = []
        recording: List[Any] = []
        outputs = inputs
        for k in range(len(layers)):
            state, outputs, record = children.run(k, params, outputs, external, carry)
            children.extend(k, new_carry, state)
            children.extend(k, recording, record)
        return new_carry, outputs, recording

    name = "serial(" + ", ".join(layer_name(layer) for layer in layers) + ")"
    return Layer(init, apply, name=name, leaves=children.n_leaves)


def _branch_shapes(kind: str, input_shape: Any, n: int) -> Tuple[Any, ...]:
    """The per-branch shapes of a tuple-valued input (``n`` branches)."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != n or not all(
        isinstance(shape, (tuple, list)) for shape in input_shape
    ):
        raise ValueError(
            f"{kind} takes a tuple of {n} input shapes (one per branch, e.g. after fan_out({n})), "
            f"got {input_shape!r}"
        )
    return tuple(tuple(shape) for shape in input_shape)


def _branch_values(kind: str, inputs: Any, n: Optional[int]) -> Tuple[Any, ...]:
    if isinstance(inputs, Spikes) or not isinstance(inputs, (tuple, list)) or (n is not None and len(inputs) != n):
        expected = "a tuple" if n is None else f"a tuple of {n}"
        got = type(inputs).__name__ + ("" if not isinstance(inputs, (tuple, list)) or isinstance(inputs, Spikes)
                                       else f" of {len(inputs)}")
        raise ValueError(f"{kind} takes {expected} inputs (one per branch, e.g. from fan_out), got {got}")
    return tuple(inputs)


def parallel(*layers: Any) -> Layer:
    """Apply one layer per branch: a tuple of inputs gives a tuple of outputs (``stax.parallel``).

    ``parallel(a, b)`` maps ``(x_a, x_b)`` to ``(a(x_a), b(x_b))``; the branches do not
    interact. Its flat lists hold the leaves of ``a``, then those of ``b``.

    Args:
        *layers: one ``(init, apply)`` pair (or composite) per branch.

    Returns:
        A composite ``Layer``: ``init(rng, (shape_a, shape_b, ...))`` returns a tuple of output
        shapes; ``apply(params, (x_a, x_b, ...), external=None, carry=None)`` returns
        ``(carry, (y_a, y_b, ...), recording)``.

    Raises:
        TypeError: if an argument is not an ``(init, apply)`` pair.
        ValueError: if there is no branch; at ``init`` if the input is not a tuple of one shape
            per branch or a branch cannot take its shape (naming ``branch k``); at ``apply`` if
            the inputs are not a tuple of one value per branch or a flat list has the wrong
            length.
    """
    if not layers:
        raise ValueError("parallel needs at least one branch")
    for position, layer in enumerate(layers):
        _check_layer(position, layer, "parallel")
    children = _Children(layers)
    n = len(layers)

    def init(rng: jax.Array, input_shape: Any) -> Tuple[Tuple[Shape, ...], List[Any]]:
        shapes = _branch_shapes("parallel", input_shape, n)
        params: List[Any] = []
        out_shapes = []
        for position, (layer, key, shape) in enumerate(zip(layers, jax.random.split(rng, n), shapes)):
            try:
                out_shape, layer_params = layer[0](key, shape)
            except (ValueError, TypeError) as error:
                raise _shape_error(error, position, layer, shape, "parallel", "branch") from error
            children.extend(position, params, layer_params)
            out_shapes.append(tuple(out_shape))
        return tuple(out_shapes), params

    def apply(params, inputs, external=None, carry=None):
        children.check("parallel", params, external, carry)
        values = _branch_values("parallel", inputs, n)
        new_carry: List[Any] = []
        recording: List[Any] = []
        outputs = []
        for k in range(n):
            state, output, record = children.run(k, params, values[k], external, carry)
            children.extend(k, new_carry, state)
            children.extend(k, recording, record)
            outputs.append(output)
        return new_carry, tuple(outputs), recording

    name = "parallel(" + ", ".join(layer_name(layer) for layer in layers) + ")"
    return Layer(init, apply, name=name, leaves=children.n_leaves)


def _no_external(label: str, external: Any) -> None:
    if external is not None:
        raise ValueError(f"{label} is a wiring layer and takes no external data, got {type(external).__name__}")


def identity() -> Layer:
    """A leaf that passes its input through unchanged (``stax.Identity``); params ``()``.

    Returns:
        A ``Layer`` whose ``apply`` returns ``(None, inputs, None)``.
    """

    def init(rng: jax.Array, input_shape: Any) -> Tuple[Any, Tuple[()]]:
        del rng
        return input_shape, ()

    def apply(params: Any, inputs: Any, external: Any = None, carry: Any = None):
        del params, carry
        _no_external("identity", external)
        return None, inputs, None

    return Layer(init, apply, name="identity")


def fan_out(n: int) -> Layer:
    """A leaf that copies its input into a tuple of ``n`` branches (``stax.FanOut``); params ``()``.

    Args:
        n: number of branches, >= 1.

    Returns:
        A ``Layer``: ``init`` gives ``(shape,) * n``; ``apply`` returns
        ``(None, (inputs,) * n, None)``.

    Raises:
        ValueError: if ``n`` is not an int >= 1.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"fan_out: n must be an int >= 1 (the number of branches), got {n!r}")
    label = f"fan_out({n})"

    def init(rng: jax.Array, input_shape: Any):
        del rng
        return (tuple(input_shape),) * n, ()

    def apply(params: Any, inputs: Any, external: Any = None, carry: Any = None):
        del params, carry
        _no_external(label, external)
        return None, (inputs,) * n, None

    return Layer(init, apply, name=label)


def _sorted_spikes(time: jax.Array, idx: jax.Array) -> Spikes:
    """Sort events by time, then index; padding (``idx < 0``) goes last as ``(inf, -1)``."""
    valid = idx >= 0
    time = jnp.where(valid, time, jnp.inf)
    idx = jnp.where(valid, idx, PAD_IDX).astype(jnp.int32)
    # Two stable sorts: by index, then by time, so ties in time are in index order.
    by_idx = jnp.argsort(jnp.where(valid, idx, jnp.iinfo(jnp.int32).max), axis=-1, stable=True)
    time = jnp.take_along_axis(time, by_idx, axis=-1)
    idx = jnp.take_along_axis(idx, by_idx, axis=-1)
    by_time = jnp.argsort(time, axis=-1, stable=True)
    return Spikes(jnp.take_along_axis(time, by_time, axis=-1), jnp.take_along_axis(idx, by_time, axis=-1))


def _first_kept(time: jax.Array, idx: jax.Array, keep: jax.Array, capacity: int):
    """The first ``capacity`` kept events of a sorted buffer, padded; and how many were kept.

    Keeps the order of the kept events, so a sorted buffer stays sorted.
    """
    order = jnp.argsort(~keep, stable=True)[:capacity]
    if order.shape[0] < capacity:
        order = jnp.concatenate([order, jnp.zeros((capacity - order.shape[0],), order.dtype)])
        in_range = jnp.arange(capacity) < time.shape[0]
    else:
        in_range = jnp.ones((capacity,), bool)
    selected = keep[order] & in_range
    return (
        Spikes(jnp.where(selected, time[order], jnp.inf), jnp.where(selected, idx[order], PAD_IDX).astype(jnp.int32)),
        jnp.sum(keep),
    )


def merge_sum(label: str, values: Sequence[Any]) -> Any:
    """Merge by sum: dense arrays are added; spike buffers are united in one index space.

    Args:
        label: name used in error messages.
        values: dense arrays of one shape, or ``Spikes`` buffers (not mixed).

    Returns:
        The sum (dense), or one sorted ``Spikes`` buffer holding every event of every input,
        with capacity the sum of the inputs' capacities.

    Raises:
        ValueError: on mixed dense/event values or dense values of different shapes.
    """
    values = list(values)
    if all(isinstance(v, Spikes) for v in values):
        time = jnp.concatenate([jnp.asarray(v.time) for v in values], axis=-1)
        idx = jnp.concatenate([jnp.asarray(v.idx, jnp.int32) for v in values], axis=-1)
        return _sorted_spikes(time, idx)
    if any(isinstance(v, Spikes) for v in values):
        raise ValueError(f"{label}: cannot merge Spikes with dense values; convert with jaxsnn.event.ToDense/ToSpikes")
    shapes = [jnp.shape(v) for v in values]
    if any(shape != shapes[0] for shape in shapes):
        raise ValueError(f"{label}: summed inputs must have one shape, got {shapes}")
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def merge_concat(label: str, values: Sequence[Any], sizes: Optional[Sequence[int]] = None) -> Any:
    """Merge by concatenation: dense arrays along the last axis; spikes with index offsets.

    Args:
        label: name used in error messages.
        values: dense arrays (equal shapes but for the last axis), or ``Spikes`` buffers.
        sizes: for ``Spikes``: the number of neurons of each input (input ``k``'s indices are
            offset by ``sizes[0] + ... + sizes[k-1]``).

    Returns:
        The concatenated array, or one sorted ``Spikes`` buffer with capacity the sum of the
        inputs' capacities.

    Raises:
        ValueError: on mixed dense/event values, spikes without ``sizes``, or dense shapes that
            differ in another axis than the last.
    """
    values = list(values)
    if all(isinstance(v, Spikes) for v in values):
        if sizes is None or len(sizes) != len(values):
            raise ValueError(
                f"{label}: Spikes carry no neuron count, so concatenating them needs sizes=(n_1, ..., n_k) "
                f"with one entry per input ({len(values)}), got {sizes!r}"
            )
        offsets = [sum(sizes[:k]) for k in range(len(values))]
        time = jnp.concatenate([jnp.asarray(v.time) for v in values], axis=-1)
        idx = jnp.concatenate(
            [jnp.where(jnp.asarray(v.idx) >= 0, jnp.asarray(v.idx, jnp.int32) + offset, PAD_IDX)
             for v, offset in zip(values, offsets)], axis=-1,
        )
        return _sorted_spikes(time, idx)
    if any(isinstance(v, Spikes) for v in values):
        raise ValueError(f"{label}: cannot merge Spikes with dense values; convert with jaxsnn.event.ToDense/ToSpikes")
    shapes = [jnp.shape(v) for v in values]
    if any(len(shape) != len(shapes[0]) or shape[:-1] != shapes[0][:-1] for shape in shapes):
        raise ValueError(f"{label}: concatenated inputs must agree in every axis but the last, got {shapes}")
    return jnp.concatenate(values, axis=-1)


def _fan_in_shapes(label: str, input_shape: Any) -> Tuple[Tuple[int, ...], ...]:
    if not isinstance(input_shape, (tuple, list)) or not input_shape or not all(
        isinstance(shape, (tuple, list)) for shape in input_shape
    ):
        raise ValueError(f"{label} takes a tuple of input shapes (one per branch), got {input_shape!r}")
    return tuple(tuple(shape) for shape in input_shape)


def fan_in_sum() -> Layer:
    """A leaf that adds a tuple of branches (``stax.FanInSum``); params ``()``.

    Dense inputs of one shape are added elementwise. ``Spikes`` inputs (one index space, e.g.
    branches of the same population size) are merged into one sorted buffer holding all their
    events; its capacity is the sum of the inputs' capacities, so nothing is dropped.

    Returns:
        A ``Layer``: ``init(rng, (shape, shape, ...))`` gives ``shape``; ``apply`` returns
        ``(None, merged, None)``.

    Raises:
        ValueError: at ``init`` if the shapes differ (naming the branch); at ``apply`` if the
            input is not a tuple or mixes dense and event values.
    """
    label = "fan_in_sum"

    def init(rng: jax.Array, input_shape: Any):
        del rng
        shapes = _fan_in_shapes(label, input_shape)
        for k, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise ValueError(
                    f"{label}: branch {k} has shape {shape} but branch 0 has {shapes[0]}; summed "
                    "branches must have one shape (use fan_in_concat to stack them)"
                )
        return shapes[0], ()

    def apply(params: Any, inputs: Any, external: Any = None, carry: Any = None):
        del params, carry
        _no_external(label, external)
        return None, merge_sum(label, _branch_values(label, inputs, None)), None

    return Layer(init, apply, name=label)


def fan_in_concat(sizes: Optional[Sequence[int]] = None) -> Layer:
    """A leaf that concatenates a tuple of branches (``stax.FanInConcat``); params ``()``.

    Dense inputs are concatenated along the last (feature) axis. ``Spikes`` inputs are merged
    into one sorted buffer with the indices of branch ``k`` offset by
    ``sizes[0] + ... + sizes[k-1]``; its capacity is the sum of the inputs' capacities. A
    spike buffer does not know how many neurons it comes from, so event inputs need ``sizes``.

    Args:
        sizes: the number of neurons of each branch (required for ``Spikes``; checked against
            the shapes at ``init``).

    Returns:
        A ``Layer``: ``init(rng, (shape_0, shape_1, ...))`` gives the concatenated shape;
        ``apply`` returns ``(None, merged, None)``.

    Raises:
        ValueError: at ``init`` if the shapes differ in another axis than the last or do not
            match ``sizes`` (naming the branch); at ``apply`` if the input is not a tuple, mixes
            dense and event values, or is ``Spikes`` without ``sizes``.
    """
    label = "fan_in_concat"
    if sizes is not None:
        sizes = tuple(sizes)
        if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(f"{label}: sizes must be a non-empty sequence of ints >= 1, got {sizes!r}")

    def init(rng: jax.Array, input_shape: Any):
        del rng
        shapes = _fan_in_shapes(label, input_shape)
        for k, shape in enumerate(shapes):
            if not shape or len(shape) != len(shapes[0]) or shape[:-1] != shapes[0][:-1]:
                raise ValueError(
                    f"{label}: branch {k} has shape {shape} but branch 0 has {shapes[0]}; "
                    "concatenated branches must agree in every axis but the last"
                )
        if sizes is not None:
            if len(sizes) != len(shapes) or any(shape[-1] != size for shape, size in zip(shapes, sizes)):
                raise ValueError(f"{label}: sizes {sizes} do not match the branches' shapes {shapes}")
        return shapes[0][:-1] + (sum(shape[-1] for shape in shapes),), ()

    def apply(params: Any, inputs: Any, external: Any = None, carry: Any = None):
        del params, carry
        _no_external(label, external)
        return None, merge_concat(label, _branch_values(label, inputs, None), sizes), None

    name = label if sizes is None else f"{label}({', '.join(map(str, sizes))})"
    return Layer(init, apply, name=name)


_MERGES = ("sum", "concat")


def residual(layer: Any, merge: str = "sum", sizes: Optional[Tuple[int, int]] = None) -> Layer:
    """A skip connection around ``layer``: ``y = merge(layer(x), x)``.

    ::

        x ──┬── layer ──┐
            └───────────┴── (+) ── y       residual(layer)

    ``merge="sum"`` adds (dense) or unites the spike trains (events; ``layer`` must keep the
    number of neurons); ``merge="concat"`` stacks ``[layer(x), x]`` along the features (events:
    the input's indices are offset by the layer's size; needs ``sizes=(layer_size, input_size)``).
    Same as ``serial(fan_out(2), parallel(layer, identity()), fan_in_sum())`` but without
    the three wiring leaves: the flat lists hold exactly the leaves of ``layer``.

    Args:
        layer: an ``(init, apply)`` pair or composite.
        merge: ``"sum"`` or ``"concat"``.
        sizes: event inputs with ``merge="concat"``: ``(output size of layer, input size)``.

    Returns:
        A composite ``Layer`` with ``leaf_count(layer)`` leaves.

    Raises:
        TypeError: if ``layer`` is not an ``(init, apply)`` pair.
        ValueError: unknown ``merge``; at ``init`` if the shapes cannot be merged.
    """
    _check_layer(0, layer, "residual")
    if merge not in _MERGES:
        raise ValueError(f"residual: merge must be one of {_MERGES}, got {merge!r}")
    inner = serial(layer) if not _is_composite(layer) else layer
    label = f"residual({layer_name(layer)})"
    combine = fan_in_sum() if merge == "sum" else fan_in_concat(sizes)

    def init(rng: jax.Array, input_shape: Shape):
        shape = tuple(input_shape)
        out_shape, params = inner[0](rng, shape)
        try:
            merged_shape, _ = combine[0](rng, (tuple(out_shape), shape))
        except ValueError as error:
            raise ValueError(
                f"{label}: the layer's output shape {tuple(out_shape)} cannot be merged ({merge}) with "
                f"its input shape {shape}: {error}"
            ) from error
        return merged_shape, params

    def apply(params, inputs, external=None, carry=None):
        state, outputs, recording = inner[1](params, inputs, external=external, carry=carry)
        _, merged, _ = combine[1]((), (outputs, inputs))
        return state, merged, recording

    return Layer(init, apply, name=label, leaves=inner.leaves)


def stateless(layer: Tuple[Callable[..., Any], Callable[..., Any]], name: Optional[str] = None) -> Layer:
    """Adapt a stateless stax layer (``stax.Dense``, ``stax.Relu``, ...) to the jaxsnn signature.

    The stax ``apply_fun(params, inputs, **kwargs)`` is applied to the whole input array (for
    discrete layers ``(time, features)``, so ``stax.Dense`` projects every time step at once).
    The adapted layer keeps no state (``carry`` is ``None``) and records nothing.

    Args:
        layer: a stax ``(init_fun, apply_fun)`` pair.
        name: name used in error messages (default: the stax factory's name).

    Returns:
        A ``Layer`` usable inside ``serial``.

    Raises:
        TypeError: if ``layer`` is not an ``(init, apply)`` pair.
    """
    _check_layer(0, layer)
    stax_init, stax_apply = layer
    label = name or layer_name(layer)

    def init(rng: jax.Array, input_shape: Shape) -> Tuple[Shape, Any]:
        output_shape, params = stax_init(rng, tuple(input_shape))
        return tuple(output_shape), params

    def apply(params: Any, inputs: Any, external: Any = None, carry: Any = None) -> Tuple[None, Any, None]:
        del carry
        if external is not None:
            raise ValueError(f"{label} is stateless and takes no external data, got {type(external).__name__}")
        return None, stax_apply(params, inputs), None

    return Layer(init, apply, name=label)
