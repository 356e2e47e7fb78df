"""Numba's threading layer: chosen so that threads and fork never crash.

Measured with numba 0.68.1: the ``workqueue`` layer aborts the process
(SIGABRT) when parallel kernels are launched from several Python threads at
once; the GNU OpenMP layer survives threads but aborts a child after
``os.fork()``; TBB survives both. Numba's ``tbbpool`` only loads when the
loader can find ``libtbb.so.12``, which the PyPI ``tbb`` wheel puts in the
environment's ``lib/`` folder, off the loader path. So, before the first
parallel kernel is compiled, fastact:

1. preloads the environment's ``libtbb.so.12`` (``ctypes``, ``RTLD_GLOBAL``)
   when the ``tbb`` package is installed, and selects the ``tbb`` layer;
2. otherwise selects ``workqueue`` and serializes fastact's parallel calls
   with a lock, so concurrent calls from threads queue instead of aborting
   (each call still uses every core);
3. respects a layer the user chose (``NUMBA_THREADING_LAYER``) or one
   already running; if that layer is OpenMP, calls made in a forked child
   run single-threaded instead of aborting.

No environment variable is needed. ``threading_layer()`` reports the layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import threading
from pathlib import Path

_state_lock = threading.Lock()
_configured = False
_forked = False
# Serializes parallel launches when the layer is not thread-safe.
_launch_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _forked, _launch_lock
    _forked = True
    # A lock held by another thread at fork time would stay held forever.
    _launch_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _find_libtbb() -> str | None:
    """Path of the ``libtbb.so.12`` installed by the PyPI ``tbb`` package."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        from importlib.metadata import PackageNotFoundError, distribution
    except ImportError:  # pragma: no cover
        return None
    try:
        dist = distribution("tbb")
    except PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == "libtbb.so.12":
            path = Path(dist.locate_file(entry)).resolve()
            if path.exists():
                return str(path)
    return None


def _try_tbb() -> bool:
    path = _find_libtbb()
    if path is None:
        return False
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        from numba.np.ufunc import tbbpool  # noqa: F401
    except (OSError, ImportError):
        return False
    return True


def configure() -> None:
    """Choose numba's threading layer once, before the first parallel kernel."""
    global _configured
    if _configured:
        return
    with _state_lock:
        if _configured:
            return
        from numba.core import config
        from numba.np.ufunc import parallel

        if not parallel._is_initialized and config.THREADING_LAYER == "default":
            config.THREADING_LAYER = "tbb" if _try_tbb() else "workqueue"
        _configured = True


def threading_layer() -> str:
    """The threading layer in use, starting it if need be (e.g. ``"tbb"``)."""
    configure()
    import numba
    from numba.np.ufunc import parallel

    if not parallel._is_initialized:
        parallel._launch_threads()
    return numba.threading_layer()


def _layer_or_none() -> str | None:
    from numba.np.ufunc import parallel

    if not parallel._is_initialized:
        return None
    import numba

    return numba.threading_layer()


def parallel_allowed() -> bool:
    """False in a forked child whose layer (GNU OpenMP) would abort there."""
    return not (_forked and _layer_or_none() == "omp")


@contextlib.contextmanager
def parallel_launch():
    """Context of one parallel kernel call: serialized unless thread-safe."""
    if _layer_or_none() in ("tbb", "omp"):
        yield
        return
    with _launch_lock:
        yield
