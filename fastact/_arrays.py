"""Input conversion, output validation and memory layout for the front end."""

from __future__ import annotations

import math
import sys

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# By itemsize: the magnitude from which a number rounds to infinity in that
# float type (its largest finite value plus half a unit in the last place).
_OVERFLOW = {4: 2**128 - 2**103, 8: 2**1024 - 2**970}


# New outputs of at least this many bytes start on a 64-byte line (see empty).
ALIGNED_MIN_BYTES = 1 << 20


def empty(shape, dtype, order: str = "C") -> np.ndarray:
    """``np.empty``, but a large array starts on a 64-byte line.

    NumPy's arrays start wherever malloc puts them, 16-byte aligned, so the
    two outputs of a fused call often lie at different offsets within their
    cache lines; the streaming kernels' direct stores need them alike
    (``fastact._cpu.stream_layout``). Below ``ALIGNED_MIN_BYTES``, where no
    call streams, the plain ``np.empty`` is cheaper.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < ALIGNED_MIN_BYTES:
        return np.empty(shape, dtype, order=order)
    raw = np.empty(nbytes + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + nbytes].view(dtype).reshape(shape, order=order)


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


def as_input(x, name: str, *, device_checked: bool = False) -> np.ndarray:
    """``x`` as a float32/float64 ndarray; integers and bools become float64.

    Subclasses of ndarray (``np.matrix``, ``np.memmap``) are read as plain
    ndarrays (a view, no copy), and floats in non-native byte order are
    converted to native order, as NumPy's ufuncs do. Raises TypeError naming
    the dtype for anything else (complex, object, strings, float16, ...), so
    nothing is computed in a precision the caller did not ask for.

    A CUDA device array is refused rather than copied to the host.
    ``device_checked``: the caller has already sent device arrays elsewhere,
    so that probe is skipped (on a CPU torch tensor it costs about 1.3 us: its
    ``__cuda_array_interface__`` property raises).
    """
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; fill or compress it first (fastact ignores no mask)")
    if not device_checked and hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} is a CUDA device array ({type(x).__name__}); the CPU backend does not "
            "copy device data to the host: copy it explicitly"
        )
    if type(x) is not np.ndarray:
        torch = sys.modules.get("torch")
        try:
            # A CPU tensor's own numpy() is the view np.asarray would take
            # (through it), for about half the cost.
            x = x.numpy() if torch is not None and type(x) is torch.Tensor else np.asarray(x)
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


def _apart(a: np.ndarray, b: np.ndarray) -> bool:
    """True when ``a`` and ``b`` are distinct arrays known not to share a byte.

    Two arrays that each allocated their own memory (``owndata``) never do;
    otherwise their memory bounds are compared (no exact search: arrays whose
    bounds meet count as overlapping).
    """
    if a is b:
        return False
    if a.flags.owndata and b.flags.owndata:
        return True
    return not np.may_share_memory(a, b)


def _ready_out(o, arrays, dtype, shape, order: str) -> bool:
    """True when the caller's out ``o`` can be written as it is: see :func:`ready_operands`."""
    if type(o) is not np.ndarray or o.dtype != dtype or o.shape != shape:
        return False
    flags = o.flags
    if not ((flags.c_contiguous if order == "C" else flags.f_contiguous) and flags.writeable):
        return False
    for a in arrays:
        if a is not o and not _apart(a, o):
            return False
    return True


def ready_operands(arrays, out, n_out: int, fortran: bool = False):
    """The flat operands of a call that needs no conversion, copy or careful check; else None.

    Such a call passes inputs that are plain ndarrays of one native float
    dtype (float32 or float64) and one shape, at least 1-D and not empty,
    all C-contiguous (or, with ``fortran``, all Fortran-contiguous); and
    outs (one, or a pair for ``n_out == 2``, either of which may be None)
    that are plain, writable ndarrays of that dtype, shape and order, each
    an input itself (in place) or apart from every input and from the other
    out. ``as_input``, ``check_out`` and :class:`Layout` would convert, copy
    and refuse nothing there; this returns what they would, ``(flat inputs,
    flat buffers, results)``, for a fraction of their cost, which is most of
    a call on a small array. Outs not given are allocated in the inputs'
    order, as Layout does. For anything else it returns None, and the
    general path converts, copies or raises its named error.

    ``fortran``: as for :class:`Layout`, only for kernels whose results do
    not depend on an element's position.
    """
    x = arrays[-1]
    if type(x) is not np.ndarray:
        return None
    dtype, shape = x.dtype, x.shape
    if dtype.char not in "fd" or not dtype.isnative or not shape or not x.size:
        return None
    flags = x.flags
    # An array with at most one dimension longer than 1 is both; C then,
    # as in Layout.
    if flags.c_contiguous:
        order = "C"
    elif fortran and flags.f_contiguous:
        order = "F"
    else:
        return None
    for a in arrays[:-1]:
        if type(a) is not np.ndarray or a.dtype != dtype or a.shape != shape:
            return None
        if not (a.flags.c_contiguous if order == "C" else a.flags.f_contiguous):
            return None
    if out is None:
        results = [empty(shape, dtype, order)]
        if n_out == 2:
            results.append(empty(shape, dtype, order))
    elif n_out == 1:
        if not _ready_out(out, arrays, dtype, shape, order):
            return None
        results = [out]
    else:
        if type(out) not in (tuple, list) or len(out) != 2:
            return None
        y, dy = out
        if y is None:
            y = empty(shape, dtype, order)
        elif not _ready_out(y, arrays, dtype, shape, order):
            return None
        if dy is None:
            dy = empty(shape, dtype, order)
        elif not _ready_out(dy, arrays, dtype, shape, order) or (out[0] is not None and not _apart(y, dy)):
            return None
        results = [y, dy]
    if len(shape) == 1:
        return arrays, tuple(results), results
    # ravel() in an array's own contiguous order is a view.
    return tuple([a.ravel(order) for a in arrays]), tuple([r.ravel(order) for r in results]), results


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    ia, ib = a.__array_interface__, b.__array_interface__
    return ia["data"][0] == ib["data"][0] and a.shape == b.shape and a.strides == b.strides


class Layout:
    """Flat, contiguous views of the operands of one elementwise call.

    Contiguous operands (C order, or with ``fortran`` Fortran order, all the
    same) are used in place through 1-D views; other inputs are copied once
    into C order; an output not in the chosen order, or
    one in non-native byte order, is computed into a temporary and copied
    back; an output of an ndarray subclass is written through a plain view.
    An input that partly overlaps an output is copied first, so in-place
    calls (``out=x``) work and overlapping ones never read already-written
    values.

    ``fortran`` is for kernels whose results depend on each element's value
    alone; where they also depend on its position (PReLU's channels and
    grad_weight sum, RReLU's training slopes) the flat data must follow C
    order, as in :func:`ready_operands`.

    ``flat_inputs`` and ``flat_buffers`` are what the kernel reads and writes;
    ``finish()`` returns what the caller gets.
    """

    __slots__ = ("flat_inputs", "flat_buffers", "results", "_copy_back")

    def __init__(self, inputs, outs, shape, dtype, where=None, label="out", fortran=False):
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
        if c_order or not (fortran and f_order):
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
                o = buf = empty(shape, dtype, order)
            else:
                buf = o if type(o) is np.ndarray else o.view(np.ndarray)
                flags = buf.flags
                if not (flags.c_contiguous if order == "C" else flags.f_contiguous) or not buf.dtype.isnative:
                    check_own_elements(buf, where, label if len(outs) == 1 else f"out[{k}]")
                    buf = empty(shape, dtype, order)
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
