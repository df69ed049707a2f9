"""Batch normalization (course week 3): a deep ReLU net with and without BatchNorm.

Batch norm normalizes each hidden layer's pre-activations over the mini-batch
(``z_norm = (z - mu) / sqrt(var + eps)``, then ``gamma * z_norm + beta``) and sits between the
linear part and the activation: ``Dense(n) -> BatchNorm() -> Activation("relu")``. It makes a
deep net train faster and tolerate larger learning rates; inference uses running averages of
the batch statistics.

    python examples/05_batch_norm.py
"""

import numpy as np

import fastdl as fd
from _common import figure, learning_curves, save, size, table

X, y = fd.data.make_teacher(size(6000, 1500), n_features=20, n_classes=4, hidden=32, seed=0)
(Xtr, ytr), (Xdev, ydev), _ = fd.data.split(X, y, ratios=(0.8, 0.2), seed=0)
epochs = size(15, 3)
depth, width = 6, 64


def net(batch_norm):
    layers = []
    for _ in range(depth):
        if batch_norm:
            layers += [fd.Dense(width, init="he"), fd.BatchNorm(), fd.Activation("relu")]
        else:
            layers += [fd.Dense(width, activation="relu", init="he")]
    return fd.Sequential(layers + [fd.Dense(4, activation="softmax")], input_dim=20, seed=1)


rows, curves = [], {}
for lr in (0.01, 0.1, 1.0):
    for bn in (False, True):
        name = f"{'BatchNorm' if bn else 'plain'}, lr={lr}"
        model = net(bn)
        try:
            with np.errstate(all="ignore"):          # a diverging run overflows on its way
                hist = model.fit(Xtr, ytr, optimizer=fd.optim.SGD(lr=lr), epochs=epochs,
                                 batch_size=64, validation_data=(Xdev, ydev), verbose=0)
        except fd.DivergenceError:
            rows.append({"network": name, "after 1 epoch": "diverged", "dev acc": "diverged"})
            continue
        curves[name] = hist["val_accuracy"]
        rows.append({"network": name, "after 1 epoch": hist["val_accuracy"][0],
                     "dev acc": hist["val_accuracy"][-1], "final cost": hist["loss"][-1]})

table(rows, ["network", "after 1 epoch", "dev acc", "final cost"],
      title=f"batch norm: {depth} hidden ReLU layers of {width}, teacher data (4 classes), "
            f"SGD, {epochs} epochs")

fig = figure(ncols=1, size=(6.0, 4.0))
if fig is not None:
    learning_curves(fig[1][0], curves, "dev accuracy per epoch", ylabel="dev accuracy")
save(fig, "05_batch_norm.png")
