"""Element-wise activations and their derivatives (reference).

Shapes: ``Z``, ``A``, ``dA``, ``dZ`` are ``(m, n)`` (rows are examples).

Codes (``fastdl.kernels.ACTIVATIONS``): 0 linear, 1 relu, 2 leaky_relu (slope ``alpha`` for z<0),
3 tanh, 4 sigmoid.

Derivatives are written from the forward *output* A, so the pre-activation Z never has to be
kept (the trick scikit-learn's ``_base.py`` uses):

    linear     g'(z) = 1
    relu       g'(z) = 1[a > 0]                       (0 at z = 0, as PyTorch)
    leaky_relu g'(z) = 1 if a > 0 else alpha          (a > 0 iff z > 0 for alpha >= 0)
    tanh       g'(z) = 1 - a^2
    sigmoid    g'(z) = a (1 - a)

Source: course notes week 1-2 (activation derivatives), Goodfellow et al. 6.3.
"""

import numpy as np


def _sigmoid(z):
    # Stable both ways: exp of a non-positive number only.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def activation_forward(A, Z, activation, alpha):
    """A = g(Z). ``A`` may be ``Z`` (in place)."""
    if activation == 0:
        A[...] = Z
    elif activation == 1:
        np.maximum(Z, 0, out=A)
    elif activation == 2:
        A[...] = np.where(Z > 0, Z, Z * alpha)
    elif activation == 3:
        np.tanh(Z, out=A)
    elif activation == 4:
        A[...] = _sigmoid(Z)
    else:
        raise ValueError(f"unknown activation code {activation}")


def activation_backward(dZ, dA, A, activation, alpha):
    """dZ = dA * g'(Z), with g' computed from the output A. ``dZ`` may be ``dA``."""
    if activation == 0:
        dZ[...] = dA
    elif activation == 1:
        dZ[...] = np.where(A > 0, dA, 0)
    elif activation == 2:
        dZ[...] = np.where(A > 0, dA, dA * alpha)
    elif activation == 3:
        dZ[...] = dA * (1 - A * A)
    elif activation == 4:
        dZ[...] = dA * A * (1 - A)
    else:
        raise ValueError(f"unknown activation code {activation}")


def softmax_forward(P, Z):
    """Row-wise softmax, stable: P_ic = exp(Z_ic - max_c Z_ic) / sum_c exp(Z_ic - max_c Z_ic)."""
    shifted = Z - Z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    P[...] = e / e.sum(axis=1, keepdims=True)
