import background
import numpy as np
import pytest
from tolerances import DTYPES


def pytest_configure(config):
    config.addinivalue_line("markers", "probe(name): the test reads probe NAME of background.py")


def pytest_collection_finish(session):
    """Start the probes of the selected tests, to run beside the suite (see background.py)."""
    option = session.config.option
    if option.collectonly or getattr(option, "benchmark_only", False):
        # Nothing runs them; and nothing should run beside benchmarks.
        return
    background.start(marker.args[0] for item in session.items for marker in item.iter_markers("probe"))


def pytest_sessionfinish(session):
    background.stop()


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return np.dtype(request.param)
