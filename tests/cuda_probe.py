"""CUDA checks run as scripts, each in its own process (run by test_cuda.py).

``python cuda_probe.py simulate``: under NUMBA_ENABLE_CUDASIM=1, every
activation x mode x dtype on adversarial inputs, with 4-thread blocks so that
several blocks and the grid-stride loop run; compared with the references
(4 ULP) and with the CPU kernels.
``python cuda_probe.py ptx``: every kernel compiles to PTX for sm_80 and
sm_90; float32 kernels hold no float64 instruction.
"""

import re
import sys
import warnings

import numpy as np
from reference import reference, ulp_error
from tolerances import DTYPES, MODES, ULP_TOLERANCE

import fastact as fa

NAMES = ("sigmoid", "tanh", "relu", "leaky_relu", "rrelu")


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
        # A strided device input is made contiguous on the device.
        grid = x[:60].reshape(6, 10)
        strided = cuda.to_device(grid)[:, ::3]
        assert np.array_equal(fa.relu(strided).copy_to_host(), fa.relu(grid[:, ::3]))
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
    print(f"simulated {checked} kernel calls")


def ptx():
    from fastact.cuda import inspect_ptx

    count = 0
    for dtype in ("float32", "float64"):
        for name in NAMES:
            for kw in ({}, {"training": True}) if name == "rrelu" else ({},):
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
