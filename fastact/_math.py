"""Scalar math primitives, one namespace per (dtype, target).

Activation definitions receive a :class:`MathLib` and take every constant and
primitive from it, so that one definition yields a float32 and a float64
kernel, each with constants of its own dtype (a Python float literal in a
float32 loop promotes the loop to float64 and halves its throughput).

Numba's ``math.exp`` and ``math.tanh`` are scalar libm calls on the CPU (SVML
support is gone from Numba), which keeps a loop from vectorizing; measured at
2^24 float32, a fused sigmoid with ``math.exp`` took 35.7 ms against 16-18 ms
with the polynomial below. The primitives here are therefore written as
range reduction, polynomial and exponent arithmetic, all of which LLVM turns
into packed SIMD instructions.

Nothing here imports Numba at module level: ``import fastact`` stays cheap.
"""

from __future__ import annotations

import math

import numpy as np

_FLOAT_TYPES = {np.dtype(np.float32): np.float32, np.dtype(np.float64): np.float64}
# The signed integer of the same width, for work on a float's bits.
_BITS_TYPES = {np.dtype(np.float32): np.int32, np.dtype(np.float64): np.int64}


def _cuda_jit(fn):
    from numba import cuda

    from fastact._config import CUDA_FASTMATH

    return cuda.jit(device=True, inline="always", fastmath=CUDA_FASTMATH)(fn)


def _identity(v):
    return v


def _jit(fn):
    from numba.extending import register_jitable

    from fastact._config import ERROR_MODEL, FASTMATH

    return register_jitable(fastmath=set(FASTMATH), error_model=ERROR_MODEL)(fn)


def _cpu_intrinsics():
    from fastact._intrinsics import fma, pin, pin_bits

    return pin, pin_bits, fma


def _cuda_fma():
    # Defined in fastact.cuda, where ``cuda`` is a module global that numba's
    # simulator can swap for its own (a local import here it cannot).
    from fastact.cuda import device_fma

    return _cuda_jit(device_fma)


def _horner(coeffs, jit, pin):
    """Return ``p(r) = coeffs[0] + r*(coeffs[1] + r*(...))`` as a jitted function.

    The coefficients are pinned (see :mod:`fastact._intrinsics`).
    """
    coeffs = tuple(coeffs)
    last = len(coeffs) - 1

    def build(k):
        if k == last:

            def const(r, c):
                return c[k]

            return jit(const)
        tail = build(k + 1)

        def step(r, c):
            return c[k] + r * tail(r, c)

        return jit(step)

    inner = build(0)

    def poly(r):
        return inner(r, pin(coeffs))

    return jit(poly)


class MathLib:
    """Typed constants and vectorizable primitives for one floating dtype.

    Parameters
    ----------
    dtype : numpy.dtype
        ``float32`` or ``float64``.
    """

    def __init__(self, dtype, target: str = "cpu"):
        if target not in ("cpu", "cuda"):
            raise ValueError(f"unknown target {target!r}")
        self.target = target
        self.jit = _jit if target == "cpu" else _cuda_jit
        # pin, pin_bits: see fastact._intrinsics; on CUDA constants are best
        # left as the immediate operands they become. fma: a*b + c rounded once.
        if target == "cpu":
            self.pin, self.pin_bits, self.fma = _cpu_intrinsics()
        else:
            self.pin, self.fma = self.jit(_identity), _cuda_fma()
            self.pin_bits = self.pin
        dtype = np.dtype(dtype)
        if dtype not in _FLOAT_TYPES:
            raise TypeError(f"no math library for dtype {dtype}")
        self.dtype = dtype
        self.type = _FLOAT_TYPES[dtype]
        self.itype = _BITS_TYPES[dtype]
        self.zero = self.c(0.0)
        self.one = self.c(1.0)
        self.sq1p = self._make_sq1p()
        if target == "cuda":
            # libdevice's exp and expm1 are already fast and accurate on GPUs.
            self.expneg = self._make_libdevice_exp()
            self.tanh_exp = self._make_libdevice_tanh_exp()
        else:
            self.expneg = self._make_exp("expneg")
            self.tanh_exp = self._make_exp("tanh_exp")
        self.abs = self._make_abs()
        self.with_sign_of = self._make_with_sign_of()
        self.signbit = self._make_signbit()
        self.uniform = self._make_uniform()

    def c(self, value):
        """A constant of this library's dtype."""
        return self.type(value)

    # -- exp ---------------------------------------------------------------
    def _make_exp(self, kind):
        """exp(x) for x <= 0 (all that saturating activations need), in the forms they use.

        x = n*ln2 + r with |r| <= ln2/2 (ln2 split in a short head, so that
        x - n*head is exact, and a tail, each taken off with one FMA); exp(r)
        by a polynomial (degree 6 for float32, 13 for float64: below 0.1 ULP
        on |r| <= 0.347), kept as ``p = exp(r) - 1 = r + r^2 Q(r)``. Q is
        evaluated as ``(c0 + c1 r) + r^2 H(r)``, H by Horner: the two parts
        run side by side, two dependent FMAs fewer than Horner on all of Q
        (over all float32 inputs, with the Newton-refined quotient that
        tanh used before, its largest error in f was 2.30 ULP against 2.24
        with Horner; sigmoid's was the same). The scale ``b = 2^(n+64)`` is
        built from bits; it is a normal number for every n down to the clamp.
        The integer n is read straight from the bits of ``t + 1.5*2^m`` (m =
        23 or 52), which avoids float-to-int64 conversions that AVX2 has no
        packed instruction for.

        The activations use these forms only in quotients, so each is
        returned scaled by 2^64 (tanh's ``(1 + e)^2`` by 2^62), which spares
        the multiplies by 2^-64 and keeps every operand normal. Scaling by a
        power of two changes no rounding, so each quotient has the bits of
        the unscaled one, and where ``e = exp(x)`` is subnormal the division
        rounds it once (over all float32 inputs, bit for bit the results of
        forming e, 4e and ``(1 + e)^2`` unscaled first, which took three
        multiplies and an add more for tanh, two multiplies for sigmoid).
        With ``E = 2^64 e = p b + b``, one FMA on ``p`` each:

        * ``2^64 (1 + e) = p b + (2^64 + b)``: taken from ``p`` directly
          rather than by adding to the rounded e, which is one dependent
          operation fewer on the way to the division that follows it;
        * ``2^64 (1 - e) = (2^64 - b) - p b``, ``2^64 - b`` exact for n >=
          -24 (beyond that 1 - e rounds to 1 either way): no cancellation
          near 0, where 1 minus the rounded e loses every digit;
        * ``2^64 (1 + e)^2 = E (e + 2) + 2^64`` with ``e + 2 = E 2^-64 + 2``,
          and ``2^62 (1 + e)^2 = E (e + 2) / 4 + 2^62`` with ``(e + 2) / 4 = E
          2^-66 + 1/2``: ``1 + e (e + 2)`` (see :meth:`_make_sq1p`, whose
          error bound holds), scaled; E (e + 2) is normal for every e.

        ``kind``: ``"expneg"`` takes ``a >= 0`` and returns, for ``x = -a``,
        ``(E, 2^64, 2^64 (1 + e), E, 2^64 (1 + e)^2)``: the two numerators of
        sigmoid (x < 0 and x >= 0) over its denominator, and the numerator
        and denominator of its derivative ``e / (1 + e)^2``. ``"tanh_exp"``
        takes ``a >= 0`` and returns, for ``x = -2a``, ``(2^64 (1 - e), 2^64
        (1 + e), E, 2^62 (1 + e)^2)``: tanh's value and derivative ``4e / (1
        + e)^2`` as two quotients. Both propagate NaN, and the quotients that
        carry e round to 0 where e (or tanh's 4e) is below half the smallest
        subnormal: below about x = -103.97 (-105.36 for 4e) in float32 and
        -745.13 (-746.52) in float64.
        """
        if kind not in ("expneg", "tanh_exp"):
            raise ValueError(f"unknown exp kind {kind!r}")
        t, itype = self.type, self.itype
        jit = self.jit
        if self.dtype == np.float32:
            shifter, shifter_bits, bias, mbits = 1.5 * 2.0**23, 0x4B400000, 127, 23
            # Clamp: 4 exp(-106) < 2^-150 rounds to 0, as exp(x) and 4 exp(x)
            # must at the limit x = -inf.
            lo = -106.0
            # Cephes' split of ln2 for single precision: 0.693359375 has 9 bits.
            ln2_hi, ln2_lo = 0.693359375, -2.12194440e-4
            # exp(r) = 1 + r + r^2 Q(r), Q of degree 4 fitted here (weighted
            # least squares toward minimax on [-ln2/2, ln2/2]): relative
            # error 3.8e-9, 0.06 ULP, one FMA fewer than Taylor's degree 7.
            coeffs = (
                0.49999988079071045,
                0.166665181517601,
                0.04166950657963753,
                0.00836891308426857,
                0.0013752969680354,
            )
        else:
            shifter, shifter_bits, bias, mbits = 1.5 * 2.0**52, 0x4338000000000000, 1023, 52
            lo = -748.0  # 4 exp(-748) < 2^-1075 rounds to 0
            # fdlibm's split: the head has 32 significant bits.
            ln2_hi, ln2_lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
            # Taylor to degree 13: truncation 4e-18, below 0.05 ULP.
            coeffs = tuple(1.0 / math.factorial(k) for k in range(2, 14))
        pin, pin_bits, fma = self.pin, self.pin_bits, self.fma
        coeffs = tuple(t(c) for c in coeffs)
        low, high = _horner(coeffs[:2], jit, pin), _horner(coeffs[2:], jit, pin)
        # exp(c a) for a >= 0, c = -1 or -2: c is a power of 2, so c*a and
        # the constant c*log2e are exact, and the clamp and the reduction work
        # on a directly (no dependent multiply by c ahead of them).
        #
        # times_c(a) = c*a without a multiply: a pinned c (see
        # fastact._intrinsics) was a vmulps in every iteration. -a folds into
        # the FMA that takes it (vfmsub), -(a + a) is an add; both are exact,
        # so the bits are those of c*a (checked over all float32 inputs of
        # sigmoid and tanh).
        if kind == "expneg":
            c = -1.0

            def times_c(a):
                return -a

        else:
            c = -2.0

            def times_c(a):
                return -(a + a)

        times_c = jit(times_c)
        consts = tuple(t(v) for v in (lo / c, c * 1.4426950408889634, shifter, ln2_hi, ln2_lo))
        # n + 64 + bias, the biased exponent of 2^(n+64), folded into one add.
        exponent, mbits = itype(64 + bias - shifter_bits), itype(mbits)

        def parts(a):
            hi, c_log2e, shifter, ln2_hi, ln2_lo = pin(consts)
            # NaN fails the comparison and flows through unchanged.
            ac = hi if a > hi else a
            k = ac * c_log2e + shifter
            nf = k - shifter
            r = fma(nf, -ln2_lo, fma(nf, -ln2_hi, times_c(ac)))
            rr = r * r
            p = r + rr * (low(r) + rr * high(r))  # exp(r) - 1
            # The bits of k less those of the shifter are n; the biased
            # exponent n + 64 + bias is one add of a pinned constant.
            return p, itype((t(k).view(itype) + pin_bits(exponent)) << mbits).view(t)  # 2^(n+64)

        parts = jit(parts)
        # Scaled by 2^64 (2^62 for tanh'), see the docstring.
        two64 = t(2.0**64)
        tanh_consts = (two64, t(2.0**62), t(2.0**-66), t(0.5))
        sigmoid_consts = (two64, t(2.0**-64), t(2.0))

        def tanh_exp(a):
            two64, two62, quarter_scale, half = pin(tanh_consts)
            p, big = parts(a)
            e_big = fma(p, big, big)  # 2^64 e
            # (e + 2) / 4, then 2^62 (1 + e)^2 = 2^62 + 2^64 e (e + 2) / 4
            q = fma(e_big, quarter_scale, half)
            return fma(-p, big, two64 - big), fma(p, big, two64 + big), e_big, fma(e_big, q, two62)

        def expneg(a):
            two64, scale, two = pin(sigmoid_consts)
            p, big = parts(a)
            e_big = fma(p, big, big)  # 2^64 e
            q = fma(e_big, scale, two)  # e + 2
            return e_big, two64, fma(p, big, two64 + big), e_big, fma(e_big, q, two64)

        return jit(tanh_exp if kind == "tanh_exp" else expneg)

    def _make_libdevice_exp(self):
        one, sq1p = self.one, self.sq1p

        def expneg(a):
            e = math.exp(-a)
            return e, one, one + e, e, sq1p(e)

        return self.jit(expneg)

    def _make_libdevice_tanh_exp(self):
        minus_two, one, four, sq1p = self.c(-2.0), self.one, self.c(4.0), self.sq1p

        def tanh_exp(a):
            z = minus_two * a
            e = math.exp(z)
            return -math.expm1(z), one + e, four * e, sq1p(e)

        return self.jit(tanh_exp)

    # -- (1 + e)^2 ---------------------------------------------------------
    def _make_sq1p(self):
        """``sq1p(e) = (1 + e)^2`` as ``1 + e (e + 2)``, for ``0 <= e <= 1``.

        The relative error is at most 1.75 u (u = 2^-24 for float32, 2^-53
        for float64): u from the FMA's rounding, and 0.75 u from that of
        ``e + 2``, which reaches the result scaled by ``e (e + 2) / (1 +
        e)^2 <= 3/4``. Squaring the rounded ``1 + e`` instead doubles its
        rounding: sigmoid' = e / (1 + e)^2 then reached 4.1 ULP over float32.
        The derivatives divide by this directly (on the CPU by the same
        form scaled by a power of two, see :meth:`_make_exp`), one division rounded once,
        which is shorter and more accurate than squaring a quotient
        ``1 / (1 + e)``.
        """
        consts, pin, fma = (self.one, self.c(2.0)), self.pin, self.fma

        def sq1p(e):
            one, two = pin(consts)
            return fma(e, e + two, one)

        return self.jit(sq1p)

    # -- helpers -----------------------------------------------------------
    def _make_signbit(self):
        """signbit(x): True where x's sign bit is set (-0.0 and negative NaNs too).

        A select on it compiles to one blend keyed on x's own sign bit, with
        no comparison (x86's ``blendv`` reads only the top bit of its mask).
        """
        t, one, zero = self.type, self.one, self.zero
        if self.target == "cuda":

            def signbit(x):
                return math.copysign(one, x) < zero

        else:
            itype = self.itype
            izero = itype(0)

            def signbit(x):
                return t(x).view(itype) < izero

        return self.jit(signbit)

    def _make_abs(self):
        """abs(x): ``|x|``, x with its sign bit cleared (NaN stays NaN).

        On the CPU through the bits, with the mask pinned (see
        :func:`fastact._intrinsics.pin_bits`): Python's ``abs`` on a float
        becomes the same AND, but with a mask that LLVM loads and broadcasts
        again in every iteration.
        """
        if self.target == "cuda":

            def absolute(x):
                return abs(x)

        else:
            t, itype, pin_bits = self.type, self.itype, self.pin_bits
            magnitude = itype(np.iinfo(itype).max)

            def absolute(x):
                return itype(t(x).view(itype) & pin_bits(magnitude)).view(t)

        return self.jit(absolute)

    def _make_with_sign_of(self):
        """with_sign_of(m, x, ax): ``copysign(m, x)`` for an ``m`` whose sign bit is clear; ``ax = |x|``.

        On the CPU the sign bit of x is ORed in, one operation fewer than a
        general copysign, which must clear m's sign bit first. That bit
        alone is ``x XOR |x|``, so no mask constant is needed at all.
        """
        if self.target == "cuda":

            def with_sign_of(m, x, ax):
                return math.copysign(m, x)

        else:
            t, itype = self.type, self.itype

            def with_sign_of(m, x, ax):
                return itype(t(m).view(itype) | (t(x).view(itype) ^ t(ax).view(itype))).view(t)

        return self.jit(with_sign_of)

    def _make_uniform(self):
        """uniform(i, k0, k1): a counter-based draw in [0, 1) for element i.

        Two rounds of a 32-bit integer mixer (the "lowbias32" constants
        published by C. Wellons) over the index and a 64-bit key. The value
        depends on (key, i) only, so it is the same for any thread count and
        can be recomputed in the backward pass. float32 takes 24 random bits,
        float64 31 (its 32-bit integers convert with packed AVX2 instructions).
        """
        t = self.type
        u32 = np.uint32
        m1, m2 = u32(0x7FEB352D), u32(0x846CA68B)
        c0, c1 = u32(0x9E3779B9), u32(0x85EBCA6B)
        s16, s15 = u32(16), u32(15)
        low = np.int64(0xFFFFFFFF)
        s32 = np.int64(32)
        if self.dtype == np.float32:
            drop, scale = u32(8), t(2.0**-24)
        else:
            drop, scale = u32(1), t(2.0**-31)

        def mix(h):
            h = u32(h ^ (h >> s16))
            h = u32(h * m1)
            h = u32(h ^ (h >> s15))
            h = u32(h * m2)
            return u32(h ^ (h >> s16))

        mix = self.jit(mix)

        def uniform(i, k0, k1):
            # The odd constants keep (seed 0, index 0) away from mix(0) = 0.
            h = mix(u32(u32(u32(i & low) ^ k0) + c0))
            h = mix(u32(h ^ u32(u32(u32(i >> s32) + k1) + c1)))
            return t(np.int32(h >> drop)) * scale

        return self.jit(uniform)


_LIBS: dict = {}


def mathlib(dtype, target: str = "cpu") -> MathLib:
    """The cached :class:`MathLib` of ``dtype`` for ``target`` ("cpu" or "cuda")."""
    key = (np.dtype(dtype), target)
    lib = _LIBS.get(key)
    if lib is None:
        lib = _LIBS.setdefault(key, MathLib(*key))
    return lib
