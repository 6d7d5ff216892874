"""Core types: the stax-style ``Layer`` pair and the callables it holds.

Every layer in jaxsnn is a pair of pure functions::

    init(rng, input_shape) -> (output_shape, params)
    apply(params, inputs, external=None, carry=None) -> (carry, outputs, recording)

``Layer`` is a ``NamedTuple``, so it unpacks exactly like a ``jax.example_libraries.stax``
layer: ``init_fn, apply_fn = layer``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Tuple

import jax

Array = jax.Array
PRNGKey = jax.Array
Shape = Tuple[int, ...]
PyTree = Any


class InitFn(Protocol):
    """Builds a layer's parameters for a given input shape."""

    def __call__(self, rng: PRNGKey, input_shape: Shape) -> Tuple[Shape, PyTree]:
        ...


class ApplyFn(Protocol):
    """Runs a layer: returns the state at the end of the window, outputs and a recording."""

    def __call__(
        self,
        params: PyTree,
        inputs: Any,
        external: Any = None,
        carry: Any = None,
    ) -> Tuple[Any, Any, Any]:
        ...


class Layer(NamedTuple):
    """A layer: ``(init, apply)``. Unpacks like a stax layer.

    Attributes:
        init: ``(rng, input_shape) -> (output_shape, params)``.
        apply: ``(params, inputs, external=None, carry=None) -> (carry, outputs, recording)``.
    """

    init: InitFn
    apply: ApplyFn

    @property
    def name(self) -> str:
        """A readable name for error messages, taken from the factory that built the layer."""
        return layer_name(self)


def layer_name(layer: Any) -> str:
    """Return a readable name for a layer pair (``Layer`` or a plain ``(init, apply)`` tuple).

    Args:
        layer: a ``Layer`` or any ``(init, apply)`` pair.

    Returns:
        The explicit ``layer_name`` attribute of ``init`` if set, else the name of the factory
        function that created ``init`` (``"LIF"`` for ``LIF(...).init``), else ``"layer"``.
    """
    init = layer[0]
    explicit = getattr(init, "layer_name", None)
    if explicit:
        return str(explicit)
    qualname = getattr(init, "__qualname__", "")
    if qualname:
        return qualname.split(".")[0]
    return "layer"


def named_layer(init: InitFn, apply: ApplyFn, name: str) -> Layer:
    """Build a ``Layer`` whose error messages use ``name``.

    Args:
        init: the layer's init function.
        apply: the layer's apply function.
        name: the name shown in errors, e.g. ``"LIF(120)"``.

    Returns:
        ``Layer(init, apply)`` with ``init.layer_name = name``.
    """
    init.layer_name = name  # type: ignore[attr-defined]
    return Layer(init, apply)
