"""fastdl.onnx: exported graphs run in ONNX Runtime and give fastdl's own predictions
(max abs difference <= 1e-5 in float32) on random nets with every layer type, batch sizes 1
and 1000, fitted estimators and whole scikit-learn pipelines through skl2onnx."""

import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import fastdl as fd  # noqa: E402
from fastdl.onnx import to_onnx  # noqa: E402

# float64: folding rounds differently, and the cpu kernels' fast-math transcendental functions
# (config.FASTMATH) differ from ONNX Runtime's by up to ~3e-9
TOL = {np.float32: 1e-5, np.float64: 1e-8}


def run(proto, X):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: X})


def random_net(seed, dtype, out):
    """A net with every layer type: Dense with each activation, a standalone Activation,
    BatchNorm after a linear Dense (folded) and after an activation (kept), Dropout, a fitted
    Standardizer, trained a little so the batch-norm statistics are not the defaults."""
    rng = np.random.default_rng(seed)
    n_out, act, loss = {"softmax": (4, "softmax", None), "sigmoid": (3, "sigmoid", None),
                        "sigmoid1": (1, "sigmoid", None), "linear": (2, "linear", "mse"),
                        "exp": (2, "exp", None)}[out]
    layers = [fd.Dense(9), fd.BatchNorm(), fd.Activation("relu"), fd.Dropout(keep_prob=0.8),
              fd.Dense(7, activation="leaky_relu", alpha=0.2), fd.BatchNorm(),
              fd.Dense(6, activation="tanh"), fd.Dense(5), fd.Activation("sigmoid"),
              fd.Dense(n_out, activation=act)]
    model = fd.Sequential(layers, input_dim=5, seed=seed, dtype=dtype, loss=loss)
    model.standardizer = fd.Standardizer()
    X = (rng.standard_normal((300, 5)) * [1, 2, 3, 4, 5] + [0, 1, -2, 3, 10]).astype(dtype)
    if out == "softmax":
        y = rng.integers(0, n_out, 300)
    elif out.startswith("sigmoid"):
        y = rng.integers(0, 2, (300, n_out))
    elif out == "exp":
        y = rng.poisson(2.0, (300, n_out))
    else:
        y = rng.standard_normal((300, n_out))
    model.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=2, batch_size=32, verbose=0)
    return model, rng


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out", ["softmax", "sigmoid", "sigmoid1", "linear", "exp"])
def test_sequential_every_layer_type(dtype, out):
    model, rng = random_net(3, dtype, out)
    proto = to_onnx(model)
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "Dropout" not in ops
    assert sum(n.op_type == "Gemm" for n in proto.graph.node) == 5
    for m in (1, 1000):
        X = (rng.standard_normal((m, 5)) * 3 + 1).astype(dtype)
        outs = run(proto, X)
        np.testing.assert_allclose(outs[-1], model.predict_proba(X), rtol=0, atol=TOL[dtype])
        if model.loss.is_classification:
            assert [o.name for o in proto.graph.output] == ["label", "probabilities"]
            np.testing.assert_array_equal(outs[0], model.predict(X))
        else:
            assert [o.name for o in proto.graph.output] == ["variable"]


def test_writes_file_atomically_and_opset(tmp_path):
    model, _ = random_net(0, np.float32, "softmax")
    path = tmp_path / "m.onnx"
    proto = to_onnx(model, path, opset=15)
    assert onnx.load(str(path)) == proto
    assert proto.opset_import[0].version == 15
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_iris, make_multilabel_classification  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastdl.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", ["multiclass", "strings", "binary", "multilabel"])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_classifier_label_and_probabilities(iris, dtype, target, batchnorm):
    X, y = iris
    if target == "strings":
        y = np.array(["setosa", "versicolor", "virginica"])[y]
    elif target == "binary":
        y = (y == 1).astype(int)
    elif target == "multilabel":
        X, y = make_multilabel_classification(150, 4, n_classes=3, random_state=0)
    clf = _fit(MLPClassifier((6, 5), max_iter=20, random_state=0, dtype=dtype,
                             batchnorm=batchnorm, keep_prob=0.9), X, y)
    proto = to_onnx(clf)
    dt = np.dtype(dtype).type
    for Xb in (X[:1], np.repeat(X, 7, axis=0)[:1000]):
        label, proba = run(proto, Xb.astype(dt))
        np.testing.assert_allclose(proba, clf.predict_proba(Xb), rtol=0, atol=TOL[dt])
        np.testing.assert_array_equal(label, clf.predict(Xb))
    label, zipped = run(to_onnx(clf, zipmap=True), X[:3].astype(dt))
    P = clf.predict_proba(X[:3])
    keys = list(range(P.shape[1])) if target == "multilabel" else list(clf.classes_)
    for row, p in zip(zipped, P):
        assert list(row) == keys
        np.testing.assert_allclose([row[k] for k in keys], p, atol=1e-6)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_variable(iris, loss):
    X, _ = iris
    Y = np.c_[X[:, 3], X[:, 2]]
    reg = _fit(MLPRegressor(loss=loss, hidden_layer_sizes=(8,), max_iter=30, random_state=0,
                            dtype="float32"), X[:, :2], Y)
    (out,) = run(to_onnx(reg), X[:, :2].astype(np.float32))
    np.testing.assert_allclose(out, reg.predict(X[:, :2]), rtol=0, atol=1e-5)
    assert any(n.op_type == "Exp" for n in to_onnx(reg).graph.node) == (loss == "poisson")


def test_assigned_coefs_are_exported(iris):
    X, y = iris
    clf = _fit(MLPClassifier((4,), max_iter=5, random_state=0, batchnorm=True), X, y)
    clf.coefs_ = [c * 0.5 for c in clf.coefs_]
    _, proba = run(to_onnx(clf), X)
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=1e-12)


@pytest.mark.parametrize("kind", ["classifier", "strings", "multilabel", "regressor"])
def test_pipeline_through_skl2onnx(iris, kind):
    """StandardScaler -> fastdl MLP in a scikit-learn Pipeline converts with skl2onnx's own
    to_onnx (fastdl.onnx registers the converters) and matches the pipeline's predictions."""
    skl2onnx = pytest.importorskip("skl2onnx")
    X, y = iris
    X = X.astype(np.float32)
    if kind == "regressor":
        pipe = make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(7,),
                                                            max_iter=30, random_state=0))
        _fit(pipe, X[:, :3], X[:, 3])
        (out,) = run(skl2onnx.to_onnx(pipe, X[:1, :3]), X[:, :3])
        np.testing.assert_allclose(out[:, 0], pipe.predict(X[:, :3]), atol=1e-5)
        return
    if kind == "strings":
        y = np.array(["a", "b", "c"])[y]
    if kind == "multilabel":
        y = np.c_[y == 0, y == 1, y == 2, y > 0].astype(np.int64)
    pipe = make_pipeline(StandardScaler(), MLPClassifier((7,), max_iter=30, random_state=0))
    _fit(pipe, X, y)
    label, proba = run(skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False}), X)
    np.testing.assert_allclose(proba, pipe.predict_proba(X), atol=1e-5)
    np.testing.assert_array_equal(label, pipe.predict(X))
    if kind == "multilabel":
        proto = skl2onnx.to_onnx(pipe, X[:1], options={"zipmap": False})
        assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim][1] == 4
        return
    label, zipped = run(skl2onnx.to_onnx(pipe, X[:1]), X[:2])      # skl2onnx's default ZipMap
    assert list(zipped[0]) == list(pipe.classes_)


def test_errors_name_the_argument(iris):
    class Odd(fd.Layer):
        def get_config(self):
            return {"type": "Odd"}
    model = fd.Sequential([fd.Dense(3), Odd(), fd.Dense(2, activation="softmax")],
                          input_dim=4, seed=0)
    with pytest.raises(ValueError, match=r"model.layers\[1\] \(Odd\) has no ONNX equivalent"):
        to_onnx(model)
    with pytest.raises(ValueError, match="is not fitted; call fit"):
        to_onnx(MLPClassifier())
    with pytest.raises(TypeError, match="cannot be exported; expected an fd.Sequential"):
        to_onnx("model.npz")
    ok = fd.Sequential([fd.Dense(2, activation="softmax")], input_dim=4, seed=0)
    with pytest.raises(ValueError, match=r"opset=9 is invalid; expected an integer in \[13, "):
        to_onnx(ok, opset=9)
    with pytest.raises(ValueError, match="zipmap='yes' is invalid"):
        to_onnx(ok, zipmap="yes")


def test_cli_export(tmp_path):
    from fastdl.cli import main
    model, rng = random_net(1, np.float32, "softmax")
    model.save(tmp_path / "m.npz")
    assert main(["export", str(tmp_path / "m.npz"), "-o", str(tmp_path / "m.onnx")]) in (0, None)
    X = rng.standard_normal((10, 5)).astype(np.float32)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    np.testing.assert_allclose(run(proto, X)[1], model.predict_proba(X), atol=1e-5)
