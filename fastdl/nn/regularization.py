"""Dropout: inverted dropout with counter-based masks (course week 1, "Dropout regularization").

In training, each unit of the layer's input is kept with probability ``keep_prob`` and the kept
ones are scaled by ``1/keep_prob`` so the expected activation is unchanged ("inverted dropout");
at inference (``predict``, ``evaluate``, validation) and during gradient checking the layer is
the identity.

Masks are a pure function of (model seed, model step, layer index, element index): see
``fastdl/kernels/reference/dropout.py`` for the hash. The step is ``model.steps_trained``, the
number of updates the model has taken (``fit`` and ``train_on_batch`` advance it), so a run
resumed from a checkpoint that stores ``steps_trained`` draws the same masks as an uninterrupted
one, and every backend draws the same bits. The backward pass recomputes the mask.

In a distributed ``fit`` (``fastdl.distributed``) the rank enters the hash: rank r > 0 uses the
seed ``mix(seed, r)`` (``DataParallel.mask_seed``), so the ranks' masks differ; rank 0 keeps
the model seed, so a one-process run is unchanged.
"""

from __future__ import annotations

import numbers
from types import SimpleNamespace

import numpy as np

from .layers import LAYER_TYPES, Layer


def check_keep_prob(keep_prob):
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, numbers.Real) \
            or not np.isfinite(keep_prob) or not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_prob={keep_prob!r} is invalid; expected a number in (0, 1] "
                         "(the probability of keeping a unit; 1 disables dropout)")
    return float(keep_prob)


def _mask_seed(model):
    """The seed of this process's masks: the model's, mixed with the rank when distributed."""
    dist = getattr(model, "_dist", None)
    return model.seed if dist is None else dist.mask_seed(model.seed)


class Dropout(Layer):
    """Inverted dropout on the previous layer's output: ``fd.Dropout(keep_prob=0.8)``, or
    ``fd.Dropout(rate=0.2)`` with PyTorch's / Keras' drop probability.

    Parameters
    ----------
    keep_prob : float in (0, 1]
        Probability of keeping each unit (the course's ``keep_prob``; the first positional
        argument: ``Dropout(0.8)`` keeps 80%). ``keep_prob=1`` makes the layer the identity,
        skipped entirely by the model (no kernel call, no buffer).
    rate : float in [0, 1)
        Probability of dropping each unit, PyTorch's ``p`` and Keras' ``rate``:
        ``keep_prob = 1 - rate``. Give one of the two.

    Off whenever ``training`` is False (predict, evaluate, validation) and while
    ``deterministic`` is True (``fd.gradcheck`` sets it). Place it after a hidden layer's
    activation (not after the output layer, whose activation is fused with the loss).
    """

    def __init__(self, keep_prob=None, *, rate=None):
        if (keep_prob is None) == (rate is None):
            raise ValueError(f"Dropout(keep_prob={keep_prob!r}, rate={rate!r}): give exactly "
                             "one of keep_prob (the probability of keeping a unit, the "
                             "course's) or rate (of dropping it, PyTorch's p / Keras' rate)")
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, numbers.Real) \
                    or not np.isfinite(rate) or not 0.0 <= rate < 1.0:
                raise ValueError(f"rate={rate!r} is invalid; expected a number in [0, 1) (the "
                                 "probability of dropping a unit; keep_prob = 1 - rate)")
            keep_prob = 1.0 - float(rate)
        self.keep_prob = check_keep_prob(keep_prob)
        self.deterministic = False
        # The identity is folded away by the model like a fused activation (no op at all).
        self.fused = self.keep_prob == 1.0
        self._model = None

    def attach(self, model):
        self._model = model     # read at each training forward: seed, steps_trained

    def make_workspace(self, m, dtype):
        return SimpleNamespace(A=self._bk.empty((m, self.output_dim), dtype), A16=self._a16(m),
                               step=-1)

    def forward(self, X, ws, training):
        if not training or self.deterministic:
            ws.step = -1
            if ws.A16.size:     # the identity, but the next Dense reads a bfloat16 copy
                self._bk.k.to_bfloat16(ws.A16, X)
            return X
        model = self._model
        ws.step = model.steps_trained
        ws.seed = _mask_seed(model)
        self._bk.k.dropout_forward(ws.A, ws.A16, X, ws.seed, ws.step, self._index,
                                   self.keep_prob)
        return ws.A

    def backward(self, dA, ws, need_dX):
        if not need_dX:
            return None
        if ws.step >= 0:            # in place: dA is a workspace of the next layer
            self._bk.k.dropout_backward(dA, dA, ws.seed, ws.step, self._index,
                                        self.keep_prob)
        return dA

    def describe(self):
        return f"Dropout(keep_prob={self.keep_prob:g})"

    def get_config(self):
        return {"type": "Dropout", "keep_prob": self.keep_prob}


LAYER_TYPES["Dropout"] = Dropout
