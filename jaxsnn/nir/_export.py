"""``to_nir``: write a jaxsnn network as a NIR graph.

The layers' constants are read from the closures of their ``apply`` functions (a ``Layer``
carries no description of its neurons), so ``to_nir`` knows the layer factories listed in its
docstring and raises for any other layer instead of guessing.

What is written (``"spec"`` semantics, see ``jaxsnn.nir.Spec``, so that readers that follow
the NIR equations reproduce the network):

* discrete ``LIF``/``LI``/``RecurrentLIF`` with ``a_syn = exp(-dt / tau_syn) > 0``:
  ``CubaLIF``/``CubaLI`` with ``tau_syn = -dt / log(a_syn)``, ``tau_mem = -dt / log(a_mem)``,
  ``w_in = 1`` and ``r = g tau_syn / kappa`` (``g`` the layer's input scale, ``kappa`` the exact
  gain of ``Spec``), so that the exact integration over a step is the layer's update; single-
  state layers (``tau_syn = 0``): ``LIF``/``LI`` with ``r = g tau_mem / a_mem``. The reset
  (``"hard"`` or ``"subtract"``) is stored in node metadata ``jaxsnn_reset`` (NIR resets to
  ``v_reset``; ``"subtract"`` is not expressible in its equations).
* ``Dense``/``Linear`` (and ``stax.Dense``): ``Affine(weight.T, bias / dt)`` (NIR's bias is a
  constant current; the layer adds ``bias`` per step) or ``Linear``; ``Conv``: ``Conv2d`` with
  explicit symmetric padding, channels first; ``SumPool``/``AvgPool`` (unpadded):
  ``SumPool2d``/``AvgPool2d``; a ``Flatten`` (jaxsnn's or stax's) of a channels-last tensor
  becomes a NIR ``Flatten`` (channels first) whose order change is folded into the next
  weights. ``MaxPool`` has no NIR node and raises.
* event ``LIF``/``RecurrentLIF``/``LI``: ``Linear(weight.T)`` and ``CubaLIF``/``CubaLI`` with the
  layer's ``tau_syn``, ``tau_mem``, ``v_leak``, ``v_th``, ``v_reset``, ``w_in = 1`` and
  ``r = tau_syn`` (NIR's current is ``I / tau_syn`` of jaxsnn's), i.e. the exact ODE.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from jax import lax

from jaxsnn._validate import positive_scalar
from jaxsnn.compose import leaf_count
from jaxsnn.nir._dialects import exact_gain_cuba
from jaxsnn.types import Layer, layer_name


def _unwrap(fn: Any) -> Any:
    seen = 0
    while hasattr(fn, "__wrapped__") and seen < 10:
        fn = fn.__wrapped__
        seen += 1
    return fn


def _closure(fn: Any, depth: int = 2) -> Dict[str, Any]:
    """The variables ``fn`` closes over, and (without overriding) those of the functions it
    closes over, ``depth`` levels deep (e.g. ``Conv``'s ``apply`` -> ``convolve`` -> strides)."""
    fn = _unwrap(fn)
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None)
    if code is None or cells is None:
        return {}
    values = {}
    for name, cell in zip(code.co_freevars, cells):
        try:
            values[name] = cell.cell_contents
        except ValueError:  # empty cell
            pass
    if depth > 1:
        for value in list(values.values()):
            if callable(value) and hasattr(value, "__code__"):
                for name, inner in _closure(value, depth - 1).items():
                    values.setdefault(name, inner)
    return values


def _factory(layer: Any) -> Tuple[str, str]:
    fn = _unwrap(layer[1])
    qualname = getattr(fn, "__qualname__", "")
    return getattr(fn, "__module__", ""), qualname.split(".<locals>")[0]


class _Writer:
    """Accumulates NIR nodes and edges while walking the layers."""

    def __init__(self, nir, dt: float, target: str = "spec"):
        self.nir = nir
        self.dt = dt
        self.target = target
        self.nodes: Dict[str, Any] = {}
        self.edges: List[Tuple[str, str]] = []

    def add(self, name: str, node: Any, sources: List[str]) -> str:
        if name in self.nodes:
            raise RuntimeError(f"duplicate NIR node name {name!r}")  # pragma: no cover
        self.nodes[name] = node
        self.edges.extend((s, name) for s in sources)
        return name


class _Cursor:
    """Where the network stands: the last NIR node, its NIR shape, and jaxsnn's layout."""

    def __init__(
        self,
        node: str,
        shape: Tuple[int, ...],
        channels_last: bool = False,
        permutation: Optional[np.ndarray] = None,
        kind: str = "discrete",
    ):
        self.node = node
        self.shape = tuple(int(s) for s in shape)  # NIR shape (channels first)
        self.channels_last = channels_last  # jaxsnn holds (H, W, C) for NIR (C, H, W)
        self.permutation = permutation  # jaxsnn flat index i is NIR flat index permutation[i]
        self.kind = kind


def _neuron_constants(config: Any, dt: float, label: str):
    a_syn = float(config.a_syn)
    a_mem = float(config.a_mem)
    scale = getattr(config, "input_scale", None)
    gain = (1.0 - a_mem) if scale is None else float(scale)
    if not 0.0 < a_mem < 1.0 or not 0.0 <= a_syn < 1.0:
        raise ValueError(
            f"to_nir: {label} has decay factors a_syn={a_syn}, a_mem={a_mem} "
            "outside what NIR time constants can express"
        )
    tau_mem = -dt / math.log(a_mem)
    return a_syn, a_mem, gain, tau_mem


def _full(value: float, shape) -> np.ndarray:
    return np.full(shape, float(value), dtype=np.float64)


SNNTORCH_DT = 1e-4  # the step snnTorch's NIR importer assumes (hard-coded there)
TARGETS = ("spec", "snntorch", "norse", "spyx")


def _discrete_neuron(writer: _Writer, name: str, config: Any, shape, spiking: bool, label: str):
    if writer.target != "spec":
        return _targeted_neuron(writer, config, shape, spiking, label)
    nir, dt = writer.nir, writer.dt
    a_syn, a_mem, gain, tau_mem = _neuron_constants(config, dt, label)
    v_leak = _full(config.v_leak, shape)
    meta = {}
    if a_syn > 0.0:
        tau_syn = -dt / math.log(a_syn)
        kappa = float(exact_gain_cuba(dt, np.float64(tau_syn), np.float64(tau_mem)))
        r = _full(gain * tau_syn / kappa, shape)
        common = dict(
            tau_syn=_full(tau_syn, shape),
            tau_mem=_full(tau_mem, shape),
            r=r,
            v_leak=v_leak,
            w_in=_full(1.0, shape),
        )
        if spiking:
            meta["jaxsnn_reset"] = str(config.reset)
            node = nir.CubaLIF(
                v_threshold=_full(config.v_th, shape),
                v_reset=_full(config.v_reset, shape),
                metadata=meta,
                **common,
            )
        else:
            node = nir.CubaLI(metadata=meta, **common)
    else:
        r = _full(gain * tau_mem / a_mem, shape)
        common = dict(tau=_full(tau_mem, shape), r=r, v_leak=v_leak)
        if spiking:
            meta["jaxsnn_reset"] = str(config.reset)
            node = nir.LIF(
                v_threshold=_full(config.v_th, shape),
                v_reset=_full(config.v_reset, shape),
                metadata=meta,
                **common,
            )
        else:
            node = nir.LI(metadata=meta, **common)
    return node


def _targeted_neuron(writer: _Writer, config: Any, shape, spiking: bool, label: str):
    """A neuron written the way a peer's importer reads it (see ``to_nir``'s ``dialect``)."""
    nir, dt, target = writer.nir, writer.dt, writer.target
    a_syn, a_mem, gain, _ = _neuron_constants(config, dt, label)
    reset = str(config.reset) if spiking else None

    def refuse(what: str):
        return ValueError(
            f"to_nir(dialect={target!r}): {label} {what}; write it with dialect='spec' (for "
            "readers of the NIR equations and for jaxsnn)"
        )

    if not spiking:
        raise refuse("is a non-spiking readout, which this library's NIR importer does not load")
    if float(config.v_leak) != 0.0:
        raise refuse(f"has v_leak={config.v_leak}, which this library's importer cannot express")
    if float(config.v_reset) != 0.0:
        raise refuse(f"has v_reset={config.v_reset}, which this library's importer cannot express")
    if target == "snntorch":
        # snnTorch's importer: Synaptic/Leaky(alpha, beta = 1 - 1e-4 / tau), reset to zero in
        # the spike's step; mem = beta mem + syn is jaxsnn's v / gain, so the threshold is
        # v_th / gain.
        if reset != "hard":
            raise refuse("resets by subtraction; snnTorch's importer resets to zero")
        step = SNNTORCH_DT
        tau_mem = _full(step / (1.0 - a_mem), shape)
        common = dict(
            tau_mem=tau_mem,
            r=tau_mem / step,
            v_leak=_full(0.0, shape),
            v_threshold=_full(float(config.v_th) / gain, shape),
            v_reset=_full(0.0, shape),
        )
        if a_syn > 0.0:
            tau_syn = _full(step / (1.0 - a_syn), shape)
            return nir.CubaLIF(tau_syn=tau_syn, w_in=tau_syn / step, **common)
        tau = common.pop("tau_mem")
        return nir.LIF(tau=tau, **common)
    if target == "norse":
        # Norse's importer: k = dt / tau; CubaLIF as a leaky-integrator synapse (input
        # w_in x) followed by a LIFBox neuron (input r s) that resets to v_reset.
        if reset != "hard":
            raise refuse("resets by subtraction; Norse's importer resets to v_reset")
        k_mem = 1.0 - a_mem
        common = dict(
            v_leak=_full(0.0, shape),
            v_threshold=_full(config.v_th, shape),
            v_reset=_full(config.v_reset, shape),
        )
        if a_syn > 0.0:
            k_syn = 1.0 - a_syn
            return nir.CubaLIF(
                tau_syn=_full(dt / k_syn, shape),
                tau_mem=_full(dt / k_mem, shape),
                w_in=_full(1.0 / k_syn, shape),
                r=_full(gain / k_mem, shape),
                **common,
            )
        if not math.isclose(gain, k_mem, rel_tol=1e-12):
            raise refuse(f"has input scale {gain} != 1 - a_mem, which Norse's LIFBox cannot take")
        return nir.LIF(tau=_full(dt / k_mem, shape), r=_full(1.0, shape), **common)
    # Spyx's importer: beta = 1 - dt / tau (r is written as beta, as Spyx's writer does); it
    # subtracts the threshold and fires from the previous membrane (one step later).
    if reset != "subtract":
        raise refuse("resets to v_reset; Spyx's neurons reset by subtracting the threshold")
    common = dict(
        tau_mem=_full(dt / (1.0 - a_mem), shape),
        r=_full(a_mem, shape),
        v_leak=_full(0.0, shape),
        v_threshold=_full(float(config.v_th) / gain, shape),
        v_reset=_full(0.0, shape),
    )
    if a_syn > 0.0:
        return nir.CubaLIF(
            tau_syn=_full(dt / (1.0 - a_syn), shape), w_in=_full(1.0, shape), **common
        )
    tau = common.pop("tau_mem")
    return nir.LIF(tau=tau, **common)


def _weights_after(cursor: _Cursor, weight: np.ndarray, label: str) -> np.ndarray:
    """``weight (n_in, n_out)`` in jaxsnn's order -> NIR ``(n_out, n_in)`` in the NIR order."""
    weight = np.asarray(weight, dtype=np.float64)
    if cursor.channels_last:
        raise ValueError(f"to_nir: {label} takes a (H, W, C) tensor; put a Flatten before it")
    if cursor.permutation is not None:
        permuted = np.zeros_like(weight)
        permuted[cursor.permutation] = weight
        weight = permuted
        cursor.permutation = None
    return weight.T.copy()


def _no_permutation(cursor: _Cursor, label: str) -> None:
    if cursor.permutation is not None:
        raise ValueError(
            f"to_nir: {label} follows a Flatten of a (H, W, C) tensor; NIR flattens channels "
            "first, so the flattened order can only be written when a weight layer "
            "(Dense, LIF/LI with project=True) follows the Flatten"
        )


def _dense_bias(bias: Any, writer: _Writer) -> np.ndarray:
    # NIR's Affine bias is a constant current whose integral over a step, bias * dt, is what
    # the layer adds per step; the peers' importers add the stored bias per step.
    bias = np.asarray(bias, dtype=np.float64)
    return bias / writer.dt if writer.target == "spec" else bias


def _write_layer(
    writer: _Writer,
    layer: Any,
    params: Any,
    cursor: _Cursor,
    index: List[int],
    opts: Dict[str, Any],
) -> _Cursor:
    module, factory = _factory(layer)
    label = layer_name(layer)
    scope = _closure(layer[1])

    if factory == "serial" and module == "jaxsnn.compose":
        children = scope["layers"]
        offset = 0
        for child in children:
            count = leaf_count(child)
            if isinstance(child, Layer) and child.leaves is not None:
                child_params = list(params[offset : offset + count])
            else:
                child_params = params[offset]
            cursor = _write_layer(writer, child, child_params, cursor, index, opts)
            offset += count
        return cursor

    i = index[0]
    index[0] += 1
    prefix = f"layer{i}"

    if factory == "stateless" and module == "jaxsnn.compose":
        stax_module, stax_factory = _factory((None, scope.get("stax_apply")))
        if stax_module == "jax.example_libraries.stax" and stax_factory == "Dense":
            weight, bias = params
            return _write_dense(writer, prefix, cursor, np.asarray(weight), np.asarray(bias), label)
        if stax_module == "jax.example_libraries.stax" and stax_factory == "Flatten":
            return _write_flatten(writer, prefix, cursor, label)
        raise ValueError(
            f"to_nir: layer {i} ({label}) wraps the stax layer {stax_factory!r}, which to_nir "
            "cannot write (supported stax layers: Dense, Flatten)"
        )

    if module.startswith("jaxsnn.discrete"):
        if cursor.kind != "discrete":
            raise ValueError(f"to_nir: layer {i} ({label}) is discrete but follows event layers")
        if factory == "Dense":
            bias = params.get("bias") if scope.get("bias") else None
            return _write_dense(
                writer,
                prefix,
                cursor,
                np.asarray(params["weight"]),
                None if bias is None else np.asarray(bias),
                label,
            )
        if factory == "Conv":
            return _write_conv(writer, prefix, cursor, params, scope, label)
        if factory in ("LIF", "LI", "RecurrentLIF"):
            return _write_discrete_neurons(writer, prefix, cursor, params, scope, factory, label)
        if factory == "Flatten":
            return _write_flatten(writer, prefix, cursor, label)
        if factory == "_pool":
            return _write_pool(writer, prefix, cursor, scope, label)
    if module.startswith("jaxsnn.event"):
        if factory in ("_spiking_layer", "LI"):
            return _write_event(writer, prefix, cursor, params, scope, factory, label, opts)
        raise ValueError(
            f"to_nir: layer {i} ({label}) converts between spike buffers and dense grids; NIR "
            "signals have no such representation, so to_nir writes networks of discrete layers "
            "or of event layers, not both"
        )
    raise ValueError(
        f"to_nir: layer {i} ({label}, {module}.{factory}) is not a layer to_nir can write "
        "(supported: serial, jaxsnn.discrete Dense/Linear, Conv, LIF, LI, RecurrentLIF, "
        "SumPool, AvgPool, Flatten, "
        "jaxsnn.event LIF, RecurrentLIF, LI, and stateless stax Dense/Flatten)"
    )


def _write_dense(writer, prefix, cursor, weight, bias, label) -> _Cursor:
    nir = writer.nir
    if len(cursor.shape) != 1:
        raise ValueError(
            f"to_nir: {label} takes (time, features) but gets NIR shape {cursor.shape}"
        )
    w = _weights_after(cursor, weight, label)
    if bias is None:
        node = nir.Linear(weight=w)
        name = writer.add(f"{prefix}_linear", node, [cursor.node])
    else:
        node = nir.Affine(weight=w, bias=_dense_bias(bias, writer))
        name = writer.add(f"{prefix}_affine", node, [cursor.node])
    return _Cursor(name, (w.shape[0],))


def _write_flatten(writer, prefix, cursor, label) -> _Cursor:
    nir = writer.nir
    _no_permutation(cursor, label)
    shape = cursor.shape
    node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
    name = writer.add(f"{prefix}_flatten", node, [cursor.node])
    size = int(np.prod(shape))
    permutation = None
    if cursor.channels_last and writer.target != "spyx":  # Spyx flattens (H, W, C) like jaxsnn
        c, h, w = shape
        # jaxsnn flattens (H, W, C); NIR (C, H, W): jaxsnn index (y, x, k) is NIR (k, y, x).
        permutation = np.arange(size).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
    return _Cursor(name, (size,), permutation=permutation)


def _symmetric_padding(pad, spatial, kernel, strides, label):
    if isinstance(pad, str):
        pairs = lax.padtype_to_pads(spatial, kernel, strides, pad)
    else:
        pairs = [tuple(p) for p in pad]
    if any(lo != hi for lo, hi in pairs):
        raise ValueError(
            f"to_nir: {label} pads {list(pairs)} (low, high) on an input of {tuple(spatial)}; "
            "NIR's Conv2d pads symmetrically, so build the layer with explicit symmetric "
            "padding or an input size for which 'SAME' is symmetric"
        )
    return tuple(int(lo) for lo, _ in pairs)


def _write_conv(writer, prefix, cursor, params, scope, label) -> _Cursor:
    nir = writer.nir
    _no_permutation(cursor, label)
    if len(cursor.shape) != 3 or not cursor.channels_last:
        raise ValueError(
            f"to_nir: {label} takes (time, H, W, C) inputs, got NIR shape {cursor.shape}"
        )
    weight = np.asarray(params["weight"], dtype=np.float64)  # (kh, kw, C_in, C_out)
    c_in, h, w = cursor.shape
    kernel, strides = scope["kernel"], scope["strides"]
    padding = _symmetric_padding(scope["pad"], (h, w), kernel, strides, label)
    bias = params.get("bias") if scope.get("bias") else None
    bias = np.zeros(weight.shape[3]) if bias is None else _dense_bias(bias, writer)
    node = nir.Conv2d(
        input_shape=(h, w),
        weight=weight.transpose(3, 2, 0, 1).copy(),
        stride=tuple(strides),
        padding=padding,
        dilation=(1, 1),
        groups=1,
        bias=bias,
    )
    name = writer.add(f"{prefix}_conv", node, [cursor.node])
    out = tuple(int(s) for s in np.ravel(node.output_type["output"]))
    return _Cursor(name, out, channels_last=True)


def _write_pool(writer, prefix, cursor, scope, label) -> _Cursor:
    """``SumPool``/``AvgPool`` of ``jaxsnn.discrete``: NIR ``SumPool2d``/``AvgPool2d``."""
    nir = writer.nir
    _no_permutation(cursor, label)
    kind = scope.get("kind")
    if kind not in ("SumPool", "AvgPool"):
        raise ValueError(
            f"to_nir: {label} has no NIR node (NIR pools by sum or average, not by maximum)"
        )
    if len(cursor.shape) != 3 or not cursor.channels_last:
        raise ValueError(f"to_nir: {label} takes (time, H, W, C), got NIR shape {cursor.shape}")
    c, h, w = cursor.shape
    window = tuple(int(k) for k in scope["window"])
    strides = tuple(int(k) for k in scope["steps"][1:3])
    pad = scope["pad"]
    padding = _symmetric_padding(pad, (h, w), window, strides, label)
    if kind == "AvgPool" and any(padding):
        raise ValueError(
            f"to_nir: {label} averages over the entries inside the input; NIR's AvgPool2d "
            "counts the zero padding, so only unpadded average pooling can be written"
        )
    cls = nir.SumPool2d if kind == "SumPool" else nir.AvgPool2d
    node = cls(kernel_size=np.array(window), stride=np.array(strides), padding=np.array(padding))
    name = writer.add(f"{prefix}_{kind.lower()}", node, [cursor.node])
    out = tuple((n + 2 * p - k) // s + 1 for n, p, k, s in zip((h, w), padding, window, strides))
    return _Cursor(name, (c,) + out, channels_last=True)


def _write_discrete_neurons(writer, prefix, cursor, params, scope, factory, label) -> _Cursor:
    nir = writer.nir
    config, projection, features = scope["config"], scope["projection"], scope["features"]
    spiking = factory != "LI"
    source = cursor.node
    if projection.project:
        weight = _weights_after(cursor, np.asarray(params["weight"]), label)
        source = writer.add(f"{prefix}_linear", nir.Linear(weight=weight), [cursor.node])
        shape = (weight.shape[0],)
    else:
        _no_permutation(cursor, label)
        shape = cursor.shape
        if tuple(features) != (
            tuple(shape[1:]) + shape[:1] if cursor.channels_last else tuple(shape)
        ):
            raise ValueError(f"to_nir: {label} has size {features} but gets NIR shape {shape}")
    kind = "lif" if spiking else "li"
    neuron = _discrete_neuron(writer, f"{prefix}_{kind}", config, shape, spiking, label)
    name = writer.add(f"{prefix}_{kind}", neuron, [source])
    if factory == "RecurrentLIF":
        w_rec = np.asarray(params["recurrent_weight"], dtype=np.float64).T.copy()
        rec = writer.add(f"{prefix}_rec", nir.Linear(weight=w_rec), [name])
        writer.edges.append((rec, name))
    return _Cursor(name, shape, channels_last=cursor.channels_last and not projection.project)


def _write_event(writer, prefix, cursor, params, scope, factory, label, opts) -> _Cursor:
    nir = writer.nir
    if cursor.kind != "event" or cursor.permutation is not None:
        raise ValueError(f"to_nir: {label} is an event layer but follows discrete layers")
    neuron = scope["neuron"]
    weight = np.asarray(params["weight"], dtype=np.float64)
    if weight.shape[0] != cursor.shape[0]:
        raise ValueError(f"to_nir: {label} has {weight.shape[0]} inputs, gets {cursor.shape}")
    size = weight.shape[1]
    shape = (size,)
    t_ref = np.asarray(neuron.t_ref, dtype=np.float64)
    meta: Dict[str, Any] = {}
    if factory != "LI" and np.any(t_ref > 0):
        if not opts.get("ignore_refractory"):
            raise ValueError(
                f"to_nir: {label} has a refractory period t_ref={float(np.max(t_ref))}, which NIR "
                "neurons do not have; build the layer with t_ref=0, or pass "
                "to_nir(..., ignore_refractory=True) to write it without (the period is kept in "
                "node metadata jaxsnn_t_ref, which NIR readers ignore)"
            )
        meta["jaxsnn_t_ref"] = np.broadcast_to(t_ref, shape).astype(np.float64)
    linear = writer.add(f"{prefix}_linear", nir.Linear(weight=weight.T.copy()), [cursor.node])

    def per_neuron(value):
        return np.broadcast_to(np.asarray(value, dtype=np.float64), shape).copy()

    tau_syn = per_neuron(neuron.tau_syn)
    common = dict(
        tau_syn=tau_syn,
        tau_mem=per_neuron(neuron.tau_mem),
        r=tau_syn.copy(),
        v_leak=per_neuron(neuron.v_leak),
        w_in=per_neuron(1.0),
    )
    if factory == "LI":
        node = nir.CubaLI(metadata={"jaxsnn_readout": str(scope.get("readout", "max"))}, **common)
        name = writer.add(f"{prefix}_li", node, [linear])
        return _Cursor(name, shape, kind="event")
    meta["jaxsnn_reset"] = "hard"
    node = nir.CubaLIF(
        v_threshold=per_neuron(neuron.v_th),
        v_reset=per_neuron(neuron.v_reset),
        metadata=meta,
        **common,
    )
    name = writer.add(f"{prefix}_lif", node, [linear])
    if isinstance(params, dict) and "recurrent_weight" in params:  # RecurrentLIF
        w_rec = np.asarray(params["recurrent_weight"], dtype=np.float64).T.copy()
        rec = writer.add(f"{prefix}_rec", nir.Linear(weight=w_rec), [name])
        writer.edges.append((rec, name))
    return _Cursor(name, shape, kind="event")


def to_nir(
    layer: Any,
    params: Any,
    input_shape: Any,
    *,
    dt: float,
    dialect: str = "spec",
    ignore_refractory: bool = False,
):
    """Write a jaxsnn network as a ``nir.NIRGraph`` (see the module docstring for the mapping).

    Args:
        layer: a ``jaxsnn.serial`` (nesting allowed) of ``jaxsnn.discrete`` ``Dense``/``Linear``,
            ``Conv``, ``LIF``, ``LI``, ``RecurrentLIF``, ``SumPool``, ``AvgPool`` (unpadded),
            ``Flatten`` and stateless ``stax.Dense``/``Flatten``,
            or of ``jaxsnn.event`` ``LIF``, ``RecurrentLIF``, ``LI``; or one such layer.
        params: the layer's params (as returned by its ``init``).
        input_shape: the layer's ``init`` input shape: ``(T, *features)`` for discrete networks
            (``(T, H, W, C)`` before a ``Conv``; the NIR Input is then ``(C, H, W)``),
            ``(n_inputs,)`` for event networks.
        dt: the time step the discrete layers were built with (their decay factors are
            ``exp(-dt / tau)``; the written time constants are ``-dt / log(decay)``). Event layers
            are written in continuous time; ``dt`` only scales nothing there, but is stored.
        dialect: ``"spec"`` (default): the NIR equations, exact at ``dt``; jaxsnn reads the
            file back exactly. ``"snntorch"``, ``"norse"``, ``"spyx"``: a file for that
            library's NIR importer, with the parameters encoded the way it reads them, so that
            it reproduces the network as far as its neurons can: snnTorch (``dt = 1e-4``
            encoding, reset to zero, threshold ``v_th / g``) and Norse (``k = dt / tau``,
            synapse ``w_in = 1 / (1 - a_syn)``, ``r = g / (1 - a_mem)``) reproduce hard-reset
            layers with ``v_reset = v_leak = 0`` exactly; Spyx (``beta = 1 - dt / tau``,
            threshold ``v_th / g``, subtractive reset) reproduces subtract-reset layers one step
            later per layer. Neurons a library cannot express raise. ``dialect="auto"`` reads
            such files as that importer does.
        ignore_refractory: write event layers with ``t_ref > 0`` without their refractory
            period (kept in metadata ``jaxsnn_t_ref``) instead of raising.

    Returns:
        A ``nir.NIRGraph`` (type-checked by ``nir``), metadata
        ``{"writer": "jaxsnn", "dt": dt}``. Read it back with ``from_nir(graph, dt=dt)``.

    Raises:
        ValueError: a layer ``to_nir`` cannot write (named, with the reason), asymmetric
            convolution padding, a refractory period, a flatten order that cannot be folded.
        ImportError: if ``nir`` is not installed.
    """
    from jaxsnn.nir._graph import require_nir

    nir = require_nir()
    dt = positive_scalar("dt", dt)
    if not (isinstance(layer, tuple) and len(layer) == 2 and all(map(callable, layer))):
        raise TypeError(f"to_nir: layer must be a jaxsnn Layer, got {type(layer).__name__}")
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise TypeError(
            f"to_nir: input_shape must be a tuple of ints, got {input_shape!r}"
        ) from None
    if dialect not in TARGETS:
        raise ValueError(f"to_nir: dialect must be one of {TARGETS}, got {dialect!r}")
    event = _is_event_network(layer)
    if event and dialect != "spec":
        raise ValueError(
            "to_nir: event layers are written in continuous time (dialect='spec'); the peers' "
            "importers run discrete steps"
        )
    writer = _Writer(nir, dt, dialect)
    if event:
        if len(shape) != 1:
            raise ValueError(f"to_nir: event networks take input_shape (n_inputs,), got {shape}")
        nir_shape, channels_last = shape, False
    else:
        if len(shape) < 2:
            raise ValueError(
                f"to_nir: discrete networks take input_shape (T, *features), got {shape}"
            )
        features = shape[1:]
        channels_last = len(features) == 3
        nir_shape = (features[2], features[0], features[1]) if channels_last else features
    writer.add("input", nir.Input(input_type={"input": np.array(nir_shape)}), [])
    cursor = _Cursor(
        "input", nir_shape, channels_last=channels_last, kind="event" if event else "discrete"
    )
    cursor = _write_layer(
        writer, layer, params, cursor, [0], {"ignore_refractory": ignore_refractory}
    )
    if cursor.permutation is not None:
        raise ValueError(
            "to_nir: the network ends with a Flatten of a (H, W, C) tensor, whose order NIR "
            "(channels first) cannot state; end with a weight layer"
        )
    writer.add("output", nir.Output(output_type={"output": np.array(cursor.shape)}), [cursor.node])
    from jaxsnn import __version__

    metadata = {
        "writer": "jaxsnn",
        "jaxsnn_version": __version__,
        "dt": float(dt),
        "dialect": dialect,
    }
    return nir.NIRGraph(nodes=writer.nodes, edges=writer.edges, metadata=metadata)


def _is_event_network(layer: Any) -> bool:
    module, factory = _factory(layer)
    if factory == "serial" and module == "jaxsnn.compose":
        children = _closure(layer[1]).get("layers", ())
        return bool(children) and _is_event_network(children[0])
    return module.startswith("jaxsnn.event")
