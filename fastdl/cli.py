"""The ``fastdl`` command.

    fastdl train      train a network on a built-in dataset (the README's main job)
    fastdl gradcheck  gradient-check a small network on a built-in dataset

``fastdl train`` with no arguments trains a 2-hidden-layer ReLU net on the 3-class spirals
dataset with Adam (SGD when the optimizers module lacks it), printing per-epoch progress and
the final train/dev/test metrics.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

OPTIMIZER_NAMES = {"sgd": "SGD", "momentum": "Momentum", "rmsprop": "RMSprop", "adam": "Adam",
                   "adamw": "AdamW"}


def _layers_arg(text):
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers={text!r}: expected comma-separated integers "
                                         "such as 64,64") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--layers={text!r}: sizes must be >= 1")
    return sizes


def _parser():
    p = argparse.ArgumentParser(prog="fastdl", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    t = sub.add_parser("train", help="train a dense network on a built-in dataset")
    t.add_argument("--dataset", default="spirals",
                   choices=["moons", "circles", "spirals", "blobs", "teacher"])
    t.add_argument("--n", type=int, default=3000, help="number of examples to generate")
    t.add_argument("--layers", type=_layers_arg, default=[64, 64],
                   help="hidden layer sizes, e.g. 64,64")
    t.add_argument("--activation", default="relu",
                   choices=["relu", "leaky_relu", "tanh", "sigmoid"])
    t.add_argument("--init", default=None, help="he, lecun, xavier, zeros, normal")
    t.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZER_NAMES))
    t.add_argument("--lr", type=float, default=None, help="learning rate (default per optimizer)")
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--l2", type=float, default=0.0, help="the course's lambda")
    t.add_argument("--split", default="0.8,0.1,0.1", help="train,dev,test fractions")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--backend", default=None, choices=["cpu", "numpy", "cuda"])
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    t.add_argument("--verbose", type=int, default=1)
    g = sub.add_parser("gradcheck", help="gradient-check a small network")
    g.add_argument("--dataset", default="moons",
                   choices=["moons", "circles", "spirals", "blobs"])
    g.add_argument("--layers", type=_layers_arg, default=[5, 3])
    g.add_argument("--activation", default="tanh",
                   choices=["relu", "leaky_relu", "tanh", "sigmoid"])
    g.add_argument("--l2", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=0)
    return p


def _make_optimizer(name, lr):
    from . import optim
    cls = getattr(optim, OPTIMIZER_NAMES[name], None)
    if cls is None:
        raise SystemExit(f"fastdl: optimizer {name!r} is not available in this version")
    return cls(lr=lr) if lr is not None else cls()


def _model(X, y, hidden, activation, init, seed, dtype, backend):
    import fastdl as fd
    n_classes = int(y.max()) + 1
    layers = [fd.Dense(h, activation=activation, init=init) for h in hidden]
    if n_classes == 2:
        layers.append(fd.Dense(1, activation="sigmoid"))
    else:
        layers.append(fd.Dense(n_classes, activation="softmax"))
    return fd.Sequential(layers, input_dim=X.shape[1], seed=seed, dtype=dtype, backend=backend)


def cmd_train(a):
    from . import data
    X, y = data.load_dataset(a.dataset, n=a.n, seed=a.seed)
    ratios = tuple(float(r) for r in a.split.split(","))
    (Xtr, ytr), (Xdev, ydev), (Xte, yte) = data.split(X, y, ratios=ratios, seed=a.seed)
    # Standardize with training statistics only (course: normalize inputs).
    mu, sd = Xtr.mean(axis=0), Xtr.std(axis=0)
    sd[sd == 0] = 1.0
    Xtr, Xdev, Xte = (Xtr - mu) / sd, (Xdev - mu) / sd, (Xte - mu) / sd
    model = _model(Xtr, ytr, a.layers, a.activation, a.init, a.seed, a.dtype, a.backend)
    model.summary()
    opt = _make_optimizer(a.optimizer, a.lr)
    print(f"training on {a.dataset}: {Xtr.shape[0]} train / {Xdev.shape[0]} dev / "
          f"{Xte.shape[0]} test examples, optimizer {opt!r}")
    t0 = time.perf_counter()
    model.fit(Xtr, ytr, optimizer=opt, epochs=a.epochs, batch_size=a.batch_size, l2=a.l2,
              validation_data=(Xdev, ydev) if Xdev.shape[0] else None, verbose=a.verbose)
    dt = time.perf_counter() - t0
    print(f"\ntrained {a.epochs} epochs in {dt:.2f}s")
    for name, (Xs, ys) in (("train", (Xtr, ytr)), ("dev", (Xdev, ydev)), ("test", (Xte, yte))):
        if Xs.shape[0]:
            r = model.evaluate(Xs, ys)
            print(f"{name:>5}: loss {r['loss']:.4f}  accuracy {r['accuracy']:.4f}")
    if Xdev.shape[0]:
        print("\n" + str(model.diagnose(train=(Xtr, ytr), dev=(Xdev, ydev))))
    return 0


def cmd_gradcheck(a):
    import fastdl as fd
    from . import data
    X, y = data.load_dataset(a.dataset, n=64, seed=a.seed)
    model = _model(X, y, a.layers, a.activation, None, a.seed, "float64", "cpu")
    r = fd.gradcheck(model, X[:16], y[:16], l2=a.l2)
    print(r)
    return 0 if r.passed else 1


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command is None:
        args = _parser().parse_args(["train"] + list(argv or []))
    try:
        return {"train": cmd_train, "gradcheck": cmd_gradcheck}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"fastdl: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
