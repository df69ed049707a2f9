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


def torch_available() -> bool:
    """Whether PyTorch (the peer) is installed, without importing it here."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):    # e.g. sys.modules["torch"] = None (blocked)
        return False


def require_torch():
    import pytest
    return pytest.importorskip("torch", reason="PyTorch (the peer) is not installed")


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


def print_ceilings(ceil) -> None:
    print(f"\nBLAS: {ceil.get('blas')} kernel {ceil.get('kernel')} "
          f"(OPENBLAS_CORETYPE={ceil['OPENBLAS_CORETYPE']}, OPENBLAS_L2_SIZE="
          f"{ceil['OPENBLAS_L2_SIZE']}); oneDNN ISA {ceil['onednn_isa']}; bfloat16 GEMM: "
          f"{ceil['bf16_gemm']}")
    for r in ceil["rows"]:
        fmt = lambda v: "-" if v is None else f"{v:6.0f}"  # noqa: E731
        print(f"  GEMM {r['shape']}: OpenBLAS {fmt(r['openblas'])}  dnnl_sgemm "
              f"{fmt(r['dnnl_sgemm'])}  dnnl bf16 {fmt(r['dnnl_bf16'])} GFLOP/s")


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
