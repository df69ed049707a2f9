"""Shared helpers of the benchmark suite: sizes, thread control, timing, data, PyTorch peers.

Rules every benchmark here follows (docs/design.md, "Performance principles"):

* correctness first: fastdl is checked against the NumPy reference backend (and the PyTorch peer
  against fastdl) on the same weights and batch *before* anything is timed;
* compilation is excluded: every timed function runs a warm-up epoch first;
* every peer reshuffles every epoch, holds its data in memory already, and runs on the same
  number of threads (``THREADS``: ``fd.set_num_threads`` for Numba and BLAS,
  ``torch.set_num_threads`` for PyTorch);
* peers are measured in the same run, and figures are reported as ratios;
* PyTorch runs in a worker process of its own (``TorchPeer``), so fastdl's
  ``OMP_WAIT_POLICY=PASSIVE`` does not reach PyTorch's OpenMP runtime;
* the dev box is shared: ``MachineLoad`` measures CPU used by other processes (from
  ``/proc/stat``), ``wait_until_quiet`` waits for it to drop, and ``settle`` pauses between
  two timed segments so spinning BLAS/OpenMP threads of the previous one are asleep.

``FASTDL_BENCH_SMALL=1`` (set by ``conftest.py`` under ``--benchmark-disable``, which is what CI
runs) shrinks every size so the whole suite runs once in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# What the user had before fastdl's config sets OMP_WAIT_POLICY=PASSIVE (only knowable when
# this module is imported first); the PyTorch worker gets the user's setting, not fastdl's.
_USER_OMP_WAIT_POLICY = (None if "fastdl" in sys.modules else
                         os.environ.get("OMP_WAIT_POLICY"))

#: Small mode: tiny sizes, one round, nothing asserted about speed.
SMALL = os.environ.get("FASTDL_BENCH_SMALL", "") not in ("", "0")

#: Threads for every peer (the dev machine has 2 cores).
THREADS = max(1, min(2, os.cpu_count() or 1))


def _fd():
    """fastdl, imported on first use (the PyTorch worker process never imports it)."""
    import fastdl
    return fastdl


# ------------------------------------------------------------------------------ threads ----
def set_threads(n: int = THREADS) -> None:
    """fastdl's thread count (Numba + BLAS through threadpoolctl); the PyTorch worker calls
    ``torch.set_num_threads`` with the same number."""
    _fd().set_num_threads(n)


def cpu_model() -> str:
    """``lscpu``'s model name with the CPU count and the instruction sets that decide GEMM
    speed here (AVX-512, bfloat16): the CPU of the dev machines changes over time."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        model = next(x.split(":", 1)[1].strip() for x in lines if x.startswith("model name"))
        flags = next(x.split(":", 1)[1].split() for x in lines if x.startswith("flags"))
        bf = [f for f in flags if "bf16" in f or f.startswith("amx")]
        avx512 = any(f.startswith("avx512f") for f in flags)
        return f"{model} ({os.cpu_count()} CPUs; AVX-512 {'yes' if avx512 else 'no'}; " \
               f"bf16 flags: {','.join(bf) or 'none'})"
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def torch_available() -> bool:
    """Whether PyTorch (the peer) is installed, without importing it here."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):    # e.g. sys.modules["torch"] = None (blocked)
        return False


def require_torch():
    """Skip the calling test when PyTorch is not installed. Never imports torch here: its own
    OpenMP runtime and BLAS must stay out of the process that times fastdl (the peers run torch
    in worker processes of their own)."""
    import pytest
    if not torch_available():
        pytest.skip("PyTorch (the peer) is not installed")


# ------------------------------------------------------------------------------- timing ----
class Timer:
    """Wraps a function; every call's wall time (perf_counter) is recorded in ``times``."""

    def __init__(self, fn):
        self.fn = fn
        self.times: list[float] = []

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.times.append(time.perf_counter() - t0)
        return out

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def time_rounds(fn, rounds: int, warmup: int = 1) -> Timer:
    """Call ``fn`` ``warmup`` times untimed, then ``rounds`` times timed."""
    for _ in range(warmup):
        fn()
    t = Timer(fn)
    for _ in range(rounds):
        t()
    return t


#: Seconds to idle between two timed segments (see settle).
SETTLE_S = 0.25


def settle(seconds: float = SETTLE_S) -> None:
    """Idle a moment before timing something else. OpenBLAS worker threads spin (busy-wait)
    for up to ~0.1 s after a BLAS call before they sleep (measured: ~0.03-0.08 CPU-s of an idle
    process after a burst of sgemm), and PyTorch's OpenMP threads spin briefly too: a peer
    started right after another would share a core with those spinning threads."""
    if seconds > 0 and not SMALL:
        time.sleep(seconds)


def bench_pedantic(benchmark, fn, rounds: int) -> Timer:
    """Time ``fn`` through pytest-benchmark (pedantic, one call per round) and our own timer,
    so the figure exists with ``--benchmark-disable`` too (then ``fn`` runs once)."""
    t = Timer(fn)
    benchmark.pedantic(t, rounds=rounds, iterations=1, warmup_rounds=0)
    return t


class MachineLoad:
    """CPU time used by OTHER processes while the block runs (from /proc/stat minus this
    process's own CPU time): benchmarks on a shared 2-core machine are only meaningful when
    this stays near 0. ``foreign`` is a fraction of all cores (0.5 = one of two cores busy),
    None when it cannot be measured (no /proc, or a window too short for clock-tick counts)."""

    MIN_WINDOW_S = 0.5

    def __enter__(self):
        self._t0 = time.perf_counter()
        self._s0 = _proc_stat_busy()
        self._c0 = _own_cpu()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t0
        busy = None if self._s0 is None else _proc_stat_busy()
        self.foreign = None
        # /proc/stat counts in clock ticks (10 ms): windows shorter than MIN_WINDOW_S say nothing
        if busy is not None and wall >= self.MIN_WINDOW_S:
            own = _own_cpu() - self._c0
            frac = ((busy - self._s0) - own) / ((os.cpu_count() or 1) * wall)
            self.foreign = min(1.0, max(0.0, frac))
        return False


def _proc_stat_busy():
    """Seconds of non-idle CPU time of the whole machine, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()[1:]
    except OSError:
        return None
    vals = [int(v) for v in parts]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    busy = sum(vals[:8]) - idle            # user..steal, minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu():
    """CPU seconds of this process, its finished children and its live PyTorch workers."""
    import resource
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime + process_cpu(_LIVE_WORKERS)


def process_cpu(pids):
    """User + system CPU seconds of the live processes ``pids`` (Linux /proc; a process that
    has ended, or a system without /proc, counts 0)."""
    total = 0.0
    for pid in list(pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def wait_until_quiet(max_wait_s: float = 120.0, threshold: float = 0.05, probe_s: float = 2.0):
    """Wait (up to ``max_wait_s``) until other processes use < ``threshold`` of the CPUs for
    ``probe_s``; returns the last foreign load seen (None when it cannot be measured)."""
    deadline = time.perf_counter() + max_wait_s
    while True:
        with MachineLoad() as ld:
            time.sleep(probe_s)
        if ld.foreign is None or ld.foreign < threshold or time.perf_counter() > deadline:
            return ld.foreign


# ------------------------------------------------------------------- benchmark rows ----
class Rows:
    """The rows of one pytest-benchmark group (fastdl and each peer or variant), timed in turn,
    round by round.

    A row is a function that runs one round of its work and returns that round's wall time in
    seconds, measured by the row itself as close to the work as it can: ``perf_counter`` around
    the fastdl call in this process; for a peer in a worker process, the worker's own
    ``perf_counter`` around its loop (the pipe round trip, ~0.1 ms, is left out: a user of the
    peer has no pipe). ``units``: how much work one round holds (epochs, steps, calls), so rows
    that do different amounts per round compare; a row's time is seconds per unit.

    ``run(rounds)``: a round runs every row once, in the order they were added, each after
    ``settle`` (idle BLAS/OpenMP threads of the previous row must not take a core from the
    next), and records the CPU share other processes used meanwhile. Rows are interleaved, not
    timed one after another, because this shared machine's speed drifts by up to 2x from one
    minute to the next: within a round every row sees the same state, so per-round ratios are
    steady where absolute times are not.

    ``record(benchmark, row)`` makes that row's rounds pytest-benchmark's measurement of the test
    (``record_seconds``), so ``--benchmark-only`` prints the group side by side and
    ``--benchmark-save`` / ``--benchmark-compare`` track every row.

    ``quiet``: when set, rounds in which other processes used >= ``quiet`` of the CPUs are left
    out of every figure (and of what pytest-benchmark receives) if at least two clean rounds
    remain; ``None`` keeps every round."""

    def __init__(self, unit="round", settle_s=SETTLE_S, quiet=None):
        self.unit, self.settle_s, self.quiet = unit, settle_s, quiet
        self._fns: dict = {}
        self.seconds: dict = {}     # row -> seconds per unit, one per round
        self.load: list = []        # other processes' CPU share per round (None: unknown)

    def add(self, name, fn, units=1.0):
        self._fns[name] = (fn, float(units))
        self.seconds[name] = []

    def __contains__(self, name):
        return name in self.seconds

    @property
    def names(self):
        return list(self.seconds)

    def run(self, rounds, rotate=False):
        """Run ``rounds`` rounds, then drop the row functions: a measured group is kept for its
        other rows (``group_rows``) and must not keep models, buffers or workers alive.
        ``rotate``: round r starts with row r (mod the rows) instead of the first, so no row
        always follows the same one (A/B costs of a few percent: a row's place in the round
        must not be part of its figure)."""
        items = list(self._fns.items())
        for r in range(rounds):
            k = r % len(items) if rotate else 0
            with MachineLoad() as ld:
                for name, (fn, units) in items[k:] + items[:k]:
                    settle(self.settle_s)
                    self.seconds[name].append(fn() / units)
            self.load.append(ld.foreign)
        self._fns.clear()
        return self

    @property
    def used(self):
        """Indices of the rounds the figures use."""
        every = list(range(len(self.load)))
        if self.quiet is None:
            return every
        clean = [i for i in every if (self.load[i] or 0.0) < self.quiet]
        return clean if len(clean) >= 2 else every

    @property
    def foreign(self):
        """Mean CPU share of other processes over the rounds (None: not measurable)."""
        known = [f for f in self.load if f is not None]
        return statistics.mean(known) if known else None

    def times(self, name):
        return [self.seconds[name][i] for i in self.used]

    def median(self, name):
        return statistics.median(self.times(name))

    def ratio(self, num, den):
        """The median over the used rounds of ``num``'s time / ``den``'s time in that round: how
        many times faster ``den`` is than ``num``."""
        return statistics.median(self.seconds[num][i] / self.seconds[den][i] for i in self.used)

    def record(self, benchmark, name, ref=None, ref_label="fastdl", per_unit=None, **info):
        """Hand row ``name`` to pytest-benchmark and fill its ``extra_info``: ``unit``,
        ``seconds_per_unit`` (median), every round's time, the rounds used and their load;
        ``per_unit`` {figure: amount per unit} gives figure = amount / median (e.g.
        ``{"samples_per_s": rows per epoch}``); against row ``ref`` of this group (measured in
        the same rounds): ``ratio_vs_<ref_label>`` = this row's speed / ``ref``'s and
        ``<ref_label>_speedup`` = ``ref``'s speed / this row's, each the median of per-round
        ratios."""
        record_seconds(benchmark, self.times(name))
        med = self.median(name)
        out = {"row": name, "unit": self.unit, "seconds_per_unit": med,
               "rounds_s": self.seconds[name], "rounds_used": self.used,
               "round_foreign_load": self.load, "threads": THREADS,
               "date": time.strftime("%Y-%m-%d %H:%M")}
        for figure, amount in (per_unit or {}).items():
            out[figure] = amount / med
        if ref is not None and ref in self:
            out[f"ratio_vs_{ref_label}"] = self.ratio(ref, name)
            out[f"{ref_label}_speedup"] = self.ratio(name, ref)
        out.update(info)
        benchmark.extra_info.update(out)
        return out


def timed(fn):
    """``fn`` wrapped to return its own wall time (``perf_counter``) instead of its result: a
    row for ``Rows.add``."""
    def run():
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return run


class _ReplayClock:
    """pytest-benchmark's timer for a row measured by ``Rows``: the benchmarked function
    (``advance``) moves this clock on by the next measured duration, so the ``end - start`` that
    pytest-benchmark takes around it is exactly that duration, and its statistics (min, median,
    IQR, outliers, OPS) are those of the measured rounds."""

    def __init__(self, seconds):
        self._left = [float(s) for s in seconds]
        self.now = 0.0
        # the name pytest-benchmark stores as the "timer" option of a saved run
        self.__name__ = "perf_counter_rows_timed_in_turn"

    def __call__(self):
        return self.now

    def advance(self):
        self.now += self._left.pop(0)


def record_seconds(benchmark, seconds):
    """Make ``seconds`` (one wall time per round, measured by the caller around the work)
    pytest-benchmark's measurement of this test: ``pedantic`` runs a no-op once per round under
    a timer that replays them (``_ReplayClock``). Why not let pytest-benchmark time the work
    itself: a group's rows must run interleaved round by round (see ``Rows``), and a
    pytest-benchmark test times only its own rounds, back to back. Under
    ``--benchmark-disable`` pytest-benchmark calls the no-op once and records nothing."""
    if not seconds:
        raise ValueError("record_seconds: no round was measured")
    if not hasattr(benchmark, "_timer"):    # an attribute of BenchmarkFixture since 3.x
        raise RuntimeError("this pytest-benchmark has no BenchmarkFixture._timer: update "
                           "benchmarks/_peers.record_seconds")
    clock = _ReplayClock(seconds)
    benchmark._timer = clock
    benchmark.pedantic(clock.advance, rounds=len(seconds), iterations=1, warmup_rounds=0)


_GROUPS: dict = {}


def group_rows(key, measure):
    """The ``Rows`` of the group ``key``: measured by ``measure()`` when the first of its rows
    runs, kept for the others. A failure (or skip) is kept too, so every row of the group
    reports it without measuring again."""
    import pytest
    if key not in _GROUPS:
        try:
            _GROUPS[key] = measure()
        except (Exception, pytest.skip.Exception, pytest.fail.Exception) as e:
            _GROUPS[key] = e
            raise
    got = _GROUPS[key]
    if isinstance(got, BaseException):
        raise got
    return got


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of GFLOP/s of an n^3 float32 ``np.matmul`` (NumPy's BLAS, current thread count):
    the machine's practical compute ceiling for the fastdl figures."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    best = min(_once(lambda: np.matmul(a, b, out=c)) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def blas_info() -> dict:
    """Which BLAS NumPy runs (threadpoolctl: library, kernel "architecture", threads) and
    whether the environment variables that slow OpenBLAS down here are set (NOTES.md:
    OPENBLAS_CORETYPE=Haswell halves float32 GEMM speed on AVX-512 CPUs; every benchmark
    command unsets them for itself)."""
    out = {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
           "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
    try:
        from threadpoolctl import threadpool_info
        blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        # NumPy's own BLAS first (SciPy and others may load a second OpenBLAS in the process)
        blas.sort(key=lambda i: "numpy" not in os.path.basename(
            os.path.dirname(i.get("filepath", ""))))
        if blas:
            b = blas[0]
            out.update(blas=b.get("internal_api"), kernel=b.get("architecture"),
                       blas_version=b.get("version"), blas_threads=b.get("num_threads"))
    except ImportError:
        out["blas"] = "threadpoolctl not installed"
    return out


def gemm_ceilings(shapes, repeats: int = 5) -> dict:
    """The machine's GEMM ceilings at the shapes a net multiplies, measured now (current thread
    count): float32 by NumPy's BLAS and by oneDNN's ``dnnl_sgemm`` (the best of the two is the
    float32 ceiling), bfloat16 by oneDNN's ``dnnl_gemm_bf16bf16f32`` where this CPU runs it
    (else ``None``). ``shapes``: (M, N, K) products ``C[M,N] = A[M,K] B[K,N]``. GFLOP/s."""
    from fastdl.kernels.cpu import _onednn
    lib = _onednn.load()
    bf16_ok = _onednn.bf16_gemm_status()[0]
    rng = np.random.default_rng(0)
    rows = []
    for M, N, K in shapes:
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((K, N), dtype=np.float32)
        c = np.empty((M, N), np.float32)
        flop = 2.0 * M * N * K
        rate = lambda fn: flop / min(_once(fn) for _ in range(repeats)) / 1e9  # noqa: E731
        np.matmul(a, b, out=c)
        row = {"shape": (M, N, K), "openblas": rate(lambda: np.matmul(a, b, out=c)),
               "dnnl_sgemm": None, "dnnl_bf16": None}
        if lib is not None:
            _onednn.sgemm(c, a, b, False, False)
            row["dnnl_sgemm"] = rate(lambda: _onednn.sgemm(c, a, b, False, False))
        if bf16_ok:
            a16 = (a.view(np.uint32) >> 16).astype(np.uint16)
            b16 = (b.view(np.uint32) >> 16).astype(np.uint16)
            _onednn.gemm_bf16(c, a16, b16, False, False)
            row["dnnl_bf16"] = rate(lambda: _onednn.gemm_bf16(c, a16, b16, False, False))
        row["float32"] = max(v for v in (row["openblas"], row["dnnl_sgemm"]) if v)
        rows.append(row)
    return {"rows": rows, "onednn_isa": _onednn.isa_name(),
            "bf16_gemm": _onednn.bf16_gemm_status()[1], **blas_info()}


def net_gemm_shapes(widths, input_dim, batch):
    """(M, N, K) of the forward GEMMs of a dense net at batch ``batch`` (the backward's dW and
    dX products have the same sizes, transposed)."""
    dims = [input_dim] + list(widths)
    return [(batch, dims[i + 1], dims[i]) for i in range(len(widths))]


def format_blas(info) -> str:
    """One line: the BLAS NumPy runs, its kernel, and the two OpenBLAS variables."""
    return (f"BLAS: {info.get('blas')} {info.get('blas_version') or ''} kernel "
            f"{info.get('kernel')}, {info.get('blas_threads')} threads (OPENBLAS_CORETYPE="
            f"{info['OPENBLAS_CORETYPE']}, OPENBLAS_L2_SIZE={info['OPENBLAS_L2_SIZE']})")


def format_ceilings(ceil) -> list:
    """The lines ``print_ceilings`` prints."""
    fmt = lambda v: "     -" if v is None else f"{v:6.0f}"  # noqa: E731
    lines = [f"{format_blas(ceil)}; oneDNN ISA {ceil['onednn_isa']}; bfloat16 GEMM: "
             f"{ceil['bf16_gemm']}"]
    lines += [f"  GEMM {tuple(r['shape'])}: OpenBLAS {fmt(r['openblas'])}  dnnl_sgemm "
              f"{fmt(r['dnnl_sgemm'])}  dnnl bf16 {fmt(r['dnnl_bf16'])} GFLOP/s"
              for r in ceil["rows"]]
    return lines


def print_ceilings(ceil) -> None:
    print("\n" + "\n".join(format_ceilings(ceil)))


#: (label, gemm_ceilings result) of every measure_ceilings call of this run; conftest.py prints
#: them at the end of the session and stores them in --benchmark-save's JSON.
CEILINGS: list = []


def measure_ceilings(label, shapes) -> dict:
    """``gemm_ceilings(shapes)`` measured now (small mode: one repeat, a smoke test, not a
    figure), kept in ``CEILINGS`` for the session's report. Shapes already measured in this run
    are measured again: a suite wants its ceilings beside its own rows."""
    shapes = list(dict.fromkeys(tuple(s) for s in shapes))
    ceil = gemm_ceilings(shapes, repeats=1 if SMALL else 5)
    CEILINGS.append((label, ceil))
    return ceil


def step_ceiling(widths, input_dim, batch, ceil, key="float32"):
    """The GEMM rate a whole training step of a dense net could reach at its shapes, GFLOP/s:
    the three products of every layer (forward, dW, dX; the first layer has no dX) each at its
    measured ``ceil`` rate for ``key`` ("float32", "openblas", "dnnl_sgemm", "dnnl_bf16"), i.e.
    total flops / the time they would take. None when ``key`` was not measured."""
    rows = {tuple(r["shape"]): r for r in ceil["rows"]}
    shapes = net_gemm_shapes(widths, input_dim, batch)
    total = seconds = 0.0
    for i, shape in enumerate(shapes):
        rate = rows[tuple(shape)][key]
        if rate is None:
            return None
        flop = (2 if i == 0 else 3) * 2.0 * shape[0] * shape[1] * shape[2]
        total += flop
        seconds += flop / (rate * 1e9)
    return total / seconds / 1e9


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------- data ----
def xor_data(m: int, seed: int = 0):
    """Two features, a binary XOR-like label: the 2-5-2-1 benchmark's data (float32, y (m,))."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 2)).astype(np.float32)
    y = ((X[:, 0] * X[:, 1]) > 0).astype(np.float32)
    return X, y


def mnist_like(m: int, n_features: int = 784, n_classes: int = 10, seed: int = 0):
    """Synthetic MNIST-shaped data: float32 features in [0, 1), integer labels that depend on
    the features (so the loss moves), both already in memory."""
    rng = np.random.default_rng(seed)
    X = rng.random((m, n_features), dtype=np.float32)
    proj = rng.standard_normal((n_features, n_classes)).astype(np.float32)
    y = np.argmax(X @ proj, axis=1).astype(np.int64)
    return X, y


# ---------------------------------------------------------------------------- networks ----
def dense_model(sizes, activations, input_dim, backend, seed=0, dtype="float32"):
    fd = _fd()
    return fd.Sequential([fd.Dense(u, activation=a) for u, a in zip(sizes, activations)],
                         input_dim=input_dim, dtype=dtype, seed=seed, backend=backend)


def flops_per_sample(model, exact=False) -> float:
    """6 * weights: forward 2P, backward 4P flops per sample (the usual estimate). ``exact``:
    without the first layer's dX, which is never computed (2 * n0 * n1 fewer)."""
    P = sum(op.units * op.input_dim for op in model._ops)
    first = model._ops[0]
    return 6.0 * P - (2.0 * first.units * first.input_dim if exact else 0.0)


def model_spec(fd_model):
    """What a peer needs to rebuild a dense fastdl model: weights, hidden activations, loss."""
    return {"weights": fd_model.get_weights(),
            "use_bias": [op.use_bias for op in fd_model._ops],
            "activations": [op.activation for op in fd_model._ops[:-1]],
            "loss": fd_model.loss.name}


# ---------------------------------------------------------------------------- PyTorch ----
def torch_mlp(spec):
    """A ``torch.nn.Sequential`` with the layers and initial weights of ``model_spec(model)``
    (W is (units, inputs) in both libraries); the output layer emits logits (its sigmoid /
    softmax lives in the loss, as in fastdl)."""
    import torch
    nn = torch.nn
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "linear": nn.Identity}
    weights, k, mods = spec["weights"], 0, []
    for i, use_bias in enumerate(spec["use_bias"]):
        W = np.ascontiguousarray(weights[k], dtype=np.float32)
        k += 1
        lin = nn.Linear(W.shape[1], W.shape[0], bias=use_bias)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            if use_bias:
                lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(weights[k], np.float32)))
                k += 1
        mods.append(lin)
        if i < len(spec["activations"]):
            mods.append(acts[spec["activations"][i]]())
    return nn.Sequential(*mods)


class TorchTrainer:
    """The idiomatic PyTorch loop: ``randperm`` each epoch, index the batch, forward, loss,
    ``zero_grad``, backward, ``SGD.step``. Data are tensors in memory (``from_numpy``).

    ``optimizer``: "sgd" (default) or "adam" / "adam_fused" (``torch.optim.Adam``, its
    default implementation or ``fused=True``); ``autocast``: run forward and loss under
    ``torch.autocast("cpu", dtype=torch.bfloat16)`` (PyTorch's mixed precision: bfloat16
    GEMMs, float32 weights and optimizer), as a PyTorch user does on a bfloat16 CPU."""

    def __init__(self, spec, X, y, lr, batch_size, seed=0, optimizer="sgd", autocast=False):
        import contextlib
        import torch
        self.torch = torch
        self.net = torch_mlp(spec)
        self.loss_fn = {"binary_crossentropy": torch.nn.BCEWithLogitsLoss,
                        "categorical_crossentropy": torch.nn.CrossEntropyLoss}.get(
                            spec["loss"], torch.nn.MSELoss)()
        if optimizer == "sgd":
            self.opt = torch.optim.SGD(self.net.parameters(), lr=lr)
        elif optimizer in ("adam", "adam_fused"):
            fused = optimizer == "adam_fused"
            self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, fused=fused,
                                        foreach=None if fused else False)
        else:
            raise ValueError(f"optimizer={optimizer!r}")
        self.cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else \
            contextlib.nullcontext
        self.X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        if spec["loss"] == "categorical_crossentropy":      # int64 class indices (m,)
            self.y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        else:                                               # float (m, k)
            self.y = torch.from_numpy(np.ascontiguousarray(y, np.float32).reshape(len(y), -1))
        self.bs = int(batch_size)
        self.gen = torch.Generator().manual_seed(seed)

    def batch_step(self, xb, yb):
        self.opt.zero_grad(set_to_none=True)
        with self.cast():
            loss = self.loss_fn(self.net(xb), yb)
        loss.backward()
        self.opt.step()
        return loss

    def epoch(self):
        torch, bs = self.torch, self.bs
        m = self.X.shape[0]
        perm = torch.randperm(m, generator=self.gen)
        for s in range(0, m, bs):
            idx = perm[s:s + bs]
            self.batch_step(self.X[idx], self.y[idx])

    def weights(self):
        return [p.detach().numpy().copy() for p in self.net.parameters()]


_LIVE_WORKERS: set[int] = set()


class TorchPeer:
    """The PyTorch peer in a process of its own, driven over a pipe.

    Why a separate process: fastdl's config sets ``OMP_WAIT_POLICY=PASSIVE`` before any OpenMP
    runtime starts (right for fastdl: OpenBLAS and Numba's pool then stop starving each other),
    and PyTorch's own libgomp would inherit it inside a fastdl process; PyTorch must be timed as
    its users run it. The worker gets the environment without fastdl's setting, the same data
    (sent once through an ``.npz``), the same initial weights and ``torch.set_num_threads``.
    Only one process computes at a time: the other waits on the pipe.
    """

    def __init__(self, spec, X, y, lr, batch_size, threads=THREADS, seed=0, optimizer="sgd",
                 autocast=False):
        self._dir = tempfile.mkdtemp(prefix="fastdl-bench-torch-")
        path = os.path.join(self._dir, "setup.npz")
        arrays = {f"w{i}": w for i, w in enumerate(spec["weights"])}
        np.savez(path, X=X, y=y, **arrays)
        meta = {k: v for k, v in spec.items() if k != "weights"}
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if _USER_OMP_WAIT_POLICY is not None:
            env["OMP_WAIT_POLICY"] = _USER_OMP_WAIT_POLICY
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--torch-worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=env, cwd=os.path.dirname(os.path.abspath(__file__)))
        _LIVE_WORKERS.add(self.proc.pid)
        self.info = self._call(cmd="setup", npz=path, meta=meta, n_weights=len(spec["weights"]),
                               lr=lr, batch_size=batch_size, threads=threads, seed=seed,
                               optimizer=optimizer, autocast=bool(autocast))

    def _call(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker died (exit code {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"PyTorch worker: {reply['error']}")
        return reply

    def check_step(self, rows):
        """One SGD step on a copy of the net, on the first ``rows`` rows: (cost, weights)."""
        out = os.path.join(self._dir, "step.npz")
        r = self._call(cmd="check_step", rows=rows, out=out)
        with np.load(out) as z:
            return r["cost"], [z[f"w{i}"] for i in range(len(z.files))]

    def epochs(self, n=1) -> float:
        """Run ``n`` epochs; the worker's own wall time for them, in seconds."""
        return self._call(cmd="epochs", n=int(n))["seconds"]

    def close(self):
        if self.proc.poll() is None:
            try:
                self._call(cmd="quit")
            except (RuntimeError, BrokenPipeError, ValueError):
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        _LIVE_WORKERS.discard(self.proc.pid)
        import shutil
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _torch_worker():
    """The worker's loop: one JSON command per stdin line, one JSON reply per stdout line."""
    import copy
    trainer = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "setup":
                import torch
                torch.set_num_threads(int(cmd["threads"]))
                with np.load(cmd["npz"]) as z:
                    X, y = z["X"], z["y"]
                    spec = dict(cmd["meta"], weights=[z[f"w{i}"] for i in range(cmd["n_weights"])])
                trainer = TorchTrainer(spec, X, y, cmd["lr"], cmd["batch_size"], cmd["seed"],
                                       cmd.get("optimizer", "sgd"), cmd.get("autocast", False))
                reply = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                         "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
            elif cmd["cmd"] == "check_step":
                net = copy.deepcopy(trainer.net)
                opt = trainer.torch.optim.SGD(net.parameters(), lr=trainer.opt.defaults["lr"])
                r = int(cmd["rows"])
                opt.zero_grad(set_to_none=True)
                loss = trainer.loss_fn(net(trainer.X[:r]), trainer.y[:r])
                loss.backward()
                opt.step()
                cost = float(loss.detach())
                np.savez(cmd["out"], **{f"w{i}": p.detach().numpy()
                                        for i, p in enumerate(net.parameters())})
                reply = {"cost": cost}
            elif cmd["cmd"] == "epochs":
                t0 = time.perf_counter()
                for _ in range(int(cmd["n"])):
                    trainer.epoch()
                reply = {"seconds": time.perf_counter() - t0}
            elif cmd["cmd"] == "quit":
                print(json.dumps({"ok": True}), flush=True)
                return
            else:
                reply = {"error": f"unknown command {cmd['cmd']!r}"}
        except Exception as e:  # reported to the parent, which raises
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


# ------------------------------------------------------------------------ correctness ----
def check_against_reference(make_model, X, y, lr, batch_size, torch_peer=None, rtol=1e-4,
                            atol=1e-5):
    """Before timing: the cpu backend, the numpy backend and (when given) the PyTorch peer agree.

    * one ``train_on_batch`` on the same batch from the same weights: same cost, same updated
      weights (cpu vs numpy, and PyTorch vs numpy: this also proves the peer trains the same
      net with the same loss);
    * one epoch of ``fit`` (same seed, so the same shuffles) on cpu and numpy: same epoch cost
      and same final weights (for small nets this runs the whole-epoch kernel).

    Returns the largest relative discrepancies (stored in ``extra_info``)."""
    fd = _fd()
    cpu, ref = make_model("cpu"), make_model("numpy")
    xb, yb = X[:batch_size], y[:batch_size]
    c_cpu = cpu.train_on_batch(xb, yb, fd.optim.SGD(lr=lr))
    c_ref = ref.train_on_batch(xb, yb, fd.optim.SGD(lr=lr))
    np.testing.assert_allclose(c_cpu, c_ref, rtol=rtol, err_msg="train_on_batch cost cpu/numpy")
    _assert_weights(cpu.get_weights(), ref.get_weights(), rtol, atol, "train_on_batch cpu/numpy")
    out = {"step_cost_rel_err": abs(c_cpu - c_ref) / max(abs(c_ref), 1e-30)}
    if torch_peer is not None:
        c_t, w_t = torch_peer.check_step(batch_size)
        np.testing.assert_allclose(c_t, c_ref, rtol=rtol, err_msg="cost torch/numpy")
        _assert_weights(w_t, ref.get_weights(), rtol, atol, "step torch/numpy")
        out["torch_step_cost_rel_err"] = abs(c_t - c_ref) / max(abs(c_ref), 1e-30)
    cpu, ref = make_model("cpu"), make_model("numpy")
    n = min(X.shape[0], max(4 * batch_size, 256))
    h_cpu = cpu.fit(X[:n], y[:n], optimizer=fd.optim.SGD(lr=lr), epochs=1,
                    batch_size=batch_size, verbose=0)
    h_ref = ref.fit(X[:n], y[:n], optimizer=fd.optim.SGD(lr=lr), epochs=1,
                    batch_size=batch_size, verbose=0)
    e_cpu, e_ref = h_cpu.history["loss"][0], h_ref.history["loss"][0]
    np.testing.assert_allclose(e_cpu, e_ref, rtol=10 * rtol, err_msg="epoch cost cpu/numpy")
    _assert_weights(cpu.get_weights(), ref.get_weights(), 10 * rtol, 10 * atol,
                    "one epoch cpu/numpy")
    out["epoch_cost_rel_err"] = abs(e_cpu - e_ref) / max(abs(e_ref), 1e-30)
    out["epoch_cost"] = e_ref
    return out


def _assert_weights(got, want, rtol, atol, what):
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(g).reshape(np.shape(w)), w, rtol=rtol, atol=atol,
                                   err_msg=f"{what}: tensor {i}")


# ----------------------------------------------------------------------------- report ----
def print_table(title, rows, columns):
    """rows: list of dicts; columns: list of (key, header, format)."""
    heads = [h for _, h, _ in columns]
    cells = [[("-" if r.get(k) is None else f.format(r[k])) for k, _, f in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = "  ".join(h.rjust(w) for h, w in zip(heads, widths))
    print(f"\n{title}\n{line}\n{'-' * len(line)}")
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))


if __name__ == "__main__" and sys.argv[1:] == ["--torch-worker"]:
    _torch_worker()
