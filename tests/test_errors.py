"""Every bad input gets a clear error naming the argument, the value and what was expected."""

import numpy as np
import pytest

import fastdl as fd


def net(**kw):
    args = dict(input_dim=2, seed=0)
    args.update(kw)
    return fd.Sequential([fd.Dense(3, activation="relu"), fd.Dense(1, activation="sigmoid")],
                         **args)


X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
y = np.array([0, 1, 1])
SGD = fd.optim.SGD(lr=0.1)


@pytest.mark.parametrize("call, exc, match", [
    (lambda m: m.fit(X, y[:2], verbose=0), ValueError, "X has 3 rows but y has 2"),
    (lambda m: m.fit(np.ones((3, 5)), y, verbose=0), ValueError, "X has 5 features"),
    (lambda m: m.fit(np.array([[np.nan, 1], [1, 1], [0, 0]]), y, verbose=0), ValueError,
     "NaN or infinite"),
    (lambda m: m.fit(np.array([[np.inf, 1], [1, 1], [0, 0]]), y, verbose=0), ValueError,
     "NaN or infinite"),
    (lambda m: m.fit(X, [0, np.nan, 1], verbose=0), ValueError, "y contains NaN"),
    (lambda m: m.fit(X, [0, 2, 1], verbose=0), ValueError, r"labels in \[0, 1\]"),
    (lambda m: m.fit(X, [0, -1, 1], verbose=0), ValueError, r"labels in \[0, 1\]"),
    (lambda m: m.fit(np.empty((0, 2)), [], verbose=0), ValueError, "empty"),
    (lambda m: m.fit(X, y, batch_size=0, verbose=0), ValueError, "batch_size=0"),
    (lambda m: m.fit(X, y, batch_size=2.5, verbose=0), TypeError, "batch_size=2.5"),
    (lambda m: m.fit(X, y, epochs=-1, verbose=0), ValueError, "epochs=-1"),
    (lambda m: m.fit(X, y, l2=-1.0, verbose=0), ValueError, "l2=-1.0"),
    (lambda m: m.fit(X, y, optimizer="sgd", verbose=0), TypeError, "optimizer='sgd'"),
    (lambda m: m.fit(X, y, validation_data=X, verbose=0), ValueError, "validation_data"),
    (lambda m: m.fit(X, y, validation_data=(X, y[:1]), verbose=0), ValueError,
     "validation_data"),
    (lambda m: m.fit(X, y, callbacks=[1], verbose=0), TypeError, "callbacks"),
    (lambda m: m.fit(X, y, lr_schedule=3, verbose=0), TypeError, "lr_schedule"),
    (lambda m: m.fit(X[:, 0], y, verbose=0), ValueError, r"shape \(3,\).*rows of 2 features"),
    (lambda m: m.fit([["a", "b"]] * 3, y, verbose=0), TypeError, "numeric"),
    (lambda m: m.predict(np.ones((2, 3))), ValueError, "3 features"),
    (lambda m: m.train_on_batch(X, y, SGD, l2=float("nan")), ValueError, "l2=nan"),
    (lambda m: m.set_weights([np.ones((3, 2))]), ValueError, "4 arrays"),
    (lambda m: m.set_weights("w"), ValueError, "expected a list"),
    (lambda m: m.set_weights([np.ones((2, 3)), np.ones(3), np.ones((1, 3)), np.ones(1)]),
     ValueError, r"weights\[0\].*shape \(2, 3\); expected \(3, 2\)"),
    (lambda m: m.set_weights([np.full((3, 2), np.nan), np.ones(3), np.ones((1, 3)), np.ones(1)]),
     ValueError, "NaN"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call(net())


@pytest.mark.parametrize("make, exc, match", [
    (lambda: fd.Dense(0), ValueError, "units=0"),
    (lambda: fd.Dense(3, activation="gelu"), ValueError, "activation='gelu'"),
    (lambda: fd.Dense(3, init="orthogonal"), ValueError, "init='orthogonal'"),
    (lambda: fd.Dense(3, init="normal", init_scale=0), ValueError, "init_scale=0"),
    (lambda: fd.Activation("swish"), ValueError, "activation='swish'"),
    (lambda: net(loss="hinge"), ValueError, "loss='hinge'"),
    (lambda: net(backend="tpu"), ValueError, "backend='tpu'"),
    (lambda: net(dtype="float16"), ValueError, "dtype='float16'"),
    (lambda: net(input_dim=0), ValueError, "input_dim=0"),
    (lambda: net(loss="categorical_crossentropy"), ValueError, "needs a softmax output"),
    (lambda: fd.Sequential([], input_dim=2), ValueError, "non-empty list"),
    (lambda: fd.Sequential([3], input_dim=2), TypeError, r"layers\[0\]"),
    (lambda: fd.Sequential([fd.Dense(3, activation="softmax"), fd.Dense(1)], input_dim=2),
     ValueError, "only as the output"),
    (lambda: fd.Sequential([fd.Dense(3, activation="softmax")], input_dim=2, loss="mse"),
     ValueError, "softmax"),
    (lambda: fd.set_backend("gpu"), ValueError, "backend='gpu'"),
    (lambda: fd.set_num_threads(0), ValueError, "n=0"),
    (lambda: fd.optim.SGD(lr=0), ValueError, "lr=0"),
    (lambda: fd.optim.SGD(lr=float("inf")), ValueError, "lr=inf"),
])
def test_bad_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_softmax_label_range_and_one_hot_shape():
    m = fd.Sequential([fd.Dense(3, activation="softmax")], input_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"labels in \[0, 3\].*\[0, 2\]"):
        m.fit(X, [0, 3, 1], verbose=0)
    with pytest.raises(ValueError, match="4 columns"):
        m.fit(X, np.eye(4)[:3], verbose=0)
    with pytest.raises(ValueError, match="non-integer"):
        m.fit(X, [0.5, 1, 2], verbose=0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_cost_in_train_on_batch_leaves_parameters():
    m = net()
    huge = np.array([[1e38, 1e38]] * 3)
    m.set_weights([np.full((3, 2), 1e38), np.zeros(3), np.full((1, 3), 1e38), np.zeros(1)])
    before = m.get_weights()
    with pytest.raises(FloatingPointError, match="not applied"):
        m.train_on_batch(huge, [1, 0, 1], SGD)
    for a, b in zip(m.get_weights(), before):
        np.testing.assert_array_equal(a, b)


W3 = np.array([1.0, 2.0, 0.5])


@pytest.mark.parametrize("call, exc, match", [
    (lambda m: m.fit(X, y, sample_weight=W3[:2], verbose=0), ValueError,
     r"sample_weight has shape \(2,\); expected a 1-D array of 3 weights"),
    (lambda m: m.fit(X, y, sample_weight=W3.reshape(3, 1), verbose=0), ValueError,
     r"sample_weight has shape \(3, 1\); expected a 1-D array of 3"),
    (lambda m: m.fit(X, y, sample_weight=[1.0, np.nan, 1.0], verbose=0), ValueError,
     "sample_weight contains NaN or infinite values; expected finite weights >= 0"),
    (lambda m: m.fit(X, y, sample_weight=[1.0, -2.0, 1.0], verbose=0), ValueError,
     r"sample_weight\[1\]=-2.0 is negative; expected weights >= 0"),
    (lambda m: m.fit(X, y, sample_weight=np.zeros(3), verbose=0), ValueError,
     "sample_weight is all zero; expected at least one non-zero weight"),
    (lambda m: m.fit(X, y, sample_weight=["a", "b", "c"], verbose=0), TypeError,
     "sample_weight has dtype"),
    (lambda m: m.fit(X, y, validation_data=(X, y, W3[:1]), verbose=0), ValueError,
     r"validation_data\[2\] has shape \(1,\); expected a 1-D array of 3"),
    (lambda m: m.fit(X, y, validation_data=(X, y, W3, W3), verbose=0), ValueError,
     r"validation_data must be a tuple .* length 4"),
    (lambda m: m.evaluate(X, y, sample_weight=-W3), ValueError, r"sample_weight\[0\]=-1.0"),
    (lambda m: m.loss_and_grads(X, y, sample_weight=W3[:1]), ValueError, "sample_weight"),
    (lambda m: m.train_on_batch(X, y, SGD, sample_weight=np.zeros(3)), ValueError, "all zero"),
    (lambda m: fd.gradcheck(m, X, y, sample_weight=[1, 1]), ValueError, "sample_weight"),
    (lambda m: m.fit(X, y, sample_weight=W3, distributed=True, verbose=0), NotImplementedError,
     "sample_weight with distributed training is not supported"),
])
def test_bad_sample_weight(call, exc, match):
    model = net()
    before = model.get_weights()
    with pytest.raises(exc, match=match):
        call(model)
    for a, b in zip(before, model.get_weights()):      # rejected before any update
        np.testing.assert_array_equal(a, b)


def test_sample_weight_with_streamed_input_is_not_implemented(tmp_path):
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    with pytest.raises(NotImplementedError,
                       match=r"sample_weight with out-of-core X .* \(np.load\)"):
        net().fit(str(tmp_path / "X.npy"), str(tmp_path / "y.npy"), sample_weight=W3, verbose=0)


def test_set_weights_with_nan_says_weights():
    with pytest.raises(ValueError) as e:
        net().set_weights([np.full((3, 2), np.nan), np.ones(3), np.ones((1, 3)), np.ones(1)])
    msg = str(e.value)
    assert "weights[0] (W of layer 0) contains 6 NaN or infinite value(s); expected finite " \
           "weights" in msg and "label" not in msg
