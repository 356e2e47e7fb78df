"""Benchmarks run once, untimed, in a plain ``pytest`` run (as smoke tests);
``pytest --benchmark-only`` (or ``--benchmark-enable``) times them."""


def pytest_configure(config):
    opt = config.option
    if hasattr(opt, "benchmark_disable") and not (opt.benchmark_only or opt.benchmark_enable):
        opt.benchmark_disable = True
