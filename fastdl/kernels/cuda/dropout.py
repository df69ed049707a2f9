"""Inverted dropout, forward and backward, with the counter-based mask (cuda).

Same mask bits as ``reference/dropout.py`` (read its legend: splitmix64's finalizer over
(seed, step, layer, element index), keep iff the top 24 bits < ceil(keep_prob 2^24)), so the
NumPy, cpu and cuda backends drop exactly the same elements. Differs in running one thread per
element; the per-call key (three mixes of seed, step, layer) and the integer threshold are
computed on the host, exactly as the reference computes them.

All hash arithmetic is uint64 (``U(...)`` everywhere): numba types int64 op uint64 as float64,
which would silently break the bits.
"""

from numba import cuda, uint64 as U

from ._device import blocks, per_dtype, tpb
from .precision import to_bfloat16

_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_GOLDEN = 0x9E3779B97F4A7C15


@cuda.jit(device=True, inline="always")
def _mix64(z):
    """splitmix64 finalizer (uint64, wraps mod 2^64)."""
    z = (z ^ (z >> U(30))) * U(_M1)
    z = (z ^ (z >> U(27))) * U(_M2)
    return z ^ (z >> U(31))


@per_dtype
def _dropout_kernel(T):
    @cuda.jit
    def kernel(out, inp, key, threshold, scale):
        """out[e] = inp[e] * scale if element e is kept else 0 (e = row-major index)."""
        n = inp.shape[1]
        for i in range(cuda.grid(1), inp.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            h = _mix64(key + (U(i) + U(1)) * U(_GOLDEN))
            if (h >> U(40)) < threshold:
                out[r, c] = inp[r, c] * scale
            else:
                out[r, c] = T(0)
    return kernel


def _launch(out, inp, seed, step, layer, keep_prob):
    from ..reference.dropout import _key, _threshold  # the spec's own key and threshold
    size = inp.shape[0] * inp.shape[1]
    if size:
        key = _key(int(seed), int(step), int(layer))[0]
        _dropout_kernel(inp.dtype)[blocks(size), tpb()](
            out, inp, key, _threshold(keep_prob), inp.dtype.type(1.0 / float(keep_prob)))


def dropout_forward(A, A16, X, seed, step, layer, keep_prob):
    """A = X * keep / keep_prob. ``A`` may be ``X``. A16 = bf16(A) after it unless empty."""
    _launch(A, X, seed, step, layer, keep_prob)
    if A16.size:
        to_bfloat16(A16, A)


def dropout_backward(dX, dA, seed, step, layer, keep_prob):
    """dX = dA * keep / keep_prob with the forward's mask, recomputed. ``dX`` may be ``dA``."""
    _launch(dX, dA, seed, step, layer, keep_prob)
