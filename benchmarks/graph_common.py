"""Data of the ``feedback`` graph workload, shared by its workers (NumPy only, fixed seed).

Network (per time step ``t``, batch of ``B`` samples)::

    z1_t = LIF(x_t W1 + z2_{t-1} W_fb)        (feedback from layer 2, one step later)
    z2_t = LIF(z1_t W2)

with the benchmark neuron of ``mlp2048`` (``v_t = 0.9 v_{t-1} + input_t``, spike when
``v_t > 1``, subtract 1). ``W1``, ``W2`` and ``x`` are those of ``harness.mlp_data``; the
feedback weights are inhibitory on average, so the rates stay moderate. The step-wise part is
inherent: layer 1 at step ``t`` needs layer 2 at step ``t - 1``.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

import harness


def feedback_data(cfg: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """``x (T, B, n_in)``, ``w1 (n_in, h)``, ``w2 (h, h)`` and ``w_fb (h, h)`` as float32."""
    data = harness.mlp_data(cfg)
    rng = np.random.default_rng(cfg.get("seed", 0) + 1)
    h = cfg["hidden"]
    scale = cfg.get("feedback_scale", 0.5)
    w_fb = -scale * harness._spiking_weights(rng, h, h, cfg.get("p_hidden_guess", 0.15), cfg.get("gain", 1.0))
    return dict(data, w_fb=w_fb.astype(np.float32))


FEEDBACK = {"T": 100, "batch": 32, "n_in": 512, "hidden": 512, "p_in": 0.1, "seed": 0}
TINY_FEEDBACK = {"T": 6, "batch": 2, "n_in": 16, "hidden": 16, "p_in": 0.3, "seed": 0}
