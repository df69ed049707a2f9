"""Issue 16's sparse target: fastdl.sklearn vs scikit-learn's MLPClassifier on a tf-idf-like CSR.

    python benchmarks/sparse_check.py                          # the issue's size, 1 epoch
    python benchmarks/sparse_check.py --rows 50000 --rounds 2  # scaled rows, interleaved rounds
    python benchmarks/sparse_check.py --profile                # where fastdl's step goes
    python benchmarks/sparse_check.py --peers sklearn,fastdl,fastdl1   # + fastdl on 1 thread

Target (issue 16): 100,000 x 50,000 CSR at 0.1% density (50 entries per row), 10 classes,
hidden (256,), adam, batch 256: fit >= 3x faster than scikit-learn's MLPClassifier on the same
sparse input, same accuracy within 1 point, peak RSS < 2x (the CSR's own bytes + the model's).

Data: ``_sparse_data.make_sparse_text`` (documents of 50 word slots, 12% of them drawn from
the class's topic words: labels are learnable from the sparse features; 3% label noise), the
train rows plus ``--dev`` held-out rows of the same distribution. Written once to a temporary
directory as .npy files; every fit runs in a fresh child process that loads them, so each
library's peak RSS (``VmHWM`` of its child: the peak resident size of that process image;
``ru_maxrss`` is printed too, but Linux carries the spawning parent's high-water mark into a
child's ``ru_maxrss`` across fork + exec) holds that library's fit alone.

Both estimators: hidden (256,), relu, adam (lr 1e-3), batch 256, alpha 1e-4, float32 input
(both compute in float32), ``random_state=0`` (same initial weights), ``max_iter=--epochs``
with ``tol=0`` and ``n_iter_no_change=epochs+1`` (exactly that many epochs, asserted),
ConvergenceWarning silenced. Threads: ``--threads`` (2) for BLAS (threadpoolctl) in both and
Numba in fastdl; scipy's sparse products (what scikit-learn's first layer runs) are
single-threaded whatever the setting. Checked before timing (parent process): one SGD
epoch without shuffling on 512 rows gives scikit-learn's ``loss_`` (rel. 1e-4).

In each child: imports, data loaded, then a warm-up fit on one batch (256 rows, loads or
compiles fastdl's kernels) and a second one, timed: ``setup_s`` = initialization of the
12.8M weights + one step; then the timed fit over all train rows; ``per_epoch_s`` =
(fit - setup) / epochs (one step short: < 0.3% at 391 steps an epoch). Accuracy on the dev
rows after the fit. Foreign CPU load during each child is measured (``_peers.MachineLoad``).

Memory: ``growth`` = peak RSS - RSS after imports (before the data is loaded: the CSR, a
warm-up fit's leftovers such as loaded JIT code, and the fit itself count), and ``fit
growth`` = peak RSS - RSS just before the timed fit (after data and warm-up). Compared with the
CSR's bytes (data + indices + indptr) + the model's parameter bytes (the issue's bound, read
as memory beyond the interpreter and libraries) and with the floor any dense-gradient Adam
trainer needs: CSR + parameters + gradients + Adam's two moment buffers (4x the parameters).

Rounds alternate the order (scikit-learn first in odd rounds). Medians over rounds; the
ratio is the median of per-round ratios. Keep a run under ~3 minutes on the shared 2-core box
(``--rows`` scales rows down; columns and entries per row stay the issue's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _peers as P  # noqa: E402  (imports no fastdl)

ISSUE_ROWS = 100_000
PARAMS = dict(hidden_layer_sizes=(256,), activation="relu", solver="adam",
              learning_rate_init=1e-3, batch_size=256, alpha=1e-4, tol=0.0, random_state=0)
TARGET_SPEED, TARGET_ACC_POINTS, TARGET_RSS = 3.0, 1.0, 2.0


def _status_kib(field) -> int:
    """A field of /proc/self/status in KiB (VmRSS: resident now; VmHWM: peak resident)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _rss_kib() -> int:
    return _status_kib("VmRSS")


def _peak_kib() -> int:
    """Peak RSS of this process image, KiB: VmHWM. Not ru_maxrss: Linux carries the
    pre-exec image's high-water mark into ru_maxrss across fork + exec, so a child's
    ru_maxrss is at least the parent's RSS when it was spawned (measured here: every child
    reported the parent's 687 MiB). Both are printed."""
    return _status_kib("VmHWM")


# ------------------------------------------------------------------------------ child ----
def child(lib, data_dir, epochs, threads, profile):
    """One library's fit in this fresh process; prints one JSON line."""
    import gc
    import warnings
    out = {"lib": lib, "rss_start_kib": _rss_kib()}
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits
    if lib.startswith("fastdl"):
        import fastdl as fd
        from fastdl.sklearn import MLPClassifier as Est
        fd.set_num_threads(threads)
    else:
        import sklearn
        from sklearn.neural_network import MLPClassifier as Est
        threadpool_limits(threads)
        out["sklearn"] = sklearn.__version__
    from sklearn.exceptions import ConvergenceWarning
    warnings.simplefilter("ignore", ConvergenceWarning)
    out["rss_imports_kib"] = _rss_kib()

    with open(os.path.join(data_dir, "meta.json")) as f:
        n_features = json.load(f)["n_features"]

    def load(name):
        a = {k: np.load(os.path.join(data_dir, f"{name}_{k}.npy"))
             for k in ("data", "indices", "indptr", "y")}
        X = sp.csr_matrix((a["data"], a["indices"], a["indptr"]),
                          shape=(a["indptr"].shape[0] - 1, n_features))
        return X, a["y"]

    Xtr, ytr = load("train")
    Xdev, ydev = load("dev")
    out["rss_data_kib"] = _rss_kib()
    params = dict(PARAMS, max_iter=epochs, n_iter_no_change=epochs + 1)
    one = dict(PARAMS, max_iter=1, n_iter_no_change=2)
    Est(**one).fit(Xtr[:256], ytr[:256])                  # loads / compiles kernels
    gc.collect()
    t0 = time.perf_counter()
    Est(**one).fit(Xtr[:256], ytr[:256])
    out["setup_s"] = time.perf_counter() - t0             # 12.8M weights initialized + 1 step
    gc.collect()
    out["rss_before_fit_kib"] = _rss_kib()
    est = Est(**params)
    if profile:
        import cProfile
        import pstats
        pr = cProfile.Profile()
        pr.enable()
    t0 = time.perf_counter()
    est.fit(Xtr, ytr)
    out["fit_s"] = time.perf_counter() - t0
    import resource
    out["peak_kib"] = _peak_kib()               # before anything else is allocated
    out["ru_maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if profile:
        pr.disable()
        st = pstats.Stats(pr)
        rows = sorted(((v[2], v[0], f"{os.path.basename(k[0])}:{k[2]}")
                       for k, v in st.stats.items()), reverse=True)[:14]
        out["profile"] = [dict(fn=f, tottime_s=t, calls=n) for t, n, f in rows]
        # the machine's streaming bandwidth at the parameters' size, for the bytes each
        # kernel must move (serial NumPy: one thread, what a memory-bound pass gets)
        n = sum(c.size for c in est.coefs_)
        a, b, c = (np.ones(n, np.float32) for _ in range(3))
        np.add(a, b, out=c)
        t = min(_timed(lambda: np.add(a, b, out=c)) for _ in range(5))
        out["stream_gbs"] = 3 * a.nbytes / t / 1e9
        del a, b, c
    assert est.n_iter_ == epochs, (lib, est.n_iter_)
    out["n_iter"], out["loss"] = int(est.n_iter_), float(est.loss_)
    out["steps"] = epochs * -(-Xtr.shape[0] // PARAMS["batch_size"])
    out["per_epoch_s"] = (out["fit_s"] - out["setup_s"]) / epochs
    out["dev_acc"] = float(est.score(Xdev, ydev))
    out["param_bytes"] = int(sum(c.nbytes for c in est.coefs_)
                             + sum(b.nbytes for b in est.intercepts_))
    print("RESULT " + json.dumps(out), flush=True)


# ----------------------------------------------------------------------------- parent ----
def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(x.split(":", 1)[1].strip() for x in out.splitlines()
                     if x.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(x.split(":", 1)[1].split() for x in f if x.startswith("flags"))
        avx = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    except (OSError, StopIteration):
        avx = "?"
    return f"{model} ({os.cpu_count()} CPUs, {avx})"


def write_data(d, rows, dev, seed):
    from _sparse_data import csr_nbytes, make_sparse_text
    X, y = make_sparse_text(rows + dev, seed=seed)
    parts = {"train": (X[:rows], y[:rows]), "dev": (X[rows:], y[rows:])}
    for name, (Xp, yp) in parts.items():
        Xp = Xp.tocsr()
        for k, v in (("data", Xp.data), ("indices", Xp.indices), ("indptr", Xp.indptr),
                     ("y", yp)):
            np.save(os.path.join(d, f"{name}_{k}.npy"), np.ascontiguousarray(v))
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"n_features": X.shape[1]}, f)
    Xtr = parts["train"][0].tocsr()
    return Xtr, parts["train"][1], csr_nbytes(Xtr)


def same_network_check(Xtr, ytr):
    """Correctness before timing: one SGD epoch without shuffling, same loss as scikit-learn."""
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as Sk
    from fastdl.sklearn import MLPClassifier as Fd
    kw = dict(PARAMS, solver="sgd", learning_rate_init=0.01, shuffle=False, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = Fd(**kw).fit(Xtr[:512], ytr[:512]).loss_
        b = Sk(**kw).fit(Xtr[:512], ytr[:512]).loss_
    rel = abs(a - b) / abs(b)
    assert rel <= 1e-4, f"fastdl loss {a} vs scikit-learn {b}: not the same network"
    return a, b, rel


def run_child(lib, d, epochs, threads, profile):
    P.settle(0.5)
    cmd = [sys.executable, os.path.abspath(__file__), "--child", lib, "--data", d,
           "--epochs", str(epochs), "--threads", str(threads)] + (["--profile"] if profile else [])
    with P.MachineLoad() as ld:
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.stderr.write(res.stdout + res.stderr)
        raise SystemExit(f"{lib} child failed (rc {res.returncode})")
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    out["child_wall_s"], out["foreign_load"] = wall, ld.foreign
    return out


def mib(kib):
    return kib / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=ISSUE_ROWS, help="train rows (issue: 100,000)")
    ap.add_argument("--dev", type=int, default=20_000, help="held-out rows for accuracy")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=P.THREADS)
    ap.add_argument("--peers", default="sklearn,fastdl",
                    help="comma list of sklearn, fastdl, fastdl1 (fastdl on 1 thread)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true",
                    help="only fastdl, its fit under cProfile (top functions by own time)")
    ap.add_argument("--child"), ap.add_argument("--data")
    a = ap.parse_args()
    if a.child:
        threads = 1 if a.child == "fastdl1" else a.threads
        return child(a.child, a.data, a.epochs, threads, a.profile)

    import numba
    import scipy
    import sklearn
    t_start = time.perf_counter()
    print(f"CPU: {cpu_model()}")
    print(f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy "
          f"{scipy.__version__}, Numba {numba.__version__}, scikit-learn {sklearn.__version__}")
    P.set_threads(a.threads)
    print(f"BLAS: {P.blas_info()}")
    try:
        from threadpoolctl import threadpool_info
        for i in threadpool_info():
            print(f"  threadpool: {i.get('internal_api')} {i.get('version')} "
                  f"{i.get('architecture', '')} threads={i.get('num_threads')} "
                  f"({os.path.basename(i.get('filepath', ''))})")
    except ImportError:
        pass
    peers = ["fastdl"] if a.profile else a.peers.split(",")
    with tempfile.TemporaryDirectory(prefix="fastdl-sparse-") as d:
        t0 = time.perf_counter()
        Xtr, ytr, csr_bytes = write_data(d, a.rows, a.dev, a.seed)
        print(f"data: {a.rows:,} train + {a.dev:,} dev rows x {Xtr.shape[1]:,} columns, "
              f"{Xtr.nnz / Xtr.shape[0]:.2f} entries per row (density "
              f"{100 * Xtr.nnz / (Xtr.shape[0] * Xtr.shape[1]):.3f}%), train CSR "
              f"{csr_bytes / 2**20:.1f} MiB (data {Xtr.data.dtype}, indices "
              f"{Xtr.indices.dtype}, indptr {Xtr.indptr.dtype}); made in "
              f"{time.perf_counter() - t0:.1f} s"
              + ("" if a.rows == ISSUE_ROWS else
                 f"; SCALED: the issue's size is {ISSUE_ROWS:,} rows"))
        la, lb, rel = same_network_check(Xtr, ytr)
        print(f"same network: one SGD epoch on 512 rows, loss fastdl {la:.6f} vs scikit-learn "
              f"{lb:.6f} (rel. {rel:.1e})")
        del Xtr, ytr
        P.wait_until_quiet(float(os.environ.get("FASTDL_BENCH_WAIT_QUIET", 30)))
        results = {p: [] for p in peers}
        for r in range(a.rounds):
            order = peers if r % 2 == 0 else peers[::-1]
            for p in order:
                out = run_child(p, d, a.epochs, a.threads, a.profile)
                results[p].append(out)
                load = out["foreign_load"]
                load = "?" if load is None else f"{100 * load:.1f}"
                print(f"round {r + 1} {p:8s}: fit {out['fit_s']:7.2f} s (setup "
                      f"{out['setup_s']:.2f} s, per epoch {out['per_epoch_s']:.2f} s, "
                      f"{1e3 * (out['fit_s'] - out['setup_s']) / out['steps']:.1f} ms/step), "
                      f"dev acc {100 * out['dev_acc']:.2f}%, loss {out['loss']:.4f}, peak RSS "
                      f"{mib(out['peak_kib']):.0f} MiB (after imports "
                      f"{mib(out['rss_imports_kib']):.0f}, before fit "
                      f"{mib(out['rss_before_fit_kib']):.0f}), foreign load {load}%", flush=True)
                if a.profile:
                    print(f"    streaming bandwidth (np.add over the parameters' size, 3 "
                          f"arrays): {out['stream_gbs']:.1f} GB/s")
                    for row in out["profile"]:
                        print(f"    {row['tottime_s']:7.3f} s  {row['calls']:5d} calls  "
                              f"{1e3 * row['tottime_s'] / out['steps']:6.2f} ms/step  "
                              f"{row['fn']}")
    summarize(a, results, csr_bytes)
    print(f"total wall {time.perf_counter() - t_start:.0f} s")


def summarize(a, results, csr_bytes):
    med = {p: {k: statistics.median(o[k] for o in rs) for k in
               ("fit_s", "per_epoch_s", "setup_s", "dev_acc", "peak_kib", "rss_imports_kib",
                "rss_before_fit_kib", "ru_maxrss_kib")}
           for p, rs in results.items()}
    print("\nsummary (medians over rounds)")
    scale = ISSUE_ROWS / a.rows
    for p, m in med.items():
        param_bytes = results[p][0]["param_bytes"]
        growth = (m["peak_kib"] - m["rss_imports_kib"]) * 1024
        fit_growth = (m["peak_kib"] - m["rss_before_fit_kib"]) * 1024
        bound = csr_bytes + param_bytes
        floor = csr_bytes + 4 * param_bytes
        print(f"  {p:8s} fit {m['fit_s']:.2f} s, per epoch {m['per_epoch_s']:.2f} s"
              + ("" if scale == 1 else f" (x{scale:g} rows: {m['per_epoch_s'] * scale:.1f} s "
                 f"an epoch at {ISSUE_ROWS:,} rows)")
              + f", dev acc {100 * m['dev_acc']:.2f}%, peak RSS {mib(m['peak_kib']):.0f} MiB, "
              f"growth over imports {growth / 2**20:.0f} MiB = {growth / bound:.2f}x "
              f"(CSR + parameters = {bound / 2**20:.0f} MiB; target < {TARGET_RSS:g}x: "
              f"{'met' if growth < TARGET_RSS * bound else 'MISSED'}), "
              f"{growth / floor:.2f}x the Adam floor (CSR + 4x parameters = "
              f"{floor / 2**20:.0f} MiB); fit growth (over RSS before the fit) "
              f"{fit_growth / 2**20:.0f} MiB = {fit_growth / param_bytes:.2f}x the parameters; "
              f"ru_maxrss {mib(m['ru_maxrss_kib']):.0f} MiB")
    if "sklearn" in results:
        for p in [q for q in results if q != "sklearn"]:
            ratios = [s["fit_s"] / f["fit_s"] for s, f in zip(results["sklearn"], results[p])]
            ep = [s["per_epoch_s"] / f["per_epoch_s"]
                  for s, f in zip(results["sklearn"], results[p])]
            gap = 100 * (med[p]["dev_acc"] - med["sklearn"]["dev_acc"])
            r = statistics.median(ratios)
            e = statistics.median(ep)
            print(f"  {p} vs scikit-learn: fit {r:.2f}x ({', '.join(f'{x:.2f}' for x in ratios)}"
                  f"; target >= {TARGET_SPEED:g}x: {'met' if r >= TARGET_SPEED else 'MISSED'}),"
                  f" per epoch {e:.2f}x ({'met' if e >= TARGET_SPEED else 'MISSED'}); "
                  f"accuracy gap {gap:+.2f} points (target within {TARGET_ACC_POINTS:g}: "
                  f"{'met' if abs(gap) <= TARGET_ACC_POINTS else 'MISSED'})")


if __name__ == "__main__":
    main()
