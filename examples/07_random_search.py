"""Hyperparameter search (course week 3): random search on the right scale, coarse to fine,
and early stopping of poor trials.

The learning rate is drawn uniformly in log10 space (``lr = 10**r, r ~ U(-4, 0)``: 1e-4..1e-3
gets as many trials as 0.1..1), the L2 strength too, the width from a list. Round 1 ("coarse")
samples the whole box; round 2 ("fine") samples a box zoomed around the best trials on the same
log scale (``fd.tune.coarse_to_fine``). Every trial reports its dev accuracy each epoch
(``fd.tune.ReportCallback``) and ASHA stops the ones that are clearly behind at epochs 1, 3, 9
(``pruner=fd.tune.ASHA``), so the budget goes to the promising ones.

Trials run one after the other here (``executor="serial"``); drop that argument to run them on
all cores (a spawn process pool), or pass a Dask ``Client`` for a cluster (docs/tuning.md).

    python examples/07_random_search.py
"""

import fastdl as fd
from _common import figure, save, size, table

X, y = fd.data.make_moons(size(2000, 400), noise=0.25, seed=4)
(Xtr, ytr), (Xdev, ydev), _ = fd.data.split(X, y, ratios=(0.8, 0.2), seed=0)
n_trials, epochs = size(12, 3), size(27, 3)


def objective(config, trial):
    width = config["width"]
    model = fd.Sequential([fd.Dense(width, activation="relu"), fd.Dense(width, activation="relu"),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0)
    try:
        model.fit(Xtr, ytr, optimizer=fd.optim.Adam(lr=config["lr"]), epochs=epochs,
                  batch_size=64, l2=config["l2"], validation_data=(Xdev, ydev), verbose=0,
                  callbacks=[fd.tune.ReportCallback(trial, monitor="val_accuracy")])
    except fd.DivergenceError:
        return 0.0
    return model.evaluate(Xdev, ydev)["accuracy"]


space = {"lr": fd.tune.log_uniform(1e-4, 1.0), "width": fd.tune.choice([8, 16, 32, 64]),
         "l2": fd.tune.log_uniform(1e-4, 1.0)}

if __name__ == "__main__":
    result = fd.tune.coarse_to_fine(objective, space, n_trials=n_trials, rounds=2, top_k=3,
                                    seed=0, executor="serial",
                                    pruner=fd.tune.ASHA(min_resource=1, eta=3,
                                                        max_resource=epochs))
    stage = {0: "coarse", 1: "fine"}
    rows = [{"stage": stage[t["round"]], "lr": f"{t['config']['lr']:.2e}",
             "width": t["config"]["width"], "l2": f"{t['config']['l2']:.1e}",
             "dev acc": t["score"], "status": t["status"], "epochs": len(t["reports"])}
            for t in sorted(result.trials, key=lambda t: -(t["score"] or 0.0))]
    table(rows[:10], ["stage", "lr", "width", "l2", "dev acc", "status", "epochs"],
          title=f"random search, coarse to fine: {len(result.trials)} trials of up to {epochs} "
                f"epochs, {len(result.pruned_trials)} stopped early by ASHA (best 10)")
    lr_box = result.spaces[1]["lr"]
    print(f"fine round's lr box: {lr_box.lo:.2e} .. {lr_box.hi:.2e} (log scale)")
    print("best:", result.best)

    fig = figure(ncols=1, size=(6.0, 3.8))
    if fig is not None:
        ax = fig[1][0]
        for (rnd, status), marker in (((0, "ok"), "o"), ((1, "ok"), "^"),
                                      ((0, "pruned"), "x"), ((1, "pruned"), "+")):
            pts = [t for t in result.trials if t["round"] == rnd and t["status"] == status]
            ax.scatter([t["config"]["lr"] for t in pts], [t["score"] for t in pts],
                       marker=marker, label=f"{stage[rnd]}, {status}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("dev accuracy")
        ax.set_title("random search over the learning rate", fontsize=9)
        ax.legend(fontsize=7)
    save(fig, "07_random_search.png")
