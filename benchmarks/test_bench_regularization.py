"""Training throughput with dropout and with batch norm (issue 4, "Benchmarks"): fastdl beside
PyTorch CPU, and the cost of each over the plain net.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest \\
        benchmarks/test_bench_regularization.py --benchmark-only [-s]   # full (-s: tables)
    python -m pytest benchmarks --benchmark-disable -q                   # CI: once, small sizes

Nets (784-256-128-10, float32, softmax cross-entropy, Adam lr 1e-3, batch 64 / 256 / 1024):

* ``plain``      Dense(256, relu), Dense(128, relu), Dense(10, softmax)
* ``dropout``    the same with Dropout(keep_prob=0.8) after each hidden layer
  (PyTorch: ``nn.Dropout(p=0.2)``)
* ``batchnorm``  Dense(256) (no bias), BatchNorm(), Activation(relu), Dense(128), BatchNorm(),
  Activation(relu), Dense(10, softmax) (PyTorch: ``Linear(bias=False)``, ``BatchNorm1d``)

Rows: every batch size is a pytest-benchmark group ("regularization, batch <b>") with six rows,
``fastdl plain|dropout|batchnorm`` and ``torch plain|dropout|batchnorm`` (skipped without
torch), so ``--benchmark-only`` prints them side by side and ``--benchmark-save`` /
``--benchmark-compare`` track each. A row's time is **seconds per epoch**, every row measured
the same way: the six run interleaved round by round (``_peers.Rows``: each variant in fastdl,
then in PyTorch, a pause of ``_peers.SETTLE_S`` before each so idle OpenMP/BLAS threads of the
previous one are asleep), each round timed by the trainer itself (``perf_counter`` around
``fit``; for PyTorch, in its worker process, around its epoch loop: the pipe round trip is not
PyTorch's cost), and pytest-benchmark receives those per-round times
(``_peers.record_seconds``) rather than timing the rows back to back, which on this shared
machine would compare different minutes. ``extra_info``: ``samples_per_s``,
``ratio_vs_fastdl`` (this row's speed / the fastdl row of the same variant) and
``fastdl_speedup`` (its inverse), ``cost_vs_plain`` (the same library's throughput lost to the
variant), each a median of per-round ratios.

What each figure means:

* ``samples/s``: training examples per second over whole epochs (``fit``: reshuffling,
  forward, loss, backward, Adam update per mini-batch), median over rounds, compilation
  excluded by a warm-up epoch. PyTorch runs the idiomatic loop (``randperm``, index, forward,
  loss, backward, ``Adam.step``) on the same data from the same initial weights, on the same
  number of threads, in a process of its own (``_reg_peer.py``).
* ``x torch``: fastdl samples/s / PyTorch samples/s for the same variant: the median over
  rounds of the ratio within a round.
* ``cost``: 1 - variant samples/s / plain samples/s, per library (the throughput lost to
  dropout or batch norm), likewise a median of per-round ratios.
* ``other load``: CPU used by other processes while the case ran (a shared 2-core machine).
  ``FASTDL_BENCH_ROUNDS`` (default 5) sets the rounds; more rounds steady the medians there.

Before timing, per variant: fastdl cpu == the NumPy reference after one SGD step (dropout masks
are bit-identical across backends); PyTorch == fastdl after one SGD step for plain and batch
norm (weights, gamma, beta, running mean), and the same eval-mode cost for dropout (masks differ
between libraries, so its training step cannot be compared). (SGD: Adam's first step is
lr * g / |g|, which float32 rounding flips for near-zero gradients.)

Targets (issue 4): >= 1.5x PyTorch at batch 64 and >= 1.2x at 256 and 1024 for the dropout and
batch-norm nets; cost of dropout and of batch norm <= 15% (PyTorch loses 24-49%). Printed as
met / MISSED; ``FASTDL_BENCH_ASSERT=1`` turns a miss into a failure (never in CI).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastdl as fd
import _peers as P
from _reg_peer import RegPeer

ASSERT_TARGETS = os.environ.get("FASTDL_BENCH_ASSERT", "") not in ("", "0")
SIZES = dict(m=512, fd_epochs=1, torch_epochs=1, rounds=1) if P.SMALL else \
    dict(m=16384, fd_epochs=2, torch_epochs=2,
         rounds=int(os.environ.get("FASTDL_BENCH_ROUNDS", 5)))
VARIANTS = ("plain", "dropout", "batchnorm")
BATCHES = (64, 256, 1024)
KEEP, LR = 0.8, 1e-3
CHECK_LR = 0.05     # the correctness steps use SGD (Adam's first step is lr * sign(g))
TARGET_X = {64: 1.5, 256: 1.2, 1024: 1.2}
TARGET_COST = 0.15
#: the rows of every group, in the order pytest runs them (the first one measures the group)
ROWS = [f"{lib} {v}" for lib in ("fastdl", "torch") for v in VARIANTS]

_rows: dict = {}
_COLUMNS = [("variant", "variant", "{}"), ("batch", "batch", "{}"),
            ("fastdl", "fastdl samples/s", "{:,.0f}"), ("torch", "torch samples/s", "{:,.0f}"),
            ("x_torch", "x torch", "{:.2f}"), ("target", "target", "{}"),
            ("fd_cost", "fastdl cost", "{:+.1%}"), ("torch_cost", "torch cost", "{:+.1%}"),
            ("cost_target", "cost target", "{}"), ("foreign", "other load", "{:.0%}")]


def make_model(variant, backend="cpu", seed=0):
    if variant == "batchnorm":
        layers = [fd.Dense(256), fd.BatchNorm(), fd.Activation("relu"),
                  fd.Dense(128), fd.BatchNorm(), fd.Activation("relu")]
    else:
        layers = [fd.Dense(256, activation="relu"), fd.Dense(128, activation="relu")]
        if variant == "dropout":
            layers.insert(2, fd.Dropout(KEEP))
            layers.insert(1, fd.Dropout(KEEP))
    layers.append(fd.Dense(10, activation="softmax"))
    return fd.Sequential(layers, input_dim=784, seed=seed, backend=backend, dtype="float32")


@pytest.fixture(scope="module")
def workers():
    """One PyTorch worker per variant for the whole module (each starts and imports torch
    once); None without torch."""
    if not P.torch_available():
        yield None
        return
    procs = {v: RegPeer() for v in VARIANTS}
    for w in procs.values():
        P._LIVE_WORKERS.add(w.proc.pid)         # their CPU is ours, not foreign load
    try:
        yield procs
    finally:
        for w in procs.values():
            w.close()
            P._LIVE_WORKERS.discard(w.proc.pid)


@pytest.fixture(scope="module", autouse=True)
def _threads_and_summary():
    P.set_threads(P.THREADS)
    P.measure_ceilings("test_bench_regularization.py (784-256-128-10, batch 64/256/1024)",
                       [s for b in BATCHES for s in P.net_gemm_shapes([256, 128, 10], 784, b)])
    if not P.SMALL:     # a shared machine: wait (bounded) for other processes to calm down
        foreign = P.wait_until_quiet(float(os.environ.get("FASTDL_BENCH_WAIT_QUIET", 120)))
        if foreign is not None:
            print(f"\nload from other processes before the benchmarks: {foreign:.0%} of the CPUs")
    yield
    if _rows:
        rows = [_rows[k] for k in sorted(_rows, key=lambda k: (VARIANTS.index(k[0]), k[1]))]
        P.print_table(f"784-256-128-10, Adam, float32 ({'SMALL mode' if P.SMALL else 'full'}; "
                      f"{P.THREADS} threads; {P.cpu_model()})",
                      rows, _COLUMNS)


def _close(got, want, what, rtol=1e-4, atol=1e-5):
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(g).reshape(np.shape(w)), w, rtol=rtol, atol=atol,
                                   err_msg=f"{what}: tensor {i}")


def _check(variant, X, y, bs, peer):
    """Correctness before timing (see the module docstring); returns the largest errors."""
    xb, yb = X[:bs], y[:bs]
    cpu, ref = make_model(variant, "cpu"), make_model(variant, "numpy")
    c_cpu = cpu.train_on_batch(xb, yb, fd.optim.SGD(lr=CHECK_LR))
    c_ref = ref.train_on_batch(xb, yb, fd.optim.SGD(lr=CHECK_LR))
    np.testing.assert_allclose(c_cpu, c_ref, rtol=1e-5)
    _close(cpu.get_weights(), ref.get_weights(), f"{variant}: cpu vs numpy after one SGD step")
    out = {"cpu_numpy_cost_rel_err": abs(c_cpu - c_ref) / abs(c_ref)}
    if peer is None:
        return out
    if variant == "dropout":
        fresh = make_model(variant, "numpy")
        c_eval, c_t = fresh.evaluate(xb, yb)["loss"], peer.eval_cost(bs)
        np.testing.assert_allclose(c_t, c_eval, rtol=1e-5)
        out["torch_eval_cost_rel_err"] = abs(c_t - c_eval) / abs(c_eval)
        return out
    c_t, w_t = peer.check_step(bs, CHECK_LR)
    np.testing.assert_allclose(c_t, c_ref, rtol=1e-4)
    w_ref = ref.get_weights()
    if variant == "batchnorm":      # PyTorch keeps the unbiased running variance: skip it
        keep = [i for i, (_, name, _) in enumerate(ref._weight_keys()) if name != "running_var"]
        w_t, w_ref = [w_t[i] for i in keep], [w_ref[i] for i in keep]
    _close(w_t, w_ref, f"{variant}: torch vs fastdl after one SGD step")
    out["torch_cost_rel_err"] = abs(c_t - c_ref) / abs(c_ref)
    return out


def _measure(workers, batch_size):
    """The group of one batch size: correctness checks, then the six rows timed in turn."""
    X, y = P.mnist_like(SIZES["m"])
    m = X.shape[0]
    models = {v: make_model(v) for v in VARIANTS}
    peers, checks, opts = {}, {}, {}
    for v, model in models.items():
        if workers is not None:
            peers[v] = workers[v].setup(v, model.get_weights(), X, y, LR, batch_size,
                                        P.THREADS, keep_prob=KEEP)
        checks[v] = _check(v, X, y, batch_size, peers.get(v))
        opts[v] = fd.optim.Adam(lr=LR)
        model.fit(X, y, optimizer=opts[v], epochs=1, batch_size=batch_size,
                  verbose=0)                                          # compile, warm up
        if v in peers:
            peers[v].epochs(1)
    # one round: each variant in fastdl, then in PyTorch, in turn (a pause before each)
    rows = P.Rows(unit="epoch")
    for v in VARIANTS:
        rows.add(f"fastdl {v}", P.timed(
            lambda v=v: models[v].fit(X, y, optimizer=opts[v], epochs=SIZES["fd_epochs"],
                                      batch_size=batch_size, verbose=0)), SIZES["fd_epochs"])
        if v in peers:
            rows.add(f"torch {v}", lambda v=v: peers[v].epochs(SIZES["torch_epochs"]),
                     SIZES["torch_epochs"])
    rows.run(SIZES["rounds"])
    for v, model in models.items():
        assert np.isfinite(model.evaluate(X[:512], y[:512])["loss"]), v
    table = []
    for v in VARIANTS:
        fdv, thv = f"fastdl {v}", f"torch {v}"
        row = {"variant": v, "batch": batch_size, "fastdl": m / rows.median(fdv),
               "foreign": rows.foreign}
        if thv in rows:
            row["torch"] = m / rows.median(thv)
            row["x_torch"] = rows.ratio(thv, fdv)      # (torch s/epoch) / (fastdl s/epoch)
        if v != "plain":
            row["fd_cost"] = 1.0 - rows.ratio("fastdl plain", fdv)
            if thv in rows:
                row["torch_cost"] = 1.0 - rows.ratio("torch plain", thv)
            row["cost_target"] = (f"<={TARGET_COST:.0%} "
                                  + ("met" if row["fd_cost"] <= TARGET_COST else "MISSED"))
            if "x_torch" in row:
                target = TARGET_X[batch_size]
                row["target"] = f">={target}x " + ("met" if row["x_torch"] >= target
                                                    else "MISSED")
        _rows[(v, batch_size)] = row
        table.append(row)
    P.print_table(f"batch {batch_size}, Adam, {m} rows", table, _COLUMNS)
    rows.table = {r["variant"]: r for r in table}
    rows.common = dict(rows=m, batch=batch_size, check=checks,
                       torch_info={v: p.info for v, p in peers.items()})
    return rows


@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("batch_size", BATCHES)
def test_train_regularized(benchmark, workers, batch_size, row):
    """One row of the group "regularization, batch <b>": a variant in fastdl or PyTorch."""
    lib, variant = row.split(" ", 1)
    if lib == "torch":
        P.require_torch()
    benchmark.group = f"regularization, batch {batch_size}"
    rows = P.group_rows(("regularization", batch_size), lambda: _measure(workers, batch_size))
    t = rows.table[variant]
    info = dict(rows.common, variant=variant, library=lib, target=t.get("target"),
                cost_target=t.get("cost_target"))
    if variant != "plain":      # the throughput lost to the variant, same library, per round
        info["cost_vs_plain"] = t["fd_cost" if lib == "fastdl" else "torch_cost"]
    rows.record(benchmark, row, ref=f"fastdl {variant}",
                per_unit={"samples_per_s": rows.common["rows"]}, **info)
    if ASSERT_TARGETS and lib == "fastdl" and variant != "plain" and not P.SMALL:
        if "x_torch" in t:
            assert t["x_torch"] >= TARGET_X[batch_size], t
        assert t["fd_cost"] <= TARGET_COST, t
