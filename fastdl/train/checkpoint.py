"""ModelCheckpoint: save the model (and everything needed to resume) during ``fit``."""

from __future__ import annotations

import math
import numbers
import os
import tempfile
import time
import warnings

from .._validation import check_int
from .callbacks import Callback

#: What ``on_save_error`` accepts.
ON_SAVE_ERROR = ("warn", "raise")


class ModelCheckpoint(Callback):
    """Save the model during ``fit``, atomically (see ``fastdl/io.py``): at the end of epochs
    and, with ``every_n_steps`` / ``every_seconds``, inside them.

    Parameters
    ----------
    path : str
        Where to write. May hold ``str.format`` fields: ``{epoch}`` (1-based: the epoch just
        completed, or the one in progress for a save inside an epoch), ``{step}`` (updates
        taken), ``{batch}`` (batches done in the epoch in progress, 0 at an epoch end) and, at
        epoch ends, the epoch's logs, e.g. ``"ckpt-{epoch:03d}-{val_loss:.3f}.npz"``. Without
        fields the same file is overwritten (atomically: a killed write leaves the previous
        checkpoint).
    every_n_steps : int >= 1, optional
        Also save after every ``every_n_steps``-th update (counted over the whole run, resumed
        runs included), inside epochs. Default None: epoch ends only (as before issue 19).
    every_seconds : float > 0, optional
        Also save after the first update that ends ``every_seconds`` or more after the last
        save (or the start of ``fit``). Default None.
    keep : int >= 1, optional
        How many files to keep. With fields in ``path``: the ``keep`` most recent files this
        callback wrote (in this run and the runs it resumes) stay, older ones are deleted.
        Without fields: ``path`` is the newest and the ``keep - 1`` previous checkpoints move
        to ``<stem>.1<ext>`` (the one before) ... ``<stem>.<keep-1><ext>``. Default None:
        every formatted file stays (as before issue 19); one file for a fixed ``path``.
    monitor : str
        The logged value ``save_best_only`` compares ("val_loss", "val_accuracy", "loss" ...).
    save_best_only : bool
        Save (at epoch ends) only when ``monitor`` improves on the best value seen in this run.
        Not with ``every_n_steps`` / ``every_seconds`` (nothing is monitored inside an epoch).
    every_n_epochs : int or None
        Save after epochs ``n, 2n, ...`` (counted over the whole run, resumed runs included);
        None: never at an epoch end (only ``every_n_steps`` / ``every_seconds``).
    mode : "auto", "min" or "max"
        Whether a lower or a higher ``monitor`` is better; "auto": max for accuracies.
    on_save_error : "warn" or "raise"
        A write that fails (disk full, read-only file system, ...) leaves the previous
        checkpoint intact (the temp file is removed); "warn" (default) reports it with a
        ``RuntimeWarning`` and training goes on, "raise" stops ``fit`` with the ``OSError``.

    The file holds what ``fit(..., resume_from=path)`` needs to continue the run exactly:
    parameters, optimizer state, step and epoch counters, the seed, the History so far, and
    inside an epoch the position in it and the callbacks' states. ``last_path`` is the file
    written last (None before the first save). The path's directory is checked at the start
    of ``fit`` (it must exist and take a new file). Inside ``fit`` checkpoints run after the
    other callbacks, so they hold every callback's state for the same step. In a distributed
    ``fit`` only rank 0 writes (the file holds nothing rank-specific). A preemption
    (``fit(..., preemption_signals=...)``) writes its checkpoint through the first
    ModelCheckpoint that is not ``save_best_only``.
    """

    #: the training loop runs checkpoints after the other callbacks (see ``loop.py``)
    saves_checkpoints = True

    def __init__(self, path, every_n_steps=None, every_seconds=None, keep=None, *,
                 monitor="val_loss", save_best_only=False, every_n_epochs=1, mode="auto",
                 verbose=0, on_save_error="warn"):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise TypeError(f"path={path!r} must be a non-empty string")
        path = os.fspath(path)
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode={mode!r} is invalid; expected 'auto', 'min' or 'max'")
        if every_n_steps is not None:
            every_n_steps = check_int("every_n_steps", every_n_steps, minimum=1)
        if every_seconds is not None and (
                isinstance(every_seconds, bool) or not isinstance(every_seconds, numbers.Real)
                or not math.isfinite(every_seconds) or every_seconds <= 0):
            raise ValueError(f"every_seconds={every_seconds!r} is invalid; expected a number "
                             "of seconds > 0, or None")
        if keep is not None:
            keep = check_int("keep", keep, minimum=1)
        if on_save_error not in ON_SAVE_ERROR:
            raise ValueError(f"on_save_error={on_save_error!r} is invalid; expected one of "
                             f"{ON_SAVE_ERROR}")
        self.path, self.monitor, self.verbose = path, str(monitor), verbose
        self.save_best_only = bool(save_best_only)
        self.every_n_epochs = check_int("every_n_epochs", every_n_epochs, minimum=1,
                                        allow_none=True)
        if self.every_n_epochs is None and every_n_steps is None and every_seconds is None:
            raise ValueError("every_n_epochs=None saves at no epoch end; give every_n_steps or "
                             "every_seconds, or every_n_epochs >= 1")
        self.every_n_steps = every_n_steps
        self.every_seconds = None if every_seconds is None else float(every_seconds)
        self.keep, self.on_save_error = keep, on_save_error
        self.formatted = "{" in path
        if self.save_best_only and self.inside_epochs:
            raise ValueError("save_best_only=True saves at epoch ends (when the monitored value "
                             "improves); it cannot be combined with every_n_steps or "
                             "every_seconds: use two ModelCheckpoints")
        if self.formatted and self.inside_epochs:
            try:
                path.format(epoch=1, step=1, batch=1)
            except (KeyError, ValueError, IndexError) as e:
                raise ValueError(f"path={path!r} cannot be formatted inside an epoch ({e}); "
                                 "with every_n_steps or every_seconds use only the fields "
                                 "{epoch}, {step} and {batch}") from None
        if mode == "auto":
            mode = "max" if "acc" in self.monitor else "min"
        self.mode = mode
        self.best = None
        self.last_path = None
        self._files = []            # files written, oldest first (keep=K with fields)
        self._last_save = None      # (time.monotonic() of the last save, steps_trained then)

    @property
    def inside_epochs(self) -> bool:
        """True when this checkpoint also saves inside epochs."""
        return self.every_n_steps is not None or self.every_seconds is not None

    def wants_batches(self):
        """Only a checkpoint that saves inside epochs needs the per-batch hook (which takes
        ``fit`` off the whole-epoch fused kernel)."""
        return self.inside_epochs

    def saves_anywhere(self):
        """Whether a preemption may write its checkpoint through this one: it saves every
        state (not ``save_best_only``) and its path needs no epoch logs."""
        if self.save_best_only:
            return False
        try:
            self._format(epoch=1, step=1, batch=1)
        except ValueError:
            return False
        return True

    # ------------------------------------------------------------------ run
    def _better(self, value):
        if self.best is None:
            return True
        return value < self.best if self.mode == "min" else value > self.best

    def _writes(self):
        strategy = getattr(self.model, "_strategy", None)   # distributed: rank 0 writes
        return strategy is None or strategy.writes_files

    def on_train_begin(self, logs=None):
        self.best = None
        hist = getattr(self.model, "history", None)     # a resumed run: best so far
        past = [v for v in getattr(hist, "history", {}).get(self.monitor, [])
                if isinstance(v, float) and not math.isnan(v)]
        if past:
            self.best = min(past) if self.mode == "min" else max(past)
        self._last_save = (time.monotonic(), self.model.steps_trained)
        if self._writes():
            check_writable("ModelCheckpoint path", self.path)

    def on_batch_end(self, batch, logs=None):
        if not self.inside_epochs:
            return
        steps = self.model.steps_trained
        due = self.every_n_steps is not None and steps % self.every_n_steps == 0
        if not due and self.every_seconds is not None:
            due = time.monotonic() - self._last_save[0] >= self.every_seconds
        if due:
            epoch = self.model.epochs_trained
            self.save(self._format(epoch=epoch + 1, step=steps, batch=batch + 1),
                      f"epoch {epoch + 1}, batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.every_n_epochs is None or (epoch + 1) % self.every_n_epochs:
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
        self.save(self._format(logs, epoch=epoch + 1, step=self.model.steps_trained, batch=0),
                  f"epoch {epoch + 1}")

    def _format(self, logs=None, **fields):
        if not self.formatted:
            return self.path
        try:
            return self.path.format(**{**(logs or {}), **fields})
        except (KeyError, ValueError, IndexError) as e:
            raise ValueError(f"ModelCheckpoint path={self.path!r} cannot be formatted from "
                             f"epoch, step, batch and the logs {sorted(logs or {})}: {e}") \
                from None

    # ------------------------------------------------------------------ writing
    def save(self, path, when=""):
        """Write the checkpoint to ``path`` now (with the run's state: the position inside
        the epoch and the callbacks' states, which the training loop provides); returns
        ``path`` (also on a process that leaves the writing to rank 0), or None when the
        write failed (and ``on_save_error="warn"``). Used at the due steps and epochs, and by a preemption."""
        self._last_save = (time.monotonic(), self.model.steps_trained)
        if not self._writes():          # another process writes it
            self.last_path = path
            return path
        from ..io import save
        earlier = list(self._files)
        if self.formatted:      # the file's own state lists it (a resumed run rotates it out)
            self._files = [p for p in self._files if p != path] + [path]
        run = _run_state(self.model)
        rotate = self._rotate_numbered if (self.keep or 1) > 1 and not self.formatted else None
        try:
            save(self.model, path, run=run, before_replace=rotate)
        except OSError as e:
            self._files = earlier
            kept = (f"the previous checkpoint {self.last_path!r} is intact" if self.last_path
                    else "no earlier checkpoint of this run exists")
            msg = (f"ModelCheckpoint could not write {path!r}" + (f" ({when})" if when else "")
                   + f": {type(e).__name__}: {e}; {kept}")
            if self.on_save_error == "raise":
                raise OSError(e.errno, msg) from e
            warnings.warn(msg + "; training goes on (ModelCheckpoint(on_save_error='raise') "
                          "stops it instead)", RuntimeWarning, stacklevel=2)
            return None
        self.last_path = path
        self._forget_oldest()
        if self.verbose:
            print(f"{when[:1].upper() + when[1:] if when else 'Checkpoint'}: saved the model "
                  f"to {path}")
        return path

    def _forget_oldest(self):
        """keep=K with fields: delete this callback's files beyond the K most recent."""
        if self.keep is None:
            return
        while len(self._files) > self.keep:
            old = self._files.pop(0)
            try:
                os.remove(old)
            except FileNotFoundError:
                pass
            except OSError as e:
                warnings.warn(f"ModelCheckpoint(keep={self.keep}) could not delete the old "
                              f"checkpoint {old!r}: {e}", RuntimeWarning, stacklevel=3)

    def numbered(self, i):
        """The i-th previous checkpoint of a fixed path with keep > 1 (``<stem>.<i><ext>``)."""
        stem, ext = os.path.splitext(self.path)
        return f"{stem}.{i}{ext}"

    def _rotate_numbered(self, path):
        """keep=K, fixed path: shift ``.1`` .. ``.K-2`` one place back, then the current file
        to ``.1`` (a hard link, so ``path`` exists at every moment until the new file
        replaces it; a copy where links are not supported)."""
        for i in range(self.keep - 2, 0, -1):
            if os.path.exists(self.numbered(i)):
                os.replace(self.numbered(i), self.numbered(i + 1))
        if os.path.exists(path):
            first = self.numbered(1)
            if os.path.exists(first):
                os.remove(first)
            try:
                os.link(path, first)
            except OSError:
                import shutil
                shutil.copy2(path, first)

    # ------------------------------------------------------------------ state
    def get_state(self):
        """The files written so far (``keep`` with fields deletes the oldest of them in the
        resumed run too)."""
        if not self.formatted or self.keep is None:
            return None
        return {"path": self.path, "files": list(self._files)}

    def set_state(self, state, weights=None):
        if state["path"] == self.path:
            self._files = list(state["files"])


def _run_state(model):
    run = getattr(model, "_run", None)
    return run.capture() if run is not None else None


def check_writable(what, path):
    """Refuse, before training, a checkpoint ``path`` that cannot be written: its directory
    must exist and take a new file (tried for real: permissions, read-only file systems and
    quotas are what the OS says), and ``path`` must not be a directory. Fields in the
    directory part are not checked (the directory is known only when formatted)."""
    directory = os.path.dirname(os.path.abspath(path))
    if "{" in directory:
        return
    if not os.path.isdir(directory):
        error, kind = (NotADirectoryError, "is not a directory") if os.path.exists(directory) \
            else (FileNotFoundError, "does not exist")
        raise error(f"{what}={path!r} cannot be written: the directory {directory!r} {kind}")
    if "{" not in path and os.path.isdir(path):
        raise IsADirectoryError(f"{what}={path!r} is a directory; expected a file name")
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastdl-write-check.", dir=directory)
    except OSError as e:
        raise PermissionError(f"{what}={path!r} cannot be written: creating a file in "
                              f"{directory!r} fails ({type(e).__name__}: {e})") from None
    os.close(fd)
    os.remove(probe)
