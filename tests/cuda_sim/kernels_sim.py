"""The cuda kernels against the NumPy reference (the spec), under the CUDA simulator.

Not collected by a plain ``pytest`` (the file name does not match ``test_*.py``):
``tests/test_kernels_cuda.py`` runs it in a subprocess with ``NUMBA_ENABLE_CUDASIM=1``, which
must be set before numba is first imported (the cpu tests import numba in the main process).
By hand::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda_sim/kernels_sim.py -q

``test_kernel_matches_reference`` is generated from the registry: every registered kernel runs
the ``sim`` cases of its declaration in ``tests/kernel_cases/`` (the same declarations drive the
cpu comparison, ``tests/test_kernels_vs_reference.py``; a kernel without one fails there).
Array arguments go to the device (``host_args`` stay on the host), outputs start as NaN, so an
element a kernel forgets to write fails, inputs must come back unchanged, declared aliases run
in place. Blocks are patched down to 4 threads and the GEMM tile to 4, so the tiny shapes (the
simulator runs every thread in Python) still span several blocks, grid-stride loops wrap, and
reductions take their two-stage path. The hand-written tests below cover cuda-only paths (split
column sums, the GEMM variants, both train_epoch implementations, the sparse kernels' X
densified in several blocks), the model API (dense, weighted and sparse input), ``fd.Augment``
on device batches and the staged host input (``config.CUDA_HOST_INPUT``).
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":  # pragma: no cover - guard for direct runs
    pytest.skip("run with NUMBA_ENABLE_CUDASIM=1 (see tests/test_kernels_cuda.py)",
                allow_module_level=True)

from numba import cuda  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # tests/: kernel_cases

import fastdl.kernels.cuda as K  # noqa: E402
from fastdl import config  # noqa: E402
from fastdl.kernels import KERNELS  # noqa: E402
from fastdl.kernels import reference as R  # noqa: E402
from fastdl.kernels.cuda import _device, _gemm, dense  # noqa: E402
from fastdl.kernels.reference import optim as R_optim  # noqa: E402
from fastdl.kernels.cuda import optim as K_optim  # noqa: E402
from kernel_cases import (CUDA_RTOL, Draw, compare, copy_args, draw_args,  # noqa: E402
                          load_cases, reference_kernel)
from kernel_cases import epoch as epoch_cases  # noqa: E402

#: empty bfloat16 outputs (A16, dZ16, the optimizers' shadow): kernels compute without
#: mixed-precision copies here (tests/test_precision.py covers them)
NO16 = np.zeros((0, 0), np.uint16)
NO_SHADOW = np.zeros(0, np.uint16)

#: The simulator runs the dropout hash on NumPy uint64 scalars, which warn when they wrap
#: (the hash relies on wrapping mod 2^64; numba's compiled uint64 wraps silently).
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in scalar:RuntimeWarning")

DTYPES = (np.float32, np.float64)
RTOL = CUDA_RTOL
ALPHA = 0.07  # leaky_relu slope
CASES = load_cases()


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
    return Draw(rng, dtype).hostile(shape, scale)


# --- every registered kernel, from its declaration ------------------------------------------------
def _run_cuda(name, case, args, dtype, what):
    """Reference on host copies, the cuda launcher on device copies; compare (steps 3-5 of
    tests/kernel_cases)."""
    file = next(f for f, names in KERNELS.items() if name in names)
    ref = copy_args(args)
    reference_kernel(file, name)(*ref.values())
    rtol = case.cuda_tolerance()

    def on_device(a):
        return {k: (dev(v) if isinstance(v, np.ndarray) and k not in case.host_args else v)
                for k, v in a.items()}

    def to_host(d):
        return {k: (v.copy_to_host() if hasattr(v, "copy_to_host") else v) for k, v in d.items()}

    d = on_device(args)
    getattr(K, name)(*d.values())
    compare(name, case, args, ref, to_host(d), dtype, rtol, what)
    for out, inp in case.alias_pairs(args):
        d = on_device(args)
        d[out] = d[inp]
        getattr(K, name)(*d.values())
        compare(name, case, args, ref, to_host(d), dtype, rtol,
                f"{what} in place ({out} is {inp})", inputs=False, skip=(inp,))


def _ids():
    return [(n, d) for n in sorted(CASES) for d in CASES[n][1].dtypes]


@pytest.mark.parametrize("name,dtype", _ids(), ids=[f"{n}-{np.dtype(d).name}" for n, d in _ids()])
def test_kernel_matches_reference(name, dtype):
    file, case = CASES[name]
    for i, p in enumerate(case.sim):
        args = draw_args(file, name, case, "sim", i, dtype)
        _run_cuda(name, case, args, dtype, f"sim[{i}]={p} {np.dtype(dtype).name}")


def test_every_registered_kernel_runs_here():
    registered = {n for names in KERNELS.values() for n in names}
    missing = sorted(registered - set(CASES))
    assert not missing, f"cuda kernels without a case: {missing}"


# --- cuda-only paths ---------------------------------------------------------------------------
def _dense_inputs(rng, m, n_in, n_out, dtype, bias):
    X = hostile(rng, (m, n_in), dtype, 1.0)
    W = hostile(rng, (n_out, n_in), dtype, 0.5)
    b = hostile(rng, (n_out,), dtype, 1.0) if bias else np.zeros(0, dtype)
    return X, W, b


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


# --- sparse input: the first Dense layer's products densify X in blocks of rows -------------
@pytest.mark.parametrize("name", ["csr_dense_forward", "csr_dense_backward"])
def test_csr_kernels_densify_in_blocks(monkeypatch, name):
    """Blocks of two rows (``config.SPARSE_DENSIFY_MAX_BYTES`` patched down) over a 5-row
    range of a larger matrix: the forward fills A block by block (the last one partial), the
    backward adds later blocks' products to dW through scratch. The registry's sim cases
    (tests/kernel_cases/sparse.py) run as one block."""
    file, case = CASES[name]
    i = next(i for i, p in enumerate(case.sim) if "range32" in p)
    dtype = np.float64
    args = draw_args(file, name, case, "sim", i, dtype)
    n_in = (args["W"] if "W" in args else args["dW"]).shape[1]
    monkeypatch.setattr(config, "SPARSE_DENSIFY_MAX_BYTES", 2 * n_in * np.dtype(dtype).itemsize)
    _run_cuda(name, case, args, dtype, f"sim[{i}]={case.sim[i]} float64, blocks of 2 rows")


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


def test_augment_object_on_device_matches_cpu():
    """fd.Augment.apply on a device batch (with and without a scratch buffer) gives the cpu
    backend's bits: what fit's hook runs on the cuda backend, with no host round trip. Noise
    alone runs on rows that are no image (5 features) through the same kernel."""
    import fastdl as fd
    from fastdl.backend import get_backend
    rng = np.random.default_rng(4)
    bk = get_backend("cuda")
    for a, n in ((fd.Augment(image_shape=(6, 3, 2), flip=True, shift=1, noise=0.2), 36),
                 (fd.Augment(noise=0.2), 5)):
        X = rng.standard_normal((3, n)).astype(np.float32)
        want = X.copy()
        a.apply(want, 1, 2, 3, backend="cpu")
        assert not np.array_equal(want, X)
        for scratch in (None, bk.empty(X.shape, X.dtype)):
            Xd = dev(X)
            a.apply(Xd, 1, 2, 3, backend=bk, scratch=scratch)
            np.testing.assert_array_equal(Xd.copy_to_host().view(np.uint8),
                                          want.view(np.uint8))


#: train_epoch through both cuda implementations (the one-block kernel for tiny nets, per-batch
#: launches otherwise), on the nets and optimizers of tests/kernel_cases/epoch.py
EPOCH_SIM = [("2-5-2-1 bce", 7, 3, 0.1, "adam", np.float32),
             ("3-4-3-2 mse sigmoid out", 7, 3, 0.05, "nesterov", np.float64),
             ("3-7-4 cce leaky/tanh", 7, 3, 0.0, "rmsprop", np.float32),
             ("3-7-4 cce leaky/tanh", 5, 2, 0.2, "sgd+wd", np.float64)]


@pytest.mark.parametrize("fused", (True, False), ids=("fused_kernel", "launches"))
@pytest.mark.parametrize("net", range(len(EPOCH_SIM)))
def test_train_epoch_both_implementations(monkeypatch, fused, net):
    monkeypatch.setattr(config, "FUSED_EPOCH_MAX_WEIGHTS", 10 ** 6 if fused else 0)
    *p, dtype = EPOCH_SIM[net]
    args = epoch_cases.draw(Draw(np.random.default_rng(100 + net), dtype), *p)
    _run_cuda("train_epoch", CASES["train_epoch"][1], args, dtype, f"{p} fused={fused}")


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
    file, case = CASES["train_epoch"]
    args = epoch_cases.draw(Draw(np.random.default_rng(7), np.float64), "2-5-2-1 bce", 7, 3, 0.1,
                            "adam")
    ref, got = copy_args(args), copy_args(args)
    R.train_epoch(*ref.values())
    K.train_epoch(*got.values())            # every argument a host array
    compare("train_epoch", case, args, ref, got, np.float64, case.cuda_tolerance(),
            "host buffers")


# --- the model API on the cuda backend ------------------------------------------------------------
def test_model_training_matches_cpu_backend():
    """A short run: per-step costs of train_on_batch and per-epoch costs of fit (the whole-epoch
    kernel path), then predictions, equal the cpu backend's."""
    import fastdl as fd
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


def test_sparse_model_training_matches_cpu_backend():
    """scipy.sparse X on the cuda backend: CSR rows uploaded once, batches gathered on the
    device (gather_csr_rows), the first layer's kernels densify per batch; fit (with sparse
    validation data), train_on_batch, evaluate and predict_proba equal the cpu backend's."""
    sp = pytest.importorskip("scipy.sparse")
    import fastdl as fd
    from fastdl.optim import base as optim_base
    if not optim_base._is_device_array(cuda.device_array(1)):
        pytest.skip("fastdl/optim/base.py does not recognise the simulator's device arrays")
    rng = np.random.default_rng(3)
    X = sp.random(10, 6, density=0.3, random_state=3, format="csr")
    y = rng.integers(0, 3, 10)
    runs = {}
    for backend in ("cpu", "cuda"):
        m = fd.Sequential([fd.Dense(4, activation="relu"), fd.Dense(3, activation="softmax")],
                          input_dim=6, seed=1, backend=backend, dtype="float64")
        opt = fd.optim.Adam(lr=0.05)
        step = m.train_on_batch(X[:5], y[:5], opt, l2=0.1)
        fit = m.fit(X, y, optimizer=opt, epochs=1, batch_size=4, verbose=0, l2=0.1,
                    validation_data=(X, y))     # batches of 4, 4 and 2 rows
        runs[backend] = ([step], fit.history["loss"], fit.history["val_loss"],
                         m.predict_proba(X), m.get_weights()[0])
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
    # tiny on purpose (one layer: what is tested is the input path): the simulator runs every
    # GEMM thread in Python (~1 s per step at 16-5-3)
    model = fd.Sequential([fd.Dense(3, activation="softmax")], input_dim=4, seed=2,
                          backend="cuda", dtype="float64")
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
    X = rng.standard_normal((6, 4))         # batches of 4 and 2 rows
    y = rng.integers(0, 3, 6)
    w = rng.random(6) + 0.1
    for kw in ({}, {"sample_weight": w}):
        up = _fit_cuda(monkeypatch, "upload", X, y, **kw)
        _same_run(up, _fit_cuda(monkeypatch, "overlap", X, y, **kw))
    np.save(tmp_path / "X.npy", X * 3 + 1)
    path = str(tmp_path / "X.npy")
    up = _fit_cuda(monkeypatch, "upload", path, y, standardize=True)
    _same_run(up, _fit_cuda(monkeypatch, "overlap", path, y, standardize=True))
    monkeypatch.setattr(config, "CUDA_HOST_INPUT", "pinned")
    import fastdl as fd
    model = fd.Sequential([fd.Dense(3, activation="softmax")], input_dim=4, backend="cuda")
    with pytest.raises(ValueError, match="CUDA_HOST_INPUT='pinned' is invalid; expected "
                                         "'upload' or 'overlap'"):
        model.fit(X, y, epochs=1, verbose=0)


def test_fit_with_augment_on_device_matches_cpu_backend():
    """fit(augment=...) on cuda augments each batch on the device (the same bits as the cpu
    backend's kernel), so the run equals the cpu backend's up to the training kernels'
    rounding."""
    import fastdl as fd
    rng = np.random.default_rng(12)
    X = rng.standard_normal((6, 8))         # 2x2 images of 2 channels; batches of 4 and 2
    y = rng.integers(0, 3, 6)
    runs = {}
    for backend in ("cpu", "cuda"):
        model = fd.Sequential([fd.Dense(3, activation="relu"),
                               fd.Dense(3, activation="softmax")],
                              input_dim=8, seed=2, backend=backend, dtype="float64")
        h = model.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2, batch_size=4, verbose=0,
                      augment=fd.Augment(image_shape=(2, 2, 2), flip=True, shift=1, noise=0.3))
        runs[backend] = (h.history["loss"], model.get_weights())
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], rtol=1e-10)
    for a, b in zip(runs["cuda"][1], runs["cpu"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
