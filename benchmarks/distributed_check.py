"""Data-parallel training over MPI (issue 10, "Benchmarks"): 2 ranks x 1 thread vs 1 rank x 1
thread, and the gradient allreduce's time and bandwidth.

    python benchmarks/distributed_check.py              # full sizes, prints a table + JSON
    python benchmarks/distributed_check.py --quick      # seconds: the CI smoke (tiny sizes)

The driver launches ``mpiexec -n R python distributed_check.py --worker ...`` for R = 1 and
R = 2, alternating them ``--rounds`` times (default 3) so that load from other processes hits
both alike, with ``NUMBA_NUM_THREADS = OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = 1`` in every
rank (one thread per rank). Each worker:

1. **Training throughput**: the 784-256-128-10 net (relu, relu, softmax; 235,146 float32
   parameters), Adam, global batch 1024, in memory on teacher data (``--rows``, default 65,536:
   64 steps per epoch); one warm-up epoch (JIT compilation, first touches), then ``--epochs``
   timed epochs; samples/s = global rows / wall time of the timed epochs on rank 0 (a
   callback's clock: ``fit``'s input checks excluded; the ranks step together).
   Correctness before timing: every rank's parameters must be bitwise equal after the
   warm-up epoch, and the final training loss of the R = 2 run must match the R = 1 run's
   within float32 summation noise (the parameters would be equal in float64, see
   tests/test_distributed.py).
2. **Allreduce**: ``Communicator.allreduce_`` (the polled non-blocking ``MPI_Iallreduce`` that
   ``fit`` uses) over float32 buffers of 235,146 (this net's flat gradient + the loss slot) and
   10,000,000 elements, and MPI's blocking ``Allreduce`` beside it; median seconds per call
   over ``--reps`` calls after warm-up, algorithm bandwidth (bytes / time) and bus bandwidth
   (2 (R-1)/R bytes / time, the NCCL-tests convention: what each rank moves in a ring).
   With R = 1 there is nothing to move (reported, not meaningful).
3. **Ceiling** (``--independent``, run beside the two): 2 plain one-process fits at once, each
   on half the rows with half the batch (the per-rank arithmetic of the 2-rank run without any
   communication or lock-step): what two processes can get out of this machine. The 2-rank
   run's share of it isolates the cost of data parallelism from the hardware's (shared caches,
   memory bandwidth, SMT siblings posing as cores, other processes' load).

Reported: medians over rounds, the ratio 2-rank / 1-rank samples/s (target >= 1.7 on a 2-core
machine), allreduce time as a share of the 2-rank step, and a CPU-time projection of the ratio:
global samples per CPU-second of the busiest rank (``time.process_time``), 2 ranks over 1, i.e.
the ratio each rank would reach with a core of its own; it is robust to other processes'
load (which steals wall time, not CPU time) and counts the time a rank spins waiting in the
allreduce, so it is a lower bound where ranks wait on each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# ------------------------------------------------------------------------------ worker
def _Clock():
    import fastdl as fd

    class Clock(fd.Callback):
        """Wall and CPU time from the first timed epoch's start to the last one's end."""
        t0 = t1 = c0 = c1 = None

        def on_epoch_begin(self, epoch, logs=None):
            if self.t0 is None:
                self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.t1, self.c1 = time.perf_counter(), time.process_time()
    return Clock()


def _independent(a, fd, comm, model, opt, X, y):
    """R plain single-process fits at once, rank r on rows r::R with batch batch / R: the same
    arithmetic per rank as the distributed run, minus every allreduce and synchronisation."""
    rank, size = comm.rank, comm.size
    Xr, yr = X[rank::size], y[rank::size]
    bs = a.batch // size
    model.fit(Xr, yr, optimizer=opt, epochs=1, batch_size=bs, verbose=0)
    comm.comm.Barrier()
    clock = _Clock()
    model.fit(Xr, yr, optimizer=opt, epochs=a.epochs, batch_size=bs, verbose=0,
              callbacks=[clock])
    dt = float(comm.allgather(np.array([clock.t1 - clock.t0])).max())
    cpu = float(comm.allgather(np.array([clock.c1 - clock.c0])).max())
    if rank == 0:
        print("RESULT " + json.dumps({"ranks": size, "samples_per_s": a.rows * a.epochs / dt,
                                      "samples_per_cpu_s": a.rows * a.epochs / cpu}),
              flush=True)


def worker(a):
    import fastdl as fd
    from fastdl.distributed.comm import Communicator
    fd.set_num_threads(1)
    comm = Communicator()
    rank, size = comm.rank, comm.size
    X, y = fd.data.make_teacher(a.rows, n_features=784, n_classes=10, seed=0,
                                dtype=np.float32)
    model = fd.Sequential([fd.Dense(a.hidden[0], activation="relu"),
                           fd.Dense(a.hidden[1], activation="relu"),
                           fd.Dense(10, activation="softmax")], input_dim=784, seed=0)
    opt = fd.optim.Adam(lr=1e-3)
    if a.independent:       # the ceiling: each rank alone on its share, no communication
        return _independent(a, fd, comm, model, opt, X, y)
    model.fit(X, y, optimizer=opt, epochs=1, batch_size=a.batch, verbose=0, distributed=True)
    table = comm.allgather(np.frombuffer(model.params.snapshot().tobytes(), np.uint8)
                           .astype(np.float64)[::97])      # a sample of every rank's bytes
    same = bool((table == table[0]).all())
    clock = _Clock()
    h = model.fit(X, y, optimizer=opt, epochs=a.epochs, batch_size=a.batch, verbose=0,
                  distributed=True, callbacks=[clock])
    dt = clock.t1 - clock.t0            # the epochs only: fit's input checks excluded
    cpu = float(comm.allgather(np.array([clock.c1 - clock.c0])).max())   # the busiest rank
    out = {"ranks": size, "samples_per_s": a.rows * a.epochs / dt, "epoch_s": dt / a.epochs,
           "samples_per_cpu_s": a.rows * a.epochs / cpu,
           "steps_per_epoch": -(-a.rows // a.batch), "params": model.params.size,
           "ranks_identical": same, "final_loss": h.history["loss"][-1]}
    MPI = comm.MPI
    for n in a.sizes:
        buf = np.ones(n, np.float32)
        for _ in range(3):
            comm.allreduce_(buf)
        polled, blocking = [], []
        for _ in range(a.reps):
            comm.comm.Barrier()
            t = time.perf_counter()
            comm.allreduce_(buf)
            polled.append(time.perf_counter() - t)
            comm.comm.Barrier()
            t = time.perf_counter()
            comm.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            blocking.append(time.perf_counter() - t)
        # the slowest rank's time is the collective's
        med = lambda v: float(comm.allgather(np.array([statistics.median(v)])).max())
        tp, tb = med(polled), med(blocking)
        out[f"allreduce_{n}"] = {"elements": n, "bytes": 4 * n, "polled_s": tp,
                                 "blocking_s": tb, "algbw_GBs": 4 * n / tp / 1e9,
                                 "busbw_GBs": 2 * (size - 1) / size * 4 * n / tp / 1e9}
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


# ------------------------------------------------------------------------------ driver
def _mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(here):
        return here
    import shutil
    exe = shutil.which("mpiexec")
    if exe is None:
        raise SystemExit("no mpiexec: pip install 'fastdl[mpi]'")
    return exe


def run_worker(ranks, args):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")]
                                                    if p]))
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, os.path.abspath(__file__),
           "--worker"] + args
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n"
                           f"{proc.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def _load():
    """Other processes' share of the CPUs during the run (1-minute load average / cores)."""
    try:
        return os.getloadavg()[0] / os.cpu_count()
    except OSError:
        return float("nan")


def drive(a):
    args = ["--rows", str(a.rows), "--epochs", str(a.epochs), "--batch", str(a.batch),
            "--reps", str(a.reps), "--hidden", *map(str, a.hidden),
            "--sizes", *map(str, a.sizes)]
    runs = {1: [], 2: [], "independent": []}
    for _ in range(a.rounds):
        for r in (1, 2):
            runs[r].append(run_worker(r, args))
        runs["independent"].append(run_worker(2, args + ["--independent"]))
    med = lambda r, key: statistics.median(x[key] for x in runs[r])
    sps1, sps2 = med(1, "samples_per_s"), med(2, "samples_per_s")
    cps1, cps2 = med(1, "samples_per_cpu_s"), med(2, "samples_per_cpu_s")
    spsi = med("independent", "samples_per_s")
    cpsi = med("independent", "samples_per_cpu_s")
    loss1, loss2 = med(1, "final_loss"), med(2, "final_loss")
    summary = {"samples_per_s_1rank": sps1, "samples_per_s_2ranks": sps2,
               "ratio": sps2 / sps1, "cpu_ratio": cps2 / cps1,
               "samples_per_s_independent": spsi, "ceiling_ratio": spsi / sps1,
               "ceiling_cpu_ratio": cpsi / cps1, "final_loss_1rank": loss1,
               "final_loss_2ranks": loss2,
               "ranks_identical": all(x["ranks_identical"] for x in runs[2]),
               "load_per_core_after": _load(), "rounds": a.rounds, "rows": a.rows,
               "batch": a.batch, "params": runs[1][0]["params"],
               "steps_per_epoch": runs[1][0]["steps_per_epoch"], "allreduce": {},
               # every round, for benchmark rows: seconds per epoch of all the rows
               "rounds_epoch_s": {str(r): [a.rows / x["samples_per_s"] for x in runs[r]]
                                  for r in runs}}
    step2 = statistics.median(x["epoch_s"] for x in runs[2]) / runs[2][0]["steps_per_epoch"]
    for n in a.sizes:
        k = f"allreduce_{n}"
        pol = statistics.median(x[k]["polled_s"] for x in runs[2])
        blk = statistics.median(x[k]["blocking_s"] for x in runs[2])
        summary["allreduce"][n] = {"polled_ms": pol * 1e3, "blocking_ms": blk * 1e3,
                                   "algbw_GBs": 4 * n / pol / 1e9,
                                   "busbw_GBs": 4 * n / pol / 1e9,   # 2(R-1)/R = 1 at R=2
                                   "share_of_2rank_step": pol / step2,
                                   "rounds_polled_s": [x[k]["polled_s"] for x in runs[2]],
                                   "rounds_blocking_s": [x[k]["blocking_s"] for x in runs[2]]}
    print(f"784-{a.hidden[0]}-{a.hidden[1]}-10 ({summary['params']:,} params), Adam, global "
          f"batch {a.batch}, {a.rows:,} rows, float32, 1 thread per rank, median of "
          f"{a.rounds} rounds")
    print(f"  1 rank : {sps1:12,.0f} samples/s   final loss {loss1:.5f}")
    print(f"  2 ranks: {sps2:12,.0f} samples/s   final loss {loss2:.5f}   ratio "
          f"{sps2 / sps1:.2f}x (target >= 1.7)   ranks identical: "
          f"{summary['ranks_identical']}")
    print(f"  ceiling: 2 independent processes on half batches, no communication: "
          f"{spsi:12,.0f} samples/s = {spsi / sps1:.2f}x; distributed reaches "
          f"{sps2 / spsi:.0%} of it")
    print(f"  CPU-time projection (samples per CPU-second of the busiest rank, 2 ranks over 1: "
          f"the ratio with a free core per rank): {cps2 / cps1:.2f}x (independent processes: "
          f"{cpsi / cps1:.2f}x)")
    print(f"  2-rank step: {step2 * 1e3:.2f} ms")
    for n, v in summary["allreduce"].items():
        print(f"  allreduce {n:>10,} float32 ({4 * n / 1e6:6.2f} MB), 2 ranks: polled "
              f"{v['polled_ms']:8.3f} ms, blocking {v['blocking_ms']:8.3f} ms, "
              f"{v['algbw_GBs']:6.2f} GB/s (bus bw = alg bw at 2 ranks); "
              f"{100 * v['share_of_2rank_step']:.1f}% of a 2-rank step")
    print(f"  load per core at the end: {summary['load_per_core_after']:.2f}")
    print("JSON " + json.dumps(summary))
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--independent", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke)")
    p.add_argument("--rows", type=int, default=65536)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--hidden", type=int, nargs=2, default=[256, 128])
    p.add_argument("--sizes", type=int, nargs="+", default=[235_146, 10_000_000])
    a = p.parse_args(argv)
    if a.quick and not a.worker:
        a.rows, a.epochs, a.reps, a.rounds = 4096, 1, 3, 1
        a.hidden, a.sizes = [32, 16], [25_000, 100_000]
    if a.worker:
        worker(a)
        return None
    return drive(a)


if __name__ == "__main__":
    main()
