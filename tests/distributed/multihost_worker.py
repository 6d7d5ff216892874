"""One process of a two-process data-parallel run (started by ``test_multihost.py``).

    python multihost_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR

Every process joins the run through ``jax.distributed.initialize`` with the coordinator on
``localhost:PORT``, holds its own consecutive part of the batch, and trains a few steps of a
small discrete network on the mesh of all processes' devices with ``chunked_sum`` inside a
``data_parallel`` step. Process 0 then trains the same network alone, on its own device and the
whole batch, as the one-process reference. Each process writes ``OUT_DIR/process_<id>.json``.
(The plain step partitioned by XLA across processes is covered on simulated devices by
``sharded_checks.py``; here one program per process keeps the test cheap.)
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

N_STEPS = 3
BATCH = 16
CHUNKS = 4


def digest(tree) -> str:
    from jaxsnn import distributed

    leaves = jax.tree_util.tree_leaves(distributed.to_host(tree))
    return hashlib.sha256(b"".join(np.ascontiguousarray(leaf).tobytes() for leaf in leaves)).hexdigest()


def main(argv) -> None:
    process_id, num_processes, port, out_dir = int(argv[0]), int(argv[1]), int(argv[2]), Path(argv[3])
    start = time.perf_counter()
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=60,
    )
    import workloads as w
    from jaxsnn import distributed

    result = {
        "process_id": jax.process_index(),
        "process_count": jax.process_count(),
        "global_devices": len(jax.devices()),
        "local_devices": len(jax.local_devices()),
    }
    net, params, (inputs, labels) = w.discrete_problem(batch=BATCH)
    rows = BATCH // num_processes
    mine = slice(process_id * rows, (process_id + 1) * rows)
    opt = w.optimizer()
    sample_loss = w.discrete_sample_loss(net)

    mesh = distributed.device_mesh()  # every device of every process
    local_batch = distributed.shard_batch((inputs[mine], labels[mine]), mesh, process_local=True)
    result["batch_devices"] = len(local_batch[0].sharding.device_set)
    chunked = distributed.data_parallel(
        w.chunked_step(sample_loss, opt, mesh, CHUNKS), mesh, batch_argnums=2, batch_outputs=3
    )
    trained = w.train(chunked, params, opt.init(params), local_batch, N_STEPS)
    # gathering global arrays is collective: every process does it
    host_chunked = distributed.to_host(trained[:3])
    result["chunked_digest"] = digest(host_chunked)
    result["chunked_losses"] = [float(x) for x in host_chunked[2]]

    if process_id == 0:
        # the one-process reference: this process's device alone, the whole batch
        alone = distributed.device_mesh(jax.local_devices()[:1])
        reference_step = distributed.data_parallel(
            w.chunked_step(sample_loss, opt, alone, CHUNKS), alone, batch_argnums=2, batch_outputs=3
        )
        reference = w.train(reference_step, params, opt.init(params), (inputs, labels), N_STEPS)
        result["reference_digest"] = digest(reference[:3])
        result["reference_losses"] = [float(x) for x in np.asarray(reference[2])]
        result["chunked_bitwise"] = w.bitwise_equal(host_chunked, reference[:3])
        result["chunked_max_abs_diff"] = w.max_abs_difference(host_chunked[0], reference[0])
        result["params_moved"] = w.max_abs_difference(params, reference[0])
        result["hidden_spikes"] = float(np.sum(np.asarray(reference[3])))
    result["seconds"] = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"process_{process_id}.json").write_text(json.dumps(result, indent=1))
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
