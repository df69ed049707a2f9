"""Adam (Kingma & Ba 2015; course week 2) and AdamW (Loshchilov & Hutter 2019), one kernel call
a step."""

from __future__ import annotations

from .base import Hyper, Optimizer, check_beta, check_bool, check_nonnegative, check_positive


class Adam(Optimizer):
    """Adam with bias correction, the course's and PyTorch's form (t = step, from 1)::

        v := beta1 v + (1 - beta1) dW             (momentum; the course's v, torch's exp_avg)
        s := beta2 s + (1 - beta2) dW**2          (RMSprop; the course's s, torch's exp_avg_sq)
        v_hat = v / (1 - beta1**t);  s_hat = s / (1 - beta2**t)
        W := W - lr * v_hat / (sqrt(s_hat) + eps)

    eps is added *outside* the square root of the *bias-corrected* second moment.

    Parameters
    ----------
    lr : float > 0, default 0.001
    beta1 : float in [0, 1), default 0.9
    beta2 : float in [0, 1), default 0.999
    eps : float > 0, default 1e-8
        All four defaults are the paper's (Algorithm 1), used by the course and PyTorch.
    weight_decay : float >= 0, default 0
        Coupled (L2-style) weight decay as PyTorch's ``Adam(weight_decay=...)``:
        ``g += weight_decay * p`` on all entries before the moments, so Adam rescales it. It is
        distinct from the loss's ``l2=`` (weights only, scaled by 1/m, included in the cost).
        With ``decoupled_weight_decay=True`` it is AdamW's decay instead (see :class:`AdamW`).
    decoupled_weight_decay : bool, default False
        PyTorch's flag of the same name: ``Adam(weight_decay=w, decoupled_weight_decay=True)``
        is ``AdamW(weight_decay=w)``.
    backend : str, optional
    global_clipnorm, clipvalue : float > 0 or None, default None
        Gradient clipping (Keras' names; see :class:`~fastdl.optim.base.Optimizer`): scale the
        gradient so its global L2 norm is at most ``global_clipnorm`` (PyTorch's
        ``clip_grad_norm_``), then clamp each element to ``[-clipvalue, clipvalue]``
        (``clip_grad_value_``); the L2 / weight-decay terms are added after clipping.

    State rows: ``m`` (first moment) and ``v`` (second moment), the kernel's names; the step
    counter is ``iterations``.

    Conventions of peers
    --------------------
    * PyTorch ``Adam(lr, betas=(b1, b2), eps, weight_decay)`` maps argument for argument.
    * Keras ``Adam(learning_rate, beta_1, beta_2, epsilon=1e-7)`` computes
      ``lr * sqrt(1-b2**t)/(1-b1**t) * m / (sqrt(v) + epsilon)``: its epsilon sits outside the
      root of the *uncorrected* v (the paper's "epsilon hat"), i.e. ours with
      ``eps = epsilon / sqrt(1 - b2**t)``, which changes with t: no exact match. Keras'
      ``weight_decay`` is decoupled (AdamW-style) on every optimizer.
    """

    kind = "adam"
    state_names = ("m", "v")
    hyperparameters = ("lr", "beta1", "beta2", "eps", "weight_decay", "decoupled_weight_decay")
    beta1 = Hyper(check_beta)
    beta2 = Hyper(check_beta)
    eps = Hyper(check_positive)
    weight_decay = Hyper(check_nonnegative)
    decoupled_weight_decay = Hyper(check_bool)

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, backend=None, global_clipnorm=None,
                 clipvalue=None):
        super().__init__(lr, backend, global_clipnorm, clipvalue)
        self.decoupled_weight_decay = decoupled_weight_decay
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weight_decay = weight_decay

    def _decays(self):
        """(coupled, decoupled) weight decay as the kernel takes them."""
        wd = self._weight_decay
        return (0.0, wd) if self._decoupled_weight_decay else (wd, 0.0)

    def _hyper_values(self):
        return (self.lr, self.beta1, self.beta2, self.eps, *self._decays())

    def _update(self, params, shadow, grads, clip, l2, n_l2):
        coupled, decoupled = self._decays()
        self._bk.k.adam_update(params, shadow, self._rows[0], self._rows[1], grads, self._lr,
                               self._beta1, self._beta2, self._eps, self.iterations, coupled,
                               decoupled, *clip, l2, n_l2)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), PyTorch's ``AdamW``::

        W := W - lr * weight_decay * W - lr * v_hat / (sqrt(s_hat) + eps)

    The decay acts on the weights directly instead of through the gradient, so Adam's
    per-parameter scaling does not shrink it. As in PyTorch and Keras it is multiplied by
    ``lr`` (the paper's schedule multiplier), applied to every entry (biases too) and uses the
    weights before this step's update.

    Parameters
    ----------
    lr, beta1, beta2, eps : as :class:`Adam` (defaults 0.001, 0.9, 0.999, 1e-8).
    weight_decay : float >= 0, default 0.01
        PyTorch's AdamW default. Distinct from the loss's ``l2=`` (coupled, weights only,
        scaled by 1/m), which still goes through the gradient if both are used.
    backend : str, optional
    global_clipnorm, clipvalue : float > 0 or None, default None
        Gradient clipping (Keras' names; see :class:`~fastdl.optim.base.Optimizer`): scale the
        gradient so its global L2 norm is at most ``global_clipnorm`` (PyTorch's
        ``clip_grad_norm_``), then clamp each element to ``[-clipvalue, clipvalue]``
        (``clip_grad_value_``); the L2 / weight-decay terms are added after clipping.

    Conventions of peers: PyTorch ``AdamW(lr, betas, eps, weight_decay)`` maps argument for
    argument; Keras ``AdamW`` decays the same way but has Keras' epsilon placement (see
    :class:`Adam`).
    """

    hyperparameters = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01,
                 backend=None, global_clipnorm=None, clipvalue=None):
        super().__init__(lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay=True,
                         backend=backend, global_clipnorm=global_clipnorm,
                         clipvalue=clipvalue)
