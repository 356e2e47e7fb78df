"""Input conversion, output validation and memory layout for the front end."""

from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_input(x, name: str) -> np.ndarray:
    """``x`` as a float32/float64 ndarray; integers and bools become float64.

    Raises TypeError naming the dtype for anything else (complex, object,
    strings, float16, ...), so nothing is computed in a precision the caller
    did not ask for.
    """
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array; fill or compress it first (fastact ignores no mask)")
    if hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray):
        raise TypeError(
            f"{name} is a CUDA device array ({type(x).__name__}); the CPU backend does not "
            "copy device data to the host: copy it explicitly"
        )
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # noqa: BLE001 - reported as a TypeError below
            raise TypeError(f"{name} of type {type(x).__name__} cannot be converted to an array") from exc
    dtype = x.dtype
    if dtype in FLOAT_DTYPES:
        return x
    if dtype.kind in "biu":
        return x.astype(np.float64)
    raise TypeError(
        f"{name} has dtype {dtype}; fastact computes float32 and float64 "
        "(integer and bool input becomes float64)"
    )


def check_out(out, shape, dtype, name: str) -> np.ndarray:
    """Validate a caller's output buffer."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype}")
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def _same_view(a: np.ndarray, b: np.ndarray) -> bool:
    ia, ib = a.__array_interface__, b.__array_interface__
    return ia["data"][0] == ib["data"][0] and a.shape == b.shape and a.strides == b.strides


class Layout:
    """Flat, contiguous views of the operands of one elementwise call.

    Contiguous operands (C or Fortran order, all the same) are used in place
    through 1-D views; strided inputs are copied once; a strided output is
    computed into a temporary and copied back. An input that partly overlaps
    an output is copied first, so in-place calls (``out=x``) work and
    overlapping ones never read already-written values.
    """

    def __init__(self, inputs, outs, shape, dtype):
        given = [o for o in outs if o is not None]
        for i, a in enumerate(given):
            for b in given[i + 1 :]:
                if np.shares_memory(a, b):
                    raise ValueError("the output buffers overlap each other")
        inputs = [
            np.array(a, copy=True)
            if any(np.may_share_memory(a, o) and not _same_view(a, o) for o in given)
            else a
            for a in inputs
        ]
        operands = inputs + given
        if all(a.flags.c_contiguous for a in operands):
            order = "C"
        elif all(a.flags.f_contiguous for a in operands):
            order = "F"
        else:
            order = "C"
            inputs = [np.ascontiguousarray(a) for a in inputs]
        self.order = order
        self.inputs = inputs
        self.results = []  # what the caller gets back
        self.buffers = []  # what the kernel writes
        self._copy_back = []
        for o in outs:
            if o is None:
                buf = np.empty(shape, dtype, order=order)
                self.results.append(buf)
            else:
                self.results.append(o)
                contiguous = o.flags.c_contiguous if order == "C" else o.flags.f_contiguous
                if contiguous:
                    buf = o
                else:
                    buf = np.empty(shape, dtype, order=order)
                    self._copy_back.append((o, buf))
            self.buffers.append(buf)

    def flat(self, a: np.ndarray) -> np.ndarray:
        return a.reshape(-1, order=self.order)

    @property
    def flat_inputs(self):
        return tuple(self.flat(a) for a in self.inputs)

    @property
    def flat_buffers(self):
        return tuple(self.flat(b) for b in self.buffers)

    def finish(self):
        for out, buf in self._copy_back:
            out[...] = buf
        return self.results
