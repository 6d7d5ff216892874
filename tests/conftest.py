"""Shared test configuration."""

import os

import jax
import pytest
from hypothesis import settings

# Profiles are registered by jaxsnn.testing once it exists; fall back to a local "ci" profile.
try:
    import jaxsnn.testing  # noqa: F401  (registers the "ci" and "thorough" profiles)
except ImportError:  # pragma: no cover
    settings.register_profile("ci", max_examples=20, deadline=None, derandomize=True)

settings.load_profile(os.environ.get("JAXSNN_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (JAX's default is float32)."""
    with jax.enable_x64(True):
        yield
