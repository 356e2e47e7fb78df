"""Slow, obviously-correct references, written independently of the kernels.

Values are computed in higher precision than the dtype under test: float64
for float32 inputs, ``np.longdouble`` (x87 80-bit: 64-bit significand) for
float64 inputs, and the formulas differ from the kernels' (which use
``exp(-|x|)`` and ``1 / (1 + e)``): libm's tanh and cosh, and
``sigmoid'(x) = sigmoid(x) * sigmoid(-x)``. ``test_references.py`` checks these
against mpmath.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

HAS_LONGDOUBLE = np.finfo(np.longdouble).nmant >= 63


def wide(dtype):
    """The type a reference is computed in for inputs of ``dtype``."""
    return np.float64 if np.dtype(dtype) == np.float32 else np.longdouble


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x)), 1 / ((1 + np.exp(-x)) * (1 + np.exp(x)))


def _tanh(x):
    with np.errstate(over="ignore"):
        c = np.cosh(x)
        return np.tanh(x), 1 / (c * c)


def _relu(x):
    # -0.0 and NaN pass through (x < 0 is False for both); f'(0) = 0.
    return np.where(x < 0, x.dtype.type(0), x), np.where(np.isnan(x), x, (x > 0).astype(x.dtype))


def _leaky(x, negative_slope):
    a = x.dtype.type(negative_slope)
    return np.where(x > 0, x, x * a), np.where(np.isnan(x), x, np.where(x > 0, x.dtype.type(1), a))


PIECEWISE_LINEAR = ("relu", "leaky_relu")

REFERENCES = {
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "relu": _relu,
    "leaky_relu": _leaky,
}


def reference(name, x, dtype, **params):
    """(f, f') of activation ``name`` at x (values of ``dtype``) in wider precision.

    Parameters are first rounded to ``dtype``, as the kernels receive them.
    The piecewise-linear functions are evaluated in ``dtype`` itself: their
    one IEEE multiply is correctly rounded, which is what "exact" means there
    (a wider product rounded twice could differ in the last bit).
    """
    if name in PIECEWISE_LINEAR:
        dtype = np.dtype(dtype)
        x = np.asarray(x, dtype)
        return REFERENCES[name](x, **{k: dtype.type(v) for k, v in params.items()})
    xw = np.asarray(x, dtype).astype(wide(dtype))
    params = {k: wide(dtype)(np.asarray(v, dtype)) for k, v in params.items()}
    return REFERENCES[name](xw, **params)


def ulp_error(actual, exact, dtype):
    """Error of ``actual`` in ULPs of ``dtype`` at ``exact``, where ``exact`` is normal.

    Returns (errors, mask of the elements measured).
    """
    dtype = np.dtype(dtype)
    finfo = np.finfo(dtype)
    exact = np.asarray(exact, np.longdouble)
    actual = np.asarray(actual, np.longdouble)
    normal = np.isfinite(exact) & (np.abs(exact) >= finfo.tiny)
    _, e = np.frexp(np.abs(exact[normal]))
    spacing = np.ldexp(np.longdouble(1), (e - (finfo.nmant + 1)).astype(np.int32))
    return np.abs(actual[normal] - exact[normal]) / spacing, normal


def prelu_reference(x, weight):
    """(y, dy/dx) with the weight broadcast along dim 1 (dim 0 for 1-D)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(weight, np.float64).reshape(-1)
    if w.size > 1:
        shape = [1] * x.ndim
        shape[1 if x.ndim >= 2 else 0] = w.size
        w = w.reshape(shape)
    # The slope is the derivative down to -inf; NaN stays NaN.
    slope = np.where(np.isnan(x), np.nan, w)
    return np.where(x > 0, x, w * x), np.where(x > 0, 1.0, slope)


def prelu_grad_weight_reference(g, x, weight):
    g = np.asarray(g, np.float64)
    x = np.asarray(x, np.float64)
    contrib = np.where(x > 0, 0.0, g * x)
    w = np.asarray(weight).reshape(-1)
    if w.size == 1:
        return np.array([contrib.sum()])
    axis = 1 if x.ndim >= 2 else 0
    other = tuple(i for i in range(x.ndim) if i != axis)
    return contrib.sum(axis=other)


_U32 = 0xFFFFFFFF


def _lowbias32(h):
    # C. Wellons' "lowbias32" integer hash, on Python ints.
    h ^= h >> 16
    h = (h * 0x7FEB352D) & _U32
    h ^= h >> 15
    h = (h * 0x846CA68B) & _U32
    return h ^ (h >> 16)


def rrelu_uniform_reference(i, dtype, seed):
    """RReLU's draw u in [0, 1) for element ``i`` (an exact Fraction), from the generator's description.

    As ``fastact._math`` documents it: two rounds of lowbias32, the first over
    the low 32 bits of i XOR the seed's low half, plus 0x9E3779B9; the
    second over that hash XOR (the high bits of i plus the seed's high half
    plus 0x85EBCA6B), all modulo 2^32. u keeps the top 24 bits of the hash
    for float32 and 31 for float64.
    """
    k0, k1 = seed & _U32, (seed >> 32) & _U32
    drop, bits = (8, 24) if np.dtype(dtype) == np.float32 else (1, 31)
    h = _lowbias32((((i & _U32) ^ k0) + 0x9E3779B9) & _U32)
    high = ((((i >> 32) + k1) & _U32) + 0x85EBCA6B) & _U32
    h = _lowbias32(h ^ high)
    return Fraction(h >> drop, 1 << bits)


def rrelu_slopes_reference(n, dtype, seed, lower=1 / 8, upper=1 / 3):
    """RReLU's training slopes for elements 0..n-1: ``lower + (upper - lower) * u``.

    ``lower`` and ``upper - lower`` are rounded to ``dtype`` first (as the
    kernels take them), and the slope once, from its exact rational value.
    """
    dtype = np.dtype(dtype)
    low = Fraction(float(dtype.type(lower)))
    width = Fraction(float(dtype.type(upper - lower)))
    out = np.empty(n, dtype)
    for i in range(n):
        exact = low + width * rrelu_uniform_reference(i, dtype, seed)
        # float(Fraction) is correctly rounded to float64; for float32 the
        # exact value has at most 50 significant bits, so float64 holds it.
        out[i] = dtype.type(float(exact))
    return out
