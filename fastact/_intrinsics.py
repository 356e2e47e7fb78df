"""LLVM intrinsics for the CPU kernels: ``pin`` and ``fma``.

``pin(v)``: ``v`` unchanged, but opaque to LLVM's constant folding. A float
constant in a kernel is an LLVM constant, and with the large code model of
Numba's JIT every use inside a loop becomes an address load plus a broadcast,
re-done in every iteration once the constants outnumber the vector registers
(measured: 67 instructions per 8 sigmoids, 28 of them constant loads). Passed
through ``llvm.arithmetic.fence`` the same value is a loop-invariant register
that LLVM hoists out of the loop and, if registers run out, spills once and
reads back as a memory operand (33 instructions; 2^24 float32 sigmoid
``fused`` 10-15% faster). The fence is an identity: it emits no instruction
and changes no bit. ``pin`` takes a float or a tuple (integers in it pass
through unpinned).

``fma(a, b, c)``: ``a*b + c`` rounded once (``llvm.fma``, one packed
``vfmadd`` in a vectorized loop). The kernels' ``contract`` flag fuses a
product into an add only when the product has no other use; where one product
feeds several sums (``p*s + s`` and ``p*s + (1 + s)`` in exp), or the same
product also stands alone, LLVM computes it once, rounded, and the sums round
twice. Those sums ask for the FMA by name.

This module imports Numba, so it is imported only when a kernel is built.
``pin`` and ``fma`` are plain module-level functions (their compiled forms
registered with ``register_jitable``) on purpose: kernels that reach them are
pickled into Numba's on-disk cache key, and a module-level function pickles by
name, while an ``@intrinsic`` object pickles with a random id that would make
every process miss the cache.
"""

from numba.core import types
from numba.core.extending import intrinsic, register_jitable


def _fence(builder, value, typ):
    if not isinstance(typ, types.Float):
        return value
    fn = builder.module.declare_intrinsic("llvm.arithmetic.fence", [value.type])
    return builder.call(fn, [value])


@intrinsic
def _opaque(typingctx, value):
    if isinstance(value, types.Float):

        def codegen(context, builder, sig, args):
            return _fence(builder, args[0], value)

    elif isinstance(value, types.BaseTuple) and all(
        isinstance(t, (types.Float, types.Integer)) for t in value.types
    ):

        def codegen(context, builder, sig, args):
            out = args[0]
            for k, typ in enumerate(value.types):
                out = builder.insert_value(out, _fence(builder, builder.extract_value(out, k), typ), k)
            return out

    else:
        return None
    return value(value), codegen


@register_jitable
def pin(value):
    return _opaque(value)


@intrinsic
def _fused(typingctx, a, b, c):
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        fn = builder.module.declare_intrinsic("llvm.fma", [args[0].type] * 3)
        return builder.call(fn, args)

    return a(a, b, c), codegen


@register_jitable
def fma(a, b, c):
    return _fused(a, b, c)
