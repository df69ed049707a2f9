"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's estimators, trained by fastdl.

The training semantics are those of ``sklearn.neural_network`` (scikit-learn 1.9,
``_multilayer_perceptron.py``), reimplemented on fastdl's public pieces: a ``fd.Sequential``
(``model_``), ``fd.optim`` optimizers, ``Sequential.fit`` with a callback doing scikit-learn's
per-iteration bookkeeping (``_solvers.StochasticEpochs``), ``fd.data.split`` for the
early-stopping split, and SciPy's L-BFGS-B on the flat loss and gradient.

Reference: scikit-learn User Guide, "Neural network models (supervised)", section 1.17, and
Kingma & Ba (2015) for Adam, Glorot & Bengio (2010) for the initialization.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.sparse import issparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import (_check_sample_weight, check_is_fitted, column_or_1d,
                                      validate_data)

from .._validation import as_sample_weight
from ..data.split import split
from ..nn import Dense
from ..optim import SGD, Adam, Momentum
from ..train.loop import DivergenceError
from ._network import (build_model, coef_views, export_coefs, import_coefs, init_sklearn,
                       make_optimizer, model_from_state, model_state)
from ._params import check_params, keep_probs
from ._solvers import GradScale, StochasticEpochs, batch_inv_weight, fit_lbfgs

_STOCHASTIC = ("sgd", "adam")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: predict's lean input check applies up to this many rows (beyond, validation is cheap
#: next to the forward pass)
_SMALL_ROWS = 64
_OPTIMIZERS = {"SGD": SGD, "Momentum": Momentum, "Adam": Adam}
# scikit-learn's text first: code that matches on it keeps working
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large "
               "values and need to be preprocessed. (Scale X, e.g. with StandardScaler, or "
               "lower learning_rate_init.)")


def _check_stratifiable(labels, n_train, n_val):
    """scikit-learn's errors for an early-stopping split it cannot stratify (its
    ``StratifiedShuffleSplit`` on the binarized single-column y, so the classes print as
    'False'/'True'), raised with its text so code matching on it keeps working. scikit-learn
    stratifies only single-output targets; fastdl stratifies multiclass targets too (a class
    of one member then simply lands on one side), so these are raised for binary y only."""
    counts = np.bincount(labels, minlength=2)
    names = np.array(["False", "True"])
    present = counts > 0
    if counts[present].min() < 2:
        raise ValueError("The least populated classes in y have only 1 member, which is too "
                         "few. The minimum number of groups for any class cannot be less than "
                         f"2. Classes with too few members are: "
                         f"{names[present & (counts < 2)].tolist()}")
    n_classes = int(present.sum())
    if n_train < n_classes:
        raise ValueError(f"The train_size = {n_train} should be greater or equal to the number "
                         f"of classes = {n_classes}")
    if n_val < n_classes:
        raise ValueError(f"The test_size = {n_val} should be greater or equal to the number of "
                         f"classes = {n_classes}")


class _BaseMLP(BaseEstimator):
    """Shared machinery; see :class:`MLPClassifier` for the parameters."""

    _regression = False

    def __init__(self, hidden_layer_sizes, activation, solver, alpha, batch_size, learning_rate,
                 learning_rate_init, power_t, max_iter, shuffle, random_state, tol, verbose,
                 warm_start, momentum, nesterovs_momentum, early_stopping, validation_fraction,
                 beta_1, beta_2, epsilon, n_iter_no_change, max_fun, keep_prob, batchnorm,
                 backend, dtype, compute_dtype, allow_slow):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.keep_prob = keep_prob
        self.batchnorm = batchnorm
        self.backend = backend
        self.dtype = dtype
        self.compute_dtype = compute_dtype
        self.allow_slow = allow_slow

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, sample_weight=None):
        """Fit the network to ``X`` (n_samples, n_features) and ``y``; returns self.

        Stochastic solvers run up to ``max_iter`` epochs (scikit-learn's "iterations") and stop
        early after ``n_iter_no_change`` epochs without an improvement of ``tol``; ``lbfgs`` runs
        full-batch L-BFGS-B. With ``warm_start=True`` a fitted network continues from its
        weights (a new optimizer, as scikit-learn).

        ``sample_weight`` (n_samples,), finite and >= 0, not all zero: scikit-learn's weighting
        (``_multilayer_perceptron._backprop``): per batch ``sum_i w_i l_i / sum_i w_i +
        alpha/(2 sum_i w_i) ||W||^2``, so the batch size m becomes the batch's weight sum
        (``Sequential.fit``). With early stopping the validation rows keep their weights and
        are scored with them."""
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _fit(self, X, y, incremental, sample_weight=None):
        sizes = check_params(self)
        first = not hasattr(self, "model_") or (not self.warm_start and not incremental)
        # weights assigned to an unfitted estimator (scikit-learn's live coefs_): continue from
        # them where scikit-learn would (partial_fit, or fit with warm_start=True)
        user_start = (not hasattr(self, "model_") and (self.warm_start or incremental)
                      and "coefs_" in vars(self) and "intercepts_" in vars(self))
        X, y, Y = self._validate_input(X, y, incremental, reset=first)
        if sample_weight is not None:   # scikit-learn's conversion and shape check, then fastdl's
            sample_weight = as_sample_weight(                   # finite, >= 0, not all zero
                "sample_weight", _check_sample_weight(sample_weight, X, dtype=X.dtype),
                X.shape[0])
        sample_weight = self._with_class_weight(y, sample_weight, incremental)
        if self.batchnorm and (X.shape[0] < 2 or (self.solver in _STOCHASTIC
                                                 and self.batch_size != "auto"
                                                 and self.batch_size < 2)):
            raise ValueError(f"batchnorm=True needs at least 2 samples per batch to compute "
                             f"batch statistics; got n_samples={X.shape[0]} (1 sample is too "
                             f"few), batch_size={self.batch_size!r}")
        rng = check_random_state(self.random_state)
        if first:
            kept = {k: vars(self)[k] for k in ("t_", "best_loss_", "loss_curve_")
                    if user_start and k in vars(self)}
            self._initialize(X, Y, sizes, rng)
            if user_start:
                self._take_user_weights(force=True)
                self.__dict__.update(kept)      # the user's bookkeeping, as scikit-learn uses it
        else:
            self._check_same_network(sizes, Y)
            self._take_user_weights()
        self._scale = GradScale(self._regression and self.loss == "squared_error",
                                self.n_outputs_, self.alpha)
        model = self.model_
        if issparse(X):         # stays sparse: model_.fit / _X take CSR rows (no dense copy)
            X = X.astype(model.dtype, copy=False)
        else:
            X = np.ascontiguousarray(X, dtype=model.dtype)
        Y = np.ascontiguousarray(Y, dtype=model.dtype)
        if self.solver in _STOCHASTIC:
            self._fit_stochastic(X, y, Y, incremental, rng, sample_weight)
        else:
            try:
                self.n_iter_, self.loss_ = fit_lbfgs(self, model, self._model_input(X), Y,
                                                     sample_weight)
            except DivergenceError as e:
                raise ValueError(_NON_FINITE) from e
        self._export_coefs()
        if not all(np.isfinite(a).all() for a in self.coefs_ + self.intercepts_):
            raise ValueError(_NON_FINITE)
        return self

    def _with_class_weight(self, y, sample_weight, incremental):
        """``sample_weight`` times the per-row ``class_weight`` (classifier; None: unchanged)."""
        return sample_weight

    # ------------------------------------------------------------------ coefs_ / intercepts_
    def _export_coefs(self):
        """Set ``coefs_``/``intercepts_`` from ``model_``: views of its parameters where
        possible (editing them in place edits the network, as in scikit-learn), else copies;
        remembers what was handed out, so that a list or array the user puts in their place,
        or an edited copy, is noticed (:meth:`_take_user_weights`)."""
        views = coef_views(self.model_)
        coefs, intercepts = views if views is not None else export_coefs(self.model_)
        self.coefs_, self.intercepts_ = coefs, intercepts
        snapshot = None if views is not None else ([a.copy() for a in coefs],
                                                   [a.copy() for a in intercepts])
        # the arrays themselves are kept (handed[5]): while they live, no other object can
        # take their ids, so comparing ids is an identity check even after the user replaced
        # entries of the very list handed out
        self._handed_out = (coefs, [id(a) for a in coefs], intercepts,
                            [id(a) for a in intercepts], snapshot,
                            (tuple(coefs), tuple(intercepts)))

    def _take_user_weights(self, force=False):
        """Load ``coefs_``/``intercepts_`` into ``model_`` when the user replaced them (or an
        entry), or edited the copies handed out with batch norm or on a GPU; a no-op (identity
        checks only) when they are the views :meth:`_export_coefs` handed out."""
        handed = getattr(self, "_handed_out", None)
        coefs, intercepts = vars(self).get("coefs_"), vars(self).get("intercepts_")
        if not force and handed is not None:
            # the lists and their entries are the objects handed out (see _export_coefs)
            same = (coefs is handed[0] and intercepts is handed[2]
                    and list(map(id, coefs)) == handed[1]
                    and list(map(id, intercepts)) == handed[3])
            if same and (handed[4] is None or (
                    all(np.array_equal(a, b) for a, b in zip(coefs, handed[4][0]))
                    and all(np.array_equal(a, b) for a, b in zip(intercepts, handed[4][1])))):
                return
        import_coefs(self.model_, *self._checked_user_weights(coefs, intercepts))
        self._export_coefs()

    def _checked_user_weights(self, coefs, intercepts):
        """The user's coefs_/intercepts_ as float64 arrays of the fitted network's shapes."""
        want = [(layer.input_dim, layer.units) for layer in self.model_.layers
                if isinstance(layer, Dense)]
        for name, arrays in (("coefs_", coefs), ("intercepts_", intercepts)):
            if not isinstance(arrays, (list, tuple)) or len(arrays) != len(want):
                raise ValueError(f"{name} must be a list of {len(want)} arrays, one per layer "
                                 f"(network {self.n_features_in_}-"
                                 f"{'-'.join(str(u) for _, u in want)}); got {arrays!r:.80}")
        out = ([], [])
        for i, ((fan_in, fan_out), c, b) in enumerate(zip(want, coefs, intercepts)):
            for name, a, shape, dest in ((f"coefs_[{i}]", c, (fan_in, fan_out), out[0]),
                                         (f"intercepts_[{i}]", b, (fan_out,), out[1])):
                arr = np.asarray(a)
                if arr.shape != shape or not np.issubdtype(arr.dtype, np.number):
                    raise ValueError(f"{name} has shape {arr.shape} (dtype {arr.dtype}); "
                                     f"expected numbers of shape {shape} (scikit-learn's "
                                     "(fan_in, fan_out) layout)")
                arr = arr.astype(np.float64)
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name} contains NaN or infinite values; expected finite "
                                     "weights")
                dest.append(arr)
        return out

    def _architecture(self, sizes):
        return (list(sizes), self.activation, bool(self.batchnorm),
                keep_probs(self.keep_prob, len(sizes)), self.backend, self.dtype,
                self.compute_dtype)

    def _check_same_network(self, sizes, Y):
        """warm_start / partial_fit continue the fitted network: its shape must not change."""
        if Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {Y.shape[1]} output(s); the fitted network has "
                             f"n_outputs_={self.n_outputs_} (fit anew with warm_start=False)")
        names = ("hidden_layer_sizes", "activation", "batchnorm", "keep_prob", "backend",
                 "dtype", "compute_dtype")
        for name, now, then in zip(names, self._architecture(sizes), self._fitted_architecture):
            if now != then:
                raise ValueError(f"{name}={getattr(self, name)!r} differs from the fitted "
                                 f"network's ({then!r}); warm_start and partial_fit continue "
                                 "that network: fit anew with warm_start=False to change it")

    def _initialize(self, X, Y, sizes, rng):
        """A new network with scikit-learn's initial weights (same ``random_state``, same
        weights) and fresh training state."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = Y.shape[1]
        self.n_layers_ = len(sizes) + 2
        self.out_activation_ = self._out_activation()
        dtype = X.dtype if self.dtype == "auto" else np.dtype(self.dtype)
        if self.dtype == "auto" and self.compute_dtype == "bfloat16":
            dtype = np.dtype(np.float32)    # bfloat16 compute keeps float32 master weights
        self._fitted_architecture = self._architecture(sizes)
        if hasattr(self, "_handed_out"):
            del self._handed_out
        self.model_ = build_model(sizes, X.shape[1], self.n_outputs_, self.activation,
                                  self.out_activation_, keep_probs(self.keep_prob, len(sizes)),
                                  self.batchnorm, dtype, 0, self.backend,
                                  self.compute_dtype, self.allow_slow)
        init_sklearn(self.model_, self.activation, rng)
        # dropout masks and shuffles: fastdl's counter-based streams from one seed
        self.model_.seed = int(rng.randint(np.iinfo(np.int32).max))
        if hasattr(self, "_optimizer"):
            del self._optimizer
        if self.solver in _STOCHASTIC:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                # the weights early stopping returns to (a copy of the parameters: only then)
                self._best_weights = self.model_.get_weights()
                self.validation_scores_ = []
                self.validation_loss_curve_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.validation_loss_curve_ = None
                self.best_validation_score_ = None

    def _fit_stochastic(self, X, y, Y, incremental, rng, sample_weight=None):
        scale = self._scale
        if not incremental or not hasattr(self, "_optimizer"):
            self._lr = float(self.learning_rate_init)
            adam = self.solver == "adam"
            self._optimizer = make_optimizer(
                self.solver, self._lr if adam else self._lr / scale.c, self.momentum,
                self.nesterovs_momentum, self.beta_1, self.beta_2, self.epsilon * scale.c,
                self.backend)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        val = None
        if self.early_stopping:
            tr, va = self._validation_indices(X, y, rng)
            val = (X[va], y[va], None if sample_weight is None else sample_weight[va], Y[va])
            X, Y = X[tr], Y[tr]
            if sample_weight is not None:       # each row keeps its weight on either side
                sample_weight = sample_weight[tr]
        n = X.shape[0]
        if self.batch_size == "auto":
            bs = min(200, n)
        else:
            if self.batch_size > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped", stacklevel=3)
            bs = min(int(self.batch_size), n)
        # BatchNorm needs >= 2 rows per training batch: skip a last batch of one row
        drop_last = bool(self.batchnorm and n > 1 and n % bs == 1)
        n_batches = n // bs if drop_last else -(-n // bs)
        cb = StochasticEpochs(self, self._optimizer, n, n_batches, val,
                              batch_inv_weight(sample_weight, bs, n_batches))
        self.n_iter_ = 0
        try:
            self.model_.fit(X, Y, optimizer=self._optimizer, epochs=1 if incremental else
                            self.max_iter, batch_size=bs, l2=scale.l2, callbacks=[cb],
                            verbose=0, shuffle=self.shuffle, drop_last=drop_last,
                            sample_weight=sample_weight)
        except DivergenceError as e:
            if not self.early_stopping:
                raise ValueError(_NON_FINITE) from e
            self._record_divergence(cb, n, e)
        if not cb.converged and not incremental and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        if self.early_stopping:
            self.model_.set_weights(self._best_weights)

    def _record_divergence(self, cb, n_train, error):
        """Early stopping met a non-finite loss: as scikit-learn, keep the best validation
        epoch's weights and do not raise. scikit-learn goes on with NaN weights until its
        patience runs out; fastdl stops at once (the later epochs could only add NaN), with
        that epoch recorded as NaN (loss_, loss_curve_, validation_scores_,
        validation_loss_curve_) and counted in n_iter_ and t_."""
        self.n_iter_ += 1
        self.t_ += n_train
        self.loss_ = float("nan")
        self.loss_curve_.append(self.loss_)
        self.validation_scores_.append(float("nan"))
        self.validation_loss_curve_.append(float("nan"))
        cb.converged = True
        if self.verbose:
            print("Iteration %d, loss = nan" % self.n_iter_)
        warnings.warn(f"Training diverged at iteration {self.n_iter_} (non-finite loss; "
                      f"{error}). Stopped; the weights of the best validation score "
                      f"({self.best_validation_score_}) are kept. Lower learning_rate_init or "
                      "scale X.", ConvergenceWarning, stacklevel=4)

    def _validation_split(self, X, y, Y, rng):
        """Hold out ``ceil(validation_fraction * n)`` rows (scikit-learn's test_size rounding),
        stratified by class for single-label classification, drawn from ``random_state``:
        (X_train, Y_train, (X_val, y_val))."""
        tr, va = self._validation_indices(X, y, rng)
        return X[tr], Y[tr], (X[va], y[va])

    def _validation_indices(self, X, y, rng):
        """(train rows, validation rows) of :meth:`_validation_split`."""
        n = X.shape[0]
        n_val = math.ceil(self.validation_fraction * n)
        stratify = not self._regression and np.ndim(y) == 1
        labels = np.searchsorted(self.classes_, y) if stratify else np.zeros(n)
        if stratify and self.n_outputs_ == 1:       # first, as scikit-learn's split does
            _check_stratifiable(labels, n - n_val, n_val)
        if n_val < 2 or n - n_val < 1:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             f"or the size of your dataset (n_samples={n}, "
                             f"validation_fraction={self.validation_fraction}).")
        parts = split(np.arange(n).reshape(-1, 1), labels, counts=(n - n_val, n_val),
                      stratify=stratify, seed=int(rng.randint(np.iinfo(np.int32).max)))
        return parts.train[0][:, 0], parts.dev[0][:, 0]

    # ------------------------------------------------------------------ inference
    def _outputs(self, X, check_input=True):
        """The network's outputs (probabilities, or values for regression), (n, n_outputs_)."""
        if check_input:
            if "model_" not in vars(self):      # check_is_fitted's scan costs ~20 us a call
                check_is_fitted(self)
            lean = self._small_float_rows(X)
            X = lean if lean is not None else validate_data(
                self, X, accept_sparse="csr", dtype=(np.float64, np.float32), reset=False)
            self._take_user_weights()       # (not while fit scores its validation rows)
        return self.model_._outputs(self._model_input(X))

    def _model_input(self, X):
        """X (validated by scikit-learn) as ``model_`` takes it: dense rows are converted only
        (finite, n_features_in_ were checked: the model's own checks would repeat them);
        sparse X becomes the model's CSR rows (``fastdl/data/sparse.py``), checked there."""
        if issparse(X):
            return self.model_._X(X)
        return np.ascontiguousarray(X, dtype=self.model_.dtype)

    def _small_float_rows(self, X):
        """``X`` itself when it is a small float32/float64 NumPy matrix with
        ``n_features_in_`` finite columns and the estimator was fitted without feature names:
        what ``validate_data`` would accept unchanged, checked without its generic machinery
        (dataframe and feature-name detection cost ~200 us a call, most of a one-row
        predict). Anything else returns None and goes through ``validate_data``."""
        if (type(X) is np.ndarray and X.ndim == 2 and X.dtype in _FLOATS
                and 0 < X.shape[0] <= _SMALL_ROWS and X.shape[1] == self.n_features_in_
                and "feature_names_in_" not in vars(self)
                and math.isfinite(X.sum())):    # NaN/inf anywhere (or an overflow) -> fallback
            return X
        return None

    def _score_validated(self, X, y, sample_weight=None):
        try:
            pred = self._predict(X, check_input=False)
        except FloatingPointError:  # non-finite outputs (Sequential raises): a diverged net
            return np.nan           # scores NaN, as scikit-learn's early stopping records it
        if np.issubdtype(pred.dtype, np.floating) and not np.isfinite(pred).all():
            return np.nan
        return (r2_score if self._regression else accuracy_score)(y, pred,
                                                                  sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True       # scipy.sparse X: CSR rows end to end
        return tags

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        """Pickle without Numba/device objects: the network as config + weights + counters, the
        optimizer as its state_dict (both plain NumPy)."""
        state = dict(super().__getstate__())
        if "model_" in state:
            state["model_"] = model_state(state["model_"])
        if "_optimizer" in state:
            opt = state["_optimizer"]
            state["_optimizer"] = (type(opt).__name__, opt.state_dict())
        if "model_" in state and "_handed_out" in state:
            self._take_user_weights()           # edits of coefs_ go with the pickled model_
            state["model_"] = model_state(self.model_)
            state.pop("_handed_out")
        return state

    def __setstate__(self, state):
        state = dict(state)
        if "model_" in state:
            state["model_"] = model_from_state(state["model_"])
        if "_optimizer" in state:
            name, d = state["_optimizer"]
            opt = _OPTIMIZERS[name](backend=state.get("backend"))
            opt.load_state_dict(d)
            state["_optimizer"] = opt
        state.pop("_handed_out", None)
        super().__setstate__(state)
        if "model_" in state and "coefs_" in state:
            self._export_coefs()        # views of the new model_ (the pickled arrays are copies)


def _is_weight(w):
    return (isinstance(w, (int, float, np.integer, np.floating)) and not isinstance(w, bool)
            and math.isfinite(w) and w >= 0)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: ``sklearn.neural_network.MLPClassifier`` trained by
    fastdl (change the import, keep the code).

    Minimizes the cross-entropy (log-loss) of a softmax output (multiclass), or of one logistic
    unit per label (binary, multilabel), plus ``alpha/(2 m) * sum ||W||^2`` per batch of m rows
    (scikit-learn's scaling; it is fastdl's ``l2=alpha``).

    Parameters (scikit-learn's names, defaults and meaning)
    ----------
    hidden_layer_sizes : int or sequence of int, default (100,)
    activation : {"identity", "logistic", "tanh", "relu"}, default "relu"
        Hidden-layer activation (fastdl's "linear", "sigmoid", "tanh", "relu").
    solver : {"lbfgs", "sgd", "adam"}, default "adam"
        "lbfgs" runs SciPy's L-BFGS-B (needs scipy).
    alpha : float >= 0, default 1e-4
    batch_size : int or "auto", default "auto" (``min(200, n_samples)``)
    learning_rate : {"constant", "invscaling", "adaptive"}, default "constant" (sgd only):
        invscaling ``lr = learning_rate_init / (t_ + 1) ** power_t`` after each epoch;
        adaptive divides lr by 5 whenever ``n_iter_no_change`` epochs fail to improve by tol
        (stops once lr <= 1e-6).
    learning_rate_init : float > 0, default 1e-3
    power_t : float >= 0, default 0.5
    max_iter : int >= 1, default 200 (epochs for sgd/adam, iterations for lbfgs)
    shuffle : bool, default True
    random_state : None, int or RandomState
        Initial weights (drawn exactly as scikit-learn draws them), shuffles, dropout masks and
        the early-stopping split.
    tol : float >= 0, default 1e-4
    verbose : bool or int, default False
    warm_start : bool, default False
    momentum : float in [0, 1), default 0.9 (sgd)
    nesterovs_momentum : bool, default True (sgd)
    early_stopping : bool, default False
    validation_fraction : float in [0, 1), default 0.1
    beta_1, beta_2 : float in [0, 1), defaults 0.9, 0.999 (adam)
    epsilon : float > 0, default 1e-8 (adam)
    n_iter_no_change : int >= 1 or np.inf, default 10
    max_fun : int >= 1, default 15000 (lbfgs)

    fastdl extras
    -------------
    class_weight : None, "balanced" or dict {class label: weight >= 0}, default None
        Multiplies each example's weight (``sample_weight``, or 1) by its class's weight:
        "balanced" uses ``n_samples / (n_classes * count(class))`` from the ``y`` of this fit
        (not available in ``partial_fit``: pass a dict there); a dict gives 1 to the classes
        it leaves out. Not for multilabel targets.
    keep_prob : float or sequence of float in (0, 1], default 1.0
        Dropout keep probability after each hidden layer (one number for all, or one per
        layer); 1 disables dropout.
    batchnorm : bool, default False
        BatchNorm between each hidden Dense and its activation.
    backend : None, "cpu", "numpy" or "cuda", default None (fastdl's default backend)
    dtype : "auto", "float32" or "float64", default "auto"
        "auto" computes in the input's precision as scikit-learn does (float32 input stays
        float32, anything else float64; float32 with ``compute_dtype="bfloat16"``); "float32"
        is faster on float64 input.
    compute_dtype : None or "bfloat16", default None
        Mixed precision as ``fd.Sequential``'s: bfloat16 GEMM operands, float32 weights
        (``docs/mixed_precision.md``). Needs ``pip install "fastdl[bf16]"`` and a CPU with
        bfloat16 instructions, else a clear error unless ``allow_slow=True``.
    allow_slow : bool, default False
        Accept ``compute_dtype="bfloat16"`` where it cannot be fast (exact emulation).

    Attributes
    ----------
    classes_, loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_,
    coefs_ (list of (fan_in, fan_out) arrays), intercepts_, n_features_in_, feature_names_in_,
    n_iter_, n_layers_, n_outputs_, out_activation_: as scikit-learn. ``coefs_`` and
    ``intercepts_`` are views of the network's parameters (without batch norm, on the host):
    editing them in place edits the network; lists or arrays assigned to them are loaded
    before the next predict / fit with ``warm_start=True`` / ``partial_fit``.
    validation_loss_curve_ : list of float, or None
        With ``early_stopping``: the loss on the validation rows after each epoch (the data
        loss in scikit-learn's units, weighted by their sample weights, without the alpha
        term), beside ``validation_scores_``.
    model_ : fastdl.Sequential
        The trained network (``coefs_``/``intercepts_`` are copies of its weights).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, keep_prob=1.0, batchnorm=False, backend=None,
                 dtype="auto", compute_dtype=None, allow_slow=False):
        self.class_weight = class_weight
        super().__init__(hidden_layer_sizes, activation, solver, alpha, batch_size,
                         learning_rate, learning_rate_init, power_t, max_iter, shuffle,
                         random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                         early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                         n_iter_no_change, max_fun, keep_prob, batchnorm, backend, dtype,
                         compute_dtype, allow_slow)

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _class_weights(self, incremental, y):
        """One weight per class of ``classes_`` from ``class_weight`` (None when it is None):
        "balanced" is scikit-learn's ``n_samples / (n_classes * count)`` over this fit's y; a
        dict maps class labels to weights (1 for labels it leaves out)."""
        cw = self.class_weight
        if cw is None:
            return None
        if self._label_binarizer.y_type_.startswith("multilabel"):
            raise ValueError(f"class_weight={cw!r} is not supported for multilabel targets "
                             "(y is a label indicator matrix); pass per-row sample_weight "
                             "instead")
        if isinstance(cw, str) and cw == "balanced":
            if incremental:
                raise ValueError("class_weight='balanced' is not supported for partial_fit: "
                                 "one batch does not show the class frequencies. Compute them "
                                 "once, e.g. sklearn.utils.class_weight.compute_class_weight("
                                 "'balanced', classes=classes, y=y_sample), and pass the "
                                 "result as a dict class_weight={label: weight}")
            counts = np.bincount(np.searchsorted(self.classes_, y),
                                 minlength=len(self.classes_)).astype(np.float64)
            return np.divide(len(y), len(self.classes_) * counts, out=np.ones_like(counts),
                             where=counts > 0)
        if not isinstance(cw, dict):
            raise ValueError(f"class_weight={cw!r} is invalid; expected None, 'balanced' or a "
                             "dict {class label: weight >= 0}")
        weights = np.ones(len(self.classes_))
        known = {c: i for i, c in enumerate(self.classes_.tolist())}
        for label, w in cw.items():
            key = label.item() if isinstance(label, np.generic) else label
            if key not in known:
                raise ValueError(f"class_weight has a weight for {label!r}, which is not a "
                                 f"class of y; classes_ = {self.classes_.tolist()}")
            if not _is_weight(w):
                raise ValueError(f"class_weight[{label!r}]={w!r} is invalid; expected a finite "
                                 "number >= 0")
            weights[known[key]] = float(w)
        return weights

    def _with_class_weight(self, y, sample_weight, incremental):
        """``sample_weight`` (or ones) times each row's class weight: fastdl's extension,
        combined multiplicatively as in scikit-learn's linear models and trees."""
        per_class = self._class_weights(incremental, y)
        if per_class is None:
            return sample_weight
        rows = per_class[np.searchsorted(self.classes_, y)]
        w = rows if sample_weight is None else sample_weight * rows
        if not (w > 0).any():
            raise ValueError(f"class_weight={self.class_weight!r} (times sample_weight) gives "
                             "every example weight 0; expected at least one non-zero weight")
        return w

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse="csr", multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     f"classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        Y = self._label_binarizer.transform(y)
        return X, y, Y

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y). ``classes`` (all labels of the whole data set) is required on
        the first call and must not change later; y need not contain every class.
        ``sample_weight``: as in :meth:`fit`."""
        first = not hasattr(self, "classes_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit.")
        if classes is not None:
            classes = unique_labels(classes)
            if not first and not np.array_equal(classes, self.classes_):
                raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                                 f"partial_fit, was: {self.classes_!r}")
        if first:
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
            self.classes_ = self._label_binarizer.classes_
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _predict(self, X, check_input=True):
        out = self._outputs(X, check_input)
        if self.n_outputs_ == 1:
            out = out.ravel()
        return self._label_binarizer.inverse_transform(out)

    def predict(self, X):
        """Class labels (n_samples,), or a label indicator matrix for multilabel targets."""
        return self._predict(X)

    def predict_proba(self, X):
        """Probabilities (n_samples, n_classes) in the order of ``classes_`` (multilabel: one
        independent probability per label)."""
        out = self._outputs(X)
        if self.n_outputs_ == 1:
            p = out.ravel()
            return np.vstack([1 - p, p]).T
        return out

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        p = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(p, out=p)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: ``sklearn.neural_network.MLPRegressor`` trained by
    fastdl.

    Minimizes scikit-learn's half squared error ``(1/(2 m k)) sum (y_hat - y)^2`` plus
    ``alpha/(2 m) * sum ||W||^2`` per batch (identity output), with scikit-learn's gradient
    scaling (see ``fastdl/sklearn/_solvers.py``). Parameters, extras and attributes: as
    :class:`MLPClassifier` (no ``classes_``), plus

    loss : {"squared_error", "poisson"}, default "squared_error"
        "poisson": the half Poisson deviance ``mean_rows sum_outputs (y log(y / mu) - y +
        mu)`` of an exponential output ``mu = exp(z)`` (scikit-learn 1.9's log link; targets
        must be counts or rates >= 0), through fastdl's ``exp_half_poisson_deviance`` kernel.
    """

    _regression = True

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 keep_prob=1.0, batchnorm=False, backend=None, dtype="auto",
                 compute_dtype=None, allow_slow=False):
        self.loss = loss
        super().__init__(hidden_layer_sizes, activation, solver, alpha, batch_size,
                         learning_rate, learning_rate_init, power_t, max_iter, shuffle,
                         random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                         early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                         n_iter_no_change, max_fun, keep_prob, batchnorm, backend, dtype,
                         compute_dtype, allow_slow)

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse="csr", multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError(f"y has a value {float(y[y < 0].flat[0])!r} < 0; loss='poisson' "
                             "needs counts or rates y >= 0")
        if hasattr(self, "out_activation_") and (self.warm_start or incremental) \
                and self._out_activation() != self.out_activation_:
            raise ValueError(f"loss={self.loss!r} differs from the fitted network's (output "
                             f"{self.out_activation_!r}); warm_start and partial_fit continue "
                             "that network: fit anew with warm_start=False to change it")
        return X, y, y.reshape(y.shape[0], -1)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.
        ``sample_weight``: as in :meth:`fit`."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _predict(self, X, check_input=True):
        out = self._outputs(X, check_input)
        return out.ravel() if out.shape[1] == 1 else out

    def predict(self, X):
        """Predicted values (n_samples,) or (n_samples, n_outputs)."""
        return self._predict(X)
