"""A discrete network seen one time step at a time, and the structure the rules exploit.

The online rules never look inside a layer. They drive the whole network (any ``jaxsnn.serial``
or other composite of discrete layers) through its public ``apply`` with a window of one time
step and the flat ``carry``::

    step(params, carry, x_t) = apply(params, x_t[None], carry=carry)  ->  (carry', y_t, rec_t)

and take every Jacobian they need from JAX (``jax.vjp`` of this map). Three facts about the
flat lists make the bookkeeping cheap, all read from shapes and carry types (never from layer
internals):

* a *leaf* with a ``jaxsnn.discrete.LIFState`` carry (``LIF``, ``LI``) is **neuron-local**: the
  next state of neuron ``j`` depends on the previous state of neuron ``j`` only, so the state
  Jacobian is a small ``(fields x fields)`` block per neuron, obtained exactly from one
  vector-Jacobian product per state field with an all-ones cotangent;
* a parameter array whose last axis is the neuron axis of the stateful leaf it feeds
  (``weight (n_in, n)``, ``bias (n,)``) is **column-structured**: ``p[..., j]`` reaches the
  state of neuron ``j`` only, so the sensitivity of the state to ``p`` has the shape of ``p``
  per state field (per-neuron sensitivity, not a dense (state x params) matrix). This holds for
  the parameters of the stateful leaf itself and of a stateless leaf right before it (``Dense``
  then ``LIF(project=False)``);
* leaves come in topological order (``serial`` and the branch combinators), so a parameter can
  only influence states of its own leaf and of later leaves.

Anything else (``RecurrentLIF``, whose neurons are coupled through ``recurrent_weight``, or a
layer this module does not know) is handled with dense Jacobians: exact, only slower.

Neuron constants that some rules need (the subthreshold kernel of OTTT and OTPE, and which
state fields are dead, e.g. the current of a ``tau_syn=0`` neuron) are *measured* from the
layer once per trace: the one-step Jacobian at a state ``PROBE_DEPTH`` below rest, where every
built-in surrogate derivative is below ``1e-12`` (sigmoid and triangle: exactly 0), so the
measurement is the layer's linear subthreshold dynamics.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn.discrete.lif import LIFState
from jaxsnn.spikes import Spikes
from jaxsnn.types import Layer

Array = jax.Array

#: how far below rest (in units of ``1 + |v_rest|``) the membrane is put to measure the
#: subthreshold dynamics of a neuron
PROBE_DEPTH = 1e6

_COMPOSITES = ("serial(", "parallel(", "residual(")


class LeafInfo(NamedTuple):
    """Static facts about one leaf of the flat lists.

    Attributes:
        index: position in the flat params/carry lists.
        name: the layer's name (for messages).
        kind: ``"stateless"`` (carry ``None``), ``"local"`` (``LIFState``: neuron-local) or
            ``"dense"`` (any other carry, e.g. ``RecurrentLIFState``).
        fields: number of arrays in the carry (``LIFState``: 2, ``v`` and ``current``).
        features: shape of one state field (``local`` leaves), else ``()``.
        size: number of state entries (all fields together).
        owner: index of the stateful leaf whose state this leaf's parameters feed directly
            (the first stateful leaf at or after this one), ``None`` if there is none.
        n_params: number of parameter arrays of the leaf.
        output_key: how to read the leaf's output from its recording (``"spikes"``/``"v"``)
            or ``None`` when the recording does not contain it.
    """

    index: int
    name: str
    kind: str
    fields: int
    features: Tuple[int, ...]
    size: int
    owner: Optional[int]
    n_params: int
    output_key: Optional[str]


class ParamInfo(NamedTuple):
    """One parameter array: which leaf owns it and where it sits in the leaf's params."""

    leaf: int
    position: int
    shape: Tuple[int, ...]
    column: bool  # column-structured w.r.t. the owner leaf's neurons


class NetworkInfo(NamedTuple):
    """Static description of a network for the online rules (hashable pieces only)."""

    leaves: Tuple[LeafInfo, ...]
    params: Tuple[ParamInfo, ...]
    input_features: Tuple[int, ...]


def leaf_names(net: Any, n_leaves: int) -> List[str]:
    """Names of the leaves of ``net`` in flat order, parsed from the composite's name."""
    name = getattr(net, "name", None)
    if not isinstance(name, str):
        return [f"layer {k}" for k in range(n_leaves)]
    names = _split_leaves(name)
    if len(names) != n_leaves:
        return [f"layer {k}" for k in range(n_leaves)]
    return names


def _split_leaves(name: str) -> List[str]:
    for prefix in _COMPOSITES:
        if name.startswith(prefix) and name.endswith(")"):
            inner = name[len(prefix):-1]
            parts, depth, start = [], 0, 0
            for i, ch in enumerate(inner):
                if ch in "([{":
                    depth += 1
                elif ch in ")]}":
                    depth -= 1
                elif ch == "," and depth == 0:
                    parts.append(inner[start:i].strip())
                    start = i + 1
            parts.append(inner[start:].strip())
            out: List[str] = []
            for part in parts:
                out.extend(_split_leaves(part))
            return out
    return [name]


def is_composite(net: Any) -> bool:
    """True for ``serial`` and other composites (flat params/carry lists)."""
    return isinstance(net, Layer) and net.leaves is not None


def make_step(apply):
    """``step(params, carry, x_t) -> (carry', y_t, rec_t)``: ``apply`` on a one-step window."""

    def step(params, carry, x_t):
        new_carry, outputs, recording = apply(params, x_t[None], carry=carry)
        squeeze = lambda a: a[0]  # noqa: E731
        return new_carry, jax.tree_util.tree_map(squeeze, outputs), jax.tree_util.tree_map(
            squeeze, recording
        )

    return step


def _contains_spikes(tree: Any) -> bool:
    found = []

    def visit(node):
        if isinstance(node, Spikes):
            found.append(True)
            return True
        return False

    jax.tree_util.tree_map(lambda x: x, tree, is_leaf=visit)
    return bool(found)


def analyze(label: str, net: Any, params: Sequence[Any], input_features: Tuple[int, ...],
            dtype: Any) -> NetworkInfo:
    """Shapes, carry kinds and parameter structure of a composite network.

    Args:
        label: prefix for error messages (``"sequence_gradient"``).
        net: a composite ``Layer`` (``serial``) of discrete layers.
        params: its flat params list.
        input_features: per-step input shape (without the time axis).
        dtype: input dtype.

    Returns:
        ``NetworkInfo``.

    Raises:
        ValueError: if a leaf is event-based or the network cannot run one time step on
            ``(1, *input_features)`` inputs.
    """
    n_leaves = len(params)
    names = leaf_names(net, n_leaves)
    step = make_step(net.apply)
    x_spec = jax.ShapeDtypeStruct((1,) + tuple(input_features), dtype)
    shape = "(time, " + ", ".join(map(str, input_features)) + ")"
    # the whole network on a window first: event layers run there, and are named below
    try:
        window_carry, _, window_recording = jax.eval_shape(
            lambda p, x: net.apply(p, x), params, jax.ShapeDtypeStruct((2,) + x_spec.shape[1:],
                                                                       dtype)
        )
    except Exception as error:  # the layers' own message says what does not fit
        raise ValueError(
            f"{label}: the network cannot run on inputs of shape {shape}: {error}"
        ) from error
    for k in range(n_leaves):
        carry_k, rec_k = window_carry[k], window_recording[k]
        if _contains_spikes(carry_k) or _contains_spikes(rec_k) or _is_event_state(carry_k):
            raise ValueError(
                f"{label}: layer {k} ({names[k]}) is an event-based layer; the online rules "
                "step discrete-time networks one time step at a time and cannot differentiate "
                "it. Train event layers with EventProp (jaxsnn.event) or use jaxsnn.discrete "
                "layers"
            )

    def rest(params, x):
        return net.apply(params, x[:0])[0]

    try:
        carry_spec = jax.eval_shape(rest, params, x_spec)
        new_carry, _, recording = jax.eval_shape(
            lambda p, c, x: step(p, c, x[0]), params, carry_spec, x_spec
        )
    except Exception as error:
        raise ValueError(
            f"{label}: the network cannot run one time step on inputs of shape "
            f"(1, {', '.join(map(str, input_features))}): {error}. Online rules need "
            "discrete-time layers (jaxsnn.discrete, stateless stax layers) driven by dense "
            "(time, features) inputs"
        ) from error
    leaves: List[LeafInfo] = []
    for k in range(n_leaves):
        carry_k, rec_k = new_carry[k], recording[k]
        if carry_k is None:
            kind, fields, features, size = "stateless", 0, (), 0
        else:
            arrays = jax.tree_util.tree_leaves(carry_k)
            for a in arrays:
                if not jnp.issubdtype(a.dtype, jnp.floating):
                    raise ValueError(
                        f"{label}: layer {k} ({names[k]}) carries a non-float state "
                        f"({a.dtype}); online rules differentiate the carry"
                    )
            fields = len(arrays)
            size = int(sum(math.prod(a.shape) for a in arrays))
            if isinstance(carry_k, LIFState) and carry_k.v.shape == carry_k.current.shape:
                kind, features = "local", tuple(carry_k.v.shape)
            else:
                kind, features = "dense", ()
        leaves.append(LeafInfo(k, names[k], kind, fields, features, size, None, 0,
                               _output_key(rec_k)))
    # owners: the first stateful leaf at or after each leaf
    owners: List[Optional[int]] = [None] * n_leaves
    next_stateful: Optional[int] = None
    for k in reversed(range(n_leaves)):
        if leaves[k].kind != "stateless":
            next_stateful = k
        owners[k] = next_stateful
    param_infos: List[ParamInfo] = []
    for k in range(n_leaves):
        arrays = jax.tree_util.tree_leaves(params[k])
        owner = owners[k]
        for position, array in enumerate(arrays):
            shape = tuple(np.shape(array))
            param_infos.append(
                ParamInfo(k, position, shape, _is_column(leaves, k, owner, shape))
            )
        leaves[k] = leaves[k]._replace(owner=owner, n_params=len(arrays))
    return NetworkInfo(tuple(leaves), tuple(param_infos), tuple(input_features))


def _is_event_state(carry: Any) -> bool:
    try:
        from jaxsnn.event.neuron import LIFState as EventState
    except ImportError:  # pragma: no cover
        return False
    return isinstance(carry, EventState)


def _output_key(recording: Any) -> Optional[str]:
    """Which field of a leaf's recording is its output (jaxsnn discrete recordings)."""
    if recording is None:
        return None
    for key in ("spikes", "v"):
        if hasattr(recording, key) and getattr(recording, key) is not None:
            return key
    return None


def _is_column(
    leaves: List[LeafInfo], k: int, owner: Optional[int], shape: Tuple[int, ...]
) -> bool:
    """Column structure: ``p[..., j]`` reaches neuron ``j`` of ``owner`` only (module doc)."""
    if owner is None or leaves[owner].kind != "local" or len(leaves[owner].features) != 1:
        return False
    if not shape or shape[-1] != leaves[owner].features[0]:
        return False
    return k == owner or (k == owner - 1 and leaves[k].kind == "stateless")


def rest_carry(net: Any, params: Sequence[Any], inputs: Array) -> List[Any]:
    """The network's rest state: ``apply`` on an empty window returns the initial carry."""
    return list(net.apply(params, inputs[:0])[0])


# --------------------------------------------------------------------------------------------
# The subthreshold probe
# --------------------------------------------------------------------------------------------


class Kernel(NamedTuple):
    """Linear subthreshold dynamics of a neuron-local leaf (all neurons alike).

    ``s_t = A s_{t-1} + c * drive_t`` between spikes, per neuron, for the state fields in
    ``LIFState`` order (``v``, ``current``).

    Attributes:
        A: ``(fields, fields)`` state Jacobian without spikes.
        c: ``(fields,)`` response of each field to the input drive, or ``None`` when it could
            not be measured (no presynaptic activity at the probe).
        live: indices of the fields that influence later steps (a field whose column of ``A``
            is zero, such as the current of a ``tau_syn=0`` neuron, is dead).
    """

    A: np.ndarray
    c: Optional[np.ndarray]
    live: Tuple[int, ...]


def probe_kernels(net: Any, info: NetworkInfo, params: Sequence[Any], dtype: Any
                  ) -> Dict[int, Kernel]:
    """Measure the subthreshold kernel of every neuron-local leaf (see the module docstring).

    Runs at trace time on concrete zeros shaped like ``params`` (values of the real parameters
    are not needed: with zero weights and the probed leaf far below threshold, the one-step
    Jacobian is the leaf's linear dynamics). The leaf before the probed one is driven far above
    rest so that it emits activity, from which the drive response ``c`` is read.

    Returns:
        ``{leaf index: Kernel}``.
    """
    kernels: Dict[int, Kernel] = {}
    local = [leaf.index for leaf in info.leaves if leaf.kind == "local"]
    if not local:
        return kernels
    with jax.ensure_compile_time_eval():
        zero_params = jax.tree_util.tree_map(
            lambda a: np.zeros(np.shape(a), a.dtype if hasattr(a, "dtype") else np.result_type(a)),
            list(params),
        )
        x0 = np.ones((1,) + info.input_features, dtype)
        rest = jax.device_get(list(net.apply(zero_params, x0[:0])[0]))
        for layer in local:
            kernels[layer] = _probe_leaf(net.apply, info, zero_params, rest, x0[0], layer)
    return kernels


def _shifted(state: LIFState, amount: float) -> LIFState:
    v = np.asarray(state.v)
    scale = 1.0 + float(np.max(np.abs(v))) if v.size else 1.0
    return state._replace(v=v + amount * PROBE_DEPTH * scale)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _probe_jacobians(apply, layer: int, params, carry, x):
    """Per field ``f`` of leaf ``l``: the VJP of ``S'^l_f`` (all-ones cotangent) at the probe.

    Jitted with the network's ``apply`` static, so JAX compiles it once per network and shapes.
    """
    step = make_step(apply)
    (new_carry, outputs, recording), vjp_fn = jax.vjp(lambda p, c: step(p, c, x), params, carry)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, (new_carry, outputs, recording))
    fields = len(jax.tree_util.tree_leaves(new_carry[layer]))
    rows = []
    for f in range(fields):
        cot = list(zeros[0])
        leaves, treedef = jax.tree_util.tree_flatten(cot[layer])
        leaves = [jnp.ones_like(a) if g == f else a for g, a in enumerate(leaves)]
        cot[layer] = jax.tree_util.tree_unflatten(treedef, leaves)
        cot_params, cot_carry = vjp_fn((cot, zeros[1], zeros[2]))
        rows.append((jax.tree_util.tree_leaves(cot_carry[layer]), cot_params))
    return rows, recording


def _probe_leaf(apply, info: NetworkInfo, params, rest, x, layer: int) -> Kernel:
    leaf = info.leaves[layer]
    carry = list(rest)
    carry[layer] = _shifted(rest[layer], -1.0)
    block = [k for k in range(layer + 1) if info.leaves[k].owner == layer]
    first = block[0]
    feeder = first - 1  # the leaf whose output drives the block
    if feeder >= 0 and info.leaves[feeder].kind != "stateless":
        carry[feeder] = _drive_up(carry[feeder])
    rows, recording = _probe_jacobians(apply, layer, params, carry, x)
    rows = jax.device_get(rows)
    recording = jax.device_get(recording)
    A = np.zeros((leaf.fields, leaf.fields))
    drive = np.full((leaf.fields,), np.nan)
    presyn = _presynaptic(info, params, recording, x, first)
    for f, (cot_state, cot_params) in enumerate(rows):
        for g in range(leaf.fields):
            column = np.asarray(cot_state[g]).reshape(-1)
            A[f, g] = column[0]
            if not np.allclose(column, column[0], rtol=1e-6, atol=0.0):
                raise ValueError(
                    f"layer {layer} ({leaf.name}): neurons of one layer have different "
                    "subthreshold dynamics; the presynaptic traces of ottt/otpe need identical "
                    "neurons"
                )
        drive[f] = _drive_response(info, cot_params, block, presyn)
    live = tuple(g for g in range(leaf.fields) if np.any(A[:, g] != 0.0))
    c = None if np.any(np.isnan(drive)) else drive
    return Kernel(A, c, live)


def _drive_up(state: Any) -> Any:
    if isinstance(state, LIFState) or hasattr(state, "v"):
        v = np.asarray(state.v)
        scale = 1.0 + float(np.max(np.abs(v))) if v.size else 1.0
        return state._replace(v=v + PROBE_DEPTH * scale)
    return state


def _presynaptic(info: NetworkInfo, params, recording, x, first: int) -> Optional[np.ndarray]:
    """The input of leaf ``first`` at the probe (network input or the recorded output)."""
    if first == 0:
        return np.asarray(x).reshape(-1)
    feeder = info.leaves[first - 1]
    if feeder.output_key is None:
        return None
    return np.asarray(getattr(recording[first - 1], feeder.output_key)).reshape(-1)


def _drive_response(info: NetworkInfo, cot_params, block: List[int], presyn) -> float:
    """``c_f`` from ``d s_f / d p[..., j]`` of a bias (``= c_f``) or a weight (``= c_f x_i``)."""
    for k in block:
        arrays = jax.tree_util.tree_leaves(cot_params[k])
        for p in arrays:
            p = np.asarray(p)
            if p.ndim == 1:
                return float(p[0])
        for p in arrays:
            p = np.asarray(p)
            if p.ndim == 2 and presyn is not None and presyn.shape[0] == p.shape[0]:
                i = int(np.argmax(np.abs(presyn)))
                if presyn[i] != 0:
                    return float(p[i, 0] / presyn[i])
    return float("nan")
