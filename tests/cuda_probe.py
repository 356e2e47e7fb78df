"""CUDA checks run as scripts, each in its own process (run by test_cuda.py).

``python cuda_probe.py simulate``: under NUMBA_ENABLE_CUDASIM=1, every
activation x mode x dtype on adversarial inputs, with 4-thread blocks so that
several blocks and the grid-stride loop run; compared with the references
(4 ULP) and with the CPU kernels. PReLU per channel layout, with grad_weight's
chunk and reduction sizes shrunk so that several chunks and reduction rounds
run, checked against float64 references and for determinism across grids.
``python cuda_probe.py ptx``: every kernel compiles to PTX for sm_80 and
sm_90; float32 kernels hold no float64 instruction.
"""

import re
import sys
import warnings

import numpy as np
from reference import prelu_grad_weight_reference, prelu_reference, reference, ulp_error
from tolerances import DTYPES, GRAD_WEIGHT_RTOL, MODES, ULP_TOLERANCE

import fastact as fa

NAMES = ("sigmoid", "tanh", "relu", "leaky_relu", "rrelu")
PTX_VARIANTS = {"rrelu": ({}, {"training": True}), "prelu": ({}, {"reduction": True})}


def inputs(dtype):
    info = np.finfo(dtype)
    special = [
        0.0,
        -0.0,
        np.nan,
        np.inf,
        -np.inf,
        info.max,
        -info.max,
        info.tiny,
        info.smallest_subnormal,
        -info.smallest_subnormal,
        1e-30,
        -1e-30,
        30.0,
        -30.0,
        10.0,
        0.625,
        -0.625,
        88.0,
        -104.0,
        710.0,
    ]
    return np.concatenate([np.array(special, dtype), np.linspace(-50, 50, 61).astype(dtype)])


def simulate():
    from numba import cuda

    import fastact.cuda as fc

    fc.THREADS_PER_BLOCK, fc.BLOCKS_PER_SM = 4, 1
    warnings.simplefilter("ignore", RuntimeWarning)  # numpy uint32 wraparound in the simulated RNG
    checked = 0
    for dtype in DTYPES:
        x = inputs(dtype)
        g = np.cos(np.nan_to_num(x, posinf=1, neginf=-1)).astype(dtype)
        dx, dg = cuda.to_device(x), cuda.to_device(g)
        for name in NAMES:
            act = fa.ACTIVATIONS[name]
            for kw in ({"training": False}, {"training": True, "seed": 11}) if name == "rrelu" else ({},):
                cpu = {
                    m: (
                        act.fused(x, **kw)
                        if m == "fused"
                        else act.backward(g, x, **kw)
                        if m == "backward"
                        else getattr(act, "derivative" if m == "derivative" else "__call__")(x, **kw)
                    )
                    for m in MODES
                }
                for mode in MODES:
                    if mode == "backward":
                        got = act.backward(dg, dx, **kw)
                    elif mode == "fused":
                        got = act.fused(dx, **kw)
                    elif mode == "derivative":
                        got = act.derivative(dx, **kw)
                    else:
                        got = act(dx, **kw)
                    got = tuple(a.copy_to_host() for a in got) if mode == "fused" else (got.copy_to_host(),)
                    want = cpu[mode] if mode == "fused" else (cpu[mode],)
                    for a, b in zip(got, want, strict=True):
                        assert a.dtype == dtype and a.shape == x.shape
                        assert np.array_equal(np.isnan(a), np.isnan(b)), (name, mode, dtype)
                        ok = ~np.isnan(b)
                        err, _ = ulp_error(a[ok], b[ok].astype(np.longdouble), dtype)
                        assert err.size == 0 or err.max() <= ULP_TOLERANCE[dtype], (
                            name,
                            mode,
                            dtype,
                            err.max(),
                        )
                    if mode == "fused" and name in ("sigmoid", "tanh"):
                        ry, rd = reference(name, x, dtype)
                        for a, r in zip(got, (ry, rd), strict=True):
                            err, _ = ulp_error(a, r, dtype)
                            assert err.max() <= ULP_TOLERANCE[dtype], (name, dtype, err.max())
                    checked += 1
        # Strided and Fortran-ordered device input is read in C order.
        grid = x[:60].reshape(6, 10)
        strided = cuda.to_device(grid)[:, ::3]
        assert np.array_equal(fa.relu(strided).copy_to_host(), fa.relu(grid[:, ::3]))
        fortran = np.asfortranarray(grid)
        assert np.array_equal(fa.relu(cuda.to_device(fortran)).copy_to_host(), fa.relu(grid), equal_nan=True)
        # out= device buffers are filled and returned; host/device mixing is refused.
        y, d = cuda.device_array(x.shape, dtype), cuda.device_array(x.shape, dtype)
        res = fa.tanh.fused(dx, out=(y, d))
        assert res[0] is y and res[1] is d
        mixed = (
            lambda g=g, dx=dx: fa.tanh.backward(g, dx),
            lambda x=x, dx=dx: fa.tanh(dx, out=np.empty_like(x)),
        )
        for bad in mixed:
            try:
                bad()
            except TypeError as exc:
                assert "host" in str(exc)
            else:
                raise AssertionError("mixing host and device arrays was accepted")
        simulate_overlaps(g)
        simulate_bad_outs(g)
    checked += simulate_prelu()
    print(f"simulated {checked} kernel calls")


def simulate_overlaps(g):
    """Device buffers that share memory: as on the CPU, never a silently wrong result."""
    from numba import cuda

    n, dtype = g.size, g.dtype

    def alone(name, host):
        return fa.ACTIVATIONS[name](cuda.to_device(np.ascontiguousarray(host))).copy_to_host()

    # An input that overlaps its output at an offset (either way) or reversed
    # is copied before the kernel writes.
    buf = cuda.to_device(np.concatenate([g, g[:1]]))
    for src, dst in ((buf[1:], buf[:-1]), (buf[:-1], buf[1:])):
        buf.copy_to_device(np.concatenate([g, g[:1]]))
        want = alone("sigmoid", src.copy_to_host())
        assert fa.sigmoid(src, out=dst) is dst
        assert np.array_equal(dst.copy_to_host(), want, equal_nan=True)
    line = cuda.to_device(g)
    want = alone("tanh", g[::-1])
    fa.tanh(line[::-1], out=line)
    assert np.array_equal(line.copy_to_host(), want, equal_nan=True)
    # PReLU's weight inside the output it is read for.
    ones = -np.ones(n, dtype)
    buf = cuda.to_device(np.concatenate([[0.25], ones]).astype(dtype))
    fa.prelu(buf[1:], buf[:1], out=buf[:n])
    assert np.array_equal(buf.copy_to_host()[:n], ones * dtype.type(0.25))
    # Two outputs in one buffer are refused.
    both = cuda.device_array(n + 4, dtype)
    for out in ((both[:n], both[4:]), (both[:n], both[:n])):
        try:
            fa.tanh.fused(cuda.to_device(g), out=out)
        except ValueError as exc:
            assert "overlap" in str(exc), exc
        else:
            raise AssertionError("overlapping output buffers were accepted")


def simulate_bad_outs(g):
    """Device out buffers of the wrong dtype, shape or layout: errors that name the buffer."""
    from numba import cuda

    n, dtype = g.size, g.dtype
    other = np.float64 if dtype == np.float32 else np.float32
    dx = cuda.to_device(g)
    good = cuda.device_array(n, dtype)
    cases = [
        (
            lambda: fa.tanh(dx, out=cuda.device_array(n, other)),
            TypeError,
            rf"^tanh\.forward: out has dtype {np.dtype(other)}, expected {dtype}$",
        ),
        (
            lambda: fa.tanh(dx, out=cuda.device_array(n + 1, dtype)),
            ValueError,
            rf"^tanh\.forward: out has shape \({n + 1},\), expected \({n},\)$",
        ),
        (
            lambda: fa.tanh.fused(dx, out=(good, cuda.device_array(n, other))),
            TypeError,
            r"^tanh\.fused: out\[1\] has dtype",
        ),
        (
            lambda: fa.tanh.fused(dx, out=(cuda.device_array(n - 1, dtype), good)),
            ValueError,
            r"^tanh\.fused: out\[0\] has shape",
        ),
        (
            lambda: fa.tanh.fused(dx, out=(np.empty(n, dtype), good)),
            TypeError,
            r"^tanh\.fused: out\[0\] is a host array",
        ),
        (lambda: fa.tanh.fused(dx, out=good), TypeError, r"^tanh\.fused: out must be a pair"),
        (
            lambda: fa.relu(dx, out=cuda.device_array(2 * n, dtype)[::2]),
            ValueError,
            r"^relu\.forward: out must be a C-contiguous device array$",
        ),
    ]
    for call, error, pattern in cases:
        try:
            call()
        except error as exc:
            assert re.search(pattern, str(exc)), (pattern, str(exc))
        else:
            raise AssertionError(f"accepted a bad out buffer: {pattern}")


PRELU_SHAPES = [
    ((17,), 17),  # 1-D: channels on dim 0
    ((5, 7), 7),  # (N, C): weight along the contiguous axis
    ((4, 3, 3), 3),  # shape[1] == shape[-1]
    ((2, 6, 5, 4), 6),
    ((3, 4, 1), 4),
    ((9, 2, 13), 2),
    ((61,), 1),  # one shared weight
    ((2, 3, 5), 1),
    ((), 1),
    ((0, 3), 3),
]


def simulate_prelu():
    from numba import cuda

    import fastact.cuda as fc

    # Small rows, chunks and groups: several chunks per column and several
    # reduction rounds on these tiny arrays.
    fc.UNIT_MIN, fc.CHUNK_ROWS, fc.REDUCE_ITEMS = 8, 3, 2
    checked = 0
    for dtype in DTYPES:
        specials = inputs(dtype)
        for shape, channels in PRELU_SHAPES:
            rng = np.random.default_rng(channels)
            size = int(np.prod(shape))
            x = np.resize(rng.permutation(specials), size).reshape(shape).astype(dtype)
            g = np.asarray(rng.standard_normal(shape), dtype)
            w = rng.uniform(0.05, 0.5, channels).astype(dtype)
            dx, dg, dw = cuda.to_device(x), cuda.to_device(g), cuda.to_device(w)
            ry, rd = (r.reshape(shape).astype(dtype) for r in prelu_reference(x, w))
            with np.errstate(all="ignore"):
                rgx = (g * rd).astype(dtype)
            y, d = fa.prelu.fused(dx, dw)
            got = {
                "forward": fa.prelu(dx, dw),
                "derivative": fa.prelu.derivative(dx, dw),
                "fused y": y,
                "fused dy": d,
            }
            gx, gw = fa.prelu.backward(dg, dx, dw)
            got["backward"] = gx
            want = {"forward": ry, "derivative": rd, "fused y": ry, "fused dy": rd, "backward": rgx}
            for key, a in got.items():
                a = a.copy_to_host()
                assert a.shape == shape and a.dtype == dtype, (key, shape)
                assert np.array_equal(a, want[key], equal_nan=True), (key, shape, dtype)
            # grad_weight on finite inputs, against a float64 sum.
            finite = np.asarray(np.clip(np.nan_to_num(x), -4, 4), dtype)
            gx, gw = fa.prelu.backward(dg, cuda.to_device(finite), dw)
            gw = gw.copy_to_host()
            ref = prelu_grad_weight_reference(g, finite, w)
            tol = GRAD_WEIGHT_RTOL[dtype]
            assert gw.shape == (channels,) and gw.dtype == dtype
            np.testing.assert_allclose(gw, ref, rtol=tol, atol=tol * np.abs(g * finite).sum())
            # The same sums in the same order, whatever the grid.
            saved = fc.BLOCKS_PER_SM
            fc.BLOCKS_PER_SM = 3
            try:
                again = fa.prelu.backward(dg, cuda.to_device(finite), dw)[1].copy_to_host()
            finally:
                fc.BLOCKS_PER_SM = saved
            assert np.array_equal(again, gw), (shape, dtype)
            # The same into the caller's pair of buffers.
            gx_buf, gw_buf = cuda.device_array(shape, dtype), cuda.device_array(channels, dtype)
            got_gx, got_gw = fa.prelu.backward(dg, cuda.to_device(finite), dw, out=(gx_buf, gw_buf))
            assert got_gx is gx_buf and got_gw is gw_buf
            assert np.array_equal(gw_buf.copy_to_host(), gw), (shape, dtype)
            checked += 7
        # A scalar weight, out= buffers, strided input, and bad operands.
        x = np.linspace(-3, 3, 24).reshape(2, 3, 4).astype(dtype)
        dx = cuda.to_device(x)
        assert np.array_equal(fa.prelu(dx, 0.5).copy_to_host(), np.where(x > 0, x, x * dtype.type(0.5)))
        out = cuda.device_array(x.shape, dtype)
        assert fa.prelu(dx, cuda.to_device(np.ones(3, dtype)), out=out) is out
        wide = np.linspace(-3, 3, 48).reshape(2, 6, 4).astype(dtype)
        strided = cuda.to_device(wide)[:, ::2]  # (2, 3, 4), not contiguous
        w3 = np.array([0.1, 0.2, 0.3], dtype)
        ref = prelu_reference(wide[:, ::2], w3)[0].astype(dtype)
        assert not strided.is_c_contiguous()
        assert np.array_equal(fa.prelu(strided, cuda.to_device(w3)).copy_to_host(), ref)
        bad = [
            (TypeError, "host", (dx, np.ones(3, dtype))),
            (TypeError, "host", (x, cuda.to_device(np.ones(3, dtype)))),
            (ValueError, "channels on dim 1", (dx, cuda.to_device(np.ones(4, dtype)))),
            (TypeError, "dtype", (dx, cuda.to_device(np.ones(3, np.float16)))),
        ]
        for kind, words, args in bad:
            try:
                fa.prelu(*args)
            except kind as exc:
                assert words in str(exc), exc
            else:
                raise AssertionError(f"accepted: {words}")
        gx_buf, dw3 = cuda.device_array(x.shape, dtype), cuda.to_device(w3)
        bad_pairs = [
            (
                ValueError,
                r"out\[1\] has shape \(4,\), expected \(3,\)$",
                (gx_buf, cuda.device_array(4, dtype)),
            ),
            (TypeError, r"out\[1\] is a host array", (gx_buf, np.empty(3, dtype))),
            (ValueError, r"the output buffers overlap each other$", (gx_buf, gx_buf.reshape(x.size)[:3])),
            (
                ValueError,
                r"out\[0\] has shape \(3,\), expected \(2, 3, 4\)$",
                (cuda.device_array(3, dtype), None),
            ),
            (TypeError, r"out must be the grad_x array or a pair", (gx_buf,)),
        ]
        for kind, pattern, out in bad_pairs:
            try:
                fa.prelu.backward(dx, dx, dw3, out=out)
            except kind as exc:
                assert re.search(rf"^prelu\.backward: {pattern}", str(exc)), (pattern, str(exc))
            else:
                raise AssertionError(f"accepted a bad out pair: {pattern}")
    return checked


def ptx():
    from fastact.cuda import inspect_ptx

    count = 0
    for dtype in ("float32", "float64"):
        for name in (*NAMES, "prelu"):
            for kw in PTX_VARIANTS.get(name, ({},)):
                for mode in MODES:
                    for cc in ((8, 0), (9, 0)):
                        code = inspect_ptx(name, dtype, mode, cc=cc, **kw)
                        assert f".target sm_{cc[0]}{cc[1]}" in code, (name, mode, cc)
                        if dtype == "float32":
                            f64 = re.findall(r"\.f64\b", code)
                            assert not f64, f"{name} {mode} float32 PTX has float64 instructions"
                        count += 1
    print(f"compiled {count} kernels to PTX")


if __name__ == "__main__":
    {"simulate": simulate, "ptx": ptx}[sys.argv[1]]()
