"""Regularization (course week 1): none vs L2 vs dropout, on a small noisy 2-D dataset.

A network much bigger than 200 noisy points need ([100, 50, 1], ReLU) overfits: a wiggly boundary,
train accuracy far above test. L2 (``l2=lambda``: cost += lambda/(2m) sum ||W||^2) and inverted
dropout (``fd.Dropout(keep_prob)``, training only) both shrink that gap; the picture shows the
smoother boundaries.

    python examples/02_regularization.py
"""

import fastdl as fd
from _common import accuracy, decision_boundary, figure, learning_curves, save, size, table

X, y = fd.data.make_moons(size(600, 300), noise=0.35, seed=2)
(Xtr, ytr), (Xte, yte), _ = fd.data.split(X, y, ratios=(1 / 3, 2 / 3), seed=0)
epochs = size(1000, 60)


def net(keep_prob=None):
    layers = [fd.Dense(100, activation="relu"), fd.Dense(50, activation="relu")]
    if keep_prob is not None:
        layers = [layers[0], fd.Dropout(keep_prob), layers[1], fd.Dropout(keep_prob)]
    return fd.Sequential(layers + [fd.Dense(1, activation="sigmoid")], input_dim=2,
                         dtype="float64", seed=1)


RUNS = {"none": (net(), 0.0), "L2 (lambda=0.7)": (net(), 0.7),
        "dropout (keep_prob=0.7)": (net(0.7), 0.0)}

rows, curves = [], {}
for name, (model, l2) in RUNS.items():
    hist = model.fit(Xtr, ytr, optimizer=fd.optim.Adam(lr=0.01), epochs=epochs,
                     batch_size=Xtr.shape[0], l2=l2, validation_data=(Xte, yte), verbose=0)
    tr, te = accuracy(model, Xtr, ytr), accuracy(model, Xte, yte)
    curves[name] = hist["val_loss"]
    rows.append({"regularization": name, "train acc": tr, "test acc": te, "gap": tr - te,
                 "final cost": hist["loss"][-1]})

table(rows, ["regularization", "train acc", "test acc", "gap", "final cost"],
      title=f"regularization: [100, 50, 1] ReLU net, {Xtr.shape[0]} noisy moons, {epochs} epochs")

fig = figure(ncols=4)
if fig is not None:
    for ax, (name, (model, _)) in zip(fig[1], RUNS.items()):
        decision_boundary(ax, model, Xtr, ytr, f"{name}: test {accuracy(model, Xte, yte):.3f}")
    learning_curves(fig[1][3], curves, "dev cost", logy=True)
save(fig, "02_regularization.png")
