"""Softmax regression (course week 3) on a multi-class set: 3 interleaved spirals.

The output layer ``Dense(3, activation="softmax")`` is fused with categorical cross-entropy
(logits inside, a stable log-sum-exp); labels are integers 0..C-1 (or one-hot rows, see
``fd.data.one_hot``). ``predict`` returns the class index, ``predict_proba`` the probabilities.
A linear softmax classifier cannot separate spirals; one hidden layer can.

    python examples/06_softmax.py
"""

import numpy as np

import fastdl as fd
from _common import accuracy, decision_boundary, figure, save, size, table

X, y = fd.data.make_spirals(size(3000, 600), n_classes=3, noise=0.2, seed=0)
splits = fd.data.split(X, y, ratios=(0.8, 0.1, 0.1), seed=0)      # stratified by class
(Xtr, ytr), (Xdev, ydev), (Xte, yte) = splits
epochs = size(300, 20)

MODELS = {"linear softmax": [],
          "1 hidden layer (64)": [fd.Dense(64, activation="relu")],
          "2 hidden layers (64, 64)": [fd.Dense(64, activation="relu"),
                                       fd.Dense(64, activation="relu")]}
rows, trained = [], {}
for name, hidden in MODELS.items():
    model = fd.Sequential(hidden + [fd.Dense(3, activation="softmax")], input_dim=2, seed=0)
    model.fit(Xtr, ytr, optimizer=fd.optim.Adam(lr=0.01), epochs=epochs, batch_size=64,
              verbose=0)
    trained[name] = model
    rows.append({"model": name, "params": model.count_params(),
                 "train acc": accuracy(model, Xtr, ytr), "dev acc": accuracy(model, Xdev, ydev),
                 "test acc": accuracy(model, Xte, yte)})
table(rows, ["model", "params", "train acc", "dev acc", "test acc"],
      title=f"softmax on 3 spirals ({Xtr.shape[0]} train examples, {epochs} epochs of Adam)")

best = trained["2 hidden layers (64, 64)"]
pred = best.predict(Xte)
confusion = np.zeros((3, 3), dtype=int)
np.add.at(confusion, (yte, pred), 1)
print("\nconfusion matrix of the 2-layer net on test (rows: true class, columns: predicted)")
table([{"class": str(c), **{f"pred {k}": str(confusion[c, k]) for k in range(3)}}
       for c in range(3)], ["class", "pred 0", "pred 1", "pred 2"])
proba = best.predict_proba(Xte[:3]).astype(np.float64)
print("\npredict_proba of 3 test points (rows sum to 1):", np.round(proba, 3).tolist())

fig = figure(ncols=3)
if fig is not None:
    for ax, (name, model) in zip(fig[1], trained.items()):
        decision_boundary(ax, model, Xtr, ytr, f"{name}: test {accuracy(model, Xte, yte):.3f}")
save(fig, "06_softmax.png")
