"""Gradient rules for discrete networks: which Jacobian terms each one keeps and drops.

Notation (one sample, one network of leaves ``l`` in flat order). The network advances one time
step at a time,

    (S_t, y_t) = step(theta, S_{t-1}, x_t),        L = sum_t l_t(y_t, target_t),

where ``S`` is the flat ``carry`` (one state per stateful leaf; ``LIFState(v, current)`` for the
current-based LIF, so *both* state variables are part of ``S``) and ``theta`` the flat params.
Every rule below writes the gradient of step ``t`` as

    g_t = dl_t/dtheta |_{S_{t-1} fixed}  +  sum_l kappa^l_t . M^l_{t-1},      dL/dtheta ~ sum_t g_t

with ``kappa^l_t = dl_t/dS^l_{t-1}`` through the *same* step (one backward pass through the
network at step ``t``) and ``M^l_{t-1} ~ dS^l_{t-1}/dtheta`` a sensitivity carried forward in
time. The rules differ only in which terms of the exact recursion

    M^l_t = (dS^l_t/dS^l_{t-1}) M^l_{t-1}                        (temporal, own leaf)
          + sum_{m<l} (dS^l_t/dS^m_{t-1}) M^m_{t-1}               (temporal, through earlier leaves)
          + dS^l_t/dtheta |_{S_{t-1} fixed}                        (same-step effect of theta)

they keep. All Jacobians are taken by JAX from the layers' own one-step map, so the reset,
the surrogate derivative and both state variables enter exactly wherever a term is kept.
"""

from __future__ import annotations

from typing import Any, Tuple, Union

__all__ = [
    "BPTT",
    "OSTL",
    "OTPE",
    "OTTT",
    "RTRL",
    "RULES",
    "Rule",
    "Truncated",
    "get_rule",
]


def _check_window(rule: str, window: Any) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"{rule}: window must be an int >= 1, got {window!r}")
    return window


class Rule:
    """Base class of the gradient rules. Rules are immutable, hashable value objects."""

    name: str = ""
    #: True when the rule carries no memory that grows with the sequence length
    online: bool = True

    def _options(self) -> Tuple[Any, ...]:
        return ()

    def __eq__(self, other: Any) -> bool:
        return type(self) is type(other) and self._options() == other._options()

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + self._options())

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._named_options())
        return f"{type(self).__name__}({options})"

    def _named_options(self) -> Tuple[Tuple[str, Any], ...]:
        return ()


class _WindowedRule(Rule):
    """A rule whose sequence gradients take ``window`` steps at a time (same result)."""

    def __init__(self, window: int = 100):
        self.window = _check_window(type(self).__name__, window)

    def _options(self) -> Tuple[Any, ...]:
        return (self.window,)

    def _named_options(self):
        return (("window", self.window),)


class BPTT(Rule):
    """Backpropagation through time: ``jax.grad`` of the summed loss through the whole window.

    The reference: exact (with the layers' surrogate derivatives). Its memory grows with the
    window length ``T`` (the forward pass is stored). In online training mode the gradient of
    each step's loss is recomputed through the window so far with the current parameters
    (``T`` backward passes per window).
    """

    name = "bptt"
    online = False


class Truncated(_WindowedRule):
    """One-step truncation: ``g_t = dl_t/dtheta`` with every ``S_{t-1}`` held constant.

    Keeps only the same-step term (``M = 0``): spatial credit assignment through all layers at
    step ``t``, no temporal credit at all. Memory: the network state only.

    A sequence gradient takes ``window`` steps at a time (same result): the steps' start states
    come from one forward pass, then every step's same-step gradient is one reverse-mode
    product over the window and the batch (a matrix product over time).

    Args:
        window: time steps per product in sequence gradients (default 100); the memory
            grows with ``window``, never with ``T``. Online training uses ``window = 1``.
    """

    name = "truncated"


class OSTL(_WindowedRule):
    """Online spatio-temporal learning (Bohnstingl et al. 2022): per-layer eligibility traces.

    For the parameters ``theta^b`` of the leaves feeding stateful leaf ``b`` (its block) the
    trace ``E^b_t = dS^b_t/dtheta^b`` is exact *within the layer*,

        E^b_t = (dS^b_t/dS^b_{t-1}) E^b_{t-1} + dS^b_t/dtheta^b |_{S_{t-1} fixed},

    with the full per-neuron state Jacobian (both ``v`` and ``current``, reset and surrogate
    included); the learning signal ``kappa^b_t`` reaches layer ``b`` through the same step only.
    Dropped: the temporal terms through later layers, ``(dS^l_t/dS^m_{t-1}) M^m`` for ``m < l``
    and the cross-layer sensitivities ``dS^l/dtheta^b`` for ``l > b`` carried over time.
    Exact for the output layer and for a single-layer network. For neuron-local layers the
    trace has the shape of the parameters per state field; for ``RecurrentLIF`` it is the
    layer's full (state x parameters) sensitivity (exact within the layer).

    A sequence gradient can advance ``window`` steps at a time with the same result: the sum
    ``sum_t kappa_t . E_{t-1}`` over a window is linear in the trace at the window's start and
    in the same-step effects ``dS^b_s/dtheta^b``, so it is computed with a reverse recursion
    of per-neuron co-states ``mu_s = kappa_{s+1} + mu_{s+1} (dS^b_{s+1}/dS^b_s)`` and one
    reverse-mode product over the window's steps (a matrix product over time), and the trace
    jumps from window to window. This applies where every trace is per neuron (layers ``LIF``,
    ``LI`` and their column-structured parameters); elsewhere the window advances one step at a
    time. Online training (an update after every step) always uses ``window = 1``.

    Args:
        window: time steps per trace update in sequence gradients (default 100). The
            window's per-step signals take ``window x (state fields)^2 x neurons`` numbers
            per sample, less than the traces (``fields x n_in x neurons``) unless the window
            is longer than ``n_in``; the memory grows with ``window``, never with ``T``.
    """

    name = "ostl"


class OTTT(_WindowedRule):
    """Online training through time (Xiao et al. 2022): presynaptic traces.

    OSTL with the layer's state Jacobian replaced by its *subthreshold* part ``A`` (no reset,
    no surrogate; identical for all neurons) and the input response by its subthreshold part
    ``c``. Then the eligibility trace factorises into a presynaptic trace per state field,

        a_t = A a_{t-1} + c x_t        (x: the layer's input; 1 for a bias),
        g_t = dl_t/dtheta |_{S_{t-1} fixed} + sum_f outer(a_{t-1, f}, kappa_{t, f}),

    of size ``(fields, n_in)`` instead of ``(fields, n_in, n)``. For the current-based LIF both
    state variables are kept: the trace is the exact two-stage PSP filter
    (``I``: ``a_syn``; ``v``: ``a_mem`` and the input scale), so ``sum_f`` over the trace equals
    the subthreshold ``du_t/dW``; with ``tau_syn = 0`` it is the familiar
    ``a_t = beta a_{t-1} + x_t``. ``A`` and ``c`` are measured from the layer itself (see
    ``jaxsnn.online._network``). Dropped besides OSTL's terms: the reset and surrogate terms of
    the layer's own temporal Jacobian. Needs neuron-local layers (``LIF``, ``LI``; a ``Dense``
    right before ``LIF(project=False)``) whose input is the network input or the recorded
    output of the layer before.

    A sequence gradient takes ``window`` steps at a time (same result): the presynaptic
    traces of all the window's steps are one product of the inputs with the fixed filter
    ``A^(s-1-r) c`` (a ``window x window`` matrix), the gradient one matrix product of those
    traces with the learning signals over the window and the batch.

    Args:
        window: time steps per trace update in sequence gradients (default 100); the memory
            grows with ``window``, never with ``T``. Online training uses ``window = 1``.
    """

    name = "ottt"


class OTPE(_WindowedRule):
    """Online training with postsynaptic estimates (Summe & Joshi 2023): OSTL plus the next layer.

    OSTL keeps ``dS^b/dtheta^b`` but drops how layer ``b``'s past output still acts on the next
    stateful layer ``b'`` (``M^{b'}_{t-1} = dS^{b'}_{t-1}/dtheta^b``). OTPE estimates that term
    with the next layer's *subthreshold* dynamics (``A'``, ``c'`` as in ``OTTT``), kept in layer
    ``b``'s output space so that it costs one more trace of the parameters' shape per state field
    of ``b'``:

        Y_t    = dy^b_t/dS^b_{t-1} E^b_{t-1} + dy^b_t/dtheta^b      (OSTL output sensitivity)
        R_t    = A' R_{t-1} + c' Y_t                                (postsynaptic estimate)
        g_t    = g^OSTL_t + sum_f (W' kappa^{b'}_{t, f}) R_{t-1, f}

    where ``W'`` is the next layer's input weight (``y^b`` enters ``b'`` as ``y^b W'``). Both
    state variables of the next layer are kept in ``R``. Dropped: the reset and surrogate terms
    of the next layer's temporal dynamics and all effects two or more layers up. The output
    layer has no next layer: there OTPE equals OSTL (exact).

    Like ``OSTL``, a sequence gradient advances ``window`` steps at a time with the same result
    where every trace is per neuron (the estimate ``R`` is linear in the traces and in the
    same-step sensitivities, so it jumps from window to window too).

    Args:
        window: time steps per trace update in sequence gradients (default 100).
    """

    name = "otpe"


class RTRL(Rule):
    """Real-time recurrent learning (Williams & Zipser 1989): the exact forward-mode gradient.

    Keeps every term of the recursion, for any wiring (``RecurrentLIF`` included), so its
    gradient equals BPTT's. Structure is exploited where it is exact: a neuron-local layer's
    sensitivity to its own column-structured parameters is stored per neuron (the shape of the
    parameters per state field), and only sensitivities to parameters of *earlier* layers
    (which every neuron of a later layer sees) are dense ``(state x parameters)``.

    The recursion is exact for any time unit, so a sequence gradient can advance ``window``
    steps at a time (the hybrid of Schmidhuber 1992): within a window the gradient and the
    Jacobians come from reverse mode through the layers' whole-window ``apply`` (fast matrix
    products), across windows the sensitivities are carried forward. The gradient is the same
    for every ``window``; the memory grows with ``window``, never with ``T``. Online training
    (an update after every step) always uses ``window = 1``.

    Args:
        structured: exploit the per-neuron structure (default). ``False`` keeps every
            sensitivity dense: the same numbers, much slower; a reference for tests.
        window: time steps per forward-mode update in sequence gradients (default 25).
    """

    name = "rtrl"

    def __init__(self, structured: bool = True, window: int = 25):
        if not isinstance(structured, bool):
            raise TypeError(f"RTRL: structured must be a bool, got {type(structured).__name__}")
        self.structured = structured
        self.window = _check_window("RTRL", window)

    def _options(self) -> Tuple[Any, ...]:
        return (self.structured, self.window)

    def _named_options(self):
        return (("structured", self.structured), ("window", self.window))


RULES = {
    "bptt": BPTT,
    "truncated": Truncated,
    "ottt": OTTT,
    "ostl": OSTL,
    "otpe": OTPE,
    "rtrl": RTRL,
}


def window_of(rule: Rule) -> int:
    """Time steps per update of the carried sensitivities in a sequence gradient."""
    return rule.window if isinstance(rule, (_WindowedRule, RTRL)) else 1


def get_rule(rule: Union[str, Rule]) -> Rule:
    """Resolve a rule name (``"bptt"``, ``"truncated"``, ``"ottt"``, ``"ostl"``, ``"otpe"``,
    ``"rtrl"``) or pass a rule object through.

    Raises:
        ValueError: unknown name. TypeError: neither a name nor a ``Rule``.
    """
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str):
        key = rule.lower()
        if key not in RULES:
            raise ValueError(
                f"unknown rule {rule!r}; choose one of {sorted(RULES)} or pass a rule object "
                "such as jaxsnn.online.RTRL(structured=False)"
            )
        return RULES[key]()
    raise TypeError(
        f"rule must be a name ({sorted(RULES)}) or a jaxsnn.online rule object, got "
        f"{type(rule).__name__}"
    )
