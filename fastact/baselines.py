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

from fastact._cpu import TRAFFIC, bytes_moved  # noqa: F401 - bytes_moved is used as baselines.bytes_moved

LEAKY_SLOPE = 0.01
# The leaky family in the benchmarks: leaky_relu's default slope, one shared
# PReLU weight, and RReLU in evaluation (slope (lower + upper) / 2).
SLOPES = {"leaky_relu": LEAKY_SLOPE, "prelu": 0.25, "rrelu": (1 / 8 + 1 / 3) / 2}
# PyTorch's backward ops of these read the saved output y, the others read x.
SAVES_OUTPUT = ("sigmoid", "tanh")


def _np_sigmoid(x):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


def _np_relu_d(x):
    return (x > 0).astype(x.dtype)


def _np_leaky(slope):
    def f(x):
        return np.where(x > 0, x, x * x.dtype.type(slope))

    def df(x, y):
        return np.where(x > 0, x.dtype.type(1), x.dtype.type(slope))

    return f, df


# name -> (f(x), f'(x) given x and y = f(x))
_NUMPY_FORMULAS = {
    "sigmoid": (_np_sigmoid, lambda x, y: y * (1 - y)),
    "tanh": (np.tanh, lambda x, y: 1 - y * y),
    "relu": (lambda x: np.maximum(x, 0), lambda x, y: _np_relu_d(x)),
    **{name: _np_leaky(slope) for name, slope in SLOPES.items()},
}


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
    if name in ("leaky_relu", "rrelu"):
        slope = SLOPES[name]
        return (
            lambda x, out: aten.leaky_relu.out(x, slope, out=out),
            lambda g, x, y, out: aten.leaky_relu_backward.grad_input(g, x, slope, False, grad_input=out),
        )
    if name == "prelu":
        # No out= variants exist: PyTorch's own ops, allocating.
        weights = {}

        def weight(x):
            key = (x.dtype, x.device)
            w = weights.get(key)
            if w is None:
                w = weights[key] = torch.full((1,), SLOPES["prelu"], dtype=x.dtype, device=x.device)
            return w

        return (
            lambda x, out: aten._prelu_kernel(x, weight(x)),
            lambda g, x, y, out: aten._prelu_kernel_backward(g, x, weight(x))[0],
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
    if name == "rrelu":
        return lambda x: torch.nn.functional.rrelu(x, training=False)
    if name == "prelu":
        w = torch.full((1,), SLOPES["prelu"])
        return lambda x: torch.nn.functional.prelu(x, w.to(x.dtype))
    raise KeyError(name)


def torch_mode(name: str, mode: str):
    """PyTorch eager, allocating: forward op, and its backward op for f'.

    ``backward`` takes ``(g, x, y)`` with ``y = f(x)`` saved by the forward
    pass, as autograd keeps it.
    """
    import torch

    forward = _torch_eager(name)
    _, backward_out = _torch_ops(name)

    def derivative(x):
        y = forward(x) if name in SAVES_OUTPUT else None
        return backward_out(torch.ones_like(x), x, y, torch.empty_like(x))

    if mode == "forward":
        return forward
    if mode == "derivative":
        return derivative
    if mode == "fused":

        def fused(x):
            y = forward(x)
            return y, backward_out(torch.ones_like(x), x, y, torch.empty_like(x))

        return fused
    if mode == "backward":
        return lambda g, x, y: backward_out(g, x, y, torch.empty_like(x))
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
        if name in SAVES_OUTPUT:

            def derivative(x, ones, g, y, d):
                return backward_out(ones, x, forward_out(x, y), d)

        else:

            def derivative(x, ones, g, y, d):
                return backward_out(ones, x, None, d)

        return derivative
    if mode == "fused":

        def fused(x, ones, g, y, d):
            y = forward_out(x, y)
            return y, backward_out(ones, x, y, d)

        return fused
    if mode == "backward":
        # As in autograd: the forward output ``y`` is saved; only the
        # backward op runs.
        return lambda x, ones, g, y, d: backward_out(g, x, y, d)
    raise ValueError(f"unknown mode {mode!r}")


# Arrays read and written by each mode (the kernels' own table); the
# roofline kernel of a mode moves the same.
MODES = tuple(TRAFFIC)
NAMES = tuple(_NUMPY_FORMULAS)
PROVIDERS = (
    "fastact",
    "fastact-1thread",
    "numpy",
    "torch",
    "torch-out",
    "jax",
    "roofline",
    "roofline-stream",
)


_ROOFLINE = {}


def _roofline_kernel(mode, dtype):
    key = (TRAFFIC[mode], dtype)
    kernel = _ROOFLINE.get(key)
    if kernel is not None:
        return kernel
    from numba import njit, prange

    one = dtype.type(1)
    options = dict(parallel=True, error_model="numpy", nogil=True)
    if TRAFFIC[mode] == (1, 2):

        @njit(**options)
        def kernel(x, y, d):
            for i in prange(x.shape[0]):
                v = x[i]
                y[i] = -v
                d[i] = v + one

    elif TRAFFIC[mode] == (1, 1):

        @njit(**options)
        def kernel(x, y):
            for i in prange(x.shape[0]):
                y[i] = -x[i]

    else:

        @njit(**options)
        def kernel(g, x, y):
            for i in prange(x.shape[0]):
                y[i] = g[i] - x[i]

    _ROOFLINE[key] = kernel
    return kernel


def roofline(x, y, d=None, *, g=None, mode="fused"):
    """The memory-bandwidth limit of ``mode``: the same traffic, trivial arithmetic.

    ``fused`` reads x and writes y = -x and d = x + 1; ``forward`` and
    ``derivative`` read x and write y; ``backward`` reads g and x and writes
    y = g - x. A plain copy loop was not used: LLVM turns it into memcpy
    calls, which ran 1.4x slower than these loops here. Runs on all of
    numba's threads, like fastact's parallel kernels.
    """
    from fastact import _runtime

    kernel = _roofline_kernel(mode, x.dtype)
    _runtime.configure()
    flat = [a.reshape(-1) for a in ((g, x, y) if mode == "backward" else (x, y) if d is None else (x, y, d))]
    with _runtime.parallel_launch():
        kernel(*flat)
    return (y, d) if d is not None else y


_STREAMING_ROOFLINE = {}


def _streaming_roofline_kernel(mode, dtype, layout, wide, prefetch):
    key = (mode, dtype, layout, wide, prefetch)
    kernel = _STREAMING_ROOFLINE.get(key)
    if kernel is not None:
        return kernel
    from numba import prange

    from fastact import _cpu
    from fastact._math import mathlib

    one = dtype.type(1)

    @_cpu.inline_jit
    def trivial(v):
        return -v, v + one

    m, store = mathlib(dtype), _cpu._store(mode)
    if layout == "direct":
        stream = _cpu._store(mode, stream=True)
        loop = _cpu._direct_loop(trivial, store, stream, "elementwise", m, prange, 0, dtype.itemsize)
    else:
        n_out = TRAFFIC[mode][1]
        loop = _cpu._streaming_loop(
            trivial, store, "elementwise", m, prange, 0, n_out, dtype.itemsize, wide, prefetch
        )
    kernel = _STREAMING_ROOFLINE[key] = _cpu._jit(loop, parallel=True)
    return kernel


def roofline_stream(x, y, d=None, *, g=None, mode="fused"):
    """The roofline of fastact's streaming kernels: their write path, trivial arithmetic.

    fastact writes outputs larger than the last-level cache with
    non-temporal stores (no read-for-ownership), through a small per-thread
    block buffer or straight from the compute loop, whichever it would
    choose for these outputs (``fastact._cpu.stream_layout``), with the
    same vector width (``fastact._cpu.wide_vectors``) and the same prefetch
    of the inputs (``fastact._cpu.builds_prefetch``). This kernel
    does the same with y = -x and f' = x + 1 (``forward``: y = -x;
    ``derivative``: x + 1; ``fused``: both; ``backward``: g * (x + 1)), at
    every size, so the time fastact takes beyond it is its arithmetic.
    """
    from fastact import _cpu, _runtime

    ins = (g.reshape(-1), x.reshape(-1)) if mode == "backward" else (x.reshape(-1),)
    outs = (y.reshape(-1), d.reshape(-1)) if mode == "fused" else (y.reshape(-1),)
    layout = _cpu.stream_layout(outs, x.dtype.itemsize)
    wide = _cpu.builds_wide("elementwise", mode, layout)
    kernel = _streaming_roofline_kernel(mode, x.dtype, layout, wide, _cpu.builds_prefetch(True, layout))
    _runtime.configure()
    with _runtime.parallel_launch():
        kernel(ins, outs, (), _cpu.stream_chunks(True))
    return (y, d) if mode == "fused" else y


def _fastact(name, mode, x, g, y, d):
    import fastact as fa

    act = fa.ACTIVATIONS[name]
    extra = (np.full(1, SLOPES["prelu"], x.dtype),) if name == "prelu" else ()
    if mode == "forward":
        return lambda: act(x, *extra, out=y)
    if mode == "derivative":
        return lambda: act.derivative(x, *extra, out=y)
    if mode == "fused":
        return lambda: act.fused(x, *extra, out=(y, d))
    if name == "prelu":
        return lambda: act.backward(g, x, *extra, out=y)[0]
    return lambda: act.backward(g, x, out=y)


def _single_thread(fn):
    import numba

    def run():
        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return fn()
        finally:
            numba.set_num_threads(threads)

    return run


def _jax(name, mode, x, g):
    import jax
    import jax.numpy as jnp

    f = {
        "sigmoid": jax.nn.sigmoid,
        "tanh": jnp.tanh,
        "relu": jax.nn.relu,
        "leaky_relu": lambda v: jax.nn.leaky_relu(v, LEAKY_SLOPE),
        "rrelu": lambda v: jax.nn.leaky_relu(v, SLOPES["rrelu"]),
        "prelu": lambda v: jax.nn.leaky_relu(v, SLOPES["prelu"]),
    }[name]
    df = jax.vmap(jax.grad(f))
    fn = {
        "forward": jax.jit(f),
        "derivative": jax.jit(df),
        "fused": jax.jit(lambda v: (f(v), df(v))),
        "backward": jax.jit(lambda gv, v: gv * df(v)),
    }[mode]
    args = (jnp.asarray(g), jnp.asarray(x)) if mode == "backward" else (jnp.asarray(x),)

    def run():
        out = fn(*args)
        return jax.block_until_ready(out)

    return run


def prepare(provider: str, name: str, mode: str, x, g=None):
    """A no-argument callable that runs ``provider`` on ``name`` in ``mode``.

    Output buffers are allocated once, here, wherever the provider accepts
    them (fastact, torch with ``out=``, the roofline); NumPy, torch eager and
    JAX allocate, as their users' code does. Raises ImportError when the
    provider's library is not installed.
    """
    y, d = np.empty_like(x), np.empty_like(x)
    if g is None:
        g = np.ones_like(x)
    if provider == "fastact":
        return _fastact(name, mode, x, g, y, d)
    if provider == "fastact-1thread":
        return _single_thread(_fastact(name, mode, x, g, y, d))
    if provider == "roofline":
        if mode == "fused":
            return lambda: roofline(x, y, d)
        return lambda: roofline(x, y, g=g, mode=mode)
    if provider == "roofline-stream":
        return lambda: roofline_stream(x, y, d, g=g, mode=mode)
    if provider == "numpy":
        fn = numpy_mode(name, mode)
        return (lambda: fn(g, x)) if mode == "backward" else (lambda: fn(x))
    if provider == "jax":
        return _jax(name, mode, x, g)
    import torch

    tx, tg = torch.from_numpy(x), torch.from_numpy(g)
    saved = _torch_eager(name)(tx) if mode == "backward" else None  # the forward's output
    if provider == "torch":
        fn = torch_mode(name, mode)
        return (lambda: fn(tg, tx, saved)) if mode == "backward" else (lambda: fn(tx))
    if provider == "torch-out":
        fn = torch_out_mode(name, mode)
        ones = torch.ones_like(tx)
        ty = saved if mode == "backward" else torch.from_numpy(y)
        td = torch.from_numpy(d)
        return lambda: fn(tx, ones, tg, ty, td)
    raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")


def check(provider: str, name: str, mode: str, result, x, g=None):
    """Raise AssertionError unless ``result`` is what ``provider`` should compute.

    Compared with fastact's own result (itself checked against high-precision
    references in the test suite) to 3e-6 relative in float32 and 1e-12 in
    float64, plus a few epsilons absolute: that covers the derivatives NumPy
    and PyTorch form by cancellation (and round to 0 in saturation). The
    rooflines are checked against their formulas.
    """
    if g is None:
        g = np.ones_like(x)
    if provider == "roofline":
        want = {"fused": (-x, x + 1), "backward": g - x}.get(mode, -x)
    elif provider == "roofline-stream":
        want = {"forward": -x, "derivative": x + 1, "fused": (-x, x + 1), "backward": g * (x + 1)}[mode]
    else:
        want = _fastact(name, mode, x, g, np.empty_like(x), np.empty_like(x))()
    got = result if isinstance(result, tuple) else (result,)
    want = want if isinstance(want, tuple) else (want,)
    if len(got) != len(want):
        raise AssertionError(f"{provider} {name} {mode}: {len(got)} results, expected {len(want)}")
    rtol = 3e-6 if x.dtype == np.float32 else 1e-12
    # Textbook derivatives (1 - y^2, y(1 - y)) carry an absolute error of a
    # few epsilons, scaled by the incoming gradient in backward.
    scale = float(np.max(np.abs(g), initial=1.0)) if mode == "backward" else 1.0
    atol = 4 * np.finfo(x.dtype).eps * scale
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(
            np.asarray(a), b, rtol=rtol, atol=atol, err_msg=f"{provider} {name} {mode}"
        )
