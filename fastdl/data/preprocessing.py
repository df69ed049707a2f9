"""Input standardization (course week 1, "Normalizing inputs"): per-feature mean and standard
deviation measured on the training set only, then applied unchanged to dev/test data.

    s = fd.Standardizer().fit(X_train)
    X_dev_n = s.transform(X_dev)           # (X - mean) / std, with the *training* statistics

Attached to a model (``model.standardizer = fd.Standardizer()``), it is applied to every X the
model receives (``fit``, ``train_on_batch``, ``predict``, ``evaluate``, validation data), so the
model takes raw inputs; an unfitted one is fitted by ``model.fit`` on its training ``X`` (never
on validation data). Its statistics are plain arrays: ``get_state()`` / ``set_state()`` give
``{"mean": (n,) float64, "std": (n,) float64}`` for saving with the model.
"""

from __future__ import annotations

import os

import numpy as np

from .._validation import _numeric_array

#: Rows converted to float64 at a time while fitting (bounds memory for big or mapped arrays).
_CHUNK_ROWS = 1 << 16


def _refuse_sparse(name, X):
    from .sparse import describe, is_sparse
    if is_sparse(X):
        raise ValueError(
            f"{name} is sparse ({describe(X)}): a Standardizer subtracts each feature's mean, "
            "which turns every zero into a non-zero (a dense copy of X). Scale sparse features "
            "without centering instead (scikit-learn's StandardScaler(with_mean=False) or "
            "MaxAbsScaler, e.g. in a Pipeline before a fastdl.sklearn estimator), or set "
            "model.standardizer = None")


def _as_rows(name, X):
    """A 2-D numeric array (a ``.npy`` path is memory-mapped), not yet converted."""
    _refuse_sparse(name, X)
    if isinstance(X, (str, os.PathLike)):
        X = np.load(os.fspath(X), mmap_mode="r", allow_pickle=False)
    arr = X if isinstance(X, np.ndarray) else _numeric_array(name, X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} has dtype {arr.dtype}; expected real numbers")
    if arr.ndim != 2:
        raise ValueError(f"{name} has shape {arr.shape}; expected a 2-D array "
                         "(n_examples, n_features)")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected at least one example")
    return arr


def _chunks(name, arr):
    for s in range(0, arr.shape[0], _CHUNK_ROWS):
        c = np.asarray(arr[s:s + _CHUNK_ROWS], dtype=np.float64)
        if not np.isfinite(c).all():
            raise ValueError(f"{name} contains NaN or infinite values (rows {s}..."
                             f"{s + c.shape[0] - 1}); expected finite numbers")
        yield c


class Standardizer:
    """Per-feature standardization ``(x - mean) / std`` fitted on training data.

    ``std`` is the population standard deviation (ddof=0, as scikit-learn's StandardScaler);
    a feature with zero variance (below 10 float64 epsilons relative to its mean) gets
    ``std = 1``, so it maps to 0 instead of dividing by zero. Statistics are float64.
    """

    def __init__(self):
        self.mean = None
        self.std = None
        self._cast = {}

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    @property
    def n_features(self):
        return None if self.mean is None else self.mean.shape[0]

    def fit(self, X):
        """Measure mean and std of each column of ``X`` (array-like, np.memmap or ``.npy``
        path; read in chunks, two passes). Returns self."""
        arr = _as_rows("X", X)
        m = arr.shape[0]
        total = np.zeros(arr.shape[1])
        for c in _chunks("X", arr):
            total += c.sum(axis=0)
        mean = total / m
        sq = np.zeros(arr.shape[1])
        for c in _chunks("X", arr):
            sq += ((c - mean) ** 2).sum(axis=0)
        std = np.sqrt(sq / m)
        std[std <= 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))] = 1.0
        self._set(mean, std)
        return self

    def _set(self, mean, std):
        self.mean, self.std = mean, std
        self._cast = {}

    def _check(self, X, name):
        if not self.fitted:
            raise RuntimeError("this Standardizer is not fitted; call fit(X_train) first (or "
                               "attach it to a model and call model.fit, which fits it)")
        arr = _as_rows(name, X)
        if arr.shape[1] != self.n_features:
            raise ValueError(f"{name} has {arr.shape[1]} features (shape {arr.shape}); the "
                             f"Standardizer was fitted on {self.n_features}")
        return arr

    def _float(self, arr):
        return np.asarray(arr, dtype=arr.dtype if arr.dtype in (np.float32, np.float64)
                          else np.float64)

    def _stats(self, dtype):
        dt = np.dtype(dtype)
        if dt not in self._cast:
            self._cast[dt] = (self.mean.astype(dt), self.std.astype(dt))
        return self._cast[dt]

    def transform(self, X):
        """(X - mean) / std as a new float array (float32 stays float32, others float64)."""
        arr = self._float(self._check(X, "X"))
        mean, std = self._stats(arr.dtype)
        return (arr - mean) / std

    def inverse_transform(self, Z):
        """Z * std + mean: back to the original units."""
        arr = self._float(self._check(Z, "Z"))
        mean, std = self._stats(arr.dtype)
        return arr * std + mean

    def fit_transform(self, X):
        return self.fit(X).transform(X)

    # ---------------------------------------------------------------- state (save / load)
    def get_state(self):
        """{"mean": (n,) float64, "std": (n,) float64} (copies); {} when not fitted."""
        if not self.fitted:
            return {}
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    def set_state(self, state):
        """Restore what :meth:`get_state` returned."""
        if not state:
            self._set(None, None)
            return self
        mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
        std = np.asarray(state["std"], dtype=np.float64).reshape(-1)
        if mean.shape != std.shape:
            raise ValueError(f"state['mean'] has shape {mean.shape} but state['std'] has "
                             f"{std.shape}; expected two arrays of n_features entries")
        if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std <= 0).any():
            raise ValueError("state holds non-finite means or non-positive stds; expected "
                             "finite means and stds > 0")
        self._set(mean.copy(), std.copy())
        return self

    @classmethod
    def from_state(cls, state):
        return cls().set_state(state)

    # ---------------------------------------------------------------- model hooks
    def _fit_for(self, model, X):
        """``model.fit``: fit on its training X when not fitted yet; check the width."""
        _refuse_sparse("X", X)
        if not self.fitted:
            self.fit(X)
        if self.n_features != model.input_dim:
            raise ValueError(f"model.standardizer was fitted on {self.n_features} features; "
                             f"the model expects {model.input_dim}")

    def _for_model(self, model, Xc, name):
        """Standardize validated model input ``Xc`` (model dtype) into a new array."""
        _refuse_sparse(name, Xc)
        if not self.fitted:
            raise RuntimeError("model.standardizer is not fitted; fit it on the training "
                               "inputs (standardizer.fit(X_train)) or call model.fit first")
        if self.n_features != Xc.shape[1]:
            raise ValueError(f"model.standardizer was fitted on {self.n_features} features; "
                             f"{name} has {Xc.shape[1]}")
        mean, std = self._stats(Xc.dtype)
        out = Xc - mean
        out /= std
        return out

    def _transform_inplace(self, Xb):
        mean, std = self._stats(Xb.dtype)
        Xb -= mean
        Xb /= std

    def __repr__(self):
        return f"Standardizer(n_features={self.n_features})"
