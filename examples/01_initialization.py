"""Initialization (course week 1): zeros vs large random vs He, on the circles dataset.

A 3-layer ReLU net [10, 5, 1] trained by full-batch gradient descent, as in the course:
* zeros: every unit of a layer computes the same thing (symmetry is never broken): 50% accuracy;
* large random (N(0, 10^2)): a huge initial cost (saturated sigmoid) and slow progress;
* He (var 2/fan_in): the cost falls quickly; the best accuracy.

    python examples/01_initialization.py
"""

import fastdl as fd
from _common import accuracy, decision_boundary, figure, save, size, table

X, y = fd.data.make_circles(400, noise=0.08, seed=1)
(Xtr, ytr), (Xte, yte), _ = fd.data.split(X, y, ratios=(0.75, 0.25), seed=0)
epochs = size(15000, 300)

INITS = {"zeros": dict(init="zeros"),
         "large random (x10)": dict(init="normal", init_scale=10.0),
         "he": dict(init="he")}

rows, models = [], {}
for name, kw in INITS.items():
    model = fd.Sequential([fd.Dense(10, activation="relu", **kw),
                           fd.Dense(5, activation="relu", **kw),
                           fd.Dense(1, activation="sigmoid", **kw)],
                          input_dim=2, dtype="float64", seed=3)
    hist = model.fit(Xtr, ytr, optimizer=fd.optim.SGD(lr=0.01), epochs=epochs,
                     batch_size=Xtr.shape[0], verbose=0)          # full-batch GD
    models[name] = model
    rows.append({"init": name, "first cost": hist["loss"][0], "final cost": hist["loss"][-1],
                 "train acc": accuracy(model, Xtr, ytr), "test acc": accuracy(model, Xte, yte)})

table(rows, ["init", "first cost", "final cost", "train acc", "test acc"],
      title=f"initialization: 3-layer ReLU net on circles, {epochs} epochs of full-batch GD")

fig = figure(ncols=3)
if fig is not None:
    for ax, (name, model) in zip(fig[1], models.items()):
        decision_boundary(ax, model, Xtr, ytr, f"{name}: test acc {accuracy(model, Xte, yte):.2f}")
save(fig, "01_initialization.png")
