"""Threads, fork, start-up and the on-disk cache, each in a fresh interpreter."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(code, env=None, timeout=600, **kw):
    env = dict(os.environ if env is None else env)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )
    return out


CONCURRENT = """
    import os, sys, threading
    import numpy as np
    import fastact as fa
    from fastact import _runtime
    if {force_workqueue}:
        _runtime._find_libtbb = lambda: None   # as on an install without the tbb package
    from fastact import _cpu
    rng = np.random.default_rng(0)
    # Half the arrays are above the streaming threshold set below, so that
    # plain and streaming kernels run at once.
    xs = [rng.standard_normal((1 << 18) + (k % 2) * (1 << 19)).astype(np.float32) for k in range(8)]
    _cpu.STREAMING = False
    serial = [fa.tanh.fused(x) for x in xs] + [fa.sigmoid.backward(x, x) for x in xs]
    _cpu.STREAMING, _cpu.STREAM_MIN_BYTES = True, 6 << 20
    results = [None] * 8
    def work(k):
        out = []
        for _ in range(20):
            y, d = fa.tanh.fused(xs[k])
            out.append((y, d, fa.sigmoid.backward(xs[k], xs[k])))
        results[k] = out
    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for k in range(8):
        for y, d, g in results[k]:
            assert np.array_equal(y, serial[k][0]) and np.array_equal(d, serial[k][1])
            assert np.array_equal(g, serial[8 + k])
    pid = os.fork()
    if pid == 0:
        try:
            y, d = fa.tanh.fused(xs[0])
            ok = np.array_equal(y, serial[0][0]) and np.array_equal(fa.relu(xs[1]), np.maximum(xs[1], 0))
            os._exit(0 if ok else 3)
        except BaseException:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status), f"child killed by signal {{os.WTERMSIG(status)}}"
    assert os.WEXITSTATUS(status) == 0, os.WEXITSTATUS(status)
    print("layer", fa.threading_layer())
"""


@pytest.mark.parametrize("force_workqueue", [False, True], ids=["tbb-if-installed", "no-tbb"])
def test_threads_and_fork_never_abort(force_workqueue):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    out = run(CONCURRENT.format(force_workqueue=force_workqueue), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    layer = out.stdout.split()[-1]
    if force_workqueue:
        assert layer == "workqueue"
    else:
        try:
            import importlib.metadata as md

            md.distribution("tbb")
            assert layer == "tbb"
        except md.PackageNotFoundError:
            assert layer == "workqueue"


def test_import_compiles_nothing_and_does_not_load_numba():
    out = run(
        """
        import sys, time
        t = time.perf_counter()
        import fastact
        elapsed = time.perf_counter() - t
        from fastact import _cpu
        assert "numba" not in sys.modules, "import fastact imported numba"
        assert not _cpu._kernels
        print(f"{elapsed:.3f}")
        """
    )
    assert out.returncode == 0, out.stderr
    # The time is reported, not asserted: this machine is shared and noisy.
    print("import fastact took", out.stdout.strip(), "s")


def test_first_call_compiles_and_the_disk_cache_serves_the_next_process(tmp_path):
    code = """
        import numpy as np, fastact as fa
        from fastact import _cpu
        fa.sigmoid.fused(np.linspace(-3, 3, 100, dtype=np.float32))
        wide = _cpu.wide_vectors()
        k = _cpu._kernels[("sigmoid", np.dtype("float32"), "fused", "elementwise", False, None, wide, False)]
        print(sum(k.stats.cache_hits.values()), sum(k.stats.cache_misses.values()))
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    first = run(code, env=env)
    second = run(code, env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.split() == ["0", "1"]  # compiled
    assert second.stdout.split() == ["1", "0"]  # loaded from disk


READ_ONLY = """
    import numpy as np
    if {simulate}:
        # Running as root, for whom no folder is read-only: make every cache
        # location Numba tries fail the way a read-only one does.
        import errno
        from numba.core import caching
        def read_only(self):
            raise OSError(errno.EROFS, "Read-only file system", self.get_cache_path())
        caching._CacheLocator.ensure_cache_path = read_only
    import fastact as fa
    assert fa.__file__.startswith({pkg!r}), fa.__file__
    y, d = fa.tanh.fused(np.linspace(-3, 3, 50_000))
    assert abs(y[-1] - np.tanh(3.0)) < 1e-15 and abs(d[0] - (1 - np.tanh(3.0) ** 2)) < 1e-15
    assert fa.sigmoid(0.0) == 0.5
    print("ok")
"""


def test_read_only_install_and_home_never_fail(tmp_path):
    """fastact imported from a read-only folder, with a read-only home and cache dir."""
    pkg = tmp_path / "site"
    shutil.copytree(ROOT / "fastact", pkg / "fastact", ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    for path in (pkg, home):
        for p in [path, *path.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE", "PYTHON"))}
    env.update(
        HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(pkg), PYTHONDONTWRITEBYTECODE="1"
    )
    out = run(READ_ONLY.format(simulate=os.geteuid() == 0, pkg=str(pkg)), env=env, cwd=str(tmp_path))
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
    assert not list(pkg.rglob("*.nbi")) and not list(home.rglob("*.nbi")), "wrote into a read-only folder"
