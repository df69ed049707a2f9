"""Loss specifications: which kernel, which output activation it is fused with, how targets
are encoded, and what ``predict`` returns.

    binary_crossentropy        sigmoid output (logits inside); y of 0/1, shape (m,) or (m, k)
    categorical_crossentropy   softmax output (logits inside); integer labels (m,) or one-hot /
                               probability rows (m, C). Alias: sparse_categorical_crossentropy
    mse                        any element-wise output activation; y (m,) or (m, k).
                               Alias: mean_squared_error
    poisson                    exp output (log-means inside: the log link); counts or rates
                               y >= 0, (m,) or (m, k); the half Poisson deviance, as
                               scikit-learn's MLPRegressor(loss="poisson")

The cost is the mean over the batch (see ``fastdl.kernels.reference.losses`` for the formulas).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernels import LOSSES

ALIASES = {"sparse_categorical_crossentropy": "categorical_crossentropy",
           "mean_squared_error": "mse", "bce": "binary_crossentropy",
           "cce": "categorical_crossentropy"}
LOSS_NAMES = tuple(LOSSES) + tuple(ALIASES)


@dataclass(frozen=True)
class LossSpec:
    name: str
    kernel: str
    output_activation: str | None   # activation the loss is fused with (None: any element-wise)

    @property
    def code(self):
        return LOSSES[self.name]

    @property
    def is_classification(self):
        return self.name in ("binary_crossentropy", "categorical_crossentropy")

    def encode(self, y: np.ndarray, n_out: int, dtype, yname="y") -> np.ndarray:
        """Targets as a C-contiguous (m, n_out) array of ``dtype``, range-checked."""
        if self.name == "categorical_crossentropy":
            return _encode_categorical(y, n_out, dtype, yname)
        given = y.shape
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        if y.shape[1] != n_out:
            expect = f"(m,) or (m, {n_out})" if n_out == 1 else f"(m, {n_out})"
            raise ValueError(f"{yname} has shape {given}; the model has {n_out} output unit(s), "
                             f"so expected {expect}")
        if self.name == "poisson":
            yf = y.astype(np.float64)
            if not np.isfinite(yf).all() or yf.min() < 0:
                bad = yf[~(np.isfinite(yf) & (yf >= 0))][0]
                raise ValueError(f"{yname} has a value {bad}; loss='poisson' expects finite "
                                 "counts or rates >= 0")
        if self.name == "binary_crossentropy":
            yf = y.astype(np.float64)
            if yf.min() < 0 or yf.max() > 1:
                raise ValueError(f"{yname} has values in [{yf.min()}, {yf.max()}]; "
                                 "binary_crossentropy expects labels in [0, 1] (0/1 classes)")
        return np.ascontiguousarray(y, dtype=dtype)

    def labels(self, outputs: np.ndarray):
        """Predictions from the network's outputs, as scikit-learn returns them: for the fused
        losses the outputs are logits, and a sigmoid unit is class 1 when its logit is >= 0
        (sigmoid >= 1/2 in exact arithmetic; shape (m,) for one unit), a softmax row is the
        argmax of its logits (the first of equal ones); for mse the values themselves, for
        poisson their exp (the means).

        This is the ONE decision rule of ``predict``, ``evaluate``'s accuracy and the training
        accuracy (the kernels' ``correct_predictions`` implement the same). It reads logits, not
        rounded probabilities: a float32 sigmoid of -1e-8 prints as 0.5 but is class 0."""
        if self.name == "categorical_crossentropy":
            return outputs.argmax(axis=1)
        if self.name == "binary_crossentropy":
            labels = (outputs >= 0).astype(np.int64)
            return labels[:, 0] if labels.shape[1] == 1 else labels
        if self.output_activation == "exp":        # poisson: log-means in, means out
            outputs = np.exp(outputs)
        return outputs[:, 0] if outputs.shape[1] == 1 else outputs

    def correct(self, outputs: np.ndarray, Y: np.ndarray):
        """Per example, the fraction of its outputs predicted right (0 or 1 except for several
        sigmoid units) under :meth:`labels`'s rule, given encoded targets Y (class: argmax of a
        target row; binary: y >= 0.5); float64 (m,). None for regression."""
        if self.name == "categorical_crossentropy":
            return (outputs.argmax(axis=1) == Y.argmax(axis=1)).astype(np.float64)
        if self.name == "binary_crossentropy":
            return ((outputs >= 0) == (Y >= 0.5)).mean(axis=1, dtype=np.float64)
        return None

    def accuracy(self, outputs: np.ndarray, Y: np.ndarray, w=None) -> float | None:
        """Fraction of correct predictions (:meth:`correct`), weighted by ``w`` when given (as
        scikit-learn's ``accuracy_score(sample_weight=...)``); None for regression."""
        c = self.correct(outputs, Y)
        if c is None:
            return None
        return float(np.mean(c)) if w is None else float(np.average(c, weights=w))


def _encode_categorical(y, n_out, dtype, yname):
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if np.issubdtype(y.dtype, np.floating) and not np.all(y == np.round(y)):
            raise ValueError(f"{yname} holds non-integer values; categorical_crossentropy expects "
                             "integer class labels (m,) or one-hot rows (m, C)")
        labels = y.astype(np.int64)
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= n_out:
            raise ValueError(f"{yname} has class labels in [{lo}, {hi}]; the model has {n_out} "
                             f"output units, so labels must be in [0, {n_out - 1}]")
        Y = np.zeros((labels.shape[0], n_out), dtype=dtype)
        Y[np.arange(labels.shape[0]), labels] = 1
        return Y
    if y.shape[1] != n_out:
        raise ValueError(f"{yname} has {y.shape[1]} columns (shape {y.shape}); the model has "
                         f"{n_out} output units")
    yf = y.astype(np.float64)
    if yf.min() < 0 or not np.allclose(yf.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(f"{yname} rows must be one-hot or probabilities (non-negative, summing "
                         "to 1) for categorical_crossentropy")
    return np.ascontiguousarray(y, dtype=dtype)


_SPECS = {
    "binary_crossentropy": LossSpec("binary_crossentropy", "sigmoid_binary_cross_entropy",
                                    "sigmoid"),
    "categorical_crossentropy": LossSpec("categorical_crossentropy", "softmax_cross_entropy",
                                         "softmax"),
    "mse": LossSpec("mse", "mean_squared_error", None),
    "poisson": LossSpec("poisson", "exp_half_poisson_deviance", "exp"),
}


def get_loss(name) -> LossSpec:
    if not isinstance(name, str) or (name not in _SPECS and name not in ALIASES):
        raise ValueError(f"loss={name!r} is not a known loss; expected one of {LOSS_NAMES}")
    return _SPECS[ALIASES.get(name, name)]
