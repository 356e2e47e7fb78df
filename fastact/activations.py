"""The activation functions: each defined once, value and derivative together.

A definition is a factory ``(m: MathLib) -> f`` where ``f(x, *params)``
returns ``(f(x), f'(x))`` for one scalar. Every constant comes from ``m`` so
that the same text compiles to float32 and float64 kernels; the CPU builder
inlines ``f`` into its loops, so the derivative shares the work of the value
(``exp`` is evaluated once for both). Derivatives are computed from ``x``,
never from the rounded value, so they stay nonzero in saturation.

Adding an activation means adding a definition here (and its independent
reference in the tests); kernels, validation and dispatch are generated.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from fastact._activation import REGISTRY, Activation, PReLU, RReLU, define

__all__ = ["sigmoid", "tanh", "relu", "leaky_relu", "prelu", "rrelu", "ACTIVATIONS"]


@define
def sigmoid(m):
    """Logistic sigmoid, ``1 / (1 + exp(-x))``.

    .. math::

        f(x) = \\frac{1}{1 + e^{-x}}, \\qquad f'(x) = f(x)\\,(1 - f(x))
        = \\frac{e^{-|x|}}{(1 + e^{-|x|})^2}

    The derivative peaks at ``f'(0) = 0.25``. It is evaluated from ``x`` as
    ``e / (1 + e)^2`` with ``e = exp(-|x|)``, so it stays accurate (and
    nonzero) where ``f(x)`` has rounded to 1: ``f'(30) = 9.36e-14`` in float32,
    where ``f(x) * (1 - f(x))`` gives 0.

    Examples
    --------
    >>> import numpy as np, fastact as fa
    >>> fa.sigmoid(np.array([-2.0, 0.0, 2.0]))
    array([0.11920292, 0.5       , 0.88079708])
    >>> fa.sigmoid.derivative(np.array([0.0, 30.0], dtype=np.float32))
    array([2.500000e-01, 9.357623e-14], dtype=float32)
    """
    expneg, signbit, absolute = m.expneg, m.signbit, m.abs

    def f(x):
        # With e = exp(-|x|): e and 1, 1 + e, then e and (1 + e)^2, each
        # numerator scaled as its denominator is (see MathLib._make_exp).
        e, one, s, d_num, d_den = expneg(absolute(x))
        # f(|x|) = 1 / (1 + e), f(-|x|) = e / (1 + e): one division for
        # either sign, rounded once. f(-0.0) takes e / (1 + e) = f(0) as
        # well; a NaN gives NaN either way.
        y = (e if signbit(x) else one) / s
        # f' = e / (1 + e)^2, its own division (beside the first, not after
        # it), so the value's rounding does not reach the derivative.
        return y, d_num / d_den

    return f


@define
def tanh(m):
    """Hyperbolic tangent.

    .. math::

        f(x) = \\tanh x, \\qquad f'(x) = 1 - \\tanh^2 x
        = \\frac{4 e^{-2|x|}}{(1 + e^{-2|x|})^2}

    The derivative peaks at ``f'(0) = 1``. It is evaluated from ``x``, so it
    stays nonzero in saturation: ``f'(10) = 8.24e-9`` in float32, where
    ``1 - f(x)**2`` gives 0. No overflow for any input (the textbook
    ``(e^{2x} - 1) / (e^{2x} + 1)`` is NaN beyond ``|x| ~ 44``).

    Examples
    --------
    >>> import numpy as np, fastact as fa
    >>> fa.tanh(np.array([-1.0, 0.0, 1000.0]))
    array([-0.76159416,  0.        ,  1.        ])
    >>> y, dy = fa.tanh.fused(np.float32(10.0))
    >>> y, dy
    (np.float32(1.0), np.float32(8.244615e-09))
    """
    tanh_exp, with_sign_of, absolute = m.tanh_exp, m.with_sign_of, m.abs

    def f(x):
        # With e = exp(-2|x|): tanh|x| = (1 - e) / (1 + e), with 1 - e taken
        # from exp's reduction, not from the rounded e (no cancellation near
        # 0), and f' = 1 - tanh^2 = 4e / (1 + e)^2, taken from e and not from
        # the rounded value: no cancellation where it nears 1, so f' keeps
        # its digits in saturation. One formula for all x, no select; two
        # divisions side by side, each rounded once. Each division as a
        # reciprocal estimate (vrcp14ps), a Newton step and a correction of
        # the quotient (the same largest errors over 2.4 million sampled
        # inputs) ran slower on an AVX-512 Intel Xeon: one thread in L2,
        # 9.7-10.7 ns per 16 elements (8.5-9.1 with one of the two) against
        # 7.8-8.2; at 2^24 float32 on two cores 6.7 against 6.0 ms. The
        # divider is not the limit there.
        ax = absolute(x)
        w, s, e4, sq = tanh_exp(ax)  # 1 - e, 1 + e, 4e, (1 + e)^2, pairs scaled alike
        # The value is >= +0, so the sign of x goes on with one OR:
        # tanh(-0.0) = -0.0.
        return with_sign_of(w / s, x, ax), e4 / sq

    return f


@define
def relu(m):
    """Rectified linear unit, ``max(x, 0)``.

    .. math::

        f(x) = \\max(x, 0), \\qquad f'(x) = 1 \\text{ if } x > 0 \\text{ else } 0

    At the kink ``f'(0) = 0``, as in PyTorch; ``relu(-0.0)`` is ``-0.0`` and
    NaN gives NaN for the value and the derivative.

    Examples
    --------
    >>> import numpy as np, fastact as fa
    >>> fa.relu(np.array([-1.5, 0.0, 2.5]))
    array([0. , 0. , 2.5])
    >>> fa.relu.derivative(np.array([-1.5, 0.0, 2.5]))
    array([0., 0., 1.])
    """
    one, zero = m.one, m.zero

    def f(x):
        y = zero if x < zero else x
        d = one if x > zero else zero
        return y, (x if x != x else d)

    return f


@define(params={"negative_slope": 0.01})
def leaky_relu(m):
    """Leaky ReLU with a fixed slope for negative inputs.

    .. math::

        f(x) = x \\text{ if } x > 0 \\text{ else } a x, \\qquad
        f'(x) = 1 \\text{ if } x > 0 \\text{ else } a

    ``a`` is ``negative_slope`` (default 0.01, as in PyTorch). At the kink
    ``f'(0) = a``, as in PyTorch.

    Examples
    --------
    >>> import numpy as np, fastact as fa
    >>> fa.leaky_relu(np.array([-2.0, 0.0, 3.0]))
    array([-0.02,  0.  ,  3.  ])
    >>> fa.leaky_relu.derivative(np.array([-2.0, 0.0, 3.0]), negative_slope=0.2)
    array([0.2, 0.2, 1. ])
    """
    return _leaky(m)


def _leaky(m):
    one, zero = m.one, m.zero

    def f(x, slope):
        positive = x > zero
        d = one if positive else slope
        return (x if positive else x * slope), (x if x != x else d)

    return f


@define(cls=PReLU)
def prelu(m):
    """Parametric ReLU: a learned slope for negative inputs, per channel.

    .. math::

        f(x) = x \\text{ if } x > 0 \\text{ else } w_c x, \\qquad
        \\frac{\\partial f}{\\partial x} = 1 \\text{ if } x > 0 \\text{ else } w_c,
        \\qquad \\frac{\\partial f}{\\partial w_c} = 0 \\text{ if } x > 0
        \\text{ else } x

    ``weight`` holds 1 value (shared) or C values, C being the size of dim 1
    (dim 0 for 1-D input; PyTorch 2 takes 1-D input as a single channel and
    accepts only a 1-value weight there). At the kink
    the slope applies, as in PyTorch. ``backward`` returns
    ``(grad_x, grad_weight)``; ``grad_weight`` is summed in fixed blocks and
    a fixed order, so it does not depend on the thread count.

    Examples
    --------
    >>> import numpy as np, fastact as fa
    >>> x = np.array([[-1.0, -1.0], [2.0, -4.0]])
    >>> fa.prelu(x, np.array([0.25, 0.5]))
    array([[-0.25, -0.5 ],
           [ 2.  , -2.  ]])
    >>> gx, gw = fa.prelu.backward(np.ones_like(x), x, np.array([0.25, 0.5]))
    >>> gw
    array([-1., -5.])
    """
    return _leaky(m)


@define(cls=RReLU, params={"lower": 1.0 / 8.0, "upper": 1.0 / 3.0, "training": False, "seed": None})
def rrelu(m):
    """Randomized leaky ReLU: random slopes in training, their mean in eval.

    .. math::

        f(x) = x \\text{ if } x > 0 \\text{ else } a x, \\qquad
        f'(x) = 1 \\text{ if } x > 0 \\text{ else } a

    In training (``training=True``) each element draws its own slope
    ``a ~ U(lower, upper)`` from a counter-based generator keyed by ``seed``
    (a fresh one when ``seed`` is None), so the same seed gives the same
    slopes on any thread count; the derivative of ``fused`` is then exactly
    the slope buffer (1 where ``x > 0``) that the backward pass needs. In
    evaluation ``a = (lower + upper) / 2``: the function equals
    ``leaky_relu`` with that slope. Defaults ``lower=1/8, upper=1/3`` as in
    PyTorch.

    Examples
    --------
    >>> import numpy as np, fastact as fa
    >>> fa.rrelu(np.array([-1.0, 2.0]), lower=0.1, upper=0.3)
    array([-0.2,  2. ])
    >>> y, slope = fa.rrelu.fused(-np.ones(3), training=True, seed=7)
    >>> bool(np.all((slope >= 1 / 8) & (slope <= 1 / 3))), bool(np.all(y == -slope))
    (True, True)
    """
    return _leaky(m)


# A read-only view of the registry: removing or replacing an entry would
# break lookups by name (unpickling an activation, the commands' names).
ACTIVATIONS: Mapping[str, Activation] = MappingProxyType(REGISTRY)

# Activation objects are instances, which doctest's finder does not visit.
__test__ = {name: act.__doc__ for name, act in ACTIVATIONS.items()}
