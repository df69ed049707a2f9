"""What ``fit`` prints while it trains.

    verbose=0   nothing
    verbose=1   a progress bar redrawn in place when stdout is a terminal; otherwise (a log file,
                a pipe, a notebook capture) one line per epoch
    verbose=2   one line per epoch, always

The bar shows samples/s, ``loss``: the mean cost of the epoch's batches so far (weighted by
batch size, as Keras shows it), and the epoch's ETA while it runs; at the end of an epoch that
same loss (the History's ``loss``, one number, not a second smoothed one), the training
accuracy, the dev metrics and the ETA of the whole run.

The bar costs one clock read per batch; it is redrawn at most every ``interval`` seconds. On the
fused whole-epoch path (tiny nets) there are no per-batch updates: the bar is drawn once per
epoch.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _duration(s):
    if not np.isfinite(s):
        return "?"
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def _metrics(logs):
    return " - ".join(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}"
                      for k, v in logs.items())


class EpochLine:
    """One line per epoch (what ``fit`` printed before the bar existed)."""

    per_batch = False

    def __init__(self, stream=None):
        self.stream = stream

    def _out(self):
        return self.stream if self.stream is not None else sys.stdout

    def on_train_begin(self, first_epoch, last_epoch):
        self.last_epoch = last_epoch

    def on_epoch_begin(self, epoch, sizes):
        pass

    def update(self, batch, size, cost):
        pass

    def on_epoch_end(self, epoch, logs, costs, sizes, elapsed):
        n = int(np.sum(sizes))
        print(f"Epoch {epoch + 1}/{self.last_epoch} - {elapsed:.3f}s "
              f"({n / max(elapsed, 1e-9):,.0f} samples/s) - {_metrics(logs)}",
              file=self._out(), flush=True)


class ProgressBar(EpochLine):
    """A per-epoch bar redrawn in place (``\\r``); see the module docstring."""

    per_batch = True

    def __init__(self, stream=None, width=24, interval=0.1):
        super().__init__(stream)
        self.width, self.interval = int(width), float(interval)

    def on_train_begin(self, first_epoch, last_epoch):
        super().on_train_begin(first_epoch, last_epoch)
        self.epoch_times = []
        self._len = 0

    def on_epoch_begin(self, epoch, sizes):
        self.epoch = epoch
        self.total = int(np.sum(sizes))
        self.n_batches = len(sizes)
        self.seen = 0
        self._cost_sum, self._cost_rows = 0.0, 0      # the epoch's running mean loss
        self.t0 = self._drawn = time.perf_counter()
        self._draw(self.t0, "")

    def update(self, batch, size, cost):
        self.seen += size
        if cost is not None:
            self._cost_sum += float(cost) * size
            self._cost_rows += size
        now = time.perf_counter()
        if now - self._drawn >= self.interval:
            self._drawn = now
            rate = self.seen / max(now - self.t0, 1e-9)
            eta = (self.total - self.seen) / max(rate, 1e-9)
            self._draw(now, f" - {rate:,.0f} samples/s{self._cost()} - ETA {_duration(eta)}")

    def _cost(self):
        if not self._cost_rows:
            return ""
        return f" - loss: {self._cost_sum / self._cost_rows:.4g}"

    def _bar(self):
        done = int(self.width * self.seen / max(self.total, 1))
        head = ">" if done < self.width else ""
        return "[" + "=" * done + head + "." * (self.width - done - len(head)) + "]"

    def _draw(self, now, tail, end=""):
        digits = len(f"{self.total:,}")
        line = (f"Epoch {self.epoch + 1}/{self.last_epoch} {self._bar()} "
                f"{self.seen:>{digits},}/{self.total:,}{tail}")
        out = self._out()
        pad = max(0, self._len - len(line))
        out.write("\r" + line + " " * pad + end)
        out.flush()
        self._len = 0 if end else len(line)

    def on_epoch_end(self, epoch, logs, costs, sizes, elapsed):
        self.seen = self.total              # fused path: no per-batch updates
        self.epoch_times.append(elapsed)
        left = self.last_epoch - (epoch + 1)
        eta = left * float(np.mean(self.epoch_times[-5:]))
        rate = self.total / max(elapsed, 1e-9)
        tail = (f" - {_duration(elapsed)} {rate:,.0f} samples/s - {_metrics(logs)}"
                + (f" - ETA {_duration(eta)}" if left else ""))
        self._draw(time.perf_counter(), tail, end="\n")


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def make_progress(verbose, stream=None):
    """The printer for ``fit(verbose=...)``: None, a ProgressBar or an EpochLine."""
    if not verbose:
        return None
    out = sys.stdout if stream is None else stream
    if verbose == 1 and _isatty(out):
        return ProgressBar(stream)
    return EpochLine(stream)
