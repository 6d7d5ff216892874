"""Tools to see how gradient estimates relate to the true gradient, and where training goes.

* ``cosine_similarity``, ``sign_agreement``, ``relative_norm``, ``compare``: two gradient
  pytrees matched by tree path (globally, per layer or per array);
* ``compare_rules``: run several ``jaxsnn.online`` rules on one batch and tabulate them against
  BPTT per layer (``format_table`` renders Markdown);
* ``pca_directions``, ``loss_grid``, ``project``, ``plot_landscape``: loss landscapes around a
  trained network with the training trajectories (plots need the ``[plot]`` extra).
"""

from jaxsnn.analysis.compare import (
    BY,
    compare,
    compare_rules,
    cosine_similarity,
    format_table,
    layer_names,
    paths,
    relative_norm,
    sign_agreement,
)
from jaxsnn.analysis.landscape import (
    Directions,
    loss_grid,
    pca_directions,
    plot_landscape,
    project,
)

__all__ = [
    "BY",
    "Directions",
    "compare",
    "compare_rules",
    "cosine_similarity",
    "format_table",
    "layer_names",
    "loss_grid",
    "paths",
    "pca_directions",
    "plot_landscape",
    "project",
    "relative_norm",
    "sign_agreement",
]
