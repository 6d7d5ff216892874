"""Optimiser transformations for spiking networks, as optax ``GradientTransformation``s.

``bump_silent`` is weight bumping (Goeltz et al. 2021): a neuron that never spikes has no
spike-time gradient, so a spike-time loss cannot revive it; instead its input weights are raised
by a fixed step until it spikes again. ``silent_fraction`` measures how silent each neuron was
in a batch, which is what ``bump_silent`` takes.

Chain the bump *after* the optimiser, so that it is added to the update the optimiser produced
rather than fed to it as a gradient (Adam divides each gradient by its running RMS and would
shrink a small, steady push to nothing next to the loss gradients)::

    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2), bump_silent(1e-2))
    updates, opt_state = optimizer.update(grads, opt_state, params, silent=[hidden, output])
    params = optax.apply_updates(params, updates)
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsnn._validate import check_nonnegative, real_scalar


def silent_fraction(first_times: Any, where: Optional[Any] = None) -> jax.Array:
    """Per neuron, the fraction of samples in which it did not spike (and ``where`` holds).

    ``s_k = mean_b [ t_bk == +inf  and  where_bk ]``, the mean taken over every leading axis
    of ``first_times``. ``s_k == 1`` means silent in every sample; with ``where`` set to the
    one-hot labels, ``s_k`` is the fraction of samples in which neuron ``k`` was the label and
    stayed silent.

    Args:
        first_times: ``(..., n)`` first-spike times, ``+inf`` for a silent neuron (see
            ``jaxsnn.spikes.first_spike_times``).
        where: optional boolean mask broadcastable to ``first_times``.

    Returns:
        ``(n,)`` fractions in ``[0, 1]``, in the float dtype of ``first_times``.

    Raises:
        TypeError: if ``first_times`` is not a float array or ``where`` not boolean.
        ValueError: if ``first_times`` has no neuron axis or ``where`` does not broadcast.
    """
    times = jnp.asarray(first_times)
    if not jnp.issubdtype(times.dtype, jnp.floating):
        raise TypeError(f"first_times must be a float array, got dtype {times.dtype}")
    if times.ndim < 1:
        raise ValueError(
            "first_times must have a neuron axis: shape (n,) or (..., n), got a scalar"
        )
    silent = times == jnp.inf
    if where is not None:
        where = jnp.asarray(where)
        if where.dtype != jnp.bool_:
            raise TypeError(f"where must be a boolean mask, got dtype {where.dtype}")
        try:
            shape = np.broadcast_shapes(where.shape, times.shape)
        except ValueError:
            shape = None
        if shape != times.shape:
            raise ValueError(
                f"where must broadcast to the shape of first_times {times.shape}, got {where.shape}"
            )
        silent = silent & where
    axes = tuple(range(times.ndim - 1))
    return jnp.mean(silent.astype(times.dtype), axis=axes)


def bump_silent(
    amount: float, *, weight_key: str = "weight"
) -> optax.GradientTransformationExtraArgs:
    """Weight bumping of silent neurons, as a transformation chained after the optimiser.

    ``update(updates, state, params=None, *, silent)`` adds ``amount * silent`` to every input
    weight of a neuron: for each layer with an entry in ``silent``,
    ``updates[layer][weight_key][..., j] += amount * silent[layer][j]``. The step does not
    depend on the gradients, so chained after ``optax.adam`` it is applied as is.

    Args:
        amount: the step added to the input weights of a neuron whose ``silent`` value is 1,
            >= 0 (0 turns bumping off).
        weight_key: the key of the input weights in a layer's params (``"weight"`` in every
            jaxsnn layer).

    Returns:
        An ``optax.GradientTransformationExtraArgs`` without state. Its ``update`` takes the
        keyword argument ``silent``: a pytree prefix of ``updates`` whose leaves are ``None``
        (that layer is not bumped) or arrays broadcastable to the layer's ``weight_key`` entry,
        usually ``(n_neurons,)`` values in ``[0, 1]`` from ``silent_fraction`` (a fraction
        gives a proportional step, a boolean mask the full step). For a ``serial`` network's
        flat params list that is a list with one entry per layer, e.g. ``[None, fraction]`` to
        bump only the second layer.

    Raises:
        TypeError, ValueError: for a negative or non-finite ``amount``; at ``update``, when
            ``silent`` is missing, does not match ``updates`` or does not broadcast to a weight.
    """
    amount = real_scalar("amount", amount)
    check_nonnegative("amount", amount)

    def init(params: Any) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update(
        updates: Any,
        state: optax.EmptyState,
        params: Any = None,
        *,
        silent: Any = None,
        **extra_args: Any,
    ):
        del params, extra_args
        if silent is None:
            raise TypeError(
                "bump_silent: update needs the keyword argument silent= (per layer None or the "
                "per-neuron silent fraction, see jaxsnn.optim.silent_fraction)"
            )

        def is_entry(leaf: Any) -> bool:  # None marks a layer that is left alone
            return leaf is None

        try:
            paths = jax.tree_util.tree_flatten_with_path(silent, is_leaf=is_entry)[0]
            layers = jax.tree_util.tree_structure(silent, is_leaf=is_entry).flatten_up_to(updates)
        except (ValueError, TypeError) as error:
            raise ValueError(
                "bump_silent: silent must have the structure of the params list (one entry per "
                f"layer, None for a layer that is not bumped): {error}"
            ) from None
        bumped = []
        for (path, fraction), layer in zip(paths, layers):
            if fraction is None:
                bumped.append(layer)
                continue
            where = jax.tree_util.keystr(path) or "the params"
            if not isinstance(layer, dict) or weight_key not in layer:
                raise ValueError(
                    f"bump_silent: the params at {where} have no {weight_key!r} entry to bump"
                )
            weight_update = layer[weight_key]  # the optimiser's step of the input weights
            fraction = jnp.asarray(fraction)
            try:
                shape = np.broadcast_shapes(fraction.shape, weight_update.shape)
            except ValueError:
                shape = None
            if shape != weight_update.shape:
                raise ValueError(
                    f"bump_silent: silent at {where} has shape {fraction.shape}, which does not "
                    f"broadcast to its {weight_key!r} of shape {weight_update.shape} (give one "
                    "value per neuron, the last axis)"
                )
            step = (amount * fraction).astype(weight_update.dtype)
            bumped.append({**layer, weight_key: weight_update + step})
        treedef = jax.tree_util.tree_structure(silent, is_leaf=is_entry)
        return jax.tree_util.tree_unflatten(treedef, bumped), state

    return optax.GradientTransformationExtraArgs(init, update)


__all__ = ["bump_silent", "silent_fraction"]
