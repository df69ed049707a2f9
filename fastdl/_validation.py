"""Checks and conversions at the public edges. Every error names the argument, the value it got
and what was expected; nothing is silently coerced into garbage."""

from __future__ import annotations

import numbers

import numpy as np

FLOAT_DTYPES = ("float32", "float64")


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in FLOAT_DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; expected one of {FLOAT_DTYPES}")
    return dt


def check_int(name, value, minimum=None, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}={value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}")
    return int(value)


def check_float(name, value, minimum=None, strict=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name}={value!r} is invalid; expected a finite number")
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        op = ">" if strict else ">="
        raise ValueError(f"{name}={value!r} is invalid; expected a number {op} {minimum}")
    return float(value)


def numeric_array(name, a):
    """``a`` as a NumPy array of real numbers (or booleans), or an error naming ``name``."""
    return _numeric_array(name, a)


def _numeric_array(name, a):
    try:
        arr = np.asarray(a)
    except Exception as e:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to a numeric array: {e}") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise TypeError(f"{name} has dtype {arr.dtype}; expected a numeric array-like")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} is complex; expected real numbers")
    return arr


def _one_d_hint(name, arr, n_features):
    """How to turn a 1-D array into rows: one example of n_features values, or one feature."""
    one_example = f"{name}.reshape(1, -1) for a single example"
    one_feature = f"{name}.reshape(-1, 1) for a single feature"
    if n_features == 1:
        return f" (use {one_feature})"
    if n_features is not None and arr.shape[0] == n_features:
        return f" (use {one_example} of {n_features} features)"
    if n_features is not None:
        return f" (the model expects rows of {n_features} features)"
    return f" (use {one_example}, {one_feature})"


def as_features(name, X, dtype, n_features=None, allow_empty=False) -> np.ndarray:
    """Any NumPy-acceptable array-like -> C-contiguous (m, n) array of ``dtype``, checked.
    Errors quote the shape as given. ``allow_empty``: 0 rows are fine (``predict``)."""
    arr = _numeric_array(name, X)
    if arr.ndim != 2:
        hint = _one_d_hint(name, arr, n_features) if arr.ndim == 1 else ""
        raise ValueError(f"{name} has shape {arr.shape}; expected a 2-D array "
                         f"(n_examples, n_features){hint}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected at least one example")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features (shape {arr.shape}); the model "
                         f"expects {n_features}")
    out = np.ascontiguousarray(arr, dtype=dtype)
    if not np.isfinite(out).all():
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); expected finite "
                         "numbers (impute or drop them first)")
    return out


def as_targets(name, y) -> np.ndarray:
    arr = _numeric_array(name, y)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} has shape {arr.shape}; expected (n_examples,) or "
                         "(n_examples, n_outputs)")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty; expected at least one label")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values; expected finite labels")
    return arr


def check_rows(X, y, xname="X", yname="y"):
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{xname} has {X.shape[0]} rows but {yname} has {y.shape[0]}; "
                         "expected one label per example")


def as_sample_weight(name, w, m, dtype=np.float64) -> np.ndarray:
    """Per-example weights: a 1-D array-like of m finite numbers >= 0, not all zero, as an array
    of ``dtype`` (the model's), validated *after* the cast: a weight that overflows the dtype
    or a non-zero weight that underflows to 0 in it is an error, since either would silently
    change what the weights mean. (Zero weights are allowed: such rows do not count; negative
    ones have no meaning for a weighted mean of non-negative losses, and all-zero weights leave
    nothing to fit.)"""
    arr = _numeric_array(name, w)
    if arr.ndim != 1 or arr.shape[0] != m:
        raise ValueError(f"{name} has shape {arr.shape}; expected a 1-D array of {m} weights, "
                         "one per example (row of X)")
    w64 = arr.astype(np.float64)
    if not np.isfinite(w64).all():
        raise ValueError(f"{name} contains NaN or infinite values; expected finite weights >= 0")
    if (w64 < 0).any():
        i = int(np.argmax(w64 < 0))
        raise ValueError(f"{name}[{i}]={float(w64[i])!r} is negative; expected weights >= 0")
    dt = np.dtype(dtype)
    with np.errstate(over="ignore", under="ignore"):
        out = w64.astype(dt)
    info = np.finfo(dt)
    if not np.isfinite(out).all():
        i = int(np.argmax(~np.isfinite(out)))
        raise ValueError(f"{name}[{i}]={float(w64[i])!r} overflows {dt.name} (largest "
                         f"{float(info.max):.4g}); rescale the weights: only their ratios matter")
    lost = (out == 0) & (w64 != 0)
    if lost.any():
        i = int(np.argmax(lost))
        raise ValueError(f"{name}[{i}]={float(w64[i])!r} underflows to 0 in {dt.name} (smallest "
                         f"{float(info.smallest_subnormal):.4g}); rescale the weights: only their "
                         "ratios matter")
    if not (out > 0).any():
        raise ValueError(f"{name} is all zero; expected at least one non-zero weight (a zero "
                         "weight drops an example, so all-zero weights leave nothing to fit)")
    return out
