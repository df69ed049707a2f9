"""Benchmarks run in two modes:

* ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest benchmarks --benchmark-only``:
  full sizes, every group's rows (fastdl and each peer or variant) timed in turn round by round
  and printed side by side by pytest-benchmark; ``-s`` adds the interleaved ratio tables.
  The two variables are unset for the benchmark command only: on AVX-512 CPUs they make
  OpenBLAS run its Haswell kernels at about half the float32 speed (NOTES.md). Tests, CI and
  fastdl itself never touch them.
* ``pytest benchmarks --benchmark-disable`` (what CI runs): each benchmark body runs once on
  small sizes, so the suite cannot rot. Small mode is signalled to the benchmark modules
  through ``FASTDL_BENCH_SMALL=1``.

Every run prints, at the end, the BLAS NumPy runs and its kernel (threadpoolctl) and the GEMM
ceilings the suites measured in the same run (``_peers.measure_ceilings``); a saved run
(``--benchmark-save``) stores both in its JSON under ``fastdl``.
"""

import os


def _peers():
    """``_peers``, imported only after ``pytest_configure`` has set FASTDL_BENCH_SMALL (it reads
    the variable when imported); it never imports fastdl at import time."""
    import _peers
    return _peers


def pytest_configure(config):
    try:
        disabled = config.getoption("benchmark_disable")
    except ValueError:
        disabled = False
    if disabled:
        os.environ.setdefault("FASTDL_BENCH_SMALL", "1")


def _slow_blas_warning():
    P = _peers()
    set_ = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.get(v)]
    if not set_ or P.SMALL:
        return None
    return (f"WARNING: {' and '.join(f'{v}={os.environ[v]}' for v in set_)} set: OpenBLAS may "
            "run slower kernels than this CPU has; run benchmarks as `env -u OPENBLAS_CORETYPE "
            "-u OPENBLAS_L2_SIZE python -m pytest benchmarks --benchmark-only`")


def pytest_report_header(config):
    P = _peers()
    mode = "SMALL mode (tiny sizes: smoke tests, not figures)" if P.SMALL else "full sizes"
    lines = [f"fastdl benchmarks: {mode}, {P.THREADS} threads; CPU {P.cpu_model()}"]
    warn = _slow_blas_warning()
    return lines + ([warn] if warn else [])


def pytest_terminal_summary(terminalreporter):
    P = _peers()
    tr = terminalreporter
    tr.section("fastdl benchmarks: BLAS and GEMM ceilings of this run")
    tr.write_line(f"CPU {P.cpu_model()}; {P.THREADS} threads"
                  + ("; SMALL mode: figures are smoke tests, not measurements" if P.SMALL
                     else ""))
    tr.write_line(P.format_blas(P.blas_info()))
    warn = _slow_blas_warning()
    if warn:
        tr.write_line(warn)
    for label, ceil in P.CEILINGS:
        lines = P.format_ceilings(ceil)
        if P.SMALL:         # one repeat on tiny runs: a smoke test of the measurement only
            continue
        bf16 = str(ceil["bf16_gemm"]).split(" (")[0]
        tr.write_line(f"GEMM ceilings measured for {label}, GFLOP/s (best of 5, "
                      f"{ceil.get('blas_threads')} BLAS threads; oneDNN ISA "
                      f"{ceil['onednn_isa']}; bfloat16 GEMM: {bf16}):")
        for line in lines[1:]:
            tr.write_line(line)
    if P.SMALL and P.CEILINGS:
        tr.write_line(f"GEMM ceilings: measured for {len(P.CEILINGS)} suite(s) with one repeat "
                      "(small mode: not figures, not printed)")
    if not P.CEILINGS:
        tr.write_line("(no suite that depends on GEMM speed ran: no ceilings measured)")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    P = _peers()
    output_json["fastdl"] = {"cpu": P.cpu_model(), "threads": P.THREADS, "small": P.SMALL,
                             "blas": P.blas_info(),
                             "gemm_ceilings": [{"label": label, **ceil}
                                               for label, ceil in P.CEILINGS]}
