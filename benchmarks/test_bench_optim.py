"""Standalone optimizer step (issue 3, benchmark (a)): fastdl Adam vs torch.optim.Adam.

    python -m pytest benchmarks/test_bench_optim.py -q -s        # full sizes, ratio table
    python -m pytest benchmarks --benchmark-disable -q            # CI: once, small sizes

One Adam step over N float32 parameters held in flat arrays (params, grads, m, v):

* ``fastdl``: ``fd.optim.Adam(lr=1e-3).step(params, grads)`` on the cpu backend (one fused
  parallel kernel call), timed through pytest-benchmark;
* ``torch default``: ``torch.optim.Adam`` with ``foreach=False`` (the single-tensor loop, the
  default for CPU tensors), ``torch foreach`` (``foreach=True``) and ``torch fused``
  (``fused=True``): one parameter tensor of N elements with its ``.grad`` set, same thread
  count, in a worker process of their own (``_adam_peer.py``: PyTorch without fastdl's
  ``OMP_WAIT_POLICY``);
* ``triad``: an in-place streaming pass ``a += s * b`` (parallel Numba, same N, 12 bytes per
  element): the machine's practical bandwidth for an update that reads and writes in place.

Every round runs one step of each peer and one triad (pytest-benchmark's untimed setup), then
the timed fastdl step, each after a short pause (``SETTLE_S``: spinning OpenMP threads of the
previous call must not steal a core), so all see the same machine state; ratios are taken round by round, then
the median. Figures: median ms per step, GB/s at 28 bytes per parameter (read p, g, m, v; write
p, m, v), ``x`` = peer time / fastdl time, fastdl's GB/s as a percentage of the triad's, and the
CPU share other processes used meanwhile (figures are not trustworthy when it is high).
``best-of speedup`` (fastest peer step / fastest fastdl step) is printed beside the median
ratio: on a shared VM, memory bandwidth taken by neighbours is invisible to the CPU-load
figure and makes single steps vary by 2x; targets are judged on the median ratio.

Before any timing the fastdl step is checked against the NumPy reference kernel (two steps, so
the bias correction changes), and torch fused's first step against fastdl's.

Targets on the 2-core dev machine: >= 1.0x torch fused and >= 5x torch default at both sizes,
>= 85% of the triad bandwidth at 100M. Printed as met / MISSED; ``FASTDL_BENCH_ASSERT=1`` turns a
miss into a failure (never in CI: no timed assertions there).
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest
from numba import njit, prange

import fastdl as fd
import _peers as P
from _adam_peer import BETA1, BETA2, EPS, LR, AdamPeer, buffers
from fastdl.kernels.reference import optim as ref_optim

#: an empty bfloat16 weight shadow: the update kernels compute without mixed precision here
#: (tests/test_precision.py covers it)
NO_SHADOW = np.zeros(0, np.uint16)

ASSERT_TARGETS = os.environ.get("FASTDL_BENCH_ASSERT", "") not in ("", "0")
SIZES = [100_000, 2_000_000] if P.SMALL else [10_000_000, 100_000_000]
ROUNDS = {n: 1 if P.SMALL else (20 if n <= 10_000_000 else 8) for n in SIZES}
BYTES_PER_PARAM = 28
PEERS = {"torch default": {"foreach": False}, "torch foreach": {"foreach": True},
         "torch fused": {"fused": True}}
TARGETS = {"torch fused": 1.0, "torch default": 5.0}
BANDWIDTH_TARGET = (100_000_000, 0.85)
#: Pause before every timed call. PyTorch's OpenMP threads (default wait policy) keep spinning
#: for milliseconds after a step and took a core from whatever ran next: measured, a fastdl
#: 10M step right after a torch step took 9.2 ms (median), 6.2 ms after a 50 ms pause, while
#: torch's own step did not depend on it (8.6 / 8.1 ms). Every timed call gets the same pause.
SETTLE_S = 0.0 if P.SMALL else 0.05

_rows: list[dict] = []
_COLUMNS = [("n", "params", "{:,}"), ("impl", "implementation", "{}"),
            ("ms", "ms/step", "{:.2f}"), ("gbs", "GB/s", "{:.1f}"),
            ("x", "fastdl speedup", "{:.2f}x"), ("x_best", "best-of speedup", "{:.2f}x"),
            ("pct_bw", "% triad", "{:.0f}%"),
            ("target", "target", "{}"), ("foreign", "other load", "{:.0%}")]


@njit(parallel=True, nogil=True)
def _triad(a, b, s):
    for i in prange(a.shape[0]):
        a[i] += s * b[i]


@pytest.fixture(scope="module", autouse=True)
def _threads_and_summary():
    P.set_threads(P.THREADS)
    if not P.SMALL:     # a shared machine: wait (bounded) for other processes to calm down
        foreign = P.wait_until_quiet(float(os.environ.get("FASTDL_BENCH_WAIT_QUIET", 120)))
        if foreign is not None:
            print(f"\nload from other processes before the benchmarks: {foreign:.0%} of the CPUs")
    yield
    if _rows:
        P.print_table(f"Adam step, float32 ({'SMALL mode' if P.SMALL else 'full'}; "
                      f"{P.THREADS} threads)", _rows, _COLUMNS)


def _check_against_reference(p0, g):
    """Two fastdl steps == two reference-kernel steps (params and both moments)."""
    p_fd, p_ref = p0.copy(), p0.copy()
    m, v = np.zeros_like(p0), np.zeros_like(p0)
    opt = fd.optim.Adam(lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS, backend="cpu")
    for step in (1, 2):
        opt.step(p_fd, g)
        ref_optim.adam_update(p_ref, NO_SHADOW, m, v, g, LR, BETA1, BETA2, EPS, step, 0.0, 0.0,
                              ref_optim.NO_SUM_SQ, np.inf, np.inf, 0.0, 0)
    np.testing.assert_allclose(p_fd, p_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(opt.state["m"], m, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(opt.state["v"], v, rtol=1e-6, atol=1e-12)
    return {"params": float(np.max(np.abs(p_fd - p_ref))),
            "m": float(np.max(np.abs(opt.state["m"] - m))),
            "v": float(np.max(np.abs(opt.state["v"] - v)))}


def _median_ratio(peer_times, fd_times):
    return statistics.median(a / b for a, b in zip(peer_times, fd_times))


@pytest.mark.parametrize("n", SIZES, ids=[f"{n:,}" for n in SIZES])
def test_adam_step(benchmark, n):
    benchmark.group = f"adam step {n:,}"
    p0, g = buffers(n)

    # 1. correctness before timing
    check = _check_against_reference(p0, g)

    # 2. fastdl: warm-up step (compiles, allocates state); the triad's buffer, compiled
    p = p0.copy()
    opt = fd.optim.Adam(lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS, backend="cpu")
    opt.step(p, g)
    a = np.zeros(n, np.float32)
    _triad(a, g, np.float32(0.0))
    triad = P.Timer(lambda: _triad(a, g, np.float32(1e-3)))

    # 3. PyTorch peers in their worker; torch fused's first step must equal fastdl's
    peer = AdamPeer(n, P.THREADS) if P.torch_available() else None
    if peer:    # the worker's CPU time is ours, not "other load" (P.MachineLoad)
        P._LIVE_WORKERS.add(peer.proc.pid)
    peer_times = {name: [] for name in PEERS} if peer else {}
    try:
        if peer:
            stride = max(1, n // 100_000)
            for name, kw in PEERS.items():
                peer.setup(name, **kw)
            np.testing.assert_allclose(peer.sample("torch fused", stride), p[::stride],
                                       rtol=1e-6, atol=1e-7)

        def others_round():
            for name in peer_times:
                time.sleep(SETTLE_S)
                peer_times[name].append(peer.step(name))
            time.sleep(SETTLE_S)
            triad()
            time.sleep(SETTLE_S)

        # 4. interleaved rounds: peers and triad untimed in setup, then the timed fastdl step
        with P.MachineLoad() as load:
            t_fd = P.Timer(lambda: opt.step(p, g))
            benchmark.pedantic(t_fd, setup=others_round, rounds=ROUNDS[n], iterations=1)
    finally:
        if peer:
            peer.close()
            P._LIVE_WORKERS.discard(peer.proc.pid)
    assert np.isfinite(p[:1000]).all()
    del a

    fd_s, triad_s = t_fd.median, triad.median
    fd_gbs, triad_gbs = BYTES_PER_PARAM * n / fd_s / 1e9, 12.0 * n / triad_s / 1e9
    pct_bw = 100.0 * _median_ratio(triad.times, t_fd.times) * BYTES_PER_PARAM / 12.0
    rows = [{"n": n, "impl": "fastdl", "ms": 1e3 * fd_s, "gbs": fd_gbs, "pct_bw": pct_bw,
             "foreign": load.foreign}]
    if n == BANDWIDTH_TARGET[0] and not P.SMALL:
        ok = pct_bw >= 100.0 * BANDWIDTH_TARGET[1]
        rows[0]["target"] = f">={100 * BANDWIDTH_TARGET[1]:.0f}% triad " + \
            ("met" if ok else "MISSED")
    rows.append({"n": n, "impl": "triad a+=s*b", "ms": 1e3 * triad_s, "gbs": triad_gbs})
    for name, times in peer_times.items():
        t = statistics.median(times)
        x = _median_ratio(times, t_fd.times)
        row = {"n": n, "impl": name, "ms": 1e3 * t, "gbs": BYTES_PER_PARAM * n / t / 1e9,
               "x": x, "x_best": min(times) / min(t_fd.times)}
        if name in TARGETS and not P.SMALL:
            row["target"] = f">={TARGETS[name]}x " + ("met" if x >= TARGETS[name] else "MISSED")
        rows.append(row)
    _rows.extend(rows)
    P.print_table(f"Adam step, {n:,} float32 params", rows, _COLUMNS)
    if load.foreign is not None and load.foreign > 0.05:
        print(f"WARNING: other processes used {100 * load.foreign:.0f}% of the CPUs during this "
              "benchmark; its figures are not trustworthy")
    benchmark.extra_info.update({
        "n": n, "fastdl_ms": 1e3 * fd_s, "fastdl_gbs": fd_gbs, "triad_gbs": triad_gbs,
        "pct_triad": pct_bw, "fastdl_round_s": t_fd.times, "triad_round_s": triad.times,
        "peers_round_s": peer_times, "speedup": {r["impl"]: r["x"] for r in rows if "x" in r},
        "check_max_abs_err": check, "foreign_load": load.foreign, "threads": P.THREADS,
        "torch_worker": peer.info if peer else None, "date": time.strftime("%Y-%m-%d %H:%M"),
        "small": P.SMALL})
    if ASSERT_TARGETS and not P.SMALL:
        for r in rows:
            if r["impl"] in TARGETS:
                assert r["x"] >= TARGETS[r["impl"]], f"{r['impl']}: {r['x']:.2f}x < target"
        if n == BANDWIDTH_TARGET[0]:
            assert pct_bw >= 100.0 * BANDWIDTH_TARGET[1], f"{pct_bw:.0f}% of the triad"
