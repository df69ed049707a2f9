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


def _layer_series(h, stat):
    """{layer: values} of the History keys ``"<stat>/<layer>"`` in recording order."""
    prefix = stat + "/"
    return {k[len(prefix):]: v for k, v in h.items() if k.startswith(prefix)}


def plot_per_layer(history, path, stat="grad_norm", title=None):
    """``History.plot(path, per_layer=stat)``: a GradientMonitor statistic per layer."""
    h = history.history
    series = _layer_series(h, stat) if isinstance(stat, str) else {}
    if not series:
        stats = sorted({k.split("/", 1)[0] for k in h if "/" in k})
        raise ValueError(f"per_layer={stat!r} was not recorded; expected one of {stats} "
                         "(recorded by fd.GradientMonitor)" if stats else
                         f"per_layer={stat!r}: the History holds no per-layer series; train "
                         "with callbacks=[fd.GradientMonitor()]")
    log = stat.endswith("norm") or stat.endswith("ratio")
    fig, (ax, ax2) = new_figure(2, what="History.plot")
    for name, vals in series.items():
        ax.plot(range(1, len(vals) + 1), vals, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(stat)
    ax.set_title(title or f"{stat} per layer")
    if len(series) <= 12:
        ax.legend(fontsize="small")
    names = list(series)
    last = [series[n][-1] for n in names]
    ax2.plot(range(1, len(names) + 1), last, marker="o")
    ax2.set_xlabel("layer (input -> output)")
    ax2.set_ylabel(stat)
    ax2.set_title(f"{stat} by depth, last epoch")
    if log:
        for a in (ax, ax2):
            a.set_yscale("log")
    return save_png(fig, path)
