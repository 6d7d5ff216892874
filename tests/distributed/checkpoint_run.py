"""A small training run that checkpoints every epoch and can resume (used by ``test_checkpoint.py``).

    python checkpoint_run.py DIRECTORY --epochs 4 [--resume] [--kill-after K]

State: parameters, Adam state and the PRNG key that draws every epoch's data order; metadata:
the epoch and the history (per-batch losses and each epoch's sample order). With
``--kill-after K`` the process sends itself SIGKILL right after checkpoint ``K`` was written,
while the next epoch is being computed, as an interrupted job would die.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import workloads as w  # noqa: E402
from jaxsnn.checkpoint import Checkpointer  # noqa: E402
from jaxsnn.data import epoch_batches  # noqa: E402

N_SAMPLES, BATCH_SIZE = 24, 8


@functools.lru_cache(maxsize=None)
def _functions() -> Tuple[Any, Any, Any]:
    net, params, (inputs, labels) = w.discrete_problem(batch=N_SAMPLES)
    opt = w.optimizer()
    step = w.plain_step(w.discrete_sample_loss(net), opt)
    index = np.arange(N_SAMPLES, dtype=np.int32)

    def epoch(params: Any, opt_state: Any, key: jax.Array) -> Tuple[Any, Any, jax.Array, jax.Array]:
        (batch_inputs, batch_labels, order), _ = epoch_batches((inputs, labels, index), BATCH_SIZE, key)

        def body(carry: Any, batch: Any) -> Tuple[Any, jax.Array]:
            params, opt_state, loss, _ = step(*carry, batch)
            return (params, opt_state), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (batch_inputs, batch_labels))
        return params, opt_state, losses, order.reshape(-1)

    return params, opt, jax.jit(epoch)


def initial_state() -> Dict[str, Any]:
    params, opt, _ = _functions()
    return {"params": params, "opt_state": opt.init(params), "key": jax.random.PRNGKey(7)}


def run(
    directory: Path, epochs: int, *, resume: bool = False, kill_after: Optional[int] = None
) -> Tuple[Dict[str, Any], Dict[str, list], int]:
    """Train ``epochs`` epochs (from the latest checkpoint with ``resume``).

    Returns:
        ``(state, history, first_epoch)``: the final state, the history of all epochs (restored
        ones included) and the epoch this process started at.
    """
    _, _, epoch_fn = _functions()
    state = initial_state()
    history: Dict[str, list] = {"loss": [], "order": []}
    first_epoch = 0
    with Checkpointer(directory, keep=2) as checkpoints:
        if resume and checkpoints.latest_step() is not None:
            state, metadata = checkpoints.restore(like=state)
            first_epoch, history = metadata["epoch"], metadata["history"]
        for epoch in range(first_epoch, epochs):
            key, epoch_key = jax.random.split(state["key"])
            params, opt_state, losses, order = epoch_fn(state["params"], state["opt_state"], epoch_key)
            state = {"params": params, "opt_state": opt_state, "key": key}
            history["loss"].append(np.asarray(losses).tolist())
            history["order"].append(np.asarray(order).tolist())
            checkpoints.save(epoch + 1, state, {"epoch": epoch + 1, "history": history})
            if kill_after == epoch + 1:
                key, epoch_key = jax.random.split(key)
                epoch_fn(params, opt_state, epoch_key)  # the next epoch is under way ...
                os.kill(os.getpid(), signal.SIGKILL)  # ... when the job dies
    return state, history, first_epoch


def main(argv: list) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-after", type=int, default=None)
    args = parser.parse_args(argv)
    run(args.directory, args.epochs, resume=args.resume, kill_after=args.kill_after)


if __name__ == "__main__":
    main(sys.argv[1:])
