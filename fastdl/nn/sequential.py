"""Sequential: a stack of layers with a loss, trained on one flat parameter buffer.

Conventions (docs/design.md): rows are examples, X is (m, n_features); Dense W is (units, inputs);
the cost is the mean over the batch and includes the course's L2 term
``lambda/(2m) * sum_l ||W[l]||_F^2`` (weights only) whenever ``l2`` is given; its gradient adds
``(lambda/m) W``. With per-example weights ``sample_weight`` (scikit-learn's MLP semantics,
``sklearn/neural_network/_multilayer_perceptron.py``, ``_backprop``) the batch cost is
``sum_i w_i l_i / sum_i w_i + lambda/(2 sum_i w_i) * sum_l ||W[l]||_F^2``: m becomes sum(w).
Sigmoid and softmax outputs are fused with their cross-entropy: the network computes logits
and the loss kernel does the rest (stable log-sum-exp).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np

from .. import config
from .._validation import (as_features, as_sample_weight, as_targets, check_dtype,
                           check_float, check_int, check_rows, numeric_array)
from ..backend import check_name, get_backend, is_device_array
from ..data.batches import count_rows, is_streamable, row_chunks
from ..kernels import ACTIVATIONS, BF16, LINEAR
from ..params import FlatParams
from ..precision import resolve as resolve_precision
from .layers import OUTPUT_ONLY, Activation, Dense, Layer, layer_from_config
from .losses import get_loss

#: Rows per chunk in predict/evaluate: bounds workspace memory for large inputs.
EVAL_CHUNK = 8192
#: Workspaces kept per model (full batch, last partial batch, evaluation chunks ...).
_MAX_WORKSPACES = 4


def _a(word):
    return "an" if word[0] in "aeiou" else "a"


def _pair(pair, name):
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{name} must be a tuple (X, y)")
    return pair


def build_layers(layers, input_dim):
    """Give ``layers`` their shapes for an input of ``input_dim`` features (no memory is
    allocated); returns the output width. A layer may adjust the one before it first
    (BatchNorm drops a linear Dense's bias)."""
    for prev, layer in zip(layers, layers[1:]):
        layer.prepare_previous(prev)
    dim = input_dim
    for layer in layers:
        dim = layer.build(dim)
    return dim


def tensor_specs(layers):
    """(layer, name, is_state, shape) of every ``get_weights()`` entry of built ``layers``, in
    that order: per layer its parameters, then its non-trainable state (BatchNorm: gamma,
    beta, running_mean, running_var). The model file reader (``fastdl/model_schema.py``)
    checks a file's tensors against it before a model is allocated."""
    return [spec for i, layer in enumerate(layers) for spec in
            [(i, s.name, False, tuple(s.shape)) for s in layer.param_specs(i)]
            + [(i, n, True, tuple(layer.state_shape(n))) for n in layer.state_names]]


class Sequential:
    """A feed-forward network: ``fd.Sequential([fd.Dense(20, activation="relu"), ...],
    input_dim=2, loss="binary_crossentropy")``.

    Parameters
    ----------
    layers : list of Layer
    input_dim : int
        Number of input features n[0].
    loss : str, optional
        "binary_crossentropy", "categorical_crossentropy" (alias
        "sparse_categorical_crossentropy"), "mse" or "poisson" (half Poisson deviance of an
        "exp" output, scikit-learn's ``MLPRegressor(loss="poisson")``). Default: inferred from
        the output activation (sigmoid -> binary, softmax -> categorical, exp -> poisson,
        otherwise mse).
    dtype : "float32" (default, ``config.DEFAULT_DTYPE``) or "float64".
    seed : int, optional
        Seeds initialization and the per-epoch shuffles (a pure function of seed and epoch, so
        a resumed run sees the same batches). Default: drawn from the OS.
    backend : "cpu" (Numba, default), "numpy" (reference) or "cuda".
    compute_dtype : None (default: compute in ``dtype``) or "bfloat16"
        Mixed precision (Keras' name; PyTorch's ``autocast``): with ``dtype="float32"``, every
        Dense GEMM takes bfloat16 operands and accumulates in float32, while parameters,
        optimizer state, losses, batch-norm statistics and outputs stay float32
        (``fastdl/precision.py``, ``docs/mixed_precision.md``). Needs oneDNN
        (``pip install "fastdl[bf16]"``) and a CPU with bfloat16 instructions
        (``fd.bf16_supported()``), else a clear error unless ``allow_slow``.
    allow_slow : bool, default False
        Accept ``compute_dtype="bfloat16"`` where it cannot be fast (no bfloat16 instructions
        or no oneDNN: exact float32 emulation of the same arithmetic; the numpy backend: the
        reference arithmetic).
    """

    def __init__(self, layers, input_dim, loss=None, dtype=None, seed=None, backend=None,
                 compute_dtype=None, allow_slow=False):
        if not isinstance(layers, (list, tuple)) or len(layers) == 0:
            raise ValueError(f"layers={layers!r} is invalid; expected a non-empty list of layers")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}]={layer!r} is not a fastdl layer (Dense, "
                                "Activation, ...)")
        if len({id(layer) for layer in layers}) != len(layers):
            raise ValueError("layers contains the same layer object twice; create one per position")
        self.layers = list(layers)
        self.input_dim = check_int("input_dim", input_dim, minimum=1)
        self.dtype = check_dtype(config.DEFAULT_DTYPE if dtype is None else dtype)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self.seed = check_int("seed", seed, minimum=0)
        self.backend_name = check_name(config.DEFAULT_BACKEND if backend is None else backend)
        self.allow_slow = allow_slow
        self.precision = resolve_precision(compute_dtype, self.dtype, self.backend_name,
                                           allow_slow)
        self.stop_training = False
        self.epochs_trained = 0     # epochs completed by fit (the shuffle counter)
        self.steps_trained = 0      # updates taken by fit/train_on_batch (the dropout counter)
        self.standardizer = None    # an fd.Standardizer applied to every input X (see _X)
        self.optimizer = None       # the last optimizer fit used (saved with the model)
        self._build(loss)
        self._bk = get_backend(self.backend_name)
        self._allocate()
        rng = np.random.default_rng(self.seed)
        for i, layer in enumerate(self.layers):
            layer.init_params(self.params, i, rng)
        if not np.isfinite(self.params.snapshot()).all():   # e.g. a custom init's 1e39 in float32
            raise ValueError(f"the initial weights overflow {self.dtype.name}; expected values "
                             f"below {float(np.finfo(self.dtype).max):.3g} from init")

    # ---------------------------------------------------------------- construction
    def _build(self, loss):
        self.output_dim = build_layers(self.layers, self.input_dim)
        # Fuse Dense(linear) + Activation(g) into one kernel (Dense computes g directly).
        for prev, layer in zip(self.layers, self.layers[1:]):
            layer.fused = False if isinstance(layer, Activation) else getattr(layer, "fused", False)
            if (isinstance(layer, Activation) and isinstance(prev, Dense)
                    and prev.activation == "linear" and prev.runtime_activation == LINEAR
                    and layer.activation not in OUTPUT_ONLY):
                prev.runtime_activation = layer.runtime_activation
                prev.runtime_alpha = layer.alpha
                layer.fused = True
            elif (isinstance(layer, Activation) and getattr(prev, "fuses_activation", False)
                    and prev.runtime_activation == LINEAR and layer.activation not in OUTPUT_ONLY
                    and layer is not self.layers[-1]):      # BatchNorm + Activation
                prev.runtime_activation = layer.runtime_activation
                prev.runtime_alpha = layer.alpha
                layer.fused = True
        ops = [l for l in self.layers if not getattr(l, "fused", False)]
        self._check_no_dropout_after_the_output()
        # The declared output activation: the last op's, or what a fused Activation brought.
        last = ops[-1]
        out_act = last.activation if isinstance(last, (Dense, Activation)) else "linear"
        if isinstance(last, Dense) and last.activation == "linear":
            out_act = {v: k for k, v in ACTIVATIONS.items()}[last.runtime_activation]
        for i, layer in enumerate(self.layers):
            act = getattr(layer, "activation", None)
            if act in OUTPUT_ONLY and layer is not last:
                fused = "categorical_crossentropy" if act == "softmax" else "poisson"
                raise ValueError(f"layers[{i}] uses {act}, which fastdl supports only as the "
                                 f"output activation (fused with {fused})")
        if loss is None:
            loss = {"sigmoid": "binary_crossentropy", "softmax": "categorical_crossentropy",
                    "exp": "poisson"}.get(out_act, "mse")
        self.loss = get_loss(loss)
        want = self.loss.output_activation
        if want is not None and out_act != want:
            raise ValueError(f"loss={loss!r} needs {_a(want)} {want} output layer (it is fused "
                             f"with the loss), but the model's output activation is {out_act!r}")
        if want is None and out_act in OUTPUT_ONLY:
            fused = "categorical_crossentropy" if out_act == "softmax" else "poisson"
            raise ValueError(f"loss={loss!r} cannot follow {_a(out_act)} {out_act} output; "
                             f"use loss={fused!r}")
        self.output_activation = out_act
        if want is not None:            # the network emits logits; the loss kernel does the rest
            if isinstance(last, Activation):
                last.fused = True
                ops = ops[:-1]
            else:
                last.runtime_activation = LINEAR
        if not ops:
            raise ValueError("the model has no layer with parameters before its output activation")
        self._ops = ops

    def _check_no_dropout_after_the_output(self):
        """A Dropout after the output layer would act on the logits the loss is fused with:
        say so, rather than fail later on the output activation."""
        from .regularization import Dropout
        dense = [i for i, layer in enumerate(self.layers) if isinstance(layer, Dense)]
        for i in range(dense[-1] + 1 if dense else 0, len(self.layers)):
            if isinstance(self.layers[i], Dropout):
                raise ValueError(f"layers[{i}] is a Dropout after the output layer "
                                 f"(layers[{dense[-1] if dense else 0}]); put it after a hidden "
                                 "layer's activation: the output layer's activation is fused "
                                 "with the loss, and dropping outputs has no meaning")
    @property
    def compute_dtype(self):
        """None (GEMMs in ``dtype``) or "bfloat16" (see the class docstring)."""
        return self.precision.compute_dtype

    def _plan_precision(self):
        """Which layers read / write bfloat16 copies (the Layer docstring): a Dense reads its
        input only through GEMMs, so under mixed precision it takes the bfloat16 copy, which the
        layer before it (or the model, for the input X) writes."""
        low = self.precision.low
        for i, op in enumerate(self._ops):
            op.low_input = low and isinstance(op, Dense)
        for op, nxt in zip(self._ops, self._ops[1:] + [None]):
            op.low_output = nxt is not None and nxt.low_input
        self._low_input = bool(self._ops[0].low_input)

    def _allocate(self):
        self._plan_precision()
        specs = [s for i, layer in enumerate(self.layers) for s in layer.param_specs(i)]
        self.params = FlatParams(specs, self.dtype, self._bk, self.precision.low)
        for i, layer in enumerate(self.layers):
            layer.bind(self.params, i, self._bk)
            layer.attach(self)              # Dropout reads seed and steps_trained
        self._workspaces = OrderedDict()
        self._dense_only = all(isinstance(op, Dense) for op in self._ops)
        self._no_weights = self._bk.empty((0,), self.dtype)   # "unweighted" for the kernels

    def _workspace(self, m):
        """Buffers for a batch of m rows, allocated once and reused (LRU of a few sizes)."""
        ws = self._workspaces.get(m)
        if ws is None:
            bk, dt = self._bk, self.dtype
            ws = SimpleNamespace(
                m=m, layers=[op.make_workspace(m, dt) for op in self._ops],
                Xb=bk.empty((m, self.input_dim), dt),
                X16=bk.empty((m, self.input_dim) if self._low_input else (0, 0), BF16), Yb=bk.empty((m, self.output_dim), dt),
                dout=bk.empty((m, self.output_dim), dt), prob=bk.empty((m, self.output_dim), dt),
                loss=bk.zeros((1,), np.float64), sq=bk.zeros((1,), np.float64))
            self._workspaces[m] = ws
            while len(self._workspaces) > _MAX_WORKSPACES:
                self._workspaces.popitem(last=False)
        else:
            self._workspaces.move_to_end(m)
        return ws

    # ---------------------------------------------------------------- passes
    def _forward(self, X, ws, training, x16_ready=False):
        """The network's output for X (m rows, ``ws`` of m rows). Under mixed precision the
        first Dense reads ``ws.X16``, X's bfloat16 copy: converted here unless the batch source
        already gathered it (``x16_ready``)."""
        A, A16 = X, ws.X16
        if self._low_input and not x16_ready:
            self._bk.k.to_bfloat16(A16, X)
        for op, w in zip(self._ops, ws.layers):
            A = op.forward(A16 if op.low_input else A, w, training)
            A16 = w.A16
        return A

    def _backward(self, ws):
        d = ws.dout
        last = len(self._ops) - 1
        for i in range(last, -1, -1):
            d = self._ops[i].backward(d, ws.layers[i], need_dX=i > 0)

    def _loss_into(self, loss_buf, out, Y, ws, w=None, wsum=0.0):
        """Loss into ``loss_buf``, its gradient into ``ws.dout``; with per-example weights ``w``
        (on the backend, (m,)) summing to ``wsum``, the kernel's weighted variant."""
        if w is None:
            getattr(self._bk.k, self.loss.kernel)(loss_buf, ws.dout, out, Y)
        else:
            getattr(self._bk.k, "weighted_" + self.loss.kernel)(loss_buf, ws.dout, out, Y, w,
                                                                 wsum)

    def _sample_weight(self, sample_weight, m, name="sample_weight"):
        """Weights validated in the model's dtype (after the cast: no overflow to inf, no
        non-zero weight rounded to 0) and their sum (float64, of the cast values, so the
        kernels and the L2 term see the same sum)."""
        w = as_sample_weight(name, sample_weight, m, self.dtype)
        return w, float(w.sum(dtype=np.float64))

    def _batch_weights(self, ws):
        """The workspace's weight buffer: (m, 1) for ``gather_rows``, and its (m,) view."""
        if getattr(ws, "Wb", None) is None:
            ws.Wb = self._bk.empty((ws.m, 1), self.dtype)
            ws.wb = ws.Wb.reshape(ws.m)
        return ws.Wb

    def _sq_weights_into(self, sq_buf):
        self._bk.k.sum_squares(sq_buf, self.params.data[:self.params.n_decay])

    def _step_costs(self, Xb, Yb, ws, l2, loss_buf=None, sq_buf=None, w=None, wsum=0.0,
                    correct_buf=None, x16_ready=False):
        """Forward, loss and backward for one batch; fills the gradient buffer (data loss only;
        the L2 gradient is folded into the optimizer update). Returns nothing: the loss and
        the weights' squared norm land in ``loss_buf`` / ``sq_buf`` (device-friendly), and with
        ``correct_buf`` the (weighted) count of examples classified right before the update
        (the training accuracy). ``w``/``wsum``: the batch's per-example weights (see
        ``_loss_into``); ``x16_ready``: ``ws.X16`` already holds the batch in bfloat16 (see
        ``_forward``)."""
        out = self._forward(Xb, ws, training=True, x16_ready=x16_ready)
        self._loss_into(ws.loss if loss_buf is None else loss_buf, out, Yb, ws, w, wsum)
        if correct_buf is not None:
            self._bk.k.correct_predictions(correct_buf, out, Yb,
                                           self._no_weights if w is None else w, self.loss.code)
        if l2:
            self._sq_weights_into(ws.sq if sq_buf is None else sq_buf)
        self._backward(ws)

    # ---------------------------------------------------------------- input handling
    @property
    def standardizer(self):
        """An ``fd.Standardizer`` applied to every input X (fitted by ``fit`` if needed), or
        None. Set it with ``model.standardizer = fd.Standardizer()``."""
        return self._standardizer

    @standardizer.setter
    def standardizer(self, value):
        from ..data.preprocessing import Standardizer
        if value is not None and not isinstance(value, Standardizer):
            raise TypeError(f"standardizer={value!r} is invalid; expected an fd.Standardizer "
                            "or None")
        self._standardizer = value

    def _X(self, X, name="X", allow_empty=False):
        if is_device_array(X):
            return self._device_features(X, name)
        Xc = as_features(name, X, self.dtype, self.input_dim, allow_empty)
        if self.standardizer is None or Xc.shape[0] == 0:
            return Xc
        return self.standardizer._for_model(self, Xc, name)

    def _device_features(self, X, name):
        """Device-resident X (cuda backend): checked where it lives, never copied to the host.
        Conversions (dtype, layout) are the caller's, on the device: a silent host round trip
        would hide the cost this path exists to avoid."""
        if not self._bk.on_device:
            raise TypeError(f"{name} is a CUDA device array but the model's backend is "
                            f"{self.backend_name!r}; use backend='cuda' or copy it to the host")
        shape = tuple(X.shape)
        if len(shape) != 2 or shape[0] == 0 or shape[1] != self.input_dim:
            raise ValueError(f"{name} has shape {shape}; expected (n_examples >= 1, "
                             f"{self.input_dim})")
        if np.dtype(X.dtype) != self.dtype:
            raise ValueError(f"{name}.dtype={np.dtype(X.dtype)} differs from the model's "
                             f"{self.dtype}; convert it on the device first")
        if hasattr(X, "is_c_contiguous") and not X.is_c_contiguous():
            raise ValueError(f"{name} is not C-contiguous; expected a contiguous device array")
        if self.standardizer is not None:
            raise ValueError(f"{name} is a device array but the model has a standardizer, "
                             "which works on host arrays; standardize on the device first")
        sq = self._bk.zeros((1,), np.float64)          # NaN/inf anywhere -> non-finite sum
        self._bk.k.sum_squares(sq, X.reshape(shape[0] * shape[1]))
        if not np.isfinite(self._bk.to_numpy(sq)[0]):
            raise ValueError(f"{name} contains NaN or infinite values (or overflows float64 "
                             "when squared); expected finite numbers")
        return X

    def _Y(self, y, name="y"):
        return self.loss.encode(as_targets(name, y), self.output_dim, self.dtype, name)

    def _XY(self, X, y, xname="X", yname="y"):
        Xc = self._X(X, xname)
        yc = as_targets(yname, y)
        check_rows(Xc, yc, xname, yname)
        return Xc, self.loss.encode(yc, self.output_dim, self.dtype, yname)

    # ---------------------------------------------------------------- training API
    def _weights_and_denominator(self, sample_weight, m):
        """(weights on the backend or None, the cost's denominator: m, or sum(w))."""
        if sample_weight is None:
            return None, m
        w, wsum = self._sample_weight(sample_weight, m)
        return self._bk.asarray(w), wsum

    def train_on_batch(self, X, y, optimizer, l2=0.0, sample_weight=None):
        """One update on the given batch; returns that batch's cost computed before the update
        (L2 term included). A non-finite cost raises ``FloatingPointError`` and leaves the
        parameters untouched. ``sample_weight``: per-example weights as in :meth:`fit`."""
        from ..train.loop import DivergenceError, check_optimizer
        check_optimizer(optimizer)
        l2 = check_float("l2", l2, minimum=0.0)
        Xc, Yc = self._XY(X, y)
        m = Xc.shape[0]
        w, denom = self._weights_and_denominator(sample_weight, m)
        ws = self._workspace(m)
        self._step_costs(self._bk.asarray(Xc), self._bk.asarray(Yc), ws, l2, w=w, wsum=denom)
        cost = float(self._bk.to_numpy(ws.loss)[0])
        if l2:
            cost += l2 / (2.0 * denom) * float(self._bk.to_numpy(ws.sq)[0])
        if not np.isfinite(cost):
            raise DivergenceError(f"the cost of this batch is {cost}; the update was not "
                                  "applied (lower the learning rate, check inputs)")
        self._apply_update(optimizer, l2 / denom)
        self.steps_trained += 1
        return cost

    def _apply_update(self, optimizer, l2_m):
        """One optimizer step over the flat buffers (the L2 term ``l2_m * W`` folded in).
        Under mixed precision fastdl's optimizers also rewrite the weights' bfloat16 shadow in
        their update kernel; another library's optimizer (no ``writes_shadow``) gets it
        refreshed by one conversion pass after its step."""
        p = self.params
        if not p.shadow.size:
            optimizer.step(p.data, p.grad, l2=l2_m, n_l2=p.n_decay)
        elif getattr(optimizer, "writes_shadow", False):
            optimizer.step(p.data, p.grad, l2=l2_m, n_l2=p.n_decay, shadow=p.shadow)
        else:
            optimizer.step(p.data, p.grad, l2=l2_m, n_l2=p.n_decay)
            p._refresh_shadow()

    def loss_and_grads(self, X, y, l2=0.0, sample_weight=None):
        """(cost, grads): the cost on (X, y) (L2 term included) and its gradient with respect
        to every parameter, as a list laid out like ``get_weights()`` (NumPy arrays; the
        entries of non-trainable state, BatchNorm running statistics, are zeros). A training
        mode pass: dropout masks of step ``steps_trained``, BatchNorm batch statistics. An
        inspection: the model is left as it was (BatchNorm's running statistics included).
        ``sample_weight`` (m,): the weighted cost
        ``sum_i w_i l_i / sum(w) + l2/(2 sum(w)) * sum ||W||^2`` (see :meth:`fit`)."""
        l2 = check_float("l2", l2, minimum=0.0)
        Xc, Yc = self._XY(X, y)
        w = None if sample_weight is None else self._sample_weight(sample_weight, Xc.shape[0])[0]
        with self._state_kept():
            cost, flat = self._flat_loss_and_grad(Xc, Yc, l2, w)
        return cost, self._unflatten(flat)

    def _layer_states(self):
        """Host copies of every layer's non-trainable state (BatchNorm running statistics)."""
        return [(layer, n, layer.get_state(n)) for layer in self.layers for n in layer.state_names]

    @staticmethod
    def _restore_layer_states(saved):
        for layer, name, value in saved:
            layer.set_state(name, value)

    @contextmanager
    def _state_kept(self):
        """Training-mode passes inside leave the layers' non-trainable state as it was (a
        training forward of BatchNorm updates its running statistics)."""
        saved = self._layer_states()
        try:
            yield
        finally:
            self._restore_layer_states(saved)

    def _flat_loss_and_grad(self, Xc, Yc, l2, w=None):
        """Cost and flat gradient on validated (Xc, Yc); ``w``: validated weights or None."""
        m = Xc.shape[0]
        wd, denom = (None, m) if w is None else (self._bk.asarray(w),
                                                 float(w.sum(dtype=np.float64)))
        ws = self._workspace(m)
        self._step_costs(self._bk.asarray(Xc), self._bk.asarray(Yc), ws, l2, w=wd, wsum=denom)
        cost = float(self._bk.to_numpy(ws.loss)[0])
        grad = self._bk.to_numpy(self.params.grad).astype(self.dtype, copy=True)
        if l2:
            cost += l2 / (2.0 * denom) * float(self._bk.to_numpy(ws.sq)[0])
            n = self.params.n_decay
            grad[:n] += (l2 / denom) * self._bk.to_numpy(self.params.data)[:n]
        return cost, grad

    def _cost(self, Xc, Yc, l2, w=None):
        """Forward-only cost (for gradient checking); ``w``: validated weights or None."""
        m = Xc.shape[0]
        wd, denom = (None, m) if w is None else (self._bk.asarray(w),
                                                 float(w.sum(dtype=np.float64)))
        ws = self._workspace(m)
        out = self._forward(self._bk.asarray(Xc), ws, training=True)
        self._loss_into(ws.loss, out, self._bk.asarray(Yc), ws, wd, denom)
        cost = float(self._bk.to_numpy(ws.loss)[0])
        if l2:
            self._sq_weights_into(ws.sq)
            cost += l2 / (2.0 * denom) * float(self._bk.to_numpy(ws.sq)[0])
        return cost

    def fit(self, X, y, optimizer=None, epochs=1, batch_size=64, l2=0.0, validation_data=None,
            callbacks=None, verbose=1, shuffle=True, lr_schedule=None, drop_last=False,
            resume_from=None, augment=None, distributed=False, sample_weight=None,
            initial_epoch=0):
        """Mini-batch training; returns a :class:`~fastdl.train.History`.

        Batches are reshuffled every epoch from ``seed`` (a pure function of seed and epoch),
        the last partial batch is kept. ``optimizer``: an instance (``fd.optim.Adam()``, not
        the class); ``None`` continues with ``model.optimizer`` (the one the last ``fit``
        used, or that ``fd.load`` restored, with its state: Keras's compiled optimizer), and a
        model that never had one gets ``fd.optim.SGD(lr=0.01)``.
        ``lr_schedule(epoch) -> lr`` sets the learning rate at the start of each epoch.
        History records per epoch: ``loss`` (mean training cost, L2 included), ``accuracy``
        for classifiers (the fraction of the epoch's training examples classified right by
        the parameters they were trained with, before each update, as Keras's running
        accuracy), ``lr``, and with ``validation_data`` ``val_loss`` (data loss, no L2 term)
        and ``val_accuracy``. ``callbacks``: a list, or one callback.

        Epochs are counted per call, as in Keras: a second ``fit(epochs=2)`` runs epochs 0 and
        1 of its own (schedules, callbacks, History and the progress line see those numbers);
        ``initial_epoch=k`` starts the count at k and trains ``epochs - k`` epochs. The batches
        still come from the model's running epoch counter ``model.epochs_trained``, so a second
        call does not repeat the first one's shuffles.

        A non-finite cost stops training with ``fd.DivergenceError`` (a FloatingPointError);
        the model keeps the parameters (and optimizer state, counters, batch-norm statistics)
        that produced the last finite cost, so its predictions are finite.

        ``X``/``y`` may be ``.npy`` paths or ``np.memmap`` arrays: training then streams them
        from disk in shuffled blocks with bounded memory (``fastdl/data/batches.py``);
        ``validation_data`` may be given the same way (read in chunks every epoch).
        ``drop_last``: skip the last partial batch (an error when ``batch_size`` exceeds the
        rows: no batch would be left). ``verbose``: 0 silent, 1 a progress bar on a terminal
        (one line per epoch otherwise), 2 one line per epoch.
        ``resume_from``: a checkpoint (``model.save``/``ModelCheckpoint``) of this run; training
        continues from it (weights, optimizer state, counters, seed) up to the run's
        ``epochs`` and ends with the parameters an uninterrupted run would have.
        ``resume_from=model.history`` continues in memory and appends to that same History
        (the panda workflow, docs/tuning.md). On any resume ``epochs`` counts the whole run
        (Keras's ``epochs`` with ``initial_epoch``: a checkpoint already past ``epochs`` warns
        that nothing will train); an optimizer passed keeps its own settings (lr, betas,
        clipping) and takes only its moments and step counter from the run, so a changed
        learning rate wins; ``optimizer=None`` continues with the run's optimizer.
        Ctrl-C (KeyboardInterrupt) rewinds the model to the end of the last completed epoch
        (parameters, optimizer state, counters, batch-norm running statistics) and re-raises,
        so the model, ``model.history`` and the last checkpoint agree.
        ``augment``: an ``fd.Augment`` applied to every training mini-batch (never to
        validation data), drawn from (seed, epoch, batch).
        With ``model.standardizer`` set, an unfitted standardizer is fitted on this ``X``.
        ``distributed``: True (or ``fd.distributed.DataParallel(...)``) under ``mpiexec``:
        data-parallel training, each rank takes its slice of every global batch of
        ``batch_size`` rows and one gradient allreduce per step gives every rank the
        one-process update (``fastdl/distributed``, ``docs/distributed.md``).

        ``sample_weight``: per-example weights, a 1-D array of ``len(X)`` finite numbers >= 0,
        not all zero (in-memory X only; streamed input and ``distributed`` raise
        NotImplementedError). Each batch's weights are gathered with its rows, and with
        ``w_i`` the weights of the batch's rows and ``l_i`` their losses, the batch cost and
        its gradient are scikit-learn's (``MLPClassifier``/``MLPRegressor``,
        ``sklearn/neural_network/_multilayer_perceptron.py``, ``_backprop``)::

            J = sum_i w_i l_i / sum_i w_i  +  l2 / (2 sum_i w_i) * sum_l ||W[l]||_F^2
            dJ/dz_i = w_i dl_i/dz_i / sum_i w_i

        i.e. the batch size m becomes sum(w): integer weights equal repeated rows for
        full-batch training, all-ones weights give the unweighted result. Keras instead
        divides by m ("sum_over_batch_size"). A batch whose weights are all zero contributes
        cost 0 and a zero gradient. The epoch's ``loss`` is the mean of the batch costs
        weighted by batch size (scikit-learn's ``loss_curve_``). ``validation_data`` may carry
        weights as a third element ``(X_dev, y_dev, w_dev)``: ``val_loss``/``val_accuracy`` are
        then weighted means (:meth:`evaluate`). With weights, every epoch takes the step path
        (the whole-epoch fused kernel has no weights).
        """
        from ..train.loop import fit
        return fit(self, X, y, optimizer=optimizer, epochs=epochs, batch_size=batch_size, l2=l2,
                   validation_data=validation_data, callbacks=callbacks, verbose=verbose,
                   shuffle=shuffle, lr_schedule=lr_schedule, drop_last=drop_last,
                   resume_from=resume_from, augment=augment, distributed=distributed,
                   sample_weight=sample_weight, initial_epoch=initial_epoch)

    # ---------------------------------------------------------------- inference API
    def _input_chunks(self, X, name="X", allow_empty=False):
        """``(m, chunks)``: the rows of X and an iterator of ``(start, chunk)``, X as validated
        (model dtype, finite, standardized) chunks of at most ``EVAL_CHUNK`` rows, so workspace
        memory stays bounded. In-memory X is validated once; a ``.npy`` path or ``np.memmap``
        is read chunk by chunk through the out-of-core reader (``data/batches.py``), as ``fit``
        streams it, and each chunk validated."""
        if is_streamable(X):
            chunks = ((start, self._X(raw, f"{name}[{start}:{start + raw.shape[0]}]"))
                      for start, raw in row_chunks(name, X, EVAL_CHUNK))
            return count_rows(name, X), chunks
        Xc = self._X(X, name, allow_empty)
        return Xc.shape[0], ((s, Xc[s:s + EVAL_CHUNK]) for s in range(0, Xc.shape[0], EVAL_CHUNK))

    def _logits(self, xb, ws, what, start):
        """The network's outputs for one validated chunk, on the backend (logits for the
        fused losses), and a host copy; non-finite outputs raise (:meth:`_non_finite`)."""
        z = self._forward(self._bk.asarray(xb), ws, training=False)
        zh = self._bk.to_numpy(z)
        if not np.isfinite(zh).all():
            self._non_finite(xb, zh, what, start)
        return z, zh

    def _non_finite(self, xb, zh, what, start):
        """Raise FloatingPointError naming the first layer whose output is not finite for this
        chunk of finite inputs (found by running the layers one at a time: the error path
        only, so normal calls pay one finiteness check of the outputs)."""
        rows = ~np.isfinite(zh.reshape(zh.shape[0], -1)).all(axis=1)
        ws = self._workspace(xb.shape[0])
        A, where = self._bk.asarray(xb), len(self.layers) - 1
        for op, w in zip(self._ops, ws.layers):
            A = op.forward(A, w, training=False)
            if not np.isfinite(self._bk.to_numpy(A)).all():
                where = next(i for i, layer in enumerate(self.layers) if layer is op)
                break
        end = start + xb.shape[0]
        raise FloatingPointError(
            f"{what}: layers[{where}] ({self.layers[where].describe()}) produced non-finite "
            f"values (inf or NaN) for {int(rows.sum())} of {xb.shape[0]} rows of X[{start}:{end}] "
            f"(first: row {start + int(np.argmax(rows))}) from finite inputs: the values "
            f"overflow {self.dtype.name} (largest {float(np.finfo(self.dtype).max):.3g}). "
            "Standardize the inputs (fd.Standardizer) or check the weights.")

    def _proba_into(self, z, ws):
        """Probabilities (softmax/sigmoid of the logits) on the backend; mse: the outputs."""
        k = self._bk.k
        if self.output_activation == "softmax":
            k.softmax_forward(ws.prob, z)
            return ws.prob
        if self.loss.output_activation == "sigmoid":
            k.activation_forward(ws.prob, z, ACTIVATIONS["sigmoid"], 0.0)
            return ws.prob
        return z

    def predict_proba(self, X):
        """Probabilities: (m, C) for softmax, (m, k) for sigmoid outputs; raw outputs for mse.
        ``X`` may be a ``.npy`` path or an ``np.memmap`` (read in chunks) and may have 0 rows.
        Outputs that are not finite raise FloatingPointError naming the layer that overflowed."""
        return self._proba_of_chunks(*self._input_chunks(X, allow_empty=True))

    def _outputs(self, Xc):
        """:meth:`predict_proba` of an in-memory X already validated by the caller (model
        dtype, finite, right width): ``fastdl.sklearn`` validates once itself, and its one-row
        latency is why this path skips the second validation."""
        return self._proba_of_chunks(Xc.shape[0], ((s, Xc[s:s + EVAL_CHUNK])
                                                   for s in range(0, Xc.shape[0], EVAL_CHUNK)))

    def _proba_of_chunks(self, m, chunks):
        out = np.empty((m, self.output_dim), dtype=self.dtype)
        for start, xb in chunks:
            ws = self._workspace(xb.shape[0])
            z, _ = self._logits(xb, ws, "predict_proba", start)
            out[start:start + xb.shape[0]] = self._bk.to_numpy(self._proba_into(z, ws))
        if self.loss.output_activation == "exp":    # the log link's inverse (loss="poisson")
            np.exp(out, out=out)
        return out

    def predict(self, X):
        """Labels as scikit-learn: 0/1 for sigmoid outputs (class 1 when the logit is >= 0, i.e.
        sigmoid >= 1/2; shape (m,) for one output), the class index for softmax (argmax of the
        logits), values for regression; the rule of ``LossSpec.labels``, which ``evaluate``
        and the training accuracy share. ``X`` as in :meth:`predict_proba`."""
        m, chunks = self._input_chunks(X, allow_empty=True)
        parts = [self.loss.labels(np.empty((0, self.output_dim), self.dtype))]
        for start, xb in chunks:
            z, zh = self._logits(xb, self._workspace(xb.shape[0]), "predict", start)
            parts.append(self.loss.labels(np.array(zh, copy=True)))
        return np.concatenate(parts)

    def _target_chunks(self, y, m, name="y"):
        """Encoded targets for rows [start, start + rows) of ``y`` (a .npy path or memmap is
        read by rows)."""
        if isinstance(y, (str, os.PathLike)):
            y = np.load(os.fspath(y), mmap_mode="r", allow_pickle=False)
        if isinstance(y, np.memmap):
            if y.shape[0] != m:
                raise ValueError(f"X has {m} rows but {name} has {y.shape[0]}; expected one "
                                 "label per example")
            return lambda s, n: self._Y(np.asarray(y[s:s + n]), f"{name}[{s}:{s + n}]")
        yc = as_targets(name, y)
        if yc.shape[0] != m:
            raise ValueError(f"X has {m} rows but {name} has {yc.shape[0]}; expected one label "
                             "per example")
        Yc = self.loss.encode(yc, self.output_dim, self.dtype, name)
        return lambda s, n: Yc[s:s + n]

    def evaluate(self, X, y, sample_weight=None):
        """{"loss": data loss (mean, no L2 term), "accuracy": ... for classification}.

        ``sample_weight`` (m,): weighted means instead, ``loss = sum_i w_i l_i / sum(w)`` and
        ``accuracy = sum_i w_i correct_i / sum(w)`` (scikit-learn's ``accuracy_score`` with
        ``sample_weight``; for several sigmoid outputs ``correct_i`` is the row's fraction of
        correct outputs). The accuracy counts ``predict``'s labels (``LossSpec.labels``).
        ``X``/``y`` may be ``.npy`` paths or ``np.memmap`` arrays (read in chunks, memory stays
        bounded). A network output that is not finite raises FloatingPointError."""
        m, chunks = self._input_chunks(X)
        if m == 0:
            raise ValueError("X is empty (0 rows); expected at least one example to evaluate")
        targets = self._target_chunks(y, m)
        w = None if sample_weight is None else self._sample_weight(sample_weight, m)[0]
        total, wtotal, correct = 0.0, 0.0, 0.0
        for start, xb in chunks:
            n = xb.shape[0]
            yb = targets(start, n)
            ws = self._workspace(n)
            z, zh = self._logits(xb, ws, "evaluate", start)
            if w is None:
                wb, wsum, wd = None, float(n), None
            else:
                wb = w[start:start + n]
                wsum = float(wb.sum(dtype=np.float64))
                wd = self._bk.asarray(wb)
            self._loss_into(ws.loss, z, self._bk.asarray(yb), ws, wd, wsum if wd is not None
                            else 0.0)
            total += float(self._bk.to_numpy(ws.loss)[0]) * wsum   # the chunk's weighted total
            wtotal += wsum
            if self.loss.is_classification:
                c = self.loss.correct(zh, yb)
                correct += float(c.sum()) if wb is None else float(c @ wb.astype(np.float64))
        result = {"loss": total / wtotal}
        if self.loss.is_classification:
            result["accuracy"] = correct / wtotal
        return result

    def diagnose(self, train, dev, bayes_error=0.0, train_dev=None, tolerance=0.02):
        """Bias/variance diagnosis from this classifier's error rates (1 - accuracy) on
        ``train=(X, y)``, ``dev=(X, y)`` and optionally ``train_dev=(X, y)``; see
        :func:`fastdl.diagnose`."""
        from ..diagnose import diagnose
        if not self.loss.is_classification:
            raise ValueError(f"diagnose needs a classifier; this model's loss is "
                             f"{self.loss.name!r}")
        err = lambda pair, name: 1.0 - self.evaluate(*_pair(pair, name))["accuracy"]
        return diagnose(err(train, "train"), err(dev, "dev"), bayes_error,
                        None if train_dev is None else err(train_dev, "train_dev"), tolerance)

    # ---------------------------------------------------------------- weights
    def _tensor_keys(self):
        return [(i, s.name) for i, layer in enumerate(self.layers) for s in layer.param_specs(i)]

    def _weight_keys(self):
        """(layer, name, is_state) of every get_weights() entry: per layer its parameters,
        then its non-trainable state (BatchNorm: gamma, beta, running_mean, running_var)."""
        return [(i, n, st) for i, n, st, _ in tensor_specs(self.layers)]

    def get_weights(self):
        """[W1, b1, W2, b2, ...] as NumPy copies (W of shape (units, inputs)); a BatchNorm
        layer contributes gamma, beta, running_mean, running_var."""
        host = self.params.snapshot()
        return self._unflatten(host, with_state=True)

    def _unflatten(self, flat, with_state=False):
        """Tensors laid out like get_weights(); state entries are the layers' state arrays
        (``with_state``) or zeros (gradients)."""
        out = []
        for i, name, is_state in self._weight_keys():
            layer = self.layers[i]
            if is_state:
                out.append(layer.get_state(name) if with_state else
                           np.zeros(layer.state_shape(name), self.dtype))
                continue
            off, shape = self.params.offsets[(i, name)]
            out.append(np.array(flat[off:off + int(np.prod(shape))].reshape(shape)))
        return out

    def set_weights(self, weights):
        """Copy a list laid out like ``get_weights()`` into the model (shapes checked)."""
        keys = self._weight_keys()
        if not isinstance(weights, (list, tuple)) or len(weights) != len(keys):
            n = len(weights) if isinstance(weights, (list, tuple)) else type(weights).__name__
            raise ValueError(f"weights has {n} entries; expected a list of {len(keys)} arrays "
                             f"({', '.join(f'{n}{i}' for i, n, _ in keys)})")
        arrays = []
        for j, ((i, name, is_state), w) in enumerate(zip(keys, weights)):
            shape = (self.layers[i].state_shape(name) if is_state
                     else self.params.offsets[(i, name)][1])
            a = numeric_array(f"weights[{j}]", w)
            if a.shape != tuple(shape):
                raise ValueError(f"weights[{j}] ({name} of layer {i}) has shape {a.shape}; "
                                 f"expected {tuple(shape)}")
            if not np.isfinite(a).all():
                bad = int(a.size - np.count_nonzero(np.isfinite(a)))
                raise ValueError(f"weights[{j}] ({name} of layer {i}) contains {bad} NaN or "
                                 "infinite value(s); expected finite weights")
            if is_state and name == "running_var" and (a < 0).any():
                raise ValueError(f"weights[{j}] ({name} of layer {i}) has negative entries; "
                                 "expected variances >= 0")
            arrays.append(a)
        for (i, name, is_state), a in zip(keys, arrays):
            if is_state:
                self.layers[i].set_state(name, a)
            else:
                self.params.assign(i, name, a)

    def count_params(self):
        return self.params.size

    def save(self, path, optimizer=None):
        """Write architecture, parameters, optimizer state (``optimizer`` or the last one
        ``fit`` used), standardizer and counters to one ``.npz`` at ``path``, atomically;
        ``fd.load(path)`` reads it back (see ``fastdl/io.py``)."""
        from ..io import save
        save(self, path, optimizer=optimizer)

    # ---------------------------------------------------------------- misc
    def to(self, backend):
        """Move the model (parameters, workspaces) to another backend; returns self."""
        name = check_name(backend)
        precision = resolve_precision(self.compute_dtype, self.dtype, name, self.allow_slow)
        host = self.params.snapshot()
        self.backend_name, self.precision = name, precision
        self._bk = get_backend(name)
        self._allocate()
        self.params.restore(host)
        return self

    def get_config(self):
        cfg = {"input_dim": self.input_dim, "loss": self.loss.name, "dtype": self.dtype.name,
               "seed": self.seed, "layers": [layer.get_config() for layer in self.layers]}
        if self.compute_dtype is not None:     # only when set: older files stay unchanged
            cfg["compute_dtype"] = self.compute_dtype
        return cfg

    @classmethod
    def from_config(cls, cfg, backend=None, allow_slow=False):
        """The model ``get_config()`` describes (fresh weights). ``allow_slow``: see the class
        docstring (a bfloat16 model built where bfloat16 cannot be fast)."""
        return cls([layer_from_config(c) for c in cfg["layers"]], input_dim=cfg["input_dim"],
                   loss=cfg["loss"], dtype=cfg["dtype"], seed=cfg["seed"], backend=backend,
                   compute_dtype=cfg.get("compute_dtype"), allow_slow=allow_slow)

    def summary(self, print_fn=print):
        """A table of layers, output shapes and parameter counts; printed and returned."""
        rows = [("Layer", "Output shape", "Params")]
        for i, layer in enumerate(self.layers):
            n = sum(int(np.prod(s.shape)) for s in layer.param_specs(i))
            note = " (fused)" if getattr(layer, "fused", False) else ""
            rows.append((f"{i}: {layer.describe()}{note}", f"(None, {layer.output_dim})",
                         f"{n:,}"))
        widths = [max(len(r[c]) for r in rows) for c in range(3)]
        line = "-" * (sum(widths) + 4)
        fmt = lambda r: f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}"
        out = [fmt(rows[0]), line] + [fmt(r) for r in rows[1:]] + [line,
               f"Total params: {self.params.size:,}  (input_dim={self.input_dim}, "
               f"loss={self.loss.name}, dtype={self.dtype.name}, backend={self.backend_name})"]
        if self.precision.low:
            out.append(f"Mixed precision: {self.precision.describe()}; parameters, optimizer "
                       f"state and outputs in {self.dtype.name}")
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text

    def __repr__(self):
        return (f"Sequential({len(self.layers)} layers, input_dim={self.input_dim}, "
                f"loss={self.loss.name!r}, params={self.params.size})")
