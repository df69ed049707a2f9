"""scikit-learn drop-in: change one import, keep the code (docs/sklearn.md).

``fastdl.sklearn.MLPClassifier`` takes scikit-learn's constructor parameters, defaults and
fitted attributes (``coefs_``, ``loss_curve_``, ...), so the same Pipeline and GridSearchCV code
runs with either class. On scikit-learn's digits, with the same hyperparameters and the same
initial weights (``random_state``), both reach about the same test accuracy; fastdl then adds
what scikit-learn's MLP lacks: dropout (``keep_prob`` per hidden layer) and batch norm.

    python examples/10_sklearn_dropin.py          # needs scikit-learn: pip install "fastdl[sklearn]"
"""

import time
import warnings

try:
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
except ImportError:
    raise SystemExit('this example needs scikit-learn: pip install "fastdl[sklearn]"') from None

from fastdl.sklearn import MLPClassifier
from _common import figure, learning_curves, save, size, table

warnings.filterwarnings("ignore", category=ConvergenceWarning)   # fixed epoch budgets below

X, y = load_digits(return_X_y=True)
Xtr, Xte, ytr, yte = train_test_split(X.astype("float32"), y, test_size=0.25, stratify=y,
                                      random_state=0)
epochs = size(60, 8)
common = dict(hidden_layer_sizes=(128, 64), max_iter=epochs, tol=0.0,
              n_iter_no_change=epochs + 1, random_state=0)

RUNS = {  # name: the classifier after a StandardScaler
    "sklearn MLPClassifier": lambda: SkMLP(**common),
    "fastdl MLPClassifier": lambda: MLPClassifier(**common),
    "fastdl + dropout": lambda: MLPClassifier(keep_prob=(0.8, 0.9), **common),
    "fastdl + batchnorm": lambda: MLPClassifier(batchnorm=True, **common),
}

# load fastdl's compiled kernels (JIT cache) once, so "fit s" below times training only
MLPClassifier(**dict(common, max_iter=1)).fit(Xtr[:50], ytr[:50])

rows, curves = [], {}
for name, make in RUNS.items():
    pipe = make_pipeline(StandardScaler(), make())
    t0 = time.perf_counter()
    pipe.fit(Xtr, ytr)
    seconds = time.perf_counter() - t0
    clf = pipe[-1]
    curves[name] = clf.loss_curve_
    rows.append({"model": name, "epochs": clf.n_iter_, "fit s": seconds,
                 "train acc": pipe.score(Xtr, ytr), "test acc": pipe.score(Xte, yte)})
table(rows, ["model", "epochs", "fit s", "train acc", "test acc"],
      title=f"digits ({Xtr.shape[0]} train / {Xte.shape[0]} test), hidden (128, 64), adam, "
            "batch min(200, n)")

# the same GridSearchCV code works for either class
search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(**common)),
                      {"mlpclassifier__alpha": [1e-4, 1e-2, 1.0]}, cv=3,
                      n_jobs=size(2, 1))
search.fit(Xtr, ytr)
table([{"alpha": p["mlpclassifier__alpha"], "cv accuracy": s}
       for p, s in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"])],
      ["alpha", "cv accuracy"], title="GridSearchCV over alpha (3-fold)")
print(f"best alpha {search.best_params_['mlpclassifier__alpha']:g}: "
      f"test accuracy {search.score(Xte, yte):.4f}")

fig = figure(ncols=1)
if fig is not None:
    learning_curves(fig[1][0], curves, "training loss (loss_curve_)", logy=True)
save(fig, "10_sklearn_dropin.png")
