"""Saving and loading models: one ``.npz``, no pickle, written atomically.

    model.save("m.npz")                  # or ModelCheckpoint("ckpt.npz") during fit
    model = fd.load("m.npz")             # model.optimizer, model.standardizer come back too
    model.fit(X, y, epochs=20, resume_from="ckpt.npz")   # continue a killed run

What the file holds (every entry a plain array; ``np.load(path, allow_pickle=False)`` reads it):

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

Atomic write: the arrays go to a temporary file in the target's directory, which is flushed,
fsync'ed and then renamed over the target with ``os.replace`` (atomic on POSIX and Windows), and
the directory is fsync'ed; a write killed midway leaves the previous file intact and at worst
a stray ``.<name>.*.tmp`` beside it.

Resuming is exact: the parameters, optimizer state and step counters are restored bit for bit,
and the batches of every epoch are a pure function of (seed, epoch) (``data/batches.py``), so a
run resumed from the checkpoint of epoch k ends with exactly the parameters of an uninterrupted
run. Dropout masks are a pure function of (seed, step, layer, index), so they follow too.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

FORMAT = "fastdl.model"
VERSION = 1

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


def atomic_savez(path, arrays):
    """Write ``arrays`` to ``path`` (exactly that name) through a temp file + fsync + rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"path={path!r}: the directory {directory!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
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
def _read(path):
    """All arrays of a model file, or a clear error."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path={path!r} must be a file path")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"model file {path!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"model file {path!r} is a directory; expected a .npz file")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single .npy array, not a .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as e:
        raise ValueError(f"{path!r} is not a readable fastdl model file: it is truncated or "
                         f"corrupt ({type(e).__name__}: {e})") from None
    fmt = arrays.get("fastdl_format")
    if fmt is None or str(fmt) != FORMAT:
        raise ValueError(f"{path!r} is a .npz archive but not a fastdl model file (no "
                         f"fastdl_format={FORMAT!r} entry; expected a file written by model.save)")
    version = int(arrays.get("format_version", -1))
    if version > VERSION:
        raise ValueError(f"{path!r} has format_version {version}; this fastdl reads up to "
                         f"{VERSION} (upgrade fastdl)")
    return path, arrays


def _json(arrays, key, path):
    try:
        return json.loads(str(arrays[key]))
    except KeyError:
        raise ValueError(f"{path!r} lacks the {key!r} entry; the file is incomplete") from None
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path!r}: the {key!r} entry is not valid JSON ({e})") from None


def _group(arrays, prefix):
    n = len(prefix)
    return {k[n:]: v for k, v in arrays.items() if k.startswith(prefix)}


def _check_params(model, arrays, path):
    """The saved tensors in get_weights() order, each checked against the architecture."""
    saved = _group(arrays, "param/")
    out = []
    for (i, name), fresh in zip(_weight_keys(model), model.get_weights()):
        key = f"{i}/{name}"
        shape = fresh.shape
        if key not in saved:
            raise ValueError(f"{path!r} lacks param/{key} ({name} of layer {i}, shape {shape}); "
                             "the arrays do not match the saved architecture")
        a = saved.pop(key)
        if a.shape != shape:
            raise ValueError(f"{path!r}: param/{key} has shape {a.shape} but the saved "
                             f"architecture gives layer {i} a {name} of shape {shape}")
        if a.dtype != model.dtype:
            raise ValueError(f"{path!r}: param/{key} has dtype {a.dtype} but the architecture "
                             f"says {model.dtype}")
        if not np.isfinite(a).all():
            raise ValueError(f"{path!r}: param/{key} contains NaN or inf")
        out.append(a)
    if saved:
        raise ValueError(f"{path!r} has parameters {sorted('param/' + k for k in saved)} that "
                         "the saved architecture does not have")
    return out


def _optimizer_from(arrays, path, optimizer=None):
    """The saved optimizer state loaded into ``optimizer`` (or into a new one of the saved
    class); None when the file holds no optimizer.

    A given ``optimizer`` keeps its own hyperparameters (lr, betas, ...): only the state rows and
    the step counter come from the file. That is how a paused run is resumed with a new learning
    rate (``fit(..., optimizer=Adam(lr=1e-4), resume_from=ckpt)``, ``fastdl train --resume
    --lr``); ``load_state_dict`` alone would put the saved lr back, as PyTorch's does. With
    ``optimizer=None`` the saved hyperparameters are used."""
    from . import optim
    d = _group(arrays, "optimizer/")
    if not d:
        return optimizer
    name = str(d.get("optimizer", ""))
    try:
        mine = {}
        if optimizer is None:
            cls = getattr(optim, name, None)
            if not (isinstance(cls, type) and issubclass(cls, optim.Optimizer)):
                raise ValueError(f"optimizer class {name!r} is not in fastdl.optim")
            optimizer = cls(**{h: d[h].item() for h in cls.hyperparameters})
        else:
            mine = {h: getattr(optimizer, h) for h in (*getattr(optimizer, "hyperparameters", ()),
                                                       *getattr(optimizer, "clip_options", ()))}
        optimizer.load_state_dict(d)
        for h, v in mine.items():      # the caller's explicit settings win over the file's
            setattr(optimizer, h, v)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path!r}: the saved optimizer state cannot be restored: {e}") \
            from None
    return optimizer


def _check_optimizer_size(optimizer, model, arrays, path):
    st = arrays.get("optimizer/state")
    if st is not None and (st.ndim != 2 or st.shape[1] != model.params.size
                           or st.dtype != model.dtype):
        raise ValueError(f"{path!r}: the optimizer state has shape {st.shape} ({st.dtype}) but "
                         f"the model has {model.params.size} parameters of {model.dtype}")


def _standardizer_from(arrays, path):
    d = _group(arrays, "standardizer/")
    if not d and "standardizer_class" not in arrays:
        return None
    try:
        from .data import preprocessing
        cls = getattr(preprocessing, str(arrays.get("standardizer_class", "Standardizer")))
        st = cls()
        st.set_state(d)
    except (ImportError, AttributeError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path!r}: the saved standardizer cannot be restored: {e}") from None
    return st


def _restore(model, arrays, path, weights):
    model.set_weights(weights)
    for name, v in _group(arrays, "counter/").items():
        if name in COUNTERS:
            setattr(model, name, int(v))


_KEEP = object()


def load(path, backend=None, compute_dtype=_KEEP, allow_slow=False):
    """The model saved at ``path`` (``model.save`` / ``ModelCheckpoint``), with
    ``model.optimizer`` (ready to continue training) and ``model.standardizer`` when they were
    saved. ``backend``: where to put it (default: ``config.DEFAULT_BACKEND``).
    ``compute_dtype``: the saved one by default; ``None`` loads a bfloat16 model to compute in
    float32 (its float32 weights are the same). ``allow_slow``: as ``fd.Sequential``'s (a
    bfloat16 model loaded where bfloat16 cannot be fast)."""
    from .nn.sequential import Sequential
    from .precision import PrecisionUnavailable, check_compute_dtype
    path, arrays = _read(path)
    cfg = _json(arrays, "architecture", path)
    if compute_dtype is not _KEEP and isinstance(cfg, dict):
        cfg = {**cfg, "compute_dtype": check_compute_dtype(compute_dtype)}
    try:
        model = Sequential.from_config(cfg, backend=backend, allow_slow=allow_slow)
    except PrecisionUnavailable as e:   # the file is fine; this machine cannot run it as saved
        raise PrecisionUnavailable(f"{path!r}: {e} (or load it to compute in float32: "
                                   f"fd.load(path, compute_dtype=None))") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path!r}: the saved architecture is invalid ({type(e).__name__}: "
                         f"{e})") from None
    weights = _check_params(model, arrays, path)
    _check_optimizer_size(None, model, arrays, path)
    model.optimizer = _optimizer_from(arrays, path)
    model.standardizer = _standardizer_from(arrays, path)
    _restore(model, arrays, path, weights)
    return model


_IGNORED_LAYER_KEYS = ("init", "init_scale")


def _same_architecture(model, cfg, path):
    mine = model.get_config()
    if not isinstance(cfg, dict):
        raise ValueError(f"{path!r}: the saved architecture is not a JSON object")
    for key in ("input_dim", "loss", "dtype"):
        if cfg.get(key) != mine[key]:
            raise ValueError(f"checkpoint {path!r} was saved from a different model: {key} is "
                             f"{cfg.get(key)!r} there and {mine[key]!r} here")
    theirs = cfg.get("layers", [])
    if len(theirs) != len(mine["layers"]):
        raise ValueError(f"checkpoint {path!r} was saved from a model with {len(theirs)} layers; "
                         f"this one has {len(mine['layers'])}")
    for i, (a, b) in enumerate(zip(theirs, mine["layers"])):
        strip = lambda c: {k: v for k, v in c.items() if k not in _IGNORED_LAYER_KEYS}
        if not isinstance(a, dict) or strip(a) != strip(b):
            raise ValueError(f"checkpoint {path!r}: layer {i} is {a!r} there and {b!r} here")


def resume_into(model, path, optimizer=None):
    """Load the checkpoint at ``path`` into ``model`` to continue its run (``fit(...,
    resume_from=path)``): parameters, layer state, counters and seed; the optimizer state goes
    into ``optimizer`` (or a new optimizer of the saved class). Everything is validated before
    the model changes. Returns ``(optimizer, info)`` with info's ``fit_start_epoch``,
    ``epoch`` and ``history`` (the History so far)."""
    path, arrays = _read(path)
    cfg = _json(arrays, "architecture", path)
    _same_architecture(model, cfg, path)
    weights = _check_params(model, arrays, path)
    _check_optimizer_size(optimizer, model, arrays, path)
    if optimizer is not None:
        saved = str(arrays.get("optimizer/optimizer", type(optimizer).__name__))
        if saved != type(optimizer).__name__:
            raise ValueError(f"checkpoint {path!r} holds the state of a {saved} optimizer but "
                             f"fit was given {optimizer!r}; pass a {saved} (or optimizer=None "
                             "to rebuild it from the checkpoint)")
    optimizer = _optimizer_from(arrays, path, optimizer)
    hist = _json(arrays, "history", path) if "history" in arrays else \
        {"epoch": [], "history": {}}
    st = _standardizer_from(arrays, path)
    _restore(model, arrays, path, weights)
    model.seed = int(cfg.get("seed", model.seed))
    if st is not None:
        model.standardizer = st
    info = {"fit_start_epoch": int(arrays.get("counter/_fit_start_epoch", 0)),
            "epoch": hist.get("epoch", []), "history": hist.get("history", {})}
    return optimizer, info
