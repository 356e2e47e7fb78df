"""PReLU's channel weights and grad_weight; RReLU's seeded random slopes."""

import numba
import numpy as np
import pytest
from reference import (
    prelu_grad_weight_reference,
    prelu_reference,
    reference,
    rrelu_slopes_reference,
    rrelu_uniform_reference,
)
from tolerances import GRAD_WEIGHT_RTOL

import fastact as fa

SHAPES = [
    ((17,), 17),  # 1-D: channels on dim 0
    ((5, 7), 7),  # (N, C): weight along the contiguous axis
    ((4, 3, 3), 3),  # shape[1] == shape[-1]: channels are dim 1, not the last dim
    ((2, 6, 5, 4), 6),
    ((3, 4, 1), 4),
    ((64, 9, 300), 9),  # large enough to run the parallel kernels
    ((40_000, 3), 3),
    ((2, 3, 5), 1),  # one shared weight
    ((), 1),
]


@pytest.mark.parametrize("shape, channels", SHAPES, ids=str)
def test_prelu_against_reference(shape, channels, dtype):
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(0.05, 0.5, channels).astype(dtype)
    ry, rd = prelu_reference(x, w)
    y, d = fa.prelu.fused(x, w)
    np.testing.assert_array_equal(y, ry.astype(dtype))
    np.testing.assert_array_equal(d, rd.astype(dtype))
    np.testing.assert_array_equal(fa.prelu(x, w), y)
    np.testing.assert_array_equal(fa.prelu.derivative(x, w), d)
    gx, gw = fa.prelu.backward(g, x, w)
    np.testing.assert_array_equal(gx, (g * rd).astype(dtype))
    assert gw.shape == (channels,) and gw.dtype == dtype
    tol = GRAD_WEIGHT_RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(
        gw, prelu_grad_weight_reference(g, x, w), rtol=tol, atol=tol * np.abs(g * x).sum()
    )


def test_prelu_strided_input_and_out(dtype):
    rng = np.random.default_rng(1)
    x = rng.uniform(-4, 4, (6, 4, 8)).astype(dtype).transpose(2, 1, 0)  # (8, 4, 6), channels 4
    w = np.array([0.1, 0.2, 0.3, 0.4], dtype)
    out = np.empty((6, 4, 8), dtype).transpose(2, 1, 0)
    assert fa.prelu(x, w, out=out) is out
    np.testing.assert_array_equal(out, prelu_reference(x, w)[0].astype(dtype))


def test_prelu_weight_inside_the_output(dtype):
    # The weights read by every thread lie in the buffer being written: they
    # are copied first, as an overlapping input is.
    channels, rows = 4, 1 << 14
    x = np.random.default_rng(5).uniform(-4, 0, (rows, channels)).astype(dtype)
    w = np.array([0.1, 0.2, 0.3, 0.4], dtype)
    want_y = prelu_reference(x, w)[0].astype(dtype)
    buf = np.concatenate([w, x.ravel()])
    got = fa.prelu(
        buf[channels:].reshape(rows, channels), buf[:channels], out=buf[: x.size].reshape(rows, channels)
    )
    np.testing.assert_array_equal(got, want_y)
    buf = np.concatenate([w, x.ravel()])
    g = np.ones_like(x)
    gx, gw = fa.prelu.backward(
        g, buf[channels:].reshape(rows, channels), buf[:channels], out=buf[: x.size].reshape(rows, channels)
    )
    np.testing.assert_array_equal(gx, np.broadcast_to(w, x.shape))
    np.testing.assert_allclose(gw, x.sum(axis=0), rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_prelu_grad_weight_is_deterministic_across_threads():
    rng = np.random.default_rng(2)
    cases = [((300, 8, 500), 8), ((200_000, 4), 4), ((1_000_000,), 1)]
    for shape, c in cases:
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        w = np.full(c, 0.25, np.float32)
        results = []
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            try:
                results.append(fa.prelu.backward(g, x, w)[1])
            finally:
                numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        results.append(fa.prelu.backward(g, x, w)[1])
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0])


def test_prelu_grad_weight_is_the_same_for_any_memory_layout():
    """The reduction follows the logical (C-order) positions, not the order in memory."""
    rng = np.random.default_rng(4)
    for shape, c in (((300, 500), 1), ((300, 500), 500), ((40, 6, 50), 6), ((40, 6, 50), 1)):
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        w = np.full(c, 0.25, np.float32)
        want = fa.prelu.backward(g, x, w)
        for lay in (np.asfortranarray, lambda a: np.repeat(a, 2, axis=-1)[..., ::2]):
            for gl, xl in ((lay(g), lay(x)), (g, lay(x)), (lay(g), x)):
                got = fa.prelu.backward(gl, xl, w)
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1], want[1], err_msg=f"shape {shape}, {c} weights")


def test_prelu_backward_fills_a_pair_of_out_buffers(dtype):
    rng = np.random.default_rng(6)
    x = rng.uniform(-4, 4, (50, 3, 7)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    w = np.array([0.1, 0.2, 0.3], dtype)
    want_gx, want_gw = fa.prelu.backward(g, x, w)
    gx_buf, gw_buf = np.empty_like(x), np.empty(3, dtype)
    gx, gw = fa.prelu.backward(g, x, w, out=(gx_buf, gw_buf))
    assert gx is gx_buf and gw is gw_buf
    np.testing.assert_array_equal(gx, want_gx)
    np.testing.assert_array_equal(gw, want_gw)
    # Either may be None (allocated), a list is a pair too, and a buffer
    # may be strided or in the other byte order.
    swapped = np.zeros(6, np.dtype(dtype).newbyteorder())[::2]
    gx, gw = fa.prelu.backward(g, x, w, out=[None, swapped])
    assert gw is swapped
    np.testing.assert_array_equal(gx, want_gx)
    np.testing.assert_array_equal(gw, want_gw)
    gx, gw = fa.prelu.backward(g, x, w, out=(gx_buf, None))
    assert gx is gx_buf and gw is not gw_buf
    np.testing.assert_array_equal(gw, want_gw)
    # The grad_weight buffer is filled after grad_x is complete, so it may
    # be the weight itself (an update in place of the weight's memory).
    w_copy = w.copy()
    fa.prelu.backward(g, x, w_copy, out=(None, w_copy))
    np.testing.assert_array_equal(w_copy, want_gw)
    # Empty input: grad_weight is zero.
    empty = np.empty((0, 3), dtype)
    assert fa.prelu.backward(empty, empty, w, out=(None, gw_buf))[1] is gw_buf
    np.testing.assert_array_equal(gw_buf, 0)


def test_prelu_backward_bad_out_pairs(dtype):
    x = np.ones((4, 3), dtype)
    w = np.full(3, 0.25, dtype)
    gx = np.empty_like(x)
    cases = [
        ((gx, np.empty(4, dtype)), ValueError, r"out\[1\] has shape \(4,\), expected \(3,\)"),
        ((gx, np.empty(3, np.complex64)), TypeError, r"out\[1\] has dtype complex64"),
        ((gx, np.zeros(3, dtype)[::-1]), None, None),  # reversed: fine
        (
            (gx, np.lib.stride_tricks.as_strided(np.zeros(1, dtype), (3,), (0,))),
            ValueError,
            r"out\[1\] has strides \(0,\) that make elements share memory",
        ),
        ((gx, gx.ravel()[3:6]), ValueError, "the output buffers overlap each other"),
        ((np.empty((3, 4), dtype), None), ValueError, r"out\[0\] has shape \(3, 4\)"),
        ((np.empty((4, 3), np.float16), None), TypeError, r"out\[0\] has dtype float16"),
        ((gx, gx, gx), TypeError, "out must be the grad_x array or a pair"),
        ((gx,), TypeError, "out must be the grad_x array or a pair"),
        ((gx, [0.0, 0.0, 0.0]), TypeError, r"out\[1\] must be a numpy.ndarray"),
    ]
    read_only = np.empty(3, dtype)
    read_only.flags.writeable = False
    cases.append(((gx, read_only), ValueError, r"out\[1\] is read-only"))
    for out, error, message in cases:
        if error is None:
            got = fa.prelu.backward(x, x, w, out=out)[1]
            assert got is out[1]
            np.testing.assert_array_equal(got, fa.prelu.backward(x, x, w)[1])
            continue
        with pytest.raises(error, match=rf"^prelu.backward: {message}"):
            fa.prelu.backward(x, x, w, out=out)


def test_prelu_bad_weights():
    x = np.zeros((2, 3, 4))
    with pytest.raises(
        ValueError, match=r"weight has 4 values, but input of shape \(2, 3, 4\) has 3 channels on dim 1"
    ):
        fa.prelu(x, np.ones(4))
    with pytest.raises(ValueError, match="1-D"):
        fa.prelu(x, np.ones((3, 1)))
    with pytest.raises(ValueError, match="0-d input"):
        fa.prelu(np.float64(1.0), np.ones(2))
    with pytest.raises(TypeError, match="complex"):
        fa.prelu(x, np.ones(3, complex))
    with pytest.raises(TypeError):
        fa.prelu(x, np.ones(3), negative_slope=0.1)


def test_rrelu_eval_is_leaky_relu_with_mean_slope(dtype):
    x = np.random.default_rng(3).uniform(-5, 5, 100_000).astype(dtype)
    y, d = fa.rrelu.fused(x, lower=0.1, upper=0.3)
    ly, ld = fa.leaky_relu.fused(x, negative_slope=float(dtype.type(0.1)) / 2 + float(dtype.type(0.3)) / 2)
    np.testing.assert_array_equal(y, ly)
    np.testing.assert_array_equal(d, ld)
    ry, rd = reference("leaky_relu", x, dtype, negative_slope=(1 / 8 + 1 / 3) / 2)
    np.testing.assert_array_equal(fa.rrelu(x), ry)


def test_rrelu_training_slopes(dtype):
    n = 1_000_003
    x = -np.ones(n, dtype)
    y, slope = fa.rrelu.fused(x, training=True, seed=1234)
    assert slope.dtype == dtype
    # One slope per element from U(lower, upper): range, mean, spread, no repeats in a row.
    assert slope.min() >= dtype.type(1 / 8) and slope.max() <= dtype.type(1 / 3)
    width = 1 / 3 - 1 / 8
    assert abs(slope.mean() - (1 / 8 + 1 / 3) / 2) < 5 * width / np.sqrt(12 * n)
    assert abs(slope.std() - width / np.sqrt(12)) < 0.01 * width
    hist = np.histogram(slope, bins=20, range=(1 / 8, 1 / 3))[0]
    assert hist.min() > 0.9 * n / 20
    assert np.corrcoef(slope[:-1], slope[1:])[0, 1] < 0.01
    np.testing.assert_array_equal(y, x * slope)
    # Reproducible from the seed, on any thread count and by every mode.
    numba.set_num_threads(1)
    try:
        y1, s1 = fa.rrelu.fused(x, training=True, seed=1234)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(s1, slope)
    np.testing.assert_array_equal(fa.rrelu.derivative(x, training=True, seed=1234), slope)
    np.testing.assert_array_equal(fa.rrelu(x, training=True, seed=1234), y)
    g = np.full(n, 2.0, dtype)
    np.testing.assert_array_equal(fa.rrelu.backward(g, x, training=True, seed=1234), g * slope)
    other = fa.rrelu.derivative(x, training=True, seed=1235)
    assert np.mean(other == slope) < 0.01
    # Positive inputs: identity, derivative 1 (the noise buffer of torch's rrelu).
    yp, dp = fa.rrelu.fused(np.ones(10, dtype), training=True, seed=5)
    assert np.all(yp == 1) and np.all(dp == 1)


def test_rrelu_training_slopes_are_the_documented_generator(dtype):
    """Slopes for a seed, bit for bit: the generator is part of reproducibility across versions."""
    n = 2000
    for seed in (0, 1234, 2**64 - 1, 0x0123456789ABCDEF):
        want = rrelu_slopes_reference(n, dtype, seed)
        np.testing.assert_array_equal(fa.rrelu.derivative(-np.ones(n, dtype), training=True, seed=seed), want)
    want = rrelu_slopes_reference(n, dtype, 99, lower=0.01, upper=0.5)
    got = fa.rrelu.fused(-np.ones(n, dtype), training=True, seed=99, lower=0.01, upper=0.5)[1]
    np.testing.assert_array_equal(got, want)
    # Indices beyond 2^32 (no array that long here): the CPU draw itself.
    from numba import njit

    from fastact._math import mathlib

    uniform = mathlib(dtype).uniform

    @njit
    def draws(indices, k0, k1):
        out = np.empty(indices.size, dtype)
        for j in range(indices.size):
            out[j] = uniform(indices[j], k0, k1)
        return out

    seed = 0x0123456789ABCDEF
    indices = np.array([2**32 - 1, 2**32, 2**32 + 5, 2**40 + 3, 2**62 + 11], np.int64)
    got = draws(indices, np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32))
    want = [float(rrelu_uniform_reference(int(i), dtype, seed)) for i in indices]
    np.testing.assert_array_equal(got, np.array(want, dtype))


def test_rrelu_training_slopes_follow_the_logical_position_in_any_layout(dtype):
    """An element's slope depends on its C-order position, not on how x or grad_out lie in memory."""
    x = -np.arange(1, 3 * 4 * 5 + 1, dtype=dtype).reshape(3, 4, 5)
    kw = dict(training=True, seed=77)
    y, slope = fa.rrelu.fused(x, **kw)
    g = np.linspace(0.5, 2.0, x.size, dtype=dtype).reshape(x.shape)
    layouts = {
        "Fortran order": lambda a: np.asfortranarray(a),
        "axes swapped": lambda a: np.ascontiguousarray(a.transpose(0, 2, 1)).transpose(0, 2, 1),
        "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
        "C order": lambda a: a.copy(),
    }
    for name, lay in layouts.items():
        xl = lay(x)
        assert np.array_equal(xl, x)
        np.testing.assert_array_equal(fa.rrelu(xl, **kw), y, err_msg=name)
        np.testing.assert_array_equal(fa.rrelu.derivative(xl, **kw), slope, err_msg=name)
        for got, want in zip(fa.rrelu.fused(xl, **kw), (y, slope), strict=True):
            np.testing.assert_array_equal(got, want, err_msg=name)
        # grad_out in C order and in x's own layout; out buffers in x's layout.
        for gl in (g, lay(g)):
            np.testing.assert_array_equal(fa.rrelu.backward(gl, xl, **kw), g * slope, err_msg=name)
        outs = (lay(np.empty_like(x)), lay(np.empty_like(x)))
        got = fa.rrelu.fused(xl, out=outs, **kw)
        assert got[0] is outs[0] and got[1] is outs[1]
        np.testing.assert_array_equal(outs[0], y, err_msg=name)
        np.testing.assert_array_equal(outs[1], slope, err_msg=name)
        inplace = lay(x)
        assert fa.rrelu(inplace, out=inplace, **kw) is inplace
        np.testing.assert_array_equal(inplace, y, err_msg=name)


def test_rrelu_fresh_seed_and_errors():
    x = -np.ones(1000)
    a = fa.rrelu.derivative(x, training=True)
    b = fa.rrelu.derivative(x, training=True)
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="seed"):
        fa.rrelu.backward(np.ones(3), np.ones(3), training=True)
    with pytest.raises(ValueError, match="lower"):
        fa.rrelu(x, lower=0.5, upper=0.1)
    for bounds in ({"lower": -np.inf}, {"upper": np.inf}, {"lower": np.nan}):
        with pytest.raises(ValueError, match="must be finite"):
            fa.rrelu.fused(x, training=True, seed=3, **bounds)
    with pytest.raises(TypeError, match="training"):
        fa.rrelu(x, training=1)
    with pytest.raises(TypeError, match="seed"):
        fa.rrelu(x, training=True, seed=1.5)
