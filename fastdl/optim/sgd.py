"""Gradient descent and gradient descent with momentum (course week 2), one kernel call a step."""

from __future__ import annotations

from .base import Hyper, Optimizer, check_beta, check_bool, check_nonnegative

_FORMS = ("ewa", "pytorch")


def _check_form(name, value):
    if isinstance(value, str) and value in _FORMS:
        return value
    raise ValueError(f"{name}={value!r} is invalid; expected one of {_FORMS}")


class SGD(Optimizer):
    """Mini-batch gradient descent, ``W := W - lr * dW`` (course week 2).

    Parameters
    ----------
    lr : float > 0, default 0.01
        Learning rate (the course's alpha). 0.01 is Keras' default; PyTorch's is 1e-3.
    weight_decay : float >= 0, default 0
        *Coupled* weight decay, PyTorch's ``SGD(weight_decay=...)``: ``g += weight_decay * p`` on
        every entry (biases included), unscaled by the batch size. It is distinct from the
        loss's ``l2=`` (``fit(..., l2=lambda)``), which adds ``(lambda/m) W`` to weights only
        and appears in the cost. For plain SGD both are the same kind of term:
        ``weight_decay = lambda / m`` reproduces the course's L2 on all parameters.
    backend : str, optional
        Kernel backend; default: the params array's device, else ``config.DEFAULT_BACKEND``.
    global_clipnorm, clipvalue : float > 0 or None, default None
        Gradient clipping (Keras' names; see :class:`~fastdl.optim.base.Optimizer`): scale the
        gradient so its global L2 norm is at most ``global_clipnorm`` (PyTorch's
        ``clip_grad_norm_``), then clamp each element to ``[-clipvalue, clipvalue]``
        (``clip_grad_value_``); the L2 / weight-decay terms are added after clipping.

    Examples
    --------
    >>> opt = SGD(lr=0.1)
    >>> opt.step(params, grads)      # flat float32/float64 arrays, params updated in place
    """

    kind = "sgd"
    hyperparameters = ("lr", "weight_decay")
    weight_decay = Hyper(check_nonnegative)

    def __init__(self, lr=0.01, weight_decay=0.0, backend=None, global_clipnorm=None,
                 clipvalue=None):
        super().__init__(lr, backend, global_clipnorm, clipvalue)
        self.weight_decay = weight_decay

    def _hyper_values(self):
        return (self.lr, self.weight_decay)

    def _update(self, params, shadow, grads, clip, l2, n_l2):
        self._bk.k.sgd_update(params, shadow, grads, self._lr, self._weight_decay, *clip, l2, n_l2)


class Momentum(Optimizer):
    """Gradient descent with momentum (course week 2), optionally Nesterov's.

    ``form="ewa"`` (default, the course's)::

        v := beta * v + (1 - beta) * dW;     W := W - lr * v

    ``form="pytorch"`` (PyTorch ``SGD(momentum=beta)``, also the classic Polyak/Sutskever form)::

        v := beta * v + dW;                  W := W - lr * v

    The pytorch form's velocity is ``1/(1-beta)`` times larger at steady state, so its ``lr``
    is the ewa form's ``lr * (1 - beta)``; both start from ``v = 0``.

    ``nesterov=True`` steps along the look-ahead direction ``c * dW + beta * v`` (with the new
    ``v``; ``c = 1`` in the pytorch form, ``1 - beta`` in the ewa form) instead of ``v``:
    PyTorch's ``SGD(momentum=beta, nesterov=True)`` for the pytorch form.

    Parameters
    ----------
    lr : float > 0, default 0.01
        Learning rate (Keras' SGD default).
    beta : float in [0, 1), default 0.9
        Momentum; 0.9 is the course's recommended value ("averaging over ~10 gradients") and the
        usual choice in PyTorch/Keras examples.
    nesterov : bool, default False
    form : "ewa" or "pytorch", default "ewa"
    weight_decay : float >= 0, default 0
        Coupled weight decay as PyTorch's: ``g += weight_decay * p`` (all entries) before the
        velocity update; distinct from the loss's ``l2=`` (weights only, scaled by 1/m).
    backend : str, optional
    global_clipnorm, clipvalue : float > 0 or None, default None
        Gradient clipping (Keras' names; see :class:`~fastdl.optim.base.Optimizer`): scale the
        gradient so its global L2 norm is at most ``global_clipnorm`` (PyTorch's
        ``clip_grad_norm_``), then clamp each element to ``[-clipvalue, clipvalue]``
        (``clip_grad_value_``); the L2 / weight-decay terms are added after clipping.

    Conventions of peers
    --------------------
    * PyTorch ``SGD(lr, momentum=b)`` == ``Momentum(lr, beta=b, form="pytorch")``;
      ``nesterov=True`` maps directly.
    * PyTorch ``SGD(momentum=b, dampening=b)`` computes the ewa form, except that on its first
      step it sets ``v = dW`` (no dampening) where the course sets ``v = (1-b) dW``: torch
      behaves as this optimizer started from ``v0 = dW_1``. Seed torch's
      ``state["momentum_buffer"]`` with zeros to match exactly.
    * Keras ``SGD(learning_rate, momentum=b)`` keeps ``m = b m - lr g`` (the velocity includes
      lr): equal to the pytorch form while lr is constant; after an lr change Keras' velocity
      still carries the old lr. Keras' ``nesterov=True`` step is ``b m - lr g``: the same.
    """

    kind = "momentum"
    state_names = ("velocity",)
    hyperparameters = ("lr", "beta", "nesterov", "form", "weight_decay")
    beta = Hyper(check_beta)
    nesterov = Hyper(check_bool)
    form = Hyper(_check_form)
    weight_decay = Hyper(check_nonnegative)

    def __init__(self, lr=0.01, beta=0.9, nesterov=False, form="ewa", weight_decay=0.0,
                 backend=None, global_clipnorm=None, clipvalue=None):
        super().__init__(lr, backend, global_clipnorm, clipvalue)
        self.beta = beta
        self.nesterov = nesterov
        self.form = form
        self.weight_decay = weight_decay

    @property
    def dampening(self) -> float:
        """PyTorch's name for ``1 - c`` in ``v = beta v + c g``: beta (ewa form) or 0."""
        return self._beta if self._form == "ewa" else 0.0

    def _hyper_values(self):
        return (self.lr, self.beta, self.dampening, float(self.nesterov), self.weight_decay)

    def _update(self, params, shadow, grads, clip, l2, n_l2):
        self._bk.k.momentum_update(params, shadow, self._rows[0], grads, self._lr, self._beta,
                                   self.dampening, self._nesterov, self._weight_decay, *clip, l2,
                                   n_l2)
