"""Probes that run for minutes in a process of their own, started early.

The assembly probe and the CUDA simulator runs are mostly compile time on
one core. When tests that read them are selected, ``conftest.py`` starts
them at the end of collection, one after another in a background thread,
so that they run beside the rest of the suite (on CI's two cores the suite
took 12-13 minutes with them in line, under 10 beside it). A test then
waits for its probe's output with :func:`output`; a probe that was not
started runs there and then.

The probes use a Numba cache directory of their own: two processes that
compile kernels into one cache at the same time can overwrite each other's
entries.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent
TIMEOUT_S = 900


def cpu_flag(flag: str) -> bool:
    """Whether /proc/cpuinfo lists ``flag`` (False where it cannot be read)."""
    try:
        return flag in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def has_avx2() -> bool:
    return cpu_flag("avx2")


def has_avx512() -> bool:
    return cpu_flag("avx512f")


def has_numba_cuda() -> bool:
    return importlib.util.find_spec("numba_cuda") is not None


@dataclass
class Probe:
    argv: tuple
    available: Callable[[], bool]
    env: dict = field(default_factory=dict)


GPU_CHECK_TOY = ("--size", "2048", "--rounds", "2", "--validate-size", "64", "--threads-per-block", "8")
SIMULATOR = {"NUMBA_ENABLE_CUDASIM": "1"}

PROBES = {
    "asm": Probe(("asm_probe.py",), has_avx2),
    "cuda-simulate": Probe(("cuda_probe.py", "simulate"), has_numba_cuda, SIMULATOR),
    "cuda-ptx": Probe(("cuda_probe.py", "ptx"), has_numba_cuda),
    "gpu-check": Probe(
        (HERE.parent / "benchmarks" / "gpu_check.py", *GPU_CHECK_TOY), has_numba_cuda, SIMULATOR
    ),
}


@dataclass
class _Run:
    done: threading.Event = field(default_factory=threading.Event)
    result: subprocess.CompletedProcess | None = None
    error: str | None = None


_runs: dict[str, _Run] = {}
_current: list[subprocess.Popen] = []
_stopping = threading.Event()
_cache_dir: str | None = None


def _run(name: str) -> subprocess.CompletedProcess:
    """Run probe ``name`` to completion (stdout and stderr captured)."""
    global _cache_dir
    probe = PROBES[name]
    if _cache_dir is None:
        _cache_dir = tempfile.mkdtemp(prefix="fastact-probe-cache-")
    env = dict(os.environ, NUMBA_CACHE_DIR=_cache_dir, **probe.env)
    argv = [sys.executable, *map(str, probe.argv)]
    with subprocess.Popen(
        argv, env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        _current.append(proc)
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            stderr += f"\n(probe {name} killed after {TIMEOUT_S} s)"
        finally:
            _current.remove(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def start(names) -> None:
    """Run the available probes among ``names``, in that order, in a background thread."""
    names = [n for n in dict.fromkeys(names) if n not in _runs and PROBES[n].available()]
    if not names:
        return
    for name in names:
        _runs[name] = _Run()

    def lane():
        for name in names:
            run = _runs[name]
            try:
                if not _stopping.is_set():
                    run.result = _run(name)
            except Exception as exc:  # reported by the test that reads the probe
                run.error = f"{type(exc).__name__}: {exc}"
            finally:
                run.done.set()

    threading.Thread(target=lane, name="fastact-test-probes", daemon=True).start()


def stop() -> None:
    """Stop the background probes (end of the session)."""
    _stopping.set()
    for proc in list(_current):
        proc.kill()


def output(name: str) -> str:
    """Probe ``name``'s stdout, waiting for a background run or running it here; fails if it failed."""
    run = _runs.get(name)
    if run is None:
        result = _run(name)
    else:
        assert run.done.wait(TIMEOUT_S + 60), f"probe {name} did not finish"
        assert run.error is None, f"probe {name}: {run.error}"
        assert run.result is not None, f"probe {name} was stopped"
        result = run.result
    assert result.returncode == 0, (
        f"probe {name} exited with {result.returncode}\n" + result.stdout[-2000:] + result.stderr[-4000:]
    )
    return result.stdout
