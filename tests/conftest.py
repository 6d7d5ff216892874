"""Shared test configuration: hypothesis profile from JAXSNN_HYPOTHESIS_PROFILE, float64 fixture,
and an opt-in shuffled test order (JAXSNN_TEST_ORDER_SEED=<int>) to show that no test depends on
the tests run before it."""

import os
import random

import jax
import pytest

import jaxsnn.testing

jaxsnn.testing.load_profile_from_env()

ORDER_SEED_ENV_VAR = "JAXSNN_TEST_ORDER_SEED"


def pytest_collection_modifyitems(config, items):
    """Shuffle the collected tests with the seed in ``JAXSNN_TEST_ORDER_SEED``, if it is set."""
    seed = os.environ.get(ORDER_SEED_ENV_VAR)
    if seed is not None:
        random.Random(int(seed)).shuffle(items)


def pytest_report_header(config):
    seed = os.environ.get(ORDER_SEED_ENV_VAR)
    return f"test order shuffled with {ORDER_SEED_ENV_VAR}={seed}" if seed is not None else None


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (JAX's default is float32)."""
    with jax.enable_x64(True):
        yield
