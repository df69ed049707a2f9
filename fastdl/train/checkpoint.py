"""ModelCheckpoint: save the model (and everything needed to resume) during ``fit``."""

from __future__ import annotations

import math

from .._validation import check_int
from .callbacks import Callback


class ModelCheckpoint(Callback):
    """Save the model at the end of epochs, atomically (see ``fastdl/io.py``).

    Parameters
    ----------
    path : str
        Where to write. May hold ``str.format`` fields filled from the epoch (1-based) and the
        epoch's logs, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"``; without fields the same
        file is overwritten (atomically: a killed write leaves the previous checkpoint).
    monitor : str
        The logged value ``save_best_only`` compares ("val_loss", "val_accuracy", "loss" ...).
    save_best_only : bool
        Save only when ``monitor`` improves on the best value seen in this run.
    every_n_epochs : int
        Save after epochs ``n, 2n, ...`` (counted over the whole run, resumed runs included).
    mode : "auto", "min" or "max"
        Whether a lower or a higher ``monitor`` is better; "auto": max for accuracies.

    The file holds what ``fit(..., resume_from=path)`` needs to continue the run exactly:
    parameters, optimizer state, step and epoch counters, the seed, the History so far.
    ``last_path`` is the file written last (None before the first save). In a distributed
    ``fit`` only rank 0 writes (the file holds nothing rank-specific).
    """

    def __init__(self, path, monitor="val_loss", save_best_only=False, every_n_epochs=1,
                 mode="auto", verbose=0):
        if not isinstance(path, str) or not path:
            raise TypeError(f"path={path!r} must be a non-empty string")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode={mode!r} is invalid; expected 'auto', 'min' or 'max'")
        self.path, self.monitor, self.verbose = path, str(monitor), verbose
        self.save_best_only = bool(save_best_only)
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, minimum=1)
        if mode == "auto":
            mode = "max" if "acc" in self.monitor else "min"
        self.mode = mode
        self.best = None
        self.last_path = None

    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def on_train_begin(self, logs=None):
        self.best = None
        hist = getattr(self.model, "history", None)     # a resumed run: best so far
        past = [v for v in getattr(hist, "history", {}).get(self.monitor, [])
                if isinstance(v, float) and not math.isnan(v)]
        if past:
            self.best = min(past) if self.mode == "min" else max(past)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if (epoch + 1) % self.every_n_epochs:
            return
        if self.save_best_only:
            if self.monitor not in logs:
                raise ValueError(f"ModelCheckpoint(monitor={self.monitor!r}) found no such value "
                                 f"in the epoch's logs {sorted(logs)}; pass validation_data for "
                                 "val_* values or monitor='loss'")
            value = float(logs[self.monitor])
            if math.isnan(value) or not self._better(value):
                return
            self.best = value
        try:
            path = self.path.format(epoch=epoch + 1, **logs) if "{" in self.path else self.path
        except (KeyError, ValueError, IndexError) as e:
            raise ValueError(f"ModelCheckpoint path={self.path!r} cannot be formatted from "
                             f"epoch and the logs {sorted(logs)}: {e}") from None
        dist = getattr(self.model, "_dist", None)   # fastdl.distributed: rank 0 writes
        if dist is None or dist.rank == 0:
            self.model.save(path)
        self.last_path = path
        if self.verbose and (dist is None or dist.rank == 0):
            print(f"Epoch {epoch + 1}: saved the model to {path}")
