"""Composition of layers: one nestable ``serial`` and an adapter for stateless stax layers.

``serial(*layers)`` returns a ``Layer`` whose ``params``, ``external``, ``carry`` and
``recording`` are flat lists with one entry per *leaf* layer. A nested ``serial`` contributes
its leaves in order, so ``serial(a, serial(b, c))`` and ``serial(a, b, c)`` take the same params
and give the same outputs.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Sequence, Tuple

import jax

from jaxsnn.types import Layer, Shape, layer_name

def leaf_count(layer: Any) -> int:
    """Number of leaf layers in ``layer`` (1 for a plain layer, the total for a ``serial``).

    Args:
        layer: a ``Layer`` or ``(init, apply)`` pair.

    Returns:
        The number of entries the layer occupies in flat params/carry/external/recording lists.
    """
    leaves = layer.leaves if isinstance(layer, Layer) else None
    return 1 if leaves is None else leaves


def _is_composite(layer: Any) -> bool:
    """A composite (a ``serial``) takes and returns flat lists, even with a single leaf."""
    return isinstance(layer, Layer) and layer.leaves is not None


def _check_layer(position: int, layer: Any) -> None:
    if not (isinstance(layer, tuple) and len(layer) == 2 and all(map(callable, layer))):
        raise TypeError(
            f"serial: argument {position} must be an (init, apply) pair such as a jaxsnn.Layer, "
            f"got {type(layer).__name__}"
        )


def _check_flat(kind: str, value: Optional[Sequence[Any]], n_leaves: int) -> None:
    if value is None:
        return
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"serial: {kind} must be None or a list with one entry per leaf layer "
            f"({n_leaves}), got {type(value).__name__}"
        )
    if len(value) != n_leaves:
        raise ValueError(
            f"serial: {kind} has {len(value)} entries but the network has {n_leaves} leaf layers"
        )


def _shape_error(error: Exception, position: int, layer: Any, shape: Shape) -> Exception:
    """Wrap an init error with the position of the failing leaf, e.g. ``layer 1.0``."""
    inner = getattr(error, "jaxsnn_init_failure", None)
    if inner is None:
        path, name, failing_shape, detail = [position], layer_name(layer), shape, str(error)
    else:
        path = [position] + inner["path"]
        name, failing_shape, detail = inner["name"], inner["shape"], inner["detail"]
    location = ".".join(map(str, path))
    wrapped = type(error)(
        f"serial: layer {location} ({name}) cannot take input shape {failing_shape}: {detail}"
    )
    wrapped.jaxsnn_init_failure = {  # type: ignore[attr-defined]
        "path": path, "name": name, "shape": failing_shape, "detail": detail,
    }
    return wrapped


def serial(*layers: Any) -> Layer:
    """Compose layers (and nested ``serial``s) in sequence.

    Args:
        *layers: ``(init, apply)`` pairs; ``jaxsnn`` layers, adapted stax layers (see
            ``stateless``) or other ``serial``s.

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
    counts = [leaf_count(layer) for layer in layers]
    composite = [_is_composite(layer) for layer in layers]
    n_leaves = sum(counts)
    offsets = [sum(counts[:k]) for k in range(len(layers))]

    def init(rng: jax.Array, input_shape: Shape) -> Tuple[Shape, List[Any]]:
        params: List[Any] = []
        shape = tuple(input_shape)
        keys = jax.random.split(rng, len(layers))
        for position, (layer, key) in enumerate(zip(layers, keys)):
            try:
                new_shape, layer_params = layer[0](key, shape)
            except (ValueError, TypeError) as error:
                raise _shape_error(error, position, layer, shape) from error
            if composite[position]:
                params.extend(layer_params)
            else:
                params.append(layer_params)
            shape = tuple(new_shape)
        return shape, params

    def apply(
        params: Sequence[Any],
        inputs: Any,
        external: Optional[Sequence[Any]] = None,
        carry: Optional[Sequence[Any]] = None,
    ) -> Tuple[List[Any], Any, List[Any]]:
        _check_flat("params", params, n_leaves)
        _check_flat("external", external, n_leaves)
        _check_flat("carry", carry, n_leaves)
        new_carry: List[Any] = []
        recording: List[Any] = []
        outputs = inputs
        for layer, start, count, is_composite in zip(layers, offsets, counts, composite):
            stop = start + count
            if is_composite:
                layer_params = list(params[start:stop])
                layer_external = None if external is None else list(external[start:stop])
                layer_carry = None if carry is None else list(carry[start:stop])
            else:
                layer_params = params[start]
                layer_external = None if external is None else external[start]
                layer_carry = None if carry is None else carry[start]
            state, outputs, record = layer[1](
                layer_params, outputs, external=layer_external, carry=layer_carry
            )
            if is_composite:
                new_carry.extend(state)
                recording.extend(record)
            else:
                new_carry.append(state)
                recording.append(record)
        return new_carry, outputs, recording

    name = "serial(" + ", ".join(layer_name(layer) for layer in layers) + ")"
    return Layer(init, apply, name=name, leaves=n_leaves)


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
