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
exp_half_poisson_deviance (log-means Z, counts or rates Y >= 0, (m, k)): the half Poisson
deviance of mu = exp(z) (log link fused with the loss, as softmax/sigmoid are), summed over the
k outputs and averaged over examples, as scikit-learn 1.9's ``MLPRegressor(loss="poisson")``
(``sklearn/neural_network/_base.py:poisson_loss``, ``xlogy(y, y / mu) - y + mu``):
    J  = (1/m) sum_i sum_j [exp(z) - y z + y log y - y]     (y log y = 0 at y = 0)
    dZ = (exp(z) - y) / m
    J is 0 at a perfect fit (mu = y) and the gradient is scikit-learn's delta ``mu - y``.

Weighted variants (``weighted_<loss>(loss, dZ, Z, Y, w, wsum)``): per-example weights ``w``
(m,) >= 0 with ``wsum = sum_i w_i`` given by the caller (it needs the sum on the host anyway,
for the L2 term, and a device kernel then needs no reduction before it can scale dZ). Row i's
cost and gradient are multiplied by w_i, and the mean over m becomes the weighted mean:

    J  = sum_i w_i l_i / wsum             dZ_i = w_i (dl_i/dz_i) / wsum

with l_i the row's cost above (for mse: sum_j (a_ij - y_ij)^2 / k; for the Poisson deviance
the row's sum over its k outputs). This is scikit-learn's
``MLPClassifier``/``MLPRegressor`` weighting (``_multilayer_perceptron._backprop``: deltas times
sample_weight, gradients divided by sample_weight.sum()); Keras divides by m instead. All-ones
weights give the unweighted kernels' values (to rounding). ``wsum == 0`` (a batch whose
examples all have weight 0) carries no information: J = 0 and dZ = 0, not 0/0.

correct_predictions(out, Z, Y, w, loss): how many examples the logits Z classify right, the
training accuracy's numerator (the rule of ``fastdl.nn.losses.LossSpec.labels``):

    loss 0 (sigmoid): c_i = (1/k) sum_j [ (z_ij >= 0) == (y_ij >= 0.5) ]   (z >= 0: sigmoid >= 1/2)
    loss 1 (softmax): c_i = [ argmax_j z_ij == argmax_j y_ij ]   (the first of equal maxima; a
                      NaN counts as the maximum, as np.argmax)
    out[0] = sum_i w_i c_i  (w of size 0: all ones), float64

Any other loss code (mse has no classes) raises ValueError.
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


def _poisson_terms(Z, Y):
    """(per-element half deviance exp(z) - y z + y log y - y, exp(z) - y) in float64."""
    z = Z.astype(np.float64)
    y = Y.astype(np.float64)
    mu = np.exp(z)
    ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
    return mu - y * z + (ylogy - y), mu - y


def exp_half_poisson_deviance(loss, dZ, Z, Y):
    m = Z.shape[0]
    cost, grad = _poisson_terms(Z, Y)
    loss[0] = cost.sum() / m
    dZ[...] = grad / m


def _inv_weight_sum(wsum):
    return 1.0 / wsum if wsum > 0 else 0.0


def weighted_softmax_cross_entropy(loss, dZ, Z, Y, w, wsum):
    scale = np.asarray(w, dtype=np.float64)[:, None] * _inv_weight_sum(wsum)
    shifted = Z.astype(np.float64) - Z.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    Y64 = Y.astype(np.float64)
    loss[0] = -(scale * Y64 * logp).sum()
    dZ[...] = (np.exp(logp) * Y64.sum(axis=1, keepdims=True) - Y64) * scale


def weighted_sigmoid_binary_cross_entropy(loss, dZ, Z, Y, w, wsum):
    scale = np.asarray(w, dtype=np.float64)[:, None] * _inv_weight_sum(wsum)
    z = Z.astype(np.float64)
    y = Y.astype(np.float64)
    loss[0] = (scale * (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))).sum()
    e = np.exp(-np.abs(z))
    sig = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    dZ[...] = (sig - y) * scale


def weighted_mean_squared_error(loss, dA, A, Y, w, wsum):
    k = A.shape[1]
    scale = np.asarray(w, dtype=np.float64)[:, None] * (_inv_weight_sum(wsum) / k)
    diff = A.astype(np.float64) - Y
    loss[0] = (scale * diff * diff).sum()
    dA[...] = 2.0 * diff * scale


def weighted_exp_half_poisson_deviance(loss, dZ, Z, Y, w, wsum):
    scale = np.asarray(w, dtype=np.float64)[:, None] * _inv_weight_sum(wsum)
    cost, grad = _poisson_terms(Z, Y)
    loss[0] = (scale * cost).sum()
    dZ[...] = grad * scale


def correct_predictions(out, Z, Y, w, loss):
    if loss == 1:
        c = (Z.argmax(axis=1) == Y.argmax(axis=1)).astype(np.float64)
    elif loss == 0:
        c = ((Z >= 0) == (Y >= 0.5)).mean(axis=1, dtype=np.float64) if Z.size else \
            np.zeros(Z.shape[0])
    else:
        raise ValueError(f"correct_predictions: loss code {loss} has no classes; expected 0 "
                         "(sigmoid outputs) or 1 (softmax)")
    out[0] = c.sum() if np.size(w) == 0 else float(c @ np.asarray(w, dtype=np.float64))
