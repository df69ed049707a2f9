"""Reductions the training loop needs besides the losses (cuda).

sum_squares: out[0] = sum_i x_i^2, as ``reference/reductions.py``. Differs in accumulating in
the dtype of x (the reference uses float64; a tree of per-thread, per-block and final sums keeps
float32 error small) and in being two launches with no race and no host sync: per-block partials
tree-reduced in shared memory, then one block adds them (one launch when one block suffices).
"""

from numba import cuda

from ._device import SHARED_SIZE, block_sum, finish, per_dtype, reduce_blocks, scratch, tpb


@per_dtype
def _sum_squares_kernel(T):
    @cuda.jit
    def kernel(out, k, scale, partial, direct, x, n):
        """Stage 1 over x[:n]: out[k] = scale * sum when ``direct``, else per-block partials."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        acc = T(0)
        for i in range(cuda.grid(1), n, cuda.gridsize(1)):
            v = x[i]
            acc += v * v
        total = block_sum(sh, acc)
        if cuda.threadIdx.x == 0:
            if direct:
                out[k] = total * scale
            else:
                partial[cuda.blockIdx.x] = total
    return kernel


def _sum_squares_partials(x, n, name="sumsq"):
    """Stage 1 only: (partials, count) of sum(x[:n]^2), for a launcher that combines them."""
    nb = reduce_blocks(n)
    partial = scratch(name, nb, x.dtype)
    _sum_squares_kernel(x.dtype)[nb, tpb()](partial, 0, x.dtype.type(1), partial, False, x, n)
    return partial, nb


def sum_squares(out, x):
    """out[0] = sum(x^2)."""
    n = x.shape[0]
    nb = reduce_blocks(n)
    direct = nb == 1
    partial = scratch("sumsq", nb, x.dtype)
    _sum_squares_kernel(x.dtype)[nb, tpb()](out, 0, x.dtype.type(1), partial, direct, x, n)
    if not direct:
        finish(out, 0, partial, nb, 1.0)
