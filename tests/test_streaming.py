"""The streaming kernels (non-temporal stores, for outputs larger than the caches).

They must give the plain loops' bits for every length and alignment (block
boundaries, partial cache lines, outputs not aligned to their item size),
in place too, and stay within the numerics contract against the references.
Streaming is forced on small arrays here by lowering the threshold.
"""

import numpy as np
import pytest
from reference import reference, ulp_error
from tolerances import ULP_TOLERANCE

import fastact as fa
from fastact import _cpu
from fastact._config import PARALLEL_MIN_SIZE, STREAM_BLOCK_BYTES

# (activation, mode, dtype, length): serial and parallel builds, float32 and
# float64, lengths off every block and line boundary.
CASES = [
    ("tanh", "fused", np.float32, PARALLEL_MIN_SIZE + 7219),
    ("sigmoid", "backward", np.float64, PARALLEL_MIN_SIZE + 5003),
    ("relu", "forward", np.float32, 2 * (STREAM_BLOCK_BYTES // 4) + 5),
    ("leaky_relu", "derivative", np.float64, 3 * (STREAM_BLOCK_BYTES // 8) - 3),
    ("rrelu", "fused", np.float32, PARALLEL_MIN_SIZE + 77),
]


def call(name, mode, x, g, out):
    act = fa.ACTIVATIONS[name]
    kw = dict(training=True, seed=11) if name == "rrelu" else {}
    if mode == "backward":
        return act.backward(g, x, out=out, **kw)
    if mode == "fused":
        return act.fused(x, out=out, **kw)
    return (act if mode == "forward" else act.derivative)(x, out=out, **kw)


def line_start(nbytes):
    """A NaN-filled uint8 buffer of ``nbytes`` that starts on a 64-byte line."""
    raw = np.full(nbytes + 64, 0xFF, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + nbytes]


def buffers(mode, n, dtype, shift):
    """Output buffers starting ``shift`` elements past a 64-byte line.

    For an odd ``shift`` a second output starts 3 elements further, at
    another offset in its cache lines than the first (so direct stores are
    impossible and the streaming call takes the blocks).
    """
    count = 2 if mode == "fused" else 1
    size = np.dtype(dtype).itemsize
    starts = [shift + 3 * k * (shift % 2) for k in range(count)]
    outs = [line_start((n + 16) * size).view(dtype)[s : s + n] for s in starts]
    return tuple(outs) if count == 2 else outs[0]


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


@pytest.fixture(
    params=[(False, False), (False, True), (True, False)], ids=["blocks", "blocks-prefetch", "direct"]
)
def direct(request, monkeypatch):
    """Both streaming layouts: the blocks (with and without the prefetch of
    the inputs), and direct stores where the outputs allow."""
    direct, prefetch = request.param
    monkeypatch.setattr(_cpu, "STREAM_DIRECT", direct)
    monkeypatch.setattr(_cpu, "STREAM_PREFETCH", prefetch)
    return direct


@pytest.fixture
def streaming(monkeypatch, direct):
    monkeypatch.setattr(_cpu, "STREAMING", True)
    monkeypatch.setattr(_cpu, "STREAM_MIN_BYTES", 0)


def expected_layout(outs, direct):
    first = outs[0].ctypes.data
    alike = all((o.ctypes.data - first) % 64 == 0 for o in outs)
    return "direct" if direct and alike else "blocks"


@pytest.mark.parametrize(("name", "mode", "dtype", "n"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_streaming_gives_the_plain_loops_bits(name, mode, dtype, n, monkeypatch, direct):
    rng = np.random.default_rng(n)
    x = rng.uniform(-12, 12, n).astype(dtype)
    x[::97] = 0
    x[1::89] = np.nan
    g = rng.uniform(-2, 2, n).astype(dtype)
    monkeypatch.setattr(_cpu, "STREAMING", False)
    plain = as_tuple(call(name, mode, x, g, None))
    monkeypatch.setattr(_cpu, "STREAMING", True)
    monkeypatch.setattr(_cpu, "STREAM_MIN_BYTES", 0)
    loop = "random" if name == "rrelu" else "elementwise"
    parallel = _cpu.use_parallel(n)
    for shift in (0, 1, 2, 3, 5):
        outs = buffers(mode, n, dtype, shift)
        layout = expected_layout(as_tuple(outs), direct)
        assert _cpu.stream_layout(as_tuple(outs), np.dtype(dtype).itemsize) == layout
        got = as_tuple(call(name, mode, x, g, outs))
        key = (
            name,
            np.dtype(dtype),
            mode,
            loop,
            parallel,
            layout,
            _cpu.builds_wide(loop, mode, layout),
            _cpu.builds_prefetch(parallel, layout),
        )
        assert key in _cpu._kernels, f"shift {shift}: no {layout} kernel was built"
        for a, b in zip(got, plain, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"shift {shift}")
    # And against the references, independently of the plain loops.
    if name == "rrelu":
        y, slope = got
        negative = x <= 0
        assert np.all((slope[negative] >= 1 / 8) & (slope[negative] <= 1 / 3))
        np.testing.assert_array_equal(y[~negative], x[~negative])
        np.testing.assert_array_equal(y[negative], (slope * x)[negative])
    elif mode != "backward":
        y, d = reference(name, x, dtype, **fa.ACTIVATIONS[name].params)
        want = {"forward": (y,), "derivative": (d,), "fused": (y, d)}[mode]
        for a, exact in zip(got, want, strict=True):
            err, _ = ulp_error(a, exact, dtype)
            assert err.max() <= ULP_TOLERANCE[np.dtype(dtype)], (name, mode, err.max())


def test_outputs_not_aligned_to_their_item_size(streaming):
    # No alignment of such an output makes whole vector stores possible: the
    # copy-out falls back to ordinary stores.
    n = 3000
    x = np.linspace(-4, 4, n, dtype=np.float32)
    raw = np.zeros(4 * n + 8, np.uint8)
    y = raw[1 : 1 + 4 * n].view(np.float32)
    assert y.ctypes.data % 4 == 1
    fa.relu(x, out=y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))


def test_in_place(streaming):
    n = PARALLEL_MIN_SIZE + 999
    x = np.linspace(-3, 3, n)
    want = np.maximum(x, 0)
    assert fa.relu(x, out=x) is x
    np.testing.assert_array_equal(x, want)


def test_threshold_follows_the_cache_size(monkeypatch):
    monkeypatch.setattr(_cpu, "STREAMING", True)
    monkeypatch.setattr(_cpu, "STREAM_MIN_BYTES", 48 << 20)
    # fused float32 touches 12 bytes per element, forward 8.
    assert _cpu.use_streaming("fused", "elementwise", 4 << 20, 4)
    assert not _cpu.use_streaming("forward", "elementwise", 4 << 20, 4)
    assert _cpu.use_streaming("backward", "random", 4 << 20, 4)
    # PReLU's channel loops and its reduction never stream.
    assert not _cpu.use_streaming("fused", "rows", 1 << 30, 4)
    assert not _cpu.use_streaming("prelu_backward", "elementwise", 1 << 30, 4)
    monkeypatch.setattr(_cpu, "STREAMING", False)
    assert not _cpu.use_streaming("fused", "elementwise", 1 << 30, 4)


def test_last_level_cache_size_is_read_from_sysfs(tmp_path):
    for index, size in enumerate(("32K", "512K", "32768K", "bogus")):
        (tmp_path / f"index{index}").mkdir()
        (tmp_path / f"index{index}" / "size").write_text(size + "\n")
    assert _cpu.last_level_cache_bytes(str(tmp_path)) == 32 << 20
    assert _cpu.last_level_cache_bytes(str(tmp_path / "missing")) is None


def test_threshold_is_the_cache_size_capped():
    cap = _cpu.STREAM_MIN_BYTES_MAX
    assert _cpu.default_stream_min_bytes(8 << 20) == 8 << 20
    assert _cpu.default_stream_min_bytes(480 << 20) == cap
    assert _cpu.default_stream_min_bytes(None) == cap
    assert _cpu.default_stream_min_bytes(0) == cap
    assert cap == 32 << 20


def test_arrays_shorter_than_a_line(monkeypatch, direct):
    x = np.linspace(-20, 20, 40, dtype=np.float32)
    for n in (1, 5, 15, 16, 17, 33):
        for shift in (0, 3):
            monkeypatch.setattr(_cpu, "STREAMING", False)
            want = fa.sigmoid.fused(x[:n])
            monkeypatch.setattr(_cpu, "STREAMING", True)
            monkeypatch.setattr(_cpu, "STREAM_MIN_BYTES", 0)
            got = fa.sigmoid.fused(x[:n], out=buffers("fused", n, np.float32, shift))
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"n {n} shift {shift}")


def test_stream_layout_needs_outputs_alike_within_a_line(monkeypatch):
    monkeypatch.setattr(_cpu, "STREAM_DIRECT", True)
    raw = line_start(4096).view(np.float32)
    a, b = raw[:256], raw[512:768]
    assert _cpu.stream_layout((a, b), 4) == "direct"
    # Same offset off the line start: still direct (the loop has a head).
    assert _cpu.stream_layout((raw[3:200], raw[515:712]), 4) == "direct"
    assert _cpu.stream_layout((raw[3:200],), 4) == "direct"
    # Different offsets within their lines, or not aligned to the item size.
    assert _cpu.stream_layout((raw[:256], raw[513:769]), 4) == "blocks"
    odd = line_start(4096)[1:4001].view(np.float32)
    assert _cpu.stream_layout((odd,), 4) == "blocks"
    monkeypatch.setattr(_cpu, "STREAM_DIRECT", False)
    assert _cpu.stream_layout((a, b), 4) == "blocks"


def test_unknown_stream_layout_is_refused():
    with pytest.raises(ValueError, match="stream layout"):
        _cpu.get_kernel(fa.relu, np.dtype(np.float32), "forward", stream="sideways")


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_new_large_outputs_start_on_a_line(dtype, order):
    from fastact._arrays import ALIGNED_MIN_BYTES, empty

    rows = ALIGNED_MIN_BYTES // np.dtype(dtype).itemsize // 100 + 1
    for _ in range(4):
        a = empty((rows, 100), dtype, order)
        assert a.shape == (rows, 100) and a.dtype == dtype
        assert a.flags.c_contiguous if order == "C" else a.flags.f_contiguous
        assert a.flags.writeable and a.ctypes.data % 64 == 0
    small = empty((3, 5), dtype, order)
    assert small.shape == (3, 5) and small.flags.owndata
    # Through the API: both outputs of a large fused call on one line.
    x = np.linspace(-3, 3, rows * 100).astype(dtype)
    y, d = fa.tanh.fused(x)
    assert y.ctypes.data % 64 == 0 and d.ctypes.data % 64 == 0
