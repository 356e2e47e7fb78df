import numba
import pytest


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
