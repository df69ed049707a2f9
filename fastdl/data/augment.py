"""Data augmentation, applied to each training mini-batch by ``fit``:

    model.fit(X, y, augment=fd.Augment(image_shape=(28, 28), flip=True, shift=2, noise=0.05))
    model.fit(X, y, augment=fd.Augment(noise=0.05))        # any rows: tabular inputs too

For flips and shifts each row of X is an image flattened in C order from ``image_shape`` =
(H, W) or (H, W, C) (channels last); noise alone needs no image shape. Per example,
independently:

* ``flip``: mirror left-right with probability 1/2;
* ``shift``: translate by (dy, dx), each uniform in [-shift, shift] pixels, filling with 0
  (the mean, when the inputs are standardized);
* ``noise``: add Gaussian noise of standard deviation ``noise`` (each value rounded to
  float32).

The work is the ``augment_images`` kernel of the model's backend (``kernels/*/augment.py``),
applied where the batch is: on the GPU for ``backend="cuda"``. Every draw is a counter-based
hash of (seed, epoch, batch, index), as dropout's masks are, so the numpy, cpu and cuda
backends produce the same bits, and a resumed run augments exactly as an uninterrupted one.
Validation data are never augmented. With ``model.standardizer`` set, augmentation acts on the
standardized batch.

Since issue 17 (device augmentation) the draws differ from earlier versions, which used
``np.random.default_rng([seed, 0xA06, epoch, batch])`` on the host (the same distributions;
Gaussian noise now comes from an inverse-CDF approximation accurate to 1.2e-9,
``kernels/reference/augment.py``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}")
    return int(value)


class Augment:
    """Random flips and shifts (image-shaped inputs) and Gaussian noise (any inputs).

    Parameters
    ----------
    image_shape : (H, W) or (H, W, C), optional
        Shape of one example; rows of X are these images flattened in C order. Default: a
        square grayscale image, H = W = sqrt(n_features) (an error when that is not an
        integer). Needed by flips and shifts only.
    flip : bool
        Horizontal flips with probability 1/2.
    shift : int >= 0
        Largest shift in pixels, vertical and horizontal (smaller than H and W).
    noise : float >= 0
        Standard deviation of additive Gaussian noise (works on any rows, tabular included).
    """

    def __init__(self, image_shape=None, flip=False, shift=0, noise=0.0):
        if image_shape is not None:
            if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3):
                raise ValueError(f"image_shape={image_shape!r} is invalid; expected (H, W) or "
                                 "(H, W, C)")
            image_shape = tuple(_int("image_shape", d, 1) for d in image_shape)
        self.image_shape = image_shape
        if not isinstance(flip, (bool, np.bool_)):
            raise TypeError(f"flip={flip!r} is invalid; expected True or False")
        self.flip = bool(flip)
        self.shift = _int("shift", shift, 0)
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real) \
                or not np.isfinite(noise) or noise < 0:
            raise ValueError(f"noise={noise!r} is invalid; expected a finite number >= 0")
        self.noise = float(noise)
        if image_shape is not None:
            self._check_shift(image_shape)

    def _check_shift(self, shape):
        if self.shift and self.shift >= min(shape[0], shape[1]):
            raise ValueError(f"shift={self.shift} is invalid for images of {shape[0]}x"
                             f"{shape[1]} pixels; expected a shift < {min(shape[0], shape[1])}")

    def shape_for(self, n_features):
        """(H, W, C) of the images in rows of ``n_features`` values; a clear error when the
        inputs are not image-shaped."""
        if self.image_shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features or side < 2:
                raise ValueError(f"augment needs image-shaped inputs, but X has {n_features} "
                                 "features, which is not a square image; pass "
                                 "fd.Augment(image_shape=(H, W) or (H, W, C), ...) with "
                                 "H * W * C == n_features")
            shape = (side, side, 1)
        else:
            shape = self.image_shape + (1,) * (3 - len(self.image_shape))
            if int(np.prod(shape)) != n_features:
                raise ValueError(f"augment needs image-shaped inputs: image_shape="
                                 f"{self.image_shape} holds {int(np.prod(shape))} values per "
                                 f"example, but X has {n_features} features; expected "
                                 "H * W * C == n_features (rows flattened in C order)")
        self._check_shift(shape)
        return shape

    @property
    def moves_pixels(self):
        """Flips or shifts: they need the image shape, and the kernel then reads an unaugmented
        copy of the batch. Noise alone needs neither."""
        return self.flip or self.shift > 0

    def check_features(self, n_features):
        """A clear error when rows of ``n_features`` values cannot be augmented (image shape
        needed for flips and shifts, or an ``image_shape`` given that does not fit)."""
        if self.moves_pixels or self.image_shape is not None:
            self.shape_for(n_features)

    def apply(self, Xb, seed, epoch, batch, backend=None, scratch=None):
        """Augment the batch ``Xb`` (m, n_features, C-contiguous) in place, from (seed, epoch,
        batch), with the kernel of ``backend`` (a name or a backend; default "cpu", for NumPy
        arrays; every backend gives the same bits). ``scratch``: a buffer of Xb's shape and
        dtype on that backend for the unaugmented copy when pixels move (allocated per call
        when not given). ``seed``, ``epoch``, ``batch``: integers in [0, 2^63)."""
        from ..backend import get_backend
        bk = backend if hasattr(backend, "k") else get_backend(backend or "cpu")
        for name, v in (("seed", seed), ("epoch", epoch), ("batch", batch)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v < 2**63:
                raise ValueError(f"{name}={v!r} is invalid; expected an integer in [0, 2**63)")
        src = Xb
        if self.moves_pixels:
            H, W, C = self.shape_for(Xb.shape[1])
            src = bk.empty(Xb.shape, Xb.dtype) if scratch is None else scratch
            bk.copy_into(src, Xb)
        else:
            self.check_features(Xb.shape[1])
            # noise alone is element-wise: element e = i n + j draws the same value whatever
            # the image factorization of n, so any rows (tabular too) run as 1 x n images
            H, W, C = 1, Xb.shape[1], 1
        bk.k.augment_images(Xb, src, H, W, C, int(seed), int(epoch), int(batch), self.flip,
                            self.shift, self.noise)

    def __repr__(self):
        return (f"Augment(image_shape={self.image_shape}, flip={self.flip}, shift={self.shift}, "
                f"noise={self.noise})")
