"""Built-in datasets, generated from a seed (no downloads).

Each ``make_*`` returns ``(X, y)`` with X float64 of shape (n, n_features) and integer labels y
of shape (n,).

    moons     two interleaving half circles (2-D, 2 classes), as scikit-learn's make_moons
    circles   a small circle inside a large one (2-D, 2 classes)
    spirals   K interleaved spiral arms (2-D, K classes; the classic softmax exercise)
    blobs     K Gaussian clusters in d dimensions
    teacher   labels from a random "teacher" network on Gaussian inputs (any size; the
              Bayes error is known to be 0, useful for bias/variance exercises)
"""

from __future__ import annotations

import numpy as np

from .._validation import check_float, check_int


def make_moons(n=1000, noise=0.2, seed=0):
    n = check_int("n", n, minimum=2)
    noise = check_float("noise", noise, minimum=0.0)
    rng = np.random.default_rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.vstack([np.c_[np.cos(t_out), np.sin(t_out)],
                   np.c_[1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5]])
    y = np.r_[np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)]
    X += rng.normal(scale=noise, size=X.shape)
    perm = rng.permutation(n)
    return X[perm], y[perm]


def make_circles(n=1000, noise=0.1, factor=0.5, seed=0):
    n = check_int("n", n, minimum=2)
    noise = check_float("noise", noise, minimum=0.0)
    factor = check_float("factor", factor, minimum=0.0, strict=True)
    if factor >= 1:
        raise ValueError(f"factor={factor} is invalid; expected 0 < factor < 1")
    rng = np.random.default_rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    t_in = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    X = np.vstack([np.c_[np.cos(t_out), np.sin(t_out)],
                   factor * np.c_[np.cos(t_in), np.sin(t_in)]])
    y = np.r_[np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)]
    X += rng.normal(scale=noise, size=X.shape)
    perm = rng.permutation(n)
    return X[perm], y[perm]


def make_spirals(n=1500, n_classes=3, noise=0.2, seed=0):
    n = check_int("n", n, minimum=n_classes)
    k = check_int("n_classes", n_classes, minimum=2)
    noise = check_float("noise", noise, minimum=0.0)
    rng = np.random.default_rng(seed)
    per = np.full(k, n // k)
    per[: n - per.sum()] += 1
    X, y = [], []
    for c in range(k):
        r = np.linspace(0.0, 1.0, per[c])
        t = np.linspace(c * 4.0, (c + 1) * 4.0, per[c]) + rng.normal(scale=noise, size=per[c])
        X.append(np.c_[r * np.sin(t), r * np.cos(t)])
        y.append(np.full(per[c], c, dtype=np.int64))
    X, y = np.vstack(X), np.concatenate(y)
    perm = rng.permutation(n)
    return X[perm], y[perm]


def make_blobs(n=1000, n_classes=3, n_features=2, std=1.0, seed=0):
    n = check_int("n", n, minimum=n_classes)
    k = check_int("n_classes", n_classes, minimum=1)
    d = check_int("n_features", n_features, minimum=1)
    std = check_float("std", std, minimum=0.0)
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(k, d))
    y = np.arange(n, dtype=np.int64) % k
    X = centers[y] + rng.normal(scale=std, size=(n, d))
    perm = rng.permutation(n)
    return X[perm], y[perm]


def make_teacher(n=10000, n_features=20, n_classes=2, hidden=32, seed=0, dtype=np.float64):
    """Labels y = argmax of a random tanh teacher network on Gaussian X (rows generated in
    chunks, so n can be in the millions)."""
    n = check_int("n", n, minimum=1)
    d = check_int("n_features", n_features, minimum=1)
    k = check_int("n_classes", n_classes, minimum=2)
    h = check_int("hidden", hidden, minimum=1)
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(h, d)) / np.sqrt(d)
    W2 = rng.normal(size=(k, h)) * 2.0 / np.sqrt(h)
    X = np.empty((n, d), dtype=dtype)
    y = np.empty(n, dtype=np.int64)
    chunk = 65536
    for s in range(0, n, chunk):
        xb = rng.standard_normal((min(chunk, n - s), d))
        X[s:s + xb.shape[0]] = xb
        y[s:s + xb.shape[0]] = (np.tanh(xb @ W1.T) @ W2.T).argmax(axis=1)
    return X, y


DATASETS = {"moons": make_moons, "circles": make_circles, "spirals": make_spirals,
            "blobs": make_blobs, "teacher": make_teacher}


def load_dataset(name, **kwargs):
    """``(X, y)`` of a built-in dataset by name (see ``DATASETS``)."""
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not a built-in dataset; expected one of "
                         f"{tuple(DATASETS)}")
    return DATASETS[name](**kwargs)
