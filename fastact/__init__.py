"""fastact: fused activation functions and their derivatives, one pass over memory.

>>> import numpy as np, fastact as fa
>>> y, dy = fa.sigmoid.fused(np.array([0.0, 2.0]))
>>> y, dy
(array([0.5       , 0.88079708]), array([0.25      , 0.10499359]))

Kernels compile on first use (Numba), per activation, dtype and mode, and are
cached on disk; ``import fastact`` compiles nothing and does not import Numba.
"""

from fastact._activation import Activation
from fastact._runtime import threading_layer
from fastact.activations import ACTIVATIONS, leaky_relu, prelu, relu, rrelu, sigmoid, tanh

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "leaky_relu",
    "prelu",
    "relu",
    "rrelu",
    "sigmoid",
    "tanh",
    "threading_layer",
]
