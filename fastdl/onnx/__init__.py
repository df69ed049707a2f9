"""ONNX export: ``fastdl.onnx.to_onnx(model_or_fitted_estimator, path=None, opset=None)``.

Inference graphs for ONNX Runtime (or any ONNX runtime) from a ``fd.Sequential`` or a fitted
``fastdl.sklearn.MLPClassifier`` / ``MLPRegressor``:

* one ``Gemm`` per Dense (``Y = X W^T + b``, ``transB=1``: fastdl's (units, inputs) layout);
* ``Relu`` / ``LeakyRelu`` / ``Tanh`` / ``Sigmoid`` for hidden activations;
* a BatchNorm after a Dense folded into that Gemm with its inference statistics
  (``s = gamma / sqrt(running_var + eps)``, ``W' = s W``, ``b' = s (b - running_mean) + beta``),
  elsewhere a ``Mul`` + ``Add``; Dropout removed (inverted dropout is the identity at inference);
* the model's fitted ``Standardizer`` folded into the first Gemm (``W' = W / std``,
  ``b' = b - W' mean``), or a ``Sub`` + ``Mul`` when the first layer is not a Dense;
* outputs with their activation: ``Softmax``, ``Sigmoid``, ``Exp`` (``loss="poisson"``), or none.

Outputs follow skl2onnx: classifiers give ``label`` (int64 or string, shape (N,); (N, L) for
multilabel) and ``probabilities`` (N, C) (binary: ``[1 - p, p]``), with ``zipmap=True`` the
latter as ZipMap's list of {class: probability} dicts (float32); regressors give ``variable``
(N, n_outputs). A ``Sequential`` with a sigmoid or softmax loss gives ``label`` (what
``predict`` returns: the class index, or 0/1 per output) and ``probabilities``; any other gives
``variable``. The graph computes in the model's dtype (float32 or float64) and takes inputs
``X`` of that dtype, shape (N, n_features).

Importing this module registers the fastdl.sklearn estimators with skl2onnx (when it is
installed), so ``skl2onnx.to_onnx(pipeline, X[:1])`` converts a scikit-learn ``Pipeline``
holding one. Needs ``onnx`` (``pip install "fastdl[onnx]"``, which brings skl2onnx too).

Reference: ONNX operator specifications (https://onnx.ai/onnx/operators/), skl2onnx's
``convert_sklearn_mlp_classifier`` for the output conventions.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover - exercised only without the extra
    raise ImportError("fastdl.onnx needs the onnx package; install it with "
                      "pip install \"fastdl[onnx]\"") from None

from ..nn import Activation, BatchNorm, Dense, Dropout, Sequential

#: Opset written when ``opset`` is None (every operator used here is unchanged since 13).
DEFAULT_OPSET = 17
MIN_OPSET = 13
_ONNX_TYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}
_ACT_OPS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softmax": "Softmax",
            "exp": "Exp"}

__all__ = ["to_onnx", "register_skl2onnx", "DEFAULT_OPSET"]


# ------------------------------------------------------------------ graph sinks
class _Sink:
    """Collects nodes and initializers for ``onnx.helper.make_graph``."""

    def __init__(self):
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, base):
        self._n += 1
        return f"{base}_{self._n}"

    def const(self, base, array):
        name = self.name(base)
        arr = np.asarray(array)
        if arr.dtype.kind in "OUS":
            self.inits.append(helper.make_tensor(name, TensorProto.STRING, arr.shape,
                                                 [str(v).encode() for v in arr.ravel()]))
        else:
            self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op, inputs, base=None, outputs=None, domain="", **attrs):
        outs = outputs or [self.name(base or op.lower())]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=self.name(op),
                                           domain=domain, **attrs))
        return outs[0]


class _SklSink(_Sink):
    """The same interface on skl2onnx's scope and container (its converter API)."""

    def __init__(self, scope, container):
        super().__init__()
        self.scope, self.container = scope, container

    def name(self, base):
        return self.scope.get_unique_variable_name(base)

    def const(self, base, array):
        name = self.name(base)
        arr = np.asarray(array)
        if arr.dtype.kind in "OUS":
            self.container.add_initializer(name, TensorProto.STRING, list(arr.shape),
                                           [str(v) for v in arr.ravel()])
        else:
            self.container.add_initializer(name, None, None, numpy_helper.from_array(arr, name))
        return name

    def node(self, op, inputs, base=None, outputs=None, domain="", **attrs):
        outs = outputs or [self.name(base or op.lower())]
        self.container.add_node(op, list(inputs), outs, op_domain=domain or "",
                                name=self.scope.get_unique_operator_name(op), **attrs)
        return outs[0]


# ------------------------------------------------------------------ the network
def _params_by_layer(model):
    """{(layer index, name): host array} for parameters and BatchNorm statistics."""
    return {(i, n): w for (i, n, _), w in zip(model._weight_keys(), model.get_weights())}


def _unsupported(i, layer):
    return ValueError(
        f"model.layers[{i}] ({layer.describe()}) has no ONNX equivalent in fastdl.onnx; "
        "layers it can export: Dense, Activation, BatchNorm, Dropout")


def _activation(g, x, act, alpha, dt):
    """The activation node for ``act`` on x (None for linear: no node)."""
    if act in ("linear", None):
        return x
    if act == "leaky_relu":
        return g.node("LeakyRelu", [x], "leaky_relu", alpha=float(alpha))
    if act == "softmax":
        return g.node("Softmax", [x], "softmax", axis=1)
    return g.node(_ACT_OPS[act], [x], act)


def _network(g, x, model, dt):
    """Nodes from input ``x`` to the model's output after its output activation (what
    ``model.predict_proba`` returns); returns that output's name."""
    for i, layer in enumerate(model.layers):
        if not isinstance(layer, (Dense, Activation, BatchNorm, Dropout)):
            raise _unsupported(i, layer)
    params = _params_by_layer(model)
    std = model.standardizer if model.standardizer is not None and \
        model.standardizer.fitted else None
    layers = model.layers
    i = 0
    if std is not None and not isinstance(layers[0], Dense):
        x = g.node("Sub", [x, g.const("mean", std.mean.astype(dt))], "centered")
        x = g.node("Mul", [x, g.const("inv_std", (1.0 / std.std).astype(dt))], "standardized")
        std = None
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, Dense):
            W = params[(i, "W")].astype(np.float64)
            b = params[(i, "b")].astype(np.float64) if layer.use_bias else np.zeros(layer.units)
            if std is not None:                     # (x - mean) / std folded in
                W = W / std.std[None, :]
                b = b - W @ std.mean
                std = None
            act, alpha = layer.activation, layer.alpha
            if act == "linear" and i + 1 < len(layers) and isinstance(layers[i + 1], BatchNorm):
                i += 1          # (after an activation, a BatchNorm stays a Mul + Add below)
                bn = layers[i]
                gamma, beta, mean, var = (params[(i, n)].astype(np.float64) for n in
                                          ("gamma", "beta", "running_mean", "running_var"))
                s = gamma / np.sqrt(var + bn.eps)
                W, b = W * s[:, None], (b - mean) * s + beta
            x = g.node("Gemm", [x, g.const("W", W.astype(dt)), g.const("b", b.astype(dt))],
                       "dense", transB=1)
            x = _activation(g, x, act, alpha, dt)
        elif isinstance(layer, BatchNorm):
            gamma, beta, mean, var = (params[(i, n)].astype(np.float64) for n in
                                      ("gamma", "beta", "running_mean", "running_var"))
            s = gamma / np.sqrt(var + layer.eps)
            x = g.node("Mul", [x, g.const("bn_scale", s.astype(dt))], "bn_scaled")
            x = g.node("Add", [x, g.const("bn_shift", (beta - mean * s).astype(dt))], "bn")
        elif isinstance(layer, Activation):
            x = _activation(g, x, layer.activation, layer.alpha, dt)
        i += 1              # Dropout: the identity at inference
    return x


# ------------------------------------------------------------------ heads
def _labels_from(g, proba, multilabel, one_logistic, classes, dt):
    """``label`` from probabilities: argmax over columns (multiclass), p >= 0.5 (binary /
    multilabel), mapped through ``classes`` (None: the indices themselves)."""
    if multilabel:
        return g.node("Cast", [g.node("GreaterOrEqual", [proba, g.const("half",
                      np.array(0.5, dt))], "ge")], "label_int", to=TensorProto.INT64)
    idx = g.node("ArgMax", [proba], "argmax", axis=1, keepdims=0)
    if one_logistic and classes is None:
        return idx
    if classes is None:
        return idx
    return g.node("Gather", [g.const("classes", classes), idx], "label", axis=0)


def _class_array(classes):
    """classes_ as an ONNX-able label array: int64 for integer-valued labels, else strings."""
    c = np.asarray(classes)
    if c.dtype.kind in "iub" or (c.dtype.kind == "f" and np.all(c == np.round(c))):
        return c.astype(np.int64)
    return c.astype(str)


def _estimator_graph(g, x, est, zipmap, out_names):
    """Nodes of a fitted fastdl.sklearn estimator from input x: writes ``out_names``."""
    model = est.model_
    dt = model.dtype
    out = _network(g, x, model, dt)
    if est._regression:
        g.node("Identity", [out], outputs=[out_names[0]])
        return
    multilabel = est._label_binarizer.y_type_.startswith("multilabel")
    one = est.n_outputs_ == 1 and not multilabel
    if one:                                    # [1 - p, p]
        out = g.node("Concat", [g.node("Sub", [g.const("one", np.ones((1, 1), dt)), out],
                                       "p0"), out], "proba2", axis=1)
    classes = None if multilabel else _class_array(est.classes_)
    label = _labels_from(g, out, multilabel, one, classes, dt)
    g.node("Identity", [label], outputs=[out_names[0]])
    if zipmap:
        proba = out if dt == np.float32 else g.node("Cast", [out], "proba_f32",
                                                     to=TensorProto.FLOAT)
        key = ("classlabels_strings" if classes is not None and classes.dtype.kind == "U"
               else "classlabels_int64s")
        labels = (classes if classes is not None else np.arange(out_dim(est)))
        g.node("ZipMap", [proba], outputs=[out_names[1]], domain="ai.onnx.ml",
               **{key: [str(v) if key.endswith("strings") else int(v) for v in labels]})
    else:
        g.node("Identity", [out], outputs=[out_names[1]])


def out_dim(est):
    return 2 if est.n_outputs_ == 1 and not est._label_binarizer.y_type_.startswith(
        "multilabel") else est.n_outputs_


def _sequential_graph(g, x, model, out_names):
    dt = model.dtype
    out = _network(g, x, model, dt)
    if not model.loss.is_classification:
        g.node("Identity", [out], outputs=[out_names[0]])
        return
    if model.loss.name == "categorical_crossentropy":
        label = g.node("ArgMax", [out], "argmax", axis=1, keepdims=0)
    else:                                   # sigmoid outputs: 0/1 per output, (N,) for one
        label = g.node("Cast", [g.node("GreaterOrEqual", [out, g.const("half",
                       np.array(0.5, dt))], "ge")], "label01", to=TensorProto.INT64)
        if model.output_dim == 1:
            label = g.node("Squeeze", [label, g.const("axis1", np.array([1], np.int64))],
                           "label_1d")
    g.node("Identity", [label], outputs=[out_names[0]])
    g.node("Identity", [out], outputs=[out_names[1]])


# ------------------------------------------------------------------ public API
def _resolve(model):
    """(kind, object): "sequential" or "estimator"; clear errors for anything else."""
    if isinstance(model, Sequential):
        return "sequential", model
    try:
        from ..sklearn._estimators import _BaseMLP
    except ImportError:             # pragma: no cover - scikit-learn missing
        _BaseMLP = ()
    if _BaseMLP and isinstance(model, _BaseMLP):
        if not hasattr(model, "model_"):
            raise ValueError(f"model={type(model).__name__}(...) is not fitted; call fit "
                             "before exporting it")
        model._take_user_weights()          # coefs_ the user assigned are what is exported
        return "estimator", model
    raise TypeError(f"model={model!r:.80} cannot be exported; expected an fd.Sequential or a "
                    "fitted fastdl.sklearn MLPClassifier / MLPRegressor")


def _check_opset(opset):
    if opset is None:
        return min(DEFAULT_OPSET, onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or \
            not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise ValueError(f"opset={opset!r} is invalid; expected an integer in [{MIN_OPSET}, "
                         f"{onnx.defs.onnx_opset_version()}] (the installed onnx's newest)")
    return int(opset)


def to_onnx(model, path=None, opset=None, *, zipmap=False):
    """Export ``model`` (an ``fd.Sequential`` or a fitted ``fastdl.sklearn`` estimator) to an
    ONNX ``ModelProto``; with ``path``, also write it there (atomically). ``opset``: the ONNX
    opset (default ``DEFAULT_OPSET``, at least 13). ``zipmap`` (classifiers): probabilities as
    ZipMap's list of dicts, as skl2onnx's default; False (the default) gives a tensor.
    Raises ValueError naming a layer ONNX cannot express. See the module docstring."""
    kind, obj = _resolve(model)
    opset = _check_opset(opset)
    if not isinstance(zipmap, (bool, np.bool_)):
        raise ValueError(f"zipmap={zipmap!r} is invalid; expected True or False")
    net = obj if kind == "sequential" else obj.model_
    dt = np.dtype(net.dtype)
    g = _Sink()
    X = helper.make_tensor_value_info("X", _ONNX_TYPE[dt], [None, net.input_dim])
    if kind == "sequential":
        names = (["variable"] if not net.loss.is_classification else ["label", "probabilities"])
        _sequential_graph(g, "X", net, names)
        outs = _value_infos(names, dt, net.output_dim, net.loss.name == "binary_crossentropy"
                            and net.output_dim > 1, False)
    elif obj._regression:
        names = ["variable"]
        _estimator_graph(g, "X", obj, False, names)
        outs = [helper.make_tensor_value_info("variable", _ONNX_TYPE[dt],
                                              [None, obj.n_outputs_])]
    else:
        names = ["label", "probabilities"]
        _estimator_graph(g, "X", obj, bool(zipmap), names)
        multilabel = obj._label_binarizer.y_type_.startswith("multilabel")
        classes = None if multilabel else _class_array(obj.classes_)
        outs = _value_infos(names, dt, out_dim(obj), multilabel, bool(zipmap), classes)
    domains = [helper.make_opsetid("", opset)]
    if zipmap:
        domains.append(helper.make_opsetid("ai.onnx.ml", 1))
    graph = helper.make_graph(g.nodes, f"fastdl_{type(obj).__name__}", [X], outs, g.inits)
    proto = helper.make_model(graph, opset_imports=domains, producer_name="fastdl",
                              doc_string=repr(obj)[:500])
    proto.ir_version = helper.find_min_ir_version_for(domains, ignore_unknown=True)
    onnx.checker.check_model(proto)
    if path is not None:
        _write_atomic(path, proto.SerializeToString())
    return proto


def _value_infos(names, dt, n_cols, label_2d, zipmap, classes=None):
    outs = []
    if len(names) == 1:
        return [helper.make_tensor_value_info(names[0], _ONNX_TYPE[dt], [None, n_cols])]
    label_type = TensorProto.STRING if classes is not None and classes.dtype.kind == "U" \
        else TensorProto.INT64
    outs.append(helper.make_tensor_value_info(names[0], label_type,
                                              [None, n_cols] if label_2d else [None]))
    if zipmap:
        key = TensorProto.STRING if label_type == TensorProto.STRING else TensorProto.INT64
        outs.append(helper.make_value_info(names[1], helper.make_sequence_type_proto(
            helper.make_map_type_proto(key, helper.make_tensor_type_proto(
                TensorProto.FLOAT, [])))))
    else:
        outs.append(helper.make_tensor_value_info(names[1], _ONNX_TYPE[dt], [None, n_cols]))
    return outs


def _write_atomic(path, data):
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------ skl2onnx
def _skl2onnx_converter(scope, operator, container):
    """skl2onnx converter for a fitted fastdl.sklearn estimator: the nodes of ``to_onnx``,
    on skl2onnx's variables (input cast to the model's dtype, outputs to skl2onnx's types)."""
    est = operator.raw_operator
    est._take_user_weights()
    g = _SklSink(scope, container)
    dt = np.dtype(est.model_.dtype)
    x = operator.inputs[0].full_name
    x = g.node("Cast", [x], "x_cast", to=_ONNX_TYPE[dt])
    outs = [o.full_name for o in operator.outputs]
    tmp = [g.name("label")] + ([g.name("probabilities")] if len(outs) > 1 else [])
    _estimator_graph(g, x, est, False, tmp)
    for k, (src, dst) in enumerate(zip(tmp, outs)):
        want = operator.outputs[k].type
        onnx_type = want.to_onnx_type().tensor_type.elem_type
        if (k == 1 or est._regression) and onnx_type != _ONNX_TYPE[dt]:
            g.node("Cast", [src], outputs=[dst], to=onnx_type)
        else:
            g.node("Identity", [src], outputs=[dst])


def register_skl2onnx():
    """Register MLPClassifier / MLPRegressor of fastdl.sklearn with skl2onnx (done on import
    when skl2onnx and scikit-learn are installed); returns False when they are not."""
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (calculate_linear_classifier_output_shapes,
                                                      calculate_linear_regressor_output_shapes)
        from ..sklearn import MLPClassifier, MLPRegressor
    except ImportError:
        return False
    from skl2onnx.common.data_types import Int64TensorType

    def classifier_shapes(operator):
        """skl2onnx's classifier shapes; a multilabel label is (N, L), not (N,)."""
        calculate_linear_classifier_output_shapes(operator)
        est = operator.raw_operator
        if est._label_binarizer.y_type_.startswith("multilabel"):
            operator.outputs[0].type = Int64TensorType(
                [operator.inputs[0].get_first_dimension(), est.n_outputs_])

    update_registered_converter(MLPClassifier, "FastdlMLPClassifier",
                                classifier_shapes, _skl2onnx_converter,
                                options={"zipmap": [True, False, "columns"],
                                         "nocl": [True, False]})
    update_registered_converter(MLPRegressor, "FastdlMLPRegressor",
                                calculate_linear_regressor_output_shapes, _skl2onnx_converter)
    return True


register_skl2onnx()
