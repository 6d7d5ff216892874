"""jaxsnn: pure-functional spiking neural networks in JAX.

Layers are stax-style ``(init, apply)`` pairs composed by one nestable ``serial``::

    init, apply = jaxsnn.serial(jaxsnn.discrete.LIF(120), jaxsnn.discrete.LI(3))
"""

from jaxsnn import spikes
from jaxsnn.compose import leaf_count, serial, stateless
from jaxsnn.spikes import Spikes
from jaxsnn.types import ApplyFn, InitFn, Layer, layer_name, named_layer

__version__ = "0.1.0"

__all__ = [
    "ApplyFn",
    "InitFn",
    "Layer",
    "Spikes",
    "layer_name",
    "leaf_count",
    "named_layer",
    "serial",
    "spikes",
    "stateless",
    "__version__",
]
