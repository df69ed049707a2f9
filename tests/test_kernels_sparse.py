"""The sparse-input kernels (``kernels/*/sparse.py``: ``csr_dense_forward``,
``csr_dense_backward``; ``batching.gather_csr_rows``) beyond the registry's comparisons.

The cpu and cuda kernels against the reference run from ``tests/kernel_cases/sparse.py`` (and
``batching.py``'s ``gather_csr_rows`` case) in ``tests/test_kernels_vs_reference.py`` and
``tests/cuda_sim/kernels_sim.py``: hostile CSR layouts, both index dtypes, row ranges, empty
batches, the parallel passes. Here: the reference itself against outside math (dense NumPy on
the densified matrix, scipy's products and row indexing), the kernel contract on values the
registry does not draw (NaN in unstored columns of W), the cpu kernels' per-thread scratch, and
hypothesis fuzzing of cpu against the reference.
"""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdl.kernels import ACTIVATIONS
from fastdl.kernels import cpu as C
from fastdl.kernels import reference as R

NO16 = np.zeros((0, 0), np.uint16)
DTYPES = (np.float32, np.float64)
ACTS = sorted(ACTIVATIONS.values())
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ALPHA = 0.07
DENSITIES = (0.0, 0.003, 0.05, 0.3, 1.0)


def assert_close(got, ref, dtype, rtol=None, scale=None):
    """``scale``: the size of the terms the result is made of (default: its largest |value|)."""
    rtol = RTOL[dtype] if rtol is None else rtol
    ref = np.asarray(ref)
    if scale is None:
        finite = np.abs(ref[np.isfinite(ref)]) if ref.size else np.zeros(1)
        scale = finite.max() if finite.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


def random_csr(rng, m, n, density, dtype, index_dtype=np.int32, unsorted=True,
               duplicates=True):
    """(data, indices, indptr) of an m x n CSR matrix: about ``density * n`` entries per row
    (some rows forced empty), columns shuffled within rows, some entries repeated."""
    rows = []
    for r in range(m):
        k = rng.binomial(n, density) if density < 1 else n
        if r % 5 == 3:
            k = 0                                   # empty rows
        cols = rng.choice(n, size=k, replace=False)
        vals = rng.standard_normal(k) * rng.choice([0.01, 1.0, 30.0], size=k)
        if duplicates and k:
            extra = rng.integers(0, k, size=max(1, k // 4))
            cols = np.concatenate([cols, cols[extra]])
            vals = np.concatenate([vals, rng.standard_normal(extra.shape[0])])
        order = rng.permutation(cols.shape[0]) if unsorted else np.argsort(cols, kind="stable")
        rows.append((cols[order], vals[order]))
    indptr = np.zeros(m + 1, np.int64)
    indptr[1:] = np.cumsum([c.shape[0] for c, _ in rows])
    indices = np.concatenate([c for c, _ in rows] + [np.zeros(0, np.int64)]).astype(index_dtype)
    data = np.concatenate([v for _, v in rows] + [np.zeros(0)]).astype(dtype)
    return data, indices, indptr


def densify(data, indices, indptr, m, n):
    """The dense matrix (float64), repeated entries added."""
    out = np.zeros((m, n))
    for r in range(m):
        k = slice(indptr[r], indptr[r + 1])
        np.add.at(out[r], indices[k], data[k].astype(np.float64))
    return out


def layer(rng, n_in, n_out, dtype, bias=True):
    W = (rng.standard_normal((n_out, n_in)) / np.sqrt(max(n_in, 1))).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype) if bias else np.zeros(0, dtype)
    return W, b




# --- the reference is the dense math on the densified X ----------------------------------------
@pytest.mark.parametrize("density", DENSITIES)
def test_reference_is_the_dense_product(density):
    rng = np.random.default_rng(1)
    m, n_in, n_out = 11, 19, 6
    data, indices, indptr = random_csr(rng, m, n_in, density, np.float64)
    X = densify(data, indices, indptr, m, n_in)
    W, b = layer(rng, n_in, n_out, np.float64)
    for act in ACTS:
        A = np.full((m, n_out), np.nan)
        R.csr_dense_forward(A, NO16, data, indices, indptr, W, b, act, ALPHA)
        want = np.empty_like(A)
        R.activation_forward(want, X @ W.T + b, act, ALPHA)
        np.testing.assert_allclose(A, want, rtol=1e-12, atol=1e-12)
        dA = rng.standard_normal((m, n_out))
        dZ = np.empty_like(dA)
        R.activation_backward(dZ, dA, A, act, ALPHA)
        dW, db = np.full((n_out, n_in), np.nan), np.full(n_out, np.nan)
        R.csr_dense_backward(dW, db, dA, A, data, indices, indptr, act, ALPHA)
        np.testing.assert_allclose(dA, dZ, rtol=1e-12)          # dA became dZ
        np.testing.assert_allclose(dW, dZ.T @ X, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(db, dZ.sum(axis=0), rtol=1e-12, atol=1e-12)


def test_reference_matches_scipy():
    """scipy's own CSR product on a non-canonical matrix (duplicates, unsorted)."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(2)
    data, indices, indptr = random_csr(rng, 15, 30, 0.2, np.float64)
    X = sp.csr_matrix((data, indices, indptr), shape=(15, 30))
    assert not X.has_canonical_format
    W, b = layer(rng, 30, 4, np.float64, bias=False)
    A = np.empty((15, 4))
    R.csr_dense_forward(A, NO16, data, indices, indptr, W, b, 0, 0.0)
    np.testing.assert_allclose(A, X @ W.T, rtol=1e-12, atol=1e-12)
    dZ = rng.standard_normal((15, 4))
    dW = np.empty((4, 30))
    R.csr_dense_backward(dW, b, dZ.copy(), A, data, indices, indptr, 0, 0.0)
    np.testing.assert_allclose(dW, (X.T @ dZ).T, rtol=1e-12, atol=1e-12)


def _forward_both(rng, dtype, m, n_in, n_out, density, index_dtype, act, bias, unsorted=True):
    data, indices, indptr = random_csr(rng, m, n_in, density, dtype, index_dtype, unsorted)
    W, b = layer(rng, n_in, n_out, dtype, bias)
    ref = np.full((m, n_out), np.nan, dtype)
    R.csr_dense_forward(ref, NO16, data, indices, indptr, W, b, act, ALPHA)
    got = np.full((m, n_out), np.nan, dtype)
    C.csr_dense_forward(got, NO16, data, indices, indptr, W, b, act, ALPHA)
    return got, ref, (data, indices, indptr, W, b)


def test_reference_row_range_of_a_larger_matrix():
    """indptr[0] != 0: rows a..b of a matrix passed as its arrays and indptr[a:b+1] are those
    rows of the whole product, and their dW is the dense dZ^T X of those rows."""
    rng = np.random.default_rng(5)
    data, indices, indptr = random_csr(rng, 20, 25, 0.3, np.float64)
    W, b = layer(rng, 25, 18, np.float64)
    a, z = 7, 15
    sub = indptr[a:z + 1]
    assert sub[0] != 0
    whole = np.empty((20, 18))
    R.csr_dense_forward(whole, NO16, data, indices, indptr, W, b, 2, ALPHA)
    A = np.full((z - a, 18), np.nan)
    R.csr_dense_forward(A, NO16, data, indices, sub, W, b, 2, ALPHA)
    np.testing.assert_array_equal(A, whole[a:z])
    dA = rng.standard_normal((z - a, 18))
    X = densify(data, indices, indptr, 20, 25)[a:z]
    dW = np.full((18, 25), np.nan)
    R.csr_dense_backward(dW, np.zeros(0), dA.copy(), whole[a:z], data, indices, sub, 0, 0.0)
    np.testing.assert_allclose(dW, dA.T @ X, rtol=1e-12, atol=1e-12)


def test_reference_empty_batch():
    """m = 0: no output rows; dW and db are zero (nothing contributed). The cpu and cuda
    kernels match it on the registry's empty batches."""
    W, b = layer(np.random.default_rng(6), 5, 3, np.float64)
    A = np.zeros((0, 3))
    data, indices, indptr = np.zeros(0), np.zeros(0, np.int32), np.zeros(1, np.int64)
    R.csr_dense_forward(A, NO16, data, indices, indptr, W, b, 1, 0.0)
    dW, db = np.full((3, 5), np.nan), np.full(3, np.nan)
    R.csr_dense_backward(dW, db, np.zeros((0, 3)), A, data, indices, indptr, 1, 0.0)
    assert (dW == 0).all() and (db == 0).all()


@pytest.mark.parametrize("kernels", (R, C), ids=("reference", "cpu"))
def test_unstored_entries_are_exact_zeros(kernels):
    """NaN in a column of W that no row stores does not reach A (scipy's semantics); in a
    stored column it does."""
    rng = np.random.default_rng(7)
    indptr = np.array([0, 2, 3], np.int64)
    indices = np.array([0, 2, 2], np.int32)
    data = np.array([1.0, 2.0, -1.0])
    W, b = layer(rng, 4, 3, np.float64)
    W[:, 3] = np.nan                          # column 3 is never stored
    A = np.empty((2, 3))
    kernels.csr_dense_forward(A, NO16, data, indices, indptr, W, b, 0, 0.0)
    assert np.isfinite(A).all()
    W[1, 2] = np.nan                          # column 2 is stored by both rows
    kernels.csr_dense_forward(A, NO16, data, indices, indptr, W, b, 0, 0.0)
    assert np.isnan(A[:, 1]).all() and np.isfinite(A[:, [0, 2]]).all()


def test_scratch_is_private_to_each_thread():
    """The cpu kernels' scratch (the batch regrouped by column, dZ^T) is per thread: two
    threads predicting at once get their own results (a shared buffer would mix them)."""
    rng = np.random.default_rng(10)
    W, b = layer(rng, 300, 40, np.float64)
    problems = [random_csr(rng, 50, 300, 0.05, np.float64) for _ in range(2)]
    want = []
    for data, indices, indptr in problems:
        A = np.empty((50, 40))
        R.csr_dense_forward(A, NO16, data, indices, indptr, W, b, 1, 0.0)
        want.append(A)
    errors = []

    def run(k):
        data, indices, indptr = problems[k]
        A = np.empty((50, 40))
        for _ in range(200):
            C.csr_dense_forward(A, NO16, data, indices, indptr, W, b, 1, 0.0)
            if not np.allclose(A, want[k], rtol=1e-12, atol=1e-12):
                errors.append(k)
                return
    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 20), n_in=st.integers(1, 50), n_out=st.integers(1, 40),
       density=st.sampled_from(DENSITIES), act=st.sampled_from(ACTS),
       dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**16))
def test_fuzz_cpu_against_reference(m, n_in, n_out, density, act, dtype, seed):
    rng = np.random.default_rng(seed)
    got, ref, (data, indices, indptr, W, b) = _forward_both(rng, dtype, m, n_in, n_out,
                                                            density, np.int64, act, True)
    assert_close(got, ref, dtype)
    dA = rng.standard_normal((m, n_out)).astype(dtype)
    r = [np.empty_like(W), np.empty_like(b), dA.copy()]
    g = [np.full_like(W, np.nan), np.full_like(b, np.nan), dA.copy()]
    R.csr_dense_backward(*r, ref, data, indices, indptr, act, ALPHA)
    C.csr_dense_backward(*g, ref, data, indices, indptr, act, ALPHA)
    # dZ = dA g'(a) of a saturated tanh/sigmoid carries the absolute error of 1 - a (~eps),
    # not a relative one: compare at the scale of the terms without g' (|dA|, |dA|^T |X|)
    absX = np.zeros((m, n_in))
    np.add.at(absX, (np.repeat(np.arange(m), np.diff(indptr)), indices), np.abs(data))
    absdA = np.abs(dA.astype(np.float64))
    scales = [float((absdA.T @ absX).max(initial=0.0)), float(absdA.sum(axis=0).max()),
              float(absdA.max())]
    for x, y, sc in zip(g, r, scales):
        assert_close(x, y, dtype, scale=max(sc, np.finfo(np.float64).tiny))


# --- gather_csr_rows ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", (np.int32, np.int64))
def test_reference_gather_csr_rows_is_scipy_row_indexing(index_dtype, dtype):
    """Rows in the given order (repeats, empty rows) into buffers larger than needed; the
    result is scipy's X[idx]; entries past the batch are left as they were. (cpu and cuda
    against the reference: the registry's gather_csr_rows case.)"""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(11)
    data, indices, indptr = random_csr(rng, 17, 23, 0.3, dtype, index_dtype)
    X = sp.csr_matrix((data, indices, indptr), shape=(17, 23))
    for idx in (np.array([3, 0, 16, 3, 8], np.int64), np.array([3], np.int64),
                np.zeros(0, np.int64), rng.permutation(17).astype(np.int64)):
        cap = int(np.diff(indptr)[idx].sum()) + 5
        out_data = np.full(cap, -7, dtype)
        out_indices = np.full(cap, -7, index_dtype)
        out_indptr = np.full(idx.shape[0] + 1, -7, np.int64)
        R.gather_csr_rows(out_data, out_indices, out_indptr, data, indices, indptr, idx)
        Y = X[idx]
        n = int(out_indptr[-1])
        np.testing.assert_array_equal(out_indptr, Y.indptr)
        np.testing.assert_array_equal(out_indices[:n], Y.indices)
        np.testing.assert_array_equal(out_data[:n], Y.data)
        assert (out_data[n:] == -7).all() and (out_indices[n:] == -7).all()
