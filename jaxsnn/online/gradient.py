"""``sequence_gradient``: one entry point for every rule, on one sample."""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax

from jaxsnn.online import rules as rules_lib
from jaxsnn.online._engine import Engine
from jaxsnn.online._network import analyze, is_composite, probe_kernels
from jaxsnn.types import Layer

Array = jax.Array

__all__ = ["sequence_gradient", "prepare"]


class Prepared:
    """A network wrapped for the rules: flat params/carry lists, its analysis and an engine."""

    def __init__(self, label: str, rule: rules_lib.Rule, net: Any, params: Any,
                 input_features: Tuple[int, ...], dtype: Any, loss_fn: Callable):
        self.label = label
        self.rule = rule
        self.composite = is_composite(net)
        self.net = net if self.composite else _as_composite(net)
        self.params = list(params) if self.composite else [params]
        self.info = analyze(label, self.net, self.params, input_features, dtype)
        self.loss_fn = loss_fn
        if isinstance(rule, rules_lib.BPTT):
            self.engine = None
        else:
            net, info, flat = self.net, self.info, self.params
            self.engine = Engine(label, rule, net, info,
                                 lambda: probe_kernels(net, info, flat, dtype), loss_fn)

    def flat(self, params: Any) -> List[Any]:
        return list(params) if self.composite else [params]

    def unflat(self, params: List[Any]) -> Any:
        return params if self.composite else params[0]

    def flat_carry(self, carry: Any) -> Optional[List[Any]]:
        if carry is None:
            return None
        return list(carry) if self.composite else [carry]

    def unflat_carry(self, carry: List[Any]) -> Any:
        return carry if self.composite else carry[0]


def _as_composite(layer: Any) -> Layer:
    """A leaf layer seen as a one-leaf composite (flat lists of length one)."""
    init, apply = layer[0], layer[1]
    name = getattr(layer, "name", None)

    def composite_apply(params, inputs, external=None, carry=None):
        state, outputs, recording = apply(
            params[0], inputs, external=None if external is None else external[0],
            carry=None if carry is None else carry[0],
        )
        return [state], outputs, [recording]

    def composite_init(rng, input_shape):
        shape, params = init(rng, input_shape)
        return shape, [params]

    return Layer(composite_init, composite_apply, name=f"serial({name})" if name else None,
                 leaves=1)


def _check_callable(label: str, name: str, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{label}: {name} must be callable, got {type(value).__name__}")


def check_net(label: str, net: Any) -> None:
    """``net`` must be an ``(init, apply)`` pair such as ``jaxsnn.serial(...)``."""
    if not (isinstance(net, tuple) and len(net) == 2 and all(map(callable, net))):
        raise TypeError(
            f"{label}: net must be a jaxsnn layer or jaxsnn.serial(...) of discrete layers, got "
            f"{type(net).__name__}"
        )


def check_sequence(label: str, inputs: Any, targets: Any, batched: bool = False) -> int:
    """Validate ``inputs (T, ...)`` / ``targets`` (leading axis ``T``); return ``T``."""
    lead = 2 if batched else 1
    layout = "(batch, time, features...)" if batched else "(time, features...)"
    if not hasattr(inputs, "shape") or not hasattr(inputs, "dtype"):
        raise TypeError(f"{label}: inputs must be an array {layout}, got {type(inputs).__name__}")
    if not jnp.issubdtype(inputs.dtype, jnp.floating):
        raise TypeError(f"{label}: inputs must have a floating-point dtype, got {inputs.dtype}")
    if inputs.ndim < lead + 1:
        raise ValueError(
            f"{label}: inputs must be {layout} with at least one feature axis, got shape "
            f"{tuple(inputs.shape)}" + ("" if batched else "; batch with jax.vmap")
        )
    T = int(inputs.shape[lead - 1])
    if T < 1:
        raise ValueError(f"{label}: inputs have no time steps (shape {tuple(inputs.shape)})")
    leaves = jax.tree_util.tree_leaves(targets)
    if not leaves:
        raise ValueError(f"{label}: targets must hold at least one array with a time axis")
    for leaf in leaves:
        shape = tuple(jnp.shape(leaf))
        if len(shape) < lead or shape[:lead] != tuple(inputs.shape[:lead]):
            want = tuple(inputs.shape[:lead])
            axes = "(batch, time) axes" if batched else "time axis"
            raise ValueError(
                f"{label}: every target array must start with the {axes} of the inputs {want}, "
                f"got a target of shape {shape}"
            )
    return T


def check_carry(label: str, prepared: Prepared, carry: Any) -> Optional[List[Any]]:
    if carry is None:
        return None
    flat = prepared.flat_carry(carry)
    n = len(prepared.info.leaves)
    if prepared.composite and (not isinstance(carry, (list, tuple)) or len(carry) != n):
        raise ValueError(
            f"{label}: carry must be None (rest) or the flat list of {n} per-layer states "
            f"returned by a previous call, got {type(carry).__name__}"
            + (f" of length {len(carry)}" if isinstance(carry, (list, tuple)) else "")
        )
    return flat


def check_params(label: str, net: Any, params: Any) -> None:
    if isinstance(net, Layer) and net.leaves is not None:
        if not isinstance(params, (list, tuple)) or len(params) != net.leaves:
            raise ValueError(
                f"{label}: params must be the flat list of {net.leaves} per-layer parameters "
                f"returned by net.init, got {type(params).__name__}"
                + (f" of length {len(params)}" if isinstance(params, (list, tuple)) else "")
            )


def prepare(label: str, rule: Union[str, rules_lib.Rule], net: Any, params: Any,
            inputs_example: Any, loss_fn: Callable) -> Prepared:
    """Resolve the rule, validate the network and analyse it (shapes only, trace time)."""
    rule = rules_lib.get_rule(rule)
    check_net(label, net)
    check_params(label, net, params)
    _check_callable(label, "loss_fn", loss_fn)
    features = tuple(inputs_example.shape[1:])
    return Prepared(label, rule, net, params, features, inputs_example.dtype, loss_fn)


def _step_losses(loss_fn: Callable, outputs: Any, targets: Any) -> Array:
    return jax.vmap(loss_fn)(outputs, targets)


def bptt_gradient(prepared: Prepared, params: List[Any], inputs: Array, targets: Any,
                  carry: Optional[List[Any]]) -> Tuple[Array, List[Any], List[Any]]:
    """Reference: ``jax.grad`` of the summed loss through the whole window."""

    def total(p):
        new_carry, outputs, _ = prepared.net.apply(p, inputs, carry=carry)
        return jnp.sum(_step_losses(prepared.loss_fn, outputs, targets)), new_carry

    (loss, new_carry), grads = jax.value_and_grad(total, has_aux=True)(params)
    return loss, grads, list(new_carry)


def engine_scan(prepared: Prepared, params: List[Any], inputs: Array, targets: Any,
                carry: Optional[List[Any]], window: int = 1) -> Tuple[Array, List[Any], List[Any]]:
    """Forward rules: one ``lax.scan`` over windows of ``window`` steps (``rules.window_of``);
    the carried memory is the network state plus the traces, independent of ``T``."""
    engine = prepared.engine
    if carry is None:
        carry = list(prepared.net.apply(params, inputs[:0])[0])
    memory = engine.init(params)
    flat = engine._flat_params(params)
    zeros = [jnp.zeros_like(p) for p in flat]
    T = inputs.shape[0]
    n_windows, rest = divmod(T, window)

    def body(state, step_inputs):
        c, m, loss, grad = state
        x_w, target_w = step_inputs
        c, m, loss_w, g_w = engine.step(params, c, m, x_w, target_w)
        grad = [a + b for a, b in zip(grad, g_w)]
        return (c, m, loss + loss_w, grad), None

    def windows(tree, start, count):
        return jax.tree_util.tree_map(
            lambda a: a[start:start + count * window].reshape((count, window) + a.shape[1:]), tree
        )

    loss0 = jnp.zeros((), jnp.result_type(*flat) if flat else inputs.dtype)
    state = (carry, memory, loss0, zeros)
    if n_windows:
        state, _ = lax.scan(body, state, (windows(inputs, 0, n_windows),
                                          windows(targets, 0, n_windows)))
    if rest:
        tail = lambda a: a[n_windows * window:]  # noqa: E731
        state, _ = body(state, (tail(inputs), jax.tree_util.tree_map(tail, targets)))
    carry, _, loss, grad = state
    return loss, engine.unflatten_params(params, grad), carry


def engine_scan_batch(prepared: Prepared, params: List[Any], inputs: Array, targets: Any,
                      window: int) -> Tuple[Array, List[Any]]:
    """``engine_scan`` of a batch ``inputs (B, T, ...)`` from rest for rules with a window
    recursion (``engine.windowed``): ``(losses (B,), gradient summed over the batch)``, flat.

    The same numbers as ``vmap(engine_scan)`` summed over the batch, with the batch inside each
    window: the products that feed the gradient are then one matrix product over batch and
    window (no per-sample gradient is formed); the traces stay per sample.
    """
    engine = prepared.engine
    carry = jax.vmap(lambda x: list(prepared.net.apply(params, x[:0])[0]))(inputs)
    memory = jax.vmap(lambda x: engine.init(params))(inputs)
    flat = engine._flat_params(params)
    batch, T = inputs.shape[0], inputs.shape[1]
    n_windows, rest = divmod(T, window)

    def advance(state, x_w, target_w):
        c, m, losses, grad = state
        c, m, loss_w, g_w = engine.window_batch(params, c, m, x_w, target_w)
        return c, m, losses + loss_w, [a + b for a, b in zip(grad, g_w)]

    def windows(a):  # (B, T, ...) -> (n_windows, B, window, ...)
        a = a[:, :n_windows * window].reshape((batch, n_windows, window) + a.shape[2:])
        return jnp.swapaxes(a, 0, 1)

    losses0 = jnp.zeros((batch,), jnp.result_type(*flat) if flat else inputs.dtype)
    state = (carry, memory, losses0, [jnp.zeros_like(p) for p in flat])
    if n_windows:
        state, _ = lax.scan(lambda s, xs: (advance(s, *xs), None), state,
                            (windows(inputs), jax.tree_util.tree_map(windows, targets)))
    if rest:
        tail = lambda a: a[:, n_windows * window:]  # noqa: E731
        state = advance(state, tail(inputs), jax.tree_util.tree_map(tail, targets))
    _, _, losses, grad = state
    return losses, grad


def sequence_gradient(
    rule: Union[str, rules_lib.Rule],
    net: Any,
    params: Any,
    inputs: Array,
    targets: Any,
    loss_fn: Callable[[Any, Any], Array],
    carry: Any = None,
) -> Tuple[Array, Any, Any]:
    """Loss and gradient estimate of one sequence under a learning rule.

    ``L = sum_t loss_fn(y_t, targets[t])`` where ``y_t`` is the network's output at step ``t``.
    ``"bptt"`` differentiates the whole window (``jax.grad``); every other rule advances the
    network inside one ``lax.scan`` over windows of the rule's ``window`` steps, with the
    gradient of its per-step recursion, and carries traces whose size does not depend on ``T``
    (see ``jaxsnn.online.rules`` for the terms each rule keeps). Pure: works under
    ``jax.jit``, ``jax.vmap`` (batch) and ``jax.grad`` of the loss.

    Args:
        rule: ``"bptt"``, ``"truncated"``, ``"ottt"``, ``"ostl"``, ``"otpe"``, ``"rtrl"`` or a
            rule object (``jaxsnn.online.RTRL(structured=False)``, ...).
        net: a discrete network (``jaxsnn.serial`` of ``jaxsnn.discrete`` layers and stateless
            stax layers) or a single discrete layer.
        params: its parameters (the flat list from ``net.init`` for a ``serial``).
        inputs: ``(T, *features)`` one sample's inputs.
        targets: a pytree whose arrays have leading axis ``T``; ``targets[t]`` goes to
            ``loss_fn`` with the step's output (use a per-step weight in the targets for a loss
            on some steps only).
        loss_fn: ``loss_fn(output_t, target_t) -> scalar``.
        carry: ``None`` (start at rest) or the carry returned by a previous call (streams).

    Returns:
        ``(loss, grads, carry)``: the summed loss, the gradient estimate with the structure of
        ``params``, and the network state after the last step.

    Raises:
        ValueError: unknown rule, a layer the rule cannot handle (named, with what to use
            instead), inputs/targets/carry/params of the wrong shape.
        TypeError: a non-callable ``loss_fn``, non-float inputs, a bad ``net``.
    """
    label = "sequence_gradient"
    rule = rules_lib.get_rule(rule)
    check_net(label, net)
    check_sequence(label, inputs, targets)
    prepared = prepare(label, rule, net, params, inputs, loss_fn)
    flat_params = prepared.flat(params)
    flat_carry = check_carry(label, prepared, carry)
    if isinstance(prepared.rule, rules_lib.BPTT):
        loss, grads, new_carry = bptt_gradient(prepared, flat_params, inputs, targets, flat_carry)
    else:
        window = rules_lib.window_of(prepared.rule)
        loss, grads, new_carry = engine_scan(prepared, flat_params, inputs, targets, flat_carry,
                                             window)
    return loss, prepared.unflat(list(grads)), prepared.unflat_carry(new_carry)
