"""Build the NIR fixtures of ``tests/nir/fixtures`` and measure who reads whose files.

    python tools/nir_fixtures.py                 # fixtures + interop table (all peers)
    python tools/nir_fixtures.py --only-matrix   # re-measure the table from existing fixtures

Each peer (snnTorch, Norse, Spyx) runs in its benchmark virtual environment
(``benchmarks/.venvs/<peer>``, made by ``python benchmarks/run.py --setup``; ``nir`` and
``nirtorch`` added with the venv's own pip). For every peer this script builds small networks
in the peer itself (feed-forward, recurrent, convolutional; nonzero biases; layers that spike),
exports them with the peer's own NIR writer, simulates them with the peer on a fixed input and
saves, per network, ``<peer>_<net>.nir`` and ``<peer>_<net>.npz`` (input, output, the writer's
time step and the trace of every recorded node under its NIR name). jaxsnn's own fixtures are
written with ``jaxsnn.nir.to_nir``. The tests in ``tests/nir`` compare ``jaxsnn.nir.from_nir``
against these files without any peer installed.

Then every reader (jaxsnn with ``dialect="auto"``, snnTorch's ``import_from_nir``, Norse's
``from_nir``, Spyx's ``from_nir``) loads every file and runs it on the same input; the mismatch
with the writer's own output is written to ``benchmarks/results/nir_interop.{json,md}``.

Worker mode (``--worker <peer>`` / ``--reader <peer>``) runs inside a peer's environment and
imports only that peer, ``nir`` and NumPy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "nir" / "fixtures"
RESULTS = ROOT / "benchmarks" / "results"
VENVS = ROOT / "benchmarks" / ".venvs"
PEERS = ("snntorch", "norse", "spyx")
T = 40
T_CONV = 25
SEED = 0


def fixed_input(shape, t_steps, seed, p=0.3, scale=1.0):
    """The fixture input: Bernoulli spikes (float32), the same for every reader."""
    rng = np.random.RandomState(seed)
    return (rng.rand(t_steps, *shape) < p).astype(np.float32) * np.float32(scale)


def save(name, graph_writer, graph, inputs, output, dt, traces, info, directory=None):
    """Write ``<name>.nir`` and ``<name>.npz``.

    ``traces`` maps NIR node names to ``{"output" | "v" | "current": (T, ...)}``.
    """
    directory = FIXTURES if directory is None else Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Uncompressed HDF5 datasets: a third of the size of nir.write's default gzip chunks for
    # these small arrays (the graph is the writer's own).
    graph_writer(str(directory / f"{name}.nir"), graph, compression=None)
    arrays = {
        "input": np.asarray(inputs, np.float32),
        "output": np.asarray(output, np.float32),
        "dt": np.float64(dt),
    }
    for node, fields in traces.items():
        for field, value in fields.items():
            arrays[f"trace/{node}/{field}"] = np.asarray(value, np.float32)
    arrays["info"] = np.array(json.dumps(info))
    np.savez_compressed(directory / f"{name}.npz", **arrays)
    rates = {k: float(np.mean(v["output"])) for k, v in traces.items() if "output" in v}
    print(f"  {name}: output spikes {float(np.sum(output)):.0f}, node rates {rates}")


# ------------------------------------------------------------------------------------------
# snnTorch


def snntorch_worker():
    import nir
    import snntorch as snn
    import snntorch.utils
    import torch
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(SEED)
    rng = np.random.RandomState(SEED)

    def per_neuron(shape, low, high):
        # snnTorch 1.0 exports scalar beta/threshold as 0-d arrays, which nir 1.0.8's type
        # check rejects; per-neuron tensors export.
        return torch.tensor(rng.uniform(low, high, shape), dtype=torch.float32)

    def scaled_linear(n_in, n_out, gain):
        layer = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            layer.weight.mul_(gain)
            layer.bias.uniform_(-0.2, 0.4)
        return layer

    def simulate(net, x, names):
        snntorch.utils.reset(net)
        for m in net.modules():
            if hasattr(m, "mem"):
                m.mem = torch.zeros(0)
            if hasattr(m, "syn"):
                m.syn = torch.zeros(0)
            if hasattr(m, "spk"):
                m.spk = torch.zeros(0)
        traces = {name: {"output": [], "v": []} for name in names.values() if name}
        outputs = []
        with torch.no_grad():
            for t in range(x.shape[0]):
                h = torch.tensor(x[t][None])
                for index, module in enumerate(net):
                    h = module(h)
                    name = names.get(index)
                    if name:
                        traces[name]["output"].append(h[0].numpy().copy())
                        traces[name]["v"].append(module.mem[0].numpy().copy())
                        if hasattr(module, "syn"):
                            traces[name].setdefault("current", []).append(
                                module.syn[0].numpy().copy()
                            )
                outputs.append(h[0].numpy().copy())
        return np.stack(outputs), {
            k: {f: np.stack(v) for f, v in d.items()} for k, d in traces.items()
        }

    versions = {"snntorch": snn.__version__, "torch": torch.__version__, "nir": nir.version}

    def leaky(shape, **kw):
        # Per-neuron decay; one threshold (snnTorch's importer rejects per-neuron thresholds).
        return snn.Leaky(
            beta=per_neuron(shape, 0.75, 0.95), threshold=torch.ones(shape), init_hidden=True, **kw
        )

    # feed-forward: Linear -> Leaky -> Linear -> Synaptic
    net = torch.nn.Sequential(
        scaled_linear(6, 10, 3.0),
        leaky((10,)),
        scaled_linear(10, 4, 2.5),
        snn.Synaptic(
            alpha=per_neuron((4,), 0.6, 0.85),
            beta=per_neuron((4,), 0.75, 0.9),
            threshold=torch.ones(4),
            init_hidden=True,
        ),
    )
    x = fixed_input((6,), T, SEED + 1)
    graph = export_to_nir(net, torch.zeros(1, 6), ignore_dims=[0])
    out, traces = simulate(net, x, {1: "1", 3: "3"})
    save(
        "snntorch_ff",
        nir.write,
        graph,
        x,
        out,
        1e-4,
        traces,
        {"writer": "snntorch", "net": "Linear-Leaky-Linear-Synaptic", **versions},
    )

    # recurrent: Linear -> RLeaky (all-to-all, biased recurrent Linear) -> Linear -> Leaky
    rleaky = snn.RLeaky(
        beta=per_neuron((10,), 0.75, 0.95),
        threshold=torch.ones(10),
        linear_features=10,
        init_hidden=True,
    )
    with torch.no_grad():
        rleaky.recurrent.weight.mul_(2.0)
        rleaky.recurrent.bias.uniform_(-0.1, 0.2)
    net = torch.nn.Sequential(
        scaled_linear(6, 10, 3.0), rleaky, scaled_linear(10, 4, 6.0), leaky((4,))
    )
    x = fixed_input((6,), T, SEED + 2)
    graph = export_to_nir(net, torch.zeros(1, 6), ignore_dims=[0])
    out, traces = simulate(net, x, {1: "1.lif", 3: "3"})
    save(
        "snntorch_rec",
        nir.write,
        graph,
        x,
        out,
        1e-4,
        traces,
        {"writer": "snntorch", "net": "Linear-RLeaky-Linear-Leaky", **versions},
    )

    # convolutional: Conv2d -> Leaky -> AvgPool2d -> Flatten -> Linear -> Leaky
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(3.0)
        conv.bias.uniform_(-0.1, 0.3)
    net = torch.nn.Sequential(
        conv,
        leaky((4, 8, 8)),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        scaled_linear(64, 5, 6.0),
        leaky((5,)),
    )
    x = fixed_input((2, 8, 8), T_CONV, SEED + 3)
    graph = export_to_nir(net, torch.zeros(1, 2, 8, 8), ignore_dims=[0])
    out, traces = simulate(net, x, {1: "1", 5: "5"})
    save(
        "snntorch_conv",
        nir.write,
        graph,
        x,
        out,
        1e-4,
        traces,
        {"writer": "snntorch", "net": "Conv2d-Leaky-AvgPool2d-Flatten-Linear-Leaky", **versions},
    )


# ------------------------------------------------------------------------------------------
# Norse


def norse_worker():
    import nir
    import norse
    import norse.torch as nt
    import torch

    torch.manual_seed(SEED)
    rng = np.random.RandomState(SEED)

    def uniform(shape, low, high):
        # Norse's default scalar parameters make nir.write fail ("Scalar datasets don't
        # support chunk/filter options"); per-neuron tensors write.
        return torch.tensor(rng.uniform(low, high, shape), dtype=torch.float32)

    def scaled_linear(n_in, n_out, gain):
        layer = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():
            layer.weight.mul_(gain)
            layer.bias.uniform_(-0.5, 1.0)
        return layer

    def lif_p(shape):
        return nt.LIFParameters(
            tau_syn_inv=1.0 / uniform(shape, 4e-3, 6e-3),
            tau_mem_inv=1.0 / uniform(shape, 8e-3, 12e-3),
            v_leak=uniform(shape, 0.0, 0.1),
            v_th=uniform(shape, 0.25, 0.35),
            v_reset=torch.zeros(shape),
        )

    def simulate(modules, x, names):
        states = [None] * len(modules)
        traces = {name: {} for name in names.values()}
        outputs = []
        with torch.no_grad():
            for t in range(x.shape[0]):
                h = torch.tensor(x[t][None])
                for index, module in enumerate(modules):
                    if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                        h = module(h)
                    else:
                        h, states[index] = module(h, states[index])
                    name = names.get(index)
                    if name:
                        rec = traces[name]
                        rec.setdefault("output", []).append(h[0].numpy().copy())
                        rec.setdefault("v", []).append(states[index].v[0].numpy().copy())
                        if hasattr(states[index], "i"):
                            rec.setdefault("current", []).append(states[index].i[0].numpy().copy())
                outputs.append(h[0].numpy().copy())
        return np.stack(outputs), {
            k: {f: np.stack(v) for f, v in d.items()} for k, d in traces.items()
        }

    versions = {"norse": norse.__version__, "torch": torch.__version__, "nir": nir.version}

    # feed-forward: Linear -> LIFCell -> Linear -> LIFBoxCell -> Linear -> LIBoxCell
    modules = [
        scaled_linear(6, 10, 2.0),
        nt.LIFCell(lif_p((10,))),
        scaled_linear(10, 6, 1.5),
        nt.LIFBoxCell(
            nt.LIFBoxParameters(
                tau_mem_inv=1.0 / uniform((6,), 8e-3, 12e-3),
                v_leak=torch.zeros(6),
                v_th=uniform((6,), 0.15, 0.25),
                v_reset=torch.zeros(6),
            )
        ),
        scaled_linear(6, 3, 1.0),
        nt.LIBoxCell(
            nt.LIBoxParameters(tau_mem_inv=1.0 / uniform((3,), 8e-3, 12e-3), v_leak=torch.zeros(3))
        ),
    ]
    net = nt.SequentialState(*modules)
    x = fixed_input((6,), T, SEED + 1)
    graph = nt.to_nir(net, torch.zeros(1, 6))
    out, traces = simulate(modules, x, {1: "1", 3: "3", 5: "5"})
    save(
        "norse_ff",
        nir.write,
        graph,
        x,
        out,
        1e-3,
        traces,
        {"writer": "norse", "net": "Linear-LIFCell-Linear-LIFBoxCell-Linear-LIBoxCell", **versions},
    )

    # convolutional: Conv2d -> LIFCell -> Conv2d(stride 2) -> IAFCell  (Norse writes no Flatten)
    conv1 = torch.nn.Conv2d(2, 4, 3, padding=1)
    conv2 = torch.nn.Conv2d(4, 4, 3, stride=2)
    with torch.no_grad():
        conv1.weight.mul_(3.0)
        conv2.weight.mul_(1.5)
    modules = [
        conv1,
        nt.LIFCell(lif_p((4, 8, 8))),
        conv2,
        nt.IAFCell(
            nt.IAFParameters(v_th=uniform((4, 3, 3), 0.4, 0.6), v_reset=torch.zeros(4, 3, 3))
        ),
    ]
    net = nt.SequentialState(*modules)
    x = fixed_input((2, 8, 8), T_CONV, SEED + 3)
    # Norse writes Conv2d(input_shape=None), which nir.write cannot store; NIR's own type
    # inference fills it in, which needs an unbatched sample (a batched one puts the batch
    # axis into the Input type).
    graph = nt.to_nir(net, torch.zeros(2, 8, 8))
    graph.infer_types()
    out, traces = simulate(modules, x, {1: "1", 3: "3"})
    save(
        "norse_conv",
        nir.write,
        graph,
        x,
        out,
        1e-3,
        traces,
        {
            "writer": "norse",
            "net": "Conv2d-LIFCell-Conv2d-IAFCell",
            "note": "to_nir(net, unbatched sample) + graph.infer_types() before nir.write",
            **versions,
        },
    )

    # recurrent: Norse's writer has no mapping for LIFRecurrentCell; record what it does.
    rec = nt.SequentialState(
        torch.nn.Linear(6, 10), nt.LIFRecurrentCell(10, 10), torch.nn.Linear(10, 3), nt.LIFCell()
    )
    try:
        graph = nt.to_nir(rec, torch.zeros(1, 6))
        kinds = {k: type(v).__name__ for k, v in graph.nodes.items()}
        outcome = f"exported with nodes {kinds}"
        try:
            nir.write(str(FIXTURES / "_norse_rec_probe.nir"), graph)
            outcome += "; nir.write succeeded"
        except Exception as error:  # noqa: BLE001 - recorded, not hidden
            outcome += f"; nir.write failed: {type(error).__name__}: {error}"
        finally:
            (FIXTURES / "_norse_rec_probe.nir").unlink(missing_ok=True)
    except Exception as error:  # noqa: BLE001
        outcome = f"to_nir failed: {type(error).__name__}: {error}"
    (FIXTURES / "norse_rec.unsupported.txt").write_text(
        "Norse 1.1.0 cannot write a recurrent network to NIR: Linear -> LIFRecurrentCell -> "
        f"Linear -> LIFCell gives: {outcome}\n"
    )
    print("  norse_rec:", outcome)


# ------------------------------------------------------------------------------------------
# Spyx


def spyx_worker():
    import jax
    import jax.numpy as jnp
    import nir
    import spyx
    import spyx.nn as snn
    from flax import nnx
    from spyx import nir as spyx_nir

    rngs = nnx.Rngs(SEED)
    rng = np.random.RandomState(SEED)
    dt = 1.0  # Spyx's default in to_nir/from_nir

    def scaled_linear(n_in, n_out, gain):
        layer = nnx.Linear(n_in, n_out, rngs=rngs)
        layer.kernel[...] = layer.kernel[...] * gain
        layer.bias[...] = jnp.asarray(rng.uniform(-0.2, 0.4, n_out), jnp.float32)
        return layer

    def simulate(model, x, names, channels_last_input=False):
        layers = list(model.layers)
        states = [
            layer.initial_state(1) if hasattr(layer, "initial_state") else None for layer in layers
        ]
        traces = {}
        for name in names.values():
            for node in name if isinstance(name, tuple) else (name,):
                traces[node] = {}
        outputs = []
        for t in range(x.shape[0]):
            h = jnp.asarray(x[t][None])
            if channels_last_input:
                h = jnp.transpose(h, (0, 2, 3, 1))
            for index, layer in enumerate(layers):
                if states[index] is None:
                    h = layer(h)
                else:
                    h, states[index] = layer(h, states[index])
                name = names.get(index)
                if name:
                    # (node holding the state, node giving the spikes): PSU_LIF is written as
                    # LI "layer_i" (its membrane) followed by Threshold "layer_i_threshold".
                    state_node, out_node = name if isinstance(name, tuple) else (name, name)
                    state = np.asarray(states[index][0])
                    out = np.asarray(h[0])
                    if isinstance(layer, (snn.CuBaLIF, snn.RCuBaLIF)):
                        v, current = np.split(state, 2, axis=-1)
                        traces[state_node].setdefault("current", []).append(
                            _channels_first(current)
                        )
                    else:
                        v = state
                    traces[state_node].setdefault("v", []).append(_channels_first(v))
                    traces[out_node].setdefault("output", []).append(_channels_first(out))
            outputs.append(_channels_first(np.asarray(h[0])))
        return np.stack(outputs), {
            k: {f: np.stack(v) for f, v in d.items()} for k, d in traces.items()
        }

    versions = {
        "spyx": getattr(spyx, "__version__", "?"),
        "jax": jax.__version__,
        "nir": nir.version,
    }

    # feed-forward: Linear -> LIF -> Linear -> CuBaLIF
    model = snn.Sequential(
        scaled_linear(6, 10, 2.0),
        snn.LIF((10,), rngs=rngs),
        scaled_linear(10, 4, 2.0),
        snn.CuBaLIF((4,), rngs=rngs),
    )
    x = fixed_input((6,), T, SEED + 1)
    graph = spyx_nir.to_nir(model, {"input": np.array([6])}, {"output": np.array([4])}, dt=dt)
    out, traces = simulate(model, x, {1: "layer_1", 3: "layer_3"})
    save(
        "spyx_ff",
        nir.write,
        graph,
        x,
        out,
        dt,
        traces,
        {"writer": "spyx", "net": "Linear-LIF-Linear-CuBaLIF", **versions},
    )

    # recurrent: Linear -> RLIF -> Linear -> PSU_LIF (reset-free; written as LI + Threshold)
    rlif = snn.RLIF((10,), rngs=rngs)
    rlif.recurrent_w[...] = rlif.recurrent_w[...] * 0.5
    model = snn.Sequential(
        scaled_linear(6, 10, 2.0),
        rlif,
        scaled_linear(10, 4, 2.0),
        snn.PSU_LIF((4,), threshold=2.0, rngs=rngs),
    )
    x = fixed_input((6,), T, SEED + 2)
    graph = spyx_nir.to_nir(model, {"input": np.array([6])}, {"output": np.array([4])}, dt=dt)
    out, traces = simulate(
        model, x, {1: "layer_1.layer_1.lif", 3: ("layer_3", "layer_3_threshold")}
    )
    save(
        "spyx_rec",
        nir.write,
        graph,
        x,
        out,
        dt,
        traces,
        {"writer": "spyx", "net": "Linear-RLIF-Linear-PSU_LIF", **versions},
    )

    # convolutional: Conv(SAME) -> LIF -> SumPool -> Flatten -> Linear -> LIF (channels last)
    conv = nnx.Conv(2, 4, (3, 3), padding="SAME", rngs=rngs)
    conv.kernel[...] = conv.kernel[...] * 2.0
    conv.bias[...] = jnp.asarray(rng.uniform(-0.1, 0.3, 4), jnp.float32)
    model = snn.Sequential(
        conv,
        snn.LIF((8, 8, 4), rngs=rngs),
        snn.SumPool((2, 2), (2, 2), "VALID"),
        snn.Flatten(),
        scaled_linear(64, 5, 1.5),
        snn.LIF((5,), rngs=rngs),
    )
    x = fixed_input((2, 8, 8), T_CONV, SEED + 3)
    graph = spyx_nir.to_nir(model, {"input": np.array([2, 8, 8])}, {"output": np.array([5])}, dt=dt)
    out, traces = simulate(model, x, {1: "layer_1", 5: "layer_5"}, channels_last_input=True)
    save(
        "spyx_conv",
        nir.write,
        graph,
        x,
        out,
        dt,
        traces,
        {
            "writer": "spyx",
            "net": "Conv-LIF-SumPool-Flatten-Linear-LIF (channels last)",
            **versions,
        },
    )


def _channels_first(a):
    a = np.asarray(a)
    return np.transpose(a, (2, 0, 1)) if a.ndim == 3 else a


# ------------------------------------------------------------------------------------------
# jaxsnn's own fixtures (main environment)


def jaxsnn_fixtures(targets_dir=None):
    """jaxsnn's networks: the "spec" files go to the fixtures; with ``targets_dir``, the same
    networks written for each peer's importer (``to_nir(..., dialect=peer)``) go there."""
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import stax

    import jaxsnn
    import jaxsnn.nir as jnir
    import nir
    from jaxsnn.discrete import LIF, Conv, Dense, RecurrentLIF

    dt = 1e-3
    key = jax.random.PRNGKey(SEED)
    read_dt = {"spec": dt, "snntorch": 1e-4, "norse": dt, "spyx": dt}

    def run(name, net, in_shape, x, targets, jax_layout_input=None, info=None):
        shape, params = net.init(key, (x.shape[0],) + tuple(in_shape))
        xin = x if jax_layout_input is None else jax_layout_input(x)
        _, out, rec = net.apply(params, jnp.asarray(xin))
        out = np.asarray(out)
        if out.ndim == 4:
            out = np.transpose(out, (0, 3, 1, 2))
        for target in targets:
            graph = jnir.to_nir(net, params, (x.shape[0],) + tuple(in_shape), dt=dt, dialect=target)
            layer, p = jnir.from_nir(graph, dt=read_dt[target])
            _, out2, rec2 = layer.apply(p, jnp.asarray(x))
            if target in ("spec", "snntorch", "norse"):
                assert np.array_equal(np.asarray(out2), out), f"{name} ({target}) differs"
            traces = {
                k: {"output": np.asarray(r.output), "v": np.asarray(r.state.v)}
                for k, r in rec2.items()
                if r.state is not None
            }
            meta = {
                "writer": "jaxsnn",
                "net": info,
                "dialect": target,
                "jaxsnn": jaxsnn.__version__,
                "nir": nir.version,
            }
            if target == "spec":
                save(name, nir.write, graph, x, out, dt, traces, meta)
            elif targets_dir is not None:
                save(
                    f"{name}_for_{target}",
                    nir.write,
                    graph,
                    x,
                    out,
                    read_dt[target],
                    {},
                    meta,
                    directory=targets_dir,
                )

    bias = jax.nn.initializers.uniform(0.4)
    hard = dict(tau_syn=5e-3, tau_mem=1e-2, dt=dt, reset="hard")
    subtract = dict(tau_syn=5e-3, tau_mem=1e-2, dt=dt, reset="subtract")
    net = jaxsnn.serial(
        Dense(10, bias=True, bias_init=bias, weight_scale=3.0),
        LIF(10, project=False, **subtract),
        LIF(4, weight_scale=8.0, **hard),
    )
    run(
        "jaxsnn_ff",
        net,
        (6,),
        fixed_input((6,), T, SEED + 1),
        ["spec"],
        info="Dense(bias)-LIF(subtract)-LIF(hard)",
    )
    net = jaxsnn.serial(
        Dense(10, bias=True, bias_init=bias, weight_scale=3.0),
        LIF(10, project=False, **hard),
        LIF(4, weight_scale=8.0, **hard),
    )
    run(
        "jaxsnn_ffhard",
        net,
        (6,),
        fixed_input((6,), T, SEED + 1),
        ["snntorch", "norse"],
        info="Dense(bias)-LIF(hard)-LIF(hard)",
    )
    net = jaxsnn.serial(
        Dense(10, bias=True, bias_init=bias, weight_scale=3.0),
        LIF(10, project=False, **subtract),
        LIF(4, weight_scale=8.0, **subtract),
    )
    run(
        "jaxsnn_ffsub",
        net,
        (6,),
        fixed_input((6,), T, SEED + 1),
        ["spyx"],
        info="Dense(bias)-LIF(subtract)-LIF(subtract)",
    )
    net = jaxsnn.serial(
        LIF(10, weight_scale=3.0, **hard),
        RecurrentLIF(10, weight_scale=3.0, recurrent_scale=1.0, **hard),
        LIF(4, weight_scale=4.0, **hard),
    )
    run(
        "jaxsnn_rec",
        net,
        (6,),
        fixed_input((6,), T, SEED + 2),
        ["spec", "snntorch", "norse"],
        info="LIF-RecurrentLIF-LIF",
    )
    net = jaxsnn.serial(
        Conv(4, 3, padding="SAME", bias=True, bias_init=bias, weight_scale=3.0),
        LIF((8, 8, 4), project=False, **hard),
        jaxsnn.stateless(stax.Flatten),
        LIF(5, weight_scale=10.0, **hard),
    )
    run(
        "jaxsnn_conv",
        net,
        (8, 8, 2),
        fixed_input((2, 8, 8), T_CONV, SEED + 3),
        ["spec", "snntorch", "norse"],
        jax_layout_input=lambda a: np.transpose(a, (0, 2, 3, 1)),
        info="Conv(bias)-LIF-Flatten-LIF",
    )


# ------------------------------------------------------------------------------------------
# readers: each library's importer on every fixture file


def _read_graph(path):
    """``nir.read`` as a user would call it; if NIR's type check rejects the file, read it
    again without the check (noted in the result) so that the importer itself is measured."""
    import nir

    try:
        return nir.read(str(path)), ""
    except Exception as error:  # noqa: BLE001
        note = f"nir.read type check failed ({type(error).__name__}); read with type_check=False"
        return nir.read(str(path), type_check=False), note


def _quiet(fn, *args):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _load_fixture(path):
    data = np.load(path.with_suffix(".npz"))
    return data["input"], data["output"], float(data["dt"])


def snntorch_reader(paths):
    import torch
    from snntorch.import_nir import import_from_nir

    results = {}
    for path in paths:
        x, _, _ = _load_fixture(path)
        try:
            graph, note = _read_graph(path)
            module = _quiet(import_from_nir, graph)
            outs = []
            with torch.no_grad():
                for t in range(x.shape[0]):
                    out = module(torch.tensor(x[t][None]))
                    out = out[0] if isinstance(out, tuple) else out
                    outs.append(out[0].numpy())
            results[path.stem] = {"output": np.stack(outs).tolist(), "note": note}
        except Exception as error:  # noqa: BLE001 - the error is the measurement
            results[path.stem] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:200]}
    return results


def norse_reader(paths):
    import norse.torch as nt
    import torch

    results = {}
    for path in paths:
        x, _, dt = _load_fixture(path)
        try:
            graph, note = _read_graph(path)
            module = _quiet(lambda g: nt.from_nir(g, dt=dt), graph)
            state = None
            outs = []
            with torch.no_grad():
                for t in range(x.shape[0]):
                    out, state = module(torch.tensor(x[t][None]), state)
                    outs.append(out[0].numpy())
            results[path.stem] = {"output": np.stack(outs).tolist(), "note": note}
        except Exception as error:  # noqa: BLE001
            results[path.stem] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:200]}
    return results


def spyx_reader(paths):
    import jax.numpy as jnp
    from spyx import nir as spyx_nir

    results = {}
    for path in paths:
        x, _, dt = _load_fixture(path)
        try:
            data = x[:, None]
            if data.ndim == 5:  # Spyx runs channels last: (T, B, H, W, C)
                data = np.transpose(data, (0, 1, 3, 4, 2))
            graph, note = _read_graph(path)
            _, out = _quiet(lambda g: spyx_nir.from_nir(g, jnp.asarray(data), dt=dt), graph)
            out = np.asarray(out)[:, 0]
            if out.ndim == 4:
                out = np.transpose(out, (0, 3, 1, 2))
            results[path.stem] = {"output": out.tolist(), "note": note}
        except Exception as error:  # noqa: BLE001
            results[path.stem] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:200]}
    return results


def jaxsnn_reader(paths):
    import jax.numpy as jnp
    import jaxsnn.nir as jnir

    results = {}
    for path in paths:
        x, _, dt = _load_fixture(path)
        try:
            layer, params = jnir.from_nir(str(path), dt=dt, dialect="auto")
            _, out, _ = layer.apply(params, jnp.asarray(x))
            results[path.stem] = {
                "output": np.asarray(out).tolist(),
                "dialect": jnir.detect_dialect(str(path)),
            }
        except Exception as error:  # noqa: BLE001
            results[path.stem] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:200]}
    return results


READERS = {"snntorch": snntorch_reader, "norse": norse_reader, "spyx": spyx_reader}
WORKERS = {"snntorch": snntorch_worker, "norse": norse_worker, "spyx": spyx_worker}


def compare(reference, other):
    """How well ``other`` reproduces ``reference``: for spikes the mismatch
    ``sum|a - b| / (sum|a| + sum|b|)`` (0: identical, 1: disjoint); for membranes (non-binary
    outputs) the largest error relative to the trace's range and whether it is within
    ``rtol=1e-5`` (absolute floor ``1e-6`` of the range)."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        return {"error": f"output shape {other.shape}, the writer's is {reference.shape}"}
    if not np.all(np.isfinite(other)):
        return {"error": "output has NaN/inf"}
    if np.all((reference == 0) | (reference == 1)):
        total = np.abs(reference).sum() + np.abs(other).sum()
        value = float(np.abs(reference - other).sum() / max(total, 1e-12))
        entry = {
            "kind": "spikes",
            "mismatch": value,
            "writer_spikes": float(reference.sum()),
            "reader_spikes": float(other.sum()),
        }
        for shift in range(1, 4):  # identical but later (a reader with per-layer latency)?
            if value > 0 and np.array_equal(other[shift:], reference[:-shift]):
                entry["identical_after_steps"] = shift
                break
        return entry
    scale = float(np.max(np.abs(reference)))
    error = float(np.max(np.abs(reference - other)) / max(scale, 1e-30))
    close = bool(np.allclose(other, reference, rtol=1e-5, atol=1e-6 * scale))
    return {"kind": "membrane", "relative_error": error, "reproduced": close}


def run_in_venv(peer, mode, extra=()):
    python = VENVS / peer / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} not found: run `python benchmarks/run.py --setup` first")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [str(python), str(Path(__file__).resolve()), mode, peer, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    sys.stdout.write(proc.stdout)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{peer} {mode} failed")
    return proc.stdout


def matrix():
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        print("jaxsnn: writing its networks for each peer's importer")
        jaxsnn_fixtures(targets_dir=scratch)
        directories = [str(FIXTURES), scratch]
        paths = sorted(
            (p for d in directories for p in Path(d).glob("*.nir")), key=lambda p: p.stem
        )
        outputs = {}
        for peer in PEERS:
            out_file = Path(scratch) / f"_reader_{peer}.json"
            run_in_venv(peer, "--reader", [str(out_file), *directories])
            outputs[peer] = json.loads(out_file.read_text())
        outputs["jaxsnn"] = jaxsnn_reader(paths)
        table = _table(paths, outputs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nir_interop.json").write_text(json.dumps(table, indent=1) + "\n")
    (RESULTS / "nir_interop.md").write_text(markdown(table))
    print(markdown(table))


def _table(paths, outputs):
    table = {}
    for path in paths:
        _, own, _ = _load_fixture(path)
        row = {}
        for reader, results in outputs.items():
            result = results.get(path.stem, {"error": "not run"})
            if "error" in result:
                row[reader] = {"error": result["error"]}
                continue
            entry = compare(own, result["output"])
            for key in ("dialect", "note"):
                if result.get(key):
                    entry[key] = result[key]
            row[reader] = entry
        table[path.stem] = row
    return table


def _short(error):
    """The gist of an importer's error for a table cell."""
    error = error.replace("|", "/").replace("\n", " ")
    return error[:70] + ("..." if len(error) > 70 else "")


def markdown(table):
    readers = ["jaxsnn", "snntorch", "norse", "spyx"]
    lines = [
        "Each file (row) is read by each library's NIR importer (column) and run on the file's "
        "fixed input; the cell compares the output with the writer's own simulation: spike "
        "mismatch sum|a - b| / (sum|a| + sum|b|) (0 % = identical, 100 % = disjoint), the "
        "membrane error for LI outputs, or why it did not run. Made by "
        "`python tools/nir_fixtures.py`.",
        "",
        "| file (writer_net) | " + " | ".join(readers) + " |",
        "|---|" + "---|" * len(readers),
    ]
    for name, row in table.items():
        cells = []
        for reader in readers:
            entry = row.get(reader, {})
            note = " (type check off)" if entry.get("note") else ""
            if "error" in entry:
                cells.append("fails: " + _short(entry["error"]) + note)
            elif entry["kind"] == "spikes":
                if entry["mismatch"] == 0.0:
                    cells.append("**identical spikes**" + note)
                elif "identical_after_steps" in entry:
                    cells.append(
                        f"identical spikes, {entry['identical_after_steps']} steps later" + note
                    )
                else:
                    cells.append(f"{100 * entry['mismatch']:.0f} % spike mismatch" + note)
            elif entry["reproduced"]:
                cells.append(f"**membrane within 1e-5** ({entry['relative_error']:.0e})" + note)
            else:
                cells.append(f"membrane off by {100 * entry['relative_error']:.3g} %" + note)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=PEERS)
    parser.add_argument("--reader", nargs="+", metavar="PEER OUT DIR")
    parser.add_argument("--only-matrix", action="store_true")
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker]()
        return
    if args.reader:
        peer, out, *directories = args.reader
        paths = sorted(p for d in directories for p in Path(d).glob("*.nir"))
        try:
            results = READERS[peer](paths)
        except Exception:  # noqa: BLE001 - an importer that cannot even be imported
            error = traceback.format_exc().strip().splitlines()[-1]
            results = {p.stem: {"error": error} for p in paths}
        Path(out).write_text(json.dumps(results))
        return
    if not args.only_matrix:
        for peer in PEERS:
            print(f"{peer}: building fixtures")
            run_in_venv(peer, "--worker")
        print("jaxsnn: building fixtures")
        jaxsnn_fixtures()
    matrix()


if __name__ == "__main__":
    main()
