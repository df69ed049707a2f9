"""Sparse input (``scipy.sparse`` X) in ``fd.Sequential`` and ``fastdl.sklearn``.

The sparse path must compute what the dense path computes on the densified X: same batches
(the epoch's shuffle is the same pure function of (seed, epoch)), same dropout masks, same
weights, losses and predictions (float64, to rounding). scikit-learn is the external reference
for the estimators (its MLP on the same sparse X, same random_state, SGD without shuffling:
step for step). X itself is never densified (a matrix that refuses ``toarray`` trains, and the
memory traced during a fit stays far below one dense batch). Every unsupported combination is
a clear error naming the argument.
"""

import tracemalloc
import warnings

import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")

import fastdl as fd  # noqa: E402
from fastdl import config  # noqa: E402
from fastdl.data.batches import make_source  # noqa: E402
from fastdl.data.sparse import CSRRows, as_csr  # noqa: E402
from fastdl.kernels import reference as R  # noqa: E402
from fastdl.nn import sequential  # noqa: E402

FORMATS = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "coo": sp.coo_matrix,
           "csr_array": sp.csr_array, "lil": sp.lil_matrix}


def _data(m=150, n=40, density=0.1, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    X = sp.random(m, n, density=density, random_state=seed, format="lil")
    X[3] = 0                                  # an empty row
    X = X.tocsr()
    X.data = (X.data * 4 - 2).astype(np.float64)
    y = rng.integers(0, classes, m)
    return X, y


def _model(n, backend="cpu", dtype="float64", layers=None, seed=1, **kw):
    layers = layers or [fd.Dense(8, activation="relu"), fd.Dense(3, activation="softmax")]
    return fd.Sequential(layers, input_dim=n, dtype=dtype, seed=seed, backend=backend, **kw)


def _close(a, b, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
                               rtol=rtol, atol=atol)


# --- the sparse path computes what the dense path computes -------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_fit_on_sparse_equals_fit_on_dense(backend, fmt):
    X, y = _data()
    Xs = FORMATS[fmt](X)
    w = np.random.default_rng(5).random(X.shape[0]) * 2
    runs = []
    for Xin, Xval in ((Xs, FORMATS[fmt](X[:40])), (X.toarray(), X[:40].toarray())):
        model = _model(X.shape[1], backend)
        h = model.fit(Xin, y, optimizer=fd.optim.Adam(lr=0.01), epochs=3, batch_size=32,
                      l2=0.05, verbose=0, sample_weight=w, validation_data=(Xval, y[:40]))
        runs.append((h.history["loss"], h.history["val_loss"], h.history["val_accuracy"],
                     model.get_weights()))
    for a, b in zip(runs[0][:3], runs[1][:3]):
        _close(a, b)
    for a, b in zip(runs[0][3], runs[1][3]):
        _close(a, b)


def test_sparse_batches_are_the_dense_batches():
    """CSRSource gathers, for every epoch, exactly the rows ArraySource gathers (same seed),
    into the same index/data buffers every batch (sized once, for the bs longest rows)."""
    X, y = _data(m=101)
    model = _model(X.shape[1])
    dense, sparse = make_source(model, X.toarray(), y), make_source(model, X, y)
    buffers = set()
    for epoch in (0, 1, 7):
        pairs = zip(dense.batches(model, 11, epoch, 16), sparse.batches(model, 11, epoch, 16))
        for (b1, wd, m1), (b2, ws, m2) in pairs:
            assert (b1, m1) == (b2, m2)
            assert isinstance(ws.Xb, CSRRows) and ws.Xb.shape == (m2, X.shape[1])
            np.testing.assert_array_equal(ws.Xb.toarray(), wd.Xb)
            np.testing.assert_array_equal(ws.Yb, wd.Yb)
            buffers.add((id(ws.Xb.data), id(ws.Xb.indices)))
    assert len(buffers) == 1
    lengths = np.sort(np.diff(X.indptr))[::-1]
    assert sparse._buffer(16)[0].shape[0] == lengths[:16].sum()


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_inference_and_step_api_on_sparse(monkeypatch, backend):
    """predict, predict_proba, evaluate (weighted too), train_on_batch, loss_and_grads equal
    the dense results; evaluation chunks (patched to 7 rows) slice CSR rows."""
    monkeypatch.setattr(sequential, "EVAL_CHUNK", 7)
    X, y = _data()
    Xd = X.toarray()
    w = np.linspace(0, 2, X.shape[0])
    a, b = _model(X.shape[1], backend), _model(X.shape[1], backend)
    _close(a.predict_proba(X), b.predict_proba(Xd))
    np.testing.assert_array_equal(a.predict(X), b.predict(Xd))
    for kw in ({}, {"sample_weight": w}):
        ea, eb = a.evaluate(X, y, **kw), b.evaluate(Xd, y, **kw)
        _close(ea["loss"], eb["loss"])
        assert ea["accuracy"] == eb["accuracy"]
    ca, ga = a.loss_and_grads(X[:20], y[:20], l2=0.3, sample_weight=w[:20])
    cb, gb = b.loss_and_grads(Xd[:20], y[:20], l2=0.3, sample_weight=w[:20])
    _close(ca, cb)
    for p, q in zip(ga, gb):
        _close(p, q)
    opt_a, opt_b = fd.optim.SGD(lr=0.5), fd.optim.SGD(lr=0.5)
    for s in (0, 20, 40):
        _close(a.train_on_batch(X[s:s + 20], y[s:s + 20], opt_a, l2=0.1),
               b.train_on_batch(Xd[s:s + 20], y[s:s + 20], opt_b, l2=0.1))
    for p, q in zip(a.get_weights(), b.get_weights()):
        _close(p, q)


def test_gradcheck_on_sparse_input():
    """Backprop through the sparse kernels against finite differences (float64), on a batch
    with repeated (row, column) entries and unsorted columns."""
    X, y = _data(m=12, n=9, density=0.4)
    Xnc = sp.csr_matrix((np.r_[X.data, 0.7], np.r_[X.indices, X.indices[0]],
                         np.r_[X.indptr[:2], X.indptr[2:] + 1]), shape=X.shape)
    Xnc.indices[:2] = Xnc.indices[:2][::-1].copy()
    assert not Xnc.has_canonical_format
    model = _model(9, layers=[fd.Dense(5, activation="tanh"), fd.Dense(3, activation="softmax")])
    result = fd.gradcheck(model, Xnc, y, l2=0.2)
    assert result.passed, result
    _close(model.loss_and_grads(Xnc, y)[0], model.loss_and_grads(Xnc.toarray(), y)[0])


@pytest.mark.parametrize("extra", ["batchnorm", "dropout"])
def test_batchnorm_and_dropout_after_the_sparse_layer(extra):
    """Layers after the first Dense are the dense ones: batch norm, dropout masks (a function
    of seed, step, layer, element) give the dense-input results."""
    X, y = _data()

    def layers():
        mid = ([fd.BatchNorm(), fd.Activation("relu")] if extra == "batchnorm" else
               [fd.Activation("relu"), fd.Dropout(keep_prob=0.7)])
        return [fd.Dense(8)] + mid + [fd.Dense(3, activation="softmax")]
    runs = []
    for Xin in (X, X.toarray()):
        model = _model(X.shape[1], layers=layers())
        h = model.fit(Xin, y, optimizer=fd.optim.Adam(lr=0.01), epochs=2, batch_size=32,
                      verbose=0)
        runs.append((h.history["loss"], model.get_weights(), model.predict_proba(Xin)))
    for a, b in zip(runs[0], runs[1]):
        for p, q in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            _close(p, q)


def test_mixed_precision_with_sparse_input():
    """compute_dtype="bfloat16": the sparse first layer computes in float32 (its products are
    not GEMMs) and writes the bfloat16 copy the next Dense reads; the model trains, and the
    first layer's output is exactly the float32 model's."""
    X, y = _data()
    X32 = X.astype(np.float32)
    low = _model(X.shape[1], dtype="float32", compute_dtype="bfloat16", allow_slow=True)
    full = _model(X.shape[1], dtype="float32")
    full.set_weights(low.get_weights())
    for model in (low, full):
        model.predict_proba(X32)
    ws_low = low._workspaces[("csr", X.shape[0])]
    ws_full = full._workspaces[("csr", X.shape[0])]
    np.testing.assert_array_equal(ws_low.layers[0].A, ws_full.layers[0].A)
    a16 = np.empty_like(ws_low.layers[0].A16)
    R.to_bfloat16(a16, ws_low.layers[0].A)
    np.testing.assert_array_equal(ws_low.layers[0].A16, a16)
    np.testing.assert_allclose(low.predict_proba(X32), full.predict_proba(X32), atol=2e-2)
    h = low.fit(X32, y, optimizer=fd.optim.Adam(lr=0.01), epochs=5, batch_size=32, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    low.predict(X32.toarray())      # the dense path of the same model still works


def test_monitor_sees_the_sparse_layer():
    """fd.GradientMonitor reads the activations of the sparse batches' workspaces: the same
    statistics as for the dense input."""
    X, y = _data()
    mons = []
    for Xin in (X, X.toarray()):
        mons.append(fd.GradientMonitor(every=1, verbose=0))
        _model(X.shape[1]).fit(Xin, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2,
                               batch_size=50, verbose=0, callbacks=[mons[-1]])
    assert {"act_mean/dense_1", "dead_frac/dense_1"} <= set(mons[0].history)
    assert sorted(mons[0].history) == sorted(mons[1].history)
    for k in mons[1].history:
        _close(mons[0].history[k], mons[1].history[k])


def test_sparse_x_is_never_densified():
    """A matrix whose toarray/todense raise trains and predicts; the memory traced during a
    fit of a 500,000-column X stays far below one dense batch (64 x 500,000 float32 = 128 MB)
    or a dense X (2 GB)."""
    class NoDense(sp.csr_matrix):
        def toarray(self, *a, **k):
            raise AssertionError("X was densified")
        todense = toarray

    X, y = _data()
    model = _model(X.shape[1])
    nd = NoDense(X)
    model.fit(nd, y, epochs=1, batch_size=32, verbose=0, validation_data=(nd, y))
    model.predict_proba(nd)
    model.evaluate(nd, y)

    rng = np.random.default_rng(0)
    m, n = 1000, 500_000
    Xw = sp.csr_matrix((rng.random(m * 5, dtype=np.float32),
                        rng.integers(0, n, m * 5).astype(np.int32),
                        np.arange(0, m * 5 + 1, 5)), shape=(m, n))
    wide = fd.Sequential([fd.Dense(4, activation="relu"), fd.Dense(2, activation="softmax")],
                         input_dim=n, seed=0)          # 2M weights: 8 MB each of W, dW, m, v
    wide.fit(Xw[:70], y[:70] % 2, optimizer=fd.optim.Adam(), epochs=1, batch_size=64,
             verbose=0)                               # compile outside the traced run
    tracemalloc.start()
    try:
        wide.fit(Xw, y.repeat(7)[:m] % 2, optimizer=fd.optim.Adam(), epochs=1, batch_size=64,
                 verbose=0)
        wide.predict(Xw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 48 << 20, f"peak traced allocation {peak / 2**20:.0f} MB"


# --- errors ---------------------------------------------------------------------------------------
def test_bad_sparse_values_name_the_argument():
    X, y = _data()
    model = _model(X.shape[1])
    bad = X.copy()
    bad.data[[0, 5]] = [np.nan, np.inf]
    with pytest.raises(ValueError, match=r"X \(csr_matrix of shape \(150, 40\)\) contains 2 "
                                         r"NaN or infinite"):
        model.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data\[0\] .* NaN or infinite"):
        model.fit(X, y, verbose=0, validation_data=(bad, y))
    with pytest.raises(ValueError, match="X .* NaN or infinite"):
        model.predict(bad)
    with pytest.raises(ValueError, match=r"X has 39 features .*the model expects 40"):
        model.predict_proba(X[:, :39])
    with pytest.raises(ValueError, match="X is empty"):
        model.evaluate(X[:0], y[:0])
    with pytest.raises(ValueError, match="X is empty"):
        model.fit(X[:0], y[:0], verbose=0)
    # as for dense X (tests/test_peer_habits.py): predicting on no rows gives no rows
    assert model.predict(X[:0]).shape == (0,)
    assert model.predict_proba(X[:0]).shape == (0, 3)
    with pytest.raises(TypeError, match="X .* complex"):
        model.predict(X.astype(np.complex128))
    damaged = X.copy()
    damaged.indices[0] = 40
    with pytest.raises(ValueError, match=r"column indices outside \[0, 40\)"):
        model.predict(damaged)


def test_not_csr_convertible_objects():
    model = _model(4)

    class Broken:
        shape = (3, 4)

        def tocsr(self):
            raise RuntimeError("no")

    class NotSparse(Broken):
        def tocsr(self):
            return np.ones((3, 4))

    with pytest.raises(TypeError, match=r"X \(Broken of shape \(3, 4\)\) has a tocsr\(\) "
                                        r"method that failed \(no\)"):
        model.predict(Broken())
    with pytest.raises(TypeError, match=r"X.tocsr\(\) returned ndarray"):
        model.predict(NotSparse())
    one_d = sp.coo_array(np.array([0.0, 1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="X is a 1-D sparse array"):
        model.predict(one_d)


def test_what_cannot_take_sparse_input(tmp_path):
    X, y = _data()
    with pytest.raises(ValueError, match=r"X is sparse .* first layer is BatchNorm.*put a "
                                         r"Dense first"):
        _model(X.shape[1], layers=[fd.BatchNorm(), fd.Dense(3, activation="softmax")]
               ).predict(X)
    model = _model(X.shape[1])
    model.standardizer = fd.Standardizer()
    with pytest.raises(ValueError, match=r"X is sparse .*StandardScaler\(with_mean=False\)"):
        model.fit(X, y, verbose=0)
    with pytest.raises(ValueError, match="X is sparse .*Standardizer subtracts"):
        fd.Standardizer().fit(X)
    model = _model(X.shape[1])
    sp.save_npz(tmp_path / "X.npz", X)
    with pytest.raises(ValueError, match=r"\.npz file; out-of-core training streams dense"):
        model.fit(str(tmp_path / "X.npz"), y, verbose=0)
    with pytest.raises(NotImplementedError, match="distributed=True with sparse X"):
        model.fit(X, y, verbose=0, distributed=True)
    with pytest.raises(ValueError, match="augment=.* X is sparse"):
        model.fit(X, y, verbose=0, augment=fd.Augment(image_shape=(5, 8), flip=True))
    with pytest.raises(TypeError, match=r"X is sparse \(csr_matrix.*takes dense arrays"):
        fd.data.split(X, y)


def test_sparse_labels_are_densified_within_the_bound(monkeypatch):
    X, _ = _data()
    Y = sp.csr_matrix(np.random.default_rng(0).integers(0, 2, (X.shape[0], 3)))
    model = _model(X.shape[1], layers=[fd.Dense(5, activation="relu"),
                                       fd.Dense(3, activation="sigmoid")])
    ref = model.evaluate(X, Y.toarray())
    assert model.evaluate(X, Y) == ref
    monkeypatch.setattr(config, "SPARSE_DENSIFY_MAX_BYTES", 1000)
    with pytest.raises(ValueError, match=r"y is sparse .*config.SPARSE_DENSIFY_MAX_BYTES=1,000"):
        model.evaluate(X, Y)


def test_as_csr_conversions():
    """dtype converted, int32 indices kept (no copy), indptr int64, a row-sliced view made
    compact, bool data accepted."""
    X, _ = _data()
    X32 = X.astype(np.float32)
    c = as_csr("X", X32, np.float32, 40)
    assert c.data is not None and np.shares_memory(c.indices, X32.indices)
    assert c.indptr.dtype == np.int64 and c.data.dtype == np.float32
    c64 = as_csr("X", X32, np.float64, 40)
    assert c64.data.dtype == np.float64
    view = CSRRows(X.data, X.indices, X.indptr[10:21].astype(np.int64), (10, 40))
    np.testing.assert_array_equal(as_csr("X", view, np.float64, 40).toarray(),
                                  X[10:20].toarray())
    np.testing.assert_array_equal(as_csr("X", X > 0.5, np.float64).toarray(),
                                  (X > 0.5).toarray().astype(np.float64))


# --- fastdl.sklearn ------------------------------------------------------------------------------
sklearn = pytest.importorskip("sklearn")
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from fastdl.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_estimators_match_sklearn_on_sparse_input(fmt, solver):
    """Same random_state, no shuffling: scikit-learn's own MLP on the same sparse X, step for
    step (SGD) or iteration for iteration (L-BFGS), classifier and regressor."""
    X, y = _data()
    Xs = FORMATS[fmt](X)
    kw = dict(hidden_layer_sizes=(7,), random_state=0, shuffle=False, max_iter=8,
              batch_size=32, solver=solver, alpha=0.01, learning_rate_init=0.05)
    for ours, theirs, target in ((MLPClassifier, SkMLPClassifier, y),
                                 (MLPRegressor, SkMLPRegressor, y * 0.5 + X[:, 0].toarray()[:, 0])):
        a = _quiet(ours(**kw).fit, Xs, target)
        b = _quiet(theirs(**kw).fit, Xs, target)
        assert a.n_iter_ == b.n_iter_
        np.testing.assert_allclose(a.loss_, b.loss_, rtol=1e-8)
        for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_allclose(p, q, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(a.predict(Xs), b.predict(Xs), rtol=1e-7, atol=1e-9)


def test_estimator_sparse_equals_dense_input():
    """adam with shuffling, early stopping, class_weight, partial_fit: the sparse fit is the
    dense fit (same shuffles), and predict / predict_proba / score agree."""
    X, y = _data(m=300)
    kw = dict(hidden_layer_sizes=(9,), random_state=0, max_iter=6, batch_size=40,
              early_stopping=True, n_iter_no_change=100, class_weight="balanced")
    a = _quiet(MLPClassifier(**kw).fit, X, y)
    b = _quiet(MLPClassifier(**kw).fit, X.toarray(), y)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(a.validation_scores_, b.validation_scores_)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X.toarray()), atol=1e-12)
    assert a.score(X.tocsc(), y) == b.score(X.toarray(), y)
    c = MLPClassifier(hidden_layer_sizes=(9,), random_state=0)
    d = MLPClassifier(hidden_layer_sizes=(9,), random_state=0)
    for s in (0, 100, 200):
        c.partial_fit(X[s:s + 100], y[s:s + 100], classes=[0, 1, 2])
        d.partial_fit(X[s:s + 100].toarray(), y[s:s + 100], classes=[0, 1, 2])
    np.testing.assert_allclose(c.loss_curve_, d.loss_curve_, rtol=1e-10)


def test_tfidf_pipeline():
    """The text pipeline the issue names: TfidfVectorizer -> MLPClassifier, sparse end to end,
    the same result as the dense tf-idf matrix."""
    docs = ["cheap pills buy now", "meeting at noon tomorrow", "buy cheap watches now",
            "lunch meeting moved", "win money now cheap", "project meeting notes",
            "cheap cheap offer", "notes from the lunch"] * 4
    labels = [1, 0, 1, 0, 1, 0, 1, 0] * 4
    kw = dict(hidden_layer_sizes=(6,), random_state=0, max_iter=60, learning_rate_init=0.05)
    pipe = make_pipeline(TfidfVectorizer(), MLPClassifier(**kw))
    _quiet(pipe.fit, docs, labels)
    assert (pipe.predict(docs) == labels).all()
    Xt = TfidfVectorizer().fit_transform(docs)
    dense = _quiet(MLPClassifier(**kw).fit, Xt.toarray(), labels)
    np.testing.assert_allclose(pipe.predict_proba(docs), dense.predict_proba(Xt.toarray()),
                               atol=1e-12)


def test_estimator_errors_on_bad_sparse_input():
    X, y = _data()
    clf = _quiet(MLPClassifier((5,), max_iter=2, random_state=0).fit, X, y)
    bad = X.copy()
    bad.data[0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.predict(bad)
    with pytest.raises(ValueError, match="X has 39 features, but MLPClassifier is expecting 40"):
        clf.predict(X[:, :39])
