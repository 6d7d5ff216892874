"""Reading the peers' own NIR files reproduces the peers' own simulations.

The files and the peers' outputs were made by ``tools/nir_fixtures.py`` in each peer's
environment (snnTorch 1.0.0, Norse 1.1.0, Spyx 1.0.0 with torch 2.13 / jax 0.10); the tests
need none of them. Each comparison is also run with one convention of the dialect changed,
which must break it: the fixtures are sensitive to every convention the dialects encode.
"""

import jax
import numpy as np
import pytest

import jaxsnn.nir as jnir
from jaxsnn.nir._node import Node

pytest.importorskip("nir")

PEER_FIXTURES = {
    "snntorch_ff": "snntorch",
    "snntorch_rec": "snntorch",
    "snntorch_conv": "snntorch",
    "norse_ff": "norse",
    "norse_conv": "norse",
    "spyx_ff": "spyx",
    "spyx_rec": "spyx",
    "spyx_conv": "spyx",
    "jaxsnn_ff": "jaxsnn",
    "jaxsnn_rec": "jaxsnn",
    "jaxsnn_conv": "jaxsnn",
}


def run(nirtest, name, dialect="auto"):
    path, data = nirtest.fixture_data(name)
    layer, params = jnir.from_nir(path, dt=float(data["dt"]), dialect=dialect)
    _, output, recording = jax.jit(layer.apply)(params, data["input"])
    return data, output, recording


@pytest.mark.parametrize("name", sorted(PEER_FIXTURES))
def test_auto_detects_the_writer(nirtest, name):
    path, _ = nirtest.fixture_data(name)
    assert jnir.detect_dialect(path) == PEER_FIXTURES[name]


@pytest.mark.parametrize("name", sorted(PEER_FIXTURES))
def test_reading_a_peer_file_reproduces_the_peer(nirtest, name):
    data, output, recording = run(nirtest, name, dialect=PEER_FIXTURES[name])
    spikes, traces = nirtest.assert_reproduces(data, output, recording)
    assert spikes >= 10 and traces >= 2


def test_norse_cannot_write_recurrent_networks(nirtest):
    # Recorded by the fixture script: Norse's writer has no mapping for LIFRecurrentCell.
    text = (nirtest.FIXTURES / "norse_rec.unsupported.txt").read_text()
    assert "NoneType" in text


# ------------------------------------------------------------------------------------------
# every convention matters: a dialect with one convention changed fails the comparison


class _FeedThrough(jnir.Spyx):
    """Spyx without its one-step latency (spikes from the updated membrane)."""

    def _spiking(self, name, kind, shape, threshold, beta, alpha, spike_fn, describe):
        node = super()._spiking(name, kind, shape, threshold, beta, alpha, spike_fn, describe)

        def step(p, state, inputs):
            new_state, _ = node.step(p, state, inputs)
            return new_state, spike_fn(new_state.v - float(np.mean(threshold)))

        return Node(
            node.name,
            node.kind,
            node.in_shape,
            node.out_shape,
            init_state=node.init_state,
            step=step,
        )


class _SpyxLiteralSubgraph(jnir.Spyx):
    """Spyx, but its recurrent subgraph read literally (input -> w_rec)."""

    def rewrite_subgraph(self, name, nodes, edges):
        return nodes, edges


class _SpyxFlattenChannelsFirst(jnir.Spyx):
    flatten_channels_last = False


class _NorseTauLiteral(jnir.Norse):
    """Norse's own reader: the stored tau taken as the time constant."""

    def _rate(self, name, node, shape, field_name, dt):
        return dt / np.broadcast_to(np.asarray(getattr(node, field_name), np.float64), shape)


class _NorseBiasTimesDt(jnir.Norse):
    bias_per_step = False


class _SnnTorchLatency(jnir.SnnTorch):
    """snnTorch with the spike delayed by one step (fires from the previous membrane)."""

    def _neuron(self, name, kind, shape, beta, alpha, threshold, spike_fn):
        node = super()._neuron(name, kind, shape, beta, alpha, threshold, spike_fn)

        def emit(p, state):
            return spike_fn(state.v - float(np.mean(threshold)))

        def step(p, state, inputs):
            new_state, _ = node.step(p, state, inputs)
            return new_state, emit(p, state)

        return Node(
            node.name,
            node.kind,
            node.in_shape,
            node.out_shape,
            init_state=node.init_state,
            step=step,
            emit=emit,
        )


MUTATIONS = [
    ("snntorch_ff", jnir.SnnTorch(reset_delay=False)),
    ("snntorch_ff", jnir.SnnTorch(reset_mechanism="zero")),
    ("snntorch_ff", _SnnTorchLatency()),
    ("snntorch_rec", jnir.SnnTorch(reset_delay=False)),
    ("snntorch_conv", jnir.SnnTorch(reset_mechanism="none")),
    ("norse_ff", _NorseTauLiteral()),
    ("norse_ff", _NorseBiasTimesDt()),
    ("norse_conv", _NorseTauLiteral()),
    ("spyx_ff", _FeedThrough()),
    ("spyx_rec", _SpyxLiteralSubgraph()),
    ("spyx_conv", _SpyxFlattenChannelsFirst()),
    ("jaxsnn_ff", "spec"),
]


@pytest.mark.parametrize(
    "name,dialect",
    MUTATIONS,
    ids=[f"{n}-{type(d).__name__ if not isinstance(d, str) else d}" for n, d in MUTATIONS],
)
def test_a_changed_convention_breaks_the_comparison(nirtest, name, dialect):
    try:
        data, output, recording = run(nirtest, name, dialect=dialect)
    except ValueError as error:  # the spec dialect refuses jaxsnn's subtract reset
        assert "dialect='jaxsnn'" in str(error)
        return
    with pytest.raises(AssertionError):
        nirtest.assert_reproduces(data, output, recording)
