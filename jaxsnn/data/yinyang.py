"""The Yin-Yang classification dataset (Kriener, Goeltz and Petrovici, 2021).

Points ``(x, y)`` of the square ``[0, 2 r_big]^2`` that fall inside the big circle of radius
``r_big`` centred at ``(r_big, r_big)`` belong to one of three regions of a yin-yang symbol:
class 0 ("yang"), class 1 ("yin") and class 2 (the two small dots of radius ``r_small``).
Each sample is the feature vector ``(x, y, 1 - x, 1 - y)``; the mirrored coordinates keep the
total input activity of a sample independent of its position.

``generate_yinyang`` reproduces the dataset authors' published arrays bit for bit for their
seeds (train: seed 42, 5000 samples; validation: 41, 1000; test: 40, 1000); the SHA-256 of
the published arrays is kept in ``YINYANG_SHA256`` (``yinyang_fingerprint``), so this is
checked without the files. ``load_yinyang``
reads the published arrays when they are available and otherwise generates them, so no download
is ever needed.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

import numpy as np

#: Published splits: name -> (seed, number of samples).
YINYANG_SPLITS: Dict[str, Tuple[int, int]] = {
    "train": (42, 5000),
    "validation": (41, 1000),
    "test": (40, 1000),
}

#: Environment variable naming the directory of the published ``*.npy`` arrays.
YINYANG_DIR_ENV = "JAXSNN_YINYANG_DIR"

#: SHA-256 of the published arrays, split -> (samples, labels), as ``yinyang_fingerprint``
#: computes them (little-endian float64 samples ``(n, 4)`` and int64 labels, C order). They
#: let the generator be checked bit for bit without the files.
YINYANG_SHA256: Dict[str, Tuple[str, str]] = {
    "train": (
        "f5a4054d56f2a058f8250fba7ff9720458e1625db7af78a295e45701745b2228",
        "534d12acda4f9dbc7208a99d3646115a4aa7d74ca31d6d23f822079a568559b7",
    ),
    "validation": (
        "5eac358bdf2122763dce3703a79f3005e56e46a4db25ec329a07333d0f7b8093",
        "5a4c2f605814a620f514c1091f10441ce562cd81e902ce701b3cf94ae7576f7d",
    ),
    "test": (
        "7bab3ed668ed4992679cff6339fe21bfe7d0c921ddc6187eaa3bc6ef34b888d7",
        "daa0f8f4e3b37b1ddec2afee22f09afb768f0e575f3f568e7469f1ebc6af73c1",
    ),
}

N_CLASSES = 3
N_FEATURES = 4


class Dataset(NamedTuple):
    """Samples and integer labels of a classification dataset (unpacks as ``inputs, labels``).

    Yin-Yang returns float64/int64 NumPy arrays (exactly the published values); the synthetic
    datasets return JAX arrays. Either works with ``jaxsnn.data.epoch_batches``.

    Attributes:
        inputs: ``(n_samples, n_features)`` array.
        labels: ``(n_samples,)`` integer class indices.
    """

    inputs: Any
    labels: Any


def yinyang_class(x: float, y: float, r_small: float = 0.1, r_big: float = 0.5) -> int:
    """Class of a point inside the big circle.

    With ``d_left`` and ``d_right`` the distances to the dot centres ``(r_big / 2, r_big)`` and
    ``(3 r_big / 2, r_big)``: class 2 if ``min(d_left, d_right) < r_small``; otherwise class 1
    if ``d_right <= r_small``, or ``r_small < d_left <= r_big / 2``, or
    ``y > r_big and d_right > r_big / 2``; otherwise class 0.

    Args:
        x: first coordinate.
        y: second coordinate.
        r_small: radius of the dots.
        r_big: radius of the symbol.

    Returns:
        0, 1 or 2.
    """
    d_right = math.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = math.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    if d_right < r_small or d_left < r_small:
        return 2
    in_yin = (
        d_right <= r_small
        or r_small < d_left <= 0.5 * r_big
        or (y > r_big and d_right > 0.5 * r_big)
    )
    return 1 if in_yin else 0


def _check_geometry(r_small: float, r_big: float) -> None:
    for name, value in (("r_small", r_small), ("r_big", r_big)):
        is_number = isinstance(value, (int, float, np.floating))
        if not (is_number and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if r_small >= 0.5 * r_big:
        raise ValueError(
            f"r_small must be < r_big / 2 so the dots fit in the symbol, got r_small={r_small}, "
            f"r_big={r_big}"
        )


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)


def generate_yinyang(
    seed: int = 42, size: int = 5000, r_small: float = 0.1, r_big: float = 0.5
) -> Dataset:
    """Generate Yin-Yang samples exactly as the published arrays were generated.

    Algorithm (NumPy ``RandomState(seed)``, one stream for everything): for each sample draw
    the class first with ``randint(3)``, then draw ``(x, y) = rand(2) * 2 * r_big`` until the
    point lies inside the big circle (distance to ``(r_big, r_big)`` at most ``r_big``) and has
    the drawn class (``yinyang_class``). Drawing the class first balances the classes.

    Args:
        seed: seed of the ``RandomState``.
        size: number of samples, >= 0.
        r_small: radius of the dots, 0 < r_small < r_big / 2.
        r_big: radius of the symbol, > 0.

    Returns:
        ``Dataset`` with float64 ``inputs`` of shape ``(size, 4)`` holding
        ``(x, y, 1 - x, 1 - y)`` and int64 ``labels`` of shape ``(size,)``.

    Raises:
        TypeError: if ``seed`` or ``size`` is not an int.
        ValueError: if ``size < 0`` or the radii are invalid.
    """
    _check_size("seed", seed)
    size = _check_size("size", size)
    _check_geometry(r_small, r_big)
    rng = np.random.RandomState(seed)
    inputs = np.empty((size, N_FEATURES), dtype=np.float64)
    labels = np.empty((size,), dtype=np.int64)
    for k in range(size):
        wanted = int(rng.randint(3))
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            x, y = float(x), float(y)
            if math.sqrt((x - r_big) ** 2 + (y - r_big) ** 2) > r_big:
                continue
            if yinyang_class(x, y, r_small, r_big) == wanted:
                break
        inputs[k] = (x, y, 1.0 - x, 1.0 - y)
        labels[k] = wanted
    return Dataset(inputs, labels)


def yinyang_fingerprint(dataset: Dataset) -> Tuple[str, str]:
    """SHA-256 hex digests of a dataset's samples and labels, for bit-exact comparison.

    The samples are hashed as little-endian float64 and the labels as little-endian int64, in
    C order, so the digest depends on the values only (not on the array's memory layout or
    the machine's byte order). Compare with ``YINYANG_SHA256[split]``.

    Args:
        dataset: a ``Dataset`` (or an ``(inputs, labels)`` pair) of NumPy-convertible arrays.

    Returns:
        ``(samples digest, labels digest)``.
    """
    inputs, labels = dataset
    inputs_bytes = np.ascontiguousarray(np.asarray(inputs), dtype="<f8").tobytes()
    labels_bytes = np.ascontiguousarray(np.asarray(labels), dtype="<i8").tobytes()
    return hashlib.sha256(inputs_bytes).hexdigest(), hashlib.sha256(labels_bytes).hexdigest()


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def yinyang_directory() -> Optional[Path]:
    """Directory holding the published arrays, or ``None`` if not found.

    Looks at ``$JAXSNN_YINYANG_DIR`` first, then ``<repo>/../shared/data/yin_yang``.

    Returns:
        The directory if it contains ``train_samples.npy``, else ``None``.
    """
    candidates = []
    override = os.environ.get(YINYANG_DIR_ENV)
    if override:
        candidates.append(Path(override))
    candidates.append(_repo_root().parent / "shared" / "data" / "yin_yang")
    for candidate in candidates:
        if (candidate / "train_samples.npy").is_file():
            return candidate
    return None


def load_yinyang(
    split: str = "train",
    directory: Union[str, Path, None] = None,
    source: str = "auto",
) -> Dataset:
    """Load one published split of the Yin-Yang dataset.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"``.
        directory: directory with ``<split>_samples.npy`` and ``<split>_labels.npy``; default:
            ``yinyang_directory()``.
        source: ``"auto"`` (read the files if found, else generate), ``"file"`` (read, fail if
            missing) or ``"generate"`` (always generate; bit-identical to the files).

    Returns:
        ``Dataset`` with float64 ``inputs`` ``(n, 4)`` and int64 ``labels`` ``(n,)``.

    Raises:
        ValueError: for an unknown split or source.
        FileNotFoundError: with ``source="file"`` when the arrays cannot be found.
    """
    if split not in YINYANG_SPLITS:
        raise ValueError(f"split must be one of {sorted(YINYANG_SPLITS)}, got {split!r}")
    if source not in ("auto", "file", "generate"):
        raise ValueError(f"source must be 'auto', 'file' or 'generate', got {source!r}")
    seed, size = YINYANG_SPLITS[split]
    if source != "generate":
        folder = Path(directory) if directory is not None else yinyang_directory()
        if folder is not None and (folder / f"{split}_samples.npy").is_file():
            inputs = np.load(folder / f"{split}_samples.npy")
            labels = np.load(folder / f"{split}_labels.npy")
            return Dataset(inputs.astype(np.float64), labels.astype(np.int64))
        if source == "file":
            raise FileNotFoundError(
                f"no {split}_samples.npy in {folder}; set ${YINYANG_DIR_ENV} to the directory of "
                "the published arrays, or use source='generate' (bit-identical)"
            )
    return generate_yinyang(seed, size)
