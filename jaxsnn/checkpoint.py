"""Checkpoint and resume training with ``orbax-checkpoint`` (optional extra ``[checkpoint]``).

A training state is any pytree of arrays: parameters, optimiser state, PRNG keys (raw
``PRNGKey`` arrays or typed ``jax.random.key`` arrays), the keys that fix the data order.
Python values (the epoch, the loss history, the settings) go into a JSON ``metadata`` dict
saved beside it. Arrays are written bit for bit, so a run restored from the checkpoint of
epoch ``k`` and trained on equals the uninterrupted run bit for bit, provided everything that
the remaining epochs depend on is in the state or the metadata::

    from jaxsnn.checkpoint import Checkpointer

    with Checkpointer("runs/seed0", keep=2) as checkpoints:
        state, first_epoch = initial_state, 0
        if resume and checkpoints.latest_step() is not None:
            state, metadata = checkpoints.restore(like=initial_state)
            first_epoch = metadata["epoch"]
        for epoch in range(first_epoch, epochs):
            state = train_epoch(state)
            checkpoints.save(epoch + 1, state, {"epoch": epoch + 1})

Each checkpoint is written to a temporary directory and renamed when complete, so a process
killed while saving leaves the previous checkpoint intact. In a multi-process run every
process calls ``save`` and ``restore`` with its global arrays (orbax writes each shard once).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import jax

from jaxsnn._validate import positive_int

_MISSING = (
    "jaxsnn.checkpoint needs the optional dependency orbax-checkpoint: "
    "pip install 'jaxsnn[checkpoint]' (or pip install orbax-checkpoint)"
)


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:
        raise ImportError(_MISSING) from error
    return ocp


def _is_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _encode(state: Any) -> Any:
    """Typed PRNG keys as their raw ``uint32`` data (what can be written)."""
    return jax.tree_util.tree_map(lambda leaf: jax.random.key_data(leaf) if _is_key(leaf) else leaf, state)


def _decode(restored: Any, like: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda data, model: jax.random.wrap_key_data(data, impl=jax.random.key_impl(model)) if _is_key(model) else data,
        restored,
        like,
    )


class Checkpointer:
    """Numbered checkpoints of a training state (pytree) and JSON metadata in one directory.

    Args:
        directory: where the checkpoints go (created if missing); one subdirectory per step.
        keep: how many of the latest checkpoints to keep (``None``: all).

    Raises:
        ImportError: if orbax-checkpoint is not installed (with the command that installs it).
        ValueError: if ``keep`` is not a positive integer.
    """

    def __init__(self, directory: Union[str, Path], *, keep: Optional[int] = 2) -> None:
        ocp = _orbax()
        if keep is not None:
            keep = positive_int("keep", keep)
        self.directory = Path(directory).expanduser().resolve()
        self._ocp = ocp
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False),
        )

    def save(self, step: int, state: Any, metadata: Optional[Dict[str, Any]] = None) -> None:
        """Write ``state`` (arrays) and ``metadata`` (JSON) as checkpoint ``step``; returns when complete.

        Args:
            step: the checkpoint's number (e.g. epochs done), an int >= 0, larger than the
                last saved one.
            state: pytree of arrays (jax or NumPy, PRNG keys included).
            metadata: JSON-serialisable dict (epoch, history, settings), or ``None``.

        Raises:
            TypeError: if ``metadata`` is not JSON-serialisable or not a dict.
            ValueError: if ``step`` is negative or not larger than the latest saved step.
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        latest = self.latest_step()
        if latest is not None and step <= latest:
            raise ValueError(f"step {step} is not after the latest checkpoint ({latest}) in {self.directory}")
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as error:
            raise TypeError(f"metadata must be JSON-serialisable (numbers, strings, lists, dicts): {error}") from error
        ocp = self._ocp
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(_encode(state)), metadata=ocp.args.JsonSave(metadata)),
        )
        self._manager.wait_until_finished()

    def latest_step(self) -> Optional[int]:
        """The largest saved step, or ``None`` when the directory holds no checkpoint."""
        self._manager.reload()
        return self._manager.latest_step()

    def all_steps(self) -> List[int]:
        """Every saved (and kept) step, ascending."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def restore(self, like: Any, step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
        """Read checkpoint ``step`` (default: the latest) into the structure of ``like``.

        Args:
            like: a state of the saved structure, shapes and dtypes (e.g. the freshly
                initialised one); restored leaves take its shardings (jax arrays) or come
                back as NumPy arrays (NumPy leaves).
            step: the step to read, or ``None`` for the latest.

        Returns:
            ``(state, metadata)``.

        Raises:
            FileNotFoundError: if the directory holds no checkpoint, or not ``step``.
            ValueError: if the checkpoint does not match ``like``'s structure or shapes.
        """
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(
                f"no checkpoint in {self.directory}: start from scratch, or point to the "
                "directory a previous run saved into"
            )
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise FileNotFoundError(f"no checkpoint {step} in {self.directory}; saved steps: {steps}")
        ocp = self._ocp
        encoded = _encode(like)
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, encoded)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), metadata=ocp.args.JsonRestore()),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"checkpoint {step} in {self.directory} does not match the structure of `like` "
                f"(pass a state built the same way as the saved one): {error}"
            ) from error
        state = restored.state
        if jax.tree_util.tree_structure(state) != jax.tree_util.tree_structure(encoded):
            raise ValueError(
                f"checkpoint {step} in {self.directory} has the structure "
                f"{jax.tree_util.tree_structure(state)}, `like` has {jax.tree_util.tree_structure(encoded)}"
            )
        for saved, model in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(encoded)):
            if tuple(saved.shape) != tuple(jax.numpy.shape(model)):
                raise ValueError(
                    f"checkpoint {step} in {self.directory} holds an array of shape {tuple(saved.shape)} "
                    f"where `like` has {tuple(jax.numpy.shape(model))}"
                )
        return _decode(state, like), dict(restored.metadata or {})

    def close(self) -> None:
        """Finish pending writes and release the directory."""
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


__all__ = ["Checkpointer"]
