"""Property-based testing of spiking layers: strategies, checks and a float64 reference.

- ``jaxsnn.testing.reference``: float64 NumPy simulators (event based and discrete), the
  yardstick for exactness tests.
- ``jaxsnn.testing.strategies``: hypothesis strategies for spikes, parameters, weights, dense
  inputs, random networks and bad inputs (their values do not depend on JAX's configuration).
- ``jaxsnn.testing.properties``: checks that take any layer ``(init, apply)`` and raise
  ``AssertionError`` with a readable explanation when a property is violated; each returns how
  much it compared and fails when that is less than ``min_compared`` (default 1). The checks
  live in ``compare`` (comparing outputs), ``physics``, ``transforms``, ``gradients`` and
  ``adapters`` (the float64 reference); ``properties`` gathers them in one namespace.

Importing this package registers two hypothesis profiles (when hypothesis is installed):

- ``"ci"``: derandomized (deterministic), few examples, no deadline;
- ``"thorough"``: many examples, no deadline, random.

``load_profile_from_env()`` loads the one named by the environment variable
``JAXSNN_HYPOTHESIS_PROFILE`` (default ``"ci"``); when that variable is set, importing this
package loads it already.
"""

from __future__ import annotations

import os

from jaxsnn.testing import reference

PROFILE_ENV_VAR = "JAXSNN_HYPOTHESIS_PROFILE"
CI_MAX_EXAMPLES = 10
THOROUGH_MAX_EXAMPLES = 500

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # hypothesis is a test-time dependency only
    settings = None
else:
    _SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    settings.register_profile(
        "ci",
        max_examples=CI_MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        print_blob=True,
        suppress_health_check=_SUPPRESSED,
    )
    settings.register_profile(
        "thorough",
        max_examples=THOROUGH_MAX_EXAMPLES,
        deadline=None,
        print_blob=True,
        suppress_health_check=_SUPPRESSED,
    )


def load_profile_from_env(default: str = "ci") -> str:
    """Load the hypothesis profile named by ``JAXSNN_HYPOTHESIS_PROFILE`` (or ``default``).

    Args:
        default: profile used when the variable is unset.

    Returns:
        The name of the loaded profile.

    Raises:
        ImportError: if hypothesis is not installed.
        ValueError: if the name is not a registered profile.
    """
    if settings is None:
        raise ImportError("hypothesis is required for jaxsnn.testing profiles: pip install hypothesis")
    name = os.environ.get(PROFILE_ENV_VAR, default)
    try:
        settings.load_profile(name)
    except Exception as error:  # hypothesis raises InvalidArgument for unknown names
        raise ValueError(
            f"{PROFILE_ENV_VAR}={name!r} is not a registered hypothesis profile; use 'ci' or 'thorough'"
        ) from error
    return name


if settings is not None and os.environ.get(PROFILE_ENV_VAR):
    load_profile_from_env()

__all__ = ["reference", "load_profile_from_env", "PROFILE_ENV_VAR"]
