"""The per-step engine shared by every forward (online) rule.

``Engine.init`` builds the rule's carried memory (traces) and ``Engine.step`` advances the
network by one time step and returns the step's loss and gradient (``g_t`` of
``jaxsnn.online.rules``). Everything is per sample: batch with ``jax.vmap``. All arrays in the
carried memory have shapes fixed by the network, never by the sequence length.

Trace layouts (``F``: live state fields of a neuron-local leaf, ``n``: its neurons, ``D``: the
number of state entries of the leaf, ``P``: a parameter's shape):

* ``diag``  ``(F, *P)``: ``E[f][..., j] = dS_{f, j}/dp[..., j]`` (column-structured ``p``);
* ``local`` ``(F, n, *P)``: a dense sensitivity of a neuron-local leaf;
* ``dense`` ``(D, *P)``: a dense sensitivity of any other leaf.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxsnn.online import rules as rules_lib
from jaxsnn.online._network import Kernel, NetworkInfo

Array = jax.Array


class _Trace(NamedTuple):
    """One carried sensitivity of the state of ``leaf`` to parameter array ``param``."""

    key: str
    leaf: int
    param: int
    layout: str  # "diag", "local" or "dense"


class Engine:
    """Static plan of one rule on one network; ``init`` and ``step`` are pure functions."""

    def __init__(self, label: str, rule: rules_lib.Rule, net: Any, info: NetworkInfo,
                 probe: Callable[[], Dict[int, Kernel]], loss_fn: Callable[[Any, Any], Array]):
        self.label = label
        self.rule = rule
        self.net = net
        self.info = info
        self._probe = probe
        self._kernels: Optional[Dict[int, Kernel]] = None
        self.loss_fn = loss_fn
        self.leaves = info.leaves
        self.stateful = [leaf.index for leaf in info.leaves if leaf.kind != "stateless"]
        # the structural checks of ottt / otpe come first (no probe needed to reject a network)
        if isinstance(rule, (rules_lib.OTTT, rules_lib.OTPE)):
            self._check_local(rule.name)
        # live state fields of neuron-local leaves (dead: zero column of the subthreshold A);
        # the truncated rule carries no traces and needs no probe
        self.live: Dict[int, Tuple[int, ...]] = {}
        for leaf in info.leaves:
            if leaf.kind == "local":
                kernel = None if isinstance(rule, rules_lib.Truncated) else\
                    self.kernels.get(leaf.index)
                self.live[leaf.index] = (
                    kernel.live if kernel is not None else tuple(range(leaf.fields))
                )
        self.own: Dict[int, List[int]] = {layer: [] for layer in self.stateful}
        self.upstream: Dict[int, List[int]] = {layer: [] for layer in self.stateful}
        for i, p in enumerate(info.params):
            owner = info.leaves[p.leaf].owner
            if owner is None:
                continue
            self.own[owner].append(i)
            for layer in self.stateful:
                if layer > owner:
                    self.upstream[layer].append(i)
        structured = not (isinstance(rule, rules_lib.RTRL) and not rule.structured)
        self.traces: List[_Trace] = []
        self.cross: List[_Trace] = []
        if isinstance(rule, (rules_lib.OSTL, rules_lib.OTPE, rules_lib.RTRL)):
            for layer in self.stateful:
                for i in self.own[layer]:
                    layout = self._layout(layer, i, structured)
                    self.traces.append(_Trace(f"E{layer}_{i}", layer, i, layout))
        if isinstance(rule, rules_lib.RTRL):
            for layer in self.stateful:
                for i in self.upstream[layer]:
                    layout = "local" if self.leaves[layer].kind == "local" else "dense"
                    self.cross.append(_Trace(f"M{layer}_{i}", layer, i, layout))
        self.presynaptic: List[Tuple[str, int, int, str]] = []  # (key, leaf l, param, kind)
        if isinstance(rule, rules_lib.OTTT):
            self._plan_ottt()
        self.post: List[Tuple[str, int, int, int]] = []  # (key, leaf b, param, next leaf)
        self._next_weights: Dict[int, int] = {}
        if isinstance(rule, rules_lib.OTPE):
            self._plan_otpe()

    # ---------------------------------------------------------------------------- planning

    @property
    def kernels(self) -> Dict[int, Kernel]:
        """Subthreshold kernels of the neuron-local leaves, measured on first use."""
        if self._kernels is None:
            self._kernels = self._probe()
        return self._kernels

    def _check_local(self, rule_name: str) -> None:
        for layer in self.stateful:
            if self.leaves[layer].kind != "local":
                raise ValueError(
                    f"{self.label}: {rule_name} needs neuron-local layers (LIF, LI) but "
                    f"{self._name(layer)} couples its neurons (or has an unknown state); use "
                    "'ostl', 'rtrl' or 'bptt' for this network"
                )

    def _name(self, k: int) -> str:
        return f"layer {k} ({self.leaves[k].name})"

    def _layout(self, layer: int, i: int, structured: bool) -> str:
        if self.leaves[layer].kind != "local":
            return "dense"
        if structured and self.info.params[i].column:
            return "diag"
        return "local"

    def _kernel(self, rule_name: str, layer: int) -> Kernel:
        leaf = self.leaves[layer]
        if leaf.kind != "local" or layer not in self.kernels:
            raise ValueError(
                f"{self.label}: {rule_name} needs neuron-local layers (LIF, LI) but "
                f"{self._name(layer)} couples its neurons (or has an unknown state); use 'ostl', "
                "'rtrl' or 'bptt' for this network"
            )
        kernel = self.kernels[layer]
        if kernel.c is None:
            raise ValueError(
                f"{self.label}: {rule_name} cannot measure how {self._name(layer)} responds to its "
                "input (no bias, and the layer before it records no output); put it after a "
                "layer that records its output (LIF, LI) or use 'ostl'"
            )
        return kernel

    def _plan_ottt(self) -> None:
        for layer in self.stateful:
            if not self.own[layer]:
                continue
            self._kernel("ottt", layer)
            for i in self.own[layer]:
                p = self.info.params[i]
                k = p.leaf
                if not p.column:
                    raise ValueError(
                        f"{self.label}: ottt needs the parameters of {self._name(k)} to be a "
                        f"weight (n_in, n) or bias (n,) of the neurons of {self._name(layer)}, got "
                        f"shape {p.shape}; use 'ostl'"
                    )
                if len(p.shape) == 1:
                    self.presynaptic.append((f"a{layer}_{i}", layer, i, "bias"))
                    continue
                if len(p.shape) != 2:
                    raise ValueError(
                        f"{self.label}: ottt supports weights (n_in, n) and biases (n,); "
                        f"{self._name(k)} has a parameter of shape {p.shape}; use 'ostl'"
                    )
                n_in = p.shape[0]
                if k == 0:
                    ok = math.prod(self.info.input_features) == n_in and len(
                        self.info.input_features) == 1
                else:
                    feeder = self.leaves[k - 1]
                    ok = feeder.output_key is not None
                if not ok:
                    raise ValueError(
                        f"{self.label}: ottt needs the presynaptic activity of {self._name(k)}, "
                        "read from the network input or from the recording of the layer before "
                        f"it, which {self._name(k - 1) if k else 'the input'} does not provide; "
                        "use 'ostl' or 'otpe'"
                    )
                self.presynaptic.append((f"a{layer}_{i}", layer, i, "weight"))

    def _plan_otpe(self) -> None:
        for n_index, b in enumerate(self.stateful[:-1]):
            nxt = self.stateful[n_index + 1]
            if not self.own[nxt] and not self.upstream[nxt]:
                continue
            self._kernel("otpe", nxt)
            if self.leaves[b].output_key is None:
                raise ValueError(
                    f"{self.label}: otpe reads the output of {self._name(b)} from its recording, "
                    "which does not contain it; use 'ostl'"
                )
            self._next_weights[b] = self._next_weight(b, nxt)
            for i in self.own[b]:
                if not self.info.params[i].column:
                    raise ValueError(
                        f"{self.label}: otpe needs column-structured parameters (weight "
                        f"(n_in, n), bias (n,)) of {self._name(self.info.params[i].leaf)}; use "
                        "'ostl'"
                    )
                self.post.append((f"R{b}_{i}", b, i, nxt))

    def _next_weight(self, b: int, nxt: int) -> int:
        """Index of the weight ``(n_b, n_next)`` through which ``y^b`` drives the next layer."""
        n_b = self.leaves[b].features[0] if len(self.leaves[b].features) == 1 else None
        first = b + 1
        candidates = [
            i for i, p in enumerate(self.info.params)
            if p.leaf == first and len(p.shape) == 2 and p.shape[0] == n_b
            and self.leaves[nxt].features and p.shape[1] == self.leaves[nxt].features[0]
        ]
        if first > nxt or self.leaves[first].owner != nxt or len(candidates) != 1:
            raise ValueError(
                f"{self.label}: otpe needs {self._name(nxt)} to read the output of "
                f"{self._name(b)} through one weight of shape (n_in, n) in the layer right "
                "after it (LIF with project=True, or Dense then LIF(project=False)); use 'ostl'"
            )
        return candidates[0]

    # ------------------------------------------------------------------------ state helpers

    def _vector(self, layer: int, state: Any) -> Array:
        """Live state of leaf ``l`` as ``(F, n)`` (neuron-local) or ``(D,)`` (dense)."""
        leaf = self.leaves[layer]
        arrays = jax.tree_util.tree_leaves(state)
        if leaf.kind == "local":
            return jnp.stack([jnp.reshape(arrays[f], (-1,)) for f in self.live[layer]])
        return jnp.concatenate([jnp.reshape(a, (-1,)) for a in arrays])

    def _state_from_vector(self, layer: int, template: Any, vector: Array) -> Any:
        """Inverse of ``_vector`` (dead fields zero)."""
        leaf = self.leaves[layer]
        arrays, treedef = jax.tree_util.tree_flatten(template)
        out = []
        if leaf.kind == "local":
            rows = {f: r for r, f in enumerate(self.live[layer])}
            for f, a in enumerate(arrays):
                if f in rows:
                    out.append(jnp.reshape(vector[rows[f]], a.shape).astype(a.dtype))
                else:
                    out.append(jnp.zeros_like(a))
        else:
            start = 0
            for a in arrays:
                size = int(np.prod(a.shape))
                out.append(jnp.reshape(vector[start:start + size], a.shape).astype(a.dtype))
                start += size
        return jax.tree_util.tree_unflatten(treedef, out)

    def _rows(self, layer: int) -> int:
        leaf = self.leaves[layer]
        if leaf.kind == "local":
            return len(self.live[layer]) * int(np.prod(leaf.features))
        return leaf.size

    def _flat_params(self, params: Sequence[Any]) -> List[Array]:
        flat: List[Array] = []
        for k in range(len(self.leaves)):
            flat.extend(jax.tree_util.tree_leaves(params[k]))
        return flat

    def unflatten_params(self, params: Sequence[Any], flat: Sequence[Array]) -> List[Any]:
        """Rebuild a params-shaped list from flat arrays (the order of ``info.params``)."""
        out, start = [], 0
        for k in range(len(self.leaves)):
            arrays, treedef = jax.tree_util.tree_flatten(params[k])
            n = len(arrays)
            out.append(jax.tree_util.tree_unflatten(treedef, list(flat[start:start + n])))
            start += n
        return out

    # -------------------------------------------------------------------------------- init

    def init(self, params: Sequence[Any]) -> Dict[str, Array]:
        """Zero traces (the sensitivities of the rest state, which does not depend on params)."""
        flat = self._flat_params(params)
        memory: Dict[str, Array] = {}
        for trace in self.traces + self.cross:
            memory[trace.key] = jnp.zeros(self._trace_shape(trace, flat), flat[trace.param].dtype)
        for key, layer, i, kind in self.presynaptic:
            F = len(self.live[layer])
            shape = (F,) if kind == "bias" else (F, flat[i].shape[0])
            memory[key] = jnp.zeros(shape, flat[i].dtype)
        for key, b, i, nxt in self.post:
            F = len(self.live[nxt])
            memory[key] = jnp.zeros((F,) + flat[i].shape, flat[i].dtype)
        return memory

    def _trace_shape(self, trace: _Trace, flat: Sequence[Array]) -> Tuple[int, ...]:
        shape = tuple(flat[trace.param].shape)
        leaf = self.leaves[trace.leaf]
        if trace.layout == "diag":
            return (len(self.live[trace.leaf]),) + shape
        if trace.layout == "local":
            return (len(self.live[trace.leaf]), int(np.prod(leaf.features))) + shape
        return (leaf.size,) + shape

    # -------------------------------------------------------------------------------- step

    def step(self, params: Sequence[Any], carry: Sequence[Any], memory: Dict[str, Array],
             x_t: Array, target_t: Any) -> Tuple[List[Any], Dict[str, Array], Array, List[Array]]:
        """Advance by a window ``x_t (K, ...)``: ``(carry', memory', loss, flat gradient)``.

        ``rtrl``'s recursion is exact for any window length (the window's own gradient is
        reverse mode through the window, the carried sensitivities jump from window to
        window). The other rules give the result of ``K`` single steps: computed at once where
        ``windowed`` (``window_batch`` on a batch of one), else one step at a time.
        """

        if x_t.shape[0] > 1 and not isinstance(self.rule, rules_lib.RTRL):
            if self.windowed:
                return self._one_sample_window(params, carry, memory, x_t, target_t)
            return self._steps(params, carry, memory, x_t, target_t)

        def network(p, c):
            return self.net.apply(p, x_t, carry=c)

        def window_loss(outputs):
            return jnp.sum(jax.vmap(self.loss_fn)(outputs, target_t))

        (new_carry, outputs, recording), vjp_fn = jax.vjp(network, list(params), list(carry))
        new_carry = list(new_carry)
        loss, g_outputs = jax.value_and_grad(window_loss)(outputs)
        zeros_carry = jax.tree_util.tree_map(jnp.zeros_like, new_carry)
        zeros_outputs = jax.tree_util.tree_map(jnp.zeros_like, outputs)
        zeros_recording = jax.tree_util.tree_map(jnp.zeros_like, recording)
        direct, kappa_tree = vjp_fn((zeros_carry, g_outputs, zeros_recording))
        grad = [g for g in self._flat_params(direct)]
        kappa = {layer: self._vector(layer, kappa_tree[layer]) for layer in self.stateful}
        new_memory: Dict[str, Array] = {}
        flat_params = self._flat_params(params)

        def carry_cotangent(layer, vector):
            cot = list(zeros_carry)
            cot[layer] = self._state_from_vector(layer, new_carry[layer], vector)
            return cot

        def ones_vjp(layer):
            """Per-neuron blocks: one VJP per live field with an all-ones cotangent."""
            F = len(self.live[layer])
            n = int(np.prod(self.leaves[layer].features))
            dtype = self._vector(layer, new_carry[layer]).dtype
            basis = jnp.repeat(jnp.eye(F, dtype=dtype)[:, :, None], n, axis=2)
            cot_p, cot_c = jax.vmap(
                lambda v: vjp_fn((carry_cotangent(layer, v), zeros_outputs, zeros_recording))
            )(basis)
            A = jax.vmap(lambda c: self._vector(layer, c))(cot_c[layer])  # (F, F, n)
            return A, self._flat_params(cot_p)

        def rows_vjp(layer):
            """Dense rows: one VJP per live state entry of leaf ``l``."""
            D = self._rows(layer)
            dtype = self._vector(layer, new_carry[layer]).dtype
            eye = jnp.eye(D, dtype=dtype)
            if self.leaves[layer].kind == "local":
                eye = eye.reshape((D, len(self.live[layer]), -1))
            cot_p, cot_c = jax.vmap(
                lambda v: vjp_fn((carry_cotangent(layer, v), zeros_outputs, zeros_recording))
            )(eye)
            return cot_c, self._flat_params(cot_p)

        rule = self.rule
        if isinstance(rule, (rules_lib.OSTL, rules_lib.OTPE, rules_lib.RTRL)):
            ones: Dict[int, Tuple[Array, List[Array]]] = {}
            rows: Dict[int, Tuple[Any, List[Array]]] = {}
            need_rows = set()
            for trace in self.traces:
                if trace.layout != "diag":
                    need_rows.add(trace.leaf)
            if isinstance(rule, rules_lib.RTRL):
                for trace in self.cross:
                    need_rows.add(trace.leaf)
            for layer in self.stateful:
                if self.leaves[layer].kind == "local" and any(
                    t.leaf == layer for t in self.traces + self.cross
                ):
                    ones[layer] = ones_vjp(layer)
                if layer in need_rows or (self.leaves[layer].kind == "dense" and any(
                        t.leaf == layer for t in self.traces)):
                    rows[layer] = rows_vjp(layer)

            def A_apply(layer, trace_value, layout):
                """``(dS^l_t/dS^l_{t-1}) @ trace`` for any layout."""
                if self.leaves[layer].kind == "local":
                    A = ones[layer][0]  # (F, F, n): per-neuron blocks
                    F = A.shape[0]
                    if layout == "diag":  # trace (F, *P) with P[-1] = n
                        shape = (1,) * (trace_value.ndim - 2) + A.shape[2:]
                    else:  # "local": trace (F, n, *P)
                        shape = A.shape[2:] + (1,) * (trace_value.ndim - 2)
                    return jnp.stack([
                        sum(A[f, g].reshape(shape) * trace_value[g] for g in range(F))
                        for f in range(F)
                    ])
                cot_c = rows[layer][0]
                A = self._rows_block(layer, layer, cot_c)  # (D, D)
                return jnp.tensordot(A, trace_value, axes=1)

            def own_input(layer, i, layout):
                """``dS^l_t/dp_i |_{S_{t-1} fixed}`` in the trace layout."""
                if layout == "diag":
                    return ones[layer][1][i]
                value = rows[layer][1][i]  # (D, *P)
                if layout == "local":
                    F = len(self.live[layer])
                    return value.reshape((F, -1) + value.shape[1:])
                return value

            # gradient from the traces of step t-1 (before the update)
            for trace in self.traces + self.cross:
                grad[trace.param] = grad[trace.param] + self._contract(
                    trace.leaf, kappa[trace.leaf], memory[trace.key], trace.layout
                )
            if isinstance(rule, rules_lib.OTPE):
                grad = self._otpe_gradient(grad, memory, kappa, flat_params)
                ys = self._otpe_outputs(vjp_fn, zeros_carry, zeros_outputs, recording, memory)
            # update the traces
            for trace in self.traces:
                new_memory[trace.key] = A_apply(trace.leaf, memory[trace.key], trace.layout) +\
                    own_input(trace.leaf, trace.param, trace.layout)
            for trace in self.cross:
                layer, i = trace.leaf, trace.param
                value = A_apply(layer, memory[trace.key], trace.layout)
                cot_c, cot_p = rows[layer]
                direct_effect = cot_p[i]  # (D_l, *P)
                total = direct_effect
                owner = self.leaves[self.info.params[i].leaf].owner
                for m in self.stateful:
                    if not owner <= m < layer:
                        continue
                    J = self._rows_block(layer, m, cot_c)  # (D_l, F_m, n_m) or (D_l, D_m)
                    if m == owner:
                        source = next(t for t in self.traces if t.leaf == m and t.param == i)
                    else:
                        source = next(t for t in self.cross if t.leaf == m and t.param == i)
                    total = total + self._propagate(J, memory[source.key], source.layout, m)
                if trace.layout == "local":
                    F = len(self.live[layer])
                    total = total.reshape((F, -1) + total.shape[1:])
                new_memory[trace.key] = value + total
            if isinstance(rule, rules_lib.OTPE):
                new_memory.update(self._otpe_update(memory, ys))
        elif isinstance(rule, rules_lib.OTTT):
            grad, updates = self._ottt(grad, memory, kappa, x_t, recording)
            new_memory.update(updates)
        elif not isinstance(rule, rules_lib.Truncated):  # pragma: no cover - guarded earlier
            raise ValueError(f"{self.label}: rule {rule!r} has no per-step form")
        return new_carry, new_memory, loss, grad

    # ---------------------------------------------------------------- OSTL over a window

    @property
    def windowed(self) -> bool:
        """A window of steps is one batched computation: always for ``truncated`` and
        ``ottt``; for OSTL / OTPE where every trace is per neuron (``diag``)."""
        if isinstance(self.rule, (rules_lib.Truncated, rules_lib.OTTT)):
            return True
        return isinstance(self.rule, (rules_lib.OSTL, rules_lib.OTPE)) and all(
            t.layout == "diag" for t in self.traces)

    def _steps(self, params, carry, memory, x_w, target_w):
        """A window advanced one step at a time (the rule's own per-step recursion)."""

        def body(state, step_inputs):
            c, m, loss, grad = state
            x, target = step_inputs
            one = lambda a: a[None]  # noqa: E731
            c, m, loss_t, g_t = self.step(params, c, m, one(x),
                                          jax.tree_util.tree_map(one, target))
            return (c, m, loss + loss_t, [a + b for a, b in zip(grad, g_t)]), None

        flat = self._flat_params(params)
        state = (list(carry), memory, jnp.zeros((), jnp.result_type(*flat)),
                 [jnp.zeros_like(p) for p in flat])
        (carry, memory, loss, grad), _ = lax.scan(body, state, (x_w, target_w))
        return carry, memory, loss, grad

    def _one_sample_window(self, params, carry, memory, x_w, target_w):
        """One sample's window: ``window_batch`` on a batch of one."""
        lead = lambda a: a[None]  # noqa: E731
        tmap = jax.tree_util.tree_map
        carry, memory, losses, grad = self.window_batch(
            params, tmap(lead, list(carry)), tmap(lead, memory), lead(x_w), tmap(lead, target_w))
        first = lambda a: a[0]  # noqa: E731
        return tmap(first, carry), tmap(first, memory), losses[0], grad

    def _window_signals(self, params, carry, xt, tt):
        """A batch, ``K`` steps (time-major ``xt (K, B, ...)``, ``tt``): the per-step learning
        signals, then the reverse recursions of ``window_batch`` (everything but the products
        with the parameters). Arrays come back time-major, ``(K, B, ...)``."""
        layers, post, nxt_of = self._window_plan()
        signal_layers = sorted(set(layers) | set(nxt_of.values())
                               | {layer for _, layer, _, _ in self.presynaptic})
        K = xt.shape[0]
        one = lambda a: a[None]  # noqa: E731
        tmap = jax.tree_util.tree_map

        def signals(c, x, target):
            """One step from its start state: its Jacobian blocks and learning signals."""
            (new_c, outputs, recording), vjp_c = jax.vjp(
                lambda cc: self.net.apply(params, one(x), carry=cc), list(c))
            new_c = list(new_c)
            loss, g_out = jax.value_and_grad(
                lambda o: jnp.sum(jax.vmap(self.loss_fn)(o, tmap(one, target)))
            )(outputs)
            zeros_out = tmap(jnp.zeros_like, outputs)
            zeros_rec = tmap(jnp.zeros_like, recording)
            zeros_c = tmap(jnp.zeros_like, new_c)
            (kappa_tree,) = vjp_c((zeros_c, g_out, zeros_rec))
            kappa = {layer: self._vector(layer, kappa_tree[layer]) for layer in signal_layers}
            blocks = {}
            for layer in layers:
                F = len(self.live[layer])
                n = int(np.prod(self.leaves[layer].features))
                basis = jnp.repeat(jnp.eye(F, dtype=kappa[layer].dtype)[:, :, None], n, axis=2)
                (cot,) = jax.vmap(lambda v, layer=layer: vjp_c(
                    (self._carry_cotangent(new_c, layer, v), zeros_out, zeros_rec)))(basis)
                blocks[layer] = jax.vmap(lambda cc, layer=layer: self._vector(layer, cc))(
                    cot[layer])  # (F, F, n): blocks[f, g, j] = dS_{f, j}/dS_{g, j}(t - 1)
            C = {}
            for b in post:  # dy^b_t / dS^b_{t-1}, per neuron
                out = getattr(recording[b], self.leaves[b].output_key)
                ones = jnp.ones(out.shape[-1:], out.dtype)
                (cot,) = vjp_c((zeros_c, zeros_out, self._output_cotangent(recording, b, ones)))
                C[b] = self._vector(b, cot[b])
            return loss, g_out, kappa, blocks, C

        step = jax.vmap(lambda c, x: list(self.net.apply(params, one(x), carry=c)[0]))

        def forward(c, x):  # the steps' start states: the only sequential part
            return step(c, x), c

        new_carry, carries = lax.scan(forward, list(carry), xt)
        # every step's signals side by side (matrix products over the window and batch)
        losses, g_outs, kappa, blocks, C = jax.vmap(jax.vmap(signals))(carries, xt, tt)
        base = dict(carry=list(new_carry), carries=carries, losses=losses, g_outs=g_outs,
                    kappa=kappa)
        if not layers:  # truncated, ottt: no co-state recursion
            return base
        flat_params = self._flat_params(params)
        kernels = {}
        for b in post:
            kernels[b] = self._otpe_constants(b, K, kappa[b].dtype)
            weight = flat_params[self._next_weights[b]].astype(kappa[b].dtype)
            kernels[b]["pi"] = jnp.einsum("jk,tbfk->tbfj", weight, kappa[nxt_of[b]])

        def backward(state, k_inputs):
            mu, phi, lam, nu = state
            k, kappa_k, blocks_k, C_k = k_inputs
            signal = {m: kappa_k[m] for m in layers}
            zeta = {}
            for b in post:
                zeta[b] = jnp.einsum("bfn,f->bn", lam[b], kernels[b]["c"])
                signal[b] = signal[b] + zeta[b][:, None] * C_k[b]
            out = (mu, phi, zeta, nu)  # cotangents of step k's o_k (and of y_k: zeta)
            mu = {m: signal[m] + jnp.einsum("bfn,bfgn->bgn", mu[m], blocks_k[m])
                  for m in layers}
            phi = {m: jnp.einsum("brfn,bfgn->brgn", phi[m], blocks_k[m]) for m in layers}
            lam = {b: kernels[b]["pi"][k] + jnp.einsum("bfn,fg->bgn", lam[b], kernels[b]["A"])
                   for b in post}
            nu = {b: kernels[b]["omega"][k][None, :, None, None] * C_k[b][:, None]
                  + jnp.einsum("brfn,bfgn->brgn", nu[b], blocks_k[b]) for b in post}
            return (mu, phi, lam, nu), out

        mu0 = {m: jnp.zeros_like(kappa[m][0]) for m in layers}
        phi0 = {m: jnp.broadcast_to(jnp.eye(blocks[m].shape[2], dtype=blocks[m].dtype)[:, :, None],
                                    blocks[m].shape[1:]) for m in layers}
        lam0 = {b: jnp.zeros_like(kernels[b]["pi"][0]) for b in post}
        nu0 = {b: jnp.zeros(C[b].shape[1:2] + (kernels[b]["omega"].shape[1],) + C[b].shape[2:],
                            C[b].dtype) for b in post}
        (rho, phi_window, lam_window, nu_window), (mus, phis, zetas, nus) = lax.scan(
            backward, (mu0, phi0, lam0, nu0), (jnp.arange(K), kappa, blocks, C), reverse=True)
        return dict(base, rho=rho, phi_window=phi_window, lam_window=lam_window,
                    nu_window=nu_window, mus=mus, phis=phis, zetas=zetas, nus=nus)

    def _window_plan(self):
        layers = sorted({t.leaf for t in self.traces})
        post = sorted({b for _, b, _, _ in self.post})  # layers with a postsynaptic estimate
        nxt_of = {b: nxt for _, b, _, nxt in self.post}
        return layers, post, nxt_of

    def _subthreshold(self, layer: int) -> Tuple[np.ndarray, np.ndarray]:
        """Leaf ``layer``'s subthreshold ``A``, ``c`` over its live fields (float64)."""
        kernel = self.kernels[layer]
        live = list(self.live[layer])
        return (np.asarray(kernel.A[np.ix_(live, live)], np.float64),
                np.asarray(kernel.c[live], np.float64))

    def _filter_powers(self, layer: int, K: int) -> Tuple[np.ndarray, ...]:
        """``A``, ``c`` (``_subthreshold``), ``powers[d] = A^d`` for ``d <= K`` and
        ``response[d] = A^d c`` for ``d < K`` (float64)."""
        A, c = self._subthreshold(layer)
        powers = [np.eye(len(c))]
        for _ in range(K):
            powers.append(A @ powers[-1])
        return A, c, np.stack(powers), np.stack([p @ c for p in powers[:K]])

    def _otpe_constants(self, b: int, K: int, dtype: Any) -> Dict[str, Array]:
        """The next layer's subthreshold ``A'``, ``c'`` (live fields), ``omega_s =
        A'^{K-1-s} c'`` ``(K, F')`` and ``A'^K`` for leaf ``b``'s postsynaptic estimate."""
        nxt = next(n for _, b_, _, n in self.post if b_ == b)
        A_next, c_next, powers, response = self._filter_powers(nxt, K)
        return dict(A=jnp.asarray(A_next, dtype), c=jnp.asarray(c_next, dtype),
                    omega=jnp.asarray(response[::-1], dtype),
                    A_power=jnp.asarray(powers[K], dtype))

    def _carry_cotangent(self, template, layer, vector):
        cot = jax.tree_util.tree_map(jnp.zeros_like, list(template))
        cot[layer] = self._state_from_vector(layer, template[layer], vector)
        return cot

    def _output_cotangent(self, template, b, value):
        """A recording cotangent: ``value`` (per neuron) on leaf ``b``'s output, zero elsewhere."""
        cot = jax.tree_util.tree_map(jnp.zeros_like, template)
        key = self.leaves[b].output_key
        target = getattr(cot[b], key)
        value = value.reshape((1,) * (target.ndim - value.ndim) + value.shape)
        cot[b] = cot[b]._replace(
            **{key: jnp.broadcast_to(value, target.shape).astype(target.dtype)})
        return cot

    def window_batch(self, params, carry, memory, x_w, target_w):
        """OSTL / OTPE over ``K`` steps of a batch (leading axis ``B`` of ``carry``, ``memory``,
        ``x_w (B, K, ...)`` and ``target_w``), with per-neuron traces; equal to ``K`` single
        steps. Returns ``(carry, memory, losses (B,), gradient summed over the batch)``.

        With ``A_s = dS_s/dS_{s-1}`` (per-neuron blocks) and ``o_s = dS_s/dtheta`` at fixed
        ``S_{s-1}``, the window ``t0..t1`` adds ``sum_t kappa_t . E_{t-1}``
        ``= mu_{t0-1} . E_{t0-1} + sum_s mu_s . o_s`` with ``mu_{t1} = 0``,
        ``mu_{s-1} = kappa_s + mu_s A_s``, and its trace ends at
        ``E_{t1} = Phi(t1, t0-1) E_{t0-1} + sum_s Phi(t1, s) o_s`` with
        ``Phi(t1, s-1) = Phi(t1, s) A_s``. Each ``sum_s c_s . o_s`` is one reverse-mode product
        of the layer's steps (vectorised over the window) with the co-states as cotangents;
        the products that feed the gradient run over the whole batch at once (one matrix
        product over batch and time), those that feed a per-sample trace over each sample.

        OTPE's estimate ``R_t = A' R_{t-1} + c' Y_t``, ``Y_t = C_t . E_{t-1} + D_t`` (``C``,
        ``D``: sensitivities of the layer's output ``y`` to its state and parameters) is linear
        in the same quantities: ``sum_t pi_t . R_{t-1} = lambda_{t0-1} . R_{t0-1} +
        sum_s zeta_s . Y_s`` with ``lambda_{s-1} = pi_s + lambda_s A'``, ``zeta_s = lambda_s
        c'``; ``zeta_s C_s`` joins ``kappa_s``, ``zeta_s . D_s`` is a product with ``y`` as
        cotangent, and ``R_{t1} = A'^K R_{t0-1} + sum_s omega_s Y_s`` with
        ``omega_s = A'^{t1-s} c'`` the same way.
        """
        params = list(params)
        layers, post, nxt_of = self._window_plan()
        tmap = jax.tree_util.tree_map
        one = lambda a: a[None]  # noqa: E731
        time_major = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
        xt = time_major(x_w)
        sig = self._window_signals(params, list(carry), xt, tmap(time_major, target_w))

        def steps(p, carries, xs):  # K steps side by side
            return jax.vmap(lambda c, x: self.net.apply(p, one(x), carry=c))(carries, xs)

        # gradient products: over the whole window and batch at once, with window and batch
        # merged into one axis (time-major, as the signals come): the weight products are then
        # plain matrix products, without the transposes that two nested vmaps would ask for
        merged = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731  (K, B, ...) -> (K B, ...)
        (step_carry, step_out, step_rec), vjp_p = jax.vjp(
            lambda p: steps(p, tmap(merged, sig["carries"]), merged(xt)), params)
        zeros_c = tmap(jnp.zeros_like, list(step_carry))
        zeros_out = tmap(jnp.zeros_like, step_out)
        zeros_rec = tmap(jnp.zeros_like, step_rec)

        def state_cot(layer, vectors, carry_template):
            cot = tmap(jnp.zeros_like, list(carry_template))
            cot[layer] = jax.vmap(lambda v, c: self._state_from_vector(layer, c, v))(
                merged(vectors), carry_template[layer])
            return cot

        def output_cot(b, vectors, rec_template):
            return jax.vmap(lambda v, r: self._output_cotangent(r, b, v))(
                merged(vectors), rec_template)

        def batch_product(cot):
            return self._flat_params(vjp_p(cot)[0])

        grad = batch_product((zeros_c, tmap(merged, sig["g_outs"]), zeros_rec))
        for layer in layers:
            from_mu = batch_product((state_cot(layer, sig["mus"][layer], step_carry),
                                     zeros_out, zeros_rec))
            for i in self.own[layer]:
                grad[i] = grad[i] + from_mu[i]
        for b in post:
            from_zeta = batch_product((zeros_c, zeros_out,
                                       output_cot(b, sig["zetas"][b], step_rec)))
            for i in self.own[b]:
                grad[i] = grad[i] + from_zeta[i]

        K = x_w.shape[1]
        if not layers:  # truncated: nothing else; ottt: presynaptic traces
            new_memory = self._ottt_window(grad, memory, sig["kappa"], xt, step_rec, K)
            return sig["carry"], new_memory, jnp.sum(sig["losses"], axis=0), grad

        # trace products: per sample
        constants = {b: self._otpe_constants(b, K, sig["rho"][b].dtype) for b in post}

        def per_sample(carries, xs, phis, nus):
            (s_carry, s_out, s_rec), vjp_s = jax.vjp(lambda p: steps(p, carries, xs), params)
            z_c = tmap(jnp.zeros_like, list(s_carry))
            z_out = tmap(jnp.zeros_like, s_out)
            z_rec = tmap(jnp.zeros_like, s_rec)

            def state_product(layer, vectors):  # sum_s vectors_s . o_s
                cot = tmap(jnp.zeros_like, list(s_carry))
                cot[layer] = jax.vmap(lambda v, c: self._state_from_vector(layer, c, v))(
                    vectors, s_carry[layer])
                return self._flat_params(vjp_s((cot, z_out, z_rec))[0])

            def output_product(b, vectors):  # sum_s vectors_s . D_s
                cot = jax.vmap(lambda v, r: self._output_cotangent(r, b, v))(vectors, s_rec)
                return self._flat_params(vjp_s((z_c, z_out, cot))[0])

            out = {}
            for layer in layers:
                for f in range(phis[layer].shape[1]):
                    out[("phi", layer, f)] = state_product(layer, phis[layer][:, f])
            for b in post:
                omega = constants[b]["omega"]
                n_b = getattr(s_rec[b], self.leaves[b].output_key).shape[-1]
                for f in range(omega.shape[1]):
                    out[("nu", b, f)] = state_product(b, nus[b][:, f])
                    out[("omega", b, f)] = output_product(
                        b, jnp.broadcast_to(omega[:, f, None], (K, n_b)))
            return out

        products = jax.vmap(per_sample, in_axes=1)(sig["carries"], xt, sig["phis"], sig["nus"])

        def sum_contract(kappa, trace):  # sum over the batch of kappa^l . trace (diag layout)
            k_b = kappa.reshape(kappa.shape[:2] + (1,) * (trace.ndim - 3) + kappa.shape[2:])
            return jnp.sum(k_b * trace, axis=(0, 1))

        new_memory: Dict[str, Array] = {}
        for trace in self.traces:
            layer, i = trace.leaf, trace.param
            E = memory[trace.key]  # (B, F, *P)
            grad[i] = grad[i] + sum_contract(sig["rho"][layer], E)
            carried = jax.vmap(self._contract_blocks)(sig["phi_window"][layer], E)
            F = sig["phis"][layer].shape[2]
            new_memory[trace.key] = carried + jnp.stack(
                [products[("phi", layer, f)][i] for f in range(F)], axis=1)
        for key, b, i, _ in self.post:
            R, E = memory[key], memory[f"E{b}_{i}"]  # (B, F', *P), (B, F, *P)
            grad[i] = grad[i] + sum_contract(sig["lam_window"][b], R)
            F_next = constants[b]["omega"].shape[1]
            carried = jnp.einsum("fg,bg...->bf...", constants[b]["A_power"], R)
            new_memory[key] = carried + jnp.stack([
                jax.vmap(self._contract_fields)(sig["nu_window"][b][:, f], E)
                + products[("nu", b, f)][i] + products[("omega", b, f)][i]
                for f in range(F_next)], axis=1)
        return sig["carry"], new_memory, jnp.sum(sig["losses"], axis=0), grad

    @staticmethod
    def _contract_blocks(blocks: Array, trace: Array) -> Array:
        """``new[f] = sum_g blocks[f, g] * trace[g]`` for a per-neuron trace ``(F, ..., n)``."""
        F = blocks.shape[0]
        shape = (1,) * (trace.ndim - 2) + blocks.shape[2:]
        return jnp.stack([sum(blocks[f, g].reshape(shape) * trace[g] for g in range(F))
                          for f in range(F)])

    # ------------------------------------------------------------------- linear algebra

    def _rows_block(self, layer: int, m: int, cot_c: Any) -> Array:
        """``dS^l_t/dS^m_{t-1}`` from the dense rows of leaf ``l``: ``(D_l, F_m, n_m)`` for a
        neuron-local ``m``, else ``(D_l, D_m)``."""
        return jax.vmap(lambda c: self._vector(m, c))(cot_c[m])

    def _propagate(self, J: Array, source: Array, layout: str, m: int) -> Array:
        """``J @ M^m`` with ``J = dS^l/dS^m``; the result has ``D_l`` rows."""
        if layout == "diag":  # J (D, F, n), source (F, ..., n)
            shape = (J.shape[0],) + (1,) * (source.ndim - 2) + J.shape[2:]
            return sum(J[:, f].reshape(shape) * source[f][None] for f in range(J.shape[1]))
        if layout == "local":  # J (D, F, n), source (F, n, *P)
            return jnp.einsum("rfn,fn...->r...", J, source)
        return jnp.tensordot(J, source, axes=1)

    def _contract(self, layer: int, kappa: Array, trace: Array, layout: str) -> Array:
        """``kappa^l . trace``: the step's gradient contribution of a carried sensitivity."""
        if layout == "diag":  # kappa (F, n), trace (F, ..., n)
            extra = trace.ndim - 2
            k_b = kappa.reshape(kappa.shape[:1] + (1,) * extra + kappa.shape[1:])
            return jnp.sum(k_b * trace, axis=0)
        if layout == "local":  # kappa (F, n), trace (F, n, *P)
            return jnp.einsum("fn,fn...->...", kappa, trace)
        return jnp.tensordot(kappa.reshape(-1), trace, axes=1)

    # ------------------------------------------------------------------------------ OTTT

    def _presynaptic_input(self, k: int, x_t: Array, recording: Any) -> Array:
        if k == 0:
            return jnp.reshape(x_t, (-1,))
        feeder = self.leaves[k - 1]
        return jnp.reshape(getattr(recording[k - 1], feeder.output_key), (-1,))

    def _ottt(self, grad, memory, kappa, x_t, recording):
        updates: Dict[str, Array] = {}
        for key, layer, i, kind in self.presynaptic:
            A, c = (jnp.asarray(a, memory[key].dtype) for a in self._subthreshold(layer))
            trace = memory[key]
            k_l = kappa[layer]  # (F, n)
            if kind == "bias":
                grad[i] = grad[i] + jnp.einsum("f,fn->n", trace, k_l)
                updates[key] = A @ trace + c
            else:
                grad[i] = grad[i] + jnp.einsum("fi,fn->in", trace, k_l)
                x = self._presynaptic_input(self.info.params[i].leaf, x_t, recording)
                updates[key] = A @ trace + c[:, None] * x.astype(trace.dtype)[None, :]
        return grad, updates

    def _ottt_filters(self, layer: int, K: int, dtype: Any) -> Tuple[Array, Array, Array]:
        """Leaf ``layer``'s presynaptic filter over a window of ``K`` steps, from its
        subthreshold ``A``, ``c`` (live fields): ``to_step[s, r] = A^(s-1-r) c`` for ``r < s``
        (input ``r``'s share of the trace before step ``s``), ``from_start[s] = A^s`` (the
        start trace's), ``to_end[r] = A^(K-1-r) c`` and ``A^K`` (the trace after the window)."""
        _, c, powers, response = self._filter_powers(layer, K)
        to_step = np.zeros((K, K, len(c)))
        for step in range(1, K):
            to_step[step, :step] = response[step - 1::-1]
        as_array = lambda a: jnp.asarray(a, dtype)  # noqa: E731
        return (as_array(to_step), as_array(powers[:K]),
                as_array(response[::-1]), as_array(powers[K]))

    def _ottt_window(self, grad, memory, kappa, xt, step_rec, K):
        """OTTT over a window of ``K`` steps of a batch: adds ``sum_s outer(a_{s-1}, kappa_s)``
        to ``grad`` (in place) and returns the traces after the window. ``kappa[l]`` is
        ``(K, B, F, n)``, ``xt`` the time-major input, ``step_rec`` the steps' recordings with
        window and batch merged."""
        new_memory: Dict[str, Array] = {}
        for key, layer, i, kind in self.presynaptic:
            start = memory[key]  # (B, F, n_in) or (B, F)
            dtype = start.dtype
            to_step, from_start, to_end, power_K = self._ottt_filters(layer, K, dtype)
            k_l = kappa[layer].astype(dtype)  # (K, B, F, n)
            if kind == "bias":
                before = (jnp.einsum("sfg,bg->sbf", from_start, start)
                          + jnp.sum(to_step, axis=1)[:, None, :])
                grad[i] = grad[i] + jnp.einsum("sbf,sbfn->n", before, k_l)
                new_memory[key] = (jnp.einsum("fg,bg->bf", power_K, start)
                                   + jnp.sum(to_end, axis=0)[None, :])
                continue
            leaf = self.info.params[i].leaf
            if leaf == 0:
                x = xt.reshape(xt.shape[:2] + (-1,))
            else:
                out = getattr(step_rec[leaf - 1], self.leaves[leaf - 1].output_key)
                x = out.reshape((K, -1, start.shape[-1]))
            x = x.astype(dtype)  # (K, B, n_in)
            before = (jnp.einsum("sfg,bgi->sbfi", from_start, start)
                      + jnp.einsum("srf,rbi->sbfi", to_step, x))
            grad[i] = grad[i] + jnp.einsum("sbfi,sbfn->in", before, k_l)
            new_memory[key] = (jnp.einsum("fg,bgi->bfi", power_K, start)
                               + jnp.einsum("rf,rbi->bfi", to_end, x))
        return new_memory

    # ------------------------------------------------------------------------------ OTPE

    def _otpe_gradient(self, grad, memory, kappa, flat_params):
        for key, b, i, nxt in self.post:
            weight = flat_params[self._next_weights[b]]  # (n_b, n_next)
            pi = jnp.einsum("jk,fk->fj", weight.astype(memory[key].dtype), kappa[nxt])
            grad[i] = grad[i] + self._contract(b, pi, memory[key], "diag")
        return grad

    def _otpe_outputs(self, vjp_fn, zeros_carry, zeros_outputs, recording, memory):
        """OSTL output sensitivities ``Y^b_t`` for every leaf with a postsynaptic estimate."""
        ys: Dict[str, Array] = {}
        done: Dict[int, Tuple[Array, List[Array]]] = {}
        for key, b, i, nxt in self.post:
            if b not in done:
                leaf = self.leaves[b]
                cot_rec = jax.tree_util.tree_map(jnp.zeros_like, recording)
                out = getattr(recording[b], leaf.output_key)
                cot_rec[b] = cot_rec[b]._replace(**{leaf.output_key: jnp.ones_like(out)})
                cot_p, cot_c = vjp_fn((zeros_carry, zeros_outputs, cot_rec))
                done[b] = (self._vector(b, cot_c[b]), self._flat_params(cot_p))
            C, D = done[b]
            E = memory[f"E{b}_{i}"]
            ys[key] = self._contract_fields(C, E) + D[i]
        return ys

    def _contract_fields(self, C: Array, E: Array) -> Array:
        extra = E.ndim - 2
        C_b = C.reshape(C.shape[:1] + (1,) * extra + C.shape[1:])
        return jnp.sum(C_b * E, axis=0)

    def _otpe_update(self, memory, ys):
        updates: Dict[str, Array] = {}
        for key, b, i, nxt in self.post:
            R = memory[key]
            A, c = (jnp.asarray(a, R.dtype) for a in self._subthreshold(nxt))
            Y = ys[key]
            updates[key] = jnp.tensordot(A, R, axes=1) + c.reshape((-1,) + (1,) * Y.ndim) * Y[None]
        return updates
