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


def save(name, graph_writer, graph, inputs, output, dt, traces, info):
    """Write ``<name>.nir`` and ``<name>.npz`` (traces: {node: {"output"/"v"/"current": (T, ...)}})."""
    FIXTURES.mkdir(parents=True, exist_ok=True)
    # Uncompressed HDF5 datasets: a third of the size of nir.write's default gzip chunks for
    # these small arrays (the graph is the writer's own).
    graph_writer(str(FIXTURES / f"{name}.nir"), graph, compression=None)
    arrays = {"input": np.asarray(inputs, np.float32), "output": np.asarray(output, np.float32),
              "dt": np.float64(dt)}
    for node, fields in traces.items():
        for field, value in fields.items():
            arrays[f"trace/{node}/{field}"] = np.asarray(value, np.float32)
    arrays["info"] = np.array(json.dumps(info))
    np.savez_compressed(FIXTURES / f"{name}.npz", **arrays)
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
                            traces[name].setdefault("current", []).append(module.syn[0].numpy().copy())
                outputs.append(h[0].numpy().copy())
        return np.stack(outputs), {k: {f: np.stack(v) for f, v in d.items()} for k, d in traces.items()}

    versions = {"snntorch": snn.__version__, "torch": torch.__version__, "nir": nir.version}

    def leaky(shape, **kw):
        return snn.Leaky(beta=per_neuron(shape, 0.75, 0.95), threshold=per_neuron(shape, 0.8, 1.2),
                         init_hidden=True, **kw)

    # feed-forward: Linear -> Leaky -> Linear -> Synaptic
    net = torch.nn.Sequential(
        scaled_linear(6, 10, 3.0), leaky((10,)), scaled_linear(10, 4, 2.5),
        snn.Synaptic(alpha=per_neuron((4,), 0.6, 0.85), beta=per_neuron((4,), 0.75, 0.9),
                     threshold=per_neuron((4,), 0.8, 1.2), init_hidden=True),
    )
    x = fixed_input((6,), T, SEED + 1)
    graph = export_to_nir(net, torch.zeros(1, 6), ignore_dims=[0])
    out, traces = simulate(net, x, {1: "1", 3: "3"})
    save("snntorch_ff", nir.write, graph, x, out, 1e-4, traces,
         {"writer": "snntorch", "net": "Linear-Leaky-Linear-Synaptic", **versions})

    # recurrent: Linear -> RLeaky (all-to-all, biased recurrent Linear) -> Linear -> Leaky
    rleaky = snn.RLeaky(beta=per_neuron((10,), 0.75, 0.95), threshold=per_neuron((10,), 0.8, 1.2),
                        linear_features=10, init_hidden=True)
    with torch.no_grad():
        rleaky.recurrent.weight.mul_(2.0)
        rleaky.recurrent.bias.uniform_(-0.1, 0.2)
    net = torch.nn.Sequential(scaled_linear(6, 10, 3.0), rleaky, scaled_linear(10, 4, 4.0),
                              leaky((4,)))
    x = fixed_input((6,), T, SEED + 2)
    graph = export_to_nir(net, torch.zeros(1, 6), ignore_dims=[0])
    out, traces = simulate(net, x, {1: "1.lif", 3: "3"})
    save("snntorch_rec", nir.write, graph, x, out, 1e-4, traces,
         {"writer": "snntorch", "net": "Linear-RLeaky-Linear-Leaky", **versions})

    # convolutional: Conv2d -> Leaky -> AvgPool2d -> Flatten -> Linear -> Leaky
    conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    with torch.no_grad():
        conv.weight.mul_(3.0)
        conv.bias.uniform_(-0.1, 0.3)
    net = torch.nn.Sequential(conv, leaky((4, 8, 8)), torch.nn.AvgPool2d(2), torch.nn.Flatten(),
                              scaled_linear(64, 5, 6.0), leaky((5,)))
    x = fixed_input((2, 8, 8), T_CONV, SEED + 3)
    graph = export_to_nir(net, torch.zeros(1, 2, 8, 8), ignore_dims=[0])
    out, traces = simulate(net, x, {1: "1", 5: "5"})
    save("snntorch_conv", nir.write, graph, x, out, 1e-4, traces,
         {"writer": "snntorch", "net": "Conv2d-Leaky-AvgPool2d-Flatten-Linear-Leaky", **versions})


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
            tau_syn_inv=1.0 / uniform(shape, 4e-3, 6e-3), tau_mem_inv=1.0 / uniform(shape, 8e-3, 12e-3),
            v_leak=uniform(shape, 0.0, 0.1), v_th=uniform(shape, 0.25, 0.35),
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
        return np.stack(outputs), {k: {f: np.stack(v) for f, v in d.items()} for k, d in traces.items()}

    versions = {"norse": norse.__version__, "torch": torch.__version__, "nir": nir.version}

    # feed-forward: Linear -> LIFCell -> Linear -> LIFBoxCell -> Linear -> LIBoxCell
    modules = [
        scaled_linear(6, 10, 2.0), nt.LIFCell(lif_p((10,))), scaled_linear(10, 6, 1.5),
        nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=1.0 / uniform((6,), 8e-3, 12e-3),
                                          v_leak=torch.zeros(6), v_th=uniform((6,), 0.15, 0.25),
                                          v_reset=torch.zeros(6))),
        scaled_linear(6, 3, 1.0),
        nt.LIBoxCell(nt.LIBoxParameters(tau_mem_inv=1.0 / uniform((3,), 8e-3, 12e-3),
                                        v_leak=torch.zeros(3))),
    ]
    net = nt.SequentialState(*modules)
    x = fixed_input((6,), T, SEED + 1)
    graph = nt.to_nir(net, torch.zeros(1, 6))
    out, traces = simulate(modules, x, {1: "1", 3: "3", 5: "5"})
    save("norse_ff", nir.write, graph, x, out, 1e-3, traces,
         {"writer": "norse", "net": "Linear-LIFCell-Linear-LIFBoxCell-Linear-LIBoxCell", **versions})

    # convolutional: Conv2d -> LIFCell -> Conv2d(stride 2) -> IAFCell  (Norse writes no Flatten)
    conv1 = torch.nn.Conv2d(2, 4, 3, padding=1)
    conv2 = torch.nn.Conv2d(4, 4, 3, stride=2)
    with torch.no_grad():
        conv1.weight.mul_(3.0)
        conv2.weight.mul_(1.5)
    modules = [conv1, nt.LIFCell(lif_p((4, 8, 8))), conv2,
               nt.IAFCell(nt.IAFParameters(v_th=uniform((4, 3, 3), 0.4, 0.6),
                                           v_reset=torch.zeros(4, 3, 3)))]
    net = nt.SequentialState(*modules)
    x = fixed_input((2, 8, 8), T_CONV, SEED + 3)
    # Norse writes Conv2d(input_shape=None), which nir.write cannot store; NIR's own type
    # inference fills it in, which needs an unbatched sample (a batched one puts the batch
    # axis into the Input type).
    graph = nt.to_nir(net, torch.zeros(2, 8, 8))
    graph.infer_types()
    out, traces = simulate(modules, x, {1: "1", 3: "3"})
    save("norse_conv", nir.write, graph, x, out, 1e-3, traces,
         {"writer": "norse", "net": "Conv2d-LIFCell-Conv2d-IAFCell",
          "note": "to_nir(net, unbatched sample) + graph.infer_types() before nir.write",
          **versions})

    # recurrent: Norse's writer has no mapping for LIFRecurrentCell; record what it does.
    rec = nt.SequentialState(torch.nn.Linear(6, 10), nt.LIFRecurrentCell(10, 10),
                             torch.nn.Linear(10, 3), nt.LIFCell())
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
        states = [layer.initial_state(1) if hasattr(layer, "initial_state") else None
                  for layer in layers]
        traces = {name: {} for name in names.values()}
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
                    state = np.asarray(states[index][0])
                    out = np.asarray(h[0])
                    rec = traces[name]
                    if isinstance(layer, (snn.CuBaLIF, snn.RCuBaLIF)):
                        v, current = np.split(state, 2, axis=-1)
                        rec.setdefault("current", []).append(_channels_first(current))
                    else:
                        v = state
                    rec.setdefault("v", []).append(_channels_first(v))
                    rec.setdefault("output", []).append(_channels_first(out))
            outputs.append(_channels_first(np.asarray(h[0])))
        return np.stack(outputs), {k: {f: np.stack(v) for f, v in d.items()} for k, d in traces.items()}

    versions = {"spyx": getattr(spyx, "__version__", "?"), "jax": jax.__version__, "nir": nir.version}

    # feed-forward: Linear -> LIF -> Linear -> CuBaLIF
    model = snn.Sequential(scaled_linear(6, 10, 2.0), snn.LIF((10,), rngs=rngs),
                           scaled_linear(10, 4, 2.0), snn.CuBaLIF((4,), rngs=rngs))
    x = fixed_input((6,), T, SEED + 1)
    graph = spyx_nir.to_nir(model, {"input": np.array([6])}, {"output": np.array([4])}, dt=dt)
    out, traces = simulate(model, x, {1: "layer_1", 3: "layer_3"})
    save("spyx_ff", nir.write, graph, x, out, dt, traces,
         {"writer": "spyx", "net": "Linear-LIF-Linear-CuBaLIF", **versions})

    # recurrent: Linear -> RLIF -> Linear -> LIF
    rlif = snn.RLIF((10,), rngs=rngs)
    rlif.recurrent_w[...] = rlif.recurrent_w[...] * 0.5
    model = snn.Sequential(scaled_linear(6, 10, 2.0), rlif, scaled_linear(10, 4, 2.0),
                           snn.LIF((4,), rngs=rngs))
    x = fixed_input((6,), T, SEED + 2)
    graph = spyx_nir.to_nir(model, {"input": np.array([6])}, {"output": np.array([4])}, dt=dt)
    out, traces = simulate(model, x, {1: "layer_1.layer_1.lif", 3: "layer_3"})
    save("spyx_rec", nir.write, graph, x, out, dt, traces,
         {"writer": "spyx", "net": "Linear-RLIF-Linear-LIF", **versions})

    # convolutional: Conv(SAME) -> LIF -> SumPool -> Flatten -> Linear -> LIF (channels last)
    conv = nnx.Conv(2, 4, (3, 3), padding="SAME", rngs=rngs)
    conv.kernel[...] = conv.kernel[...] * 2.0
    conv.bias[...] = jnp.asarray(rng.uniform(-0.1, 0.3, 4), jnp.float32)
    model = snn.Sequential(conv, snn.LIF((8, 8, 4), rngs=rngs), snn.SumPool((2, 2), (2, 2), "VALID"),
                           snn.Flatten(), scaled_linear(64, 5, 1.5), snn.LIF((5,), rngs=rngs))
    x = fixed_input((2, 8, 8), T_CONV, SEED + 3)
    graph = spyx_nir.to_nir(model, {"input": np.array([2, 8, 8])}, {"output": np.array([5])}, dt=dt)
    out, traces = simulate(model, x, {1: "layer_1", 5: "layer_5"}, channels_last_input=True)
    save("spyx_conv", nir.write, graph, x, out, dt, traces,
         {"writer": "spyx", "net": "Conv-LIF-SumPool-Flatten-Linear-LIF (channels last)",
          **versions})


def _channels_first(a):
    a = np.asarray(a)
    return np.transpose(a, (2, 0, 1)) if a.ndim == 3 else a


# ------------------------------------------------------------------------------------------
# jaxsnn's own fixtures (main environment)


def jaxsnn_fixtures():
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import stax

    import jaxsnn
    import jaxsnn.nir as jnir
    import nir
    from jaxsnn.discrete import LIF, Conv, Dense, RecurrentLIF

    dt = 1e-3
    key = jax.random.PRNGKey(SEED)

    def run(name, net, in_shape, x, jax_layout_input=None, info=None):
        shape, params = net.init(key, (x.shape[0],) + tuple(in_shape))
        graph = jnir.to_nir(net, params, (x.shape[0],) + tuple(in_shape), dt=dt)
        xin = x if jax_layout_input is None else jax_layout_input(x)
        _, out, rec = net.apply(params, jnp.asarray(xin))
        layer, p = jnir.from_nir(graph, dt=dt)
        _, out2, rec2 = layer.apply(p, jnp.asarray(x))
        out = np.asarray(out)
        if out.ndim == 4:
            out = np.transpose(out, (0, 3, 1, 2))
        assert np.array_equal(np.asarray(out2), out), f"{name}: round trip differs"
        traces = {k: {"output": np.asarray(r.output), "v": np.asarray(r.state.v)}
                  for k, r in rec2.items() if r.state is not None}
        save(name, nir.write, graph, x, out, dt, traces,
             {"writer": "jaxsnn", "net": info, "jaxsnn": jaxsnn.__version__, "nir": nir.version})

    kw = dict(tau_syn=5e-3, tau_mem=1e-2, dt=dt)
    bias = jax.nn.initializers.uniform(0.4)
    net = jaxsnn.serial(Dense(10, bias=True, bias_init=bias, weight_scale=3.0),
                        LIF(10, project=False, **kw),
                        LIF(4, weight_scale=8.0, reset="hard", **kw))
    run("jaxsnn_ff", net, (6,), fixed_input((6,), T, SEED + 1, scale=1.0),
        info="Dense(bias)-LIF(subtract)-LIF(hard)")
    net = jaxsnn.serial(LIF(10, weight_scale=3.0, **kw),
                        RecurrentLIF(10, weight_scale=3.0, recurrent_scale=1.0, **kw),
                        LIF(4, weight_scale=4.0, **kw))
    run("jaxsnn_rec", net, (6,), fixed_input((6,), T, SEED + 2),
        info="LIF-RecurrentLIF-LIF")
    net = jaxsnn.serial(Conv(4, 3, padding="SAME", bias=True, bias_init=bias, weight_scale=3.0),
                        LIF((8, 8, 4), project=False, **kw),
                        jaxsnn.stateless(stax.Flatten),
                        LIF(5, weight_scale=5.0, **kw))
    run("jaxsnn_conv", net, (8, 8, 2), fixed_input((2, 8, 8), T_CONV, SEED + 3),
        jax_layout_input=lambda a: np.transpose(a, (0, 2, 3, 1)),
        info="Conv(bias)-LIF-Flatten-LIF")


# ------------------------------------------------------------------------------------------
# readers: each library's importer on every fixture file


def _load_fixture(path):
    data = np.load(path.with_suffix(".npz"))
    return data["input"], data["output"], float(data["dt"])


def snntorch_reader(paths):
    import nir
    import torch
    from snntorch.import_nir import import_from_nir

    results = {}
    for path in paths:
        x, _, _ = _load_fixture(path)
        try:
            module = import_from_nir(nir.read(str(path)))
            outs = []
            with torch.no_grad():
                for t in range(x.shape[0]):
                    out = module(torch.tensor(x[t][None]))
                    out = out[0] if isinstance(out, tuple) else out
                    outs.append(out[0].numpy())
            results[path.stem] = {"output": np.stack(outs).tolist()}
        except Exception as error:  # noqa: BLE001 - the error is the measurement
            results[path.stem] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:200]}
    return results


def norse_reader(paths):
    import nir
    import norse.torch as nt
    import torch

    results = {}
    for path in paths:
        x, _, dt = _load_fixture(path)
        try:
            module = nt.from_nir(nir.read(str(path)), dt=dt)
            state = None
            outs = []
            with torch.no_grad():
                for t in range(x.shape[0]):
                    out, state = module(torch.tensor(x[t][None]), state)
                    outs.append(out[0].numpy())
            results[path.stem] = {"output": np.stack(outs).tolist()}
        except Exception as error:  # noqa: BLE001
            results[path.stem] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:200]}
    return results


def spyx_reader(paths):
    import jax.numpy as jnp
    import nir
    from spyx import nir as spyx_nir

    results = {}
    for path in paths:
        x, _, dt = _load_fixture(path)
        try:
            data = x[:, None]
            if data.ndim == 5:  # Spyx runs channels last: (T, B, H, W, C)
                data = np.transpose(data, (0, 1, 3, 4, 2))
            _, out = spyx_nir.from_nir(nir.read(str(path)), jnp.asarray(data), dt=dt)
            out = np.asarray(out)[:, 0]
            if out.ndim == 4:
                out = np.transpose(out, (0, 3, 1, 2))
            results[path.stem] = {"output": out.tolist()}
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
            results[path.stem] = {"output": np.asarray(out).tolist(),
                                  "dialect": jnir.detect_dialect(str(path))}
        except Exception as error:  # noqa: BLE001
            results[path.stem] = {"error": f"{type(error).__name__}: {error}".splitlines()[0][:200]}
    return results


READERS = {"snntorch": snntorch_reader, "norse": norse_reader, "spyx": spyx_reader}
WORKERS = {"snntorch": snntorch_worker, "norse": norse_worker, "spyx": spyx_worker}


def mismatch(reference, other):
    """Spike-train mismatch ``sum|a - b| / max(sum|a|, sum|b|)`` (0: identical)."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        return None
    denominator = max(np.abs(reference).sum(), np.abs(other).sum(), 1e-12)
    return float(np.abs(reference - other).sum() / denominator)


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
    paths = sorted(p for p in FIXTURES.glob("*.nir"))
    outputs = {}
    for peer in PEERS:
        out_file = RESULTS / f"_nir_reader_{peer}.json"
        run_in_venv(peer, "--reader", [str(out_file)])
        outputs[peer] = json.loads(out_file.read_text())
        out_file.unlink()
    outputs["jaxsnn"] = jaxsnn_reader(paths)
    table = {}
    for path in paths:
        _, own, _ = _load_fixture(path)
        row = {}
        for reader, results in outputs.items():
            result = results.get(path.stem, {"error": "not run"})
            if "error" in result:
                row[reader] = {"error": result["error"]}
                continue
            value = mismatch(own, result["output"])
            entry = {"mismatch": value, "own_spikes": float(np.sum(own)),
                     "reader_spikes": float(np.sum(result["output"]))}
            if value is None:
                entry["error"] = f"output shape {np.shape(result['output'])} != {own.shape}"
            if "dialect" in result:
                entry["dialect"] = result["dialect"]
            row[reader] = entry
        table[path.stem] = row
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "nir_interop.json").write_text(json.dumps(table, indent=1) + "\n")
    (RESULTS / "nir_interop.md").write_text(markdown(table))
    print(markdown(table))


def markdown(table):
    readers = ["jaxsnn", "snntorch", "norse", "spyx"]
    lines = [
        "Each file (row) is read by each library's NIR importer (column) and run on the file's "
        "fixed input; the cell is the output spike mismatch against the writer's own "
        "simulation, sum|a - b| / max(sum|a|, sum|b|) (0 % = identical outputs), or why it did "
        "not run. Made by `python tools/nir_fixtures.py`.",
        "",
        "| file (writer_net) | " + " | ".join(readers) + " |",
        "|---|" + "---|" * len(readers),
    ]
    for name, row in table.items():
        cells = []
        for reader in readers:
            entry = row.get(reader, {})
            if "error" in entry:
                cells.append("fails: " + entry["error"].replace("|", "/")[:90])
            elif entry.get("mismatch") == 0.0:
                cells.append("**identical**")
            else:
                cells.append(f"{100 * entry['mismatch']:.0f} % mismatch")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=PEERS)
    parser.add_argument("--reader", nargs=2, metavar=("PEER", "OUT"))
    parser.add_argument("--only-matrix", action="store_true")
    args = parser.parse_args()
    if args.worker:
        WORKERS[args.worker]()
        return
    if args.reader:
        peer, out = args.reader
        paths = sorted(p for p in FIXTURES.glob("*.nir"))
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
