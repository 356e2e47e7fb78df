"""Compilation settings shared by every kernel, kept in one place."""

import platform

# The CPU, read once: x86-64 gets the streaming stores (where their gain was
# measured) and orders them with ``sfence``; other CPUs with a full fence.
X86_64 = platform.machine().lower() in ("x86_64", "amd64")

# LLVM fast-math flags for every kernel. Only FMA contraction: it makes the
# polynomials both faster and more accurate. The blanket ``fastmath=True`` set
# would add ``nnan``/``ninf``/``nsz``, which let LLVM drop NaN propagation and
# the sign of -0.0, and ``arcp``/``afn`` would loosen the 4-ULP contract.
FASTMATH = frozenset({"contract"})

# Reductions (PReLU's grad_weight): strict IEEE arithmetic, no fast-math flag
# at all. Their summation order is written out in the source (fixed blocks,
# eight interleaved sums); ``reassoc`` would let LLVM pick another order, and
# ``contract`` fuse some products into FMAs, differently in the serial and
# the parallel build (measured: the two gave different bits).
FASTMATH_REDUCTION = frozenset()

# NumPy's error model: no Python-style ZeroDivisionError checks in the loops.
ERROR_MODEL = "numpy"

# Below this many elements a call runs the single-threaded kernel: waking the
# thread pool costs about 5-10 us here, more than the work it would share.
PARALLEL_MIN_SIZE = 1 << 15

# Fixed block length of the deterministic reductions, and the number of
# interleaved running sums in a block (written out, so that they vectorize).
REDUCTION_BLOCK = 1 << 12
REDUCTION_LANES = 16

# Streaming (non-temporal) stores for outputs that do not fit in the caches:
# the most that the threshold (bytes of inputs and outputs together per call,
# otherwise the last-level cache's size) may be, the bytes of outputs that a
# block of the blocks loops computes (all its outputs together: 512 per
# output for ``fused``, 1 KiB for the one-output modes; the direct loops,
# which have no buffer, share out whole blocks of it per output), and the
# chunks of blocks per thread (for balance between threads).
# The cap: a server's last-level cache is shared with every other core and
# tenant. On a 2-core VM whose sysfs showed a 480 MiB L3, the plain roofline
# kernel (fused float32, both cores) ran at 21-24 GB/s from 6 MiB moved per
# call upward, like main memory, and the streaming one overtook it between
# 12 and 24 MiB (1.06x at 24, 1.5x from 96).
# The block, on that VM (2^24 float32, medians of 32-40 calls, one process
# per setting, alternating rounds). Before the inputs were prefetched (see
# below), 256 or 512 bytes per output ran fused tanh 3-12% faster than 1
# KiB per output or from 2% slower, and sigmoid, ReLU and the streaming
# roofline no faster, while 128, 192, 320 and 384 bytes (tanh up to 10.4
# ms against 5.6-6.1) and 2 or 4 KiB were slower. With the
# prefetch, on both cores, fused tanh took 5.15, 5.05 and 5.29 ms with 512
# bytes per output against 5.90, 5.96 and 6.45 with 1 KiB (256 bytes: 4.71,
# 4.80, 5.59), sigmoid 4.55, 4.51 and 4.79 against 5.49, 5.27 and 5.72,
# ReLU and the streaming roofline 3.9-4.5 ms with any of the three. But with
# one output per block, 512 bytes did not pay: on one thread tanh and
# sigmoid forward and tanh's derivative took 11.3-12.1 ms against 7.7-9.3
# with 1 KiB (fused: 10.9-11.9 against 11.7-12.4), and on both cores 256
# bytes took ReLU backward 5.3 ms against 4.4-4.7. So a block holds 1 KiB
# of outputs, whatever their number. Chunks: 2 or 32 per thread instead of
# 8 were no faster (tanh 5.7-6.4 and 5.8-6.2 ms against 5.9-6.1).
STREAM_MIN_BYTES_MAX = 32 << 20
STREAM_BLOCK_BYTES = 1 << 10
STREAM_CHUNKS_PER_THREAD = 8
# Each block of the streaming loops first prefetches (into L2) the lines of
# its inputs this far ahead, in the parallel build on the CPUs (LLVM's
# names) in STREAM_PREFETCH_CPUS. On the Intel VM above (2^24 float32, the
# blocks kernels with and without it alternating in one process, medians
# of 96 calls), on both cores: tanh fused 6.06 -> 5.42 and 6.15 -> 5.51 ms
# in two runs (6.13 -> 5.39 in a third, backward 5.48 -> 5.06), sigmoid
# 6.05 -> 5.26 and 5.97 -> 5.30, ReLU 5.13 -> 4.12 and 5.25 -> 4.35, Leaky
# ReLU 4.76 -> 4.10 and 5.23 -> 4.27; 8 and 32 KiB ahead did as well
# within 0.1 ms. In three later runs of the same kind, which also timed
# PyTorch's out= pair, tanh took 0.89x, 1.00x and 0.97x as long with it,
# sigmoid 0.92x, 0.96x and 0.97x, ReLU and Leaky ReLU 0.76-0.83x. On one
# core it did not pay: tanh and sigmoid backward took 1.07-1.19x as long,
# fused 1.01-1.06x (ReLU backward 0.85-0.87x), so the serial build goes
# without.
STREAM_PREFETCH_BYTES = 16 << 10
STREAM_PREFETCH_CPUS = frozenset({"rocketlake"})

# CPUs (LLVM's names for them) where the streaming loops store straight
# from the compute loop rather than through block buffers: measured faster
# there (see fastact._cpu._direct_loop). On a Zen 3 the direct stores of
# two outputs at one offset within a page ran 2.7x slower than the blocks.
# On the Intel VM above (LLVM's "rocketlake", AVX-512 with 8-wide loops),
# fused at 2^24 float32 on both cores, direct against blocks: tanh 13.3
# against 8.2 ms, sigmoid 8.5 against 7.9, ReLU 5.0 against 5.6 (medians of
# 15 alternating rounds).
STREAM_DIRECT_CPUS = frozenset({"znver4"})

# CPUs (LLVM's names) whose flat loops are built with 512-bit vectors where
# LLVM's tuning for them prefers 256 (fastact._intrinsics.prefer_wide_vectors).
# On the Intel VM above, fused at 2^24 float32 on both cores (blocks, eight
# back-to-back calls in each of three alternating rounds, medians): tanh
# 8.66 -> 7.20 ms, sigmoid 8.49 -> 7.03, ReLU 5.10 -> 5.27; in an earlier
# run 8.00 -> 6.86, 8.05 -> 6.71 and 5.80 -> 6.15. One thread with the
# arrays in L2 it made no difference (tanh 7.0 ns per 16 elements either way).
WIDE_VECTOR_CPUS = frozenset({"rocketlake"})

# CUDA kernels: no fast-math at all. libdevice's accurate functions keep the
# 4-ULP contract; numba's CUDA fastmath would swap in approximate ones.
CUDA_FASTMATH = False
