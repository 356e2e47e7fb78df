"""The ``fastact`` command: bench, demo, accuracy, plot, vanishing and train."""

from __future__ import annotations

import argparse
import sys


def demo(argv=None) -> int:
    """Show values, saturated derivatives against the textbook formulas, and speed.

    Speed figures are time ratios measured in one run (above 1: fastact is
    faster), each activation's providers and the roofline timed in alternating
    rounds (:func:`fastact.bench.time_calls`).
    """
    from fastact._cli import positive_int

    parser = argparse.ArgumentParser(prog="fastact demo", description=demo.__doc__)
    parser.add_argument(
        "--size", type=positive_int, default=1 << 24, help="elements for the timing (default 2^24)"
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=9, help="timed rounds per kernel (median reported)"
    )
    args = parser.parse_args(argv)

    from fastact.bench import _available, quiet_openmp, time_calls

    quiet_openmp()  # before torch loads: its OpenMP threads would spin into the next timing
    import numba
    import numpy as np

    import fastact as fa
    from fastact import baselines

    x = np.array([-30.0, -2.0, 0.0, 2.0, 10.0, 30.0], np.float32)
    print("x (float32):", x)
    for name in ("sigmoid", "tanh", "relu", "leaky_relu"):
        y, d = fa.ACTIVATIONS[name].fused(x)
        print(f"  {name:<10} f  = {np.array2string(y, precision=6)}")
        print(f"  {'':<10} f' = {np.array2string(d, precision=6)}")
    print("\nDerivatives in saturation, float32 (fastact computes them from x):")
    for name, at in (("sigmoid", 30.0), ("tanh", 10.0)):
        xs = np.array([at], np.float32)
        textbook = baselines.numpy_mode(name, "derivative")(xs)[0]
        ours = fa.ACTIVATIONS[name].derivative(xs)[0]
        print(f"  {name}'({at:g}) = {ours:.6g}   textbook formula: {textbook:g}")

    threads = numba.config.NUMBA_NUM_THREADS
    print(
        f"\nfused f and f', {args.size:,} float32 elements, {threads} threads "
        f"(threading layer {fa.threading_layer()}), median of {args.rounds} alternating rounds:"
    )
    xb = np.random.default_rng(0).uniform(-8, 8, args.size).astype(np.float32)
    gb = baselines.bytes_moved("fused", args.size, xb.itemsize) / 1e9
    providers = ["fastact", "roofline", "numpy"]
    if _available("torch-out"):
        import torch

        torch.set_num_threads(threads)
        providers.append("torch-out")
    for name in ("sigmoid", "tanh", "relu", "leaky_relu"):
        runs = {p: baselines.prepare(p, name, "fused", xb) for p in providers}
        t = {k: v["median"] * 1e3 for k, v in time_calls(runs, args.rounds, 0.02).items()}
        ms, roof = t["fastact"], t["roofline"]
        line = f"  fastact {name:<11} {ms:7.2f} ms {gb / ms * 1e3:5.1f} GB/s"
        line += f"  {ms / roof:4.2f}x roofline ({roof:.2f} ms)  numpy/fastact {t['numpy'] / ms:5.1f}x"
        if "torch-out" in t:
            line += f"  torch out= pair/fastact {t['torch-out'] / ms:4.1f}x"
        print(line)
    return 0


# Subcommands implemented in their own modules, imported when chosen.
COMMANDS = {
    "bench": ("fastact.bench", "cost report: activations vs ReLU, NumPy, PyTorch and the roofline"),
    "demo": (None, "values, saturated derivatives and a speed comparison"),
    "accuracy": ("fastact.accuracy", "exhaustive float32 accuracy check (all 2^32 inputs)"),
    "plot": ("fastact.figure", "the activations and their derivatives (PNG and SVG)"),
    "vanishing": ("fastact.vanishing", "gradient norm per layer of a deep MLP, per activation"),
    "train": ("fastact.train", "training speed of an MLP per activation (digits, spiral)"),
}


def main(argv=None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    asked_help = bool(argv) and argv[0] in ("-h", "--help")
    if not argv or asked_help or argv[0] not in COMMANDS:
        usage = "usage: fastact {" + ",".join(COMMANDS) + "} [options]\n\n"
        usage += "\n".join(f"  {name:<10}{text}" for name, (_, text) in COMMANDS.items())
        if argv and not asked_help:
            usage = f"fastact: unknown command {argv[0]!r}\n" + usage
        print(usage, file=sys.stdout if asked_help else sys.stderr)
        return 0 if asked_help else 2
    module, _ = COMMANDS[argv[0]]
    if module is None:
        return demo(argv[1:])
    return importlib.import_module(module).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
