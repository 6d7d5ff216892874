"""Discrete-time spiking layers trained by backpropagation through time.

Layers (all ``jaxsnn.Layer`` pairs, usable in ``jaxsnn.serial``; per-sample inputs are
``(time, features)``, ``(time, height, width, channels)`` for ``Conv``; batch with ``jax.vmap``):

- ``LIF``: current-based leaky integrate-and-fire neurons with surrogate gradients.
- ``LI``: leaky-integrator readout (membrane trace output).
- ``RecurrentLIF``: ``LIF`` with all-to-all recurrent weights.
- ``Dense`` (alias ``Linear``): projection of every time step at once.
- ``Conv``: 2-D convolution of every time step at once.
- ``ConvLIF``: ``serial(Conv, LIF)`` fused: each step convolved inside the LIF scan, with a
  hand-written adjoint (same results, faster on CPU, no ``(T, H, W, C)`` drive in memory).
- ``Delay``: a fixed delay of a whole number of time steps.
- ``SumPool``/``AvgPool``/``MaxPool``: spatial pooling of every time step; ``Flatten``:
  ``(time, *features) -> (time, n)``, so conv -> pool -> conv -> pool -> dense stacks can be built.

``time_major(net)`` batches a network over ``(time, batch, ...)`` inputs without moving the
time axis (``jax.vmap`` over axis 1; faster than batch-major data for ``Dense``/``LIF`` stacks).
``stepwise(net)`` runs a network a step (or a few) at a time with all its layers in one scan,
for inference: no hidden layer's output is written for the whole window.

``dynamics`` holds the neuron's per-step update (``lif_step``), the scans over a window and
their hand-written adjoint (``lif_dynamics`` runs them on precomputed currents); ``surrogate``
the spike functions (Heaviside forward, surrogate derivative backward).

``LIFState``/``LIFRecording`` here are the discrete-time classes (state after the last grid
step; dense spike arrays); ``jaxsnn.event`` has its own classes of the same names (state at an
arbitrary time with a refractory field; ``Spikes`` event buffers).
"""

from jaxsnn.discrete import dynamics, surrogate
from jaxsnn.discrete.batching import time_major
from jaxsnn.discrete.conv import Conv
from jaxsnn.discrete.conv_lif import ConvLIF
from jaxsnn.discrete.delay import Delay
from jaxsnn.discrete.dynamics import (
    LIFState,
    RecurrentLIFState,
    decay_factors,
    lif_dynamics,
    tau_from_decay,
)
from jaxsnn.discrete.lif import LI, LIF, LIFRecording, LIRecording, RecurrentLIF
from jaxsnn.discrete.linear import Dense, Linear
from jaxsnn.discrete.pool import AvgPool, Flatten, MaxPool, SumPool
from jaxsnn.discrete.stepwise import stepwise

__all__ = [
    "AvgPool",
    "Conv",
    "ConvLIF",
    "Dense",
    "Delay",
    "Flatten",
    "LI",
    "LIF",
    "LIFRecording",
    "LIFState",
    "LIRecording",
    "Linear",
    "MaxPool",
    "RecurrentLIF",
    "RecurrentLIFState",
    "SumPool",
    "decay_factors",
    "dynamics",
    "lif_dynamics",
    "stepwise",
    "surrogate",
    "tau_from_decay",
    "time_major",
]
