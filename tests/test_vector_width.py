"""The 512-bit build of the flat loops (fastact._cpu.wide_vectors).

It changes the instructions, not the arithmetic: its results must be the
bits of the default build. It is chosen by the CPU unless set, as the
direct streaming stores are.
"""

import numpy as np
import pytest

import fastact as fa
from fastact import _cpu
from fastact._config import STREAM_DIRECT_CPUS, STREAM_PREFETCH_CPUS, WIDE_VECTOR_CPUS


@pytest.mark.parametrize(
    "setting, choice, cpus, other_cpu",
    [
        # Direct streaming stores; a Zen 3 was measured slower with them.
        ("STREAM_DIRECT", _cpu.direct_stores, STREAM_DIRECT_CPUS, "znver3"),
        # 512-bit loops; a Zen 4 gets them from LLVM's own choice.
        ("WIDE_VECTORS", _cpu.wide_vectors, WIDE_VECTOR_CPUS, "znver4"),
        # Prefetching the streaming loops' inputs: measured on one CPU only.
        ("STREAM_PREFETCH", _cpu.stream_prefetch, STREAM_PREFETCH_CPUS, "znver4"),
    ],
)
def test_cpu_choices_follow_the_cpu_unless_set(monkeypatch, setting, choice, cpus, other_cpu):
    monkeypatch.setattr(_cpu, setting, None)
    for cpu in cpus:
        monkeypatch.setattr(_cpu, "_host_cpu", cpu)
        assert choice()
    monkeypatch.setattr(_cpu, "_host_cpu", other_cpu)
    assert not choice()
    # The setting overrides the CPU either way.
    monkeypatch.setattr(_cpu, setting, True)
    assert choice()
    monkeypatch.setattr(_cpu, setting, False)
    monkeypatch.setattr(_cpu, "_host_cpu", next(iter(cpus)))
    assert not choice()


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
        key = (name, np.dtype(dtype), "fused", "random" if kw else "elementwise", True, None, wide, False)
        assert key in _cpu._kernels
    for a, b in zip(results[False], results[True], strict=True):
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))
