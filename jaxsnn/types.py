"""Core types: the stax-style ``Layer`` pair and the callables it holds.

Every layer in jaxsnn is a pair of pure functions::

    init(rng, input_shape) -> (output_shape, params)
    apply(params, inputs, external=None, carry=None) -> (carry, outputs, recording)

``Layer`` is a ``NamedTuple``, so it unpacks exactly like a ``jax.example_libraries.stax``
layer: ``init_fn, apply_fn = layer``. What a composer needs to know beyond the two functions
(a readable name for errors, and for composites such as ``serial`` the number of leaf layers
they hold) travels in the ``Layer`` value itself, never as attributes on the functions, so
wrapping ``init`` or ``apply`` (``jax.jit``, ``functools.partial``) loses nothing as long as
the wrapped functions are put back with ``layer._replace(...)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Protocol, Tuple

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


class _Pair(NamedTuple):
    init: InitFn
    apply: ApplyFn


class Layer(_Pair):
    """A layer: ``(init, apply)``. Unpacks like a stax layer.

    Attributes:
        init: ``(rng, input_shape) -> (output_shape, params)``.
        apply: ``(params, inputs, external=None, carry=None) -> (carry, outputs, recording)``.
        name: a readable name for error messages (``"LIF(120)"``); defaults to the name of the
            factory function that created ``init``.
        leaves: ``None`` for a leaf layer, whose ``params``/``carry``/``external``/``recording``
            are its own; for a composite (``serial``, the combinators of
            ``jaxsnn.compose``) the number of leaf layers it holds: its params, carry,
            external and recording are then flat lists of that length.
    """

    # No __slots__: instances keep their metadata in __dict__ (a tuple subclass cannot have
    # non-empty slots), and equality/hashing stay those of the (init, apply) tuple.

    def __new__(
        cls,
        init: InitFn,
        apply: ApplyFn,
        *,
        name: Optional[str] = None,
        leaves: Optional[int] = None,
    ) -> "Layer":
        if leaves is not None and (not isinstance(leaves, int) or leaves < 1):
            raise ValueError(f"Layer: leaves must be None (a leaf) or an int >= 1, got {leaves!r}")
        self = super().__new__(cls, init, apply)
        self._name = name
        self._leaves = leaves
        return self

    @property
    def name(self) -> str:
        """The name shown in error messages."""
        explicit = getattr(self, "_name", None)
        return explicit if explicit else _factory_name(self.init)

    @property
    def leaves(self) -> Optional[int]:
        """``None`` for a leaf layer, else the number of leaf layers of the composite."""
        return getattr(self, "_leaves", None)

    def _replace(self, **fields: Any) -> "Layer":
        """Replace ``init`` and/or ``apply`` (e.g. with jitted versions), keeping the metadata."""
        unknown = set(fields) - {"init", "apply"}
        if unknown:
            raise ValueError(f"Layer._replace: unknown fields {sorted(unknown)}; use init or apply")
        return Layer(
            fields.get("init", self.init),
            fields.get("apply", self.apply),
            name=getattr(self, "_name", None),
            leaves=self.leaves,
        )

    def __repr__(self) -> str:
        return f"Layer({self.name})"


def _factory_name(fn: Any) -> str:
    qualname = getattr(fn, "__qualname__", "")
    if qualname:
        return qualname.split(".")[0]
    return "layer"


def layer_name(layer: Any) -> str:
    """Return a readable name for a layer pair (``Layer`` or a plain ``(init, apply)`` tuple).

    Args:
        layer: a ``Layer`` or any ``(init, apply)`` pair.

    Returns:
        ``layer.name`` for a ``Layer``; for a plain pair the name of the factory function that
        created ``init`` (``"Dense"`` for ``stax.Dense(3)``), else ``"layer"``.
    """
    if isinstance(layer, Layer):
        return layer.name
    return _factory_name(layer[0])


def named_layer(init: InitFn, apply: ApplyFn, name: str) -> Layer:
    """Build a leaf ``Layer`` whose error messages use ``name``.

    Args:
        init: the layer's init function (not modified).
        apply: the layer's apply function.
        name: the name shown in errors, e.g. ``"LIF(120)"``.

    Returns:
        ``Layer(init, apply, name=name)``.
    """
    return Layer(init, apply, name=name)
