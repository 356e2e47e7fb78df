"""``fastact bench``: how much cheaper is ReLU, on this machine?

A calibrated sweep over activations, modes, sizes and providers (the same
providers as the pytest-benchmark suite, from :mod:`fastact.baselines`), in
the two regimes that decide the question:

* compute-bound: 2^18 float32 elements (the arrays stay in cache), one thread;
* memory-bound: 2^24 float32 elements, all cores.

It writes ``results.json`` (everything needed to compare two runs),
``report.md`` and PNG plots to ``--output``, and prints a summary. Every
provider's result is checked before it is timed; compile times are measured
apart, in fresh processes (cold: empty disk cache; warm: loaded from it).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fastact import baselines
from fastact._cli import add_names_option, chosen, output_dir, positive_int, read_json
from fastact._config import STREAM_MIN_BYTES_MAX

# 2^18 float32 (three arrays, 3 MB) stays in this machine's L3 cache, and the
# 3-10 us of Python per call is at most 0.04 ns per element there; at 2^14 it was a
# third of ReLU's time, which would blur the comparison of the arithmetic.
COMPUTE_SIZE = 1 << 18
MEMORY_SIZE = 1 << 24
FULL_SIZES = (1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 24)


def size_label(n: int) -> str:
    """``2^k`` for a power of two, else the number itself (``100,000``)."""
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else f"{n:,}"


# -- machine ---------------------------------------------------------------------
def machine_info() -> dict:
    import numba

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128 if "sse2" in flags else None
    from fastact import threading_layer

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "threads": numba.get_num_threads(),
        "threading_layer": threading_layer(),
        "simd_bits": simd,
        "float32_lanes": simd // 32 if simd else None,
        "platform": platform.platform(),
    }


def quiet_openmp() -> str:
    """Make OpenMP worker threads sleep as soon as a parallel region ends; return the policy in effect.

    PyTorch's CPU ops run on GNU OpenMP, whose workers by default spin for a
    while after each parallel op before they sleep. On a machine with as many
    threads as cores that spinning takes the cores from whatever runs next:
    measured here with ``fastact demo``, fastact's ReLU came out at 1.37-1.38x
    the roofline's time under OpenMP's default policy and at 0.95-1.09x with
    ``OMP_WAIT_POLICY=PASSIVE``, which this sets unless the environment
    already chose a policy. OpenMP reads it when PyTorch loads, so a PyTorch
    imported earlier keeps its own.
    """
    if "torch" in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
        return "default (torch was imported before it could be set)"
    return os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def versions() -> dict:
    import numba

    import fastact

    out = {"python": platform.python_version(), "fastact": fastact.__version__, "numpy": np.__version__}
    out["numba"] = numba.__version__
    for name in ("torch", "jax", "matplotlib"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


# -- timing ------------------------------------------------------------------------
def time_calls(runs: dict, rounds: int, target: float) -> dict:
    """Median and min seconds per call of each callable in ``runs``, interleaved.

    Each callable gets a ``number`` of calls per round, calibrated so that
    its round lasts about ``target`` seconds; every round then times each
    callable once, the order rotating from round to round. The providers of
    one case are thus measured over the same stretch of time, so their ratios
    (to the roofline above all) do not pick up the drift of a shared
    machine's memory and CPU speed between one provider's rounds and the
    next's, which timing them one after the other did (measured here: the
    roofline itself moved by 20% between the groups of one pytest-benchmark
    run).
    """
    numbers = {}
    for key, fn in runs.items():
        t0 = time.perf_counter()
        fn()
        single = max(time.perf_counter() - t0, 1e-7)
        numbers[key] = max(1, min(100_000, int(target / single)))
    samples = {key: [] for key in runs}
    order = list(runs)
    for r in range(rounds):
        k = r % len(order)
        for key in order[k:] + order[:k]:
            fn, number = runs[key], numbers[key]
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples[key].append((time.perf_counter() - t0) / number)
    stats = {}
    for key, v in samples.items():
        v.sort()
        stats[key] = {"median": v[len(v) // 2], "min": v[0], "rounds": rounds, "number": numbers[key]}
    return stats


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled and total > 0
        self.start = time.perf_counter()

    def step(self, label: str):
        self.done += 1
        if not self.enabled:
            return
        frac = self.done / self.total
        bar = "#" * int(30 * frac)
        elapsed = time.perf_counter() - self.start
        sys.stderr.write(f"\r[{bar:<30}] {frac:6.1%} {elapsed:6.0f}s  {label[:48]:<48}")
        sys.stderr.flush()
        if self.done == self.total:
            sys.stderr.write("\n")


def plan(quick: bool, names, modes, compute_size, memory_size):
    """(name, mode, size, dtype, provider) cases of the sweep."""
    providers = [p for p in baselines.PROVIDERS if _available(p)]
    if quick:
        providers = [p for p in providers if p not in ("torch", "jax")]
    sizes = sorted({compute_size, memory_size} | (set() if quick else set(FULL_SIZES)))
    cases = []
    for name in names:
        for mode in modes:
            shapes = [(s, "float32") for s in sizes] + ([] if quick else [(memory_size, "float64")])
            for size, dtype in shapes:
                cases += [(name, mode, size, dtype, provider) for provider in providers]
    return cases


def _available(provider: str) -> bool:
    import importlib.util

    lib = {"torch": "torch", "torch-out": "torch", "jax": "jax"}.get(provider)
    return lib is None or importlib.util.find_spec(lib) is not None


def sweep(cases, rounds: int, target: float, progress: bool = True) -> list:
    """Time every case; the providers of one (activation, mode, size, dtype) interleaved."""
    groups: dict = {}
    for name, mode, size, dtype, provider in cases:
        groups.setdefault((name, mode, size, dtype), []).append(provider)
    results = []
    bar = Progress(len(cases), progress)
    data = {}
    for (name, mode, size, dtype), providers in groups.items():
        key = (size, dtype)
        if key not in data:
            data.clear()
            rng = np.random.default_rng(size)
            data[key] = (rng.uniform(-8, 8, size).astype(dtype), rng.standard_normal(size).astype(dtype))
        x, g = data[key]
        runs = {}
        for provider in providers:
            run = baselines.prepare(provider, name, mode, x, g)
            baselines.check(provider, name, mode, run(), x, g)
            runs[provider] = run
        timed = time_calls(runs, rounds, target)
        del runs
        nbytes = baselines.bytes_moved(mode, size, x.itemsize)
        for provider in providers:
            stats = timed[provider]
            results.append(
                {
                    "activation": name,
                    "mode": mode,
                    "size": size,
                    "dtype": dtype,
                    "provider": provider,
                    "seconds": stats["median"],
                    "seconds_min": stats["min"],
                    "rounds": stats["rounds"],
                    "calls_per_round": stats["number"],
                    "bytes": nbytes,
                    "GB/s": nbytes / stats["median"] / 1e9,
                }
            )
            bar.step(f"{name} {mode} {size_label(size)} {dtype} {provider}")
    return results


_COMPILE_PROBE = """
import time, numpy as np, fastact as fa
x = np.linspace(-3, 3, {size}, dtype=np.float32)
t0 = time.perf_counter()
fa.ACTIVATIONS[{name!r}].fused(x, *(([np.float32(0.25)],) if {name!r} == "prelu" else ()))
print(time.perf_counter() - t0)
"""


def compile_times(names) -> dict:
    """First-call seconds of ``fused`` float32 (parallel build), cold and warm from cache."""
    out = {}
    for name in names:
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, NUMBA_CACHE_DIR=cache)
            code = _COMPILE_PROBE.format(name=name, size=MEMORY_SIZE // 256)
            cold, warm = (
                float(
                    subprocess.run(
                        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
                    ).stdout.split()[-1]
                )
                for _ in range(2)
            )
        out[name] = {"cold": cold, "warm": warm}
    return out


# -- summary -------------------------------------------------------------------------
def _index(results):
    return {(r["activation"], r["mode"], r["size"], r["dtype"], r["provider"]): r for r in results}


def summarize(results, names, mode="fused", compute_size=COMPUTE_SIZE, memory_size=MEMORY_SIZE) -> list:
    """Rows: per activation and provider, the costs the report is about."""
    idx = _index(results)
    rows = []
    compute_providers = {
        "fastact-1thread": "fastact",
        "numpy": "numpy",
        "torch-out": "torch-out",
        "torch": "torch",
    }
    for name in names:
        for provider in ("fastact", "numpy", "torch-out", "torch", "jax"):
            mem = idx.get((name, mode, memory_size, "float32", provider))
            if mem is None:
                continue
            relu_mem = idx.get(("relu", mode, memory_size, "float32", provider))
            cprov = next((k for k, v in compute_providers.items() if v == provider), provider)
            comp = idx.get((name, mode, compute_size, "float32", cprov))
            relu_comp = idx.get(("relu", mode, compute_size, "float32", cprov))
            roof = idx.get((name, mode, memory_size, "float32", "roofline"))
            stream = idx.get((name, mode, memory_size, "float32", "roofline-stream"))
            row = {
                "activation": name,
                "provider": provider,
                "compute_vs_relu": comp["seconds"] / relu_comp["seconds"] if comp and relu_comp else None,
                "memory_vs_relu": mem["seconds"] / relu_mem["seconds"] if relu_mem else None,
                "ns_per_element_compute": comp["seconds"] / compute_size * 1e9 if comp else None,
                "ms_memory": mem["seconds"] * 1e3,
                "GB/s": mem["GB/s"],
                "pct_roofline": 100 * roof["seconds"] / mem["seconds"] if roof else None,
                "pct_roofline_stream": 100 * stream["seconds"] / mem["seconds"] if stream else None,
            }
            if provider == "fastact":
                for other in ("numpy", "torch-out", "torch"):
                    o = idx.get((name, mode, memory_size, "float32", other))
                    row[f"speedup_vs_{other}"] = o["seconds"] / mem["seconds"] if o else None
            rows.append(row)
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def summary_table(rows) -> str:
    lines = [
        "| activation | provider | vs ReLU, compute-bound | vs ReLU, memory-bound | ns/elem, compute-bound "
        "| ms, memory-bound | GB/s | % of roofline | % of streaming roofline "
        "| fastact speed-up vs NumPy / torch out= / torch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        speed = "-"
        if r["provider"] == "fastact":
            speed = " / ".join(
                "-" if r.get(f"speedup_vs_{o}") is None else f"{r[f'speedup_vs_{o}']:.1f}x"
                for o in ("numpy", "torch-out", "torch")
            )
        lines.append(
            f"| {r['activation']} | {r['provider']} | {_fmt(r['compute_vs_relu'], '.2f')}x "
            f"| {_fmt(r['memory_vs_relu'], '.2f')}x | {_fmt(r['ns_per_element_compute'], '.2f')} "
            f"| {r['ms_memory']:.2f} | {r['GB/s']:.1f} | {_fmt(r['pct_roofline'], '.0f')} "
            f"| {_fmt(r.get('pct_roofline_stream'), '.0f')} | {speed} |"
        )
    return "\n".join(lines)


def header(meta) -> str:
    m, v = meta["machine"], meta["versions"]
    libs = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    return (
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads used by every library "
        f"(numba layer {m['threading_layer']}), SIMD {m['simd_bits']} bits "
        f"({m['float32_lanes']} float32 lanes), OMP_WAIT_POLICY {m.get('omp_wait_policy', 'not recorded')}. "
        f"{libs}. {meta['date']}."
    )


def compile_table(ct) -> str:
    lines = [
        "| activation | first call, cold (s) | first call, warm from disk cache (s) |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {n} | {t['cold']:.2f} | {t['warm']:.2f} |" for n, t in ct.items()]
    return "\n".join(lines)


# -- plots -------------------------------------------------------------------------
def plots(results, names, out: Path, regimes, mode: str = "fused") -> list:
    from fastact.figure import pyplot

    plt = pyplot()

    files = []
    idx = _index(results)
    sizes = sorted({r["size"] for r in results if r["dtype"] == "float32"})
    providers = [p for p in baselines.PROVIDERS if any(r["provider"] == p for r in results)]
    for name in names:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for provider in providers:
            pts = [
                (s, idx[(name, mode, s, "float32", provider)]["seconds"] / s * 1e9)
                for s in sizes
                if (name, mode, s, "float32", provider) in idx
            ]
            if not pts:
                continue
            style = {
                "roofline": dict(color="black", linestyle="--", linewidth=2),
                "roofline-stream": dict(color="black", linestyle=":", linewidth=2),
            }.get(provider, {})
            ax.loglog(*zip(*pts, strict=True), marker="o", label=provider, **style)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("elements (float32)")
        ax.set_ylabel("time per element (ns)")
        ax.set_title(f"{name} {mode}: time per element")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        path = out / f"time_per_element_{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        files.append(path.name)
    rows = summarize(results, names, mode, *regimes)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=False)
    for ax, key, title in (
        (axes[0], "compute_vs_relu", f"compute-bound ({size_label(regimes[0])}, 1 thread)"),
        (axes[1], "memory_vs_relu", f"memory-bound ({size_label(regimes[1])}, all cores)"),
    ):
        provs = [
            p
            for p in ("fastact", "numpy", "torch-out", "torch", "jax")
            if any(r["provider"] == p for r in rows)
        ]
        width = 0.8 / max(1, len(provs))
        for k, provider in enumerate(provs):
            vals = [
                next((r[key] for r in rows if r["activation"] == n and r["provider"] == provider), None) or 0
                for n in names
            ]
            ax.bar(np.arange(len(names)) + k * width, vals, width, label=provider)
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_xticks(np.arange(len(names)) + width * (len(provs) - 1) / 2, names, rotation=30)
        ax.set_ylabel(f"{mode} time relative to ReLU (same provider)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "cost_relative_to_relu.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(path.name)
    return files


# -- compare -----------------------------------------------------------------------
def compare(new: dict, old: dict) -> str:
    """Ratios new/old of the median times of the cases both runs measured."""
    a, b = _index(new["results"]), _index(old["results"])
    lines = [
        f"new: {new['date']} ({new['machine']['cpu']}, {new['machine']['threads']} threads)",
        f"old: {old['date']} ({old['machine']['cpu']}, {old['machine']['threads']} threads)",
        "",
        "| activation | mode | size | dtype | provider | new ms | old ms | new/old |",
        "| --- | --- | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    common = [k for k in a if k in b]
    for k in common:
        n, o = a[k]["seconds"], b[k]["seconds"]
        lines.append(
            f"| {k[0]} | {k[1]} | {size_label(k[2])} | {k[3]} | {k[4]} | {n * 1e3:.4f} "
            f"| {o * 1e3:.4f} | {n / o:.2f} |"
        )
    if not common:
        lines.append("(no case measured in both runs)")
    else:
        ratios = [a[k]["seconds"] / b[k]["seconds"] for k in common]
        lines.append("")
        lines.append(
            f"geometric mean new/old over {len(common)} cases: {math.exp(np.mean(np.log(ratios))):.3f}"
        )
    return "\n".join(lines)


# -- command -----------------------------------------------------------------------
def cuda_status() -> str | None:
    """None when a CUDA GPU can run kernels, else the reason it cannot."""
    try:
        from numba import cuda
    except ImportError:
        return "numba's CUDA target is not installed (pip install 'fastact[cuda]')"
    try:
        if not cuda.is_available():
            return "no CUDA GPU is available on this machine"
    except Exception as exc:  # noqa: BLE001 - any driver error means no usable GPU
        return f"no usable CUDA GPU: {exc}"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastact bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="fastact-report", help="report folder (default fastact-report/)")
    parser.add_argument("--quick", action="store_true", help="a short sweep (about 3.5 minutes on 2 cores)")
    parser.add_argument(
        "--compare", metavar="OLD.json", help="print new/old time ratios against an earlier run"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    add_names_option(parser, "--activations", baselines.NAMES, "activation")
    parser.add_argument(
        "--compute-size", type=positive_int, default=COMPUTE_SIZE, help="elements, compute-bound regime"
    )
    parser.add_argument(
        "--memory-size", type=positive_int, default=MEMORY_SIZE, help="elements, memory-bound regime"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=20,
        help="--device cuda: timed launches per kernel (median; default 20)",
    )
    args = parser.parse_args(argv)
    # Read now: a missing or foreign file should not wait for the end of the run.
    old = read_json(parser, args.compare, "--compare", "results") if args.compare else None

    if args.device == "cuda":
        reason = cuda_status()
        if reason is not None:
            print(f"fastact bench --device cuda: {reason}; no CUDA figures were measured.", file=sys.stderr)
            return 2
        from fastact.cuda import measure_fused

        table = measure_fused(args.memory_size if args.memory_size != MEMORY_SIZE else 1 << 28, args.rounds)
        out = output_dir(parser, args.output)
        (out / "report_cuda.md").write_text("# fastact CUDA report\n\n" + table + "\n")
        print(table)
        return 0

    omp_wait_policy = quiet_openmp()  # before anything imports torch
    import numba

    from fastact import _runtime

    _runtime.configure()  # before anything starts numba's thread pool
    threads = numba.config.NUMBA_NUM_THREADS
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    names = chosen(args.activations, baselines.NAMES)
    if "relu" not in names:
        names = ["relu", *names]
    modes = ("fused", "backward") if args.quick else baselines.MODES
    out = output_dir(parser, args.output)

    started = time.perf_counter()
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "omp_wait_policy": omp_wait_policy},
        "versions": versions(),
        "quick": args.quick,
        "regimes": {
            "compute_bound": {"size": args.compute_size, "threads": 1},
            "memory_bound": {"size": args.memory_size, "threads": threads},
        },
    }
    ct_names = ["sigmoid", "relu"] if args.quick else names
    meta["compile_seconds"] = compile_times(ct_names)
    regimes = (args.compute_size, args.memory_size)
    cases = plan(args.quick, names, modes, *regimes)
    # Warm-up pass: compile every kernel before anything is timed.
    for name in names:
        for mode in modes:
            for size in (256, 1 << 16):
                x = np.linspace(-3, 3, size, dtype=np.float32)
                baselines.prepare("fastact", name, mode, x, x)()
    results = sweep(
        cases,
        rounds=5 if args.quick else 9,
        target=0.02 if args.quick else 0.05,
        progress=not args.no_progress,
    )
    meta["results"] = results
    meta["sweep_seconds"] = time.perf_counter() - started
    rows = summarize(results, names, "fused", *regimes)
    meta["summary"] = rows
    (out / "results.json").write_text(json.dumps(meta, indent=1))
    pngs = plots(results, names, out, regimes)
    md = [
        "# fastact cost report",
        "",
        header(meta),
        "",
        "## fused f and f': cost relative to ReLU, and against NumPy, PyTorch and the roofline",
        "",
        f"Compute-bound: {size_label(args.compute_size)} float32 elements, in cache, one thread. "
        f"Memory-bound: {size_label(args.memory_size)} float32 elements, all threads. Same "
        "provider in both columns; the roofline moves the same bytes with trivial arithmetic, and "
        "the streaming roofline does so with the non-temporal stores that fastact uses for arrays "
        f"larger than the last-level cache (at most {STREAM_MIN_BYTES_MAX >> 20} MiB moved per call).",
        "",
        summary_table(rows),
        "",
        "## backward (grad_out * f'(x))",
        "",
        summary_table(summarize(results, names, "backward", *regimes)),
        "",
        "## Compile time of one kernel (fused, float32, parallel), apart from run times",
        "",
        compile_table(meta["compile_seconds"]),
        "",
        "## Plots",
        "",
        *[f"![{p}]({p})" for p in pngs],
        "",
        f"Sweep: {len(results)} cases in {meta['sweep_seconds']:.0f} s{' (--quick)' if args.quick else ''}.",
    ]
    (out / "report.md").write_text("\n".join(md) + "\n")
    print(header(meta))
    print()
    print(summary_table(rows))
    print()
    print(compile_table(meta["compile_seconds"]))
    print(f"\nwrote {out / 'results.json'}, {out / 'report.md'} and {len(pngs)} plots")
    if args.compare:
        print()
        print(compare(meta, old))
    return 0


if __name__ == "__main__":
    sys.exit(main())
