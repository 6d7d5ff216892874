"""Checks that JAX transformations and chunking do not change what a layer computes.

* ``check_jit_equals_eager``: ``jax.jit(apply)`` equals ``apply``;
* ``check_vmap_equals_loop``: ``jax.vmap`` over a batch equals a loop over its samples;
* ``check_chunked_equals_whole``: two runs passing ``carry`` along equal one run.

Each compares the whole ``(carry, outputs, recording)`` trees, returns how many values it
compared (spike times plus array entries) and takes ``min_compared`` (default 1).
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn.spikes import Spikes
from jaxsnn.testing._layers import apply_fn, is_event, overflow_note, rebuild, run, valid_events
from jaxsnn.testing.compare import (
    assert_arrays_close,
    assert_events_close,
    assert_trees_close,
    default_rtol,
    describe_events,
    dtype_of,
    require_compared,
)

__all__ = ["check_jit_equals_eager", "check_vmap_equals_loop", "check_chunked_equals_whole"]


def check_jit_equals_eager(
    layer: Any, params: Any, inputs: Any, carry: Any = None,
    rtol: Optional[float] = None, atol: Optional[float] = None, *, min_compared: int = 1,
) -> int:
    """``jax.jit(apply)`` gives the same carry, outputs and recording as eager ``apply``.

    Args:
        layer: the layer (or its apply function).
        params: its parameters.
        inputs: one sample's inputs.
        carry: optional initial state.
        rtol, atol: tolerances.
        min_compared: fewest values that must be compared.

    Returns:
        The number of values compared (spike times plus array entries).

    Raises:
        AssertionError: naming the first differing leaf, or if too little was compared.
    """
    apply = apply_fn(layer)
    # jax.jit(apply), not of a new lambda: compilations are cached per apply function.
    if carry is None:
        eager, jitted = apply(params, inputs), jax.jit(apply)(params, inputs)
    else:
        eager, jitted = apply(params, inputs, carry=carry), jax.jit(apply)(params, inputs, carry=carry)
    compared = assert_trees_close(jitted, eager, "jit vs eager: (carry, outputs, recording)", rtol=rtol, atol=atol,
                                  min_compared=0)
    return require_compared(compared, min_compared, "jit vs eager: values (spike times and array entries)")


def check_vmap_equals_loop(
    layer: Any, params: Any, batch_inputs: Any, rtol: Optional[float] = None, atol: Optional[float] = None,
    *, min_compared: int = 1,
) -> int:
    """``jax.vmap`` over a batch of inputs equals a Python loop over the samples.

    Args:
        layer: the layer (or its apply function).
        params: its parameters (shared by all samples).
        batch_inputs: inputs with a leading batch axis (``Spikes`` with ``(B, capacity)``
            fields, or a ``(B, T, n)`` array).
        rtol, atol: tolerances.
        min_compared: fewest values that must be compared over all samples.

    Returns:
        The number of values compared over all samples.

    Raises:
        AssertionError: naming the first differing sample and leaf, or if too little was
            compared (e.g. an empty batch).
    """
    apply = apply_fn(layer)
    batched = jax.vmap(lambda x: apply(params, x), in_axes=0)(batch_inputs)
    size = int(jax.tree_util.tree_leaves(batch_inputs)[0].shape[0])
    compared = 0
    for k in range(size):
        sample = jax.tree_util.tree_map(lambda leaf: leaf[k], batch_inputs)
        single = apply(params, sample)
        from_batch = jax.tree_util.tree_map(lambda leaf: leaf[k], batched)
        compared += assert_trees_close(from_batch, single, f"vmap vs loop, sample {k}: (carry, outputs, recording)",
                                       rtol=rtol, atol=atol, min_compared=0)
    return require_compared(compared, min_compared, f"vmap vs loop: values over {size} sample(s)")


def check_chunked_equals_whole(
    layer: Any, params: Any, inputs: Any, split: Any, *, second_layer: Any = None, whole_layer: Any = None,
    rtol: Optional[float] = None, atol: Optional[float] = None, min_compared: int = 1,
) -> int:
    """Simulating in two chunks, passing ``carry`` along, equals one run over the whole window.

    Dense inputs: ``split`` is a step index ``k``; ``apply(x[:k])`` then
    ``apply(x[k:], carry=carry)``: the concatenated outputs and the final carry must equal
    one run over ``x``.

    Event inputs: ``split`` is a time ``t_s`` and the window is part of the layer, so three
    layers are needed: ``layer`` simulates ``[0, t_s]``, ``second_layer`` the rest of the
    window in its own time (``[0, t_end - t_s]``, starting from the first run's ``carry``) and
    ``whole_layer`` the whole ``[0, t_end]``. Input events at ``t <= t_s`` go to the first
    chunk; later ones go to the second with times ``t - t_s``; the second chunk's outputs are
    shifted back by ``t_s``. Output spikes of both chunks together must equal those of the
    whole run (the final carries are compared too).

    Args:
        layer: the layer (dense) or the first-chunk layer (event).
        params: parameters, shared by all runs.
        inputs: one sample's inputs.
        split: step index (dense) or time (event).
        second_layer: event only: the continuation layer.
        whole_layer: event only: the whole-window layer.
        rtol, atol: tolerances.
        min_compared: fewest values (output spike times or entries, plus final carry entries)
            that must be compared.

    Returns:
        The number of values compared.

    Raises:
        AssertionError: if the chunked run differs (outputs or final carry), or too little was
            compared.
        ValueError: on a split outside the window or missing event layers.
    """
    if is_event(inputs):
        if second_layer is None or whole_layer is None:
            raise ValueError("event inputs need second_layer and whole_layer (see the docstring)")
        t_split = float(split)
        time, idx = valid_events(inputs)
        early = time <= t_split
        part1 = rebuild(time[early], idx[early], inputs)
        part2 = rebuild(time[~early] - t_split, idx[~early], inputs)
        carry1, out1, _ = run(layer, params, part1)
        carry2, out2, _ = run(second_layer, params, part2, carry=carry1)
        carry_all, out_all, _ = run(whole_layer, params, inputs)
        t1, i1 = valid_events(out1)
        t2, i2 = valid_events(out2)
        joined = Spikes(np.concatenate([np.asarray(t1, np.float64), np.asarray(t2, np.float64) + t_split]),
                        np.concatenate([i1, i2]))
        rtol = default_rtol(dtype_of(out_all)) if rtol is None else rtol  # joined is float64
        compared = assert_events_close(
            joined, out_all,
            f"chunked run: simulating [0, {t_split!r}] and continuing from its carry differs from one run "
            f"(inputs {describe_events(inputs)}){overflow_note(out_all)}",
            rtol=rtol, atol=atol, min_compared=0, got_label="chunked", want_label="whole",
        )
    else:
        x = jnp.asarray(inputs)
        k = int(split)
        if not 0 < k < x.shape[0]:
            raise ValueError(f"split must be in (0, {x.shape[0]}) steps, got {k}")
        carry1, out1, _ = run(layer, params, x[:k])
        carry2, out2, _ = run(layer, params, x[k:], carry=carry1)
        carry_all, out_all, _ = run(layer, params, x)
        compared = assert_arrays_close(
            jnp.concatenate([out1, out2], axis=0), out_all,
            f"chunked run: steps [0, {k}) then [{k}, {x.shape[0]}) with carry differ from one run",
            rtol=rtol, atol=atol, min_compared=0,
        )
    compared += assert_trees_close(carry2, carry_all, "chunked run: final carry", rtol=rtol, atol=atol,
                                   min_compared=0)
    return require_compared(compared, min_compared, "chunked run: output values and final carry entries")
