"""Shared test configuration: hypothesis profile from JAXSNN_HYPOTHESIS_PROFILE, float64 fixture,
an opt-in shuffled test order (JAXSNN_TEST_ORDER_SEED=<int>) to show that no test depends on
the tests run before it, a compilation cache shared by the test processes of one run, and the
faster-compiling XLA CPU fusion emitter (JAXSNN_TEST_FAST_COMPILE=0 turns it off)."""

import os
import random
import shutil
import tempfile
import uuid
from importlib import metadata

FAST_COMPILE_ENV_VAR = "JAXSNN_TEST_FAST_COMPILE"
# XLA's legacy CPU fusion emitter compiles the suite's many small programs about twice as fast
# as the default one (backend compile time of tests/event/test_eventprop.py: 30.9 s -> 16.9 s;
# whole suite on 2 cores: 8 min 20 s -> 5 min 35 s) and runs them as correctly. XLA aborts on
# a flag it does not know, so it is set only for the jaxlib releases it was measured with.
# ``JAXSNN_TEST_FAST_COMPILE=0`` keeps XLA's defaults. Set before jax creates its CPU client,
# and inherited by the xdist workers and by the tests' subprocesses.
FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"
FAST_COMPILE_JAXLIB = ("0.10.",)


def _use_fast_compile() -> None:
    if os.environ.get(FAST_COMPILE_ENV_VAR, "1") == "0":
        return
    try:
        version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if version.startswith(FAST_COMPILE_JAXLIB) and "xla_cpu_use_fusion_emitters" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE_FLAG}".strip()


_use_fast_compile()

import jax  # noqa: E402  (after XLA_FLAGS is settled)
import pytest  # noqa: E402

import jaxsnn.testing  # noqa: E402

jaxsnn.testing.load_profile_from_env()

ORDER_SEED_ENV_VAR = "JAXSNN_TEST_ORDER_SEED"
CACHE_ENV_VAR = "JAXSNN_TEST_COMPILATION_CACHE"
CACHE_RUN_ENV_VAR = "JAXSNN_TEST_RUN_ID"
CACHE_FOLDER = pytest.StashKey[str]()


def pytest_configure(config):
    """Share XLA compilations between the tests (and xdist workers) of one run.

    Many tests build the same small networks again (new Python closures, identical programs), so
    JAX's in-memory cache, keyed by the function object, misses where the persistent cache, keyed
    by the compiled program, hits. The folder is private to this run (the main process names it
    before the xdist workers start, and they inherit the name) and is removed at the end of the
    run, so no compilation survives into another run. ``JAXSNN_TEST_COMPILATION_CACHE=0`` turns
    it off.
    """
    if os.environ.get(CACHE_ENV_VAR, "1") == "0":
        return
    run_id = os.environ.setdefault(CACHE_RUN_ENV_VAR, uuid.uuid4().hex)
    folder = os.path.join(tempfile.gettempdir(), f"jaxsnn-test-compilations-{run_id}")
    if not hasattr(config, "workerinput"):
        config.stash[CACHE_FOLDER] = folder
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    """The main process removes the run's compilation cache."""
    folder = config.stash.get(CACHE_FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


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
