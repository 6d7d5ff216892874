"""jaxsnn: pure-functional spiking neural networks in JAX.

Layers are stax-style ``(init, apply)`` pairs composed by one nestable ``serial``::

    init, apply = jaxsnn.serial(jaxsnn.discrete.LIF(120, ...), jaxsnn.discrete.LI(3, ...))

Subpackages: ``discrete`` (time-grid layers, BPTT with surrogate gradients), ``event`` (exact
event-based layers, EventProp), ``hardware`` (backends and in-the-loop training), ``data``,
``encode``, ``loss``, ``optim`` (optimiser transformations such as weight bumping);
``jaxsnn.testing`` (hypothesis strategies, property checks, float64 reference) and
``jaxsnn.plot`` (figures, needs matplotlib) are imported on demand.
"""

from jaxsnn import data, discrete, encode, event, hardware, initializers, loss, optim, spikes
from jaxsnn.compose import leaf_count, serial, stateless
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
    "hardware",
    "initializers",
    "layer_name",
    "leaf_count",
    "loss",
    "named_layer",
    "optim",
    "serial",
    "spikes",
    "stateless",
    "__version__",
]
