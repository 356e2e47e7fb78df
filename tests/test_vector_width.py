"""The 512-bit build of the flat loops (fastact._cpu.wide_vectors).

It changes the instructions, not the arithmetic: its results must be the
bits of the default build, and it is chosen by the CPU unless set.
"""

import numpy as np
import pytest

import fastact as fa
from fastact import _cpu
from fastact._config import WIDE_VECTOR_CPUS


def test_wide_vectors_follow_the_cpu(monkeypatch):
    monkeypatch.setattr(_cpu, "WIDE_VECTORS", None)
    for cpu in WIDE_VECTOR_CPUS:
        monkeypatch.setattr(_cpu, "_host_cpu", cpu)
        assert _cpu.wide_vectors()
    monkeypatch.setattr(_cpu, "_host_cpu", "znver4")  # 512-bit loops by LLVM's own choice
    assert not _cpu.wide_vectors()
    monkeypatch.setattr(_cpu, "WIDE_VECTORS", True)
    assert _cpu.wide_vectors()
    monkeypatch.setattr(_cpu, "WIDE_VECTORS", False)
    monkeypatch.setattr(_cpu, "_host_cpu", next(iter(WIDE_VECTOR_CPUS)))
    assert not _cpu.wide_vectors()


def inputs(dtype):
    info = np.finfo(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, info.tiny, -info.tiny, info.max, -info.max, 1e-30, 88.5]
    # An odd length: the vector loops' remainders run too.
    return np.concatenate([np.linspace(-60, 60, 200_003), special]).astype(dtype)


@pytest.mark.parametrize(
    "name, dtype, kw",
    [
        ("sigmoid", np.float32, {}),
        ("tanh", np.float32, {}),
        ("sigmoid", np.float64, {}),
        ("tanh", np.float64, {}),
        ("leaky_relu", np.float32, {}),
        ("rrelu", np.float32, dict(training=True, seed=3)),
    ],
)
def test_wide_build_gives_the_same_bits(monkeypatch, name, dtype, kw):
    act = fa.ACTIVATIONS[name]
    x = inputs(dtype)
    g = np.linspace(-2, 2, x.size).astype(dtype)
    results = {}
    for wide in (False, True):
        monkeypatch.setattr(_cpu, "WIDE_VECTORS", wide)
        results[wide] = (*act.fused(x, **kw), act.backward(g, x, **kw))
        key = (name, np.dtype(dtype), "fused", "random" if kw else "elementwise", True, None, wide)
        assert key in _cpu._kernels
    for a, b in zip(results[False], results[True], strict=True):
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))
