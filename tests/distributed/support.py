"""Helpers for the tests that need several devices or processes: they run scripts in subprocesses.

Imported by the test modules (``sys.path`` holds this directory); not a conftest, so the
scripts started here can import ``workloads`` the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def script_env(devices: Optional[int] = None) -> Dict[str, str]:
    """The environment of a script: this checkout's jaxsnn, CPU only, ``devices`` simulated devices."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["JAX_PLATFORMS"] = "cpu"
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    if devices is not None:
        # must be set before jax is imported, hence a fresh process
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    return env


@pytest.fixture
def run_json_script(tmp_path: Path) -> Callable[..., dict]:
    """``run(script, args, devices, timeout)``: run ``HERE/script OUT.json *args`` and load OUT.json."""

    def run(script: str, args: Sequence[str], devices: Optional[int], timeout: float) -> dict:
        out = tmp_path / f"{Path(script).stem}.json"
        try:
            done = subprocess.run(
                [sys.executable, str(HERE / script), str(out), *args],
                env=script_env(devices), capture_output=True, text=True, timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"{script} did not finish within {timeout} s; its output:\n{error.stdout}\n{error.stderr}")
        if done.returncode != 0 or not out.exists():
            pytest.fail(f"{script} failed (exit code {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return json.loads(out.read_text())

    return run
