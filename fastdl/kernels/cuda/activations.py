"""Element-wise activations and their derivatives (cuda).

Same math as ``reference/activations.py`` (codes 0 linear, 1 relu, 2 leaky_relu, 3 tanh,
4 sigmoid; derivatives from the output A). Differs only in running one thread per element
(grid-stride over the flattened (m, n) array) and, for the softmax, one thread per row. The
element functions ``act`` / ``act_grad`` are shared with the fused dense and epoch kernels.
"""

import math

from numba import cuda

from ._device import blocks, per_dtype, tpb


@per_dtype
def _act_fns(T):
    """(act, act_grad) device functions for scalar type T."""

    @cuda.jit(device=True, inline="always")
    def act(z, code, alpha):
        """g(z); NaN propagates as in the reference (np.maximum / np.where)."""
        if code == 1:
            return T(0) if z <= T(0) else z
        if code == 2:
            return z if z > T(0) else z * alpha
        if code == 3:
            return math.tanh(z)
        if code == 4:
            e = math.exp(-abs(z))
            return T(1) / (T(1) + e) if z >= T(0) else e / (T(1) + e)
        return z

    @cuda.jit(device=True, inline="always")
    def act_grad(da, a, code, alpha):
        """dA * g'(z), with g' written from the output a."""
        if code == 1:
            return da if a > T(0) else T(0)
        if code == 2:
            return da if a > T(0) else da * alpha
        if code == 3:
            return da * (T(1) - a * a)
        if code == 4:
            return da * a * (T(1) - a)
        return da

    return act, act_grad


@per_dtype
def _activation_forward_kernel(T):
    act, _ = _act_fns.for_type(T)

    @cuda.jit
    def kernel(A, Z, activation, alpha):
        n = Z.shape[1]
        for i in range(cuda.grid(1), Z.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            A[r, c] = act(Z[r, c], activation, alpha)
    return kernel


@per_dtype
def _activation_backward_kernel(T):
    _, act_grad = _act_fns.for_type(T)

    @cuda.jit
    def kernel(dZ, dA, A, activation, alpha):
        n = A.shape[1]
        for i in range(cuda.grid(1), A.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            dZ[r, c] = act_grad(dA[r, c], A[r, c], activation, alpha)
    return kernel


@per_dtype
def _softmax_forward_kernel(T):
    @cuda.jit
    def kernel(P, Z):
        n = Z.shape[1]
        for r in range(cuda.grid(1), Z.shape[0], cuda.gridsize(1)):
            zmax = Z[r, 0]
            for c in range(1, n):
                zmax = max(zmax, Z[r, c])
            s = T(0)
            for c in range(n):
                e = math.exp(Z[r, c] - zmax)
                P[r, c] = e
                s += e
            inv = T(1) / s
            for c in range(n):
                P[r, c] = P[r, c] * inv
    return kernel


def activation_forward(A, Z, activation, alpha):
    """A = g(Z). ``A`` may be ``Z`` (in place)."""
    size = Z.shape[0] * Z.shape[1]
    if size:
        _activation_forward_kernel(Z.dtype)[blocks(size), tpb()](
            A, Z, int(activation), Z.dtype.type(alpha))


def activation_backward(dZ, dA, A, activation, alpha):
    """dZ = dA * g'(Z), with g' computed from the output A. ``dZ`` may be ``dA``."""
    size = A.shape[0] * A.shape[1]
    if size:
        _activation_backward_kernel(A.dtype)[blocks(size), tpb()](
            dZ, dA, A, int(activation), A.dtype.type(alpha))


def softmax_forward(P, Z):
    """Row-wise stable softmax (one thread per row)."""
    if Z.shape[0] and Z.shape[1]:
        _softmax_forward_kernel(Z.dtype)[blocks(Z.shape[0]), tpb()](P, Z)
