"""Online learning rules for discrete networks, and training procedures built on them.

``sequence_gradient(rule, net, params, inputs, targets, loss_fn, carry=None)`` computes the loss
and a gradient estimate of one sequence under any of the rules (swap them by name):

=============  ==========================================================  ==================
rule           what it keeps (see ``jaxsnn.online.rules``)                  memory in ``T``
=============  ==========================================================  ==================
``bptt``       everything (``jax.grad`` through the window)                 grows
``truncated``  the same-step term only                                      flat
``ottt``       presynaptic traces with the subthreshold neuron kernel       flat
``ostl``       exact eligibility traces within each layer                   flat
``otpe``       OSTL plus the next layer's subthreshold response             flat
``rtrl``       everything, forward in time (equals ``bptt``)                flat
=============  ==========================================================  ==================

``make_trainer(rule, net, loss_fn, optimizer, mode)`` turns a rule into a jitted training step in
``"deferred"`` mode (one optimiser step per batch of sequences), ``"online"`` mode (an optimiser
step after every time step) or ``FPTT`` (forward propagation through time, Kag & Saligrama 2021).
"""

from jaxsnn.online.gradient import sequence_gradient
from jaxsnn.online.rules import BPTT, OSTL, OTPE, OTTT, RTRL, RULES, Rule, Truncated, get_rule
from jaxsnn.online.training import FPTT, MODES, TrainState, Trainer, make_trainer

__all__ = [
    "BPTT",
    "FPTT",
    "MODES",
    "OSTL",
    "OTPE",
    "OTTT",
    "RTRL",
    "RULES",
    "Rule",
    "TrainState",
    "Trainer",
    "Truncated",
    "get_rule",
    "make_trainer",
    "sequence_gradient",
]
