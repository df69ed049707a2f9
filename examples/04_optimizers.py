"""Optimizers (course week 2): mini-batch GD vs momentum vs Adam, with and without learning-rate
decay, on the moons dataset with the course's 3-layer net [5, 2, 1].

Without decay at the small learning rate the course uses (0.0007), GD and momentum are still
far from a good boundary after 5000 epochs while Adam is there. With a larger initial rate and
the course's scheduled decay (``StaircaseDecay``: lr0 / (1 + decay_rate * floor(epoch / 1000)))
all three get there.

    python examples/04_optimizers.py
"""

import fastdl as fd
from _common import accuracy, decision_boundary, figure, learning_curves, save, size, table

X, y = fd.data.make_moons(300, noise=0.2, seed=3)
epochs = size(5000, 200)
interval = size(1000, 40)

RUNS = {  # name: (optimizer factory, schedule factory or None)
    "GD": (lambda: fd.optim.SGD(lr=0.0007), None),
    "momentum": (lambda: fd.optim.Momentum(lr=0.0007, beta=0.9), None),
    "Adam": (lambda: fd.optim.Adam(lr=0.0007), None),
    "GD + decay": (lambda: fd.optim.SGD(lr=0.1),
                   lambda: fd.optim.StaircaseDecay(0.1, decay_rate=1.0, interval=interval)),
    "momentum + decay": (lambda: fd.optim.Momentum(lr=0.1, beta=0.9),
                         lambda: fd.optim.StaircaseDecay(0.1, decay_rate=1.0, interval=interval)),
    "Adam + decay": (lambda: fd.optim.Adam(lr=0.01),
                     lambda: fd.optim.StaircaseDecay(0.01, decay_rate=1.0, interval=interval)),
}

rows, curves, models = [], {}, {}
for name, (make_opt, make_schedule) in RUNS.items():
    model = fd.Sequential([fd.Dense(5, activation="relu"), fd.Dense(2, activation="relu"),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, seed=2)
    hist = model.fit(X, y, optimizer=make_opt(), epochs=epochs, batch_size=64, verbose=0,
                     lr_schedule=make_schedule() if make_schedule else None)
    curves[name], models[name] = hist["loss"], model
    rows.append({"optimizer": name, "final lr": hist["lr"][-1], "final cost": hist["loss"][-1],
                 "accuracy": accuracy(model, X, y)})

table(rows, ["optimizer", "final lr", "final cost", "accuracy"],
      title=f"optimizers: 3-layer net on moons, mini-batches of 64, {epochs} epochs")

fig = figure(ncols=4, nrows=2)
if fig is not None:
    axes = fig[1]
    learning_curves(axes[0], {k: v for k, v in curves.items() if "decay" not in k},
                    "cost, no decay")
    learning_curves(axes[4], {k: v for k, v in curves.items() if "decay" in k},
                    "cost, with decay")
    for ax, name in zip(axes[1:4] + axes[5:8], models):
        decision_boundary(ax, models[name], X, y,
                          f"{name}: acc {accuracy(models[name], X, y):.3f}")
save(fig, "04_optimizers.png")
