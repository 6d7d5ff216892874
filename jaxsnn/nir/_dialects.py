"""Dialects: how each writer of NIR files means its nodes, turned into executable ``Node``s.

A NIR file stores continuous-time equations but no time step, and each library writes (and
simulates) them its own way. A dialect maps every NIR node to a ``Node`` with that writer's
discretisation, units, reset, latency and layout. All dialects share the executor in
``_graph.py``; they differ only in the nodes they build and in how they read nested graphs.

Signals on the time grid: step ``t`` covers ``[t dt, (t + 1) dt)``; a node's output at step ``t``
goes to its targets in the same step (edges carry no delay) except where a feedback loop needs
a delay (see ``_graph.py``) or the dialect's neuron itself fires from the previous membrane.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsnn.nir import _ops
from jaxsnn.nir._node import Node, NeuronState, sum_inputs

Array = jax.Array
Shape = Tuple[int, ...]

NEURON_KINDS = ("I", "IF", "LI", "LIF", "CubaLI", "CubaLIF")
STATELESS_KINDS = (
    "Affine",
    "Linear",
    "Scale",
    "Threshold",
    "Flatten",
    "Conv1d",
    "Conv2d",
    "SumPool2d",
    "AvgPool2d",
)


# --------------------------------------------------------------------------------------------
# reading node fields


def field(node: Any, name: str, node_name: str) -> np.ndarray:
    """A numeric field of a NIR node as a float64 array; errors name the node and the field."""
    value = getattr(node, name, None)
    if value is None:
        raise ValueError(f"NIR node {node_name!r} ({type(node).__name__}) has no {name!r}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"NIR node {node_name!r} ({type(node).__name__}): {name} is not numeric: {value!r}"
        ) from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"NIR node {node_name!r}: {name} has non-finite values")
    return array


def broadcast_param(value: np.ndarray, shape: Shape, name: str, node_name: str) -> np.ndarray:
    """Broadcast a neuron parameter to the node's shape (scalars and size-1 arrays fill it)."""
    if value.size == 1:
        return np.full(shape, float(value.reshape(())), dtype=np.float64)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(
            f"NIR node {node_name!r}: {name} has shape {tuple(value.shape)} but the node's input "
            f"has shape {tuple(shape)}"
        )
    return value


def positive(value: np.ndarray, name: str, node_name: str) -> np.ndarray:
    if np.any(value <= 0):
        raise ValueError(
            f"NIR node {node_name!r}: {name} must be > 0, got min {float(np.min(value))!r}"
        )
    return value


def close_to(value: np.ndarray, expected: Any, rtol: float = 1e-5, atol: float = 1e-12) -> bool:
    return bool(np.allclose(value, expected, rtol=rtol, atol=atol))


def int_tuple(value: Any, n: int, name: str, node_name: str) -> Tuple[int, ...]:
    """An int or a sequence of ``n`` ints (NIR stores them as ints, tuples or arrays)."""
    array = np.atleast_1d(np.asarray(value)).astype(np.int64).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, n)
    if array.size != n:
        raise ValueError(f"NIR node {node_name!r}: {name} must have {n} entries, got {value!r}")
    return tuple(int(a) for a in array)


def as_text(value: Any) -> Optional[str]:
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "SUO" and value.size == 1:
        return as_text(value.reshape(())[()])
    return None


def _const(value: np.ndarray, dtype: Any):
    """A coefficient for the computation: a Python float when uniform (weakly typed, like the
    constants of jaxsnn's own layers, so that XLA compiles the same arithmetic), else an array
    of ``dtype``."""
    value = np.asarray(value)
    if value.size and np.all(value == value.reshape(-1)[0]):
        return float(value.reshape(-1)[0])
    return jnp.asarray(value, dtype)


# --------------------------------------------------------------------------------------------
# the dialect interface


class Dialect:
    """How one writer means NIR nodes (subclassed once per writer).

    Attributes:
        name: the ``dialect=`` name.
        bias_per_step: ``True``: an ``Affine`` bias is added at every step (libraries that
            step a discrete network); ``False``: the bias is a constant current, whose
            integral over a step, ``bias * dt``, enters that step (``"spec"``).
        flatten_channels_last: flatten ``(C, H, W)`` tensors in ``(H, W, C)`` order.
        same_padding: ``"torch"`` (``"same"`` pads ``dilation * (k - 1)`` split low-first,
            stride 1 only) or ``"xla"`` (``"same"`` gives ``ceil(n / stride)`` outputs).
        pool_padding: ``"torch"`` (symmetric padding per side) or ``"same_if_nonzero"``
            (a nonzero stored padding means XLA ``"SAME"``).
        recurrence: one sentence on where the one-step delay of a feedback loop lies.
    """

    name = "dialect"
    bias_per_step = True
    flatten_channels_last = False
    same_padding = "torch"
    pool_padding = "torch"
    recurrence = ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # graph level ----------------------------------------------------------------------------

    def rewrite_subgraph(self, name: str, nodes: Dict[str, Any], edges: List[Tuple[str, str]]):
        """Reinterpret a nested graph before it is flattened (default: read it literally)."""
        return nodes, edges

    def check_node(self, name: str, node: Any) -> None:
        """Raise for nodes (or node metadata) this dialect cannot read faithfully."""

    def io_shape(self, shape: Shape) -> Shape:
        """The per-sample shape meant by a stored Input/Output type (default: as stored)."""
        return tuple(shape)

    # node level -----------------------------------------------------------------------------

    def build(self, name: str, node: Any, in_shape: Shape, dt: float, spike_fn) -> Node:
        """Build the executable node for NIR node ``node`` whose input has shape ``in_shape``."""
        kind = type(node).__name__
        self.check_node(name, node)
        if kind in NEURON_KINDS:
            builder = getattr(self, f"neuron_{kind.lower()}", None)
            if builder is None:
                raise ValueError(
                    f"NIR node {name!r} is a {kind}, which the {self.name!r} dialect does not "
                    f"define ({self._writes()}); read the file with dialect='spec' for the NIR "
                    "equations, or with the dialect of the library that wrote it"
                )
            return builder(name, node, in_shape, dt, spike_fn)
        builder = getattr(self, f"build_{kind.lower()}", None)
        if builder is None:
            raise ValueError(
                f"NIR node {name!r} has type {kind}, which jaxsnn.nir does not support "
                f"(supported: Input, Output, NIRGraph, Delay, {', '.join(STATELESS_KINDS)}, "
                f"{', '.join(NEURON_KINDS)}); nothing is dropped silently: remove or replace "
                "the node"
            )
        return builder(name, node, in_shape, dt, spike_fn)

    def _writes(self) -> str:
        kinds = [k for k in NEURON_KINDS if hasattr(self, f"neuron_{k.lower()}")]
        return "it reads the neurons " + ", ".join(kinds)

    # stateless nodes (shared; the class attributes above select the conventions) -----------

    def build_affine(self, name, node, in_shape, dt, spike_fn) -> Node:
        weight = field(node, "weight", name)
        bias = field(node, "bias", name)
        return self._dense(name, "Affine", weight, bias, in_shape, dt)

    def build_linear(self, name, node, in_shape, dt, spike_fn) -> Node:
        return self._dense(name, "Linear", field(node, "weight", name), None, in_shape, dt)

    def _dense(self, name, kind, weight, bias, in_shape, dt) -> Node:
        if weight.ndim != 2:
            raise ValueError(
                f"NIR node {name!r} ({kind}): weight must be (n_out, n_in), got shape "
                f"{weight.shape}"
            )
        if tuple(in_shape) != (weight.shape[1],):
            raise ValueError(
                f"NIR node {name!r} ({kind}): weight {weight.shape} takes {weight.shape[1]} "
                f"inputs but its input has shape {tuple(in_shape)}"
            )
        params = {"weight": weight.T.copy()}
        describe = "y = x @ weight"
        if bias is not None:
            bias = np.broadcast_to(bias, (weight.shape[0],)).astype(np.float64)
            # Per-step bias: what is added at each step (the file's bias, or its integral
            # over the step for a constant current).
            params["bias"] = bias.copy() if self.bias_per_step else bias * dt
            describe += " + bias" + ("" if self.bias_per_step else " (file bias * dt)")

        def apply(p, x):
            return _ops.affine(x, p["weight"], p.get("bias"))

        return Node(
            name, kind, tuple(in_shape), (weight.shape[0],), params, apply=apply, describe=describe
        )

    def build_scale(self, name, node, in_shape, dt, spike_fn) -> Node:
        scale = broadcast_param(field(node, "scale", name), tuple(in_shape), "scale", name)

        def apply(p, x):
            return x * p["scale"]

        return Node(
            name,
            "Scale",
            tuple(in_shape),
            tuple(in_shape),
            {"scale": scale},
            apply=apply,
            describe="y = x * scale",
        )

    def build_threshold(self, name, node, in_shape, dt, spike_fn) -> Node:
        threshold = broadcast_param(
            field(node, "threshold", name), tuple(in_shape), "threshold", name
        )

        def apply(p, x):
            return spike_fn(x - _const(threshold, x.dtype))

        return Node(
            name,
            "Threshold",
            tuple(in_shape),
            tuple(in_shape),
            apply=apply,
            describe="y = H(x - threshold)",
        )

    def build_flatten(self, name, node, in_shape, dt, spike_fn) -> Node:
        n = len(in_shape)
        stored = getattr(node, "input_type", {}) or {}
        stored = stored.get("input") if isinstance(stored, dict) else None
        if stored is not None and tuple(int(s) for s in np.ravel(stored)) != tuple(in_shape):
            raise ValueError(
                f"NIR node {name!r} (Flatten): stored input_type {tuple(np.ravel(stored))} "
                f"does not match its input {tuple(in_shape)}"
            )
        start = int(np.asarray(node.start_dim))
        end = int(np.asarray(node.end_dim))
        start = start + n if start < 0 else start
        end = end + n if end < 0 else end
        if not 0 <= start <= end < n:
            raise ValueError(
                f"NIR node {name!r} (Flatten): dims start_dim={node.start_dim}, "
                f"end_dim={node.end_dim} do not fit its input shape {tuple(in_shape)}"
            )
        channels_last = self.flatten_channels_last and n == 3
        out_shape = (
            tuple(in_shape[:start])
            + (int(np.prod(in_shape[start : end + 1])),)
            + tuple(in_shape[end + 1 :])
        )

        def apply(p, x):
            return _ops.flatten(x, start, end, n, channels_last)

        order = "(H, W, C) order" if channels_last else "stored order"
        return Node(
            name,
            "Flatten",
            tuple(in_shape),
            out_shape,
            apply=apply,
            describe=f"flatten dims {start}..{end} in {order}",
        )

    def build_conv1d(self, name, node, in_shape, dt, spike_fn) -> Node:
        return self._conv(name, node, in_shape, 1, dt)

    def build_conv2d(self, name, node, in_shape, dt, spike_fn) -> Node:
        return self._conv(name, node, in_shape, 2, dt)

    def _conv(self, name, node, in_shape, n_spatial, dt) -> Node:
        kind = f"Conv{n_spatial}d"
        weight = field(node, "weight", name)
        if weight.ndim != n_spatial + 2:
            raise ValueError(
                f"NIR node {name!r} ({kind}): weight must be (C_out, C_in / groups, *kernel), "
                f"got shape {weight.shape}"
            )
        groups = int(np.asarray(node.groups))
        if len(in_shape) != n_spatial + 1 or in_shape[0] != weight.shape[1] * groups:
            raise ValueError(
                f"NIR node {name!r} ({kind}): input shape {tuple(in_shape)} does not fit weight "
                f"{weight.shape} with groups={groups} (expected (C_in={weight.shape[1] * groups}"
                f", {', '.join(['N'] * n_spatial)}), channels first)"
            )
        stride = int_tuple(node.stride, n_spatial, "stride", name)
        dilation = int_tuple(node.dilation, n_spatial, "dilation", name)
        kernel = tuple(int(k) for k in weight.shape[2:])
        padding = self._conv_padding(
            name, kind, node.padding, tuple(in_shape[1:]), kernel, stride, dilation
        )
        bias = getattr(node, "bias", None)
        params = {"weight": weight.copy()}
        if bias is not None:
            bias = np.broadcast_to(field(node, "bias", name), (weight.shape[0],)).copy()
            params["bias"] = bias if self.bias_per_step else bias * dt

        def apply(p, x):
            return _ops.conv(x, p["weight"], p.get("bias"), stride, padding, dilation, groups)

        out = jax.eval_shape(
            apply,
            {k: jax.ShapeDtypeStruct(v.shape, jnp.float32) for k, v in params.items()},
            jax.ShapeDtypeStruct((1,) + tuple(in_shape), jnp.float32),
        ).shape[1:]
        if any(s <= 0 for s in out):
            raise ValueError(
                f"NIR node {name!r} ({kind}): kernel {kernel} with padding {padding} does not fit "
                f"the input {tuple(in_shape)}"
            )
        return Node(
            name,
            kind,
            tuple(in_shape),
            tuple(out),
            params,
            apply=apply,
            describe=f"stride {stride}, padding {padding}, dilation {dilation}, groups {groups}",
        )

    def _conv_padding(self, name, kind, padding, spatial, kernel, stride, dilation):
        text = as_text(padding)
        n = len(spatial)
        if text is not None:
            text = text.lower()
            if text == "valid":
                return ((0, 0),) * n
            if text != "same":
                raise ValueError(f"NIR node {name!r} ({kind}): unknown padding {text!r}")
            if self.same_padding == "xla":
                pads = []
                for size, k, s, d in zip(spatial, kernel, stride, dilation):
                    out = -(-size // s)
                    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
                    pads.append((total // 2, total - total // 2))
                return tuple(pads)
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"NIR node {name!r} ({kind}): padding 'same' with stride {stride} is "
                    "ambiguous (PyTorch, whose convention NIR follows, forbids it; XLA and Flax "
                    "pad to ceil(n / stride) outputs): store explicit padding, or read with "
                    "the dialect of the library that wrote the file (dialect='spyx' uses XLA's "
                    "'SAME')"
                )
            return tuple(
                (d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)
            )
        amounts = int_tuple(padding, n, "padding", name)
        if any(a < 0 for a in amounts):
            raise ValueError(f"NIR node {name!r} ({kind}): negative padding {amounts}")
        return tuple((a, a) for a in amounts)

    def build_sumpool2d(self, name, node, in_shape, dt, spike_fn) -> Node:
        return self._pool(name, node, in_shape, mean=False)

    def build_avgpool2d(self, name, node, in_shape, dt, spike_fn) -> Node:
        return self._pool(name, node, in_shape, mean=True)

    def _pool(self, name, node, in_shape, mean) -> Node:
        kind = "AvgPool2d" if mean else "SumPool2d"
        if len(in_shape) != 3:
            raise ValueError(
                f"NIR node {name!r} ({kind}) pools (C, H, W) inputs, got shape {tuple(in_shape)}"
            )
        kernel = int_tuple(node.kernel_size, 2, "kernel_size", name)
        stride = int_tuple(node.stride, 2, "stride", name)
        amounts = int_tuple(node.padding, 2, "padding", name)
        if self.pool_padding == "same_if_nonzero":
            if any(amounts):
                pads = []
                for size, k, s in zip(in_shape[1:], kernel, stride):
                    out = -(-size // s)
                    total = max((out - 1) * s + k - size, 0)
                    pads.append((total // 2, total - total // 2))
                padding = tuple(pads)
            else:
                padding = ((0, 0), (0, 0))
        else:
            padding = tuple((a, a) for a in amounts)

        def apply(p, x):
            return _ops.pool2d(x, kernel, stride, padding, mean)

        out = tuple(
            (size + lo + hi - k) // s + 1
            for size, (lo, hi), k, s in zip(in_shape[1:], padding, kernel, stride)
        )
        if any(o <= 0 for o in out):
            raise ValueError(
                f"NIR node {name!r} ({kind}): kernel {kernel} does not fit input {tuple(in_shape)}"
            )
        what = "mean over the window (padding counted)" if mean else "sum over the window"
        return Node(
            name,
            kind,
            tuple(in_shape),
            (in_shape[0],) + out,
            apply=apply,
            describe=f"{what}, kernel {kernel}, stride {stride}, padding {padding}",
        )

    def build_delay(self, name, node, in_shape, dt, spike_fn) -> Node:
        delay = broadcast_param(field(node, "delay", name), tuple(in_shape), "delay", name)
        steps_float = delay / dt
        steps = np.rint(steps_float)
        if np.any(steps < 0) or not np.allclose(steps_float, steps, rtol=1e-6, atol=1e-6):
            raise ValueError(
                f"NIR node {name!r} (Delay): delays {np.unique(delay)[:5]} are not non-negative "
                f"multiples of dt={dt}; choose a dt that divides every delay"
            )
        steps = steps.astype(np.int64)
        k_max = int(steps.max()) if steps.size else 0
        shape = tuple(in_shape)
        if k_max == 0:
            return Node(name, "Delay", shape, shape, apply=lambda p, x: x, describe="zero delay")

        def init_state(dtype):
            return jnp.zeros((k_max,) + shape, dtype)

        def step(p, history, inputs):
            x = sum_inputs(inputs)
            y = _read_delayed(history, steps, k_max)
            return jnp.concatenate([history[1:], x[None]], axis=0), jnp.where(steps == 0, x, y)

        def read(p, history):
            return _read_delayed(history, steps, k_max)

        emit = read if np.all(steps >= 1) else None

        return Node(
            name,
            "Delay",
            shape,
            shape,
            init_state=init_state,
            step=step,
            emit=emit,
            describe=f"delay of {np.unique(steps)[:5]} steps",
        )


def _read_delayed(history: Array, steps: np.ndarray, k_max: int) -> Array:
    # history[k_max - s] is the input s steps ago (history holds the last k_max inputs).
    index = np.clip(k_max - steps, 0, k_max - 1)[None]
    return jnp.take_along_axis(history, jnp.asarray(index), axis=0)[0]


# --------------------------------------------------------------------------------------------
# "spec": the NIR equations, integrated exactly over each step


def exact_gain_cuba(dt: float, tau_syn: np.ndarray, tau_mem: np.ndarray) -> np.ndarray:
    """Membrane change at the end of a step per unit current at its start, current decaying.

    ``kappa = (1 / tau_mem) int_0^dt exp(-(dt - s) / tau_mem) exp(-s / tau_syn) ds
    = a_mem (dt / tau_mem) expm1(d) / d`` with ``d = dt (1 / tau_mem - 1 / tau_syn)`` (finite
    and accurate also for ``tau_syn == tau_mem``).
    """
    a_mem = np.exp(-dt / tau_mem)
    d = dt * (1.0 / tau_mem - 1.0 / tau_syn)
    safe = np.where(d == 0.0, 1.0, d)
    phi = np.where(d == 0.0, 1.0, np.expm1(d) / safe)
    return a_mem * (dt / tau_mem) * phi


def exact_neuron(
    name: str,
    kind: str,
    shape: Shape,
    *,
    a_syn: Optional[np.ndarray],
    a_mem: np.ndarray,
    gain: np.ndarray,
    v_leak: np.ndarray,
    v_threshold: Optional[np.ndarray],
    v_reset: Optional[np.ndarray],
    reset: Optional[str],
    v0: np.ndarray,
    spike_fn,
    describe: str,
) -> Node:
    """The update shared by ``"spec"`` and ``"jaxsnn"`` (and jaxsnn's discrete ``LIF``)::

        I_t = a_syn I_{t-1} + sum(inputs_t)                  (single-state: I_t = sum(inputs_t))
        u_t = v_leak + a_mem (v_{t-1} - v_leak) + gain I_t
        z_t = H(u_t - v_threshold);  v_t = u_t + z_t (v_reset - u_t)   ("hard")
                                     v_t = u_t - z_t (v_threshold - v_reset)   ("subtract")

    Output ``z_t`` (or ``u_t`` without threshold). State ``(v, I)``.
    """
    spiking = v_threshold is not None
    two_state = a_syn is not None
    drop = v_threshold - v_reset if spiking else None

    def init_state(dtype):
        current = jnp.zeros(shape, dtype) if two_state else None
        return NeuronState(jnp.asarray(np.broadcast_to(v0, shape), dtype), current)

    def step(p, state, inputs):
        dtype = state.v.dtype
        if two_state:
            current = _const(a_syn, dtype) * state.current
            for x in inputs:
                current = current + x
        else:
            current = sum_inputs(inputs)
        leak = _const(v_leak, dtype)
        u = leak + _const(a_mem, dtype) * (state.v - leak) + _const(gain, dtype) * current
        if not spiking:
            return NeuronState(u, current if two_state else None), u
        z = spike_fn(u - _const(v_threshold, dtype))
        if reset == "subtract":
            v = u - z * _const(drop, dtype)
        else:
            v = u + z * (_const(v_reset, dtype) - u)
        return NeuronState(v, current if two_state else None), z

    return Node(name, kind, shape, shape, init_state=init_state, step=step, describe=describe)


class Spec(Dialect):
    """``"spec"``: the NIR equations read literally and integrated exactly over each step.

    Conventions (no library's; stated so that a file means one thing):

    * A grid value ``x_t`` that drives a neuron is an impulse (a Dirac delta of area ``x_t``,
      e.g. a spike count) at the start of step ``t``; outputs are sampled at the end of the
      step. An ``Affine`` bias is a constant current, so ``bias * dt`` enters each step.
    * ``LI``/``LIF``: ``v_t = v_leak + a (v_{t-1} + r x_t / tau - v_leak)``, ``a = exp(-dt/tau)``.
    * ``CubaLI``/``CubaLIF``: the current jumps by ``w_in x_t / tau_syn`` and then decays while
      charging the membrane: ``v_t = v_leak + a_mem (v_{t-1} - v_leak) + r kappa I``, exactly
      (``kappa``: see ``exact_gain_cuba``).
    * ``I``/``IF``: ``v_t = v_{t-1} + r x_t``.
    * Spiking nodes fire when ``v_t > v_threshold`` and reset to ``v_reset`` in the same step.
    * Rest: ``v = v_leak`` (``0`` for ``I``/``IF``), ``I = 0``.
    * Feedback loops: a spike reaches the loop's next step (spikes are detected at the end of
      a step): per cycle, the last edge leaving a neuron on the cycle that a depth-first search
      from the loop's entry closes delivers its source's output of the previous step (so a
      recurrent ``Affine`` bias acts from the first step).
    """

    name = "spec"
    bias_per_step = False
    recurrence = (
        "per cycle, the last edge leaving a neuron (found depth-first from the loop's entry, in "
        "edge order) delivers its source's output of the previous step"
    )

    def _reset(self, name: str, node: Any) -> str:
        return "hard"

    def check_node(self, name: str, node: Any) -> None:
        meta = getattr(node, "metadata", None) or {}
        reset = as_text(meta.get("jaxsnn_reset")) if isinstance(meta, dict) else None
        if reset not in (None, "hard") and type(self) is Spec:
            raise ValueError(
                f"NIR node {name!r} declares reset {reset!r} in its metadata (written by "
                "jaxsnn), which the NIR equations (reset to v_reset) cannot express; read the "
                "file with dialect='jaxsnn' (or 'auto')"
            )

    def _neuron(self, name, node, in_shape, dt, spike_fn, kind):
        shape = tuple(in_shape)

        def get(field_name):
            return broadcast_param(field(node, field_name, name), shape, field_name, name)

        spiking = kind in ("IF", "LIF", "CubaLIF")
        threshold = get("v_threshold") if spiking else None
        v_reset = get("v_reset") if spiking else None
        r = get("r")
        if kind in ("I", "IF"):
            one = np.ones(shape)
            return exact_neuron(
                name,
                kind,
                shape,
                a_syn=None,
                a_mem=one,
                gain=r,
                v_leak=np.zeros(shape),
                v_threshold=threshold,
                v_reset=v_reset,
                reset=self._reset(name, node) if spiking else None,
                v0=np.zeros(shape),
                spike_fn=spike_fn,
                describe="v += r x",
            )
        v_leak = get("v_leak")
        if kind in ("LI", "LIF"):
            tau = positive(get("tau"), "tau", name)
            a = np.exp(-dt / tau)
            return exact_neuron(
                name,
                kind,
                shape,
                a_syn=None,
                a_mem=a,
                gain=a * r / tau,
                v_leak=v_leak,
                v_threshold=threshold,
                v_reset=v_reset,
                reset=self._reset(name, node) if spiking else None,
                v0=v_leak,
                spike_fn=spike_fn,
                describe="v = v_leak + a (v + r x / tau - v_leak), a = exp(-dt / tau)",
            )
        tau_syn = positive(get("tau_syn"), "tau_syn", name)
        tau_mem = positive(get("tau_mem"), "tau_mem", name)
        w_in = get("w_in")
        gain = r * exact_gain_cuba(dt, tau_syn, tau_mem) * w_in / tau_syn
        return exact_neuron(
            name,
            kind,
            shape,
            a_syn=np.exp(-dt / tau_syn),
            a_mem=np.exp(-dt / tau_mem),
            gain=gain,
            v_leak=v_leak,
            v_threshold=threshold,
            v_reset=v_reset,
            reset=self._reset(name, node) if spiking else None,
            v0=v_leak,
            spike_fn=spike_fn,
            describe="exact current-based integration over the step",
        )

    def neuron_i(self, name, node, in_shape, dt, spike_fn):
        return self._neuron(name, node, in_shape, dt, spike_fn, "I")

    def neuron_if(self, name, node, in_shape, dt, spike_fn):
        return self._neuron(name, node, in_shape, dt, spike_fn, "IF")

    def neuron_li(self, name, node, in_shape, dt, spike_fn):
        return self._neuron(name, node, in_shape, dt, spike_fn, "LI")

    def neuron_lif(self, name, node, in_shape, dt, spike_fn):
        return self._neuron(name, node, in_shape, dt, spike_fn, "LIF")

    def neuron_cubali(self, name, node, in_shape, dt, spike_fn):
        return self._neuron(name, node, in_shape, dt, spike_fn, "CubaLI")

    def neuron_cubalif(self, name, node, in_shape, dt, spike_fn):
        return self._neuron(name, node, in_shape, dt, spike_fn, "CubaLIF")


class Jaxsnn(Spec):
    """``"jaxsnn"``: files written by ``jaxsnn.nir.to_nir``: ``"spec"`` plus the reset declared
    in each neuron's metadata (``jaxsnn_reset``: ``"hard"`` or ``"subtract"``, by
    ``v_threshold - v_reset``), which NIR's equations cannot express."""

    name = "jaxsnn"

    def _reset(self, name: str, node: Any) -> str:
        meta = getattr(node, "metadata", None) or {}
        reset = as_text(meta.get("jaxsnn_reset")) if isinstance(meta, dict) else None
        if reset is None:
            return "hard"
        if reset not in ("hard", "subtract"):
            raise ValueError(
                f"NIR node {name!r}: metadata jaxsnn_reset={reset!r} is not 'hard' or 'subtract'"
            )
        return reset


# --------------------------------------------------------------------------------------------
# snnTorch


class SnnTorch(Dialect):
    """``"snntorch"``: files written by ``snntorch.export_nir.export_to_nir`` (snnTorch 0.9-1.0).

    snnTorch's writer stores ``LIF(tau = dt / (1 - beta), r = tau / dt, v_leak = 0,
    v_reset = 0)`` for ``Leaky`` and ``CubaLIF(tau_syn = dt / (1 - alpha), tau_mem = dt /
    (1 - beta), r = tau_mem / dt, w_in = tau_syn / dt)`` for ``Synaptic``, with ``dt = 1e-4``
    hard-coded, and a recurrent layer as a cycle ``lif -> w_rec -> lif`` at the top level. The
    file does not say which reset the layer used; this dialect assumes snnTorch's default
    (``reset_mechanism="subtract"``, ``reset_delay=True``) unless told otherwise.

    Per step (``beta = clip(1 - dt / tau, 0, 1)``; ``H(0) = 0``)::

        reset = H(mem_{t-1} - threshold)                       (a spike of the previous step)
        Leaky:    mem_t = beta mem_{t-1} + x_t - reset * threshold
        Synaptic: syn_t = alpha syn_{t-1} + x_t;  mem_t = beta mem_{t-1} + syn_t - reset * threshold
        spk_t = H(mem_t - threshold)

    (``"zero"``: the membrane is zeroed instead; ``reset_delay=False``: the reset is applied in
    the spike's own step.) The recurrent input of step ``t`` is ``w_rec(spk_{t-1})``.

    Args:
        reset_mechanism: ``"subtract"`` (snnTorch's default), ``"zero"`` or ``"none"``.
        reset_delay: snnTorch's ``reset_delay`` (default ``True``).
    """

    name = "snntorch"
    recurrence = (
        "the recurrent edge w_rec -> lif delivers w_rec(spk_{t-1}) (snnTorch's RLeaky/RSynaptic); "
        "in general the edge closing a loop (depth-first from the Input) is delayed by one step"
    )

    def __init__(self, reset_mechanism: str = "subtract", reset_delay: bool = True):
        if reset_mechanism not in ("subtract", "zero", "none"):
            raise ValueError(
                "reset_mechanism must be 'subtract', 'zero' or 'none' (snnTorch's names), "
                f"got {reset_mechanism!r}"
            )
        if not isinstance(reset_delay, bool):
            raise TypeError(f"reset_delay must be a bool, got {type(reset_delay).__name__}")
        self.reset_mechanism = reset_mechanism
        self.reset_delay = reset_delay

    def __repr__(self) -> str:
        return f"SnnTorch(reset_mechanism={self.reset_mechanism!r}, reset_delay={self.reset_delay})"

    def _check_common(self, name, node, shape, dt, taus, r, r_field):
        v_leak = broadcast_param(field(node, "v_leak", name), shape, "v_leak", name)
        if not close_to(v_leak, 0.0):
            raise ValueError(
                f"NIR node {name!r}: v_leak != 0, which snnTorch's neurons cannot express; read "
                "the file with dialect='spec'"
            )
        v_reset = broadcast_param(field(node, "v_reset", name), shape, "v_reset", name)
        if not close_to(v_reset, 0.0):
            raise ValueError(
                f"NIR node {name!r}: v_reset != 0, which snnTorch's neurons cannot express; read "
                "the file with dialect='spec'"
            )
        scale = r * dt / taus
        if not close_to(scale, 1.0):
            implied = np.unique(np.round(taus / r, 12))[:3]
            raise ValueError(
                f"NIR node {name!r}: snnTorch writes {r_field} = tau / dt, so that its input "
                f"enters with weight {r_field} * dt / tau = 1; here {r_field} * dt / tau = "
                f"{float(np.mean(scale)):.6g} with dt={dt}. This file was written with "
                f"dt = tau / {r_field} = {implied} (snnTorch's writer uses 1e-4): pass that dt, "
                "or read with dialect='spec'"
            )

    def neuron_lif(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)
        tau = positive(broadcast_param(field(node, "tau", name), shape, "tau", name), "tau", name)
        r = broadcast_param(field(node, "r", name), shape, "r", name)
        self._check_common(name, node, shape, dt, tau, r, "r")
        threshold = broadcast_param(field(node, "v_threshold", name), shape, "v_threshold", name)
        beta = np.clip(1.0 - dt / tau, 0.0, 1.0)
        return self._neuron(name, "LIF", shape, beta, None, threshold, spike_fn)

    def neuron_cubalif(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)

        def get(f):
            return broadcast_param(field(node, f, name), shape, f, name)

        tau_syn = positive(get("tau_syn"), "tau_syn", name)
        tau_mem = positive(get("tau_mem"), "tau_mem", name)
        self._check_common(name, node, shape, dt, tau_mem, get("r"), "r")
        w_in = get("w_in")
        if not close_to(w_in * dt / tau_syn, 1.0):
            raise ValueError(
                f"NIR node {name!r}: snnTorch writes w_in = tau_syn / dt (input weight "
                f"w_in * dt / tau_syn = 1), here {float(np.mean(w_in * dt / tau_syn)):.6g}; pass "
                f"dt = tau_syn / w_in = {np.unique(np.round(tau_syn / w_in, 12))[:3]} or read "
                "with dialect='spec'"
            )
        alpha = np.clip(1.0 - dt / tau_syn, 0.0, 1.0)
        beta = np.clip(1.0 - dt / tau_mem, 0.0, 1.0)
        return self._neuron(name, "CubaLIF", shape, beta, alpha, get("v_threshold"), spike_fn)

    def _neuron(self, name, kind, shape, beta, alpha, threshold, spike_fn) -> Node:
        mechanism, delayed = self.reset_mechanism, self.reset_delay
        two_state = alpha is not None

        def init_state(dtype):
            return NeuronState(
                jnp.zeros(shape, dtype), jnp.zeros(shape, dtype) if two_state else None
            )

        def make_step(recurrent: bool):
            def step(p, state, inputs):
                dtype = state.v.dtype
                thr = _const(threshold, dtype)
                mem = state.v
                # snnTorch computes the reset from the previous membrane, detached.
                reset = lax.stop_gradient((mem - thr > 0).astype(dtype))
                syn = None
                if two_state:
                    syn = _const(alpha, dtype) * state.current
                    for x in inputs:
                        syn = syn + x
                    base = _const(beta, dtype) * mem + syn
                else:
                    if mechanism == "zero" and not recurrent:
                        mem = (1 - reset) * mem
                    base = _const(beta, dtype) * mem
                    for x in inputs:
                        base = base + x
                if mechanism == "subtract":
                    mem = base - reset * thr
                elif mechanism == "zero" and (two_state or recurrent):
                    mem = base - base * reset if two_state else base - reset * base
                else:
                    mem = base
                spk = spike_fn(mem - thr)
                if not delayed:
                    do_reset = spk - reset
                    if mechanism == "subtract":
                        mem = mem - do_reset * thr
                    elif mechanism == "zero":
                        mem = mem - do_reset * mem
                return NeuronState(mem, syn), spk

            return step

        # A neuron inside a feedback loop is an RLeaky/RSynaptic, whose "zero" reset differs.
        return Node(
            name,
            kind,
            shape,
            shape,
            init_state=init_state,
            step=make_step(False),
            loop_step=make_step(True),
            describe=f"snnTorch {'Synaptic' if two_state else 'Leaky'}, reset "
            f"{mechanism}{' (delayed)' if delayed else ''}",
        )


# --------------------------------------------------------------------------------------------
# Norse


class Norse(Dialect):
    """``"norse"``: files written by ``norse.torch.to_nir`` (Norse 1.x).

    Norse's writer stores ``tau = dt / tau_inv`` (that is ``dt * tau``, with ``dt = 1e-3`` by
    default) and ``r = 1``: ``LIFCell -> CubaLIF``, ``LIFBoxCell -> LIF``, ``LIBoxCell -> LI``,
    ``IAFCell -> IF``, ``Linear -> Affine``, and the traced sample's shape, batch axis included,
    as Input/Output type (a leading axis of size 1 is dropped). This dialect recovers
    ``tau = tau_file / dt`` and steps like Norse (forward Euler, ``k = dt / tau``;
    ``H(0) = 0``)::

        LIFCell:    i' = i + x_t;  v' = v + k_mem ((v_leak - v) + i');  i_t = i' - k_syn i'
                    z_t = H(v' - v_th);  v_t = (1 - z_t) v' + z_t v_reset
        LIFBoxCell: v' = v + k (x_t + v_leak - v);  then fire and reset as above
        LIBoxCell:  v_t = v + k ((v_leak - v) + x_t)         (output v_t)
        IAFCell:    v' = v + x_t;  fire and reset as above

    Rest: ``v = v_leak`` (``IF``: ``v_reset``), ``i = 0``. Norse writes no recurrent layers.

    ``Norse(convention="reader")`` reads a file as Norse's own ``from_nir`` does (the files
    ``jaxsnn.nir.to_nir(..., dialect="norse")`` writes for it): ``tau`` taken as stored
    (``k = dt / tau``), ``CubaLIF`` as a leaky-integrator synapse
    ``s_t = s + k_syn ((v_leak - s) + w_in x_t)`` followed by ``LIFBox`` with input ``r s_t``,
    every reset to 0 (Norse's importer passes no ``v_reset``); ``LI`` nodes, which that
    importer drops, are refused.

    Args:
        convention: ``"writer"`` (default) or ``"reader"``.
    """

    name = "norse"

    def __init__(self, convention: str = "writer"):
        if convention not in ("writer", "reader"):
            raise ValueError(
                f"convention must be 'writer' (files Norse writes) or 'reader' (files as Norse's "
                f"from_nir reads them), got {convention!r}"
            )
        self.convention = convention

    def __repr__(self) -> str:
        return f"Norse(convention={self.convention!r})"

    recurrence = (
        "Norse writes no feedback loops; a loop is read as in 'spec' (per cycle, the last edge "
        "leaving a neuron delivers the previous step)"
    )

    def io_shape(self, shape: Shape) -> Shape:
        # Norse's writer stores the shape of the sample it traced, batch axis included, as the
        # Input/Output type: (1, n) for a batch of one.
        shape = tuple(shape)
        return shape[1:] if len(shape) >= 2 and shape[0] == 1 else shape

    def _unit(self, name, node, shape, field_name):
        value = broadcast_param(field(node, field_name, name), shape, field_name, name)
        if not close_to(value, 1.0):
            raise ValueError(
                f"NIR node {name!r}: {field_name} != 1, which Norse does not write and its "
                f"neurons do not define; read the file with dialect='spec'"
            )

    def _rate(self, name, node, shape, field_name, dt):
        tau_file = positive(
            broadcast_param(field(node, field_name, name), shape, field_name, name),
            field_name,
            name,
        )
        if self.convention == "reader":
            return dt / tau_file
        # The file holds dt * tau; k = dt / tau = dt^2 / tau_file.
        return dt * dt / tau_file

    def _reader_reset(self, name, node, shape):
        v_reset = broadcast_param(field(node, "v_reset", name), shape, "v_reset", name)
        if not close_to(v_reset, 0.0):
            raise ValueError(
                f"NIR node {name!r}: v_reset != 0, which Norse's importer ignores (it resets to "
                "0); read the file with dialect='spec' or Norse(convention='writer')"
            )

    def _fire(self, name, node, shape):
        threshold = broadcast_param(field(node, "v_threshold", name), shape, "v_threshold", name)
        v_reset = broadcast_param(field(node, "v_reset", name), shape, "v_reset", name)
        return threshold, v_reset

    def neuron_cubalif(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)
        if self.convention == "reader":
            return self._reader_cubalif(name, node, shape, dt, spike_fn)
        self._unit(name, node, shape, "r")
        self._unit(name, node, shape, "w_in")
        k_syn = self._rate(name, node, shape, "tau_syn", dt)
        k_mem = self._rate(name, node, shape, "tau_mem", dt)
        v_leak = broadcast_param(field(node, "v_leak", name), shape, "v_leak", name)
        threshold, v_reset = self._fire(name, node, shape)

        def init_state(dtype):
            return NeuronState(jnp.asarray(v_leak, dtype), jnp.zeros(shape, dtype))

        def step(p, state, inputs):
            dtype = state.v.dtype
            i_new = state.current
            for x in inputs:
                i_new = i_new + x
            v = state.v + _const(k_mem, dtype) * ((_const(v_leak, dtype) - state.v) + i_new)
            i_decayed = i_new + (-_const(k_syn, dtype)) * i_new
            z = spike_fn(v - _const(threshold, dtype))
            v = (1 - z) * v + z * _const(v_reset, dtype)
            return NeuronState(v, i_decayed), z

        return Node(
            name,
            "CubaLIF",
            shape,
            shape,
            init_state=init_state,
            step=step,
            describe="Norse LIFCell (forward Euler)",
        )

    def _reader_cubalif(self, name, node, shape, dt, spike_fn):
        def get(f):
            return broadcast_param(field(node, f, name), shape, f, name)

        self._reader_reset(name, node, shape)
        k_syn = self._rate(name, node, shape, "tau_syn", dt)
        k_mem = self._rate(name, node, shape, "tau_mem", dt)
        w_in, r, v_leak, threshold = get("w_in"), get("r"), get("v_leak"), get("v_threshold")

        def init_state(dtype):
            return NeuronState(jnp.asarray(v_leak, dtype), jnp.asarray(v_leak, dtype))

        def step(p, state, inputs):
            dtype = state.v.dtype
            leak = _const(v_leak, dtype)
            x = _const(w_in, dtype) * sum_inputs(inputs)
            s = state.current + _const(k_syn, dtype) * ((leak - state.current) + x)
            v = state.v + _const(k_mem, dtype) * (_const(r, dtype) * s + leak - state.v)
            z = spike_fn(v - _const(threshold, dtype))
            return NeuronState((1 - z) * v, s), z

        return Node(
            name,
            "CubaLIF",
            shape,
            shape,
            init_state=init_state,
            step=step,
            describe="as Norse's from_nir reads CubaLIF (LIBox synapse, LIFBox neuron)",
        )

    def neuron_lif(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)
        if self.convention == "reader":
            self._reader_reset(name, node, shape)  # Norse's importer ignores r (it warns)
        else:
            self._unit(name, node, shape, "r")
        k = self._rate(name, node, shape, "tau", dt)
        v_leak = broadcast_param(field(node, "v_leak", name), shape, "v_leak", name)
        threshold, v_reset = self._fire(name, node, shape)

        def init_state(dtype):
            return NeuronState(jnp.asarray(v_leak, dtype))

        def step(p, state, inputs):
            dtype = state.v.dtype
            v = state.v + _const(k, dtype) * (sum_inputs(inputs) + _const(v_leak, dtype) - state.v)
            z = spike_fn(v - _const(threshold, dtype))
            v = (1 - z) * v + z * _const(v_reset, dtype)
            return NeuronState(v), z

        return Node(
            name,
            "LIF",
            shape,
            shape,
            init_state=init_state,
            step=step,
            describe="Norse LIFBoxCell (forward Euler)",
        )

    def neuron_li(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)
        if self.convention == "reader":
            raise ValueError(
                f"NIR node {name!r} is an LI, which Norse's from_nir drops from the network; "
                "read the file with Norse(convention='writer') or dialect='spec'"
            )
        self._unit(name, node, shape, "r")
        k = self._rate(name, node, shape, "tau", dt)
        v_leak = broadcast_param(field(node, "v_leak", name), shape, "v_leak", name)

        def init_state(dtype):
            return NeuronState(jnp.asarray(v_leak, dtype))

        def step(p, state, inputs):
            dtype = state.v.dtype
            v = state.v + _const(k, dtype) * (
                (_const(v_leak, dtype) - state.v) + sum_inputs(inputs)
            )
            return NeuronState(v), v

        return Node(
            name,
            "LI",
            shape,
            shape,
            init_state=init_state,
            step=step,
            describe="Norse LIBoxCell (forward Euler)",
        )

    def neuron_if(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)
        if self.convention == "reader":
            self._reader_reset(name, node, shape)  # Norse's importer ignores r (it warns)
        else:
            self._unit(name, node, shape, "r")
        threshold, v_reset = self._fire(name, node, shape)

        def init_state(dtype):
            return NeuronState(jnp.asarray(v_reset, dtype))

        def step(p, state, inputs):
            dtype = state.v.dtype
            v = state.v + sum_inputs(inputs)
            z = spike_fn(v - _const(threshold, dtype))
            v = (1 - z) * v + z * _const(v_reset, dtype)
            return NeuronState(v), z

        return Node(
            name, "IF", shape, shape, init_state=init_state, step=step, describe="Norse IAFCell"
        )


# --------------------------------------------------------------------------------------------
# Spyx


class Spyx(Dialect):
    """``"spyx"``: files written by ``spyx.nir.to_nir`` (Spyx 1.x, Flax NNX).

    Spyx's writer stores ``LIF(tau = dt / (1 - beta), r = beta, v_leak = 0)``,
    ``CubaLIF(tau_syn = dt / (1 - alpha), tau_mem = dt / (1 - beta), r = beta)``, ``IF(r = 1)``,
    a reset-free ``PSU_LIF`` as ``LI(r = 1)`` followed by ``Threshold``, and a recurrent layer
    as a nested graph ``{input -> w_rec, w_rec <-> lif, lif -> output}`` whose edge
    ``input -> w_rec`` is not what Spyx computes (the input goes to the neuron directly). Spyx
    runs channels-last: ``Flatten`` of a ``(C, H, W)`` tensor flattens in ``(H, W, C)`` order,
    ``"same"`` convolution padding is XLA's ``"SAME"``, and a ``SumPool2d`` with nonzero stored
    padding is XLA ``"SAME"`` pooling.

    Per step (``beta = clip(1 - dt / tau, 0, 1)``; spikes come from the previous membrane, so
    each spiking layer adds one step of latency)::

        LIF:     z_t = H(V_{t-1} - thr);  V_t = beta V_{t-1} + x_t - z_t thr
        CuBaLIF: z_t = H(V_{t-1} - thr);  V' = V_{t-1} - z_t thr;  I_t = alpha I_{t-1} + x_t;
                 V_t = beta V' + I_t
        IF:      z_t = H(V_{t-1} - thr);  V_t = V_{t-1} + x_t - z_t thr
        LI:      V_t = beta V_{t-1} + x_t          (output V_t; PSU_LIF's membrane)

    A recurrent layer adds ``w_rec(z_t)`` of the same step to ``x_t``.
    """

    name = "spyx"
    flatten_channels_last = True
    same_padding = "xla"
    pool_padding = "same_if_nonzero"
    recurrence = (
        "no edge is delayed: a Spyx neuron fires from its previous membrane, and w_rec(z_t) "
        "reaches the membrane in the same step (RLIF/RCuBaLIF)"
    )

    def rewrite_subgraph(self, name, nodes, edges):
        inputs = [k for k, v in nodes.items() if type(v).__name__ == "Input"]
        neurons = [k for k, v in nodes.items() if type(v).__name__ in ("IF", "LIF", "CubaLIF")]
        dense = [k for k, v in nodes.items() if type(v).__name__ in ("Linear", "Affine")]
        if len(nodes) == 4 and len(inputs) == 1 and len(neurons) == 1 and len(dense) == 1:
            wrong = (inputs[0], dense[0])
            if (
                wrong in edges
                and (dense[0], neurons[0]) in edges
                and (neurons[0], dense[0]) in edges
            ):
                # Spyx's recurrent layer feeds the input to the neuron, not through w_rec.
                edges = [(inputs[0], neurons[0]) if e == wrong else e for e in edges]
        return nodes, edges

    def _beta(self, name, node, shape, tau_field, dt, r_check: bool):
        tau = positive(
            broadcast_param(field(node, tau_field, name), shape, tau_field, name), tau_field, name
        )
        beta = 1.0 - dt / tau
        if r_check:
            r = broadcast_param(field(node, "r", name), shape, "r", name)
            if not (close_to(r, 1.0) or close_to(r, beta, rtol=1e-4, atol=1e-6)):
                implied = np.unique(np.round(tau * (1.0 - r), 12))[:3]
                raise ValueError(
                    f"NIR node {name!r}: Spyx writes r = beta = 1 - dt / {tau_field} and reads "
                    f"no r; here r is neither that (with dt={dt}) nor 1. If the file was "
                    f"written by Spyx with dt = {tau_field} * (1 - r) = {implied}, pass that dt; "
                    "otherwise read with dialect='spec'"
                )
        return np.clip(beta, 0.0, 1.0)

    def _no_leak(self, name, node, shape):
        for f in ("v_leak", "v_reset"):
            if hasattr(node, f) and getattr(node, f) is not None:
                value = broadcast_param(field(node, f, name), shape, f, name)
                if not close_to(value, 0.0):
                    raise ValueError(
                        f"NIR node {name!r}: {f} != 0, which Spyx's neurons cannot express; "
                        "read the file with dialect='spec'"
                    )

    def _spiking(self, name, kind, shape, threshold, beta, alpha, spike_fn, describe) -> Node:
        two_state = alpha is not None

        def init_state(dtype):
            return NeuronState(
                jnp.zeros(shape, dtype), jnp.zeros(shape, dtype) if two_state else None
            )

        def emit(p, state):
            return spike_fn(state.v - _const(threshold, state.v.dtype))

        def step(p, state, inputs):
            dtype = state.v.dtype
            thr = _const(threshold, dtype)
            z = spike_fn(state.v - thr)
            if two_state:
                v = state.v - z * thr
                current = _const(alpha, dtype) * state.current
                for x in inputs:
                    current = current + x
                v = _const(beta, dtype) * v + current
                return NeuronState(v, current), z
            v = state.v if beta is None else _const(beta, dtype) * state.v
            for x in inputs:
                v = v + x
            return NeuronState(v - z * thr), z

        return Node(
            name, kind, shape, shape, init_state=init_state, step=step, emit=emit, describe=describe
        )

    def neuron_lif(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)
        self._no_leak(name, node, shape)
        beta = self._beta(name, node, shape, "tau", dt, r_check=True)
        threshold = broadcast_param(field(node, "v_threshold", name), shape, "v_threshold", name)
        return self._spiking(
            name,
            "LIF",
            shape,
            threshold,
            beta,
            None,
            spike_fn,
            "Spyx LIF (fires from the previous membrane)",
        )

    def neuron_cubalif(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)
        self._no_leak(name, node, shape)
        w_in = broadcast_param(field(node, "w_in", name), shape, "w_in", name)
        if not close_to(w_in, 1.0):
            raise ValueError(
                f"NIR node {name!r}: w_in != 1, which Spyx does not write; read with dialect='spec'"
            )
        beta = self._beta(name, node, shape, "tau_mem", dt, r_check=True)
        alpha = self._beta(name, node, shape, "tau_syn", dt, r_check=False)
        threshold = broadcast_param(field(node, "v_threshold", name), shape, "v_threshold", name)
        return self._spiking(
            name,
            "CubaLIF",
            shape,
            threshold,
            beta,
            alpha,
            spike_fn,
            "Spyx CuBaLIF (fires from the previous membrane)",
        )

    def neuron_if(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)
        self._no_leak(name, node, shape)
        r = broadcast_param(field(node, "r", name), shape, "r", name)
        if not close_to(r, 1.0):
            raise ValueError(
                f"NIR node {name!r}: IF with r != 1, which Spyx does not write; read with "
                "dialect='spec'"
            )
        threshold = broadcast_param(field(node, "v_threshold", name), shape, "v_threshold", name)
        return self._spiking(
            name,
            "IF",
            shape,
            threshold,
            None,
            None,
            spike_fn,
            "Spyx IF (fires from the previous membrane)",
        )

    def neuron_li(self, name, node, in_shape, dt, spike_fn):
        shape = tuple(in_shape)
        self._no_leak(name, node, shape)
        r = broadcast_param(field(node, "r", name), shape, "r", name)
        if not close_to(r, 1.0):
            raise ValueError(
                f"NIR node {name!r}: LI with r != 1, which Spyx does not write; read with "
                "dialect='spec'"
            )
        beta = self._beta(name, node, shape, "tau", dt, r_check=False)

        def init_state(dtype):
            return NeuronState(jnp.zeros(shape, dtype))

        def step(p, state, inputs):
            v = _const(beta, state.v.dtype) * state.v
            for x in inputs:
                v = v + x
            return NeuronState(v), v

        return Node(
            name,
            "LI",
            shape,
            shape,
            init_state=init_state,
            step=step,
            describe="Spyx PSU_LIF membrane: V = beta V + x",
        )


DIALECTS: Dict[str, Callable[[], Dialect]] = {
    "spec": Spec,
    "jaxsnn": Jaxsnn,
    "snntorch": SnnTorch,
    "norse": Norse,
    "spyx": Spyx,
}


def get_dialect(dialect: Any) -> Dialect:
    """A dialect instance from a name in ``DIALECTS`` or an instance."""
    if isinstance(dialect, Dialect):
        return dialect
    if isinstance(dialect, str) and dialect in DIALECTS:
        return DIALECTS[dialect]()
    raise ValueError(
        f"dialect must be 'auto', one of {sorted(DIALECTS)} or a jaxsnn.nir dialect instance "
        f"(e.g. jaxsnn.nir.SnnTorch(reset_mechanism='zero')), got {dialect!r}"
    )
