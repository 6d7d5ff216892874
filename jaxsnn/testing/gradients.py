"""Gradient checks: ``jax.grad`` against float64 central differences, and finite gradients when silent.

* ``check_gradients``: the gradient of a scalar objective of the outputs equals float64 central
  differences of the same layer, coordinate by coordinate; returns a ``GradientReport`` whose
  ``checked`` is how many coordinates were compared (``min_compared``, default 1).
* ``check_finite_gradients_without_spikes``: no NaN/inf gradient when nothing spikes; returns
  how many gradient entries were checked.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from jaxsnn.spikes import Spikes
from jaxsnn.testing._layers import apply_fn, is_event, valid_events
from jaxsnn.testing.compare import describe_events, require_compared

__all__ = ["GradientReport", "check_gradients", "check_finite_gradients_without_spikes"]


class GradientReport(NamedTuple):
    """Outcome of ``check_gradients``.

    Attributes:
        checked: coordinates compared with finite differences.
        skipped: coordinates whose perturbation created or deleted a spike (not comparable).
        max_error: largest ``|grad - fd| / (atol + rtol |fd|)`` seen (< 1 means within tolerance).
        nonzero: compared coordinates whose central difference is not 0 (a silent event layer
            compares only zeros: require ``nonzero > 0`` where the gradient must be exercised).
    """

    checked: int
    skipped: int
    max_error: float
    nonzero: int = 0


def _to_float64(tree: Any) -> Any:
    def cast(leaf):
        if leaf is None:
            return None
        array = jnp.asarray(leaf)
        return array.astype(jnp.float64) if jnp.issubdtype(array.dtype, jnp.floating) else array

    return jax.tree_util.tree_map(cast, tree)


def _default_objective(outputs: Any) -> jax.Array:
    if is_event(outputs):
        valid = (outputs.idx >= 0) & jnp.isfinite(outputs.time)
        weight = 1.0 / (1.0 + jnp.maximum(outputs.idx, 0).astype(outputs.time.dtype))
        return jnp.sum(jnp.where(valid, weight * jnp.where(valid, outputs.time, 0.0), 0.0))
    x = jnp.asarray(outputs)
    coefficients = jnp.cos(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape)
    return jnp.sum(coefficients * x)


def _default_structure(outputs: Any) -> Any:
    if is_event(outputs):
        _, idx = valid_events(outputs)
        return tuple(int(i) for i in np.sort(idx))  # which neurons spike how often
    x = np.asarray(outputs)
    if np.all((x == 0) | (x == 1)):
        return x.astype(bool).tobytes()
    return None


def check_gradients(
    layer: Any, params: Any, inputs: Any, *, objective: Optional[Callable[[Any], Any]] = None,
    structure: Optional[Callable[[Any], Any]] = None, eps: float = 1e-6, rtol: float = 1e-4,
    atol: Optional[float] = None, max_coordinates: int = 24, seed: int = 0, min_compared: int = 1,
) -> GradientReport:
    """``jax.grad`` of a scalar objective of the outputs equals float64 central differences.

    Everything is cast to float64 and run under ``jax.enable_x64``. For each of up to
    ``max_coordinates`` parameter entries (chosen with ``seed``), ``(f(p + h) - f(p - h)) / 2h``
    with ``h = eps * max(1, |p|)`` is compared with the gradient:
    ``|grad - fd| <= atol + rtol * |fd|``. Perturbations that change the spike structure
    (``structure(outputs)`` differs: a spike is created or deleted) are skipped and counted,
    because the objective is not differentiable there.

    Default objective: event outputs: ``sum_k time_k / (1 + idx_k)`` over real output
    events; dense outputs: a fixed weighted sum of all entries. (Surrogate gradients of
    discrete spiking layers are not derivatives; compare them only on exact paths such as the
    ``LI`` readout.)

    Args:
        layer: the layer (or its apply function); must run in float64 under x64.
        params: its parameters.
        inputs: one sample's inputs.
        objective: ``outputs -> scalar``.
        structure: ``outputs -> hashable``; default: the multiset of spiking neurons (event)
            or the 0/1 pattern (binary dense outputs; none for continuous outputs).
        eps: relative finite-difference step.
        rtol: relative tolerance (default 1e-4).
        atol: absolute tolerance (default ``1e-7 * max(|f(p)|, 1e-30) / max(1, max |p|)``).
        max_coordinates: most parameter entries checked.
        seed: seed choosing the entries.
        min_compared: fewest coordinates that must be compared (not skipped).

    Returns:
        A ``GradientReport``.

    Raises:
        AssertionError: on a mismatch (naming the parameter entry, both values and the spike
            structure), a non-finite gradient, or fewer than ``min_compared`` comparisons.
    """
    objective = objective or _default_objective
    structure = structure or _default_structure
    apply = apply_fn(layer)
    with jax.enable_x64(True):
        params64 = _to_float64(params)
        inputs64 = _to_float64(inputs) if not is_event(inputs) else Spikes(
            jnp.asarray(inputs.time, jnp.float64), jnp.asarray(inputs.idx))

        def f(p):
            return objective(apply(p, inputs64)[1])

        def evaluate(p):
            outputs = apply(p, inputs64)[1]
            return float(objective(outputs)), structure(outputs)

        value0, structure0 = evaluate(params64)
        grads = jax.grad(f)(params64)
        flat_p, unflatten = jax.flatten_util.ravel_pytree(params64)
        flat_g, _ = jax.flatten_util.ravel_pytree(grads)
        flat_p, flat_g = np.asarray(flat_p), np.asarray(flat_g)
        if not np.all(np.isfinite(flat_g)):
            bad = np.flatnonzero(~np.isfinite(flat_g))
            raise AssertionError(f"gradients: {bad.size} non-finite gradient entries (first at flat index {bad[0]})")
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(flat_p.size)[:max_coordinates]
        scale_p = max(1.0, float(np.max(np.abs(flat_p)))) if flat_p.size else 1.0
        tol_abs = atol if atol is not None else 1e-7 * max(abs(value0), 1e-30) / scale_p
        checked = skipped = nonzero = 0
        worst = 0.0
        for k in chosen:
            h = eps * max(1.0, abs(flat_p[k]))
            plus, minus = flat_p.copy(), flat_p.copy()
            plus[k] += h
            minus[k] -= h
            f_plus, s_plus = evaluate(unflatten(jnp.asarray(plus)))
            f_minus, s_minus = evaluate(unflatten(jnp.asarray(minus)))
            if s_plus != structure0 or s_minus != structure0:
                skipped += 1
                continue
            fd = (f_plus - f_minus) / (2 * h)
            allowed = tol_abs + rtol * abs(fd)
            error = abs(flat_g[k] - fd)
            if not np.isfinite(fd):
                raise AssertionError(f"gradients: the central difference for params[flat {k}] is {fd!r}")
            worst = max(worst, error / allowed if allowed > 0 else (0.0 if error == 0 else np.inf))
            checked += 1
            nonzero += int(fd != 0)
            if error > allowed:
                raise AssertionError(
                    f"gradients: d objective / d params[flat {k}] is {float(flat_g[k])!r} by jax.grad but "
                    f"{float(fd)!r} by float64 central differences (h={h:.3g}); |difference| {error:.3g} > "
                    f"{allowed:.3g} (rtol {rtol}, atol {tol_abs:.3g}); objective {value0!r}, spike "
                    f"structure {structure0!r}"
                    + (f"; inputs {describe_events(inputs)}" if is_event(inputs) else "")
                )
    require_compared(
        checked, min_compared,
        f"gradients: parameter coordinates compared with central differences ({skipped} of {len(chosen)} "
        "chosen skipped because the perturbation created or deleted a spike)",
        "Raise max_coordinates, or draw parameters away from spike-count changes.",
    )
    return GradientReport(checked, skipped, float(worst), nonzero)


def check_finite_gradients_without_spikes(
    layer: Any, params: Any, inputs: Any, *, objective: Optional[Callable[[Any, Any], Any]] = None,
    min_compared: int = 1,
) -> int:
    """Gradients are finite (no NaN/inf) when the layer emits no spike at all.

    The classic failure is a ``jnp.where`` over ``+inf`` spike times (padding, silent
    neurons) whose discarded branch still poisons the gradient with ``0 * inf = NaN``.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: inputs for which the layer stays silent (asserted).
        objective: ``(outputs, recording) -> scalar``; default: the sum of all output spike
            times where finite (event) or of all outputs (dense), plus the sum of every finite
            float leaf of the recording.
        min_compared: fewest float gradient entries that must be checked.

    Returns:
        The number of float gradient entries checked.

    Raises:
        AssertionError: if the layer spiked (precondition), a gradient entry is not finite, or
            too few entries were checked.
    """
    apply = apply_fn(layer)

    def default(outputs, recording):
        total = 0.0
        if is_event(outputs):
            total = jnp.sum(jnp.where(jnp.isfinite(outputs.time), outputs.time, 0.0))
        else:
            total = jnp.sum(outputs)
        for leaf in jax.tree_util.tree_leaves(recording):
            if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
                total = total + jnp.sum(jnp.where(jnp.isfinite(leaf), leaf, 0.0))
        return total

    objective = objective or default
    _, outputs, _ = apply(params, inputs)
    if is_event(outputs):
        fired = int(np.sum(np.asarray(outputs.idx) >= 0))
    else:
        fired = int(np.sum(np.asarray(outputs) != 0)) if np.all(np.isin(np.asarray(outputs), (0, 1))) else 0
    if fired:
        raise AssertionError(f"finite gradients without spikes: precondition failed, the layer fired {fired} spike(s)")

    def f(p):
        _, out, rec = apply(p, inputs)
        return objective(out, rec)

    grads = jax.grad(f)(params)
    checked = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(grads)[0]:
        array = np.asarray(leaf)
        if array.dtype.kind != "f":
            continue
        if not np.all(np.isfinite(array)):
            raise AssertionError(
                f"finite gradients without spikes: gradient of params{jax.tree_util.keystr(path)} has "
                f"{int(np.sum(~np.isfinite(array)))} non-finite entries although nothing spiked"
            )
        checked += array.size
    return require_compared(checked, min_compared, "finite gradients without spikes: float gradient entries")
