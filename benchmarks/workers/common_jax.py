"""Pieces shared by the JAX workers (imported inside each JAX peer's venv too)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402


def block(x):
    import jax

    return jax.block_until_ready(x)


def mean_rates(*spike_arrays):
    import numpy as np

    return [float(np.asarray(s, dtype=np.float64).mean()) for s in spike_arrays]


__all__ = ["harness", "block", "mean_rates"]
