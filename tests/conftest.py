"""Shared test configuration: hypothesis profile from JAXSNN_HYPOTHESIS_PROFILE, float64 fixture."""

import jax
import pytest

import jaxsnn.testing

jaxsnn.testing.load_profile_from_env()


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (JAX's default is float32)."""
    with jax.enable_x64(True):
        yield
