"""Layers: Dense and Activation (Dropout and BatchNorm follow the same interface).

A layer owns no parameter memory: the model lays every parameter out in one
:class:`~fastdl.params.FlatParams` buffer and hands each layer views (``bind``). Work buffers
(outputs, input gradients) are allocated once per batch size (``make_workspace``) and reused.

Interface used by :class:`~fastdl.nn.sequential.Sequential`:

    build(input_dim) -> output_dim            shapes only
    param_specs(index) -> [ParamSpec]         what the flat buffer must hold for this layer
    init_params(params, index, rng)           write initial values into the views
    bind(params, index, backend)              keep views of params and grads
    make_workspace(m) -> Workspace            buffers for a batch of m rows
    forward(X, ws, training) -> A             A lives in ws
    backward(dA, ws, need_dX) -> dX or None   dA may be overwritten (it is a workspace)
  optional (no-ops here):
    prepare_previous(prev)                    at build: adjust the layer before this one
    attach(model)                             after bind: keep a (weak) reference to the model
    state_names, get_state, set_state         non-trainable arrays listed in get_weights

Mixed precision (``fastdl/precision.py``): before ``bind`` the model sets ``low_input`` on the
layers whose input feeds only GEMMs (Dense) when the model computes in bfloat16, and
``low_output`` on the layer right before such a layer. A ``low_output`` layer's workspace has
``A16``, the bfloat16 copy of its output, written by the same kernel that writes ``A`` (size 0
otherwise); a ``low_input`` layer receives the previous layer's ``A16`` as ``X``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..kernels import ACTIVATIONS, BF16, LINEAR
from ..params import ParamSpec
from .._validation import check_float, check_int
from .initializers import check_init, initialize

#: Output-only activations: each exists only fused with its loss (softmax with categorical
#: cross-entropy, exp, the log link, with the Poisson deviance), so the kernels never see them.
OUTPUT_ONLY = ("softmax", "exp")
#: Activation names layers accept.
ACTIVATION_NAMES = tuple(ACTIVATIONS) + OUTPUT_ONLY


#: Slope of leaky_relu for z < 0 when not given (PyTorch's default).
DEFAULT_ALPHA = 0.01


def check_activation(activation):
    """An activation name; ``None`` means "linear" (Keras's ``activation=None``)."""
    if activation is None:
        return "linear"
    if not isinstance(activation, str) or activation not in ACTIVATION_NAMES:
        raise ValueError(f"activation={activation!r} is not a known activation; expected one "
                         f"of {ACTIVATION_NAMES} or None (linear)")
    return activation


def check_alpha(alpha, activation):
    """leaky_relu's negative slope: given only with ``activation="leaky_relu"`` (elsewhere it
    would be silently ignored); default ``DEFAULT_ALPHA``."""
    if alpha is None:
        return DEFAULT_ALPHA
    alpha = check_float("alpha", alpha, minimum=0.0)
    if activation != "leaky_relu":
        raise ValueError(f"alpha={alpha!r} is the negative slope of leaky_relu only; "
                         f"activation={activation!r} has none (use activation='leaky_relu', or "
                         "drop alpha)")
    return alpha


class Layer:
    """Base class; subclasses override what they need."""

    #: Set by the model (mixed precision, see the module docstring).
    low_input = False
    low_output = False

    def build(self, input_dim):
        self.input_dim = self.output_dim = input_dim
        return input_dim

    def param_specs(self, index):
        return []

    def init_params(self, params, index, rng):
        pass

    def bind(self, params, index, backend):
        self._bk, self._index = backend, index

    def make_workspace(self, m, dtype):
        return SimpleNamespace()

    def _a16(self, m):
        """The workspace's bfloat16 output copy: (m, output_dim) uint16 when ``low_output``,
        else an empty array (kernels skip size-0 outputs)."""
        return self._bk.empty((m, self.output_dim) if self.low_output else (0, 0), BF16)

    #: Names of non-trainable arrays the layer owns (BatchNorm's running statistics); they
    #: follow the layer's parameters in ``get_weights``. Such layers implement
    #: ``state_shape(name)``, ``get_state(name)`` and ``set_state(name, host_array)``.
    state_names = ()

    def prepare_previous(self, prev):
        """Adjust the layer right before this one at model build (BatchNorm drops a bias)."""

    def attach(self, model):
        """Called by the model after ``bind`` (Dropout reads the model's seed and step)."""

    def get_config(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self):
        """A short description for ``summary()``."""
        return type(self).__name__

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer ``A = g(X W^T + b)`` with the activation fused into the kernel.

    Under ``compute_dtype="bfloat16"`` X and W enter the GEMMs as bfloat16 (the previous
    layer's ``A16`` and the weights' shadow), accumulating in float32.

    Parameters
    ----------
    units : int
        Number of units n[l].
    activation : str or None
        "linear" (default; ``None`` means the same, as in Keras), "relu", "leaky_relu",
        "tanh", "sigmoid", or, for the output layer only, "softmax" (fused with categorical
        cross-entropy) or "exp" (fused with the Poisson deviance, ``loss="poisson"``).
    init : str or callable, optional
        "he", "lecun", "xavier"/"glorot", "zeros", "normal" (see ``initializers``). Default:
        "he" for relu/leaky_relu, "xavier" otherwise.
    use_bias : bool
        Add the bias b (dropped automatically when a BatchNorm follows).
    init_scale : float
        Standard deviation of ``init="normal"`` (the course's 0.01).
    alpha : float, optional
        Negative slope of leaky_relu (default 0.01, PyTorch's); an error with any other
        activation, where it would mean nothing.

    ``W`` has shape (units, inputs), as PyTorch ``nn.Linear.weight`` and the course's W[l];
    ``b`` has shape (units,).
    """

    def __init__(self, units, activation="linear", init=None, use_bias=True, init_scale=0.01,
                 alpha=None):
        self.units = check_int("units", units, minimum=1)
        self.activation = activation = check_activation(activation)
        if init is None:
            init = "he" if activation in ("relu", "leaky_relu") else "xavier"
        self.init = check_init(init)
        if not isinstance(use_bias, (bool, np.bool_)):
            raise TypeError(f"use_bias={use_bias!r} must be True or False")
        self.use_bias = bool(use_bias)
        self.init_scale = check_float("init_scale", init_scale, minimum=0.0, strict=True)
        self.alpha = check_alpha(alpha, activation)
        # Activation code the kernels run (the model may fuse a following Activation here, or
        # switch the output activation to linear when the loss takes logits).
        self.runtime_activation = ACTIVATIONS.get(self.activation, LINEAR)
        self.runtime_alpha = self.alpha

    def build(self, input_dim):
        self.input_dim = input_dim
        self.output_dim = self.units
        return self.units

    def param_specs(self, index):
        specs = [ParamSpec(index, "W", (self.units, self.input_dim), decay=True)]
        if self.use_bias:
            specs.append(ParamSpec(index, "b", (self.units,), decay=False))
        return specs

    def init_params(self, params, index, rng):
        params.assign(index, "W", initialize(self.init, rng, (self.units, self.input_dim),
                                             self.init_scale, f"layers[{index}].W"))
        if self.use_bias:
            params.assign(index, "b", np.zeros(self.units))

    def bind(self, params, index, backend):
        super().bind(params, index, backend)
        self.W, self.dW = params.view(index, "W"), params.grad_view(index, "W")
        if self.use_bias:
            self.b, self.db = params.view(index, "b"), params.grad_view(index, "b")
        else:
            self.b = self.db = backend.empty((0,), params.dtype)
        self._none = backend.empty((0,), params.dtype)
        # the GEMM operand: the weights' bfloat16 shadow under mixed precision, else W itself
        self.W_gemm = params.shadow_view(index, "W") if self.low_input else self.W

    def make_workspace(self, m, dtype):
        bk = self._bk
        return SimpleNamespace(A=bk.empty((m, self.units), dtype), A16=self._a16(m),
                               dZ16=bk.empty((m, self.units) if self.low_input else (0, 0),
                                             BF16),
                               dX=bk.empty((m, self.input_dim), dtype), X=None)

    def forward(self, X, ws, training):
        ws.X = X
        self._bk.k.dense_forward(ws.A, ws.A16, X, self.W_gemm, self.b, self.runtime_activation,
                                 self.runtime_alpha)
        return ws.A

    def backward(self, dA, ws, need_dX):
        dX = ws.dX if need_dX else self._none
        self._bk.k.dense_backward(dX, self.dW, self.db, ws.dZ16, dA, ws.A, ws.X, self.W_gemm,
                                  self.runtime_activation, self.runtime_alpha)
        return dX if need_dX else None

    def describe(self):
        return (f"Dense({self.units}, {self.activation}"
                + ("" if self.use_bias else ", no bias") + ")")

    def get_config(self):
        return {"type": "Dense", "units": self.units, "activation": self.activation,
                "init": self.init if isinstance(self.init, str) else "custom",
                "use_bias": self.use_bias, "init_scale": self.init_scale, "alpha": self.alpha}


class Activation(Layer):
    """An element-wise activation as a layer of its own (``Dense(n) + Activation("relu")`` is
    what ``Dense(n, activation="relu")`` means; the model fuses the pair into one kernel)."""

    def __init__(self, activation, alpha=None):
        self.activation = check_activation(activation)
        self.alpha = check_alpha(alpha, self.activation)
        self.runtime_activation = ACTIVATIONS.get(self.activation, LINEAR)
        self.fused = False      # set by the model when folded into the preceding Dense

    def make_workspace(self, m, dtype):
        return SimpleNamespace(A=self._bk.empty((m, self.output_dim), dtype), A16=self._a16(m))

    def forward(self, X, ws, training):
        k = self._bk.k
        k.activation_forward(ws.A, X, self.runtime_activation, self.alpha)
        if ws.A16.size:     # an unfused activation before a Dense: one conversion pass
            k.to_bfloat16(ws.A16, ws.A)
        return ws.A

    def backward(self, dA, ws, need_dX):
        # In place: dA is a workspace of the next layer (or the loss), free to overwrite.
        self._bk.k.activation_backward(dA, dA, ws.A, self.runtime_activation, self.alpha)
        return dA

    def describe(self):
        return f"Activation({self.activation})"

    def get_config(self):
        return {"type": "Activation", "activation": self.activation, "alpha": self.alpha}


LAYER_TYPES = {"Dense": Dense, "Activation": Activation}


def layer_from_config(cfg):
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind not in LAYER_TYPES:
        raise ValueError(f"layer type {kind!r} is unknown; expected one of {tuple(LAYER_TYPES)}")
    if cfg.get("init") == "custom":
        cfg["init"] = "zeros"  # weights are loaded right after
    if "alpha" in cfg and cfg.get("activation") != "leaky_relu":
        cfg.pop("alpha")       # files record the (unused) default slope for every layer
    return LAYER_TYPES[kind](**cfg)
