"""Event-based simulation with exact, continuous spike times.

Layers (``LIF``, ``RecurrentLIF``, ``LI``) take and give ``jaxsnn.Spikes``; ``ToDense`` and
``ToSpikes`` convert to and from dense ``(time, n)`` grids so discrete and event layers share
one ``jaxsnn.serial``. ``simulate`` is the underlying exact single-layer simulation.

Modules, one concept each: ``neuron`` (parameters, state), ``dynamics`` (closed-form evolution
and the PSP kernel), ``kernels`` (next threshold crossing), ``plan`` (static choices resolved
once: kernel, forward algorithm, refractory handling), ``simulate`` (the forward pass),
``superposition`` (the state in closed form from given events), ``eventprop`` (the adjoint
backward pass), ``layers`` and ``convert`` (the ``(init, apply)`` layers).
"""

from jaxsnn.event.convert import ToDense, ToSpikes
from jaxsnn.event.delay import Delay, DelayRecording
from jaxsnn.event.dynamics import evolve, extremum_time, free_membrane, psp_kernel, rest_state
from jaxsnn.event.kernels import KERNELS, lambertw0, next_crossing, resolve_kernel
from jaxsnn.event.layers import LI, LIF, LIFRecording, LIRecording, RecurrentLIF, psp_peak
from jaxsnn.event.neuron import LIFParameters, LIFState, validate_parameters
from jaxsnn.event.plan import Plan, resolve_plan
from jaxsnn.event.simulate import (
    SimulationResult,
    checked_inputs,
    required_capacity,
    simulate,
    validate_inputs,
)

__all__ = [
    "Delay",
    "DelayRecording",
    "KERNELS",
    "LI",
    "LIF",
    "LIFParameters",
    "LIFRecording",
    "LIFState",
    "LIRecording",
    "Plan",
    "RecurrentLIF",
    "SimulationResult",
    "ToDense",
    "ToSpikes",
    "checked_inputs",
    "evolve",
    "extremum_time",
    "free_membrane",
    "lambertw0",
    "next_crossing",
    "psp_kernel",
    "psp_peak",
    "required_capacity",
    "resolve_kernel",
    "resolve_plan",
    "rest_state",
    "simulate",
    "validate_inputs",
    "validate_parameters",
]
