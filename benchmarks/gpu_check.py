"""Validate fastact's CUDA kernels on a GPU, then measure them.

    python benchmarks/gpu_check.py [--size N] [--rounds R]

1. Validation: every activation x mode x dtype on the GPU against the CPU
   kernels (which the tests check against high-precision references), within
   4 ULP, on adversarial inputs and a random sweep.
2. Throughput at ``--size`` float32 elements (default 2^28): ``fused`` against
   a device-to-device kernel with the same traffic (read x, write two
   outputs: the bandwidth roofline) and against PyTorch CUDA's forward op plus
   its own backward op (when torch with CUDA is installed). Timed with CUDA
   events, median of ``--rounds``; copies to and from the host are not timed.

Prints a markdown table with the GPU's name and the date.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from numba import cuda

import fastact as fa
from fastact.cuda import measure_fused

NAMES = ("sigmoid", "tanh", "relu", "leaky_relu", "rrelu")
MODES = ("forward", "derivative", "fused", "backward")


def ulp_error(got, want, dtype):
    info = np.finfo(dtype)
    ok = np.isfinite(want) & (np.abs(want) >= info.tiny)
    _, e = np.frexp(np.abs(want[ok]).astype(np.float64))
    spacing = np.ldexp(1.0, e - (info.nmant + 1))
    return np.abs(got[ok].astype(np.float64) - want[ok].astype(np.float64)) / spacing


def call(act, mode, x, g, **kw):
    if mode == "backward":
        return act.backward(g, x, **kw)
    if mode == "fused":
        return act.fused(x, **kw)
    if mode == "derivative":
        return act.derivative(x, **kw)
    return act(x, **kw)


def validate(n: int) -> int:
    worst = 0.0
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        info = np.finfo(dtype)
        special = np.array(
            [0.0, -0.0, np.nan, np.inf, -np.inf, info.max, -info.max, info.tiny, 30.0, -30.0], dtype
        )
        x = np.concatenate([special, rng.uniform(-60, 60, n).astype(dtype)])
        g = rng.standard_normal(x.size).astype(dtype)
        dx, dg = cuda.to_device(x), cuda.to_device(g)
        for name in NAMES:
            act = fa.ACTIVATIONS[name]
            for kw in ({"training": False}, {"training": True, "seed": 5}) if name == "rrelu" else ({},):
                for mode in MODES:
                    want = call(act, mode, x, g, **kw)
                    got = call(act, mode, dx, dg, **kw)
                    pairs = zip(got, want, strict=True) if mode == "fused" else [(got, want)]
                    for a, b in pairs:
                        a = a.copy_to_host()
                        if not np.array_equal(np.isnan(a), np.isnan(b)):
                            raise AssertionError(f"{name} {mode} {np.dtype(dtype)}: NaN pattern differs")
                        err = ulp_error(a, b, dtype)
                        if err.size and err.max() > 4:
                            raise AssertionError(
                                f"{name} {mode} {np.dtype(dtype)}: {err.max():.2f} ULP from CPU"
                            )
                        worst = max(worst, float(err.max()) if err.size else 0.0)
    print(f"validated every kernel against the CPU: largest difference {worst:.2f} ULP")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1 << 28)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--validate-size", type=int, default=1 << 20)
    args = parser.parse_args(argv)
    if not cuda.is_available():
        print("no CUDA GPU available: nothing validated or measured", file=sys.stderr)
        return 2
    validate(args.validate_size)
    print(measure_fused(args.size, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
