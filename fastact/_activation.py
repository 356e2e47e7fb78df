"""The public activation objects and the registry that defines them."""

from __future__ import annotations

import math
import secrets
import sys
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from fastact import _cpu
from fastact._arrays import (
    Layout,
    as_dtype,
    as_input,
    as_scalar,
    check_out,
    check_outputs_apart,
    check_own_elements,
    ready_operands,
)

REGISTRY: dict[str, Activation] = {}


def define(factory=None, *, params: dict[str, Any] | None = None, cls=None):
    """Register an activation from its definition.

    ``factory(m)`` receives a :class:`fastact._math.MathLib` and returns the
    scalar function ``f(x, *params) -> (f(x), f'(x))``. ``params`` maps the
    keyword parameters (PyTorch's names) to their defaults, in the order ``f``
    takes them. The factory's docstring becomes the activation's docstring.
    """

    def register(factory):
        base = cls or Activation
        name = factory.__name__
        # A class per activation, so that help(fa.NAME) shows its docstring.
        kind = type(
            f"{name.title().replace('_', '')}Activation",
            (base,),
            {"__doc__": factory.__doc__, "__module__": factory.__module__},
        )
        act = kind(name, factory, dict(params or {}))
        if name in REGISTRY:
            raise ValueError(f"activation {name!r} is defined twice")
        REGISTRY[name] = act
        return act

    return register(factory) if factory is not None else register


class Activation:
    """An elementwise activation: value, derivative, both fused, backward.

    Every method takes NumPy arrays (float32 or float64, any shape and strides)
    or anything ``numpy.asarray`` accepts, and keyword parameters with
    PyTorch's names and defaults. ``out=`` buffers are validated, written and
    returned.
    """

    def __init__(self, name: str, factory: Callable, params: dict[str, Any]):
        self.name = name
        self.factory = factory
        self._defaults = dict(params)
        self._scalars: dict = {}
        # dtype -> (loop, kernel parameters) of the defaults, for calls
        # without keyword arguments (the common case): converted once.
        self._default_loop_params: dict = {}
        # The last keyword arguments given, their checked values and those
        # values' kernel parameters by dtype: a caller that passes the same
        # objects call after call (a layer's slope) has them checked and
        # converted once. Replaced whole, never changed in place.
        self._last_given: tuple[dict, dict, dict] | None = None
        self._scalar_lock = threading.Lock()

    @property
    def params(self) -> MappingProxyType:
        """The keyword parameters and their defaults (PyTorch's names), read-only."""
        return MappingProxyType(self._defaults)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._defaults.items())
        return f"<fastact activation {self.name}({args})>"

    def __reduce__(self):
        return (_lookup, (self.name,))

    # -- definition ---------------------------------------------------------
    def scalar(self, dtype, target: str = "cpu") -> Callable:
        """The jitted scalar ``f(x, *params) -> (f(x), f'(x))`` for ``dtype`` and target."""
        key = (np.dtype(dtype), target)
        with self._scalar_lock:
            f = self._scalars.get(key)
            if f is None:
                from fastact._math import mathlib

                m = mathlib(*key)
                f = self._scalars[key] = (
                    m.jit(self.factory(m)) if target == "cuda" else _cpu.inline_jit(self.factory(m))
                )
        return f

    # -- parameters ---------------------------------------------------------
    def _params(self, method: str, given: dict) -> dict:
        if not given:
            return self._defaults
        last = self._last_given
        if last is not None and _same_objects(given, last[0]):
            return last[1]
        unknown = set(given) - set(self._defaults)
        if unknown:
            expected = ", ".join(self._defaults) or "none"
            raise TypeError(
                f"{self.name}.{method}() got unexpected keyword argument(s) "
                f"{', '.join(sorted(unknown))}; its parameters: {expected}"
            )
        values = dict(self._defaults)
        values.update(given)
        for key, value in values.items():
            if key in ("training", "seed"):
                continue
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise TypeError(f"{self.name}: {key} must be a real number, got {value!r}")
        # Every accepted value is an immutable scalar, so the same objects
        # next time are the same values.
        self._last_given = (dict(given), values, {})
        return values

    def _order_free(self, values) -> bool:
        """True when each result depends on its element's value alone, not its position.

        The flat kernels may then read contiguous data in its own memory
        order (Fortran order as it lies). Where a result also depends on the
        element's index (RReLU's random slopes in training), the data is read
        in C order, so that an element's slope follows its logical position,
        as on the GPU, whatever the layout of x and of grad_out.
        """
        return True

    def _call_params(self, values, dtype) -> tuple[str, tuple]:
        """``_loop_params``, converted once per dtype for the defaults and for the last keywords given."""
        if values is self._defaults:
            converted = self._default_loop_params
        else:
            last = self._last_given
            if last is None or values is not last[1]:
                return self._loop_params(values, dtype)
            converted = last[2]
        found = converted.get(dtype)
        if found is None:
            found = converted[dtype] = self._loop_params(values, dtype)
        return found

    def _loop_params(self, values: dict, dtype) -> tuple[str, tuple]:
        """(loop, kernel parameters) of this call, for the CPU and the CUDA kernels."""
        return "elementwise", self._kernel_params(values, dtype)

    def _kernel_params(self, values: dict, dtype) -> tuple:
        if not self._defaults:
            return ()
        return tuple(as_scalar(values[k], dtype, f"{self.name}: {k}") for k in self._defaults)

    # -- entry points --------------------------------------------------------
    # Parameters and ``out`` are keywords. ``*extra`` only catches positional
    # arguments after the arrays, to say so by name (torch's
    # ``F.leaky_relu(x, 0.2)`` passes its slope positionally).
    def __call__(self, x: ArrayLike, *extra, out: np.ndarray | None = None, **params) -> np.ndarray:
        """f(x), elementwise."""
        if extra:
            self._refuse_positional("forward", ("x",), extra)
        return self._elementwise("forward", (x,), out, params, ("x",), 1)

    def derivative(self, x: ArrayLike, *extra, out: np.ndarray | None = None, **params) -> np.ndarray:
        """f'(x), elementwise, computed from x."""
        if extra:
            self._refuse_positional("derivative", ("x",), extra)
        return self._elementwise("derivative", (x,), out, params, ("x",), 1)

    def fused(
        self, x: ArrayLike, *extra, out: tuple[np.ndarray, np.ndarray] | None = None, **params
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(f(x), f'(x))`` in one pass over memory; ``out=(y, dy)``."""
        if extra:
            self._refuse_positional("fused", ("x",), extra)
        return self._elementwise("fused", (x,), out, params, ("x",), 2)

    def backward(
        self, grad_out: ArrayLike, x: ArrayLike, *extra, out: np.ndarray | None = None, **params
    ) -> np.ndarray:
        """``grad_out * f'(x)`` in one pass, f' recomputed from x."""
        if extra:
            self._refuse_positional("backward", ("grad_out", "x"), extra)
        return self._elementwise("backward", (grad_out, x), out, params, ("grad_out", "x"), 1)

    def _refuse_positional(self, method, names, extra):
        given = ", ".join(f"{k}={v!r}" for k, v in self._defaults.items())
        how = f"parameters by name ({given}) and the output" if given else "the output"
        raise TypeError(
            f"{self.name}.{method}() takes only {_listed(names)} positionally, "
            f"got {len(extra)} more positional argument{'s' if len(extra) > 1 else ''}; "
            f"pass {how} as out=..."
        )

    # -- machinery -------------------------------------------------------------
    def _convert(self, method, arrays, names):
        """The inputs as float32 or float64 ndarrays of one shape and dtype.

        Returns ``arrays`` itself when nothing needed converting. Several
        inputs (backward's grad_out and x) must share x's shape, and take
        their common dtype as in NumPy's promotion.

        Written for a low per-call overhead (a few microseconds): ready
        float arrays skip the conversion, and messages are formatted only
        when raised.
        """
        converted = None
        for i, a in enumerate(arrays):
            if type(a) is not np.ndarray or a.dtype.char not in "fd" or not a.dtype.isnative:
                if converted is None:
                    converted = list(arrays)
                # Both callers have sent device arrays to the CUDA path already.
                converted[i] = as_input(a, f"{self.name}.{method}: {names[i]}", device_checked=True)
        if len(arrays) > 1:
            current = arrays if converted is None else converted
            shape = current[-1].shape
            for a, n in zip(current, names, strict=True):
                if a.shape != shape:
                    raise ValueError(
                        f"{self.name}.{method}: {n} has shape {a.shape}, but x has shape {shape}"
                    )
            dtype = np.result_type(*current)
            if any(a.dtype != dtype for a in current):
                converted = [a.astype(dtype, copy=False) for a in current]
        return arrays if converted is None else tuple(converted)

    def _converted_ready(self, method, arrays, names, out, n_out, fortran=False):
        """``(inputs, ready_operands of them)`` for inputs that the fast path did not take as given.

        The inputs come back converted (:meth:`_convert`), as ``_prepare``
        takes them. Lists, CPU tensors, integer arrays and the like may be
        ready once converted; the operands are None where nothing was
        converted (the fast path has already refused those arrays).
        """
        converted = self._convert(method, arrays, names)
        if converted is arrays:
            return arrays, None
        return converted, ready_operands(converted, out, n_out, fortran)

    def _prepare(self, method, converted, out, n_out, label="out"):
        """Check ``out`` against inputs already converted by :meth:`_convert`; return what the kernels need.

        ``label`` names a single ``out`` in errors ("out[0]" where it came
        from a pair).
        """
        x = converted[-1]
        shape = x.shape
        dtype = x.dtype
        where = None if out is None else f"{self.name}.{method}"
        if out is None:
            outs = [None] * n_out
        elif n_out == 1:
            outs = [check_out(out, shape, dtype, where, label)]
        else:
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise TypeError(f"{where}: out must be a pair (y, dy) of arrays, got {type(out).__name__}")
            y, dy = out
            outs = [
                None if y is None else check_out(y, shape, dtype, where, "out[0]"),
                None if dy is None else check_out(dy, shape, dtype, where, "out[1]"),
            ]
        scalar = out is None and x.ndim == 0 and converted[0].ndim == 0
        return converted, outs, shape, dtype, scalar, where

    @staticmethod
    def _result(results, scalar, n_out):
        if scalar:
            results = [r[()] for r in results]
        return results[0] if n_out == 1 else tuple(results)

    def _elementwise(self, mode, arrays, out, params, names, n_out):
        values = self._params(mode, params)
        any_order = self._order_free(values)
        ready = ready_operands(arrays, out, n_out, fortran=any_order)
        if ready is None:
            if _on_device(arrays, out):
                from fastact import cuda

                return cuda.run(
                    self, mode, arrays, names, out, n_out, lambda dt: self._call_params(values, dt)
                )
            arrays, ready = self._converted_ready(mode, arrays, names, out, n_out, fortran=any_order)
        if ready is not None:
            inputs, buffers, results = ready
            x = inputs[-1]
            self._launch(mode, x.dtype, inputs, buffers, x.size, values)
            return results[0] if n_out == 1 else tuple(results)
        arrays, outs, shape, dtype, scalar, where = self._prepare(mode, arrays, out, n_out)
        layout = Layout(arrays, outs, shape, dtype, where, fortran=any_order)
        size = arrays[-1].size
        if size:
            self._launch(mode, dtype, layout.flat_inputs, layout.flat_buffers, size, values)
        return self._result(layout.finish(), scalar, n_out)

    def _launch(self, mode, dtype, inputs, buffers, size, values):
        loop, params = self._call_params(values, dtype)
        # The CPU's flat loops take the parameters as one tuple, the channel
        # loops as separate arguments.
        args = (params,) if loop in _cpu.FLAT_LOOPS else params
        _cpu.launch(self, dtype, mode, loop, size, inputs, buffers, *args)


_MISSING = object()


def _listed(names) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _same_objects(given: dict, last: dict) -> bool:
    """True when ``given`` holds the very objects of ``last`` under the same keys."""
    if len(given) != len(last):
        return False
    for key, value in given.items():
        if last.get(key, _MISSING) is not value:
            return False
    return True


def _on_device(arrays, out) -> bool:
    """True when any operand is a CUDA device array (never imports CUDA itself)."""
    # Runs on every call: NumPy operands are settled by their type alone.
    for a in arrays:
        if type(a) is not np.ndarray and is_device_array(a):
            return True
    if out is None or type(out) is np.ndarray:
        return False
    if isinstance(out, (tuple, list)):
        for o in out:
            if type(o) is not np.ndarray and is_device_array(o):
                return True
        return False
    return is_device_array(out)


def is_device_array(a) -> bool:
    """A CUDA array: has ``__cuda_array_interface__``, or is numba's (simulator too).

    A torch tensor answers by its ``is_cuda`` flag (asking a CPU tensor for
    the interface costs about 1.3 us: the property raises). torch is looked
    up only where the caller has imported it.
    """
    if isinstance(a, np.ndarray) or a is None:
        return False
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(a, torch.Tensor):
        return a.is_cuda
    return hasattr(a, "__cuda_array_interface__") or type(a).__module__.startswith("numba.cuda")


def _lookup(name: str) -> Activation:
    return REGISTRY[name]


class RReLU(Activation):
    """RReLU: random slopes in training, their mean in evaluation."""

    def _params(self, method, given):
        values = super()._params(method, given)
        lower, upper = float(values["lower"]), float(values["upper"])
        if not (math.isfinite(lower) and math.isfinite(upper)):
            # U(lower, upper) has no meaning there; the slopes would be NaN.
            raise ValueError(f"rrelu: lower ({lower}) and upper ({upper}) must be finite")
        if not lower <= upper:
            raise ValueError(f"rrelu: lower ({lower}) must not exceed upper ({upper})")
        if not isinstance(values["training"], (bool, np.bool_)):
            raise TypeError(f"rrelu: training must be a bool, got {values['training']!r}")
        seed = values["seed"]
        if seed is not None and (
            isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))
        ):
            raise TypeError(f"rrelu: seed must be an int or None, got {seed!r}")
        if values["training"] and seed is None:
            if method == "backward":
                raise ValueError(
                    "rrelu.backward in training mode needs the seed of the forward pass "
                    "(without it the slopes would be drawn afresh)"
                )
            values = {**values, "seed": secrets.randbits(64)}  # never into the defaults
        return values

    def _order_free(self, values) -> bool:
        # In training each element's slope is drawn from its index.
        return not values["training"]

    def _loop_params(self, values, dtype):
        lower, upper = float(values["lower"]), float(values["upper"])
        if not values["training"]:
            return "elementwise", (as_scalar((lower + upper) / 2, dtype, "rrelu: (lower + upper) / 2"),)
        seed = int(values["seed"]) & (2**64 - 1)
        return "random", (
            as_scalar(lower, dtype, "rrelu: lower"),
            as_scalar(upper - lower, dtype, "rrelu: upper - lower"),
            np.uint32(seed & 0xFFFFFFFF),
            np.uint32(seed >> 32),
        )


class PReLU(Activation):
    """PReLU: the leaky slope is a weight of 1 or C values (C on dim 1)."""

    def __call__(self, x: ArrayLike, weight: ArrayLike, *extra, out: np.ndarray | None = None) -> np.ndarray:
        """f(x) with slope ``weight`` for the channel of each element."""
        if extra:
            self._refuse_positional("forward", ("x", "weight"), extra)
        return self._channelwise("forward", (x,), weight, out, ("x",), 1)

    def derivative(
        self, x: ArrayLike, weight: ArrayLike, *extra, out: np.ndarray | None = None
    ) -> np.ndarray:
        """∂f/∂x, elementwise."""
        if extra:
            self._refuse_positional("derivative", ("x", "weight"), extra)
        return self._channelwise("derivative", (x,), weight, out, ("x",), 1)

    def fused(
        self, x: ArrayLike, weight: ArrayLike, *extra, out: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(f(x), ∂f/∂x)`` in one pass; ``out=(y, dy)``."""
        if extra:
            self._refuse_positional("fused", ("x", "weight"), extra)
        return self._channelwise("fused", (x,), weight, out, ("x",), 2)

    def backward(
        self,
        grad_out: ArrayLike,
        x: ArrayLike,
        weight: ArrayLike,
        *extra,
        out: np.ndarray | tuple[np.ndarray | None, np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(grad_out * ∂f/∂x, grad_weight)``.

        ``out`` is the grad_x buffer, or a pair ``(grad_x, grad_weight)``
        (either may be None); grad_weight has one value per weight (shape
        ``(weight.size,)``).
        """
        if extra:
            self._refuse_positional("backward", ("grad_out", "x", "weight"), extra)
        label, weight_out = "out", None
        if isinstance(out, (tuple, list)):
            if len(out) != 2:
                raise TypeError(
                    "prelu.backward: out must be the grad_x array or a pair (grad_x, grad_weight), "
                    f"got a {type(out).__name__} of {len(out)}"
                )
            (out, weight_out), label = out, "out[0]"
        return self._channelwise(
            "backward", (grad_out, x), weight, out, ("grad_out", "x"), 1, label, weight_out
        )

    @staticmethod
    def _count_channels(method, size, ndim, shape) -> int:
        """Check a weight of ``size`` values and ``ndim`` dims; return the channel count."""
        if ndim > 1:
            raise ValueError(f"prelu.{method}: weight must be 1-D (1 or C values), got {ndim} dims")
        if size == 1:
            return 1
        if len(shape) == 0:
            raise ValueError(f"prelu.{method}: a 0-d input takes a weight of 1 value, got {size}")
        channels = shape[1] if len(shape) >= 2 else shape[0]
        if size != channels:
            axis = 1 if len(shape) >= 2 else 0
            raise ValueError(
                f"prelu.{method}: weight has {size} values, but input of shape {shape} "
                f"has {channels} channels on dim {axis} (weight takes 1 or {channels} values)"
            )
        return channels

    def _weight(self, method, weight, shape, dtype):
        # _channelwise has sent a device weight to the CUDA path already.
        w = as_input(weight, f"prelu.{method}: weight", device_checked=True)
        channels = self._count_channels(method, w.size, w.ndim, shape)
        return as_dtype(w, dtype, f"prelu.{method}: weight"), channels

    def _channelwise(self, mode, arrays, weight, out, names, n_out, label="out", weight_out=None):
        ready = ready_operands(arrays, out, n_out)
        # A plain ndarray weight (and grad_weight buffer) needs no device probe.
        plain = type(weight) is np.ndarray and (weight_out is None or type(weight_out) is np.ndarray)
        if ready is None or not plain:
            if _on_device((*arrays, weight), (out, weight_out)):
                from fastact import cuda

                return cuda.run_prelu(
                    self, mode, arrays, names, weight, out, n_out, self._count_channels, label, weight_out
                )
            if ready is None:
                arrays, ready = self._converted_ready(mode, arrays, names, out, n_out)
        if ready is not None:
            inputs, buffers, results = ready
            x = arrays[-1]
            shape, dtype, scalar = x.shape, x.dtype, False
        else:
            arrays, outs, shape, dtype, scalar, where = self._prepare(mode, arrays, out, n_out, label)
        w, channels = self._weight(mode, weight, shape, dtype)
        if weight_out is not None:
            weight_out = self._weight_out(weight_out, w.size, dtype, out)
        if ready is None:
            # The channel of an element follows its logical (C-order)
            # position, and so does grad_weight's summation order: the same
            # bits for any memory layout.
            fortran = channels == 1 and mode != "backward"
            layout = Layout(arrays, outs, shape, dtype, where, label, fortran=fortran)
            inputs, buffers = layout.flat_inputs, layout.flat_buffers
        size = math.prod(shape)
        for o in buffers:
            if np.may_share_memory(w, o):
                # Threads write the output while others still read the weights.
                w = w.copy()
                break
        inner = math.prod(shape[2:]) if len(shape) >= 2 else 1
        grad_weight = None
        if size:
            if mode == "backward":
                grad_weight = self._backward(inputs, buffers[0], w, channels, inner, size, dtype)
            elif channels == 1:
                _cpu.launch(self, dtype, mode, "elementwise", size, inputs, buffers, (w[0],))
            else:
                loop = "rows" if inner > 1 else "lanes"
                _cpu.launch(
                    self, dtype, mode, loop, size, inputs, buffers, w, np.int64(channels), np.int64(inner)
                )
        elif mode == "backward":
            grad_weight = np.zeros(w.size, dtype)
        result = self._result(results if ready is not None else layout.finish(), scalar, n_out)
        if mode != "backward":
            return result
        if weight_out is not None:
            weight_out[...] = grad_weight
            grad_weight = weight_out
        return result, grad_weight

    @staticmethod
    def _weight_out(buffer, size, dtype, grad_x_out):
        """The caller's grad_weight buffer, checked before any work is done.

        It is filled after grad_x is complete, so it may share memory with
        the inputs (like ``out=x``), but not with the grad_x buffer or with
        itself: that would overwrite results already written.
        """
        where = "prelu.backward"
        buffer = check_out(buffer, (size,), dtype, where, "out[1]")
        check_own_elements(buffer, where, "out[1]")
        if grad_x_out is not None:
            check_outputs_apart((grad_x_out, buffer), where)
        return buffer

    def _backward(self, inputs, gx, w, channels, inner, size, dtype):
        """grad_x into the flat buffer ``gx``; grad_weight from per-block partial sums.

        The kernels sum in a fixed order set by the shape alone (fixed blocks,
        interleaved running sums, strict IEEE arithmetic), and the partial
        sums are added here in a fixed order too: grad_weight has the same
        bits for any thread count.
        """
        from fastact._config import REDUCTION_BLOCK, REDUCTION_LANES

        g, x = inputs
        if channels == 1:
            partial = np.empty((-(-size // REDUCTION_BLOCK), REDUCTION_LANES), dtype)
            _cpu.launch(self, dtype, "prelu_backward", "elementwise", size, g, x, gx, partial, w)
            return np.array([partial.sum()], dtype)
        if inner >= REDUCTION_LANES:
            partial = np.empty((size // inner, REDUCTION_LANES), dtype)
            _cpu.launch(
                self,
                dtype,
                "prelu_backward",
                "rows",
                size,
                g,
                x,
                gx,
                partial,
                w,
                np.int64(channels),
                np.int64(inner),
            )
            return partial.sum(axis=1).reshape(-1, channels).sum(axis=0)
        # Short rows (inner < 16): the weight repeated along one sample's
        # channels x inner values, whose running sums are the lanes.
        unit = channels * inner
        weights = np.repeat(w, inner) if inner > 1 else w
        rows = size // unit
        rows_per_block = max(1, REDUCTION_BLOCK // unit)
        partial = np.empty((-(-rows // rows_per_block), unit), dtype)
        _cpu.launch(
            self,
            dtype,
            "prelu_backward",
            "lanes",
            size,
            g,
            x,
            gx,
            partial,
            weights,
            np.int64(unit),
            np.int64(rows_per_block),
        )
        return partial.sum(axis=0).reshape(channels, inner).sum(axis=1)
