"""The solvers: scikit-learn's stochastic loop as a fastdl ``fit`` callback, and L-BFGS
through SciPy on the model's flat loss and gradient.

Loss scaling (why ``GradScale`` exists). scikit-learn minimizes, per batch of m rows,

    classification: J = logloss (mean over rows, summed over outputs) + alpha/(2m) ||W||^2
    regression:     J = (1/(2 m k)) sum (y_hat - y)^2 + alpha/(2m) ||W||^2   (k outputs)

(and for ``loss="poisson"`` the half Poisson deviance, summed over outputs like the
cross-entropies: c = 1) with ``sklearn/neural_network/_base.py`` losses and
``_multilayer_perceptron._backprop``. fastdl's cost is ``loss + l2/(2m) ||W||^2``
(docs/design.md). For the cross-entropies the data terms are
identical, so ``l2 = alpha`` and everything matches as is (scale c = 1). fastdl's ``mse`` is
``(1/(m k)) sum (y_hat - y)^2`` with gradient ``2 (y_hat - y)/(m k)``, while scikit-learn
back-propagates ``(y_hat - y)/m`` (its gradient does not divide by k, its reported loss does).
With ``l2 = c alpha`` and ``c = 2/k`` fastdl's gradient is exactly c times scikit-learn's, so
SGD uses ``lr / c``, Adam ``epsilon * c`` (Adam is otherwise invariant to the scale), and the
reported loss is converted back (``to_sklearn_loss``).

With ``sample_weight`` both libraries replace m by the batch's weight sum ``sum_i w_i`` (data
term: weighted mean; L2 term: ``alpha/(2 sum w)``), so the same scaling holds batch by batch.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..train.callbacks import Callback


class GradScale:
    """c such that fastdl's gradient (with ``l2 = c * alpha``) is c times scikit-learn's.
    ``squared_error``: the loss is fastdl's mse (c = 2/k); the cross-entropies and the Poisson
    deviance have scikit-learn's data terms exactly (mean over rows, sum over outputs: c = 1)."""

    def __init__(self, squared_error, n_outputs, alpha):
        self.regression, self.k, self.alpha = squared_error, n_outputs, float(alpha)
        self.c = 2.0 / n_outputs if squared_error else 1.0

    @property
    def l2(self):
        return self.c * self.alpha

    def to_sklearn_loss(self, fd_loss, sq_weights, m_inv):
        """scikit-learn's loss from fastdl's cost: identical for classification; for regression
        ``J_sk = J_fd / 2 + alpha/2 * (1 - 1/k) * ||W||^2 * mean(1/m)`` (exact for k = 1)."""
        if not self.regression:
            return float(fd_loss)
        return float(fd_loss) / 2.0 + 0.5 * self.alpha * (1.0 - 1.0 / self.k) * sq_weights * m_inv


def sq_weights(model):
    """sum ||W||^2 over the Dense weights (fastdl keeps them first in the flat buffer)."""
    w = model.params.snapshot()[:model.params.n_decay].astype(np.float64)
    return float(w @ w)


def rescale_velocity(optimizer, ratio):
    """Keep scikit-learn's momentum semantics across a learning-rate change: its velocity
    ``V = -lr v`` carries the old lr, so fastdl's ``v`` is multiplied by ``lr_old / lr_new``."""
    if ratio == 1.0 or "velocity" not in getattr(optimizer, "state_names", ()):
        return
    d = optimizer.state_dict()
    if "state" in d:
        d["state"] = d["state"] * np.asarray(ratio, d["state"].dtype)
        optimizer.load_state_dict(d)


class StochasticEpochs(Callback):
    """scikit-learn's per-iteration bookkeeping after each fastdl epoch: ``n_iter_``, ``t_``,
    ``loss_``, ``loss_curve_``, the no-improvement counter (training loss vs ``tol``, or the
    validation score with ``early_stopping``, which also records ``validation_loss_curve_``:
    the validation rows' data loss, weighted by their sample weights, without the alpha
    term), best weights, the ``invscaling``/``adaptive``
    learning rates, and stopping after ``n_iter_no_change`` epochs without improvement."""

    def __init__(self, est, optimizer, n_train, n_batches, val, m_inv=None):
        self.est, self.opt, self.n_train, self.val = est, optimizer, n_train, val
        self.n_batches = n_batches
        # mean over the epoch's rows of 1/m_batch (of 1/sum(w_batch) with sample weights)
        self.m_inv = n_batches / n_train if m_inv is None else m_inv
        self.converged = False

    def _set_lr(self, lr_sklearn):
        est = self.est
        old = self.opt.lr
        est._lr = lr_sklearn
        self.opt.lr = lr_sklearn / est._scale.c
        rescale_velocity(self.opt, old / self.opt.lr)

    def _needs_sq(self):
        return self.est._scale.regression and self.est._scale.k > 1

    def on_epoch_begin(self, epoch, logs=None):
        self.sq_start = sq_weights(self.model) if self._needs_sq() else 0.0

    def on_epoch_end(self, epoch, logs=None):
        est, model = self.est, self.model
        est.n_iter_ += 1
        sq = 0.0
        if self._needs_sq():    # ||W||^2 of each batch is not kept: exact with one batch,
            sq = (self.sq_start if self.n_batches == 1       # else the epoch's mean estimate
                  else 0.5 * (self.sq_start + sq_weights(model)))
        est.loss_ = est._scale.to_sklearn_loss(logs["loss"], sq, self.m_inv)
        est.t_ += self.n_train
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        self._update_no_improvement()
        if est.solver == "sgd" and est.learning_rate == "invscaling":
            self._set_lr(est.learning_rate_init / (est.t_ + 1) ** est.power_t)
        if est._no_improvement_count > est.n_iter_no_change:
            what = ("Validation score" if est.early_stopping else "Training loss")
            msg = (f"{what} did not improve more than tol={est.tol:f} for "
                   f"{est.n_iter_no_change} consecutive epochs.")
            if est.solver == "sgd" and est.learning_rate == "adaptive" and est._lr > 1e-6:
                self._set_lr(est._lr / 5.0)
                est._no_improvement_count = 0
                if est.verbose:
                    print(msg + " Setting learning rate to %f" % est._lr)
            else:
                if est.verbose:
                    print(msg + (" Learning rate too small." if est.learning_rate == "adaptive"
                                 and est.solver == "sgd" else "") + " Stopping.")
                self.converged = True
                model.stop_training = True

    def _update_no_improvement(self):
        est = self.est
        if est.early_stopping:
            Xv, yv, wv, Yv = self.val
            score = est._score_validated(Xv, yv, wv)
            est.validation_scores_.append(score)
            # the data loss on the validation rows in scikit-learn's units (no alpha term)
            val_loss = self.model.evaluate(Xv, Yv, sample_weight=wv)["loss"]
            est.validation_loss_curve_.append(est._scale.to_sklearn_loss(val_loss, 0.0, 0.0))
            if est.verbose:
                print("Validation score: %f" % score)
            if not score >= est.best_validation_score_ + est.tol:   # NaN counts as no gain
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_weights = self.model.get_weights()
        else:
            loss = est.loss_curve_[-1]
            if not loss <= est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if loss < est.best_loss_:
                est.best_loss_ = loss


def batch_inv_weight(sample_weight, bs, n_batches):
    """With weights: the mean over the epoch's rows of ``1 / sum(w_batch)`` (what the L2 term
    of the epoch's loss is scaled by; ``to_sklearn_loss``'s ``m_inv``), from the batches in
    order (exact without shuffling; with shuffling the batches' sums vary, and this is the
    in-order estimate). None without weights (``StochasticEpochs`` then uses n_batches / n)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    total = 0.0
    for b in range(n_batches):
        part = w[b * bs:(b + 1) * bs]
        s = float(part.sum())
        if s > 0:                       # a zero-weight batch has no L2 term (Sequential.fit)
            total += part.shape[0] / s
    return total / sum(min(bs, w.shape[0] - b * bs) for b in range(n_batches))


def fit_lbfgs(est, model, Xc, Yc, sample_weight=None):
    """Full-batch L-BFGS-B (``scipy.optimize.minimize``) on the model's flat parameter vector,
    with scikit-learn's options: ``maxiter=max_iter``, ``maxfun=max_fun``, ``gtol=tol``. The
    objective and gradient are scikit-learn's (``GradScale`` converts fastdl's); with
    ``sample_weight`` the weighted ones (m replaced by sum(w))."""
    try:
        from scipy.optimize import minimize
    except ImportError:
        raise ImportError("solver='lbfgs' needs SciPy (scipy.optimize.minimize); install it "
                          "with pip install \"fastdl[sklearn]\", or use solver='adam' or "
                          "'sgd'") from None
    scale = est._scale
    n_decay, m = model.params.n_decay, Xc.shape[0]
    sw = None if sample_weight is None else model._sample_weight(sample_weight, m)[0]
    denom = m if sw is None else float(sw.sum(dtype=np.float64))

    def fun(x):
        model.params.restore(np.asarray(x, dtype=model.dtype))
        cost, grad = model._flat_loss_and_grad(Xc, Yc, scale.l2, sw)
        w = np.asarray(x[:n_decay], dtype=np.float64)
        loss = scale.to_sklearn_loss(cost, float(w @ w), 1.0 / denom)
        return loss, np.asarray(grad, dtype=np.float64) / scale.c

    x0 = model.params.snapshot().astype(np.float64)
    res = minimize(fun, x0, method="L-BFGS-B", jac=True,
                   options={"maxfun": est.max_fun, "maxiter": est.max_iter, "gtol": est.tol})
    model.params.restore(np.asarray(res.x, dtype=model.dtype))
    if res.status != 0:
        from sklearn.exceptions import ConvergenceWarning
        msg = res.message.decode() if isinstance(res.message, bytes) else str(res.message)
        warnings.warn(f"lbfgs failed to converge after {res.nit} iteration(s) "
                      f"(status={res.status}): {msg}. Increase max_iter / max_fun or scale "
                      "the data.", ConvergenceWarning, stacklevel=3)
    return min(int(res.nit), est.max_iter), float(res.fun)


__all__ = ["GradScale", "StochasticEpochs", "batch_inv_weight", "fit_lbfgs", "rescale_velocity",
           "sq_weights"]
