"""Public entry points of ``jaxsnn.nir``: ``from_nir``, ``to_nir``, ``read``, ``write``."""

from __future__ import annotations

import os
from typing import Any, Callable, Dict, Tuple, Union

import jax

from jaxsnn._validate import positive_scalar
from jaxsnn.discrete import surrogate as surrogate_lib
from jaxsnn.initializers import default_dtype
from jaxsnn.nir import _detect, _graph
from jaxsnn.nir._dialects import Dialect, get_dialect
from jaxsnn.nir._export import to_nir
from jaxsnn.types import Layer

Array = jax.Array


def detect_dialect(graph_or_path: Any) -> str:
    """Name the library that wrote a NIR graph (``dialect="auto"``).

    Args:
        graph_or_path: a ``nir.NIRGraph`` or the path of a NIR file.

    Returns:
        ``"jaxsnn"``, ``"snntorch"``, ``"norse"`` or ``"spyx"``.

    Raises:
        ValueError: when no writer, or more than one, matches (the message says what was
            checked and asks for ``dialect=``).
    """
    return _detect.detect(_graph.load(graph_or_path))[0]


def from_nir(
    graph_or_path: Any,
    *,
    dt: float,
    dialect: Union[str, Dialect] = "auto",
    surrogate: Union[str, Callable[[Array], Array]] = "superspike",
    dtype: Any = None,
) -> Tuple[Layer, Dict[str, Dict[str, Array]]]:
    """Import a NIR graph as one jaxsnn ``Layer`` on a time grid of step ``dt``.

    The layer takes one sample's dense input in the file's own layout, ``(T, *input_type)`` of
    its Input node (channels first for convolutions), and returns the Output node's signal
    ``(T, *output_type)``: spikes for spiking outputs, the membrane for ``LI``/``CubaLI``
    outputs. It works under ``jax.jit``, ``jax.vmap`` (batch) and ``jax.grad`` (spikes have the
    ``surrogate`` derivative). ``apply(params, inputs, external=None, carry=None)`` returns
    ``(GraphState, output, recording)``; ``recording`` maps every node except Input/Output to a
    ``NodeRecord(output, state)``; ``carry`` continues a simulation chunk by chunk.

    Args:
        graph_or_path: a ``nir.NIRGraph`` or the path of a NIR file.
        dt: the time step, > 0, in the unit of the file's time constants (seconds for NIR).
            For dialects whose files imply a step (snnTorch writes ``r = tau / dt`` with
            ``dt = 1e-4``, Spyx ``r = 1 - dt / tau``), a different ``dt`` raises an error
            that names the implied one.
        dialect: ``"auto"`` (recognise the writer, see ``detect_dialect``), ``"spec"``,
            ``"jaxsnn"``, ``"snntorch"``, ``"norse"``, ``"spyx"``, or a dialect instance such as
            ``jaxsnn.nir.SnnTorch(reset_mechanism="zero")``.
        surrogate: spike function (name from ``jaxsnn.discrete.surrogate.names()`` or a
            function) used by every spiking node and ``Threshold``.
        dtype: parameter dtype (default float32, float64 under x64).

    Returns:
        ``(layer, params)``: params are ``{node name: {"weight": (n_in, n_out), "bias": ...}}``
        for nodes with parameters (``Affine``/``Linear``: ``weight`` is the file's weight
        transposed, ``bias`` what is added per step; ``Conv``: the file's
        ``(C_out, C_in / groups, *kernel)``; ``Scale``: ``scale``). Neuron constants are fixed.

    Raises:
        ValueError: unsupported node, a convention the dialect cannot read, a file whose writer
            ``"auto"`` cannot tell, shapes that do not fit, several Input/Output nodes.
        ImportError: if ``nir`` is not installed.
    """
    dt = positive_scalar("dt", dt)
    graph = _graph.load(graph_or_path)
    if isinstance(dialect, str) and dialect == "auto":
        dialect = _detect.reading_dialect(graph)
    dialect = get_dialect(dialect)
    spike_fn = surrogate_lib.get(surrogate)
    program = _graph.build_program(graph, dialect, dt, spike_fn)
    params = _graph.initial_params(program, default_dtype(dtype))
    label = f"from_nir[{dialect.name}]"
    return _graph.make_layer(program, params, label), params


def read(
    path: Union[str, os.PathLike],
    *,
    dt: float,
    dialect: Union[str, Dialect] = "auto",
    **kwargs: Any,
) -> Tuple[Layer, Dict[str, Dict[str, Array]]]:
    """``from_nir`` of a file: ``(layer, params)``; see ``from_nir`` for the arguments."""
    return from_nir(os.fspath(path), dt=dt, dialect=dialect, **kwargs)


def write(
    path: Union[str, os.PathLike],
    layer: Layer,
    params: Any,
    input_shape: Any,
    *,
    dt: float,
    **kwargs: Any,
):
    """``to_nir`` and ``nir.write``: save a jaxsnn network as a NIR file; returns the graph."""
    nir = _graph.require_nir()
    graph = to_nir(layer, params, input_shape, dt=dt, **kwargs)
    nir.write(os.fspath(path), graph)
    return graph
