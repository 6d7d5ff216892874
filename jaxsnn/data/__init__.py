"""Datasets and batching.

* ``load_yinyang`` / ``generate_yinyang``: the Yin-Yang dataset, bit-identical to the published
  arrays for their seeds (checked against their SHA-256, ``YINYANG_SHA256``).
* ``circle``, ``linear``, ``constant``: small synthetic tasks in the unit square.
* ``randman``: smooth random manifolds (Zenke & Vogels 2021).
* ``epoch_batches`` / ``iterate_batches``: shuffle with a JAX key and batch any pytree of
  per-sample arrays (``(inputs, labels)``, ``Spikes``, ...).
"""

from jaxsnn.data.loader import epoch_batches, iterate_batches, num_batches, num_samples
from jaxsnn.data.randman import RandmanParams, n_terms, randman, randman_embed, randman_params
from jaxsnn.data.toy import BALANCED_RADIUS, circle, constant, linear
from jaxsnn.data.yinyang import (
    YINYANG_DIR_ENV,
    YINYANG_SHA256,
    YINYANG_SPLITS,
    Dataset,
    generate_yinyang,
    load_yinyang,
    yinyang_class,
    yinyang_directory,
    yinyang_fingerprint,
)

__all__ = [
    "BALANCED_RADIUS",
    "Dataset",
    "RandmanParams",
    "YINYANG_DIR_ENV",
    "YINYANG_SHA256",
    "YINYANG_SPLITS",
    "circle",
    "constant",
    "epoch_batches",
    "generate_yinyang",
    "iterate_batches",
    "linear",
    "load_yinyang",
    "n_terms",
    "num_batches",
    "num_samples",
    "randman",
    "randman_embed",
    "randman_params",
    "yinyang_class",
    "yinyang_directory",
    "yinyang_fingerprint",
]
