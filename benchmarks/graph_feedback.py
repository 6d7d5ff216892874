"""Feedback across layers, step by step: jaxsnn's graph against the peers that can run it.

Workload ``feedback`` (``graph_common.py``): two LIF layers of the ``mlp2048`` benchmark neuron
where layer 1 also receives layer 2's spikes of the previous step. Each library runs in its own
process (peers in their virtual environments under ``benchmarks/.venvs``, see ``run.py --setup``)
and reports forward and forward+backward (BPTT, loss = sum of layer 2's spikes) times after
warm-up:

* ``jaxsnn``: ``jaxsnn.graph.discrete_graph`` (the cycle in one ``lax.scan``);
* ``jax (hand-written)``: one ``lax.scan`` written by hand;
* ``slax``: ``slax.RNN(slax.connect(..., p={0: [3]}))``;
* ``snntorch``, ``norse``: a Python loop over time steps, written by hand;
* ``snnax``: its graph runner (0.0.1 does not import; the failure is recorded).

    python benchmarks/graph_feedback.py            # default size (T=100, batch 32, 512 neurons)
    python benchmarks/graph_feedback.py --tiny     # a few steps: checks that everything runs
    python benchmarks/graph_feedback.py --final    # on a quiet machine: not marked preliminary

Writes ``benchmarks/results/graph_feedback.{json,md,png}`` (``--results`` for elsewhere).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import run  # noqa: E402
from graph_common import FEEDBACK, TINY_FEEDBACK  # noqa: E402

GRAPH_LIBRARIES = {
    "jaxsnn": {"worker": "w_graph_jaxsnn.py", "venv": None},
    "jax (hand-written)": {"worker": "w_graph_jax.py", "venv": None},
    "slax": {"worker": "w_graph_slax.py", "venv": "slax"},
    "snntorch": {"worker": "w_graph_snntorch.py", "venv": "snntorch"},
    "norse": {"worker": "w_graph_norse.py", "venv": "norse"},
    "snnax": {"worker": "w_graph_snnax.py", "venv": "snnax"},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (smoke run)")
    ap.add_argument("--final", action="store_true", help="quiet machine: do not mark as preliminary")
    ap.add_argument("--libs", nargs="*", default=list(GRAPH_LIBRARIES), choices=list(GRAPH_LIBRARIES))
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--hidden", type=int, default=None, help="override the layer size (and n_in)")
    ap.add_argument("--results", default=str(BENCH_DIR / "results"))
    args = ap.parse_args(argv)
    cfg = dict(TINY_FEEDBACK if args.tiny else FEEDBACK, iterations=args.iterations, warmup=2)
    if args.hidden:
        cfg.update(hidden=args.hidden, n_in=args.hidden)
    run.LIBRARIES.update(GRAPH_LIBRARIES)  # the feedback workers, run by run.py's runner
    run.RESULTS = Path(args.results)
    run.run_workload("graph_feedback", "feedback", cfg, args.libs, args.timeout, not args.final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
