"""Mixed precision (``compute_dtype="bfloat16"``): conversions, the GEMM providers, the kernels'
bfloat16 outputs, and models, against the references (NumPy reference kernels, ml_dtypes).

The emulated bfloat16 GEMM runs everywhere; oneDNN's bfloat16 GEMM only where this CPU has
bfloat16 instructions (``fd.bf16_supported()``); oneDNN's float32 ``dnnl_sgemm``, which shares
the ctypes plumbing (row-major layout, transposes, leading dimensions), wherever the ``bf16``
extra is installed.
"""

import numpy as np
import pytest

import fastdl as fd
from fastdl import config, precision
from fastdl.kernels import cpu as C
from fastdl.kernels import reference as R
from fastdl.kernels.cpu import _onednn
from fastdl.kernels.cpu import blas as cpu_blas

ml_dtypes = pytest.importorskip("ml_dtypes")

NO16 = np.zeros((0, 0), np.uint16)
ONEDNN = _onednn.load() is not None
BF16_HW = fd.bf16_supported()


def bf16(x):
    """The bfloat16 bits ml_dtypes gives (round to nearest even)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def widen(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def every_float32_class():
    """Every bfloat16 high half (normals, subnormals, zeros, inf, NaN payloads) with low halves
    that test rounding: exact (0), just below / at / just above the tie, and the maximum."""
    hi = np.arange(1 << 16, dtype=np.uint32) << 16
    lows = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    return (hi[:, None] | lows[None, :]).reshape(-1).view(np.float32)


@pytest.fixture
def rng():
    return np.random.default_rng(2026)


@pytest.fixture(params=["serial", "parallel"])
def parallel(request, monkeypatch):
    """Run a test through the serial and (threshold patched down) parallel jitted variants."""
    if request.param == "parallel":
        monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", 64)
    return request.param


# --- conversions ---------------------------------------------------------------------------
@pytest.mark.parametrize("K", [R, C], ids=["reference", "cpu"])
def test_to_bfloat16_bit_exact_for_every_class(K, parallel):
    x = every_float32_class()
    out = np.full(x.shape, 0xDEAD, np.uint16)
    K.to_bfloat16(out, x)
    np.testing.assert_array_equal(out, bf16(x))


@pytest.mark.parametrize("K", [R, C], ids=["reference", "cpu"])
def test_to_bfloat16_2d_and_strided_input(K, rng):
    x = rng.standard_normal((33, 20)).astype(np.float32)
    out = np.empty((33, 10), np.uint16)
    K.to_bfloat16(out, x[:, ::2])                   # non-contiguous source
    np.testing.assert_array_equal(out, bf16(x[:, ::2]))


@pytest.mark.parametrize("K", [R, C], ids=["reference", "cpu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_from_bfloat16_exact(K, dtype, parallel):
    bits = np.arange(1 << 16, dtype=np.uint16)
    out = np.empty(bits.shape, dtype)
    K.from_bfloat16(out, bits)
    want = bits.view(ml_dtypes.bfloat16).astype(dtype)
    np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))   # NaNs too


def test_round_trip_is_identity_on_bfloat16_values():
    bits = np.arange(1 << 16, dtype=np.uint16)
    nan = (bits & 0x7FFF) > 0x7F80
    back = np.empty_like(bits)
    C.to_bfloat16(back, widen(bits))
    np.testing.assert_array_equal(back[~nan], bits[~nan])
    assert ((back[nan] & 0x7FFF) == 0x7FC0).all()    # NaN stays NaN (quiet)


# --- GEMM providers ------------------------------------------------------------------------
def _operands(rng, m, k, n, ta, tb, dtype=np.float32):
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return A, B


def _check_bf16_gemm(rng, m, k, n, ta, tb):
    A, B = _operands(rng, m, k, n, ta, tb)
    A16, B16 = bf16(A), bf16(B)
    ref = np.empty((m, n), np.float32)
    R.gemm(ref, A16, B16, ta, tb)
    got = np.full((m, n), np.nan, np.float32)
    C.gemm(got, A16, B16, ta, tb)
    # exact products, float32 sums of k terms: k * 2^-24 of the magnitudes' scale
    scale = np.abs(widen(A16)).max() * np.abs(widen(B16)).max() * k
    np.testing.assert_allclose(got, ref, rtol=0, atol=4 * 2.0 ** -24 * scale)
    # and the reference is exactly the float64 product of the rounded operands
    a, b = widen(A16).astype(np.float64), widen(B16).astype(np.float64)
    want = (a.T if ta else a) @ (b.T if tb else b)
    np.testing.assert_array_equal(ref, want.astype(np.float32))


SHAPES = [(1, 1, 1), (7, 13, 5), (64, 130, 33), (3, 1, 4)]


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_emulated_bf16_gemm_matches_reference(monkeypatch, rng, m, k, n, ta, tb):
    monkeypatch.setattr(config, "BF16_GEMM", "emulated")
    _check_bf16_gemm(rng, m, k, n, ta, tb)


@pytest.mark.skipif(not BF16_HW, reason="this CPU has no bfloat16 GEMM in oneDNN "
                                         "(fd.bf16_supported() is False)")
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_onednn_bf16_gemm_matches_reference(monkeypatch, rng, m, k, n, ta, tb):
    monkeypatch.setattr(config, "BF16_GEMM", "onednn")
    _check_bf16_gemm(rng, m, k, n, ta, tb)


@pytest.mark.skipif(not ONEDNN, reason="oneDNN (the bf16 extra) is not installed")
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_onednn_sgemm_plumbing(rng, m, k, n, ta, tb):
    """dnnl_sgemm through the same call code as the bfloat16 GEMM: layout, transposes and
    leading dimensions (strided row views too) are right where bfloat16 cannot run."""
    A, B = _operands(rng, m, k, n, ta, tb)
    got = np.full((m, n), np.nan, np.float32)
    _onednn.sgemm(got, A, B, ta, tb)
    want = (A.T if ta else A) @ (B.T if tb else B)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * k)
    wide = np.zeros((A.shape[0], A.shape[1] + 3), np.float32)
    wide[:, :A.shape[1]] = A                            # rows with a leading dimension > cols
    _onednn.sgemm(got, wide[:, :A.shape[1]], B, ta, tb)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * k)


@pytest.mark.skipif(not ONEDNN, reason="oneDNN (the bf16 extra) is not installed")
def test_set_num_threads_reaches_onednn():
    """oneDNN (GOMP build) sizes its parallel regions by OpenMP's nthreads-var."""
    import ctypes
    import numba
    gomp = ctypes.CDLL("libgomp.so.1")
    before = numba.get_num_threads()
    try:
        fd.set_num_threads(1)
        assert gomp.omp_get_max_threads() == 1
        fd.set_num_threads(before)
        assert gomp.omp_get_max_threads() == before
    finally:
        fd.set_num_threads(before)


@pytest.mark.skipif(not ONEDNN, reason="oneDNN (the bf16 extra) is not installed")
def test_float32_through_onednn_trains_like_blas(rng, monkeypatch):
    X, y = _data(rng)
    runs = []
    for provider in ("blas", "onednn"):
        monkeypatch.setattr(config, "FLOAT_GEMM", provider)
        model = _net(None)
        model.fit(X, y, optimizer=fd.optim.SGD(0.05), epochs=2, batch_size=50, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(1.0, np.abs(a).max()))


def test_provider_follows_config(monkeypatch):
    monkeypatch.setattr(config, "BF16_GEMM", "emulated")
    assert cpu_blas._bf16_provider() == "emulated"
    monkeypatch.setattr(config, "BF16_GEMM", "auto")
    assert cpu_blas._bf16_provider() == ("onednn" if BF16_HW else "emulated")
    monkeypatch.setattr(config, "BF16_GEMM", "fast")
    with pytest.raises(ValueError, match="BF16_GEMM='fast'"):
        cpu_blas._bf16_provider()


def test_float_gemm_unchanged(rng):
    A, B = _operands(rng, 9, 11, 7, False, True, np.float64)
    got = np.empty((9, 7))
    C.gemm(got, A, B, False, True)
    np.testing.assert_array_equal(got, A @ B.T)


# --- the kernels' bfloat16 outputs -----------------------------------------------------------
def _dense_case(rng, m, n_in, n_out):
    X = rng.standard_normal((m, n_in)).astype(np.float32)
    W = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
    b = rng.standard_normal(n_out).astype(np.float32)
    return bf16(X), bf16(W), b


@pytest.mark.parametrize("act", range(5))
@pytest.mark.parametrize("m,n_in,n_out", [(1, 3, 2), (37, 19, 130), (300, 17, 9)])
def test_dense_forward_writes_a16(rng, act, m, n_in, n_out, parallel):
    X16, W16, b = _dense_case(rng, m, n_in, n_out)
    ref, ref16 = np.empty((m, n_out), np.float32), np.empty((m, n_out), np.uint16)
    R.dense_forward(ref, ref16, X16, W16, b, act, 0.1)
    A, A16 = np.full_like(ref, np.nan), np.zeros_like(ref16)
    C.dense_forward(A, A16, X16, W16, b, act, 0.1)
    np.testing.assert_allclose(A, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_array_equal(A16, bf16(A))          # the copy is of cpu's own A
    np.testing.assert_array_equal(ref16, bf16(ref))


@pytest.mark.parametrize("act", range(5))
@pytest.mark.parametrize("m,n_in,n_out", [(1, 3, 2), (37, 19, 130), (300, 17, 9)])
def test_dense_backward_writes_dz16_and_uses_it(rng, act, m, n_in, n_out, parallel):
    X16, W16, b = _dense_case(rng, m, n_in, n_out)
    A = np.empty((m, n_out), np.float32)
    R.dense_forward(A, NO16, X16, W16, b, act, 0.1)
    dA = (rng.standard_normal((m, n_out)) / m).astype(np.float32)
    outs = {}
    for name, K in (("ref", R), ("cpu", C)):
        dX, dW = np.empty((m, n_in), np.float32), np.empty((n_out, n_in), np.float32)
        db, dZ16 = np.empty(n_out, np.float32), np.zeros((m, n_out), np.uint16)
        d = dA.copy()
        K.dense_backward(dX, dW, db, dZ16, d, A, X16, W16, act, 0.1)
        outs[name] = (dX, dW, db, dZ16, d)
    dX, dW, db, dZ16, dZ = outs["cpu"]
    np.testing.assert_array_equal(dZ16, bf16(dZ))
    # the GEMMs read dZ16: dW and dX equal exact products of the rounded operands
    z, x, w = (widen(a).astype(np.float64) for a in (dZ16, X16, W16))
    tol = lambda ref: 1e-5 * np.abs(ref).max() + 1e-30   # noqa: E731
    np.testing.assert_allclose(dW, z.T @ x, rtol=0, atol=tol(z.T @ x))
    np.testing.assert_allclose(dX, z @ w, rtol=0, atol=tol(z @ w))
    rdX, rdW, rdb, rdZ16, rdZ = outs["ref"]
    np.testing.assert_allclose(dZ, rdZ, rtol=1e-5, atol=tol(rdZ))
    np.testing.assert_allclose(db, rdb, rtol=1e-5, atol=1e-5 * np.abs(rdZ).sum(0).max())


@pytest.mark.parametrize("act", range(5))
def test_batchnorm_forward_writes_a16(rng, act, parallel):
    m, n = 70, 130
    X = rng.standard_normal((m, n)).astype(np.float32)
    gamma, beta = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(
        np.float32)
    for train in (True, False):
        A, A16 = np.empty((m, n), np.float32), np.zeros((m, n), np.uint16)
        rm, rv = np.zeros(n, np.float32), np.ones(n, np.float32)
        if train:
            C.batchnorm_forward_train(A, A16, np.empty(n), np.empty(n), rm, rv, X, gamma, beta,
                                      0.9, 1e-5, False, act, 0.1)
        else:
            C.batchnorm_forward_eval(A, A16, X, gamma, beta, rm, rv, 1e-5, act, 0.1)
        np.testing.assert_array_equal(A16, bf16(A))
        ref, ref16 = np.empty_like(A), np.zeros_like(A16)
        rm, rv = np.zeros(n, np.float32), np.ones(n, np.float32)
        if train:
            R.batchnorm_forward_train(ref, ref16, np.empty(n), np.empty(n), rm, rv, X, gamma,
                                      beta, 0.9, 1e-5, False, act, 0.1)
        else:
            R.batchnorm_forward_eval(ref, ref16, X, gamma, beta, rm, rv, 1e-5, act, 0.1)
        np.testing.assert_allclose(A, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("in_place", [False, True])
def test_dropout_forward_writes_a16(rng, in_place, parallel):
    X = rng.standard_normal((50, 33)).astype(np.float32)
    ref, ref16 = np.empty_like(X), np.zeros(X.shape, np.uint16)
    R.dropout_forward(ref, ref16, X, 5, 3, 1, 0.8)
    A = X.copy() if in_place else np.empty_like(X)
    A16 = np.zeros(X.shape, np.uint16)
    C.dropout_forward(A, A16, A if in_place else X, 5, 3, 1, 0.8)
    np.testing.assert_array_equal(A, ref)
    np.testing.assert_array_equal(A16, ref16)


@pytest.mark.parametrize("K", [R, C], ids=["reference", "cpu"])
def test_gather_rows_rounds_into_uint16(rng, K, parallel):
    X = rng.standard_normal((40, 30)).astype(np.float32)
    idx = rng.permutation(40)[:25].astype(np.int64)
    out = np.zeros((30, 30), np.uint16)                  # more rows than the batch
    K.gather_rows(out, X, idx)
    np.testing.assert_array_equal(out[:25], bf16(X[idx]))
    X16 = bf16(X)
    out2 = np.zeros((25, 30), np.uint16)
    K.gather_rows(out2, X16, idx)                        # bfloat16 rows copied as they are
    np.testing.assert_array_equal(out2, X16[idx])


UPDATES = {
    "sgd_update": lambda p, s, g, st: (p, s, g, 0.1, 0.01),
    "momentum_update": lambda p, s, g, st: (p, s, st[0], g, 0.1, 0.9, 0.0, True, 0.01),
    "rmsprop_update": lambda p, s, g, st: (p, s, st[0], g, 0.01, 0.9, 1e-8, 0.01),
    "adam_update": lambda p, s, g, st: (p, s, st[0], st[1], g, 0.01, 0.9, 0.999, 1e-8, 3, 0.01,
                                        0.02),
}


@pytest.mark.parametrize("name", sorted(UPDATES))
@pytest.mark.parametrize("clip", [(np.inf, np.inf), (0.5, 0.1)], ids=["plain", "clipped"])
@pytest.mark.parametrize("n,k", [(10, 7), (200_000, 131_101)])
def test_update_kernels_write_the_shadow(rng, name, clip, n, k, monkeypatch):
    """The shadow is bf16 of the updated parameters, for any prefix length (here across the
    parallel kernels' block boundary), and the update itself is unchanged."""
    monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", 100_000)
    p0 = rng.standard_normal(n).astype(np.float32)
    g = rng.standard_normal(n).astype(np.float32)
    st0 = [np.abs(rng.standard_normal(n)).astype(np.float32) for _ in range(2)]
    sq = np.array([float(np.dot(g.astype(np.float64), g))])
    results = []
    for shadow_len in (k, 0):
        p, st = p0.copy(), [s.copy() for s in st0]
        shadow = np.full(shadow_len, 0xDEAD, np.uint16)
        getattr(C, name)(*UPDATES[name](p, shadow, g, st), sq, *clip, 0.03, n // 2)
        results.append((p, shadow))
    (p, shadow), (p_plain, _) = results
    np.testing.assert_array_equal(p, p_plain)
    np.testing.assert_array_equal(shadow, bf16(p[:k]))
    pr, str_ = p0.copy(), [s.copy() for s in st0]
    shr = np.zeros(k, np.uint16)
    getattr(R, name)(*UPDATES[name](pr, shr, g, str_), sq, *clip, 0.03, n // 2)
    np.testing.assert_array_equal(shr, bf16(pr[:k]))


# --- models ----------------------------------------------------------------------------------
def _net(compute_dtype="bfloat16", backend="cpu", seed=4, bn=True, input_dim=12):
    layers = [fd.Dense(32, activation="relu")]
    if bn:
        layers += [fd.Dense(24), fd.BatchNorm(), fd.Activation("tanh"), fd.Dropout(0.8)]
    layers += [fd.Dense(16, activation="leaky_relu"), fd.Dense(3, activation="softmax")]
    return fd.Sequential(layers, input_dim=input_dim, seed=seed, backend=backend,
                         compute_dtype=compute_dtype, allow_slow=True)


def _data(rng, m=300, d=12):
    X = rng.standard_normal((m, d)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int) + (X[:, 3] > 1)
    return X, y


def _shadow_ok(model):
    p = model.params
    np.testing.assert_array_equal(p.shadow, bf16(p.data[:p.n_decay]))


def test_cpu_model_matches_the_reference_backend(rng):
    """A few Adam steps of a bfloat16 model: cpu (emulated or oneDNN GEMMs) vs the numpy
    backend's reference arithmetic, same seed, same batches."""
    X, y = _data(rng)
    cpu, ref = _net(), _net(backend="numpy")
    assert cpu.precision.low and ref.precision.gemm == "reference"
    opt_c, opt_r = fd.optim.Adam(1e-2), fd.optim.Adam(1e-2)
    for s in range(4):
        xb, yb = X[s * 64:(s + 1) * 64], y[s * 64:(s + 1) * 64]
        cc = cpu.train_on_batch(xb, yb, opt_c, l2=0.01)
        cr = ref.train_on_batch(xb, yb, opt_r, l2=0.01)
        assert abs(cc - cr) <= 2e-3 * abs(cr)
    for wc, wr in zip(cpu.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(wc, wr, rtol=0, atol=2e-3 * max(1.0, np.abs(wr).max()))
    _shadow_ok(cpu)
    _shadow_ok(ref)


def test_bfloat16_forward_is_the_rounded_operands_product(rng):
    """predict_proba of a Dense-only bfloat16 model = the float64 forward pass whose GEMM
    operands (input, every layer's input, weights) are rounded to bfloat16."""
    X, _ = _data(rng, 50)
    model = fd.Sequential([fd.Dense(20, activation="relu"), fd.Dense(3, activation="softmax")],
                          input_dim=12, seed=1, compute_dtype="bfloat16", allow_slow=True)
    W1, b1, W2, b2 = model.get_weights()
    r = lambda a: widen(bf16(a)).astype(np.float64)   # noqa: E731
    h = np.maximum(r(X) @ r(W1).T + b1, 0)
    z = r(h.astype(np.float32)) @ r(W2).T + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(X), p, rtol=0, atol=2e-5)
    f32 = fd.Sequential.from_config({**model.get_config(), "compute_dtype": None})
    f32.set_weights(model.get_weights())
    assert np.abs(f32.predict_proba(X) - p).max() > 1e-4     # rounding is really there


def test_fit_keeps_shadow_and_trains_like_float32(rng):
    X, y = _data(rng, 600)
    hist = {}
    for cd in (None, "bfloat16"):
        model = _net(cd)
        h = model.fit(X, y, optimizer=fd.optim.Adam(3e-3), epochs=15, batch_size=32, verbose=0)
        hist[cd] = (h.history["loss"], model.evaluate(X, y)["accuracy"])
        if cd:
            _shadow_ok(model)
    (l32, a32), (l16, a16) = hist[None], hist["bfloat16"]
    assert l16[-1] < 0.6 * l16[0]                                 # it learns
    assert abs(a16 - a32) <= 0.04
    assert abs(l16[-1] - l32[-1]) <= 0.1 * l32[-1] + 0.02


def test_input_rounding_paths_agree(rng, monkeypatch):
    """The three ways a batch reaches the first GEMM give the same bits: the per-fit bfloat16
    copy of X, rounding while gathering (X too big for the copy), rounding in the model (a
    batch hook such as augmentation edits float32 rows first; here the identity)."""
    X, y = _data(rng)
    runs = []
    for mode in ("copy", "gather", "hook"):
        monkeypatch.setattr(config, "BF16_INPUT_CACHE_BYTES", 1 << 30 if mode == "copy" else 0)
        model = _net(bn=False)
        aug = fd.Augment(image_shape=(3, 4)) if mode == "hook" else None   # the identity
        model.fit(X, y, optimizer=fd.optim.SGD(0.05), epochs=2, batch_size=50, verbose=0,
                  augment=aug)
        runs.append(model.params.snapshot())
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])


def test_streamed_input_converts_per_batch(rng, tmp_path):
    X, y = _data(rng)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    models = [_net(bn=False, backend=b) for b in ("cpu", "numpy")]
    for m in models:
        m.fit(str(tmp_path / "X.npy"), str(tmp_path / "y.npy"),
              optimizer=fd.optim.SGD(0.05), epochs=2, batch_size=50, verbose=0)
    for a, b in zip(*(m.get_weights() for m in models)):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-3)
    _shadow_ok(models[0])


def test_set_weights_and_rollback_refresh_the_shadow(rng):
    model = _net()
    w = [a * 1.5 for a in model.get_weights()]
    model.set_weights(w)
    _shadow_ok(model)
    X, y = _data(rng)
    opt = fd.optim.SGD(1e30)               # diverges: the loop restores the last finite state
    with pytest.raises(FloatingPointError):
        model.fit(X, y, optimizer=opt, epochs=3, batch_size=64, verbose=0)
    _shadow_ok(model)


class _PlainSGD:
    """An optimizer from outside fastdl: step(params, grads, l2, n_l2) only."""

    lr = 0.05

    def step(self, params, grads, l2=0.0, n_l2=0):
        params -= 0.05 * grads
        params[:n_l2] -= 0.05 * l2 * params[:n_l2]

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


def test_foreign_optimizer_gets_the_shadow_refreshed(rng):
    X, y = _data(rng)
    model = _net(bn=False)
    model.fit(X, y, optimizer=_PlainSGD(), epochs=1, batch_size=64, verbose=0)
    _shadow_ok(model)


def test_optimizer_step_shadow_argument():
    opt = fd.optim.Adam()
    p, g = np.ones(10, np.float32), np.full(10, 0.5, np.float32)
    sh = np.zeros(4, np.uint16)
    opt.step(p, g, shadow=sh)
    np.testing.assert_array_equal(sh, bf16(p[:4]))
    with pytest.raises(ValueError, match="shadow="):
        opt.step(p, g, shadow=np.zeros(11, np.uint16))
    with pytest.raises(ValueError, match="shadow="):
        opt.step(p, g, shadow=np.zeros(4, np.int16))
    with pytest.raises(ValueError, match="float32 params"):
        fd.optim.SGD().step(np.ones(3), np.ones(3), shadow=np.zeros(2, np.uint16))


def test_save_load_and_summary(rng, tmp_path):
    X, y = _data(rng)
    model = _net()
    model.fit(X, y, optimizer=fd.optim.Adam(), epochs=1, batch_size=64, verbose=0)
    assert "compute_dtype=bfloat16" in model.summary(print_fn=None)
    model.save(tmp_path / "m.npz")
    back = fd.load(tmp_path / "m.npz", allow_slow=True)
    assert back.compute_dtype == "bfloat16"
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    _shadow_ok(back)
    as32 = fd.load(tmp_path / "m.npz", compute_dtype=None)
    assert as32.compute_dtype is None and as32.params.shadow.size == 0
    np.testing.assert_allclose(as32.predict_proba(X), model.predict_proba(X), atol=0.05)
    if not BF16_HW:
        with pytest.raises(fd.PrecisionUnavailable, match="compute_dtype=None"):
            fd.load(tmp_path / "m.npz")
    # float32 models' files carry no compute_dtype: older readers see nothing new
    model32 = _net(None)
    assert "compute_dtype" not in model32.get_config()


# --- bad input -------------------------------------------------------------------------------
def _dense(compute_dtype, **kw):
    return fd.Sequential([fd.Dense(3, activation="softmax")], input_dim=4,
                         compute_dtype=compute_dtype, **kw)


@pytest.mark.parametrize("bad", ["bf16", "float16", 3, "mixed_bfloat16"])
def test_unknown_compute_dtype(bad):
    with pytest.raises(ValueError, match=r"compute_dtype=.*expected None"):
        _dense(bad, allow_slow=True)


def test_bfloat16_needs_float32():
    with pytest.raises(ValueError, match="needs dtype='float32'"):
        _dense("bfloat16", dtype="float64", allow_slow=True)
    with pytest.raises(ValueError, match="differs from dtype"):
        _dense("float64")
    assert _dense("float32").compute_dtype is None


def test_tfloat32_and_cuda_are_clear_errors():
    with pytest.raises(fd.PrecisionUnavailable, match="tensor-core"):
        _dense("tfloat32")
    with pytest.raises(fd.PrecisionUnavailable, match="cuda backend"):
        precision.resolve("bfloat16", np.float32, "cuda")


def test_numpy_backend_needs_allow_slow():
    with pytest.raises(fd.PrecisionUnavailable, match="allow_slow=True"):
        _dense("bfloat16", backend="numpy")
    with pytest.raises(TypeError, match="allow_slow"):
        _dense("bfloat16", allow_slow="yes")


def test_missing_extra_and_missing_instructions(monkeypatch):
    monkeypatch.setattr(_onednn, "_BF16_STATUS", (False, "oneDNN is not installed "
                                                         "(pip install \"fastdl[bf16]\")"))
    with pytest.raises(fd.PrecisionUnavailable, match=r'pip install "fastdl\[bf16\]"'):
        _dense("bfloat16")
    assert not fd.bf16_supported()
    monkeypatch.setattr(_onednn, "_BF16_STATUS", (False, "this CPU has no bfloat16 "
                                                         "instructions (oneDNN's ISA here is "
                                                         "avx2; ...)"))
    with pytest.raises(fd.PrecisionUnavailable, match="AVX512_BF16"):
        _dense("bfloat16")
    assert _dense("bfloat16", allow_slow=True).precision.gemm == "emulated"


def test_real_status_is_consistent():
    ok, detail = precision.bf16_status("cpu")
    assert ok == BF16_HW and isinstance(detail, str) and detail
    if not ONEDNN:
        assert "fastdl[bf16]" in detail
    assert precision.bf16_supported("numpy") is False


def test_gradcheck_refuses_bfloat16(rng):
    X, y = _data(rng, 8)
    with pytest.raises(ValueError, match="gradcheck needs float64"):
        fd.gradcheck(_net(), X, y)


def test_sklearn_and_cli_options(rng, tmp_path, capsys):
    pytest.importorskip("sklearn")
    from fastdl.sklearn import MLPClassifier
    X, y = _data(rng)
    kw = dict(max_iter=40, random_state=0, learning_rate_init=0.01)
    clf = MLPClassifier((16,), compute_dtype="bfloat16", allow_slow=True, **kw).fit(
        X.astype(np.float64), y)
    assert clf.model_.compute_dtype == "bfloat16" and clf.model_.dtype == np.float32
    ref = MLPClassifier((16,), dtype="float32", **kw).fit(X, y)
    assert clf.score(X, y) > 0.8 and abs(clf.score(X, y) - ref.score(X, y)) <= 0.03
    import pickle
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    with pytest.raises(ValueError, match="compute_dtype"):
        MLPClassifier(compute_dtype="half").fit(X, y)
    from fastdl.cli import main
    rc = main(["train", "--dataset", "moons", "--n", "400", "--epochs", "2", "--verbose", "0",
               "--compute-dtype", "bfloat16", "--allow-slow", "-o", str(tmp_path / "m.npz")])
    assert rc in (0, None)
    assert fd.load(tmp_path / "m.npz", allow_slow=True).compute_dtype == "bfloat16"
