"""jaxsnn: pure-functional spiking neural networks in JAX.

Layers are stax-style ``(init, apply)`` pairs composed by one nestable ``serial``::

    init, apply = jaxsnn.serial(jaxsnn.discrete.LIF(120, ...), jaxsnn.discrete.LI(3, ...))

Wiring beyond a chain: ``parallel``, ``fan_out``, ``fan_in_sum``, ``fan_in_concat``,
``identity`` and ``residual`` nest in ``serial``; ``jaxsnn.graph`` wires named nodes with skip
and feedback edges (``discrete_graph``, ``event_graph``).

Subpackages: ``discrete`` (time-grid layers, BPTT with surrogate gradients), ``event`` (exact
event-based layers, EventProp), ``hardware`` (backends and in-the-loop training), ``data``,
``encode``, ``loss``, ``optim`` (optimiser transformations such as weight bumping);
``jaxsnn.testing`` (hypothesis strategies, property checks, float64 reference) and
``jaxsnn.plot`` (figures, needs matplotlib) are imported on demand.
"""

from jaxsnn import data, discrete, encode, event, graph, hardware, initializers, loss, optim, spikes
from jaxsnn.compose import (
    fan_in_concat,
    fan_in_sum,
    fan_out,
    identity,
    leaf_count,
    parallel,
    residual,
    serial,
    stateless,
)
from jaxsnn.spikes import Spikes
from jaxsnn.types import ApplyFn, InitFn, Layer, layer_name, named_layer

__version__ = "0.1.0"

__all__ = [
    "ApplyFn",
    "InitFn",
    "Layer",
    "Spikes",
    "data",
    "discrete",
    "encode",
    "event",
    "fan_in_concat",
    "fan_in_sum",
    "fan_out",
    "graph",
    "hardware",
    "identity",
    "initializers",
    "layer_name",
    "leaf_count",
    "loss",
    "named_layer",
    "optim",
    "parallel",
    "residual",
    "serial",
    "spikes",
    "stateless",
    "__version__",
]
