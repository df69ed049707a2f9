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


def _counts(ratios, m):
    r = list(ratios)
    if len(r) not in (2, 3):
        raise ValueError(f"ratios={ratios!r} is invalid; expected 2 or 3 entries (train, dev[, "
                         "test])")
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in r) \
            and sum(r) > 1:
        counts = [int(v) for v in r]
        if min(counts) < 0 or sum(counts) > m:
            raise ValueError(f"ratios={ratios!r} as counts must be >= 0 and sum to at most the "
                             f"{m} examples")
    else:
        fr = np.asarray(r, dtype=np.float64)
        if (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
            raise ValueError(f"ratios={ratios!r} is invalid; expected non-negative fractions "
                             "summing to 1 (or integer counts)")
        counts = np.floor(fr * m).astype(int)
        counts[0] += m - counts.sum()          # remainder to train
        counts = [int(c) for c in counts]
    if len(counts) == 2:
        counts.append(0)
    if m < sum(1 for c in counts if c > 0):
        raise ValueError(f"cannot split {m} examples into {len(r)} non-empty parts")
    return counts


def split(X, y, ratios=(0.98, 0.01, 0.01), stratify=True, seed=0):
    """Shuffle and split into ``Splits(train=(X, y), dev=(X, y), test=(X, y))``.

    ``ratios``: fractions summing to 1, or integer counts. ``stratify``: keep class proportions
    in every part (for integer labels). The test part is empty when two ratios are given.
    """
    Xa = _numeric_array("X", X)
    ya = as_targets("y", y)
    check_rows(Xa, ya)
    m = Xa.shape[0]
    counts = _counts(ratios, m)
    rng = np.random.default_rng(seed)
    if stratify and ya.ndim == 1 and np.all(ya == np.round(ya)):
        parts = [[], [], []]
        classes, inv = np.unique(ya, return_inverse=True)
        fr = np.asarray(counts, dtype=np.float64) / max(sum(counts), 1)
        for c in range(classes.shape[0]):
            idx = rng.permutation(np.flatnonzero(inv == c))
            n_dev = int(round(fr[1] * idx.shape[0]))
            n_test = int(round(fr[2] * idx.shape[0]))
            parts[1].append(idx[:n_dev])
            parts[2].append(idx[n_dev:n_dev + n_test])
            parts[0].append(idx[n_dev + n_test:])
        sets = [rng.permutation(np.concatenate(p)) for p in parts]
    else:
        perm = rng.permutation(m)
        a, b = counts[0], counts[0] + counts[1]
        sets = [perm[:a], perm[a:b], perm[b:b + counts[2]]]
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
