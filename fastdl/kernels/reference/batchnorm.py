"""Batch normalization over the rows of a batch with the following activation fused, forward
(training, inference) and backward (reference).

Legend: m examples (rows), n features (units); per feature j (course week 3, Ioffe & Szegedy 2015):
    X (m, n) input z        A (m, n) output g(z_tilde)     dA, dX (m, n)
    gamma, beta, running_mean, running_var  (n,), the model's dtype
    mean, inv_std (n,) float64: the training forward's cached batch statistics
Training forward (statistics of this batch, biased variance; accumulated in float64):
    mean = (1/m) sum_i x_ij             var = (1/m) sum_i (x_ij - mean)^2
    inv_std = 1 / sqrt(var + eps)       x_hat = (x - mean) * inv_std
    z_tilde = gamma x_hat + beta        A = g(z_tilde)      (activation code, as in dense.py)
    running_mean = momentum running_mean + (1 - momentum) mean
    running_var  = momentum running_var  + (1 - momentum) var * (m / (m - 1) if unbiased else 1)
  ``momentum`` is the course's EWA beta (Keras' momentum; PyTorch's momentum is 1 - this);
  ``momentum = 1`` leaves the running statistics untouched. ``unbiased`` (0 or 1) stores the
  unbiased variance as PyTorch does. m >= 2 (the layer checks it).
Inference forward (running statistics):
    A = g(gamma (x - running_mean) / sqrt(running_var + eps) + beta)
Backward (g' from the output A as in activations.py, then the standard fused formula, x_hat
recomputed from X, mean, inv_std rather than stored):
    dz = dA * g'(A)                     (written into dA: it is a workspace, as in dense.py)
    dbeta = sum_i dz_ij                 dgamma = sum_i dz_ij x_hat_ij
    dx_ij = gamma_j inv_std_j / m * (m dz_ij - dbeta_j - x_hat_ij dgamma_j)
``dX`` may be ``dA``; ``dX`` of size 0 means "skip it" (first layer). ``A`` may be ``X``.
"""

import numpy as np

from .activations import activation_backward, activation_forward
from .precision import to_bfloat16


def batchnorm_forward_train(A, A16, mean, inv_std, running_mean, running_var, X, gamma, beta,
                            momentum, eps, unbiased, activation, alpha):
    """Normalize with this batch's statistics, cache them, update the running statistics,
    apply the activation."""
    m = X.shape[0]
    X64 = X.astype(np.float64)
    mu = X64.mean(axis=0)
    var = ((X64 - mu) ** 2).mean(axis=0)
    mean[...] = mu
    inv_std[...] = 1.0 / np.sqrt(var + eps)
    A[...] = (X64 - mu) * inv_std * gamma + beta
    activation_forward(A, A, activation, alpha)
    if A16.size:
        to_bfloat16(A16, A)
    if unbiased:
        var = var * (m / (m - 1.0))
    running_mean[...] = momentum * running_mean + (1.0 - momentum) * mu
    running_var[...] = momentum * running_var + (1.0 - momentum) * var


def batchnorm_forward_eval(A, A16, X, gamma, beta, running_mean, running_var, eps, activation,
                           alpha):
    """Normalize with the running statistics (inference), then the activation."""
    inv = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    A[...] = (X.astype(np.float64) - running_mean) * inv * gamma + beta
    activation_forward(A, A, activation, alpha)
    if A16.size:
        to_bfloat16(A16, A)


def batchnorm_backward(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, activation, alpha):
    """dgamma, dbeta and (unless ``dX`` has size 0) dX; ``dA`` is overwritten with dz."""
    m = X.shape[0]
    activation_backward(dA, dA, A, activation, alpha)
    dz = dA.astype(np.float64)
    x_hat = (X.astype(np.float64) - mean) * inv_std
    db = dz.sum(axis=0)
    dg = (dz * x_hat).sum(axis=0)
    dbeta[...] = db
    dgamma[...] = dg
    if dX.size:
        dX[...] = (gamma * inv_std / m) * (m * dz - db - x_hat * dg)
