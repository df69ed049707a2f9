"""The cuda kernels against the NumPy reference (the spec), under the CUDA simulator.

Not collected by a plain ``pytest`` (the file name does not match ``test_*.py``):
``tests/test_kernels_cuda.py`` runs it in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``, which
must be set before numba is first imported (the cpu tests import numba in the main process).
By hand::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_sim/kernels_sim.py -q

Every registered kernel has a case here (``test_every_registered_kernel_has_a_case`` enforces
it). Blocks are patched down to 4 threads and the GEMM tile to 4, so the tiny shapes (the
simulator runs every thread in Python) still span several blocks, grid-stride loops wrap, and
reductions take their two-stage path. Outputs start as NaN, so an element a kernel forgets to
write fails the comparison.
"""

import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":  # pragma: no cover - guard for direct runs
    pytest.skip("run with NUMBA_ENABLE_CUDASIM=1 (see tests/test_kernels_cuda.py)",
                allow_module_level=True)

from numba import cuda  # noqa: E402

import fastdl.kernels.cuda as K  # noqa: E402
from fastdl import config  # noqa: E402
from fastdl.kernels import ACTIVATIONS, KERNELS  # noqa: E402
from fastdl.kernels import reference as R  # noqa: E402
from fastdl.kernels.cuda import _device, _gemm, dense  # noqa: E402
from fastdl.kernels.reference import optim as R_optim  # noqa: E402
from fastdl.kernels.cuda import optim as K_optim  # noqa: E402

#: empty bfloat16 outputs (A16, dZ16, the optimizers' shadow): kernels compute without
#: mixed-precision copies here (tests/test_precision.py covers them)
NO16 = np.zeros((0, 0), np.uint16)
NO_SHADOW = np.zeros(0, np.uint16)

#: The simulator runs the dropout hash on NumPy uint64 scalars, which warn when they wrap
#: (the hash relies on wrapping mod 2^64; numba's compiled uint64 wraps silently).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in scalar:RuntimeWarning")

DTYPES = (np.float32, np.float64)
ACTS = sorted(ACTIVATIONS.values())
RTOL = {np.float32: 2e-5, np.float64: 1e-12}
ALPHA = 0.07  # leaky_relu slope


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(config, "CUDA_THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(config, "CUDA_GEMM_TILE", 4)
    monkeypatch.setattr(_device, "REDUCE_ITEMS_PER_THREAD", 1)  # reductions span blocks


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def poisoned(shape, dtype):
    return cuda.to_device(np.full(shape, np.nan, dtype=dtype))


def assert_close(got, ref, dtype, rtol=None):
    """Relative tolerance, with atol = rtol * the largest finite reference magnitude."""
    rtol = RTOL[dtype] if rtol is None else rtol
    got = got.copy_to_host() if not isinstance(got, np.ndarray) else got
    ref = np.asarray(ref)
    finite = np.abs(ref[np.isfinite(ref)])
    scale = float(finite.max()) if finite.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


def hostile(rng, shape, dtype, scale=3.0):
    """Normal values with exact zeros and a few large magnitudes."""
    z = scale * rng.standard_normal(shape)
    flat = z.reshape(-1)
    if not flat.size:
        return z.astype(dtype)
    flat[rng.integers(0, flat.size, size=max(1, flat.size // 5))] = 0.0
    flat[rng.integers(0, flat.size, size=max(1, flat.size // 7))] *= 10.0
    return z.astype(dtype)


# --- activations ------------------------------------------------------------------------------
def case_activation_forward(rng, dtype):
    Z = hostile(rng, (9, 7), dtype)
    for code in ACTS:
        ref = np.empty_like(Z)
        R.activation_forward(ref, Z, code, ALPHA)
        A = poisoned(Z.shape, dtype)
        K.activation_forward(A, dev(Z), code, ALPHA)
        assert_close(A, ref, dtype)
        Zd = dev(Z)  # in place
        K.activation_forward(Zd, Zd, code, ALPHA)
        assert_close(Zd, ref, dtype)


def case_activation_backward(rng, dtype):
    Z = hostile(rng, (9, 7), dtype)
    dA = hostile(rng, Z.shape, dtype, 1.0)
    for code in ACTS:
        A = np.empty_like(Z)
        R.activation_forward(A, Z, code, ALPHA)
        ref = np.empty_like(Z)
        R.activation_backward(ref, dA, A, code, ALPHA)
        dZ = poisoned(Z.shape, dtype)
        K.activation_backward(dZ, dev(dA), dev(A), code, ALPHA)
        assert_close(dZ, ref, dtype)
        d = dev(dA)  # in place
        K.activation_backward(d, d, dev(A), code, ALPHA)
        assert_close(d, ref, dtype)


def case_softmax_forward(rng, dtype):
    Z = hostile(rng, (9, 5), dtype)
    Z[2] += 800.0  # huge logits: exp overflows without the max shift
    Z[3] -= 800.0
    ref = np.empty_like(Z)
    R.softmax_forward(ref, Z)
    P = poisoned(Z.shape, dtype)
    K.softmax_forward(P, dev(Z))
    assert_close(P, ref, dtype)


# --- dense ------------------------------------------------------------------------------------
DENSE_SHAPES = ((1, 3, 2), (9, 5, 13), (6, 13, 1))  # (m, n_in, n_out): batch 1, odd sizes


def _dense_inputs(rng, m, n_in, n_out, dtype, bias):
    X = hostile(rng, (m, n_in), dtype, 1.0)
    W = hostile(rng, (n_out, n_in), dtype, 0.5)
    b = hostile(rng, (n_out,), dtype, 1.0) if bias else np.zeros(0, dtype)
    return X, W, b


def _codes(shape_index, bias):
    """Every activation on one shape, one on each other combination (the simulator is slow;
    the element functions are the ones the activation cases cover exhaustively)."""
    if shape_index == 1 and bias:
        return ACTS
    return ((4, 1), (2, 2), (3, 0))[shape_index][0 if bias else 1],


def case_dense_forward(rng, dtype):
    for si, (m, n_in, n_out) in enumerate(DENSE_SHAPES):
        for bias in (True, False):
            X, W, b = _dense_inputs(rng, m, n_in, n_out, dtype, bias)
            for code in _codes(si, bias):
                ref = np.empty((m, n_out), dtype)
                R.dense_forward(ref, NO16, X, W, b, code, ALPHA)
                A = poisoned((m, n_out), dtype)
                K.dense_forward(A, dev(NO16), dev(X), dev(W), dev(b), code, ALPHA)
                assert_close(A, ref, dtype)


def _check_dense_backward(rng, dtype, m, n_in, n_out, bias, want_dx, code):
    X, W, b = _dense_inputs(rng, m, n_in, n_out, dtype, bias)
    A = np.empty((m, n_out), dtype)
    R.dense_forward(A, NO16, X, W, b, code, ALPHA)
    dA0 = hostile(rng, (m, n_out), dtype, 1.0)
    rdX = np.empty((m, n_in), dtype) if want_dx else np.zeros(0, dtype)
    rdW = np.empty((n_out, n_in), dtype)
    rdb = np.empty(n_out, dtype) if bias else np.zeros(0, dtype)
    rdA = dA0.copy()
    R.dense_backward(rdX, rdW, rdb, NO16, rdA, A, X, W, code, ALPHA)
    dX = poisoned(rdX.shape, dtype)
    dW = poisoned(rdW.shape, dtype)
    db = poisoned(rdb.shape, dtype)
    dA = dev(dA0)
    K.dense_backward(dX, dW, db, dev(NO16), dA, dev(A), dev(X), dev(W), code, ALPHA)
    assert_close(dA, rdA, dtype)  # dA was overwritten with dZ
    assert_close(dW, rdW, dtype)
    assert_close(db, rdb, dtype)
    assert_close(dX, rdX, dtype)


def case_dense_backward(rng, dtype):
    for si, (m, n_in, n_out) in enumerate(DENSE_SHAPES):
        for code in ((4,), (1, 2), (3,))[si]:
            _check_dense_backward(rng, dtype, m, n_in, n_out, True, True, code)
    _check_dense_backward(rng, dtype, 7, 4, 5, False, True, 1)    # no bias
    _check_dense_backward(rng, dtype, 7, 4, 5, True, False, 3)    # first layer: no dX
    _check_dense_backward(rng, dtype, 7, 4, 5, False, False, 0)   # linear, nothing fused


def test_dense_backward_split_column_sums(monkeypatch):
    """Tall batches split the db column sums over row ranges (partials + a second kernel)."""
    monkeypatch.setattr(dense, "_COLSUM_MIN_ROWS_PER_THREAD", 1)
    rng = np.random.default_rng(11)
    for dtype in DTYPES:
        for code in (0, 4):
            _check_dense_backward(rng, dtype, 9, 3, 5, True, True, code)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiled_gemm_all_transposes(dtype):
    """The numba tiled GEMM (the fallback, and the reference for the cuBLAS paths)."""
    rng = np.random.default_rng(5)
    m, n, k = 9, 6, 7
    for ta in (False, True):
        for tb in (False, True):
            A = hostile(rng, (k, m) if ta else (m, k), dtype, 1.0)
            B = hostile(rng, (n, k) if tb else (k, n), dtype, 1.0)
            ref = (A.T if ta else A) @ (B.T if tb else B)
            C = poisoned((m, n), dtype)
            _gemm.gemm_numba(C, dev(A), dev(B), ta, tb)
            assert_close(C, ref, dtype)
    C = poisoned((3, 4), dtype)  # k = 0: C is zero
    _gemm.gemm(C, dev(np.zeros((3, 0), dtype)), dev(np.zeros((0, 4), dtype)), False, False)
    assert (C.copy_to_host() == 0).all()


# --- losses -----------------------------------------------------------------------------------
def _loss_case(rng, dtype, name, make_targets):
    for m, c in ((3, 4), (9, 5), (1, 1)):  # one block (direct), three blocks (two stages), m=1
        Z = hostile(rng, (m, c), dtype)
        Z[0, 0] = 60.0 if name != "mean_squared_error" else Z[0, 0]  # large logit
        Y = make_targets(rng, m, c).astype(dtype)
        rloss, rdZ = np.zeros(1), np.empty_like(Z)
        getattr(R, name)(rloss, rdZ, Z, Y)
        for loss_dtype in (np.float64, dtype):
            loss = poisoned(1, loss_dtype)
            dZ = poisoned(Z.shape, dtype)
            getattr(K, name)(loss, dZ, dev(Z), dev(Y))
            assert_close(loss, rloss, dtype, rtol=max(RTOL[dtype], 1e-5 if dtype == np.float32
                                                      else 0))
            assert_close(dZ, rdZ, dtype)
        Zd = dev(Z)  # in place: dZ aliases Z
        loss = poisoned(1, dtype)
        getattr(K, name)(loss, Zd, Zd, dev(Y))
        assert_close(Zd, rdZ, dtype)


def _one_hot(rng, m, c):
    return np.eye(c)[rng.integers(0, c, m)]


def _soft(rng, m, c):
    p = rng.random((m, c)) + 0.1
    return p / p.sum(axis=1, keepdims=True)


def case_softmax_cross_entropy(rng, dtype):
    _loss_case(rng, dtype, "softmax_cross_entropy", _one_hot)
    _loss_case(rng, dtype, "softmax_cross_entropy", _soft)


def case_sigmoid_binary_cross_entropy(rng, dtype):
    _loss_case(rng, dtype, "sigmoid_binary_cross_entropy",
               lambda rng, m, c: rng.integers(0, 2, (m, c)))


def case_mean_squared_error(rng, dtype):
    _loss_case(rng, dtype, "mean_squared_error", lambda rng, m, c: rng.standard_normal((m, c)))


def _weighted_loss_case(rng, dtype, name, make_targets):
    """Weights with zeros and a large one, one block and several, m = 1; all-zero weights give
    J = 0 and dZ = 0 (wsum = 0: no information, reference docstring)."""
    for m, c in ((3, 4), (9, 5), (1, 1)):
        Z = hostile(rng, (m, c), dtype)
        Y = make_targets(rng, m, c).astype(dtype)
        w = rng.random(m).astype(dtype)
        w[0] = 0.0
        w[-1] = 7.5
        for ww in (w, np.zeros(m, dtype)):
            wsum = float(ww.astype(np.float64).sum())
            rloss, rdZ = np.zeros(1), np.empty_like(Z)
            getattr(R, "weighted_" + name)(rloss, rdZ, Z, Y, ww, wsum)
            loss, dZ = poisoned(1, np.float64), poisoned(Z.shape, dtype)
            getattr(K, "weighted_" + name)(loss, dZ, dev(Z), dev(Y), dev(ww), wsum)
            assert_close(loss, rloss, dtype, rtol=max(RTOL[dtype], 1e-5 if dtype == np.float32
                                                      else 0))
            assert_close(dZ, rdZ, dtype)
            if wsum == 0:
                assert rloss[0] == 0.0 and (rdZ == 0).all()
        Zd = dev(Z)  # in place: dZ aliases Z
        rloss, rdZ = np.zeros(1), np.empty_like(Z)
        getattr(R, "weighted_" + name)(rloss, rdZ, Z, Y, w, float(w.sum()))
        getattr(K, "weighted_" + name)(poisoned(1, dtype), Zd, Zd, dev(Y), dev(w), float(w.sum()))
        assert_close(Zd, rdZ, dtype)


def case_weighted_softmax_cross_entropy(rng, dtype):
    _weighted_loss_case(rng, dtype, "softmax_cross_entropy", _one_hot)
    _weighted_loss_case(rng, dtype, "softmax_cross_entropy", _soft)


def case_weighted_sigmoid_binary_cross_entropy(rng, dtype):
    _weighted_loss_case(rng, dtype, "sigmoid_binary_cross_entropy",
                        lambda rng, m, c: rng.integers(0, 2, (m, c)))


def case_weighted_mean_squared_error(rng, dtype):
    _weighted_loss_case(rng, dtype, "mean_squared_error",
                        lambda rng, m, c: rng.standard_normal((m, c)))


def _poisson_problem(rng, dtype, m, c):
    """Log-means in [-20, 20] (exp stays inside float32's range: the cuda kernel computes in
    the input dtype, the reference in float64) with zeros; counts with zeros, a large count
    and fractional rates."""
    Z = np.clip(hostile(rng, (m, c), dtype), -20, 20).astype(dtype)
    Y = rng.poisson(1.5, (m, c)).astype(np.float64)
    Y.reshape(-1)[0] = 500.0
    Y.reshape(-1)[-1] = 0.25
    return Z, Y.astype(dtype)


def case_exp_half_poisson_deviance(rng, dtype):
    for m, c in ((3, 4), (9, 5), (1, 1)):
        Z, Y = _poisson_problem(rng, dtype, m, c)
        rloss, rdZ = np.zeros(1), np.empty_like(Z)
        R.exp_half_poisson_deviance(rloss, rdZ, Z, Y)
        for loss_dtype in (np.float64, dtype):
            loss, dZ = poisoned(1, loss_dtype), poisoned(Z.shape, dtype)
            K.exp_half_poisson_deviance(loss, dZ, dev(Z), dev(Y))
            assert_close(loss, rloss, dtype, rtol=max(RTOL[dtype], 1e-5 if dtype == np.float32
                                                      else 0))
            assert_close(dZ, rdZ, dtype)
        Zd = dev(Z)  # in place: dZ aliases Z
        K.exp_half_poisson_deviance(poisoned(1, dtype), Zd, Zd, dev(Y))
        assert_close(Zd, rdZ, dtype)


def case_weighted_exp_half_poisson_deviance(rng, dtype):
    for m, c in ((3, 4), (9, 5), (1, 1)):
        Z, Y = _poisson_problem(rng, dtype, m, c)
        w = rng.random(m).astype(dtype)
        w[0] = 0.0
        w[-1] = 7.5
        for ww in (w, np.zeros(m, dtype)):
            wsum = float(ww.astype(np.float64).sum())
            rloss, rdZ = np.zeros(1), np.empty_like(Z)
            R.weighted_exp_half_poisson_deviance(rloss, rdZ, Z, Y, ww, wsum)
            loss, dZ = poisoned(1, np.float64), poisoned(Z.shape, dtype)
            K.weighted_exp_half_poisson_deviance(loss, dZ, dev(Z), dev(Y), dev(ww), wsum)
            assert_close(loss, rloss, dtype, rtol=max(RTOL[dtype], 1e-5 if dtype == np.float32
                                                      else 0))
            assert_close(dZ, rdZ, dtype)
            if wsum == 0:
                assert rloss[0] == 0.0 and (rdZ == 0).all()
        Zd = dev(Z)
        rloss, rdZ = np.zeros(1), np.empty_like(Z)
        R.weighted_exp_half_poisson_deviance(rloss, rdZ, Z, Y, w, float(w.sum()))
        K.weighted_exp_half_poisson_deviance(poisoned(1, dtype), Zd, Zd, dev(Y), dev(w),
                                             float(w.sum()))
        assert_close(Zd, rdZ, dtype)


# --- optimizers -------------------------------------------------------------------------------
N_PARAMS, N_L2 = 11, 6
OPT_CONFIGS = {
    "sgd_update": [dict(lr=0.1, weight_decay=0.0, l2=0.0), dict(lr=0.05, weight_decay=0.01,
                                                                 l2=0.3)],
    "momentum_update": [dict(lr=0.1, beta=0.9, dampening=0.9, nesterov=False, weight_decay=0.0,
                             l2=0.2),
                        dict(lr=0.1, beta=0.8, dampening=0.0, nesterov=True, weight_decay=0.01,
                             l2=0.0)],
    "rmsprop_update": [dict(lr=0.01, beta=0.9, eps=1e-8, weight_decay=0.0, l2=0.1),
                       dict(lr=0.02, beta=0.99, eps=1e-6, weight_decay=0.02, l2=0.0)],
    "adam_update": [dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                         decoupled_decay=0.0, l2=0.1),
                    dict(lr=0.003, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.01,
                         decoupled_decay=0.05, l2=0.0)],
}
N_STATE = {"sgd_update": 0, "momentum_update": 1, "rmsprop_update": 1, "adam_update": 2}
#: inline clipping (max_norm, clip_value): off, norm (active; inactive), value, both
OPT_CLIPS = ((np.inf, np.inf), (1.0, np.inf), (1e6, np.inf), (np.inf, 0.5), (2.0, 0.3))


def _run_optimizer(rng, dtype, name):
    for cfg in OPT_CONFIGS[name]:
        for max_norm, clip_value in OPT_CLIPS:
            p_ref = hostile(rng, N_PARAMS, dtype, 1.0)
            s_ref = [np.zeros(N_PARAMS, dtype) for _ in range(N_STATE[name])]
            p_dev, s_dev = dev(p_ref), [dev(s) for s in s_ref]
            sq_dev = poisoned(1, np.float64)     # not read while norm clipping is off
            for step in range(1, 5):
                g = hostile(rng, N_PARAMS, dtype, 1.0)
                g_dev = dev(g)
                sq = np.zeros(1)
                if np.isfinite(max_norm):        # as Optimizer.step: the norm on the device
                    R.sum_squares(sq, g)
                    K.sum_squares(sq_dev, g_dev)
                args = dict(cfg, n_l2=N_L2, max_norm=max_norm, clip_value=clip_value)
                if name == "adam_update":
                    args["step"] = step
                getattr(R_optim, name)(p_ref, NO_SHADOW, *s_ref, g, sum_sq=sq, **args)
                getattr(K_optim, name)(p_dev, dev(NO_SHADOW), *s_dev, g_dev, sum_sq=sq_dev, **args)
                assert_close(g_dev, g, dtype, rtol=0)  # grads are never modified
            assert_close(p_dev, p_ref, dtype, rtol=4 * RTOL[dtype])
            for sd, sr in zip(s_dev, s_ref):
                assert_close(sd, sr, dtype, rtol=4 * RTOL[dtype])


def test_update_kernels_clip_nan_as_the_reference():
    """A NaN gradient entry passes the value clip; a NaN norm makes every entry NaN."""
    for dtype in DTYPES:
        for max_norm, clip_value, nan_norm in ((np.inf, 0.5, False), (1.0, np.inf, True)):
            g = np.array([np.nan, 9.0, -9.0, 0.25], dtype)
            sq = np.array([np.nan if nan_norm else 100.0])
            p_ref, p_dev = np.zeros(4, dtype), dev(np.zeros(4, dtype))
            R_optim.sgd_update(p_ref, NO_SHADOW, g, 1.0, 0.0, sq, max_norm, clip_value, 0.0, 0)
            K_optim.sgd_update(p_dev, dev(NO_SHADOW), dev(g), 1.0, 0.0, dev(sq), max_norm, clip_value, 0.0, 0)
            got = p_dev.copy_to_host()
            np.testing.assert_array_equal(np.isnan(got), np.isnan(p_ref))
            np.testing.assert_array_equal(got[~np.isnan(got)], p_ref[~np.isnan(p_ref)])
            assert np.isnan(got).sum() == (4 if nan_norm else 1)


def case_sgd_update(rng, dtype):
    _run_optimizer(rng, dtype, "sgd_update")


def case_momentum_update(rng, dtype):
    _run_optimizer(rng, dtype, "momentum_update")


def case_rmsprop_update(rng, dtype):
    _run_optimizer(rng, dtype, "rmsprop_update")


def case_adam_update(rng, dtype):
    _run_optimizer(rng, dtype, "adam_update")


# --- batching, reductions ---------------------------------------------------------------------
def case_gather_rows(rng, dtype):
    X = hostile(rng, (9, 5), dtype)
    idx = rng.permutation(9)[:6].astype(np.int64)
    ref = np.full((8, 5), np.nan, dtype)
    R.gather_rows(ref, X, idx)
    out = poisoned((8, 5), dtype)
    K.gather_rows(out, dev(X), dev(idx))
    np.testing.assert_array_equal(out.copy_to_host(), ref)  # a copy: exact; rows 6-7 untouched
    y = rng.integers(0, 3, 9).astype(np.int64)  # 1-D labels
    out = cuda.to_device(np.full(7, -1, np.int64))
    K.gather_rows(out, dev(y), dev(idx))
    np.testing.assert_array_equal(out.copy_to_host()[:6], y[idx])


def case_sum_squares(rng, dtype):
    for n in (0, 3, 11, 37):  # empty, one block (direct), several blocks (two stages)
        x = hostile(rng, n, dtype)
        ref = np.zeros(1)
        R.sum_squares(ref, x)
        for out_dtype in (np.float64, dtype):
            out = poisoned(1, out_dtype)
            K.sum_squares(out, dev(x))
            assert_close(out, ref, dtype)


# --- augmentation -------------------------------------------------------------------------------
#: (m, H, W, C, flip, shift, noise): every mode, thin and odd images, a single row
AUG_CASES = ((3, 4, 3, 2, True, 1, 0.3), (2, 5, 5, 1, True, 2, 0.0), (3, 3, 4, 2, False, 0, 0.5),
             (1, 2, 6, 1, False, 1, 0.0), (2, 3, 3, 1, False, 0, 0.0))


def case_augment_images(rng, dtype):
    """Bit-identical with the reference: flips and shifts are copies, the noise is the same
    hashes through the same correctly rounded float64 operations."""
    for m, H, W, C, flip, shift, noise in AUG_CASES:
        X = hostile(rng, (m, H * W * C), dtype)
        for seed, epoch, batch in ((3, 1, 2), (2**40 + 7, 2**62, 2**63 - 1)):
            ref = np.full_like(X, np.nan)
            R.augment_images(ref, X, H, W, C, seed, epoch, batch, flip, shift, noise)
            out = poisoned(X.shape, dtype)
            K.augment_images(out, dev(X), H, W, C, seed, epoch, batch, flip, shift, noise)
            np.testing.assert_array_equal(out.copy_to_host().view(np.uint8), ref.view(np.uint8))


def test_augment_object_on_device_matches_cpu():
    """fd.Augment.apply on a device batch (with and without a scratch buffer) gives the cpu
    backend's bits: what fit's hook runs on the cuda backend, with no host round trip."""
    import fastdl as fd
    from fastdl.backend import get_backend
    rng = np.random.default_rng(4)
    X = rng.standard_normal((3, 36)).astype(np.float32)
    a = fd.Augment(image_shape=(6, 3, 2), flip=True, shift=1, noise=0.2)
    want = X.copy()
    a.apply(want, 1, 2, 3, backend="cpu")
    bk = get_backend("cuda")
    for scratch in (None, bk.empty(X.shape, X.dtype)):
        Xd = dev(X)
        a.apply(Xd, 1, 2, 3, backend=bk, scratch=scratch)
        np.testing.assert_array_equal(Xd.copy_to_host().view(np.uint8), want.view(np.uint8))


# --- dropout ----------------------------------------------------------------------------------
DROPOUT_DRAWS = ((3, 5, 0, 0.8), (2**40 + 7, 123456789, 3, 0.5), (0, 0, 0, 1.0), (9, 2, 1, 0.1))


def case_dropout_forward(rng, dtype):
    """The mask is bit-identical with the reference (hence with the cpu backend)."""
    X = hostile(rng, (9, 7), dtype)
    X[0, 0] = np.nan  # a dropped NaN becomes 0, a kept one stays NaN
    for seed, step, layer, keep_prob in DROPOUT_DRAWS:
        ref = np.empty_like(X)
        R.dropout_forward(ref, NO16, X, seed, step, layer, keep_prob)
        A = poisoned(X.shape, dtype)
        K.dropout_forward(A, dev(NO16), dev(X), seed, step, layer, keep_prob)
        np.testing.assert_array_equal(A.copy_to_host(), ref)
        Xd = dev(X)  # in place
        K.dropout_forward(Xd, dev(NO16), Xd, seed, step, layer, keep_prob)
        np.testing.assert_array_equal(Xd.copy_to_host(), ref)


def case_dropout_backward(rng, dtype):
    dA = hostile(rng, (9, 7), dtype)
    for seed, step, layer, keep_prob in DROPOUT_DRAWS:
        ref = np.empty_like(dA)
        R.dropout_backward(ref, dA, seed, step, layer, keep_prob)
        dX = poisoned(dA.shape, dtype)
        K.dropout_backward(dX, dev(dA), seed, step, layer, keep_prob)
        np.testing.assert_array_equal(dX.copy_to_host(), ref)


# --- batch norm -------------------------------------------------------------------------------
def _bn_inputs(rng, dtype, m, n):
    X = (hostile(rng, (m, n), dtype, 1.0) + rng.standard_normal(n) * 2).astype(dtype)
    gamma = (1 + 0.3 * rng.standard_normal(n)).astype(dtype)
    beta = rng.standard_normal(n).astype(dtype)
    rmean = rng.standard_normal(n).astype(dtype)
    rvar = (1 + rng.random(n)).astype(dtype)
    return X, gamma, beta, rmean, rvar


def case_batchnorm_forward_train(rng, dtype):
    for m, n, momentum, unbiased, code in ((9, 13, 0.9, 0, 1), (2, 3, 0.99, 1, 0),
                                           (5, 1, 1.0, 1, 3), (4, 6, 0.8, 0, 2)):
        X, gamma, beta, rmean, rvar = _bn_inputs(rng, dtype, m, n)
        ref = dict(A=np.empty_like(X), mean=np.empty(n), inv_std=np.empty(n), rm=rmean.copy(),
                   rv=rvar.copy())
        R.batchnorm_forward_train(ref["A"], NO16, ref["mean"], ref["inv_std"], ref["rm"], ref["rv"],
                                  X, gamma, beta, momentum, 1e-5, unbiased, code, ALPHA)
        A, mean, inv_std = poisoned(X.shape, dtype), poisoned(n, np.float64), poisoned(
            n, np.float64)
        rm, rv = dev(rmean), dev(rvar)
        K.batchnorm_forward_train(A, dev(NO16), mean, inv_std, rm, rv, dev(X), dev(gamma), dev(beta),
                                  momentum, 1e-5, unbiased, code, ALPHA)
        for got, key in ((A, "A"), (mean, "mean"), (inv_std, "inv_std"), (rm, "rm"),
                         (rv, "rv")):
            assert_close(got, ref[key], dtype, rtol=5 * RTOL[dtype])
        Xd = dev(X)  # in place: A is X
        K.batchnorm_forward_train(Xd, dev(NO16), mean, inv_std, dev(rmean), dev(rvar), Xd, dev(gamma),
                                  dev(beta), momentum, 1e-5, unbiased, code, ALPHA)
        assert_close(Xd, ref["A"], dtype, rtol=5 * RTOL[dtype])


def case_batchnorm_forward_eval(rng, dtype):
    X, gamma, beta, rmean, rvar = _bn_inputs(rng, dtype, 9, 7)
    for code in ACTS:
        ref = np.empty_like(X)
        R.batchnorm_forward_eval(ref, NO16, X, gamma, beta, rmean, rvar, 1e-3, code, ALPHA)
        A = poisoned(X.shape, dtype)
        K.batchnorm_forward_eval(A, dev(NO16), dev(X), dev(gamma), dev(beta), dev(rmean), dev(rvar), 1e-3,
                                 code, ALPHA)
        assert_close(A, ref, dtype)


def case_batchnorm_backward(rng, dtype):
    for m, n, want_dx, code in ((9, 13, True, 1), (2, 3, True, 4), (6, 4, False, 0),
                                (5, 5, True, 3)):
        X, gamma, beta, _, _ = _bn_inputs(rng, dtype, m, n)
        mean = X.astype(np.float64).mean(axis=0)
        inv_std = 1.0 / np.sqrt(X.astype(np.float64).var(axis=0) + 1e-5)
        A = np.empty_like(X)
        R.batchnorm_forward_train(A, NO16, np.empty(n), np.empty(n), np.zeros(n, dtype),
                                  np.ones(n, dtype), X, gamma, beta, 0.9, 1e-5, 0, code, ALPHA)
        dA0 = hostile(rng, (m, n), dtype, 1.0)
        rdX = np.empty_like(X) if want_dx else np.zeros(0, dtype)
        rdg, rdb, rdA = np.empty(n, dtype), np.empty(n, dtype), dA0.copy()
        R.batchnorm_backward(rdX, rdg, rdb, rdA, A, X, mean, inv_std, gamma, code, ALPHA)
        dX = poisoned(rdX.shape, dtype)
        dg, db, dA = poisoned(n, dtype), poisoned(n, dtype), dev(dA0)
        K.batchnorm_backward(dX, dg, db, dA, dev(A), dev(X), dev(mean), dev(inv_std),
                             dev(gamma), code, ALPHA)
        for got, want in ((dg, rdg), (db, rdb), (dA, rdA)):
            assert_close(got, want, dtype, rtol=5 * RTOL[dtype])
        # dX = gamma inv_std / m (m dz - sum dz - x_hat sum dz x_hat) is a difference of terms
        # of size |gamma inv_std dz|; at m = 2 it cancels to rounding noise of those terms, so
        # its absolute tolerance is relative to them, not to dX
        terms = float(np.max(np.abs(gamma * inv_std)) * np.max(np.abs(rdA))) if m else 0.0
        tol = 5 * RTOL[dtype]
        np.testing.assert_allclose(dX.copy_to_host(), rdX, rtol=tol, atol=tol * terms)
        if want_dx:  # in place: dX is dA
            d = dev(dA0)
            K.batchnorm_backward(d, dg, db, d, dev(A), dev(X), dev(mean), dev(inv_std),
                                 dev(gamma), code, ALPHA)
            np.testing.assert_allclose(d.copy_to_host(), rdX, rtol=tol, atol=tol * terms)


# --- epoch ------------------------------------------------------------------------------------
HYPER = {0: [0.1, 0.01], 1: [0.1, 0.9, 0.0, 1.0, 0.0], 2: [0.01, 0.9, 1e-8, 0.0],
         3: [0.01, 0.9, 0.999, 1e-8, 0.0, 0.01]}
STATE_ROWS = {0: 0, 1: 1, 2: 1, 3: 2}
#: (loss code, output units, output activation, hidden activations, bias, optimizer, l2)
EPOCH_NETS = [(1, 3, 0, (1, 3), True, 0, 0.0),    # softmax CE, relu/tanh, SGD
              (0, 1, 0, (2,), True, 3, 0.1),      # sigmoid BCE, leaky relu, Adam + L2
              (2, 2, 4, (4, 1), False, 1, 0.05),  # MSE with sigmoid output, no bias, Nesterov
              (1, 2, 0, (3,), True, 2, 0.0),      # softmax CE, tanh, RMSprop
              (3, 2, 0, (3,), True, 3, 0.1)]      # exp + Poisson deviance, tanh, Adam + L2


def _epoch_problem(rng, dtype, loss, k_out, out_act, hidden, bias, opt, l2):
    m, n_in, batch = 7, 3, 3
    units = [4, 3][:len(hidden)] + [k_out]
    acts = list(hidden) + [out_act]
    layout, off, inputs = [], 0, n_in
    for u in units:  # weights first (the L2 prefix), biases after
        layout.append([off, -1, u, inputs, 0])
        off += u * inputs
        inputs = u
    n_l2 = off
    for row, a in zip(layout, acts):
        row[4] = a
        if bias:
            row[1] = off
            off += row[2]
    layout = np.array(layout, dtype=np.int64)
    params = hostile(rng, off, dtype, 0.5)
    X = hostile(rng, (m, n_in), dtype, 1.0)
    if loss == 0:
        Y = rng.integers(0, 2, (m, k_out))
    elif loss == 1:
        Y = np.eye(k_out)[rng.integers(0, k_out, m)]
    elif loss == 3:
        Y = rng.poisson(1.5, (m, k_out))
    else:
        Y = rng.random((m, k_out))
    Y = Y.astype(dtype)
    order = rng.permutation(m).astype(np.int64)
    ws_size = batch * (n_in + 2 * sum(units))
    n_batches = (m + batch - 1) // batch
    return dict(params=params, X=X, Y=Y, order=order, batch=batch, layout=layout, loss=loss,
                l2=l2, n_l2=n_l2, opt=opt, ws_size=ws_size, n_batches=n_batches,
                hyper=np.array(HYPER[opt]), n_state=STATE_ROWS[opt])


def _check_epoch(P, dtype, host_costs=False):
    n = P["params"].shape[0]
    step = 4
    ref = dict(costs=np.full(P["n_batches"], np.nan), params=P["params"].copy(),
               grads=np.full(n, np.nan, dtype), state=np.zeros((P["n_state"], n), dtype),
               ws=np.full(P["ws_size"], np.nan, dtype))
    R.train_epoch(ref["costs"], ref["params"], ref["grads"], ref["state"], ref["ws"], P["X"],
                  P["Y"], P["order"], P["batch"], P["layout"], P["loss"], P["l2"], P["n_l2"],
                  ALPHA, P["opt"], P["hyper"], step)
    costs = np.full(P["n_batches"], np.nan) if host_costs else poisoned(P["n_batches"], dtype)
    params, grads = dev(P["params"]), poisoned(n, dtype)
    state = cuda.to_device(np.zeros((P["n_state"], n), dtype))
    ws = poisoned(P["ws_size"], dtype)
    K.train_epoch(costs, params, grads, state, ws, dev(P["X"]), dev(P["Y"]), dev(P["order"]),
                  P["batch"], P["layout"], P["loss"], P["l2"], P["n_l2"], ALPHA, P["opt"],
                  P["hyper"], step)
    rtol = {np.float32: 2e-4, np.float64: 1e-10}[dtype]
    assert_close(costs, ref["costs"], dtype, rtol=rtol)
    assert_close(params, ref["params"], dtype, rtol=rtol)
    assert_close(grads, ref["grads"], dtype, rtol=rtol)
    assert_close(state, ref["state"], dtype, rtol=rtol)
    np.testing.assert_array_equal(np.isnan(ws.copy_to_host()), np.isnan(ref["ws"]))


def case_train_epoch(rng, dtype):
    """Both implementations: the one-block fused kernel and the per-batch launches."""
    P = _epoch_problem(rng, dtype, *EPOCH_NETS[0])
    for fused_max in (10 ** 6, 0):
        config.FUSED_EPOCH_MAX_WEIGHTS = fused_max
        _check_epoch(P, dtype)


@pytest.mark.parametrize("fused", (True, False), ids=("fused_kernel", "launches"))
@pytest.mark.parametrize("net", range(1, len(EPOCH_NETS)))
def test_train_epoch_nets(monkeypatch, fused, net):
    monkeypatch.setattr(config, "FUSED_EPOCH_MAX_WEIGHTS", 10 ** 6 if fused else 0)
    rng = np.random.default_rng(100 + net)
    dtype = np.float64 if net % 2 else np.float32
    _check_epoch(_epoch_problem(rng, dtype, *EPOCH_NETS[net]), dtype, host_costs=(net == 2))


# --- bfloat16 (mixed precision) ------------------------------------------------------------------
def _bf16_inputs(rng, shape):
    """float32 values of every class the rounding must get right: ties, subnormals, inf, NaN."""
    x = hostile(rng, shape, np.float32).reshape(-1)
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, 1e-40, -1e-45, 3.39e38, 0.0, -0.0,
                        1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8], np.float32)
    x[:min(x.size, special.size)] = special[:x.size]
    return x.reshape(shape)


def case_to_bfloat16(rng, dtype):
    """Bit for bit the reference (float32 inputs whatever ``dtype``: only float32 narrows)."""
    x = _bf16_inputs(rng, (9, 13))
    ref = np.empty(x.shape, np.uint16)
    R.to_bfloat16(ref, x)
    out = cuda.to_device(np.zeros(x.shape, np.uint16))
    K.to_bfloat16(out, dev(x))
    np.testing.assert_array_equal(out.copy_to_host(), ref)


def case_from_bfloat16(rng, dtype):
    bits = rng.integers(0, 1 << 16, size=(7, 11)).astype(np.uint16)
    ref = np.empty(bits.shape, dtype)
    R.from_bfloat16(ref, bits)
    out = poisoned(bits.shape, dtype)
    K.from_bfloat16(out, dev(bits))
    np.testing.assert_array_equal(out.copy_to_host().view(np.uint8), ref.view(np.uint8))


def case_gemm(rng, dtype):
    """Float operands of ``dtype`` and bfloat16 operands (float32 C), every transpose."""
    m, k, n = 5, 7, 3
    for ta in (False, True):
        for tb in (False, True):
            A = hostile(rng, (k, m) if ta else (m, k), dtype, 1.0)
            B = hostile(rng, (n, k) if tb else (k, n), dtype, 1.0)
            ref = np.empty((m, n), dtype)
            R.gemm(ref, A, B, ta, tb)
            C = poisoned((m, n), dtype)
            K.gemm(C, dev(A), dev(B), ta, tb)
            assert_close(C, ref, dtype)
            A16, B16 = (np.empty(a.shape, np.uint16) for a in (A, B))
            R.to_bfloat16(A16, A.astype(np.float32))
            R.to_bfloat16(B16, B.astype(np.float32))
            ref = np.empty((m, n), np.float32)
            R.gemm(ref, A16, B16, ta, tb)
            C = poisoned((m, n), np.float32)
            K.gemm(C, dev(A16), dev(B16), ta, tb)
            assert_close(C, ref, np.float32)


def test_bfloat16_outputs_of_the_layer_kernels():
    """A16 / dZ16 / shadow / bfloat16 gathers equal bf16 of the reference's float32 values."""
    rng = np.random.default_rng(16)
    f32 = np.float32
    m, n_in, n_out = 6, 5, 4
    X, W, b = _dense_inputs(rng, m, n_in, n_out, f32, True)
    X16, W16 = (np.empty(a.shape, np.uint16) for a in (X, W))
    R.to_bfloat16(X16, X)
    R.to_bfloat16(W16, W)
    for code in (1, 3):
        A, A16 = np.empty((m, n_out), f32), np.empty((m, n_out), np.uint16)
        R.dense_forward(A, A16, X16, W16, b, code, ALPHA)
        Ad, A16d = poisoned((m, n_out), f32), cuda.to_device(np.zeros((m, n_out), np.uint16))
        K.dense_forward(Ad, A16d, dev(X16), dev(W16), dev(b), code, ALPHA)
        assert_close(Ad, A, f32)
        np.testing.assert_array_equal(A16d.copy_to_host(), A16)
        dA = hostile(rng, (m, n_out), f32, 1.0)
        ref = [np.empty((m, n_in), f32), np.empty((n_out, n_in), f32), np.empty(n_out, f32),
               np.empty((m, n_out), np.uint16)]
        R.dense_backward(*ref, dA.copy(), A, X16, W16, code, ALPHA)
        got = [poisoned(r.shape, f32) for r in ref[:3]] + \
            [cuda.to_device(np.zeros((m, n_out), np.uint16))]
        K.dense_backward(*got, dev(dA), dev(A), dev(X16), dev(W16), code, ALPHA)
        for g, r in zip(got[:3], ref[:3]):
            assert_close(g, r, f32)
        np.testing.assert_array_equal(got[3].copy_to_host(), ref[3])
    # dropout and batch norm write A16 after A
    A16 = cuda.to_device(np.zeros(X.shape, np.uint16))
    K.dropout_forward(dev(np.empty_like(X)), A16, dev(X), 3, 1, 2, 0.7)
    ref, ref16 = np.empty_like(X), np.empty(X.shape, np.uint16)
    R.dropout_forward(ref, ref16, X, 3, 1, 2, 0.7)
    np.testing.assert_array_equal(A16.copy_to_host(), ref16)
    gamma, beta = hostile(rng, n_in, f32, 1.0), hostile(rng, n_in, f32, 1.0)
    rmean, rvar = np.zeros(n_in, f32), np.ones(n_in, f32)
    ref, ref16 = np.empty_like(X), np.empty(X.shape, np.uint16)
    R.batchnorm_forward_eval(ref, ref16, X, gamma, beta, rmean, rvar, 1e-5, 1, ALPHA)
    A, A16 = poisoned(X.shape, f32), cuda.to_device(np.zeros(X.shape, np.uint16))
    K.batchnorm_forward_eval(A, A16, dev(X), dev(gamma), dev(beta), dev(rmean), dev(rvar), 1e-5,
                             1, ALPHA)
    assert_close(A, ref, f32)
    # batch norm's float32 pass may round A differently by an ulp; compare A16 to A's bf16
    got = np.empty(X.shape, np.uint16)
    R.to_bfloat16(got, A.copy_to_host())
    np.testing.assert_array_equal(A16.copy_to_host(), got)
    # gather with rounding, and the optimizers' shadow
    idx = np.array([3, 0, 5], np.int64)
    out = cuda.to_device(np.zeros((3, n_in), np.uint16))
    K.gather_rows(out, dev(X), dev(idx))
    np.testing.assert_array_equal(out.copy_to_host(), X16[idx])
    p, g = hostile(rng, 50, f32, 1.0), hostile(rng, 50, f32, 1.0)
    ref_p, sh_ref = p.copy(), np.zeros(30, np.uint16)
    R.sgd_update(ref_p, sh_ref, g, 0.1, 0.0, np.zeros(1), np.inf, np.inf, 0.0, 0)
    pd, sh = dev(p), cuda.to_device(np.zeros(30, np.uint16))
    K.sgd_update(pd, sh, dev(g), 0.1, 0.0, dev(np.zeros(1)), np.inf, np.inf, 0.0, 0)
    assert_close(pd, ref_p, f32)
    np.testing.assert_array_equal(sh.copy_to_host(), sh_ref)


# --- the table: every registered kernel ---------------------------------------------------------
CASES = {name[len("case_"):]: fn for name, fn in dict(globals()).items()
         if name.startswith("case_")}


def test_every_registered_kernel_has_a_case():
    registered = {n for names in KERNELS.values() for n in names}
    assert registered <= set(CASES), f"cuda kernels without a simulator case: " \
                                     f"{sorted(registered - set(CASES))}"


@pytest.mark.parametrize("dtype", DTYPES, ids=("f32", "f64"))
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_matches_reference(monkeypatch, name, dtype):
    monkeypatch.setattr(config, "FUSED_EPOCH_MAX_WEIGHTS", config.FUSED_EPOCH_MAX_WEIGHTS)
    CASES[name](np.random.default_rng(sorted(CASES).index(name)), dtype)


# --- device helpers and the backend object ------------------------------------------------------
def test_device_helpers_and_backend():
    from fastdl.backend import get_backend
    bk = get_backend("cuda")
    assert bk.on_device
    z = bk.zeros((2, 3), np.float32)
    assert z.dtype == np.float32 and (bk.to_numpy(z) == 0).all()
    assert bk.zeros((0, 5), np.float64).shape == (0, 5)
    assert bk.empty((4,), np.float64).shape == (4,)
    x = np.arange(6.0).reshape(2, 3)
    d = bk.asarray(x)
    bk.synchronize()
    np.testing.assert_array_equal(bk.to_numpy(d), x)
    assert isinstance(bk.to_numpy(d), np.ndarray)
    for name in ("activation_forward", "dense_forward", "train_epoch", "sum_squares"):
        assert callable(getattr(bk.k, name))


def test_train_epoch_accepts_host_buffers():
    """Host arrays are copied in and the outputs copied back (a convenience; it syncs)."""
    rng = np.random.default_rng(7)
    dtype = np.float64
    P = _epoch_problem(rng, dtype, *EPOCH_NETS[1])
    n = P["params"].shape[0]
    ref_params, ref_costs = P["params"].copy(), np.zeros(P["n_batches"])
    ref_state = np.zeros((P["n_state"], n), dtype)
    R.train_epoch(ref_costs, ref_params, np.zeros(n, dtype), ref_state,
                  np.zeros(P["ws_size"], dtype), P["X"], P["Y"], P["order"], P["batch"],
                  P["layout"], P["loss"], P["l2"], P["n_l2"], ALPHA, P["opt"], P["hyper"], 0)
    params, costs = P["params"].copy(), np.zeros(P["n_batches"])
    state = np.zeros((P["n_state"], n), dtype)
    K.train_epoch(costs, params, np.zeros(n, dtype), state, np.zeros(P["ws_size"], dtype),
                  P["X"], P["Y"], P["order"], P["batch"], P["layout"], P["loss"], P["l2"],
                  P["n_l2"], ALPHA, P["opt"], P["hyper"], 0)
    assert_close(costs, ref_costs, dtype, rtol=1e-10)
    assert_close(params, ref_params, dtype, rtol=1e-10)
    assert_close(state, ref_state, dtype, rtol=1e-10)


# --- the model API on the cuda backend ------------------------------------------------------------
def test_model_training_matches_cpu_backend():
    """A short run: per-step costs of train_on_batch and per-epoch costs of fit (the whole-epoch
    kernel path), then predictions, equal the cpu backend's."""
    import fastdl as fd
    from fastdl.optim import base as optim_base
    if not optim_base._is_device_array(cuda.device_array(1)):
        pytest.skip("fastdl/optim/base.py does not recognise the simulator's device arrays "
                    "(it tests __cuda_array_interface__, which FakeCUDAArray lacks)")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3)).astype(np.float32)
    y = rng.integers(0, 3, 20)

    def model(backend):
        return fd.Sequential([fd.Dense(4, activation="tanh"), fd.Dense(3, activation="softmax")],
                             input_dim=3, seed=1, backend=backend)
    runs = {}
    for backend in ("cpu", "cuda"):
        m, opt = model(backend), fd.optim.Adam(lr=0.01)
        steps = [m.train_on_batch(X[:8], y[:8], opt, l2=0.1) for _ in range(3)]
        fit = m.fit(X, y, optimizer=opt, epochs=2, batch_size=8, verbose=0, l2=0.1)
        runs[backend] = (steps, fit.history["loss"], m.predict_proba(X[:5]))
    for a, b in zip(runs["cpu"], runs["cuda"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


def test_weighted_model_training_matches_cpu_backend():
    """sample_weight on the cuda backend: the step path gathers each batch's weights on the
    device (ArraySource) and runs the weighted loss kernel; fit (with weighted validation),
    train_on_batch and evaluate equal the cpu backend's."""
    import fastdl as fd
    from fastdl.optim import base as optim_base
    if not optim_base._is_device_array(cuda.device_array(1)):
        pytest.skip("fastdl/optim/base.py does not recognise the simulator's device arrays")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((13, 3))
    y = rng.integers(0, 2, 13)
    w = rng.random(13) * 2
    w[:3] = 0.0
    runs = {}
    for backend in ("cpu", "cuda"):
        m = fd.Sequential([fd.Dense(4, activation="tanh"), fd.Dense(1, activation="sigmoid")],
                          input_dim=3, seed=1, backend=backend, dtype="float64")
        opt = fd.optim.SGD(lr=0.2)
        step = m.train_on_batch(X, y, opt, l2=0.1, sample_weight=w)
        fit = m.fit(X, y, optimizer=opt, epochs=2, batch_size=5, verbose=0, l2=0.1,
                    sample_weight=w, validation_data=(X, y, w))
        runs[backend] = ([step], fit.history["loss"], fit.history["val_loss"],
                         [m.evaluate(X, y, sample_weight=w)["loss"]], m.get_weights()[0])
    for a, b in zip(runs["cpu"], runs["cuda"]):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-10, atol=1e-12)


# --- host inputs: pinned staging one batch ahead (config.CUDA_HOST_INPUT) -----------------------
def _fit_cuda(monkeypatch, mode, X, y, **fit_kw):
    """A short cuda fit with a batch callback (the step path in both modes, so the two runs
    execute the same kernels on the same batches); weights, epoch losses, batch costs."""
    import fastdl as fd
    monkeypatch.setattr(config, "CUDA_HOST_INPUT", mode)
    costs = []

    class EveryBatch(fd.Callback):
        def on_batch_end(self, batch, logs=None):
            costs.append(logs["loss"])

    standardize = fit_kw.pop("standardize", False)
    model = fd.Sequential([fd.Dense(5, activation="relu"), fd.Dense(3, activation="softmax")],
                          input_dim=16, seed=2, backend="cuda", dtype="float64")
    if standardize:
        model.standardizer = fd.Standardizer()
    h = model.fit(X, y, optimizer=fd.optim.Adam(lr=0.05), epochs=2, batch_size=4, verbose=0,
                  callbacks=[EveryBatch()], **fit_kw)
    return model.get_weights(), h.history["loss"], costs


def _same_run(a, b):
    for wa, wb in zip(a[0], b[0]):
        np.testing.assert_array_equal(wa, wb)
    assert a[1] == b[1] and a[2] == b[2]


def test_overlapped_host_input_trains_exactly_like_upload(monkeypatch, tmp_path):
    """In-memory host X (with and without sample_weight) and a streamed .npy (with a
    standardizer): the staged, one-batch-ahead copies give the same bits as uploading X whole
    / copying each batch synchronously. The simulator runs streams synchronously, so this
    checks the data path; tests/test_input_staging.py checks the ordering."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((10, 16))
    y = rng.integers(0, 3, 10)
    w = rng.random(10) + 0.1
    for kw in ({}, {"sample_weight": w}):
        up = _fit_cuda(monkeypatch, "upload", X, y, **kw)
        _same_run(up, _fit_cuda(monkeypatch, "overlap", X, y, **kw))
    np.save(tmp_path / "X.npy", X * 3 + 1)
    path = str(tmp_path / "X.npy")
    up = _fit_cuda(monkeypatch, "upload", path, y, standardize=True)
    _same_run(up, _fit_cuda(monkeypatch, "overlap", path, y, standardize=True))
    monkeypatch.setattr(config, "CUDA_HOST_INPUT", "pinned")
    import fastdl as fd
    model = fd.Sequential([fd.Dense(3, activation="softmax")], input_dim=16, backend="cuda")
    with pytest.raises(ValueError, match="CUDA_HOST_INPUT='pinned' is invalid; expected "
                                         "'upload' or 'overlap'"):
        model.fit(X, y, epochs=1, verbose=0)


def test_fit_with_augment_on_device_matches_cpu_backend():
    """fit(augment=...) on cuda augments each batch on the device (the same bits as the cpu
    backend's kernel), so the run equals the cpu backend's up to the training kernels'
    rounding."""
    import fastdl as fd
    rng = np.random.default_rng(12)
    X = rng.standard_normal((10, 16))
    y = rng.integers(0, 3, 10)
    runs = {}
    for backend in ("cpu", "cuda"):
        model = fd.Sequential([fd.Dense(5, activation="relu"),
                               fd.Dense(3, activation="softmax")],
                              input_dim=16, seed=2, backend=backend, dtype="float64")
        h = model.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2, batch_size=4, verbose=0,
                      augment=fd.Augment(image_shape=(4, 4), flip=True, shift=1, noise=0.3))
        runs[backend] = (h.history["loss"], model.get_weights())
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], rtol=1e-10)
    for a, b in zip(runs["cuda"][1], runs["cpu"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
