"""Sparse input of the first Dense layer, X in CSR (cuda).

Same contract as ``reference/sparse.py`` (device arrays for data, indices, indptr). Differs in
densifying X on the device, one block of rows at a time, and then taking the dense path:

    densify   Xd = 0 (fill kernel), then one thread per row adds its entries
              (Xd[r, indices[k]] += data[k]: a row's repeated columns add in order, rows never
              share a thread, so no atomics)
    forward   A[block] = Xd W^T (``gemm``: cuBLAS through CuPy, or the tiled GEMM), then the
              bias + activation kernel of ``dense.py`` over A, then A16
    backward  dZ and db by ``dense.py``'s kernel, then dW = dZ^T Xd, block by block (the first
              block writes dW, later ones go through a scratch product added to it)

A block holds at most ``config.SPARSE_DENSIFY_MAX_BYTES`` (and at least one row): a training
batch is one block (256 x 50,000 float32 is 51 MB of device memory), evaluation chunks of many
rows several. The GEMM then multiplies mostly zeros; on a GPU that is still fast (cuBLAS at
tens of TFLOP/s), and nothing of X is densified on the host. A cuSPARSE SpMM is the next step
if it matters; the CPU kernels (``cpu/sparse.py``) never densify.
"""

from numba import cuda

from ... import config
from ._device import _fill_kernel, blocks, per_dtype, scratch, tpb
from .blas import gemm
from .dense import _bias_act, _dz_db
from .precision import to_bfloat16


@per_dtype
def _densify_kernel(T):
    @cuda.jit
    def kernel(Xd, data, indices, indptr, r0, r1):
        """Xd[r - r0, indices[k]] += data[k] for the entries k of rows r0 .. r1-1 (Xd zeroed
        by the caller); one thread per row."""
        for r in range(r0 + cuda.grid(1), r1, cuda.gridsize(1)):
            row = r - r0
            for p in range(indptr[r], indptr[r + 1]):
                Xd[row, indices[p]] += data[p]
    return kernel


@per_dtype
def _add_kernel(T):
    @cuda.jit
    def kernel(out, x):
        """out += x (1-D)."""
        for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            out[i] += x[i]
    return kernel


def _block_rows(n_in, dtype):
    """Rows per densified block: its (rows, n_in) copy stays within the configured bytes."""
    return max(1, int(config.SPARSE_DENSIFY_MAX_BYTES) // max(1, n_in * dtype.itemsize))


def _densified(data, indices, indptr, r0, r1, n_in, dtype):
    """Rows r0 .. r1-1 of X as a dense (r1 - r0, n_in) device array (reused scratch)."""
    k = r1 - r0
    flat = scratch("csr_dense", k * n_in, dtype)[:k * n_in]
    _fill_kernel[blocks(flat.shape[0]), tpb()](flat, dtype.type(0))
    Xd = flat.reshape(k, n_in)
    _densify_kernel(dtype)[blocks(k), tpb()](Xd, data, indices, indptr, r0, r1)
    return Xd


def csr_dense_forward(A, A16, data, indices, indptr, W, b, activation, alpha):
    """A = g(X W^T + b): X densified block by block on the device, GEMM per block, then one
    fused bias + activation kernel; A16 = bf16(A) unless empty."""
    m = A.shape[0]
    n_in = W.shape[1]
    step = _block_rows(n_in, A.dtype)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        gemm(A[r0:r1], _densified(data, indices, indptr, r0, r1, n_in, A.dtype), W, False,
             True)
    _bias_act(A, b, activation, alpha)
    if A16.size:
        to_bfloat16(A16, A)


def csr_dense_backward(dW, db, dA, A, data, indices, indptr, activation, alpha):
    """dZ (into dA) and db by the dense kernel; dW = dZ^T X with X densified block by block
    (a later block's product is added to dW through scratch)."""
    m, n_out = dA.shape
    n_in = dW.shape[1]
    _dz_db(db, dA, A, activation, alpha)
    if m == 0:
        flat = dW.reshape(dW.size)
        _fill_kernel[blocks(flat.shape[0]), tpb()](flat, dW.dtype.type(0))
        return
    step = _block_rows(n_in, dA.dtype)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        Xd = _densified(data, indices, indptr, r0, r1, n_in, dA.dtype)
        if r0 == 0:
            gemm(dW, dA[r0:r1], Xd, True, False)
            continue
        part = scratch("csr_dW", n_out * n_in, dA.dtype)[:n_out * n_in]
        gemm(part.reshape(n_out, n_in), dA[r0:r1], Xd, True, False)
        _add_kernel(dA.dtype)[blocks(part.shape[0]), tpb()](dW.reshape(dW.size), part)
