"""Helpers shared by the examples: sizes, where pictures go, tables, decision-boundary plots.

    FASTDL_EXAMPLES_SMALL=1   tiny sizes (the smoke test, tests/test_examples.py)
    FASTDL_EXAMPLES_OUT=dir   where pictures are written (default: ./out)

Pictures need matplotlib (pip install "fastdl[plot]"); without it the examples print their
tables and say that no picture was written.
"""

from __future__ import annotations

import os
import time

import numpy as np

SMALL = os.environ.get("FASTDL_EXAMPLES_SMALL", "") not in ("", "0")
OUT = os.environ.get("FASTDL_EXAMPLES_OUT", "out")


def size(full, small):
    """``small`` in smoke-test mode, else ``full``."""
    return small if SMALL else full


def table(rows, columns, title=None):
    """Print rows (dicts) as an aligned text table; returns the text."""
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ([title] if title else []) + [
        "  ".join(c.ljust(w) for c, w in zip(columns, widths)),
        "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w)
                        for v, w in zip(row, widths)) for row in cells]
    text = "\n".join(lines)
    print(text)
    return text


def _numeric(text):
    try:
        float(text.replace(",", ""))
        return True
    except ValueError:
        return False


def figure(ncols=1, nrows=1, size=(4.0, 3.6)):
    """(fig, axes) from matplotlib's object API (no pyplot), or None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=90)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(ncols * nrows)]
    return fig, axes


def save(fig_axes, name):
    """Write the figure to OUT/name; prints where (or why not). Returns the path or None."""
    if fig_axes is None:
        print("(matplotlib is not installed: no picture; pip install \"fastdl[plot]\")")
        return None
    fig = fig_axes[0]
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    fig.tight_layout()
    fig.savefig(path, format="png")
    print(f"picture: {path}")
    return path


def decision_boundary(ax, model, X, y, title="", steps=150):
    """The model's predicted class over the plane behind the points (2-D inputs)."""
    pad = 0.5
    x0 = np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, steps)
    x1 = np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, steps)
    g0, g1 = np.meshgrid(x0, x1)
    z = model.predict(np.c_[g0.ravel(), g1.ravel()]).reshape(g0.shape)
    ax.contourf(g0, g1, z, alpha=0.35, cmap="coolwarm")
    ax.scatter(X[:, 0], X[:, 1], c=y, s=6, cmap="coolwarm", edgecolors="none")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def learning_curves(ax, curves, title="", ylabel="cost", logy=False):
    """curves: {label: list of values per epoch}."""
    for label, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def accuracy(model, X, y):
    return model.evaluate(X, y)["accuracy"]


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def rss_bytes():
    """Resident set size of this process now (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return 0


class PeakRSS:
    """Highest RSS seen while the block runs (sampled every 20 ms by a thread), in bytes."""

    def __enter__(self):
        import threading
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()

        def watch():
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, rss_bytes())
        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
