"""The ``fastdl`` command.

    fastdl train      train a dense network on a built-in dataset or a .npy/.npz/.csv file
    fastdl evaluate   loss and accuracy of a saved model on a dataset
    fastdl gradcheck  gradient-check a small network on a built-in dataset
    fastdl make-data  write a built-in dataset to .npz/.csv/.npy (teacher: chunk by chunk)

``fastdl`` (or ``fastdl train``) with no arguments trains a 2-hidden-layer ReLU net on the 3-class
spirals dataset with Adam, printing progress, the final train/dev/test metrics and the
bias/variance diagnosis: the README's main job. Errors (missing files, bad CSV cells, bad
arguments) exit with status 2 and a message on stderr.

Data files:
  .npz   arrays ``X`` and ``y`` (or exactly two arrays: features then labels)
  .csv   numbers only, an optional header row; the label column is the last one (``--target``
         picks another by name or index)
  .npy   the features; labels from ``--labels`` or from ``<name>.labels.npy`` beside it (what
         ``fastdl make-data`` writes). Large files (or ``--stream``) train out of core: the
         last rows of the file are the dev and test sets, the rest streams from disk.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

OPTIMIZER_NAMES = {"sgd": "SGD", "momentum": "Momentum", "rmsprop": "RMSprop", "adam": "Adam",
                   "adamw": "AdamW"}
SCHEDULES = ("none", "inverse_time", "staircase", "exponential", "sqrt")
ACTIVATIONS = ["relu", "leaky_relu", "tanh", "sigmoid"]
BUILTIN = ["moons", "circles", "spirals", "blobs", "teacher", "digits"]
#: .npy feature files larger than this train out of core unless --no-stream is given.
STREAM_ABOVE_BYTES = 256 << 20


class CLIError(ValueError):
    """A user error: printed on stderr, exit status 2."""


# ------------------------------------------------------------------------------ arguments
def _layers_arg(text):
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers={text!r}: expected comma-separated integers "
                                         "such as 64,64") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--layers={text!r}: sizes must be >= 1")
    return sizes


def _ratios_arg(text):
    try:
        r = tuple(float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--split={text!r}: expected comma-separated fractions "
                                         "such as 0.8,0.1,0.1") from None
    if len(r) not in (2, 3):
        raise argparse.ArgumentTypeError(f"--split={text!r}: expected 2 or 3 fractions "
                                         "(train,dev[,test])")
    return r


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is invalid; expected an integer >= 1")
    return v


def _keep_prob(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"keep_prob={v} is invalid; expected 0 < keep_prob <= 1")
    return v


def _data_args(p, positional=False):
    if positional:
        p.add_argument("data", help=f"a built-in dataset ({', '.join(BUILTIN)}) or a "
                                    ".npy/.npz/.csv file")
    else:
        p.add_argument("--dataset", default="spirals", choices=BUILTIN,
                       help="built-in dataset (default: spirals)")
        p.add_argument("--data", default=None,
                       help="a .npy/.npz/.csv file instead of a built-in dataset")
    p.add_argument("--labels", default=None, help="labels .npy for a .npy feature file")
    p.add_argument("--target", default=None,
                   help="CSV label column, by header name or 0-based index (default: last)")
    p.add_argument("--n", type=_positive_int, default=None,
                   help="examples to generate for a built-in dataset")


def _parser():
    p = argparse.ArgumentParser(prog="fastdl", description=__doc__.split("\n\n")[0],
                                epilog="Run 'fastdl COMMAND --help' for a command's options.")
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help="train a dense network (default command)",
                       description="Train a dense network; prints progress, train/dev/test "
                                   "metrics and the bias/variance diagnosis.")
    _data_args(t)
    t.add_argument("--layers", type=_layers_arg, default=[64, 64],
                   help="hidden layer sizes, e.g. 64,64 (default)")
    t.add_argument("--activation", default="relu", choices=ACTIVATIONS)
    t.add_argument("--init", default=None, help="he, lecun, xavier, zeros, normal")
    t.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZER_NAMES))
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate (default per optimizer; with --resume: the checkpoint's "
                        "unless given, so --resume --lr X changes it)")
    t.add_argument("--schedule", default="none", choices=SCHEDULES,
                   help="learning-rate decay over epochs (course week 2)")
    t.add_argument("--decay-rate", type=float, default=None,
                   help="decay rate of --schedule (inverse_time, staircase: default 1; "
                        "exponential: the factor per epoch, in (0, 1], default 0.95; sqrt: k, "
                        "default 1)")
    t.add_argument("--decay-interval", type=_positive_int, default=None,
                   help="epochs per step of --schedule staircase (default 10)")
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--batch-size", type=_positive_int, default=64)
    t.add_argument("--l2", type=float, default=0.0, help="the course's lambda")
    t.add_argument("--dropout", type=_keep_prob, default=None, metavar="KEEP_PROB",
                   help="dropout after every hidden layer with this keep_prob, e.g. 0.8")
    t.add_argument("--batch-norm", action="store_true",
                   help="batch normalization between each hidden Dense and its activation")
    t.add_argument("--split", type=_ratios_arg, default=(0.8, 0.1, 0.1),
                   help="train,dev,test fractions (default 0.8,0.1,0.1)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--backend", default=None, choices=["cpu", "numpy", "cuda"])
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    t.add_argument("--compute-dtype", default=None, choices=["bfloat16"],
                   help="mixed precision: bfloat16 GEMMs, float32 weights "
                        "(docs/mixed_precision.md; needs the bf16 extra and a CPU with "
                        "bfloat16 instructions, or --allow-slow)")
    t.add_argument("--allow-slow", action="store_true",
                   help="with --compute-dtype: run where it cannot be fast (exact emulation)")
    t.add_argument("--no-standardize", action="store_true",
                   help="do not standardize the inputs (default: a Standardizer fitted on the "
                        "training rows, saved with the model; off for streamed data)")
    s = t.add_mutually_exclusive_group()
    s.add_argument("--stream", dest="stream", action="store_true", default=None,
                   help="train out of core from a .npy file (default: when it is > 256 MiB)")
    s.add_argument("--no-stream", dest="stream", action="store_false")
    t.add_argument("--output", "-o", default=None, help="save the trained model (.npz)")
    t.add_argument("--checkpoint", default=None, help="save a checkpoint (.npz) every epoch")
    t.add_argument("--resume", action="store_true",
                   help="continue from --checkpoint when it exists (after Ctrl-C or a crash); "
                        "one continuous history, --epochs counts the whole run")
    t.add_argument("--plot", default=None, help="save learning curves (.png; needs matplotlib)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel training under mpiexec (pip install 'fastdl[mpi]'): "
                        "each rank takes its slice of every --batch-size global batch; rank 0 "
                        "prints and writes files (docs/distributed.md)")
    t.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2],
                   help="0 silent, 1 progress bar on a terminal (default), 2 a line per epoch")

    e = sub.add_parser("evaluate", help="loss and accuracy of a saved model on a dataset",
                       description="Evaluate a model saved by 'fastdl train --output' or "
                                   "model.save on a built-in dataset or a data file.")
    e.add_argument("model", help="the model file (.npz)")
    _data_args(e, positional=True)
    e.add_argument("--seed", type=int, default=0, help="seed of a generated built-in dataset")

    g = sub.add_parser("gradcheck", help="gradient-check a small network",
                       description="The course's gradient check (float64) of a small network "
                                   "on a built-in dataset; exit status 1 when it fails.")
    g.add_argument("--dataset", default="moons",
                   choices=["moons", "circles", "spirals", "blobs"])
    g.add_argument("--layers", type=_layers_arg, default=[5, 3])
    g.add_argument("--activation", default="tanh", choices=ACTIVATIONS)
    g.add_argument("--l2", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=0)

    x = sub.add_parser("export", help="export a saved model to ONNX",
                       description="Write a model saved by 'fastdl train --output' or "
                                   "model.save as an ONNX graph (fastdl.onnx.to_onnx; needs "
                                   "pip install 'fastdl[onnx]'); serve it with onnxruntime "
                                   "(docs/serving.md).")
    x.add_argument("model", help="the model file (.npz)")
    x.add_argument("--output", "-o", required=True, help="the ONNX file to write (.onnx)")
    x.add_argument("--opset", type=_positive_int, default=None,
                   help="ONNX opset (default: fastdl.onnx.DEFAULT_OPSET)")

    mk = sub.add_parser("make-data", help="write a built-in dataset to a file",
                        description="Write a built-in dataset to .npz, .csv or .npy (features "
                                    "in PATH, labels in PATH's .labels.npy). The teacher "
                                    "dataset is written chunk by chunk, so it can be larger "
                                    "than memory.")
    mk.add_argument("dataset", choices=BUILTIN)
    mk.add_argument("--out", "-o", required=True, help="output file: .npz, .csv or .npy")
    mk.add_argument("--n", type=_positive_int, default=None, help="number of examples")
    mk.add_argument("--features", type=_positive_int, default=None,
                    help="features (teacher, blobs)")
    mk.add_argument("--classes", type=_positive_int, default=None,
                    help="classes (teacher, blobs, spirals)")
    mk.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    mk.add_argument("--seed", type=int, default=0)
    return p


# ------------------------------------------------------------------------------ data
def labels_path(path):
    """Where labels of the .npy feature file ``path`` live by default."""
    return (path[:-4] if path.endswith(".npy") else path) + ".labels.npy"


def _check_file(path, what="data file"):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist")
    if os.path.isdir(path):
        raise CLIError(f"{what} {path!r} is a directory; expected a file")


def read_csv(path, target=None):
    """(X float64, y) from a CSV of numbers with an optional header; y is the ``target``
    column (name or index; default the last). Non-numeric or empty cells raise CLIError."""
    _check_file(path)
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise CLIError(f"{path!r} is empty; expected rows of numbers")

    def number(c):
        try:
            return float(c)
        except ValueError:
            return None
    header = None
    if all(number(c) is None for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise CLIError(f"{path!r} has a header but no data rows")
    width = len(header) if header else len(rows[0])
    if width < 2:
        raise CLIError(f"{path!r} has {width} column; expected features and a label column")
    data = np.empty((len(rows), width))
    first = 2 if header else 1
    for r, row in enumerate(rows):
        if len(row) != width:
            raise CLIError(f"{path!r}, line {r + first}: {len(row)} cells; expected {width}")
        for c, cell in enumerate(row):
            v = number(cell)
            if v is None:
                col = f"column {c + 1}" + (f" ({header[c]!r})" if header else "")
                what = "an empty cell" if not cell.strip() else f"{cell.strip()!r}"
                raise CLIError(f"{path!r}, line {r + first}, {col}: {what} is not a number; "
                               "expected numeric cells only (encode categories as numbers)")
            data[r, c] = v
    if target is None:
        j = width - 1
    elif header and target in header:
        j = header.index(target)
    else:
        try:
            j = int(target)
        except ValueError:
            raise CLIError(f"--target={target!r} is not a column of {path!r} "
                           f"(header: {header})") from None
        if not -width <= j < width:
            raise CLIError(f"--target={target} is out of range for {width} columns")
        j %= width
    y = data[:, j]
    X = np.delete(data, j, axis=1)
    if np.all(y == np.round(y)):
        y = y.astype(np.int64)
    return X, y


def _read_npz(path):
    import zipfile
    _check_file(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if "X" in names and "y" in names:
                return z["X"], z["y"]
            if len(names) == 2:
                return z[names[0]], z[names[1]]
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CLIError(f"{path!r} is not a readable .npz file (truncated or corrupt: {e})") \
            from None
    raise CLIError(f"{path!r} holds arrays {names}; expected 'X' and 'y'")


def _open_npy(path, labels):
    _check_file(path)
    lp = labels or labels_path(path)
    if not os.path.exists(lp):
        raise FileNotFoundError(f"labels for {path!r} not found: {lp!r} does not exist (pass "
                                "--labels)")
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
        y = np.load(lp, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CLIError(f"cannot read {path!r} / {lp!r} as .npy arrays: {e}") from None
    if X.ndim != 2:
        raise CLIError(f"{path!r} has shape {X.shape}; expected (n_examples, n_features)")
    if y.shape[0] != X.shape[0]:
        raise CLIError(f"{path!r} has {X.shape[0]} rows but its labels {lp!r} have "
                       f"{y.shape[0]}")
    return X, y


def load_data(a, n_default=None):
    """(X, y, name) from the command's data arguments; .npy files come back memory-mapped."""
    from . import data
    path = getattr(a, "data", None)
    builtin = getattr(a, "dataset", None)
    if path is not None and path in BUILTIN and not os.path.exists(path):
        builtin, path = path, None
    if path is None:
        kwargs = {"seed": a.seed}
        n = a.n if a.n is not None else n_default
        if n is not None:
            kwargs["n"] = n
        X, y = data.load_dataset(builtin, **kwargs)
        return X, y, builtin
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        X, y = read_csv(path, a.target)
    elif ext == ".npz":
        X, y = _read_npz(path)
    elif ext == ".npy":
        X, y = _open_npy(path, a.labels)
    else:
        _check_file(path)
        raise CLIError(f"{path!r}: unknown file type {ext!r}; expected .npy, .npz or .csv")
    return X, y, os.path.basename(path)


def _task(y):
    """('binary' | 'multiclass' | 'onehot' | 'regression', n_outputs)."""
    y = np.asarray(y) if not isinstance(y, np.memmap) else y
    if y.ndim == 2 and y.shape[1] > 1:
        return "onehot", y.shape[1]
    flat = y.reshape(-1)
    if not (np.issubdtype(flat.dtype, np.integer) or flat.dtype == np.bool_):
        sample = np.asarray(flat[:100000], dtype=np.float64)
        if not np.all(sample == np.round(sample)):
            return "regression", 1
    lo, hi = int(np.min(flat)), int(np.max(flat))
    if lo < 0:
        raise CLIError(f"labels range from {lo} to {hi}; class labels must be >= 0 (or use "
                       "real-valued targets for regression)")
    k = hi + 1
    return ("binary", 1) if k <= 2 else ("multiclass", k)


def _model(n_in, task, n_out, a):
    import fastdl as fd
    layers = []
    for h in a.layers:
        if getattr(a, "batch_norm", False):
            layers += [fd.Dense(h, init=a.init or ("he" if "relu" in a.activation else None)),
                       fd.BatchNorm(), fd.Activation(a.activation)]
        else:
            layers.append(fd.Dense(h, activation=a.activation, init=a.init))
        if getattr(a, "dropout", None) is not None:
            layers.append(fd.Dropout(keep_prob=a.dropout))
    if task == "binary":
        layers.append(fd.Dense(1, activation="sigmoid"))
    elif task == "regression":
        layers.append(fd.Dense(1))
    else:
        layers.append(fd.Dense(n_out, activation="softmax"))
    return fd.Sequential(layers, input_dim=n_in, seed=a.seed, dtype=a.dtype, backend=a.backend,
                         compute_dtype=getattr(a, "compute_dtype", None),
                         allow_slow=getattr(a, "allow_slow", False))


def _make_optimizer(name, lr):
    from . import optim
    cls = getattr(optim, OPTIMIZER_NAMES[name], None)
    if cls is None:
        raise CLIError(f"optimizer {name!r} is not available in this version")
    return cls(lr=lr) if lr is not None else cls()


#: --decay-rate when not given, per --schedule
DECAY_RATE_DEFAULTS = {"inverse_time": 1.0, "staircase": 1.0, "exponential": 0.95, "sqrt": 1.0}


def _schedule(a, lr0):
    """The learning-rate schedule of --schedule, --decay-rate, --decay-interval; values go to
    the schedule as given, and its own checks speak, naming the flag."""
    from . import optim
    if a.schedule == "none":
        for flag, value in (("--decay-rate", a.decay_rate), ("--decay-interval",
                                                             a.decay_interval)):
            if value is not None:
                raise CLIError(f"{flag}={value} needs --schedule ({', '.join(SCHEDULES[1:])}); "
                               "without one the learning rate stays constant")
        return None
    if a.decay_interval is not None and a.schedule != "staircase":
        raise CLIError(f"--decay-interval={a.decay_interval} applies to --schedule staircase, "
                       f"not {a.schedule}")
    rate = DECAY_RATE_DEFAULTS[a.schedule] if a.decay_rate is None else a.decay_rate
    try:
        if a.schedule == "inverse_time":
            return optim.InverseTimeDecay(lr0, decay_rate=rate)
        if a.schedule == "staircase":
            return optim.StaircaseDecay(lr0, decay_rate=rate, interval=a.decay_interval or 10)
        if a.schedule == "exponential":
            return optim.ExponentialDecay(lr0, rate=rate)
        return optim.SqrtDecay(lr0, k=rate)
    except ValueError as e:
        raise CLIError(f"--decay-rate={rate:g} (--schedule {a.schedule}): {e}") from None


def evaluate_rows(model, X, y):
    """{"loss", "accuracy"?, "n"} of ``model`` on X, y: ``model.evaluate``, which reads a
    memory-mapped X in chunks through the out-of-core reader (memory stays bounded)."""
    out = model.evaluate(X, y)
    out["n"] = int(X.shape[0])
    return out


def _print_metrics(name, r):
    acc = f"  accuracy {r['accuracy']:.4f}" if "accuracy" in r else ""
    print(f"{name:>5}: loss {r['loss']:.4f}{acc}  ({r['n']:,} examples)")


# ------------------------------------------------------------------------------ commands
def _stream_split(X, y, ratios):
    """Train rows stream from the file; dev and test are its last rows, read into memory."""
    m = X.shape[0]
    r = list(ratios) + [0.0] * (3 - len(ratios))
    n_dev, n_test = int(m * r[1]), int(m * r[2])
    n_train = m - n_dev - n_test
    if n_train < 1:
        raise CLIError(f"--split={ratios} leaves no training rows out of {m}")
    dev = (np.array(X[n_train:n_train + n_dev]), np.array(y[n_train:n_train + n_dev]))
    test = (np.array(X[m - n_test:]), np.array(y[m - n_test:]))
    return (X[:n_train], y[:n_train]), dev, test


def cmd_train(a):
    if getattr(a, "distributed", False) and not getattr(a, "_quiet", False):
        import fastdl.distributed as dist     # every rank trains; ranks > 0 print nothing
        if dist.rank() != 0:
            import contextlib
            a._quiet = True
            with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                return cmd_train(a)
    import fastdl as fd
    from . import data
    if a.epochs < 0:
        raise CLIError(f"--epochs={a.epochs} is invalid; expected an integer >= 0")
    if a.plot:
        from .train.plot import require_matplotlib
        require_matplotlib("--plot")
    if a.resume and not a.checkpoint:
        raise CLIError("--resume needs --checkpoint PATH")
    opt = _make_optimizer(a.optimizer, a.lr)         # argument errors before the data loads
    schedule = _schedule(a, opt.lr)
    X, y, name = load_data(a, n_default=None if a.dataset == "digits" else 3000)
    task, n_out = _task(y)
    mapped = isinstance(X, np.memmap)
    stream = a.stream
    if stream is None:
        stream = mapped and X.nbytes > STREAM_ABOVE_BYTES
    if stream and not mapped:
        raise CLIError("--stream needs a .npy feature file (--data X.npy)")
    if stream:
        train, dev, test = _stream_split(X, y, a.split)
    else:
        if mapped:
            X, y = np.asarray(X), np.asarray(y)
        train, dev, test = data.split(X, y, ratios=a.split, seed=a.seed,
                                      stratify=task != "regression")
    model = _model(X.shape[1], task, n_out, a)
    if not a.no_standardize and not stream:
        model.standardizer = fd.Standardizer()   # fitted by fit on the training rows only
    model.summary()
    resume = a.checkpoint if a.resume and os.path.exists(a.checkpoint) else None
    if resume:
        opt = _resume_optimizer(resume, opt, a.lr, schedule)
    where = "streamed from disk" if stream else "in memory"
    print(f"training on {name}: {train[0].shape[0]:,} train ({where}) / {dev[0].shape[0]:,} dev "
          f"/ {test[0].shape[0]:,} test examples, optimizer {opt!r}"
          + (f", lr schedule {a.schedule}" if schedule else ""))
    callbacks = [fd.ModelCheckpoint(a.checkpoint, monitor="loss")] if a.checkpoint else []
    t0 = time.perf_counter()
    try:
        history = model.fit(train[0], train[1], optimizer=opt, epochs=a.epochs,
                            batch_size=a.batch_size, l2=a.l2,
                            validation_data=dev if dev[0].shape[0] else None,
                            callbacks=callbacks, verbose=a.verbose, lr_schedule=schedule,
                            resume_from=resume, distributed=getattr(a, "distributed", False))
    except KeyboardInterrupt:
        _print_paused(a, model)
        return 130          # the shell's status for SIGINT
    dt = time.perf_counter() - t0
    print(f"\ntrained {len(history.epoch)} epochs in {dt:.2f}s"
          + (f" (resumed from {resume})" if resume else ""))
    results = {}
    for part, (Xs, ys) in (("train", train), ("dev", dev), ("test", test)):
        if Xs.shape[0]:
            results[part] = evaluate_rows(model, Xs, ys)
            _print_metrics(part, results[part])
    if "dev" in results and "accuracy" in results["dev"]:
        print("\n" + str(fd.diagnose(1.0 - results["train"]["accuracy"],
                                     1.0 - results["dev"]["accuracy"])))
    if a.output and not getattr(a, "_quiet", False):      # rank 0 only when distributed
        model.save(a.output)
        print(f"\nsaved the model to {a.output}")
    if a.plot and not getattr(a, "_quiet", False):
        history.plot(a.plot, title=f"{name}")
        print(f"saved learning curves to {a.plot}")
    return 0


def _resume_optimizer(path, opt, lr, schedule):
    """The optimizer to continue the run in checkpoint ``path`` with (panda: pause, change,
    resume). ``--lr`` given: ``opt`` (its lr wins over the checkpoint's; the saved moments and
    step counter are loaded into it by fit). No ``--lr`` and no schedule: the checkpoint's own
    optimizer, so its learning rate carries on. A schedule sets the lr every epoch from ``--lr``
    (or the optimizer's default), as in the first run."""
    from .io import load
    ck = load(path, allow_slow=True)    # only its optimizer and counters are read
    saved, epochs = ck.optimizer, ck.epochs_trained
    if saved is None or type(saved) is not type(opt):
        return opt                        # fit explains a class mismatch
    if lr is None and schedule is None:
        print(f"resuming {path} after epoch {epochs} with its optimizer {saved!r}")
        return saved
    if lr is not None and lr != saved.lr:
        print(f"resuming {path} after epoch {epochs}: lr {saved.lr:g} -> {opt.lr:g} (--lr)")
    return opt


def _print_paused(a, model):
    print(f"\n\ninterrupted during epoch {model.epochs_trained + 1}", file=sys.stderr)
    if not a.checkpoint:
        print("no --checkpoint was given, so nothing was saved; next time pass --checkpoint "
              "PATH to be able to resume", file=sys.stderr)
        return
    if not os.path.exists(a.checkpoint):
        print(f"no epoch finished, so {a.checkpoint} was not written", file=sys.stderr)
        return
    from .io import load
    # read from the file, not the model: Ctrl-C during a save leaves the previous checkpoint
    saved = load(a.checkpoint, allow_slow=True).epochs_trained
    print(f"paused: {a.checkpoint} holds the model after epoch {saved}.\n"
          "resume with the same command plus --resume, e.g. to lower the learning rate:\n"
          f"  fastdl train ... --checkpoint {a.checkpoint} --resume --lr NEW_LR --epochs "
          f"{a.epochs}\n(--epochs counts the whole run; raise it to train longer)",
          file=sys.stderr)


def cmd_evaluate(a):
    import fastdl as fd
    # a bfloat16 model evaluates with its own arithmetic, emulated where it cannot be fast
    model = fd.load(a.model, allow_slow=True)
    X, y, name = load_data(a)
    if X.ndim != 2 or X.shape[1] != model.input_dim:
        raise CLIError(f"{name} has {X.shape[1] if X.ndim == 2 else X.shape} features; the model "
                       f"expects {model.input_dim}")
    r = evaluate_rows(model, X, y)
    print(f"model {a.model}: {model!r}")
    _print_metrics(name, r)
    return 0


def cmd_gradcheck(a):
    import fastdl as fd
    from . import data
    X, y = data.load_dataset(a.dataset, n=64, seed=a.seed)
    task, n_out = _task(y)
    ns = argparse.Namespace(layers=a.layers, activation=a.activation, init=None, seed=a.seed,
                            dtype="float64", backend="cpu")
    model = _model(X.shape[1], task, n_out, ns)
    r = fd.gradcheck(model, X[:16], y[:16], l2=a.l2)
    print(r)
    return 0 if r.passed else 1


def cmd_make_data(a):
    from . import data
    out = a.out
    ext = os.path.splitext(out)[1].lower()
    if ext not in (".npz", ".csv", ".npy"):
        raise CLIError(f"--out={out!r}: expected a .npz, .csv or .npy file name")
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"--out={out!r}: the directory {directory!r} does not exist")
    kwargs = {"seed": a.seed}
    if a.n is not None:
        kwargs["n"] = a.n
    if a.features is not None:
        if a.dataset not in ("teacher", "blobs"):
            raise CLIError(f"--features applies to teacher and blobs, not {a.dataset}")
        kwargs["n_features"] = a.features
    if a.classes is not None:
        if a.dataset not in ("teacher", "blobs", "spirals"):
            raise CLIError(f"--classes applies to teacher, blobs and spirals, not {a.dataset}")
        kwargs["n_classes"] = a.classes
    t0 = time.perf_counter()
    if a.dataset == "teacher" and ext == ".npy":
        kwargs.setdefault("n", 1_000_000)
        kwargs.setdefault("n_features", 784)
        kwargs.setdefault("n_classes", 10)
        px, py = data.make_teacher_npy(out, labels_path(out), dtype=a.dtype, **kwargs)
        n, d = kwargs["n"], kwargs["n_features"]
    else:
        X, y = data.load_dataset(a.dataset, **kwargs)
        X = X.astype(a.dtype)
        n, d = X.shape
        px, py = out, None
        if ext == ".npz":
            from .io import atomic_savez
            atomic_savez(out, {"X": X, "y": y})
        elif ext == ".csv":
            header = ",".join([f"x{i}" for i in range(d)] + ["y"])
            np.savetxt(out, np.column_stack([X, y]), delimiter=",", header=header, comments="",
                       fmt=["%.9g"] * d + ["%d"])
        else:
            py = labels_path(out)
            np.save(out, X)
            np.save(py, y)
    size = os.path.getsize(px) + (os.path.getsize(py) if py else 0)
    print(f"wrote {a.dataset}: {n:,} x {d} ({a.dtype}) to {px}" + (f" and {py}" if py else "")
          + f" ({size / 2**20:,.1f} MiB in {time.perf_counter() - t0:.1f}s)")
    return 0


def cmd_export(a):
    import fastdl as fd
    from .onnx import to_onnx
    model = fd.load(a.model)
    proto = to_onnx(model, a.output, opset=a.opset)
    outs = ", ".join(o.name for o in proto.graph.output)
    print(f"wrote {a.output}: {model!r} -> ONNX opset {proto.opset_import[0].version}, input "
          f"X ({model.dtype}, n x {model.input_dim}), outputs {outs}")
    return 0


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "gradcheck": cmd_gradcheck,
            "make-data": cmd_make_data, "export": cmd_export}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train"] + argv
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, FileNotFoundError, ImportError, OSError) as e:
        print(f"fastdl: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
