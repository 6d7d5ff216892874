"""Bad arguments and inputs give clear errors that name the argument."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from jaxsnn.discrete import LI, LIF, LIFState, RecurrentLIF, lif_dynamics
from jaxsnn.testing import strategies

NEURON = dict(tau_syn=5e-3, tau_mem=1e-2, dt=1e-3)


@pytest.fixture(scope="module")
def lif():
    layer = LIF(3, **NEURON)
    _, params = layer.init(jax.random.PRNGKey(0), (6, 2))
    return layer, params


@pytest.mark.parametrize("name", ["tau_mem", "dt"])
@pytest.mark.parametrize("value", [0.0, -1e-3])
@pytest.mark.parametrize("factory", [LIF, LI, RecurrentLIF])
def test_non_positive_time_constants(factory, name, value):
    with pytest.raises(ValueError, match=f"{name} must be > 0"):
        factory(3, **dict(NEURON, **{name: value}))


@pytest.mark.parametrize("factory", [LIF, LI, RecurrentLIF])
def test_negative_tau_syn(factory):
    # tau_syn = 0 is the single-state neuron; only negative values are errors.
    with pytest.raises(ValueError, match="tau_syn must be >= 0"):
        factory(3, **dict(NEURON, tau_syn=-1e-3))


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_non_finite_time_constants(value):
    with pytest.raises(ValueError, match="tau_mem must be finite"):
        LIF(3, **dict(NEURON, tau_mem=value))


@given(strategies.invalid_discrete_parameters())
def test_invalid_parameter_strategy_is_rejected(case):
    with pytest.raises(ValueError, match=case.argument):
        LIF(2, **case.params)


def test_other_constructor_errors():
    with pytest.raises(
        ValueError, match=r"reset must be one of \('subtract', 'hard'\), got 'zero'"
    ):
        LIF(3, **NEURON, reset="zero")
    with pytest.raises(ValueError, match="surrogate: unknown name 'relu'"):
        LIF(3, **NEURON, surrogate="relu")
    with pytest.raises(ValueError, match="v_th must be > v_reset"):
        LIF(3, **NEURON, v_th=0.5, v_reset=0.5)
    with pytest.raises(TypeError, match="tau_syn must be a real number"):
        LIF(3, **dict(NEURON, tau_syn="fast"))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        LIF(0, **NEURON)
    with pytest.raises(TypeError, match="size must be a positive integer"):
        LI(2.5, **NEURON)
    with pytest.raises(ValueError, match="size must be an int with project=True"):
        LIF((2, 3), **NEURON)
    with pytest.raises(ValueError, match="backward must be one of"):
        LIF(3, **NEURON, backward="bptt")
    with pytest.raises(ValueError, match="unroll must be a positive integer"):
        LIF(3, **NEURON, unroll=0)
    with pytest.raises(TypeError, match="weight_init must be a callable"):
        LIF(3, **NEURON, weight_init="glorot")
    with pytest.raises(TypeError, match="dtype must be a floating-point dtype"):
        LIF(3, **NEURON, dtype=jnp.int32)
    with pytest.raises(TypeError, match="record_membrane must be a bool"):
        LIF(3, **NEURON, record_membrane=1)


def test_init_shape_errors():
    with pytest.raises(
        ValueError, match=r"LIF\(3\) takes \(time, features\) inputs, got input shape \(6,\)"
    ):
        LIF(3, **NEURON).init(jax.random.PRNGKey(0), (6,))
    with pytest.raises(ValueError, match="project=True takes \\(time, features\\) inputs"):
        LIF(3, **NEURON).init(jax.random.PRNGKey(0), (6, 2, 2))
    with pytest.raises(
        ValueError, match=r"LI\(4\) with project=False .* must equal its size \(4,\)"
    ):
        LI(4, **NEURON, project=False).init(jax.random.PRNGKey(0), (6, 5))
    with pytest.raises(ValueError, match="weight_init returned shape"):
        LIF(3, **NEURON, weight_init=lambda k, s, d: jnp.zeros((2,), d)).init(
            jax.random.PRNGKey(0), (6, 2)
        )


def test_apply_input_errors(lif):
    layer, params = lif
    with pytest.raises(
        ValueError, match=r"LIF\(3\): inputs have features \(5,\) but the parameters expect \(2,\)"
    ):
        layer.apply(params, jnp.zeros((6, 5)))
    with pytest.raises(
        ValueError, match=r"LIF\(3\): inputs must be 2-dimensional.*batch with jax.vmap"
    ):
        layer.apply(params, jnp.zeros((4, 6, 2)))
    with pytest.raises(
        TypeError, match=r"LIF\(3\): inputs must have a floating-point dtype, got int32"
    ):
        layer.apply(params, jnp.zeros((6, 2), jnp.int32))
    with pytest.raises(TypeError, match="floating-point dtype, got bool"):
        layer.apply(params, np.zeros((6, 2), bool))
    with pytest.raises(ValueError, match=r"LIF\(3\): inputs contains 1 NaN/inf"):
        layer.apply(params, jnp.zeros((6, 2)).at[2, 1].set(jnp.nan))
    with pytest.raises(ValueError, match="inputs contains 1 NaN/inf"):
        layer.apply(params, jnp.zeros((6, 2)).at[0, 0].set(-jnp.inf))
    with pytest.raises(TypeError, match="inputs must be an array"):
        layer.apply(params, [[0.0, 0.0]])
    with pytest.raises(ValueError, match="takes no external data"):
        layer.apply(params, jnp.zeros((6, 2)), external=jnp.zeros(3))


def test_apply_param_errors(lif):
    layer, params = lif
    with pytest.raises(ValueError, match=r"params\['weight'\] contains 1 NaN/inf"):
        layer.apply({"weight": params["weight"].at[1, 1].set(jnp.nan)}, jnp.zeros((6, 2)))
    with pytest.raises(
        ValueError, match=r"params\['weight'\] has shape \(2, 4\), expected \(n_in, 3\)"
    ):
        layer.apply({"weight": jnp.zeros((2, 4))}, jnp.zeros((6, 2)))
    with pytest.raises(TypeError, match="floating-point"):
        layer.apply({"weight": jnp.zeros((2, 3), jnp.int32)}, jnp.zeros((6, 2)))
    with pytest.raises(ValueError, match="params has no 'weight'"):
        layer.apply({}, jnp.zeros((6, 2)))
    with pytest.raises(TypeError, match="params must be the dict returned by init"):
        layer.apply([params["weight"]], jnp.zeros((6, 2)))
    rec = RecurrentLIF(3, **NEURON)
    _, rparams = rec.init(jax.random.PRNGKey(0), (6, 2))
    with pytest.raises(
        ValueError, match=r"recurrent_weight'\] has shape \(2, 2\), expected \(3, 3\)"
    ):
        rec.apply(dict(rparams, recurrent_weight=jnp.zeros((2, 2))), jnp.zeros((6, 2)))
    with pytest.raises(ValueError, match="recurrent_weight'\\] contains 1 NaN/inf"):
        rec.apply(
            dict(rparams, recurrent_weight=rparams["recurrent_weight"].at[0, 0].set(jnp.inf)),
            jnp.zeros((6, 2)),
        )


def test_carry_errors(lif):
    layer, params = lif
    x = jnp.zeros((6, 2))
    with pytest.raises(ValueError, match=r"carry.v has shape \(4,\), expected \(3,\)"):
        layer.apply(params, x, carry=LIFState(jnp.zeros(4), jnp.zeros(3)))
    with pytest.raises(ValueError, match="carry must be None \\(rest\\) or the state tuple"):
        layer.apply(params, x, carry=jnp.zeros(3))
    with pytest.raises(ValueError, match="carry contains 1 NaN/inf"):
        layer.apply(params, x, carry=LIFState(jnp.zeros(3).at[0].set(jnp.nan), jnp.zeros(3)))
    with pytest.raises(ValueError, match=r"\(v, current, spikes\)"):
        RecurrentLIF(3, **NEURON).apply(
            RecurrentLIF(3, **NEURON).init(jax.random.PRNGKey(0), (6, 2))[1],
            x,
            carry=LIFState(jnp.zeros(3), jnp.zeros(3)),
        )


def test_checks_skip_tracers_but_shapes_still_checked(lif):
    layer, params = lif
    # Under jit values are unknown: NaN checks are skipped (no error, NaN propagates) ...
    out = jax.jit(lambda x: layer.apply(params, x)[0].v)(jnp.full((6, 2), jnp.nan))
    assert out.shape == (3,)
    # ... but shapes and dtypes are static and still validated.
    with pytest.raises(ValueError, match="inputs have features"):
        jax.jit(lambda x: layer.apply(params, x))(jnp.zeros((6, 4)))


def test_lif_dynamics_argument_errors():
    with pytest.raises(ValueError, match="dt must be > 0"):
        lif_dynamics(
            jnp.zeros((3, 2)), jnp.zeros(2), jnp.zeros(2), tau_syn=1.0, tau_mem=1.0, dt=-1.0
        )
