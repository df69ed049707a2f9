"""What a fastdl model or checkpoint file holds: one declaration per member.

``fastdl/io.py`` writes the members (``model.save``, ``ModelCheckpoint``); every reader
(``fd.load``, ``fit(..., resume_from=path)``, ``fastdl evaluate``, anything that takes a model
file) goes through :func:`fastdl.io.read`, which checks the file against :data:`MEMBERS`
(with the machinery of ``fastdl/model_file.py``) before a model is built. A file that fails any
check raises :class:`~fastdl.model_file.ModelFileError` naming the file, the member and what
was expected; members nobody declared are refused as well.

``MEMBERS`` is read in order, so a member's rule may depend on members declared before it: the
architecture fixes the shape of every parameter tensor and the width of the optimizer state,
the saved optimizer class fixes which hyperparameters follow.

Adding a member (for example a callback's state in a checkpoint) takes three steps:

1. write it in ``fastdl/io.py`` as a plain array (``_arrays``);
2. declare it here, one line, e.g.
   ``Member("callback/EarlyStopping/wait", Int(minimum=0), required=False)``
   (kinds: ``Text``, ``Int``, ``Scalar``, ``Json``, ``Tensor``; ``required=False`` keeps files
   written before it loadable; ``required="prefix/"`` makes a group all-or-nothing);
3. make a fixture of ``tests/test_model_file_fuzz.py`` write it: that test fails while a
   declared member appears in no fixture, and damages every member of every fixture in every
   way it knows.

A new key of the architecture (``model.get_config()``) is one entry of
:data:`ARCHITECTURE_KEYS`, e.g. ``"compute_dtype": Key(one_of(None, "bfloat16"),
required=False)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .model_file import Int, Json, Member, Refused, Scalar, Tensor, Text, _short

FORMAT = "fastdl.model"
VERSION = 1


# ============================================================================ architecture
@dataclass(frozen=True)
class Key:
    """A key of the architecture JSON: ``check(value)`` returns None, or what was expected."""
    check: Callable
    required: bool = True


def integer(minimum, maximum=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum \
                or (maximum is not None and v > maximum):
            return f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None
                                                 else "")
    return check


def one_of(*choices):
    def check(v):       # type-exact: True is not 1, 1 is not 1.0
        if not any(type(v) is type(c) and v == c for c in choices):
            return f"one of {choices}"
    return check


def _losses():
    from .nn.losses import LOSS_NAMES
    return LOSS_NAMES


#: The keys of ``model.get_config()`` (the ``architecture`` member) and what each holds.
#: ``layers`` is checked by :func:`architecture`: each entry goes to its layer's constructor.
ARCHITECTURE_KEYS = {
    "input_dim": Key(integer(1)),
    "loss": Key(lambda v: one_of(*_losses())(v)),
    "dtype": Key(one_of("float32", "float64")),
    "seed": Key(integer(0, 2**64 - 1)),
    "layers": Key(lambda v: None if isinstance(v, list) and v else "a non-empty list"),
    # mixed precision (fastdl/precision.py); written only when set, so float models' files
    # are what they were
    "compute_dtype": Key(one_of("bfloat16"), required=False),
}


@dataclass(frozen=True)
class Architecture:
    """The checked ``architecture`` member: the ``config`` dict, the ``dtype``, every tensor
    ``(layer, name, is_state, shape)`` in ``get_weights()`` order, and ``n_params``, the
    number of trainable entries (the optimizer state's width). No model memory exists yet."""
    config: dict
    dtype: np.dtype
    tensors: list
    n_params: int


def architecture(cfg, mf):
    """Check the parsed architecture JSON key by key, build its layers' shapes (nothing is
    allocated) and return the :class:`Architecture`."""
    from .nn.layers import LAYER_TYPES, layer_from_config
    from .nn.sequential import build_layers, tensor_specs
    if not isinstance(cfg, dict):
        raise Refused("a JSON object (model.get_config())", f"found {_short(cfg)}")
    for k, key in ARCHITECTURE_KEYS.items():
        if k not in cfg:
            if key.required:
                raise Refused(f"a {k!r} entry (model.get_config())", f"found no {k!r} entry")
            continue
        problem = key.check(cfg[k])
        if problem is not None:
            raise Refused(f"{k!r} to be {problem}", f"found {k!r}: {_short(cfg[k])}")
    unknown = sorted(set(cfg) - set(ARCHITECTURE_KEYS))
    if unknown:
        raise Refused(f"only the keys {sorted(ARCHITECTURE_KEYS)}", f"found the unknown keys "
                      f"{_short(unknown)}")
    layers = []
    for i, c in enumerate(cfg["layers"]):
        if not isinstance(c, dict) or not isinstance(c.get("type"), str) \
                or c["type"] not in LAYER_TYPES:
            raise Refused(f"layers[{i}] to be a layer's get_config(), with a 'type' among "
                          f"{tuple(LAYER_TYPES)}", f"found layers[{i}]: {_short(c)}")
        try:
            layer = layer_from_config(c)
        except (TypeError, ValueError) as e:
            raise Refused(f"layers[{i}] to be a valid {c['type']} configuration ({e})",
                          f"found layers[{i}]: {_short(c)}") from None
        # exactly what get_config() writes: a key lost or of another type is refused rather
        # than replaced by the constructor's default
        back = layer.get_config()
        if c.get("init") == "custom" and back.get("init") == "zeros":   # layer_from_config
            back["init"] = "custom"
        if back != c:
            raise Refused(f"layers[{i}] to be what {c['type']}.get_config() writes, "
                          f"{_short(back, 200)}", f"found layers[{i}]: {_short(c, 200)}")
        layers.append(layer)
    build_layers(layers, cfg["input_dim"])
    tensors = tensor_specs(layers)
    n = sum(math.prod(shape) for _, _, is_state, shape in tensors if not is_state)
    return Architecture(cfg, np.dtype(cfg["dtype"]), tensors, n)


def _tensors(mf):
    """One member per get_weights() entry: shape from the architecture, its dtype, finite."""
    arch = mf["architecture"]
    for i, name, is_state, shape in arch.tensors:
        rule = _nonnegative if is_state and name == "running_var" else None
        yield Member(f"param/{i}/{name}", Tensor(shape, arch.dtype, rule=rule,
                                                 note="the saved architecture's"))


def _nonnegative(a):
    return None if (a >= 0).all() else "with entries >= 0 (variances)"


# ============================================================================== optimizer
def _optimizer_names(mf=None):
    from . import optim
    return tuple(n for n in optim.__all__ if isinstance(getattr(optim, n), type)
                 and issubclass(getattr(optim, n), optim.Optimizer) and n != "Optimizer")


def _hyperparameter(cls, h):
    """The optimizer's own setter check (``Hyper``), e.g. lr: a finite number > 0."""
    from .optim.base import Hyper
    hyper = getattr(cls, h, None)
    if isinstance(hyper, Hyper):
        return lambda v: hyper.check(h, v)
    return lambda v: v       # pragma: no cover - every saved hyperparameter is a Hyper today


def _clip(h):
    from .optim.base import check_clip
    return lambda v: check_clip(h, None if math.isnan(v) else v)


def _optimizer(mf):
    """The members of ``Optimizer.state_dict()`` for the saved optimizer class."""
    from . import optim
    name = mf.get("optimizer/optimizer")
    if name is None:
        return
    cls, arch = getattr(optim, name), mf["architecture"]
    yield Member("optimizer/iterations", Int(minimum=0))
    for h in cls.hyperparameters:
        yield Member(f"optimizer/{h}", Scalar("biufU", _hyperparameter(cls, h),
                                              f"{name}'s hyperparameter {h}"))
    for h in cls.clip_options:      # absent from files saved before clipping existed
        yield Member(f"optimizer/{h}", Scalar("f", _clip(h), f"{h}: NaN (off) or a finite "
                                              "number > 0"), required=False)
    yield Member("optimizer/state", Tensor((len(cls.state_names), arch.n_params), arch.dtype,
                                           note=f"rows {cls.state_names} over the "
                                           f"architecture's {arch.n_params} parameters"),
                 required=lambda mf: mf["optimizer/iterations"] > 0)   # absent before a step


# ============================================================================== standardizer
def _standardizer(mf):
    n = mf["architecture"].config["input_dim"]
    yield Member("standardizer/mean", Tensor((n,), np.float64, note="one per input feature"),
                 required="standardizer/")
    yield Member("standardizer/std", Tensor((n,), np.float64, rule=_positive,
                                            note="one per input feature"),
                 required="standardizer/")


def _positive(a):
    return None if (a > 0).all() else "with entries > 0"


# ============================================================================== history
def history(value, mf):
    """History JSON: {"epoch": [int >= 0, ...], "history": {name: [number, ...]}}, where
    ``epoch`` lists the epochs of the current fit, ``_fit_start_epoch`` to ``epochs_trained``
    - 1 (the invariant ``fit(..., resume_from=model.history)`` checks in memory too)."""
    ok = (isinstance(value, dict) and set(value) == {"epoch", "history"}
          and isinstance(value["epoch"], list)
          and all(type(e) is int and e >= 0 for e in value["epoch"])
          and isinstance(value["history"], dict)
          and all(isinstance(v, list) and all(type(x) in (int, float) for x in v)
                  for v in value["history"].values()))
    if not ok:
        raise Refused(f"JSON text: {HISTORY}", f"found {_short(value)}")
    start, done = mf["counter/_fit_start_epoch"], mf["counter/epochs_trained"]
    if value["epoch"] != list(range(start, done)):
        raise Refused(f"the epochs {start} to {done - 1} of the current fit (the counters "
                      "_fit_start_epoch and epochs_trained)", f"found the epochs "
                      f"{_short(value['epoch'])}")
    return value


HISTORY = "{'epoch': [int >= 0, ...], 'history': {name: [number, ...], ...}}"


def _version(v):
    if type(v) is not int or not 1 <= v <= VERSION:
        raise ValueError(f"format_version {v!r}; this fastdl reads 1 to {VERSION} (a newer "
                         "fastdl wrote it? upgrade fastdl)")
    return v


# ================================================================================= members
#: Every member of a model file, in the order they are checked (see the module docstring).
MEMBERS = [
    Member("fastdl_format", Text(choices=(FORMAT,))),
    Member("format_version", Scalar("iu", _version, f"an integer from 1 to {VERSION}")),
    Member("architecture", Json(architecture, "model.get_config()")),
    _tensors,                                                  # param/<layer>/<name>
    Member("optimizer/optimizer", Text(choices=_optimizer_names), required="optimizer/"),
    _optimizer,                                                # optimizer/<state_dict key>
    Member("standardizer_class", Text(choices=("Standardizer",)), required="standardizer/"),
    _standardizer,                                             # standardizer/mean, std
    Member("counter/epochs_trained", Int(minimum=0)),
    Member("counter/steps_trained", Int(minimum=0)),
    # written once fit ran; a loaded model saved again keeps the counter, not the History
    Member("counter/_fit_start_epoch",
           Int(minimum=0, maximum=lambda mf: mf["counter/epochs_trained"]),
           required=lambda mf: "history" in mf.arrays),
    Member("history", Json(history, HISTORY), required=False),
]
