"""The references themselves, checked against mpmath at 60 digits."""

import mpmath
import numpy as np
import pytest
from reference import HAS_LONGDOUBLE, reference, ulp_error
from tolerances import SMOOTH

mpmath.mp.dps = 60

EXACT = {
    "sigmoid": (lambda x: 1 / (1 + mpmath.exp(-x)), lambda x: mpmath.exp(-x) / (1 + mpmath.exp(-x)) ** 2),
    "tanh": (mpmath.tanh, lambda x: mpmath.sech(x) ** 2),
}
POINTS = [
    -700.0,
    -80.0,
    -30.0,
    -10.0,
    -2.5,
    -0.7,
    -0.3,
    -1e-5,
    1e-300,
    1e-8,
    0.1,
    0.625,
    1.0,
    3.0,
    17.0,
    40.0,
]


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_agrees_with_mpmath(name, dtype):
    if dtype == np.float64 and not HAS_LONGDOUBLE:
        pytest.skip("np.longdouble is not wider than float64 on this platform")
    x = np.array(POINTS, dtype)
    y, d = reference(name, x, dtype)
    f, df = EXACT[name]
    # The reference must be far more accurate than the contract it checks.
    for got, exact_fn in ((y, f), (d, df)):
        exact = np.array([float(exact_fn(mpmath.mpf(float(v)))) for v in x], np.longdouble)
        if dtype == np.float64:
            exact = np.array([mpmath.nstr(exact_fn(mpmath.mpf(float(v))), 30) for v in x], np.longdouble)
        err, _ = ulp_error(got, exact, dtype)
        assert err.max() < 0.01, (name, dtype, err.max())
