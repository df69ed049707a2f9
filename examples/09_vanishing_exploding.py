"""Vanishing and exploding gradients (course 2, week 1) seen with fd.GradientMonitor.

A 20-layer tanh net (19 hidden layers of 32 units) on the moons dataset, trained with
mini-batch gradient descent from four starting points:

* tiny weights N(0, 0.01^2): every layer multiplies the backward signal by ~0.01 * sqrt(32)
  << 1, so the first layers get gradients around 1e-30: the monitor flags *vanishing*, the
  net stays at chance;
* large weights N(0, 1): the gain per layer is > 1 (units saturate, but sqrt(32) * 1 wins),
  the gradient grows ~1.6x per layer toward the input: the monitor flags *exploding* and the
  huge steps scramble the weights;
* the same large weights with gradient clipping (``global_clipnorm=1``, PyTorch's
  ``clip_grad_norm_``): the gradients still explode (the monitor still says so), but every
  step is bounded (step/|W| ~1e-3 instead of ~1), so the weights are no longer scrambled.
  The saturated forward pass still learns nothing in 30 epochs: clipping treats the symptom,
  initialization the cause;
* LeCun initialization (var 1/fan_in, the course's "Xavier" for tanh): gain ~1 per layer,
  healthy gradients at every depth, and the net learns.

The picture shows the gradient norm of every layer (first epoch) for each start.

    python examples/09_vanishing_exploding.py
"""

import numpy as np

import fastdl as fd
from _common import accuracy, figure, save, size, table

X, y = fd.data.make_moons(size(2000, 600), noise=0.15, seed=0)
(Xtr, ytr), (Xdev, ydev), _ = fd.data.split(X, y, ratios=(0.8, 0.2), seed=0)
DEPTH, WIDTH = 20, 32
epochs = size(30, 3)

STARTS = {
    "tiny N(0, 0.01^2)": (dict(init="normal", init_scale=0.01), {}),
    "large N(0, 1)": (dict(init="normal", init_scale=1.0), {}),
    "large + clipping": (dict(init="normal", init_scale=1.0), dict(global_clipnorm=1.0)),
    "LeCun": (dict(init="lecun"), {}),
}

rows, grads = [], {}
for name, (init, clip) in STARTS.items():
    model = fd.Sequential([fd.Dense(WIDTH, activation="tanh", **init) for _ in range(DEPTH - 1)]
                          + [fd.Dense(1, activation="sigmoid", init="xavier")],
                          input_dim=2, dtype="float64", seed=1)
    monitor = fd.GradientMonitor(every=4, verbose=0)
    model.fit(Xtr, ytr, optimizer=fd.optim.SGD(lr=0.05, **clip), epochs=epochs, batch_size=64,
              callbacks=[monitor], verbose=0)
    first = monitor.diagnoses[0]
    grads[name] = [monitor.history[f"grad_norm/{n}"][0] for n in monitor.layers]
    ratio = max(monitor.history[f"update_ratio/{n}"][0] for n in monitor.layers)
    verdict = "exploding" if first.exploding else "vanishing" if first.vanishing else "healthy"
    rows.append({"start": name, "monitor (epoch 1)": verdict,
                 "|dW1|/|dW20|": f"{grads[name][0] / grads[name][-1]:.1e}",
                 "max step/|W|": f"{ratio:.1e}", "train acc": accuracy(model, Xtr, ytr),
                 "dev acc": accuracy(model, Xdev, ydev)})
    print(f"{name}: {first.message}\n")

table(rows, ["start", "monitor (epoch 1)", "|dW1|/|dW20|", "max step/|W|", "train acc",
             "dev acc"], title=f"20-layer tanh net on moons, {epochs} epochs of mini-batch GD "
                               "(lr=0.05, batch 64)")

fig = figure(ncols=1, size=(6.5, 4.0))
if fig is not None:
    ax = fig[1][0]
    for name, g in grads.items():
        ax.semilogy(np.arange(1, DEPTH + 1), np.maximum(g, 1e-300), marker="o", ms=3,
                    label=name)
    ax.set_xlabel("layer l (input -> output)")
    ax.set_ylabel("||dW[l]|| (first epoch)")
    ax.set_title("gradient norm per layer: vanishing, exploding, healthy", fontsize=9)
    ax.legend(fontsize=7)
save(fig, "09_vanishing_exploding.png")
