"""RMSprop (Hinton, Coursera lecture 6e; course week 2), one kernel call a step."""

from __future__ import annotations

from .base import Hyper, Optimizer, check_beta, check_nonnegative, check_positive


class RMSprop(Optimizer):
    """RMSprop, the course's form::

        s := beta * s + (1 - beta) * dW**2;     W := W - lr * dW / (sqrt(s) + eps)

    Parameters
    ----------
    lr : float > 0, default 0.001
        Learning rate; 0.001 is Keras' default (PyTorch's is 0.01).
    beta : float in [0, 1), default 0.9
        Decay of the mean square; 0.9 as in Hinton's lecture and Keras' ``rho`` (PyTorch's
        ``alpha`` defaults to 0.99).
    eps : float > 0, default 1e-8
        Added *outside* the square root (the course, PyTorch); 1e-8 is the course's and
        PyTorch's value.
    weight_decay : float >= 0, default 0
        Coupled weight decay as PyTorch's (``g += weight_decay * p``, all entries); distinct
        from the loss's ``l2=`` (weights only, scaled by 1/m).
    backend : str, optional
    global_clipnorm, clipvalue : float > 0 or None, default None
        Gradient clipping (Keras' names; see :class:`~fastdl.optim.base.Optimizer`): scale the
        gradient so its global L2 norm is at most ``global_clipnorm`` (PyTorch's
        ``clip_grad_norm_``), then clamp each element to ``[-clipvalue, clipvalue]``
        (``clip_grad_value_``); the L2 / weight-decay terms are added after clipping.

    Conventions of peers
    --------------------
    * PyTorch ``RMSprop(lr, alpha=a, eps=e)`` == ``RMSprop(lr, beta=a, eps=e)`` exactly (eps
      outside the sqrt). Its ``momentum`` and ``centered`` options are not offered.
    * Keras ``RMSprop(learning_rate, rho=r, epsilon=e)`` puts eps *inside* the root,
      ``lr * g / sqrt(s + e)``, default 1e-7: no exact match; the two agree when
      ``eps**2`` and ``e`` are both negligible against ``s``.
    """

    kind = "rmsprop"
    state_names = ("square_avg",)
    hyperparameters = ("lr", "beta", "eps", "weight_decay")
    beta = Hyper(check_beta)
    eps = Hyper(check_positive)
    weight_decay = Hyper(check_nonnegative)

    def __init__(self, lr=0.001, beta=0.9, eps=1e-8, weight_decay=0.0, backend=None,
                 global_clipnorm=None, clipvalue=None):
        super().__init__(lr, backend, global_clipnorm, clipvalue)
        self.beta = beta
        self.eps = eps
        self.weight_decay = weight_decay

    def _hyper_values(self):
        return (self.lr, self.beta, self.eps, self.weight_decay)

    def _update(self, params, shadow, grads, clip, l2, n_l2):
        self._bk.k.rmsprop_update(params, shadow, self._rows[0], grads, self._lr, self._beta,
                                  self._eps, self._weight_decay, *clip, l2, n_l2)
