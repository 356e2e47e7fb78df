"""fused (f and f' in one pass) at 2^24 float32 elements, against the baselines.

Run ``pytest benchmarks --benchmark-only`` to time; plain ``pytest`` runs each
case once as a smoke test. Every provider's result is checked against
fastact's (itself checked against high-precision references in the tests)
before it is timed. Outputs are preallocated wherever the library allows.
"""

import numba
import numpy as np
import pytest

import fastact as fa
from fastact import baselines

SIZE = 1 << 24
ACTS = ("sigmoid", "tanh", "relu", "leaky_relu")
PROVIDERS = ("fastact", "fastact-1thread", "roofline", "numpy", "torch", "torch-out")
BYTES = 3 * 4 * SIZE  # read x, write y and dy


@pytest.fixture(scope="module")
def data():
    x = np.random.default_rng(0).uniform(-8, 8, SIZE).astype(np.float32)
    return x, np.empty_like(x), np.empty_like(x)


def close(got, want):
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=3e-6, atol=3e-7)


def make(provider, name, x, y, d):
    act = fa.ACTIVATIONS[name]
    if provider == "fastact":
        return lambda: act.fused(x, out=(y, d))
    if provider == "fastact-1thread":

        def single():
            numba.set_num_threads(1)
            try:
                return act.fused(x, out=(y, d))
            finally:
                numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

        return single
    if provider == "roofline":
        return lambda: baselines.roofline(x, y, d)
    if provider == "numpy":
        fn = baselines.numpy_mode(name, "fused")
        return lambda: fn(x)
    torch = pytest.importorskip("torch")
    tx = torch.from_numpy(x)
    if provider == "torch":
        fn = baselines.torch_mode(name, "fused")
        return lambda: fn(tx)
    fn = baselines.torch_out_mode(name, "fused")
    bufs = (torch.ones_like(tx), torch.ones_like(tx), torch.from_numpy(y), torch.from_numpy(d))
    return lambda: fn(tx, *bufs)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("name", ACTS)
def bench_fused(benchmark, data, name, provider):
    x, y, d = data
    run = make(provider, name, x, y, d)
    result = run()
    if provider == "roofline":
        close(result, (-x, x + 1))
    else:
        close(result, fa.ACTIVATIONS[name].fused(x))
    benchmark.group = f"fused {name} float32 2^24"
    benchmark.extra_info.update(bytes=BYTES, provider=provider, activation=name, elements=SIZE)
    benchmark.pedantic(run, rounds=15, warmup_rounds=2, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["GB/s"] = BYTES / stats.stats.median / 1e9
