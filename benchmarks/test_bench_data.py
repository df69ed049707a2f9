"""Data pipeline (issue 5, "Benchmarks"): out-of-core training vs in memory, and the cost of
mini-batch assembly.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest \\
        benchmarks/test_bench_data.py --benchmark-only [-s]    # full: 2,000,000 x 784 (6.3 GB)
    python -m pytest benchmarks --benchmark-disable -q         # CI: once, small sizes

Every comparison is a pytest-benchmark group whose variants are its rows, so
``--benchmark-only`` prints them side by side and ``--benchmark-save`` / ``--benchmark-compare``
track each. pytest-benchmark receives the times the rows measured themselves
(``_peers.Rows`` / ``record_seconds``), as said per group below: the variants run one after
another inside one measurement, and pytest-benchmark timing a whole row (process start, file
checks) would time something else.

1. ``test_out_of_core_vs_in_memory`` (group "out of core vs in memory"): a float32 teacher
   ``.npy`` of ``ROWS`` x 784 is written with ``fastdl make-data`` (kept between runs in
   ``FASTDL_BENCH_DATA_DIR``, default the temp dir, when ``FASTDL_BENCH_DATA_KEEP=1``), then
   the 784-256-128-10 net (relu, relu, softmax; Adam, batch 256, float32) trains on it for
   ``EPOCHS`` epoch(s), each run in a fresh process so that its peak RSS (``ru_maxrss``) is its
   own. Rows:

   * ``streamed (page cache)``: ``model.fit("X.npy", "y.npy")``, the file in the page cache
     (what a second epoch sees on a machine with spare RAM);
   * ``streamed, cold cache``: the same after dropping the file's pages from the page cache
     (``posix_fadvise(DONTNEED)``): reads come from the disk;
   * ``in memory``: ``np.load`` then ``model.fit(X, y)`` (load time reported, not timed).

   A row's time is seconds per epoch, the epochs only (a callback's clock in the child):
   ``fit``'s input checks (in memory: a NaN scan and one-hot encoding of the whole array;
   streamed: a scan of the labels) are reported apart as "fit setup". ``extra_info``:
   ``samples_per_s``, ``ratio_vs_in_memory`` (this row's speed / in memory's), peak RSS.
   Targets: streamed samples/s >= 80% of in memory, streamed peak RSS <= 1.5 GB.
   ``FASTDL_BENCH_DATA_ROWS`` overrides the rows (e.g. when the disk is small).
2. ``test_batch_assembly_share`` (groups "batch assembly, batch <b>", b = 64, 256, 1024), in
   memory: rows ``gather (2 x gather_rows)``, the two calls that assemble a batch, and ``whole
   step (gathers included)`` (gather, forward, loss, backward, Adam update), 5 rounds of each,
   interleaved, ``perf_counter`` around each run of ``ASSEMBLY_STEPS`` batches; a row's time
   is seconds per batch. ``extra_info``: ``share_of_step`` (gather / step, median of per-round
   ratios; target <= 5%), samples/s, the gather's GB/s.

No timed assertions (``FASTDL_BENCH_ASSERT=1`` turns a missed target into a failure).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import fastdl as fd
import _peers as P

HERE = os.path.dirname(os.path.abspath(__file__))
ASSERT_TARGETS = os.environ.get("FASTDL_BENCH_ASSERT", "") not in ("", "0")
ROWS = int(os.environ.get("FASTDL_BENCH_DATA_ROWS", 20_000 if P.SMALL else 2_000_000))
FEATURES, CLASSES, BATCH, EPOCHS = 784, 10, 256, 1
ASSEMBLY_ROWS = 8192 if P.SMALL else 131072
ASSEMBLY_STEPS = 20 if P.SMALL else 200
GiB = 2 ** 30


def _net():
    return fd.Sequential([fd.Dense(256, activation="relu"), fd.Dense(128, activation="relu"),
                          fd.Dense(CLASSES, activation="softmax")], input_dim=FEATURES, seed=0)


# ----------------------------------------------------------------------------- the child run
def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _EpochClock(fd.Callback):
    """Seconds of each epoch (fit's input checks and label scan excluded, for both modes)."""

    def __init__(self):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._t0)


def _child(mode, px, py, epochs):
    """One training run in this (fresh) process; prints a JSON line of figures."""
    import resource
    P.set_threads(P.THREADS)
    warm = np.array(np.load(px, mmap_mode="r")[:BATCH * 2])
    _net().fit(warm, np.load(py, mmap_mode="r")[:BATCH * 2], optimizer=fd.optim.Adam(),
               epochs=1, batch_size=BATCH, verbose=0)          # compile outside the timing
    del warm
    rss_before = _rss()
    load_s = 0.0
    if mode == "cold":
        fd_ = os.open(px, os.O_RDONLY)
        os.posix_fadvise(fd_, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd_)
    if mode == "memory":
        t0 = time.perf_counter()
        X, y = np.load(px), np.load(py)
        load_s = time.perf_counter() - t0
    else:
        X, y = px, py
    model = _net()
    clock = _EpochClock()
    with P.MachineLoad() as load:
        t0 = time.perf_counter()
        hist = model.fit(X, y, optimizer=fd.optim.Adam(lr=1e-3), epochs=epochs,
                         batch_size=BATCH, verbose=0, callbacks=[clock])
        fit_s = time.perf_counter() - t0
    rows = np.load(py, mmap_mode="r").shape[0]
    train_s = sum(clock.seconds)
    print(json.dumps({"mode": mode, "rows": rows, "epochs": epochs, "train_s": train_s,
                      "fit_s": fit_s, "setup_s": fit_s - train_s,
                      "samples_per_s": rows * epochs / train_s, "load_s": load_s,
                      "rss_before": rss_before,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "final_loss": hist["loss"][-1], "foreign_load": load.foreign}))


def _run_child(mode, px, py, epochs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(HERE), HERE, os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "child", mode, px, py,
                        str(epochs)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"benchmark child {mode} failed:\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", autouse=True)
def _ceilings():
    P.set_threads(P.THREADS)
    P.measure_ceilings("test_bench_data.py (784-256-128-10, batch 64/256/1024)",
                       [s for b in (64, 256, 1024)
                        for s in P.net_gemm_shapes([256, 128, CLASSES], FEATURES, b)])


# ----------------------------------------------------------------------------- the file
@pytest.fixture(scope="module")
def teacher_file():
    keep = os.environ.get("FASTDL_BENCH_DATA_KEEP", "") not in ("", "0")
    base = os.environ.get("FASTDL_BENCH_DATA_DIR") or tempfile.gettempdir()
    d = os.path.join(base, f"fastdl_bench_data_{ROWS}")
    px = os.path.join(d, "teacher.npy")
    py = os.path.join(d, "teacher.labels.npy")
    need = ROWS * FEATURES * 4 + ROWS * 8
    made_s = None
    if not (os.path.exists(px) and os.path.exists(py)
            and np.load(py, mmap_mode="r").shape[0] == ROWS):
        os.makedirs(d, exist_ok=True)
        free = shutil.disk_usage(d).free
        if free < need * 1.1:
            pytest.skip(f"{need / GiB:.1f} GiB needed in {d}, {free / GiB:.1f} GiB free: set "
                        "FASTDL_BENCH_DATA_ROWS lower or FASTDL_BENCH_DATA_DIR elsewhere")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fastdl", "make-data", "teacher", "--n", str(ROWS),
                        "--features", str(FEATURES), "--classes", str(CLASSES), "--out", px],
                       check=True, capture_output=True,
                       env=dict(os.environ, PYTHONPATH=os.path.dirname(HERE)))
        made_s = time.perf_counter() - t0
    yield px, py, made_s
    if not keep:
        shutil.rmtree(d, ignore_errors=True)


_COLUMNS = [("mode", "data", "{}"), ("samples_per_s", "samples/s", "{:,.0f}"),
            ("ratio", "vs in memory", "{:.0%}"), ("peak_gib", "peak RSS GiB", "{:.2f}"),
            ("load_s", "np.load s", "{:.1f}"), ("setup_s", "fit setup s", "{:.1f}"),
            ("final_loss", "final cost", "{:.4f}"),
            ("foreign_load", "other load", "{:.0%}")]


#: the rows of the out-of-core group: (child mode, row name)
MODES = [("stream", "streamed (page cache)"), ("cold", "streamed, cold cache"),
         ("memory", "in memory")]


def _measure_out_of_core(px, py, made_s):
    """The three training runs, each in a fresh process, one after another (one round)."""
    size_gb = os.path.getsize(px) / 1e9
    results = {}

    def child(mode):
        def run():
            results[mode] = _run_child(mode, px, py, EPOCHS)
            return results[mode]["train_s"]     # the epochs only (the child's callback clock)
        return run

    rows = P.Rows(unit="epoch")
    for mode, name in MODES:
        rows.add(name, child(mode), EPOCHS)
    rows.run(1)
    mem = results["memory"]["samples_per_s"]
    table = [dict(results[mode], mode=name, ratio=results[mode]["samples_per_s"] / mem,
                  peak_gib=results[mode]["peak_rss"] / GiB) for mode, name in MODES]
    P.print_table(f"out of core vs in memory: 784-256-128-10, Adam, batch {BATCH}, {EPOCHS} "
                  f"epoch(s) of {ROWS:,} x {FEATURES} float32 ({size_gb:.1f} GB file"
                  + (f", written in {made_s:.0f}s" if made_s else "") + f"; {P.THREADS} threads)",
                  table, _COLUMNS)
    ratio = results["stream"]["samples_per_s"] / mem
    peak = results["stream"]["peak_rss"] / GiB
    print(f"targets: streamed >= 80% of in memory: {ratio:.0%} "
          f"({'met' if ratio >= 0.8 else 'MISSED'}); streamed peak RSS <= 1.5 GB: "
          f"{peak * GiB / 1e9:.2f} GB ({'met' if peak * GiB <= 1.5e9 else 'MISSED'})")
    for r in results.values():
        assert np.isfinite(r["final_loss"])
    rows.results = {name: results[mode] for mode, name in MODES}
    rows.common = {"rows": ROWS, "file_gb": size_gb, "epochs": EPOCHS}
    rows.targets_met = ratio >= 0.8 and peak * GiB <= 1.5e9
    return rows


@pytest.mark.parametrize("row", [name for _, name in MODES])
def test_out_of_core_vs_in_memory(benchmark, teacher_file, row):
    """One row of the group "out of core": a streamed run (warm or cold page cache) or the
    in-memory run."""
    benchmark.group = f"out of core vs in memory (784-256-128-10, Adam, batch {BATCH})"
    px, py, made_s = teacher_file
    rows = P.group_rows("out of core", lambda: _measure_out_of_core(px, py, made_s))
    r = rows.results[row]
    rows.record(benchmark, row, ref="in memory", ref_label="in_memory",
                per_unit={"samples_per_s": ROWS}, peak_rss_gib=r["peak_rss"] / GiB,
                fit_setup_s=r["setup_s"], np_load_s=r["load_s"], final_loss=r["final_loss"],
                child=r, **rows.common)
    if ASSERT_TARGETS and not P.SMALL and row.startswith("streamed (page"):
        assert rows.targets_met, rows.results


def _measure_assembly(X, y, bs):
    """Gathers alone and whole steps (gathers included), interleaved, per batch."""
    from fastdl.data.batches import epoch_order
    model = _net()
    opt = fd.optim.Adam()
    model.fit(X[:2 * bs], y[:2 * bs], optimizer=opt, epochs=1, batch_size=bs, verbose=0)
    Xc, Yc = model._XY(X, y)
    k, p = model._bk.k, model.params
    ws = model._workspace(bs)
    order = epoch_order(0, 0, ASSEMBLY_ROWS)
    n_b = min(ASSEMBLY_STEPS, ASSEMBLY_ROWS // bs)
    batches = [order[b * bs:(b + 1) * bs] for b in range(n_b)]

    def gathers():
        for idx in batches:
            k.gather_rows(ws.Xb, Xc, idx)
            k.gather_rows(ws.Yb, Yc, idx)

    def steps():
        for idx in batches:
            k.gather_rows(ws.Xb, Xc, idx)
            k.gather_rows(ws.Yb, Yc, idx)
            model._step_costs(ws.Xb, ws.Yb, ws, 0.0)
            opt.step(p.data, p.grad)
    # no pause between the two: the gathers of fit run right after the previous step
    rows = P.Rows(unit="batch", settle_s=0.0)
    rows.add(GATHER, P.timed(gathers), n_b)
    rows.add(STEP, P.timed(steps), n_b)
    rows.run(1 if P.SMALL else 5)
    g_us, s_us = rows.median(GATHER) * 1e6, rows.median(STEP) * 1e6
    gather_bytes = (Xc.itemsize * FEATURES + Yc.itemsize * CLASSES) * bs
    share = rows.ratio(GATHER, STEP)
    row = {"batch": bs, "gather_us": g_us, "step_us": s_us, "share": share,
           "gbs": gather_bytes / (g_us * 1e-6) / 1e9, "sps": bs / (s_us * 1e-6),
           "foreign": rows.foreign, "target": "<=5% " + ("met" if share <= 0.05 else "MISSED")}
    _assembly_rows.append(row)
    P.print_table(f"mini-batch assembly in memory (784-256-128-10, Adam, {ASSEMBLY_ROWS:,} "
                  f"rows, {P.THREADS} threads)", [row], _ASSEMBLY_COLUMNS)
    assert 0 < share < 1
    rows.table, rows.gather_bytes = row, gather_bytes
    return rows


GATHER, STEP = "gather (2 x gather_rows)", "whole step (gathers included)"
_ASSEMBLY_COLUMNS = [("batch", "batch", "{}"), ("gather_us", "gather us/batch", "{:.1f}"),
                     ("step_us", "step us/batch", "{:.0f}"), ("share", "share", "{:.1%}"),
                     ("target", "target", "{}"), ("gbs", "gather GB/s", "{:.1f}"),
                     ("sps", "samples/s", "{:,.0f}"), ("foreign", "other load", "{:.0%}")]
_assembly_rows: list = []


@pytest.mark.parametrize("row", [GATHER, STEP])
@pytest.mark.parametrize("bs", [64, 256, 1024])
def test_batch_assembly_share(benchmark, bs, row):
    """Mini-batch assembly (two gathers) as a share of the whole step, in memory: the group
    "batch assembly, batch <b>" has the two rows; a row's time is seconds per batch."""
    benchmark.group = f"batch assembly, batch {bs} (784-256-128-10, Adam)"
    P.set_threads(P.THREADS)

    def measure():
        rng = np.random.default_rng(0)
        X = rng.standard_normal((ASSEMBLY_ROWS, FEATURES), dtype=np.float32)
        y = rng.integers(0, CLASSES, ASSEMBLY_ROWS)
        return _measure_assembly(X, y, bs)
    rows = P.group_rows(("batch assembly", bs), measure)
    t = rows.table
    per_unit = {"samples_per_s": bs}
    if row == GATHER:
        per_unit["GB_per_s"] = rows.gather_bytes / 1e9
    rows.record(benchmark, row, per_unit=per_unit, batch=bs, share_of_step=t["share"],
                target=t["target"], rows=ASSEMBLY_ROWS)
    if ASSERT_TARGETS and not P.SMALL and row == GATHER:
        assert t["share"] <= 0.05, t


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    _child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
