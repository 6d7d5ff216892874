"""Sharded training against one device, on simulated CPU devices (run in a subprocess).

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python sharded_checks.py OUT.json [CHECK ...]

Writes one JSON object with an entry per check (or ``{"error": ...}``); ``test_sharding.py``
asserts on them. The one-device reference is always the plain ``jax.jit`` of the step on
``jax.devices()[0]``, or, for ``chunked_sum``, the same step on a one-device mesh.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import workloads as w  # noqa: E402
from jaxsnn import distributed  # noqa: E402
from jaxsnn import spikes as spikes_lib  # noqa: E402
from jaxsnn.hardware import EmulatedLayer, Emulator, EmulatorConfig, in_the_loop, inject, measure  # noqa: E402
from jaxsnn.event import LIFParameters  # noqa: E402

N_STEPS = 3
# two chunks per device on 4 devices: the ordered sum must span chunks of several devices
CHUNKS = 8


def _pieces(array) -> int:
    """Into how many distinct parts the array is split (1: replicated)."""
    return len({str(shard.index) for shard in array.global_shards})


def _summary(reference, candidate, initial_params) -> dict:
    (p1, s1, losses1, out1), (pn, sn, lossesn, outn) = reference, candidate
    return {
        "bitwise": w.bitwise_equal((p1, s1, losses1, out1), (pn, sn, lossesn, outn)),
        "max_abs_diff_params": w.max_abs_difference(p1, pn),
        "max_abs_diff_outputs": w.max_abs_difference(out1, outn),
        "params_scale": max(float(np.max(np.abs(x))) for x in jax.tree_util.tree_leaves(distributed.to_host(p1))),
        "loss_reference": np.asarray(distributed.to_host(losses1)).tolist(),
        "loss_sharded": np.asarray(distributed.to_host(lossesn)).tolist(),
        "params_moved": w.max_abs_difference(initial_params, p1),
    }


def check_discrete_data_parallel() -> dict:
    net, params, batch = w.discrete_problem()
    opt = w.optimizer()
    step = w.plain_step(w.discrete_sample_loss(net), opt)
    reference = w.train(jax.jit(step), params, opt.init(params), batch, N_STEPS)
    mesh = distributed.device_mesh(4)
    sharded = distributed.data_parallel(step, mesh, batch_argnums=2, batch_outputs=3)
    candidate = w.train(sharded, params, opt.init(params), batch, N_STEPS)
    result = _summary(reference, candidate, params)
    result["output_devices"] = _pieces(candidate[3])
    first_leaf = jax.tree_util.tree_leaves(candidate[0])[0]
    result["params_pieces"] = _pieces(first_leaf)  # replicated: one piece ...
    result["params_devices"] = len(first_leaf.sharding.device_set)  # ... on every device
    result["hidden_spikes"] = float(np.sum(distributed.to_host(reference[3])))
    compiled = sharded.lower(params, opt.init(params), batch).compile()
    result["all_reduce_in_program"] = "all-reduce" in compiled.as_text()
    # the program's inputs: the batch split (not merely its per-sample outputs), the rest replicated
    argument_shardings = compiled.input_shardings[0]
    result["batch_inputs_split"] = [not s.is_fully_replicated for s in jax.tree_util.tree_leaves(argument_shardings[2])]
    result["params_inputs_replicated"] = all(s.is_fully_replicated for s in jax.tree_util.tree_leaves(argument_shardings[0]))
    return result


def check_discrete_chunked() -> dict:
    net, params, batch = w.discrete_problem()
    opt = w.optimizer()
    sample_loss = w.discrete_sample_loss(net)
    runs = {}
    for n in (1, 4):
        mesh = distributed.device_mesh(n)
        step = distributed.data_parallel(
            w.chunked_step(sample_loss, opt, mesh, chunks=CHUNKS), mesh, batch_argnums=2, batch_outputs=3
        )
        runs[n] = w.train(step, params, opt.init(params), batch, N_STEPS)
    result = _summary(runs[1], runs[4], params)
    result["output_devices"] = _pieces(runs[4][3])
    result["hidden_spikes"] = float(np.sum(distributed.to_host(runs[1][3])))
    # the chunked sum against the plain mean: the same maths, summed in another order
    plain = w.train(jax.jit(w.plain_step(sample_loss, opt)), params, opt.init(params), batch, N_STEPS)
    result["max_abs_diff_to_plain"] = w.max_abs_difference(plain[0], runs[1][0])
    return result


def check_discrete_seeds() -> dict:
    """Four seeds trained together (vmap), the seed axis split over four devices."""
    seeds = [w.discrete_problem(seed=s) for s in range(4)]
    net, _, batch = seeds[0]
    params = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *[s[1] for s in seeds])
    opt = w.optimizer()
    opt_state = jax.vmap(opt.init)(params)
    step = jax.jit(jax.vmap(w.plain_step(w.discrete_sample_loss(net), opt), in_axes=(0, 0, None)))
    reference = w.train(step, params, opt_state, batch, N_STEPS)
    mesh = distributed.device_mesh(4)
    placed_params, placed_state = distributed.shard_batch((params, opt_state), mesh)
    candidate = w.train(step, placed_params, placed_state, distributed.replicate(batch, mesh), N_STEPS)
    result = _summary(reference, candidate, params)
    result["params_pieces"] = _pieces(jax.tree_util.tree_leaves(candidate[0])[0])
    result["hidden_spikes"] = float(np.sum(distributed.to_host(reference[3])))
    return result


def _finite_fraction(first) -> float:
    return float(np.mean(np.isfinite(distributed.to_host(first))))


def check_event_chunked() -> dict:
    net, params, batch = w.event_problem()
    opt = w.optimizer()
    sample_loss = w.event_sample_loss(net)
    runs = {}
    for n in (1, 4):
        mesh = distributed.device_mesh(n)
        step = distributed.data_parallel(
            w.chunked_step(sample_loss, opt, mesh, chunks=CHUNKS), mesh, batch_argnums=2, batch_outputs=3
        )
        runs[n] = w.train(step, params, opt.init(params), batch, N_STEPS)
    result = _summary(runs[1], runs[4], params)
    result["output_devices"] = _pieces(runs[4][3])
    result["finite_first_spikes"] = _finite_fraction(runs[1][3])
    return result


class RecordingBackend:
    """An emulated chip that notes the batch size of every call it receives."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.layer_sizes = emulator.layer_sizes
        self.capacities = emulator.capacities
        self.name = "recording emulator"
        self.batch_sizes: list = []

    def run(self, params, input_spikes, trial):
        self.batch_sizes.append(int(np.shape(input_spikes.time)[0]))
        return self.emulator.run(params, input_spikes, trial)


def _hardware_problem():
    net, params, batch = w.event_problem()
    neuron = LIFParameters(tau_syn=5e-3, tau_mem=1e-2, v_th=1.0, t_ref=w.T_MAX)
    layers = [EmulatedLayer(8, neuron, 8, w.T_MAX), EmulatedLayer(w.N_CLASSES, neuron, w.N_CLASSES, w.T_MAX)]
    # trial-to-trial noise keyed by the sample index: a callback that saw only part of the
    # batch would measure different spikes
    config = EmulatorConfig.ideal(threshold_fixed_std=0.05, threshold_trial_std=0.02, jitter_std=1e-4)
    recorder = RecordingBackend(Emulator(layers, config, chip_seed=1))
    # the emulator runs JAX itself: on a device outside the mesh (see backend_on_device)
    return net, params, batch, recorder, distributed.backend_on_device(recorder, jax.devices()[-1])


def _hardware_loss(outputs, labels):
    first = jax.vmap(lambda s: spikes_lib.first_spike_times(s, w.N_CLASSES))(outputs)
    return jnp.mean(jax.vmap(w.first_spike_loss)(first, labels)), first


def check_hardware_data_parallel() -> dict:
    """``in_the_loop`` (a ``pure_callback``) inside a step split over two devices (a third runs the emulator)."""
    net, params, batch, recorder, backend = _hardware_problem()
    opt = w.optimizer()
    apply = in_the_loop(net, backend)

    def step(params, opt_state, batch):
        inputs, labels = batch

        def loss_fn(p):
            outputs, _, _ = apply(p, inputs, 0)
            return _hardware_loss(outputs, labels)

        (loss, first), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, first

    reference = w.train(jax.jit(step), params, opt.init(params), batch, N_STEPS)
    calls_reference = list(recorder.batch_sizes)
    recorder.batch_sizes.clear()
    mesh = distributed.device_mesh(jax.devices()[:2])
    sharded = distributed.data_parallel(step, mesh, batch_argnums=2, batch_outputs=3)
    candidate = w.train(sharded, params, opt.init(params), batch, N_STEPS)
    result = _summary(reference, candidate, params)
    result["callback_batches_reference"] = calls_reference
    result["callback_batches_sharded"] = list(recorder.batch_sizes)
    result["batch"] = int(batch[1].shape[0])
    result["output_devices"] = _pieces(candidate[3])
    result["finite_first_spikes"] = _finite_fraction(reference[3])
    return result


def check_hardware_chunked() -> dict:
    """Measure the whole batch once (callback), then chunked EventProp at the measured times."""
    net, params, batch, recorder, backend = _hardware_problem()
    opt = w.optimizer()
    runs, calls = {}, {}
    for n in (1, 2):
        mesh = distributed.device_mesh(n)
        whole = distributed.replicated(mesh)

        def chunk_terms(params, chunk):
            inputs, labels, measured = chunk

            def chunk_loss(p):
                outputs, _ = inject(net, p, inputs, measured)
                loss, first = _hardware_loss(outputs, labels)
                return loss * labels.shape[0], first

            (loss, first), grads = jax.value_and_grad(chunk_loss, has_aux=True)(params)
            return (loss, grads), first

        summed = distributed.chunked_sum(chunk_terms, mesh, chunks=4)

        def step(params, opt_state, batch, whole=whole, summed=summed):
            inputs, labels = batch
            # replicated operands: the callback runs once on the whole batch, without XLA's
            # "involuntary full rematerialization" warning
            measured, _ = measure(backend, params, jax.lax.with_sharding_constraint(inputs, whole), 0)
            (loss, grads), first = summed(params, (inputs, labels, measured))
            size = labels.shape[0]
            grads = jax.tree_util.tree_map(lambda g: g / size, grads)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss / size, first

        recorder.batch_sizes.clear()
        sharded = distributed.data_parallel(step, mesh, batch_argnums=2, batch_outputs=3)
        runs[n] = w.train(sharded, params, opt.init(params), batch, N_STEPS)
        calls[n] = list(recorder.batch_sizes)
    result = _summary(runs[1], runs[2], params)
    result["callback_batches_reference"] = calls[1]
    result["callback_batches_sharded"] = calls[2]
    result["batch"] = int(batch[1].shape[0])
    result["output_devices"] = _pieces(runs[2][3])
    result["finite_first_spikes"] = _finite_fraction(runs[1][3])
    return result


def check_chunked_transforms() -> dict:
    """``chunked_sum`` under ``jax.grad`` and ``jax.vmap`` on four devices."""
    mesh = distributed.device_mesh(4)
    rng = np.random.default_rng(0)
    weight = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
    batch = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)

    def fn(weight, chunk):
        return jnp.sum(jnp.tanh(chunk @ weight) ** 2), jnp.tanh(chunk @ weight)

    summed = distributed.chunked_sum(fn, mesh, chunks=4)
    grad_sharded = jax.jit(jax.grad(lambda v: summed(v, batch)[0]))(weight)
    grad_plain = jax.jit(jax.grad(lambda v: jnp.sum(jnp.tanh(batch @ v) ** 2)))(weight)
    scales = jnp.asarray([0.5, 1.0, 2.0], jnp.float32)
    vmapped = jax.jit(jax.vmap(lambda s: summed(weight * s, batch)[0]))(scales)
    plain = jnp.stack([jnp.sum(jnp.tanh(batch @ (weight * s)) ** 2) for s in scales])
    return {
        "grad_max_abs_diff": w.max_abs_difference(grad_sharded, grad_plain),
        "grad_scale": float(jnp.max(jnp.abs(grad_plain))),
        "vmap_max_abs_diff": w.max_abs_difference(vmapped, plain),
        "vmap_scale": float(jnp.max(jnp.abs(plain))),
    }


def check_errors() -> dict:
    """The messages of the errors that need several devices to happen."""
    mesh = distributed.device_mesh(4)
    messages = {}

    def message(name, call):
        try:
            call()
        except Exception as error:  # the test checks type and text
            messages[name] = f"{type(error).__name__}: {error}"
        else:
            messages[name] = "no error"

    message("shard_batch", lambda: distributed.shard_batch(np.zeros((6, 2)), mesh))
    message("chunks", lambda: distributed.chunked_sum(lambda s, b: (b.sum(), None), mesh, chunks=6))
    message("device_mesh", lambda: distributed.device_mesh(5))
    step = distributed.data_parallel(lambda p, b: p * b.sum(), mesh, batch_argnums=1)
    message("data_parallel", lambda: step(np.ones(2), np.ones((10, 3))))
    return messages


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY_EXAMPLES = {
    "yinyang_discrete": ["--batch-size", "32", "--hidden", "30", "--steps", "60"],
    # --select validation and --average: the state holds the best epoch and the weight average too
    "yinyang_eventprop": ["--batch-size", "32", "--hidden", "30", "--select", "validation", "--average", "0.5"],
}


def _example(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_example", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _history_difference(a: dict, b: dict) -> float:
    return max(
        float(np.max(np.abs(np.asarray(a[key], np.float64) - np.asarray(b[key], np.float64)), initial=0.0))
        for key in a
    )


def _example_devices_and_resume(name: str, against_one_device: bool) -> dict:
    """``--devices 2`` (against ``--devices 1``); then a run resumed from its epoch-1 checkpoint."""
    import shutil
    import tempfile

    example = _example(name)
    folder = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    base = ["--seeds", "2", "--epochs", "2", "--train-samples", "64", "--no-progress", "--no-plots"] + TINY_EXAMPLES[name]
    two = example.main(base + ["--out-dir", str(folder / "two"), "--devices", "2", "--checkpoint-dir", str(folder / "ck")])
    shutil.rmtree(folder / "ck" / "2")  # as if killed during epoch 2
    resumed = example.main(
        base + ["--out-dir", str(folder / "resumed"), "--devices", "2", "--checkpoint-dir", str(folder / "ck"), "--resume"]
    )
    result = {
        "epochs_recorded": len(next(iter(two["history"].values()))),
        "resumed_from_epoch": [two["resumed_from_epoch"], resumed["resumed_from_epoch"]],
        "resumed_history_equal": resumed["history"] == two["history"],
        "resumed_test_accuracy_equal": resumed["test_accuracy_per_seed"] == two["test_accuracy_per_seed"],
        "first_epoch_loss": np.asarray(two["history"]["loss" if "loss" in two["history"] else "train_loss"][0]).tolist(),
    }
    if against_one_device:
        one = example.main(base + ["--out-dir", str(folder / "one"), "--devices", "1"])
        result["devices_history_max_abs_diff"] = _history_difference(one["history"], two["history"])
        result["devices_test_accuracy"] = [one["test_accuracy_per_seed"], two["test_accuracy_per_seed"]]
    shutil.rmtree(folder)
    return result


def check_example_discrete() -> dict:
    return _example_devices_and_resume("yinyang_discrete", against_one_device=True)


def check_example_eventprop() -> dict:
    # --devices 2 against one device is the discrete example's check (the same seed splitting);
    # here: the EventProp example's larger state (best epoch, weight average) resumes exactly
    return _example_devices_and_resume("yinyang_eventprop", against_one_device=False)


CHECKS = {
    name[len("check_"):]: function
    for name, function in sorted(globals().items())
    if name.startswith("check_") and callable(function)
}


def main(argv) -> None:
    import shutil
    import tempfile

    out, names = Path(argv[0]), argv[1:] or list(CHECKS)
    # a program that several checks (or an example's interrupted and resumed runs) compile
    # alike is compiled once: a persistent cache private to this process
    cache = tempfile.mkdtemp(prefix="jaxsnn_sharded_checks_")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    results = {"devices": len(jax.devices()), "xla_flags": os.environ.get("XLA_FLAGS", "")}
    for name in names:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            results[name] = CHECKS[name]()
        except Exception:  # reported to the test, which fails on it
            results[name] = {"error": traceback.format_exc()}
        results[name]["seconds"] = time.perf_counter() - start
        results[name]["cpu_seconds"] = time.process_time() - cpu
        out.write_text(json.dumps(results, indent=1))
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
