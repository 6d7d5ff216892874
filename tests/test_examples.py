"""The example scripts run end to end (a tiny run), write only to their output folder, and
``--record`` writes exactly the committed result and figure files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
NAMES = ("yinyang_discrete", "yinyang_analytic", "yinyang_eventprop", "yinyang_hardware")
# the smallest runs that still train: one epoch on two batches, one seed
TINY = {
    "yinyang_discrete": [
        "--batch-size",
        "32",
        "--hidden",
        "30",
        "--steps",
        "60",
        "--t-max",
        "2.5e-2",
    ],
    "yinyang_analytic": ["--batch-size", "32", "--hidden", "30"],
    "yinyang_hardware": [
        "--batch-size",
        "32",
        "--hidden",
        "30",
        "--skip-software",
    ],  # the software phase: same code
}


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_record_paths_are_the_committed_files():
    common = load("_common")
    committed_figures = {path.name for path in (EXAMPLES / "figures").glob("yinyang_*.png")}
    written = set()
    for name in NAMES:
        paths = common.output_paths(name, record=True)
        assert paths.result == REPO / "benchmarks" / "results" / f"{name}.json"
        assert paths.result.is_file(), f"{paths.result} is not committed"
        assert paths.figures == EXAMPLES / "figures"
        written |= {paths.figure(name, kind).name for kind in load(name).FIGURES}
    assert written == committed_figures


def test_default_output_folder_is_untracked():
    common = load("_common")
    assert common.output_paths("x").result == REPO / "outputs" / "x.json"
    assert "/outputs/" in (REPO / ".gitignore").read_text().splitlines()
    paths = common.output_paths("x", out_dir=Path("/tmp/somewhere"))
    assert paths.result == Path("/tmp/somewhere/x.json") and paths.figures == Path("/tmp/somewhere")


def test_init_seeds_equals_one_init_per_seed():
    common = load("_common")
    example = load("yinyang_eventprop")
    init, _ = example.build_network(example.Config(hidden=7))
    stacked = common.init_seeds(init, [3, 5], (5,))
    for position, seed in enumerate((3, 5)):
        _, params = init(jax.random.PRNGKey(seed), (5,))
        for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(stacked)):
            np.testing.assert_array_equal(a, b[position])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    # The chip-in-the-loop example (two training phases on the emulator) runs with -m extended;
    # its training loop is tested in tests/hardware/test_loop.py.
    [
        pytest.param(name, marks=pytest.mark.extended) if name == "yinyang_hardware" else name
        for name in NAMES
        if name != "yinyang_eventprop"
    ],
)
def test_example_runs_end_to_end(name, tmp_path, capsys):
    # (yinyang_eventprop runs end to end in tests/event/test_eventprop_yinyang.py)
    example = load(name)
    argv = [
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--train-samples",
        "64",
        "--out-dir",
        str(tmp_path),
        "--no-progress",
    ] + TINY[name]
    record = example.main(argv)
    written = {path.name for path in tmp_path.iterdir()}
    assert written == {f"{name}.json"} | {f"{name}_{kind}.png" for kind in example.FIGURES}
    for figure in example.FIGURES:
        assert (tmp_path / f"{name}_{figure}.png").stat().st_size > 5000  # a drawn figure
    saved = json.loads((tmp_path / f"{name}.json").read_text())
    assert saved["command"] == "python examples/" + f"{name}.py " + " ".join(argv)
    assert saved["seeds"] == [0] and saved["epochs"] == 1
    accuracy = saved["test_accuracy_per_seed"]
    assert len(accuracy) == 1 and 0.0 <= accuracy[0] <= 1.0
    assert record["test_accuracy_mean"] == pytest.approx(accuracy[0])
    if name == "yinyang_hardware":
        assert set(saved["results"]) == {"in_the_loop"}
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["yinyang_discrete", "yinyang_eventprop"])
def test_scaling_arguments_are_checked(name, capsys):
    example = load(name)
    run = example.parse_args if name == "yinyang_discrete" else example.main
    with pytest.raises(SystemExit):
        run(["--resume"])
    assert "--resume needs --checkpoint-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["--seeds", "3", "--devices", "2"])
    assert "--seeds 3 cannot be split evenly over --devices 2: use a multiple of 2 seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["--devices", "0"])
    assert "--devices must be >= 1, got 0" in capsys.readouterr().err


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    pytest.importorskip("orbax.checkpoint", reason="needs the [checkpoint] extra (orbax-checkpoint)")
    common = load("_common")
    state = {"weight": np.arange(3, dtype=np.float32)}
    saved = common.EpochCheckpoints(tmp_path, resume=False, settings={"seeds": 2, "lr": 0.01})
    saved.save(1, state, {"loss": [[1.0, 2.0]]}, wall_time_s=3.0)
    saved.close()
    same = common.EpochCheckpoints(tmp_path, resume=True, settings={"seeds": 2, "lr": 0.01})
    restored, history, first_epoch, wall = same.start({"weight": np.zeros(3, np.float32)}, {"loss": []})
    same.close()
    np.testing.assert_array_equal(restored["weight"], state["weight"])
    assert (history, first_epoch, wall) == ({"loss": [[1.0, 2.0]]}, 1, 3.0)
    other = common.EpochCheckpoints(tmp_path, resume=True, settings={"seeds": 2, "lr": 0.02})
    with pytest.raises(SystemExit, match=r"other settings \(lr: 0.01 there, 0.02 now\); resume with the same settings"):
        other.start(state, {"loss": []})
    other.close()
