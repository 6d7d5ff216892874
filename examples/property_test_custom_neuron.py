"""Property-test your own neuron model with jaxsnn.testing (run: python -m pytest examples/property_test_custom_neuron.py).

An adaptive-threshold LIF written from scratch as an ``(init, apply)`` pair: each spike raises
the threshold by ``beta``, which then decays back with time constant ``tau_adapt``. Hypothesis
draws inputs and weights; the checks raise with a shrunk counterexample if a property breaks.
Each check returns how much it compared and fails if that is nothing (``min_compared=1``);
first-spike monotonicity compares only neurons that spike, so a silent draw compares nothing:
it runs with ``min_compared=0`` and such draws are discarded with ``assume``. The explicit
``@example`` always spikes, so every check compares something whatever hypothesis draws.
This file is part of the project's test run (``testpaths`` in ``setup.cfg``).
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, example, given
from hypothesis import strategies as st

from jaxsnn.testing import load_profile_from_env, properties, strategies

load_profile_from_env()  # "ci" (few, deterministic examples) unless JAXSNN_HYPOTHESIS_PROFILE says otherwise
T, N_IN, SIZE, BETA = 20, 3, 2, 0.5
A_SYN, A_MEM, A_TH = 0.8, 0.9, 0.95  # exp(-dt / tau) of the current, membrane and threshold


def step(state, drive):  # one time step: threshold 1 + adapt, subtractive reset
    v, current, adapt = state
    current = A_SYN * current + drive
    v = A_MEM * v + (1 - A_MEM) * current
    z = (v > 1.0 + adapt).astype(v.dtype)
    return (v - z * (1.0 + adapt), current, A_TH * adapt + BETA * z), z


def AdaptiveLIF(size):
    def init(rng, input_shape):
        return (input_shape[0], size), {"weight": jax.random.normal(rng, (input_shape[1], size))}

    def apply(params, inputs, external=None, carry=None):
        carry = (jnp.zeros(size), jnp.zeros(size), jnp.zeros(size)) if carry is None else carry
        carry, spikes = jax.lax.scan(step, carry, jnp.asarray(inputs) @ params["weight"])
        return carry, spikes, spikes

    return init, apply


LAYER = AdaptiveLIF(SIZE)


@given(x=strategies.dense_inputs(T, N_IN), w=strategies.weights((N_IN, SIZE), low=-1.0, high=8.0),
       k=st.integers(1, T - 1))
@example(x=np.ones((T, N_IN), np.float32), w=np.full((N_IN, SIZE), 4.0), k=T // 2)
def test_adaptive_lif_properties(x, w, k):
    params = {"weight": jnp.asarray(w, jnp.float32)}
    properties.check_causality(LAYER, params, x, k)  # each returns the number of values compared
    properties.check_time_shift(LAYER, params, x, k)
    properties.check_chunked_equals_whole(LAYER, params, x, k)
    properties.check_no_input_no_spike(LAYER, params, x)
    properties.check_jit_equals_eager(LAYER, params, x)
    assume(properties.check_first_spike_monotone(LAYER, params, x, min_compared=0) > 0)
