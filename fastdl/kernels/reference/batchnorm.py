"""Batch normalization over the rows of a batch, forward (training, inference) and backward
(reference).

Legend: m examples (rows), n features (units); per feature j (course week 3, Ioffe & Szegedy 2015):
    X, Y, dY, dX  (m, n)    gamma, beta, running_mean, running_var  (n,), the model's dtype
    mean, inv_std (n,) float64: the training forward's cached batch statistics
Training forward (statistics of this batch, biased variance; accumulated in float64):
    mean = (1/m) sum_i x_ij             var = (1/m) sum_i (x_ij - mean)^2
    inv_std = 1 / sqrt(var + eps)       x_hat = (x - mean) * inv_std      y = gamma x_hat + beta
    running_mean = momentum running_mean + (1 - momentum) mean
    running_var  = momentum running_var  + (1 - momentum) var * (m / (m - 1) if unbiased else 1)
  ``momentum`` is the course's EWA beta (Keras' momentum; PyTorch's momentum is 1 - this);
  ``momentum = 1`` leaves the running statistics untouched. ``unbiased`` (0 or 1) stores the
  unbiased variance as PyTorch does. m >= 2 (the layer checks it).
Inference forward (running statistics):
    y = gamma (x - running_mean) / sqrt(running_var + eps) + beta
Backward (the standard fused formula; x_hat recomputed from X, mean, inv_std, not stored):
    dbeta = sum_i dy_ij                 dgamma = sum_i dy_ij x_hat_ij
    dx_ij = gamma_j inv_std_j / m * (m dy_ij - dbeta_j - x_hat_ij dgamma_j)
``dX`` may be ``dY`` (in place); ``dX`` of size 0 means "skip it" (first layer). ``Y`` may be ``X``.
"""

import numpy as np


def batchnorm_forward_train(Y, mean, inv_std, running_mean, running_var, X, gamma, beta,
                            momentum, eps, unbiased):
    """Normalize with this batch's statistics; cache them; update the running statistics."""
    m = X.shape[0]
    X64 = X.astype(np.float64)
    mu = X64.mean(axis=0)
    var = ((X64 - mu) ** 2).mean(axis=0)
    mean[...] = mu
    inv_std[...] = 1.0 / np.sqrt(var + eps)
    Y[...] = (X64 - mu) * inv_std * gamma + beta
    if unbiased:
        var = var * (m / (m - 1.0))
    running_mean[...] = momentum * running_mean + (1.0 - momentum) * mu
    running_var[...] = momentum * running_var + (1.0 - momentum) * var


def batchnorm_forward_eval(Y, X, gamma, beta, running_mean, running_var, eps):
    """Normalize with the running statistics (inference)."""
    inv = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    Y[...] = (X.astype(np.float64) - running_mean) * inv * gamma + beta


def batchnorm_backward(dX, dgamma, dbeta, dY, X, mean, inv_std, gamma):
    """dgamma, dbeta and (unless ``dX`` has size 0) dX from the cached statistics."""
    m = X.shape[0]
    dY64 = dY.astype(np.float64)
    x_hat = (X.astype(np.float64) - mean) * inv_std
    db = dY64.sum(axis=0)
    dg = (dY64 * x_hat).sum(axis=0)
    dbeta[...] = db
    dgamma[...] = dg
    if dX.size:
        dX[...] = (gamma * inv_std / m) * (m * dY64 - db - x_hat * dg)
