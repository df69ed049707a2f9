"""Sparse input: ``scipy.sparse`` matrices and arrays as model inputs, rows as examples.

Text features (``TfidfVectorizer`` -> MLP, scikit-learn's most common sparse pipeline) have tens
of thousands of columns of which a few dozen are non-zero per row: densified, a 100,000 x
50,000 float32 matrix is 20 GB; in CSR (compressed sparse rows) at 0.1% density it is 40 MB.
fastdl keeps such an ``X`` in CSR from end to end:

* :func:`as_csr` validates it once at the edge (any scipy.sparse format, matrix or array, or an
  object with a ``tocsr()`` method) into a :class:`CSRRows`: data in the model's dtype, the
  column ``indices`` as given (int32 or int64, no copy), ``indptr`` as int64 (one entry per
  row), finite values, column indices inside the model's width. Unsorted column indices and
  repeated (row, column) entries are kept: the kernels add repeated entries, as scipy does.
* the model's first Dense layer multiplies it with sparse kernels (``kernels/*/sparse.py``:
  ``X W^T`` forward and ``dW = dZ^T X`` backward); every later layer is dense as usual
  (``fastdl/nn/sparse_input.py`` and ``Sequential``: the model plans the first layer's input
  kind, as it plans bfloat16 buffers);
* a mini-batch is a CSR row slice gathered by the epoch's shuffled order into reused
  index/data buffers (``gather_csr_rows``, ``data/batches.py: CSRSource``): the same order
  ``epoch_order(seed, epoch, m)`` as dense input, so a sparse and a dense fit of the same data
  see the same batches.

Nothing here densifies ``X``. What cannot take sparse input says so (dense-only functions,
a model whose first layer is not a Dense, the model's ``Standardizer``, streaming from disk,
``distributed``, ``augment``): a clear error naming the argument, never a silent densification
(``config.SPARSE_DENSIFY_MAX_BYTES`` bounds the few places that densify on purpose: the cuda
backend's per-block copies on the device and sparse label matrices ``y``).

scipy is not a dependency of fastdl: it is imported only when an object that is sparse
(hence made by scipy) arrives.
"""

from __future__ import annotations

import sys

import numpy as np

from .. import config

__all__ = ["CSRRows", "as_csr", "is_sparse", "to_backend", "describe"]


def _scipy_sparse():
    """scipy.sparse if it is already imported (a scipy sparse object implies it is)."""
    return sys.modules.get("scipy.sparse")


def is_sparse(X) -> bool:
    """True for input fastdl treats as sparse: a scipy.sparse matrix or array (any format), a
    validated :class:`CSRRows`, or an object with a callable ``tocsr`` (e.g. pydata/sparse)."""
    if isinstance(X, CSRRows):
        return True
    if isinstance(X, np.ndarray):
        return False
    sp = _scipy_sparse()
    if sp is not None and sp.issparse(X):
        return True
    return callable(getattr(X, "tocsr", None))


def describe(X) -> str:
    """A short description of a sparse object for error messages ("csr_matrix of shape ...")."""
    shape = getattr(X, "shape", None)
    return f"{type(X).__name__}" + ("" if shape is None else f" of shape {tuple(shape)}")


class CSRRows:
    """Rows of a CSR matrix as fastdl's kernels take them (``kernels/reference/sparse.py``).

    Row ``r`` holds the entries ``k = indptr[r] .. indptr[r + 1] - 1``: ``X[r, indices[k]] +=
    data[k]``. ``shape = (rows, columns)``. On a device backend the three arrays are device
    arrays (:meth:`to`). Slicing rows (``X[a:b]``) gives a compact CSRRows (views of data and
    indices, a shifted copy of indptr) without copying entries.
    """

    __slots__ = ("data", "indices", "indptr", "shape")
    ndim = 2

    def __init__(self, data, indices, indptr, shape):
        self.data, self.indices, self.indptr = data, indices, indptr
        self.shape = (int(shape[0]), int(shape[1]))

    @property
    def dtype(self):
        return np.dtype(self.data.dtype)

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1]) - int(self.indptr[0]) if self.shape[0] else 0

    @property
    def nbytes(self) -> int:
        """Bytes of the three arrays (what the CSR costs in memory)."""
        return sum(int(a.size) * np.dtype(a.dtype).itemsize
                   for a in (self.data, self.indices, self.indptr))

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError(f"CSRRows supports contiguous row slices X[a:b], got {rows!r}")
        a, b, _ = rows.indices(self.shape[0])
        b = max(a, b)
        p0, p1 = int(self.indptr[a]), int(self.indptr[b])
        return CSRRows(self.data[p0:p1], self.indices[p0:p1], self.indptr[a:b + 1] - p0,
                       (b - a, self.shape[1]))

    def to(self, backend):
        """The same rows with arrays on ``backend`` (itself on a host backend)."""
        if not backend.on_device:
            return self
        return CSRRows(backend.asarray(np.ascontiguousarray(self.data)),
                       backend.asarray(np.ascontiguousarray(self.indices)),
                       backend.asarray(np.ascontiguousarray(self.indptr)), self.shape)

    def toarray(self) -> np.ndarray:
        """Dense copy (tests and small inputs only: m x n)."""
        out = np.zeros(self.shape, self.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        p0 = int(self.indptr[0])
        np.add.at(out, (rows, self.indices[p0:p0 + rows.shape[0]]),
                  self.data[p0:p0 + rows.shape[0]])
        return out

    def __repr__(self):
        return f"CSRRows(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype.name})"


def to_backend(backend, X):
    """Model input on ``backend``: a CSRRows' arrays, or a dense array (``backend.asarray``)."""
    return X.to(backend) if isinstance(X, CSRRows) else backend.asarray(X)


def _to_scipy_csr(name, X):
    """A scipy CSR matrix/array of the same data, or a clear error."""
    sp = _scipy_sparse()
    if sp is not None and sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"{name} is a {X.ndim}-D sparse array ({describe(X)}); expected a "
                             "2-D matrix (n_examples, n_features)")
        try:
            return X if X.format == "csr" else X.tocsr()
        except Exception as e:      # e.g. a format whose conversion fails on its content
            raise ValueError(f"{name} ({describe(X)}) could not be converted to CSR: {e}") \
                from None
    try:
        csr = X.tocsr()
    except Exception as e:
        raise TypeError(f"{name} ({describe(X)}) has a tocsr() method that failed ({e}); "
                        "expected a scipy.sparse matrix or an object convertible to one") \
            from None
    sp = _scipy_sparse()
    if sp is None or not sp.issparse(csr) or getattr(csr, "ndim", 2) != 2:
        raise TypeError(f"{name}.tocsr() returned {describe(csr)}; expected a 2-D "
                        "scipy.sparse matrix")
    return csr.tocsr()


def as_csr(name, X, dtype, n_features=None, allow_empty=False) -> CSRRows:
    """Validated sparse model input: a :class:`CSRRows` of ``dtype`` (module docstring).

    Errors name ``name``: not convertible to CSR, not 2-D, no rows (unless ``allow_empty``, as
    ``as_features``: ``predict``), a wrong number of columns,
    non-real data, NaN or inf values, a damaged structure (indptr not non-decreasing, column
    indices outside the width). Conversions: another format to CSR (scipy copies the entries
    once), data to ``dtype`` (a copy when it differs), indptr to int64 (m + 1 entries);
    ``indices`` stay as they are (int32 or int64).
    """
    dtype = np.dtype(dtype)
    if isinstance(X, CSRRows):
        csr_data, indices, indptr, shape = X.data, X.indices, X.indptr, X.shape
        if not isinstance(csr_data, np.ndarray):
            raise TypeError(f"{name} is a CSRRows on a device; expected host arrays")
    else:
        csr = _to_scipy_csr(name, X)
        shape = tuple(csr.shape)
        csr_data, indices, indptr = csr.data, csr.indices, csr.indptr
    m, n = shape
    kind = np.dtype(csr_data.dtype)
    if kind == object or not (np.issubdtype(kind, np.number) or kind == np.bool_) \
            or np.issubdtype(kind, np.complexfloating):
        raise TypeError(f"{name} ({describe(X)}) has dtype {kind}; expected real numbers")
    if m == 0 and not allow_empty:
        raise ValueError(f"{name} is empty ({describe(X)}); expected at least one example")
    if n_features is not None and n != n_features:
        raise ValueError(f"{name} has {n} features ({describe(X)}); the model expects "
                         f"{n_features}")
    indptr = np.asarray(indptr)
    if indptr.ndim != 1 or indptr.shape[0] != m + 1 or not np.issubdtype(indptr.dtype,
                                                                          np.integer):
        raise ValueError(f"{name} ({describe(X)}) has a damaged CSR structure: indptr has "
                         f"shape {indptr.shape} and dtype {indptr.dtype}; expected {m + 1} "
                         "integers")
    indptr = indptr.astype(np.int64, copy=False)
    p0, nnz_end = int(indptr[0]), int(indptr[-1])
    if p0 < 0 or nnz_end > min(len(csr_data), len(indices)) or (np.diff(indptr) < 0).any():
        raise ValueError(f"{name} ({describe(X)}) has a damaged CSR structure: indptr must "
                         f"rise from >= 0 to at most the {min(len(csr_data), len(indices))} "
                         "stored entries")
    if p0:                                  # a view into a larger matrix: make it compact
        indptr = indptr - p0
    data = np.ascontiguousarray(csr_data[p0:nnz_end], dtype=dtype)
    indices = np.asarray(indices[p0:nnz_end])
    if not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{name} ({describe(X)}) has column indices of dtype "
                         f"{indices.dtype}; expected integers")
    if indices.dtype not in (np.int32, np.int64):
        indices = indices.astype(np.int64)
    indices = np.ascontiguousarray(indices)
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= n):
        raise ValueError(f"{name} ({describe(X)}) has column indices outside [0, {n}) "
                         f"(min {int(indices.min())}, max {int(indices.max())}); a damaged "
                         "matrix")
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(data.size - np.count_nonzero(finite))
        raise ValueError(f"{name} ({describe(X)}) contains {bad} NaN or infinite value(s) "
                         "among its stored entries; expected finite numbers (impute or drop "
                         "them first)")
    return CSRRows(data, indices, np.ascontiguousarray(indptr), shape)


def densify_targets(name, y):
    """A sparse label matrix ``y`` (multilabel indicators) as a dense array, when it takes at
    most ``config.SPARSE_DENSIFY_MAX_BYTES``; else a clear error. Labels are narrow (a column
    per class), so this is the one sparse input fastdl densifies on the host."""
    shape = tuple(getattr(y, "shape", ()))
    need = int(np.prod(shape, dtype=np.int64)) * 8 if shape else 0
    if need > config.SPARSE_DENSIFY_MAX_BYTES:
        raise ValueError(f"{name} is sparse ({describe(y)}); labels are used dense, which "
                         f"would take {need:,} bytes, more than "
                         f"config.SPARSE_DENSIFY_MAX_BYTES={config.SPARSE_DENSIFY_MAX_BYTES:,}"
                         " (FASTDL_SPARSE_DENSIFY_MAX_BYTES); pass dense labels")
    csr = _to_scipy_csr(name, y)
    return csr.toarray()
