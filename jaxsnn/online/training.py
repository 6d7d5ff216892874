"""Training procedures on top of the rules: deferred, online and FPTT updates.

``make_trainer(rule, net, loss_fn, optimizer, mode)`` returns a ``Trainer(init, step)`` pair of
pure functions (``step`` is jitted):

* ``"deferred"``: per sequence, the rule's gradient summed over time (``sequence_gradient``),
  averaged over the batch; one optimiser step per batch;
* ``"online"``: one optimiser step after *every* time step with that step's gradient estimate
  (averaged over the batch), while the network state and the rule's traces run on. The traces
  were built under the parameters of earlier steps, as in any online learner;
* ``FPTT(...)``: forward propagation through time (Kag & Saligrama 2021): online updates with a
  dynamic regulariser that ties the parameters to a running average.

Every procedure is one ``lax.scan`` over time (over sequences of one batch), ``vmap`` over the
batch, and carries memory whose size does not depend on the sequence length (``bptt`` excepted).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax

from jaxsnn.online import rules as rules_lib
from jaxsnn.online.gradient import (
    bptt_gradient,
    check_net,
    check_params,
    check_sequence,
    engine_scan,
    engine_scan_batch,
    prepare,
)

Array = jax.Array

__all__ = ["FPTT", "MODES", "TrainState", "Trainer", "make_trainer"]

MODES = ("deferred", "online")


class FPTT:
    """Forward propagation through time (Kag & Saligrama, ICML 2021) as a training procedure.

    Online updates (after every time step) of the regularised step loss

        l_t(theta) - <lambda, theta> + (alpha / 2) ||theta - theta_bar||^2,

    followed by the dual and running-average updates of the reference implementation
    (``rho = 0``)::

        lambda    <- lambda - alpha (theta - theta_bar)
        theta_bar <- (1 - beta) theta_bar + beta theta - (beta / alpha) lambda

    ``theta_bar`` starts at the initial parameters, ``lambda`` at zero. The step gradient of
    ``l_t`` comes from ``rule`` (FPTT's own choice is ``"truncated"``: the previous state held
    constant).

    Args:
        alpha: weight of the proximal term, > 0 (default 0.1, the reference default).
        beta: running-average rate in ``(0, 1]`` (default 0.5).
    """

    def __init__(self, alpha: float = 0.1, beta: float = 0.5):
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"FPTT: alpha must be a number > 0, got {alpha!r}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 < beta <= 1:
            raise ValueError(f"FPTT: beta must be a number in (0, 1], got {beta!r}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    def __repr__(self) -> str:
        return f"FPTT(alpha={self.alpha}, beta={self.beta})"


class TrainState(NamedTuple):
    """What a trainer carries from batch to batch.

    Attributes:
        params: the network parameters.
        opt_state: the optax optimiser state.
        fptt: ``(theta_bar, lambda)`` for ``FPTT``, else ``None``.
    """

    params: Any
    opt_state: Any
    fptt: Any = None


class Trainer(NamedTuple):
    """``init(params) -> TrainState``; ``step(state, inputs, targets) -> (state, loss)``.

    ``inputs`` are ``(batch, time, ...)``, ``targets`` a pytree of ``(batch, time, ...)``
    arrays; ``loss`` is the batch mean of the summed per-step loss (before the update).
    """

    init: Callable[[Any], TrainState]
    step: Callable[..., Tuple[TrainState, Array]]


def _mean_over_batch(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: jnp.mean(a, axis=0), tree)


def make_trainer(
    rule: Union[str, rules_lib.Rule],
    net: Any,
    loss_fn: Callable[[Any, Any], Array],
    optimizer: Any,
    mode: Union[str, FPTT] = "deferred",
) -> Trainer:
    """Build a training step for ``rule`` in ``mode`` (see the module docstring).

    Args:
        rule: a rule name or object (``jaxsnn.online.get_rule``).
        net: the discrete network (``jaxsnn.serial(...)``).
        loss_fn: ``loss_fn(output_t, target_t) -> scalar`` (summed over steps).
        optimizer: an ``optax.GradientTransformation``.
        mode: ``"deferred"``, ``"online"`` or an ``FPTT`` instance.

    Returns:
        ``Trainer(init, step)``.

    Raises:
        ValueError: unknown ``mode`` or rule. TypeError: ``optimizer`` is not an optax
            transformation, ``loss_fn`` not callable.
    """
    rule = rules_lib.get_rule(rule)
    check_net("make_trainer", net)
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"make_trainer: optimizer must be an optax.GradientTransformation, got "
            f"{type(optimizer).__name__}"
        )
    if not callable(loss_fn):
        raise TypeError(f"make_trainer: loss_fn must be callable, got {type(loss_fn).__name__}")
    if not isinstance(mode, FPTT) and mode not in MODES:
        raise ValueError(
            f"make_trainer: mode must be one of {MODES} or jaxsnn.online.FPTT(...), got {mode!r}"
        )
    import optax  # run-time dependency of the project, imported here to keep import light

    def init(params: Any) -> TrainState:
        check_params("make_trainer", net, params)
        extra = None
        if isinstance(mode, FPTT):
            extra = (params, jax.tree_util.tree_map(jnp.zeros_like, params))
        return TrainState(params, optimizer.init(params), extra)

    def deferred(state: TrainState, inputs: Array, targets: Any) -> Tuple[TrainState, Array]:
        check_sequence("make_trainer", inputs, targets, batched=True)
        prepared = prepare("make_trainer", rule, net, state.params, inputs[0], loss_fn)
        params = prepared.flat(state.params)

        window = rules_lib.window_of(rule)
        if prepared.engine is not None and prepared.engine.windowed and window > 1:
            # the batch inside each window: one gradient product for the whole batch
            losses, flat_sum = engine_scan_batch(prepared, params, inputs, targets, window)
            grads = prepared.engine.unflatten_params(
                params, [g / inputs.shape[0] for g in flat_sum])
        else:
            def one(x, target):
                if prepared.engine is None:
                    loss, grads, _ = bptt_gradient(prepared, params, x, target, None)
                else:
                    loss, grads, _ = engine_scan(prepared, params, x, target, None, window)
                return loss, grads

            losses, grads = jax.vmap(one)(inputs, targets)
            grads = _mean_over_batch(list(grads))
        grads = prepared.unflat(list(grads))
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.fptt), jnp.mean(losses)

    def online(state: TrainState, inputs: Array, targets: Any) -> Tuple[TrainState, Array]:
        check_sequence("make_trainer", inputs, targets, batched=True)
        prepared = prepare("make_trainer", rule, net, state.params, inputs[0], loss_fn)
        time_major = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
        xs = (time_major(inputs), jax.tree_util.tree_map(time_major, targets))

        def apply_update(state: TrainState, grads: Any) -> TrainState:
            tree_map = jax.tree_util.tree_map
            if isinstance(mode, FPTT):  # gradient of -<lambda, theta> + alpha/2 |theta - bar|^2
                bar, lam = state.fptt
                grads = tree_map(lambda g, p, b, dual: g - dual + mode.alpha * (p - b),
                                 grads, state.params, bar, lam)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            extra = state.fptt
            if isinstance(mode, FPTT):
                alpha, beta = mode.alpha, mode.beta
                bar, lam = state.fptt
                lam = tree_map(lambda dual, p, b: dual - alpha * (p - b), lam, params, bar)
                bar = tree_map(lambda b, p, dual: (1 - beta) * b + beta * p - (beta / alpha) * dual,
                               bar, params, lam)
                extra = (bar, lam)
            return TrainState(params, opt_state, extra)

        if prepared.engine is None:
            return _online_bptt(prepared, state, inputs, targets, apply_update)
        engine = prepared.engine
        flat0 = prepared.flat(state.params)
        carry0 = jax.vmap(lambda x: list(prepared.net.apply(flat0, x[:0])[0]))(inputs)
        memory0 = jax.vmap(lambda x: engine.init(flat0))(inputs)

        def body(loop, step_inputs):
            state, carry, memory, total = loop
            x_t, target_t = step_inputs
            params = prepared.flat(state.params)

            if engine.windowed and not engine.traces:
                # truncated, ottt: no per-sample parameter traces, so the whole batch goes at
                # once (one gradient product for all samples, no per-sample gradients)
                window = lambda a: a[:, None]  # noqa: E731
                carry, memory, losses, flat_sum = engine.window_batch(
                    params, carry, memory, window(x_t), jax.tree_util.tree_map(window, target_t))
                flat_mean = [g / x_t.shape[0] for g in flat_sum]
            else:
                def one(c, m, x, target):
                    window = lambda a: a[None]  # noqa: E731
                    return engine.step(params, c, m, window(x),
                                       jax.tree_util.tree_map(window, target))

                carry, memory, losses, grads = jax.vmap(one)(carry, memory, x_t, target_t)
                flat_mean = _mean_over_batch(grads)
            grads = prepared.unflat(engine.unflatten_params(params, flat_mean))
            state = apply_update(state, grads)
            return (state, carry, memory, total + jnp.mean(losses)), None

        total0 = jnp.zeros((), inputs.dtype)
        (state, _, _, total), _ = lax.scan(body, (state, carry0, memory0, total0), xs)
        return state, total

    step = deferred if mode == "deferred" else online
    return Trainer(init, jax.jit(step))


def _online_bptt(prepared, state: TrainState, inputs: Array, targets: Any, apply_update):
    """Online BPTT: after step ``t``, the gradient of ``l_t`` through the window so far,
    recomputed with the current parameters (``T`` backward passes per window)."""
    T = inputs.shape[1]
    loss_fn = prepared.loss_fn

    def step_loss(params, t):
        def one(x, target):
            _, outputs, _ = prepared.net.apply(prepared.flat(params), x)
            losses = jax.vmap(loss_fn)(outputs, target)
            return losses[t]

        return jnp.mean(jax.vmap(one)(inputs, targets))

    def body(loop, t):
        state, total = loop
        loss, grads = jax.value_and_grad(step_loss)(state.params, t)
        return (apply_update(state, grads), total + loss), None

    (state, total), _ = lax.scan(body, (state, jnp.zeros((), inputs.dtype)), jnp.arange(T))
    return state, total
