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


def _teacher_chunks(n, n_features, n_classes, hidden, seed, chunk=65536):
    """(X chunk float64, y chunk int64) pairs of the teacher dataset, in row order."""
    n = check_int("n", n, minimum=1)
    d = check_int("n_features", n_features, minimum=1)
    k = check_int("n_classes", n_classes, minimum=2)
    h = check_int("hidden", hidden, minimum=1)
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(h, d)) / np.sqrt(d)
    W2 = rng.normal(size=(k, h)) * 2.0 / np.sqrt(h)
    for s in range(0, n, chunk):
        xb = rng.standard_normal((min(chunk, n - s), d))
        yield xb, (np.tanh(xb @ W1.T) @ W2.T).argmax(axis=1).astype(np.int64)


def make_teacher(n=10000, n_features=20, n_classes=2, hidden=32, seed=0, dtype=np.float64):
    """Labels y = argmax of a random tanh teacher network on Gaussian X (rows generated in
    chunks, so n can be in the millions). ``make_teacher_npy`` writes the same rows to disk."""
    X = np.empty((check_int("n", n, minimum=1), check_int("n_features", n_features, minimum=1)),
                 dtype=dtype)
    y = np.empty(n, dtype=np.int64)
    s = 0
    for xb, yb in _teacher_chunks(n, n_features, n_classes, hidden, seed):
        X[s:s + xb.shape[0]] = xb
        y[s:s + xb.shape[0]] = yb
        s += xb.shape[0]
    return X, y


def _npy_writer(path, shape, dtype):
    f = open(path, "wb")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)}
    np.lib.format.write_array_header_1_0(f, header)
    return f


def make_teacher_npy(path_X, path_y, n=1_000_000, n_features=784, n_classes=10, hidden=32,
                     seed=0, dtype=np.float32):
    """Write the teacher dataset to two ``.npy`` files chunk by chunk, never holding more than
    a chunk (64k rows) in memory: X ``(n, n_features)`` of ``dtype`` at ``path_X`` and labels
    ``(n,)`` int64 at ``path_y``. The rows equal ``make_teacher(n, ..., dtype=dtype)``'s.
    Files are written to temporary names and renamed when complete. Returns the two paths.
    For out-of-core training: ``model.fit(path_X, path_y, ...)``."""
    import os
    n = check_int("n", n, minimum=1)
    d = check_int("n_features", n_features, minimum=1)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype={dtype} is not supported; expected a float dtype")
    paths = [os.fspath(path_X), os.fspath(path_y)]
    for p in paths:
        directory = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"cannot write {p!r}: the directory {directory!r} does not "
                                    "exist")
    tmps = [p + ".part" for p in paths]
    fx = _npy_writer(tmps[0], (n, d), dtype)
    fy = _npy_writer(tmps[1], (n,), np.int64)
    try:
        with fx, fy:
            for xb, yb in _teacher_chunks(n, d, n_classes, hidden, seed):
                fx.write(np.ascontiguousarray(xb, dtype=dtype).tobytes())
                fy.write(yb.tobytes())
        for t, p in zip(tmps, paths):
            os.replace(t, p)
    except BaseException:
        for t in tmps:
            if os.path.exists(t):
                os.unlink(t)
        raise
    return tuple(paths)


def load_digits(n=None, seed=0):
    """scikit-learn's bundled 8x8 digits (1797 images, 64 features with values 0-16, 10
    classes; shipped with scikit-learn, no download). ``n``: a random subset of that many
    rows (drawn with ``seed``); default all, in scikit-learn's order. Needs scikit-learn."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise ImportError("the digits dataset comes with scikit-learn, which is not installed; "
                          "pip install scikit-learn") from None
    X, y = _load(return_X_y=True)
    X, y = X.astype(np.float64), y.astype(np.int64)
    if n is not None:
        n = check_int("n", n, minimum=1)
        if n > X.shape[0]:
            raise ValueError(f"n={n} is invalid; digits has {X.shape[0]} examples")
        idx = np.random.default_rng(seed).permutation(X.shape[0])[:n]
        X, y = X[idx], y[idx]
    return X, y


DATASETS = {"moons": make_moons, "circles": make_circles, "spirals": make_spirals,
            "blobs": make_blobs, "teacher": make_teacher, "digits": load_digits}


def load_dataset(name, **kwargs):
    """``(X, y)`` of a built-in dataset by name (see ``DATASETS``)."""
    if name not in DATASETS:
        raise ValueError(f"dataset={name!r} is not a built-in dataset; expected one of "
                         f"{tuple(DATASETS)}")
    return DATASETS[name](**kwargs)
