"""Discrete-time spiking layers trained by backpropagation through time.

Layers (all ``jaxsnn.Layer`` pairs, usable in ``jaxsnn.serial``; per-sample inputs are
``(time, features)``, ``(time, height, width, channels)`` for ``Conv``; batch with ``jax.vmap``):

- ``LIF``: current-based leaky integrate-and-fire neurons with surrogate gradients.
- ``LI``: leaky-integrator readout (membrane trace output).
- ``RecurrentLIF``: ``LIF`` with all-to-all recurrent weights.
- ``Dense`` (alias ``Linear``): projection of every time step at once.
- ``Conv``: 2-D convolution of every time step at once.

``surrogate`` holds the spike functions (Heaviside forward, surrogate derivative backward).
"""

from jaxsnn.discrete import surrogate
from jaxsnn.discrete.conv import Conv
from jaxsnn.discrete.lif import (
    LI,
    LIF,
    LIFRecording,
    LIFState,
    LIRecording,
    RecurrentLIF,
    RecurrentLIFState,
    decay_factors,
    lif_dynamics,
    tau_from_decay,
)
from jaxsnn.discrete.linear import Dense, Linear

__all__ = [
    "Conv",
    "Dense",
    "LI",
    "LIF",
    "LIFRecording",
    "LIFState",
    "LIRecording",
    "Linear",
    "RecurrentLIF",
    "RecurrentLIFState",
    "decay_factors",
    "lif_dynamics",
    "surrogate",
    "tau_from_decay",
]
