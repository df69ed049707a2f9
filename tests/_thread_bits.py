"""Child process of tests/test_reproducibility.py: results at several thread counts, as hashes.

    NUMBA_NUM_THREADS=4 python tests/_thread_bits.py kernels|training [threads ...]

Run with more Numba threads than the machine may have cores (the parent sets
``NUMBA_NUM_THREADS=4``). For every thread count, ``fd.set_num_threads(n)`` sets Numba's and
OpenBLAS's threads, then each case runs from the same inputs; the JSON printed on the last line
maps case -> {threads: sha256 of every output buffer}. The parent asserts one hash per case.

* ``kernels``: every cpu kernel with a parallel variant, forced to it (``PARALLEL_MIN_SIZE=0``),
  and the GEMM-backed dense kernels, on buffers large enough for several blocks / tasks;
* ``training``: ``fit`` of 784-256-128-10 with batch norm and dropout (Adam), float32 and
  float64, in memory and streamed from ``.npy`` files, plus a tiny net on the whole-epoch kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import numpy as np

#: empty bfloat16 outputs / optimizer shadow: no mixed-precision copies (issue 14)
NO16 = np.zeros((0, 0), np.uint16)
NO_SHADOW = np.zeros(0, np.uint16)


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def kernel_cases():
    """{name: fn() -> digest} over the cpu kernels, with fresh copies of fixed inputs."""
    cases = {}
    for dt in (np.float32, np.float64):
        cases.update(_kernel_cases(dt))
    return cases


def _kernel_cases(dt):
    from fastdl.kernels import cpu as K
    cases = {}
    rng = np.random.default_rng(0)
    t = np.dtype(dt).name
    m, n_in, n_out = 300, 257, 260                 # > 2 column blocks of 64, odd sizes
    X = rng.standard_normal((m, n_in)).astype(dt)
    W = (0.1 * rng.standard_normal((n_out, n_in))).astype(dt)
    b = rng.standard_normal(n_out).astype(dt)
    dA0 = rng.standard_normal((m, n_out)).astype(dt)
    Y = np.eye(n_out, dtype=dt)[rng.integers(0, n_out, m)]
    for act in range(5):
        def dense(act=act):
            A = np.empty((m, n_out), dt)
            K.dense_forward(A, NO16, X, W, b, act, 0.1)
            dX, dW, db, dA = (np.empty((m, n_in), dt), np.empty((n_out, n_in), dt),
                              np.empty(n_out, dt), dA0.copy())
            K.dense_backward(dX, dW, db, NO16, dA, A, X, W, act, 0.1)
            return _digest(A, dX, dW, db, dA)
        cases[f"dense act={act} {t}"] = dense

        def activation(act=act):
            A, dZ = np.empty((m, n_out), dt), np.empty((m, n_out), dt)
            K.activation_forward(A, dA0, act, 0.1)
            K.activation_backward(dZ, dA0, A, act, 0.1)
            return _digest(A, dZ)
        cases[f"activation act={act} {t}"] = activation

        def batchnorm(act=act):
            A, mean, inv = np.empty((m, n_out), dt), np.empty(n_out), np.empty(n_out)
            rm, rv = np.zeros(n_out, dt), np.ones(n_out, dt)
            gamma, beta = np.linspace(0.5, 2, n_out).astype(dt), b.copy()
            Xb = dA0 + 3.0
            K.batchnorm_forward_train(A, NO16, mean, inv, rm, rv, Xb, gamma, beta, 0.9, 1e-5,
                                      False, act, 0.1)
            E = np.empty((m, n_out), dt)
            K.batchnorm_forward_eval(E, NO16, Xb, gamma, beta, rm, rv, 1e-5, act, 0.1)
            dX, dg, dbeta, dA = (np.empty((m, n_out), dt), np.empty(n_out, dt),
                                 np.empty(n_out, dt), Y - 0.1)
            K.batchnorm_backward(dX, dg, dbeta, dA, A, Xb, mean, inv, gamma, act, 0.1)
            return _digest(A, mean, inv, rm, rv, E, dX, dg, dbeta, dA)
        cases[f"batchnorm act={act} {t}"] = batchnorm

    def softmax_and_losses():
        P, loss, dZ = np.empty((m, n_out), dt), np.zeros(1), np.empty((m, n_out), dt)
        K.softmax_forward(P, dA0)
        K.softmax_cross_entropy(loss, dZ, dA0, Y)
        l2, d2 = np.zeros(1), np.empty((m, n_out), dt)
        K.sigmoid_binary_cross_entropy(l2, d2, dA0, (Y > 0).astype(dt))
        return _digest(P, loss, dZ, l2, d2)
    cases[f"softmax, losses {t}"] = softmax_and_losses

    def dropout():
        A, dX = np.empty((m, n_out), dt), np.empty((m, n_out), dt)
        K.dropout_forward(A, NO16, dA0, 7, 3, 1, 0.8)
        K.dropout_backward(dX, dA0, 7, 3, 1, 0.8)
        B = dA0.copy()
        K.dropout_forward(B, NO16, B, 7, 3, 1, 0.8)
        return _digest(A, dX, B)
    cases[f"dropout {t}"] = dropout

    def gather():
        out = np.empty((m, n_in), dt)
        K.gather_rows(out, X, np.arange(m)[::-1].copy())
        return _digest(out)
    cases[f"gather_rows {t}"] = gather

    p0 = rng.standard_normal(200_003).astype(dt)           # several 64 Ki blocks
    g0 = rng.standard_normal(200_003).astype(dt)
    for clip in (dict(max_norm=np.inf, clip_value=np.inf),
                 dict(max_norm=1.0, clip_value=0.01)):
        def optim(clip=clip):
            sq = np.zeros(1)
            K.sum_squares(sq, g0)
            mn, cv = clip["max_norm"], clip["clip_value"]
            p, s1, s2 = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
            K.sgd_update(p, NO_SHADOW, g0, 0.1, 0.01, sq, mn, cv, 0.001, 1000)
            K.momentum_update(p, NO_SHADOW, s1, g0, 0.1, 0.9, 0.0, True, 0.0, sq, mn, cv, 0.0,
                              1000)
            K.rmsprop_update(p, NO_SHADOW, s2, g0, 0.01, 0.9, 1e-8, 0.0, sq, mn, cv, 0.0, 1000)
            s1[...] = 0
            s2[...] = 0
            K.adam_update(p, NO_SHADOW, s1, s2, g0, 1e-3, 0.9, 0.999, 1e-8, 3, 0.0, 0.01, sq, mn,
                          cv, 0.0, 1000)
            return _digest(sq, p, s1, s2)
        cases[f"optimizers clip={clip['max_norm'] != np.inf} {t}"] = optim
    return cases


def training_cases(tmp):
    """{name: fn() -> digest of the weights and the loss history after 2 epochs}."""
    import fastdl as fd
    rng = np.random.default_rng(1)
    X = rng.standard_normal((1000, 784))
    y = rng.integers(0, 10, 1000)
    cases = {}
    for dt in ("float32", "float64"):
        paths = (os.path.join(tmp, f"X_{dt}.npy"), os.path.join(tmp, f"y_{dt}.npy"))
        np.save(paths[0], X.astype(dt))
        np.save(paths[1], y)
        for source in ("memory", "npy"):
            def train(dt=dt, source=source, paths=paths):
                model = fd.Sequential(
                    [fd.Dense(256), fd.BatchNorm(), fd.Activation("relu"),
                     fd.Dropout(keep_prob=0.8), fd.Dense(128, activation="relu"),
                     fd.Dense(10, activation="softmax")],
                    input_dim=784, dtype=dt, seed=3, backend="cpu")
                data = (X.astype(dt), y) if source == "memory" else paths
                h = model.fit(*data, optimizer=fd.optim.Adam(), epochs=2, batch_size=200,
                              verbose=0)
                return _digest(*model.get_weights(), np.array(h.history["loss"]))
            cases[f"784-256(bn,dropout)-128-10 {dt} {source}"] = train

        def tiny(dt=dt):           # the whole-epoch kernel (tiny dense nets)
            model = fd.Sequential([fd.Dense(5, activation="tanh"), fd.Dense(1,
                                   activation="sigmoid")], input_dim=2, dtype=dt, seed=0)
            Xs = X[:, :2].astype(dt)
            model.fit(Xs, (y > 4).astype(dt), optimizer=fd.optim.Adam(), epochs=2,
                      batch_size=64, verbose=0)
            return _digest(*model.get_weights())
        cases[f"2-5-1 (whole-epoch kernel) {dt}"] = tiny
    return cases


def main(argv):
    mode, threads = argv[0], [int(t) for t in argv[1:]] or [1, 2, 4]
    import fastdl as fd
    from fastdl import config
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "kernels":
            config.PARALLEL_MIN_SIZE = 0        # every kernel takes its prange variant
            cases = kernel_cases()
        else:
            cases = training_cases(tmp)
        for n in threads:
            fd.set_num_threads(n)
            for name, fn in cases.items():
                out.setdefault(name, {})[str(n)] = fn()
    from fastdl.kernels.cpu import _openblas as _blas
    print(json.dumps({"cases": out, "deterministic": _blas.deterministic(),
                      "gemm_blocks": config.GEMM_BLOCKS}))


if __name__ == "__main__":
    main(sys.argv[1:])
