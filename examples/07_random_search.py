"""Hyperparameter search (course week 3): random search on a log scale.

Sample the learning rate uniformly in log10 space (``lr = 10**r, r ~ U(-4, 0)``), since 0.0001
to 0.001 matters as much as 0.1 to 1, together with the hidden width and the L2 strength; train
each candidate briefly, rank by dev accuracy, then refine around the best ("coarse to fine").
The loop below is the whole method (``fastdl.tune``, where present, packages it with executors
and a result store).

    python examples/07_random_search.py
"""

import numpy as np

import fastdl as fd
from _common import figure, save, size, table

X, y = fd.data.make_moons(size(2000, 400), noise=0.25, seed=4)
(Xtr, ytr), (Xdev, ydev), _ = fd.data.split(X, y, ratios=(0.8, 0.2), seed=0)
n_trials, epochs = size(24, 4), size(40, 4)
rng = np.random.default_rng(0)


def objective(lr, width, l2):
    model = fd.Sequential([fd.Dense(width, activation="relu"), fd.Dense(width, activation="relu"),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0)
    try:
        model.fit(Xtr, ytr, optimizer=fd.optim.Adam(lr=lr), epochs=epochs, batch_size=64,
                  l2=l2, verbose=0)
    except fd.DivergenceError:
        return 0.0
    return model.evaluate(Xdev, ydev)["accuracy"]


def sample(lo_lr, hi_lr):
    return {"lr": float(10 ** rng.uniform(np.log10(lo_lr), np.log10(hi_lr))),
            "width": int(rng.choice([8, 16, 32, 64])),
            "l2": float(10 ** rng.uniform(-4, 0))}


trials = []
for stage in ("coarse", "fine"):
    lo, hi = 1e-4, 1.0
    if stage == "fine":                  # zoom into a decade around the best so far
        best_lr = max(trials, key=lambda t: t["dev acc"])["lr"]
        lo, hi = best_lr / 3, min(best_lr * 3, 1.0)
    for _ in range(n_trials // 2):
        hp = sample(lo, hi)
        trials.append({"stage": stage, **hp, "dev acc": objective(**hp)})

ranked = sorted(trials, key=lambda t: -t["dev acc"])
table([{**t, "lr": f"{t['lr']:.2e}", "l2": f"{t['l2']:.1e}"} for t in ranked[:8]],
      ["stage", "lr", "width", "l2", "dev acc"],
      title=f"random search: {len(trials)} trials of {epochs} epochs (best 8)")

fig = figure(ncols=1, size=(6.0, 3.8))
if fig is not None:
    ax = fig[1][0]
    for stage, marker in (("coarse", "o"), ("fine", "^")):
        pts = [t for t in trials if t["stage"] == stage]
        ax.scatter([t["lr"] for t in pts], [t["dev acc"] for t in pts], marker=marker,
                   label=stage)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("dev accuracy")
    ax.set_title("random search over the learning rate", fontsize=9)
    ax.legend(fontsize=7)
save(fig, "07_random_search.png")
