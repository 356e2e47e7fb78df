"""Exhaustive float32 accuracy check: every one of the 2^32 inputs.

``python -m fastact.accuracy sigmoid tanh`` (or ``fastact accuracy ...``)
runs ``fused`` on all float32 bit patterns, chunk by chunk, and compares the
value and the derivative with float64 references written independently of
the kernels (libm's exp/tanh/cosh in double precision; their error, about
1e-16 relative, is 2^-29 of a float32 ULP). It prints the largest error in
ULP over the inputs whose exact result is a normal float32, where that error
occurs, and counts special-value mismatches (NaN where a number is due and
the reverse, wrong infinities). The error unit is the spacing of float32
numbers at the exact value. It exits with status 1 when the contract (4 ULP,
no special-value mismatch) is broken.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from fastact._cli import positive_int

FLT_MIN = float(np.finfo(np.float32).tiny)
# The numerics contract: f and f' within this many ULP wherever the exact
# result is a normal number. ``main`` exits with status 1 beyond it.
CONTRACT_ULP = 4.0


def _references():
    """name -> jitted float64 (f(x), f'(x)) for a float32 input (and its params)."""
    from numba import njit

    @njit(error_model="numpy")
    def sigmoid(x, p):
        # f = 1/(1+e^-x); f' = f(x) f(-x): no cancellation on either side.
        a = 1.0 / (1.0 + math.exp(-x))
        b = 1.0 / (1.0 + math.exp(x))
        return a, a * b

    @njit(error_model="numpy")
    def tanh(x, p):
        c = math.cosh(x)  # overflows to inf beyond |x| ~ 710, where f' ~ 0
        return math.tanh(x), 1.0 / (c * c)

    @njit(error_model="numpy")
    def relu(x, p):
        if x != x:
            return x, x
        return max(x, 0.0) if x != 0.0 else x, 1.0 if x > 0.0 else 0.0

    @njit(error_model="numpy")
    def leaky_relu(x, p):
        if x != x:
            return x, x
        return (x if x > 0.0 else x * p), (1.0 if x > 0.0 else p)

    return {"sigmoid": sigmoid, "tanh": tanh, "relu": relu, "leaky_relu": leaky_relu}


def _error_kernel(ref):
    from numba import njit, prange

    ulp_error = njit(error_model="numpy")(_ulp_error)

    @njit(parallel=True, error_model="numpy")
    def errors(x, y, d, p, err_y, err_d, special):
        for i in prange(x.shape[0]):
            xi = np.float64(x[i])
            ry, rd = ref(xi, p)
            err_y[i], sy = ulp_error(np.float64(y[i]), ry)
            err_d[i], sd = ulp_error(np.float64(d[i]), rd)
            special[i] = sy + sd

    return errors


def _ulp_error(v, r):
    """(error in float32 ULPs, 1 if a special-value mismatch else 0)."""
    if r != r:
        return 0.0, (0 if v != v else 1)
    if v != v:
        return 0.0, 1
    if math.isinf(r) or math.isinf(v):
        return 0.0, (0 if v == r else 1)
    a = abs(r)
    if a < FLT_MIN:
        return 0.0, 0  # exact result subnormal: outside the ULP contract
    m, e = math.frexp(a)
    return abs(v - r) / math.ldexp(1.0, e - 24), 0


@dataclass
class Result:
    """Largest errors of one activation over the inputs checked."""

    name: str
    inputs: int = 0
    max_ulp_value: float = 0.0
    at_value: float = math.nan
    max_ulp_derivative: float = 0.0
    at_derivative: float = math.nan
    special_mismatches: int = 0
    examples: list = field(default_factory=list)


def check(name: str, *, step: int = 1, chunk: int = 1 << 24, progress=None, **params) -> Result:
    """Compare ``fastact.<name>.fused`` with the float64 reference on float32 inputs.

    ``step`` takes every step-th bit pattern (1: all 2^32).
    """
    import fastact

    refs = _references()
    if name not in refs:
        raise ValueError(f"no exhaustive reference for {name!r}; available: {', '.join(refs)}")
    act = fastact.ACTIVATIONS[name]
    p = float(np.float32(params.get("negative_slope", act.params.get("negative_slope", 0.0))))
    errors = _error_kernel(refs[name])
    res = Result(name)
    total = 1 << 32
    span = chunk * step
    for start in range(0, total, span):
        bits = np.arange(start, min(total, start + span), step, dtype=np.uint64).astype(np.uint32)
        x = bits.view(np.float32)
        y, d = act.fused(x, **params)
        err_y = np.empty(x.size)
        err_d = np.empty(x.size)
        special = np.empty(x.size, np.int64)
        errors(x, y, d, p, err_y, err_d, special)
        res.inputs += x.size
        iy, idd = int(np.argmax(err_y)), int(np.argmax(err_d))
        if err_y[iy] > res.max_ulp_value:
            res.max_ulp_value, res.at_value = float(err_y[iy]), float(x[iy])
        if err_d[idd] > res.max_ulp_derivative:
            res.max_ulp_derivative, res.at_derivative = float(err_d[idd]), float(x[idd])
        bad = np.flatnonzero(special)
        res.special_mismatches += bad.size
        res.examples.extend(float(v) for v in x[bad[: max(0, 5 - len(res.examples))]])
        if progress is not None:
            progress(min(total, start + span) / total)
    return res


def format_table(results) -> str:
    lines = [
        "| activation | inputs | max ULP f | at x | max ULP f' | at x | special mismatches |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.inputs:,} | {r.max_ulp_value:.3f} | {r.at_value:.9g} | "
            f"{r.max_ulp_derivative:.3f} | {r.at_derivative:.9g} | {r.special_mismatches} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="fastact accuracy",
        description="Check float32 f and f' of activations on all 2^32 inputs against float64 references.",
        epilog=f"Exit status 1 if an error exceeds {CONTRACT_ULP:g} ULP or a special value is wrong.",
    )
    parser.add_argument("names", nargs="*", help="activations (default: sigmoid tanh relu leaky_relu)")
    parser.add_argument(
        "--step", type=positive_int, default=1, help="check every STEP-th bit pattern (default 1: all)"
    )
    args = parser.parse_args(argv)
    available = list(_references())
    names = args.names or available
    unknown = [n for n in names if n not in available]
    if unknown:
        parser.error(f"no exhaustive check for {', '.join(unknown)}; choose from {', '.join(available)}")
    results = []
    for name in names:
        t0 = time.perf_counter()

        def progress(frac, name=name, t0=t0):
            print(
                f"\r{name}: {frac:6.1%}  {time.perf_counter() - t0:6.1f} s",
                end="",
                file=sys.stderr,
                flush=True,
            )

        results.append(check(name, step=args.step, progress=progress))
        print(file=sys.stderr)
    print(format_table(results))
    failures = violations(results)
    for line in failures:
        print(line)
    return 1 if failures else 0


def violations(results) -> list[str]:
    """One line per broken promise of the contract in ``results`` (empty if none)."""
    lines = []
    for r in results:
        for what, err, at in (
            ("f", r.max_ulp_value, r.at_value),
            ("f'", r.max_ulp_derivative, r.at_derivative),
        ):
            if err > CONTRACT_ULP:
                lines.append(
                    f"{r.name}: {what} is {err:.3f} ULP off at x = {at:.9g}, beyond {CONTRACT_ULP:g} ULP"
                )
        if r.special_mismatches:
            lines.append(f"{r.name}: {r.special_mismatches} special-value mismatches, e.g. x = {r.examples}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
