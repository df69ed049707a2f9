"""Saving and loading models: one ``.npz``, no pickle, written atomically.

    model.save("m.npz")                  # or ModelCheckpoint("ckpt.npz") during fit
    model = fd.load("m.npz")             # model.optimizer, model.standardizer come back too
    model.fit(X, y, epochs=20, resume_from="ckpt.npz")   # continue a killed run

What the file holds (every entry a plain array; ``np.load(path, allow_pickle=False)`` reads it;
``fastdl/model_schema.py`` declares each member and its rules):

    fastdl_format, format_version     "fastdl.model", 1
    architecture                      ``model.get_config()`` as JSON (a 0-d unicode array)
    param/<layer>/<name>              every entry of ``get_weights()``: W (units, inputs), b,
                                      BatchNorm gamma, beta and its running statistics
    optimizer/<key>                   the optimizer's ``state_dict()``: class name, step counter,
                                      hyperparameters, state rows (velocities, moments)
    standardizer/<key>                ``model.standardizer.get_state()`` when one is attached
    counter/<name>                    epochs_trained (the shuffle counter), the epoch the current
                                      fit started from, and other step counters of the model
    history                           the History of the current fit, as JSON

Atomic write: the arrays go to a temporary file in the target's directory (created with the
permissions the umask gives any new file, as ``np.save`` would), which is flushed,
fsync'ed and then renamed over the target with ``os.replace`` (atomic on POSIX and Windows), and
the directory is fsync'ed; a write killed midway leaves the previous file intact and at worst
a stray ``.<name>.*.tmp`` beside it.

Reading is checked (``read``; the member declarations are in ``fastdl/model_schema.py``, the
reader in ``fastdl/model_file.py``): every member is parsed as a plain .npy array without pickle,
with sizes bounded by the file's before anything is allocated, and checked for the dtype, shape,
type and finiteness its declaration (and the saved architecture) imply, before a model is built.
A damaged or foreign file raises one exception, :class:`~fastdl.model_file.ModelFileError` (a
``ValueError``, ``fd.ModelFileError``), naming the file, the member and what was expected;
``tests/test_model_file_fuzz.py`` holds that against ~1300 kinds of damage. See
``docs/model-files.md``.

Resuming is exact: the parameters, optimizer state and step counters are restored bit for bit,
and the batches of every epoch are a pure function of (seed, epoch) (``data/batches.py``), so a
run resumed from the checkpoint of epoch k ends with exactly the parameters of an uninterrupted
run. Dropout masks are a pure function of (seed, step, layer, index), so they follow too.
"""

from __future__ import annotations

import json
import os
import secrets

import numpy as np

from .model_file import ModelFileError, check_members, read_members
from .model_schema import FORMAT, MEMBERS, VERSION

#: Model attributes saved under counter/<name> when present: the epoch counter (it drives the
#: shuffles), the epoch the current fit started from, the step counter (it drives dropout masks).
COUNTERS = ("epochs_trained", "_fit_start_epoch", "steps_trained")


def _weight_keys(model):
    """(layer, name) of every get_weights() entry (non-trainable layer state included)."""
    if hasattr(model, "_weight_keys"):
        return [(k[0], k[1]) for k in model._weight_keys()]
    return model._tensor_keys()


# ----------------------------------------------------------------------------- writing
def _arrays(model, optimizer=None):
    arrays = {"fastdl_format": np.array(FORMAT), "format_version": np.array(VERSION),
              "architecture": np.array(json.dumps(model.get_config()))}
    for (i, name), w in zip(_weight_keys(model), model.get_weights()):
        arrays[f"param/{i}/{name}"] = w
    opt = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    if opt is not None:
        for k, v in opt.state_dict().items():
            arrays[f"optimizer/{k}"] = _plain(v, f"optimizer.state_dict()[{k!r}]")
    st = getattr(model, "standardizer", None)
    if st is not None:
        arrays["standardizer_class"] = np.array(type(st).__name__)
        for k, v in st.get_state().items():
            if v is not None:
                arrays[f"standardizer/{k}"] = _plain(v, f"standardizer.get_state()[{k!r}]")
    for name in COUNTERS:
        v = getattr(model, name, None)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            arrays[f"counter/{name}"] = np.array(int(v), dtype=np.int64)
    hist = getattr(model, "history", None)
    if hist is not None and hasattr(hist, "history"):
        arrays["history"] = np.array(json.dumps(
            {"epoch": [int(e) for e in hist.epoch],
             "history": {k: [float(x) if isinstance(x, (float, np.floating)) else x for x in v]
                         for k, v in hist.history.items()}}))
    return arrays


def _plain(v, what):
    a = np.asarray(v)
    if a.dtype.hasobject:
        raise TypeError(f"{what} is a {type(v).__name__} that is not a plain array; the model "
                        "file holds NumPy arrays only (no pickle)")
    return a


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:          # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_npz(f, arrays):
    np.savez(f, **arrays)


def _create_temp(directory, name):
    """A new file beside the target, opened for writing, created with mode 0o666 so the
    process umask (and a default ACL) decides its permissions as for any other saved file
    (``tempfile.mkstemp`` would make it 0o600, and the rename would keep that)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file beside {name!r} in {directory!r}")


def atomic_savez(path, arrays):
    """Write ``arrays`` to ``path`` (exactly that name) through a temp file + fsync + rename;
    the file gets the permissions the umask gives a new file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"path={path!r}: the directory {directory!r} does not exist")
    fd, tmp = _create_temp(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def save(model, path, optimizer=None):
    """Write ``model`` (and ``optimizer``, default ``model.optimizer``) to ``path``; see the
    module docstring for the layout."""
    atomic_savez(path, _arrays(model, optimizer))


# ----------------------------------------------------------------------------- reading
def read(path):
    """The checked contents of the model or checkpoint file at ``path``: a
    :class:`~fastdl.model_file.ModelFile` whose members all passed the declarations of
    ``fastdl/model_schema.py`` (container, .npy format, dtype, shape, finiteness, metadata
    types). Every problem raises :class:`ModelFileError` naming the file, the member and what
    was expected; nothing is built before the whole file has passed. ``fd.load``,
    ``fit(..., resume_from=path)`` and ``fastdl evaluate`` read through it."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path={path!r} must be a file path")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    arrays = read_members(path)
    if "fastdl_format" not in arrays:
        raise ModelFileError(path, None, f"is a .npz archive without a 'fastdl_format' member "
                             f"(members: {sorted(arrays)[:8]})",
                             "a fastdl model file written by model.save or ModelCheckpoint")
    return check_members(path, arrays, MEMBERS)


def _optimizer_from(f, optimizer=None):
    """The saved optimizer state loaded into ``optimizer`` (or into a new one of the saved
    class); ``optimizer`` itself when the file holds none.

    A given ``optimizer`` keeps its own hyperparameters (lr, betas, ...): only the state rows and
    the step counter come from the file. That is how a paused run is resumed with a new learning
    rate (``fit(..., optimizer=Adam(lr=1e-4), resume_from=ckpt)``, ``fastdl train --resume
    --lr``); ``load_state_dict`` alone would put the saved lr back, as PyTorch's does. With
    ``optimizer=None`` the saved hyperparameters are used."""
    from . import optim
    name = f.get("optimizer/optimizer")
    if name is None:
        return optimizer
    d = f.group("optimizer/")
    mine = {}
    try:
        if optimizer is None:
            cls = getattr(optim, name)
            optimizer = cls(**{h: f[f"optimizer/{h}"] for h in cls.hyperparameters})
        else:
            mine = {h: getattr(optimizer, h) for h in (*getattr(optimizer, "hyperparameters", ()),
                                                       *getattr(optimizer, "clip_options", ()))}
        optimizer.load_state_dict(d)
    except (ValueError, TypeError) as e:    # e.g. a given optimizer already sized elsewhere
        raise ModelFileError(f.path, "optimizer/state", f"cannot be restored ({e})",
                             "the state_dict() of the optimizer being restored") from None
    for h, v in mine.items():      # the caller's explicit settings win over the file's
        setattr(optimizer, h, v)
    return optimizer


def _standardizer_from(f):
    if "standardizer_class" not in f:
        return None
    from .data import preprocessing
    st = getattr(preprocessing, f["standardizer_class"])()
    st.set_state(f.group("standardizer/"))          # checked: finite means, stds > 0
    return st


def _weights(model, f):
    """The file's tensors in the model's get_weights() order (shapes already checked)."""
    return [f[f"param/{i}/{name}"] for i, name in _weight_keys(model)]


def _restore(model, f, weights):
    model.set_weights(weights)
    for name in COUNTERS:
        if f"counter/{name}" in f:
            setattr(model, name, f[f"counter/{name}"])


_KEEP = object()


def load(path, backend=None, compute_dtype=_KEEP, allow_slow=False):
    """The model saved at ``path`` (``model.save`` / ``ModelCheckpoint``), with
    ``model.optimizer`` (ready to continue training) and ``model.standardizer`` when they were
    saved. ``backend``: where to put it (default: ``config.DEFAULT_BACKEND``).
    ``compute_dtype``: the saved one by default; ``None`` loads a bfloat16 model to compute in
    float32 (its float32 weights are the same). ``allow_slow``: as ``fd.Sequential``'s (a
    bfloat16 model loaded where bfloat16 cannot be fast).

    A damaged file, or one that is not a fastdl model, raises :class:`ModelFileError` (a
    ``ValueError``) naming the file, the member and what was expected; see :func:`read`."""
    from .backend import check_name
    from .nn.sequential import Sequential
    from .precision import PrecisionUnavailable, check_compute_dtype
    if backend is not None:
        check_name(backend)          # a bad argument is the caller's error, not the file's
    cfg_over = {} if compute_dtype is _KEEP else \
        {"compute_dtype": check_compute_dtype(compute_dtype)}
    f = read(path)
    try:
        model = Sequential.from_config({**f["architecture"].config, **cfg_over},
                                       backend=backend, allow_slow=allow_slow)
    except PrecisionUnavailable as e:   # the file is fine; this machine cannot run it as saved
        raise PrecisionUnavailable(f"{f.path!r}: {e} (or load it to compute in float32: "
                                   f"fd.load(path, compute_dtype=None))") from None
    except (TypeError, ValueError) as e:    # e.g. a loss that does not fit the output layer
        raise ModelFileError(f.path, "architecture", f"describes a model that cannot be built "
                             f"({type(e).__name__}: {e})",
                             "the get_config() of a model that was built") from None
    model.optimizer = _optimizer_from(f)
    model.standardizer = _standardizer_from(f)
    _restore(model, f, _weights(model, f))
    return model


_IGNORED_LAYER_KEYS = ("init", "init_scale")


def _same_architecture(model, cfg, path):
    mine = model.get_config()
    expected = "the architecture of the model given to fit (resume_from= continues a run of " \
               "the same model)"

    def refuse(problem):
        raise ModelFileError(path, "architecture", f"was saved from a different model: {problem}",
                             expected)
    for key in ("input_dim", "loss", "dtype"):
        if cfg[key] != mine[key]:
            refuse(f"{key} is {cfg[key]!r} there and {mine[key]!r} here")
    theirs = cfg["layers"]
    if len(theirs) != len(mine["layers"]):
        refuse(f"a model with {len(theirs)} layers; this one has {len(mine['layers'])}")
    strip = lambda c: {k: v for k, v in c.items() if k not in _IGNORED_LAYER_KEYS}
    for i, (a, b) in enumerate(zip(theirs, mine["layers"])):
        if strip(a) != strip(b):
            refuse(f"layer {i} is {a!r} there and {b!r} here")


def resume_into(model, path, optimizer=None):
    """Load the checkpoint at ``path`` into ``model`` to continue its run (``fit(...,
    resume_from=path)``): parameters, layer state, counters and seed; the optimizer state goes
    into ``optimizer`` (or a new optimizer of the saved class). The whole file is checked
    (:func:`read`) and matched against ``model`` before the model changes; every refusal is a
    :class:`ModelFileError`. Returns ``(optimizer, info)`` with info's ``fit_start_epoch``,
    ``epoch`` and ``history`` (the History so far)."""
    f = read(path)
    cfg = f["architecture"].config
    _same_architecture(model, cfg, f.path)
    saved = f.get("optimizer/optimizer")
    if optimizer is not None and saved is not None and saved != type(optimizer).__name__:
        raise ModelFileError(f.path, "optimizer/optimizer",
                             f"holds the state of a {saved} optimizer",
                             f"a {type(optimizer).__name__}, the optimizer fit was given (pass a "
                             f"{saved}, or optimizer=None to rebuild it from the checkpoint)")
    weights = _weights(model, f)
    optimizer = _optimizer_from(f, optimizer)
    st = _standardizer_from(f)
    hist = f.get("history", {"epoch": [], "history": {}})
    _restore(model, f, weights)
    model.seed = cfg["seed"]
    if st is not None:
        model.standardizer = st
    info = {"fit_start_epoch": f.get("counter/_fit_start_epoch", 0),
            "epoch": hist["epoch"], "history": hist["history"]}
    return optimizer, info
