"""Shapes, strides, conversions, out= buffers and clear errors on bad input."""

import pickle

import numpy as np
import pytest
from reference import reference
from tolerances import ELEMENTWISE, MODES

import fastact as fa


def layouts(dtype):
    base = np.random.default_rng(0).uniform(-6, 6, (6, 10)).astype(dtype)
    cube = np.random.default_rng(1).uniform(-6, 6, (4, 5, 6)).astype(dtype)
    return {
        "c": base,
        "transposed": base.T,
        "sliced": base[::2, 1::3],
        "reversed": base[::-1, ::-1],
        "fortran": np.asfortranarray(base),
        "3d-permuted": cube.transpose(2, 0, 1),
        "0d": np.array(0.75, dtype),
        "empty": np.empty((0, 3), dtype),
        "1d-large": np.random.default_rng(2).uniform(-6, 6, 100_003).astype(dtype),
    }


def expected(name, mode, x, g, dtype):
    y, d = reference(name, x, dtype, **fa.ACTIVATIONS[name].params)
    y, d = np.asarray(y).astype(dtype), np.asarray(d).astype(dtype)
    return {"forward": y, "derivative": d, "fused": (y, d), "backward": g * d}[mode]


def call(act, mode, x, g=None, **kw):
    if mode == "backward":
        return act.backward(g, x, **kw)
    return getattr(act, mode)(x, **kw) if mode != "forward" else act(x, **kw)


@pytest.mark.parametrize("layout", list(layouts(np.float32)))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_any_shape_and_strides(name, mode, layout, dtype):
    x = layouts(dtype)[layout]
    g = np.random.default_rng(3).standard_normal(x.shape).astype(dtype)
    got = call(fa.ACTIVATIONS[name], mode, x, g)
    want = expected(name, mode, x, g, dtype)
    for a, b in zip(got if mode == "fused" else (got,), want if mode == "fused" else (want,), strict=True):
        assert np.asarray(a).dtype == dtype and np.shape(a) == x.shape
        np.testing.assert_allclose(a, b, rtol=4 * np.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("layout", ["c", "transposed", "sliced", "fortran"])
def test_out_buffers_of_any_layout_are_filled_and_returned(layout, dtype):
    x = layouts(dtype)["c"]
    outs = {
        "c": lambda: np.empty_like(x),
        "transposed": lambda: np.empty(x.shape[::-1], dtype).T,
        "sliced": lambda: np.empty((x.shape[0], 2 * x.shape[1]), dtype)[:, ::2],
        "fortran": lambda: np.empty(x.shape, dtype, order="F"),
    }[layout]
    y, d = outs(), outs()
    ry, rd = fa.sigmoid.fused(x)
    got = fa.sigmoid.fused(x, out=(y, d))
    assert got[0] is y and got[1] is d
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(d, rd)
    o = outs()
    assert fa.tanh(x, out=o) is o
    np.testing.assert_array_equal(o, fa.tanh(x))
    o = outs()
    assert fa.relu.backward(x, x, out=o) is o
    assert fa.tanh.derivative(x, out=o) is o


def test_in_place_and_overlapping_buffers(dtype):
    x = np.linspace(-3, 3, 50_001, dtype=dtype)
    want = fa.relu(x)
    y = x.copy()
    assert fa.relu(y, out=y) is y
    np.testing.assert_array_equal(y, want)
    # An output that overlaps its input at an offset must not read written values.
    buf = np.linspace(-3, 3, 50_002, dtype=dtype)
    want = fa.sigmoid(buf[1:].copy())
    fa.sigmoid(buf[1:], out=buf[:-1])
    np.testing.assert_array_equal(buf[:-1], want)
    buf = np.linspace(-3, 3, 50_002, dtype=dtype)
    want = fa.tanh.derivative(buf[:-1].copy())
    fa.tanh.derivative(buf[:-1], out=buf[1:])
    np.testing.assert_array_equal(buf[1:], want)
    # fused in place: y written over x.
    z = x.copy()
    ry, rd = fa.tanh.fused(x)
    d = np.empty_like(z)
    fa.tanh.fused(z, out=(z, d))
    np.testing.assert_array_equal(z, ry)
    np.testing.assert_array_equal(d, rd)


def test_scalars_lists_and_conversions():
    assert isinstance(fa.sigmoid(0.0), np.float64) and fa.sigmoid(0.0) == 0.5
    assert fa.relu(np.float32(-2)) == 0 and fa.relu(np.float32(-2)).dtype == np.float32
    assert fa.tanh([0.0, 1000.0]).tolist() == [0.0, 1.0]
    y, d = fa.sigmoid.fused(3)
    assert y.dtype == np.float64 and d.dtype == np.float64
    for arr in (np.array([1, -2, 3], np.int8), np.array([1, 2], np.uint64), np.array([True, False])):
        out = fa.relu(arr)
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, np.maximum(arr.astype(np.float64), 0))
    assert fa.sigmoid(np.empty(0)).shape == (0,)
    assert fa.sigmoid.fused(np.empty((2, 0), np.float32))[1].dtype == np.float32


def test_backward_promotes_like_numpy():
    g = np.ones(4, np.float64)
    x = np.linspace(-1, 1, 4, dtype=np.float32)
    assert fa.tanh.backward(g, x).dtype == np.float64
    assert fa.tanh.backward(g.astype(np.float32), x).dtype == np.float32


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_non_native_byte_order_in_and_out(name, mode, dtype):
    # As NumPy's ufuncs: big-endian data (from files, network formats) is
    # read and written correctly; results come in native order.
    x = layouts(dtype)["c"]
    g = np.random.default_rng(4).standard_normal(x.shape).astype(dtype)
    swapped = dtype.newbyteorder("S")
    act = fa.ACTIVATIONS[name]
    want = call(act, mode, x, g)
    got = call(act, mode, x.astype(swapped), g.astype(swapped))
    for a, b in zip(got if mode == "fused" else (got,), want if mode == "fused" else (want,), strict=True):
        assert a.dtype == dtype and a.dtype.isnative
        np.testing.assert_array_equal(a, b)
    outs = [np.empty(x.shape, swapped) for _ in range(2 if mode == "fused" else 1)]
    got = call(act, mode, x, g, out=tuple(outs) if mode == "fused" else outs[0])
    for o, a, b in zip(
        outs, got if mode == "fused" else (got,), want if mode == "fused" else (want,), strict=True
    ):
        assert a is o and o.dtype == swapped
        np.testing.assert_array_equal(o, b)


def test_non_native_prelu_weight_and_outputs(dtype):
    x = layouts(dtype)["c"]
    w = np.linspace(0.1, 0.4, x.shape[1]).astype(dtype)
    swapped = dtype.newbyteorder("S")
    gx, gw = fa.prelu.backward(np.ones_like(x), x, w)
    sgx, sgw = fa.prelu.backward(np.ones(x.shape, swapped), x.astype(swapped), w.astype(swapped))
    np.testing.assert_array_equal(sgx, gx)
    np.testing.assert_array_equal(sgw, gw)
    out = np.empty(x.shape, swapped)
    assert fa.prelu(x, w.astype(swapped), out=out) is out
    np.testing.assert_array_equal(out, fa.prelu(x, w))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_ndarray_subclasses(dtype, tmp_path):
    x = layouts(dtype)["c"]
    want_y, want_d = fa.tanh.fused(x)
    m = np.matrix(x)
    y, d = fa.tanh.fused(m)
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(d, want_d)
    np.testing.assert_array_equal(fa.sigmoid.backward(m, m), fa.sigmoid.backward(x, x))
    # A matrix out is filled through a plain view and returned as given.
    out = np.matrix(np.empty(x.shape, dtype))
    assert fa.tanh(x, out=out) is out
    np.testing.assert_array_equal(np.asarray(out), want_y)
    z = np.matrix(x.copy())
    assert fa.tanh(z, out=z) is z
    np.testing.assert_array_equal(np.asarray(z), want_y)
    mm = np.memmap(tmp_path / "x.bin", dtype, "w+", shape=x.shape)
    mm[...] = x
    out = np.memmap(tmp_path / "y.bin", dtype, "w+", shape=x.shape)
    assert fa.tanh(mm, out=out) is out
    np.testing.assert_array_equal(out, want_y)


@pytest.mark.parametrize(
    "bad, word",
    [
        (np.array([1 + 2j]), "complex128"),
        (np.array(["a"]), "<U1"),
        (np.array([object()]), "object"),
        (np.array([1.0], np.float16), "float16"),
        ("text", "<U4"),
    ],
)
def test_unsupported_dtypes_raise_type_error_naming_the_dtype(bad, word):
    for method in (fa.sigmoid, fa.sigmoid.derivative, fa.sigmoid.fused):
        with pytest.raises(TypeError, match=word):
            method(bad)
    with pytest.raises(TypeError, match=word):
        fa.sigmoid.backward(bad, bad)


def test_bad_out_buffers():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"shape \(4, 3\), expected \(3, 4\)"):
        fa.tanh(x, out=np.empty((4, 3), np.float32))
    with pytest.raises(TypeError, match="dtype float64, expected float32"):
        fa.tanh(x, out=np.empty((3, 4)))
    ro = np.empty((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fa.tanh(x, out=ro)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        fa.tanh(x, out=[0.0] * 12)
    with pytest.raises(TypeError, match="pair"):
        fa.tanh.fused(x, out=np.empty_like(x))
    with pytest.raises(TypeError, match="pair"):
        fa.tanh.fused(x, out=(np.empty_like(x),))
    with pytest.raises(ValueError, match=r"^tanh\.fused: the output buffers overlap"):
        buf = np.empty_like(x)
        fa.tanh.fused(x, out=(buf, buf))
    with pytest.raises(ValueError, match=r"grad_out has shape \(3,\)"):
        fa.tanh.backward(np.ones(3, np.float32), x)


def test_out_buffers_whose_elements_share_memory_raise(dtype):
    # as_strided makes writable views in which several elements are one
    # place in memory; such a buffer cannot hold one result per element.
    as_strided = np.lib.stride_tricks.as_strided
    size = np.dtype(dtype).itemsize
    x = np.linspace(-3, 3, 12, dtype=dtype).reshape(3, 4)
    cell = np.zeros(1, dtype)
    bad = {
        "zero stride": lambda: as_strided(cell, x.shape, (0, 0)),
        "repeated rows": lambda: as_strided(np.zeros(4, dtype), x.shape, (0, size)),
        "rows one element apart": lambda: as_strided(np.zeros(6, dtype), x.shape, (size, size)),
        "half-element steps": lambda: as_strided(np.zeros(12, dtype), x.shape, (4 * size, size // 2)),
    }
    for make in bad.values():
        with pytest.raises(ValueError, match=r"^tanh\.forward: out has strides .* share memory"):
            fa.tanh(x, out=make())
        with pytest.raises(ValueError, match=r"^sigmoid\.fused: out\[1\] has strides .* share memory"):
            fa.sigmoid.fused(x, out=(np.empty_like(x), make()))
        with pytest.raises(ValueError, match=r"^prelu\.backward: out has strides .* share memory"):
            fa.prelu.backward(x, x, np.ones(4, dtype), out=make())
    # Strides that interleave without sharing a byte make a valid buffer:
    # rows start 5 elements apart and hold every other element, so row 0
    # covers 0, 2, 4, 6 and row 1 covers 5, 7, 9, 11.
    out = as_strided(np.zeros(17, dtype), x.shape, (5 * size, 2 * size))
    places = {out[i : i + 1, j : j + 1].ctypes.data for i, j in np.ndindex(x.shape)}
    assert len(places) == x.size
    assert fa.relu(x, out=out) is out
    np.testing.assert_array_equal(out, np.maximum(x, 0))


def test_unknown_and_bad_keywords():
    with pytest.raises(TypeError, match="negative_slope"):
        fa.relu(np.ones(2), negative_slope=0.1)
    with pytest.raises(TypeError, match="unexpected keyword"):
        fa.leaky_relu.fused(np.ones(2), slope=0.1)
    with pytest.raises(TypeError, match="real number"):
        fa.leaky_relu(np.ones(2), negative_slope="0.1")
    with pytest.raises(
        TypeError, match=r"^sigmoid\.forward\(\) takes only x positionally, got 1 more .* as out="
    ):
        fa.sigmoid(np.ones(2), np.ones(2))  # out is keyword-only
    # torch's F.leaky_relu(x, 0.2) passes the slope positionally; here it is a keyword.
    with pytest.raises(TypeError, match=r"^leaky_relu\.forward\(\) .* by name \(negative_slope=0\.01\)"):
        fa.leaky_relu(np.ones(2), 0.2)
    with pytest.raises(TypeError, match=r"^rrelu\.fused\(\) .* got 2 more positional arguments"):
        fa.rrelu.fused(np.ones(2), 0.1, 0.3)
    with pytest.raises(TypeError, match=r"^tanh\.backward\(\) takes only grad_out and x positionally"):
        fa.tanh.backward(np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match=r"^relu\.derivative\(\)"):
        fa.relu.derivative(np.ones(2), np.ones(2))
    w = np.ones(1)
    with pytest.raises(TypeError, match=r"^prelu\.forward\(\) takes only x and weight positionally"):
        fa.prelu(np.ones(2), w, np.ones(2))
    with pytest.raises(TypeError, match=r"^prelu\.fused\(\) .* pass the output as out="):
        fa.prelu.fused(np.ones(2), w, np.ones(2))
    with pytest.raises(
        TypeError, match=r"^prelu\.backward\(\) takes only grad_out, x and weight positionally"
    ):
        fa.prelu.backward(np.ones(2), np.ones(2), w, np.ones(2))


def test_parameters_beyond_the_range_of_the_dtype_raise(recwarn):
    # Cast to the data's dtype, they would become inf with an overflow warning.
    x = np.array([-1.0, 2.0], np.float32)
    with pytest.raises(ValueError, match=r"negative_slope = 1e\+300 is beyond the range of float32"):
        fa.leaky_relu(x, negative_slope=1e300)
    with pytest.raises(
        ValueError, match=r"negative_slope = 115052360631\.\.\. \(311 digits\) is beyond the range of float64"
    ):
        fa.leaky_relu(x.astype(np.float64), negative_slope=2**1030)
    with pytest.raises(ValueError, match="rrelu: upper - lower = 6e"):
        fa.rrelu.fused(x, lower=-3e38, upper=3e38, training=True, seed=1)
    with pytest.raises(ValueError, match=r"rrelu: \(lower \+ upper\) / 2"):
        fa.rrelu(x, lower=1e39, upper=2e39)
    with pytest.raises(ValueError, match="weight has values beyond the range of float32"):
        fa.prelu(x, np.array([1e300]))
    # Within range, at the edge, or infinite on purpose: computed as given.
    big = np.finfo(np.float32).max
    np.testing.assert_array_equal(
        fa.leaky_relu(x, negative_slope=float(big)), np.array([-big, 2], np.float32)
    )
    np.testing.assert_array_equal(fa.leaky_relu(x, negative_slope=np.inf), [-np.inf, 2.0])
    np.testing.assert_array_equal(fa.prelu(x, np.array([np.inf])), [-np.inf, 2.0])
    np.testing.assert_array_equal(fa.prelu(x, np.array([0.5])), [-0.5, 2.0])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_registry_and_api():
    assert set(fa.ACTIVATIONS) == {"sigmoid", "tanh", "relu", "leaky_relu", "prelu", "rrelu"}
    for name, act in fa.ACTIVATIONS.items():
        assert getattr(fa, name) is act and act.name == name
        for method in ("__call__", "derivative", "fused", "backward"):
            assert callable(getattr(act, method))
        doc = act.__doc__
        assert "f(x)" in doc and "f'(x)" in doc.replace("\\partial f", "f'(x)") and ">>>" in doc
    assert fa.leaky_relu.params == {"negative_slope": 0.01}
    assert fa.rrelu.params == {"lower": 1 / 8, "upper": 1 / 3, "training": False, "seed": None}
    # The registry is read-only: activations are found by name (unpickling, the commands).
    with pytest.raises(TypeError):
        fa.ACTIVATIONS["tanh"] = fa.sigmoid
    with pytest.raises((TypeError, AttributeError)):
        fa.ACTIVATIONS.pop("tanh")
    assert pickle.loads(pickle.dumps(fa.tanh)) is fa.tanh
    # The defaults are read-only (calls without keywords reuse them, converted once).
    with pytest.raises(TypeError):
        fa.leaky_relu.params["negative_slope"] = 0.5
    x = np.array([-2.0, 3.0], np.float32)
    assert fa.leaky_relu(x).tolist() == [np.float32(-0.02), 3.0]
    assert fa.leaky_relu(x.astype(np.float64)).tolist() == [-0.02, 3.0]
    assert fa.leaky_relu(x, negative_slope=0.5).tolist() == [-1.0, 3.0]
    assert fa.leaky_relu(x).tolist() == [np.float32(-0.02), 3.0]


def _ready_cases(dtype):
    """(description, arrays, out, n_out, taken): calls the fast path should take or leave."""
    rng = np.random.default_rng(7)
    x = rng.uniform(-4, 4, 60).astype(dtype)
    x2 = x.reshape(6, 10)
    xf = np.asfortranarray(x2)
    g = rng.standard_normal(60).astype(dtype)
    e = lambda: np.empty_like(x)  # noqa: E731
    shared = np.empty(120, dtype)  # two outs that are views of one buffer, apart
    read_only = e()
    read_only.flags.writeable = False
    other = np.float64 if dtype == np.float32 else np.float32
    return [
        ("1-D, no out", (x,), None, 1, True),
        ("1-D, no outs, fused", (x,), None, 2, True),
        ("2-D with out", (x2,), np.empty_like(x2), 1, True),
        ("in place", (x,), x, 1, True),
        ("fused, y in place", (x,), (x, e()), 2, True),
        ("fused pair", (x,), (e(), e()), 2, True),
        ("fused pair, y only", (x,), (e(), None), 2, True),
        ("fused pair, dy only", (x,), (None, e()), 2, True),
        ("views of one buffer, apart", (x,), (shared[:60], shared[60:]), 2, True),
        ("backward into grad_out", (g, x), g, 1, True),
        ("list", ([1.0, 2.0],), None, 1, False),
        ("integers", (np.arange(4),), None, 1, False),
        ("float16", (x.astype(np.float16),), None, 1, False),
        ("non-native", (x.astype(x.dtype.newbyteorder()),), None, 1, False),
        ("0-d", (np.array(1.5, dtype),), None, 1, False),
        ("empty", (np.empty(0, dtype),), None, 1, False),
        ("strided", (x[::2],), None, 1, False),
        ("Fortran order", (xf,), None, 1, True),
        ("transposed, fused", (x2.T,), None, 2, True),
        ("Fortran order with a Fortran out", (x2.T,), np.empty_like(x2.T), 1, True),
        ("Fortran order in place", (xf,), xf, 1, True),
        ("backward, both in Fortran order", (np.asfortranarray(g.reshape(6, 10)), xf), None, 1, True),
        ("Fortran order with a C out", (x2.T,), np.empty(x2.T.shape, dtype), 1, False),
        (
            "fused, one C out for Fortran x",
            (x2.T,),
            (np.empty_like(x2.T), np.empty(x2.T.shape, dtype)),
            2,
            False,
        ),
        ("backward, Fortran x, C grad_out", (g.reshape(6, 10), np.asfortranarray(x2)), None, 1, False),
        ("backward, C x, Fortran grad_out", (np.asfortranarray(g.reshape(6, 10)), x2), None, 1, False),
        ("grad_out of another dtype", (g.astype(other), x), None, 1, False),
        ("grad_out strided", (np.repeat(g, 2)[::2], x), None, 1, False),
        ("out of another dtype", (x,), x.astype(other), 1, False),
        ("out of another shape", (x,), np.empty(61, dtype), 1, False),
        ("read-only out", (x,), read_only, 1, False),
        ("strided out", (x,), np.empty(120, dtype)[::2], 1, False),
        ("out a subclass", (x2,), np.asmatrix(np.empty_like(x2)), 1, False),
        ("out at an offset over x", (shared[1:61],), shared[:60], 1, False),
        ("out a second view of x", (x,), x[:], 1, False),
        ("fused out not a pair", (x,), (e(), e(), e()), 2, False),
        ("fused out one buffer twice", (x,), (shared[:60], shared[:60]), 2, False),
        ("fused outs overlapping", (x,), (shared[:60], shared[30:90]), 2, False),
        ("out a list", (x,), [0.0] * 60, 1, False),
    ]


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_fast_path_takes_only_calls_that_need_no_conversion_or_copy(dtype, monkeypatch):
    """The per-call fast path (``ready_operands``) against the general path (Layout).

    Where it takes a call, the results must be the general path's, bit for
    bit, written into the same buffers; every other call must be left to the
    general path, which converts, copies or raises its named error.
    """
    from fastact import _activation, _arrays

    act = fa.sigmoid
    methods = {1: act, 2: act.fused}
    for text, arrays, out, n_out, taken in _ready_cases(dtype):
        ready = _arrays.ready_operands(arrays, out, n_out, fortran=True)
        assert (ready is not None) == taken, text
        # Without ``fortran`` (PReLU, RReLU in training) only C order is taken.
        fortran_only = any(not a.flags.c_contiguous for a in arrays if isinstance(a, np.ndarray))
        c_ready = _arrays.ready_operands(arrays, out, n_out)
        assert (c_ready is not None) == (taken and not fortran_only), text
        if not taken:
            continue
        inputs, buffers, results = ready
        assert all(a.ndim == 1 and a.flags.c_contiguous for a in (*inputs, *buffers)), text
        assert len(results) == n_out and all(r.shape == arrays[-1].shape for r in results), text
        given = out if isinstance(out, tuple) else (out,) * n_out
        for k, (r, o) in enumerate(zip(results, given, strict=True)):
            assert o is None or r is o, text
            assert np.shares_memory(r, buffers[k]), text

    def clone(arrays, out):
        # Fresh copies with the same identities (an out that is an input stays one).
        copies = {}
        for a in (*arrays, *(out if isinstance(out, tuple) else (out,))):
            if isinstance(a, np.ndarray) and id(a) not in copies:
                copies[id(a)] = np.array(a, copy=True)
        new_out = tuple(copies.get(id(o)) for o in out) if isinstance(out, tuple) else copies.get(id(out))
        return [copies[id(a)] for a in arrays], new_out

    def run(arrays, out, n_out):
        method = act.backward if len(arrays) == 2 else methods[n_out]
        got = method(*arrays, out=out)
        return got if isinstance(got, tuple) else (got,)

    # The same calls through the general path alone give the same bits.
    for text, arrays, out, n_out, taken in _ready_cases(dtype):
        if not taken or text == "views of one buffer, apart":
            continue
        fast = run(*clone(arrays, out), n_out)
        with monkeypatch.context() as patch:
            patch.setattr(_activation, "ready_operands", lambda *args, **kw: None)
            general = run(*clone(arrays, out), n_out)
        for a, b in zip(fast, general, strict=True):
            assert a.dtype == dtype and a.shape == arrays[-1].shape, text
            # Outputs it allocates are laid out as the general path's.
            assert (a.flags.c_contiguous, a.flags.f_contiguous) == (
                b.flags.c_contiguous,
                b.flags.f_contiguous,
            ), text
            np.testing.assert_array_equal(a, b, err_msg=text)

    # Inputs that need converting first (lists, integers, 0-d, other byte
    # orders, backward's mixed dtypes) take the fast path once converted
    # where they can; the bits are the general path's either way.
    x = np.linspace(-5, 5, 40).astype(dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    converted_cases = [
        ((x.tolist(),), 1),
        ((np.arange(-20, 20),), 2),
        ((1.5,), 1),
        ((x.astype(x.dtype.newbyteorder()),), 2),
        ((x.astype(other), x), 1),
        ((x.tolist(), x), 1),
    ]
    for arrays, n_out in converted_cases:
        fast = run(arrays, None, n_out)
        with monkeypatch.context() as patch:
            patch.setattr(_activation, "ready_operands", lambda *args, **kw: None)
            general = run(arrays, None, n_out)
        for a, b in zip(fast, general, strict=True):
            assert type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape, arrays
            np.testing.assert_array_equal(a, b)


def test_keywords_given_again_are_checked_and_converted_again_unless_the_same_objects(dtype):
    x = np.array([-2.0, -0.5, 0.0, 3.0], dtype)
    act = fa.leaky_relu
    slope = 0.3
    want = np.where(x > 0, x, x * dtype.type(slope))
    for _ in range(3):
        np.testing.assert_array_equal(act(x, negative_slope=slope), want)
    # The same object on data of the other dtype: converted for that dtype.
    other = x.astype(np.float64 if dtype == np.float32 else np.float32)
    np.testing.assert_array_equal(
        act(other, negative_slope=slope), np.where(other > 0, other, other * other.dtype.type(slope))
    )
    # Another value, then an equal value of another type: each checked on its own.
    np.testing.assert_array_equal(act(x, negative_slope=0.25), np.where(x > 0, x, x * dtype.type(0.25)))
    one = 1
    np.testing.assert_array_equal(act(x, negative_slope=one), x)
    with pytest.raises(TypeError, match="real number, got True"):
        act(x, negative_slope=True)
    with pytest.raises(TypeError, match="unexpected keyword"):
        act(x, negative_slope=one, slope=one)
    huge = 1e300
    for _ in range(2):
        if dtype == np.float32:
            with pytest.raises(ValueError, match="beyond the range of float32"):
                act(x, negative_slope=huge)
        else:
            np.testing.assert_array_equal(act(x, negative_slope=huge), np.where(x > 0, x, x * huge))
    # RReLU in training without a seed draws its slopes afresh on every call,
    # though the keywords are the same objects.
    z = np.full(4096, -1.0, dtype)
    training = True
    first, second = fa.rrelu(z, training=training), fa.rrelu(z, training=training)
    assert not np.array_equal(first, second)
    seed = 12345
    np.testing.assert_array_equal(
        fa.rrelu(z, training=training, seed=seed), fa.rrelu(z, training=True, seed=seed)
    )


def test_prelu_fast_path_matches_the_general_path(dtype, monkeypatch):
    from fastact import _activation

    rng = np.random.default_rng(11)
    cases = [
        (rng.uniform(-3, 3, 50).astype(dtype), np.array([0.2], dtype)),  # one weight
        (rng.uniform(-3, 3, (6, 10)).astype(dtype), rng.uniform(0, 1, 10).astype(dtype)),  # lanes
        (rng.uniform(-3, 3, (3, 4, 20)).astype(dtype), rng.uniform(0, 1, 4).astype(dtype)),  # rows
    ]

    def calls(x, w):
        g = np.linspace(-1, 1, x.size, dtype=dtype).reshape(x.shape)
        y, d, gx, gw = (np.empty_like(x), np.empty_like(x), np.empty_like(x), np.empty_like(w))
        return [
            fa.prelu(x, w),
            fa.prelu(x, w, out=y).copy(),
            fa.prelu.derivative(x, w),
            *fa.prelu.fused(x, w),
            *[a.copy() for a in fa.prelu.fused(x, w, out=(y, d))],
            *fa.prelu.backward(g, x, w),
            *[a.copy() for a in fa.prelu.backward(g, x, w, out=(gx, gw))],
            # The weights as their own grad_weight buffer, and grad_x over g.
            *fa.prelu.backward(g.copy(), x, w.copy(), out=(None, w.copy())),
            fa.prelu.backward(g.copy(), x, w)[0],
        ]

    for x, w in cases:
        fast = calls(x, w)
        with monkeypatch.context() as patch:
            patch.setattr(_activation, "ready_operands", lambda *args, **kw: None)
            general = calls(x, w)
        for k, (a, b) in enumerate(zip(fast, general, strict=True)):
            assert a.dtype == dtype, k
            np.testing.assert_array_equal(a, b, err_msg=f"shape {x.shape}, result {k}")
    # Converted inputs (a list, integers) and a weight given as a number or a list.
    x = np.linspace(-3, 3, 24).astype(dtype).reshape(4, 6)
    converted = [
        lambda: fa.prelu(x.tolist(), np.full(6, 0.25, dtype)),
        lambda: fa.prelu(x, 0.25),
        lambda: fa.prelu.fused(np.arange(-12, 12).reshape(4, 6), [0.5] * 6),
        lambda: fa.prelu.backward(x.tolist(), x, np.full(6, 0.25, dtype)),
    ]
    for k, call in enumerate(converted):
        fast = call()
        with monkeypatch.context() as patch:
            patch.setattr(_activation, "ready_operands", lambda *args, **kw: None)
            general = call()
        for a, b in zip(
            fast if isinstance(fast, tuple) else (fast,),
            general if isinstance(general, tuple) else (general,),
            strict=True,
        ):
            assert a.dtype == b.dtype, k
            np.testing.assert_array_equal(a, b, err_msg=f"converted call {k}")
    # In place: the output over x, and grad_x over grad_out, with the weights
    # given as a plain array that the output must not overwrite.
    x, w = cases[1]
    want = np.where(x > 0, x, x * w)
    z = x.copy()
    assert fa.prelu(z, w, out=z) is z
    np.testing.assert_array_equal(z, want)


def test_keywords_from_many_threads_at_once_give_each_call_its_own_values(dtype):
    # Threads that pass different slopes race for the memo of the last
    # keywords; every call must still use its own.
    from concurrent.futures import ThreadPoolExecutor

    x = np.linspace(-4, 4, 256, dtype=dtype)
    slopes = [0.05 * (k + 1) for k in range(8)]

    def work(slope):
        wrong = 0
        want = np.where(x > 0, x, x * dtype.type(slope))
        for _ in range(200):
            wrong += not np.array_equal(fa.leaky_relu(x, negative_slope=slope), want)
            y, d = fa.leaky_relu.fused(x, negative_slope=slope)
            wrong += not np.array_equal(d, np.where(x > 0, 1, dtype.type(slope)))
        return wrong

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(work, slopes)) == [0] * 8
