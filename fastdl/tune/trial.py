"""The trial object an objective receives, per-epoch reports, and the fit callback that sends them.

An objective written ``objective(config)`` returns a score. One written
``objective(config, trial)`` also gets a :class:`Trial` and may report intermediate dev scores
and ask whether to stop (the interface of Optuna's ``trial.report`` / ``trial.should_prune``)::

    def objective(config, trial):
        model = ...
        h = model.fit(X, y, optimizer=fd.optim.Adam(lr=config["lr"]), epochs=27,
                      validation_data=(Xd, yd), verbose=0,
                      callbacks=[fd.tune.ReportCallback(trial, monitor="val_accuracy")])
        return h.history["val_accuracy"][-1]

Every report is stored with the trial (``trial["reports"]``, and the ``reports`` table of the
SQLite storage). With a pruner (``random_search(..., pruner=fd.tune.ASHA())``) a trial whose score
at a rung is not good enough is told to stop; it is recorded with ``status="pruned"`` and its last
reported score, apart from ``"ok"`` (finished) and ``"failed"`` (raised).
"""

from __future__ import annotations

import inspect
import numbers

from ..train.callbacks import Callback
from .pruning import is_finite_real

__all__ = ["Trial", "TrialPruned", "ReportCallback", "wants_trial"]


class TrialPruned(Exception):
    """Raise it from an objective to stop a trial the pruner rejected (``trial.should_prune()``);
    the trial is recorded as pruned with its last reported score, not as failed."""


class Trial:
    """One trial, as seen by an objective.

    ``index``, ``round``, ``config``; ``reports``: list of ``(step, score)``;
    :meth:`report` records a score; :meth:`should_prune` says whether the pruner (if any) wants
    the trial stopped; ``pruned`` is True once it said so and the objective asked.
    """

    def __init__(self, index, round_, config, mode="max", pruner=None, board=None):
        self.index, self.round, self.config, self.mode = index, round_, config, mode
        self.reports = []
        self.pruned = False
        self._pruner, self._board = pruner, board
        self._stop = False

    def report(self, score, step=None):
        """Record ``score`` after ``step`` units of resource (epochs: step 1 is the end of the
        first epoch). ``step`` defaults to the number of reports so far + 1 and must grow
        strictly. When a pruner is set and the step reaches one of its rungs, the score is
        entered at that rung and the stop/continue decision is taken (see :meth:`should_prune`).
        """
        if not is_finite_real(score):
            raise ValueError(f"trial.report: score={score!r} is invalid; expected a finite real "
                             "number")
        prev = self.reports[-1][0] if self.reports else 0
        if step is None:
            step = prev + 1
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"trial.report: step={step!r} must be an integer")
        step = int(step)
        if step <= prev:
            raise ValueError(f"trial.report: step={step} is invalid; expected an integer > the "
                             f"previous step {prev} (steps count resource used, e.g. epochs)")
        self.reports.append((step, float(score)))
        if self._pruner is not None and self._board is not None and not self._stop:
            for rung in self._pruner.rungs_passed(prev, step):
                scores = self._board.record(rung, self.index, score)
                if not self._pruner.keep(float(score), scores, self.mode):
                    self._stop = True
                    break

    def should_prune(self):
        """True when the pruner stopped this trial at a rung it reached; the objective should
        then return (or raise :class:`TrialPruned`). Always False without a pruner."""
        if self._stop:
            self.pruned = True
        return self._stop

    @property
    def last_score(self):
        return self.reports[-1][1] if self.reports else None

    def __repr__(self):
        return (f"Trial(index={self.index}, round={self.round}, reports={len(self.reports)}, "
                f"pruned={self.pruned})")


class ReportCallback(Callback):
    """A ``fit`` callback that reports ``logs[monitor]`` to ``trial`` at the end of every epoch
    (``step = epoch + 1``) and stops training (``model.stop_training``) when the trial's pruner
    says so. Like Optuna's ``KerasPruningCallback`` / ``PyTorchLightningPruningCallback``."""

    def __init__(self, trial, monitor="val_accuracy"):
        if not isinstance(trial, Trial):
            raise TypeError(f"trial={trial!r} is not a fd.tune Trial; use the second argument "
                            "of an objective(config, trial)")
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor={monitor!r} is invalid; expected the name of a logged "
                             "metric such as 'val_accuracy'")
        lower = monitor.lower()
        if ("loss" in lower and trial.mode == "max") or ("acc" in lower and trial.mode == "min"):
            raise ValueError(f"ReportCallback(monitor={monitor!r}) contradicts the search's "
                             f"mode={trial.mode!r}: pass mode='min' to the search for losses, "
                             "mode='max' for accuracies")
        self.trial, self.monitor = trial, monitor

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"ReportCallback(monitor={self.monitor!r}): epoch {epoch} logged no "
                             f"{self.monitor!r} (logged: {', '.join(sorted(logs))}); pass "
                             "validation_data to fit for 'val_*' metrics")
        self.trial.report(float(logs[self.monitor]), step=epoch + 1)
        if self.trial.should_prune():
            self.model.stop_training = True


def wants_trial(objective):
    """True when ``objective`` takes a second positional argument (the trial)."""
    try:
        params = list(inspect.signature(objective).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2
