"""Command line, output files, progress bars and result records shared by the examples.

Every example writes its result JSON and figures to an untracked folder, ``outputs/`` at the
repository root (``--out-dir`` to change it), so running an example never modifies the
checkout. ``--record`` writes the committed records instead: the JSON to
``benchmarks/results/<name>.json`` and the figures to ``examples/figures/<name>_*.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = REPO / "outputs"
RECORDED_RESULTS = REPO / "benchmarks" / "results"
RECORDED_FIGURES = REPO / "examples" / "figures"


def add_arguments(
    parser: argparse.ArgumentParser,
    *,
    seeds: int,
    epochs: int,
    first_seed: int = 0,
    train_samples: int = 0,
) -> None:
    """The options every example has: seeds, epochs, data, output folder, plots, progress."""
    parser.add_argument(
        "--seeds", type=int, default=seeds, help="number of seeds (trained in parallel)"
    )
    parser.add_argument("--first-seed", type=int, default=first_seed)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument(
        "--train-samples",
        type=int,
        default=train_samples,
        help="use the first N training samples (0 = the whole published split)",
    )
    parser.add_argument(
        "--data-dir", default=None, help="directory of the published Yin-Yang arrays"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=OUTPUTS,
        help="folder for the result JSON and figures (default: outputs/, untracked)",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="write the committed records: benchmarks/results/<name>.json and "
        "examples/figures/<name>_*.png (overrides --out-dir)",
    )
    parser.add_argument("--no-plots", action="store_true", help="write no figures")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


class OutputPaths(NamedTuple):
    """Where an example writes: its result JSON and the folder of its figures."""

    result: Path
    figures: Path

    def figure(self, name: str, kind: str) -> Path:
        """``<figures>/<name>_<kind>.png``."""
        return self.figures / f"{name}_{kind}.png"


def output_paths(name: str, out_dir: Path = OUTPUTS, record: bool = False) -> OutputPaths:
    """The committed record paths with ``record``, else ``out_dir/<name>.json`` and ``out_dir``."""
    if record:
        return OutputPaths(RECORDED_RESULTS / f"{name}.json", RECORDED_FIGURES)
    out_dir = Path(out_dir)
    return OutputPaths(out_dir / f"{name}.json", out_dir)


def seed_list(args: argparse.Namespace) -> List[int]:
    return list(range(args.first_seed, args.first_seed + args.seeds))


def init_seeds(init: Callable, seeds: Sequence[int], input_shape: tuple) -> Any:
    """Parameters of every seed, stacked on a leading axis: ``jax.vmap`` of ``init``."""
    keys = jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])
    return jax.vmap(lambda key: init(key, input_shape)[1])(keys)


def split_keys(keys: jax.Array) -> tuple:
    """Split a stack of keys: ``(next keys, keys to use now)``."""
    pairs = jax.vmap(jax.random.split)(keys)
    return pairs[:, 0], pairs[:, 1]


def unstack(tree: Any, index: int) -> Any:
    """One seed's entry of a pytree stacked over seeds."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], tree)


def progress(iterable: Iterable, enabled: bool, desc: str, **kwargs: Any) -> Any:
    """A tqdm progress bar over ``iterable``, or the iterable itself when disabled."""
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, **kwargs)


def set_postfix(bar: Any, **values: Any) -> None:
    if hasattr(bar, "set_postfix"):
        bar.set_postfix(**values)


def accuracy_text(accuracy: Any) -> str:
    """``mean +- std %`` over seeds, with the per-seed values."""
    accuracy = 100 * np.asarray(accuracy, dtype=float)
    return (
        f"{accuracy.mean():.2f} +- {accuracy.std():.2f} % over {accuracy.size} seeds "
        f"(per seed {np.round(accuracy, 2).tolist()})"
    )


def machine() -> Dict[str, Any]:
    """The machine a result was measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
    }


def command(script: str, argv: Optional[Sequence[str]]) -> str:
    """The command line that reproduces a run (``argv=None``: this process's arguments)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python", f"examples/{script}"] + arguments)


def write_record(paths: OutputPaths, record: Dict[str, Any]) -> Path:
    """Write the result JSON (creating its folder) and return its path."""
    paths.result.parent.mkdir(parents=True, exist_ok=True)
    paths.result.write_text(json.dumps(record, indent=1) + "\n")
    return paths.result


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (examples save figures, never show)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
