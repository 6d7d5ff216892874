"""Checkpoint and resume (``jaxsnn.checkpoint``, orbax-checkpoint).

The main test kills a training process (SIGKILL) after its checkpoint of epoch 2, resumes it
here and compares with an uninterrupted run: parameters, Adam state, PRNG key, every batch
loss and every epoch's sample order must be bitwise equal.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("orbax.checkpoint", reason="needs the [checkpoint] extra (orbax-checkpoint)")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checkpoint_run  # noqa: E402
from support import HERE, script_env  # noqa: E402
from workloads import bitwise_equal  # noqa: E402

from jaxsnn.checkpoint import Checkpointer  # noqa: E402

EPOCHS, KILLED_AFTER = 4, 2


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path):
    killed_dir = tmp_path / "killed"
    done = subprocess.run(
        [sys.executable, str(HERE / "checkpoint_run.py"), str(killed_dir), "--epochs", str(EPOCHS),
         "--kill-after", str(KILLED_AFTER)],
        env=script_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == -signal.SIGKILL, f"the run was not killed (exit code {done.returncode}):\n{done.stderr[-3000:]}"
    with Checkpointer(killed_dir) as checkpoints:
        assert checkpoints.latest_step() == KILLED_AFTER

    state, history, first_epoch = checkpoint_run.run(killed_dir, EPOCHS, resume=True)
    assert first_epoch == KILLED_AFTER  # it did resume, not start again
    reference, reference_history, _ = checkpoint_run.run(tmp_path / "uninterrupted", EPOCHS)

    assert bitwise_equal(state, reference), "resumed state differs from the uninterrupted run"
    assert history == reference_history  # per-batch losses and each epoch's data order
    assert len(history["order"]) == EPOCHS and len(set(map(tuple, history["order"]))) == EPOCHS  # shuffled anew
    initial = checkpoint_run.initial_state()
    assert not bitwise_equal(initial["params"], reference["params"])  # training moved the parameters


def test_restore_keeps_structure_dtypes_keys_and_metadata(tmp_path):
    state = {
        "params": [{"weight": jnp.arange(6.0, dtype=jnp.float32).reshape(2, 3) / 7}, {}],
        "key": jax.random.PRNGKey(3),
        "typed_key": jax.random.key(5),
        "count": jnp.asarray(9, jnp.int32),
        "order": np.arange(5, dtype=np.int64),
    }
    with Checkpointer(tmp_path, keep=2) as checkpoints:
        for step in (1, 2, 3):
            checkpoints.save(step, jax.tree_util.tree_map(lambda x: x, state), {"epoch": step, "note": "x"})
        assert checkpoints.all_steps() == [2, 3]  # keep=2 dropped the oldest
        restored, metadata = checkpoints.restore(like=state)
        older, older_metadata = checkpoints.restore(like=state, step=2)
    assert metadata == {"epoch": 3, "note": "x"} and older_metadata["epoch"] == 2
    assert jax.tree_util.tree_structure(restored) == jax.tree_util.tree_structure(state)
    assert jax.dtypes.issubdtype(restored["typed_key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.key_data(restored["typed_key"]), jax.random.key_data(state["typed_key"]))
    for name in ("key", "count", "order"):
        assert np.asarray(restored[name]).dtype == np.asarray(state[name]).dtype
        np.testing.assert_array_equal(restored[name], state[name])
    assert np.asarray(restored["params"][0]["weight"]).tobytes() == np.asarray(state["params"][0]["weight"]).tobytes()
    # restored keys draw the same numbers
    assert jax.random.uniform(restored["typed_key"]) == jax.random.uniform(state["typed_key"])


def test_checkpointer_errors(tmp_path):
    state = {"weight": jnp.ones((2, 3))}
    with Checkpointer(tmp_path / "empty") as checkpoints:
        with pytest.raises(FileNotFoundError, match="no checkpoint in .*empty: start from scratch"):
            checkpoints.restore(like=state)
        checkpoints.save(1, state)
        with pytest.raises(ValueError, match="step 1 is not after the latest checkpoint \\(1\\)"):
            checkpoints.save(1, state)
        with pytest.raises(ValueError, match="step must be an int >= 0"):
            checkpoints.save(-1, state)
        with pytest.raises(TypeError, match="metadata must be JSON-serialisable"):
            checkpoints.save(2, state, {"weights": np.ones(2)})
        with pytest.raises(FileNotFoundError, match="no checkpoint 7 in .*saved steps: \\[1\\]"):
            checkpoints.restore(like=state, step=7)
        with pytest.raises(ValueError, match="does not match|holds an array of shape"):
            checkpoints.restore(like={"weight": jnp.ones((4,))})
    with pytest.raises(ValueError, match="keep must be a positive integer"):
        Checkpointer(tmp_path / "other", keep=0)


def test_missing_orbax_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)  # import orbax.checkpoint now fails
    with pytest.raises(ImportError, match=r"pip install 'jaxsnn\[checkpoint\]'"):
        Checkpointer(tmp_path)
