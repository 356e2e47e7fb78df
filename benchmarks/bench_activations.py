"""Every activation x mode x size x dtype, providers side by side.

``pytest --benchmark-only`` times the groups; plain ``pytest`` runs each case
once, untimed, as a smoke test. A group is one activation, mode, size and
dtype; its providers are fastact on all threads and on one, the NumPy
formulas, PyTorch eager (allocating), PyTorch with ``out=`` and its own
backward ops, JAX when installed, and two roofline kernels that move the same
bytes with trivial arithmetic: with ordinary stores, and with the
non-temporal stores that fastact uses for outputs larger than the caches.
Providers come from ``fastact.baselines``, the table the tests check; every
result is checked before it is timed.

Each group's roofline row is timed at another moment than the providers
beside it, and on a shared machine the memory speed drifts between the two
(by 20% between the groups of one run here). So the timed ``fastact`` case
also times itself and the roofline in alternating rounds
(:func:`fastact.bench.time_calls`, as the cost report does) and records
``x_roofline``, the ratio of the two medians, in ``extra_info`` (and
``x_roofline_stream`` against the streaming roofline, timed in the same rounds);
``benchmarks/table.py`` reports that ratio.

Untimed smoke runs cap the arrays at 2^18 elements (still above the size
where fastact switches to its parallel kernels), so that plain ``pytest``
stays fast; timed runs use the sizes named.
"""

import importlib.util

import numpy as np
import pytest

from fastact import baselines
from fastact.bench import time_calls

SIZES = (1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 24)
SMOKE_MAX = 1 << 18
# fastact against the roofline in alternating rounds, each about this long.
PAIRED_ROUNDS, PAIRED_TARGET = 25, 0.02
CASES = [(size, np.dtype(np.float32)) for size in SIZES] + [(1 << 24, np.dtype(np.float64))]
PROVIDERS = [p for p in baselines.PROVIDERS if p != "jax" or importlib.util.find_spec("jax")]

_DATA = {}


def data(size, dtype):
    """Inputs shared by all benchmarks of one size and dtype (made once)."""
    key = (size, dtype)
    if key not in _DATA:
        _DATA.clear()  # keep one size in memory at a time
        rng = np.random.default_rng(size)
        _DATA[key] = (rng.uniform(-8, 8, size).astype(dtype), rng.standard_normal(size).astype(dtype))
    return _DATA[key]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "size, dtype", CASES, ids=lambda v: f"2^{v.bit_length() - 1}" if isinstance(v, int) else str(v)
)
@pytest.mark.parametrize("mode", baselines.MODES)
@pytest.mark.parametrize("name", baselines.NAMES)
def bench_activation(benchmark, name, mode, size, dtype, provider):
    if benchmark.disabled:
        size = min(size, SMOKE_MAX)
    x, g = data(size, dtype)
    run = baselines.prepare(provider, name, mode, x, g)
    baselines.check(provider, name, mode, run(), x, g)
    nbytes = baselines.bytes_moved(mode, size, dtype.itemsize)
    benchmark.group = f"{name} {mode} {dtype.name} 2^{size.bit_length() - 1}"
    benchmark.extra_info.update(
        activation=name, mode=mode, size=size, dtype=dtype.name, provider=provider, bytes=nbytes
    )
    benchmark(run)
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["GB/s"] = nbytes / stats.stats.median / 1e9
        if provider == "fastact":
            rooflines = {r: baselines.prepare(r, name, mode, x, g) for r in ("roofline", "roofline-stream")}
            paired = time_calls({"fastact": run, **rooflines}, PAIRED_ROUNDS, PAIRED_TARGET)
            mine, roof = paired["fastact"]["median"], paired["roofline"]["median"]
            stream = paired["roofline-stream"]["median"]
            benchmark.extra_info.update(
                paired_median=mine,
                roofline_paired_median=roof,
                x_roofline=mine / roof,
                roofline_stream_paired_median=stream,
                x_roofline_stream=mine / stream,
            )
