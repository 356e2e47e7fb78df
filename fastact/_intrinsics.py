"""LLVM intrinsics for the CPU kernels.

``pin``, ``pin_bits``, ``fma``, ``stream_vector``, ``stream_element``,
``store_fence``, ``prefetch`` and ``prefer_wide_vectors``.

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

``pin_bits(v)``: the same for an integer constant (a bit mask, an exponent
offset). ``llvm.arithmetic.fence`` takes only floats, so the integer goes
through a float of its width and back, which also emits no instruction.
Unpinned, such masks were broadcast loads inside the loops; with them
pinned (and tanh's sign mask replaced by ``x XOR |x|``), the float32
streaming loops went from 39 to 36 instructions per 8 tanh and from 34 to
33 per 8 sigmoids. Shift counts stay plain constants: they must remain
immediate operands.

``fma(a, b, c)``: ``a*b + c`` rounded once (``llvm.fma``, one packed
``vfmadd`` in a vectorized loop). The kernels' ``contract`` flag fuses a
product into an add only when the product has no other use; where one product
feeds several sums (``p*s + s`` and ``p*s + (1 + s)`` in exp), or the same
product also stands alone, LLVM computes it once, rounded, and the sums round
twice. Those sums ask for the FMA by name.

``stream_vector``, ``stream_element`` and ``store_fence``: the
non-temporal stores of the streaming kernels (``fastact._cpu``), and the
fence that orders them.

``prefetch``: a hint to bring a line of an input into L2 ahead of its use,
for the streaming kernels.

``prefer_wide_vectors``: 512-bit loops on CPUs where LLVM would otherwise
choose 256-bit ones (``fastact._cpu.wide_vectors``).

This module imports Numba, so it is imported only when a kernel is built.
The jitted functions here are plain module-level functions (their compiled forms
registered with ``register_jitable``) on purpose: kernels that reach them are
pickled into Numba's on-disk cache key, and a module-level function pickles by
name, while an ``@intrinsic`` object pickles with a random id that would make
every process miss the cache.
"""

from llvmlite import ir
from numba.core import types
from numba.core.extending import intrinsic, register_jitable

from fastact._config import X86_64


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
def _opaque_bits(typingctx, value):
    if not (isinstance(value, types.Integer) and value.bitwidth in (32, 64)):
        return None

    def codegen(context, builder, sig, args):
        bits = args[0]
        wide = value.bitwidth == 64
        as_float = builder.bitcast(bits, ir.DoubleType() if wide else ir.FloatType())
        fenced = _fence(builder, as_float, types.float64 if wide else types.float32)
        return builder.bitcast(fenced, bits.type)

    return value(value), codegen


@register_jitable
def pin_bits(value):
    return _opaque_bits(value)


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


# Width of one non-temporal store: a 256-bit vector (8 float32, 4 float64).
STREAM_BYTES = 32


def _item_pointer(context, builder, ty, array, index):
    """The address of element ``index`` of the 1-D array ``array`` of Numba type ``ty``."""
    from numba.core import cgutils

    view = context.make_array(ty)(context, builder, value=array)
    return cgutils.get_item_pointer(context, builder, ty, view, [index], wraparound=False)


def _store_nontemporal(builder, value, ptr, align):
    """Emit ``*ptr = value`` marked ``!nontemporal``, claiming ``align`` bytes."""
    store = builder.store(value, ptr, align=align)
    store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))


@intrinsic
def _stream_vector(typingctx, dst, k, src, j):
    ok = (
        isinstance(dst, types.Array)
        and isinstance(src, types.Array)
        and dst.ndim == src.ndim == 1
        and dst.dtype == src.dtype
        and isinstance(dst.dtype, types.Float)
        and isinstance(k, types.Integer)
        and isinstance(j, types.Integer)
    )
    if not ok:
        return None

    def codegen(context, builder, sig, args):
        dst_ty, _, src_ty, _ = sig.args
        item = context.get_data_type(dst_ty.dtype)
        vector = ir.VectorType(item, STREAM_BYTES // context.get_abi_sizeof(item)).as_pointer()

        def address(ty, value, index):
            return builder.bitcast(_item_pointer(context, builder, ty, value, index), vector)

        value = builder.load(address(src_ty, args[2], args[3]), align=context.get_abi_sizeof(item))
        _store_nontemporal(builder, value, address(dst_ty, args[0], args[1]), STREAM_BYTES)
        return context.get_dummy_value()

    return types.void(dst, k, src, j), codegen


@register_jitable
def stream_vector(dst, k, src, j):
    """``dst[k:k+w] = src[j:j+w]`` (w elements in 32 bytes) with one non-temporal store.

    The store bypasses the caches: the line is not read from memory before
    it is written (no read-for-ownership), so a large output costs the bytes
    it writes and no more. ``dst[k]`` must be 32-byte aligned; ``src`` may
    be unaligned. Only whole 64-byte lines should be written this way, and
    ``store_fence()`` must follow before another thread reads ``dst``.
    """
    _stream_vector(dst, k, src, j)


# The alignment that ``stream_element`` claims: a whole 64-byte line, the
# widest vector store (AVX-512).
LINE_BYTES = 64


@intrinsic
def _stream_element(typingctx, dst, k, value):
    ok = (
        isinstance(dst, types.Array)
        and dst.ndim == 1
        and isinstance(dst.dtype, types.Float)
        and isinstance(k, types.Integer)
        and isinstance(value, types.Float)
    )
    if not ok:
        return None

    def codegen(context, builder, sig, args):
        dst_ty, _, value_ty = sig.args
        ptr = _item_pointer(context, builder, dst_ty, args[0], args[1])
        item = context.cast(builder, args[2], value_ty, dst_ty.dtype)
        _store_nontemporal(builder, item, ptr, LINE_BYTES)
        return context.get_dummy_value()

    return types.void(dst, k, value), codegen


@register_jitable
def stream_element(dst, k, value):
    """``dst[k] = value`` as a non-temporal store, for loops that LLVM vectorizes.

    The loop vectorizer turns it into packed non-temporal stores only if the
    scalar store claims the alignment of the vector store it becomes (the
    vector inherits the scalar's alignment, and x86 has no unaligned
    ``vmovntps``). So it claims ``LINE_BYTES``, and a caller may use it only
    in a loop over consecutive elements whose first element starts a 64-byte
    line of ``dst``. The vector iterations of such a loop start at whole
    multiples of their own width from there (LLVM's vectorizer does not
    peel iterations), so each packed store is as aligned as the instruction
    needs: 64 bytes for 16 float32, 32 for 8. Anywhere else the packed store
    would fault. ``store_fence()`` must follow before another thread reads
    ``dst``.
    """
    _stream_element(dst, k, value)


@intrinsic
def _prefetch(typingctx, src, k):
    if not (isinstance(src, types.Array) and src.ndim == 1 and isinstance(k, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig.args[0], args[0], args[1])
        i32 = ir.IntType(32)
        byte_ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32])
        fn = builder.module.declare_intrinsic("llvm.prefetch.p0", fnty=fnty)
        # A read (0), kept in the caches but the closest (locality 2 of 3:
        # prefetcht1 on x86), of data (1).
        builder.call(fn, [builder.bitcast(ptr, byte_ptr), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return types.void(src, k), codegen


@register_jitable
def prefetch(src, k):
    """Ask for the line holding ``src[k]`` (``k`` within the array) in L2; no effect on values."""
    _prefetch(src, k)


# The vector width, in bits, that ``prefer_wide_vectors`` asks LLVM for.
WIDE_VECTOR_BITS = 512


@intrinsic
def _prefer_wide_vectors(typingctx):
    def codegen(context, builder, sig, args):
        # llvmlite's set of function attributes takes only attributes without
        # a value, and writes each entry into the IR as it stands; LLVM's
        # string attributes are written "key"="value".
        set.add(builder.function.attributes, f'"prefer-vector-width"="{WIDE_VECTOR_BITS}"')
        return context.get_dummy_value()

    return types.void(), codegen


# Inlined at Numba IR level: the attribute goes on the function being
# lowered, which must be the one that holds the loop.
@register_jitable(inline="always")
def prefer_wide_vectors():
    """Let LLVM vectorize the function this is inlined into with ``WIDE_VECTOR_BITS``.

    LLVM tunes its Intel server CPUs to prefer 256-bit vectors even with
    AVX-512 (``prefer-vector-width``, set per function); this asks for
    512. It changes the instructions chosen, not the arithmetic: the
    results are the same bits. On a CPU without 512-bit vectors LLVM
    ignores it.
    """
    _prefer_wide_vectors()


@intrinsic
def _fence_stores(typingctx):
    def codegen(context, builder, sig, args):
        if X86_64:
            # sfence: the fence that x86 defines for weakly ordered stores.
            fn = builder.module.declare_intrinsic(
                "llvm.x86.sse.sfence", fnty=ir.FunctionType(ir.VoidType(), [])
            )
            builder.call(fn, [])
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


@register_jitable
def store_fence():
    """Orders the non-temporal stores before the stores after it (``sfence`` on x86)."""
    _fence_stores()
