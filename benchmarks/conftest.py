import numba
import pytest

from fastact.bench import quiet_openmp

# Before anything imports torch: PyTorch's OpenMP threads sleep between ops
# instead of spinning into the next benchmark's time (see quiet_openmp).
OMP_WAIT_POLICY = quiet_openmp()


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["omp_wait_policy"] = OMP_WAIT_POLICY


@pytest.fixture(scope="session", autouse=True)
def same_threads_everywhere():
    """Every library runs on the same number of threads: numba's default (all cores)."""
    threads = numba.config.NUMBA_NUM_THREADS
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    return threads
