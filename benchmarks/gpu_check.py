"""Validate fastact's CUDA kernels on a GPU, then measure them.

    python benchmarks/gpu_check.py [--size N] [--rounds R]

1. Validation: every activation x mode x dtype on the GPU against the CPU
   kernels (which the tests check against high-precision references), within
   8 ULP (each side is within 4 ULP of the exact result), and sigmoid and tanh
   within 4 ULP of the tests' references, on adversarial inputs and a random
   sweep; PReLU in each channel
   layout, exactly, and its grad_weight within a bound of the CPU's sum.
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
from pathlib import Path

import numpy as np
from numba import cuda

import fastact as fa
import fastact.cuda
from fastact.cuda import measure_fused

# The tests' high-precision references (float64, or long double for float64).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import prelu_grad_weight_reference, reference, ulp_error  # noqa: E402

NAMES = ("sigmoid", "tanh", "relu", "leaky_relu", "rrelu")
MODES = ("forward", "derivative", "fused", "backward")


def call(act, mode, x, g, **kw):
    if mode == "backward":
        return act.backward(g, x, **kw)
    if mode == "fused":
        return act.fused(x, **kw)
    if mode == "derivative":
        return act.derivative(x, **kw)
    return act(x, **kw)


# |x| where tanh's exp(-2|x|) is subnormal and tanh'(x) is normal (float32:
# e < 2^-126 <= 4e; float64: e < 2^-1022 <= 4e), with a margin either side.
TANH_SUBNORMAL_EXP = {np.dtype(np.float32): (43.5, 44.5), np.dtype(np.float64): (354.0, 355.0)}


def validate(n: int) -> None:
    """Every kernel on the GPU against the CPU, and sigmoid/tanh against references.

    Each side is within 4 ULP of the exact result (the contract), so the GPU
    and the CPU may differ by up to 8 ULP; the GPU's sigmoid and tanh are
    also held to 4 ULP of the tests' high-precision references directly.
    """
    from_cpu = from_exact = 0.0
    for dtype in (np.float32, np.float64):
        rng = np.random.default_rng(0)
        info = np.finfo(dtype)
        special = np.array(
            [0.0, -0.0, np.nan, np.inf, -np.inf, info.max, -info.max, info.tiny, 30.0, -30.0], dtype
        )
        # Where exp(-2|x|) is subnormal but tanh' = 4 exp(-2|x|) / (1 + ...)^2
        # is still normal: 4 times a subnormal exp keeps few of its digits.
        lo, hi = TANH_SUBNORMAL_EXP[np.dtype(dtype)]
        band = np.linspace(lo, hi, 64).astype(dtype)
        x = np.concatenate([special, band, -band, rng.uniform(-60, 60, n).astype(dtype)])
        g = rng.standard_normal(x.size).astype(dtype)
        dx, dg = cuda.to_device(x), cuda.to_device(g)
        for name in NAMES:
            act = fa.ACTIVATIONS[name]
            for kw in ({"training": False}, {"training": True, "seed": 5}) if name == "rrelu" else ({},):
                for mode in MODES:
                    want = call(act, mode, x, g, **kw)
                    got = call(act, mode, dx, dg, **kw)
                    pairs = zip(got, want, strict=True) if mode == "fused" else [(got, want)]
                    for k, (a, b) in enumerate(pairs):
                        a = a.copy_to_host()
                        where = f"{name} {mode} {np.dtype(dtype)}"
                        if not np.array_equal(np.isnan(a), np.isnan(b)):
                            raise AssertionError(f"{where}: NaN pattern differs from the CPU")
                        err = ulp_error(a, b.astype(np.longdouble), dtype)[0]
                        if err.size and err.max() > 8:
                            raise AssertionError(f"{where}: {err.max():.2f} ULP from the CPU")
                        from_cpu = max(from_cpu, float(err.max()) if err.size else 0.0)
                        if name in ("sigmoid", "tanh") and mode != "backward":
                            exact = reference(name, x, dtype)[1 if mode == "derivative" else k]
                            err = ulp_error(a, exact, dtype)[0]
                            if err.max() > 4:
                                raise AssertionError(f"{where}: {err.max():.2f} ULP from the reference")
                            from_exact = max(from_exact, float(err.max()))
        validate_prelu(x, g, dtype)
    print(
        "validated every kernel against the CPU: largest difference "
        f"{from_cpu:.2f} ULP; sigmoid and tanh within {from_exact:.2f} ULP of the references"
    )


def validate_prelu(x, g, dtype) -> None:
    """PReLU on the GPU against the CPU, exactly, in every channel layout."""
    n = x.size - x.size % 60
    rng = np.random.default_rng(1)
    for shape in ((n,), (n // 6, 6), (n // 60, 6, 10), (n // 6, 6, 1)):
        xs, gs = x[:n].reshape(shape), g[:n].reshape(shape)
        # grad_weight is compared on finite input, within a bound of its float64 sum.
        xf = np.clip(np.nan_to_num(xs), -60, 60)
        for channels in (1, 6 if len(shape) > 1 else n):
            w = rng.uniform(0.05, 0.5, channels).astype(dtype)
            dx, dg, dw = cuda.to_device(xs), cuda.to_device(gs), cuda.to_device(w)
            pairs = [
                (fa.prelu(dx, dw), fa.prelu(xs, w)),
                (fa.prelu.derivative(dx, dw), fa.prelu.derivative(xs, w)),
                *zip(fa.prelu.fused(dx, dw), fa.prelu.fused(xs, w), strict=True),
                (fa.prelu.backward(dg, dx, dw)[0], fa.prelu.backward(gs, xs, w)[0]),
            ]
            for k, (a, b) in enumerate(pairs):
                if not np.array_equal(a.copy_to_host(), b, equal_nan=True):
                    raise AssertionError(f"prelu output {k}, {shape} {np.dtype(dtype)}: differs from the CPU")
            got = fa.prelu.backward(dg, cuda.to_device(xf), dw)[1].copy_to_host()
            want = prelu_grad_weight_reference(gs, xf, w)
            terms = np.where(xf > 0, 0.0, gs.astype(np.float64) * xf)  # those grad_weight sums
            bound = 64 * np.finfo(dtype).eps * np.abs(terms).sum()
            if np.any(np.abs(got - want) > bound):
                raise AssertionError(f"prelu grad_weight {shape} {np.dtype(dtype)}: {got} vs {want}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1 << 28)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--validate-size", type=int, default=1 << 20)
    parser.add_argument(
        "--threads-per-block",
        type=int,
        default=fastact.cuda.THREADS_PER_BLOCK,
        help="a power of two; small blocks make numba's CUDA simulator usable",
    )
    args = parser.parse_args(argv)
    fastact.cuda.THREADS_PER_BLOCK = args.threads_per_block
    if not cuda.is_available():
        print("no CUDA GPU available: nothing validated or measured", file=sys.stderr)
        return 2
    validate(args.validate_size)
    print(measure_fused(args.size, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
