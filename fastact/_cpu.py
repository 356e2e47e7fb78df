"""CPU backend: Numba loops generated from the scalar definitions.

Each kernel is built on first use and cached per (activation, dtype, mode,
loop shape, parallel), in memory and on disk. The loops are explicit
``prange`` loops over contiguous 1-D data: measured here, the same polynomial
in a ``guvectorize(target="parallel")`` ufunc ran 15x slower.

Loop shapes:

* ``elementwise``: scalar parameters passed to every element.
* ``rows`` / ``lanes``: PReLU's per-channel weight, for data laid out as
  (N, C, K) with K > 1 (one weight per row of K) or K == 1 (the weight vector
  runs along the contiguous axis).
* ``random``: RReLU in training, one slope per element from a counter-based
  generator, so slopes depend on (seed, index) only.
"""

from __future__ import annotations

import threading

import numpy as np

from fastact import _runtime
from fastact._config import (
    ERROR_MODEL,
    FASTMATH,
    FASTMATH_REDUCTION,
    PARALLEL_MIN_SIZE,
    REDUCTION_BLOCK,
)
from fastact._math import mathlib

MODES = ("forward", "derivative", "fused", "backward")

# Disk caching of compiled kernels (Numba's ``cache=True``); set to False
# before the first call to compile in memory only.
CACHE = True

_build_lock = threading.RLock()
_kernels: dict = {}


def _jit(fn, parallel: bool, fastmath=FASTMATH):
    """``njit`` with the project's flags; disk-cached when a cache dir is usable."""
    from numba import njit

    options = dict(parallel=parallel, fastmath=set(fastmath), error_model=ERROR_MODEL, nogil=True)
    if not CACHE:
        return njit(**options)(fn)
    try:
        return njit(cache=True, **options)(fn)
    except RuntimeError:
        # Numba found no writable cache location (read-only install and home):
        # compile in memory rather than fail.
        return njit(**options)(fn)


def inline_jit(fn):
    """The CPU decorator of the per-element helpers: inlined at Numba IR level."""
    from numba.extending import register_jitable

    return register_jitable(fastmath=set(FASTMATH), error_model=ERROR_MODEL, inline="always")(fn)


def _store(mode: str, jit=inline_jit):
    """``store(ins, outs, i, y, d)``: write element i of ``mode`` from f and f'.

    Inlined at Numba IR level so that the loop body is one function that LLVM
    vectorizes; the scalar ``f`` is called from the loop itself (measured: an
    un-inlined call layer in between left a fused tanh unvectorized, 270 ms
    instead of 17 ms at 2^24 float32). The input ``x`` is always ``ins[-1]``;
    for ``forward`` the unused derivative is removed as dead code.
    """
    if mode == "forward":

        def store(ins, outs, i, y, d):
            outs[0][i] = y

    elif mode == "derivative":

        def store(ins, outs, i, y, d):
            outs[0][i] = d

    elif mode == "fused":

        def store(ins, outs, i, y, d):
            outs[0][i] = y
            outs[1][i] = d

    elif mode == "backward":

        def store(ins, outs, i, y, d):
            outs[0][i] = ins[0][i] * d

    else:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    return jit(store)


def _caller(f, arity: int, jit=inline_jit):
    """``call(x, p)`` = ``f(x, *p)`` for a tuple ``p`` of ``arity`` parameters.

    Spelled out per arity because Numba cannot inline a ``*args`` call at IR
    level, and the IR-level inlining is what keeps a big body (tanh's two
    branches) vectorizable in the single-threaded loops, where LLVM declined
    to inline it.
    """
    if arity == 0:

        def call(x, p):
            return f(x)

    elif arity == 1:

        def call(x, p):
            return f(x, p[0])

    elif arity == 2:

        def call(x, p):
            return f(x, p[0], p[1])

    elif arity == 3:

        def call(x, p):
            return f(x, p[0], p[1], p[2])

    else:
        raise ValueError(f"activations take at most 3 kernel parameters, got {arity}")
    return jit(call)


def _loop(f, store, loop: str, m, prange, arity):
    # Indices computed from a row offset are made unsigned: Numba wraps
    # negative signed indices (x[-1] is the last element), and that select
    # turned the channel loops' contiguous loads into gathers.
    u64 = np.uint64

    if loop == "elementwise":
        call = _caller(f, arity)

        def kernel(ins, outs, p):
            x = ins[-1]
            for i in prange(x.shape[0]):
                y, d = call(x[i], p)
                store(ins, outs, i, y, d)

    elif loop == "rows":

        def kernel(ins, outs, w, channels, inner):
            x = ins[-1]
            for r in prange(x.shape[0] // inner):
                s = w[r % channels]
                base = u64(r * inner)
                for k in range(inner):
                    i = base + u64(k)
                    y, d = f(x[i], s)
                    store(ins, outs, i, y, d)

    elif loop == "lanes":

        def kernel(ins, outs, w, channels, inner):
            x = ins[-1]
            for r in prange(x.shape[0] // channels):
                base = u64(r * channels)
                for c in range(channels):
                    i = base + u64(c)
                    y, d = f(x[i], w[c])
                    store(ins, outs, i, y, d)

    elif loop == "random":
        uniform = m.uniform

        def kernel(ins, outs, lower, width, k0, k1):
            x = ins[-1]
            for i in prange(x.shape[0]):
                y, d = f(x[i], lower + width * uniform(i, k0, k1))
                store(ins, outs, i, y, d)

    else:
        raise ValueError(f"unknown loop {loop!r}")
    return kernel


def _prelu_backward_loop(f, loop: str, m, prange):
    """PReLU backward: grad_x and per-block partial sums of grad_weight, one pass."""
    u64 = np.uint64

    from numba.extending import register_jitable

    zero = m.zero
    block = REDUCTION_BLOCK

    jit = register_jitable(fastmath=set(FASTMATH_REDUCTION), error_model=ERROR_MODEL, inline="always")

    # Left to LLVM to inline: at Numba IR level, inlining it into span and
    # span into the kernel trips a Numba IR consistency warning.
    @register_jitable(fastmath=set(FASTMATH_REDUCTION), error_model=ERROR_MODEL)
    def step(g, x, gx, i, s):
        """Write grad_x[i]; return element i's term of grad_weight."""
        xi = x[i]
        gi = g[i]
        gx[i] = gi * f(xi, s)[1]
        return zero if xi > zero else gi * xi

    @jit
    def span(g, x, gx, start, stop, s, acc, k):
        """grad_x over [start, stop); its grad_weight terms summed into acc[k, :].

        With ``lanes = acc.shape[1]``, element ``start + lanes*q + j`` goes to
        running sum j (the rest of the span to sum 0, in order): the order is
        written out, so with strict IEEE arithmetic every build (serial,
        parallel, cached) gives the same bits, and the independent sums still
        vectorize (the lane count is read at run time on purpose: a constant
        trip count gets the loop unrolled, and then it stays scalar).
        """
        lanes = acc.shape[1]
        for j in range(lanes):
            acc[k, j] = zero
        full = (stop - start) // u64(lanes)
        for q in range(full):
            base = start + u64(q) * u64(lanes)
            for j in range(lanes):
                acc[k, j] += step(g, x, gx, base + u64(j), s)
        for i in range(start + full * u64(lanes), stop):
            acc[k, 0] += step(g, x, gx, u64(i), s)

    if loop == "elementwise":

        def kernel(g, x, gx, partial, w):
            n = x.shape[0]
            s = w[0]
            for b in prange(partial.shape[0]):
                span(g, x, gx, u64(b * block), u64(min(n, (b + 1) * block)), s, partial, b)

    elif loop == "rows":

        def kernel(g, x, gx, partial, w, channels, inner):
            for r in prange(x.shape[0] // inner):
                base = u64(r * inner)
                span(g, x, gx, base, base + u64(inner), w[r % channels], partial, r)

    elif loop == "lanes":

        def kernel(g, x, gx, partial, w, channels, rows_per_block):
            nrows = x.shape[0] // channels
            for b in prange(partial.shape[0]):
                for c in range(channels):
                    partial[b, c] = zero
                for r in range(b * rows_per_block, min(nrows, (b + 1) * rows_per_block)):
                    base = u64(r * channels)
                    for c in range(channels):
                        partial[b, c] += step(g, x, gx, base + u64(c), w[c])

    else:
        raise ValueError(f"unknown loop {loop!r}")
    return kernel


def get_kernel(
    activation, dtype, mode: str, loop: str = "elementwise", parallel: bool = True, arity: int = 0
):
    """The compiled-on-first-call kernel of one activation, dtype, mode and loop."""
    key = (activation.name, dtype, mode, loop, parallel)  # arity follows from name and loop
    kernel = _kernels.get(key)
    if kernel is not None:
        return kernel
    with _build_lock:
        kernel = _kernels.get(key)
        if kernel is None:
            if parallel:
                _runtime.configure()
            from numba import prange

            m = mathlib(dtype)
            f = activation.scalar(dtype)
            # The serial build loops with ``range``. Besides saying what it
            # does, this makes its closure differ from the parallel build's:
            # Numba's cache keys a closure by its contents and signature, not
            # by the ``parallel`` flag, so the two would otherwise share (and
            # swap) one cache entry.
            loop_range = prange if parallel else range
            if mode == "prelu_backward":
                py = _prelu_backward_loop(f, loop, m, loop_range)
                kernel = _jit(py, parallel, FASTMATH_REDUCTION)
            else:
                py = _loop(f, _store(mode), loop, m, loop_range, arity)
                kernel = _jit(py, parallel)
            _kernels[key] = kernel
    return kernel


def use_parallel(size: int) -> bool:
    if size < PARALLEL_MIN_SIZE:
        return False
    import numba

    # Before get_num_threads(), which starts numba's thread pool.
    _runtime.configure()
    return numba.get_num_threads() > 1 and _runtime.parallel_allowed()


def launch(activation, dtype, mode, loop, size, *args):
    """Run a kernel, choosing the parallel or serial build by ``size``."""
    parallel = use_parallel(size)
    arity = len(args[-1]) if loop == "elementwise" and mode != "prelu_backward" else 1
    kernel = get_kernel(activation, dtype, mode, loop, parallel, arity)
    if parallel:
        with _runtime.parallel_launch():
            kernel(*args)
    else:
        kernel(*args)
