"""Validation of the estimators' constructor parameters, done at ``fit`` time as scikit-learn
does (``__init__`` only stores them, so ``clone``/``set_params`` work on any value).

The allowed ranges are scikit-learn 1.9's ``_parameter_constraints`` of
``BaseMultilayerPerceptron`` plus fastdl's extras; every error names the parameter, the value
and what was expected.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .._validation import check_dtype
from ..precision import check_compute_dtype
from ..backend import check_name

ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
SOLVERS = ("lbfgs", "sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
#: scikit-learn activation name -> fastdl activation name
FD_ACTIVATION = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _real(name, v, lo, hi=None, lo_open=False, hi_open=False):
    ok = _is_real(v) and math.isfinite(v) and (v > lo if lo_open else v >= lo)
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        lb = "(" if lo_open else "["
        rb = "inf)" if hi is None else f"{hi}{')' if hi_open else ']'}"
        raise ValueError(f"{name}={v!r} is invalid; expected a real number in {lb}{lo}, {rb}")
    return float(v)


def _int(name, v, lo):
    if not _is_int(v) or v < lo:
        raise ValueError(f"{name}={v!r} is invalid; expected an integer >= {lo}")
    return int(v)


def _choice(name, v, options):
    if not isinstance(v, str) or v not in options:
        raise ValueError(f"{name}={v!r} is invalid; expected one of {options}")
    return v


def _bool(name, v):
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"{name}={v!r} is invalid; expected True or False")
    return bool(v)


def hidden_sizes(value):
    """``hidden_layer_sizes`` as a list of ints >= 1 (an int means one hidden layer; an empty
    sequence means no hidden layer, a linear/logistic model, as in scikit-learn)."""
    sizes = [value] if not hasattr(value, "__iter__") or isinstance(value, str) else list(value)
    for s in sizes:
        if not _is_int(s) or s < 1:
            shown = [int(v) if _is_int(v) else v for v in sizes]
            raise ValueError(f"hidden_layer_sizes must be > 0, got {shown}. "    # scikit-learn's
                             f"(hidden_layer_sizes={value!r} is invalid; expected an integer "
                             ">= 1 or a sequence of them: units per hidden layer)")
    return [int(s) for s in sizes]


def sklearn_constraints(est):
    """scikit-learn's own parameter validation of its MLP's parameters (its
    ``_parameter_constraints``, so the same ``InvalidParameterError``, a ValueError and
    TypeError, with the same text: "The 'alpha' parameter of MLPClassifier must be a float in
    the range [0.0, inf). Got -1 instead."). Skipped where scikit-learn's private validation
    module is not there; fastdl's own checks (``check_params``) follow either way."""
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        from sklearn.utils._param_validation import validate_parameter_constraints
    except ImportError:     # pragma: no cover - scikit-learn < 1.2 or a moved private module
        return
    peer = MLPRegressor if est._regression else MLPClassifier
    constraints = getattr(peer, "_parameter_constraints", None)
    if not constraints:     # pragma: no cover
        return
    params = {k: getattr(est, k) for k in constraints if hasattr(est, k)}
    validate_parameter_constraints(constraints, params, caller_name=type(est).__name__)


def keep_probs(value, n_hidden):
    """``keep_prob`` as one probability per hidden layer (a number applies to all)."""
    if _is_real(value):
        vals = [value] * n_hidden
    elif hasattr(value, "__iter__") and not isinstance(value, str):
        vals = list(value)
        if len(vals) != n_hidden:
            raise ValueError(f"keep_prob={value!r} has {len(vals)} entries; expected one per "
                             f"hidden layer ({n_hidden}) or a single number")
    else:
        raise ValueError(f"keep_prob={value!r} is invalid; expected a number in (0, 1] or one "
                         "per hidden layer")
    for v in vals:
        if not _is_real(v) or not math.isfinite(v) or not 0.0 < v <= 1.0:
            raise ValueError(f"keep_prob={value!r} is invalid; expected probabilities of "
                             "keeping a unit in (0, 1] (1 disables dropout)")
    return [float(v) for v in vals]


def check_params(est):
    """Validate every constructor parameter of ``est``; raises ValueError naming the first bad
    one. Returns the hidden layer sizes as a list."""
    sklearn_constraints(est)
    sizes = hidden_sizes(est.hidden_layer_sizes)
    _choice("activation", est.activation, ACTIVATIONS)
    _choice("solver", est.solver, SOLVERS)
    _real("alpha", est.alpha, 0.0)
    if not (isinstance(est.batch_size, str) and est.batch_size == "auto"):
        if not _is_int(est.batch_size) or est.batch_size < 1:
            raise ValueError(f"batch_size={est.batch_size!r} is invalid; expected 'auto' or an "
                             "integer >= 1")
    _choice("learning_rate", est.learning_rate, LEARNING_RATES)
    _real("learning_rate_init", est.learning_rate_init, 0.0, lo_open=True)
    _real("power_t", est.power_t, 0.0)
    _int("max_iter", est.max_iter, 1)
    _bool("shuffle", est.shuffle)
    _real("tol", est.tol, 0.0)
    if not (_is_int(est.verbose) or isinstance(est.verbose, (bool, np.bool_))):
        raise ValueError(f"verbose={est.verbose!r} is invalid; expected a bool or an integer")
    _bool("warm_start", est.warm_start)
    # scikit-learn admits momentum=1; fastdl's Momentum needs beta < 1 (v would never decay)
    _real("momentum", est.momentum, 0.0, 1.0, hi_open=True)
    _bool("nesterovs_momentum", est.nesterovs_momentum)
    _bool("early_stopping", est.early_stopping)
    _real("validation_fraction", est.validation_fraction, 0.0, 1.0, hi_open=True)
    _real("beta_1", est.beta_1, 0.0, 1.0, hi_open=True)
    _real("beta_2", est.beta_2, 0.0, 1.0, hi_open=True)
    _real("epsilon", est.epsilon, 0.0, lo_open=True)
    n = est.n_iter_no_change
    if not ((_is_int(n) and n >= 1) or (_is_real(n) and n == math.inf)):
        raise ValueError(f"n_iter_no_change={n!r} is invalid; expected an integer >= 1 or "
                         "numpy.inf")
    _int("max_fun", est.max_fun, 1)
    keep_probs(est.keep_prob, len(sizes))
    _bool("batchnorm", est.batchnorm)
    if est.backend is not None:
        check_name(est.backend)
    if not (isinstance(est.dtype, str) and est.dtype == "auto"):
        try:
            check_dtype(est.dtype)
        except ValueError:
            raise ValueError(f"dtype={est.dtype!r} is invalid; expected 'auto' (the input's "
                             "float32/float64, as scikit-learn), 'float32' or 'float64'") from None
    if check_compute_dtype(est.compute_dtype) not in (None, "float32", "float64", "bfloat16"):
        raise ValueError(f"compute_dtype={est.compute_dtype!r} is invalid here; expected None "
                         "or 'bfloat16'")
    _bool("allow_slow", est.allow_slow)
    if est.random_state is not None and not _is_int(est.random_state) \
            and not isinstance(est.random_state, np.random.RandomState):
        raise ValueError(f"random_state={est.random_state!r} is invalid; expected None, an "
                         "integer or a numpy.random.RandomState")
    return sizes
