"""One executable node of an imported NIR graph.

A ``Node`` is the runtime form of one NIR node under one dialect: its shapes, its trainable
parameters (stored in the imported layer's ``params``) and pure functions. Stateless nodes
provide ``apply(params, x)`` over any leading axes. Stateful nodes (neurons, delays) provide
``init_state(dtype)`` and ``step(params, state, inputs) -> (state, y)`` for one time step, where
``inputs`` is the list of incoming signals of that step in edge order (summed by the node, so
that the order of additions can follow the library being reproduced). A node whose output at
step ``t`` does not depend on its input at step ``t`` (a neuron that fires from the membrane of
the previous step, a delay of at least one step) also provides ``emit(params, state) -> y``:
the executor may then read its output before its inputs of the step are known, which is what
lets such nodes close a feedback loop without an extra delay.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import jax
import numpy as np

Array = jax.Array
Shape = Tuple[int, ...]


class NodeRecord(NamedTuple):
    """What the imported layer records for one node.

    Attributes:
        output: ``(T, *output_type)``: the node's output signal (spikes of spiking neurons,
            the membrane of leaky integrators, the value of stateless nodes).
        state: for stateful nodes the state after each step, ``(T, ...)`` per field (e.g.
            ``NeuronState(v, current)``); ``None`` for stateless nodes.
    """

    output: Array
    state: Any = None


class NeuronState(NamedTuple):
    """State of an imported neuron node after a step.

    Attributes:
        v: membrane potential (after reset, as the library being reproduced keeps it).
        current: synaptic current of two-state (current-based) neurons, else ``None``.
    """

    v: Array
    current: Optional[Array] = None


@dataclasses.dataclass(frozen=True, eq=False)
class Node:
    """Runtime form of one NIR node (see the module docstring).

    Attributes:
        name: node name (nested graphs: ``"outer.inner"``).
        kind: the NIR class name, e.g. ``"CubaLIF"``.
        in_shape: shape of the node's input (without time).
        out_shape: shape of the node's output (without time).
        params: trainable arrays (NumPy, the file's values in the layer's conventions).
        apply: stateless map ``(params, x) -> y``; ``None`` for stateful nodes.
        init_state: ``dtype -> state`` at rest; ``None`` for stateless nodes.
        step: ``(params, state, inputs) -> (state, y)``; ``None`` for stateless nodes.
        emit: ``(params, state) -> y`` when the output does not depend on the same step's
            input (no feed-through), else ``None``.
        loop_step: the step to use when the node lies on a feedback loop, where a library
            runs a different update (e.g. snnTorch's ``RLeaky``); ``None``: ``step``.
        describe: a one-line description of the discretisation, for error messages and docs.
    """

    name: str
    kind: str
    in_shape: Shape
    out_shape: Shape
    params: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    apply: Optional[Callable[..., Array]] = None
    init_state: Optional[Callable[[Any], Any]] = None
    step: Optional[Callable[..., Tuple[Any, Array]]] = None
    emit: Optional[Callable[..., Array]] = None
    loop_step: Optional[Callable[..., Tuple[Any, Array]]] = None
    describe: str = ""

    @property
    def stateful(self) -> bool:
        return self.step is not None

    @property
    def feedthrough(self) -> bool:
        """True when the output of a step depends on the input of the same step."""
        return self.emit is None


def sum_inputs(inputs: List[Array]) -> Array:
    """Sum a node's incoming signals left to right (edge order)."""
    total = inputs[0]
    for x in inputs[1:]:
        total = total + x
    return total
