"""A whole training epoch of a dense-only network in one call (reference).

This is the small-network fast path's specification: every mini-batch's forward, loss,
backward and optimizer update, in order, exactly as the step-by-step path does them. The cpu
backend runs the same loop inside one jitted function, so Python overhead disappears.

Arguments (outputs first):
    costs   (n_batches,)  cost of each batch *before* its update, L2 term included
    correct (n_batches,) float64, or size 0 to skip: the batch's correctly classified examples
            before its update (``losses.correct_predictions``; size 0 for mse, which has no
            classes), the training accuracy's numerators
    params  (n,)          flat parameters, updated in place; weights first (prefix n_l2)
    grads   (n,)          flat gradient workspace
    state   (k, n)        optimizer state rows (k = 0 for SGD), updated in place
    ws      (>= batch_size * (n_in + 2 * sum(units)),)  activation workspace:
            [X batch | A_1 .. A_L | dA_1 .. dA_L], each A_l of batch_size * units_l
    X (m, n_in), Y (m, k_out)  training data, targets already encoded in the model dtype
    order   (m,) int64    the epoch's example order (the shuffle)
    batch_size            rows per batch; the last partial batch is kept
    layout  (L, 5) int64  per layer: weight offset, bias offset (-1: none), units, inputs,
                          activation code (the output layer's is linear for fused losses)
    loss                  code in fastdl.kernels.LOSSES
    l2                    the course's lambda (cost += lambda/(2 mb) sum ||W||^2)
    n_l2                  number of weight entries (the prefix L2 applies to)
    alpha                 leaky_relu slope
    opt_kind, hyper       optimizer code (fastdl.kernels.OPTIMIZERS) and its float64
                          hyperparameters (see ``optimizer_update``)
    step                  optimizer steps taken before this epoch (Adam's bias correction)

No gradient clipping here: a clipping optimizer's ``fused_spec()`` is None, so ``fit`` takes the
step path (``Optimizer.step``: one ``sum_squares`` reduction, then the update kernel clips
inline, see ``optim.py``).
"""

import numpy as np

from .batching import gather_rows
from .dense import dense_backward, dense_forward
from .losses import (correct_predictions, exp_half_poisson_deviance, mean_squared_error,
                     sigmoid_binary_cross_entropy, softmax_cross_entropy)
from .optim import _fused_update

#: indexed by the codes of fastdl.kernels.LOSSES
_LOSS_KERNELS = (sigmoid_binary_cross_entropy, softmax_cross_entropy, mean_squared_error,
                 exp_half_poisson_deviance)


#: The fused epoch computes in the parameters' dtype (no bfloat16 copies: size-0 outputs).
_NO16 = np.zeros((0, 0), np.uint16)


def _optimizer_update(params, grads, state, opt_kind, hyper, step, l2, n_l2):
    """Apply optimizer ``opt_kind`` as its own kernel would (``step`` is 1-based here). The
    ``hyper``/``state`` layout of each optimizer is documented in ``optim._fused_update``."""
    _fused_update(params, grads, state, opt_kind, hyper, step, l2, n_l2)


def train_epoch(costs, correct, params, grads, state, ws, X, Y, order, batch_size, layout, loss,
                l2, n_l2, alpha, opt_kind, hyper, step):
    m, n_in = X.shape
    no_weights = np.zeros(0)
    n_layers = layout.shape[0]
    units_total = int(layout[:, 2].sum())
    loss_buf = np.zeros(1, dtype=np.float64)
    n_batches = (m + batch_size - 1) // batch_size
    for bi in range(n_batches):
        idx = order[bi * batch_size:(bi + 1) * batch_size]
        mb = idx.shape[0]
        Xb = ws[:mb * n_in].reshape(mb, n_in)
        gather_rows(Xb, X, idx)
        Yb = Y[idx]
        # forward
        acts, douts = [], []
        a_off = batch_size * n_in
        d_off = a_off + batch_size * units_total
        inp = Xb
        for li in range(n_layers):
            w_off, b_off, units, inputs, act = (int(v) for v in layout[li])
            W = params[w_off:w_off + units * inputs].reshape(units, inputs)
            b = params[b_off:b_off + units] if b_off >= 0 else params[:0]
            A = ws[a_off:a_off + mb * units].reshape(mb, units)
            dense_forward(A, _NO16, inp, W, b, act, alpha)
            acts.append(A)
            douts.append(ws[d_off:d_off + mb * units].reshape(mb, units))
            a_off += batch_size * units
            d_off += batch_size * units
            inp = A
        # loss (fused with the output activation) and its gradient
        _LOSS_KERNELS[loss](loss_buf, douts[-1], acts[-1], Yb)
        w2 = float(np.dot(params[:n_l2].astype(np.float64), params[:n_l2])) if n_l2 else 0.0
        costs[bi] = loss_buf[0] + l2 / (2.0 * mb) * w2
        if correct.size:
            correct_predictions(correct[bi:bi + 1], acts[-1], Yb, no_weights, loss)
        # backward
        for li in range(n_layers - 1, -1, -1):
            w_off, b_off, units, inputs, act = (int(v) for v in layout[li])
            W = params[w_off:w_off + units * inputs].reshape(units, inputs)
            dW = grads[w_off:w_off + units * inputs].reshape(units, inputs)
            db = grads[b_off:b_off + units] if b_off >= 0 else grads[:0]
            X_in = acts[li - 1] if li > 0 else Xb
            dX = douts[li - 1] if li > 0 else ws[:0]
            dense_backward(dX, dW, db, _NO16, douts[li], acts[li], X_in, W, act, alpha)
        _optimizer_update(params, grads, state, opt_kind, hyper, step + bi + 1, l2 / mb, n_l2)
