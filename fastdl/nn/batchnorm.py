"""Batch normalization (course week 3, "Normalizing activations in a network"; Ioffe & Szegedy
2015), placed between a layer's linear part and its activation:

    fd.Sequential([fd.Dense(256), fd.BatchNorm(), fd.Activation("relu"), ...], input_dim=784)

Training normalizes each feature with the batch mean and biased variance, then scales and
shifts by the learnable ``gamma`` (init 1) and ``beta`` (init 0); inference uses running
statistics kept as exponentially weighted averages. A linear ``Dense`` right before a
BatchNorm loses its bias automatically (``beta`` takes its role).

Momentum convention (not optimizer momentum!) -- ours is the course's EWA beta:

    running = momentum * running + (1 - momentum) * batch_statistic      (default 0.9)

* Keras ``BatchNormalization(momentum=m, epsilon=e)`` uses the same form: momentum = m
  (Keras' defaults are momentum 0.99, epsilon 1e-3): ``BatchNorm.from_keras``.
* PyTorch ``BatchNorm1d(momentum=p, eps=e)`` updates ``running = (1 - p) running + p batch``:
  momentum = 1 - p (:func:`batchnorm_momentum_from_torch`, :func:`batchnorm_momentum_to_torch`),
  and stores the *unbiased* batch variance (times m/(m-1)) in its running variance: choose
  ``running_var="unbiased"`` to match (``BatchNorm.from_torch`` does both).

``get_weights()`` lists, for each BatchNorm layer, ``gamma, beta, running_mean, running_var``
(the last two are non-trainable state: no gradient, no L2, untouched by optimizers; in
``loss_and_grads`` their gradient entries are zeros).
"""

from __future__ import annotations

import numbers
from types import SimpleNamespace

import numpy as np

from ..kernels import LINEAR
from ..params import ParamSpec
from .layers import LAYER_TYPES, Dense, Layer

RUNNING_VAR = ("biased", "unbiased")


def _real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number")
    return float(value)


def check_momentum(momentum):
    v = _real("momentum", momentum)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"momentum={momentum!r} is invalid; expected a number in [0, 1) (the "
                         "weight of the old running statistics; PyTorch's momentum p is 1 - this,"
                         " see fd.nn.batchnorm_momentum_from_torch)")
    return v


def batchnorm_momentum_from_torch(momentum_torch):
    """Our (course/Keras) momentum for PyTorch's ``BatchNorm1d(momentum=momentum_torch)``:
    ``1 - momentum_torch``. PyTorch's ``momentum=None`` (cumulative average) has no
    equivalent."""
    v = _real("momentum_torch", momentum_torch)
    if not 0.0 < v <= 1.0:
        raise ValueError(f"momentum_torch={momentum_torch!r} is invalid; expected a number in "
                         "(0, 1] (PyTorch's weight of the new batch statistic)")
    return 1.0 - v


def batchnorm_momentum_to_torch(momentum):
    """PyTorch's ``BatchNorm1d`` momentum for our momentum: ``1 - momentum``."""
    return 1.0 - check_momentum(momentum)


class BatchNorm(Layer):
    """Batch normalization of the previous layer's output, per feature.

    Parameters
    ----------
    momentum : float in [0, 1)
        EWA weight of the old running statistics (course and Keras convention; PyTorch's
        momentum is ``1 - momentum``). Default 0.9.
    eps : float > 0
        Added to the variance before the square root. Default 1e-5 (PyTorch's).
    running_var : "biased" (default) or "unbiased"
        Which batch variance the running variance averages: the biased one used to normalize
        in training (course), or the unbiased one (times m/(m-1)), as PyTorch stores it.
    sync : bool
        In a distributed ``fit`` (``fastdl.distributed``), normalize with the statistics of
        the whole global batch, allreduced over the ranks (PyTorch's ``SyncBatchNorm``; numpy
        and cpu backends). Default False: each rank uses its shard's statistics, as PyTorch
        DDP does. Without a distributed fit the two are the same layer.

    Training mode (``fit``, ``train_on_batch``, ``loss_and_grads``) normalizes with the batch's
    statistics, which needs at least 2 examples per batch, and updates the running statistics;
    inference (``predict``, ``evaluate``, validation) uses the running statistics. While
    ``deterministic`` is True (``fd.gradcheck`` sets it) training mode leaves the running
    statistics untouched.
    """

    state_names = ("running_mean", "running_var")
    #: The model folds a following Activation into this layer's kernels (as into a Dense).
    fuses_activation = True

    def __init__(self, momentum=0.9, eps=1e-5, running_var="biased", sync=False):
        self.momentum = check_momentum(momentum)
        if not isinstance(sync, (bool, np.bool_)):
            raise TypeError(f"sync={sync!r} is invalid; expected True or False")
        self.sync = bool(sync)
        self._model = None
        self.eps = _real("eps", eps)
        if self.eps <= 0:
            raise ValueError(f"eps={eps!r} is invalid; expected a number > 0 (it keeps "
                             "1/sqrt(var + eps) finite)")
        if running_var not in RUNNING_VAR:
            raise ValueError(f"running_var={running_var!r} is invalid; expected one of "
                             f"{RUNNING_VAR}")
        self.running_var_kind = running_var
        self.deterministic = False
        self.running_mean = self.running_var = None
        self.runtime_activation, self.runtime_alpha = LINEAR, 0.01   # set by the model

    @classmethod
    def from_torch(cls, momentum=0.1, eps=1e-5):
        """The layer that reproduces ``torch.nn.BatchNorm1d(n, momentum, eps)``."""
        return cls(batchnorm_momentum_from_torch(momentum), eps, running_var="unbiased")

    @classmethod
    def from_keras(cls, momentum=0.99, epsilon=1e-3):
        """The layer that reproduces ``keras.layers.BatchNormalization(momentum, epsilon)``."""
        return cls(momentum, epsilon, running_var="biased")

    # ------------------------------------------------------------------ model interface
    def prepare_previous(self, prev):
        """A linear Dense right before batch norm needs no bias: beta takes its role."""
        if isinstance(prev, Dense) and prev.activation == "linear":
            prev.use_bias = False

    def param_specs(self, index):
        n = self.output_dim
        return [ParamSpec(index, "gamma", (n,), decay=False),
                ParamSpec(index, "beta", (n,), decay=False)]

    def init_params(self, params, index, rng):
        params.assign(index, "gamma", np.ones(self.output_dim))
        params.assign(index, "beta", np.zeros(self.output_dim))

    def bind(self, params, index, backend):
        old_bk = getattr(self, "_bk", None)
        super().bind(params, index, backend)
        n, dt = self.output_dim, params.dtype
        self.gamma, self.dgamma = params.view(index, "gamma"), params.grad_view(index, "gamma")
        self.beta, self.dbeta = params.view(index, "beta"), params.grad_view(index, "beta")
        self._no_dX = backend.empty((0, n), dt)
        self._unbiased = self.running_var_kind == "unbiased"
        # Running statistics are layer state: kept across a move to another backend.
        if self.running_mean is not None and self.running_mean.shape == (n,) \
                and self.running_mean.dtype == dt and old_bk is not None:
            host = [old_bk.to_numpy(a).copy() for a in (self.running_mean, self.running_var)]
        else:
            host = [np.zeros(n, dt), np.ones(n, dt)]
        self.running_mean, self.running_var = (backend.asarray(h) for h in host)

    def attach(self, model):
        self._model = model     # a synchronized layer reads model._dist (fastdl.distributed)

    def _dist(self):
        return getattr(self._model, "_dist", None) if self.sync else None

    def make_workspace(self, m, dtype):
        bk, n = self._bk, self.output_dim
        return SimpleNamespace(A=bk.empty((m, n), dtype), A16=self._a16(m),
                               dX=bk.empty((m, n), dtype),
                               mean=bk.empty((n,), np.float64),
                               inv_std=bk.empty((n,), np.float64), X=None)

    def forward(self, X, ws, training):
        k = self._bk.k
        if not training:
            k.batchnorm_forward_eval(ws.A, ws.A16, X, self.gamma, self.beta, self.running_mean,
                                     self.running_var, self.eps, self.runtime_activation,
                                     self.runtime_alpha)
            return ws.A
        if X.shape[0] < 2:
            raise ValueError(
                f"BatchNorm (layer {self._index}) in training mode needs a batch of at least 2 "
                f"examples to compute a variance; got a batch of {X.shape[0]}. In fit, the last "
                "mini-batch has 1 example when the number of examples % batch_size == 1: "
                "choose another batch_size, or fit(..., drop_last=True)")
        momentum = 1.0 if self.deterministic else self.momentum
        dist = self._dist()
        if dist is not None:        # statistics of the global batch (all ranks)
            from ..distributed.sync_batchnorm import forward_train
            return forward_train(self, X, ws, dist, momentum)
        k.batchnorm_forward_train(ws.A, ws.A16, ws.mean, ws.inv_std, self.running_mean,
                                  self.running_var, X, self.gamma, self.beta, momentum,
                                  self.eps, self._unbiased, self.runtime_activation,
                                  self.runtime_alpha)
        ws.X = X
        return ws.A

    def backward(self, dA, ws, need_dX):
        # dA (a workspace of the next layer) is overwritten with dz = dA * g'(A)
        dist = self._dist()
        if dist is not None:
            from ..distributed.sync_batchnorm import backward
            return backward(self, dA, ws, need_dX, dist)
        dX = ws.dX if need_dX else self._no_dX
        self._bk.k.batchnorm_backward(dX, self.dgamma, self.dbeta, dA, ws.A, ws.X, ws.mean,
                                      ws.inv_std, self.gamma, self.runtime_activation,
                                      self.runtime_alpha)
        return dX if need_dX else None

    # ------------------------------------------------------------------ state
    def state_shape(self, name):
        return (self.output_dim,)

    def get_state(self, name):
        """A host copy of ``running_mean`` or ``running_var``."""
        return self._bk.to_numpy(getattr(self, name)).copy()

    def set_state(self, name, value):
        """Copy a host array (shape already checked by the caller) into the running state."""
        arr = getattr(self, name)
        value = np.ascontiguousarray(value, dtype=arr.dtype).reshape(arr.shape)
        if self._bk.on_device:
            arr.copy_to_device(value)
        else:
            arr[...] = value

    def describe(self):
        return (f"BatchNorm(momentum={self.momentum:g}, eps={self.eps:g}"
                + (", sync=True)" if self.sync else ")"))

    def get_config(self):
        cfg = {"type": "BatchNorm", "momentum": self.momentum, "eps": self.eps,
               "running_var": self.running_var_kind}
        if self.sync:           # only when set: files of unsynchronized models are unchanged
            cfg["sync"] = True
        return cfg


LAYER_TYPES["BatchNorm"] = BatchNorm
