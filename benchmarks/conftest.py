"""Benchmarks run in two modes:

* ``pytest benchmarks`` (or ``--benchmark-only``): full sizes, timed, peers measured in the
  same run, ratios printed;
* ``pytest benchmarks --benchmark-disable`` (what CI runs): each benchmark body runs once on
  small sizes, so the suite cannot rot. Small mode is signalled to the benchmark modules
  through ``FASTDL_BENCH_SMALL=1``.
"""

import os


def pytest_configure(config):
    try:
        disabled = config.getoption("benchmark_disable")
    except ValueError:
        disabled = False
    if disabled:
        os.environ.setdefault("FASTDL_BENCH_SMALL", "1")
