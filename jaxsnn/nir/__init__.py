"""NIR (Neuromorphic Intermediate Representation) import and export.

Needs the optional ``nir`` package (``pip install -e '.[nir]'``).

* ``from_nir(graph_or_path, *, dt, dialect="auto")`` builds one jaxsnn ``Layer`` that runs a
  NIR graph on a time grid of step ``dt``; ``to_nir(layer, params, input_shape, *, dt)`` writes a
  jaxsnn network as a NIR graph; ``read``/``write`` wrap both with files.
* NIR files store continuous-time equations but no time step, and every library writes and
  simulates them its own way. A *dialect* says how a file is meant: ``"spec"`` (the NIR
  equations, integrated exactly over each step), ``"snntorch"``, ``"norse"``, ``"spyx"`` (each
  library's own discretisation, reset, latency, units and layout), ``"jaxsnn"`` (files written
  by ``to_nir``), or ``"auto"`` (recognise the writer; ask when unsure). The dialect classes
  (``Spec``, ``SnnTorch``, ``Norse``, ``Spyx``, ``Jaxsnn``) document the equations each one
  runs; ``SnnTorch(reset_mechanism=..., reset_delay=...)`` states what snnTorch files leave out.

Nothing is dropped silently: an unsupported node, a parameter a dialect cannot express, a
time step that contradicts the file, or a file whose writer is unclear raises ``ValueError``
naming the node and the choice to make.
"""

from __future__ import annotations

from jaxsnn.nir._dialects import (
    DIALECTS,
    Dialect,
    Jaxsnn,
    Norse,
    SnnTorch,
    Spec,
    Spyx,
)
from jaxsnn.nir._node import NeuronState, NodeRecord
from jaxsnn.nir._graph import GraphState
from jaxsnn.nir._api import detect_dialect, from_nir, read, to_nir, write

__all__ = [
    "DIALECTS",
    "Dialect",
    "GraphState",
    "Jaxsnn",
    "NeuronState",
    "NodeRecord",
    "Norse",
    "SnnTorch",
    "Spec",
    "Spyx",
    "detect_dialect",
    "from_nir",
    "read",
    "to_nir",
    "write",
]
