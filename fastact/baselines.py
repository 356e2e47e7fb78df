"""What fastact is compared with: NumPy formulas and PyTorch's own ops.

One table, used by the benchmarks (timed) and by the tests (checked against
the high-precision references), so the two never drift apart. Each entry
computes one activation in one mode:

* ``numpy``: the textbook formulas, allocating, as a NumPy user writes them.
* ``torch``: PyTorch eager, allocating (``torch.sigmoid(x)`` and the
  derivative through autograd's backward formula).
* ``torch_out``: PyTorch's best pair: the forward op with ``out=`` and the
  backward op the autograd engine calls (``aten.sigmoid_backward``, ...)
  with ``grad_input=``, into preallocated buffers.

Modes: ``forward(x)``, ``derivative(x)``, ``fused(x) -> (y, dy)``,
``backward(g, x)``. PyTorch's derivatives come from its backward ops with
``grad = 1``; they are ``y * (1 - y)`` and ``1 - y * y``, so they are 0 in
saturation where the exact derivative is not.
"""

from __future__ import annotations

import numpy as np

LEAKY_SLOPE = 0.01


def _np_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def _np_relu_d(x):
    return (x > 0).astype(x.dtype)


def _np_leaky(x):
    return np.where(x > 0, x, x * x.dtype.type(LEAKY_SLOPE))


def _np_leaky_d(x):
    return np.where(x > 0, x.dtype.type(1), x.dtype.type(LEAKY_SLOPE))


# name -> (f(x), f'(x) given x and y = f(x))
_NUMPY_FORMULAS = {
    "sigmoid": (_np_sigmoid, lambda x, y: y * (1 - y)),
    "tanh": (np.tanh, lambda x, y: 1 - y * y),
    "relu": (lambda x: np.maximum(x, 0), lambda x, y: _np_relu_d(x)),
    "leaky_relu": (_np_leaky, lambda x, y: _np_leaky_d(x)),
}

NUMPY_NAMES = tuple(_NUMPY_FORMULAS)


def numpy_mode(name: str, mode: str):
    """The NumPy formula of ``name`` in ``mode``, as a function of (x) or (g, x)."""
    f, df = _NUMPY_FORMULAS[name]
    if mode == "forward":
        return f
    if mode == "derivative":
        return lambda x: df(x, f(x))
    if mode == "fused":

        def fused(x):
            y = f(x)
            return y, df(x, y)

        return fused
    if mode == "backward":
        return lambda g, x: g * df(x, f(x))
    raise ValueError(f"unknown mode {mode!r}")


def _torch_ops(name: str):
    """(forward_out(x, out), backward_out(g, x, y, out)) with PyTorch's own ops."""
    import torch

    aten = torch.ops.aten
    if name == "sigmoid":
        return (
            lambda x, out: torch.sigmoid(x, out=out),
            lambda g, x, y, out: aten.sigmoid_backward.grad_input(g, y, grad_input=out),
        )
    if name == "tanh":
        return (
            lambda x, out: torch.tanh(x, out=out),
            lambda g, x, y, out: aten.tanh_backward.grad_input(g, y, grad_input=out),
        )
    if name == "relu":
        return (
            lambda x, out: torch.clamp_min(x, 0, out=out),
            lambda g, x, y, out: aten.threshold_backward.grad_input(g, x, 0, grad_input=out),
        )
    if name == "leaky_relu":
        return (
            lambda x, out: aten.leaky_relu.out(x, LEAKY_SLOPE, out=out),
            lambda g, x, y, out: aten.leaky_relu_backward.grad_input(
                g, x, LEAKY_SLOPE, False, grad_input=out
            ),
        )
    raise KeyError(name)


def _torch_eager(name: str):
    import torch

    if name == "sigmoid":
        return torch.sigmoid
    if name == "tanh":
        return torch.tanh
    if name == "relu":
        return torch.relu
    if name == "leaky_relu":
        return lambda x: torch.nn.functional.leaky_relu(x, LEAKY_SLOPE)
    raise KeyError(name)


def torch_mode(name: str, mode: str):
    """PyTorch eager, allocating: forward op, and its backward op for f'."""
    import torch

    forward = _torch_eager(name)
    _, backward_out = _torch_ops(name)

    def backward(g, x):
        y = forward(x)
        return backward_out(g, x, y, torch.empty_like(x))

    if mode == "forward":
        return forward
    if mode == "derivative":
        return lambda x: backward(torch.ones_like(x), x)
    if mode == "fused":

        def fused(x):
            y = forward(x)
            return y, backward_out(torch.ones_like(x), x, y, torch.empty_like(x))

        return fused
    if mode == "backward":
        return backward
    raise ValueError(f"unknown mode {mode!r}")


def torch_out_mode(name: str, mode: str):
    """PyTorch's best pair into preallocated buffers.

    Returns ``run(x, ones, g, y, d)``: ``x`` input, ``ones`` a tensor of 1 (the
    grad that turns the backward op into f'), ``g`` a gradient, ``y`` and
    ``d`` output buffers. It returns what the mode produces.
    """
    forward_out, backward_out = _torch_ops(name)

    if mode == "forward":
        return lambda x, ones, g, y, d: forward_out(x, y)
    if mode == "derivative":

        def derivative(x, ones, g, y, d):
            forward_out(x, y)
            return backward_out(ones, x, y, d)

        return derivative
    if mode == "fused":

        def fused(x, ones, g, y, d):
            forward_out(x, y)
            return y, backward_out(ones, x, y, d)

        return fused
    if mode == "backward":

        def backward(x, ones, g, y, d):
            forward_out(x, y)
            return backward_out(g, x, y, d)

        return backward
    raise ValueError(f"unknown mode {mode!r}")


_ROOFLINE = {}


def roofline(x, y, d):
    """The memory-bandwidth limit of ``fused``: read x once, write two outputs.

    ``y = -x`` and ``d = x + 1``: the same traffic as a fused kernel (1 read,
    2 writes) with trivial arithmetic. A plain copy loop was not used: LLVM
    turns it into memcpy calls, which ran 1.4x slower than this loop here.
    Runs on all of numba's threads, like fastact's parallel kernels.
    """
    kernel = _ROOFLINE.get(x.dtype)
    if kernel is None:
        from numba import njit, prange

        one = x.dtype.type(1)

        @njit(parallel=True, error_model="numpy", nogil=True)
        def kernel(x, y, d):
            for i in prange(x.shape[0]):
                v = x[i]
                y[i] = -v
                d[i] = v + one

        _ROOFLINE[x.dtype] = kernel
    from fastact import _runtime

    _runtime.configure()
    with _runtime.parallel_launch():
        kernel(x.reshape(-1), y.reshape(-1), d.reshape(-1))
    return y, d
