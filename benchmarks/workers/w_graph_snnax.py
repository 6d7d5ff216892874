"""snnax on the ``feedback`` graph workload: ``snnax.snn.GraphStructure`` runs a whole graph,
feedback included, in one scan. snnax 0.0.1 from PyPI does not import (a circular import in
``snnax.snn``); the import is attempted so that the failure is recorded as this library's result.
"""

from __future__ import annotations

from common_jax import harness


def build(workload, cfg):
    import snnax.snn  # noqa: F401  (fails in snnax 0.0.1: circular import)

    raise NotImplementedError(
        "snnax imported; a graph implementation of the feedback workload is still to be written"
    )


if __name__ == "__main__":
    harness.run_worker(build)
