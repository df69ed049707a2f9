"""The ``augment_images`` kernel: the reference's draws and math against their specification,
and ``fd.Augment`` running the backend's kernel.

That the cpu and cuda kernels equal the reference bit for bit (hostile shapes, every mode,
in place) is declared in ``tests/kernel_cases/augment.py`` and run by
``tests/test_kernels_vs_reference.py`` and, under the simulator, ``tests/cuda_sim/kernels_sim.py``;
the cuda kernel's PTX is checked for FMA contractions in ``tests/test_kernels_cuda.py``.
"""

import numpy as np
import pytest

import fastdl as fd
from fastdl.kernels import reference as R
from fastdl.kernels.reference import augment as RA

def _bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


def test_flip_and_shift_move_whole_images_as_documented():
    """Each output image is the input mirrored (or not), then translated with zeros shifted
    in, exactly; the draws are the documented hashes."""
    H, W, C = 5, 6, 2
    m = 64
    X = np.arange(1, m * H * W * C + 1, dtype=np.float64).reshape(m, H * W * C)
    out = np.empty_like(X)
    R.augment_images(out, X, H, W, C, 4, 1, 7, True, 2, 0.0)
    key = RA._key(4, 1, 7)
    flips, shifts = set(), set()
    for i in range(m):
        ii = np.uint64(i)
        f = int(RA._stream(key, np.uint64(3) * ii)[0] >> np.uint64(63)) == 1
        dy = int(RA._shift_draw(RA._stream(key, np.uint64(3) * ii + np.uint64(1)), 2)[0])
        dx = int(RA._shift_draw(RA._stream(key, np.uint64(3) * ii + np.uint64(2)), 2)[0])
        img = X[i].reshape(H, W, C)[:, ::-1] if f else X[i].reshape(H, W, C)
        want = np.zeros_like(img)
        for y in range(H):
            for x in range(W):
                if 0 <= y - dy < H and 0 <= x - dx < W:
                    want[y, x] = img[y - dy, x - dx]
        np.testing.assert_array_equal(out[i].reshape(H, W, C), want)
        flips.add(f)
        shifts.add((dy, dx))
    assert flips == {True, False} and len(shifts) > 15 and \
        {d for s in shifts for d in s} == {-2, -1, 0, 1, 2}


def test_normal_quantile_function_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    u = np.concatenate([np.logspace(-16, -1, 3000), np.linspace(0.01, 0.99, 20001),
                        1 - np.logspace(-16, -1, 3000), [RA.PPF_LOW, 1 - RA.PPF_LOW]])
    z = RA._normal_ppf(u)
    ref = scipy_stats.norm.ppf(u)
    assert np.max(np.abs(z - ref) / np.maximum(np.abs(ref), 1e-300)) < 1.2e-9   # Acklam's bound
    p = np.logspace(-300, 0, 2000)[:-1]
    np.testing.assert_allclose(RA._log(p), np.log(p), rtol=4e-16, atol=0)


def test_noise_is_standard_normal_times_noise():
    scipy_stats = pytest.importorskip("scipy.stats")
    nz = RA._noise_values(RA._key(1, 2, 3), 400_000, 0.05)
    assert nz.dtype == np.float32
    z = nz.astype(np.float64) / 0.05
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert scipy_stats.kstest(z, "norm").pvalue > 1e-3
    u = RA._uniform(RA._stream(RA._key(9, 9, 9), np.arange(1000, dtype=np.uint64)))
    assert (u > 0).all() and (u < 1).all() and np.array_equal(1 - (1 - u), u)   # exact


def test_augment_object_runs_the_backend_kernel():
    """``fd.Augment.apply`` gives the same bits on the numpy and cpu backends, with or without
    a scratch buffer, and leaves nothing of the input when pixels move."""
    rng = np.random.default_rng(8)
    X = rng.standard_normal((7, 28 * 28)).astype(np.float32)
    a = fd.Augment(flip=True, shift=3, noise=0.1)
    outs = []
    for backend, scratch in (("numpy", None), ("cpu", None), ("cpu", np.empty_like(X)), (None, None)):
        Y = X.copy()
        a.apply(Y, 5, 6, 7, backend=backend, scratch=scratch)
        outs.append(Y)
    for o in outs[1:]:
        assert np.array_equal(_bits(o), _bits(outs[0]))
    ref = np.empty_like(X)
    R.augment_images(ref, X, 28, 28, 1, 5, 6, 7, True, 3, 0.1)
    assert np.array_equal(_bits(outs[0]), _bits(ref))
    with pytest.raises(ValueError, match=r"epoch=-1 is invalid; expected an integer in"):
        a.apply(X.copy(), 1, -1, 0)
    with pytest.raises(ValueError, match=r"seed=2\.0 is invalid"):
        a.apply(X.copy(), 2.0, 0, 0)


def test_noise_alone_runs_on_any_rows_through_the_same_kernel():
    """Noise alone is element-wise, so ``fd.Augment(noise=...)`` runs on tabular rows (3
    features: no image) as 1 x n images, and on image rows it draws what the image-shaped call
    draws (the noise of element e does not depend on how n factors). An ``image_shape`` that was
    given must still fit the rows."""
    rng = np.random.default_rng(9)
    for n, shape in ((3, (1, 3, 1)), (36, (6, 3, 2))):
        X = rng.standard_normal((5, n))
        ref = np.empty_like(X)
        R.augment_images(ref, X, *shape, 1, 2, 3, False, 0, 0.25)
        for backend in ("numpy", "cpu"):
            Y = X.copy()
            fd.Augment(noise=0.25).apply(Y, 1, 2, 3, backend=backend)
            assert np.array_equal(_bits(Y), _bits(ref))
    with pytest.raises(ValueError, match=r"image_shape=\(2, 2\) holds 4 values per example, "
                                         r"but X has 3 features"):
        fd.Augment(image_shape=(2, 2), noise=0.1).check_features(3)
