"""Dense (fully connected) layer, forward and backward, activation fused (cuda).

Same legend and math as ``reference/dense.py``:
    A = g(X W^T + b)          dZ = dA * g'(Z)   dW = dZ^T X   db = sum_rows dZ   dX = dZ W
Differs from the reference in how the passes are grouped:
    forward   GEMM (cuBLAS via CuPy, or the tiled numba GEMM; ``_gemm.py``), then ONE kernel
              adding the bias and applying g in place;
    backward  ONE kernel turning dA into dZ in place *and* summing its columns into db (each
              block owns a strip of columns, its threads stride down the rows, and a shared-
              memory tree reduces them: no atomics, no race), then the two GEMMs.
For tall batches the column sums are split over row ranges (``gridDim.y``) to use the whole GPU;
the split partials land in a scratch buffer and a second tiny kernel adds them.
"""

from numba import cuda

from ._device import SHARED_SIZE, _fill_kernel, blocks, column_block, column_sum, per_dtype, \
    scratch, tpb
from .blas import gemm
from .precision import to_bfloat16
from .activations import _act_fns

#: Rows each thread handles (at least) before the column sums are split over row ranges.
_COLSUM_MIN_ROWS_PER_THREAD = 64
#: Blocks the column-sum kernel aims for (about two per SM of an H100).
_COLSUM_TARGET_BLOCKS = 264


@per_dtype
def _bias_act_kernel(T):
    act, _ = _act_fns.for_type(T)

    @cuda.jit
    def kernel(A, b, activation, alpha):
        """A = g(A + b) in place (no bias when b has size 0)."""
        n = A.shape[1]
        has_b = b.shape[0] > 0
        for i in range(cuda.grid(1), A.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            z = A[r, c]
            if has_b:
                z += b[c]
            A[r, c] = act(z, activation, alpha)
    return kernel


@per_dtype
def _dz_colsum_kernel(T):
    _, act_grad = _act_fns.for_type(T)

    @cuda.jit
    def kernel(db, partial, dA, A, activation, alpha):
        """dA <- dA * g'(A) in place; column sums into db (gridDim.y == 1) or into
        partial[split * n + c] (row range ``split`` = blockIdx.y of gridDim.y)."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        TX = cuda.blockDim.x
        TY = cuda.blockDim.y
        m = dA.shape[0]
        n = dA.shape[1]
        want_sum = db.shape[0] > 0
        n_split = cuda.gridDim.y
        split = cuda.blockIdx.y
        rows = (m + n_split - 1) // n_split
        r0 = split * rows
        r1 = min(m, r0 + rows)
        for c0 in range(cuda.blockIdx.x * TX, n, cuda.gridDim.x * TX):
            c = c0 + tx
            s = T(0)
            if c < n:
                for r in range(r0 + ty, r1, TY):
                    dz = act_grad(dA[r, c], A[r, c], activation, alpha)
                    dA[r, c] = dz
                    s += dz
            if want_sum:
                total = column_sum(sh, s)
                if ty == 0 and c < n:
                    if n_split == 1:
                        db[c] = total
                    else:
                        partial[split * n + c] = total
    return kernel


@per_dtype
def _colsum_finish_kernel(T):
    @cuda.jit
    def kernel(db, partial, n_split):
        """db[c] = sum_s partial[s * n + c]."""
        n = db.shape[0]
        for c in range(cuda.grid(1), n, cuda.gridsize(1)):
            s = T(0)
            for k in range(n_split):
                s += partial[k * n + c]
            db[c] = s
    return kernel


def dense_forward(A, A16, X, W, b, activation, alpha):
    """A = g(X W^T + b): GEMM, then one fused bias + activation kernel; A16 = bf16(A) by a
    conversion kernel after it (unless A16 is empty)."""
    gemm(A, X, W, False, True)
    if A.size and (b.size or activation != 0):
        _bias_act_kernel(A.dtype)[blocks(A.size), tpb()](A, b, int(activation),
                                                         A.dtype.type(alpha))
    if A16.size:
        to_bfloat16(A16, A)


def dense_backward(dX, dW, db, dZ16, dA, A, X, W, activation, alpha):
    """Gradients of the layer. ``dA`` is overwritten with dZ (it is a workspace); with a
    non-empty ``dZ16`` the GEMMs read bf16(dZ), converted after the dZ kernel."""
    m, n = dA.shape
    if m and n and (db.size or activation != 0):
        tx, ty = column_block()
        col_blocks = min((n + tx - 1) // tx, 65535)
        n_split = 1
        if db.size:
            rows_per_block = ty * _COLSUM_MIN_ROWS_PER_THREAD
            n_split = max(1, min((m + rows_per_block - 1) // rows_per_block,
                                 _COLSUM_TARGET_BLOCKS // col_blocks, 65535))
        partial = scratch("colsum", n_split * n, dA.dtype)
        _dz_colsum_kernel(dA.dtype)[(col_blocks, n_split), (tx, ty)](
            db, partial, dA, A, int(activation), dA.dtype.type(alpha))
        if n_split > 1:
            _colsum_finish_kernel(dA.dtype)[blocks(n), tpb()](db, partial, n_split)
    elif db.size:  # an empty batch: the column sums are zero
        _fill_kernel[blocks(db.size), tpb()](db, db.dtype.type(0))
    dZ = dA
    if dZ16.size:
        to_bfloat16(dZ16, dA)
        dZ = dZ16
    gemm(dW, dZ, X, True, False)
    if dX.size:
        gemm(dX, dZ, W, False, False)
