"""scikit-learn drop-in: ``from fastdl.sklearn import MLPClassifier, MLPRegressor``.

Same constructor parameters, defaults, fitted attributes and training semantics as
``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor`` (scikit-learn 1.9), trained by
fastdl's fused kernels, plus fastdl extras: ``keep_prob`` (dropout per hidden layer),
``batchnorm``, ``backend`` and ``dtype``. The mapping of every parameter and the documented
differences are in ``docs/sklearn.md``.

Needs scikit-learn (and SciPy for ``solver="lbfgs"``): ``pip install "fastdl[sklearn]"``.
"""

import importlib.util

# "sklearn" here is the scikit-learn package (absolute imports), not this module
if importlib.util.find_spec("sklearn") is None:  # pragma: no cover - needs no scikit-learn
    raise ImportError("fastdl.sklearn needs scikit-learn; install it with "
                      "pip install \"fastdl[sklearn]\" (scikit-learn and scipy)")

from ._estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
