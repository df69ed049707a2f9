"""Training throughput (issue 2, "Benchmarks"): fastdl beside PyTorch CPU and the NumPy backend.

    python -m pytest benchmarks/test_bench_train.py -q -s        # full sizes, ratio tables
    python -m pytest benchmarks --benchmark-disable -q            # CI: once, small sizes

What each figure means:

* ``samples/s``: training examples per second over whole epochs (``fit`` with reshuffling,
  forward, loss, backward and SGD update for every mini-batch; the last partial batch kept),
  median over rounds, compilation excluded by a warm-up epoch. PyTorch runs the idiomatic loop
  (``randperm``, index, forward, loss, backward, ``SGD.step``) on the same data and the same
  initial weights, on the same number of threads.
* ``x torch`` / ``x numpy``: fastdl cpu samples/s divided by the peer's, measured in this run.
* ``GFLOP/s``: 6 * weights * samples/s (forward 2P, backward 4P per sample), beside a 2048^3
  float32 ``np.matmul`` measured in this run (the machine's practical ceiling).

Targets on the 2-core dev machine: (a) 2-5-2-1 >= 40x PyTorch; (b) 784-256-128-10 >= 1.5x
PyTorch at batch 64 and >= 1.1x at 256 and 1024. They are printed as met / MISSED; set
``FASTDL_BENCH_ASSERT=1`` to turn a miss into a failure (never in CI: no timed assertions there).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
import pytest

import fastdl as fd
import _peers as P

ASSERT_TARGETS = os.environ.get("FASTDL_BENCH_ASSERT", "") not in ("", "0")
HERE = os.path.dirname(os.path.abspath(__file__))

#: Sizes: (rows, fastdl epochs per round, torch epochs per round, numpy epochs per round, rounds)
SMALL_NET = dict(m=512, fd_epochs=1, torch_epochs=1, np_epochs=1, rounds=1) if P.SMALL else \
    dict(m=32768, fd_epochs=40, torch_epochs=1, np_epochs=1, rounds=5)
MNIST_NET = dict(m=1024, fd_epochs=1, torch_epochs=1, np_epochs=1, rounds=1) if P.SMALL else \
    dict(m=16384, fd_epochs=2, torch_epochs=2, np_epochs=1, rounds=5)
SGEMM_N = 256 if P.SMALL else 2048

TARGETS = {("2-5-2-1", 64): 40.0, ("784-256-128-10", 64): 1.5,
           ("784-256-128-10", 256): 1.1, ("784-256-128-10", 1024): 1.1}

_rows: list[dict] = []


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    torch = P.try_torch()
    return {"cpu": cpu, "cpus": os.cpu_count(), "threads": P.THREADS,
            "numpy": np.__version__, "numba": __import__("numba").__version__,
            "torch": torch.__version__ if torch else None, "small": P.SMALL}


@pytest.fixture(scope="module", autouse=True)
def _threads_and_summary():
    P.set_threads(P.THREADS)
    yield
    if _rows:
        P.print_table(f"fastdl training throughput ({'SMALL mode' if P.SMALL else 'full'}; "
                      f"{P.THREADS} threads; {_machine()['cpu']})", _rows, _COLUMNS)


@pytest.fixture(scope="module")
def sgemm():
    P.set_threads(P.THREADS)
    return P.sgemm_gflops(SGEMM_N, repeats=2 if P.SMALL else 5)


_COLUMNS = [("net", "net", "{}"), ("batch", "batch", "{}"),
            ("fastdl", "fastdl cpu samples/s", "{:,.0f}"),
            ("torch", "torch samples/s", "{:,.0f}"),
            ("numpy", "fastdl numpy samples/s", "{:,.0f}"),
            ("x_torch", "x torch", "{:.2f}"), ("x_numpy", "x numpy", "{:.1f}"),
            ("target", "target", "{}"),
            ("gflops", "GFLOP/s", "{:.1f}"), ("pct_sgemm", "% sgemm", "{:.0f}%")]


def _run_case(benchmark, name, sizes, activations, input_dim, X, y, batch_size, lr, cfg,
              sgemm_gflops):
    make = lambda backend: P.dense_model(sizes, activations, input_dim, backend)  # noqa: E731
    m = X.shape[0]
    # 1. correctness before timing
    check = P.check_against_reference(make, X[:max(4 * batch_size, 256)],
                                      y[:max(4 * batch_size, 256)], lr, batch_size)

    # 2. fastdl cpu: warm-up epoch (compiles), then whole-epoch rounds through pytest-benchmark
    model = make("cpu")
    opt = fd.optim.SGD(lr=lr)
    model.fit(X, y, optimizer=opt, epochs=1, batch_size=batch_size, verbose=0)
    fd_run = lambda: model.fit(X, y, optimizer=opt, epochs=cfg["fd_epochs"],  # noqa: E731
                               batch_size=batch_size, verbose=0)
    t_fd = P.bench_pedantic(benchmark, fd_run, cfg["rounds"])
    fd_sps = cfg["fd_epochs"] * m / t_fd.median
    assert np.isfinite(model.evaluate(X[:1024], y[:1024])["loss"])

    # 3. PyTorch, same data, same initial weights, same threads
    torch_sps = None
    if P.try_torch() is not None:
        tr = P.TorchTrainer(make("numpy"), X, y, lr, batch_size)

        def torch_run():
            for _ in range(cfg["torch_epochs"]):
                tr.epoch()
        t_t = P.time_rounds(torch_run, cfg["rounds"], warmup=1)
        torch_sps = cfg["torch_epochs"] * m / t_t.median

    # 4. the NumPy reference backend
    ref = make("numpy")
    ref_opt = fd.optim.SGD(lr=lr)
    ref_run = lambda: ref.fit(X, y, optimizer=ref_opt, epochs=cfg["np_epochs"],  # noqa: E731
                              batch_size=batch_size, verbose=0)
    t_np = P.time_rounds(ref_run, max(1, min(3, cfg["rounds"])), warmup=1)
    np_sps = cfg["np_epochs"] * m / t_np.median

    flops = P.flops_per_sample(model) * fd_sps / 1e9
    target = TARGETS.get((name, batch_size))
    x_torch = fd_sps / torch_sps if torch_sps else None
    row = {"net": name, "batch": batch_size, "fastdl": fd_sps, "torch": torch_sps,
           "numpy": np_sps, "x_torch": x_torch, "x_numpy": fd_sps / np_sps,
           "target": (f">={target}x " + ("met" if x_torch >= target else "MISSED"))
           if target and x_torch else None,
           "gflops": flops, "pct_sgemm": 100.0 * flops / sgemm_gflops}
    _rows.append(row)
    info = dict(row, rows=m, sgemm_gflops=sgemm_gflops, sgemm_n=SGEMM_N,
                fastdl_round_s=t_fd.times, fastdl_epochs_per_round=cfg["fd_epochs"],
                numpy_round_s=t_np.times, check=check, date=time.strftime("%Y-%m-%d %H:%M"),
                **_machine())
    if torch_sps:
        info["torch_round_s"] = t_t.times
    benchmark.extra_info.update(info)
    P.print_table(f"{name}, batch {batch_size}, SGD, {m} rows (sgemm {SGEMM_N}^3: "
                  f"{sgemm_gflops:.0f} GFLOP/s)", [row], _COLUMNS)
    if ASSERT_TARGETS and target and x_torch is not None:
        assert x_torch >= target, f"{name} batch {batch_size}: {x_torch:.2f}x < {target}x"
    return row


def test_train_2_5_2_1(benchmark, sgemm):
    """(a) 2-5-2-1 relu/relu/sigmoid, batch 64, SGD: the whole-epoch kernel path."""
    X, y = P.xor_data(SMALL_NET["m"])
    benchmark.group = "train 2-5-2-1"
    _run_case(benchmark, "2-5-2-1", [5, 2, 1], ["relu", "relu", "sigmoid"], 2, X, y, 64, 0.1,
              SMALL_NET, sgemm)


@pytest.mark.parametrize("batch_size", [64, 256, 1024])
def test_train_784_256_128_10(benchmark, sgemm, batch_size):
    """(b) 784-256-128-10 relu/relu/softmax, SGD, float32: BLAS GEMMs + fused jitted passes."""
    X, y = P.mnist_like(MNIST_NET["m"])
    benchmark.group = "train 784-256-128-10"
    _run_case(benchmark, "784-256-128-10", [256, 128, 10], ["relu", "relu", "softmax"], 784,
              X, y, batch_size, 0.05, MNIST_NET, sgemm)


def test_cold_start():
    """(c) A new process that imports fastdl and runs one training step; warm and empty JIT
    cache (benchmarks/cold_start.py). Small mode: one warm run, figures printed, no timing."""
    cmd = [sys.executable, os.path.join(HERE, "cold_start.py"), "--json",
           "--warm-runs", "1" if P.SMALL else "3"]
    if P.SMALL:
        cmd += ["--modes", "fit"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    print("\n" + "\n".join(proc.stdout.strip().splitlines()[:-1]))
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["runs"], "no cold-start figure"
    for r in res["runs"]:
        assert r["warm_wall_s"] > 0 and r["empty_wall_s"] > 0
        assert np.isfinite(r["cost"]) and r["cost"] == pytest.approx(r["cost_empty"], rel=1e-6)
        if ASSERT_TARGETS:
            assert r["warm_ok"], f"cold start ({r['mode']}) {r['warm_wall_s']:.2f} s > 1.5 s"
