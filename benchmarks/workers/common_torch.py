"""Pieces shared by the PyTorch workers."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402


def block(x):
    return x  # CPU torch is synchronous


def mean_rates(*spike_tensors):
    return [float(s.detach().double().mean()) for s in spike_tensors]


def grads_of(params):
    """Zero-argument callable's result: the list of parameter gradients (then cleared)."""
    out = [p.grad for p in params]
    for p in params:
        p.grad = None
    return out
