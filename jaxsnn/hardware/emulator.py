"""An emulated analog neuromorphic chip (BrainScaleS-2 style) implementing ``Backend``.

The emulator runs each feed-forward event-based LIF layer with ``jaxsnn.event.simulate`` on
parameters perturbed the way a physical chip perturbs them, then passes the result through a
model of the chip's recording path. Every effect is seedable, documented here, and switched
off by setting its field of ``EmulatorConfig`` to ``None`` (or 0); with everything off
(``EmulatorConfig.ideal()``) the emulator returns exactly what the software simulation
returns.

Effects (model units unless stated; ``theta = v_th - v_leak`` is the nominal threshold
distance):

=========================  ==================================================================
field                      effect
=========================  ==================================================================
``weight_scale``           synapse weights are signed 6-bit integers: the chip applies
                           ``clip(round(weight_scale * w), -63, 63) / weight_scale``; the
                           error is at most ``0.5 / weight_scale`` inside the range
                           ``|w| <= 63.5 / weight_scale``, beyond which weights saturate
``threshold_fixed_std``    fixed-pattern threshold offset per neuron, ``theta * std * z``,
                           ``z ~ N(0, 1)`` drawn once per emulated chip (``chip_seed``)
``threshold_trial_std``    trial-to-trial threshold offset per neuron and run,
                           ``theta * std * z``, drawn from ``(chip_seed, trial, sample)``
``tau_mismatch_std``       per-neuron time constants ``tau * exp(std * z)`` (log-normal,
                           median ``tau``), fixed per chip; with ``tau_mismatch_common``
                           (default) ``tau_mem`` and ``tau_syn`` share one factor per
                           neuron: each neuron runs at its own speed but keeps the
                           calibrated ratio, so the analytic next-spike kernel still
                           applies; with ``tau_mismatch_common=False`` they are drawn
                           independently (ratio varies per neuron; the root-solver kernel
                           is used, about 4x slower)
``jitter_std``             spike-time jitter on chip, in chip seconds: each emitted spike is
                           shifted by ``N(0, std)`` (then clipped to the run window); the
                           jittered spike is what the next layer receives and what is recorded
``time_scale``             the chip runs ``time_scale`` times faster than the model:
                           model time ``t`` is chip time ``t / time_scale`` (1000: model
                           milliseconds are chip microseconds); taus, window and inputs are
                           converted to chip time, recordings are converted back
``clock_hz``               the recording (and the input generator) time-stamps events with a
                           counter at ``clock_hz`` (125 MHz: 8 ns on chip, 8 us in the model
                           at ``time_scale`` 1000): ``t -> floor(t * clock_hz) / clock_hz``
                           in chip time; this is applied to inputs before they reach the
                           chip and to recorded spikes (on-chip routing is not clocked)
``spike_loss``             each recorded spike is lost with this probability (recording path
                           only: the next layer still received it)
``record_capacity``        at most this many spikes per layer and run are recorded, the
                           earliest kept; the buffer is padded with (``+inf``, -1)
=========================  ==================================================================

Trial-dependent effects (``threshold_trial_std``, ``jitter_std``, ``spike_loss``) draw from
``jax.random.fold_in`` of the chip key with the ``trial`` argument of ``run`` and the sample
index, so a run is reproducible given ``(chip_seed, trial)``.

Events beyond a layer's ``capacity`` are not emitted by the emulated chip (its ``simulate``
buffer is the layer capacity); choose capacities with margin.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxsnn.event.neuron import LIFParameters, validate_parameters
from jaxsnn.event.plan import Plan, resolve_plan
from jaxsnn.event.simulate import simulate_planned
from jaxsnn.spikes import PAD_IDX, Spikes
from jaxsnn.spikes import validate as validate_spikes

MAX_WEIGHT_LEVEL = 63
"""Largest magnitude of a signed 6-bit synapse weight."""


def quantize_weights(weight: Any, weight_scale: float) -> jax.Array:
    """The weights a chip with signed 6-bit synapses actually applies.

    ``w_chip = clip(round(weight_scale * w), -63, 63) / weight_scale``; for
    ``|w| <= 63.5 / weight_scale`` the error is at most ``0.5 / weight_scale``.

    Args:
        weight: model weights (any shape).
        weight_scale: integer levels per unit of model weight, > 0.

    Returns:
        The quantised weights, same shape and dtype.

    Raises:
        ValueError: if ``weight_scale`` is not finite and > 0.
    """
    if not (np.isfinite(weight_scale) and weight_scale > 0):
        raise ValueError(f"weight_scale must be finite and > 0, got {weight_scale!r}")
    weight = jnp.asarray(weight)
    levels = jnp.clip(jnp.round(weight * weight_scale), -MAX_WEIGHT_LEVEL, MAX_WEIGHT_LEVEL)
    return (levels / weight_scale).astype(weight.dtype)


@dataclass(frozen=True)
class EmulatorConfig:
    """Non-idealities of the emulated chip (see the module docstring for each field).

    ``None`` or 0 switches an effect off. The defaults describe a plausible calibrated chip
    (chosen, not fitted to a particular device): 6-bit weights with 32 levels per unit weight
    (largest weight 1.97), 2% fixed-pattern and 1% trial-to-trial threshold spread, 3%
    per-neuron time-constant spread, 20 ns spike jitter, 1000x time scale, 125 MHz clock,
    0.1% spike loss and no recording cap beyond the layer capacity.
    """

    weight_scale: Optional[float] = 32.0
    threshold_fixed_std: float = 0.02
    threshold_trial_std: float = 0.01
    tau_mismatch_std: float = 0.03
    tau_mismatch_common: bool = True
    jitter_std: float = 20e-9
    time_scale: Optional[float] = 1000.0
    clock_hz: Optional[float] = 125e6
    spike_loss: float = 0.001
    record_capacity: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("threshold_fixed_std", "threshold_trial_std", "tau_mismatch_std", "jitter_std"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"EmulatorConfig.{name} must be finite and >= 0, got {value!r}")
        for name in ("weight_scale", "time_scale", "clock_hz"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise ValueError(f"EmulatorConfig.{name} must be None or finite and > 0, got {value!r}")
        if not (0.0 <= self.spike_loss < 1.0):
            raise ValueError(f"EmulatorConfig.spike_loss must be in [0, 1), got {self.spike_loss!r}")
        if self.record_capacity is not None and (
            not isinstance(self.record_capacity, (int, np.integer)) or self.record_capacity < 1
        ):
            raise ValueError(
                f"EmulatorConfig.record_capacity must be None or an int >= 1, got {self.record_capacity!r}"
            )

    @classmethod
    def ideal(cls, **overrides: Any) -> "EmulatorConfig":
        """A configuration with every effect off (the emulator equals the software model).

        Args:
            **overrides: fields to switch back on, e.g. ``weight_scale=32.0``.

        Returns:
            The configuration.
        """
        fields = dict(
            weight_scale=None,
            threshold_fixed_std=0.0,
            threshold_trial_std=0.0,
            tau_mismatch_std=0.0,
            jitter_std=0.0,
            time_scale=None,
            clock_hz=None,
            spike_loss=0.0,
            record_capacity=None,
        )
        fields.update(overrides)
        return cls(**fields)

    def to_dict(self) -> dict:
        """The fields as a JSON-friendly dict."""
        return dataclasses.asdict(self)


class EmulatedLayer(NamedTuple):
    """Description of one feed-forward event-based LIF layer on the emulated chip.

    Attributes:
        size: number of neurons.
        neuron: nominal ``LIFParameters`` (scalars), in model units.
        capacity: spike slots per run (the simulation buffer and the measured buffer).
        t_max: end of the run window, model units.
        kernel: next-spike kernel passed to ``jaxsnn.event.simulate``; ``"auto"`` picks the
            analytic kernel of the nominal tau ratio when the chip keeps it (no mismatch, or a
            common mismatch factor), else the root solver.
    """

    size: int
    neuron: LIFParameters
    capacity: int
    t_max: float
    kernel: str = "auto"


class ChipParameters(NamedTuple):
    """Fixed-pattern (per emulated chip) parameters of one layer, in model units.

    Attributes:
        v_th: ``(size,)`` thresholds including the fixed-pattern offset.
        tau_mem: ``(size,)`` membrane time constants.
        tau_syn: ``(size,)`` synaptic time constants.
    """

    v_th: jax.Array
    tau_mem: jax.Array
    tau_syn: jax.Array


def default_weights(layer_params: Any) -> jax.Array:
    """Extract the input weight matrix ``(n_in, size)`` from one layer's params.

    Accepts a bare array, a mapping with a ``"weight"`` or ``"input_weights"`` entry, or an
    object with such an attribute.

    Args:
        layer_params: one entry of the flat params list.

    Returns:
        The weight matrix.

    Raises:
        TypeError: if no weight matrix is found.
    """
    if isinstance(layer_params, (np.ndarray, jax.Array)):
        return layer_params
    for key in ("weight", "input_weights"):
        if isinstance(layer_params, dict) and key in layer_params:
            return layer_params[key]
        if hasattr(layer_params, key):
            return getattr(layer_params, key)
    raise TypeError(
        f"cannot find the weight matrix in layer params of type {type(layer_params).__name__}; "
        "pass weights_fn= to the Emulator"
    )


def replace_weights(layer_params: Any, weight: Any) -> Any:
    """Return one layer's params with its input weight matrix replaced (inverse of ``default_weights``).

    Args:
        layer_params: a bare array, or a mapping with a ``"weight"`` entry.
        weight: the new matrix.

    Returns:
        The updated params (a new dict for mappings; ``weight`` itself for bare arrays).

    Raises:
        TypeError: for other params structures.
    """
    if isinstance(layer_params, (np.ndarray, jax.Array)):
        return weight
    if isinstance(layer_params, dict) and "weight" in layer_params:
        return {**layer_params, "weight": weight}
    raise TypeError(f"cannot replace the weights of layer params of type {type(layer_params).__name__}")


def _clock_floor(time: jax.Array, tick: float) -> jax.Array:
    # the counter latches at the clock edge at or before the event; +inf stays +inf
    return jnp.where(jnp.isfinite(time), jnp.floor(time / tick) * tick, time)


def _resort(time: jax.Array, idx: jax.Array) -> Spikes:
    time = jnp.where(idx >= 0, time, jnp.inf)
    order = jnp.lexsort((idx, time))
    return Spikes(time[order], jnp.where(jnp.isfinite(time[order]), idx[order], PAD_IDX).astype(jnp.int32))


def jitter_spikes(spikes: Spikes, key: jax.Array, jitter_std: float, t_max: Any) -> Spikes:
    """Shift every real event by ``N(0, jitter_std)``, clip to ``[0, t_max]`` and re-sort.

    Args:
        spikes: one sample's buffer.
        key: PRNG key.
        jitter_std: standard deviation of the shift (same units as the times), >= 0.
        t_max: end of the run window.

    Returns:
        The jittered, sorted buffer (padding unchanged).
    """
    noise = jitter_std * jax.random.normal(key, spikes.time.shape, spikes.time.dtype)
    jittered = jnp.clip(spikes.time + noise, 0.0, t_max)
    return _resort(jnp.where(spikes.idx >= 0, jittered, jnp.inf), spikes.idx)


def record_spikes(
    spikes: Spikes,
    key: jax.Array,
    *,
    clock_tick: Optional[float],
    spike_loss: float,
    record_capacity: Optional[int],
) -> Spikes:
    """The chip's recording path: clock time stamps, random loss, a cap on recorded events.

    Args:
        spikes: one sample's buffer (chip time units).
        key: PRNG key for the loss.
        clock_tick: clock period; times are floored to it (``None``: exact times).
        spike_loss: probability that an event is lost, in [0, 1).
        record_capacity: at most this many events are kept, the earliest (``None``: all).

    Returns:
        The recorded buffer, same capacity, sorted, padded with (``+inf``, -1).
    """
    time, idx = spikes.time, spikes.idx
    if clock_tick is not None:
        time = _clock_floor(time, clock_tick)
    if spike_loss > 0:
        lost = jax.random.bernoulli(key, spike_loss, idx.shape)
        idx = jnp.where(lost, PAD_IDX, idx)
    recorded = _resort(time, idx)
    capacity = recorded.time.shape[-1]
    if record_capacity is not None and record_capacity < capacity:
        keep = jnp.arange(capacity) < record_capacity
        recorded = Spikes(jnp.where(keep, recorded.time, jnp.inf), jnp.where(keep, recorded.idx, PAD_IDX))
    return recorded


class Emulator:
    """A ``Backend`` emulating a chip that runs a feed-forward stack of event LIF layers.

    Args:
        layers: one ``EmulatedLayer`` per layer of the network, in order.
        config: the non-idealities (default: realistic, see ``EmulatorConfig``).
        chip_seed: seed of the emulated chip's fixed-pattern noise; also keys trial noise.
        weights_fn: extracts the ``(n_in, size)`` weight matrix from one layer's params
            (default ``default_weights``).
        name: name used in error messages.

    Raises:
        ValueError: if a layer description is invalid.
    """

    def __init__(
        self,
        layers: Sequence[EmulatedLayer],
        config: EmulatorConfig = EmulatorConfig(),
        chip_seed: int = 0,
        weights_fn: Callable[[Any], jax.Array] = default_weights,
        name: str = "Emulator",
    ) -> None:
        if not layers:
            raise ValueError("Emulator needs at least one layer")
        for position, layer in enumerate(layers):
            if not isinstance(layer, EmulatedLayer):
                raise TypeError(f"layers[{position}] must be an EmulatedLayer, got {type(layer).__name__}")
            validate_parameters(layer.neuron)
            if layer.size < 1 or layer.capacity < 1 or not (layer.t_max > 0):
                raise ValueError(f"layers[{position}]: size, capacity and t_max must be positive, got {layer}")
        self.layers: Tuple[EmulatedLayer, ...] = tuple(layers)
        self.config = config
        self.chip_seed = int(chip_seed)
        self.weights_fn = weights_fn
        self.name = name
        self.layer_sizes: Tuple[int, ...] = tuple(int(layer.size) for layer in layers)
        self.capacities: Tuple[int, ...] = tuple(int(layer.capacity) for layer in layers)
        self.chip_parameters: Tuple[ChipParameters, ...] = tuple(
            self._draw_fixed_pattern(position, layer) for position, layer in enumerate(layers)
        )
        self.plans: Tuple[Plan, ...] = tuple(
            self._plan(position, layer) for position, layer in enumerate(layers)
        )
        self._run_jit = jax.jit(self.run_jax)

    def _plan(self, position: int, layer: EmulatedLayer) -> Plan:
        """The layer's static choices, from its nominal (concrete) parameters.

        The chip's parameters are traced under jit, so they are resolved here: time scaling
        divides ``t_ref``, ``t_max`` and both taus alike, and a common mismatch factor scales
        both taus alike, so neither changes the tau ratio or ``t_ref >= t_max``. Independent
        mismatch varies the ratio per neuron: only the root solver applies.
        """
        ratio_kept = self.config.tau_mismatch_std == 0 or self.config.tau_mismatch_common
        kernel = layer.kernel
        if not ratio_kept:
            if kernel not in ("auto", "root"):
                raise ValueError(
                    f"layers[{position}]: kernel={kernel!r} needs the nominal tau ratio, but "
                    "tau_mismatch_common=False draws tau_mem and tau_syn independently per neuron; "
                    "use kernel='root' or 'auto'"
                )
            kernel = "root"
        try:
            return resolve_plan(layer.neuron, layer.t_max, kernel=kernel)
        except ValueError as error:
            raise ValueError(f"layers[{position}]: {error}") from None

    # -- fixed pattern -------------------------------------------------------------------
    def _key(self, *path: int) -> jax.Array:
        key = jax.random.PRNGKey(self.chip_seed)
        for part in path:
            key = jax.random.fold_in(key, part)
        return key

    def _draw_fixed_pattern(self, position: int, layer: EmulatedLayer) -> ChipParameters:
        cfg = self.config
        neuron = layer.neuron
        dtype = jnp.zeros(()).dtype
        k_th, k_mem, k_syn = jax.random.split(self._key(0, position), 3)
        theta = jnp.asarray(neuron.v_th, dtype) - jnp.asarray(neuron.v_leak, dtype)
        v_th = jnp.asarray(neuron.v_th, dtype) + theta * cfg.threshold_fixed_std * jax.random.normal(
            k_th, (layer.size,), dtype
        )
        z_mem = jax.random.normal(k_mem, (layer.size,), dtype)
        z_syn = z_mem if cfg.tau_mismatch_common else jax.random.normal(k_syn, (layer.size,), dtype)
        tau_mem = jnp.asarray(neuron.tau_mem, dtype) * jnp.exp(cfg.tau_mismatch_std * z_mem)
        tau_syn = jnp.asarray(neuron.tau_syn, dtype) * jnp.exp(cfg.tau_mismatch_std * z_syn)
        return ChipParameters(v_th, tau_mem, tau_syn)

    def hidden_parameters(self, layer: int) -> ChipParameters:
        """The fixed-pattern thresholds and time constants of a layer (what calibration estimates).

        Args:
            layer: layer position.

        Returns:
            The layer's ``ChipParameters`` in model units.
        """
        return self.chip_parameters[layer]

    def layer_backend(self, layer: int) -> "Emulator":
        """A single-layer ``Emulator`` on the same chip neurons, for probing (calibration).

        The returned emulator has the same fixed pattern and trial noise source as layer
        ``layer`` of this one; it takes a one-entry params list.

        Args:
            layer: layer position.

        Returns:
            The single-layer emulator.
        """
        single = Emulator.__new__(Emulator)
        single.layers = (self.layers[layer],)
        single.config = self.config
        single.chip_seed = self.chip_seed
        single.weights_fn = self.weights_fn
        single.name = f"{self.name}.layer{layer}"
        single.layer_sizes = (self.layer_sizes[layer],)
        single.capacities = (self.capacities[layer],)
        single.chip_parameters = (self.chip_parameters[layer],)
        single.plans = (self.plans[layer],)
        single._run_jit = jax.jit(single.run_jax)
        return single

    # -- running --------------------------------------------------------------------------
    def _neuron_on_chip(self, position: int, trial_key: jax.Array) -> LIFParameters:
        """Per-run neuron parameters in chip time units (or model units without time scale)."""
        cfg = self.config
        layer = self.layers[position]
        nominal = layer.neuron
        chip = self.chip_parameters[position]
        effects_on = cfg.threshold_fixed_std > 0 or cfg.threshold_trial_std > 0 or cfg.tau_mismatch_std > 0
        if not effects_on and cfg.time_scale is None:
            # the exact software parameters: the ideal chip equals the software model bit for bit
            return nominal
        v_th, tau_mem, tau_syn = (nominal.v_th, nominal.tau_mem, nominal.tau_syn)
        if cfg.threshold_fixed_std > 0:
            v_th = chip.v_th
        if cfg.threshold_trial_std > 0:
            theta = jnp.asarray(nominal.v_th) - jnp.asarray(nominal.v_leak)
            v_th = v_th + theta * cfg.threshold_trial_std * jax.random.normal(
                trial_key, (layer.size,), jnp.zeros(()).dtype
            )
            # a neuron whose threshold falls to rest would fire spontaneously; the chip's
            # threshold circuit cannot cross the leak potential
            v_th = jnp.maximum(v_th, jnp.asarray(nominal.v_leak) + 1e-3 * theta)
        if cfg.tau_mismatch_std > 0:
            tau_mem, tau_syn = chip.tau_mem, chip.tau_syn
        t_ref = nominal.t_ref
        if cfg.time_scale is not None:
            tau_mem = jnp.asarray(tau_mem) / cfg.time_scale
            tau_syn = jnp.asarray(tau_syn) / cfg.time_scale
            t_ref = np.asarray(t_ref) / cfg.time_scale
        return nominal._replace(v_th=v_th, tau_mem=tau_mem, tau_syn=tau_syn, t_ref=t_ref)

    def _run_sample(self, params: Sequence[Any], inputs: Spikes, key: jax.Array) -> List[Spikes]:
        cfg = self.config
        scale = cfg.time_scale
        to_chip = (lambda t: t / scale) if scale is not None else (lambda t: t)
        to_model = (lambda t: t * scale) if scale is not None else (lambda t: t)
        tick = None if cfg.clock_hz is None else 1.0 / cfg.clock_hz
        spikes = Spikes(to_chip(inputs.time), inputs.idx)
        if tick is not None:
            spikes = Spikes(_clock_floor(spikes.time, tick), spikes.idx)
        recorded: List[Spikes] = []
        for position, layer in enumerate(self.layers):
            k_th, k_jit, k_loss = jax.random.split(jax.random.fold_in(key, position), 3)
            weight = self.weights_fn(params[position])
            if cfg.weight_scale is not None:
                weight = quantize_weights(weight, cfg.weight_scale)
            neuron = self._neuron_on_chip(position, k_th)
            t_max = to_chip(layer.t_max)
            result = simulate_planned(
                self.plans[position], weight, spikes, neuron, capacity=layer.capacity, t_max=t_max
            )
            out = result.spikes
            if cfg.jitter_std > 0:
                out = jitter_spikes(out, k_jit, cfg.jitter_std, t_max)
            spikes = out  # what the next layer receives on chip
            rec = record_spikes(
                out, k_loss, clock_tick=tick, spike_loss=cfg.spike_loss, record_capacity=cfg.record_capacity
            )
            recorded.append(Spikes(jnp.where(rec.idx >= 0, to_model(rec.time), jnp.inf), rec.idx))
        return recorded

    def _check_inputs(self, params: Sequence[Any], input_spikes: Spikes) -> None:
        """Shapes and dtypes of the weights and inputs (values too where concrete), once per call."""
        n_in = None
        for position, layer in enumerate(self.layers):
            weight = self.weights_fn(params[position])
            shape = jnp.shape(weight)
            if len(shape) != 2 or shape[1] != layer.size or (n_in is not None and shape[0] != n_in):
                expected = f"({'n_inputs' if n_in is None else n_in}, {layer.size})"
                raise ValueError(f"{self.name}: layer {position} weight must have shape {expected}, got {shape}")
            if not jnp.issubdtype(jnp.result_type(weight), jnp.floating):
                raise TypeError(
                    f"{self.name}: layer {position} weight must be floating point, got {jnp.result_type(weight)}"
                )
            if position == 0:
                with jax.ensure_compile_time_eval():
                    validate_spikes(input_spikes, n_neurons=shape[0], name=f"{self.name} input_spikes")
                if jnp.ndim(input_spikes.time) != 2:
                    raise ValueError(
                        f"{self.name}: input_spikes must be a batch (batch, capacity), got shape "
                        f"{jnp.shape(input_spikes.time)}"
                    )
            n_in = layer.size

    def run_jax(self, params: Sequence[Any], input_spikes: Spikes, trial: Any) -> List[Spikes]:
        """The emulated forward pass as a pure JAX function (jit/vmap-able, no host round trip).

        Args:
            params: flat params list, one entry per layer.
            input_spikes: batched input ``Spikes`` ``(batch, capacity)``, model units.
            trial: run counter (int scalar, may be traced).

        Returns:
            One batched ``Spikes`` per layer, model units, ``(batch, capacity_l)``.
        """
        if len(params) != len(self.layers):
            raise ValueError(f"{self.name}: params has {len(params)} entries, the chip runs {len(self.layers)} layers")
        self._check_inputs(params, input_spikes)
        batch = jnp.shape(input_spikes.time)[0]
        trial_key = jax.random.fold_in(self._key(1), jnp.asarray(trial, jnp.uint32))
        keys = jax.vmap(lambda k: jax.random.fold_in(trial_key, k))(jnp.arange(batch, dtype=jnp.uint32))
        return jax.vmap(self._run_sample, in_axes=(None, 0, 0))(list(params), input_spikes, keys)

    def run(self, params: Sequence[Any], input_spikes: Spikes, trial: int) -> List[Spikes]:
        """``Backend.run``: the emulated chip's measurement for a batch (NumPy results)."""
        params = jax.tree_util.tree_map(jnp.asarray, list(params))
        inputs = Spikes(jnp.asarray(input_spikes.time), jnp.asarray(input_spikes.idx, jnp.int32))
        out = self._run_jit(params, inputs, jnp.asarray(trial, jnp.uint32))
        return [Spikes(np.asarray(s.time), np.asarray(s.idx)) for s in out]


def duplicate_inputs(spikes: Spikes, n_inputs: int, copies: int) -> Spikes:
    """Repeat every input line ``copies`` times, as chips with few synapse levels require.

    Event ``(t, j)`` becomes ``(t, j * copies + r)`` for ``r = 0..copies-1``: each logical
    input drives ``copies`` physical synapse rows, multiplying the reachable weight range.

    Args:
        spikes: input buffer(s), any leading batch axes, indices ``< n_inputs``.
        n_inputs: number of logical input lines.
        copies: copies per line, >= 1.

    Returns:
        A sorted buffer with ``copies`` times the capacity and indices ``< n_inputs * copies``.

    Raises:
        ValueError: if ``copies < 1`` or ``n_inputs < 1``.
    """
    if not isinstance(copies, (int, np.integer)) or copies < 1:
        raise ValueError(f"copies must be an int >= 1, got {copies!r}")
    if not isinstance(n_inputs, (int, np.integer)) or n_inputs < 1:
        raise ValueError(f"n_inputs must be an int >= 1, got {n_inputs!r}")
    time = jnp.repeat(spikes.time, copies, axis=-1)
    offset = jnp.tile(jnp.arange(copies, dtype=jnp.int32), spikes.idx.shape[-1])
    base = jnp.repeat(spikes.idx, copies, axis=-1)
    idx = jnp.where(base >= 0, base * copies + offset, PAD_IDX).astype(jnp.int32)
    # repeat keeps time order; ties are already ascending in index within a group
    return Spikes(time, idx)
