"""The peer libraries and how to install each into its own virtual environment.

Every peer lives in ``benchmarks/.venvs/<name>`` so that its dependency pins (its own jax or
torch) never touch the jaxsnn environment. ``jaxsnn`` itself runs in the interpreter that
launched the benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

BENCH_DIR = Path(__file__).resolve().parent
VENV_DIR = BENCH_DIR / ".venvs"
TORCH_WHEEL = os.environ.get(
    "JAXSNN_BENCH_TORCH_WHEEL",
    "/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",
)

# name -> pip requirements (installed after torch where ``torch`` is True)
PEERS: Dict[str, Dict] = {
    "jaxsnn-0.3.0": {"pip": ["jaxsnn==0.3.0"], "torch": False, "module": "jaxsnn"},
    "spyx": {"pip": ["spyx"], "torch": False, "module": "spyx"},
    # snnax 0.0.1 declares no dependencies; its imports need jax, equinox, chex, jaxtyping
    "snnax": {"pip": ["snnax", "jax", "equinox", "chex", "jaxtyping"], "torch": False,
              "module": "snnax"},
    "slax": {"pip": ["slax"], "torch": False, "module": "slax"},
    "norse": {"pip": ["norse"], "torch": True, "module": "norse"},
    "snntorch": {"pip": ["snntorch"], "torch": True, "module": "snntorch"},
}


def venv_python(name: str) -> Path:
    """Path of the interpreter of peer ``name``'s virtual environment."""
    return VENV_DIR / name / "bin" / "python"


def status_file(name: str) -> Path:
    """Where the outcome of installing peer ``name`` is recorded (JSON)."""
    return VENV_DIR / f"{name}.setup.json"


def _run(cmd: List[str], log) -> None:
    log.write("$ " + " ".join(cmd) + "\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed with exit code {proc.returncode}: {' '.join(cmd)}")


def setup_peer(name: str, force: bool = False) -> Dict:
    """Create the venv of ``name`` and install the peer; return a status dict (never raises)."""
    import json

    spec = PEERS[name]
    VENV_DIR.mkdir(parents=True, exist_ok=True)
    out = status_file(name)
    if out.exists() and not force:
        status = json.loads(out.read_text())
        if status.get("ok") and venv_python(name).exists():
            return status
    log_path = VENV_DIR / f"{name}.setup.log"
    start = time.time()
    status: Dict = {"name": name, "ok": False, "error": None, "versions": {}}
    with open(log_path, "w") as log:
        try:
            _run([sys.executable, "-m", "venv", "--clear", str(VENV_DIR / name)], log)
            py = str(venv_python(name))
            _run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], log)
            extra: List[str] = []
            if spec["torch"]:
                _run([py, "-m", "pip", "install", "--quiet", TORCH_WHEEL], log)
                # Keep the offline CPU build: without the pin a dependency such as torchvision
                # pulls the newest torch (a multi-GB CUDA build) from the registry.
                constraints = VENV_DIR / f"{name}.constraints.txt"
                constraints.write_text(f"torch=={_wheel_version(TORCH_WHEEL)}\n")
                extra = ["-c", str(constraints)]
            _run([py, "-m", "pip", "install", "--quiet", *extra, *spec["pip"], "numpy", "psutil"],
                 log)
            status["versions"] = installed_versions(name)
            status["ok"] = True
            probe = subprocess.run([py, "-c", f"import {spec['module']}"], capture_output=True,
                                   text=True, cwd=str(VENV_DIR))
            if probe.returncode != 0:  # installed, but the workers will record the failure
                status["import_error"] = probe.stderr.strip().splitlines()[-1][:500]
        except Exception as exc:  # recorded, never dropped: the run reports the failure
            status["error"] = f"{type(exc).__name__}: {exc}; tail of log: {_tail(log_path)}"
    status["seconds"] = round(time.time() - start, 1)
    status["log"] = str(log_path.relative_to(BENCH_DIR))
    out.write_text(json.dumps(status, indent=1))
    return status


def _wheel_version(path: str) -> str:
    """``torch-2.13.0+cpu-cp311-...whl`` -> ``2.13.0`` (the local label is matched by ==)."""
    return Path(path).name.split("-")[1].split("+")[0]


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text().strip().splitlines()[-lines:])
    except OSError:
        return ""


def installed_versions(name: str) -> Dict[str, str]:
    """Versions of the relevant packages inside the venv of ``name``."""
    py = str(venv_python(name))
    code = (
        "import importlib.metadata as m, json\n"
        "out = {}\n"
        "for p in ['jaxsnn','spyx','snnax','slax','norse','snntorch','jax','jaxlib','torch',"
        "'dm-haiku','equinox','flax','numpy','optax']:\n"
        "    try: out[p] = m.version(p)\n"
        "    except Exception: pass\n"
        "print(json.dumps(out))\n"
    )
    import json

    res = subprocess.run(
        [py, "-c", code], capture_output=True, text=True, check=True, cwd=str(VENV_DIR)
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def peer_status(name: str) -> Optional[Dict]:
    """The recorded setup status of ``name``, or None if setup never ran."""
    import json

    path = status_file(name)
    if not path.exists():
        return None
    return json.loads(path.read_text())


if __name__ == "__main__":
    names = sys.argv[1:] or list(PEERS)
    for n in names:
        s = setup_peer(n, force=True)
        print(n, "ok" if s["ok"] else s["error"], s.get("versions"), flush=True)
