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
from fastact._cpu import MODES, _caller, _store

THREADS_PER_BLOCK = 256
BLOCKS_PER_SM = 32

_lock = threading.RLock()
_kernels: dict = {}


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
                store(ins, outs, i, y, d)
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
                store(ins, outs, i, y, d)
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
    random-slope kernel.
    """
    import fastact

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    act = fastact.ACTIVATIONS[name]
    loop = "random" if name == "rrelu" and params.get("training") else "elementwise"
    arity = 0 if name in ("sigmoid", "tanh", "relu") else 1
    py = _python_kernel(act, np.dtype(dtype), mode, loop, arity)
    ptx, _ = cuda.compile_ptx(py, _signature(dtype, mode, loop, arity), cc=tuple(cc))
    return ptx


def _as_device(a, what: str):
    arr = a if type(a).__module__.startswith("numba.cuda") else cuda.as_cuda_array(a)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{what} has dtype {arr.dtype}; the CUDA kernels compute float32 and float64")
    return arr


def _flat(arr):
    """A contiguous 1-D device view, copying a strided array on the device."""

    if arr.is_c_contiguous() or arr.is_f_contiguous():
        return arr.reshape(arr.size, order="C" if arr.is_c_contiguous() else "F")
    out = cuda.device_array(arr.shape, arr.dtype)
    out[...] = arr
    return out.reshape(arr.size)


def launch_config(size: int):
    try:
        sms = cuda.get_current_device().MULTIPROCESSOR_COUNT
    except Exception:  # noqa: BLE001 - the simulator has no device attributes
        sms = 2
    blocks = max(1, min(-(-size // THREADS_PER_BLOCK), sms * BLOCKS_PER_SM))
    return blocks, THREADS_PER_BLOCK


def run(activation, mode: str, arrays, names, out, n_out, kernel_params):
    """The CUDA path of one call: validate device operands, launch, return device arrays.

    ``kernel_params(dtype)`` gives (loop, parameters) for the input's dtype.
    """
    where = f"{activation.name}.{mode}"
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
    given = [None] * n_out if out is None else ([out] if n_out == 1 else list(out))
    if n_out == 2 and out is not None and (not isinstance(out, (tuple, list)) or len(out) != 2):
        raise TypeError(f"{where}: out must be a pair (y, dy) of device arrays")
    results, buffers = [], []
    for k, o in enumerate(given):
        if o is None:
            o = cuda.device_array(shape, dtype)
        elif not is_device_array(o):
            raise TypeError(f"{where}: out is a host array but the input is on the GPU")
        else:
            o = _as_device(o, f"{where}: out")
            if o.shape != shape or o.dtype != dtype:
                raise ValueError(
                    f"{where}: out[{k}] has shape {o.shape} and dtype {o.dtype}, expected {shape} {dtype}"
                )
            if not o.is_c_contiguous():
                raise ValueError(f"{where}: a device out buffer must be C-contiguous")
        results.append(o)
        buffers.append(o.reshape(o.size))
    size = int(np.prod(shape))
    if size:
        loop, params = kernel_params(np.dtype(dtype))
        arity = 0 if loop == "random" else len(params)
        kernel = get_kernel(activation, dtype, mode, loop, arity)
        blocks, threads = launch_config(size)
        kernel[blocks, threads](tuple(_flat(d) for d in devs), tuple(buffers), params)
    return results[0] if n_out == 1 else tuple(results)


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
    for name in ("sigmoid", "tanh", "relu", "leaky_relu"):
        act = fa.ACTIVATIONS[name]
        t = timed(lambda act=act: act.fused(x, out=(y, d)), rounds)
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
