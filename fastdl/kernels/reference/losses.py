"""Losses fused with their output activation and their gradient (reference).

Every loss writes the mean cost over the batch into ``loss[0]`` (a 1-element buffer, so GPU
backends need no host sync) and its gradient with respect to the layer output into ``dZ``,
already divided by m. ``dZ`` may alias the input (in place).

softmax_cross_entropy (logits Z, targets Y one-hot or probabilities, (m, C)):
    log p = Z - logsumexp(Z)              (stable: shift by the row max)
    J  = -(1/m) sum_i sum_c Y_ic log p_ic
    dZ = (p * sum_c Y_ic - Y) / m         (= (p - Y)/m for one-hot rows)
sigmoid_binary_cross_entropy (logits Z, targets Y in [0, 1], (m, k)):
    J  = (1/m) sum_i sum_j [max(z,0) - z y + log(1 + exp(-|z|))]
    dZ = (sigmoid(z) - y) / m
    (summed over the k outputs, mean over examples; k = 1 is the course's cost exactly)
mean_squared_error (predictions A, targets Y, (m, k)), as PyTorch MSELoss / Keras 'mse':
    J  = (1/(m k)) sum (a - y)^2          dA = 2 (a - y) / (m k)
"""

import numpy as np


def softmax_cross_entropy(loss, dZ, Z, Y):
    m = Z.shape[0]
    shifted = Z.astype(np.float64) - Z.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    Y64 = Y.astype(np.float64)
    loss[0] = -(Y64 * logp).sum() / m
    dZ[...] = (np.exp(logp) * Y64.sum(axis=1, keepdims=True) - Y64) / m


def sigmoid_binary_cross_entropy(loss, dZ, Z, Y):
    m = Z.shape[0]
    z = Z.astype(np.float64)
    y = Y.astype(np.float64)
    loss[0] = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).sum() / m
    e = np.exp(-np.abs(z))
    sig = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    dZ[...] = (sig - y) / m


def mean_squared_error(loss, dA, A, Y):
    n = A.size
    diff = A.astype(np.float64) - Y
    loss[0] = (diff * diff).sum() / n
    dA[...] = 2.0 * diff / n
