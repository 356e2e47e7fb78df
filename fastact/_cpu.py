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

The flat loops (``elementwise``, ``random``) have two streaming variants for
calls whose arrays exceed the last-level cache (``stream_min_bytes``), both writing the outputs
with non-temporal stores and giving the plain loop's bits: ``blocks``
computes blocks into a small buffer and copies them out (see
``_streaming_loop``), ``direct`` stores from the compute loop itself (see
``_direct_loop``), which is faster where the CPU allows it.
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
    STREAM_BLOCK_BYTES,
    STREAM_CHUNKS_PER_THREAD,
    STREAM_DIRECT_CPUS,
    STREAM_MIN_BYTES_MAX,
    STREAM_PREFETCH_BYTES,
    STREAM_PREFETCH_CPUS,
    WIDE_VECTOR_CPUS,
    X86_64,
)
from fastact._math import mathlib

# Arrays each mode reads and writes: (inputs, outputs).
TRAFFIC = {"forward": (1, 1), "derivative": (1, 1), "fused": (1, 2), "backward": (2, 1)}
MODES = tuple(TRAFFIC)

# Loops over the elements alone (no channel index), which have a streaming
# variant.
FLAT_LOOPS = ("elementwise", "random")

# Non-temporal stores: on by default on x86-64, where their gain was
# measured. Calls whose arrays together reach STREAM_MIN_BYTES stream their
# outputs; None means the size of the last-level cache, read once from
# sysfs, but at most STREAM_MIN_BYTES_MAX (see default_stream_min_bytes).
STREAMING = X86_64
STREAM_MIN_BYTES: int | None = None
_cache_bytes: int | None = None

# How streaming calls write: True for the ``direct`` loops, False for
# ``blocks``; None chooses by the CPU (``direct`` on the CPUs in
# STREAM_DIRECT_CPUS, where it was measured faster). Either way ``direct``
# needs all outputs at one offset within a 64-byte line; other calls take
# ``blocks``.
STREAM_DIRECT: bool | None = None
_host_cpu: str | None = None

# Software prefetch of the inputs in the parallel blocks loops: True, False,
# or None to choose by the CPU (STREAM_PREFETCH_CPUS, where it was measured
# faster); part of the kernels' key.
STREAM_PREFETCH: bool | None = None

# 512-bit loops where LLVM would choose 256-bit ones: True, False, or None
# to choose by the CPU (WIDE_VECTOR_CPUS, where it was measured faster).
# Flat loops only, not the direct streaming ones (see builds_wide); part of
# the kernels' key.
WIDE_VECTORS: bool | None = None

# The ways of writing a call's outputs: ordinary stores, or one of the two
# streaming loops.
STREAM_LAYOUTS = (None, "blocks", "direct")

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


def _put(stream: bool, jit=inline_jit):
    """``put(dst, k, v)``: ``dst[k] = v``, non-temporal if ``stream`` (CPU only).

    The non-temporal form (``stream_element``) may run only in loops that
    start on a 64-byte line of ``dst``; see ``_direct_loop``.
    """
    if stream:
        from fastact._intrinsics import stream_element

        return stream_element

    def put(dst, k, v):
        dst[k] = v

    return jit(put)


def _store(mode: str, jit=inline_jit, stream: bool = False):
    """``store(ins, i, outs, j, y, d)``: write element j of ``mode`` from f and f'.

    ``i`` indexes the inputs and ``j`` the outputs: the same index in a
    plain loop, the position in a block buffer in a streaming one. With
    ``stream`` the stores are non-temporal (``_direct_loop``). Inlined
    at Numba IR level so that the loop body is one function that LLVM
    vectorizes; the scalar ``f`` is called from the loop itself (measured: an
    un-inlined call layer in between left a fused tanh unvectorized, 270 ms
    instead of 17 ms at 2^24 float32). The input ``x`` is always ``ins[-1]``;
    for ``forward`` the unused derivative is removed as dead code.
    """
    put = _put(stream, jit)
    if mode == "forward":

        def store(ins, i, outs, j, y, d):
            put(outs[0], j, y)

    elif mode == "derivative":

        def store(ins, i, outs, j, y, d):
            put(outs[0], j, d)

    elif mode == "fused":

        def store(ins, i, outs, j, y, d):
            put(outs[0], j, y)
            put(outs[1], j, d)

    elif mode == "backward":

        def store(ins, i, outs, j, y, d):
            put(outs[0], j, ins[0][i] * d)

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


def _element(f, loop: str, m, arity: int, jit=inline_jit, wide: bool = False):
    """``element(x, i, p)``: ``(f(x[i]), f'(x[i]))`` with the loop's parameters ``p``.

    ``elementwise``: ``p`` holds the activation's parameters. ``random``:
    ``p = (lower, width, k0, k1)``, and the slope of element i is
    ``lower + width * u`` with u drawn from (k0, k1, i). With ``wide``
    (CPU only) the loop it is inlined into gets 512-bit vectors
    (``fastact._intrinsics.prefer_wide_vectors``).
    """
    if wide:
        from fastact._intrinsics import prefer_wide_vectors

        narrow = _element(f, loop, m, arity, jit)

        def wide_element(x, i, p):
            prefer_wide_vectors()
            return narrow(x, i, p)

        return jit(wide_element)
    if loop == "elementwise":
        call = _caller(f, arity)

        def element(x, i, p):
            return call(x[i], p)

    elif loop == "random":
        uniform = m.uniform

        def element(x, i, p):
            return f(x[i], p[0] + p[1] * uniform(np.int64(i), p[2], p[3]))

    else:
        raise ValueError(f"unknown flat loop {loop!r}")
    return jit(element)


def _loop(f, store, loop: str, m, prange, arity, wide: bool = False):
    # Indices computed from a row offset are made unsigned: Numba wraps
    # negative signed indices (x[-1] is the last element), and that select
    # turned the channel loops' contiguous loads into gathers.
    u64 = np.uint64

    if loop in FLAT_LOOPS:
        element = _element(f, loop, m, arity, wide=wide)

        def kernel(ins, outs, p):
            x = ins[-1]
            for i in prange(x.shape[0]):
                y, d = element(x, i, p)
                store(ins, i, outs, i, y, d)

    elif loop == "rows":

        def kernel(ins, outs, w, channels, inner):
            x = ins[-1]
            for r in prange(x.shape[0] // inner):
                s = w[r % channels]
                base = u64(r * inner)
                for k in range(inner):
                    i = base + u64(k)
                    y, d = f(x[i], s)
                    store(ins, i, outs, i, y, d)

    elif loop == "lanes":

        def kernel(ins, outs, w, channels, inner):
            x = ins[-1]
            for r in prange(x.shape[0] // channels):
                base = u64(r * channels)
                for c in range(channels):
                    i = base + u64(c)
                    y, d = f(x[i], w[c])
                    store(ins, i, outs, i, y, d)

    else:
        raise ValueError(f"unknown loop {loop!r}")
    return kernel


def _line_gap(itemsize: int):
    """``line_gap(address)``: elements from ``address`` to the next 64-byte line.

    Callers first check ``address % itemsize == 0``: an address off its item
    size never reaches a line boundary.
    """
    u64 = np.uint64
    size = u64(itemsize)
    line = u64(64)

    def line_gap(address):
        return ((line - address % line) % line) // size

    return inline_jit(line_gap)


def _line_offset(itemsize: int):
    """``line_offset(a, n)``: elements of ``a`` before its first 64-byte line, at most n.

    0 if ``a`` is not aligned to its item size (no element starts a line).
    """
    u64 = np.uint64
    size = u64(itemsize)
    line_gap = _line_gap(itemsize)

    def line_offset(a, n):
        address = u64(a.ctypes.data)
        if address % size != u64(0):
            return 0
        return min(n, np.int64(line_gap(address)))

    return inline_jit(line_offset)


def _stream_out(itemsize: int):
    """``stream_out(dst, s, m, src)``: ``dst[s:s+m] = src[:m]``, whole lines streamed.

    The 64-byte lines that ``dst[s:s+m]`` covers completely are written with
    non-temporal stores; the partial lines at either end (and all of an
    output whose address is not a multiple of its item size, which no
    alignment can fix) with ordinary stores, so no line is written half one
    way and half the other.
    """
    from fastact._intrinsics import STREAM_BYTES, stream_vector

    u64 = np.uint64
    size = u64(itemsize)
    per_line = u64(64 // itemsize)
    step = STREAM_BYTES // itemsize
    line_gap = _line_gap(itemsize)

    def stream_out(dst, s, m, src):
        address = u64(dst.ctypes.data) + s * size
        head = m
        body = m
        if address % size == u64(0):
            head = min(m, line_gap(address))
            body = head + (m - head) // per_line * per_line
        for j in range(head):
            dst[s + u64(j)] = src[j]
        for j in range(head, body, step):
            stream_vector(dst, s + u64(j), src, j)
        for j in range(body, m):
            dst[s + u64(j)] = src[j]

    return inline_jit(stream_out)


def stream_block(itemsize: int, n_out: int) -> int:
    """Elements per block of ``_streaming_loop`` with ``n_out`` outputs of ``itemsize`` bytes.

    ``STREAM_BLOCK_BYTES`` is the size of a block's outputs together, so a
    fused kernel's block holds half the elements of a forward one's (see
    ``fastact._config``).
    """
    return STREAM_BLOCK_BYTES // (itemsize * n_out)


def _prefetch_block(itemsize: int, block: int):
    """``prefetch_block(ins, start, n)``: prefetch the inputs' block ``STREAM_PREFETCH_BYTES`` ahead.

    One ``prefetch`` per 64-byte line of each input (``x``, and ``grad_out``
    for ``backward``), for the elements ``[start + ahead, start + ahead +
    block)`` that lie within the ``n`` elements.
    """
    from fastact._intrinsics import prefetch

    u64 = np.uint64
    ahead = u64(STREAM_PREFETCH_BYTES // itemsize)
    line = 64 // itemsize
    span = u64(block)

    def prefetch_block(ins, start, n):
        first = start + ahead
        last = min(first + span, u64(n))
        for k in range(first, last, line):
            prefetch(ins[-1], k)
            if len(ins) > 1:
                prefetch(ins[0], k)

    return inline_jit(prefetch_block)


def _stream_parts(element, store):
    """The pieces both streaming loops share, as inlined functions.

    ``plain(ins, outs, p, first, last)``: elements ``first:last`` with
    ordinary stores. ``share_out(blocks, chunks)``: ``(chunks, per_chunk)``,
    ``blocks`` in at most ``chunks`` contiguous runs, none empty.
    """

    def plain(ins, outs, p, first, last):
        x = ins[-1]
        for i in range(first, last):
            y, d = element(x, i, p)
            store(ins, i, outs, i, y, d)

    def share_out(blocks, chunks):
        chunks = max(1, min(blocks, chunks))
        per_chunk = (blocks + chunks - 1) // chunks
        return (blocks + per_chunk - 1) // per_chunk, per_chunk

    return inline_jit(plain), inline_jit(share_out)


def _streaming_loop(
    f,
    store,
    loop: str,
    m,
    prange,
    arity,
    n_out: int,
    itemsize: int,
    wide: bool = False,
    prefetch: bool = False,
):
    """The flat loops for outputs that do not fit in the caches.

    Each thread computes a block (``stream_block``: ``STREAM_BLOCK_BYTES``
    of outputs in all) into a buffer of its own, which stays in L1, and
    copies the block out with
    non-temporal stores: an ordinary store to a line that is not cached
    first reads the line (read-for-ownership), so a fused kernel moved 20
    bytes per float32 element instead of 12. Each output's lines of a block
    are written one after the other. Two streams of stores to outputs at the
    same offset within a 4 KiB page, as NumPy's large arrays are, hold each
    other up when they alternate closely (the conflict repeats every 4 KiB
    of distance and was gone from 512 bytes): measured on a Zen 3 (AVX2) at
    2^24 float32, a fused tanh with direct non-temporal stores from the compute loop took
    20 ms at the same offset, 7.0 ms with the outputs 512 bytes apart, and
    7.4 ms as blocks; in a C transcription, alternating line by line within
    a block took 1.3-1.6x as long as block by block at the same offset.
    Blocks keep the streams apart at any offset, and they need no alignment
    that the loop vectorizer cannot see (it vectorizes a non-temporal store
    only where the scalar store claims the vector's alignment). A Zen 4
    showed no such conflict; there ``_direct_loop`` is used instead. Blocks
    start on a line boundary of the outputs, so that no line inside the
    array is written partly with ordinary stores. The chunks of blocks are
    contiguous ranges (several per thread, for balance), each with its own
    buffer; a fence after each chunk makes the streamed lines visible to
    the thread that returns the result.

    The copy-out has a cost of its own where the arithmetic is the limit:
    on an AVX-512 Zen 4, one thread, a fused tanh with its blocks in L2
    took 7.4-8.6 ns per 16 elements against 6.0-6.5 with the copy skipped
    (and for the plain loop), whether the copy stored non-temporally or
    not, 32 or 64 bytes at a time, in blocks of 0.5-4 KiB. Copying the
    previous block piece by piece between sub-blocks of the next, to spread
    the stores out, was no faster (8.0-13.6 ns).

    With ``prefetch`` each block first asks for its inputs'
    ``STREAM_PREFETCH_BYTES`` ahead (``_prefetch_block``), so that they are
    in L2 by the time the loop reaches them.
    """
    from fastact._intrinsics import store_fence

    u64 = np.uint64
    element = _element(f, loop, m, arity, wide=wide)
    plain, share_out = _stream_parts(element, store)
    stream_out = _stream_out(itemsize)
    block = stream_block(itemsize, n_out)
    line_offset = _line_offset(itemsize)
    prefetch_block = _prefetch_block(itemsize, block)

    def kernel(ins, outs, p, chunks):
        x = ins[-1]
        n = x.shape[0]
        # Blocks start on a line of the first output (and of the others when
        # they share its offset in a line, as NumPy's large arrays do); the
        # elements before the first such line get ordinary stores.
        head = line_offset(outs[0], n)
        plain(ins, outs, p, 0, head)
        rest = n - head
        blocks = (rest + block - 1) // block
        chunks, per_chunk = share_out(blocks, chunks)
        buffers = np.empty((chunks, n_out, block), x.dtype)
        for c in prange(chunks):
            buf = buffers[c]
            for b in range(c * per_chunk, min(blocks, (c + 1) * per_chunk)):
                start = u64(head) + u64(b) * u64(block)
                length = u64(min(block, rest - b * block))
                if prefetch:
                    prefetch_block(ins, start, n)
                for j in range(length):
                    i = start + u64(j)
                    y, d = element(x, i, p)
                    store(ins, i, buf, j, y, d)
                for k in range(n_out):
                    stream_out(outs[k], start, length, buf[k])
            store_fence()

    return kernel


def _direct_loop(f, store, stream, loop: str, m, prange, arity, itemsize: int):
    """The flat loops for large outputs, non-temporal stores from the compute loop.

    ``store`` writes with ordinary stores, ``stream`` with non-temporal ones
    (``fastact._intrinsics.stream_element``), which the loop vectorizer
    turns into packed ``vmovntps``. Those need every vector store aligned to
    its width, so the loop starts on a 64-byte line of the first output and
    the caller (``launch``, through ``stream_layout``) sends here only calls
    whose outputs all lie at that same offset within a line, each aligned to
    its item size. The elements before the first line and after the last
    whole block get ordinary stores. Whole blocks of ``STREAM_BLOCK_BYTES``
    per output are shared out in contiguous chunks, as in
    ``_streaming_loop``, with a fence after each chunk.

    Against the blocks of ``_streaming_loop`` this saves the copy-out, one
    more store and load per element and output. On an AVX-512 Zen 4, one
    thread, a fused float32 tanh with its arrays in L2 took 6.1 ns per 16
    elements against 8.0 with the blocks (the plain loop: 6.1-6.7), and at
    2^24 elements on both cores it was as fast as the blocks or faster
    (4.9-5.2 against 4.9-5.5 ms), with the outputs at the same offset within
    a page or 1-2 KiB apart. On a Zen 3 (AVX2) the same stores with two
    outputs at the same offset within a page had been 2.7x slower than the
    blocks, which is why ``stream_layout`` picks this loop only on the CPUs
    where it was measured (``STREAM_DIRECT_CPUS``).
    """
    from fastact._intrinsics import store_fence

    u64 = np.uint64
    element = _element(f, loop, m, arity)
    plain, share_out = _stream_parts(element, store)
    block = STREAM_BLOCK_BYTES // itemsize
    line_offset = _line_offset(itemsize)

    def kernel(ins, outs, p, chunks):
        x = ins[-1]
        n = x.shape[0]
        head = line_offset(outs[0], n)
        blocks = (n - head) // block
        plain(ins, outs, p, 0, head)
        if blocks > 0:
            chunks, per_chunk = share_out(blocks, chunks)
            for c in prange(chunks):
                first = u64(head) + u64(c * per_chunk) * u64(block)
                last = u64(head) + u64(min(blocks, (c + 1) * per_chunk)) * u64(block)
                # One loop over the chunk's whole blocks: it starts on a
                # line, and its trip count (a multiple of the block) is a
                # run-time value, so LLVM vectorizes it rather than unrolling.
                for i in range(first, last):
                    y, d = element(x, i, p)
                    stream(ins, i, outs, i, y, d)
                store_fence()
        plain(ins, outs, p, head + blocks * block, n)

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
    activation,
    dtype,
    mode: str,
    loop: str = "elementwise",
    parallel: bool = True,
    arity: int = 0,
    stream: str | None = None,
):
    """The compiled-on-first-call kernel of one activation, dtype, mode and loop.

    ``stream`` selects a loop with non-temporal stores (flat loops only), for
    outputs too large to stay in the caches: ``"blocks"``
    (``_streaming_loop``) or ``"direct"`` (``_direct_loop``); None for
    ordinary stores.
    """
    if stream not in STREAM_LAYOUTS:
        raise ValueError(f"unknown stream layout {stream!r}; expected one of {STREAM_LAYOUTS}")
    if stream and (loop not in FLAT_LOOPS or mode == "prelu_backward"):
        raise ValueError(f"no streaming kernel for the {loop!r} loop in mode {mode!r}")
    wide = builds_wide(loop, mode, stream)
    prefetch = builds_prefetch(parallel, stream)
    # arity follows from name and loop
    key = (activation.name, dtype, mode, loop, parallel, stream, wide, prefetch)
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
            elif stream == "blocks":
                n_out = TRAFFIC[mode][1]
                itemsize = np.dtype(dtype).itemsize
                py = _streaming_loop(
                    f, _store(mode), loop, m, loop_range, arity, n_out, itemsize, wide, prefetch
                )
                kernel = _jit(py, parallel)
            elif stream == "direct":
                itemsize = np.dtype(dtype).itemsize
                stream_store = _store(mode, stream=True)
                py = _direct_loop(f, _store(mode), stream_store, loop, m, loop_range, arity, itemsize)
                kernel = _jit(py, parallel)
            else:
                py = _loop(f, _store(mode), loop, m, loop_range, arity, wide)
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


def use_streaming(mode: str, loop: str, size: int, itemsize: int) -> bool:
    """Whether a call writes its outputs with non-temporal stores.

    Only the flat loops stream, on x86-64 (where it was measured), and only
    when the call's arrays together exceed ``STREAM_MIN_BYTES``: below that
    the outputs may still be in cache when the caller reads them, and a
    streamed line would have to come back from memory.
    """
    if mode == "prelu_backward" or loop not in FLAT_LOOPS or not STREAMING:
        return False
    return bytes_moved(mode, size, itemsize) >= stream_min_bytes()


def host_cpu() -> str:
    """LLVM's name for this CPU (as Numba compiles for it), read once."""
    global _host_cpu
    if _host_cpu is None:
        import llvmlite.binding as llvm

        _host_cpu = llvm.get_host_cpu_name()
    return _host_cpu


def _by_cpu(setting: bool | None, cpus: frozenset) -> bool:
    """``setting``, or where it is None whether this CPU is one of ``cpus``."""
    if setting is not None:
        return setting
    return host_cpu() in cpus


def direct_stores() -> bool:
    """Whether streaming calls store from the compute loop (``STREAM_DIRECT``, or by CPU)."""
    return _by_cpu(STREAM_DIRECT, STREAM_DIRECT_CPUS)


def stream_prefetch() -> bool:
    """Whether the parallel blocks loops prefetch their inputs (``STREAM_PREFETCH``, or by CPU)."""
    return _by_cpu(STREAM_PREFETCH, STREAM_PREFETCH_CPUS)


def builds_prefetch(parallel: bool, stream: str | None) -> bool:
    """Whether the kernel of ``parallel`` and ``stream`` layout prefetches its inputs.

    The parallel ``blocks`` loops when ``stream_prefetch()``: on one core
    it was measured slower (see ``STREAM_PREFETCH_BYTES``).
    """
    return parallel and stream == "blocks" and stream_prefetch()


def wide_vectors() -> bool:
    """Whether flat loops are built with 512-bit vectors (``WIDE_VECTORS``, or by CPU)."""
    return _by_cpu(WIDE_VECTORS, WIDE_VECTOR_CPUS)


def builds_wide(loop: str, mode: str, stream: str | None) -> bool:
    """Whether the kernel of ``loop``, ``mode`` and ``stream`` layout gets 512-bit vectors.

    The flat loops when ``wide_vectors()``, but not the direct streaming
    ones: LLVM inlines their parfor function into Numba's wrapper, whose
    attributes it keeps, so the hint did not reach them (and where it was
    measured, streaming uses the blocks). Marking the parfor function
    ``noinline`` kept the hint (its listing showed a 512-bit loop), but on
    the Intel VM of ``WIDE_VECTOR_CPUS`` the calls then ran about 5x slower
    (tanh 32 against 6.5 ms at 2^24 float32, 256- or 512-bit alike), with
    scalar code running under a debugger.
    """
    return loop in FLAT_LOOPS and mode != "prelu_backward" and stream != "direct" and wide_vectors()


def stream_layout(outs, itemsize: int) -> str:
    """``"direct"`` or ``"blocks"``: how a streaming call writes ``outs`` (flat arrays).

    ``direct`` only where ``direct_stores()`` and every output is aligned to
    its item size and at the first one's offset within a 64-byte line (as
    NumPy's large arrays are): its packed non-temporal stores need each
    output's lines to start at the same element.
    """
    if not direct_stores():
        return "blocks"
    first = outs[0].ctypes.data
    if first % itemsize or any((o.ctypes.data - first) % 64 for o in outs[1:]):
        return "blocks"
    return "direct"


def stream_min_bytes() -> int:
    """The streaming threshold: ``STREAM_MIN_BYTES``, or ``default_stream_min_bytes()``."""
    global _cache_bytes
    if STREAM_MIN_BYTES is not None:
        return STREAM_MIN_BYTES
    if _cache_bytes is None:
        _cache_bytes = default_stream_min_bytes(last_level_cache_bytes())
    return _cache_bytes


def default_stream_min_bytes(cache_bytes: int | None) -> int:
    """The threshold for a last-level cache of ``cache_bytes`` (None: unknown).

    The cache's size, but at most ``STREAM_MIN_BYTES_MAX``: what sysfs
    reports is the whole cache, which on a server is shared with cores this
    process does not run on (see ``fastact._config``).
    """
    if not cache_bytes:
        return STREAM_MIN_BYTES_MAX
    return min(cache_bytes, STREAM_MIN_BYTES_MAX)


def last_level_cache_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> int | None:
    """The largest CPU cache's size in bytes, from Linux sysfs; None elsewhere."""
    import glob

    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    sizes = []
    for path in glob.glob(f"{root}/index*/size"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        scale = units.get(text[-1:].upper(), 1)
        digits = text[:-1] if text[-1:].upper() in units else text
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes) if sizes else None


def stream_chunks(parallel: bool) -> int:
    """Chunks of blocks for a streaming kernel: several per thread, or 1 serially."""
    if not parallel:
        return 1
    import numba

    return STREAM_CHUNKS_PER_THREAD * numba.get_num_threads()


def bytes_moved(mode: str, size: int, itemsize: int) -> int:
    """Bytes that one call of ``mode`` reads and writes (inputs and outputs)."""
    reads, writes = TRAFFIC[mode]
    return (reads + writes) * size * itemsize


def launch(activation, dtype, mode, loop, size, *args):
    """Run a kernel, choosing the parallel or serial build by ``size`` (``dtype``: a numpy.dtype)."""
    parallel = use_parallel(size)
    arity = len(args[-1]) if loop == "elementwise" and mode != "prelu_backward" else 1
    stream = None
    if use_streaming(mode, loop, size, dtype.itemsize):
        stream = stream_layout(args[1], dtype.itemsize)
    kernel = get_kernel(activation, dtype, mode, loop, parallel, arity, stream)
    if stream:
        # The number of chunks of blocks; read here, because numba's
        # get_num_threads() inside a kernel keeps it out of the disk cache.
        args = (*args, stream_chunks(parallel))
    if parallel:
        with _runtime.parallel_launch():
            kernel(*args)
    else:
        kernel(*args)
