"""``History.plot``: learning curves as a PNG (matplotlib, through the ``plot`` extra).

Uses matplotlib's object API with the Agg canvas (no pyplot, no global backend change), so it
works headless and never touches the caller's figures.
"""

from __future__ import annotations

import os


def require_matplotlib(what="this"):
    """matplotlib's Figure and Agg canvas, or an ImportError that names the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"{what} needs matplotlib, which is not installed; install the plot "
                          "extra: pip install \"fastdl[plot]\" (or pip install matplotlib)") \
            from None
    return Figure, FigureCanvasAgg


def new_figure(ncols=1, size=(5.0, 3.6), what="this"):
    Figure, Canvas = require_matplotlib(what)
    fig = Figure(figsize=(size[0] * ncols, size[1]), dpi=100)
    Canvas(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def save_png(fig, path):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"path={path!r}: the directory {directory!r} does not exist")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_history(history, path, metric=None, title=None):
    h = history.history
    if not h.get("loss"):
        raise ValueError("the History is empty (no epoch recorded); train first")
    if metric is None:
        metric = "accuracy" if ("accuracy" in h or "val_accuracy" in h) else None
    elif metric not in h and f"val_{metric}" not in h:
        raise ValueError(f"metric={metric!r} was not recorded; the History has {sorted(h)}")
    fig, axes = new_figure(2 if metric else 1, what="History.plot")
    epochs = [e + 1 for e in history.epoch]
    ax = axes[0]
    ax.plot(epochs, h["loss"], label="train cost (L2 included)")
    if "val_loss" in h:
        ax.plot(epochs[-len(h["val_loss"]):], h["val_loss"], label="dev cost")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cost")
    ax.set_title(title or "cost")
    ax.legend()
    if metric:
        ax = axes[1]
        for key, label in ((metric, f"train {metric}"), (f"val_{metric}", f"dev {metric}")):
            if key in h:
                ax.plot(epochs[-len(h[key]):], h[key], label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.legend()
    return save_png(fig, path)
