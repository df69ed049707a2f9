"""Image augmentation of a mini-batch: flips, shifts, Gaussian noise, counter-based (reference).

Legend: m examples (rows), each an image of H x W pixels and C channels flattened in C order
(n = H W C values per row). ``X`` and ``out`` are (m, n); row i, pixel (y, x), channel c is
column (y W + x) C + c. One call augments one batch from its key (seed, epoch, batch):

    out[i, y, x, c] = src(i, y, x, c) + nz(i n + (y W + x) C + c)
    src(i, y, x, c) = X[i, y - dy_i, fx(x - dx_i), c]  if 0 <= y - dy_i < H and 0 <= x - dx_i < W
                    = 0                                otherwise (shifted-in pixels)
    fx(x)           = W - 1 - x  if flip_i  else  x     (the flip comes first, then the shift)

Every draw is a pure function of (seed, epoch, batch, index), as for dropout
(``reference/dropout.py``: the same splitmix64 finalizer ``mix64`` and Weyl step ``G``):

    key       = mix64(mix64(mix64(seed ^ AUG_SALT) ^ epoch) ^ batch)
    h(s, j)   = mix64(s + (j + 1) G)                   element j of the stream started at s
    flip_i    = h(key, 3i) >> 63 == 1                   (when ``flip``; probability 1/2)
    dy_i      = ((h(key, 3i+1) >> 32) (2S+1)) >> 32 - S (when ``shift`` = S > 0; dx_i from 3i+2)
    u_e       = (2 (h(nkey, e) >> 12) + 1) 2^-53        in (0, 1), exact; nkey = mix64(key ^ NOISE_SALT)
    z_e       = Phi^-1(u_e)                             Acklam's rational approximation (below)
    nz(e)     = float32(noise z_e)                      0 (nothing added) when ``noise`` == 0

The shift is Lemire's multiply-shift map of 32 random bits onto [0, 2S] (bias < (2S+1)/2^32).
Phi^-1 is P. J. Acklam's algorithm ("An algorithm for computing the inverse normal cumulative
distribution function", 2003; relative error < 1.15e-9, checked against SciPy in the tests):
a rational function of q = u - 1/2 for 0.02425 <= u <= 0.97575, and of t = sqrt(-2 log p),
p = min(u, 1 - u), in the tails. Why not NumPy's generator, or Box-Muller: the same bits must
come out of NumPy, Numba on the CPU and CUDA, and ``log``/``cos`` differ by an ulp between
libm, NumPy's SIMD loops and CUDA's libdevice. Every operation here is a correctly rounded
IEEE float64 ``+ - * /`` or ``sqrt``, in a fixed order, plus an exactly computed ``frexp``;
``log`` is evaluated from those (``_log``: log p = e ln 2 + 2 atanh((m-1)/(m+1)), 12 terms).
The fast kernels must not fuse a multiply and an add into an FMA (one rounding instead of two):
the cpu kernels are compiled without fast-math, the cuda ones use round-to-nearest intrinsics
that are never contracted. The noise is rounded to float32 whatever the dtype, so the final
``src + nz`` has no multiply to fuse with.

``out`` must not overlap ``X`` unless both ``flip`` and ``shift`` are off (then the map is
element-wise). seed, epoch, batch are integers in [0, 2^63).
"""

import numpy as np

from .dropout import _GOLDEN, _mix64

AUG_SALT = np.uint64(0xBB67AE8584CAA73B)      # SHA-256's 2nd initial word (dropout: the 1st)
NOISE_SALT = np.uint64(0x3C6EF372FE94F82B)    # its 3rd

#: Acklam's coefficients: central numerator / denominator, tail numerator / denominator.
PPF_A = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
         1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00)
PPF_B = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
         6.680131188771972e+01, -1.328068155288572e+01)
PPF_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
         -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00)
PPF_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
         3.754408661907416e+00)
PPF_LOW = 0.02425
#: 1/(2k+1), k = 11 .. 0: the atanh series of ``_log``, highest term first (Horner order).
LOG_TERMS = tuple(1.0 / (2 * k + 1) for k in range(11, -1, -1))
LN2 = 0.6931471805599453
SQRT_HALF = 0.7071067811865476
TWO_M53 = 2.0 ** -53


def _key(seed, epoch, batch):
    k = _mix64(np.array([seed], dtype=np.uint64) ^ AUG_SALT)
    k = _mix64(k ^ np.uint64(epoch))
    return _mix64(k ^ np.uint64(batch))


def _stream(start, j):
    """h(start, j) = mix64(start + (j + 1) G) for indices ``j`` (as a uint64 array: array
    arithmetic wraps mod 2^64 silently, NumPy scalars warn)."""
    j = np.atleast_1d(np.asarray(j, dtype=np.uint64))
    return _mix64(start + (j + np.uint64(1)) * _GOLDEN)


def _shift_draw(h, shift):
    s = np.uint64(shift)
    return ((h >> np.uint64(32)) * (np.uint64(2) * s + np.uint64(1))
            >> np.uint64(32)).astype(np.int64) - int(shift)


def _log(p):
    """log p for float64 p > 0, from correctly rounded operations only (module docstring)."""
    m, e = np.frexp(p)                            # p = m 2^e, m in [0.5, 1): exact
    small = m < SQRT_HALF
    m = np.where(small, m * 2.0, m)               # m in [sqrt(1/2), sqrt(2)): exact
    e = np.where(small, e - 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)
    w = s * s
    acc = np.full_like(s, LOG_TERMS[0])
    for c in LOG_TERMS[1:]:
        acc = acc * w + c
    return e * LN2 + (2.0 * s) * acc


def _horner(x, coefs):
    acc = np.full_like(x, coefs[0])
    for c in coefs[1:]:
        acc = acc * x + c
    return acc


def _normal_ppf(u):
    """Phi^-1(u) for float64 u in (0, 1) (Acklam; the operation order every backend uses)."""
    q = u - 0.5
    r = q * q
    central = (_horner(r, PPF_A) * q) / (_horner(r, PPF_B) * r + 1.0)
    tail_p = np.where(u < 0.5, u, 1.0 - u)
    t = np.sqrt(-2.0 * _log(np.minimum(tail_p, PPF_LOW)))   # clamp: no log of the centre
    tail = _horner(t, PPF_C) / (_horner(t, PPF_D) * t + 1.0)
    tail = np.where(u < 0.5, tail, -tail)
    return np.where((u < PPF_LOW) | (u > 1.0 - PPF_LOW), tail, central)


def _uniform(h):
    """(2 (h >> 12) + 1) 2^-53: exactly representable, in (0, 1), symmetric under 1 - u."""
    return ((h >> np.uint64(12)) * np.uint64(2) + np.uint64(1)).astype(np.float64) * TWO_M53


def _noise_values(key, count, noise):
    """nz(e) for e < count (float32), the noise stream of one batch key."""
    nkey = _mix64(key ^ NOISE_SALT)
    z = _normal_ppf(_uniform(_stream(nkey, np.arange(count, dtype=np.uint64))))
    return (float(noise) * z).astype(np.float32)


def augment_images(out, X, height, width, channels, seed, epoch, batch, flip, shift, noise):
    """out = the augmented batch X (module docstring); out may be X when flip and shift are
    off."""
    m, n = X.shape
    if m == 0 or n == 0:
        return
    H, W, C = int(height), int(width), int(channels)
    key = _key(int(seed), int(epoch), int(batch))
    i = np.arange(m, dtype=np.uint64)
    src = X.reshape(m, H, W, C)
    if flip or shift:
        rows = np.broadcast_to(np.arange(H)[None, :], (m, H))
        cols = np.broadcast_to(np.arange(W)[None, :], (m, W))
        if shift:
            dy = _shift_draw(_stream(key, np.uint64(3) * i + np.uint64(1)), shift)
            dx = _shift_draw(_stream(key, np.uint64(3) * i + np.uint64(2)), shift)
            rows = rows - dy[:, None]
            cols = cols - dx[:, None]
        valid = (((rows >= 0) & (rows < H))[:, :, None]
                 & ((cols >= 0) & (cols < W))[:, None, :])
        if flip:
            f = (_stream(key, np.uint64(3) * i) >> np.uint64(63)) == 1
            cols = np.where(f[:, None], W - 1 - cols, cols)
        img = src[np.arange(m)[:, None, None], np.clip(rows, 0, H - 1)[:, :, None],
                  np.clip(cols, 0, W - 1)[:, None, :]]
        img[~valid] = 0
        result = img.reshape(m, n)
    else:
        result = X.copy()
    if noise:
        result = result + _noise_values(key, m * n, noise).reshape(m, n).astype(X.dtype)
    out[...] = result

