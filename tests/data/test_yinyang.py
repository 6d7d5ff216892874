"""Yin-Yang: bit-exactness against the published arrays, loading, geometry, bad input."""

import functools

import numpy as np
import pytest

from jaxsnn.data import yinyang
from jaxsnn.data.yinyang import (
    YINYANG_DIR_ENV,
    YINYANG_SHA256,
    YINYANG_SPLITS,
    generate_yinyang,
    load_yinyang,
    yinyang_class,
    yinyang_directory,
    yinyang_fingerprint,
)

PUBLISHED = yinyang_directory()
# The generator is checked bit for bit against the vendored SHA-256 of the published arrays
# everywhere; the direct comparison with the files runs where they are available.
needs_published = pytest.mark.skipif(
    PUBLISHED is None,
    reason=f"published Yin-Yang arrays not found (set ${YINYANG_DIR_ENV}); "
    "test_generator_matches_published_fingerprint checks the generator without them",
)


@functools.lru_cache(maxsize=None)
def _generated(split):
    """A published split generated from its seed (once per test session: 5000 samples take seconds)."""
    return generate_yinyang(*YINYANG_SPLITS[split])


@pytest.mark.parametrize("split", sorted(YINYANG_SPLITS))
def test_generator_matches_published_fingerprint(split):
    seed, size = YINYANG_SPLITS[split]
    generated = _generated(split)
    assert generated.inputs.dtype == np.float64 and generated.labels.dtype == np.int64
    assert generated.inputs.shape == (size, 4) and generated.labels.shape == (size,)
    assert yinyang_fingerprint(generated) == YINYANG_SHA256[split]


def test_fingerprint_sees_one_bit():
    data = _generated("test")
    samples, labels = yinyang_fingerprint(data)
    nudged = data.inputs.copy()
    nudged[500, 1] = np.nextafter(nudged[500, 1], 1.0)  # one ulp in one coordinate
    nudged_samples, same_labels = yinyang_fingerprint((nudged, data.labels))
    assert nudged_samples != samples and same_labels == labels
    relabelled = data.labels.copy()
    relabelled[0] = (relabelled[0] + 1) % 3
    assert yinyang_fingerprint((data.inputs, relabelled))[1] != labels
    # the digest depends on values only: layout and integer width do not matter
    assert yinyang_fingerprint((np.asfortranarray(data.inputs), data.labels.astype(np.int32))) == (samples, labels)


@needs_published
@pytest.mark.parametrize("split", sorted(YINYANG_SPLITS))
def test_generator_reproduces_published_arrays_bit_for_bit(split):
    generated = _generated(split)
    samples = np.load(PUBLISHED / f"{split}_samples.npy")
    labels = np.load(PUBLISHED / f"{split}_labels.npy")
    assert yinyang_fingerprint((samples, labels)) == YINYANG_SHA256[split]  # the vendored digests
    assert generated.inputs.dtype == np.float64 and generated.labels.dtype == np.int64
    assert np.array_equal(generated.inputs, samples)
    assert np.array_equal(generated.labels, labels)


@needs_published
def test_load_reads_files_and_generate_source_matches():
    from_file = load_yinyang("validation", source="file")
    generated = load_yinyang("validation", source="generate")
    assert np.array_equal(from_file.inputs, generated.inputs)
    assert np.array_equal(from_file.labels, generated.labels)


def test_env_override_is_used(tmp_path, monkeypatch):
    inputs = np.full((3, 4), 0.25)
    labels = np.array([0, 1, 2])
    np.save(tmp_path / "train_samples.npy", inputs)
    np.save(tmp_path / "train_labels.npy", labels)
    monkeypatch.setenv(YINYANG_DIR_ENV, str(tmp_path))
    assert yinyang_directory() == tmp_path
    loaded = load_yinyang("train", source="file")
    assert np.array_equal(loaded.inputs, inputs) and np.array_equal(loaded.labels, labels)


def test_missing_files_fall_back_to_generator_or_raise(tmp_path, monkeypatch):
    monkeypatch.setattr(yinyang, "_repo_root", lambda: tmp_path / "repo")
    monkeypatch.setenv(YINYANG_DIR_ENV, str(tmp_path / "nowhere"))
    assert yinyang_directory() is None
    with pytest.raises(FileNotFoundError, match=YINYANG_DIR_ENV):
        load_yinyang("test", source="file")
    fallback = load_yinyang("test")
    expected = generate_yinyang(*YINYANG_SPLITS["test"])
    assert np.array_equal(fallback.inputs, expected.inputs)


def test_features_classes_and_balance():
    data = generate_yinyang(seed=7, size=600)
    x, y = data.inputs[:, 0], data.inputs[:, 1]
    assert np.array_equal(data.inputs[:, 2], 1.0 - x) and np.array_equal(data.inputs[:, 3], 1.0 - y)
    assert np.all((x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.25)
    assert all(yinyang_class(a, b) == c for a, b, c in zip(x, y, data.labels))
    counts = np.bincount(data.labels, minlength=3)
    assert counts.min() > 150  # randint(3) class draw: ~200 each
    # the dot centres and the two halves of the symbol
    assert yinyang_class(0.25, 0.5) == 2 and yinyang_class(0.75, 0.5) == 2
    assert yinyang_class(0.5, 0.9) != yinyang_class(0.5, 0.1)


def test_generate_is_deterministic_and_seed_dependent():
    first, again, other = generate_yinyang(3, 50), generate_yinyang(3, 50), generate_yinyang(4, 50)
    assert np.array_equal(first.inputs, again.inputs)
    assert not np.array_equal(first.inputs, other.inputs)
    assert generate_yinyang(3, 0).inputs.shape == (0, 4)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(size=-1), ValueError, "size must be >= 0"),
        (dict(size=2.5), TypeError, "size must be an int"),
        (dict(seed=-3), ValueError, "seed must be >= 0"),
        (dict(r_small=0.3), ValueError, "r_small must be < r_big / 2"),
        (dict(r_big=0.0), ValueError, "r_big must be a finite number > 0"),
        (dict(r_small=float("nan")), ValueError, "r_small must be a finite number > 0"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        generate_yinyang(**kwargs)


def test_load_rejects_bad_split_and_source():
    with pytest.raises(ValueError, match="split must be one of"):
        load_yinyang("training")
    with pytest.raises(ValueError, match="source must be"):
        load_yinyang("train", source="web")
