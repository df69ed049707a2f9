"""The reproducibility contract (docs/reproducibility.md): same seed and data give bit-identical
parameters on the cpu backend whatever the thread count (1, 2, and more threads than cores),
float32 and float64, with dropout and batch norm, in memory and streamed; the numpy and cpu
backends agree within the documented tolerance; the deterministic GEMM is correct.

The thread-count checks run in a child process (``_thread_bits.py``) started with
``NUMBA_NUM_THREADS=4`` (more than the 2 cores of the dev machine) and
``FASTDL_GEMM_BLOCKS=3`` (several, uneven GEMM blocks on any machine).
"""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastdl as fd
from fastdl import config
from fastdl.kernels.cpu import _openblas as _blas

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

needs_openblas = pytest.mark.skipif(
    _blas.BLAS_SYMBOL is None,
    reason="NumPy's BLAS is not an OpenBLAS with batch GEMMs (>= 0.3.29): fastdl makes no "
           "thread-count promise there (docs/reproducibility.md)")


def _child(mode, **env):
    full = dict(os.environ, NUMBA_NUM_THREADS="4", FASTDL_GEMM_BLOCKS="3",
                PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    full.pop("FASTDL_DETERMINISTIC", None)
    full.update(env)
    proc = subprocess.run([sys.executable, os.path.join(HERE, "_thread_bits.py"), mode, "1", "2",
                           "4"], env=full, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_one_hash_per_case(result, expected_cases):
    assert result["deterministic"] is True
    cases = result["cases"]
    assert len(cases) == expected_cases
    for name, by_threads in cases.items():
        assert set(by_threads) == {"1", "2", "4"}, name
        assert len(set(by_threads.values())) == 1, f"{name}: {by_threads}"


@needs_openblas
def test_cpu_kernels_bits_do_not_depend_on_the_thread_count():
    """Every cpu kernel, its parallel (prange) variant forced, and the GEMM-backed dense
    kernels: the same bits at 1, 2 and 4 threads. (With ``FASTDL_DETERMINISTIC=0`` the dense
    kernels differ, through OpenBLAS's threaded GEMM: what this contract fixes.)"""
    _assert_one_hash_per_case(_child("kernels"), expected_cases=40)


@needs_openblas
def test_training_bits_do_not_depend_on_the_thread_count():
    """784-256(batch norm, dropout)-128-10 with Adam for 2 epochs, float32 and float64, in
    memory and streamed from .npy, and a tiny net on the whole-epoch kernel: the same weights
    and loss history at 1, 2 and 4 threads."""
    _assert_one_hash_per_case(_child("training"), expected_cases=6)


# ------------------------------------------------------------------ the deterministic GEMM ----
SHAPES = [(1, 1, 1), (7, 3, 5), (64, 10, 128), (64, 256, 784), (300, 130, 77), (1000, 129, 17),
          (129, 1000, 33), (256, 784, 64)]


@needs_openblas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_deterministic_gemm_matches_matmul(monkeypatch, dtype, M, N, K, ta, tb):
    monkeypatch.setattr(config, "DETERMINISTIC", True)
    monkeypatch.setattr(config, "GEMM_BLOCKS", 3)
    rng = np.random.default_rng(M * 7 + N * 3 + K)
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    C = np.full((M, N), np.nan, dtype)
    _blas.gemm(C, A, B, ta, tb)
    ref = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64)
    tol = (1e-5 if dtype == np.float32 else 1e-13) * np.sqrt(K) * max(1.0, np.abs(ref).max())
    np.testing.assert_allclose(C, ref, rtol=0, atol=tol)


@needs_openblas
def test_deterministic_gemm_edge_cases(monkeypatch):
    monkeypatch.setattr(config, "DETERMINISTIC", True)
    C = np.full((3, 4), np.nan, np.float32)
    _blas.gemm(C, np.ones((3, 0), np.float32), np.ones((0, 4), np.float32))   # K = 0
    np.testing.assert_array_equal(C, 0)
    _blas.gemm(np.empty((0, 4)), np.ones((0, 5)), np.ones((5, 4)))           # M = 0: no-op
    # strided operands and output (views) give the contiguous operands' bits
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((300, 200)), rng.standard_normal((200, 260))
    want = np.empty((300, 260))
    _blas.gemm(want, A, B)
    big = np.zeros((300, 520))
    _blas.gemm(big[:, ::2], np.asfortranarray(A), B[:, :].copy(order="F"))
    np.testing.assert_array_equal(big[:, ::2], want)


def test_plan_depends_on_the_shape_only():
    """Blocks cover the cut side, each above the batch routine's small-matrix size, the larger
    side is cut, and ``most`` caps the count."""
    for M, N, K, most in [(64, 256, 784, 2), (256, 784, 64, 8), (1024, 256, 784, 3),
                          (1024, 10, 128, 4), (64, 128, 256, 16), (100, 100, 100, 2)]:
        split_rows, blocks, block = _blas.plan(M, N, K, most)
        side, other = (M, N) if split_rows else (N, M)
        assert split_rows == (M > N)
        assert 1 <= blocks <= most
        assert (blocks - 1) * block < side <= blocks * block
        if blocks > 1:
            assert block % 8 == 0 and block >= _blas._MIN_BLOCK
            assert (side - (blocks - 1) * block) * other * K > _blas._SMALL_WORK
    assert _blas.plan(64, 256, 784, 2)[1:] == (2, 128)
    assert _blas.plan(64, 10, 128, 8)[1] == 1              # 82K multiply-adds: one call


def test_deterministic_required_without_openblas_raises(monkeypatch):
    monkeypatch.setattr(_blas, "_FOUND", None)
    A = np.ones((4, 4), np.float32)
    C = np.empty((4, 4), np.float32)
    monkeypatch.setattr(config, "DETERMINISTIC", None)     # auto: falls back to matmul
    assert not _blas.deterministic()
    _blas.gemm(C, A, A)
    np.testing.assert_array_equal(C, 4)
    monkeypatch.setattr(config, "DETERMINISTIC", True)
    with pytest.raises(RuntimeError, match="DETERMINISTIC=True needs NumPy's BLAS"):
        _blas.gemm(C, A, A)


@needs_openblas
def test_concurrent_small_gemms_restore_the_blas_thread_count(monkeypatch):
    """Small GEMMs hold OpenBLAS at one thread and restore it; from two Python threads at once
    the results stay right and the count is the caller's afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits
    monkeypatch.setattr(config, "DETERMINISTIC", True)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 50)).astype(np.float32)
    B = rng.standard_normal((50, 30)).astype(np.float32)
    want = np.empty((40, 30), np.float32)
    _blas.gemm(want, A, B)
    bad = []

    def work():
        C = np.empty((40, 30), np.float32)
        for _ in range(300):
            _blas.gemm(C, A, B)
            if not np.array_equal(C, want):
                bad.append(C.copy())

    def numpy_blas_threads():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info()
                if i["internal_api"] == "openblas"}
    with threadpool_limits(3, user_api="blas"):
        before = numpy_blas_threads()
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert numpy_blas_threads() == before
    assert not bad


# ------------------------------------------------------------------- numpy vs cpu backends ----
def _bn_dropout_net(dtype, backend):
    return fd.Sequential([fd.Dense(256), fd.BatchNorm(), fd.Activation("relu"),
                          fd.Dropout(keep_prob=0.8), fd.Dense(128, activation="relu"),
                          fd.Dense(10, activation="softmax")],
                         input_dim=784, dtype=dtype, seed=3, backend=backend)


@pytest.mark.parametrize("dtype,tol", [("float32", 2e-4), ("float64", 1e-12)])
def test_numpy_and_cpu_backends_agree_within_the_documented_tolerance(dtype, tol):
    """docs/reproducibility.md: after 2 epochs (20 Adam steps) of the batch-norm + dropout net,
    every weight tensor of the two backends agrees to ``tol`` times its largest magnitude
    (measured: 4e-5 in float32, 3e-14 in float64; dropout masks are bit-identical by design)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1000, 784)).astype(dtype)
    y = rng.integers(0, 10, 1000)
    runs = {}
    for backend in ("numpy", "cpu"):
        model = _bn_dropout_net(dtype, backend)
        h = model.fit(X, y, optimizer=fd.optim.Adam(), epochs=2, batch_size=100, verbose=0)
        runs[backend] = (model.get_weights(), h.history["loss"])
    for ref, got in zip(runs["numpy"][0], runs["cpu"][0]):
        scale = max(np.abs(ref).max(), 1e-30)
        assert np.abs(got.astype(np.float64) - ref).max() <= tol * scale
    np.testing.assert_allclose(runs["cpu"][1], runs["numpy"][1], rtol=10 * tol)


# ------------------------------------------------------------------------------- MPI ranks ----
RANK_SCRIPT = """
import hashlib, sys
import numpy as np
import fastdl as fd
fd.set_num_threads(int(sys.argv[1]))
rng = np.random.default_rng(1)
X, y = rng.standard_normal((800, 784)).astype("float32"), rng.integers(0, 10, 800)
model = fd.Sequential([fd.Dense(256), fd.BatchNorm(), fd.Activation("relu"),
                       fd.Dropout(keep_prob=0.8), fd.Dense(10, activation="softmax")],
                      input_dim=784, seed=3)
model.fit(X, y, optimizer=fd.optim.Adam(), epochs=2, batch_size=200, verbose=0,
          distributed=True)
h = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
from mpi4py import MPI
# a file per rank: mpiexec's forwarding of two ranks' stdout can merge or drop a line
with open(f"{sys.argv[2]}.{MPI.COMM_WORLD.Get_rank()}", "w") as f:
    f.write(h)
"""


def test_mpi_ranks_bits_do_not_depend_on_the_thread_count(tmp_path):
    """A 2-rank data-parallel fit (batch norm, dropout) gives the same weights on both ranks
    and in a second launch with another thread count per rank (docs/reproducibility.md)."""
    pytest.importorskip("mpi4py", reason="the mpi extra (mpi4py + mpich) is not installed")
    import shutil
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")     # the mpich wheel's
    mpiexec = here if os.path.exists(here) else shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec on PATH (pip install -e '.[mpi]')")
    if _blas.BLAS_SYMBOL is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS with batch GEMMs")
    env = dict(os.environ, NUMBA_NUM_THREADS="4", FASTDL_GEMM_BLOCKS="3",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    hashes = []
    for threads in ("1", "2"):
        out = str(tmp_path / f"weights-{threads}")
        proc = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", RANK_SCRIPT, threads,
                               out], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        for rank in (0, 1):
            with open(f"{out}.{rank}") as f:
                hashes.append(f.read())
    assert len(hashes) == 4 and len(set(hashes)) == 1, hashes
