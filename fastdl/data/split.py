"""Train/dev/test splits and label encoding.

The course's advice: with big data, 98/1/1 is fine (dev and test only need to be large enough
to tell models apart and to estimate the final error); dev and test must come from the same
distribution.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._validation import as_targets, check_rows, _numeric_array


class Splits(NamedTuple):
    train: tuple
    dev: tuple
    test: tuple


def _counts(ratios, counts, m):
    """Exact part sizes [train, dev, test] for m examples (see ``split``)."""
    if counts is not None:
        if ratios is not None:
            raise ValueError("give ratios or counts, not both")
        c = list(counts) if isinstance(counts, (list, tuple, np.ndarray)) else None
        if c is None or len(c) not in (2, 3) or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in c):
            raise ValueError(f"counts={counts!r} is invalid; expected 2 or 3 integers (train, "
                             "dev[, test])")
        sizes = [int(v) for v in c]
        if min(sizes) < 0:
            raise ValueError(f"counts={counts!r} is invalid; counts must be >= 0")
        if sum(sizes) > m:
            raise ValueError(f"counts={counts!r} ask for {sum(sizes)} examples but there are "
                             f"only {m}")
        return sizes + [0] * (3 - len(sizes))
    r = list(ratios) if isinstance(ratios, (list, tuple, np.ndarray)) else None
    if r is None or len(r) not in (2, 3):
        raise ValueError(f"ratios={ratios!r} is invalid; expected 2 or 3 entries (train, dev[, "
                         "test])")
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in r) \
            and sum(r) > 1:
        return _counts(None, r, m)             # integer "ratios" are counts
    try:
        fr = np.asarray(r, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"ratios={ratios!r} is invalid; expected numbers") from None
    if not np.isfinite(fr).all() or (fr < 0).any():
        raise ValueError(f"ratios={ratios!r} is invalid; ratios must be non-negative fractions")
    if not np.isclose(fr.sum(), 1.0, rtol=0, atol=1e-9):
        raise ValueError(f"ratios={ratios!r} sum to {fr.sum():.6g}; expected fractions summing "
                         "to 1 (or integer counts)")
    n_parts = int((fr > 0).sum())
    if m < n_parts:
        raise ValueError(f"cannot split {m} example(s) into {n_parts} non-empty parts "
                         f"(ratios={ratios!r}); expected at least one example per part")
    sizes = np.floor(fr * m).astype(np.int64)
    sizes[(fr > 0) & (sizes == 0)] = 1           # a part asked for is never empty
    sizes[0] += m - sizes.sum()                  # the remainder goes to train
    while sizes[0] < (1 if fr[0] > 0 else 0):    # tiny m: take back from the largest part
        k = int(np.argmax(sizes[1:])) + 1
        sizes[k] -= 1
        sizes[0] += 1
    return [int(v) for v in sizes] + [0] * (3 - len(sizes))


def _class_labels(y):
    """Integer class of each row when y holds classes (labels or one-hot rows), else None."""
    if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1):
        v = y.reshape(-1)
        if np.issubdtype(v.dtype, np.integer) or v.dtype == np.bool_ or np.all(v == np.round(v)):
            return v
        return None
    if y.ndim == 2 and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
        return y.argmax(axis=1)
    return None


def _stratified(inv, n_classes, sizes, rng):
    """Row indices of each part: every part holds each class in proportion to its frequency
    (largest remainder), the part sizes are exactly ``sizes``."""
    per_class = [rng.permutation(np.flatnonzero(inv == c)) for c in range(n_classes)]
    n_c = np.array([p.shape[0] for p in per_class], dtype=np.int64)
    m = int(n_c.sum())
    left = n_c.copy()
    alloc = np.zeros((n_classes, 3), dtype=np.int64)
    full = sum(sizes) == m
    for part in ((1, 2) if full else (1, 2, 0)):
        want = sizes[part]
        target = want * n_c / m
        a = np.minimum(np.floor(target).astype(np.int64), left)
        short = want - int(a.sum())
        frac = np.where(left > a, target - a, -np.inf)
        for c in np.argsort(-frac, kind="stable"):
            if short <= 0:
                break
            if left[c] > a[c]:
                a[c] += 1
                short -= 1
        if short > 0:                 # fill from any class with rows left
            for c in np.argsort(-(left - a), kind="stable"):
                take = min(short, int(left[c] - a[c]))
                a[c] += take
                short -= take
        alloc[:, part] = a
        left -= a
    if full:
        alloc[:, 0] = left
    parts = [[], [], []]
    for c, idx in enumerate(per_class):
        d, t = alloc[c, 1], alloc[c, 2]
        parts[1].append(idx[:d])
        parts[2].append(idx[d:d + t])
        parts[0].append(idx[d + t:d + t + alloc[c, 0]])
    return [rng.permutation(np.concatenate(p)) for p in parts]


def split(X, y, ratios=None, stratify=True, seed=0, counts=None):
    """Shuffle and split into ``Splits(train=(X, y), dev=(X, y), test=(X, y))``.

    ``ratios``: non-negative fractions summing to 1 (train, dev[, test]); default
    ``(0.98, 0.01, 0.01)`` (the course's big-data split); every part with a
    ratio > 0 gets at least one example, rounding leftovers go to train. ``counts``: exact part
    sizes instead (integers; they may sum to less than the number of examples, the rest is
    left out); integer ``ratios`` summing to more than 1 are read as counts too.
    ``stratify``: when y holds classes (integer labels or one-hot rows), every part keeps the
    class proportions (largest-remainder rounding, part sizes exact); ignored for real-valued
    targets. ``seed``: the shuffle (same seed, same split). The test part is empty when two
    ratios are given.
    """
    Xa = _numeric_array("X", X)
    ya = as_targets("y", y)
    if Xa.ndim == 0:
        raise ValueError(f"X has shape {Xa.shape}; expected rows of examples")
    check_rows(Xa, ya)
    m = Xa.shape[0]
    if ratios is None and counts is None:
        ratios = (0.98, 0.01, 0.01)
    sizes = _counts(ratios, counts, m)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid; expected an integer >= 0")
    rng = np.random.default_rng(seed)
    labels = _class_labels(ya) if stratify else None
    if labels is not None:
        classes, inv = np.unique(labels, return_inverse=True)
        sets = _stratified(inv.reshape(-1), classes.shape[0], sizes, rng)
    else:
        perm = rng.permutation(m)
        a, b = sizes[0], sizes[0] + sizes[1]
        sets = [perm[:a], perm[a:b], perm[b:b + sizes[2]]]
    return Splits(*[(Xa[s], ya[s]) for s in sets])


def one_hot(y, n_classes=None):
    """Integer labels (m,) -> one-hot float64 (m, C)."""
    ya = as_targets("y", y)
    if ya.ndim != 1 or not np.all(ya == np.round(ya)) or ya.min() < 0:
        raise ValueError("y must be non-negative integer labels of shape (m,)")
    labels = ya.astype(np.int64)
    k = int(labels.max()) + 1 if n_classes is None else int(n_classes)
    if labels.max() >= k:
        raise ValueError(f"y has label {labels.max()} but n_classes={k}")
    out = np.zeros((labels.shape[0], k))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


def from_one_hot(Y):
    """One-hot (or probability) rows (m, C) -> integer labels (m,)."""
    Ya = as_targets("Y", Y)
    if Ya.ndim != 2:
        raise ValueError(f"Y has shape {Ya.shape}; expected (m, C)")
    return Ya.argmax(axis=1)
