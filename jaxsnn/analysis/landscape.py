"""Loss landscapes around a trained network (Li et al. 2018, "Visualizing the loss landscape").

1. ``pca_directions``: the two principal directions of parameter checkpoints (one or several
   training trajectories), as deviations from a centre (usually the final parameters). PCA by a
   thin SVD of the ``(checkpoints, parameters)`` matrix; no scikit-learn.
2. ``loss_grid``: ``loss(centre + a d1 + b d2)`` on a 2-D grid, rows batched with ``jax.vmap``.
3. ``project``: a trajectory's coordinates ``(a, b)`` in that plane (least squares).
4. ``plot_landscape``: a contour plot with trajectories (matplotlib, the optional ``[plot]``
   extra, imported only here).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

Array = jax.Array

__all__ = ["Directions", "loss_grid", "pca_directions", "plot_landscape", "project"]


class Directions(NamedTuple):
    """Two orthonormal directions in parameter space.

    Attributes:
        center: the parameters at the origin of the plane (a pytree).
        d1, d2: unit directions (pytrees like ``center``), ``d1`` of largest variance.
        explained: fraction of the checkpoints' variance along ``d1`` and ``d2``.
    """

    center: Any
    d1: Any
    d2: Any
    explained: Array


def _stack(trajectories: Sequence[Sequence[Any]], center: Any) -> Tuple[Array, Callable]:
    flat_center, unravel = ravel_pytree(center)
    rows = []
    for trajectory in trajectories:
        for checkpoint in trajectory:
            flat, _ = ravel_pytree(checkpoint)
            if flat.shape != flat_center.shape:
                raise ValueError(
                    "pca_directions: every checkpoint must have the structure and shapes of the "
                    f"centre ({flat_center.shape[0]} numbers), got {flat.shape[0]}"
                )
            rows.append(flat - flat_center)
    if len(rows) < 2:
        raise ValueError("pca_directions: need at least two checkpoints")
    return jnp.stack(rows), unravel


def pca_directions(trajectories: Sequence[Sequence[Any]], center: Any) -> Directions:
    """Top-2 principal directions of the checkpoints' deviations from ``center``.

    Args:
        trajectories: one or more sequences of parameter pytrees (checkpoints over training).
        center: the plane's origin, e.g. the final parameters of one run.

    Returns:
        ``Directions`` (unit vectors, orthogonal; sign fixed so the first checkpoint has a
        non-positive coordinate along each direction, i.e. training moves in +d).

    Raises:
        ValueError: fewer than two checkpoints, or mismatched structures.
    """
    matrix, unravel = _stack(trajectories, center)
    _, s, vt = jnp.linalg.svd(matrix, full_matrices=False)
    if vt.shape[0] < 2:
        raise ValueError("pca_directions: the checkpoints span fewer than two directions")
    d1, d2 = vt[0], vt[1]
    first = matrix[0]
    d1 = jnp.where(jnp.vdot(first, d1) > 0, -d1, d1)
    d2 = jnp.where(jnp.vdot(first, d2) > 0, -d2, d2)
    variance = s**2
    explained = variance[:2] / jnp.sum(variance)
    return Directions(center, unravel(d1), unravel(d2), explained)


def project(trajectory: Sequence[Any], directions: Directions) -> Array:
    """Coordinates ``(n_checkpoints, 2)`` of checkpoints in the plane (orthogonal projection)."""
    c, _ = ravel_pytree(directions.center)
    d1, _ = ravel_pytree(directions.d1)
    d2, _ = ravel_pytree(directions.d2)
    basis = jnp.stack([d1, d2], axis=1)
    points = jnp.stack([ravel_pytree(p)[0] - c for p in trajectory])
    return points @ basis


def loss_grid(
    loss: Callable[[Any], Array],
    directions: Directions,
    alphas: Array,
    betas: Array,
) -> Array:
    """``loss(center + a d1 + b d2)`` for every ``a`` in ``alphas`` and ``b`` in ``betas``.

    Args:
        loss: ``params -> scalar`` (e.g. the mean loss of a fixed evaluation batch).
        directions: from ``pca_directions``.
        alphas, betas: 1-D grids of coordinates.

    Returns:
        ``(len(alphas), len(betas))`` losses: ``jax.vmap`` over ``betas`` (one row at a time,
        ``lax.map`` over ``alphas``, so memory is that of one row of ``len(betas)`` losses).
    """
    alphas = jnp.asarray(alphas)
    betas = jnp.asarray(betas)
    if alphas.ndim != 1 or betas.ndim != 1:
        raise ValueError(
            f"loss_grid: alphas and betas must be 1-D, got shapes {alphas.shape}, {betas.shape}"
        )
    c, unravel = ravel_pytree(directions.center)
    d1, _ = ravel_pytree(directions.d1)
    d2, _ = ravel_pytree(directions.d2)

    def at(a, b):
        return loss(unravel(c + a * d1 + b * d2))

    row = jax.vmap(at, in_axes=(None, 0))
    return jax.lax.map(lambda a: row(a, betas), alphas)


def plot_landscape(
    alphas: Array,
    betas: Array,
    losses: Array,
    trajectories: Optional[Dict[str, Array]] = None,
    ax: Any = None,
    title: Optional[str] = None,
    levels: int = 30,
):
    """Contour plot of a ``loss_grid`` with trajectories (``{label: (n, 2) coordinates}``).

    Needs matplotlib (``pip install 'jaxsnn[plot]'``).

    Returns:
        The matplotlib axes.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plot_landscape needs matplotlib: pip install 'jaxsnn[plot]'"
        ) from error
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5))
    A, B = np.meshgrid(np.asarray(alphas), np.asarray(betas), indexing="ij")
    values = np.asarray(losses)
    contour = ax.contourf(A, B, values, levels=levels, cmap="viridis")
    ax.contour(A, B, values, levels=levels, colors="k", linewidths=0.3, alpha=0.4)
    ax.figure.colorbar(contour, ax=ax, label="loss")
    for label, coords in (trajectories or {}).items():
        coords = np.asarray(coords)
        ax.plot(coords[:, 0], coords[:, 1], marker=".", markersize=3, linewidth=1.2, label=label)
        ax.plot(coords[-1, 0], coords[-1, 1], marker="*", markersize=9, color="w",
                markeredgecolor="k")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    if title:
        ax.set_title(title)
    if trajectories:
        ax.legend(fontsize=7)
    return ax
