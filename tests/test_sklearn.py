"""fastdl.sklearn: scikit-learn's own estimator checks, value parity with
sklearn.neural_network on identical initial weights, and the fastdl extras."""

import pickle
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import (load_iris, make_multilabel_classification,  # noqa: E402
                              make_regression)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastdl as fd  # noqa: E402
from fastdl.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


# ------------------------------------------------------------------ scikit-learn's checks
def _expected_failures(est):
    reasons = []
    if est.batchnorm:
        reasons.append("batch norm normalizes with unweighted batch statistics, so a row of "
                       "weight 2 counts once in the batch mean/variance but a repeated row twice")
    if est.keep_prob != 1.0:
        reasons.append("dropout masks are drawn per row, so a repeated row gets a second, "
                       "independent mask while a weighted row keeps one")
    if est.dtype == "float32":
        reasons.append("float32: weighted sums and repeated rows round differently at ~1e-7 "
                       "relative, the check's own tolerance (rtol=1e-7)")
    if reasons:     # integer weights = repeated rows holds exactly only without these
        return {"check_sample_weight_equivalence_on_dense_data": "; ".join(reasons),
                "check_sample_weight_equivalence_on_sparse_data": "; ".join(reasons)}
    if isinstance(est, MLPClassifier) and est.solver == "lbfgs":
        return {"check_classifiers_multilabel_output_format_predict_proba":
                "L-BFGS drives the logistic outputs to saturation on this data, so some "
                "probabilities round to exactly 1.0 in float64 and the check wants them "
                "strictly below 1; scikit-learn's own MLPClassifier(solver='lbfgs') fails it "
                "the same way"}
    return {}


@parametrize_with_checks(
    [MLPClassifier(), MLPRegressor(), MLPClassifier(solver="lbfgs"),
     MLPRegressor(solver="sgd", batchnorm=True, keep_prob=0.9),
     MLPClassifier(solver="sgd", learning_rate="adaptive", batchnorm=True, keep_prob=(0.8,),
                   dtype="float32")],
    expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


@pytest.fixture(scope="module")
def regression():
    X, Y = make_regression(150, 4, n_targets=3, random_state=0)
    return X, Y / 100.0


def _both(cls_fd, cls_sk, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls_fd(**kw).fit(X, y), cls_sk(**kw).fit(X, y)


def _max_diff(a, b):
    return max(float(np.abs(p - q).max()) for p, q in zip(a, b))


# ------------------------------------------------------------------ parity with scikit-learn
@pytest.mark.parametrize("kw", [
    dict(solver="sgd", learning_rate="constant"),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2),
    dict(solver="sgd", learning_rate="adaptive", n_iter_no_change=2, tol=0.05),
    dict(solver="sgd", nesterovs_momentum=False, momentum=0.5),
    dict(solver="sgd", momentum=0.0, activation="logistic"),
])
def test_sgd_matches_sklearn_step_for_step(iris, kw):
    """Same random_state -> the same initial weights; without shuffling every SGD step
    (momentum, Nesterov, invscaling, adaptive, L2 alpha) is scikit-learn's to rounding."""
    X, y = iris
    kw = dict(dict(hidden_layer_sizes=(7, 5), random_state=0, shuffle=False, max_iter=25,
                   batch_size=32, alpha=0.01, learning_rate_init=0.05, activation="tanh"), **kw)
    a, b = _both(MLPClassifier, SkMLPClassifier, X, y, **kw)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-10
    assert _max_diff(a.intercepts_, b.intercepts_) < 1e-10
    assert a.t_ == b.t_
    assert a.best_loss_ == pytest.approx(b.best_loss_, rel=1e-10)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-10)


def test_adaptive_learning_rate_divides_by_five(iris):
    X, y = iris
    a, b = _both(MLPClassifier, SkMLPClassifier, X, y, solver="sgd", learning_rate="adaptive",
                 tol=10.0, n_iter_no_change=1, random_state=0, shuffle=False, max_iter=8,
                 learning_rate_init=0.1)
    # the counter must exceed n_iter_no_change=1: epochs 3, 5 and 7 each divide lr by 5
    assert a._lr == pytest.approx(0.1 / 5 ** 3)
    assert a._lr == pytest.approx(b._optimizer.learning_rate)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)


@pytest.mark.parametrize("target", ["binary", "multiclass", "multilabel", "reg1", "reg3"])
def test_first_loss_equals_sklearns_on_the_same_weights(iris, regression, target):
    """Full batch, one epoch: loss_ is the cost of the (identical) initial weights, so this
    checks the alpha scaling ``alpha/(2 n) ||W||^2`` and the data terms exactly."""
    X, y = iris
    cls_fd, cls_sk = MLPClassifier, SkMLPClassifier
    if target == "binary":
        y = (y == 1).astype(int)
    elif target == "multilabel":
        X, y = make_multilabel_classification(80, 5, n_classes=3, random_state=0)
    elif target.startswith("reg"):
        X, y = regression
        y = y[:, 0] if target == "reg1" else y
        cls_fd, cls_sk = MLPRegressor, SkMLPRegressor
    a, b = _both(cls_fd, cls_sk, X, y, hidden_layer_sizes=(6,), random_state=3, alpha=0.5,
                 solver="sgd", batch_size=X.shape[0], max_iter=1, shuffle=False)
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-12)
    assert a.out_activation_ == b.out_activation_
    assert a.n_outputs_ == b.n_outputs_ and a.n_layers_ == b.n_layers_ == 3


@pytest.mark.parametrize("cls", ["classifier", "regressor"])
def test_lbfgs_matches_sklearn(iris, regression, cls):
    if cls == "classifier":
        X, y = iris
        a, b = _both(MLPClassifier, SkMLPClassifier, X, y, solver="lbfgs", max_iter=40,
                     hidden_layer_sizes=(6,), random_state=1, alpha=0.01)
    else:
        X, y = regression
        a, b = _both(MLPRegressor, SkMLPRegressor, X, y, solver="lbfgs", max_iter=40,
                     hidden_layer_sizes=(6,), random_state=1, alpha=0.1)
    assert a.n_iter_ == b.n_iter_
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-8)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-6
    assert not hasattr(a, "loss_curve_")


def test_adam_close_to_sklearn(iris):
    """Adam differs only in where epsilon sits (docs/sklearn.md): close, not identical."""
    X, y = iris
    a, b = _both(MLPClassifier, SkMLPClassifier, X, y, hidden_layer_sizes=(8,), random_state=0,
                 shuffle=False, max_iter=30, learning_rate_init=0.01)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-3)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-2


# ------------------------------------------------------------------ convergence semantics
def test_tol_stops_training_without_warning(iris):
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(5,), tol=0.5, n_iter_no_change=3,
                            random_state=0, max_iter=100).fit(X, y)
    # the 1st epoch sets best_loss_; the next n_iter_no_change + 1 fail to beat it by tol
    assert clf.n_iter_ == 5 and len(clf.loss_curve_) == 5
    assert clf.best_loss_ == min(clf.loss_curve_)


def test_max_iter_warns(iris):
    X, y = iris
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3 and clf.t_ == 3 * X.shape[0]


def test_early_stopping_stratified_and_restores_best(iris):
    X, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(4,), early_stopping=True, validation_fraction=0.2,
                        n_iter_no_change=4, max_iter=60, random_state=0,
                        learning_rate_init=0.02).fit(X, y)
    assert clf.best_loss_ is None and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    Xtr, Ytr, (Xv, yv) = clf._validation_split(X, y, np.eye(3)[y],
                                               np.random.RandomState(0))
    assert Xv.shape[0] == 30 and Xtr.shape[0] == 120     # ceil(0.2 * 150)
    np.testing.assert_array_equal(np.bincount(yv), [10, 10, 10])     # stratified
    assert clf.t_ == clf.n_iter_ * 120
    # the weights kept are those of the best validation epoch, not the last one
    np.testing.assert_array_equal(clf.model_.get_weights()[0], clf._best_weights[0])
    with pytest.raises(ValueError, match="validation set is too small"):
        MLPClassifier(early_stopping=True, validation_fraction=0.01).fit(X[:20], y[:20])


def test_partial_fit_classes_and_counters(iris):
    X, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(5,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])     # y need not hold every class
    assert list(clf.classes_) == [0, 1, 2] and clf.out_activation_ == "softmax"
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 1 and clf.t_ == int((y < 2).sum()) + 150
    assert len(clf.loss_curve_) == 2
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'"):
        MLPClassifier(solver="lbfgs").partial_fit
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")


def test_partial_fit_continues_optimizer_state(iris):
    """Two partial_fit calls == one fit of two epochs (same batches: shuffle=False)."""
    X, y = iris
    kw = dict(hidden_layer_sizes=(5,), random_state=0, shuffle=False, max_iter=2)
    a = MLPClassifier(**kw)
    a.partial_fit(X, y, classes=[0, 1, 2])
    a.partial_fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        b = MLPClassifier(**kw).fit(X, y)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-12)
    assert _max_diff(a.coefs_, b.coefs_) == 0.0


def test_warm_start(iris):
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=3, warm_start=True,
                            random_state=0).fit(X, y)
        w = clf.coefs_[0].copy()
        clf.fit(X, y)
    assert len(clf.loss_curve_) == 6 and clf.t_ == 6 * 150 and clf.n_iter_ == 3
    assert not np.array_equal(w, clf.coefs_[0])
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 2], y[y < 2])
    with pytest.raises(ValueError, match=r"hidden_layer_sizes=\(7,\) differs from the fitted "
                                         r"network's \(\[5\]\)"):
        clf.set_params(hidden_layer_sizes=(7,)).fit(X, y)
    clf.set_params(warm_start=False).fit(X, y)          # a new network: allowed
    assert clf.coefs_[0].shape == (4, 7) and len(clf.loss_curve_) == 3


# ------------------------------------------------------------------ pickle, clone, search
def test_pickle_and_clone_roundtrip(iris):
    X, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(6,), batchnorm=True, keep_prob=0.9,
                        random_state=0, max_iter=5, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    blob = pickle.dumps(clf)
    assert b"numba" not in blob.lower()
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    # training continues identically (weights, BatchNorm statistics, Adam state, counters)
    back.partial_fit(X, y)
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.t_ == clf.t_
    c = clone(clf)
    assert c.get_params() == clf.get_params() and not hasattr(c, "coefs_")


def test_pipeline_and_searches_in_parallel(iris):
    X, y = iris
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), max_iter=40,
                                                         random_state=0))
    grid = {"mlpclassifier__alpha": [1e-4, 1e-1], "mlpclassifier__learning_rate_init":
            [0.01, 0.05]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g2 = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(X, y)
        g1 = GridSearchCV(pipe, grid, cv=2, n_jobs=1).fit(X, y)
        r2 = RandomizedSearchCV(pipe, grid, n_iter=2, cv=2, n_jobs=2, random_state=0).fit(X, y)
    np.testing.assert_allclose(g2.cv_results_["mean_test_score"],
                               g1.cv_results_["mean_test_score"])
    assert g2.best_score_ > 0.85 and r2.best_score_ > 0.5
    assert g2.best_estimator_.score(X, y) > 0.9


# ------------------------------------------------------------------ fastdl extras
def test_batchnorm_coefs_fold_inference(iris):
    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(6, 4), batchnorm=True, max_iter=10,
                            random_state=0, dtype="float64").fit(X, y)
    A = X
    for W, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1]):
        A = np.maximum(A @ W + b, 0)
    Z = A @ clf.coefs_[-1] + clf.intercepts_[-1]
    P = np.exp(Z - Z.max(1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), P / P.sum(1, keepdims=True), atol=1e-10)
    assert sum(isinstance(layer, fd.BatchNorm) for layer in clf.model_.layers) == 2


def test_keep_prob_per_layer_and_dtype(iris):
    X, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(6, 4), keep_prob=(0.5, 1.0), max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X.astype(np.float32), y)
        drops = [layer.keep_prob for layer in clf.model_.layers if isinstance(layer, fd.Dropout)]
        assert drops == [0.5] and clf.model_.dtype == np.float32
        assert clf.coefs_[0].dtype == np.float32 and clf.predict_proba(X).dtype == np.float32
        assert MLPClassifier(max_iter=1).fit(X, y).model_.dtype == np.float64       # auto
        assert MLPClassifier(max_iter=1, dtype="float32").fit(X, y).model_.dtype == np.float32
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(clf.predict_proba(X)))


@pytest.mark.parametrize("kw, match", [
    # scikit-learn's own parameter validation first, with its text (and exception class)
    (dict(alpha=-1.0), r"The 'alpha' parameter of MLPClassifier must be a float in the range "
                       r"\[0.0, inf\). Got -1.0 instead."),
    (dict(solver="newton"), r"The 'solver' parameter of MLPClassifier must be a str among"),
    (dict(n_iter_no_change=0), r"The 'n_iter_no_change' parameter of MLPClassifier must be"),
    (dict(hidden_layer_sizes=(3, 0)), r"hidden_layer_sizes must be > 0, got \[3, 0\]. "
                                      r"\(hidden_layer_sizes=\(3, 0\) is invalid"),
    # then fastdl's extras and limits
    (dict(momentum=1.0), r"momentum=1.0 is invalid; expected a real number in \[0.0, 1.0\)"),
    (dict(keep_prob=(0.5, 0.5)), r"keep_prob=\(0.5, 0.5\) has 2 entries; expected one per "),
    (dict(keep_prob=0.0), r"keep_prob=0.0 is invalid"),
    (dict(dtype="float16"), r"dtype='float16' is invalid"),
    (dict(backend="tpu"), r"backend='tpu' is not a known backend"),
])
def test_bad_parameters_named_in_errors(iris, kw, match):
    X, y = iris
    with pytest.raises(ValueError, match=match):
        MLPClassifier(**kw).fit(X, y)


def test_parameter_errors_are_sklearns_exception_class(iris):
    """Code catching scikit-learn's InvalidParameterError (or TypeError, which it also is)
    catches fastdl's."""
    from sklearn.utils._param_validation import InvalidParameterError
    with pytest.raises(InvalidParameterError):
        MLPClassifier(learning_rate="sometimes").fit(*iris)
    with pytest.raises(TypeError):
        MLPRegressor(loss="huber").fit(*iris)


def test_lbfgs_without_scipy_is_a_clear_error(iris, monkeypatch):
    X, y = iris
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ImportError, match="solver='lbfgs' needs SciPy"):
        MLPClassifier(solver="lbfgs").fit(X, y)


def test_binary_and_multilabel_outputs(iris):
    X, y = iris
    yb = np.where(y == 2, "yes", "no")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=50, random_state=0).fit(X, yb)
        assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
        P = clf.predict_proba(X)
        assert P.shape == (150, 2)
        np.testing.assert_allclose(P.sum(1), 1.0)
        np.testing.assert_array_equal(clf.predict(X), clf.classes_[(P[:, 1] >= 0.5).astype(int)])
        Xm, Ym = make_multilabel_classification(60, 5, n_classes=3, random_state=0)
        ml = MLPClassifier(hidden_layer_sizes=(6,), max_iter=50, random_state=0).fit(Xm, Ym)
    assert ml.out_activation_ == "logistic" and ml.predict(Xm).shape == (60, 3)
    np.testing.assert_array_equal(ml.predict(Xm), (ml.predict_proba(Xm) >= 0.5).astype(int))


def test_multioutput_sgd_regression_matches_sklearn(regression):
    """k = 3 outputs: fastdl's mse gradient is 2/k times scikit-learn's; the estimator scales
    lr and l2 so every step is still scikit-learn's."""
    X, Y = regression
    a, b = _both(MLPRegressor, SkMLPRegressor, X, Y, hidden_layer_sizes=(6,), random_state=1,
                 solver="sgd", shuffle=False, max_iter=15, batch_size=50, alpha=0.1,
                 learning_rate="invscaling", learning_rate_init=0.05)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-12
    assert _max_diff(a.intercepts_, b.intercepts_) < 1e-12
    # loss_ uses the epoch's mean ||W||^2 for the L2 part (per-batch values are not kept)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-3)
    assert a.predict(X).shape == (150, 3) and a.score(X, Y) == pytest.approx(b.score(X, Y))


def test_reference_backend_gives_the_same_fit(iris):
    X, y = iris
    kw = dict(hidden_layer_sizes=(6,), random_state=0, max_iter=5, keep_prob=0.8,
              batchnorm=True, batch_size=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = MLPClassifier(backend="cpu", **kw).fit(X, y)
        b = MLPClassifier(backend="numpy", **kw).fit(X, y)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), atol=1e-9)


def test_verbose_prints_sklearns_lines(iris, capsys):
    X, y = iris
    MLPClassifier(hidden_layer_sizes=(3,), max_iter=50, tol=10.0, n_iter_no_change=1,
                  verbose=True, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 3, loss = " in out
    assert "Training loss did not improve more than tol=10.000000 for 1 consecutive " \
           "epochs. Stopping." in out


# ------------------------------------------------------------------ sample_weight
@pytest.fixture(scope="module")
def weights():
    w = np.random.default_rng(0).random(150) * 2
    w[::7] = 0.0
    return w


def _both_weighted(cls_fd, cls_sk, X, y, w, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return cls_fd(**kw).fit(X, y, sample_weight=w), cls_sk(**kw).fit(X, y, sample_weight=w)


@pytest.mark.parametrize("kw", [
    dict(solver="sgd", learning_rate="constant"),
    dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2),
    dict(solver="sgd", momentum=0.0, activation="logistic"),
])
def test_sample_weight_sgd_matches_sklearn_step_for_step(iris, weights, kw):
    """scikit-learn's weighting (deltas times w, gradients and alpha divided by sum(w) of each
    batch): without shuffling every step is scikit-learn's to rounding, and so is score."""
    X, y = iris
    kw = dict(dict(hidden_layer_sizes=(7, 5), random_state=0, shuffle=False, max_iter=25,
                   batch_size=32, alpha=0.01, learning_rate_init=0.05, activation="tanh"), **kw)
    a, b = _both_weighted(MLPClassifier, SkMLPClassifier, X, y, weights, **kw)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-10
    assert _max_diff(a.intercepts_, b.intercepts_) < 1e-10
    assert a.score(X, y, sample_weight=weights) == pytest.approx(
        b.score(X, y, sample_weight=weights), rel=1e-12)
    unweighted = MLPClassifier(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        unweighted.fit(X, y)
    assert _max_diff(a.coefs_, unweighted.coefs_) > 1e-3      # the weights did something


def test_sample_weight_regressor_and_partial_fit_match_sklearn(regression, weights):
    X, Y = regression
    kw = dict(hidden_layer_sizes=(6,), random_state=1, solver="sgd", shuffle=False,
              max_iter=15, batch_size=50, alpha=0.1, learning_rate_init=0.05)
    a, b = _both_weighted(MLPRegressor, SkMLPRegressor, X, Y[:, 0], weights, **kw)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-12
    pa = MLPRegressor(**kw).partial_fit(X, Y, sample_weight=weights)
    pb = SkMLPRegressor(**kw).partial_fit(X, Y, sample_weight=weights)
    assert _max_diff(pa.coefs_, pb.coefs_) < 1e-12
    # k = 3 outputs: loss_'s L2 part uses the epoch's mean ||W||^2 (as without weights)
    assert pa.loss_ == pytest.approx(pb.loss_, rel=1e-3)


@pytest.mark.parametrize("cls", ["classifier", "regressor"])
def test_sample_weight_lbfgs_matches_sklearn(iris, regression, weights, cls):
    X, y = iris if cls == "classifier" else (regression[0], regression[1][:, 0])
    pair = (MLPClassifier, SkMLPClassifier) if cls == "classifier" else (MLPRegressor,
                                                                         SkMLPRegressor)
    a, b = _both_weighted(*pair, X, y, weights, solver="lbfgs", max_iter=40,
                          hidden_layer_sizes=(6,), random_state=1, alpha=0.01)
    assert a.n_iter_ == b.n_iter_
    assert a.loss_ == pytest.approx(b.loss_, rel=1e-8)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-6


def test_sample_weight_early_stopping_scores_with_validation_weights(iris, weights,
                                                                     monkeypatch):
    """The validation rows keep their weights: validation_scores_ is the weighted accuracy."""
    X, y = iris
    seen = {}
    split = MLPClassifier._validation_indices

    def spy(self, *args):
        seen["tr"], seen["va"] = out = split(self, *args)
        return out
    monkeypatch.setattr(MLPClassifier, "_validation_indices", spy)
    est = MLPClassifier(hidden_layer_sizes=(5,), solver="sgd", early_stopping=True,
                        validation_fraction=0.3, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y, sample_weight=weights)
    Xv, yv, wv = X[seen["va"]], y[seen["va"]], weights[seen["va"]]
    assert len(seen["tr"]) == 150 - 45 and not set(seen["tr"]) & set(seen["va"])
    assert est.validation_scores_[0] == pytest.approx(
        np.average(est.predict(Xv) == yv, weights=wv), rel=1e-12)
    assert est.validation_scores_[0] != pytest.approx(np.mean(est.predict(Xv) == yv))


@pytest.mark.parametrize("sw, exc, match", [
    (np.ones(149), ValueError, r"sample_weight.shape == \(149,\), expected \(150,\)"),
    (-np.ones(150), ValueError, r"sample_weight\[0\]=-1.0 is negative"),
    (np.zeros(150), ValueError, "at least one non-zero"),      # scikit-learn's own check
])
def test_sample_weight_errors(iris, sw, exc, match):
    with pytest.raises(exc, match=match):
        MLPClassifier(max_iter=1).fit(*iris, sample_weight=sw)
