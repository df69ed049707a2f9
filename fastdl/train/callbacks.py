"""Callbacks: hooks called by ``fit`` (Keras-style names).

    on_train_begin(logs)  on_epoch_begin(epoch, logs)  on_batch_begin(batch, logs)
    on_batch_end(batch, logs)  on_epoch_end(epoch, logs)  on_train_end(logs)

A callback stops training by setting ``model.stop_training = True``. ``on_batch_begin`` (before
the batch's forward pass) and ``on_batch_end`` (after its update) are only called when a
callback overrides one of them; the fused whole-epoch fast path is then not used (it has no
per-batch hook).

A callback whose state changes the run (EarlyStopping's counters, ...) hands it to the
checkpoints written during ``fit`` with ``get_state()`` / ``set_state()``, so that a run
resumed from a checkpoint continues it exactly; the classes whose state a model file may
hold are declared in ``fastdl/model_schema.py`` (``CALLBACK_STATES``). On a preempted run
(``fd.Preempted``) ``on_train_end`` gets ``logs={"preempted": True}``: the run is not over.
"""

from __future__ import annotations

import numpy as np


class Callback:
    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    @classmethod
    def wants_batches(cls):
        return (cls.on_batch_end is not Callback.on_batch_end
                or cls.on_batch_begin is not Callback.on_batch_begin)

    def get_state(self):
        """What a checkpoint must hold to continue this callback exactly in a resumed run: a
        dict of JSON values, or None (nothing: the default)."""
        return None

    def state_weights(self):
        """Arrays laid out like ``model.get_weights()`` that belong to the state, or None."""
        return None

    def set_state(self, state, weights=None):
        """Continue from ``state`` (what ``get_state`` returned in the interrupted run) and
        ``weights`` (``state_weights``); called after ``on_train_begin`` of a resumed run."""


class History(Callback):
    """Per-epoch logs: ``history.history["loss"]`` is a list with one value per epoch.

    ``history.epoch`` lists the epoch indices. Keys: ``loss`` (mean training cost of the epoch,
    L2 term included), ``lr``, and with validation data ``val_loss`` and ``val_accuracy``.
    """

    def __init__(self):
        self.history = {}
        self.epoch = []
        #: None, or where a preempted run stopped: {"signal", "epoch" (epochs completed),
        #: "batch" (batches done in the next one), "step", "checkpoint" (path or None)}
        self.stopped_at = None

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def plot(self, path, metric=None, title=None, per_layer=None):
        """Write a PNG at ``path``: train vs dev cost per epoch, and beside it the metric
        (``metric``, default "accuracy" when recorded). ``per_layer="grad_norm"`` (any
        statistic of ``fd.GradientMonitor``) instead draws that statistic per layer: one curve
        per layer over the epochs, and beside it the last epoch's values against depth (log
        scale for norms). Needs matplotlib: ``pip install "fastdl[plot]"``. Returns ``path``."""
        if per_layer is not None:
            from .plot import plot_per_layer
            return plot_per_layer(self, path, per_layer, title=title)
        from .plot import plot_history
        return plot_history(self, path, metric=metric, title=title)

    def __repr__(self):
        last = {k: (round(v[-1], 6) if isinstance(v[-1], float) else v[-1])
                for k, v in self.history.items() if v}
        return f"History({len(self.epoch)} epochs, last={last})"


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of every epoch: ``lr = schedule(epoch)``
    (epochs count from 0; any ``fd.optim`` schedule or a function), or Keras' two-argument
    form ``schedule(epoch, lr)``. Same effect as ``fit(..., lr_schedule=schedule)``; this one
    is applied after it when both are given. ``verbose=1`` prints each change."""

    def __init__(self, schedule, verbose=0):
        if not callable(schedule):
            raise TypeError(f"schedule={schedule!r} must be callable (epoch -> lr)")
        import inspect
        try:
            params = inspect.signature(schedule).parameters.values()
            n_args = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                         and p.default is p.empty for p in params)
        except (TypeError, ValueError):
            n_args = 1
        self.schedule, self.two_args, self.verbose = schedule, n_args >= 2, verbose
        self._seen = self._resume = None

    def on_epoch_begin(self, epoch, logs=None):
        opt = getattr(self.model, "optimizer", None)
        if opt is None:
            raise RuntimeError("LearningRateScheduler needs the model's optimizer; use it "
                               "inside model.fit")
        lr_in = float(opt.lr)
        if self._resume is not None and self._resume[0] == epoch:
            lr_in = self._resume[1]      # an epoch resumed midway: the lr it started with
        self._resume = None
        self._seen = (epoch, lr_in)
        lr = self.schedule(epoch, lr_in) if self.two_args else self.schedule(epoch)
        old = opt.lr
        opt.lr = lr                       # validated by the optimizer (finite, > 0)
        if self.verbose and opt.lr != old:
            print(f"Epoch {epoch + 1}: LearningRateScheduler sets lr to {opt.lr:.6g}")

    def get_state(self):
        """The two-argument form reads the lr the epoch started with: a checkpoint inside the
        epoch keeps it (the optimizer's lr is the schedule's output by then)."""
        if self._seen is None:
            return None
        return {"epoch": int(self._seen[0]), "lr_in": float(self._seen[1])}

    def set_state(self, state, weights=None):
        self._resume = (state["epoch"], state["lr_in"])


class EarlyStopping(Callback):
    """Stop training when a monitored metric has stopped improving (course week 1, "Other
    regularization methods"), and put back the weights of its best epoch.

    Parameters
    ----------
    monitor : str
        A key of the epoch logs: "val_loss" (default; needs ``validation_data``),
        "val_accuracy", "loss".
    patience : int >= 0
        Epochs without improvement tolerated; training stops at the end of the epoch that
        makes ``max(patience, 1)`` in a row (Keras' rule).
    min_delta : float >= 0
        An improvement must beat the best value by more than this.
    mode : "auto", "min" or "max"
        Direction of improvement; "auto" is "max" for accuracies, "min" otherwise.
    restore_best_weights : bool
        At the end of training, set the weights (BatchNorm running statistics included) to
        those of the best epoch.

    After training: ``best`` (the best value), ``best_epoch``, ``stopped_epoch`` (None when
    training ran to the end). Sets ``model.stop_training``.
    """

    MODES = ("auto", "min", "max")

    def __init__(self, monitor="val_loss", patience=0, min_delta=0.0, mode="auto",
                 restore_best_weights=True):
        import numbers
        import math
        if not isinstance(monitor, str) or not monitor:
            raise ValueError(f"monitor={monitor!r} is invalid; expected the name of a logged "
                             "metric such as 'val_loss'")
        if isinstance(patience, bool) or not isinstance(patience, numbers.Integral) \
                or patience < 0:
            raise ValueError(f"patience={patience!r} is invalid; expected an integer >= 0")
        if isinstance(min_delta, bool) or not isinstance(min_delta, numbers.Real) \
                or not math.isfinite(min_delta) or min_delta < 0:
            raise ValueError(f"min_delta={min_delta!r} is invalid; expected a finite number >= 0")
        if mode not in self.MODES:
            raise ValueError(f"mode={mode!r} is invalid; expected one of {self.MODES}")
        if not isinstance(restore_best_weights, bool):
            raise TypeError(f"restore_best_weights={restore_best_weights!r} is invalid; "
                            "expected True or False")
        self.monitor, self.patience, self.min_delta = monitor, int(patience), float(min_delta)
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self._reset()

    def _reset(self):
        self.best = self.best_epoch = self.stopped_epoch = self.best_weights = None
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def _improved(self, value):
        import math
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(f"EarlyStopping(monitor={self.monitor!r}): epoch {epoch} logged "
                             f"no {self.monitor!r} (logged: {', '.join(sorted(logs))}); pass "
                             "validation_data to fit for 'val_*' metrics, or monitor 'loss'")
        value = float(logs[self.monitor])
        self.wait += 1
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if (logs or {}).get("preempted"):   # not over: the resumed run restores at its end
            return
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def get_state(self):
        """The counters and the best value so far (and, with ``restore_best_weights``, the
        best epoch's weights: ``state_weights``), so a resumed run stops when an unbroken
        run would and restores the same weights."""
        return {"monitor": self.monitor, "mode": self.mode, "wait": int(self.wait),
                "best": None if self.best is None else float(self.best),
                "best_epoch": None if self.best_epoch is None else int(self.best_epoch),
                "stopped_epoch": None if self.stopped_epoch is None
                else int(self.stopped_epoch),
                "best_weights": self.best_weights is not None}

    def state_weights(self):
        return self.best_weights

    def set_state(self, state, weights=None):
        if (state["monitor"], state["mode"]) != (self.monitor, self.mode):
            return                       # it watches something else now: start afresh
        self.wait, self.best = state["wait"], state["best"]
        self.best_epoch, self.stopped_epoch = state["best_epoch"], state["stopped_epoch"]
        if self.restore_best_weights and state["best_weights"] and weights is not None:
            self.best_weights = [np.array(w) for w in weights]

    def __repr__(self):
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, "
                f"min_delta={self.min_delta}, mode={self.mode!r}, "
                f"restore_best_weights={self.restore_best_weights})")


# fd.callbacks.GradientMonitor (defined in monitor.py, which imports Callback from here)
from .monitor import GradientMonitor  # noqa: E402,F401
# fd.callbacks.CSVLogger, fd.callbacks.TensorBoard: run logs (logs.py)
from .logs import CSVLogger, TensorBoard  # noqa: E402,F401
