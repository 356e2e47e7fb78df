"""Input conversion, output validation and memory layout for the front end."""

from __future__ import annotations

import math

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# By itemsize: the magnitude from which a number rounds to infinity in that
# float type (its largest finite value plus half a unit in the last place).
_OVERFLOW = {4: 2**128 - 2**103, 8: 2**1024 - 2**970}


def as_scalar(value, dtype, name: str):
    """A real number as a ``dtype`` scalar, never silently infinite.

    A finite ``value`` beyond the range of ``dtype`` (a slope of 1e300 for
    float32 data) raises ValueError instead of becoming inf with a NumPy
    overflow warning; inf and NaN pass as given.
    """
    try:
        size = abs(float(value))
    except OverflowError:  # an int beyond every float
        size = None
    if size is None or _OVERFLOW[dtype.itemsize] <= size < math.inf:
        text = repr(value)
        if len(text) > 24:  # a huge int
            text = f"{text[:12]}... ({len(text)} digits)"
        raise ValueError(f"{name} = {text} is beyond the range of {dtype}")
    return dtype.type(value)


def as_dtype(a: np.ndarray, dtype, name: str) -> np.ndarray:
    """``a`` as a contiguous 1-D array of ``dtype``; ValueError where a finite value would become inf."""
    if a.dtype == dtype:
        return np.ascontiguousarray(a.reshape(-1))
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(a.reshape(-1), dtype=dtype)
    if np.count_nonzero(np.isinf(out)) != np.count_nonzero(np.isinf(a)):
        raise ValueError(f"{name} has values beyond the range of {dtype}")
    return out


def as_input(x, name: str) -> np.ndarray:
    """``x`` as a float32/float64 ndarray; integers and bools become float64.

    Subclasses of ndarray (``np.matrix``, ``np.memmap``) are read as plain
    ndarrays (a view, no copy), and floats in non-native byte order are
    converted to native order, as NumPy's ufuncs do. Raises TypeError naming
    the dtype for anything else (complex, object, strings, float16, ...), so
    nothing is computed in a precision the caller did not ask for.
    """
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; fill or compress it first (fastact ignores no mask)")
    if hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} is a CUDA device array ({type(x).__name__}); the CPU backend does not "
            "copy device data to the host: copy it explicitly"
        )
    if type(x) is not np.ndarray:
        try:
            x = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - reported as a TypeError below
            raise TypeError(
                f"{name} of type {type(x).__name__} cannot be converted to an array: {exc}"
            ) from exc
    dtype = x.dtype
    if dtype in FLOAT_DTYPES:
        return x
    if dtype.kind == "f" and dtype.newbyteorder("=") in FLOAT_DTYPES:
        return x.astype(dtype.newbyteorder("="))
    if dtype.kind in "biu":
        return x.astype(np.float64)
    raise TypeError(
        f"{name} has dtype {dtype}; fastact computes float32 and float64 "
        "(integer and bool input becomes float64)"
    )


def check_out(out, shape, dtype, where: str, label: str) -> np.ndarray:
    """Validate a caller's output buffer; errors name it as ``{where}: {label}``.

    Its dtype must be the result's, in either byte order (a buffer in
    non-native order is filled through a native temporary, see Layout).
    The name comes in two parts, joined only when an error is raised: this
    runs on every call with ``out=``.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{where}: {label} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype and out.dtype.newbyteorder("=") != dtype:
        raise TypeError(f"{where}: {label} has dtype {out.dtype}, expected {dtype}")
    if out.shape != shape:
        raise ValueError(f"{where}: {label} has shape {out.shape}, expected {shape}")
    if not out.flags.writeable:
        raise ValueError(f"{where}: {label} is read-only")
    return out


def _overlaps_itself(a: np.ndarray) -> bool:
    """True when two elements of ``a`` share a byte (a stride of 0, or strides that overlap).

    Such an array (``np.lib.stride_tricks.as_strided`` makes them) cannot
    hold one result per element: every write to one element overwrites
    another. The strides are checked first, from the smallest up, each
    against the bytes the dimensions below it span; only layouts that check
    cannot clear (strides that interleave without overlapping) have their
    element offsets compared one by one.
    """
    dims = sorted((abs(step), n) for n, step in zip(a.shape, a.strides, strict=True) if n > 1)
    span = a.itemsize
    for step, n in dims:
        if step < span:
            break
        span += step * (n - 1)
    else:
        return False
    offsets = np.zeros(1, np.int64)
    for step, n in dims:
        offsets = (offsets[:, None] + np.arange(n, dtype=np.int64) * step).ravel()
    offsets.sort()
    return bool((np.diff(offsets) < a.itemsize).any())


def check_own_elements(buf: np.ndarray, where: str, label: str) -> None:
    """Raise ValueError if elements of the out buffer ``buf`` share memory (a contiguous one never does)."""
    flags = buf.flags
    if not (flags.c_contiguous or flags.f_contiguous) and _overlaps_itself(buf):
        raise ValueError(
            f"{where}: {label} has strides {buf.strides} that make elements share "
            "memory: it cannot hold one result per element"
        )


def check_outputs_apart(outs, where: str) -> None:
    """Raise ValueError if two of the out buffers ``outs`` share a byte (one would overwrite the other)."""
    for i, a in enumerate(outs):
        for b in outs[i + 1 :]:
            if np.may_share_memory(a, b) and np.shares_memory(a, b):
                raise ValueError(f"{where}: the output buffers overlap each other")


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    ia, ib = a.__array_interface__, b.__array_interface__
    return ia["data"][0] == ib["data"][0] and a.shape == b.shape and a.strides == b.strides


class Layout:
    """Flat, contiguous views of the operands of one elementwise call.

    Contiguous operands (C or Fortran order, all the same) are used in place
    through 1-D views; strided inputs are copied once; a strided output, or
    one in non-native byte order, is computed into a temporary and copied
    back; an output of an ndarray subclass is written through a plain view.
    An input that partly overlaps an output is copied first, so in-place
    calls (``out=x``) work and overlapping ones never read already-written
    values.

    ``flat_inputs`` and ``flat_buffers`` are what the kernel reads and writes;
    ``finish()`` returns what the caller gets.
    """

    __slots__ = ("flat_inputs", "flat_buffers", "results", "_copy_back")

    def __init__(self, inputs, outs, shape, dtype, where=None, label="out"):
        # Written for a low per-call overhead (this runs on every call): each
        # flags object read once, 1-D arrays used as they are. ``where`` names
        # the call in errors, and ``label`` a single out buffer ("out[k]" in
        # a pair), as in ``_prepare``.
        given = [o for o in outs if o is not None]
        if given:
            inputs = self._check_overlaps(inputs, given, where)
        c_order = f_order = True
        for a in (*inputs, *given):
            flags = a.flags
            c_order = c_order and flags.c_contiguous
            f_order = f_order and flags.f_contiguous
        if c_order or not f_order:
            order = "C"
            if not c_order:
                inputs = [np.ascontiguousarray(a) for a in inputs]
        else:
            order = "F"
        flat = len(shape) == 1
        self.flat_inputs = tuple(inputs) if flat else tuple([a.ravel(order) for a in inputs])
        self.results = []
        self._copy_back = []
        buffers = []
        for k, o in enumerate(outs):
            if o is None:
                o = buf = np.empty(shape, dtype, order=order)
            else:
                buf = o if type(o) is np.ndarray else o.view(np.ndarray)
                flags = buf.flags
                if not (flags.c_contiguous if order == "C" else flags.f_contiguous) or not buf.dtype.isnative:
                    check_own_elements(buf, where, label if len(outs) == 1 else f"out[{k}]")
                    buf = np.empty(shape, dtype, order=order)
                    self._copy_back.append((o, buf))
            self.results.append(o)
            buffers.append(buf if flat else buf.ravel(order))
        self.flat_buffers = tuple(buffers)

    @staticmethod
    def _check_overlaps(inputs, given, where):
        check_outputs_apart(given, where)
        checked = inputs
        for k, a in enumerate(inputs):
            for o in given:
                if np.may_share_memory(a, o) and not (a is o or _same_view(a, o)):
                    if checked is inputs:
                        checked = list(inputs)
                    checked[k] = np.array(a, copy=True)
                    break
        return checked

    def finish(self):
        for out, buf in self._copy_back:
            out[...] = buf
        return self.results
