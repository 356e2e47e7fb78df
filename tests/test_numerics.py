"""The numerics contract, against the independent references."""

import warnings

import numpy as np
import pytest
from reference import HAS_LONGDOUBLE, reference, ulp_error
from tolerances import ELEMENTWISE, SMOOTH, ULP_TOLERANCE

import fastact as fa


def sweep(dtype, n=400_000, seed=0):
    """Inputs over the whole range: random bit patterns, dense bands, specials."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    info = np.finfo(dtype)
    itype = np.uint32 if dtype == np.float32 else np.uint64
    bits = rng.integers(0, np.iinfo(itype).max, n, dtype=itype, endpoint=True).view(dtype)
    bands = [rng.uniform(-s, s, n // 8).astype(dtype) for s in (1.0, 8.0, 50.0, 120.0, 800.0)]
    edges = np.array(
        [
            0.0,
            -0.0,
            0.625,
            -0.625,
            1e-30,
            -1e-30,
            1e30,
            -1e30,
            info.max,
            -info.max,
            info.tiny,
            -info.tiny,
            info.smallest_subnormal,
            -info.smallest_subnormal,
            87.0,
            88.7,
            89.0,
            103.0,
            104.0,
            709.0,
            745.0,
            746.0,
        ],
        dtype,
    )
    with np.errstate(over="ignore"):
        up, down = np.nextafter(edges, dtype.type(np.inf)), np.nextafter(edges, -dtype.type(np.inf))
    edges = np.concatenate([edges, up, down])
    x = np.concatenate([bits, *bands, edges])
    return x[np.isfinite(x)]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_value_and_derivative_within_contract(name, dtype):
    if dtype == np.float64 and not HAS_LONGDOUBLE:
        pytest.skip("float64 references need an 80-bit np.longdouble")
    x = sweep(dtype)
    act = fa.ACTIVATIONS[name]
    y, d = act.fused(x)
    ry, rd = reference(name, x, dtype, **act.params)
    for got, exact, what in ((y, ry, "f"), (d, rd, "f'")):
        assert not np.isnan(got).any()
        if name in SMOOTH:
            err, mask = ulp_error(got, exact, dtype)
            worst = int(np.argmax(err))
            assert err[worst] <= ULP_TOLERANCE[dtype], (
                f"{name} {what}: {err[worst]} ULP at x={x[mask][worst]!r}"
            )
            # Where the exact result is subnormal, no flush to zero.
            tail = np.abs(exact) < np.finfo(dtype).tiny
            tail &= np.abs(exact) > 2 * np.finfo(dtype).smallest_subnormal
            assert np.all(got[tail] != 0), f"{name} {what}: subnormal results flushed to zero"
        else:
            expected = exact.astype(dtype)
            assert np.array_equal(got, expected), f"{name} {what}: not exact"
            assert np.array_equal(np.signbit(got), np.signbit(expected)), f"{name} {what}: sign of zero"


@pytest.mark.parametrize("mode", ["forward", "derivative", "backward"])
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_single_modes_match_fused(name, mode, dtype):
    x = sweep(dtype, n=20_000, seed=1)
    act = fa.ACTIVATIONS[name]
    y, d = act.fused(x)
    if mode == "forward":
        np.testing.assert_array_equal(act(x), y)
    elif mode == "derivative":
        np.testing.assert_array_equal(act.derivative(x), d)
    else:
        g = np.random.default_rng(2).standard_normal(x.size).astype(dtype)
        np.testing.assert_array_equal(act.backward(g, x), g * d)


def test_saturated_derivatives_stay_nonzero():
    f32 = np.float32
    # tanh'(10) = 4 e^-20 / (1 + e^-20)^2 and sigmoid'(30), exact values from float64.
    for name, x in (
        ("tanh", 10.0),
        ("sigmoid", 30.0),
        ("sigmoid", -30.0),
        ("tanh", -40.0),
        ("sigmoid", 80.0),
    ):
        d = fa.ACTIVATIONS[name].derivative(np.array([x], f32))
        _, rd = reference(name, np.array([x], f32), f32)
        err, mask = ulp_error(d, rd, f32)
        assert mask.all() and err.max() <= ULP_TOLERANCE[np.dtype(f32)], (name, x, d, rd)
        assert d[0] > 0
    assert fa.tanh.derivative(f32(10.0)) == pytest.approx(8.24e-9, rel=1e-3)
    assert fa.sigmoid.derivative(f32(30.0)) == pytest.approx(9.36e-14, rel=1e-3)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_no_overflow_no_warnings(name, dtype):
    x = np.array([-1000.0, 1000.0, -np.finfo(dtype).max, np.finfo(dtype).max, -1e30, 1e30], dtype)
    act = fa.ACTIVATIONS[name]
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        y, d = act.fused(x)
        g = act.backward(np.ones_like(x), x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(d)) and np.all(np.isfinite(g))
    if name == "tanh":
        assert y[1] == 1 and y[0] == -1
    if name == "sigmoid":
        assert y[0] == 0 and y[1] == 1


LIMITS = {
    # name: (f(-inf), f(+inf), f'(-inf), f'(+inf))
    "sigmoid": (0.0, 1.0, 0.0, 0.0),
    "tanh": (-1.0, 1.0, 0.0, 0.0),
    "relu": (0.0, np.inf, 0.0, 1.0),
    "leaky_relu": (-np.inf, np.inf, 0.01, 1.0),
}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_specials(name, dtype):
    act = fa.ACTIVATIONS[name]
    x = np.array([np.nan, -np.inf, np.inf], dtype)
    y, d = act.fused(x)
    assert np.isnan(y[0]) and np.isnan(d[0]), "NaN in gives NaN out"
    assert np.isnan(act.backward(np.ones(1, dtype), x[:1])[0])
    f_lo, f_hi, d_lo, d_hi = LIMITS[name]
    assert y[1] == f_lo and y[2] == f_hi
    assert d[1] == dtype.type(d_lo) and d[2] == d_hi


def test_kinks_follow_torch(dtype):
    zero = np.array([0.0, -0.0], dtype)
    assert np.all(fa.relu.derivative(zero) == 0)
    assert np.all(fa.leaky_relu.derivative(zero) == dtype.type(0.01))
    assert np.all(fa.leaky_relu.derivative(zero, negative_slope=0.2) == dtype.type(0.2))
    # -0.0 is kept where torch keeps it.
    assert np.signbit(fa.relu(zero))[1] and not np.signbit(fa.relu(zero))[0]
    assert np.signbit(fa.tanh(zero))[1]
    assert fa.sigmoid(zero).tolist() == [0.5, 0.5]
    assert fa.sigmoid.derivative(zero).tolist() == [0.25, 0.25]
    assert fa.tanh.derivative(zero).tolist() == [1.0, 1.0]


def test_subnormal_and_tiny_inputs(dtype):
    info = np.finfo(dtype)
    x = np.array([info.smallest_subnormal, -info.smallest_subnormal, 1e-30, -1e-30, info.tiny], dtype)
    np.testing.assert_array_equal(fa.tanh(x), x)  # tanh(x) rounds to x
    np.testing.assert_array_equal(fa.sigmoid(x), np.full(x.shape, 0.5, dtype))
    np.testing.assert_array_equal(fa.relu(x), np.where(x > 0, x, 0).astype(dtype))
    np.testing.assert_array_equal(fa.tanh.derivative(x), np.ones_like(x))


def test_identities_between_functions(dtype):
    x = np.linspace(-20, 20, 4001, dtype=dtype)
    # tanh(x) = 2 sigmoid(2x) - 1 and sigmoid'(x) = sigmoid(x) sigmoid(-x), to a few ULP.
    tol = 16 * np.finfo(dtype).eps
    np.testing.assert_allclose(fa.tanh(x), 2 * fa.sigmoid(2 * x) - 1, atol=tol)
    np.testing.assert_allclose(fa.sigmoid.derivative(x), fa.sigmoid(x) * fa.sigmoid(-x), rtol=tol)
    np.testing.assert_allclose(fa.tanh.derivative(x / 2), 4 * fa.sigmoid.derivative(x), rtol=tol)
