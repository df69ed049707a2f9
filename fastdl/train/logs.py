"""Run logs a spreadsheet or a dashboard can read: ``CSVLogger`` and ``TensorBoard``.

Both follow the run, not the process: epochs and steps are the model's own counters
(``model.epochs_trained``, ``model.steps_trained``), which a resumed run continues, so a run
broken and resumed from a checkpoint logs what the unbroken run logs, each epoch once:

* ``CSVLogger`` keeps the rows of the epochs before the one training resumes from and drops
  the later ones (written after the checkpoint, by the run that then died), rewriting the file
  atomically before the first epoch; then one row per epoch, flushed to disk as it ends.
* ``TensorBoard`` writes a ``SessionLog.START`` event at the first step training resumes with;
  TensorBoard's reader then discards the events the broken run wrote at that step or later
  (``purge_orphaned_data``, on by default in TensorBoard and in its ``EventAccumulator``).

Under ``fit(distributed=True)`` only rank 0 writes (every rank has the same logs). Paths are
checked when the callback is made and again before the first epoch: a bad one is an error
naming the argument before any training. Neither affects training: the parameters after a
logged run are bit-identical to those of an unlogged one.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time

from .._validation import check_int
from .callbacks import Callback


def _path_arg(name, value):
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name}={value!r} is invalid; expected a non-empty path (str or "
                        "os.PathLike)")
    return value


def _writable_parent(name, path, what):
    """The nearest existing ancestor directory of ``path`` must let us create ``path``."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{name}={path!r} is invalid: {parent!r} is a file, so the {what} "
                         "cannot be created under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{name}={path!r} is not writable: no permission to create "
                              f"the {what} in {parent!r}")


def _rank_zero(model):
    dist = getattr(model, "_dist", None)
    return dist is None or dist.rank == 0


def _resumed(model):
    """Whether this fit continues a run begun earlier (``resume_from``): the run's first
    epoch (saved in the checkpoint) is before the epoch training starts from."""
    return getattr(model, "_fit_start_epoch", model.epochs_trained) < model.epochs_trained


def _number(v):
    """A log value as CSV text: floats in full precision (``repr`` round-trips)."""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)
    return str(v)


class CSVLogger(Callback):
    """One CSV row per epoch: ``epoch`` (0-based, the model's epoch counter) and the epoch's
    logs (``loss``, ``lr``, with validation data ``val_loss``, ``val_accuracy`` ...), floats in
    full precision. Keras' ``CSVLogger`` with the same arguments.

    ``append=False`` starts a new file for a new run; ``append=True`` keeps the rows already
    in ``path``. A resumed run (``fit(..., resume_from=...)``) always continues the file: rows
    of epochs before the one it resumes from are kept, later rows are dropped (they belong to
    the broken run after its checkpoint), so the file ends as the unbroken run's would, one
    header, each epoch once. Each row is flushed and synced to disk when its epoch ends.
    """

    def __init__(self, path, append=False, separator=","):
        self.path = _path_arg("path", path)
        if not isinstance(append, bool):
            raise TypeError(f"append={append!r} is invalid; expected True or False")
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"separator={separator!r} is invalid; expected one character")
        if os.path.isdir(self.path):
            raise ValueError(f"path={self.path!r} is a directory; expected a file path for "
                             "the CSV log")
        _writable_parent("path", self.path, "CSV log")
        self.append, self.separator = append, separator
        self._header, self._file, self._active = None, None, False

    # --- reading back and rewriting ----------------------------------------------------------
    def _read(self):
        """(header, rows) of an existing log; rows are lists of cells."""
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f, delimiter=self.separator))
        if not rows:
            return None, []
        header, rows = rows[0], rows[1:]
        if not header or header[0] != "epoch":
            raise ValueError(f"path={self.path!r} exists and is not a CSVLogger file (its "
                             f"first column is {header[:1]!r}, expected 'epoch'); pass "
                             "another path or append=False")
        good = []
        for r in rows:               # a row cut short by a crash mid-write is dropped
            try:
                int(r[0])
            except (ValueError, IndexError):
                continue
            if len(r) == len(header):
                good.append(r)
        return header, good

    def _rewrite(self, header, rows):
        """Write header + rows to ``path`` atomically (a temporary file, then rename)."""
        tmp = f"{self.path}.tmp-{os.getpid()}"
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f, delimiter=self.separator, lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    # --- callback hooks ----------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._active = _rank_zero(self.model)
        if not self._active:
            return
        start = self.model.epochs_trained
        header, rows = None, []
        try:
            if os.path.exists(self.path) and (self.append or _resumed(self.model)):
                header, rows = self._read()
                rows = [r for r in rows if int(r[0]) < start]
            if header is None:
                open(self.path, "w").close()        # fails here, before training, if it must
            else:
                self._rewrite(header, rows)
            self._file = open(self.path, "a", newline="")
        except OSError as e:
            raise OSError(f"path={self.path!r}: cannot write the CSV log ({e})") from e
        self._header = header

    def on_epoch_end(self, epoch, logs=None):
        if not self._active:
            return
        # the model's epoch counter (incremented before on_epoch_end), not the callback's
        # ``epoch``, which counts from 0 in every fit call as in Keras: rows stay unique when
        # a later fit appends (append=True)
        row = {"epoch": self.model.epochs_trained - 1, **(logs or {})}
        if self._header is None or any(k not in self._header for k in row):
            old = self._header
            self._header = (old or []) + [k for k in row if k not in (old or [])]
            if old is not None:                     # new columns: rewrite with the wider header
                self._file.close()
                _, rows = self._read()
                pad = [""] * (len(self._header) - len(old))
                self._rewrite(self._header, [r + pad for r in rows])
                self._file = open(self.path, "a", newline="")
            else:
                self._write_line(self._header)
        self._write_line([_number(row[k]) if k in row else "" for k in self._header])

    def _write_line(self, cells):
        buf = io.StringIO()
        csv.writer(buf, delimiter=self.separator, lineterminator="\n").writerow(cells)
        self._file.write(buf.getvalue())
        self._file.flush()
        os.fsync(self._file.fileno())

    def on_train_end(self, logs=None):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self):
        return f"CSVLogger({self.path!r}, append={self.append})"


class TensorBoard(Callback):
    """Scalars for TensorBoard (``tensorboard --logdir <log_dir>``), written with the
    ``tensorboard`` package's own event writer (``pip install "fastdl[tensorboard]"``).

    Steps are the model's update counter (``model.steps_trained``), for every tag:

    * every ``every_n_steps`` updates: ``step/loss`` (that batch's cost, L2 term included),
      ``step/lr``, ``step/samples_per_sec`` (examples over wall time since the last point);
    * every epoch, at its last step: ``epoch/<key>`` for each key of the epoch's logs
      (``loss``, ``lr``, ``val_loss``, ``val_accuracy`` ...), ``epoch/epoch`` (the 0-based
      epoch index) and ``epoch/samples_per_sec`` (validation time included);
    * with ``fd.GradientMonitor`` in the callbacks: its per-layer statistics under their own
      names (``grad_norm/dense_1``, ``update_ratio/dense_2`` ...), per epoch, whatever the
      order of the two callbacks (they are written when the next epoch begins, and at the end).

    A per-batch hook routes ``fit`` through the step path (the whole-epoch kernel of tiny
    nets has none). Measured cost with ``CSVLogger``, every 100 steps, on the 784-256-128-10
    net at batch 256: benchmarks/RESULTS_longjobs.md.
    """

    def __init__(self, log_dir, every_n_steps=100):
        self.log_dir = _path_arg("log_dir", log_dir)
        self.every_n_steps = check_int("every_n_steps", every_n_steps, minimum=1)
        if os.path.exists(self.log_dir) and not os.path.isdir(self.log_dir):
            raise ValueError(f"log_dir={self.log_dir!r} is a file; expected a directory "
                             "(existing or to be created) for the event files")
        _writable_parent("log_dir", self.log_dir, "log directory")
        self._writer = None
        self._active = False

    # --- writing -----------------------------------------------------------------------------
    def _open(self):
        try:
            from tensorboard.compat.proto import event_pb2, summary_pb2
            from tensorboard.summary.writer.event_file_writer import EventFileWriter
        except ImportError as e:
            raise ImportError("fd.callbacks.TensorBoard needs the tensorboard package: pip "
                              "install \"fastdl[tensorboard]\" (or tensorboard)") from e
        try:
            os.makedirs(self.log_dir, exist_ok=True)
            probe = os.path.join(self.log_dir, f".fastdl-probe-{os.getpid()}")
            open(probe, "w").close()
            os.remove(probe)
        except OSError as e:
            raise OSError(f"log_dir={self.log_dir!r}: cannot write event files there "
                          f"({e})") from e
        self._event, self._summary = event_pb2, summary_pb2
        self._writer = EventFileWriter(self.log_dir, flush_secs=30)

    def _scalars(self, step, values):
        Value = self._summary.Summary.Value
        summary = self._summary.Summary(value=[Value(tag=k, simple_value=float(v))
                                               for k, v in values.items()])
        self._writer.add_event(self._event.Event(wall_time=time.time(), step=int(step),
                                                 summary=summary))

    # --- callback hooks ----------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._active = _rank_zero(self.model)
        if not self._active:
            return
        if self._writer is None:
            self._open()
        # TensorBoard's reader drops the events at this step or later written before (a broken
        # run's, after its checkpoint); steps up to steps_trained are the run's, kept
        start = self._event.SessionLog(status=self._event.SessionLog.START)
        self._writer.add_event(self._event.Event(wall_time=time.time(),
                                                 step=int(self.model.steps_trained) + 1,
                                                 session_log=start))
        self._rows = self._epoch_rows = 0
        self._t = time.perf_counter()
        self._monitor_seen = self._monitor_lengths()
        self._last_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if not self._active:
            return
        self._write_monitor()
        self._epoch_rows = 0
        self._t_epoch = time.perf_counter()

    def on_batch_end(self, batch, logs=None):
        if not self._active:
            return
        n = int((logs or {}).get("size", 0))
        self._rows += n
        self._epoch_rows += n
        step = self.model.steps_trained
        if step % self.every_n_steps:
            return
        now = time.perf_counter()
        values = {"step/lr": self.model.optimizer.lr,
                  "step/samples_per_sec": self._rows / max(now - self._t, 1e-9)}
        loss = (logs or {}).get("loss")
        if loss is not None:
            values["step/loss"] = loss
        self._scalars(step, values)
        self._rows, self._t = 0, now

    def on_epoch_end(self, epoch, logs=None):
        if not self._active:
            return
        values = {f"epoch/{k}": v for k, v in (logs or {}).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        values["epoch/epoch"] = self.model.epochs_trained - 1    # the model's (see CSVLogger)
        elapsed = time.perf_counter() - self._t_epoch
        if self._epoch_rows:
            values["epoch/samples_per_sec"] = self._epoch_rows / max(elapsed, 1e-9)
        self._scalars(self.model.steps_trained, values)
        self._last_epoch = (epoch, self.model.steps_trained)

    def on_train_end(self, logs=None):
        if not self._active:
            return
        self._write_monitor()
        self._writer.flush()

    # --- GradientMonitor's per-layer statistics ---------------------------------------------
    def _monitor_lengths(self):
        hist = getattr(getattr(self.model, "history", None), "history", {})
        return {k: len(v) for k, v in hist.items() if "/" in k}

    def _write_monitor(self):
        """The monitor's figures of the epoch that ended (it appends them to model.history at
        its own on_epoch_end, which may run after ours)."""
        if self._last_epoch is None:
            return
        hist = self.model.history.history
        now = self._monitor_lengths()
        values = {k: hist[k][-1] for k, n in now.items() if n > self._monitor_seen.get(k, 0)}
        self._monitor_seen = now
        if values:
            self._scalars(self._last_epoch[1], values)
        self._last_epoch = None

    def close(self):
        """Flush and close the event file (``on_train_end`` only flushes it, so the callback
        can serve the next ``fit`` of the run)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __repr__(self):
        return f"TensorBoard({self.log_dir!r}, every_n_steps={self.every_n_steps})"
