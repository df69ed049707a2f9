"""fastdl.tune: hyperparameter search on the right scales.

    space = {"lr": fd.tune.log_uniform(1e-4, 1), "beta": fd.tune.one_minus_log(0.9, 0.999),
             "units": fd.tune.log_int(4, 256)}
    result = fd.tune.random_search(objective, space, n_trials=32, seed=0, storage="runs.sqlite")
    result.best, result.trials, result.plot("search.png")

Per-epoch reports and early stopping of poor trials (ASHA):

    def objective(config, trial):
        ...model.fit(..., callbacks=[fd.tune.ReportCallback(trial, monitor="val_accuracy")])
    fd.tune.random_search(objective, space, 32, pruner=fd.tune.ASHA(min_resource=1, eta=3))
"""

from .pruning import ASHA
from .search import SearchResult, coarse_to_fine, random_search
from .space import (Dimension, choice, int_uniform, log_int, log_uniform, one_minus_log,
                    sample_config, uniform)
from .trial import ReportCallback, Trial, TrialPruned

__all__ = ["random_search", "coarse_to_fine", "SearchResult", "Dimension", "uniform",
           "log_uniform", "one_minus_log", "int_uniform", "log_int", "choice", "sample_config",
           "ASHA", "Trial", "TrialPruned", "ReportCallback"]
