"""CUDA backend: grid-stride kernels generated from the same definitions.

Device arrays (anything with ``__cuda_array_interface__``: numba device
arrays, CuPy arrays, torch CUDA tensors) passed to ``fa.NAME``,
``.derivative``, ``.fused`` or ``.backward`` run here; results are numba
device arrays (or the device ``out=`` buffers given). Nothing in this module
is imported, and nothing CUDA is compiled, until a device array arrives or
:func:`inspect_ptx` is called.

The kernels use one grid-stride shape for every activation and mode, 64-bit
indices (arrays beyond 2^31 elements), any length, and libdevice's accurate
math (no fast-math). The per-element helpers are built with
``cuda.jit(device=True, inline="always")``: the CPU side's
``register_jitable`` helpers made ``compile_ptx`` ask for a GPU.
"""

from __future__ import annotations

import threading

import numpy as np

# Imported here, at module level, so that the kernels see ``cuda`` as a global:
# numba's simulator swaps that global for its own. This module itself is only
# imported once a device array arrives.
from numba import cuda

from fastact._activation import is_device_array
from fastact._arrays import as_scalar
from fastact._cpu import MODES, _caller, _store

THREADS_PER_BLOCK = 256  # a power of two: PReLU's grad_weight reduces by halving
BLOCKS_PER_SM = 32

# PReLU's grad_weight: the flat input is viewed as rows of at least UNIT_MIN
# columns (a whole number of channel periods); one thread sums CHUNK_ROWS rows
# of one column while it writes grad_x, then blocks reduce those partial sums
# per channel, each thread adding REDUCE_ITEMS of them in order before a tree
# of fixed shape. Every sum has a fixed order: the result does not depend on
# the grid size, and is the same on every run.
UNIT_MIN = 256
CHUNK_ROWS = 64
REDUCE_ITEMS = 64

_lock = threading.RLock()
_kernels: dict = {}


def device_fma(a, b, c):
    """``a*b + c`` rounded once, for the CUDA math library (``cuda`` is a global here)."""
    return cuda.fma(a, b, c)


def _device_jit(fn):
    from fastact._math import _cuda_jit

    return _cuda_jit(fn)


def _template(call, store, loop: str, m):
    if loop == "elementwise":

        def kernel(ins, outs, p):
            x = ins[-1]
            n = x.shape[0]
            i = np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
            stride = np.int64(cuda.gridDim.x) * cuda.blockDim.x
            while i < n:
                y, d = call(x[i], p)
                store(ins, i, outs, i, y, d)
                i += stride

    elif loop == "random":
        uniform = m.uniform

        def kernel(ins, outs, p):
            x = ins[-1]
            n = x.shape[0]
            lower, width, k0, k1 = p
            i = np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
            stride = np.int64(cuda.gridDim.x) * cuda.blockDim.x
            while i < n:
                y, d = call(x[i], (lower + width * uniform(i, k0, k1),))
                store(ins, i, outs, i, y, d)
                i += stride

    else:
        raise ValueError(f"unknown CUDA loop {loop!r}")
    return kernel


def _python_kernel(activation, dtype, mode: str, loop: str, arity: int):
    from fastact._math import mathlib

    m = mathlib(dtype, "cuda")
    f = activation.scalar(dtype, "cuda")
    call = _caller(f, 1 if loop == "random" else arity, _device_jit)
    return _template(call, _store(mode, _device_jit), loop, m)


def _signature(dtype, mode: str, loop: str, arity: int):
    from numba import types

    scalar = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    arr = types.Array(scalar, 1, "C")
    n_in = 2 if mode == "backward" else 1
    n_out = 2 if mode == "fused" else 1
    if loop == "random":
        params = types.Tuple((scalar, scalar, types.uint32, types.uint32))
    else:
        params = types.UniTuple(scalar, arity) if arity else types.Tuple(())
    return types.void(types.UniTuple(arr, n_in), types.UniTuple(arr, n_out), params)


def get_kernel(activation, dtype, mode: str, loop: str, arity: int):
    key = (activation.name, np.dtype(dtype), mode, loop, arity)
    with _lock:
        kernel = _kernels.get(key)
        if kernel is None:
            py = _python_kernel(activation, dtype, mode, loop, arity)
            kernel = _kernels[key] = cuda.jit(fastmath=False)(py)
    return kernel


def inspect_ptx(name: str, dtype="float32", mode: str = "fused", cc=(9, 0), **params) -> str:
    """The PTX of one kernel; needs numba-cuda but no GPU.

    ``mode`` is one of ``forward``, ``derivative``, ``fused``, ``backward``.
    ``params`` select the kernel variant: ``training=True`` for RReLU's
    random-slope kernel; ``reduction=True`` with PReLU's ``backward`` for the
    kernel that sums grad_weight's partial sums per channel.
    """
    import fastact

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    act = fastact.ACTIVATIONS[name]
    if name == "prelu":
        kind = "reduce" if mode == "backward" and params.get("reduction") else mode
        py = _prelu_python_kernel(act, np.dtype(dtype), kind, THREADS_PER_BLOCK)
        signature = _prelu_signature(dtype, kind)
    else:
        loop = "random" if name == "rrelu" and params.get("training") else "elementwise"
        arity = 0 if name in ("sigmoid", "tanh", "relu") else 1
        py = _python_kernel(act, np.dtype(dtype), mode, loop, arity)
        signature = _signature(dtype, mode, loop, arity)
    ptx, _ = cuda.compile_ptx(py, signature, cc=tuple(cc))
    return ptx


def _as_device(a, what: str):
    arr = a if type(a).__module__.startswith("numba.cuda") else cuda.as_cuda_array(a)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{what} has dtype {arr.dtype}; the CUDA kernels compute float32 and float64")
    return arr


def _flat(arr):
    """A C-ordered contiguous 1-D device view, copying on the device when needed.

    Outputs are C-ordered, so the input is flattened in C order too (a
    Fortran-ordered input is copied, not read in its own order).
    """
    if arr.is_c_contiguous():
        return arr.reshape(arr.size)
    out = cuda.device_array(arr.shape, arr.dtype)
    out[...] = arr
    return out.reshape(arr.size)


def _max_blocks() -> int:
    try:
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    except Exception:  # noqa: BLE001 - the simulator has no device attributes
        sms = 2
    return sms * BLOCKS_PER_SM


def launch_config(size: int):
    """(blocks, threads) of a grid-stride launch over ``size`` items."""
    blocks = max(1, min(-(-size // THREADS_PER_BLOCK), _max_blocks()))
    return blocks, THREADS_PER_BLOCK


def _address(arr) -> int:
    cai = getattr(arr, "__cuda_array_interface__", None)
    # Numba's simulator wraps a host array, which has no CUDA interface.
    return (cai if cai is not None else arr.__array_interface__)["data"][0]


def _span(arr):
    """``(first, end)``: the bytes of device memory that ``arr``'s elements lie in; None if empty."""
    if arr.size == 0:
        return None
    lo = hi = _address(arr)
    for n, step in zip(arr.shape, arr.strides, strict=True):
        if step < 0:
            lo += (n - 1) * step
        else:
            hi += (n - 1) * step
    return lo, hi + arr.dtype.itemsize


def _overlap(a, b) -> bool:
    sa, sb = _span(a), _span(b)
    return sa is not None and sb is not None and sa[0] < sb[1] and sb[0] < sa[1]


def _same_view(a, b) -> bool:
    return _address(a) == _address(b) and a.shape == b.shape and a.strides == b.strides


def _apart(arr, outs, same_view_ok: bool):
    """``arr``, or a device copy of it when it shares memory with an output.

    The kernels' threads write outputs while others still read the inputs,
    so an input that overlaps an output at an offset would be read after
    being written. In place (``out=x``, the same view) each element is read
    before its own thread writes it, which is safe for elementwise inputs
    (``same_view_ok``) but not for PReLU's weight.
    """
    for o in outs:
        if _overlap(arr, o) and not (same_view_ok and _same_view(arr, o)):
            copy = cuda.device_array(arr.shape, arr.dtype)
            copy[...] = arr
            return copy
    return arr


def _operands(where: str, arrays, names, out, n_out, label="out"):
    """Check device operands and ``out``; return (inputs, results, flat buffers, shape, dtype).

    ``label`` names a single ``out`` in errors ("out[0]" where it came from a pair).
    """
    for a, n in zip(arrays, names, strict=True):
        if not is_device_array(a):
            raise TypeError(
                f"{where}: {n} is a host array but another argument is on the GPU; "
                "move both to the same device (fastact never copies silently)"
            )
    devs = [_as_device(a, f"{where}: {n}") for a, n in zip(arrays, names, strict=True)]
    shape, dtype = devs[-1].shape, devs[-1].dtype
    for d, n in zip(devs, names, strict=True):
        if d.shape != shape:
            raise ValueError(f"{where}: {n} has shape {d.shape}, but x has shape {shape}")
        if d.dtype != dtype:
            raise TypeError(f"{where}: {n} has dtype {d.dtype}, but x has dtype {dtype}")
    # The pair is checked before it is unpacked: list() of a device array
    # would copy it to the host element by element.
    if n_out == 2 and out is not None and (not isinstance(out, (tuple, list)) or len(out) != 2):
        raise TypeError(f"{where}: out must be a pair (y, dy) of device arrays, got {type(out).__name__}")
    given = [None] * n_out if out is None else ([out] if n_out == 1 else list(out))
    results, buffers = [], []
    for k, o in enumerate(given):
        o = (
            cuda.device_array(shape, dtype)
            if o is None
            else _device_out(o, shape, dtype, where, label if n_out == 1 else f"out[{k}]")
        )
        results.append(o)
        buffers.append(o.reshape(o.size))
    if len(results) == 2 and _overlap(*results):
        raise ValueError(f"{where}: the output buffers overlap each other")
    devs = [_apart(d, results, same_view_ok=True) for d in devs]
    return devs, results, buffers, shape, np.dtype(dtype)


def _device_out(o, shape, dtype, where: str, label: str):
    """The caller's device out buffer ``o``, checked: on the GPU, of ``dtype`` and ``shape``, C-contiguous."""
    if not is_device_array(o):
        raise TypeError(f"{where}: {label} is a host array but the input is on the GPU")
    o = _as_device(o, f"{where}: {label}")
    if o.dtype != dtype:
        raise TypeError(f"{where}: {label} has dtype {o.dtype}, expected {np.dtype(dtype)}")
    if o.shape != shape:
        raise ValueError(f"{where}: {label} has shape {o.shape}, expected {shape}")
    if not o.is_c_contiguous():
        raise ValueError(f"{where}: {label} must be a C-contiguous device array")
    return o


def run(activation, mode: str, arrays, names, out, n_out, kernel_params):
    """The CUDA path of one call: validate device operands, launch, return device arrays.

    ``kernel_params(dtype)`` gives (loop, parameters) for the input's dtype.
    """
    devs, results, buffers, shape, dtype = _operands(f"{activation.name}.{mode}", arrays, names, out, n_out)
    size = int(np.prod(shape))
    if size:
        loop, params = kernel_params(dtype)
        arity = 0 if loop == "random" else len(params)
        kernel = get_kernel(activation, dtype, mode, loop, arity)
        blocks, threads = launch_config(size)
        kernel[blocks, threads](tuple(_flat(d) for d in devs), tuple(buffers), params)
    return results[0] if n_out == 1 else tuple(results)


# -- PReLU: a weight per channel, and grad_weight reduced on the device ---------
def _channel_template(f, store):
    def kernel(ins, outs, w, channels, inner):
        x = ins[-1]
        n = x.shape[0]
        i = np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        stride = np.int64(cuda.gridDim.x) * cuda.blockDim.x
        # The channel of i is (i // inner) % channels. Dividing once and then
        # stepping (k, c) along with i keeps 64-bit divisions, which GPUs
        # emulate in dozens of instructions, out of the loop.
        row = i // inner
        k = i - row * inner
        c = row % channels
        step_rows = stride // inner
        step_k = stride - step_rows * inner
        step_c = step_rows % channels
        while i < n:
            y, d = f(x[i], w[c])
            store(ins, i, outs, i, y, d)
            i += stride
            k += step_k
            c += step_c
            if k >= inner:
                k -= inner
                c += 1
            if c >= channels:
                c -= channels

    return kernel


def _prelu_backward_template(f, zero):
    def kernel(g, x, gx, partial, w, channels, inner, unit, rows, chunk):
        # Thread t owns column q of row chunk j of the (rows, unit) view:
        # it writes grad_x there and sums that column's grad_weight terms.
        n = x.shape[0]
        t = np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        stride = np.int64(cuda.gridDim.x) * cuda.blockDim.x
        while t < partial.shape[0]:
            j = t // unit
            q = t - j * unit
            s = w[(q // inner) % channels]
            acc = zero
            r = j * chunk
            end = min(rows, r + chunk)
            i = r * unit + q
            while r < end and i < n:
                xi = x[i]
                gi = g[i]
                gx[i] = gi * f(xi, s)[1]
                if not xi > zero:
                    acc += gi * xi
                r += 1
                i += unit
            partial[t] = acc
            t += stride

    return kernel


def _reduce_template(zero, threads: int, dtype):
    def kernel(src, dst, entries, inner, channels, reps, items):
        # dst[c * groups + k] = sum of group k of channel c's entries, where
        # entry s of channel c sits at src[(s // (reps*inner)) * reps*period
        # + ((s % (reps*inner)) // inner) * period + c*inner + s % inner].
        shared = cuda.shared.array(threads, dtype)
        tid = cuda.threadIdx.x
        width = np.int64(cuda.blockDim.x)
        per_group = width * items
        groups = (entries + per_group - 1) // per_group
        period = channels * inner
        span = reps * inner
        b = np.int64(cuda.blockIdx.x)
        while b < channels * groups:
            c = b // groups
            k = b - c * groups
            acc = zero
            s = k * per_group + tid
            end = min(entries, (k + 1) * per_group)
            while s < end:
                block = s // span
                rem = s - block * span
                a = rem // inner
                acc += src[block * reps * period + a * period + c * inner + (rem - a * inner)]
                s += width
            shared[tid] = acc
            cuda.syncthreads()
            half = width // 2
            while half > 0:
                if tid < half:
                    shared[tid] += shared[tid + half]
                cuda.syncthreads()
                half //= 2
            if tid == 0:
                dst[b] = shared[0]
            cuda.syncthreads()
            b += cuda.gridDim.x

    return kernel


def _prelu_python_kernel(activation, dtype, mode: str, threads: int):
    from fastact._math import mathlib

    m = mathlib(dtype, "cuda")
    if mode == "reduce":
        return _reduce_template(m.zero, threads, m.type)
    f = activation.scalar(dtype, "cuda")
    if mode == "backward":
        return _prelu_backward_template(f, m.zero)
    return _channel_template(f, _store(mode, _device_jit))


def _prelu_signature(dtype, mode: str):
    from numba import types

    scalar = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    arr = types.Array(scalar, 1, "C")
    i64 = types.int64
    if mode == "reduce":
        return types.void(arr, arr, i64, i64, i64, i64, i64)
    if mode == "backward":
        return types.void(arr, arr, arr, arr, arr, i64, i64, i64, i64, i64)
    n_out = 2 if mode == "fused" else 1
    return types.void(types.UniTuple(arr, 1), types.UniTuple(arr, n_out), arr, i64, i64)


def _prelu_kernel(activation, dtype, mode: str):
    threads = THREADS_PER_BLOCK
    if threads & (threads - 1):
        raise ValueError(f"THREADS_PER_BLOCK must be a power of two, got {threads}")
    key = (activation.name, np.dtype(dtype), "prelu-" + mode, threads)
    with _lock:
        kernel = _kernels.get(key)
        if kernel is None:
            py = _prelu_python_kernel(activation, dtype, mode, threads)
            kernel = _kernels[key] = cuda.jit(fastmath=False)(py)
    return kernel


def _device_weight(where: str, weight, dtype):
    if isinstance(weight, (int, float, np.integer, np.floating)) and not isinstance(weight, (bool, np.bool_)):
        return cuda.to_device(np.array([as_scalar(weight, np.dtype(dtype), f"{where}: weight")], dtype))
    if not is_device_array(weight):
        raise TypeError(
            f"{where}: weight is a host array but x is on the GPU; "
            "move both to the same device (fastact never copies silently)"
        )
    w = _as_device(weight, f"{where}: weight")
    if w.dtype != dtype:
        raise TypeError(f"{where}: weight has dtype {w.dtype}, but x has dtype {dtype}")
    return w


def run_prelu(
    activation, mode: str, arrays, names, weight, out, n_out, count_channels, label="out", weight_out=None
):
    """PReLU on device arrays: ``(result, grad_weight)`` for ``backward``, else the result.

    ``count_channels(method, size, ndim, shape)`` validates the weight's size and
    returns the number of channels (as on the CPU). ``weight_out``, for
    ``backward``: the caller's grad_weight buffer, or None.
    """
    where = f"prelu.{mode}"
    devs, results, buffers, shape, dtype = _operands(where, arrays, names, out, n_out, label)
    w = _device_weight(where, weight, dtype)
    channels = count_channels(mode, w.size, w.ndim, shape)
    if weight_out is None:
        grad_weight = cuda.device_array(w.size, dtype) if mode == "backward" else None
    else:
        grad_weight = _device_out(weight_out, (w.size,), dtype, where, "out[1]")
        # Written by the last reduction, after every read of the inputs and
        # the weight, but it must not overwrite grad_x.
        if _overlap(grad_weight, results[0]):
            raise ValueError(f"{where}: the output buffers overlap each other")
    w = _apart(_flat(w), results, same_view_ok=False)
    inner = 1 if channels == 1 else int(np.prod(shape[2:], dtype=np.int64))
    size = int(np.prod(shape, dtype=np.int64))
    result = results[0] if n_out == 1 else tuple(results)
    if mode != "backward":
        if size:
            kernel = _prelu_kernel(activation, dtype, mode)
            blocks, threads = launch_config(size)
            kernel[blocks, threads](
                tuple(_flat(d) for d in devs), tuple(buffers), w, np.int64(channels), np.int64(inner)
            )
        return result
    if not size:
        grad_weight[:] = 0
        return result, grad_weight
    g, x = (_flat(d) for d in devs)
    period = channels * inner
    reps = max(1, -(-UNIT_MIN // period))
    unit = reps * period
    rows = -(-size // unit)
    chunks = -(-rows // CHUNK_ROWS)
    partial = cuda.device_array(chunks * unit, dtype)
    blocks, threads = launch_config(partial.size)
    _prelu_kernel(activation, dtype, "backward")[blocks, threads](
        g, x, buffers[0], partial, w, *(np.int64(v) for v in (channels, inner, unit, rows, CHUNK_ROWS))
    )
    # Channel c has chunks * reps * inner entries in ``partial``; each round
    # sums groups of THREADS_PER_BLOCK * REDUCE_ITEMS of them, to one per channel.
    reduce = _prelu_kernel(activation, dtype, "reduce")
    src, entries = partial, chunks * reps * inner
    while True:
        groups = -(-entries // (THREADS_PER_BLOCK * REDUCE_ITEMS))
        dst = grad_weight if groups == 1 else cuda.device_array(channels * groups, dtype)
        blocks = min(channels * groups, _max_blocks())
        reduce[blocks, THREADS_PER_BLOCK](
            src, dst, *(np.int64(v) for v in (entries, inner, channels, reps, REDUCE_ITEMS))
        )
        if groups == 1:
            return result, grad_weight
        # The next round reads dst as (channels, groups): one run per channel.
        src, entries, inner, reps = dst, groups, groups, 1


# -- measurement (benchmarks/gpu_check.py, fastact bench --device cuda) ----------
@cuda.jit
def _copy_kernel(x, y, d):
    i = np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = np.int64(cuda.gridDim.x) * cuda.blockDim.x
    one = np.float32(1)
    while i < x.shape[0]:
        v = x[i]
        y[i] = -v
        d[i] = v + one
        i += stride


def timed(fn, rounds: int) -> float:
    """Median seconds of ``fn`` over ``rounds`` runs, timed with CUDA events."""
    start, stop = cuda.event(), cuda.event()
    fn()
    cuda.synchronize()
    samples = []
    for _ in range(rounds):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        samples.append(start.elapsed_time(stop) / 1e3)
    samples.sort()
    return samples[len(samples) // 2]


def measure_fused(size: int = 1 << 28, rounds: int = 20) -> str:
    """Markdown table: fused throughput against a same-traffic copy kernel and torch CUDA."""
    import datetime as dt

    import fastact as fa

    x = cuda.to_device(np.random.default_rng(1).uniform(-8, 8, size).astype(np.float32))
    y, d = cuda.device_array(size, np.float32), cuda.device_array(size, np.float32)
    blocks, threads = launch_config(size)
    copy = timed(lambda: _copy_kernel[blocks, threads](x, y, d), rounds)
    nbytes = 3 * 4 * size
    try:
        import torch

        have_torch = torch.cuda.is_available()
    except ImportError:
        have_torch = False
    gpu = getattr(cuda.get_current_device(), "name", "numba's CUDA simulator")
    gpu = gpu.decode() if isinstance(gpu, bytes) else gpu
    lines = [
        f"fused f and f', {size:,} float32 elements on {gpu}, "
        f"median of {rounds} (CUDA events), {dt.date.today()}.",
        "",
        "| activation | fastact ms | GB/s | % of copy kernel | torch forward + backward op ms "
        "| torch / fastact |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| (copy kernel: read 1, write 2) | {copy * 1e3:.3f} | {nbytes / copy / 1e9:.0f} | 100 | - | - |",
    ]
    from fastact.baselines import SLOPES

    # PReLU with one weight in device memory, RReLU in evaluation.
    weight = cuda.to_device(np.array([SLOPES["prelu"]], np.float32))
    for name in ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "rrelu"):
        act = fa.ACTIVATIONS[name]
        args = (x, weight) if name == "prelu" else (x,)
        t = timed(lambda act=act, args=args: act.fused(*args, out=(y, d)), rounds)
        torch_cell, ratio = "-", "-"
        if have_torch:
            from fastact import baselines

            tx = torch.as_tensor(x, device="cuda")
            ty, td = torch.empty_like(tx), torch.empty_like(tx)
            ones = torch.ones_like(tx)
            pair = baselines.torch_out_mode(name, "fused")
            tt = timed(lambda p=pair, a=(tx, ones, ones, ty, td): p(*a), rounds)
            torch_cell, ratio = f"{tt * 1e3:.3f}", f"{tt / t:.2f}"
        gbs = nbytes / t / 1e9
        lines.append(
            f"| {name} | {t * 1e3:.3f} | {gbs:.0f} | {100 * copy / t:.0f} | {torch_cell} | {ratio} |"
        )
    return "\n".join(lines)
