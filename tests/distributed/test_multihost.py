"""Two local processes joined by ``jax.distributed`` train data-parallel like one process.

``multihost_worker.py`` runs in two processes (coordinator on ``localhost``, one CPU device
each, half of the batch each) and trains 3 steps with ``chunked_sum``: bitwise equal to process
0 training alone on the whole batch.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from support import HERE, script_env  # noqa: E402

TIMEOUT_S = 300


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def test_two_processes_train_like_one(tmp_path):
    port = _free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, str(HERE / "multihost_worker.py"), str(rank), "2", str(port), str(tmp_path)],
            env=script_env(devices=None), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for rank in range(2)
    ]
    deadline = time.monotonic() + TIMEOUT_S
    outputs = []
    try:
        for process in processes:
            try:
                outputs.append(process.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
            except subprocess.TimeoutExpired:
                pytest.fail(f"the two-process run did not finish within {TIMEOUT_S} s (coordinator port {port})")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for rank, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0, f"process {rank} failed (exit code {process.returncode}):\n{output[-4000:]}"
    results = [json.loads((tmp_path / f"process_{rank}.json").read_text()) for rank in range(2)]

    for rank, result in enumerate(results):
        assert result["process_id"] == rank and result["process_count"] == 2
        assert result["global_devices"] == 2 and result["local_devices"] == 1
        assert result["batch_devices"] == 2  # the batch really is split across the processes
    main = results[0]
    assert main["params_moved"] > 1e-3 and main["hidden_spikes"] > 0  # the comparison compared something
    assert main["chunked_bitwise"], (
        f"chunked_sum over two processes differs from one process by {main['chunked_max_abs_diff']:.3g}"
    )
    assert main["chunked_losses"] == main["reference_losses"]
    assert results[1]["chunked_digest"] == main["reference_digest"]  # process 1 holds the same state
