"""Per-dtype tolerances and test axes, in one place."""

import numpy as np

# Largest error allowed, in ULPs of the exact result, wherever that result is
# a normal number (the numerics contract). The ReLU family must be exact.
ULP_TOLERANCE = {np.dtype(np.float32): 4.0, np.dtype(np.float64): 4.0}

SMOOTH = ("sigmoid", "tanh")
ELEMENTWISE = ("sigmoid", "tanh", "relu", "leaky_relu")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
MODES = ("forward", "derivative", "fused", "backward")

# PReLU's grad_weight is a sum: relative to the float64 sum, with an absolute
# allowance of this times sum(|grad_out * x|) for sums that cancel.
GRAD_WEIGHT_RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
