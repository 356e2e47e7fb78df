"""Compile every float32 kernel afresh and report on its assembly (run as a script).

Prints one JSON line per kernel: which function holds the loop, how many
packed single-precision instructions on ymm/zmm registers it has (and on
zmm alone), and how many float32 <-> float64 conversions. Kernels are compiled without the disk
cache: Numba cannot show the assembly of a kernel loaded from it.
"""

import json
import re
import sys

import numpy as np

import fastact as fa
from fastact import _cpu

PACKED = re.compile(r"^\s*v\w+ps\s+.*%[yz]mm", re.M)
PACKED_512 = re.compile(r"^\s*v\w+ps\s+.*%zmm", re.M)
CONVERT = re.compile(r"\b(v?cvtss2sd|v?cvtps2pd|v?cvtsd2ss|v?cvtpd2ps)\b")
FUNCTION = re.compile(r"^\s*\.type\s+(\S+),@function", re.M)
LABEL = re.compile(r"^(\.LBB\w+):", re.M)
# Packed non-temporal stores of a whole vector register: the float forms, or
# the integer one where the last operation on the value was a bitwise one
# (tanh's sign).
NONTEMPORAL = re.compile(r"^\s*vmovnt(?:ps|pd|dq)\s+%[yz]mm", re.M)
# A software prefetch into L2 (fastact._intrinsics.prefetch).
PREFETCH = re.compile(r"^\s*prefetcht1\s", re.M)
# A constant-pool address built inside a loop (Numba's JIT uses the large code
# model): the constant is re-loaded on every iteration instead of staying in
# a register (see fastact._intrinsics).
POOL_LOAD = re.compile(r"^\s*movabsq\s+\$\.LCPI", re.M)
# A broadcast load from an address held in a register. In a kernel without
# parameters (sigmoid, tanh) that is a constant-pool entry whose address was
# hoisted out of the loop but whose value was not (integer masks, unless
# pinned with fastact._intrinsics.pin_bits); elsewhere it may be a parameter.
BARE_BROADCAST = re.compile(r"^\s*vp?broadcast\w*\s+\(%r(?!sp\))\w+\)", re.M)


def functions(asm):
    """name -> body of each function in a Numba assembly listing."""
    names = FUNCTION.findall(asm)
    bodies = {}
    for name in names:
        start = asm.find(f"\n{name}:")
        end = asm.find(".Lfunc_end", start)
        bodies[name] = asm[start:end]
    return bodies


def vector_loops(body):
    """Blocks of a function that jump back to themselves and hold packed ymm/zmm code.

    Each is cut at its last jump back to itself: the instructions after that
    jump (the loop's exit) run once.
    """
    starts = [(m.start(), m.group(1)) for m in LABEL.finditer(body)]
    blocks = []
    for k, (start, label) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(body)
        block = body[start:end]
        back = list(re.finditer(rf"^\s*j\w+\s+{re.escape(label)}\s*$", block, re.M))
        if back:
            # The loop ends at its last jump back; what follows is its exit.
            block = block[: back[-1].end()]
            if PACKED.search(block):
                blocks.append(block)
    return blocks


def on_a_line(n):
    """An empty float32 array of n elements that starts on a 64-byte line."""
    raw = np.empty(4 * n + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + 4 * n].view(np.float32)


def exercise(size):
    x = np.linspace(-5, 5, size).astype(np.float32)
    w1 = np.array([0.25], np.float32)
    w = np.linspace(0.1, 0.4, 16).astype(np.float32)
    for name, act in fa.ACTIVATIONS.items():
        if name == "prelu":
            # One shared weight; (N, C): weights along the contiguous axis;
            # (N, C, K): one weight per row of K (backward: the rows loop
            # from K = 16 on, short rows along the contiguous axis).
            layouts = (
                (x, w1),
                (x.reshape(-1, 16), w),
                (x.reshape(-1, 16, 4), w),
                (x.reshape(-1, 2, 16), w[:2]),
            )
            for arr, weight in layouts:
                act(arr, weight)
                act.derivative(arr, weight)
                act.fused(arr, weight)
                act.backward(arr, arr, weight)
        elif name == "rrelu":
            for training in (False, True):
                kw = dict(training=training, seed=1)
                act(x, **kw)
                act.derivative(x, **kw)
                act.fused(x, **kw)
                act.backward(x, x, **kw)
        else:
            act(x)
            act.derivative(x)
            act.fused(x)
            act.backward(x, x)


def main():
    _cpu.CACHE = False
    exercise(1 << 16)  # parallel kernels
    exercise(64)  # single-threaded kernels
    # Streaming kernels (non-temporal stores), forced on, in both layouts
    # (blocks, and direct stores into outputs that start on a 64-byte
    # line): fused for the four elementwise activations, every mode of tanh.
    # The blocks prefetch their inputs (in the parallel build) whatever the CPU.
    _cpu.STREAMING, _cpu.STREAM_MIN_BYTES, _cpu.STREAM_PREFETCH = True, 0, True
    n = 1 << 16
    x = np.linspace(-5, 5, n).astype(np.float32)
    for direct in (False, True):
        _cpu.STREAM_DIRECT = direct
        for name in ("sigmoid", "tanh", "relu", "leaky_relu"):
            fa.ACTIVATIONS[name].fused(x, out=(on_a_line(n), on_a_line(n)))
        fa.tanh(x, out=on_a_line(n))
        fa.tanh.derivative(x, out=on_a_line(n))
        fa.tanh.backward(x, x, out=on_a_line(n))
    # The fused sigmoid and tanh also in the vector width this CPU does not
    # get by default (fastact._cpu.wide_vectors).
    _cpu.STREAMING = False
    _cpu.WIDE_VECTORS = not _cpu.wide_vectors()
    fa.sigmoid.fused(x)
    fa.tanh.fused(x)
    for (name, _dtype, mode, loop, parallel, stream, wide, prefetch), kernel in _cpu._kernels.items():
        for asm in kernel.inspect_asm().values():
            bodies = functions(asm)
            # A parallel kernel's loop is outlined into a "parfor gufunc"
            # (sometimes inlined into its ``__gufunc__`` wrapper).
            if parallel:
                loops = [b for n, b in bodies.items() if "numba_parfor_gufunc" in n]
            else:
                loops = [b for n, b in bodies.items() if n.startswith("_ZN7fastact4_cpu")]
            own = [b for n, b in bodies.items() if not n.startswith(("_ZN7cpython", "cfunc.", "NRT_"))]
            print(
                json.dumps(
                    {
                        "kernel": f"{name}/{mode}/{loop}/{'parallel' if parallel else 'serial'}"
                        + {None: "", "blocks": "/stream", "direct": "/direct"}[stream],
                        "wide": wide,
                        "prefetch": prefetch,
                        "prefetches": sum(len(PREFETCH.findall(b)) for b in loops),
                        "loop_functions": len(loops),
                        "packed": sum(len(PACKED.findall(b)) for b in loops),
                        "packed_512": sum(len(PACKED_512.findall(b)) for b in loops),
                        "conversions": sum(len(CONVERT.findall(b)) for b in own),
                        "nontemporal": sum(len(NONTEMPORAL.findall(b)) for b in loops),
                        "pool_loads_in_loop": sum(
                            len(POOL_LOAD.findall(block)) + len(BARE_BROADCAST.findall(block))
                            for b in loops
                            for block in vector_loops(b)
                        ),
                    }
                )
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
