"""fastdl.sklearn to the letter (issue 16): weights the user sets, warm-start bookkeeping,
divergence under early stopping, scikit-learn's error texts, loss="poisson", and the
extensions class_weight and validation_loss_curve_. Values are checked against
sklearn.neural_network run on the same weights and batches (shuffle=False)."""

import re
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkMLPRegressor  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

from fastdl.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return (X - X.mean(0)) / X.std(0), y


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 3))
    return X, rng.poisson(np.exp(X @ [0.3, -0.4, 0.2] + 0.7)).astype(np.float64)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*a, **kw)


def _max_diff(a, b):
    return max(float(np.abs(np.asarray(p) - np.asarray(q)).max()) for p, q in zip(a, b))


SGD = dict(solver="sgd", shuffle=False, random_state=0, hidden_layer_sizes=(5,),
           learning_rate_init=0.05, batch_size=40, alpha=0.01, activation="tanh")


# ------------------------------------------------------------------ weights the user sets
def test_sklearns_worked_example_with_assigned_weights():
    """scikit-learn's test_fit: weights assigned to an unfitted estimator, one partial_fit,
    the hand-computed values (and scikit-learn's own result on the same setup)."""
    X, y = np.array([[0.6, 0.8, 0.7]]), np.array([0])
    kw = dict(solver="sgd", learning_rate_init=0.1, alpha=0.1, activation="logistic",
              random_state=1, max_iter=1, hidden_layer_sizes=2, momentum=0)
    fits = []
    for cls in (MLPClassifier, SkMLPClassifier):
        mlp = cls(**kw)
        mlp.coefs_ = [np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0]]), np.array([[0.1], [0.2]])]
        mlp.intercepts_ = [np.array([0.1, 0.1]), np.array([1.0])]
        if cls is SkMLPClassifier:      # scikit-learn needs its private state set by hand too
            mlp.n_outputs_, mlp.n_layers_, mlp.n_iter_, mlp.t_ = 1, 3, 0, 0
            mlp.out_activation_, mlp.best_loss_, mlp.loss_curve_ = "logistic", np.inf, []
            mlp._no_improvement_count, mlp.n_features_in_ = 0, 3
        mlp.partial_fit(X, y, classes=[0, 1])
        fits.append(mlp)
    mlp = fits[0]
    np.testing.assert_almost_equal(mlp.coefs_[0], [[0.098, 0.195756], [0.2956664, 0.096008],
                                                   [0.4939998, -0.002244]], decimal=3)
    np.testing.assert_almost_equal(mlp.coefs_[1], [[0.04706], [0.154089]], decimal=3)
    np.testing.assert_almost_equal(mlp.intercepts_[0], [0.098333, 0.09626], decimal=3)
    np.testing.assert_almost_equal(mlp.intercepts_[1], 0.9235, decimal=3)
    np.testing.assert_almost_equal(mlp.predict_proba(X)[0, 1], 0.739, decimal=3)
    assert _max_diff(mlp.coefs_, fits[1].coefs_) < 1e-14
    assert _max_diff(mlp.intercepts_, fits[1].intercepts_) < 1e-14


@pytest.mark.parametrize("how", ["assign list", "replace entry", "edit in place"])
@pytest.mark.parametrize("route", ["partial_fit", "warm_start"])
def test_set_weights_continue_like_sklearn(iris, how, route):
    """After a fit, weights set in any of scikit-learn's ways are where training continues
    (and what predict uses), step for step as scikit-learn."""
    X, y = iris
    kw = dict(SGD, max_iter=3, warm_start=route == "warm_start")
    pair = [_quiet(cls(**kw).fit, X, y) for cls in (MLPClassifier, SkMLPClassifier)]
    rng = np.random.default_rng(1)
    new0 = rng.standard_normal((4, 5)) * 0.3
    new_b = rng.standard_normal(3) * 0.1
    for est in pair:
        if how == "assign list":
            est.coefs_ = [new0.copy(), est.coefs_[1].copy()]
            est.intercepts_ = [est.intercepts_[0].copy(), new_b.copy()]
        elif how == "replace entry":
            est.coefs_[0] = new0.copy()
            est.intercepts_[1] = new_b.copy()
        else:
            est.coefs_[0][...] = new0
            est.intercepts_[1][...] = new_b
    np.testing.assert_allclose(pair[0].predict_proba(X), pair[1].predict_proba(X), atol=1e-14)
    for est in pair:
        if route == "partial_fit":
            est.partial_fit(X, y)
        else:
            _quiet(est.fit, X, y)
    a, b = pair
    assert _max_diff(a.coefs_, b.coefs_) < 1e-12 and _max_diff(a.intercepts_, b.intercepts_) \
        < 1e-12
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    assert (a.n_iter_, a.t_) == (b.n_iter_, b.t_)
    assert a.best_loss_ == pytest.approx(b.best_loss_, rel=1e-12)


def test_coefs_are_views_and_batchnorm_takes_assigned_weights(iris):
    X, y = iris
    clf = _quiet(MLPClassifier((5,), max_iter=2, random_state=0).fit, X, y)
    assert np.shares_memory(clf.coefs_[0], clf.model_.params.data)
    bn = _quiet(MLPClassifier((6,), batchnorm=True, max_iter=3, random_state=0).fit, X, y)
    rng = np.random.default_rng(0)
    bn.coefs_ = [rng.standard_normal((4, 6)), rng.standard_normal((6, 3))]
    bn.intercepts_[0] = rng.standard_normal(6)          # an entry of the handed-out list
    Z = np.maximum(X @ bn.coefs_[0] + bn.intercepts_[0], 0) @ bn.coefs_[1] + bn.intercepts_[1]
    P = np.exp(Z - Z.max(1, keepdims=True))
    np.testing.assert_allclose(bn.predict_proba(X), P / P.sum(1, keepdims=True), atol=1e-12)
    bn.coefs_[1][0, 0] += 1.0                           # an in-place edit of the copy
    Z2 = Z + np.maximum(X @ bn.coefs_[0] + bn.intercepts_[0], 0)[:, :1] * [[1, 0, 0]]
    P2 = np.exp(Z2 - Z2.max(1, keepdims=True))
    np.testing.assert_allclose(bn.predict_proba(X), P2 / P2.sum(1, keepdims=True), atol=1e-12)


@pytest.mark.parametrize("coefs, match", [
    (lambda c: c[:1], r"coefs_ must be a list of 2 arrays, one per layer \(network 4-5-3\)"),
    (lambda c: [c[0].T, c[1]], r"coefs_\[0\] has shape \(5, 4\) \(dtype float64\); expected "
                               r"numbers of shape \(4, 5\)"),
    (lambda c: [c[0], np.full((5, 3), np.nan)], r"coefs_\[1\] contains NaN"),
])
def test_bad_assigned_weights_named(iris, coefs, match):
    X, y = iris
    clf = _quiet(MLPClassifier((5,), max_iter=2, random_state=0).fit, X, y)
    clf.coefs_ = coefs(clf.coefs_)
    with pytest.raises(ValueError, match=match):
        clf.predict(X)


def test_adaptive_learning_rate_state_across_partial_fit(iris):
    """The adaptive schedule's learning rate and no-improvement counter carry across
    partial_fit calls (and a pickle round trip) exactly as in scikit-learn."""
    import pickle
    X, y = iris
    kw = dict(SGD, learning_rate="adaptive", tol=10.0, n_iter_no_change=1)
    a, b = MLPClassifier(**kw), SkMLPClassifier(**kw)
    for i in range(7):
        for est in (a, b):
            est.partial_fit(X, y, classes=[0, 1, 2])
        if i == 3:
            a = pickle.loads(pickle.dumps(a))
        assert a._lr == pytest.approx(b._optimizer.learning_rate, rel=1e-12)
        assert a._no_improvement_count == b._no_improvement_count
    assert a._lr < 0.05 / 5 ** 2
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-12


def test_warm_start_bookkeeping_like_sklearn(iris):
    """n_iter_ counts the last call, t_ and loss_curve_ accumulate, best_loss_ and the
    no-improvement counter persist, and a best_loss_ the user sets is used."""
    X, y = iris
    kw = dict(SGD, warm_start=True, max_iter=4, tol=1e-3, n_iter_no_change=2)
    pair = [_quiet(cls(**kw).fit, X, y) for cls in (MLPClassifier, SkMLPClassifier)]
    for est in pair:
        est.best_loss_ = 0.0         # nothing can beat it: the counter runs out in 3 epochs
        _quiet(est.fit, X, y)
    a, b = pair
    assert (a.n_iter_, a.t_, len(a.loss_curve_)) == (b.n_iter_, b.t_, len(b.loss_curve_)) \
        == (3, 7 * 150, 7)
    assert a._no_improvement_count == b._no_improvement_count and a.best_loss_ == 0.0


# ------------------------------------------------------------------ divergence
def test_diverging_early_stopping_keeps_best_weights():
    """scikit-learn's test_mlp_diverging_loss: no error, the last validation score is a NaN
    float; fastdl also keeps the best epoch's (finite) weights and says so."""
    X, y = load_iris(return_X_y=True)
    kw = dict(hidden_layer_sizes=100, activation="identity", solver="sgd", alpha=0.0001,
              learning_rate="constant", learning_rate_init=1, shuffle=True, max_iter=20,
              early_stopping=True, n_iter_no_change=10, random_state=0)
    with pytest.warns(ConvergenceWarning, match="Training diverged at iteration"):
        mlp = MLPRegressor(**kw).fit(X, y)
    assert str(mlp.validation_scores_[-1]) == str(np.nan)
    assert isinstance(mlp.validation_scores_[-1], float)
    assert all(np.isfinite(c).all() for c in mlp.coefs_)
    assert np.isfinite(mlp.predict(X)).all()
    assert len(mlp.validation_loss_curve_) == len(mlp.validation_scores_) == mlp.n_iter_
    best = int(np.nanargmax(mlp.validation_scores_))
    assert mlp.best_validation_score_ == mlp.validation_scores_[best]


def test_diverging_plain_fit_raises_sklearns_error():
    """scikit-learn's test_nonfinite_params: the same ValueError text."""
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(size=10)
    msg = ("Solver produced non-finite parameter weights. The input data may contain large"
           " values and need to be preprocessed.")
    with pytest.raises(ValueError, match=re.escape(msg)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPRegressor().fit(X, y)


# ------------------------------------------------------------------ scikit-learn's error texts
def test_stratified_split_one_member_class_error_is_sklearns():
    """scikit-learn's test_early_stopping_stratified, its regex, and the exact text of
    scikit-learn's own estimator on the same data."""
    X = [[1, 2], [2, 3], [3, 4], [4, 5]]
    y = [0, 0, 0, 1]
    with pytest.raises(ValueError) as sk:
        SkMLPClassifier(early_stopping=True).fit(X, y)
    with pytest.raises(ValueError, match=r"The least populated classes in y have only 1 member"
                                         r".*Classes with too few members are: \['True'\]") as e:
        MLPClassifier(early_stopping=True).fit(X, y)
    assert str(e.value) == str(sk.value)


def test_partial_fit_and_lbfgs_texts_are_sklearns(iris):
    with pytest.raises(AttributeError) as e:
        MLPClassifier(solver="lbfgs").partial_fit
    assert "partial_fit is only available for stochastic optimizers. lbfgs is not " \
           "stochastic." in str(e.value.__cause__)
    mlp = MLPClassifier(early_stopping=True, random_state=0, max_iter=3)
    _quiet(mlp.fit, *iris)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        mlp.partial_fit(*iris)


# ------------------------------------------------------------------ loss="poisson"
def test_poisson_sgd_step_for_step_like_sklearn(counts):
    X, y = counts
    kw = dict(SGD, loss="poisson", max_iter=12, learning_rate_init=0.01)
    a, b = (_quiet(cls(**kw).fit, X, y) for cls in (MLPRegressor, SkMLPRegressor))
    assert a.out_activation_ == b.out_activation_ == "exp"
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-12
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-10)
    assert a.score(X, y) == pytest.approx(b.score(X, y), rel=1e-10)
    pa = MLPRegressor(**kw).partial_fit(X, np.c_[y, y + 1], sample_weight=X[:, 0] ** 2)
    pb = SkMLPRegressor(**kw).partial_fit(X, np.c_[y, y + 1], sample_weight=X[:, 0] ** 2)
    assert pa.loss_ == pytest.approx(pb.loss_, rel=1e-10)
    assert _max_diff(pa.coefs_, pb.coefs_) < 1e-12


def test_poisson_lbfgs_and_glm_equivalence(counts):
    """scikit-learn's test_mlp_vs_poisson_glm_equivalent, and lbfgs against scikit-learn."""
    from sklearn.linear_model import PoissonRegressor
    rng = np.random.default_rng(0)
    X = np.linspace(0, 1, 100)
    y = rng.poisson(np.exp(X + 1))
    X = X.reshape(100, -1)
    glm = PoissonRegressor(alpha=0, tol=1e-7).fit(X, y)
    mlp = MLPRegressor(loss="poisson", hidden_layer_sizes=(1,), activation="identity",
                       alpha=0, solver="lbfgs", tol=1e-7,
                       random_state=np.random.RandomState(1)).fit(X, y)
    np.testing.assert_allclose(mlp.predict(X), glm.predict(X), rtol=1e-4)
    X, y = counts
    kw = dict(loss="poisson", solver="lbfgs", max_iter=30, hidden_layer_sizes=(4,),
              random_state=1, alpha=0.01)
    a, b = (_quiet(cls(**kw).fit, X, y) for cls in (MLPRegressor, SkMLPRegressor))
    assert a.n_iter_ == b.n_iter_ and a.loss_ == pytest.approx(b.loss_, rel=1e-8)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-6


def test_poisson_errors(counts):
    X, y = counts
    with pytest.raises(ValueError, match=r"y has a value -1.0 < 0; loss='poisson' needs counts"):
        MLPRegressor(loss="poisson").fit(X, np.r_[-1.0, y[1:]])
    reg = _quiet(MLPRegressor(max_iter=2, warm_start=True).fit, X, y)
    with pytest.raises(ValueError, match="loss='poisson' differs from the fitted network's"):
        reg.set_params(loss="poisson").fit(X, y)


# ------------------------------------------------------------------ class_weight
@pytest.mark.parametrize("cw", ["balanced", {0: 3.0, 2: 0.5}])
def test_class_weight_is_sample_weight_times_class_weight(iris, cw):
    """class_weight multiplies sample_weight row by row: the fit equals scikit-learn's MLP
    (which has no class_weight) given those products as sample_weight, step for step."""
    X, y = iris
    X, y = X[20:], y[20:]           # unequal class counts: "balanced" is not all ones
    sw = np.random.default_rng(0).random(len(y)) + 0.5
    product = sw * compute_sample_weight(cw, y)
    kw = dict(SGD, max_iter=6)
    a = _quiet(MLPClassifier(class_weight=cw, **kw).fit, X, y, sample_weight=sw)
    b = _quiet(SkMLPClassifier(**kw).fit, X, y, sample_weight=product)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=1e-10)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-12
    plain = _quiet(MLPClassifier(**kw).fit, X, y, sample_weight=sw)
    assert _max_diff(a.coefs_, plain.coefs_) > 1e-4


def test_class_weight_string_labels_and_partial_fit(iris):
    X, y = iris
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    kw = dict(SGD, max_iter=1)
    a = MLPClassifier(class_weight={"virginica": 2.0}, **kw)
    a.partial_fit(X, labels, classes=labels)
    b = SkMLPClassifier(**kw).partial_fit(X, labels, sample_weight=np.where(
        labels == "virginica", 2.0, 1.0), classes=labels)
    assert _max_diff(a.coefs_, b.coefs_) < 1e-12


@pytest.mark.parametrize("cw, match", [
    ({0: -1.0}, r"class_weight\[0\]=-1.0 is invalid; expected a finite number >= 0"),
    ({0: np.nan}, r"class_weight\[0\]=nan is invalid"),
    ({7: 1.0}, r"class_weight has a weight for 7, which is not a class of y; classes_ = "
               r"\[0, 1, 2\]"),
    ("auto", r"class_weight='auto' is invalid; expected None, 'balanced' or a dict"),
    ({0: 0.0, 1: 0.0, 2: 0.0}, r"gives every example weight 0"),
])
def test_class_weight_errors(iris, cw, match):
    with pytest.raises(ValueError, match=match):
        MLPClassifier(class_weight=cw, max_iter=1).fit(*iris)


def test_class_weight_balanced_in_partial_fit_and_multilabel_are_errors(iris):
    X, y = iris
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported for "
                                         "partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    Y = np.c_[y == 0, y == 1].astype(int)
    with pytest.raises(ValueError, match="not supported for multilabel targets"):
        MLPClassifier(class_weight={0: 1.0}).fit(X, Y)


# ------------------------------------------------------------------ validation_loss_curve_
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_validation_loss_curve(iris, counts, monkeypatch, kind):
    """One entry per epoch beside validation_scores_; after one epoch it is scikit-learn's
    loss (log-loss, or half squared error) of the kept weights on the validation rows,
    weighted by their sample weights; None without early stopping."""
    from sklearn.metrics import log_loss
    cls = MLPClassifier if kind == "classifier" else MLPRegressor
    X, y = iris if kind == "classifier" else counts
    w = np.random.default_rng(0).random(len(y)) + 0.2
    seen = {}
    split = cls._validation_indices

    def spy(self, *args):
        out = split(self, *args)
        seen["va"] = out[1]
        return out
    monkeypatch.setattr(cls, "_validation_indices", spy)
    est = _quiet(cls(hidden_layer_sizes=(5,), early_stopping=True, max_iter=1, random_state=0,
                     validation_fraction=0.3).fit, X, y, sample_weight=w)
    va = seen["va"]
    if kind == "classifier":
        want = log_loss(y[va], est.predict_proba(X[va]), sample_weight=w[va])
    else:
        want = 0.5 * np.average((est.predict(X[va]) - y[va]) ** 2, weights=w[va])
    assert len(est.validation_loss_curve_) == len(est.validation_scores_) == 1
    assert est.validation_loss_curve_[0] == pytest.approx(want, rel=1e-9)
    est = _quiet(cls(hidden_layer_sizes=(5,), early_stopping=True, max_iter=5,
                     random_state=0).fit, X, y)
    assert len(est.validation_loss_curve_) == len(est.validation_scores_) == est.n_iter_
    assert _quiet(cls(max_iter=1).fit, X, y).validation_loss_curve_ is None


def test_replacing_the_same_entry_twice_is_noticed(iris):
    """Replacing an entry of the handed-out list frees the original array; a later array
    must not pass for it (the estimator keeps the originals, so ids cannot be reused)."""
    X, y = iris
    clf = _quiet(MLPClassifier((5,), max_iter=2, random_state=0).fit, X, y)
    for scale in (0.5, 2.0, 3.0):
        clf.coefs_[0] = clf.model_.get_weights()[0].T * scale
        np.testing.assert_allclose(clf.model_.get_weights()[0].T, clf.coefs_[0] / scale)
        clf.predict(X[:1])                      # loads the assigned array
        np.testing.assert_allclose(clf.model_.get_weights()[0].T, clf.coefs_[0])


def test_pickled_estimator_hands_out_views_of_its_new_model(iris):
    import pickle
    X, y = iris
    clf = _quiet(MLPClassifier((5,), max_iter=2, random_state=0).fit, X, y)
    clf.coefs_[1][...] = 0.0                    # an in-place edit travels with the pickle
    back = pickle.loads(pickle.dumps(clf))
    assert np.shares_memory(back.coefs_[0], back.model_.params.data)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    b = clf.intercepts_[1]                      # zero output weights: softmax(b) everywhere
    np.testing.assert_allclose(back.predict_proba(X), np.tile(np.exp(b) / np.exp(b).sum(),
                                                              (150, 1)), atol=1e-14)
