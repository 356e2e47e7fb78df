"""CUDA kernels without a GPU: numba's simulator and PTX compilation, in separate processes."""

import os
import subprocess
import sys
from pathlib import Path

import background
import pytest

needs_cuda = pytest.mark.skipif(
    not background.has_numba_cuda(), reason="the cuda extra (numba-cuda) is not installed"
)


def run_python(*args, **env):
    """Run ``python ARGS`` with extra environment variables; return its stdout, failing on an error."""
    out = subprocess.run(
        [sys.executable, *map(str, args)],
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=Path(__file__).parent,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out.stdout


@needs_cuda
@pytest.mark.probe("cuda-simulate")
def test_every_kernel_in_the_simulator():
    assert "simulated" in background.output("cuda-simulate")


@needs_cuda
@pytest.mark.probe("cuda-ptx")
def test_every_kernel_compiles_to_ptx_without_float64_in_float32():
    assert "compiled" in background.output("cuda-ptx")


def test_cpu_path_does_not_import_cuda():
    code = "import sys, numpy as np, fastact as fa; fa.tanh(np.ones(3)); print('numba.cuda' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr


@needs_cuda
@pytest.mark.probe("gpu-check")
def test_gpu_check_script_runs_in_the_simulator():
    """The GPU script's validation and timing code, at toy sizes (simulated timings mean nothing)."""
    out = background.output("gpu-check")
    assert "validated every kernel against the CPU" in out
    assert "| sigmoid |" in out and "| prelu |" in out


@needs_cuda
def test_bench_device_cuda_reports_in_the_simulator(tmp_path):
    args = ("--device", "cuda", "--memory-size", "4096", "--rounds", "2", "--output", tmp_path)
    run_python("-m", "fastact", "bench", *args, NUMBA_ENABLE_CUDASIM="1")
    assert "| sigmoid |" in (tmp_path / "report_cuda.md").read_text()
